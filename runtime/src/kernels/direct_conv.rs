//! `conv2d` with a shallow window (`kh · kw · in` at most [`MAX_DEPTH`]), computed straight from
//! the input: no im2col matrix.
//!
//! A first layer (one to three input channels: grey or RGB images, 3×3 to 7×7 windows) is where
//! im2col costs most for what it buys: each output pixel copies `kh` stretches of a few floats,
//! and the GEMM that follows has a short `k`. Here, per output row, the `kh` input rows the
//! window reads are copied once into a zero-padded scratch (so no tap needs a bounds check),
//! then blocks of `R` output pixels × `2·LANES` output channels are accumulated in registers:
//! per tap, two filter vectors and one broadcast input value per pixel, `2R` FMAs. The taps run
//! in the filter's HWI order, the order im2col + GEMM sums in.
//!
//! The filter is held once, as the `[kh·kw·in, out]` matrix with its columns padded to a multiple
//! of 32 (zeros), so every channel block loads whole vectors.

use super::conv::check_run_rows;
use super::simd::{self, store_first, Isa, Simd};
use lathe_ir::ops::conv::WindowGeometry;
use std::ops::Range;

/// The deepest window (`kh · kw · in`) run directly; deeper ones go through im2col + GEMM, whose
/// copy is then small next to the product. Measured on one thread: cnn's 3×3×1 layer 16 → 6 µs
/// (with its ReLU), MobileNetV2's 3×3×3 stride-2 stem 0.51 → 0.2 ms, ResNet-50's 7×7×3 stem
/// (depth 147) 2.8 → 2.36 ms, about the FMA peak.
pub const MAX_DEPTH: usize = 160;

/// Output channels per filter row (the padding unit).
const CO_ALIGN: usize = 32;

/// A `conv2d` (one group, f32 NHWC) computed directly, ready to run on ranges of output rows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DirectConv {
    win: WindowGeometry,
    co: usize,
    /// `co` rounded up to [`CO_ALIGN`].
    co_pad: usize,
    /// Width of one zero-padded input row: every column a window of an output row reads.
    wp: usize,
    /// `[kh·kw·c, co_pad]`, row-major.
    #[serde(with = "crate::cpu::image::floats")]
    filter: Vec<f32>,
    isa: Isa,
}

impl DirectConv {
    /// Whether a convolution of this geometry and group count runs here.
    pub fn applies(win: &WindowGeometry, groups: usize) -> bool {
        groups == 1 && win.kh * win.kw * win.c <= MAX_DEPTH
    }

    /// Prepares the convolution of `win` with the HWIO filter `values` (`co` output channels).
    pub fn new(win: WindowGeometry, values: &[f32], co: usize) -> DirectConv {
        let depth = win.kh * win.kw * win.c;
        assert_eq!(values.len(), depth * co, "direct conv: filter length");
        let co_pad = co.next_multiple_of(CO_ALIGN);
        let mut filter = vec![0.0; depth * co_pad];
        if co > 0 {
            for (row, src) in filter.chunks_exact_mut(co_pad).zip(values.chunks_exact(co)) {
                row[..co].copy_from_slice(src);
            }
        }
        DirectConv {
            win,
            co,
            co_pad,
            wp: (win.ow.max(1) - 1) * win.sw + (win.kw - 1) * win.dw + 1,
            filter,
            isa: Isa::detect(),
        }
    }

    /// The same kernel for another instruction set (tests and benchmarks).
    pub fn with_isa(mut self, isa: Isa) -> DirectConv {
        assert!(
            isa.supported(),
            "direct conv: this CPU does not run {isa:?}"
        );
        self.isa = isa;
        self
    }

    /// f32 elements of scratch [`Self::run_rows`] needs: the `kh` padded input rows.
    pub fn scratch_len(&self) -> usize {
        self.win.kh * self.wp * self.win.c
    }

    /// Computes output rows `rows` (pixels `N·OH·OW`) into `out` (`rows.len() · co` elements,
    /// row-major); `x` is the whole NHWC input, `scratch` at least [`Self::scratch_len`].
    pub fn run_rows(&self, x: &[f32], rows: Range<usize>, out: &mut [f32], scratch: &mut [f32]) {
        check_run_rows(
            [
                self.win.input_len(),
                self.win.rows(),
                self.co,
                self.scratch_len(),
            ],
            x,
            &rows,
            out.len(),
            scratch,
        );
        run(self.isa, self, x, rows, out, scratch);
    }

