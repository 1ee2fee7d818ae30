//! A short fuzzing run inside `cargo test` (CI runs a longer one with `lathe-fuzz`), under the
//! same allocation cap, and the harness's own determinism.

use lathe_fuzz::{mutate, run, CappedAlloc, Options, Rng, Seed};
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
    assert!(seeds.iter().filter(|s| s.saved_model).count() >= 3);
    assert!(seeds.iter().filter(|s| !s.saved_model).count() >= 19);
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
