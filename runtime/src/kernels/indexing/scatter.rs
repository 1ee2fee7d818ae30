//! `scatter_elements` and `scatter_nd`: `x` copied to the output, then each update stored or
//! combined at its position, in row-major order of the indices. Combining uses the IR's
//! [`Combine`] (the interpreter's arithmetic: floats in f64 rounded once, wrapping integers,
//! NaN-propagating max and min, bool as logic), monomorphized per dtype.
//!
//! Every index is checked before its update is applied; on an error the output is left
//! partly written, and the step fails.

use super::{advance, out_of_range, unravel};
use crate::kernels::copy::row_major_strides;
use crate::kernels::gather::read_index;
use half::{bf16, f16};
use lathe_ir::ops::shape::{resolve_index, Combine};
use lathe_ir::ops::ScatterReduction;
use lathe_ir::DType;

/// One arm of [`with_combine!`]: `$S` is `$t`, `$f` its combine under `$r`.
macro_rules! combine_arm {
    ($t:ty, $r:expr, $S:ident, $f:ident, $body:expr) => {{
        type $S = $t;
        let $f = |a: $t, b: $t| <$t as Combine>::combine($r, a, b);
        $body
    }};
}

/// Runs `$body` with `$S` the Rust type of dtype `$dt`'s bytes and `$f` its combine under
/// `$r` (bool is combined as bytes holding 0 or 1).
macro_rules! with_combine {
    ($dt:expr, $r:expr, $S:ident, $f:ident => $body:expr) => {{
        let r: ScatterReduction = $r;
        match $dt {
            DType::F32 => combine_arm!(f32, r, $S, $f, $body),
            DType::F64 => combine_arm!(f64, r, $S, $f, $body),
            DType::F16 => combine_arm!(f16, r, $S, $f, $body),
            DType::BF16 => combine_arm!(bf16, r, $S, $f, $body),
            DType::I8 => combine_arm!(i8, r, $S, $f, $body),
            DType::I16 => combine_arm!(i16, r, $S, $f, $body),
            DType::I32 => combine_arm!(i32, r, $S, $f, $body),
            DType::I64 => combine_arm!(i64, r, $S, $f, $body),
            DType::U8 => combine_arm!(u8, r, $S, $f, $body),
            DType::U16 => combine_arm!(u16, r, $S, $f, $body),
            DType::U32 => combine_arm!(u32, r, $S, $f, $body),
            DType::U64 => combine_arm!(u64, r, $S, $f, $body),
            DType::Bool => {
                type $S = u8;
                let $f = |a: u8, b: u8| bool::combine(r, a != 0, b != 0) as u8;
                $body
            }
            low => panic!("{low} is a storage type no scatter takes"),
        }
    }};
}

/// `out[at] = f(out[at], updates[from])`, elements of type `S` (unaligned).
///
/// # Safety
/// `at` is an element of `out` and `from` one of `updates`.
#[inline(always)]
unsafe fn apply<S: Copy>(
    out: *mut u8,
    at: usize,
    updates: *const u8,
    from: usize,
    f: impl Fn(S, S) -> S,
) {
    let dst = (out as *mut S).add(at);
    let u = (updates as *const S).add(from).read_unaligned();
    dst.write_unaligned(f(dst.read_unaligned(), u));
}

/// `scatter_elements` into `x` (`x_dims`) of updates at indices of shape `idx_dims`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScatterElements {
    pub dtype: DType,
    pub index_dtype: DType,
    pub reduction: ScatterReduction,
    pub x_dims: Vec<usize>,
    /// Also the updates' dims; no longer than `x_dims` on every axis but `axis`.
    pub idx_dims: Vec<usize>,
    pub axis: usize,
}

impl ScatterElements {
    /// # Safety
    /// `x` and `out` hold `x_dims` elements of `dtype`, `idx` and `updates` `idx_dims` indices
    /// (of `index_dtype`) and elements; `out` overlaps no input.
    pub unsafe fn run(
        &self,
        x: *const u8,
        idx: *const u8,
        updates: *const u8,
        out: *mut u8,
    ) -> Result<(), String> {
        let len: usize = self.x_dims.iter().product();
        std::ptr::copy_nonoverlapping(x, out, len * self.dtype.size_bytes());
        with_combine!(self.dtype, self.reduction, S, f => self.typed::<S>(idx, updates, out, f))
    }

