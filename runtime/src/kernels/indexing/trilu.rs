//! `trilu`: each row of each matrix keeps one contiguous run of columns (those `j` with
//! `j - i >= k` in the upper triangle, `j - i <= k` in the lower) and is zero elsewhere; `k` is
//! read when the kernel runs.

use super::read_scalar;
use lathe_ir::DType;

/// `trilu` over `batch` matrices of `rows × cols` elements of `elem` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trilu {
    pub elem: usize,
    pub k_dtype: DType,
    pub upper: bool,
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Trilu {
    /// The columns row `i` keeps when the diagonal is moved by `k`.
    fn kept(&self, i: usize, k: i64) -> std::ops::Range<usize> {
        let edge = |v: i128| v.clamp(0, self.cols as i128) as usize;
        let i = i as i128;
        if self.upper {
            edge(i + k as i128)..self.cols
        } else {
            0..edge(i + k as i128 + 1)
        }
    }

    /// # Safety
    /// `x` and `out` hold `batch · rows · cols` elements and do not overlap; `k` holds one
    /// element of `k_dtype`.
    pub unsafe fn run(&self, x: *const u8, k: *const u8, out: *mut u8) -> Result<(), String> {
        let k = read_scalar(self.k_dtype, k);
        let row = self.cols * self.elem;
        for r in 0..self.batch * self.rows {
            let keep = self.kept(r % self.rows, k);
            let (src, dst) = (x.add(r * row), out.add(r * row));
            // SAFETY: `keep` lies within the row, and the row within both buffers.
            std::ptr::write_bytes(dst, 0, keep.start * self.elem);
            let bytes = keep.len() * self.elem;
            let at = keep.start * self.elem;
            std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), bytes);
            std::ptr::write_bytes(dst.add(at + bytes), 0, row - at - bytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, want};
    use super::super::IndexKernel;
    use super::*;
    use lathe_ir::{Op, Tensor};

    #[test]
    fn trilu_matches_the_interpreter() {
        let x = Tensor::from_vec(&[2, 3, 4], (1..=24).map(|v| v as f32).collect());
        for dtype in [DType::F32, DType::I64, DType::Bool] {
            for upper in [true, false] {
                for k in [-5i64, -1, 0, 2, 9, i64::MIN, i64::MAX] {
                    let x = x.cast(dtype);
                    let kt = Tensor::scalar(k);
                    let kernel = IndexKernel::Trilu(Trilu {
                        elem: dtype.size_bytes(),
                        k_dtype: DType::I64,
                        upper,
                        batch: 2,
                        rows: 3,
                        cols: 4,
                    });
                    let got = run(&kernel, &[&x, &kt], &[24 * dtype.size_bytes()]);
                    let op = Op::Trilu { upper };
                    assert_eq!(got, want(&op, &[&x, &kt]), "{dtype} upper={upper} k={k}");
                }
            }
        }
    }
}
