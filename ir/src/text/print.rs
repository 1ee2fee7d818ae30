//! The printer: writes a graph in the text format (see the [module docs](super)).
//!
//! With the default options the output always parses back to the same graph (as long as fused
//! bodies nest no deeper than the parser's limit of 16); constants are written as a list
//! literal, as `splat V`, or as hex bytes, whichever is exact and readable. Nested graphs (fused
//! bodies) are printed by the same code, one indentation level deeper, with the same options.

use super::elem::{round_trips, TextElem};
use super::{local_name, write_name, write_quoted, write_type};
use crate::ops::{AttrValue, Op};
use crate::{Graph, NodeId, Tensor, ValueId};
use ndarray::ArrayD;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

/// How to print a graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintOptions {
    /// When set, constants with more elements than this print as `dense<elided 1.6 MB>`: for
    /// dumps meant for people; such text does not parse back.
    pub elide_constants_above: Option<usize>,
    /// Constants with more elements than this print as hex bytes rather than a list literal.
    pub hex_constants_above: usize,
}

impl Default for PrintOptions {
    /// Full, round-trippable output; list literals up to 64 elements.
    fn default() -> PrintOptions {
        PrintOptions {
            elide_constants_above: None,
            hex_constants_above: 64,
        }
    }
}

/// The constants a graph printed with [`print_external`] refers to as `dense<extern N>`: the
/// tensors themselves, each once (a tensor shared by several constants, or by several graphs
/// printed with one table, is one entry), to be stored next to the text and handed back to
/// [`parse_with_constants`](super::parse_with_constants).
#[derive(Debug, Default)]
pub struct ConstTable {
    /// Constants of more bytes than this go to the table; smaller ones stay in the text.
    above_bytes: usize,
    tensors: Vec<Arc<Tensor>>,
    /// Each tensor's entry, by the address of its allocation.
    index: HashMap<*const Tensor, usize>,
}

impl ConstTable {
    /// An empty table taking constants of more than `above_bytes` bytes.
    pub fn new(above_bytes: usize) -> ConstTable {
        ConstTable {
            above_bytes,
            ..ConstTable::default()
        }
    }

    /// The tensors, entry `N` at index `N`.
    pub fn tensors(&self) -> &[Arc<Tensor>] {
        &self.tensors
    }

    /// The entry of `t`, added if it is new.
    fn entry(&mut self, t: &Arc<Tensor>) -> usize {
        let next = self.tensors.len();
        let n = *self.index.entry(Arc::as_ptr(t)).or_insert(next);
        if n == next {
            self.tensors.push(Arc::clone(t));
        }
        n
    }
}

/// Prints `g` in full except that constants larger than `table` takes are written as
/// `dense<extern N> : type`, entry `N` of `table` (added to it): the form an artifact stores,
/// text for the graph and raw bytes for its weights.
pub fn print_external(g: &Graph, table: &mut ConstTable) -> String {
    let cell = RefCell::new(std::mem::take(table));
    let mut out = String::new();
    write_graph(&mut out, g, &PrintOptions::default(), Some(&cell), 0);
    out.push('\n');
    *table = cell.into_inner();
    out
}

/// Prints `g` in full: the result parses back to `g`.
pub fn print(g: &Graph) -> String {
    print_with(g, &PrintOptions::default())
}

/// Prints `g` with the given options.
pub fn print_with(g: &Graph, opts: &PrintOptions) -> String {
    let mut out = String::new();
    write_graph(&mut out, g, opts, None, 0);
    out.push('\n');
    out
}

