//! `lathe dump`: print a model's IR as text, DOT or SVG, after optimization, and watch any
//! pass's effect (`--print-ir-after-all`, `--print-ir-before/after PASS`, `--dump-dir`).
//!
//! By default it shows exactly what `lathe run` executes: the graph specialized to the input
//! shapes (`--input`, `--shape`, or the declared ones with unknown dims bound to 1) and
//! optimized by the same pipeline the runtime uses; `--format plan` prints the CPU plan compiled
//! from it, `--format mlir` the MLIR of its kernels (the GPU backend's lowering),
//! `--format ptx` their PTX for `--chip` (with the `cuda` feature: MLIR in-process).
//! `--generic` optimizes the graph as imported instead, symbolic dims and all.

use super::opt::OptArgs;
use crate::inputs::read_inputs;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use lathe_compiler::artifact::Artifact;
use lathe_compiler::pipeline::{PassHooks, PassRecord};
use lathe_ir::dot::{render_svg, to_dot, DotOptions};
use lathe_ir::text::{print_with, PrintOptions};
use lathe_ir::{Graph, TensorType};
use lathe_runtime::{Backend, Model, ModelOptions};
use std::io::Write;
use std::path::PathBuf;

/// Output formats of `lathe dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lathe IR text (`.lir`).
    Text,
    /// Graphviz DOT.
    Dot,
    /// SVG drawn by Graphviz's `dot` (must be installed).
    Svg,
    /// The CPU plan compiled from the optimized specialization: steps, kernels, buffers and
    /// their arena offsets.
    Plan,
    /// The MLIR the GPU backend writes for the optimized specialization (one `gpu.func` per
    /// computing node); the views (reshapes, identities) are listed after the module.
    Mlir,
    /// One PTX module with every kernel of `--format mlir`, for `--chip`, by MLIR in-process
    /// (a build with the `cuda` feature); math functions come from CUDA's libdevice when
    /// `LATHE_CUDA_NVCC` names the `nvidia-cuda-nvcc-cu12` pip package's `nvidia/cuda_nvcc`.
    Ptx,
}

/// Arguments of `lathe dump`.
#[derive(Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub model: super::source::ModelArgs,
    #[command(flatten)]
    pub opt: OptArgs,
    /// Print the IR after every pass that changed it (unchanged passes get a one-line note).
    #[arg(long)]
    pub print_ir_after_all: bool,
    /// Print the IR after each run of this pass.
    #[arg(long, value_name = "PASS")]
    pub print_ir_after: Option<String>,
    /// Print the IR before each run of this pass.
    #[arg(long, value_name = "PASS")]
    pub print_ir_before: Option<String>,
    /// Write the IR before the first pass and after every pass to DIR as `NNN-PASS.lir`
    /// (`.dot` / `.svg` with `--format`).
    #[arg(long, value_name = "DIR")]
    pub dump_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The GPU to write PTX for (`--format ptx`): `sm_80`, `sm_90`, ...
    #[arg(long, value_name = "CHIP", default_value = "sm_90")]
    pub chip: String,
    /// Print every constant in full (the text then parses back as `.lir`); by default
    /// constants of more than 16 elements are elided.
    #[arg(long)]
    pub full_constants: bool,
    /// Leave constants out of DOT/SVG pictures.
    #[arg(long)]
    pub hide_constants: bool,
    /// Specialize to the shapes of these inputs, as NAME=FILE.npy (as `run` takes them).
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Specialize input NAME to this shape, as NAME=1,224,224,3 (a model with one input may omit
    /// `NAME=`). Inputs named by neither option take their declared shape, unknown dims as 1.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
    /// Optimize the graph as imported, without specializing it to input shapes.
    #[arg(long, conflicts_with_all = ["inputs", "shapes"])]
    pub generic: bool,
}

/// Renders graphs in the chosen format.
struct Renderer {
    format: Format,
    chip: String,
    text: PrintOptions,
    dot: DotOptions,
}

