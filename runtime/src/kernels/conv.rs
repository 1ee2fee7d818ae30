//! `conv2d` over NHWC inputs and constant HWIO filters, computed a range of output rows at a
//! time.
//!
//! # Layout
//!
//! The output is the `[rows, cols]` matrix `[N*OH*OW, out_channels]` (NHWC, row-major). The
//! filter `[kh, kw, in, out]` read row-major *is* the `[kh*kw*in, out]` matrix of im2col, so
//! it is packed once in [`Conv2d::new`] ([`PackedB`], one per group) and used as the GEMM's
//! `B` on every call.
//!
//! # Tiling
//!
//! * A 1×1, stride-1, unpadded convolution is a plain GEMM on the input: `A` is `x` itself
//!   (row `r` of the output reads row `r` of `x`), no copy and no scratch.
//! * A shallow window (`kh*kw*in` at most [`super::direct_conv::MAX_DEPTH`], one group: first
//!   layers on images) runs [`DirectConv`], from zero-padded copies of the input rows.
//! * Everything else builds, per tile of [`Conv2d::tile_rows`] output rows, the im2col matrix in
//!   the caller's scratch (row = the `kh*kw*in` window values in the filter's HWI order, zeros
//!   for padding), then runs one single-threaded [`gemm_packed`] per tile and group. Tiles are
//!   128 to 512 rows, about 1 MiB of im2col (half the L2); `benches/conv.rs` measured the
//!   choice (with the `gemm` crate, which repacked the filter per call).
//!
//! Grouped convolutions (input channels a multiple of the filter's, as TensorFlow allows) run
//! one GEMM per group on column slices of the filter and of the output.
//!
//! The window geometry (output size, SAME padding, dilation) is the IR's own
//! [`WindowGeometry`], so the kernels and the reference interpreter cannot disagree.

use super::direct_conv::DirectConv;
use super::gemm::{MatMut, MatRef};
use super::packed::{gemm_packed_then, PackedB};
use lathe_ir::ops::conv::WindowGeometry;
use lathe_ir::ops::{ConvAttrs, DataFormat, Op};
use lathe_ir::{DType, Tensor, TensorType};
use std::borrow::Cow;
use std::ops::Range;

/// Checks what every kernel here needs of an input type: f32, NHWC, concrete shape.
pub(crate) fn nhwc_f32(op: &str, format: DataFormat, x: &TensorType) -> Result<[usize; 4], String> {
    if format != DataFormat::Nhwc {
        return Err(format!(
            "{op} kernel needs NHWC data, got {} (transpose it first)",
            format.name()
        ));
    }
    if x.dtype != DType::F32 {
        return Err(format!("{op} kernel needs f32 data, got {x}"));
    }
    match x.shape.as_known() {
        Some(d) if d.len() == 4 => Ok([d[0], d[1], d[2], d[3]]),
        _ => Err(format!(
            "{op} kernel needs a concrete 4-D input shape, got {x}"
        )),
    }
}

/// A filter's values in row-major order, if it is an f32 tensor: the tensor's own memory when
/// it is laid out so (no copy of a weight while it is packed), else a copy.
pub(crate) fn f32_values<'t>(op: &str, t: &'t Tensor) -> Result<Cow<'t, [f32]>, String> {
    let a = t
        .as_array::<f32>()
        .ok_or_else(|| format!("{op} kernel needs an f32 filter, got {}", t.ty()))?;
    Ok(match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    })
}

/// Output rows per im2col tile: about 256K floats (1 MiB, half of L2) of im2col, 128 to
/// 512 rows. Measured (`benches/conv.rs`, ResNet-50 shapes) with the `gemm` crate: tiles
/// under 128 rows lost up to 2x to its per-call cost (it packed the filter on every call);
/// 128 to 512 were level. [`gemm_packed`] has no such cost; the bounds were not re-measured.
/// The argument checks of a convolution kernel's `run_rows`: `x` is the whole input
/// (`input_len` elements), `rows` lies in `0..total_rows`, `out` holds `rows.len() * cols`
/// elements and `scratch` at least `scratch_len`. Panics with a message naming what is wrong.
pub(crate) fn check_run_rows(
    [input_len, total_rows, cols, scratch_len]: [usize; 4],
    x: &[f32],
    rows: &Range<usize>,
    out_len: usize,
    scratch: &[f32],
) {
    assert!(
        x.len() == input_len,
        "conv2d: input has {} elements, expected {input_len}",
        x.len()
    );
    assert!(
        rows.start <= rows.end && rows.end <= total_rows,
        "conv2d: rows {rows:?} out of 0..{total_rows}"
    );
    assert!(
        out_len == rows.len() * cols,
        "conv2d: output slice has {out_len} elements, expected {}",
        rows.len() * cols
    );
    assert!(
        scratch.len() >= scratch_len,
        "conv2d: scratch has {} elements, needs {scratch_len}",
        scratch.len()
    );
}

