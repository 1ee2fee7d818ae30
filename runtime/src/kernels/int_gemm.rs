//! The integer GEMM of quantized operands, shared by `matmul_integer` and `conv2d_integer`
//! (after im2col): `C = (A - a_zero_point) · (B - b_zero_point)` for i8/u8 `A` and `B`, i32
//! sums wrapping, as the IR defines them.
//!
//! Both operands become i16 differences (`|x - zero_point| <= 255`, so a product is exact in
//! i32 and so is the sum of two). B is packed once ([`PackedB`]) into panels of [`NR`] columns
//! whose rows come in interleaved pairs (`b[2p][j], b[2p+1][j]`); rows of A are widened into
//! blocks of the same pairs ([`widen_rows`], or the convolution's im2col). One multiply-add
//! instruction then takes two k steps of a row against a panel row pair
//! ([`super::int_micro`]: AVX-512 VNNI `vpdpwssd`, or `vpmaddwd`), and [`MR`] rows share each
//! load of B. Rows go in blocks of [`MC`], each block's A in L2 while every panel of B passes
//! over it.
//!
//! The sums wrap in i32 on every path, which equals the interpreter's i64 sums wrapped to
//! i32.

use super::int_micro::micro;
pub use super::int_micro::{IntIsa, MR, NR};
use lathe_ir::DType;
use std::cell::RefCell;
use std::ops::Range;

/// Rows of A widened at a time (a multiple of [`MR`]).
pub const MC: usize = 64;

/// An i8 or u8 matrix read through strides (in elements, which are bytes).
#[derive(Clone, Copy, Debug)]
pub struct ByteMat {
    pub ptr: *const u8,
    /// i8 when true, u8 otherwise.
    pub signed: bool,
    /// `(row, column)` strides.
    pub strides: (usize, usize),
}

impl ByteMat {
    /// Element `(i, j)` widened.
    ///
    /// # Safety
    /// The strides address element `(i, j)` inside the matrix's buffer.
    #[inline(always)]
    pub unsafe fn at(&self, i: usize, j: usize) -> i32 {
        let p = self.ptr.add(i * self.strides.0 + j * self.strides.1);
        if self.signed {
            *(p as *const i8) as i32
        } else {
            *p as i32
        }
    }
}

impl ByteMat {
    /// Elements `(i, j0 ..)` minus `zp`, as many as `out` holds, into `out`.
    ///
    /// # Safety
    /// The strides address every element read inside the matrix's buffer.
    #[inline]
    pub unsafe fn widen_run(&self, i: usize, j0: usize, zp: i32, out: &mut [i16]) {
        let p = self.ptr.add(i * self.strides.0 + j0 * self.strides.1);
        let n = out.len();
        // Contiguous runs (the usual case) as plain slices, which vectorize.
        match (self.strides.1, self.signed) {
            (1, true) => {
                let src = std::slice::from_raw_parts(p as *const i8, n);
                for (o, &v) in out.iter_mut().zip(src) {
                    *o = (v as i32 - zp) as i16;
                }
            }
            (1, false) => {
                let src = std::slice::from_raw_parts(p, n);
                for (o, &v) in out.iter_mut().zip(src) {
                    *o = (v as i32 - zp) as i16;
                }
            }
            (_, _) => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = (self.at(i, j0 + j) - zp) as i16;
                }
            }
        }
    }
}

/// Whether `dt` is a signed byte (i8) or an unsigned one (u8); `None` for other dtypes.
pub fn byte_signedness(dt: DType) -> Option<bool> {
    match dt {
        DType::I8 => Some(true),
        DType::U8 => Some(false),
        _ => None,
    }
}

/// The values of a zero-point buffer of `len` i8/u8 elements, widened.
///
/// # Safety
/// `ptr` addresses `len` elements of the byte dtype `signed` says.
pub unsafe fn zero_points(ptr: *const u8, signed: bool, len: usize) -> Vec<i32> {
    let m = ByteMat {
        ptr,
        signed,
        strides: (0, 1),
    };
    (0..len).map(|j| m.at(0, j)).collect()
}

/// `zp[i]` for a per-index list, `zp[0]` for a per-tensor one.
#[inline(always)]
fn zero_point(zp: &[i32], i: usize) -> i32 {
    if zp.len() == 1 {
        zp[0]
    } else {
        zp[i]
    }
}

/// `k` rounded up to a whole number of pairs.
pub fn paired(k: usize) -> usize {
    k + (k & 1)
}

/// B (`k × n`) minus its zero points as i16, in panels of [`NR`] columns of interleaved row
/// pairs; columns past `n` and the row past an odd `k` are zero.
#[derive(Clone, Debug)]
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    data: Vec<i16>,
}

