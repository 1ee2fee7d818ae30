//! The parser: recursive descent over the lexer's tokens (grammar in the [module docs](super)).
//!
//! It builds nodes with `add_node_typed`, taking output types as written; callers run the
//! verifier. It never panics: every malformed input, including absurd sizes, is a
//! [`ParseError`] with the line and column of the token at fault.

use super::elem::TextElem;
use super::lexer::{lex, Pos, Tok, Token};
use super::{local_name, type_text, ParseError};
use crate::ops::{AttrValue, Op};
use crate::{DType, Dim, Graph, NodeId, Shape, Tensor, TensorType, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

type PResult<T> = Result<T, ParseError>;

/// Deeper list literals than this are rejected (no tensor has that rank), which also bounds
/// the parser's recursion.
const MAX_LIST_DEPTH: usize = 64;

/// Graphs nest (a fused node's body is a graph attribute) at most this deep, which bounds
/// the parser's recursion through nested graphs.
pub(crate) const MAX_GRAPH_DEPTH: usize = 16;

/// `splat` materializes its tensor; refuse sizes that would only exhaust memory.
const MAX_SPLAT_BYTES: usize = 1 << 32;

/// Parses a graph from its text form.
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    parse_with_constants(text, &[])
}

/// Parses a graph whose `dense<extern N>` constants are entry `N` of `constants` (as
/// [`print_external`](super::print_external) wrote it): each such constant shares the entry's
/// tensor, whose type must be the one written.
pub fn parse_with_constants(text: &str, constants: &[Arc<Tensor>]) -> Result<Graph, ParseError> {
    let mut p = Parser {
        constants,
        toks: lex(text),
        at: 0,
        g: Graph::default(),
        inputs: HashMap::new(),
        nodes: HashMap::new(),
        depth: 0,
    };
    p.graph()?;
    if *p.peek() != Tok::Eof {
        return p.fail_here("expected the end of the text after the graph");
    }
    Ok(p.g)
}

/// A constant's data as written, before its type (which comes after it) is known.
enum Payload<'a> {
    /// `extern N`: entry `N` of the constant table.
    Extern(usize, Pos),
    Splat(&'a str, Pos),
    Hex(Vec<u8>, Pos),
    List(Lit<'a>),
}

/// A list literal: an element's text, or a bracketed list.
enum Lit<'a> {
    Elem(&'a str, Pos),
    List(Vec<Lit<'a>>, Pos),
}

/// A use of a value, with how it was written (for messages).
struct Use {
    value: ValueId,
    pos: Pos,
    text: String,
}

struct Parser<'a> {
    /// The table `dense<extern N>` refers to.
    constants: &'a [Arc<Tensor>],
    toks: Vec<Token<'a>>,
    at: usize,
    /// The graph being read (the innermost one, inside a nested graph).
    g: Graph,
    /// Its inputs by name.
    inputs: HashMap<String, ValueId>,
    /// Its numbered nodes: the node and its number of results.
    nodes: HashMap<usize, (NodeId, usize)>,
    /// How many graphs enclose `g`.
    depth: usize,
}

fn error<T>(pos: Pos, message: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        line: pos.line,
        col: pos.col,
        message: message.into(),
    })
}

