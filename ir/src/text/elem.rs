//! Element literals of constants: how each dtype's values are written and read.
//!
//! Floats are written with Rust's shortest round-trip formatting (`{:?}`) at their own
//! precision (f16 and bf16 through their exact f32 value), so reading a written literal gives
//! back the same bits for every value except NaNs with a sign or payload; the printer checks
//! [`round_trips`] and writes such constants as hex instead.

use crate::tensor::Elem;
use half::{bf16, f16};
use std::fmt::Write;

/// An element type with a text literal form.
pub(crate) trait TextElem: Elem {
    /// Appends the literal: a number, `nan`, `inf`, `-inf`, `true` or `false`.
    fn write_literal(self, out: &mut String);

    /// Reads a literal's text (a number as the lexer found it, or one of the keywords above).
    fn parse_literal(text: &str) -> Result<Self, String>;

    /// The bits of the value, for exact (bitwise) comparison.
    fn bits(self) -> u64;
}

/// True when writing `x` and reading it back gives the same bits.
pub(crate) fn round_trips<T: TextElem>(x: T) -> bool {
    let mut s = String::new();
    x.write_literal(&mut s);
    T::parse_literal(&s).is_ok_and(|y| y.bits() == x.bits())
}

fn is_keyword(text: &str) -> bool {
    matches!(text, "true" | "false" | "nan" | "inf" | "-inf")
}

/// Writes a finite float with `{:?}` and the special values as `nan`, `inf`, `-inf`.
macro_rules! write_float {
    ($x:expr, $out:expr) => {{
        let x = $x;
        if x.is_nan() {
            $out.push_str("nan");
        } else if x.is_infinite() {
            $out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        } else {
            let _ = write!($out, "{x:?}");
        }
    }};
}

/// Reads a float literal at the precision of `$t` (parsing the decimal text directly, so there
/// is no double rounding through a wider type).
macro_rules! parse_float {
    ($t:ty, $name:expr, $text:expr) => {{
        let text: &str = $text;
        match text {
            "nan" => Ok(<$t>::NAN),
            "inf" => Ok(<$t>::INFINITY),
            "-inf" => Ok(<$t>::NEG_INFINITY),
            "true" | "false" => Err(format!("expected a number for {}, got `{text}`", $name)),
            _ => text
                .parse::<$t>()
                .map_err(|_| format!("invalid number `{text}` for {}", $name)),
        }
    }};
}

