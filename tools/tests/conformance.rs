//! `lathe conformance` on a few ONNX backend node tests committed in `tests/onnx/node` (CI runs
//! the whole generated suite): each outcome (pass, fail with the worst element, unsupported
//! with the reason), the totals, and the pass list's check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn node_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/onnx/node")
}

fn lathe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lathe"))
        .args(args)
        .env_remove("LATHE_LOG")
        .output()
        .expect("starting the lathe binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("UTF-8")
}

#[test]
fn reports_each_outcome_and_the_totals() {
    let dir = node_tests();
    let o = lathe(&["conformance", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no line for {name} in\n{out}"))
            .to_string()
    };
    for name in [
        "test_add_bcast",
        "test_relu",
        "test_conv_with_strides_padding",
        // Reduction axes fed as an input: a shape input, specialized by value.
        "test_reduce_sum_keepdims_example",
        "test_gather_negative_indices",
        "test_softmax_axis_1",
        "test_layer_normalization_4d_axis1_expanded",
        "test_maxpool_2d_ceil",
        // An activation of several IR ops on bf16 computes in f32 and rounds once, as the
        // reference does (rounding `exp(x)` to bf16 before subtracting 1 is off by an ulp).
        "test_celu_bfloat16_expanded",
        // Scales fed as an input, which the importer needs: imported per value.
        "test_resize_upsample_scales_nearest",
        // A sequence input (`SequenceProto` data, given as `sequence[0]`, ...) and output,
        // its position fed as an input: imported per value.
        "test_sequence_insert_at_front",
        // An optional holding a sequence (`OptionalProto` data), returned as a sequence.
        "test_optional_get_element_optional_sequence",
    ] {
        assert_eq!(line(name), format!("{name}: cpu pass; interp pass"));
    }
    // A copy of test_relu whose expected output was changed by one: a failure naming it.
    let wrong = line("lathe_relu_wrong_expected");
    assert!(
        wrong.contains("cpu fail (output `y`: element 3 is 2.24")
            && wrong.contains("instead of 3.24"),
        "{wrong}"
    );
    let strings = line("test_equal_string");
    assert!(
        strings.contains("cpu unsupported") && strings.contains("STRING is not supported"),
        "{strings}"
    );
    assert!(
        out.contains("   cpu: 13 pass, 1 fail, 1 unsupported, of 15"),
        "{out}"
    );
    assert!(out.contains("  both: 13 pass of 15"), "{out}");
}

#[test]
fn the_pass_list_holds_or_names_what_regressed() {
    let dir = node_tests();
    let tmp = std::env::temp_dir().join(format!("lathe-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let written = tmp.join("written.pass");
    let o = lathe(&[
        "conformance",
        dir.to_str().unwrap(),
        "--quiet",
        "--write-pass-list",
        written.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let list = std::fs::read_to_string(&written).unwrap();
    assert!(list.contains("\ntest_relu\n") && !list.contains("lathe_relu_wrong_expected"));
    let o = lathe(&[
        "conformance",
        dir.to_str().unwrap(),
        "--quiet",
        "--pass-list",
        written.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // A list naming a failing test fails, naming it.
    let bad = tmp.join("bad.pass");
    std::fs::write(&bad, "# comment\ntest_relu\nlathe_relu_wrong_expected\n").unwrap();
    let o = lathe(&[
        "conformance",
        dir.to_str().unwrap(),
        "--quiet",
        "--pass-list",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("1 test(s) on the pass list")
            && err.contains("lathe_relu_wrong_expected: cpu fail"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
