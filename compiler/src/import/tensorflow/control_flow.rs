//! TensorFlow control flow and lists as IR: `While`/`StatelessWhile` become `while`,
//! `If`/`StatelessIf` become `if`, `Case` nested `if`s (their functions are regions,
//! `inline.rs`; TensorFlow 1 loops
//! were made `While` nodes by `functionalize.rs`), and `TensorList*` ops become dense tensors.
//!
//! A region input that the op hands a constant, and that stays the same across iterations
//! (a loop-invariant: the body returns it unchanged), is imported as that constant inside the
//! region, sharing its tensor: a loop body then sees its weights as constants, so they fold and
//! pack as they would outside a loop.

use super::attrs::Attrs;
use super::inline::Region;
use super::ops::outputs_of;
use super::{ArgBinding, Importer};
use lathe_ir::{DType, IrError, Op, Tensor, ValueId};
use lathe_proto::tensorflow::NodeDef;
use std::sync::Arc;

type Outputs = Result<Vec<Option<ValueId>>, IrError>;

/// The regions the inliner or the functionalizer made for `node`.
fn regions(imp: &mut Importer, node: &NodeDef, n: usize) -> Result<Vec<Region>, IrError> {
    match imp.regions.remove(&node.name) {
        Some(r) if r.len() == n => Ok(r),
        _ => Err(IrError::Graph(
            "its functions were not found (the graph has no function library?)".into(),
        )),
    }
}

/// The constant `v` is, if it is one.
fn constant(imp: &Importer, v: ValueId) -> Option<Arc<Tensor>> {
    match &imp.graph.node(v.node).op {
        Op::Const(t) => Some(t.clone()),
        _ => None,
    }
}

/// Whether the region returns its input `k` unchanged as its output `k` (directly or through
/// identities).
fn passes_through(region: &Region, k: usize) -> bool {
    let (Some(arg), Some(ret)) = (region.args.get(k), region.rets.get(k)) else {
        return false;
    };
    let mut r = ret.as_str();
    for _ in 0..region.nodes.len() + 1 {
        let name = r.strip_suffix(":0").unwrap_or(r);
        if name == arg {
            return true;
        }
        // Through an inlined function's IdentityN (output k is input k) or an Identity.
        let (node, out) = match name.rsplit_once(':') {
            Some((n, i)) => match i.parse::<usize>() {
                Ok(i) => (n, i),
                Err(_) => (name, 0),
            },
            None => (name, 0),
        };
        let Some(n) = region.nodes.iter().find(|n| n.name == node) else {
            return false;
        };
        let data: Vec<&String> = n.input.iter().filter(|i| !i.starts_with('^')).collect();
        match n.op.as_str() {
            "Identity" if out == 0 && data.len() == 1 => r = data[0],
            "IdentityN" if out < data.len() => r = data[out],
            _ => return false,
        }
    }
    false
}

/// How each region input is bound: constants that the region may take as constants (`fixed`
/// says which inputs may), the other values by type.
fn bindings(imp: &Importer, inputs: &[ValueId], fixed: impl Fn(usize) -> bool) -> Vec<ArgBinding> {
    inputs
        .iter()
        .enumerate()
        .map(|(k, &v)| match constant(imp, v).filter(|_| fixed(k)) {
            Some(t) => ArgBinding::Const(t),
            None => ArgBinding::Value(imp.graph.value_type(v).clone()),
        })
        .collect()
}

/// Imports a region, its errors said as the control-flow node's.
fn region_graph(
    imp: &mut Importer,
    node: &NodeDef,
    what: &str,
    region: Region,
    bindings: Vec<ArgBinding>,
) -> Result<Arc<lathe_ir::Graph>, IrError> {
    let name = format!("{}/{what}", node.name);
    imp.import_region(&name, region, bindings)
        .map(Arc::new)
        .map_err(|e| {
            IrError::Graph(match (&e.node, &e.op) {
                (Some(n), Some(op)) => {
                    format!("in its {what}, node `{n}` (op {op}): {}", e.message)
                }
                _ => format!("in its {what}: {}", e.message),
            })
        })
}

/// `While` / `StatelessWhile`: loop-carried values through the `cond` and `body` regions.
pub(super) fn import_while(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let mut rs = regions(imp, node, 2)?.into_iter();
    let (cond, body) = (rs.next().expect("two"), rs.next().expect("two"));
    for (what, r) in [("cond", &cond), ("body", &body)] {
        if r.args.len() != inputs.len() {
            return Err(IrError::Graph(format!(
                "the loop carries {} values but its {what} takes {}",
                inputs.len(),
                r.args.len()
            )));
        }
    }
    let invariant: Vec<bool> = (0..inputs.len())
        .map(|k| passes_through(&body, k))
        .collect();
    let cond_args = bindings(imp, &inputs, |k| invariant[k]);
    let body_args = bindings(imp, &inputs, |k| invariant[k]);
    let cond = region_graph(imp, node, "cond", cond, cond_args)?;
    let body = region_graph(imp, node, "body", body, body_args)?;
    let n = inputs.len();
    let id = imp
        .graph
        .add_node(Op::While { cond, body }, inputs, node.name.clone())?;
    Ok(outputs_of(id, n))
}

