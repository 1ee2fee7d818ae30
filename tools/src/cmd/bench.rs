//! `lathe bench`: time a model's compilation and its steady-state latency on given or random
//! inputs (warm-up, then at least 20 runs and at least 3 s, or exactly `--iterations`;
//! percentiles from the sorted times at `n/2`, `n/10`, `9n/10`); `benches/compare.py` calls it
//! with `--json` to put Lathe beside onnxruntime and TensorFlow.
//!
//! Speed is measured here, never asserted: the numbers depend on the machine.

use super::opt::OptArgs;
use crate::inputs::{read_inputs, signature_of};
use anyhow::{bail, Result};
use clap::Args;
use lathe_ir::{DType, Graph, Tensor, TensorType};
use lathe_runtime::{Backend, ModelOptions};
use std::time::{Duration, Instant};

/// Arguments of `lathe bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: super::source::ModelArgs,
    /// An input, as NAME=FILE.npy; a model with one input may omit `NAME=`. Repeat per input.
    /// Without any, inputs are random (seeded) with the model's declared types; unknown
    /// dimensions are taken as 1.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Threads to run on (default: the backend's default; the interpreter uses one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Untimed runs before timing starts.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub warmup: usize,
    /// Timed runs (default: at least 20 runs and at least 3 s, at most 2001 runs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seed of the random inputs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Where to run: `cpu` (native code), `interp` (the reference interpreter) or `cuda` (an
    /// NVIDIA GPU; builds with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// After timing, run as many profiled calls and print where the time goes: the time per
    /// kind of kernel and the N slowest steps (default 15; cpu backend; on stderr).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "15")]
    pub profile: Option<usize>,
    /// Instead of steady-state latency, time load-to-first-result in N fresh processes
    /// (default 5): reading (or importing) the model, compiling it, and its first call.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "5")]
    pub cold: Option<usize>,
    /// Internal: one fresh process of `--cold`.
    #[arg(long, hide = true)]
    pub cold_child: bool,
    #[command(flatten)]
    pub opt: OptArgs,
}

