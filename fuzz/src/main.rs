//! `lathe-fuzz`: mutation fuzzing of the importers on the committed fixtures, for a bounded
//! time (see the library's notes). Exits non-zero, listing the cases, if any case panicked or
//! gave a malformed error; aborts on a hang or an oversized allocation.

use anyhow::{bail, Result};
use clap::Parser;
use lathe_fuzz::{run, watchdog, CappedAlloc, Options, Seed};
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Mutation fuzzing of Lathe's importers.
#[derive(Parser)]
struct Args {
    /// Seconds to spend at most.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Cases to run at most.
    #[arg(long, default_value_t = u64::MAX)]
    cases: u64,
    /// The run's random seed.
    #[arg(long, default_value_t = 0x1a7e)]
    seed: u64,
    /// The first case to run (to reproduce one: `--first-case N --cases 1`).
    #[arg(long, default_value_t = 0)]
    first_case: u64,
    /// Seconds one case may take before the run aborts as hung.
    #[arg(long, default_value_t = 20)]
    case_timeout: u64,
    /// Where mutated models are written; failing ones are kept there.
    #[arg(long, default_value = "target/lathe-fuzz")]
    work_dir: PathBuf,
    /// The repository root, whose `tests/fixtures` are the seeds.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Print each case before running it.
    #[arg(long)]
    verbose: bool,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let seeds = Seed::fixtures(&a.repo)?;
    if seeds.is_empty() {
        bail!("no seeds under {}/tests/fixtures", a.repo.display());
    }
    let opts = Options {
        seed: a.seed,
        first_case: a.first_case,
        cases: a.cases,
        time_budget: Duration::from_secs(a.seconds),
        case_timeout: Duration::from_secs(a.case_timeout),
        work_dir: a.work_dir,
        verbose: a.verbose,
    };
    watchdog(opts.case_timeout);
    let s = run(&seeds, &opts)?;
    println!(
        "lathe-fuzz: {} cases over {} seeds in at most {} s: {} loaded, {} clean errors, {} failures",
        s.cases,
        seeds.len(),
        a.seconds,
        s.loaded,
        s.errors,
        s.failures.len()
    );
    for (case, desc, what) in &s.failures {
        println!("  case {case} ({desc}): {what}");
    }
    if !s.failures.is_empty() {
        bail!(
            "{} cases failed (kept under {}); reproduce one with --seed {} --first-case N --cases 1",
            s.failures.len(),
            opts.work_dir.display(),
            a.seed
        );
    }
    Ok(())
}
