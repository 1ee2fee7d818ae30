//! ONNX's scatters: `scatter_elements` (each update moved along one axis by its index) and
//! `scatter_nd` (slices of updates at index tuples), each storing its updates or combining them
//! with what is there ([`ScatterReduction`]).
//!
//! Updates apply one after another in row-major order of the indices, so with `none` the last
//! of several writes to one position wins, and combining reductions see every update. Indices
//! follow ONNX (negative counts from the end); one out of range is an error and nothing is
//! returned.

use super::index::{
    check_const_indices, expect_within, index_array, out_of_range, resolve_index, tuple_len,
};
use super::{arg, expect_index, merge_dim};
use crate::ops::common::{expect_arity, normalize_axis};
use crate::ops::elementwise::IntElem;
use crate::ops::{OpResult, ScatterReduction};
use crate::with_dtype;
use crate::{Dim, Elem, Shape, Tensor, TensorType};
use half::{bf16, f16};
use ndarray::{ArrayD, Dimension};

/// An element type a scatter reduction combines, with the arithmetic of the binary op of the
/// same name (so the CPU kernels and the interpreter agree bit for bit).
pub trait Combine: Elem {
    /// `old` combined with `update` by `r` (`None` gives `update`).
    fn combine(r: ScatterReduction, old: Self, update: Self) -> Self;
}

macro_rules! float_combine {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            /// Computed in f64 and rounded once, as the interpreter's binary ops do.
            fn combine(r: ScatterReduction, old: $t, update: $t) -> $t {
                let (p, q) = (Elem::to_f64(old), Elem::to_f64(update));
                let v = match r {
                    ScatterReduction::None => return update,
                    ScatterReduction::Add => p + q,
                    ScatterReduction::Mul => p * q,
                    // NaN in either gives NaN, as `maximum` and `minimum` do.
                    ScatterReduction::Max => if p.is_nan() || p > q { p } else { q },
                    ScatterReduction::Min => if p.is_nan() || p < q { p } else { q },
                };
                <$t as Elem>::from_f64(v)
            }
        }
    )*};
}
float_combine!(f32, f64, f16, bf16);

macro_rules! int_combine {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            fn combine(r: ScatterReduction, old: $t, update: $t) -> $t {
                match r {
                    ScatterReduction::None => update,
                    ScatterReduction::Add => old.add_wrap(update),
                    ScatterReduction::Mul => old.mul_wrap(update),
                    ScatterReduction::Max => old.max(update),
                    ScatterReduction::Min => old.min(update),
                }
            }
        }
    )*};
}
int_combine!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Combine for bool {
    /// NumPy's: `add` and `max` are or, `mul` and `min` are and.
    fn combine(r: ScatterReduction, old: bool, update: bool) -> bool {
        match r {
            ScatterReduction::None => update,
            ScatterReduction::Add | ScatterReduction::Max => old || update,
            ScatterReduction::Mul | ScatterReduction::Min => old && update,
        }
    }
}

/// Errors unless `updates` has the shape `want` (what the indices and `x` say).
fn expect_updates(op: &str, updates: &TensorType, want: &[Dim]) -> OpResult<()> {
    let fits = updates.rank() == want.len()
        && updates
            .shape
            .0
            .iter()
            .zip(want)
            .all(|(u, w)| merge_dim(u, w).is_some());
    if !fits {
        return Err(format!(
            "{op}: updates {updates} must have the shape {}",
            Shape(want.to_vec())
        ));
    }
    Ok(())
}

/// `scatter_elements`: `x`'s type; indices and updates share a shape of `x`'s rank.
pub(super) fn infer_scatter_elements(
    axis: i64,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    let op = "scatter_elements";
    expect_arity(op, inputs, 3)?;
    let (x, indices, updates) = (&inputs[0], &inputs[1], &inputs[2]);
    expect_index("scatter_elements's indices (input 1)", indices)?;
    if x.rank() == 0 || indices.rank() != x.rank() {
        return Err(format!(
            "{op}: indices {indices} must have the rank of x {x} (at least 1)"
        ));
    }
    let ax = normalize_axis(axis, x.rank()).map_err(|e| format!("{op}: {e}"))?;
    expect_within(op, x, indices, ax)?;
    expect_updates(op, updates, &indices.shape.0)?;
    check_const_indices(op, arg(consts, 1), x, |_| ax)?;
    Ok(x.clone())
}

/// `scatter_nd`: `x`'s type; updates are `indices[:-1] + x[m:]`, `m` the tuples' length.
pub(super) fn infer_scatter_nd(
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    let op = "scatter_nd";
    expect_arity(op, inputs, 3)?;
    let (x, indices, updates) = (&inputs[0], &inputs[1], &inputs[2]);
    expect_index("scatter_nd's indices (input 1)", indices)?;
    let m = tuple_len(op, indices)?;
    if m > x.rank() {
        return Err(format!(
            "{op}: index tuples of {m} entries do not address x {x} (at most {})",
            x.rank()
        ));
    }
    let q = indices.rank();
    let mut want = indices.shape.0[..q - 1].to_vec();
    want.extend_from_slice(&x.shape.0[m..]);
    expect_updates(op, updates, &want)?;
    check_const_indices(op, arg(consts, 1), x, |p| p % m.max(1))?;
    Ok(x.clone())
}

