//! The IR's text format: a printer and a parser for one language, so that `parse(&print(g))`
//! rebuilds `g` and printing that again gives the same text (property tested in
//! `ir/tests/text_roundtrip.rs`). It goes through [`Op::mnemonic`](crate::Op::mnemonic),
//! [`Op::attrs`](crate::Op::attrs) and [`Op::from_parts`](crate::Op::from_parts), so it knows
//! nothing about particular ops; only `input` and `const` are its own.
//!
//! ```text
//! ; comments run from ';' to the end of the line
//! graph @mlp(%x: f32[1,784], %"odd/name:0": i32[?batch,3]) -> ("Identity:0": f32[1,2], "aux": f32[512]) {
//!   %0 = const dense<[[1.0, 2.0], [3.0, -4.5]]> : f32[2,2] loc("dense/kernel")
//!   %1 = const dense<splat 0.0> : f32[512]
//!   %2 = matmul(%x, %0) {transpose_a = false, transpose_b = true} : f32[1,2] loc("dense/MatMul")
//!   %3:2 = identity_n(%2, %1) : f32[1,2], f32[512]
//!   noop() loc("NoOp")
//!   return %3#0, %3#1
//! }
//! ```
//!
//! The grammar, as the parser reads it:
//!
//! ```text
//! graph   := 'graph' GLOBAL '(' [param {',' param}] ')' '->' '(' [result {',' result}] ')'
//!            '{' {node} 'return' [value {',' value}] '}'
//! param   := LOCAL ':' type                   ; a graph input, named by LOCAL
//! result  := STRING ':' type                  ; a graph output's name and type
//! node    := [NUM [':' INT] '='] ( 'const' dense
//!                                 | IDENT '(' [value {',' value}] ')' ['{' [attr {',' attr}] '}']
//!                                   [':' type {',' type}] )
//!            ['loc' '(' STRING ')']
//! value   := LOCAL | NUM ['#' INT]
//! type    := DTYPE '[' [dim {',' dim}] ']'
//! dim     := INT | '?' | SYM
//! attr    := (IDENT | STRING) '=' attrval
//! attrval := 'true' | 'false' | INT | FLOAT | '[' [INT {',' INT}] ']' | STRING | DTYPE | dense
//!          | graph                            ; a nested graph: a fused node's body
//! dense   := 'dense' '<' ('splat' elem | HEX | list | 'extern' INT) '>' ':' type
//! list    := elem | '[' [list {',' list}] ']'
//! elem    := INT | FLOAT | 'true' | 'false'
//! ```
//!
//! Tokens: GLOBAL is `@name`, LOCAL `%name`, SYM `?name` (a bare identifier
//! `[A-Za-z_][A-Za-z0-9_.]*` or a quoted string with Rust escapes), NUM `%7`; FLOAT also
//! covers `nan`, `inf` and `-inf`; HEX is `0x` and the little-endian bytes of the elements.
//! `dense<extern N>` is entry `N` of a constant table kept beside the text (an artifact's
//! weights): [`print_external`] writes it, [`parse_with_constants`] reads it with the table,
//! and plain [`parse`] refuses it.
//! Nodes are printed in [`Graph::topo_order`](crate::Graph::topo_order) and numbered from `%0`
//! by the printer; a node with k ≥ 2 results is defined as `%N:k` and its results used as
//! `%N#i`; a node with no results has no `%N =`. The parser accepts any numbering as long as
//! each number is defined once, before its uses.
//!
//! A graph-valued attribute (the `body` of `fused.*` nodes) is written as a whole graph in the
//! same syntax, starting on the node's line and indented one level deeper than it; its closing
//! `}` lines up with the node. A nested graph is closed: its names and numbers are its own
//! (`%0` inside is not the `%0` outside) and it sees only its own inputs. The fused node's
//! operands feed the body's inputs in order and its results are the body's results. Graphs
//! nest at most 16 deep.
//!
//! ```text
//! graph @net(%x: f32[1,16], %b: f32[32]) -> ("y": f32[1,32]) {
//!   %0 = fused.epilogue(%x, %b) {body = graph @dense_relu(%a0: f32[1,16], %a1: f32[32]) -> ("y": f32[1,32]) {
//!     %0 = const dense<splat 0.5> : f32[16,32]
//!     %1 = matmul(%a0, %0) {transpose_a = false, transpose_b = false} : f32[1,32]
//!     %2 = bias_add(%1, %a1) {format = "NHWC"} : f32[1,32]
//!     %3 = relu(%2) : f32[1,32]
//!     return %3
//!   }} : f32[1,32] loc("dense")
//!   return %0
//! }
//! ```

