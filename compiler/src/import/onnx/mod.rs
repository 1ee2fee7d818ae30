//! ONNX `ModelProto` importer.
//!
//! A model is one graph of nodes in the default operator set (`ai.onnx`) at the version its
//! `opset_import` names; each node's `op_type` is looked up in the table (`ops/`), whose
//! converter emits IR for that version's semantics. Initializers and `Constant` nodes become
//! IR constants (external data is read from files next to the model: `tensor.rs`); graph
//! inputs that are not initializers become IR graph inputs, a `dim_param` a symbolic dim;
//! the graph's outputs keep their ONNX names. Nested graphs (`If`, `Loop`, `Scan` bodies)
//! become the IR's control-flow regions (`control_flow.rs`): a value a body reads from an
//! enclosing graph is passed to the region as an explicit argument (a constant is taken into
//! it). The recurrent layers (`LSTM`, `GRU`, `RNN`) become `while` loops too
//! (`ops/recurrent.rs`).
//!
//! While importing, a node whose inputs are all constants and whose result is small is
//! evaluated at once (shape arithmetic: `Shape` → `Gather` → `Concat` → `Reshape`), so that
//! converters needing a constant (a `Reshape` target with zeros, `Unsqueeze` axes) see it.
//! When such a value comes from graph inputs instead, the node's error says which
//! ([`ImportError::needs_values`]), and the model can be imported again with those inputs
//! bound to values ([`import_file_bound`]): each becomes a constant where it is read, while
//! the graph keeps it as an input that nothing reads.
//!
//! Sequences and optionals are the importer's alone, of a length and a presence known while
//! importing (`items.rs`): a graph input or output that is one is flattened into tensors, and
//! the caller says how long an input sequence is ([`import_file_with`]).

mod attrs;
mod control_flow;
pub mod data;
mod items;
mod ops;
mod packed;
mod release;
mod stream;
pub mod tensor;
mod unroll;

pub use ops::{supported_ops, table, OnnxOp};

use super::{Container, ImportError, NeedsValues};
use attrs::Attrs;
pub(crate) use items::{Item, Sequence};
use lathe_ir::{DType, Graph, NodeId, Op, Tensor, TensorType, ValueId};
use lathe_proto::onnx::{type_proto, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use stream::{decode_model, Initializer, Weights};

/// The newest version of the default operator set this importer knows the semantics of.
pub const NEWEST_OPSET: i64 = 28;
/// The oldest version it reads. Ops whose meaning changed before version 7 (broadcasting
/// attributes, `Reshape`'s shape attribute) are read by their converters.
pub const OLDEST_OPSET: i64 = 1;
/// The largest model file read (a protobuf message holds at most 2 GiB); weights beyond it
/// belong in external data files.
const MAX_MODEL_BYTES: u64 = 2 << 30;
/// Results of all-constant nodes up to this many elements are computed while importing.
const FOLD_ELEMENTS: usize = 4096;
/// How deeply graphs may nest (`If` in `Loop` in ...).
const MAX_DEPTH: usize = 32;

/// What `lathe inspect` shows of an ONNX model besides its graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    /// `(domain, version)` of each imported operator set; the default domain is `ai.onnx`.
    pub opsets: Vec<(String, i64)>,
}

/// Reads an `.onnx` file and imports it.
pub fn import_file(path: &Path) -> Result<Graph, ImportError> {
    import_file_bound(path, &[])
}

/// [`import_file`] with the graph inputs named in `bound` taken as constants of those values
/// wherever they are read (see [`import_bytes_bound`]).
///
/// The file is read one initializer at a time (`stream.rs`) and each becomes an IR tensor as
/// soon as it is read, so the weights are held about once: the IR's tensors, plus one
/// initializer's bytes and message while it is converted.
pub fn import_file_bound(path: &Path, bound: &[(String, Tensor)]) -> Result<Graph, ImportError> {
    import_file_with(path, &[], bound)
}

/// [`import_file_bound`], with what each graph input that is a sequence or an optional holds
/// (`containers`, by input name): a sequence input `s` of length `n` becomes the tensor
/// inputs `s[0]` ... `s[n-1]`, an optional one holding a tensor the input `s`, an empty one
/// no input. Outputs are flattened the same way.
pub fn import_file_with(
    path: &Path,
    containers: &[(String, Container)],
    bound: &[(String, Tensor)],
) -> Result<Graph, ImportError> {
    let (model, initializers) = read_model(path, Weights::Convert)?;
    import_streamed(&model, initializers, path, containers, bound)
}

