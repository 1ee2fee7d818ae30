//! File tests for passes: every `tests/filetests/**/*.lir` holds a graph, the pipeline to run
//! (`; run: PASSES`), and `; check:` lines the printed result must match (the Cranelift
//! filetest / LLVM FileCheck habit).
//!
//! Directives, in `;` comments anywhere in the file:
//! - `; run: fold-constants,prune` — the pipeline (`lathe_compiler::pipeline::Pipeline::parse`);
//! - `; check: PATTERN` — a later output line contains PATTERN (runs of whitespace collapse);
//! - `; check-next: PATTERN` — the line right after the previous match contains PATTERN;
//! - `; check-not: PATTERN` — no line between the previous match and the next one (or the end)
//!   contains PATTERN;
//! - `; no-eval` — skip the differential check below;
//! - `; print: plan` — check the CPU plan compiled from the result (steps, kernels, buffers and
//!   their arena offsets) instead of the IR; the plan's outputs must then also equal the
//!   interpreter's on the input graph. The lowering tests in `filetests/lower/` use it.
//! - `; print: mlir` — check the MLIR the GPU backend writes for the result's kernels
//!   (`lathe_gpu::mlir`) instead of the IR. Where LLVM 19's MLIR tools are installed, the
//!   module must also lower to PTX with an entry per kernel, and every kernel, run on the CPU
//!   through its host function (`lathe_gpu::mlir::host`), must give the interpreter's outputs.
//!   The tests in `filetests/gpu/` use it.
//!
//! Bless mode: with `LATHE_BLESS=1`, a file whose checks fail has its check lines replaced by
//! the exact output (`; check:` on the first line, `; check-next:` on each after it), so a
//! deliberate change of a printer or a lowering is one command, reviewed in the diff.
//!
//! In a pattern, `{{...}}` matches any run of characters (the text between the braces only
//! documents what is expected there, e.g. `conv2d(%{{T}}, %{{W}})`), so checks need not pin
//! value numbers that other rewrites shift.
//!
//! Besides the checks, the input graph and the optimized graph are run by the interpreter on
//! seeded pseudo-random inputs and must agree (|a - b| <= 1e-5 + 1e-5·|b|): a rewrite that
//! matches its checks but changes the answer fails.

use lathe_compiler::pipeline::{NoHooks, Pipeline};
use lathe_compiler::SpecializedGraph;
use lathe_ir::{DType, Graph, Tensor};
use lathe_runtime::cpu::{CpuPlan, ThreadPool};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, PartialEq)]
enum Check {
    Plain(String),
    Next(String),
    Not(String),
}

struct FileTest {
    pipeline: String,
    checks: Vec<Check>,
    eval: bool,
    /// What the checks read.
    print: Print,
}

/// What a file test prints and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Print {
    /// The IR after the pipeline.
    Ir,
    /// The CPU plan compiled from it.
    Plan,
    /// The MLIR of its kernels.
    Mlir,
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn directives(text: &str) -> Result<FileTest, String> {
    let mut pipeline = None;
    let mut checks = Vec::new();
    let mut eval = true;
    let mut print = Print::Ir;
    for line in text.lines() {
        let Some((_, comment)) = line.split_once(';') else {
            continue;
        };
        let c = comment.trim();
        if let Some(p) = c.strip_prefix("run:") {
            if pipeline.replace(p.trim().to_string()).is_some() {
                return Err("more than one `; run:` line".into());
            }
        } else if let Some(p) = c.strip_prefix("check:") {
            checks.push(Check::Plain(collapse(p)));
        } else if let Some(p) = c.strip_prefix("check-next:") {
            checks.push(Check::Next(collapse(p)));
        } else if let Some(p) = c.strip_prefix("check-not:") {
            checks.push(Check::Not(collapse(p)));
        } else if c == "no-eval" {
            eval = false;
        } else if let Some(p) = c.strip_prefix("print:") {
            print = match p.trim() {
                "plan" => Print::Plan,
                "ir" => Print::Ir,
                "mlir" => Print::Mlir,
                other => return Err(format!("unknown `; print: {other}` (ir, plan or mlir)")),
            }
        } else if c.starts_with("check") {
            return Err(format!("unknown directive `; {c}`"));
        }
    }
    if matches!(checks.first(), Some(Check::Next(_))) {
        return Err("`check-next:` needs a `check:` before it".into());
    }
    Ok(FileTest {
        pipeline: pipeline.ok_or("missing `; run: PASSES` line")?,
        checks,
        eval,
        print,
    })
}

