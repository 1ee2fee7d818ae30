//! The reference interpreter: evaluates a graph node by node with each op's `eval`.
//!
//! It is the oracle every compiled result is checked against, so it favours being obviously
//! correct over being fast. Only nodes that outputs depend on are evaluated, and each value is
//! dropped after its last use.

use crate::graph::node_error;
use crate::ops::Op;
use crate::{Graph, IrError, NodeId, Result, Tensor};
use std::borrow::Borrow;
use std::collections::HashMap;

/// Checks `inputs` against the graph's signature: count, dtype, rank, known dims, and that
/// each symbolic dim has one size across all inputs.
pub fn check_inputs<T: Borrow<Tensor>>(g: &Graph, inputs: &[T]) -> Result<()> {
    if inputs.len() != g.inputs().len() {
        let names: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
        return Err(IrError::Graph(format!(
            "graph `{}` takes {} input(s) ({}), got {}",
            g.name,
            names.len(),
            names.join(", "),
            inputs.len()
        )));
    }
    let mut bindings = Vec::new();
    for (decl, t) in g.inputs().iter().zip(inputs.iter().map(Borrow::borrow)) {
        let err = |message: String| IrError::Input {
            name: decl.name.clone(),
            message,
        };
        if t.dtype() != decl.ty.dtype {
            return Err(err(format!(
                "expected dtype {}, got {}",
                decl.ty.dtype,
                t.dtype()
            )));
        }
        if !decl.ty.shape.admits(t.shape()) {
            return Err(err(format!(
                "expected shape {}, got {:?}",
                decl.ty.shape,
                t.shape()
            )));
        }
        decl.ty
            .shape
            .bind_symbols(t.shape(), &mut bindings)
            .map_err(|(sym, a, b)| {
                err(format!(
                    "dimension ?{sym} is {b} here but {a} in an earlier input"
                ))
            })?;
    }
    Ok(())
}

/// Runs `g` on `inputs` (in signature order), returning the outputs in signature order.
/// Inputs may be owned tensors or references (a fused body runs on its node's input
/// references without copying them first).
pub fn run<T: Borrow<Tensor>>(g: &Graph, inputs: &[T]) -> Result<Vec<Tensor>> {
    let values = evaluate(g, inputs, false)?;
    Ok(g.outputs()
        .iter()
        .map(|o| values[&o.value.node][o.value.output as usize].clone())
        .collect())
}

/// Runs `g` on `inputs` and returns the outputs of every node the graph's outputs depend on
/// (to check another backend's result node by node).
pub fn run_all<T: Borrow<Tensor>>(g: &Graph, inputs: &[T]) -> Result<HashMap<NodeId, Vec<Tensor>>> {
    evaluate(g, inputs, true)
}

/// The values of the nodes the outputs depend on; each freed after its last use unless `keep`.
fn evaluate<T: Borrow<Tensor>>(
    g: &Graph,
    inputs: &[T],
    keep: bool,
) -> Result<HashMap<NodeId, Vec<Tensor>>> {
    check_inputs(g, inputs)?;
    let order = g.topo_order()?;
    let needed = live_nodes(g, &order);
    // Remaining uses of each node's outputs, so values can be freed early.
    let mut uses: HashMap<NodeId, usize> = HashMap::new();
    for &id in order.iter().filter(|id| needed[id.index()]) {
        for v in &g.node(id).inputs {
            *uses.entry(v.node).or_default() += 1;
        }
    }
    for o in g.outputs() {
        *uses.entry(o.value.node).or_default() += 1;
    }
    let mut values: HashMap<NodeId, Vec<Tensor>> = HashMap::new();
    for id in order.into_iter().filter(|id| needed[id.index()]) {
        let n = g.node(id);
        let out = match &n.op {
            Op::Input { index } => vec![inputs[*index].borrow().clone()],
            op => {
                let args: Vec<&Tensor> = n
                    .inputs
                    .iter()
                    .map(|v| &values[&v.node][v.output as usize])
                    .collect();
                let out = op
                    .eval(&args)
                    .map_err(|m| node_error(&g.display_name(id), op, m))?;
                check_outputs(g, id, &out)?;
                out
            }
        };
        for v in &n.inputs {
            let u = uses.get_mut(&v.node).expect("counted above");
            *u -= 1;
            if *u == 0 && !keep {
                values.remove(&v.node);
            }
        }
        values.insert(id, out);
    }
    Ok(values)
}

/// Marks the nodes the graph's outputs depend on.
fn live_nodes(g: &Graph, order: &[NodeId]) -> Vec<bool> {
    let bound = order.iter().map(|id| id.index() + 1).max().unwrap_or(0);
    let mut live = vec![false; bound];
    for o in g.outputs() {
        live[o.value.node.index()] = true;
    }
    for id in order.iter().rev() {
        if live[id.index()] {
            for v in &g.node(*id).inputs {
                live[v.node.index()] = true;
            }
        }
    }
    live
}

/// An op's eval must produce what its node's types promise; a mismatch is a bug in the op.
fn check_outputs(g: &Graph, id: NodeId, out: &[Tensor]) -> Result<()> {
    let n = g.node(id);
    let ok = out.len() == n.outputs.len()
        && out
            .iter()
            .zip(&n.outputs)
            .all(|(t, ty)| t.dtype() == ty.dtype && ty.shape.admits(t.shape()));
    if ok {
        return Ok(());
    }
    let got: Vec<String> = out
        .iter()
        .map(|t| format!("{}{:?}", t.dtype(), t.shape()))
        .collect();
    let want: Vec<String> = n.outputs.iter().map(|t| t.to_string()).collect();
    Err(node_error(
        &g.display_name(id),
        &n.op,
        format!(
            "evaluated to ({}) but its type is ({})",
            got.join(", "),
            want.join(", ")
        ),
    ))
}