impl TextElem for f32 {
    fn write_literal(self, out: &mut String) {
        write_float!(self, out)
    }
    fn parse_literal(text: &str) -> Result<Self, String> {
        parse_float!(f32, "f32", text)
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
}

impl TextElem for f64 {
    fn write_literal(self, out: &mut String) {
        write_float!(self, out)
    }
    fn parse_literal(text: &str) -> Result<Self, String> {
        parse_float!(f64, "f64", text)
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

macro_rules! impl_text_half {
    ($t:ty, $name:expr) => {
        impl TextElem for $t {
            fn write_literal(self, out: &mut String) {
                // Every f16/bf16 value is exactly an f32, whose shortest form reads back exactly.
                write_float!(self.to_f32(), out)
            }
            fn parse_literal(text: &str) -> Result<Self, String> {
                let x: f32 = parse_float!(f32, $name, text)?;
                Ok(if x.is_nan() {
                    <$t>::NAN
                } else {
                    <$t>::from_f32(x)
                })
            }
            fn bits(self) -> u64 {
                self.to_bits() as u64
            }
        }
    };
}

impl_text_half!(f16, "f16");
impl_text_half!(bf16, "bf16");

macro_rules! impl_text_int {
    ($($t:ty),*) => {$(
        impl TextElem for $t {
            fn write_literal(self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
            fn parse_literal(text: &str) -> Result<Self, String> {
                let name = <$t as Elem>::DTYPE.name();
                if is_keyword(text) || text.contains(['.', 'e', 'E']) {
                    return Err(format!("expected an integer for {name}, got `{text}`"));
                }
                let wide: i128 = text
                    .parse()
                    .map_err(|_| format!("integer `{text}` is out of range for {name}"))?;
                <$t>::try_from(wide)
                    .map_err(|_| format!("integer `{text}` is out of range for {name}"))
            }
            fn bits(self) -> u64 {
                self as u64
            }
        }
    )*};
}

impl_text_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl TextElem for bool {
    fn write_literal(self, out: &mut String) {
        out.push_str(if self { "true" } else { "false" });
    }
    fn parse_literal(text: &str) -> Result<Self, String> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("expected true or false for bool, got `{text}`")),
        }
    }
    fn bits(self) -> u64 {
        self as u64
    }
}

/// Low-precision elements are written as their value (a float's shortest f32 form, an
/// integer's digits) and read by converting the number as a saturating cast does, which gives
/// back every value's bits but those of NaNs with a sign (written as hex instead).
macro_rules! impl_text_lowp {
    ($($t:ident),*) => {$(
        impl TextElem for crate::tensor::$t {
            fn write_literal(self, out: &mut String) {
                if <Self as Elem>::DTYPE.is_low_precision_float() {
                    write_float!(Elem::to_f64(self) as f32, out)
                } else {
                    let _ = write!(out, "{}", Elem::to_i64(self));
                }
            }
            fn parse_literal(text: &str) -> Result<Self, String> {
                let dt = <Self as Elem>::DTYPE;
                if dt.is_low_precision_float() {
                    let x: f64 = parse_float!(f64, dt.name(), text)?;
                    Ok(<Self as Elem>::from_f64(x))
                } else {
                    let v = i64::parse_literal(text)?;
                    let y = <Self as Elem>::from_i64(v);
                    if Elem::to_i64(y) != v {
                        return Err(format!("integer `{text}` is out of range for {dt}"));
                    }
                    Ok(y)
                }
            }
            fn bits(self) -> u64 {
                self.0 as u64
            }
        }
    )*};
}

impl_text_lowp!(F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, F4E2M1, I4, U4, I2, U2);

#[cfg(test)]
mod tests {
    use super::*;

    fn lit<T: TextElem>(x: T) -> String {
        let mut s = String::new();
        x.write_literal(&mut s);
        s
    }

    #[test]
    fn literals() {
        assert_eq!(lit(1.0f32), "1.0");
        assert_eq!(lit(-4.5f32), "-4.5");
        assert_eq!(lit(1e20f32), "1e20");
        assert_eq!(lit(f32::NAN), "nan");
        assert_eq!(lit(f64::NEG_INFINITY), "-inf");
        assert_eq!(lit(f16::from_f32(0.1)), "0.099975586");
        assert_eq!(lit(-7i8), "-7");
        assert_eq!(lit(u64::MAX), "18446744073709551615");
        assert_eq!(lit(true), "true");
    }

    #[test]
    fn reads_back_exactly() {
        for x in [0.1f32, -0.0, 1e-45, f32::MAX, f32::MIN_POSITIVE, f32::NAN] {
            assert!(round_trips(x), "{x:?}");
        }
        for x in [0.1f64, 5e-324, f64::MAX, f64::INFINITY] {
            assert!(round_trips(x), "{x:?}");
        }
        for bits in [0u16, 0x8000, 0x3c00, 0x0001, 0x7bff, 0xfc00, 0x7e00] {
            assert!(round_trips(f16::from_bits(bits)), "f16 {bits:#x}");
            assert!(round_trips(bf16::from_bits(bits)), "bf16 {bits:#x}");
        }
        assert!(round_trips(i64::MIN) && round_trips(u64::MAX) && round_trips(false));
        // A NaN with the sign bit set reads back as the canonical NaN.
        assert!(!round_trips(-f32::NAN));
        assert!(!round_trips(f16::from_bits(0x7e01)));
    }

    #[test]
    fn rejects_the_wrong_kind() {
        assert_eq!(
            i32::parse_literal("1.5").unwrap_err(),
            "expected an integer for i32, got `1.5`"
        );
        assert_eq!(
            u8::parse_literal("256").unwrap_err(),
            "integer `256` is out of range for u8"
        );
        assert_eq!(
            u8::parse_literal("-1").unwrap_err(),
            "integer `-1` is out of range for u8"
        );
        assert!(f32::parse_literal("true").is_err());
        assert!(bool::parse_literal("1").is_err());
        assert_eq!(f32::parse_literal("2").unwrap(), 2.0);
    }
}
