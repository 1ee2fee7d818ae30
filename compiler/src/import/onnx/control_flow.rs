//! ONNX control flow (`If`, `Loop`, `Scan`) onto the IR's `if` and `while` regions.

use super::ops::OnnxOp;

/// The control-flow rows of the table.
pub(super) fn rows() -> Vec<OnnxOp> {
    Vec::new()
}
