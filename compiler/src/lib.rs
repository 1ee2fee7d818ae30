//! Lathe's compiler: importers that turn saved graphs into IR, specialization to concrete input
//! shapes, optimization passes, and (to come) code generation.

#![forbid(unsafe_code)]

pub mod artifact;
pub mod import;

pub use import::{
    load, load_bound, load_with, BoundImport, Container, ImportError, LoadOptions, ModelFile,
    ModelFormat, NeedsValues,
};
pub mod passes;
pub mod pipeline;
pub mod specialize;
pub mod specialized;

pub use specialized::SpecializedGraph;
