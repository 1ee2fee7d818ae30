//! Conv family: `conv2d`, `depthwise_conv2d`, `max_pool`, `avg_pool`, `fused_batch_norm` (and
//! `conv2d_integer`, whose meaning is in [`super::quantized`]).
//!
//! Window geometry follows TensorFlow: `Same` gives `ceil(in / stride)` outputs with the padding
//! split so the extra cell goes at the end, and pooling ignores padded cells (a `Same` average
//! divides by the in-bounds count). Kernels work on NHWC; NCHW operands are transposed in and
//! out. `conv2d` is im2col + GEMM (the shared batched GEMM of the linalg family).

use super::common::expect_arity;
use super::linalg::{
    channel_axis, common_dtype, dispatch, map_channels, unify, Accept, Kernel, Scalar,
};
use super::{quantized, ConvAttrs, DataFormat, Op, OpResult, Padding, PoolAttrs};
use crate::{DType, Dim, Shape, Tensor, TensorType};
use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, CowArray, IxDyn};
use std::ops::Range;

// ---- window geometry --------------------------------------------------------------------------

/// The TensorFlow spelling of a padding, for messages.
fn padding_name(p: &Padding) -> String {
    match p {
        Padding::Valid => "VALID padding".into(),
        Padding::Same => "SAME padding".into(),
        Padding::Explicit(p) => format!("explicit padding {p:?}"),
    }
}

/// Why a window does not fit: its span and the padded input size.
struct NoFit {
    span: usize,
    padded: usize,
}

/// Output size and leading pad of one spatial axis (`axis` 0 is height, 1 width). The window
/// has `k >= 1` taps `dilation` apart.
fn axis_geometry(
    input: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    padding: &Padding,
    axis: usize,
) -> Result<(usize, usize), NoFit> {
    let span = (k - 1) * dilation + 1;
    let fit = |before: usize, after: usize| {
        let padded = input + before + after;
        if padded < span {
            Err(NoFit { span, padded })
        } else {
            Ok(((padded - span) / stride + 1, before))
        }
    };
    match padding {
        Padding::Valid => fit(0, 0),
        Padding::Explicit(p) => fit(p[axis][0], p[axis][1]),
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = match out {
                0 => 0,
                _ => ((out - 1) * stride + span).saturating_sub(input),
            };
            Ok((out, total / 2))
        }
    }
}

/// Where a window op's configuration is described in messages.
struct Context<'a> {
    op: &'a str,
    /// The operands and padding, e.g. "input f32[1,4,4,3], filter f32[3,3,3,8], VALID padding".
    operands: String,
}

/// The output dim of one spatial axis. Unknown or symbolic sizes stay as they are where the
/// op preserves the size (stride 1 with `Same`, or a window its padding exactly cancels);
/// otherwise they become unknown.
fn spatial_dim(
    cx: &Context<'_>,
    input: &Dim,
    k: Option<usize>,
    stride: usize,
    dilation: usize,
    padding: &Padding,
    axis: usize,
) -> OpResult<Dim> {
    let axis_name = ["height", "width"][axis];
    match (input.known(), k) {
        (Some(i), Some(k)) => axis_geometry(i, k, stride, dilation, padding, axis)
            .map(|(out, _)| Dim::Known(out))
            .map_err(|NoFit { span, padded }| {
                let window = if dilation > 1 {
                    format!("{k} with dilation {dilation} spans {span}")
                } else {
                    format!("{k}")
                };
                format!(
                    "{}: the window ({window}) is larger than the padded input {axis_name} {padded} ({})",
                    cx.op, cx.operands
                )
            }),
        (Some(i), None) if *padding == Padding::Same => Ok(Dim::Known(i.div_ceil(stride))),
        _ => {
            let keeps_size = stride == 1
                && match padding {
                    Padding::Same => true,
                    Padding::Valid => k == Some(1),
                    Padding::Explicit(p) => {
                        k.is_some_and(|k| (k - 1) * dilation == p[axis][0] + p[axis][1])
                    }
                };
            Ok(if keeps_size {
                input.clone()
            } else {
                Dim::Unknown
            })
        }
    }
}

/// Errors unless every stride and dilation is positive.
fn check_positive(op: &str, what: &str, v: [usize; 2]) -> OpResult<()> {
    if v.contains(&0) {
        return Err(format!("{op}: {what} must be positive, got {v:?}"));
    }
    Ok(())
}

/// A 4-D shape in `format` from batch, spatial and channel dims.
fn image_shape(format: DataFormat, n: Dim, h: Dim, w: Dim, c: Dim) -> Shape {
    Shape(match format {
        DataFormat::Nhwc => vec![n, h, w, c],
        DataFormat::Nchw => vec![n, c, h, w],
    })
}

// ---- infer ------------------------------------------------------------------------------------

/// Output types of conv ops.
pub fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    let out = match op {
        Op::Conv2D(a) => infer_conv(op.mnemonic(), a, inputs, false)?,
        Op::DepthwiseConv2D(a) => infer_conv(op.mnemonic(), a, inputs, true)?,
        Op::MaxPool(p) => infer_pool(op.mnemonic(), p, inputs, Accept::Numeric)?,
        Op::AvgPool(p) => infer_pool(op.mnemonic(), p, inputs, Accept::Float)?,
        Op::FusedBatchNorm { format, .. } => infer_batch_norm(inputs, *format)?,
        Op::Conv2DInteger(a) => quantized::infer_conv2d_integer(a, inputs)?,
        _ => unreachable!("{op:?} is not a conv op"),
    };
    Ok(vec![out])
}

