//! Reduce family: sum/mean/max/min/prod over axes, softmax and log-softmax over the last axis,
//! arg-max, and (in submodules) the running sums and products (`cumsum`, `cumprod`) and
//! `top_k`, with TensorFlow's and ONNX's semantics.
//!
//! Float reductions are computed in f64 and rounded once to the dtype; integer ones are exact
//! in their own type (sum and product wrap; mean divides the sum, truncating). `eval` re-checks
//! its operands with `infer`, so bad operands give the verifier's message instead of a panic.

use super::common::{const_ints, expect_arity, normalize_axis};
use super::elementwise::{match_class, standard, IntElem};
use super::{Op, OpResult, ReduceKind};
use crate::{DType, Dim, Elem, Shape, Tensor, TensorType};
use ndarray::{ArrayD, Axis};

mod scan;
mod top_k;

pub use top_k::{check_k, top_k_order};

/// Output types of reduce ops; this is also their type check. `consts[1]` holds the axes (or
/// the arg-max axis) when they are constant.
pub fn infer(
    op: &Op,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<Vec<TensorType>> {
    let mn = op.mnemonic();
    let axes_const = consts.get(1).copied().flatten();
    match op {
        Op::Cumulative { kind, .. } => Ok(vec![scan::infer_cumulative(*kind, inputs, consts)?]),
        Op::TopK { axis, .. } => top_k::infer_top_k(*axis, inputs, consts),
        Op::Reduce { keep_dims, .. } => {
            expect_arity(mn, inputs, 2)?;
            let (x, axes) = (&inputs[0], &inputs[1]);
            if x.dtype == DType::Bool {
                return Err(format!("{mn} is not defined on bool tensors, got {x}"));
            }
            check_index_type(mn, "axes", axes)?;
            if axes.rank() > 1 {
                return Err(format!(
                    "{mn}: axes must be a scalar or a 1-D tensor, got {axes}"
                ));
            }
            let dims = match const_ints(axes_const)? {
                Some(v) => {
                    let reduced = reduction_axes(mn, &v, x.rank())?;
                    reduced_dims(x.shape.dims(), &reduced, *keep_dims)
                }
                // Axes known only at run time: each dim is kept, becomes 1 or goes away.
                None if *keep_dims => x
                    .shape
                    .dims()
                    .iter()
                    .map(|d| match d {
                        Dim::Known(1) => Dim::Known(1),
                        _ => Dim::Unknown,
                    })
                    .collect(),
                None => {
                    let n = match axes.shape.dims() {
                        [] => 1,
                        [Dim::Known(n)] => *n,
                        _ => {
                            return Err(format!(
                                "{mn}: the output rank is unknown: axes {axes} are not a \
                                 constant and their number is not known"
                            ))
                        }
                    };
                    if n > x.rank() {
                        return Err(format!(
                            "{mn}: {n} axes cannot be reduced from a rank-{} tensor {x}",
                            x.rank()
                        ));
                    }
                    vec![Dim::Unknown; x.rank() - n]
                }
            };
            Ok(vec![TensorType::new(x.dtype, Shape(dims))])
        }
        Op::Softmax | Op::LogSoftmax => {
            expect_arity(mn, inputs, 1)?;
            let x = &inputs[0];
            if !x.dtype.is_float() {
                return Err(format!(
                    "{mn} is only defined on floating-point tensors, got {x}"
                ));
            }
            if x.rank() == 0 {
                return Err(format!("{mn} needs at least one axis, got the scalar {x}"));
            }
            Ok(vec![x.clone()])
        }
        Op::ArgMax { output } => {
            expect_arity(mn, inputs, 2)?;
            let (x, axis) = (&inputs[0], &inputs[1]);
            if !matches!(output, DType::I32 | DType::I64) {
                return Err(format!(
                    "{mn}: the output dtype must be i32 or i64, got {output}"
                ));
            }
            check_index_type(mn, "the axis", axis)?;
            if axis.rank() != 0 {
                return Err(format!("{mn}: the axis must be a scalar, got {axis}"));
            }
            if x.rank() == 0 {
                return Err(format!("{mn} needs at least one axis, got the scalar {x}"));
            }
            let dims = match const_ints(axes_const)? {
                Some(v) => {
                    let a = normalize_axis(v[0], x.rank())?;
                    reduced_dims(x.shape.dims(), &[a], false)
                }
                None => vec![Dim::Unknown; x.rank() - 1],
            };
            Ok(vec![TensorType::new(*output, Shape(dims))])
        }
        _ => unreachable!("{op:?} is not a reduce op"),
    }
}

/// Errors unless `t` is i32 or i64, the index types TensorFlow accepts for axes.
fn check_index_type(mn: &str, what: &str, t: &TensorType) -> OpResult<()> {
    if !matches!(t.dtype, DType::I32 | DType::I64) {
        return Err(format!("{mn}: {what} must be i32 or i64, got {t}"));
    }
    Ok(())
}

/// The axes in `axes` as sorted indices in `0..rank`; negative axes count from the end and
/// naming one axis twice is an error.
fn reduction_axes(mn: &str, axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(a, rank).map_err(|e| format!("{mn}: {e}"))?;
        if out.contains(&n) {
            return Err(format!(
                "{mn}: axes {axes:?} name axis {n} twice (rank {rank})"
            ));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// `dims` with the (sorted) `axes` set to 1 or removed.
fn reduced_dims<D: Clone + From<usize>>(dims: &[D], axes: &[usize], keep_dims: bool) -> Vec<D> {
    dims.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keep_dims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(D::from(1)),
            (true, false) => None,
        })
        .collect()
}

/// Evaluates reduce ops.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let mn = op.mnemonic();
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let consts: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    let out = infer(op, &types, &consts)?;
    match op {
        Op::Cumulative {
            kind,
            exclusive,
            reverse,
        } => {
            return Ok(vec![scan::eval_cumulative(
                *kind, *exclusive, *reverse, inputs,
            )?])
        }
        Op::TopK { axis, largest } => return top_k::eval_top_k(*axis, *largest, inputs),
        _ => {}
    }
    let out_shape = out[0]
        .shape
        .as_known()
        .expect("concrete operands give a concrete shape");
    let out_len: usize = out_shape.iter().product();
    let x = inputs[0];
    let result = match op {
        Op::Reduce { kind, keep_dims } => {
            let axes = reduction_axes(mn, &inputs[1].to_i64_vec()?, x.shape().len())?;
            if axes.is_empty() {
                return Ok(vec![x.clone()]);
            }
            let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
            let empty_matters = count == 0 && out_len > 0;
            // A float max (min) of nothing is -inf (+inf), the identity; integers have none.
            if empty_matters
                && matches!(kind, ReduceKind::Max | ReduceKind::Min)
                && !x.dtype().is_float()
            {
                return Err(format!(
                    "{mn}: cannot reduce an empty axis of {} (no identity for {})",
                    x.ty(),
                    if *kind == ReduceKind::Max {
                        "max"
                    } else {
                        "min"
                    }
                ));
            }
            let reduced = match_class!(x,
                float a => Elem::wrap(reduce_float(*kind, a, &axes)),
                int a => {
                    if empty_matters && *kind == ReduceKind::Mean {
                        return Err(format!(
                            "{mn}: the mean of an empty axis of the integer tensor {} \
                             divides by zero",
                            x.ty()
                        ));
                    }
                    Elem::wrap(reduce_int(*kind, a, &axes))
                },
                bool _ => unreachable!("infer rejects bool"),
            );
            if *keep_dims {
                keep_reduced_axes(reduced, &axes)
            } else {
                reduced
            }
        }
        Op::Softmax | Op::LogSoftmax => {
            let log = *op == Op::LogSoftmax;
            crate::tensor_map!(x, a => softmax(a, log))
        }
        Op::ArgMax { output } => {
            let axis = normalize_axis(inputs[1].to_i64_vec()?[0], x.shape().len())?;
            let n = x.shape()[axis];
            if n == 0 && out_len > 0 {
                return Err(format!(
                    "{mn}: cannot take the arg-max of an empty axis of {}",
                    x.ty()
                ));
            }
            if *output == DType::I32 && n > i32::MAX as usize {
                return Err(format!(
                    "{mn}: axis {axis} of {} has {n} entries, too many for i32 indices",
                    x.ty()
                ));
            }
            let idx = crate::tensor_match!(x, a => arg_max(a, axis));
            Tensor::I64(idx).cast(*output)
        }
        _ => unreachable!("{op:?} is not a reduce op"),
    };
    Ok(vec![result])
}

