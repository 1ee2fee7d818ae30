//! ONNX's quantized and integer ops, and the bitwise ones.
//!
//! - `MatMulInteger` and `ConvInteger` are the IR's `matmul_integer` and `conv2d_integer` (i8/u8
//!   operands minus their zero points, summed in i32); an absent zero point is 0.
//! - `QLinearMatMul` and `QLinearConv` run those and requantize in f32, as onnxruntime does
//!   (no dequantized operand is ever made): `y = saturate(round(float(acc) * (sa * sb / sy)) +
//!   zero_point_y)`, with `QLinearConv`'s i32 bias added to the sums first.
//! - `QuantizeLinear` is `saturate(round(x / scale) + zero_point)` and `DequantizeLinear`
//!   `(float(x) - float(zero_point)) * scale`, written with elementwise IR ops, which is exact:
//!   rounding is the IR's ties-to-even `round`; the rounded quotient is moved to f32 (exact for
//!   every integer below 2^24, and any larger one saturates whatever the zero point), the zero
//!   point added and the sum clamped to the output type's range in f32, and the cast of an
//!   integral in-range float is exact. Scales and zero points are per tensor, per axis (`axis`,
//!   a 1-D scale) or blocked (`block_size`, each scale repeated over a block of `axis`).
//! - `DynamicQuantizeLinear` computes ONNX's u8 scale and zero point from the tensor's range
//!   (which always includes 0) with reductions, then quantizes with them.
//! - `BitShift`, `BitwiseAnd`/`Or`/`Xor`/`Not` are the IR's integer bitwise ops.
//!
//! Quantizing to int4, uint4, int2 and uint2 clamps to their ranges like any integer type; to
//! float8 and float4 it is a cast of `x / scale` (see `to_small_float`). Dequantizing any of
//! them casts to f32 first, as for bytes.

use super::elementwise::cast;
use super::nn::{from_2d, spatial, to_2d, vector_operands, window};
use super::{apply, norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, ConvAttrs, DataFormat, ReduceKind, UnaryOp as U};
use lathe_ir::{DType, Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("BitShift", &["left_shift", "right_shift"], |b, cx| {
            let op = match cx.attrs.str_or("direction", "")?.as_str() {
                "LEFT" => B::LeftShift,
                "RIGHT" => B::RightShift,
                d => return Err(format!("`direction` must be LEFT or RIGHT, got `{d}`")),
            };
            apply(b, cx, Op::Binary(op), 2)
        }),
        row("BitwiseAnd", &["bitwise_and"], |b, cx| {
            apply(b, cx, Op::Binary(B::BitwiseAnd), 2)
        }),
        row("BitwiseOr", &["bitwise_or"], |b, cx| {
            apply(b, cx, Op::Binary(B::BitwiseOr), 2)
        }),
        row("BitwiseXor", &["bitwise_xor"], |b, cx| {
            apply(b, cx, Op::Binary(B::BitwiseXor), 2)
        }),
        row("BitwiseNot", &["bitwise_not"], |b, cx| {
            apply(b, cx, Op::Unary(U::BitwiseNot), 1)
        }),
        row(
            "QuantizeLinear",
            &[
                "round",
                "div",
                "cast",
                "add",
                "maximum",
                "minimum",
                "reshape",
                "expand_dims",
                "tile",
                "slice",
                "cast_unsaturated",
            ],
            import_quantize,
        ),
        row(
            "DequantizeLinear",
            &[
                "mul",
                "cast",
                "sub",
                "reshape",
                "expand_dims",
                "tile",
                "slice",
            ],
            import_dequantize,
        ),
        row(
            "DynamicQuantizeLinear",
            &[
                "round",
                "reduce_max",
                "reduce_min",
                "maximum",
                "minimum",
                "sub",
                "equal",
                "select",
                "div",
                "neg",
                "cast",
                "add",
            ],
            import_dynamic_quantize,
        ),
        row(
            "MatMulInteger",
            &["matmul_integer", "reshape", "expand_dims", "squeeze"],
            |b, cx| {
                let (a, bm) = (cx.input(0)?, cx.input(1)?);
                one(int_matmul(b, a, bm, cx.opt(2), cx.opt(3))?)
            },
        ),
        row(
            "ConvInteger",
            &[
                "conv2d_integer",
                "transpose",
                "expand_dims",
                "squeeze",
                "reshape",
            ],
            |b, cx| {
                let (acc, one_d) = int_conv(b, cx, [0, 1, 2, 3])?;
                one(from_2d(b, acc, one_d)?)
            },
        ),
        row(
            "QLinearMatMul",
            &[
                "matmul_integer",
                "reshape",
                "expand_dims",
                "squeeze",
                "cast",
                "mul",
                "div",
                "round",
                "add",
                "maximum",
                "minimum",
            ],
            import_qlinear_matmul,
        ),
        row(
            "QLinearConv",
            &[
                "conv2d_integer",
                "transpose",
                "expand_dims",
                "squeeze",
                "reshape",
                "add",
                "cast",
                "mul",
                "div",
                "round",
                "maximum",
                "minimum",
            ],
            import_qlinear_conv,
        ),
    ]
}

