//! Fused family: a group of ops that codegen lowers as one kernel.
//!
//! A fused node carries its body as a nested [`Graph`] whose inputs are the node's inputs (in
//! order) and whose outputs are the node's outputs. Constants the group uses may live inside the
//! body (baked into the kernel). The reference meaning of a fused node is the interpreter run on
//! its body, so fusion is testable before any code generation exists.

use super::{Op, OpResult};
use crate::{Graph, Tensor, TensorType};

/// Output types of a fused node: its body's outputs, once the inputs match the body's inputs.
pub fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    let Op::Fused { body, .. } = op else {
        unreachable!("{op:?} is not a fused op")
    };
    check_inputs(body, inputs)?;
    crate::verify(body).map_err(|e| format!("fused body: {e}"))?;
    Ok(body
        .outputs()
        .iter()
        .map(|o| body.value_type(o.value).clone())
        .collect())
}

fn check_inputs(body: &Graph, inputs: &[TensorType]) -> OpResult<()> {
    if body.inputs().len() != inputs.len() {
        return Err(format!(
            "the fused body takes {} inputs, the node gives {}",
            body.inputs().len(),
            inputs.len()
        ));
    }
    for (i, (decl, got)) in body.inputs().iter().zip(inputs).enumerate() {
        if !decl.ty.compatible(got) {
            return Err(format!(
                "input {i} is {got} but the fused body's `{}` is {}",
                decl.name, decl.ty
            ));
        }
    }
    Ok(())
}

/// Evaluates a fused node by interpreting its body.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let Op::Fused { body, .. } = op else {
        unreachable!("{op:?} is not a fused op")
    };
    crate::interp::run(body, inputs).map_err(|e| format!("in fused body: {e}"))
}