/// Imports a serialized model; `path` names it in errors, and its directory is where
/// external data is looked for.
pub fn import_bytes(bytes: &[u8], path: &Path) -> Result<Graph, ImportError> {
    import_bytes_bound(bytes, path, &[])
}

/// [`import_bytes`] with the graph inputs named in `bound` taken as constants of those
/// values wherever they are read, so that what the importer must know (a `Resize`'s scales,
/// `Squeeze` axes) is known. Each bound input stays a graph input with its declared type,
/// read by nothing: the graph is right only for calls that give it the bound value, which the
/// caller ensures by importing once per value. A value must have the input's declared dtype
/// and fit its shape.
pub fn import_bytes_bound(
    bytes: &[u8],
    path: &Path,
    bound: &[(String, Tensor)],
) -> Result<Graph, ImportError> {
    let (model, initializers) = decode(bytes, path, Weights::Convert)?;
    import_streamed(&model, initializers, path, &[], bound)
}

/// The producer, IR version and operator sets of a model file (its weights are read past).
pub fn model_info(path: &Path) -> Result<ModelInfo, ImportError> {
    let (m, _) = read_model(path, Weights::Skip)?;
    Ok(ModelInfo {
        ir_version: m.ir_version.unwrap_or(0),
        producer_name: m.producer_name.clone().unwrap_or_default(),
        producer_version: m.producer_version.clone().unwrap_or_default(),
        opsets: m
            .opset_import
            .iter()
            .map(|o| {
                let d = o.domain.clone().unwrap_or_default();
                let d = if d.is_empty() { "ai.onnx".into() } else { d };
                (d, o.version.unwrap_or(0))
            })
            .collect(),
    })
}

/// Decodes a model file, streamed from disk; see [`decode_model`].
fn read_model(
    path: &Path,
    weights: Weights,
) -> Result<(ModelProto, Vec<Initializer>), ImportError> {
    let io = |e: std::io::Error| ImportError::file(path, e.to_string());
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > MAX_MODEL_BYTES {
        return Err(ImportError::file(
            path,
            format!(
                "model file is {len} bytes, more than the {MAX_MODEL_BYTES} a protobuf may hold; \
                 keep the weights in external data files"
            ),
        ));
    }
    decode_model(BufReader::new(file), len, path, weights)
}

/// Decodes a serialized model; see [`decode_model`].
fn decode(
    bytes: &[u8],
    path: &Path,
    weights: Weights,
) -> Result<(ModelProto, Vec<Initializer>), ImportError> {
    decode_model(bytes, bytes.len() as u64, path, weights)
}

/// What every graph of one model shares: the file and the operator set versions.
pub(crate) struct Model<'a> {
    path: &'a Path,
    /// Version of each imported operator set, by domain (`""` for the default one).
    opsets: HashMap<String, i64>,
    /// Graph inputs bound to values: constants wherever they are read.
    bound: &'a [(String, Tensor)],
    /// What the graph inputs that are sequences or optionals hold.
    containers: &'a [(String, Container)],
}

/// Imports a decoded model whose graph holds its initializers.
#[cfg(test)]
fn import_model(
    m: &ModelProto,
    path: &Path,
    containers: &[(String, Container)],
    bound: &[(String, Tensor)],
) -> Result<Graph, ImportError> {
    import_streamed(m, Vec::new(), path, containers, bound)
}

/// Imports a decoded model whose graph's initializers were taken out and converted already
/// (`initializers`, in file order, before any left in the graph).
fn import_streamed(
    m: &ModelProto,
    initializers: Vec<Initializer>,
    path: &Path,
    containers: &[(String, Container)],
    bound: &[(String, Tensor)],
) -> Result<Graph, ImportError> {
    let mut opsets = HashMap::new();
    for o in &m.opset_import {
        let domain = match o.domain.as_deref().unwrap_or("") {
            "ai.onnx" => "",
            d => d,
        };
        opsets.insert(domain.to_string(), o.version.unwrap_or(0));
    }
    // Before IR version 3 there were no opset imports; such models use opset 1.
    let default = *opsets.get("").unwrap_or(&1);
    if !(OLDEST_OPSET..=NEWEST_OPSET).contains(&default) {
        return Err(ImportError::file(
            path,
            format!(
                "the model uses version {default} of the ONNX operator set; Lathe reads \
                 versions {OLDEST_OPSET} to {NEWEST_OPSET}"
            ),
        ));
    }
    opsets.insert(String::new(), default);
    let gp = m
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::file(path, "the model has no graph"))?;
    let model = Model {
        path,
        opsets,
        bound,
        containers,
    };
    let name = gp.name.clone().unwrap_or_default();
    let mut b = Builder::new(&model, if name.is_empty() { "onnx" } else { &name }, 0);
    b.main_graph(gp, initializers)?;
    Ok(b.g)
}