/// The smallest and largest value of a quantized output type.
fn range_of(dt: DType) -> Result<(f64, f64), String> {
    Ok(match dt {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::U4 => (0.0, 15.0),
        DType::I4 => (-8.0, 7.0),
        DType::U2 => (0.0, 3.0),
        DType::I2 => (-2.0, 1.0),
        other => return Err(format!("quantizing to {other} is not supported")),
    })
}

/// `saturate(round(v) + zero_point)` as dtype `out`, `v` a float (see the module notes).
fn requantize(
    b: &mut Builder,
    v: ValueId,
    zero_point: Option<ValueId>,
    out: DType,
) -> Result<ValueId, String> {
    let (lo, hi) = range_of(out)?;
    let r = b.op(Op::Unary(U::Round), &[v])?;
    let mut y = cast(b, r, DType::F32)?;
    if let Some(zp) = zero_point {
        let zp = cast(b, zp, DType::F32)?;
        y = b.op(Op::Binary(B::Add), &[y, zp])?;
    }
    let (lo, hi) = (b.scalar(DType::F32, lo), b.scalar(DType::F32, hi));
    let y = b.op(Op::Binary(B::Maximum), &[y, lo])?;
    let y = b.op(Op::Binary(B::Minimum), &[y, hi])?;
    cast(b, y, out)
}

