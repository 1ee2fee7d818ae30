//! ONNX's signal-processing ops (opset 17 on): `DFT` is the IR's `dft`; `STFT` is frames of
//! the signal (a gather with constant indices), times the window, then a `dft` along the
//! frame; `MelWeightMatrix` is computed while importing and imported as a constant.
//!
//! What decides an output's shape must be known while importing: `DFT`'s `dft_length` and
//! axis (an input from opset 20), `STFT`'s `frame_step` and `frame_length`, and every input
//! of `MelWeightMatrix`. When one comes from graph inputs, the model is imported once per
//! value ([`Builder::not_constant`]).

use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{tensor, Builder, NodeCx};
use lathe_ir::ops::BinaryOp;
use lathe_ir::{DType, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

/// The longest transform, frame or mel matrix side read from a model.
const MAX_LENGTH: i64 = 1 << 24;
/// The most elements of a constant the importer builds (STFT's frame indices, a mel matrix).
const MAX_ELEMENTS: usize = 1 << 26;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("DFT", &["dft"], import_dft),
        row("STFT", &["gather", "reshape", "mul", "dft"], import_stft),
        row("MelWeightMatrix", &["const"], import_mel_weight_matrix),
    ]
}

/// A length in `1..=MAX_LENGTH`, `what` naming it.
fn length(n: i64, what: &str) -> Result<usize, String> {
    if !(1..=MAX_LENGTH).contains(&n) {
        return Err(format!("{what} must be in [1, {MAX_LENGTH}], got {n}"));
    }
    Ok(n as usize)
}

/// The known size of axis `axis` of `x`, `what` naming it.
fn known_dim(b: &Builder, x: ValueId, axis: usize, what: &str) -> Result<usize, String> {
    b.ty(x).shape.dims()[axis]
        .known()
        .ok_or_else(|| format!("{what} of unknown size is not supported"))
}

fn import_dft(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let axis = if cx.opset >= 20 {
        match cx.opt(2) {
            Some(a) => b.int_of(a, "the `axis` input", "")?,
            None => -2,
        }
    } else {
        cx.attrs.int_or("axis", 1)?
    };
    let inverse = cx.attrs.int_or("inverse", 0)? != 0;
    let onesided = cx.attrs.int_or("onesided", 0)? != 0;
    let axis_at = norm_axis(axis, rank)?;
    let n = match cx.opt(1) {
        Some(l) => length(b.int_of(l, "the `dft_length` input", "")?, "dft_length")?,
        None => {
            let n = known_dim(b, x, axis_at, "a signal")?;
            if inverse && onesided {
                // The half spectrum of an even-length real signal.
                length(2 * (n as i64 - 1), "the signal length 2 * (n - 1)")?
            } else {
                length(n as i64, "the signal length")?
            }
        }
    };
    one(b.op(
        Op::Dft {
            axis: axis_at as i64,
            length: n,
            inverse,
            onesided,
        },
        &[x],
    )?)
}

fn import_stft(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    if b.rank(x) != 3 {
        return Err(format!(
            "the signal must be [batch, length, 1 or 2], got {}",
            b.ty(x)
        ));
    }
    let signal = known_dim(b, x, 1, "a signal")?;
    let step = b.int_of(cx.input(1)?, "the `frame_step` input", "")?;
    let step = length(step, "frame_step")?;
    let window = cx.opt(2);
    let frame = match (cx.opt(3), window) {
        (Some(l), _) => length(b.int_of(l, "the `frame_length` input", "")?, "frame_length")?,
        (None, Some(w)) if b.rank(w) == 1 => known_dim(b, w, 0, "a window")?,
        (None, Some(w)) => return Err(format!("the window must be 1-D, got {}", b.ty(w))),
        (None, None) => signal,
    };
    if let Some(w) = window {
        if b.ty(w).shape.as_known() != Some(vec![frame]) {
            return Err(format!(
                "the window must have frame_length ({frame}) values, got {}",
                b.ty(w)
            ));
        }
    }
    if frame == 0 || frame > signal {
        return Err(format!(
            "a frame of {frame} does not fit in a signal of {signal}"
        ));
    }
    let frames = 1 + (signal - frame) / step;
    if frames * frame > MAX_ELEMENTS {
        return Err(format!(
            "{frames} frames of {frame} are more than the {MAX_ELEMENTS} frame positions \
             supported"
        ));
    }
    let onesided = cx.attrs.int_or("onesided", 1)? != 0;
    // Frame f is samples f * step .. f * step + frame.
    let at: Vec<i64> = (0..frames)
        .flat_map(|f| (0..frame).map(move |j| (f * step + j) as i64))
        .collect();
    let at = b.konst(Tensor::from_vec(&[frames, frame], at));
    let axis = b.i64_scalar(1);
    let mut y = b.op(Op::Gather { batch_dims: 0 }, &[x, at, axis])?;
    if let Some(w) = window {
        let shape = b.i64s(&[frame as i64, 1]);
        let w = b.op(Op::Reshape, &[w, shape])?;
        y = b.op(Op::Binary(BinaryOp::Mul), &[y, w])?;
    }
    one(b.op(
        Op::Dft {
            axis: 2,
            length: frame,
            inverse: false,
            onesided,
        },
        &[y],
    )?)
}

