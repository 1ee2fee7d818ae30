//! `depthwise_conv2d` over NHWC inputs and constant `[kh, kw, in, multiplier]` filters, a
//! direct (no im2col) kernel computed a range of output rows at a time.
//!
//! # Layout and vectorization
//!
//! Output rows are output pixels (`N*OH*OW`), columns the `in * multiplier` output channels.
//! In NHWC an input pixel's channels are contiguous, and so are one filter tap's, so with
//! multiplier 1 (MobileNet's case) the kernel vectorizes over channels: one SIMD vector
//! (16 lanes with AVX-512, 8 with AVX2+FMA, chosen at run time; 1 in the portable fallback)
//! holds a block of channels, and the output is `Σ_taps x[tap] * f[tap]` with FMAs.
//! Channel counts that are not a multiple of the vector width finish with the scalar
//! instantiation of the same code.
//!
//! # Blocking
//!
//! Rows are walked as runs along one output row. The interior of a run (pixels whose whole
//! window is inside the input horizontally) goes four pixels at a time: each filter vector is
//! loaded once and used by four independent accumulators, so loads are 1.25 per FMA and the
//! four FMA chains hide the FMA latency. Pixels at the left and right borders go one at a time
//! over their in-bounds taps only. Rows of taps that fall in the top/bottom padding are skipped.
//!
//! A multiplier above 1 runs a plain scalar loop (no model we target uses one).
//!
//! Vector code goes through the shared SIMD layer, [`super::simd`].

use super::conv::{f32_values, nhwc_f32};
use super::simd::{self, Isa, Scalar, Simd};
use lathe_ir::ops::conv::WindowGeometry;
use lathe_ir::ops::{ConvAttrs, Op};
use lathe_ir::{Tensor, TensorType};
use std::ops::Range;

/// A `depthwise_conv2d` (NHWC input, constant `[kh, kw, in, multiplier]` filter) ready to run
/// on ranges of output rows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DepthwiseConv2d {
    win: WindowGeometry,
    multiplier: usize,
    /// The filter, row-major: tap `(ky, kx)` holds `in * multiplier` contiguous values.
    #[serde(with = "crate::cpu::image::floats")]
    filter: Vec<f32>,
    /// Output columns whose whole window row is inside the input.
    interior: Range<usize>,
    isa: Isa,
}

impl DepthwiseConv2d {
    /// Prepares `depthwise_conv2d` of an input of type `x` with the constant `filter`.
    /// Errors for what the kernel does not do (NCHW, non-f32, unknown shapes) and for operands
    /// the op itself rejects.
    pub fn new(attrs: &ConvAttrs, x: &TensorType, filter: &Tensor) -> Result<Self, String> {
        let op = "depthwise_conv2d";
        let nhwc = nhwc_f32(op, attrs.format, x)?;
        Op::DepthwiseConv2D(attrs.clone())
            .infer(&[x.clone(), filter.ty()], &[None, Some(filter)])?;
        let fs = filter.shape();
        let win = WindowGeometry::new(
            &nhwc,
            [fs[0], fs[1]],
            attrs.strides,
            attrs.dilations,
            &attrs.padding,
        )?;
        let mut interior = (0..win.ow).filter(|&ox| win.kx_range(ox) == (0..win.kw));
        let interior = match (interior.clone().next(), interior.next_back()) {
            (Some(a), Some(b)) => a..b + 1,
            _ => 0..0,
        };
        Ok(DepthwiseConv2d {
            win,
            multiplier: fs[3],
            filter: f32_values(op, filter)?.into_owned(),
            interior,
            isa: Isa::detect(),
        })
    }

    /// Output rows: `N * OH * OW`.
    /// Window taps per output element (`kh · kw`).
    pub fn taps(&self) -> usize {
        self.win.kh * self.win.kw
    }

    pub fn rows(&self) -> usize {
        self.win.rows()
    }

    /// Output columns: `in * multiplier`.
    pub fn cols(&self) -> usize {
        self.win.c * self.multiplier
    }

    /// Elements of the input `x` that [`Self::run_rows`] expects.
    pub fn input_len(&self) -> usize {
        self.win.input_len()
    }

