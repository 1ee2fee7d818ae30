//! `lathe compile`: import and optimize a model once, for the signatures it will be called
//! with, and write a `.lathe` artifact that every command and `Model::load` read without the
//! importers and without optimizing again (see `lathe_compiler::artifact`); or, with
//! `--emit obj`, one specialization as a relocatable object file and a C header, for a C
//! program to link with `liblathe_kernels.a` (see `lathe_runtime::cpu::aot`).

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
    /// What to write: a `.lathe` artifact, or (`obj`) one specialization as a relocatable
    /// object file with a C header, to link with liblathe_kernels.a.
    #[arg(long, value_enum, default_value_t = Emit::Artifact)]
    pub emit: Emit,
    /// With --emit obj: where to write the C header [default: the output with `.h`].
    #[arg(long, value_name = "FILE")]
    pub header: Option<PathBuf>,
    /// With --emit obj: the prefix of the object's symbols, a C identifier (the entry point is
    /// `PREFIX_run`) [default: from the output's file name].
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub opt: OptArgs,
}

/// What `lathe compile` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// A `.lathe` artifact (every command and `Model::load` read it).
    Artifact,
    /// A relocatable object file and a C header.
    Obj,
}

/// Runs `lathe compile`.
pub fn run(args: CompileArgs) -> Result<()> {
    if args.emit == Emit::Obj {
        return emit_object(args);
    }
    if args.header.is_some() || args.prefix.is_some() {
        bail!("--header and --prefix are for --emit obj");
    }
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

/// `lathe compile --emit obj`: one specialization as an object file and its header.
fn emit_object(args: CompileArgs) -> Result<()> {
    let start = Instant::now();
    let graph = args.model.load()?;
    let signatures = signatures(&graph, &args.shapes)?;
    let [types] = signatures.as_slice() else {
        bail!(
            "--emit obj compiles one specialization, and {} were asked for: give each input \
             of unknown dimensions one --shape",
            signatures.len()
        );
    };
    let prefix = match &args.prefix {
        Some(p) => p.clone(),
        None => c_identifier(
            &args
                .output
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    let header = args
        .header
        .clone()
        .unwrap_or_else(|| args.output.with_extension("h"));
    let options = args.opt.model_options(ModelOptions::default())?;
    let model = Model::with_options(graph, options)?;
    let spec = model.specialize_for(types)?;
    let cpu = spec
        .cpu_plan()
        .context("--emit obj needs the CPU backend (--backend cpu)")?;
    let name = model.name().to_string();
    let written = lathe_runtime::cpu::aot::write_object(
        cpu,
        &name,
        &prefix,
        spec.signature().names(),
        spec.output_names(),
    )
    .with_context(|| {
        format!(
            "{}: cannot write an object file",
            args.model.model.display()
        )
    })?;
    std::fs::write(&args.output, &written.object)
        .with_context(|| format!("writing {}", args.output.display()))?;
    std::fs::write(&header, &written.header)
        .with_context(|| format!("writing {}", header.display()))?;
    println!(
        "{} ({}) and {}: {} for {}, {} generated kernels, {} of scratch per call, in {:.0} ms",
        args.output.display(),
        human_bytes(written.object.len() as u64),
        header.display(),
        format_args!("{prefix}_run"),
        spec.signature(),
        written.kernels,
        human_bytes(written.scratch_bytes as u64),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// `name` made a C identifier: other characters become `_`, and a leading digit gets one.
fn c_identifier(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match s.chars().next() {
        None => "model".to_string(),
        Some(c) if c.is_ascii_digit() => format!("_{s}"),
        Some(_) => s,
    }
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
