//! The integer GEMM's micro-kernels ([`super::int_gemm`]): one [`MR`] × [`NR`] tile of i32
//! sums `tile[r][j] = Σ_p a[r][p] · b[p][j]` over i16 operands laid out in k pairs (A: row
//! `r`'s values `a[r][2p], a[r][2p+1]` adjacent; B: a panel row pair `b[2p][j], b[2p+1][j]`
//! adjacent for each column `j`), so that one multiply-add instruction takes two k steps:
//!
//! | ISA | per k pair and row |
//! |---|---|
//! | AVX-512 VNNI | one `vpdpwssd` (multiply, add pairs, accumulate) on 16 columns |
//! | AVX-512BW | `vpmaddwd` + `vpaddd` on 16 columns |
//! | AVX2 | `vpmaddwd` + `vpaddd` on two halves of 8 columns (rows four at a time) |
//! | portable | the same sums in Rust |
//!
//! With AVX-512 VNNI the operands may instead be bytes in quads ([`micro_quads`]: u8 A, i8
//! B, `vpdpbusd`: four k steps of 16 columns per instruction), the zero points applied by the
//! caller (see `int_pack`).
//!
//! The operands are differences of bytes (`|v| <= 255`), so each pair sum is exact in i32 and
//! no instruction saturates; the accumulation wraps in i32 on every path.

use std::sync::OnceLock;

/// Columns of a panel of B (and of a tile of C).
pub const NR: usize = 16;
/// Rows of C a micro-kernel computes together.
pub const MR: usize = 8;

/// An instruction set the micro-kernels are compiled for, chosen at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntIsa {
    /// AVX-512F, BW and VNNI.
    Vnni512,
    /// AVX-512F and BW.
    Avx512,
    /// AVX2.
    Avx2,
    /// Portable Rust.
    Portable,
}

impl IntIsa {
    /// Every instruction set, widest first.
    pub const ALL: [IntIsa; 4] = [
        IntIsa::Vnni512,
        IntIsa::Avx512,
        IntIsa::Avx2,
        IntIsa::Portable,
    ];

    /// Whether this CPU runs code compiled for the instruction set.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::cpu::has_feature as has;
            let avx512 = || has("avx512f") && has("avx512bw");
            match self {
                IntIsa::Vnni512 => avx512() && has("avx512vnni"),
                IntIsa::Avx512 => avx512(),
                IntIsa::Avx2 => has("avx2"),
                IntIsa::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == IntIsa::Portable
        }
    }

    /// The widest instruction set this CPU runs (detected once per process).
    pub fn detect() -> IntIsa {
        static BEST: OnceLock<IntIsa> = OnceLock::new();
        *BEST.get_or_init(|| {
            IntIsa::ALL
                .into_iter()
                .find(|isa| isa.supported())
                .unwrap_or(IntIsa::Portable)
        })
    }
}

/// One tile: `a` holds [`MR`] rows of `kp` (even) values, `panel` `kp / 2` pair rows of
/// `2 * NR` values. `isa` must be [`IntIsa::supported`].
#[inline]
pub fn micro(isa: IntIsa, a: &[i16], kp: usize, panel: &[i16], tile: &mut [[i32; NR]; MR]) {
    assert!(a.len() >= MR * kp && panel.len() >= kp * NR && kp.is_multiple_of(2));
    debug_assert!(isa.supported());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instruction set (the caller's contract, checked above in debug
    // builds), and the slices hold what the kernels read (asserted above).
    unsafe {
        match isa {
            IntIsa::Vnni512 => return vnni512(a.as_ptr(), kp, panel.as_ptr(), tile),
            IntIsa::Avx512 => return avx512(a.as_ptr(), kp, panel.as_ptr(), tile),
            IntIsa::Avx2 => {
                for half in 0..2 {
                    let rows = &mut tile[4 * half..4 * half + 4];
                    avx2(a.as_ptr().add(4 * half * kp), kp, panel.as_ptr(), rows);
                }
                return;
            }
            IntIsa::Portable => {}
        }
    }
    portable(a, kp, panel, tile);
}

/// The zero points of a tile of quads: per row `(za, Σa)`, per column `zb` and `Σb - k·zb`,
/// so that `Σ (a - za)(b - zb) = Σ ab - zb·Σa - za·(Σb - k·zb)`.
#[derive(Clone, Copy, Debug)]
pub struct QuadTerms<'a> {
    pub rows: &'a [[i32; 2]],
    pub zb: &'a [i32],
    pub cols: &'a [i32],
}

