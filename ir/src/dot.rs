//! Graphviz DOT output: a picture of a graph for people, with fused groups drawn as clusters.
//!
//! [`to_dot`] writes the DOT text (no Graphviz needed); [`render_svg`] and [`render`] pipe it
//! through the `dot` command. One box per op, labelled with its mnemonic, output types and the
//! tail of its source name (the full name is in the tooltip); graph inputs are ellipses and
//! outputs double ellipses; constants are small grey boxes. A fused node's body is drawn inside
//! a `cluster` subgraph, wired to the nodes around it: an edge runs from the producer of each
//! operand to the body nodes that read the matching body input, and from the body node that
//! computes each result to the consumers of the fused node's output. An `if` or `while` node
//! is a cluster too, holding one cluster per region (`then`/`else`, `cond`/`body`), nested as
//! deep as regions nest: a region's inputs are ellipses fed by the node's operands (an `if`'s
//! condition feeds a `cond` diamond), its outputs double ellipses, which feed the consumers of
//! the node's results (an `if` result from both branches), and a loop body's outputs feed its
//! inputs back with dashed edges. The output is a function of the graph: the same graph always
//! gives the same text.

use crate::ops::{AttrValue, Family, Op};
use crate::{Graph, NodeId, TensorType, ValueId};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// What to draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotOptions {
    /// Label each edge with the type of the value it carries.
    pub edge_types: bool,
    /// Leave constants (and their edges) out; models have hundreds of weights.
    pub hide_constants: bool,
    /// Draw fused nodes as clusters holding their bodies; when false, as one box each.
    pub expand_fused: bool,
    /// Draw `if` and `while` nodes as clusters holding their regions (`then`/`else`,
    /// `cond`/`body`); when false, as one box each.
    pub expand_regions: bool,
    /// How many trailing `/`-separated components of a source name a box shows.
    pub name_components: usize,
}

impl Default for DotOptions {
    /// Constants shown, fused bodies and regions expanded, no edge labels, two name
    /// components.
    fn default() -> DotOptions {
        DotOptions {
            edge_types: false,
            hide_constants: false,
            expand_fused: true,
            expand_regions: true,
            name_components: 2,
        }
    }
}

impl DotOptions {
    /// Whether `op` is drawn as a cluster holding its nested graphs.
    fn expands(&self, op: &Op) -> bool {
        match op {
            Op::Fused { .. } => self.expand_fused,
            Op::If { .. } | Op::While { .. } => self.expand_regions,
            _ => false,
        }
    }
}

/// Longest name or type list shown in a box, in characters; longer ones are cut with `…`.
const MAX_LABEL_CHARS: usize = 40;

/// At most this many output types are listed in a box; the rest are counted.
const MAX_TYPES_SHOWN: usize = 3;

