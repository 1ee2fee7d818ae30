//! SavedModel directories TensorFlow wrote (`tests/fixtures/tf_saved`, made by
//! `make_saved_models.py`): every signature imports with its keys as input and output names,
//! and gives TensorFlow's outputs on the interpreter and natively on the CPU (no interpreter
//! steps). Also the errors for a wrong tag or signature and for damaged variables.

use lathe_compiler::import::tensorflow::bundle::Bundle;
use lathe_compiler::import::tensorflow::saved_model::{import_dir, SavedModelOptions};
use lathe_runtime::{Backend, Model, ModelOptions};
use lathe_tests::{by_name, compare, read_npy, Tolerance};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Meta {
    signatures: BTreeMap<String, Sig>,
    rtol: f64,
    atol: f64,
}

#[derive(Deserialize)]
struct Sig {
    inputs: Vec<String>,
    outputs: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tf_saved")
}

fn options(signature: &str) -> SavedModelOptions {
    SavedModelOptions {
        tag: None,
        signature: Some(signature.into()),
    }
}

#[test]
fn every_signature_matches_tensorflow_on_both_backends() {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dynamic_batch",
            "keras_export",
            "keras_saved",
            "module_saved",
            "module_text"
        ]
    );
    let mut checked = 0;
    for name in &names {
        let dir = root().join(name);
        let meta: Meta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        for (sig, io) in &meta.signatures {
            let what = format!("{name} signature {sig}");
            let g = import_dir(&dir.join("saved_model"), &options(sig))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            lathe_ir::verify(&g).unwrap_or_else(|e| panic!("{what}: {e}"));
            let in_names: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
            assert_eq!(in_names, io.inputs, "{what}: inputs");
            let out_names: Vec<&str> = g.outputs().iter().map(|o| o.name.as_str()).collect();
            assert_eq!(out_names, io.outputs, "{what}: outputs");
            let inputs: Vec<(&str, lathe_ir::Tensor)> = io
                .inputs
                .iter()
                .map(|k| (k.as_str(), read_npy(&dir.join(format!("{sig}.{k}.npy")))))
                .collect();
            for backend in [Backend::Interp, Backend::Cpu] {
                let m = Model::with_options(
                    g.clone(),
                    ModelOptions {
                        backend,
                        ..ModelOptions::default()
                    },
                )
                .unwrap();
                let got = by_name(m.run(&inputs).unwrap_or_else(|e| panic!("{what}: {e}")));
                for k in &io.outputs {
                    let want = read_npy(&dir.join(format!("{sig}.{k}.npy")));
                    let tol = Tolerance {
                        rtol: meta.rtol,
                        atol: meta.atol,
                    };
                    compare(&got[k], &want, tol)
                        .unwrap_or_else(|e| panic!("{what} {backend:?} output {k}: {e}"));
                }
                if backend == Backend::Cpu {
                    let types: Vec<_> = inputs.iter().map(|(_, t)| t.ty()).collect();
                    let spec = m.specialize_for(&types).unwrap();
                    let plan = spec.cpu_plan().expect("a cpu plan");
                    assert_eq!(
                        plan.stats().interp_steps,
                        0,
                        "{what}: {:?}",
                        plan.interp_steps()
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7, "signatures checked");
}

#[test]
fn the_default_signature_is_serving_default() {
    let dir = root().join("module_saved/saved_model");
    let g = lathe_compiler::load(&dir).unwrap();
    let out_names: Vec<&str> = g.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(out_names, ["logits", "probs"]);
}

#[test]
fn unknown_tags_and_signatures_are_one_line_errors_listing_what_there_is() {
    let dir = root().join("module_saved/saved_model");
    let e = import_dir(&dir, &options("nope")).unwrap_err().to_string();
    assert!(e.contains("saved_model.pb"), "{e}");
    assert!(
        e.contains("no signature `nope` (signatures: `affine`, `serving_default`)"),
        "{e}"
    );
    let opts = SavedModelOptions {
        tag: Some("train".into()),
        signature: None,
    };
    let e = import_dir(&dir, &opts).unwrap_err().to_string();
    assert!(
        e.contains("no MetaGraphDef has tag `train` (tag sets: `serve`)"),
        "{e}"
    );
}

/// A copy of a fixture's SavedModel in a temporary directory, removed on drop.
struct Copy(PathBuf);

impl Copy {
    fn of(name: &str) -> Copy {
        let to = std::env::temp_dir().join(format!("lathe-saved-{}-{name}", std::process::id()));
        let from = root().join(name).join("saved_model");
        for sub in ["", "variables"] {
            std::fs::create_dir_all(to.join(sub)).unwrap();
            for e in std::fs::read_dir(from.join(sub)).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_file() {
                    std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
                }
            }
        }
        Copy(to)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn damaged_variables_are_errors_naming_the_file_and_the_variable() {
    let c = Copy::of("keras_export");
    let data = c.0.join("variables/variables.data-00000-of-00001");
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    // A byte in the middle of the largest variable (the dense layer's kernel).
    let bundle = Bundle::open(&c.0.join("variables/variables")).unwrap();
    let largest = bundle
        .keys()
        .filter_map(|k| bundle.entry(k))
        .max_by_key(|e| e.size)
        .unwrap();
    bytes[(largest.offset + largest.size / 2) as usize] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    let e = lathe_compiler::load(&c.0).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("variables.data-00000-of-00001"), "{s}");
    assert!(s.contains("checksum mismatch"), "{s}");
    assert!(
        e.node.is_some() && e.op.as_deref() == Some("VarHandleOp"),
        "{s}"
    );
    // Truncated.
    std::fs::write(&data, &bytes[..n / 3]).unwrap();
    let s = lathe_compiler::load(&c.0).unwrap_err().to_string();
    assert!(s.contains("run past the end of the shard"), "{s}");
    // Missing.
    std::fs::remove_file(c.0.join("variables/variables.index")).unwrap();
    let s = lathe_compiler::load(&c.0).unwrap_err().to_string();
    assert!(s.contains("variables.index: cannot read"), "{s}");
    // A corrupt saved_model.pb.
    let pb = c.0.join("saved_model.pb");
    let mut b = std::fs::read(&pb).unwrap();
    b.truncate(b.len() / 2);
    std::fs::write(&pb, &b).unwrap();
    let s = lathe_compiler::load(&c.0).unwrap_err().to_string();
    assert!(s.contains("saved_model.pb: not a valid SavedModel"), "{s}");
}

#[test]
fn a_broken_text_format_saved_model_is_an_error_naming_the_file() {
    let c = Copy::of("module_text");
    let txt = c.0.join("saved_model.pbtxt");
    let mut text = std::fs::read_to_string(&txt).unwrap();
    text.push_str("\nmeta_graphs { no_such_field: 1 }\n");
    std::fs::write(&txt, text).unwrap();
    let s = lathe_compiler::load(&c.0).unwrap_err().to_string();
    assert!(
        s.contains("saved_model.pbtxt: not a valid text-format SavedModel"),
        "{s}"
    );
    assert!(!s.contains('\n'), "{s}");
}
