//! Single-precision GEMM against a constant `B` packed once: `C = A·B` or `C += A·B`.
//!
//! Weights (convolution filters, dense layers) are known when a model is compiled, so
//! [`PackedB`] lays `B` out once in the micro-kernel's panel order and every call skips the
//! repacking a general GEMM does. [`gemm_packed`] is single-threaded: callers split the rows of
//! `A` and `C` across threads and call it per row range (many threads may share one `PackedB`).
//!
//! # Structure (Goto/BLIS)
//!
//! * `B` (`k × n`) is cut into blocks of at most `kc` rows (`kc` chosen so one block of `B`,
//!   `kc × n`, stays in L2) and each block into `NR`-column panels, row-major inside a panel
//!   (`NR` floats per `k` step, 64-byte aligned), the last panel zero-padded.
//! * Per call, for each `k` block and each sliver of `MR` rows of `A` (at most `MR × kc`, it
//!   stays in L1), the micro-kernel runs over every panel of `B` (or, when the block of all of
//!   `A`'s rows and `C` fit in L2, each panel runs over every sliver while the next is
//!   prefetched: see `drive`): an `R × NR` tile of `C` held in registers, one broadcast of
//!   `A` and `NR / lanes` FMAs per row per `k` step. `A` is not packed: with contiguous columns (an im2col tile, activation rows) the kernel reads its rows
//!   in place, because a transposing pack measured as costly as the product itself for narrow
//!   `B` (n = 64). Only when its columns are strided, or its row stride would make the sliver's
//!   rows share L1 sets (a multiple of 2 KiB, say), is the sliver first copied to rows with a
//!   conflict-free stride.
//! * Tiles on the right edge (`n % NR`) or with a non-unit column stride of `C` are computed
//!   into a small aligned buffer and merged; the bottom edge (`m % MR`) runs a kernel compiled
//!   for exactly that many rows.
//!
//! Micro-kernels, chosen at run time (once, cached) by [`Isa::detect`]: AVX-512F `12 × 32`
//! (24 of the 32 zmm registers accumulate), AVX2+FMA `6 × 16`, and a portable scalar one.
//! `benches/benches/gemm.rs` (`-- packed`) measures them against [`super::sgemm`]: on the
//! 2-core Zen 4 development machine (double-pumped AVX-512, so ymm and zmm FMAs both peak at
//! 32 FLOP/cycle, about 116 GFLOP/s per core) the AVX-512 kernel reached 85 to 99% of that on
//! ResNet-50's shapes with 128 to 512 rows; the AVX2 kernel is close behind on most.
//!
//! Views follow [`super::gemm`]'s contract (element `(i, j)` at `data[i*row + j*col]`); misuse
//! (shapes that do not compose, short slices, overlapping `C`) panics with a message.

// The view checks are `kernels::gemm`'s: one definition of what a view needs and of aliasing.
use super::gemm::{distinct, needed, MatMut, MatRef};
use std::fmt;
use std::ops::Range;

/// Largest `k` block.
const KC_MAX: usize = 512;
/// Floats of `B` per `k` block that should stay in L2 (512 KiB, half of this machine's L2).
const B_BLOCK_FLOATS: usize = 1 << 17;
/// Largest `MR × NR` over all micro-kernels (the edge tile buffer).
const TILE_MAX: usize = 12 * 32;

pub use super::simd::Isa;

/// The micro-kernel's tile for each instruction set.
impl Isa {
    /// Rows of a micro-kernel tile.
    fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2 => 6,
            Isa::Scalar => 4,
        }
    }

    /// Columns of a micro-kernel tile (the panel width of a [`PackedB`]).
    fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 | Isa::Scalar => 16,
        }
    }
}

/// 64 bytes of floats, so a `Vec` of them is cache-line aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// `B` (`k × n`) packed once into the micro-kernel's panel layout. `Send + Sync`: share one
/// across the threads that split a product's rows.
#[derive(Clone)]
pub struct PackedB {
    isa: Isa,
    k: usize,
    n: usize,
    /// Rows per `k` block (the last block may be shorter).
    kc: usize,
    /// `n` rounded up to the panel width.
    n_pad: usize,
    /// Block `[k0, k0 + kb)` starts at `k0 * n_pad`; its panel `jp` at `+ jp * kb * NR`.
    data: Panels,
}

/// Where packed panels lie: packed here, or in a plan image's blob (a mapped artifact).
#[derive(Clone)]
enum Panels {
    Owned(Vec<Line>),
    Mapped(crate::cpu::image::Slice),
}

/// What a plan image holds of a [`PackedB`]: its layout, and its panels in the blob.
#[derive(serde::Serialize, serde::Deserialize)]
struct PackedRepr {
    isa: Isa,
    k: usize,
    n: usize,
    kc: usize,
    n_pad: usize,
    panels: crate::cpu::image::BlobRef,
}

