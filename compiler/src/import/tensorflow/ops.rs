//! The table from TensorFlow ops to IR ops, with TensorFlow's attribute semantics.
//!
//! One row per TensorFlow op: its name, the IR op(s) it imports to, and how. The list of
//! supported ops, the unsupported-op error and `lathe ops` all read this table.

use super::attrs::Attrs;
use super::control_flow as cf;
use super::{tensor, Importer};
use lathe_ir::ops::{
    BinaryOp, ConvAttrs, PadMode, PoolAttrs, ReduceKind, StridedSliceAttrs, UnaryOp,
};
use lathe_ir::{DType, IrError, Op, Tensor, ValueId};
use lathe_proto::tensorflow::NodeDef;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The outputs of an imported node: one IR value per TensorFlow output (`None` for outputs
/// the IR does not model).
type Outputs = Result<Vec<Option<ValueId>>, IrError>;

/// How a TensorFlow op becomes IR.
#[derive(Clone)]
enum Convert {
    /// This IR op on the node's inputs, one output.
    Op(Op),
    /// The IR op the node's attributes say, on the node's inputs, one output.
    Attrs(fn(&Attrs) -> Result<Op, String>),
    /// Anything else: graph inputs, constants, several outputs, reordered inputs.
    Custom(fn(&mut Importer, &NodeDef, Vec<ValueId>) -> Outputs),
}

/// One row of the table.
#[derive(Clone)]
pub struct TfOp {
    /// The TensorFlow op name (`Conv2D`).
    pub name: &'static str,
    /// The mnemonics of the IR ops it imports to: first the op the node becomes, then any
    /// helper ops it adds (a constant axis).
    pub ir: Vec<&'static str>,
    /// How.
    convert: Convert,
}

/// A row importing to one fixed IR op.
fn same(name: &'static str, op: Op) -> TfOp {
    TfOp {
        name,
        ir: vec![op.mnemonic()],
        convert: Convert::Op(op),
    }
}

/// A row whose IR op (`ir`) takes its attributes from the node.
fn attrs(name: &'static str, ir: &'static str, f: fn(&Attrs) -> Result<Op, String>) -> TfOp {
    TfOp {
        name,
        ir: vec![ir],
        convert: Convert::Attrs(f),
    }
}

/// A row converted by a function of its own, producing the IR ops `ir`.
fn custom(
    name: &'static str,
    ir: &[&'static str],
    f: fn(&mut Importer, &NodeDef, Vec<ValueId>) -> Outputs,
) -> TfOp {
    TfOp {
        name,
        ir: ir.to_vec(),
        convert: Convert::Custom(f),
    }
}

/// Every TensorFlow op the importer knows, in table order.
pub fn table() -> &'static [TfOp] {
    &index().0
}

/// The names of every TensorFlow op the importer knows (derived from [`table`]).
pub fn supported_ops() -> Vec<&'static str> {
    table().iter().map(|r| r.name).collect()
}

