//! Import errors are part of the interface: a bad file or an unsupported graph gives an error
//! (never a panic) whose one-line `Display` names the file and, where one node is at fault, the
//! node and its TensorFlow op.

use lathe_compiler::import::tensorflow::{import_bytes, import_graph_def};
use lathe_compiler::{load, ImportError};
use lathe_proto::tensorflow::{attr_value::Value, tensor_shape_proto, DataType, GraphDef};
use lathe_proto::Message;
use lathe_tests::{graph_def, node_def, placeholder, unknown_op_graph_def, Fixture, TempDir};
use std::path::Path;

/// Checks that `e` displays as one line starting with `path: ` and returns that line.
fn one_line_naming(e: &ImportError, path: &Path) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s:?}");
    assert!(!s.trim().is_empty(), "empty error");
    let prefix = format!("{}: ", path.display());
    assert!(
        s.starts_with(&prefix),
        "error does not start with {prefix:?}: {s:?}"
    );
    assert_eq!(e.file, path, "ImportError::file");
    s
}

/// Checks that `e` is about node `node` (op `op`): fields and the `node `N` (op OP): ` prefix.
/// Returns the message after that prefix.
fn about_node(e: &ImportError, path: &Path, node: &str, op: &str) -> String {
    let s = one_line_naming(e, path);
    assert_eq!(e.node.as_deref(), Some(node), "{s}");
    assert_eq!(e.op.as_deref(), Some(op), "{s}");
    let prefix = format!("{}: node `{node}` (op {op}): ", path.display());
    assert!(
        s.starts_with(&prefix),
        "{s:?} does not start with {prefix:?}"
    );
    assert_eq!(
        e.message,
        s[prefix.len()..],
        "Display is file, node, op, message"
    );
    e.message.clone()
}

/// Imports a GraphDef built in the test, both in memory and as a `.pb` file through
/// [`load`]; both must fail the same way. Returns the in-memory error and the file's error.
fn import_both(gd: &GraphDef, test: &str) -> (ImportError, ImportError, TempDir) {
    let mem_path = Path::new("built_in_test.pb");
    let mem = import_graph_def(gd, mem_path).expect_err("import_graph_def should fail");
    let bytes = gd.encode_to_vec();
    let from_bytes = import_bytes(&bytes, mem_path).expect_err("import_bytes should fail");
    assert_eq!(
        from_bytes, mem,
        "import_bytes and import_graph_def disagree"
    );
    let dir = TempDir::new(test);
    let file = dir.join("model.pb");
    std::fs::write(&file, bytes).unwrap();
    let loaded = load(&file).expect_err("load should fail");
    assert_eq!(loaded.node, mem.node);
    assert_eq!(loaded.op, mem.op);
    assert_eq!(loaded.message, mem.message);
    (mem, loaded, dir)
}

#[test]
fn truncated_graph_def_is_an_error_naming_the_file() {
    let bytes = std::fs::read(Fixture::open("mlp_tiny").model_path()).unwrap();
    assert!(bytes.len() > 1000, "fixture unexpectedly small");
    let dir = TempDir::new("truncated_graph_def");
    let path = dir.join("truncated.pb");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(&path).expect_err("a truncated GraphDef must not load");
    let s = one_line_naming(&e, &path);
    assert_eq!(e.node, None, "{s}");
    assert!(
        e.message.starts_with("not a valid TensorFlow GraphDef ("),
        "{s}"
    );
    // Other cut points fail too (some may decode as a shorter graph and fail later).
    for cut in [1, 7, bytes.len() / 4, bytes.len() * 3 / 4, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = load(&path).expect_err(&format!("GraphDef cut at {cut} loaded"));
        one_line_naming(&e, &path);
    }
}

#[test]
fn unknown_op_names_the_node_and_the_op() {
    let (e, _, _dir) = import_both(&unknown_op_graph_def(), "unknown_op");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "frob", "FrobnicateV9");
    assert!(
        msg.starts_with("unsupported TensorFlow op `FrobnicateV9`"),
        "{msg}"
    );
}

