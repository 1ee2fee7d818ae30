//! Mutation fuzzing of Lathe's model importers.
//!
//! Seeds are real model files (the committed fixtures: SavedModel directories, frozen
//! GraphDefs, and ONNX models, one of them with its weights in an external data file). Each case copies one seed, damages one of its files with a few random
//! mutations (bit flips, interesting bytes and integers, truncation, insertion, duplicated
//! runs, and over-long or huge protobuf varints, which is what lengths and sizes are made of)
//! and loads it. What must hold, whatever the bytes:
//!
//! * no panic: every failure is an [`ImportError`](lathe_compiler::ImportError) whose message
//!   is one line;
//! * no hang: a case that runs longer than [`Options::case_timeout`] aborts the run, naming the
//!   case (see [`watchdog`]);
//! * no escape: an ONNX external data reference rewritten to leave the model's directory
//!   (`../`, an absolute path) is refused, though the file it names exists;
//! * no unbounded allocation: binaries using the harness install [`CappedAlloc`], which refuses
//!   any single allocation over [`MAX_ALLOCATION`] bytes (the process then aborts with Rust's
//!   "memory allocation failed" message).
//!
//! Runs are deterministic: case `i` of seed `s` is the same mutation on every machine, so a
//! failure is reproduced with `--seed s --first-case i --cases 1`.

