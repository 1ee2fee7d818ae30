//! `lathe bench` on the TensorFlow fixtures: its JSON report, random inputs, a model with an
//! unknown batch dimension, and one-line errors. Speed is never asserted, only that the numbers
//! are there and consistent; every run here is a handful of iterations on a tiny model.

use lathe_ir::Tensor;
use lathe_tests::{write_npy, Fixture, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `lathe bench` with `args`, logging left at its default (warnings only).
fn lathe<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lathe"))
        .arg("bench")
        .args(args)
        .env_remove("LATHE_LOG")
        .output()
        .expect("starting the lathe binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts success; returns stdout and stderr.
fn success(o: &Output) -> (String, String) {
    assert!(
        o.status.success(),
        "lathe failed ({}): {}",
        o.status,
        stderr(o)
    );
    (stdout(o), stderr(o))
}

/// Asserts the error contract: exit 1, empty stdout, stderr one line starting with `error: `,
/// no panic. Returns the line without `error: `.
fn one_line_error(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "lathe panicked: {err}");
    assert_eq!(stdout(o), "", "stdout of a failed run; stderr: {err}");
    let line = err.strip_suffix('\n').expect("stderr ends with a newline");
    assert!(!line.contains('\n'), "stderr is not one line: {err:?}");
    line.strip_prefix("error: ")
        .unwrap_or_else(|| panic!("stderr does not start with `error: `: {err:?}"))
        .to_string()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `lathe bench MODEL --iterations N --warmup 1 --json EXTRA...`, parsed; stderr returned too.
fn bench_json(model: &Path, iterations: u32, extra: &[&str]) -> (Value, String) {
    let n = iterations.to_string();
    let mut args = vec![
        path_str(model),
        "--iterations",
        &n,
        "--warmup",
        "1",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (out, err) = success(&lathe(&args));
    let report: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    (report, err)
}

fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {report}"))
}

/// Checks the keys every report has and that the statistics are ordered.
fn check_report(report: &Value, runs: u64) {
    for key in [
        "compile_ms",
        "median_ms",
        "p10_ms",
        "p90_ms",
        "min_ms",
        "max_ms",
    ] {
        let v = number(report, key);
        assert!(v > 0.0 && v.is_finite(), "`{key}` = {v} in {report}");
    }
    let [min, p10, median, p90, max] =
        ["min_ms", "p10_ms", "median_ms", "p90_ms", "max_ms"].map(|k| number(report, k));
    assert!(
        min <= p10 && p10 <= median && median <= p90 && p90 <= max,
        "{report}"
    );
    assert_eq!(report["runs"].as_u64(), Some(runs), "{report}");
    assert_eq!(report["backend"], "cpu", "{report}");
    assert!(
        report["threads"].as_u64().is_some_and(|t| t >= 1),
        "{report}"
    );
    assert!(report["model"].as_str().is_some(), "{report}");
}

#[test]
fn json_report_with_input_files() {
    let f = Fixture::open("mlp_tiny");
    let input = f.dir.join(&f.meta.inputs[0].file);
    let (report, err) = bench_json(
        &f.model_path(),
        5,
        &["--input", &format!("x={}", input.display())],
    );
    check_report(&report, 5);
    assert_eq!(report["inputs"], "from files");
    assert_eq!(err, "", "stderr");
}

#[test]
fn random_inputs_when_none_are_given() {
    let f = Fixture::open("mlp_tiny");
    let (report, err) = bench_json(&f.model_path(), 5, &[]);
    check_report(&report, 5);
    assert_eq!(report["inputs"], "random, seed 0");
    assert_eq!(err, "", "a fully known signature needs no note");

    // Every optimization level and an explicit pass list benchmark the same model.
    for extra in [
        &["-O0"][..],
        &["-O3"],
        &["--passes", "fold-constants,prune"],
    ] {
        let (report, _) = bench_json(&f.model_path(), 2, extra);
        check_report(&report, 2);
    }
}

#[test]
fn unknown_batch_is_benchmarked_at_batch_one_with_a_note() {
    let f = Fixture::open("dynamic_batch");
    let (report, err) = bench_json(&f.model_path(), 3, &[]);
    check_report(&report, 3);
    assert_eq!(
        err,
        "note: input `x` is f32[?x_d0,6]: benchmarking with f32[1,6], unknown dimensions as 1 \
         (pass --input x=FILE.npy to choose)\n"
    );

    // A pass list runs on the graph specialized to batch 1, as a level's pipeline does.
    let (report, _) = bench_json(&f.model_path(), 2, &["--passes", "fold-constants,cse,fuse"]);
    check_report(&report, 2);
    assert_eq!(report["pipeline"], "fold-constants,cse,fuse");

    // With an input file the batch is the file's, and no note.
    let dir = TempDir::new("bench-dynamic-batch");
    let x = dir.join("x.npy");
    write_npy(&x, &Tensor::from_vec(&[4, 6], vec![0.5f32; 24]));
    let (report, err) = bench_json(&f.model_path(), 2, &["--input", path_str(&x)]);
    check_report(&report, 2);
    assert_eq!(err, "");
}

#[test]
fn text_report() {
    let f = Fixture::open("gelu_chain_tiny");
    let (out, err) = success(&lathe(&[
        path_str(&f.model_path()),
        "--iterations",
        "3",
        "--warmup",
        "0",
    ]));
    assert_eq!(err, "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[1].starts_with("backend:  cpu (") && lines[1].ends_with("), pipeline: -O2"),
        "{out}"
    );
    assert_eq!(
        lines[2], "inputs:   x: f32[1,8,32] (random, seed 0)",
        "{out}"
    );
    assert!(
        lines[3].starts_with("compile:  ") && lines[3].ends_with(" ms"),
        "{out}"
    );
    assert!(lines[4].starts_with("latency:  median "), "{out}");
    assert!(lines[4].ends_with("(3 runs after 0 warm-up)"), "{out}");
}

#[test]
fn errors_are_one_line() {
    let f = Fixture::open("mlp_tiny");
    let model = f.model_path();
    let dir = TempDir::new("bench-errors");
    let wrong = dir.join("wrong.npy");
    write_npy(&wrong, &Tensor::from_vec(&[2, 3], vec![0f32; 6]));
    let e = one_line_error(&lathe(&[
        path_str(&model),
        "--iterations",
        "1",
        "--input",
        path_str(&wrong),
    ]));
    assert_eq!(
        e,
        format!(
            "input `x` from {}: expected f32[1,16], got f32[2,3]",
            wrong.display()
        )
    );

    let e = one_line_error(&lathe(&[path_str(&model), "--passes", "no-such-pass"]));
    assert!(
        e.starts_with("--passes: unknown pass `no-such-pass`"),
        "{e}"
    );

    let e = one_line_error(&lathe(&[
        path_str(&dir.join("missing.pb")),
        "--iterations",
        "1",
    ]));
    assert!(e.contains("missing.pb"), "{e}");

    // Zero iterations is a usage error from clap (exit 2), not a division by zero.
    let o = lathe(&[path_str(&model), "--iterations", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn threads_and_backend_are_reported_and_profile_names_steps() {
    let f = Fixture::open("cnn_tiny");
    let (report, err) = bench_json(&f.model_path(), 3, &["--threads", "3", "--profile"]);
    check_report(&report, 3);
    assert_eq!(report["threads"].as_u64(), Some(3), "{report}");
    // The profile goes to stderr: totals per kernel kind, then the slowest steps by name.
    assert!(
        err.contains("profile:") && err.contains("slowest steps:"),
        "{err}"
    );
    assert!(
        err.contains("conv2d") || err.contains("fused.epilogue"),
        "{err}"
    );
    let (interp, _) = bench_json(&f.model_path(), 2, &["--backend", "interp"]);
    assert_eq!(interp["backend"], "interp", "{interp}");
    assert_eq!(interp["threads"].as_u64(), Some(1), "{interp}");
}

#[test]
fn instruction_set_cap_is_reported_and_checked() {
    let f = Fixture::open("cnn_tiny");
    let model = path_str(&f.model_path()).to_string();
    let capped = |cap: &str| {
        Command::new(env!("CARGO_BIN_EXE_lathe"))
            .args([
                "bench",
                &model,
                "--iterations",
                "2",
                "--warmup",
                "1",
                "--json",
            ])
            .env_remove("LATHE_LOG")
            .env("LATHE_ISA", cap)
            .output()
            .expect("starting the lathe binary")
    };
    // `sse` leaves the tuned kernels their portable form on every machine.
    let (out, _) = success(&capped("sse"));
    let report: Value = serde_json::from_str(out.trim()).expect("JSON report");
    check_report(&report, 2);
    assert_eq!(report["isa"], "scalar", "{report}");
    // Uncapped, the report names what this machine runs (whatever it is).
    let (uncapped, _) = bench_json(&f.model_path(), 2, &[]);
    assert!(
        ["avx512", "avx2", "scalar"].contains(&uncapped["isa"].as_str().unwrap_or("")),
        "{uncapped}"
    );
    let (interp, _) = bench_json(&f.model_path(), 2, &["--backend", "interp"]);
    assert!(interp["isa"].is_null(), "{interp}");
    // A mistyped cap would time the wrong kernels: an error, not a silent full-width run.
    let line = one_line_error(&capped("avx3"));
    assert!(
        line.contains("LATHE_ISA=\"avx3\"") && line.contains("avx2"),
        "{line}"
    );
}
