//! `simplify`: local algebraic identities, each rewriting toward one canonical form.
//!
//! Nodes are visited once in topological order; at each node the rules of its op are tried
//! until none fires (a rule may rewrite the node in place and enable another). A rule either
//! rewrites the node in place (same op arity, same output types) or points the node's uses at
//! another value, leaving the node dead for `prune`. Every rule keeps the node's output type
//! exactly (dtype and every dim, symbols included): an identity such as `x + 0` whose constant
//! broadcasts `x` to a bigger shape does not fire. No rule adds work: a rewrite replaces a node
//! by at most one node of no greater cost, and new constants are no bigger than the ones they
//! replace (a shared constant is not duplicated unless it is small).
//!
//! The rules, by family (each states its direction where it is defined):
//! - [`arith`]: `x*1`, `x+0`, `x-0`, `x/1`, zero `bias_add` → `x`; `neg(neg(x))` → `x`;
//!   `x - c` → `x + (-c)`; `x - neg(y)` → `x + y`; `x + neg(y)` → `x - y`; `pow` by 1, 2, 0.5,
//!   -0.5, -1; constants second in commutative ops; `(x op c1) op c2` → `x op (c1 op c2)` for
//!   `add` and `mul`; casts to the same dtype.
//! - [`shape`]: transpose pairs, identity transposes, transposes that move only size-1 axes
//!   (→ reshapes); reshape chains and no-op reshape/squeeze/expand_dims; pads by zero.
//! - [`contract`]: transposes into `matmul`/`batch_matmul` flags; zero `pad` into the explicit
//!   padding of `conv2d`/`depthwise_conv2d`.
//!
//! Floating point: every rule is exact except the constant reassociation of `add`/`mul`
//! (which rounds `c1 op c2` once instead of rounding `x op c1`), `x + 0` and the operand swap
//! of `maximum`/`minimum`, which may change the sign of a zero result, and `pow(x, ±0.5)`,
//! where `sqrt`/`rsqrt` differ from `pow` on `-0` and `-inf` (as in TensorFlow's own rewrite).

pub(crate) mod arith;
pub(crate) mod contract;
pub(crate) mod shape;

use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::{DType, Elem, Graph, NodeId, Op, Tensor, TensorType, ValueId};
use std::collections::{HashSet, VecDeque};

/// The `simplify` pass.
pub struct Simplify;

/// The pass name, for errors.
const NAME: &str = "simplify";

/// How many rules may fire on one node in one run: rules only shrink or canonicalize, so a
/// node settles in a few steps; the bound guards against two rules undoing each other.
const MAX_REWRITES_PER_NODE: usize = 16;

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let order = g.topo_order().map_err(|e| PassError::ir(NAME, e))?;
        let mut queue: VecDeque<NodeId> = order.into();
        let mut visited: HashSet<NodeId> = HashSet::new();
        let mut changed = false;
        while let Some(id) = queue.pop_front() {
            if !g.contains(id) || !visited.insert(id) || is_dead(g, id) {
                continue;
            }
            for _ in 0..MAX_REWRITES_PER_NODE {
                match rewrite(g, id, cx)? {
                    None => break,
                    Some(Outcome::Rewritten) => changed = true,
                    Some(Outcome::Replaced(v)) => {
                        changed = true;
                        // A node made by the rule is visited next: its inputs were visited
                        // already, its users come later in the queue.
                        if !visited.contains(&v.node) {
                            queue.push_front(v.node);
                        }
                        break;
                    }
                }
            }
        }
        Ok(Changed::from_bool(changed))
    }
}

/// True when nothing uses node `id`: it is `prune`'s, and rewriting it would only make
/// more dead nodes (and report a change on every run).
fn is_dead(g: &Graph, id: NodeId) -> bool {
    g.successors(id).is_empty() && !g.outputs().iter().any(|o| o.value.node == id)
}

/// What a rule did to its node.
pub(crate) enum Outcome {
    /// The node was changed in place (same output types); other rules may now apply.
    Rewritten,
    /// Every use of the node's output now uses this value; the node is dead.
    Replaced(ValueId),
}

/// A rule's result: `None` when it does not apply.
pub(crate) type RuleResult = Result<Option<Outcome>, PassError>;

/// Tries the rules of `id`'s op, returning what the first one that fired did.
fn rewrite(g: &mut Graph, id: NodeId, cx: &mut PassCx) -> RuleResult {
    let node = g.node(id);
    if node.outputs.len() != 1 {
        return Ok(None);
    }
    match node.op.clone() {
        Op::Binary(b) => arith::binary(g, id, b, cx),
        Op::Unary(u) => arith::unary(g, id, u, cx),
        Op::Cast { to } => arith::cast(g, id, to, cx),
        Op::BiasAdd { .. } => arith::bias_add(g, id, cx),
        Op::Transpose => shape::transpose(g, id, cx),
        Op::Reshape | Op::Squeeze { .. } | Op::ExpandDims => shape::reshape_like(g, id, cx),
        Op::Pad { .. } => shape::pad(g, id, cx),
        Op::MatMul { .. } | Op::BatchMatMul { .. } => contract::matmul(g, id, cx),
        Op::Conv2D(_) | Op::DepthwiseConv2D(_) => contract::conv_pad(g, id, cx),
        _ => Ok(None),
    }
}