/// Writes `g` as a Graphviz `digraph`.
pub fn to_dot(g: &Graph, opts: &DotOptions) -> String {
    let mut w = Writer {
        opts,
        out: String::new(),
        next_node: 0,
        next_cluster: 0,
        edges: Vec::new(),
        seen_edges: BTreeSet::new(),
    };
    w.out.push_str("digraph ");
    quoted(&mut w.out, &g.name);
    w.out.push_str(" {\n");
    let mut title = format!("graph @{}", g.name);
    let c = census(g);
    let _ = write!(title, "\n{} ops", c.ops);
    if c.fused > 0 {
        let _ = write!(title, " ({} fused groups)", c.fused);
    }
    if c.consts > 0 {
        let _ = write!(
            title,
            ", {} constants ({})",
            c.consts,
            human_bytes(c.const_bytes)
        );
    }
    let graph_attrs = format!(
        "graph [label={}, tooltip={}, labelloc=t, fontname=\"Helvetica\", fontsize=14, \
         rankdir=TB, nodesep=0.25, ranksep=0.3];",
        q(&title),
        q(&g.name)
    );
    w.line(1, &graph_attrs);
    w.line(
        1,
        "node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", color=\"#444444\", fontname=\"Helvetica\", fontsize=10, margin=\"0.12,0.04\", height=0.3];",
    );
    w.line(
        1,
        "edge [color=\"#555555\", arrowsize=0.6, fontname=\"Helvetica\", fontsize=8, fontcolor=\"#555555\"];",
    );
    let inputs: Vec<Vec<String>> = g
        .inputs()
        .iter()
        .map(|input| {
            let id = w.new_id();
            let label = format!("{}\n{}", ellipsize(&input.name), input.ty);
            w.line(
                1,
                &format!(
                    "{id} [shape=ellipse, style=filled, fillcolor=\"#d9f2d9\", label={}, tooltip={}];",
                    q(&label),
                    q(&format!("input {}: {}", input.name, input.ty))
                ),
            );
            vec![id]
        })
        .collect();
    let results = w.graph(g, &inputs, 1);
    for (output, srcs) in g.outputs().iter().zip(results) {
        let id = w.new_id();
        let ty = value_type(g, output.value);
        let label = match ty {
            Some(t) => format!("{}\n{}", ellipsize(&output.name), t),
            None => ellipsize(&output.name),
        };
        w.line(
            1,
            &format!(
                "{id} [shape=ellipse, peripheries=2, style=filled, fillcolor=\"#d6e6fa\", label={}, tooltip={}];",
                q(&label),
                q(&format!("output {}", output.name))
            ),
        );
        for src in srcs {
            w.edge(&src, &id, ty);
        }
    }
    let mut out = std::mem::take(&mut w.out);
    for e in &w.edges {
        out.push_str("  ");
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

struct Writer<'a> {
    opts: &'a DotOptions,
    out: String,
    next_node: usize,
    next_cluster: usize,
    /// Edge statements, written after every node so that each node is first seen in its
    /// cluster (Graphviz places a node where it first appears).
    edges: Vec<String>,
    /// (from, to, label) of the edges written, to draw a value used twice by one node once.
    seen_edges: BTreeSet<(String, String, String)>,
}

impl Writer<'_> {
    fn new_id(&mut self) -> String {
        self.next_node += 1;
        format!("n{}", self.next_node - 1)
    }

    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn edge(&mut self, from: &str, to: &str, ty: Option<&TensorType>) {
        let label = match (self.opts.edge_types, ty) {
            (true, Some(t)) => t.to_string(),
            _ => String::new(),
        };
        if !self
            .seen_edges
            .insert((from.to_string(), to.to_string(), label.clone()))
        {
            return;
        }
        let mut e = format!("{from} -> {to}");
        if !label.is_empty() {
            let _ = write!(e, " [label={}]", q(&label));
        }
        e.push(';');
        self.edges.push(e);
    }

    /// Draws the nodes of `g` (nested `depth` levels inside the digraph) whose inputs come
    /// from the drawn nodes `inputs` (none: nothing drawn, like a hidden constant; two: the
    /// result of an `if`, from either branch), and returns the drawn nodes that compute each of
    /// `g`'s outputs.
    fn graph(&mut self, g: &Graph, inputs: &[Vec<String>], depth: usize) -> Vec<Vec<String>> {
        // A graph with a cycle is drawn anyway, in insertion order; uses of a fused node's
        // result before the node is drawn lose their edge.
        let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
        let opts = self.opts;
        // Ids first, so that a use before its definition still finds its producer.
        let ids: HashMap<NodeId, String> = order
            .iter()
            .filter(|&&id| !matches!(g.node(id).op, Op::Input { .. }))
            .map(|&id| (id, self.new_id()))
            .collect();
        // The drawn producers of the results of nodes drawn as clusters (fused bodies,
        // regions).
        let mut cluster_results: HashMap<ValueId, Vec<String>> = HashMap::new();
        let source = |cluster_results: &HashMap<ValueId, Vec<String>>, v: ValueId| {
            if !g.contains(v.node) {
                return Vec::new();
            }
            match &g.node(v.node).op {
                Op::Input { index } => inputs.get(*index).cloned().unwrap_or_default(),
                Op::Const(_) if opts.hide_constants => Vec::new(),
                op if opts.expands(op) => cluster_results.get(&v).cloned().unwrap_or_default(),
                _ => ids.get(&v.node).cloned().into_iter().collect(),
            }
        };
        for &id in &order {
            let node = g.node(id);
            match &node.op {
                Op::Input { .. } => {}
                Op::Const(t) => {
                    if opts.hide_constants {
                        continue;
                    }
                    let label = format!("const {}", t.ty());
                    let tooltip = match node.name.as_str() {
                        "" => format!("const {}", t.ty()),
                        name => format!("{name}\nconst {}", t.ty()),
                    };
                    self.line(
                        depth,
                        &format!(
                            "{} [fontsize=7, height=0.2, margin=\"0.06,0.02\", style=filled, color=\"#bbbbbb\", fillcolor=\"#eeeeee\", fontcolor=\"#777777\", label={}, tooltip={}];",
                            ids[&id],
                            q(&label),
                            q(&tooltip)
                        ),
                    );
                }
                op if opts.expands(op) => {
                    let operands: Vec<Vec<String>> = node
                        .inputs
                        .iter()
                        .map(|&v| source(&cluster_results, v))
                        .collect();
                    let results = match op {
                        Op::Fused { kind, body } => {
                            self.open_cluster(depth, kind.mnemonic(), &node.name, op, "#7a9cc6");
                            let results = self.graph(body, &operands, depth + 1);
                            self.line(depth, "}");
                            results
                        }
                        _ => self.regions(node, &ids[&id], &operands, depth),
                    };
                    for (k, src) in results.into_iter().enumerate() {
                        let v = ValueId {
                            node: id,
                            output: k as u32,
                        };
                        cluster_results.insert(v, src);
                    }
                    // The edges from the operands were drawn inside; nothing here.
                    continue;
                }
                op => {
                    let mut label = op.mnemonic().to_string();
                    if let Op::Fused { body, .. } = op {
                        let _ = write!(label, " ({} ops)", census(body).ops);
                    }
                    if !node.outputs.is_empty() {
                        label.push('\n');
                        label.push_str(&types_text(&node.outputs));
                    }
                    if !node.name.is_empty() {
                        label.push('\n');
                        label.push_str(&short_name(&node.name, self.opts.name_components));
                    }
                    self.line(
                        depth,
                        &format!(
                            "{} [label={}, tooltip={}, fillcolor=\"{}\"];",
                            ids[&id],
                            q(&label),
                            q(&tooltip(&node.name, op)),
                            family_fill(op.family())
                        ),
                    );
                }
            }
            // Edges into a plain node (a constant has no inputs).
            for &v in &node.inputs {
                for src in source(&cluster_results, v) {
                    let to = ids[&id].clone();
                    self.edge(&src, &to, value_type(g, v));
                }
            }
        }
        g.outputs()
            .iter()
            .map(|o| source(&cluster_results, o.value))
            .collect()
    }

    /// Opens a cluster for a node drawn as a nested graph: labelled with `title` and the tail
    /// of the node's name; the caller closes it.
    fn open_cluster(&mut self, depth: usize, title: &str, name: &str, op: &Op, color: &str) {
        let n = self.next_cluster;
        self.next_cluster += 1;
        self.line(depth, &format!("subgraph cluster_{n} {{"));
        let mut label = title.to_string();
        if !name.is_empty() {
            label.push('\n');
            label.push_str(&short_name(name, self.opts.name_components));
        }
        self.line(
            depth + 1,
            &format!(
                "graph [label={}, tooltip={}, style=\"rounded,filled\", color=\"{color}\", fillcolor=\"{}\", fontsize=10, labeljust=l];",
                q(&label),
                q(&tooltip(name, op)),
                cluster_fill(depth)
            ),
        );
    }

    /// Draws an `if` or `while` node as a cluster holding one cluster per region. Each region
    /// draws its inputs as ellipses, fed by the node's operands, and its outputs as double
    /// ellipses; a `while` body's outputs feed its inputs back (dashed: the next iteration).
    /// An `if`'s condition is a diamond fed by its operand. Returns the drawn producers of
    /// each of the node's results: the body's outputs, or both branches' outputs.
    fn regions(
        &mut self,
        node: &crate::Node,
        id: &str,
        operands: &[Vec<String>],
        depth: usize,
    ) -> Vec<Vec<String>> {
        self.open_cluster(depth, node.op.mnemonic(), &node.name, &node.op, "#6aa84f");
        let (args, labelled): (&[Vec<String>], Vec<(&str, &Graph)>) = match &node.op {
            Op::If {
                then_branch,
                else_branch,
            } => {
                self.line(
                    depth + 1,
                    &format!(
                        "{id} [shape=diamond, style=filled, fillcolor=\"{}\", label=\"cond\", tooltip=\"the condition\"];",
                        family_fill(Family::ControlFlow)
                    ),
                );
                if let Some(cond) = operands.first() {
                    for src in cond {
                        self.edge(src, id, Some(&TensorType::scalar(crate::DType::Bool)));
                    }
                }
                let branches = vec![("then", &**then_branch), ("else", &**else_branch)];
                (operands.get(1..).unwrap_or_default(), branches)
            }
            Op::While { cond, body } => (operands, vec![("cond", &**cond), ("body", &**body)]),
            _ => unreachable!("only if and while have regions"),
        };
        let mut outs: Vec<Vec<String>> = Vec::new();
        for (label, region) in labelled {
            self.open_cluster(depth + 1, label, "", &node.op, "#999999");
            let params: Vec<Vec<String>> = region
                .inputs()
                .iter()
                .enumerate()
                .map(|(k, input)| {
                    let p = self.new_id();
                    let text = format!("{}\n{}", ellipsize(&input.name), input.ty);
                    self.line(
                        depth + 2,
                        &format!(
                            "{p} [shape=ellipse, style=filled, fillcolor=\"#d9f2d9\", fontsize=8, label={}, tooltip={}];",
                            q(&text),
                            q(&format!("{label} input {k}: {}", input.name))
                        ),
                    );
                    for src in args.get(k).into_iter().flatten() {
                        self.edge(src, &p, Some(&input.ty));
                    }
                    vec![p]
                })
                .collect();
            let results = self.graph(region, &params, depth + 2);
            let mut drawn = Vec::new();
            for (k, (output, srcs)) in region.outputs().iter().zip(results).enumerate() {
                let o = self.new_id();
                let ty = value_type(region, output.value);
                let text = match ty {
                    Some(t) => format!("{}\n{}", ellipsize(&output.name), t),
                    None => ellipsize(&output.name),
                };
                self.line(
                    depth + 2,
                    &format!(
                        "{o} [shape=ellipse, peripheries=2, style=filled, fillcolor=\"#d6e6fa\", fontsize=8, label={}, tooltip={}];",
                        q(&text),
                        q(&format!("{label} output {k}: {}", output.name))
                    ),
                );
                for src in srcs {
                    self.edge(&src, &o, ty);
                }
                if label == "body" {
                    if let Some(p) = params.get(k).and_then(|p| p.first()) {
                        self.edges.push(format!(
                            "{o} -> {p} [style=dashed, constraint=false, color=\"#6aa84f\"];"
                        ));
                    }
                }
                drawn.push(o);
            }
            self.line(depth + 1, "}");
            if label != "cond" {
                outs.push(drawn);
            }
        }
        self.line(depth, "}");
        // Result k comes from output k of the body, or of either branch.
        let n = node.outputs.len();
        (0..n)
            .map(|k| outs.iter().filter_map(|o| o.get(k).cloned()).collect())
            .collect()
    }
}