/// True when `line` contains `pattern`, where each `{{...}}` in the pattern matches any text.
fn matches(line: &str, pattern: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("{{") {
        literals.push(&rest[..start]);
        rest = match rest[start + 2..].find("}}") {
            Some(end) => &rest[start + 2 + end + 2..],
            None => "",
        };
    }
    literals.push(rest);
    let mut at = 0;
    for lit in literals {
        match line[at..].find(lit) {
            Some(i) => at += i + lit.len(),
            None => return false,
        }
    }
    true
}

/// Applies the checks to `output`; the error says which check failed and where.
fn filecheck(checks: &[Check], output: &str) -> Result<(), String> {
    let lines: Vec<String> = output.lines().map(collapse).collect();
    let mut pos = 0; // next line to search
    let mut last: Option<usize> = None; // line of the previous match
    let mut pending_not: Vec<&str> = Vec::new();
    let not_between = |nots: &[&str], from: usize, to: usize| -> Result<(), String> {
        for n in nots {
            if let Some(i) = (from..to).find(|&i| matches(&lines[i], n)) {
                return Err(format!(
                    "`check-not: {n}` found on output line {}: {}",
                    i + 1,
                    lines[i]
                ));
            }
        }
        Ok(())
    };
    for c in checks {
        match c {
            Check::Not(p) => pending_not.push(p),
            Check::Plain(p) => {
                let found = (pos..lines.len())
                    .find(|&i| matches(&lines[i], p))
                    .ok_or_else(|| format!("`check: {p}` not found after output line {pos}"))?;
                not_between(&pending_not, pos, found)?;
                pending_not.clear();
                last = Some(found);
                pos = found + 1;
            }
            Check::Next(p) => {
                let l = last.expect("validated") + 1;
                if !pending_not.is_empty() {
                    return Err("`check-not:` cannot come right before `check-next:`".into());
                }
                if l >= lines.len() || !matches(&lines[l], p) {
                    return Err(format!(
                        "`check-next: {p}` does not match output line {}: {}",
                        l + 1,
                        lines.get(l).map(String::as_str).unwrap_or("<end>")
                    ));
                }
                last = Some(l);
                pos = l + 1;
            }
        }
    }
    not_between(&pending_not, pos, lines.len())
}

/// A small deterministic generator (SplitMix64), so inputs are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-2, 2).
    fn float(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
    }
}

/// Inputs for `g`: symbolic or unknown dims become 3; floats in [-2, 2), integers in 0..5
/// (valid as indices), bools random.
fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    inputs_with(g, seed, |rng, _| (rng.next() % 5) as f64)
}

/// Inputs for a GPU kernel's body: as [`random_inputs`], but signed integers in -8..8 and
/// unsigned ones in 0..16, so that signs, wrapping and out-of-range shift amounts are tried.
fn kernel_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    inputs_with(g, seed, |rng, d| {
        let v = (rng.next() % 16) as f64;
        if matches!(d, DType::I8 | DType::I16 | DType::I32 | DType::I64) {
            v - 8.0
        } else {
            v
        }
    })
}

/// Seeded inputs for `g`, integers drawn by `int`.
fn inputs_with(g: &Graph, seed: u64, mut int: impl FnMut(&mut Rng, DType) -> f64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    g.inputs()
        .iter()
        .map(|i| {
            let dims = i.ty.shape.known_or(3);
            let n: usize = dims.iter().product();
            let vals: Vec<f64> = (0..n)
                .map(|_| match i.ty.dtype {
                    d if d.is_float() => rng.float(),
                    DType::Bool => (rng.next() & 1) as f64,
                    d => int(&mut rng, d),
                })
                .collect();
            Tensor::from_f64(i.ty.dtype, &dims, &vals)
        })
        .collect()
}

fn same_outputs(a: &[Tensor], b: &[Tensor]) -> Result<(), String> {
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        if x.dtype() != y.dtype() || x.shape() != y.shape() {
            return Err(format!(
                "output {k}: {}{:?} before, {}{:?} after",
                x.dtype(),
                x.shape(),
                y.dtype(),
                y.shape()
            ));
        }
        for (i, (u, v)) in x.to_f64_vec().iter().zip(y.to_f64_vec()).enumerate() {
            let ok =
                u == &v || (u.is_nan() && v.is_nan()) || (u - v).abs() <= 1e-5 + 1e-5 * u.abs();
            if !ok {
                return Err(format!("output {k}[{i}]: {u} before, {v} after"));
            }
        }
    }
    Ok(())
}

fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let t = directives(&text)?;
    let original = lathe_ir::text::parse(&text).map_err(|e| format!("parse: {e}"))?;
    lathe_ir::verify(&original).map_err(|e| format!("input does not verify: {e}"))?;
    let pipeline = Pipeline::parse(&t.pipeline)?;
    let mut g = original.clone();
    pipeline
        .run(&mut g, &mut NoHooks)
        .map_err(|e| e.to_string())?;
    let printed = lathe_ir::text::print(&g);
    // The printed result must itself be valid IR text.
    lathe_ir::text::parse(&printed).map_err(|e| format!("output does not parse back: {e}"))?;
    let plan = if t.print == Print::Plan {
        let specialized = SpecializedGraph::new(g.clone())
            .map_err(|e| format!("a plan needs known shapes: {e}"))?;
        let pool = Arc::new(ThreadPool::new(1));
        Some(CpuPlan::compile(specialized, pool).map_err(|e| format!("lowering: {e}"))?)
    } else {
        None
    };
    let output = match (&plan, t.print) {
        (Some(p), _) => p.print(&g.name),
        (None, Print::Mlir) => {
            let lowered = lathe_gpu::mlir::lower_graph(&g).map_err(|e| format!("MLIR: {e}"))?;
            check_with_mlir(&g, &lowered)?;
            lowered.print(&g)
        }
        (None, _) => printed.clone(),
    };
    let checked = if t.checks.is_empty() {
        Err("no `; check:` lines (a file test must check something)".to_string())
    } else {
        filecheck(&t.checks, &output)
    };
    if let Err(e) = checked {
        if std::env::var_os("LATHE_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(path, bless(&text, &output)).map_err(|e| e.to_string())?;
            eprintln!("blessed {}", path.display());
        } else {
            return Err(format!(
                "{e}\n--- output ---\n{output}(LATHE_BLESS=1 rewrites the checks to this output)"
            ));
        }
    }
    if t.eval {
        for seed in [1, 2] {
            let inputs = random_inputs(&original, seed);
            let before = lathe_ir::interp::run(&original, &inputs)
                .map_err(|e| format!("interpreting the input: {e}"))?;
            let after = match &plan {
                Some(p) => p
                    .run(&inputs)
                    .map_err(|e| format!("running the plan: {e}"))?,
                None => lathe_ir::interp::run(&g, &inputs)
                    .map_err(|e| format!("interpreting the output: {e}"))?,
            };
            same_outputs(&before, &after)
                .map_err(|e| format!("the result changed: {e}\n--- output ---\n{output}"))?;
        }
    }
    Ok(())
}

/// Whether the MLIR tools and `ptxas` must be there (`LATHE_REQUIRE_MLIR=1`, as CI sets it)
/// rather than their checks skipped.
fn mlir_required() -> bool {
    std::env::var_os("LATHE_REQUIRE_MLIR").is_some_and(|v| v == "1")
}

/// Checks `lowered` with MLIR's tools when they are installed: the module must verify and lower
/// to PTX for sm_80 and sm_90 with an entry per kernel (which CUDA's `ptxas` must assemble,
/// libdevice linked, where `LATHE_CUDA_NVCC` names them), and each kernel, run on the CPU through its host function,
/// must give the interpreter's outputs for its node, given the interpreter's values of the
/// graph (seeded random inputs) as its arguments.
fn check_with_mlir(g: &lathe_ir::Graph, lowered: &lathe_gpu::mlir::Lowered) -> Result<(), String> {
    let Some(tools) = lathe_gpu::mlir::host::Tools::find() else {
        if mlir_required() {
            return Err("LATHE_REQUIRE_MLIR=1 but LLVM 19's MLIR tools are not installed".into());
        }
        eprintln!("note: no MLIR tools installed; the MLIR is checked as text only");
        return Ok(());
    };
    let ptxas = lathe_gpu::mlir::host::Ptxas::find();
    if ptxas.is_none() && mlir_required() {
        return Err(format!(
            "LATHE_REQUIRE_MLIR=1 but LATHE_CUDA_NVCC ({:?}) names no bin/ptxas and \
             nvvm/libdevice/libdevice.10.bc",
            std::env::var_os("LATHE_CUDA_NVCC")
        ));
    }
    for chip in ["sm_80", "sm_90"] {
        let libdevice = ptxas.as_ref().map(|p| p.libdevice.as_path());
        let ptx = tools.ptx(lowered, chip, libdevice)?;
        if let Some(k) =
            (lowered.kernels.iter()).find(|k| !ptx.contains(&format!(".entry {}(", k.symbol)))
        {
            return Err(format!("the PTX has no entry `{}`:\n{ptx}", k.symbol));
        }
        if let Some(p) = &ptxas {
            p.assemble(&ptx, chip)?;
        }
    }
    for seed in [1, 2] {
        let inputs = kernel_inputs(g, seed);
        let values = lathe_ir::interp::run_all(g, &inputs)
            .map_err(|e| format!("interpreting the graph: {e}"))?;
        for k in &lowered.kernels {
            let args = lathe_gpu::mlir::host::bind(k, &values)?;
            let (got, fault) = tools.run(k, &args)?;
            if fault {
                return Err(format!("kernel {} raised its fault flag", k.symbol));
            }
            same_outputs(&values[&k.node], &got).map_err(|e| {
                format!(
                    "kernel {} on the host differs from the interpreter: {e}",
                    k.symbol
                )
            })?;
        }
    }
    Ok(())
}

