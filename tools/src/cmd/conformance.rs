//! `lathe conformance DIR`: runs ONNX backend node tests (each a directory holding
//! `model.onnx` and `test_data_set_N/{input,output}_K.pb`, as the `onnx` package's case
//! generators write them) in-process, on the CPU backend and the interpreter, and prints each
//! test's outcome on each: pass, fail (with the worst mismatch or the error) or unsupported
//! (with what is missing: an op, a dtype, a sequence value). With `--pass-list FILE`, exits
//! non-zero when a test the file lists does not pass on both backends.
//!
//! A value file holds a `TensorProto`, a `SequenceProto` or an `OptionalProto`, as the model
//! declares that input or output. Sequences and optionals are given flattened (`s[0]`, ...:
//! see `LoadOptions::containers`): the model is loaded for the lengths the data set's input
//! sequences have, and its flattened outputs are compared element by element.

use super::source::Loaded;
use anyhow::{bail, Context, Result};
use clap::Args;
use lathe_compiler::import::onnx::data::{interface, read_value_file, Interface, ValueKind};
use lathe_compiler::{Container, LoadOptions, ModelFile};
use lathe_ir::{DType, Tensor};
use lathe_runtime::{Backend, ModelOptions, RunError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arguments of `lathe conformance`.
#[derive(Args)]
pub struct ConformanceArgs {
    /// A directory of node tests (one subdirectory per test), or one test's directory.
    pub dir: PathBuf,
    /// Only tests whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Fail when a test named in FILE (one per line, `#` comments) does not pass on both
    /// backends.
    #[arg(long, value_name = "FILE")]
    pub pass_list: Option<PathBuf>,
    /// Write the names of the tests passing on both backends to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_pass_list: Option<PathBuf>,
    /// Print only the totals and the failures, not one line per test.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds one test may take before the run is stopped (a hang is a bug).
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// Relative and absolute tolerance of float comparisons (those of `onnx`'s backend runner).
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

/// How one test did on one backend.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    /// Wrong output or an error that is Lathe's fault.
    Fail(String),
    /// Something the model needs that Lathe does not support (the reason).
    Unsupported(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Unsupported(_) => "unsupported",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("pass"),
            Outcome::Fail(m) => write!(f, "fail ({m})"),
            Outcome::Unsupported(m) => write!(f, "unsupported ({m})"),
        }
    }
}

/// What each sequence or optional input holds, by name.
type Containers = Vec<(String, Container)>;

/// One data set's inputs and expected outputs, flattened to tensors.
struct DataSet {
    inputs: Vec<(Option<String>, Tensor)>,
    outputs: Vec<Tensor>,
    /// What the inputs that are sequences or optionals hold (empty when there are none).
    containers: Containers,
    /// The names of the flattened expected outputs, when an input or output is a sequence or
    /// an optional (how many outputs a model imported per value has is known once it ran).
    flattened: Option<Vec<String>>,
}

/// Runs `lathe conformance`.
pub fn run(args: ConformanceArgs) -> Result<()> {
    let tests = find_tests(&args.dir, args.filter.as_deref())?;
    if tests.is_empty() {
        bail!(
            "{}: no node tests (directories holding model.onnx)",
            args.dir.display()
        );
    }
    let current = Arc::new(Mutex::new(String::new()));
    let done = Arc::new(AtomicUsize::new(0));
    watchdog(
        Arc::clone(&current),
        Arc::clone(&done),
        Duration::from_secs(args.timeout),
    );
    let mut results = BTreeMap::new();
    for (name, dir) in &tests {
        *current.lock().expect("watchdog lock") = name.clone();
        let r = run_test(dir);
        done.fetch_add(1, Ordering::SeqCst);
        if !args.quiet || r.iter().any(|o| matches!(o, Outcome::Fail(_))) {
            println!("{name}: cpu {}; interp {}", r[0], r[1]);
        }
        results.insert(name.clone(), r);
    }
    report(&results);
    if let Some(path) = &args.write_pass_list {
        let mut text = String::from(
            "# ONNX node tests passing on both the CPU backend and the interpreter\n\
             # (written by `lathe conformance --write-pass-list`).\n",
        );
        for (name, r) in &results {
            if r.iter().all(|o| *o == Outcome::Pass) {
                text.push_str(name);
                text.push('\n');
            }
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.pass_list {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut regressed = Vec::new();
        for name in text.lines().map(str::trim) {
            if name.is_empty() || name.starts_with('#') {
                continue;
            }
            match results.get(name) {
                Some(r) if r.iter().all(|o| *o == Outcome::Pass) => {}
                Some(r) => regressed.push(format!("{name}: cpu {}; interp {}", r[0], r[1])),
                None if args.filter.is_none() => {
                    regressed.push(format!("{name}: not found in {}", args.dir.display()))
                }
                None => {}
            }
        }
        if !regressed.is_empty() {
            bail!(
                "{} test(s) on the pass list {} no longer pass:\n{}",
                regressed.len(),
                path.display(),
                regressed.join("\n")
            );
        }
        println!("every test on the pass list {} passes", path.display());
    }
    Ok(())
}

/// The tests under `dir` (or `dir` itself), sorted by name.
fn find_tests(dir: &Path, filter: Option<&str>) -> Result<Vec<(String, PathBuf)>> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if dir.join("model.onnx").is_file() {
        return Ok(vec![(name_of(dir), dir.to_path_buf())]);
    }
    let mut tests = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let name = name_of(&p);
        if p.join("model.onnx").is_file() && filter.is_none_or(|f| name.contains(f)) {
            tests.push((name, p));
        }
    }
    tests.sort();
    Ok(tests)
}

