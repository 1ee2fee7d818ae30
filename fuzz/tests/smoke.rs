//! A short fuzzing run inside `cargo test` (CI runs a longer one with `lathe-fuzz`), under the
//! same allocation cap, and the harness's own determinism.

use lathe_fuzz::{escape_reference, mutate, run, CappedAlloc, Options, Rng, Seed, SeedKind};
use std::path::Path;
use std::time::Duration;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn damaged_fixtures_never_panic() {
    let seeds = Seed::fixtures(repo()).unwrap();
    let count = |k| seeds.iter().filter(|s| s.kind == k).count();
    assert!(count(SeedKind::SavedModel) >= 3);
    assert!(count(SeedKind::GraphDef) >= 19);
    assert!(count(SeedKind::Onnx) >= 19);
    let work = std::env::temp_dir().join(format!("lathe-fuzz-smoke-{}", std::process::id()));
    let opts = Options {
        seed: 7,
        first_case: 0,
        cases: 2000,
        time_budget: Duration::from_secs(60),
        case_timeout: Duration::from_secs(60),
        work_dir: work.clone(),
        verbose: false,
    };
    let s = run(&seeds, &opts).unwrap();
    let _ = std::fs::remove_dir_all(&work);
    assert!(s.failures.is_empty(), "{:#?}", s.failures);
    assert_eq!(s.cases, s.loaded + s.errors);
    // Both outcomes occur: the mutations reach past the first check of a file.
    assert!(s.loaded > 0 && s.errors > 0, "{s:?}");
}

#[test]
fn external_data_cannot_leave_the_model_directory() {
    let seed = Seed::read(&repo().join("tests/fixtures/onnx/external_data/model.onnx")).unwrap();
    assert_eq!(seed.files.len(), 2, "model.onnx and weights.bin");
    let work = std::env::temp_dir().join(format!("lathe-fuzz-escape-{}", std::process::id()));
    let case = work.join("case");
    std::fs::create_dir_all(&case).unwrap();
    // The file every escaped reference could reach exists one directory up.
    std::fs::write(work.join("weights.bin"), &seed.files[1].1).unwrap();
    std::fs::write(case.join("weights.bin"), &seed.files[1].1).unwrap();
    assert!(lathe_compiler::load(&{
        std::fs::write(case.join("model.onnx"), &seed.files[0].1).unwrap();
        case.join("model.onnx")
    })
    .is_ok());
    for k in 0..3 {
        let mut bytes = seed.files[0].1.clone();
        let what = escape_reference(&mut bytes, k).expect("the model has external data");
        std::fs::write(case.join("model.onnx"), &bytes).unwrap();
        let e = lathe_compiler::load(&case.join("model.onnx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the model's directory"), "{what}: {e}");
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn cases_are_reproducible() {
    let base: Vec<u8> = (0..200u8).collect();
    let one = |seed| {
        let mut rng = Rng::new(seed);
        let mut b = base.clone();
        let what = mutate(&mut rng, &mut b);
        (b, what)
    };
    assert_eq!(one(42), one(42));
    let distinct: std::collections::HashSet<String> = (0..64).map(|s| one(s).1).collect();
    assert!(distinct.len() > 32, "{distinct:?}");
}

#[test]
fn the_cap_refuses_huge_allocations() {
    // A refused allocation is an allocation error; `try_reserve` shows it without aborting.
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve_exact(lathe_fuzz::MAX_ALLOCATION + 1).is_err());
    assert!(v.try_reserve_exact(1 << 20).is_ok());
}
