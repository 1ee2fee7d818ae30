//! `dft` for the float dtypes: each lane read into f64 and transformed by the interpreter's
//! own code ([`lathe_ir::ops::linalg::dft::Dft::run`]: a radix-2 FFT for power-of-two lengths,
//! the direct sum otherwise), each result rounded once to the dtype, so the result matches the
//! interpreter bit for bit.

use lathe_ir::ops::linalg::dft::Dft as Transform;
use lathe_ir::{DType, Elem, Op, TensorType};

/// One `dft` node on a known input shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Dft {
    pub dtype: DType,
    pub transform: Transform,
}

impl Dft {
    /// Prepares `op` (a `dft`) on an input of type `x` (known shape, a float dtype).
    pub fn new(op: &Op, x: &TensorType) -> Result<Dft, String> {
        let &Op::Dft {
            axis,
            length,
            inverse,
            onesided,
        } = op
        else {
            return Err(format!("{} is not a dft", op.mnemonic()));
        };
        let dims = x
            .shape
            .as_known()
            .ok_or_else(|| format!("dft needs a known shape, got {x}"))?;
        if !x.dtype.is_float() {
            return Err(format!("dft of {} (floats only)", x.dtype));
        }
        Ok(Dft {
            dtype: x.dtype,
            transform: Transform::new(&dims, axis, length, inverse, onesided)?,
        })
    }

    /// About how many multiply-adds a run takes, for scheduling: a direct sum per output
    /// frequency, or n log n for an FFT, per lane.
    pub fn work(&self) -> usize {
        let t = &self.transform;
        let n = t.length;
        let per_lane = if n.is_power_of_two() {
            n * n.trailing_zeros().max(1) as usize
        } else {
            n * t.out_len
        };
        t.outer * t.inner * per_lane
    }

    /// # Safety
    /// `x` holds the input's elements of `dtype` and `out` the output's; they do not overlap.
    pub unsafe fn run(&self, x: *const u8, out: *mut u8) -> Result<(), String> {
        with_float!(self.dtype, "dft", Self::typed(self, x, out));
        Ok(())
    }

    /// # Safety
    /// As for `run`, with elements of `T`.
    unsafe fn typed<T: Elem>(&self, x: *const u8, out: *mut u8) {
        let (x, out) = (x as *const T, out as *mut T);
        // `Transform::run` reads input elements and writes output elements of the shapes it
        // was built for, which the buffers have.
        let read = |i: usize| {
            // SAFETY: `i` is below the input's element count (see above).
            unsafe { x.add(i).read_unaligned() }.to_f64()
        };
        let write = |i: usize, v: f64| {
            // SAFETY: `i` is below the output's element count (see above).
            unsafe { out.add(i).write_unaligned(T::from_f64(v)) }
        };
        self.transform.run(read, write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::Tensor;

    #[test]
    fn dft_matches_the_interpreter() {
        let v: Vec<f64> = (0..96)
            .map(|i| ((i * 37) % 11) as f64 * 0.7 - 3.0)
            .collect();
        let cases: [(&[usize], i64, usize, bool, bool); 6] = [
            (&[2, 8, 1], 1, 8, false, false),
            (&[3, 6, 2], -2, 6, false, true),
            (&[2, 5, 3, 2], 1, 4, true, false),
            (&[4, 5, 2], 0, 8, true, true),
            (&[1, 7, 2, 1], 1, 7, true, true),
            (&[6, 2], 0, 9, false, false),
        ];
        for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
            for &(dims, axis, length, inverse, onesided) in &cases {
                let op = Op::Dft {
                    axis,
                    length,
                    inverse,
                    onesided,
                };
                let len: usize = dims.iter().product();
                let x = Tensor::from_f64(dtype, dims, &v[..len]);
                let k = Dft::new(&op, &x.ty()).unwrap();
                let want = op.eval(&[&x]).unwrap().remove(0);
                let bytes = x.to_le_bytes();
                let mut out = vec![0u8; want.len() * dtype.size_bytes()];
                // SAFETY: the buffers have the kernel's geometry.
                unsafe { k.run(bytes.as_ptr(), out.as_mut_ptr()) }.unwrap();
                assert_eq!(out, want.to_le_bytes(), "{dtype} {dims:?} {op:?}");
            }
        }
        let op = Op::Dft {
            axis: 0,
            length: 4,
            inverse: false,
            onesided: false,
        };
        let e = Dft::new(&op, &TensorType::known(DType::I32, &[4, 2])).unwrap_err();
        assert!(e.contains("dft of i32 (floats only)"), "{e}");
        let e = Dft::new(&op, &TensorType::known(DType::F32, &[4, 3])).unwrap_err();
        assert!(e.contains("last axis of 1 or 2"), "{e}");
    }
}