impl PackedB {
    /// Packs `b` (`k × n`), each column minus its zero point (`zp[j]`, or `zp[0]` for all).
    ///
    /// # Safety
    /// `b`'s strides address every element `(p, j)`, `p < k`, `j < n`, inside its buffer.
    pub unsafe fn new(b: ByteMat, k: usize, n: usize, zp: &[i32]) -> PackedB {
        let kp = paired(k);
        let mut data = vec![0i16; n.div_ceil(NR) * kp * NR];
        // (An empty k leaves no panel to fill: every sum is 0.)
        for (q, panel) in data.chunks_mut((kp * NR).max(1)).enumerate() {
            for jj in 0..NR.min(n - q * NR) {
                let j = q * NR + jj;
                let z = zero_point(zp, j);
                for p in 0..k {
                    panel[(p / 2) * 2 * NR + jj * 2 + (p & 1)] = (b.at(p, j) - z) as i16;
                }
            }
        }
        PackedB { k, n, data }
    }

    /// Panel `q`: columns `q * NR ..`, `paired(k) * NR` values.
    fn panel(&self, q: usize) -> &[i16] {
        let len = paired(self.k) * NR;
        &self.data[q * len..(q + 1) * len]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// Rows `rows` of `a` (`_ × k`) minus their zero points (`zp[i]` by absolute row, or `zp[0]`)
/// into `out`, `paired(k)` i16 per row (the pad column zero), rows past the range zero up to
/// a whole number of [`MR`]-row blocks.
///
/// # Safety
/// `a`'s strides address every element of rows `rows`, columns `..k`.
pub unsafe fn widen_rows(a: ByteMat, rows: Range<usize>, k: usize, zp: &[i32], out: &mut Vec<i16>) {
    let kp = paired(k);
    let n = rows.len().next_multiple_of(MR);
    out.clear();
    out.resize(n * kp, 0);
    for (r, i) in rows.enumerate() {
        a.widen_run(i, 0, zero_point(zp, i), &mut out[r * kp..r * kp + k]);
    }
}

/// Where a tile's rows go in C: a pointer, each row's element offset, the column stride.
pub struct COut<'a> {
    pub ptr: *mut i32,
    /// Element offset of row `r`'s first column (`r` counted from the block's first row).
    pub row: &'a dyn Fn(usize) -> usize,
    pub col_stride: usize,
}

/// `C[r][j] = A16[r] · B[:, j]` for the `rows` rows of the widened block `a16` (`paired(k)`
/// i16 per row, a whole number of [`MR`]-row blocks) and every column of `b`.
///
/// # Safety
/// `c` addresses, for each `r < rows` and `j < b.n`, an element of C that no one else reads
/// or writes during the call.
pub unsafe fn block(isa: IntIsa, a16: &[i16], rows: usize, b: &PackedB, c: &COut) {
    let kp = paired(b.k);
    debug_assert!(a16.len() >= rows.next_multiple_of(MR) * kp);
    let mut tile = [[0i32; NR]; MR];
    for q in 0..b.n.div_ceil(NR) {
        let panel = b.panel(q);
        let cols = NR.min(b.n - q * NR);
        for r0 in (0..rows).step_by(MR) {
            micro(isa, &a16[r0 * kp..(r0 + MR) * kp], kp, panel, &mut tile);
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
    pub static A16: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
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
    A16.with(|s| {
        let mut a16 = s.borrow_mut();
        let mut i0 = rows.start;
        while i0 < rows.end {
            let i1 = (i0 + MC).min(rows.end);
            widen_rows(a, i0..i1, b.k, a_zp, &mut a16);
            let row = |r: usize| (i0 + r) * c_strides.0;
            let out = COut {
                ptr: c,
                row: &row,
                col_stride: c_strides.1,
            };
            block(isa, &a16, i1 - i0, b, &out);
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
            // SAFETY: dense buffers of the stated shapes.
            let packed = unsafe { PackedB::new(bm, k, n, &b_zp) };
            for isa in IntIsa::ALL.into_iter().filter(|i| i.supported()) {
                let mut c = vec![0i32; m * n];
                let mut a16 = vec![];
                // SAFETY: as above; C is dense m × n.
                unsafe {
                    widen_rows(am, 0..m, k, &a_zp, &mut a16);
                    let row = |r: usize| r * n;
                    let out = COut {
                        ptr: c.as_mut_ptr(),
                        row: &row,
                        col_stride: 1,
                    };
                    block(isa, &a16, m, &packed, &out);
                }
                assert_eq!(c, want, "{m}x{n}x{k} on {isa:?}");
            }
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
