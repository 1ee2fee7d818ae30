//! ONNX network ops: matrix products and determinants, convolution, pooling, normalization, softmax.
//!
//! ONNX images are NCHW with OIHW filters; the IR's convolutions take NCHW data (the
//! `layout` pass moves it to NHWC) and HWIO filters, so filters are transposed here (a
//! constant filter folds). A 1-D convolution or pool is the 2-D one on a height-1 image;
//! 3-D and dilated pools are taken one axis at a time (`pool_taps`).

use super::elementwise::{add_scalar, mul_scalar};
use super::{apply, norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{
    BinaryOp as B, ConvAttrs, DataFormat, Padding, PoolAttrs, ReduceKind, UnaryOp as U,
};
use lathe_ir::{Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row(
            "MatMul",
            &["matmul", "batch_matmul", "expand_dims", "squeeze"],
            |b, cx| one(matmul(b, cx.input(0)?, cx.input(1)?)?),
        ),
        row("Gemm", &["matmul", "mul", "add"], import_gemm),
        row("Det", &["det"], |b, cx| apply(b, cx, Op::Det, 1)),
        row(
            "Conv",
            &[
                "conv2d",
                "depthwise_conv2d",
                "transpose",
                "bias_add",
                "concat",
            ],
            import_conv,
        ),
        row(
            "MaxPool",
            &[
                "max_pool",
                "pad",
                "strided_slice",
                "maximum",
                "greater",
                "select",
            ],
            import_max_pool,
        ),
        row(
            "AveragePool",
            &["avg_pool", "pad", "strided_slice", "add", "mul"],
            |b, cx| import_pool(b, cx, false),
        ),
        row("GlobalAveragePool", &["reduce_mean"], |b, cx| {
            global_pool(b, cx, ReduceKind::Mean)
        }),
        row("GlobalMaxPool", &["reduce_max"], |b, cx| {
            global_pool(b, cx, ReduceKind::Max)
        }),
        row("BatchNormalization", &["fused_batch_norm"], |b, cx| {
            let eps = cx.attrs.float_or("epsilon", 1e-5)?;
            if cx.attrs.int_or("training_mode", 0)? != 0 {
                return Err("training mode is not supported".into());
            }
            if cx.attrs.int_or("spatial", 1)? == 0 {
                return Err("`spatial = 0` (before opset 9) is not supported".into());
            }
            let op = Op::FusedBatchNorm {
                epsilon: eps,
                format: DataFormat::Nchw,
            };
            apply(b, cx, op, 5)
        }),
        row("Softmax", &["softmax", "transpose", "reshape"], |b, cx| {
            softmax(b, cx, Op::Softmax)
        }),
        row(
            "LogSoftmax",
            &["log_softmax", "transpose", "reshape"],
            |b, cx| softmax(b, cx, Op::LogSoftmax),
        ),
        row(
            "LayerNormalization",
            &["reduce_mean", "sub", "mul", "add", "rsqrt"],
            import_layer_norm,
        ),
        row(
            "InstanceNormalization",
            &["reduce_mean", "sub", "mul", "add", "rsqrt"],
            import_instance_norm,
        ),
    ]
}

/// NumPy `matmul`: rank-1 operands get a unit axis added and removed; rank 2 is `matmul`,
/// higher ranks `batch_matmul` with broadcast batch axes.
pub(crate) fn matmul(b: &mut Builder, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    vector_operands(b, x, y, |b, x2, y2| {
        let op = if b.rank(x2) == 2 && b.rank(y2) == 2 {
            Op::MatMul {
                transpose_a: false,
                transpose_b: false,
            }
        } else {
            Op::BatchMatMul {
                adj_x: false,
                adj_y: false,
            }
        };
        b.op(op, &[x2, y2])
    })
}

