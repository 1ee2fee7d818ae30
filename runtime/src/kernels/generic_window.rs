//! `conv2d`, `depthwise_conv2d`, `max_pool` and `avg_pool` for every numeric dtype and both
//! data formats, with the filter read at run time: what the tuned f32 NHWC kernels
//! ([`super::conv`], [`super::depthwise`], [`super::pool`]) do not take.
//!
//! Direct loops, one output pixel (`(n, oy, ox)`, a row of the `[N·OH·OW, C]` view) at a
//! time: its channels accumulate in a small vector of the interpreter's compute type
//! ([`Numeric::Acc`]) over the window's in-bounds taps, then are rounded once and stored with
//! the output's strides (NHWC or NCHW; the input is read through its own strides, so NCHW
//! costs no transpose). The geometry is the IR's [`WindowGeometry`].
//!
//! Depthwise convolution and pooling add in the interpreter's order (taps row by row, then
//! column by column), so they equal it bit for bit; convolution sums each tap's input channels
//! in order, which equals the interpreter's im2col product for integers and is within rounding
//! of it for floats. Padded cells take no part (a convolution's are zeros; pooling ignores them).

use super::numeric::{elements, with_numeric, Arith, Numeric};
use lathe_ir::ops::conv::WindowGeometry;
use lathe_ir::ops::{DataFormat, Op};
use lathe_ir::{DType, TensorType};
use std::borrow::Cow;
use std::ops::Range;

/// Which window op, with what its filter says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowOp {
    /// `conv2d`: input channels in `groups` groups of `ci`, each with its slice of the output
    /// channels; the filter is `[kh, kw, ci, cols]`.
    Conv {
        groups: usize,
        ci: usize,
    },
    /// `depthwise_conv2d`: the filter is `[kh, kw, c, multiplier]`.
    Depthwise {
        multiplier: usize,
    },
    MaxPool,
    AvgPool,
}

/// A window op ready to run on ranges of output pixels.
#[derive(Clone, Debug)]
pub struct GenericWindow {
    pub op: WindowOp,
    pub dtype: DType,
    pub format: DataFormat,
    win: WindowGeometry,
    /// Output channels.
    cols: usize,
    /// Element strides of the batch, row, column and channel axes of the input.
    x_strides: [usize; 4],
    /// The same for the output.
    out_strides: [usize; 4],
}

/// Element strides `[n, h, w, c]` of a dense tensor of NHWC sizes `nhwc` stored in `format`.
fn strides(format: DataFormat, [_, h, w, c]: [usize; 4]) -> [usize; 4] {
    match format {
        DataFormat::Nhwc => [h * w * c, w * c, c, 1],
        DataFormat::Nchw => [c * h * w, w, 1, h * w],
    }
}

impl GenericWindow {
    /// Prepares `op` (a conv or pool op) on an input of type `x` and, for a convolution, a
    /// filter of type `filter`. Errors for operands the op itself rejects (the interpreter's
    /// message), bool, or shapes that are not known.
    pub fn new(op: &Op, x: &TensorType, filter: Option<&TensorType>) -> Result<Self, String> {
        super::numeric::check_numeric(op.mnemonic(), x.dtype)?;
        let mut types = vec![x.clone()];
        types.extend(filter.cloned());
        op.infer(&types, &vec![None; types.len()])?;
        let known = |t: &TensorType| {
            t.shape
                .as_known()
                .filter(|d| d.len() == 4)
                .ok_or_else(|| format!("{} needs known 4-D shapes, got {t}", op.mnemonic()))
        };
        let d = known(x)?;
        let format = match op {
            Op::Conv2D(a) | Op::DepthwiseConv2D(a) => a.format,
            Op::MaxPool(p) | Op::AvgPool(p) => p.format,
            other => return Err(format!("{} is not a window op", other.mnemonic())),
        };
        let (ha, wa, ca) = format.hwc_axes();
        let nhwc = [d[0], d[ha], d[wa], d[ca]];
        let filter_dims = || -> Result<Vec<usize>, String> {
            known(filter.ok_or_else(|| format!("{} has no filter", op.mnemonic()))?)
        };
        let (kind, win, cols) = match op {
            Op::Conv2D(a) | Op::DepthwiseConv2D(a) => {
                let f = filter_dims()?;
                let win =
                    WindowGeometry::new(&nhwc, [f[0], f[1]], a.strides, a.dilations, &a.padding)?;
                if matches!(op, Op::Conv2D(_)) {
                    let kind = WindowOp::Conv {
                        groups: nhwc[3] / f[2],
                        ci: f[2],
                    };
                    (kind, win, f[3])
                } else {
                    (
                        WindowOp::Depthwise { multiplier: f[3] },
                        win,
                        nhwc[3] * f[3],
                    )
                }
            }
            Op::MaxPool(p) | Op::AvgPool(p) => {
                let win = WindowGeometry::new(&nhwc, p.ksize, p.strides, [1, 1], &p.padding)?;
                let kind = match op {
                    Op::MaxPool(_) => WindowOp::MaxPool,
                    _ => WindowOp::AvgPool,
                };
                (kind, win, nhwc[3])
            }
            _ => unreachable!("checked above"),
        };
        Ok(GenericWindow {
            op: kind,
            dtype: x.dtype,
            format,
            x_strides: strides(format, nhwc),
            out_strides: strides(format, [win.n, win.oh, win.ow, cols]),
            win,
            cols,
        })
    }