pub(super) fn infer_conv(
    op: &str,
    a: &ConvAttrs,
    inputs: &[TensorType],
    depthwise: bool,
) -> OpResult<TensorType> {
    expect_arity(op, inputs, 2)?;
    let dt = common_dtype(op, inputs, Accept::Numeric)?;
    let (x, f) = (&inputs[0], &inputs[1]);
    if x.rank() != 4 {
        return Err(format!(
            "{op} needs a 4-D input ({}), got {x}",
            a.format.name()
        ));
    }
    let layout = if depthwise {
        "[kh, kw, in, multiplier]"
    } else {
        "[kh, kw, in, out]"
    };
    if f.rank() != 4 {
        return Err(format!("{op} needs a 4-D filter {layout}, got {f}"));
    }
    check_positive(op, "strides", a.strides)?;
    check_positive(op, "dilations", a.dilations)?;
    let (ha, wa, ca) = a.format.hwc_axes();
    let (xd, fd) = (x.shape.dims(), f.shape.dims());
    if fd[..3].contains(&Dim::Known(0)) {
        return Err(format!(
            "{op}: filter {f} {layout} has an empty window or no input channels"
        ));
    }
    let (cin, fin, fout) = (&xd[ca], &fd[2], &fd[3]);
    let channel_error = |extra: &str| {
        format!(
            "{op}: input {x} has {cin} channels ({}) but filter {f} expects {fin}{extra}",
            a.format.name()
        )
    };
    let out_c = if depthwise {
        if !cin.compatible(fin) {
            return Err(channel_error(""));
        }
        match (unify(cin, fin), fout) {
            (Dim::Known(c), Dim::Known(m)) => Dim::Known(c * m),
            (c, Dim::Known(1)) => c,
            _ => Dim::Unknown,
        }
    } else {
        // TensorFlow runs a grouped convolution when the input has a multiple of the
        // filter's input channels: group g reads input channels [g*in, (g+1)*in).
        if let (Some(c), Some(i)) = (cin.known(), fin.known()) {
            if c < i || c % i != 0 {
                return Err(channel_error(
                    " (or a multiple of it, for a grouped convolution)",
                ));
            }
            let groups = c / i;
            if let Some(o) = fout.known().filter(|o| o % groups != 0) {
                return Err(format!(
                    "{op}: grouped convolution of input {x} with filter {f} has {groups} groups, \
                     but {o} output channels are not a multiple of {groups}"
                ));
            }
        }
        fout.clone()
    };
    let cx = Context {
        op,
        operands: format!("input {x}, filter {f}, {}", padding_name(&a.padding)),
    };
    let spatial = |axis: usize, xa: usize| {
        spatial_dim(
            &cx,
            &xd[xa],
            fd[axis].known(),
            a.strides[axis],
            a.dilations[axis],
            &a.padding,
            axis,
        )
    };
    let (h, w) = (spatial(0, ha)?, spatial(1, wa)?);
    Ok(TensorType::new(
        dt,
        image_shape(a.format, xd[0].clone(), h, w, out_c),
    ))
}

fn infer_pool(
    op: &str,
    p: &PoolAttrs,
    inputs: &[TensorType],
    accept: Accept,
) -> OpResult<TensorType> {
    expect_arity(op, inputs, 1)?;
    let dt = common_dtype(op, inputs, accept)?;
    let x = &inputs[0];
    if dt == DType::U64 {
        // Integers are compared as i64, where u64 values from 2^63 up would wrap.
        return Err(format!("{op} does not support u64, got {x}"));
    }
    if x.rank() != 4 {
        return Err(format!(
            "{op} needs a 4-D input ({}), got {x}",
            p.format.name()
        ));
    }
    check_positive(op, "ksize", p.ksize)?;
    check_positive(op, "strides", p.strides)?;
    if let Padding::Explicit(pads) = &p.padding {
        // Padded cells are ignored, so a window made only of padding would have no value.
        if (0..2).any(|a| pads[a][0] >= p.ksize[a] || pads[a][1] >= p.ksize[a]) {
            return Err(format!(
                "{op}: explicit padding {pads:?} must be smaller than the window {:?}",
                p.ksize
            ));
        }
    }
    let (ha, wa, ca) = p.format.hwc_axes();
    let xd = x.shape.dims();
    let cx = Context {
        op,
        operands: format!(
            "input {x}, ksize {:?}, {}",
            p.ksize,
            padding_name(&p.padding)
        ),
    };
    let spatial = |axis: usize, xa: usize| {
        spatial_dim(
            &cx,
            &xd[xa],
            Some(p.ksize[axis]),
            p.strides[axis],
            1,
            &p.padding,
            axis,
        )
    };
    let (h, w) = (spatial(0, ha)?, spatial(1, wa)?);
    Ok(TensorType::new(
        dt,
        image_shape(p.format, xd[0].clone(), h, w, xd[ca].clone()),
    ))
}

fn infer_batch_norm(inputs: &[TensorType], format: DataFormat) -> OpResult<TensorType> {
    let op = "fused_batch_norm";
    expect_arity(op, inputs, 5)?;
    common_dtype(op, &inputs[..1], Accept::Float)?;
    // TensorFlow allows f32 statistics with an f16/bf16 input, so only the four parameters
    // must share a dtype.
    common_dtype(op, &inputs[1..], Accept::Float)?;
    let x = &inputs[0];
    if x.rank() < 2 {
        return Err(format!("{op} needs an input of rank at least 2, got {x}"));
    }
    let c = &x.shape.dims()[channel_axis(format, x.rank())];
    for (what, t) in ["scale", "offset", "mean", "variance"]
        .iter()
        .zip(&inputs[1..])
    {
        if t.rank() != 1 || !t.shape.dims()[0].compatible(c) {
            return Err(format!(
                "{op}: {what} {t} must be 1-D with {c} elements, the channels of input {x} ({})",
                format.name()
            ));
        }
    }
    Ok(x.clone())
}

// ---- eval -------------------------------------------------------------------------------------

/// Evaluates conv ops.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    // The verifier's type check, so the kernels below see only well-formed operands.
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    infer(op, &types)?;
    let name = op.mnemonic();
    let out = match op {
        Op::Conv2D(a) => dispatch(name, &ConvKernel(a), inputs, Accept::Numeric)?,
        Op::DepthwiseConv2D(a) => dispatch(name, &DepthwiseKernel(a), inputs, Accept::Numeric)?,
        Op::MaxPool(p) => dispatch(name, &PoolKernel { p, max: true }, inputs, Accept::Numeric)?,
        Op::AvgPool(p) => dispatch(name, &PoolKernel { p, max: false }, inputs, Accept::Float)?,
        Op::FusedBatchNorm { epsilon, format } => dispatch(
            name,
            &BatchNormKernel {
                epsilon: *epsilon,
                format: *format,
            },
            inputs,
            Accept::Float,
        )?,
        Op::Conv2DInteger(a) => quantized::eval_conv2d_integer(a, inputs)?,
        _ => unreachable!("{op:?} is not a conv op"),
    };
    Ok(vec![out])
}

/// The concrete geometry of a window op (convolution, depthwise convolution, pooling) over an
/// NHWC input `[n, h, w, c]`: output size, strides, dilations and the leading pad of each axis.
/// The one definition of SAME padding and dilation that the interpreter and the CPU kernels
/// share. The output is viewed as `[n·oh·ow, channels]` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowGeometry {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Padding before the first input row.
    pub pt: usize,
    /// Padding before the first input column.
    pub pl: usize,
}

