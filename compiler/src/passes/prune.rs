//! `prune`: bypasses identity-like nodes and removes dead ones.
//!
//! 1. Every use of output k of an `identity`, `identity_n` or `stop_gradient` is pointed at its
//!    input k (graph outputs too: an output keeps its name, only its value changes).
//! 2. Loop-carried values of `while` nodes: a use of a result that the body passes through
//!    unchanged (body output k is body input k) is pointed at the loop's init k, and a carried
//!    value nothing needs is removed from the loop (its init, its result, the cond's and the
//!    body's input and the body's output). A carried value is needed when its result is used
//!    after the loop, when the cond reads it, or when the body computes a needed value from it.
//!    An `if` drops the results nothing uses and the arguments neither branch reads.
//! 3. Every node that no graph output depends on is removed, `noop`s included. Graph inputs
//!    are never removed, used or not: they are the signature (of a region too).
//!
//! Canonical form: no identity-like node, no dead node and no unneeded loop-carried value
//! remains. Regions are pruned by the pass manager, which runs this pass inside them.

use super::regions::{inputs_reaching, pass_through, restrict};
use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::{Graph, NodeId, Op, ValueId};

/// The `prune` pass.
pub struct Prune;

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let order = g.topo_order().map_err(|e| PassError::ir(self.name(), e))?;
        let bypassed = bypass_identities(g, &order);
        let mut carried = 0;
        for &id in &order {
            let pruned = match &g.node(id).op {
                Op::While { .. } => prune_loop(g, id),
                Op::If { .. } => prune_branches(g, id),
                _ => continue,
            };
            carried += pruned.map_err(|message| PassError {
                pass: self.name(),
                message: format!(
                    "node `{}` ({}): {message}",
                    g.display_name(id),
                    g.node(id).op.mnemonic()
                ),
            })?;
        }
        // Pruning a loop replaces its node: the order is stale.
        let order = if carried > 0 {
            g.topo_order().map_err(|e| PassError::ir(self.name(), e))?
        } else {
            order
        };
        let removed = remove_dead(g, &order).map_err(|e| PassError::ir(self.name(), e))?;
        cx.count("identities_bypassed", bypassed);
        cx.count("region_values_pruned", carried);
        cx.count("nodes_removed", removed);
        Ok(Changed::from_bool(bypassed + carried + removed > 0))
    }
}

/// Points the uses of every identity-like node's outputs at its inputs. In topological order,
/// so a chain of identities collapses onto its first input. Returns how many nodes had uses
/// redirected.
fn bypass_identities(g: &mut Graph, order: &[NodeId]) -> usize {
    let mut bypassed = 0;
    for &id in order {
        let node = g.node(id);
        if !matches!(node.op, Op::Identity | Op::IdentityN | Op::StopGradient) {
            continue;
        }
        let inputs = node.inputs.clone();
        let mut any = false;
        for (k, input) in inputs.into_iter().enumerate() {
            let out = ValueId {
                node: id,
                output: k as u32,
            };
            let used = !g.users(out).is_empty() || g.outputs().iter().any(|o| o.value == out);
            if used {
                g.replace_all_uses(out, input);
                any = true;
            }
        }
        bypassed += usize::from(any);
    }
    bypassed
}

/// True when `v` is used by a node or is a graph output.
fn is_used(g: &Graph, v: ValueId) -> bool {
    !g.users(v).is_empty() || g.outputs().iter().any(|o| o.value == v)
}