    /// Computes output rows `rows` into `out` (`rows.len() * cols()` elements, row-major) on
    /// the calling thread; `x` is the whole NHWC input.
    ///
    /// Panics, with a message, on a range past [`Self::rows`] or slices of the wrong length.
    pub fn run_rows(&self, x: &[f32], rows: Range<usize>, out: &mut [f32]) {
        assert!(
            x.len() == self.input_len(),
            "depthwise_conv2d: input has {} elements, expected {}",
            x.len(),
            self.input_len()
        );
        assert!(
            rows.start <= rows.end && rows.end <= self.rows(),
            "depthwise_conv2d: rows {rows:?} out of 0..{}",
            self.rows()
        );
        assert!(
            out.len() == rows.len() * self.cols(),
            "depthwise_conv2d: output slice has {} elements, expected {}",
            out.len(),
            rows.len() * self.cols()
        );
        if self.multiplier == 0 {
            // No output channels: nothing to compute.
        } else if self.multiplier == 1 {
            run_m1(self.isa, self, x, rows, out);
        } else {
            self.run_multiplier(x, rows, out);
        }
    }

    /// Any multiplier: scalar loops, one output pixel at a time.
    fn run_multiplier(&self, x: &[f32], rows: Range<usize>, out: &mut [f32]) {
        let win = &self.win;
        let (c, m) = (win.c, self.multiplier);
        let cm = c * m;
        out.fill(0.0);
        for (img, oy, oxs, off) in win.runs(rows) {
            for (i, ox) in oxs.enumerate() {
                let o = &mut out[(off + i) * cm..][..cm];
                for ky in win.ky_range(oy) {
                    let iy = win.iy(oy, ky);
                    for kx in win.kx_range(ox) {
                        let xin = &x[((img * win.h + iy) * win.w + win.ix(ox, kx)) * c..][..c];
                        let tap = &self.filter[(ky * win.kw + kx) * cm..][..cm];
                        for ((o, t), &v) in o.chunks_exact_mut(m).zip(tap.chunks_exact(m)).zip(xin)
                        {
                            for (o, &t) in o.iter_mut().zip(t) {
                                *o += v * t;
                            }
                        }
                    }
                }
            }
        }
    }
}

simd::multiversion!(fn run_m1(k: &DepthwiseConv2d, x: &[f32], rows: Range<usize>, out: &mut [f32]) => run_m1_generic);

/// Multiplier 1: walks runs along output rows; interior pixels four at a time.
#[inline(always)]
fn run_m1_generic<S: Simd>(k: &DepthwiseConv2d, x: &[f32], rows: Range<usize>, out: &mut [f32]) {
    let win = &k.win;
    let c = win.c;
    // Interior pixels per step of the 3-wide fast path: 8 when there are 32 vector registers.
    let fast3 = win.kw == 3 && win.dw == 1 && (win.sw == 1 || win.sw == 2);
    let wide = if S::LANES >= 16 { 8 } else { 4 };
    for (img, oy, oxs, off) in win.runs(rows) {
        let ys = win.ky_range(oy);
        let mut ox = oxs.start;
        let mut o = off * c;
        let interior_end = oxs.end.min(k.interior.end);
        while ox < oxs.end {
            let inside = k.interior.contains(&ox);
            if inside && fast3 && ox + wide <= interior_end {
                let out = &mut out[o..o + wide * c];
                match (wide, win.sw) {
                    (8, 1) => pixels_k3::<S, 8, 1>(k, x, img, oy, ys.clone(), ox, out),
                    (8, _) => pixels_k3::<S, 8, 2>(k, x, img, oy, ys.clone(), ox, out),
                    (_, 1) => pixels_k3::<S, 4, 1>(k, x, img, oy, ys.clone(), ox, out),
                    (_, _) => pixels_k3::<S, 4, 2>(k, x, img, oy, ys.clone(), ox, out),
                }
                (ox, o) = (ox + wide, o + wide * c);
            } else if inside && ox + 4 <= interior_end {
                let out = &mut out[o..o + 4 * c];
                pixels::<S, 4>(k, x, img, oy, ys.clone(), ox, 0..win.kw, out);
                (ox, o) = (ox + 4, o + 4 * c);
            } else {
                let xs = win.kx_range(ox);
                pixels::<S, 1>(k, x, img, oy, ys.clone(), ox, xs, &mut out[o..o + c]);
                (ox, o) = (ox + 1, o + c);
            }
        }
    }
}

