//! Integer products of quantized tensors: `matmul_integer` (linalg family) and `conv2d_integer`
//! (conv family), ONNX's `MatMulInteger` and `ConvInteger`, which its `QLinearMatMul` and
//! `QLinearConv` requantize.
//!
//! Operands are i8 or u8 (each operand its own), and each comes with a zero point of its
//! dtype: the product is that of the differences `x - zero_point`, summed in i32 with wrapping
//! (as onnxruntime's i32 accumulators). Zero points are per tensor (a scalar) or, for the
//! operand whose dimension survives into the result, per row of `a` (`[m]`), per column of `b`
//! (`[n]`) or per output channel of the filter (`[out]`); `x_zero_point` is a scalar. A
//! convolution's padding is zero *after* the subtraction (the input padded with its zero
//! point), and the filter is HWIO, grouped like `conv2d`'s.
//!
//! The interpreter subtracts, multiplies and sums in i64 with wrapping arithmetic (the linalg
//! and conv families' own kernels) and wraps the sums to i32: arithmetic modulo 2^64 then
//! modulo 2^32 equals i32 arithmetic modulo 2^32, so the result is the i32 accumulation's.

use super::common::{broadcast_shapes, expect_arity};
use super::conv::{infer_conv, ConvKernel};
use super::linalg::{product_dims, BatchMatMulKernel, Kernel};
use super::{ConvAttrs, OpResult};
use crate::{DType, Dim, Shape, Tensor, TensorType};
use ndarray::{ArrayD, Axis, IxDyn};

/// Checks that `zp` (the zero point of `what`) is a scalar or a vector of `len` entries.
fn check_zero_point(op: &str, what: &str, zp: &TensorType, len: &Dim, per: &str) -> OpResult<()> {
    match zp.rank() {
        0 => Ok(()),
        1 if zp.shape.dims()[0].compatible(len) => Ok(()),
        _ => Err(format!(
            "{op}: the zero point of {what} must be a scalar or have one entry per {per} \
             ({len}), got {zp}"
        )),
    }
}

/// The type of `matmul_integer(a, b, a_zero_point, b_zero_point)`.
pub(super) fn infer_matmul_integer(inputs: &[TensorType]) -> OpResult<TensorType> {
    let op = "matmul_integer";
    expect_arity(op, inputs, 4)?;
    let (a, b) = (&inputs[0], &inputs[1]);
    if a.rank() < 2 || b.rank() < 2 {
        return Err(format!(
            "{op} needs operands of rank at least 2, got {a} and {b}"
        ));
    }
    let batch_a = Shape(a.shape.dims()[..a.rank() - 2].to_vec());
    let batch_b = Shape(b.shape.dims()[..b.rank() - 2].to_vec());
    let mut dims = broadcast_shapes(&batch_a, &batch_b)
        .map_err(|_| format!("{op}: batch dimensions of {a} and {b} do not broadcast"))?
        .0;
    let (m, n) = product_dims(op, a, b, false, false)?;
    check_zero_point(op, "a", &inputs[2], &m, "row of a")?;
    check_zero_point(op, "b", &inputs[3], &n, "column of b")?;
    dims.extend([m, n]);
    Ok(TensorType::new(DType::I32, Shape(dims)))
}

/// The type of `conv2d_integer(x, filter, x_zero_point, filter_zero_point)`.
pub(super) fn infer_conv2d_integer(a: &ConvAttrs, inputs: &[TensorType]) -> OpResult<TensorType> {
    let op = "conv2d_integer";
    expect_arity(op, inputs, 4)?;
    let (x, f) = (&inputs[0], &inputs[1]);
    // The geometry is conv2d's, whatever the two operands' dtypes.
    let as_x = TensorType::new(x.dtype, f.shape.clone());
    let out = infer_conv(op, a, &[x.clone(), as_x], false)?;
    if inputs[2].rank() != 0 {
        return Err(format!(
            "{op}: the zero point of x must be a scalar, got {}",
            inputs[2]
        ));
    }
    let out_c = &f.shape.dims()[3];
    check_zero_point(op, "the filter", &inputs[3], out_c, "output channel")?;
    Ok(TensorType::new(DType::I32, out.shape))
}

/// `t - zero_point` in i64, the zero point a scalar or one entry per index of axis `axis`.
fn minus_zero_point(t: &Tensor, zero_point: &Tensor, axis: usize) -> ArrayD<i64> {
    let wide = |t: &Tensor| {
        t.cast(DType::I64)
            .as_array::<i64>()
            .expect("cast to i64")
            .clone()
    };
    let (mut x, zp) = (wide(t), wide(zero_point));
    if zp.ndim() == 0 {
        let z = zp[IxDyn(&[])];
        x.mapv_inplace(|v| v.wrapping_sub(z));
    } else {
        for (i, mut lane) in x.axis_iter_mut(Axis(axis)).enumerate() {
            let z = zp[IxDyn(&[i])];
            lane.mapv_inplace(|v| v.wrapping_sub(z));
        }
    }
    x
}

