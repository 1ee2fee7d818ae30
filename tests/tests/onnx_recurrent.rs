//! Recurrent layers and control flow from ONNX: the tf2onnx exports (`model.onnx`) of the
//! `tests/fixtures/tf_recurrent` models, whose Keras LSTMs become ONNX `LSTM` nodes, GRUs and
//! SimpleRNNs `Loop`s with scan outputs, and `tf.while_loop`/`tf.cond` a `Loop` and an `If`.
//! Each must give TensorFlow's output on the interpreter and natively on the CPU at one and
//! several threads, with no interpreter steps.

use lathe_ir::{Graph, Op, Tensor};
use lathe_runtime::{Backend, Model, ModelOptions};
use lathe_tests::{compare, read_npy, Tolerance};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Meta {
    rtol: f64,
    atol: f64,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tf_recurrent")
}

/// The fixtures with an ONNX form (`switch_case` has none: tf2onnx cannot export `Case`).
const FIXTURES: [&str; 7] = [
    "bidirectional",
    "gru",
    "gru_seq",
    "lstm",
    "lstm_seq",
    "simple_rnn",
    "while_cond",
];

/// How many `while` and `if` nodes a graph holds, regions included.
fn control_flow_nodes(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .map(|id| match &g.node(id).op {
            Op::While { cond, body } => 1 + control_flow_nodes(cond) + control_flow_nodes(body),
            Op::If {
                then_branch,
                else_branch,
            } => 1 + control_flow_nodes(then_branch) + control_flow_nodes(else_branch),
            _ => 0,
        })
        .sum()
}

#[test]
fn onnx_recurrent_models_match_tensorflow_on_both_backends() {
    let with_onnx: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut with_onnx = with_onnx;
    with_onnx.sort();
    assert_eq!(with_onnx, FIXTURES);
    for name in FIXTURES {
        let dir = root().join(name);
        let meta: Meta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let tol = Tolerance {
            rtol: meta.rtol,
            atol: meta.atol,
        };
        let x = read_npy(&dir.join("input.npy"));
        let want = read_npy(&dir.join("output.npy"));
        let path = dir.join("model.onnx");
        let g = lathe_compiler::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        lathe_ir::verify(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            control_flow_nodes(&g) > 0,
            "{name}: no control flow was imported"
        );
        assert_eq!(g.inputs().len(), 1, "{name}: inputs");
        assert_eq!(g.outputs().len(), 1, "{name}: outputs");
        for (backend, threads) in [(Backend::Interp, 1), (Backend::Cpu, 1), (Backend::Cpu, 3)] {
            let what = format!("{name} {backend:?} x{threads}");
            let m = Model::with_options(
                g.clone(),
                ModelOptions {
                    backend,
                    threads: Some(threads),
                    ..ModelOptions::default()
                },
            )
            .unwrap();
            let input_name = g.inputs()[0].name.clone();
            let got: Vec<Tensor> = m
                .run(&[(input_name.as_str(), x.clone())])
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            compare(&got[0], &want, tol).unwrap_or_else(|e| panic!("{what}: {e}"));
            if backend == Backend::Cpu {
                let spec = m.specialize_for(&[x.ty()]).unwrap();
                let plan = spec.cpu_plan().expect("a cpu plan");
                assert_eq!(
                    plan.stats().interp_steps,
                    0,
                    "{what}: {:?}",
                    plan.interp_steps()
                );
            }
        }
    }
}

#[test]
fn onnx_lstm_imports_as_a_loop_over_the_steps() {
    // The LSTM node is one `while` (one direction); the bidirectional one two, and the GRU
    // after it (a tf2onnx `Loop`) a third.
    for (name, loops) in [
        ("lstm", 1),
        ("lstm_seq", 1),
        ("bidirectional", 3),
        ("gru", 1),
    ] {
        let g = lathe_compiler::load(&root().join(name).join("model.onnx")).unwrap();
        assert_eq!(control_flow_nodes(&g), loops, "{name}");
    }
}
