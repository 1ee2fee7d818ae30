//! ONNX's indexing ops: element gathers and scatters (`GatherElements`, `GatherND`,
//! `ScatterElements` and the older `Scatter`, `ScatterND`), `CumSum`, `Trilu`, `TopK`, and
//! `OneHot`, which the IR has no op for: it is an `equal` of the indices against a range of
//! classes, then a `select` of the on and off values.
//!
//! `NonZero` is not imported: its output's shape depends on the input's values, and a Lathe
//! plan knows every shape before it runs.

use super::elementwise::cast;
use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, ScatterReduction};
use lathe_ir::{DType, Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("GatherElements", &["gather_elements"], |b, cx| {
            let axis = cx.attrs.int_or("axis", 0)?;
            one(b.op(Op::GatherElements { axis }, &[cx.input(0)?, cx.input(1)?])?)
        }),
        row("GatherND", &["gather_nd"], |b, cx| {
            let bd = cx.attrs.int_or("batch_dims", 0)?;
            let batch_dims =
                usize::try_from(bd).map_err(|_| format!("batch_dims {bd} is negative"))?;
            one(b.op(Op::GatherNd { batch_dims }, &[cx.input(0)?, cx.input(1)?])?)
        }),
        row("ScatterElements", &["scatter_elements"], import_scatter_elements),
        // `Scatter` (opsets 9 and 10) is `ScatterElements` without a reduction.
        row("Scatter", &["scatter_elements"], import_scatter_elements),
        row("ScatterND", &["scatter_nd"], |b, cx| {
            let op = Op::ScatterNd {
                reduction: reduction(cx)?,
            };
            one(b.op(op, &[cx.input(0)?, cx.input(1)?, cx.input(2)?])?)
        }),
        row("CumSum", &["cumsum"], |b, cx| {
            let op = Op::CumSum {
                exclusive: cx.attrs.int_or("exclusive", 0)? != 0,
                reverse: cx.attrs.int_or("reverse", 0)? != 0,
            };
            one(b.op(op, &[cx.input(0)?, cx.input(1)?])?)
        }),
        row("Trilu", &["trilu"], |b, cx| {
            let k = match cx.opt(1) {
                Some(k) => k,
                None => b.i64_scalar(0),
            };
            let op = Op::Trilu {
                upper: cx.attrs.int_or("upper", 1)? != 0,
            };
            one(b.op(op, &[cx.input(0)?, k])?)
        }),
        row("TopK", &["top_k"], import_top_k),
        row(
            "OneHot",
            &["equal", "select", "range", "cast", "reshape", "expand_dims", "less", "add", "slice"],
            import_one_hot,
        ),
    ]
}

/// The `reduction` attribute (`none` before opset 16).
fn reduction(cx: &NodeCx) -> Result<ScatterReduction, String> {
    let r = cx.attrs.str_or("reduction", "none")?;
    ScatterReduction::parse(&r).ok_or_else(|| format!("reduction `{r}` is not supported"))
}

fn import_scatter_elements(b: &mut Builder, cx: &NodeCx) -> Out {
    let op = Op::ScatterElements {
        axis: cx.attrs.int_or("axis", 0)?,
        reduction: reduction(cx)?,
    };
    one(b.op(op, &[cx.input(0)?, cx.input(1)?, cx.input(2)?])?)
}

/// `TopK`: `k` an attribute before opset 10, an input (one element) from it; `largest` from
/// 11. The IR's result is always sorted, which `sorted = 0` (any order) allows.
fn import_top_k(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let k = if cx.opset < 10 {
        let k = cx.attrs.int("k")?;
        b.i64_scalar(k)
    } else {
        cx.input(1)?
    };
    let op = Op::TopK {
        axis: cx.attrs.int_or("axis", -1)?,
        largest: cx.attrs.int_or("largest", 1)? != 0,
    };
    let node = b.node_of(op, &[x, k])?;
    Ok((0..2).map(|output| ValueId { node, output }).collect())
}

/// `OneHot(indices, depth, values)`: `values[1]` where the index (negative counting back from
/// `depth`) equals the class along the new axis `axis`, else `values[0]`; an index outside
/// `[-depth, depth)` gives a row of `values[0]`.
fn import_one_hot(b: &mut Builder, cx: &NodeCx) -> Out {
    let (indices, depth, values) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let rank = b.rank(indices);
    let axis = norm_axis(cx.attrs.int_or("axis", -1)?, rank + 1)?;
    if b.ty(values).shape.num_elements() != Some(2) || b.rank(values) != 1 {
        return Err(format!("values must hold [off, on], got {}", b.ty(values)));
    }
    if b.ty(depth).shape.num_elements() != Some(1) {
        return Err(format!("depth must hold one value, got {}", b.ty(depth)));
    }
    let scalar = b.i64s(&[]);
    let depth = cast(b, depth, DType::I64)?;
    let depth = b.op(Op::Reshape, &[depth, scalar])?;
    let idx = cast(b, indices, DType::I64)?;
    let zero = b.i64_scalar(0);
    let negative = b.op(Op::Binary(B::Less), &[idx, zero])?;
    let wrapped = b.op(Op::Binary(B::Add), &[idx, depth])?;
    let idx = b.op(Op::Select, &[negative, wrapped, idx])?;
    let at = b.i64_scalar(axis as i64);
    let idx = b.op(Op::ExpandDims, &[idx, at])?;
    // The classes along the new axis, broadcast over the axes after it.
    let (start, step) = (b.i64_scalar(0), b.i64_scalar(1));
    let classes = b.op(Op::Range, &[start, depth, step])?;
    let mut target = vec![-1i64];
    target.resize(rank + 1 - axis, 1);
    let target = b.i64s(&target);
    let classes = b.op(Op::Reshape, &[classes, target])?;
    let hot = b.op(Op::Binary(B::Equal), &[idx, classes])?;
    let pick = |b: &mut Builder, i: i64| -> Result<ValueId, String> {
        let (begin, size) = (b.i64s(&[i]), b.i64s(&[1]));
        let v = b.op(Op::Slice, &[values, begin, size])?;
        b.op(Op::Reshape, &[v, scalar])
    };
    let (off, on) = (pick(b, 0)?, pick(b, 1)?);
    one(b.op(Op::Select, &[hot, on, off])?)
}