mod elem;
mod lexer;
mod parse;
mod print;

pub use parse::{parse, parse_with_constants};
pub use print::{print, print_external, print_with, ConstTable, PrintOptions};

use crate::{Dim, TensorType};
use std::fmt::Write;
use thiserror::Error;

/// A parse error with the 1-based line and column (in characters) where it was found.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{line}:{col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// True when `s` can be written bare after a sigil (`%x`, `@main`, `?batch`).
fn is_ident(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && lexer::ident_start(b[0]) && b[1..].iter().all(|&c| lexer::ident_continue(c))
}

/// Appends `s` as a quoted string with Rust-style escapes. Control characters, and the
/// invisible ones that reorder or hide text (bidi overrides, zero-width spaces, line
/// separators), are written as `\u{..}` so that a dump shows what a name really holds.
fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}')
                || matches!(c, '\u{2060}'..='\u{206f}' | '\u{feff}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `s` bare when it is an identifier, else quoted.
fn write_name(out: &mut String, s: &str) {
    if is_ident(s) {
        out.push_str(s);
    } else {
        write_quoted(out, s);
    }
}

/// `%name` as the text format writes it, for printing and error messages.
fn local_name(s: &str) -> String {
    let mut out = String::from("%");
    write_name(&mut out, s);
    out
}

/// Appends a type: like its `Display` (`f32[1,?n,?]`), but with symbols that are not
/// identifiers quoted so that they read back.
fn write_type(out: &mut String, t: &TensorType) {
    out.push_str(t.dtype.name());
    out.push('[');
    for (i, d) in t.shape.dims().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match d {
            Dim::Known(n) => {
                let _ = write!(out, "{n}");
            }
            Dim::Sym(s) => {
                out.push('?');
                write_name(out, s);
            }
            Dim::Unknown => out.push('?'),
        }
    }
    out.push(']');
}

