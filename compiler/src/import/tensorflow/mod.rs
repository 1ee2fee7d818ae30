//! TensorFlow frozen `GraphDef` importer.
//!
//! Nodes are imported in dependency order (a `GraphDef` may list them in any order). Data
//! inputs are `name` or `name:N`; control inputs (`^name`) only order side effects, and a frozen
//! inference graph has none that matter, so they are dropped. Placeholders become graph inputs
//! (an unknown dimension becomes a symbol named after the input and axis); the graph's outputs
//! are the outputs of nodes nobody consumes (Keras' `Identity`, `Identity_1`, ...), named
//! `node:N` as TensorFlow names tensors. Calls of the graph's function library
//! (`StatefulPartitionedCall` and friends) are inlined first (`inline.rs`).

mod attrs;
pub mod bundle;
mod control_flow;
mod functionalize;
pub mod inline;
mod ops;
pub mod saved_model;
mod stream;
pub mod tensor;

pub use ops::{supported_ops, table, TfOp};
use stream::decode_graph_def;

use super::ImportError;
use inline::{Region, Regions};
use lathe_ir::{Dim, Graph, IrError, Op, Tensor, TensorType, ValueId};
use lathe_proto::tensorflow::{GraphDef, NodeDef};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

/// Reads a frozen GraphDef file and imports it.
///
/// The file is read one node at a time (`stream.rs`) and each constant's tensor becomes an IR
/// tensor as soon as its node is read, so the weights are held about once: the IR's tensors,
/// plus one constant's bytes and message while it is converted.
pub fn import_file(path: &Path) -> Result<Graph, ImportError> {
    let io = |e: std::io::Error| ImportError::file(path, e.to_string());
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    import_stream(BufReader::new(file), len, path)
}

/// Imports a serialized GraphDef; `path` names it in errors.
pub fn import_bytes(bytes: &[u8], path: &Path) -> Result<Graph, ImportError> {
    import_stream(bytes, bytes.len() as u64, path)
}

/// Imports the `len`-byte serialized GraphDef `reader` yields, converting each constant's
/// tensor as its node is read and dropping the protobuf copy. A constant that does not convert
/// is reported when its node is imported, as [`import_graph_def`] reports it.
fn import_stream(reader: impl Read, len: u64, path: &Path) -> Result<Graph, ImportError> {
    let mut consts = HashMap::new();
    let gd = decode_graph_def(reader, len, path, |node| {
        if node.op == "Const" {
            consts.insert(node.name.clone(), ops::const_value(node));
            node.attr.remove("value");
        }
    })?;
    import(gd, consts, path)
}

/// Imports a decoded GraphDef; `path` names it in errors.
pub fn import_graph_def(gd: &GraphDef, path: &Path) -> Result<Graph, ImportError> {
    import(gd.clone(), HashMap::new(), path)
}

/// Imports `gd`, whose constants named in `consts` were converted already (and may have had
/// their tensors taken out of `gd`). Calls of library functions are inlined first.
fn import(
    mut gd: GraphDef,
    consts: HashMap<String, Result<Tensor, String>>,
    path: &Path,
) -> Result<Graph, ImportError> {
    let regions = inline::inline_calls(&mut gd, path)?;
    build(gd, consts, regions, path, None)
}

/// Which tensors of a GraphDef are a model's inputs and outputs, and under which names: a
/// SavedModel signature. Without one, every Placeholder is an input (named after its node) and
/// every output nobody consumes is an output.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interface {
    /// `(Placeholder node, input name)`, in the graph's input order.
    pub inputs: Vec<(String, String)>,
    /// `(output name, tensor "node:k")`, in the graph's output order.
    pub outputs: Vec<(String, String)>,
}

/// Imports the nodes of `gd`, a graph without calls (inlined already, the regions of its
/// functional control flow in `regions`), given the constants converted already. TensorFlow 1
/// loops (`Enter`/`Merge`/`Switch`/...) become `While` nodes first (`functionalize.rs`). With
/// an interface (cut to it by [`keep_interface`]), placeholders are named as it says and its
/// outputs are the graph's; without, see [`Interface`].
fn build(
    mut gd: GraphDef,
    consts: HashMap<String, Result<Tensor, String>>,
    mut regions: Regions,
    path: &Path,
    iface: Option<&Interface>,
) -> Result<Graph, ImportError> {
    functionalize::functionalize(&mut gd, &mut regions, path)?;
    let gd = &gd;
    let (mut imp, order) = Importer::start(gd, consts, path)?;
    imp.regions = regions;
    if let Some(iface) = iface {
        imp.input_names = iface.inputs.iter().cloned().collect();
    }
    for &i in &order {
        imp.import_node(&gd.node[i])?;
    }
    match iface {
        None => imp.add_outputs(gd, &order)?,
        Some(iface) => imp.add_named_outputs(&iface.outputs)?,
    }
    Ok(imp.graph)
}

