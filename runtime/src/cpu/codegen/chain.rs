//! Which analyzed bodies are a [`Chain`]: a straight line of f32 elementwise ops from one
//! input to the one output, each other operand a scalar, a per-column constant or another
//! whole input. Such a body runs as the wide-vector [`Chain`] kernel instead of its generated
//! 128-bit code; every other body keeps its generated code.

use super::analyze::{Expr, Id, LeafSource, Plan, RowTerm};
use crate::kernels::chain::{Binary, Chain, Operand, Stage};
use lathe_ir::ops::{BinaryOp, UnaryOp};
use lathe_ir::DType;

/// The chain `plan` computes, if it is one.
pub(crate) fn find(plan: &Plan) -> Option<Chain> {
    let &[out] = plan.outputs.as_slice() else {
        return None;
    };
    if !plan.phases.is_empty() || plan.row_len == 0 {
        return None;
    }
    let mut stages = vec![];
    let mut at = out;
    // Walks from the output back to the start, collecting stages in reverse.
    let start = loop {
        let node = &plan.nodes[at];
        if node.dtype != DType::F32 || node.len != plan.row_len {
            return None;
        }
        match node.expr {
            Expr::Unary(UnaryOp::Relu, x) => {
                stages.push(Stage::Relu);
                at = x;
            }
            Expr::Unary(UnaryOp::Relu6, x) => {
                stages.push(Stage::Relu6);
                at = x;
            }
            Expr::Binary(op, a, b) => {
                let op = binary(op)?;
                // The running value is the side that is not an operand (the left one when
                // both could be: two whole inputs).
                let (x, operand, operand_first) = match (operand(plan, a), operand(plan, b)) {
                    (_, Some(o)) => (a, o, false),
                    (Some(o), None) => (b, o, true),
                    (None, None) => return None,
                };
                stages.push(Stage::Binary {
                    op,
                    operand,
                    operand_first,
                });
                at = x;
            }
            Expr::Leaf(_) => break whole_input(plan, at)?,
            _ => return None,
        }
    };
    if stages.is_empty() {
        return None;
    }
    stages.reverse();
    Some(Chain {
        start,
        stages,
        row_len: plan.row_len,
    })
}

fn binary(op: BinaryOp) -> Option<Binary> {
    Some(match op {
        BinaryOp::Add => Binary::Add,
        BinaryOp::Sub => Binary::Sub,
        BinaryOp::Mul => Binary::Mul,
        BinaryOp::Div => Binary::Div,
        BinaryOp::Maximum => Binary::Maximum,
        BinaryOp::Minimum => Binary::Minimum,
        _ => return None,
    })
}

/// Node `id` as a stage's operand: an f32 splat, a constant with one value per column, or a
/// whole input.
fn operand(plan: &Plan, id: Id) -> Option<Operand> {
    let node = &plan.nodes[id];
    if node.dtype != DType::F32 {
        return None;
    }
    match node.expr {
        Expr::Splat(bits) => Some(Operand::Scalar(f32::from_bits(bits as u32))),
        Expr::Leaf(l) => match plan.leaves[l].source {
            LeafSource::Table(t)
                if node.len == plan.row_len
                    && plan.leaves[l].row_terms.is_empty()
                    && plan.leaves[l].dtype == DType::F32 =>
            {
                let bytes = &plan.tables[t];
                let values: Vec<f32> = (bytes.chunks_exact(4))
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (values.len() == plan.row_len).then(|| Operand::column(&values))
            }
            LeafSource::Input(_) => whole_input(plan, id).map(Operand::Input),
            LeafSource::Table(_) => None,
        },
        _ => None,
    }
}

