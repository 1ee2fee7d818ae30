//! The scalar instructions of a kernel: each elementwise op on the thread's element, in the
//! `arith` and `math` dialects, with the IR's semantics (NaN propagating through `maximum`,
//! `relu` passing NaN, Python's sign for `floor_mod`).

use super::emit::Emitter;
use lathe_ir::ops::{BinaryOp, UnaryOp};
use lathe_ir::{DType, Op, Tensor};

/// What a value computes in: f16 and bf16 widen to f32; integers compute in their own width
/// (MLIR's integers are signless: the ops say the sign).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compute {
    F32,
    F64,
    I1,
    Int { bits: u32, signed: bool },
}

impl Compute {
    pub fn of(d: DType) -> Result<Compute, String> {
        let int = |bits, signed| Compute::Int { bits, signed };
        Ok(match d {
            DType::F32 | DType::F16 | DType::BF16 => Compute::F32,
            DType::F64 => Compute::F64,
            DType::Bool => Compute::I1,
            DType::I8 => int(8, true),
            DType::I16 => int(16, true),
            DType::I32 => int(32, true),
            DType::I64 => int(64, true),
            DType::U8 => int(8, false),
            DType::U16 => int(16, false),
            DType::U32 => int(32, false),
            DType::U64 => int(64, false),
            d => return Err(format!("{d} kernels are not lowered to MLIR yet")),
        })
    }

    /// The MLIR type it computes in (`f32`, `i1`, `i32`, ...).
    pub fn name(self) -> String {
        self.mlir()
    }

    fn mlir(self) -> String {
        match self {
            Compute::F32 => "f32".into(),
            Compute::F64 => "f64".into(),
            Compute::I1 => "i1".into(),
            Compute::Int { bits, .. } => format!("i{bits}"),
        }
    }
}

/// An SSA scalar and its type.
#[derive(Clone, Debug)]
pub struct Scalar {
    pub name: String,
    pub ty: Compute,
}

/// A loaded element of storage dtype `d` (`raw`) as a value computing in `compute`.
pub fn widen(e: &mut Emitter, raw: String, d: DType, compute: Compute) -> Scalar {
    let name = match d {
        DType::F16 | DType::BF16 => e.assign(format!("arith.extf {raw} : {} to f32", mlir_of(d))),
        DType::Bool => {
            let zero = e.assign("arith.constant 0 : i8");
            e.assign(format!("arith.cmpi ne, {raw}, {zero} : i8"))
        }
        _ => raw,
    };
    Scalar { name, ty: compute }
}

/// `v` as stored in a memref of dtype `d`.
pub fn narrow(e: &mut Emitter, v: &Scalar, d: DType) -> String {
    match d {
        DType::F16 | DType::BF16 => {
            e.assign(format!("arith.truncf {} : f32 to {}", v.name, mlir_of(d)))
        }
        DType::Bool => e.assign(format!("arith.extui {} : i1 to i8", v.name)),
        _ => v.name.clone(),
    }
}

fn mlir_of(d: DType) -> &'static str {
    match d {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        DType::Bool => "i1",
        _ => "f32",
    }
}

/// A float constant in MLIR's syntax: decimal when finite (with the `.` MLIR requires), the
/// bit pattern otherwise.
pub(super) fn float_text(v: f64, ty: Compute) -> String {
    if !v.is_finite() {
        return match ty {
            Compute::F64 => format!("0x{:016X}", v.to_bits()),
            _ => format!("0x{:08X}", (v as f32).to_bits()),
        };
    }
    let text = match ty {
        Compute::F64 => format!("{v:?}"),
        _ => format!("{:?}", v as f32),
    };
    match text.find('e') {
        Some(p) if !text[..p].contains('.') => format!("{}.0{}", &text[..p], &text[p..]),
        _ => text,
    }
}

fn float(e: &mut Emitter, v: f64, ty: Compute) -> String {
    e.assign(format!(
        "arith.constant {} : {}",
        float_text(v, ty),
        ty.mlir()
    ))
}

/// An integer constant of type `ty`.
fn int(e: &mut Emitter, v: i64, ty: Compute) -> String {
    e.assign(format!("arith.constant {v} : {}", ty.mlir()))
}

