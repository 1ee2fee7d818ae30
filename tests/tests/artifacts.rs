//! Compiled artifacts (`.lathe`) round-trip: every fixture, compiled for its inputs' signature
//! with its generic graph, written, read back and loaded, gives bit for bit the outputs of the
//! model loaded from its source, with its specialization compiled at load (no passes) and no
//! compile at the call; other signatures come from the generic graph, or are refused without
//! it; contents made for CPU features this machine lacks are refused.

use lathe_compiler::artifact::{Artifact, Meta};
use lathe_compiler::pipeline::{level_text, NoHooks};
use lathe_ir::{Graph, Tensor, TensorType};
use lathe_runtime::{Model, ModelOptions};
use lathe_tests::{bit_identical, by_name, Fixture};

fn options() -> ModelOptions {
    ModelOptions {
        threads: Some(1),
        ..ModelOptions::default()
    }
}

fn run(m: &Model, inputs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    m.run(&named).unwrap_or_else(|e| panic!("{e}"))
}

/// The input types of `inputs`, in `g`'s input order.
fn types(g: &Graph, inputs: &[(String, Tensor)]) -> Vec<TensorType> {
    g.inputs()
        .iter()
        .map(|i| {
            let (_, t) = inputs
                .iter()
                .find(|(n, _)| *n == i.name)
                .expect("every input given");
            t.ty()
        })
        .collect()
}

/// `g` compiled as `lathe compile` does: optimized for each of `signatures`, generic kept
/// or not.
fn compile(g: Graph, signatures: &[Vec<TensorType>], generic: bool) -> Artifact {
    let model = Model::with_options(g.clone(), options()).unwrap();
    let specializations: Vec<Graph> = signatures
        .iter()
        .map(|t| {
            model
                .optimized_graph(t, &mut NoHooks)
                .unwrap()
                .0
                .into_graph()
        })
        .collect();
    Artifact {
        meta: Meta {
            producer: "test".into(),
            model: g.name.clone(),
            source: "fixture".into(),
            pipeline: level_text(2).into(),
            backend: "cpu".into(),
            cpu_features: vec![],
            specializations: signatures.iter().map(|t| format!("{t:?}")).collect(),
        },
        generic: generic.then_some(g),
        specializations,
    }
}

/// Written and read back.
fn reread(a: &Artifact) -> Artifact {
    Artifact::from_bytes(&a.to_bytes()).unwrap()
}

#[test]
fn every_fixture_round_trips_bit_for_bit() {
    for f in Fixture::all() {
        round_trip(&f, f.graph(), f.inputs());
        // And its ONNX form, whose inputs tf2onnx names `x:0`.
        let onnx = f.dir.join("model.onnx");
        if onnx.is_file() {
            let g = lathe_compiler::load(&onnx).unwrap();
            let inputs = (f.inputs().into_iter())
                .map(|(n, t)| (format!("{n}:0"), t))
                .collect::<Vec<_>>();
            round_trip(&f, g, inputs);
        }
    }
}

/// `g` (fixture `f`'s) compiled for `inputs`, written, read and loaded, gives bit for bit the
/// outputs of `g` loaded as it is.
fn round_trip(f: &Fixture, g: Graph, inputs: Vec<(String, Tensor)>) {
    {
        let sig = types(&g, &inputs);
        let want = by_name(run(
            &Model::with_options(g.clone(), options()).unwrap(),
            &inputs,
        ));
        let loaded = Model::from_artifact(reread(&compile(g, &[sig], true)), options()).unwrap();
        assert_eq!(loaded.stats().compiles, 1, "{}: compiled at load", f.name);
        let got = by_name(run(&loaded, &inputs));
        assert_eq!(
            loaded.stats().compiles,
            1,
            "{}: no compile at the call",
            f.name
        );
        for (name, w) in &want {
            bit_identical(&got[name], w).unwrap_or_else(|e| panic!("{} `{name}`: {e}", f.name));
        }
    }
}

const BATCHED: &str = r#"graph @m(%x: f32[?n,3]) -> ("y": f32[?n,3]) {
  %0 = const dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [1.5, 2.5, 3.5], [0.5, 0.25, 0.125], [9.0, 8.0, 7.0], [6.0, 5.0, 4.0], [3.0, 2.0, 1.0], [0.0, 1.0, 0.0]]> : f32[9,3]
  %1 = const dense<[0, 0]> : i64[2]
  %2 = const dense<[3, 3]> : i64[2]
  %3 = slice(%0, %1, %2) : f32[3,3]
  %4 = matmul(%x, %3) {transpose_a = false, transpose_b = false} : f32[?n,3]
  %5 = tanh(%4) : f32[?n,3]
  return %5
}"#;

fn batch(n: usize) -> Vec<(String, Tensor)> {
    let v: Vec<f32> = (0..n * 3).map(|i| i as f32 * 0.1 - 0.4).collect();
    vec![("x".to_string(), Tensor::from_vec(&[n, 3], v))]
}

#[test]
fn other_signatures_come_from_the_generic_graph_or_are_refused() {
    let g = lathe_ir::text::parse(BATCHED).unwrap();
    let two = types(&g, &batch(2));
    let want = by_name(run(
        &Model::with_options(g.clone(), options()).unwrap(),
        &batch(5),
    ));
    let with = Model::from_artifact(
        reread(&compile(g.clone(), std::slice::from_ref(&two), true)),
        options(),
    )
    .unwrap();
    let got = by_name(run(&with, &batch(5)));
    bit_identical(&got["y"], &want["y"]).unwrap();
    assert_eq!(
        with.stats().compiles,
        2,
        "batch 5 compiled from the generic graph"
    );

    let four = types(&g, &batch(4));
    let without =
        Model::from_artifact(reread(&compile(g, &[two, four], false)), options()).unwrap();
    assert_eq!(without.specializations(), 2);
    run(&without, &batch(4));
    let five = batch(5);
    let named: Vec<(&str, Tensor)> = five.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let e = without.run(&named).unwrap_err().to_string();
    assert!(
        e.contains("f32[5,3]") && e.contains("f32[2,3]") && e.contains("f32[4,3]"),
        "{e}"
    );
}

#[test]
fn contents_for_missing_cpu_features_are_refused() {
    let g = lathe_ir::text::parse(BATCHED).unwrap();
    let mut a = compile(g, &[], true);
    a.meta.cpu_features = vec!["quantum-fma".into()];
    let e = Model::from_artifact(reread(&a), options())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CPU features this machine lacks (quantum-fma)"),
        "{e}"
    );
}
