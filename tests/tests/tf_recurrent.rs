//! Recurrent layers and control flow from TensorFlow (`tests/fixtures/tf_recurrent`, made by
//! `make_recurrent.py`): Keras LSTM, GRU, SimpleRNN and Bidirectional layers, with and without
//! `return_sequences`, a `tf.function` with `tf.while_loop` and `tf.cond`, and one with
//! `tf.switch_case`. Each model comes frozen (TensorFlow 1 loops for the Keras layers, functional
//! `While`/`If` with a library for `while_cond`) and as a SavedModel (functional `While`, `If`,
//! `Case`); both forms must give TensorFlow's output on the interpreter and natively on the CPU
//! at one and several threads, with no interpreter steps. (Freezing lowers `Case` to a
//! TensorFlow 1 conditional, which is refused with advice.)

use lathe_ir::{Op, Tensor};
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

const FIXTURES: [&str; 8] = [
    "bidirectional",
    "gru",
    "gru_seq",
    "lstm",
    "lstm_seq",
    "simple_rnn",
    "switch_case",
    "while_cond",
];

/// Whether a graph holds control flow (a `while` or an `if`).
fn has_control_flow(g: &lathe_ir::Graph) -> bool {
    g.node_ids()
        .into_iter()
        .any(|id| matches!(g.node(id).op, Op::While { .. } | Op::If { .. }))
}

#[test]
fn recurrent_models_match_tensorflow_from_both_forms_on_both_backends() {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, FIXTURES);
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
        for form in ["frozen.pb", "saved_model"] {
            let what = format!("{name} ({form})");
            if (name, form) == ("switch_case", "frozen.pb") {
                let e = lathe_compiler::load(&dir.join(form))
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("(op Merge): a TensorFlow 1 conditional"), "{e}");
                continue;
            }
            let g = lathe_compiler::load(&dir.join(form)).unwrap_or_else(|e| panic!("{what}: {e}"));
            lathe_ir::verify(&g).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(has_control_flow(&g), "{what}: no control flow was imported");
            assert_eq!(g.inputs().len(), 1, "{what}: inputs");
            assert_eq!(g.outputs().len(), 1, "{what}: outputs");
            for (backend, threads) in [(Backend::Interp, 1), (Backend::Cpu, 1), (Backend::Cpu, 3)] {
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
                    .unwrap_or_else(|e| panic!("{what} {backend:?}: {e}"))
                    .into_iter()
                    .map(|(_, t)| t)
                    .collect();
                compare(&got[0], &want, tol)
                    .unwrap_or_else(|e| panic!("{what} {backend:?} x{threads}: {e}"));
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
}

#[test]
fn frozen_keras_loops_keep_only_the_real_input() {
    // Freezing leaves `unused_control_flow_input*` placeholders; they are not inputs.
    let g = lathe_compiler::load(&root().join("lstm/frozen.pb")).unwrap();
    let names: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["x"]);
}
