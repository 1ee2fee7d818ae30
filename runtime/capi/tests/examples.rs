//! The C and C++ examples, built with the system's `cc` and `c++` against `liblathe.a` and
//! the checked-in header, run on a fixture model: the C one from several threads at once
//! (each call's bytes checked against the first's), its result bit for bit what the Rust API
//! gives; the C++ one through a small RAII wrapper, with an error caught as an exception.

use lathe_ir::Tensor;
use lathe_runtime::{Model, ModelOptions};
use lathe_tests::{Fixture, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `liblathe.a`, beside the test binary's directory (`target/<profile>/`).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let lib = profile.join("liblathe.a");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// Compiles `source` with `compiler` against the header and the static library.
fn build(compiler: &str, source: &str, out: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(compiler)
        .arg("-O1")
        .arg("-I")
        .arg(dir.join("include"))
        .arg(dir.join("examples").join(source))
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(status.success(), "{compiler} {source} failed");
}

/// The input the examples build: a ramp of f32s.
fn ramp(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec(dims, (0..n).map(|i| (i % 17) as f32 * 0.0625 - 0.5).collect())
}

#[test]
fn the_c_example_runs_from_threads_and_matches_the_rust_api() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("capi-c");
    let exe = dir.join("threads");
    build("cc", "threads.c", &exe);
    let g = f.graph();
    let input = &g.inputs()[0];
    let dims = input.ty.shape.as_known().unwrap();
    let dims_arg: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let bin = dir.join("out.bin");
    let out = Command::new(&exe)
        .arg(f.model_path())
        .arg(&input.name)
        .arg(dims_arg.join(","))
        .arg(&bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("ok\n"));
    let model = Model::with_options(g.clone(), ModelOptions::default()).unwrap();
    let want = model.run(&[(input.name.as_str(), ramp(&dims))]).unwrap();
    assert_eq!(std::fs::read(&bin).unwrap(), want[0].1.to_le_bytes());
}

#[test]
fn the_cpp_example_runs_and_catches_an_error() {
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("capi-cpp");
    let exe = dir.join("hello");
    build("c++", "hello.cpp", &exe);
    let g = f.graph();
    let input = &g.inputs()[0];
    let dims: Vec<String> = (input.ty.shape.as_known().unwrap().iter())
        .map(|d| d.to_string())
        .collect();
    let out = Command::new(&exe)
        .arg(f.model_path())
        .arg(&input.name)
        .arg(dims.join(","))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("outputs: "), "{stdout}");
    assert!(stdout.contains("no input named `no_such_input`"), "{stdout}");
}
