//! ONNX reductions: `Reduce*` (axes an attribute before opset 13 for `ReduceSum` and 18 for
//! the rest, an input from then on), and `ArgMax`/`ArgMin`. The norms and log-sums are
//! written with the IR's sum and max.

use super::elementwise::cast;
use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, ReduceKind as R, UnaryOp as U};
use lathe_ir::{DType, Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

/// What a `Reduce*` op computes around its IR reduction.
#[derive(Clone, Copy)]
enum Kind {
    Plain(R),
    L1,
    L2,
    SumSquare,
    LogSum,
    LogSumExp,
}

macro_rules! reduce_row {
    ($name:literal, $kind:expr, $since:literal, $ir:expr) => {
        row($name, $ir, |b, cx| import_reduce(b, cx, $kind, $since))
    };
}

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        reduce_row!("ReduceSum", Kind::Plain(R::Sum), 13, &["reduce_sum"]),
        reduce_row!("ReduceMean", Kind::Plain(R::Mean), 18, &["reduce_mean"]),
        reduce_row!("ReduceMax", Kind::Plain(R::Max), 18, &["reduce_max"]),
        reduce_row!("ReduceMin", Kind::Plain(R::Min), 18, &["reduce_min"]),
        reduce_row!("ReduceProd", Kind::Plain(R::Prod), 18, &["reduce_prod"]),
        reduce_row!("ReduceL1", Kind::L1, 18, &["reduce_sum", "abs"]),
        reduce_row!("ReduceL2", Kind::L2, 18, &["reduce_sum", "mul", "sqrt"]),
        reduce_row!(
            "ReduceSumSquare",
            Kind::SumSquare,
            18,
            &["reduce_sum", "mul"]
        ),
        reduce_row!("ReduceLogSum", Kind::LogSum, 18, &["reduce_sum", "log"]),
        reduce_row!(
            "ReduceLogSumExp",
            Kind::LogSumExp,
            18,
            &["reduce_max", "reduce_sum", "exp", "log", "sub", "add"]
        ),
        row("ArgMax", &["arg_max", "expand_dims"], |b, cx| {
            arg(b, cx, false)
        }),
        row("ArgMin", &["arg_max", "neg", "expand_dims"], |b, cx| {
            arg(b, cx, true)
        }),
    ]
}

fn reduce(
    b: &mut Builder,
    kind: R,
    x: ValueId,
    ax: ValueId,
    keep: bool,
) -> Result<ValueId, String> {
    b.op(
        Op::Reduce {
            kind,
            keep_dims: keep,
        },
        &[x, ax],
    )
}

fn import_reduce(b: &mut Builder, cx: &NodeCx, kind: Kind, input_since: i64) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let keep = cx.attrs.int_or("keepdims", 1)? != 0;
    let noop = cx.attrs.int_or("noop_with_empty_axes", 0)? != 0;
    let ax = reduce_axes(b, cx, input_since, rank)?;
    if b.dtype(x) == DType::Bool {
        // The max of bools is any (a count above zero), the min all (no false to count);
        // both defined on an empty set.
        let Kind::Plain(k @ (R::Max | R::Min)) = kind else {
            return Err("only ReduceMax and ReduceMin take bool tensors".into());
        };
        let ax = match ax {
            Some(ax) => ax,
            None if noop => return one(b.op(Op::Identity, &[x])?),
            None => b.i64s(&(0..rank as i64).collect::<Vec<_>>()),
        };
        let v = if k == R::Min {
            b.op(Op::Unary(U::LogicalNot), &[x])?
        } else {
            x
        };
        let n = cast(b, v, DType::I64)?;
        let count = reduce(b, R::Sum, n, ax, keep)?;
        let zero = b.i64_scalar(0);
        let cmp = if k == R::Max { B::Greater } else { B::Equal };
        return one(b.op(Op::Binary(cmp), &[count, zero])?);
    }
    let ax = match ax {
        Some(ax) => ax,
        None if noop => return one(b.op(Op::Identity, &[x])?),
        None => b.i64s(&(0..rank as i64).collect::<Vec<_>>()),
    };
    let y = match kind {
        Kind::Plain(k) => reduce(b, k, x, ax, keep)?,
        Kind::L1 => {
            let a = b.op(Op::Unary(U::Abs), &[x])?;
            reduce(b, R::Sum, a, ax, keep)?
        }
        Kind::L2 | Kind::SumSquare => {
            let sq = b.op(Op::Binary(B::Mul), &[x, x])?;
            let s = reduce(b, R::Sum, sq, ax, keep)?;
            if matches!(kind, Kind::L2) {
                // Integer L2 norms are computed in f64 and cast back, as the reference does.
                let dt = b.dtype(s);
                let f = cast(b, s, if dt.is_float() { dt } else { DType::F64 })?;
                let r = b.op(Op::Unary(U::Sqrt), &[f])?;
                cast(b, r, dt)?
            } else {
                s
            }
        }
        Kind::LogSum => {
            let s = reduce(b, R::Sum, x, ax, keep)?;
            b.op(Op::Unary(U::Log), &[s])?
        }
        Kind::LogSumExp => {
            // max + log(sum(exp(x - max))), the max kept for broadcasting, then reduced
            // again to drop the axes when asked.
            let m = reduce(b, R::Max, x, ax, true)?;
            let d = b.op(Op::Binary(B::Sub), &[x, m])?;
            let e = b.op(Op::Unary(U::Exp), &[d])?;
            let s = reduce(b, R::Sum, e, ax, keep)?;
            let l = b.op(Op::Unary(U::Log), &[s])?;
            let m = if keep {
                m
            } else {
                reduce(b, R::Max, m, ax, false)?
            };
            b.op(Op::Binary(B::Add), &[l, m])?
        }
    };
    one(y)
}

