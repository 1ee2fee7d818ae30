//! Elementwise dtype conversion over little-endian bytes, with [`Tensor::cast`]'s rules (and
//! [`Tensor::cast_unsaturated`]'s): the CPU backend's conversion kernel runs this, so compiled
//! casts of the low-precision types give the interpreter's bits.
//!
//! [`Tensor::cast`]: super::Tensor::cast
//! [`Tensor::cast_unsaturated`]: super::Tensor::cast_unsaturated

use super::{casts_through_i64, lowp_from_f64, Elem};
use crate::DType;

/// Elements converted per pass through the intermediate buffer.
const CHUNK: usize = 512;

/// Converts the elements of `src` (dtype `from`) into `dst` (dtype `to`); `saturate` only
/// matters for low-precision float targets. Panics when the byte counts do not hold one number
/// of elements of each dtype.
pub fn convert_le(from: DType, to: DType, saturate: bool, src: &[u8], dst: &mut [u8]) {
    let n = src.len() / from.size_bytes();
    assert!(
        src.len() == n * from.size_bytes() && dst.len() == n * to.size_bytes(),
        "convert_le: {} bytes of {from} into {} bytes of {to}",
        src.len(),
        dst.len()
    );
    if from == to {
        // Bits as they are: a round trip through f64 need not be exact (E8M0's smallest
        // encoding, 2^-127, reads back rounded up).
        dst.copy_from_slice(src);
        return;
    }
    let saturate = saturate || !to.is_low_precision_float();
    let (sw, dw) = (from.size_bytes(), to.size_bytes());
    let through_i64 = saturate && casts_through_i64(from, to);
    let (mut wide, mut ints) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
    for (s, d) in src.chunks(CHUNK * sw).zip(dst.chunks_mut(CHUNK * dw)) {
        if through_i64 {
            ints.clear();
            crate::with_any_dtype!(from, read_i64(s, &mut ints));
            crate::with_any_dtype!(to, write_i64(&ints, d));
        } else {
            wide.clear();
            crate::with_any_dtype!(from, read_f64(s, &mut wide));
            if saturate {
                crate::with_any_dtype!(to, write_f64(&wide, d));
            } else {
                for (o, &v) in d.iter_mut().zip(&wide) {
                    *o = lowp_from_f64(to, v, false);
                }
            }
        }
    }
}

fn read_f64<S: Elem>(src: &[u8], out: &mut Vec<f64>) {
    let w = S::DTYPE.size_bytes();
    out.extend(src.chunks_exact(w).map(|b| S::read_le(b).to_f64()));
}

fn read_i64<S: Elem>(src: &[u8], out: &mut Vec<i64>) {
    let w = S::DTYPE.size_bytes();
    out.extend(src.chunks_exact(w).map(|b| S::read_le(b).to_i64()));
}

fn write_f64<D: Elem>(vals: &[f64], dst: &mut [u8]) {
    write_each(vals.iter().map(|&v| D::from_f64(v)), dst)
}

fn write_i64<D: Elem>(vals: &[i64], dst: &mut [u8]) {
    write_each(vals.iter().map(|&v| D::from_i64(v)), dst)
}

fn write_each<D: Elem>(vals: impl Iterator<Item = D>, dst: &mut [u8]) {
    let w = D::DTYPE.size_bytes();
    let mut bytes = Vec::with_capacity(8);
    for (v, o) in vals.zip(dst.chunks_exact_mut(w)) {
        bytes.clear();
        v.write_le(&mut bytes);
        o.copy_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    /// Every pair of dtypes gives `Tensor::cast`'s bytes.
    #[test]
    fn matches_tensor_casts() {
        let vals = [
            0.0,
            -0.0,
            0.3,
            -1.5,
            2.5,
            7.0,
            -9.0,
            300.0,
            1e6,
            -1e-7,
            f64::NAN,
            f64::INFINITY,
        ];
        for from in DType::ALL {
            let x = Tensor::from_f64(from, &[vals.len()], &vals);
            let src = x.to_le_bytes();
            for to in DType::ALL {
                let mut dst = vec![0u8; vals.len() * to.size_bytes()];
                convert_le(from, to, true, &src, &mut dst);
                assert_eq!(dst, x.cast(to).to_le_bytes(), "{from} to {to}");
                convert_le(from, to, false, &src, &mut dst);
                assert_eq!(dst, x.cast_unsaturated(to).to_le_bytes(), "{from} to {to}");
            }
        }
    }
}