/// Output rows per call of the direct kernel: its fused epilogue then runs on a tile still in
/// L1/L2.
const DIRECT_TILE_ROWS: usize = 256;

fn tile_rows(depth: usize) -> usize {
    ((1 << 18) / depth.max(1)).clamp(128, 512)
}

/// A `conv2d` (NHWC input, HWIO constant filter) ready to run on ranges of output rows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Conv2d {
    win: WindowGeometry,
    groups: usize,
    /// Input channels per group.
    ci: usize,
    /// Output channels (all groups).
    co: usize,
    /// `kh * kw * ci`: the im2col row length and the filter matrix's row count.
    depth: usize,
    /// Per group, its `[depth, co / groups]` slice of the filter matrix, packed.
    filter: Vec<PackedB>,
    /// 1×1, stride 1, no padding: `x` is already the im2col matrix.
    pointwise: bool,
    tile: usize,
    /// A shallow window computed without im2col ([`DirectConv`]); `filter` is then empty (the
    /// direct kernel holds the weights).
    direct: Option<DirectConv>,
}

impl Conv2d {
    /// Prepares `conv2d` of an input of type `x` with the constant `filter` (`[kh, kw, in, out]`).
    /// Errors for what the kernel does not do (NCHW, non-f32, unknown shapes) and for operands
    /// the op itself rejects (with the interpreter's message).
    pub fn new(attrs: &ConvAttrs, x: &TensorType, filter: &Tensor) -> Result<Conv2d, String> {
        let nhwc = nhwc_f32("conv2d", attrs.format, x)?;
        Op::Conv2D(attrs.clone()).infer(&[x.clone(), filter.ty()], &[None, Some(filter)])?;
        let fs = filter.shape();
        let (kh, kw, ci, co) = (fs[0], fs[1], fs[2], fs[3]);
        let win = WindowGeometry::new(
            &nhwc,
            [kh, kw],
            attrs.strides,
            attrs.dilations,
            &attrs.padding,
        )?;
        let depth = kh * kw * ci;
        let pointwise =
            kh == 1 && kw == 1 && attrs.strides == [1, 1] && (win.oh, win.ow) == (win.h, win.w);
        let groups = nhwc[3] / ci;
        let values = f32_values("conv2d", filter)?;
        if !pointwise && DirectConv::applies(&win, groups) {
            return Ok(Conv2d {
                direct: Some(DirectConv::new(win, &values, co)),
                win,
                groups,
                ci,
                co,
                depth,
                filter: vec![],
                pointwise,
                tile: DIRECT_TILE_ROWS,
            });
        }
        let cog = co / groups;
        let filter = (0..groups)
            .map(|g| {
                PackedB::new(MatRef {
                    data: &values[g * cog..],
                    rows: depth,
                    cols: cog,
                    strides: (co, 1),
                })
            })
            .collect();
        Ok(Conv2d {
            win,
            groups,
            ci,
            co,
            depth,
            filter,
            pointwise,
            tile: tile_rows(depth),
            direct: None,
        })
    }

    /// Output rows: `N * OH * OW`.
    /// Multiply-adds per output element (`kh · kw · in_per_group`).
    pub fn depth(&self) -> usize {
        self.depth
    }

    pub fn rows(&self) -> usize {
        self.win.rows()
    }

    /// Output columns: the output channels.
    pub fn cols(&self) -> usize {
        self.co
    }

    /// Elements of the input `x` that [`Self::run_rows`] expects.
    pub fn input_len(&self) -> usize {
        self.win.input_len()
    }

    /// Whether the window is shallow enough to run without im2col ([`DirectConv`]).
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Output rows computed per GEMM call (a range longer than this is done in tiles).
    pub fn tile_rows(&self) -> usize {
        if self.pointwise {
            usize::MAX
        } else {
            self.tile
        }
    }