/// Points uses of the pass-through results of the `while` node `id` at its inits, and drops
/// the carried values nothing needs. Returns how many rewrites that made (forwarded uses and
/// dropped values).
fn prune_loop(g: &mut Graph, id: NodeId) -> Result<usize, String> {
    let node = g.node(id).clone();
    let Op::While { cond, body } = &node.op else {
        unreachable!("called on while nodes")
    };
    let n = node.inputs.len();
    let result = |k: usize| ValueId {
        node: id,
        output: k as u32,
    };
    if !(0..n).any(|k| is_used(g, result(k))) {
        return Ok(0); // The whole loop is dead: `remove_dead` takes it.
    }
    let mut rewrites = 0;
    for (k, through) in pass_through(body).into_iter().enumerate() {
        let (out, init) = (result(k), node.inputs[k]);
        // The same type, so that no user's inferred type changes.
        if through && g.value_type(init) == g.value_type(out) && is_used(g, out) {
            g.replace_all_uses(out, init);
            rewrites += 1;
        }
    }
    let mut needed: Vec<bool> = (0..n).map(|k| is_used(g, result(k))).collect();
    for (k, reads) in inputs_reaching(cond, &[true]).into_iter().enumerate() {
        needed[k] |= reads;
    }
    // What each body output is computed from, then the closure of `needed` under it.
    let reads: Vec<Vec<bool>> = (0..n)
        .map(|k| {
            let mut only = vec![false; n];
            only[k] = true;
            inputs_reaching(body, &only)
        })
        .collect();
    let mut grew = true;
    while grew {
        grew = false;
        for k in 0..n {
            if !needed[k] {
                continue;
            }
            for j in 0..n {
                if reads[k][j] && !needed[j] {
                    needed[j] = true;
                    grew = true;
                }
            }
        }
    }
    let dropped = needed.iter().filter(|&&k| !k).count();
    if dropped == 0 {
        return Ok(rewrites);
    }
    let cond = restrict(cond, &needed, &[true]).map_err(|e| format!("cond: {e}"))?;
    let body = restrict(body, &needed, &needed).map_err(|e| format!("body: {e}"))?;
    let inits: Vec<ValueId> = node
        .inputs
        .iter()
        .zip(&needed)
        .filter(|(_, &k)| k)
        .map(|(&v, _)| v)
        .collect();
    let op = Op::While {
        cond: std::sync::Arc::new(cond),
        body: std::sync::Arc::new(body),
    };
    let new = g
        .add_node(op, inits, node.name.clone())
        .map_err(|e| e.to_string())?;
    super::regions::replace_node(g, id, new, |k| needed[k]).map_err(|e| e.to_string())?;
    Ok(rewrites + dropped)
}

/// Drops the results of the `if` node `id` nothing uses and the arguments neither branch
/// then reads. Returns how many results and arguments it dropped.
fn prune_branches(g: &mut Graph, id: NodeId) -> Result<usize, String> {
    let node = g.node(id).clone();
    let Op::If {
        then_branch,
        else_branch,
    } = &node.op
    else {
        unreachable!("called on if nodes")
    };
    let result = |k: usize| ValueId {
        node: id,
        output: k as u32,
    };
    let used: Vec<bool> = (0..node.outputs.len())
        .map(|k| is_used(g, result(k)))
        .collect();
    if !used.iter().any(|&u| u) {
        return Ok(0); // The whole `if` is dead: `remove_dead` takes it.
    }
    let read: Vec<bool> = inputs_reaching(then_branch, &used)
        .into_iter()
        .zip(inputs_reaching(else_branch, &used))
        .map(|(a, b)| a || b)
        .collect();
    let dropped = read.iter().chain(&used).filter(|&&r| !r).count();
    if dropped == 0 {
        return Ok(0);
    }
    let op = Op::If {
        then_branch: std::sync::Arc::new(
            restrict(then_branch, &read, &used).map_err(|e| format!("then_branch: {e}"))?,
        ),
        else_branch: std::sync::Arc::new(
            restrict(else_branch, &read, &used).map_err(|e| format!("else_branch: {e}"))?,
        ),
    };
    let mut inputs = vec![node.inputs[0]];
    inputs.extend(
        node.inputs[1..]
            .iter()
            .zip(&read)
            .filter(|(_, &r)| r)
            .map(|(&v, _)| v),
    );
    let new = g
        .add_node(op, inputs, node.name.clone())
        .map_err(|e| e.to_string())?;
    super::regions::replace_node(g, id, new, |k| used[k]).map_err(|e| e.to_string())?;
    Ok(dropped)
}

