//! Elementwise ONNX ops: arithmetic, comparisons, logic, casts and activations. Activations
//! the IR has no op for are written with the ops it has (`LeakyRelu` is a select).

use super::{apply, item_row, one, row, OnnxOp};
use crate::import::onnx::{Builder, Item, NodeCx};
use lathe_ir::ops::{BinaryOp as B, UnaryOp as U};
use lathe_ir::{DType, Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

/// `op(x)` for the unary op a row names.
macro_rules! unary {
    ($name:literal, $op:expr) => {
        row($name, &[Op::Unary($op).mnemonic()], |b, cx| {
            apply(b, cx, Op::Unary($op), 1)
        })
    };
}

/// `op(x, y)` (broadcast) for the binary op a row names.
macro_rules! binary {
    ($name:literal, $op:expr) => {
        row($name, &[Op::Binary($op).mnemonic()], |b, cx| {
            legacy_broadcast(cx)?;
            apply(b, cx, Op::Binary($op), 2)
        })
    };
}

/// A variadic op folded left over its inputs with `op` (`Max`, `Min`, `Sum`).
macro_rules! variadic {
    ($name:literal, $op:expr) => {
        row($name, &[Op::Binary($op).mnemonic()], |b, cx| {
            one(fold(b, cx, $op)?)
        })
    };
}

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        unary!("Abs", U::Abs),
        unary!("Neg", U::Neg),
        unary!("Relu", U::Relu),
        unary!("Sigmoid", U::Sigmoid),
        unary!("Tanh", U::Tanh),
        unary!("Erf", U::Erf),
        unary!("Sqrt", U::Sqrt),
        unary!("Exp", U::Exp),
        unary!("Log", U::Log),
        unary!("Reciprocal", U::Reciprocal),
        unary!("Floor", U::Floor),
        unary!("Ceil", U::Ceil),
        unary!("Round", U::Round),
        unary!("Sign", U::Sign),
        unary!("Sin", U::Sin),
        unary!("Cos", U::Cos),
        unary!("Asin", U::Asin),
        unary!("Acos", U::Acos),
        unary!("Atan", U::Atan),
        unary!("Asinh", U::Asinh),
        unary!("Acosh", U::Acosh),
        unary!("Atanh", U::Atanh),
        unary!("Softplus", U::Softplus),
        unary!("Softsign", U::Softsign),
        unary!("Not", U::LogicalNot),
        binary!("Add", B::Add),
        binary!("Sub", B::Sub),
        binary!("Mul", B::Mul),
        binary!("Div", B::Div),
        binary!("Equal", B::Equal),
        binary!("Less", B::Less),
        binary!("LessOrEqual", B::LessEqual),
        binary!("Greater", B::Greater),
        binary!("GreaterOrEqual", B::GreaterEqual),
        binary!("And", B::LogicalAnd),
        binary!("Or", B::LogicalOr),
        // Xor of bools is inequality.
        binary!("Xor", B::NotEqual),
        variadic!("Max", B::Maximum),
        variadic!("Min", B::Minimum),
        variadic!("Sum", B::Add),
        row("Mean", &["add", "div"], |b, cx| {
            let sum = fold(b, cx, B::Add)?;
            let n = b.scalar(b.dtype(sum), cx.inputs.len() as f64);
            one(b.op(Op::Binary(B::Div), &[sum, n])?)
        }),
        row("Pow", &["pow", "cast"], |b, cx| {
            let (x, y) = (cx.input(0)?, cx.input(1)?);
            let y = cast(b, y, b.dtype(x))?;
            one(b.op(Op::Binary(B::Pow), &[x, y])?)
        }),
        row("Mod", &["floor_mod", "sub", "mul", "div"], import_mod),
        row("Where", &["select"], |b, cx| apply(b, cx, Op::Select, 3)),
        // A sequence or an optional passes through as it is.
        item_row("Identity", &["identity"], |b, cx| {
            match b.item_input(cx, 0)? {
                Item::Tensor(x) => Ok(vec![Item::Tensor(b.op(Op::Identity, &[x])?)]),
                item => Ok(vec![item]),
            }
        }),
        row("Cast", &["cast", "cast_unsaturated"], |b, cx| {
            let to = cx.attrs.dtype("to")?;
            one(onnx_cast(b, cx, cx.input(0)?, to)?)
        }),
        row("CastLike", &["cast", "cast_unsaturated"], |b, cx| {
            let to = b.dtype(cx.input(1)?);
            one(onnx_cast(b, cx, cx.input(0)?, to)?)
        }),
        row("Clip", &["maximum", "minimum"], import_clip),
        row("LeakyRelu", &["select", "less", "mul"], |b, cx| {
            let alpha = cx.attrs.float_or("alpha", 0.01)?;
            let x = cx.input(0)?;
            let ax = mul_scalar(b, x, alpha as f64)?;
            one(where_negative(b, x, ax, x)?)
        }),
        row("PRelu", &["select", "less", "mul"], |b, cx| {
            let (x, slope) = (cx.input(0)?, cx.input(1)?);
            let ax = b.op(Op::Binary(B::Mul), &[x, slope])?;
            one(where_negative(b, x, ax, x)?)
        }),
        row("ThresholdedRelu", &["select", "greater"], |b, cx| {
            let alpha = cx.attrs.float_or("alpha", 1.0)?;
            let x = cx.input(0)?;
            let dt = b.dtype(x);
            let (a, zero) = (b.scalar(dt, alpha as f64), b.scalar(dt, 0.0));
            let above = b.op(Op::Binary(B::Greater), &[x, a])?;
            one(b.op(Op::Select, &[above, x, zero])?)
        }),
        row("Elu", &["select", "exp", "sub", "mul", "cast"], |b, cx| {
            let alpha = cx.attrs.float_or("alpha", 1.0)?;
            one(in_f32(b, cx.input(0)?, |b, x| {
                let neg = expm1_times(b, x, alpha as f64)?;
                where_negative(b, x, neg, x)
            })?)
        }),
        row("Selu", &["select", "exp", "sub", "mul", "cast"], |b, cx| {
            let alpha = cx.attrs.float_or("alpha", 1.673_263_2)? as f64;
            let gamma = cx.attrs.float_or("gamma", 1.050_701)? as f64;
            one(in_f32(b, cx.input(0)?, |b, x| {
                let neg = expm1_times(b, x, alpha * gamma)?;
                let pos = mul_scalar(b, x, gamma)?;
                where_negative(b, x, neg, pos)
            })?)
        }),
        row(
            "Celu",
            &["select", "exp", "sub", "mul", "div", "cast"],
            |b, cx| {
                let alpha = cx.attrs.float_or("alpha", 1.0)? as f64;
                one(in_f32(b, cx.input(0)?, |b, x| {
                    let scaled = mul_scalar(b, x, 1.0 / alpha)?;
                    let neg = expm1_times(b, scaled, alpha)?;
                    where_negative(b, x, neg, x)
                })?)
            },
        ),
        row(
            "HardSigmoid",
            &["maximum", "minimum", "mul", "add", "cast"],
            |b, cx| {
                let alpha = cx.attrs.float_or("alpha", 0.2)? as f64;
                let beta = cx.attrs.float_or("beta", 0.5)? as f64;
                one(in_f32(b, cx.input(0)?, |b, x| {
                    hard_sigmoid(b, x, alpha, beta)
                })?)
            },
        ),
        row(
            "HardSwish",
            &["maximum", "minimum", "mul", "add", "cast"],
            |b, cx| {
                one(in_f32(b, cx.input(0)?, |b, x| {
                    let h = hard_sigmoid(b, x, 1.0 / 6.0, 0.5)?;
                    b.op(Op::Binary(B::Mul), &[x, h])
                })?)
            },
        ),
        row("Mish", &["softplus", "tanh", "mul", "cast"], |b, cx| {
            one(in_f32(b, cx.input(0)?, |b, x| {
                let sp = b.op(Op::Unary(U::Softplus), &[x])?;
                let t = b.op(Op::Unary(U::Tanh), &[sp])?;
                b.op(Op::Binary(B::Mul), &[x, t])
            })?)
        }),
        row("Gelu", &["erf", "tanh", "mul", "add", "cast"], import_gelu),
        row("Tan", &["sin", "cos", "div", "cast"], |b, cx| {
            one(in_f32(b, cx.input(0)?, |b, x| {
                let s = b.op(Op::Unary(U::Sin), &[x])?;
                let c = b.op(Op::Unary(U::Cos), &[x])?;
                b.op(Op::Binary(B::Div), &[s, c])
            })?)
        }),
        row("Sinh", &["exp", "sub", "mul", "cast"], |b, cx| {
            one(in_f32(b, cx.input(0)?, |b, x| hyperbolic(b, x, B::Sub))?)
        }),
        row("Cosh", &["exp", "add", "mul", "cast"], |b, cx| {
            one(in_f32(b, cx.input(0)?, |b, x| hyperbolic(b, x, B::Add))?)
        }),
        row("IsNaN", &["not_equal"], |b, cx| {
            let x = cx.input(0)?;
            one(b.op(Op::Binary(B::NotEqual), &[x, x])?)
        }),
        row("IsInf", &["abs", "equal", "logical_and"], import_is_inf),
        row(
            "Shrink",
            &["select", "less", "greater", "add", "sub"],
            import_shrink,
        ),
    ]
}