/// `product(x2, y2)` under NumPy `matmul`'s rank rules, for every matrix product (`MatMul`,
/// `MatMulInteger`, `QLinearMatMul`): a rank-1 `x` is a row (a unit axis before it), a rank-1
/// `y` a column (a unit axis after it), and those unit axes are squeezed from the product.
pub(crate) fn vector_operands(
    b: &mut Builder,
    x: ValueId,
    y: ValueId,
    product: impl FnOnce(&mut Builder, ValueId, ValueId) -> Result<ValueId, String>,
) -> Result<ValueId, String> {
    let (rx, ry) = (b.rank(x), b.rank(y));
    if rx == 0 || ry == 0 {
        return Err("matrix product operands must have rank 1 or more".into());
    }
    let x2 = if rx == 1 {
        let a = b.i64_scalar(0);
        b.op(Op::ExpandDims, &[x, a])?
    } else {
        x
    };
    let y2 = if ry == 1 {
        let a = b.i64_scalar(1);
        b.op(Op::ExpandDims, &[y, a])?
    } else {
        y
    };
    let z = product(b, x2, y2)?;
    let rz = b.rank(z) as i64;
    let squeeze: Vec<i64> = [(rx == 1, rz - 2), (ry == 1, rz - 1)]
        .into_iter()
        .filter_map(|(unit, axis)| unit.then_some(axis))
        .collect();
    if squeeze.is_empty() {
        return Ok(z);
    }
    b.op(Op::Squeeze { axes: squeeze }, &[z])
}

/// `Gemm`: `alpha * op(A) @ op(B) + beta * C`.
fn import_gemm(b: &mut Builder, cx: &NodeCx) -> Out {
    let (a, bm) = (cx.input(0)?, cx.input(1)?);
    let alpha = cx.attrs.float_or("alpha", 1.0)? as f64;
    let beta = cx.attrs.float_or("beta", 1.0)? as f64;
    let op = Op::MatMul {
        transpose_a: cx.attrs.int_or("transA", 0)? != 0,
        transpose_b: cx.attrs.int_or("transB", 0)? != 0,
    };
    let mut y = b.op(op, &[a, bm])?;
    if alpha != 1.0 {
        y = mul_scalar(b, y, alpha)?;
    }
    if let Some(c) = cx.opt(2) {
        let c = if beta != 1.0 {
            mul_scalar(b, c, beta)?
        } else {
            c
        };
        y = b.op(Op::Binary(B::Add), &[y, c])?;
    }
    one(y)
}

/// The spatial geometry of a convolution or pool node, for a 1-D or 2-D window.
pub(super) struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
}

fn pair(v: &[i64], what: &str, one_d: bool) -> Result<[usize; 2], String> {
    let v: Vec<usize> = v
        .iter()
        .map(|&x| usize::try_from(x).map_err(|_| format!("`{what}` {v:?} has a negative entry")))
        .collect::<Result<_, _>>()?;
    match (one_d, v.as_slice()) {
        (true, [w]) => Ok([1, *w]),
        (false, [h, w]) => Ok([*h, *w]),
        _ => Err(format!(
            "`{what}` {v:?} does not match a {}-D window",
            if one_d { 1 } else { 2 }
        )),
    }
}

/// Reads `kernel_shape` (or the filter's), `strides`, `dilations`, `pads` and `auto_pad`.
/// `in_dims` are the spatial input dims when known (SAME_LOWER needs them).
pub(super) fn window(
    cx: &NodeCx,
    kernel: Option<[usize; 2]>,
    one_d: bool,
    in_dims: Option<[usize; 2]>,
) -> Result<Window, String> {
    let n = if one_d { 1 } else { 2 };
    let kernel = match cx.attrs.ints("kernel_shape") {
        Some(k) => pair(k, "kernel_shape", one_d)?,
        None => kernel.ok_or("missing attribute `kernel_shape`")?,
    };
    let strides = pair(&cx.attrs.ints_or("strides", &vec![1; n]), "strides", one_d)?;
    let dilations = pair(
        &cx.attrs.ints_or("dilations", &vec![1; n]),
        "dilations",
        one_d,
    )?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err("strides and dilations must be positive".into());
    }
    let padding = match cx.attrs.str_or("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => {
            let pads = cx.attrs.ints_or("pads", &vec![0; 2 * n]);
            if pads.len() != 2 * n || pads.iter().any(|&p| p < 0) {
                return Err(format!(
                    "`pads` {pads:?} is not {} non-negative amounts",
                    2 * n
                ));
            }
            let p: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
            let explicit = if one_d {
                [[0, 0], [p[0], p[1]]]
            } else {
                [[p[0], p[2]], [p[1], p[3]]]
            };
            if explicit == [[0, 0], [0, 0]] {
                Padding::Valid
            } else if in_dims.is_some_and(|d| same_pads(d, kernel, strides, dilations) == explicit)
            {
                // What SAME pads (exporters write SAME as explicit amounts): say so, so the
                // kernels take their SAME paths, as for the TensorFlow form of the model.
                Padding::Same
            } else {
                Padding::Explicit(explicit)
            }
        }
        "VALID" => Padding::Valid,
        "SAME_UPPER" => Padding::Same,
        "SAME_LOWER" => {
            let dims = in_dims.ok_or("SAME_LOWER padding needs the input's spatial size")?;
            let mut p = [[0; 2]; 2];
            for a in 0..2 {
                let eff = (kernel[a] - 1) * dilations[a] + 1;
                let out = dims[a].div_ceil(strides[a]);
                let total = ((out.max(1) - 1) * strides[a] + eff).saturating_sub(dims[a]);
                p[a] = [total.div_ceil(2), total / 2];
            }
            Padding::Explicit(p)
        }
        other => return Err(format!("unknown `auto_pad` value `{other}`")),
    };
    Ok(Window {
        kernel,
        strides,
        dilations,
        padding,
    })
}

