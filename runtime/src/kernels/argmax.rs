//! `arg_max` for every numeric dtype, with the interpreter's rules: ties go to the smallest
//! index, the first NaN wins (as in NumPy), and the result is i32 or i64.
//!
//! The input is `[outer, n, inner]` around the axis. For each outer index the kernel walks the
//! `n` rows of `inner` contiguous elements in memory order, keeping the best value and index of
//! every column, so no strided walk along the axis is needed. Tasks split the outer indices.

use super::numeric::{check_numeric, elements, elements_mut, with_numeric, Numeric};
use lathe_ir::ops::Op;
use lathe_ir::{DType, Tensor, TensorType};
use std::ops::Range;

/// An `arg_max` over one axis of a known-shape input.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ArgMax {
    pub dtype: DType,
    /// The index dtype: i32 or i64.
    pub output: DType,
    pub outer: usize,
    /// The axis' length.
    pub n: usize,
    pub inner: usize,
    /// The interpreter's error on this (empty) input, if it has one.
    fault: Option<String>,
}

impl ArgMax {
    /// Prepares `op` (an `arg_max`) of an input of type `x` along `axis` (in range).
    pub fn new(op: &Op, x: &TensorType, axis: usize) -> Result<ArgMax, String> {
        let Op::ArgMax { output } = op else {
            return Err(format!("{} is not arg_max", op.mnemonic()));
        };
        check_numeric(op.mnemonic(), x.dtype)?;
        let dims = x
            .shape
            .as_known()
            .filter(|d| axis < d.len())
            .ok_or_else(|| format!("arg_max needs a known shape with axis {axis}, got {x}"))?;
        let n = dims[axis];
        let max = match output {
            DType::I32 => i32::MAX as usize,
            DType::I64 => i64::MAX as usize,
            other => return Err(format!("arg_max to {other} (i32 or i64 only)")),
        };
        if n > max {
            return Err(format!("an axis of {n} has indices past {output}"));
        }
        // An empty input is cheap to give the interpreter: its error (an empty axis) is ours.
        let fault = if dims.contains(&0) {
            let axis_t = Tensor::from_i64(DType::I64, &[], &[axis as i64]);
            op.eval(&[&Tensor::zeros(x.dtype, &dims), &axis_t]).err()
        } else {
            None
        };
        Ok(ArgMax {
            dtype: x.dtype,
            output: *output,
            outer: dims[..axis].iter().product(),
            n,
            inner: dims[axis + 1..].iter().product(),
            fault,
        })
    }

    /// The interpreter's error for this input, if it has one (then nothing is computed).
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Computes the indices of outer indices `outer` on the calling thread.
    ///
    /// # Safety
    /// `x` holds the whole dense input of this kernel's dtype and nothing writes it now; `out`
    /// holds the whole output (of `self.output`), whose rows `outer` nothing else touches now.
    pub unsafe fn run_outer(&self, x: *const u8, out: *mut u8, outer: Range<usize>) {
        let len = self.outer * self.n * self.inner;
        with_numeric!(
            self.dtype,
            T => self.outer_typed::<T>(elements(x as *const T, len), out, outer),
            bool => ()
        )
    }

    /// [`Self::run_outer`] for element type `T`.
    ///
    /// # Safety
    /// As for `run_outer`.
    unsafe fn outer_typed<T: Numeric>(&self, x: &[T], out: *mut u8, outer: Range<usize>) {
        let inner = self.inner;
        if self.n == 0 || inner == 0 {
            return;
        }
        let (start, count) = (outer.start * inner, outer.len() * inner);
        let (o32, o64): (&mut [i32], &mut [i64]) = match self.output {
            DType::I32 => (elements_mut((out as *mut i32).add(start), count), &mut []),
            _ => (&mut [], elements_mut((out as *mut i64).add(start), count)),
        };
        let (mut value, mut best) = (Vec::with_capacity(inner), vec![0usize; inner]);
        for (k, o) in outer.enumerate() {
            self.lane(x, o, &mut value, &mut best);
            let at = k * inner..(k + 1) * inner;
            if self.output == DType::I32 {
                o32[at]
                    .iter_mut()
                    .zip(&best)
                    .for_each(|(d, &i)| *d = i as i32);
            } else {
                o64[at]
                    .iter_mut()
                    .zip(&best)
                    .for_each(|(d, &i)| *d = i as i64);
            }
        }
    }

    /// The arg-max of every column of outer index `o` into `best` (`value` is scratch).
    fn lane<T: Numeric>(&self, x: &[T], o: usize, value: &mut Vec<T>, best: &mut [usize]) {
        let inner = self.inner;
        let base = o * self.n * inner;
        value.clear();
        value.extend_from_slice(&x[base..base + inner]);
        best.fill(0);
        for i in 1..self.n {
            let row = &x[base + i * inner..][..inner];
            for ((b, bi), &v) in value.iter_mut().zip(best.iter_mut()).zip(row) {
                // A NaN best is final; a NaN seen becomes the best.
                if !b.is_nan() && (v > *b || v.is_nan()) {
                    *b = v;
                    *bi = i;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_and_nan_follow_the_interpreter() {
        let v = [
            1.0,
            3.0,
            3.0,
            f64::NAN,
            2.0,
            5.0,
            0.5,
            5.0,
            f64::NAN,
            -1.0,
            9.0,
            9.0,
        ];
        for dt in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::F64,
            DType::I16,
            DType::U8,
        ] {
            let x = Tensor::from_f64(dt, &[2, 3, 2], &v);
            for axis in 0..3 {
                for output in [DType::I32, DType::I64] {
                    let op = Op::ArgMax { output };
                    let k = ArgMax::new(&op, &x.ty(), axis).unwrap();
                    let axis_t = Tensor::from_i64(DType::I32, &[], &[axis as i64]);
                    let want = op.eval(&[&x, &axis_t]).unwrap().remove(0);
                    let xb = x.to_le_bytes();
                    let mut out = vec![0u8; want.size_bytes()];
                    for r in [1..k.outer, 0..1] {
                        // SAFETY: dense buffers of the kernel's shapes; one range at a time.
                        unsafe { k.run_outer(xb.as_ptr(), out.as_mut_ptr(), r) };
                    }
                    assert_eq!(out, want.to_le_bytes(), "{dt} axis {axis} {output}");
                }
            }
        }
    }

    #[test]
    fn an_empty_axis_is_the_interpreters_error() {
        let op = Op::ArgMax { output: DType::I64 };
        let k = ArgMax::new(&op, &TensorType::known(DType::F32, &[3, 0]), 1).unwrap();
        assert!(k.fault().unwrap().contains("empty axis"), "{:?}", k.fault());
        let k = ArgMax::new(&op, &TensorType::known(DType::F32, &[0, 3]), 1).unwrap();
        assert!(k.fault().is_none());
    }
}