/// Interior pixels `ox0..ox0 + P` of row `oy` for a 3-wide undilated window with stride
/// `SW` (MobileNet's shape): with the stride known at compile time, the pixels' loads of one
/// input vector are the same address and are loaded once (`(P-1)·SW + 3` loads per row of
/// taps instead of `3·P`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pixels_k3<S: Simd, const P: usize, const SW: usize>(
    k: &DepthwiseConv2d,
    x: &[f32],
    img: usize,
    oy: usize,
    ys: Range<usize>,
    ox0: usize,
    out: &mut [f32],
) {
    let win = &k.win;
    let c = win.c;
    assert!(out.len() == P * c && win.kw == 3 && win.dw == 1 && win.sw == SW);
    assert!(k.interior.contains(&ox0) && ox0 + P <= k.interior.end && ys.end <= win.kh);
    let mut c0 = 0;
    while c0 + S::LANES <= c {
        // SAFETY: pixels `ox0..ox0 + P` are interior (asserted), so every tap `kx < 3` of
        // each reads input column `(ox0 + p)·SW + kx - pl < w`, and `ys` are in-bounds rows;
        // so every load is a whole vector inside `x` (`c0 + LANES <= c`). Filter offsets are
        // below `kh·3·c`; output offsets `p·c + c0 + LANES <= P·c`.
        unsafe {
            let mut acc = [S::zero(); P];
            for ky in ys.clone() {
                let row = (img * win.h + win.iy(oy, ky)) * win.w + win.ix(ox0, 0);
                let line = x.as_ptr().add(row * c + c0);
                let taps = k.filter.as_ptr().add(ky * 3 * c + c0);
                let f = [
                    S::load(taps),
                    S::load(taps.add(c)),
                    S::load(taps.add(2 * c)),
                ];
                for (p, acc) in acc.iter_mut().enumerate() {
                    for (kx, &f) in f.iter().enumerate() {
                        *acc = S::fma(S::load(line.add((p * SW + kx) * c)), f, *acc);
                    }
                }
            }
            for (p, acc) in acc.into_iter().enumerate() {
                S::store(out.as_mut_ptr().add(p * c + c0), acc);
            }
        }
        c0 += S::LANES;
    }
    for c1 in c0..c {
        block::<Scalar, P>(k, x, img, oy, ys.clone(), ox0, 0..3, c1, out);
    }
}

/// Output pixels `ox0..ox0 + P` of row `oy`, all channels, over taps `ys × xs` (which must be
/// in bounds for every one of the `P` pixels). `out` holds the `P` pixels' channels.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pixels<S: Simd, const P: usize>(
    k: &DepthwiseConv2d,
    x: &[f32],
    img: usize,
    oy: usize,
    ys: Range<usize>,
    ox0: usize,
    xs: Range<usize>,
    out: &mut [f32],
) {
    let win = &k.win;
    let c = win.c;
    assert!(out.len() == P * c && ys.end <= win.kh && xs.end <= win.kw);
    debug_assert!((0..P).all(|p| {
        let r = win.kx_range(ox0 + p);
        xs.is_empty() || (r.start <= xs.start && xs.end <= r.end)
    }));
    let mut c0 = 0;
    while c0 + S::LANES <= c {
        block::<S, P>(k, x, img, oy, ys.clone(), ox0, xs.clone(), c0, out);
        c0 += S::LANES;
    }
    // The tail channels, one at a time, with the same code on scalars.
    for c1 in c0..c {
        block::<Scalar, P>(k, x, img, oy, ys.clone(), ox0, xs.clone(), c1, out);
    }
}

