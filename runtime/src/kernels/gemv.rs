//! Small-`m` matrix products (`m` = 1..=4 rows of `A`: batch-1 dense layers), computed a
//! range of output columns at a time so the caller can split columns over threads.
//!
//! These products are memory-bound: every element of `B` is read once for `2·m` FLOPs, so the
//! kernels are built to stream `B` exactly once at full speed with FMAs:
//!
//! * `B` row-major (strides `(ldb, 1)`), the *axpy* form: a block of 4–8 SIMD vectors of
//!   columns stays in registers for every row of `A` at once while the kernel walks down `B`'s
//!   rows, adding `A[i, p] · B[p, cols]`; each `B` vector load feeds `m` FMAs.
//! * `B` transposed (strides `(1, ldb)`, i.e. `Bᵀ` row-major), the *dot-product* form: four
//!   columns of `B` (contiguous rows of `Bᵀ`) against every row of `A`, vectorized along `k`,
//!   summed across lanes at the end.
//! * Any other strides: a correct scalar loop.
//! * `B` constant and packed ([`gemv_packed`], one row of `A`): `B` in the GEMM's panel layout
//!   ([`PackedB`]), so each group of four panels is four contiguous streams. Weights read with
//!   their own row stride are not: with a power-of-two row length (512 floats: 2 KiB) a column
//!   block's rows all fall in a sixteenth of L2's sets and evict each other, and a batch-1 MLP
//!   whose weights fit in L2 streamed them from L3 at half the speed.
//!
//! Vectors are AVX-512 or AVX2+FMA, chosen at run time, with a scalar fallback (the shared
//! [`simd`] layer). More than four rows of `A` are done four at a time.
//!
//! [`simd`]: super::simd

use super::gemm::MatRef;
use super::packed::PackedB;
use super::simd::{self, store_first, Isa, Simd};
use std::ops::Range;
use std::sync::OnceLock;

/// `C[i, j - c_cols.start] = Σ_p A[i, p] · B[p, j]` for every row `i < a.rows` and column
/// `j` in `c_cols`. `c` is row-major `a.rows × c_cols.len()` (so threads can each take a range
/// of columns); it is overwritten.
///
/// Panics, with a message, when `A` (`m × k`) and `B` (`k × n`) do not compose, `c_cols` is
/// not inside `0..n`, `c` has not exactly `m · c_cols.len()` elements, or a slice is too short
/// for its view (see [`MatRef`]).
pub fn gemv(a: MatRef<'_>, b: MatRef<'_>, c_cols: Range<usize>, c: &mut [f32]) {
    assert!(
        a.cols == b.rows,
        "gemv: A is {}x{} but B is {}x{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    assert!(
        c_cols.start <= c_cols.end && c_cols.end <= b.cols,
        "gemv: columns {c_cols:?} out of 0..{}",
        b.cols
    );
    assert!(
        c.len() == a.rows * c_cols.len(),
        "gemv: C has {} elements, expected {}x{}",
        c.len(),
        a.rows,
        c_cols.len()
    );
    check_view("A", &a);
    check_view("B", &b);
    if c.is_empty() {
        return;
    }
    if a.cols == 0 {
        c.fill(0.0);
        return;
    }
    static ISA: OnceLock<Isa> = OnceLock::new();
    let isa = *ISA.get_or_init(Isa::detect);
    if b.strides.1 == 1 {
        axpy(isa, &a, &b, c_cols, c);
    } else if b.strides.0 == 1 {
        dot(isa, &a, &b, c_cols, c);
    } else {
        naive(&a, &b, c_cols, c);
    }
}

