//! ONNX `Resize` (opsets 10, 11, 13, 18, 19) and `Upsample` (7, 9), lowered one axis at a
//! time to gathers with constant indices and sums weighted by constant weights.
//!
//! Resizing is separable, so each resized axis is a 1-D resampling: output position `y`
//! reads `n` taps of the input axis (`n` = 1 for nearest, 2 for linear, 4 for cubic, more
//! for an antialiasing filter when downsampling) with fixed weights. Where each output
//! position's taps and weights lie depends only on the sizes, the scales, the coordinate
//! transformation and the kernel, so they are computed here, in f64, with the arithmetic of
//! the `onnx` reference (`onnx/reference/ops/op_resize.py`, which resizes axis by axis in
//! the same order), and the axis becomes `gather` with `[out]` indices (nearest, or any
//! axis whose weights pick one tap) or `gather` with `[out, n]` indices, a `mul` by the
//! `[out, n]` weights and a `reduce_sum` over the taps. The input's shape along the
//! resized axes, and the scales or sizes, must be known while importing.
//!
//! Interpolating integers or 16-bit floats runs in f32 (f64 for 32- and 64-bit integers) and
//! rounds back at the end, as the reference computes in f64 and saturates. `Upsample` and
//! `Resize`-10 name no coordinate transformation: they take `asymmetric`, with nearest
//! rounding down when upsampling and up when downsampling, as onnxruntime does.

use super::elementwise::cast;
use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, ReduceKind, UnaryOp as U};
use lathe_ir::{DType, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

const IR_OPS: &[&str] = &[
    "gather",
    "mul",
    "reduce_sum",
    "select",
    "cast",
    "round",
    "maximum",
    "minimum",
    "identity",
];

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("Resize", IR_OPS, import_resize),
        row("Upsample", IR_OPS, import_upsample),
    ]
}

/// How an output coordinate maps to an input coordinate
/// (`coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    /// Opset 11 only: `(y + 0.5) / scale`.
    TfHalfPixelForNn,
    TfCropAndResize,
}

/// Which of the two nearest input positions `nearest` mode picks (`nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// `Upsample` and `Resize`-10: floor when upsampling the axis, ceil when downsampling.
    Legacy,
}

/// The interpolation kernel (`mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    Nearest(Nearest),
    Linear,
    /// Cubic with `cubic_coeff_a`.
    Cubic(f64),
}

/// Everything that decides the taps of an axis besides its sizes.
#[derive(Clone, Copy, Debug)]
struct Method {
    kernel: Kernel,
    coord: Coord,
    antialias: bool,
    exclude_outside: bool,
}

/// The region of interest of one axis (`tf_crop_and_resize`): start and end as fractions of
/// the input, and whether they are f32 (the reference then does some arithmetic in f32).
#[derive(Clone, Copy, Debug)]
struct Roi {
    start: f64,
    end: f64,
    f32: bool,
}

impl Roi {
    /// `x` rounded as the roi's element type would hold it.
    fn round(&self, x: f64) -> f64 {
        if self.f32 {
            x as f32 as f64
        } else {
            x
        }
    }
}

/// How one output axis samples its input axis: `n` taps per output position.
#[derive(Clone, Debug, PartialEq)]
struct Taps {
    n: usize,
    /// `[out, n]`, row-major: the input index of each tap (clamped into the input).
    index: Vec<i64>,
    /// `[out, n]`: the weight of each tap.
    weight: Vec<f64>,
    /// Per output position: its source lies outside the input, so it takes the
    /// extrapolation value (`tf_crop_and_resize` only).
    outside: Vec<bool>,
}

impl Taps {
    fn out(&self) -> usize {
        self.outside.len()
    }

    /// The one index each output position reads, when every row of weights picks one tap
    /// (weight exactly 1, the rest 0).
    fn single(&self) -> Option<Vec<i64>> {
        (0..self.out())
            .map(|i| {
                let w = &self.weight[i * self.n..(i + 1) * self.n];
                let picked = w.iter().position(|&x| x == 1.0)?;
                let rest_zero = w.iter().enumerate().all(|(k, &x)| k == picked || x == 0.0);
                rest_zero.then_some(self.index[i * self.n + picked])
            })
            .collect()
    }

    /// True when the axis comes out as it went in.
    fn is_identity(&self, in_w: usize) -> bool {
        self.out() == in_w
            && !self.outside.iter().any(|&o| o)
            && self
                .single()
                .is_some_and(|s| s.iter().enumerate().all(|(i, &j)| j == i as i64))
    }
}

