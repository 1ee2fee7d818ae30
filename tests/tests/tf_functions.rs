//! Function libraries in GraphDefs: calls inlined (nested, generic, called by op name), run on
//! the interpreter against hand-computed results, and the errors of broken libraries.

use lathe_compiler::import::tensorflow::import_graph_def;
use lathe_compiler::import::tensorflow::inline::MAX_DEPTH;
use lathe_ir::Tensor;
use lathe_proto::tensorflow::op_def::ArgDef;
use lathe_proto::tensorflow::{
    attr_value::Value, AttrValue, DataType, FunctionDef, FunctionDefLibrary, GraphDef,
    NameAttrList, NodeDef, OpDef, TensorProto, TensorShapeProto,
};
use lathe_tests::{graph_def, node_def, placeholder};
use std::path::Path;

fn float() -> Value {
    Value::Type(DataType::DtFloat as i32)
}

fn scalar(v: f32) -> NodeDef {
    node_def(
        "two",
        "Const",
        &[],
        &[
            ("dtype", float()),
            (
                "value",
                Value::Tensor(TensorProto {
                    dtype: DataType::DtFloat as i32,
                    tensor_shape: Some(TensorShapeProto::default()),
                    float_val: vec![v],
                    ..Default::default()
                }),
            ),
        ],
    )
}

fn arg(name: &str, type_attr: &str) -> ArgDef {
    ArgDef {
        name: name.into(),
        r#type: if type_attr.is_empty() {
            DataType::DtFloat as i32
        } else {
            0
        },
        type_attr: type_attr.into(),
        ..Default::default()
    }
}

