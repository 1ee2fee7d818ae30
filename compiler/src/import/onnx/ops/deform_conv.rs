//! ONNX `DeformConv` (opsets 19, 22), 2-D, as the ONNX reference defines it: each kernel
//! tap of each output reads the input bilinearly at its ordinary position plus a learned
//! offset, which is `grid_sample` (linear, zero padding, `align_corners`) at a grid built from
//! the offsets, followed by a grouped convolution written as one batched matrix product.
//!
//! With `G` offset groups, `K = kh * kw` taps and `L = oh * ow` outputs: the input's channels
//! are split into `G` images per batch entry, each sampled at its group's `K * oh` by `ow`
//! grid, giving columns `[N, C, K, L]`; the optional mask scales them; the filter
//! (`[oc, C / group, kh, kw]`) multiplies each group's `(C / group) * K` rows. Every size but
//! the batch must be known, and the input at least 2 pixels high and wide (the grid's
//! normalization divides by `H - 1` and `W - 1`).

use super::elementwise::cast;
use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, SampleMode, SamplePadding};
use lathe_ir::{Op, Tensor, ValueId};

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "DeformConv",
        &[
            "grid_sample",
            "batch_matmul",
            "reshape",
            "pack",
            "mul",
            "add",
            "gather",
        ],
        import_deform_conv,
    )]
}

fn known(b: &Builder, v: ValueId, what: &str, rank: usize) -> Result<Vec<usize>, String> {
    b.ty(v)
        .shape
        .as_known()
        .filter(|d| d.len() == rank)
        .ok_or_else(|| format!("{what} must be {rank}-D of a known shape, got {}", b.ty(v)))
}

fn binary(b: &mut Builder, op: B, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Binary(op), &[x, y])
}

fn reshape(b: &mut Builder, x: ValueId, dims: &[i64]) -> Result<ValueId, String> {
    let shape = b.i64s(dims);
    b.op(Op::Reshape, &[x, shape])
}

