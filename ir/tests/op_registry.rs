//! Tests of the op declaration table, driven by `ops::registry()` so that a new op is covered
//! as soon as it is declared: the table is well formed, every op's attributes round-trip
//! through `Op::attrs`/`Op::from_parts`, every op round-trips through the text format in a
//! verified graph, and `infer` accepts exactly the dtypes the table declares.
//!
//! Each op needs example operands (shapes, configuration constants); ops of one sub-enum share
//! their family's example, so a new unary or binary op needs nothing here.

use lathe_ir::ops::{
    registry, Arity, AttrKind, AttrValue, BinaryOp, CumulativeKind, DTypeClass, OpInfo, ReduceKind,
    UnaryOp,
};
use lathe_ir::text::{parse, print};
use lathe_ir::{DType, Graph, Op, Tensor, TensorType, ValueId};
use std::collections::HashSet;

/// A fixed attribute value of each kind that the examples below are valid with.
fn example_attr(kind: AttrKind) -> AttrValue {
    match kind {
        AttrKind::Bool => AttrValue::Bool(false),
        AttrKind::Int => AttrValue::Int(0),
        AttrKind::Count => AttrValue::Int(2),
        AttrKind::Ints => AttrValue::Ints(vec![]),
        AttrKind::Pair => AttrValue::Ints(vec![1, 1]),
        AttrKind::Float => AttrValue::Float(1e-3),
        // Einsum's equation.
        AttrKind::Str => AttrValue::Str("ij,jk->ik".into()),
        AttrKind::DType => AttrValue::DType(DType::I64),
        AttrKind::Padding => AttrValue::Str("VALID".into()),
        AttrKind::DataFormat => AttrValue::Str("NHWC".into()),
        AttrKind::PadMode => AttrValue::Str("constant".into()),
        AttrKind::ScatterReduction => AttrValue::Str("add".into()),
        AttrKind::SampleMode => AttrValue::Str("linear".into()),
        AttrKind::SamplePadding => AttrValue::Str("zeros".into()),
        AttrKind::Graph => unreachable!("ops with regions are not built from examples"),
    }
}

/// The op `info` declares, built from example attribute values.
fn example_op(info: &OpInfo) -> Op {
    let attrs: Vec<(String, AttrValue)> = info
        .attrs
        .iter()
        .map(|a| (a.name.to_string(), example_attr(a.kind)))
        .collect();
    Op::from_parts(info.name, &attrs).unwrap_or_else(|e| panic!("{}: {e}", info.name))
}

/// One example operand: a graph input of some type, or a constant.
#[derive(Clone)]
enum Arg {
    Ty(TensorType),
    Val(Tensor),
}

impl Arg {
    fn ty(&self) -> TensorType {
        match self {
            Arg::Ty(t) => t.clone(),
            Arg::Val(v) => v.ty(),
        }
    }

    fn with_dtype(&self, d: DType) -> Arg {
        match self {
            Arg::Ty(t) => Arg::Ty(TensorType::new(d, t.shape.clone())),
            Arg::Val(v) => Arg::Val(v.cast(d)),
        }
    }
}

fn f32s(dims: &[usize]) -> Arg {
    Arg::Ty(TensorType::known(DType::F32, dims))
}

fn ints(dims: &[usize], v: &[i64]) -> Arg {
    Arg::Val(Tensor::from_i64(DType::I32, dims, v))
}

fn floats(dims: &[usize], v: &[f64]) -> Arg {
    Arg::Val(Tensor::from_f64(DType::F32, dims, v))
}

