//! ONNX `ConvTranspose` as a convolution: the input with `stride - 1` zeros inserted between
//! its cells (a reshape, a pad and a reshape), padded by the window's span less the node's
//! pads (or cropped where that is negative), convolved at stride 1 with the filter spatially
//! flipped and its in/out channels swapped per group.
//!
//! Exact, and every piece runs natively, but the convolution visits the inserted zeros: a
//! stride-`s` node costs `s^2` (in 2-D) times the multiplies of a GEMM + col2im kernel.
//! 1-D nodes run as 2-D ones on a height-1 image; 3-D windows are an error (the IR's
//! convolution is 2-D).

use super::nn::{conv_nchw, from_2d, to_2d};
use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{ConvAttrs, DataFormat, PadMode, Padding};
use lathe_ir::{Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "ConvTranspose",
        &["conv2d", "reshape", "pad", "transpose", "gather", "slice"],
        import_conv_transpose,
    )]
}

/// One spatial axis of a transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    output_padding: usize,
    /// Cells cropped from the start and end of the full output (negative: added).
    pads: [i64; 2],
}

impl Axis {
    /// The full output length, before `pads` crop it.
    fn full(&self) -> i64 {
        (self.stride * (self.input - 1)
            + self.output_padding
            + (self.kernel - 1) * self.dilation
            + 1) as i64
    }

    /// The output length.
    fn output(&self) -> i64 {
        self.full() - self.pads[0] - self.pads[1]
    }

    /// The padding before and after the zero-inserted input (`input * stride` cells, the
    /// last `stride - 1` of them zeros) that makes a stride-1 convolution compute this axis;
    /// negative amounts are cells to crop.
    fn conv_padding(&self) -> [i64; 2] {
        let span = ((self.kernel - 1) * self.dilation) as i64;
        [
            span - self.pads[0],
            span - self.pads[1] + self.output_padding as i64 - (self.stride as i64 - 1),
        ]
    }
}

/// Splits `total` padding as ONNX does for `output_shape` and `auto_pad`: the odd cell at
/// the end for `SAME_UPPER`, else at the start.
fn split(total: i64, upper: bool) -> [i64; 2] {
    let half = total.div_euclid(2);
    if upper {
        [half, total - half]
    } else {
        [total - half, half]
    }
}

/// Reads a per-axis attribute of `n` entries (default `fill`), as `[height, width]` (a 1-D
/// node's height entry is `fill`).
fn per_axis(cx: &NodeCx, name: &str, n: usize, fill: i64) -> Result<[i64; 2], String> {
    let v = cx.attrs.ints_or(name, &vec![fill; n]);
    if v.len() != n {
        return Err(format!("`{name}` {v:?} does not have {n} entries"));
    }
    Ok(if n == 1 { [fill, v[0]] } else { [v[0], v[1]] })
}

/// A non-negative attribute entry as a size.
fn size(v: i64, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("`{what}` entry {v} is negative"))
}

