//! `cumsum` and `cumprod`: the running sum or product along one axis (ONNX `CumSum`,
//! `CumProd`), inclusive or exclusive, forward or from the end. Floats accumulate in f64 from
//! +0 (or 1) and round each output once; integers wrap in their own type. The axis is an input,
//! read when the op runs (the shape does not depend on it).

use super::check_index_type;
use crate::ops::common::{expect_arity, normalize_axis};
use crate::ops::elementwise::{match_class, IntElem};
use crate::ops::{CumulativeKind, OpResult};
use crate::{Elem, Tensor, TensorType};
use ndarray::{ArrayD, Axis};

pub(super) fn infer_cumulative(
    kind: CumulativeKind,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    let mn = kind.mnemonic();
    expect_arity(mn, inputs, 2)?;
    let (x, axis) = (&inputs[0], &inputs[1]);
    check_index_type(mn, "the axis", axis)?;
    let single = axis.rank() == 1 && axis.shape.0[0].known() == Some(1);
    if axis.rank() != 0 && !single {
        return Err(format!(
            "{mn}: the axis must be a scalar or a 1-element vector, got {axis}"
        ));
    }
    if x.rank() == 0 {
        return Err(format!("{mn} needs at least one axis, got the scalar {x}"));
    }
    if let Some(a) = consts.get(1).copied().flatten() {
        normalize_axis(a.to_i64_vec()?[0], x.rank()).map_err(|e| format!("{mn}: {e}"))?;
    }
    Ok(x.clone())
}

/// The running combinations of one lane, with `step` in the accumulator type `A` starting at
/// `start`.
fn scan_lane<T: Copy, A: Copy>(
    lane: &mut [T],
    exclusive: bool,
    reverse: bool,
    start: A,
    step: impl Fn(A, T) -> A,
    out: impl Fn(A) -> T,
) {
    let mut acc = start;
    let n = lane.len();
    for k in 0..n {
        let at = if reverse { n - 1 - k } else { k };
        let v = lane[at];
        if exclusive {
            lane[at] = out(acc);
            acc = step(acc, v);
        } else {
            acc = step(acc, v);
            lane[at] = out(acc);
        }
    }
}

/// `x` with every lane along `axis` replaced by its running combinations.
fn scan_lanes<T: Elem>(a: &ArrayD<T>, axis: usize, f: impl Fn(&mut [T])) -> ArrayD<T> {
    let mut y = a.as_standard_layout().into_owned();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let mut v: Vec<T> = lane.to_vec();
        f(&mut v);
        lane.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    }
    y
}

fn scan_float<T: Elem>(
    a: &ArrayD<T>,
    axis: usize,
    kind: CumulativeKind,
    exclusive: bool,
    reverse: bool,
) -> ArrayD<T> {
    scan_lanes(a, axis, |v| match kind {
        CumulativeKind::Sum => scan_lane(
            v,
            exclusive,
            reverse,
            0.0f64,
            |s, x| s + x.to_f64(),
            T::from_f64,
        ),
        CumulativeKind::Prod => scan_lane(
            v,
            exclusive,
            reverse,
            1.0f64,
            |s, x| s * x.to_f64(),
            T::from_f64,
        ),
    })
}

fn scan_int<T: IntElem>(
    a: &ArrayD<T>,
    axis: usize,
    kind: CumulativeKind,
    exclusive: bool,
    reverse: bool,
) -> ArrayD<T> {
    let (start, step): (T, fn(T, T) -> T) = match kind {
        CumulativeKind::Sum => (T::ZERO, T::add_wrap),
        CumulativeKind::Prod => (T::ONE, T::mul_wrap),
    };
    scan_lanes(a, axis, |v| {
        scan_lane(v, exclusive, reverse, start, step, |s| s)
    })
}

