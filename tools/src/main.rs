//! `lathe`: compile, run and inspect saved ML graphs (TensorFlow GraphDef and SavedModel, ONNX, Lathe IR text).
//!
//! Every subcommand prints errors on stderr as one line and exits non-zero.

#![forbid(unsafe_code)]

mod cmd;
mod inputs;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Lathe: a graph compiler and runtime for saved TensorFlow and ONNX graphs.
#[derive(Parser)]
#[command(
    name = "lathe",
    version,
    about = "Lathe: a graph compiler and runtime for saved TensorFlow and ONNX graphs",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on inputs from .npy files and print or save its outputs.
    Run(cmd::run::RunArgs),
    /// Compile a model ahead of time for the signatures it will be called with into a `.lathe`
    /// artifact that every command and the runtime load without importing or optimizing again
    Compile(cmd::compile::CompileArgs),
    /// Print a model's IR as text.
    Dump(cmd::dump::DumpArgs),
    /// Show a model's inputs, outputs, op histogram and parameter counts.
    Inspect(cmd::inspect::InspectArgs),
    /// Time a model's compilation and latency on given or random inputs.
    Bench(cmd::bench::BenchArgs),
    /// List every IR op: operands, attributes, dtypes, the TensorFlow and ONNX ops that import to it.
    Ops(cmd::ops::OpsArgs),
    /// Run ONNX backend node tests on the CPU backend and the interpreter.
    Conformance(cmd::conformance::ConformanceArgs),
    /// Serve models over TensorFlow Serving's REST and gRPC APIs and KServe v2 (Open Inference Protocol)
    Serve(cmd::serve::ServeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LATHE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // `LATHE_LOG_SPANS=1` also logs each span as it closes, with its busy and idle times.
        .with_span_events(if std::env::var_os("LATHE_LOG_SPANS").is_some() {
            tracing_subscriber::fmt::format::FmtSpan::CLOSE
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        })
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Weights freed while loading and compiling go back to the system instead of staying
    // resident; `run` and `bench` retune for calls once the model is compiled.
    lathe_runtime::tune_allocator(lathe_runtime::AllocPhase::Load);
    let cli = Cli::parse();
    // A mistyped instruction-set cap would time or test the wrong kernels: refuse it.
    if let Err(e) = lathe_runtime::cpu::isa_cap_checked() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Compile(a) => cmd::compile::run(a),
        Command::Dump(a) => cmd::dump::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Ops(a) => cmd::ops::run(a),
        Command::Conformance(a) => cmd::conformance::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
