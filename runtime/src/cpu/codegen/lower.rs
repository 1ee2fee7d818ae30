//! Lowers a [`Plan`] to one Cranelift function: a loop over rows; per row, one loop per
//! reduction phase, then the output loop (see the module docs of `codegen` for the ABI).
//!
//! Every element value is an `f32x4`. Row-uniform values are splats computed once per row,
//! before the first loop that needs them. Each loop runs `UNROLL` vectors per iteration, then
//! single vectors, then single elements (loaded into lane 0's splat, computed as a vector, and
//! lane 0 stored or accumulated), all at offsets known at compile time because shapes are.

use super::analyze::{Expr, Id, Plan};
use super::libcalls;
use super::math::Math;
use super::refs::Refs;
use super::rows::RowLoop;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4};
use cranelift_codegen::ir::{InstBuilder, MemFlags, Type, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use lathe_ir::ops::{BinaryOp, ReduceKind};
use std::collections::HashMap;

/// Vectors per loop iteration (independent accumulators per reduction).
const UNROLL: usize = 4;
/// Lanes of an `f32x4`.
const LANES: usize = 4;

/// Where in a row one copy of the loop body evaluates.
#[derive(Clone, Copy)]
struct Site {
    /// Byte offset from the row start held in a loop variable, if inside a loop.
    dynamic: Option<Value>,
    /// Constant byte offset added to it.
    offset: i32,
    /// One element splatted (tails), rather than four consecutive elements.
    lane: bool,
}

/// Whether `plan` takes this vector lowering: every value f32, and every op one the f32x4
/// [`Math`] implements exactly enough (`floor_div` is not: `floor` of the f32-rounded quotient
/// can be one more than the interpreter's, so it takes the f64 scalar path). Other plans take the scalar lowering (`scalar.rs`).
pub(crate) fn vector_ok(plan: &Plan) -> bool {
    use lathe_ir::ops::{BinaryOp as B, UnaryOp as U};
    plan.nodes.iter().all(|n| {
        n.dtype == lathe_ir::DType::F32
            && match n.expr {
                Expr::Leaf(_) | Expr::Splat(_) | Expr::Reduce { .. } => true,
                Expr::Unary(u, _) => !(u == U::LogicalNot || libcalls::f32_by_libcall(u)),
                Expr::Binary(b, _, _) => matches!(
                    b,
                    B::Add
                        | B::Sub
                        | B::Mul
                        | B::Div
                        | B::Maximum
                        | B::Minimum
                        | B::SquaredDifference
                ),
                Expr::Cast(_) | Expr::Select(..) => false,
            }
    })
}

/// Emits the kernel for `plan` into `b`, whose function has the signature
/// `(inputs: ptr, outputs: ptr, row_start: ptr, row_end: ptr)`.
pub(crate) fn emit(plan: &Plan, refs: &Refs, b: &mut FunctionBuilder, ptr: Type, fma: bool) {
    let rows = RowLoop::begin(plan, refs, b, ptr, |_| {});
    let mut l = Lower {
        plan,
        m: Math { b, fma },
        ptr,
        leaf_row: rows.leaf_row.clone(),
        uniform: HashMap::new(),
    };
    for phase in &plan.phases {
        l.reduction_phase(phase.len, &phase.reductions);
    }
    l.output_phase(&rows.out_row);

    let b = l.m.b;
    rows.end(b);
    // f32 arithmetic cannot fault.
    let ok = b.ins().iconst(cranelift_codegen::ir::types::I32, 0);
    b.ins().return_(&[ok]);
    b.seal_all_blocks();
}

struct Lower<'p, 'a, 'b> {
    plan: &'p Plan,
    m: Math<'a, 'b>,
    ptr: Type,
    /// Each leaf's address at the current row's first element.
    leaf_row: Vec<Value>,
    /// Row-uniform values (splats) computed so far in this row.
    uniform: HashMap<Id, Value>,
}