fn index() -> &'static (Vec<TfOp>, HashMap<&'static str, usize>) {
    static INDEX: OnceLock<(Vec<TfOp>, HashMap<&'static str, usize>)> = OnceLock::new();
    INDEX.get_or_init(|| {
        let rows = rows();
        let by_name = rows.iter().enumerate().map(|(i, r)| (r.name, i)).collect();
        (rows, by_name)
    })
}

fn reduce(a: &Attrs, kind: ReduceKind) -> Result<Op, String> {
    Ok(Op::Reduce {
        kind,
        keep_dims: a.bool_or("keep_dims", false)?,
    })
}

fn conv(a: &Attrs) -> Result<ConvAttrs, String> {
    Ok(ConvAttrs {
        strides: a.spatial_pair("strides", None)?,
        dilations: a.spatial_pair("dilations", Some(1))?,
        padding: a.padding()?,
        format: a.data_format()?,
    })
}

fn pool(a: &Attrs) -> Result<PoolAttrs, String> {
    Ok(PoolAttrs {
        ksize: a.spatial_pair("ksize", None)?,
        strides: a.spatial_pair("strides", None)?,
        padding: a.padding()?,
        format: a.data_format()?,
    })
}

fn matmul(a: &Attrs) -> Result<Op, String> {
    Ok(Op::MatMul {
        transpose_a: a.bool_or("transpose_a", false)?,
        transpose_b: a.bool_or("transpose_b", false)?,
    })
}

fn batch_matmul(a: &Attrs) -> Result<Op, String> {
    Ok(Op::BatchMatMul {
        adj_x: a.bool_or("adj_x", false)?,
        adj_y: a.bool_or("adj_y", false)?,
    })
}

fn bias_add(a: &Attrs) -> Result<Op, String> {
    Ok(Op::BiasAdd {
        format: a.data_format()?,
    })
}

fn constant_pad(_: &Attrs) -> Result<Op, String> {
    Ok(Op::Pad {
        mode: PadMode::Constant,
    })
}

/// The table. One row per TensorFlow op; versions of one op are rows of their own.
fn rows() -> Vec<TfOp> {
    use BinaryOp as B;
    use UnaryOp as U;
    vec![
        // ---- graph structure
        custom("Placeholder", &["input"], |imp, node, _| {
            imp.placeholder(node)
        }),
        same("PlaceholderWithDefault", Op::Identity),
        custom("Const", &["const"], import_const),
        same("Identity", Op::Identity),
        custom("IdentityN", &["identity_n"], import_identity_n),
        same("Snapshot", Op::Identity),
        // A SavedModel's variables are constants by the time their reads are imported.
        same("ReadVariableOp", Op::Identity),
        same("StopGradient", Op::StopGradient),
        custom("NoOp", &["noop"], import_noop),
        // ---- elementwise
        same("Add", Op::Binary(B::Add)),
        same("AddV2", Op::Binary(B::Add)),
        same("Sub", Op::Binary(B::Sub)),
        same("Mul", Op::Binary(B::Mul)),
        same("RealDiv", Op::Binary(B::Div)),
        same("Div", Op::Binary(B::Div)),
        same("FloorDiv", Op::Binary(B::FloorDiv)),
        same("FloorMod", Op::Binary(B::FloorMod)),
        same("Maximum", Op::Binary(B::Maximum)),
        same("Minimum", Op::Binary(B::Minimum)),
        same("Pow", Op::Binary(B::Pow)),
        same("SquaredDifference", Op::Binary(B::SquaredDifference)),
        same("Equal", Op::Binary(B::Equal)),
        same("NotEqual", Op::Binary(B::NotEqual)),
        same("Less", Op::Binary(B::Less)),
        same("LessEqual", Op::Binary(B::LessEqual)),
        same("Greater", Op::Binary(B::Greater)),
        same("GreaterEqual", Op::Binary(B::GreaterEqual)),
        same("LogicalAnd", Op::Binary(B::LogicalAnd)),
        same("LogicalOr", Op::Binary(B::LogicalOr)),
        same("LogicalNot", Op::Unary(U::LogicalNot)),
        same("Neg", Op::Unary(U::Neg)),
        same("Abs", Op::Unary(U::Abs)),
        same("Relu", Op::Unary(U::Relu)),
        same("Relu6", Op::Unary(U::Relu6)),
        same("Sigmoid", Op::Unary(U::Sigmoid)),
        same("Tanh", Op::Unary(U::Tanh)),
        same("Erf", Op::Unary(U::Erf)),
        same("Erfc", Op::Unary(U::Erfc)),
        same("Rsqrt", Op::Unary(U::Rsqrt)),
        same("Sqrt", Op::Unary(U::Sqrt)),
        same("Exp", Op::Unary(U::Exp)),
        same("Log", Op::Unary(U::Log)),
        same("Square", Op::Unary(U::Square)),
        same("Reciprocal", Op::Unary(U::Reciprocal)),
        same("Inv", Op::Unary(U::Reciprocal)),
        same("Floor", Op::Unary(U::Floor)),
        same("Ceil", Op::Unary(U::Ceil)),
        same("Round", Op::Unary(U::Round)),
        same("Sign", Op::Unary(U::Sign)),
        same("Sin", Op::Unary(U::Sin)),
        same("Cos", Op::Unary(U::Cos)),
        same("Asin", Op::Unary(U::Asin)),
        same("Acos", Op::Unary(U::Acos)),
        same("Atan", Op::Unary(U::Atan)),
        same("Asinh", Op::Unary(U::Asinh)),
        same("Acosh", Op::Unary(U::Acosh)),
        same("Atanh", Op::Unary(U::Atanh)),
        same("Softplus", Op::Unary(U::Softplus)),
        same("Softsign", Op::Unary(U::Softsign)),
        attrs("Cast", "cast", |a| {
            Ok(Op::Cast {
                to: a.dtype("DstT")?,
            })
        }),
        same("SelectV2", Op::Select),
        custom("Select", &["select"], import_select_v1),
        // ---- linalg
        attrs("MatMul", "matmul", matmul),
        attrs("BatchMatMul", "batch_matmul", batch_matmul),
        attrs("BatchMatMulV2", "batch_matmul", batch_matmul),
        attrs("BatchMatMulV3", "batch_matmul", batch_matmul),
        attrs("Einsum", "einsum", |a| {
            Ok(Op::Einsum {
                equation: a.str("equation")?,
            })
        }),
        attrs("BiasAdd", "bias_add", bias_add),
        attrs("BiasAddV1", "bias_add", bias_add),
        // ---- conv
        attrs("Conv2D", "conv2d", |a| Ok(Op::Conv2D(conv(a)?))),
        attrs("DepthwiseConv2dNative", "depthwise_conv2d", |a| {
            Ok(Op::DepthwiseConv2D(conv(a)?))
        }),
        attrs("MaxPool", "max_pool", |a| Ok(Op::MaxPool(pool(a)?))),
        attrs("AvgPool", "avg_pool", |a| Ok(Op::AvgPool(pool(a)?))),
        custom("FusedBatchNorm", &["fused_batch_norm"], import_batch_norm),
        custom("FusedBatchNormV2", &["fused_batch_norm"], import_batch_norm),
        custom("FusedBatchNormV3", &["fused_batch_norm"], import_batch_norm),
        // ---- reduce
        attrs("Sum", "reduce_sum", |a| reduce(a, ReduceKind::Sum)),
        attrs("Mean", "reduce_mean", |a| reduce(a, ReduceKind::Mean)),
        attrs("Max", "reduce_max", |a| reduce(a, ReduceKind::Max)),
        attrs("Min", "reduce_min", |a| reduce(a, ReduceKind::Min)),
        attrs("Prod", "reduce_prod", |a| reduce(a, ReduceKind::Prod)),
        same("Softmax", Op::Softmax),
        same("LogSoftmax", Op::LogSoftmax),
        attrs("ArgMax", "arg_max", |a| {
            Ok(Op::ArgMax {
                output: a.dtype_or("output_type", DType::I64)?,
            })
        }),
        // ---- shape
        same("Reshape", Op::Reshape),
        attrs("Squeeze", "squeeze", |a| {
            Ok(Op::Squeeze {
                axes: a.ints_or("squeeze_dims", &[])?,
            })
        }),
        same("ExpandDims", Op::ExpandDims),
        attrs("Pad", "pad", constant_pad),
        attrs("PadV2", "pad", constant_pad),
        attrs("MirrorPad", "pad", |a| {
            let mode = match a.str("mode")?.as_str() {
                "REFLECT" => PadMode::Reflect,
                "SYMMETRIC" => PadMode::Symmetric,
                other => return Err(format!("unknown MirrorPad mode `{other}`")),
            };
            Ok(Op::Pad { mode })
        }),
        same("ConcatV2", Op::Concat),
        custom("Concat", &["concat"], import_concat_v1),
        same("Transpose", Op::Transpose),
        attrs("Shape", "shape", |a| {
            Ok(Op::Shape {
                output: a.dtype_or("out_type", DType::I32)?,
            })
        }),
        attrs("StridedSlice", "strided_slice", |a| {
            Ok(Op::StridedSlice(StridedSliceAttrs {
                begin_mask: a.int_or("begin_mask", 0)?,
                end_mask: a.int_or("end_mask", 0)?,
                ellipsis_mask: a.int_or("ellipsis_mask", 0)?,
                new_axis_mask: a.int_or("new_axis_mask", 0)?,
                shrink_axis_mask: a.int_or("shrink_axis_mask", 0)?,
            }))
        }),
        same("Slice", Op::Slice),
        attrs("GatherV2", "gather", |a| {
            Ok(Op::Gather {
                batch_dims: a.int_or("batch_dims", 0)?,
            })
        }),
        custom("Gather", &["gather", "const"], import_gather_v1),
        attrs("Pack", "pack", |a| {
            Ok(Op::Pack {
                axis: a.int_or("axis", 0)?,
            })
        }),
        custom("Unpack", &["unpack"], import_unpack),
        custom("Split", &["slice", "const"], import_split),
        custom("ReverseV2", &["gather", "const"], import_reverse),
        custom("SplitV", &["slice", "const"], import_split_v),
        same("Fill", Op::Fill),
        same("Range", Op::Range),
        same("Tile", Op::Tile),
        custom("While", &["while"], cf::import_while),
        custom("StatelessWhile", &["while"], cf::import_while),
        custom("If", &["if", "not_equal", "const"], cf::import_if),
        custom("StatelessIf", &["if", "not_equal", "const"], cf::import_if),
        custom("Case", &["if", "equal", "const"], cf::import_case),
        custom("StatelessCase", &["if", "equal", "const"], cf::import_case),
        custom(
            "TensorListReserve",
            &["list_reserve"],
            cf::import_list_reserve,
        ),
        custom(
            "TensorListFromTensor",
            &["identity"],
            cf::import_list_identity,
        ),
        custom("TensorListStack", &["identity"], cf::import_list_identity),
        custom(
            "TensorListGetItem",
            &["gather", "const"],
            cf::import_list_get,
        ),
        same("TensorListSetItem", Op::SetItem),
        custom(
            "TensorListLength",
            &["gather", "shape", "const"],
            cf::import_list_length,
        ),
    ]
}

/// Imports one node, returning the IR value of each of its outputs.
pub(super) fn convert(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let (rows, by_name) = index();
    let Some(&i) = by_name.get(node.op.as_str()) else {
        return Err(IrError::Graph(format!(
            "unsupported TensorFlow op `{}` (Lathe imports {} TensorFlow ops; `lathe ops` lists \
             them)",
            node.op,
            rows.len()
        )));
    };
    let op = match &rows[i].convert {
        Convert::Op(op) => op.clone(),
        Convert::Attrs(f) => f(&Attrs(node)).map_err(IrError::Graph)?,
        Convert::Custom(f) => return f(imp, node, inputs),
    };
    let v = imp.graph.add(op, inputs, node.name.clone())?;
    Ok(vec![Some(v)])
}

/// The tensor a `Const` node holds (its `value` attribute).
pub(super) fn const_value(node: &NodeDef) -> Result<Tensor, String> {
    tensor::tensor(Attrs(node).tensor("value")?)
}

/// A constant, converted while its file was read if it was (see [`Importer::take_const`]).
fn import_const(imp: &mut Importer, node: &NodeDef, _: Vec<ValueId>) -> Outputs {
    let t = match imp.take_const(&node.name) {
        Some(converted) => converted,
        None => const_value(node),
    }
    .map_err(IrError::Graph)?;
    Ok(vec![Some(imp.graph.add_const(t, node.name.clone()))])
}

fn import_noop(imp: &mut Importer, node: &NodeDef, _: Vec<ValueId>) -> Outputs {
    imp.graph.add_node(Op::NoOp, vec![], node.name.clone())?;
    Ok(vec![])
}

/// One output per input.
fn import_identity_n(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let n = inputs.len();
    let id = imp
        .graph
        .add_node(Op::IdentityN, inputs, node.name.clone())?;
    Ok(outputs_of(id, n))
}

/// One value per output of `node`, which has `n`.
pub(super) fn outputs_of(node: lathe_ir::NodeId, n: usize) -> Vec<Option<ValueId>> {
    (0..n)
        .map(|k| {
            Some(ValueId {
                node,
                output: k as u32,
            })
        })
        .collect()
}

/// Select (v1) picks whole rows when the condition is a vector; SelectV2 broadcasts.
fn import_select_v1(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let g = &imp.graph;
    if inputs.len() == 3 && g.value_type(inputs[0]).rank() != g.value_type(inputs[1]).rank() {
        return Err(IrError::Graph(
            "Select with a condition of lower rank than its operands (row selection) is not \
             supported; use SelectV2"
                .into(),
        ));
    }
    let v = imp.graph.add(Op::Select, inputs, node.name.clone())?;
    Ok(vec![Some(v)])
}

/// Inference batch norm; outputs 1.. are batch statistics and training scratch space.
fn import_batch_norm(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let a = Attrs(node);
    let m = IrError::Graph;
    if a.bool_or("is_training", true).map_err(m)? {
        return Err(m(
            "batch norm in training mode (is_training=true) is not supported; \
                      export the model for inference"
                .into(),
        ));
    }
    let bn = Op::FusedBatchNorm {
        epsilon: a.float_or("epsilon", 1e-4).map_err(m)?,
        format: a.data_format().map_err(m)?,
    };
    let y = imp.graph.add(bn, inputs, node.name.clone())?;
    let n_out = if node.op == "FusedBatchNormV3" { 6 } else { 5 };
    let mut outs = vec![Some(y)];
    outs.resize(n_out, None);
    Ok(outs)
}

/// Concat (v1) takes the axis first; the IR takes it last, as ConcatV2 does.
fn import_concat_v1(imp: &mut Importer, node: &NodeDef, mut inputs: Vec<ValueId>) -> Outputs {
    if !inputs.is_empty() {
        let axis = inputs.remove(0);
        inputs.push(axis);
    }
    let v = imp.graph.add(Op::Concat, inputs, node.name.clone())?;
    Ok(vec![Some(v)])
}

/// Gather (v1) always gathers along axis 0.
fn import_gather_v1(imp: &mut Importer, node: &NodeDef, mut inputs: Vec<ValueId>) -> Outputs {
    let name = &node.name;
    let axis = imp
        .graph
        .add_const(Tensor::scalar(0i32), format!("{name}/axis"));
    inputs.push(axis);
    let op = Op::Gather { batch_dims: 0 };
    let v = imp.graph.add(op, inputs, name.clone())?;
    Ok(vec![Some(v)])
}

fn import_unpack(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let a = Attrs(node);
    let m = IrError::Graph;
    let num = a.int("num").map_err(m)?;
    let num = usize::try_from(num).map_err(|_| m(format!("invalid num {num}")))?;
    let op = Op::Unpack {
        axis: a.int_or("axis", 0).map_err(m)?,
        num,
    };
    let id = imp.graph.add_node(op, inputs, node.name.clone())?;
    Ok(outputs_of(id, num))
}

/// `Split(axis, value)`: `num_split` equal slices along `axis` (a constant).
fn import_split(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let m = IrError::Graph;
    let [axis, x] = inputs[..] else {
        return Err(m("Split takes an axis and a value".into()));
    };
    let n = Attrs(node).int("num_split").map_err(m)?;
    let (axis, len) = split_axis(imp, axis, x)?;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n > 0 && len % n == 0)
        .ok_or_else(|| {
            m(format!(
                "num_split {n} does not divide the axis' {len} elements"
            ))
        })?;
    slices(imp, node, x, axis, &vec![len / n; n])
}

