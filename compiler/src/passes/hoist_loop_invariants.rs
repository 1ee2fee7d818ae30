//! `hoist-loop-invariants`: loop-invariant code motion. A computation in a `while` body that
//! gives the same value in every iteration is computed once, before the loop, and enters the
//! loop as a new pass-through carried value.
//!
//! A body node is *invariant* when each of its inputs is a constant, a pass-through carried
//! value (body output k is body input k unchanged, so it holds the loop's init k in every
//! iteration), or an invariant node's result, and its op cannot fail at run time on values of
//! its types (see [`speculatable`]): a hoisted node runs even when the loop runs zero times,
//! so an op that could fail (integer division, an index read at run time, a nested loop that
//! might not stop) stays where it was. The invariant results that non-invariant nodes or the
//! body's outputs use are the candidates; each is hoisted, with the invariant nodes it is
//! computed from, when that work is worth a carried value: it holds an op that computes more
//! than a scalar and is not a view (a transpose, cast or matmul of weights, ...). Constants
//! stay in the body (a constant there is a shared `Arc`, not a copy, and `fold-constants`
//! folds what depends only on them); so does scalar arithmetic on the loop bound, which is
//! cheaper to recompute than to carry.
//!
//! The rewrite: the hoisted nodes are copied before the loop (constants they read are shared
//! with the body, inputs become the loop's inits); the `while` gains one init per hoisted
//! result, the cond and the body one input each, the body one output each (the input, passed
//! through), and the loop one result that nothing uses. In the body the hoisted results are
//! replaced by the new inputs and the nodes that computed them are removed.
//!
//! Canonicalizes toward invariant computations outside loops. The result computes what the
//! input computed, exactly: each hoisted node computes the same op on the same values, once
//! instead of once per iteration. Loops nested in a body are hoisted from first (the pass
//! manager runs this pass inside regions, innermost first), so an invariant of both loops
//! moves out of both. Hoisting from `if` branches and from `cond` is not done.

use super::regions::{fresh_input_name, pass_through};
use super::{prune, Changed, Pass, PassCx, PassError};
use lathe_ir::ops::BinaryOp;
use lathe_ir::{Graph, Node, NodeId, Op, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

/// The `hoist-loop-invariants` pass.
pub struct HoistLoopInvariants;

const NAME: &str = "hoist-loop-invariants";

impl Pass for HoistLoopInvariants {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let order = g.topo_order().map_err(|e| PassError::ir(NAME, e))?;
        let mut loops = 0;
        for id in order {
            if !matches!(g.node(id).op, Op::While { .. }) {
                continue;
            }
            let hoisted = hoist(g, id).map_err(|message| PassError {
                pass: NAME,
                message: format!("node `{}` (while): {message}", g.display_name(id)),
            })?;
            if hoisted > 0 {
                loops += 1;
                cx.count("nodes_hoisted", hoisted);
            }
        }
        cx.count("loops_changed", loops);
        Ok(Changed::from_bool(loops > 0))
    }
}