impl WindowGeometry {
    /// The geometry of a `k` window with `strides`, `dilations` and `padding` over an NHWC
    /// input of shape `nhwc`; an error when the window does not fit the padded input.
    pub fn new(
        nhwc: &[usize],
        k: [usize; 2],
        strides: [usize; 2],
        dilations: [usize; 2],
        padding: &Padding,
    ) -> OpResult<WindowGeometry> {
        if nhwc.len() != 4 {
            return Err(format!("a window needs a 4-D input, got {nhwc:?}"));
        }
        let axis = |a: usize| {
            axis_geometry(nhwc[1 + a], k[a], strides[a], dilations[a], padding, a)
                .map_err(|e| format!("window of {} does not fit {}", e.span, e.padded))
        };
        let ((oh, pt), (ow, pl)) = (axis(0)?, axis(1)?);
        Ok(WindowGeometry {
            n: nhwc[0],
            h: nhwc[1],
            w: nhwc[2],
            c: nhwc[3],
            oh,
            ow,
            kh: k[0],
            kw: k[1],
            sh: strides[0],
            sw: strides[1],
            dh: dilations[0],
            dw: dilations[1],
            pt,
            pl,
        })
    }

    /// Output rows of the `[n·oh·ow, channels]` view: `n * oh * ow`.
    pub fn rows(&self) -> usize {
        self.n * self.oh * self.ow
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }

    /// The input row of tap `ky` for output row `oy`, if it is not padding.
    pub fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky * self.dh)
            .checked_sub(self.pt)
            .filter(|&y| y < self.h)
    }

    /// The input column of tap `kx` for output column `ox`, if it is not padding.
    pub fn col(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.sw + kx * self.dw)
            .checked_sub(self.pl)
            .filter(|&x| x < self.w)
    }

    /// The taps `ky` of output row `oy` that read input rows (not padding): a range.
    #[inline]
    pub fn ky_range(&self, oy: usize) -> Range<usize> {
        taps(oy * self.sh, self.pt, self.h, self.kh, self.dh)
    }

    /// The taps `kx` of output column `ox` that read input columns (not padding): a range.
    #[inline]
    pub fn kx_range(&self, ox: usize) -> Range<usize> {
        taps(ox * self.sw, self.pl, self.w, self.kw, self.dw)
    }

    /// Input row of tap `ky` of output row `oy` (the tap must be in [`Self::ky_range`]).
    #[inline]
    pub fn iy(&self, oy: usize, ky: usize) -> usize {
        oy * self.sh + ky * self.dh - self.pt
    }

    /// Input column of tap `kx` of output column `ox` (the tap must be in [`Self::kx_range`]).
    #[inline]
    pub fn ix(&self, ox: usize, kx: usize) -> usize {
        ox * self.sw + kx * self.dw - self.pl
    }

    /// Splits output rows into runs along one output row of one image:
    /// `(img, oy, ox range, index of the run's first row within rows)`.
    pub fn runs(
        &self,
        rows: Range<usize>,
    ) -> impl Iterator<Item = (usize, usize, Range<usize>, usize)> + '_ {
        let start = rows.start;
        let mut r = rows.start;
        std::iter::from_fn(move || {
            if r >= rows.end || self.ow == 0 {
                return None;
            }
            let (line, ox0) = (r / self.ow, r % self.ow);
            let ox1 = self.ow.min(ox0 + (rows.end - r));
            let run = (line / self.oh, line % self.oh, ox0..ox1, r - start);
            r += ox1 - ox0;
            Some(run)
        })
    }
}

/// The taps `t < k` whose input coordinate `base + t*d - pad` lies in `0..size`: always a
/// contiguous range.
#[inline]
fn taps(base: usize, pad: usize, size: usize, k: usize, d: usize) -> Range<usize> {
    let lo = pad.saturating_sub(base).div_ceil(d);
    let hi = (size + pad).saturating_sub(base).div_ceil(d).min(k);
    lo.min(hi)..hi
}

/// `x` in NHWC and standard layout; copies only for NCHW or an unusual layout.
fn to_nhwc<'a, T: Scalar>(x: &'a ArrayViewD<'_, T>, format: DataFormat) -> CowArray<'a, T, IxDyn> {
    match format {
        DataFormat::Nhwc => x.as_standard_layout(),
        DataFormat::Nchw => {
            let v = x.view().permuted_axes(IxDyn(&[0, 2, 3, 1]));
            CowArray::from(v.as_standard_layout().into_owned())
        }
    }
}

/// An NHWC result as an array in `format`.
fn from_nhwc<T: Scalar>(data: Vec<T>, nhwc: [usize; 4], format: DataFormat) -> ArrayD<T> {
    let a = ArrayD::from_shape_vec(IxDyn(&nhwc), data).expect("same element count");
    match format {
        DataFormat::Nhwc => a,
        DataFormat::Nchw => a
            .permuted_axes(IxDyn(&[0, 3, 1, 2]))
            .as_standard_layout()
            .into_owned(),
    }
}

fn slice_of<'a, T>(a: &'a CowArray<'_, T, IxDyn>) -> &'a [T] {
    a.as_slice().expect("standard layout is contiguous")
}

/// `conv2d` by im2col + GEMM in the compute type.
pub(super) struct ConvKernel<'a>(pub(super) &'a ConvAttrs);

impl Kernel for ConvKernel<'_> {
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>> {
        let a = self.0;
        let x = to_nhwc(&xs[0], a.format);
        let filter = xs[1].as_standard_layout();
        let (kh, kw, ci, co) = {
            let s = filter.shape();
            (s[0], s[1], s[2], s[3])
        };
        let win = WindowGeometry::new(x.shape(), [kh, kw], a.strides, a.dilations, &a.padding)?;
        let f2 = filter
            .view()
            .into_shape_with_order((kh * kw * ci, co))
            .expect("same element count");
        let out = conv_nhwc(slice_of(&x), f2, &win, win.c / ci, co);
        Ok(from_nhwc(out, [win.n, win.oh, win.ow, co], a.format))
    }
}

/// Rows of the im2col matrix built at a time, so its memory stays bounded (~16 MB of f32)
/// however large the image.
const IM2COL_ELEMENTS: usize = 1 << 22;