impl Renderer {
    fn render(&self, g: &Graph) -> Result<String> {
        Ok(match self.format {
            Format::Text => print_with(g, &self.text),
            Format::Dot => to_dot(g, &self.dot),
            Format::Svg => render_svg(&to_dot(g, &self.dot)).map_err(anyhow::Error::msg)?,
            // Plans and MLIR are printed once, at the end; graphs around passes as text.
            Format::Plan | Format::Mlir | Format::Ptx => print_with(g, &self.text),
        })
    }

    /// What `dump` prints of the final graph.
    fn render_final(&self, g: &Graph) -> Result<String> {
        if self.format == Format::Mlir {
            let lowered = lathe_gpu::mlir::lower_graph(g).map_err(|e| anyhow::anyhow!("{e}"))?;
            return Ok(lowered.print(g));
        }
        if self.format == Format::Ptx {
            let lowered = lathe_gpu::mlir::lower_graph(g).map_err(|e| anyhow::anyhow!("{e}"))?;
            return ptx(&lowered.text, &self.chip);
        }
        self.render(g)
    }

    fn extension(&self) -> &'static str {
        match self.format {
            Format::Text | Format::Plan | Format::Mlir | Format::Ptx => "lir",
            Format::Dot => "dot",
            Format::Svg => "svg",
        }
    }
}

/// The hooks behind the printing flags.
struct DumpHooks<'a> {
    args: &'a DumpArgs,
    renderer: &'a Renderer,
    out: Vec<u8>,
    error: Option<anyhow::Error>,
}

impl DumpHooks<'_> {
    fn emit(&mut self, header: String, g: &Graph) {
        if self.error.is_some() {
            return;
        }
        match self.renderer.render(g) {
            Ok(body) => {
                let _ = writeln!(self.out, "{header}");
                let _ = write!(self.out, "{body}");
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// When no pass ran no hook fired: the specialization is all there is to dump.
    fn input_if_unoptimized(&mut self, passes: &[PassRecord], g: &Graph) {
        if passes.is_empty() {
            self.write_file(0, "input", g);
        }
    }

    fn write_file(&mut self, index: usize, name: &str, g: &Graph) {
        let Some(dir) = &self.args.dump_dir else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        let path = dir.join(format!("{index:03}-{name}.{}", self.renderer.extension()));
        let result = self.renderer.render(g).and_then(|s| {
            std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))
        });
        if let Err(e) = result {
            self.error = Some(e);
        }
    }
}

impl PassHooks for DumpHooks<'_> {
    fn before(&mut self, index: usize, name: &str, g: &Graph) {
        if index == 1 {
            self.write_file(0, "input", g);
        }
        if self.args.print_ir_before.as_deref() == Some(name) {
            self.emit(format!("; ---- IR before pass {index}: {name} ----"), g);
        }
    }

    fn after(&mut self, index: usize, name: &str, g: &Graph, r: &PassRecord) {
        self.write_file(index, name, g);
        let wanted =
            self.args.print_ir_after_all || self.args.print_ir_after.as_deref() == Some(name);
        if !wanted {
            return;
        }
        let what = format!(
            "{name} ({:.2} ms, {} -> {} nodes{})",
            r.time_ms,
            r.nodes_before,
            r.nodes_after,
            counters(r)
        );
        if r.changed || !self.args.print_ir_after_all {
            self.emit(format!("; ---- IR after pass {index}: {what} ----"), g);
        } else if self.error.is_none() {
            let _ = writeln!(self.out, "; ---- pass {index}: {what}: no change ----");
        }
    }
}

fn counters(r: &PassRecord) -> String {
    r.counters
        .iter()
        .map(|(k, v)| format!(", {k} {v}"))
        .collect()
}