/// Prints the steps that take the most time, and the totals per kind of kernel.
fn print_profile(
    steps: &[(String, String, &'static str)],
    times: &[std::time::Duration],
    runs: usize,
    top: usize,
) {
    let per_run = |d: std::time::Duration| d.as_secs_f64() * 1e3 / runs.max(1) as f64;
    let total: f64 = times.iter().map(|&d| per_run(d)).sum();
    let mut by_kind: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    for ((_, _, kind), &t) in steps.iter().zip(times) {
        let e = by_kind.entry(kind).or_default();
        e.0 += per_run(t);
        e.1 += 1;
    }
    eprintln!("profile: {total:.3} ms per run in {} steps", steps.len());
    for (kind, (ms, n)) in &by_kind {
        eprintln!(
            "  {ms:>9.3} ms {:>5.1}%  {n:>4} × {kind}",
            100.0 * ms / total.max(1e-9)
        );
    }
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by(|&a, &b| times[b].cmp(&times[a]));
    eprintln!("slowest steps:");
    for &i in order.iter().take(top) {
        let (name, op, kind) = &steps[i];
        let ms = per_run(times[i]);
        eprintln!(
            "  {ms:>9.3} ms {:>5.1}%  {op} [{kind}] {name}",
            100.0 * ms / total.max(1e-9)
        );
    }
}

/// The fewest timed runs and the least timed seconds when `--iterations` is not given, and the
/// run count past which timing stops anyway: the same as anchors.py's `timeit`.
const MIN_RUNS: usize = 20;
const MIN_TIME: Duration = Duration::from_secs(3);
const MAX_RUNS: usize = 2000;

/// Runs `lathe bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.cold_child {
        return super::cold::child(&args);
    }
    if let Some(rounds) = args.cold {
        return super::cold::parent(&args, rounds.max(1));
    }
    let loaded = args.model.load_to_run()?;
    let graph = loaded.declared();
    let graph_inputs: Vec<String> = graph.inputs().iter().map(|i| i.name.clone()).collect();
    let (inputs, input_note) = if args.inputs.is_empty() {
        if let Some(name) = loaded.needed_inputs().first() {
            bail!(
                "the importer needs the value of input `{name}` (the model is imported once per \
                 value of it), so random inputs will not do: give the inputs with --input"
            );
        }
        let random = random_inputs(graph, args.seed)?;
        for note in &random.notes {
            eprintln!("note: {note}");
        }
        (random.inputs, format!("random, seed {}", args.seed))
    } else {
        (read_inputs(graph, &args.inputs)?, "from files".to_string())
    };
    let threads = match args.backend {
        Backend::Cpu => args
            .threads
            .map_or_else(lathe_runtime::default_threads, |n| n as usize),
        // The interpreter runs each call on the caller's thread; the CUDA backend one call at
        // a time on its device.
        Backend::Interp | Backend::Cuda => {
            if let Some(n) = args.threads.filter(|&n| n != 1) {
                eprintln!(
                    "note: the {} backend runs on one thread; --threads {n} has no effect",
                    args.backend
                );
            }
            1
        }
    };
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let signature = signature_of(graph, &inputs);

    // Compilation: loading the model, then specializing it to this input signature and
    // optimizing the result, ahead of the first call.
    let start = Instant::now();
    let options = args.opt.model_options(ModelOptions {
        backend: args.backend,
        threads: args.threads.map(|n| n as usize),
        ..ModelOptions::default()
    })?;
    // Compiled for this one signature, the model keeps no copy of the graph as loaded.
    let per_value = !loaded.needed_inputs().is_empty();
    let model = loaded.into_model_for(options, &signature)?;
    let spec = if per_value {
        // Compiled by the first call, which knows the values the importer needs (so the
        // compile time includes that call).
        model.run(&named)?;
        None
    } else {
        Some(model.specialize_for(&signature)?)
    };
    lathe_runtime::tune_allocator(lathe_runtime::AllocPhase::Calls);
    let compile = start.elapsed();

    for _ in 0..args.warmup {
        model.run(&named)?;
    }
    let mut times_ms = Vec::new();
    let start = Instant::now();
    loop {
        let done = match args.iterations {
            Some(n) => times_ms.len() as u64 >= n,
            None => {
                (times_ms.len() >= MIN_RUNS && start.elapsed() >= MIN_TIME)
                    || times_ms.len() > MAX_RUNS
            }
        };
        if done {
            break;
        }
        let t = Instant::now();
        model.run(&named)?;
        times_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let runs = times_ms.len();
    let stats = Stats::of(times_ms);
    let compile_ms = compile.as_secs_f64() * 1e3;
    if let Some(top) = args.profile {
        match spec.as_ref().and_then(|s| s.cpu_plan()) {
            Some(plan) => {
                let ordered: Vec<Tensor> = graph_inputs
                    .iter()
                    .filter_map(|d| inputs.iter().find(|(n, _)| n == d))
                    .map(|(_, t)| t.clone())
                    .collect();
                let steps = plan.steps();
                let mut times = vec![std::time::Duration::ZERO; steps.len()];
                for _ in 0..runs {
                    plan.run_timed(&ordered, Some(&mut times))?;
                }
                print_profile(&steps, &times, runs, top);
            }
            None if spec.is_none() => {
                eprintln!("note: --profile is not available for a model imported per input value")
            }
            None => eprintln!("note: --profile needs the cpu backend"),
        }
    }

    // The instruction set of the CPU backend's kernels (`LATHE_ISA` may cap it).
    let isa = (args.backend == Backend::Cpu).then(lathe_runtime::cpu::kernel_isa);
    if args.json {
        let report = serde_json::json!({
            "model": args.model.model.display().to_string(),
            "backend": args.backend.name(),
            "threads": threads,
            "isa": isa,
            "pipeline": args.opt.pipeline_text(),
            "inputs": input_note,
            "warmup": args.warmup,
            "compile_ms": compile_ms,
            "median_ms": stats.median,
            "p10_ms": stats.p10,
            "p90_ms": stats.p90,
            "min_ms": stats.min,
            "max_ms": stats.max,
            "runs": stats.runs,
        });
        println!("{report}");
    } else {
        println!("model:    {}", args.model.model.display());
        println!(
            "backend:  {} ({threads} thread{}{}), pipeline: {}",
            args.backend,
            if threads == 1 { "" } else { "s" },
            isa.map(|i| format!(", {i} kernels")).unwrap_or_default(),
            match &args.opt.passes {
                Some(p) => format!("--passes {p}"),
                None => format!("-O{}", args.opt.level),
            }
        );
        let sig: Vec<String> = inputs
            .iter()
            .map(|(n, t)| format!("{n}: {}", t.ty()))
            .collect();
        println!("inputs:   {} ({input_note})", sig.join(", "));
        println!("compile:  {compile_ms:.3} ms");
        println!(
            "latency:  median {:.3} ms, p10 {:.3}, p90 {:.3}, min {:.3}, max {:.3} ({} runs after {} warm-up)",
            stats.median, stats.p10, stats.p90, stats.min, stats.max, stats.runs, args.warmup
        );
    }
    Ok(())
}

/// Latency statistics over timed runs, in milliseconds.
#[derive(Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    /// Sorts the times and picks percentiles as anchors.py does: indices `n/2`, `n/10`,
    /// `9n/10` of the sorted list. `times` must not be empty.
    pub fn of(mut times: Vec<f64>) -> Stats {
        assert!(!times.is_empty(), "no timed runs");
        times.sort_by(f64::total_cmp);
        let n = times.len();
        Stats {
            median: times[n / 2],
            p10: times[n / 10],
            p90: times[n * 9 / 10],
            min: times[0],
            max: times[n - 1],
            runs: n,
        }
    }
}