/// The single value of an integer tensor, exactly (from its bytes).
fn int_value(t: &Tensor) -> i128 {
    let bytes = t.to_le_bytes();
    let mut v = [0u8; 16];
    v[..bytes.len()].copy_from_slice(&bytes);
    let raw = i128::from_le_bytes(v);
    let bits = 8 * bytes.len() as u32;
    let signed = matches!(t.dtype(), DType::I8 | DType::I16 | DType::I32 | DType::I64);
    if signed && bits < 128 {
        (raw << (128 - bits)) >> (128 - bits)
    } else {
        raw
    }
}

/// Zero of type `ty` (false for bool).
pub fn zero(e: &mut Emitter, ty: Compute) -> Scalar {
    let name = match ty {
        Compute::I1 => e.assign("arith.constant false"),
        Compute::Int { .. } => int(e, 0, ty),
        _ => float(e, 0.0, ty),
    };
    Scalar { name, ty }
}

/// A literal of type `ty`: `v` (integers: `v` truncated toward zero).
pub fn literal(e: &mut Emitter, v: f64, ty: Compute) -> Scalar {
    let name = match ty {
        Compute::I1 => e.assign(format!("arith.constant {}", v != 0.0)),
        Compute::Int { .. } => int(e, v as i64, ty),
        _ => float(e, v, ty),
    };
    Scalar { name, ty }
}

/// The lowest value of `ty` (negative infinity for floats), or the highest.
pub fn extreme(e: &mut Emitter, ty: Compute, highest: bool) -> Scalar {
    let name = match ty {
        Compute::I1 => e.assign(format!("arith.constant {highest}")),
        Compute::Int { bits, signed } => {
            let v: i128 = match (signed, highest) {
                (true, true) => (1i128 << (bits - 1)) - 1,
                (true, false) => -(1i128 << (bits - 1)),
                (false, true) => (1i128 << bits) - 1,
                (false, false) => 0,
            };
            // MLIR reads an integer literal of the type's width, either sign.
            let v = if signed || v < (1i128 << (bits - 1)) {
                v
            } else {
                v - (1i128 << bits)
            };
            e.assign(format!("arith.constant {v} : i{bits}"))
        }
        _ => float(
            e,
            if highest {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            },
            ty,
        ),
    };
    Scalar { name, ty }
}

/// A body constant: a single value.
pub fn constant(e: &mut Emitter, t: &Tensor) -> Result<Scalar, String> {
    if t.len() != 1 {
        return Err(format!(
            "a constant of {} elements in the kernel's body: only single values are lowered to \
             MLIR yet",
            t.len()
        ));
    }
    let ty = Compute::of(t.dtype())?;
    let v = t.to_f64_vec()[0];
    let name = match ty {
        Compute::I1 => e.assign(format!("arith.constant {} : i1", v != 0.0)),
        // MLIR reads an integer literal of the type's width, either sign.
        Compute::Int { .. } => e.assign(format!("arith.constant {} : {}", int_value(t), ty.mlir())),
        _ => float(e, v, ty),
    };
    Ok(Scalar { name, ty })
}

/// One elementwise op on `args` (operand dtypes `dtypes`), giving a value of dtype `to`.
pub fn op(
    e: &mut Emitter,
    op: &Op,
    args: &[Scalar],
    dtypes: &[DType],
    to: DType,
) -> Result<Scalar, String> {
    for &d in dtypes {
        Compute::of(d)?;
    }
    let ty = Compute::of(to)?;
    let name = match op {
        Op::Unary(u) if matches!(args[0].ty, Compute::Int { .. }) => int_unary(e, *u, &args[0])?,
        Op::Binary(b) if matches!(args[0].ty, Compute::Int { .. }) => {
            int_binary(e, *b, &args[0], &args[1])?
        }
        Op::Unary(u) => unary(e, *u, &args[0])?,
        Op::Binary(b) => binary(e, *b, &args[0], &args[1])?,
        Op::Select => e.assign(format!(
            "arith.select {}, {}, {} : {}",
            args[0].name,
            args[1].name,
            args[2].name,
            args[1].ty.mlir()
        )),
        Op::Cast { to } => cast(e, &args[0], dtypes[0], *to)?,
        op => return Err(format!("op {} is not lowered to MLIR yet", op.mnemonic())),
    };
    Ok(Scalar { name, ty })
}

