//! Benchmark helpers: the test fixtures as benchmark inputs, loaded, specialized to their
//! recorded inputs and optimized at a given level, so that a criterion benchmark states only
//! what it times.
//!
//! The side-by-side comparison with other runtimes is `compare.py` (see `README.md`).

#![forbid(unsafe_code)]

use lathe_ir::{Graph, Tensor, TensorType};
use lathe_runtime::{Backend, Model, ModelOptions};
use std::path::PathBuf;

/// The directory of TensorFlow fixture `name` (`tests/fixtures/tf/<name>`).
pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tf")
        .join(name)
}

/// A fixture ready to time: the model, optimized at some level, and its recorded inputs.
pub struct Bench {
    pub model: Model,
    pub inputs: Vec<(String, Tensor)>,
}

impl Bench {
    /// Loads fixture `name` (its `model.pb` and `input_<k>.npy`, one per graph input in order)
    /// for `backend` and compiles its specialization for those inputs at `level`. Panics
    /// naming what failed: a benchmark with a broken fixture has nothing to measure.
    pub fn fixture(name: &str, level: u8, backend: Backend) -> Bench {
        let dir = fixture_dir(name);
        let graph: Graph = lathe_compiler::load(&dir.join("model.pb"))
            .unwrap_or_else(|e| panic!("fixture `{name}`: {e}"));
        let inputs: Vec<(String, Tensor)> = graph
            .inputs()
            .iter()
            .enumerate()
            .map(|(k, decl)| {
                let path = dir.join(format!("input_{k}.npy"));
                let t = lathe_runtime::npy::read_file(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                (decl.name.clone(), t)
            })
            .collect();
        let options = ModelOptions {
            backend,
            opt_level: level,
            ..ModelOptions::default()
        };
        let model =
            Model::with_options(graph, options).unwrap_or_else(|e| panic!("fixture `{name}`: {e}"));
        // Compile the specialization now, so that no timed run includes it.
        let signature: Vec<TensorType> = inputs.iter().map(|(_, t)| t.ty()).collect();
        model
            .specialize_for(&signature)
            .unwrap_or_else(|e| panic!("fixture `{name}` at -O{level}: {e}"));
        Bench { model, inputs }
    }

    /// The inputs as [`Model::run`] takes them.
    pub fn named_inputs(&self) -> Vec<(&str, Tensor)> {
        self.inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect()
    }

    /// Bytes of all inputs and outputs of one run: what an elementwise chain must at least
    /// read and write, the measure of its throughput.
    pub fn io_bytes(&self) -> u64 {
        let outputs = self
            .model
            .run(&self.named_inputs())
            .unwrap_or_else(|e| panic!("running the benchmark model: {e}"));
        let sum = |ts: &mut dyn Iterator<Item = &Tensor>| ts.map(Tensor::size_bytes).sum::<usize>();
        (sum(&mut self.inputs.iter().map(|(_, t)| t)) + sum(&mut outputs.iter().map(|(_, t)| t)))
            as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_load_and_run() {
        for name in ["mlp_tiny", "gelu_chain_tiny"] {
            let b = Bench::fixture(name, 2, Backend::Interp);
            assert_eq!(b.inputs.len(), b.model.inputs().len());
            // gelu_chain_tiny: f32[1,8,32] in and out.
            if name == "gelu_chain_tiny" {
                assert_eq!(b.io_bytes(), 2 * 8 * 32 * 4);
            }
        }
    }
}