/// Python's `math.isclose` with its default tolerance.
fn is_close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The input coordinate of output position `y` (`_compute_x_ori`).
fn source_coord(
    coord: Coord,
    y: f64,
    scale: f64,
    in_w: usize,
    out_w: usize,
    roi: Option<Roi>,
) -> Result<f64, String> {
    let input_width = in_w as f64;
    let output_width = scale * input_width;
    Ok(match coord {
        Coord::AlignCorners => {
            if output_width == 1.0 {
                0.0
            } else {
                y * (input_width - 1.0) / (output_width - 1.0)
            }
        }
        Coord::Asymmetric => y / scale,
        Coord::TfHalfPixelForNn => (y + 0.5) / scale,
        Coord::TfCropAndResize => {
            let roi = roi.ok_or("`tf_crop_and_resize` needs the `roi` input")?;
            let span = roi.round(roi.end - roi.start);
            let x = if output_width == 1.0 {
                roi.round(roi.round(span * (input_width - 1.0)) / 2.0)
            } else {
                y * span * (input_width - 1.0) / (output_width - 1.0)
            };
            x + roi.round(roi.start * (input_width - 1.0))
        }
        Coord::PytorchHalfPixel => {
            if output_width == 1.0 {
                -0.5
            } else {
                (y + 0.5) / scale - 0.5
            }
        }
        Coord::HalfPixel => (y + 0.5) / scale - 0.5,
        Coord::HalfPixelSymmetric => {
            let adjustment = out_w as f64 / output_width;
            let center = input_width / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (y + 0.5) / scale - 0.5
        }
    })
}

/// The tap weights for a source coordinate whose distance past its left neighbour is
/// `ratio` (in `(0, 1]`), for an axis scaled by `scale`.
fn coefficients(m: &Method, ratio: f64, scale: f64) -> Vec<f64> {
    match m.kernel {
        Kernel::Nearest(mode) => {
            if ratio == ratio.trunc() {
                return vec![0.0, 1.0];
            }
            let (left, right) = match mode {
                Nearest::RoundPreferFloor => (ratio <= 0.5, ratio > 0.5),
                Nearest::RoundPreferCeil => (ratio < 0.5, ratio >= 0.5),
                Nearest::Floor => (true, false),
                Nearest::Ceil => (false, true),
                Nearest::Legacy if scale < 1.0 => (false, true),
                Nearest::Legacy => (true, false),
            };
            vec![f64::from(u8::from(left)), f64::from(u8::from(right))]
        }
        Kernel::Linear if m.antialias => {
            let scale = scale.min(1.0);
            let start = ((-1.0 / scale).floor() + 1.0) as i64;
            let footprint = 2 - 2 * start;
            let c: Vec<f64> = (start..start + footprint)
                .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                .collect();
            normalized(c)
        }
        Kernel::Linear => vec![1.0 - ratio, ratio],
        Kernel::Cubic(a) if m.antialias => {
            let scale = scale.min(1.0);
            let i_start = ((-2.0 / scale).floor() + 1.0) as i64;
            let i_end = 2 - i_start;
            let c: Vec<f64> = (i_start..i_end)
                .map(|i| cubic_weight(a, scale * (i as f64 - ratio)))
                .collect();
            normalized(c)
        }
        Kernel::Cubic(a) => {
            let r = ratio;
            let s = 1.0 - r;
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
            ]
        }
    }
}

