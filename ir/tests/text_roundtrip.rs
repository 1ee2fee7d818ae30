//! Property tests of the text format: printing a random graph and parsing it back gives the
//! same graph and the same text, and the parser never panics, whatever it is fed.
//!
//! Graphs are built with `add_node_typed` and arbitrary output types: nothing here is verified,
//! so any op may take any operands and produce any number of results. Fused nodes carry random
//! bodies, themselves random graphs that may hold fused nodes (nested up to three levels). A
//! second property builds verified graphs of fused elementwise groups and checks that they
//! still verify, and compute the same, after the round trip.

use half::{bf16, f16};
use lathe_ir::ops::{
    registry, AttrKind, AttrValue, BinaryOp, DataFormat, FusedKind, OpInfo, PadMode, Padding,
    SampleMode, SamplePadding, ScatterReduction, UnaryOp,
};
use lathe_ir::text::{
    parse, parse_with_constants, print, print_external, print_with, ConstTable, PrintOptions,
};
use lathe_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::sync::Arc;

/// Names that exercise quoting: identifiers, odd punctuation, quotes, escapes, unicode,
/// names that look like numbers or keywords, and arbitrary characters.
fn name() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "",
        "x",
        "0",
        "12",
        "odd/name:0",
        "with \"quotes\"",
        "back\\slash",
        "ünïcødé ✓",
        "tab\tnew\nline",
        "%7",
        "@g",
        "?n",
        "loc",
        "return",
        "const",
        "nan",
        "a.b_c",
        "; not a comment",
    ])
    .prop_map(String::from);
    prop_oneof![
        3 => fixed,
        3 => "[a-zA-Z_][a-zA-Z0-9_.]{0,6}",
        1 => prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
    ]
}

fn dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

fn dim() -> impl Strategy<Value = Dim> {
    prop_oneof![
        3 => (0usize..6).prop_map(Dim::Known),
        1 => prop::sample::select(vec!["n", "batch", "seq.len", "2x", "weird sym", ""])
            .prop_map(Dim::sym),
        1 => Just(Dim::Unknown),
    ]
}

fn ty() -> impl Strategy<Value = TensorType> {
    (dtype(), prop::collection::vec(dim(), 0..4))
        .prop_map(|(dt, dims)| TensorType::new(dt, Shape(dims)))
}

/// One element: raw bits (any value but NaN) or a small integer (readable, and splat-prone).
#[derive(Clone, Debug)]
enum Seed {
    Bits(u64),
    Small(i8),
}

fn element_bytes(dt: DType, seed: &Seed) -> Vec<u8> {
    let b = match *seed {
        Seed::Small(v) => return Tensor::from_f64(dt, &[], &[f64::from(v)]).to_le_bytes(),
        Seed::Bits(b) => b,
    };
    // NaN is tested on its own (NaN != NaN, so graphs holding one are never equal).
    match dt {
        DType::F32 => {
            let x = f32::from_bits(b as u32);
            (if x.is_nan() { 1.5 } else { x }).to_le_bytes().to_vec()
        }
        DType::F64 => {
            let x = f64::from_bits(b);
            (if x.is_nan() { -2.25 } else { x }).to_le_bytes().to_vec()
        }
        DType::F16 => {
            let x = f16::from_bits(b as u16);
            let x = if x.is_nan() { f16::ONE } else { x };
            x.to_bits().to_le_bytes().to_vec()
        }
        DType::BF16 => {
            let x = bf16::from_bits(b as u16);
            let x = if x.is_nan() { bf16::NEG_ONE } else { x };
            x.to_bits().to_le_bytes().to_vec()
        }
        DType::Bool => vec![(b & 1) as u8],
        _ => b.to_le_bytes()[..dt.size_bytes()].to_vec(),
    }
}

