//! A model whose importer needs an input's value (an ONNX `Resize` whose scales are a graph
//! input): `Model::from_import` imports it once per value, keyed like a shape input.

use lathe_compiler::{BoundImport, ImportError, ModelFile, NeedsValues};
use lathe_ir::ops::BinaryOp;
use lathe_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType};
use lathe_runtime::{Backend, Model, ModelOptions};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// `Resize(X, roi = "", scales)`, nearest, X: f32[1,1,2,2], scales: f32[4] (an ONNX backend
/// node test).
fn resize() -> Arc<ModelFile> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/onnx/node/test_resize_upsample_scales_nearest/model.onnx");
    Arc::new(ModelFile::new(path))
}

fn scales(s: &[f32]) -> Tensor {
    Tensor::from_vec(&[4], s.to_vec())
}

#[test]
fn two_scales_values_make_two_specializations() {
    for backend in [Backend::Cpu, Backend::Interp] {
        let options = ModelOptions {
            backend,
            ..ModelOptions::default()
        };
        let m = Model::from_import(resize(), options).unwrap();
        assert!(m.graph().is_none(), "imported per value, it keeps no graph");
        let names: Vec<&str> = m.inputs().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["X", "scales"]);
        assert_eq!(m.outputs(), ["Y"]);
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1f32, 2.0, 3.0, 4.0]);
        let by = |s: f32| m.run(&[("X", x.clone()), ("scales", scales(&[1.0, 1.0, s, s]))]);

        let y = by(2.0).unwrap().remove(0).1;
        assert_eq!(y.shape(), [1, 1, 4, 4]);
        #[rustfmt::skip]
        let want = [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0,
                    3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0];
        assert_eq!(y.to_f64_vec(), want, "{backend}");

        let y = by(3.0).unwrap().remove(0).1;
        assert_eq!(y.shape(), [1, 1, 6, 6]);
        let row = |a: f64, b: f64| [a, a, a, b, b, b];
        let want: Vec<f64> = [row(1.0, 2.0); 3]
            .into_iter()
            .chain([row(3.0, 4.0); 3])
            .flatten()
            .collect();
        assert_eq!(y.to_f64_vec(), want, "{backend}");

        by(2.0).unwrap();
        let s = m.stats();
        assert_eq!((s.calls, s.compiles, s.cache_hits), (3, 2, 1), "{backend}");
        assert_eq!(m.specializations(), 2);
        let keys: Vec<String> = m
            .cached_signatures()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "(X: f32[1,1,2,2], scales: f32[4] = [1.0, 1.0, 2.0, 2.0])",
                "(X: f32[1,1,2,2], scales: f32[4] = [1.0, 1.0, 3.0, 3.0])",
            ]
        );
    }
}

/// Without values (a tool compiling for types alone) the error is the importer's: it names
/// the input whose value is needed.
#[test]
fn compiling_for_types_alone_names_the_needed_input() {
    let m = Model::from_import(resize(), ModelOptions::default()).unwrap();
    let types = [
        TensorType::known(DType::F32, &[1, 1, 2, 2]),
        TensorType::known(DType::F32, &[4]),
    ];
    let e = m.specialize_for(&types).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "node `Y` (op Resize): `scales` must be known while importing (the gather indices \
             and weights are computed while importing), and it comes from the value of graph \
             input `scales`: such a model is imported once per value of it, given when it runs"
        ),
        "{e}"
    );
    assert_eq!(m.specializations(), 0);
}

/// An import that needs the value of input `k` (f32[?n]): `y = x * k[0]`, counting imports.
#[derive(Default)]
struct Scaler {
    imports: AtomicUsize,
}

impl BoundImport for Scaler {
    fn import(&self, bound: &[(String, Tensor)]) -> Result<Graph, ImportError> {
        self.imports.fetch_add(1, Ordering::SeqCst);
        let x_ty = TensorType::known(DType::F32, &[2]);
        let k_ty = TensorType::new(DType::F32, Shape(vec![Dim::sym("n")]));
        let Some((_, k)) = bound.iter().find(|(n, _)| n == "k") else {
            let mut e = ImportError::file(Path::new("scaler"), "needs the value of `k`");
            e.needs_values = Some(Box::new(NeedsValues {
                graph: "scaler".into(),
                inputs: vec!["k".into()],
                declared: vec![("x".into(), x_ty), ("k".into(), k_ty)],
                outputs: vec!["y".into()],
            }));
            return Err(e);
        };
        let mut g = Graph::new("scaler");
        let x = g.add_input("x", x_ty);
        g.add_input("k", k_ty);
        let c = g.add_const(
            Tensor::from_vec(&[], vec![k.to_f64_vec()[0] as f32]),
            "k[0]",
        );
        let y = g.add(Op::Binary(BinaryOp::Mul), vec![x, c], "y").unwrap();
        g.add_output("y", y).unwrap();
        Ok(g)
    }
}

#[test]
fn imports_once_per_value_and_refuses_large_keys() {
    let scaler = Arc::new(Scaler::default());
    let m = Model::from_import(scaler.clone(), ModelOptions::default()).unwrap();
    let x = Tensor::from_vec(&[2], vec![1f32, 2.0]);
    let k = |v: &[f32]| Tensor::from_vec(&[v.len()], v.to_vec());
    let y = |ks: &[f32]| m.run(&[("x", x.clone()), ("k", k(ks))]);
    assert_eq!(y(&[2.0]).unwrap()[0].1.to_f64_vec(), [2.0, 4.0]);
    assert_eq!(y(&[3.0, 0.0]).unwrap()[0].1.to_f64_vec(), [3.0, 6.0]);
    assert_eq!(y(&[2.0]).unwrap()[0].1.to_f64_vec(), [2.0, 4.0]);
    // The generic import, then one per value.
    assert_eq!(scaler.imports.load(Ordering::SeqCst), 3);
    assert_eq!(m.specializations(), 2);
    let e = y(&[1.0; 65]).unwrap_err().to_string();
    assert_eq!(
        e,
        "input `k` holds 65 values, but the model specializes by this input's value and takes \
         at most 64 as a key"
    );
    assert_eq!(scaler.imports.load(Ordering::SeqCst), 3);
}
