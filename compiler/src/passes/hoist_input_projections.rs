//! `hoist-input-projections`: a recurrent loop's input projection done once, for every step,
//! before the loop.
//!
//! A Keras recurrent layer's loop body reads step `t` of its input sequence and multiplies it
//! by the input weights: `matmul(gather(X, t, 0), W)`, `X` a loop invariant `[T, B, F]` and `W`
//! a constant `[F, H]`. That is row `t` of `X · W`, so the pass computes `X · W` once before the
//! loop, as one `[T·B, F] × [F, H]` GEMM (a reshape of `X`, which is a view), and the body
//! reads row `t` of it instead: one large GEMM in place of `T` small ones, as cuDNN and
//! onnxruntime's LSTM kernels do. The projection enters the loop as a new loop invariant
//! (the cond and body take one more input; the body returns it unchanged; the `while` has one
//! more output, unused).
//!
//! It computes what the input computed: each row of the projection is the same dot products
//! (a GEMM may order its sums differently by problem size, within float rounding). The loop
//! may stop before its last step; the rows it never reads cost time, not correctness. Only
//! specialized shapes are rewritten (every dim of `X` and `W` known).

use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::{DType, Graph, NodeId, Op, Tensor, TensorType, ValueId};
use std::sync::Arc;

/// The `hoist-input-projections` pass.
pub struct HoistInputProjections;

impl Pass for HoistInputProjections {
    fn name(&self) -> &'static str {
        "hoist-input-projections"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let loops: Vec<NodeId> = g
            .node_ids()
            .into_iter()
            .filter(|&id| matches!(g.node(id).op, Op::While { .. }))
            .collect();
        let mut hoisted = 0;
        for id in loops {
            hoisted += hoist(g, id).map_err(|e| PassError::ir(self.name(), e))?;
        }
        cx.count("projections_hoisted", hoisted);
        Ok(Changed::from_bool(hoisted > 0))
    }
}

/// One input projection found in a loop body.
struct Projection {
    /// The body's `matmul` node.
    matmul: NodeId,
    /// The loop-invariant input the sequence `X` is (its index among the carried values).
    sequence: usize,
    /// The step index value in the body.
    step: ValueId,
    /// The weight constant and whether the matmul transposes it.
    weight: Arc<Tensor>,
    transpose_b: bool,
    /// `[T, B, H]`.
    projected: TensorType,
}

/// Hoists the input projections of loop `id`; returns how many.
fn hoist(g: &mut Graph, id: NodeId) -> lathe_ir::Result<usize> {
    let Op::While { cond, body } = &g.node(id).op else {
        return Ok(0);
    };
    let (cond, body) = (cond.clone(), body.clone());
    let found = find(&body);
    if found.is_empty() {
        return Ok(0);
    }
    let node = g.node(id).clone();
    let mut body = (*body).clone();
    let mut cond = (*cond).clone();
    let mut inputs = node.inputs.clone();
    let mut outputs = node.outputs.clone();
    for (k, p) in found.iter().enumerate() {
        let x = inputs[p.sequence];
        let dims = g
            .value_type(x)
            .shape
            .as_known()
            .expect("found checks known dims");
        let (t, b, f) = (dims[0], dims[1], dims[2]);
        let h = p.projected.shape.as_known().expect("known")[2];
        let name = format!("{}/input_projection_{k}", node.name);
        let flat = g.add_const(
            Tensor::from_i64(DType::I64, &[2], &[(t * b) as i64, f as i64]),
            format!("{name}/flat_shape"),
        );
        let rows = g.add(Op::Reshape, vec![x, flat], format!("{name}/rows"))?;
        let w = g.add_node(
            Op::Const(p.weight.clone()),
            vec![],
            format!("{name}/weight"),
        )?;
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: p.transpose_b,
        };
        let product = g.add(mm, vec![rows, ValueId::first(w)], name.clone())?;
        let shape = g.add_const(
            Tensor::from_i64(DType::I64, &[3], &[t as i64, b as i64, h as i64]),
            format!("{name}/shape"),
        );
        let projected = g.add(Op::Reshape, vec![product, shape], format!("{name}/steps"))?;
        // The body reads row `step` of the projection instead of multiplying.
        let input = body.add_input(format!("projection{k}"), p.projected.clone());
        let axis = body.add_const(Tensor::scalar(0i32), format!("{name}/axis"));
        let row = body.add(
            Op::Gather { batch_dims: 0 },
            vec![input, p.step, axis],
            format!("{name}/step"),
        )?;
        body.replace_all_uses(ValueId::first(p.matmul), row);
        body.add_output(format!("projection{k}"), input)?;
        cond.add_input(format!("projection{k}"), p.projected.clone());
        inputs.push(projected);
        outputs.push(p.projected.clone());
    }
    for p in &found {
        body.remove_node(p.matmul)?;
    }
    let op = Op::While {
        cond: Arc::new(cond),
        body: Arc::new(body),
    };
    let new = g.add_node_typed(op, inputs, outputs, node.name.clone())?;
    // The old results are the first ones of the new node (the projections come after).
    super::regions::replace_node(g, id, new, |_| true)?;
    Ok(found.len())
}

/// The input projections of a loop body: `matmul(gather(X, t, 0), W)` with `X` a loop
/// invariant of known shape `[T, B, F]`, `W` a constant, the matmul not transposing `X`'s row.
fn find(body: &Graph) -> Vec<Projection> {
    let invariant = |v: ValueId| -> Option<usize> {
        let k = body
            .inputs()
            .iter()
            .position(|i| ValueId::first(i.node) == v)?;
        (body.outputs().get(k)?.value == v).then_some(k)
    };
    let mut out = Vec::new();
    for id in body.node_ids() {
        let n = body.node(id);
        let Op::MatMul {
            transpose_a: false,
            transpose_b,
        } = n.op
        else {
            continue;
        };
        let (a, w) = (n.inputs[0], n.inputs[1]);
        let gather = body.node(a.node);
        let Op::Gather { batch_dims: 0 } = gather.op else {
            continue;
        };
        let (x, step, axis) = (gather.inputs[0], gather.inputs[1], gather.inputs[2]);
        let axis_zero = body
            .const_value(axis)
            .and_then(|t| t.to_i64_vec().ok())
            .is_some_and(|v| v == [0]);
        let Some(sequence) = invariant(x) else {
            continue;
        };
        let Op::Const(weight) = &body.node(w.node).op else {
            continue;
        };
        let x_dims = body.value_type(x).shape.as_known();
        let out_ty = &n.outputs[0];
        let ok = axis_zero
            && body.value_type(step).rank() == 0
            && x_dims.as_ref().is_some_and(|d| d.len() == 3)
            && out_ty.shape.is_known()
            && out_ty.rank() == 2;
        if !ok {
            continue;
        }
        let x_dims = x_dims.expect("checked");
        let h = out_ty.shape.as_known().expect("checked")[1];
        out.push(Projection {
            matmul: id,
            sequence,
            step,
            weight: weight.clone(),
            transpose_b,
            projected: TensorType::known(out_ty.dtype, &[x_dims[0], x_dims[1], h]),
        });
    }
    out
}
