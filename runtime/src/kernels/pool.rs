//! `max_pool` and `avg_pool` over NHWC inputs, computed a range of output rows at a time.
//!
//! Output rows are output pixels (`N*OH*OW`), columns the channels. Each window is clipped to
//! the input: padded cells take no part (as in TensorFlow and the reference interpreter), so
//! a max ignores them and an average divides by the number of in-bounds cells.
//!
//! Vectorized over channels (contiguous in NHWC) with the shared [`simd`] layer: for each
//! output pixel and block of channels, the first in-bounds cell is loaded, the others are
//! combined with `max` or `add` in the interpreter's order (rows, then columns), and an
//! average is divided by the cell count, so results equal the interpreter's bit for bit.
//! Channels past the last whole vector run the scalar instantiation of the same code.
//!
//! [`simd`]: super::simd

use super::conv::nhwc_f32;
use super::simd::{self, Isa, Scalar, Simd};
use lathe_ir::ops::conv::WindowGeometry;
use lathe_ir::ops::{Op, PoolAttrs};
use lathe_ir::TensorType;
use std::ops::Range;

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A `max_pool` or `avg_pool` ready to run on ranges of output rows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Pool2d {
    kind: PoolKind,
    win: WindowGeometry,
    isa: Isa,
}

impl Pool2d {
    /// Prepares pooling of an input of type `x`. Errors for what the kernel does not do
    /// (NCHW, non-f32, unknown shapes) and for attributes the op itself rejects.
    pub fn new(kind: PoolKind, attrs: &PoolAttrs, x: &TensorType) -> Result<Pool2d, String> {
        let op = match kind {
            PoolKind::Max => Op::MaxPool(attrs.clone()),
            PoolKind::Avg => Op::AvgPool(attrs.clone()),
        };
        let nhwc = nhwc_f32(op.mnemonic(), attrs.format, x)?;
        op.infer(std::slice::from_ref(x), &[None])?;
        let win = WindowGeometry::new(&nhwc, attrs.ksize, attrs.strides, [1, 1], &attrs.padding)?;
        Ok(Pool2d {
            kind,
            win,
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

    /// Output columns: the channels.
    pub fn cols(&self) -> usize {
        self.win.c
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
            "pool: input has {} elements, expected {}",
            x.len(),
            self.input_len()
        );
        assert!(
            rows.start <= rows.end && rows.end <= self.rows(),
            "pool: rows {rows:?} out of 0..{}",
            self.rows()
        );
        assert!(
            out.len() == rows.len() * self.cols(),
            "pool: output slice has {} elements, expected {}",
            out.len(),
            rows.len() * self.cols()
        );
        run(self.isa, self, x, rows, out);
    }
}

simd::multiversion!(fn run(p: &Pool2d, x: &[f32], rows: Range<usize>, out: &mut [f32]) => run_generic);

#[inline(always)]
fn run_generic<S: Simd>(p: &Pool2d, x: &[f32], rows: Range<usize>, out: &mut [f32]) {
    let win = &p.win;
    let c = win.c;
    for (img, oy, oxs, off) in win.runs(rows) {
        let ys = win.ky_range(oy);
        for (i, ox) in oxs.enumerate() {
            let xs = win.kx_range(ox);
            // Never empty: `infer` rejects windows made only of padding.
            assert!(!ys.is_empty() && !xs.is_empty());
            let o = &mut out[(off + i) * c..][..c];
            let mut c0 = 0;
            while c0 + S::LANES <= c {
                pixel::<S>(p, x, img, oy, ys.clone(), ox, xs.clone(), c0, o);
                c0 += S::LANES;
            }
            for c1 in c0..c {
                pixel::<Scalar>(p, x, img, oy, ys.clone(), ox, xs.clone(), c1, o);
            }
        }
    }
}

/// Channels `c0..c0 + S::LANES` of output pixel `(img, oy, ox)` over in-bounds taps `ys × xs`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pixel<S: Simd>(
    p: &Pool2d,
    x: &[f32],
    img: usize,
    oy: usize,
    ys: Range<usize>,
    ox: usize,
    xs: Range<usize>,
    c0: usize,
    out: &mut [f32],
) {
    let win = &p.win;
    let c = win.c;
    debug_assert!(c0 + S::LANES <= c && out.len() == c);
    let count = (ys.len() * xs.len()) as f32;
    // SAFETY: `ys`/`xs` are non-empty ranges of in-bounds taps (`ky_range`/`kx_range`), so
    // every `(iy, ix)` is a pixel inside image `img`, whose `c` channels lie inside `x` (length
    // checked by run_rows); `c0 + LANES <= c`, and `out` holds `c` channels.
    unsafe {
        let at = |ky: usize, kx: usize| {
            x.as_ptr()
                .add(((img * win.h + win.iy(oy, ky)) * win.w + win.ix(ox, kx)) * c + c0)
        };
        let mut acc = S::load(at(ys.start, xs.start));
        for ky in ys.clone() {
            for kx in xs.clone() {
                if (ky, kx) == (ys.start, xs.start) {
                    continue;
                }
                let v = S::load(at(ky, kx));
                acc = match p.kind {
                    PoolKind::Max => S::max(v, acc),
                    PoolKind::Avg => S::add(acc, v),
                };
            }
        }
        if p.kind == PoolKind::Avg {
            acc = S::div(acc, S::splat(count));
        }
        S::store(out.as_mut_ptr().add(c0), acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::tests::{reference, Rng};
    use lathe_ir::ops::{DataFormat, Padding};
    use lathe_ir::DType;

    fn check(rng: &mut Rng, kind: PoolKind, x_shape: [usize; 4], attrs: &PoolAttrs) {
        let mut x = rng.values(x_shape.iter().product());
        if !x.is_empty() && kind == PoolKind::Max {
            // Equal values and NaN: max must pick exactly what the interpreter picks.
            x[0] = f32::NAN;
            let (mid, last) = (x.len() / 2, x.len() - 1);
            x[last] = x[mid];
        }
        let what = format!("{kind:?} x {x_shape:?} {attrs:?}");
        let op = match kind {
            PoolKind::Max => Op::MaxPool(attrs.clone()),
            PoolKind::Avg => Op::AvgPool(attrs.clone()),
        };
        let (shape, want) = reference(&op, &[(&x_shape, &x)]);
        let mut p =
            Pool2d::new(kind, attrs, &TensorType::known(DType::F32, &x_shape)).expect(&what);
        assert_eq!(
            (p.rows(), p.cols()),
            (shape[0] * shape[1] * shape[2], shape[3]),
            "{what}"
        );
        let rows = p.rows();
        let (a, b) = (rng.int(0, rows), rng.int(0, rows));
        let sub = a.min(b)..a.max(b);
        for isa in Isa::all_supported() {
            p.isa = isa;
            let mut out = vec![0.5; rows * p.cols()];
            p.run_rows(&x, 0..rows, &mut out);
            // Same operations in the same order: bit-identical (NaN where the interpreter has it).
            let same =
                |g: &[f32], w: &[f32]| g.iter().zip(w).all(|(g, w)| g.to_bits() == w.to_bits());
            assert!(same(&out, &want), "{what} {isa:?}: {out:?} want {want:?}");
            let mut out = vec![0.5; sub.len() * p.cols()];
            p.run_rows(&x, sub.clone(), &mut out);
            assert!(
                same(&out, &want[sub.start * p.cols()..sub.end * p.cols()]),
                "{what} {isa:?} rows {sub:?}"
            );
        }
    }

    #[test]
    fn matches_interpreter_on_random_pools() {
        let mut rng = Rng(0x9001);
        for i in 0..150 {
            let kind = if i % 2 == 0 {
                PoolKind::Max
            } else {
                PoolKind::Avg
            };
            let k = [rng.int(1, 4), rng.int(1, 4)];
            let strides = [rng.int(1, 3), rng.int(1, 3)];
            let padding = rng.padding(k);
            let c = if rng.int(0, 1) == 0 {
                rng.int(1, 40)
            } else {
                16 * rng.int(1, 3)
            };
            let x_shape = [
                rng.int(1, 2),
                rng.int(k[0], k[0] + 10),
                rng.int(k[1], k[1] + 10),
                c,
            ];
            let attrs = PoolAttrs {
                ksize: k,
                strides,
                padding,
                format: DataFormat::Nhwc,
            };
            check(&mut rng, kind, x_shape, &attrs);
        }
        // ResNet's stem pool and a SAME 2x2 stride 2 on an odd size.
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let attrs = PoolAttrs {
                ksize: [3, 3],
                strides: [2, 2],
                padding: Padding::Same,
                format: DataFormat::Nhwc,
            };
            check(&mut rng, kind, [1, 16, 16, 64], &attrs);
            let attrs = PoolAttrs {
                ksize: [2, 2],
                strides: [2, 2],
                padding: Padding::Same,
                format: DataFormat::Nhwc,
            };
            check(&mut rng, kind, [1, 7, 7, 19], &attrs);
        }
    }

    #[test]
    fn rejects_nchw_and_integers() {
        let attrs = PoolAttrs {
            ksize: [2, 2],
            strides: [2, 2],
            padding: Padding::Valid,
            format: DataFormat::Nchw,
        };
        let e = Pool2d::new(
            PoolKind::Max,
            &attrs,
            &TensorType::known(DType::F32, &[1, 3, 4, 4]),
        )
        .unwrap_err();
        assert!(e.contains("needs NHWC"), "{e}");
        let attrs = PoolAttrs {
            format: DataFormat::Nhwc,
            ..attrs
        };
        let e = Pool2d::new(
            PoolKind::Max,
            &attrs,
            &TensorType::known(DType::I32, &[1, 4, 4, 3]),
        )
        .unwrap_err();
        assert!(e.contains("needs f32"), "{e}");
    }
}
