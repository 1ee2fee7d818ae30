//! `fold-constants`: evaluates nodes whose inputs are all constants with the reference
//! interpreter ([`Op::eval`]) and replaces them with constants, one per output, named after the
//! node (`name` for output 0, `name:k` for output k, as TensorFlow names tensors).
//!
//! Also folds `shape` of any value whose static shape is fully known, so TensorFlow's
//! `Shape → StridedSlice → Pack → Reshape` chains become constant once shapes are known.
//!
//! Canonicalizes toward constants, within a size bound: a fold never creates a constant of more
//! than `fold_max_elements` elements, nor one much larger than the constants it is computed
//! from (see [`too_big`]). An op that fails to evaluate is left alone: the graph then fails at
//! run time exactly as it would have without folding, which is the honest result. Nodes are
//! visited in topological order, so a chain of constant computations folds in one run. The
//! folded node is removed; the constants it read are left for `prune`.
//!
//! `if` and `while` nodes are never evaluated here (a loop may not stop); the pass manager
//! folds inside their regions. An `if` whose condition is constant becomes the nodes of the
//! branch it chooses. Constants enter regions instead: a region input that receives a
//! constant (an `if` argument, or a `while` carried value the body passes through unchanged,
//! like a weight a TensorFlow loop carries) is replaced inside the region by the constant, so
//! what the region computes from it folds; `prune` then drops the unread input.

use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::{DType, Graph, NodeId, Op, Tensor, TensorType, ValueId};
use std::sync::Arc;

/// The `fold-constants` pass.
pub struct FoldConstants;

/// A fold may create up to this many elements regardless of how few its inputs have.
const SMALL_OUTPUT: usize = 4096;
/// Above [`SMALL_OUTPUT`], a fold may create at most this many times the elements it reads.
const MAX_GROWTH: usize = 4;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let order = g.topo_order().map_err(|e| PassError::ir(self.name(), e))?;
        let mut folded = 0;
        let mut entered = 0;
        let mut inlined = 0;
        for id in order {
            if matches!(g.node(id).op, Op::If { .. }) && inline_chosen_branch(g, id) {
                inlined += 1;
                continue;
            }
            if matches!(g.node(id).op, Op::If { .. } | Op::While { .. }) {
                entered += constants_into_regions(g, id);
                continue;
            }
            let Some(tensors) = fold_node(g, id, cx.options.fold_max_elements) else {
                continue;
            };
            if replace_with_consts(g, id, tensors) {
                folded += 1;
            }
        }
        cx.count("nodes_folded", folded);
        cx.count("constants_into_regions", entered);
        cx.count("branches_inlined", inlined);
        Ok(Changed::from_bool(folded + entered + inlined > 0))
    }
}

/// Replaces the `if` node `id`, when its condition is a constant, by the nodes of the branch
/// it chooses (the branch's inputs bound to the node's arguments). Returns whether it did.
fn inline_chosen_branch(g: &mut Graph, id: NodeId) -> bool {
    let node = g.node(id).clone();
    let Op::If {
        then_branch,
        else_branch,
    } = &node.op
    else {
        return false;
    };
    let Some(Ok(truth)) = g
        .const_value(node.inputs[0])
        .map(lathe_ir::ops::control_flow::truth)
    else {
        return false;
    };
    let branch = if truth { then_branch } else { else_branch };
    let Ok(order) = branch.topo_order() else {
        return false;
    };
    let mut copied: Vec<Option<NodeId>> = vec![None; branch.node_bound()];
    let value = |copied: &[Option<NodeId>], v: ValueId| match branch.node(v.node).op {
        Op::Input { index } => node.inputs[index + 1],
        _ => ValueId {
            node: copied[v.node.index()].expect("producers come first"),
            output: v.output,
        },
    };
    for b in order {
        let n = branch.node(b);
        if matches!(n.op, Op::Input { .. }) {
            continue;
        }
        let inputs = n.inputs.iter().map(|&v| value(&copied, v)).collect();
        let new = g
            .add_node_typed(n.op.clone(), inputs, n.outputs.clone(), n.name.clone())
            .expect("the branch's values exist in the graph");
        copied[b.index()] = Some(new);
    }
    for (k, o) in branch.outputs().iter().enumerate() {
        let to = value(&copied, o.value);
        g.replace_all_uses(
            ValueId {
                node: id,
                output: k as u32,
            },
            to,
        );
    }
    g.remove_node(id).expect("every use of the if was replaced");
    true
}