// ---- helpers the rule families (and `layout`) share -------------------------------------

/// The one value of a non-empty constant whose elements are all equal, as f64.
pub(crate) fn splat_value(g: &Graph, v: ValueId) -> Option<f64> {
    let t = g.const_value(v)?;
    if t.is_empty() || !t.is_splat() {
        return None;
    }
    lathe_ir::tensor_match!(t, a => a.iter().next().map(|&x| Elem::to_f64(x)))
}

/// The values of an integer constant.
pub(crate) fn const_ints(g: &Graph, v: ValueId) -> Option<Vec<i64>> {
    g.const_value(v)?.to_i64_vec().ok()
}

/// The input values of node `id`.
pub(crate) fn inputs(g: &Graph, id: NodeId) -> Vec<ValueId> {
    g.node(id).inputs.clone()
}

/// The op of the node producing `v`.
pub(crate) fn producer(g: &Graph, v: ValueId) -> &Op {
    &g.node(v.node).op
}

/// True when node `id` is the only consumer of `v` (in any number of its slots) and `v` is
/// not a graph output: rewriting `id` may then leave `v`'s node dead.
pub(crate) fn sole_user(g: &Graph, v: ValueId, id: NodeId) -> bool {
    let users = g.users(v);
    !users.is_empty()
        && users.iter().all(|&(u, _)| u == id)
        && !g.outputs().iter().any(|o| o.value == v)
}

/// True when `perm` is `0, 1, ..., n-1`.
pub(crate) fn is_identity_perm(perm: &[i64]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| p == i as i64)
}

/// The permutation of transposing by `inner` then by `outer`: `r[i] = inner[outer[i]]`.
/// `None` when the lengths differ or `outer` is not a permutation.
pub(crate) fn compose_perms(inner: &[i64], outer: &[i64]) -> Option<Vec<i64>> {
    if inner.len() != outer.len() {
        return None;
    }
    outer
        .iter()
        .map(|&o| usize::try_from(o).ok().and_then(|o| inner.get(o).copied()))
        .collect()
}

/// The types `op` infers for `inputs` (values of `g`) equal `want` exactly.
pub(crate) fn infers(g: &Graph, op: &Op, inputs: &[ValueId], want: &[TensorType]) -> bool {
    g.infer_types(op, inputs).is_ok_and(|t| t == want)
}

/// Makes node `id` apply `op` to `new_inputs` (as many as it has now), when that gives exactly
/// the output types it has now. Returns whether it did.
pub(crate) fn rewrite_in_place(g: &mut Graph, id: NodeId, op: Op, new_inputs: &[ValueId]) -> bool {
    let node = g.node(id);
    if node.inputs.len() != new_inputs.len() || !infers(g, &op, new_inputs, &node.outputs) {
        return false;
    }
    let (outputs, old) = (node.outputs.clone(), node.inputs.clone());
    g.set_op(id, op, outputs);
    for (slot, (&new, &was)) in new_inputs.iter().zip(&old).enumerate() {
        if new != was {
            g.set_input(id, slot, new);
        }
    }
    true
}

/// Adds a node computing `op` on `new_inputs` in place of node `id` and points `id`'s uses at
/// it, when it has exactly `id`'s output type. Returns the new value.
pub(crate) fn replace_with_new(
    g: &mut Graph,
    id: NodeId,
    op: Op,
    new_inputs: Vec<ValueId>,
) -> Result<Option<ValueId>, PassError> {
    if !infers(g, &op, &new_inputs, &g.node(id).outputs) {
        return Ok(None);
    }
    let name = g.node(id).name.clone();
    let v = g
        .add(op, new_inputs, name)
        .map_err(|e| PassError::ir(NAME, e))?;
    g.replace_all_uses(ValueId::first(id), v);
    Ok(Some(v))
}

/// Points the uses of node `id` at `v` when `v` has exactly `id`'s output type.
pub(crate) fn replace_with(g: &mut Graph, id: NodeId, v: ValueId) -> Option<Outcome> {
    if g.value_type(v) != &g.node(id).outputs[0] {
        return None;
    }
    g.replace_all_uses(ValueId::first(id), v);
    Some(Outcome::Replaced(v))
}

/// Adds a constant named after node `id`.
pub(crate) fn add_const(g: &mut Graph, t: Tensor, id: NodeId, suffix: &str) -> ValueId {
    let name = format!("{}/{suffix}", g.display_name(id));
    g.add_const(t, name)
}

/// A 1-D integer constant of dtype `dtype` (an index type) holding `vals`.
pub(crate) fn index_tensor(dtype: DType, vals: &[i64]) -> Tensor {
    Tensor::from_i64(dtype, &[vals.len()], vals)
}

#[cfg(test)]
mod tests;
