//! Specialization: a copy of a graph for one concrete input signature, with every value's
//! shape known.
//!
//! Inputs may be declared with symbolic (`?batch`) or unknown (`?`) dimensions. Given concrete
//! input types that the declared ones admit, [`specialize`] rebuilds the graph in topological
//! order with those types and re-infers every node's output types. Shape computations
//! (`shape → strided_slice → pack → reshape`, as TensorFlow writes `tf.shape(x)[0]`) are
//! evaluated on the side while inferring, so the types downstream of them are known too; the
//! graph itself keeps those nodes (the optimizer's `fold-constants` removes them). Constants
//! are shared with the original graph, not copied; fused ops' bodies are specialized too. The result is verified, and every value of
//! it has a fully known shape: a graph whose shapes depend on input *values* is an error.

use lathe_ir::graph::node_error;
use lathe_ir::ops::control_flow::refine;
use lathe_ir::{DType, Dim, Graph, IrError, NodeId, Op, Tensor, TensorType, ValueId};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use thiserror::Error;

/// Values of at most this many elements are evaluated during specialization when all their
/// inputs are known: enough for any shape computation, small enough to cost nothing.
const MAX_EVALUATED_ELEMENTS: usize = 1024;

/// Why a graph could not be specialized for a signature.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpecializeError {
    /// The number of input types differs from the number of graph inputs.
    #[error("graph `{graph}` takes {expected} input(s) ({names}), got {got}")]
    InputCount {
        graph: String,
        expected: usize,
        names: String,
        got: usize,
    },
    /// One input type is not admitted by the declared type (or is not concrete).
    #[error("input `{name}`: {message}")]
    Input { name: String, message: String },
    /// A node's types could not be inferred for the signature, or the result failed to verify.
    #[error("specializing for {signature}: {source}")]
    Graph { signature: String, source: IrError },
    /// A value's shape is still not fully known after specialization: it depends on the
    /// values of the inputs, not only on their shapes.
    #[error(
        "specializing for {signature}: node `{node}` ({op}) output {output} has type {ty}, \
         which is not fully known (its shape depends on input values, not only on input shapes)"
    )]
    UnknownShape {
        signature: String,
        node: String,
        op: String,
        output: usize,
        ty: TensorType,
    },
}

/// Checks that `inputs` (one concrete type per graph input, in order) are admitted by the
/// graph's declared input types: same dtype and rank, every dimension known, known dimensions
/// equal, and each symbol bound to one size across all inputs. Errors name the input.
pub fn check_signature(g: &Graph, inputs: &[TensorType]) -> Result<(), SpecializeError> {
    check_types(g, inputs, false)
}