/// `SplitV(value, size_splits, axis)`: slices of the given sizes (one may be -1) along `axis`.
fn import_split_v(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let m = IrError::Graph;
    let [x, sizes, axis] = inputs[..] else {
        return Err(m("SplitV takes a value, sizes and an axis".into()));
    };
    let (axis, len) = split_axis(imp, axis, x)?;
    let sizes = const_ints(imp, sizes, "SplitV sizes")?;
    // At most one size is -1: what the others leave (sizes come from the file: no overflow).
    let given = sizes.iter().filter(|&&s| s != -1);
    let known = given
        .clone()
        .try_fold(0i64, |acc, &s| acc.checked_add(s).filter(|_| s >= 0));
    let rest = known.map(|k| len as i64 - k);
    let sizes: Vec<usize> = match (sizes.iter().filter(|&&s| s == -1).count(), rest) {
        (n, Some(rest)) if n <= 1 && rest >= 0 => sizes
            .iter()
            .map(|&s| if s == -1 { rest as usize } else { s as usize })
            .collect(),
        _ => return Err(m(format!("bad split sizes {sizes:?} for {len} elements"))),
    };
    if sizes.iter().sum::<usize>() != len {
        return Err(m(format!("split sizes {sizes:?} do not add up to {len}")));
    }
    slices(imp, node, x, axis, &sizes)
}