/// An error at `tok`: its own message when the lexer could not read it, else `message`.
fn fail<T>(tok: &Tok<'_>, pos: Pos, message: impl Into<String>) -> PResult<T> {
    match tok {
        Tok::Error(m) => error(pos, m.as_str()),
        _ => error(pos, message),
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok<'a> {
        &self.toks[self.at].tok
    }

    fn pos(&self) -> Pos {
        self.toks[self.at].pos
    }

    /// Takes the next token. The last token (end of text or a lexer error) stays put.
    fn bump(&mut self) -> Token<'a> {
        if self.at + 1 < self.toks.len() {
            let pos = self.toks[self.at].pos;
            let tok = std::mem::replace(&mut self.toks[self.at].tok, Tok::Eof);
            self.at += 1;
            Token { tok, pos }
        } else {
            self.toks[self.at].clone()
        }
    }

    fn fail_here<T>(&self, message: impl Into<String>) -> PResult<T> {
        fail(self.peek(), self.pos(), message)
    }

    fn eat(&mut self, c: u8) -> bool {
        let found = *self.peek() == Tok::Punct(c);
        if found {
            self.bump();
        }
        found
    }

    fn expect(&mut self, c: u8, message: &str) -> PResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.fail_here(message)
        }
    }

    fn at_keyword(&self, kw: &str) -> bool {
        *self.peek() == Tok::Ident(kw)
    }

    /// A whole graph, from `graph` to its closing `}`, read into `self.g`.
    fn graph(&mut self) -> PResult<()> {
        if !self.at_keyword("graph") {
            return self.fail_here("expected 'graph'");
        }
        self.bump();
        let t = self.bump();
        let name = match t.tok {
            Tok::Global(s) => s,
            other => return fail(&other, t.pos, "expected the graph's name, like @main"),
        };
        self.g = Graph::new(name);
        self.expect(b'(', "expected '(' after the graph's name")?;
        if !self.eat(b')') {
            loop {
                self.param()?;
                if !self.eat(b',') {
                    self.expect(b')', "expected ',' or ')' after an input")?;
                    break;
                }
            }
        }
        if *self.peek() != Tok::Arrow {
            return self.fail_here("expected '->' after the inputs");
        }
        self.bump();
        self.expect(b'(', "expected '(' before the results")?;
        let mut results = Vec::new();
        if !self.eat(b')') {
            loop {
                let t = self.bump();
                let name = match t.tok {
                    Tok::Str(s) => s,
                    other => return fail(&other, t.pos, "expected a result's name in quotes"),
                };
                self.expect(b':', "expected ':' after the result's name")?;
                results.push((name, self.ty()?));
                if !self.eat(b',') {
                    self.expect(b')', "expected ',' or ')' after a result")?;
                    break;
                }
            }
        }
        self.expect(b'{', "expected '{' before the graph's body")?;
        while !self.at_keyword("return") {
            self.node()?;
        }
        let ret = self.bump();
        let mut values = Vec::new();
        if *self.peek() != Tok::Punct(b'}') {
            loop {
                values.push(self.value()?);
                if !self.eat(b',') {
                    break;
                }
            }
        }
        self.expect(b'}', "expected ',' or '}' after the returned values")?;
        if values.len() != results.len() {
            return error(
                ret.pos,
                format!(
                    "return gives {} value(s) but the signature declares {} result(s)",
                    values.len(),
                    results.len()
                ),
            );
        }
        for (i, (u, (name, ty))) in values.into_iter().zip(results).enumerate() {
            let actual = self.g.value_type(u.value);
            if *actual != ty {
                return error(
                    u.pos,
                    format!(
                        "type mismatch: result {i} {name:?} is declared {} but {} is {}",
                        type_text(&ty),
                        u.text,
                        type_text(actual)
                    ),
                );
            }
            if let Err(e) = self.g.add_output(name, u.value) {
                return error(u.pos, e.to_string());
            }
        }
        Ok(())
    }

    /// `%name: type`, a graph input.
    fn param(&mut self) -> PResult<()> {
        let t = self.bump();
        let name = match t.tok {
            Tok::Local(s) => s,
            Tok::LocalNum(_) => {
                return error(t.pos, "graph inputs are named, like %x or %\"x:0\"");
            }
            other => return fail(&other, t.pos, "expected a graph input, like %x"),
        };
        self.expect(b':', "expected ':' after the input's name")?;
        let ty = self.ty()?;
        if self.inputs.contains_key(&name) {
            return error(
                t.pos,
                format!("duplicate definition of {}", local_name(&name)),
            );
        }
        let v = self.g.add_input(name.clone(), ty);
        self.inputs.insert(name, v);
        Ok(())
    }

    /// `f32[1,?n,?]`.
    fn ty(&mut self) -> PResult<TensorType> {
        let t = self.bump();
        let dtype = match t.tok {
            Tok::Ident(s) => match s.parse::<DType>() {
                Ok(d) => d,
                Err(m) => return error(t.pos, m),
            },
            other => return fail(&other, t.pos, "expected a type, like f32[2,?n]"),
        };
        self.expect(b'[', "expected '[' after the element type")?;
        let mut dims = Vec::new();
        if !self.eat(b']') {
            loop {
                let t = self.bump();
                dims.push(match t.tok {
                    Tok::Num(s) => match s.parse::<usize>() {
                        Ok(n) => Dim::Known(n),
                        Err(_) => return error(t.pos, format!("invalid dimension `{s}`")),
                    },
                    Tok::Unknown => Dim::Unknown,
                    Tok::Sym(s) => Dim::Sym(s.into()),
                    other => {
                        return fail(&other, t.pos, "expected a dimension: a size, ?name or ?")
                    }
                });
                if !self.eat(b',') {
                    self.expect(b']', "expected ',' or ']' in the shape")?;
                    break;
                }
            }
        }
        Ok(TensorType::new(dtype, Shape(dims)))
    }

    /// One node: `[%N[:k] =] op(operands) [{attrs}] [: types] [loc("name")]`, or a constant.
    fn node(&mut self) -> PResult<()> {
        // The defined number, its result count, and where it was written.
        let mut def: Option<(usize, usize, Pos)> = None;
        match *self.peek() {
            Tok::LocalNum(n) => {
                let pos = self.pos();
                self.bump();
                let mut k = 1;
                if self.eat(b':') {
                    let t = self.bump();
                    let count = match &t.tok {
                        Tok::Num(s) => s.parse::<usize>().ok().filter(|&k| k >= 2),
                        _ => None,
                    };
                    k = match count {
                        Some(k) => k,
                        None => {
                            return fail(
                                &t.tok,
                                t.pos,
                                "expected the number of results (2 or more) after ':'",
                            )
                        }
                    };
                }
                self.expect(b'=', "expected '=' after the defined value")?;
                if self.nodes.contains_key(&n) {
                    return error(pos, format!("duplicate definition of %{n}"));
                }
                def = Some((n, k, pos));
            }
            Tok::Local(_) => {
                return self.fail_here(
                    "nodes define numbered values (%0, %1, ...); names are for graph inputs",
                );
            }
            _ => {}
        }
        let t = self.bump();
        let (mnemonic, mpos) = match t.tok {
            Tok::Ident(s) => (s, t.pos),
            other => {
                let what = match def {
                    Some(_) => "expected an op name",
                    None => "expected a node or 'return'",
                };
                return fail(&other, t.pos, what);
            }
        };
        let node = match mnemonic {
            "const" => {
                let Some((n, k, dpos)) = def else {
                    return error(mpos, "a constant defines a value: write %N = const ...");
                };
                if k != 1 {
                    return error(dpos, "a constant has one result");
                }
                let tensor = self.dense(&format!("constant %{n}"))?;
                let name = self.loc()?;
                self.g.add_const_shared(tensor, name).node
            }
            "input" => {
                return error(
                    mpos,
                    "graph inputs are declared in the signature, not as nodes",
                );
            }
            _ => self.op_node(mnemonic, mpos, def)?,
        };
        if let Some((n, k, _)) = def {
            self.nodes.insert(n, (node, k));
        }
        Ok(())
    }

    /// The rest of a node after its op name.
    fn op_node(
        &mut self,
        mnemonic: &str,
        mpos: Pos,
        def: Option<(usize, usize, Pos)>,
    ) -> PResult<NodeId> {
        self.expect(b'(', "expected '(' after the op name")?;
        let mut inputs = Vec::new();
        if !self.eat(b')') {
            loop {
                inputs.push(self.value()?.value);
                if !self.eat(b',') {
                    self.expect(b')', "expected ',' or ')' after an operand")?;
                    break;
                }
            }
        }
        let mut attrs: Vec<(String, AttrValue)> = Vec::new();
        if self.eat(b'{') && !self.eat(b'}') {
            loop {
                let t = self.bump();
                let name = match t.tok {
                    Tok::Ident(s) => s.to_string(),
                    Tok::Str(s) => s,
                    other => return fail(&other, t.pos, "expected an attribute name"),
                };
                if attrs.iter().any(|(n, _)| *n == name) {
                    return error(t.pos, format!("duplicate attribute `{name}`"));
                }
                self.expect(b'=', "expected '=' after the attribute's name")?;
                let value = self.attr_value(&name)?;
                attrs.push((name, value));
                if !self.eat(b',') {
                    self.expect(b'}', "expected ',' or '}' after an attribute")?;
                    break;
                }
            }
        }
        let op = match Op::from_parts(mnemonic, &attrs) {
            Ok(op) => op,
            Err(m) => return error(mpos, m),
        };
        let mut types = Vec::new();
        if let Some((n, k, _)) = def {
            self.expect(b':', "expected ':' after operands")?;
            let tpos = self.pos();
            loop {
                types.push(self.ty()?);
                if !self.eat(b',') {
                    break;
                }
            }
            if types.len() != k {
                let message = if k == 1 {
                    format!(
                        "%{n} is defined with one result but {} types are given; define it as %{n}:{}",
                        types.len(),
                        types.len()
                    )
                } else {
                    format!(
                        "%{n} is defined with {k} results but {} type(s) are given",
                        types.len()
                    )
                };
                return error(tpos, message);
            }
        } else if *self.peek() == Tok::Punct(b':') {
            return self.fail_here(
                "a node without results has no types; define its results with %N = or %N:k =",
            );
        }
        let name = self.loc()?;
        match self.g.add_node_typed(op, inputs, types, name) {
            Ok(id) => Ok(id),
            Err(e) => error(mpos, e.to_string()),
        }
    }

    /// An optional `loc("name")`; the empty name when absent.
    fn loc(&mut self) -> PResult<String> {
        if !self.at_keyword("loc") {
            return Ok(String::new());
        }
        self.bump();
        self.expect(b'(', "expected '(' after loc")?;
        let t = self.bump();
        let name = match t.tok {
            Tok::Str(s) => s,
            other => return fail(&other, t.pos, "expected the source name in quotes"),
        };
        self.expect(b')', "expected ')' after the location")?;
        Ok(name)
    }

    /// A use: `%name`, `%N` or `%N#i`.
    fn value(&mut self) -> PResult<Use> {
        let t = self.bump();
        match t.tok {
            Tok::Local(name) => {
                let text = local_name(&name);
                match self.inputs.get(&name) {
                    Some(&value) => Ok(Use {
                        value,
                        pos: t.pos,
                        text,
                    }),
                    None => error(t.pos, format!("unknown value {text}")),
                }
            }
            Tok::LocalNum(n) => {
                let mut index = None;
                if self.eat(b'#') {
                    let u = self.bump();
                    match u.tok {
                        Tok::Num(s) if s.parse::<usize>().is_ok() => index = s.parse().ok(),
                        other => return fail(&other, u.pos, "expected a result index after '#'"),
                    }
                }
                let Some(&(node, k)) = self.nodes.get(&n) else {
                    return error(
                        t.pos,
                        if self.defined_later(n) {
                            format!("use of %{n} before its definition")
                        } else {
                            format!("unknown value %{n}")
                        },
                    );
                };
                let output = match index {
                    None if k == 1 => 0,
                    None => {
                        return error(
                            t.pos,
                            format!("%{n} has {k} results; use one of them, like %{n}#0"),
                        )
                    }
                    Some(_) if k == 1 => {
                        return error(t.pos, format!("%{n} has one result; write it as %{n}"))
                    }
                    Some(i) if i >= k => {
                        return error(t.pos, format!("%{n} has {k} results, so no %{n}#{i}"))
                    }
                    Some(i) => i,
                };
                let text = match index {
                    None => format!("%{n}"),
                    Some(i) => format!("%{n}#{i}"),
                };
                Ok(Use {
                    value: ValueId {
                        node,
                        output: output as u32,
                    },
                    pos: t.pos,
                    text,
                })
            }
            other => fail(&other, t.pos, "expected a value, like %x or %3"),
        }
    }

    /// True when `%n` is defined further on in the current graph (to tell a use before
    /// definition from a typo). Braces are counted so that definitions in nested graphs, and
    /// in the graph around this one, do not count.
    fn defined_later(&self, n: usize) -> bool {
        let mut braces = 0usize;
        for w in self.toks[self.at..].windows(2) {
            match w[0].tok {
                Tok::Punct(b'{') => braces += 1,
                Tok::Punct(b'}') if braces == 0 => return false,
                Tok::Punct(b'}') => braces -= 1,
                Tok::LocalNum(m) if m == n && braces == 0 => {
                    if matches!(w[1].tok, Tok::Punct(b'=' | b':')) {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }

    /// A nested graph as an attribute value. The graph around it is set aside while it is
    /// read: its names and numbers are its own.
    fn nested_graph(&mut self) -> PResult<AttrValue> {
        if self.depth >= MAX_GRAPH_DEPTH {
            return self.fail_here(format!(
                "graphs are nested too deeply (at most {MAX_GRAPH_DEPTH} levels)"
            ));
        }
        let outer_g = std::mem::take(&mut self.g);
        let outer_inputs = std::mem::take(&mut self.inputs);
        let outer_nodes = std::mem::take(&mut self.nodes);
        self.depth += 1;
        let read = self.graph();
        self.depth -= 1;
        let body = std::mem::replace(&mut self.g, outer_g);
        self.inputs = outer_inputs;
        self.nodes = outer_nodes;
        read.map(|()| AttrValue::Graph(Arc::new(body)))
    }

    fn attr_value(&mut self, name: &str) -> PResult<AttrValue> {
        let pos = self.pos();
        let value = match self.toks[self.at].tok {
            Tok::Punct(b'[') => {
                self.bump();
                let mut v = Vec::new();
                if !self.eat(b']') {
                    loop {
                        let t = self.bump();
                        v.push(match t.tok {
                            Tok::Num(s) => match i64::parse_literal(s) {
                                Ok(x) => x,
                                Err(m) => return error(t.pos, m),
                            },
                            other => {
                                return fail(&other, t.pos, "attribute lists hold integers")
                            }
                        });
                        if !self.eat(b',') {
                            self.expect(b']', "expected ',' or ']' in the list")?;
                            break;
                        }
                    }
                }
                AttrValue::Ints(v)
            }
            Tok::Str(ref mut s) => {
                let s = std::mem::take(s);
                self.bump();
                AttrValue::Str(s)
            }
            Tok::Ident("graph") => self.nested_graph()?,
            Tok::Ident("dense") => {
                AttrValue::Tensor(self.dense(&format!("attribute `{name}`"))?)
            }
            Tok::Ident("true") | Tok::Ident("false") => {
                let (text, _) = self.elem_text()?;
                AttrValue::Bool(text == "true")
            }
            Tok::Ident("nan") | Tok::Ident("inf") | Tok::Minus => {
                let (text, pos) = self.elem_text()?;
                match f32::parse_literal(text) {
                    Ok(x) => AttrValue::Float(x),
                    Err(m) => return error(pos, m),
                }
            }
            Tok::Ident(s) => match s.parse::<DType>() {
                Ok(d) => {
                    self.bump();
                    AttrValue::DType(d)
                }
                Err(_) => {
                    return error(
                        pos,
                        format!("unknown attribute value `{s}` (expected a number, string, list, dtype, true, false, dense<...> or graph)"),
                    )
                }
            },
            Tok::Num(s) => {
                self.bump();
                let parsed = if s.contains(['.', 'e', 'E']) {
                    f32::parse_literal(s).map(AttrValue::Float)
                } else {
                    i64::parse_literal(s).map(AttrValue::Int)
                };
                match parsed {
                    Ok(v) => v,
                    Err(m) => return error(pos, m),
                }
            }
            _ => return self.fail_here("expected an attribute value"),
        };
        Ok(value)
    }

    /// One element literal's text: a number, `true`, `false`, `nan`, `inf` or `-inf`.
    fn elem_text(&mut self) -> PResult<(&'a str, Pos)> {
        let t = self.bump();
        match t.tok {
            Tok::Num(s) => Ok((s, t.pos)),
            Tok::Ident(s @ ("true" | "false" | "nan" | "inf")) => Ok((s, t.pos)),
            Tok::Minus => {
                let u = self.bump();
                match u.tok {
                    Tok::Ident("inf") => Ok(("-inf", t.pos)),
                    other => fail(&other, u.pos, "expected inf after '-'"),
                }
            }
            other => fail(
                &other,
                t.pos,
                "expected an element: a number, true, false, nan or inf",
            ),
        }
    }

    /// `dense<data> : type`; `what` names the constant in messages.
    fn dense(&mut self, what: &str) -> PResult<Arc<Tensor>> {
        if !self.at_keyword("dense") {
            return self.fail_here("expected dense<...>");
        }
        self.bump();
        self.expect(b'<', "expected '<' after dense")?;
        let payload = match self.toks[self.at].tok {
            Tok::Ident("splat") => {
                self.bump();
                let (text, pos) = self.elem_text()?;
                Payload::Splat(text, pos)
            }
            Tok::Ident("extern") => {
                self.bump();
                let pos = self.pos();
                let n = match self.toks[self.at].tok {
                    Tok::Num(text) => text.parse::<usize>().ok(),
                    _ => None,
                };
                let Some(n) = n else {
                    return self.fail_here("expected the constant's entry number after extern");
                };
                self.bump();
                Payload::Extern(n, pos)
            }
            Tok::Ident("elided") => {
                return self.fail_here(format!(
                    "{what} was elided when printed; print with full constants to parse it"
                ));
            }
            Tok::Hex(ref mut bytes) => {
                let bytes = std::mem::take(bytes);
                let pos = self.pos();
                self.bump();
                Payload::Hex(bytes, pos)
            }
            _ => Payload::List(self.lit(0)?),
        };
        self.expect(b'>', "expected '>' after the constant's data")?;
        self.expect(b':', "expected ':' and the type after the constant's data")?;
        let tpos = self.pos();
        let ty = self.ty()?;
        let Some(dims) = ty.shape.as_known() else {
            return error(
                tpos,
                format!(
                    "a constant's type must have known dimensions, got {}",
                    type_text(&ty)
                ),
            );
        };
        let Some(count) = element_count(ty.dtype, &dims) else {
            return error(tpos, format!("constant {} is too large", type_text(&ty)));
        };
        let tensor = match payload {
            Payload::Extern(n, pos) => {
                let Some(t) = self.constants.get(n) else {
                    return error(
                        pos,
                        format!(
                            "{what} is entry {n} of the constant table, which has {} entries",
                            self.constants.len()
                        ),
                    );
                };
                if t.ty() != ty {
                    return error(
                        tpos,
                        format!(
                            "{what} is declared {} but entry {n} of the constant table is {}",
                            type_text(&ty),
                            type_text(&t.ty())
                        ),
                    );
                }
                return Ok(Arc::clone(t));
            }
            Payload::Hex(bytes, pos) => {
                Tensor::from_le_bytes(ty.dtype, &dims, &bytes).or_else(|m| error(pos, m))
            }
            Payload::Splat(text, pos) => {
                if count * ty.dtype.size_bytes() > MAX_SPLAT_BYTES {
                    return error(tpos, format!("splat {} is too large", type_text(&ty)));
                }
                crate::with_any_dtype!(ty.dtype, splat_of(&dims, count, text))
                    .or_else(|m| error(pos, m))
            }
            Payload::List(lit) => {
                // Not preallocated: `count` comes from the type and may be absurd; `flatten` checks
                // each list's length before descending, so only written elements are stored.
                let mut elems = Vec::new();
                flatten(&lit, &dims, &ty, &mut elems)?;
                crate::with_any_dtype!(ty.dtype, list_of(&dims, &elems))
                    .or_else(|(m, pos)| error(pos, m))
            }
        };
        tensor.map(Arc::new)
    }

    /// A list literal, nested at most [`MAX_LIST_DEPTH`] deep.
    fn lit(&mut self, depth: usize) -> PResult<Lit<'a>> {
        if *self.peek() != Tok::Punct(b'[') {
            let (text, pos) = self.elem_text()?;
            return Ok(Lit::Elem(text, pos));
        }
        let pos = self.pos();
        if depth >= MAX_LIST_DEPTH {
            return error(pos, "constant data is nested too deeply");
        }
        self.bump();
        let mut items = Vec::new();
        if !self.eat(b']') {
            loop {
                items.push(self.lit(depth + 1)?);
                if !self.eat(b',') {
                    self.expect(b']', "expected ',' or ']' in the constant's data")?;
                    break;
                }
            }
        }
        Ok(Lit::List(items, pos))
    }
}

/// The element count of a tensor of `dims`, if its elements and bytes fit in memory's index
/// range (`ndarray` and `Tensor` rely on that and would panic otherwise).
fn element_count(dtype: DType, dims: &[usize]) -> Option<usize> {
    let mut nonzero: usize = 1;
    let mut empty = false;
    for &d in dims {
        if d == 0 {
            empty = true;
        } else {
            nonzero = nonzero.checked_mul(d)?;
        }
    }
    if nonzero.checked_mul(dtype.size_bytes())? > isize::MAX as usize {
        return None;
    }
    Some(if empty { 0 } else { nonzero })
}

/// Checks that `lit` is nested like `dims` and collects its elements in row-major order.
fn flatten<'a>(
    lit: &Lit<'a>,
    dims: &[usize],
    ty: &TensorType,
    out: &mut Vec<(&'a str, Pos)>,
) -> PResult<()> {
    let axis = ty.rank() - dims.len();
    match (lit, dims.split_first()) {
        (Lit::Elem(text, pos), None) => {
            out.push((text, *pos));
            Ok(())
        }
        (Lit::List(_, pos), None) => error(
            *pos,
            format!(
                "expected an element: the data is nested deeper than {} has axes",
                type_text(ty)
            ),
        ),
        (Lit::Elem(_, pos), Some((d, _))) => error(
            *pos,
            format!(
                "expected a list of {d} elements for axis {axis} of {}",
                type_text(ty)
            ),
        ),
        (Lit::List(items, pos), Some((&d, rest))) => {
            if items.len() != d {
                return error(
                    *pos,
                    format!(
                        "expected a list of {d} elements for axis {axis} of {}, got {}",
                        type_text(ty),
                        items.len()
                    ),
                );
            }
            items
                .iter()
                .try_for_each(|item| flatten(item, rest, ty, out))
        }
    }
}

fn splat_of<T: TextElem>(dims: &[usize], count: usize, text: &str) -> Result<Tensor, String> {
    let x = T::parse_literal(text)?;
    Ok(Tensor::from_vec(dims, vec![x; count]))
}

fn list_of<T: TextElem>(dims: &[usize], elems: &[(&str, Pos)]) -> Result<Tensor, (String, Pos)> {
    let vals = elems
        .iter()
        .map(|&(text, pos)| T::parse_literal(text).map_err(|m| (m, pos)))
        .collect::<Result<Vec<T>, _>>()?;
    Ok(Tensor::from_vec(dims, vals))
}
