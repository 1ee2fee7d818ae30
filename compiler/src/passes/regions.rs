//! Passes inside regions: every pass also rewrites the region graphs of `if` and `while`
//! nodes, innermost first, and then the graph that holds them ([`run_everywhere`], which the
//! pass manager calls for every pass).
//!
//! A region sees only its own inputs, so a pass runs on it as on any graph, and keeps its
//! signature: the same inputs (names and types) and as many outputs, each of a type compatible
//! with the one before (a fold may make an unknown dim known). The rewritten region replaces
//! the node's `Arc<Graph>`; an unchanged region keeps its `Arc`. Changing a region's signature
//! is the job of passes that rewrite the node holding it together with the node's operands
//! (`prune` dropping dead loop-carried values, `hoist-loop-invariants` adding some), on the
//! graph where the node is. Fused bodies are not regions: they are what codegen compiles,
//! made by `fuse`, and no pass runs inside them.

use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::{Graph, NodeId, Op, ValueId};
use std::sync::Arc;

/// The regions of `op`, labelled as the text format names them (`cond`, `body`,
/// `then_branch`, `else_branch`); empty for ops without regions.
pub fn regions(op: &Op) -> Vec<(&'static str, &Arc<Graph>)> {
    match op {
        Op::If {
            then_branch,
            else_branch,
        } => vec![("then_branch", then_branch), ("else_branch", else_branch)],
        Op::While { cond, body } => vec![("cond", cond), ("body", body)],
        _ => Vec::new(),
    }
}

/// `op` with its regions replaced by `new`, in the order [`regions`] lists them.
pub fn with_regions(op: &Op, mut new: Vec<Arc<Graph>>) -> Op {
    assert_eq!(new.len(), regions(op).len(), "one graph per region");
    match op {
        Op::If { .. } => {
            let else_branch = new.pop().expect("two regions");
            let then_branch = new.pop().expect("two regions");
            Op::If {
                then_branch,
                else_branch,
            }
        }
        Op::While { .. } => {
            let body = new.pop().expect("two regions");
            let cond = new.pop().expect("two regions");
            Op::While { cond, body }
        }
        _ => op.clone(),
    }
}

/// Runs `pass` on every region of every node of `g` (recursively, innermost first), then on
/// `g` itself. Changed when any of them changed. An error inside a region names the region and
/// its node; a pass that changes a region's signature is an error.
pub fn run_everywhere(
    pass: &dyn Pass,
    g: &mut Graph,
    cx: &mut PassCx,
) -> Result<Changed, PassError> {
    let mut changed = Changed::No;
    for id in g.node_ids() {
        changed |= run_in_regions(pass, g, id, cx)?;
    }
    changed |= pass.run(g, cx)?;
    Ok(changed)
}

/// Runs `pass` everywhere inside the regions of node `id`, replacing the node's op when a
/// region changed.
fn run_in_regions(
    pass: &dyn Pass,
    g: &mut Graph,
    id: NodeId,
    cx: &mut PassCx,
) -> Result<Changed, PassError> {
    let node = g.node(id);
    let regions = regions(&node.op);
    if regions.is_empty() {
        return Ok(Changed::No);
    }
    let mut changed = Changed::No;
    let mut new = Vec::with_capacity(regions.len());
    for (label, region) in regions {
        let mut r = Graph::clone(region);
        let in_region = |message: String| PassError {
            pass: pass.name(),
            message: format!(
                "in region `{label}` of node `{}` ({}): {message}",
                g.display_name(id),
                node.op.mnemonic()
            ),
        };
        if run_everywhere(pass, &mut r, cx)
            .map_err(|e| in_region(e.message))?
            .any()
        {
            same_signature(region, &r).map_err(in_region)?;
            changed = Changed::Yes;
            new.push(Arc::new(r));
        } else {
            new.push(Arc::clone(region));
        }
    }
    if changed.any() {
        let op = with_regions(&node.op, new);
        let outputs = node.outputs.clone();
        g.set_op(id, op, outputs);
    }
    Ok(changed)
}

/// Checks that `after` has the signature of `before`: the same inputs, and as many outputs of
/// compatible types.
fn same_signature(before: &Graph, after: &Graph) -> Result<(), String> {
    let same_inputs = before.inputs().len() == after.inputs().len()
        && before
            .inputs()
            .iter()
            .zip(after.inputs())
            .all(|(a, b)| a.name == b.name && a.ty == b.ty);
    if !same_inputs {
        return Err("the pass changed the region's inputs".to_string());
    }
    if before.outputs().len() != after.outputs().len() {
        return Err(format!(
            "the pass changed the region's output count from {} to {}",
            before.outputs().len(),
            after.outputs().len()
        ));
    }
    for (k, (a, b)) in before.outputs().iter().zip(after.outputs()).enumerate() {
        let (ta, tb) = (before.value_type(a.value), after.value_type(b.value));
        if !ta.compatible(tb) {
            return Err(format!(
                "the pass changed the type of the region's output {k} from {ta} to {tb}"
            ));
        }
    }
    Ok(())
}