/// A scale or zero point `v` shaped to broadcast against an operand of `dims` quantized along
/// `axis`: a scalar as it is; a vector (per axis) with trailing unit axes; with `block > 0`, a
/// tensor of the operand's rank whose entries each cover `block` consecutive indices of `axis`.
fn along_axis(
    b: &mut Builder,
    v: ValueId,
    dims: &[usize],
    axis: i64,
    block: usize,
) -> Result<ValueId, String> {
    let vd = b
        .ty(v)
        .shape
        .as_known()
        .ok_or("scales and zero points need known shapes")?;
    if vd.is_empty() && block == 0 {
        // Per tensor: the axis (1 by default, whatever the rank) plays no part.
        return Ok(v);
    }
    if block == 0 && vd.iter().product::<usize>() == 1 {
        // One value in a tensor of any rank is per tensor too, as in ONNX's reference.
        let scalar = b.i64s(&[]);
        return b.op(Op::Reshape, &[v, scalar]);
    }
    let rank = dims.len();
    let axis = norm_axis(axis, rank)?;
    if block > 0 {
        if vd.len() != rank {
            return Err(format!(
                "blocked quantization needs scales of the input's rank {rank}, got {vd:?}"
            ));
        }
        if vd[axis] == 0 || vd[axis] * block < dims[axis] || (vd[axis] - 1) * block >= dims[axis] {
            return Err(format!(
                "{} blocks of {block} along axis {axis} do not cover its {} entries",
                vd[axis], dims[axis]
            ));
        }
        // Repeat each entry `block` times along `axis`, then cut to the axis' length.
        let ax = b.i64_scalar(axis as i64 + 1);
        let e = b.op(Op::ExpandDims, &[v, ax])?;
        let mut reps = vec![1i64; rank + 1];
        reps[axis + 1] = block as i64;
        let reps = b.i64s(&reps);
        let t = b.op(Op::Tile, &[e, reps])?;
        let mut shape: Vec<i64> = vd.iter().map(|&d| d as i64).collect();
        shape[axis] *= block as i64;
        let s = b.i64s(&shape);
        let mut y = b.op(Op::Reshape, &[t, s])?;
        if vd[axis] * block != dims[axis] {
            let begin = b.i64s(&vec![0; rank]);
            let mut size = vec![-1i64; rank];
            size[axis] = dims[axis] as i64;
            let size = b.i64s(&size);
            y = b.op(Op::Slice, &[y, begin, size])?;
        }
        return Ok(y);
    }
    match vd.as_slice() {
        [] => Ok(v),
        [n] => {
            if *n != 1 && *n != dims[axis] {
                return Err(format!(
                    "{n} scales or zero points for axis {axis} of {} entries",
                    dims[axis]
                ));
            }
            let mut shape = vec![*n as i64];
            shape.extend(std::iter::repeat_n(1, rank - 1 - axis));
            let s = b.i64s(&shape);
            b.op(Op::Reshape, &[v, s])
        }
        _ => Err(format!(
            "scales and zero points of shape {vd:?} need `block_size` (blocked quantization)"
        )),
    }
}

/// The operand's dims, its quantization axis (as written) and block size, from `axis` and
/// `block_size`.
fn axis_and_block(
    b: &Builder,
    cx: &NodeCx,
    x: ValueId,
) -> Result<(Vec<usize>, i64, usize), String> {
    let dims = b
        .ty(x)
        .shape
        .as_known()
        .ok_or("quantizing needs the input's shape")?;
    let axis = cx.attrs.int_or("axis", 1)?;
    let block = cx.attrs.int_or("block_size", 0)?;
    let block = usize::try_from(block).map_err(|_| format!("`block_size` {block} is negative"))?;
    Ok((dims, axis, block))
}

/// Scale and zero point (when given) of a `QuantizeLinear`/`DequantizeLinear` node, shaped to
/// broadcast against its input.
fn scale_and_zero_point(
    b: &mut Builder,
    cx: &NodeCx,
    x: ValueId,
) -> Result<(ValueId, Option<ValueId>), String> {
    let (dims, axis, block) = axis_and_block(b, cx, x)?;
    let scale = along_axis(b, cx.input(1)?, &dims, axis, block)?;
    let zp = match cx.opt(2) {
        // Shape ops do not take the low-precision types; their zero points are only ever
        // used as f32, so they become f32 first.
        Some(z) if b.dtype(z).is_low_precision() => {
            let z = cast(b, z, DType::F32)?;
            Some(along_axis(b, z, &dims, axis, block)?)
        }
        Some(z) => Some(along_axis(b, z, &dims, axis, block)?),
        None => None,
    };
    Ok((scale, zp))
}

/// The float type `x / scale` is computed in: theirs when they agree, else f32 (f64 if either
/// is f64), as NumPy promotes.
fn quotient_dtype(x: DType, scale: DType) -> DType {
    match (x, scale) {
        _ if x == scale && x.is_float() => x,
        (DType::F64, _) | (_, DType::F64) => DType::F64,
        _ => DType::F32,
    }
}

