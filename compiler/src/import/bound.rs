//! Importing a model again with some graph inputs bound to values: what a runtime does when
//! the importer needs an input's value ([`ImportError::needs_values`]), once per value.

use super::{load_bound, ImportError, LoadOptions};
use lathe_ir::{Graph, Tensor};
use std::path::PathBuf;

/// A model source that can be imported with graph inputs bound to values (`bound`: name and
/// value; empty for the generic import). The runtime's `Model` holds one to import per value
/// without linking the importers itself.
pub trait BoundImport: Send + Sync {
    /// The model imported and verified, with `bound`'s inputs taken as those constants.
    fn import(&self, bound: &[(String, Tensor)]) -> Result<Graph, ImportError>;
}

/// A model file and what to load of it; each import reads the file again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFile {
    pub path: PathBuf,
    pub options: LoadOptions,
}

impl ModelFile {
    /// The file at `path`, loaded with the default options.
    pub fn new(path: impl Into<PathBuf>) -> ModelFile {
        ModelFile {
            path: path.into(),
            options: LoadOptions::default(),
        }
    }
}

impl BoundImport for ModelFile {
    fn import(&self, bound: &[(String, Tensor)]) -> Result<Graph, ImportError> {
        load_bound(&self.path, &self.options, bound)
    }
}
