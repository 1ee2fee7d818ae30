//! `lathe compile`: import and optimize a model once, for the signatures it will be called
//! with, and write a `.lathe` artifact that every command and `Model::load` read without the
//! importers and without optimizing again (see `lathe_compiler::artifact`).

use super::opt::OptArgs;
use super::source::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lathe_ir::{Graph, TensorType};
use lathe_runtime::{Model, ModelOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `lathe compile`.
#[derive(Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Where to write the artifact (`model.lathe`).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// An input's shape to specialize for, as NAME=D0,D1,... (NAME= may be omitted for a model
    /// with one input). Repeat an input's --shape for more specializations: the k-th --shape of
    /// each input belongs to the k-th specialization, and an input given fewer keeps its last
    /// (or declared) shape. Without any, the declared shapes, when all are known.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
    /// Leave the generic graph out: smaller, but calls of other signatures are refused.
    #[arg(long)]
    pub no_generic: bool,
    #[command(flatten)]
    pub opt: OptArgs,
}

/// Runs `lathe compile`.
pub fn run(args: CompileArgs) -> Result<()> {
    let start = Instant::now();
    // On a terminal, a bar through the steps (import, each specialization, writing); nothing
    // is drawn when stderr is not one.
    let bar = ProgressBar::new_spinner()
        .with_message(format!("importing {}", args.model.model.display()));
    bar.enable_steady_tick(Duration::from_millis(120));
    let graph = args.model.load()?;
    let signatures = signatures(&graph, &args.shapes)?;
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} [{bar:24}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_length(signatures.len() as u64 + 2);
    bar.set_position(1);
    if signatures.is_empty() && args.no_generic {
        bail!(
            "nothing to compile: the model's inputs have unknown dimensions ({}), so give \
             --shape for each, or keep the generic graph",
            super::describe_signature(
                &graph,
                &graph
                    .inputs()
                    .iter()
                    .map(|i| i.ty.clone())
                    .collect::<Vec<_>>()
            )
        );
    }
    let options = args.opt.model_options(ModelOptions::default())?;
    let model = Model::with_options(graph, options)?;
    let compiled = lathe_runtime::artifact::compile(
        &model,
        &signatures,
        !args.no_generic,
        &args.model.model.display().to_string(),
        &args.opt.pipeline_text(),
        |signature| {
            bar.set_message(format!("compiled for {signature}"));
            bar.inc(1);
        },
    )?;
    let described = compiled.artifact.meta.specializations.clone();
    bar.set_message(format!("writing {}", args.output.display()));
    compiled
        .artifact
        .write(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    bar.finish_and_clear();
    for why in &compiled.unstored {
        eprintln!("note: no compiled plan stored (compiled again at each load) for {why}");
    }
    let size = std::fs::metadata(&args.output)?.len();
    println!(
        "{}: {} specialization{}{}, {}, in {:.0} ms",
        args.output.display(),
        described.len(),
        if described.len() == 1 { "" } else { "s" },
        if described.is_empty() {
            String::new()
        } else {
            format!(" {}", described.join(", "))
        } + if args.no_generic {
            ""
        } else {
            " + the generic graph"
        },
        human_bytes(size),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// The signatures `--shape` asks for (see [`CompileArgs::shapes`]).
fn signatures(graph: &Graph, shapes: &[String]) -> Result<Vec<Vec<TensorType>>> {
    let inputs = graph.inputs();
    let mut given: Vec<Vec<Vec<usize>>> = vec![Vec::new(); inputs.len()];
    for s in shapes {
        let (k, dims) = super::parse_shape(graph, s)?;
        given[k].push(dims);
    }
    let count = given.iter().map(Vec::len).max().unwrap_or(0);
    if count == 0 {
        // The declared types, when every dimension is known.
        let known: Option<Vec<TensorType>> = inputs
            .iter()
            .map(|i| Some(TensorType::known(i.ty.dtype, &i.ty.shape.as_known()?)))
            .collect();
        return Ok(known.into_iter().collect());
    }
    (0..count)
        .map(|k| {
            inputs
                .iter()
                .zip(&given)
                .map(|(input, g)| {
                    let dims = match g.get(k).or(g.last()) {
                        Some(d) => d.clone(),
                        None => input.ty.shape.as_known().with_context(|| {
                            format!(
                                "input `{}` has unknown dimensions: give its --shape",
                                input.name
                            )
                        })?,
                    };
                    let ty = TensorType::known(input.ty.dtype, &dims);
                    if !input.ty.compatible(&ty) {
                        bail!(
                            "--shape for input `{}`: {} does not fit its declared {}",
                            input.name,
                            ty,
                            input.ty
                        );
                    }
                    Ok(ty)
                })
                .collect()
        })
        .collect()
}

/// `98.1 MB`.
fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}
