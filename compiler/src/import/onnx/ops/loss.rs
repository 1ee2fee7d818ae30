//! ONNX losses: `NegativeLogLikelihoodLoss` and `SoftmaxCrossEntropyLoss` (its log-softmax
//! followed by the former), with class weights, `ignore_index` and the three reductions.
//! The class picked by each target is read through a one-hot mask over the class axis.

use super::composite::one_hot_mask;
use super::elementwise::cast;
use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, ReduceKind as R, UnaryOp as U};
use lathe_ir::{Op, ValueId};

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row(
            "NegativeLogLikelihoodLoss",
            &[
                "equal",
                "select",
                "reduce_sum",
                "gather",
                "mul",
                "neg",
                "div",
            ],
            |b, cx| {
                let loss = nll(b, cx, cx.input(0)?)?;
                one(loss)
            },
        ),
        row(
            "SoftmaxCrossEntropyLoss",
            &[
                "log_softmax",
                "transpose",
                "equal",
                "select",
                "reduce_sum",
                "mul",
                "neg",
                "div",
            ],
            |b, cx| {
                let logp = log_softmax_classes(b, cx.input(0)?)?;
                let loss = nll(b, cx, logp)?;
                if cx.wants(1) {
                    Ok(vec![loss, logp])
                } else {
                    one(loss)
                }
            },
        ),
    ]
}

/// Log-softmax over axis 1 (the classes) of `[N, C, ...]`.
fn log_softmax_classes(b: &mut Builder, x: ValueId) -> Result<ValueId, String> {
    let rank = b.rank(x);
    if rank < 2 {
        return Err(format!("scores must have rank 2 or more, got {rank}"));
    }
    if rank == 2 {
        return b.op(Op::LogSoftmax, &[x]);
    }
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(1, rank - 1);
    let p = b.i64s(&perm);
    let t = b.op(Op::Transpose, &[x, p])?;
    let t = b.op(Op::LogSoftmax, &[t])?;
    let p = b.i64s(&perm);
    b.op(Op::Transpose, &[t, p])
}

/// The loss of log-probabilities `logp` (`[N, C, d...]`) for the node's targets (input 1,
/// `[N, d...]`), weights (input 2, `[C]`), `ignore_index` and `reduction`.
fn nll(b: &mut Builder, cx: &NodeCx, logp: ValueId) -> Result<ValueId, String> {
    let target = cx.input(1)?;
    let dt = b.dtype(logp);
    let classes = b
        .ty(logp)
        .shape
        .0
        .get(1)
        .and_then(|d| d.known())
        .ok_or("the class axis (1) must have a known size")?;
    let ignore = if cx.attrs.has("ignore_index") {
        Some(cx.attrs.int("ignore_index")?)
    } else {
        None
    };
    // Targets equal to ignore_index pick class 0 and weigh nothing.
    let (target, ignored) = match ignore {
        Some(i) => {
            let iv = b.scalar(b.dtype(target), i as f64);
            let ignored = b.op(Op::Binary(B::Equal), &[target, iv])?;
            let zero = b.scalar(b.dtype(target), 0.0);
            (b.op(Op::Select, &[ignored, zero, target])?, Some(ignored))
        }
        None => (target, None),
    };
    let mask = one_hot_mask(b, target, classes, 1)?;
    let zero = b.scalar(dt, 0.0);
    let picked = b.op(Op::Select, &[mask, logp, zero])?;
    let ax = b.i64s(&[1]);
    let picked = b.op(
        Op::Reduce {
            kind: R::Sum,
            keep_dims: false,
        },
        &[picked, ax],
    )?;
    let mut loss = b.op(Op::Unary(U::Neg), &[picked])?;
    // The weight of each target: weight[target], 0 where ignored; `None` when all are 1.
    let mut weight = match cx.opt(2) {
        Some(w) => {
            let axis = b.i64_scalar(0);
            Some(b.op(Op::Gather { batch_dims: 0 }, &[w, target, axis])?)
        }
        None => None,
    };
    if let Some(ignored) = ignored {
        let w = match weight {
            Some(w) => w,
            None => {
                let t = b.op(Op::Binary(B::Equal), &[target, target])?;
                cast(b, t, dt)?
            }
        };
        weight = Some(b.op(Op::Select, &[ignored, zero, w])?);
    }
    if let Some(w) = weight {
        loss = b.op(Op::Binary(B::Mul), &[loss, w])?;
    }
    let all = |b: &mut Builder, v: ValueId, kind: R| -> Result<ValueId, String> {
        let axes = b.i64s(&(0..b.rank(v) as i64).collect::<Vec<_>>());
        b.op(
            Op::Reduce {
                kind,
                keep_dims: false,
            },
            &[v, axes],
        )
    };
    match cx.attrs.str_or("reduction", "mean")?.as_str() {
        "none" => Ok(loss),
        "sum" => all(b, loss, R::Sum),
        "mean" => match weight {
            None => all(b, loss, R::Mean),
            Some(w) => {
                let total = all(b, loss, R::Sum)?;
                let wsum = all(b, w, R::Sum)?;
                b.op(Op::Binary(B::Div), &[total, wsum])
            }
        },
        r => Err(format!("unknown reduction `{r}`")),
    }
}