fn scatter_elements_of<T: Combine>(
    r: ScatterReduction,
    x: &Tensor,
    idx: &ArrayD<i64>,
    updates: &Tensor,
    ax: usize,
) -> OpResult<Tensor> {
    let mut y = T::view(x).ok_or("internal error: dtype mismatch")?.clone();
    let u = T::view(updates).ok_or("internal error: dtype mismatch")?;
    let n = y.shape()[ax];
    for at in ndarray::indices(idx.shape()) {
        let v = idx[&at];
        let mut dst = at.clone();
        dst[ax] = resolve_index(v, n)
            .ok_or_else(|| out_of_range("scatter_elements", at.slice(), v, n, ax, &x.ty()))?;
        y[&dst] = T::combine(r, y[&dst], u[&at]);
    }
    Ok(T::wrap(y))
}

fn scatter_nd_of<T: Combine>(
    r: ScatterReduction,
    x: &Tensor,
    idx: &ArrayD<i64>,
    updates: &Tensor,
) -> OpResult<Tensor> {
    let mut y = T::view(x).ok_or("internal error: dtype mismatch")?.clone();
    let u = T::view(updates).ok_or("internal error: dtype mismatch")?;
    let q = idx.ndim();
    let m = idx.shape()[q - 1];
    let slice_dims = y.shape()[m..].to_vec();
    for t in ndarray::indices(&idx.shape()[..q - 1]) {
        let mut at: Vec<usize> = t.slice().to_vec();
        at.push(0);
        let mut base = Vec::with_capacity(y.ndim());
        for j in 0..m {
            at[q - 1] = j;
            let (v, n) = (idx[&at[..]], y.shape()[j]);
            let i = resolve_index(v, n)
                .ok_or_else(|| out_of_range("scatter_nd", &at, v, n, j, &x.ty()))?;
            base.push(i);
        }
        for s in ndarray::indices(&slice_dims[..]) {
            let mut dst = base.clone();
            dst.extend_from_slice(s.slice());
            let mut src: Vec<usize> = t.slice().to_vec();
            src.extend_from_slice(s.slice());
            y[&dst[..]] = T::combine(r, y[&dst[..]], u[&src[..]]);
        }
    }
    Ok(T::wrap(y))
}

pub(super) fn eval_scatter_elements(
    axis: i64,
    r: ScatterReduction,
    inputs: &[&Tensor],
) -> OpResult<Tensor> {
    let x = inputs[0];
    let ax = normalize_axis(axis, x.shape().len())?;
    let idx = index_array(inputs[1])?;
    with_dtype!(x.dtype(), scatter_elements_of(r, x, &idx, inputs[2], ax))
}