pub(super) fn eval_cumulative(
    kind: CumulativeKind,
    exclusive: bool,
    reverse: bool,
    inputs: &[&Tensor],
) -> OpResult<Tensor> {
    let (x, mn) = (inputs[0], kind.mnemonic());
    let axis = normalize_axis(inputs[1].to_i64_vec()?[0], x.shape().len())
        .map_err(|e| format!("{mn}: {e}"))?;
    Ok(match_class!(x,
        float a => Elem::wrap(scan_float(a, axis, kind, exclusive, reverse)),
        int a => Elem::wrap(scan_int(a, axis, kind, exclusive, reverse)),
        bool _ => return Err(format!("{mn} is not defined on bool tensors")),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ops::CumulativeKind;
    use crate::{Op, Tensor};

    fn scan(
        kind: CumulativeKind,
        exclusive: bool,
        reverse: bool,
        x: &Tensor,
        axis: i64,
    ) -> Vec<f64> {
        let op = Op::Cumulative {
            kind,
            exclusive,
            reverse,
        };
        let mut out = op.eval(&[x, &Tensor::scalar(axis)]).unwrap();
        assert_eq!(out[0].shape(), x.shape());
        out.remove(0).to_f64_vec()
    }

    fn cumsum(exclusive: bool, reverse: bool, x: &Tensor, axis: i64) -> Vec<f64> {
        scan(CumulativeKind::Sum, exclusive, reverse, x, axis)
    }

    fn cumprod(exclusive: bool, reverse: bool, x: &Tensor, axis: i64) -> Vec<f64> {
        scan(CumulativeKind::Prod, exclusive, reverse, x, axis)
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
        let op = Op::Cumulative {
            kind: CumulativeKind::Sum,
            exclusive: false,
            reverse: false,
        };
        let e = op.eval(&[&x, &Tensor::scalar(1i64)]).unwrap_err();
        assert!(e.contains("axis 1 is out of range for rank 1"), "{e}");
        let e = op.eval(&[&x, &Tensor::scalar(1.0f32)]).unwrap_err();
        assert!(e.contains("the axis must be i32 or i64"), "{e}");
    }

    #[test]
    fn running_products_known_values() {
        let x = Tensor::from_vec(&[5], vec![1.0f64, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(cumprod(false, false, &x, 0), [1.0, 2.0, 6.0, 24.0, 120.0]);
        assert_eq!(cumprod(true, false, &x, 0), [1.0, 1.0, 2.0, 6.0, 24.0]);
        assert_eq!(cumprod(false, true, &x, 0), [120.0, 120.0, 60.0, 20.0, 5.0]);
        assert_eq!(cumprod(true, true, &x, -1), [120.0, 60.0, 20.0, 5.0, 1.0]);
        let m = Tensor::from_vec(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]);
        assert_eq!(
            cumprod(false, false, &m, 0),
            [1.0, 2.0, 3.0, 4.0, 10.0, 18.0]
        );
        assert_eq!(
            cumprod(false, false, &m, 1),
            [1.0, 2.0, 6.0, 4.0, 20.0, 120.0]
        );
        // Integers wrap: 16 * 16 = 256 is 0 in u8.
        let w = Tensor::from_vec(&[3], vec![16u8, 16, 3]);
        assert_eq!(cumprod(false, false, &w, 0), [16.0, 0.0, 0.0]);
        // f16 accumulates wide: 300 * 300 overflows f16 but the next factor brings it back.
        let h = Tensor::from_f64(crate::DType::F16, &[3], &[300.0, 300.0, 1.0 / 256.0]);
        assert_eq!(cumprod(false, false, &h, 0), [300.0, f64::INFINITY, 351.5]);
        let op = Op::Cumulative {
            kind: CumulativeKind::Prod,
            exclusive: false,
            reverse: false,
        };
        let e = op.eval(&[&x, &Tensor::scalar(2i64)]).unwrap_err();
        assert!(
            e.contains("cumprod: axis 2 is out of range for rank 1"),
            "{e}"
        );
        let b = Tensor::from_vec(&[2], vec![true, false]);
        let e = op.eval(&[&b, &Tensor::scalar(0i64)]).unwrap_err();
        assert!(e.contains("cumprod"), "{e}");
    }
}
