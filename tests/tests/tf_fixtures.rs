//! Every TensorFlow fixture under `tests/fixtures/tf/`, imported and run on the reference
//! interpreter, gives TensorFlow's outputs within the fixture's per-output tolerance, and the
//! imported signature is the one TensorFlow recorded in `meta.json`.

use lathe_ir::{Dim, Tensor};
use lathe_tests::{
    bit_identical, by_name, compare, first_rows, fixture_names, read_npy, run_interp, tile_rows,
    Fixture, MIN_FIXTURES,
};
use std::collections::BTreeSet;

/// The fixtures `tests/fixtures/README.md` describes; each must be present.
const KNOWN: [&str; 19] = [
    "cnn_tiny",
    "conv",
    "densenet_tiny",
    "dynamic_batch",
    "einsum",
    "elementwise",
    "encoder_tiny",
    "fused_batchnorm",
    "gelu_chain_tiny",
    "identity_noop",
    "int_ops",
    "matmul",
    "mlp_tiny",
    "mobilenet_tiny",
    "multi_io",
    "reduce",
    "resnet_tiny",
    "shape",
    "text_classifier_tiny",
];

#[test]
fn fixture_directories_are_all_present_and_complete() {
    let names = fixture_names();
    assert!(
        names.len() >= MIN_FIXTURES,
        "found {} fixture directories, expected at least {MIN_FIXTURES}: {names:?}",
        names.len()
    );
    for k in KNOWN {
        assert!(
            names.iter().any(|n| n == k),
            "fixture `{k}` is missing: {names:?}"
        );
    }
    for f in Fixture::all() {
        assert!(f.model_path().is_file(), "{}: no model.pb", f.name);
        assert!(
            !f.meta.inputs.is_empty(),
            "{}: no inputs in meta.json",
            f.name
        );
        assert!(
            !f.meta.outputs.is_empty(),
            "{}: no outputs in meta.json",
            f.name
        );
        // Reading checks each file against the dtype and shape meta.json records.
        assert_eq!(f.inputs().len(), f.meta.inputs.len());
        assert_eq!(f.expected_outputs().len(), f.meta.outputs.len());
    }
}

/// One line per failing fixture output, so that one bad fixture does not hide the others.
fn check_fixture(f: &Fixture) -> Vec<String> {
    let fail = |what: String| vec![format!("{}: {what}", f.name)];
    let graph = match lathe_compiler::load(&f.model_path()) {
        Ok(g) => g,
        Err(e) => return fail(format!("import failed: {e}")),
    };
    let got = match run_interp(graph, &f.inputs()) {
        Ok(outs) => by_name(outs),
        Err(e) => return fail(e),
    };
    let mut failures = Vec::new();
    for (meta, want) in f.expected_outputs() {
        match got.get(&meta.name) {
            None => failures.push(format!(
                "{}: output `{}` was not produced (got: {:?})",
                f.name,
                meta.name,
                got.keys().collect::<BTreeSet<_>>()
            )),
            Some(t) => {
                if let Err(e) = compare(t, &want, meta.tolerance()) {
                    failures.push(format!("{}: output `{}`: {e}", f.name, meta.name));
                }
            }
        }
    }
    failures
}

