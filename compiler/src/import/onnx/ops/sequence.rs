//! ONNX's sequence and optional ops, on the importer's sequences of static length
//! (`items.rs`): most only rearrange IR values while importing and add no IR op at all.
//! Positions (`SequenceAt`, `SequenceInsert`, `SequenceErase`) and `SplitToSequence`'s
//! `split` must be known while importing; `SequenceLength` and `OptionalHasElement` are
//! constants. `ConcatFromSequence` is a `concat` (a `pack` for `new_axis`),
//! `SplitToSequence` a `slice` per piece, `SequenceMap` its body imported once per element.

use super::super::items::elem_dtype;
use super::super::unroll::inline_body;
use super::super::{Builder, Item, NodeCx, Sequence};
use super::shape::split_pieces;
use super::{item_row, norm_axis, OnnxOp};
use lathe_ir::{DType, Op, Tensor, ValueId};

type Out = Result<Vec<Item>, String>;

/// The most elements a sequence the importer makes may have (each is an IR value).
const MAX_ELEMENTS: usize = 4096;

/// The sequence and optional rows of the table.
pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        item_row("SequenceEmpty", &["identity"], |_, cx| {
            let dtype = match cx.attrs.has("dtype") {
                true => cx.attrs.dtype("dtype")?,
                false => DType::F32,
            };
            sequence(Vec::new(), dtype)
        }),
        item_row("SequenceConstruct", &["identity"], |b, cx| {
            let elems = (0..cx.inputs.len())
                .map(|i| cx.input(i))
                .collect::<Result<Vec<_>, _>>()?;
            let first = elems.first().ok_or("it needs at least one input")?;
            let dtype = b.dtype(*first);
            for &e in &elems {
                same_dtype(b, dtype, e)?;
            }
            sequence(elems, dtype)
        }),
        item_row("SequenceAt", &["identity"], |b, cx| {
            let s = b.sequence_input(cx, 0)?;
            let k = position(b, cx, 1, s.elems.len(), false)?;
            Ok(vec![Item::Tensor(s.elems[k])])
        }),
        item_row("SequenceInsert", &["identity"], |b, cx| {
            let mut s = b.sequence_input(cx, 0)?;
            let t = cx.input(1)?;
            same_dtype(b, s.dtype, t)?;
            let k = match cx.opt(2) {
                Some(_) => position(b, cx, 2, s.elems.len(), true)?,
                None => s.elems.len(),
            };
            if s.elems.len() >= MAX_ELEMENTS {
                return Err(format!(
                    "a sequence of more than {MAX_ELEMENTS} elements is not supported"
                ));
            }
            s.elems.insert(k, t);
            Ok(vec![Item::Sequence(s)])
        }),
        item_row("SequenceErase", &["identity"], |b, cx| {
            let mut s = b.sequence_input(cx, 0)?;
            let k = match cx.node.input.get(1).is_some_and(|n| !n.is_empty()) {
                true => position(b, cx, 1, s.elems.len(), false)?,
                false => s
                    .elems
                    .len()
                    .checked_sub(1)
                    .ok_or("erasing from an empty sequence")?,
            };
            s.elems.remove(k);
            Ok(vec![Item::Sequence(s)])
        }),
        item_row("SequenceLength", &["const"], |b, cx| {
            let s = b.sequence_input(cx, 0)?;
            let n = b.i64_scalar(s.elems.len() as i64);
            Ok(vec![Item::Tensor(n)])
        }),
        item_row(
            "ConcatFromSequence",
            &["concat", "pack"],
            import_concat_from_sequence,
        ),
        item_row("SplitToSequence", &["slice", "squeeze"], import_split),
        item_row("SequenceMap", &["identity"], import_sequence_map),
        item_row("Optional", &["identity"], |b, cx| {
            let held = match cx.node.input.first().filter(|n| !n.is_empty()) {
                Some(_) => Some(Box::new(b.item_input(cx, 0)?)),
                None => None,
            };
            Ok(vec![Item::Optional(held)])
        }),
        item_row("OptionalHasElement", &["const"], |b, cx| {
            // No input is an empty optional; a tensor or a sequence is one that holds it.
            let has = match cx.node.input.first().filter(|n| !n.is_empty()) {
                None => false,
                Some(_) => !matches!(b.item_input(cx, 0)?, Item::Optional(None)),
            };
            let t = b.konst(Tensor::scalar(has));
            Ok(vec![Item::Tensor(t)])
        }),
        item_row("OptionalGetElement", &["identity"], |b, cx| {
            match b.item_input(cx, 0)? {
                Item::Optional(None) => {
                    Err("its input is an empty optional, which holds no element".into())
                }
                Item::Optional(Some(held)) => Ok(vec![*held]),
                item => Ok(vec![item]),
            }
        }),
    ]
}