/// Keys' cubic convolution kernel at distance `x`.
fn cubic_weight(a: f64, x: f64) -> f64 {
    let x = x.abs();
    let x2 = x * x;
    let x3 = x * x2;
    if x <= 1.0 {
        (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
    } else if x < 2.0 {
        a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
    } else {
        0.0
    }
}

fn normalized(c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    c.into_iter().map(|x| x / sum).collect()
}

/// The taps of an axis of `in_w` entries resized to `out_w` by `scale`
/// (`_interpolate_1d_along_axis`).
fn taps(
    m: &Method,
    in_w: usize,
    out_w: usize,
    scale: f64,
    roi: Option<Roi>,
) -> Result<Taps, String> {
    if in_w == 0 {
        return Err("resizing an empty axis is not supported".into());
    }
    let mut coords = Vec::with_capacity(out_w);
    let mut rows = Vec::with_capacity(out_w);
    for y in 0..out_w {
        let x = source_coord(m.coord, y as f64, scale, in_w, out_w, roi)?;
        if !x.is_finite() {
            return Err(format!("output position {y} maps to input coordinate {x}"));
        }
        let x_int = x.floor();
        let ratio = if x == x_int { 1.0 } else { x - x_int };
        coords.push(x);
        rows.push(coefficients(m, ratio, scale));
    }
    let n = rows.first().map_or(1, Vec::len);
    let pad = n.div_ceil(2) as i64;
    let mut index = Vec::with_capacity(out_w * n);
    let mut weight = Vec::with_capacity(out_w * n);
    let mut outside = Vec::with_capacity(out_w);
    for (&x, mut w) in coords.iter().zip(rows) {
        if w.len() != n {
            return Err("internal error: taps of different counts on one axis".into());
        }
        // The n input positions nearest x, ties to the smaller, found in the input padded
        // by `pad` on each side as the reference does.
        let x_padded = x + pad as f64;
        let p = x_padded.floor();
        let frac = x_padded - p;
        let half = (n / 2) as i64;
        let offset = if n % 2 == 0 {
            if frac == 0.0 {
                -half
            } else {
                -half + 1
            }
        } else {
            let base = -(((n - 1) / 2) as i64);
            if frac <= 0.5 {
                base
            } else {
                base + 1
            }
        };
        let start = p as i64 + offset - pad;
        let idx: Vec<i64> = (0..n as i64).map(|k| start + k).collect();
        if m.exclude_outside {
            for (wk, &i) in w.iter_mut().zip(&idx) {
                if i < 0 || i >= in_w as i64 {
                    *wk = 0.0;
                }
            }
            let sum: f64 = w.iter().sum();
            let sum = if sum == 0.0 { 1.0 } else { sum };
            for wk in &mut w {
                *wk /= sum;
            }
        }
        index.extend(idx.iter().map(|&i| i.clamp(0, in_w as i64 - 1)));
        weight.extend(w);
        outside.push(m.coord == Coord::TfCropAndResize && (x < 0.0 || x > in_w as f64 - 1.0));
    }
    Ok(Taps {
        n,
        index,
        weight,
        outside,
    })
}

/// One axis to resize: its input and output sizes and scale.
#[derive(Clone, Debug, PartialEq)]
struct AxisPlan {
    axis: usize,
    in_w: usize,
    out_w: usize,
    scale: f64,
}

/// What the node asks for: scales, or sizes with an aspect-ratio policy, for `axes`.
enum Target {
    Scales(Vec<f64>),
    Sizes(Vec<i64>, Policy),
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// The axes to resize, in the order the reference resizes them, with their output sizes and
/// scales (`_interpolate_nd`). `dims` are the input's dims (`None` where unknown); `axes`
/// are the axes `target` lists, non-negative. An axis scaled by exactly 1 keeps its size,
/// so it needs no known dim.
fn plan_axes(
    dims: &[Option<usize>],
    axes: &[usize],
    target: &Target,
) -> Result<Vec<AxisPlan>, String> {
    let count = match target {
        Target::Scales(s) => s.len(),
        Target::Sizes(s, _) => s.len(),
    };
    if count != axes.len() {
        let what = match target {
            Target::Scales(_) => "scales",
            Target::Sizes(..) => "sizes",
        };
        return Err(format!("{count} {what} for {} axes", axes.len()));
    }
    let known = |a: usize| {
        dims[a].ok_or_else(|| {
            format!("resizing axis {a}, whose size is not known while importing, is not supported")
        })
    };
    let mut plans = Vec::with_capacity(axes.len());
    match target {
        Target::Scales(scales) => {
            for (&a, &s) in axes.iter().zip(scales) {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(format!("scale {s} for axis {a} is not positive"));
                }
                if s == 1.0 && dims[a].is_none() {
                    continue;
                }
                let in_w = known(a)?;
                let out_w = (s * in_w as f64) as usize;
                plans.push(AxisPlan {
                    axis: a,
                    in_w,
                    out_w,
                    scale: s,
                });
            }
        }
        Target::Sizes(sizes, policy) => {
            let mut scales = Vec::with_capacity(axes.len());
            for (&a, &n) in axes.iter().zip(sizes) {
                if n < 0 {
                    return Err(format!("size {n} for axis {a} is negative"));
                }
                let in_w = known(a)?;
                scales.push(n as f64 / in_w as f64);
            }
            let common = match policy {
                Policy::Stretch => None,
                Policy::NotLarger => scales.iter().copied().reduce(f64::min),
                Policy::NotSmaller => scales.iter().copied().reduce(f64::max),
            };
            for (i, (&a, &n)) in axes.iter().zip(sizes).enumerate() {
                let in_w = known(a)?;
                let (out_w, scale) = match common {
                    None => (n as usize, scales[i]),
                    Some(s) => ((s * in_w as f64 + 0.5) as usize, s),
                };
                plans.push(AxisPlan {
                    axis: a,
                    in_w,
                    out_w,
                    scale,
                });
            }
        }
    }
    Ok(plans)
}

/// The dtype interpolation runs in for input dtype `dt`.
fn compute_dtype(dt: DType) -> Result<DType, String> {
    Ok(match dt {
        DType::F32 | DType::F64 => dt,
        DType::F16 | DType::BF16 | DType::I8 | DType::U8 | DType::I16 | DType::U16 => DType::F32,
        DType::I32 | DType::U32 | DType::I64 | DType::U64 => DType::F64,
        DType::Bool => {
            return Err("linear and cubic resizing of bool tensors is not supported".into())
        }
        other => return Err(format!("resizing {other} tensors is not supported")),
    })
}

/// The finite range of dtype `dt` a result is clamped to before it is cast back (the
/// reference's saturating cast), when it has one narrower than the compute dtype's.
fn saturation(dt: DType) -> Option<(f64, f64)> {
    Some(match dt {
        DType::F16 => (-65504.0, 65504.0),
        DType::BF16 => (-3.389_531_389_251_535e38, 3.389_531_389_251_535e38),
        DType::I8 => (i8::MIN as f64, i8::MAX as f64),
        DType::U8 => (0.0, u8::MAX as f64),
        DType::I16 => (i16::MIN as f64, i16::MAX as f64),
        DType::U16 => (0.0, u16::MAX as f64),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::U32 => (0.0, u32::MAX as f64),
        DType::I64 => (i64::MIN as f64, i64::MAX as f64),
        DType::U64 => (0.0, u64::MAX as f64),
        _ => return None,
    })
}

/// `x` resized along each planned axis in turn.
fn lower(
    b: &mut Builder,
    x: ValueId,
    m: &Method,
    plans: &[AxisPlan],
    rois: &[Option<Roi>],
    extrapolation: f64,
) -> Result<ValueId, String> {
    let dt = b.dtype(x);
    let rank = b.rank(x);
    let mut axes = Vec::new();
    for (p, roi) in plans.iter().zip(rois) {
        // The reference leaves an axis alone when its scale is 1 and its roi the whole axis.
        let whole = roi.is_none_or(|r| is_close(r.start, 0.0) && is_close(r.end, 1.0));
        if is_close(p.scale, 1.0) && p.out_w == p.in_w && whole {
            continue;
        }
        let t = taps(m, p.in_w, p.out_w, p.scale, *roi)?;
        if t.is_identity(p.in_w) {
            continue;
        }
        axes.push((p.axis, t));
    }
    if axes.is_empty() {
        return b.op(Op::Identity, &[x]);
    }
    let weighted = axes.iter().any(|(_, t)| t.single().is_none());
    let cdt = if weighted { compute_dtype(dt)? } else { dt };
    let mut y = cast(b, x, cdt)?;
    for (axis, t) in &axes {
        let trailing = rank - axis - 1;
        let axis_v = b.i64_scalar(*axis as i64);
        let gather = Op::Gather { batch_dims: 0 };
        y = match t.single() {
            Some(idx) => {
                let idx = b.konst(Tensor::from_vec(&[t.out()], idx));
                b.op(gather, &[y, idx, axis_v])?
            }
            None => {
                let idx = b.konst(Tensor::from_vec(&[t.out(), t.n], t.index.clone()));
                let g = b.op(gather, &[y, idx, axis_v])?;
                let mut shape = vec![t.out(), t.n];
                shape.extend(std::iter::repeat_n(1, trailing));
                let w = b.konst(Tensor::from_f64(cdt, &shape, &t.weight));
                let g = b.op(Op::Binary(B::Mul), &[g, w])?;
                let taps_axis = b.i64s(&[*axis as i64 + 1]);
                let sum = Op::Reduce {
                    kind: ReduceKind::Sum,
                    keep_dims: false,
                };
                b.op(sum, &[g, taps_axis])?
            }
        };
        if t.outside.iter().any(|&o| o) {
            let mut shape = vec![t.out()];
            shape.extend(std::iter::repeat_n(1, trailing));
            let mask = b.konst(Tensor::from_vec(&shape, t.outside.clone()));
            let value = if cdt.is_float() {
                extrapolation
            } else {
                saturate(extrapolation.round_ties_even(), cdt)
            };
            let value = b.scalar(cdt, value);
            y = b.op(Op::Select, &[mask, value, y])?;
        }
    }
    if cdt == dt {
        return Ok(y);
    }
    if !dt.is_float() {
        y = b.op(Op::Unary(U::Round), &[y])?;
    }
    if let Some((lo, hi)) = saturation(dt) {
        let lo = b.scalar(cdt, lo);
        let hi = b.scalar(cdt, hi);
        y = b.op(Op::Binary(B::Maximum), &[y, lo])?;
        y = b.op(Op::Binary(B::Minimum), &[y, hi])?;
    }
    cast(b, y, dt)
}

/// `v` clamped into the range of `dt`.
fn saturate(v: f64, dt: DType) -> f64 {
    match saturation(dt) {
        Some((lo, hi)) => v.clamp(lo, hi),
        None => v,
    }
}

/// The value of constant `v`, `None` when it holds nothing (an empty placeholder for an
/// input left out).
fn constant<'a>(b: &'a Builder, v: ValueId, what: &str) -> Result<Option<&'a Tensor>, String> {
    if b.ty(v).shape.num_elements() == Some(0) {
        return Ok(None);
    }
    let t = b.const_of(v).ok_or_else(|| {
        b.not_constant(
            v,
            what,
            " (the gather indices and weights are computed while importing)",
        )
    })?;
    Ok((!t.is_empty()).then_some(t))
}

