//! One module per `lathe` subcommand.

pub mod bench;
pub mod conformance;
pub mod dump;
pub mod inspect;
pub mod ops;
pub mod opt;
pub mod run;
pub mod source;

use lathe_ir::{Graph, TensorType};

/// The model's declared input types with every unknown or symbolic dimension bound to 1
/// (batch 1): the signature `inspect` and `dump` specialize to when given no inputs.
pub fn declared_signature(g: &Graph) -> Vec<TensorType> {
    g.inputs()
        .iter()
        .map(|i| TensorType::known(i.ty.dtype, &i.ty.shape.known_or(1)))
        .collect()
}

/// `(x: f32[1,784], y: i32[1])`.
pub fn describe_signature(g: &Graph, types: &[TensorType]) -> String {
    lathe_compiler::specialize::describe_signature(g, types)
}
