//! ONNX's indexing ops (gather_elements, gather_nd, the scatters, trilu, cumsum, cumprod, top_k) compiled
//! through the whole CPU lowering, with their indices and configuration as graph inputs read at
//! run time: results equal the interpreter's bit for bit, plans have no interpreter step, and an
//! index out of range is the step's `Kernel` error naming the node, as it is the interpreter's.

mod common;

use common::{check, check_fault, graph, run};
use lathe_ir::ops::{CumulativeKind, ScatterReduction};
use lathe_ir::{DType, Graph, Op, Tensor};
use lathe_runtime::{Backend, Model};

fn values(dtype: DType, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n).map(|i| ((i * 7) % 13) as f64 - 4.0).collect();
    Tensor::from_f64(dtype, dims, &v)
}

#[test]
fn gathers_match_the_interpreter() {
    for dtype in [DType::F32, DType::I64, DType::Bool, DType::F16, DType::U8] {
        let x = values(dtype, &[3, 4]);
        let idx = Tensor::from_vec(&[2, 4], vec![0i64, -1, 2, 1, 2, 0, -3, 1]);
        check(Op::GatherElements { axis: 0 }, &[x.clone(), idx.clone()]);
        let idx = Tensor::from_vec(&[3, 2], vec![3i32, -4, 0, 1, 2, 2]);
        check(Op::GatherElements { axis: 1 }, &[x.clone(), idx]);
        let idx = Tensor::from_vec(&[2, 1], vec![2i64, -3]);
        check(Op::GatherNd { batch_dims: 0 }, &[x.clone(), idx]);
        let idx = Tensor::from_vec(&[3, 1], vec![3i32, 0, -1]);
        check(Op::GatherNd { batch_dims: 1 }, &[x, idx]);
    }
    let x = values(DType::F32, &[3, 4]);
    let idx = Tensor::from_vec(&[1, 2], vec![0i64, 3]);
    check_fault(
        Op::GatherElements { axis: 0 },
        &[x.clone(), idx],
        "= 3 is not in [-3, 3)",
    );
    let idx = Tensor::from_vec(&[1, 2], vec![0i64, -5]);
    check_fault(
        Op::GatherNd { batch_dims: 0 },
        &[x, idx],
        "= -5 is not in [-4, 4)",
    );
}

#[test]
fn scatters_match_the_interpreter() {
    for dtype in [DType::F32, DType::I32, DType::Bool, DType::BF16, DType::U64] {
        for reduction in ScatterReduction::ALL {
            let x = values(dtype, &[3, 4]);
            let idx = Tensor::from_vec(&[2, 3], vec![0i64, -1, 2, 0, 1, -3]);
            let u = values(dtype, &[2, 3]).cast(DType::F64).cast(dtype);
            let op = Op::ScatterElements { axis: 0, reduction };
            check(op, &[x.clone(), idx, u]);
            let idx = Tensor::from_vec(&[3, 1], vec![1i32, -1, 1]);
            let u = values(dtype, &[3, 4]);
            check(Op::ScatterNd { reduction }, &[x, idx, u]);
        }
    }
    let x = values(DType::F32, &[3, 4]);
    let idx = Tensor::from_vec(&[1, 1], vec![4i64]);
    let u = values(DType::F32, &[1, 1]);
    let op = Op::ScatterElements {
        axis: 1,
        reduction: ScatterReduction::Add,
    };
    check_fault(op, &[x.clone(), idx.clone(), u], "= 4 is not in [-4, 4)");
    let u = values(DType::F32, &[1, 4]);
    let op = Op::ScatterNd {
        reduction: ScatterReduction::None,
    };
    check_fault(op, &[x, idx, u], "= 4 is not in [-3, 3)");
}

#[test]
fn trilu_cumsum_and_cumprod_match_the_interpreter() {
    for dtype in [DType::F32, DType::I16, DType::F64] {
        let x = values(dtype, &[2, 3, 4]);
        for k in [-2i64, 0, 1, 5] {
            for upper in [true, false] {
                check(Op::Trilu { upper }, &[x.clone(), Tensor::scalar(k)]);
            }
        }
        for axis in [0i32, -1, 1] {
            for (exclusive, reverse) in [(false, false), (true, true)] {
                for kind in CumulativeKind::ALL {
                    let op = Op::Cumulative {
                        kind,
                        exclusive,
                        reverse,
                    };
                    check(op, &[x.clone(), Tensor::scalar(axis)]);
                }
            }
        }
    }
    // The bool trilu too (no numeric pass through `neg` first).
    check(
        Op::Trilu { upper: false },
        &[values(DType::Bool, &[3, 3]), Tensor::scalar(0i64)],
    );
    let e = {
        let x = values(DType::F32, &[2, 3]);
        let g = graph(
            Op::Cumulative {
                kind: CumulativeKind::Sum,
                exclusive: false,
                reverse: false,
            },
            &[x.clone(), Tensor::scalar(0i64)],
        );
        let cpu = Model::new(g, Backend::Cpu).unwrap();
        run(&cpu, &[x, Tensor::scalar(2i64)])
            .unwrap_err()
            .to_string()
    };
    assert!(e.contains("axis 2 is out of range for rank 2"), "{e}");
}

#[test]
fn top_k_with_a_constant_k_matches_the_interpreter() {
    for dtype in [DType::F32, DType::I64, DType::U8, DType::F16] {
        for (axis, k) in [(0i64, 2i64), (-1, 3), (1, 0)] {
            for largest in [true, false] {
                let x = values(dtype, &[2, 3, 4]);
                let mut g = Graph::new("t");
                let xv = g.add_input("x0", x.ty());
                let kv = g.add_const(Tensor::from_vec(&[1], vec![k]), "k");
                let id = g
                    .add_node(Op::TopK { axis, largest }, vec![xv, kv], "op")
                    .unwrap();
                for o in 0..2 {
                    let v = lathe_ir::ValueId {
                        node: id,
                        output: o,
                    };
                    g.add_output(format!("y{o}"), v).unwrap();
                }
                let cpu = Model::new(g.clone(), Backend::Cpu).unwrap();
                let spec = cpu.specialize_for(&[x.ty()]).unwrap();
                assert_eq!(spec.cpu_plan().unwrap().interp_steps(), vec![]);
                let interp = Model::new(g, Backend::Interp).unwrap();
                let inputs = [x];
                assert_eq!(run(&cpu, &inputs).unwrap(), run(&interp, &inputs).unwrap());
            }
        }
    }
}
