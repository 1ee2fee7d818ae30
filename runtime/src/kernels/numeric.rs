//! The element types of the dtype-generic kernels (every numeric dtype) and the arithmetic they
//! compute in, which is the reference interpreter's own, so results match it:
//!
//! | dtype | products and pools (`Acc`) | reductions (`Wide`) |
//! |---|---|---|
//! | f32 | f32 | f64, rounded once |
//! | f64 | f64 | f64 |
//! | f16, bf16 | f32, rounded once | f64, rounded once |
//! | integers | the type itself, wrapping | the type itself, wrapping |
//!
//! Integer products wrap in their own width, which equals the interpreter's wrapping i64
//! arithmetic cast back to the dtype (both are arithmetic modulo 2^bits).

use half::{bf16, f16};
use lathe_ir::Elem;
use std::fmt::Debug;

/// Arithmetic of a compute type: floats as IEEE, integers wrapping.
pub trait Arith: Copy + Send + Sync + PartialOrd + Debug + 'static {
    const ZERO: Self;
    const ONE: Self;
    /// The identity of `max`: -inf, or the integer minimum.
    const LOWEST: Self;
    /// The identity of `min`: +inf, or the integer maximum.
    const HIGHEST: Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `self / n`: floats divide by `n` rounded to the type, integers truncate toward zero
    /// (the quotient computed exactly, in i128, as the interpreter's integer mean does).
    fn div_count(self, n: usize) -> Self;
    /// The larger, NaN-propagating (the interpreter's `reduce_max`): a NaN already kept stays,
    /// a NaN seen is kept.
    fn max_nan(self, v: Self) -> Self;
    /// The smaller, NaN-propagating (the interpreter's `reduce_min`).
    fn min_nan(self, v: Self) -> Self;
}

macro_rules! float_arith {
    ($t:ty) => {
        impl Arith for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const LOWEST: $t = <$t>::NEG_INFINITY;
            const HIGHEST: $t = <$t>::INFINITY;
            #[inline(always)]
            fn add(self, o: $t) -> $t {
                self + o
            }
            #[inline(always)]
            fn mul(self, o: $t) -> $t {
                self * o
            }
            fn div_count(self, n: usize) -> $t {
                self / (n as $t)
            }
            #[inline(always)]
            fn max_nan(self, v: $t) -> $t {
                if !self.is_nan() && (v > self || v.is_nan()) {
                    v
                } else {
                    self
                }
            }
            #[inline(always)]
            fn min_nan(self, v: $t) -> $t {
                if !self.is_nan() && (v < self || v.is_nan()) {
                    v
                } else {
                    self
                }
            }
        }
    };
}
float_arith!(f32);
float_arith!(f64);

macro_rules! int_arith {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: $t = 0;
            const ONE: $t = 1;
            const LOWEST: $t = <$t>::MIN;
            const HIGHEST: $t = <$t>::MAX;
            #[inline(always)]
            fn add(self, o: $t) -> $t {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn mul(self, o: $t) -> $t {
                self.wrapping_mul(o)
            }
            fn div_count(self, n: usize) -> $t {
                (self as i128 / n as i128) as $t
            }
            #[inline(always)]
            fn max_nan(self, v: $t) -> $t {
                self.max(v)
            }
            #[inline(always)]
            fn min_nan(self, v: $t) -> $t {
                self.min(v)
            }
        }
    )*};
}
int_arith!(i8, i16, i32, i64, u8, u16, u32, u64);

/// A numeric element type (every dtype but bool) and its compute types.
pub trait Numeric: Elem {
    /// What products, convolutions and pooling compute in.
    type Acc: Arith;
    /// What reductions compute in.
    type Wide: Arith;
    fn acc(self) -> Self::Acc;
    /// Rounds (or, for integers, keeps) an `Acc` value back to the type.
    fn from_acc(a: Self::Acc) -> Self;
    fn wide(self) -> Self::Wide;
    fn from_wide(w: Self::Wide) -> Self;
    /// The slice read as `Acc` values, without a copy, when `Acc` is the type itself.
    fn as_acc(s: &[Self]) -> Option<&[Self::Acc]>;
    /// Whether `Acc` is the type itself (so [`Numeric::as_acc`] borrows).
    fn acc_is_self() -> bool {
        Self::as_acc(&[]).is_some()
    }
    /// True for NaN only.
    #[inline(always)]
    fn is_nan(self) -> bool {
        // The one value not equal to itself.
        #[allow(clippy::eq_op)]
        let nan = self != self;
        nan
    }
}

macro_rules! same_acc {
    ($t:ty, $wide:ty) => {
        impl Numeric for $t {
            type Acc = $t;
            type Wide = $wide;
            #[inline(always)]
            fn acc(self) -> $t {
                self
            }
            #[inline(always)]
            fn from_acc(a: $t) -> $t {
                a
            }
            #[inline(always)]
            fn wide(self) -> $wide {
                self as $wide
            }
            #[inline(always)]
            fn from_wide(w: $wide) -> $t {
                w as $t
            }
            fn as_acc(s: &[$t]) -> Option<&[$t]> {
                Some(s)
            }
        }
    };
}
same_acc!(f32, f64);
same_acc!(f64, f64);
same_acc!(i8, i8);
same_acc!(i16, i16);
same_acc!(i32, i32);
same_acc!(i64, i64);
same_acc!(u8, u8);
same_acc!(u16, u16);
same_acc!(u32, u32);
same_acc!(u64, u64);