fn import_quantize(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let out = match cx.opt(2) {
        Some(zp) => b.dtype(zp),
        None => match cx.attrs.int_or("output_dtype", 0)? {
            0 => DType::U8,
            _ => cx.attrs.dtype("output_dtype")?,
        },
    };
    let small_float = matches!(
        out,
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F4E2M1
    );
    if !small_float {
        range_of(out)?;
    }
    let (scale, zp) = scale_and_zero_point(b, cx, x)?;
    let ct = quotient_dtype(b.dtype(x), b.dtype(scale));
    let (xc, sc) = (cast(b, x, ct)?, cast(b, scale, ct)?);
    let q = b.op(Op::Binary(B::Div), &[xc, sc])?;
    if small_float {
        return one(to_small_float(b, cx, q, zp, out)?);
    }
    one(requantize(b, q, zp, out)?)
}

/// `QuantizeLinear` to float8 or float4 (as ONNX's reference does): `q = x / scale` rounded to
/// the type by a cast, saturating unless `saturate = 0` (float8 only; float4 always
/// saturates). Float8 zero points must be 0 and are left out (adding one would turn `-0` into
/// `0`); float4's is added first.
fn to_small_float(
    b: &mut Builder,
    cx: &NodeCx,
    q: ValueId,
    zp: Option<ValueId>,
    out: DType,
) -> Result<ValueId, String> {
    let mut q = q;
    if let (Some(zp), DType::F4E2M1) = (zp, out) {
        let zp = cast(b, zp, b.dtype(q))?;
        q = b.op(Op::Binary(B::Add), &[q, zp])?;
    }
    if cx.attrs.int_or("saturate", 1)? == 0 && out != DType::F4E2M1 {
        return b.op(Op::CastUnsaturated { to: out }, &[q]);
    }
    cast(b, q, out)
}

fn import_dequantize(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let out = match cx.attrs.int_or("output_dtype", 0)? {
        0 => b.dtype(cx.input(1)?),
        _ => cx.attrs.dtype("output_dtype")?,
    };
    if !out.is_float() {
        return Err(format!("dequantizing to {out} is not supported"));
    }
    let (scale, zp) = scale_and_zero_point(b, cx, x)?;
    let mut y = cast(b, x, DType::F32)?;
    if let Some(zp) = zp {
        let zp = cast(b, zp, DType::F32)?;
        y = b.op(Op::Binary(B::Sub), &[y, zp])?;
    }
    let s = cast(b, scale, DType::F32)?;
    let y = b.op(Op::Binary(B::Mul), &[y, s])?;
    one(cast(b, y, out)?)
}

/// `DynamicQuantizeLinear` (f32 to u8): with `lo = min(0, min x)` and `hi = max(0, max x)`,
/// `scale = (hi - lo) / 255` (`1 / 255` when the range is empty) and `zero_point =
/// round(clamp(-lo / scale, 0, 255))`; `y` is `x` quantized with them.
fn import_dynamic_quantize(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dt = b.dtype(x);
    if dt != DType::F32 {
        return Err(format!("the input must be f32, got {dt}"));
    }
    let rank = b.rank(x) as i64;
    let extreme = |b: &mut Builder, kind, with_zero: B| -> Result<ValueId, String> {
        let axes = b.i64s(&(0..rank).collect::<Vec<_>>());
        let r = b.op(
            Op::Reduce {
                kind,
                keep_dims: false,
            },
            &[x, axes],
        )?;
        let zero = b.scalar(dt, 0.0);
        b.op(Op::Binary(with_zero), &[r, zero])
    };
    let hi = extreme(b, ReduceKind::Max, B::Maximum)?;
    let lo = extreme(b, ReduceKind::Min, B::Minimum)?;
    let span = b.op(Op::Binary(B::Sub), &[hi, lo])?;
    let empty = b.op(Op::Binary(B::Equal), &[hi, lo])?;
    let one_ = b.scalar(dt, 1.0);
    let span = b.op(Op::Select, &[empty, one_, span])?;
    let q_span = b.scalar(dt, 255.0);
    let scale = b.op(Op::Binary(B::Div), &[span, q_span])?;
    let neg_lo = b.op(Op::Unary(U::Neg), &[lo])?;
    let zp = b.op(Op::Binary(B::Div), &[neg_lo, scale])?;
    // `zp` is in [0, 255] already but for rounding; requantizing clamps and rounds it.
    let zp = requantize(b, zp, None, DType::U8)?;
    let q = b.op(Op::Binary(B::Div), &[x, scale])?;
    let y = requantize(b, q, Some(zp), DType::U8)?;
    Ok(vec![y, scale, zp])
}