/// The value of scalar input `v`, which the importer must know, as f64.
fn known_f64(b: &Builder, v: ValueId, what: &str) -> Result<f64, String> {
    match b.known(v, what, "")?.to_f64_vec().as_slice() {
        &[x] => Ok(x),
        other => Err(format!("{what} must be one number, got {other:?}")),
    }
}

fn import_mel_weight_matrix(b: &mut Builder, cx: &NodeCx) -> Out {
    let bins = length(
        b.int_of(cx.input(0)?, "the `num_mel_bins` input", "")?,
        "num_mel_bins",
    )?;
    let dft = length(
        b.int_of(cx.input(1)?, "the `dft_length` input", "")?,
        "dft_length",
    )?;
    let rate = b.int_of(cx.input(2)?, "the `sample_rate` input", "")?;
    let lower = known_f64(b, cx.input(3)?, "the `lower_edge_hertz` input")?;
    let upper = known_f64(b, cx.input(4)?, "the `upper_edge_hertz` input")?;
    let dtype = tensor::dtype(cx.attrs.int_or("output_datatype", 1)? as i32)?;
    if dtype == DType::Bool || dtype.is_low_precision() {
        return Err(format!("a mel weight matrix of {dtype} is not supported"));
    }
    if rate <= 0 {
        return Err(format!("sample_rate must be positive, got {rate}"));
    }
    let spectrum = dft / 2 + 1;
    if spectrum * bins > MAX_ELEMENTS {
        return Err(format!(
            "a mel weight matrix of {spectrum} x {bins} is more than the {MAX_ELEMENTS} \
             elements supported"
        ));
    }
    let w = mel_weights(bins, dft, rate, lower, upper)?;
    one(b.konst(Tensor::from_f64(dtype, &[spectrum, bins], &w)))
}

