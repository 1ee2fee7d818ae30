//! Object files from `lathe compile --emit obj` (`lathe_runtime::cpu::aot`), linked by the
//! system's C compiler with `liblathe_kernels.a` into the example driver
//! (`examples/run_model.c`) and run as a C program, with no Rust toolchain or JIT at run time:
//! the six benchmark models (their small fixtures), models with several inputs and outputs,
//! embedding lookups, concatenations, integer and transcendental elementwise ops (generated
//! code calling the library's `lathe_rt_*` functions), and a Keras LSTM SavedModel (a `while`
//! loop). Each program runs its model on three threads at once; its outputs are within the fixture's tolerance of TensorFlow's and bit for bit
//! what the Rust API gives for the same specialization. Errors a caller can make (scratch not
//! aligned) come back as a status and a message.
//!
//! Without a C compiler the tests print a note and skip, unless `LATHE_REQUIRE_CC=1` (CI).

use lathe_ir::{Graph, Tensor, TensorType};
use lathe_runtime::cpu::aot::write_object;
use lathe_runtime::{Model, ModelOptions};
use lathe_tests::c_build::{built_staticlib, compiler, run_ok, STATIC_LINK_FLAGS};
use lathe_tests::{bit_identical, compare, read_npy, Fixture, TempDir, Tolerance};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fixtures of other classes of graph than the benchmark models'.
const OTHER_FIXTURES: &[&str] = &[
    "multi_io",
    "text_classifier_tiny",
    "densenet_tiny",
    "int_ops",
    "elementwise",
];

/// A model, its inputs, and TensorFlow's outputs.
struct Case {
    name: String,
    graph: Graph,
    inputs: Vec<(String, Tensor)>,
    expected: Vec<(String, Tensor, Tolerance)>,
}

impl Case {
    fn fixture(name: &str) -> Case {
        let f = Fixture::open(name);
        Case {
            name: name.to_string(),
            graph: f.graph(),
            inputs: f.inputs(),
            expected: (f.expected_outputs().into_iter())
                .map(|(m, t)| (m.name.clone(), t, m.tolerance()))
                .collect(),
        }
    }

    /// `tests/fixtures/tf_recurrent/<name>`, from its SavedModel (one input, one output).
    fn saved_model(name: &str) -> Case {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tf_recurrent")
            .join(name);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let graph = lathe_compiler::load(&dir.join("saved_model")).unwrap();
        let input = graph.inputs()[0].name.clone();
        let output = graph.outputs()[0].name.clone();
        Case {
            name: name.to_string(),
            graph,
            inputs: vec![(input, read_npy(&dir.join("input.npy")))],
            expected: vec![(
                output,
                read_npy(&dir.join("output.npy")),
                Tolerance {
                    rtol: meta["rtol"].as_f64().unwrap(),
                    atol: meta["atol"].as_f64().unwrap(),
                },
            )],
        }
    }
}

/// A model's program: its object and header written, the driver built.
struct Program {
    case: Case,
    model: Model,
    exe: PathBuf,
    input_names: Vec<String>,
    output_names: Vec<String>,
}