/// A copy of `g` with only the inputs and outputs marked `true` (same order), and only the
/// nodes the kept outputs need. Errors when a kept node uses a dropped input.
pub fn restrict(g: &Graph, keep_inputs: &[bool], keep_outputs: &[bool]) -> Result<Graph, String> {
    let order = g.topo_order().map_err(|e| e.to_string())?;
    let mut live = vec![false; g.node_bound()];
    for (o, _) in g.outputs().iter().zip(keep_outputs).filter(|(_, &k)| k) {
        live[o.value.node.index()] = true;
    }
    for &id in order.iter().rev() {
        if live[id.index()] {
            for v in &g.node(id).inputs {
                live[v.node.index()] = true;
            }
        }
    }
    let mut out = Graph::new(g.name.clone());
    let mut remap: Vec<Option<NodeId>> = vec![None; g.node_bound()];
    for (input, _) in g.inputs().iter().zip(keep_inputs).filter(|(_, &k)| k) {
        remap[input.node.index()] = Some(out.add_input(input.name.clone(), input.ty.clone()).node);
    }
    let value = |remap: &[Option<NodeId>], v: ValueId| {
        remap[v.node.index()]
            .map(|node| ValueId {
                node,
                output: v.output,
            })
            .ok_or_else(|| format!("`{}` is needed but dropped", g.display_name(v.node)))
    };
    for id in order {
        let n = g.node(id);
        if !live[id.index()] || matches!(n.op, Op::Input { .. }) {
            continue;
        }
        let inputs = n
            .inputs
            .iter()
            .map(|&v| value(&remap, v))
            .collect::<Result<Vec<_>, _>>()?;
        let new = out
            .add_node_typed(n.op.clone(), inputs, n.outputs.clone(), n.name.clone())
            .map_err(|e| e.to_string())?;
        remap[id.index()] = Some(new);
    }
    for (o, _) in g.outputs().iter().zip(keep_outputs).filter(|(_, &k)| k) {
        out.add_output(o.name.clone(), value(&remap, o.value)?)
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// For each input of `g`, whether any of the outputs marked in `outputs` depends on it.
pub fn inputs_reaching(g: &Graph, outputs: &[bool]) -> Vec<bool> {
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
    let mut live = vec![false; g.node_bound()];
    for (o, _) in g.outputs().iter().zip(outputs).filter(|(_, &k)| k) {
        live[o.value.node.index()] = true;
    }
    for &id in order.iter().rev() {
        if live[id.index()] {
            for v in &g.node(id).inputs {
                live[v.node.index()] = true;
            }
        }
    }
    g.inputs().iter().map(|i| live[i.node.index()]).collect()
}

/// For a `while` body, which carried values pass through unchanged: output k is input k.
pub fn pass_through(body: &Graph) -> Vec<bool> {
    body.inputs()
        .iter()
        .enumerate()
        .map(|(k, input)| {
            body.outputs()
                .get(k)
                .is_some_and(|o| o.value == ValueId::first(input.node))
        })
        .collect()
}

/// A name for a new input of `g`, based on `base`, that no input or output of `g` has.
pub fn fresh_input_name(g: &Graph, base: &str) -> String {
    let base = if base.is_empty() { "invariant" } else { base };
    let taken =
        |n: &str| g.inputs().iter().any(|i| i.name == n) || g.outputs().iter().any(|o| o.name == n);
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|k| format!("{base}_{k}"))
        .find(|n| !taken(n))
        .expect("some suffix is free")
}

/// Replaces node `id` by `new`, a node already added that computes its results (new output `j`
/// is the `j`-th old output `kept` says is kept), moving every use over; then removes `id`.
/// The rewrite of a control-flow node whose regions, operands or results changed.
pub fn replace_node(
    g: &mut Graph,
    id: lathe_ir::NodeId,
    new: lathe_ir::NodeId,
    kept: impl Fn(usize) -> bool,
) -> lathe_ir::Result<()> {
    let n = g.node(id).outputs.len();
    for (j, k) in (0..n).filter(|&k| kept(k)).enumerate() {
        let v = |node, output: usize| lathe_ir::ValueId {
            node,
            output: output as u32,
        };
        g.replace_all_uses(v(id, k), v(new, j));
    }
    g.remove_node(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{cse::Cse, fold_constants::FoldConstants};
    use lathe_ir::text;

    fn parse(src: &str) -> Graph {
        let g = text::parse(src).unwrap();
        lathe_ir::verify(&g).unwrap();
        g
    }

    /// `while i < 3: i += 1; acc = acc + (2 + 3)` with a nested `if` inside the body.
    const LOOP: &str = r#"graph @t(%acc: f32[2]) -> ("acc": f32[2]) {
      %0 = const dense<0> : i32[]
      %1:2 = while(%0, %acc) {cond = graph @cond(%i: i32[], %a: f32[2]) -> ("c": bool[]) {
          %0 = const dense<3> : i32[]
          %1 = less(%i, %0) : bool[]
          return %1
        }, body = graph @body(%i: i32[], %a: f32[2]) -> ("i": i32[], "a": f32[2]) {
          %0 = const dense<1> : i32[]
          %1 = add(%i, %0) : i32[]
          %2 = const dense<2.0> : f32[]
          %3 = const dense<3.0> : f32[]
          %4 = add(%2, %3) : f32[]
          %5 = add(%a, %4) : f32[2]
          %6 = less(%i, %0) : bool[]
          %7 = if(%6, %5) {then_branch = graph @then(%x: f32[2]) -> ("y": f32[2]) {
              %0 = neg(%x) : f32[2]
              %1 = neg(%x) : f32[2]
              %2 = add(%0, %1) : f32[2]
              return %2
            }, else_branch = graph @else(%x: f32[2]) -> ("y": f32[2]) {
              return %x
            }} : f32[2]
          return %1, %7
        }} : i32[], f32[2]
      return %1#1
    }"#;

    fn body(g: &Graph) -> Arc<Graph> {
        let id = g.outputs()[0].value.node;
        match &g.node(id).op {
            Op::While { body, .. } => body.clone(),
            op => panic!("not a while: {op:?}"),
        }
    }

    #[test]
    fn a_pass_rewrites_a_loop_body_and_a_branch_nested_in_it() {
        let mut g = parse(LOOP);
        let before = body(&g);
        let mut cx = PassCx::default();
        assert!(run_everywhere(&FoldConstants, &mut g, &mut cx)
            .unwrap()
            .any());
        lathe_ir::verify(&g).unwrap();
        let printed = text::print(&body(&g));
        assert!(printed.contains("const dense<5.0> : f32[]"), "{printed}");
        assert!(!Arc::ptr_eq(&before, &body(&g)));
        // The nested branch is rewritten by a pass run on the outer graph.
        assert!(run_everywhere(&Cse, &mut g, &mut cx).unwrap().any());
        let printed = text::print(&g);
        assert_eq!(printed.matches("neg(%x)").count(), 1, "{printed}");
        // Nothing left to do: nothing changes, and the regions keep their `Arc`s.
        let settled = body(&g);
        assert!(!run_everywhere(&Cse, &mut g, &mut cx).unwrap().any());
        assert!(Arc::ptr_eq(&settled, &body(&g)));
    }

    /// A pass that drops every graph's last output: it breaks a region's signature.
    struct DropLastOutput;

    impl Pass for DropLastOutput {
        fn name(&self) -> &'static str {
            "drop-last-output"
        }

        fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<Changed, PassError> {
            if g.name != "body" {
                return Ok(Changed::No);
            }
            let n = g.outputs().len();
            let mut keep = vec![true; n];
            keep[n - 1] = false;
            *g = restrict(g, &vec![true; g.inputs().len()], &keep).unwrap();
            Ok(Changed::Yes)
        }
    }

    #[test]
    fn a_pass_may_not_change_a_region_signature() {
        let mut g = parse(LOOP);
        let e = run_everywhere(&DropLastOutput, &mut g, &mut PassCx::default()).unwrap_err();
        assert_eq!(e.pass, "drop-last-output");
        assert!(
            e.message.contains("in region `body` of node `n")
                && e.message
                    .contains("(while): the pass changed the region's output count from 2 to 1"),
            "{e}"
        );
    }

    #[test]
    fn restrict_keeps_what_kept_outputs_need() {
        let g = parse(LOOP);
        let b = body(&g);
        let r = restrict(&b, &[true, false], &[true, false]).unwrap();
        lathe_ir::verify(&r).unwrap();
        assert_eq!(r.inputs().len(), 1);
        assert_eq!(r.outputs().len(), 1);
        assert_eq!(r.len(), 3, "{}", text::print(&r));
        let e = restrict(&b, &[true, false], &[true, true]).unwrap_err();
        assert!(e.contains("`a` is needed but dropped"), "{e}");
        assert_eq!(inputs_reaching(&b, &[true, false]), vec![true, false]);
        assert_eq!(inputs_reaching(&b, &[false, true]), vec![true, true]);
        assert_eq!(pass_through(&b), vec![false, false]);
        assert_eq!(fresh_input_name(&b, "i"), "i_1");
        assert_eq!(fresh_input_name(&b, ""), "invariant");
    }
}
