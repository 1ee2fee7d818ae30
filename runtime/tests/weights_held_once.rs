//! Weights are held once: the CPU plan shares the graph's constants instead of copying them,
//! lets go of those its kernels hold packed, and specializations of one model share them.

use lathe_ir::ops::{ConvAttrs, DataFormat, Op, Padding};
use lathe_ir::{DType, Dim, Graph, Shape, Tensor, TensorType};
use lathe_runtime::{Backend, Model};
use std::sync::Arc;

/// `x: f32[?batch, 8]` → `x @ w` (w: 8×16), and `x @ w + b` with `b` read from memory.
fn dense() -> Graph {
    let mut g = Graph::new("dense");
    let batch = Shape(vec![Dim::sym("batch"), Dim::Known(8)]);
    let x = g.add_input("x", TensorType::new(DType::F32, batch));
    let w = g.add_const(
        Tensor::from_vec(&[8, 16], (0..128).map(|i| i as f32 / 64.0).collect()),
        "w",
    );
    let mm = Op::MatMul {
        transpose_a: false,
        transpose_b: false,
    };
    let y = g.add_node(mm, vec![x, w], "y").unwrap();
    g.add_output("y", lathe_ir::ValueId::first(y)).unwrap();
    g
}

/// The constants of `g`'s `const` nodes, by node name.
fn constants(g: &Graph) -> Vec<(String, Arc<Tensor>)> {
    g.node_ids()
        .into_iter()
        .filter_map(|id| match &g.node(id).op {
            Op::Const(t) => Some((g.node(id).name.clone(), Arc::clone(t))),
            _ => None,
        })
        .collect()
}

/// The dense model's weight, wherever the passes put it (a fused body holds it after `fuse`).
fn weight(g: &Graph) -> Arc<Tensor> {
    let mut found = constants_shaped(g, &[8, 16]);
    assert_eq!(found.len(), 1, "one weight in the graph");
    found.remove(0)
}

#[test]
fn a_packed_weight_is_not_kept_in_the_plan() {
    let model = Model::new(dense(), Backend::Cpu).unwrap();
    // Four rows: a GEMM, so the weight is packed and the plan needs no other copy.
    let spec = model
        .specialize_for(&[TensorType::known(DType::F32, &[4, 8])])
        .unwrap();
    let plan = spec.cpu_plan().expect("a cpu plan");
    assert!(plan.stats().gemm_steps > 0, "{:?}", plan.stats());
    assert!(
        plan.constants().iter().all(|t| t.shape() != [8, 16]),
        "the packed weight is still a constant of the plan"
    );
    // And it still computes `x @ w`.
    let x = Tensor::from_vec(&[4, 8], (0..32).map(|i| (i % 5) as f32).collect());
    let got = model.run(&[("x", x.clone())]).unwrap();
    let want = lathe_ir::interp::run(&dense(), &[x]).unwrap();
    assert_eq!(got[0].1.to_f64_vec(), want[0].to_f64_vec());
}

#[test]
fn an_unpacked_weight_is_shared_with_the_graph_not_copied() {
    let model = Model::new(dense(), Backend::Cpu).unwrap();
    // One row: a matrix-vector product streams the weight as is, from the graph's tensor.
    let spec = model
        .specialize_for(&[TensorType::known(DType::F32, &[1, 8])])
        .unwrap();
    let plan = spec.cpu_plan().expect("a cpu plan");
    let held = plan.constants();
    let w = weight(model.graph());
    assert!(
        held.iter().any(|t| Arc::ptr_eq(t, &w)),
        "the plan copied the weight instead of sharing it"
    );
}

#[test]
fn specializations_share_their_weight_tensors() {
    let model = Model::new(dense(), Backend::Cpu).unwrap();
    let one = model
        .specialize_for(&[TensorType::known(DType::F32, &[1, 8])])
        .unwrap();
    let four = model
        .specialize_for(&[TensorType::known(DType::F32, &[4, 8])])
        .unwrap();
    let w = weight(model.graph());
    assert!(Arc::ptr_eq(&weight(one.graph()), &w));
    assert!(Arc::ptr_eq(&weight(four.graph()), &w));
}