/// What a graph holds, fused bodies included.
#[derive(Default)]
struct Census {
    /// Nodes that compute (not inputs, constants or fused nodes: their bodies' ops count).
    ops: usize,
    fused: usize,
    consts: usize,
    const_bytes: usize,
}

fn census(g: &Graph) -> Census {
    let mut c = Census::default();
    for id in g.node_ids() {
        match &g.node(id).op {
            Op::Input { .. } => {}
            Op::Const(t) => {
                c.consts += 1;
                c.const_bytes += t.size_bytes();
            }
            Op::Fused { body, .. } => {
                let b = census(body);
                c.ops += b.ops;
                c.fused += 1 + b.fused;
                c.consts += b.consts;
                c.const_bytes += b.const_bytes;
            }
            op @ (Op::If { .. } | Op::While { .. }) => {
                c.ops += 1;
                for (_, region) in op.attrs() {
                    if let AttrValue::Graph(r) = region {
                        let b = census(&r);
                        c.ops += b.ops;
                        c.fused += b.fused;
                        c.consts += b.consts;
                        c.const_bytes += b.const_bytes;
                    }
                }
            }
            _ => c.ops += 1,
        }
    }
    c
}

/// The type of `v`, if it exists (a graph broken through the API may refer to what does not).
fn value_type(g: &Graph, v: ValueId) -> Option<&TensorType> {
    if g.contains(v.node) {
        g.node(v.node).outputs.get(v.output as usize)
    } else {
        None
    }
}

