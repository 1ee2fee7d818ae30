//! Known values of the quantized ops' import: one-node models whose operands are initializers,
//! imported and evaluated by the interpreter.

use crate::import::onnx::import_bytes;
use crate::import::onnx::tensor::to_proto;
use lathe_ir::{DType, Tensor};
use lathe_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
};
use prost::Message;
use std::path::Path;

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

fn str_attr(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(3),
        ..Default::default()
    }
}

/// Imports a model of one `op` node on `inputs` (initializers; `None` an omitted optional
/// input) and evaluates its `outputs` outputs.
fn run(
    op: &str,
    inputs: &[Option<Tensor>],
    attrs: Vec<AttributeProto>,
    outputs: usize,
) -> Result<Vec<Tensor>, String> {
    let names: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.as_ref().map_or(String::new(), |_| format!("in{i}")))
        .collect();
    let out: Vec<String> = (0..outputs).map(|i| format!("out{i}")).collect();
    let graph = GraphProto {
        name: Some("g".into()),
        node: vec![NodeProto {
            op_type: Some(op.into()),
            input: names.clone(),
            output: out.clone(),
            attribute: attrs,
            ..Default::default()
        }],
        initializer: inputs
            .iter()
            .zip(&names)
            .filter_map(|(t, n)| t.as_ref().map(|t| to_proto(t, n)))
            .collect(),
        output: out
            .iter()
            .map(|n| ValueInfoProto {
                name: Some(n.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(21),
        }],
        graph: Some(graph),
        ..Default::default()
    };
    let g = import_bytes(&model.encode_to_vec(), Path::new("t.onnx")).map_err(|e| e.message)?;
    lathe_ir::interp::run::<Tensor>(&g, &[]).map_err(|e| e.to_string())
}

fn f32s(shape: &[usize], v: &[f64]) -> Option<Tensor> {
    Some(Tensor::from_f64(DType::F32, shape, v))
}

fn ints(dt: DType, shape: &[usize], v: &[i64]) -> Option<Tensor> {
    Some(Tensor::from_i64(dt, shape, v))
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec()
}

#[test]
fn quantize_rounds_ties_to_even_and_saturates() {
    let x = f32s(&[8], &[-1.5, -0.5, 0.5, 1.5, 2.5, 300.0, -300.0, 127.4]);
    let y = run(
        "QuantizeLinear",
        &[x, f32s(&[], &[1.0]), ints(DType::U8, &[], &[128])],
        vec![],
        1,
    )
    .unwrap();
    assert_eq!(y[0].dtype(), DType::U8);
    assert_eq!(
        values(&y[0]),
        [126.0, 128.0, 128.0, 130.0, 130.0, 255.0, 0.0, 255.0]
    );
    // i8 with a scale: 3 / 2 = 1.5 and 5 / 2 = 2.5 both round to 2.
    let x = f32s(&[5], &[3.0, 5.0, -1.0, 1000.0, -1000.0]);
    let y = run(
        "QuantizeLinear",
        &[x, f32s(&[], &[2.0]), ints(DType::I8, &[], &[-1])],
        vec![],
        1,
    )
    .unwrap();
    assert_eq!(values(&y[0]), [1.0, 1.0, -1.0, 127.0, -128.0]);
    // No zero point: u8, zero point 0 (and the default axis 1 of a rank-1 input is moot).
    let y = run(
        "QuantizeLinear",
        &[f32s(&[2], &[-3.0, 3.0]), f32s(&[], &[1.0])],
        vec![],
        1,
    )
    .unwrap();
    assert_eq!((y[0].dtype(), values(&y[0])), (DType::U8, vec![0.0, 3.0]));
}

#[test]
fn quantize_per_axis_and_blocked() {
    let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let s = f32s(&[3], &[1.0, 2.0, 4.0]);
    let z = ints(DType::U8, &[3], &[0, 10, 20]);
    let y = run(
        "QuantizeLinear",
        &[x.clone(), s, z],
        vec![int_attr("axis", 1)],
        1,
    )
    .unwrap();
    assert_eq!(values(&y[0]), [1.0, 11.0, 21.0, 4.0, 12.0, 22.0]);
    // Blocks of 2 along axis 1 (the last block cut to the one column left).
    let s = f32s(&[2, 2], &[1.0, 3.0, 2.0, 6.0]);
    let attrs = vec![int_attr("axis", 1), int_attr("block_size", 2)];
    let y = run("QuantizeLinear", &[x, s, None], attrs, 1).unwrap();
    assert_eq!(values(&y[0]), [1.0, 2.0, 1.0, 2.0, 2.0, 1.0]);
}