/// The float values of constant `v` (see [`constant`]).
fn floats_of(b: &Builder, v: ValueId, what: &str) -> Result<Option<Vec<f64>>, String> {
    Ok(constant(b, v, what)?.map(Tensor::to_f64_vec))
}

/// The integer values of constant `v` (see [`constant`]).
fn ints_of(b: &Builder, v: ValueId, what: &str) -> Result<Option<Vec<i64>>, String> {
    constant(b, v, what)?.map(Tensor::to_i64_vec).transpose()
}

fn dims_of(b: &Builder, x: ValueId) -> Vec<Option<usize>> {
    b.ty(x).shape.0.iter().map(|d| d.known()).collect()
}

/// `mode`: `nearest`, `linear` or (from opset 11) `cubic`.
fn kernel(cx: &NodeCx, nearest: Nearest, cubic: bool) -> Result<Kernel, String> {
    Ok(match cx.attrs.str_or("mode", "nearest")?.as_str() {
        "nearest" => Kernel::Nearest(nearest),
        "linear" | "bilinear" => Kernel::Linear,
        "cubic" if cubic => Kernel::Cubic(cx.attrs.float_or("cubic_coeff_a", -0.75)? as f64),
        m => return Err(format!("resize mode `{m}` is not supported")),
    })
}

