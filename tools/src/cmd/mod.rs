//! One module per `lathe` subcommand.

pub mod bench;
pub mod dump;
pub mod inspect;
pub mod ops;
pub mod opt;
pub mod run;

use anyhow::Result;
use lathe_ir::Graph;
use std::path::Path;

/// Loads a model in any supported format.
pub fn load_model(path: &Path) -> Result<Graph> {
    Ok(lathe_compiler::load(path)?)
}