/// The input a leaf reads, when it reads a dense `rows × row_len` f32 matrix: row `r` at
/// element `r · row_len`.
fn whole_input(plan: &Plan, id: Id) -> Option<usize> {
    let node = &plan.nodes[id];
    let Expr::Leaf(l) = node.expr else {
        return None;
    };
    let leaf = &plan.leaves[l];
    let LeafSource::Input(k) = leaf.source else {
        return None;
    };
    let dense = match leaf.row_terms.as_slice() {
        [] => plan.rows <= 1,
        [RowTerm {
            div: 1,
            modulo: 0,
            stride,
        }] => *stride == plan.row_len as u64,
        _ => false,
    };
    (dense && node.len == plan.row_len && leaf.dtype == DType::F32).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::codegen::analyze::analyze;
    use lathe_ir::text::parse;

    fn chain_of(text: &str) -> Option<Chain> {
        let body = parse(text).unwrap();
        find(&analyze(&body).unwrap())
    }

    #[test]
    fn bias_and_clamp_is_a_chain() {
        let c = chain_of(
            r#"graph @t(%x: f32[1,2,2,3]) -> ("y": f32[1,2,2,3]) {
  %0 = const dense<[1.0, 2.0, 3.0]> : f32[3]
  %1 = bias_add(%x, %0) {format = "NHWC"} : f32[1,2,2,3]
  %2 = const dense<0.0> : f32[]
  %3 = maximum(%1, %2) : f32[1,2,2,3]
  %4 = const dense<6.0> : f32[]
  %5 = minimum(%4, %3) : f32[1,2,2,3]
  return %5
}"#,
        )
        .expect("a chain");
        assert_eq!(c.start, 0);
        assert_eq!(c.row_len, 3);
        let bin = |op, operand, operand_first| Stage::Binary {
            op,
            operand,
            operand_first,
        };
        assert_eq!(
            c.stages,
            [
                bin(Binary::Add, Operand::column(&[1.0, 2.0, 3.0]), false),
                bin(Binary::Maximum, Operand::Scalar(0.0), false),
                bin(Binary::Minimum, Operand::Scalar(6.0), true),
            ]
        );
    }

    #[test]
    fn residual_add_then_relu_is_a_chain() {
        let c = chain_of(
            r#"graph @t(%x: f32[4,8], %r: f32[4,8]) -> ("y": f32[4,8]) {
  %0 = add(%r, %x) : f32[4,8]
  %1 = relu(%0) : f32[4,8]
  return %1
}"#,
        )
        .expect("a chain");
        // Both operands are whole inputs: the left one is the running value.
        assert_eq!((c.start, c.stages.len()), (1, 2));
        assert_eq!(
            c.stages[0],
            Stage::Binary {
                op: Binary::Add,
                operand: Operand::Input(0),
                operand_first: false,
            }
        );
    }

    #[test]
    fn other_bodies_are_not() {
        for body in [
            // A per-row input (broadcast along rows), a transcendental, two outputs, a
            // reduction, a bare copy, and integers.
            r#"graph @t(%x: f32[4,8], %r: f32[4,1]) -> ("y": f32[4,8]) {
  %0 = add(%x, %r) : f32[4,8]
  return %0
}"#,
            r#"graph @t(%x: f32[4,8]) -> ("y": f32[4,8]) {
  %0 = tanh(%x) : f32[4,8]
  return %0
}"#,
            r#"graph @t(%x: f32[4,8]) -> ("y": f32[4,8], "z": f32[4,8]) {
  %0 = relu(%x) : f32[4,8]
  %1 = relu6(%x) : f32[4,8]
  return %0, %1
}"#,
            r#"graph @t(%x: f32[4,8]) -> ("y": f32[4,8]) {
  %0 = const dense<[1]> : i32[1]
  %1 = reduce_max(%x, %0) {keep_dims = true} : f32[4,1]
  %2 = sub(%x, %1) : f32[4,8]
  return %2
}"#,
            r#"graph @t(%x: f32[4,8]) -> ("y": f32[4,8]) {
  %0 = identity(%x) : f32[4,8]
  return %0
}"#,
            r#"graph @t(%x: i32[4,8]) -> ("y": i32[4,8]) {
  %0 = relu(%x) : i32[4,8]
  return %0
}"#,
        ] {
            assert_eq!(chain_of(body), None, "{body}");
        }
    }
}