/// Before version 7, broadcasting was an attribute; broadcasting along a chosen `axis` (not
/// NumPy's trailing alignment) has no IR counterpart.
fn legacy_broadcast(cx: &NodeCx) -> Result<(), String> {
    if cx.opset < 7 && cx.attrs.has("axis") {
        return Err("broadcasting along an `axis` (before opset 7) is not supported".into());
    }
    Ok(())
}

/// ONNX's `Cast` of `x` to `to` with the node's `saturate` (1 by default; 0 leaves a float8
/// value beyond the range infinite or NaN) and `round_mode` (for E8M0: only `up`, the
/// default, is supported).
pub(crate) fn onnx_cast(
    b: &mut Builder,
    cx: &NodeCx,
    x: ValueId,
    to: DType,
) -> Result<ValueId, String> {
    let mode = cx.attrs.str_or("round_mode", "up")?;
    if to == DType::F8E8M0 && mode != "up" {
        return Err(format!(
            "`round_mode` {mode} is not supported (only `up`, the default)"
        ));
    }
    if cx.attrs.int_or("saturate", 1)? == 0 && to.is_low_precision_float() {
        return b.op(Op::CastUnsaturated { to }, &[x]);
    }
    cast(b, x, to)
}

/// `x` as dtype `to` (itself when it already is).
pub(crate) fn cast(b: &mut Builder, x: ValueId, to: DType) -> Result<ValueId, String> {
    if b.dtype(x) == to {
        return Ok(x);
    }
    b.op(Op::Cast { to }, &[x])
}

