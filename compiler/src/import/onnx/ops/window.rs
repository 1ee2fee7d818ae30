//! ONNX's window functions (`HannWindow`, `HammingWindow`, `BlackmanWindow`, opset 17): the
//! `size` coefficients of a cosine-sum window, computed while importing from the constant
//! `size` and imported as a constant tensor. A size computed at run time is an error (it
//! decides the output's shape).

use super::{one, row, OnnxOp};
use crate::import::onnx::{tensor, Builder, NodeCx};
use lathe_ir::{DType, Tensor, ValueId};
use std::f64::consts::PI;

type Out = Result<Vec<ValueId>, String>;

/// The most coefficients a window may have.
const MAX_WINDOW: i64 = 1 << 24;

/// Hamming's `alpha` (`beta` is `1 - alpha`), as ONNX defines it.
const HAMMING_ALPHA: f64 = 25.0 / 46.0;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("HannWindow", &["const"], |b, cx| window(b, cx, &[0.5, 0.5])),
        row("HammingWindow", &["const"], |b, cx| {
            window(b, cx, &[HAMMING_ALPHA, 1.0 - HAMMING_ALPHA])
        }),
        row("BlackmanWindow", &["const"], |b, cx| {
            window(b, cx, &[0.42, 0.5, 0.08])
        }),
    ]
}

/// The window `w[n] = a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N) - ...` for `n` in
/// `0..size`, with `N = size` when the `periodic` attribute is set (the default) and
/// `size - 1` otherwise (symmetric). A window of one element is `[1]`.
fn cosine_sum(coeffs: &[f64], size: usize, periodic: bool) -> Vec<f64> {
    if size == 1 {
        return vec![1.0];
    }
    let period = if periodic { size } else { size - 1 } as f64;
    (0..size)
        .map(|n| {
            let x = 2.0 * PI * n as f64 / period;
            coeffs
                .iter()
                .enumerate()
                .map(|(k, a)| {
                    let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
                    sign * a * (k as f64 * x).cos()
                })
                .sum()
        })
        .collect()
}

fn window(b: &mut Builder, cx: &NodeCx, coeffs: &[f64]) -> Out {
    let size = b.int_of(cx.input(0)?, "the window size", "")?;
    if !(0..=MAX_WINDOW).contains(&size) {
        return Err(format!(
            "the window size must be in [0, {MAX_WINDOW}], got {size}"
        ));
    }
    let dtype = tensor::dtype(cx.attrs.int_or("output_datatype", 1)? as i32)?;
    if dtype == DType::Bool {
        return Err("a window of bool is not supported".into());
    }
    let periodic = cx.attrs.int_or("periodic", 1)? != 0;
    let size = size as usize;
    let w = cosine_sum(coeffs, size, periodic);
    one(b.konst(Tensor::from_f64(dtype, &[size], &w)))
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, run, A};
    use super::*;

    /// The window `op` of the constant `size`, evaluated.
    fn window(op: &str, size: i64, attrs: &[(&str, A)]) -> Result<Tensor, String> {
        let n = Tensor::scalar(size);
        let g = one_node(17, op, &[], &[("n", &n)], attrs, &["n"], &["y"])?;
        Ok(run(&g, &[]).remove(0))
    }

    fn assert_close(got: &Tensor, want: &[f64]) {
        let got = got.to_f64_vec();
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn windows_known_values() {
        // Symmetric windows of 5 are numpy.hanning(5) and numpy.blackman(5).
        let y = window("HannWindow", 5, &[("periodic", A::I(0))]).unwrap();
        assert_eq!(y.dtype(), DType::F32);
        assert_close(&y, &[0.0, 0.5, 1.0, 0.5, 0.0]);
        assert_close(
            &window("HannWindow", 4, &[]).unwrap(),
            &[0.0, 0.5, 1.0, 0.5],
        );
        let a = HAMMING_ALPHA;
        let y = window("HammingWindow", 4, &[]).unwrap();
        assert_close(&y, &[2.0 * a - 1.0, a, 1.0, a]);
        let attrs = [("periodic", A::I(0)), ("output_datatype", A::I(11))];
        let y = window("BlackmanWindow", 5, &attrs).unwrap();
        assert_eq!(y.dtype(), DType::F64);
        assert_close(&y, &[0.0, 0.34, 1.0, 0.34, 0.0]);
        assert_close(&window("HannWindow", 1, &[]).unwrap(), &[1.0]);
        assert_eq!(window("HannWindow", 0, &[]).unwrap().shape(), [0]);
    }

    #[test]
    fn window_sizes_are_checked() {
        let e = window("HannWindow", -1, &[]).unwrap_err();
        assert!(
            e.contains("the window size must be in [0, 16777216], got -1"),
            "{e}"
        );
        let e = window("HannWindow", 3, &[("output_datatype", A::I(9))]).unwrap_err();
        assert!(e.contains("a window of bool is not supported"), "{e}");
        let n = Tensor::scalar(4i64);
        let e = one_node(17, "HannWindow", &[("n", &n)], &[], &[], &["n"], &["y"]).unwrap_err();
        assert!(
            e.contains("the window size must be known while importing")
                && e.contains("graph input `n`"),
            "{e}"
        );
    }
}
