//! The TensorFlow fixtures exported to ONNX by tf2onnx (`model.onnx` next to `model.pb`, made
//! by `tests/fixtures/make_onnx.py`): each imports, matches TensorFlow's outputs on the
//! interpreter and on the CPU backend (1 and 3 threads), plans with no interpreter step, and
//! optimizes to about the graph its frozen form does.

use lathe_ir::{Graph, Tensor};
use lathe_runtime::{Backend, Model, ModelOptions};
use lathe_tests::{by_name, compare, Fixture};
use std::collections::BTreeMap;

/// Fixtures tf2onnx cannot export to valid ONNX (`make_onnx.py` skips them), with why.
const NOT_EXPORTED: &[(&str, &str)] = &[("elementwise", "tf2onnx writes Erfc, not an ONNX op")];

/// Fixtures whose ONNX form uses an op Lathe does not import yet. Shrinks only: a listed
/// fixture that imports fails, so remove it.
const NOT_IMPORTED: &[&str] = &[];

fn onnx_fixtures() -> Vec<Fixture> {
    let all = Fixture::all();
    for f in &all {
        let has = f.dir.join("model.onnx").is_file();
        let skipped = NOT_EXPORTED.iter().any(|(n, _)| *n == f.name);
        assert_eq!(has, !skipped, "{}: model.onnx present: {has}", f.name);
    }
    all.into_iter()
        .filter(|f| f.dir.join("model.onnx").is_file())
        .collect()
}

fn load(f: &Fixture) -> Result<Graph, String> {
    lathe_compiler::load(&f.dir.join("model.onnx")).map_err(|e| e.to_string())
}

/// The fixture's inputs under their ONNX names (tf2onnx names tensors `x:0`).
fn inputs(f: &Fixture) -> Vec<(String, Tensor)> {
    f.inputs()
        .into_iter()
        .map(|(n, t)| (format!("{n}:0"), t))
        .collect()
}

fn model(g: Graph, backend: Backend, threads: usize) -> Model {
    let options = ModelOptions {
        backend,
        threads: Some(threads),
        ..ModelOptions::default()
    };
    Model::with_options(g, options).expect("the model loads")
}

fn run(m: &Model, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, String> {
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    m.run(&named).map_err(|e| e.to_string())
}

#[test]
fn every_onnx_fixture_matches_tensorflow() {
    let mut failures = vec![];
    let mut checked = 0;
    for f in onnx_fixtures() {
        let g = match (load(&f), NOT_IMPORTED.contains(&f.name.as_str())) {
            (Ok(_), true) => {
                failures.push(format!(
                    "{}: imports now; drop it from NOT_IMPORTED",
                    f.name
                ));
                continue;
            }
            (Err(e), true) => {
                assert!(e.contains("not supported"), "{}: {e}", f.name);
                continue;
            }
            (Err(e), false) => {
                failures.push(format!("{}: {e}", f.name));
                continue;
            }
            (Ok(g), false) => g,
        };
        let inputs = inputs(&f);
        for (backend, threads) in [(Backend::Interp, 1), (Backend::Cpu, 1), (Backend::Cpu, 3)] {
            let got = match run(&model(g.clone(), backend, threads), &inputs) {
                Ok(o) => by_name(o),
                Err(e) => {
                    failures.push(format!("{} ({backend}, {threads} threads): {e}", f.name));
                    continue;
                }
            };
            for (meta, want) in f.expected_outputs() {
                match got.get(&meta.name) {
                    Some(t) => {
                        if let Err(e) = compare(t, &want, meta.tolerance()) {
                            failures.push(format!(
                                "{} `{}` ({backend}, {threads} threads): {e}",
                                f.name, meta.name
                            ));
                        }
                    }
                    None => failures.push(format!("{}: no output `{}`", f.name, meta.name)),
                }
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 17, "only {checked} ONNX fixtures checked");
}

/// Op counts of a model's graph as `run` optimizes it for the fixture's inputs.
fn optimized_ops(g: Graph, inputs: &[(String, Tensor)]) -> BTreeMap<String, usize> {
    let m = model(g, Backend::Cpu, 1);
    let types: Vec<_> = inputs.iter().map(|(_, t)| t.ty()).collect();
    let (opt, _) = m
        .optimized_graph(&types, &mut lathe_compiler::pipeline::NoHooks)
        .expect("optimizes");
    let g = opt.graph();
    let mut counts = BTreeMap::new();
    for id in g.node_ids() {
        let op = &g.node(id).op;
        if !matches!(op, lathe_ir::Op::Const(_) | lathe_ir::Op::Input { .. }) {
            *counts.entry(op.mnemonic().to_string()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn onnx_fixtures_plan_natively_and_optimize_like_their_frozen_graphs() {
    let mut differ = vec![];
    for f in onnx_fixtures() {
        if NOT_IMPORTED.contains(&f.name.as_str()) {
            continue;
        }
        let g = load(&f).expect("imports");
        let inputs = inputs(&f);
        let m = model(g.clone(), Backend::Cpu, 1);
        let types: Vec<_> = inputs.iter().map(|(_, t)| t.ty()).collect();
        let spec = m.specialize_for(&types).expect("compiles");
        let plan = spec.cpu_plan().expect("a cpu plan");
        assert_eq!(
            plan.stats().interp_steps,
            0,
            "{}: {:?}",
            f.name,
            plan.interp_steps()
        );
        // The convolutional benchmark architectures and the MLP optimize to the same kernels
        // from both forms: the same contractions and fused groups, give or take a layout
        // transpose or a reshape. (tf2onnx rewrites the encoder's einsums as transposed
        // matmuls and a layer norm's mean as a GlobalAveragePool, and the text classifier's
        // max-over-time as a pool: those differ in form and are timed instead.)
        const SAME_KERNELS: [&str; 5] = [
            "mlp_tiny",
            "cnn_tiny",
            "mobilenet_tiny",
            "resnet_tiny",
            "densenet_tiny",
        ];
        if !SAME_KERNELS.contains(&f.name.as_str()) {
            continue;
        }
        let from_onnx = optimized_ops(g, &inputs);
        let from_pb = optimized_ops(f.graph(), &f.inputs());
        let heavy = |c: &BTreeMap<String, usize>| -> BTreeMap<String, usize> {
            c.iter()
                .filter(|(op, _)| {
                    !matches!(
                        op.as_str(),
                        "transpose" | "reshape" | "identity" | "squeeze"
                    )
                })
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        if heavy(&from_onnx) != heavy(&from_pb) {
            differ.push(format!(
                "{}: ONNX {from_onnx:?} vs frozen {from_pb:?}",
                f.name
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
