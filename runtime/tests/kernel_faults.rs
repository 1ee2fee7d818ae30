//! Inputs the interpreter rejects are errors in a compiled plan too, naming the node: an integer
//! division by zero must not come back as a silent 0.

use lathe_ir::ops::BinaryOp;
use lathe_ir::{DType, Graph, Op, Tensor, TensorType};
use lathe_runtime::cpu::CpuError;
use lathe_runtime::{Backend, Model, RunError};

#[test]
fn integer_division_by_zero_is_an_error_naming_the_node() {
    let mut g = Graph::new("div");
    let a = g.add_input("a", TensorType::known(DType::I32, &[4]));
    let b = g.add_input("b", TensorType::known(DType::I32, &[4]));
    let q = g
        .add(Op::Binary(BinaryOp::Div), vec![a, b], "quotient")
        .unwrap();
    g.add_output("q", q).unwrap();
    let model = Model::new(g, Backend::Cpu).unwrap();
    let a = Tensor::from_i64(DType::I32, &[4], &[7, -7, 9, 1]);
    let ok = model
        .run(&[
            ("a", a.clone()),
            ("b", Tensor::from_i64(DType::I32, &[4], &[2, 2, 3, 1])),
        ])
        .unwrap();
    assert_eq!(ok[0].1, Tensor::from_i64(DType::I32, &[4], &[3, -3, 3, 1]));
    let e = model
        .run(&[
            ("a", a),
            ("b", Tensor::from_i64(DType::I32, &[4], &[2, 0, 3, 1])),
        ])
        .unwrap_err();
    assert!(
        matches!(
            &e,
            RunError::Cpu(CpuError::Kernel { node, op, .. }) if node == "quotient" && op == "div"
        ),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("quotient") && e.contains("division by zero"),
        "{e}"
    );
}
