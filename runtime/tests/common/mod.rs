//! The harness the per-family kernel tests (`indexing.rs`, `image.rs`) share: a one-op graph
//! fed from graph inputs, run on the CPU and the interpreter, results compared bit for bit,
//! and an out-of-range index checked as the step's error on both backends.

use lathe_ir::ops::UnaryOp;
use lathe_ir::{DType, Graph, Op, Tensor};
use lathe_runtime::cpu::CpuError;
use lathe_runtime::{Backend, Model, RunError};

/// A graph of `op` on graph inputs `x0, x1, ...` typed like `inputs`, every output returned;
/// the first input goes through two `neg`s first when numeric, so the op reads an arena
/// buffer.
pub fn graph(op: Op, inputs: &[Tensor]) -> Graph {
    let mut g = Graph::new("t");
    let mut vals: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(k, t)| g.add_input(format!("x{k}"), t.ty()))
        .collect();
    if inputs[0].dtype() != DType::Bool {
        let neg = g
            .add(Op::Unary(UnaryOp::Neg), vec![vals[0]], "neg")
            .unwrap();
        vals[0] = g.add(Op::Unary(UnaryOp::Neg), vec![neg], "pos").unwrap();
    }
    let id = g.add_node(op, vals, "op").unwrap();
    for k in 0..g.node(id).outputs.len() {
        let v = lathe_ir::ValueId {
            node: id,
            output: k as u32,
        };
        g.add_output(format!("y{k}"), v).unwrap();
    }
    g
}

/// `inputs` named `x0, x1, ...`, as [`graph`] names its inputs.
fn named(inputs: &[Tensor]) -> Vec<(String, Tensor)> {
    inputs
        .iter()
        .enumerate()
        .map(|(k, t)| (format!("x{k}"), t.clone()))
        .collect()
}

/// Runs `model` (built from [`graph`]) on `inputs`: its outputs in order.
pub fn run(model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
    let named = named(inputs);
    let refs: Vec<(&str, Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    Ok(model.run(&refs)?.into_iter().map(|(_, t)| t).collect())
}

/// Runs `op` on `inputs` on the CPU and the interpreter: no interpreter step, and as many
/// outputs, each bitwise equal with the same type.
pub fn check(op: Op, inputs: &[Tensor]) {
    let g = graph(op.clone(), inputs);
    let cpu = Model::new(g.clone(), Backend::Cpu).unwrap();
    let interp = Model::new(g, Backend::Interp).unwrap();
    let types: Vec<_> = inputs.iter().map(Tensor::ty).collect();
    let spec = cpu.specialize_for(&types).unwrap();
    let plan = spec.cpu_plan().unwrap();
    assert_eq!(plan.interp_steps(), vec![], "{op:?}");
    let want = run(&interp, inputs).unwrap();
    assert!(!want.is_empty(), "{op:?} has no outputs");
    // `Tensor`'s equality is bitwise, dtype and shape included; the vectors' compares the
    // counts.
    assert_eq!(run(&cpu, inputs).unwrap(), want, "{op:?}");
}

/// Runs `op` with an index out of range: both backends fail, the CPU with a kernel error
/// naming the node, each message containing `index`.
pub fn check_fault(op: Op, inputs: &[Tensor], index: &str) {
    let g = graph(op.clone(), inputs);
    let cpu = Model::new(g.clone(), Backend::Cpu).unwrap();
    let e = run(&cpu, inputs).unwrap_err();
    assert!(
        matches!(&e, RunError::Cpu(CpuError::Kernel { node, message, .. })
            if node == "op" && message.contains(index)),
        "{op:?}: {e:?}"
    );
    let interp = Model::new(g, Backend::Interp).unwrap();
    let e = run(&interp, inputs).unwrap_err().to_string();
    assert!(e.contains(index), "{op:?}: {e}");
}
