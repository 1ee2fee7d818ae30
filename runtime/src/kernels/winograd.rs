//! `conv2d` with a 3×3 filter, stride 1, no dilation and one group, by Winograd's minimal
//! filtering F(2×2, 3×3) (Lavin and Gray, 2015): 16 multiplies per 2×2 output tile and
//! channel pair where im2col + GEMM does 36, 2.25× fewer, for a few additions and some
//! rounding (not bit-exact with a direct convolution: about 1e-6 relative).
//!
//! # Algorithm
//!
//! The output is cut into 2×2 tiles. Tile `(ty, tx)` of an image reads the 4×4 input patch
//! `d` whose corner is input pixel `(2·ty − pt, 2·tx − pl)` (zeros where it leaves the input:
//! padding, or past a bottom/right edge whose tile is cut by the output's edge). Per input
//! channel `c` and output channel `o`, with `g` the 3×3 filter of `(c, o)`:
//!
//! ```text
//! Y[o] = Aᵀ ( Σ_c  (G g Gᵀ) ⊙ (Bᵀ d[c] B) ) A
//!
//!      ⎡1  0 −1  0⎤        ⎡1    0    0⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢½    ½    ½⎥    Aᵀ = ⎡1  1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢½   −½    ½⎥         ⎣0  1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣0    0    1⎦
//! ```
//!
//! At each of the 16 positions `(i, j)` of the 4×4 transforms, the sum over `c` is a matrix
//! product: `M_ij = V_ij · U_ij`, with `V_ij[t, c] = (Bᵀ d B)_ij` of tile `t` and input channel
//! `c` (tiles × in) and `U_ij[c, o] = (G g Gᵀ)_ij` (in × out).
//!
//! # Layout
//!
//! * [`Winograd3x3::new`] transforms the HWIO filter into the 16 `U_ij` and packs each
//!   ([`PackedB`]); only those are kept, 16/9 of the filter's size.
//! * Per batch of tiles, the caller's scratch holds the 16 `V_ij` (row-major, `tiles × in`)
//!   then the 16 `M_ij` (`tiles × out`); a batch is sized so the scratch is about L2
//!   ([`SCRATCH_FLOATS`]). A batch is: the input transform, 16 single-threaded
//!   [`gemm_packed`] calls, the output transform.
//! * Both transforms read and write whole pixels (NHWC: channels contiguous), so they are
//!   vectorized over channels with the shared SIMD layer ([`super::simd`]), the last partial
//!   vector masked.
//!
//! # Rows
//!
//! The output is [`super::conv::Conv2d`]'s `[N·OH·OW, out]` matrix, and
//! [`Winograd3x3::run_rows`] takes any range of its rows: it computes every tile with a pixel
//! in the range and stores only those pixels. Ranges that start and end on a pair of output
//! rows ([`Winograd3x3::row_align`]) compute no tile twice.

use super::conv::{check_run_rows, f32_values, nhwc_f32};
use super::gemm::{MatMut, MatRef};
use super::packed::{gemm_packed, PackedB};
use super::simd::{self, load_first, store_first, Isa, Simd};
use lathe_ir::ops::conv::WindowGeometry;
use lathe_ir::ops::{ConvAttrs, Op};
use lathe_ir::{Tensor, TensorType};
use std::ops::Range;

/// Floats of scratch per batch of tiles (transformed input and products): 1 MiB, the L2 of
/// the Zen 4 development machine. `benches/conv.rs` (`winograd`) sweeps the batch size.
const SCRATCH_FLOATS: usize = 1 << 18;