impl Lower<'_, '_, '_> {
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
            Expr::Unary(_, x) => self.prepare(x, seen),
            Expr::Binary(_, x, y) => {
                self.prepare(x, seen);
                self.prepare(y, seen);
            }
            Expr::Leaf(_) | Expr::Splat(_) | Expr::Reduce { .. } => {}
            Expr::Cast(_) | Expr::Select(..) => unreachable!("not in a vector plan"),
        }
    }

    /// The splat of a row-uniform node, computing it (and its operands) here if needed.
    fn uniform_value(&mut self, id: Id) -> Value {
        if let Some(&v) = self.uniform.get(&id) {
            return v;
        }
        let v = match self.plan.nodes[id].expr {
            Expr::Leaf(l) => {
                let x = self
                    .m
                    .b
                    .ins()
                    .load(F32, MemFlags::trusted(), self.leaf_row[l], 0);
                self.m.b.ins().splat(F32X4, x)
            }
            Expr::Splat(c) => self.m.c(f32::from_bits(c as u32)),
            Expr::Cast(_) | Expr::Select(..) => unreachable!("not in a vector plan"),
            Expr::Unary(u, x) => {
                let x = self.uniform_value(x);
                self.m.unary(u, x)
            }
            Expr::Binary(op, x, y) => {
                let (xv, yv) = (self.uniform_value(x), self.uniform_value(y));
                self.binary(op, (xv, x), (yv, y))
            }
            Expr::Reduce { kind, arg, count } => {
                assert_eq!(
                    self.plan.nodes[arg].len, 1,
                    "the schedule computes reductions over a row before their uses"
                );
                // A reduction of `count` copies of one value.
                let x = self.uniform_value(arg);
                match kind {
                    ReduceKind::Sum => {
                        let n = self.m.c(count as f32);
                        self.m.mul(x, n)
                    }
                    ReduceKind::Mean | ReduceKind::Max | ReduceKind::Min => x,
                    ReduceKind::Prod => self.power(x, count),
                }
            }
        };
        self.uniform.insert(id, v);
        v
    }

    /// `op` on the values of nodes `x` and `y`, telling [`Math::binary_of`] which are
    /// constants that are not NaN.
    fn binary(&mut self, op: BinaryOp, (xv, x): (Value, Id), (yv, y): (Value, Id)) -> Value {
        let not_nan = |id: Id| matches!(self.plan.nodes[id].expr, Expr::Splat(c) if !f32::from_bits(c as u32).is_nan());
        let (xc, yc) = (not_nan(x), not_nan(y));
        self.m.binary_of(op, (xv, xc), (yv, yc))
    }

    /// `x^n` by square-and-multiply (`n >= 1`).
    fn power(&mut self, x: Value, n: usize) -> Value {
        let (mut acc, mut base, mut k) = (None, x, n);
        while k > 0 {
            if k & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => self.m.mul(a, base),
                });
            }
            k >>= 1;
            if k > 0 {
                base = self.m.mul(base, base);
            }
        }
        acc.unwrap_or_else(|| self.m.c(1.0))
    }

    /// Evaluates node `id` at `site`, sharing values within one site through `memo`.
    fn eval(&mut self, id: Id, site: Site, memo: &mut HashMap<Id, Value>) -> Value {
        if let Expr::Splat(c) = self.plan.nodes[id].expr {
            return self.m.c(f32::from_bits(c as u32));
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
        let v = match self.plan.nodes[id].expr {
            Expr::Leaf(l) => {
                let mut addr = self.leaf_row[l];
                if let Some(d) = site.dynamic {
                    addr = self.m.b.ins().iadd(addr, d);
                }
                let flags = MemFlags::new().with_notrap();
                if site.lane {
                    let x = self.m.b.ins().load(F32, flags, addr, site.offset);
                    self.m.b.ins().splat(F32X4, x)
                } else {
                    self.m.b.ins().load(F32X4, flags, addr, site.offset)
                }
            }
            Expr::Unary(u, x) => {
                let x = self.eval(x, site, memo);
                self.m.unary(u, x)
            }
            Expr::Binary(op, x, y) => {
                let xv = self.eval(x, site, memo);
                let yv = self.eval(y, site, memo);
                self.binary(op, (xv, x), (yv, y))
            }
            Expr::Splat(_) | Expr::Reduce { .. } => unreachable!("row-uniform nodes have len 1"),
            Expr::Cast(_) | Expr::Select(..) => unreachable!("not in a vector plan"),
        };
        memo.insert(id, v);
        v
    }

    /// Emits a loop over a row of `len` elements: `vector(site)` for each `UNROLL` vectors per
    /// iteration, then for leftover vectors and elements.
    fn row_loop(&mut self, len: usize, body: &mut dyn FnMut(&mut Self, &[Site])) {
        let step = UNROLL * LANES;
        let iters = len / step;
        if iters > 0 {
            let b = &mut *self.m.b;
            let off_var = b.declare_var(self.ptr);
            let zero = b.ins().iconst(self.ptr, 0);
            b.def_var(off_var, zero);
            let header = b.create_block();
            let after = b.create_block();
            b.ins().jump(header, &[]);
            b.switch_to_block(header);
            let off = b.use_var(off_var);
            let sites: Vec<Site> = (0..UNROLL)
                .map(|u| Site {
                    dynamic: Some(off),
                    offset: (u * LANES * 4) as i32,
                    lane: false,
                })
                .collect();
            body(self, &sites);
            let b = &mut *self.m.b;
            let next = b.ins().iadd_imm(off, (step * 4) as i64);
            b.def_var(off_var, next);
            let more = b
                .ins()
                .icmp_imm(IntCC::UnsignedLessThan, next, (iters * step * 4) as i64);
            b.ins().brif(more, header, &[], after, &[]);
            b.switch_to_block(after);
        }
        let mut pos = iters * step;
        while pos + LANES <= len {
            let site = Site {
                dynamic: None,
                offset: (pos * 4) as i32,
                lane: false,
            };
            body(self, &[site]);
            pos += LANES;
        }
        while pos < len {
            let site = Site {
                dynamic: None,
                offset: (pos * 4) as i32,
                lane: true,
            };
            body(self, &[site]);
            pos += 1;
        }
    }

    /// One loop over a row of `len` elements computing `reductions`; their results become
    /// row-uniform values.
    fn reduction_phase(&mut self, len: usize, reductions: &[Id]) {
        let mut seen = vec![false; self.plan.nodes.len()];
        let mut parts = vec![];
        for &r in reductions {
            let Expr::Reduce { kind, arg, count } = self.plan.nodes[r].expr else {
                unreachable!("phases hold reductions")
            };
            self.prepare(arg, &mut seen);
            let init = self.m.c(identity(kind));
            let accs: Vec<Variable> = (0..UNROLL)
                .map(|_| {
                    let v = self.m.b.declare_var(F32X4);
                    self.m.b.def_var(v, init);
                    v
                })
                .collect();
            parts.push((r, kind, arg, count, accs, init));
        }
        self.row_loop(len, &mut |l: &mut Self, sites: &[Site]| {
            let mut memos: Vec<HashMap<Id, Value>> = sites.iter().map(|_| HashMap::new()).collect();
            for (_, kind, arg, _, accs, init) in &parts {
                for (u, site) in sites.iter().enumerate() {
                    let mut v = l.eval(*arg, *site, &mut memos[u]);
                    if site.lane {
                        // Only lane 0 is a real element: put it into the identity vector.
                        let x = l.m.b.ins().extractlane(v, 0);
                        v = l.m.b.ins().insertlane(*init, x, 0);
                    }
                    let acc = l.m.b.use_var(accs[u]);
                    let acc = combine(&mut l.m, *kind, acc, v);
                    l.m.b.def_var(accs[u], acc);
                }
            }
        });
        for (r, kind, _, count, accs, _) in parts {
            let mut acc = self.m.b.use_var(accs[0]);
            for &a in &accs[1..] {
                let a = self.m.b.use_var(a);
                acc = combine(&mut self.m, kind, acc, a);
            }
            let b = &mut *self.m.b;
            let lanes: Vec<Value> = (0..LANES as u8)
                .map(|i| b.ins().extractlane(acc, i))
                .collect();
            let s01 = scalar_combine(b, kind, lanes[0], lanes[1]);
            let s23 = scalar_combine(b, kind, lanes[2], lanes[3]);
            let mut s = scalar_combine(b, kind, s01, s23);
            if kind == ReduceKind::Mean {
                let n = b.ins().f32const(count as f32);
                s = b.ins().fdiv(s, n);
            }
            let v = b.ins().splat(F32X4, s);
            self.uniform.insert(r, v);
        }
    }

    /// The final loop: computes every output at every element of the row and stores it.
    fn output_phase(&mut self, out_row: &[Value]) {
        let mut seen = vec![false; self.plan.nodes.len()];
        for &o in &self.plan.outputs {
            self.prepare(o, &mut seen);
        }
        let outputs = self.plan.outputs.clone();
        self.row_loop(self.plan.row_len, &mut |l: &mut Self, sites: &[Site]| {
            // Compute everything before storing anything: an output may alias an input.
            let mut values = vec![];
            for site in sites {
                let mut memo = HashMap::new();
                for &o in &outputs {
                    values.push((*site, l.eval(o, *site, &mut memo)));
                }
            }
            let flags = MemFlags::new().with_notrap();
            for (k, (site, v)) in values.into_iter().enumerate() {
                let mut addr = out_row[k % outputs.len()];
                if let Some(d) = site.dynamic {
                    addr = l.m.b.ins().iadd(addr, d);
                }
                if site.lane {
                    let x = l.m.b.ins().extractlane(v, 0);
                    l.m.b.ins().store(flags, x, addr, site.offset);
                } else {
                    l.m.b.ins().store(flags, v, addr, site.offset);
                }
            }
        });
    }
}