/// Random inputs of the model's declared types, and a note for each input whose shape had to
/// be guessed (unknown or symbolic dimensions become 1).
fn random_inputs(g: &Graph, seed: u64) -> Result<RandomInputs> {
    let mut rng = SplitMix64(seed);
    let mut notes = Vec::new();
    let mut out = Vec::new();
    for decl in g.inputs() {
        let dims = decl.ty.shape.known_or(1);
        if !decl.ty.shape.is_known() {
            notes.push(format!(
                "input `{}` is {}: benchmarking with {}, unknown dimensions as 1 \
                 (pass --input {}=FILE.npy to choose)",
                decl.name,
                decl.ty,
                TensorType::known(decl.ty.dtype, &dims),
                decl.name
            ));
        }
        let n: usize = dims.iter().product();
        let dtype = decl.ty.dtype;
        let t = if dtype.is_float() {
            let vals: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            Tensor::from_f64(dtype, &dims, &vals)
        } else if dtype.is_int() {
            // Small and non-negative, so that integer inputs used as indices stay in range.
            let vals: Vec<i64> = (0..n).map(|_| (rng.next() % 4) as i64).collect();
            Tensor::from_i64(dtype, &dims, &vals)
        } else if dtype == DType::Bool {
            let vals: Vec<bool> = (0..n).map(|_| rng.next() & 1 == 1).collect();
            Tensor::from_vec(&dims, vals)
        } else {
            bail!(
                "input `{}` is {}: no random values for this dtype; pass --input {}=FILE.npy",
                decl.name,
                decl.ty,
                decl.name
            );
        };
        out.push((decl.name.clone(), t));
    }
    Ok(RandomInputs { inputs: out, notes })
}

/// Random inputs by name, in the model's input order, and notes on what was guessed.
struct RandomInputs {
    inputs: Vec<(String, Tensor)>,
    notes: Vec<String>,
}

/// A small seeded generator (SplitMix64): reproducible inputs without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, one value per pair of draws).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_like_anchors() {
        // anchors.py: sorted, [n//2], [n//10], [n*9//10].
        let times: Vec<f64> = (0..25).rev().map(f64::from).collect();
        let s = Stats::of(times);
        assert_eq!(
            s,
            Stats {
                median: 12.0,
                p10: 2.0,
                p90: 22.0,
                min: 0.0,
                max: 24.0,
                runs: 25
            }
        );
        let one = Stats::of(vec![3.5]);
        assert_eq!((one.median, one.p10, one.p90, one.runs), (3.5, 3.5, 3.5, 1));
    }

    #[test]
    fn random_values_are_seeded_and_normal_ish() {
        let draw = |seed| {
            let mut r = SplitMix64(seed);
            (0..20_000).map(|_| r.normal()).collect::<Vec<f64>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
        assert!(a.iter().all(|x| x.is_finite()));
    }
}
