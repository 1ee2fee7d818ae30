//! Embedding Lathe in a service: load a model once, share it between worker threads, and run it
//! from all of them at once.
//!
//! Run with (from the repository root):
//!
//! ```sh
//! cargo run -p lathe-runtime --example embed -- tests/fixtures/tf/dynamic_batch/model.pb 4
//! ```
//!
//! The first argument is a frozen TensorFlow GraphDef (`.pb`) or Lathe IR text (`.lir`), the
//! second the number of worker threads. Each worker sends requests with its own batch size, so
//! the model compiles one specialization per batch size and then serves from its cache.

use lathe_ir::Tensor;
use lathe_runtime::{Backend, Model, ModelOptions};
use std::path::PathBuf;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "tests/fixtures/tf/dynamic_batch/model.pb".into()),
    );
    let workers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);

    // Import happens once, at start-up; `lathe_compiler::load` reads .pb and .lir files.
    let graph = lathe_compiler::load(&path)?;
    // Native code on the CPU; each call may split its kernels over 2 threads. A service that
    // runs many requests at once may prefer `threads: Some(1)` and one request per core.
    let model = Arc::new(Model::with_options(
        graph,
        ModelOptions {
            backend: Backend::Cpu,
            opt_level: 2,
            cache_capacity: 8,
            threads: Some(2),
            ..ModelOptions::default()
        },
    )?);
    for input in model.inputs() {
        println!("input  {}: {}", input.name, input.ty);
    }
    for output in model.outputs() {
        println!("output {output}");
    }

    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let model = Arc::clone(&model);
            std::thread::spawn(move || -> Result<String, String> {
                // A request: one tensor per model input, symbolic dims filled with this
                // worker's batch size.
                let batch = w % 3 + 1;
                let inputs: Vec<(String, Tensor)> = model
                    .inputs()
                    .iter()
                    .map(|i| {
                        let dims = i.ty.shape.known_or(batch);
                        let n: usize = dims.iter().product();
                        let vals: Vec<f64> = (0..n).map(|k| (k % 7) as f64 * 0.25).collect();
                        (i.name.clone(), Tensor::from_f64(i.ty.dtype, &dims, &vals))
                    })
                    .collect();
                let named: Vec<(&str, Tensor)> = inputs
                    .iter()
                    .map(|(n, t)| (n.as_str(), t.clone()))
                    .collect();
                let mut summary = String::new();
                for _ in 0..10 {
                    let outputs = model.run(&named).map_err(|e| e.to_string())?;
                    summary = outputs
                        .iter()
                        .map(|(name, t)| format!("{name}: {}", t.ty()))
                        .collect::<Vec<_>>()
                        .join(", ");
                }
                Ok(format!("worker {w} (batch {batch}): {summary}"))
            })
        })
        .collect();
    for h in handles {
        println!("{}", h.join().expect("worker panicked")?);
    }
    let stats = model.stats();
    println!(
        "{} calls, {} compiles, {} cache hits, {} specializations cached",
        stats.calls,
        stats.compiles,
        stats.cache_hits,
        model.specializations()
    );
    Ok(())
}
