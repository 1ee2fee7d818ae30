//! Lowers a [`Plan`] of any dtypes to scalar Cranelift code: the same row loop, reduction
//! phases and output loop as the f32 vector lowering (`lower.rs`), one element per iteration.
//!
//! Each value lives in a register of its dtype's *compute type*:
//!
//! | dtype | register | invariant |
//! |---|---|---|
//! | f32 | `f32` | f32 math as the vector path (the same `Math` on lane 0) |
//! | f64, f16, bf16 | `f64` | the value is representable in its dtype (rounded after each op), so results match the interpreter's f64-then-round bit for bit |
//! | i8, i16, u8, u16, i32, u32 | `i32` | sign- (signed) or zero- (unsigned) extended from the dtype's width |
//! | i64, u64 | `i64` | |
//! | bool | `i32` | 0 or 1 |
//!
//! Integer arithmetic wraps in the dtype; division never traps: a zero divisor (or a negative
//! integer exponent) yields 0 and sets a fault bit the function returns (see
//! [`super::KernelFault`]). Float reductions accumulate in f64, as the interpreter.

use super::analyze::{Expr, Id, Plan};
use super::libcalls;
use super::math::Math;
use super::refs::Refs;
use super::rows::RowLoop;
use super::FAULT_DIV_BY_ZERO;
use super::FAULT_NEGATIVE_POW;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, F64, I16, I32, I64, I8};
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlags, SigRef, Signature, Type, Value};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, Variable};
use lathe_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use lathe_ir::DType;
use std::collections::HashMap;

/// The register type a value of `dt` is computed in.
fn reg(dt: DType) -> Type {
    match dt {
        DType::F32 => F32,
        DType::F64 | DType::F16 | DType::BF16 => F64,
        DType::I64 | DType::U64 => I64,
        _ => I32,
    }
}

/// Emits the kernel for `plan` into `b` (signature `(inputs, outputs, row_start, row_end) ->
/// i32 fault bits`).
pub(crate) fn emit(
    plan: &Plan,
    refs: &Refs,
    b: &mut FunctionBuilder,
    ptr: Type,
    call_conv: CallConv,
    fma: bool,
) {
    let status = b.declare_var(I32);
    let rows = RowLoop::begin(plan, refs, b, ptr, |b| {
        let zero = b.ins().iconst(I32, 0);
        b.def_var(status, zero);
    });
    let mut l = Scalar {
        plan,
        m: Math { b, fma },
        ptr,
        call_conv,
        refs,
        leaf_row: rows.leaf_row.clone(),
        uniform: HashMap::new(),
        sigs: HashMap::new(),
        status,
    };
    for phase in &plan.phases {
        l.reduction_phase(phase.len, &phase.reductions);
    }
    l.output_phase(&rows.out_row);

    let b = l.m.b;
    rows.end(b);
    let s = b.use_var(status);
    b.ins().return_(&[s]);
    b.seal_all_blocks();
}

struct Scalar<'p, 'a, 'b> {
    plan: &'p Plan,
    m: Math<'a, 'b>,
    ptr: Type,
    call_conv: CallConv,
    refs: &'p Refs,
    /// Each leaf's address at the current row's first element.
    leaf_row: Vec<Value>,
    /// Row-uniform values computed so far in this row.
    uniform: HashMap<Id, Value>,
    /// Imported call signatures by (params, returns).
    sigs: HashMap<(Vec<Type>, Vec<Type>), SigRef>,
    /// Fault bits (`FAULT_*`) raised so far.
    status: Variable,
}

