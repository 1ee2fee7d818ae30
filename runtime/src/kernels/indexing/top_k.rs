//! `top_k` for every numeric dtype: per lane along the axis (the input `[outer, n, inner]`), a
//! stable sort of the lane's positions by the IR's order (`top_k_order`: NaN above every
//! number, equal values lower index first), the first `k` written as values and i64 indices.

use super::read_scalar;
use crate::kernels::numeric::{with_numeric, Numeric};
use lathe_ir::ops::reduce::top_k_order;
use lathe_ir::DType;

/// The `k` largest (or smallest) of each lane of `n` elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopK {
    pub dtype: DType,
    pub k_dtype: DType,
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
    /// The `k` the output was planned for; the `k` input must say the same.
    pub k: usize,
    pub largest: bool,
}

impl TopK {
    /// # Safety
    /// `x` holds `outer · n · inner` elements of `dtype`, `k` one element of `k_dtype`,
    /// `values` `outer · k · inner` elements of `dtype` and `indices` as many i64; the outputs
    /// overlap nothing.
    pub unsafe fn run(
        &self,
        x: *const u8,
        k: *const u8,
        values: *mut u8,
        indices: *mut u8,
    ) -> Result<(), String> {
        let asked = read_scalar(self.k_dtype, k);
        if asked != self.k as i64 {
            return Err(format!(
                "top_k: k is {asked} but the plan was compiled for k = {} (the output shape)",
                self.k
            ));
        }
        with_numeric!(
            self.dtype,
            T => self.typed::<T>(x, values, indices),
            bool => return Err("top_k is not defined on bool".into())
        );
        Ok(())
    }

    /// # Safety
    /// As for `run`, with elements of `T`.
    unsafe fn typed<T: Numeric>(&self, x: *const u8, values: *mut u8, indices: *mut u8) {
        let (x, values, indices) = (x as *const T, values as *mut T, indices as *mut i64);
        let (n, inner, k) = (self.n, self.inner, self.k);
        let mut lane: Vec<T> = Vec::with_capacity(n);
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for o in 0..self.outer {
            for c in 0..inner {
                lane.clear();
                // SAFETY: `(o · n + i) · inner + c` is below `outer · n · inner`.
                lane.extend((0..n).map(|i| x.add((o * n + i) * inner + c).read_unaligned()));
                order.clear();
                order.extend(0..n);
                order.sort_by(|&p, &q| top_k_order(self.largest, &lane[p], &lane[q]));
                for (j, &i) in order.iter().take(k).enumerate() {
                    let at = (o * k + j) * inner + c;
                    // SAFETY: `at` is below `outer · k · inner`.
                    values.add(at).write_unaligned(lane[i]);
                    indices.add(at).write_unaligned(i as i64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, want};
    use super::super::IndexKernel;
    use super::*;
    use lathe_ir::{Op, Tensor};

    #[test]
    fn top_k_matches_the_interpreter() {
        let v = [
            3.0,
            1.0,
            f64::NAN,
            3.0,
            -2.0,
            7.0,
            0.0,
            1.0,
            3.0,
            -0.0,
            5.0,
            1.0,
        ];
        for dtype in [DType::F32, DType::F16, DType::F64, DType::I16, DType::U64] {
            let x = Tensor::from_f64(dtype, &[2, 3, 2], &v);
            for (axis, outer, n, inner) in [(0usize, 1, 2, 6), (1, 2, 3, 2), (2, 6, 2, 1)] {
                for k in 0..=n {
                    for largest in [true, false] {
                        let kernel = IndexKernel::TopK(TopK {
                            dtype,
                            k_dtype: DType::I64,
                            outer,
                            n,
                            inner,
                            k,
                            largest,
                        });
                        let kt = Tensor::from_vec(&[1], vec![k as i64]);
                        let len = outer * k * inner;
                        let got = run(&kernel, &[&x, &kt], &[len * dtype.size_bytes(), len * 8]);
                        let op = Op::TopK {
                            axis: axis as i64,
                            largest,
                        };
                        assert_eq!(got, want(&op, &[&x, &kt]), "{dtype} {axis} {k} {largest}");
                    }
                }
            }
        }
        let kernel = IndexKernel::TopK(TopK {
            dtype: DType::F32,
            k_dtype: DType::I32,
            outer: 1,
            n: 3,
            inner: 1,
            k: 2,
            largest: true,
        });
        let x = Tensor::from_vec(&[3], vec![1.0f32, 2.0, 3.0]);
        let e = run(&kernel, &[&x, &Tensor::scalar(1i32)], &[8, 16]).unwrap_err();
        assert!(
            e.contains("k is 1 but the plan was compiled for k = 2"),
            "{e}"
        );
    }
}
