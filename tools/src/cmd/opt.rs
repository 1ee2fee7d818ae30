//! Options every command that optimizes shares: `-O N` and `--passes`.

use anyhow::{anyhow, Result};
use clap::Args;
use lathe_compiler::pipeline::{level_text, Pipeline};
use lathe_runtime::ModelOptions;

/// How to optimize the graph before using it.
#[derive(Args, Clone, Debug)]
pub struct OptArgs {
    /// Optimization level: 0 (none) to 3.
    #[arg(short = 'O', value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub level: u8,
    /// Run exactly these passes instead of a level's pipeline, e.g.
    /// `fold-constants,prune,cse` or `fixed-point(fold-constants,cse),prune`.
    #[arg(long, value_name = "PASSES")]
    pub passes: Option<String>,
}

impl OptArgs {
    /// The pipeline text these options select.
    pub fn pipeline_text(&self) -> String {
        match &self.passes {
            Some(p) => p.clone(),
            None => level_text(self.level).to_string(),
        }
    }

    /// `options` with the pipeline these options select: what every command hands the runtime,
    /// so `run`, `bench`, `inspect` and `dump` optimize a specialization the same way.
    /// The pipeline is checked here, so a bad `--passes` is reported as the flag's error.
    pub fn model_options(&self, options: ModelOptions) -> Result<ModelOptions> {
        self.pipeline()?;
        Ok(ModelOptions {
            opt_level: self.level,
            passes: self.passes.clone(),
            ..options
        })
    }

    /// The pipeline these options select.
    pub fn pipeline(&self) -> Result<Pipeline> {
        Pipeline::parse(&self.pipeline_text()).map_err(|e| anyhow!("--passes: {e}"))
    }
}
