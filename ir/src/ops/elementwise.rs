//! Elementwise family: unary and binary math, comparisons, logic, cast and select, with NumPy
//! broadcasting and TensorFlow's semantics.
//!
//! Floats (f16, bf16, f32, f64) are computed in f64 and rounded once to the dtype. Integers use
//! exact arithmetic in their own type, wrapping on overflow; integer division by zero is an
//! error. `eval` re-checks its operands with `infer`, so a bad constant-folding call gets the
//! verifier's message instead of a panic.

use super::common::{broadcast_shapes, expect_arity};
use super::{BinaryOp, Op, OpResult, UnaryOp};
use crate::{tensor_match, DType, Elem, Tensor, TensorType};
use ndarray::{ArrayD, IxDyn, Zip};

/// Expands one body per dtype class for whichever variant `$t` holds, binding the array to
/// that class's pattern: `float` for f32/f64/f16/bf16, `int` for i8..u64, `bool` for bool. The
/// bodies may call generic code that needs a class-specific bound (such as [`IntElem`]).
macro_rules! match_class {
    ($t:expr, float $f:pat => $fb:expr, int $i:pat => $ib:expr, bool $b:pat => $bb:expr $(,)?) => {
        match $t {
            $crate::Tensor::F32($f) => $fb,
            $crate::Tensor::F64($f) => $fb,
            $crate::Tensor::F16($f) => $fb,
            $crate::Tensor::BF16($f) => $fb,
            $crate::Tensor::I8($i) => $ib,
            $crate::Tensor::I16($i) => $ib,
            $crate::Tensor::I32($i) => $ib,
            $crate::Tensor::I64($i) => $ib,
            $crate::Tensor::U8($i) => $ib,
            $crate::Tensor::U16($i) => $ib,
            $crate::Tensor::U32($i) => $ib,
            $crate::Tensor::U64($i) => $ib,
            $crate::Tensor::Bool($b) => $bb,
            low => panic!("{} is a storage type no computing op accepts", low.dtype()),
        }
    };
}
pub(crate) use match_class;

/// Integer element types, with the exact (wrapping) arithmetic TensorFlow's integer kernels do.
pub(crate) trait IntElem: Elem + Ord {
    /// Zero of the type.
    const ZERO: Self;
    /// One of the type.
    const ONE: Self;
    /// `self + o`, wrapping.
    fn add_wrap(self, o: Self) -> Self;
    /// `self - o`, wrapping.
    fn sub_wrap(self, o: Self) -> Self;
    /// `self * o`, wrapping.
    fn mul_wrap(self, o: Self) -> Self;
    /// `-self`, wrapping (`-MIN == MIN`; unsigned values wrap modulo 2^n).
    fn neg_wrap(self) -> Self;
    /// `|self|`, wrapping (`|MIN| == MIN`).
    fn abs_wrap(self) -> Self;
    /// Division truncating toward zero; `o` must not be zero (`MIN / -1 == MIN`).
    fn div_trunc(self, o: Self) -> Self;
    /// Remainder with the sign of `self`; `o` must not be zero.
    fn rem_trunc(self, o: Self) -> Self;
    /// True below zero.
    fn is_neg(self) -> bool;
    /// The value as a non-negative exponent, `None` when negative.
    fn exponent(self) -> Option<u64>;
    /// The value as i128 (exact for every integer type).
    fn to_i128(self) -> i128;
    /// The value of `v` modulo 2^n (Rust `as`).
    fn from_i128(v: i128) -> Self;
    /// Every bit flipped.
    fn bit_not(self) -> Self;
    /// `self & o`.
    fn bit_and(self, o: Self) -> Self;
    /// `self | o`.
    fn bit_or(self, o: Self) -> Self;
    /// `self ^ o`.
    fn bit_xor(self, o: Self) -> Self;
    /// `self << amount`, bits shifted out dropped; 0 when `amount` is negative or not below
    /// the width (NumPy's `left_shift`).
    fn shl_int(self, amount: Self) -> Self;
    /// `self >> amount`, arithmetic for signed types; when `amount` is negative or not below
    /// the width, every bit is the sign bit (NumPy's `right_shift`).
    fn shr_int(self, amount: Self) -> Self;

    /// Division rounding toward negative infinity (TensorFlow's `FloorDiv`).
    fn floor_div_int(self, o: Self) -> Self {
        let q = self.div_trunc(o);
        let r = self.rem_trunc(o);
        // Truncation rounded up exactly when there is a remainder and the signs differ.
        if r != Self::ZERO && r.is_neg() != o.is_neg() {
            q.sub_wrap(Self::ONE)
        } else {
            q
        }
    }

    /// Remainder with the sign of the divisor (TensorFlow's `FloorMod`, Python's `%`).
    fn floor_mod_int(self, o: Self) -> Self {
        let r = self.rem_trunc(o);
        if r != Self::ZERO && r.is_neg() != o.is_neg() {
            r.add_wrap(o)
        } else {
            r
        }
    }

    /// `self` to the power `e`, wrapping; square-and-multiply is exact because wrapping
    /// arithmetic is arithmetic modulo 2^n.
    fn pow_wrap(self, mut e: u64) -> Self {
        let mut base = self;
        let mut acc = Self::ONE;
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.mul_wrap(base);
            }
            base = base.mul_wrap(base);
            e >>= 1;
        }
        acc
    }

    /// -1, 0 or 1.
    fn sign_int(self) -> Self {
        if self.is_neg() {
            Self::ONE.neg_wrap()
        } else if self == Self::ZERO {
            Self::ZERO
        } else {
            Self::ONE
        }
    }
}

