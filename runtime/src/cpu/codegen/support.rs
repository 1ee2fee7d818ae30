//! Which ops and dtypes the row-kernel code generator compiles: the rule the CPU capability
//! query (`cpu/capability.rs`) delegates to for elementwise ops and reductions, so fusion and
//! lowering agree with what `analyze.rs` accepts.

use lathe_ir::ops::{BinaryOp, DataFormat, UnaryOp};
use lathe_ir::{DType, Op};

/// Whether codegen compiles `op` on inputs of dtypes `inputs` (configuration inputs such as a
/// reduction's axes excluded), or why not.
pub fn compiles(op: &Op, inputs: &[DType]) -> Result<(), String> {
    let data = match op {
        // The axes are a constant read at compile time, not a value of the kernel.
        Op::Reduce { .. } => &inputs[..inputs.len().min(1)],
        _ => inputs,
    };
    if let Some(d) = data.iter().find(|&&d| d != DType::F32) {
        return Err(format!(
            "the CPU codegen compiles f32 only, {} has a {d} input",
            op.mnemonic()
        ));
    }
    let ok = match op {
        Op::Identity | Op::StopGradient | Op::Cast { to: DType::F32 } => true,
        Op::Unary(u) => !matches!(u, UnaryOp::Sin | UnaryOp::Cos | UnaryOp::LogicalNot),
        Op::Binary(b) => {
            use BinaryOp::*;
            matches!(
                b,
                Add | Sub | Mul | Div | Maximum | Minimum | SquaredDifference | FloorDiv | Pow
            )
        }
        Op::BiasAdd {
            format: DataFormat::Nhwc,
        } => true,
        Op::Reduce { .. } | Op::Softmax | Op::LogSoftmax => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not supported by the CPU codegen",
            op.mnemonic()
        ))
    }
}