    /// Output pixels: `N * OH * OW`.
    pub fn rows(&self) -> usize {
        self.win.rows()
    }

    /// Output channels.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Arithmetic operations per output pixel, to decide how many threads a step is worth.
    pub fn flops_per_row(&self) -> usize {
        let taps = self.win.kh * self.win.kw;
        match self.op {
            WindowOp::Conv { ci, .. } => 2 * taps * ci * self.cols,
            WindowOp::Depthwise { .. } => 2 * taps * self.cols,
            WindowOp::MaxPool | WindowOp::AvgPool => taps * self.cols,
        }
    }

    /// Elements of the filter (0 for pooling).
    fn filter_len(&self) -> usize {
        let taps = self.win.kh * self.win.kw;
        match self.op {
            WindowOp::Conv { ci, .. } => taps * ci * self.cols,
            WindowOp::Depthwise { .. } => taps * self.cols,
            WindowOp::MaxPool | WindowOp::AvgPool => 0,
        }
    }

    /// Computes output pixels `rows` on the calling thread.
    ///
    /// # Safety
    /// `x` holds the whole input and `filter` the whole filter (never read for pooling), dense, of
    /// this kernel's dtype and shapes, and nothing writes them now; `out` holds the whole
    /// output, whose pixels `rows` (all their channels) nothing else reads or writes now.
    pub unsafe fn run_rows(
        &self,
        x: *const u8,
        filter: *const u8,
        out: *mut u8,
        rows: Range<usize>,
    ) {
        with_numeric!(self.dtype, T => self.rows_typed::<T>(
            elements(x as *const T, self.win.input_len()),
            elements(filter as *const T, self.filter_len()),
            out as *mut T,
            rows,
        ), bool => ())
    }