/// Constants of every dtype: scalars, empty tensors, splats, small lists and (above 64
/// elements) hex.
fn tensor() -> impl Strategy<Value = Tensor> {
    let dims = prop_oneof![
        4 => prop::collection::vec(0usize..5, 0..4),
        1 => (60usize..80).prop_map(|n| vec![n]),
    ];
    let seed = prop_oneof![
        any::<u64>().prop_map(Seed::Bits),
        any::<i8>().prop_map(Seed::Small)
    ];
    (dtype(), dims)
        .prop_flat_map(move |(dt, dims)| {
            let n = dims.iter().product::<usize>();
            (
                Just(dt),
                Just(dims),
                prop::collection::vec(seed.clone(), n),
                any::<bool>(),
            )
        })
        .prop_map(|(dt, dims, seeds, splat)| {
            let mut bytes = Vec::new();
            for s in &seeds {
                bytes.extend(element_bytes(dt, if splat { &seeds[0] } else { s }));
            }
            Tensor::from_le_bytes(dt, &dims, &bytes).expect("sizes match")
        })
}

fn format() -> impl Strategy<Value = DataFormat> {
    prop_oneof![Just(DataFormat::Nhwc), Just(DataFormat::Nchw)]
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        [[0usize..4, 0usize..4], [0usize..4, 0usize..4]].prop_map(Padding::Explicit),
    ]
}

fn pair() -> impl Strategy<Value = [usize; 2]> {
    [1usize..5, 1usize..5]
}

/// A random value of an attribute of kind `kind`.
fn attr_value(kind: AttrKind) -> BoxedStrategy<AttrValue> {
    let not_nan = any::<f32>().prop_filter("NaN attributes are never equal", |x| !x.is_nan());
    match kind {
        AttrKind::Bool => any::<bool>().prop_map(AttrValue::Bool).boxed(),
        AttrKind::Int => any::<i64>().prop_map(AttrValue::Int).boxed(),
        AttrKind::Count => (0i64..1000).prop_map(AttrValue::Int).boxed(),
        AttrKind::Ints => prop::collection::vec(any::<i64>(), 0..4)
            .prop_map(AttrValue::Ints)
            .boxed(),
        AttrKind::Pair => pair()
            .prop_map(|p| AttrValue::Ints(p.iter().map(|&x| x as i64).collect()))
            .boxed(),
        AttrKind::Float => not_nan.prop_map(AttrValue::Float).boxed(),
        AttrKind::Str => name().prop_map(AttrValue::Str).boxed(),
        AttrKind::DType => dtype().prop_map(AttrValue::DType).boxed(),
        AttrKind::Padding => padding()
            .prop_map(|p| match p {
                Padding::Valid => AttrValue::Str("VALID".into()),
                Padding::Same => AttrValue::Str("SAME".into()),
                Padding::Explicit([[t, b], [l, r]]) => {
                    AttrValue::Ints(vec![t as i64, b as i64, l as i64, r as i64])
                }
            })
            .boxed(),
        AttrKind::DataFormat => format()
            .prop_map(|f| AttrValue::Str(f.name().into()))
            .boxed(),
        AttrKind::PadMode => prop::sample::select(PadMode::ALL.to_vec())
            .prop_map(|m| AttrValue::Str(m.name().into()))
            .boxed(),
        AttrKind::ScatterReduction => prop::sample::select(ScatterReduction::ALL.to_vec())
            .prop_map(|r| AttrValue::Str(r.name().into()))
            .boxed(),
        AttrKind::SampleMode => prop::sample::select(SampleMode::ALL.to_vec())
            .prop_map(|m| AttrValue::Str(m.name().into()))
            .boxed(),
        AttrKind::SamplePadding => prop::sample::select(SamplePadding::ALL.to_vec())
            .prop_map(|p| AttrValue::Str(p.name().into()))
            .boxed(),
        AttrKind::Graph => unreachable!("ops with regions are built by `step`"),
    }
}