/// `Upsample` (7: `scales` attribute; 9: `scales` input) and `Resize`-10: asymmetric
/// coordinates, every axis scaled, `output = floor(input * scale)`.
fn legacy(b: &mut Builder, cx: &NodeCx, scales: Vec<f64>) -> Out {
    let x = cx.input(0)?;
    let m = Method {
        kernel: kernel(cx, Nearest::Legacy, false)?,
        coord: Coord::Asymmetric,
        antialias: false,
        exclude_outside: false,
    };
    let rank = b.rank(x);
    let axes: Vec<usize> = (0..rank).collect();
    let plans = plan_axes(&dims_of(b, x), &axes, &Target::Scales(scales))?;
    let rois = vec![None; plans.len()];
    one(lower(b, x, &m, &plans, &rois, 0.0)?)
}

fn import_upsample(b: &mut Builder, cx: &NodeCx) -> Out {
    let scales = if cx.opset < 7 {
        return Err(
            "Upsample before opset 7 (`height_scale`/`width_scale`) is not supported".into(),
        );
    } else if cx.opset < 9 {
        let s = cx
            .attrs
            .floats("scales")
            .ok_or("missing attribute `scales`")?;
        s.iter().map(|&v| v as f64).collect()
    } else {
        floats_of(b, cx.input(1)?, "`scales`")?.ok_or("`scales` is empty")?
    };
    legacy(b, cx, scales)
}