/// A zero point of an integer product: 0 of `like`'s dtype when absent, a scalar as it is, and
/// a tensor with one entry per index of one axis (and units elsewhere, ONNX's `[..., M, 1]`
/// form for rows) as a vector.
fn product_zero_point(
    b: &mut Builder,
    zp: Option<ValueId>,
    like: ValueId,
) -> Result<ValueId, String> {
    let Some(zp) = zp else {
        return Ok(b.scalar(b.dtype(like), 0.0));
    };
    let dims = b
        .ty(zp)
        .shape
        .as_known()
        .ok_or("zero points need known shapes")?;
    let len: usize = dims.iter().product();
    if dims.is_empty() || (dims.len() == 1 && len != 1) {
        return Ok(zp);
    }
    if dims.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(format!(
            "zero points of shape {dims:?} vary over more than one axis; only per-tensor and \
             per-row or per-column zero points are supported"
        ));
    }
    let shape = if len == 1 { vec![] } else { vec![len as i64] };
    let s = b.i64s(&shape);
    b.op(Op::Reshape, &[zp, s])
}

/// `matmul_integer` with NumPy `matmul`'s rank rules ([`vector_operands`]).
fn int_matmul(
    b: &mut Builder,
    x: ValueId,
    y: ValueId,
    x_zp: Option<ValueId>,
    y_zp: Option<ValueId>,
) -> Result<ValueId, String> {
    let x_zp = product_zero_point(b, x_zp, x)?;
    let y_zp = product_zero_point(b, y_zp, y)?;
    vector_operands(b, x, y, |b, x2, y2| {
        b.op(Op::MatMulInteger, &[x2, y2, x_zp, y_zp])
    })
}

/// The `conv2d_integer` of a `ConvInteger`/`QLinearConv` node whose x, w, x_zero_point and
/// w_zero_point are inputs `at`: the NCHW result (a 1-D convolution on a height-1 image, the
/// flag saying so).
fn int_conv(b: &mut Builder, cx: &NodeCx, at: [usize; 4]) -> Result<(ValueId, bool), String> {
    let (x, w) = (cx.input(at[0])?, cx.input(at[1])?);
    let (x, one_d) = to_2d(b, x, cx.op)?;
    let (w, _) = to_2d(b, w, cx.op)?;
    let wd = b
        .ty(w)
        .shape
        .as_known()
        .ok_or("the filter's shape must be known")?;
    let kernel = if one_d { [1, wd[3]] } else { [wd[2], wd[3]] };
    let win = window(cx, Some(kernel), one_d, spatial(b, x, one_d))?;
    let group = cx.attrs.int_or("group", 1)?;
    if let Some(c) = b.ty(x).shape.0[1].known() {
        if group < 1 || c as i64 != group * wd[1] as i64 {
            return Err(format!(
                "group {group} with {} filter input channels does not fit {c} input channels",
                wd[1]
            ));
        }
    }
    let x_zp = product_zero_point(b, cx.opt(at[2]), x)?;
    if b.rank(x_zp) != 0 {
        return Err("the input's zero point must be one value (per tensor)".into());
    }
    let w_zp = product_zero_point(b, cx.opt(at[3]), w)?;
    let perm = b.i64s(&[2, 3, 1, 0]);
    let f = b.op(Op::Transpose, &[w, perm])?;
    let attrs = ConvAttrs {
        strides: win.strides,
        dilations: win.dilations,
        padding: win.padding,
        format: DataFormat::Nchw,
    };
    Ok((b.op(Op::Conv2DInteger(attrs), &[x, f, x_zp, w_zp])?, one_d))
}