/// i64 sums wrapped to i32.
fn to_i32(sums: ArrayD<i64>) -> Tensor {
    Tensor::I64(sums).cast(DType::I32)
}

/// Evaluates `matmul_integer` (the operands already type-checked).
pub(super) fn eval_matmul_integer(inputs: &[&Tensor]) -> OpResult<Tensor> {
    let (ra, rb) = (inputs[0].shape().len(), inputs[1].shape().len());
    let a = minus_zero_point(inputs[0], inputs[2], ra - 2);
    let b = minus_zero_point(inputs[1], inputs[3], rb - 1);
    let kernel = BatchMatMulKernel {
        adj_a: false,
        adj_b: false,
    };
    Ok(to_i32(kernel.run::<i64>(&[a.view(), b.view()])?))
}

/// Evaluates `conv2d_integer` (the operands already type-checked).
pub(super) fn eval_conv2d_integer(a: &ConvAttrs, inputs: &[&Tensor]) -> OpResult<Tensor> {
    let x = minus_zero_point(inputs[0], inputs[2], 0);
    let f = minus_zero_point(inputs[1], inputs[3], 3);
    Ok(to_i32(ConvKernel(a).run::<i64>(&[x.view(), f.view()])?))
}

#[cfg(test)]
mod tests {
    use crate::ops::{ConvAttrs, DataFormat, Op, Padding};
    use crate::{DType, Tensor};

    fn t(dt: DType, shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_i64(dt, shape, v)
    }

    fn run(op: &Op, inputs: &[&Tensor]) -> Vec<i64> {
        let out = op.eval(inputs).unwrap().remove(0);
        assert_eq!(out.dtype(), DType::I32);
        out.to_i64_vec().unwrap()
    }

    #[test]
    fn matmul_integer_hand_computed() {
        // ONNX's MatMulInteger example: u8 operands, a per-tensor zero point of a.
        let a = t(DType::U8, &[4, 3], &[11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]);
        let b = t(DType::U8, &[3, 2], &[1, 4, 2, 5, 3, 6]);
        let (azp, bzp) = (t(DType::U8, &[], &[12]), t(DType::U8, &[], &[0]));
        let got = run(&Op::MatMulInteger, &[&a, &b, &azp, &bzp]);
        assert_eq!(got, [-38, -83, -44, -98, -50, -113, -56, -128]);
        // Per-row zero points of a, per-column ones of b, and mixed signedness.
        let a = t(DType::I8, &[2, 2], &[-128, 127, 0, 5]);
        let b = t(DType::U8, &[2, 2], &[255, 0, 1, 2]);
        let azp = t(DType::I8, &[2], &[-1, 5]);
        let bzp = t(DType::U8, &[2], &[1, 2]);
        // rows (-127, 128) and (-5, 0); columns (254, 0) and (-2, 0).
        let got = run(&Op::MatMulInteger, &[&a, &b, &azp, &bzp]);
        assert_eq!(got, [-127 * 254, 254, -5 * 254, 10]);
    }

    #[test]
    fn matmul_integer_batches_and_checks_zero_points() {
        let a = t(DType::I8, &[2, 1, 2], &[1, 2, 3, 4]);
        let b = t(DType::I8, &[2, 1], &[10, 20]);
        let zero = t(DType::I8, &[], &[0]);
        assert_eq!(run(&Op::MatMulInteger, &[&a, &b, &zero, &zero]), [50, 110]);
        let bad = t(DType::I8, &[3], &[0, 0, 0]);
        let e = Op::MatMulInteger.eval(&[&a, &b, &bad, &zero]).unwrap_err();
        assert!(e.contains("one entry per row of a"), "{e}");
    }

    #[test]
    fn conv2d_integer_pads_with_the_zero_point() {
        // A 1x1-channel 2x2 image, 2x2 filter, SAME padding: padded cells count as the
        // zero point, so they add nothing.
        let attrs = ConvAttrs {
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Same,
            format: DataFormat::Nhwc,
        };
        let op = Op::Conv2DInteger(attrs);
        let x = t(DType::U8, &[1, 2, 2, 1], &[10, 11, 12, 13]);
        let f = t(DType::I8, &[2, 2, 1, 1], &[1, 1, 1, -1]);
        let (xzp, fzp) = (t(DType::U8, &[], &[10]), t(DType::I8, &[1], &[1]));
        // x - 10 = [[0, 1], [2, 3]]; filter - 1 = [[0, 0], [0, -2]].
        assert_eq!(run(&op, &[&x, &f, &xzp, &fzp]), [-6, 0, 0, 0]);
    }
}