/// The explicit padding TensorFlow's SAME amounts to: `ceil(in / stride)` outputs, the odd
/// cell at the end.
fn same_pads(
    dims: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> [[usize; 2]; 2] {
    let mut p = [[0; 2]; 2];
    for a in 0..2 {
        let eff = (kernel[a] - 1) * dilations[a] + 1;
        let out = dims[a].div_ceil(strides[a]);
        let total = ((out.max(1) - 1) * strides[a] + eff).saturating_sub(dims[a]);
        p[a] = [total / 2, total - total / 2];
    }
    p
}

/// The spatial dims of an NCHW (or NCW) value, when known.
pub(super) fn spatial(b: &Builder, x: ValueId, one_d: bool) -> Option<[usize; 2]> {
    let d = b.ty(x).shape.as_known()?;
    Some(if one_d { [1, d[2]] } else { [d[2], d[3]] })
}

/// An NCW value as NC1W (1-D windows run as 2-D ones), checking the rank.
pub(super) fn to_2d(b: &mut Builder, x: ValueId, what: &str) -> Result<(ValueId, bool), String> {
    match b.rank(x) {
        4 => Ok((x, false)),
        3 => {
            let a = b.i64_scalar(2);
            Ok((b.op(Op::ExpandDims, &[x, a])?, true))
        }
        r => Err(format!(
            "{what} on rank {r}: only 1-D and 2-D windows (rank 3 and 4 inputs) are supported"
        )),
    }
}

/// Undoes [`to_2d`] on a result.
pub(super) fn from_2d(b: &mut Builder, y: ValueId, one_d: bool) -> Result<ValueId, String> {
    if !one_d {
        return Ok(y);
    }
    b.op(Op::Squeeze { axes: vec![2] }, &[y])
}

fn import_conv(b: &mut Builder, cx: &NodeCx) -> Out {
    let (x, w) = (cx.input(0)?, cx.input(1)?);
    let (x, one_d) = to_2d(b, x, "Conv")?;
    let (w, _) = to_2d(b, w, "Conv")?;
    let wd = b.ty(w).shape.clone();
    let kernel = [wd.0[2].known(), wd.0[3].known()];
    let kernel = match kernel {
        [Some(h), Some(w)] => Some([h, w]),
        _ => None,
    };
    let win = window(
        cx,
        kernel.map(|k| if one_d { [1, k[1]] } else { k }),
        one_d,
        spatial(b, x, one_d),
    )?;
    let group = cx.attrs.int_or("group", 1)?;
    let attrs = ConvAttrs {
        strides: win.strides,
        dilations: win.dilations,
        padding: win.padding,
        format: DataFormat::Nchw,
    };
    let y = conv_nchw(b, x, w, cx.opt(2), attrs, win.kernel, group)?;
    one(from_2d(b, y, one_d)?)
}

/// The convolution of NCHW `x` with the OIHW filter `w` (`kernel` its window) in `group`
/// groups, plus `bias` when given: one `conv2d`, a `depthwise_conv2d` when every group has
/// one input channel, or one `conv2d` per group concatenated.
pub(super) fn conv_nchw(
    b: &mut Builder,
    x: ValueId,
    w: ValueId,
    bias: Option<ValueId>,
    attrs: ConvAttrs,
    kernel: [usize; 2],
    group: i64,
) -> Result<ValueId, String> {
    let in_c = b.ty(x).shape.0[1].known();
    let out_c = b.ty(w).shape.0[0].known();
    let y = if group == 1 {
        let f = filter(b, w, &[2, 3, 1, 0])?;
        b.op(Op::Conv2D(attrs), &[x, f])?
    } else {
        let (Some(c), Some(m)) = (in_c, out_c) else {
            return Err("a grouped convolution needs known channel counts".into());
        };
        let g = usize::try_from(group).map_err(|_| format!("group {group} is not positive"))?;
        if g == 0 || c % g != 0 || m % g != 0 {
            return Err(format!(
                "group {g} does not divide {c} input and {m} output channels"
            ));
        }
        if g == c {
            // Depthwise: filter [c * mult, 1, kh, kw] -> [kh, kw, c, mult].
            let mult = (m / c) as i64;
            let [kh, kw] = kernel;
            let shape = b.i64s(&[c as i64, mult, kh as i64, kw as i64]);
            let f = b.op(Op::Reshape, &[w, shape])?;
            let f = filter(b, f, &[2, 3, 0, 1])?;
            b.op(Op::DepthwiseConv2D(attrs), &[x, f])?
        } else {
            let (cg, mg) = ((c / g) as i64, (m / g) as i64);
            let mut parts = Vec::with_capacity(g + 1);
            for i in 0..g as i64 {
                let xb = b.i64s(&[0, i * cg, 0, 0]);
                let xs = b.i64s(&[-1, cg, -1, -1]);
                let xi = b.op(Op::Slice, &[x, xb, xs])?;
                let wb = b.i64s(&[i * mg, 0, 0, 0]);
                let ws = b.i64s(&[mg, -1, -1, -1]);
                let wi = b.op(Op::Slice, &[w, wb, ws])?;
                let fi = filter(b, wi, &[2, 3, 1, 0])?;
                parts.push(b.op(Op::Conv2D(attrs.clone()), &[xi, fi])?);
            }
            parts.push(b.i64_scalar(1));
            b.op(Op::Concat, &parts)?
        }
    };
    match bias {
        Some(bias) => b.op(
            Op::BiasAdd {
                format: DataFormat::Nchw,
            },
            &[y, bias],
        ),
        None => Ok(y),
    }
}

/// A filter in the IR's layout: `w` transposed by `perm` (computed while importing when `w`
/// is a weight: movement of constants folds at any size).
fn filter(b: &mut Builder, w: ValueId, perm: &[i64]) -> Result<ValueId, String> {
    let p = b.i64s(perm);
    b.op(Op::Transpose, &[w, p])
}

/// `MaxPool`: the values, and the indices of the maxima when the node asks for them (then
/// both from `max_pool_indices`' running maximum).
fn import_max_pool(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    if !cx.wants(1) {
        return one(pool(b, cx, x, true, false)?);
    }
    let (y, indices) = super::max_pool_indices::max_pool_with_indices(b, cx, x)?;
    Ok(vec![y, indices])
}

fn import_pool(b: &mut Builder, cx: &NodeCx, max: bool) -> Out {
    let include_pad = !max && cx.attrs.int_or("count_include_pad", 0)? != 0;
    one(pool(b, cx, cx.input(0)?, max, include_pad)?)
}

/// The average over each window of `x` with padded cells counted as zeros (`LpPool`'s sum
/// is this times the window size), the window read from `cx`'s attributes.
pub(crate) fn average_pool_including_pads(
    b: &mut Builder,
    cx: &NodeCx,
    x: ValueId,
) -> Result<ValueId, String> {
    pool(b, cx, x, false, true)
}

/// A max or average pool of `x` with `cx`'s window attributes.
fn pool(
    b: &mut Builder,
    cx: &NodeCx,
    x: ValueId,
    max: bool,
    include_pad: bool,
) -> Result<ValueId, String> {
    let what = if max { "MaxPool" } else { "AveragePool" };
    let dilated = cx
        .attrs
        .ints("dilations")
        .is_some_and(|d| d.iter().any(|&d| d != 1));
    if b.rank(x) > 4 || dilated {
        // Windows the IR's pools do not take: one axis at a time, with strided slices.
        return super::pool_taps::pool(b, cx, x, max, include_pad);
    }
    let (x, one_d) = to_2d(b, x, what)?;
    let win = window(cx, None, one_d, spatial(b, x, one_d))?;
    let ceil = cx.attrs.int_or("ceil_mode", 0)? != 0;
    let pads = match win.padding {
        Padding::Valid => [[0; 2]; 2],
        Padding::Explicit(p) => p,
        Padding::Same if include_pad || ceil => {
            let dims = spatial(b, x, one_d).ok_or(
                "SAME padding with `count_include_pad` or `ceil_mode` needs the input's size",
            )?;
            same_pads(dims, win.kernel, win.strides, win.dilations)
        }
        Padding::Same => [[0; 2]; 2],
    };
    // Cells past the end that ceil mode's last windows reach: never counted.
    let extra = if ceil {
        let dims = spatial(b, x, one_d).ok_or("`ceil_mode` needs the input's spatial size")?;
        ceil_extra(dims, pads, win.kernel, win.strides)
    } else {
        [0, 0]
    };
    let mut x = x;
    let padding = if win.padding == Padding::Same && !include_pad && !ceil {
        Padding::Same
    } else if include_pad && pads != [[0; 2]; 2] {
        // Padded cells count: pad with zeros first; only ceil mode's overhang is ignored.
        let flat = [0, 0, 0, 0, pads[0][0], pads[0][1], pads[1][0], pads[1][1]];
        let flat = b.i64s(&flat.map(|p| p as i64));
        let shape = b.i64s(&[4, 2]);
        let pads = b.op(Op::Reshape, &[flat, shape])?;
        let op = Op::Pad {
            mode: lathe_ir::ops::PadMode::Constant,
        };
        x = b.op(op, &[x, pads])?;
        explicit([[0, extra[0]], [0, extra[1]]])
    } else {
        explicit([
            [pads[0][0], pads[0][1] + extra[0]],
            [pads[1][0], pads[1][1] + extra[1]],
        ])
    };
    let attrs = PoolAttrs {
        ksize: win.kernel,
        strides: win.strides,
        padding,
        format: DataFormat::Nchw,
    };
    let op = if max {
        Op::MaxPool(attrs)
    } else {
        Op::AvgPool(attrs)
    };
    let y = b.op(op, &[x])?;
    from_2d(b, y, one_d)
}

/// `Valid` for no padding, else the explicit amounts.
fn explicit(p: [[usize; 2]; 2]) -> Padding {
    if p == [[0; 2]; 2] {
        Padding::Valid
    } else {
        Padding::Explicit(p)
    }
}

/// Ceil mode keeps the last, partial window of each axis: the cells it needs past the end
/// padding (ignored by both pools). A window that would start in the end padding is dropped.
fn ceil_extra(
    dims: [usize; 2],
    pads: [[usize; 2]; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
) -> [usize; 2] {
    let mut extra = [0; 2];
    for a in 0..2 {
        let padded = dims[a] + pads[a][0] + pads[a][1];
        if padded < kernel[a] {
            continue;
        }
        let mut out = (padded - kernel[a]).div_ceil(strides[a]) + 1;
        if (out - 1) * strides[a] >= dims[a] + pads[a][0] {
            out -= 1;
        }
        extra[a] = ((out - 1) * strides[a] + kernel[a]).saturating_sub(padded);
    }
    extra
}

fn global_pool(b: &mut Builder, cx: &NodeCx, kind: ReduceKind) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x) as i64;
    if rank < 3 {
        return Err(format!("needs an input of rank 3 or more, got rank {rank}"));
    }
    let axes = b.i64s(&(2..rank).collect::<Vec<_>>());
    one(b.op(
        Op::Reduce {
            kind,
            keep_dims: true,
        },
        &[x, axes],
    )?)
}