/// [`check_signature`], letting input dims be unknown when `partial` (a loop body typed from
/// entry types that the loop has not refined yet).
fn check_types(g: &Graph, inputs: &[TensorType], partial: bool) -> Result<(), SpecializeError> {
    if inputs.len() != g.inputs().len() {
        let names: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
        return Err(SpecializeError::InputCount {
            graph: g.name.clone(),
            expected: names.len(),
            names: names.join(", "),
            got: inputs.len(),
        });
    }
    // Each symbol's size, with the input and axis that bound it (for the error message).
    let mut bound: HashMap<&str, (usize, &str, usize)> = HashMap::new();
    for (decl, ty) in g.inputs().iter().zip(inputs) {
        let err = |message: String| SpecializeError::Input {
            name: decl.name.clone(),
            message,
        };
        let dims: Vec<usize> = match ty.shape.as_known() {
            Some(dims) => dims,
            // An unknown dim checks against nothing; usize::MAX marks it below.
            None if partial && !ty.shape.dims().iter().any(|d| matches!(d, Dim::Sym(_))) => ty
                .shape
                .dims()
                .iter()
                .map(|d| d.known().unwrap_or(usize::MAX))
                .collect(),
            None => {
                return Err(err(format!(
                    "got {ty}, which is not a concrete type: every dimension must be a known size"
                )))
            }
        };
        let mismatch = |why: String| err(format!("expected {}, got {ty}: {why}", decl.ty));
        if ty.dtype != decl.ty.dtype {
            return Err(mismatch(format!(
                "dtype {}, not {}",
                ty.dtype, decl.ty.dtype
            )));
        }
        if dims.len() != decl.ty.rank() {
            return Err(mismatch(format!(
                "rank {}, not {}",
                dims.len(),
                decl.ty.rank()
            )));
        }
        for (axis, (d, &size)) in decl.ty.shape.dims().iter().zip(&dims).enumerate() {
            if size == usize::MAX {
                continue;
            }
            match d {
                Dim::Known(k) if *k != size => {
                    return Err(mismatch(format!("dimension {axis} is {size}, not {k}")));
                }
                Dim::Sym(s) => match bound.get(s.as_ref()) {
                    Some(&(v, input, at)) if v != size => {
                        return Err(mismatch(format!(
                            "dimension {axis} (?{s}) is {size}, but ?{s} is {v} at dimension \
                             {at} of input `{input}`"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        bound.insert(s, (size, &decl.name, axis));
                    }
                },
                Dim::Known(_) | Dim::Unknown => {}
            }
        }
    }
    Ok(())
}

/// Describes a signature with the graph's input names: `(x: f32[3,6], y: i64[3])`.
pub fn describe_signature(g: &Graph, inputs: &[TensorType]) -> String {
    let mut s = String::from("(");
    for (i, ty) in inputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        match g.inputs().get(i) {
            Some(decl) => write!(s, "{}: {ty}", decl.name),
            None => write!(s, "{ty}"),
        }
        .expect("writing to a String cannot fail");
    }
    s.push(')');
    s
}

/// A copy of `g` for the concrete input types `inputs` (one per graph input, in order), with
/// every node's output types re-inferred so that every value has a fully known shape.
///
/// The copy has the same name, inputs (with the new types), nodes (in topological order, with
/// their names) and outputs; constants are shared with `g`. It is verified before it is
/// returned. Run the optimizer on it afterwards: with shapes known, shape computations fold.
pub fn specialize(g: &Graph, inputs: &[TensorType]) -> Result<Graph, SpecializeError> {
    specialize_with_values(g, inputs, &[])
}

/// [`specialize`], with some inputs also bound to values: `values[i]`, when given, is the
/// value input `i` has in every call this specialization serves (a *shape input*: a reshape
/// target or reduction axes fed at run time, which the shapes depend on). Its uses read a
/// constant of that value, so shapes depending on it become known and fold; the input stays
/// in the signature. The caller keys what it compiles by those values.
pub fn specialize_with_values(
    g: &Graph,
    inputs: &[TensorType],
    values: &[Option<Arc<Tensor>>],
) -> Result<Graph, SpecializeError> {
    let out = rebuild(g, inputs, values, false)?;
    for id in out.node_ids() {
        let n = out.node(id);
        if let Some((k, ty)) = n
            .outputs
            .iter()
            .enumerate()
            .find(|(_, ty)| !ty.shape.is_known())
        {
            return Err(SpecializeError::UnknownShape {
                signature: describe_signature(g, inputs),
                node: out.display_name(id),
                op: n.op.mnemonic().to_string(),
                output: k,
                ty: ty.clone(),
            });
        }
    }
    lathe_ir::verify(&out).map_err(|source| SpecializeError::Graph {
        signature: describe_signature(g, inputs),
        source,
    })?;
    Ok(out)
}

/// `g` rebuilt for the input types `inputs`, every node's output types re-inferred; some may
/// still be unknown (the loop fixed point in [`specialize_while`] starts from such graphs).
fn rebuild(
    g: &Graph,
    inputs: &[TensorType],
    values: &[Option<Arc<Tensor>>],
    partial: bool,
) -> Result<Graph, SpecializeError> {
    check_types(g, inputs, partial)?;
    let graph_error = |source: IrError| SpecializeError::Graph {
        signature: describe_signature(g, inputs),
        source,
    };
    let order = g.topo_order().map_err(graph_error)?;
    let mut out = Graph::new(g.name.clone());
    let mut remap: Vec<Option<NodeId>> = vec![None; g.node_bound()];
    // Values known while specializing: constants, and small computations on them and on
    // shapes (the values ops such as `reshape` need to infer their output types).
    let mut known: HashMap<ValueId, Arc<Tensor>> = HashMap::new();
    for (k, (decl, ty)) in g.inputs().iter().zip(inputs).enumerate() {
        let mut node = out.add_input(decl.name.clone(), ty.clone()).node;
        if let Some(Some(t)) = values.get(k) {
            if t.ty() != *ty {
                return Err(SpecializeError::Input {
                    name: decl.name.clone(),
                    message: format!("its value is {} but its type {ty}", t.ty()),
                });
            }
            let v = out.add_const_shared(t.clone(), format!("{}:value", decl.name));
            known.insert(v, t.clone());
            node = v.node;
        }
        remap[decl.node.index()] = Some(node);
    }
    let value = |remap: &[Option<NodeId>], v: ValueId| ValueId {
        node: remap[v.node.index()].expect("producers come first in topological order"),
        output: v.output,
    };
    for id in order {
        let n = g.node(id);
        if matches!(n.op, Op::Input { .. }) {
            continue;
        }
        let ins: Vec<ValueId> = n.inputs.iter().map(|&v| value(&remap, v)).collect();
        let new_id = if let Op::Const(t) = &n.op {
            let new_id = out
                .add_node_typed(n.op.clone(), ins, n.outputs.clone(), n.name.clone())
                .map_err(graph_error)?;
            known.insert(ValueId::first(new_id), t.clone());
            new_id
        } else {
            let mut types: Vec<TensorType> =
                ins.iter().map(|v| out.value_type(*v).clone()).collect();
            let node_err = |m: String| graph_error(node_error(&g.display_name(id), &n.op, m));
            let op = match &n.op {
                Op::While { cond, body } => {
                    let (op, carried) = specialize_while(cond, body, &types).map_err(node_err)?;
                    refine_entries(&mut out, &ins, &types, &carried).map_err(node_err)?;
                    types = carried;
                    op
                }
                op => specialize_op(op, &types).map_err(node_err)?,
            };
            let consts: Vec<Option<&Tensor>> =
                ins.iter().map(|v| known.get(v).map(Arc::as_ref)).collect();
            let outputs = op.infer(&types, &consts).map_err(node_err)?;
            let values = evaluate(&op, &types, &consts, &outputs);
            let new_id = out
                .add_node_typed(op, ins, outputs, n.name.clone())
                .map_err(graph_error)?;
            for (k, t) in values.into_iter().flatten().enumerate() {
                let v = ValueId {
                    node: new_id,
                    output: k as u32,
                };
                known.insert(v, Arc::new(t));
            }
            new_id
        };
        remap[id.index()] = Some(new_id);
    }
    for o in g.outputs() {
        out.add_output(o.name.clone(), value(&remap, o.value))
            .map_err(graph_error)?;
    }
    Ok(out)
}

/// `op` for inputs of the concrete `types`: a fused op's body and an `if`'s branches are
/// specialized to them (a region shared unchanged when it already has exactly those input
/// types); other ops are unchanged. (`while` goes through [`specialize_while`].)
fn specialize_op(op: &Op, types: &[TensorType]) -> Result<Op, String> {
    let region = |g: &Arc<Graph>, types: &[TensorType], what: &str| {
        if g.inputs().iter().map(|i| &i.ty).eq(types.iter()) {
            return Ok(g.clone());
        }
        specialize(g, types)
            .map(Arc::new)
            .map_err(|e| format!("{what}: {e}"))
    };
    match op {
        Op::Fused { kind, body } => Ok(Op::Fused {
            kind: *kind,
            body: region(body, types, "fused body")?,
        }),
        Op::If {
            then_branch,
            else_branch,
        } => Ok(Op::If {
            then_branch: region(then_branch, &types[1..], "then_branch")?,
            else_branch: region(else_branch, &types[1..], "else_branch")?,
        }),
        _ => Ok(op.clone()),
    }
}

/// Rounds of body inference a loop gets to learn its carried types. Each round can only make
/// unknown dims known, and one iteration teaches a body what it learns, so two suffice in
/// practice; more is a loop whose types keep changing.
const MAX_LOOP_TYPING_ROUNDS: usize = 8;

/// A `while` for loop-carried values entering with the types `entry`: the carried types are
/// the fixed point of refining `entry` by the body's output types (a list reserved with an
/// unknown element dim learns it from the item the body writes), and the cond and body are
/// specialized to them. Returns the op and the carried types.
fn specialize_while(
    cond: &Arc<Graph>,
    body: &Arc<Graph>,
    entry: &[TensorType],
) -> Result<(Op, Vec<TensorType>), String> {
    let mut carried = entry.to_vec();
    for _ in 0..MAX_LOOP_TYPING_ROUNDS {
        let b = rebuild(body, &carried, &[], true).map_err(|e| format!("while body: {e}"))?;
        if b.outputs().len() != carried.len() {
            return Err(format!(
                "while: body returns {} values for {} loop-carried values",
                b.outputs().len(),
                carried.len()
            ));
        }
        let mut next = Vec::with_capacity(carried.len());
        for (k, (c, o)) in carried.iter().zip(b.outputs()).enumerate() {
            let out = b.value_type(o.value);
            next.push(refine(c, out).ok_or_else(|| {
                format!("while: loop-carried value {k} enters as {c} but the body returns {out}")
            })?);
        }
        if next == carried {
            if let Some((k, t)) = carried
                .iter()
                .enumerate()
                .find(|(_, t)| !t.shape.is_known())
            {
                return Err(format!(
                    "while: loop-carried value {k} has type {t}, which is not fully known"
                ));
            }
            let body = specialize(body, &carried).map_err(|e| format!("while body: {e}"))?;
            let cond = specialize(cond, &carried).map_err(|e| format!("while cond: {e}"))?;
            let op = Op::While {
                cond: Arc::new(cond),
                body: Arc::new(body),
            };
            return Ok((op, carried));
        }
        carried = next;
    }
    Err(format!(
        "while: the loop-carried types do not settle after {MAX_LOOP_TYPING_ROUNDS} rounds of inference"
    ))
}

/// Gives each loop entry that the loop refined (`entry[k]` less known than `carried[k]`) the
/// carried type: only a `list_reserve` may enter less known, and its element shape becomes the
/// dims the loop learnt.
fn refine_entries(
    out: &mut Graph,
    ins: &[ValueId],
    entry: &[TensorType],
    carried: &[TensorType],
) -> Result<(), String> {
    for (k, ((&v, e), c)) in ins.iter().zip(entry).zip(carried).enumerate() {
        if e == c {
            continue;
        }
        let producer = out.node(v.node);
        if !matches!(producer.op, Op::ListReserve { .. }) {
            return Err(format!(
                "loop-carried value {k} enters as {e} and the loop makes it {c}; only a list_reserve may enter less known than the loop carries it"
            ));
        }
        let (op, name) = (producer.op.clone(), producer.name.clone());
        let element = c.shape.as_known().expect("carried types are known")[1..].to_vec();
        let dims: Vec<i64> = element.iter().map(|&d| d as i64).collect();
        let shape = out.add_const(
            Tensor::from_i64(DType::I64, &[dims.len()], &dims),
            format!("{name}/element_shape"),
        );
        out.set_input(v.node, 0, shape);
        out.set_op(v.node, op, vec![c.clone()]);
    }
    Ok(())
}

/// The values of a node's outputs when they can be computed now: `shape` of a value whose
/// shape is known, or a small op whose inputs are all known. `None` otherwise (including when
/// evaluation fails: the graph then fails at run time, as it would have anyway).
fn evaluate(
    op: &Op,
    types: &[TensorType],
    consts: &[Option<&Tensor>],
    outputs: &[TensorType],
) -> Option<Vec<Tensor>> {
    if let Op::Shape { output } = op {
        let dims = types.first()?.shape.as_known()?;
        return shape_tensor(*output, &dims).map(|t| vec![t]);
    }
    // Control flow is not run while specializing: a loop (or a branch holding one) may run
    // long, or forever.
    if outputs.is_empty() || matches!(op, Op::NoOp | Op::While { .. } | Op::If { .. }) {
        return None;
    }
    let args: Vec<&Tensor> = consts.iter().copied().collect::<Option<_>>()?;
    let elements: usize = outputs
        .iter()
        .map(|t| t.shape.num_elements())
        .sum::<Option<usize>>()?;
    if elements > MAX_EVALUATED_ELEMENTS {
        return None;
    }
    let values = op.eval(&args).ok()?;
    let fits = values.len() == outputs.len()
        && values
            .iter()
            .zip(outputs)
            .all(|(t, ty)| t.dtype() == ty.dtype && ty.shape.admits(t.shape()));
    fits.then_some(values)
}

/// The value of `shape` for `dims`, in `dtype` (`None` when a size does not fit it).
fn shape_tensor(dtype: DType, dims: &[usize]) -> Option<Tensor> {
    let vals: Vec<i64> = dims
        .iter()
        .map(|&d| i64::try_from(d).ok())
        .collect::<Option<_>>()?;
    if dtype == DType::I32 && vals.iter().any(|&v| i32::try_from(v).is_err()) {
        return None;
    }
    Some(Tensor::from_i64(dtype, &[vals.len()], &vals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::Shape;

    fn sym_shape(dims: &[Dim]) -> Shape {
        Shape(dims.to_vec())
    }

    /// `f(x: f32[?n,4], y: f32[?n,4]) = x + y`, with a constant added to keep.
    fn two_inputs() -> Graph {
        let mut g = Graph::new("two");
        let ty = TensorType::new(DType::F32, sym_shape(&[Dim::sym("n"), Dim::Known(4)]));
        let x = g.add_input("x", ty.clone());
        let y = g.add_input("y", ty);
        let s = g
            .add(Op::Binary(lathe_ir::ops::BinaryOp::Add), vec![x, y], "sum")
            .unwrap();
        let c = g.add_const(Tensor::from_vec(&[4], vec![1.0f32, 2.0, 3.0, 4.0]), "c");
        let z = g
            .add(Op::Binary(lathe_ir::ops::BinaryOp::Add), vec![s, c], "z")
            .unwrap();
        g.add_output("z", z).unwrap();
        g
    }

    fn f32s(dims: &[usize]) -> TensorType {
        TensorType::known(DType::F32, dims)
    }

    fn err(g: &Graph, inputs: &[TensorType]) -> String {
        specialize(g, inputs).unwrap_err().to_string()
    }

    #[test]
    fn binds_symbols_and_keeps_constants() {
        let g = two_inputs();
        let s = specialize(&g, &[f32s(&[3, 4]), f32s(&[3, 4])]).unwrap();
        assert_eq!(s.name, "two");
        assert_eq!(s.inputs()[0].ty, f32s(&[3, 4]));
        assert_eq!(s.value_type(s.outputs()[0].value), &f32s(&[3, 4]));
        assert_eq!(s.len(), g.len());
        // The constant is the same tensor, not a copy.
        let const_of = |g: &Graph| {
            g.node_ids()
                .into_iter()
                .find_map(|id| match &g.node(id).op {
                    Op::Const(t) => Some(t.clone()),
                    _ => None,
                })
                .unwrap()
        };
        assert!(Arc::ptr_eq(&const_of(&g), &const_of(&s)));
    }

    #[test]
    fn errors_name_the_input() {
        let g = two_inputs();
        assert_eq!(
            err(&g, &[f32s(&[3, 4])]),
            "graph `two` takes 2 input(s) (x, y), got 1"
        );
        assert_eq!(
            err(&g, &[f32s(&[3, 4]), TensorType::known(DType::I32, &[3, 4])]),
            "input `y`: expected f32[?n,4], got i32[3,4]: dtype i32, not f32"
        );
        assert_eq!(
            err(&g, &[f32s(&[3, 4, 1]), f32s(&[3, 4])]),
            "input `x`: expected f32[?n,4], got f32[3,4,1]: rank 3, not 2"
        );
        assert_eq!(
            err(&g, &[f32s(&[3, 4]), f32s(&[3, 5])]),
            "input `y`: expected f32[?n,4], got f32[3,5]: dimension 1 is 5, not 4"
        );
        assert_eq!(
            err(&g, &[f32s(&[3, 4]), f32s(&[2, 4])]),
            "input `y`: expected f32[?n,4], got f32[2,4]: dimension 0 (?n) is 2, but ?n is 3 \
             at dimension 0 of input `x`"
        );
        let loose = TensorType::new(DType::F32, sym_shape(&[Dim::Unknown, Dim::Known(4)]));
        assert_eq!(
            err(&g, &[loose, f32s(&[3, 4])]),
            "input `x`: got f32[?,4], which is not a concrete type: every dimension must be a \
             known size"
        );
    }

    #[test]
    fn a_symbol_repeated_in_one_input_must_agree() {
        let mut g = Graph::new("square");
        let x = g.add_input(
            "x",
            TensorType::new(DType::F32, sym_shape(&[Dim::sym("n"), Dim::sym("n")])),
        );
        g.add_output("x", x).unwrap();
        assert!(specialize(&g, &[f32s(&[2, 2])]).is_ok());
        assert_eq!(
            err(&g, &[f32s(&[2, 3])]),
            "input `x`: expected f32[?n,?n], got f32[2,3]: dimension 1 (?n) is 3, but ?n is 2 \
             at dimension 0 of input `x`"
        );
    }

    #[test]
    fn node_errors_name_the_node_and_signature() {
        // matmul(x: f32[?a,?k], w: f32[3,2]) only works for k = 3.
        let mut g = Graph::new("mm");
        let x = g.add_input(
            "x",
            TensorType::new(DType::F32, sym_shape(&[Dim::sym("a"), Dim::sym("k")])),
        );
        let w = g.add_const(Tensor::zeros(DType::F32, &[3, 2]), "w");
        let y = g
            .add(
                Op::MatMul {
                    transpose_a: false,
                    transpose_b: false,
                },
                vec![x, w],
                "mm",
            )
            .unwrap();
        g.add_output("y", y).unwrap();
        assert!(specialize(&g, &[f32s(&[5, 3])]).is_ok());
        let e = err(&g, &[f32s(&[5, 4])]);
        assert!(
            e.starts_with("specializing for (x: f32[5,4]): node `mm` (matmul): "),
            "{e}"
        );
    }

    #[cfg(feature = "tensorflow")]
    mod dynamic_batch {
        use super::*;
        use crate::pipeline::{NoHooks, Pipeline};
        use std::path::Path;

        fn fixture() -> Graph {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/tf/dynamic_batch/model.pb");
            crate::import::tensorflow::import_file(&path).unwrap()
        }

        fn input(batch: usize) -> Tensor {
            let vals = (0..batch * 6).map(|i| (i as f32 * 0.37).sin()).collect();
            Tensor::from_vec(&[batch, 6], vals)
        }

        #[test]
        fn specialized_at_each_batch_has_known_types_and_folds_shape_code() {
            let g = fixture();
            assert!(
                !g.inputs()[0].ty.shape.is_known(),
                "the fixture's batch is dynamic"
            );
            for batch in [3, 5] {
                let x = input(batch);
                let want = lathe_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap();
                let mut s = specialize(&g, &[x.ty()]).unwrap();
                for id in s.node_ids() {
                    for ty in &s.node(id).outputs {
                        assert!(ty.shape.is_known(), "{}: {ty}", s.display_name(id));
                    }
                }
                assert_eq!(
                    lathe_ir::interp::run(&s, std::slice::from_ref(&x)).unwrap(),
                    want
                );
                Pipeline::for_level(2)
                    .unwrap()
                    .run(&mut s, &mut NoHooks)
                    .unwrap();
                for id in s.node_ids() {
                    let m = s.node(id).op.mnemonic();
                    assert!(
                        !matches!(m, "shape" | "strided_slice" | "pack"),
                        "batch {batch}: `{}` ({m}) left after -O2",
                        s.display_name(id)
                    );
                }
                let got = lathe_ir::interp::run(&s, std::slice::from_ref(&x)).unwrap();
                assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    assert_eq!(a.shape(), b.shape());
                    for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                        assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
                    }
                }
                let outs: Vec<String> = s
                    .outputs()
                    .iter()
                    .map(|o| format!("{}: {}", o.name, s.value_type(o.value)))
                    .collect();
                assert_eq!(
                    outs,
                    [
                        format!("Identity:0: f32[{batch},8]"),
                        format!("Identity_1:0: f32[{batch},2,4]")
                    ]
                );
            }
        }

        #[test]
        fn an_optimized_graph_with_fused_ops_specializes_too() {
            let mut g = fixture();
            Pipeline::for_level(2)
                .unwrap()
                .run(&mut g, &mut NoHooks)
                .unwrap();
            let fused = |g: &Graph| {
                g.node_ids()
                    .into_iter()
                    .filter_map(|id| match &g.node(id).op {
                        Op::Fused { body, .. } => Some(body.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            };
            assert!(!fused(&g).is_empty(), "-O2 fuses the matmul epilogue");
            let x = input(4);
            let want = lathe_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap();
            let s = specialize(&g, &[x.ty()]).unwrap();
            for body in fused(&s) {
                for id in body.node_ids() {
                    for ty in &body.node(id).outputs {
                        assert!(ty.shape.is_known(), "{}: {ty}", body.display_name(id));
                    }
                }
            }
            assert_eq!(
                lathe_ir::interp::run(&s, std::slice::from_ref(&x)).unwrap(),
                want
            );
            // Specializing again to the same signature shares the fused bodies.
            let again = specialize(&s, &[x.ty()]).unwrap();
            for (a, b) in fused(&s).iter().zip(fused(&again)) {
                assert!(Arc::ptr_eq(a, &b));
            }
        }

        #[test]
        fn wrong_feature_size_is_an_error() {
            let g = fixture();
            let e = specialize(&g, &[f32s(&[3, 7])]).unwrap_err().to_string();
            assert!(e.starts_with("input `x`: expected f32[?"), "{e}");
            assert!(
                e.ends_with(",6], got f32[3,7]: dimension 1 is 7, not 6"),
                "{e}"
            );
        }
    }

    /// A Keras-style loop: a list reserved with an unknown batch dim, filled by the body with
    /// rows of `x` scaled by the step; specialization learns the dim from the body.
    const LOOP: &str = r#"graph @rnn(%x: f32[?b,3]) -> ("out": f32[4,?b,3]) {
  %0 = const dense<[-1, 3]> : i32[2] loc("element_shape")
  %1 = const dense<4> : i32[] loc("n")
  %2 = list_reserve(%0, %1) {dtype = f32} : f32[4,?,3] loc("reserve")
  %3 = const dense<0> : i32[] loc("t0")
  %4:4 = while(%3, %1, %2, %x) {cond = graph @cond(%t: i32[], %n: i32[], %l: f32[4,?,3], %x: f32[?b,3]) -> ("c": bool[]) {
    %0 = less(%t, %n) : bool[]
    return %0
  }, body = graph @body(%t: i32[], %n: i32[], %l: f32[4,?,3], %x: f32[?b,3]) -> ("t": i32[], "n": i32[], "l": f32[4,?b,3], "x": f32[?b,3]) {
    %0 = const dense<1> : i32[]
    %1 = add(%t, %0) : i32[]
    %2 = cast(%1) {to = f32} : f32[]
    %3 = mul(%x, %2) : f32[?b,3]
    %4 = set_item(%l, %t, %3) : f32[4,?b,3]
    return %1, %n, %4, %x
  }} : i32[], i32[], f32[4,?b,3], f32[?b,3] loc("loop")
  return %4#2
}
"#;

    #[test]
    fn loops_learn_the_dims_a_list_was_reserved_without() {
        let g = lathe_ir::text::parse(LOOP).unwrap();
        let s = specialize(&g, &[TensorType::known(DType::F32, &[2, 3])]).unwrap();
        let text = lathe_ir::text::print(&s);
        assert!(
            text.contains("list_reserve(%") && text.contains(": f32[4,2,3] loc(\"reserve\")"),
            "{text}"
        );
        assert!(text.contains("%l: f32[4,2,3]"), "{text}");
        let x = Tensor::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let out = lathe_ir::interp::run(&s, &[x]).unwrap();
        let want: Vec<f64> = (1..=4)
            .flat_map(|k| (1..=6).map(move |v| (k * v) as f64))
            .collect();
        assert_eq!(out[0].to_f64_vec(), want);
    }

    #[test]
    fn a_loop_that_changes_a_known_type_is_an_error_naming_it() {
        let bad = LOOP.replace(
            "return %1, %n, %4, %x",
            "%5 = const dense<[1, 0]> : i32[2]\n    %6 = transpose(%x, %5) : f32[3,?b]\n    return %1, %n, %4, %6",
        )
        .replace("\"x\": f32[?b,3]) {\n    %0 = const dense<1>", "\"x\": f32[3,?b]) {\n    %0 = const dense<1>");
        let g = lathe_ir::text::parse(&bad).unwrap_or_else(|e| panic!("{e}\n{bad}"));
        let e = specialize(&g, &[TensorType::known(DType::F32, &[2, 3])]).unwrap_err();
        assert!(
            e.to_string()
                .contains("loop-carried value 3 enters as f32[2,3] but the body returns f32[3,2]"),
            "{e}"
        );
    }
}
