//! The model argument every command that loads a model takes, with what to load of a
//! SavedModel.

use anyhow::Result;
use clap::Args;
use lathe_compiler::LoadOptions;
use lathe_ir::Graph;
use std::path::PathBuf;

/// Which model to load.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// The model: a SavedModel directory, a frozen GraphDef `.pb`, an ONNX model `.onnx` or Lathe IR text `.lir` (the
    /// format is told from the content: a directory holding `saved_model.pb` is a SavedModel)
    pub model: PathBuf,
    /// SavedModel: the tag of the MetaGraphDef to load [default: serve]
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// SavedModel: the signature to load; its keys name the inputs and outputs
    /// [default: serving_default]
    #[arg(long, value_name = "NAME")]
    pub signature: Option<String>,
}

impl ModelArgs {
    /// Loads the model.
    pub fn load(&self) -> Result<Graph> {
        let options = LoadOptions {
            tag: self.tag.clone(),
            signature: self.signature.clone(),
        };
        Ok(lathe_compiler::load_with(&self.model, &options)?)
    }
}
