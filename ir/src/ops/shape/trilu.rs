//! `trilu`: the upper or lower triangle of the last two axes of a tensor (ONNX Trilu), the
//! diagonal moved by `k`, zeros (false for bool) elsewhere.

use super::{arg, index_scalar};
use crate::ops::common::expect_arity;
use crate::ops::OpResult;
use crate::{tensor_map, Elem, Tensor, TensorType};
use ndarray::ArrayD;

/// Whether element `(i, j)` of a matrix is kept: `j - i >= k` in the upper triangle,
/// `j - i <= k` in the lower (the one rule, which the CPU kernel shares).
pub fn trilu_keeps(upper: bool, k: i64, i: usize, j: usize) -> bool {
    // Dims fit in i64 (a tensor's bytes do), so the difference is exact in i128.
    let d = j as i128 - i as i128;
    if upper {
        d >= k as i128
    } else {
        d <= k as i128
    }
}

pub(super) fn infer_trilu(
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    expect_arity("trilu", inputs, 2)?;
    let x = &inputs[0];
    index_scalar("trilu's k (input 1)", &inputs[1], arg(consts, 1), true)?;
    if x.rank() < 2 {
        return Err(format!("trilu: x must be at least 2-D, got {x}"));
    }
    Ok(x.clone())
}

fn trilu_of<T: Elem>(a: &ArrayD<T>, upper: bool, k: i64) -> ArrayD<T> {
    let r = a.ndim();
    let mut y = a.clone();
    for (at, v) in y.indexed_iter_mut() {
        if !trilu_keeps(upper, k, at[r - 2], at[r - 1]) {
            *v = T::default();
        }
    }
    y
}

pub(super) fn eval_trilu(upper: bool, inputs: &[&Tensor]) -> OpResult<Tensor> {
    let k = inputs[1].to_i64_vec()?[0];
    Ok(tensor_map!(inputs[0], a => trilu_of(a, upper, k)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::Op;

    #[test]
    fn triangles_known_values() {
        let x = &Tensor::from_vec(&[3, 4], (1..=12).map(|v| v as f32).collect());
        let upper = Op::Trilu { upper: true };
        let lower = Op::Trilu { upper: false };
        let y = eval1(&upper, &[x, &int(0)]);
        assert_eq!(
            vals(&y).1,
            [1.0, 2.0, 3.0, 4.0, 0.0, 6.0, 7.0, 8.0, 0.0, 0.0, 11.0, 12.0]
        );
        let y = eval1(&upper, &[x, &ints(&[-1])]);
        assert_eq!(
            vals(&y).1,
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 0.0, 10.0, 11.0, 12.0]
        );
        let y = eval1(&lower, &[x, &int(1)]);
        assert_eq!(
            vals(&y).1,
            [1.0, 2.0, 0.0, 0.0, 5.0, 6.0, 7.0, 0.0, 9.0, 10.0, 11.0, 12.0]
        );
        // Far off the matrix: everything or nothing, with batch axes.
        let b = iota(&[2, 2, 2]);
        assert_eq!(eval1(&lower, &[&b, &int(-9)]).to_f64_vec(), [0.0; 8]);
        assert_eq!(eval1(&upper, &[&b, &int(-9)]), b);
        let e = eval_err(&upper, &[&iota(&[3]), &int(0)]);
        assert!(e.contains("at least 2-D"), "{e}");
        let e = eval_err(&upper, &[x, &ints(&[0, 1])]);
        assert!(
            e.contains("k (input 1) must be a scalar or a 1-element vector"),
            "{e}"
        );
    }
}