/// `c[j - cols.start] = Σ_p a[p] · B[p, j]` for every column `j` in `cols`, with `B` packed
/// (`a` is one row of `A`, contiguous). Threads split `B` by panels: `cols.start` is a
/// multiple of [`PackedB::panel_width`].
///
/// Panics, with a message, when `a` is not `k` long, `cols` is not inside `0..n` or starts
/// inside a panel, or `c` is not `cols.len()` long.
pub fn gemv_packed(a: &[f32], b: &PackedB, cols: Range<usize>, c: &mut [f32]) {
    let nr = b.panel_width();
    assert!(
        a.len() == b.k(),
        "gemv_packed: A has {} elements, B has {} rows",
        a.len(),
        b.k()
    );
    assert!(
        cols.start <= cols.end && cols.end <= b.n() && cols.start.is_multiple_of(nr),
        "gemv_packed: columns {cols:?} out of 0..{} or not from a panel's start ({nr} wide)",
        b.n()
    );
    assert!(
        c.len() == cols.len(),
        "gemv_packed: C has {} elements for columns {cols:?}",
        c.len()
    );
    if c.is_empty() {
        return;
    }
    if b.k() == 0 {
        c.fill(0.0);
        return;
    }
    match b.isa() {
        // `b` was packed for an instruction set this CPU runs (`PackedB`'s invariant); its
        // panels are two vectors wide for both.
        isa @ (Isa::Avx512 | Isa::Avx2) => packed_panels(isa, a, b, cols, c),
        Isa::Scalar => {
            for (dst, j) in c.iter_mut().zip(cols) {
                let (jp, jj) = (j - j % nr, j % nr);
                let mut acc = 0.0f32;
                for k0 in (0..b.k()).step_by(b.kc()) {
                    for (p, row) in b.panel(k0, jp).chunks_exact(nr).enumerate() {
                        acc += a[k0 + p] * row[jj];
                    }
                }
                *dst = acc;
            }
        }
    }
}

simd::multiversion!(fn packed_panels(a: &[f32], b: &PackedB, cols: Range<usize>, c: &mut [f32]) => packed_panels_generic);

/// [`gemv_packed`] with vectors: four panels at a time, then what is left.
#[inline(always)]
fn packed_panels_generic<S: Simd>(a: &[f32], b: &PackedB, cols: Range<usize>, c: &mut [f32]) {
    let nr = b.panel_width();
    assert_eq!(
        nr,
        2 * S::LANES,
        "gemv_packed: panels of {nr} for {} lanes",
        S::LANES
    );
    let mut j0 = cols.start;
    while j0 < cols.end {
        let panels = (cols.end - j0).div_ceil(nr).min(4);
        let out = &mut c[j0 - cols.start..];
        let w = (panels * nr).min(cols.end - j0);
        match panels {
            4 => panel_group::<S, 4>(a, b, j0, &mut out[..w]),
            3 => panel_group::<S, 3>(a, b, j0, &mut out[..w]),
            2 => panel_group::<S, 2>(a, b, j0, &mut out[..w]),
            _ => panel_group::<S, 1>(a, b, j0, &mut out[..w]),
        }
        j0 += panels * nr;
    }
}

/// Columns `j0..j0 + out.len()` (at most `G` panels, `j0` a panel's start) with every
/// accumulator in a register, summed over all of `B`'s `k` blocks.
#[inline(always)]
fn panel_group<S: Simd, const G: usize>(a: &[f32], b: &PackedB, j0: usize, out: &mut [f32]) {
    let nr = 2 * S::LANES;
    debug_assert!(out.len() <= G * nr && out.len() > (G - 1) * nr);
    // SAFETY: the CPU runs `S` (multiversion!).
    let mut acc = [[unsafe { S::zero() }; 2]; G];
    for k0 in (0..b.k()).step_by(b.kc()) {
        // The `G` panels from `j0` (each starts below `n`: the caller's group).
        let panels: [&[f32]; G] = std::array::from_fn(|g| b.panel(k0, j0 + g * nr));
        let kb = panels[0].len() / nr;
        // SAFETY: each panel holds `kb` rows of `nr = 2 · LANES` floats; `k0 + p < k ==
        // a.len()`. The CPU runs `S` (multiversion!).
        unsafe {
            for p in 0..kb {
                let av = S::splat(*a.get_unchecked(k0 + p));
                for (panel, acc) in panels.iter().zip(acc.iter_mut()) {
                    let q = panel.as_ptr().add(p * nr);
                    acc[0] = S::fma(av, S::load(q), acc[0]);
                    acc[1] = S::fma(av, S::load(q.add(S::LANES)), acc[1]);
                }
            }
        }
    }
    for (v, &x) in acc.iter().flatten().enumerate() {
        let at = v * S::LANES;
        if at < out.len() {
            // SAFETY: `out.len() - at` floats from `at` are in `out` (the first LANES of them
            // written); the CPU runs `S`.
            unsafe { store_first::<S>(out.as_mut_ptr().add(at), x, out.len() - at) };
        }
    }
}