    /// Copies the `kh` input rows output row `oy` of image `img` reads into `lines`, padding
    /// (and rows past the input) as zeros.
    fn fill_lines(&self, x: &[f32], img: usize, oy: usize, lines: &mut [f32]) {
        let w = &self.win;
        let (c, wp) = (w.c, self.wp);
        for (ky, line) in lines.chunks_exact_mut(wp * c).take(w.kh).enumerate() {
            let iy = (oy * w.sh + ky * w.dh)
                .checked_sub(w.pt)
                .filter(|&iy| iy < w.h);
            let Some(iy) = iy else {
                line.fill(0.0);
                continue;
            };
            // Padded column j reads input column j - pl.
            let lo = w.pl.min(wp);
            let hi = (w.pl + w.w).min(wp);
            line[..lo * c].fill(0.0);
            line[hi * c..].fill(0.0);
            if hi > lo {
                let src = &x[((img * w.h + iy) * w.w) * c..][..(hi - lo) * c];
                line[lo * c..hi * c].copy_from_slice(src);
            }
        }
    }
}

simd::multiversion!(fn run(k: &DirectConv, x: &[f32], rows: Range<usize>, out: &mut [f32], scratch: &mut [f32]) => run_generic);

#[inline(always)]
fn run_generic<S: Simd>(
    k: &DirectConv,
    x: &[f32],
    rows: Range<usize>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let lines = &mut scratch[..k.scratch_len()];
    for (img, oy, oxs, off) in k.win.runs(rows) {
        k.fill_lines(x, img, oy, lines);
        let o = &mut out[off * k.co..][..oxs.len() * k.co];
        // Pixels per tile: 2R accumulators stay in registers (R = 12 spilled on AVX-512).
        if S::LANES >= 16 {
            pixels::<S, 8>(k, lines, oxs, o);
        } else {
            pixels::<S, 4>(k, lines, oxs, o);
        }
    }
}

/// Output pixels `oxs` of one output row, from its padded input `lines`, into `out`.
#[inline(always)]
fn pixels<S: Simd, const R: usize>(
    k: &DirectConv,
    lines: &[f32],
    oxs: Range<usize>,
    out: &mut [f32],
) {
    let block = 2 * S::LANES;
    let mut i = 0;
    let n = oxs.len();
    while i + R <= n {
        for c0 in (0..k.co).step_by(block) {
            tile::<S, R>(k, lines, oxs.start + i, c0, &mut out[i * k.co..]);
        }
        i += R;
    }
    while i < n {
        for c0 in (0..k.co).step_by(block) {
            tile::<S, 1>(k, lines, oxs.start + i, c0, &mut out[i * k.co..]);
        }
        i += 1;
    }
}

