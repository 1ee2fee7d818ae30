//! Conversions of the low-precision storage types: the four float8 formats, float8 E8M0 (a
//! power-of-two scale), float4 E2M1, and the 4- and 2-bit integers.
//!
//! Each such type holds one element per byte (the bits in the low end; the integers as their
//! value). These functions are the one definition of their values and of ONNX's conversions to
//! them, which the interpreter and the CPU kernels both call:
//!
//! - A small float rounds to nearest, ties to even. Saturating (ONNX's default) clamps to the
//!   largest finite value first, so infinities become it; not saturating, a value whose rounding
//!   overflows becomes infinity (E5M2) or NaN (the others). The FNUZ formats have one NaN
//!   (`0x80`) and no negative zero. Float4 has no NaN or infinity: it always saturates, and NaN
//!   becomes a zero of the opposite sign (what ml_dtypes, ONNX's reference, gives).
//! - E8M0 is `2^(bits - 127)`, `0xFF` NaN, and has no sign or zero: a value converts through its
//!   f32 exponent, the mantissa rounding it up, down or to nearest (`RoundMode`), as
//!   `onnx.numpy_helper.to_float8e8m0` does.
//! - A float converts to a narrow integer by truncating toward zero (NaN and infinities give 0)
//!   and keeping the low bits, two's complement, as any integer does: `8` as i4 is `-8`.

/// A small float format (sign, exponent and mantissa bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmallFloat {
    E4M3Fn,
    E4M3Fnuz,
    E5M2,
    E5M2Fnuz,
    E2M1,
}

/// What a format spends its special encodings on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Specials {
    /// IEEE: the top exponent holds infinities and NaNs (E5M2).
    Ieee,
    /// Only `S.1111.111` is NaN; no infinities (E4M3FN).
    FiniteNan,
    /// `0x80` (negative zero's encoding) is the only NaN; no infinities (FNUZ).
    Nuz,
    /// Every encoding is a finite number (E2M1).
    None,
}

struct Layout {
    /// Total bits (8 or 4); the sign is the top one.
    width: u32,
    mantissa: u32,
    bias: i32,
    /// The bits of the largest finite value.
    max: u8,
    specials: Specials,
}

impl SmallFloat {
    fn layout(self) -> Layout {
        let (width, mantissa, bias, max, specials) = match self {
            SmallFloat::E4M3Fn => (8, 3, 7, 0x7e, Specials::FiniteNan),
            SmallFloat::E4M3Fnuz => (8, 3, 8, 0x7f, Specials::Nuz),
            SmallFloat::E5M2 => (8, 2, 15, 0x7b, Specials::Ieee),
            SmallFloat::E5M2Fnuz => (8, 2, 16, 0x7f, Specials::Nuz),
            SmallFloat::E2M1 => (4, 1, 1, 0x7, Specials::None),
        };
        Layout {
            width,
            mantissa,
            bias,
            max,
            specials,
        }
    }

    /// The largest finite value.
    pub fn max(self) -> f64 {
        self.decode(self.layout().max)
    }

    /// The value of `bits`.
    pub fn decode(self, bits: u8) -> f64 {
        let l = self.layout();
        let sign_bit = 1u8 << (l.width - 1);
        let bits = bits & ((1u16 << l.width) - 1) as u8;
        let negative = bits & sign_bit != 0;
        let mag = bits & !sign_bit;
        let exp_mask = (sign_bit - 1) >> l.mantissa;
        let exp = (mag >> l.mantissa) & exp_mask;
        let man = mag & ((1 << l.mantissa) - 1);
        let special = match l.specials {
            Specials::Ieee if exp == exp_mask => {
                Some(if man == 0 { f64::INFINITY } else { f64::NAN })
            }
            Specials::FiniteNan if mag == sign_bit - 1 => Some(f64::NAN),
            Specials::Nuz if bits == sign_bit => return f64::NAN,
            _ => None,
        };
        let v = special.unwrap_or_else(|| {
            let scale = |e: i32| 2f64.powi(e);
            if exp == 0 {
                man as f64 * scale(1 - l.bias - l.mantissa as i32)
            } else {
                ((1u32 << l.mantissa) + man as u32) as f64
                    * scale(exp as i32 - l.bias - l.mantissa as i32)
            }
        });
        if negative {
            -v
        } else {
            v
        }
    }