/// `op` folded left over every input.
fn fold(b: &mut Builder, cx: &NodeCx, op: B) -> Result<ValueId, String> {
    let mut acc = cx.input(0)?;
    for i in 1..cx.inputs.len() {
        acc = b.op(Op::Binary(op), &[acc, cx.input(i)?])?;
    }
    Ok(acc)
}

/// `f(x)` computed in f32 when `x` is f16 or bf16, rounded back once: an activation written as
/// several IR ops would otherwise round after each of them (`exp(x) - 1` in bf16 loses every
/// digit near 0), where the ONNX reference and real kernels round once. Other dtypes as they are.
pub(crate) fn in_f32(
    b: &mut Builder,
    x: ValueId,
    f: impl FnOnce(&mut Builder, ValueId) -> Result<ValueId, String>,
) -> Result<ValueId, String> {
    let dt = b.dtype(x);
    if !matches!(dt, DType::F16 | DType::BF16) {
        return f(b, x);
    }
    let wide = cast(b, x, DType::F32)?;
    let y = f(b, wide)?;
    cast(b, y, dt)
}

/// `x * k` for a constant `k` of `x`'s dtype.
pub(crate) fn mul_scalar(b: &mut Builder, x: ValueId, k: f64) -> Result<ValueId, String> {
    let k = b.scalar(b.dtype(x), k);
    b.op(Op::Binary(B::Mul), &[x, k])
}

/// `x + k` for a constant `k` of `x`'s dtype.
pub(crate) fn add_scalar(b: &mut Builder, x: ValueId, k: f64) -> Result<ValueId, String> {
    let k = b.scalar(b.dtype(x), k);
    b.op(Op::Binary(B::Add), &[x, k])
}