/// One node being converted: its proto, attributes, inputs and operator set version.
pub(crate) struct NodeCx<'a> {
    pub node: &'a NodeProto,
    pub op: &'a str,
    pub attrs: Attrs<'a>,
    /// One per ONNX input; `None` for an omitted optional input (an empty name).
    pub inputs: Vec<Option<ValueId>>,
    /// The version of the node's operator set.
    pub opset: i64,
}

impl NodeCx<'_> {
    /// Required input `i`.
    pub fn input(&self, i: usize) -> Result<ValueId, String> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {i} is required"))
    }

    /// Optional input `i`.
    pub fn opt(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    /// How many outputs the node names (trailing optional ones may be left out).
    pub fn outputs(&self) -> usize {
        self.node.output.len()
    }

    /// True when output `i` is named (wanted).
    pub fn wants(&self, i: usize) -> bool {
        self.node.output.get(i).is_some_and(|n| !n.is_empty())
    }
}

/// Builds one IR graph from an ONNX graph (the model's, or a nested body).
pub(crate) struct Builder<'a> {
    pub model: &'a Model<'a>,
    pub g: Graph,
    /// The IR value of each ONNX value name in scope that is a tensor.
    values: HashMap<String, ValueId>,
    /// Each ONNX value name in scope that is a sequence or an optional.
    items: HashMap<String, Item>,
    /// Name of the node being converted; the IR nodes it adds are named after it.
    current: String,
    /// How many IR nodes the current ONNX node added so far.
    added: usize,
    /// Nesting depth (0 for the model's graph).
    pub depth: usize,
    /// The graph inputs the current node needed the values of, and the error that said so
    /// (set by [`Builder::not_constant`]).
    needs: RefCell<Option<(Vec<String>, String)>>,
}

