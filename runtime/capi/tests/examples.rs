//! The C and C++ examples, built with the system's C and C++ compilers against the checked-in
//! header and run on a fixture model: the C one, linked with `liblathe.a`, from several
//! threads at once (each call's bytes checked against the first's), its result within the
//! fixture's tolerance of TensorFlow's expected output and bit for bit what the Rust API
//! gives; the C++ one, linked with `liblathe.so`, through a small RAII wrapper, with an error
//! caught as an exception.
//!
//! The libraries are the ones cargo built for this test run (see [`lib_dir`]). Without a C compiler the tests
//! print a note and skip, unless `LATHE_REQUIRE_CC=1` (CI sets it), which makes that a failure.

use lathe_ir::Tensor;
use lathe_runtime::{Model, ModelOptions};
use lathe_tests::c_build::{built_libs, compiler, run_ok, STATIC_LINK_FLAGS};
use lathe_tests::{bit_identical, compare, Fixture, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding `liblathe.a` and `liblathe.so` as cargo built them for this test.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| built_libs("lathe-capi", &["liblathe.a", "liblathe.so"]))
}

/// How an example links Lathe.
#[derive(Clone, Copy)]
enum Link {
    /// `liblathe.a`, with [`STATIC_LINK_FLAGS`].
    Static,
    /// `liblathe.so`, found at run time by an rpath (well under a second to link).
    Shared,
}

/// Compiles `source` with `compiler` against the header and the library.
fn build(compiler: &str, source: &str, link: Link, out: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(compiler);
    cmd.args(["-O1", "-Wall", "-Werror", "-I"])
        .arg(dir.join("include"))
        .arg(dir.join("examples").join(source));
    match link {
        Link::Static => cmd
            .arg(lib_dir().join("liblathe.a"))
            .args(STATIC_LINK_FLAGS),
        Link::Shared => cmd
            .arg("-L")
            .arg(lib_dir())
            .arg(format!("-Wl,-rpath,{}", lib_dir().display()))
            .arg("-llathe"),
    };
    cmd.arg("-o").arg(out);
    run_ok(&mut cmd);
}

#[test]
fn the_c_example_runs_from_threads_and_gives_the_expected_output() {
    let Some(cc) = compiler("CC", "cc") else {
        return;
    };
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("capi-c");
    let exe = dir.join("threads");
    build(&cc, "threads.c", Link::Static, &exe);
    let inputs = f.inputs();
    let [(input_name, input)] = &inputs[..] else {
        panic!("mlp_tiny has one input");
    };
    let (input_bin, output_bin) = (dir.join("in.bin"), dir.join("out.bin"));
    std::fs::write(&input_bin, input.to_le_bytes()).unwrap();
    let stdout = run_ok(
        Command::new(&exe)
            .arg(f.model_path())
            .arg(&input_bin)
            .arg(&output_bin),
    );
    assert!(stdout.ends_with("ok\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("input {input_name}: f32[1,16]")),
        "{stdout}"
    );

    let (meta, want) = &f.expected_outputs()[0];
    let got = Tensor::from_le_bytes(
        want.dtype(),
        want.shape(),
        &std::fs::read(&output_bin).unwrap(),
    )
    .unwrap();
    compare(&got, want, meta.tolerance()).unwrap_or_else(|e| panic!("{}: {e}", meta.name));
    let model = Model::with_options(f.graph(), ModelOptions::default()).unwrap();
    let rust = model.run(&[(input_name.as_str(), input.clone())]).unwrap();
    bit_identical(&got, &rust[0].1).unwrap();
}

#[test]
fn the_cpp_example_runs_and_catches_an_error() {
    let Some(cxx) = compiler("CXX", "c++") else {
        return;
    };
    let f = Fixture::open("mlp_tiny");
    let dir = TempDir::new("capi-cpp");
    let exe = dir.join("hello");
    build(&cxx, "hello.cpp", Link::Shared, &exe);
    let input = &f.meta.inputs[0];
    let dims: Vec<String> = input.shape.iter().map(|d| d.to_string()).collect();
    let stdout = run_ok(
        Command::new(&exe)
            .arg(f.model_path())
            .arg(&input.name)
            .arg(dims.join(",")),
    );
    assert!(stdout.contains("outputs: 10 values"), "{stdout}");
    assert!(
        stdout.contains("error: model has no input named `no_such_input` (its inputs: x)"),
        "{stdout}"
    );
}
