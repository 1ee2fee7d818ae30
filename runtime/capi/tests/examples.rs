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
use lathe_tests::{bit_identical, compare, Fixture, TempDir};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding `liblathe.a` and `liblathe.so` as cargo built them for this test,
/// built now if they are missing.
///
/// That is `target/<profile>/deps/`, the test binary's own directory: cargo builds all of
/// the lib target's crate types in the one rustc run that makes the rlib this test links, but
/// copies them up to `target/<profile>/` only for `cargo build`, so the copies there may be
/// stale. Should they be missing (a cargo that builds only the rlib for tests; cargo 1.95
/// builds all three), this runs `cargo build -p lathe-capi --lib` in the same profile, which
/// writes them to both; it is a safety net, and slow: without the dev-dependencies the
/// dependencies' features differ, so they are compiled again.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap().to_path_buf();
        let libs = |dir: &Path| [dir.join("liblathe.a"), dir.join("liblathe.so")];
        if libs(&deps).iter().all(|l| l.is_file()) {
            return deps;
        }
        let dir = deps.parent().expect("the test binary lives in target/<profile>/deps");
        let profile = dir.file_name().unwrap().to_str().unwrap();
        let profile = if profile == "debug" { "dev" } else { profile };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!(
            "{} lacks liblathe.a or liblathe.so: running cargo build -p lathe-capi --lib --profile {profile}",
            deps.display()
        );
        let status = Command::new(cargo)
            .args(["build", "-p", "lathe-capi", "--lib", "--profile", profile])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo");
        assert!(status.success(), "cargo build -p lathe-capi failed");
        for lib in libs(dir) {
            assert!(lib.is_file(), "{} was not built", lib.display());
        }
        dir.to_path_buf()
    })
}

/// The compiler to use, from `env` (`CC`, `CXX`) or `default`; `None`, with a note printed,
/// when there is none and `LATHE_REQUIRE_CC` is unset.
fn compiler(env: &str, default: &str) -> Option<String> {
    let compiler = std::env::var(env).unwrap_or_else(|_| default.to_string());
    match Command::new(&compiler).arg("--version").output() {
        Ok(_) => Some(compiler),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let note = format!("no C/C++ compiler `{compiler}` ({env}): {e}");
            assert!(
                std::env::var_os("LATHE_REQUIRE_CC").is_none(),
                "{note}, and LATHE_REQUIRE_CC is set"
            );
            // Straight to stderr: libtest captures `println!` of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping the C API example: {note}; install gcc and g++ to run it"
            );
            None
        }
        Err(e) => panic!("running `{compiler} --version`: {e}"),
    }
}

/// How an example links Lathe.
#[derive(Clone, Copy)]
enum Link {
    /// `liblathe.a` and the system libraries it needs, as an application would ship it.
    /// Stripped and with unused sections dropped: the debug archive is ~840 MB of debuginfo,
    /// and linking it whole takes ~20 s and writes a 350 MB binary; this way ~5 s and 20 MB.
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
        Link::Static => cmd.arg(lib_dir().join("liblathe.a")).args([
            "-Wl,--gc-sections",
            "-Wl,-s",
            "-lpthread",
            "-ldl",
            "-lm",
        ]),
        Link::Shared => cmd
            .arg("-L")
            .arg(lib_dir())
            .arg(format!("-Wl,-rpath,{}", lib_dir().display()))
            .arg("-llathe"),
    };
    cmd.arg("-o").arg(out);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
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

/// Runs an example, which must succeed; its standard output.
fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