pub(super) fn eval_scatter_nd(r: ScatterReduction, inputs: &[&Tensor]) -> OpResult<Tensor> {
    let x = inputs[0];
    let idx = index_array(inputs[1])?;
    with_dtype!(x.dtype(), scatter_nd_of(r, x, &idx, inputs[2]))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::{DType, Op};

    fn i64s(dims: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_vec(dims, v.to_vec())
    }

    fn elements(axis: i64, reduction: ScatterReduction) -> Op {
        Op::ScatterElements { axis, reduction }
    }

    #[test]
    fn scatter_elements_known_values() {
        // ONNX's example: axis 1 of [[1, 2, 3, 4, 5]] at [[1, 3]] with [[1.1, 2.1]].
        let x = Tensor::from_vec(&[1, 5], vec![1.0f32, 2.0, 3.0, 4.0, 5.0]);
        let u = Tensor::from_vec(&[1, 2], vec![1.1f32, 2.1]);
        let i = i64s(&[1, 2], &[1, 3]);
        let y = eval1(&elements(1, ScatterReduction::None), &[&x, &i, &u]);
        let want = [1.0f32, 1.1, 3.0, 2.1, 5.0];
        assert_eq!(y, Tensor::from_vec(&[1, 5], want.to_vec()));
        // Duplicates: the last write wins, or every update is combined.
        let i = i64s(&[1, 2], &[1, -4]);
        let y = eval1(&elements(1, ScatterReduction::None), &[&x, &i, &u]);
        assert_eq!(vals(&y).1, [1.0, 2.1f32 as f64, 3.0, 4.0, 5.0]);
        let y = eval1(&elements(1, ScatterReduction::Add), &[&x, &i, &u]);
        assert_eq!(y.to_f64_vec()[1], (2.0f32 + 1.1 + 2.1) as f64);
        let y = eval1(&elements(-1, ScatterReduction::Mul), &[&x, &i, &u]);
        assert_eq!(y.to_f64_vec()[1], (2.0f32 * 1.1 * 2.1) as f64);
        let y = eval1(&elements(1, ScatterReduction::Min), &[&x, &i, &u]);
        assert_eq!(y.to_f64_vec()[1], 1.1f32 as f64);
        let y = eval1(&elements(1, ScatterReduction::Max), &[&x, &i, &u]);
        assert_eq!(y.to_f64_vec()[1], 2.1f32 as f64);
        // Axis 0 of a matrix.
        let x = Tensor::zeros(DType::I32, &[3, 3]);
        let i = i64s(&[2, 3], &[1, 0, 2, 0, 2, 1]);
        let u = Tensor::from_vec(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]);
        let y = eval1(&elements(0, ScatterReduction::None), &[&x, &i, &u]);
        assert_eq!(vals(&y).1, [4.0, 2.0, 0.0, 1.0, 0.0, 6.0, 0.0, 5.0, 3.0]);
        let e = eval_err(
            &elements(0, ScatterReduction::None),
            &[
                &x,
                &i64s(&[1, 1], &[-4]),
                &Tensor::from_vec(&[1, 1], vec![1i32]),
            ],
        );
        assert!(
            e.contains("indices[0,0] = -4 is not in [-3, 3) (axis 0 of i32[3,3])"),
            "{e}"
        );
        let e = eval_err(
            &elements(0, ScatterReduction::None),
            &[&x, &i, &Tensor::from_vec(&[3], vec![1i32, 2, 3])],
        );
        assert!(
            e.contains("updates i32[3] must have the shape [2,3]"),
            "{e}"
        );
    }

    #[test]
    fn reductions_on_integers_wrap_and_bools_are_logic() {
        let x = Tensor::from_vec(&[2], vec![i8::MAX, 3]);
        let i = i64s(&[2], &[0, 1]);
        let u = Tensor::from_vec(&[2], vec![1i8, -2]);
        let y = eval1(&elements(0, ScatterReduction::Add), &[&x, &i, &u]);
        assert_eq!(y, Tensor::from_vec(&[2], vec![i8::MIN, 1]));
        let y = eval1(&elements(0, ScatterReduction::Max), &[&x, &i, &u]);
        assert_eq!(y, Tensor::from_vec(&[2], vec![i8::MAX, 3]));
        let x = Tensor::from_vec(&[2], vec![true, false]);
        let u = Tensor::from_vec(&[2], vec![false, true]);
        let y = eval1(&elements(0, ScatterReduction::Add), &[&x, &i, &u]);
        assert_eq!(y, Tensor::from_vec(&[2], vec![true, true]));
        let y = eval1(&elements(0, ScatterReduction::Mul), &[&x, &i, &u]);
        assert_eq!(y, Tensor::from_vec(&[2], vec![false, false]));
        // NaN wins max and min, as in `maximum`.
        let x = Tensor::from_vec(&[1], vec![f32::NAN]);
        let y = eval1(
            &elements(0, ScatterReduction::Min),
            &[&x, &i64s(&[1], &[0]), &Tensor::from_vec(&[1], vec![1.0f32])],
        );
        assert!(y.to_f64_vec()[0].is_nan());
    }

    #[test]
    fn scatter_nd_known_values() {
        // ONNX's first example: [1..8] with 9, 10, 11, 12 at 4, 3, 1, 7.
        let x = Tensor::from_vec(&[8], (1..=8).map(|v| v as f32).collect());
        let i = i64s(&[4, 1], &[4, 3, 1, 7]);
        let u = Tensor::from_vec(&[4], vec![9.0f32, 10.0, 11.0, 12.0]);
        let op = Op::ScatterNd {
            reduction: ScatterReduction::None,
        };
        let y = eval1(&op, &[&x, &i, &u]);
        assert_eq!(vals(&y).1, [1.0, 11.0, 3.0, 10.0, 9.0, 6.0, 7.0, 12.0]);
        // Rows of a matrix, one index negative and one repeated with `add`.
        let x = iota(&[3, 2]);
        let i = i64s(&[3, 1], &[-1, 0, 2]);
        let u = Tensor::from_vec(&[3, 2], vec![10.0f32, 20.0, 30.0, 40.0, 50.0, 60.0]);
        let add = Op::ScatterNd {
            reduction: ScatterReduction::Add,
        };
        let y = eval1(&add, &[&x, &i, &u]);
        assert_eq!(vals(&y).1, [30.0, 41.0, 2.0, 3.0, 64.0, 85.0]);
        let e = eval_err(
            &op,
            &[
                &x,
                &i64s(&[1, 2], &[0, 2]),
                &Tensor::from_vec(&[1], vec![1.0f32]),
            ],
        );
        assert!(
            e.contains("indices[0,1] = 2 is not in [-2, 2) (axis 1 of f32[3,2])"),
            "{e}"
        );
        let e = eval_err(&op, &[&x, &i, &Tensor::zeros(DType::F32, &[3])]);
        assert!(
            e.contains("updates f32[3] must have the shape [3,2]"),
            "{e}"
        );
    }
}
