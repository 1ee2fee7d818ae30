use super::container::Writer;
use super::*;
use lathe_ir::text::parse;
use lathe_ir::Op;

const GENERIC: &str = r#"graph @m(%x: f32[?n,4]) -> ("y": f32[?n,3]) {
  %0 = const dense<splat 0.5> : f32[4,8]
  %1 = matmul(%x, %0) {transpose_a = false, transpose_b = false} : f32[?n,8]
  %2 = const dense<[0, 0]> : i64[2]
  %3 = const dense<[-1, 3]> : i64[2]
  %4 = slice(%1, %2, %3) : f32[?n,3]
  return %4
}"#;

fn meta(specs: &[&str]) -> Meta {
    Meta {
        producer: "lathe test".into(),
        model: "m".into(),
        source: "m.lir".into(),
        pipeline: "prune".into(),
        backend: "cpu".into(),
        cpu_features: vec![],
        specializations: specs.iter().map(|s| s.to_string()).collect(),
        outputs: vec!["y".into()],
    }
}

/// The graph's weight (its one constant of 32 elements).
fn big(g: &Graph) -> Arc<Tensor> {
    g.node_ids()
        .into_iter()
        .find_map(|id| match &g.node(id).op {
            Op::Const(t) if t.len() == 32 => Some(Arc::clone(t)),
            _ => None,
        })
        .unwrap()
}

/// The generic graph and a specialization sharing its weight, as compiling leaves them.
fn artifact() -> Artifact {
    let generic = parse(GENERIC).unwrap();
    let w = big(&generic);
    let mut spec = Graph::new("m");
    let x = spec.add_input("x", lathe_ir::TensorType::known(DType::F32, &[2, 4]));
    let c = spec.add_const_shared(Arc::clone(&w), "w");
    let y = spec
        .add(
            Op::MatMul {
                transpose_a: false,
                transpose_b: false,
            },
            vec![x, c],
            "y",
        )
        .unwrap();
    spec.add_output("y", y).unwrap();
    Artifact {
        meta: meta(&["(x: f32[2,4])"]),
        interface: interface_of(&generic.name, generic.inputs()),
        generic: Some(generic),
        specializations: vec![spec],
        plans: vec![],
    }
}

#[test]
fn round_trip_keeps_graphs_and_shares_weights() {
    let a = artifact();
    let bytes = a.to_bytes();
    let b = Artifact::from_bytes(&bytes).unwrap();
    assert_eq!(b.meta, a.meta);
    let (g0, g1) = (a.generic.as_ref().unwrap(), b.generic.as_ref().unwrap());
    assert_eq!(lathe_ir::text::print(g1), lathe_ir::text::print(g0));
    assert_eq!(
        lathe_ir::text::print(&b.specializations[0]),
        lathe_ir::text::print(&a.specializations[0])
    );
    // The weight is stored once and shared again after reading.
    assert!(Arc::ptr_eq(&big(g1), &big(&b.specializations[0])));
    let sections = Sections::parse(&bytes, FORMAT_VERSION).unwrap();
    assert_eq!(sections.require("weights").unwrap().len(), 128);
}

#[test]
fn bad_weights_and_sections_are_errors_naming_them() {
    let a = artifact();
    let index = |entries: &str| {
        let mut w = Writer::default();
        w.section("meta", json(&a.meta));
        w.section("weights.index", entries.as_bytes().to_vec());
        w.section("weights", vec![0u8; 128]);
        w.section(
            "spec/0",
            lathe_ir::text::print(&a.specializations[0]).into_bytes(),
        );
        Artifact::from_bytes(&w.finish(FORMAT_VERSION))
            .unwrap_err()
            .to_string()
    };
    let e = index(r#"[{"dtype":"f32","dims":[4,8],"offset":64,"bytes":128}]"#);
    assert!(
        e.contains("weight 0") && e.contains("run past the weights"),
        "{e}"
    );
    let e = index(r#"[{"dtype":"f32","dims":[4,5],"offset":0,"bytes":128}]"#);
    assert!(e.contains("do not fit [4, 5]"), "{e}");
    let e = index(r#"[{"dtype":"f32","dims":[4611686018427387904,4],"offset":0,"bytes":128}]"#);
    assert!(e.contains("do not fit"), "{e}");
    let e = index(r#"[{"dtype":"f99","dims":[4,8],"offset":0,"bytes":128}]"#);
    assert!(e.contains("weight 0") && e.contains("f99"), "{e}");
    let e = index("not json");
    assert!(e.contains("section `weights.index`"), "{e}");
    // The specialization's text is plain (its weight inline), so an empty index is fine;
    // a missing specialization section is not.
    let mut w = Writer::default();
    w.section("meta", json(&meta(&["(x: f32[2,4])", "(x: f32[8,4])"])));
    w.section("weights.index", b"[]".to_vec());
    w.section("weights", vec![]);
    w.section(
        "spec/0",
        lathe_ir::text::print(&a.specializations[0]).into_bytes(),
    );
    let e = Artifact::from_bytes(&w.finish(FORMAT_VERSION))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `spec/1` section"), "{e}");
}

#[test]
fn another_version_and_other_files_are_refused_clearly() {
    let bytes = artifact().to_bytes();
    let mut other = bytes.clone();
    other[8] = 7;
    let e = Artifact::from_bytes(&other).unwrap_err().to_string();
    assert!(
        e.contains("format version 7") && e.contains("compile the model again"),
        "{e}"
    );
    let e = Artifact::from_bytes(b"graph @m() -> () {\n  return\n}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a Lathe artifact"), "{e}");
    let dir = std::env::temp_dir().join(format!("lathe-artifact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.lathe");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = Artifact::read(&path).unwrap_err().to_string();
    assert!(e.contains("cut.lathe") && e.contains("truncated"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