/// One sequence output.
fn sequence(elems: Vec<ValueId>, dtype: DType) -> Out {
    Ok(vec![Item::Sequence(Sequence { elems, dtype })])
}

/// An error unless `v` is of `dtype` (a sequence's elements share one).
fn same_dtype(b: &Builder, dtype: DType, v: ValueId) -> Result<(), String> {
    match b.dtype(v) {
        d if d == dtype => Ok(()),
        d => Err(format!(
            "a sequence of {dtype} elements cannot hold a {d} tensor"
        )),
    }
}

/// Input `i`, a position in a sequence of `len` elements, which must be known while
/// importing: `[-len, len)`, or `[-len, len]` where it may be one past the end (`insert`).
fn position(b: &Builder, cx: &NodeCx, i: usize, len: usize, insert: bool) -> Result<usize, String> {
    let p = b.int_of(cx.input(i)?, "the `position` input", "")?;
    let n = len as i64;
    let end = if insert { n } else { n - 1 };
    if p < -n || p > end {
        return Err(format!(
            "position {p} is out of range for a sequence of {len} elements"
        ));
    }
    Ok(if p < 0 { p + n } else { p } as usize)
}

/// `ConcatFromSequence`: the elements concatenated along `axis`, or stacked along a new
/// axis `axis` (`new_axis = 1`).
fn import_concat_from_sequence(b: &mut Builder, cx: &NodeCx) -> Out {
    let s = b.sequence_input(cx, 0)?;
    let axis = cx.attrs.int("axis")?;
    let new_axis = match cx.attrs.int_or("new_axis", 0)? {
        0 => false,
        1 => true,
        n => return Err(format!("`new_axis` must be 0 or 1, got {n}")),
    };
    let first = *s
        .elems
        .first()
        .ok_or("concatenating an empty sequence is not supported (its result has no shape)")?;
    let rank = b.rank(first) + usize::from(new_axis);
    let axis = norm_axis(axis, rank)? as i64;
    if new_axis {
        return Ok(vec![Item::Tensor(b.op(Op::Pack { axis }, &s.elems)?)]);
    }
    let mut parts = s.elems;
    parts.push(b.i64_scalar(axis));
    Ok(vec![Item::Tensor(b.op(Op::Concat, &parts)?)])
}

/// `SplitToSequence`: pieces of `split` sizes (a scalar: that size, the last piece smaller),
/// or of one each, squeezed when `keepdims = 0`. The axis's size must be known.
fn import_split(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let axis = norm_axis(cx.attrs.int_or("axis", 0)?, rank)?;
    let dim = b.ty(x).shape.0[axis]
        .known()
        .ok_or("splitting an axis of unknown size into a sequence is not supported")?;
    let dim = dim as i64;
    let (sizes, squeeze) = match cx.opt(1) {
        None => {
            let keepdims = cx.attrs.int_or("keepdims", 1)? != 0;
            (vec![1; dim as usize], !keepdims)
        }
        Some(v) => {
            let split = b.ints_of(v, "the `split` input")?;
            let sizes = if b.rank(v) == 0 {
                let each = split[0];
                if each <= 0 {
                    return Err(format!("split size {each} must be positive"));
                }
                (0..dim)
                    .step_by(each as usize)
                    .map(|start| each.min(dim - start))
                    .collect()
            } else {
                split
            };
            if sizes.iter().any(|&s| s < 0) || sizes.iter().sum::<i64>() != dim {
                return Err(format!(
                    "split sizes {sizes:?} do not add up to the axis's size {dim}"
                ));
            }
            (sizes, false)
        }
    };
    if sizes.len() > MAX_ELEMENTS {
        return Err(format!(
            "a sequence of {} elements is not supported (at most {MAX_ELEMENTS})",
            sizes.len()
        ));
    }
    let mut elems = split_pieces(b, x, axis, &sizes)?;
    if squeeze {
        for piece in &mut elems {
            let axes = vec![axis as i64];
            *piece = b.op(Op::Squeeze { axes }, &[*piece])?;
        }
    }
    sequence(elems, b.dtype(x))
}