/// Keeps only the nodes `iface`'s outputs depend on through data inputs, and its input
/// placeholders first, in its order; control inputs are dropped (as the importer ignores them).
fn keep_interface(gd: &mut GraphDef, iface: &Interface, path: &Path) -> Result<(), ImportError> {
    let index = node_index(gd);
    let find = |name: &str, what: &str| {
        index.get(name).copied().ok_or_else(|| {
            ImportError::file(path, format!("{what} `{name}` is not a node of the graph"))
        })
    };
    let mut keep = vec![false; gd.node.len()];
    let mut stack = Vec::new();
    for (name, tensor) in &iface.outputs {
        let node = parse_input(tensor).map(|(n, _)| n).unwrap_or(tensor);
        stack.push(find(
            node,
            &format!("output `{name}` reads tensor `{tensor}`, but node"),
        )?);
    }
    let mut first = Vec::new();
    for (node, name) in &iface.inputs {
        let i = find(node, &format!("input `{name}` is fed to"))?;
        if gd.node[i].op != "Placeholder" {
            return Err(ImportError::node(
                path,
                node,
                &gd.node[i].op,
                format!("input `{name}` is fed here, but this is not a Placeholder"),
            ));
        }
        first.push(i);
        stack.push(i);
    }
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut keep[i], true) {
            continue;
        }
        for inp in &gd.node[i].input {
            if let Some((p, _)) = parse_input(inp) {
                stack.push(find(p, &format!("node `{}` reads", gd.node[i].name))?);
            }
        }
    }
    let mut nodes: Vec<Option<NodeDef>> =
        std::mem::take(&mut gd.node).into_iter().map(Some).collect();
    let mut kept: Vec<NodeDef> = first.iter().filter_map(|&i| nodes[i].take()).collect();
    kept.extend(
        nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep[*i])
            .filter_map(|(_, n)| n),
    );
    for n in &mut kept {
        n.input.retain(|i| !i.starts_with('^'));
    }
    gd.node = kept;
    Ok(())
}

/// Each node's index in `gd`, by name.
fn node_index(gd: &GraphDef) -> HashMap<&str, usize> {
    gd.node
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect()
}

/// A data input reference: node name and output index. `None` for a control input.
fn parse_input(s: &str) -> Option<(&str, usize)> {
    if s.starts_with('^') {
        return None;
    }
    match s.rsplit_once(':') {
        Some((n, i)) if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => {
            Some((n, i.parse().ok()?))
        }
        _ => Some((s, 0)),
    }
}

/// Node indices with every node after the producers of its data inputs. Errors on unknown
/// inputs, duplicate names and cycles (TensorFlow's while loops are not supported).
fn dependency_order(gd: &GraphDef, path: &Path) -> Result<Vec<usize>, ImportError> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in gd.node.iter().enumerate() {
        if index.insert(n.name.as_str(), i).is_some() {
            return Err(ImportError::node(
                path,
                &n.name,
                &n.op,
                "two nodes have this name",
            ));
        }
    }
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(gd.node.len());
    for n in &gd.node {
        let mut d = Vec::new();
        for inp in &n.input {
            let name = inp.strip_prefix('^').unwrap_or(inp);
            let producer = parse_input(name).map(|(p, _)| p).unwrap_or(name);
            match index.get(producer) {
                Some(&j) => d.push(j),
                None => {
                    return Err(ImportError::node(
                        path,
                        &n.name,
                        &n.op,
                        format!(
                            "input `{inp}` refers to node `{producer}`, which is not in the graph"
                        ),
                    ))
                }
            }
        }
        deps.push(d);
    }
    // Iterative depth-first search: 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; gd.node.len()];
    let mut order = Vec::with_capacity(gd.node.len());
    for root in 0..gd.node.len() {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some((n, k)) = stack.pop() {
            if k < deps[n].len() {
                stack.push((n, k + 1));
                let d = deps[n][k];
                match state[d] {
                    0 => {
                        state[d] = 1;
                        stack.push((d, 0));
                    }
                    1 => {
                        let node = &gd.node[n];
                        return Err(ImportError::node(
                            path,
                            &node.name,
                            &node.op,
                            "the graph has a cycle through this node (control flow such as while loops is not supported)",
                        ));
                    }
                    _ => {}
                }
            } else {
                state[n] = 2;
                order.push(n);
            }
        }
    }
    Ok(order)
}