/// Appends `g` from `graph @name` to its closing `}` (no newline after it). Its nodes are
/// indented `indent + 2` spaces and its closing brace `indent`: a nested graph (a fused body)
/// is printed one level deeper than the node that holds it, its numbering its own.
fn write_graph(
    out: &mut String,
    g: &Graph,
    opts: &PrintOptions,
    table: Option<&RefCell<ConstTable>>,
    indent: usize,
) {
    // A graph with a cycle cannot be ordered; print it anyway (dumps of broken graphs are
    // what one debugs with), in insertion order, saying so: before the graph at top level,
    // as the first line of the body when nested (a comment there cannot swallow the header).
    let (order, cycle) = match g.topo_order() {
        Ok(order) => (order, None),
        Err(e) => (
            g.node_ids(),
            Some(format!("; {e}; nodes are printed in insertion order")),
        ),
    };
    if let (Some(c), 0) = (&cycle, indent) {
        out.push_str(c);
        out.push('\n');
    }
    let inputs: HashMap<NodeId, &str> = g
        .inputs()
        .iter()
        .map(|i| (i.node, i.name.as_str()))
        .collect();
    // Number every node first, so that even uses that come before their definition (in a
    // cyclic graph) print.
    let mut numbers: HashMap<NodeId, usize> = HashMap::new();
    for &id in &order {
        if !inputs.contains_key(&id) && !g.node(id).outputs.is_empty() {
            numbers.insert(id, numbers.len());
        }
    }
    let p = Printer {
        g,
        opts,
        table,
        inputs,
        numbers,
        indent: indent + 2,
    };

    out.push_str("graph @");
    write_name(out, &g.name);
    out.push('(');
    for (i, input) in g.inputs().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&local_name(&input.name));
        out.push_str(": ");
        write_type(out, &input.ty);
    }
    out.push_str(") -> (");
    for (i, output) in g.outputs().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_quoted(out, &output.name);
        out.push_str(": ");
        match p.value_exists(output.value) {
            true => write_type(out, g.value_type(output.value)),
            false => out.push_str("<missing>"),
        }
    }
    out.push_str(") {\n");
    if let Some(c) = cycle.filter(|_| indent > 0) {
        p.pad(out);
        out.push_str(&c);
        out.push('\n');
    }
    for &id in &order {
        if !p.inputs.contains_key(&id) {
            p.node(out, id);
        }
    }
    p.pad(out);
    out.push_str("return");
    for (i, output) in g.outputs().iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        p.value(out, output.value);
    }
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
    out.push('}');
}

struct Printer<'a> {
    g: &'a Graph,
    opts: &'a PrintOptions,
    /// Where large constants go, when printing for an artifact.
    table: Option<&'a RefCell<ConstTable>>,
    inputs: HashMap<NodeId, &'a str>,
    numbers: HashMap<NodeId, usize>,
    /// Spaces before each line of the graph's body.
    indent: usize,
}