fn unary(e: &mut Emitter, u: UnaryOp, x: &Scalar) -> Result<String, String> {
    let t = x.ty.mlir();
    let x_ = &x.name;
    if x.ty == Compute::I1 {
        return match u {
            UnaryOp::LogicalNot => {
                let one = e.assign("arith.constant true");
                Ok(e.assign(format!("arith.xori {x_}, {one} : i1")))
            }
            u => Err(format!(
                "{} of bool is not lowered to MLIR yet",
                u.mnemonic()
            )),
        };
    }
    let math = |e: &mut Emitter, f: &str| e.assign(format!("math.{f} {x_} : {t}"));
    Ok(match u {
        UnaryOp::Neg => e.assign(format!("arith.negf {x_} : {t}")),
        UnaryOp::Abs => math(e, "absf"),
        UnaryOp::Relu => {
            let zero = float(e, 0.0, x.ty);
            e.assign(format!("arith.maximumf {x_}, {zero} : {t}"))
        }
        UnaryOp::Relu6 => {
            let zero = float(e, 0.0, x.ty);
            let six = float(e, 6.0, x.ty);
            let r = e.assign(format!("arith.maximumf {x_}, {zero} : {t}"));
            e.assign(format!("arith.minimumf {r}, {six} : {t}"))
        }
        UnaryOp::Sigmoid => {
            let one = float(e, 1.0, x.ty);
            let neg = e.assign(format!("arith.negf {x_} : {t}"));
            let exp = e.assign(format!("math.exp {neg} : {t}"));
            let den = e.assign(format!("arith.addf {one}, {exp} : {t}"));
            e.assign(format!("arith.divf {one}, {den} : {t}"))
        }
        UnaryOp::Tanh => math(e, "tanh"),
        UnaryOp::Erf => math(e, "erf"),
        UnaryOp::Erfc => erfc(e, x),
        UnaryOp::Rsqrt => {
            // 1 / sqrt(x): MLIR's libm lowering (the host's) has no `math.rsqrt`.
            let one = float(e, 1.0, x.ty);
            let root = math(e, "sqrt");
            e.assign(format!("arith.divf {one}, {root} : {t}"))
        }
        UnaryOp::Sqrt => math(e, "sqrt"),
        UnaryOp::Exp => math(e, "exp"),
        UnaryOp::Log => math(e, "log"),
        UnaryOp::Square => e.assign(format!("arith.mulf {x_}, {x_} : {t}")),
        UnaryOp::Reciprocal => {
            let one = float(e, 1.0, x.ty);
            e.assign(format!("arith.divf {one}, {x_} : {t}"))
        }
        UnaryOp::Floor => math(e, "floor"),
        UnaryOp::Ceil => math(e, "ceil"),
        UnaryOp::Round => {
            // Ties to even, from floor (MLIR 19 lowers no `math.roundeven` to NVVM): f + 1
            // above the half, f below it, and at the half whichever of f, f + 1 is even.
            let one = float(e, 1.0, x.ty);
            let half = float(e, 0.5, x.ty);
            let two = float(e, 2.0, x.ty);
            let zero = float(e, 0.0, x.ty);
            let f = e.assign(format!("math.floor {x_} : {t}"));
            let up = e.assign(format!("arith.addf {f}, {one} : {t}"));
            let d = e.assign(format!("arith.subf {x_}, {f} : {t}"));
            let above = e.assign(format!("arith.cmpf ogt, {d}, {half} : {t}"));
            let below = e.assign(format!("arith.cmpf olt, {d}, {half} : {t}"));
            let parity = e.assign(format!("arith.remf {f}, {two} : {t}"));
            let even = e.assign(format!("arith.cmpf oeq, {parity}, {zero} : {t}"));
            let tie = e.assign(format!("arith.select {even}, {f}, {up} : {t}"));
            let low = e.assign(format!("arith.select {below}, {f}, {tie} : {t}"));
            e.assign(format!("arith.select {above}, {up}, {low} : {t}"))
        }
        UnaryOp::Sign => {
            // 1 above zero, -1 below, x itself otherwise (zero, or NaN staying NaN).
            let zero = float(e, 0.0, x.ty);
            let one = float(e, 1.0, x.ty);
            let minus = float(e, -1.0, x.ty);
            let pos = e.assign(format!("arith.cmpf ogt, {x_}, {zero} : {t}"));
            let neg = e.assign(format!("arith.cmpf olt, {x_}, {zero} : {t}"));
            let low = e.assign(format!("arith.select {neg}, {minus}, {x_} : {t}"));
            e.assign(format!("arith.select {pos}, {one}, {low} : {t}"))
        }
        UnaryOp::Sin => math(e, "sin"),
        UnaryOp::Cos => math(e, "cos"),
        UnaryOp::Atan => math(e, "atan"),
        UnaryOp::Softplus => {
            // max(x, 0) + log1p(exp(-|x|)): no overflow for large x.
            let zero = float(e, 0.0, x.ty);
            let pos = e.assign(format!("arith.maximumf {x_}, {zero} : {t}"));
            let abs = e.assign(format!("math.absf {x_} : {t}"));
            let neg = e.assign(format!("arith.negf {abs} : {t}"));
            let exp = e.assign(format!("math.exp {neg} : {t}"));
            let log = e.assign(format!("math.log1p {exp} : {t}"));
            e.assign(format!("arith.addf {pos}, {log} : {t}"))
        }
        UnaryOp::Softsign => {
            let one = float(e, 1.0, x.ty);
            let abs = e.assign(format!("math.absf {x_} : {t}"));
            let den = e.assign(format!("arith.addf {one}, {abs} : {t}"));
            e.assign(format!("arith.divf {x_}, {den} : {t}"))
        }
        u => return Err(format!("{} is not lowered to MLIR yet", u.mnemonic())),
    })
}