fn import_conv_transpose(b: &mut Builder, cx: &NodeCx) -> Out {
    let (x, w) = (cx.input(0)?, cx.input(1)?);
    let (x, one_d) = to_2d(b, x, "ConvTranspose")?;
    let (w, _) = to_2d(b, w, "ConvTranspose")?;
    let n = if one_d { 1 } else { 2 };
    let xd = b.ty(x).shape.0.clone();
    let known = |d: &lathe_ir::Dim| d.known();
    let (Some(c), Some(h), Some(wi)) = (known(&xd[1]), known(&xd[2]), known(&xd[3])) else {
        return Err(format!(
            "needs the input's channels and spatial size known, got {}",
            b.ty(x)
        ));
    };
    let wd = b
        .ty(w)
        .shape
        .as_known()
        .ok_or_else(|| format!("needs the weight's shape known, got {}", b.ty(w)))?;
    let (cin, mg, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    let group = cx.attrs.int_or("group", 1)?;
    let g = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| format!("group {group} is not positive"))?;
    if cin != c || c % g != 0 || kh == 0 || kw == 0 || mg == 0 {
        return Err(format!(
            "weight {} does not fit input {} in {g} groups",
            b.ty(w),
            b.ty(x)
        ));
    }
    if let Some(k) = cx.attrs.ints("kernel_shape") {
        let k = if one_d { vec![1, k[0]] } else { k.to_vec() };
        if k != [kh as i64, kw as i64] {
            return Err(format!(
                "`kernel_shape` {k:?} does not match the weight {}",
                b.ty(w)
            ));
        }
    }
    let strides = per_axis(cx, "strides", n, 1)?;
    let dilations = per_axis(cx, "dilations", n, 1)?;
    let output_padding = per_axis(cx, "output_padding", n, 0)?;
    let mut axes = [0, 1].map(|a| Axis {
        input: [h, wi][a],
        kernel: [kh, kw][a],
        stride: 1,
        dilation: 1,
        output_padding: 0,
        pads: [0, 0],
    });
    for a in 0..2 {
        axes[a].stride = size(strides[a], "strides")?;
        axes[a].dilation = size(dilations[a], "dilations")?;
        axes[a].output_padding = size(output_padding[a], "output_padding")?;
        if axes[a].stride == 0 || axes[a].dilation == 0 {
            return Err("strides and dilations must be positive".into());
        }
        if axes[a].input == 0 {
            return Err(format!("empty input {}", b.ty(x)));
        }
    }
    let auto_pad = cx.attrs.str_or("auto_pad", "NOTSET")?;
    let upper = auto_pad == "SAME_UPPER";
    if let Some(shape) = cx.attrs.ints("output_shape") {
        // The spatial sizes, perhaps after the batch and channel sizes.
        let spatial = &shape[shape.len().saturating_sub(n)..];
        if spatial.len() != n {
            return Err(format!(
                "`output_shape` {shape:?} has fewer than {n} entries"
            ));
        }
        let out = if one_d {
            [1, spatial[0]]
        } else {
            [spatial[0], spatial[1]]
        };
        for a in 0..2 {
            axes[a].pads = split(axes[a].full() - out[a], upper);
        }
    } else {
        match auto_pad.as_str() {
            "NOTSET" => {
                let p = cx.attrs.ints_or("pads", &vec![0; 2 * n]);
                if p.len() != 2 * n {
                    return Err(format!("`pads` {p:?} is not {} amounts", 2 * n));
                }
                let p: [[i64; 2]; 2] = if one_d {
                    [[0, 0], [p[0], p[1]]]
                } else {
                    [[p[0], p[2]], [p[1], p[3]]]
                };
                for a in 0..2 {
                    axes[a].pads = p[a];
                }
            }
            "VALID" => {}
            "SAME_UPPER" | "SAME_LOWER" => {
                for a in &mut axes {
                    let out = (a.input * a.stride) as i64;
                    a.pads = split(a.full() - out, upper);
                }
            }
            other => return Err(format!("unknown `auto_pad` value `{other}`")),
        }
    }
    if let Some(a) = axes.iter().find(|a| a.output() < 1) {
        return Err(format!(
            "pads {:?} leave no output of the full length {}",
            a.pads,
            a.full()
        ));
    }
    let x = insert_zeros(b, x, [c, h, wi], &axes)?;
    let (x, padding) = crop_and_pad(b, x, &axes)?;
    let filter = flipped_filter(b, w, g, [cin, mg, kh, kw])?;
    let attrs = ConvAttrs {
        strides: [1, 1],
        dilations: [axes[0].dilation, axes[1].dilation],
        padding,
        format: DataFormat::Nchw,
    };
    let y = conv_nchw(b, x, filter, cx.opt(2), attrs, [kh, kw], group)?;
    one(from_2d(b, y, one_d)?)
}

