//! `cumsum` and `cumprod` for every numeric dtype, in the interpreter's arithmetic (the
//! reductions' `Wide` type: floats in f64 from +0 or 1, each output rounded once; integers
//! wrapping in their own type). The axis is read when the kernel runs; the input is then
//! `[outer, n, inner]` around it, and a row of `inner` running sums or products walks the `n`
//! rows in memory order.

use super::read_scalar;
use crate::kernels::numeric::{with_numeric, Arith, Numeric};
use lathe_ir::ops::common::normalize_axis;
use lathe_ir::ops::CumulativeKind;
use lathe_ir::DType;

/// How a running value takes the next element (`add` or `mul` of the wide type).
type Combine<W> = fn(W, W) -> W;

/// A running sum or product over one axis (chosen at run time) of an input of `dims`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cumulative {
    pub kind: CumulativeKind,
    pub dtype: DType,
    pub axis_dtype: DType,
    pub dims: Vec<usize>,
    pub exclusive: bool,
    pub reverse: bool,
}

impl Cumulative {
    /// # Safety
    /// `x` and `out` hold `dims` elements of `dtype` and do not overlap; `axis` holds one
    /// element of `axis_dtype`.
    pub unsafe fn run(&self, x: *const u8, axis: *const u8, out: *mut u8) -> Result<(), String> {
        let a = read_scalar(self.axis_dtype, axis);
        let mn = self.kind.mnemonic();
        let a = normalize_axis(a, self.dims.len()).map_err(|e| format!("{mn}: {e}"))?;
        let outer: usize = self.dims[..a].iter().product();
        let inner: usize = self.dims[a + 1..].iter().product();
        let n = self.dims[a];
        with_numeric!(
            self.dtype,
            T => self.typed::<T>(x, out, outer, n, inner),
            bool => return Err(format!("{mn} is not defined on bool"))
        );
        Ok(())
    }

    /// # Safety
    /// As for `run`, with `outer · n · inner` elements of `T`.
    unsafe fn typed<T: Numeric>(
        &self,
        x: *const u8,
        out: *mut u8,
        outer: usize,
        n: usize,
        inner: usize,
    ) {
        let (x, out) = (x as *const T, out as *mut T);
        let (start, combine): (T::Wide, Combine<T::Wide>) = match self.kind {
            CumulativeKind::Sum => (T::Wide::ZERO, Arith::add),
            CumulativeKind::Prod => (T::Wide::ONE, Arith::mul),
        };
        let mut acc = vec![start; inner];
        for o in 0..outer {
            acc.fill(start);
            for step in 0..n {
                let r = if self.reverse { n - 1 - step } else { step };
                let base = (o * n + r) * inner;
                for (c, s) in acc.iter_mut().enumerate() {
                    // SAFETY: `base + c` is below `outer · n · inner`.
                    let v = x.add(base + c).read_unaligned().wide();
                    let y = if self.exclusive {
                        let before = *s;
                        *s = combine(*s, v);
                        before
                    } else {
                        *s = combine(*s, v);
                        *s
                    };
                    out.add(base + c).write_unaligned(T::from_wide(y));
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
    fn cumsum_and_cumprod_match_the_interpreter() {
        let v: Vec<f64> = (0..24)
            .map(|i| ((i * 37) % 11) as f64 * 0.7 - 3.0)
            .collect();
        for dtype in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::F64,
            DType::I8,
            DType::U64,
        ] {
            let x = Tensor::from_f64(dtype, &[2, 3, 4], &v);
            for (kind, axis) in CumulativeKind::ALL
                .into_iter()
                .flat_map(|k| [0i64, 1, -1].map(|a| (k, a)))
            {
                for (exclusive, reverse) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let k = IndexKernel::Cumulative(Cumulative {
                        kind,
                        dtype,
                        axis_dtype: DType::I32,
                        dims: vec![2, 3, 4],
                        exclusive,
                        reverse,
                    });
                    let a = Tensor::scalar(axis as i32);
                    let got = run(&k, &[&x, &a], &[24 * dtype.size_bytes()]);
                    let op = Op::Cumulative {
                        kind,
                        exclusive,
                        reverse,
                    };
                    assert_eq!(
                        got,
                        want(&op, &[&x, &a]),
                        "{kind:?} {dtype} {axis} {exclusive} {reverse}"
                    );
                }
            }
        }
        let k = IndexKernel::Cumulative(Cumulative {
            kind: CumulativeKind::Sum,
            dtype: DType::F32,
            axis_dtype: DType::I64,
            dims: vec![2],
            exclusive: false,
            reverse: false,
        });
        let x = Tensor::from_vec(&[2], vec![1.0f32, 2.0]);
        let e = run(&k, &[&x, &Tensor::scalar(-1i64)], &[8]);
        assert_eq!(e, Ok(vec![vec![0, 0, 128, 63, 0, 0, 64, 64]]));
        let e = run(&k, &[&x, &Tensor::scalar(1i64)], &[8]).unwrap_err();
        assert_eq!(e, "cumsum: axis 1 is out of range for rank 1");
    }
}
