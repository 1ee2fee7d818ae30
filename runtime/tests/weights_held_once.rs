//! Weights are held once: the CPU plan shares the graph's constants instead of copying them,
//! lets go of those its kernels hold packed, and specializations of one model share them.

use lathe_ir::ops::{ConvAttrs, DataFormat, Op, Padding};
use lathe_ir::{DType, Dim, Graph, Shape, Tensor, TensorType};
use lathe_runtime::{Backend, Model};
use std::sync::Arc;

/// `x: f32[?batch, 8]` → `x @ w` (w: 8×16).
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
    // Four rows (a GEMM) and one row (a matrix-vector product): both read the weight packed,
    // so the plan needs no other copy.
    for rows in [4, 1] {
        let spec = model
            .specialize_for(&[TensorType::known(DType::F32, &[rows, 8])])
            .unwrap();
        let plan = spec.cpu_plan().expect("a cpu plan");
        assert!(plan.stats().gemm_steps > 0, "{:?}", plan.stats());
        assert!(
            plan.constants().iter().all(|t| t.shape() != [8, 16]),
            "{rows} rows: the packed weight is still a constant of the plan"
        );
        // And it still computes `x @ w`.
        let x = Tensor::from_vec(&[rows, 8], (0..8 * rows).map(|i| (i % 5) as f32).collect());
        let got = model.run(&[("x", x.clone())]).unwrap();
        let want = lathe_ir::interp::run(&dense(), &[x]).unwrap();
        assert_eq!(got[0].1.to_f64_vec(), want[0].to_f64_vec());
    }
}

#[test]
fn an_unpacked_weight_is_shared_with_the_graph_not_copied() {
    // `w @ x`: a constant left operand is read from memory as it is (only B is packed).
    let mut g = Graph::new("left");
    let cols = Shape(vec![Dim::Known(8), Dim::sym("n")]);
    let x = g.add_input("x", TensorType::new(DType::F32, cols));
    let w = g.add_const(
        Tensor::from_vec(&[16, 8], (0..128).map(|i| i as f32 / 64.0).collect()),
        "w",
    );
    let mm = Op::MatMul {
        transpose_a: false,
        transpose_b: false,
    };
    let y = g.add_node(mm, vec![w, x], "y").unwrap();
    g.add_output("y", lathe_ir::ValueId::first(y)).unwrap();
    let model = Model::new(g, Backend::Cpu).unwrap();
    let spec = model
        .specialize_for(&[TensorType::known(DType::F32, &[8, 4])])
        .unwrap();
    let plan = spec.cpu_plan().expect("a cpu plan");
    let held = plan.constants();
    let w = constants_shaped(model.graph().unwrap(), &[16, 8]);
    assert_eq!(w.len(), 1, "one weight in the graph");
    assert!(
        held.iter().any(|t| Arc::ptr_eq(t, &w[0])),
        "the plan copied the weight instead of sharing it"
    );
}

#[test]
fn specializations_share_their_weight_tensors() {
    // The interpreter runs the specialized graphs themselves: each holds the model's tensor.
    let model = Model::new(dense(), Backend::Interp).unwrap();
    let one = model
        .specialize_for(&[TensorType::known(DType::F32, &[1, 8])])
        .unwrap();
    let four = model
        .specialize_for(&[TensorType::known(DType::F32, &[4, 8])])
        .unwrap();
    let w = weight(model.graph().unwrap());
    assert!(Arc::ptr_eq(&weight(one.graph().unwrap()), &w));
    assert!(Arc::ptr_eq(&weight(four.graph().unwrap()), &w));
}

#[test]
fn a_cached_cpu_specialization_keeps_only_its_plan() {
    let model = Model::new(dense(), Backend::Cpu).unwrap();
    let four = model
        .specialize_for(&[TensorType::known(DType::F32, &[4, 8])])
        .unwrap();
    assert!(four.graph().is_none());
    // The model's graph and the packed panels: the plain weight is held by the model only.
    let w = weight(model.graph().unwrap());
    assert_eq!(Arc::strong_count(&w), 2, "the model's graph and `w` itself");
}

/// The weak references to every constant of `g` of `shape`.
fn weak_constants(g: &Graph, shape: &[usize]) -> Vec<std::sync::Weak<Tensor>> {
    constants_shaped(g, shape)
        .iter()
        .map(Arc::downgrade)
        .collect()
}

#[test]
fn a_model_for_one_signature_holds_each_weight_once_packed() {
    let g = conv_bn();
    let filter = weak_constants(&g, &[3, 3, 3, 64]);
    assert_eq!(filter.len(), 1);
    let x = TensorType::known(DType::F32, &[2, 6, 6, 3]);
    let model =
        Model::for_signature(g.clone(), Default::default(), std::slice::from_ref(&x)).unwrap();
    drop(g);
    assert!(model.graph().is_none(), "no graph as loaded is kept");
    // Neither the filter as loaded nor the one the batch norm was folded into is held: the
    // convolution's kernel holds the only copy, packed.
    assert_eq!(
        filter[0].strong_count(),
        0,
        "the loaded filter is still held"
    );
    let spec = model.specialize_for(std::slice::from_ref(&x)).unwrap();
    let plan = spec.cpu_plan().unwrap();
    assert!(plan.constants().iter().all(|t| t.shape() != [3, 3, 3, 64]));
    assert_eq!(plan.stats().interp_steps, 0);
    // It computes what the interpreter does.
    let input = Tensor::from_vec(&[2, 6, 6, 3], (0..216).map(|i| (i % 9) as f32).collect());
    let got = model.run(&[("x", input.clone())]).unwrap();
    let want = lathe_ir::interp::run(&conv_bn(), &[input]).unwrap();
    for (a, b) in got[0].1.to_f64_vec().iter().zip(want[0].to_f64_vec()) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // Another signature has no graph to be specialized from: a clear error, not a panic.
    let other = TensorType::known(DType::F32, &[3, 6, 6, 3]);
    let err = model.specialize_for(&[other]).unwrap_err().to_string();
    assert!(
        err.contains("was compiled for (x: f32[2,6,6,3]) only")
            && err.contains("(x: f32[3,6,6,3])"),
        "{err}"
    );
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
    let g = conv_bn();
    let model = Model::new(g, Backend::Interp).unwrap();
    let spec = |n: usize| {
        model
            .specialize_for(&[TensorType::known(DType::F32, &[n, 6, 6, 3])])
            .unwrap()
    };
    let (one, two) = (spec(1), spec(2));
    let original = weight_named(model.graph().unwrap(), "f");
    let (a, b) = (
        constants_shaped(one.graph().unwrap(), &[3, 3, 3, 64]),
        constants_shaped(two.graph().unwrap(), &[3, 3, 3, 64]),
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

/// `x: f32[?batch, 6, 6, 3]` → conv2d (a 3×3×3×64 filter `f`) → fused batch norm.
fn conv_bn() -> Graph {
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
    g
}
