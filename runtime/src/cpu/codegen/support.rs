//! What the row-kernel codegen compiles: one answer per (op, input dtypes), asked by the
//! analysis before it translates each body node, and by the CPU backend's capability query.
//!
//! The codegen covers every dtype the interpreter accepts for the ops listed here, so the
//! dtype rules are the interpreter's own (`Op::infer` on rank-0 operands). Shape conditions
//! (a reduction over the last axis, broadcasting into one iteration space) are checked by
//! the analysis on the actual body, not here.

use lathe_ir::ops::DataFormat;
use lathe_ir::{DType, Op, Shape, TensorType};

/// Whether generated code runs `op` on operands of `input_dtypes` (the data operands: a
/// reduction's axes operand is not a data operand and may be left out). `Err` says why not.
pub fn compiles(op: &Op, input_dtypes: &[DType]) -> Result<(), String> {
    let scalar = |dts: &[DType]| -> Vec<TensorType> {
        dts.iter()
            .map(|&d| TensorType::new(d, Shape(vec![])))
            .collect()
    };
    let data = |n: usize| -> Result<&[DType], String> {
        input_dtypes.get(..n).ok_or_else(|| {
            format!(
                "{} takes {n} operand(s), got {}",
                op.mnemonic(),
                input_dtypes.len()
            )
        })
    };
    match op {
        Op::Cast { to } if to.is_low_precision() || data(1)?[0].is_low_precision() => Err(
            "casts of the low-precision storage types run the conversion kernel, not generated \
             code"
                .into(),
        ),
        Op::Unary(_) | Op::Binary(_) | Op::Cast { .. } | Op::Select => {
            let tys = scalar(input_dtypes);
            let consts = vec![None; tys.len()];
            op.infer(&tys, &consts).map(|_| ())
        }
        Op::Identity | Op::StopGradient => data(1).map(|_| ()),
        Op::BiasAdd { format } => {
            if *format != DataFormat::Nhwc {
                return Err(format!(
                    "bias_add in {} layout is not generated (only NHWC)",
                    format.name()
                ));
            }
            let d = data(2)?;
            if d[0] != d[1] || d[0] == DType::Bool {
                return Err(format!(
                    "bias_add on {} and {} is not defined",
                    d[0].name(),
                    d[1].name()
                ));
            }
            Ok(())
        }
        Op::FusedBatchNorm { format, .. } => {
            if *format != DataFormat::Nhwc {
                return Err(format!(
                    "fused_batch_norm in {} layout is not generated (only NHWC)",
                    format.name()
                ));
            }
            let d = data(5)?;
            if !d.iter().all(|t| t.is_float()) || d[1..].iter().any(|&t| t != d[1]) {
                return Err(format!(
                    "fused_batch_norm needs float operands with one parameter dtype, got {d:?}"
                ));
            }
            Ok(())
        }
        Op::Reduce { .. } => {
            let d = data(1)?[0];
            if d == DType::Bool {
                return Err(format!("{} is not defined on bool", op.mnemonic()));
            }
            Ok(())
        }
        Op::Softmax | Op::LogSoftmax => {
            let d = data(1)?[0];
            if !d.is_float() {
                return Err(format!(
                    "{} is only defined on floating-point tensors, got {}",
                    op.mnemonic(),
                    d.name()
                ));
            }
            Ok(())
        }
        _ => Err(format!(
            "{} is not an elementwise or reduction op of a row kernel",
            op.mnemonic()
        )),
    }
}

/// Whether generated code can reduce `axes` (sorted, distinct, in range) of a value of shape
/// `dims`: a row kernel reduces the last axis only, and drops it (`keep_dims = false`) only
/// when every axis before it has size 1, so the rows stay where they were. Middle-axes
/// reductions have their own kernel (`kernels::reduce`) when they stand alone.
pub fn row_reduction(dims: &[usize], axes: &[usize], keep_dims: bool) -> Result<(), String> {
    let rank = dims.len();
    if axes.is_empty() {
        return Ok(());
    }
    if rank == 0 || axes != [rank - 1] {
        return Err(format!(
            "reduces axes {axes:?} of a rank-{rank} tensor; only the last axis is supported"
        ));
    }
    if !keep_dims && dims[..rank - 1].iter().any(|&d| d != 1) {
        return Err(
            "keep_dims = false over the last axis changes which axis is the row; only \
                    keep_dims = true is supported"
                .into(),
        );
    }
    Ok(())
}