/// Runs `lathe dump`.
pub fn run(args: DumpArgs) -> Result<()> {
    for p in [&args.print_ir_after, &args.print_ir_before]
        .into_iter()
        .flatten()
    {
        if lathe_compiler::passes::lookup(p).is_none() {
            bail!("unknown pass `{p}`");
        }
    }
    if args.generic && matches!(args.format, Format::Plan | Format::Mlir | Format::Ptx) {
        bail!("--format plan, mlir and ptx need a specialization (drop --generic)");
    }
    if args.format == Format::Ptx && !cfg!(feature = "cuda") {
        bail!(
            "--format ptx needs MLIR in-process: build lathe with `cargo build -p lathe-cli \
             --features cuda` (LLVM/MLIR 19's development packages, see the README)"
        );
    }
    let graph = args.model.load()?;
    let pipeline = args.opt.pipeline()?;
    if let Some(dir) = &args.dump_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let renderer = Renderer {
        format: args.format,
        chip: args.chip.clone(),
        text: PrintOptions {
            elide_constants_above: (!args.full_constants).then_some(16),
            ..PrintOptions::default()
        },
        dot: DotOptions {
            hide_constants: args.hide_constants,
            ..DotOptions::default()
        },
    };
    let mut hooks = DumpHooks {
        args: &args,
        renderer: &renderer,
        out: Vec::new(),
        error: None,
    };
    if let Some(a) = args.model.artifact()? {
        if let Some(dumped) = stored(&args, a)? {
            let mut stdout = std::io::stdout().lock();
            match dumped {
                Dumped::Graph(g) => write!(stdout, "{}", renderer.render_final(&g)?)?,
                Dumped::Plan(text) => write!(stdout, "{text}")?,
            }
            return Ok(());
        }
        // A signature the artifact has no specialization for: optimized now from its generic
        // graph, as the runtime would, passes and hooks included.
    }
    let result = if args.generic {
        let mut graph = graph;
        if pipeline.steps.is_empty() {
            // No pass runs, so no hook fires: the input is all there is to dump.
            hooks.write_file(0, "input", &graph);
        }
        pipeline
            .run(&mut graph, &mut hooks)
            .map(|_| Dumped::Graph(graph))
            .map_err(anyhow::Error::from)
    } else {
        specialized(&args, graph, &mut hooks)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&hooks.out)?;
    if let Some(e) = hooks.error {
        return Err(e);
    }
    let dumped = result?;
    let printing =
        args.print_ir_after_all || args.print_ir_after.is_some() || args.print_ir_before.is_some();
    if !printing {
        match dumped {
            Dumped::Graph(g) => write!(stdout, "{}", renderer.render_final(&g)?)?,
            Dumped::Plan(text) => write!(stdout, "{text}")?,
        }
    }
    Ok(())
}

/// The PTX MLIR makes of `module` (a lowered graph) for `chip`, with libdevice linked from
/// `$LATHE_CUDA_NVCC` when that is set.
#[cfg(feature = "cuda")]
fn ptx(module: &str, chip: &str) -> Result<String> {
    let libdevice = std::env::var_os("LATHE_CUDA_NVCC")
        .map(|dir| PathBuf::from(dir).join("nvvm/libdevice/libdevice.10.bc"));
    if let Some(l) = libdevice.as_ref().filter(|l| !l.is_file()) {
        bail!("LATHE_CUDA_NVCC is set but {} is not a file", l.display());
    }
    let native = lathe_gpu::mlir::native::Native::new();
    // MLIR's diagnostics come a line each; errors are one line.
    native
        .ptx(module, chip, libdevice.as_deref())
        .map_err(|e| anyhow::anyhow!("{}", e.replace(":\n", ": ").replace('\n', "; ")))
}

/// Refused in `run` before anything is loaded.
#[cfg(not(feature = "cuda"))]
fn ptx(_: &str, _: &str) -> Result<String> {
    bail!("--format ptx needs a build with `--features cuda`")
}

/// What `dump` prints at the end.
enum Dumped {
    Graph(Graph),
    Plan(String),
}