/// Hands the constant operands of the `if` or `while` node `id` to its regions as constants:
/// in each region, the nodes reading the input that receives a constant read a copy of the
/// constant node instead (sharing its tensor), so that what depends on it folds there. A
/// `while` carried value qualifies only when the body passes it through unchanged (so it holds
/// the constant in every iteration). The region inputs stay (the signature is kept), unread;
/// `prune` removes them. Returns how many region inputs were replaced.
fn constants_into_regions(g: &mut Graph, id: NodeId) -> usize {
    let node = g.node(id);
    // (region input k, the constant operand it receives) per region.
    let (offset, qualifies): (usize, Vec<bool>) = match &node.op {
        Op::If { then_branch, .. } => (1, vec![true; then_branch.inputs().len()]),
        Op::While { body, .. } => (0, super::regions::pass_through(body)),
        _ => return 0,
    };
    let consts: Vec<Option<(Arc<Tensor>, String)>> = qualifies
        .iter()
        .enumerate()
        .map(|(k, &q)| {
            let v = *node.inputs.get(k + offset)?;
            match &g.node(v.node).op {
                Op::Const(t) if q => Some((Arc::clone(t), g.node(v.node).name.clone())),
                _ => None,
            }
        })
        .collect();
    let mut entered = 0;
    let mut regions = Vec::new();
    for (_, region) in super::regions::regions(&node.op) {
        let mut r = Graph::clone(region);
        let mut changed = false;
        for (k, c) in consts.iter().enumerate() {
            let (Some((t, name)), Some(input)) = (c, region.inputs().get(k)) else {
                continue;
            };
            let users = r.users(ValueId::first(input.node));
            if users.is_empty() {
                continue;
            }
            let copy = r
                .add_node_typed(Op::Const(Arc::clone(t)), vec![], vec![t.ty()], name.clone())
                .map(ValueId::first)
                .expect("a constant has no inputs to check");
            for (user, slot) in users {
                r.set_input(user, slot, copy);
            }
            changed = true;
            entered += 1;
        }
        regions.push(if changed {
            Arc::new(r)
        } else {
            Arc::clone(region)
        });
    }
    if entered > 0 {
        let op = super::regions::with_regions(&node.op, regions);
        let outputs = node.outputs.clone();
        g.set_op(id, op, outputs);
    }
    entered
}