/// A type as the text format writes it, for error messages.
fn type_text(t: &TensorType) -> String {
    let mut s = String::new();
    write_type(&mut s, t);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{BinaryOp, Op, UnaryOp};
    use crate::{DType, Graph, Shape, Tensor, ValueId};
    use half::{bf16, f16};

    fn f32s(dims: &[usize]) -> TensorType {
        TensorType::known(DType::F32, dims)
    }

    /// The graph of the golden test: every kind of line the printer writes.
    fn golden_graph() -> Graph {
        let mut g = Graph::new("mlp");
        let x = g.add_input("x", f32s(&[1, 4]));
        let batch = TensorType::new(DType::I32, Shape(vec![Dim::sym("batch"), Dim::Known(3)]));
        let y = g.add_input("odd/name:0", batch);
        let k = Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, -4.5]);
        let k = g.add_const(k, "dense/kernel");
        let zeros = g.add_const(Tensor::zeros(DType::F32, &[512]), "");
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: true,
        };
        let mm = g.add_node_typed(mm, vec![x, k], vec![f32s(&[1, 2])], "dense/MatMul");
        let mm = ValueId::first(mm.unwrap());
        let both = vec![f32s(&[1, 2]), f32s(&[512])];
        let idn = g.add_node_typed(Op::IdentityN, vec![mm, zeros], both, "");
        let idn = idn.unwrap();
        g.add_node_typed(Op::NoOp, vec![], vec![], "NoOp").unwrap();
        let relu = Op::Unary(UnaryOp::Relu);
        let r = g.add_node_typed(
            relu,
            vec![ValueId {
                node: idn,
                output: 0,
            }],
            vec![f32s(&[1, 2])],
            "",
        );
        let cast_ty = TensorType::new(DType::F32, Shape(vec![Dim::sym("batch"), Dim::Known(3)]));
        g.add_node_typed(Op::Cast { to: DType::F32 }, vec![y], vec![cast_ty], "")
            .unwrap();
        g.add_output("Identity:0", ValueId::first(r.unwrap()))
            .unwrap();
        g.add_output("aux", y).unwrap();
        g
    }

    const GOLDEN: &str = r#"graph @mlp(%x: f32[1,4], %"odd/name:0": i32[?batch,3]) -> ("Identity:0": f32[1,2], "aux": i32[?batch,3]) {
  %0 = const dense<[[1.0, 2.0], [3.0, -4.5]]> : f32[2,2] loc("dense/kernel")
  %1 = const dense<splat 0.0> : f32[512]
  %2 = matmul(%x, %0) {transpose_a = false, transpose_b = true} : f32[1,2] loc("dense/MatMul")
  %3:2 = identity_n(%2, %1) : f32[1,2], f32[512]
  noop() loc("NoOp")
  %4 = relu(%3#0) : f32[1,2]
  %5 = cast(%"odd/name:0") {to = f32} : f32[?batch,3]
  return %4, %"odd/name:0"
}
"#;

    #[test]
    fn names_and_types() {
        assert_eq!(local_name("x_1.y"), "%x_1.y");
        assert_eq!(local_name("0"), "%\"0\"");
        assert_eq!(local_name(""), "%\"\"");
        assert_eq!(
            local_name("a\"b\\c\nd\u{7}é"),
            "%\"a\\\"b\\\\c\\nd\\u{7}é\""
        );
        assert_eq!(local_name("x\u{202e}y"), "%\"x\\u{202e}y\"");
        let t = TensorType::new(
            DType::F32,
            Shape(vec![
                Dim::Known(1),
                Dim::sym("n"),
                Dim::sym("2 b"),
                Dim::Unknown,
            ]),
        );
        assert_eq!(type_text(&t), "f32[1,?n,?\"2 b\",?]");
    }

    #[test]
    fn error_display() {
        let e = ParseError {
            line: 3,
            col: 14,
            message: "unknown value %7".into(),
        };
        assert_eq!(e.to_string(), "3:14: unknown value %7");
    }

    #[test]
    fn golden_text() {
        let g = golden_graph();
        assert_eq!(print(&g), GOLDEN);
        let back = parse(GOLDEN).unwrap();
        assert!(back.structurally_eq(&g));
        assert_eq!(print(&back), GOLDEN);
    }

    #[test]
    fn hex_and_scalar_constants() {
        let mut g = Graph::new("c");
        let t = g.add_const(Tensor::from_vec(&[2], vec![1.0f32, 2.0]), "");
        let s = g.add_const(Tensor::scalar(-3i64), "");
        let e = g.add_const(Tensor::zeros(DType::Bool, &[2, 0]), "");
        for (i, v) in [t, s, e].into_iter().enumerate() {
            g.add_output(format!("o{i}"), v).unwrap();
        }
        let opts = PrintOptions {
            hex_constants_above: 1,
            ..PrintOptions::default()
        };
        let text = print_with(&g, &opts);
        assert!(
            text.contains("%0 = const dense<0x0000803F00000040> : f32[2]\n"),
            "{text}"
        );
        assert!(text.contains("%1 = const dense<-3> : i64[]\n"), "{text}");
        assert!(
            text.contains("%2 = const dense<[[], []]> : bool[2,0]\n"),
            "{text}"
        );
        assert!(parse(&text).unwrap().structurally_eq(&g));
        // Any form parses at any size.
        let forms = "graph @c() -> (\"a\": u8[3], \"b\": u8[3], \"c\": u8[3]) {\n  \
                     %0 = const dense<0x010203> : u8[3]\n  \
                     %1 = const dense<[1, 2, 3]> : u8[3]\n  \
                     %2 = const dense<splat 7> : u8[3]\n  \
                     return %0, %1, %2\n}\n";
        let g = parse(forms).unwrap();
        let c = |i: usize| g.const_value(g.outputs()[i].value).unwrap().to_le_bytes();
        assert_eq!(
            (c(0), c(1), c(2)),
            (vec![1, 2, 3], vec![1, 2, 3], vec![7, 7, 7])
        );
    }

    #[test]
    fn special_floats_round_trip_bitwise() {
        let odd_nan = f32::from_bits(0x7fc0_0001);
        let tensors = vec![
            Tensor::from_vec(&[4], vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0]),
            Tensor::from_vec(&[3], vec![-f32::NAN, odd_nan, 1.0]),
            Tensor::from_vec(&[3], vec![f64::NAN, f64::NEG_INFINITY, -f64::NAN]),
            Tensor::from_vec(&[3], vec![f16::NAN, f16::INFINITY, f16::from_bits(0xfe01)]),
            Tensor::from_vec(
                &[3],
                vec![bf16::NAN, bf16::NEG_INFINITY, bf16::from_bits(0x0001)],
            ),
            Tensor::from_vec(&[2], vec![-0.0f32, 0.0]),
            Tensor::from_vec(&[2], vec![f32::NAN, f32::NAN]),
        ];
        let mut g = Graph::new("special");
        for (i, t) in tensors.iter().enumerate() {
            let v = g.add_const(t.clone(), "");
            g.add_output(format!("c{i}"), v).unwrap();
        }
        let text = print(&g);
        assert!(
            text.contains("dense<[nan, inf, -inf, -0.0]> : f32[4]"),
            "{text}"
        );
        assert!(text.contains("dense<[-0.0, 0.0]> : f32[2]"), "{text}");
        assert!(text.contains("dense<splat nan> : f32[2]"), "{text}");
        let back = parse(&text).unwrap();
        for (o, t) in back.outputs().iter().zip(&tensors) {
            let c = back.const_value(o.value).unwrap();
            assert_eq!(c.to_le_bytes(), t.to_le_bytes(), "{}", o.name);
        }
        assert_eq!(print(&back), text);
    }

    #[test]
    fn float_attributes() {
        let mut g = Graph::new("attrs");
        let x = g.add_input("x", f32s(&[1, 2, 2, 3]));
        let bn = Op::FusedBatchNorm {
            epsilon: 1e-3,
            format: crate::ops::DataFormat::Nhwc,
        };
        let y = g.add_node_typed(bn, vec![x, x, x, x, x], vec![f32s(&[1, 2, 2, 3])], "bn");
        g.add_output("y", ValueId::first(y.unwrap())).unwrap();
        let text = print(&g);
        assert!(
            text.contains("{epsilon = 0.001, format = \"NHWC\"}"),
            "{text}"
        );
        assert!(parse(&text).unwrap().structurally_eq(&g));
    }

    /// The example in the module docs.
    const DOC_EXAMPLE: &str = r#"; comments run from ';' to the end of the line
