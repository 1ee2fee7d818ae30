//! Fused family: a group of ops that codegen lowers as one kernel.
//!
//! A fused node carries its body as a nested [`Graph`] whose inputs are the node's inputs (in
//! order) and whose outputs are the node's outputs. Constants the group uses may live inside the
//! body (baked into the kernel). The reference meaning of a fused node is the interpreter run on
//! its body, so fusion is testable before any code generation exists.

use super::{Op, OpResult};
use crate::{Tensor, TensorType};

/// Output types of a fused node: its body's outputs, once the inputs match the body's inputs.
pub fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    let Op::Fused { body, .. } = op else {
        unreachable!("{op:?} is not a fused op")
    };
    super::common::check_region("the fused body", body, inputs)?;
    Ok(body
        .outputs()
        .iter()
        .map(|o| body.value_type(o.value).clone())
        .collect())
}

/// Evaluates a fused node by interpreting its body.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let Op::Fused { body, .. } = op else {
        unreachable!("{op:?} is not a fused op")
    };
    crate::interp::run(body, inputs).map_err(|e| format!("in fused body: {e}"))
}
