//! `CausalConvWithState` (opset 27): a depthwise causal 1-D convolution that carries the last
//! `k - 1` input positions from one call to the next, as sequence models decode.
//!
//! Written as the ONNX reference defines it: the input padded on the left of its length axis
//! with the past state (zeros when none), a depthwise convolution with no padding (`group =
//! channels`, the bias added), then the optional SiLU (`swish` is an alias), computed in f32
//! for narrower floats; the present state is the last `k - 1` positions of the padded input.

use super::composite::swish;
use super::elementwise::in_f32;
use super::nn::{conv_nchw, from_2d, to_2d};
use super::{row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, ConvAttrs, DataFormat, PadMode, Padding};
use lathe_ir::{DType, Dim, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "CausalConvWithState",
        &[
            "depthwise_conv2d",
            "pad",
            "concat",
            "slice",
            "shape",
            "sub",
            "bias_add",
            "sigmoid",
            "mul",
        ],
        import_causal_conv,
    )]
}

/// `CausalConvWithState(input [B, C, L], weight [C, 1, k], bias? [C], past_state? [B, C, k - 1])
/// -> (output [B, C, L], present_state [B, C, k - 1])`.
fn import_causal_conv(b: &mut Builder, cx: &NodeCx) -> Out {
    let (x, w) = (cx.input(0)?, cx.input(1)?);
    let silu = match cx.attrs.str_or("activation", "none")?.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        other => return Err(format!("activation `{other}` is not supported")),
    };
    let (xt, wt) = (b.ty(x).clone(), b.ty(w).clone());
    if xt.rank() != 3 || wt.rank() != 3 {
        return Err(format!(
            "input and weight must have rank 3, got {xt} and {wt}"
        ));
    }
    let known = |d: &Dim| d.known();
    let (Some(c), Some(one), Some(k)) = (
        known(&xt.shape.dims()[1]),
        known(&wt.shape.dims()[1]),
        known(&wt.shape.dims()[2]),
    ) else {
        return Err(format!(
            "the channel count and kernel size must be known, got input {xt} and weight {wt}"
        ));
    };
    if one != 1 || wt.shape.dims()[0].known() != Some(c) || k == 0 {
        return Err(format!(
            "weight must be [{c}, 1, k] with k >= 1 for an input of {c} channels, got {wt}"
        ));
    }
    let padded = match cx.opt(3) {
        Some(past) => {
            let pt = b.ty(past).clone();
            let fits = pt.rank() == 3 && pt.shape.dims()[2].known() == Some(k - 1);
            if !fits || pt.dtype != xt.dtype {
                return Err(format!(
                    "past_state must be [B, {c}, {}] of the input's dtype, got {pt}",
                    k - 1
                ));
            }
            let axis = b.i64_scalar(2);
            b.op(Op::Concat, &[past, x, axis])?
        }
        None => {
            let pads = b.konst(Tensor::from_vec(&[3, 2], vec![0, 0, 0, 0, k as i64 - 1, 0]));
            b.op(
                Op::Pad {
                    mode: PadMode::Constant,
                },
                &[x, pads],
            )?
        }
    };
    let (p2, _) = to_2d(b, padded, "CausalConvWithState")?;
    let (w2, _) = to_2d(b, w, "CausalConvWithState")?;
    let attrs = ConvAttrs {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Valid,
        format: DataFormat::Nchw,
    };
    let y = conv_nchw(b, p2, w2, cx.opt(2), attrs, [1, k], c as i64)?;
    let mut y = from_2d(b, y, true)?;
    if silu {
        y = in_f32(b, y, |b, y| swish(b, y, 1.0))?;
    }
    // The last `k - 1` positions of the padded input (of length `L + k - 1`).
    let begin = match b.ty(padded).shape.dims()[2].known() {
        Some(n) => b.i64s(&[0, 0, (n - (k - 1)) as i64]),
        None => {
            let shape = b.op(Op::Shape { output: DType::I64 }, &[padded])?;
            let (at, size) = (b.i64s(&[2]), b.i64s(&[1]));
            let len = b.op(Op::Slice, &[shape, at, size])?;
            let keep = b.i64s(&[k as i64 - 1]);
            let start = b.op(Op::Binary(B::Sub), &[len, keep])?;
            let zeros = b.i64s(&[0, 0]);
            let axis = b.i64_scalar(0);
            b.op(Op::Concat, &[zeros, start, axis])?
        }
    };
    let size = b.i64s(&[-1, -1, k as i64 - 1]);
    let present = b.op(Op::Slice, &[padded, begin, size])?;
    Ok(vec![y, present])
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, run, A};
    use lathe_ir::Tensor;

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(dims, v.to_vec())
    }

    /// Runs the op on `x = [1, 2, 3, 4]` (one channel) with the filter `[1, 10, 100]`.
    fn conv(
        past: Option<&[f32]>,
        bias: Option<f32>,
        attrs: &[(&str, A)],
    ) -> Result<(Vec<f64>, Vec<f64>), String> {
        let x = f32s(&[1, 1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let w = f32s(&[1, 1, 3], &[1.0, 10.0, 100.0]);
        let bias = bias.map(|v| f32s(&[1], &[v]));
        let past = past.map(|p| f32s(&[1, 1, 2], p));
        let mut inputs = vec![("x", &x)];
        let mut names = vec!["x", "w", "", ""];
        if let Some(bias) = &bias {
            inputs.push(("bias", bias));
            names[2] = "bias";
        }
        if let Some(past) = &past {
            inputs.push(("past", past));
            names[3] = "past";
        }
        let outs = ["y", "present"];
        let consts = [("w", &w)];
        let g = one_node(
            27,
            "CausalConvWithState",
            &inputs,
            &consts,
            attrs,
            &names,
            &outs,
        )?;
        let feeds: Vec<&Tensor> = inputs.iter().map(|(_, t)| *t).collect();
        let r = run(&g, &feeds);
        Ok((r[0].to_f64_vec(), r[1].to_f64_vec()))
    }

    #[test]
    fn convolves_the_input_after_the_past_state() {
        // Zeros before the input: y[t] = x[t-2] + 10 x[t-1] + 100 x[t].
        let (y, present) = conv(None, None, &[]).unwrap();
        assert_eq!(y, [100.0, 210.0, 321.0, 432.0]);
        assert_eq!(present, [3.0, 4.0]);
        // The past state [5, 6] stands before the input instead; the bias adds to each.
        let (y, present) = conv(Some(&[5.0, 6.0]), Some(0.5), &[]).unwrap();
        assert_eq!(y, [165.5, 216.5, 321.5, 432.5]);
        assert_eq!(present, [3.0, 4.0]);
    }

    #[test]
    fn an_input_of_unknown_length_keeps_its_last_positions() {
        use crate::import::onnx::control_flow::testing::{graph, import, node, value, F32};
        let n = node("CausalConvWithState", &["x", "w"], &["y", "present"]);
        let inputs = vec![value("x", F32, &[-1, 1, -1]), value("w", F32, &[1, 1, 3])];
        let outputs = vec![value("y", F32, &[]), value("present", F32, &[])];
        let g = import(graph("g", vec![n], inputs, outputs, &[]), 27).unwrap();
        let x = f32s(&[1, 1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let w = f32s(&[1, 1, 3], &[1.0, 10.0, 100.0]);
        let r = run(&g, &[&x, &w]);
        assert_eq!(r[0].to_f64_vec(), [100.0, 210.0, 321.0, 432.0]);
        assert_eq!(r[1].to_f64_vec(), [3.0, 4.0]);
    }

    #[test]
    fn silu_and_its_swish_alias_follow_the_convolution() {
        let silu = |v: f64| v / (1.0 + (-v).exp());
        for name in ["silu", "swish"] {
            let (y, _) = conv(None, Some(-400.0), &[("activation", A::S(name))]).unwrap();
            let want = [-300.0, -190.0, -79.0, 32.0].map(silu);
            for (g, w) in y.iter().zip(want) {
                assert!((g - w).abs() < 1e-4 * (1.0 + w.abs()), "{name}: {y:?}");
            }
        }
        let e = conv(None, None, &[("activation", A::S("relu"))]).unwrap_err();
        assert!(e.contains("activation `relu` is not supported"), "{e}");
    }
}
