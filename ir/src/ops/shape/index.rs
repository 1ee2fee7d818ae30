//! ONNX's element-wise indexing reads: `gather_elements` (one index per output element, along
//! one axis) and `gather_nd` (index tuples addressing the leading axes of `params`).
//!
//! Indices follow ONNX: a negative index counts from the end of its axis, and one outside
//! `[-n, n)` is an error naming it ([`resolve_index`] is the one rule, which the CPU kernels
//! share).

use super::{arg, expect_index, merge_dim};
use crate::ops::common::{expect_arity, normalize_axis};
use crate::ops::OpResult;
use crate::with_dtype;
use crate::{Dim, Elem, Shape, Tensor, TensorType};
use ndarray::{ArrayD, Dimension, IxDyn};

/// Index `i` into an axis of `n` entries: negative counts from the end; `None` outside
/// `[-n, n)`.
pub fn resolve_index(i: i64, n: usize) -> Option<usize> {
    let n = i64::try_from(n).ok()?;
    let j = if i < 0 { i.checked_add(n)? } else { i };
    (0..n).contains(&j).then_some(j as usize)
}

/// The error for index `value` at position `at` of the indices, outside axis `axis` (of `n`
/// entries) of `x`.
pub(super) fn out_of_range(
    op: &str,
    at: &[usize],
    value: i64,
    n: usize,
    axis: usize,
    x: &TensorType,
) -> String {
    let at: Vec<String> = at.iter().map(usize::to_string).collect();
    format!(
        "{op}: indices[{}] = {value} is not in [-{n}, {n}) (axis {axis} of {x})",
        at.join(",")
    )
}

/// Errors unless every index of the constant `indices` is in range: the one at flat position
/// `p` indexes the axis `axis_of(p)` says (with its size, when known). Run-time checks stay
/// in `eval` and the kernels; this one lets the verifier (and passes that move an op, trusting
/// it cannot fail) see bad constant indices.
pub(super) fn check_const_indices(
    op: &str,
    indices: Option<&Tensor>,
    x: &TensorType,
    axis_of: impl Fn(usize) -> usize,
) -> OpResult<()> {
    let Some(indices) = indices else {
        return Ok(());
    };
    for (p, &v) in indices.to_i64_vec()?.iter().enumerate() {
        let axis = axis_of(p);
        if let Some(Dim::Known(n)) = x.shape.0.get(axis) {
            if resolve_index(v, *n).is_none() {
                let at = ndarray::indices(indices.shape())
                    .into_iter()
                    .nth(p)
                    .map(|at| at.slice().to_vec())
                    .unwrap_or_default();
                return Err(out_of_range(op, &at, v, *n, axis, x));
            }
        }
    }
    Ok(())
}

/// Errors unless each axis of `indices` but `axis` is no longer than that axis of `x` (the
/// index's position along those axes is also its position in `x`).
pub(super) fn expect_within(
    op: &str,
    x: &TensorType,
    indices: &TensorType,
    axis: usize,
) -> OpResult<()> {
    for (d, (xd, id)) in x.shape.0.iter().zip(&indices.shape.0).enumerate() {
        if let (Dim::Known(xn), Dim::Known(i_n)) = (xd, id) {
            if d != axis && i_n > xn {
                return Err(format!(
                    "{op}: axis {d} of indices {indices} is longer than that of x {x}"
                ));
            }
        }
    }
    Ok(())
}

/// `gather_elements`: the output has the shape of `indices`.
pub(super) fn infer_gather_elements(
    axis: i64,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    expect_arity("gather_elements", inputs, 2)?;
    let (x, indices) = (&inputs[0], &inputs[1]);
    expect_index("gather_elements's indices (input 1)", indices)?;
    if x.rank() == 0 || indices.rank() != x.rank() {
        return Err(format!(
            "gather_elements: indices {indices} must have the rank of x {x} (at least 1)"
        ));
    }
    let ax = normalize_axis(axis, x.rank()).map_err(|e| format!("gather_elements: {e}"))?;
    expect_within("gather_elements", x, indices, ax)?;
    check_const_indices("gather_elements", arg(consts, 1), x, |_| ax)?;
    Ok(TensorType::new(x.dtype, indices.shape.clone()))
}

fn gather_elements_of<T: Elem>(x: &Tensor, idx: &ArrayD<i64>, ax: usize) -> OpResult<Tensor> {
    let a = T::view(x).ok_or("internal error: dtype mismatch in gather_elements")?;
    let n = a.shape()[ax];
    let mut vals = Vec::with_capacity(idx.len());
    for at in ndarray::indices(idx.shape()) {
        let mut src = at.clone();
        let v = idx[&at];
        src[ax] = resolve_index(v, n)
            .ok_or_else(|| out_of_range("gather_elements", at.slice(), v, n, ax, &x.ty()))?;
        vals.push(a[&src]);
    }
    let y = ArrayD::from_shape_vec(IxDyn(idx.shape()), vals).map_err(|e| e.to_string())?;
    Ok(T::wrap(y))
}