/// `R` output pixels from column `ox0`, channels `c0 .. c0 + 2·LANES` (clipped to `co`).
#[inline(always)]
fn tile<S: Simd, const R: usize>(
    k: &DirectConv,
    lines: &[f32],
    ox0: usize,
    c0: usize,
    out: &mut [f32],
) {
    let w = &k.win;
    let (c, wp) = (w.c, k.wp);
    debug_assert!(c0 < k.co && out.len() >= (R - 1) * k.co + (k.co - c0).min(2 * S::LANES));
    // SAFETY: the CPU runs `S` (multiversion!).
    let mut acc = [[unsafe { S::zero() }; 2]; R];
    // SAFETY: every read is inside `lines` (kh rows of wp·c: pixel ox0 + r < ow reads padded
    // columns (ox0 + r)·sw + kx·dw < wp) or the filter (row `tap` < depth, columns
    // c0 .. c0 + 2·LANES <= co_pad since c0 is a multiple of 2·LANES, which divides
    // CO_ALIGN); the CPU runs `S` (multiversion!).
    unsafe {
        let f = k.filter.as_ptr();
        let mut tap = 0;
        for ky in 0..w.kh {
            let line = lines.as_ptr().add(ky * wp * c);
            for kx in 0..w.kw {
                let col = line.add((ox0 * w.sw + kx * w.dw) * c);
                for ci in 0..c {
                    let wrow = f.add(tap * k.co_pad + c0);
                    let (w0, w1) = (S::load(wrow), S::load(wrow.add(S::LANES)));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let v = S::splat(*col.add(r * w.sw * c + ci));
                        a[0] = S::fma(v, w0, a[0]);
                        a[1] = S::fma(v, w1, a[1]);
                    }
                    tap += 1;
                }
            }
        }
    }
    let left = k.co - c0;
    for (r, a) in acc.iter().enumerate() {
        let o = &mut out[r * k.co + c0..];
        // SAFETY: `o` holds at least `left.min(2·LANES)` elements (checked above); partial
        // vectors store only their first lanes.
        unsafe {
            store_first::<S>(o.as_mut_ptr(), a[0], left);
            store_first::<S>(
                o.as_mut_ptr().add(S::LANES.min(left)),
                a[1],
                left.saturating_sub(S::LANES),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::tests::{assert_close, reference, Rng};
    use lathe_ir::ops::{ConvAttrs, DataFormat, Op};

    #[test]
    fn matches_the_interpreter_on_shallow_windows() {
        let mut rng = Rng(0xd1ec7);
        for case in 0..120 {
            let k = [rng.int(1, 7), rng.int(1, 7)];
            let strides = [rng.int(1, 3), rng.int(1, 3)];
            let dilations = if case % 4 == 0 {
                [rng.int(1, 2), rng.int(1, 2)]
            } else {
                [1, 1]
            };
            let padding = rng.padding(k);
            let ci = rng.int(1, 4).min(MAX_DEPTH / (k[0] * k[1])).max(1);
            if k[0] * k[1] * ci > MAX_DEPTH {
                continue;
            }
            let co = [1, 5, 16, 24, 32, 33, 64][rng.int(0, 6)];
            let span = |a: usize| (k[a] - 1) * dilations[a] + 1;
            let x_shape = [
                rng.int(1, 2),
                rng.int(span(0), span(0) + 12),
                rng.int(span(1), span(1) + 15),
                ci,
            ];
            let f_shape = [k[0], k[1], ci, co];
            let attrs = ConvAttrs {
                strides,
                dilations,
                padding,
                format: DataFormat::Nhwc,
            };
            let x = rng.values(x_shape.iter().product());
            let f = rng.values(f_shape.iter().product());
            let what = format!("x {x_shape:?} f {f_shape:?} {attrs:?}");
            let (shape, want) = reference(
                &Op::Conv2D(attrs.clone()),
                &[(&x_shape, &x), (&f_shape, &f)],
            );
            let Ok(win) = WindowGeometry::new(&x_shape, k, strides, dilations, &attrs.padding)
            else {
                continue;
            };
            assert_eq!(win.rows() * co, shape.iter().product::<usize>(), "{what}");
            for isa in Isa::all_supported() {
                let conv = DirectConv::new(win, &f, co).with_isa(isa);
                let mut scratch = vec![f32::NAN; conv.scratch_len()];
                let rows = win.rows();
                let mut out = vec![f32::NAN; rows * co];
                conv.run_rows(&x, 0..rows, &mut out, &mut scratch);
                assert_close(&out, &want, 1e-5 * 8.0, &format!("{what} {isa:?}"));
                // A sub-range starting mid-row, in two pieces.
                let (a, b) = (rng.int(0, rows), rng.int(0, rows));
                let sub = a.min(b)..a.max(b);
                let mid = (sub.start + sub.end) / 2;
                let mut part = vec![f32::NAN; sub.len() * co];
                let (p0, p1) = part.split_at_mut((mid - sub.start) * co);
                conv.run_rows(&x, sub.start..mid, p0, &mut scratch);
                conv.run_rows(&x, mid..sub.end, p1, &mut scratch);
                assert_close(
                    &part,
                    &want[sub.start * co..sub.end * co],
                    1e-5 * 8.0,
                    &format!("{what} {isa:?} rows {sub:?}"),
                );
            }
        }
    }
}