/// Stops the process when one test runs longer than `limit`, naming it.
fn watchdog(current: Arc<Mutex<String>>, done: Arc<AtomicUsize>, limit: Duration) {
    std::thread::spawn(move || {
        let mut last = (usize::MAX, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let n = done.load(Ordering::SeqCst);
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() > limit {
                let name = current.lock().map(|s| s.clone()).unwrap_or_default();
                eprintln!(
                    "error: node test {name} ran for more than {} s",
                    limit.as_secs()
                );
                std::process::exit(2);
            }
        }
    });
}

/// A test's outcome on the CPU backend and on the interpreter.
pub fn run_test(dir: &Path) -> [Outcome; 2] {
    let run = || -> [Outcome; 2] {
        let path = dir.join("model.onnx");
        let sets = match interface(&path)
            .map_err(|e| classify(&e.to_string()))
            .and_then(|kinds| data_sets(dir, &kinds))
        {
            Ok(s) => s,
            Err(o) => return [o.clone(), o],
        };
        // Data sets with input sequences of other lengths load the model again.
        let mut groups: Vec<(Containers, Vec<DataSet>)> = Vec::new();
        for set in sets {
            match groups.iter_mut().find(|(c, _)| *c == set.containers) {
                Some((_, g)) => g.push(set),
                None => groups.push((set.containers.clone(), vec![set])),
            }
        }
        if groups.is_empty() {
            groups.push((Vec::new(), Vec::new()));
        }
        let mut outcome = [Outcome::Pass, Outcome::Pass];
        for (containers, sets) in &groups {
            // A model whose importer needs input values (a `Resize` with its scales as an
            // input) is imported per value, as `lathe run` does.
            let file = ModelFile {
                path: path.clone(),
                options: LoadOptions {
                    containers: containers.clone(),
                    ..LoadOptions::default()
                },
            };
            let loaded = match Loaded::new(file) {
                Ok(l) => l,
                Err(e) => {
                    let o = classify(&e.to_string());
                    return [o.clone(), o];
                }
            };
            for (k, b) in [Backend::Cpu, Backend::Interp].into_iter().enumerate() {
                if outcome[k] == Outcome::Pass {
                    outcome[k] = run_on(&loaded, sets, b);
                }
            }
        }
        outcome
    };
    match std::panic::catch_unwind(run) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let o = Outcome::Fail(format!("panic: {msg}"));
            [o.clone(), o]
        }
    }
}

/// An import error is unsupported when it says something is not supported, else a failure.
fn classify(message: &str) -> Outcome {
    let reason = message
        .split_once(".onnx: ")
        .map_or(message, |(_, rest)| rest)
        .to_string();
    if reason.contains("not supported") || reason.contains("are supported") {
        Outcome::Unsupported(reason)
    } else {
        Outcome::Fail(format!("import: {reason}"))
    }
}