/// Any op of the registry but `input`, `const` (written by the text format itself) and ops
/// with regions (fused nodes are built by `step` with random bodies; `if` and `while` are
/// covered by `ops::control_flow`'s tests), with random values of its declared attributes.
/// Driven by the registry, so a new op is covered without touching this file.
fn op() -> impl Strategy<Value = Op> {
    let rows: Vec<&'static OpInfo> = registry()
        .iter()
        .filter(|i| !i.structural && !i.attrs.iter().any(|a| a.kind == AttrKind::Graph))
        .collect();
    prop::sample::select(rows).prop_flat_map(|info| {
        let values: Vec<BoxedStrategy<AttrValue>> =
            info.attrs.iter().map(|a| attr_value(a.kind)).collect();
        values.prop_map(move |values| {
            let attrs: Vec<(String, AttrValue)> = info
                .attrs
                .iter()
                .zip(values)
                .map(|(a, v)| (a.name.to_string(), v))
                .collect();
            Op::from_parts(info.name, &attrs)
                .unwrap_or_else(|e| panic!("{}: declared attributes do not build: {e}", info.name))
        })
    })
}

/// One node of a random graph; operand indices are taken modulo the values defined so far.
#[derive(Clone, Debug)]
enum Step {
    Const(Tensor, String),
    Node(Op, Vec<usize>, Vec<TensorType>, String),
    /// A fused node around a random body: one operand per body input, the body's result types.
    Fused(FusedKind, Graph, Vec<usize>, String),
}

/// A step of a graph that may hold fused nodes whose bodies nest `depth` more levels.
fn step(depth: u32) -> BoxedStrategy<Step> {
    let plain = prop_oneof![
        1 => (tensor(), name()).prop_map(|(t, n)| Step::Const(t, n)),
        2 => (
            op(),
            prop::collection::vec(any::<usize>(), 0..4),
            prop::collection::vec(ty(), 0..4),
            name(),
        )
            .prop_map(|(op, operands, outputs, n)| Step::Node(op, operands, outputs, n)),
    ];
    if depth == 0 {
        return plain.boxed();
    }
    let fused = (
        prop::sample::select(FusedKind::ALL.to_vec()),
        graph_nested(depth - 1),
        prop::collection::vec(any::<usize>(), 4),
        name(),
    )
        .prop_map(|(kind, body, operands, n)| Step::Fused(kind, body, operands, n));
    prop_oneof![3 => plain, 1 => fused].boxed()
}