/// `SequenceMap(s, inputs...)`: the body imported once per element of the sequences, its
/// inputs bound to element `k` of each sequence input and to each tensor input; each body
/// output is a sequence of what it returned.
fn import_sequence_map(b: &mut Builder, cx: &NodeCx) -> Out {
    let gp = cx.attrs.graph("body")?;
    let n_in = cx.node.input.len();
    if gp.input.len() != n_in {
        return Err(format!(
            "its body takes {} inputs for the node's {n_in}",
            gp.input.len()
        ));
    }
    let inputs: Vec<Item> = (0..n_in)
        .map(|i| b.item_input(cx, i))
        .collect::<Result<_, _>>()?;
    let len = match inputs.first() {
        Some(Item::Sequence(s)) => s.elems.len(),
        _ => return Err("its first input must be a sequence".into()),
    };
    for it in &inputs {
        match it {
            Item::Sequence(s) if s.elems.len() != len => {
                return Err(format!(
                    "its input sequences differ in length ({len} and {})",
                    s.elems.len()
                ))
            }
            Item::Sequence(_) | Item::Tensor(_) => {}
            other => {
                return Err(format!(
                    "an input is {}, not a tensor or a sequence",
                    other.kind()
                ))
            }
        }
    }
    let mut outs: Vec<Vec<ValueId>> = vec![Vec::with_capacity(len); gp.output.len()];
    for k in 0..len {
        let bindings: Vec<(&str, Item)> = (gp.input.iter().zip(&inputs))
            .map(|(vi, it)| {
                let item = match it {
                    Item::Sequence(s) => Item::Tensor(s.elems[k]),
                    other => other.clone(),
                };
                (vi.name.as_deref().unwrap_or(""), item)
            })
            .collect();
        let results = inline_body(b, gp, &bindings, "body")?;
        for (j, r) in results.into_iter().enumerate() {
            match r {
                Item::Tensor(v) => outs[j].push(v),
                other => {
                    return Err(format!(
                        "its body returns {} as output {j}; only tensors are supported",
                        other.kind()
                    ))
                }
            }
        }
    }
    outs.into_iter()
        .enumerate()
        .map(|(j, elems)| {
            let dtype = match elems.first() {
                Some(&e) => b.dtype(e),
                None => declared_elem_dtype(gp, j)?,
            };
            Ok(Item::Sequence(Sequence { elems, dtype }))
        })
        .collect()
}