impl Scalar<'_, '_, '_> {
    fn dtype(&self, id: Id) -> DType {
        self.plan.nodes[id].dtype
    }

    /// Calls the function at `f` with `args`, returning its one result.
    fn call(&mut self, f: usize, args: &[Value], params: &[Type], ret: Type) -> Value {
        let key = (params.to_vec(), vec![ret]);
        let sig = match self.sigs.get(&key) {
            Some(&s) => s,
            None => {
                let mut sig = Signature::new(self.call_conv);
                sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
                sig.returns.push(AbiParam::new(ret));
                let s = self.m.b.import_signature(sig);
                self.sigs.insert(key, s);
                s
            }
        };
        let callee = self.refs.function(self.m.b, self.ptr, f, sig);
        let call = self.m.b.ins().call_indirect(sig, callee, args);
        self.m.b.inst_results(call)[0]
    }

    fn f64_call1(&mut self, f: extern "C" fn(f64) -> f64, x: Value) -> Value {
        self.call(f as *const () as usize, &[x], &[F64], F64)
    }

    fn f64_call2(&mut self, f: extern "C" fn(f64, f64) -> f64, x: Value, y: Value) -> Value {
        self.call(f as *const () as usize, &[x, y], &[F64, F64], F64)
    }

    /// Raises fault bit `bit` where `cond` (an `icmp`/`fcmp` result) is true.
    fn fault_if(&mut self, cond: Value, bit: i64) {
        let b = &mut *self.m.b;
        let c = b.ins().uextend(I32, cond);
        let bits = b.ins().imul_imm(c, bit);
        let s = b.use_var(self.status);
        let s = b.ins().bor(s, bits);
        b.def_var(self.status, s);
    }

    /// Brings a freshly computed value of `dt` back to its register invariant: integers
    /// re-extended from their width (wrapping), halves rounded to their precision.
    fn norm(&mut self, v: Value, dt: DType) -> Value {
        let b = &mut *self.m.b;
        match dt {
            DType::I8 => {
                let n = b.ins().ireduce(I8, v);
                b.ins().sextend(I32, n)
            }
            DType::I16 => {
                let n = b.ins().ireduce(I16, v);
                b.ins().sextend(I32, n)
            }
            DType::U8 => b.ins().band_imm(v, 0xFF),
            DType::U16 => b.ins().band_imm(v, 0xFFFF),
            DType::F16 => self.f64_call1(libcalls::round_f16, v),
            DType::BF16 => self.f64_call1(libcalls::round_bf16, v),
            _ => v,
        }
    }

    /// A constant of `dt` from its splat bits.
    fn constant(&mut self, bits: u64, dt: DType) -> Value {
        let b = &mut *self.m.b;
        match dt {
            DType::F32 => b.ins().f32const(f32::from_bits(bits as u32)),
            DType::F64 => b.ins().f64const(f64::from_bits(bits)),
            DType::F16 => b.ins().f64const(half::f16::from_bits(bits as u16).to_f64()),
            DType::BF16 => b
                .ins()
                .f64const(half::bf16::from_bits(bits as u16).to_f64()),
            DType::I64 | DType::U64 => b.ins().iconst(I64, bits as i64),
            // Narrow integers: the extended value, masked to 32 bits for the immediate.
            _ => b.ins().iconst(I32, (bits as u32) as i64),
        }
    }

    /// An integer constant in the register of `dt`.
    fn iconst(&mut self, v: i64, dt: DType) -> Value {
        let t = reg(dt);
        let v = if t == I32 { (v as u32) as i64 } else { v };
        self.m.b.ins().iconst(t, v)
    }

    /// Loads one element of `dt` at `addr`.
    fn load(&mut self, dt: DType, addr: Value) -> Value {
        let f = MemFlags::new().with_notrap();
        let b = &mut *self.m.b;
        match dt {
            DType::F32 => b.ins().load(F32, f, addr, 0),
            DType::F64 => b.ins().load(F64, f, addr, 0),
            DType::F16 => {
                let bits = b.ins().uload16(I32, f, addr, 0);
                self.call(
                    libcalls::f16_to_f64 as *const () as usize,
                    &[bits],
                    &[I32],
                    F64,
                )
            }
            DType::BF16 => {
                // bf16 is the high half of an f32: exact.
                let bits = b.ins().uload16(I32, f, addr, 0);
                let bits = b.ins().ishl_imm(bits, 16);
                let x = b.ins().bitcast(F32, MemFlags::new(), bits);
                b.ins().fpromote(F64, x)
            }
            DType::I8 => b.ins().sload8(I32, f, addr, 0),
            DType::U8 | DType::Bool => b.ins().uload8(I32, f, addr, 0),
            DType::I16 => b.ins().sload16(I32, f, addr, 0),
            DType::U16 => b.ins().uload16(I32, f, addr, 0),
            DType::I32 | DType::U32 => b.ins().load(I32, f, addr, 0),
            DType::I64 | DType::U64 => b.ins().load(I64, f, addr, 0),
            low => unreachable!("{low}: `support::compiles` keeps storage types out of codegen"),
        }
    }

    /// Stores `v`, a value of `dt` in its register, at `addr`.
    fn store(&mut self, dt: DType, v: Value, addr: Value) {
        let f = MemFlags::new().with_notrap();
        match dt {
            DType::F16 | DType::BF16 => {
                let conv = if dt == DType::F16 {
                    libcalls::f64_to_f16 as *const () as usize
                } else {
                    libcalls::f64_to_bf16 as *const () as usize
                };
                let bits = self.call(conv, &[v], &[F64], I32);
                self.m.b.ins().istore16(f, bits, addr, 0);
            }
            DType::I8 | DType::U8 | DType::Bool => {
                self.m.b.ins().istore8(f, v, addr, 0);
            }
            DType::I16 | DType::U16 => {
                self.m.b.ins().istore16(f, v, addr, 0);
            }
            low if low.is_low_precision() => {
                unreachable!("{low}: `support::compiles` keeps storage types out of codegen")
            }
            _ => {
                self.m.b.ins().store(f, v, addr, 0);
            }
        }
    }

    /// Computes, in the current block, every row-uniform value that `id`'s loop needs.
    fn prepare(&mut self, id: Id, seen: &mut Vec<bool>) {
        if seen[id] {
            return;
        }
        seen[id] = true;
        if let Expr::Splat(_) = self.plan.nodes[id].expr {
            return;
        }
        if self.plan.nodes[id].len == 1 {
            self.uniform_value(id);
            return;
        }
        match self.plan.nodes[id].expr {
            Expr::Unary(_, x) | Expr::Cast(x) => self.prepare(x, seen),
            Expr::Binary(_, x, y) => {
                self.prepare(x, seen);
                self.prepare(y, seen);
            }
            Expr::Select(c, x, y) => {
                self.prepare(c, seen);
                self.prepare(x, seen);
                self.prepare(y, seen);
            }
            Expr::Leaf(_) | Expr::Splat(_) | Expr::Reduce { .. } => {}
        }
    }

    /// A row-uniform node's value, computing it (and its operands) here if needed.
    fn uniform_value(&mut self, id: Id) -> Value {
        if let Some(&v) = self.uniform.get(&id) {
            return v;
        }
        let v = match self.plan.nodes[id].expr {
            Expr::Leaf(l) => {
                let addr = self.leaf_row[l];
                self.load(self.dtype(id), addr)
            }
            Expr::Reduce { kind, arg, count } => {
                assert_eq!(
                    self.plan.nodes[arg].len, 1,
                    "the schedule computes reductions over a row before their uses"
                );
                let x = self.uniform_value(arg);
                self.reduce_copies(kind, x, count, self.dtype(id))
            }
            Expr::Splat(_)
            | Expr::Unary(..)
            | Expr::Binary(..)
            | Expr::Cast(_)
            | Expr::Select(..) => {
                for x in operands(&self.plan.nodes[id].expr) {
                    if !matches!(self.plan.nodes[x].expr, Expr::Splat(_)) {
                        self.uniform_value(x);
                    }
                }
                self.compute(id, None, &mut HashMap::new())
            }
        };
        self.uniform.insert(id, v);
        v
    }

    /// The reduction of `count` copies of `x` (a value of `dt`).
    fn reduce_copies(&mut self, kind: ReduceKind, x: Value, count: usize, dt: DType) -> Value {
        if dt.is_float() {
            let xf = self.widen(x, dt);
            let n = self.m.b.ins().f64const(count as f64);
            let r = match kind {
                ReduceKind::Sum => self.m.b.ins().fmul(xf, n),
                ReduceKind::Mean => {
                    let s = self.m.b.ins().fmul(xf, n);
                    self.m.b.ins().fdiv(s, n)
                }
                ReduceKind::Max | ReduceKind::Min => xf,
                ReduceKind::Prod => {
                    let one = self.m.b.ins().f64const(1.0);
                    self.power(xf, count, one, &mut |b, p, q| b.ins().fmul(p, q))
                }
            };
            return self.narrow(r, dt);
        }
        match kind {
            ReduceKind::Max | ReduceKind::Min => x,
            ReduceKind::Sum | ReduceKind::Mean => {
                let n = self.iconst(count as i64, dt);
                let s = self.m.b.ins().imul(x, n);
                let s = self.norm(s, dt);
                if kind == ReduceKind::Sum {
                    s
                } else {
                    self.int_mean(s, count, dt)
                }
            }
            ReduceKind::Prod => {
                let one = self.iconst(1, dt);
                let p = self.power(x, count, one, &mut |b, p, q| b.ins().imul(p, q));
                self.norm(p, dt)
            }
        }
    }

    /// `x^n` by square-and-multiply with `mul` (wrapping for integers: the low bits are exact).
    fn power(
        &mut self,
        x: Value,
        n: usize,
        one: Value,
        mul: &mut dyn FnMut(&mut FunctionBuilder, Value, Value) -> Value,
    ) -> Value {
        let (mut acc, mut base, mut k) = (None, x, n);
        while k > 0 {
            if k & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => mul(self.m.b, a, base),
                });
            }
            k >>= 1;
            if k > 0 {
                base = mul(self.m.b, base, base);
            }
        }
        acc.unwrap_or(one)
    }

    /// The wrapped integer sum `s` of `dt` divided by `count`, truncating (TensorFlow's mean).
    fn int_mean(&mut self, s: Value, count: usize, dt: DType) -> Value {
        let signed = dt.is_signed_int();
        let b = &mut *self.m.b;
        let wide = match (reg(dt) == I64, signed) {
            (true, _) => s,
            (false, true) => b.ins().sextend(I64, s),
            (false, false) => b.ins().uextend(I64, s),
        };
        let q = if signed {
            b.ins().sdiv_imm(wide, count as i64)
        } else {
            b.ins().udiv_imm(wide, count as i64)
        };
        if reg(dt) == I64 {
            q
        } else {
            let q = b.ins().ireduce(I32, q);
            self.norm(q, dt)
        }
    }

    /// A float value of `dt` as f64 (exact).
    fn widen(&mut self, x: Value, dt: DType) -> Value {
        if reg(dt) == F32 {
            self.m.b.ins().fpromote(F64, x)
        } else {
            x
        }
    }

    /// An f64 rounded to the float dtype `dt`, in its register.
    fn narrow(&mut self, x: Value, dt: DType) -> Value {
        match dt {
            DType::F32 => self.m.b.ins().fdemote(F32, x),
            _ => self.norm(x, dt),
        }
    }

    /// Evaluates node `id` at element `j` of the row (`None`: a row-uniform node), sharing
    /// values within one element through `memo`.
    fn eval(&mut self, id: Id, j: Option<Value>, memo: &mut HashMap<Id, Value>) -> Value {
        if let Expr::Splat(bits) = self.plan.nodes[id].expr {
            return self.constant(bits, self.dtype(id));
        }
        if self.plan.nodes[id].len == 1 {
            return *self
                .uniform
                .get(&id)
                .expect("row-uniform values are prepared before the loop");
        }
        if let Some(&v) = memo.get(&id) {
            return v;
        }
        let v = self.compute(id, j, memo);
        memo.insert(id, v);
        v
    }

    /// The value of the non-reduction node `id` from its operands.
    fn compute(&mut self, id: Id, j: Option<Value>, memo: &mut HashMap<Id, Value>) -> Value {
        let dt = self.dtype(id);
        match self.plan.nodes[id].expr {
            Expr::Splat(bits) => self.constant(bits, dt),
            Expr::Leaf(l) => {
                let mut addr = self.leaf_row[l];
                if let Some(j) = j {
                    let off = self.m.b.ins().imul_imm(j, dt.size_bytes() as i64);
                    addr = self.m.b.ins().iadd(addr, off);
                }
                self.load(dt, addr)
            }
            Expr::Unary(u, x) => {
                let x = self.eval(x, j, memo);
                self.unary(u, x, dt)
            }
            Expr::Binary(op, x, y) => {
                let odt = self.dtype(x);
                let x = self.eval(x, j, memo);
                let y = self.eval(y, j, memo);
                self.binary(op, x, y, odt)
            }
            Expr::Cast(x) => {
                let from = self.dtype(x);
                let x = self.eval(x, j, memo);
                self.cast(x, from, dt)
            }
            Expr::Select(c, x, y) => {
                let c = self.eval(c, j, memo);
                let x = self.eval(x, j, memo);
                let y = self.eval(y, j, memo);
                let b = &mut *self.m.b;
                let cond = b.ins().icmp_imm(IntCC::NotEqual, c, 0);
                b.ins().select(cond, x, y)
            }
            Expr::Reduce { .. } => unreachable!("reductions are computed by their phase"),
        }
    }

    /// An `i8` comparison result as a bool register (0/1).
    fn boolean(&mut self, c: Value) -> Value {
        self.m.b.ins().uextend(I32, c)
    }

    /// The f32 vector math on lane 0 (the same code as the vector path).
    fn f32_lane(&mut self, x: Value, f: impl FnOnce(&mut Math, Value) -> Value) -> Value {
        let v = self.m.b.ins().splat(F32X4, x);
        let r = f(&mut self.m, v);
        self.m.b.ins().extractlane(r, 0)
    }

    fn unary(&mut self, u: UnaryOp, x: Value, dt: DType) -> Value {
        use UnaryOp::*;
        if dt == DType::Bool {
            debug_assert_eq!(u, LogicalNot, "support admits only logical_not on bool");
            return self.m.b.ins().bxor_imm(x, 1);
        }
        if dt.is_int() {
            return self.int_unary(u, x, dt);
        }
        if dt == DType::F32 && !libcalls::f32_by_libcall(u) {
            return self.f32_lane(x, |m, v| m.unary(u, v));
        }
        let xf = self.widen(x, dt);
        let b = &mut *self.m.b;
        let r = match u {
            Neg => b.ins().fneg(xf),
            Abs => b.ins().fabs(xf),
            Sqrt => b.ins().sqrt(xf),
            Floor => b.ins().floor(xf),
            Ceil => b.ins().ceil(xf),
            Round => b.ins().nearest(xf),
            Square => b.ins().fmul(xf, xf),
            Reciprocal => {
                let one = b.ins().f64const(1.0);
                b.ins().fdiv(one, xf)
            }
            Rsqrt => {
                let one = b.ins().f64const(1.0);
                let s = b.ins().sqrt(xf);
                b.ins().fdiv(one, s)
            }
            Relu => {
                let zero = b.ins().f64const(0.0);
                let neg = b.ins().fcmp(FloatCC::LessThan, xf, zero);
                b.ins().select(neg, zero, xf)
            }
            Relu6 => {
                let (zero, six) = (b.ins().f64const(0.0), b.ins().f64const(6.0));
                let neg = b.ins().fcmp(FloatCC::LessThan, xf, zero);
                let r = b.ins().select(neg, zero, xf);
                let big = b.ins().fcmp(FloatCC::GreaterThan, xf, six);
                b.ins().select(big, six, r)
            }
            Sign => {
                let zero = b.ins().f64const(0.0);
                let (one, m1) = (b.ins().f64const(1.0), b.ins().f64const(-1.0));
                let neg = b.ins().fcmp(FloatCC::LessThan, xf, zero);
                let r = b.ins().select(neg, m1, xf);
                let pos = b.ins().fcmp(FloatCC::GreaterThan, xf, zero);
                b.ins().select(pos, one, r)
            }
            Softsign => {
                let one = b.ins().f64const(1.0);
                let a = b.ins().fabs(xf);
                let d = b.ins().fadd(one, a);
                b.ins().fdiv(xf, d)
            }
            _ => {
                let f = libcalls::f64_unary(u).expect("every other float unary op has a libcall");
                self.f64_call1(f, xf)
            }
        };
        self.narrow(r, dt)
    }

    fn int_unary(&mut self, u: UnaryOp, x: Value, dt: DType) -> Value {
        use UnaryOp::*;
        let signed = dt.is_signed_int();
        let zero = self.iconst(0, dt);
        let r = match u {
            Neg => self.m.b.ins().ineg(x),
            Abs if signed => {
                let b = &mut *self.m.b;
                let n = b.ins().ineg(x);
                let neg = b.ins().icmp_imm(IntCC::SignedLessThan, x, 0);
                b.ins().select(neg, n, x)
            }
            Abs | Round => x,
            Relu => self.int_minmax(x, zero, dt, true),
            Relu6 => {
                let six = self.iconst(6, dt);
                let r = self.int_minmax(x, zero, dt, true);
                self.int_minmax(r, six, dt, false)
            }
            Square => self.m.b.ins().imul(x, x),
            BitwiseNot => self.m.b.ins().bnot(x),
            Sign => {
                let one = self.iconst(1, dt);
                let b = &mut *self.m.b;
                let nz = b.ins().icmp_imm(IntCC::NotEqual, x, 0);
                let r = b.ins().select(nz, one, zero);
                if signed {
                    let m1 = b.ins().iconst(reg(dt), mask(dt));
                    let neg = b.ins().icmp_imm(IntCC::SignedLessThan, x, 0);
                    b.ins().select(neg, m1, r)
                } else {
                    r
                }
            }
            _ => unreachable!("support rejects {} on integers", u.mnemonic()),
        };
        self.norm(r, dt)
    }

    /// `max(x, y)` (or min) in `dt`'s order.
    fn int_minmax(&mut self, x: Value, y: Value, dt: DType, max: bool) -> Value {
        let cc = match (dt.is_signed_int(), max) {
            (true, true) => IntCC::SignedGreaterThan,
            (true, false) => IntCC::SignedLessThan,
            (false, true) => IntCC::UnsignedGreaterThan,
            (false, false) => IntCC::UnsignedLessThan,
        };
        let b = &mut *self.m.b;
        let c = b.ins().icmp(cc, x, y);
        b.ins().select(c, x, y)
    }

    /// `op` on operands of dtype `dt`.
    fn binary(&mut self, op: BinaryOp, x: Value, y: Value, dt: DType) -> Value {
        use BinaryOp::*;
        if dt == DType::Bool {
            let b = &mut *self.m.b;
            let cc = match op {
                LogicalAnd => return b.ins().band(x, y),
                LogicalOr => return b.ins().bor(x, y),
                Equal => IntCC::Equal,
                NotEqual => IntCC::NotEqual,
                _ => unreachable!("support rejects {} on bool", op.mnemonic()),
            };
            let c = b.ins().icmp(cc, x, y);
            return self.boolean(c);
        }
        if dt.is_int() {
            return self.int_binary(op, x, y, dt);
        }
        if let Some(cc) = float_cc(op) {
            let c = self.m.b.ins().fcmp(cc, x, y);
            return self.boolean(c);
        }
        if dt == DType::F32
            && matches!(
                op,
                Add | Sub | Mul | Div | Maximum | Minimum | SquaredDifference
            )
        {
            return match op {
                Add => self.m.b.ins().fadd(x, y),
                Sub => self.m.b.ins().fsub(x, y),
                Mul => self.m.b.ins().fmul(x, y),
                Div => self.m.b.ins().fdiv(x, y),
                _ => {
                    let b = &mut *self.m.b;
                    let vx = b.ins().splat(F32X4, x);
                    let vy = b.ins().splat(F32X4, y);
                    let r = self.m.binary(op, vx, vy);
                    self.m.b.ins().extractlane(r, 0)
                }
            };
        }
        let xf = self.widen(x, dt);
        let yf = self.widen(y, dt);
        let b = &mut *self.m.b;
        let r = match op {
            Add => b.ins().fadd(xf, yf),
            Sub => b.ins().fsub(xf, yf),
            Mul => b.ins().fmul(xf, yf),
            Div => b.ins().fdiv(xf, yf),
            FloorDiv => {
                let q = b.ins().fdiv(xf, yf);
                b.ins().floor(q)
            }
            // The interpreter's NaN-propagating choice: `x` when it is NaN or wins, else `y`.
            Maximum | Minimum => {
                let cc = if op == Maximum {
                    FloatCC::GreaterThan
                } else {
                    FloatCC::LessThan
                };
                let wins = b.ins().fcmp(cc, xf, yf);
                let nan = b.ins().fcmp(FloatCC::Unordered, xf, xf);
                let pick = b.ins().bor(wins, nan);
                b.ins().select(pick, xf, yf)
            }
            SquaredDifference => {
                let d = b.ins().fsub(xf, yf);
                b.ins().fmul(d, d)
            }
            FloorMod => self.f64_call2(libcalls::floor_mod, xf, yf),
            Pow => self.f64_call2(libcalls::powf, xf, yf),
            _ => unreachable!("support rejects {} on floats", op.mnemonic()),
        };
        self.narrow(r, dt)
    }

    fn int_binary(&mut self, op: BinaryOp, x: Value, y: Value, dt: DType) -> Value {
        use BinaryOp::*;
        let signed = dt.is_signed_int();
        if let Some(cc) = int_cc(op, signed) {
            let c = self.m.b.ins().icmp(cc, x, y);
            return self.boolean(c);
        }
        let r = match op {
            Add => self.m.b.ins().iadd(x, y),
            Sub => self.m.b.ins().isub(x, y),
            Mul => self.m.b.ins().imul(x, y),
            Maximum => self.int_minmax(x, y, dt, true),
            Minimum => self.int_minmax(x, y, dt, false),
            SquaredDifference => {
                let d = self.m.b.ins().isub(x, y);
                let d = self.norm(d, dt);
                self.m.b.ins().imul(d, d)
            }
            Div | FloorDiv | FloorMod => self.int_division(op, x, y, dt),
            BitwiseAnd => self.m.b.ins().band(x, y),
            BitwiseOr => self.m.b.ins().bor(x, y),
            BitwiseXor => self.m.b.ins().bxor(x, y),
            LeftShift | RightShift => self.shift(op, x, y, dt),
            Pow => {
                let b = &mut *self.m.b;
                let (wx, wy) = match (reg(dt) == I64, signed) {
                    (true, _) => (x, y),
                    (false, true) => (b.ins().sextend(I64, x), b.ins().sextend(I64, y)),
                    (false, false) => (b.ins().uextend(I64, x), b.ins().uextend(I64, y)),
                };
                if signed {
                    let neg = b.ins().icmp_imm(IntCC::SignedLessThan, wy, 0);
                    self.fault_if(neg, FAULT_NEGATIVE_POW as i64);
                }
                let f = if signed {
                    libcalls::pow_i64 as *const () as usize
                } else {
                    libcalls::pow_u64 as *const () as usize
                };
                let p = self.call(f, &[wx, wy], &[I64, I64], I64);
                if reg(dt) == I64 {
                    p
                } else {
                    self.m.b.ins().ireduce(I32, p)
                }
            }
            _ => unreachable!("support rejects {} on integers", op.mnemonic()),
        };
        self.norm(r, dt)
    }

    /// `x << y` or `x >> y` (arithmetic for signed dtypes) as the interpreter: an amount that
    /// is negative or not below the dtype's width (unsigned, not below it) shifts every bit
    /// out, leaving 0, or for a signed right shift the sign. Narrow values are extended in
    /// their register, so shifting the register is shifting the value (`norm` wraps a left
    /// shift back into the width).
    fn shift(&mut self, op: BinaryOp, x: Value, y: Value, dt: DType) -> Value {
        let width = (dt.size_bytes() * 8) as i64;
        let reg_bits = if reg(dt) == I64 { 63 } else { 31 };
        let b = &mut *self.m.b;
        let out = b
            .ins()
            .icmp_imm(IntCC::UnsignedGreaterThanOrEqual, y, width);
        let (shifted, spill) = match (op, dt.is_signed_int()) {
            (BinaryOp::LeftShift, _) => (b.ins().ishl(x, y), b.ins().iconst(reg(dt), 0)),
            (_, true) => (b.ins().sshr(x, y), b.ins().sshr_imm(x, reg_bits)),
            (_, false) => (b.ins().ushr(x, y), b.ins().iconst(reg(dt), 0)),
        };
        b.ins().select(out, spill, shifted)
    }

    /// Truncating division, floor division or floor modulo, never trapping: a zero divisor
    /// gives 0 and raises [`FAULT_DIV_BY_ZERO`]; `MIN / -1` wraps to `MIN` as the interpreter.
    fn int_division(&mut self, op: BinaryOp, x: Value, y: Value, dt: DType) -> Value {
        let signed = dt.is_signed_int();
        let t = reg(dt);
        let b = &mut *self.m.b;
        let is_zero = b.ins().icmp_imm(IntCC::Equal, y, 0);
        let one = b.ins().iconst(t, 1);
        let zero = b.ins().iconst(t, 0);
        let r = if signed {
            let m1 = b.ins().iconst(t, mask(dt));
            let is_m1 = b.ins().icmp(IntCC::Equal, y, m1);
            let unsafe_divisor = b.ins().bor(is_zero, is_m1);
            let ys = b.ins().select(unsafe_divisor, one, y);
            // x / 1 and x % 1 where y is -1: q = -x (wrapping), r = 0.
            let q = b.ins().sdiv(x, ys);
            let negx = b.ins().ineg(x);
            let q = b.ins().select(is_m1, negx, q);
            let rem = b.ins().srem(x, ys);
            // Truncation rounded toward zero; floor semantics move it when the remainder is
            // non-zero and its sign differs from the divisor's.
            let rnz = b.ins().icmp_imm(IntCC::NotEqual, rem, 0);
            let rneg = b.ins().icmp_imm(IntCC::SignedLessThan, rem, 0);
            let yneg = b.ins().icmp_imm(IntCC::SignedLessThan, y, 0);
            let differ = b.ins().bxor(rneg, yneg);
            let adjust = b.ins().band(rnz, differ);
            match op {
                BinaryOp::Div => q,
                BinaryOp::FloorDiv => {
                    let q1 = b.ins().iadd_imm(q, -1);
                    b.ins().select(adjust, q1, q)
                }
                _ => {
                    let ry = b.ins().iadd(rem, y);
                    b.ins().select(adjust, ry, rem)
                }
            }
        } else {
            let ys = b.ins().select(is_zero, one, y);
            match op {
                BinaryOp::Div | BinaryOp::FloorDiv => b.ins().udiv(x, ys),
                _ => b.ins().urem(x, ys),
            }
        };
        let r = b.ins().select(is_zero, zero, r);
        self.fault_if(is_zero, FAULT_DIV_BY_ZERO as i64);
        r
    }

    /// `x`, a value of `from`, converted to `to` with `Tensor::cast`'s rules: integer to
    /// integer wraps through i64; anything involving a float goes through f64 (float to integer
    /// truncates and saturates, NaN to 0); to bool is `x != 0`.
    fn cast(&mut self, x: Value, from: DType, to: DType) -> Value {
        if from == to {
            return x;
        }
        if to == DType::Bool {
            let b = &mut *self.m.b;
            let c = if from.is_float() {
                let z = if reg(from) == F32 {
                    b.ins().f32const(0.0)
                } else {
                    b.ins().f64const(0.0)
                };
                b.ins().fcmp(FloatCC::NotEqual, x, z)
            } else {
                b.ins().icmp_imm(IntCC::NotEqual, x, 0)
            };
            return self.boolean(c);
        }
        if from.is_float() && to.is_float() {
            let xf = self.widen(x, from);
            return self.narrow(xf, to);
        }
        if to.is_float() {
            // From an integer or bool: exact in i64/u64, then one rounding to f64 (and a second
            // to the dtype, as the interpreter's `to_f64` then `from_f64`).
            let b = &mut *self.m.b;
            let unsigned = !from.is_signed_int();
            let wide = match (reg(from) == I64, unsigned) {
                (true, _) => x,
                (false, true) => b.ins().uextend(I64, x),
                (false, false) => b.ins().sextend(I64, x),
            };
            let f = if unsigned {
                b.ins().fcvt_from_uint(F64, wide)
            } else {
                b.ins().fcvt_from_sint(F64, wide)
            };
            return self.narrow(f, to);
        }
        if from.is_float() {
            // Saturating truncation to i64 (u64 for u64), then clamped to the target's range.
            let xf = self.widen(x, from);
            let b = &mut *self.m.b;
            if to == DType::U64 {
                return b.ins().fcvt_to_uint_sat(I64, xf);
            }
            let w = b.ins().fcvt_to_sint_sat(I64, xf);
            if to == DType::I64 {
                return w;
            }
            let (lo, hi) = int_range(to);
            let lo = b.ins().iconst(I64, lo);
            let hi = b.ins().iconst(I64, hi);
            let below = b.ins().icmp(IntCC::SignedLessThan, w, lo);
            let w = b.ins().select(below, lo, w);
            let above = b.ins().icmp(IntCC::SignedGreaterThan, w, hi);
            let w = b.ins().select(above, hi, w);
            return b.ins().ireduce(I32, w);
        }
        // Integer (or bool) to integer: extend to i64 by the source's sign, then wrap.
        let b = &mut *self.m.b;
        let wide = match (reg(from) == I64, from.is_signed_int()) {
            (true, _) => x,
            (false, true) => b.ins().sextend(I64, x),
            (false, false) => b.ins().uextend(I64, x),
        };
        if reg(to) == I64 {
            return wide;
        }
        let n = b.ins().ireduce(I32, wide);
        self.norm(n, to)
    }

    /// Emits `for j in 0..len { body(j) }` (`len >= 1`).
    fn elem_loop(&mut self, len: usize, body: &mut dyn FnMut(&mut Self, Value)) {
        let b = &mut *self.m.b;
        let j_var = b.declare_var(self.ptr);
        let zero = b.ins().iconst(self.ptr, 0);
        b.def_var(j_var, zero);
        let header = b.create_block();
        let after = b.create_block();
        b.ins().jump(header, &[]);
        b.switch_to_block(header);
        let j = b.use_var(j_var);
        body(self, j);
        let b = &mut *self.m.b;
        let next = b.ins().iadd_imm(j, 1);
        b.def_var(j_var, next);
        let more = b.ins().icmp_imm(IntCC::UnsignedLessThan, next, len as i64);
        b.ins().brif(more, header, &[], after, &[]);
        b.switch_to_block(after);
    }

    /// One loop over a row of `len` elements computing `reductions` (floats in f64, integers
    /// wrapping in their dtype); their results become row-uniform values.
    fn reduction_phase(&mut self, len: usize, reductions: &[Id]) {
        let mut seen = vec![false; self.plan.nodes.len()];
        let mut parts = vec![];
        for &r in reductions {
            let Expr::Reduce { kind, arg, count } = self.plan.nodes[r].expr else {
                unreachable!("phases hold reductions")
            };
            self.prepare(arg, &mut seen);
            let dt = self.dtype(r);
            let acc_t = if dt.is_float() { F64 } else { reg(dt) };
            let init = if dt.is_float() {
                let v = match kind {
                    ReduceKind::Sum | ReduceKind::Mean => 0.0,
                    ReduceKind::Prod => 1.0,
                    ReduceKind::Max => f64::NEG_INFINITY,
                    ReduceKind::Min => f64::INFINITY,
                };
                self.m.b.ins().f64const(v)
            } else {
                let (lo, hi) = int_range(dt);
                let v = match kind {
                    ReduceKind::Sum | ReduceKind::Mean => 0,
                    ReduceKind::Prod => 1,
                    ReduceKind::Max => lo,
                    ReduceKind::Min => hi,
                };
                self.iconst(v, dt)
            };
            let acc = self.m.b.declare_var(acc_t);
            self.m.b.def_var(acc, init);
            parts.push((r, kind, arg, count, acc, dt));
        }
        self.elem_loop(len, &mut |l: &mut Self, j: Value| {
            let mut memo = HashMap::new();
            for &(_, kind, arg, _, acc, dt) in &parts {
                let v = l.eval(arg, Some(j), &mut memo);
                let a = l.m.b.use_var(acc);
                let a = l.combine(kind, a, v, dt);
                l.m.b.def_var(acc, a);
            }
        });
        for (r, kind, _, count, acc, dt) in parts {
            let a = self.m.b.use_var(acc);
            let v = if dt.is_float() {
                let a = if kind == ReduceKind::Mean {
                    let n = self.m.b.ins().f64const(count as f64);
                    self.m.b.ins().fdiv(a, n)
                } else {
                    a
                };
                self.narrow(a, dt)
            } else if kind == ReduceKind::Mean {
                self.int_mean(a, count, dt)
            } else {
                a
            };
            self.uniform.insert(r, v);
        }
    }

    /// Folds element `v` (of `dt`) into accumulator `a` (f64 for floats).
    fn combine(&mut self, kind: ReduceKind, a: Value, v: Value, dt: DType) -> Value {
        if dt.is_float() {
            let v = self.widen(v, dt);
            let b = &mut *self.m.b;
            return match kind {
                ReduceKind::Sum | ReduceKind::Mean => b.ins().fadd(a, v),
                ReduceKind::Prod => b.ins().fmul(a, v),
                // The interpreter's NaN-propagating fold: the first NaN sticks.
                ReduceKind::Max | ReduceKind::Min => {
                    let cc = if kind == ReduceKind::Max {
                        FloatCC::GreaterThan
                    } else {
                        FloatCC::LessThan
                    };
                    let wins = b.ins().fcmp(cc, v, a);
                    let v_nan = b.ins().fcmp(FloatCC::Unordered, v, v);
                    let take = b.ins().bor(wins, v_nan);
                    let r = b.ins().select(take, v, a);
                    let a_nan = b.ins().fcmp(FloatCC::Unordered, a, a);
                    b.ins().select(a_nan, a, r)
                }
            };
        }
        let r = match kind {
            ReduceKind::Sum | ReduceKind::Mean => self.m.b.ins().iadd(a, v),
            ReduceKind::Prod => self.m.b.ins().imul(a, v),
            ReduceKind::Max => return self.int_minmax(v, a, dt, true),
            ReduceKind::Min => return self.int_minmax(v, a, dt, false),
        };
        self.norm(r, dt)
    }

    /// The final loop: computes every output at every element of the row and stores it.
    fn output_phase(&mut self, out_row: &[Value]) {
        let mut seen = vec![false; self.plan.nodes.len()];
        for &o in &self.plan.outputs {
            self.prepare(o, &mut seen);
        }
        let outputs = self.plan.outputs.clone();
        self.elem_loop(self.plan.row_len, &mut |l: &mut Self, j: Value| {
            // Compute everything before storing anything: an output may alias an input.
            let mut memo = HashMap::new();
            let values: Vec<Value> = outputs
                .iter()
                .map(|&o| l.eval(o, Some(j), &mut memo))
                .collect();
            for (k, (&o, v)) in outputs.iter().zip(values).enumerate() {
                let dt = l.dtype(o);
                let off = l.m.b.ins().imul_imm(j, dt.size_bytes() as i64);
                let addr = l.m.b.ins().iadd(out_row[k], off);
                l.store(dt, v, addr);
            }
        });
    }
}