fn import_resize(b: &mut Builder, cx: &NodeCx) -> Out {
    if cx.opset < 11 {
        let scales = floats_of(b, cx.input(1)?, "`scales`")?.ok_or("`scales` is empty")?;
        return legacy(b, cx, scales);
    }
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let nearest = match cx
        .attrs
        .str_or("nearest_mode", "round_prefer_floor")?
        .as_str()
    {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => return Err(format!("unknown `nearest_mode` `{other}`")),
    };
    let coord = match cx
        .attrs
        .str_or("coordinate_transformation_mode", "half_pixel")?
        .as_str()
    {
        "half_pixel" => Coord::HalfPixel,
        "half_pixel_symmetric" if cx.opset >= 19 => Coord::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coord::PytorchHalfPixel,
        "align_corners" => Coord::AlignCorners,
        "asymmetric" => Coord::Asymmetric,
        "tf_half_pixel_for_nn" if cx.opset < 13 => Coord::TfHalfPixelForNn,
        "tf_crop_and_resize" => Coord::TfCropAndResize,
        other => {
            return Err(format!(
                "coordinate transformation mode `{other}` is not part of Resize-{}",
                cx.opset
            ))
        }
    };
    let new = cx.opset >= 18;
    let m = Method {
        kernel: kernel(cx, nearest, true)?,
        coord,
        antialias: new && cx.attrs.int_or("antialias", 0)? != 0,
        exclude_outside: cx.attrs.int_or("exclude_outside", 0)? != 0,
    };
    let policy = match new {
        false => Policy::Stretch,
        true => match cx
            .attrs
            .str_or("keep_aspect_ratio_policy", "stretch")?
            .as_str()
        {
            "stretch" => Policy::Stretch,
            "not_larger" => Policy::NotLarger,
            "not_smaller" => Policy::NotSmaller,
            other => return Err(format!("unknown `keep_aspect_ratio_policy` `{other}`")),
        },
    };
    let axes: Vec<usize> = match cx.attrs.ints("axes").filter(|_| new) {
        Some(a) => {
            let a = a
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            let mut seen = a.clone();
            seen.sort_unstable();
            if seen.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("`axes` {a:?} repeats an axis"));
            }
            a
        }
        None => (0..rank).collect(),
    };
    let scales = match cx.opt(2) {
        Some(v) => floats_of(b, v, "`scales`")?,
        None => None,
    };
    let sizes = match cx.opt(3) {
        Some(v) => ints_of(b, v, "`sizes`")?,
        None => None,
    };
    let target = match (scales, sizes) {
        (Some(_), Some(_)) => return Err("only one of `scales` and `sizes` may be given".into()),
        (Some(s), None) => Target::Scales(s),
        (None, Some(s)) => Target::Sizes(s, policy),
        (None, None) => return Err("one of `scales` and `sizes` is required".into()),
    };
    let plans = plan_axes(&dims_of(b, x), &axes, &target)?;
    // The region of interest: `[starts..., ends...]` over `axes`.
    let roi = match cx.opt(1) {
        Some(v) if coord == Coord::TfCropAndResize => {
            let f32 = b.dtype(v) != DType::F64;
            floats_of(b, v, "`roi`")?.map(|r| (r, f32))
        }
        Some(v) => match b.const_of(v) {
            Some(t) if !t.is_empty() => Some((t.to_f64_vec(), b.dtype(v) != DType::F64)),
            _ => None,
        },
        None => None,
    };
    let rois = match &roi {
        None => vec![None; plans.len()],
        Some((r, f32)) => {
            if r.len() != 2 * axes.len() {
                return Err(format!(
                    "`roi` has {} values for {} axes",
                    r.len(),
                    axes.len()
                ));
            }
            plans
                .iter()
                .map(|p| {
                    let i = axes
                        .iter()
                        .position(|&a| a == p.axis)
                        .expect("planned axis");
                    Some(Roi {
                        start: r[i],
                        end: r[axes.len() + i],
                        f32: *f32,
                    })
                })
                .collect()
        }
    };
    let extrapolation = cx.attrs.float_or("extrapolation_value", 0.0)? as f64;
    one(lower(b, x, &m, &plans, &rois, extrapolation)?)
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, one_node_bound, run, A};
    use super::*;

    fn method(kernel: Kernel, coord: Coord) -> Method {
        Method {
            kernel,
            coord,
            antialias: false,
            exclude_outside: false,
        }
    }

    /// `[1, 2]` upsampled by 2 with half-pixel linear interpolation is `[1, 1.25, 1.75, 2]`
    /// (the edges clamp).
    #[test]
    fn linear_half_pixel_upsample_by_hand() {
        let m = method(Kernel::Linear, Coord::HalfPixel);
        let t = taps(&m, 2, 4, 2.0, None).unwrap();
        assert_eq!(t.n, 2);
        assert_eq!(t.index, vec![0, 0, 0, 1, 0, 1, 1, 1]);
        assert_eq!(
            t.weight,
            vec![0.25, 0.75, 0.75, 0.25, 0.25, 0.75, 0.75, 0.25]
        );
        let data = [1.0, 2.0];
        let y: Vec<f64> = (0..4)
            .map(|i| {
                (0..2)
                    .map(|k| t.weight[2 * i + k] * data[t.index[2 * i + k] as usize])
                    .sum()
            })
            .collect();
        assert_eq!(y, vec![1.0, 1.25, 1.75, 2.0]);
        assert_eq!(t.single(), None);
    }

    /// Align-corners linear downsampling of 4 to 3 samples 0, 1.5 and 3.
    #[test]
    fn linear_align_corners_downsample() {
        let m = method(Kernel::Linear, Coord::AlignCorners);
        let t = taps(&m, 4, 3, 0.75, None).unwrap();
        // x = y * 3 / (3 - 1): 0 (exactly on 0: ratio 1, taps -1 and 0), 1.5, 3.
        assert_eq!(t.index, vec![0, 0, 1, 2, 2, 3]);
        assert_eq!(t.weight, vec![0.0, 1.0, 0.5, 0.5, 0.0, 1.0]);
    }

    /// Nearest modes at a tie: x = 0.5 between inputs 0 and 1.
    #[test]
    fn nearest_ties() {
        // Asymmetric, scale 2: y = 1 maps to x = 0.5.
        let pick = |mode| {
            let m = method(Kernel::Nearest(mode), Coord::Asymmetric);
            taps(&m, 2, 4, 2.0, None).unwrap().single().unwrap()
        };
        assert_eq!(pick(Nearest::RoundPreferFloor), vec![0, 0, 1, 1]);
        assert_eq!(pick(Nearest::RoundPreferCeil), vec![0, 1, 1, 1]);
        assert_eq!(pick(Nearest::Floor), vec![0, 0, 1, 1]);
        // Ceil: 1.5 -> 2, clamped to the last input.
        assert_eq!(pick(Nearest::Ceil), vec![0, 1, 1, 1]);
        // Legacy upsampling floors, downsampling (4 -> 2 by 0.5: x = 0, 2) ceils.
        assert_eq!(pick(Nearest::Legacy), vec![0, 0, 1, 1]);
        let m = method(Kernel::Nearest(Nearest::Legacy), Coord::Asymmetric);
        assert_eq!(
            taps(&m, 4, 2, 0.5, None).unwrap().single().unwrap(),
            vec![0, 2]
        );
    }

    /// Keys' cubic weights at ratio 0.5 with a = -0.75 (sum 1), and the four taps around
    /// x = 1.5.
    #[test]
    fn cubic_weights() {
        let m = method(Kernel::Cubic(-0.75), Coord::Asymmetric);
        assert_eq!(
            coefficients(&m, 0.5, 1.0),
            vec![-0.09375, 0.59375, 0.59375, -0.09375]
        );
        // 4 -> 8 by 2: y = 3 maps to x = 1.5, taps 0..=3.
        let t = taps(&m, 4, 8, 2.0, None).unwrap();
        assert_eq!(&t.index[12..16], &[0, 1, 2, 3]);
        assert_eq!(&t.weight[12..16], &[-0.09375, 0.59375, 0.59375, -0.09375]);
        // y = 0 maps to x = 0 (ratio 1): taps -2..=1 clamped, weight on input 0.
        assert_eq!(&t.index[0..4], &[0, 0, 0, 1]);
        assert_eq!(&t.weight[0..4], &[0.0, 0.0, 1.0, 0.0]);
    }

    /// `exclude_outside` drops taps past the edge and renormalizes the rest.
    #[test]
    fn cubic_exclude_outside() {
        let mut m = method(Kernel::Cubic(-0.5), Coord::HalfPixel);
        m.exclude_outside = true;
        let t = taps(&m, 4, 8, 2.0, None).unwrap();
        // y = 0: x = -0.25, taps -2..=1: only 0 and 1 are inside.
        let w = &t.weight[0..4];
        assert_eq!(&w[0..2], &[0.0, 0.0]);
        assert!((w[2] + w[3] - 1.0).abs() < 1e-15);
    }

    /// Antialiased linear downsampling by 2 has a 4-tap footprint.
    #[test]
    fn linear_antialias_footprint() {
        let mut m = method(Kernel::Linear, Coord::HalfPixel);
        m.antialias = true;
        let t = taps(&m, 4, 2, 0.5, None).unwrap();
        assert_eq!(t.n, 4);
        // y = 0: x = 0.5, ratio 0.5; args (i - 0.5) / 2 for i in -1..3: weights
        // 0.25, 0.75, 0.75, 0.25, normalized by 2.
        assert_eq!(&t.weight[0..4], &[0.125, 0.375, 0.375, 0.125]);
        assert_eq!(&t.index[0..4], &[0, 0, 1, 2]);
    }

    /// tf_crop_and_resize samples the roi's span and flags positions outside the input.
    #[test]
    fn crop_and_resize_extrapolates() {
        let m = method(Kernel::Linear, Coord::TfCropAndResize);
        let roi = Some(Roi {
            start: 0.5,
            end: 1.5,
            f32: false,
        });
        // 5 inputs, 3 outputs over [2, 6]: x = 2, 4, 6.
        let t = taps(&m, 5, 3, 0.6, roi).unwrap();
        assert_eq!(t.outside, vec![false, false, true]);
        assert_eq!(&t.weight[0..2], &[0.0, 1.0]);
        assert_eq!(&t.index[0..2], &[1, 2]);
    }

    /// Sizes with a kept aspect ratio: 2x4 to at most 7x8 scales both by 2.
    #[test]
    fn keep_aspect_ratio() {
        let dims = [Some(1), Some(1), Some(2), Some(4)];
        let plan = |p| plan_axes(&dims, &[2, 3], &Target::Sizes(vec![7, 8], p)).unwrap();
        let sizes = |ps: Vec<AxisPlan>| ps.iter().map(|p| p.out_w).collect::<Vec<_>>();
        assert_eq!(sizes(plan(Policy::NotLarger)), vec![4, 8]);
        assert_eq!(sizes(plan(Policy::NotSmaller)), vec![7, 14]);
        assert_eq!(sizes(plan(Policy::Stretch)), vec![7, 8]);
        // Scales floor the output size; a unit scale on an unknown dim is left alone.
        let dims = [None, Some(3)];
        let p = plan_axes(&dims, &[0, 1], &Target::Scales(vec![1.0, 1.5])).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].axis, p[0].out_w), (1, 4));
        assert!(plan_axes(&dims, &[0, 1], &Target::Scales(vec![2.0, 1.0])).is_err());
    }

    /// The ONNX documentation's bilinear example through the importer: `[[1, 2], [3, 4]]`
    /// scaled by 2 (constant scales, half-pixel).
    #[test]
    fn bilinear_upsample_end_to_end() {
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1f32, 2.0, 3.0, 4.0]);
        let scales = Tensor::from_vec(&[4], vec![1f32, 1.0, 2.0, 2.0]);
        let g = one_node(
            19,
            "Resize",
            &[("x", &x)],
            &[("s", &scales)],
            &[("mode", A::S("linear"))],
            &["x", "", "s"],
            &["y"],
        )
        .unwrap();
        let y = run(&g, &[&x]);
        assert_eq!(y[0].shape(), &[1, 1, 4, 4]);
        #[rustfmt::skip]
        let want = [
            1.0, 1.25, 1.75, 2.0,
            1.5, 1.75, 2.25, 2.5,
            2.5, 2.75, 3.25, 3.5,
            3.0, 3.25, 3.75, 4.0,
        ];
        assert_eq!(y[0].to_f64_vec(), want);
    }

    /// Integers interpolate in floats and round half to even back; nearest `Upsample` (7)
    /// repeats.
    #[test]
    fn integer_rounding_and_upsample() {
        let x = Tensor::from_vec(&[1, 2], vec![0u8, 3]);
        let sizes = Tensor::from_vec(&[1], vec![4i64]);
        let g = one_node(
            18,
            "Resize",
            &[("x", &x)],
            &[("n", &sizes)],
            &[("mode", A::S("linear")), ("axes", A::Is(&[1]))],
            &["x", "", "", "n"],
            &["y"],
        )
        .unwrap();
        // Half-pixel 2 -> 4: 0, 0.75, 2.25, 3 round to 0, 1, 2, 3.
        assert_eq!(run(&g, &[&x])[0].to_f64_vec(), [0.0, 1.0, 2.0, 3.0]);
        let x = Tensor::from_vec(&[2, 2], vec![1i32, 2, 3, 4]);
        let up = one_node(
            8,
            "Upsample",
            &[("x", &x)],
            &[],
            &[("scales", A::Fs(&[1.0, 2.0]))],
            &["x"],
            &["y"],
        )
        .unwrap();
        let y = run(&up, &[&x]);
        assert_eq!(y[0].dtype(), DType::I32);
        assert_eq!(y[0].to_f64_vec(), [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
    }

    /// Scales fed as a graph input cannot be lowered while importing: the error names the
    /// input whose value is needed, and importing with it bound works.
    #[test]
    fn scales_from_an_input_need_its_value() {
        let x = Tensor::from_vec(&[1, 2], vec![1f32, 2.0]);
        let scales = Tensor::from_vec(&[2], vec![1f32, 2.0]);
        let node = (13, "Resize", &[][..], &["x", "", "s"][..], &["y"][..]);
        let inputs = [("x", &x), ("s", &scales)];
        let err = one_node_bound(node, &inputs, &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.onnx: node `n` (op Resize): `scales` must be known while importing (the \
             gather indices and weights are computed while importing), and it comes from the \
             value of graph input `s`: such a model is imported once per value of it, given \
             when it runs"
        );
        let needs = err.needs_values.expect("needs values");
        assert_eq!(needs.inputs, ["s"]);
        let declared: Vec<String> = needs
            .declared
            .iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect();
        assert_eq!(declared, ["x: f32[1,2]", "s: f32[2]"]);
        assert_eq!(needs.outputs, ["y"]);

        let bound = [("s".to_string(), scales.clone())];
        let g = one_node_bound(node, &inputs, &[], &bound).unwrap();
        assert_eq!(g.inputs().len(), 2, "a bound input stays an input");
        assert_eq!(g.value_type(g.outputs()[0].value).to_string(), "f32[1,4]");
        // Nearest (the default mode), half-pixel: each value twice.
        let y = run(&g, &[&x, &scales]);
        assert_eq!(y[0].to_f64_vec(), [1.0, 1.0, 2.0, 2.0]);

        // A value must fit the input's declared type, and name an input.
        let bad = [(
            "s".to_string(),
            Tensor::from_vec(&[3], vec![1f32, 2.0, 2.0]),
        )];
        let err = one_node_bound(node, &inputs, &[], &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.onnx: input `s` is bound to a value of type f32[3], which does not fit its \
             declared type f32[2]"
        );
        let bad = [("t".to_string(), scales.clone())];
        let err = one_node_bound(node, &inputs, &[], &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.onnx: cannot bind `t`: the graph has no input of that name"
        );
    }

    #[test]
    fn identity_axis() {
        let m = method(Kernel::Linear, Coord::HalfPixel);
        assert!(taps(&m, 3, 3, 1.0, None).unwrap().is_identity(3));
        assert!(!taps(&m, 3, 6, 2.0, None).unwrap().is_identity(3));
    }
}