/// Inserts a size-1 axis at each of the (sorted) reduced `axes`.
fn keep_reduced_axes(t: Tensor, axes: &[usize]) -> Tensor {
    crate::tensor_map!(t, a => {
        let mut a = a;
        for &ax in axes {
            a = a.insert_axis(Axis(ax));
        }
        standard(a)
    })
}

/// NaN-propagating maximum (`f64::max` would drop the NaN).
fn max_nan(m: f64, v: f64) -> f64 {
    if m.is_nan() || v > m || v.is_nan() {
        if m.is_nan() {
            m
        } else {
            v
        }
    } else {
        m
    }
}

/// NaN-propagating minimum.
fn min_nan(m: f64, v: f64) -> f64 {
    -max_nan(-m, -v)
}

/// A float reduction over the sorted `axes`, accumulated in f64 and rounded once.
fn reduce_float<T: Elem>(kind: ReduceKind, a: &ArrayD<T>, axes: &[usize]) -> ArrayD<T> {
    let count: usize = axes.iter().map(|&ax| a.shape()[ax]).product();
    let mut acc = a.mapv(|v| v.to_f64());
    // From the last axis down, so the remaining axis numbers stay valid.
    for &ax in axes.iter().rev() {
        acc = acc.map_axis(Axis(ax), |lane| match kind {
            ReduceKind::Sum | ReduceKind::Mean => lane.sum(),
            ReduceKind::Prod => lane.product(),
            ReduceKind::Max => lane.iter().fold(f64::NEG_INFINITY, |m, &v| max_nan(m, v)),
            ReduceKind::Min => lane.iter().fold(f64::INFINITY, |m, &v| min_nan(m, v)),
        });
    }
    if kind == ReduceKind::Mean {
        // One division by the whole count; an empty reduction gives 0 / 0 = NaN.
        let n = count as f64;
        acc.mapv_inplace(|s| s / n);
    }
    standard(acc.mapv(T::from_f64))
}