/// The operands of an expression.
fn operands(e: &Expr) -> Vec<Id> {
    match *e {
        Expr::Leaf(_) | Expr::Splat(_) => vec![],
        Expr::Unary(_, x) | Expr::Cast(x) => vec![x],
        Expr::Binary(_, x, y) => vec![x, y],
        Expr::Select(c, x, y) => vec![c, x, y],
        Expr::Reduce { arg, .. } => vec![arg],
    }
}

/// All-ones in the register width of `dt` (an immediate's mask).
fn mask(dt: DType) -> i64 {
    if reg(dt) == I64 {
        -1
    } else {
        0xFFFF_FFFF
    }
}

/// The smallest and largest value of an integer dtype (bool: 0 and 1), as i64.
fn int_range(dt: DType) -> (i64, i64) {
    match dt {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I64 => (i64::MIN, i64::MAX),
        DType::U8 => (0, u8::MAX as i64),
        DType::U16 => (0, u16::MAX as i64),
        DType::U32 => (0, u32::MAX as i64),
        // u64's range in its i64 register: 0 and all-ones.
        DType::U64 => (0, -1),
        _ => (0, 1),
    }
}

/// The float condition of a comparison op (`!=` is true for NaN, as in Rust).
fn float_cc(op: BinaryOp) -> Option<FloatCC> {
    use BinaryOp::*;
    Some(match op {
        Equal => FloatCC::Equal,
        NotEqual => FloatCC::NotEqual,
        Less => FloatCC::LessThan,
        LessEqual => FloatCC::LessThanOrEqual,
        Greater => FloatCC::GreaterThan,
        GreaterEqual => FloatCC::GreaterThanOrEqual,
        _ => return None,
    })
}

/// The integer condition of a comparison op.
fn int_cc(op: BinaryOp, signed: bool) -> Option<IntCC> {
    use BinaryOp::*;
    Some(match (op, signed) {
        (Equal, _) => IntCC::Equal,
        (NotEqual, _) => IntCC::NotEqual,
        (Less, true) => IntCC::SignedLessThan,
        (Less, false) => IntCC::UnsignedLessThan,
        (LessEqual, true) => IntCC::SignedLessThanOrEqual,
        (LessEqual, false) => IntCC::UnsignedLessThanOrEqual,
        (Greater, true) => IntCC::SignedGreaterThan,
        (Greater, false) => IntCC::UnsignedGreaterThan,
        (GreaterEqual, true) => IntCC::SignedGreaterThanOrEqual,
        (GreaterEqual, false) => IntCC::UnsignedGreaterThanOrEqual,
        _ => return None,
    })
}
