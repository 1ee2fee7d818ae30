//! `lathe run`: run a model on `.npy` inputs; print each output's summary or save it as `.npy`.

use super::opt::OptArgs;
use crate::inputs::{read_inputs, signature_of};
use anyhow::{Context, Result};
use clap::Args;
use lathe_ir::Tensor;
use lathe_runtime::{Backend, ModelOptions};
use std::path::PathBuf;

/// Arguments of `lathe run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: super::source::ModelArgs,
    /// An input, as NAME=FILE.npy; a model with one input may omit `NAME=`. Repeat per input.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Write each output to DIR/<output name>.npy (characters outside [A-Za-z0-9_.-] become `_`).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Where to run: `cpu` (native code), `interp` (the reference interpreter) or `cuda` (an
    /// NVIDIA GPU; builds with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// Threads the cpu backend may use (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    #[command(flatten)]
    pub opt: OptArgs,
}

/// Runs `lathe run`.
pub fn run(args: RunArgs) -> Result<()> {
    let loaded = args.model.load_to_run()?;
    let inputs = read_inputs(loaded.declared(), &args.inputs)?;
    // The runtime specializes the graph to the inputs' shapes and optimizes that with `-O N`
    // or `--passes`, as `dump` shows.
    let options = args.opt.model_options(ModelOptions {
        backend: args.backend,
        threads: args.threads.map(|n| n as usize),
        ..ModelOptions::default()
    })?;
    // One call: the model is compiled for its inputs' signature only and keeps no copy of the
    // graph as loaded, so each weight is held once (packed, in its kernel).
    let signature = signature_of(loaded.declared(), &inputs);
    let model = loaded.into_model_for(options, &signature)?;
    lathe_runtime::tune_allocator(lathe_runtime::AllocPhase::Calls);
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let outputs = model.run(&named)?;
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (name, t) in &outputs {
        println!("{}", summarize(name, t));
        if let Some(dir) = &args.output_dir {
            let path = dir.join(format!("{}.npy", file_stem(name)));
            lathe_runtime::npy::write_file(&path, t).map_err(anyhow::Error::msg)?;
        }
    }
    Ok(())
}

/// The file name an output is saved under: every character outside `[A-Za-z0-9_.-]` becomes `_`.
pub fn file_stem(output_name: &str) -> String {
    output_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One line per output: name, dtype, shape and the first few values.
fn summarize(name: &str, t: &Tensor) -> String {
    const SHOWN: usize = 8;
    let vals = t.to_f64_vec();
    let mut shown: Vec<String> = vals
        .iter()
        .take(SHOWN)
        .map(|v| {
            if t.dtype().is_float() {
                format!("{v:.6}")
            } else {
                format!("{v}")
            }
        })
        .collect();
    if vals.len() > SHOWN {
        shown.push(format!("... ({} values)", vals.len()));
    }
    format!("{name}: {} [{}]", t.ty(), shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn output_file_names() {
        assert_eq!(file_stem("Identity:0"), "Identity_0");
        assert_eq!(file_stem("model/dense:1"), "model_dense_1");
        assert_eq!(file_stem("ok-name_1.x"), "ok-name_1.x");
    }
}