/// Panics unless `m`'s slice holds every element its view addresses.
fn check_view(name: &str, m: &MatRef<'_>) {
    if m.rows == 0 || m.cols == 0 {
        return;
    }
    let last = (m.rows - 1)
        .checked_mul(m.strides.0)
        .and_then(|r| r.checked_add((m.cols - 1).checked_mul(m.strides.1)?));
    match last {
        Some(last) if last < m.data.len() => {}
        _ => panic!(
            "gemv: {name} ({}x{}, strides {:?}) needs more than the {} elements of its slice",
            m.rows,
            m.cols,
            m.strides,
            m.data.len()
        ),
    }
}

/// Any strides.
fn naive(a: &MatRef<'_>, b: &MatRef<'_>, cols: Range<usize>, c: &mut [f32]) {
    let n = cols.len();
    for i in 0..a.rows {
        for (jj, j) in cols.clone().enumerate() {
            let mut acc = 0.0f32;
            for p in 0..a.cols {
                acc += a.data[i * a.strides.0 + p * a.strides.1]
                    * b.data[p * b.strides.0 + j * b.strides.1];
            }
            c[i * n + jj] = acc;
        }
    }
}

simd::multiversion!(fn axpy(a: &MatRef<'_>, b: &MatRef<'_>, cols: Range<usize>, c: &mut [f32]) => axpy_generic);

/// The axpy form, `B` row-major: rows of `A` four at a time.
#[inline(always)]
fn axpy_generic<S: Simd>(a: &MatRef<'_>, b: &MatRef<'_>, cols: Range<usize>, c: &mut [f32]) {
    let n = cols.len();
    for (i0, c) in (0..a.rows).step_by(4).zip(c.chunks_mut(4 * n)) {
        match a.rows - i0 {
            1 => axpy_rows::<S, 1, 8>(a, i0, b, cols.clone(), c),
            2 => axpy_rows::<S, 2, 8>(a, i0, b, cols.clone(), c),
            3 => axpy_rows::<S, 3, 4>(a, i0, b, cols.clone(), c),
            _ => axpy_rows::<S, 4, 4>(a, i0, b, cols.clone(), c),
        }
    }
}

/// Rows `i0..i0 + MR` of `C` (`c` holds them), columns `cols`: blocks of `NV` vectors, then
/// single vectors, then single columns.
#[inline(always)]
fn axpy_rows<S: Simd, const MR: usize, const NV: usize>(
    a: &MatRef<'_>,
    i0: usize,
    b: &MatRef<'_>,
    cols: Range<usize>,
    c: &mut [f32],
) {
    let n = cols.len();
    debug_assert!(c.len() == MR * n && i0 + MR <= a.rows);
    let mut j = cols.start;
    while j + NV * S::LANES <= cols.end {
        axpy_block::<S, MR, NV>(a, i0, b, j, c, j - cols.start, n, S::LANES);
        j += NV * S::LANES;
    }
    while j + S::LANES <= cols.end {
        axpy_block::<S, MR, 1>(a, i0, b, j, c, j - cols.start, n, S::LANES);
        j += S::LANES;
    }
    if j < cols.end {
        // The last columns as one partial (masked) vector.
        axpy_block::<S, MR, 1>(a, i0, b, j, c, j - cols.start, n, cols.end - j);
    }
}