/// The value a reduction starts from.
fn identity(kind: ReduceKind) -> f32 {
    match kind {
        ReduceKind::Sum | ReduceKind::Mean => 0.0,
        ReduceKind::Prod => 1.0,
        ReduceKind::Max => f32::NEG_INFINITY,
        ReduceKind::Min => f32::INFINITY,
    }
}

/// Combines two vectors of partial results (NaN-propagating max/min, as the interpreter).
fn combine(m: &mut Math, kind: ReduceKind, a: Value, b: Value) -> Value {
    match kind {
        ReduceKind::Sum | ReduceKind::Mean => m.b.ins().fadd(a, b),
        ReduceKind::Prod => m.b.ins().fmul(a, b),
        ReduceKind::Max => m.b.ins().fmax(a, b),
        ReduceKind::Min => m.b.ins().fmin(a, b),
    }
}

fn scalar_combine(b: &mut FunctionBuilder, kind: ReduceKind, x: Value, y: Value) -> Value {
    match kind {
        ReduceKind::Sum | ReduceKind::Mean => b.ins().fadd(x, y),
        ReduceKind::Prod => b.ins().fmul(x, y),
        ReduceKind::Max => b.ins().fmax(x, y),
        ReduceKind::Min => b.ins().fmin(x, y),
    }
}