/// `x < 0 ? neg : pos`.
fn where_negative(
    b: &mut Builder,
    x: ValueId,
    neg: ValueId,
    pos: ValueId,
) -> Result<ValueId, String> {
    let zero = b.scalar(b.dtype(x), 0.0);
    let is_neg = b.op(Op::Binary(B::Less), &[x, zero])?;
    b.op(Op::Select, &[is_neg, neg, pos])
}

/// `k * (exp(x) - 1)`.
fn expm1_times(b: &mut Builder, x: ValueId, k: f64) -> Result<ValueId, String> {
    let e = b.op(Op::Unary(U::Exp), &[x])?;
    let e = add_scalar(b, e, -1.0)?;
    mul_scalar(b, e, k)
}

/// `clamp(alpha * x + beta, 0, 1)`.
fn hard_sigmoid(b: &mut Builder, x: ValueId, alpha: f64, beta: f64) -> Result<ValueId, String> {
    let y = mul_scalar(b, x, alpha)?;
    let y = add_scalar(b, y, beta)?;
    let dt = b.dtype(x);
    let (zero, one_) = (b.scalar(dt, 0.0), b.scalar(dt, 1.0));
    let y = b.op(Op::Binary(B::Maximum), &[y, zero])?;
    b.op(Op::Binary(B::Minimum), &[y, one_])
}

/// `(exp(x) op exp(-x)) / 2`: `Sinh` with `Sub`, `Cosh` with `Add`.
fn hyperbolic(b: &mut Builder, x: ValueId, op: B) -> Result<ValueId, String> {
    let e = b.op(Op::Unary(U::Exp), &[x])?;
    let nx = b.op(Op::Unary(U::Neg), &[x])?;
    let en = b.op(Op::Unary(U::Exp), &[nx])?;
    let s = b.op(Op::Binary(op), &[e, en])?;
    mul_scalar(b, s, 0.5)
}

/// `Clip`: bounds are attributes before opset 11, optional inputs from it.
fn import_clip(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dt = b.dtype(x);
    let (lo, hi) = if cx.opset < 11 {
        let lo = cx.attrs.float_or("min", f32::NEG_INFINITY)? as f64;
        let hi = cx.attrs.float_or("max", f32::INFINITY)? as f64;
        (Some(b.scalar(dt, lo)), Some(b.scalar(dt, hi)))
    } else {
        (cx.opt(1), cx.opt(2))
    };
    let mut y = x;
    if let Some(lo) = lo {
        y = b.op(Op::Binary(B::Maximum), &[y, lo])?;
    }
    if let Some(hi) = hi {
        y = b.op(Op::Binary(B::Minimum), &[y, hi])?;
    }
    if y == x {
        y = b.op(Op::Identity, &[x])?;
    }
    one(y)
}

/// `Mod`: with `fmod = 0` the remainder has the divisor's sign (`floor_mod`);
/// with `fmod = 1` the dividend's, `x - trunc(x / y) * y` (C's `fmod`).
fn import_mod(b: &mut Builder, cx: &NodeCx) -> Out {
    let (x, y) = (cx.input(0)?, cx.input(1)?);
    let fmod = cx.attrs.int_or("fmod", 0)?;
    let dt = b.dtype(x);
    if fmod == 0 {
        // The remainder with the divisor's sign (Python's `%`, also for floats).
        return one(b.op(Op::Binary(B::FloorMod), &[x, y])?);
    }
    if !dt.is_float() {
        // Integer division truncates, so `x - (x / y) * y` is C's remainder.
        let q = b.op(Op::Binary(B::Div), &[x, y])?;
        let qy = b.op(Op::Binary(B::Mul), &[q, y])?;
        return one(b.op(Op::Binary(B::Sub), &[x, qy])?);
    }
    // Floats: the floored remainder, moved by one divisor where the signs of the floored
    // remainder and the dividend differ (and the remainder is not zero).
    let r = b.op(Op::Binary(B::FloorMod), &[x, y])?;
    let zero = b.scalar(dt, 0.0);
    let x_neg = b.op(Op::Binary(B::Less), &[x, zero])?;
    let r_neg = b.op(Op::Binary(B::Less), &[r, zero])?;
    let r_nonzero = b.op(Op::Binary(B::NotEqual), &[r, zero])?;
    let differ = b.op(Op::Binary(B::NotEqual), &[x_neg, r_neg])?;
    let fix = b.op(Op::Binary(B::LogicalAnd), &[differ, r_nonzero])?;
    let moved = b.op(Op::Binary(B::Sub), &[r, y])?;
    one(b.op(Op::Select, &[fix, moved, r])?)
}