    /// The bits of `v` rounded to nearest-even; see the module notes for `saturate`.
    pub fn encode(self, v: f64, saturate: bool) -> u8 {
        let l = self.layout();
        let sign_bit = 1u8 << (l.width - 1);
        let negative = v.is_sign_negative();
        let sign = if negative { sign_bit } else { 0 };
        let nan = match l.specials {
            Specials::Ieee => sign | (sign_bit - 1 - ((1 << (l.mantissa - 1)) - 1)),
            Specials::FiniteNan => sign | (sign_bit - 1),
            Specials::Nuz => sign_bit,
            Specials::None => sign ^ sign_bit,
        };
        if v.is_nan() {
            return nan;
        }
        let saturate = saturate || l.specials == Specials::None;
        let max = self.max();
        let overflow = if saturate {
            sign | l.max
        } else if l.specials == Specials::Ieee {
            sign | (l.max + 1)
        } else {
            nan
        };
        let a = v.abs();
        if a > max && saturate {
            return overflow;
        }
        let zero = if l.specials == Specials::Nuz { 0 } else { sign };
        if a == 0.0 {
            return zero;
        }
        if a.is_infinite() {
            return overflow;
        }
        // The quantum of `a`'s binade (the subnormals' below the smallest normal exponent).
        let min_exp = 1 - l.bias;
        let exp = exponent_of(a).max(min_exp);
        let quantum = 2f64.powi(exp - l.mantissa as i32);
        let n = (a / quantum).round_ties_even();
        let r = n * quantum;
        if r > max {
            return overflow;
        }
        if n == 0.0 {
            return zero;
        }
        let e = exponent_of(r);
        let bits = if e < min_exp {
            n as u8
        } else {
            let field = (e + l.bias) as u8;
            let man = (r / 2f64.powi(e - l.mantissa as i32)) as u8 - (1 << l.mantissa);
            (field << l.mantissa) | man
        };
        sign | bits
    }
}

/// `floor(log2(a))` of a positive finite f64.
fn exponent_of(a: f64) -> i32 {
    let field = ((a.to_bits() >> 52) & 0x7ff) as i32;
    if field == 0 {
        // Subnormal: far below any small float's range, which only needs it to be small.
        -1075
    } else {
        field - 1023
    }
}

/// How a conversion to E8M0 rounds a value between two powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundMode {
    /// Toward the larger power (ONNX's default).
    Up,
    /// Toward the smaller power.
    Down,
    /// To the nearer power.
    Nearest,
}

/// The value of E8M0 `bits`: `2^(bits - 127)`, or NaN for `0xFF`.
pub fn e8m0_decode(bits: u8) -> f64 {
    if bits == 0xff {
        f64::NAN
    } else {
        2f64.powi(bits as i32 - 127)
    }
}

/// The E8M0 bits of `v` (first rounded to f32, whose exponent it keeps; the sign is dropped):
/// NaN and infinities give NaN; a value with a fraction rounds by `mode`, and one rounding past
/// the largest power gives NaN unless `saturate` keeps it there.
pub fn e8m0_encode(v: f64, saturate: bool, mode: RoundMode) -> u8 {
    let bits = (v as f32).to_bits();
    let exp = ((bits >> 23) & 0xff) as u16;
    if exp == 0xff {
        return 0xff;
    }
    let up = match mode {
        RoundMode::Up => bits & 0x7f_ffff != 0,
        RoundMode::Down => false,
        RoundMode::Nearest => {
            let (g, r, s) = (bits & 0x40_0000, bits & 0x20_0000, bits & 0x1f_ffff);
            g != 0 && (r != 0 || s != 0 || exp > 0)
        }
    };
    if up && saturate && exp == 0xfe {
        return 0xfe;
    }
    (exp + up as u16) as u8
}

/// `v` wrapped to a `bits`-wide integer (two's complement when `signed`).
pub fn wrap_int(v: i64, bits: u32, signed: bool) -> i64 {
    let m = v & ((1 << bits) - 1);
    if signed && m >= 1 << (bits - 1) {
        m - (1 << bits)
    } else {
        m
    }
}

