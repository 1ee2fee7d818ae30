//! Building C and C++ programs against the libraries cargo built, for the tests of the C API
//! (`runtime/capi`) and of object files (`runtime/aot`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `files` (libraries of package `package`) as cargo built them for the
/// running test, built now if any is missing.
///
/// That is `target/<profile>/deps/`, the test binary's own directory: cargo builds all of a
/// lib target's crate types in the one rustc run that makes the rlib the test links, but
/// copies them up to `target/<profile>/` only for `cargo build`, so the copies there may be
/// stale. Should they be missing (a cargo that builds only the rlib for tests; cargo 1.95
/// builds them all), this runs `cargo build -p <package> --lib` in the same profile, which
/// writes them to both; a safety net, and slow: without the dev-dependencies the
/// dependencies' features differ, so they are compiled again.
pub fn built_libs(package: &str, files: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("a directory").to_path_buf();
    let have = |dir: &Path| files.iter().all(|f| dir.join(f).is_file());
    if have(&deps) {
        return deps;
    }

    let dir = deps
        .parent()
        .expect("the test binary lives in target/<profile>/deps");
    let profile = dir.file_name().unwrap().to_str().unwrap();
    let profile = if profile == "debug" { "dev" } else { profile };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "{} lacks {files:?}: running cargo build -p {package} --lib --profile {profile}",
        deps.display()
    );
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--lib", "--profile", profile])
        .status()
        .expect("running cargo");
    assert!(status.success(), "cargo build -p {package} failed");
    assert!(have(dir), "{files:?} were not built in {}", dir.display());
    dir.to_path_buf()
}

/// The static library `file` (`liblathe_kernels.a`) of `package` as cargo built it for the
/// running test. A lib target without a `cdylib` crate type has its other crate types named
/// with the build's hash in deps/ (`liblathe_kernels-<hash>.a`), where the newest of that name
/// is this build's; otherwise as [`built_libs`] finds it.
pub fn built_staticlib(package: &str, file: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("a directory");
    newest_hashed(deps, file).unwrap_or_else(|| built_libs(package, &[file]).join(file))
}

/// The newest `STEM-HASH.EXT` in `dir` for `file` = `STEM.EXT`.
fn newest_hashed(dir: &Path, file: &str) -> Option<PathBuf> {
    let (stem, ext) = file.rsplit_once('.')?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&format!("{stem}-")) && name.ends_with(&format!(".{ext}"))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// The compiler to use, from `env` (`CC`, `CXX`) or `default`; `None`, with a note printed,
/// when there is none and `LATHE_REQUIRE_CC` is unset (CI sets it: then that is a failure).
pub fn compiler(env: &str, default: &str) -> Option<String> {
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
                "note: skipping a test of C programs: {note}; install gcc and g++ to run it"
            );
            None
        }
        Err(e) => panic!("running `{compiler} --version`: {e}"),
    }
}

/// Flags that link a Rust static library into a C program as an application would ship it:
/// stripped and with unused sections dropped (a debug archive is ~340 MB, mostly line tables
/// and code no program calls), with the system libraries Rust's standard library needs.
pub const STATIC_LINK_FLAGS: &[&str] = &["-Wl,--gc-sections", "-Wl,-s", "-lpthread", "-ldl", "-lm"];

/// Runs `cmd`, which must succeed; its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
