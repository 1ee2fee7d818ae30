//! Products with few rows against a large constant `B` split over columns on several threads
//! (`cpu/exec/columns.rs`): a convolution through `Conv2d::run_block` and a dense layer through
//! `gemm_packed_cols`, each followed by an epilogue that then runs over the whole output. Both
//! must compute what the interpreter does, on every thread count.
//!
//! The shapes are chosen to take that path: 16 rows against a 4608 × 512 filter and 8 rows
//! against a 1024 × 1024 weight (`B` over 2 MiB, more columns than rows; `columns::blocks`'s
//! unit tests pin the decision for them).

use lathe_ir::ops::{ConvAttrs, DataFormat, Op, Padding, UnaryOp};
use lathe_ir::{DType, Graph, Tensor, TensorType};
use lathe_runtime::{Backend, Model, ModelOptions};

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            (i.wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// `relu(anchor(x, w))` for a constant `w`.
fn with_relu(anchor: Op, x: TensorType, w: Tensor) -> Graph {
    let mut g = Graph::new("split");
    let xv = g.add_input("x", x);
    let wv = g.add_const(w, "w");
    let p = g.add(anchor, vec![xv, wv], "p").unwrap();
    let y = g.add(Op::Unary(UnaryOp::Relu), vec![p], "y").unwrap();
    g.add_output("y", y).unwrap();
    g
}

/// Runs `g` on the CPU backend on 1, 2 and 3 threads and compares with the interpreter.
fn check(g: &Graph, x: Tensor) {
    let want = lathe_ir::interp::run(g, std::slice::from_ref(&x))
        .unwrap()
        .remove(0)
        .to_f64_vec();
    for threads in [1, 2, 3] {
        let options = ModelOptions {
            backend: Backend::Cpu,
            threads: Some(threads),
            ..ModelOptions::default()
        };
        let model = Model::with_options(g.clone(), options).unwrap();
        let spec = model.specialize_for(&[x.ty()]).unwrap();
        let plan = spec.cpu_plan().unwrap();
        assert_eq!(plan.stats().interp_steps, 0);
        assert_eq!(plan.stats().epilogues, 1, "{}", plan.print("split"));
        let got = model.run(&[("x", x.clone())]).unwrap().remove(0).1;
        let got = got.to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{threads} threads: element {i} is {g}, want {w}"
            );
        }
    }
}

#[test]
fn a_convolution_split_over_columns_matches_the_interpreter() {
    let attrs = ConvAttrs {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Same,
        format: DataFormat::Nhwc,
    };
    let x = TensorType::known(DType::F32, &[1, 4, 4, 512]);
    let w = Tensor::from_vec(&[3, 3, 512, 512], values(3 * 3 * 512 * 512, 7));
    let g = with_relu(Op::Conv2D(attrs), x, w);
    check(&g, Tensor::from_vec(&[1, 4, 4, 512], values(16 * 512, 3)));
}

#[test]
fn a_dense_layer_split_over_columns_matches_the_interpreter() {
    let mm = Op::MatMul {
        transpose_a: false,
        transpose_b: false,
    };
    let x = TensorType::known(DType::F32, &[8, 1024]);
    let w = Tensor::from_vec(&[1024, 1024], values(1024 * 1024, 11));
    let g = with_relu(mm, x, w);
    check(&g, Tensor::from_vec(&[8, 1024], values(8 * 1024, 5)));
}