impl<'a> Builder<'a> {
    pub fn new(model: &'a Model<'a>, name: &str, depth: usize) -> Builder<'a> {
        Builder {
            model,
            g: Graph::new(name),
            values: HashMap::new(),
            items: HashMap::new(),
            current: String::new(),
            added: 0,
            depth,
            needs: RefCell::new(None),
        }
    }

    fn err(&self, message: impl Into<String>) -> ImportError {
        ImportError::file(self.model.path, message)
    }

    /// The model's graph: initializers (first `streamed`, those the file's reading took out
    /// of `gp` and converted), inputs (bound ones read as constants), nodes (letting go of
    /// initializers as they are read for the last time: `release.rs`), outputs. An error that
    /// needs input values gets the model's interface.
    fn main_graph(
        &mut self,
        gp: &GraphProto,
        streamed: Vec<Initializer>,
    ) -> Result<(), ImportError> {
        let mut inits = self.bind_initializers(streamed)?;
        inits.extend(self.initializers(gp)?);
        for vi in &gp.input {
            let name = vi.name.clone().unwrap_or_default();
            if inits.contains(&name) {
                // An input that is also an initializer: the initializer is its value.
                // (ONNX lets a caller override it; Lathe keeps it a constant.)
                continue;
            }
            if items::is_container(vi) {
                let item = self.container_input(vi, &name)?;
                self.bind_item(&name, item);
                continue;
            }
            let ty = value_type(vi, &name).map_err(|e| self.err(format!("input `{name}`: {e}")))?;
            let v = self.tensor_input(&name, ty)?;
            self.values.insert(name, v);
        }
        if let Some((name, _)) = (self.model.containers.iter())
            .find(|(n, _)| !gp.input.iter().any(|i| i.name.as_deref() == Some(n)))
        {
            return Err(self.err(format!(
                "`{name}` is described as a sequence or an optional, but the graph has no input \
                 of that name"
            )));
        }
        if let Some((name, _)) = self
            .model
            .bound
            .iter()
            .find(|(n, _)| !self.g.inputs().iter().any(|i| i.name == *n))
        {
            return Err(self.err(format!(
                "cannot bind `{name}`: the graph has no input of that name"
            )));
        }
        let mut uses = release::uses(gp, &inits);
        let converted: Result<(), ImportError> = gp.node.iter().try_for_each(|n| {
            self.node(n)?;
            self.release(n, &mut uses);
            Ok(())
        });
        if let Err(mut e) = converted {
            if let Some(needs) = e.needs_values.as_mut() {
                needs.graph = self.g.name.clone();
                needs.declared = (self.g.inputs().iter())
                    .map(|i| (i.name.clone(), i.ty.clone()))
                    .collect();
                needs.outputs = gp
                    .output
                    .iter()
                    .map(|o| o.name.clone().unwrap_or_default())
                    .collect();
            }
            return Err(e);
        }
        self.outputs(gp)
    }

    /// A tensor input of the graph: a constant where it is bound to a value.
    fn tensor_input(&mut self, name: &str, ty: TensorType) -> Result<ValueId, ImportError> {
        let v = self.g.add_input(name, ty.clone());
        match self.model.bound.iter().find(|(n, _)| n == name) {
            Some((_, t)) => {
                if t.dtype() != ty.dtype || !ty.shape.admits(t.shape()) {
                    return Err(self.err(format!(
                        "input `{name}` is bound to a value of type {}, which does not fit its \
                         declared type {ty}",
                        t.ty()
                    )));
                }
                Ok(self.g.add_const(t.clone(), format!("{name} (bound)")))
            }
            None => Ok(v),
        }
    }

    /// Binds each initializer of `gp` to a constant; returns their names.
    pub fn initializers(&mut self, gp: &GraphProto) -> Result<HashSet<String>, ImportError> {
        let dir = self.model.path.parent();
        let in_graph = (gp.initializer.iter()).map(|t| {
            (
                t.name.clone().unwrap_or_default(),
                tensor::tensor_in(t, dir),
            )
        });
        let names = self.bind_initializers(in_graph)?;
        if let Some(s) = gp.sparse_initializer.first() {
            let name = s.values.as_ref().and_then(|v| v.name.clone());
            return Err(self.err(format!(
                "sparse initializer `{}` is not supported",
                name.unwrap_or_default()
            )));
        }
        Ok(names)
    }

    /// Binds each converted initializer (name, tensor) to a constant; returns their names.
    fn bind_initializers(
        &mut self,
        inits: impl IntoIterator<Item = Initializer>,
    ) -> Result<HashSet<String>, ImportError> {
        let mut names = HashSet::new();
        for (name, tensor) in inits {
            let tensor = tensor.map_err(|e| self.err(format!("initializer `{name}`: {e}")))?;
            let v = self.g.add_const(tensor, name.clone());
            self.values.insert(name.clone(), v);
            names.insert(name);
        }
        Ok(names)
    }

    /// Binds `name` to `v` (a region's inputs, captured values).
    pub fn bind(&mut self, name: &str, v: ValueId) {
        self.values.insert(name.to_string(), v);
    }

    /// The value `name` is bound to, when it is a tensor.
    pub fn lookup(&self, name: &str) -> Option<ValueId> {
        self.values.get(name).copied()
    }

    /// What `name` is bound to: a tensor, a sequence or an optional.
    pub fn item(&self, name: &str) -> Option<Item> {
        match self.values.get(name) {
            Some(&v) => Some(Item::Tensor(v)),
            None => self.items.get(name).cloned(),
        }
    }

    /// Binds `name` to `item` (a tensor is bound as [`Builder::bind`] does).
    pub fn bind_item(&mut self, name: &str, item: Item) {
        match item {
            Item::Tensor(v) => {
                self.items.remove(name);
                self.values.insert(name.to_string(), v);
            }
            item => {
                self.values.remove(name);
                self.items.insert(name.to_string(), item);
            }
        }
    }

    /// Converts every node of `gp`, in order (ONNX lists nodes topologically).
    pub fn nodes(&mut self, gp: &GraphProto) -> Result<(), ImportError> {
        for node in &gp.node {
            self.node(node)?;
        }
        Ok(())
    }

    /// Declares `gp`'s outputs as the graph's, checking their declared dtypes. The model's
    /// graph flattens a sequence or optional output into its tensors; a region returns
    /// tensors only.
    pub fn outputs(&mut self, gp: &GraphProto) -> Result<(), ImportError> {
        for vi in &gp.output {
            let name = vi.name.clone().unwrap_or_default();
            if let Some(item) = self.items.get(&name).cloned() {
                if self.depth > 0 {
                    return Err(self.err(format!(
                        "output `{name}` is {}, which a branch or loop body run as a region (its \
                         condition or trip count known only at run time) cannot return: \
                         sequences and optionals are not supported there",
                        item.kind()
                    )));
                }
                self.container_output(vi, &name, &item)?;
                continue;
            }
            let v = self
                .lookup(&name)
                .ok_or_else(|| self.err(format!("output `{name}` is not produced by any node")))?;
            let got = self.g.value_type(v).clone();
            if let Some(want) = items::elem_dtype(vi.r#type.as_ref()) {
                if want != got.dtype {
                    return Err(self.err(format!(
                        "output `{name}` is declared {want} but computes {}",
                        got.dtype
                    )));
                }
            }
            self.g
                .add_output(name.clone(), v)
                .map_err(|e| self.err(e.to_string()))?;
        }
        Ok(())
    }

    fn node(&mut self, node: &NodeProto) -> Result<(), ImportError> {
        let op_type = node.op_type.as_deref().unwrap_or("");
        let name = match node.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => node
                .output
                .iter()
                .find(|o| !o.is_empty())
                .cloned()
                .unwrap_or_else(|| op_type.to_string()),
        };
        let fail = |m: String| ImportError::node(self.model.path, &name, op_type, m);
        let domain = match node.domain.as_deref().unwrap_or("") {
            "ai.onnx" => "",
            d => d,
        };
        if !domain.is_empty() && domain != ops::PREVIEW {
            return Err(fail(format!(
                "operator domain `{domain}` is not supported (only the default ONNX operator set \
                 and the preview ops of `{}` are)",
                ops::PREVIEW
            )));
        }
        let opset = self.model.opsets.get(domain).copied().unwrap_or(1);
        let row = ops::lookup(domain, op_type).ok_or_else(|| {
            fail("op is not supported (`lathe ops` lists the ONNX ops Lathe imports)".into())
        })?;
        let takes_items = matches!(row.convert, ops::Converter::Items(_));
        let mut inputs = Vec::with_capacity(node.input.len());
        for i in &node.input {
            if i.is_empty() {
                inputs.push(None);
                continue;
            }
            if let Some(item) = self.items.get(i) {
                if takes_items {
                    // An item row reads it with `Builder::item_input`.
                    inputs.push(None);
                    continue;
                }
                return Err(fail(format!(
                    "input `{i}` is {}, which this op does not take (only tensors are \
                     supported here)",
                    item.kind()
                )));
            }
            let v = self.lookup(i).ok_or_else(|| {
                fail(format!(
                    "input `{i}` is not a graph input, an initializer or an earlier node's output"
                ))
            })?;
            inputs.push(Some(v));
        }
        let cx = NodeCx {
            node,
            op: op_type,
            attrs: Attrs(node),
            inputs,
            opset,
        };
        self.current = name.clone();
        self.added = 0;
        self.needs.replace(None);
        let converted = match row.convert {
            ops::Converter::Tensors(f) => {
                f(self, &cx).map(|vs| vs.into_iter().map(Item::Tensor).collect::<Vec<_>>())
            }
            ops::Converter::Items(f) => f(self, &cx),
        };
        let outs = converted.map_err(|m| {
            let needs = self
                .needs
                .take()
                .filter(|(_, said)| m.contains(said.as_str()));
            let mut e = fail(m);
            if let Some((inputs, _)) = needs {
                e.needs_values = Some(Box::new(NeedsValues {
                    graph: String::new(),
                    inputs,
                    declared: Vec::new(),
                    outputs: Vec::new(),
                }));
            }
            e
        })?;
        for (i, out) in node.output.iter().enumerate() {
            if out.is_empty() {
                continue;
            }
            let v = outs.get(i).cloned().ok_or_else(|| {
                fail(format!(
                    "output {i} (`{out}`) is not supported; only the first {} are",
                    outs.len()
                ))
            })?;
            self.bind_item(out, v);
        }
        Ok(())
    }

    /// The name for the next IR node the current ONNX node adds.
    fn next_name(&mut self) -> String {
        self.added += 1;
        match self.added {
            1 => self.current.clone(),
            k => format!("{}/{}", self.current, k - 1),
        }
    }

    /// Adds `op` on `inputs` (one output), computing it at once when every input is a
    /// constant and the result is small.
    pub fn op(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId, String> {
        let node = self.node_of(op, inputs)?;
        Ok(ValueId::first(node))
    }

    /// [`Builder::op`] for an op with several outputs; returns the node.
    pub fn node_of(&mut self, op: Op, inputs: &[ValueId]) -> Result<NodeId, String> {
        let name = self.next_name();
        if let Some(outs) = self.fold(&op, inputs) {
            if outs.len() == 1 {
                let t = outs.into_iter().next().expect("one output");
                return Ok(self.g.add_const(t, name).node);
            }
            let vals: Vec<ValueId> = outs
                .into_iter()
                .enumerate()
                .map(|(k, t)| self.g.add_const(t, format!("{name}:{k}")))
                .collect();
            return self
                .g
                .add_node(Op::IdentityN, vals, name)
                .map_err(|e| e.to_string());
        }
        self.g
            .add_node(op, inputs.to_vec(), name)
            .map_err(|e| strip_location(&e.to_string()))
    }

    /// The values of an all-constant node, when small enough to compute while importing.
    fn fold(&self, op: &Op, inputs: &[ValueId]) -> Option<Vec<Tensor>> {
        if matches!(
            op,
            Op::If { .. } | Op::While { .. } | Op::ListReserve { .. } | Op::NoOp
        ) {
            return None;
        }
        if let (Op::Shape { output }, [x]) = (op, inputs) {
            // The shape of a value whose shape is known.
            let dims = self.g.value_type(*x).shape.as_known()?;
            let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            let t = Tensor::from_vec(&[dims.len()], dims).cast(*output);
            return Some(vec![t]);
        }
        let consts: Vec<&Tensor> = inputs
            .iter()
            .map(|&v| self.g.const_value(v))
            .collect::<Option<_>>()?;
        // Moving a weight (a filter's reshape or transpose) folds at any size: the moved copy
        // replaces the initializer, which is pruned. Anything else only when small.
        let movement = matches!(
            op,
            Op::Reshape | Op::Transpose | Op::Squeeze { .. } | Op::ExpandDims | Op::Identity
        );
        let limit = if movement { usize::MAX } else { FOLD_ELEMENTS };
        if consts.iter().any(|t| t.len() > limit) {
            return None;
        }
        let types = self.g.infer_types(op, inputs).ok()?;
        let small = types
            .iter()
            .all(|t| t.shape.num_elements().is_some_and(|n| n <= limit));
        if !small {
            return None;
        }
        let out = op.eval(&consts).ok()?;
        let fits = out.len() == types.len()
            && out.iter().zip(&types).all(|(t, ty)| {
                t.dtype() == ty.dtype && ty.shape.as_known().as_deref() == Some(t.shape())
            });
        fits.then(|| out.into_iter().map(Tensor::into_standard_layout).collect())
    }

    /// A constant.
    pub fn konst(&mut self, t: Tensor) -> ValueId {
        let name = self.next_name();
        self.g.add_const(t, name)
    }

    /// A rank-1 i64 constant.
    pub fn i64s(&mut self, vals: &[i64]) -> ValueId {
        self.konst(Tensor::from_vec(&[vals.len()], vals.to_vec()))
    }

    /// A scalar i64 constant.
    pub fn i64_scalar(&mut self, v: i64) -> ValueId {
        self.konst(Tensor::scalar(v))
    }

    /// A scalar constant of dtype `dt`.
    pub fn scalar(&mut self, dt: DType, v: f64) -> ValueId {
        self.konst(Tensor::from_f64(dt, &[], &[v]))
    }

    /// The type of `v`.
    pub fn ty(&self, v: ValueId) -> &TensorType {
        self.g.value_type(v)
    }

    /// The dtype of `v`.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.g.value_type(v).dtype
    }

    /// The rank of `v`.
    pub fn rank(&self, v: ValueId) -> usize {
        self.g.value_type(v).shape.rank()
    }

    /// The value of `v` when it is a constant.
    pub fn const_of(&self, v: ValueId) -> Option<&Tensor> {
        self.g.const_value(v)
    }

    /// The value of `v`, which the importer must know: the error of
    /// [`Builder::not_constant`] (`what`, `why`) when it is not a constant.
    pub fn known(&self, v: ValueId, what: &str, why: &str) -> Result<&Tensor, String> {
        self.const_of(v)
            .ok_or_else(|| self.not_constant(v, what, why))
    }

    /// The integers of constant `v` (`what` names it in the error when it is not constant).
    pub fn ints_of(&self, v: ValueId, what: &str) -> Result<Vec<i64>, String> {
        let t = self.known(v, what, "")?;
        t.to_i64_vec().map_err(|e| format!("{what}: {e}"))
    }

    /// The one integer of constant `v` (a scalar or a one-element tensor), which the
    /// importer must know: `what` names it in errors, `why` says why it must be known (see
    /// [`Builder::not_constant`]).
    pub fn int_of(&self, v: ValueId, what: &str, why: &str) -> Result<i64, String> {
        let t = self.known(v, what, why)?;
        match t.to_i64_vec().map_err(|e| format!("{what}: {e}"))?[..] {
            [n] => Ok(n),
            _ => Err(format!("{what} must be one integer, got {}", self.ty(v))),
        }
    }

    /// The error for `what`, value `v`, which the importer must know but which is computed at
    /// run time (`why`, when not empty, says why it must be known: ` (...)`). When `v` comes
    /// from graph inputs whose values would make it a constant, the message names them and
    /// the node's error reports them ([`ImportError::needs_values`]): the one place that
    /// decides whether importing with bound inputs can help.
    pub fn not_constant(&self, v: ValueId, what: &str, why: &str) -> String {
        let Some(inputs) = self.inputs_behind(v) else {
            return format!(
                "{what} computed at run time is not supported (it must be a constant{why})"
            );
        };
        let list: Vec<String> = inputs.iter().map(|n| format!("`{n}`")).collect();
        let message = format!(
            "{what} must be known while importing{why}, and it comes from the value of graph \
             {} {}: such a model is imported once per value of {}, given when it runs",
            if inputs.len() == 1 { "input" } else { "inputs" },
            list.join(", "),
            if inputs.len() == 1 { "it" } else { "them" }
        );
        self.needs.replace(Some((inputs, message.clone())));
        message
    }

    /// The graph inputs whose values `v` is computed from, when it is computed from nothing
    /// else that is unknown while importing (a shape it reads is unknown); `None` when there
    /// are none, or in a nested graph (whose inputs are the enclosing node's values).
    fn inputs_behind(&self, v: ValueId) -> Option<Vec<String>> {
        if self.depth > 0 {
            return None;
        }
        let (mut seen, mut stack, mut found) = (HashSet::new(), vec![v.node], BTreeSet::new());
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let n = self.g.node(id);
            match &n.op {
                Op::Input { index } => {
                    found.insert(*index);
                }
                Op::Const(_) => {}
                // A shape that did not fold is unknown; binding values does not tell it.
                Op::Shape { .. } => return None,
                _ => stack.extend(n.inputs.iter().map(|i| i.node)),
            }
        }
        let names = found.iter().map(|&k| self.g.inputs()[k].name.clone());
        (!found.is_empty()).then(|| names.collect())
    }

    /// Imports a nested graph into a region: its inputs are `formal` (name and type) then one
    /// per captured outer value (`captures`: constants it reads become constants inside it,
    /// sharing the tensor; other values its inputs); its outputs are `gp`'s.
    pub fn region(
        &self,
        gp: &GraphProto,
        formal: &[(String, TensorType)],
        captures: &control_flow::Captures,
    ) -> Result<Graph, ImportError> {
        let name = gp.name.clone().unwrap_or_else(|| "body".into());
        let mut b = self.nested(&name)?;
        for (n, ty) in formal {
            let v = b.g.add_input(n.clone(), ty.clone());
            b.values.insert(n.clone(), v);
        }
        captures.bind(self, &mut b);
        b.initializers(gp)?;
        b.nodes(gp)?;
        b.outputs(gp)?;
        Ok(b.g)
    }

    /// An empty builder for a graph nested in this one (a region), named `name`.
    pub fn nested(&self, name: &str) -> Result<Builder<'a>, ImportError> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(self.err(format!("graphs nest more than {MAX_DEPTH} deep")));
        }
        Ok(Builder::new(self.model, name, self.depth + 1))
    }

    /// Names the IR nodes added from now on after `name` (`name`, `name/1`, ...), for nodes
    /// an importer adds to a region outside any ONNX node.
    pub fn naming(&mut self, name: &str) {
        self.current = name.to_string();
        self.added = 0;
    }
}