/// Removes every node no graph output depends on, except graph inputs. Returns how many.
pub(crate) fn remove_dead(g: &mut Graph, order: &[NodeId]) -> lathe_ir::Result<usize> {
    let mut live = vec![false; g.node_bound()];
    for o in g.outputs() {
        live[o.value.node.index()] = true;
    }
    for i in g.inputs() {
        live[i.node.index()] = true;
    }
    for &id in order.iter().rev() {
        if live[id.index()] {
            for v in &g.node(id).inputs {
                live[v.node.index()] = true;
            }
        }
    }
    // Users come after their producers in `order`, and every user of a dead node is dead, so
    // removing in reverse order only ever removes unused nodes.
    let mut removed = 0;
    for &id in order.iter().rev() {
        if !live[id.index()] {
            g.remove_node(id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::UnaryOp;
    use lathe_ir::{DType, Tensor, TensorType};

    fn run(g: &mut Graph) -> (Changed, usize) {
        let mut cx = PassCx::default();
        let changed = Prune.run(g, &mut cx).unwrap();
        lathe_ir::verify(g).unwrap();
        let n = cx
            .take_counters()
            .get("nodes_removed")
            .copied()
            .unwrap_or(0);
        (changed, n)
    }

    fn f32_ty(dims: &[usize]) -> TensorType {
        TensorType::known(DType::F32, dims)
    }

    #[test]
    fn bypasses_identities_and_keeps_output_names() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", f32_ty(&[2]));
        let a = g.add(Op::Identity, vec![x], "a").unwrap();
        let b = g.add(Op::StopGradient, vec![a], "b").unwrap();
        let r = g.add(Op::Unary(UnaryOp::Relu), vec![b], "r").unwrap();
        let c = g.add(Op::Identity, vec![r], "Identity").unwrap();
        g.add_output("Identity:0", c).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 3));
        assert_eq!(g.len(), 2);
        assert_eq!(g.outputs()[0].name, "Identity:0");
        assert_eq!(g.outputs()[0].value, r);
        assert_eq!(g.node(r.node).inputs, vec![x]);
        assert_eq!(run(&mut g), (Changed::No, 0));
    }

    #[test]
    fn bypasses_each_output_of_identity_n() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", f32_ty(&[2]));
        let y = g.add_input("y", f32_ty(&[3]));
        let n = g.add_node(Op::IdentityN, vec![x, y], "n").unwrap();
        let second = ValueId { node: n, output: 1 };
        let r = g.add(Op::Unary(UnaryOp::Neg), vec![second], "r").unwrap();
        g.add_output("first", ValueId::first(n)).unwrap();
        g.add_output("second", r).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 1));
        assert_eq!(g.outputs()[0].value, x);
        assert_eq!(g.node(r.node).inputs, vec![y]);
    }

    #[test]
    fn removes_dead_nodes_and_noops_but_not_inputs() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", f32_ty(&[2]));
        let unused = g.add_input("unused", f32_ty(&[2]));
        let w = g.add_const(Tensor::zeros(DType::F32, &[2]), "w");
        let dead = g.add(Op::Unary(UnaryOp::Neg), vec![w], "dead").unwrap();
        g.add(Op::Unary(UnaryOp::Exp), vec![dead], "dead2").unwrap();
        g.add_node(Op::NoOp, vec![], "NoOp").unwrap();
        let r = g.add(Op::Unary(UnaryOp::Relu), vec![x], "r").unwrap();
        g.add_output("y", r).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 4));
        assert_eq!(g.len(), 3);
        assert!(g.contains(unused.node) && g.contains(x.node) && g.contains(r.node));
    }

    #[test]
    fn keeps_what_outputs_use() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", f32_ty(&[2]));
        let a = g.add(Op::Unary(UnaryOp::Neg), vec![x], "a").unwrap();
        let b = g.add(Op::Unary(UnaryOp::Exp), vec![a], "b").unwrap();
        g.add_output("a", a).unwrap();
        g.add_output("b", b).unwrap();
        assert_eq!(run(&mut g), (Changed::No, 0));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn an_output_may_become_an_input() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", f32_ty(&[2]));
        let a = g.add(Op::Identity, vec![x], "a").unwrap();
        g.add_output("y", a).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 1));
        assert_eq!(g.outputs()[0].value, x);
        assert_eq!(g.outputs()[0].name, "y");
        let t = Tensor::from_vec(&[2], vec![1.0f32, 2.0]);
        assert_eq!(
            lathe_ir::interp::run(&g, std::slice::from_ref(&t)).unwrap(),
            vec![t]
        );
    }

    /// `while i < 2: i += 1; x = x * s; k = k + 1` with `x` and `k` after it, and `s` a
    /// pass-through only the body reads.
    const LOOP: &str = r#"graph @t(%x: f32[2], %s: f32[2], %k: f32[2]) -> ("x": f32[2], "s": f32[2], "k": f32[2]) {
      %0 = const dense<0> : i32[]
      %1:4 = while(%0, %x, %s, %k) {cond = graph @c(%i: i32[], %x: f32[2], %s: f32[2], %k: f32[2]) -> ("c": bool[]) {
          %0 = const dense<2> : i32[]
          %1 = less(%i, %0) : bool[]
          return %1
        }, body = graph @b(%i: i32[], %x: f32[2], %s: f32[2], %k: f32[2]) -> ("i": i32[], "x": f32[2], "s": f32[2], "k": f32[2]) {
          %0 = const dense<1> : i32[]
          %1 = add(%i, %0) : i32[]
          %2 = mul(%x, %s) : f32[2]
          %3 = const dense<1.0> : f32[]
          %4 = add(%k, %3) : f32[2] loc("k_next")
          return %1, %2, %s, %4
        }} : i32[], f32[2], f32[2], f32[2]
      return %1#1, %1#2, %1#3
    }"#;

    fn counter(cx: &mut PassCx, name: &str) -> usize {
        cx.take_counters().get(name).copied().unwrap_or(0)
    }

    #[test]
    fn loop_values_only_their_own_next_values_need_leave_the_loop() {
        let mut g = lathe_ir::text::parse(LOOP).unwrap();
        let mut cx = PassCx::default();
        // Every result is used: only the pass-through result is forwarded to its init.
        assert_eq!(Prune.run(&mut g, &mut cx).unwrap(), Changed::Yes);
        lathe_ir::verify(&g).unwrap();
        assert_eq!(g.outputs()[1].value, ValueId::first(g.inputs()[1].node));
        assert_eq!(counter(&mut cx, "region_values_pruned"), 1);
        // Once `k` is not returned, nothing needs it: it leaves the loop, its update too.
        let mut g = lathe_ir::text::parse(
            &LOOP.replace("return %1#1, %1#2, %1#3", "return %1#1, %1#2, %1#1"),
        )
        .unwrap();
        assert_eq!(Prune.run(&mut g, &mut cx).unwrap(), Changed::Yes);
        lathe_ir::verify(&g).unwrap();
        let printed = lathe_ir::text::print(&g);
        assert!(printed.contains("%1:3 = while(%0, %x, %s)"), "{printed}");
        assert!(!printed.contains("k_next"), "{printed}");
        assert_eq!(
            counter(&mut cx, "region_values_pruned"),
            2,
            "one forwarded, one dropped"
        );
        assert_eq!(Prune.run(&mut g, &mut cx).unwrap(), Changed::No);
        // A loop none of whose results is used goes as a whole.
        let mut g =
            lathe_ir::text::parse(&LOOP.replace("return %1#1, %1#2, %1#3", "return %x, %s, %k"))
                .unwrap();
        assert_eq!(Prune.run(&mut g, &mut cx).unwrap(), Changed::Yes);
        assert_eq!(g.len(), 3, "{}", lathe_ir::text::print(&g));
    }
}
