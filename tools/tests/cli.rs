//! The real `lathe` binary on the TensorFlow fixtures: `run` (inputs by name or not, saving
//! outputs), `inspect --json`, `dump`, `--help`, and its errors, which are one line on stderr
//! starting with `error:`, with a non-zero exit and no panic.

use lathe_ir::Tensor;
use lathe_tests::{
    bit_identical, by_name, compare, read_npy, run_interp, tile_rows, unknown_op_graph_def,
    write_graph_def, write_npy, Fixture, TempDir, Tolerance,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `lathe` with `args`, logging left at its default (warnings only).
fn lathe<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lathe"))
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

/// Asserts success with nothing on stderr; returns stdout.
fn success(o: &Output) -> String {
    assert!(
        o.status.success(),
        "lathe failed ({}): {}",
        o.status,
        stderr(o)
    );
    assert_eq!(stderr(o), "", "stderr of a successful run");
    stdout(o)
}

/// Asserts the error contract: non-zero exit, empty stdout, stderr exactly one line that starts
/// with `error: ` and mentions no panic. Returns the line without `error: `.
fn one_line_error(o: &Output) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "lathe succeeded; stdout: {}",
        stdout(o)
    );
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "lathe panicked: {err}");
    assert_eq!(stdout(o), "", "stdout of a failed run; stderr: {err}");
    assert!(
        err.ends_with('\n'),
        "stderr does not end with a newline: {err:?}"
    );
    let line = &err[..err.len() - 1];
    assert!(!line.contains('\n'), "stderr is not one line: {err:?}");
    line.strip_prefix("error: ")
        .unwrap_or_else(|| panic!("stderr does not start with `error: `: {err:?}"))
        .to_string()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `--input` argument `NAME=FILE`.
fn named(name: &str, file: &Path) -> String {
    format!("{name}={}", file.display())
}

fn input_file(f: &Fixture, k: usize) -> PathBuf {
    f.dir.join(&f.meta.inputs[k].file)
}

/// The summary line `lathe run` prints: `NAME: DTYPE[SHAPE] [v0, v1, ...]`.
fn parse_summary(line: &str) -> (String, String, Vec<f64>) {
    let (head, values) = line
        .split_once(" [")
        .unwrap_or_else(|| panic!("summary line {line:?}"));
    let (name, ty) = head
        .rsplit_once(": ")
        .unwrap_or_else(|| panic!("summary line {line:?}"));
    let values = values.strip_suffix(']').expect("values end with ]");
    let values = values
        .split(", ")
        .take_while(|v| !v.starts_with("..."))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("value {v:?}: {e}")))
        .collect();
    (name.to_string(), ty.replace(' ', ""), values)
}

#[test]
fn run_with_an_unnamed_input_prints_each_output() {
    let f = Fixture::open("mlp_tiny");
    let out = lathe(&[
        "run",
        path_str(&f.model_path()),
        "--input",
        path_str(&input_file(&f, 0)),
    ]);
    let text = success(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let (name, ty, values) = parse_summary(lines[0]);
    assert_eq!(name, "Identity:0");
    assert_eq!(ty, "f32[1,10]");
    // The first eight of TensorFlow's ten softmax outputs, printed with six decimals.
    let (_, want) = &f.expected_outputs()[0];
    let want = want.to_f64_vec();
    assert_eq!(values.len(), 8, "{text}");
    for (i, (g, w)) in values.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 5e-7,
            "value {i}: printed {g}, TensorFlow {w}"
        );
    }
    assert!(lines[0].ends_with(", ... (10 values)]"), "{text}");
}