graph @mlp(%x: f32[1,784], %"odd/name:0": i32[?batch,3]) -> ("Identity:0": f32[1,2], "aux": f32[512]) {
  %0 = const dense<[[1.0, 2.0], [3.0, -4.5]]> : f32[2,2] loc("dense/kernel")
  %1 = const dense<splat 0.0> : f32[512]
  %2 = matmul(%x, %0) {transpose_a = false, transpose_b = true} : f32[1,2] loc("dense/MatMul")
  %3:2 = identity_n(%2, %1) : f32[1,2], f32[512]
  noop() loc("NoOp")
  return %3#0, %3#1
}
"#;

    #[test]
    fn doc_example_parses_and_prints_the_same() {
        let g = parse(DOC_EXAMPLE).unwrap();
        let body = DOC_EXAMPLE.split_once('\n').unwrap().1;
        assert_eq!(print(&g), body);
    }

    #[test]
    fn parsed_control_graphs_verify() {
        let text = "graph @g(%a: f32[2], %b: i8[?n]) -> (\"x\": f32[2], \"y\": i8[?n]) {\n  \
                    %0 = identity(%a) : f32[2]\n  \
                    %1:2 = identity_n(%0, %b) : f32[2], i8[?n]\n  \
                    %2 = stop_gradient(%1#1) : i8[?n]\n  \
                    noop()\n  \
                    return %1#0, %2\n}\n";
        let g = parse(text).unwrap();
        crate::verify(&g).unwrap();
        assert_eq!(print(&g), text);
        // The parser takes types as written; the verifier is what catches wrong ones.
        let wrong = text.replace(
            "%2 = stop_gradient(%1#1) : i8[?n]",
            "%2 = stop_gradient(%1#1) : i8[?m]",
        );
        let wrong = wrong.replace("\"y\": i8[?n]", "\"y\": i8[?m]");
        let g = parse(&wrong).unwrap();
        assert!(
            crate::verify(&g).is_ok(),
            "symbols are compatible with anything"
        );
        let wrong = text.replace("%0 = identity(%a) : f32[2]", "%0 = identity(%a) : f32[3]");
        let wrong = wrong.replace(
            "%1:2 = identity_n(%0, %b) : f32[2]",
            "%1:2 = identity_n(%0, %b) : f32[3]",
        );
        let wrong = wrong.replace("\"x\": f32[2]", "\"x\": f32[3]");
        assert!(crate::verify(&parse(&wrong).unwrap()).is_err());
    }

    fn err(text: &str) -> String {
        parse(text).map(|_| ()).unwrap_err().to_string()
    }

    /// A one-input graph around `body`, which starts on line 2.
    fn graph(body: &str) -> String {
        format!("graph @g(%x: f32[2]) -> (\"y\": f32[2]) {{\n{body}}}\n")
    }

    #[test]
    fn error_messages_have_line_and_column() {
        let cases = [
            (
                graph("  %0 = relu(%7) : f32[2]\n  return %0\n"),
                "2:13: unknown value %7",
            ),
            (
                graph("  %0 = relu(%x) f32[2]\n  return %0\n"),
                "2:17: expected ':' after operands",
            ),
            (
                graph("  %0 = frob(%x) : f32[2]\n  return %0\n"),
                "2:8: unknown op `frob`",
            ),
            (
                graph("  %0 = relu(%x) : f32[3]\n  return %0\n"),
                "3:10: type mismatch: result 0 \"y\" is declared f32[2] but %0 is f32[3]",
            ),
            (
                graph("  %0 = relu(%x) : f32[2]\n  %0 = relu(%x) : f32[2]\n  return %0\n"),
                "3:3: duplicate definition of %0",
            ),
            (
                graph("  %0 = relu(%1) : f32[2]\n  %1 = relu(%x) : f32[2]\n  return %0\n"),
                "2:13: use of %1 before its definition",
            ),
            (
                "graph @g(%x: f32[2], %x: f32[2]) -> () {\n  return\n}".into(),
                "1:22: duplicate definition of %x",
            ),
            (graph("  return %y\n"), "2:10: unknown value %y"),
            (
                graph("  return\n"),
                "2:3: return gives 0 value(s) but the signature declares 1 result(s)",
            ),
            (
                graph("  %0:2 = identity_n(%x, %x) : f32[2], f32[2]\n  return %0\n"),
                "3:10: %0 has 2 results; use one of them, like %0#0",
            ),
            (
                graph("  %0:2 = identity_n(%x, %x) : f32[2], f32[2]\n  return %0#2\n"),
                "3:10: %0 has 2 results, so no %0#2",
            ),
            (
                graph("  %0 = identity_n(%x, %x) : f32[2], f32[2]\n  return %0\n"),
                "2:29: %0 is defined with one result but 2 types are given; define it as %0:2",
            ),
            (
                graph("  %0 = const dense<[1.0, 2.0, 3.0]> : f32[2]\n  return %0\n"),
                "2:20: expected a list of 2 elements for axis 0 of f32[2], got 3",
            ),
            (
                graph("  %0 = const dense<[1, 300]> : u8[2]\n  return %0\n"),
                "2:24: integer `300` is out of range for u8",
            ),
            (
                graph("  %0 = const dense<0x0000> : f32[1]\n  return %0\n"),
                "2:20: f32[1] needs 4 bytes of data, got 2",
            ),
            (
                graph("  %0 = const dense<1.0> : f32[?n]\n  return %0\n"),
                "2:27: a constant's type must have known dimensions, got f32[?n]",
            ),
            (
                graph("  %0 = matmul(%x, %x) {transpose_a = true} : f32[2]\n  return %0\n"),
                "2:8: matmul: missing attribute `transpose_b`",
            ),
            (
                graph("  %0 = relu(%x) : f32[2] loc(\"a\n"),
                "2:30: unterminated string",
            ),
            (
                graph("  %0 = relu(%x) : f33[2]\n  return %0\n"),
                "2:19: unknown dtype `f33`",
            ),
            (
                "graph @g() -> () {\n  return\n} extra".into(),
                "3:3: expected the end of the text after the graph",
            ),
            ("".into(), "1:1: expected 'graph'"),
        ];
        for (text, want) in cases {
            assert_eq!(err(&text), want, "{text}");
        }
    }

    #[test]
    fn absurd_sizes_are_errors_not_panics() {
        let cases = [
            (
                "dense<[1.0]> : f32[1000000000000000]",
                "expected a list of 1000000000000000",
            ),
            (
                "dense<splat 1.0> : f32[100000000000]",
                "splat f32[100000000000] is too large",
            ),
            ("dense<0x00> : u8[0,4611686018427387904,4]", "is too large"),
            ("dense<1> : u8[99999999999999999999]", "invalid dimension"),
        ];
        for (dense, want) in cases {
            let text = format!("graph @g() -> () {{\n  %0 = const {dense}\n  return\n}}");
            let e = err(&text);
            assert!(e.contains(want), "{e}");
        }
        // Empty, however large the other axes.
        let text =
            "graph @g() -> () {\n  %0 = const dense<[]> : u8[0,1152921504606846976]\n  return\n}";
        assert_eq!(parse(text).unwrap().len(), 1);
        let deep = format!(
            "graph @g() -> () {{\n  %0 = const dense<{}> : f32[]",
            "[".repeat(100_000)
        );
        assert!(err(&deep).ends_with("constant data is nested too deeply"));
    }

    /// A dense layer `relu(x @ w + b)` fused into one epilogue node whose body holds the weight,
    /// followed by an elementwise group that nests a second fused node.
    fn fused_graph() -> Graph {
        use crate::ops::{DataFormat, FusedKind};
        use std::sync::Arc;
        let mut body = Graph::new("dense_relu");
        let a0 = body.add_input("a0", f32s(&[1, 2]));
        let a1 = body.add_input("a1", f32s(&[3]));
        let w = Tensor::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let w = body.add_const(w, "dense/kernel");
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        };
        let mm = body.add(mm, vec![a0, w], "dense/MatMul").unwrap();
        let bias = Op::BiasAdd {
            format: DataFormat::Nhwc,
        };
        let b = body.add(bias, vec![mm, a1], "dense/BiasAdd").unwrap();
        let r = body.add(Op::Unary(UnaryOp::Relu), vec![b], "").unwrap();
        body.add_output("y", r).unwrap();

        let mut inner = Graph::new("sq");
        let i0 = inner.add_input("t", f32s(&[1, 3]));
        let sq = inner
            .add(Op::Binary(BinaryOp::Mul), vec![i0, i0], "")
            .unwrap();
        inner.add_output("sq", sq).unwrap();
        let mut outer = Graph::new("neg_sq");
        let o0 = outer.add_input("u", f32s(&[1, 3]));
        let fused_sq = Op::Fused {
            kind: FusedKind::Elementwise,
            body: Arc::new(inner),
        };
        let sq = outer.add(fused_sq, vec![o0], "").unwrap();
        let neg = outer.add(Op::Unary(UnaryOp::Neg), vec![sq], "").unwrap();
        outer.add_output("out", neg).unwrap();

        let mut g = Graph::new("net");
        let x = g.add_input("x", f32s(&[1, 2]));
        let bias = g.add_const(
            Tensor::from_vec(&[3], vec![0.5f32, -1.0, 0.0]),
            "dense/bias",
        );
        let epilogue = Op::Fused {
            kind: FusedKind::Epilogue,
            body: Arc::new(body),
        };
        let d = g.add(epilogue, vec![x, bias], "dense").unwrap();
        let elementwise = Op::Fused {
            kind: FusedKind::Elementwise,
            body: Arc::new(outer),
        };
        let y = g.add(elementwise, vec![d], "act").unwrap();
        g.add_output("y", y).unwrap();
        g
    }

    const FUSED_GOLDEN: &str = r#"graph @net(%x: f32[1,2]) -> ("y": f32[1,3]) {
  %0 = const dense<[0.5, -1.0, 0.0]> : f32[3] loc("dense/bias")
  %1 = fused.epilogue(%x, %0) {body = graph @dense_relu(%a0: f32[1,2], %a1: f32[3]) -> ("y": f32[1,3]) {
    %0 = const dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : f32[2,3] loc("dense/kernel")
    %1 = matmul(%a0, %0) {transpose_a = false, transpose_b = false} : f32[1,3] loc("dense/MatMul")
    %2 = bias_add(%1, %a1) {format = "NHWC"} : f32[1,3] loc("dense/BiasAdd")
    %3 = relu(%2) : f32[1,3]
    return %3
  }} : f32[1,3] loc("dense")
  %2 = fused.elementwise(%1) {body = graph @neg_sq(%u: f32[1,3]) -> ("out": f32[1,3]) {
    %0 = fused.elementwise(%u) {body = graph @sq(%t: f32[1,3]) -> ("sq": f32[1,3]) {
      %0 = mul(%t, %t) : f32[1,3]
      return %0
    }} : f32[1,3]
    %1 = neg(%0) : f32[1,3]
    return %1
  }} : f32[1,3] loc("act")
  return %2
}
"#;

    #[test]
    fn fused_golden_text() {
        let g = fused_graph();
        crate::verify(&g).unwrap();
        assert_eq!(print(&g), FUSED_GOLDEN);
        let back = parse(FUSED_GOLDEN).unwrap();
        assert!(back.structurally_eq(&g));
        crate::verify(&back).unwrap();
        assert_eq!(print(&back), FUSED_GOLDEN);
        // The body means the same after the round trip.
        let x = Tensor::from_vec(&[1, 2], vec![1.0f32, -2.0]);
        let want = crate::interp::run(&g, std::slice::from_ref(&x)).unwrap();
        let got = crate::interp::run(&back, &[x]).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn print_options_apply_inside_bodies() {
        let mut text = FUSED_GOLDEN.replace(
            "dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]>",
            "dense<0x0000803F0000004000004040000080400000A0400000C040>",
        );
        let hex = PrintOptions {
            hex_constants_above: 4,
            ..PrintOptions::default()
        };
        assert_eq!(print_with(&fused_graph(), &hex), text);
        let elided = PrintOptions {
            elide_constants_above: Some(4),
            ..PrintOptions::default()
        };
        text = print_with(&fused_graph(), &elided);
        assert!(
            text.contains("\n    %0 = const dense<elided 24 B> : f32[2,3] loc(\"dense/kernel\")\n"),
            "{text}"
        );
        assert_eq!(
            err(&text),
            "4:22: constant %0 was elided when printed; print with full constants to parse it"
        );
    }

    #[test]
    fn nested_graphs_have_their_own_scope() {
        // An outer value is not visible in a body.
        let leak = FUSED_GOLDEN.replace("%0 = mul(%t, %t)", "%0 = mul(%t, %x)");
        assert_eq!(err(&leak), "12:20: unknown value %x");
        // Numbers restart in a body; a number defined only in the enclosing graph, or in a
        // later body, is unknown rather than "used before its definition".
        let later = FUSED_GOLDEN.replace("%1 = neg(%0)", "%1 = neg(%2)");
        assert_eq!(err(&later), "15:14: unknown value %2");
        let before = FUSED_GOLDEN.replace("%3 = relu(%2)", "%3 = relu(%4)");
        assert_eq!(err(&before), "7:15: unknown value %4");
        // The enclosing graph's numbering resumes after a body.
        let after = FUSED_GOLDEN.replace("return %2\n}", "return %1\n}");
        let g = parse(&after).unwrap();
        assert_eq!(g.node(g.outputs()[0].value.node).name, "dense");
        let wrong_return = FUSED_GOLDEN.replace("    return %3\n", "    return %3, %3\n");
        assert_eq!(
            err(&wrong_return),
            "8:5: return gives 2 value(s) but the signature declares 1 result(s)"
        );
    }

    #[test]
    fn nesting_depth_is_bounded() {
        // A chain of bodies, each an identity around the next.
        let nest = |depth: usize| {
            let mut text = String::from("graph @g(%x: f32[2]) -> (\"y\": f32[2]) {\n");
            for _ in 0..depth {
                text.push_str(
                    "%0 = fused.elementwise(%x) {body = graph @g(%x: f32[2]) -> (\"y\": f32[2]) {\n",
                );
            }
            text.push_str("%0 = identity(%x) : f32[2]\nreturn %0\n");
            text.push_str(&"}} : f32[2]\nreturn %0\n".repeat(depth));
            text.push_str("}\n");
            text
        };
        let g = parse(&nest(parse::MAX_GRAPH_DEPTH)).unwrap();
        crate::verify(&g).unwrap();
        assert_eq!(parse(&print(&g)).unwrap(), g);
        let e = err(&nest(parse::MAX_GRAPH_DEPTH + 1));
        assert_eq!(e, "18:36: graphs are nested too deeply (at most 16 levels)");
        // Far deeper text fails the same way, without exhausting the stack.
        let e = err(&nest(100_000));
        assert!(
            e.ends_with("graphs are nested too deeply (at most 16 levels)"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_body_is_reported_where_it_is() {
        let text = FUSED_GOLDEN.replace("%3 = relu(%2) : f32[1,3]", "%3 = relu(%2) : f32[1,4]");
        let e = err(&text);
        assert_eq!(
            e,
            "8:12: type mismatch: result 0 \"y\" is declared f32[1,3] but %3 is f32[1,4]"
        );
        // A body that parses but does not fit its node is the verifier's to catch.
        let text = FUSED_GOLDEN
            .replace("%3 = relu(%2) : f32[1,3]", "%3 = relu(%2) : f32[1,4]")
            .replace(
                "-> (\"y\": f32[1,3]) {\n    %0 = const",
                "-> (\"y\": f32[1,4]) {\n    %0 = const",
            );
        let g = parse(&text).unwrap();
        assert!(crate::verify(&g).is_err());
    }

    /// The nested-graph example in the module docs.
    const FUSED_DOC_EXAMPLE: &str = r#"graph @net(%x: f32[1,16], %b: f32[32]) -> ("y": f32[1,32]) {
  %0 = fused.epilogue(%x, %b) {body = graph @dense_relu(%a0: f32[1,16], %a1: f32[32]) -> ("y": f32[1,32]) {
    %0 = const dense<splat 0.5> : f32[16,32]
    %1 = matmul(%a0, %0) {transpose_a = false, transpose_b = false} : f32[1,32]
    %2 = bias_add(%1, %a1) {format = "NHWC"} : f32[1,32]
    %3 = relu(%2) : f32[1,32]
    return %3
  }} : f32[1,32] loc("dense")
  return %0
}
"#;

    #[test]
    fn fused_doc_example_parses_verifies_and_prints_the_same() {
        let g = parse(FUSED_DOC_EXAMPLE).unwrap();
        crate::verify(&g).unwrap();
        assert_eq!(print(&g), FUSED_DOC_EXAMPLE);
    }

    #[test]
    fn a_cyclic_body_prints_its_note_inside_the_body() {
        use crate::ops::FusedKind;
        let mut body = Graph::new("loop");
        let t = body.add_input("t", f32s(&[2]));
        let a = body.add(Op::Unary(UnaryOp::Neg), vec![t], "a").unwrap();
        let b = body.add(Op::Unary(UnaryOp::Abs), vec![a], "b").unwrap();
        body.set_input(a.node, 0, b);
        body.add_output("y", b).unwrap();
        let mut g = Graph::new("g");
        let x = g.add_input("x", f32s(&[2]));
        let op = Op::Fused {
            kind: FusedKind::Elementwise,
            body: std::sync::Arc::new(body),
        };
        let f = g.add_node_typed(op, vec![x], vec![f32s(&[2])], "").unwrap();
        g.add_output("y", ValueId::first(f)).unwrap();
        let text = print(&g);
        let want = "  %0 = fused.elementwise(%x) {body = graph @loop(%t: f32[2]) -> (\"y\": f32[2]) {\n    \
                    ; graph `loop` has a cycle through node `a`; nodes are printed in insertion order\n    \
                    %0 = neg(%1) : f32[2] loc(\"a\")\n    \
                    %1 = abs(%0) : f32[2] loc(\"b\")\n    \
                    return %1\n  \
                    }} : f32[2]\n";
        assert!(text.contains(want), "{text}");
    }

    #[test]
    fn elided_constants_print_for_people_and_refuse_to_parse() {
        let mut g = Graph::new("big");
        let vals: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let big = g.add_const(Tensor::from_vec(&[100], vals), "w");
        let zeros = g.add_const(Tensor::zeros(DType::F32, &[100]), "");
        let small = g.add_const(Tensor::from_vec(&[2], vec![1i32, 2]), "");
        let sum = g.add_node_typed(
            Op::Binary(BinaryOp::Add),
            vec![big, zeros],
            vec![f32s(&[100])],
            "",
        );
        g.add_output("sum", ValueId::first(sum.unwrap())).unwrap();
        g.add_output("small", small).unwrap();
        let opts = PrintOptions {
            elide_constants_above: Some(10),
            ..PrintOptions::default()
        };
        let text = print_with(&g, &opts);
        let first = "  %0 = const dense<elided 400 B> : f32[100] loc(\"w\")\n";
        assert!(text.contains(first), "{text}");
        assert!(
            text.contains("%1 = const dense<splat 0.0> : f32[100]\n"),
            "{text}"
        );
        assert!(
            text.contains("%2 = const dense<[1, 2]> : i32[2]\n"),
            "{text}"
        );
        assert_eq!(
            err(&text),
            "2:20: constant %0 was elided when printed; print with full constants to parse it"
        );
        // The default prints everything, in hex above 64 elements.
        let full = print(&g);
        assert!(
            full.contains("%0 = const dense<0x000000000000803F"),
            "{full}"
        );
        assert!(parse(&full).unwrap().structurally_eq(&g));
    }
}