/// Every `test_data_set_N` of a test, in order; `kinds` are the model's declared inputs and
/// outputs, which say what each file holds.
fn data_sets(dir: &Path, (inputs, outputs): &Interface) -> Result<Vec<DataSet>, Outcome> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Outcome::Fail(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    dirs.sort();
    let containers =
        |kinds: &[(String, ValueKind)]| kinds.iter().any(|(_, k)| *k != ValueKind::Tensor);
    let has_containers = containers(inputs) || containers(outputs);
    let read = |d: &Path, kind: &str, declared: &[(String, ValueKind)], set: &mut DataSet| {
        let mut files = 0;
        for k in 0.. {
            let p = d.join(format!("{kind}_{k}.pb"));
            if !p.is_file() {
                break;
            }
            files += 1;
            // A file beyond the declared ones is read as a tensor, for the count's message.
            let (name, value_kind) = match declared.get(k) {
                Some((name, kind)) => (name.as_str(), kind),
                None => ("", &ValueKind::Tensor),
            };
            let (found, value) = read_value_file(&p, value_kind).map_err(|e| classify(&e))?;
            // A tensor binds by the name its file gives, when it gives one; a sequence or
            // an optional by the declared name, which its flattened inputs are named after.
            let name = match found {
                Some(f) if *value_kind == ValueKind::Tensor => f,
                _ => name.to_string(),
            };
            if *value_kind != ValueKind::Tensor && kind == "input" {
                set.containers.push((name.clone(), value.container()));
            }
            for (n, t) in value.flatten(&name) {
                match kind {
                    "input" => set.inputs.push((Some(n).filter(|n| !n.is_empty()), t)),
                    _ => {
                        if let Some(names) = set.flattened.as_mut() {
                            names.push(n);
                        }
                        set.outputs.push(t)
                    }
                }
            }
        }
        if has_containers && files != declared.len() {
            return Err(Outcome::Unsupported(format!(
                "the test data has {files} {kind}s for a graph of {} (sequence or optional \
                 values)",
                declared.len()
            )));
        }
        Ok(())
    };
    dirs.iter()
        .map(|d| {
            let mut set = DataSet {
                inputs: Vec::new(),
                outputs: Vec::new(),
                containers: Vec::new(),
                flattened: has_containers.then(Vec::new),
            };
            read(d, "input", inputs, &mut set)?;
            read(d, "output", outputs, &mut set)?;
            Ok(set)
        })
        .collect()
}

fn run_on(loaded: &Loaded, sets: &[DataSet], backend: Backend) -> Outcome {
    let options = ModelOptions {
        backend,
        threads: Some(1),
        ..ModelOptions::default()
    };
    let model = match loaded.model(options) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let declared = model.inputs();
    for set in sets {
        let outputs_differ = set.outputs.len() != model.outputs().len();
        if set.inputs.len() != declared.len() || (outputs_differ && set.flattened.is_none()) {
            return Outcome::Unsupported(format!(
                "the test data has {} inputs and {} outputs for a graph of {} and {} (sequence \
                 or optional values)",
                set.inputs.len(),
                set.outputs.len(),
                declared.len(),
                model.outputs().len()
            ));
        }
        // Inputs bind by name when the data names them, else by position.
        let inputs: Vec<(&str, Tensor)> = set
            .inputs
            .iter()
            .enumerate()
            .map(|(k, (name, t))| {
                let name = name
                    .as_deref()
                    .filter(|n| declared.iter().any(|d| d.name == *n))
                    .unwrap_or(&declared[k].name);
                (name, t.clone())
            })
            .collect();
        let got = match model.run(&inputs) {
            Ok(out) => out,
            // A model imported per value meets its import errors when it runs.
            Err(RunError::Import(e)) => return classify(&e.to_string()),
            Err(e) => return Outcome::Fail(e.to_string()),
        };
        if let Some(want) = &set.flattened {
            let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            if names != *want {
                return Outcome::Fail(format!("outputs {names:?} instead of {want:?}"));
            }
        }
        for ((name, g), want) in got.iter().zip(&set.outputs) {
            if let Some(m) = mismatch(g, want) {
                return Outcome::Fail(format!("output `{name}`: {m}"));
            }
        }
    }
    Outcome::Pass
}

