//! ONNX's indexing ops: element gathers and scatters (`GatherElements`, `GatherND`,
//! `ScatterElements` and the older `Scatter`, `ScatterND`), `CumSum`, `CumProd`, `Trilu`, `TopK`, and
//! `OneHot`, which the IR has no op for: it is an `equal` of the indices against a range of
//! classes, then a `select` of the on and off values.
//!
//! `NonZero` is not imported: its output's shape depends on the input's values, and a Lathe
//! plan knows every shape before it runs.

use super::elementwise::cast;
use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, CumulativeKind, ScatterReduction};
use lathe_ir::{DType, Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("GatherElements", &["gather_elements"], |b, cx| {
            let axis = cx.attrs.int_or("axis", 0)?;
            one(b.op(Op::GatherElements { axis }, &[cx.input(0)?, cx.input(1)?])?)
        }),
        row("GatherND", &["gather_nd"], |b, cx| {
            let bd = cx.attrs.int_or("batch_dims", 0)?;
            let batch_dims =
                usize::try_from(bd).map_err(|_| format!("batch_dims {bd} is negative"))?;
            one(b.op(Op::GatherNd { batch_dims }, &[cx.input(0)?, cx.input(1)?])?)
        }),
        row(
            "ScatterElements",
            &["scatter_elements"],
            import_scatter_elements,
        ),
        // `Scatter` (opsets 9 and 10) is `ScatterElements` without a reduction.
        row("Scatter", &["scatter_elements"], import_scatter_elements),
        row("ScatterND", &["scatter_nd"], |b, cx| {
            let op = Op::ScatterNd {
                reduction: reduction(cx)?,
            };
            one(b.op(op, &[cx.input(0)?, cx.input(1)?, cx.input(2)?])?)
        }),
        row("CumSum", &["cumsum"], |b, cx| {
            import_cumulative(b, cx, CumulativeKind::Sum)
        }),
        row("CumProd", &["cumprod"], |b, cx| {
            import_cumulative(b, cx, CumulativeKind::Prod)
        }),
        row("Trilu", &["trilu"], |b, cx| {
            let k = match cx.opt(1) {
                Some(k) => k,
                None => b.i64_scalar(0),
            };
            let op = Op::Trilu {
                upper: cx.attrs.int_or("upper", 1)? != 0,
            };
            one(b.op(op, &[cx.input(0)?, k])?)
        }),
        row("TopK", &["top_k"], import_top_k),
        row(
            "OneHot",
            &[
                "equal",
                "select",
                "range",
                "cast",
                "reshape",
                "expand_dims",
                "less",
                "add",
                "slice",
            ],
            import_one_hot,
        ),
    ]
}

/// The `reduction` attribute (`none` before opset 16).
fn reduction(cx: &NodeCx) -> Result<ScatterReduction, String> {
    let r = cx.attrs.str_or("reduction", "none")?;
    ScatterReduction::parse(&r).ok_or_else(|| format!("reduction `{r}` is not supported"))
}

fn import_scatter_elements(b: &mut Builder, cx: &NodeCx) -> Out {
    let op = Op::ScatterElements {
        axis: cx.attrs.int_or("axis", 0)?,
        reduction: reduction(cx)?,
    };
    one(b.op(op, &[cx.input(0)?, cx.input(1)?, cx.input(2)?])?)
}

/// `TopK`: `k` an attribute before opset 10, an input (one element) from it; `largest` from
/// 11. The IR's result is always sorted, which `sorted = 0` (any order) allows.
fn import_top_k(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let k = if cx.opset < 10 {
        let k = cx.attrs.int("k")?;
        b.i64_scalar(k)
    } else {
        cx.input(1)?
    };
    let op = Op::TopK {
        axis: cx.attrs.int_or("axis", -1)?,
        largest: cx.attrs.int_or("largest", 1)? != 0,
    };
    let node = b.node_of(op, &[x, k])?;
    Ok((0..2).map(|output| ValueId { node, output }).collect())
}