use lathe_compiler::{load_with, LoadOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest single allocation a case may make: far above any fixture's needs (they are a few
/// kilobytes to a megabyte), far below what a size read from a damaged file could ask for.
pub const MAX_ALLOCATION: usize = 1 << 30;

/// The system allocator, refusing allocations over [`MAX_ALLOCATION`] bytes.
pub struct CappedAlloc;

// SAFETY: every call is forwarded to the system allocator unchanged, except that an oversized
// request returns null, which `GlobalAlloc` allows (it reports the allocation as failed).
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` come from this allocator, which got them from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a seed is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedKind {
    SavedModel,
    GraphDef,
    /// `model.onnx` and any external data files beside it.
    Onnx,
}

/// One seed model, held in memory.
#[derive(Clone, Debug)]
pub struct Seed {
    /// Where it was read from (for reports).
    pub origin: PathBuf,
    /// The files, relative to the model (a GraphDef is one file with an empty name).
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub kind: SeedKind,
}

impl Seed {
    /// Reads a SavedModel directory (`saved_model.pb` or `.pbtxt`, and `variables/*`) or a
    /// `.pb` file.
    pub fn read(path: &Path) -> std::io::Result<Seed> {
        if path.is_dir() {
            let pb = ["saved_model.pb", "saved_model.pbtxt"]
                .into_iter()
                .map(PathBuf::from)
                .find(|f| path.join(f).is_file())
                .unwrap_or_else(|| PathBuf::from("saved_model.pb"));
            let mut files = vec![(pb.clone(), std::fs::read(path.join(&pb))?)];
            let vars = path.join("variables");
            let mut names: Vec<_> = std::fs::read_dir(&vars)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for n in names {
                let rel = Path::new("variables").join(&n);
                files.push((rel.clone(), std::fs::read(path.join(rel))?));
            }
            Ok(Seed {
                origin: path.to_path_buf(),
                files,
                kind: SeedKind::SavedModel,
            })
        } else if path.extension().is_some_and(|e| e == "onnx") {
            // The model and every other file of its directory but test data (external data).
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut files = vec![(PathBuf::from("model.onnx"), std::fs::read(path)?)];
            let mut extra: Vec<PathBuf> = std::fs::read_dir(dir)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|p| {
                    p.is_file()
                        && p.file_name() != path.file_name()
                        && !p
                            .extension()
                            .is_some_and(|e| e == "npy" || e == "json" || e == "pb")
                })
                .collect();
            extra.sort();
            for p in extra {
                let name = PathBuf::from(p.file_name().expect("a file"));
                files.push((name, std::fs::read(&p)?));
            }
            Ok(Seed {
                origin: path.to_path_buf(),
                files,
                kind: SeedKind::Onnx,
            })
        } else {
            Ok(Seed {
                origin: path.to_path_buf(),
                files: vec![(PathBuf::new(), std::fs::read(path)?)],
                kind: SeedKind::GraphDef,
            })
        }
    }

    /// Every seed under the repository's fixture directories.
    pub fn fixtures(repo: &Path) -> std::io::Result<Vec<Seed>> {
        let mut seeds = vec![];
        let saved = repo.join("tests/fixtures/tf_saved");
        let tf = repo.join("tests/fixtures/tf");
        // Recurrent layers and control flow: functional While/If/Case in SavedModels, TensorFlow
        // 1 loops in frozen graphs.
        let recurrent = repo.join("tests/fixtures/tf_recurrent");
        for (root, sub) in [
            (&saved, "saved_model"),
            (&tf, "model.pb"),
            (&recurrent, "saved_model"),
            (&recurrent, "frozen.pb"),
        ] {
            let mut dirs: Vec<_> = std::fs::read_dir(root)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            dirs.sort();
            for d in dirs {
                seeds.push(Seed::read(&d.join(sub))?);
            }
        }
        // ONNX: tf2onnx's exports of the fixtures (control flow in the recurrent ones) and a
        // model with external data.
        for root in [&tf, &recurrent, &repo.join("tests/fixtures/onnx")] {
            let mut dirs: Vec<_> = std::fs::read_dir(root)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            dirs.sort();
            for d in dirs {
                let m = d.join("model.onnx");
                if m.is_file() {
                    seeds.push(Seed::read(&m)?);
                }
            }
        }
        Ok(seeds)
    }

    /// Writes the seed, with file `which` replaced by `bytes`, as `dir/model[.pb]`; returns
    /// the path to load.
    fn write(&self, dir: &Path, which: usize, bytes: &[u8]) -> std::io::Result<PathBuf> {
        if self.kind == SeedKind::Onnx {
            for (i, (rel, b)) in self.files.iter().enumerate() {
                std::fs::write(dir.join(rel), if i == which { bytes } else { b })?;
            }
            return Ok(dir.join("model.onnx"));
        }
        if self.kind == SeedKind::SavedModel {
            let root = dir.join("model");
            std::fs::create_dir_all(root.join("variables"))?;
            for (i, (rel, b)) in self.files.iter().enumerate() {
                std::fs::write(root.join(rel), if i == which { bytes } else { b })?;
            }
            Ok(root)
        } else {
            let p = dir.join("model.pb");
            std::fs::write(&p, bytes)?;
            Ok(p)
        }
    }
}

/// A small deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Applies one random mutation to `b`; returns what it did.
pub fn mutate(rng: &mut Rng, b: &mut Vec<u8>) -> String {
    if b.is_empty() {
        b.push(rng.next_u64() as u8);
        return "filled an empty file".into();
    }
    let at = rng.below(b.len());
    match rng.below(8) {
        0 => {
            let bit = rng.below(8);
            b[at] ^= 1 << bit;
            format!("flipped bit {bit} of byte {at}")
        }
        1 => {
            let v = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
            b[at] = v;
            format!("set byte {at} to {v:#04x}")
        }
        2 => {
            b.truncate(at);
            format!("truncated to {at} bytes")
        }
        3 => {
            let n = 1 + rng.below(16);
            let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            b.splice(at..at, ins);
            format!("inserted {n} random bytes at {at}")
        }
        4 => {
            let len = (1 + rng.below(64)).min(b.len() - at);
            let run = b[at..at + len].to_vec();
            let to = rng.below(b.len());
            b.splice(to..to, run);
            format!("copied {len} bytes from {at} to {to}")
        }
        5 => {
            // A huge varint: what a length, size or dimension becomes when damaged.
            let v: &[u8] = [
                &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
                &[
                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
                ][..],
            ][rng.below(3)];
            let end = (at + v.len()).min(b.len());
            b.splice(at..end, v.iter().copied());
            format!("wrote a huge varint at {at}")
        }
        6 => {
            // An interesting 32- or 64-bit little-endian integer.
            let v: u64 =
                [0, u64::MAX, i32::MAX as u64, 1 << 31, 1 << 40, 0xffff_fff0][rng.below(6)];
            let bytes = v.to_le_bytes();
            let n = if rng.below(2) == 0 { 4 } else { 8 };
            for (k, &x) in bytes.iter().take(n).enumerate() {
                if let Some(slot) = b.get_mut(at + k) {
                    *slot = x;
                }
            }
            format!("wrote {n}-byte integer {v:#x} at {at}")
        }
        _ => {
            let len = (1 + rng.below(64)).min(b.len() - at);
            b.drain(at..at + len);
            format!("deleted {len} bytes at {at}")
        }
    }
}

/// Rewrites every external data reference of a serialized ONNX model to leave the model's
/// directory (kind `k`: `../name`, `sub/../../name` or `/name`); `None` when the bytes are
/// not a model with external data.
pub fn escape_reference(b: &mut Vec<u8>, k: usize) -> Option<String> {
    use lathe_proto::onnx::ModelProto;
    use prost::Message;
    let mut m = ModelProto::decode(b.as_slice()).ok()?;
    let prefix = ["../", "sub/../../", "/"][k % 3];
    let mut changed = None;
    for t in &mut m.graph.as_mut()?.initializer {
        for e in &mut t.external_data {
            if e.key.as_deref() == Some("location") {
                let v = e.value.get_or_insert_with(String::new);
                *v = format!("{prefix}{v}");
                changed = Some(v.clone());
            }
        }
    }
    let changed = changed?;
    *b = m.encode_to_vec();
    Some(format!("external data reference made `{changed}`"))
}

/// How a fuzzing run goes.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub first_case: u64,
    /// Cases to run at most.
    pub cases: u64,
    /// Time to stop starting new cases.
    pub time_budget: Duration,
    /// A case running longer than this aborts the run.
    pub case_timeout: Duration,
    /// Where mutated models are written (and a failing one kept).
    pub work_dir: PathBuf,
    pub verbose: bool,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Summary {
    pub cases: u64,
    pub loaded: u64,
    pub errors: u64,
    /// `(case, description, panic or malformed error message)`.
    pub failures: Vec<(u64, String, String)>,
}

/// The case being run, for the watchdog: `u64::MAX` between cases.
static CURRENT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Starts a thread that aborts the process, naming the case, when one case runs longer than
/// `limit`. The harness's hang detector: a hung import cannot be cancelled from outside.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        let mut seen = (u64::MAX, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = CURRENT.load(Ordering::SeqCst);
            if now != seen.0 {
                seen = (now, Instant::now());
            } else if now != u64::MAX && seen.1.elapsed() > limit {
                eprintln!("lathe-fuzz: case {now} ran longer than {limit:?}: a hang");
                std::process::abort();
            }
        }
    });
}

/// Runs cases `first_case..` over `seeds` until `cases` or the time budget is used up.
pub fn run(seeds: &[Seed], opts: &Options) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let start = Instant::now();
    // Panics are results here; keep the default hook from printing each one.
    let hook_msg: Arc<std::sync::Mutex<String>> = Default::default();
    let msg = hook_msg.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut m) = msg.lock() {
            *m = info.to_string();
        }
    }));
    for case in opts.first_case..opts.first_case.saturating_add(opts.cases) {
        if start.elapsed() > opts.time_budget {
            break;
        }
        let mut rng = Rng::new(opts.seed ^ case.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let seed = &seeds[rng.below(seeds.len())];
        let which = rng.below(seed.files.len());
        let mut bytes = seed.files[which].1.clone();
        let mut what = vec![];
        // An ONNX model with external data: sometimes, its reference made to leave the
        // directory (to a file that exists), which must be refused.
        let escape = (seed.kind == SeedKind::Onnx && which == 0 && seed.files.len() > 1)
            .then(|| rng.below(3))
            .and_then(|k| escape_reference(&mut bytes, k));
        if let Some(e) = &escape {
            what.push(e.clone());
        } else {
            for _ in 0..1 + rng.below(3) {
                what.push(mutate(&mut rng, &mut bytes));
            }
        }
        let desc = format!(
            "{} {}: {}",
            seed.origin.display(),
            seed.files[which].0.display(),
            what.join(", ")
        );
        let dir = opts.work_dir.join(format!("case-{case}"));
        std::fs::create_dir_all(&dir)?;
        let path = seed.write(&dir, which, &bytes)?;
        if escape.is_some() {
            // The file the escaped reference names, one directory up, exists.
            let name = &seed.files[1].0;
            std::fs::write(opts.work_dir.join(name), &seed.files[1].1)?;
        }
        if opts.verbose {
            eprintln!("case {case}: {desc}");
        }
        CURRENT.store(case, Ordering::SeqCst);
        let result =
            std::panic::catch_unwind(|| load_with(&path, &LoadOptions::default()).map(|_| ()));
        CURRENT.store(u64::MAX, Ordering::SeqCst);
        summary.cases += 1;
        let keep = match result {
            Ok(Ok(())) if escape.is_some() => {
                summary.failures.push((
                    case,
                    desc,
                    "loaded data from outside the model's directory".into(),
                ));
                true
            }
            Ok(Ok(())) => {
                summary.loaded += 1;
                false
            }
            Ok(Err(e)) => {
                summary.errors += 1;
                let s = e.to_string();
                if s.contains('\n') || s.contains("panicked") {
                    summary
                        .failures
                        .push((case, desc, format!("malformed error: {s:?}")));
                    true
                } else {
                    false
                }
            }
            Err(_) => {
                let m = hook_msg.lock().map(|m| m.clone()).unwrap_or_default();
                summary.failures.push((case, desc, format!("panic: {m}")));
                true
            }
        };
        if !keep {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    std::panic::set_hook(previous);
    Ok(summary)
}
