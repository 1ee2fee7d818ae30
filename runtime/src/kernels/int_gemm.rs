//! The integer GEMM of quantized operands, shared by `matmul_integer` and `conv2d_integer`
//! (after im2col): `C = (A - a_zero_point) · (B - b_zero_point)` for i8/u8 `A` and `B`, i32
//! sums wrapping, as the IR defines them.
//!
//! B is packed once ([`PackedB`]) into panels of [`NR`] columns; rows of A are widened a
//! block of [`MC`] at a time ([`Widened`], or the convolution's im2col into one), the block in
//! L2 while every panel of B passes over it, [`MR`] rows sharing each load of B in the
//! micro-kernel ([`super::int_micro`]). The operands are i16 differences in pairs, or with
//! AVX-512 VNNI bytes in quads whose zero points are applied to each finished tile from its
//! rows' and columns' sums (see [`super::int_pack`]).
//!
//! The sums wrap in i32 on every path, which equals the interpreter's i64 sums wrapped to
//! i32.

use super::int_micro::{micro, micro_quads, QuadTerms};
pub use super::int_micro::{IntIsa, MR, NR};
pub use super::int_pack::{byte_signedness, zero_point, zero_points, ByteMat, PackedB, Widened};
use std::cell::RefCell;
use std::ops::Range;

/// Rows of A widened at a time (a multiple of [`MR`]).
pub const MC: usize = 64;

/// Rows `rows` of `a` (`_ × k`) with their zero points (`zp[i]` by absolute row, or `zp[0]`)
/// into `out`, in the form `b` takes.
///
/// # Safety
/// `a`'s strides address every element of rows `rows`, columns `..b.k`.
pub unsafe fn widen_rows(
    a: ByteMat,
    rows: Range<usize>,
    b: &PackedB,
    zp: &[i32],
    out: &mut Widened,
) {
    out.reset(b, rows.len());
    for (r, i) in rows.enumerate() {
        let z = zero_point(zp, i);
        out.begin_row(r, a.signed, z);
        out.put(r, 0, &a, (i, 0), z, b.k);
        out.end_row(r);
    }
}

/// Where a tile's rows go in C: a pointer, each row's element offset, the column stride.
pub struct COut<'a> {
    pub ptr: *mut i32,
    /// Element offset of row `r`'s first column (`r` counted from the block's first row).
    pub row: &'a dyn Fn(usize) -> usize,
    pub col_stride: usize,
}