/// An integer reduction over the sorted `axes`, exact in the dtype (sum and product wrap).
/// Max, min and mean must not see an empty reduction with a non-empty output.
fn reduce_int<T: IntElem>(kind: ReduceKind, a: &ArrayD<T>, axes: &[usize]) -> ArrayD<T> {
    let count: usize = axes.iter().map(|&ax| a.shape()[ax]).product();
    let mut acc = a.clone();
    for &ax in axes.iter().rev() {
        acc = acc.map_axis(Axis(ax), |lane| match kind {
            ReduceKind::Sum | ReduceKind::Mean => lane.iter().fold(T::ZERO, |s, &v| s.add_wrap(v)),
            ReduceKind::Prod => lane.iter().fold(T::ONE, |p, &v| p.mul_wrap(v)),
            ReduceKind::Max => lane.iter().copied().max().unwrap_or(T::ZERO),
            ReduceKind::Min => lane.iter().copied().min().unwrap_or(T::ZERO),
        });
    }
    if kind == ReduceKind::Mean {
        // TensorFlow divides the (wrapped) sum by the count, truncating toward zero. In i128
        // the count always fits, and the quotient is no larger than the sum.
        let n = count as i128;
        acc.mapv_inplace(|s| T::from_i128(s.to_i128() / n));
    }
    standard(acc)
}

/// Softmax (or log-softmax) over the last axis, in f64 after subtracting each row's max so
/// `exp` never overflows.
fn softmax<T: Elem>(a: &ArrayD<T>, log: bool) -> ArrayD<T> {
    let last = Axis(a.ndim() - 1);
    let mut v = a.mapv(|x| x.to_f64());
    for mut row in v.lanes_mut(last) {
        // A row with NaN or +inf gives NaN, and one of all -inf gives NaN, as in TensorFlow.
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &x| max_nan(m, x));
        let sum: f64 = row.iter().map(|&x| (x - m).exp()).sum();
        if log {
            let log_sum = sum.ln();
            row.mapv_inplace(|x| x - m - log_sum);
        } else {
            row.mapv_inplace(|x| (x - m).exp() / sum);
        }
    }
    standard(v.mapv(T::from_f64))
}

/// True for NaN (the only value not equal to itself), for any element type.
fn is_nan<T: Elem>(x: T) -> bool {
    x.partial_cmp(&x).is_none()
}