/// `Softmax`/`LogSoftmax` over `axis`: before version 13, over the input flattened to 2-D at
/// `axis` (default 1); from 13, over the one axis (default -1), moved last when it is not.
fn softmax(b: &mut Builder, cx: &NodeCx, op: Op) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    if cx.opset < 13 {
        let axis = norm_axis(cx.attrs.int_or("axis", 1)?, rank)?;
        if axis == rank - 1 {
            return one(b.op(op, &[x])?);
        }
        let dims = b
            .ty(x)
            .shape
            .as_known()
            .ok_or("softmax over several axes needs the input's shape")?;
        let inner: usize = dims[axis..].iter().product();
        let flat = b.i64s(&[-1, inner as i64]);
        let y = b.op(Op::Reshape, &[x, flat])?;
        let y = b.op(op, &[y])?;
        let back = b.i64s(&dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
        return one(b.op(Op::Reshape, &[y, back])?);
    }
    let axis = norm_axis(cx.attrs.int_or("axis", -1)?, rank)?;
    if axis == rank - 1 {
        return one(b.op(op, &[x])?);
    }
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(axis, rank - 1);
    let p = b.i64s(&perm);
    let y = b.op(Op::Transpose, &[x, p])?;
    let y = b.op(op, &[y])?;
    let p = b.i64s(&perm);
    one(b.op(Op::Transpose, &[y, p])?)
}