fn function(
    name: &str,
    inputs: Vec<ArgDef>,
    outputs: Vec<ArgDef>,
    body: Vec<NodeDef>,
    ret: &[(&str, &str)],
) -> FunctionDef {
    FunctionDef {
        signature: Some(OpDef {
            name: name.into(),
            input_arg: inputs,
            output_arg: outputs,
            ..Default::default()
        }),
        node_def: body,
        ret: ret
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn call(name: &str, op: &str, f: &str, inputs: &[&str], attrs: &[(&str, Value)]) -> NodeDef {
    // The function's attributes, as a node's attributes are built.
    let attr = node_def(f, f, &[], attrs).attr;
    let func = Value::Func(NameAttrList {
        name: f.into(),
        attr,
    });
    node_def(name, op, inputs, &[("f", func)])
}

/// `scale_add<T>(a, b) = 2a + b`, generic in `T` (its constant and ops take the placeholder).
fn scale_add() -> FunctionDef {
    let mut mul = node_def("mul", "Mul", &["a", "two:output:0", "^a"], &[]);
    mul.attr.insert(
        "T".into(),
        AttrValue {
            value: Some(Value::Placeholder("T".into())),
        },
    );
    // An unused node: dropped, not an output of the graph.
    let dead = node_def("dead", "Neg", &["b"], &[]);
    function(
        "scale_add",
        vec![arg("a", "T"), arg("b", "T")],
        vec![arg("out", "T")],
        vec![
            scalar(2.0),
            mul,
            node_def("add", "AddV2", &["mul:z:0", "b"], &[]),
            dead,
        ],
        &[("out", "add:z:0")],
    )
}

/// `outer(x) = (3x, -3x)` through a nested call of `scale_add`.
fn outer() -> FunctionDef {
    function(
        "outer",
        vec![arg("x", "")],
        vec![arg("y", ""), arg("z", "")],
        vec![
            call(
                "inner",
                "StatefulPartitionedCall",
                "scale_add",
                &["x", "x"],
                &[("T", float())],
            ),
            node_def("neg", "Neg", &["inner:output:0"], &[]),
        ],
        &[("y", "inner:output:0"), ("z", "neg:y:0")],
    )
}

fn with_library(mut gd: GraphDef, functions: Vec<FunctionDef>) -> GraphDef {
    gd.library = Some(FunctionDefLibrary {
        function: functions,
        ..Default::default()
    });
    gd
}

fn run(gd: &GraphDef, x: &[f32]) -> Vec<(String, Vec<f32>)> {
    let g = import_graph_def(gd, Path::new("functions.pb")).unwrap_or_else(|e| panic!("{e}"));
    let out = lathe_ir::interp::run(&g, &[Tensor::from_vec(&[x.len()], x.to_vec())]).unwrap();
    g.outputs()
        .iter()
        .map(|o| o.name.clone())
        .zip(
            out.iter()
                .map(|t| t.to_f64_vec().iter().map(|&v| v as f32).collect()),
        )
        .collect()
}

#[test]
fn nested_generic_calls_are_inlined() {
    let gd = with_library(
        graph_def(vec![
            placeholder("x", Some(&[2])),
            call("c", "PartitionedCall", "outer", &["x"], &[]),
            node_def("y", "Identity", &["c"], &[]),
            node_def("z", "Identity", &["c:1"], &[]),
        ]),
        vec![scale_add(), outer()],
    );
    assert_eq!(
        run(&gd, &[1.0, -2.0]),
        [
            ("y:0".to_string(), vec![3.0, -6.0]),
            ("z:0".to_string(), vec![-3.0, 6.0])
        ]
    );
}

#[test]
fn a_node_whose_op_is_a_function_is_a_call() {
    let mut direct = node_def("direct", "scale_add", &["x", "x"], &[("T", float())]);
    direct.input.push("^x".into());
    let gd = with_library(
        graph_def(vec![
            placeholder("x", Some(&[2])),
            direct,
            node_def("y", "Identity", &["direct:0"], &[]),
        ]),
        vec![scale_add()],
    );
    assert_eq!(
        run(&gd, &[1.0, 4.0]),
        [("y:0".to_string(), vec![3.0, 12.0])]
    );
}

fn import_err(gd: &GraphDef) -> String {
    import_graph_def(gd, Path::new("functions.pb"))
        .unwrap_err()
        .to_string()
}

#[test]
fn broken_libraries_are_one_line_errors_naming_the_call() {
    let base = |nodes: Vec<NodeDef>, fs: Vec<FunctionDef>| {
        let mut all = vec![placeholder("x", Some(&[2]))];
        all.extend(nodes);
        all.push(node_def("y", "Identity", &["c"], &[]));
        with_library(graph_def(all), fs)
    };
    // A function that is not in the library.
    let e = import_err(&base(
        vec![call("c", "StatefulPartitionedCall", "nowhere", &["x"], &[])],
        vec![outer()],
    ));
    assert!(e.contains("functions.pb") && e.contains("`c`"), "{e}");
    assert!(
        e.contains("`nowhere`, which is not in the graph's library"),
        "{e}"
    );
    // Too many inputs.
    let e = import_err(&base(
        vec![call("c", "PartitionedCall", "outer", &["x", "x"], &[])],
        vec![outer(), scale_add()],
    ));
    assert!(
        e.contains("passes 2 inputs; function `outer` takes 1"),
        "{e}"
    );
    // A generic function called without its type.
    let e = import_err(&base(
        vec![call("c", "PartitionedCall", "scale_add", &["x", "x"], &[])],
        vec![scale_add()],
    ));
    assert!(e.contains("placeholder `T`"), "{e}");
    // Recursion.
    let forever = function(
        "forever",
        vec![arg("x", "")],
        vec![arg("y", "")],
        vec![call("again", "PartitionedCall", "forever", &["x"], &[])],
        &[("y", "again:output:0")],
    );
    let e = import_err(&base(
        vec![call("c", "PartitionedCall", "forever", &["x"], &[])],
        vec![forever],
    ));
    assert!(
        e.contains(&format!("nest more than {MAX_DEPTH} deep")),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // A reference to an output argument the op does not have.
    let bad = function(
        "bad",
        vec![arg("x", "")],
        vec![arg("y", "")],
        vec![
            node_def("top", "TopKV2", &["x", "x"], &[]),
            node_def("n", "Neg", &["top:nope:0"], &[]),
        ],
        &[("y", "n:y:0")],
    );
    let e = import_err(&base(
        vec![call("c", "PartitionedCall", "bad", &["x"], &[])],
        vec![bad],
    ));
    assert!(e.contains("op TopKV2 has no output argument `nope`"), "{e}");
}