/// Index of the largest element along `axis`; ties go to the smallest index and the first NaN
/// wins (as in NumPy). The axis must not be empty unless the output is.
fn arg_max<T: Elem>(a: &ArrayD<T>, axis: usize) -> ArrayD<i64> {
    standard(a.map_axis(Axis(axis), |lane| {
        let mut best = 0;
        for (i, &v) in lane.iter().enumerate().skip(1) {
            let b = lane[best];
            if is_nan(b) {
                break;
            }
            if v > b || is_nan(v) {
                best = i;
            }
        }
        best as i64
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates `op`, checking that `infer` (with constant operands) promised the dtype and
    /// shape `eval` produced.
    fn run(op: Op, inputs: &[&Tensor]) -> Tensor {
        let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let consts: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let ty = op.infer(&types, &consts).unwrap().remove(0);
        let out = op.eval(inputs).unwrap().remove(0);
        assert_eq!(out.ty(), ty, "{op}: eval disagrees with infer");
        out
    }

    fn reduce(kind: ReduceKind, keep_dims: bool) -> Op {
        Op::Reduce { kind, keep_dims }
    }

    fn axes(v: &[i64]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec())
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec())
    }

    fn vals(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec()
    }

    /// [[1, 2, 3], [4, 5, 6]].
    fn m23() -> Tensor {
        f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn sum_mean_max_min_prod_over_one_axis() {
        use ReduceKind::*;
        let x = m23();
        let cases = [
            (Sum, [5.0, 7.0, 9.0].as_slice(), [6.0, 15.0].as_slice()),
            (Mean, &[2.5, 3.5, 4.5], &[2.0, 5.0]),
            (Max, &[4.0, 5.0, 6.0], &[3.0, 6.0]),
            (Min, &[1.0, 2.0, 3.0], &[1.0, 4.0]),
            (Prod, &[4.0, 10.0, 18.0], &[6.0, 120.0]),
        ];
        for (kind, over0, over1) in cases {
            let out = run(reduce(kind, false), &[&x, &axes(&[0])]);
            assert_eq!(out.shape(), [3]);
            assert_eq!(vals(&out), over0, "{kind:?} over axis 0");
            let out = run(reduce(kind, true), &[&x, &axes(&[1])]);
            assert_eq!(out.shape(), [2, 1]);
            assert_eq!(vals(&out), over1, "{kind:?} over axis 1");
        }
    }

    #[test]
    fn keep_dims_negative_and_multiple_axes() {
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let x = f32s(&[2, 3, 4], &x);
        let sum = reduce(ReduceKind::Sum, false);
        let sum_keep = reduce(ReduceKind::Sum, true);
        // Axis -1 is axis 2: the sums of each row of 4.
        let out = run(sum.clone(), &[&x, &axes(&[-1])]);
        assert_eq!(out.shape(), [2, 3]);
        assert_eq!(vals(&out), [6.0, 22.0, 38.0, 54.0, 70.0, 86.0]);
        // Axes 0 and 2 (given as -3, 2 in any order): for row j, sum over i and k.
        let out = run(sum_keep.clone(), &[&x, &axes(&[2, -3])]);
        assert_eq!(out.shape(), [1, 3, 1]);
        assert_eq!(vals(&out), [6.0 + 54.0, 22.0 + 70.0, 38.0 + 86.0]);
        // A scalar axis (i32).
        let out = run(sum.clone(), &[&x, &Tensor::scalar(1i32)]);
        assert_eq!(out.shape(), [2, 4]);
        assert_eq!(vals(&out)[..4], [12.0, 15.0, 18.0, 21.0]);
        // Every axis.
        let out = run(sum.clone(), &[&x, &axes(&[0, 1, 2])]);
        assert_eq!(out.shape(), [] as [usize; 0]);
        assert_eq!(vals(&out), [276.0]);
        let out = run(sum_keep, &[&x, &axes(&[0, 1, 2])]);
        assert_eq!(out.shape(), [1, 1, 1]);
        // No axes: no reduction, even with keep_dims false.
        let out = run(sum, &[&x, &axes(&[])]);
        assert_eq!(out, x);
    }

    #[test]
    fn float_sums_accumulate_in_f64() {
        // In f32, 1e8 + 1 rounds back to 1e8 and the sum would be 0.
        let x = f32s(&[3], &[1e8, 1.0, -1e8]);
        let out = run(reduce(ReduceKind::Sum, false), &[&x, &axes(&[0])]);
        assert_eq!(vals(&out), [1.0]);
        let out = run(reduce(ReduceKind::Mean, false), &[&x, &axes(&[0])]);
        assert_eq!(vals(&out), [(1.0f32 / 3.0) as f64]);
    }

    #[test]
    fn integer_reductions_are_exact_in_the_dtype() {
        use ReduceKind::*;
        let x = Tensor::from_vec(&[2, 2], vec![1i32, 2, -1, -2]);
        let out = run(reduce(Mean, false), &[&x, &axes(&[1])]);
        assert_eq!(out.dtype(), DType::I32);
        // 3 / 2 and -3 / 2 truncate toward zero, as TensorFlow's integer mean does.
        assert_eq!(out.to_i64_vec().unwrap(), [1, -1]);
        let out = run(reduce(Sum, false), &[&x, &axes(&[0])]);
        assert_eq!(out.to_i64_vec().unwrap(), [0, 0]);
        let out = run(reduce(Max, false), &[&x, &axes(&[-1])]);
        assert_eq!(out.to_i64_vec().unwrap(), [2, -1]);
        let out = run(reduce(Min, true), &[&x, &axes(&[0])]);
        assert_eq!(out.to_i64_vec().unwrap(), [-1, -2]);
        let out = run(reduce(Prod, false), &[&x, &axes(&[0, 1])]);
        assert_eq!(out.to_i64_vec().unwrap(), [4]);
        // Sums wrap: 100 + 100 = 200 = -56 in i8.
        let b = Tensor::from_vec(&[2], vec![100i8, 100]);
        let out = run(reduce(Sum, false), &[&b, &axes(&[0])]);
        assert_eq!(out.to_i64_vec().unwrap(), [-56]);
        // Large i64 values stay exact (no trip through f64).
        let big = Tensor::from_vec(&[2], vec![i64::MAX - 1, i64::MAX]);
        let out = run(reduce(Max, false), &[&big, &axes(&[0])]);
        assert_eq!(out.to_i64_vec().unwrap(), [i64::MAX]);
        let out = run(reduce(Mean, false), &[&big, &axes(&[0])]);
        // The wrapped sum is -3; -3 / 2 = -1.
        assert_eq!(out.to_i64_vec().unwrap(), [-1]);
    }

    #[test]
    fn reductions_of_empty_axes() {
        use ReduceKind::*;
        let x = f32s(&[2, 0], &[]);
        let ax = axes(&[1]);
        assert_eq!(vals(&run(reduce(Sum, false), &[&x, &ax])), [0.0, 0.0]);
        assert_eq!(vals(&run(reduce(Prod, false), &[&x, &ax])), [1.0, 1.0]);
        let mean = vals(&run(reduce(Mean, true), &[&x, &ax]));
        assert!(
            mean.len() == 2 && mean.iter().all(|m| m.is_nan()),
            "{mean:?}"
        );
        let max = vals(&run(reduce(Max, false), &[&x, &ax]));
        assert_eq!(max, [f64::NEG_INFINITY; 2]);
        let min = vals(&run(reduce(Min, false), &[&x, &ax]));
        assert_eq!(min, [f64::INFINITY; 2]);
        let xi = Tensor::from_vec(&[2, 0], Vec::<i32>::new());
        let e = reduce(Max, false).eval(&[&xi, &ax]).unwrap_err();
        assert_eq!(
            e,
            "reduce_max: cannot reduce an empty axis of i32[2,0] (no identity for max)"
        );
        let xi = Tensor::from_vec(&[2, 0], Vec::<i32>::new());
        let e = reduce(Mean, false).eval(&[&xi, &ax]).unwrap_err();
        assert!(e.contains("divides by zero"), "{e}");
        // Reducing the non-empty axis of an empty tensor is fine: nothing to compute.
        let out = run(reduce(Max, false), &[&x, &axes(&[0])]);
        assert_eq!(out.shape(), [0]);
    }

    #[test]
    fn max_and_min_propagate_nan() {
        let x = f32s(&[2, 2], &[1.0, f32::NAN, 3.0, 2.0]);
        let out = vals(&run(reduce(ReduceKind::Max, false), &[&x, &axes(&[1])]));
        assert!(out[0].is_nan());
        assert_eq!(out[1], 3.0);
        let out = vals(&run(reduce(ReduceKind::Min, false), &[&x, &axes(&[1])]));
        assert!(out[0].is_nan());
        assert_eq!(out[1], 2.0);
    }

    #[test]
    fn reduce_infer_with_and_without_constant_axes() {
        let sym = TensorType::new(
            DType::F32,
            Shape(vec![Dim::sym("n"), Dim::Known(3), Dim::Known(1)]),
        );
        let ax_ty = TensorType::known(DType::I64, &[1]);
        let ax = axes(&[1]);
        let out = reduce(ReduceKind::Sum, false)
            .infer(&[sym.clone(), ax_ty.clone()], &[None, Some(&ax)])
            .unwrap();
        assert_eq!(out[0].to_string(), "f32[?n,1]");
        let out = reduce(ReduceKind::Sum, true)
            .infer(&[sym.clone(), ax_ty.clone()], &[None, Some(&ax)])
            .unwrap();
        assert_eq!(out[0].to_string(), "f32[?n,1,1]");
        // Axes not constant: the rank follows from their number.
        let out = reduce(ReduceKind::Sum, false)
            .infer(&[sym.clone(), ax_ty.clone()], &[None, None])
            .unwrap();
        assert_eq!(out[0].to_string(), "f32[?,?]");
        let out = reduce(ReduceKind::Sum, false)
            .infer(
                &[sym.clone(), TensorType::scalar(DType::I32)],
                &[None, None],
            )
            .unwrap();
        assert_eq!(out[0].to_string(), "f32[?,?]");
        let out = reduce(ReduceKind::Mean, true)
            .infer(&[sym.clone(), ax_ty], &[None, None])
            .unwrap();
        assert_eq!(out[0].to_string(), "f32[?,?,1]");
        let unknown_len = TensorType::new(DType::I32, Shape(vec![Dim::sym("k")]));
        let e = reduce(ReduceKind::Sum, false)
            .infer(&[sym.clone(), unknown_len.clone()], &[None, None])
            .unwrap_err();
        assert_eq!(
            e,
            "reduce_sum: the output rank is unknown: axes i32[?k] are not a constant and \
             their number is not known"
        );
        // keep_dims needs no count.
        let out = reduce(ReduceKind::Sum, true)
            .infer(&[sym.clone(), unknown_len], &[None, None])
            .unwrap();
        assert_eq!(out[0].rank(), 3);
        let e = reduce(ReduceKind::Sum, false)
            .infer(&[sym, TensorType::known(DType::I32, &[4])], &[None, None])
            .unwrap_err();
        assert!(
            e.contains("4 axes cannot be reduced from a rank-3 tensor"),
            "{e}"
        );
    }

    #[test]
    fn reduce_errors() {
        let sum = reduce(ReduceKind::Sum, false);
        let x = m23();
        let e = sum.eval(&[&x, &axes(&[1, -1])]).unwrap_err();
        assert_eq!(e, "reduce_sum: axes [1, -1] name axis 1 twice (rank 2)");
        let e = sum.eval(&[&x, &axes(&[2])]).unwrap_err();
        assert_eq!(e, "reduce_sum: axis 2 is out of range for rank 2");
        let e = sum.eval(&[&x, &f32s(&[1], &[0.0])]).unwrap_err();
        assert_eq!(e, "reduce_sum: axes must be i32 or i64, got f32[1]");
        let e = sum
            .eval(&[&x, &Tensor::from_vec(&[1, 1], vec![0i64])])
            .unwrap_err();
        assert_eq!(
            e,
            "reduce_sum: axes must be a scalar or a 1-D tensor, got i64[1,1]"
        );
        let e = sum.eval(&[&x]).unwrap_err();
        assert_eq!(e, "reduce_sum takes 2 inputs, got 1");
        let b = Tensor::from_vec(&[2], vec![true, false]);
        let e = reduce(ReduceKind::Max, false)
            .eval(&[&b, &axes(&[0])])
            .unwrap_err();
        assert_eq!(e, "reduce_max is not defined on bool tensors, got bool[2]");
    }

    #[test]
    fn softmax_rows_sum_to_one_and_are_stable() {
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 1000.0, 1000.0, 0.0]);
        let out = vals(&run(Op::Softmax, &[&x]));
        assert_close(
            &out[..3],
            &[0.09003057317038046, 0.24472847105479767, 0.6652409557748219],
            1e-7,
        );
        // exp(1000) overflows; subtracting the row max keeps it exact.
        assert_eq!(out[3..], [0.5, 0.5, 0.0]);
        for row in out.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{row:?}");
        }
        let out = vals(&run(Op::LogSoftmax, &[&x]));
        assert_close(
            &out[..3],
            &[
                -2.4076059644443806,
                -1.4076059644443804,
                -0.4076059644443804,
            ],
            1e-6,
        );
        assert_close(
            &out[3..],
            &[
                -std::f64::consts::LN_2,
                -std::f64::consts::LN_2,
                -1000.0 - std::f64::consts::LN_2,
            ],
            1e-4,
        );
        // Over the last axis of a 3-D tensor, in f64 too.
        let y = Tensor::from_vec(&[2, 1, 2], vec![0.0f64, 0.0, -1000.0, 1000.0]);
        assert_eq!(vals(&run(Op::Softmax, &[&y])), [0.5, 0.5, 0.0, 1.0]);
    }

    #[test]
    fn softmax_errors() {
        let e = Op::Softmax
            .eval(&[&Tensor::from_vec(&[2], vec![1i32, 2])])
            .unwrap_err();
        assert_eq!(
            e,
            "softmax is only defined on floating-point tensors, got i32[2]"
        );
        let e = Op::LogSoftmax.eval(&[&Tensor::scalar(1.0f32)]).unwrap_err();
        assert_eq!(
            e,
            "log_softmax needs at least one axis, got the scalar f32[]"
        );
    }

    #[test]
    fn arg_max_picks_the_first_largest() {
        let x = f32s(&[2, 3], &[1.0, 3.0, 3.0, 5.0, 2.0, 5.0]);
        let am = |output, axis: i64| run(Op::ArgMax { output }, &[&x, &Tensor::scalar(axis)]);
        let out = am(DType::I64, 1);
        assert_eq!(out.dtype(), DType::I64);
        assert_eq!(out.to_i64_vec().unwrap(), [1, 0]);
        let out = am(DType::I32, -1);
        assert_eq!(out.dtype(), DType::I32);
        assert_eq!(out.shape(), [2]);
        assert_eq!(out.to_i64_vec().unwrap(), [1, 0]);
        let out = am(DType::I32, 0);
        assert_eq!(out.shape(), [3]);
        assert_eq!(out.to_i64_vec().unwrap(), [1, 0, 1]);
        let ints = Tensor::from_vec(&[4], vec![u64::MAX - 1, 3, u64::MAX, 0]);
        let out = run(
            Op::ArgMax { output: DType::I64 },
            &[&ints, &Tensor::scalar(0i32)],
        );
        assert_eq!(out.to_i64_vec().unwrap(), [2]);
        let nan = f32s(&[3], &[1.0, f32::NAN, 9.0]);
        let out = run(
            Op::ArgMax { output: DType::I64 },
            &[&nan, &Tensor::scalar(0i32)],
        );
        assert_eq!(out.to_i64_vec().unwrap(), [1]);
    }

    #[test]
    fn arg_max_infer_and_errors() {
        let x = TensorType::new(DType::F32, Shape(vec![Dim::sym("n"), Dim::Known(10)]));
        let s = TensorType::scalar(DType::I32);
        let one = Tensor::scalar(1i32);
        let op = Op::ArgMax { output: DType::I64 };
        let out = op
            .infer(&[x.clone(), s.clone()], &[None, Some(&one)])
            .unwrap();
        assert_eq!(out[0].to_string(), "i64[?n]");
        let out = op.infer(&[x.clone(), s.clone()], &[None, None]).unwrap();
        assert_eq!(out[0].to_string(), "i64[?]");
        let e = Op::ArgMax { output: DType::F32 }
            .infer(&[x.clone(), s], &[None, None])
            .unwrap_err();
        assert_eq!(e, "arg_max: the output dtype must be i32 or i64, got f32");
        let e = op
            .infer(&[x, TensorType::known(DType::I32, &[1])], &[None, None])
            .unwrap_err();
        assert_eq!(e, "arg_max: the axis must be a scalar, got i32[1]");
        let e = op.eval(&[&m23(), &Tensor::scalar(2i64)]).unwrap_err();
        assert_eq!(e, "axis 2 is out of range for rank 2");
        let empty = f32s(&[2, 0], &[]);
        let e = op.eval(&[&empty, &Tensor::scalar(1i64)]).unwrap_err();
        assert_eq!(
            e,
            "arg_max: cannot take the arg-max of an empty axis of f32[2,0]"
        );
    }
}
