//! The CPU backend's errors: what compiling ([`CpuPlan::compile`]) or running
//! ([`CpuPlan::run`]) a plan can fail with, one variant per kind of failure a caller can act on.
//!
//! Each variant's message is what users have always seen (tests and the CLI check them); the
//! fields carry the same facts for code that matches on them.
//!
//! [`CpuPlan::compile`]: super::CpuPlan::compile
//! [`CpuPlan::run`]: super::CpuPlan::run

use lathe_ir::{IrError, TensorType};
use thiserror::Error;

/// Why a CPU plan could not be compiled or run.
#[derive(Debug, Error)]
pub enum CpuError {
    /// The graph cannot be put in order (a cycle); a verified graph never has one.
    #[error(transparent)]
    Graph(IrError),
    /// Lowering cannot compile this node (a shape not specialized, a constant op that fails).
    #[error("node `{node}` ({op}): {message}")]
    Lower {
        /// The node's display name.
        node: String,
        /// The node's op mnemonic.
        op: String,
        /// Why it cannot be compiled.
        message: String,
    },
    /// A call gave a different number of inputs than the plan takes.
    #[error("the plan takes {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    /// An input's dtype or shape is not the one the plan was compiled for.
    #[error("input {index} is {got} but the plan was compiled for {expected}")]
    InputType {
        /// The input's position.
        index: usize,
        /// The type the plan was compiled for (every dimension known).
        expected: TensorType,
        /// The type of the tensor given.
        got: TensorType,
    },
    /// [`CpuPlan::run_timed`](super::CpuPlan::run_timed) was given a slice of step times whose
    /// length is not the plan's number of steps.
    #[error("{got} step times for {steps} steps")]
    StepTimes { got: usize, steps: usize },
    /// A kernel failed while running: an integer division by zero, an index out of range, an
    /// op the interpreter fallback rejected.
    #[error("node `{node}` ({op}): {message}")]
    Kernel {
        /// The node's display name.
        node: String,
        /// The node's op mnemonic.
        op: String,
        /// The kernel's own message.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::CpuError;
    use crate::cpu::{CpuPlan, ThreadPool};
    use crate::{Backend, RunError};
    use lathe_compiler::SpecializedGraph;
    use lathe_ir::ops::BinaryOp;
    use lathe_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType};
    use std::sync::Arc;

    /// `quotient = a / b` over two i32[4] inputs, compiled.
    fn quotient_plan() -> CpuPlan {
        let mut g = Graph::new("div");
        let a = g.add_input("a", TensorType::known(DType::I32, &[4]));
        let b = g.add_input("b", TensorType::known(DType::I32, &[4]));
        let q = g
            .add(Op::Binary(BinaryOp::Div), vec![a, b], "quotient")
            .unwrap();
        g.add_output("q", q).unwrap();
        let g = SpecializedGraph::new(g).unwrap();
        CpuPlan::compile(g, Arc::new(ThreadPool::new(1))).unwrap()
    }

    fn ints(v: &[i64]) -> Tensor {
        Tensor::from_i64(DType::I32, &[v.len()], v)
    }

    #[test]
    fn the_wrong_number_of_inputs_is_input_count() {
        let plan = quotient_plan();
        let e = plan.run(&[ints(&[1, 2, 3, 4])]).unwrap_err();
        assert!(
            matches!(
                e,
                CpuError::InputCount {
                    expected: 2,
                    got: 1
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "the plan takes 2 inputs, got 1");
    }

    #[test]
    fn an_input_of_another_type_is_input_type() {
        let plan = quotient_plan();
        let wrong = Tensor::from_i64(DType::I64, &[2, 2], &[1, 2, 3, 4]);
        let e = plan.run(&[ints(&[1, 2, 3, 4]), wrong]).unwrap_err();
        let CpuError::InputType {
            index,
            expected,
            got,
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!(*index, 1);
        assert_eq!(*expected, TensorType::known(DType::I32, &[4]));
        assert_eq!(*got, TensorType::known(DType::I64, &[2, 2]));
        assert_eq!(
            e.to_string(),
            "input 1 is i64[2,2] but the plan was compiled for i32[4]"
        );
    }

    #[test]
    fn step_times_of_the_wrong_length_are_step_times() {
        let plan = quotient_plan();
        let steps = plan.steps().len();
        let mut times = vec![std::time::Duration::ZERO; steps + 1];
        let x = ints(&[1, 2, 3, 4]);
        let e = plan
            .run_timed(&[x.clone(), x], Some(&mut times))
            .unwrap_err();
        assert!(
            matches!(e, CpuError::StepTimes { got, steps: s } if got == steps + 1 && s == steps),
            "{e:?}"
        );
    }

    #[test]
    fn an_unspecialized_shape_is_a_lowering_error() {
        // `CpuPlan::compile` takes only specialized graphs; lowering still checks.
        let mut g = Graph::new("sym");
        let ty = TensorType::new(DType::F32, Shape(vec![Dim::sym("n")]));
        let x = g.add_input("x", ty);
        g.add_output("y", x).unwrap();
        let e = crate::cpu::lower::lower(g).unwrap_err();
        let CpuError::Lower { node, op, message } = &e else {
            panic!("{e:?}");
        };
        assert_eq!((node.as_str(), op.as_str()), ("x", "input"));
        assert_eq!(message, "input has shape [?n] (not specialized)");
        assert_eq!(
            e.to_string(),
            "node `x` (input): input has shape [?n] (not specialized)"
        );
    }

    #[test]
    fn run_errors_wrap_cpu_errors_with_the_same_text() {
        let lower = || CpuError::Lower {
            node: "x".into(),
            op: "input".into(),
            message: "input has shape [?n] (not specialized)".into(),
        };
        let e = RunError::Compile {
            signature: "(x: f32[n])".into(),
            backend: Backend::Cpu,
            source: lower(),
        };
        assert_eq!(
            e.to_string(),
            "compiling the specialization for (x: f32[n]) for cpu: node `x` (input): input has \
             shape [?n] (not specialized)"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(RunError::from(lower()).to_string(), lower().to_string());
    }
}