/// The reduction axes as an i64 value: from the attribute or a constant input, made
/// non-negative; a non-constant input as it is (a shape input, known once specialized).
/// `None` when there are none (absent, or empty).
fn reduce_axes(
    b: &mut Builder,
    cx: &NodeCx,
    input_since: i64,
    rank: usize,
) -> Result<Option<ValueId>, String> {
    let constant = |b: &mut Builder, ax: &[i64]| -> Result<Option<ValueId>, String> {
        if ax.is_empty() {
            return Ok(None);
        }
        let ax = ax
            .iter()
            .map(|&a| norm_axis(a, rank).map(|a| a as i64))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(b.i64s(&ax)))
    };
    if cx.opset < input_since {
        let ax = cx.attrs.ints("axes").unwrap_or(&[]).to_vec();
        return constant(b, &ax);
    }
    let Some(v) = cx.opt(1) else {
        return Ok(None);
    };
    if let Some(t) = b.const_of(v) {
        let ax = t.to_i64_vec()?;
        return constant(b, &ax);
    }
    match b.ty(v).shape.0.first().and_then(|d| d.known()) {
        Some(0) => Ok(None),
        Some(_) => Ok(Some(cast(b, v, DType::I64)?)),
        None => Err("reduction axes of unknown count are not supported".into()),
    }
}

/// `ArgMax`, or `ArgMin` as the `ArgMax` of `-x` (first index on ties either way).
fn arg(b: &mut Builder, cx: &NodeCx, min: bool) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let last = cx.attrs.int_or("select_last_index", 0)? != 0;
    let axis = norm_axis(cx.attrs.int_or("axis", 0)?, rank)? as i64;
    let keep = cx.attrs.int_or("keepdims", 1)? != 0;
    let v = if min {
        if b.dtype(x).is_unsigned_int() {
            return Err("ArgMin of unsigned integers is not supported".into());
        }
        b.op(Op::Unary(U::Neg), &[x])?
    } else {
        x
    };
    // The last of equal values is the first in the reversed axis.
    let dim = b.ty(x).shape.0[axis as usize].known();
    let v = if last {
        let dim = dim.ok_or("`select_last_index` needs the axis' size")? as i64;
        let rev = b.i64s(&(0..dim).rev().collect::<Vec<_>>());
        let a = b.i64_scalar(axis);
        b.op(Op::Gather { batch_dims: 0 }, &[v, rev, a])?
    } else {
        v
    };
    let a = b.i64_scalar(axis);
    let mut y = b.op(Op::ArgMax { output: DType::I64 }, &[v, a])?;
    if let (true, Some(dim)) = (last, dim) {
        let top = b.i64_scalar(dim as i64 - 1);
        y = b.op(Op::Binary(B::Sub), &[top, y])?;
    }
    if !keep {
        return one(y);
    }
    let a = b.i64_scalar(axis);
    one(b.op(Op::ExpandDims, &[y, a])?)
}