    /// The same convolution with im2col tiles of `rows` output rows (for tuning and
    /// benchmarks; the default comes from the im2col row length). No effect on pointwise
    /// convolutions.
    pub fn with_tile_rows(mut self, rows: usize) -> Conv2d {
        self.tile = rows.max(1);
        self
    }

    /// f32 elements of scratch that [`Self::run_rows`] needs for a range of `rows` rows
    /// (zero for a pointwise convolution).
    pub fn scratch_len(&self, rows: usize) -> usize {
        if let Some(d) = &self.direct {
            return d.scratch_len();
        }
        if self.pointwise {
            0
        } else {
            rows.min(self.tile) * self.depth
        }
    }

    /// Computes output rows `rows` into `out` (`rows.len() * cols()` elements, row-major) on
    /// the calling thread. `x` is the whole NHWC input; `scratch` holds at least
    /// [`Self::scratch_len`]`(rows.len())` elements (its contents are overwritten).
    ///
    /// Panics, with a message, on a range past [`Self::rows`] or slices of the wrong length.
    pub fn run_rows(&self, x: &[f32], rows: Range<usize>, out: &mut [f32], scratch: &mut [f32]) {
        let (n, co) = (rows.len(), self.co);
        self.run_rows_then(
            x,
            rows,
            MatMut::new(out, n, co, (co, 1)),
            scratch,
            &mut |_| {},
        )
    }

    /// [`Self::run_rows`] into a view (`rows.len() × cols()`, dense rows), calling
    /// `after(r)` as soon as output rows `r` (a sub-range of `rows`) are final, in order,
    /// every row once: while they are still in cache, for an epilogue. The view holds no
    /// reference to its elements, so `after` may read and write rows `r` through pointers of
    /// its own.
    pub fn run_rows_then(
        &self,
        x: &[f32],
        rows: Range<usize>,
        mut out: MatMut<'_>,
        scratch: &mut [f32],
        after: &mut dyn FnMut(Range<usize>),
    ) {
        let dense = out.rows == rows.len() && out.cols == self.co && out.strides == (self.co, 1);
        assert!(
            dense,
            "conv2d: output view is not {} dense rows of {}",
            rows.len(),
            self.co
        );
        if let Some(d) = &self.direct {
            // The slice is gone before `after` runs.
            let o = out.dense_rows().expect("checked dense above");
            d.run_rows(x, rows.clone(), o, scratch);
            return after(rows);
        }
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
        if self.groups == 1 {
            return self.group_tiles(x, rows, (0, 0..self.co), out, scratch, after);
        }
        // Groups fill column stripes: a row is final after the last group.
        let cog = self.co / self.groups;
        for g in 0..self.groups {
            let o = out.cols_view(g * cog..(g + 1) * cog);
            self.group_tiles(x, rows.clone(), (g, 0..cog), o, scratch, &mut |_| {});
        }
        after(rows)
    }

    /// Whether threads can split the output's columns ([`Self::run_block`]): one group, by
    /// a GEMM (not the direct kernel).
    pub fn splits_columns(&self) -> bool {
        self.groups == 1 && self.direct.is_none()
    }

    /// Columns a block of [`Self::run_block`] starts on a multiple of (the filter's panels).
    pub fn column_align(&self) -> usize {
        self.filter.first().map_or(1, PackedB::panel_width)
    }

    /// Computes output rows `rows`, columns `cols` into `out` (a `rows.len() × cols.len()`
    /// view) on the calling thread, for threads that split the output by columns as well as
    /// rows; each builds the im2col rows of its `rows` itself. Needs
    /// [`Self::splits_columns`]; `cols.start` is a multiple of [`Self::column_align`], and
    /// `scratch` as for [`Self::run_rows`].
    ///
    /// Panics, with a message, when those do not hold or a range or view is out of bounds.
    pub fn run_block(
        &self,
        x: &[f32],
        rows: Range<usize>,
        cols: Range<usize>,
        out: MatMut<'_>,
        scratch: &mut [f32],
    ) {
        assert!(
            self.splits_columns(),
            "conv2d: a grouped or direct convolution cannot split its columns"
        );
        assert!(
            out.rows == rows.len() && out.cols == cols.len(),
            "conv2d: a {}x{} output block for rows {rows:?}, columns {cols:?}",
            out.rows,
            out.cols
        );
        check_run_rows(
            [
                self.input_len(),
                self.rows(),
                0,
                self.scratch_len(rows.len()),
            ],
            x,
            &rows,
            0,
            scratch,
        );
        self.group_tiles(x, rows, (0, cols), out, scratch, &mut |_| {});
    }