impl serde::Serialize for PackedB {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let panels =
            crate::cpu::image::put_floats(self.floats()).map_err(serde::ser::Error::custom)?;
        PackedRepr {
            isa: self.isa,
            k: self.k,
            n: self.n,
            kc: self.kc,
            n_pad: self.n_pad,
            panels,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for PackedB {
    /// Checks the layout against what [`PackedB::with_isa`] makes (panel width, block size,
    /// panel bytes) before the panels are trusted.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PackedB, D::Error> {
        let r = PackedRepr::deserialize(d)?;
        let nr = r.isa.nr();
        let lines = (r.k.checked_mul(r.n_pad))
            .map(|f| f.div_ceil(16))
            .filter(|_| r.n_pad == r.n.div_ceil(nr) * nr && r.kc >= 1 && r.kc <= r.k.max(1))
            .ok_or_else(|| {
                crate::cpu::image::invalid(format!(
                    "packed weight of k {} n {} (padded {}, blocks of {}) is inconsistent",
                    r.k, r.n, r.n_pad, r.kc
                ))
            })?;
        let floats = lines.checked_mul(16);
        let floats =
            floats.ok_or_else(|| crate::cpu::image::invalid("packed weight is too large"))?;
        let panels = crate::cpu::image::get_floats(r.panels, Some(floats))
            .map_err(crate::cpu::image::invalid)?;
        Ok(PackedB {
            isa: r.isa,
            k: r.k,
            n: r.n,
            kc: r.kc,
            n_pad: r.n_pad,
            data: Panels::Mapped(panels),
        })
    }
}

impl fmt::Debug for PackedB {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedB")
            .field("isa", &self.isa)
            .field("k", &self.k)
            .field("n", &self.n)
            .field("kc", &self.kc)
            .finish_non_exhaustive()
    }
}

impl PackedB {
    /// Packs `b` (any strides) for the best micro-kernel of this CPU.
    ///
    /// Panics, with a message, when `b`'s slice is too short for its view.
    pub fn new(b: MatRef<'_>) -> PackedB {
        PackedB::with_isa(b, Isa::detect())
    }

    /// Packs `b` for a given micro-kernel (for tests and benchmarks).
    ///
    /// Panics when this CPU does not run `isa`, or `b`'s slice is too short for its view.
    pub fn with_isa(b: MatRef<'_>, isa: Isa) -> PackedB {
        assert!(
            isa.supported(),
            "PackedB: this CPU does not support {isa:?}"
        );
        check_view("PackedB", "B", b.data.len(), b.rows, b.cols, b.strides);
        let (k, n, nr) = (b.rows, b.cols, isa.nr());
        let n_pad = n.div_ceil(nr) * nr;
        let kc_cap = (B_BLOCK_FLOATS / n_pad.max(1)).clamp(128, KC_MAX);
        let kc = k.div_ceil(k.div_ceil(kc_cap).max(1)).max(1);
        // Written straight into the aligned lines (no flat copy first: a large weight is then
        // held at most twice while it is packed, as given and packed).
        let mut data = vec![Line([0.0; 16]); (k * n_pad).div_ceil(16)];
        let (rs, cs) = b.strides;
        for k0 in (0..k).step_by(kc) {
            let kb = kc.min(k - k0);
            for jp in 0..n_pad / nr {
                for p in 0..kb {
                    let at = k0 * n_pad + (jp * kb + p) * nr;
                    // Panel `jp` starts inside B (`jp * nr < n`); its last columns may be padding.
                    for j in 0..nr.min(n - jp * nr) {
                        let col = jp * nr + j;
                        let i = at + j;
                        data[i / 16].0[i % 16] = b.data[(k0 + p) * rs + col * cs];
                    }
                }
            }
        }
        PackedB {
            isa,
            k,
            n,
            kc,
            n_pad,
            data: Panels::Owned(data),
        }
    }

    /// Rows of `B` (the product's inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B` (and of `C`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The micro-kernel this `B` was packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The panel width (columns per panel).
    pub fn panel_width(&self) -> usize {
        self.isa.nr()
    }

    /// Rows per `k` block (the last block may be shorter).
    pub(super) fn kc(&self) -> usize {
        self.kc
    }

    /// The panel of columns `j0..j0 + nr` (`j0` a multiple of the panel width, below `n`) in
    /// the `k` block starting at row `k0` (a multiple of [`PackedB::kc`]): `kb × nr` floats,
    /// row `p` at `p * nr`, padding columns zero. Block `k0` is `kb × n_pad` floats from
    /// `k0 * n_pad`, its panels one after the other.
    pub(super) fn panel(&self, k0: usize, j0: usize) -> &[f32] {
        let kb = self.kc.min(self.k - k0);
        &self.floats()[k0 * self.n_pad + j0 * kb..][..kb * self.isa.nr()]
    }

    fn floats(&self) -> &[f32] {
        match &self.data {
            // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with no padding (64 bytes, align
            // 64), so `len` lines are `16 * len` initialized, properly aligned floats.
            Panels::Owned(lines) => unsafe {
                std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * 16)
            },
            // Checked when decoded: 64-byte aligned, of the lines' size.
            Panels::Mapped(slice) => slice.floats(),
        }
    }
}

/// Panics unless the `rows × cols` view with `strides` fits a slice of `len` elements.
fn check_view(what: &str, operand: &str, len: usize, rows: usize, cols: usize, s: (usize, usize)) {
    let need = needed(rows, cols, s).filter(|&e| isize::try_from(e).is_ok());
    let Some(need) = need else {
        panic!("{what}: {operand} ({rows}x{cols}, strides {s:?}) is too large to address");
    };
    assert!(
        need <= len,
        "{what}: {operand} ({rows}x{cols}, strides {s:?}) needs {need} elements, its slice has {len}"
    );
}

