//! Element types of the low-precision storage dtypes: one byte each, `#[repr(transparent)]`,
//! so a buffer of them is a buffer of bytes to the runtime.
//!
//! The float types hold their encoding's bits (float4 in the low four); the integers hold their
//! value, sign-extended. Their `Elem` conversions are the default ones of ONNX's `Cast`
//! (`dtype::lowp`): floats round to nearest-even and saturate, E8M0 rounds up, integers
//! truncate and wrap. Ordering and equality compare bits, as for every element type's
//! structural uses; no arithmetic op accepts these types.

use super::{Elem, Tensor};
use crate::dtype::lowp::{self, RoundMode};
use crate::dtype::LowPrecision;
use crate::DType;
use ndarray::ArrayD;

/// The value of the low-precision element `byte` (bits, or an integer's sign-extended value) of
/// dtype `dt`.
pub fn lowp_to_f64(dt: DType, byte: u8) -> f64 {
    match dt.low_precision().expect("a low-precision dtype") {
        LowPrecision::Float(f) => f.decode(byte),
        LowPrecision::E8M0 => lowp::e8m0_decode(byte),
        LowPrecision::Int { signed: true, .. } => byte as i8 as f64,
        LowPrecision::Int { signed: false, .. } => byte as f64,
    }
}

/// The byte of `v` as the low-precision dtype `dt`, with `saturate` as ONNX's `Cast` has it
/// (it matters for float8 only) and E8M0 rounding up.
pub fn lowp_from_f64(dt: DType, v: f64, saturate: bool) -> u8 {
    match dt.low_precision().expect("a low-precision dtype") {
        LowPrecision::Float(f) => f.encode(v, saturate),
        LowPrecision::E8M0 => lowp::e8m0_encode(v, saturate, RoundMode::Up),
        LowPrecision::Int { bits, signed } => lowp::int_from_f64(v, bits, signed) as u8,
    }
}

/// The byte of the integer `v` as the low-precision dtype `dt` (integers wrap; floats convert
/// its f64 value).
pub fn lowp_from_i64(dt: DType, v: i64) -> u8 {
    match dt.low_precision().expect("a low-precision dtype") {
        LowPrecision::Int { bits, signed } => lowp::wrap_int(v, bits, signed) as u8,
        _ => lowp_from_f64(dt, v as f64, true),
    }
}

/// The integer value of a low-precision element: integers exactly, floats truncated (NaN 0).
pub fn lowp_to_i64(dt: DType, byte: u8) -> i64 {
    match dt.low_precision().expect("a low-precision dtype") {
        LowPrecision::Int { signed: true, .. } => byte as i8 as i64,
        LowPrecision::Int { signed: false, .. } => byte as i64,
        _ => lowp_to_f64(dt, byte) as i64,
    }
}

macro_rules! lowp_elems {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u8);

        impl Elem for $name {
            const DTYPE: DType = DType::$name;
            fn to_f64(self) -> f64 {
                lowp_to_f64(DType::$name, self.0)
            }
            fn from_f64(v: f64) -> Self {
                $name(lowp_from_f64(DType::$name, v, true))
            }
            fn to_i64(self) -> i64 {
                lowp_to_i64(DType::$name, self.0)
            }
            fn from_i64(v: i64) -> Self {
                $name(lowp_from_i64(DType::$name, v))
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$name(a)
            }
            fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$name(a) => Some(a),
                    _ => None,
                }
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.push(self.0)
            }
            fn read_le(b: &[u8]) -> Self {
                $name(b[0])
            }
        }
    )*};
}

lowp_elems! {
    /// A float8 E4M3FN element (its bits).
    F8E4M3FN;
    /// A float8 E4M3FNUZ element (its bits).
    F8E4M3FNUZ;
    /// A float8 E5M2 element (its bits).
    F8E5M2;
    /// A float8 E5M2FNUZ element (its bits).
    F8E5M2FNUZ;
    /// A float8 E8M0 element (its bits, the biased exponent).
    F8E8M0;
    /// A float4 E2M1 element (its bits, in the low four).
    F4E2M1;
    /// A signed 4-bit integer (its value as an `i8`'s bits).
    I4;
    /// An unsigned 4-bit integer (its value).
    U4;
    /// A signed 2-bit integer (its value as an `i8`'s bits).
    I2;
    /// An unsigned 2-bit integer (its value).
    U2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_convert_as_onnx_casts_by_default() {
        assert_eq!(F8E4M3FN::from_f64(1e6).to_f64(), 448.0, "saturates");
        assert_eq!(F8E5M2::from_f64(f64::INFINITY).to_f64(), 57344.0);
        assert_eq!(F8E8M0::from_f64(1.1).to_f64(), 2.0, "E8M0 rounds up");
        assert_eq!(I4::from_f64(8.0).to_i64(), -8, "integers wrap");
        assert_eq!(I4::from_i64(-9).to_f64(), 7.0);
        assert_eq!(U2::from_i64(-1).to_i64(), 3);
        assert_eq!(I2::from_f64(-1.9).0, 0xff, "-1, sign-extended");
        assert_eq!(F4E2M1::from_f64(-2.9).to_f64(), -3.0);
        assert_eq!(F8E4M3FNUZ::from_f64(-240.0).to_i64(), -240);
    }
}
