//! Elementwise math on `f32x4` Cranelift values: the IR's unary and binary ops, with
//! vectorized approximations of the transcendental functions.
//!
//! Accuracy (max relative error against the interpreter's f64 libm rounded to f32, measured by
//! the `accuracy_report` test in `runtime/tests/codegen.rs` on 400k points in [-12, 80]):
//!
//! | function | method | max rel. error |
//! |---|---|---|
//! | `exp` | Cody–Waite reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`; degree-6 Taylor for `2·e^r`; `2^(n-1)` built in the exponent bits | 2.5e-7 (results below 2^-125.5 flush to 0) |
//! | `log` | `x = m·2^e`, `m ∈ [√½, √2)`; `log m = 2·atanh(s)`, `s = (m-1)/(m+1)`, odd series to `s⁷` | 2.7e-7 (denormals handled) |
//! | `erf` | `x·P(x²)/Q(x²)`, P degree 6, Q degree 3, relative-error fit on `[0, 3.925]`, clamped beyond | 7.8e-7 |
//! | `erfc` | `1 - erf(x)` | absolute 1e-6 (relative error grows where erfc is tiny, x > 1) |
//! | `tanh` | `x·P(x²)/Q(x²)`, P degree 6, Q degree 3, relative-error fit on `[0, 9]`, clamped beyond | 3.5e-7 |
//! | `sigmoid` | `1 / (1 + exp(-x))` | 2.7e-7 |
//! | `softplus` | `max(x, 0) + log1p(exp(-|x|))`, log1p by `log(u)·y/(u-1)`, `u = 1 + y` | 4.2e-7 |
//!
//! The rational fits were computed with mpmath (iterated linearized least squares on the
//! relative error, Chebyshev nodes) and rounded to f32; the errors above include f32
//! evaluation. NaN propagates through every function; ±inf give the limits.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32X4, I32X4};
use cranelift_codegen::ir::{ConstantData, InstBuilder, MemFlags, Value};
use cranelift_frontend::FunctionBuilder;
use lathe_ir::ops::{BinaryOp, UnaryOp};

/// erf(x) ≈ x·P(x²)/Q(x²) on |x| ≤ ERF_CLAMP (coefficients lowest degree first).
const ERF_P: [f32; 7] = [
    1.128_379_3,
    0.107_892_25,
    0.038_000_714,
    -0.000_246_356_56,
    4.686_021_6e-5,
    -1.609_908_6e-6,
    2.229_429e-8,
];
const ERF_Q: [f32; 4] = [1.0, 0.428_959_4, 0.076_621, 0.006_309_652_2];
/// erf(3.925) rounds to 1.0 in f32.
const ERF_CLAMP: f32 = 3.925;

/// tanh(x) ≈ x·P(x²)/Q(x²) on |x| ≤ TANH_CLAMP.
const TANH_P: [f32; 7] = [
    1.0,
    0.130_860_42,
    0.003_106_179_6,
    1.117_622_8e-5,
    -2.030_606_3e-8,
    5.312_574_3e-11,
    -8.567_184_6e-14,
];
const TANH_Q: [f32; 4] = [1.0, 0.464_193_7, 0.024_504_162, 0.000_254_930_46];
/// tanh(9) rounds to 1.0 in f32.
const TANH_CLAMP: f32 = 9.0;

/// 2·e^r, Taylor to degree 6 (truncation error r⁷/5040 ≤ 1.2e-7 for |r| ≤ ln2/2).
const EXP2X_TAYLOR: [f32; 7] = [
    2.0,
    2.0,
    1.0,
    1.0 / 3.0,
    1.0 / 12.0,
    1.0 / 60.0,
    1.0 / 360.0,
];
/// ln 2 split so that `n·LN2_HI` is exact for |n| < 2^15.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// Emits `f32x4` math into a function being built.
pub(crate) struct Math<'a, 'b> {
    pub b: &'a mut FunctionBuilder<'b>,
    /// The host has fused multiply-add (`fma` lowers to one instruction, not a libcall).
    pub fma: bool,
}

impl Math<'_, '_> {
    /// `v` in every lane (a constant-pool vector; Cranelift hoists it out of loops).
    pub fn c(&mut self, v: f32) -> Value {
        self.const_bits(v.to_bits())
    }

    fn const_bits(&mut self, bits: u32) -> Value {
        let bytes: Vec<u8> = (0..4).flat_map(|_| bits.to_le_bytes()).collect();
        let c = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        self.b.ins().vconst(F32X4, c)
    }