/// Hoists the invariants worth hoisting out of the `while` node `id`; returns how many nodes
/// moved out.
fn hoist(g: &mut Graph, id: NodeId) -> Result<usize, String> {
    let node = g.node(id).clone();
    let Op::While { cond, body } = &node.op else {
        unreachable!("called on while nodes")
    };
    let through = pass_through(body);
    let order = body.topo_order().map_err(|e| e.to_string())?;
    let mut invariant = vec![false; body.node_bound()];
    for &b in &order {
        let n = body.node(b);
        invariant[b.index()] = match &n.op {
            Op::Input { index } => through[*index],
            Op::Const(_) => true,
            _ => {
                !n.outputs.is_empty()
                    && n.inputs.iter().all(|v| invariant[v.node.index()])
                    && speculatable(body, n)
            }
        };
    }
    let computes = |b: NodeId| {
        invariant[b.index()] && !matches!(body.node(b).op, Op::Input { .. } | Op::Const(_))
    };
    // Invariant results that the rest of the body, or its outputs, use.
    let mut roots: Vec<ValueId> = Vec::new();
    for &b in order.iter().filter(|&&b| computes(b)) {
        for k in 0..body.node(b).outputs.len() {
            let v = ValueId {
                node: b,
                output: k as u32,
            };
            let used_by_variant = body.users(v).iter().any(|&(u, _)| !invariant[u.index()]);
            let returned = body.outputs().iter().any(|o| o.value == v);
            if (used_by_variant || returned) && worth_hoisting(body, b, &computes) {
                roots.push(v);
            }
        }
    }
    if roots.is_empty() {
        return Ok(0);
    }
    // The body nodes the roots are computed from, copied before the loop in order.
    let mut needed = vec![false; body.node_bound()];
    for r in &roots {
        needed[r.node.index()] = true;
    }
    for &b in order.iter().rev() {
        if needed[b.index()] {
            for v in &body.node(b).inputs {
                needed[v.node.index()] = true;
            }
        }
    }
    let mut outside: HashMap<NodeId, NodeId> = HashMap::new();
    let mut moved = 0;
    for &b in order.iter().filter(|&&b| needed[b.index()]) {
        let n = body.node(b);
        let copy = match &n.op {
            Op::Input { index } => node.inputs[*index].node,
            Op::Const(_) => g
                .add_node_typed(n.op.clone(), vec![], n.outputs.clone(), n.name.clone())
                .map_err(|e| e.to_string())?,
            _ => {
                moved += 1;
                let inputs = n
                    .inputs
                    .iter()
                    .map(|&v| out_value(&outside, &node, body, v));
                g.add_node(n.op.clone(), inputs.collect(), n.name.clone())
                    .map_err(|e| e.to_string())?
            }
        };
        outside.insert(b, copy);
    }
    let hoisted: Vec<ValueId> = roots
        .iter()
        .map(|&r| out_value(&outside, &node, body, r))
        .collect();
    // The regions, each with one more input per hoisted value.
    let mut new_body = Graph::clone(body);
    let mut new_cond = Graph::clone(cond);
    for (&r, &h) in roots.iter().zip(&hoisted) {
        let ty = g.value_type(h).clone();
        let name = fresh_input_name(&new_body, &body.display_name(r.node));
        let input = new_body.add_input(name.clone(), ty.clone());
        new_body.replace_all_uses(r, input);
        new_body
            .add_output(name.clone(), input)
            .map_err(|e| e.to_string())?;
        let cond_name = fresh_input_name(&new_cond, &name);
        new_cond.add_input(cond_name, ty);
    }
    let body_order = new_body.topo_order().map_err(|e| e.to_string())?;
    prune::remove_dead(&mut new_body, &body_order).map_err(|e| e.to_string())?;
    let mut inits = node.inputs.clone();
    inits.extend(&hoisted);
    let op = Op::While {
        cond: Arc::new(new_cond),
        body: Arc::new(new_body),
    };
    let new = g
        .add_node(op, inits, node.name.clone())
        .map_err(|e| e.to_string())?;
    super::regions::replace_node(g, id, new, |_| true).map_err(|e| e.to_string())?;
    Ok(moved)
}

/// The value outside the loop that holds the invariant body value `v` (already copied out,
/// or a pass-through input: the loop's init).
fn out_value(outside: &HashMap<NodeId, NodeId>, node: &Node, body: &Graph, v: ValueId) -> ValueId {
    match body.node(v.node).op {
        Op::Input { index } => node.inputs[index],
        _ => ValueId {
            node: outside[&v.node],
            output: v.output,
        },
    }
}