/// `If` / `StatelessIf`: the condition, then the branches' arguments.
pub(super) fn import_if(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let mut rs = regions(imp, node, 2)?.into_iter();
    let (then_r, else_r) = (rs.next().expect("two"), rs.next().expect("two"));
    let Some((&cond, args)) = inputs.split_first() else {
        return Err(IrError::Graph("If has no condition input".into()));
    };
    let cond = truth(imp, node, cond)?;
    let binds = || bindings(imp, args, |_| true);
    let (tb, eb) = (binds(), binds());
    let then_branch = region_graph(imp, node, "then_branch", then_r, tb)?;
    let else_branch = region_graph(imp, node, "else_branch", else_r, eb)?;
    let n = then_branch.outputs().len();
    let mut ins = vec![cond];
    ins.extend_from_slice(args);
    let op = Op::If {
        then_branch,
        else_branch,
    };
    let id = imp.graph.add_node(op, ins, node.name.clone())?;
    Ok(outputs_of(id, n))
}

/// `Case(branch_index, args...)`: nested `if`s, `if index == 0 then branch0 else if index == 1
/// ...`, the last branch also taking every index out of range (as TensorFlow's default). The
/// branches and the nested `else` graphs take the index first, then the arguments.
pub(super) fn import_case(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let Some(rs) = imp.regions.get(&node.name).map(Vec::len) else {
        return Err(IrError::Graph(
            "its functions were not found (the graph has no function library?)".into(),
        ));
    };
    let rs = regions(imp, node, rs)?;
    let Some((&index, args)) = inputs.split_first() else {
        return Err(IrError::Graph("Case has no branch index".into()));
    };
    let index_ty = imp.graph.value_type(index).clone();
    if index_ty != lathe_ir::TensorType::scalar(DType::I32) {
        return Err(IrError::Graph(format!(
            "the branch index must be an i32 scalar, got {index_ty}"
        )));
    }
    let mut branches = Vec::with_capacity(rs.len());
    for (k, mut r) in rs.into_iter().enumerate() {
        let idx_arg = format!("{}/branch{k}/case_index", node.name);
        r.nodes.push(NodeDef {
            name: idx_arg.clone(),
            op: "_Arg".into(),
            ..Default::default()
        });
        r.args.insert(0, idx_arg);
        let mut b = vec![ArgBinding::Value(index_ty.clone())];
        b.extend(bindings(imp, args, |_| true));
        branches.push(region_graph(imp, node, &format!("branch{k}"), r, b)?);
    }
    // From the last branch back: `rest` takes (index, args...) and picks branch k or later.
    let mut rest = branches.pop().expect("a Case has branches");
    let mut arg_types = vec![index_ty];
    arg_types.extend(args.iter().map(|&a| imp.graph.value_type(a).clone()));
    while branches.len() > 1 {
        let branch = branches.pop().expect("more than one");
        let k = branches.len();
        rest = Arc::new(
            choose(
                &format!("{}/case{k}", node.name),
                k,
                &arg_types,
                branch,
                rest,
            )
            .map_err(|e| IrError::Graph(format!("branch {k}: {e}")))?,
        );
    }
    let name = &node.name;
    let (cond, then_branch) = match branches.pop() {
        Some(first) => {
            let zero = imp
                .graph
                .add_const(Tensor::scalar(0i32), format!("{name}/zero"));
            let is0 = imp.graph.add(
                Op::Binary(lathe_ir::ops::BinaryOp::Equal),
                vec![index, zero],
                format!("{name}/is_0"),
            )?;
            (is0, first)
        }
        // One branch: it runs whatever the index (an `if` folding removes).
        None => (
            imp.graph
                .add_const(Tensor::scalar(true), format!("{name}/always")),
            rest.clone(),
        ),
    };
    let n = rest.outputs().len();
    let mut ins = vec![cond, index];
    ins.extend_from_slice(args);
    let op = Op::If {
        then_branch,
        else_branch: rest,
    };
    let id = imp.graph.add_node(op, ins, name.clone())?;
    Ok(outputs_of(id, n))
}