fn binary(e: &mut Emitter, b: BinaryOp, x: &Scalar, y: &Scalar) -> Result<String, String> {
    let (x_, y_) = (&x.name, &y.name);
    let t = x.ty.mlir();
    if x.ty == Compute::I1 {
        let f = match b {
            BinaryOp::LogicalAnd => "arith.andi",
            BinaryOp::LogicalOr => "arith.ori",
            BinaryOp::Equal => return Ok(e.assign(format!("arith.cmpi eq, {x_}, {y_} : i1"))),
            BinaryOp::NotEqual => return Ok(e.assign(format!("arith.cmpi ne, {x_}, {y_} : i1"))),
            b => {
                return Err(format!(
                    "{} of bool is not lowered to MLIR yet",
                    b.mnemonic()
                ))
            }
        };
        return Ok(e.assign(format!("{f} {x_}, {y_} : i1")));
    }
    let arith = |e: &mut Emitter, f: &str| e.assign(format!("{f} {x_}, {y_} : {t}"));
    let cmp = |e: &mut Emitter, p: &str| e.assign(format!("arith.cmpf {p}, {x_}, {y_} : {t}"));
    Ok(match b {
        BinaryOp::Add => arith(e, "arith.addf"),
        BinaryOp::Sub => arith(e, "arith.subf"),
        BinaryOp::Mul => arith(e, "arith.mulf"),
        BinaryOp::Div => arith(e, "arith.divf"),
        BinaryOp::Maximum => arith(e, "arith.maximumf"),
        BinaryOp::Minimum => arith(e, "arith.minimumf"),
        BinaryOp::Pow => arith(e, "math.powf"),
        BinaryOp::FloorDiv => {
            let q = arith(e, "arith.divf");
            e.assign(format!("math.floor {q} : {t}"))
        }
        BinaryOp::FloorMod => {
            // The remainder takes the divisor's sign (Python's `%`): r + y when r is not zero
            // and its sign differs from y's.
            let r = arith(e, "arith.remf");
            let zero = float(e, 0.0, x.ty);
            let nonzero = e.assign(format!("arith.cmpf une, {r}, {zero} : {t}"));
            let r_neg = e.assign(format!("arith.cmpf olt, {r}, {zero} : {t}"));
            let y_neg = e.assign(format!("arith.cmpf olt, {y_}, {zero} : {t}"));
            let differ = e.assign(format!("arith.xori {r_neg}, {y_neg} : i1"));
            let fix = e.assign(format!("arith.andi {nonzero}, {differ} : i1"));
            let moved = e.assign(format!("arith.addf {r}, {y_} : {t}"));
            e.assign(format!("arith.select {fix}, {moved}, {r} : {t}"))
        }
        BinaryOp::SquaredDifference => {
            let d = arith(e, "arith.subf");
            e.assign(format!("arith.mulf {d}, {d} : {t}"))
        }
        BinaryOp::Equal => cmp(e, "oeq"),
        BinaryOp::NotEqual => cmp(e, "une"),
        BinaryOp::Less => cmp(e, "olt"),
        BinaryOp::LessEqual => cmp(e, "ole"),
        BinaryOp::Greater => cmp(e, "ogt"),
        BinaryOp::GreaterEqual => cmp(e, "oge"),
        b => {
            return Err(format!(
                "{} of floats is not lowered to MLIR yet",
                b.mnemonic()
            ))
        }
    })
}