/// What an artifact stores for the arguments: its generic graph (`--generic`), or its
/// specialization for the signature they give, as optimized when it was compiled (or its CPU
/// plan, compiled from it with no passes). `None` when it has no specialization for that
/// signature but a generic graph to optimize. Flags that watch passes are refused: the stored
/// graphs went through them at compile time.
fn stored(args: &DumpArgs, a: Artifact) -> Result<Option<Dumped>> {
    if args.print_ir_after_all
        || args.print_ir_after.is_some()
        || args.print_ir_before.is_some()
        || args.dump_dir.is_some()
    {
        bail!(
            "the artifact's graphs were optimized when it was compiled; to watch the passes, dump \
             the model it was compiled from ({})",
            a.meta.source
        );
    }
    if args.generic {
        let g = a
            .generic
            .context("the artifact was compiled without its generic graph")?;
        return Ok(Some(Dumped::Graph(g)));
    }
    let declared = a.declared().clone();
    let types = signature(&declared, &args.inputs, &args.shapes)?;
    let found =
        (a.specializations.iter()).position(|g| g.inputs().iter().map(|i| &i.ty).eq(types.iter()));
    let Some(k) = found else {
        if a.generic.is_some() {
            return Ok(None);
        }
        bail!(
            "the artifact has no specialization for {} (it has {}) and no generic graph",
            super::describe_signature(&declared, &types),
            a.meta.specializations.join(", ")
        );
    };
    if args.format != Format::Plan {
        return Ok(Some(Dumped::Graph(a.specializations[k].clone())));
    }
    let name = declared.name.clone();
    let model = Model::from_artifact(
        a,
        ModelOptions {
            threads: Some(1),
            ..ModelOptions::default()
        },
    )?;
    let spec = model.specialize_for(&types)?;
    let plan = spec.cpu_plan().context("no cpu plan was compiled")?;
    Ok(Some(Dumped::Plan(plan.print(&name))))
}

/// Specializes `graph` to the signature the arguments give and optimizes it as the runtime
/// does (the same `Model` code path as `run`), calling the hooks around every pass.
fn specialized(args: &DumpArgs, graph: Graph, hooks: &mut DumpHooks<'_>) -> Result<Dumped> {
    let types = signature(&graph, &args.inputs, &args.shapes)?;
    let options = args.opt.model_options(ModelOptions {
        backend: Backend::Cpu,
        threads: Some(1),
        ..ModelOptions::default()
    })?;
    let name = graph.name.clone();
    let model = Model::with_options(graph, options)?;
    if args.format == Format::Plan {
        // One compile: the passes (and their hooks) and the plan they lead to.
        let spec = model.compile_uncached(&types, hooks)?;
        let optimized = spec
            .graph()
            .ok_or_else(|| anyhow::anyhow!("the specialization kept no graph"))?;
        hooks.input_if_unoptimized(spec.passes(), optimized);
        let plan = spec
            .cpu_plan()
            .ok_or_else(|| anyhow::anyhow!("no cpu plan was compiled"))?;
        return Ok(Dumped::Plan(plan.print(&name)));
    }
    let (g, records) = model.optimized_graph(&types, hooks)?;
    hooks.input_if_unoptimized(&records, g.graph());
    Ok(Dumped::Graph(g.into_graph()))
}

/// The input types to specialize to: from `--input` files, `--shape` options, or the declared
/// types with unknown dims bound to 1.
fn signature(g: &Graph, inputs: &[String], shapes: &[String]) -> Result<Vec<TensorType>> {
    let mut types = super::declared_signature(g);
    if !inputs.is_empty() {
        for (name, t) in read_inputs(g, inputs)? {
            let i = g
                .inputs()
                .iter()
                .position(|d| d.name == name)
                .ok_or_else(|| anyhow::anyhow!("model has no input named `{name}`"))?;
            types[i] = t.ty();
        }
    }
    for s in shapes {
        let (i, dims) = super::parse_shape(g, s)?;
        types[i] = TensorType::known(g.inputs()[i].ty.dtype, &dims);
    }
    Ok(types)
}