/// One tile of sums of byte quads minus the zero points' terms: `a` holds [`MR`] rows of `kq`
/// u8 values (a multiple of 4), `panel` `kq / 4` quad rows of `4 * NR` i8 values. Needs
/// [`IntIsa::Vnni512`] (checked).
#[inline]
pub fn micro_quads(
    a: &[u8],
    kq: usize,
    panel: &[i8],
    terms: QuadTerms,
    tile: &mut [[i32; NR]; MR],
) {
    assert!(a.len() >= MR * kq && panel.len() >= kq * NR && kq.is_multiple_of(4));
    assert!(terms.rows.len() >= MR && terms.zb.len() >= NR && terms.cols.len() >= NR);
    // (Quads are packed only where this holds; `detect` is one load after the first call.)
    assert!(
        IntIsa::detect() == IntIsa::Vnni512,
        "quads need AVX-512 VNNI"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512 VNNI and the slices hold what the kernel reads (asserted).
    unsafe {
        vnni512_quads(a.as_ptr(), kq, panel.as_ptr(), terms, tile)
    };
    #[cfg(not(target_arch = "x86_64"))]
    portable_quads(a, kq, panel, terms, tile);
}

/// [`micro_quads`] in Rust, the reference of its tests.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn portable_quads(a: &[u8], kq: usize, panel: &[i8], terms: QuadTerms, tile: &mut [[i32; NR]; MR]) {
    *tile = [[0; NR]; MR];
    for q in 0..kq / 4 {
        let bq = &panel[q * 4 * NR..(q + 1) * 4 * NR];
        for (r, acc) in tile.iter_mut().enumerate() {
            let aq = &a[r * kq + 4 * q..r * kq + 4 * q + 4];
            for (j, o) in acc.iter_mut().enumerate() {
                let s: i32 = (0..4).map(|t| aq[t] as i32 * bq[4 * j + t] as i32).sum();
                *o = o.wrapping_add(s);
            }
        }
    }
    for (acc, &[za, sa]) in tile.iter_mut().zip(terms.rows) {
        for (j, o) in acc.iter_mut().enumerate() {
            *o = o
                .wrapping_sub(terms.zb[j].wrapping_mul(sa))
                .wrapping_sub(za.wrapping_mul(terms.cols[j]));
        }
    }
}

fn portable(a: &[i16], kp: usize, panel: &[i16], tile: &mut [[i32; NR]; MR]) {
    *tile = [[0; NR]; MR];
    for p in 0..kp / 2 {
        let bp = &panel[p * 2 * NR..(p + 1) * 2 * NR];
        for (r, acc) in tile.iter_mut().enumerate() {
            let (a0, a1) = (a[r * kp + 2 * p] as i32, a[r * kp + 2 * p + 1] as i32);
            for (j, o) in acc.iter_mut().enumerate() {
                let s = a0 * bp[2 * j] as i32 + a1 * bp[2 * j + 1] as i32;
                *o = o.wrapping_add(s);
            }
        }
    }
}