/// `x` (of dtype `from`) cast to `to`. A float to an integer is not lowered yet (the
/// interpreter saturates and maps NaN to zero; `arith.fptosi` leaves both undefined).
fn cast(e: &mut Emitter, x: &Scalar, from: DType, to: DType) -> Result<String, String> {
    let x_ = &x.name;
    let target = Compute::of(to)?;
    let (f, t) = (x.ty.mlir(), target.mlir());
    Ok(match (x.ty, target) {
        (Compute::I1, Compute::I1) => x_.clone(),
        (Compute::I1, Compute::Int { .. }) => e.assign(format!("arith.extui {x_} : i1 to {t}")),
        (Compute::I1, ty) => e.assign(format!("arith.uitofp {x_} : i1 to {}", ty.mlir())),
        (Compute::Int { .. }, Compute::I1) => {
            let zero = int(e, 0, x.ty);
            e.assign(format!("arith.cmpi ne, {x_}, {zero} : {f}"))
        }
        (Compute::Int { bits: a, signed }, Compute::Int { bits: b, .. }) => match a.cmp(&b) {
            std::cmp::Ordering::Equal => x_.clone(),
            std::cmp::Ordering::Less if signed => {
                e.assign(format!("arith.extsi {x_} : {f} to {t}"))
            }
            std::cmp::Ordering::Less => e.assign(format!("arith.extui {x_} : {f} to {t}")),
            std::cmp::Ordering::Greater => e.assign(format!("arith.trunci {x_} : {f} to {t}")),
        },
        (Compute::Int { signed, .. }, _) => {
            // Rounded once, to the target's own type, then computed on in f32 or f64.
            let op = if signed { "sitofp" } else { "uitofp" };
            round_to(e, op, x, to)
        }
        (_, Compute::Int { bits, signed }) => float_to_int(e, x, bits, signed),
        // Nonzero (NaN included) is true.
        (fl, Compute::I1) => {
            let zero = float(e, 0.0, fl);
            e.assign(format!("arith.cmpf une, {x_}, {zero} : {f}"))
        }
        (Compute::F32, Compute::F64) => e.assign(format!("arith.extf {x_} : f32 to f64")),
        (Compute::F64, Compute::F32) => round_to(e, "truncf", x, to),
        (Compute::F32, Compute::F32) if to != from && matches!(to, DType::F16 | DType::BF16) => {
            round_to(e, "truncf", x, to)
        }
        _ => x_.clone(),
    })
}

/// `erfc(x)` (MLIR 19 has no `math.erfc`, and `1 - erf(x)` loses every digit in the tail):
/// the Chebyshev fit `t * exp(-z^2 + P(t))` with `t = 1 / (1 + z / 2)`, `z = |x|` (relative
/// error below 1.2e-7 everywhere; Numerical Recipes' `erfcc`), and `2 - erfc(-x)` below 0.
fn erfc(e: &mut Emitter, x: &Scalar) -> String {
    const P: [f64; 10] = [
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    ];
    let (x_, t) = (&x.name, x.ty.mlir());
    let one = float(e, 1.0, x.ty);
    let half = float(e, 0.5, x.ty);
    let z = e.assign(format!("math.absf {x_} : {t}"));
    let hz = e.assign(format!("arith.mulf {z}, {half} : {t}"));
    let den = e.assign(format!("arith.addf {one}, {hz} : {t}"));
    let tt = e.assign(format!("arith.divf {one}, {den} : {t}"));
    // Horner's rule from the highest coefficient down.
    let mut p = float(e, P[9], x.ty);
    for &c in P[..9].iter().rev() {
        let c = float(e, c, x.ty);
        let m = e.assign(format!("arith.mulf {p}, {tt} : {t}"));
        p = e.assign(format!("arith.addf {m}, {c} : {t}"));
    }
    let zz = e.assign(format!("arith.mulf {z}, {z} : {t}"));
    let arg = e.assign(format!("arith.subf {p}, {zz} : {t}"));
    let ex = e.assign(format!("math.exp {arg} : {t}"));
    let r = e.assign(format!("arith.mulf {tt}, {ex} : {t}"));
    let two = float(e, 2.0, x.ty);
    let flipped = e.assign(format!("arith.subf {two}, {r} : {t}"));
    let zero = float(e, 0.0, x.ty);
    let neg = e.assign(format!("arith.cmpf olt, {x_}, {zero} : {t}"));
    e.assign(format!("arith.select {neg}, {flipped}, {r} : {t}"))
}