/// `text` with its check lines replaced by checks for exactly `output`, placed where the first
/// check line was (or after the `; run:` line when there was none).
fn bless(text: &str, output: &str) -> String {
    let is_check = |l: &str| {
        l.split_once(';')
            .is_some_and(|(before, c)| before.trim().is_empty() && c.trim().starts_with("check"))
    };
    let mut checks = String::new();
    for (i, line) in output.lines().enumerate() {
        let kind = if i == 0 { "check" } else { "check-next" };
        let line = line.trim();
        if !line.is_empty() {
            checks.push_str(&format!("; {kind}: {line}\n"));
        }
    }
    let mut out = String::new();
    let mut placed = false;
    for line in text.lines() {
        if is_check(line) {
            if !placed {
                out.push_str(&checks);
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if !placed && line.trim_start().starts_with("; run:") {
            out.push_str(&checks);
            placed = true;
        }
    }
    out
}

fn lir_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            lir_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "lir") {
            out.push(p);
        }
    }
}

#[test]
fn filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("filetests");
    let mut files = Vec::new();
    lir_files(&root, &mut files);
    // Every pass has file tests; fewer files than this means the directory was not found.
    assert!(
        files.len() >= 60,
        "found only {} file tests under {}",
        files.len(),
        root.display()
    );
    let mut failures = Vec::new();
    for f in &files {
        if let Err(e) = run_file(f) {
            failures.push(format!(
                "{}: {e}",
                f.strip_prefix(&root).unwrap_or(f).display()
            ));
        }
    }
    println!("{} file tests, {} failed", files.len(), failures.len());
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn filecheck_semantics() {
    let out = "a b\nc  d\ne f\ng h\n";
    let ok = |cs: Vec<Check>| filecheck(&cs, out);
    assert!(ok(vec![Check::Plain("c d".into()), Check::Next("e f".into())]).is_ok());
    assert!(ok(vec![Check::Plain("e f".into()), Check::Plain("a b".into())]).is_err());
    assert!(ok(vec![Check::Plain("a b".into()), Check::Next("e f".into())]).is_err());
    assert!(ok(vec![Check::Not("c d".into()), Check::Plain("e f".into())]).is_err());
    assert!(ok(vec![Check::Plain("c d".into()), Check::Not("a b".into())]).is_ok());
    assert!(ok(vec![Check::Plain("a".into()), Check::Not("g h".into())]).is_err());
    assert!(directives("; check: x\ngraph").is_err(), "missing run line");
    assert!(matches(
        "%4 = conv2d(%3, %0) : f32[1]",
        "conv2d(%{{T}}, %{{W}}) : f32"
    ));
    assert!(!matches(
        "%4 = conv2d(%3) : f32[1]",
        "conv2d(%{{T}}, %{{W}})"
    ));
    assert!(matches("abc", "{{x}}"));
    assert!(
        directives("; run: cse\n; check-nxt: y").is_err(),
        "misspelled directive"
    );
    assert_eq!(
        directives("; run: cse\n; print: plan").unwrap().print,
        Print::Plan
    );
    assert_eq!(
        directives("; run: cse\n; print: mlir").unwrap().print,
        Print::Mlir
    );
    assert!(directives("; run: cse\n; print: asm").is_err());
}

#[test]
fn bless_replaces_checks_with_the_output() {
    let text = "; a test\n; run: cse\n; check: old\n; check-next: older\ngraph @g() {}\n";
    let blessed = bless(text, "new 1\n  new 2\n");
    assert_eq!(
        blessed,
        "; a test\n; run: cse\n; check: new 1\n; check-next: new 2\ngraph @g() {}\n"
    );
    let t = directives(&blessed).unwrap();
    assert!(filecheck(&t.checks, "new 1\nnew 2\n").is_ok());
    // Without check lines the checks go right after the run line.
    let blessed = bless("; run: cse\ngraph @g() {}\n", "x\n");
    assert_eq!(blessed, "; run: cse\n; check: x\ngraph @g() {}\n");
}