/// The graph of (index, args...) that runs `then` when the index is `k`, else `rest`.
fn choose(
    name: &str,
    k: usize,
    arg_types: &[lathe_ir::TensorType],
    then: Arc<lathe_ir::Graph>,
    rest: Arc<lathe_ir::Graph>,
) -> Result<lathe_ir::Graph, IrError> {
    let mut g = lathe_ir::Graph::new(name);
    let args: Vec<ValueId> = arg_types
        .iter()
        .enumerate()
        .map(|(i, t)| g.add_input(format!("arg{i}"), t.clone()))
        .collect();
    let k = g.add_const(Tensor::scalar(k as i32), "k");
    let is_k = g.add(
        Op::Binary(lathe_ir::ops::BinaryOp::Equal),
        vec![args[0], k],
        "is_k",
    )?;
    let n = then.outputs().len();
    let mut ins = vec![is_k];
    ins.extend(args);
    let op = Op::If {
        then_branch: then,
        else_branch: rest,
    };
    let id = g.add_node(op, ins, "pick")?;
    for (i, v) in outputs_of(id, n).into_iter().flatten().enumerate() {
        g.add_output(format!("out{i}"), v)?;
    }
    Ok(g)
}

/// TensorFlow's truth of an `If` condition as a bool scalar: a bool scalar as it is, a
/// numeric scalar when it is not zero. (A non-scalar condition, true when non-empty, is
/// refused.)
fn truth(imp: &mut Importer, node: &NodeDef, cond: ValueId) -> Result<ValueId, IrError> {
    let ty = imp.graph.value_type(cond).clone();
    if ty.rank() != 0 {
        return Err(IrError::Graph(format!(
            "the condition is {ty}; only scalar conditions are supported"
        )));
    }
    if ty.dtype == DType::Bool {
        return Ok(cond);
    }
    let zero = imp.graph.add_const(
        Tensor::zeros(ty.dtype, &[]),
        format!("{}/cond_zero", node.name),
    );
    imp.graph.add(
        Op::Binary(lathe_ir::ops::BinaryOp::NotEqual),
        vec![cond, zero],
        format!("{}/cond", node.name),
    )
}

/// `TensorListReserve(element_shape, num_elements)`: zero rows of the element shape.
pub(super) fn import_list_reserve(
    imp: &mut Importer,
    node: &NodeDef,
    inputs: Vec<ValueId>,
) -> Outputs {
    let dtype = Attrs(node).dtype("element_dtype").map_err(IrError::Graph)?;
    let v = imp
        .graph
        .add(Op::ListReserve { dtype }, inputs, node.name.clone())?;
    Ok(vec![Some(v)])
}

/// `TensorListFromTensor(tensor, element_shape)` and `TensorListStack(list, element_shape)`:
/// a list is its dense tensor already.
pub(super) fn import_list_identity(
    imp: &mut Importer,
    node: &NodeDef,
    inputs: Vec<ValueId>,
) -> Outputs {
    let Some(&x) = inputs.first() else {
        return Err(IrError::Graph(format!("{} has no inputs", node.op)));
    };
    if imp.graph.value_type(x).rank() == 0 {
        return Err(IrError::Graph(format!(
            "a list must be a tensor of rank 1 or more, got {}",
            imp.graph.value_type(x)
        )));
    }
    let v = imp.graph.add(Op::Identity, vec![x], node.name.clone())?;
    Ok(vec![Some(v)])
}

/// `TensorListGetItem(list, index, element_shape)`: row `index`.
pub(super) fn import_list_get(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let [list, index, ..] = inputs[..] else {
        return Err(IrError::Graph(
            "TensorListGetItem takes a list and an index".into(),
        ));
    };
    let axis = imp
        .graph
        .add_const(Tensor::scalar(0i32), format!("{}/axis", node.name));
    let v = imp.graph.add(
        Op::Gather { batch_dims: 0 },
        vec![list, index, axis],
        node.name.clone(),
    )?;
    Ok(vec![Some(v)])
}

/// `TensorListLength(list)`: the number of rows, an i32 scalar.
pub(super) fn import_list_length(
    imp: &mut Importer,
    node: &NodeDef,
    inputs: Vec<ValueId>,
) -> Outputs {
    let [list] = inputs[..] else {
        return Err(IrError::Graph("TensorListLength takes one list".into()));
    };
    let name = &node.name;
    let shape = imp.graph.add(
        Op::Shape { output: DType::I32 },
        vec![list],
        format!("{name}/shape"),
    )?;
    let zero = imp
        .graph
        .add_const(Tensor::scalar(0i32), format!("{name}/index"));
    let axis = imp
        .graph
        .add_const(Tensor::scalar(0i32), format!("{name}/axis"));
    let v = imp.graph.add(
        Op::Gather { batch_dims: 0 },
        vec![shape, zero, axis],
        name.clone(),
    )?;
    Ok(vec![Some(v)])
}