#[test]
fn every_fixture_matches_tensorflow() {
    let fixtures = Fixture::all();
    assert!(
        fixtures.len() >= MIN_FIXTURES,
        "only {} fixtures",
        fixtures.len()
    );
    // The fixtures are independent; run them on separate threads (the big ones dominate).
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = fixtures
            .iter()
            .map(|f| (f, s.spawn(|| check_fixture(f))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(f, h)| {
                h.join()
                    .unwrap_or_else(|_| vec![format!("{}: panicked (see above)", f.name)])
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} fixture output(s) differ from TensorFlow:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn imported_signatures_match_tensorflow() {
    let mut failures = Vec::new();
    for f in Fixture::all() {
        let g = f.graph();
        // Inputs: the Placeholders, in the order of meta.json, with their declared types.
        let got_inputs: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
        let want_inputs: Vec<&str> = f.meta.inputs.iter().map(|i| i.name.as_str()).collect();
        if got_inputs != want_inputs {
            failures.push(format!(
                "{}: inputs {got_inputs:?}, want {want_inputs:?}",
                f.name
            ));
            continue;
        }
        for (decl, meta) in g.inputs().iter().zip(&f.meta.inputs) {
            let dims = decl.ty.shape.dims();
            let same_shape = dims.len() == meta.placeholder_shape.len()
                && dims
                    .iter()
                    .zip(&meta.placeholder_shape)
                    .all(|(d, m)| match (d, m) {
                        (Dim::Known(n), Some(m)) => n == m,
                        (Dim::Known(_), None) | (_, Some(_)) => false,
                        (_, None) => true,
                    });
            if decl.ty.dtype.numpy_name() != meta.dtype || !same_shape {
                failures.push(format!(
                    "{}: input `{}` is {}, TensorFlow declared {} {:?}",
                    f.name, decl.name, decl.ty, meta.dtype, meta.placeholder_shape
                ));
            }
        }
        // Outputs: the same set of names, each with TensorFlow's dtype, and a shape that
        // admits TensorFlow's (symbolic where the input's batch is unknown).
        let got_outputs: BTreeSet<&str> = g.outputs().iter().map(|o| o.name.as_str()).collect();
        let want_outputs: BTreeSet<&str> = f.meta.outputs.iter().map(|o| o.name.as_str()).collect();
        if got_outputs != want_outputs || g.outputs().len() != f.meta.outputs.len() {
            failures.push(format!(
                "{}: outputs {got_outputs:?}, want {want_outputs:?}",
                f.name
            ));
            continue;
        }
        for o in g.outputs() {
            let meta = f
                .meta
                .outputs
                .iter()
                .find(|m| m.name == o.name)
                .expect("same set");
            let ty = g.value_type(o.value);
            if ty.dtype.numpy_name() != meta.dtype || !ty.shape.admits(&meta.shape) {
                failures.push(format!(
                    "{}: output `{}` is {ty}, TensorFlow gave {} {:?}",
                    f.name, o.name, meta.dtype, meta.shape
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn only_dynamic_batch_has_a_symbolic_input_dimension() {
    for f in Fixture::all() {
        let g = f.graph();
        let symbolic: Vec<String> = g
            .inputs()
            .iter()
            .filter(|i| {
                i.ty.shape
                    .dims()
                    .iter()
                    .any(|d| !matches!(d, Dim::Known(_)))
            })
            .map(|i| i.name.clone())
            .collect();
        if f.name == "dynamic_batch" {
            assert_eq!(symbolic, ["x"], "{}", f.name);
        } else {
            assert!(
                symbolic.is_empty(),
                "{}: symbolic inputs {symbolic:?}",
                f.name
            );
        }
    }
}

/// The CLI reads inputs with `lathe_runtime::npy`; it must read every fixture file exactly as
/// the tests' own reader (npyz, directly) does.
#[test]
fn runtime_npy_reader_agrees_on_every_fixture_file() {
    let mut files = 0;
    for f in Fixture::all() {
        let names = f
            .meta
            .inputs
            .iter()
            .map(|i| &i.file)
            .chain(f.meta.outputs.iter().map(|o| &o.file));
        for name in names {
            let path = f.dir.join(name);
            let ours: Tensor = lathe_runtime::npy::read_file(&path)
                .unwrap_or_else(|e| panic!("lathe_runtime::npy::read_file: {e}"));
            bit_identical(&ours, &read_npy(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            files += 1;
        }
    }
    assert!(files >= 2 * MIN_FIXTURES, "only {files} .npy files");
}

/// `dynamic_batch` declares `x: f32[?,6]`; the same graph must run at other batch sizes, and
/// since every op is row-wise, its outputs are TensorFlow's rows, repeated or cut.
#[test]
fn dynamic_batch_runs_at_other_batch_sizes() {
    let f = Fixture::open("dynamic_batch");
    let x = f.inputs().remove(0).1;
    assert_eq!(x.shape(), [3, 6]);
    let want = f.expected_outputs();
    // The same row transform applies to the input and to each expected output.
    let transforms: [fn(&Tensor) -> Tensor; 2] = [|t| tile_rows(t, 2), |t| first_rows(t, 1)];
    for transform in transforms {
        let input = transform(&x);
        let batch = input.shape()[0];
        let got = by_name(run_interp(f.graph(), &[("x".to_string(), input)]).unwrap());
        for (meta, w) in &want {
            let g = &got[&meta.name];
            compare(g, &transform(w), meta.tolerance())
                .unwrap_or_else(|e| panic!("batch {batch}, output `{}`: {e}", meta.name));
        }
    }
}
