//! Compiled artifacts (`.lathe`) round-trip: every fixture, compiled for its inputs' signature
//! with its generic graph, written, read back and loaded both ways (its stored plan mapped as
//! it is, [`Model::load`]; its optimized graph compiled at load without passes,
//! [`Model::from_artifact`]), gives bit for bit the outputs of the model loaded from its
//! source, with no compile at the call; other signatures come from the generic graph, or are
//! refused without it; contents made for CPU features this machine lacks are refused.

use lathe_compiler::artifact::{Artifact, FORMAT_VERSION};
use lathe_compiler::pipeline::level_text;
use lathe_ir::{Graph, Tensor, TensorType};
use lathe_runtime::{Model, ModelOptions, RunError};
use lathe_tests::{bit_identical, by_name, Fixture};

fn options() -> ModelOptions {
    ModelOptions {
        threads: Some(1),
        ..ModelOptions::default()
    }
}

fn run(m: &Model, inputs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    m.run(&named).unwrap_or_else(|e| panic!("{e}"))
}

/// The input types of `inputs`, in `g`'s input order.
fn types(g: &Graph, inputs: &[(String, Tensor)]) -> Vec<TensorType> {
    g.inputs()
        .iter()
        .map(|i| {
            let (_, t) = inputs
                .iter()
                .find(|(n, _)| *n == i.name)
                .expect("every input given");
            t.ty()
        })
        .collect()
}

/// `g` compiled as `lathe compile` does: optimized and compiled for each of `signatures`,
/// generic kept or not.
fn compile(g: Graph, signatures: &[Vec<TensorType>], generic: bool) -> Artifact {
    let model = Model::with_options(g, options()).unwrap();
    let level = level_text(2);
    lathe_runtime::artifact::compile(&model, signatures, generic, "fixture", level, |_| {})
        .unwrap()
        .artifact
}

/// Written to a file and loaded from it as `Model::load` does (plans mapped where stored).
fn load(a: &Artifact, name: &str) -> Result<Model, RunError> {
    let dir = std::env::temp_dir().join(format!("lathe-artifacts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.lathe"));
    a.write(&path).unwrap();
    let model = Model::load(&path, options());
    std::fs::remove_file(&path).unwrap();
    model
}

/// Written and read back.
fn reread(a: &Artifact) -> Artifact {
    Artifact::from_bytes(&a.to_bytes()).unwrap()
}

#[test]
fn every_fixture_round_trips_bit_for_bit() {
    let mut placed = 0;
    for f in Fixture::all() {
        placed += round_trip(&f, f.graph(), f.inputs());
        // And its ONNX form, whose inputs tf2onnx names `x:0`.
        let onnx = f.dir.join("model.onnx");
        if onnx.is_file() {
            let g = lathe_compiler::load(&onnx).unwrap();
            let inputs = (f.inputs().into_iter())
                .map(|(n, t)| (format!("{n}:0"), t))
                .collect::<Vec<_>>();
            placed += round_trip(&f, g, inputs);
        }
    }
    assert!(placed > 100, "only {placed} stored kernels were placed");
}

/// `g` (fixture `f`'s) compiled for `inputs`, written, read and loaded, gives bit for bit the
/// outputs of `g` loaded as it is, its generated kernels' stored machine code placed and none
/// compiled; how many were placed.
fn round_trip(f: &Fixture, g: Graph, inputs: Vec<(String, Tensor)>) -> usize {
    let mut placed = 0;
    {
        let sig = types(&g, &inputs);
        let want = by_name(run(
            &Model::with_options(g.clone(), options()).unwrap(),
            &inputs,
        ));
        let artifact = compile(g, std::slice::from_ref(&sig), true);
        for (how, loaded) in both_ways(&artifact, &f.name) {
            let loaded = loaded.unwrap();
            assert_eq!(
                loaded.stats().compiles,
                1,
                "{} ({how}): compiled at load",
                f.name
            );
            let got = by_name(run(&loaded, &inputs));
            assert_eq!(
                loaded.stats().compiles,
                1,
                "{} ({how}): no compile at the call",
                f.name
            );
            for (name, w) in &want {
                bit_identical(&got[name], w)
                    .unwrap_or_else(|e| panic!("{} ({how}) `{name}`: {e}", f.name));
            }
            let spec = loaded.specialize_for(&sig).unwrap();
            if let Some(loads) = spec.cpu_plan().and_then(|p| p.kernel_loads()) {
                assert_eq!(loads.compiled, 0, "{} ({how}): {loads:?}", f.name);
                placed += loads.placed;
            }
        }
    }
    placed
}

const BATCHED: &str = r#"graph @m(%x: f32[?n,3]) -> ("y": f32[?n,3]) {
  %0 = const dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [1.5, 2.5, 3.5], [0.5, 0.25, 0.125], [9.0, 8.0, 7.0], [6.0, 5.0, 4.0], [3.0, 2.0, 1.0], [0.0, 1.0, 0.0]]> : f32[9,3]
  %1 = const dense<[0, 0]> : i64[2]
  %2 = const dense<[3, 3]> : i64[2]
  %3 = slice(%0, %1, %2) : f32[3,3]
  %4 = matmul(%x, %3) {transpose_a = false, transpose_b = false} : f32[?n,3]
  %5 = tanh(%4) : f32[?n,3]
  return %5
}"#;