/// Writes the case's object file and header into `dir` and builds the driver against them.
fn build(cc: &str, case: Case, dir: &Path) -> Program {
    let name = case.name.as_str();
    let model = Model::with_options(case.graph.clone(), ModelOptions::default()).unwrap();
    let types: Vec<TensorType> = (model.inputs().iter())
        .map(|i| &i.name)
        .map(|n| {
            let (_, t) = (case.inputs.iter().find(|(m, _)| m == n))
                .unwrap_or_else(|| panic!("{name}: no input `{n}`"));
            t.ty()
        })
        .collect();
    let spec = model
        .specialize_for(&types)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let prefix = name.to_string();
    let written = write_object(
        spec.cpu_plan().expect("the CPU backend"),
        name,
        &prefix,
        spec.signature().names(),
        spec.output_names(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let object = dir.join(format!("{prefix}.o"));
    std::fs::write(&object, &written.object).unwrap();
    std::fs::write(dir.join(format!("{prefix}.h")), &written.header).unwrap();
    let exe = dir.join(format!("run_{prefix}"));
    let lib = built_staticlib("lathe-aot", "liblathe_kernels.a");
    run_ok(
        Command::new(cc)
            .args(["-O1", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(dir)
            .arg(format!("-DMODEL={prefix}"))
            .arg(format!("-DMODEL_UPPER={}", prefix.to_ascii_uppercase()))
            .arg(format!("-DMODEL_HEADER=\"{prefix}.h\""))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/run_model.c"))
            .arg(&object)
            .arg(&lib)
            .args(STATIC_LINK_FLAGS)
            .arg("-o")
            .arg(&exe),
    );
    Program {
        case,
        model,
        exe,
        input_names: spec.signature().names().to_vec(),
        output_names: spec.output_names().to_vec(),
    }
}

/// Runs the program on the case's inputs on `threads` threads; its outputs by name.
fn run(p: &Program, dir: &Path, threads: usize) -> Vec<(String, Tensor)> {
    let (inputs, model) = (&p.case.inputs, &p.case.name);
    let mut cmd = Command::new(&p.exe);
    cmd.arg(threads.to_string());
    for (i, input) in p.input_names.iter().enumerate() {
        let (_, t) = (inputs.iter().find(|(n, _)| n == input))
            .unwrap_or_else(|| panic!("{model}: no input `{input}`"));
        let path = dir.join(format!("{model}_in_{i}.bin"));
        std::fs::write(&path, t.to_le_bytes()).unwrap();
        cmd.arg(path);
    }
    let outs: Vec<PathBuf> = (0..p.output_names.len())
        .map(|j| dir.join(format!("{model}_out_{j}.bin")))
        .collect();
    cmd.args(&outs);
    run_ok(&mut cmd);
    let named: Vec<(&str, Tensor)> = (inputs.iter())
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let rust = p.model.run(&named).unwrap();
    (p.output_names.iter().zip(&outs))
        .map(|(output, path)| {
            let (_, like) = (rust.iter().find(|(n, _)| n == output))
                .unwrap_or_else(|| panic!("{model}: no output `{output}`"));
            let bytes = std::fs::read(path).unwrap();
            let got = Tensor::from_le_bytes(like.dtype(), like.shape(), &bytes)
                .unwrap_or_else(|e| panic!("{model}: output `{output}`: {e}"));
            bit_identical(&got, like).unwrap_or_else(|e| {
                panic!("{model}: output `{output}` differs from the Rust API's: {e}")
            });
            (output.clone(), got)
        })
        .collect()
}

#[test]
fn c_programs_run_the_models_and_match_tensorflow() {
    let Some(cc) = compiler("CC", "cc") else {
        return;
    };
    let dir = TempDir::new("aot-models");
    let mut cases: Vec<Case> = (lathe_tests::BENCHMARK_FIXTURES.iter())
        .chain(OTHER_FIXTURES)
        .map(|n| Case::fixture(n))
        .collect();
    cases.push(Case::saved_model("lstm"));
    // Linking is most of the time: two at once.
    let second = cases.split_off(cases.len().div_ceil(2));
    let programs: Vec<Program> = std::thread::scope(|s| {
        let handles: Vec<_> = [cases, second]
            .into_iter()
            .map(|chunk| {
                let (cc, dir) = (&cc, dir.path());
                s.spawn(move || {
                    (chunk.into_iter())
                        .map(|c| build(cc, c, dir))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for p in &programs {
        let got = run(p, dir.path(), 3);
        for (output, want, tol) in &p.case.expected {
            let (_, t) = (got.iter().find(|(n, _)| n == output))
                .unwrap_or_else(|| panic!("{}: no output `{output}`", p.case.name));
            compare(t, want, *tol)
                .unwrap_or_else(|e| panic!("{}: output `{output}`: {e}", p.case.name));
        }
    }
}

#[test]
fn a_caller_error_is_a_status_and_a_message() {
    let Some(cc) = compiler("CC", "cc") else {
        return;
    };
    let dir = TempDir::new("aot-errors");
    let p = build(&cc, Case::fixture("mlp_tiny"), dir.path());
    // THREADS = 0: one call with scratch one byte past an aligned address.
    let inputs = &p.case.inputs;
    let input = dir.join("in.bin");
    std::fs::write(&input, inputs[0].1.to_le_bytes()).unwrap();
    let out = Command::new(&p.exe)
        .arg("0")
        .arg(&input)
        .arg(dir.join("out.bin"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error 1: scratch must be") && stderr.contains("aligned to 64"),
        "{stderr}"
    );
}