/// The constant values of `id`'s outputs, when it can and should be folded.
fn fold_node(g: &Graph, id: NodeId, max_elements: usize) -> Option<Vec<Arc<Tensor>>> {
    let node = g.node(id);
    match &node.op {
        // Nothing to fold: already constant, bound at run time, or without outputs.
        Op::Input { .. } | Op::Const(_) | Op::NoOp => return None,
        // A loop may run for any number of iterations, or never stop: evaluating one (or a
        // branch, which may hold one) could stall compilation. Their regions fold inside.
        Op::While { .. } | Op::If { .. } => return None,
        // A reserved list is zeros a loop fills: zero-filling it per call is cheaper than a
        // plan holding (and copying in) a constant of its whole size.
        Op::ListReserve { .. } => return None,
        _ if node.outputs.is_empty() => return None,
        // The shape of a value whose static shape is fully known needs no constant input.
        Op::Shape { output } => {
            let input = node.inputs.first()?;
            if let Some(dims) = g.value_type(*input).shape.as_known() {
                return shape_tensor(*output, &dims).map(|t| vec![Arc::new(t)]);
            }
        }
        _ => {}
    }
    let consts: Vec<&Arc<Tensor>> = node
        .inputs
        .iter()
        .map(|&v| match &g.node(v.node).op {
            Op::Const(t) if v.output == 0 => Some(t),
            _ => None,
        })
        .collect::<Option<_>>()?;
    // Identity-like ops forward their inputs: share them rather than copy (a TensorFlow
    // `ReadVariableOp` identity of a weight would otherwise duplicate the weight). No new
    // data is created, so the size bound does not apply.
    if matches!(node.op, Op::Identity | Op::StopGradient | Op::IdentityN) {
        return Some(consts.into_iter().cloned().collect());
    }
    // So is a cast to the dtype the constant already has (Keras' autocast of a weight).
    if let (Op::Cast { to }, [t]) = (&node.op, consts.as_slice()) {
        if t.dtype() == *to {
            return Some(vec![Arc::clone(t)]);
        }
    }
    let in_elements: usize = consts.iter().map(|t| t.len()).sum();
    // Check the size before evaluating, from the types inferred with the constant inputs
    // (more precise than the recorded ones), so a huge fold costs nothing to refuse.
    let types = g.infer_types(&node.op, &node.inputs).ok()?;
    let predicted: Option<Vec<usize>> = types.iter().map(|t| t.shape.num_elements()).collect();
    if let Some(sizes) = &predicted {
        if too_big(sizes, in_elements, max_elements) {
            return None;
        }
    }
    let args: Vec<&Tensor> = consts.iter().map(|t| t.as_ref()).collect();
    let out = match node.op.eval(&args) {
        Ok(out) => out,
        Err(e) => {
            tracing::debug!(node = %g.display_name(id), op = node.op.mnemonic(), error = %e,
                "not folded: evaluation failed");
            return None;
        }
    };
    let sizes: Vec<usize> = out.iter().map(Tensor::len).collect();
    if predicted.is_none() && too_big(&sizes, in_elements, max_elements) {
        return None;
    }
    // An evaluation that disagrees with the node's types is a bug in the op; folding it would
    // hide the bug behind a verifier error elsewhere, so leave the node and say so.
    let fits = out.len() == node.outputs.len()
        && out.iter().zip(&node.outputs).all(|(t, ty)| admits(ty, t));
    if !fits {
        tracing::warn!(node = %g.display_name(id), op = node.op.mnemonic(),
            "not folded: evaluation does not match the node's output types");
        return None;
    }
    Some(
        out.into_iter()
            .map(|t| Arc::new(t.into_standard_layout()))
            .collect(),
    )
}

/// Whether outputs of `sizes` elements, computed from constants of `in_elements` elements in
/// all, are too big to fold. Past `max_elements` a constant costs more to store and load than
/// to compute. And an output much larger than its inputs (a broadcast, `fill`, `tile` or
/// `range` materializing a big tensor from a few numbers) would grow the model and trade a
/// cheap generated loop for memory traffic, so it is left to run at run time.
fn too_big(sizes: &[usize], in_elements: usize, max_elements: usize) -> bool {
    let total: usize = sizes.iter().sum();
    sizes.iter().any(|&n| n > max_elements)
        || (total > SMALL_OUTPUT && total > MAX_GROWTH.saturating_mul(in_elements))
}

/// `dims` as a rank-1 tensor of `dtype` (i32 or i64), or `None` when a size does not fit or
/// the dtype is not an index type (`shape`'s `infer` rejects those anyway).
fn shape_tensor(dtype: DType, dims: &[usize]) -> Option<Tensor> {
    let max = match dtype {
        DType::I32 => i32::MAX as usize,
        DType::I64 => i64::MAX as usize,
        _ => return None,
    };
    let vals: Vec<i64> = dims
        .iter()
        .map(|&d| (d <= max).then_some(d as i64))
        .collect::<Option<_>>()?;
    Some(Tensor::from_i64(dtype, &[dims.len()], &vals))
}

