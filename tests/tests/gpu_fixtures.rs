//! The GPU backend's kernels on real models, without a GPU: every fixture, specialized to its
//! inputs and optimized as a run would, lowered to MLIR kernels that run on the host (each
//! kernel's host function, compiled by MLIR's JIT through melior) through the same executor
//! the CUDA device uses, must give the interpreter's outputs (and TensorFlow's, within the
//! fixture's tolerance); and on a CUDA device where there is one. Needs the `cuda` feature
//! (LLVM/MLIR 19); CI runs it so.
#![cfg(feature = "cuda")]

use lathe_compiler::pipeline::NoHooks;
use lathe_gpu::cuda::CudaDevice;
use lathe_gpu::exec::{Device, Loaded};
use lathe_gpu::host_device::HostDevice;
use lathe_runtime::{Backend, Model, ModelOptions};
use lathe_tests::{by_name, compare, Fixture, Tolerance};

fn tolerance(want: &lathe_ir::Tensor) -> Tolerance {
    // Sums in f32 in loop order (the interpreter sums in f64), and erfc by a fit: relative to
    // the largest magnitude, as the CPU backend's fixture test allows.
    let scale = want.to_f64_vec().iter().fold(1.0f64, |m, v| m.max(v.abs()));
    Tolerance {
        rtol: 1e-4,
        atol: 1e-4 * scale,
    }
}

/// Every fixture on a fresh device from `device`: the failures, one line each.
fn check_fixtures<D: Device>(mut device: impl FnMut() -> D, label: &str) -> Vec<String> {
    let mut failures = vec![];
    for f in Fixture::all() {
        let options = ModelOptions {
            backend: Backend::Interp,
            ..ModelOptions::default()
        };
        let model = Model::with_options(f.graph(), options).expect("the fixture loads");
        let inputs = f.inputs();
        let named: Vec<(&str, lathe_ir::Tensor)> = inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let want = by_name(model.run(&named).expect("the interpreter runs"));
        let types: Vec<_> = inputs.iter().map(|(_, t)| t.ty()).collect();
        let (specialized, _) = model
            .optimized_graph(&types, &mut NoHooks)
            .expect("the fixture optimizes");
        let graph = specialized.into_graph();
        let mut device = device();
        let loaded = match Loaded::new(&mut device, graph.clone()) {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("{}: {e}", f.name));
                continue;
            }
        };
        // The graph's inputs in its signature order.
        let ordered: Vec<lathe_ir::Tensor> = (graph.inputs().iter())
            .map(|i| {
                (inputs.iter().find(|(n, _)| *n == i.name))
                    .map(|(_, t)| t.clone())
                    .expect("an input per graph input")
            })
            .collect();
        let got = match loaded.run(&mut device, &ordered) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{}: {e}", f.name));
                continue;
            }
        };
        let got: std::collections::HashMap<String, lathe_ir::Tensor> =
            (graph.outputs().iter().map(|o| o.name.clone()))
                .zip(got)
                .collect();
        for (name, w) in &want {
            match got.get(name) {
                Some(g) => {
                    if let Err(e) = compare(g, w, tolerance(w)) {
                        failures.push(format!("{} output `{name}`: {e}", f.name));
                    }
                }
                None => failures.push(format!("{}: no output `{name}`", f.name)),
            }
        }
        for (meta, expected) in f.expected_outputs() {
            if let Some(g) = got.get(&meta.name) {
                if let Err(e) = compare(g, &expected, meta.tolerance()) {
                    failures.push(format!("{} vs TensorFlow `{}`: {e}", f.name, meta.name));
                }
            }
        }
        eprintln!(
            "{}: {} kernels on the {label} match",
            f.name,
            loaded.lowered().kernels.len()
        );
    }
    failures
}

