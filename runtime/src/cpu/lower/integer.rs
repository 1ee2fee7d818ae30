//! Lowering `matmul_integer` and `conv2d_integer` to the integer kernels: the geometry from
//! the buffers' shapes, and the weights (B or the filter, with their zero points) packed once
//! when they are constants.

use super::{Builder, Epilogue, IntGemm, Kernel};
use crate::cpu::matmul::BatchedGemm;
use crate::cpu::plan::BufId;
use crate::kernels::int_conv::IntConv;
use crate::kernels::int_gemm::{byte_signedness, ByteMat, PackedB};
use lathe_ir::ops::Op;
use lathe_ir::{Tensor, TensorType};
use std::sync::Arc;

/// A constant i8/u8 tensor's bytes, when it is dense.
fn bytes_of(t: &Tensor) -> Option<&[u8]> {
    match t {
        Tensor::U8(a) => a.as_slice(),
        // SAFETY: i8 and u8 have one size and alignment; the bytes are only read.
        Tensor::I8(a) => a
            .as_slice()
            .map(|s| unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, s.len()) }),
        _ => None,
    }
}

/// A constant zero point's values, widened.
fn zero_points_of(t: &Tensor) -> Option<Vec<i32>> {
    let v = t.to_i64_vec().ok()?;
    Some(v.into_iter().map(|x| x as i32).collect())
}

/// The weights and their zero points, when both are constants.
fn constant_weights<'t>(
    weights: Option<&'t Tensor>,
    zero_point: Option<&'t Tensor>,
) -> Option<(&'t [u8], Vec<i32>)> {
    Some((bytes_of(weights?)?, zero_points_of(zero_point?)?))
}

impl Builder {
    /// `matmul_integer` of `operands` (`a, b, a_zp, b_zp`) into `c`; `consts` are the values of
    /// B and its zero points when constant (B is then packed once, if the batch shares it).
    pub(super) fn int_matmul(
        &mut self,
        operands: &[BufId],
        consts: [Option<&Tensor>; 2],
        c: BufId,
        epilogue: Option<Epilogue>,
    ) -> Result<Kernel, String> {
        let &[a, b, a_zp, b_zp] = operands else {
            return Err("matmul_integer has four operands".into());
        };
        let product = Op::BatchMatMul {
            adj_x: false,
            adj_y: false,
        };
        let dims = |x: BufId| self.bufs[x].dims.clone();
        let gemm = BatchedGemm::from_op(&product, &dims(a), &dims(b), &dims(c))?;
        let signed = |x: BufId| {
            byte_signedness(self.bufs[x].dtype)
                .ok_or_else(|| format!("an operand is {}, not i8 or u8", self.bufs[x].dtype))
        };
        let (a_signed, b_signed) = (signed(a)?, signed(b)?);
        let shared = gemm.batch.iter().all(|l| l.1[1] == 0);
        let packed = match constant_weights(consts[0], consts[1]) {
            Some((bytes, zp)) if shared && bytes.len() == self.bufs[b].len() => {
                let m = ByteMat {
                    ptr: bytes.as_ptr(),
                    signed: b_signed,
                    strides: gemm.b,
                };
                // SAFETY: the geometry was built from B's shape, and `bytes` is all of B.
                Some(Arc::new(unsafe { PackedB::new(m, gemm.k, gemm.n, &zp) }))
            }
            _ => None,
        };
        Ok(Kernel::IntGemm {
            kernel: IntGemm {
                gemm,
                a_signed,
                b_signed,
                packed,
            },
            a,
            b,
            a_zp,
            b_zp,
            c,
            epilogue,
        })
    }

    /// `conv2d_integer` (`op`) of `operands` (`x, filter, x_zp, filter_zp`) into `out`;
    /// `consts` are the filter's and its zero points' values when constant (packed once).
    pub(super) fn int_conv(
        &mut self,
        op: &Op,
        operands: &[BufId],
        consts: [Option<&Tensor>; 2],
        out: BufId,
        epilogue: Option<Epilogue>,
    ) -> Result<Kernel, String> {
        let &[x, filter, x_zp, filter_zp] = operands else {
            return Err("conv2d_integer has four operands".into());
        };
        let types: Vec<TensorType> = operands
            .iter()
            .map(|&o| TensorType::known(self.bufs[o].dtype, &self.bufs[o].dims))
            .collect();
        let weights = constant_weights(consts[0], consts[1]);
        let kernel = IntConv::new(
            op,
            &types.iter().collect::<Vec<_>>(),
            weights.as_ref().map(|(b, z)| (*b, z.as_slice())),
        )?;
        Ok(Kernel::IntConv {
            kernel,
            x,
            filter,
            x_zp,
            filter_zp,
            out,
            epilogue,
        })
    }
}