    /// Output rows `rows` × columns `cols` of group `g`'s filter into `out` (a
    /// `rows.len() × cols.len()` view), one GEMM per tile of [`Self::tile_rows`] rows, from
    /// the input itself (pointwise) or the tile's im2col rows in `scratch`; `after` gets
    /// each range of output rows (absolute) as soon as the GEMM has finished it.
    fn group_tiles(
        &self,
        x: &[f32],
        rows: Range<usize>,
        (g, cols): (usize, Range<usize>),
        mut out: MatMut<'_>,
        scratch: &mut [f32],
        after: &mut dyn FnMut(Range<usize>),
    ) {
        let c = self.win.c;
        let mut t0 = rows.start;
        while t0 < rows.end {
            let t1 = rows.end.min(t0.saturating_add(self.tile_rows()));
            let m = t1 - t0;
            let a = if self.pointwise {
                MatRef {
                    data: &x[t0 * c + g * self.ci..],
                    rows: m,
                    cols: self.ci,
                    strides: (c, 1),
                }
            } else {
                let patches = &mut scratch[..m * self.depth];
                self.im2col(x, t0..t1, g, patches);
                MatRef::row_major(patches, m, self.depth)
            };
            let tile = out.rows_view(t0 - rows.start..t1 - rows.start);
            let filter = &self.filter[g];
            gemm_packed_then(a, filter, cols.clone(), tile, false, &mut |r| {
                after(t0 + r.start..t0 + r.end)
            });
            t0 = t1;
        }
    }

    /// Writes the im2col rows of output rows `rows`, group `g`, into `dst` (`rows.len() * depth`).
    fn im2col(&self, x: &[f32], rows: Range<usize>, g: usize, dst: &mut [f32]) {
        if self.groups == 1 && self.win.dw == 1 {
            return self.im2col_dense(x, rows, dst);
        }
        let win = &self.win;
        let (c, ci, kw) = (win.c, self.ci, win.kw);
        let mut patches = dst.chunks_exact_mut(self.depth);
        for (img, oy, oxs, _) in win.runs(rows) {
            let ys = win.ky_range(oy);
            for ox in oxs {
                let patch = patches.next().expect("dst holds one patch per row");
                let xs = win.kx_range(ox);
                // Whole rows of taps that are padding.
                patch[..ys.start * kw * ci].fill(0.0);
                patch[ys.end * kw * ci..].fill(0.0);
                for ky in ys.clone() {
                    let line = &x[(img * win.h + win.iy(oy, ky)) * win.w * c..][..win.w * c];
                    let dst = &mut patch[ky * kw * ci..][..kw * ci];
                    dst[..xs.start * ci].fill(0.0);
                    dst[xs.end * ci..].fill(0.0);
                    for kx in xs.clone() {
                        let src = &line[win.ix(ox, kx) * c + g * ci..][..ci];
                        dst[kx * ci..][..ci].copy_from_slice(src);
                    }
                }
            }
        }
    }