/// `OneHot(indices, depth, values)`: `values[1]` where the index (negative counting back from
/// `depth`) equals the class along the new axis `axis`, else `values[0]`; an index outside
/// `[-depth, depth)` gives a row of `values[0]`.
fn import_one_hot(b: &mut Builder, cx: &NodeCx) -> Out {
    let (indices, depth, values) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let rank = b.rank(indices);
    let axis = norm_axis(cx.attrs.int_or("axis", -1)?, rank + 1)?;
    if b.ty(values).shape.num_elements() != Some(2) || b.rank(values) != 1 {
        return Err(format!("values must hold [off, on], got {}", b.ty(values)));
    }
    if b.ty(depth).shape.num_elements() != Some(1) {
        return Err(format!("depth must hold one value, got {}", b.ty(depth)));
    }
    let scalar = b.i64s(&[]);
    let depth = cast(b, depth, DType::I64)?;
    let depth = b.op(Op::Reshape, &[depth, scalar])?;
    let idx = cast(b, indices, DType::I64)?;
    let zero = b.i64_scalar(0);
    let negative = b.op(Op::Binary(B::Less), &[idx, zero])?;
    let wrapped = b.op(Op::Binary(B::Add), &[idx, depth])?;
    let idx = b.op(Op::Select, &[negative, wrapped, idx])?;
    let at = b.i64_scalar(axis as i64);
    let idx = b.op(Op::ExpandDims, &[idx, at])?;
    // The classes along the new axis, broadcast over the axes after it.
    let (start, step) = (b.i64_scalar(0), b.i64_scalar(1));
    let classes = b.op(Op::Range, &[start, depth, step])?;
    let mut target = vec![-1i64];
    target.resize(rank + 1 - axis, 1);
    let target = b.i64s(&target);
    let classes = b.op(Op::Reshape, &[classes, target])?;
    let hot = b.op(Op::Binary(B::Equal), &[idx, classes])?;
    let pick = |b: &mut Builder, i: i64| -> Result<ValueId, String> {
        let (begin, size) = (b.i64s(&[i]), b.i64s(&[1]));
        let v = b.op(Op::Slice, &[values, begin, size])?;
        b.op(Op::Reshape, &[v, scalar])
    };
    let (off, on) = (pick(b, 0)?, pick(b, 1)?);
    one(b.op(Op::Select, &[hot, on, off])?)
}