/// `C = A·B` (or `C += A·B` when `accumulate`) on the calling thread, with `A` `m × k`
/// (any strides; column stride 1 is the fast case), `b` `k × n`, `C` `m × n` (any row stride;
/// column stride 1 is the fast case). With `k == 0`, `C` is zeroed (or left as is).
///
/// Panics, with a message and before writing anything, when the shapes do not compose, a
/// slice is too short for its view, or `C`'s elements overlap.
pub fn gemm_packed(a: MatRef<'_>, b: &PackedB, c: MatMut<'_>, accumulate: bool) {
    gemm_packed_cols(a, b, 0..b.n, c, accumulate)
}

/// [`gemm_packed`] for columns `cols` of `B` only: `C` is `m × cols.len()`, its column `j`
/// the product's column `cols.start + j`. Threads that split a product by columns call it
/// with whole panels each: `cols.start` is a multiple of [`PackedB::panel_width`].
///
/// Panics as [`gemm_packed`] does, and when `cols` is not in `0..n` or starts inside a panel.
pub fn gemm_packed_cols(
    a: MatRef<'_>,
    b: &PackedB,
    cols: Range<usize>,
    c: MatMut<'_>,
    accumulate: bool,
) {
    gemm_packed_then(a, b, cols, c, accumulate, &mut |_| {})
}

/// Rows of `C` that [`gemm_packed_then`] gathers before calling back (at least a sliver):
/// about 16 KiB, so that they are still in L1 when the callback reads them.
const AFTER_FLOATS: usize = 4096;

/// [`gemm_packed_cols`], calling `after(rows)` as soon as rows `rows` of `C` (a range of the
/// view's rows) are final, in order, every row once: while they are still in cache, for an
/// epilogue. `C` is written only through the view's pointer, so `after` may read and write
/// those rows through pointers of its own (the view holds no reference to them).
pub fn gemm_packed_then(
    a: MatRef<'_>,
    b: &PackedB,
    cols: Range<usize>,
    mut c: MatMut<'_>,
    accumulate: bool,
    after: &mut dyn FnMut(Range<usize>),
) {
    let (m, k) = (a.rows, b.k);
    assert!(
        cols.start <= cols.end && cols.end <= b.n && cols.start.is_multiple_of(b.isa.nr()),
        "gemm_packed: columns {cols:?} out of 0..{} or not from a panel's start ({} wide)",
        b.n,
        b.isa.nr()
    );
    let n = cols.len();
    assert!(
        a.cols == k && c.rows == m && c.cols == n,
        "gemm_packed: shapes do not compose: A is {}x{}, B is {}x{}, C is {}x{} (B's columns {cols:?})",
        a.rows,
        a.cols,
        b.k,
        b.n,
        c.rows,
        c.cols
    );
    check_view("gemm_packed", "A", a.data.len(), m, k, a.strides);
    check_view("gemm_packed", "C", c.len(), m, n, c.strides);
    assert!(
        distinct(m, n, c.strides),
        "gemm_packed: C's strides {:?} make distinct elements overlap",
        c.strides
    );
    if m == 0 {
        return;
    }
    if n == 0 || k == 0 {
        if !accumulate {
            c.fill_zero();
        }
        return after(0..m);
    }
    // SAFETY: the views were checked above: every element of A and C lies in its range, C's
    // elements are distinct and accessed through `c` alone (its contract); `b` was packed for `b.isa`, which
    // `PackedB::with_isa` checked this CPU supports.
    unsafe { drive(a, b, cols, c, accumulate, after) }
}

/// One micro-kernel call: `C[0..R, 0..NR] (+)= A[0..R, 0..kc] · panel`, with `A` element
/// `(i, p)` at `a + i*lda + p` and `C` at `c` with row stride `ldc` and unit column stride.
struct Tile {
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    /// Columns of the tile to store (at most `NR`; fewer on a right edge, the rest of the
    /// panel being padding).
    w: usize,
    /// Lines to prefetch into L2 while the kernel runs (`pf_lines` 64-byte lines from `pf`,
    /// at most `2 · kc`): the next panel's. Hints only, never dereferenced.
    pf: *const f32,
    pf_lines: usize,
}

/// A micro-kernel for a fixed row count.
type Kernel = unsafe fn(&Tile);

/// The kernels of `isa` for `1..=MR` rows, computing the whole panel, or only its first half
/// when `half` (a right edge of at most `NR / 2` columns: MobileNet's 16- and 24-channel
/// projections would otherwise spend half their multiplies on padding).
fn kernels(isa: Isa, half: bool) -> &'static [Kernel] {
    macro_rules! table {
        ($f:ident, $v:literal, $($r:literal)*) => {
            &[$($f::<$r, $v> as Kernel),*]
        };
    }
    #[cfg(target_arch = "x86_64")]
    use x86::{avx2, avx512};
    match (isa, half) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, false) => table!(avx512, 2, 1 2 3 4 5 6 7 8 9 10 11 12),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, true) => table!(avx512, 1, 1 2 3 4 5 6 7 8 9 10 11 12),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, false) => table!(avx2, 2, 1 2 3 4 5 6),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, true) => table!(avx2, 1, 1 2 3 4 5 6),
        _ => table!(scalar, 2, 1 2 3 4),
    }
}