/// `x` (a float) converted to the integer type `to` as Rust's `as` does (the interpreter's
/// cast): truncated toward zero, saturated at the type's bounds, NaN giving 0.
fn float_to_int(e: &mut Emitter, x: &Scalar, bits: u32, signed: bool) -> String {
    let (x_, t) = (&x.name, x.ty.mlir());
    let it = format!("i{bits}");
    // `fpto*i` truncates toward zero itself (MLIR 19 lowers no `math.trunc` to NVVM); a value
    // just below the lower bound truncates to it, which is what saturating gives too.
    let tr = x_;
    // Bounds exact in any float type: -2^(bits-1) and 2^(bits-1) (signed), 0 and 2^bits.
    let (lo, hi) = if signed {
        (-(2f64.powi(bits as i32 - 1)), 2f64.powi(bits as i32 - 1))
    } else {
        (0.0, 2f64.powi(bits as i32))
    };
    let lo_f = float(e, lo, x.ty);
    let hi_f = float(e, hi, x.ty);
    let zero_f = float(e, 0.0, x.ty);
    // In range, made so before converting (out of range, `fpto*i` gives poison).
    let low = e.assign(format!("arith.cmpf olt, {tr}, {lo_f} : {t}"));
    let high = e.assign(format!("arith.cmpf oge, {tr}, {hi_f} : {t}"));
    let nan = e.assign(format!("arith.cmpf uno, {tr}, {tr} : {t}"));
    let out = e.assign(format!("arith.ori {low}, {high} : i1"));
    let out = e.assign(format!("arith.ori {out}, {nan} : i1"));
    let safe = e.assign(format!("arith.select {out}, {zero_f}, {tr} : {t}"));
    let op = if signed { "fptosi" } else { "fptoui" };
    let v = e.assign(format!("arith.{op} {safe} : {t} to {it}"));
    let ty = Compute::Int { bits, signed };
    let min = extreme(e, ty, false).name;
    let max = extreme(e, ty, true).name;
    let zero = int(e, 0, ty);
    let a = e.assign(format!("arith.select {low}, {min}, {v} : {it}"));
    let b = e.assign(format!("arith.select {high}, {max}, {a} : {it}"));
    e.assign(format!("arith.select {nan}, {zero}, {b} : {it}"))
}

/// `x` converted by `arith.{op}` to the float type `to` (rounded there once), and widened
/// back to f32 when `to` is f16 or bf16, which compute in f32.
fn round_to(e: &mut Emitter, op: &str, x: &Scalar, to: DType) -> String {
    let r = e.assign(format!(
        "arith.{op} {} : {} to {}",
        x.name,
        x.ty.mlir(),
        mlir_of(to)
    ));
    if matches!(to, DType::F16 | DType::BF16) {
        e.assign(format!("arith.extf {r} : {} to f32", mlir_of(to)))
    } else {
        r
    }
}