/// `C[r][j] = (A[r] - za[r]) · (B[:, j] - zb[j])` for the rows of the widened block `a`
/// (widened for `b`) and every column of `b`, the pair kernels those of `isa`.
///
/// # Safety
/// `c` addresses, for each row of `a` and `j < b.n`, an element of C that no one else reads
/// or writes during the call.
pub unsafe fn block(isa: IntIsa, a: &Widened, b: &PackedB, c: &COut) {
    let (rows, len) = (a.rows(), b.row_len());
    let mut tile = [[0i32; NR]; MR];
    for q in 0..b.n.div_ceil(NR) {
        let cols = NR.min(b.n - q * NR);
        for r0 in (0..rows).step_by(MR) {
            if b.quads() {
                let (panel, zb, cols) = b.quad_panel(q);
                let terms = QuadTerms {
                    rows: a.row_terms(r0),
                    zb,
                    cols,
                };
                micro_quads(a.quad_block(r0), len, panel, terms, &mut tile);
            } else {
                micro(isa, a.pair_block(r0), len, b.pair_panel(q), &mut tile);
            }
            for (r, t) in tile.iter().enumerate().take(MR.min(rows - r0)) {
                let base = c.ptr.add((c.row)(r0 + r) + q * NR * c.col_stride);
                for (jj, &v) in t.iter().enumerate().take(cols) {
                    *base.add(jj * c.col_stride) = v;
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's widened rows of A (or im2col block), reused across calls.
    pub static ROWS: RefCell<Widened> = RefCell::new(Widened::default());
}

/// `C = (A - a_zp) · packed` for rows `rows` of A (`_ × k`), C's row `i` at element offset
/// `i * c_strides.0` (columns `c_strides.1` apart), on the calling thread.
///
/// # Safety
/// As for [`widen_rows`] and [`block`]: A's rows `rows` lie in its buffer, and C's elements
/// of those rows are this call's alone.
pub unsafe fn gemm_rows(
    a: ByteMat,
    a_zp: &[i32],
    b: &PackedB,
    rows: Range<usize>,
    c: *mut i32,
    c_strides: (usize, usize),
) {
    let isa = IntIsa::detect();
    ROWS.with(|s| {
        let mut w = s.borrow_mut();
        let mut i0 = rows.start;
        while i0 < rows.end {
            let i1 = (i0 + MC).min(rows.end);
            widen_rows(a, i0..i1, b, a_zp, &mut w);
            let row = |r: usize| (i0 + r) * c_strides.0;
            let out = COut {
                ptr: c,
                row: &row,
                col_stride: c_strides.1,
            };
            block(isa, &w, b, &out);
            i0 = i1;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in i64 wrapped to i32.
    fn naive(m: usize, n: usize, k: usize, a: &[i32], b: &[i32]) -> Vec<i32> {
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: i64 = (0..k)
                    .map(|p| a[i * k + p] as i64 * b[p * n + j] as i64)
                    .sum();
                c[i * n + j] = s as i32;
            }
        }
        c
    }

    #[test]
    fn matches_the_definition_on_every_isa() {
        for (m, n, k) in [(1, 1, 1), (5, 17, 3), (70, 33, 9), (4, 16, 2), (3, 40, 0)] {
            let a: Vec<u8> = (0..m * k).map(|i| (i * 37 % 256) as u8).collect();
            let b: Vec<i8> = (0..k * n).map(|i| (i * 91 % 256) as u8 as i8).collect();
            let a_zp: Vec<i32> = (0..m).map(|i| (i * 13 % 256) as i32).collect();
            let b_zp = vec![-7];
            let ad: Vec<i32> = (0..m * k)
                .map(|i| a[i] as i32 - a_zp[i / k.max(1)])
                .collect();
            let bd: Vec<i32> = b.iter().map(|&v| v as i32 + 7).collect();
            let want = naive(m, n, k, &ad, &bd);
            let am = ByteMat {
                ptr: a.as_ptr(),
                signed: false,
                strides: (k, 1),
            };
            let bm = ByteMat {
                ptr: b.as_ptr() as *const u8,
                signed: true,
                strides: (n, 1),
            };
            for isa in IntIsa::ALL.into_iter().filter(|i| i.supported()) {
                // SAFETY: dense buffers of the stated shapes.
                let packed = unsafe { PackedB::for_isa(isa, bm, k, n, &b_zp) };
                let mut c = vec![0i32; m * n];
                let mut w = Widened::default();
                // SAFETY: as above; C is dense m × n.
                unsafe {
                    widen_rows(am, 0..m, &packed, &a_zp, &mut w);
                    let row = |r: usize| r * n;
                    let out = COut {
                        ptr: c.as_mut_ptr(),
                        row: &row,
                        col_stride: 1,
                    };
                    block(isa, &w, &packed, &out);
                }
                assert_eq!(c, want, "{m}x{n}x{k} on {isa:?}");
            }
            // SAFETY: dense buffers of the stated shapes.
            let packed = unsafe { PackedB::new(bm, k, n, &b_zp) };
            // Transposed C, through `gemm_rows` in two row ranges.
            let mut ct = vec![0i32; m * n];
            // SAFETY: as above; C is dense n × m, written transposed.
            unsafe {
                gemm_rows(am, &a_zp, &packed, 0..m / 2, ct.as_mut_ptr(), (1, m));
                gemm_rows(am, &a_zp, &packed, m / 2..m, ct.as_mut_ptr(), (1, m));
            }
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(ct[j * m + i], want[i * n + j]);
                }
            }
        }
    }

    #[test]
    fn sums_wrap_in_i32() {
        // 2^17 products of 255 * 255 exceed i32; the kernel wraps like the interpreter.
        let k = 1 << 17;
        let a = vec![0u8; k];
        let b = vec![0u8; k];
        let (zp_a, zp_b) = ([-255], [255]);
        let m = |p: &[u8]| ByteMat {
            ptr: p.as_ptr(),
            signed: false,
            strides: (k, 1),
        };
        let bm = ByteMat {
            strides: (1, k),
            ..m(&b)
        };
        // SAFETY: dense buffers of the stated shapes.
        let packed = unsafe { PackedB::new(bm, k, 1, &zp_b) };
        let mut c = [0i32];
        // SAFETY: as above.
        unsafe { gemm_rows(m(&a), &zp_a, &packed, 0..1, c.as_mut_ptr(), (1, 1)) };
        assert_eq!(c[0], (-(255i64 * 255) * k as i64) as i32);
    }
}