/// The `[dft / 2 + 1, bins]` matrix of triangular filters, one per mel bin, as ONNX's
/// reference computes it (in f64): `bins + 2` edges evenly spaced on the mel scale
/// (`2595 log10(1 + f / 700)`) from `lower` to `upper` hertz, each taken to the spectrum bin
/// `floor((dft + 1) f / rate)`; filter `i` rises from edge `i` to edge `i + 1` and falls to
/// edge `i + 2`. An edge outside the spectrum is an error.
fn mel_weights(
    bins: usize,
    dft: usize,
    rate: i64,
    lower: f64,
    upper: f64,
) -> Result<Vec<f64>, String> {
    let mel = |hz: f64| 2595.0 * (hz / 700.0).ln_1p() / std::f64::consts::LN_10;
    let (low, high) = (mel(lower), mel(upper));
    let step = (high - low) / (bins + 2) as f64;
    let spectrum = dft / 2 + 1;
    let edges = (0..bins + 2)
        .map(|k| {
            let hz = 700.0 * ((k as f64 * step + low) / 2595.0 * std::f64::consts::LN_10).exp_m1();
            let bin = ((dft + 1) as f64 * hz / rate as f64).floor();
            if !(0.0..spectrum as f64).contains(&bin) {
                return Err(format!(
                    "the mel edge at {hz} hertz falls outside the {spectrum} bins of the \
                     spectrum ([{lower}, {upper}] hertz at a sample rate of {rate} is not \
                     supported)"
                ));
            }
            Ok(bin as usize)
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let mut w = vec![0.0; spectrum * bins];
    for i in 0..bins {
        let (l, c, h) = (edges[i], edges[i + 1], edges[i + 2]);
        if c == l {
            w[c * bins + i] = 1.0;
        } else {
            for j in l..=c {
                w[j * bins + i] = (j - l) as f64 / (c - l) as f64;
            }
        }
        for j in c..h {
            w[j * bins + i] = (h - j) as f64 / (h - c) as f64;
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, one_node_bound, run, A};
    use super::*;

    fn assert_close(got: &Tensor, want: &[f64]) {
        let got = got.to_f64_vec();
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn dft_imports_attribute_and_input_axes() {
        // [1, 4, 1] along axis 1: [1, 2, 3, 4] -> [10, -2+2i, -2, -2-2i].
        let x = Tensor::from_vec(&[1, 4, 1], vec![1.0f32, 2.0, 3.0, 4.0]);
        let g = one_node(17, "DFT", &[("x", &x)], &[], &[], &["x"], &["y"]).unwrap();
        let y = run(&g, &[&x]).remove(0);
        assert_eq!(y.shape(), [1, 4, 2]);
        assert_close(&y, &[10.0, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0]);
        // Opset 20: the axis is an input (default -2), dft_length cuts the signal.
        let n = Tensor::scalar(2i64);
        let axis = Tensor::scalar(-2i64);
        let attrs = [("onesided", A::I(1))];
        let g = one_node(
            20,
            "DFT",
            &[("x", &x)],
            &[("n", &n), ("axis", &axis)],
            &attrs,
            &["x", "n", "axis"],
            &["y"],
        )
        .unwrap();
        let y = run(&g, &[&x]).remove(0);
        assert_eq!(y.shape(), [1, 2, 2]);
        assert_close(&y, &[3.0, 0.0, -1.0, 0.0]);
        // The one-sided inverse's default length is 2 (n - 1): [10, -2+2i, -2] -> [1, 2, 3, 4].
        let half = Tensor::from_vec(&[1, 3, 2], vec![10.0f32, 0.0, -2.0, 2.0, -2.0, 0.0]);
        let attrs = [("inverse", A::I(1)), ("onesided", A::I(1))];
        let g = one_node(20, "DFT", &[("x", &half)], &[], &attrs, &["x"], &["y"]).unwrap();
        let y = run(&g, &[&half]).remove(0);
        assert_eq!(y.shape(), [1, 4, 1]);
        assert_close(&y, &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn dft_axis_from_an_input_is_imported_per_value() {
        let x = Tensor::from_vec(&[1, 4, 1], vec![1.0f32, 2.0, 3.0, 4.0]);
        let axis = Tensor::scalar(1i64);
        let node = (20, "DFT", &[][..], &["x", "", "axis"][..], &["y"][..]);
        let inputs = [("x", &x), ("axis", &axis)];
        let e = one_node_bound(node, &inputs, &[], &[]).unwrap_err();
        assert!(e.needs_values.is_some(), "{e}");
        assert!(
            e.to_string()
                .contains("the `axis` input must be known while importing"),
            "{e}"
        );
        let bound = [("axis".to_string(), axis.clone())];
        let g = one_node_bound(node, &inputs, &[], &bound).unwrap();
        assert_eq!(g.value_type(g.outputs()[0].value).to_string(), "f32[1,4,2]");
    }

    #[test]
    fn dft_lengths_are_checked() {
        let x = Tensor::from_vec(&[1, 4, 1], vec![1.0f32, 2.0, 3.0, 4.0]);
        let n = Tensor::scalar(0i64);
        let e = one_node(
            17,
            "DFT",
            &[("x", &x)],
            &[("n", &n)],
            &[],
            &["x", "n"],
            &["y"],
        )
        .unwrap_err();
        assert!(
            e.contains("dft_length must be in [1, 16777216], got 0"),
            "{e}"
        );
        let attrs = [("axis", A::I(2))];
        let e = one_node(17, "DFT", &[("x", &x)], &[], &attrs, &["x"], &["y"]).unwrap_err();
        assert!(e.contains("axis cannot be the last one"), "{e}");
    }

    #[test]
    fn stft_frames_the_signal() {
        // Frames of 4 every 2 samples of 0..8: [0..4], [2..6], [4..8].
        let x = Tensor::from_vec(&[1, 8, 1], (0..8).map(|v| v as f32).collect());
        let step = Tensor::scalar(2i64);
        let len = Tensor::scalar(4i64);
        let g = one_node(
            17,
            "STFT",
            &[("x", &x)],
            &[("step", &step), ("len", &len)],
            &[],
            &["x", "step", "", "len"],
            &["y"],
        )
        .unwrap();
        let y = run(&g, &[&x]).remove(0);
        assert_eq!(y.shape(), [1, 3, 3, 2]);
        // DFT of [a, a+1, a+2, a+3]: [4a + 6, -2+2i, -2].
        let want: Vec<f64> = [0.0, 2.0, 4.0]
            .iter()
            .flat_map(|a| [4.0 * a + 6.0, 0.0, -2.0, 2.0, -2.0, 0.0])
            .collect();
        assert_close(&y, &want);
        // A window weighs each frame: [1, 0, 0, 0] keeps the first sample.
        let w = Tensor::from_vec(&[4], vec![1.0f32, 0.0, 0.0, 0.0]);
        let g = one_node(
            17,
            "STFT",
            &[("x", &x)],
            &[("step", &step), ("w", &w)],
            &[("onesided", A::I(0))],
            &["x", "step", "w"],
            &["y"],
        )
        .unwrap();
        let y = run(&g, &[&x]).remove(0);
        assert_eq!(y.shape(), [1, 3, 4, 2]);
        let want: Vec<f64> = [0.0, 2.0, 4.0]
            .iter()
            .flat_map(|&a| [a, 0.0, a, 0.0, a, 0.0, a, 0.0])
            .collect();
        assert_close(&y, &want);
        let big = Tensor::scalar(9i64);
        let e = one_node(
            17,
            "STFT",
            &[("x", &x)],
            &[("step", &step), ("len", &big)],
            &[],
            &["x", "step", "", "len"],
            &["y"],
        )
        .unwrap_err();
        assert!(
            e.contains("a frame of 9 does not fit in a signal of 8"),
            "{e}"
        );
    }

    #[test]
    fn mel_weight_matrix_known_values() {
        // ONNX's own example: 8 bins of a 16-point spectrum at 8192 Hz, 0 to 4096 Hz.
        let consts = [
            ("bins", Tensor::scalar(8i32)),
            ("dft", Tensor::scalar(16i32)),
            ("rate", Tensor::scalar(8192i32)),
            ("lo", Tensor::scalar(0.0f32)),
            ("hi", Tensor::scalar(4096.0f32)),
        ];
        let consts: Vec<(&str, &Tensor)> = consts.iter().map(|(n, t)| (*n, t)).collect();
        let names = ["bins", "dft", "rate", "lo", "hi"];
        let g = one_node(17, "MelWeightMatrix", &[], &consts, &[], &names, &["y"]).unwrap();
        let y = run(&g, &[]).remove(0);
        assert_eq!(y.ty().to_string(), "f32[9,8]");
        // Edges at bins [0, 0, 0, 1, 1, 2, 3, 4, 5, 6]: each filter is one bin wide.
        let mut want = vec![0.0; 9 * 8];
        for (i, row) in [0, 0, 1, 1, 2, 3, 4, 5].into_iter().enumerate() {
            want[row * 8 + i] = 1.0;
        }
        assert_eq!(y.to_f64_vec(), want);
        let bad = Tensor::scalar(0i32);
        let mut consts = consts.clone();
        consts[2] = ("rate", &bad);
        let e = one_node(17, "MelWeightMatrix", &[], &consts, &[], &names, &["y"]).unwrap_err();
        assert!(e.contains("sample_rate must be positive, got 0"), "{e}");
    }
}
