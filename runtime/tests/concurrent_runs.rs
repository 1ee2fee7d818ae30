//! Many threads running one shared `Arc<Model>` on the `dynamic_batch` fixture (input
//! `x: f32[?,6]`) with batch sizes that change from call to call: every result must equal an
//! unshared, single-threaded interpreter run of the unspecialized graph, and each batch size
//! must compile once.

use lathe_ir::{Graph, Tensor};
use lathe_runtime::{Backend, Model};
use std::path::PathBuf;
use std::sync::Arc;

const THREADS: usize = 8;
const RUNS: usize = 50;
const BATCHES: [usize; 4] = [1, 2, 3, 4];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tf/dynamic_batch")
}

fn graph() -> Graph {
    lathe_compiler::import::tensorflow::import_file(&fixture_dir().join("model.pb")).unwrap()
}

/// `batch` rows cycled from the fixture's saved input, scaled by `scale`.
fn input(base: &Tensor, batch: usize, scale: f32) -> Tensor {
    let rows = base.shape()[0];
    let cols = base.shape()[1];
    let vals = base.to_f64_vec();
    let data: Vec<f32> = (0..batch * cols)
        .map(|i| vals[(i / cols % rows) * cols + i % cols] as f32 * scale)
        .collect();
    Tensor::from_vec(&[batch, cols], data)
}

/// Optimized code may reassociate (folded bias); results agree to this relative tolerance.
fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}");
    assert_eq!(got.shape(), want.shape(), "{what}");
    for (g, w) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: {g} vs {w}"
        );
    }
}

#[test]
fn eight_threads_share_one_model_across_batch_sizes() {
    let base = lathe_runtime::npy::read_file(&fixture_dir().join("input_0.npy")).unwrap();
    let model = Arc::new(Model::new(graph(), Backend::Interp).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (model, base) = (model.clone(), base.clone());
            std::thread::spawn(move || {
                // This thread's own copy of the graph, run by the interpreter, unspecialized.
                let reference = graph();
                for i in 0..RUNS {
                    let batch = BATCHES[(t + i) % BATCHES.len()];
                    let x = input(&base, batch, 1.0 + 0.01 * (t * RUNS + i) as f32);
                    let want = lathe_ir::interp::run(&reference, std::slice::from_ref(&x)).unwrap();
                    let got = model.run(&[("x", x)]).unwrap();
                    assert_eq!(got.len(), want.len());
                    for ((name, g), w) in got.iter().zip(&want) {
                        assert_close(g, w, &format!("thread {t} run {i} batch {batch} {name}"));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = model.stats();
    assert_eq!(s.calls, (THREADS * RUNS) as u64);
    assert_eq!(
        s.compiles,
        BATCHES.len() as u64,
        "one compile per batch size"
    );
    assert_eq!(s.cache_hits, (THREADS * RUNS - BATCHES.len()) as u64);
    assert_eq!((s.evictions, s.warned), (0, false));
    assert_eq!(model.specializations(), BATCHES.len());
    for sig in model.cached_signatures() {
        // The graph each cached specialization was compiled from (they keep only their plan).
        let (g, _) = model
            .optimized_graph(sig.types(), &mut lathe_compiler::pipeline::NoHooks)
            .unwrap();
        let g = g.graph();
        for id in g.node_ids() {
            let m = g.node(id).op.mnemonic();
            assert!(
                !matches!(m, "shape" | "strided_slice" | "pack"),
                "{sig}: `{}` ({m}) not folded",
                g.display_name(id)
            );
        }
    }
}

#[test]
fn matches_tensorflow_at_the_saved_batch() {
    let dir = fixture_dir();
    let x = lathe_runtime::npy::read_file(&dir.join("input_0.npy")).unwrap();
    let model = Model::new(graph(), Backend::Interp).unwrap();
    let got = model.run(&[("x", x)]).unwrap();
    for (k, (name, g)) in got.iter().enumerate() {
        let want = lathe_runtime::npy::read_file(&dir.join(format!("output_{k}.npy"))).unwrap();
        assert_eq!(g.shape(), want.shape(), "{name}");
        for (a, b) in g.to_f64_vec().iter().zip(want.to_f64_vec()) {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}: {a} vs {b}");
        }
    }
}