/// `Gelu` (opset 20): `x * (1 + erf(x / sqrt 2)) / 2`, or with `approximate = "tanh"`
/// `x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2`.
fn import_gelu(b: &mut Builder, cx: &NodeCx) -> Out {
    let approximate = cx.attrs.str_or("approximate", "none")?;
    one(in_f32(b, cx.input(0)?, |b, x| gelu(b, x, &approximate))?)
}

/// `x/2 * (1 + erf(x/sqrt2))`, or its tanh approximation.
fn gelu(b: &mut Builder, x: ValueId, approximate: &str) -> Result<ValueId, String> {
    let inner = match approximate {
        "none" => {
            let s = mul_scalar(b, x, std::f64::consts::FRAC_1_SQRT_2)?;
            b.op(Op::Unary(U::Erf), &[s])?
        }
        "tanh" => {
            let x2 = b.op(Op::Binary(B::Mul), &[x, x])?;
            let x3 = b.op(Op::Binary(B::Mul), &[x2, x])?;
            let c = mul_scalar(b, x3, 0.044_715)?;
            let s = b.op(Op::Binary(B::Add), &[x, c])?;
            let s = mul_scalar(b, s, (2.0 / std::f64::consts::PI).sqrt())?;
            b.op(Op::Unary(U::Tanh), &[s])?
        }
        other => return Err(format!("unknown `approximate` value `{other}`")),
    };
    let onep = add_scalar(b, inner, 1.0)?;
    let half = mul_scalar(b, x, 0.5)?;
    b.op(Op::Binary(B::Mul), &[half, onep])
}

/// `IsInf`: `|x| == inf`, restricted to one sign by `detect_negative`/`detect_positive`.
fn import_is_inf(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dt = b.dtype(x);
    let neg = cx.attrs.int_or("detect_negative", 1)? != 0;
    let pos = cx.attrs.int_or("detect_positive", 1)? != 0;
    let inf = b.scalar(dt, f64::INFINITY);
    let ninf = b.scalar(dt, f64::NEG_INFINITY);
    match (neg, pos) {
        (true, true) => {
            let a = b.op(Op::Unary(U::Abs), &[x])?;
            one(b.op(Op::Binary(B::Equal), &[a, inf])?)
        }
        (false, true) => one(b.op(Op::Binary(B::Equal), &[x, inf])?),
        (true, false) => one(b.op(Op::Binary(B::Equal), &[x, ninf])?),
        (false, false) => {
            // Nothing is detected: all false, shaped like x.
            one(b.op(Op::Binary(B::NotEqual), &[x, x]).and_then(|nan| {
                let f = b.op(Op::Binary(B::Equal), &[x, x])?;
                let t = b.op(Op::Binary(B::LogicalOr), &[nan, f])?;
                b.op(Op::Unary(U::LogicalNot), &[t])
            })?)
        }
    }
}

/// `Shrink`: `x < -lambd ? x + bias : x > lambd ? x - bias : 0`.
fn import_shrink(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dt = b.dtype(x);
    let lambd = cx.attrs.float_or("lambd", 0.5)? as f64;
    let bias = cx.attrs.float_or("bias", 0.0)? as f64;
    let (lo, hi, zero) = (b.scalar(dt, -lambd), b.scalar(dt, lambd), b.scalar(dt, 0.0));
    let below = b.op(Op::Binary(B::Less), &[x, lo])?;
    let above = b.op(Op::Binary(B::Greater), &[x, hi])?;
    let up = add_scalar(b, x, bias)?;
    let down = add_scalar(b, x, -bias)?;
    let y = b.op(Op::Select, &[above, down, zero])?;
    one(b.op(Op::Select, &[below, up, y])?)
}