    /// # Safety
    /// As for `run`, `S` of `dtype`'s width.
    unsafe fn typed<S: Copy>(
        &self,
        idx: *const u8,
        updates: *const u8,
        out: *mut u8,
        f: impl Fn(S, S) -> S + Copy,
    ) -> Result<(), String> {
        let strides = row_major_strides(&self.x_dims);
        let n = self.x_dims[self.axis];
        let count: usize = self.idx_dims.iter().product();
        let mut at = vec![0usize; self.idx_dims.len()];
        for p in 0..count {
            let v = read_index(self.index_dtype, idx, p);
            let i = resolve_index(v, n).ok_or_else(|| out_of_range(&at, v, n, self.axis))?;
            let mut dst = 0;
            for (d, (&c, &s)) in at.iter().zip(&strides).enumerate() {
                dst += if d == self.axis { i } else { c } * s;
            }
            // SAFETY: `i < n` and the other coordinates are below x's dims (checked when
            // lowered), so `dst` is an element of `out`; `p` is one of the updates.
            apply(out, dst, updates, p, f);
            advance(&mut at, &self.idx_dims);
        }
        Ok(())
    }
}

/// `scatter_nd`: `x` seen as `[dims..., slice]`, indices as `[tuples, m]` (`m = dims.len()`),
/// updates as `[tuples, slice]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScatterNd {
    pub dtype: DType,
    pub index_dtype: DType,
    pub reduction: ScatterReduction,
    /// The indices' dims (for errors).
    pub idx_dims: Vec<usize>,
    /// The sizes of the axes the tuples address.
    pub dims: Vec<usize>,
    pub tuples: usize,
    pub slice: usize,
}

impl ScatterNd {
    /// The kernel for `x` and indices of these dims; `None` when tuples are longer than `x`'s
    /// rank.
    pub fn new(
        dtype: DType,
        index_dtype: DType,
        reduction: ScatterReduction,
        x: &[usize],
        idx_dims: &[usize],
    ) -> Option<ScatterNd> {
        let (&m, lead) = idx_dims.split_last()?;
        (m <= x.len()).then(|| ScatterNd {
            dtype,
            index_dtype,
            reduction,
            idx_dims: idx_dims.to_vec(),
            dims: x[..m].to_vec(),
            tuples: lead.iter().product(),
            slice: x[m..].iter().product(),
        })
    }

    /// Elements of the updates.
    pub fn updates_len(&self) -> usize {
        self.tuples * self.slice
    }

    /// # Safety
    /// `x` and `out` hold `prod(dims) · slice` elements of `dtype`, `idx` `tuples · m` indices
    /// of `index_dtype`, `updates` `tuples · slice` elements; `out` overlaps no input.
    pub unsafe fn run(
        &self,
        x: *const u8,
        idx: *const u8,
        updates: *const u8,
        out: *mut u8,
    ) -> Result<(), String> {
        let len = self.dims.iter().product::<usize>() * self.slice;
        std::ptr::copy_nonoverlapping(x, out, len * self.dtype.size_bytes());
        with_combine!(self.dtype, self.reduction, S, f => self.typed::<S>(idx, updates, out, f))
    }