/// An IR error message without the node prefix `Graph::add_node` gives it (the importer's
/// error names the ONNX node instead).
fn strip_location(msg: &str) -> String {
    match msg.split_once("): ") {
        Some((head, rest)) if head.starts_with("node `") => rest.to_string(),
        _ => msg.to_string(),
    }
}

/// The IR type of a graph input: its element type and shape (an unnamed unknown dim becomes
/// the symbol `<name>_d<axis>`).
pub(crate) fn value_type(vi: &ValueInfoProto, name: &str) -> Result<TensorType, String> {
    let t = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        Some(_) => {
            return Err(
                "only tensor values are supported (not sequences, maps or optionals)".into(),
            )
        }
        None => return Err("has no type".into()),
    };
    items::tensor_type(t, None, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_proto::onnx::{
        tensor_shape_proto, type_proto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    };
    use prost::Message;

    fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| tensor_shape_proto::Dimension {
                value: Some(if d < 0 {
                    tensor_shape_proto::dimension::Value::DimParam("batch".into())
                } else {
                    tensor_shape_proto::dimension::Value::DimValue(d)
                }),
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn model(op: &str, opset: i64) -> Vec<u8> {
        let node = NodeProto {
            input: vec!["x".into()],
            output: vec!["y".into()],
            name: Some("n1".into()),
            op_type: Some(op.into()),
            ..Default::default()
        };
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(GraphProto {
                node: vec![node],
                input: vec![value("x", &[-1, 3])],
                output: vec![value("y", &[-1, 3])],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// A model of `nodes` (op, inputs, output) over f32 input `x` of `dims` and i64 input
    /// `a: [1]`, with output `y`.
    fn chain(nodes: &[(&str, &[&str], &str)], dims: &[i64]) -> ModelProto {
        let mut a = value("a", &[1]);
        if let Some(type_proto::Value::TensorType(t)) =
            a.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.elem_type = Some(7);
        }
        let node = nodes
            .iter()
            .map(|(op, inputs, output)| NodeProto {
                input: inputs.iter().map(|s| s.to_string()).collect(),
                output: vec![output.to_string()],
                op_type: Some(op.to_string()),
                ..Default::default()
            })
            .collect();
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            graph: Some(GraphProto {
                name: Some("g".into()),
                node,
                input: vec![value("x", dims), a],
                output: vec![value("y", &[])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Axes computed from an input through ops the importer folds need that input's value;
    /// bound, they import.
    #[test]
    fn values_needed_through_folded_ops_name_the_input() {
        let m = chain(
            &[
                ("Neg", &["a"], "n"),
                ("Neg", &["n"], "axes"),
                ("Squeeze", &["x", "axes"], "y"),
            ],
            &[2, 1, 3],
        );
        let path = Path::new("m.onnx");
        let e = import_model(&m, path, &[], &[]).unwrap_err();
        let needs = e.needs_values.as_deref().expect("needs values");
        assert_eq!(needs.inputs, ["a"]);
        assert_eq!(needs.graph, "g");
        assert_eq!(needs.outputs, ["y"]);
        assert_eq!(needs.interface().inputs().len(), 2);
        assert_eq!(
            e.to_string(),
            "m.onnx: node `y` (op Squeeze): the `axes` input must be known while importing, and \
             it comes from the value of graph input `a`: such a model is imported once per \
             value of it, given when it runs"
        );
        let bound = [("a".to_string(), Tensor::from_vec(&[1], vec![1i64]))];
        let g = import_model(&m, path, &[], &bound).unwrap();
        assert_eq!(g.value_type(g.outputs()[0].value).to_string(), "f32[2,3]");
    }

    /// A value computed from a shape the importer does not know is not one that input
    /// values tell: the plain error, naming no inputs.
    #[test]
    fn values_from_unknown_shapes_need_no_inputs() {
        let m = chain(
            &[
                ("Shape", &["x"], "s"),
                ("Slice", &["s", "a", "a"], "axes"),
                ("Squeeze", &["x", "axes"], "y"),
            ],
            &[-1, 1, 3],
        );
        let e = import_model(&m, Path::new("m.onnx"), &[], &[]).unwrap_err();
        assert_eq!(e.needs_values, None);
        assert!(
            e.message.contains("computed at run time is not supported"),
            "{e}"
        );
    }

    #[test]
    fn imports_a_node_with_a_symbolic_batch() {
        let g = import_bytes(&model("Relu", 17), Path::new("m.onnx")).unwrap();
        assert_eq!(g.inputs()[0].ty.to_string(), "f32[?batch,3]");
        assert_eq!(g.outputs()[0].name, "y");
    }

    #[test]
    fn errors_name_the_file_node_and_op() {
        let e = import_bytes(&model("NoSuchOp", 17), Path::new("m.onnx")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.onnx: node `n1` (op NoSuchOp): op is not supported (`lathe ops` lists the ONNX \
             ops Lathe imports)"
        );
        let e = import_bytes(&model("Relu", 99), Path::new("m.onnx")).unwrap_err();
        assert!(
            e.to_string()
                .contains("version 99 of the ONNX operator set"),
            "{e}"
        );
        let e = import_bytes(b"\x08\x07\x12\xff", Path::new("m.onnx")).unwrap_err();
        assert!(
            e.to_string().starts_with("m.onnx: not a valid ONNX model"),
            "{e}"
        );
    }
}