macro_rules! impl_int_elem {
    (@common $t:ty) => {
        const ZERO: Self = 0;
        const ONE: Self = 1;
        fn add_wrap(self, o: Self) -> Self {
            self.wrapping_add(o)
        }
        fn sub_wrap(self, o: Self) -> Self {
            self.wrapping_sub(o)
        }
        fn mul_wrap(self, o: Self) -> Self {
            self.wrapping_mul(o)
        }
        fn neg_wrap(self) -> Self {
            self.wrapping_neg()
        }
        fn div_trunc(self, o: Self) -> Self {
            self.wrapping_div(o)
        }
        fn rem_trunc(self, o: Self) -> Self {
            self.wrapping_rem(o)
        }
        fn exponent(self) -> Option<u64> {
            u64::try_from(self).ok()
        }
        fn to_i128(self) -> i128 {
            self as i128
        }
        fn from_i128(v: i128) -> Self {
            v as $t
        }
        fn bit_not(self) -> Self {
            !self
        }
        fn bit_and(self, o: Self) -> Self {
            self & o
        }
        fn bit_or(self, o: Self) -> Self {
            self | o
        }
        fn bit_xor(self, o: Self) -> Self {
            self ^ o
        }
        fn shl_int(self, amount: Self) -> Self {
            match u32::try_from(amount) {
                Ok(a) if a < <$t>::BITS => self << a,
                _ => 0,
            }
        }
        fn shr_int(self, amount: Self) -> Self {
            match u32::try_from(amount) {
                Ok(a) if a < <$t>::BITS => self >> a,
                _ if self.is_neg() => !0,
                _ => 0,
            }
        }
    };
    (signed $($t:ty),*) => {$(
        impl IntElem for $t {
            impl_int_elem!(@common $t);
            fn abs_wrap(self) -> Self {
                self.wrapping_abs()
            }
            fn is_neg(self) -> bool {
                self < 0
            }
        }
    )*};
    (unsigned $($t:ty),*) => {$(
        impl IntElem for $t {
            impl_int_elem!(@common $t);
            fn abs_wrap(self) -> Self {
                self
            }
            fn is_neg(self) -> bool {
                false
            }
        }
    )*};
}

impl_int_elem!(signed i8, i16, i32, i64);
impl_int_elem!(unsigned u8, u16, u32, u64);

/// Output types of elementwise ops; this is also their type check.
pub fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    let mn = op.mnemonic();
    match op {
        Op::Unary(_) => {
            expect_arity(mn, inputs, 1)?;
            op.info().check_dtypes(inputs)?;
            Ok(vec![inputs[0].clone()])
        }
        Op::Binary(b) => {
            expect_arity(mn, inputs, 2)?;
            let (x, y) = (&inputs[0], &inputs[1]);
            op.info().check_dtypes(inputs)?;
            let shape = broadcast_shapes(&x.shape, &y.shape)
                .map_err(|_| format!("{mn}: operands {x} and {y} do not broadcast"))?;
            let dtype = if b.is_comparison() {
                DType::Bool
            } else {
                x.dtype
            };
            Ok(vec![TensorType::new(dtype, shape)])
        }
        Op::Cast { to } => {
            expect_arity(mn, inputs, 1)?;
            Ok(vec![TensorType::new(*to, inputs[0].shape.clone())])
        }
        Op::CastUnsaturated { to } => {
            expect_arity(mn, inputs, 1)?;
            Ok(vec![TensorType::new(*to, inputs[0].shape.clone())])
        }
        Op::Select => {
            expect_arity(mn, inputs, 3)?;
            let (c, x, y) = (&inputs[0], &inputs[1], &inputs[2]);
            if c.dtype != DType::Bool {
                return Err(format!("select: the condition must be bool, got {c}"));
            }
            if x.dtype != y.dtype {
                return Err(format!(
                    "select: the two branches must have one dtype, got {x} and {y}"
                ));
            }
            let shape = broadcast_shapes(&c.shape, &x.shape)
                .and_then(|s| broadcast_shapes(&s, &y.shape))
                .map_err(|_| {
                    format!("select: condition {c} and branches {x}, {y} do not broadcast")
                })?;
            Ok(vec![TensorType::new(x.dtype, shape)])
        }
        _ => unreachable!("{op:?} is not an elementwise op"),
    }
}

/// Evaluates elementwise ops.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let out = infer(op, &types)?;
    let shape = out[0]
        .shape
        .as_known()
        .expect("concrete operands give a concrete shape");
    let result = match op {
        Op::Unary(u) => unary(*u, inputs[0])?,
        Op::Binary(b) => binary(*b, inputs[0], inputs[1], &shape)?,
        Op::Cast { to } => inputs[0].cast(*to),
        Op::CastUnsaturated { to } => inputs[0].cast_unsaturated(*to),
        Op::Select => {
            let c = inputs[0]
                .as_array::<bool>()
                .expect("infer checked the condition is bool");
            tensor_match!(inputs[1], x => {
                let y = same_dtype(x, inputs[2])?;
                Elem::wrap(select(c, x, y, &shape))
            })
        }
        _ => unreachable!("{op:?} is not an elementwise op"),
    };
    Ok(vec![result])
}

/// `b`'s array when it has the element type of `_like`.
fn same_dtype<'a, T: Elem>(_like: &ArrayD<T>, b: &'a Tensor) -> OpResult<&'a ArrayD<T>> {
    T::view(b).ok_or_else(|| {
        format!(
            "operands must have one dtype, got {} and {}",
            T::DTYPE,
            b.dtype()
        )
    })
}

/// Returns `a` in standard (row-major) layout, copying only when it is not.
pub(crate) fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// `f` applied to `x` and `y` broadcast to `shape`, into a new row-major array.
fn zip_map<A: Elem, R: Elem>(
    x: &ArrayD<A>,
    y: &ArrayD<A>,
    shape: &[usize],
    f: impl Fn(A, A) -> R,
) -> ArrayD<R> {
    let xv = x
        .broadcast(IxDyn(shape))
        .expect("infer checked broadcasting");
    let yv = y
        .broadcast(IxDyn(shape))
        .expect("infer checked broadcasting");
    let mut out = ArrayD::from_elem(IxDyn(shape), R::default());
    Zip::from(&mut out)
        .and(&xv)
        .and(&yv)
        .for_each(|o, &a, &b| *o = f(a, b));
    out
}

fn select<T: Elem>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    let cv = c
        .broadcast(IxDyn(shape))
        .expect("infer checked broadcasting");
    let xv = x
        .broadcast(IxDyn(shape))
        .expect("infer checked broadcasting");
    let yv = y
        .broadcast(IxDyn(shape))
        .expect("infer checked broadcasting");
    let mut out = ArrayD::from_elem(IxDyn(shape), T::default());
    Zip::from(&mut out)
        .and(&cv)
        .and(&xv)
        .and(&yv)
        .for_each(|o, &c, &a, &b| *o = if c { a } else { b });
    out
}