fn import_deform_conv(b: &mut Builder, cx: &NodeCx) -> Result<Vec<ValueId>, String> {
    let (x, w, offset) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let dt = b.dtype(x);
    if !dt.is_float() {
        return Err(format!(
            "DeformConv of {} is not supported (floats only)",
            b.ty(x)
        ));
    }
    let xd = known(b, x, "X (only 2-D DeformConv is supported)", 4)?;
    let wd = known(b, w, "W", 4)?;
    let od = known(b, offset, "offset", 4)?;
    let (n, c, h, wid) = (xd[0], xd[1], xd[2], xd[3]);
    let (oc, kh, kw) = (wd[0], wd[2], wd[3]);
    let (oh, ow) = (od[2], od[3]);
    let attr = |name: &str, default: i64| -> Result<Vec<usize>, String> {
        let v = cx.attrs.ints_or(name, &[default, default]);
        if v.len() != 2 || v.iter().any(|&e| e <= 0) {
            return Err(format!(
                "`{name}` {v:?} is not supported (two positive entries)"
            ));
        }
        Ok(v.iter().map(|&e| e as usize).collect())
    };
    let strides = attr("strides", 1)?;
    let dilations = attr("dilations", 1)?;
    let pads = cx.attrs.ints_or("pads", &[0, 0, 0, 0]);
    if pads.len() != 4 || pads.iter().any(|&p| p < 0) {
        return Err(format!("`pads` {pads:?} is not four non-negative entries"));
    }
    if let Some(k) = cx.attrs.ints("kernel_shape") {
        if k != [kh as i64, kw as i64] {
            return Err(format!("kernel_shape {k:?} is not W's [{kh}, {kw}]"));
        }
    }
    let group = cx.attrs.int_or("group", 1)?;
    let groups = cx.attrs.int_or("offset_group", 1)?;
    let (group, groups) = match (usize::try_from(group), usize::try_from(groups)) {
        (Ok(g), Ok(og)) if g > 0 && og > 0 => (g, og),
        _ => {
            return Err(format!(
                "group {group} and offset_group {groups} must be positive"
            ))
        }
    };
    let taps = kh * kw;
    let fits = c % group == 0
        && c % groups == 0
        && oc % group == 0
        && wd[1] * group == c
        && od[0] == n
        && od[1] == groups * taps * 2;
    if !fits {
        return Err(format!(
            "X {xd:?}, W {wd:?} and offset {od:?} do not fit group {group} and offset_group \
             {groups}"
        ));
    }
    if h < 2 || wid < 2 {
        return Err(format!(
            "an input of {h}×{wid} pixels is not supported (at least 2×2)"
        ));
    }
    let (n_, g_, c_, oc_) = (n as i64, groups as i64, c as i64, oc as i64);
    let (k_, oh_, ow_) = (taps as i64, oh as i64, ow as i64);
    // Each tap's position without its offset, normalized as grid_sample's align_corners:
    // p / (len - 1) * 2 - 1 (the offsets are scaled the same way below).
    let base = |axis: usize| -> Tensor {
        let (len, pad) = if axis == 0 {
            (h, pads[0])
        } else {
            (wid, pads[1])
        };
        let scale = 2.0 / (len as f64 - 1.0);
        let mut v = Vec::with_capacity(taps * oh * ow);
        for a in 0..kh {
            for bb in 0..kw {
                for i in 0..oh {
                    for j in 0..ow {
                        let (o, t) = if axis == 0 { (i, a) } else { (j, bb) };
                        let p = (o * strides[axis] + t * dilations[axis]) as f64 - pad as f64;
                        v.push(p * scale - 1.0);
                    }
                }
            }
        }
        Tensor::from_f64(dt, &[1, 1, kh, kw, oh, ow], &v)
    };
    // The offsets as [N, G, kh, kw, 2, oh, ow]; their (h, w) components.
    let offset = cast(b, offset, dt)?;
    let offset = reshape(b, offset, &[n_, g_, kh as i64, kw as i64, 2, oh_, ow_])?;
    let mut coords = Vec::with_capacity(2);
    for (axis, len) in [(0usize, h), (1, wid)] {
        let at = b.i64_scalar(axis as i64);
        let four = b.i64_scalar(4);
        let part = b.op(Op::Gather { batch_dims: 0 }, &[offset, at, four])?;
        let scale = b.scalar(dt, 2.0 / (len as f64 - 1.0));
        let part = binary(b, B::Mul, part, scale)?;
        let base = b.konst(base(axis));
        coords.push(binary(b, B::Add, part, base)?);
    }
    // grid_sample's grid: (x, y) last, [N * G, K * oh, ow, 2].
    let grid = b.op(Op::Pack { axis: -1 }, &[coords[1], coords[0]])?;
    let grid = reshape(b, grid, &[n_ * g_, k_ * oh_, ow_, 2])?;
    let images = reshape(b, x, &[n_ * g_, c_ / g_, h as i64, wid as i64])?;
    let sample = Op::GridSample {
        mode: SampleMode::Linear,
        padding_mode: SamplePadding::Zeros,
        align_corners: true,
    };
    let cols = b.op(sample, &[images, grid])?;
    // [N * G, C / G, K * oh, ow] is [N, G, C / G, K, L].
    let mut cols = reshape(b, cols, &[n_, g_, c_ / g_, k_, oh_ * ow_])?;
    if let Some(mask) = cx.opt(4) {
        let mask = cast(b, mask, dt)?;
        let mask = reshape(b, mask, &[n_, g_, 1, k_, oh_ * ow_])?;
        cols = binary(b, B::Mul, cols, mask)?;
    }
    // Per convolution group: [N, group, (C / group) * K, L].
    let (gr, cg) = (group as i64, (c / group) as i64);
    let cols = reshape(b, cols, &[n_, gr, cg * k_, oh_ * ow_])?;
    let w = cast(b, w, dt)?;
    let w = reshape(b, w, &[gr, oc_ / gr, cg * k_])?;
    let product = Op::BatchMatMul {
        adj_x: false,
        adj_y: false,
    };
    let y = b.op(product, &[w, cols])?;
    let mut y = reshape(b, y, &[n_, oc_, oh_, ow_])?;
    if let Some(bias) = cx.opt(3) {
        let bias = cast(b, bias, dt)?;
        let bias = reshape(b, bias, &[1, oc_, 1, 1])?;
        y = binary(b, B::Add, y, bias)?;
    }
    one(y)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    #[test]
    fn zero_offsets_are_a_convolution_and_offsets_move_taps() {
        let n = ints_attr(
            node("DeformConv", &["x", "w", "off"], &["y"]),
            "kernel_shape",
            &[2, 2],
        );
        let g = graph(
            "g",
            vec![n],
            vec![
                value("x", F32, &[1, 1, 3, 3]),
                value("w", F32, &[1, 1, 2, 2]),
                value("off", F32, &[1, 8, 2, 2]),
            ],
            vec![value("y", F32, &[])],
            &[],
        );
        let g = import(g, 19).unwrap();
        let x = Tensor::from_vec(&[1, 1, 3, 3], (0..9).map(|v| v as f32).collect());
        let w = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0f32, 0.0, 0.0, 0.0]);
        // Without offsets, the top-left tap alone: x[i, j].
        let zero = Tensor::from_vec(&[1, 8, 2, 2], vec![0.0f32; 32]);
        let y = run(&g, &[x.clone(), w.clone(), zero]);
        assert_eq!(vals(&y[0]), [0.0, 1.0, 3.0, 4.0]);
        // The top-left tap moved half a pixel down (its h offset is the offsets' channel 0):
        // x[i + 0.5, j].
        let mut off = vec![0.0f32; 32];
        off[..4].copy_from_slice(&[0.5; 4]);
        let y = run(&g, &[x, w, Tensor::from_vec(&[1, 8, 2, 2], off)]);
        assert_eq!(vals(&y[0]), [1.5, 2.5, 4.5, 5.5]);
    }
}