/// The filter transform's `G` (`U = G g Gᵀ`).
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// Whether a `conv2d` with these attributes, input type and filter shape should run
/// Winograd rather than im2col + GEMM: one this kernel takes (3×3, stride 1, no dilation,
/// one group, f32 NHWC with a known shape) with at least [`MIN_IN_CHANNELS`] input channels,
/// and either at least [`MIN_TILES`] output tiles or a transformed filter of at most
/// [`SMALL_FILTER_FLOATS`].
///
/// Measured single-threaded against [`super::conv::Conv2d`] (`benches/conv.rs`, `winograd`,
/// Zen 4): 1.7 to 2.3× faster on ResNet-50's 56×56×64, 28×28×128 and 14×14×256 stages
/// (784, 196 and 49 tiles) and on DenseNet's 128→32 at 56 to 14; 1.1 to 1.4× on 7×7 128→32
/// (16 tiles, 256 KiB filter) and 11×11 32→64; level to 1.3× on 7×7×512 (16 tiles that
/// stream a 16 MiB transformed filter, and 7 MiB more weights resident per convolution:
/// ResNet-50's peak memory would pass 1.5× its weights); 1.3× slower with one input channel,
/// level with 4, faster from 8.
pub fn pays_off(attrs: &ConvAttrs, x: &TensorType, filter_shape: &[usize]) -> bool {
    let Ok(nhwc) = nhwc_f32("conv2d", attrs.format, x) else {
        return false;
    };
    let Ok(win) = WindowGeometry::new(&nhwc, [3, 3], [1, 1], [1, 1], &attrs.padding) else {
        return false;
    };
    let takes = filter_shape.len() == 4
        && filter_shape[..3] == [3, 3, nhwc[3]]
        && attrs.strides == [1, 1]
        && attrs.dilations == [1, 1];
    let tiles = win.n * win.oh.div_ceil(2) * win.ow.div_ceil(2);
    let transformed = 16 * nhwc[3] * filter_shape.get(3).copied().unwrap_or(0);
    takes
        && nhwc[3] >= MIN_IN_CHANNELS
        && (tiles >= MIN_TILES || transformed <= SMALL_FILTER_FLOATS)
}

/// Fewest input channels for which Winograd is chosen (see [`pays_off`]).
const MIN_IN_CHANNELS: usize = 8;
/// Fewest 2×2 output tiles for which Winograd is chosen with a large filter.
const MIN_TILES: usize = 32;
/// A transformed filter that stays in L2 (1 MiB) across calls: Winograd whatever the tiles.
const SMALL_FILTER_FLOATS: usize = 1 << 18;

/// A 2×2 output tile: image, tile row, tile column.
#[derive(Clone, Copy, Debug)]
struct TilePos {
    img: usize,
    ty: usize,
    tx: usize,
}

/// A 3×3, stride-1 `conv2d` (NHWC input, HWIO constant filter) by Winograd F(2×2, 3×3), ready
/// to run on ranges of output rows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Winograd3x3 {
    win: WindowGeometry,
    /// Output channels.
    co: usize,
    /// Tiles along an output row (`⌈OW/2⌉`) and column (`⌈OH/2⌉`).
    tiles_x: usize,
    tiles_y: usize,
    /// Row stride of the `V_ij` in scratch: the input channels, plus a cache line when their
    /// rows would share L1 sets (which makes [`gemm_packed`] copy `A`).
    ldv: usize,
    /// Tiles per batch.
    batch: usize,
    /// The 16 `U_ij` (`in × out`), packed, `4·i + j` in order.
    filter: Vec<PackedB>,
    isa: Isa,
}

impl Winograd3x3 {
    /// Prepares `conv2d` of an input of type `x` with the constant `filter` (`[3, 3, in, out]`).
    /// Errors for what the kernel does not do (NCHW, non-f32, unknown shapes, other filter
    /// sizes, strides, dilations or groups) and for operands the op itself rejects.
    pub fn new(attrs: &ConvAttrs, x: &TensorType, filter: &Tensor) -> Result<Self, String> {
        Self::with_isa(attrs, x, filter, Isa::detect())
    }

