//! The capability query: which ops a backend runs natively, and which it may compile into a
//! generated fused body. Fusion, lowering and `inspect`/`lathe ops` all ask the same
//! [`Capabilities`] object, so they cannot disagree (fusion never groups an op the backend's
//! code generator cannot compile).

use crate::ops::{Family, Op};
use crate::{DType, Shape};
use std::fmt;

/// How a backend runs an op natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Native {
    /// No code at all: the result is a new view of an input's bytes (reshape, identity).
    View,
    /// A hand-written kernel, named by its kind (`gemm`, `window`, `copy`, `gather`, ...).
    Kernel(&'static str),
    /// Code generated for the op (alone or inside a fused body).
    Generated,
}

impl fmt::Display for Native {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Native::View => f.write_str("view"),
            Native::Kernel(k) => write!(f, "kernel {k}"),
            Native::Generated => f.write_str("generated"),
        }
    }
}

/// What one backend can run. Implemented by each backend; the passes hold one as
/// `Arc<dyn Capabilities>`.
pub trait Capabilities: Send + Sync + fmt::Debug {
    /// The backend's name, for messages (`cpu`).
    fn backend(&self) -> &'static str;

    /// How the backend runs `op` on inputs of dtypes `inputs` natively, or why it cannot.
    fn native(&self, op: &Op, inputs: &[DType]) -> Result<Native, String>;

    /// Whether `op` on inputs of dtypes `inputs` may be a member of a generated fused body
    /// (for a contraction: whether it may anchor an epilogue).
    fn fusible(&self, op: &Op, inputs: &[DType]) -> bool;

    /// Whether a reduction over `axes` (sorted, distinct, in range) of a value of shape `shape`
    /// may be a member of a generated fused body; when not, it stays a node of its own, for the
    /// backend's reduction kernels. Every reduction may by default.
    fn fusible_reduction(&self, shape: &Shape, axes: &[usize], keep_dims: bool) -> bool {
        let _ = (shape, axes, keep_dims);
        true
    }
}

/// The IR's own answer, used when no backend is named: no op is native (the IR is not a
/// backend), and only f32 elementwise ops, reductions and contractions fuse, which is what
/// every code generator Lathe has handles.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conservative;

impl Capabilities for Conservative {
    fn backend(&self) -> &'static str {
        "none"
    }

    fn native(&self, op: &Op, _inputs: &[DType]) -> Result<Native, String> {
        Err(format!(
            "no backend named: the IR runs {} only on the interpreter",
            op.mnemonic()
        ))
    }

    fn fusible(&self, op: &Op, inputs: &[DType]) -> bool {
        let computes = matches!(
            op.family(),
            Family::Elementwise | Family::Reduce | Family::Linalg | Family::Conv
        );
        // A reduction's axes are configuration, read at compile time: only its data counts.
        let data = match op {
            Op::Reduce { .. } => &inputs[..inputs.len().min(1)],
            _ => inputs,
        };
        computes && data.iter().all(|&d| d == DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::UnaryOp;

    #[test]
    fn conservative_fuses_only_f32() {
        let c = Conservative;
        assert!(c.fusible(&Op::Unary(UnaryOp::Relu), &[DType::F32]));
        assert!(!c.fusible(&Op::Unary(UnaryOp::Neg), &[DType::I32]));
        assert!(!c.fusible(&Op::Concat, &[DType::F32, DType::I32]));
        let mean = Op::Reduce {
            kind: crate::ops::ReduceKind::Mean,
            keep_dims: true,
        };
        assert!(c.fusible(&mean, &[DType::F32, DType::I32]));
        let err = c.native(&Op::Concat, &[DType::F32]).unwrap_err();
        assert!(err.contains("concat"), "{err}");
    }
}
