//! `top_k`: the `k` largest (or smallest) values along one axis, in order, with their i64
//! indices (ONNX TopK, always sorted). NaN ranks above every number, as in NumPy's sort; equal
//! values keep the lower index first ([`top_k_order`] is the one rule, which the CPU kernel
//! shares).

use super::check_index_type;
use crate::ops::common::{const_ints, expect_arity, normalize_axis};
use crate::ops::OpResult;
use crate::{tensor_match, DType, Dim, Elem, Shape, Tensor, TensorType};
use ndarray::{ArrayD, Axis, IxDyn};
use std::cmp::Ordering;

/// Whether `a` comes before `b` in the output, or neither (equal, so index order decides):
/// descending for `largest`, else ascending, NaN ranking above every number.
pub fn top_k_order<T: PartialOrd>(largest: bool, a: &T, b: &T) -> Ordering {
    #[allow(clippy::eq_op)]
    let nan = |v: &T| v != v;
    let up = match (nan(a), nan(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    };
    if largest {
        up.reverse()
    } else {
        up
    }
}

pub(super) fn infer_top_k(
    axis: i64,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<Vec<TensorType>> {
    expect_arity("top_k", inputs, 2)?;
    let (x, k) = (&inputs[0], &inputs[1]);
    check_index_type("top_k", "k", k)?;
    let single = k.rank() == 1 && k.shape.0[0].known() == Some(1);
    if k.rank() != 0 && !single {
        return Err(format!(
            "top_k: k must be a scalar or a 1-element vector, got {k}"
        ));
    }
    if x.rank() == 0 {
        return Err(format!("top_k needs at least one axis, got the scalar {x}"));
    }
    let ax = normalize_axis(axis, x.rank()).map_err(|e| format!("top_k: {e}"))?;
    let mut dims = x.shape.0.clone();
    dims[ax] = match const_ints(consts.get(1).copied().flatten())? {
        Some(v) => Dim::Known(check_k(v[0], &x.shape.0[ax], x)?),
        None => Dim::Unknown,
    };
    Ok(vec![
        TensorType::new(x.dtype, Shape(dims.clone())),
        TensorType::new(DType::I64, Shape(dims)),
    ])
}

/// `k` as a count, checked against the axis it takes from.
pub fn check_k(k: i64, axis: &Dim, x: &TensorType) -> OpResult<usize> {
    let n = axis.known();
    match usize::try_from(k) {
        Ok(k) if n.is_none_or(|n| k <= n) => Ok(k),
        _ => Err(format!(
            "top_k: k = {k} is not in [0, {}] (the axis of {x})",
            n.map_or("?".into(), |n| n.to_string())
        )),
    }
}

fn top_k_of<T: Elem>(
    a: &ArrayD<T>,
    ax: usize,
    k: usize,
    largest: bool,
) -> (ArrayD<T>, ArrayD<i64>) {
    let mut dims = a.shape().to_vec();
    dims[ax] = k;
    let mut values = ArrayD::from_elem(IxDyn(&dims), T::default());
    let mut indices = ArrayD::from_elem(IxDyn(&dims), 0i64);
    let lanes = a.lanes(Axis(ax)).into_iter();
    let outs = values.lanes_mut(Axis(ax)).into_iter();
    let outi = indices.lanes_mut(Axis(ax)).into_iter();
    for ((lane, mut v), mut i) in lanes.zip(outs).zip(outi) {
        let mut order: Vec<usize> = (0..lane.len()).collect();
        // A stable sort: equal values keep the lower index first.
        order.sort_by(|&p, &q| top_k_order(largest, &lane[p], &lane[q]));
        for (j, &src) in order.iter().take(k).enumerate() {
            v[j] = lane[src];
            i[j] = src as i64;
        }
    }
    (values, indices)
}

pub(super) fn eval_top_k(axis: i64, largest: bool, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let x = inputs[0];
    let ax = normalize_axis(axis, x.shape().len()).map_err(|e| format!("top_k: {e}"))?;
    let k = check_k(
        inputs[1].to_i64_vec()?[0],
        &Dim::Known(x.shape()[ax]),
        &x.ty(),
    )?;
    let (values, indices) = tensor_match!(x, a => {
        let (v, i) = top_k_of(a, ax, k, largest);
        (Elem::wrap(v), Tensor::I64(i))
    });
    Ok(vec![values, indices])
}

#[cfg(test)]
mod tests {
    use crate::{DType, Op, Tensor};

    fn top_k(x: &Tensor, k: i64, axis: i64, largest: bool) -> (Vec<f64>, Vec<i64>) {
        let op = Op::TopK { axis, largest };
        let out = op.eval(&[x, &Tensor::from_vec(&[1], vec![k])]).unwrap();
        (out[0].to_f64_vec(), out[1].to_i64_vec().unwrap())
    }

    #[test]
    fn top_k_known_values() {
        let x = Tensor::from_vec(&[2, 4], vec![0.0f32, 3.0, 1.0, 3.0, 7.0, -1.0, 7.0, 2.0]);
        assert_eq!(
            top_k(&x, 3, 1, true),
            (vec![3.0, 3.0, 1.0, 7.0, 7.0, 2.0], vec![1, 3, 2, 0, 2, 3])
        );
        assert_eq!(
            top_k(&x, 2, -1, false),
            (vec![0.0, 1.0, -1.0, 2.0], vec![0, 2, 1, 3])
        );
        assert_eq!(
            top_k(&x, 1, 0, true),
            (vec![7.0, 3.0, 7.0, 3.0], vec![1, 0, 1, 0])
        );
        assert_eq!(top_k(&x, 0, 1, true), (vec![], vec![]));
        // NaN ranks above every number, both ways.
        let n = Tensor::from_vec(&[3], vec![1.0f64, f64::NAN, 2.0]);
        let (v, i) = top_k(&n, 2, 0, true);
        assert!(v[0].is_nan() && v[1] == 2.0 && i == [1, 2]);
        assert_eq!(top_k(&n, 2, 0, false), (vec![1.0, 2.0], vec![0, 2]));
        // u64 beyond i64.
        let u = Tensor::from_vec(&[3], vec![u64::MAX, 1, u64::MAX - 1]);
        assert_eq!(top_k(&u, 2, 0, true).1, [0, 2]);
        let op = Op::TopK {
            axis: 1,
            largest: true,
        };
        let e = op.eval(&[&x, &Tensor::scalar(5i64)]).unwrap_err();
        assert!(e.contains("k = 5 is not in [0, 4]"), "{e}");
        let e = op.eval(&[&x, &Tensor::scalar(-1i64)]).unwrap_err();
        assert!(e.contains("k = -1 is not in [0, 4]"), "{e}");
        let t = op.infer(&[x.ty(), Tensor::scalar(2i32).ty()], &[]).unwrap();
        assert_eq!(t[0].to_string(), "f32[2,?]");
        assert_eq!(t[1].dtype, DType::I64);
    }
}