    /// [`Self::im2col`] without groups or column dilation: the in-bounds taps of one window row
    /// are one contiguous stretch of an input row. Patches are a few to a few hundred floats,
    /// written per window row with [`copy_short`] (no library call per stretch), and the
    /// in-bounds columns of each output column are found without division.
    fn im2col_dense(&self, x: &[f32], rows: Range<usize>, dst: &mut [f32]) {
        let win = &self.win;
        let (c, kw, row_len) = (win.c, win.kw, win.kw * win.c);
        let mut patches = dst.chunks_exact_mut(self.depth);
        for (img, oy, oxs, _) in win.runs(rows) {
            let ys = win.ky_range(oy);
            let image = &x[img * win.h * win.w * c..][..win.h * win.w * c];
            for ox in oxs {
                let patch = patches.next().expect("dst holds one patch per row");
                // Input column of tap 0, offset by the left padding so it stays unsigned.
                let at = ox * win.sw;
                let lo = win.pl.saturating_sub(at).min(kw);
                let hi = (win.w + win.pl).saturating_sub(at).clamp(lo, kw);
                if ys.start > 0 {
                    patch[..ys.start * row_len].fill(0.0);
                }
                if ys.end < win.kh {
                    patch[ys.end * row_len..].fill(0.0);
                }
                for ky in ys.clone() {
                    let dst = &mut patch[ky * row_len..][..row_len];
                    if lo > 0 {
                        dst[..lo * c].fill(0.0);
                    }
                    if hi < kw {
                        dst[hi * c..].fill(0.0);
                    }
                    let line = win.iy(oy, ky) * win.w;
                    let src = &image[(line + at + lo - win.pl) * c..][..(hi - lo) * c];
                    copy_short(src, &mut dst[lo * c..hi * c]);
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short stretches of im2col: whole 16-float blocks, then
/// the tail in power-of-two pieces, all fixed-size moves the compiler inlines (a `memcpy` call
/// per stretch of a few floats cost more than the copy).
#[inline]
fn copy_short(src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "copy_short: lengths differ");
    let (mut s, mut d) = (src, dst);
    while s.len() >= 16 {
        let (s0, s1) = s.split_at(16);
        let (d0, d1) = d.split_at_mut(16);
        d0.copy_from_slice(s0);
        (s, d) = (s1, d1);
    }
    for piece in [8, 4, 2, 1] {
        if s.len() >= piece {
            let (s0, s1) = s.split_at(piece);
            let (d0, d1) = d.split_at_mut(piece);
            d0.copy_from_slice(s0);
            (s, d) = (s1, d1);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lathe_ir::ops::Padding;

    /// A small deterministic generator (xorshift).
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            let x = &mut self.0;
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        }
        /// Uniform in `lo..=hi`.
        pub fn int(&mut self, lo: usize, hi: usize) -> usize {
            lo + (self.next() % (hi - lo + 1) as u64) as usize
        }
        /// Values in [-1, 1).
        pub fn values(&mut self, len: usize) -> Vec<f32> {
            (0..len)
                .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
                .collect()
        }
        pub fn padding(&mut self, k: [usize; 2]) -> Padding {
            match self.int(0, 2) {
                0 => Padding::Valid,
                1 => Padding::Same,
                _ => Padding::Explicit([
                    [self.int(0, k[0] - 1), self.int(0, k[0] - 1)],
                    [self.int(0, k[1] - 1), self.int(0, k[1] - 1)],
                ]),
            }
        }
    }

    /// The interpreter's answer for `op` on f32 operands.
    pub(crate) fn reference(op: &Op, inputs: &[(&[usize], &[f32])]) -> (Vec<usize>, Vec<f32>) {
        let ts: Vec<Tensor> = inputs
            .iter()
            .map(|(s, v)| Tensor::from_vec(s, v.to_vec()))
            .collect();
        let refs: Vec<&Tensor> = ts.iter().collect();
        let out = op.eval(&refs).expect("reference evaluation").remove(0);
        let vals = out
            .as_array::<f32>()
            .expect("f32 result")
            .iter()
            .copied()
            .collect();
        (out.shape().to_vec(), vals)
    }

    /// Asserts `|got - want| <= tol * max(1, |want|)` elementwise.
    pub(crate) fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths differ");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{what}: element {i} is {g}, want {w}"
            );
        }
    }

    /// Runs `conv` on `rows` in tiles of `chunk` rows (as the backend splits work).
    fn run_in_chunks(conv: &Conv2d, x: &[f32], rows: Range<usize>, chunk: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; rows.len() * conv.cols()];
        let mut scratch = vec![f32::NAN; conv.scratch_len(chunk)];
        let mut r = rows.start;
        while r < rows.end {
            let e = rows.end.min(r + chunk);
            conv.run_rows(
                x,
                r..e,
                &mut out[(r - rows.start) * conv.cols()..(e - rows.start) * conv.cols()],
                &mut scratch,
            );
            r = e;
        }
        out
    }

    fn check(rng: &mut Rng, x_shape: [usize; 4], f_shape: [usize; 4], attrs: &ConvAttrs) {
        let x = rng.values(x_shape.iter().product());
        let f = rng.values(f_shape.iter().product());
        let what = format!("conv2d x {x_shape:?} f {f_shape:?} {attrs:?}");
        let (shape, want) = reference(
            &Op::Conv2D(attrs.clone()),
            &[(&x_shape, &x), (&f_shape, &f)],
        );
        let ft = Tensor::from_vec(&f_shape, f);
        let conv = Conv2d::new(attrs, &TensorType::known(DType::F32, &x_shape), &ft).expect(&what);
        assert_eq!(
            (conv.rows(), conv.cols()),
            (shape[0] * shape[1] * shape[2], shape[3]),
            "{what}"
        );
        // Tolerance: f32 sums of k products of values in [-1, 1).
        let k = f_shape[0] * f_shape[1] * f_shape[2];
        let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
        let all = run_in_chunks(&conv, &x, 0..conv.rows(), conv.rows().max(1));
        assert_close(&all, &want, tol, &what);
        // An odd sub-range in odd chunks.
        let rows = conv.rows();
        let (a, b) = (rng.int(0, rows), rng.int(0, rows));
        let sub = a.min(b)..a.max(b);
        let got = run_in_chunks(&conv, &x, sub.clone(), rng.int(1, 40));
        assert_close(
            &got,
            &want[sub.start * conv.cols()..sub.end * conv.cols()],
            tol,
            &what,
        );
    }