/// The integers of `v`, which must be a constant (`what` names it in the error).
fn const_ints(imp: &Importer, v: ValueId, what: &str) -> Result<Vec<i64>, IrError> {
    imp.graph
        .const_value(v)
        .ok_or_else(|| IrError::Graph(format!("{what} must be a constant")))?
        .to_i64_vec()
        .map_err(IrError::Graph)
}

/// The axis of a split (a constant, normalized) and the length of `x` along it (known).
fn split_axis(imp: &Importer, axis: ValueId, x: ValueId) -> Result<(usize, usize), IrError> {
    let m = IrError::Graph;
    let a = const_ints(imp, axis, "the split axis")?;
    let ty = imp.graph.value_type(x);
    let [a] = a[..] else {
        return Err(m("the split axis must be a scalar".into()));
    };
    let axis = lathe_ir::ops::common::normalize_axis(a, ty.rank()).map_err(m)?;
    let len = ty.shape.dims()[axis]
        .known()
        .ok_or_else(|| m(format!("the split axis of {ty} must have a known size")))?;
    Ok((axis, len))
}

/// `ReverseV2(x, axes)`: a gather of each reversed axis' indices in reverse order (the axes'
/// sizes must be known).
fn import_reverse(imp: &mut Importer, node: &NodeDef, inputs: Vec<ValueId>) -> Outputs {
    let m = IrError::Graph;
    let [mut x, axes] = inputs[..] else {
        return Err(m("ReverseV2 takes a value and axes".into()));
    };
    let axes = const_ints(imp, axes, "ReverseV2 axes")?;
    let name = &node.name;
    if axes.is_empty() {
        return Ok(vec![Some(imp.graph.add(
            Op::Identity,
            vec![x],
            name.clone(),
        )?)]);
    }
    for (k, &a) in axes.iter().enumerate() {
        let ty = imp.graph.value_type(x);
        let axis = lathe_ir::ops::common::normalize_axis(a, ty.rank()).map_err(m)?;
        let len = ty.shape.dims()[axis].known().ok_or_else(|| {
            m(format!(
                "the reversed axis {axis} of {ty} must have a known size"
            ))
        })?;
        let idx: Vec<i64> = (0..len as i64).rev().collect();
        let i = imp.graph.add_const(
            Tensor::from_i64(DType::I64, &[len], &idx),
            format!("{name}/indices_{k}"),
        );
        let ax = imp
            .graph
            .add_const(Tensor::scalar(axis as i32), format!("{name}/axis_{k}"));
        let out = if k + 1 == axes.len() {
            name.clone()
        } else {
            format!("{name}/{k}")
        };
        x = imp
            .graph
            .add(Op::Gather { batch_dims: 0 }, vec![x, i, ax], out)?;
    }
    Ok(vec![Some(x)])
}