/// Convolution by im2col + GEMM: for each image and group, the matrix whose row `(oy, ox)`
/// holds the input patch (`kh * kw * in` values, in the filter's HWI order) times the filter
/// as a `[kh * kw * in, out]` matrix. `x` is NHWC, the result NHWC.
fn conv_nhwc<T: Scalar>(
    x: &[T],
    filter: ArrayView2<'_, T>,
    win: &WindowGeometry,
    groups: usize,
    co: usize,
) -> Vec<T> {
    let WindowGeometry {
        n,
        h,
        w,
        c,
        oh,
        ow,
        kh,
        kw,
        ..
    } = *win;
    let rows = oh * ow;
    let mut out = vec![T::zero(); n * rows * co];
    let ci = c / groups;
    let cog = co / groups;
    let depth = kh * kw * ci;
    if out.is_empty() || depth == 0 {
        return out;
    }
    let pointwise = kh == 1
        && kw == 1
        && win.sh == 1
        && win.sw == 1
        && win.pt == 0
        && win.pl == 0
        && (oh, ow) == (h, w);
    if pointwise && groups == 1 {
        // A 1x1 convolution is already a matrix product: [n*h*w, c] @ [c, out].
        let a = ArrayView2::from_shape((n * rows, c), x).expect("NHWC input");
        let o = ArrayViewMut2::from_shape((n * rows, co), &mut out).expect("NHWC output");
        T::gemm(a, filter, o);
        return out;
    }
    let chunk = (IM2COL_ELEMENTS / depth).clamp(1, rows);
    let mut cols = vec![T::zero(); chunk * depth];
    for img in 0..n {
        let xi = &x[img * h * w * c..(img + 1) * h * w * c];
        let mut oi =
            ArrayViewMut2::from_shape((rows, co), &mut out[img * rows * co..][..rows * co])
                .expect("NHWC output");
        for g in 0..groups {
            let fg = filter.slice(s![.., g * cog..(g + 1) * cog]);
            for r0 in (0..rows).step_by(chunk) {
                let r1 = (r0 + chunk).min(rows);
                for (r, patch) in (r0..r1).zip(cols.chunks_exact_mut(depth)) {
                    let (oy, ox) = (r / ow, r % ow);
                    for ky in 0..kh {
                        let iy = win.row(oy, ky);
                        for kx in 0..kw {
                            let dst = &mut patch[(ky * kw + kx) * ci..][..ci];
                            match (iy, win.col(ox, kx)) {
                                (Some(iy), Some(ix)) => {
                                    dst.copy_from_slice(&xi[(iy * w + ix) * c + g * ci..][..ci])
                                }
                                _ => dst.fill(T::zero()),
                            }
                        }
                    }
                }
                let a = ArrayView2::from_shape((r1 - r0, depth), &cols[..(r1 - r0) * depth])
                    .expect("im2col block");
                T::gemm(a, fg, oi.slice_mut(s![r0..r1, g * cog..(g + 1) * cog]));
            }
        }
    }
    out
}

struct DepthwiseKernel<'a>(&'a ConvAttrs);

impl Kernel for DepthwiseKernel<'_> {
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>> {
        let a = self.0;
        let x = to_nhwc(&xs[0], a.format);
        let filter = xs[1].as_standard_layout();
        let (kh, kw, m) = {
            let s = filter.shape();
            (s[0], s[1], s[3])
        };
        let win = WindowGeometry::new(x.shape(), [kh, kw], a.strides, a.dilations, &a.padding)?;
        let (x, f) = (slice_of(&x), slice_of(&filter));
        let (c, cm) = (win.c, win.c * m);
        let mut out = vec![T::zero(); win.n * win.oh * win.ow * cm];
        // One output pixel's `c * m` channels at a time: the input pixel's channels and the
        // filter tap's `[c, m]` block are both contiguous, and output channel `c * m + j`
        // reads input channel `c`.
        for (p, o) in out.chunks_exact_mut(cm.max(1)).enumerate() {
            let (img, oy, ox) = (p / (win.oh * win.ow), p / win.ow % win.oh, p % win.ow);
            for ky in 0..kh {
                let Some(iy) = win.row(oy, ky) else { continue };
                for kx in 0..kw {
                    let Some(ix) = win.col(ox, kx) else { continue };
                    let xin = &x[((img * win.h + iy) * win.w + ix) * c..][..c];
                    let tap = &f[(ky * kw + kx) * cm..][..cm];
                    for ((o, t), &v) in o.chunks_exact_mut(m).zip(tap.chunks_exact(m)).zip(xin) {
                        for (o, &t) in o.iter_mut().zip(t) {
                            *o = o.plus(v.times(t));
                        }
                    }
                }
            }
        }
        Ok(from_nhwc(out, [win.n, win.oh, win.ow, cm], a.format))
    }
}

struct PoolKernel<'a> {
    p: &'a PoolAttrs,
    max: bool,
}

impl Kernel for PoolKernel<'_> {
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>> {
        let p = self.p;
        let x = to_nhwc(&xs[0], p.format);
        let win = WindowGeometry::new(x.shape(), p.ksize, p.strides, [1, 1], &p.padding)?;
        let x = slice_of(&x);
        let c = win.c;
        let mut out = vec![T::zero(); win.n * win.oh * win.ow * c];
        for (q, o) in out.chunks_exact_mut(c.max(1)).enumerate() {
            let (img, oy, ox) = (q / (win.oh * win.ow), q / win.ow % win.oh, q % win.ow);
            // Padded cells take no part: the window is clipped to the input (never empty,
            // which infer guarantees for explicit padding and SAME guarantees by itself).
            let (ys, xr) = (win.ky_range(oy), win.kx_range(ox));
            let count = ys.len() * xr.len();
            let mut first = true;
            for iy in ys.map(|ky| win.iy(oy, ky)) {
                for ix in xr.clone().map(|kx| win.ix(ox, kx)) {
                    let v = &x[((img * win.h + iy) * win.w + ix) * c..][..c];
                    if first {
                        o.copy_from_slice(v);
                        first = false;
                    } else if self.max {
                        for (o, &v) in o.iter_mut().zip(v) {
                            if v > *o {
                                *o = v;
                            }
                        }
                    } else {
                        for (o, &v) in o.iter_mut().zip(v) {
                            *o = o.plus(v);
                        }
                    }
                }
            }
            if !self.max {
                let d = T::from_f64(count as f64);
                o.iter_mut().for_each(|o| *o = *o / d);
            }
        }
        Ok(from_nhwc(out, [win.n, win.oh, win.ow, c], p.format))
    }
}

struct BatchNormKernel {
    epsilon: f32,
    format: DataFormat,
}