/// Import state: the graph so far and the IR value of each imported TensorFlow output.
struct Importer<'a> {
    file: &'a Path,
    graph: Graph,
    /// Per TensorFlow node, its outputs' IR values; `None` marks an output the IR does not
    /// model (e.g. FusedBatchNormV3's training statistics).
    values: HashMap<String, Vec<Option<ValueId>>>,
    /// Constants converted while the file was read, by node name; the Const row takes each
    /// (moves it into the graph) when it imports that node.
    consts: HashMap<String, Result<Tensor, String>>,
    /// Names of the graph inputs by Placeholder node, where a signature renames them.
    input_names: HashMap<String, String>,
    /// The regions of control-flow nodes not imported yet, by node name.
    regions: Regions,
}

/// What a region's input stands for while the region is imported: a value of this type, or a
/// constant the op hands it (imported as that constant, shared, so that folding and packing
/// see the weights a loop body reads).
pub(super) enum ArgBinding {
    Value(TensorType),
    Const(Arc<Tensor>),
}

impl<'a> Importer<'a> {
    /// An importer for `gd`, given the constants already converted, and the order to import
    /// its nodes in.
    fn start(
        gd: &GraphDef,
        consts: HashMap<String, Result<Tensor, String>>,
        path: &'a Path,
    ) -> Result<(Importer<'a>, Vec<usize>), ImportError> {
        if gd.node.is_empty() {
            return Err(ImportError::file(path, "the GraphDef has no nodes"));
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "graph".into());
        let order = dependency_order(gd, path)?;
        let imp = Importer {
            file: path,
            graph: Graph::new(name),
            values: HashMap::new(),
            consts,
            input_names: HashMap::new(),
            regions: Regions::new(),
        };
        Ok((imp, order))
    }

    /// Imports `region` of node `owner` as a graph of its own named `name`, its inputs bound as
    /// `bindings` says (one per `_Arg`, in order), its outputs its return values in order.
    /// TensorFlow 1 loops inside it are functionalized first.
    fn import_region(
        &mut self,
        name: &str,
        region: Region,
        bindings: Vec<ArgBinding>,
    ) -> Result<Graph, ImportError> {
        let Region { nodes, args, rets } = region;
        let mut gd = GraphDef {
            node: nodes,
            ..Default::default()
        };
        let mut regions = std::mem::take(&mut self.regions);
        let prepared = functionalize::functionalize(&mut gd, &mut regions, self.file)
            .and_then(|()| dependency_order(&gd, self.file));
        let order = match prepared {
            Ok(order) => order,
            Err(e) => {
                self.regions = regions;
                return Err(e);
            }
        };
        let mut sub = Importer {
            file: self.file,
            graph: Graph::new(name),
            values: HashMap::new(),
            consts: std::mem::take(&mut self.consts),
            input_names: HashMap::new(),
            regions,
        };
        let result = sub.fill_region(&gd, &order, &args, bindings, &rets);
        self.consts = std::mem::take(&mut sub.consts);
        self.regions = std::mem::take(&mut sub.regions);
        result.map(|()| sub.graph)
    }

    /// The body of [`Importer::import_region`]: inputs, nodes, outputs.
    fn fill_region(
        &mut self,
        gd: &GraphDef,
        order: &[usize],
        args: &[String],
        bindings: Vec<ArgBinding>,
        rets: &[String],
    ) -> Result<(), ImportError> {
        for (k, (arg, b)) in args.iter().zip(bindings).enumerate() {
            let v = match b {
                ArgBinding::Value(ty) => self.graph.add_input(format!("arg{k}"), ty),
                ArgBinding::Const(t) => {
                    self.graph.add_input(format!("arg{k}"), t.ty());
                    let id = self
                        .graph
                        .add_node(Op::Const(t), vec![], arg.clone())
                        .map_err(|e| ImportError::file(self.file, e.to_string()))?;
                    ValueId::first(id)
                }
            };
            self.values.insert(arg.clone(), vec![Some(v)]);
        }
        for &i in order {
            if gd.node[i].op != "_Arg" {
                self.import_node(&gd.node[i])?;
            }
        }
        let outputs: Vec<(String, String)> = rets
            .iter()
            .enumerate()
            .map(|(k, r)| (format!("out{k}"), r.clone()))
            .collect();
        self.add_named_outputs(&outputs)
    }

