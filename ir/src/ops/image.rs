//! Image family: ops that resample or rearrange NCHW (and N-D) images by coordinates, as ONNX
//! defines them: `grid_sample`, `roi_align`, `col2im`.
//!
//! Each op's geometry and arithmetic live in one struct of its own module, generic over the
//! element type and computing in f64 with one rounding per output: the interpreter runs it on
//! f64 copies of its operands, the CPU kernel on the buffers' own types, so both give the same
//! bits.

use super::{Op, OpResult};
use crate::{Tensor, TensorType};

pub mod col2im;
pub mod grid_sample;
pub mod roi_align;

/// Output types of image ops.
pub fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    match op {
        Op::GridSample { .. } => grid_sample::infer(inputs),
        Op::RoiAlign { .. } => roi_align::infer(op, inputs),
        Op::Col2Im { .. } => col2im::infer(op, inputs),
        _ => unreachable!("{op:?} is not an image op"),
    }
}

/// Evaluates image ops.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    infer(op, &types)?;
    match op {
        Op::GridSample { .. } => grid_sample::eval(op, inputs),
        Op::RoiAlign { .. } => roi_align::eval(op, inputs),
        Op::Col2Im { .. } => col2im::eval(op, inputs),
        _ => unreachable!("{op:?} is not an image op"),
    }
}
