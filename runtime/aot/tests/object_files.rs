//! Object files from `lathe compile --emit obj` (`lathe_runtime::cpu::aot`), linked by the
//! system's C compiler with `liblathe_kernels.a` into the example driver
//! (`examples/run_model.c`) and run as a C program, with no Rust toolchain or JIT at run time:
//! the six benchmark models (their small fixtures) and the models with several inputs and
//! outputs, embedding lookups and concatenations. Each program runs its model on three threads
//! at once; its outputs are within the fixture's tolerance of TensorFlow's and bit for bit
//! what the Rust API gives for the same specialization. Errors a caller can make (scratch not
//! aligned) come back as a status and a message.
//!
//! Without a C compiler the tests print a note and skip, unless `LATHE_REQUIRE_CC=1` (CI).

use lathe_ir::{Tensor, TensorType};
use lathe_runtime::cpu::aot::write_object;
use lathe_runtime::{Model, ModelOptions};
use lathe_tests::c_build::{built_libs, compiler, run_ok, STATIC_LINK_FLAGS};
use lathe_tests::{bit_identical, compare, Fixture, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The models: the benchmark ones, then other classes of graph.
const MODELS: &[&str] = &[
    "mlp_tiny",
    "cnn_tiny",
    "mobilenet_tiny",
    "resnet_tiny",
    "encoder_tiny",
    "gelu_chain_tiny",
    "multi_io",
    "text_classifier_tiny",
    "densenet_tiny",
];

/// A model's program: its object and header written, the driver built.
struct Program {
    fixture: Fixture,
    model: Model,
    exe: PathBuf,
    input_names: Vec<String>,
    output_names: Vec<String>,
}

/// Writes `name`'s object file and header into `dir` and builds the driver against them.
fn build(cc: &str, name: &str, dir: &Path) -> Program {
    let fixture = Fixture::open(name);
    let model = Model::with_options(fixture.graph(), ModelOptions::default()).unwrap();
    let types: Vec<TensorType> = (fixture.inputs().iter())
        .map(|(_, t)| t.ty())
        .collect::<Vec<_>>();
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
    let libs = built_libs("lathe-aot", &["liblathe_kernels.a"]);
    run_ok(
        Command::new(cc)
            .args(["-O1", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(dir)
            .arg(format!("-DMODEL={prefix}"))
            .arg(format!("-DMODEL_UPPER={}", prefix.to_ascii_uppercase()))
            .arg(format!("-DMODEL_HEADER=\"{prefix}.h\""))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/run_model.c"))
            .arg(&object)
            .arg(libs.join("liblathe_kernels.a"))
            .args(STATIC_LINK_FLAGS)
            .arg("-o")
            .arg(&exe),
    );
    Program {
        fixture,
        model,
        exe,
        input_names: spec.signature().names().to_vec(),
        output_names: spec.output_names().to_vec(),
    }
}

/// Runs the program on the fixture's inputs on `threads` threads; its outputs by name.
fn run(p: &Program, dir: &Path, threads: usize) -> Vec<(String, Tensor)> {
    let inputs = p.fixture.inputs();
    let mut cmd = Command::new(&p.exe);
    cmd.arg(threads.to_string());
    for (i, name) in p.input_names.iter().enumerate() {
        let (_, t) = (inputs.iter().find(|(n, _)| n == name))
            .unwrap_or_else(|| panic!("{}: no input `{name}`", p.fixture.name));
        let path = dir.join(format!("{}_in_{i}.bin", p.fixture.name));
        std::fs::write(&path, t.to_le_bytes()).unwrap();
        cmd.arg(path);
    }
    let outs: Vec<PathBuf> = (0..p.output_names.len())
        .map(|j| dir.join(format!("{}_out_{j}.bin", p.fixture.name)))
        .collect();
    cmd.args(&outs);
    run_ok(&mut cmd);
    let rust = p
        .model
        .run(
            &(inputs.iter())
                .map(|(n, t)| (n.as_str(), t.clone()))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    (p.output_names.iter().zip(&outs))
        .map(|(name, path)| {
            let (_, like) = (rust.iter().find(|(n, _)| n == name))
                .unwrap_or_else(|| panic!("{}: no output `{name}`", p.fixture.name));
            let got =
                Tensor::from_le_bytes(like.dtype(), like.shape(), &std::fs::read(path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: output `{name}`: {e}", p.fixture.name));
            bit_identical(&got, like).unwrap_or_else(|e| {
                panic!(
                    "{}: output `{name}` differs from the Rust API's: {e}",
                    p.fixture.name
                )
            });
            (name.clone(), got)
        })
        .collect()
}

#[test]
fn c_programs_run_the_models_and_match_tensorflow() {
    let Some(cc) = compiler("CC", "cc") else {
        return;
    };
    let dir = TempDir::new("aot-models");
    // Linking is most of the time: two at once.
    let programs: Vec<Program> = std::thread::scope(|s| {
        let chunks: Vec<_> = MODELS.chunks(MODELS.len().div_ceil(2)).collect();
        let handles: Vec<_> = (chunks.into_iter())
            .map(|names| {
                let (cc, dir) = (&cc, dir.path());
                s.spawn(move || names.iter().map(|n| build(cc, n, dir)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for p in &programs {
        let got = run(p, dir.path(), 3);
        for (meta, want) in p.fixture.expected_outputs() {
            let (_, t) = (got.iter().find(|(n, _)| *n == meta.name))
                .unwrap_or_else(|| panic!("{}: no output `{}`", p.fixture.name, meta.name));
            compare(t, &want, meta.tolerance())
                .unwrap_or_else(|e| panic!("{}: output `{}`: {e}", p.fixture.name, meta.name));
        }
    }
}

#[test]
fn a_caller_error_is_a_status_and_a_message() {
    let Some(cc) = compiler("CC", "cc") else {
        return;
    };
    let dir = TempDir::new("aot-errors");
    let p = build(&cc, "mlp_tiny", dir.path());
    // THREADS = 0: one call with scratch one byte past an aligned address.
    let inputs = p.fixture.inputs();
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