/// A box's fill colour by op family: a light tint, so that the graph's shape reads at a glance.
fn family_fill(f: Family) -> &'static str {
    match f {
        Family::Control => "#f4f4f4",
        Family::Elementwise => "#fff7d6",
        Family::Linalg | Family::Conv | Family::Image => "#dce8fb",
        Family::Reduce => "#fde3cf",
        Family::Shape => "#ece3f5",
        Family::Fused => "#e3f1f4",
        Family::ControlFlow => "#e8f5e0",
    }
}

/// A cluster's fill: nested clusters alternate so that their borders stay visible.
fn cluster_fill(depth: usize) -> &'static str {
    if depth % 2 == 1 {
        "#f1f6fc"
    } else {
        "#ffffff"
    }
}

/// `f32[1,2]` or `f32[1,2], i32[3]`, at most [`MAX_TYPES_SHOWN`] and then a count.
fn types_text(types: &[TensorType]) -> String {
    let mut s = types
        .iter()
        .take(MAX_TYPES_SHOWN)
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if types.len() > MAX_TYPES_SHOWN {
        let _ = write!(s, ", … ({} results)", types.len());
    }
    s
}

/// The last `components` parts of a `/`-separated source name, cut to a readable length.
fn short_name(name: &str, components: usize) -> String {
    let parts: Vec<&str> = name.split('/').collect();
    let keep = components.max(1).min(parts.len());
    let mut tail = parts[parts.len() - keep..].join("/");
    if keep < parts.len() {
        tail.insert_str(0, "…/");
    }
    ellipsize(&tail)
}

/// `s` cut to [`MAX_LABEL_CHARS`] characters, keeping its end (where names differ).
fn ellipsize(s: &str) -> String {
    let n = s.chars().count();
    if n <= MAX_LABEL_CHARS {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (MAX_LABEL_CHARS - 1)).collect();
    format!("…{tail}")
}

/// A node's tooltip: its full source name and its attributes (not tensors or graphs).
fn tooltip(name: &str, op: &Op) -> String {
    let mut s = String::new();
    if !name.is_empty() {
        s.push_str(name);
        s.push('\n');
    }
    s.push_str(op.mnemonic());
    let attrs: Vec<String> = op
        .attrs()
        .into_iter()
        .filter(|(_, v)| !matches!(v, AttrValue::Tensor(_) | AttrValue::Graph(_)))
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    if !attrs.is_empty() {
        let _ = write!(s, " {{{}}}", attrs.join(", "));
    }
    s
}

/// A byte count for people: `812 B`, `1.6 MB`.
fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
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

/// `s` as a DOT double-quoted string.
fn q(s: &str) -> String {
    let mut out = String::new();
    quoted(&mut out, s);
    out
}