/// `x` (NCHW, `chw` its sizes) with `stride - 1` zeros after every cell of each axis:
/// `[n, c, h, 1, w, 1]`, padded to `[n, c, h, sh, w, sw]`, merged to `[n, c, h*sh, w*sw]`.
fn insert_zeros(
    b: &mut Builder,
    x: ValueId,
    [c, h, w]: [usize; 3],
    axes: &[Axis; 2],
) -> Result<ValueId, String> {
    let [sh, sw] = [axes[0].stride, axes[1].stride];
    if sh == 1 && sw == 1 {
        return Ok(x);
    }
    let [c, h, w] = [c, h, w].map(|d| d as i64);
    let split = b.i64s(&[-1, c, h, 1, w, 1]);
    let x = b.op(Op::Reshape, &[x, split])?;
    let mut amounts = [0i64; 12];
    amounts[7] = sh as i64 - 1;
    amounts[11] = sw as i64 - 1;
    let flat = b.i64s(&amounts);
    let shape = b.i64s(&[6, 2]);
    let pads = b.op(Op::Reshape, &[flat, shape])?;
    let x = b.op(
        Op::Pad {
            mode: PadMode::Constant,
        },
        &[x, pads],
    )?;
    let merged = b.i64s(&[-1, c, h * sh as i64, w * sw as i64]);
    b.op(Op::Reshape, &[x, merged])
}

/// Crops the zero-inserted input where [`Axis::conv_padding`] is negative; the rest is the
/// convolution's explicit padding.
fn crop_and_pad(
    b: &mut Builder,
    x: ValueId,
    axes: &[Axis; 2],
) -> Result<(ValueId, Padding), String> {
    let pads = axes.map(|a| a.conv_padding());
    let lens = axes.map(|a| (a.input * a.stride) as i64);
    let crop = pads.map(|p| p.map(|v| (-v).max(0)));
    let x = if crop == [[0, 0], [0, 0]] {
        x
    } else {
        let begin = b.i64s(&[0, 0, crop[0][0], crop[1][0]]);
        let sizes = [0, 1].map(|a| lens[a] - crop[a][0] - crop[a][1]);
        if sizes.iter().any(|&s| s < 1) {
            return Err(format!("pads crop the whole input (padding {pads:?})"));
        }
        let size = b.i64s(&[-1, -1, sizes[0], sizes[1]]);
        b.op(Op::Slice, &[x, begin, size])?
    };
    let p = pads.map(|p| p.map(|v| v.max(0) as usize));
    let padding = if p == [[0, 0], [0, 0]] {
        Padding::Valid
    } else {
        Padding::Explicit(p)
    };
    Ok((x, padding))
}