/// `v` truncated toward zero and wrapped to a `bits`-wide integer; NaN and infinities give 0.
pub fn int_from_f64(v: f64, bits: u32, signed: bool) -> i64 {
    if v.is_finite() {
        wrap_int(v.trunc() as i64, bits, signed)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SmallFloat::*;

    #[test]
    fn largest_values() {
        assert_eq!(E4M3Fn.max(), 448.0);
        assert_eq!(E4M3Fnuz.max(), 240.0);
        assert_eq!(E5M2.max(), 57344.0);
        assert_eq!(E5M2Fnuz.max(), 57344.0);
        assert_eq!(E2M1.max(), 6.0);
    }

    #[test]
    fn decodes_the_spec_encodings() {
        assert_eq!(E4M3Fn.decode(0x2f), 0.46875);
        assert_eq!(E4M3Fn.decode(0x01), 2f64.powi(-9), "smallest subnormal");
        assert!(E4M3Fn.decode(0x7f).is_nan() && E4M3Fn.decode(0xff).is_nan());
        assert_eq!(E4M3Fn.decode(0x80).to_bits(), (-0.0f64).to_bits());
        assert!(E4M3Fnuz.decode(0x80).is_nan());
        assert_eq!(E4M3Fnuz.decode(0xff), -240.0);
        assert_eq!(E5M2.decode(0x7c), f64::INFINITY);
        assert_eq!(E5M2.decode(0xfc), f64::NEG_INFINITY);
        assert!(E5M2.decode(0x7e).is_nan());
        assert_eq!(E5M2Fnuz.decode(0x01), 2f64.powi(-17));
        let e2m1: Vec<f64> = (0..16).map(|b| E2M1.decode(b)).collect();
        assert_eq!(
            e2m1[..8],
            [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
            "every float4 value"
        );
        assert_eq!(e2m1[15], -6.0);
    }

    #[test]
    fn saturating_encodings_follow_the_spec_table() {
        // ONNX's Cast test: 0.47892547 and friends, 1e6, 1e-7, NaN, inf, -inf, -1e-7, -1e6.
        let xs = [
            0.478_925_47,
            1e6,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1e-7,
        ];
        let want = |f: SmallFloat| -> [u8; 7] {
            match f {
                E4M3Fn => [47, 126, 0, 127, 126, 254, 128],
                E4M3Fnuz => [55, 127, 0, 128, 127, 255, 0],
                E5M2 => [56, 123, 0, 126, 123, 251, 128],
                E5M2Fnuz => [60, 127, 0, 128, 127, 255, 0],
                E2M1 => [1, 7, 0, 8, 7, 15, 8],
            }
        };
        for f in [E4M3Fn, E4M3Fnuz, E5M2, E5M2Fnuz, E2M1] {
            let got: Vec<u8> = xs.iter().map(|&x| f.encode(x, true)).collect();
            assert_eq!(got, want(f), "{f:?}");
        }
    }

    #[test]
    fn non_saturating_encodings_overflow_to_inf_or_nan() {
        let xs = [1e6, f64::INFINITY, f64::NEG_INFINITY, -1e6];
        let got = |f: SmallFloat| xs.map(|x| f.encode(x, false));
        assert_eq!(got(E4M3Fn), [127, 127, 255, 255]);
        assert_eq!(got(E4M3Fnuz), [128; 4]);
        assert_eq!(got(E5M2), [124, 124, 252, 252]);
        assert_eq!(got(E5M2Fnuz), [128; 4]);
        assert_eq!(got(E2M1), [7, 7, 15, 15], "float4 always saturates");
    }

    #[test]
    fn rounds_to_nearest_even() {
        // 464 is halfway between 448 (even mantissa) and 480 (an E4M3FN NaN).
        assert_eq!(E4M3Fn.encode(464.0, false), 0x7e);
        assert_eq!(E4M3Fn.encode(465.0, false), 0x7f);
        // 61440 is halfway between 57344 (odd) and 65536, which overflows.
        assert_eq!(E5M2.encode(61440.0, false), 0x7c);
        assert_eq!(E4M3Fn.encode(100.0, true), E4M3Fn.encode(96.0, true));
        assert_eq!(E2M1.encode(2.5, true), 4, "2.5 ties to 2");
        assert_eq!(E2M1.encode(0.25, true), 0, "0.25 ties to 0");
        assert_eq!(E2M1.encode(0.75, true), 2, "0.75 ties to 1");
        for f in [E4M3Fn, E4M3Fnuz, E5M2, E5M2Fnuz] {
            for b in 0..=255u8 {
                let v = f.decode(b);
                if !v.is_nan() {
                    assert_eq!(f.encode(v, false), b, "{f:?} {b:#x} ({v})");
                }
            }
        }
    }

    #[test]
    fn e8m0_rounding_modes() {
        // ONNX's test: 0, 0.124, 0.25, 0.5, 1.1, 2, 4, 8 rounded up.
        let xs = [0.0, 0.124, 0.25, 0.5, 1.1, 2.0, 4.0, 8.0];
        let up: Vec<u8> = xs
            .iter()
            .map(|&x| e8m0_encode(x, true, RoundMode::Up))
            .collect();
        assert_eq!(up, [0, 124, 125, 126, 128, 128, 129, 130]);
        assert_eq!(e8m0_encode(1.1, true, RoundMode::Down), 127);
        assert_eq!(e8m0_encode(1.6, true, RoundMode::Nearest), 128);
        assert_eq!(e8m0_encode(1.4, true, RoundMode::Nearest), 127);
        assert_eq!(e8m0_encode(f64::INFINITY, true, RoundMode::Up), 0xff);
        assert_eq!(e8m0_encode(3e38, true, RoundMode::Up), 0xfe);
        assert_eq!(e8m0_encode(3e38, false, RoundMode::Up), 0xff);
        assert_eq!(e8m0_decode(127), 1.0);
        assert_eq!(e8m0_decode(0), 2f64.powi(-127));
        assert!(e8m0_decode(0xff).is_nan());
    }

    #[test]
    fn narrow_integers_truncate_and_wrap() {
        assert_eq!(int_from_f64(-9.0, 4, true), 7);
        assert_eq!(int_from_f64(8.0, 4, true), -8);
        assert_eq!(int_from_f64(-7.5, 4, true), -7);
        assert_eq!(int_from_f64(-3.0, 2, false), 1);
        assert_eq!(int_from_f64(f64::NAN, 4, false), 0);
        assert_eq!(wrap_int(16, 4, false), 0);
        assert_eq!(wrap_int(-1, 2, true), -1);
        assert_eq!(wrap_int(2, 2, true), -2);
    }
}
