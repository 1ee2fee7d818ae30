//! Functions generated code calls for what has no short instruction sequence: the f64 math of
//! the interpreter (so f64, f16 and bf16 results match it bit for bit), half-precision
//! conversions, float `pow`/`floor_mod`, and wrapping integer `pow`. Where the interpreter has
//! a formula of its own (`lathe_ir::ops::elementwise::{sigmoid, softplus, floor_mod}`), the
//! function here wraps it rather than writing it again.
//!
//! Each is `extern "C"`, takes and returns plain scalars, and touches no memory. JIT code calls
//! it by address with the host's C calling convention; code written to an object file
//! (`lathe compile --emit obj`) calls it by its exported symbol, `lathe_rt_<name>`, which the
//! kernels library (`runtime/aot`, `liblathe_kernels.a`) links in. [`libcalls!`] declares both from one list.

use half::{bf16, f16};
use lathe_ir::ops::{elementwise, UnaryOp};

/// `f(x)` for the interpreter's f64 unary functions that generated code calls.
pub(crate) type F64Unary = extern "C" fn(f64) -> f64;

/// Declares each function `extern "C"`, exported as `lathe_rt_<name>`, and [`symbols`] listing
/// every one's symbol and address.
macro_rules! libcalls {
    ($($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block)*) => {
        $(
            $(#[$meta])*
            #[export_name = concat!("lathe_rt_", stringify!($name))]
            pub(crate) extern "C" fn $name($($arg: $ty),*) -> $ret $body
        )*

        /// Every libcall: its exported symbol and its address in this process.
        pub(crate) fn symbols() -> Vec<(&'static str, usize)> {
            vec![$((concat!("lathe_rt_", stringify!($name)), $name as *const () as usize)),*]
        }
    };
}

libcalls! {
    fn sigmoid(x: f64) -> f64 {
        elementwise::sigmoid(x)
    }

    fn tanh(x: f64) -> f64 {
        x.tanh()
    }

    fn erf(x: f64) -> f64 {
        libm::erf(x)
    }

    fn erfc(x: f64) -> f64 {
        libm::erfc(x)
    }

    fn exp(x: f64) -> f64 {
        x.exp()
    }

    fn ln(x: f64) -> f64 {
        x.ln()
    }

    fn sin(x: f64) -> f64 {
        x.sin()
    }

    fn cos(x: f64) -> f64 {
        x.cos()
    }

    fn asin(x: f64) -> f64 {
        x.asin()
    }

    fn acos(x: f64) -> f64 {
        x.acos()
    }

    fn atan(x: f64) -> f64 {
        x.atan()
    }

    fn asinh(x: f64) -> f64 {
        x.asinh()
    }

    fn acosh(x: f64) -> f64 {
        x.acosh()
    }

    fn atanh(x: f64) -> f64 {
        x.atanh()
    }

    fn softplus(x: f64) -> f64 {
        elementwise::softplus(x)
    }

    /// `p` to the power `q` (Rust's `powf`, as the interpreter).
    fn powf(p: f64, q: f64) -> f64 {
        p.powf(q)
    }

    /// TensorFlow's `FloorMod` on floats: `fmod`, moved to the divisor's sign.
    fn floor_mod(p: f64, q: f64) -> f64 {
        elementwise::floor_mod(p, q)
    }

    /// The f16 with bits `bits` (low 16) as f64 (exact).
    fn f16_to_f64(bits: u32) -> f64 {
        f16::from_bits(bits as u16).to_f64()
    }

    /// `x` rounded to the nearest f16, as its bits.
    fn f64_to_f16(x: f64) -> u32 {
        f16::from_f64(x).to_bits() as u32
    }

    /// `x` rounded to the nearest bf16, as its bits.
    fn f64_to_bf16(x: f64) -> u32 {
        bf16::from_f64(x).to_bits() as u32
    }

    /// `x` rounded to the nearest f16, back in f64.
    fn round_f16(x: f64) -> f64 {
        f16::from_f64(x).to_f64()
    }

    /// `x` rounded to the nearest bf16, back in f64.
    fn round_bf16(x: f64) -> f64 {
        bf16::from_f64(x).to_f64()
    }

    /// `x^e` wrapping modulo 2^64 (square-and-multiply); a negative `e` gives 0 (the caller
    /// reports it). Narrower integers take the low bits, which wrapping arithmetic keeps exact.
    fn pow_i64(x: i64, e: i64) -> i64 {
        if e < 0 {
            return 0;
        }
        pow_u64(x as u64, e as u64) as i64
    }

    /// `x^e` wrapping modulo 2^64 for unsigned operands.
    fn pow_u64(x: u64, e: u64) -> u64 {
        elementwise::pow_wrap_u64(x, e)
    }
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