/// `C[i0.., jc..jc + w] = A[i0.., :] · B[:, j..j + w]` with every accumulator in a register,
/// `w = NV·LANES` when `lanes == LANES`, else `w = lanes < LANES` with `NV == 1` (a masked
/// tail); `ldc` is `C`'s row length.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn axpy_block<S: Simd, const MR: usize, const NV: usize>(
    a: &MatRef<'_>,
    i0: usize,
    b: &MatRef<'_>,
    j: usize,
    c: &mut [f32],
    jc: usize,
    ldc: usize,
    lanes: usize,
) {
    let full = lanes == S::LANES;
    assert!(full || (NV == 1 && lanes < S::LANES));
    let (ars, acs, ldb) = (a.strides.0, a.strides.1, b.strides.0);
    let w = if full { NV * S::LANES } else { lanes };
    debug_assert!(j + w <= b.cols && jc + w <= ldc);
    // SAFETY: `gemv` checked that both slices hold every element of their views: A's
    // `(i0 + i, p)` with `i0 + i < a.rows`, `p < k`, and B's `(p, j + l)` for `l < w` with
    // `j + w <= b.cols` (B's column stride is 1 here; masked accesses touch only `l < w`).
    // C's offsets `i·ldc + jc + l` are below `MR·ldc`, the length of `c`.
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        let bp = b.data.as_ptr().add(j);
        let ap = a.data.as_ptr().add(i0 * ars);
        for p in 0..a.cols {
            let row = bp.add(p * ldb);
            // (Loops, not closures: a closure would not inherit the target features.)
            let mut bv = [S::zero(); NV];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = if full {
                    S::load(row.add(v * S::LANES))
                } else {
                    S::load_n(row, lanes)
                };
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                let av = S::splat(*ap.add(i * ars + p * acs));
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = S::fma(av, bv, *acc);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                let dst = c.as_mut_ptr().add(i * ldc + jc + v * S::LANES);
                if full {
                    S::store(dst, acc)
                } else {
                    S::store_n(dst, acc, lanes)
                }
            }
        }
    }
}

simd::multiversion!(fn dot(a: &MatRef<'_>, b: &MatRef<'_>, cols: Range<usize>, c: &mut [f32]) => dot_generic);

/// The dot-product form, `B` with unit row stride (`Bᵀ` row-major): rows of `A` four at a
/// time, each made contiguous first if it is not.
#[inline(always)]
fn dot_generic<S: Simd>(a: &MatRef<'_>, b: &MatRef<'_>, cols: Range<usize>, c: &mut [f32]) {
    let (n, k) = (cols.len(), a.cols);
    // A's rows as contiguous slices (copied only if A's column stride is not 1).
    let packed: Vec<f32>;
    let (adata, ars) = if a.strides.1 == 1 {
        (a.data, a.strides.0)
    } else {
        packed = (0..a.rows)
            .flat_map(|i| (0..k).map(move |p| a.data[i * a.strides.0 + p * a.strides.1]))
            .collect();
        (&packed[..], k)
    };
    for (i0, c) in (0..a.rows).step_by(4).zip(c.chunks_mut(4 * n)) {
        let row = |r: usize| &adata[(i0 + r) * ars..][..k];
        match a.rows - i0 {
            1 => dot_rows::<S, 1>(std::array::from_fn(row), b, cols.clone(), c),
            2 => dot_rows::<S, 2>(std::array::from_fn(row), b, cols.clone(), c),
            3 => dot_rows::<S, 3>(std::array::from_fn(row), b, cols.clone(), c),
            _ => dot_rows::<S, 4>(std::array::from_fn(row), b, cols.clone(), c),
        }
    }
}