    /// [`Self::new`] with the transforms and GEMMs compiled for `isa` (tests, benchmarks).
    ///
    /// Panics when this CPU does not run `isa`.
    pub fn with_isa(
        attrs: &ConvAttrs,
        x: &TensorType,
        filter: &Tensor,
        isa: Isa,
    ) -> Result<Self, String> {
        let nhwc = nhwc_f32("conv2d", attrs.format, x)?;
        Op::Conv2D(attrs.clone()).infer(&[x.clone(), filter.ty()], &[None, Some(filter)])?;
        let fs = filter.shape();
        if fs[..2] != [3, 3]
            || attrs.strides != [1, 1]
            || attrs.dilations != [1, 1]
            || fs[2] != nhwc[3]
        {
            return Err(format!(
                "Winograd conv2d needs a 3x3 filter, stride 1, no dilation and one group, \
                 got filter {fs:?}, strides {:?}, dilations {:?} on {x}",
                attrs.strides, attrs.dilations
            ));
        }
        let win = WindowGeometry::new(&nhwc, [3, 3], [1, 1], [1, 1], &attrs.padding)?;
        let (ci, co) = (fs[2], fs[3]);
        let values = f32_values("conv2d", filter)?;
        // U_ij = Σ_ab G[i][a]·G[j][b]·g_ab, where g_ab (tap (a, b) of the HWIO filter) is a
        // contiguous in × out matrix. One U_ij at a time: the filter is never held three times.
        let mut u = vec![0.0f32; ci * co];
        let filter = (0..16)
            .map(|ij| {
                u.fill(0.0);
                for (a, tap) in values.chunks_exact(ci * co).enumerate() {
                    let w = G[ij / 4][a / 3] * G[ij % 4][a % 3];
                    if w != 0.0 {
                        u.iter_mut().zip(tap).for_each(|(u, &g)| *u += w * g);
                    }
                }
                PackedB::with_isa(MatRef::row_major(&u, ci, co), isa)
            })
            .collect();
        let (tiles_x, tiles_y) = (win.ow.div_ceil(2), win.oh.div_ceil(2));
        let ldv = if ci % 256 == 0 { ci + 16 } else { ci };
        let all = win.n * tiles_x * tiles_y;
        let batch = (SCRATCH_FLOATS / (16 * (ldv + co)).max(1)).clamp(12, 512);
        Ok(Winograd3x3 {
            win,
            co,
            tiles_x,
            tiles_y,
            ldv,
            batch: batch.min(all).max(1),
            filter,
            isa,
        })
    }

    /// The same convolution with batches of `tiles` tiles (for tuning and benchmarks).
    pub fn with_batch_tiles(mut self, tiles: usize) -> Self {
        self.batch = tiles.max(1);
        self
    }

    /// Tiles per batch (one input transform, 16 GEMMs, one output transform).
    pub fn batch_tiles(&self) -> usize {
        self.batch
    }

    /// Output rows: `N * OH * OW`.
    pub fn rows(&self) -> usize {
        self.win.rows()
    }

    /// Output columns: the output channels.
    pub fn cols(&self) -> usize {
        self.co
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.win.c
    }

    /// Elements of the input `x` that [`Self::run_rows`] expects.
    pub fn input_len(&self) -> usize {
        self.win.input_len()
    }

    /// Rows (two output rows of an image: one row of tiles) that a range should start and end
    /// on, so that no tile is computed for two ranges.
    pub fn row_align(&self) -> usize {
        (2 * self.win.ow).max(1)
    }

    /// Rows per call that fill about one batch: whole rows of tiles, a multiple of
    /// [`Self::row_align`].
    pub fn tile_rows(&self) -> usize {
        (self.batch / self.tiles_x.max(1)).max(1) * self.row_align()
    }

    /// f32 elements of scratch that [`Self::run_rows`] needs for a range of `rows` rows.
    pub fn scratch_len(&self, rows: usize) -> usize {
        if rows == 0 {
            0
        } else {
            16 * self.batch * (self.ldv + self.co)
        }
    }

