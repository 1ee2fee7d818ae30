//! `cumsum`: the running sum along one axis (ONNX CumSum), inclusive or exclusive, forward or
//! from the end. Floats accumulate in f64 from +0 and round each output once; integers wrap in
//! their own type. The axis is an input, read when the op runs (the shape does not depend on
//! it).

use super::check_index_type;
use crate::ops::common::{expect_arity, normalize_axis};
use crate::ops::elementwise::{match_class, IntElem};
use crate::ops::OpResult;
use crate::{Elem, Tensor, TensorType};
use ndarray::{ArrayD, Axis};

pub(super) fn infer_cumsum(
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    expect_arity("cumsum", inputs, 2)?;
    let (x, axis) = (&inputs[0], &inputs[1]);
    check_index_type("cumsum", "the axis", axis)?;
    let single = axis.rank() == 1 && axis.shape.0[0].known() == Some(1);
    if axis.rank() != 0 && !single {
        return Err(format!(
            "cumsum: the axis must be a scalar or a 1-element vector, got {axis}"
        ));
    }
    if x.rank() == 0 {
        return Err(format!(
            "cumsum needs at least one axis, got the scalar {x}"
        ));
    }
    if let Some(a) = consts.get(1).copied().flatten() {
        normalize_axis(a.to_i64_vec()?[0], x.rank()).map_err(|e| format!("cumsum: {e}"))?;
    }
    Ok(x.clone())
}

/// The running sums of one lane, with `add` in the accumulator type `A` starting at `zero`.
fn scan_lane<T: Copy, A: Copy>(
    lane: &mut [T],
    exclusive: bool,
    reverse: bool,
    zero: A,
    add: impl Fn(A, T) -> A,
    out: impl Fn(A) -> T,
) {
    let mut acc = zero;
    let n = lane.len();
    for k in 0..n {
        let at = if reverse { n - 1 - k } else { k };
        let v = lane[at];
        if exclusive {
            lane[at] = out(acc);
            acc = add(acc, v);
        } else {
            acc = add(acc, v);
            lane[at] = out(acc);
        }
    }
}

fn cumsum_float<T: Elem>(a: &ArrayD<T>, axis: usize, exclusive: bool, reverse: bool) -> ArrayD<T> {
    let mut y = a.as_standard_layout().into_owned();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let mut v: Vec<T> = lane.to_vec();
        scan_lane(
            &mut v,
            exclusive,
            reverse,
            0.0f64,
            |s, x| s + x.to_f64(),
            T::from_f64,
        );
        lane.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    }
    y
}

fn cumsum_int<T: IntElem>(a: &ArrayD<T>, axis: usize, exclusive: bool, reverse: bool) -> ArrayD<T> {
    let mut y = a.as_standard_layout().into_owned();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let mut v: Vec<T> = lane.to_vec();
        scan_lane(&mut v, exclusive, reverse, T::ZERO, T::add_wrap, |s| s);
        lane.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    }
    y
}

pub(super) fn eval_cumsum(exclusive: bool, reverse: bool, inputs: &[&Tensor]) -> OpResult<Tensor> {
    let x = inputs[0];
    let axis = normalize_axis(inputs[1].to_i64_vec()?[0], x.shape().len())
        .map_err(|e| format!("cumsum: {e}"))?;
    Ok(match_class!(x,
        float a => Elem::wrap(cumsum_float(a, axis, exclusive, reverse)),
        int a => Elem::wrap(cumsum_int(a, axis, exclusive, reverse)),
        bool _ => return Err("cumsum is not defined on bool tensors".into()),
    ))
}

#[cfg(test)]
mod tests {
    use crate::{Op, Tensor};

    fn cumsum(exclusive: bool, reverse: bool, x: &Tensor, axis: i64) -> Vec<f64> {
        let op = Op::CumSum { exclusive, reverse };
        let mut out = op.eval(&[x, &Tensor::scalar(axis)]).unwrap();
        assert_eq!(out[0].shape(), x.shape());
        out.remove(0).to_f64_vec()
    }

    #[test]
    fn running_sums_known_values() {
        let x = Tensor::from_vec(&[5], vec![1.0f64, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(cumsum(false, false, &x, 0), [1.0, 3.0, 6.0, 10.0, 15.0]);
        assert_eq!(cumsum(true, false, &x, 0), [0.0, 1.0, 3.0, 6.0, 10.0]);
        assert_eq!(cumsum(false, true, &x, 0), [15.0, 14.0, 12.0, 9.0, 5.0]);
        assert_eq!(cumsum(true, true, &x, -1), [14.0, 12.0, 9.0, 5.0, 0.0]);
        let m = Tensor::from_vec(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]);
        assert_eq!(cumsum(false, false, &m, 0), [1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
        assert_eq!(cumsum(false, false, &m, 1), [1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
        // Integers wrap; f16 accumulates wide and rounds each output once.
        let w = Tensor::from_vec(&[2], vec![u8::MAX, 2]);
        assert_eq!(cumsum(false, false, &w, 0), [255.0, 1.0]);
        let h = Tensor::from_f64(crate::DType::F16, &[3], &[2048.0, 1.0, 1.0]);
        assert_eq!(cumsum(false, false, &h, 0), [2048.0, 2048.0, 2050.0]);
        let op = Op::CumSum {
            exclusive: false,
            reverse: false,
        };
        let e = op.eval(&[&x, &Tensor::scalar(1i64)]).unwrap_err();
        assert!(e.contains("axis 1 is out of range for rank 1"), "{e}");
        let e = op.eval(&[&x, &Tensor::scalar(1.0f32)]).unwrap_err();
        assert!(e.contains("the axis must be i32 or i64"), "{e}");
    }
}