#[test]
fn input_from_a_missing_node_names_the_consumer_and_the_reference() {
    let gd = graph_def(vec![
        placeholder("x", Some(&[2])),
        node_def("out", "AddV2", &["x", "ghost:0"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "missing_node");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "out", "AddV2");
    assert_eq!(
        msg,
        "input `ghost:0` refers to node `ghost`, which is not in the graph"
    );
    // A control input to a missing node is as wrong as a data input.
    let gd = graph_def(vec![
        placeholder("x", Some(&[2])),
        node_def("out", "Relu", &["x", "^ghost"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "missing_control_node");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "out", "Relu");
    assert!(
        msg.contains("`^ghost`") && msg.contains("not in the graph"),
        "{msg}"
    );
}

#[test]
fn input_from_a_missing_output_index_says_how_many_there_are() {
    let gd = graph_def(vec![
        placeholder("x", Some(&[2])),
        node_def("out", "Relu", &["x:3"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "missing_output_index");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "out", "Relu");
    assert_eq!(
        msg,
        "input `x:3` refers to output 3 of `x`, which has 1 output(s)"
    );
}

#[test]
fn placeholder_without_a_usable_shape_names_the_placeholder() {
    let gd = graph_def(vec![
        placeholder("x", None),
        node_def("out", "Relu", &["x"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "placeholder_no_shape");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "x", "Placeholder");
    assert!(msg.contains("has no shape"), "{msg}");

    let unknown_rank = Value::Shape(lathe_proto::tensorflow::TensorShapeProto {
        dim: vec![],
        unknown_rank: true,
    });
    let gd = graph_def(vec![
        node_def(
            "x",
            "Placeholder",
            &[],
            &[
                ("dtype", Value::Type(DataType::DtFloat as i32)),
                ("shape", unknown_rank),
            ],
        ),
        node_def("out", "Relu", &["x"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "placeholder_unknown_rank");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "x", "Placeholder");
    assert!(msg.contains("unknown rank"), "{msg}");

    let bad_dim = Value::Shape(lathe_proto::tensorflow::TensorShapeProto {
        dim: vec![tensor_shape_proto::Dim {
            size: -7,
            name: String::new(),
        }],
        unknown_rank: false,
    });
    let gd = graph_def(vec![
        node_def(
            "x",
            "Placeholder",
            &[],
            &[
                ("dtype", Value::Type(DataType::DtFloat as i32)),
                ("shape", bad_dim),
            ],
        ),
        node_def("out", "Relu", &["x"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "placeholder_bad_dim");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "x", "Placeholder");
    assert!(msg.contains("-7"), "{msg}");
}

#[test]
fn duplicate_node_names_and_cycles_are_errors() {
    let gd = graph_def(vec![
        placeholder("x", Some(&[2])),
        node_def("x", "Relu", &["x"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "duplicate_name");
    let msg = about_node(&e, Path::new("built_in_test.pb"), "x", "Relu");
    assert!(msg.contains("two nodes have this name"), "{msg}");

    let gd = graph_def(vec![
        placeholder("x", Some(&[2])),
        node_def("a", "AddV2", &["x", "b"], &[]),
        node_def("b", "Relu", &["a"], &[]),
    ]);
    let (e, _, _dir) = import_both(&gd, "cycle");
    let s = one_line_naming(&e, Path::new("built_in_test.pb"));
    assert!(matches!(e.node.as_deref(), Some("a") | Some("b")), "{s}");
    assert!(e.message.contains("cycle"), "{s}");
}

#[test]
fn empty_file_is_an_error_naming_the_file() {
    let dir = TempDir::new("empty_file");
    let path = dir.join("empty.pb");
    std::fs::write(&path, b"").unwrap();
    let e = load(&path).expect_err("an empty file must not load");
    let s = one_line_naming(&e, &path);
    assert_eq!(e.node, None, "{s}");
    assert_eq!(e.message, "the GraphDef has no nodes");
}

#[test]
fn garbage_file_is_an_error_naming_the_file() {
    let dir = TempDir::new("garbage_file");
    let path = dir.join("garbage.pb");
    // 0xff... is an invalid varint key, so this cannot decode as any message.
    std::fs::write(&path, [0xffu8; 16]).unwrap();
    let e = load(&path).expect_err("garbage must not load");
    let s = one_line_naming(&e, &path);
    assert!(
        e.message.starts_with("not a valid TensorFlow GraphDef ("),
        "{s}"
    );
}

#[test]
fn missing_file_is_an_error_naming_the_file() {
    let dir = TempDir::new("missing_file");
    let path = dir.join("does_not_exist.pb");
    let e = load(&path).expect_err("a missing file must not load");
    let s = one_line_naming(&e, &path);
    assert_eq!(e.node, None, "{s}");
    assert_eq!(e.message, "no such file or directory");
    // The TensorFlow importer called directly says the same, in the OS's words.
    let e = lathe_compiler::import::tensorflow::import_file(&path).unwrap_err();
    let s = one_line_naming(&e, &path);
    assert!(s.contains("No such file or directory"), "{s}");
}

#[test]
fn directory_without_a_saved_model_is_a_clear_error() {
    let dir = TempDir::new("saved_model_dir");
    let e = load(dir.path()).expect_err("an empty directory must not load");
    let s = one_line_naming(&e, dir.path());
    assert_eq!(e.node, None, "{s}");
    assert_eq!(
        e.message, "not a SavedModel directory: it has no saved_model.pb or saved_model.pbtxt",
        "{s}"
    );
}

#[test]
fn unknown_extension_is_a_clear_error() {
    let dir = TempDir::new("unknown_extension");
    let path = dir.join("model.txt");
    std::fs::write(&path, b"whatever").unwrap();
    let e = load(&path).expect_err("an unknown extension must not load");
    let s = one_line_naming(&e, &path);
    assert!(e.message.starts_with("unknown model format"), "{s}");
    assert!(e.message.contains("`.pb`"), "{s}");
}

#[test]
fn graph_with_only_constants_has_no_outputs() {
    let gd = graph_def(vec![placeholder("x", Some(&[2]))]);
    let (e, _, _dir) = import_both(&gd, "no_outputs");
    let s = one_line_naming(&e, Path::new("built_in_test.pb"));
    assert_eq!(e.node, None, "{s}");
    assert!(e.message.contains("no outputs"), "{s}");
}

/// Node and op names come from the file, and a corrupt or hostile file may put a line break in
/// one; the error must still be one line (and still name the node).
#[test]
fn names_with_line_breaks_still_give_a_one_line_error() {
    let gd = graph_def(vec![
        placeholder("x", Some(&[2])),
        node_def("evil\nname", "Frob\nV9", &["x"], &[]),
    ]);
    let e = import_graph_def(&gd, Path::new("built_in_test.pb")).unwrap_err();
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s:?}");
    assert!(s.contains("evil") && s.contains("name"), "{s}");
}