    /// Computes output rows `rows` into `out` (`rows.len() * cols()` elements, row-major) on
    /// the calling thread. `x` is the whole NHWC input; `scratch` holds at least
    /// [`Self::scratch_len`]`(rows.len())` elements (its contents are overwritten).
    ///
    /// Panics, with a message, on a range past [`Self::rows`] or slices of the wrong length.
    pub fn run_rows(&self, x: &[f32], rows: Range<usize>, out: &mut [f32], scratch: &mut [f32]) {
        check_run_rows(
            [
                self.input_len(),
                self.rows(),
                self.co,
                self.scratch_len(rows.len()),
            ],
            x,
            &rows,
            out.len(),
            scratch,
        );
        if rows.is_empty() {
            return;
        }
        let (oh, ow) = (self.win.oh, self.win.ow);
        // Rows of tiles, numbered across images (`img * tiles_y + ty`), of the first and last
        // pixel.
        let tile_row = |p: usize| {
            let line = p / ow;
            line / oh * self.tiles_y + line % oh / 2
        };
        let mut batch = Vec::with_capacity(self.batch);
        for tr in tile_row(rows.start)..=tile_row(rows.end - 1) {
            let (img, ty) = (tr / self.tiles_y, tr % self.tiles_y);
            for tx in 0..self.tiles_x {
                let t = TilePos { img, ty, tx };
                if self.pixels(t, &rows).iter().flatten().any(Option::is_some) {
                    batch.push(t);
                    if batch.len() == self.batch {
                        self.run_batch(x, &batch, &rows, out, scratch);
                        batch.clear();
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.run_batch(x, &batch, &rows, out, scratch);
        }
    }

    /// Where tile `t`'s pixels go in the output slice of `rows`: element offsets, `None` for
    /// a pixel past the output's edge or outside `rows`.
    fn pixels(&self, t: TilePos, rows: &Range<usize>) -> [[Option<usize>; 2]; 2] {
        let (oh, ow) = (self.win.oh, self.win.ow);
        let at = |dy: usize, dx: usize| {
            let (oy, ox) = (2 * t.ty + dy, 2 * t.tx + dx);
            let p = (t.img * oh + oy) * ow + ox;
            (oy < oh && ox < ow && rows.contains(&p)).then(|| (p - rows.start) * self.co)
        };
        [[at(0, 0), at(0, 1)], [at(1, 0), at(1, 1)]]
    }

    /// One batch of tiles: transform in, 16 products, transform out.
    fn run_batch(
        &self,
        x: &[f32],
        batch: &[TilePos],
        rows: &Range<usize>,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let (ci, co, ldv, t) = (self.win.c, self.co, self.ldv, batch.len());
        let (v, m) = scratch[..16 * self.batch * (ldv + co)].split_at_mut(16 * self.batch * ldv);
        input_transform(self.isa, self, x, batch, v);
        for (ij, u) in self.filter.iter().enumerate() {
            let a = MatRef {
                data: &v[ij * self.batch * ldv..],
                rows: t,
                cols: ci,
                strides: (ldv, 1),
            };
            let c = MatMut::new(&mut m[ij * self.batch * co..], t, co, (co, 1));
            gemm_packed(a, u, c, false);
        }
        output_transform(self.isa, self, batch, m, rows, out);
    }
}

simd::multiversion!(fn input_transform(k: &Winograd3x3, x: &[f32], batch: &[TilePos], v: &mut [f32]) => input_transform_generic);

/// Writes `V_ij` row `t` (`Bᵀ d B` of tile `batch[t]`) for every tile of the batch.
#[inline(always)]
fn input_transform_generic<S: Simd>(k: &Winograd3x3, x: &[f32], batch: &[TilePos], v: &mut [f32]) {
    let win = &k.win;
    let (c, ld) = (win.c, k.ldv);
    let stride = k.batch * ld;
    assert!(batch.len() <= k.batch && v.len() >= 16 * stride && x.len() == win.input_len());
    for (t, p) in batch.iter().enumerate() {
        // Each patch pixel's offset in `x`, or `None` for padding.
        let mut at = [[None; 4]; 4];
        for (i, at) in at.iter_mut().enumerate() {
            let Some(iy) = (2 * p.ty + i).checked_sub(win.pt).filter(|&y| y < win.h) else {
                continue;
            };
            for (j, at) in at.iter_mut().enumerate() {
                if let Some(ix) = (2 * p.tx + j).checked_sub(win.pl).filter(|&x| x < win.w) {
                    *at = Some(((p.img * win.h + iy) * win.w + ix) * c);
                }
            }
        }
        let mut c0 = 0;
        while c0 < c {
            let n = S::LANES.min(c - c0);
            // SAFETY: every `Some` offset starts a pixel of `c` channels inside `x` (its row
            // and column are in the input, `x` has the input's length), and `c0 + n <= c`.
            // Stores go to `ij * stride + t * ld + c0 .. + n` with `ij < 16`, `t < k.batch`
            // and `c0 + n <= c <= ld`: inside `v` (asserted `16 * stride` long).
            unsafe {
                let mut d = [[S::zero(); 4]; 4];
                for (d, at) in d.iter_mut().zip(&at) {
                    for (d, at) in d.iter_mut().zip(at) {
                        if let Some(o) = at {
                            *d = load_first::<S>(x.as_ptr().add(o + c0), n);
                        }
                    }
                }
                // Bᵀ d, a column at a time.
                let mut b = [[S::zero(); 4]; 4];
                for j in 0..4 {
                    b[0][j] = S::sub(d[0][j], d[2][j]);
                    b[1][j] = S::add(d[1][j], d[2][j]);
                    b[2][j] = S::sub(d[2][j], d[1][j]);
                    b[3][j] = S::sub(d[1][j], d[3][j]);
                }
                // (Bᵀ d) B, a row at a time.
                let dst = v.as_mut_ptr().add(t * ld + c0);
                for (i, b) in b.iter().enumerate() {
                    let row = [
                        S::sub(b[0], b[2]),
                        S::add(b[1], b[2]),
                        S::sub(b[2], b[1]),
                        S::sub(b[1], b[3]),
                    ];
                    for (j, r) in row.into_iter().enumerate() {
                        store_first::<S>(dst.add((4 * i + j) * stride), r, n);
                    }
                }
            }
            c0 += n;
        }
    }
}

simd::multiversion!(fn output_transform(k: &Winograd3x3, batch: &[TilePos], m: &[f32], rows: &Range<usize>, out: &mut [f32]) => output_transform_generic);

/// Writes `Aᵀ M A` of every tile of the batch (`M` from row `t` of the `M_ij`): the tile's
/// pixels that are in the output and in `rows`.
#[inline(always)]
fn output_transform_generic<S: Simd>(
    k: &Winograd3x3,
    batch: &[TilePos],
    m: &[f32],
    rows: &Range<usize>,
    out: &mut [f32],
) {
    let co = k.co;
    let stride = k.batch * co;
    assert!(batch.len() <= k.batch && m.len() >= 16 * stride && out.len() == rows.len() * co);
    for (t, &p) in batch.iter().enumerate() {
        let dst = k.pixels(p, rows);
        let mut c0 = 0;
        while c0 < co {
            let n = S::LANES.min(co - c0);
            // SAFETY: loads read `ij * stride + t * co + c0 .. + n` with `ij < 16`,
            // `t < k.batch`, `c0 + n <= co`: inside `m` (asserted). Each `Some` offset is a
            // pixel of `rows` (`pixels`), `co` elements inside `out`, and `c0 + n <= co`.
            unsafe {
                let src = m.as_ptr().add(t * co + c0);
                // Aᵀ M, a column at a time.
                let mut a = [[S::zero(); 4]; 2];
                for (j, src) in (0..4).map(|j| src.add(j * stride)).enumerate() {
                    let m0 = load_first::<S>(src, n);
                    let m1 = load_first::<S>(src.add(4 * stride), n);
                    let m2 = load_first::<S>(src.add(8 * stride), n);
                    let m3 = load_first::<S>(src.add(12 * stride), n);
                    [a[0][j], a[1][j]] = [S::add(S::add(m0, m1), m2), S::sub(S::sub(m1, m2), m3)];
                }
                // (Aᵀ M) A, a row at a time.
                for (a, dst) in a.iter().zip(&dst) {
                    let y = [
                        S::add(S::add(a[0], a[1]), a[2]),
                        S::sub(S::sub(a[1], a[2]), a[3]),
                    ];
                    for (y, o) in y.into_iter().zip(dst) {
                        if let Some(o) = o {
                            store_first::<S>(out.as_mut_ptr().add(o + c0), y, n);
                        }
                    }
                }
            }
            c0 += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::tests::{assert_close, reference, Rng};
    use lathe_ir::ops::{DataFormat, Padding};
    use lathe_ir::DType;

    /// The worst `|got - want| / max(1, |want|)`.
    fn worst(got: &[f32], want: &[f32]) -> f32 {
        got.iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
            .fold(0.0, f32::max)
    }

    /// Runs `k` on `rows` in calls of `chunk` rows (as the backend splits work).
    fn run_in_chunks(k: &Winograd3x3, x: &[f32], rows: Range<usize>, chunk: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; rows.len() * k.cols()];
        let mut scratch = vec![f32::NAN; k.scratch_len(chunk)];
        let mut r = rows.start;
        while r < rows.end {
            let e = rows.end.min(r + chunk);
            let o = &mut out[(r - rows.start) * k.cols()..(e - rows.start) * k.cols()];
            k.run_rows(x, r..e, o, &mut scratch);
            r = e;
        }
        out
    }

    /// Checks every instruction set on the whole output and on a random sub-range in random
    /// chunks, against the interpreter; returns the worst relative error.
    fn check(rng: &mut Rng, x_shape: [usize; 4], co: usize, padding: Padding, batch: usize) -> f32 {
        let f_shape = [3, 3, x_shape[3], co];
        let x = rng.values(x_shape.iter().product());
        let f = rng.values(f_shape.iter().product());
        let attrs = ConvAttrs {
            strides: [1, 1],
            dilations: [1, 1],
            padding,
            format: DataFormat::Nhwc,
        };
        let what = format!("winograd x {x_shape:?} f {f_shape:?} {:?}", attrs.padding);
        let (shape, want) = reference(
            &Op::Conv2D(attrs.clone()),
            &[(&x_shape, &x), (&f_shape, &f)],
        );
        let ft = Tensor::from_vec(&f_shape, f);
        let xt = TensorType::known(DType::F32, &x_shape);
        // Direct sums of 9·in products of values in [-1, 1) are `√(9·in)` large; Winograd's
        // transforms add a few roundings of values up to 4× that.
        let tol = 1e-5 * ((9 * x_shape[3]) as f32).sqrt().max(1.0) * 4.0;
        let mut err = 0.0f32;
        for isa in Isa::all_supported() {
            let mut k = Winograd3x3::with_isa(&attrs, &xt, &ft, isa).expect(&what);
            if batch > 0 {
                k = k.with_batch_tiles(batch);
            }
            let what = format!("{what} {isa:?} batch {}", k.batch_tiles());
            assert_eq!(
                (k.rows(), k.cols()),
                (shape[0] * shape[1] * shape[2], shape[3]),
                "{what}"
            );
            let rows = k.rows();
            let all = run_in_chunks(&k, &x, 0..rows, rows.max(1));
            assert_close(&all, &want, tol, &what);
            err = err.max(worst(&all, &want));
            let aligned = run_in_chunks(&k, &x, 0..rows, k.tile_rows());
            assert_close(&aligned, &want, tol, &format!("{what} in tiles"));
            let (a, b) = (rng.int(0, rows), rng.int(0, rows));
            let sub = a.min(b)..a.max(b);
            let got = run_in_chunks(&k, &x, sub.clone(), rng.int(1, 40));
            let want = &want[sub.start * k.cols()..sub.end * k.cols()];
            assert_close(&got, want, tol, &format!("{what} rows {sub:?}"));
        }
        err
    }

    #[test]
    fn matches_interpreter_on_random_convolutions() {
        let mut rng = Rng(0x3a9d_11f0);
        let mut err = 0.0f32;
        for i in 0..80 {
            let padding = rng.padding([3, 3]);
            let x_shape = [
                rng.int(1, 3),
                rng.int(3, 13),
                rng.int(3, 13),
                rng.int(1, 40),
            ];
            let co = if i % 4 == 0 {
                16 * rng.int(1, 3)
            } else {
                rng.int(1, 40)
            };
            // Small batches too, so tile rows split across batches.
            let batch = if i % 3 == 0 { rng.int(1, 7) } else { 0 };
            err = err.max(check(&mut rng, x_shape, co, padding, batch));
        }
        eprintln!("worst relative error: {err:e}");
    }

    #[test]
    fn model_shaped_convolutions() {
        let mut rng = Rng(11);
        let mut err = 0.0f32;
        // ResNet-50's stage 3 and 5 (SAME), odd sizes, a wide channel count padded in scratch.
        for (x_shape, co, padding) in [
            ([1, 28, 28, 128], 128, Padding::Same),
            ([1, 7, 7, 512], 512, Padding::Same),
            ([2, 15, 9, 33], 70, Padding::Same),
            ([1, 12, 11, 256], 24, Padding::Valid),
            ([1, 10, 10, 20], 36, Padding::Explicit([[2, 0], [1, 2]])),
        ] {
            err = err.max(check(&mut rng, x_shape, co, padding, 0));
        }
        eprintln!("worst relative error: {err:e}");
    }

    #[test]
    fn pays_off_where_measured() {
        let same = ConvAttrs {
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Same,
            format: DataFormat::Nhwc,
        };
        let on = |hw: usize, ci: usize, co: usize| {
            let x = TensorType::known(DType::F32, &[1, hw, hw, ci]);
            pays_off(&same, &x, &[3, 3, ci, co])
        };
        // ResNet-50's stages 2 to 4, DenseNet's 7×7 (small filter); not ResNet-50's stage 5
        // (16 tiles, large filter) nor one input channel.
        assert!(on(56, 64, 64) && on(28, 128, 128) && on(14, 256, 256) && on(7, 128, 32));
        assert!(!on(7, 512, 512) && !on(28, 1, 32));
        let strided = ConvAttrs {
            strides: [2, 2],
            ..same.clone()
        };
        let x = TensorType::known(DType::F32, &[1, 56, 56, 64]);
        assert!(!pays_off(&strided, &x, &[3, 3, 64, 64]));
        assert!(!pays_off(&same, &x, &[3, 3, 32, 64]), "two groups");
        assert!(!pays_off(&same, &x, &[5, 5, 64, 64]));
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        let attrs = |s: usize, d: usize| ConvAttrs {
            strides: [s, s],
            dilations: [d, d],
            padding: Padding::Same,
            format: DataFormat::Nhwc,
        };
        let x = TensorType::known(DType::F32, &[1, 8, 8, 4]);
        let f3 = Tensor::from_vec(&[3, 3, 4, 8], vec![0.0f32; 288]);
        for (a, f) in [
            (attrs(2, 1), &f3),
            (attrs(1, 2), &f3),
            (
                attrs(1, 1),
                &Tensor::from_vec(&[1, 1, 4, 8], vec![0.0f32; 32]),
            ),
            (
                attrs(1, 1),
                &Tensor::from_vec(&[3, 3, 2, 8], vec![0.0f32; 144]),
            ),
        ] {
            let e = Winograd3x3::new(&a, &x, f).unwrap_err();
            assert!(e.contains("needs a 3x3 filter, stride 1"), "{e}");
        }
    }
}