#[test]
fn run_with_output_dir_writes_tensorflows_outputs() {
    let dir = TempDir::new("run_output_dir");
    let outs = dir.join("outs");
    for (fixture, expected_files) in [
        ("mlp_tiny", vec!["Identity_0.npy"]),
        ("multi_io", vec!["Identity_0.npy", "Identity_1_0.npy"]),
    ] {
        let f = Fixture::open(fixture);
        let mut args = vec![
            "run".to_string(),
            path_str(&f.model_path()).to_string(),
            "--output-dir".to_string(),
            path_str(&outs).to_string(),
        ];
        for (k, i) in f.meta.inputs.iter().enumerate() {
            args.push("--input".into());
            args.push(named(&i.name, &input_file(&f, k)));
        }
        let text = success(&lathe(&args));
        assert_eq!(text.lines().count(), f.meta.outputs.len(), "{text}");
        let mut written: Vec<String> = std::fs::read_dir(&outs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        assert_eq!(written, expected_files, "{fixture}");
        for ((meta, want), file) in f.expected_outputs().iter().zip(&expected_files) {
            let got = read_npy(&outs.join(file));
            compare(&got, want, meta.tolerance())
                .unwrap_or_else(|e| panic!("{fixture}: {file}: {e}"));
        }
        std::fs::remove_dir_all(&outs).unwrap();
    }
}

#[test]
fn multi_input_model_needs_every_input_by_name() {
    let f = Fixture::open("multi_io");
    let model = f.model_path();
    let (a, b) = (input_file(&f, 0), input_file(&f, 1));

    // Named, in either order: the same outputs.
    let ab = success(&lathe(&[
        "run",
        path_str(&model),
        "--input",
        &named("a", &a),
        "--input",
        &named("b", &b),
    ]));
    let ba = success(&lathe(&[
        "run",
        path_str(&model),
        "-i",
        &named("b", &b),
        "-i",
        &named("a", &a),
    ]));
    assert_eq!(ab, ba);
    assert_eq!(ab.lines().count(), 2, "{ab}");

    // Unnamed.
    let e = one_line_error(&lathe(&["run", path_str(&model), "--input", path_str(&a)]));
    assert_eq!(
        e,
        format!(
            "--input {}: the model has 2 inputs, so name it: --input NAME=FILE.npy (its inputs: a, b)",
            a.display()
        )
    );
    // One missing.
    let e = one_line_error(&lathe(&[
        "run",
        path_str(&model),
        "--input",
        &named("a", &a),
    ]));
    assert_eq!(e, "missing input `b` (f32[5]): pass --input b=FILE.npy");
    // None at all.
    let e = one_line_error(&lathe(&["run", path_str(&model)]));
    assert_eq!(e, "missing input `a` (f32[2,5]): pass --input a=FILE.npy");
    // Given twice.
    let e = one_line_error(&lathe(&[
        "run",
        path_str(&model),
        "--input",
        &named("a", &a),
        "--input",
        &named("b", &b),
        "--input",
        &named("a", &a),
    ]));
    assert!(e.contains("`a`") && e.contains("more than once"), "{e}");
}

#[test]
fn wrong_input_shape_is_a_one_line_error() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("wrong_input_shape");
    for shape in [vec![2usize, 8], vec![16], vec![1, 17], vec![]] {
        let n: usize = shape.iter().product();
        let file = dir.join("x.npy");
        write_npy(&file, &Tensor::from_vec(&shape, vec![0.5f32; n]));
        let e = one_line_error(&lathe(&[
            "run",
            path_str(&f.model_path()),
            "--input",
            path_str(&file),
        ]));
        let compact = e.replace(' ', "");
        let actual = format!(
            "f32[{}]",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(e.starts_with("input `x`"), "{e}");
        assert!(e.contains(path_str(&file)), "does not name the file: {e}");
        assert!(
            compact.contains("expectedf32[1,16]"),
            "no expected shape: {e}"
        );
        assert!(
            compact.contains(&format!("got{actual}")),
            "no actual shape {actual}: {e}"
        );
    }
}

#[test]
fn wrong_input_dtype_is_a_one_line_error() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("wrong_input_dtype");
    for (t, dtype) in [
        (Tensor::from_vec(&[1, 16], vec![1i32; 16]), "i32"),
        (Tensor::from_vec(&[1, 16], vec![1.0f64; 16]), "f64"),
        (Tensor::from_vec(&[1, 16], vec![true; 16]), "bool"),
    ] {
        let file = dir.join("x.npy");
        write_npy(&file, &t);
        let e = one_line_error(&lathe(&[
            "run",
            path_str(&f.model_path()),
            "--input",
            &named("x", &file),
        ]));
        let compact = e.replace(' ', "");
        assert!(e.starts_with("input `x`"), "{e}");
        assert!(compact.contains("expectedf32[1,16]"), "{e}");
        assert!(compact.contains(&format!("got{dtype}[1,16]")), "{e}");
    }
}

#[test]
fn unknown_input_name_is_a_one_line_error() {
    let f = Fixture::open("mlp_tiny");
    let arg = named("y", &input_file(&f, 0));
    let e = one_line_error(&lathe(&["run", path_str(&f.model_path()), "--input", &arg]));
    assert_eq!(
        e,
        format!("--input {arg}: the model has no input named `y` (its inputs: x)")
    );
}

#[test]
fn missing_or_invalid_input_file_is_a_one_line_error() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("missing_input_file");
    let missing = dir.join("nope.npy");
    for arg in [path_str(&missing).to_string(), named("x", &missing)] {
        let e = one_line_error(&lathe(&["run", path_str(&f.model_path()), "--input", &arg]));
        assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
        assert!(e.contains("No such file"), "{e}");
    }
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"this is not numpy").unwrap();
    let e = one_line_error(&lathe(&[
        "run",
        path_str(&f.model_path()),
        "--input",
        path_str(&garbage),
    ]));
    assert!(
        e.starts_with(&format!("{}: not a valid .npy file", garbage.display())),
        "{e}"
    );
}

#[test]
fn input_path_containing_an_equals_sign_is_a_file() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("equals_in_path");
    let file = dir.join("x=1.npy");
    std::fs::copy(input_file(&f, 0), &file).unwrap();
    let text = success(&lathe(&[
        "run",
        path_str(&f.model_path()),
        "--input",
        path_str(&file),
    ]));
    assert!(text.starts_with("Identity:0: f32[1,10] ["), "{text}");
}