    fn i32s(&mut self, v: i32) -> Value {
        let f = self.const_bits(v as u32);
        self.as_ints(f)
    }

    fn as_ints(&mut self, x: Value) -> Value {
        self.b.ins().bitcast(I32X4, MemFlags::new(), x)
    }

    fn as_floats(&mut self, x: Value) -> Value {
        self.b.ins().bitcast(F32X4, MemFlags::new(), x)
    }

    pub fn add(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fadd(x, y)
    }

    pub fn sub(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fsub(x, y)
    }

    pub fn mul(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fmul(x, y)
    }

    pub fn div(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fdiv(x, y)
    }

    /// `x·y + z`, fused when the host has FMA.
    pub fn mul_add(&mut self, x: Value, y: Value, z: Value) -> Value {
        if self.fma {
            self.b.ins().fma(x, y, z)
        } else {
            let p = self.b.ins().fmul(x, y);
            self.b.ins().fadd(p, z)
        }
    }

    /// `x·c + z` for a constant `c`.
    fn mul_add_c(&mut self, x: Value, c: f32, z: Value) -> Value {
        let c = self.c(c);
        self.mul_add(x, c, z)
    }

    /// The polynomial with coefficients `cs` (lowest degree first) at `x`, by Estrin's scheme:
    /// pairs `c[2i] + c[2i+1]·x`, combined with x², x⁴, ... This halves the dependency chain
    /// of Horner's rule, which bounds the throughput of long elementwise bodies.
    fn poly(&mut self, x: Value, cs: &[f32]) -> Value {
        let mut terms: Vec<Value> = cs
            .chunks(2)
            .map(|p| match *p {
                [c0, c1] => {
                    let (c0, c1) = (self.c(c0), self.c(c1));
                    self.mul_add(c1, x, c0)
                }
                [c0] => self.c(c0),
                _ => unreachable!("chunks of two"),
            })
            .collect();
        let mut power = x;
        while terms.len() > 1 {
            power = self.mul(power, power);
            terms = terms
                .chunks(2)
                .map(|p| match *p {
                    [lo, hi] => self.mul_add(hi, power, lo),
                    [lo] => lo,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
        }
        terms.pop().expect("a polynomial has coefficients")
    }

    /// Lanewise `mask ? x : y` for a mask from `fcmp`.
    fn select(&mut self, mask: Value, x: Value, y: Value) -> Value {
        let m = self.as_floats(mask);
        self.b.ins().bitselect(m, x, y)
    }

    fn cmp(&mut self, cc: FloatCC, x: Value, y: Value) -> Value {
        self.b.ins().fcmp(cc, x, y)
    }

    /// `x < y ? x : y` (x86 `minps`: a NaN in `y` propagates, a NaN in `x` does not).
    fn pmin(&mut self, x: Value, y: Value) -> Value {
        let m = self.cmp(FloatCC::LessThan, x, y);
        self.select(m, x, y)
    }

    /// `y < x ? x : y` (x86 `maxps`: a NaN in `y` propagates).
    fn pmax(&mut self, x: Value, y: Value) -> Value {
        let m = self.cmp(FloatCC::LessThan, y, x);
        self.select(m, x, y)
    }

    /// `x` clamped to `[lo, hi]`, NaN kept.
    fn clamp(&mut self, x: Value, lo: f32, hi: f32) -> Value {
        let (lo, hi) = (self.c(lo), self.c(hi));
        let x = self.pmax(lo, x);
        self.pmin(hi, x)
    }

    /// e^x (see the module table for accuracy).
    pub fn exp(&mut self, x: Value) -> Value {
        // Below -87.33, n = -126 and the scale 2^(n-1) is 0: the result flushes to zero. Above
        // 88.8 the result is +inf from the final multiplication's overflow.
        let x = self.clamp(x, -87.33, 88.8);
        let log2e = self.c(std::f32::consts::LOG2_E);
        let t = self.mul(x, log2e);
        // Adding 1.5·2^23 rounds t to an integer n held in the low mantissa bits.
        let magic = self.c(12_582_912.0);
        let k = self.add(t, magic);
        let n = self.sub(k, magic);
        let neg_n = self.b.ins().fneg(n);
        let r = self.mul_add_c(neg_n, LN2_HI, x);
        let r = self.mul_add_c(neg_n, LN2_LO, r);
        let p = self.poly(r, &EXP2X_TAYLOR);
        // bits(k) = 0x4B40_0000 + n; (bits + 126) << 23 is the f32 2^(n-1) (the constant's
        // bits shift out). Using 2^(n-1) keeps n = 128 finite; P holds the factor 2.
        let bits = self.as_ints(k);
        let bias = self.i32s(126);
        let e = self.b.ins().iadd(bits, bias);
        let e = self.b.ins().ishl_imm(e, 23);
        let scale = self.as_floats(e);
        self.mul(p, scale)
    }

    /// ln x; with `special`, also exact results for 0, negatives, +inf and NaN, and denormal
    /// inputs (without, `x` must be positive and normal).
    pub fn log(&mut self, x: Value, special: bool) -> Value {
        let (xs, tiny) = if special {
            // Denormals: scale into the normal range first.
            let min_normal = self.c(f32::MIN_POSITIVE);
            let tiny = self.cmp(FloatCC::LessThan, x, min_normal);
            let big = self.c(8_388_608.0);
            let scaled = self.mul(x, big);
            (self.select(tiny, scaled, x), Some(tiny))
        } else {
            (x, None)
        };
        let bits = self.as_ints(xs);
        // k = exponent such that m = x / 2^k lies in [√½, √2).
        let sqrt_half = self.i32s(0x3F35_04F3);
        let d = self.b.ins().isub(bits, sqrt_half);
        let k = self.b.ins().sshr_imm(d, 23);
        let kshift = self.b.ins().ishl_imm(k, 23);
        let mbits = self.b.ins().isub(bits, kshift);
        let m = self.as_floats(mbits);
        let one = self.c(1.0);
        let f = self.sub(m, one);
        let mp1 = self.add(m, one);
        let s = self.div(f, mp1);
        let z = self.mul(s, s);
        let p = self.poly(z, &[2.0, 2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0]);
        let ls = self.mul(s, p);
        let mut e = self.b.ins().fcvt_from_sint(F32X4, k);
        if let Some(tiny) = tiny {
            let zero = self.c(0.0);
            let adj = self.c(23.0);
            let adj = self.select(tiny, adj, zero);
            e = self.sub(e, adj);
        }
        let lo = self.mul_add_c(e, LN2_LO, ls);
        let r = self.mul_add_c(e, LN2_HI, lo);
        if !special {
            return r;
        }
        let inf = self.c(f32::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, x, inf);
        let r = self.select(is_inf, inf, r);
        let zero = self.c(0.0);
        let is_zero = self.cmp(FloatCC::Equal, x, zero);
        let neg_inf = self.c(f32::NEG_INFINITY);
        let r = self.select(is_zero, neg_inf, r);
        let bad = self.cmp(FloatCC::UnorderedOrLessThan, x, zero);
        let nan = self.c(f32::NAN);
        self.select(bad, nan, r)
    }

    /// `x·P(x²)/Q(x²)` with `x` clamped to `±clamp`.
    fn odd_rational(&mut self, x: Value, clamp: f32, p: &[f32], q: &[f32]) -> Value {
        let x = self.clamp(x, -clamp, clamp);
        let t = self.mul(x, x);
        let pv = self.poly(t, p);
        let qv = self.poly(t, q);
        let num = self.mul(x, pv);
        self.div(num, qv)
    }

    pub fn erf(&mut self, x: Value) -> Value {
        self.odd_rational(x, ERF_CLAMP, &ERF_P, &ERF_Q)
    }

    pub fn tanh(&mut self, x: Value) -> Value {
        self.odd_rational(x, TANH_CLAMP, &TANH_P, &TANH_Q)
    }

    pub fn sigmoid(&mut self, x: Value) -> Value {
        let nx = self.b.ins().fneg(x);
        let e = self.exp(nx);
        let one = self.c(1.0);
        let d = self.add(one, e);
        self.div(one, d)
    }

    pub fn softplus(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let nax = self.b.ins().fneg(ax);
        let y = self.exp(nax);
        // log1p(y) = log(u)·y/(u-1) with u = 1 + y corrects u's rounding; y itself when u == 1.
        let one = self.c(1.0);
        let u = self.add(one, y);
        let lu = self.log(u, false);
        let um1 = self.sub(u, one);
        let ratio = self.div(y, um1);
        let l = self.mul(lu, ratio);
        let exact = self.cmp(FloatCC::Equal, u, one);
        let log1p = self.select(exact, y, l);
        let zero = self.c(0.0);
        let relu = self.pmax(zero, x);
        self.add(relu, log1p)
    }

    /// `1` above zero, `-1` below, `x` itself for ±0 and NaN.
    fn sign(&mut self, x: Value) -> Value {
        let zero = self.c(0.0);
        let (one, minus_one) = (self.c(1.0), self.c(-1.0));
        let neg = self.cmp(FloatCC::LessThan, x, zero);
        let r = self.select(neg, minus_one, x);
        let pos = self.cmp(FloatCC::GreaterThan, x, zero);
        self.select(pos, one, r)
    }

    /// The IR's unary op `u` on f32 lanes (not `logical_not`, `bitwise_not`, nor the trigonometric
    /// ops, which `libcalls::f32_by_libcall` computes in f64).
    pub fn unary(&mut self, u: UnaryOp, x: Value) -> Value {
        use UnaryOp::*;
        match u {
            Neg => self.b.ins().fneg(x),
            Abs => self.b.ins().fabs(x),
            // Written as `x < 0 ? 0 : x` like the interpreter, so NaN passes through.
            Relu => {
                let zero = self.c(0.0);
                self.pmax(zero, x)
            }
            Relu6 => self.clamp(x, 0.0, 6.0),
            Sigmoid => self.sigmoid(x),
            Tanh => self.tanh(x),
            Erf => self.erf(x),
            Erfc => {
                // Clamped at 0: the erf fit may exceed 1 by an ulp or two.
                let e = self.erf(x);
                let one = self.c(1.0);
                let r = self.sub(one, e);
                let zero = self.c(0.0);
                self.pmax(zero, r)
            }
            Rsqrt => {
                let s = self.b.ins().sqrt(x);
                let one = self.c(1.0);
                self.div(one, s)
            }
            Sqrt => self.b.ins().sqrt(x),
            Exp => self.exp(x),
            Log => self.log(x, true),
            Square => self.mul(x, x),
            Reciprocal => {
                let one = self.c(1.0);
                self.div(one, x)
            }
            Floor => self.b.ins().floor(x),
            Ceil => self.b.ins().ceil(x),
            // Half to even, as the interpreter's `round_ties_even`.
            Round => self.b.ins().nearest(x),
            Sign => self.sign(x),
            Softplus => self.softplus(x),
            Softsign => {
                let one = self.c(1.0);
                let a = self.b.ins().fabs(x);
                let d = self.add(one, a);
                self.div(x, d)
            }
            Sin | Cos | Asin | Acos | Atan | Asinh | Acosh | Atanh | LogicalNot | BitwiseNot => {
                unreachable!("analysis rejects {}", u.mnemonic())
            }
        }
    }

    /// [`Math::binary`], told which operands are constants that are not NaN. `maximum` and
    /// `minimum` against such a constant (ReLU6 written as `min(max(x, 0), 6)`, clipping) are
    /// one compare and one select with exactly the interpreter's choice, `x` when it is NaN
    /// or wins, else `y` (zero signs included), where the general case needs Cranelift's
    /// longer NaN-propagating `fmax`/`fmin`.
    pub fn binary_of(
        &mut self,
        op: BinaryOp,
        (x, x_const): (Value, bool),
        (y, y_const): (Value, bool),
    ) -> Value {
        use BinaryOp::*;
        // With `y` never NaN, "x is NaN or wins" is "unordered or wins"; with `x` never NaN,
        // it is "wins", and a NaN `y` loses every ordered compare.
        let cc = match (op, x_const, y_const) {
            (Maximum, _, true) => FloatCC::UnorderedOrGreaterThan,
            (Minimum, _, true) => FloatCC::UnorderedOrLessThan,
            (Maximum, true, false) => FloatCC::GreaterThan,
            (Minimum, true, false) => FloatCC::LessThan,
            _ => return self.binary(op, x, y),
        };
        let pick = self.cmp(cc, x, y);
        self.select(pick, x, y)
    }

    /// The IR's binary op `op` on f32 (pow is expanded by the analysis).
    pub fn binary(&mut self, op: BinaryOp, x: Value, y: Value) -> Value {
        use BinaryOp::*;
        match op {
            Add => self.add(x, y),
            Sub => self.sub(x, y),
            Mul => self.mul(x, y),
            Div => self.div(x, y),
            // Cranelift's fmax/fmin propagate NaN from either side, like the interpreter.
            Maximum => self.b.ins().fmax(x, y),
            Minimum => self.b.ins().fmin(x, y),
            SquaredDifference => {
                let d = self.sub(x, y);
                self.mul(d, d)
            }
            FloorDiv => {
                let q = self.div(x, y);
                self.b.ins().floor(q)
            }
            _ => unreachable!("analysis rejects {}", op.mnemonic()),
        }
    }
}
