//! `det` for the float dtypes: each matrix of the batch read into f64, factored by the
//! interpreter's own LU decomposition ([`lathe_ir::ops::linalg::det::lu_det`]) and its
//! determinant rounded once to the dtype, so the result matches the interpreter bit for bit.

use lathe_ir::ops::linalg::det::lu_det;
use lathe_ir::{DType, Elem, TensorType};

/// Determinants of `batch` matrices of `n`×`n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Det {
    pub dtype: DType,
    pub batch: usize,
    pub n: usize,
}

impl Det {
    /// Prepares `det` of an input of type `x` (known shape, square matrices, a float dtype).
    pub fn new(x: &TensorType) -> Result<Det, String> {
        let dims = x
            .shape
            .as_known()
            .filter(|d| d.len() >= 2 && d[d.len() - 1] == d[d.len() - 2])
            .ok_or_else(|| format!("det needs square matrices of a known shape, got {x}"))?;
        if !x.dtype.is_float() {
            return Err(format!("det of {} (floats only)", x.dtype));
        }
        Ok(Det {
            dtype: x.dtype,
            batch: dims[..dims.len() - 2].iter().product(),
            n: dims[dims.len() - 1],
        })
    }

    /// # Safety
    /// `x` holds `batch · n · n` elements of `dtype` and `out` `batch`; they do not overlap.
    pub unsafe fn run(&self, x: *const u8, out: *mut u8) -> Result<(), String> {
        with_float!(self.dtype, "det", Self::typed(self, x, out));
        Ok(())
    }

    /// # Safety
    /// As for `run`, with elements of `T`.
    unsafe fn typed<T: Elem>(&self, x: *const u8, out: *mut u8) {
        let (x, out, n) = (x as *const T, out as *mut T, self.n);
        let mut m = vec![0.0f64; n * n];
        for b in 0..self.batch {
            for (k, v) in m.iter_mut().enumerate() {
                // SAFETY: `b · n² + k` is below `batch · n²`.
                *v = x.add(b * n * n + k).read_unaligned().to_f64();
            }
            let d = if n == 0 { 1.0 } else { lu_det(&mut m, n) };
            out.add(b).write_unaligned(T::from_f64(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::{Op, Tensor};

    #[test]
    fn det_matches_the_interpreter() {
        let v: Vec<f64> = (0..36)
            .map(|i| ((i * 37) % 11) as f64 * 0.7 - 3.0)
            .collect();
        for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
            for dims in [
                vec![4, 3, 3],
                vec![2, 2, 1, 1],
                vec![9, 2, 2],
                vec![2, 0, 0],
            ] {
                let len: usize = dims.iter().product();
                let x = Tensor::from_f64(dtype, &dims, &v[..len]);
                let k = Det::new(&x.ty()).unwrap();
                let want = Op::Det.eval(&[&x]).unwrap().remove(0);
                let bytes = x.to_le_bytes();
                let mut out = vec![0u8; want.len() * dtype.size_bytes()];
                // SAFETY: the buffers have the kernel's geometry.
                unsafe { k.run(bytes.as_ptr(), out.as_mut_ptr()) }.unwrap();
                assert_eq!(out, want.to_le_bytes(), "{dtype} {dims:?}");
            }
        }
        let e = Det::new(&TensorType::known(DType::F32, &[2, 3])).unwrap_err();
        assert!(e.contains("det needs square matrices"), "{e}");
        let e = Det::new(&TensorType::known(DType::I32, &[2, 2])).unwrap_err();
        assert!(e.contains("det of i32 (floats only)"), "{e}");
    }
}
