//! `det`: the determinant of each square matrix in the last two axes (ONNX `Det`), by LU
//! decomposition with partial pivoting in f64, each result rounded once to the dtype. The CPU
//! kernel calls [`lu_det`] too, so both backends give the same bits.

use crate::ops::common::expect_arity;
use crate::ops::OpResult;
use crate::{Dim, Shape, Tensor, TensorType};

pub(super) fn infer_det(inputs: &[TensorType]) -> OpResult<TensorType> {
    expect_arity("det", inputs, 1)?;
    let x = &inputs[0];
    let d = x.shape.dims();
    if d.len() < 2 {
        return Err(format!("det needs a matrix in its last two axes, got {x}"));
    }
    let (r, c) = (&d[d.len() - 2], &d[d.len() - 1]);
    if let (Dim::Known(r), Dim::Known(c)) = (r, c) {
        if r != c {
            return Err(format!("det needs square matrices, got {x}"));
        }
    }
    Ok(TensorType::new(x.dtype, Shape(d[..d.len() - 2].to_vec())))
}

pub(super) fn eval_det(x: &Tensor) -> OpResult<Tensor> {
    let dims = x.shape();
    let (lead, n) = (&dims[..dims.len() - 2], dims[dims.len() - 1]);
    let values = x.to_f64_vec();
    let dets: Vec<f64> = if n == 0 {
        vec![1.0; lead.iter().product()]
    } else {
        values
            .chunks(n * n)
            .map(|m| lu_det(&mut m.to_vec(), n))
            .collect()
    };
    Ok(Tensor::from_f64(x.dtype(), lead, &dets))
}

/// The determinant of the `n`×`n` row-major matrix `a` (overwritten by its LU factors):
/// Gaussian elimination choosing the largest pivot of each column, the product of the pivots
/// with the sign of the row swaps. A zero column gives 0; NaN propagates.
pub fn lu_det(a: &mut [f64], n: usize) -> f64 {
    debug_assert_eq!(a.len(), n * n);
    let mut det = 1.0;
    for k in 0..n {
        // The row at or below k with the largest |a[i][k]| (NaN is taken, so it propagates).
        let mut p = k;
        for i in k + 1..n {
            let v = a[i * n + k].abs();
            if v > a[p * n + k].abs() || v.is_nan() {
                p = i;
            }
        }
        let pivot = a[p * n + k];
        if pivot == 0.0 {
            return 0.0;
        }
        if p != k {
            for j in 0..n {
                a.swap(k * n + j, p * n + j);
            }
            det = -det;
        }
        det *= pivot;
        for i in k + 1..n {
            let f = a[i * n + k] / pivot;
            if f != 0.0 {
                for j in k + 1..n {
                    a[i * n + j] -= f * a[k * n + j];
                }
            }
        }
    }
    det
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Op};

    fn det(dims: &[usize], v: &[f64]) -> Vec<f64> {
        let x = Tensor::from_f64(DType::F64, dims, v);
        let mut out = Op::Det.eval(&[&x]).unwrap();
        assert_eq!(out[0].shape(), &dims[..dims.len() - 2]);
        out.remove(0).to_f64_vec()
    }

    #[test]
    fn determinants_known_values() {
        assert_eq!(det(&[2, 2], &[1.0, 2.0, 3.0, 4.0]), [-2.0]);
        // A row swap is needed (zero first pivot), and it flips the sign.
        assert_eq!(det(&[2, 2], &[0.0, 1.0, 1.0, 0.0]), [-1.0]);
        let m3 = [2.0, -3.0, 1.0, 2.0, 0.0, -1.0, 1.0, 4.0, 5.0];
        assert!((det(&[3, 3], &m3)[0] - 49.0).abs() < 1e-12);
        // Singular, batched, and the empty matrix (determinant 1).
        let batch = [1.0, 2.0, 2.0, 4.0, 3.0, 0.0, 0.0, 0.5];
        assert_eq!(det(&[2, 2, 2], &batch), [0.0, 1.5]);
        assert_eq!(det(&[3, 0, 0], &[]), [1.0, 1.0, 1.0]);
        assert!(det(&[1, 1], &[f64::NAN])[0].is_nan());
        // f32 is computed in f64 and rounded once.
        let x = Tensor::from_vec(&[1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        let y = Op::Det.eval(&[&x]).unwrap().remove(0);
        assert_eq!(y.ty().to_string(), "f32[1]");
        assert_eq!(y.to_f64_vec(), [-2.0]);
    }

    #[test]
    fn det_checks_its_operand() {
        let t = |dims: &[usize]| TensorType::known(DType::F32, dims);
        let e = infer_det(&[t(&[2, 3])]).unwrap_err();
        assert!(e.contains("det needs square matrices, got f32[2,3]"), "{e}");
        let e = infer_det(&[t(&[3])]).unwrap_err();
        assert!(e.contains("det needs a matrix in its last two axes"), "{e}");
        let e = Op::Det
            .infer(&[TensorType::known(DType::I32, &[2, 2])], &[None])
            .unwrap_err();
        assert!(e.contains("det"), "{e}");
    }
}
