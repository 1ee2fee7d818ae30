//! Shape identities: transpose pairs, reshape chains, and ops that do not move anything.

use super::{
    add_const, compose_perms, const_ints, index_tensor, inputs, is_identity_perm, producer,
    replace_with, replace_with_new, rewrite_in_place, Outcome, RuleResult,
};
use crate::passes::PassCx;
use lathe_ir::{DType, Dim, Graph, NodeId, Op, ValueId};

/// `transpose(x, identity)` → `x`; `transpose(transpose(x, p1), p2)` → `transpose(x, p1∘p2)`
/// (→ `x` when that is the identity). One transpose at most, whatever the chain; the inner
/// one stays only for its other users.
pub(crate) fn transpose(g: &mut Graph, id: NodeId, cx: &mut PassCx) -> RuleResult {
    let [x, p] = inputs(g, id)[..] else {
        return Ok(None);
    };
    let Some(perm) = const_ints(g, p) else {
        return Ok(None);
    };
    if is_identity_perm(&perm) {
        if let Some(out) = replace_with(g, id, x) {
            cx.count("transpose_identity", 1);
            return Ok(Some(out));
        }
        return Ok(None);
    }
    if let Some(out) = transpose_as_reshape(g, id, x, &perm, cx)? {
        return Ok(Some(out));
    }
    if producer(g, x) != &Op::Transpose {
        return Ok(None);
    }
    let [x0, p0] = g.node(x.node).inputs[..] else {
        return Ok(None);
    };
    let Some(composed) = const_ints(g, p0).and_then(|inner| compose_perms(&inner, &perm)) else {
        return Ok(None);
    };
    if is_identity_perm(&composed) {
        if let Some(out) = replace_with(g, id, x0) {
            cx.count("transpose_pair_cancelled", 1);
            return Ok(Some(out));
        }
        return Ok(None);
    }
    let dtype = g.value_type(p).dtype;
    let q = add_const(g, index_tensor(dtype, &composed), id, "perm");
    if rewrite_in_place(g, id, Op::Transpose, &[x0, q]) {
        cx.count("transpose_pair_merged", 1);
        return Ok(Some(Outcome::Rewritten));
    }
    Ok(None)
}

/// `transpose(x, p)` that moves only axes of size 1 (the others keep their order) →
/// `reshape(x, shape)`: the elements stay where they are (an NCHW/NHWC switch of one
/// channel), and a reshape is a view, not a copy, and merges with neighbouring reshapes.
fn transpose_as_reshape(
    g: &mut Graph,
    id: NodeId,
    x: ValueId,
    perm: &[i64],
    cx: &mut PassCx,
) -> RuleResult {
    let Some(dims) = g.value_type(x).shape.as_known() else {
        return Ok(None);
    };
    let moved: Vec<i64> = (perm.iter().copied())
        .filter(|&p| usize::try_from(p).is_ok_and(|p| dims.get(p).is_some_and(|&d| d != 1)))
        .collect();
    if perm.len() != dims.len() || moved.windows(2).any(|w| w[0] > w[1]) {
        return Ok(None);
    }
    let Some(out) = g.node(id).outputs[0].shape.as_known() else {
        return Ok(None);
    };
    let target: Vec<i64> = out.iter().map(|&d| d as i64).collect();
    let shape = add_const(g, index_tensor(DType::I64, &target), id, "shape");
    if rewrite_in_place(g, id, Op::Reshape, &[x, shape]) {
        cx.count("transpose_of_unit_axes", 1);
        return Ok(Some(Outcome::Rewritten));
    }
    Ok(None)
}

/// True for the ops that keep the row-major order of the elements and only change the shape.
pub(crate) fn is_reshape_like(op: &Op) -> bool {
    matches!(op, Op::Reshape | Op::Squeeze { .. } | Op::ExpandDims)
}

/// Reshapes, squeezes and expand_dims:
/// - one whose output type is its input's (no `?` dim, which could hide a different size) →
///   its input;
/// - `reshape(r(x), s)` with `r` any of the three → `reshape(x, s)`;
/// - `squeeze`/`expand_dims` of such an `r(x)` → `reshape(x, shape)` when the output shape is
///   known (at most one dim left to `-1`).
///
/// Each chain becomes one reshape, and the inner op stays only for its other users.
pub(crate) fn reshape_like(g: &mut Graph, id: NodeId, cx: &mut PassCx) -> RuleResult {
    let ins = inputs(g, id);
    let x = ins[0];
    let out_ty = g.node(id).outputs[0].clone();
    if g.value_type(x) == &out_ty && !out_ty.shape.dims().contains(&Dim::Unknown) {
        if let Some(out) = replace_with(g, id, x) {
            cx.count("reshape_noop", 1);
            return Ok(Some(out));
        }
    }
    if !is_reshape_like(producer(g, x)) {
        return Ok(None);
    }
    let x0 = g.node(x.node).inputs[0];
    if g.node(id).op == Op::Reshape {
        let mut new_inputs = ins.clone();
        new_inputs[0] = x0;
        if rewrite_in_place(g, id, Op::Reshape, &new_inputs) {
            cx.count("reshape_chain", 1);
            return Ok(Some(Outcome::Rewritten));
        }
        return Ok(None);
    }
    // A squeeze or expand_dims of a reshape: one reshape to the known output shape.
    let dims = out_ty.shape.dims();
    if dims.iter().filter(|d| d.known().is_none()).count() > 1 {
        return Ok(None);
    }
    let target: Vec<i64> = dims
        .iter()
        .map(|d| d.known().map_or(-1, |n| n as i64))
        .collect();
    let target_ty = index_tensor(DType::I64, &target);
    if !Op::Reshape
        .infer(
            &[g.value_type(x0).clone(), target_ty.ty()],
            &[None, Some(&target_ty)],
        )
        .is_ok_and(|t| t == [out_ty])
    {
        return Ok(None);
    }
    let shape = add_const(g, target_ty, id, "shape");
    if let Some(v) = replace_with_new(g, id, Op::Reshape, vec![x0, shape])? {
        cx.count("reshape_chain", 1);
        return Ok(Some(Outcome::Replaced(v)));
    }
    Ok(None)
}

/// `pad(x, 0)` → `x` in any mode: all-zero paddings change nothing.
pub(crate) fn pad(g: &mut Graph, id: NodeId, cx: &mut PassCx) -> RuleResult {
    let ins = inputs(g, id);
    let Some(pads) = const_ints(g, ins[1]) else {
        return Ok(None);
    };
    if pads.iter().all(|&p| p == 0) {
        if let Some(out) = replace_with(g, id, ins[0]) {
            cx.count("pad_zero", 1);
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// The values of `v`'s permutation when `v` is `transpose(x, p)` with a constant `p`:
/// `(x, p)`.
pub(crate) fn transpose_parts(g: &Graph, v: ValueId) -> Option<(ValueId, Vec<i64>)> {
    if producer(g, v) != &Op::Transpose {
        return None;
    }
    let [x, p] = g.node(v.node).inputs[..] else {
        return None;
    };
    Some((x, const_ints(g, p)?))
}