    /// # Safety
    /// As for `run`, `S` of `dtype`'s width.
    unsafe fn typed<S: Copy>(
        &self,
        idx: *const u8,
        updates: *const u8,
        out: *mut u8,
        f: impl Fn(S, S) -> S + Copy,
    ) -> Result<(), String> {
        let m = self.dims.len();
        let mut strides = row_major_strides(&self.dims);
        strides.iter_mut().for_each(|s| *s *= self.slice);
        for t in 0..self.tuples {
            let mut base = 0;
            for (j, (&n, &s)) in self.dims.iter().zip(&strides).enumerate() {
                let at = t * m + j;
                let v = read_index(self.index_dtype, idx, at);
                let i = resolve_index(v, n)
                    .ok_or_else(|| out_of_range(&unravel(at, &self.idx_dims), v, n, j))?;
                base += i * s;
            }
            for e in 0..self.slice {
                // SAFETY: every coordinate is in range, so the slice lies inside `out`; row `t`
                // of the updates has `slice` elements.
                apply(out, base + e, updates, t * self.slice + e, f);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, want};
    use super::super::IndexKernel;
    use super::*;
    use lathe_ir::ops::DTypeClass;
    use lathe_ir::{Op, Tensor};

    #[test]
    fn scatter_elements_matches_the_interpreter_for_every_dtype_and_reduction() {
        let x = Tensor::from_f64(
            DType::F64,
            &[3, 3],
            &[1.0, -2.0, 3.5, 0.0, 7.0, -1.0, 2.0, 2.0, 9.0],
        );
        let u = Tensor::from_f64(DType::F64, &[2, 3], &[1.5, 2.0, -3.0, 4.0, 0.0, 6.25]);
        // Index 0 of axis 0 twice in column 0: duplicates apply in order.
        let idx = Tensor::from_vec(&[2, 3], vec![0i64, -1, 2, 0, 1, -3]);
        for dtype in DTypeClass::Any.dtypes() {
            for reduction in ScatterReduction::ALL {
                for axis in [0usize, 1] {
                    let (x, u) = (x.cast(dtype), u.cast(dtype));
                    let op = Op::ScatterElements {
                        axis: axis as i64,
                        reduction,
                    };
                    let k = IndexKernel::ScatterElements(ScatterElements {
                        dtype,
                        index_dtype: DType::I64,
                        reduction,
                        x_dims: vec![3, 3],
                        idx_dims: vec![2, 3],
                        axis,
                    });
                    let got = run(&k, &[&x, &idx, &u], &[9 * dtype.size_bytes()]);
                    assert_eq!(
                        got,
                        want(&op, &[&x, &idx, &u]),
                        "{dtype} {reduction:?} {axis}"
                    );
                }
            }
        }
        let bad = Tensor::from_vec(&[1, 1], vec![3i32]);
        let k = IndexKernel::ScatterElements(ScatterElements {
            dtype: DType::F64,
            index_dtype: DType::I32,
            reduction: ScatterReduction::None,
            x_dims: vec![3, 3],
            idx_dims: vec![1, 1],
            axis: 1,
        });
        let e = run(&k, &[&x, &bad, &u], &[72]).unwrap_err();
        assert_eq!(e, "indices[0,0] = 3 is not in [-3, 3) (axis 1)");
    }

    #[test]
    fn scatter_nd_matches_the_interpreter() {
        let x = Tensor::from_vec(&[4, 2], (0..8).map(|v| v as f32).collect());
        let idx = Tensor::from_vec(&[3, 1], vec![1i32, -1, 1]);
        let u = Tensor::from_vec(&[3, 2], vec![10.0f32, 20.0, 30.0, 40.0, f32::NAN, 60.0]);
        for dtype in [DType::F32, DType::BF16, DType::U32, DType::Bool] {
            for reduction in ScatterReduction::ALL {
                let (x, u) = (x.cast(dtype), u.cast(dtype));
                let op = Op::ScatterNd { reduction };
                let k = ScatterNd::new(dtype, DType::I32, reduction, &[4, 2], &[3, 1]).unwrap();
                assert_eq!(k.updates_len(), 6);
                let got = run(
                    &IndexKernel::ScatterNd(k),
                    &[&x, &idx, &u],
                    &[8 * dtype.size_bytes()],
                );
                assert_eq!(got, want(&op, &[&x, &idx, &u]), "{dtype} {reduction:?}");
            }
        }
        // Whole elements, tuples of two.
        let idx = Tensor::from_vec(&[2, 2], vec![3i64, 1, 0, -2]);
        let u = Tensor::from_vec(&[2], vec![5.0f32, 6.0]);
        let op = Op::ScatterNd {
            reduction: ScatterReduction::Mul,
        };
        let k = ScatterNd::new(
            DType::F32,
            DType::I64,
            ScatterReduction::Mul,
            &[4, 2],
            &[2, 2],
        );
        let k = IndexKernel::ScatterNd(k.unwrap());
        assert_eq!(run(&k, &[&x, &idx, &u], &[32]), want(&op, &[&x, &idx, &u]));
        let bad = Tensor::from_vec(&[2, 2], vec![3i64, 1, 4, 0]);
        let e = run(&k, &[&x, &bad, &u], &[32]).unwrap_err();
        assert_eq!(e, "indices[1,0] = 4 is not in [-4, 4) (axis 0)");
        assert!(
            ScatterNd::new(DType::F32, DType::I64, ScatterReduction::Mul, &[4], &[2, 2]).is_none()
        );
    }
}