/// Valid operands of each op (with the attributes of [`example_attr`]); `None` for an op
/// without an example, which the tests report.
fn example_args(name: &str) -> Option<Vec<Arg>> {
    let x = || f32s(&[2, 3]);
    if UnaryOp::from_mnemonic(name).is_some() {
        return Some(vec![x()]);
    }
    if BinaryOp::from_mnemonic(name).is_some() {
        return Some(vec![x(), x()]);
    }
    if ReduceKind::from_mnemonic(name).is_some() {
        return Some(vec![x(), ints(&[1], &[1])]);
    }
    if CumulativeKind::from_mnemonic(name).is_some() {
        return Some(vec![x(), ints(&[], &[1])]);
    }
    Some(match name {
        "identity" | "stop_gradient" | "noop" | "cast" | "cast_unsaturated" | "softmax"
        | "log_softmax" | "shape" | "unpack" => vec![x()],
        "identity_n" => vec![x(), ints(&[2], &[1, 2])],
        "select" => vec![Arg::Ty(TensorType::known(DType::Bool, &[2, 3])), x(), x()],
        "matmul" | "einsum" => vec![x(), f32s(&[3, 4])],
        "batch_matmul" => vec![f32s(&[2, 2, 3]), f32s(&[2, 3, 4])],
        "matmul_integer" => vec![x(), f32s(&[3, 4]), f32s(&[2]), f32s(&[])],
        "bias_add" => vec![x(), f32s(&[3])],
        "det" => vec![f32s(&[2, 3, 3])],
        "grid_sample" => vec![f32s(&[1, 2, 4, 4]), f32s(&[1, 3, 3, 2])],
        "roi_align" => vec![f32s(&[1, 2, 4, 4]), f32s(&[3, 4]), ints(&[3], &[0, 0, 0])],
        // With the example's empty lists: no spatial axis, one block position.
        "col2im" => vec![f32s(&[2, 3, 1])],
        "bitcast" => vec![f32s(&[2, 8])],
        "dft" => vec![f32s(&[3, 4, 2])],
        "conv2d" => vec![f32s(&[1, 4, 4, 2]), f32s(&[3, 3, 2, 4])],
        "depthwise_conv2d" => vec![f32s(&[1, 4, 4, 2]), f32s(&[3, 3, 2, 1])],
        "conv2d_integer" => vec![
            f32s(&[1, 4, 4, 2]),
            f32s(&[3, 3, 2, 4]),
            f32s(&[]),
            f32s(&[4]),
        ],
        "max_pool" | "avg_pool" => vec![f32s(&[1, 4, 4, 2])],
        "fused_batch_norm" => {
            let c = || f32s(&[3]);
            vec![f32s(&[1, 2, 2, 3]), c(), c(), c(), c()]
        }
        "arg_max" => vec![x(), ints(&[], &[1])],
        "reshape" => vec![x(), ints(&[2], &[3, 2])],
        "squeeze" => vec![f32s(&[1, 3])],
        "expand_dims" => vec![x(), ints(&[], &[0])],
        "pad" => vec![x(), ints(&[2, 2], &[1, 1, 0, 0]), floats(&[], &[0.0])],
        "concat" => vec![x(), x(), ints(&[], &[0])],
        "transpose" => vec![x(), ints(&[2], &[1, 0])],
        "strided_slice" => vec![x(), ints(&[1], &[0]), ints(&[1], &[1]), ints(&[1], &[1])],
        "slice" => vec![x(), ints(&[2], &[0, 0]), ints(&[2], &[1, 2])],
        "gather" => vec![x(), ints(&[2], &[1, 0]), ints(&[], &[0])],
        "gather_elements" => vec![x(), ints(&[1, 3], &[1, 0, -1])],
        // batch_dims is 2 (the example count).
        "gather_nd" => vec![f32s(&[2, 2, 3]), ints(&[2, 2, 1], &[0, 1, 2, 0])],
        "scatter_elements" => vec![x(), ints(&[1, 2], &[1, 0]), f32s(&[1, 2])],
        "scatter_nd" => vec![x(), ints(&[1, 1], &[1]), f32s(&[1, 3])],
        "trilu" => vec![x(), ints(&[], &[1])],
        "top_k" => vec![x(), ints(&[1], &[2])],
        "pack" => vec![x(), x()],
        "fill" => vec![ints(&[2], &[2, 3]), floats(&[], &[1.0])],
        "range" => vec![
            floats(&[], &[0.0]),
            floats(&[], &[4.0]),
            floats(&[], &[1.0]),
        ],
        "tile" => vec![x(), ints(&[2], &[1, 2])],
        "list_reserve" => vec![ints(&[2], &[2, 3]), ints(&[], &[4])],
        "set_item" => vec![x(), ints(&[], &[1]), f32s(&[3])],
        _ => return None,
    })
}