impl Kernel for BatchNormKernel {
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>> {
        let param = |i: usize| -> Vec<f64> { xs[i].iter().map(|&v| v.to_f64()).collect() };
        let (scale, offset, mean, var) = (param(1), param(2), param(3), param(4));
        let eps = f64::from(self.epsilon);
        // `scale / sqrt(variance + epsilon)` per channel, computed once in f64.
        let factor: Vec<T> = scale
            .iter()
            .zip(&var)
            .map(|(s, v)| T::from_f64(s / (v + eps).sqrt()))
            .collect();
        let mean: Vec<T> = mean.into_iter().map(T::from_f64).collect();
        let offset: Vec<T> = offset.into_iter().map(T::from_f64).collect();
        let x = &xs[0];
        Ok(map_channels(
            x,
            channel_axis(self.format, x.ndim()),
            |v, c| v.minus(mean[c]).times(factor[c]).plus(offset[c]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::test_util::{close, Rng};

    fn run(op: &Op, inputs: &[&Tensor]) -> Tensor {
        crate::ops::test_util::run(infer, eval, op, inputs)
    }

    fn f(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_f64(DType::F32, shape, v)
    }

    fn permute(t: &Tensor, perm: &[usize]) -> Tensor {
        let a = t.to_f64_array().permuted_axes(IxDyn(perm));
        Tensor::from_f64(t.dtype(), a.shape(), &a.iter().copied().collect::<Vec<_>>())
    }

    fn conv(strides: [usize; 2], dilations: [usize; 2], padding: Padding) -> ConvAttrs {
        ConvAttrs {
            strides,
            dilations,
            padding,
            format: DataFormat::Nhwc,
        }
    }

    /// TensorFlow's SAME padding `[before, after]` of one axis, written out independently.
    #[test]
    fn window_geometry_splits_same_padding_and_clips_taps() {
        // 5 wide, 4 taps 2 apart (span 7), stride 2: 3 outputs, 6 cells of SAME padding
        // split 3 before and 3 after.
        let g = WindowGeometry::new(&[1, 5, 5, 1], [4, 4], [2, 2], [2, 2], &Padding::Same).unwrap();
        assert_eq!((g.oh, g.ow, g.pt, g.pl), (3, 3, 3, 3));
        assert_eq!(g.rows(), 9);
        // Output 0's taps sit at padded rows 0, 2, 4, 6: taps 0 and 1 are padding, 2 and 3
        // read input rows 1 and 3.
        assert_eq!(g.ky_range(0), 2..4);
        assert_eq!((g.row(0, 1), g.row(0, 2)), (None, Some(1)));
        assert_eq!(g.iy(0, 3), 3);
        // The odd cell goes at the end: 4 wide, 2 taps, stride 1 -> 1 cell after.
        let g = WindowGeometry::new(&[1, 4, 4, 1], [2, 2], [1, 1], [1, 1], &Padding::Same).unwrap();
        assert_eq!((g.oh, g.pt), (4, 0));
        assert_eq!(g.ky_range(3), 0..1);
        for (oy, ky) in [(0, 0), (2, 1), (3, 1)] {
            let clipped = g.ky_range(oy).contains(&ky);
            assert_eq!(g.row(oy, ky).is_some(), clipped, "oy {oy} ky {ky}");
        }
        let e = WindowGeometry::new(&[1, 2, 2, 1], [3, 3], [1, 1], [1, 1], &Padding::Valid);
        assert_eq!(e.unwrap_err(), "window of 3 does not fit 2");
    }

    fn same_pads(input: usize, k: usize, s: usize, d: usize) -> [usize; 2] {
        let out = input.div_ceil(s);
        let eff = (k - 1) * d + 1;
        let total = ((out - 1) * s + eff).saturating_sub(input);
        [total / 2, total - total / 2]
    }

    /// Direct convolution: seven nested loops over NHWC, explicit pads, groups, dilation.
    fn reference_conv(
        x: &Tensor,
        f: &Tensor,
        s: [usize; 2],
        d: [usize; 2],
        pads: [[usize; 2]; 2],
        depthwise: bool,
    ) -> Tensor {
        let (xs, fs) = (x.shape(), f.shape());
        let (n, h, w, c) = (xs[0], xs[1], xs[2], xs[3]);
        let (kh, kw, ci, k3) = (fs[0], fs[1], fs[2], fs[3]);
        let (xv, fv) = (x.to_f64_vec(), f.to_f64_vec());
        let oh = (h + pads[0][0] + pads[0][1] - (kh - 1) * d[0] - 1) / s[0] + 1;
        let ow = (w + pads[1][0] + pads[1][1] - (kw - 1) * d[1] - 1) / s[1] + 1;
        let co = if depthwise { c * k3 } else { k3 };
        let mut out = vec![0.0; n * oh * ow * co];
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..co {
                        let mut acc = 0.0;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s[0] + ky * d[0]) as isize - pads[0][0] as isize;
                                let ix = (ox * s[1] + kx * d[1]) as isize - pads[1][0] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let (iy, ix) = (iy as usize, ix as usize);
                                let px = |ch: usize| xv[((b * h + iy) * w + ix) * c + ch];
                                if depthwise {
                                    let (ch, m) = (o / k3, o % k3);
                                    acc += px(ch) * fv[((ky * kw + kx) * ci + ch) * k3 + m];
                                } else {
                                    let g = o / (co / (c / ci));
                                    for i in 0..ci {
                                        acc +=
                                            px(g * ci + i) * fv[((ky * kw + kx) * ci + i) * co + o];
                                    }
                                }
                            }
                        }
                        out[((b * oh + oy) * ow + ox) * co + o] = acc;
                    }
                }
            }
        }
        Tensor::from_f64(x.dtype(), &[n, oh, ow, co], &out)
    }

    #[test]
    fn conv2d_hand_computed() {
        let x = f(&[1, 3, 3, 1], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let ones = f(&[2, 2, 1, 1], &[1.; 4]);
        let valid = Op::Conv2D(conv([1, 1], [1, 1], Padding::Valid));
        assert_eq!(
            run(&valid, &[&x, &ones]),
            f(&[1, 2, 2, 1], &[12., 16., 24., 28.])
        );
        // SAME with a 2x2 window pads one cell after (bottom/right), none before.
        let same = Op::Conv2D(conv([1, 1], [1, 1], Padding::Same));
        assert_eq!(
            run(&same, &[&x, &ones]),
            f(&[1, 3, 3, 1], &[12., 16., 9., 24., 28., 15., 15., 17., 9.])
        );
        // Two output channels from two input channels: out0 = in0 + in1, out1 = in0 - in1.
        let x2 = f(&[1, 1, 2, 2], &[1., 2., 3., 5.]);
        let mix = f(&[1, 1, 2, 2], &[1., 1., 1., -1.]);
        let op = Op::Conv2D(conv([1, 1], [1, 1], Padding::Valid));
        assert_eq!(
            run(&op, &[&x2, &mix]),
            f(&[1, 1, 2, 2], &[3., -1., 8., -2.])
        );
    }

    /// Input NHWC, filter HWIO, strides, dilations, padding.
    type ConvCase = ([usize; 4], [usize; 4], [usize; 2], [usize; 2], Padding);

    #[test]
    fn conv2d_matches_direct_loops() {
        let mut rng = Rng(3);
        // (input NHWC, filter HWIO, strides, dilations, padding)
        let cases: Vec<ConvCase> = vec![
            ([2, 7, 6, 3], [3, 3, 3, 4], [1, 1], [1, 1], Padding::Same),
            ([2, 7, 6, 3], [3, 3, 3, 4], [1, 1], [1, 1], Padding::Valid),
            ([1, 8, 9, 2], [3, 2, 2, 5], [2, 2], [1, 1], Padding::Same),
            ([1, 9, 8, 2], [3, 3, 2, 3], [2, 1], [1, 1], Padding::Valid),
            ([1, 9, 9, 3], [3, 3, 3, 2], [1, 1], [2, 2], Padding::Same),
            ([1, 9, 10, 3], [2, 3, 3, 2], [2, 2], [2, 3], Padding::Valid),
            (
                [2, 5, 6, 2],
                [3, 3, 2, 3],
                [1, 2],
                [1, 1],
                Padding::Explicit([[1, 2], [0, 3]]),
            ),
            ([1, 6, 6, 4], [1, 1, 4, 6], [1, 1], [1, 1], Padding::Valid),
            ([1, 6, 6, 4], [1, 1, 4, 6], [2, 2], [1, 1], Padding::Same),
            ([2, 5, 5, 6], [3, 3, 2, 9], [1, 1], [1, 1], Padding::Same),
            ([1, 7, 7, 4], [7, 7, 4, 2], [2, 2], [1, 1], Padding::Same),
            ([1, 4, 4, 6], [1, 1, 3, 4], [1, 1], [1, 1], Padding::Valid),
        ];
        for (xs, fs, s, d, padding) in cases {
            let x = rng.tensor(DType::F64, &xs);
            let fl = rng.tensor(DType::F64, &fs);
            let pads = match &padding {
                Padding::Same => [
                    same_pads(xs[1], fs[0], s[0], d[0]),
                    same_pads(xs[2], fs[1], s[1], d[1]),
                ],
                Padding::Valid => [[0, 0], [0, 0]],
                Padding::Explicit(p) => *p,
            };
            let want = reference_conv(&x, &fl, s, d, pads, false);
            let attrs = conv(s, d, padding.clone());
            let got = run(&Op::Conv2D(attrs.clone()), &[&x, &fl]);
            close(&got, &want, 1e-12);
            // SAME is the same as its explicit padding.
            let explicit = run(&Op::Conv2D(conv(s, d, Padding::Explicit(pads))), &[&x, &fl]);
            close(&explicit, &want, 1e-12);
            // NCHW: the same convolution on transposed operands gives the transposed result.
            let nchw = Op::Conv2D(ConvAttrs {
                format: DataFormat::Nchw,
                ..attrs
            });
            let got = run(&nchw, &[&permute(&x, &[0, 3, 1, 2]), &fl]);
            close(&permute(&got, &[0, 2, 3, 1]), &want, 1e-12);
            // f32, f16 and integers go through the same kernel.
            let got = run(
                &Op::Conv2D(conv(s, d, padding.clone())),
                &[&x.cast(DType::F32), &fl.cast(DType::F32)],
            );
            assert_eq!(got.dtype(), DType::F32);
            close(&got, &want, 1e-4);
        }
        let x = Tensor::from_i64(DType::I32, &[1, 2, 2, 1], &[1, 2, 3, 4]);
        let w = Tensor::from_i64(DType::I32, &[2, 2, 1, 1], &[1, 10, 100, 1000]);
        let op = Op::Conv2D(conv([1, 1], [1, 1], Padding::Valid));
        assert_eq!(run(&op, &[&x, &w]).to_i64_vec().unwrap(), vec![4321]);
        let h = run(&op, &[&x.cast(DType::F16), &w.cast(DType::F16)]);
        assert_eq!((h.dtype(), h.to_f64_vec()), (DType::F16, vec![4320.]));
    }

    #[test]
    fn conv2d_type_errors_and_symbolic_dims() {
        let op = Op::Conv2D(conv([1, 1], [1, 1], Padding::Valid));
        let t = |d: &[usize]| TensorType::known(DType::F32, d);
        let e = infer(&op, &[t(&[1, 5, 5, 3]), t(&[3, 3, 4, 8])]).unwrap_err();
        assert!(
            e.contains("f32[1,5,5,3] has 3 channels") && e.contains("f32[3,3,4,8] expects 4"),
            "{e}"
        );
        let e = infer(&op, &[t(&[1, 5, 5, 6]), t(&[3, 3, 3, 5])]).unwrap_err();
        assert!(
            e.contains("2 groups") && e.contains("5 output channels"),
            "{e}"
        );
        let e = infer(&op, &[t(&[1, 2, 5, 3]), t(&[3, 3, 3, 8])]).unwrap_err();
        assert!(
            e.contains("window (3) is larger than the padded input height 2")
                && e.contains("input f32[1,2,5,3]"),
            "{e}"
        );
        let dil = Op::Conv2D(conv([1, 1], [1, 3], Padding::Explicit([[0, 0], [0, 1]])));
        let e = infer(&dil, &[t(&[1, 5, 5, 3]), t(&[3, 3, 3, 8])]).unwrap_err();
        assert!(
            e.contains("3 with dilation 3 spans 7") && e.contains("width 6"),
            "{e}"
        );
        let e = infer(&op, &[t(&[5, 5, 3]), t(&[3, 3, 3, 8])]).unwrap_err();
        assert!(e.contains("4-D input"), "{e}");
        let e = infer(
            &op,
            &[
                t(&[1, 5, 5, 3]),
                TensorType::known(DType::F64, &[3, 3, 3, 8]),
            ],
        )
        .unwrap_err();
        assert!(e.contains("dtypes differ"), "{e}");

        let x = TensorType::new(
            DType::F32,
            Shape(vec![
                Dim::sym("n"),
                Dim::sym("h"),
                Dim::Known(10),
                Dim::Known(3),
            ]),
        );
        let same = Op::Conv2D(conv([1, 2], [1, 1], Padding::Same));
        let out = infer(&same, &[x.clone(), t(&[3, 3, 3, 8])]).unwrap();
        assert_eq!(out[0].to_string(), "f32[?n,?h,5,8]");
        let valid = infer(&op, &[x.clone(), t(&[3, 3, 3, 8])]).unwrap();
        assert_eq!(valid[0].to_string(), "f32[?n,?,8,8]");
        let nchw = Op::Conv2D(ConvAttrs {
            format: DataFormat::Nchw,
            ..conv([2, 2], [1, 1], Padding::Same)
        });
        let x = TensorType::new(
            DType::F32,
            Shape(vec![
                Dim::sym("n"),
                Dim::Known(3),
                Dim::Unknown,
                Dim::Known(9),
            ]),
        );
        let out = infer(&nchw, &[x, t(&[3, 3, 3, 8])]).unwrap();
        assert_eq!(out[0].to_string(), "f32[?n,8,?,5]");
    }

    #[test]
    fn depthwise_multiplier_two() {
        // Output channel c * 2 + m is input channel c times filter[.., c, m].
        let x = f(&[1, 1, 1, 2], &[3., 5.]);
        let w = f(&[1, 1, 2, 2], &[1., 2., 10., 20.]);
        let op = Op::DepthwiseConv2D(conv([1, 1], [1, 1], Padding::Valid));
        assert_eq!(run(&op, &[&x, &w]), f(&[1, 1, 1, 4], &[3., 6., 50., 100.]));

        let mut rng = Rng(11);
        for (xs, fs, s, d, padding) in [
            ([2, 6, 7, 3], [3, 3, 3, 2], [1, 1], [1, 1], Padding::Same),
            ([1, 8, 8, 4], [3, 3, 4, 1], [2, 2], [1, 1], Padding::Same),
            ([1, 9, 8, 2], [3, 2, 2, 3], [1, 2], [2, 1], Padding::Valid),
            (
                [1, 5, 5, 2],
                [3, 3, 2, 2],
                [2, 1],
                [1, 1],
                Padding::Explicit([[2, 0], [1, 1]]),
            ),
        ] {
            let x = rng.tensor(DType::F64, &xs);
            let fl = rng.tensor(DType::F64, &fs);
            let pads = match &padding {
                Padding::Same => [
                    same_pads(xs[1], fs[0], s[0], d[0]),
                    same_pads(xs[2], fs[1], s[1], d[1]),
                ],
                Padding::Valid => [[0, 0], [0, 0]],
                Padding::Explicit(p) => *p,
            };
            let want = reference_conv(&x, &fl, s, d, pads, true);
            let attrs = conv(s, d, padding);
            close(
                &run(&Op::DepthwiseConv2D(attrs.clone()), &[&x, &fl]),
                &want,
                1e-12,
            );
            let nchw = Op::DepthwiseConv2D(ConvAttrs {
                format: DataFormat::Nchw,
                ..attrs
            });
            let got = run(&nchw, &[&permute(&x, &[0, 3, 1, 2]), &fl]);
            close(&permute(&got, &[0, 2, 3, 1]), &want, 1e-12);
        }
        let t = |d: &[usize]| TensorType::known(DType::F32, d);
        let e = infer(&op, &[t(&[1, 4, 4, 3]), t(&[3, 3, 2, 2])]).unwrap_err();
        assert!(e.contains("3 channels") && e.contains("expects 2"), "{e}");
        let x = TensorType::new(
            DType::F32,
            Shape(vec![
                Dim::sym("n"),
                Dim::Known(4),
                Dim::Known(4),
                Dim::sym("c"),
            ]),
        );
        let one = infer(
            &op,
            &[
                x.clone(),
                TensorType::new(
                    DType::F32,
                    Shape(vec![
                        Dim::Known(1),
                        Dim::Known(1),
                        Dim::sym("c"),
                        Dim::Known(1),
                    ]),
                ),
            ],
        )
        .unwrap();
        assert_eq!(one[0].to_string(), "f32[?n,4,4,?c]");
    }

    fn pool(ksize: [usize; 2], strides: [usize; 2], padding: Padding) -> PoolAttrs {
        PoolAttrs {
            ksize,
            strides,
            padding,
            format: DataFormat::Nhwc,
        }
    }

    #[test]
    fn pools_same_edges() {
        let x = f(&[1, 3, 3, 1], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let p = pool([2, 2], [1, 1], Padding::Same);
        // Edge windows average only their in-bounds cells: 2 on the last row/column, 1 in the
        // corner.
        assert_eq!(
            run(&Op::AvgPool(p.clone()), &[&x]),
            f(&[1, 3, 3, 1], &[3., 4., 4.5, 6., 7., 7.5, 7.5, 8.5, 9.])
        );
        assert_eq!(
            run(&Op::MaxPool(p), &[&x]),
            f(&[1, 3, 3, 1], &[5., 6., 6., 8., 9., 9., 8., 9., 9.])
        );
        // 3x3 stride 2 SAME on 4x4: pads 0 before and 1 after.
        let x = f(&[1, 4, 4, 1], &(1..=16).map(f64::from).collect::<Vec<_>>());
        let p = pool([3, 3], [2, 2], Padding::Same);
        assert_eq!(
            run(&Op::AvgPool(p.clone()), &[&x]),
            f(&[1, 2, 2, 1], &[6., 7.5, 12., 13.5])
        );
        assert_eq!(
            run(&Op::MaxPool(p), &[&x]),
            f(&[1, 2, 2, 1], &[11., 12., 15., 16.])
        );
        // Negative values: padding must not contribute zeros to the max.
        let neg = f(&[1, 2, 2, 1], &[-4., -3., -2., -1.]);
        let p = pool([2, 2], [1, 1], Padding::Same);
        assert_eq!(
            run(&Op::MaxPool(p), &[&neg]),
            f(&[1, 2, 2, 1], &[-1., -1., -1., -1.])
        );
    }

    /// Pooling by direct loops over a padded window, skipping padded cells.
    fn reference_pool(
        x: &Tensor,
        k: [usize; 2],
        s: [usize; 2],
        pads: [[usize; 2]; 2],
        max: bool,
    ) -> Tensor {
        let xs = x.shape();
        let (n, h, w, c) = (xs[0], xs[1], xs[2], xs[3]);
        let v = x.to_f64_vec();
        let oh = (h + pads[0][0] + pads[0][1] - k[0]) / s[0] + 1;
        let ow = (w + pads[1][0] + pads[1][1] - k[1]) / s[1] + 1;
        let mut out = Vec::new();
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut cells = Vec::new();
                        for ky in 0..k[0] {
                            for kx in 0..k[1] {
                                let iy = (oy * s[0] + ky) as isize - pads[0][0] as isize;
                                let ix = (ox * s[1] + kx) as isize - pads[1][0] as isize;
                                if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                    let (iy, ix) = (iy as usize, ix as usize);
                                    cells.push(v[((b * h + iy) * w + ix) * c + ch]);
                                }
                            }
                        }
                        out.push(if max {
                            cells.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                        } else {
                            cells.iter().sum::<f64>() / cells.len() as f64
                        });
                    }
                }
            }
        }
        Tensor::from_f64(x.dtype(), &[n, oh, ow, c], &out)
    }

    #[test]
    fn pools_match_direct_loops() {
        let mut rng = Rng(5);
        for (xs, k, s, padding) in [
            ([2, 7, 6, 3], [3, 3], [2, 2], Padding::Same),
            ([1, 7, 7, 2], [3, 2], [2, 1], Padding::Valid),
            (
                [1, 6, 5, 2],
                [3, 3],
                [1, 2],
                Padding::Explicit([[1, 2], [2, 0]]),
            ),
            ([1, 5, 5, 1], [2, 2], [3, 3], Padding::Same),
        ] {
            let x = rng.tensor(DType::F64, &xs);
            let pads = match &padding {
                Padding::Same => [
                    same_pads(xs[1], k[0], s[0], 1),
                    same_pads(xs[2], k[1], s[1], 1),
                ],
                Padding::Valid => [[0, 0], [0, 0]],
                Padding::Explicit(p) => *p,
            };
            for max in [true, false] {
                let attrs = pool(k, s, padding.clone());
                let mk = |a: PoolAttrs| if max { Op::MaxPool(a) } else { Op::AvgPool(a) };
                let want = reference_pool(&x, k, s, pads, max);
                close(&run(&mk(attrs.clone()), &[&x]), &want, 1e-12);
                let nchw = mk(PoolAttrs {
                    format: DataFormat::Nchw,
                    ..attrs
                });
                let got = run(&nchw, &[&permute(&x, &[0, 3, 1, 2])]);
                close(&permute(&got, &[0, 2, 3, 1]), &want, 1e-12);
            }
        }
        // Max pooling is defined on integers, average pooling is not.
        let x = Tensor::from_i64(DType::I8, &[1, 1, 3, 1], &[-5, 7, -128]);
        let p = pool([1, 2], [1, 1], Padding::Valid);
        assert_eq!(
            run(&Op::MaxPool(p.clone()), &[&x]).to_i64_vec().unwrap(),
            vec![7, 7]
        );
        let e = infer(&Op::AvgPool(p.clone()), &[x.ty()]).unwrap_err();
        assert!(e.contains("needs a float tensor"), "{e}");
        let e = infer(&Op::MaxPool(p), &[x.cast(DType::U64).ty()]).unwrap_err();
        assert!(e.contains("does not support u64"), "{e}");
        let bad = pool([2, 2], [1, 1], Padding::Explicit([[2, 0], [0, 0]]));
        let e = infer(
            &Op::MaxPool(bad),
            &[TensorType::known(DType::F32, &[1, 4, 4, 1])],
        )
        .unwrap_err();
        assert!(e.contains("smaller than the window"), "{e}");
        let e = infer(
            &Op::MaxPool(pool([5, 5], [1, 1], Padding::Valid)),
            &[TensorType::known(DType::F32, &[1, 3, 8, 1])],
        )
        .unwrap_err();
        assert!(e.contains("larger than the padded input height 3"), "{e}");
    }

    #[test]
    fn fused_batch_norm_hand_computed() {
        let op = |format| Op::FusedBatchNorm {
            epsilon: 1.0,
            format,
        };
        let scale = f(&[2], &[2., 3.]);
        let offset = f(&[2], &[0.5, -1.]);
        let mean = f(&[2], &[1., 0.]);
        let var = f(&[2], &[3., 0.]);
        // Channel 0: (x - 1) * 2 / 2 + 0.5; channel 1: x * 3 / 1 - 1.
        let x = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = run(&op(DataFormat::Nhwc), &[&x, &scale, &offset, &mean, &var]);
        assert_eq!(y, f(&[1, 1, 2, 2], &[0.5, 5., 2.5, 11.]));
        let x = f(&[1, 2, 1, 2], &[1., 3., 2., 4.]);
        let y = run(&op(DataFormat::Nchw), &[&x, &scale, &offset, &mean, &var]);
        assert_eq!(y, f(&[1, 2, 1, 2], &[0.5, 2.5, 5., 11.]));
        // An f16 input with f32 statistics stays f16.
        let y = run(
            &op(DataFormat::Nchw),
            &[&x.cast(DType::F16), &scale, &offset, &mean, &var],
        );
        assert_eq!(
            (y.dtype(), y.to_f64_vec()),
            (DType::F16, vec![0.5, 2.5, 5., 11.])
        );
        let e = infer(
            &op(DataFormat::Nhwc),
            &[
                x.ty(),
                scale.ty(),
                offset.ty(),
                TensorType::known(DType::F32, &[3]),
                var.ty(),
            ],
        )
        .unwrap_err();
        assert!(e.contains("mean f32[3] must be 1-D with 2 elements"), "{e}");
    }

    /// Every convolution of ResNet-50 at 224x224 (batch 1): a speed check of im2col + GEMM.
    /// Run with `cargo test -p lathe-ir --release -- --ignored resnet50 --nocapture`.
    #[test]
    #[ignore]
    fn resnet50_convolutions_timing() {
        let mut rng = Rng(1);
        // (spatial size, in, out, kernel, stride)
        let mut layers = vec![(224, 3, 64, 7, 2)];
        let mut cin = 64;
        for (size, width, blocks, stride) in [
            (56, 64, 3, 1),
            (56, 128, 4, 2),
            (28, 256, 6, 2),
            (14, 512, 3, 2),
        ] {
            for b in 0..blocks {
                let (s, inp) = if b == 0 {
                    (stride, size)
                } else {
                    (1, size / stride)
                };
                let out_size = inp / s;
                layers.push((inp, cin, width, 1, s));
                layers.push((out_size, width, width, 3, 1));
                layers.push((out_size, width, width * 4, 1, 1));
                if b == 0 {
                    layers.push((inp, cin, width * 4, 1, s));
                }
                cin = width * 4;
            }
        }
        let inputs: Vec<(Tensor, Tensor, usize)> = layers
            .iter()
            .map(|&(size, i, o, k, s)| {
                (
                    rng.tensor(DType::F32, &[1, size, size, i]),
                    rng.tensor(DType::F32, &[k, k, i, o]),
                    s,
                )
            })
            .collect();
        let start = std::time::Instant::now();
        let mut flops = 0.0;
        for (x, w, s) in &inputs {
            let y = run(&Op::Conv2D(conv([*s, *s], [1, 1], Padding::Same)), &[x, w]);
            let ws = w.shape();
            flops += 2.0 * (y.len() * ws[0] * ws[1] * ws[2]) as f64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{} convolutions, {:.2} GFLOP in {secs:.3} s ({:.1} GFLOP/s)",
            inputs.len(),
            flops / 1e9,
            flops / 1e9 / secs
        );
    }
}