/// How deep fused bodies nest in `g` (0 for a graph without fused nodes).
fn nesting(g: &Graph) -> usize {
    g.node_ids()
        .iter()
        .filter_map(|&id| match &g.node(id).op {
            Op::Fused { body, .. } => Some(1 + nesting(body)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// A random graph whose fused nodes nest up to three levels.
fn graph() -> impl Strategy<Value = Graph> {
    graph_nested(3)
}

/// A random graph: inputs (unique names; inputs first, as importers add them), then nodes,
/// then outputs that may be any value, an input included. Fused bodies nest up to `depth`
/// levels; bodies are smaller than the top-level graph, to keep cases quick.
fn graph_nested(depth: u32) -> BoxedStrategy<Graph> {
    let steps = if depth == 3 { 0..12 } else { 0..5 };
    (
        name(),
        prop::collection::vec((name(), ty()), 0..4),
        prop::collection::vec(step(depth), steps),
        prop::collection::vec((name(), any::<usize>()), 0..4),
    )
        .prop_map(|(gname, inputs, steps, outputs)| {
            let mut g = Graph::new(gname);
            let mut values: Vec<ValueId> = Vec::new();
            let mut used: Vec<String> = Vec::new();
            for (i, (n, t)) in inputs.into_iter().enumerate() {
                let n = if used.contains(&n) {
                    format!("{n}_{i}")
                } else {
                    n
                };
                used.push(n.clone());
                values.push(g.add_input(n, t));
            }
            for s in steps {
                match s {
                    Step::Const(t, n) => values.push(g.add_const(t, n)),
                    Step::Node(op, operands, outputs, n) => {
                        let ins: Vec<ValueId> = match values.len() {
                            0 => vec![],
                            len => operands.iter().map(|&i| values[i % len]).collect(),
                        };
                        let k = outputs.len();
                        let id = g
                            .add_node_typed(op, ins, outputs, n)
                            .expect("operands exist");
                        values.extend((0..k as u32).map(|output| ValueId { node: id, output }));
                    }
                    Step::Fused(kind, body, operands, n) => {
                        let ins: Vec<ValueId> = match values.len() {
                            0 => vec![],
                            len => operands
                                .iter()
                                .take(body.inputs().len())
                                .map(|&i| values[i % len])
                                .collect(),
                        };
                        let outputs: Vec<TensorType> = body
                            .outputs()
                            .iter()
                            .map(|o| body.value_type(o.value).clone())
                            .collect();
                        let k = outputs.len();
                        let op = Op::Fused {
                            kind,
                            body: Arc::new(body),
                        };
                        let id = g
                            .add_node_typed(op, ins, outputs, n)
                            .expect("operands exist");
                        values.extend((0..k as u32).map(|output| ValueId { node: id, output }));
                    }
                }
            }
            if !values.is_empty() {
                for (n, i) in outputs {
                    g.add_output(n, values[i % values.len()])
                        .expect("value exists");
                }
            }
            g
        })
        .boxed()
}

/// The bytes of every constant in `g` and its bodies, in print order (structural equality
/// would miss -0.0 vs 0.0).
fn constant_bytes(g: &Graph, out: &mut Vec<Vec<u8>>) {
    for id in g.topo_order().unwrap() {
        match &g.node(id).op {
            Op::Const(t) => out.push(t.to_le_bytes()),
            Op::Fused { body, .. } => constant_bytes(body, out),
            _ => {}
        }
    }
}

/// A verified graph of elementwise ops on `f32[2,3]` values, some grouped into fused nodes
/// whose bodies are built the same way (so they nest), with constants inside and outside.
fn valid_graph(depth: u32) -> BoxedStrategy<Graph> {
    #[derive(Clone, Debug)]
    enum Valid {
        Unary(UnaryOp, usize),
        Binary(BinaryOp, usize, usize),
        Const(i8),
        Fused(FusedKind, Graph, Vec<usize>),
    }
    let unary = prop::sample::select(UnaryOp::ALL.to_vec());
    let binary = prop::sample::select(BinaryOp::ALL.to_vec());
    let plain = prop_oneof![
        (unary, any::<usize>()).prop_map(|(u, a)| Valid::Unary(u, a)),
        (binary, any::<usize>(), any::<usize>()).prop_map(|(b, x, y)| Valid::Binary(b, x, y)),
        any::<i8>().prop_map(Valid::Const),
    ];
    let step = if depth == 0 {
        plain.boxed()
    } else {
        let fused = (
            prop::sample::select(FusedKind::ALL.to_vec()),
            valid_graph(depth - 1),
            prop::collection::vec(any::<usize>(), 3),
        )
            .prop_map(|(k, body, ins)| Valid::Fused(k, body, ins));
        prop_oneof![3 => plain, 1 => fused].boxed()
    };
    (
        1usize..4,
        prop::collection::vec(step, 1..8),
        prop::collection::vec(any::<usize>(), 1..3),
    )
        .prop_map(move |(n_inputs, steps, outputs)| {
            let t = TensorType::known(DType::F32, &[2, 3]);
            let mut g = Graph::new(format!("level{depth}"));
            let mut values: Vec<ValueId> = (0..n_inputs)
                .map(|i| g.add_input(format!("in{i}"), t.clone()))
                .collect();
            for (i, s) in steps.into_iter().enumerate() {
                let pick = |k: usize| values[k % values.len()];
                let name = format!("n{i}");
                // Ops that do not apply to f32 (logical_not, say) are refused by `add`: skipped.
                let v = match s {
                    Valid::Unary(u, a) => g.add(Op::Unary(u), vec![pick(a)], name).ok(),
                    Valid::Binary(b, x, y) => {
                        g.add(Op::Binary(b), vec![pick(x), pick(y)], name).ok()
                    }
                    Valid::Const(c) => {
                        let data = Tensor::from_vec(&[2, 3], vec![f32::from(c); 6]);
                        Some(g.add_const(data, name))
                    }
                    Valid::Fused(kind, body, ins) => {
                        let ins = ins.iter().take(body.inputs().len()).map(|&k| pick(k));
                        let op = Op::Fused {
                            kind,
                            body: Arc::new(body),
                        };
                        Some(g.add(op, ins.collect(), name).expect("the body fits"))
                    }
                };
                // Comparisons give bool values: left in the graph, not used further.
                values.extend(v.filter(|&v| g.value_type(v).dtype == DType::F32));
            }
            for (i, o) in outputs.into_iter().enumerate() {
                g.add_output(format!("out{i}"), values[o % values.len()])
                    .expect("value exists");
            }
            g
        })
        .boxed()
}

/// One edit of a text, for feeding the parser nearly-valid input.
#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, char),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let fragment = prop_oneof![
        prop::sample::select(vec![
            "%",
            "%0",
            "%9",
            "#1",
            ":",
            ":2",
            "=",
            ",",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            "<",
            ">",
            "\"",
            "\\",
            "?",
            "?n",
            "-",
            "->",
            "0x",
            "0x0",
            "1",
            "-1",
            "1e400",
            "1.5",
            "99999999999999999999",
            "nan",
            "-inf",
            "splat",
            "elided",
            "dense",
            "const",
            "loc",
            "return",
            "f32",
            "bool",
            "[0]",
            "[3,4]",
            ";",
            "\n",
            " ",
        ])
        .prop_map(String::from),
        ".{0,3}",
    ];
    prop_oneof![
        (any::<usize>(), 1usize..6).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), fragment).prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), any::<char>()).prop_map(|(a, c)| Mutation::Replace(a, c)),
        (any::<usize>(), 1usize..20).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, edits: &[Mutation]) -> String {
    let mut c: Vec<char> = text.chars().collect();
    for m in edits {
        let at = |a: usize, len: usize| if len == 0 { 0 } else { a % (len + 1) };
        match m {
            Mutation::Delete(a, n) => {
                let s = at(*a, c.len());
                c.drain(s..(s + n).min(c.len()));
            }
            Mutation::Insert(a, s) => {
                let p = at(*a, c.len());
                c.splice(p..p, s.chars());
            }
            Mutation::Replace(a, ch) => {
                if !c.is_empty() {
                    let p = a % c.len();
                    c[p] = *ch;
                }
            }
            Mutation::Duplicate(a, n) => {
                let s = at(*a, c.len());
                let seg: Vec<char> = c[s..(s + n).min(c.len())].to_vec();
                c.splice(s..s, seg);
            }
            Mutation::Truncate(a) => {
                let p = at(*a, c.len());
                c.truncate(p);
            }
        }
    }
    c.into_iter().collect()
}