/// `args` with each operand's dtype moved into its declared class (bool for `logical_not`,
/// i32 for an integer-only op), keeping the f32 of the examples where the class allows it.
fn fit(info: &OpInfo, args: Vec<Arg>) -> Vec<Arg> {
    let bound = info
        .bind(args.len())
        .expect("the example fits the operands");
    args.iter()
        .zip(bound)
        .map(|(a, o)| {
            let class = info.operand_class(o).expect("the_table_is_well_formed");
            if class.contains(a.ty().dtype) {
                a.clone()
            } else {
                a.with_dtype(class.dtypes()[0])
            }
        })
        .collect()
}

/// The example operands of a declared op, fitted to its dtype rule.
fn example(info: &OpInfo) -> Vec<Arg> {
    let args = example_args(info.name).expect("every_op_has_an_example");
    fit(info, args)
}

/// The ops the examples cover: every op but graph structure and ops with regions (fused
/// bodies, `if` and `while`, which `ops::control_flow` and the text format's tests cover).
fn example_ops() -> impl Iterator<Item = &'static OpInfo> {
    registry()
        .iter()
        .filter(|i| !i.structural && !i.attrs.iter().any(|a| a.kind == AttrKind::Graph))
}

fn types(args: &[Arg]) -> Vec<TensorType> {
    args.iter().map(Arg::ty).collect()
}

fn consts(args: &[Arg]) -> Vec<Option<&Tensor>> {
    args.iter()
        .map(|a| match a {
            Arg::Val(v) => Some(v),
            Arg::Ty(_) => None,
        })
        .collect()
}

#[test]
fn the_table_is_well_formed() {
    let mut names = HashSet::new();
    for info in registry() {
        assert!(names.insert(info.name), "{} is declared twice", info.name);
        assert!(
            !info.summary.is_empty() && !info.summary.contains('\n'),
            "{}: the summary must be one line",
            info.name
        );
        let variadic = info
            .operands
            .iter()
            .filter(|o| o.arity == Arity::Variadic)
            .count();
        assert!(variadic <= 1, "{}: two variadic operands", info.name);
        for (k, o) in info.operands.iter().enumerate() {
            assert!(
                info.operand_class(o).is_some(),
                "{}: operand `{}` has type `{}`, which is neither a type variable of the op \
                 nor a dtype class",
                info.name,
                o.name,
                o.ty
            );
            if o.arity == Arity::Optional {
                assert_eq!(
                    k + 1,
                    info.operands.len(),
                    "{}: optional not last",
                    info.name
                );
            }
        }
        for (var, _) in &info.type_vars {
            assert!(
                info.operands.iter().any(|o| o.ty == *var),
                "{}: type variable {var} is not used",
                info.name
            );
        }
    }
    // Every variant of every sub-enum is an op of its own.
    let subs = UnaryOp::ALL
        .iter()
        .map(|u| u.mnemonic())
        .chain(BinaryOp::ALL.iter().map(|b| b.mnemonic()))
        .chain(ReduceKind::ALL.iter().map(|k| k.mnemonic()))
        .chain(CumulativeKind::ALL.iter().map(|k| k.mnemonic()));
    for m in subs {
        assert!(names.contains(m), "{m} is not in the registry");
    }
}

#[test]
fn every_op_has_an_example() {
    let missing: Vec<&str> = example_ops()
        .filter(|i| example_args(i.name).is_none())
        .map(|i| i.name)
        .collect();
    assert!(
        missing.is_empty(),
        "no example operands in ir/tests/op_registry.rs for {missing:?}"
    );
}

