//! One module per `lathe` subcommand.

pub mod bench;
pub mod cold;
pub mod compile;
pub mod conformance;
pub mod dump;
pub mod inspect;
pub mod ops;
pub mod opt;
pub mod run;
pub mod serve;
pub mod source;

use anyhow::{bail, Context, Result};
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

/// `--shape NAME=D0,D1,...` (`NAME=` may be left out for a model of one input): the index of
/// the input it names in `g` and its dimensions.
pub fn parse_shape(g: &Graph, s: &str) -> Result<(usize, Vec<usize>)> {
    let inputs = g.inputs();
    let (i, dims) = match s.split_once('=') {
        Some((name, dims)) => {
            let i = inputs
                .iter()
                .position(|d| d.name == name)
                .with_context(|| {
                    let names: Vec<&str> = inputs.iter().map(|d| d.name.as_str()).collect();
                    format!(
                        "--shape {s}: the model has no input named `{name}` (its inputs: {})",
                        names.join(", ")
                    )
                })?;
            (i, dims)
        }
        None if inputs.len() == 1 => (0, s),
        None => bail!("--shape {s}: name the input (NAME=DIMS); the model has several"),
    };
    if dims.trim().is_empty() {
        return Ok((i, vec![]));
    }
    let dims = dims
        .split(',')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--shape {s}: dims must be numbers like 1,224,224,3"))?;
    Ok((i, dims))
}