/// `indices` as an i64 array of its shape.
pub(super) fn index_array(indices: &Tensor) -> OpResult<ArrayD<i64>> {
    ArrayD::from_shape_vec(IxDyn(indices.shape()), indices.to_i64_vec()?).map_err(|e| e.to_string())
}

pub(super) fn eval_gather_elements(axis: i64, inputs: &[&Tensor]) -> OpResult<Tensor> {
    let x = inputs[0];
    let ax = normalize_axis(axis, x.shape().len())?;
    let idx = index_array(inputs[1])?;
    with_dtype!(x.dtype(), gather_elements_of(x, &idx, ax))
}

/// The length of the index tuples (the last axis of `indices`), which must be known.
pub(super) fn tuple_len(op: &str, indices: &TensorType) -> OpResult<usize> {
    match indices.shape.0.last() {
        Some(Dim::Known(m)) => Ok(*m),
        Some(_) => Err(format!(
            "{op}: the last axis of indices {indices} must have a known size"
        )),
        None => Err(format!("{op}: indices must be at least 1-D, got {indices}")),
    }
}

/// `gather_nd`: `indices[:-1] + params[batch_dims + m:]`, `m` the tuples' length.
pub(super) fn infer_gather_nd(
    batch_dims: usize,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    expect_arity("gather_nd", inputs, 2)?;
    let (params, indices) = (&inputs[0], &inputs[1]);
    expect_index("gather_nd's indices (input 1)", indices)?;
    let m = tuple_len("gather_nd", indices)?;
    let (r, q) = (params.rank(), indices.rank());
    if batch_dims >= r.min(q) {
        return Err(format!(
            "gather_nd: batch_dims {batch_dims} must be less than the ranks of params {params} \
             and indices {indices}"
        ));
    }
    if m == 0 || m > r - batch_dims {
        return Err(format!(
            "gather_nd: index tuples of {m} entries do not address params {params} after \
             {batch_dims} batch dims (1 to {} entries)",
            r - batch_dims
        ));
    }
    check_const_indices("gather_nd", arg(consts, 1), params, |p| batch_dims + p % m)?;
    let mut dims = Vec::with_capacity(q - 1 + r - batch_dims - m);
    for i in 0..batch_dims {
        let (p, b) = (&params.shape.0[i], &indices.shape.0[i]);
        dims.push(merge_dim(p, b).ok_or_else(|| {
            format!("gather_nd: batch dim {i} differs: params {params} has {p}, indices {b}")
        })?);
    }
    dims.extend_from_slice(&indices.shape.0[batch_dims..q - 1]);
    dims.extend_from_slice(&params.shape.0[batch_dims + m..]);
    Ok(TensorType::new(params.dtype, Shape(dims)))
}

fn gather_nd_of<T: Elem>(
    params: &Tensor,
    idx: &ArrayD<i64>,
    bd: usize,
    out: &[usize],
) -> OpResult<Tensor> {
    let p = T::view(params).ok_or("internal error: dtype mismatch in gather_nd")?;
    let q = idx.ndim();
    let m = idx.shape()[q - 1];
    let mut vals = Vec::with_capacity(out.iter().product());
    for o in ndarray::indices(out) {
        // Output index = indices[:-1] (batch first), then params[bd + m:].
        let mut src: Vec<usize> = o.slice()[..bd].to_vec();
        let mut at: Vec<usize> = o.slice()[..q - 1].to_vec();
        at.push(0);
        for j in 0..m {
            at[q - 1] = j;
            let (v, n) = (idx[&at[..]], p.shape()[bd + j]);
            let i = resolve_index(v, n)
                .ok_or_else(|| out_of_range("gather_nd", &at, v, n, bd + j, &params.ty()))?;
            src.push(i);
        }
        src.extend_from_slice(&o.slice()[q - 1..]);
        vals.push(p[&src[..]]);
    }
    let y = ArrayD::from_shape_vec(IxDyn(out), vals).map_err(|e| e.to_string())?;
    Ok(T::wrap(y))
}