/// Channels `c0..c0 + S::LANES` of the pixels of [`pixels`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<S: Simd, const P: usize>(
    k: &DepthwiseConv2d,
    x: &[f32],
    img: usize,
    oy: usize,
    ys: Range<usize>,
    ox0: usize,
    xs: Range<usize>,
    c0: usize,
    out: &mut [f32],
) {
    let win = &k.win;
    let c = win.c;
    debug_assert!(c0 + S::LANES <= c);
    // SAFETY: `ys`/`xs` are in-bounds taps for every pixel (checked by the caller; `ky_range`
    // and `kx_range` give exactly the taps inside the input), so each input offset
    // `((img*h + iy)*w + ix)*c` starts a whole pixel of `c` channels inside `x` (whose length
    // `run_rows` checked), and `c0 + LANES <= c`; filter offsets are below `kh*kw*c`, the
    // filter's length; output offsets `p*c + c0` are inside `out` (`P * c` long, asserted).
    unsafe {
        let mut acc = [S::zero(); P];
        for ky in ys {
            let line = x
                .as_ptr()
                .add((img * win.h + win.iy(oy, ky)) * win.w * c + c0);
            let taps = k.filter.as_ptr().add(ky * win.kw * c + c0);
            for kx in xs.clone() {
                let f = S::load(taps.add(kx * c));
                for (p, acc) in acc.iter_mut().enumerate() {
                    *acc = S::fma(S::load(line.add(win.ix(ox0 + p, kx) * c)), f, *acc);
                }
            }
        }
        for (p, acc) in acc.into_iter().enumerate() {
            S::store(out.as_mut_ptr().add(p * c + c0), acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::tests::{assert_close, reference, Rng};
    use lathe_ir::ops::{DataFormat, Padding};
    use lathe_ir::DType;

    fn check(rng: &mut Rng, x_shape: [usize; 4], f_shape: [usize; 4], attrs: &ConvAttrs) {
        let x = rng.values(x_shape.iter().product());
        let f = rng.values(f_shape.iter().product());
        let what = format!("depthwise x {x_shape:?} f {f_shape:?} {attrs:?}");
        let (shape, want) = reference(
            &Op::DepthwiseConv2D(attrs.clone()),
            &[(&x_shape, &x), (&f_shape, &f)],
        );
        let ft = Tensor::from_vec(&f_shape, f);
        let mut dw = DepthwiseConv2d::new(attrs, &TensorType::known(DType::F32, &x_shape), &ft)
            .expect(&what);
        assert_eq!(
            (dw.rows(), dw.cols()),
            (shape[0] * shape[1] * shape[2], shape[3]),
            "{what}"
        );
        let tol = 1e-5 * ((f_shape[0] * f_shape[1]) as f32).sqrt() * 4.0;
        let rows = dw.rows();
        let (a, b) = (rng.int(0, rows), rng.int(0, rows));
        let sub = a.min(b)..a.max(b);
        for isa in Isa::all_supported() {
            dw.isa = isa;
            let mut out = vec![f32::NAN; rows * dw.cols()];
            dw.run_rows(&x, 0..rows, &mut out);
            assert_close(&out, &want, tol, &format!("{what} {isa:?}"));
            let mut out = vec![f32::NAN; sub.len() * dw.cols()];
            dw.run_rows(&x, sub.clone(), &mut out);
            assert_close(
                &out,
                &want[sub.start * dw.cols()..sub.end * dw.cols()],
                tol,
                &format!("{what} {isa:?} rows {sub:?}"),
            );
        }
    }

    #[test]
    fn matches_interpreter_on_random_depthwise() {
        let mut rng = Rng(0xd3e9);
        for i in 0..120 {
            let k = [rng.int(1, 4), rng.int(1, 4)];
            let strides = [rng.int(1, 3), rng.int(1, 3)];
            let dilations = if rng.int(0, 3) == 0 {
                [rng.int(1, 3), rng.int(1, 3)]
            } else {
                [1, 1]
            };
            let padding = rng.padding(k);
            let m = if i % 5 == 0 { rng.int(2, 3) } else { 1 };
            let c = if rng.int(0, 1) == 0 {
                rng.int(1, 40)
            } else {
                16 * rng.int(1, 3)
            };
            let span = |a: usize| (k[a] - 1) * dilations[a] + 1;
            let x_shape = [
                rng.int(1, 2),
                rng.int(span(0), span(0) + 12),
                rng.int(span(1), span(1) + 12),
                c,
            ];
            let attrs = ConvAttrs {
                strides,
                dilations,
                padding,
                format: DataFormat::Nhwc,
            };
            check(&mut rng, x_shape, [k[0], k[1], c, m], &attrs);
        }
    }

    #[test]
    fn mobilenet_shapes() {
        let mut rng = Rng(3);
        for (hw, c, s) in [
            (16, 32, 1),
            (17, 96, 2),
            (14, 144, 1),
            (7, 960, 1),
            (9, 24, 2),
        ] {
            let attrs = ConvAttrs {
                strides: [s, s],
                dilations: [1, 1],
                padding: Padding::Same,
                format: DataFormat::Nhwc,
            };
            check(&mut rng, [1, hw, hw, c], [3, 3, c, 1], &attrs);
        }
    }

    #[test]
    fn rejects_nchw() {
        let f = Tensor::from_vec(&[3, 3, 4, 1], vec![0.0f32; 36]);
        let attrs = ConvAttrs {
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Same,
            format: DataFormat::Nchw,
        };
        let e = DepthwiseConv2d::new(&attrs, &TensorType::known(DType::F32, &[1, 4, 8, 8]), &f)
            .unwrap_err();
        assert!(e.contains("needs NHWC"), "{e}");
    }
}
