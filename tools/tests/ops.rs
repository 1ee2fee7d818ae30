//! `lathe ops`: a row for every IR op in the text table and in JSON, printed from the op
//! registry and the importer's table, and `docs/ops.md` equal to `lathe ops --markdown`
//! (`LATHE_BLESS=1` rewrites it).

use lathe_ir::ops::registry;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Runs `lathe` with `args` and returns its stdout, failing on a non-zero exit.
fn lathe(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_lathe"))
        .args(args)
        .env_remove("LATHE_LOG")
        .output()
        .expect("starting the lathe binary");
    assert!(
        o.status.success(),
        "lathe {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("stdout is UTF-8")
}

#[test]
fn json_has_a_row_for_every_ir_op() {
    let rows: Vec<Value> = serde_json::from_str(&lathe(&["ops", "--json"])).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let want: Vec<&str> = registry().iter().map(|i| i.name).collect();
    assert_eq!(names, want);
    for r in &rows {
        for key in ["family", "operands", "dtypes", "cpu", "summary"] {
            assert!(r[key].is_string(), "{r}: no {key}");
        }
        assert!(
            r["tensorflow"].is_array() && r["onnx"].is_array() && r["attributes"].is_array(),
            "{r}"
        );
    }
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap().clone();
    assert_eq!(
        row("add")["tensorflow"],
        serde_json::json!(["Add", "AddV2"])
    );
    assert_eq!(row("softsign")["dtypes"], "x: float");
    assert_eq!(
        row("conv2d")["onnx"],
        serde_json::json!(["Conv", "ConvTranspose"])
    );
    // Every ONNX op the importer knows has a row (under the first IR op it imports to).
    let listed: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r["onnx"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let known: BTreeSet<String> = lathe_compiler::import::onnx::supported_ops()
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(listed, known);
    assert_eq!(row("concat")["operands"], "values..., axis");
    assert_eq!(
        row("concat")["tensorflow"],
        serde_json::json!(["ConcatV2", "Concat"])
    );
    let conv = row("conv2d");
    let conv_attrs: BTreeSet<&str> = conv["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(conv_attrs.contains("padding: padding"), "{conv_attrs:?}");
    // The cpu column is the CPU backend's capability query: data movement and GEMM on every
    // dtype, graph inputs as views, fused bodies judged per node.
    assert_eq!(row("concat")["cpu"], "all");
    assert_eq!(row("matmul")["cpu"], "all");
    assert_eq!(row("input")["cpu"], "view");
    assert_eq!(row("fused.elementwise")["cpu"], "per node");
}

#[test]
fn text_table_has_a_header_and_a_line_per_op() {
    let out = lathe(&["ops"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("name"), "{}", lines[0]);
    assert_eq!(lines.len(), registry().len() + 1);
    for (line, info) in lines[1..].iter().zip(registry()) {
        assert!(line.starts_with(info.name), "{line}");
        assert!(line.ends_with(info.summary), "{line}");
    }
}

#[test]
fn docs_ops_md_is_current() {
    let got = lathe(&["ops", "--markdown"]);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ops.md");
    if std::env::var("LATHE_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "docs/ops.md is not what `lathe ops --markdown` prints; regenerate it with \
         `LATHE_BLESS=1 cargo test -p lathe-cli --test ops`"
    );
}