#[test]
fn a_convolution_filter_is_held_only_by_its_kernel() {
    let mut g = Graph::new("conv");
    let x = g.add_input("x", TensorType::known(DType::F32, &[1, 6, 6, 3]));
    let f = g.add_const(
        Tensor::from_vec(
            &[3, 3, 3, 4],
            (0..108).map(|i| (i % 7) as f32 - 3.0).collect(),
        ),
        "f",
    );
    let attrs = ConvAttrs {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Same,
        format: DataFormat::Nhwc,
    };
    let y = g.add_node(Op::Conv2D(attrs), vec![x, f], "y").unwrap();
    g.add_output("y", lathe_ir::ValueId::first(y)).unwrap();
    let model = Model::new(g.clone(), Backend::Cpu).unwrap();
    let spec = model
        .specialize_for(&[TensorType::known(DType::F32, &[1, 6, 6, 3])])
        .unwrap();
    let plan = spec.cpu_plan().expect("a cpu plan");
    assert_eq!(plan.stats().interp_steps, 0, "{:?}", plan.steps());
    assert!(
        plan.constants().iter().all(|t| t.shape() != [3, 3, 3, 4]),
        "the filter is still a constant of the plan"
    );
    let x = Tensor::from_vec(&[1, 6, 6, 3], (0..108).map(|i| (i % 11) as f32).collect());
    let got = model.run(&[("x", x.clone())]).unwrap();
    let want = lathe_ir::interp::run(&g, &[x]).unwrap();
    for (a, b) in got[0].1.to_f64_vec().iter().zip(want[0].to_f64_vec()) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// Every f32 constant of `g` and of its fused bodies with shape `shape`.
fn constants_shaped(g: &Graph, shape: &[usize]) -> Vec<Arc<Tensor>> {
    let mut found = vec![];
    for id in g.node_ids() {
        match &g.node(id).op {
            Op::Const(t) if t.shape() == shape => found.push(Arc::clone(t)),
            Op::Fused { body, .. } => found.extend(constants_shaped(body, shape)),
            _ => {}
        }
    }
    found
}

#[test]
fn specializations_share_the_weights_their_passes_derive() {
    // conv2d then a batch norm: optimizing folds the norm into a new filter, in each
    // specialization; the model's weight pool makes the second one take the first's.
    let mut g = Graph::new("conv_bn");
    let batch = Shape(vec![
        Dim::sym("batch"),
        Dim::Known(6),
        Dim::Known(6),
        Dim::Known(3),
    ]);
    let x = g.add_input("x", TensorType::new(DType::F32, batch));
    let f = g.add_const(
        Tensor::from_vec(
            &[3, 3, 3, 64],
            (0..1728).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect(),
        ),
        "f",
    );
    let per_channel = |g: &mut Graph, name: &str, base: f32| {
        g.add_const(
            Tensor::from_vec(&[64], (0..64).map(|i| base + i as f32 / 64.0).collect()),
            name,
        )
    };
    let scale = per_channel(&mut g, "scale", 0.5);
    let offset = per_channel(&mut g, "offset", -0.25);
    let mean = per_channel(&mut g, "mean", 0.1);
    let variance = per_channel(&mut g, "variance", 1.0);
    let attrs = ConvAttrs {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Same,
        format: DataFormat::Nhwc,
    };
    let y = g.add_node(Op::Conv2D(attrs), vec![x, f], "conv").unwrap();
    let bn = Op::FusedBatchNorm {
        epsilon: 1e-3,
        format: DataFormat::Nhwc,
    };
    let z = g
        .add_node(
            bn,
            vec![lathe_ir::ValueId::first(y), scale, offset, mean, variance],
            "bn",
        )
        .unwrap();
    g.add_output("z", lathe_ir::ValueId::first(z)).unwrap();
    let model = Model::new(g, Backend::Interp).unwrap();
    let spec = |n: usize| {
        model
            .specialize_for(&[TensorType::known(DType::F32, &[n, 6, 6, 3])])
            .unwrap()
    };
    let (one, two) = (spec(1), spec(2));
    let original = weight_named(model.graph(), "f");
    let (a, b) = (
        constants_shaped(one.graph(), &[3, 3, 3, 64]),
        constants_shaped(two.graph(), &[3, 3, 3, 64]),
    );
    assert_eq!(
        (a.len(), b.len()),
        (1, 1),
        "one filter in each specialization"
    );
    assert!(
        !Arc::ptr_eq(&a[0], &original),
        "the batch norm was folded into a new filter"
    );
    assert!(
        Arc::ptr_eq(&a[0], &b[0]),
        "the two specializations hold the folded filter once"
    );
}

fn weight_named(g: &Graph, name: &str) -> Arc<Tensor> {
    constants(g)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .expect("the graph keeps the weight")
}