    /// [`Self::run_rows`] for element type `T`.
    ///
    /// # Safety
    /// As for `run_rows`.
    unsafe fn rows_typed<T: Numeric>(
        &self,
        x: &[T],
        filter: &[T],
        out: *mut T,
        rows: Range<usize>,
    ) {
        let win = &self.win;
        let [xn, xh, xw, xc] = self.x_strides;
        let [on, oh, ow, oc] = self.out_strides;
        let f: Cow<'_, [T::Acc]> = match T::as_acc(filter) {
            Some(f) => Cow::Borrowed(f),
            None => Cow::Owned(filter.iter().map(|v| v.acc()).collect()),
        };
        let cols = self.cols;
        if cols == 0 {
            // No output channels (a depthwise multiplier of 0): nothing to compute.
            return;
        }
        let mut acc = vec![T::Acc::ZERO; cols];
        let mut best = vec![T::default(); cols];
        for (img, oy, oxs, _) in win.runs(rows) {
            let ys = win.ky_range(oy);
            for ox in oxs {
                let xr = win.kx_range(ox);
                let cells = ys.clone().flat_map(|ky| xr.clone().map(move |kx| (ky, kx)));
                let at =
                    |ky: usize, kx: usize| img * xn + win.iy(oy, ky) * xh + win.ix(ox, kx) * xw;
                let store = out.add(img * on + oy * oh + ox * ow);
                match self.op {
                    WindowOp::Conv { groups, ci } => {
                        acc.fill(T::Acc::ZERO);
                        let cog = cols / groups.max(1);
                        for (ky, kx) in cells {
                            let base = at(ky, kx);
                            let tap = &f[(ky * win.kw + kx) * ci * cols..][..ci * cols];
                            for g in 0..groups {
                                let acc = &mut acc[g * cog..(g + 1) * cog];
                                for q in 0..ci {
                                    let v = x[base + (g * ci + q) * xc].acc();
                                    let w = &tap[q * cols + g * cog..][..cog];
                                    for (o, &w) in acc.iter_mut().zip(w) {
                                        *o = o.add(v.mul(w));
                                    }
                                }
                            }
                        }
                    }
                    WindowOp::Depthwise { multiplier: m } => {
                        acc.fill(T::Acc::ZERO);
                        for (ky, kx) in cells {
                            let base = at(ky, kx);
                            let tap = &f[(ky * win.kw + kx) * cols..][..cols];
                            for (ch, (o, w)) in
                                acc.chunks_exact_mut(m).zip(tap.chunks_exact(m)).enumerate()
                            {
                                let v = x[base + ch * xc].acc();
                                for (o, &w) in o.iter_mut().zip(w) {
                                    *o = o.add(v.mul(w));
                                }
                            }
                        }
                    }
                    WindowOp::MaxPool => {
                        // Compared in the type itself (the interpreter's f32 compare of f16
                        // values orders them the same); a NaN is replaced by nothing and
                        // replaces nothing after the first cell, as there.
                        best.fill(T::default());
                        for (i, (ky, kx)) in cells.enumerate() {
                            let base = at(ky, kx);
                            for (ch, b) in best.iter_mut().enumerate() {
                                let v = x[base + ch * xc];
                                if i == 0 || v > *b {
                                    *b = v;
                                }
                            }
                        }
                        for (ch, &b) in best.iter().enumerate() {
                            *store.add(ch * oc) = b;
                        }
                        continue;
                    }
                    WindowOp::AvgPool => {
                        acc.fill(T::Acc::ZERO);
                        let mut count = 0;
                        for (i, (ky, kx)) in cells.enumerate() {
                            let base = at(ky, kx);
                            for (ch, o) in acc.iter_mut().enumerate() {
                                let v = x[base + ch * xc].acc();
                                *o = if i == 0 { v } else { o.add(v) };
                            }
                            count += 1;
                        }
                        acc.iter_mut().for_each(|o| *o = o.div_count(count));
                    }
                }
                for (ch, &v) in acc.iter().enumerate() {
                    *store.add(ch * oc) = T::from_acc(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::{ConvAttrs, Padding, PoolAttrs};
    use lathe_ir::Tensor;

    /// Runs `op` on `x` (and `filter`) with the kernel, in two row ranges.
    fn run(op: &Op, x: &Tensor, filter: Option<&Tensor>) -> Tensor {
        let k = GenericWindow::new(op, &x.ty(), filter.map(|f| f.ty()).as_ref()).unwrap();
        let want = {
            let mut ins = vec![x];
            ins.extend(filter);
            op.eval(&ins).unwrap().remove(0)
        };
        let xb = x.to_le_bytes();
        let fb = filter.map(|f| f.to_le_bytes()).unwrap_or_default();
        let mut out = vec![0u8; want.size_bytes()];
        let rows = k.rows();
        for r in [rows / 3..rows, 0..rows / 3] {
            // SAFETY: dense buffers of the kernel's shapes; one range at a time.
            unsafe { k.run_rows(xb.as_ptr(), fb.as_ptr(), out.as_mut_ptr(), r) };
        }
        // Bit for bit, NaN included.
        assert_eq!(out, want.to_le_bytes(), "{op}");
        Tensor::from_le_bytes(want.dtype(), want.shape(), &out).unwrap()
    }

    fn ints(dt: DType, shape: &[usize], seed: i64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<i64> = (0..n as i64).map(|i| (i * 7919 + seed) % 23 - 11).collect();
        Tensor::from_i64(dt, shape, &v)
    }

    #[test]
    fn integer_convolutions_equal_the_interpreter_in_both_formats() {
        for format in [DataFormat::Nhwc, DataFormat::Nchw] {
            let attrs = ConvAttrs {
                strides: [2, 1],
                dilations: [1, 2],
                padding: Padding::Same,
                format,
            };
            let x_shape = match format {
                DataFormat::Nhwc => [2, 5, 6, 4],
                DataFormat::Nchw => [2, 4, 5, 6],
            };
            let x = ints(DType::I16, &x_shape, 3);
            // Two groups of two input channels.
            run(
                &Op::Conv2D(attrs.clone()),
                &x,
                Some(&ints(DType::I16, &[3, 2, 2, 6], 5)),
            );
            run(
                &Op::DepthwiseConv2D(attrs),
                &x,
                Some(&ints(DType::I16, &[2, 3, 4, 2], 1)),
            );
        }
    }

    #[test]
    fn pools_equal_the_interpreter_bit_for_bit() {
        let attrs = PoolAttrs {
            ksize: [3, 2],
            strides: [2, 2],
            padding: Padding::Explicit([[1, 1], [0, 1]]),
            format: DataFormat::Nchw,
        };
        run(
            &Op::MaxPool(attrs.clone()),
            &ints(DType::U8, &[1, 3, 7, 5], 2),
            None,
        );
        let mut v: Vec<f64> = (0..105).map(|i| (i as f64 * 0.37).sin()).collect();
        v[4] = f64::NAN;
        let x = Tensor::from_f64(DType::F16, &[1, 3, 7, 5], &v);
        run(&Op::AvgPool(attrs.clone()), &x, None);
        run(&Op::MaxPool(attrs), &x, None);
    }
}