/// One `slice` of `x` per size, consecutive along `axis`.
fn slices(imp: &mut Importer, node: &NodeDef, x: ValueId, axis: usize, sizes: &[usize]) -> Outputs {
    let rank = imp.graph.value_type(x).rank();
    let name = &node.name;
    let mut outs = Vec::with_capacity(sizes.len());
    let mut at = 0i64;
    for (k, &size) in sizes.iter().enumerate() {
        let mut begin = vec![0i64; rank];
        let mut len = vec![-1i64; rank];
        begin[axis] = at;
        len[axis] = size as i64;
        let b = imp.graph.add_const(
            Tensor::from_i64(DType::I64, &[rank], &begin),
            format!("{name}/begin_{k}"),
        );
        let l = imp.graph.add_const(
            Tensor::from_i64(DType::I64, &[rank], &len),
            format!("{name}/size_{k}"),
        );
        let out_name = if k == 0 {
            name.clone()
        } else {
            format!("{name}:{k}")
        };
        outs.push(Some(imp.graph.add(Op::Slice, vec![x, b, l], out_name)?));
        at += size as i64;
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_row_names_ir_ops_that_exist() {
        for r in table() {
            assert!(!r.ir.is_empty(), "{} names no IR op", r.name);
            for m in &r.ir {
                assert!(
                    lathe_ir::ops::decl::lookup(m).is_some(),
                    "{} imports to `{m}`, which is not an IR op",
                    r.name
                );
            }
            if let Convert::Op(op) = &r.convert {
                assert_eq!(r.ir, vec![op.mnemonic()]);
            }
        }
    }

    #[test]
    fn supported_ops_are_the_table_rows_once_each() {
        let names: Vec<&str> = table().iter().map(|r| r.name).collect();
        assert_eq!(supported_ops(), names);
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a TensorFlow op has two rows");
        assert!(names.contains(&"Conv2D") && names.contains(&"Softsign"));
    }

    /// `x: f32[6]` split by SplitV with `sizes` along axis 0.
    fn split_v(sizes: &[i32]) -> Result<lathe_ir::Graph, crate::import::ImportError> {
        use lathe_proto::tensorflow::tensor_shape_proto::Dim;
        use lathe_proto::tensorflow::{
            attr_value::Value, AttrValue, GraphDef, TensorProto, TensorShapeProto,
        };
        let attr = |v| AttrValue { value: Some(v) };
        let node = |name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, Value)>| NodeDef {
            name: name.into(),
            op: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            attr: attrs
                .into_iter()
                .map(|(k, v)| (k.to_string(), attr(v)))
                .collect(),
            ..Default::default()
        };
        let shape = |dims: &[i64]| TensorShapeProto {
            dim: dims
                .iter()
                .map(|&size| Dim {
                    size,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let ints = |v: &[i32], dims: &[i64]| {
            Value::Tensor(TensorProto {
                dtype: 3,
                tensor_shape: Some(shape(dims)),
                int_val: v.to_vec(),
                ..Default::default()
            })
        };
        let gd = GraphDef {
            node: vec![
                node(
                    "x",
                    "Placeholder",
                    &[],
                    vec![
                        ("dtype", Value::Type(1)),
                        ("shape", Value::Shape(shape(&[6]))),
                    ],
                ),
                node(
                    "sizes",
                    "Const",
                    &[],
                    vec![
                        ("dtype", Value::Type(3)),
                        ("value", ints(sizes, &[sizes.len() as i64])),
                    ],
                ),
                node(
                    "axis",
                    "Const",
                    &[],
                    vec![("dtype", Value::Type(3)), ("value", ints(&[0], &[]))],
                ),
                node("split", "SplitV", &["x", "sizes", "axis"], vec![]),
            ],
            ..Default::default()
        };
        super::super::import_graph_def(&gd, std::path::Path::new("split.pb"))
    }

    #[test]
    fn split_v_fills_one_minus_one_and_refuses_bad_sizes() {
        let g = split_v(&[1, -1, 2]).unwrap();
        let x = Tensor::from_vec(&[6], vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let out = lathe_ir::interp::run(&g, &[x]).unwrap();
        let got: Vec<Vec<f64>> = out.iter().map(Tensor::to_f64_vec).collect();
        assert_eq!(got, [vec![0.0], vec![1.0, 2.0, 3.0], vec![4.0, 5.0]]);
        for bad in [
            &[-1, -1, 2][..],
            &[4, 4],
            &[i32::MAX, i32::MAX, -1],
            &[-3, 9],
        ] {
            let e = split_v(bad).unwrap_err().to_string();
            assert!(
                e.contains("node `split` (op SplitV)") && e.contains("split sizes"),
                "{bad:?}: {e}"
            );
        }
    }
}