#[test]
fn every_fixture_runs_its_mlir_kernels_on_the_host() {
    let failures = check_fixtures(HostDevice::new, "host");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// On a CUDA device, where there is one; skipped (with a note) where there is none, unless
/// `LATHE_REQUIRE_GPU=1`.
#[test]
fn every_fixture_matches_on_a_cuda_device() {
    if let Err(why) = CudaDevice::new(0) {
        assert!(
            std::env::var_os("LATHE_REQUIRE_GPU").is_none_or(|v| v != "1"),
            "LATHE_REQUIRE_GPU=1 but {why}"
        );
        eprintln!("note: skipped: {why}");
        return;
    }
    let failures = check_fixtures(|| CudaDevice::new(0).expect("the device"), "GPU");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_assembles_for_sm_80_and_sm_90() {
    let Some(ptxas) = lathe_gpu::mlir::host::Ptxas::find() else {
        assert!(
            std::env::var_os("LATHE_REQUIRE_MLIR").is_none_or(|v| v != "1"),
            "LATHE_REQUIRE_MLIR=1 but LATHE_CUDA_NVCC names no ptxas and libdevice"
        );
        eprintln!("note: LATHE_CUDA_NVCC not set; the PTX is made but not assembled");
        return;
    };
    let native = lathe_gpu::mlir::native::Native::new();
    let mut failures = vec![];
    for f in Fixture::all() {
        let model = Model::with_options(
            f.graph(),
            ModelOptions {
                backend: Backend::Interp,
                ..ModelOptions::default()
            },
        )
        .expect("the fixture loads");
        let types: Vec<_> = f.inputs().iter().map(|(_, t)| t.ty()).collect();
        let (specialized, _) = model
            .optimized_graph(&types, &mut NoHooks)
            .expect("the fixture optimizes");
        let lowered = lathe_gpu::mlir::lower_graph(specialized.graph()).expect("it lowers");
        for chip in ["sm_80", "sm_90"] {
            let checked = native
                .ptx(&lowered.text, chip, Some(&ptxas.libdevice))
                .and_then(|ptx| {
                    let missing = (lowered.kernels.iter())
                        .find(|k| !ptx.contains(&format!(".entry {}(", k.symbol)));
                    match missing {
                        Some(k) => Err(format!("no entry `{}` in the PTX", k.symbol)),
                        None => ptxas.assemble(&ptx, chip),
                    }
                });
            if let Err(e) = checked {
                failures.push(format!("{} ({chip}): {e}", f.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The benchmark models (`benches/make_models.py DIR`: `DIR/NAME/model.onnx`, `input.npy`,
/// `output.npy`, one input and one output each) on the host through MLIR's JIT, against
/// onnxruntime's outputs. Too slow for every run (the kernels are loops, run on one core):
/// `LATHE_BENCH_MODELS=DIR cargo test -p lathe-tests --features cuda --test gpu_fixtures --
/// --ignored`.
#[test]
#[ignore]
fn benchmark_models_run_their_mlir_kernels_on_the_host() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("LATHE_BENCH_MODELS").expect("LATHE_BENCH_MODELS names the models"),
    );
    let mut failures = vec![];
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the models directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    names.sort();
    for m in names {
        let start = std::time::Instant::now();
        let model = Model::open(
            &m.join("model.onnx"),
            ModelOptions {
                backend: Backend::Interp,
                ..ModelOptions::default()
            },
        )
        .expect("the model loads");
        let x = lathe_tests::read_npy(&m.join("input.npy"));
        let want = lathe_tests::read_npy(&m.join("output.npy"));
        let (specialized, _) = model
            .optimized_graph(&[x.ty()], &mut NoHooks)
            .expect("the model optimizes");
        let mut device = HostDevice::new();
        let got = Loaded::new(&mut device, specialized.into_graph())
            .and_then(|l| l.run(&mut device, &[x]))
            .map_err(|e| e.to_string())
            .and_then(|o| compare(&o[0], &want, tolerance(&want)).map_err(|e| e.to_string()));
        eprintln!("{}: {:?} in {:.1?}", m.display(), got, start.elapsed());
        if let Err(e) = got {
            failures.push(format!("{}: {e}", m.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