fn batch(n: usize) -> Vec<(String, Tensor)> {
    let v: Vec<f32> = (0..n * 3).map(|i| i as f32 * 0.1 - 0.4).collect();
    vec![("x".to_string(), Tensor::from_vec(&[n, 3], v))]
}

/// `a` loaded both ways: its graphs decoded and compiled (`Model::from_artifact`), and from
/// the file with its stored plans mapped and its generic graph decoded on first need
/// (`Model::load`).
fn both_ways(a: &Artifact, name: &str) -> [(&'static str, Result<Model, RunError>); 2] {
    [
        ("decoded", Model::from_artifact(reread(a), options())),
        ("mapped", load(a, name)),
    ]
}

#[test]
fn other_signatures_come_from_the_generic_graph_or_are_refused() {
    let g = lathe_ir::text::parse(BATCHED).unwrap();
    let two = types(&g, &batch(2));
    let want = by_name(run(
        &Model::with_options(g.clone(), options()).unwrap(),
        &batch(5),
    ));
    let with = compile(g.clone(), std::slice::from_ref(&two), true);
    for (how, with) in both_ways(&with, "with") {
        let with = with.unwrap();
        let got = by_name(run(&with, &batch(5)));
        bit_identical(&got["y"], &want["y"]).unwrap();
        assert_eq!(
            with.stats().compiles,
            2,
            "{how}: batch 5 compiled from the generic graph"
        );
    }

    let four = types(&g, &batch(4));
    let without = compile(g, &[two, four], false);
    for (how, without) in both_ways(&without, "without") {
        let without = without.unwrap();
        assert_eq!(without.specializations(), 2, "{how}");
        run(&without, &batch(4));
        let five = batch(5);
        let named: Vec<(&str, Tensor)> =
            five.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
        let e = without.run(&named).unwrap_err().to_string();
        assert!(
            e.contains("f32[5,3]") && e.contains("f32[2,3]") && e.contains("f32[4,3]"),
            "{how}: {e}"
        );
    }
}

#[test]
fn contents_for_missing_cpu_features_are_refused() {
    let g = lathe_ir::text::parse(BATCHED).unwrap();
    let two = types(&g, &batch(2));
    let mut a = compile(g, &[two], true);
    a.meta.cpu_features = vec!["quantum-fma".into()];
    for (how, m) in both_ways(&a, "features") {
        let Err(e) = m else {
            panic!("{how}: loaded");
        };
        let e = e.to_string();
        assert!(
            e.contains("CPU features this machine lacks (quantum-fma)"),
            "{how}: {e}"
        );
    }
}

#[test]
fn plans_are_stored_and_damaged_ones_are_errors() {
    let g = lathe_ir::text::parse(BATCHED).unwrap();
    let two = types(&g, &batch(2));
    let a = compile(g, std::slice::from_ref(&two), false);
    let plan = a.plans[0].clone().expect("the plan is stored");
    assert!(!plan.plan.is_empty() && !plan.blob.is_empty());
    // A plan packed for AVX2 or wider says so.
    assert!(!a.meta.cpu_features.is_empty() || !lathe_runtime::cpu::has_feature("avx2"));
    // Cut short anywhere, or its blob gone: an error naming the plan, never a panic. (The
    // file's checksum is right: these are plans the encoder never wrote.)
    for cut in [
        0,
        1,
        plan.plan.len() / 3,
        plan.plan.len() / 2,
        plan.plan.len() - 1,
    ] {
        let mut bad = a.clone();
        bad.plans[0].as_mut().unwrap().plan.truncate(cut);
        let Err(e) = load(&bad, &format!("cut{cut}")) else {
            panic!("a plan cut at {cut} loaded");
        };
        let e = e.to_string();
        assert!(e.contains("plan 0"), "{e}");
    }
    let mut bad = a.clone();
    bad.plans[0].as_mut().unwrap().blob.clear();
    let Err(e) = load(&bad, "noblob") else {
        panic!("a plan without its blob loaded");
    };
    let e = e.to_string();
    assert!(e.contains("runs past the blob"), "{e}");
    // A damaged packed weight is caught by its section's checksum when the plan loads.
    let mut bytes = a.to_bytes();
    let s = lathe_compiler::artifact::container::Sections::parse(&bytes, FORMAT_VERSION).unwrap();
    let blob = s.get("plan/0.blob").unwrap().unchecked();
    let at = blob.as_ptr() as usize - bytes.as_ptr() as usize + blob.len() / 2;
    bytes[at] ^= 0x10;
    let path = std::env::temp_dir().join(format!("lathe-damaged-{}.lathe", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let e = Model::load(&path, options());
    std::fs::remove_file(&path).unwrap();
    let Err(e) = e else {
        panic!("a damaged blob loaded");
    };
    let e = e.to_string();
    assert!(e.contains("`plan/0.blob`") && e.contains("damaged"), "{e}");
}