fn int_unary(e: &mut Emitter, u: UnaryOp, x: &Scalar) -> Result<String, String> {
    let (x_, t) = (&x.name, x.ty.mlir());
    let Compute::Int { signed, .. } = x.ty else {
        unreachable!("an integer")
    };
    let zero = int(e, 0, x.ty);
    Ok(match u {
        UnaryOp::Neg => e.assign(format!("arith.subi {zero}, {x_} : {t}")),
        UnaryOp::Abs if !signed => x_.clone(),
        UnaryOp::Abs => {
            // Wrapping: |MIN| is MIN.
            let neg = e.assign(format!("arith.subi {zero}, {x_} : {t}"));
            let below = e.assign(format!("arith.cmpi slt, {x_}, {zero} : {t}"));
            e.assign(format!("arith.select {below}, {neg}, {x_} : {t}"))
        }
        UnaryOp::Relu if !signed => x_.clone(),
        UnaryOp::Relu => e.assign(format!("arith.maxsi {x_}, {zero} : {t}")),
        UnaryOp::Relu6 => {
            let six = int(e, 6, x.ty);
            let (max, min) = if signed {
                ("maxsi", "minsi")
            } else {
                ("maxui", "minui")
            };
            let r = e.assign(format!("arith.{max} {x_}, {zero} : {t}"));
            e.assign(format!("arith.{min} {r}, {six} : {t}"))
        }
        UnaryOp::Square => e.assign(format!("arith.muli {x_}, {x_} : {t}")),
        UnaryOp::Round => x_.clone(),
        UnaryOp::Sign => {
            let one = int(e, 1, x.ty);
            let above = e.assign(format!(
                "arith.cmpi {}, {x_}, {zero} : {t}",
                if signed { "sgt" } else { "ugt" }
            ));
            let up = e.assign(format!("arith.select {above}, {one}, {zero} : {t}"));
            if signed {
                let minus = int(e, -1, x.ty);
                let below = e.assign(format!("arith.cmpi slt, {x_}, {zero} : {t}"));
                e.assign(format!("arith.select {below}, {minus}, {up} : {t}"))
            } else {
                up
            }
        }
        UnaryOp::BitwiseNot => {
            let ones = int(e, -1, x.ty);
            e.assign(format!("arith.xori {x_}, {ones} : {t}"))
        }
        u => {
            return Err(format!(
                "{} of integers is not lowered to MLIR yet",
                u.mnemonic()
            ))
        }
    })
}

fn int_binary(e: &mut Emitter, b: BinaryOp, x: &Scalar, y: &Scalar) -> Result<String, String> {
    let (x_, y_, t) = (&x.name, &y.name, x.ty.mlir());
    let Compute::Int { bits, signed } = x.ty else {
        unreachable!("an integer")
    };
    let s = |signed_form: &'static str, unsigned_form: &'static str| {
        if signed {
            signed_form
        } else {
            unsigned_form
        }
    };
    let arith = |e: &mut Emitter, f: &str| e.assign(format!("arith.{f} {x_}, {y_} : {t}"));
    let cmp = |e: &mut Emitter, p: &str| e.assign(format!("arith.cmpi {p}, {x_}, {y_} : {t}"));
    Ok(match b {
        BinaryOp::Add => arith(e, "addi"),
        BinaryOp::Sub => arith(e, "subi"),
        BinaryOp::Mul => arith(e, "muli"),
        BinaryOp::Maximum => arith(e, s("maxsi", "maxui")),
        BinaryOp::Minimum => arith(e, s("minsi", "minui")),
        BinaryOp::SquaredDifference => {
            let d = arith(e, "subi");
            e.assign(format!("arith.muli {d}, {d} : {t}"))
        }
        BinaryOp::Equal => cmp(e, "eq"),
        BinaryOp::NotEqual => cmp(e, "ne"),
        BinaryOp::Less => cmp(e, s("slt", "ult")),
        BinaryOp::LessEqual => cmp(e, s("sle", "ule")),
        BinaryOp::Greater => cmp(e, s("sgt", "ugt")),
        BinaryOp::GreaterEqual => cmp(e, s("sge", "uge")),
        BinaryOp::BitwiseAnd => arith(e, "andi"),
        BinaryOp::BitwiseOr => arith(e, "ori"),
        BinaryOp::BitwiseXor => arith(e, "xori"),
        BinaryOp::LeftShift | BinaryOp::RightShift => {
            // A shift by a negative amount or one not below the width gives 0 (or, shifting
            // a negative value right, -1): MLIR leaves those shifts undefined.
            let zero = int(e, 0, x.ty);
            let width = int(e, i64::from(bits), x.ty);
            let inside = e.assign(format!("arith.cmpi ult, {y_}, {width} : {t}"));
            let (shifted, outside) = if b == BinaryOp::LeftShift {
                (arith(e, "shli"), zero)
            } else if signed {
                let ones = int(e, -1, x.ty);
                let below = e.assign(format!("arith.cmpi slt, {x_}, {zero} : {t}"));
                let fill = e.assign(format!("arith.select {below}, {ones}, {zero} : {t}"));
                (arith(e, "shrsi"), fill)
            } else {
                (arith(e, "shrui"), zero)
            };
            e.assign(format!("arith.select {inside}, {shifted}, {outside} : {t}"))
        }
        b => {
            return Err(format!(
                "{} of integers is not lowered to MLIR yet",
                b.mnemonic()
            ))
        }
    })
}