/// The declared dtype of body output `j` (what an empty `SequenceMap` result holds).
fn declared_elem_dtype(gp: &lathe_proto::onnx::GraphProto, j: usize) -> Result<DType, String> {
    elem_dtype(gp.output[j].r#type.as_ref())
        .ok_or_else(|| format!("its body's output {j} declares no tensor of a supported dtype"))
}

#[cfg(test)]
mod tests {
    use super::super::super::control_flow::testing::*;
    use super::super::super::import_model;
    use crate::import::{Container, ImportError};
    use lathe_ir::{Graph, Tensor};
    use lathe_proto::onnx::{
        type_proto, GraphProto, ModelProto, OperatorSetIdProto, TypeProto, ValueInfoProto,
    };
    use std::path::Path;

    /// A value declared a sequence of `elem` tensors of `dims`.
    fn seq_value(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
        let t = value(name, elem, dims).r#type;
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::SequenceType(Box::new(
                    type_proto::Sequence {
                        elem_type: t.map(Box::new),
                    },
                ))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A value declared an optional of an `elem` tensor of `dims`.
    fn opt_value(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
        let t = value(name, elem, dims).r#type;
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::OptionalType(Box::new(
                    type_proto::Optional {
                        elem_type: t.map(Box::new),
                    },
                ))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Imports graph `g` (opset 18) with `containers`.
    fn import_with(g: GraphProto, containers: &[(&str, Container)]) -> Result<Graph, ImportError> {
        let m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(18),
            }],
            graph: Some(g),
            ..Default::default()
        };
        let containers: Vec<(String, Container)> = containers
            .iter()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .collect();
        import_model(&m, Path::new("test.onnx"), &containers, &[])
    }

    fn output_names(g: &Graph) -> Vec<&str> {
        g.outputs().iter().map(|o| o.name.as_str()).collect()
    }

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(dims, v.to_vec())
    }

    #[test]
    fn split_to_sequence_then_concat_folds_to_the_original() {
        let x = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let split = Tensor::from_vec(&[2], vec![1i64, 2]);
        let g = graph(
            "g",
            vec![
                int_attr(node("SplitToSequence", &["x", "split"], &["s"]), "axis", 1),
                int_attr(node("ConcatFromSequence", &["s"], &["y"]), "axis", 1),
            ],
            vec![],
            vec![value("y", F32, &[2, 3])],
            &[("x", x.clone()), ("split", split)],
        );
        let g = import(g, 18).unwrap();
        let y = g.const_value(g.outputs()[0].value).expect("folded");
        assert_eq!(*y, x);
    }

    #[test]
    fn split_to_sequence_pieces_and_stacking() {
        // Pieces of one (keepdims = 0 squeezes them), stacked again along a new axis 1.
        let g = graph(
            "g",
            vec![
                int_attr(
                    int_attr(node("SplitToSequence", &["x"], &["s"]), "axis", 0),
                    "keepdims",
                    0,
                ),
                int_attr(
                    int_attr(node("ConcatFromSequence", &["s"], &["y"]), "axis", 1),
                    "new_axis",
                    1,
                ),
            ],
            vec![value("x", F32, &[2, 3])],
            vec![seq_value("s", F32, &[3]), value("y", F32, &[3, 2])],
            &[],
        );
        let g = import_with(g, &[]).unwrap();
        assert_eq!(output_names(&g), ["s[0]", "s[1]", "y"]);
        let out = run(&g, &[f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.])]);
        assert_eq!(vals(&out[0]), [1., 2., 3.]);
        assert_eq!(out[0].shape(), [3]);
        assert_eq!(out[2].shape(), [3, 2]);
        assert_eq!(vals(&out[2]), [1., 4., 2., 5., 3., 6.]);
        // A scalar split: pieces of that size, the last one smaller.
        let g = graph(
            "g",
            vec![node("SplitToSequence", &["x", "two"], &["s"])],
            vec![value("x", F32, &[5])],
            vec![seq_value("s", F32, &[-1])],
            &[("two", Tensor::scalar(2i64))],
        );
        let g = import_with(g, &[]).unwrap();
        let out = run(&g, &[f32s(&[5], &[1., 2., 3., 4., 5.])]);
        let sizes: Vec<usize> = out.iter().map(|t| t.shape()[0]).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn insert_at_and_erase_take_negative_positions() {
        let pos = |v: i64| Tensor::scalar(v);
        let g = graph(
            "g",
            vec![
                node("SequenceConstruct", &["a", "b", "c"], &["s"]),
                node("SequenceInsert", &["s", "d", "minus1"], &["s2"]),
                node("SequenceErase", &["s2", "minus3"], &["s3"]),
                node("SequenceAt", &["s3", "minus1"], &["last"]),
                node("SequenceErase", &["s3"], &["s4"]),
                node("SequenceLength", &["s4"], &["n"]),
            ],
            vec![
                value("a", F32, &[1]),
                value("b", F32, &[1]),
                value("c", F32, &[1]),
                value("d", F32, &[1]),
            ],
            vec![
                seq_value("s3", F32, &[1]),
                value("last", F32, &[1]),
                value("n", I64, &[]),
            ],
            &[("minus1", pos(-1)), ("minus3", pos(-3))],
        );
        let g = import_with(g, &[]).unwrap();
        assert_eq!(output_names(&g), ["s3[0]", "s3[1]", "s3[2]", "last", "n"]);
        let ins: Vec<Tensor> = [1., 2., 3., 4.].iter().map(|&v| f32s(&[1], &[v])).collect();
        let out = run(&g, &ins);
        let got: Vec<f64> = out.iter().map(|t| vals(t)[0]).collect();
        // [a b c] -> insert d before the last: [a b d c] -> erase at -3: [a d c].
        assert_eq!(got, [1., 4., 3., 3., 2.]);
    }

    #[test]
    fn positions_out_of_range_and_mixed_dtypes_are_errors() {
        let g = graph(
            "g",
            vec![
                node("SequenceConstruct", &["a"], &["s"]),
                node("SequenceAt", &["s", "one"], &["y"]),
            ],
            vec![value("a", F32, &[1])],
            vec![value("y", F32, &[1])],
            &[("one", Tensor::scalar(1i64))],
        );
        let e = import_with(g, &[]).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("position 1 is out of range for a sequence of 1 elements"),
            "{e}"
        );
        let g = graph(
            "g",
            vec![node("SequenceConstruct", &["a", "i"], &["s"])],
            vec![value("a", F32, &[1]), value("i", I64, &[1])],
            vec![seq_value("s", F32, &[1])],
            &[],
        );
        let e = import_with(g, &[]).unwrap_err();
        assert!(e.to_string().contains("cannot hold a i64 tensor"), "{e}");
    }

    #[test]
    fn sequence_map_imports_its_body_per_element() {
        let body = graph(
            "body",
            vec![node("Add", &["e", "t"], &["r"])],
            vec![value("e", F32, &[-1]), value("t", F32, &[-1])],
            vec![value("r", F32, &[-1])],
            &[],
        );
        let g = graph(
            "g",
            vec![graph_attr(
                node("SequenceMap", &["xs", "t"], &["ys"]),
                "body",
                body,
            )],
            vec![seq_value("xs", F32, &[-1]), value("t", F32, &[2])],
            vec![seq_value("ys", F32, &[-1])],
            &[],
        );
        let two = Container::Sequence { len: 2, rank: None };
        let g = import_with(g, &[("xs", two)]).unwrap();
        let names: Vec<&str> = g.inputs().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["xs[0]", "xs[1]", "t"]);
        // Each element has its own symbols: they may differ in size.
        assert_ne!(g.inputs()[0].ty, g.inputs()[1].ty);
        assert_eq!(output_names(&g), ["ys[0]", "ys[1]"]);
        let out = run(
            &g,
            &[
                f32s(&[2], &[1., 2.]),
                f32s(&[2], &[3., 4.]),
                f32s(&[2], &[10., 20.]),
            ],
        );
        assert_eq!(vals(&out[0]), [11., 22.]);
        assert_eq!(vals(&out[1]), [13., 24.]);
    }

    #[test]
    fn optionals_empty_and_present() {
        let g = graph(
            "g",
            vec![
                node("Optional", &["x"], &["some"]),
                node("OptionalHasElement", &["some"], &["has"]),
                node("OptionalGetElement", &["some"], &["y"]),
                node("OptionalHasElement", &["o"], &["has_o"]),
                node("OptionalHasElement", &[], &["has_nothing"]),
            ],
            vec![value("x", F32, &[2]), opt_value("o", F32, &[2])],
            vec![
                value("has", BOOL, &[]),
                value("y", F32, &[2]),
                value("has_o", BOOL, &[]),
                value("has_nothing", BOOL, &[]),
                opt_value("o", F32, &[2]),
            ],
            &[],
        );
        let truths = |g: &Graph| -> Vec<f64> {
            g.outputs()
                .iter()
                .filter(|o| o.name.starts_with("has"))
                .map(|o| vals(g.const_value(o.value).expect("a constant"))[0])
                .collect()
        };
        // Empty: no input, and no output of that name.
        let g = import_with(g.clone(), &[("o", Container::Optional(None))]).unwrap();
        assert_eq!(g.inputs().len(), 1);
        assert_eq!(output_names(&g), ["has", "y", "has_o", "has_nothing"]);
        assert_eq!(truths(&g), [1., 0., 0.]);
        // Present: the tensor input `o`, returned as the output `o`.
        let present = Container::Optional(Some(Box::new(Container::Tensor)));
        let g2 = graph(
            "g",
            vec![node("OptionalHasElement", &["o"], &["has_o"])],
            vec![opt_value("o", F32, &[2])],
            vec![value("has_o", BOOL, &[]), opt_value("o", F32, &[2])],
            &[],
        );
        let g2 = import_with(g2, &[("o", present)]).unwrap();
        assert_eq!(g2.inputs()[0].name, "o");
        assert_eq!(output_names(&g2), ["has_o", "o"]);
        assert_eq!(truths(&g2), [1.]);
        // Reading an empty optional's element is an error naming the node.
        let g3 = graph(
            "g",
            vec![node("OptionalGetElement", &["o"], &["y"])],
            vec![opt_value("o", F32, &[2])],
            vec![value("y", F32, &[2])],
            &[],
        );
        let e = import_with(g3, &[("o", Container::Optional(None))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.onnx: node `y` (op OptionalGetElement): its input is an empty optional, which \
             holds no element"
        );
    }

    #[test]
    fn a_sequence_input_needs_its_length() {
        let g = graph(
            "g",
            vec![node("SequenceLength", &["xs"], &["n"])],
            vec![seq_value("xs", F32, &[2])],
            vec![value("n", I64, &[])],
            &[],
        );
        let e = import_with(g.clone(), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.onnx: input `xs` is a sequence; its length must be known while importing \
             (give it with `LoadOptions::containers`; `lathe conformance` reads it from the \
             test data)"
        );
        let three = Container::Sequence { len: 3, rank: None };
        let g = import_with(g, &[("xs", three)]).unwrap();
        assert_eq!(vals(g.const_value(g.outputs()[0].value).unwrap()), [3.]);
        // An element type without a shape needs the rank.
        let mut g = graph(
            "g",
            vec![node("Identity", &["xs"], &["ys"])],
            vec![seq_value("xs", F32, &[])],
            vec![seq_value("ys", F32, &[])],
            &[],
        );
        if let Some(type_proto::Value::SequenceType(s)) =
            g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            if let Some(type_proto::Value::TensorType(t)) =
                s.elem_type.as_mut().and_then(|t| t.value.as_mut())
            {
                t.shape = None;
            }
        }
        let one = Container::Sequence { len: 1, rank: None };
        let e = import_with(g.clone(), &[("xs", one)]).unwrap_err();
        assert!(e.to_string().contains("its elements' rank"), "{e}");
        let one = Container::Sequence {
            len: 1,
            rank: Some(2),
        };
        let g = import_with(g, &[("xs", one)]).unwrap();
        assert_eq!(g.inputs()[0].ty.shape.rank(), 2);
        assert_eq!(output_names(&g), ["ys[0]"]);
    }

    /// `Loop` carrying a sequence: unrolled, each iteration inserting its number.
    fn loop_model() -> GraphProto {
        let body = graph(
            "body",
            vec![
                node("Identity", &["c"], &["c_out"]),
                node("SequenceInsert", &["acc", "i"], &["acc_out"]),
            ],
            vec![
                value("i", I64, &[]),
                value("c", BOOL, &[]),
                seq_value("acc", I64, &[]),
            ],
            vec![value("c_out", BOOL, &[]), seq_value("acc_out", I64, &[])],
            &[],
        );
        let mut empty = node("SequenceEmpty", &[], &["e"]);
        empty = int_attr(empty, "dtype", I64 as i64);
        graph(
            "g",
            vec![
                empty,
                graph_attr(node("Loop", &["m", "", "e"], &["s"]), "body", body),
            ],
            vec![value("m", I64, &[])],
            vec![seq_value("s", I64, &[])],
            &[],
        )
    }

    #[test]
    fn a_loop_carrying_a_sequence_is_unrolled_for_a_known_trip_count() {
        let e = import_with(loop_model(), &[]).unwrap_err();
        let needs = e.needs_values.as_deref().expect("needs values");
        assert_eq!(needs.inputs, ["m"]);
        assert!(e.message.contains("unrolled while importing"), "{e}");
        let m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(18),
            }],
            graph: Some(loop_model()),
            ..Default::default()
        };
        let bound = [("m".to_string(), Tensor::scalar(3i64))];
        let g = import_model(&m, Path::new("test.onnx"), &[], &bound).unwrap();
        assert_eq!(output_names(&g), ["s[0]", "s[1]", "s[2]"]);
        let got: Vec<f64> = (g.outputs().iter())
            .map(|o| vals(g.const_value(o.value).unwrap())[0])
            .collect();
        assert_eq!(got, [0., 1., 2.]);
    }

    #[test]
    fn an_if_returning_sequences_needs_its_condition() {
        let branch = |name: &str, x: &str| {
            graph(
                name,
                vec![node("SequenceConstruct", &[x], &[&format!("{name}_s")])],
                vec![],
                vec![seq_value(&format!("{name}_s"), F32, &[1])],
                &[],
            )
        };
        let n = graph_attr(
            graph_attr(node("If", &["c"], &["s"]), "then_branch", branch("t", "a")),
            "else_branch",
            branch("e", "b"),
        );
        let g = graph(
            "g",
            vec![n],
            vec![
                value("c", BOOL, &[]),
                value("a", F32, &[1]),
                value("b", F32, &[1]),
            ],
            vec![seq_value("s", F32, &[1])],
            &[],
        );
        let e = import_with(g, &[]).unwrap_err();
        assert_eq!(
            e.needs_values.as_deref().expect("needs values").inputs,
            ["c"]
        );
        assert!(e.message.contains("its branches return sequences"), "{e}");
    }
}