#[test]
fn attributes_round_trip_for_every_op() {
    for info in example_ops() {
        let op = example_op(info);
        assert_eq!(op.mnemonic(), info.name);
        assert_eq!(op.info(), info);
        let attrs: Vec<(String, AttrValue)> = op
            .attrs()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        let declared: Vec<&str> = info.attrs.iter().map(|a| a.name).collect();
        let printed: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            printed, declared,
            "{}: attrs() disagrees with the table",
            info.name
        );
        assert_eq!(Op::from_parts(info.name, &attrs).unwrap(), op);
        // A missing or unknown attribute is an error naming it.
        if let Some((name, _)) = attrs.first() {
            let e = Op::from_parts(info.name, &attrs[1..]).unwrap_err();
            assert!(e.contains(&format!("missing attribute `{name}`")), "{e}");
        }
        let mut extra = attrs.clone();
        extra.push(("bogus".into(), AttrValue::Int(1)));
        let e = Op::from_parts(info.name, &extra).unwrap_err();
        assert!(e.contains("unknown attribute `bogus`"), "{e}");
    }
}

/// A verified graph of one `op` node on `args` (inputs and constants), all results returned.
fn one_node_graph(op: Op, args: &[Arg]) -> Graph {
    let mut g = Graph::new("one_op");
    let mut inputs = Vec::new();
    for (k, a) in args.iter().enumerate() {
        inputs.push(match a {
            Arg::Ty(t) => g.add_input(format!("x{k}"), t.clone()),
            Arg::Val(v) => g.add_const(v.clone(), format!("c{k}")),
        });
    }
    let name = op.mnemonic().to_string();
    let id = g
        .add_node(op, inputs, name.clone())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for k in 0..g.node(id).outputs.len() {
        let v = ValueId {
            node: id,
            output: k as u32,
        };
        g.add_output(format!("out{k}"), v).unwrap();
    }
    g
}

#[test]
fn every_op_round_trips_through_the_text_format() {
    for info in example_ops() {
        let args = example(info);
        let g = one_node_graph(example_op(info), &args);
        lathe_ir::verify(&g).unwrap_or_else(|e| panic!("{}: {e}", info.name));
        let text = print(&g);
        let back = parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", info.name));
        assert_eq!(back, g, "{}:\n{text}", info.name);
        assert_eq!(print(&back), text);
    }
}

/// For every op, every type variable (or independently typed operand) and every dtype: `infer`
/// accepts the example with those operands in that dtype exactly when the table does.
#[test]
fn infer_accepts_exactly_the_declared_dtypes() {
    let mut disagreements = Vec::new();
    for info in example_ops() {
        let op = example_op(info);
        let args = example(info);
        op.infer(&types(&args), &consts(&args))
            .unwrap_or_else(|e| panic!("{}: the example does not type: {e}", info.name));
        let bound = info
            .bind(args.len())
            .expect("the example fits the operands");
        // Groups of operand positions that share a dtype, with the class they range over.
        let mut groups: Vec<(String, Vec<usize>, DTypeClass)> = Vec::new();
        for (var, class) in &info.type_vars {
            let at: Vec<usize> = (0..args.len()).filter(|&i| bound[i].ty == *var).collect();
            groups.push((var.to_string(), at, *class));
        }
        for (i, o) in bound.iter().enumerate() {
            if info.type_var(o).is_none() {
                let class = info.operand_class(o).unwrap();
                groups.push((o.name.to_string(), vec![i], class));
            }
        }
        for (what, at, class) in &groups {
            for d in DType::ALL {
                let mut varied = args.clone();
                for &i in at {
                    varied[i] = args[i].with_dtype(d);
                }
                let got = op.infer(&types(&varied), &consts(&varied));
                if got.is_ok() != class.contains(d) {
                    disagreements.push(format!(
                        "{} with {what} = {d}: table says {}, infer says {:?}",
                        info.name,
                        class.name(),
                        got.map(|_| "ok")
                    ));
                }
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