/// Whatever parses must print, and that text must parse back and print the same.
fn check_reprints(text: &str) {
    if let Ok(g) = parse(text) {
        let printed = print(&g);
        let again = parse(&printed)
            .unwrap_or_else(|e| panic!("reprinted text does not parse: {e}\n{printed}"));
        assert_eq!(print(&again), printed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn print_then_parse_gives_the_same_graph(g in graph(), hex_above in 0usize..80) {
        for opts in [
            PrintOptions::default(),
            PrintOptions { hex_constants_above: hex_above, ..PrintOptions::default() },
        ] {
            let text = print_with(&g, &opts);
            let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            prop_assert!(back.structurally_eq(&g), "parsed graph differs:\n{}", text);
            prop_assert_eq!(print_with(&back, &opts), text);
            // Constants come back bit for bit, in bodies too.
            let (mut want, mut got) = (Vec::new(), Vec::new());
            constant_bytes(&g, &mut want);
            constant_bytes(&back, &mut got);
            prop_assert_eq!(want, got);
        }
    }

    /// Large constants printed to a table (an artifact's weights) come back as the very
    /// tensors of the table, shared, and everything else as text; two graphs printed with one
    /// table share its entries.
    #[test]
    fn print_external_then_parse_with_the_table_gives_the_same_graph(
        g in graph(),
        above in 0usize..64,
    ) {
        let mut table = ConstTable::new(above);
        let text = print_external(&g, &mut table);
        let again = print_external(&g, &mut table);
        prop_assert_eq!(&again, &text, "a second graph reuses the table's entries");
        let back = parse_with_constants(&text, table.tensors())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert!(back.structurally_eq(&g), "parsed graph differs:\n{}", text);
        prop_assert_eq!(print(&back), print(&g));
        prop_assert_eq!(&print_external(&back, &mut table), &text);
        // Without the table, a graph that uses it is an error, not a panic.
        if !table.tensors().is_empty() {
            prop_assert!(parse(&text).is_err());
        }
    }

    #[test]
    fn verified_fused_graphs_still_verify_after_the_round_trip(
        g in valid_graph(2),
        seed in prop::collection::vec(-4.0f32..4.0, 6),
    ) {
        lathe_ir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{}", print(&g)));
        let text = print(&g);
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert!(back.structurally_eq(&g), "parsed graph differs:\n{}", text);
        lathe_ir::verify(&back).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(print(&back), text);
        let x = Tensor::from_vec(&[2, 3], seed);
        let inputs = vec![x; g.inputs().len()];
        let bits = |r: Vec<Tensor>| r.iter().map(Tensor::to_le_bytes).collect::<Vec<_>>();
        let want = lathe_ir::interp::run(&g, &inputs).map(bits).map_err(|e| e.to_string());
        let got = lathe_ir::interp::run(&back, &inputs).map(bits).map_err(|e| e.to_string());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn parser_survives_random_text(s in any::<String>()) {
        check_reprints(&s);
    }

    #[test]
    fn parser_survives_token_soup(words in prop::collection::vec(prop::sample::select(vec![
        "graph", "@g", "(", ")", "->", "{", "}", "%x", "%0", "%1:2", "#0", ":", "=", ",",
        "f32[2]", "i8[?n,3]", "\"y\"", "return", "const", "dense", "<", ">", "splat", "[1, 2]",
        "0x00", "relu", "identity_n", "noop", "loc", "\"a\"", "{transpose_a = true}", "nan",
    ]), 0..40)) {
        check_reprints(&words.join(" "));
    }

    #[test]
    fn parser_survives_mutated_graphs(
        g in graph(),
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        check_reprints(&mutate(&print(&g), &edits));
    }
}

/// The generators reach the nesting the properties are meant to cover: fused nodes in most
/// cases, bodies within bodies in a good share.
#[test]
fn generated_graphs_nest_fused_bodies() {
    let mut runner = TestRunner::deterministic();
    let mut depths = [0usize; 5];
    let mut valid_depths = [0usize; 4];
    for _ in 0..256 {
        let g = graph().new_tree(&mut runner).unwrap().current();
        depths[nesting(&g).min(4)] += 1;
        let g = valid_graph(2).new_tree(&mut runner).unwrap().current();
        valid_depths[nesting(&g).min(3)] += 1;
    }
    assert!(depths[2] + depths[3] >= 25, "{depths:?}");
    assert!(valid_depths[2] >= 25, "{valid_depths:?}");
}

#[test]
fn extern_constants_are_checked_against_the_table() {
    let w = Arc::new(Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]));
    let text = r#"graph @g() -> ("y": f32[2,2]) {
  %0 = const dense<extern 0> : f32[2,2] loc("w")
  return %0
}"#;
    let g = parse_with_constants(text, std::slice::from_ref(&w)).unwrap();
    let Op::Const(t) = &g.node(g.outputs()[0].value.node).op else {
        panic!("a constant");
    };
    assert!(Arc::ptr_eq(t, &w), "the constant shares the table's tensor");
    let e = parse(text).unwrap_err().to_string();
    assert!(
        e.contains("entry 0 of the constant table, which has 0 entries"),
        "{e}"
    );
    let e = parse_with_constants(&text.replace("f32[2,2] loc", "f32[4] loc"), &[w])
        .unwrap_err()
        .to_string();
    assert!(e.contains("declared f32[4] but entry 0"), "{e}");
}
