//! Matrix products of every numeric dtype but f32 (which has the tuned, packed GEMM of
//! [`super::gemm`]): one strided `C = A · B`, or a range of its rows, generic over the element
//! type and computed in the interpreter's compute type ([`Numeric::Acc`]: f32 for f16 and
//! bf16, rounded once at the end; integers wrapping).
//!
//! Columns go in blocks of [`NB`]: the block's `k × NB` panel of B is widened to the compute
//! type once (or read in place when it already is that type and its rows are contiguous), then
//! [`MR`] rows of A at a time run over it, so each panel row loaded feeds `MR` rows of
//! accumulators, which stay in L1.

use super::numeric::{with_numeric, Arith, Numeric};
use lathe_ir::DType;

/// Columns of C per block.
const NB: usize = 128;
/// Rows of C computed together.
const MR: usize = 4;

/// One strided product `C = A · B` (`m × k` by `k × n`): the sizes and each matrix's
/// `(row, column)` strides, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: (usize, usize),
    pub b: (usize, usize),
    pub c: (usize, usize),
}

/// `C = A · B` for elements of `dtype`, on the calling thread. `bool` is not a product (the
/// caller never builds one); it leaves C as it is.
///
/// # Safety
/// `a`, `b` and `c` point at element `(0, 0)` of matrices of `dtype` whose every element
/// `(i, j)` the strides address lies inside its buffer; nothing else writes the addressed
/// elements of C while this runs, and A and B are not written at all.
pub unsafe fn gemm(dtype: DType, d: &GemmDims, a: *const u8, b: *const u8, c: *mut u8) {
    with_numeric!(
        dtype,
        T => gemm_typed::<T>(d, a as *const T, b as *const T, c as *mut T),
        bool => ()
    )
}

/// [`gemm`] for element type `T`.
///
/// # Safety
/// As for [`gemm`].
pub unsafe fn gemm_typed<T: Numeric>(d: &GemmDims, a: *const T, b: *const T, c: *mut T) {
    let GemmDims { m, n, k, .. } = *d;
    let (ar, ac) = d.a;
    let (br, bc) = d.b;
    let (cr, cc) = d.c;
    // Row `p` of a block's panel: B's own elements when they already are the compute type
    // and contiguous, else a widened copy.
    let direct = bc == 1 && T::acc_is_self();
    let mut panel: Vec<T::Acc> = vec![];
    for j0 in (0..n).step_by(NB) {
        let nb = NB.min(n - j0);
        if !direct {
            panel.clear();
            for p in 0..k {
                for j in j0..j0 + nb {
                    panel.push((*b.wrapping_add(p * br + j * bc)).acc());
                }
            }
        }
        let row = |p: usize| -> &[T::Acc] {
            if direct {
                // SAFETY: row `p` of B has `nb` contiguous elements from column `j0` (column
                // stride 1), inside B by the caller's contract.
                let s = unsafe { std::slice::from_raw_parts(b.add(p * br + j0), nb) };
                T::as_acc(s).expect("Acc is T")
            } else {
                &panel[p * nb..(p + 1) * nb]
            }
        };
        for i0 in (0..m).step_by(MR) {
            let mr = MR.min(m - i0);
            let mut acc = [[T::Acc::ZERO; NB]; MR];
            for p in 0..k {
                let brow = row(p);
                for (r, acc) in acc.iter_mut().enumerate().take(mr) {
                    let av = (*a.add((i0 + r) * ar + p * ac)).acc();
                    for (o, &bv) in acc[..nb].iter_mut().zip(brow) {
                        *o = o.add(av.mul(bv));
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(mr) {
                for (j, &v) in acc[..nb].iter().enumerate() {
                    *c.add((i0 + r) * cr + (j0 + j) * cc) = T::from_acc(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    /// `C = A · B` by the definition, in i64 (wrapping) or f64.
    fn naive(d: &GemmDims, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; d.m * d.n];
        for i in 0..d.m {
            for j in 0..d.n {
                for p in 0..d.k {
                    c[i * d.n + j] += a[i * d.a.0 + p * d.a.1] * b[p * d.b.0 + j * d.b.1];
                }
            }
        }
        c
    }

    #[test]
    fn integers_wrap_and_transposes_are_strides() {
        for (m, n, k) in [(1, 1, 1), (5, 130, 7), (9, 3, 0), (4, 257, 3)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let d = GemmDims {
                    m,
                    n,
                    k,
                    a: if ta { (1, m) } else { (k, 1) },
                    b: if tb { (1, k) } else { (n, 1) },
                    c: (n, 1),
                };
                let a: Vec<i8> = (0..m * k).map(|i| (i * 37 % 251) as i8).collect();
                let b: Vec<i8> = (0..k * n).map(|i| (i * 91 % 253) as i8).collect();
                let mut c = vec![0i8; m * n];
                // SAFETY: dense buffers of exactly the strided shapes.
                unsafe { gemm_typed(&d, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) };
                for i in 0..m {
                    for j in 0..n {
                        let mut s = 0i64;
                        for p in 0..k {
                            s += a[i * d.a.0 + p * d.a.1] as i64 * b[p * d.b.0 + j * d.b.1] as i64;
                        }
                        assert_eq!(c[i * n + j], s as i8, "{m}x{n}x{k} {ta} {tb} ({i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_accumulates_in_f32() {
        let d = GemmDims {
            m: 3,
            n: 5,
            k: 300,
            a: (300, 1),
            b: (5, 1),
            c: (1, 3),
        };
        let a: Vec<f64> = (0..900).map(|i| ((i % 7) as f64 - 3.0) / 4.0).collect();
        let b: Vec<f64> = (0..1500).map(|i| ((i % 5) as f64 - 2.0) / 2.0).collect();
        let (ah, bh): (Vec<bf16>, Vec<bf16>) = (
            a.iter().map(|&v| bf16::from_f64(v)).collect(),
            b.iter().map(|&v| bf16::from_f64(v)).collect(),
        );
        let mut c = vec![bf16::ZERO; 15];
        // SAFETY: dense buffers; C is written transposed (column-major), inside its 15 elements.
        unsafe {
            gemm(
                DType::BF16,
                &d,
                ah.as_ptr() as _,
                bh.as_ptr() as _,
                c.as_mut_ptr() as _,
            )
        };
        let want = naive(&d, &a, &b);
        for i in 0..3 {
            for j in 0..5 {
                // Exact sums (small multiples of 1/8), rounded once to bf16.
                assert_eq!(c[j * 3 + i], bf16::from_f64(want[i * 5 + j]));
            }
        }
    }
}