macro_rules! half_acc {
    ($t:ty) => {
        impl Numeric for $t {
            type Acc = f32;
            type Wide = f64;
            #[inline(always)]
            fn acc(self) -> f32 {
                self.to_f32()
            }
            /// Rounded as the interpreter's cast of its f32 result is (through f64, exact).
            #[inline(always)]
            fn from_acc(a: f32) -> $t {
                <$t>::from_f64(a as f64)
            }
            #[inline(always)]
            fn wide(self) -> f64 {
                self.to_f64()
            }
            #[inline(always)]
            fn from_wide(w: f64) -> $t {
                <$t>::from_f64(w)
            }
            fn as_acc(_: &[$t]) -> Option<&[f32]> {
                None
            }
        }
    };
}
half_acc!(f16);
half_acc!(bf16);

/// Runs `$body` with `$T` the Rust element type of the numeric dtype `$dt`, or `$bool` for
/// bool (which no kernel here computes on).
macro_rules! with_numeric {
    ($dt:expr, $T:ident => $body:expr, bool => $bool:expr) => {
        match $dt {
            lathe_ir::DType::F32 => {
                type $T = f32;
                $body
            }
            lathe_ir::DType::F64 => {
                type $T = f64;
                $body
            }
            lathe_ir::DType::F16 => {
                type $T = half::f16;
                $body
            }
            lathe_ir::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            lathe_ir::DType::I8 => {
                type $T = i8;
                $body
            }
            lathe_ir::DType::I16 => {
                type $T = i16;
                $body
            }
            lathe_ir::DType::I32 => {
                type $T = i32;
                $body
            }
            lathe_ir::DType::I64 => {
                type $T = i64;
                $body
            }
            lathe_ir::DType::U8 => {
                type $T = u8;
                $body
            }
            lathe_ir::DType::U16 => {
                type $T = u16;
                $body
            }
            lathe_ir::DType::U32 => {
                type $T = u32;
                $body
            }
            lathe_ir::DType::U64 => {
                type $T = u64;
                $body
            }
            lathe_ir::DType::Bool => $bool,
            low => panic!("{low} is a storage type no computing kernel takes"),
        }
    };
}
pub(crate) use with_numeric;

/// The `len` elements at `p`, read-only; the empty slice when `len` is 0 (`p` may then be null
/// or dangling).
///
/// # Safety
/// When `len > 0`, `p` points at `len` initialized elements that nothing writes while the
/// slice lives.
pub(crate) unsafe fn elements<'a, T>(p: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        return &[];
    }
    std::slice::from_raw_parts(p, len)
}

/// The `len` elements at `p`, writable; the empty slice when `len` is 0.
///
/// # Safety
/// When `len > 0`, `p` points at `len` elements that nothing else reads or writes while the
/// slice lives.
pub(crate) unsafe fn elements_mut<'a, T>(p: *mut T, len: usize) -> &'a mut [T] {
    if len == 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(p, len)
}

/// Errors unless `dtype` is numeric (not bool), naming what needed it.
pub fn check_numeric(what: &str, dtype: lathe_ir::DType) -> Result<(), String> {
    if dtype == lathe_ir::DType::Bool {
        return Err(format!("{what} is not defined on bool"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_widths_wrap_like_i64_cast_back() {
        // The interpreter computes integer products in i64 and casts back (wrapping).
        let (a, b, c) = (100i8, 3i8, -77i8);
        let wide = (a as i64 * b as i64 + c as i64) as i8;
        assert_eq!(a.acc().mul(b).add(c), wide);
        let (x, y) = (u64::MAX - 5, 7u64);
        assert_eq!(x.mul(y), (x as i64).wrapping_mul(y as i64) as u64);
    }

    #[test]
    fn integer_mean_truncates_toward_zero_in_i128() {
        assert_eq!((-7i8).div_count(2), -3);
        assert_eq!(100i8.div_count(300), 0);
        assert_eq!(u64::MAX.div_count(2), u64::MAX / 2);
    }

    #[test]
    fn max_and_min_keep_the_first_nan() {
        assert!(f64::LOWEST.max_nan(f64::NAN).is_nan());
        assert!(f64::NAN.max_nan(3.0).is_nan());
        assert_eq!(1.0f64.max_nan(3.0), 3.0);
        assert!(2.0f32.min_nan(f32::NAN).is_nan());
        assert_eq!(2.0f32.min_nan(-1.0), -1.0);
        assert!(f16::NAN.is_nan() && !f16::ONE.is_nan() && !7u8.is_nan());
    }

    #[test]
    fn halves_round_once_from_f32() {
        let x = f16::from_f32(1.0);
        let third = f16::from_acc(x.acc() / 3.0);
        assert_eq!(third, f16::from_f64((1.0f32 / 3.0) as f64));
    }
}
