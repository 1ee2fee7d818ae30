//! Functions generated code calls for what has no short instruction sequence: the f64 math of
//! the interpreter (so f64, f16 and bf16 results match it bit for bit), half-precision
//! conversions, float `pow`/`floor_mod`, and wrapping integer `pow`. Where the interpreter has
//! a formula of its own (`lathe_ir::ops::elementwise::{sigmoid, softplus, floor_mod}`), the
//! function here wraps it rather than writing it again.
//!
//! Each is `extern "C"`, takes and returns plain scalars, and touches no memory: generated
//! code calls it by address with the host's C calling convention.

use half::{bf16, f16};
use lathe_ir::ops::{elementwise, UnaryOp};

/// `f(x)` for the interpreter's f64 unary functions that generated code calls.
pub(crate) type F64Unary = extern "C" fn(f64) -> f64;

extern "C" fn sigmoid(x: f64) -> f64 {
    elementwise::sigmoid(x)
}

extern "C" fn tanh(x: f64) -> f64 {
    x.tanh()
}

extern "C" fn erf(x: f64) -> f64 {
    libm::erf(x)
}

extern "C" fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

extern "C" fn exp(x: f64) -> f64 {
    x.exp()
}

extern "C" fn ln(x: f64) -> f64 {
    x.ln()
}

extern "C" fn sin(x: f64) -> f64 {
    x.sin()
}

extern "C" fn cos(x: f64) -> f64 {
    x.cos()
}

extern "C" fn asin(x: f64) -> f64 {
    x.asin()
}

extern "C" fn acos(x: f64) -> f64 {
    x.acos()
}

extern "C" fn atan(x: f64) -> f64 {
    x.atan()
}

extern "C" fn asinh(x: f64) -> f64 {
    x.asinh()
}

extern "C" fn acosh(x: f64) -> f64 {
    x.acosh()
}

extern "C" fn atanh(x: f64) -> f64 {
    x.atanh()
}

extern "C" fn softplus(x: f64) -> f64 {
    elementwise::softplus(x)
}

/// The f64 function of a unary float op that has no inline lowering in the f64 path.
pub(crate) fn f64_unary(u: UnaryOp) -> Option<F64Unary> {
    use UnaryOp::*;
    Some(match u {
        Sigmoid => sigmoid,
        Tanh => tanh,
        Erf => erf,
        Erfc => erfc,
        Exp => exp,
        Log => ln,
        Sin => sin,
        Cos => cos,
        Asin => asin,
        Acos => acos,
        Atan => atan,
        Asinh => asinh,
        Acosh => acosh,
        Atanh => atanh,
        Softplus => softplus,
        _ => return None,
    })
}

/// Whether f32 `u` is computed by its f64 function here too, having no f32x4 lowering in
/// [`super::math::Math`]: the trigonometric functions and their inverses.
pub(crate) fn f32_by_libcall(u: UnaryOp) -> bool {
    use UnaryOp::*;
    matches!(u, Sin | Cos | Asin | Acos | Atan | Asinh | Acosh | Atanh)
}

/// `p` to the power `q` (Rust's `powf`, as the interpreter).
pub(crate) extern "C" fn powf(p: f64, q: f64) -> f64 {
    p.powf(q)
}

/// TensorFlow's `FloorMod` on floats: `fmod`, moved to the divisor's sign.
pub(crate) extern "C" fn floor_mod(p: f64, q: f64) -> f64 {
    elementwise::floor_mod(p, q)
}

/// The f16 with bits `bits` (low 16) as f64 (exact).
pub(crate) extern "C" fn f16_to_f64(bits: u32) -> f64 {
    f16::from_bits(bits as u16).to_f64()
}

/// `x` rounded to the nearest f16, as its bits.
pub(crate) extern "C" fn f64_to_f16(x: f64) -> u32 {
    f16::from_f64(x).to_bits() as u32
}

/// `x` rounded to the nearest bf16, as its bits.
pub(crate) extern "C" fn f64_to_bf16(x: f64) -> u32 {
    bf16::from_f64(x).to_bits() as u32
}

/// `x` rounded to the nearest f16, back in f64.
pub(crate) extern "C" fn round_f16(x: f64) -> f64 {
    f16::from_f64(x).to_f64()
}

/// `x` rounded to the nearest bf16, back in f64.
pub(crate) extern "C" fn round_bf16(x: f64) -> f64 {
    bf16::from_f64(x).to_f64()
}

/// `x^e` wrapping modulo 2^64 (square-and-multiply); a negative `e` gives 0 (the caller
/// reports it). Narrower integers take the low bits, which wrapping arithmetic keeps exact.
pub(crate) extern "C" fn pow_i64(x: i64, e: i64) -> i64 {
    if e < 0 {
        return 0;
    }
    pow_u64(x as u64, e as u64) as i64
}

/// `x^e` wrapping modulo 2^64 for unsigned operands.
pub(crate) extern "C" fn pow_u64(x: u64, mut e: u64) -> u64 {
    let (mut base, mut acc) = (x, 1u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    acc
}