    fn import_node(&mut self, node: &NodeDef) -> Result<(), ImportError> {
        let err = |m: String| ImportError::node(self.file, &node.name, &node.op, m);
        let mut inputs = Vec::new();
        for inp in &node.input {
            let Some((producer, idx)) = parse_input(inp) else {
                continue;
            };
            let outs = &self.values[producer];
            match outs.get(idx) {
                Some(Some(v)) => inputs.push(*v),
                Some(None) => {
                    return Err(err(format!(
                        "uses `{inp}`, an output Lathe does not compute (only needed in training)"
                    )))
                }
                None => {
                    return Err(err(format!(
                    "input `{inp}` refers to output {idx} of `{producer}`, which has {} output(s)",
                    outs.len()
                )))
                }
            }
        }
        let outs = ops::convert(self, node, inputs).map_err(|e| match e {
            // The IR names the node and its IR op; the user wants TensorFlow's op.
            IrError::Node { message, .. } => err(message),
            other => err(other.to_string()),
        })?;
        self.values.insert(node.name.clone(), outs);
        Ok(())
    }

    /// The constant `node` converted while its file was read (its tensor, or why it has none),
    /// taken out of the importer; `None` if it was not converted then.
    fn take_const(&mut self, node: &str) -> Option<Result<Tensor, String>> {
        self.consts.remove(node)
    }

    /// Adds a Placeholder as a graph input.
    fn placeholder(&mut self, node: &NodeDef) -> Result<Vec<Option<ValueId>>, IrError> {
        let a = attrs::Attrs(node);
        let msg = |m: String| IrError::Graph(m);
        let dtype = a.dtype("dtype").map_err(msg)?;
        let name = self
            .input_names
            .get(&node.name)
            .unwrap_or(&node.name)
            .clone();
        let sym_base: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let shape = match a.shape("shape").map_err(msg)? {
            Some(s) => {
                tensor::shape(s, |axis| Dim::sym(&format!("{sym_base}_d{axis}"))).map_err(msg)?
            }
            None => {
                return Err(msg(
                    "the placeholder has no shape; give it a ranked shape when exporting".into(),
                ))
            }
        };
        let v = self.graph.add_input(name, TensorType::new(dtype, shape));
        Ok(vec![Some(v)])
    }

    /// Declares the named outputs `(name, tensor "node:k")`.
    fn add_named_outputs(&mut self, outputs: &[(String, String)]) -> Result<(), ImportError> {
        for (name, tensor) in outputs {
            let (node, k) = parse_input(tensor).unwrap_or((tensor, 0));
            let v = self
                .values
                .get(node)
                .and_then(|outs| outs.get(k).copied().flatten())
                .ok_or_else(|| {
                    ImportError::file(
                        self.file,
                        format!(
                            "output `{name}` is tensor `{tensor}`, which Lathe does not compute"
                        ),
                    )
                })?;
            self.graph
                .add_output(name.clone(), v)
                .map_err(|e| ImportError::file(self.file, e.to_string()))?;
        }
        Ok(())
    }

    /// Declares the outputs of every node that no other node consumes.
    fn add_outputs(&mut self, gd: &GraphDef, order: &[usize]) -> Result<(), ImportError> {
        // A node read only through control edges is consumed too: it orders something (a
        // variable read before a loop, a loop's exits before `LoopExecuted`), it is no result.
        let mut consumed: HashMap<&str, ()> = HashMap::new();
        for n in &gd.node {
            for inp in &n.input {
                let name = inp.strip_prefix('^').unwrap_or(inp);
                if let Some((p, _)) = parse_input(name) {
                    consumed.insert(p, ());
                }
            }
        }
        for &i in order {
            let n = &gd.node[i];
            if consumed.contains_key(n.name.as_str())
                || matches!(n.op.as_str(), "Const" | "Placeholder" | "NoOp")
            {
                continue;
            }
            for (k, v) in self.values[&n.name].clone().into_iter().enumerate() {
                if let Some(v) = v {
                    self.graph
                        .add_output(format!("{}:{k}", n.name), v)
                        .map_err(|e| ImportError::file(self.file, e.to_string()))?;
                }
            }
        }
        if self.graph.outputs().is_empty() {
            return Err(ImportError::file(
                self.file,
                "the graph has no outputs (every node's result is consumed or is a constant)",
            ));
        }
        Ok(())
    }
}
