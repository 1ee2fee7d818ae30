//! The CPU backend on real models: every fixture gives the interpreter's outputs (and
//! TensorFlow's, within the fixture's tolerance), with one thread and with several, and one
//! loaded model run from many threads at once gives every caller its own right answer.
//!
//! Tolerance against the interpreter at the same optimization level: the CPU backend sums in
//! a different order (blocked GEMM, vectorized reductions) and uses polynomial `exp`/`erf`/`tanh`
//! accurate to a few ulp, so outputs may differ by `1e-4` relative to the largest expected
//! magnitude (plus the same absolute).

use lathe_runtime::{Backend, Model, ModelOptions};
use lathe_tests::{by_name, compare, Fixture, Tolerance};
use std::sync::Arc;

fn model(f: &Fixture, backend: Backend, threads: usize) -> Model {
    let options = ModelOptions {
        backend,
        threads: Some(threads),
        ..ModelOptions::default()
    };
    Model::with_options(f.graph(), options).expect("the fixture loads")
}

fn run(
    m: &Model,
    inputs: &[(String, lathe_ir::Tensor)],
) -> Result<Vec<(String, lathe_ir::Tensor)>, String> {
    let named: Vec<(&str, lathe_ir::Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    m.run(&named).map_err(|e| e.to_string())
}

fn tolerance(want: &lathe_ir::Tensor) -> Tolerance {
    let scale = want.to_f64_vec().iter().fold(1.0f64, |m, v| m.max(v.abs()));
    Tolerance {
        rtol: 1e-4,
        atol: 1e-4 * scale,
    }
}

#[test]
fn every_fixture_matches_the_interpreter_on_cpu() {
    let mut failures = vec![];
    for f in Fixture::all() {
        let inputs = f.inputs();
        let want = by_name(run(&model(&f, Backend::Interp, 1), &inputs).expect("interp runs"));
        for threads in [1, 3] {
            let m = model(&f, Backend::Cpu, threads);
            let got = match run(&m, &inputs) {
                Ok(o) => by_name(o),
                Err(e) => {
                    failures.push(format!("{} ({threads} threads): {e}", f.name));
                    continue;
                }
            };
            for (name, w) in &want {
                if let Err(e) = compare(&got[name], w, tolerance(w)) {
                    failures.push(format!(
                        "{} output `{name}` ({threads} threads): {e}",
                        f.name
                    ));
                }
            }
            // And TensorFlow's answer, within the fixture's own tolerance.
            for (meta, expected) in f.expected_outputs() {
                if let Err(e) = compare(&got[&meta.name], &expected, meta.tolerance()) {
                    failures.push(format!("{} vs TensorFlow `{}`: {e}", f.name, meta.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixtures_compile_without_the_interpreter() {
    // Every fixture plans with no interpreter step, but for those listed here (none now). The
    // list can only shrink: a listed fixture that plans with no interpreter step fails, so
    // remove it.
    const STILL_INTERPRETED: &[&str] = &[];
    let all = Fixture::all();
    for name in (lathe_tests::BENCHMARK_FIXTURES.into_iter())
        .chain(["densenet_tiny", "text_classifier_tiny"])
    {
        assert!(
            all.iter().any(|f| f.name == name),
            "fixture {name} is missing"
        );
    }
    for f in &all {
        let m = model(f, Backend::Cpu, 1);
        let types: Vec<_> = f.inputs().iter().map(|(_, t)| t.ty()).collect();
        let spec = m.specialize_for(&types).expect("compiles");
        let plan = spec.cpu_plan().expect("a cpu plan");
        let steps = plan.stats().interp_steps;
        if STILL_INTERPRETED.contains(&f.name.as_str()) {
            assert!(
                steps > 0,
                "{}: no interpreter step now; drop it from the list",
                f.name
            );
        } else {
            assert_eq!(steps, 0, "{}: {:?}", f.name, plan.interp_steps());
        }
    }
}

#[test]
fn every_fixture_moves_data_without_the_interpreter() {
    // Shape-family ops (views, concat, slices, gather, ...) always have a native kernel, for
    // every dtype: no fixture plans one of them on the interpreter.
    const MOVEMENT: [&str; 20] = [
        "identity",
        "identity_n",
        "stop_gradient",
        "reshape",
        "squeeze",
        "expand_dims",
        "pad",
        "concat",
        "transpose",
        "shape",
        "strided_slice",
        "slice",
        "gather",
        "pack",
        "unpack",
        "fill",
        "range",
        "tile",
        "noop",
        "copy",
    ];
    let mut failures = vec![];
    for f in Fixture::all() {
        let m = model(&f, Backend::Cpu, 1);
        let types: Vec<_> = f.inputs().iter().map(|(_, t)| t.ty()).collect();
        let spec = m.specialize_for(&types).expect("compiles");
        let plan = spec.cpu_plan().expect("a cpu plan");
        for (node, op, reason) in plan.interp_steps() {
            if MOVEMENT.contains(&op.as_str()) {
                failures.push(format!("{}: node `{node}` ({op}): {reason}", f.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn one_model_many_threads_every_result_right() {
    let f = Fixture::open("resnet_tiny");
    let inputs = f.inputs();
    let want = by_name(run(&model(&f, Backend::Interp, 1), &inputs).expect("interp runs"));
    let m = Arc::new(model(&f, Backend::Cpu, 2));
    // Per thread, its own scaled input, so a result landing in the wrong caller shows.
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let m = m.clone();
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                let scale = 1.0 + t as f32 * 0.25;
                let scaled: Vec<(String, lathe_ir::Tensor)> = inputs
                    .iter()
                    .map(|(n, x)| {
                        let v: Vec<f32> =
                            x.to_f64_vec().iter().map(|&v| v as f32 * scale).collect();
                        (n.clone(), lathe_ir::Tensor::from_vec(x.shape(), v))
                    })
                    .collect();
                let mut results = vec![];
                for _ in 0..10 {
                    results.push(run(&m, &scaled).expect("runs"));
                }
                (scaled, results)
            })
        })
        .collect();
    let reference = model(&f, Backend::Interp, 1);
    for h in handles {
        let (scaled, results) = h.join().expect("no panic");
        let expect = by_name(run(&reference, &scaled).unwrap());
        for r in results {
            for (name, got) in by_name(r) {
                compare(&got, &expect[&name], tolerance(&expect[&name])).unwrap();
            }
        }
    }
    assert!(!want.is_empty());
    assert_eq!(m.stats().compiles, 1);
}
