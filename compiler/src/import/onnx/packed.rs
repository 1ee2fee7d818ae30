//! ONNX's packed low-precision elements: 4-bit types (int4, uint4, float4 E2M1) two to a byte
//! and 2-bit ones (int2, uint2) four to a byte, the first element in the low bits, the last
//! byte padded with zeros. The IR holds one element per byte; this is the only place that
//! packs and unpacks (float8 types are one byte each and need neither).

use lathe_ir::{DType, Tensor};

/// Elements per byte of `dt` as ONNX stores it: 2, 4, or 1 for every unpacked type.
pub fn per_byte(dt: DType) -> usize {
    match dt {
        DType::I4 | DType::U4 | DType::F4E2M1 => 2,
        DType::I2 | DType::U2 => 4,
        _ => 1,
    }
}

/// Bytes `n` elements of `dt` take as ONNX stores them.
pub fn stored_bytes(dt: DType, n: usize) -> usize {
    match per_byte(dt) {
        1 => n * dt.size_bytes(),
        k => n.div_ceil(k),
    }
}

/// A tensor from the bytes ONNX stores (packed for the 4- and 2-bit types), whose count must
/// be what `dims` needs.
pub fn decode(dt: DType, dims: &[usize], bytes: &[u8]) -> Result<Tensor, String> {
    let k = per_byte(dt);
    if k == 1 {
        return Tensor::from_le_bytes(dt, dims, bytes);
    }
    let n: usize = dims.iter().product();
    let want = stored_bytes(dt, n);
    if bytes.len() != want {
        return Err(format!(
            "{dt}{dims:?} needs {want} bytes of packed data, got {}",
            bytes.len()
        ));
    }
    let width = 8 / k as u32;
    let mask = (1u8 << width) - 1;
    let signed = matches!(dt, DType::I4 | DType::I2);
    let unpacked: Vec<u8> = (0..n)
        .map(|i| {
            let v = (bytes[i / k] >> ((i % k) as u32 * width)) & mask;
            if signed && v >> (width - 1) != 0 {
                v | !mask
            } else {
                v
            }
        })
        .collect();
    Tensor::from_le_bytes(dt, dims, &unpacked)
}

/// The bytes ONNX stores for `t` (its elements packed for the 4- and 2-bit types).
pub fn encode(t: &Tensor) -> Vec<u8> {
    let bytes = t.to_le_bytes();
    let dt = t.dtype();
    let k = per_byte(dt);
    if k == 1 {
        return bytes;
    }
    let width = 8 / k as u32;
    let mask = (1u8 << width) - 1;
    let mut out = vec![0u8; stored_bytes(dt, bytes.len())];
    for (i, b) in bytes.iter().enumerate() {
        out[i / k] |= (b & mask) << ((i % k) as u32 * width);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_low_bits_first() {
        // ONNX's test data: uint4 [0, 1, 7, 10, 15] is 0x10, 0xa7, 0x0f; int2 [0, 1, -1, -2]
        // (codes 0, 1, 3, 2) is 0b10_11_01_00 = 180.
        let t = decode(DType::U4, &[5], &[0x10, 0xa7, 0x0f]).unwrap();
        assert_eq!(t.to_f64_vec(), [0.0, 1.0, 7.0, 10.0, 15.0]);
        assert_eq!(encode(&t), [0x10, 0xa7, 0x0f]);
        let t = decode(DType::I2, &[4], &[180]).unwrap();
        assert_eq!(t.to_f64_vec(), [0.0, 1.0, -1.0, -2.0]);
        assert_eq!(encode(&t), [180]);
        let t = decode(DType::I4, &[2], &[0x8f]).unwrap();
        assert_eq!(t.to_f64_vec(), [-1.0, -8.0]);
        assert_eq!(encode(&t), [0x8f]);
        let t = decode(DType::F4E2M1, &[3], &[0xf1, 0x07]).unwrap();
        assert_eq!(t.to_f64_vec(), [0.5, -6.0, 6.0]);
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(stored_bytes(DType::I4, 5), 3);
        assert_eq!(stored_bytes(DType::U2, 5), 2);
        assert_eq!(stored_bytes(DType::F8E5M2, 5), 5);
        let err = decode(DType::I4, &[5], &[0, 0]).unwrap_err();
        assert!(err.contains("needs 3 bytes of packed data, got 2"), "{err}");
    }
}