/// `MR` rows of `C` (`c`, row length `cols.len()`): four columns at a time, then one.
#[inline(always)]
fn dot_rows<S: Simd, const MR: usize>(
    a: [&[f32]; MR],
    b: &MatRef<'_>,
    cols: Range<usize>,
    c: &mut [f32],
) {
    let n = cols.len();
    let mut j = cols.start;
    while j + 4 <= cols.end {
        dot_block::<S, MR, 4>(&a, b, j, c, j - cols.start, n);
        j += 4;
    }
    while j < cols.end {
        dot_block::<S, MR, 1>(&a, b, j, c, j - cols.start, n);
        j += 1;
    }
}

/// `C[i, jc + jj] = A[i, :] · B[:, j + jj]` for `i < MR`, `jj < NJ`.
#[inline(always)]
fn dot_block<S: Simd, const MR: usize, const NJ: usize>(
    a: &[&[f32]; MR],
    b: &MatRef<'_>,
    j: usize,
    c: &mut [f32],
    jc: usize,
    ldc: usize,
) {
    let k = b.rows;
    let ldb = b.strides.1;
    assert!(a.iter().all(|r| r.len() == k));
    debug_assert!(j + NJ <= b.cols && jc + NJ <= ldc && c.len() == MR * ldc);
    // SAFETY: `gemv` checked that B's slice holds `(p, j + jj)` at offset `p + (j + jj)·ldb`
    // for `p < k`, `j + jj < b.cols`; A's rows are `k` long (asserted); C's offsets
    // `i·ldc + jc + jj` are below `MR·ldc`.
    unsafe {
        let bp: [*const f32; NJ] = std::array::from_fn(|jj| b.data.as_ptr().add((j + jj) * ldb));
        let mut acc = [[S::zero(); NJ]; MR];
        let mut p = 0;
        while p + S::LANES <= k {
            let mut bv = [S::zero(); NJ];
            for (bv, bp) in bv.iter_mut().zip(&bp) {
                *bv = S::load(bp.add(p));
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                let av = S::load(a[i].as_ptr().add(p));
                for (acc, &bv) in acc.iter_mut().zip(&bv) {
                    *acc = S::fma(av, bv, *acc);
                }
            }
            p += S::LANES;
        }
        for (i, acc) in acc.iter().enumerate() {
            for (jj, &acc) in acc.iter().enumerate() {
                let mut s = S::sum(acc);
                for q in p..k {
                    s += *a[i].get_unchecked(q) * *bp[jj].add(q);
                }
                *c.get_unchecked_mut(i * ldc + jc + jj) = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::tests::{assert_close, Rng};

    /// Checks every row/column sub-range split of one shape against a naive f64 product.
    fn check(rng: &mut Rng, m: usize, k: usize, n: usize, layout: usize) {
        let a_data = rng.values(m * k + 3);
        let b_data = rng.values(k * n + 5);
        // A row-major, or column-major (stride (1, m)).
        let a = if layout & 1 == 0 {
            MatRef::row_major(&a_data, m, k)
        } else {
            MatRef::row_major(&a_data, k, m).t()
        };
        // B row-major, transposed, padded row-major (ldb = n + 3), or a strided oddity.
        let b_store = rng.values(k * (n + 3) + 2 * k * n + 1);
        let b = match layout >> 1 {
            0 => MatRef::row_major(&b_data, k, n),
            1 => MatRef::row_major(&b_data, n, k).t(),
            2 => MatRef {
                data: &b_store,
                rows: k,
                cols: n,
                strides: (n + 3, 1),
            },
            _ => MatRef {
                data: &b_store,
                rows: k,
                cols: n,
                strides: (2, 2 * k),
            },
        };
        let want: Vec<f32> = (0..m)
            .flat_map(|i| {
                (0..n).map(move |j| {
                    (0..k)
                        .map(|p| {
                            a.data[i * a.strides.0 + p * a.strides.1] as f64
                                * b.data[p * b.strides.0 + j * b.strides.1] as f64
                        })
                        .sum::<f64>() as f32
                })
            })
            .collect();
        let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 2.0;
        let what = format!("gemv {m}x{k}x{n} layout {layout}");
        let mut got = vec![f32::NAN; m * n];
        gemv(a, b, 0..n, &mut got);
        assert_close(&got, &want, tol, &what);
        let (x, y) = (rng.int(0, n), rng.int(0, n));
        let cols = x.min(y)..x.max(y);
        let mut got = vec![f32::NAN; m * cols.len()];
        gemv(a, b, cols.clone(), &mut got);
        let want_cols: Vec<f32> = (0..m)
            .flat_map(|i| want[i * n + cols.start..i * n + cols.end].to_vec())
            .collect();
        assert_close(&got, &want_cols, tol, &format!("{what} cols {cols:?}"));
    }

    #[test]
    fn matches_naive_product() {
        let mut rng = Rng(0x6e3f);
        for &(k, n) in &[
            (1, 1),
            (7, 3),
            (16, 16),
            (33, 130),
            (784, 512),
            (100, 257),
            (0, 5),
        ] {
            for m in 1..=6 {
                for layout in 0..8 {
                    check(&mut rng, m, k, n, layout);
                }
            }
        }
        for _ in 0..100 {
            let (m, k, n, layout) = (rng.int(1, 5), rng.int(1, 90), rng.int(1, 90), rng.int(0, 7));
            check(&mut rng, m, k, n, layout);
        }
    }

    /// Packed `B` for every instruction set this CPU runs, `k` across block boundaries, `n`
    /// across panel and group edges, and column ranges as threads split them (by panels).
    #[test]
    fn packed_matches_naive_product() {
        let mut rng = Rng(0x9a1d);
        for &(k, n) in &[
            (1, 1),
            (5, 31),
            (64, 32),
            (300, 129),
            (784, 512),
            (1300, 1000),
            (0, 40),
        ] {
            let a = rng.values(k);
            let b_data = rng.values(k * n);
            for bt in [false, true] {
                let b = if bt {
                    MatRef::row_major(&b_data, n, k).t()
                } else {
                    MatRef::row_major(&b_data, k, n)
                };
                let want: Vec<f32> = (0..n)
                    .map(|j| {
                        (0..k)
                            .map(|p| a[p] as f64 * b.data[p * b.strides.0 + j * b.strides.1] as f64)
                            .sum::<f64>() as f32
                    })
                    .collect();
                let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 2.0;
                for isa in Isa::all_supported() {
                    let packed = PackedB::with_isa(b, isa);
                    let nr = packed.panel_width();
                    let what = format!("gemv_packed {isa:?} {k}x{n} transposed {bt}");
                    let mut got = vec![f32::NAN; n];
                    gemv_packed(&a, &packed, 0..n, &mut got);
                    assert_close(&got, &want, tol, &what);
                    let start = rng.int(0, n) / nr * nr;
                    let end = rng.int(start, n);
                    let mut got = vec![f32::NAN; end - start];
                    gemv_packed(&a, &packed, start..end, &mut got);
                    assert_close(
                        &got,
                        &want[start..end],
                        tol,
                        &format!("{what} cols {start}..{end}"),
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "not from a panel's start")]
    fn packed_columns_start_at_a_panel() {
        let b = [0.0f32; 64];
        let packed = PackedB::new(MatRef::row_major(&b, 2, 32));
        gemv_packed(&[0.0; 2], &packed, 1..32, &mut [0.0; 31]);
    }

    #[test]
    #[should_panic(expected = "gemv: B (3x4, strides (4, 1)) needs more than the 11 elements")]
    fn short_slices_panic() {
        let (a, b) = ([0.0f32; 3], [0.0f32; 11]);
        gemv(
            MatRef::row_major(&a, 1, 3),
            MatRef::row_major(&b, 3, 4),
            0..4,
            &mut [0.0; 4],
        );
    }
}