/// True when `t` is a value of type `ty`.
fn admits(ty: &TensorType, t: &Tensor) -> bool {
    t.dtype() == ty.dtype && ty.shape.admits(t.shape())
}

/// Replaces `id` by constants holding `tensors` and removes it. A constant's type is its
/// tensor's (the text format cannot say otherwise), which the node's type admits: the same
/// type, or a more precise one where the node had symbolic or unknown dims. Users re-infer
/// their types with the new constant inputs (a reshape now sees its target shape); if one of
/// them no longer verifies, the graph was broken where it does not run, and the fold is undone
/// rather than failing the pipeline. Returns whether the node was folded.
fn replace_with_consts(g: &mut Graph, id: NodeId, tensors: Vec<Arc<Tensor>>) -> bool {
    let name = g.node(id).name.clone();
    let mut pairs = Vec::with_capacity(tensors.len());
    for (k, t) in tensors.into_iter().enumerate() {
        let old = ValueId {
            node: id,
            output: k as u32,
        };
        let const_name = match (k, name.is_empty()) {
            (0, _) | (_, true) => name.clone(),
            _ => format!("{name}:{k}"),
        };
        let new = g
            .add_node_typed(Op::Const(t.clone()), vec![], vec![t.ty()], const_name)
            .map(ValueId::first)
            .expect("a constant has no inputs to check");
        pairs.push((old, new));
    }
    let mut users: Vec<NodeId> = Vec::new();
    for &(old, new) in &pairs {
        users.extend(g.users(old).into_iter().map(|(u, _)| u));
        g.replace_all_uses(old, new);
    }
    users.sort();
    users.dedup();
    let still_valid = users.iter().all(|&u| {
        let n = g.node(u);
        g.infer_types(&n.op, &n.inputs).is_ok_and(|inferred| {
            inferred.len() == n.outputs.len()
                && inferred
                    .iter()
                    .zip(&n.outputs)
                    .all(|(a, b)| a.compatible(b))
        })
    });
    if !still_valid {
        tracing::debug!(node = %g.display_name(id), "not folded: a user would no longer verify");
        for &(old, new) in &pairs {
            g.replace_all_uses(new, old);
            g.remove_node(new.node)
                .expect("the new constant is unused again");
        }
        return false;
    }
    g.remove_node(id)
        .expect("every use of a folded node was replaced");
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::PassOptions;
    use lathe_ir::ops::{BinaryOp, UnaryOp};
    use lathe_ir::{Dim, Shape};

    fn run(g: &mut Graph) -> (Changed, usize) {
        let mut cx = PassCx::default();
        let changed = FoldConstants.run(g, &mut cx).unwrap();
        lathe_ir::verify(g).unwrap();
        let n = cx.take_counters().get("nodes_folded").copied().unwrap_or(0);
        (changed, n)
    }

    fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v)
    }

    fn out_const(g: &Graph, k: usize) -> &Tensor {
        g.const_value(g.outputs()[k].value)
            .expect("output is a constant")
    }

    #[test]
    fn folds_a_chain_in_one_run() {
        let mut g = Graph::new("t");
        let a = g.add_const(f32s(&[2], vec![1.0, 2.0]), "a");
        let b = g.add_const(f32s(&[2], vec![2.0, 3.0]), "b");
        let s = g.add(Op::Binary(BinaryOp::Add), vec![a, b], "sum").unwrap();
        let n = g.add(Op::Unary(UnaryOp::Neg), vec![s], "neg").unwrap();
        g.add_output("y", n).unwrap();
        let (changed, n) = run(&mut g);
        assert_eq!((changed, n), (Changed::Yes, 2));
        assert_eq!(*out_const(&g, 0), f32s(&[2], vec![-3.0, -5.0]));
        assert_eq!(g.node(g.outputs()[0].value.node).name, "neg");
        assert_eq!(g.outputs()[0].name, "y");
        assert_eq!(run(&mut g), (Changed::No, 0));
    }

    #[test]
    fn leaves_nodes_with_a_runtime_input() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
        let a = g.add_const(f32s(&[2], vec![1.0, 2.0]), "a");
        let s = g.add(Op::Binary(BinaryOp::Add), vec![x, a], "sum").unwrap();
        g.add_output("y", s).unwrap();
        assert_eq!(run(&mut g), (Changed::No, 0));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn folds_every_output_of_a_multi_output_node() {
        let mut g = Graph::new("t");
        let a = g.add_const(f32s(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]), "a");
        let u = g
            .add_node(Op::Unpack { axis: 0, num: 2 }, vec![a], "u")
            .unwrap();
        g.add_output("first", ValueId { node: u, output: 0 })
            .unwrap();
        g.add_output("second", ValueId { node: u, output: 1 })
            .unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 1));
        assert!(!g.contains(u));
        assert_eq!(*out_const(&g, 0), f32s(&[2], vec![1.0, 2.0]));
        assert_eq!(*out_const(&g, 1), f32s(&[2], vec![3.0, 4.0]));
        assert_eq!(g.node(g.outputs()[1].value.node).name, "u:1");
    }

    #[test]
    fn identity_of_a_constant_shares_the_tensor() {
        // An identity, and a cast to the dtype the constant has (Keras' autocast of a weight).
        for op in [Op::Identity, Op::Cast { to: DType::F32 }] {
            let mut g = Graph::new("t");
            let w = g.add_const(f32s(&[3], vec![1.0, 2.0, 3.0]), "w");
            let r = g.add(op.clone(), vec![w], "w/read").unwrap();
            g.add_output("y", r).unwrap();
            assert_eq!(run(&mut g), (Changed::Yes, 1), "{op:?}");
            let (Op::Const(a), Op::Const(b)) =
                (&g.node(w.node).op, &g.node(g.outputs()[0].value.node).op)
            else {
                panic!("expected constants")
            };
            assert!(Arc::ptr_eq(a, b), "{op:?}");
        }
        // A real cast is computed.
        let mut g = Graph::new("t");
        let w = g.add_const(f32s(&[2], vec![1.5, 2.5]), "w");
        let r = g.add(Op::Cast { to: DType::I32 }, vec![w], "c").unwrap();
        g.add_output("y", r).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 1));
        assert_eq!(out_const(&g, 0).dtype(), DType::I32);
    }

    #[test]
    fn folds_shape_of_a_known_shape() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::known(DType::F32, &[2, 3]));
        let s = g
            .add(Op::Shape { output: DType::I32 }, vec![x], "shape")
            .unwrap();
        g.add_output("s", s).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 1));
        assert_eq!(*out_const(&g, 0), Tensor::from_vec(&[2], vec![2i32, 3]));
    }

    #[test]
    fn leaves_shape_of_a_symbolic_shape() {
        let mut g = Graph::new("t");
        let ty = TensorType::new(DType::F32, Shape(vec![Dim::sym("n"), Dim::Known(3)]));
        let x = g.add_input("x", ty);
        let s = g
            .add(Op::Shape { output: DType::I64 }, vec![x], "shape")
            .unwrap();
        g.add_output("s", s).unwrap();
        assert_eq!(run(&mut g), (Changed::No, 0));
    }

    #[test]
    fn respects_the_size_bounds() {
        // `fill` of 100×100 from three numbers: over 4096 elements and 4× its inputs.
        let mut g = Graph::new("t");
        let dims = g.add_const(Tensor::from_vec(&[2], vec![100i32, 100]), "dims");
        let v = g.add_const(Tensor::scalar(1.5f32), "v");
        let f = g.add(Op::Fill, vec![dims, v], "fill").unwrap();
        g.add_output("y", f).unwrap();
        assert_eq!(run(&mut g), (Changed::No, 0));

        // A small fill folds.
        let mut g = Graph::new("t");
        let dims = g.add_const(Tensor::from_vec(&[2], vec![4i32, 4]), "dims");
        let v = g.add_const(Tensor::scalar(1.5f32), "v");
        let f = g.add(Op::Fill, vec![dims, v], "fill").unwrap();
        g.add_output("y", f).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 1));

        // `fold_max_elements` bounds even an elementwise op on big inputs.
        let mut g = Graph::new("t");
        let a = g.add_const(Tensor::zeros(DType::F32, &[64]), "a");
        let n = g.add(Op::Unary(UnaryOp::Neg), vec![a], "neg").unwrap();
        g.add_output("y", n).unwrap();
        let mut cx = PassCx::new(PassOptions {
            fold_max_elements: 32,
            ..PassOptions::default()
        });
        assert_eq!(FoldConstants.run(&mut g, &mut cx).unwrap(), Changed::No);
    }

    #[test]
    fn an_evaluation_error_leaves_the_node() {
        // Integer division by zero fails at evaluation: the node stays, to fail at run time.
        let mut g = Graph::new("t");
        let i = g.add_const(Tensor::from_vec(&[1], vec![1i32]), "i");
        let z = g.add_const(Tensor::from_vec(&[1], vec![0i32]), "z");
        let d = g.add(Op::Binary(BinaryOp::Div), vec![i, z], "d").unwrap();
        let n = g.add(Op::Unary(UnaryOp::Neg), vec![d], "n").unwrap();
        g.add_output("d", n).unwrap();
        assert_eq!(run(&mut g), (Changed::No, 0));
        assert_eq!(g.len(), 4);
    }

    #[test]
    fn a_fold_that_would_break_a_user_is_undone() {
        // reshape(x: f32[6], [2, 2] + [0, 0]): valid while the target is computed, but not
        // once it is the constant [2, 2]. The node is left (it fails at run time, as before).
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::known(DType::F32, &[6]));
        let a = g.add_const(Tensor::from_vec(&[2], vec![2i32, 2]), "a");
        let b = g.add_const(Tensor::from_vec(&[2], vec![0i32, 0]), "b");
        let t = g.add(Op::Binary(BinaryOp::Add), vec![a, b], "t").unwrap();
        let r = g.add(Op::Reshape, vec![x, t], "r").unwrap();
        g.add_output("y", r).unwrap();
        let before = lathe_ir::text::print(&g);
        assert_eq!(run(&mut g), (Changed::No, 0));
        assert_eq!(lathe_ir::text::print(&g), before);
    }

    #[test]
    fn a_symbolic_type_becomes_the_constant_type() {
        // A node typed more loosely than its value (as an importer may leave it) folds to a
        // constant of the precise type; its users still verify.
        let mut g = Graph::new("t");
        let a = g.add_const(Tensor::from_vec(&[2], vec![1.0f32, 2.0]), "a");
        let loose = TensorType::new(DType::F32, Shape(vec![Dim::sym("n")]));
        let n = g
            .add_node_typed(Op::Unary(UnaryOp::Neg), vec![a], vec![loose.clone()], "neg")
            .unwrap();
        let e = g
            .add_node_typed(
                Op::Unary(UnaryOp::Exp),
                vec![ValueId::first(n)],
                vec![loose],
                "exp",
            )
            .unwrap();
        let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
        let s = g
            .add(Op::Binary(BinaryOp::Add), vec![x, ValueId::first(e)], "s")
            .unwrap();
        g.add_output("y", s).unwrap();
        assert_eq!(run(&mut g), (Changed::Yes, 2));
        let c = g.node(s.node).inputs[1];
        assert_eq!(*g.value_type(c), TensorType::known(DType::F32, &[2]));
    }
}