// ---- unary ------------------------------------------------------------------------------

fn unary(u: UnaryOp, x: &Tensor) -> OpResult<Tensor> {
    Ok(match_class!(x,
        float a => {
            let f = float_unary(u).ok_or_else(|| unsupported(u.mnemonic(), x.dtype()))?;
            map_float(a, f)
        },
        int a => Elem::wrap(standard(int_unary(u, a)?)),
        bool a => match u {
            UnaryOp::LogicalNot => Tensor::Bool(standard(a.mapv(|v| !v))),
            _ => return Err(unsupported(u.mnemonic(), DType::Bool)),
        },
    ))
}

/// `f` applied to every element in f64, rounded once to the dtype.
fn map_float<T: Elem>(a: &ArrayD<T>, f: fn(f64) -> f64) -> Tensor {
    T::wrap(standard(a.mapv(|v| T::from_f64(f(v.to_f64())))))
}

fn unsupported(mn: &str, dt: DType) -> String {
    format!("{mn} is not defined on {dt}")
}

/// The logistic function, with `exp` of a non-positive number only: no overflow for large `|x|`.
/// (The reference every backend's f64 path calls.)
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log1p(exp(x))` as `max(x, 0) + log1p(exp(-|x|))`: `exp` never overflows; NaN stays NaN.
#[inline]
pub fn softplus(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }
}

/// TensorFlow's `FloorMod` on floats: `fmod`, then moved to the divisor's sign.
#[inline]
pub fn floor_mod(p: f64, q: f64) -> f64 {
    let r = p % q;
    if r != 0.0 && (r < 0.0) != (q < 0.0) {
        r + q
    } else {
        r
    }
}

/// The f64 function of a unary op on floats.
fn float_unary(u: UnaryOp) -> Option<fn(f64) -> f64> {
    use UnaryOp::*;
    Some(match u {
        Neg => |x| -x,
        Abs => f64::abs,
        // Written as comparisons so NaN passes through, as in TensorFlow.
        Relu => |x| if x < 0.0 { 0.0 } else { x },
        Relu6 => |x| x.clamp(0.0, 6.0),
        Sigmoid => sigmoid,
        Tanh => f64::tanh,
        Erf => libm::erf,
        Erfc => libm::erfc,
        Rsqrt => |x| 1.0 / x.sqrt(),
        Sqrt => f64::sqrt,
        Exp => f64::exp,
        Log => f64::ln,
        Square => |x| x * x,
        Reciprocal => |x| 1.0 / x,
        Floor => f64::floor,
        Ceil => f64::ceil,
        Round => f64::round_ties_even,
        Sign => |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                // 0 stays 0 (keeping its sign) and NaN stays NaN.
                x
            }
        },
        Sin => f64::sin,
        Cos => f64::cos,
        Asin => f64::asin,
        Acos => f64::acos,
        Atan => f64::atan,
        Asinh => f64::asinh,
        Acosh => f64::acosh,
        Atanh => f64::atanh,
        Softplus => softplus,
        Softsign => |x| x / (1.0 + x.abs()),
        LogicalNot | BitwiseNot => return None,
    })
}

fn int_unary<T: IntElem>(u: UnaryOp, a: &ArrayD<T>) -> OpResult<ArrayD<T>> {
    use UnaryOp::*;
    let f: fn(T) -> T = match u {
        Neg => T::neg_wrap,
        Abs => T::abs_wrap,
        Relu => |x| x.max(T::ZERO),
        Relu6 => |x| x.clamp(T::ZERO, T::from_i64(6)),
        Square => |x| x.mul_wrap(x),
        Sign => T::sign_int,
        Round => |x| x,
        BitwiseNot => T::bit_not,
        _ => return Err(unsupported(u.mnemonic(), T::DTYPE)),
    };
    Ok(a.mapv(f))
}

// ---- binary -----------------------------------------------------------------------------

fn binary(b: BinaryOp, x: &Tensor, y: &Tensor, shape: &[usize]) -> OpResult<Tensor> {
    match_class!(x,
        float a => float_binary(b, a, same_dtype(a, y)?, shape),
        int a => int_binary(b, a, same_dtype(a, y)?, shape),
        bool a => bool_binary(b, a, same_dtype(a, y)?, shape),
    )
}

/// The comparison function of a comparison op.
fn comparison<T: PartialOrd>(b: BinaryOp) -> Option<fn(T, T) -> bool> {
    use BinaryOp::*;
    Some(match b {
        Equal => |x, y| x == y,
        NotEqual => |x, y| x != y,
        Less => |x, y| x < y,
        LessEqual => |x, y| x <= y,
        Greater => |x, y| x > y,
        GreaterEqual => |x, y| x >= y,
        _ => return None,
    })
}

fn float_binary<T: Elem>(
    b: BinaryOp,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    shape: &[usize],
) -> OpResult<Tensor> {
    use BinaryOp::*;
    if let Some(f) = comparison::<f64>(b) {
        // Every float type converts to f64 exactly, so comparing in f64 is exact.
        return Ok(Tensor::Bool(zip_map(x, y, shape, |p, q| {
            f(p.to_f64(), q.to_f64())
        })));
    }
    let f: fn(f64, f64) -> f64 = match b {
        Add => |p, q| p + q,
        Sub => |p, q| p - q,
        Mul => |p, q| p * q,
        Div => |p, q| p / q,
        FloorDiv => |p, q| (p / q).floor(),
        FloorMod => floor_mod,
        // NaN in either operand gives NaN (f64::max would drop it).
        Maximum => |p, q| if p.is_nan() || p > q { p } else { q },
        Minimum => |p, q| if p.is_nan() || p < q { p } else { q },
        Pow => f64::powf,
        SquaredDifference => |p, q| (p - q) * (p - q),
        _ => return Err(unsupported(b.mnemonic(), T::DTYPE)),
    };
    Ok(T::wrap(zip_map(x, y, shape, |p, q| {
        T::from_f64(f(p.to_f64(), q.to_f64()))
    })))
}

fn int_binary<T: IntElem>(
    b: BinaryOp,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    shape: &[usize],
) -> OpResult<Tensor> {
    use BinaryOp::*;
    if let Some(f) = comparison::<T>(b) {
        return Ok(Tensor::Bool(zip_map(x, y, shape, f)));
    }
    // Every element of `y` is used when the output is not empty (broadcasting only repeats),
    // so checking `y` up front is exact and keeps the kernels below infallible.
    let used = shape.iter().product::<usize>() > 0;
    if matches!(b, Div | FloorDiv | FloorMod) && used && y.iter().any(|&v| v == T::ZERO) {
        return Err(format!(
            "{}: integer division by zero ({} divisor)",
            b.mnemonic(),
            T::DTYPE
        ));
    }
    if b == Pow && used {
        if let Some(&e) = y.iter().find(|v| v.is_neg()) {
            return Err(format!(
                "pow: integers to negative integer powers are not allowed (exponent {})",
                e.to_i128()
            ));
        }
    }
    let f: fn(T, T) -> T = match b {
        Add => T::add_wrap,
        Sub => T::sub_wrap,
        Mul => T::mul_wrap,
        Div => T::div_trunc,
        FloorDiv => T::floor_div_int,
        FloorMod => T::floor_mod_int,
        Maximum => |p, q| p.max(q),
        Minimum => |p, q| p.min(q),
        Pow => |p, q| p.pow_wrap(q.exponent().expect("negative exponents rejected above")),
        SquaredDifference => |p, q| {
            let d = p.sub_wrap(q);
            d.mul_wrap(d)
        },
        BitwiseAnd => T::bit_and,
        BitwiseOr => T::bit_or,
        BitwiseXor => T::bit_xor,
        LeftShift => T::shl_int,
        RightShift => T::shr_int,
        _ => return Err(unsupported(b.mnemonic(), T::DTYPE)),
    };
    Ok(T::wrap(zip_map(x, y, shape, f)))
}

fn bool_binary(
    b: BinaryOp,
    x: &ArrayD<bool>,
    y: &ArrayD<bool>,
    shape: &[usize],
) -> OpResult<Tensor> {
    use BinaryOp::*;
    let f: fn(bool, bool) -> bool = match b {
        Equal => |p, q| p == q,
        NotEqual => |p, q| p != q,
        LogicalAnd => |p, q| p && q,
        LogicalOr => |p, q| p || q,
        _ => return Err(unsupported(b.mnemonic(), DType::Bool)),
    };
    Ok(Tensor::Bool(zip_map(x, y, shape, f)))
}

/// `x` to the power `e` wrapping modulo 2^64, as the interpreter computes integer `pow`
/// (for generated code's libcall, which must match it).
pub fn pow_wrap_u64(x: u64, e: u64) -> u64 {
    x.pow_wrap(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dim, Shape};
    use half::{bf16, f16};

    /// Evaluates `op`, checking that `infer` promised the dtype and shape `eval` produced.
    fn run(op: Op, inputs: &[&Tensor]) -> Tensor {
        let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let consts: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let ty = op.infer(&types, &consts).unwrap().remove(0);
        let out = op.eval(inputs).unwrap().remove(0);
        assert_eq!(out.ty(), ty, "{op}: eval disagrees with infer");
        assert!(tensor_match!(&out, a => a.is_standard_layout()));
        out
    }

    fn run_err(op: Op, inputs: &[&Tensor]) -> String {
        op.eval(inputs).unwrap_err()
    }

    fn infer_err(op: Op, types: &[TensorType]) -> String {
        let consts = vec![None; types.len()];
        op.infer(types, &consts).unwrap_err()
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec())
    }

    fn i32s(shape: &[usize], v: &[i32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec())
    }

    fn bools(shape: &[usize], v: &[bool]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec())
    }

    fn vals_f32(t: &Tensor) -> Vec<f32> {
        t.as_array::<f32>().unwrap().iter().copied().collect()
    }

    fn vals_i32(t: &Tensor) -> Vec<i32> {
        t.as_array::<i32>().unwrap().iter().copied().collect()
    }

    fn vals_bool(t: &Tensor) -> Vec<bool> {
        t.as_array::<bool>().unwrap().iter().copied().collect()
    }

    fn assert_close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            let g = *g as f64;
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()),
                "got {got:?}, want {want:?}"
            );
        }
    }

    fn un(u: UnaryOp, v: &[f32]) -> Vec<f32> {
        vals_f32(&run(Op::Unary(u), &[&f32s(&[v.len()], v)]))
    }

    #[test]
    fn float_unary_values() {
        use UnaryOp::*;
        let tol = 1e-7;
        assert_eq!(un(Neg, &[1.5, -2.0]), [-1.5, 2.0]);
        assert_eq!(un(Abs, &[-1.5, 2.0]), [1.5, 2.0]);
        assert_eq!(un(Relu, &[-1.0, 0.5, 7.0]), [0.0, 0.5, 7.0]);
        assert_eq!(un(Relu6, &[-1.0, 0.5, 7.0]), [0.0, 0.5, 6.0]);
        assert!(un(Relu, &[f32::NAN])[0].is_nan());
        assert_close(
            &un(Sigmoid, &[0.0, 1.0, -1.0, 1000.0, -1000.0]),
            &[0.5, 0.7310585786300049, 0.2689414213699951, 1.0, 0.0],
            tol,
        );
        assert_close(&un(Tanh, &[0.0, 1.0]), &[0.0, 0.7615941559557649], tol);
        assert_close(
            &un(Erf, &[0.0, 0.5, -1.0]),
            &[0.0, 0.5204998778130465, -0.8427007929497149],
            tol,
        );
        assert_close(&un(Erfc, &[0.5]), &[0.4795001221869535], tol);
        assert_eq!(un(Rsqrt, &[4.0, 0.25]), [0.5, 2.0]);
        assert_eq!(un(Rsqrt, &[0.0]), [f32::INFINITY]);
        assert_eq!(un(Sqrt, &[9.0, 2.25]), [3.0, 1.5]);
        assert!(un(Sqrt, &[-1.0])[0].is_nan());
        assert_close(&un(Exp, &[0.0, 1.0]), &[1.0, std::f64::consts::E], tol);
        assert_close(&un(Log, &[1.0, std::f32::consts::E]), &[0.0, 1.0], tol);
        assert_eq!(un(Log, &[0.0]), [f32::NEG_INFINITY]);
        assert_eq!(un(Square, &[-3.0, 0.5]), [9.0, 0.25]);
        assert_eq!(un(Reciprocal, &[4.0, -0.5]), [0.25, -2.0]);
        assert_eq!(un(Floor, &[-1.5, 1.5, 2.0]), [-2.0, 1.0, 2.0]);
        assert_eq!(un(Ceil, &[-1.5, 1.5, 2.0]), [-1.0, 2.0, 2.0]);
        // Half to even, as TensorFlow's Round (not Rust's f32::round).
        assert_eq!(
            un(Round, &[0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6]),
            [0.0, 2.0, 2.0, -0.0, -2.0, 2.0, 3.0]
        );
        assert_eq!(un(Sign, &[-3.0, 0.0, 2.5]), [-1.0, 0.0, 1.0]);
        assert_close(
            &un(Sin, &[0.0, std::f32::consts::FRAC_PI_2]),
            &[0.0, 1.0],
            tol,
        );
        assert_close(&un(Cos, &[0.0, std::f32::consts::PI]), &[1.0, -1.0], tol);
        assert_close(
            &un(Softplus, &[0.0, 1.0, 1000.0, -1000.0, -20.0]),
            &[
                std::f64::consts::LN_2,
                1.3132616875182228,
                1000.0,
                0.0,
                2.061153620314381e-9,
            ],
            tol,
        );
        assert_close(
            &un(Softsign, &[0.0, 1.0, -3.0, 1e30]),
            &[0.0, 0.5, -0.75, 1.0],
            tol,
        );
    }

    #[test]
    fn inverse_trig_values() {
        use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};
        use UnaryOp::*;
        let tol = 1e-7;
        let nan = f64::NAN;
        assert_close(
            &un(Asin, &[0.0, 0.5, 1.0, -1.0, 1.5]),
            &[0.0, PI / 6.0, FRAC_PI_2, -FRAC_PI_2, nan],
            tol,
        );
        assert_close(
            &un(Acos, &[1.0, 0.5, 0.0, -1.0, -2.0]),
            &[0.0, PI / 3.0, FRAC_PI_2, PI, nan],
            tol,
        );
        assert_close(
            &un(Atan, &[0.0, 1.0, -1.0, 1e30, f32::NEG_INFINITY]),
            &[0.0, FRAC_PI_4, -FRAC_PI_4, FRAC_PI_2, -FRAC_PI_2],
            tol,
        );
        // asinh(x) = ln(x + sqrt(x^2 + 1)); at 1e30 that is ln(2e30), with no overflow.
        assert_close(
            &un(Asinh, &[0.0, 1.0, -1.0, 1e30]),
            &[
                0.0,
                0.881373587019543,
                -0.881373587019543,
                69.77069997038132,
            ],
            tol,
        );
        assert_close(
            &un(Acosh, &[1.0, 2.0, 1e30, 0.5]),
            &[0.0, 1.3169578969248166, 69.77069997038132, nan],
            tol,
        );
        assert_close(
            &un(Atanh, &[0.0, 0.5, -0.5, 2.0]),
            &[0.0, 0.5493061443340549, -0.5493061443340549, nan],
            tol,
        );
        assert_eq!(un(Atanh, &[1.0, -1.0]), [f32::INFINITY, f32::NEG_INFINITY]);
    }

    #[test]
    fn half_types_round_once_to_the_dtype() {
        // The f16 spacing at 1 is 2^-10. 1 + 2^-11 is a tie and rounds to the even 1;
        // 1 + 3 * 2^-11 is a tie and rounds to the even 1 + 2^-9.
        let h = |v: f64| f16::from_f64(v);
        let a = Tensor::from_vec(&[3], vec![h(1.0), h(1.0), h(3.0)]);
        let b = Tensor::from_vec(
            &[3],
            vec![h(2f64.powi(-11)), h(3.0 * 2f64.powi(-11)), h(0.5)],
        );
        let out = run(Op::Binary(BinaryOp::Add), &[&a, &b]);
        assert_eq!(out.dtype(), DType::F16);
        assert_eq!(out.to_f64_vec(), [1.0, 1.0 + 2f64.powi(-9), 3.5]);
        let x = Tensor::from_vec(&[2], vec![bf16::from_f32(0.0), bf16::from_f32(-2.0)]);
        let out = run(Op::Unary(UnaryOp::Sigmoid), &[&x]);
        assert_eq!(out.dtype(), DType::BF16);
        assert_eq!(out.to_f64_vec()[0], 0.5);
        // sigmoid(-2) = 0.1192..., the nearest bf16 is 0.119140625.
        assert_eq!(out.to_f64_vec()[1], 0.119140625);
    }

    #[test]
    fn logical_not() {
        let out = run(
            Op::Unary(UnaryOp::LogicalNot),
            &[&bools(&[2], &[true, false])],
        );
        assert_eq!(vals_bool(&out), [false, true]);
    }

    #[test]
    fn broadcasting_against_a_column_a_scalar_and_a_row() {
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let x = f32s(&[2, 3, 4], &x);
        // [2,3,4] + [3,1]: row j of every batch gets 100 * (j + 1).
        let col = f32s(&[3, 1], &[100.0, 200.0, 300.0]);
        let out = run(Op::Binary(BinaryOp::Add), &[&x, &col]);
        assert_eq!(out.shape(), [2, 3, 4]);
        let want: Vec<f32> = (0..24)
            .map(|i| i as f32 + 100.0 * ((i / 4) % 3 + 1) as f32)
            .collect();
        assert_eq!(vals_f32(&out), want);
        assert_eq!(vals_f32(&out)[..5], [100.0, 101.0, 102.0, 103.0, 204.0]);
        // The column on the left: operand order matters for sub.
        let out = run(Op::Binary(BinaryOp::Sub), &[&col, &x]);
        assert_eq!(out.shape(), [2, 3, 4]);
        assert_eq!(vals_f32(&out)[..5], [100.0, 99.0, 98.0, 97.0, 196.0]);
        // With a scalar.
        let two = Tensor::scalar(2.0f32);
        let out = run(Op::Binary(BinaryOp::Mul), &[&x, &two]);
        let want: Vec<f32> = (0..24).map(|i| 2.0 * i as f32).collect();
        assert_eq!(vals_f32(&out), want);
        // With a row of 4: every [.., .., k] gets row[k].
        let row = f32s(&[4], &[10.0, 20.0, 30.0, 40.0]);
        let out = run(Op::Binary(BinaryOp::Sub), &[&x, &row]);
        let want: Vec<f32> = (0..24)
            .map(|i| i as f32 - 10.0 * (i % 4 + 1) as f32)
            .collect();
        assert_eq!(vals_f32(&out), want);
        // Both operands stretch: [3,1] with [1,4] gives [3,4].
        let a = i32s(&[3, 1], &[1, 2, 3]);
        let b = i32s(&[1, 4], &[10, 20, 30, 40]);
        let out = run(Op::Binary(BinaryOp::Mul), &[&a, &b]);
        assert_eq!(out.shape(), [3, 4]);
        assert_eq!(
            vals_i32(&out),
            [10, 20, 30, 40, 20, 40, 60, 80, 30, 60, 90, 120]
        );
    }

    #[test]
    fn float_binary_values() {
        use BinaryOp::*;
        let a = f32s(&[4], &[-7.0, 7.0, 2.0, -2.5]);
        let b = f32s(&[4], &[2.0, -2.0, 3.0, 0.5]);
        let bin = |op| vals_f32(&run(Op::Binary(op), &[&a, &b]));
        assert_eq!(bin(Add), [-5.0, 5.0, 5.0, -2.0]);
        assert_eq!(bin(Div), [-3.5, -3.5, 2.0 / 3.0, -5.0]);
        assert_eq!(bin(FloorDiv), [-4.0, -4.0, 0.0, -5.0]);
        assert_eq!(bin(FloorMod), [1.0, -1.0, 2.0, 0.0]);
        assert_eq!(bin(Maximum), [2.0, 7.0, 3.0, 0.5]);
        assert_eq!(bin(Minimum), [-7.0, -2.0, 2.0, -2.5]);
        let pow = bin(Pow);
        assert_eq!(pow[..3], [49.0, 1.0 / 49.0, 8.0]);
        assert!(
            pow[3].is_nan(),
            "a negative base to a fractional power is NaN"
        );
        assert_eq!(bin(SquaredDifference), [81.0, 81.0, 1.0, 9.0]);
        let nan = f32s(&[2], &[f32::NAN, 1.0]);
        let one = f32s(&[2], &[1.0, f32::NAN]);
        let out = vals_f32(&run(Op::Binary(Maximum), &[&nan, &one]));
        assert!(out[0].is_nan() && out[1].is_nan(), "maximum propagates NaN");
        let out = vals_f32(&run(Op::Binary(Div), &[&one, &f32s(&[2], &[0.0, 0.0])]));
        assert_eq!(
            out[0],
            f32::INFINITY,
            "float division by zero is IEEE, not an error"
        );
    }

    #[test]
    fn integer_division_follows_tensorflow() {
        use BinaryOp::*;
        let a = i32s(&[4], &[7, -7, 7, -7]);
        let b = i32s(&[4], &[2, 2, -2, -2]);
        let bin = |op| vals_i32(&run(Op::Binary(op), &[&a, &b]));
        assert_eq!(bin(Div), [3, -3, -3, 3], "truncates toward zero");
        assert_eq!(bin(FloorDiv), [3, -4, -4, 3], "rounds toward -inf");
        assert_eq!(bin(FloorMod), [1, 1, -1, -1], "takes the divisor's sign");
        let exact = i32s(&[2], &[-6, 6]);
        let three = i32s(&[], &[-3]);
        assert_eq!(
            vals_i32(&run(Op::Binary(FloorDiv), &[&exact, &three])),
            [2, -2]
        );
        assert_eq!(
            vals_i32(&run(Op::Binary(FloorMod), &[&exact, &three])),
            [0, 0]
        );
        // MIN / -1 overflows; it wraps instead of trapping.
        let min = i32s(&[1], &[i32::MIN]);
        let m1 = i32s(&[1], &[-1]);
        assert_eq!(vals_i32(&run(Op::Binary(Div), &[&min, &m1])), [i32::MIN]);
        assert_eq!(vals_i32(&run(Op::Binary(FloorMod), &[&min, &m1])), [0]);
        // Unsigned division is plain.
        let a = Tensor::from_vec(&[2], vec![7u8, 250]);
        let b = Tensor::from_vec(&[2], vec![2u8, 7]);
        let out = run(Op::Binary(FloorMod), &[&a, &b]);
        assert_eq!(out.to_i64_vec().unwrap(), [1, 5]);
    }

    #[test]
    fn bitwise_and_shift_values() {
        use BinaryOp::*;
        let i8s = |v: &[i8]| Tensor::from_vec(&[v.len()], v.to_vec());
        let bin = |op, x: &Tensor, y: &Tensor| run(Op::Binary(op), &[x, y]).to_i64_vec().unwrap();
        let (x, y) = (i8s(&[0b0101, -1, -128]), i8s(&[0b0011, 0x0F, 1]));
        assert_eq!(bin(BitwiseAnd, &x, &y), [0b0001, 0x0F, 0]);
        assert_eq!(bin(BitwiseOr, &x, &y), [0b0111, -1, -127]);
        assert_eq!(bin(BitwiseXor, &x, &y), [0b0110, -16, -127]);
        let not = run(Op::Unary(UnaryOp::BitwiseNot), &[&x]);
        assert_eq!(not.to_i64_vec().unwrap(), [-6, 0, 127]);
        let u = Tensor::from_vec(&[2], vec![0u16, 0xF0F0]);
        let not = run(Op::Unary(UnaryOp::BitwiseNot), &[&u]);
        assert_eq!(not.to_i64_vec().unwrap(), [0xFFFF, 0x0F0F]);
        // Shifts: bits shifted out are dropped; negative amounts and amounts not below the
        // width give 0 (left) or the sign (right), as NumPy and ONNX's BitShift.
        let (x, y) = (i8s(&[64, 1, -8, 4, -1, -8]), i8s(&[1, 7, -1, 8, 127, 2]));
        assert_eq!(bin(LeftShift, &x, &y), [-128, -128, 0, 0, 0, -32]);
        assert_eq!(bin(RightShift, &x, &y), [32, 0, -1, 0, -1, -2]);
        let u = Tensor::from_vec(&[3], vec![16u64, u64::MAX, 1]);
        let k = Tensor::from_vec(&[3], vec![1u64, 63, 64]);
        assert_eq!(
            run(Op::Binary(RightShift), &[&u, &k]).to_f64_vec(),
            [8.0, 1.0, 0.0]
        );
        let e = infer_err(
            Op::Binary(BitwiseAnd),
            &[
                TensorType::known(DType::F32, &[1]),
                TensorType::known(DType::F32, &[1]),
            ],
        );
        assert!(e.contains("only defined on integer tensors"), "{e}");
    }

    #[test]
    fn integer_division_by_zero_is_an_error() {
        let a = i32s(&[2], &[1, 2]);
        let b = i32s(&[2], &[1, 0]);
        for op in [BinaryOp::Div, BinaryOp::FloorDiv, BinaryOp::FloorMod] {
            let e = run_err(Op::Binary(op), &[&a, &b]);
            assert_eq!(
                e,
                format!("{}: integer division by zero (i32 divisor)", op.mnemonic())
            );
        }
        // An empty output divides nothing.
        let empty = i32s(&[0], &[]);
        let zero = i32s(&[1], &[0]);
        let out = run(Op::Binary(BinaryOp::Div), &[&empty, &zero]);
        assert_eq!(out.shape(), [0]);
    }

    #[test]
    fn integer_arithmetic_wraps() {
        use BinaryOp::*;
        let max = i32s(&[1], &[i32::MAX]);
        let one = i32s(&[1], &[1]);
        assert_eq!(vals_i32(&run(Op::Binary(Add), &[&max, &one])), [i32::MIN]);
        let a = Tensor::from_vec(&[1], vec![100i8]);
        let b = Tensor::from_vec(&[1], vec![3i8]);
        assert_eq!(run(Op::Binary(Mul), &[&a, &b]).to_i64_vec().unwrap(), [44]);
        let z = Tensor::from_vec(&[1], vec![0u8]);
        let o = Tensor::from_vec(&[1], vec![1u8]);
        assert_eq!(run(Op::Binary(Sub), &[&z, &o]).to_i64_vec().unwrap(), [255]);
        // 2^31 wraps to i32::MIN; 2^32 to 0.
        let base = i32s(&[4], &[3, 2, 2, -2]);
        let exp = i32s(&[4], &[4, 31, 32, 3]);
        assert_eq!(
            vals_i32(&run(Op::Binary(Pow), &[&base, &exp])),
            [81, i32::MIN, 0, -8]
        );
        assert_eq!(
            vals_i32(&run(
                Op::Binary(Pow),
                &[&i32s(&[1], &[0]), &i32s(&[1], &[0])]
            )),
            [1]
        );
        let e = run_err(Op::Binary(Pow), &[&base, &i32s(&[], &[-2])]);
        assert!(
            e.contains("negative integer powers") && e.contains("-2"),
            "{e}"
        );
        let a = i32s(&[3], &[5, -4, 0]);
        let b = i32s(&[3], &[2, 3, 0]);
        assert_eq!(vals_i32(&run(Op::Binary(Maximum), &[&a, &b])), [5, 3, 0]);
        assert_eq!(vals_i32(&run(Op::Binary(Minimum), &[&a, &b])), [2, -4, 0]);
        assert_eq!(
            vals_i32(&run(Op::Binary(SquaredDifference), &[&a, &b])),
            [9, 49, 0]
        );
        // Large u64 values must not go through f64 or i64.
        let big = Tensor::from_vec(&[1], vec![u64::MAX]);
        let big1 = Tensor::from_vec(&[1], vec![u64::MAX - 1]);
        let out = run(Op::Binary(Greater), &[&big, &big1]);
        assert_eq!(vals_bool(&out), [true]);
        let out = run(Op::Binary(Sub), &[&big, &big1]);
        assert_eq!(
            out.as_array::<u64>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [1]
        );
    }

    #[test]
    fn integer_unary_values() {
        use UnaryOp::*;
        let x = i32s(&[5], &[-7, -1, 0, 3, i32::MIN]);
        let u = |op| vals_i32(&run(Op::Unary(op), &[&x]));
        assert_eq!(u(Neg), [7, 1, 0, -3, i32::MIN]);
        assert_eq!(u(Abs), [7, 1, 0, 3, i32::MIN]);
        assert_eq!(u(Square), [49, 1, 0, 9, 0]);
        assert_eq!(u(Sign), [-1, -1, 0, 1, -1]);
        assert_eq!(u(Relu), [0, 0, 0, 3, 0]);
        assert_eq!(u(Round), [-7, -1, 0, 3, i32::MIN]);
        let y = Tensor::from_vec(&[3], vec![3u8, 9, 0]);
        assert_eq!(
            run(Op::Unary(Relu6), &[&y]).to_i64_vec().unwrap(),
            [3, 6, 0]
        );
        assert_eq!(run(Op::Unary(Sign), &[&y]).to_i64_vec().unwrap(), [1, 1, 0]);
        assert_eq!(
            run(Op::Unary(Neg), &[&y]).to_i64_vec().unwrap(),
            [253, 247, 0]
        );
    }

    #[test]
    fn comparisons_give_bool() {
        use BinaryOp::*;
        let a = f32s(&[2, 2], &[1.0, 2.0, 3.0, f32::NAN]);
        let b = f32s(&[2], &[2.0, 2.0]);
        let cmp = |op| {
            let out = run(Op::Binary(op), &[&a, &b]);
            assert_eq!(out.dtype(), DType::Bool);
            vals_bool(&out)
        };
        assert_eq!(cmp(Equal), [false, true, false, false]);
        assert_eq!(cmp(NotEqual), [true, false, true, true]);
        assert_eq!(cmp(Less), [true, false, false, false]);
        assert_eq!(cmp(LessEqual), [true, true, false, false]);
        assert_eq!(cmp(Greater), [false, false, true, false]);
        assert_eq!(cmp(GreaterEqual), [false, true, true, false]);
        let x = i32s(&[3], &[-1, 0, 1]);
        let z = i32s(&[], &[0]);
        assert_eq!(
            vals_bool(&run(Op::Binary(Less), &[&x, &z])),
            [true, false, false]
        );
        let p = bools(&[4], &[true, true, false, false]);
        let q = bools(&[4], &[true, false, true, false]);
        assert_eq!(
            vals_bool(&run(Op::Binary(Equal), &[&p, &q])),
            [true, false, false, true]
        );
        assert_eq!(
            vals_bool(&run(Op::Binary(NotEqual), &[&p, &q])),
            [false, true, true, false]
        );
        assert_eq!(
            vals_bool(&run(Op::Binary(LogicalAnd), &[&p, &q])),
            [true, false, false, false]
        );
        assert_eq!(
            vals_bool(&run(Op::Binary(LogicalOr), &[&p, &q])),
            [true, true, true, false]
        );
        let t = bools(&[], &[true]);
        assert_eq!(
            vals_bool(&run(Op::Binary(LogicalAnd), &[&p, &t])),
            [true, true, false, false]
        );
    }

    #[test]
    fn cast_uses_tensor_cast() {
        let x = f32s(&[2, 2], &[-1.7, 0.0, 2.9, 3.0]);
        let out = run(Op::Cast { to: DType::I32 }, &[&x]);
        assert_eq!(vals_i32(&out), [-1, 0, 2, 3]);
        let out = run(Op::Cast { to: DType::Bool }, &[&x]);
        assert_eq!(vals_bool(&out), [true, false, true, true]);
        let ty = Op::Cast { to: DType::F16 }
            .infer(
                &[TensorType::new(DType::I64, Shape(vec![Dim::sym("n")]))],
                &[None],
            )
            .unwrap();
        assert_eq!(ty[0].to_string(), "f16[?n]");
    }

    #[test]
    fn select_broadcasts_all_three() {
        let c = bools(&[2, 1], &[true, false]);
        let a = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f32s(&[], &[-1.0]);
        let out = run(Op::Select, &[&c, &a, &b]);
        assert_eq!(out.shape(), [2, 3]);
        assert_eq!(vals_f32(&out), [1.0, 2.0, 3.0, -1.0, -1.0, -1.0]);
        let c = bools(&[3], &[false, true, false]);
        let a = i32s(&[1], &[7]);
        let b = i32s(&[2, 1], &[8, 9]);
        let out = run(Op::Select, &[&c, &a, &b]);
        assert_eq!(out.shape(), [2, 3]);
        assert_eq!(vals_i32(&out), [8, 7, 8, 9, 7, 9]);
    }

    #[test]
    fn infer_broadcasts_symbolic_shapes() {
        let x = TensorType::new(DType::F32, Shape(vec![Dim::sym("n"), Dim::Known(1)]));
        let y = TensorType::known(DType::F32, &[4]);
        let out = Op::Binary(BinaryOp::Less)
            .infer(&[x, y], &[None, None])
            .unwrap();
        assert_eq!(out[0].to_string(), "bool[?n,4]");
    }

    #[test]
    fn type_errors_name_the_problem_and_the_types() {
        use BinaryOp::*;
        let f = |d: &[usize]| TensorType::known(DType::F32, d);
        let i = |d: &[usize]| TensorType::known(DType::I32, d);
        let b = |d: &[usize]| TensorType::known(DType::Bool, d);
        assert_eq!(
            infer_err(Op::Binary(Add), &[f(&[2])]),
            "add takes 2 inputs, got 1"
        );
        assert_eq!(
            infer_err(Op::Unary(UnaryOp::Relu), &[f(&[2]), f(&[2])]),
            "relu takes 1 input, got 2"
        );
        assert_eq!(
            infer_err(Op::Binary(Add), &[f(&[2]), i(&[2])]),
            "add: operands must have one dtype, got f32[2] and i32[2]"
        );
        assert_eq!(
            infer_err(Op::Binary(Mul), &[f(&[2, 3]), f(&[4])]),
            "mul: operands f32[2,3] and f32[4] do not broadcast"
        );
        for u in [
            UnaryOp::Erf,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Rsqrt,
        ] {
            assert_eq!(
                infer_err(Op::Unary(u), &[i(&[3])]),
                format!(
                    "{} is only defined on floating-point tensors, got i32[3]",
                    u.mnemonic()
                )
            );
        }
        assert_eq!(
            infer_err(Op::Unary(UnaryOp::LogicalNot), &[f(&[3])]),
            "logical_not is only defined on bool tensors, got f32[3]"
        );
        assert_eq!(
            infer_err(Op::Unary(UnaryOp::Neg), &[b(&[3])]),
            "neg is not defined on bool tensors, got bool[3]"
        );
        assert_eq!(
            infer_err(Op::Binary(LogicalOr), &[i(&[1]), i(&[1])]),
            "logical_or is only defined on bool tensors, got i32[1] and i32[1]"
        );
        assert_eq!(
            infer_err(Op::Binary(Add), &[b(&[1]), b(&[1])]),
            "add is not defined on bool tensors, got bool[1] and bool[1]"
        );
        assert_eq!(
            infer_err(Op::Binary(Less), &[b(&[1]), b(&[1])]),
            "less is not defined on bool tensors, got bool[1] and bool[1]"
        );
        assert_eq!(
            infer_err(Op::Select, &[f(&[2]), f(&[2]), f(&[2])]),
            "select: the condition must be bool, got f32[2]"
        );
        assert_eq!(
            infer_err(Op::Select, &[b(&[2]), f(&[2]), i(&[2])]),
            "select: the two branches must have one dtype, got f32[2] and i32[2]"
        );
        assert_eq!(
            infer_err(Op::Select, &[b(&[3]), f(&[2]), f(&[2])]),
            "select: condition bool[3] and branches f32[2], f32[2] do not broadcast"
        );
        assert_eq!(
            infer_err(Op::Cast { to: DType::F32 }, &[]),
            "cast takes 1 input, got 0"
        );
        // eval checks too, rather than panicking.
        let e = run_err(Op::Binary(Add), &[&f32s(&[1], &[1.0]), &i32s(&[1], &[1])]);
        assert_eq!(
            e,
            "add: operands must have one dtype, got f32[1] and i32[1]"
        );
        let e = run_err(Op::Unary(UnaryOp::Exp), &[&i32s(&[1], &[1])]);
        assert_eq!(
            e,
            "exp is only defined on floating-point tensors, got i32[1]"
        );
    }
}