/// Appends `s` as a DOT double-quoted string whose label shows `s` as written: quotes and
/// backslashes escaped (so that `\N`, `\G` and the like in a name are not Graphviz's
/// substitutions), line breaks as `\n` (centred lines), and other control characters as
/// visible `\u{..}` text.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Renders DOT text to SVG with Graphviz's `dot` command.
pub fn render_svg(dot_text: &str) -> Result<String, String> {
    let bytes = render(dot_text, "svg")?;
    String::from_utf8(bytes).map_err(|e| format!("Graphviz wrote SVG that is not UTF-8: {e}"))
}

/// Renders DOT text with `dot -T<format>` (`svg`, `png`, `pdf`, ...), returning its output.
/// The error says how to install Graphviz when `dot` is missing.
pub fn render(dot_text: &str, format: &str) -> Result<Vec<u8>, String> {
    let spawned = Command::new("dot")
        .arg(format!("-T{format}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "Graphviz's `dot` command was not found on PATH; install Graphviz \
                 (`apt-get install graphviz` on Debian/Ubuntu, `brew install graphviz` on macOS), \
                 or write the DOT text with `--format dot`, which needs no Graphviz"
                    .to_string(),
            )
        }
        Err(e) => return Err(format!("could not run Graphviz's `dot`: {e}")),
    };
    // Feed stdin from another thread: `dot` may fill its stdout pipe before reading all of
    // its input, and waiting on both from one thread would deadlock on large graphs.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let text = dot_text.to_owned();
    let feeder = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("could not read Graphviz's output: {e}"))?;
    // A failed write means `dot` stopped reading early; its exit status tells why.
    let _ = feeder.join();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "Graphviz `dot -T{format}` failed ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{BinaryOp, DataFormat, FusedKind, UnaryOp};
    use crate::{DType, Tensor};
    use std::sync::Arc;

    fn f32s(dims: &[usize]) -> TensorType {
        TensorType::known(DType::F32, dims)
    }

    /// `relu(x @ w + b)` fused into an epilogue, then a residual add outside it.
    fn small_graph() -> Graph {
        let mut body = Graph::new("dense_relu");
        let a0 = body.add_input("a0", f32s(&[1, 2]));
        let a1 = body.add_input("a1", f32s(&[3]));
        let w = Tensor::from_vec(&[2, 3], vec![1.0f32; 6]);
        let w = body.add_const(w, "model/dense/kernel");
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        };
        let mm = body.add(mm, vec![a0, w], "model/dense/MatMul").unwrap();
        let bias = Op::BiasAdd {
            format: DataFormat::Nhwc,
        };
        let b = body.add(bias, vec![mm, a1], "model/dense/BiasAdd").unwrap();
        let r = body
            .add(Op::Unary(UnaryOp::Relu), vec![b], "model/dense/Relu")
            .unwrap();
        body.add_output("y", r).unwrap();

        let mut g = Graph::new("mlp");
        let x = g.add_input("x", f32s(&[1, 2]));
        let bias = g.add_const(Tensor::from_vec(&[3], vec![0.5f32; 3]), "model/dense/bias");
        let fused = Op::Fused {
            kind: FusedKind::Epilogue,
            body: Arc::new(body),
        };
        let d = g.add(fused, vec![x, bias], "model/dense").unwrap();
        let y = g
            .add(Op::Binary(BinaryOp::Add), vec![d, d], "model/add")
            .unwrap();
        g.add_output("y", y).unwrap();
        g
    }

    /// The DOT statement defining `id` (its first line).
    fn node_line<'a>(dot: &'a str, id: &str) -> &'a str {
        let prefix = format!("{id} [");
        dot.lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no node {id} in\n{dot}"))
    }

    #[test]
    fn small_graph_has_its_nodes_edges_and_cluster() {
        let g = small_graph();
        crate::verify(&g).unwrap();
        let opts = DotOptions {
            edge_types: true,
            ..DotOptions::default()
        };
        let dot = to_dot(&g, &opts);
        // Ids in drawing order: n0 input x; n1 bias, n2 fused (reserved), n3 add in the outer
        // graph; n4 kernel, n5 matmul, n6 bias_add, n7 relu in the body; n8 output y.
        assert!(dot.starts_with("digraph \"mlp\" {\n"), "{dot}");
        assert!(
            node_line(&dot, "n0").contains("label=\"x\\nf32[1,2]\""),
            "{dot}"
        );
        assert!(node_line(&dot, "n0").contains("shape=ellipse"), "{dot}");
        assert!(
            node_line(&dot, "n1").contains("label=\"const f32[3]\""),
            "{dot}"
        );
        assert!(
            node_line(&dot, "n1").contains("fillcolor=\"#eeeeee\""),
            "{dot}"
        );
        assert!(dot.contains("  subgraph cluster_0 {\n"), "{dot}");
        assert!(
            dot.contains("label=\"fused.epilogue\\nmodel/dense\""),
            "{dot}"
        );
        assert!(
            node_line(&dot, "n5").contains("label=\"matmul\\nf32[1,3]\\n…/dense/MatMul\""),
            "{dot}"
        );
        assert!(
            node_line(&dot, "n5").contains("tooltip=\"model/dense/MatMul\\nmatmul {transpose_a = false, transpose_b = false}\""),
            "{dot}"
        );
        assert!(node_line(&dot, "n8").contains("peripheries=2"), "{dot}");
        // The body nodes are inside the cluster: after its line, indented one level deeper.
        let cluster_at = dot.find("subgraph cluster_0").unwrap();
        assert!(dot.find("    n5 [").unwrap() > cluster_at, "{dot}");
        // The fused node itself is no box; its edges go to and from the body.
        assert!(!dot.contains("n2 ["), "{dot}");
        for edge in [
            "n0 -> n5 [label=\"f32[1,2]\"];", // x into the matmul
            "n4 -> n5 [label=\"f32[2,3]\"];", // kernel, inside
            "n5 -> n6 [label=\"f32[1,3]\"];", // matmul to bias_add
            "n1 -> n6 [label=\"f32[3]\"];",   // outer bias into bias_add
            "n7 -> n3 [label=\"f32[1,3]\"];", // relu (the body's result) to the add
            "n3 -> n8 [label=\"f32[1,3]\"];", // add to the output
        ] {
            assert!(dot.contains(edge), "missing {edge} in\n{dot}");
        }
        // `add(d, d)` draws one edge, not two.
        assert_eq!(dot.matches("n7 -> n3").count(), 1, "{dot}");
        assert_eq!(to_dot(&g, &opts), dot, "stable output");
    }

    #[test]
    fn options_hide_constants_and_collapse_fused_nodes() {
        let g = small_graph();
        let dot = to_dot(
            &g,
            &DotOptions {
                hide_constants: true,
                ..DotOptions::default()
            },
        );
        assert!(!dot.contains("const "), "{dot}");
        assert!(
            !dot.contains("label=\"f32"),
            "no edge labels by default: {dot}"
        );
        assert!(dot.contains("n5 -> n6;"), "{dot}");
        let dot = to_dot(
            &g,
            &DotOptions {
                expand_fused: false,
                ..DotOptions::default()
            },
        );
        assert!(!dot.contains("cluster"), "{dot}");
        assert!(
            node_line(&dot, "n2")
                .contains("label=\"fused.epilogue (3 ops)\\nf32[1,3]\\nmodel/dense\""),
            "{dot}"
        );
        assert!(
            dot.contains("n0 -> n2;") && dot.contains("n2 -> n3;"),
            "{dot}"
        );
    }

    #[test]
    fn passthrough_and_nested_bodies_connect_across_clusters() {
        // A body that returns one input unchanged and feeds another to a nested fused node.
        let mut inner = Graph::new("inner");
        let t = inner.add_input("t", f32s(&[2]));
        let n = inner.add(Op::Unary(UnaryOp::Neg), vec![t], "neg").unwrap();
        inner.add_output("n", n).unwrap();
        let mut outer = Graph::new("outer");
        let p = outer.add_input("p", f32s(&[2]));
        let q_ = outer.add_input("q", f32s(&[2]));
        let nested = Op::Fused {
            kind: FusedKind::Elementwise,
            body: Arc::new(inner),
        };
        let r = outer.add(nested, vec![q_], "").unwrap();
        outer.add_output("p", p).unwrap();
        outer.add_output("r", r).unwrap();
        let mut g = Graph::new("g");
        let a = g.add_input("a", f32s(&[2]));
        let b = g.add_input("b", f32s(&[2]));
        let fused = Op::Fused {
            kind: FusedKind::Elementwise,
            body: Arc::new(outer),
        };
        let f = g.add_node(fused, vec![a, b], "f").unwrap();
        let (v0, v1) = (
            ValueId { node: f, output: 0 },
            ValueId { node: f, output: 1 },
        );
        let s = g
            .add(Op::Binary(BinaryOp::Sub), vec![v0, v1], "sub")
            .unwrap();
        g.add_output("s", s).unwrap();
        crate::verify(&g).unwrap();
        let dot = to_dot(&g, &DotOptions::default());
        // n0 a, n1 b; n2 f, n3 sub; n4 nested fused; n5 neg; n6 output.
        assert!(dot.contains("subgraph cluster_0 {") && dot.contains("subgraph cluster_1 {"));
        assert!(
            dot.contains("n1 -> n5;"),
            "b reaches the neg two levels down: {dot}"
        );
        assert!(dot.contains("n0 -> n3;"), "a passes through to sub: {dot}");
        assert!(
            dot.contains("n5 -> n3;"),
            "the nested result reaches sub: {dot}"
        );
        assert!(dot.contains("n3 -> n6;"), "{dot}");
        assert!(!dot.contains("n4 [") && !dot.contains("n2 ["), "{dot}");
        check_with_graphviz(&dot);
    }

    /// A loop whose body holds an `if`: `while i < 2 { i += 1; x = c ? -x : relu(x) }`.
    fn loop_graph() -> Graph {
        crate::text::parse(
            r#"graph @rnn(%x: f32[2], %c: bool[]) -> ("y": f32[2]) {
              %0 = const dense<0> : i32[]
              %1:3 = while(%0, %x, %c) {cond = graph @cond(%i: i32[], %x: f32[2], %c: bool[]) -> ("go": bool[]) {
                  %0 = const dense<2> : i32[]
                  %1 = less(%i, %0) : bool[] loc("lt")
                  return %1
                }, body = graph @body(%i: i32[], %x: f32[2], %c: bool[]) -> ("i": i32[], "x": f32[2], "c": bool[]) {
                  %0 = const dense<1> : i32[]
                  %1 = add(%i, %0) : i32[] loc("next")
                  %2 = if(%c, %x) {then_branch = graph @then(%a: f32[2]) -> ("r": f32[2]) {
                      %0 = neg(%a) : f32[2] loc("neg")
                      return %0
                    }, else_branch = graph @else(%a: f32[2]) -> ("r": f32[2]) {
                      %0 = relu(%a) : f32[2] loc("relu")
                      return %0
                    }} : f32[2] loc("choose")
                  return %1, %2, %c
                }} : i32[], f32[2], bool[] loc("loop")
              %2 = exp(%1#1) : f32[2] loc("exp")
              return %2
            }"#,
        )
        .unwrap()
    }

    /// The id of the node whose label starts with `label`.
    fn id_of(dot: &str, label: &str) -> String {
        let needle = format!("label=\"{label}");
        let line = dot
            .lines()
            .map(str::trim_start)
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no node labelled {label} in\n{dot}"));
        line.split_whitespace().next().unwrap().to_string()
    }

    #[test]
    fn regions_are_nested_clusters_wired_to_the_node() {
        let g = loop_graph();
        crate::verify(&g).unwrap();
        let dot = to_dot(&g, &DotOptions::default());
        assert!(dot.contains("ops"), "{dot}");
        for cluster in [
            "while\\nloop",
            "cond",
            "body",
            "if\\nchoose",
            "then",
            "else",
        ] {
            assert!(
                dot.contains(&format!("graph [label=\"{cluster}\"")),
                "no cluster {cluster} in\n{dot}"
            );
        }
        // Five clusters: the loop, its two regions, the `if` and its two branches.
        assert_eq!(dot.matches("subgraph cluster_").count(), 6, "{dot}");
        let x = id_of(&dot, "x\\nf32[2]");
        // The loop's operand `x` feeds input `x` of both regions (the first is the cond's).
        let region_x: Vec<String> = dot
            .lines()
            .map(str::trim_start)
            .filter(|l| {
                l.contains("tooltip=\"cond input 1: x\"")
                    || l.contains("tooltip=\"body input 1: x\"")
            })
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        assert_eq!(region_x.len(), 2, "{dot}");
        for p in &region_x {
            assert!(
                dot.contains(&format!("{x} -> {p};")),
                "{x} -> {p} in\n{dot}"
            );
        }
        // Inside the body, `x` and `c` reach the branches: `c` the diamond, `x` their inputs.
        let diamond = dot
            .lines()
            .map(str::trim_start)
            .find(|l| l.contains("shape=diamond"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .expect("the if's diamond");
        assert!(dot.contains(&format!(" -> {diamond};")), "{dot}");
        let (neg, relu, exp) = (id_of(&dot, "neg"), id_of(&dot, "relu"), id_of(&dot, "exp"));
        // Both branches' results reach the body's output `x`, which feeds the next iteration
        // (dashed) and the `exp` after the loop.
        let out_x = dot
            .lines()
            .map(str::trim_start)
            .find(|l| l.contains("tooltip=\"body output 1: x\""))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .expect("the body's output x");
        let then_r = dot
            .lines()
            .map(str::trim_start)
            .find(|l| l.contains("tooltip=\"then output 0: r\""))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .unwrap();
        assert!(dot.contains(&format!("{neg} -> {then_r};")), "{dot}");
        assert!(dot.contains(&format!("{then_r} -> {out_x};")), "{dot}");
        assert!(dot.contains(&format!("{out_x} -> {exp};")), "{dot}");
        assert!(
            dot.contains(&format!("{out_x} -> {} [style=dashed", region_x[1])),
            "the body's output x feeds its input x back: {dot}"
        );
        assert!(!dot.contains(&format!("{relu} -> {exp}")), "{dot}");
        // The branches sit inside the body's cluster, which sits inside the loop's.
        let at = |s: &str| dot.find(s).unwrap();
        assert!(
            at("label=\"while") < at("label=\"body\"")
                && at("label=\"body\"") < at("label=\"then\"")
        );
        check_with_graphviz(&dot);
        // Collapsed, the loop is one box between `x` and `exp`.
        let flat = to_dot(
            &g,
            &DotOptions {
                expand_regions: false,
                ..DotOptions::default()
            },
        );
        assert!(!flat.contains("cluster"), "{flat}");
        let lp = id_of(&flat, "while");
        let (x, exp) = (id_of(&flat, "x\\nf32[2]"), id_of(&flat, "exp"));
        assert!(
            flat.contains(&format!("{x} -> {lp};")) && flat.contains(&format!("{lp} -> {exp};")),
            "{flat}"
        );
        check_with_graphviz(&flat);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(q(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(q("two\nlines"), r#""two\nlines""#);
        assert_eq!(q("bell\u{7}"), r#""bell\\u{7}""#);
        assert_eq!(q(r"\N\G trailing\"), r#""\\N\\G trailing\\""#);
        assert_eq!(q("<{|}>"), r#""<{|}>""#);
        assert_eq!(short_name("a/b/c/d", 2), "…/c/d");
        assert_eq!(short_name("c/d", 2), "c/d");
        assert_eq!(short_name("", 2), "");
        let long = "x".repeat(100);
        assert_eq!(ellipsize(&long).chars().count(), MAX_LABEL_CHARS);
        assert!(ellipsize(&long).starts_with('…'));
    }

    /// Names that are hard on DOT: quotes, backslashes (a trailing one too), Graphviz's
    /// `\N`-style escapes, record and HTML punctuation, keywords, control characters, line
    /// breaks, unicode and very long names.
    const ODD_NAMES: [&str; 14] = [
        "",
        "with \"quotes\"",
        "trailing\\",
        "\\N\\G\\E\\T\\H\\L\\l\\r",
        "<b>{a|b}</b>",
        "digraph",
        "subgraph cluster_0 {",
        "--> -> --",
        "tab\tnew\nline\r\0bell\u{7}",
        "ünïcødé ✓ 名前",
        "x\u{202e}y\u{200b}",
        "; /* // # comment",
        "a/very/long/path/to/a/node/whose/name/does/not/fit/in/a/box/at/all/MatMul",
        "%0",
    ];

    fn odd_graph() -> Graph {
        let mut g = Graph::new(ODD_NAMES[2]);
        let mut prev = g.add_input(ODD_NAMES[1], f32s(&[2]));
        let mut body = Graph::new(ODD_NAMES[4]);
        let t = body.add_input(ODD_NAMES[3], f32s(&[2]));
        let c = body.add_const(Tensor::from_vec(&[2], vec![1.0f32, 2.0]), ODD_NAMES[8]);
        let m = body
            .add(Op::Binary(BinaryOp::Mul), vec![t, c], ODD_NAMES[9])
            .unwrap();
        body.add_output(ODD_NAMES[5], m).unwrap();
        let body = Arc::new(body);
        for (i, name) in ODD_NAMES.iter().enumerate() {
            prev = if i % 3 == 0 {
                let op = Op::Fused {
                    kind: FusedKind::Elementwise,
                    body: body.clone(),
                };
                g.add(op, vec![prev], *name).unwrap()
            } else {
                let op = Op::Einsum {
                    equation: (*name).to_string(),
                };
                let ty = f32s(&[2]);
                ValueId::first(g.add_node_typed(op, vec![prev], vec![ty], *name).unwrap())
            };
        }
        for name in ODD_NAMES {
            g.add_output(name, prev).unwrap();
        }
        g
    }

    /// Runs `dot -Tsvg` on `dot`, failing on a Graphviz error; a note and a pass when Graphviz
    /// is not installed.
    fn check_with_graphviz(dot: &str) {
        match render_svg(dot) {
            Ok(svg) => assert!(svg.contains("<svg"), "{svg}"),
            Err(e) if e.contains("not found on PATH") => {
                eprintln!("note: Graphviz is not installed; DOT output not checked with `dot`");
            }
            Err(e) => panic!("{e}\n{dot}"),
        }
    }

    #[test]
    fn graphviz_accepts_odd_names() {
        let g = odd_graph();
        for opts in [
            DotOptions::default(),
            DotOptions {
                edge_types: true,
                hide_constants: true,
                expand_fused: false,
                expand_regions: false,
                name_components: 0,
            },
        ] {
            let dot = to_dot(&g, &opts);
            // Each name appears only inside quoted strings: every line is balanced.
            for line in dot.lines() {
                let unescaped = line.replace("\\\\", "").replace("\\\"", "");
                assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
            }
            check_with_graphviz(&dot);
            check_with_graphviz(&to_dot(&small_graph(), &opts));
        }
        // The label shows the name as written, escapes visible.
        let svg = match render_svg(&to_dot(&g, &DotOptions::default())) {
            Ok(svg) => svg,
            Err(_) => return,
        };
        assert!(svg.contains("\\N\\G\\E\\T\\H\\L\\l\\r"), "{svg}");
        assert!(svg.contains("&lt;b&gt;{a|b}&lt;/b&gt;"), "{svg}");
    }

    #[test]
    fn render_reports_graphviz_errors() {
        match render_svg("digraph { a -> ") {
            Err(e) if e.contains("not found on PATH") => {
                assert!(e.contains("apt-get install graphviz"), "{e}");
                assert!(e.contains("brew install graphviz"), "{e}");
                assert!(e.contains("--format dot"), "{e}");
            }
            Err(e) => assert!(e.contains("dot -Tsvg` failed"), "{e}"),
            Ok(svg) => panic!("bad DOT rendered: {svg}"),
        }
    }
}
