//! The optimizer on real models: every fixture gives the same outputs at `-O0` and at each of
//! `-O1`..`-O3` under the interpreter (and TensorFlow's within the fixture's tolerance), the
//! verifier accepts the graph after every pass, and the small versions of the benchmark
//! architectures shrink to about one node per layer.

use lathe_compiler::pipeline::{optimize, Pipeline};
use lathe_ir::Op;
use lathe_tests::{by_name, compare, run_interp, Fixture, Tolerance};
use std::collections::BTreeMap;

/// Optimized outputs may differ from unoptimized ones by reassociation (folded batch norm,
/// folded constant products): this much, relative to the largest expected magnitude.
const REASSOCIATION: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-5,
};

#[test]
fn every_fixture_computes_the_same_at_every_level() {
    let mut failures = Vec::new();
    for f in Fixture::all() {
        let inputs = f.inputs();
        let base = by_name(run_interp(f.graph(), &inputs).expect("-O0 runs"));
        for level in 1..=3u8 {
            let mut g = f.graph();
            if let Err(e) = optimize(&mut g, level) {
                failures.push(format!("{} -O{level}: {e}", f.name));
                continue;
            }
            let got = match run_interp(g, &inputs) {
                Ok(o) => by_name(o),
                Err(e) => {
                    failures.push(format!("{} -O{level}: {e}", f.name));
                    continue;
                }
            };
            for (meta, want) in f.expected_outputs() {
                let o = &got[&meta.name];
                let scale = want.to_f64_vec().iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let tol = Tolerance {
                    rtol: REASSOCIATION.rtol,
                    atol: REASSOCIATION.atol * scale,
                };
                if let Err(e) = compare(o, &base[&meta.name], tol) {
                    failures.push(format!("{} -O{level} vs -O0, {}: {e}", f.name, meta.name));
                }
                if let Err(e) = compare(o, &want, meta.tolerance()) {
                    failures.push(format!(
                        "{} -O{level} vs TensorFlow, {}: {e}",
                        f.name, meta.name
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn histogram(g: &lathe_ir::Graph) -> BTreeMap<&'static str, usize> {
    let mut h = BTreeMap::new();
    for id in g.node_ids() {
        *h.entry(g.node(id).op.mnemonic()).or_default() += 1;
    }
    h
}

/// Node counts after `-O2`: at most the bound, which is about one node per layer of each
/// architecture (the imported graphs have 5–10 nodes per layer).
#[test]
fn benchmark_architectures_shrink_to_about_one_node_per_layer() {
    // (fixture, imported nodes as TensorFlow counts them, bound after -O2)
    let cases = [
        ("mlp_tiny", 24, 5),
        ("cnn_tiny", 40, 10),
        ("resnet_tiny", 290, 30),
        ("mobilenet_tiny", 274, 30),
        ("encoder_tiny", 245, 60),
        ("gelu_chain_tiny", 108, 12),
        ("densenet_tiny", 324, 40),
        ("text_classifier_tiny", 65, 22),
    ];
    let mut failures = Vec::new();
    for (name, imported, bound) in cases {
        let f = Fixture::open(name);
        let mut g = f.graph();
        assert_eq!(g.len(), imported, "{name}: imported node count");
        optimize(&mut g, 2).unwrap_or_else(|e| panic!("{name}: {e}"));
        let fused = g
            .node_ids()
            .iter()
            .filter(|&&id| matches!(g.node(id).op, Op::Fused { .. }))
            .count();
        println!(
            "{name}: {imported} -> {} nodes ({fused} fused): {:?}",
            g.len(),
            histogram(&g)
        );
        if g.len() > bound {
            failures.push(format!(
                "{name}: {} nodes after -O2, expected at most {bound}: {:?}",
                g.len(),
                histogram(&g)
            ));
        }
        if fused == 0 {
            failures.push(format!("{name}: nothing was fused"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn pipelines_parse_and_reject_unknown_passes() {
    for level in 0..=3 {
        Pipeline::for_level(level).unwrap_or_else(|e| panic!("-O{level}: {e}"));
    }
    let e = Pipeline::parse("fold-constants,frobnicate")
        .err()
        .expect("unknown pass");
    assert!(e.contains("unknown pass `frobnicate`"), "{e}");
    assert!(Pipeline::parse("fixed-point(cse").is_err());
    assert!(Pipeline::parse("cse,").is_err());
    assert_eq!(
        Pipeline::parse("fixed-point(cse,prune),fuse")
            .unwrap()
            .steps
            .len(),
        2
    );
}