/// Row `r`'s pair `p` of `a` as one i32 (two i16, the first in the low half).
///
/// # Safety
/// `a` addresses at least `r * kp + 2 * p + 2` values.
#[inline(always)]
unsafe fn pair(a: *const i16, kp: usize, r: usize, p: usize) -> i32 {
    (a.add(r * kp + 2 * p) as *const i32).read_unaligned()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni512(a: *const i16, kp: usize, panel: *const i16, tile: &mut [[i32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_si512(); MR];
    for p in 0..kp / 2 {
        let b = _mm512_loadu_si512(panel.add(p * 2 * NR) as *const _);
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_epi32(pair(a, kp, r, p));
            *acc = _mm512_dpwssd_epi32(*acc, av, b);
        }
    }
    for (t, acc) in tile.iter_mut().zip(acc) {
        _mm512_storeu_si512(t.as_mut_ptr() as *mut _, acc);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni512_quads(
    a: *const u8,
    kq: usize,
    panel: *const i8,
    terms: QuadTerms,
    tile: &mut [[i32; NR]; MR],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_si512(); MR];
    for q in 0..kq / 4 {
        let b = _mm512_loadu_si512(panel.add(q * 4 * NR) as *const _);
        for (r, acc) in acc.iter_mut().enumerate() {
            let quad = (a.add(r * kq + 4 * q) as *const i32).read_unaligned();
            *acc = _mm512_dpbusd_epi32(*acc, _mm512_set1_epi32(quad), b);
        }
    }
    let zb = _mm512_loadu_si512(terms.zb.as_ptr() as *const _);
    let cols = _mm512_loadu_si512(terms.cols.as_ptr() as *const _);
    for ((t, acc), &[za, sa]) in tile.iter_mut().zip(acc).zip(terms.rows) {
        let row = _mm512_mullo_epi32(zb, _mm512_set1_epi32(sa));
        let col = _mm512_mullo_epi32(_mm512_set1_epi32(za), cols);
        let v = _mm512_sub_epi32(_mm512_sub_epi32(acc, row), col);
        _mm512_storeu_si512(t.as_mut_ptr() as *mut _, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512(a: *const i16, kp: usize, panel: *const i16, tile: &mut [[i32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_si512(); MR];
    for p in 0..kp / 2 {
        let b = _mm512_loadu_si512(panel.add(p * 2 * NR) as *const _);
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_epi32(pair(a, kp, r, p));
            *acc = _mm512_add_epi32(*acc, _mm512_madd_epi16(av, b));
        }
    }
    for (t, acc) in tile.iter_mut().zip(acc) {
        _mm512_storeu_si512(t.as_mut_ptr() as *mut _, acc);
    }
}

/// Four rows of the tile (`rows`) from the four rows of `a`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2(a: *const i16, kp: usize, panel: *const i16, rows: &mut [[i32; NR]]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_si256(); 2]; 4];
    for p in 0..kp / 2 {
        let b0 = _mm256_loadu_si256(panel.add(p * 2 * NR) as *const __m256i);
        let b1 = _mm256_loadu_si256(panel.add(p * 2 * NR + NR) as *const __m256i);
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm256_set1_epi32(pair(a, kp, r, p));
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, b0));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, b1));
        }
    }
    for (t, acc) in rows.iter_mut().zip(acc) {
        _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, acc[0]);
        _mm256_storeu_si256(t.as_mut_ptr().add(8) as *mut __m256i, acc[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_isa_gives_the_portable_sums() {
        for kp in [0, 2, 6, 40] {
            let a: Vec<i16> = (0..MR * kp)
                .map(|i| ((i * 37) % 511) as i16 - 255)
                .collect();
            let b: Vec<i16> = (0..kp * NR)
                .map(|i| ((i * 91) % 511) as i16 - 255)
                .collect();
            let mut want = [[0; NR]; MR];
            portable(&a, kp, &b, &mut want);
            for isa in IntIsa::ALL.into_iter().filter(|i| i.supported()) {
                let mut got = [[1; NR]; MR];
                micro(isa, &a, kp, &b, &mut got);
                assert_eq!(got, want, "{isa:?}, kp {kp}");
            }
        }
    }

    #[test]
    fn quads_give_the_portable_sums() {
        if !IntIsa::Vnni512.supported() {
            return;
        }
        let rows: Vec<[i32; 2]> = (0..MR as i32).map(|r| [r * 7 - 3, r * 1000 + 5]).collect();
        let zb: Vec<i32> = (0..NR as i32).map(|j| j * 3 - 20).collect();
        let cols: Vec<i32> = (0..NR as i32).map(|j| j * 12345 - 7).collect();
        let terms = QuadTerms {
            rows: &rows,
            zb: &zb,
            cols: &cols,
        };
        for kq in [0, 4, 12, 64] {
            let a: Vec<u8> = (0..MR * kq).map(|i| (i * 37 % 256) as u8).collect();
            let b: Vec<i8> = (0..kq * NR).map(|i| (i * 91 % 256) as u8 as i8).collect();
            let mut want = [[0; NR]; MR];
            portable_quads(&a, kq, &b, terms, &mut want);
            let mut got = [[1; NR]; MR];
            micro_quads(&a, kq, &b, terms, &mut got);
            assert_eq!(got, want, "kq {kq}");
        }
    }
}