impl Printer<'_> {
    /// Appends the indentation of a body line.
    fn pad(&self, out: &mut String) {
        out.extend(std::iter::repeat_n(' ', self.indent));
    }

    fn value_exists(&self, v: ValueId) -> bool {
        self.g.contains(v.node) && (v.output as usize) < self.g.node(v.node).outputs.len()
    }

    /// Appends a use of `v`: `%x` (an input), `%N` (a single result) or `%N#i`.
    fn value(&self, out: &mut String, v: ValueId) {
        if !self.value_exists(v) {
            // Only a graph broken through the API gets here; say what is wrong rather than
            // panic (the text will not parse).
            let _ = write!(out, "<missing {}#{}>", v.node, v.output);
            return;
        }
        if let Some(name) = self.inputs.get(&v.node) {
            out.push_str(&local_name(name));
            return;
        }
        let n = self.numbers[&v.node];
        if self.g.node(v.node).outputs.len() == 1 {
            let _ = write!(out, "%{n}");
        } else {
            let _ = write!(out, "%{n}#{}", v.output);
        }
    }

    fn node(&self, out: &mut String, id: NodeId) {
        let node = self.g.node(id);
        self.pad(out);
        match node.outputs.len() {
            0 => {}
            1 => {
                let _ = write!(out, "%{} = ", self.numbers[&id]);
            }
            k => {
                let _ = write!(out, "%{}:{k} = ", self.numbers[&id]);
            }
        }
        if let Op::Const(t) = &node.op {
            out.push_str("const ");
            self.dense(out, t);
        } else {
            out.push_str(node.op.mnemonic());
            out.push('(');
            for (i, &v) in node.inputs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                self.value(out, v);
            }
            out.push(')');
            let attrs = node.op.attrs();
            if !attrs.is_empty() {
                out.push_str(" {");
                for (i, (name, value)) in attrs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_name(out, name);
                    out.push_str(" = ");
                    self.attr(out, value);
                }
                out.push('}');
            }
            for (i, t) in node.outputs.iter().enumerate() {
                out.push_str(if i == 0 { " : " } else { ", " });
                write_type(out, t);
            }
        }
        if !node.name.is_empty() {
            out.push_str(" loc(");
            write_quoted(out, &node.name);
            out.push(')');
        }
        out.push('\n');
    }

    fn attr(&self, out: &mut String, value: &AttrValue) {
        match value {
            AttrValue::Bool(b) => b.write_literal(out),
            AttrValue::Int(i) => i.write_literal(out),
            AttrValue::Float(x) => x.write_literal(out),
            AttrValue::Ints(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.write_literal(out);
                }
                out.push(']');
            }
            AttrValue::Str(s) => write_quoted(out, s),
            AttrValue::DType(d) => out.push_str(d.name()),
            AttrValue::Tensor(t) => self.dense(out, t),
            AttrValue::Graph(g) => write_graph(out, g, self.opts, self.table, self.indent),
        }
    }

    /// Appends `dense<payload> : type` (`dense<extern N>` for a constant the table takes).
    fn dense(&self, out: &mut String, t: &Arc<Tensor>) {
        out.push_str("dense<");
        match self.table.map(RefCell::borrow_mut) {
            Some(mut table) if t.size_bytes() > table.above_bytes => {
                let _ = write!(out, "extern {}", table.entry(t));
            }
            _ => crate::tensor_match!(&**t, a => payload(out, a, self.opts)),
        }
        out.push_str("> : ");
        write_type(out, &t.ty());
    }
}

/// Appends a constant's data, choosing among its forms: `splat` when every element has the
/// same bits (short, exact, and readable at any size, so it wins over elision), else `elided`
/// when asked for, else a list literal when it is small and every element reads back exactly,
/// else hex.
fn payload<T: TextElem>(out: &mut String, a: &ArrayD<T>, opts: &PrintOptions) {
    let n = a.len();
    if let Some(&first) = a.iter().next() {
        if n >= 2 && round_trips(first) && a.iter().all(|x| x.bits() == first.bits()) {
            out.push_str("splat ");
            first.write_literal(out);
            return;
        }
    }
    if opts.elide_constants_above.is_some_and(|m| n > m) {
        out.push_str("elided ");
        out.push_str(&human_size(n * T::DTYPE.size_bytes()));
        return;
    }
    if n <= opts.hex_constants_above && a.iter().all(|&x| round_trips(x)) {
        let mut it = a.iter();
        list(out, &mut it, a.shape());
        return;
    }
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut bytes = Vec::with_capacity(n * T::DTYPE.size_bytes());
    for &x in a {
        x.write_le(&mut bytes);
    }
    out.reserve(2 + 2 * bytes.len());
    out.push_str("0x");
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// Appends the elements as a list nested like `dims` (a bare element for a scalar).
fn list<'a, T: TextElem>(out: &mut String, it: &mut impl Iterator<Item = &'a T>, dims: &[usize]) {
    match dims.split_first() {
        None => {
            if let Some(&x) = it.next() {
                x.write_literal(out);
            }
        }
        Some((&d, rest)) => {
            out.push('[');
            for i in 0..d {
                if i > 0 {
                    out.push_str(", ");
                }
                list(out, it, rest);
            }
            out.push(']');
        }
    }
}

/// A byte count for people: `812 B`, `1.6 MB` (decimal units).
fn human_size(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut x = bytes as f64 / 1000.0;
    let mut unit = 0;
    while x >= 999.95 && unit + 1 < UNITS.len() {
        x /= 1000.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(812), "812 B");
        assert_eq!(human_size(784 * 512 * 4), "1.6 MB");
        assert_eq!(human_size(999_999), "1.0 MB");
        assert_eq!(human_size(3_200), "3.2 kB");
    }
}
