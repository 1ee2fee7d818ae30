//! Turning `--input NAME=FILE.npy` arguments into named tensors for a model.

use anyhow::{bail, Result};
use lathe_ir::{Graph, Tensor, TensorType};
use std::path::{Path, PathBuf};

/// One `--input` argument: `NAME=FILE` or, for a model with one input, just `FILE`.
pub fn parse_input_args(g: &Graph, args: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let names: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
    let mut out = Vec::new();
    for arg in args {
        // A name is only split off when it names an input, so file paths may contain '='.
        let named = arg
            .split_once('=')
            .filter(|(n, _)| names.contains(n) || !Path::new(arg).exists());
        match named {
            Some((name, file)) => {
                if !names.contains(&name) {
                    bail!(
                        "--input {arg}: the model has no input named `{name}` (its inputs: {})",
                        names.join(", ")
                    );
                }
                out.push((name.to_string(), PathBuf::from(file)));
            }
            None if names.len() == 1 => out.push((names[0].to_string(), PathBuf::from(arg))),
            None => bail!(
                "--input {arg}: the model has {} inputs, so name it: --input NAME=FILE.npy (its inputs: {})",
                names.len(),
                names.join(", ")
            ),
        }
    }
    for decl in g.inputs() {
        if !out.iter().any(|(n, _)| *n == decl.name) {
            let hint = if names.len() == 1 {
                "FILE.npy".to_string()
            } else {
                format!("{}=FILE.npy", decl.name)
            };
            bail!(
                "missing input `{}` ({}): pass --input {hint}",
                decl.name,
                decl.ty
            );
        }
    }
    Ok(out)
}

/// Reads every input file, checking each against its declared dtype and shape so that the
/// error names the file.
pub fn read_inputs(g: &Graph, args: &[String]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (name, path) in parse_input_args(g, args)? {
        let t = lathe_runtime::npy::read_file(&path).map_err(anyhow::Error::msg)?;
        let decl = g
            .inputs()
            .iter()
            .find(|i| i.name == name)
            .expect("names checked");
        if t.dtype() != decl.ty.dtype || !decl.ty.shape.admits(t.shape()) {
            bail!(
                "input `{name}` from {}: expected {}, got {}",
                path.display(),
                decl.ty,
                t.ty()
            );
        }
        out.push((name, t));
    }
    Ok(out)
}

/// The types of named `inputs`, in `g`'s input order (`--input` may name them in any order):
/// the signature a run with them specializes to.
pub fn signature_of(g: &Graph, inputs: &[(String, Tensor)]) -> Vec<TensorType> {
    g.inputs()
        .iter()
        .filter_map(|d| inputs.iter().find(|(n, _)| *n == d.name))
        .map(|(_, t)| t.ty())
        .collect()
}