/// Whether `mr` rows of `A`, `lda` floats apart, crowd one L1 set (32 KiB, 8 ways, 64-byte
/// lines: addresses 4 KiB apart share a set). Read in place they would evict each other on
/// every `k` step; measured on Zen 4, `lda` = 1024 or 4608 lost 10 to 20%.
fn rows_collide(lda: usize, mr: usize) -> bool {
    let mut per_set = [0u8; 64];
    for i in 0..mr {
        per_set[(i * lda / 16) % 64] += 1;
    }
    per_set.iter().any(|&n| n > 4)
}

/// Copies rows `rows` × columns `ks` of `a` into `dst`, row `i` at `i * ld`.
fn copy_sliver(a: &MatRef<'_>, rows: Range<usize>, ks: Range<usize>, ld: usize, dst: &mut [f32]) {
    let (rs, cs) = a.strides;
    for (i, r) in rows.enumerate() {
        let base = r * rs + ks.start * cs;
        let dst = &mut dst[i * ld..][..ks.len()];
        if cs == 1 {
            dst.copy_from_slice(&a.data[base..][..ks.len()]);
        } else {
            for (p, d) in dst.iter_mut().enumerate() {
                *d = a.data[base + p * cs];
            }
        }
    }
}

#[repr(C, align(64))]
struct Aligned<const N: usize>([f32; N]);

/// The blocked loops around the micro-kernel.
///
/// Per `k` block, two orders:
///
/// * Slivers outer, panels inner (Goto's order): a block of `B` stays in L2 while each sliver
///   of `A` runs over it. For many rows.
/// * Panels outer, slivers inner, when the `k` block of all of `A`'s rows and the whole of
///   `C` fit in L2 ([`A_BLOCK_FLOATS`] each; a panel writes a column stripe of every row of
///   `C`, so a `C` larger than L2 would be fetched again for every panel: MobileNet-v2's
///   112×112 16→96 expansion, 6272 rows per thread, lost 10% that way): each panel
///   (`kb × NR`, 32 KiB) stays in L1 while every sliver runs over it, and each sliver's call prefetches its share of the next panel. With few
///   rows (ResNet-50's last stage: 49) the other order reads each block of `B` from memory
///   during the first sliver alone, a pass bound by memory bandwidth, and computes the others
///   from L2 with the memory idle; here `B` streams in while every sliver computes.
///
/// # Safety
///
/// `a` and `c` satisfy [`gemm_packed`]'s checks, `m, n, k > 0`, and this CPU runs `b.isa`.
unsafe fn drive(
    a: MatRef<'_>,
    b: &PackedB,
    cols: Range<usize>,
    mut c: MatMut<'_>,
    accumulate: bool,
    after: &mut dyn FnMut(Range<usize>),
) {
    let (m, k) = (a.rows, b.k);
    let (mr, nr) = (b.isa.mr(), b.isa.nr());
    let (ars, acs) = a.strides;
    // `A` is read in place (an im2col tile or activation rows: copying would cost as much as
    // the product when `B` is narrow) unless its columns are strided or its rows would
    // thrash L1; then each `mr × kc` sliver is first copied to rows one cache line longer
    // than a block (distinct sets).
    let copy = acs != 1 || (m > 1 && rows_collide(ars, mr.min(m)));
    let ld = b.kc.next_multiple_of(16) + 16;
    let panels_outer = m * b.kc <= A_BLOCK_FLOATS && m * cols.len() <= A_BLOCK_FLOATS;
    // Panels outer copy the whole `k` block of A at once (each sliver serves every panel).
    let copied_rows = if panels_outer { m } else { mr };
    let mut sliver = if copy {
        vec![0.0f32; copied_rows * ld]
    } else {
        Vec::new()
    };
    let mut d = Driver {
        b,
        kernels: [kernels(b.isa, false), kernels(b.isa, true)],
        c_ptr: c.as_mut_ptr(),
        c_strides: c.strides,
        tmp: Aligned([0.0; TILE_MAX]),
    };
    let ap = a.data.as_ptr();
    for k0 in (0..k).step_by(b.kc) {
        let kb = b.kc.min(k - k0);
        let acc = accumulate || k0 > 0;
        if panels_outer {
            let (a_block, lda) = if copy {
                copy_sliver(&a, 0..m, k0..k0 + kb, ld, &mut sliver);
                (sliver.as_ptr(), ld)
            } else {
                // SAFETY: element (0, k0) is in A (k0 < k, checked view).
                (unsafe { ap.add(k0) }, ars)
            };
            let slivers = m.div_ceil(mr);
            for j0 in cols.clone().step_by(nr) {
                let next = (j0 + nr < cols.end).then(|| b.panel(k0, j0 + nr).as_ptr());
                for (s, i0) in (0..m).step_by(mr).enumerate() {
                    let pf = next.map(|p| Prefetch::share(p, kb * nr, s, slivers));
                    let rows = i0..(i0 + mr).min(m);
                    // SAFETY: row i0 < m of A's block, or of the copy (`m` rows of `ld`).
                    let sa = unsafe { a_block.add(i0 * lda) };
                    let at = (j0, j0 - cols.start, nr.min(cols.end - j0));
                    // SAFETY: `sa` holds `rows` rows of `kb` floats (stride `lda`); rows `rows`
                    // and columns `j0 - cols.start..` (at most `nr`, inside `cols`) of C are
                    // in the checked view; `j0` is a panel of B and `k0` a block.
                    unsafe { d.tile(rows, (sa, lda), (k0, kb), at, acc, pf) };
                }
            }
        } else {
            // In the last `k` block, rows are final once their sliver has run every panel.
            let last = k0 + kb == k;
            let mut pending = 0;
            for i0 in (0..m).step_by(mr) {
                let rows = i0..(i0 + mr).min(m);
                let (sa, lda) = if copy {
                    copy_sliver(&a, rows.clone(), k0..k0 + kb, ld, &mut sliver);
                    (sliver.as_ptr(), ld)
                } else {
                    // SAFETY: element (i0, k0) is in A (i0 < m, k0 < k, checked view).
                    (unsafe { ap.add(i0 * ars + k0) }, ars)
                };
                for j0 in cols.clone().step_by(nr) {
                    let at = (j0, j0 - cols.start, nr.min(cols.end - j0));
                    // SAFETY: as in the other order, the sliver copied or read in place.
                    unsafe { d.tile(rows.clone(), (sa, lda), (k0, kb), at, acc, None) };
                }
                if last && ((rows.end - pending) * cols.len() >= AFTER_FLOATS || rows.end == m) {
                    after(pending..rows.end);
                    pending = rows.end;
                }
            }
            if last {
                return;
            }
        }
    }
    // Panels outer: every row is final only after the last panel (`C` is in L2).
    after(0..m);
}