/// Why `got` is not `want`, if it is not: dtype, shape, or the worst element.
pub fn mismatch(got: &Tensor, want: &Tensor) -> Option<String> {
    if got.dtype() != want.dtype() {
        return Some(format!("dtype {} instead of {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Some(format!(
            "shape {:?} instead of {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    if want.dtype().is_low_precision() {
        // Exact: each element's bits (one byte), NaNs' signs included.
        let (gb, wb) = (got.to_le_bytes(), want.to_le_bytes());
        return gb.iter().zip(&wb).position(|(a, b)| a != b).map(|i| {
            format!(
                "element {i} is {} (bits {:#04x}) instead of {} ({:#04x})",
                g[i], gb[i], w[i], wb[i]
            )
        });
    }
    let float = want.dtype().is_float();
    let mut worst: Option<(f64, usize)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let bad = if float {
            if a.is_nan() || b.is_nan() {
                a.is_nan() != b.is_nan()
            } else if a.is_infinite() || b.is_infinite() {
                a != b
            } else {
                (a - b).abs() > ATOL + RTOL * b.abs()
            }
        } else if want.dtype() == DType::I64 || want.dtype() == DType::U64 {
            // Exact, beyond f64's 53 bits too.
            false
        } else {
            a != b
        };
        if bad {
            let excess = if (a - b).is_finite() {
                (a - b).abs()
            } else {
                f64::INFINITY
            };
            if worst.is_none_or(|(e, _)| excess > e) {
                worst = Some((excess, i));
            }
        }
    }
    if matches!(want.dtype(), DType::I64 | DType::U64) {
        let (gi, wi) = (got.to_le_bytes(), want.to_le_bytes());
        if let Some(i) = gi.chunks(8).zip(wi.chunks(8)).position(|(a, b)| a != b) {
            return Some(format!("element {i} is {} instead of {}", g[i], w[i]));
        }
    }
    worst.map(|(e, i)| {
        format!(
            "element {i} is {} instead of {} (error {e:.3e}, tolerance {:.1e} + {:.1e} x |want|)",
            g[i], w[i], ATOL, RTOL
        )
    })
}

/// The totals, and the unsupported reasons by how many tests they stop.
fn report(results: &BTreeMap<String, [Outcome; 2]>) {
    let total = results.len();
    println!();
    for (k, backend) in ["cpu", "interp"].iter().enumerate() {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in results.values() {
            *counts.entry(r[k].label()).or_default() += 1;
        }
        println!(
            "{backend:>6}: {} pass, {} fail, {} unsupported, of {total}",
            counts.get("pass").unwrap_or(&0),
            counts.get("fail").unwrap_or(&0),
            counts.get("unsupported").unwrap_or(&0)
        );
    }
    let both = results
        .values()
        .filter(|r| r.iter().all(|o| *o == Outcome::Pass))
        .count();
    println!("  both: {both} pass of {total}");
    let mut reasons: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (name, r) in results {
        if let Outcome::Unsupported(m) = &r[0] {
            reasons.entry(short_reason(m)).or_default().insert(name);
        }
    }
    let mut by_count: Vec<(usize, String)> = reasons
        .into_iter()
        .map(|(m, names)| (names.len(), m))
        .collect();
    by_count.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if !by_count.is_empty() {
        println!("\nunsupported, by reason (tests):");
        for (n, m) in by_count.iter().take(40) {
            println!("  {n:4}  {m}");
        }
        if by_count.len() > 40 {
            println!("  ... {} more reasons", by_count.len() - 40);
        }
    }
}

/// The part of an unsupported message that is the same across tests: the op for an
/// unsupported op, else the message without node names.
fn short_reason(m: &str) -> String {
    if let Some(start) = m.find("(op ") {
        let rest = &m[start + 4..];
        if let Some(end) = rest.find(')') {
            let op = &rest[..end];
            let after = rest[end + 1..].trim_start_matches(':').trim();
            if after.starts_with("op is not supported") {
                return format!("op {op}");
            }
            return format!("{op}: {after}");
        }
    }
    m.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_the_worst_element() {
        let a = Tensor::from_vec(&[3], vec![1.0f32, 2.0, 3.0]);
        assert_eq!(mismatch(&a, &a), None);
        let b = Tensor::from_vec(&[3], vec![1.0f32, 2.5, 3.1]);
        let m = mismatch(&a, &b).unwrap();
        assert!(m.starts_with("element 1 is 2 instead of 2.5"), "{m}");
        let nan = Tensor::from_vec(&[1], vec![f32::NAN]);
        assert_eq!(mismatch(&nan, &nan), None);
        let m = mismatch(&a, &Tensor::from_vec(&[1, 3], vec![1.0f32, 2.0, 3.0])).unwrap();
        assert!(m.starts_with("shape [3] instead of [1, 3]"), "{m}");
        let big = Tensor::from_vec(&[1], vec![i64::MAX]);
        let big1 = Tensor::from_vec(&[1], vec![i64::MAX - 1]);
        assert!(mismatch(&big, &big1).is_some());
    }

    #[test]
    fn unsupported_reasons_group_by_op() {
        let m = "node `n` (op Foo): op is not supported (`lathe ops` lists ...)";
        assert_eq!(short_reason(m), "op Foo");
        let m = "node `n` (op Pad): pad mode `edge` is not supported";
        assert_eq!(short_reason(m), "Pad: pad mode `edge` is not supported");
    }
}