#[test]
fn dequantize_subtracts_then_scales() {
    let x = ints(DType::I8, &[3], &[-128, 0, 127]);
    let y = run(
        "DequantizeLinear",
        &[x, f32s(&[], &[0.5]), ints(DType::I8, &[], &[-1])],
        vec![],
        1,
    )
    .unwrap();
    assert_eq!(y[0].dtype(), DType::F32);
    assert_eq!(values(&y[0]), [-63.5, 0.5, 64.0]);
    let x = ints(DType::U8, &[2, 2], &[0, 10, 20, 30]);
    let s = Some(Tensor::from_f64(DType::F16, &[2], &[1.0, 0.5]));
    let y = run(
        "DequantizeLinear",
        &[x, s, None],
        vec![int_attr("axis", 0)],
        1,
    )
    .unwrap();
    assert_eq!(y[0].dtype(), DType::F16);
    assert_eq!(values(&y[0]), [0.0, 10.0, 10.0, 15.0]);
}

#[test]
fn dynamic_quantize_takes_the_range_with_zero() {
    let run1 = |v: &[f64]| run("DynamicQuantizeLinear", &[f32s(&[v.len()], v)], vec![], 3).unwrap();
    let out = run1(&[0.0, 255.0, 127.5]);
    assert_eq!(values(&out[1]), [1.0]);
    assert_eq!(values(&out[2]), [0.0]);
    assert_eq!(values(&out[0]), [0.0, 255.0, 128.0]);
    let out = run1(&[-255.0, -1.0]);
    assert_eq!((values(&out[1]), values(&out[2])), (vec![1.0], vec![255.0]));
    assert_eq!(values(&out[0]), [0.0, 254.0]);
    // All zero: the scale of an empty range is 1 / 255.
    let out = run1(&[0.0, 0.0]);
    assert_eq!(values(&out[1]), [(1.0f32 / 255.0) as f64]);
    assert_eq!(
        (values(&out[0]), values(&out[2])),
        (vec![0.0, 0.0], vec![0.0])
    );
}

#[test]
fn qlinear_matmul_requantizes_the_integer_product() {
    // acc = (130 - 128) * 1 + (132 - 128) * 2 = 10; 10 * (0.5 * 1 / 0.25) + 10 = 30.
    let inputs = [
        ints(DType::U8, &[1, 2], &[130, 132]),
        f32s(&[], &[0.5]),
        ints(DType::U8, &[], &[128]),
        ints(DType::I8, &[2, 1], &[1, 2]),
        f32s(&[], &[1.0]),
        ints(DType::I8, &[], &[0]),
        f32s(&[], &[0.25]),
        ints(DType::U8, &[], &[10]),
    ];
    let y = run("QLinearMatMul", &inputs, vec![], 1).unwrap();
    assert_eq!((y[0].dtype(), values(&y[0])), (DType::U8, vec![30.0]));
    let acc = run(
        "MatMulInteger",
        &[inputs[0].clone(), inputs[3].clone(), inputs[2].clone()],
        vec![],
        1,
    )
    .unwrap();
    assert_eq!((acc[0].dtype(), values(&acc[0])), (DType::I32, vec![10.0]));
}

#[test]
fn unsupported_forms_are_errors() {
    let x = || ints(DType::U8, &[2], &[1, 2]);
    let e = run(
        "BitShift",
        &[x(), x()],
        vec![str_attr("direction", "UP")],
        1,
    )
    .unwrap_err();
    assert!(e.contains("`direction` must be LEFT or RIGHT"), "{e}");
    let y = run(
        "BitShift",
        &[x(), x()],
        vec![str_attr("direction", "LEFT")],
        1,
    )
    .unwrap();
    assert_eq!(values(&y[0]), [2.0, 8.0]);
    // INT4 (22), a low-precision storage type, is a quantization target.
    let y = run(
        "QuantizeLinear",
        &[f32s(&[2], &[1.0, 9.0]), f32s(&[], &[1.0])],
        vec![int_attr("output_dtype", 22)],
        1,
    )
    .unwrap();
    assert_eq!(y[0].dtype(), lathe_ir::DType::I4);
    assert_eq!(values(&y[0]), [1.0, 7.0], "saturates to int4's range");
    let e = run(
        "QuantizeLinear",
        &[f32s(&[2, 2], &[1.0; 4]), f32s(&[2, 2], &[1.0; 4])],
        vec![],
        1,
    )
    .unwrap_err();
    assert!(e.contains("need `block_size`"), "{e}");
}