/// Floats of `A`'s `k` block (all rows), and of `C`, that [`drive`] keeps in L2 to run panels
/// outer: 512 KiB each, a quarter of the L2 of the Sapphire Rapids machines measured.
const A_BLOCK_FLOATS: usize = 1 << 17;

/// What [`drive`] holds across micro-kernel calls.
struct Driver<'b> {
    b: &'b PackedB,
    kernels: [&'static [Kernel]; 2],
    c_ptr: *mut f32,
    c_strides: (usize, usize),
    tmp: Aligned<TILE_MAX>,
}

/// Lines of a panel for one micro-kernel call to prefetch (into L2) as it runs.
#[derive(Clone, Copy)]
struct Prefetch {
    from: *const f32,
    lines: usize,
}

impl Prefetch {
    /// Share `s` of `shares` of the `floats` floats from `panel`, in whole 64-byte lines.
    fn share(panel: *const f32, floats: usize, s: usize, shares: usize) -> Prefetch {
        let lines = floats.div_ceil(16);
        let (lo, hi) = (lines * s / shares, lines * (s + 1) / shares);
        Prefetch {
            // A hint's address: never dereferenced (prefetches do not fault).
            from: panel.wrapping_add(lo * 16),
            lines: hi - lo,
        }
    }
}

impl Driver<'_> {
    /// `C[rows, jc..jc + w] (+)= A[rows, k0..k0 + kb] · B[k0.., j0..j0 + w]` (`w <= NR`:
    /// the panel of `j0`; a right edge stores only its `w` columns), a strided `C` through the
    /// tile buffer.
    ///
    /// # Safety
    ///
    /// `sa` (row stride `lda`) holds `rows.len()` rows of `kb` floats of `A`; rows `rows` and
    /// columns `jc..` of `C` are inside the view [`drive`] was given; `j0` is a panel of `B`'s
    /// columns and `k0..k0 + kb` one of its `k` blocks; the CPU runs `b.isa`.
    unsafe fn tile(
        &mut self,
        rows: Range<usize>,
        (sa, lda): (*const f32, usize),
        (k0, kb): (usize, usize),
        (j0, jc, w): (usize, usize, usize),
        accumulate: bool,
        prefetch: Option<Prefetch>,
    ) {
        let (crs, ccs) = self.c_strides;
        let (i0, r) = (rows.start, rows.len());
        let nr = self.b.isa.nr();
        let kernel = self.kernels[usize::from(w <= nr / 2)][r - 1];
        let panel = self.b.panel(k0, j0).as_ptr();
        let (pf, pf_lines) = prefetch.map_or((std::ptr::null(), 0), |p| (p.from, p.lines));
        if ccs == 1 {
            let tile = Tile {
                kc: kb,
                a: sa,
                lda,
                b: panel,
                // SAFETY: rows i0..i0+r, columns jc..jc+nr of C exist (the caller's).
                c: unsafe { self.c_ptr.add(i0 * crs + jc) },
                ldc: crs,
                accumulate,
                w,
                pf,
                pf_lines,
            };
            // SAFETY: `r` rows of A from `sa` (stride `lda`, `kb` columns), the panel and the
            // C tile are in range (the caller's); the CPU runs `b.isa`.
            unsafe { kernel(&tile) };
        } else {
            let tile = Tile {
                kc: kb,
                a: sa,
                lda,
                b: panel,
                c: self.tmp.0.as_mut_ptr(),
                ldc: nr,
                accumulate: false,
                w,
                pf,
                pf_lines,
            };
            // SAFETY: as above; `tmp` holds `mr * nr <= TILE_MAX` floats.
            unsafe { kernel(&tile) };
            for i in 0..r {
                for j in 0..w {
                    // SAFETY: (i0 + i, jc + j) is an element of C (the caller's).
                    let dst = unsafe { &mut *self.c_ptr.add((i0 + i) * crs + (jc + j) * ccs) };
                    let v = self.tmp.0[i * nr + j];
                    *dst = if accumulate { *dst + v } else { v };
                }
            }
        }
    }
}