/// `(x - mean) / sqrt(var + eps)` over `axes` (kept).
fn normalize(b: &mut Builder, x: ValueId, axes: &[i64], eps: f64) -> Result<ValueId, String> {
    let mean_op = Op::Reduce {
        kind: ReduceKind::Mean,
        keep_dims: true,
    };
    let ax = b.i64s(axes);
    let mean = b.op(mean_op.clone(), &[x, ax])?;
    let d = b.op(Op::Binary(B::Sub), &[x, mean])?;
    let d2 = b.op(Op::Binary(B::Mul), &[d, d])?;
    let ax = b.i64s(axes);
    let var = b.op(mean_op, &[d2, ax])?;
    let var = add_scalar(b, var, eps)?;
    let r = b.op(Op::Unary(U::Rsqrt), &[var])?;
    b.op(Op::Binary(B::Mul), &[d, r])
}

/// `LayerNormalization` (17): normalized over the axes from `axis` on (in f32 for narrower
/// floats, its `stash_type`), then scale and bias; the optional outputs are the mean and the
/// inverse standard deviation, with the normalized axes kept as size 1.
fn import_layer_norm(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dt = b.dtype(x);
    let rank = b.rank(x);
    let axis = norm_axis(cx.attrs.int_or("axis", -1)?, rank)?;
    let eps = cx.attrs.float_or("epsilon", 1e-5)? as f64;
    let xf = match dt {
        lathe_ir::DType::F16 | lathe_ir::DType::BF16 => {
            super::elementwise::cast(b, x, lathe_ir::DType::F32)?
        }
        _ => x,
    };
    let axes: Vec<i64> = (axis as i64..rank as i64).collect();
    let mean_op = Op::Reduce {
        kind: ReduceKind::Mean,
        keep_dims: true,
    };
    let ax = b.i64s(&axes);
    let mean = b.op(mean_op.clone(), &[xf, ax])?;
    let d = b.op(Op::Binary(B::Sub), &[xf, mean])?;
    let d2 = b.op(Op::Binary(B::Mul), &[d, d])?;
    let ax = b.i64s(&axes);
    let var = b.op(mean_op, &[d2, ax])?;
    let var = add_scalar(b, var, eps)?;
    let inv = b.op(Op::Unary(U::Rsqrt), &[var])?;
    let y = b.op(Op::Binary(B::Mul), &[d, inv])?;
    let y = super::elementwise::cast(b, y, dt)?;
    let y = b.op(Op::Binary(B::Mul), &[y, cx.input(1)?])?;
    let y = match cx.opt(2) {
        Some(bias) => b.op(Op::Binary(B::Add), &[y, bias])?,
        None => y,
    };
    Ok(vec![y, mean, inv])
}

/// `InstanceNormalization`: each channel of each item normalized over its spatial axes.
fn import_instance_norm(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    if rank < 3 {
        return Err(format!("needs an input of rank 3 or more, got rank {rank}"));
    }
    let eps = cx.attrs.float_or("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (2..rank as i64).collect();
    let y = normalize(b, x, &axes, eps)?;
    // Scale and bias are per channel: shape [C, 1, ...].
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, rank - 2));
    let s = b.i64s(&shape);
    let scale = b.op(Op::Reshape, &[cx.input(1)?, s])?;
    let s = b.i64s(&shape);
    let bias = b.op(Op::Reshape, &[cx.input(2)?, s])?;
    let y = b.op(Op::Binary(B::Mul), &[y, scale])?;
    one(b.op(Op::Binary(B::Add), &[y, bias])?)
}