#[test]
fn symbolic_batch_runs_at_another_batch_size() {
    let f = Fixture::open("dynamic_batch");
    let dir = TempDir::new("symbolic_batch");
    let x = read_npy(&input_file(&f, 0));
    let file = dir.join("x6.npy");
    write_npy(&file, &tile_rows(&x, 2));
    let outs = dir.join("outs");
    success(&lathe(&[
        "run",
        path_str(&f.model_path()),
        "--input",
        path_str(&file),
        "--output-dir",
        path_str(&outs),
    ]));
    // Every op is row-wise, so twice the rows in gives TensorFlow's rows twice out.
    for (meta, want) in f.expected_outputs() {
        let file = format!("{}.npy", meta.name.replace(':', "_"));
        let got = read_npy(&outs.join(&file));
        compare(&got, &tile_rows(&want, 2), meta.tolerance())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn run_output_dir_that_is_a_file_is_a_one_line_error() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("output_dir_is_file");
    let file = dir.join("not_a_dir");
    std::fs::write(&file, b"").unwrap();
    let e = one_line_error(&lathe(&[
        "run",
        path_str(&f.model_path()),
        "--input",
        path_str(&input_file(&f, 0)),
        "--output-dir",
        path_str(&file),
    ]));
    assert!(e.contains(path_str(&file)), "{e}");
}

/// The keys `inspect --json` always has.
const INSPECT_KEYS: [&str; 6] = ["inputs", "nodes", "ops", "outputs", "param_bytes", "params"];
/// The keys it may add about optimization (the `-O`/`--passes` pipeline's effect) and the CPU
/// plan.
const INSPECT_OPT_KEYS: [&str; 5] = [
    "nodes_optimized",
    "ops_optimized",
    "passes",
    "cpu_plan",
    "peak_arena_bytes",
];

#[test]
fn inspect_reports_the_cpu_plan_and_its_peak_arena() {
    let f = Fixture::open("resnet_tiny");
    let text = success(&lathe(&["inspect", "--json", path_str(&f.model_path())]));
    let j: Value = serde_json::from_str(&text).expect("inspect --json prints JSON");
    let plan = &j["cpu_plan"];
    let peak = j["peak_arena_bytes"]
        .as_u64()
        .expect("peak_arena_bytes is a number");
    assert_eq!(plan["arena_bytes"].as_u64(), Some(peak), "{plan}");
    // The plan never needs more than every intermediate at once, nor less than the busiest step.
    let lower = plan["arena_lower_bound"].as_u64().unwrap();
    assert!(peak >= lower && lower > 0, "{plan}");
    assert_eq!(plan["interp_steps"].as_u64(), Some(0), "{plan}");
    assert!(plan["epilogues"].as_u64().unwrap() > 0, "{plan}");
    let text = success(&lathe(&["inspect", path_str(&f.model_path())]));
    assert!(text.contains("peak arena: "), "{text}");
}

#[test]
fn inspect_json_reports_mlp_tiny() {
    let f = Fixture::open("mlp_tiny");
    let text = success(&lathe(&[
        "inspect",
        "--json",
        "-O0",
        path_str(&f.model_path()),
    ]));
    let j: Value = serde_json::from_str(&text).expect("inspect --json prints JSON");
    let keys: Vec<&str> = j
        .as_object()
        .expect("an object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    for k in INSPECT_KEYS {
        assert!(keys.contains(&k), "no key `{k}` in {keys:?}");
    }
    for k in &keys {
        assert!(
            INSPECT_KEYS.contains(k) || INSPECT_OPT_KEYS.contains(k),
            "unexpected key `{k}` in {keys:?}"
        );
    }
    assert_eq!(
        j["inputs"],
        serde_json::json!([{"name": "x", "dtype": "f32", "shape": [1, 16]}])
    );
    assert_eq!(
        j["outputs"],
        serde_json::json!([{"name": "Identity:0", "dtype": "f32", "shape": [1, 10]}])
    );
    assert_eq!(j["nodes"], f.meta.nodes);
    // Dense 16-32-32-10: kernels and biases, all f32.
    let params = 16 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10;
    assert_eq!(j["params"], params);
    assert_eq!(j["param_bytes"], 4 * params);
    let ops: BTreeMap<String, usize> = serde_json::from_value(j["ops"].clone()).unwrap();
    let want: BTreeMap<String, usize> = [
        ("input", 1),
        ("const", 6),
        ("matmul", 3),
        ("bias_add", 3),
        ("relu", 2),
        ("softmax", 1),
        ("identity", 7),
        ("noop", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(ops, want);
    assert_eq!(
        ops.values().sum::<usize>(),
        f.meta.nodes,
        "ops count every node"
    );
    // At -O0 nothing is optimized away.
    if keys.contains(&"nodes_optimized") {
        assert_eq!(j["nodes_optimized"], f.meta.nodes);
    }
    if keys.contains(&"ops_optimized") {
        assert_eq!(j["ops_optimized"], j["ops"]);
    }
}

#[test]
fn inspect_json_optimized_counts_are_consistent() {
    let f = Fixture::open("mlp_tiny");
    let text = success(&lathe(&["inspect", "--json", path_str(&f.model_path())]));
    let j: Value = serde_json::from_str(&text).unwrap();
    // The unoptimized report does not depend on the optimization level.
    assert_eq!(j["nodes"], f.meta.nodes);
    assert_eq!(j["params"], 1930);
    let Some(opt) = j.get("nodes_optimized") else {
        return;
    };
    let opt = opt.as_u64().expect("nodes_optimized is a count") as usize;
    assert!(opt <= f.meta.nodes, "{opt} nodes after optimization");
    if let Some(ops) = j.get("ops_optimized") {
        let ops: BTreeMap<String, usize> = serde_json::from_value(ops.clone()).unwrap();
        assert_eq!(ops.values().sum::<usize>(), opt, "{ops:?}");
    }
}

#[test]
fn inspect_json_nodes_match_tensorflow_for_every_fixture() {
    for f in Fixture::all() {
        let text = success(&lathe(&["inspect", "--json", path_str(&f.model_path())]));
        let j: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["nodes"], f.meta.nodes, "{}", f.name);
        let ops: BTreeMap<String, usize> = serde_json::from_value(j["ops"].clone()).unwrap();
        assert_eq!(ops.values().sum::<usize>(), f.meta.nodes, "{}", f.name);
        let names = |k: &str| -> Vec<String> {
            j[k].as_array()
                .unwrap()
                .iter()
                .map(|o| o["name"].as_str().unwrap().to_string())
                .collect()
        };
        let want_in: Vec<String> = f.meta.inputs.iter().map(|i| i.name.clone()).collect();
        assert_eq!(names("inputs"), want_in, "{}", f.name);
        let mut got_out = names("outputs");
        got_out.sort();
        let mut want_out: Vec<String> = f.meta.outputs.iter().map(|o| o.name.clone()).collect();
        want_out.sort();
        assert_eq!(got_out, want_out, "{}", f.name);
    }
}

#[test]
fn inspect_json_shows_a_symbolic_dimension_as_a_string() {
    let f = Fixture::open("dynamic_batch");
    let text = success(&lathe(&["inspect", "--json", path_str(&f.model_path())]));
    let j: Value = serde_json::from_str(&text).unwrap();
    let shape = j["inputs"][0]["shape"].as_array().unwrap();
    assert_eq!(shape.len(), 2, "{text}");
    assert!(shape[0].is_string(), "{text}");
    assert_eq!(shape[1], 6, "{text}");
}

#[test]
fn inspect_text_summarizes_mlp_tiny() {
    let f = Fixture::open("mlp_tiny");
    let text = success(&lathe(&["inspect", path_str(&f.model_path())]));
    for want in [
        "inputs:\n  x: f32[1,16]\n",
        "outputs:\n  Identity:0: f32[1,10]\n",
        "nodes: 24",
        "params: 1930 (7.7 KB)\n",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

#[test]
fn dump_with_full_constants_parses_back_for_every_fixture() {
    let dir = TempDir::new("dump_full_constants");
    for f in Fixture::all() {
        // Unoptimized and not specialized, the dump is the imported graph.
        let text = success(&lathe(&[
            "dump",
            "-O0",
            "--generic",
            "--full-constants",
            path_str(&f.model_path()),
        ]));
        let parsed = lathe_ir::text::parse(&text)
            .unwrap_or_else(|e| panic!("{}: dump does not parse: {e}", f.name));
        lathe_ir::verify(&parsed).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert!(
            parsed.structurally_eq(&f.graph()),
            "{}: dump -O0 differs from the model",
            f.name
        );
        // And the dump runs through the CLI as a `.lir` model, bit for bit like the `.pb`.
        if f.name == "multi_io" {
            let lir = dir.join("multi_io.lir");
            std::fs::write(&lir, &text).unwrap();
            let mut outs = Vec::new();
            for model in [lir.clone(), f.model_path()] {
                let out_dir = dir.join(if model == lir { "lir" } else { "pb" });
                let mut args = vec![
                    "run".to_string(),
                    path_str(&model).into(),
                    "-O0".into(),
                    "--output-dir".into(),
                    path_str(&out_dir).into(),
                ];
                for (k, i) in f.meta.inputs.iter().enumerate() {
                    args.push("--input".into());
                    args.push(named(&i.name, &input_file(&f, k)));
                }
                success(&lathe(&args));
                outs.push(out_dir);
            }
            for file in ["Identity_0.npy", "Identity_1_0.npy"] {
                bit_identical(
                    &read_npy(&outs[0].join(file)),
                    &read_npy(&outs[1].join(file)),
                )
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
    }
}

/// Optimized (the default level) and specialized to the fixture's inputs, the `--full-constants`
/// dump (what `run` executes) still parses, verifies, and computes TensorFlow's outputs.
#[test]
fn optimized_dump_with_full_constants_parses_back_for_every_fixture() {
    for f in Fixture::all() {
        let mut args = vec![
            "dump".to_string(),
            "--full-constants".into(),
            path_str(&f.model_path()).into(),
        ];
        for (k, i) in f.meta.inputs.iter().enumerate() {
            args.push("--input".into());
            args.push(named(&i.name, &input_file(&f, k)));
        }
        let text = success(&lathe(&args));
        let optimized = lathe_ir::text::parse(&text)
            .unwrap_or_else(|e| panic!("{}: optimized dump does not parse: {e}", f.name));
        lathe_ir::verify(&optimized).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let got = by_name(
            run_interp(optimized, &f.inputs())
                .unwrap_or_else(|e| panic!("{}: optimized dump: {e}", f.name)),
        );
        for (meta, want) in f.expected_outputs() {
            let g = got
                .get(&meta.name)
                .unwrap_or_else(|| panic!("{}: optimized dump lost `{}`", f.name, meta.name));
            compare(g, &want, meta.tolerance())
                .unwrap_or_else(|e| panic!("{}: optimized dump: `{}`: {e}", f.name, meta.name));
        }
    }
}

/// `dump` shows what `run` executes: the specialization for the given shapes, optimized by
/// the same pipeline, and with `--format plan` the CPU plan compiled from it.
#[test]
fn dump_shows_the_specialization_and_its_plan() {
    let f = Fixture::open("dynamic_batch");
    let model_path = f.model_path();
    let model = path_str(&model_path);
    let generic = success(&lathe(&["dump", "--generic", model]));
    assert!(generic.contains('?'), "symbolic dims stay: {generic}");
    let name = &f.meta.inputs[0].name;
    let shape = format!("{name}=5,{}", f.graph().inputs()[0].ty.shape.dims()[1]);
    let text = success(&lathe(&["dump", "--shape", &shape, model]));
    assert!(!text.contains('?'), "every dim bound: {text}");
    assert!(text.contains("[5,"), "batch 5: {text}");
    let plan = success(&lathe(&[
        "dump", "--shape", &shape, "--format", "plan", model,
    ]));
    assert!(plan.starts_with("cpu plan @"), "{plan}");
    assert!(plan.contains("  wave 0\n"), "{plan}");
    assert!(plan.contains("return %"), "{plan}");
    assert!(!plan.contains("interp"), "no interpreter step: {plan}");
    // The same `--passes` reach every command: with no passes nothing is fused.
    let unfused = success(&lathe(&["dump", "--passes", "", "--format", "plan", model]));
    assert!(!unfused.contains("fused."), "{unfused}");
    let e = one_line_error(&lathe(&["dump", "--shape", "nope=1", model]));
    assert!(e.contains("no input named `nope`"), "{e}");
    let e = one_line_error(&lathe(&["dump", "--shape", &format!("{name}=a,b"), model]));
    assert!(e.contains("dims must be numbers"), "{e}");
}

/// `dump --format mlir` prints the GPU backend's MLIR for every computing node of the
/// specialization and lists the views; a generic graph has no known shapes to lower.
#[test]
fn dump_prints_the_mlir_of_the_kernels() {
    let f = Fixture::open("gelu_chain_tiny");
    let model_path = f.model_path();
    let model = path_str(&model_path);
    let mlir = success(&lathe(&["dump", "--format", "mlir", model]));
    assert!(
        mlir.starts_with("module attributes {gpu.container_module} {\n  gpu.module @kernels {"),
        "{mlir}"
    );
    assert!(mlir.contains("gpu.func @k0("), "{mlir}");
    assert!(mlir.contains("math.erf"), "GELU's erf: {mlir}");
    // Its matmuls are kernels too (a loop over the contracted axis).
    assert!(mlir.contains("scf.for"), "{mlir}");
    assert!(!mlir.contains("not lowered"), "{mlir}");
    let e = one_line_error(&lathe(&["dump", "--generic", "--format", "mlir", model]));
    assert!(e.contains("need a specialization"), "{e}");
}

/// `dump --format ptx` writes one PTX module with every kernel for `--chip`, by MLIR
/// in-process; a build without the `cuda` feature says how to build one that can.
#[test]
fn dump_prints_the_ptx_of_the_kernels_or_says_how_to_build_for_it() {
    let f = Fixture::open("gelu_chain_tiny");
    let model_path = f.model_path();
    let model = path_str(&model_path);
    if !cfg!(feature = "cuda") {
        let e = one_line_error(&lathe(&["dump", "--format", "ptx", model]));
        assert!(
            e.contains("`cargo build -p lathe-cli --features cuda`"),
            "{e}"
        );
        return;
    }
    for chip in ["sm_80", "sm_90"] {
        let ptx = success(&lathe(&["dump", "--format", "ptx", "--chip", chip, model]));
        assert!(ptx.contains(&format!(".target {chip}")), "{ptx}");
        assert!(ptx.contains(".entry k0("), "{ptx}");
        // With libdevice linked (`LATHE_CUDA_NVCC`), CUDA's assembler takes it alone.
        if let Some(ptxas) = lathe_gpu::mlir::host::Ptxas::find() {
            ptxas.assemble(&ptx, chip).expect("assembles");
        }
    }
    assert_eq!(
        success(&lathe(&["dump", "--format", "ptx", model])),
        success(&lathe(&[
            "dump", "--format", "ptx", "--chip", "sm_90", model
        ])),
        "sm_90 by default"
    );
}

#[test]
fn dump_elides_large_constants_by_default() {
    let f = Fixture::open("mlp_tiny");
    // Unoptimized, so that the weights are still constants of their own.
    let short = success(&lathe(&["dump", "-O0", path_str(&f.model_path())]));
    let full = success(&lathe(&[
        "dump",
        "-O0",
        "--full-constants",
        path_str(&f.model_path()),
    ]));
    assert!(
        short.len() < full.len() / 4,
        "{} vs {} bytes",
        short.len(),
        full.len()
    );
    assert!(short.contains("elided"), "{short}");
    assert!(!full.contains("elided"), "{full}");
    assert!(short.starts_with("graph @model(%x: f32[1,16]) -> (\"Identity:0\": f32[1,10]) {"));
}

#[test]
fn unknown_op_model_is_a_one_line_error_naming_node_and_op() {
    let dir = TempDir::new("cli_unknown_op");
    let model = dir.join("frob.pb");
    write_graph_def(&model, &unknown_op_graph_def());
    let x = dir.join("x.npy");
    write_npy(&x, &Tensor::from_vec(&[2, 3], vec![1.0f32; 6]));
    let prefix = format!(
        "{}: node `frob` (op FrobnicateV9): unsupported TensorFlow op `FrobnicateV9`",
        model.display()
    );
    for args in [
        vec!["run", path_str(&model), "--input", path_str(&x)],
        vec!["inspect", path_str(&model)],
        vec!["inspect", "--json", path_str(&model)],
        vec!["dump", path_str(&model)],
    ] {
        let e = one_line_error(&lathe(&args));
        assert!(e.starts_with(&prefix), "{args:?}: {e}");
    }
}

#[test]
fn bad_model_files_are_one_line_errors() {
    let dir = TempDir::new("cli_bad_models");
    let missing = dir.join("missing.pb");
    let e = one_line_error(&lathe(&["run", path_str(&missing)]));
    assert_eq!(
        e,
        format!("{}: no such file or directory", missing.display())
    );

    let truncated = dir.join("truncated.pb");
    let bytes = std::fs::read(Fixture::open("mlp_tiny").model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = one_line_error(&lathe(&["inspect", path_str(&truncated)]));
    assert!(
        e.starts_with(&format!(
            "{}: not a valid TensorFlow GraphDef",
            truncated.display()
        )),
        "{e}"
    );

    let e = one_line_error(&lathe(&["dump", path_str(dir.path())]));
    assert!(
        e.starts_with(&format!(
            "{}: not a SavedModel directory: it has no saved_model.pb or saved_model.pbtxt",
            dir.path().display()
        )),
        "{e}"
    );

    let bad_lir = dir.join("bad.lir");
    std::fs::write(&bad_lir, "graph @g( {\n").unwrap();
    let e = one_line_error(&lathe(&["inspect", path_str(&bad_lir)]));
    assert!(e.starts_with(&format!("{}: ", bad_lir.display())), "{e}");
}

#[test]
fn help_works_for_every_subcommand() {
    let top = success(&lathe(&["--help"]));
    for sub in ["run", "dump", "inspect"] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(sub)),
            "`{sub}` not listed:\n{top}"
        );
    }
    for (sub, flags) in [
        (
            "run",
            &["--input", "--output-dir", "--backend", "<MODEL>"][..],
        ),
        ("dump", &["--full-constants", "<MODEL>"][..]),
        ("inspect", &["--json", "<MODEL>"][..]),
    ] {
        let text = success(&lathe(&[sub, "--help"]));
        assert!(text.contains(&format!("Usage: lathe {sub}")), "{text}");
        for flag in flags {
            assert!(
                text.contains(flag),
                "`lathe {sub} --help` lacks {flag}:\n{text}"
            );
        }
        // `lathe help SUB` says the same.
        assert_eq!(success(&lathe(&["help", sub])), text, "lathe help {sub}");
    }
}

#[test]
fn usage_errors_exit_non_zero_without_panicking() {
    let f = Fixture::open("mlp_tiny");
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["run"],
        vec!["run", path_str(&f.model_path()), "--backend", "tpu"],
    ] {
        let o = lathe(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?}");
    }
    let o = lathe(&["run", path_str(&f.model_path()), "--backend", "tpu"]);
    assert!(
        stderr(&o).contains("unknown backend `tpu` (available: cpu, interp, cuda)"),
        "{}",
        stderr(&o)
    );
}

/// Every fixture through `lathe run` at every optimization level: the optimized graphs must
/// still compute TensorFlow's outputs within the fixture's tolerance.
#[test]
fn run_matches_tensorflow_for_every_fixture_at_every_level() {
    let dir = TempDir::new("cli_every_fixture");
    let mut failures = Vec::new();
    for level in ["-O0", "-O1", "-O2", "-O3"] {
        for f in Fixture::all() {
            let outs = dir.join(&format!("{}{level}", f.name));
            let mut args = vec![
                "run".to_string(),
                path_str(&f.model_path()).into(),
                level.into(),
                "--output-dir".into(),
                path_str(&outs).into(),
            ];
            for (k, i) in f.meta.inputs.iter().enumerate() {
                args.push("--input".into());
                args.push(named(&i.name, &input_file(&f, k)));
            }
            let o = lathe(&args);
            if !o.status.success() {
                failures.push(format!("{} {level}: {}", f.name, stderr(&o).trim_end()));
                continue;
            }
            let text = stdout(&o);
            assert_eq!(
                text.lines().count(),
                f.meta.outputs.len(),
                "{}: {text}",
                f.name
            );
            for (meta, want) in f.expected_outputs() {
                let file = format!("{}.npy", meta.name.replace(':', "_"));
                let got = read_npy(&outs.join(&file));
                let tol = if want.dtype().is_float() {
                    meta.tolerance()
                } else {
                    Tolerance::EXACT
                };
                if let Err(e) = compare(&got, &want, tol) {
                    failures.push(format!("{} {level}: `{}`: {e}", f.name, meta.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The SavedModel fixtures' directory.
fn saved(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tf_saved")
        .join(name)
}

#[test]
fn run_and_inspect_take_a_saved_model_directory_and_its_signatures() {
    let dir = saved("module_saved");
    let sm = dir.join("saved_model");
    // The default signature, its outputs named by the signature's keys.
    let out = success(&lathe(&[
        "run",
        path_str(&sm),
        "--input",
        &named("x", &dir.join("serving_default.x.npy")),
    ]));
    let names: Vec<String> = out.lines().map(|l| parse_summary(l).0).collect();
    assert_eq!(names, ["logits", "probs"], "{out}");
    // Another signature, by name, with its outputs saved and compared with TensorFlow's.
    let tmp = TempDir::new("cli_saved_model");
    success(&lathe(&[
        "run",
        path_str(&sm),
        "--signature",
        "affine",
        "--input",
        &named("x", &dir.join("affine.x.npy")),
        "--input",
        &named("shift", &dir.join("affine.shift.npy")),
        "--output-dir",
        path_str(tmp.path()),
    ]));
    let got = read_npy(&tmp.path().join("out.npy"));
    let want = read_npy(&dir.join("affine.out.npy"));
    compare(
        &got,
        &want,
        Tolerance {
            rtol: 1e-5,
            atol: 1e-6,
        },
    )
    .unwrap();
    // inspect lists the tags, every signature and the functions.
    let text = success(&lathe(&["inspect", path_str(&sm)]));
    assert!(text.starts_with("saved model: tag sets serve\n"), "{text}");
    assert!(
        text.contains("  affine(shift: f32[2,3], x: f32[2,4]) -> (out: f32[2,3])\n"),
        "{text}"
    );
    assert!(text.contains("(loaded)"), "{text}");
    let j: Value = serde_json::from_str(&success(&lathe(&[
        "inspect",
        path_str(&sm),
        "--json",
        "--signature",
        "affine",
    ])))
    .unwrap();
    assert_eq!(j["saved_model"]["loaded_signature"], "affine");
    assert_eq!(
        j["saved_model"]["signatures"]["serving_default"]["outputs"]["probs"],
        "f32[2,3]"
    );
    assert_eq!(j["outputs"][0]["name"], "out");
    assert_eq!(j["cpu_plan"]["interp_steps"], 0);
    // Errors: an unknown signature, and a signature asked of a frozen graph.
    let e = one_line_error(&lathe(&["run", path_str(&sm), "--signature", "nope"]));
    assert!(
        e.contains("no signature `nope` (signatures: `affine`, `serving_default`)"),
        "{e}"
    );
    let f = Fixture::open("mlp_tiny");
    let e = one_line_error(&lathe(&[
        "run",
        path_str(&f.model_path()),
        "--signature",
        "x",
    ]));
    assert!(
        e.contains("a signature can only be chosen in a SavedModel directory"),
        "{e}"
    );
}

#[test]
fn compiled_artifact_runs_like_its_source_and_bad_ones_are_one_line_errors() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("cli-compile");
    let art = dir.path().join("model.lathe");
    let text = success(&lathe(&[
        "compile",
        path_str(&f.model_path()),
        "-o",
        path_str(&art),
    ]));
    assert!(
        text.contains("1 specialization (x: f32[1,16]) + the generic graph"),
        "{text}"
    );
    let (src, out) = (dir.path().join("src"), dir.path().join("art"));
    let input = path_str(&input_file(&f, 0)).to_string();
    for (model, to) in [(&f.model_path(), &src), (&art, &out)] {
        success(&lathe(&[
            "run",
            path_str(model),
            "-i",
            &input,
            "--output-dir",
            path_str(to),
        ]));
    }
    let file = "Identity_0.npy";
    bit_identical(&read_npy(&out.join(file)), &read_npy(&src.join(file))).unwrap();
    let text = success(&lathe(&["inspect", path_str(&art)]));
    let header = format!(
        "artifact: format {}",
        lathe_compiler::artifact::FORMAT_VERSION
    );
    assert!(text.starts_with(&header), "{text}");
    let text = success(&lathe(&["dump", path_str(&art), "--format", "plan"]));
    assert!(text.starts_with("cpu plan @"), "{text}");
    // Load-to-first-result in a fresh process (timed, never asserted on).
    let text = success(&lathe(&[
        "bench",
        path_str(&art),
        "--cold",
        "2",
        "-i",
        &input,
        "--json",
    ]));
    let cold: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cold["rounds"], 2, "{text}");
    for key in ["load_ms", "first_run_ms", "process_ms"] {
        assert!(cold[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {text}");
    }

    // Truncated, damaged, or unknown shapes: one line naming the file or the flag.
    let bytes = std::fs::read(&art).unwrap();
    let cut = dir.path().join("cut.lathe");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = one_line_error(&lathe(&["run", path_str(&cut), "-i", &input]));
    assert!(e.contains("cut.lathe") && e.contains("truncated"), "{e}");
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(&cut, &damaged).unwrap();
    let e = one_line_error(&lathe(&["inspect", path_str(&cut)]));
    assert!(e.contains("cut.lathe") && e.contains("checksum"), "{e}");
    let e = one_line_error(&lathe(&[
        "compile",
        path_str(&f.model_path()),
        "-o",
        path_str(&cut),
        "--shape",
        "y=1,2",
    ]));
    assert!(
        e.contains("--shape y=1,2") && e.contains("no input named `y`"),
        "{e}"
    );
}

#[test]
fn compile_emit_obj_writes_an_object_and_a_header_and_bad_requests_are_one_line_errors() {
    let f = Fixture::open("dynamic_batch");
    let dir = TempDir::new("cli-emit-obj");
    let (obj, header) = (dir.path().join("batch.o"), dir.path().join("batch.h"));
    let model = path_str(&f.model_path()).to_string();
    let text = success(&lathe(&[
        "compile",
        &model,
        "--emit",
        "obj",
        "-o",
        path_str(&obj),
        "--shape",
        "x=4,6",
    ]));
    assert!(
        text.contains("batch_run for (x: f32[4,6])") && text.contains("batch.h"),
        "{text}"
    );
    // An ELF relocatable object defining the entry point.
    let bytes = std::fs::read(&obj).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(
        u16::from_le_bytes([bytes[16], bytes[17]]),
        1,
        "not relocatable"
    );
    let h = std::fs::read_to_string(&header).unwrap();
    for want in [
        "int32_t batch_run(const void *const *inputs, void *const *outputs, void *scratch);",
        "#define BATCH_NUM_INPUTS 1",
        "#define BATCH_INPUT_BYTES {96}",
        "#define BATCH_INPUT_0_SHAPE {4, 6}",
        "#define BATCH_OUTPUT_0_SHAPE {4, 8}",
        "#define BATCH_SCRATCH_BYTES ",
    ] {
        assert!(h.contains(want), "the header lacks `{want}`:\n{h}");
    }

    // One specialization only; a prefix that is a C identifier; header flags need obj.
    let emit_obj = |more: &[&str]| {
        let mut args = vec!["compile", &model, "--emit", "obj", "-o", path_str(&obj)];
        args.extend_from_slice(more);
        one_line_error(&lathe(&args))
    };
    let e = emit_obj(&[]);
    assert!(
        e.contains("--emit obj compiles one specialization, and 0 were asked for"),
        "{e}"
    );
    let e = emit_obj(&["--shape", "x=1,6", "--shape", "x=2,6"]);
    assert!(e.contains("and 2 were asked for"), "{e}");
    let e = emit_obj(&["--shape", "x=1,6", "--prefix", "9-lives"]);
    assert!(
        e.contains("symbol prefix `9-lives` is not a C identifier"),
        "{e}"
    );
    let e = one_line_error(&lathe(&[
        "compile",
        &model,
        "-o",
        path_str(&obj),
        "--header",
        path_str(&header),
    ]));
    assert!(
        e.contains("--header and --prefix are for --emit obj"),
        "{e}"
    );
}