pub(super) fn eval_gather_nd(bd: usize, inputs: &[&Tensor], out: &[usize]) -> OpResult<Tensor> {
    let idx = index_array(inputs[1])?;
    with_dtype!(inputs[0].dtype(), gather_nd_of(inputs[0], &idx, bd, out))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::{DType, Op};

    fn i64s(dims: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_vec(dims, v.to_vec())
    }

    #[test]
    fn negative_indices_count_from_the_end() {
        assert_eq!(resolve_index(-1, 3), Some(2));
        assert_eq!(resolve_index(-3, 3), Some(0));
        assert_eq!(resolve_index(-4, 3), None);
        assert_eq!(resolve_index(3, 3), None);
        assert_eq!(resolve_index(i64::MIN, 3), None);
        assert_eq!(resolve_index(0, 0), None);
    }

    #[test]
    fn gather_elements_known_values() {
        // ONNX's example: axis 1 of [[1, 2], [3, 4]] at [[0, 0], [1, 0]].
        let x = Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        let op = Op::GatherElements { axis: 1 };
        let y = eval1(&op, &[&x, &i64s(&[2, 2], &[0, 0, 1, 0])]);
        assert_eq!(vals(&y), (vec![2, 2], vec![1.0, 1.0, 4.0, 3.0]));
        // Axis 0, negative indices, an output smaller than x.
        let x = iota(&[3, 3]);
        let op = Op::GatherElements { axis: 0 };
        let y = eval1(&op, &[&x, &i64s(&[2, 3], &[-1, 0, 2, 1, -2, 0])]);
        assert_eq!(vals(&y), (vec![2, 3], vec![6.0, 1.0, 8.0, 3.0, 4.0, 2.0]));
        let e = eval_err(&op, &[&x, &i64s(&[1, 2], &[0, 3])]);
        assert!(
            e.contains("indices[0,1] = 3 is not in [-3, 3) (axis 0 of f32[3,3])"),
            "{e}"
        );
        let e = eval_err(&op, &[&x, &i64s(&[1, 4], &[0, 0, 0, 0])]);
        assert!(e.contains("axis 1 of indices i64[1,4] is longer"), "{e}");
        let e = eval_err(&op, &[&x, &i64s(&[3], &[0, 0, 0])]);
        assert!(e.contains("must have the rank of x"), "{e}");
    }

    #[test]
    fn gather_nd_known_values() {
        let x = iota(&[2, 2]);
        let op = Op::GatherNd { batch_dims: 0 };
        // Whole elements, then rows.
        let y = eval1(&op, &[&x, &i64s(&[2, 2], &[0, 0, 1, 1])]);
        assert_eq!(vals(&y), (vec![2], vec![0.0, 3.0]));
        let y = eval1(&op, &[&x, &i64s(&[2, 1], &[1, -2])]);
        assert_eq!(vals(&y), (vec![2, 2], vec![2.0, 3.0, 0.0, 1.0]));
        // ONNX's batch_dims = 1 example: [[[0,1],[2,3]],[[4,5],[6,7]]] at [[1],[0]].
        let x = iota(&[2, 2, 2]);
        let op = Op::GatherNd { batch_dims: 1 };
        let y = eval1(&op, &[&x, &i64s(&[2, 1], &[1, 0])]);
        assert_eq!(vals(&y), (vec![2, 2], vec![2.0, 3.0, 4.0, 5.0]));
        let e = eval_err(&op, &[&x, &i64s(&[2, 1], &[1, 2])]);
        assert!(
            e.contains("indices[1,0] = 2 is not in [-2, 2) (axis 1 of f32[2,2,2])"),
            "{e}"
        );
        let e = eval_err(&op, &[&x, &i64s(&[2, 3], &[0; 6])]);
        assert!(e.contains("tuples of 3 entries do not address"), "{e}");
    }

    #[test]
    fn gather_nd_types() {
        let op = Op::GatherNd { batch_dims: 1 };
        let t = infer1(
            &op,
            &[
                sty(DType::F32, &["?b", "4", "5"]),
                sty(DType::I32, &["3", "?n", "1"]),
            ],
            &[],
        );
        assert_eq!(t, "f32[3,?n,5]");
        let e = infer_err(
            &op,
            &[ty(DType::F32, &[2, 4]), sty(DType::I32, &["2", "?"])],
            &[],
        );
        assert!(e.contains("must have a known size"), "{e}");
        // Constant indices are checked where the axis they index has a known size.
        let i = i64s(&[2, 1], &[1, 4]);
        let types = [sty(DType::F32, &["?", "4"]), i.ty()];
        let e = infer_err(&op, &types, &[None, Some(&i)]);
        assert!(
            e.contains("indices[1,0] = 4 is not in [-4, 4) (axis 1 of f32[?,4])"),
            "{e}"
        );
        let types = [sty(DType::F32, &["2", "?"]), i.ty()];
        assert_eq!(infer1(&op, &types, &[None, Some(&i)]), "f32[2]");
    }
}
