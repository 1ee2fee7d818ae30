//! `lathe bench --cold`: load-to-first-result in fresh processes. Each round starts this
//! binary again as `lathe bench ... --cold-child`, which loads the model (import, optimize and
//! compile; for an artifact, read and compile), runs it once and prints its two times as JSON;
//! the parent also times the child process from spawn to exit (process start-up included).

use super::bench::BenchArgs;
use crate::inputs::{read_inputs, signature_of};
use anyhow::{bail, Context, Result};
use lathe_ir::Tensor;
use lathe_runtime::ModelOptions;
use std::process::Command;
use std::time::Instant;

/// The child: load, one call, times on stdout as one JSON object.
pub fn child(args: &BenchArgs) -> Result<()> {
    let start = Instant::now();
    let loaded = args.model.load_to_run()?;
    let inputs = read_inputs(loaded.declared(), &args.inputs)?;
    let signature = signature_of(loaded.declared(), &inputs);
    let options = args.opt.model_options(ModelOptions {
        backend: args.backend,
        threads: args.threads.map(|n| n as usize),
        ..ModelOptions::default()
    })?;
    let model = loaded.into_model_for(options, &signature)?;
    let load = start.elapsed();
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    model.run(&named)?;
    let first = start.elapsed() - load;
    println!(
        "{}",
        serde_json::json!({"load_ms": ms(load), "first_run_ms": ms(first)})
    );
    Ok(())
}

/// The parent: `rounds` fresh processes, medians printed (as JSON with `--json`).
pub fn parent(args: &BenchArgs, rounds: usize) -> Result<()> {
    if args.inputs.is_empty() {
        bail!("--cold times a real first call: give the inputs with --input");
    }
    let exe = std::env::current_exe().context("finding the lathe binary")?;
    let mut child_args: Vec<String> = vec!["bench".into(), "--cold-child".into()];
    child_args.push(args.model.model.display().to_string());
    for (flag, value) in [
        ("--tag", &args.model.tag),
        ("--signature", &args.model.signature),
    ] {
        if let Some(v) = value {
            child_args.extend([flag.to_string(), v.clone()]);
        }
    }
    for i in &args.inputs {
        child_args.extend(["--input".to_string(), i.clone()]);
    }
    if let Some(n) = args.threads {
        child_args.extend(["--threads".to_string(), n.to_string()]);
    }
    child_args.extend(["--backend".to_string(), args.backend.name().to_string()]);
    child_args.extend(["-O".to_string(), args.opt.level.to_string()]);
    if let Some(p) = &args.opt.passes {
        child_args.extend(["--passes".to_string(), p.clone()]);
    }
    let (mut load, mut first, mut wall) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        let out = Command::new(&exe).args(&child_args).output()?;
        wall.push(ms(t.elapsed()));
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("reading the child's times")?;
        load.push(v["load_ms"].as_f64().unwrap_or(f64::NAN));
        first.push(v["first_run_ms"].as_f64().unwrap_or(f64::NAN));
    }
    let (load, first, wall) = (median(load), median(first), median(wall));
    if args.json {
        let report = serde_json::json!({
            "model": args.model.model.display().to_string(),
            "rounds": rounds,
            "load_ms": load,
            "first_run_ms": first,
            "load_to_first_result_ms": load + first,
            "process_ms": wall,
        });
        println!("{report}");
    } else {
        println!("model:    {}", args.model.model.display());
        println!(
            "cold:     load {load:.1} ms + first run {first:.1} ms = {:.1} ms to the first result; \
             {wall:.1} ms per process (medians of {rounds} fresh processes)",
            load + first
        );
    }
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