    #[test]
    fn matches_interpreter_on_random_convolutions() {
        let mut rng = Rng(0x5eed_c0de);
        for _ in 0..150 {
            let k = [rng.int(1, 4), rng.int(1, 4)];
            let strides = [rng.int(1, 3), rng.int(1, 3)];
            let dilations = if rng.int(0, 3) == 0 {
                [rng.int(1, 3), rng.int(1, 3)]
            } else {
                [1, 1]
            };
            let padding = rng.padding(k);
            let groups = if rng.int(0, 4) == 0 { rng.int(2, 3) } else { 1 };
            let ci = rng.int(1, 9);
            let co = groups * rng.int(1, 9);
            let span = |a: usize| (k[a] - 1) * dilations[a] + 1;
            let x_shape = [
                rng.int(1, 2),
                rng.int(span(0), span(0) + 9),
                rng.int(span(1), span(1) + 9),
                ci * groups,
            ];
            let attrs = ConvAttrs {
                strides,
                dilations,
                padding,
                format: DataFormat::Nhwc,
            };
            check(&mut rng, x_shape, [k[0], k[1], ci, co], &attrs);
        }
    }

    #[test]
    fn model_shaped_convolutions() {
        let mut rng = Rng(7);
        let conv = |s: usize, padding: Padding| ConvAttrs {
            strides: [s, s],
            dilations: [1, 1],
            padding,
            format: DataFormat::Nhwc,
        };
        // Pointwise (no im2col), stride-2 pointwise, 3x3 SAME stride 1 and 2, a 7x7 stem, odd channels.
        check(
            &mut rng,
            [1, 14, 14, 64],
            [1, 1, 64, 40],
            &conv(1, Padding::Same),
        );
        check(
            &mut rng,
            [1, 14, 14, 33],
            [1, 1, 33, 17],
            &conv(2, Padding::Valid),
        );
        check(
            &mut rng,
            [1, 15, 15, 19],
            [3, 3, 19, 37],
            &conv(1, Padding::Same),
        );
        check(
            &mut rng,
            [2, 16, 15, 8],
            [3, 3, 8, 24],
            &conv(2, Padding::Same),
        );
        check(
            &mut rng,
            [1, 32, 32, 3],
            [7, 7, 3, 16],
            &conv(2, Padding::Same),
        );
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        let f = Tensor::from_vec(&[3, 3, 4, 8], vec![0.0f32; 288]);
        let mut attrs = ConvAttrs {
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Same,
            format: DataFormat::Nchw,
        };
        let x = TensorType::known(DType::F32, &[1, 4, 8, 8]);
        let e = Conv2d::new(&attrs, &x, &f).unwrap_err();
        assert!(e.contains("needs NHWC"), "{e}");
        attrs.format = DataFormat::Nhwc;
        let e = Conv2d::new(&attrs, &TensorType::known(DType::F32, &[1, 8, 8, 5]), &f).unwrap_err();
        assert!(e.contains("has 5 channels"), "{e}");
        let e = Conv2d::new(&attrs, &TensorType::known(DType::F64, &[1, 8, 8, 4]), &f).unwrap_err();
        assert!(e.contains("needs f32"), "{e}");
    }

    #[test]
    #[should_panic(expected = "conv2d: output slice has 7 elements, expected 16")]
    fn run_rows_checks_lengths() {
        let f = Tensor::from_vec(&[1, 1, 2, 8], vec![0.0f32; 16]);
        let attrs = ConvAttrs {
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Valid,
            format: DataFormat::Nhwc,
        };
        let conv = Conv2d::new(&attrs, &TensorType::known(DType::F32, &[1, 2, 2, 2]), &f).unwrap();
        conv.run_rows(&[0.0; 8], 0..2, &mut [0.0; 7], &mut []);
    }
}
