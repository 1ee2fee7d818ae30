//! Lathe's runtime: a loaded [`Model`] that many threads can run at once.
//!
//! The runtime takes an already-imported IR [`Graph`](lathe_ir::Graph); it never links the
//! importers (it uses `lathe-compiler` without its `tensorflow` feature), so a service can run
//! models without the protobuf code. Each call's input signature (dtypes and concrete shapes)
//! selects a [`Specialization`]: the graph specialized to those shapes and optimized, compiled
//! on first use and kept in a bounded LRU cache. Today the one backend is the reference
//! interpreter ([`Backend::Interp`]); compiled backends plug in behind the same API.

mod cache;
pub mod cpu;
pub mod kernels;
mod model;
pub mod npy;
mod specialization;

pub use model::{Model, ModelOptions, ModelStats};
pub use specialization::{Signature, Specialization};

use lathe_compiler::passes::PassError;
use lathe_compiler::specialize::SpecializeError;
use lathe_ir::IrError;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Where a model's computation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// The reference interpreter: slow, obviously correct, the oracle for everything else.
    #[default]
    Interp,
}

impl Backend {
    /// Every backend, by name.
    pub const ALL: [Backend; 1] = [Backend::Interp];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Interp => "interp",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                format!("unknown backend `{s}` (available: {})", names.join(", "))
            })
    }
}

/// Errors from loading or running a model.
#[derive(Debug, Error)]
pub enum RunError {
    /// An input name the model does not have.
    #[error("model has no input named `{name}` (its inputs: {known})")]
    UnknownInput { name: String, known: String },
    /// A model input the caller did not give.
    #[error("missing input `{name}`")]
    MissingInput { name: String },
    /// The same input given twice.
    #[error("input `{name}` given more than once")]
    DuplicateInput { name: String },
    /// The inputs do not fit the model's signature (the message names the input), or the
    /// graph cannot be specialized to their shapes.
    #[error(transparent)]
    Specialize(#[from] SpecializeError),
    /// The optimizer failed on a specialization.
    #[error("optimizing the specialization for {signature}: {source}")]
    Optimize {
        signature: String,
        source: PassError,
    },
    /// [`ModelOptions`] that cannot work.
    #[error("invalid model options: {0}")]
    Options(String),
    /// The graph is invalid, an input does not fit, or an op failed.
    #[error(transparent)]
    Ir(#[from] IrError),
}