/// The portable micro-kernel: `R × 16` (`V` is the vector kernels' width in vectors; here
/// always the whole panel), written so the compiler may vectorize it.
///
/// # Safety
///
/// `t` describes valid `A` (`R × kc`), panel (`kc × 16`) and `C` (`R × w`) ranges.
unsafe fn scalar<const R: usize, const V: usize>(t: &Tile) {
    const NR: usize = 16;
    let mut acc = [[0.0f32; NR]; R];
    for p in 0..t.kc {
        // SAFETY: `p < kc`: row `p` of the panel is in range.
        let bp = unsafe { std::slice::from_raw_parts(t.b.add(p * NR), NR) };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: element (i, p) of A, `i < R`, `p < kc`.
            let av = unsafe { *t.a.add(i * t.lda + p) };
            for (x, &bv) in row.iter_mut().zip(bp) {
                *x += av * bv;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row `i < R` of the C tile, `w <= NR` contiguous floats.
        let c = unsafe { std::slice::from_raw_parts_mut(t.c.add(i * t.ldc), t.w) };
        for (dst, &v) in c.iter_mut().zip(row) {
            *dst = if t.accumulate { *dst + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Tile;
    use crate::kernels::simd::{load_first, store_first, Avx2, Avx512};
    use std::arch::x86_64::*;

    /// At step `p` of the `k` loop, the prefetches of lines `p` and `p + kc` of the tile's
    /// share of the next panel, those that exist.
    #[inline(always)]
    fn prefetch_next(t: &Tile, p: usize) {
        if p < t.pf_lines {
            // SAFETY: a prefetch is a hint: it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(t.pf.wrapping_add(p * 16).cast()) };
        }
        if p + t.kc < t.pf_lines {
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(t.pf.wrapping_add((p + t.kc) * 16).cast()) };
        }
    }

    /// The AVX-512 micro-kernel: `R × 16·V` (`V` of 1 or 2 zmm accumulators per row) of a
    /// 32-wide panel, `A` broadcast from memory; stores the tile's first `w` columns.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX-512F; `t` describes valid `A` (`R × kc`), panel (`kc × 32`,
    /// 64-byte aligned) and `C` (`R × w`, `w <= 16·V`) ranges.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512<const R: usize, const V: usize>(t: &Tile) {
        for i in 0..R {
            // Fetch the C tile while the products run (a hint: never faults).
            let c = t.c.wrapping_add(i * t.ldc);
            _mm_prefetch::<_MM_HINT_T0>(c.cast());
            _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(31).cast());
        }
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let (mut a, mut b) = (t.a, t.b);
        let lda = t.lda;
        for p in 0..t.kc {
            prefetch_next(t, p);
            // SAFETY: over the whole loop, `kc` steps over the panel (32 floats each, 64-byte
            // aligned) and over the rows of A (one column per step) stay in the ranges the
            // caller vouches for; the caller checked the CPU has AVX-512F.
            unsafe {
                let mut bv = [_mm512_setzero_ps(); V];
                for (v, bv) in bv.iter_mut().enumerate() {
                    *bv = _mm512_load_ps(b.add(16 * v));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(i * lda));
                    for (acc, &bv) in row.iter_mut().zip(&bv) {
                        *acc = _mm512_fmadd_ps(av, bv, *acc);
                    }
                }
                a = a.add(1);
                b = b.add(32);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let n = t.w.saturating_sub(16 * v);
                // SAFETY: row `i < R` of the C tile holds `w` floats, of which these are the
                // `n.min(16)` from `16·v`.
                unsafe {
                    let c = t.c.add(i * t.ldc + 16 * v);
                    let x = if t.accumulate {
                        _mm512_add_ps(x, load_first::<Avx512>(c, n))
                    } else {
                        x
                    };
                    store_first::<Avx512>(c, x, n);
                }
            }
        }
    }

    /// The AVX2 micro-kernel: `R × 8·V` (`V` of 1 or 2 ymm accumulators per row) of a
    /// 16-wide panel; stores the tile's first `w` columns.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX2 and FMA; `t` describes valid `A` (`R × kc`), panel (`kc × 16`,
    /// 32-byte aligned) and `C` (`R × w`, `w <= 8·V`) ranges.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<const R: usize, const V: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        let (mut a, mut b) = (t.a, t.b);
        let lda = t.lda;
        for p in 0..t.kc {
            prefetch_next(t, p);
            // SAFETY: as in `avx512`, with 16-float panel rows.
            unsafe {
                let mut bv = [_mm256_setzero_ps(); V];
                for (v, bv) in bv.iter_mut().enumerate() {
                    *bv = _mm256_load_ps(b.add(8 * v));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(i * lda));
                    for (acc, &bv) in row.iter_mut().zip(&bv) {
                        *acc = _mm256_fmadd_ps(av, bv, *acc);
                    }
                }
                a = a.add(1);
                b = b.add(16);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let n = t.w.saturating_sub(8 * v);
                // SAFETY: row `i < R` of the C tile holds `w` floats, of which these are the
                // `n.min(8)` from `8·v`.
                unsafe {
                    let c = t.c.add(i * t.ldc + 8 * v);
                    let x = if t.accumulate {
                        _mm256_add_ps(x, load_first::<Avx2>(c, n))
                    } else {
                        x
                    };
                    store_first::<Avx2>(c, x, n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::tests::Rng;

    /// `C = A·B` (or `+=`) in f64, element by element.
    fn naive(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], cs: (usize, usize), accumulate: bool) {
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut acc = 0.0f64;
                for p in 0..a.cols {
                    acc += a.data[i * a.strides.0 + p * a.strides.1] as f64
                        * b.data[p * b.strides.0 + j * b.strides.1] as f64;
                }
                let dst = &mut c[i * cs.0 + j * cs.1];
                *dst = if accumulate {
                    (*dst as f64 + acc) as f32
                } else {
                    acc as f32
                };
            }
        }
    }

    /// How a case lays out its operands.
    #[derive(Clone, Copy, Debug)]
    struct Layout {
        /// A stored transposed (column stride `m`).
        ta: bool,
        /// B stored transposed.
        tb: bool,
        /// C column-major; otherwise row-major with `pad` extra floats per row.
        tc: bool,
        pad: usize,
        accumulate: bool,
    }

    fn case(isa: Isa, (m, n, k): (usize, usize, usize), l: Layout, rng: &mut Rng) {
        let a_data = rng.values(m * k);
        let b_data = rng.values(k * n);
        let a = if l.ta {
            MatRef::row_major(&a_data, k, m).t()
        } else {
            MatRef::row_major(&a_data, m, k)
        };
        let b = if l.tb {
            MatRef::row_major(&b_data, n, k).t()
        } else {
            MatRef::row_major(&b_data, k, n)
        };
        let (cs, c_len) = if l.tc {
            ((1, m), m * n)
        } else {
            ((n + l.pad, 1), m * (n + l.pad))
        };
        let mut want = rng.values(c_len);
        let mut got = want.clone();
        naive(a, b, &mut want, cs, l.accumulate);
        let packed = PackedB::with_isa(b, isa);
        assert_eq!((packed.k(), packed.n()), (k, n));
        gemm_packed(a, &packed, MatMut::new(&mut got, m, n, cs), l.accumulate);
        let tol = 1e-5 * (k as f32).sqrt().max(1.0);
        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{isa:?} {m}x{n}x{k} {l:?}: element {idx} is {g}, want {w}"
            );
        }
    }

    fn isas() -> Vec<Isa> {
        let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.supported()).collect();
        assert!(isas.contains(&Isa::detect()));
        isas
    }

    const PLAIN: Layout = Layout {
        ta: false,
        tb: false,
        tc: false,
        pad: 0,
        accumulate: false,
    };

    #[test]
    fn matches_naive_on_edge_shapes() {
        let mut rng = Rng(0x9ac4ed);
        // (m, n, k): ones, primes, n off the panel width, k past one block (n = 512 blocks
        // k by 256, n = 64 by 512).
        let shapes = [
            (1, 1, 1),
            (1, 7, 3),
            (5, 1, 13),
            (13, 31, 7),
            (12, 32, 1),
            (25, 33, 97),
            (37, 17, 131),
            (6, 48, 600),
            (29, 64, 1031),
            (11, 512, 523),
            (131, 96, 70),
            (25, 40, 1024),
        ];
        for isa in isas() {
            for &shape in &shapes {
                for bits in 0..16u32 {
                    let layout = Layout {
                        ta: bits & 1 != 0,
                        tb: bits & 2 != 0,
                        tc: bits & 4 != 0,
                        pad: if bits & 4 == 0 {
                            (bits as usize >> 1) & 3
                        } else {
                            0
                        },
                        accumulate: bits & 8 != 0,
                    };
                    case(isa, shape, layout, &mut rng);
                }
            }
        }
    }

    #[test]
    fn matches_naive_on_random_shapes() {
        let mut rng = Rng(0x5eed);
        for isa in isas() {
            for _ in 0..40 {
                let shape = (rng.int(1, 70), rng.int(1, 150), rng.int(1, 700));
                let bits = rng.int(0, 15) as u32;
                let layout = Layout {
                    ta: bits & 1 != 0,
                    tb: bits & 2 != 0,
                    tc: bits & 4 != 0,
                    pad: rng.int(0, 3),
                    accumulate: bits & 8 != 0,
                };
                case(isa, shape, layout, &mut rng);
            }
            // Model-sized: many full tiles, several k blocks.
            case(isa, (140, 256, 1152), PLAIN, &mut rng);
        }
    }

    /// Threads splitting a product by columns each compute whole panels of it: the same
    /// values as the whole product, into a `C` of just those columns.
    #[test]
    fn column_ranges_match_the_whole_product() {
        let mut rng = Rng(0xc015);
        for isa in isas() {
            for &(m, n, k) in &[(1, 40, 9), (13, 100, 300), (49, 512, 600), (30, 96, 1031)] {
                let a_data = rng.values(m * k);
                let b_data = rng.values(k * n);
                let a = MatRef::row_major(&a_data, m, k);
                let b = MatRef::row_major(&b_data, k, n);
                let mut want = vec![0.0f32; m * n];
                naive(a, b, &mut want, (n, 1), false);
                let packed = PackedB::with_isa(b, isa);
                let nr = packed.panel_width();
                for _ in 0..6 {
                    let start = rng.int(0, n) / nr * nr;
                    let end = rng.int(start, n);
                    let w = end - start;
                    // C with a padded row, as a slice of a wider output.
                    let mut got = vec![f32::NAN; m * (w + 3)];
                    let c = MatMut::new(&mut got, m, w, (w + 3, 1));
                    gemm_packed_cols(a, &packed, start..end, c, false);
                    let tol = 1e-5 * (k as f32).sqrt();
                    for i in 0..m {
                        for j in 0..w {
                            let (g, x) = (got[i * (w + 3) + j], want[i * n + start + j]);
                            assert!(
                                (g - x).abs() <= tol * x.abs().max(1.0),
                                "{isa:?} {m}x{n}x{k} columns {start}..{end}: ({i}, {j}) is {g}, want {x}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "not from a panel's start")]
    fn column_ranges_start_at_a_panel() {
        let b = PackedB::new(MatRef::row_major(&[0.0; 64], 1, 64));
        let mut c = [0.0f32; 63];
        gemm_packed_cols(
            MatRef::row_major(&[1.0], 1, 1),
            &b,
            1..64,
            MatMut::row_major(&mut c, 1, 63),
            false,
        );
    }

    #[test]
    fn empty_and_zero_k() {
        let b = PackedB::new(MatRef::row_major(&[], 0, 3));
        let mut c = vec![5.0f32; 6];
        gemm_packed(
            MatRef::row_major(&[], 2, 0),
            &b,
            MatMut::row_major(&mut c, 2, 3),
            true,
        );
        assert_eq!(c, vec![5.0; 6]);
        gemm_packed(
            MatRef::row_major(&[], 2, 0),
            &b,
            MatMut::row_major(&mut c, 2, 3),
            false,
        );
        assert_eq!(c, vec![0.0; 6]);
        let b = PackedB::new(MatRef::row_major(&[1.0; 12], 4, 3));
        gemm_packed(
            MatRef::row_major(&[], 0, 4),
            &b,
            MatMut::row_major(&mut [], 0, 3),
            false,
        );
        let b = PackedB::new(MatRef::row_major(&[], 4, 0));
        gemm_packed(
            MatRef::row_major(&[1.0; 8], 2, 4),
            &b,
            MatMut::row_major(&mut [], 2, 0),
            false,
        );
    }

    #[test]
    fn broadcast_a_rows() {
        let b = PackedB::new(MatRef::row_major(&[3.0, 4.0, 5.0, 6.0], 2, 2));
        let mut c = vec![0.0f32; 6];
        let a = MatRef {
            data: &[1.0, 2.0],
            rows: 3,
            cols: 2,
            strides: (0, 1),
        };
        gemm_packed(a, &b, MatMut::row_major(&mut c, 3, 2), false);
        assert_eq!(c, vec![13.0, 16.0, 13.0, 16.0, 13.0, 16.0]);
    }

    #[test]
    #[should_panic(expected = "gemm_packed: shapes do not compose: A is 2x3, B is 4x2, C is 2x2")]
    fn rejects_bad_shapes() {
        let b = PackedB::new(MatRef::row_major(&[0.0; 8], 4, 2));
        gemm_packed(
            MatRef::row_major(&[0.0; 6], 2, 3),
            &b,
            MatMut::row_major(&mut [0.0; 4], 2, 2),
            false,
        );
    }

    #[test]
    #[should_panic(
        expected = "gemm_packed: A (2x3, strides (3, 1)) needs 6 elements, its slice has 5"
    )]
    fn rejects_short_a() {
        let b = PackedB::new(MatRef::row_major(&[0.0; 6], 3, 2));
        gemm_packed(
            MatRef::row_major(&[0.0; 5], 2, 3),
            &b,
            MatMut::row_major(&mut [0.0; 4], 2, 2),
            false,
        );
    }

    #[test]
    #[should_panic(
        expected = "gemm_packed: C (2x2, strides (2, 1)) needs 4 elements, its slice has 3"
    )]
    fn rejects_short_c() {
        let b = PackedB::new(MatRef::row_major(&[0.0; 6], 3, 2));
        gemm_packed(
            MatRef::row_major(&[0.0; 6], 2, 3),
            &b,
            MatMut::row_major(&mut [0.0; 3], 2, 2),
            false,
        );
    }

    #[test]
    #[should_panic(expected = "PackedB: B (3x2, strides (2, 1)) needs 6 elements, its slice has 5")]
    fn rejects_short_b() {
        PackedB::new(MatRef::row_major(&[0.0; 5], 3, 2));
    }

    #[test]
    #[should_panic(expected = "gemm_packed: C's strides (1, 1) make distinct elements overlap")]
    fn rejects_overlapping_c() {
        let b = PackedB::new(MatRef::row_major(&[0.0; 6], 3, 2));
        gemm_packed(
            MatRef::row_major(&[0.0; 6], 2, 3),
            &b,
            MatMut::new(&mut [0.0; 4], 2, 2, (1, 1)),
            false,
        );
    }

    #[test]
    fn packed_b_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PackedB>();
    }
}