/// `CumSum`/`CumProd`: the running sum or product along the axis input, with the
/// `exclusive` and `reverse` flags.
fn import_cumulative(b: &mut Builder, cx: &NodeCx, kind: CumulativeKind) -> Out {
    let op = Op::Cumulative {
        kind,
        exclusive: cx.attrs.int_or("exclusive", 0)? != 0,
        reverse: cx.attrs.int_or("reverse", 0)? != 0,
    };
    one(b.op(op, &[cx.input(0)?, cx.input(1)?])?)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::import_bytes;
    use lathe_ir::{Graph, Tensor};
    use lathe_proto::onnx::tensor_proto::DataType;
    use lathe_proto::onnx::tensor_shape_proto::{dimension, Dimension};
    use lathe_proto::onnx::{
        type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
        TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use lathe_proto::Message;
    use std::path::Path;

    fn int_attr(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            i: Some(i),
            ..AttributeProto::default()
        }
    }

    fn str_attr(name: &str, s: &str) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            s: Some(s.as_bytes().to_vec()),
            ..AttributeProto::default()
        }
    }

    /// An i64 graph input `x` of `dims`.
    fn input(dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| Dimension {
                value: Some(dimension::Value::DimValue(d)),
                ..Dimension::default()
            })
            .collect();
        let t = type_proto::Tensor {
            elem_type: Some(DataType::Int64 as i32),
            shape: Some(TensorShapeProto { dim }),
        };
        ValueInfoProto {
            name: Some("x".into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(t)),
                ..TypeProto::default()
            }),
            ..ValueInfoProto::default()
        }
    }

    fn floats(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            float_data: v.to_vec(),
            ..TensorProto::default()
        }
    }

    /// A model of one `op` node at `opset` on input `x` (i64 of `dims`) and initializers
    /// `inits`, its outputs `y0, y1, ...`.
    fn model(
        op: &str,
        opset: i64,
        dims: &[i64],
        inits: Vec<TensorProto>,
        attrs: Vec<AttributeProto>,
        outputs: usize,
    ) -> Result<Graph, String> {
        let mut inputs = vec!["x".to_string()];
        inputs.extend(inits.iter().filter_map(|t| t.name.clone()));
        let outs: Vec<String> = (0..outputs).map(|k| format!("y{k}")).collect();
        let node = NodeProto {
            op_type: Some(op.into()),
            input: inputs,
            output: outs.clone(),
            attribute: attrs,
            ..NodeProto::default()
        };
        let graph = GraphProto {
            node: vec![node],
            input: vec![input(dims)],
            initializer: inits,
            output: outs
                .iter()
                .map(|n| ValueInfoProto {
                    name: Some(n.clone()),
                    ..ValueInfoProto::default()
                })
                .collect(),
            ..GraphProto::default()
        };
        let m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(graph),
            ..ModelProto::default()
        };
        import_bytes(&m.encode_to_vec(), Path::new("t.onnx")).map_err(|e| e.to_string())
    }

    fn run(g: &Graph, x: Tensor) -> Vec<Tensor> {
        lathe_ir::interp::run(g, &[x]).unwrap()
    }

    #[test]
    fn one_hot_is_equal_against_the_classes_then_select() {
        let inits = vec![
            floats("depth", &[], &[4.0]),
            floats("values", &[2], &[0.5, 7.0]),
        ];
        let g = model("OneHot", 11, &[3], inits, vec![int_attr("axis", 0)], 1).unwrap();
        // -1 counts back from the depth; 5 is out of range: a column of `off`.
        let y = run(&g, Tensor::from_vec(&[3], vec![-1i64, 5, 1]));
        assert_eq!(y[0].shape(), [4, 3]);
        let (o, h) = (0.5, 7.0);
        assert_eq!(y[0].to_f64_vec(), [o, o, o, o, o, h, o, o, o, h, o, o]);
    }

    #[test]
    fn top_k_takes_k_from_the_attribute_before_opset_10() {
        let g = model("TopK", 9, &[2, 3], vec![], vec![int_attr("k", 2)], 2).unwrap();
        let y = run(&g, Tensor::from_vec(&[2, 3], vec![1i64, 9, 4, 6, 6, 2]));
        assert_eq!(y[0].to_i64_vec().unwrap(), [9, 4, 6, 6]);
        assert_eq!(y[1].to_i64_vec().unwrap(), [1, 2, 0, 1]);
        let k = TensorProto {
            name: Some("k".into()),
            dims: vec![1],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vec![1],
            ..TensorProto::default()
        };
        let attrs = vec![int_attr("largest", 0), int_attr("axis", 0)];
        let g = model("TopK", 11, &[2, 3], vec![k], attrs, 2).unwrap();
        let y = run(&g, Tensor::from_vec(&[2, 3], vec![1i64, 9, 4, 6, 6, 2]));
        assert_eq!(y[0].to_i64_vec().unwrap(), [1, 6, 2]);
        assert_eq!(y[1].to_i64_vec().unwrap(), [0, 1, 1]);
    }

    #[test]
    fn trilu_defaults_and_scatter_reductions() {
        let g = model("Trilu", 14, &[2, 2], vec![], vec![], 1).unwrap();
        let y = run(&g, Tensor::from_vec(&[2, 2], vec![1i64, 2, 3, 4]));
        assert_eq!(y[0].to_i64_vec().unwrap(), [1, 2, 0, 4]);
        let idx = TensorProto {
            name: Some("i".into()),
            dims: vec![1, 1],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vec![-1],
            ..TensorProto::default()
        };
        let upd = TensorProto {
            name: Some("u".into()),
            int64_data: vec![10],
            ..idx.clone()
        };
        let attrs = vec![int_attr("axis", 1), str_attr("reduction", "max")];
        let inits = vec![idx.clone(), upd.clone()];
        let g = model("ScatterElements", 18, &[2, 2], inits, attrs, 1).unwrap();
        let y = run(&g, Tensor::from_vec(&[2, 2], vec![1i64, 2, 3, 4]));
        assert_eq!(y[0].to_i64_vec().unwrap(), [1, 10, 3, 4]);
        let attrs = vec![str_attr("reduction", "mean")];
        let e = model("ScatterElements", 18, &[2, 2], vec![idx, upd], attrs, 1).unwrap_err();
        assert!(e.contains("reduction `mean` is not supported"), "{e}");
    }
}