/// Whether the invariant computation ending at `root` is worth a carried value: one of its
/// nodes is neither a view (reshape, squeeze, expand_dims, identity, shape) nor a computation
/// of scalars only.
fn worth_hoisting(body: &Graph, root: NodeId, computes: &impl Fn(NodeId) -> bool) -> bool {
    let mut stack = vec![root];
    let mut seen = vec![false; body.node_bound()];
    while let Some(b) = stack.pop() {
        if !computes(b) || std::mem::replace(&mut seen[b.index()], true) {
            continue;
        }
        let n = body.node(b);
        let view = matches!(
            n.op,
            Op::Reshape
                | Op::Squeeze { .. }
                | Op::ExpandDims
                | Op::Identity
                | Op::IdentityN
                | Op::StopGradient
                | Op::Shape { .. }
        );
        let scalars = n
            .outputs
            .iter()
            .all(|t| t.shape.num_elements().is_some_and(|e| e <= 1));
        if !view && !scalars {
            return true;
        }
        stack.extend(n.inputs.iter().map(|v| v.node));
    }
    false
}

/// Whether `n` may run before the loop, even when the loop runs zero times: its op cannot fail
/// at run time on values of its (verified) types. Its inputs and outputs have fully known
/// shapes (so no shape can disagree at run time); ops that read configuration (axes, shapes,
/// permutations, indices) need it constant, where `infer` has checked it; integer division
/// and powers can fail on their values; lists, `if` and `while` stay.
fn speculatable(g: &Graph, n: &Node) -> bool {
    let constant = |v: &ValueId| g.const_value(*v).is_some();
    let configured_by = |from: usize| n.inputs.iter().skip(from).all(constant);
    let known = n.outputs.iter().all(|t| t.shape.is_known())
        && n.inputs.iter().all(|&v| g.value_type(v).shape.is_known());
    if !known {
        return false;
    }
    match &n.op {
        Op::Binary(BinaryOp::Div | BinaryOp::FloorDiv | BinaryOp::FloorMod | BinaryOp::Pow) => {
            n.outputs.iter().all(|t| t.dtype.is_float())
        }
        Op::If { .. }
        | Op::While { .. }
        | Op::ListReserve { .. }
        | Op::SetItem
        | Op::NoOp
        | Op::Input { .. }
        | Op::Fill
        | Op::Range => false,
        Op::Concat => n.inputs.last().is_some_and(constant),
        Op::Pack { .. } | Op::Unpack { .. } | Op::Squeeze { .. } | Op::Shape { .. } => true,
        Op::Pad { .. } => n.inputs.get(1).is_some_and(constant),
        op if matches!(
            op.family(),
            lathe_ir::ops::Family::Shape | lathe_ir::ops::Family::Reduce
        ) =>
        {
            configured_by(1)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::PassOptions;
    use lathe_ir::{text, Tensor};

    fn run(src: &str) -> (Graph, Graph, usize) {
        let before = text::parse(src).unwrap();
        lathe_ir::verify(&before).unwrap();
        let mut g = before.clone();
        let mut cx = PassCx::new(PassOptions::default());
        super::super::regions::run_everywhere(&HoistLoopInvariants, &mut g, &mut cx).unwrap();
        lathe_ir::verify(&g).unwrap();
        let n = cx
            .take_counters()
            .get("nodes_hoisted")
            .copied()
            .unwrap_or(0);
        (before, g, n)
    }

    fn same_results(a: &Graph, b: &Graph, inputs: &[Tensor]) {
        let (x, y) = (
            lathe_ir::interp::run(a, inputs).unwrap(),
            lathe_ir::interp::run(b, inputs).unwrap(),
        );
        assert_eq!(x, y);
    }

    /// `h = tanh(h @ transpose(w) + i)` three times; `w` is carried through unchanged.
    const RNN: &str = r#"graph @t(%h: f32[1,2], %w: f32[2,2]) -> ("h": f32[1,2]) {
      %0 = const dense<0> : i32[]
      %1 = const dense<3> : i32[]
      %2:4 = while(%0, %1, %h, %w) {cond = graph @cond(%i: i32[], %n: i32[], %h: f32[1,2], %w: f32[2,2]) -> ("c": bool[]) {
          %0 = less(%i, %n) : bool[]
          return %0
        }, body = graph @body(%i: i32[], %n: i32[], %h: f32[1,2], %w: f32[2,2]) -> ("i": i32[], "n": i32[], "h": f32[1,2], "w": f32[2,2]) {
          %0 = const dense<[1, 0]> : i32[2]
          %1 = transpose(%w, %0) : f32[2,2] loc("wt")
          %2 = matmul(%h, %1) {transpose_a = false, transpose_b = false} : f32[1,2] loc("mm")
          %3 = cast(%i) {to = f32} : f32[] loc("t")
          %4 = add(%2, %3) : f32[1,2]
          %5 = tanh(%4) : f32[1,2]
          %6 = const dense<1> : i32[]
          %7 = add(%i, %6) : i32[]
          %8 = sub(%n, %6) : i32[] loc("scalar")
          %9 = add(%7, %8) : i32[]
          %10 = sub(%9, %8) : i32[]
          return %10, %n, %5, %w
        }} : i32[], i32[], f32[1,2], f32[2,2]
      return %2#2
    }"#;

    #[test]
    fn hoists_a_transpose_of_a_carried_weight_but_not_what_the_counter_feeds() {
        let (before, g, n) = run(RNN);
        assert_eq!(n, 1, "{}", text::print(&g));
        let printed = text::print(&g);
        // The transpose runs before the loop, on the loop's init.
        assert!(
            printed.contains("%3 = transpose(%w, %2) : f32[2,2] loc(\"wt\")"),
            "{printed}"
        );
        assert!(
            printed.contains("while(%0, %1, %h, %w, %3)"),
            "the transpose enters as a fifth carried value: {printed}"
        );
        assert!(
            printed.contains("%wt: f32[2,2]) -> (\"c\": bool[])"),
            "{printed}"
        );
        assert!(printed.contains("matmul(%h, %wt)"), "{printed}");
        assert!(printed.contains("\"wt\": f32[2,2]"), "{printed}");
        // The cast of the counter and the scalar arithmetic on the bound stay inside.
        assert!(printed.contains("cast(%i)"), "{printed}");
        assert!(printed.contains("sub(%n, %"), "{printed}");
        assert_eq!(printed.matches("transpose(").count(), 1, "{printed}");
        let inputs = [
            Tensor::from_vec(&[1, 2], vec![0.5f32, -1.0]),
            Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, -0.5, 0.25]),
        ];
        same_results(&before, &g, &inputs);
        // Nothing is left to hoist.
        let again = text::print(&g);
        let (_, g2, n) = run(&again);
        assert_eq!((n, text::print(&g2)), (0, again));
    }

    #[test]
    fn does_not_hoist_ops_that_may_fail_or_views_alone() {
        // Invariant, but an integer division (`e // d` fails on a zero), views of `d`, and a
        // matmul whose operand has an unknown dim (its shapes could disagree at run time).
        let src = r#"graph @t(%x: i32[4], %d: i32[4], %e: i32[4], %w: f32[?,2]) -> ("x": i32[4], "y": f32[2,2]) {
          %0 = const dense<0> : i32[]
          %1 = const dense<splat 0.0> : f32[2,2]
          %2:6 = while(%0, %x, %d, %e, %w, %1) {cond = graph @cond(%i: i32[], %x: i32[4], %d: i32[4], %e: i32[4], %w: f32[?,2], %y: f32[2,2]) -> ("c": bool[]) {
              %0 = const dense<2> : i32[]
              %1 = less(%i, %0) : bool[]
              return %1
            }, body = graph @body(%i: i32[], %x: i32[4], %d: i32[4], %e: i32[4], %w: f32[?,2], %y: f32[2,2]) -> ("i": i32[], "x": i32[4], "d": i32[4], "e": i32[4], "w": f32[?,2], "y": f32[2,2]) {
              %0 = const dense<1> : i32[]
              %1 = add(%i, %0) : i32[]
              %2 = floor_div(%e, %d) : i32[4]
              %3 = const dense<[2, 2]> : i32[2]
              %4 = reshape(%d, %3) : i32[2,2]
              %5 = const dense<[4]> : i32[1]
              %6 = reshape(%4, %5) : i32[4]
              %7 = add(%2, %6) : i32[4]
              %8 = add(%x, %7) : i32[4]
              %9 = matmul(%w, %w) {transpose_a = true, transpose_b = false} : f32[2,2]
              %10 = add(%y, %9) : f32[2,2]
              return %1, %8, %d, %e, %w, %10
            }} : i32[], i32[4], i32[4], i32[4], f32[?,2], f32[2,2]
          return %2#1, %2#5
        }"#;
        let (_, g, n) = run(src);
        assert_eq!(n, 0, "{}", text::print(&g));
        assert_eq!(g, text::parse(src).unwrap());
        // With the same division on floats, `e / d` is hoisted (and the views after it); the
        // matmul on an unknown dim stays.
        let floats = src
            .replace("i32[4]", "f32[4]")
            .replace(": i32[2,2]", ": f32[2,2]")
            .replace("floor_div", "div");
        let (_, g, n) = run(&floats);
        let printed = text::print(&g);
        assert_eq!(n, 4, "{printed}");
        let body_at = printed.find("body = graph").unwrap();
        assert!(printed.find("div(%e, %d)").unwrap() < body_at, "{printed}");
        assert!(
            printed.find("matmul(%w, %w)").unwrap() > body_at,
            "{printed}"
        );
    }

    #[test]
    fn hoists_out_of_nested_loops() {
        // An outer loop whose body runs an inner loop; the inner body multiplies by exp(w),
        // with `w` passed through both loops.
        let src = r#"graph @t(%x: f32[2], %w: f32[2]) -> ("x": f32[2]) {
          %0 = const dense<0> : i32[]
          %1:3 = while(%0, %x, %w) {cond = graph @c(%i: i32[], %x: f32[2], %w: f32[2]) -> ("c": bool[]) {
              %0 = const dense<2> : i32[]
              %1 = less(%i, %0) : bool[]
              return %1
            }, body = graph @b(%i: i32[], %x: f32[2], %w: f32[2]) -> ("i": i32[], "x": f32[2], "w": f32[2]) {
              %0 = const dense<1> : i32[]
              %1 = add(%i, %0) : i32[]
              %2 = const dense<0> : i32[]
              %3:3 = while(%2, %x, %w) {cond = graph @ic(%j: i32[], %y: f32[2], %v: f32[2]) -> ("c": bool[]) {
                  %0 = const dense<3> : i32[]
                  %1 = less(%j, %0) : bool[]
                  return %1
                }, body = graph @ib(%j: i32[], %y: f32[2], %v: f32[2]) -> ("j": i32[], "y": f32[2], "v": f32[2]) {
                  %0 = const dense<1> : i32[]
                  %1 = add(%j, %0) : i32[]
                  %2 = exp(%v) : f32[2] loc("e")
                  %3 = mul(%y, %2) : f32[2]
                  return %1, %3, %v
                }} : i32[], f32[2], f32[2]
              return %1, %3#1, %w
            }} : i32[], f32[2], f32[2]
          return %1#1
        }"#;
        let (before, g, n) = run(src);
        assert_eq!(n, 2, "once out of each loop: {}", text::print(&g));
        let printed = text::print(&g);
        assert!(
            printed.starts_with("graph @t(%x: f32[2], %w: f32[2])"),
            "{printed}"
        );
        let first_exp = printed.find("exp(%w)").expect("exp before the outer loop");
        assert!(first_exp < printed.find("while(").unwrap(), "{printed}");
        assert_eq!(printed.matches("exp(").count(), 1, "{printed}");
        let inputs = [
            Tensor::from_vec(&[2], vec![0.5f32, -1.0]),
            Tensor::from_vec(&[2], vec![0.1f32, -0.2]),
        ];
        same_results(&before, &g, &inputs);
    }
}