/// The OIHW filter of the equivalent convolution: ONNX's `[in, out / g, kh, kw]` weight with
/// each group's in and out channels swapped (`[out, in / g, kh, kw]`) and its window
/// reversed along both spatial axes.
fn flipped_filter(
    b: &mut Builder,
    w: ValueId,
    g: usize,
    [cin, mg, kh, kw]: [usize; 4],
) -> Result<ValueId, String> {
    let [g, cg, mg, kh, kw] = [g, cin / g, mg, kh, kw].map(|d| d as i64);
    let grouped = b.i64s(&[g, cg, mg, kh, kw]);
    let w = b.op(Op::Reshape, &[w, grouped])?;
    let perm = b.i64s(&[0, 2, 1, 3, 4]);
    let w = b.op(Op::Transpose, &[w, perm])?;
    let oihw = b.i64s(&[g * mg, cg, kh, kw]);
    let mut w = b.op(Op::Reshape, &[w, oihw])?;
    for (axis, k) in [(2, kh), (3, kw)] {
        if k > 1 {
            let rev: Vec<i64> = (0..k).rev().collect();
            let idx = b.konst(Tensor::from_vec(&[rev.len()], rev));
            let ax = b.i64_scalar(axis);
            w = b.op(Op::Gather { batch_dims: 0 }, &[w, idx, ax])?;
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(input: usize, kernel: usize, stride: usize, pads: [i64; 2]) -> Axis {
        Axis {
            input,
            kernel,
            stride,
            dilation: 1,
            output_padding: 0,
            pads,
        }
    }

    #[test]
    fn output_length_and_equivalent_padding() {
        // 3 cells, window 3, stride 2: full output 2*2 + 3 = 7.
        let a = axis(3, 3, 2, [0, 0]);
        assert_eq!((a.full(), a.output()), (7, 7));
        // Zero-inserted length 6 (last cell a zero) + 2 before + 1 after, less the span 2.
        assert_eq!(a.conv_padding(), [2, 1]);
        let a = axis(3, 3, 2, [1, 2]);
        assert_eq!((a.output(), a.conv_padding()), (4, [1, -1]));
    }

    #[test]
    fn split_puts_the_odd_cell_by_auto_pad() {
        assert_eq!(split(3, true), [1, 2]);
        assert_eq!(split(3, false), [2, 1]);
        // A negative total (an output_shape larger than the full output) adds cells.
        assert_eq!(split(-1, false), [0, -1]);
    }
}

#[cfg(test)]
mod import_tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    fn conv_transpose(x_dims: &[i64], w: Tensor, attrs: &[(&str, &[i64])]) -> lathe_ir::Graph {
        let mut n = node("ConvTranspose", &["x", "w"], &["y"]);
        for (name, v) in attrs {
            n = ints_attr(n, name, v);
        }
        let g = graph(
            "g",
            vec![n],
            vec![value("x", F32, x_dims)],
            vec![value("y", F32, &[])],
            &[("w", w)],
        );
        import(g, 11).unwrap()
    }

    #[test]
    fn strided_1d_places_each_input_times_the_filter_stride_apart() {
        let w = Tensor::from_vec(&[1, 1, 2], vec![1.0f32, 10.0]);
        let x = Tensor::from_vec(&[1, 1, 3], vec![1.0f32, 2.0, 3.0]);
        let g = conv_transpose(&[1, 1, 3], w.clone(), &[("strides", &[2])]);
        let y = run(&g, std::slice::from_ref(&x));
        assert_eq!(y[0].shape(), [1, 1, 6]);
        assert_eq!(vals(&y[0]), [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
        // Pads crop the full output; output_padding adds a cell at the end.
        let attrs: &[(&str, &[i64])] = &[("strides", &[2]), ("pads", &[1, 1])];
        let y = run(
            &conv_transpose(&[1, 1, 3], w.clone(), attrs),
            std::slice::from_ref(&x),
        );
        assert_eq!(vals(&y[0]), [10.0, 2.0, 20.0, 3.0]);
        let attrs: &[(&str, &[i64])] = &[("strides", &[2]), ("output_padding", &[1])];
        let y = run(&conv_transpose(&[1, 1, 3], w, attrs), &[x]);
        assert_eq!(vals(&y[0]), [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 0.0]);
    }

    #[test]
    fn groups_keep_their_channels_apart() {
        // Two groups of one channel each, 1x1 windows: each channel scaled by its weight.
        let w = Tensor::from_vec(&[2, 1, 1, 1], vec![2.0f32, 3.0]);
        let mut n = node("ConvTranspose", &["x", "w"], &["y"]);
        n = int_attr(n, "group", 2);
        let g = graph(
            "g",
            vec![n],
            vec![value("x", F32, &[1, 2, 1, 2])],
            vec![value("y", F32, &[])],
            &[("w", w)],
        );
        let g = import(g, 11).unwrap();
        let x = Tensor::from_vec(&[1, 2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        assert_eq!(vals(&run(&g, &[x])[0]), [2.0, 4.0, 9.0, 12.0]);
    }

    #[test]
    fn three_d_windows_are_an_error() {
        let w = Tensor::from_vec(&[1, 1, 1, 1, 1], vec![1.0f32]);
        let g = graph(
            "g",
            vec![node("ConvTranspose", &["x", "w"], &["y"])],
            vec![value("x", F32, &[1, 1, 2, 2, 2])],
            vec![value("y", F32, &[])],
            &[("w", w)],
        );
        let e = import(g, 11).unwrap_err().to_string();
        assert!(e.contains("ConvTranspose on rank 5"), "{e}");
    }
}