/// A QLinear op's scale as a vector (see [`product_zero_point`]), or a scalar.
fn product_scale(b: &mut Builder, s: ValueId) -> Result<ValueId, String> {
    product_zero_point(b, Some(s), s)
}

/// `float(acc) * (sa * sb / sy)`, requantized with `y_zero_point` (dtype `out`); the scales'
/// quotient is computed in their own dtype.
fn requantize_product(
    b: &mut Builder,
    acc: ValueId,
    [sa, sb, sy]: [ValueId; 3],
    y_zp: Option<ValueId>,
    out: DType,
) -> Result<ValueId, String> {
    let ab = b.op(Op::Binary(B::Mul), &[sa, sb])?;
    let m = b.op(Op::Binary(B::Div), &[ab, sy])?;
    let m = cast(b, m, DType::F32)?;
    let accf = cast(b, acc, DType::F32)?;
    let v = b.op(Op::Binary(B::Mul), &[accf, m])?;
    requantize(b, v, y_zp, out)
}

/// The output dtype of a QLinear op: its output zero point's, else its first operand's.
fn qlinear_out(b: &Builder, cx: &NodeCx, y_zp: usize) -> Result<DType, String> {
    Ok(match cx.opt(y_zp) {
        Some(z) => b.dtype(z),
        None => b.dtype(cx.input(0)?),
    })
}

fn import_qlinear_matmul(b: &mut Builder, cx: &NodeCx) -> Out {
    let out = qlinear_out(b, cx, 7)?;
    let (a, bm) = (cx.input(0)?, cx.input(3)?);
    let acc = int_matmul(b, a, bm, cx.opt(2), cx.opt(5))?;
    // Per-row scales of `a` become a column, per-column scales of `b` broadcast as they are.
    let sa = product_scale(b, cx.input(1)?)?;
    let sa = if b.rank(sa) == 1 {
        let s = b.i64s(&[-1, 1]);
        b.op(Op::Reshape, &[sa, s])?
    } else {
        sa
    };
    let sb = product_scale(b, cx.input(4)?)?;
    let sy = cx.input(6)?;
    one(requantize_product(b, acc, [sa, sb, sy], cx.opt(7), out)?)
}

fn import_qlinear_conv(b: &mut Builder, cx: &NodeCx) -> Out {
    let out = qlinear_out(b, cx, 7)?;
    let (mut acc, one_d) = int_conv(b, cx, [0, 3, 2, 5])?;
    // Per-channel values (bias, filter scales) broadcast as `[M, 1, 1]` against NCHW.
    let per_channel = |b: &mut Builder, v: ValueId| -> Result<ValueId, String> {
        if b.rank(v) == 0 {
            return Ok(v);
        }
        let s = b.i64s(&[-1, 1, 1]);
        b.op(Op::Reshape, &[v, s])
    };
    if let Some(bias) = cx.opt(8) {
        if b.dtype(bias) != DType::I32 {
            return Err(format!("the bias must be i32, got {}", b.dtype(bias)));
        }
        let bias = per_channel(b, bias)?;
        acc = b.op(Op::Binary(B::Add), &[acc, bias])?;
    }
    let sw = product_scale(b, cx.input(4)?)?;
    let sw = per_channel(b, sw)?;
    let (sx, sy) = (cx.input(1)?, cx.input(6)?);
    let y = requantize_product(b, acc, [sx, sw, sy], cx.opt(7), out)?;
    one(from_2d(b, y, one_d)?)
}

#[cfg(test)]
mod tests;
