//! Element types of tensors.

pub mod lowp;

use std::fmt;
use std::str::FromStr;

/// The element type of a tensor.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    /// Float8 E4M3FN: 4 exponent bits, 3 mantissa bits, NaN but no infinities. This and the
    /// types below are storage types (see [`DType::is_low_precision`]).
    F8E4M3FN,
    /// Float8 E4M3FNUZ: as E4M3FN with exponent bias 8, one NaN, and no negative zero.
    F8E4M3FNUZ,
    /// Float8 E5M2: IEEE-like, with infinities and NaNs.
    F8E5M2,
    /// Float8 E5M2FNUZ: 5 exponent bits (bias 16), one NaN, no infinities or negative zero.
    F8E5M2FNUZ,
    /// Float8 E8M0: an unsigned power of two, `2^(bits - 127)` (ONNX's microscaling scale).
    F8E8M0,
    /// Float4 E2M1: sign, 2 exponent bits and 1 mantissa bit; every encoding finite.
    F4E2M1,
    /// Signed 4-bit integer, -8..=7.
    I4,
    /// Unsigned 4-bit integer, 0..=15.
    U4,
    /// Signed 2-bit integer, -2..=1.
    I2,
    /// Unsigned 2-bit integer, 0..=3.
    U2,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 23] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::F8E8M0,
        DType::F4E2M1,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::U2,
    ];

    /// The short name used in the text format (`f32`, `i64`, `bool`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Bool => "bool",
            DType::F8E4M3FN => "f8e4m3fn",
            DType::F8E4M3FNUZ => "f8e4m3fnuz",
            DType::F8E5M2 => "f8e5m2",
            DType::F8E5M2FNUZ => "f8e5m2fnuz",
            DType::F8E8M0 => "f8e8m0",
            DType::F4E2M1 => "f4e2m1",
            DType::I4 => "i4",
            DType::U4 => "u4",
            DType::I2 => "i2",
            DType::U2 => "u2",
        }
    }

    /// Bytes per element (one for the low-precision types, which are unpacked in memory).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            // i8, u8, bool and the low-precision types.
            _ => 1,
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// True for signed and unsigned integers (not bool).
    pub fn is_int(self) -> bool {
        self.is_signed_int() || self.is_unsigned_int()
    }

    /// True for i8..i64.
    pub fn is_signed_int(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64)
    }

    /// True for u8..u64.
    pub fn is_unsigned_int(self) -> bool {
        matches!(self, DType::U8 | DType::U16 | DType::U32 | DType::U64)
    }

    /// True for floats and integers: the types arithmetic is defined on (not bool, and not the
    /// low-precision storage types).
    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_int()
    }

    /// True for the low-precision storage types (float8, float4, 4- and 2-bit integers): a
    /// tensor holds one per byte, and only casts, constants and graph inputs and outputs take
    /// them (`ops::DTypeClass::All`); [`lowp`] defines their values and conversions.
    pub fn is_low_precision(self) -> bool {
        self.low_precision().is_some()
    }

    /// True for the low-precision floats (float8, E8M0 and float4), the types a cast may
    /// leave unsaturated.
    pub fn is_low_precision_float(self) -> bool {
        matches!(
            self.low_precision(),
            Some(LowPrecision::Float(_) | LowPrecision::E8M0)
        )
    }

    /// How a low-precision type encodes its values; `None` for the others.
    pub fn low_precision(self) -> Option<LowPrecision> {
        use lowp::SmallFloat as F;
        Some(match self {
            DType::F8E4M3FN => LowPrecision::Float(F::E4M3Fn),
            DType::F8E4M3FNUZ => LowPrecision::Float(F::E4M3Fnuz),
            DType::F8E5M2 => LowPrecision::Float(F::E5M2),
            DType::F8E5M2FNUZ => LowPrecision::Float(F::E5M2Fnuz),
            DType::F4E2M1 => LowPrecision::Float(F::E2M1),
            DType::F8E8M0 => LowPrecision::E8M0,
            DType::I4 => LowPrecision::Int {
                bits: 4,
                signed: true,
            },
            DType::U4 => LowPrecision::Int {
                bits: 4,
                signed: false,
            },
            DType::I2 => LowPrecision::Int {
                bits: 2,
                signed: true,
            },
            DType::U2 => LowPrecision::Int {
                bits: 2,
                signed: false,
            },
            _ => return None,
        })
    }

    /// The NumPy name of this dtype (`float32`, `int64`, `bool`, ...; the low-precision types
    /// have ml_dtypes' names, which NumPy itself does not know).
    pub fn numpy_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::F8E4M3FN => "float8_e4m3fn",
            DType::F8E4M3FNUZ => "float8_e4m3fnuz",
            DType::F8E5M2 => "float8_e5m2",
            DType::F8E5M2FNUZ => "float8_e5m2fnuz",
            DType::F8E8M0 => "float8_e8m0fnu",
            DType::F4E2M1 => "float4_e2m1fn",
            DType::I4 => "int4",
            DType::U4 => "uint4",
            DType::I2 => "int2",
            DType::U2 => "uint2",
        }
    }
}

/// The encoding of a low-precision storage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowPrecision {
    /// A small float (float8 but E8M0, float4).
    Float(lowp::SmallFloat),
    /// Float8 E8M0, a power of two.
    E8M0,
    /// A narrow integer of `bits` bits.
    Int { bits: u32, signed: bool },
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown dtype `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert!("f31".parse::<DType>().is_err());
    }
}
