//! The IR graph: nodes computing values from values, stored in petgraph behind typed ids.
//!
//! Invariants the API keeps: each node's `inputs` list is mirrored by one petgraph edge per
//! input slot (producer → consumer, weighted by the slot), so petgraph's algorithms see the
//! dataflow; graph inputs are `Op::Input` nodes whose `index` is their position in
//! [`Graph::inputs`]. Node ids are stable: removing a node does not renumber the others.

use crate::ops::Op;
use crate::{IrError, Result, Tensor, TensorType};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};
use petgraph::Direction;
use std::fmt;
use std::sync::Arc;

/// Identifies a node of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The index, for tables keyed by node.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    fn ix(self) -> NodeIndex {
        NodeIndex::new(self.0 as usize)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// One output of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId {
    pub node: NodeId,
    pub output: u32,
}

impl ValueId {
    /// The first (often only) output of `node`.
    pub fn first(node: NodeId) -> ValueId {
        ValueId { node, output: 0 }
    }
}

/// A node: an op applied to input values, producing typed outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<TensorType>,
    /// The name from the source model (TensorFlow node name, ONNX node name), or empty.
    pub name: String,
}

/// A named graph input.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphInput {
    pub name: String,
    pub ty: TensorType,
    pub node: NodeId,
}

/// A named graph output.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOutput {
    pub name: String,
    pub value: ValueId,
}

/// A dataflow graph with a signature of named inputs and outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    g: StableDiGraph<Node, u32>,
    inputs: Vec<GraphInput>,
    outputs: Vec<GraphOutput>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a graph input of type `ty`, returning its value.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let name = name.into();
        let index = self.inputs.len();
        let node = self.push(Node {
            op: Op::Input { index },
            inputs: vec![],
            outputs: vec![ty.clone()],
            name: name.clone(),
        });
        self.inputs.push(GraphInput { name, ty, node });
        ValueId::first(node)
    }

    /// Adds a constant.
    pub fn add_const(&mut self, tensor: Tensor, name: impl Into<String>) -> ValueId {
        self.add_const_shared(Arc::new(tensor), name)
    }

    /// Adds a constant sharing a tensor held elsewhere.
    pub fn add_const_shared(&mut self, t: Arc<Tensor>, name: impl Into<String>) -> ValueId {
        let ty = t.ty();
        ValueId::first(self.push(Node {
            op: Op::Const(t),
            inputs: vec![],
            outputs: vec![ty],
            name: name.into(),
        }))
    }

    /// Adds a node, inferring its output types; the error names the node and its op.
    pub fn add_node(
        &mut self,
        op: Op,
        inputs: Vec<ValueId>,
        name: impl Into<String>,
    ) -> Result<NodeId> {
        let name = name.into();
        if matches!(op, Op::Input { .. }) {
            return Err(IrError::Graph(format!(
                "node `{name}`: inputs are added with add_input"
            )));
        }
        for v in &inputs {
            self.check_value(*v)
                .map_err(|m| node_error(&name, &op, m))?;
        }
        let outputs = self
            .infer_types(&op, &inputs)
            .map_err(|m| node_error(&name, &op, m))?;
        Ok(self.push(Node {
            op,
            inputs,
            outputs,
            name,
        }))
    }

    /// Adds a node with the given output types, without inference (the text parser uses this;
    /// the verifier checks the types afterwards).
    pub fn add_node_typed(
        &mut self,
        op: Op,
        inputs: Vec<ValueId>,
        outputs: Vec<TensorType>,
        name: impl Into<String>,
    ) -> Result<NodeId> {
        let name = name.into();
        for v in &inputs {
            self.check_value(*v)
                .map_err(|m| node_error(&name, &op, m))?;
        }
        Ok(self.push(Node {
            op,
            inputs,
            outputs,
            name,
        }))
    }

    /// Adds a node with one output and returns that output.
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<ValueId>,
        name: impl Into<String>,
    ) -> Result<ValueId> {
        self.add_node(op, inputs, name).map(ValueId::first)
    }

    /// Declares `value` a graph output named `name`.
    pub fn add_output(&mut self, name: impl Into<String>, value: ValueId) -> Result<()> {
        let name = name.into();
        self.check_value(value)
            .map_err(|m| IrError::Graph(format!("output `{name}`: {m}")))?;
        self.outputs.push(GraphOutput { name, value });
        Ok(())
    }

    /// The output types `op` would have on `inputs`, given the graph's constants.
    pub fn infer_types(
        &self,
        op: &Op,
        inputs: &[ValueId],
    ) -> std::result::Result<Vec<TensorType>, String> {
        if let Op::Input { index } = op {
            return self
                .inputs
                .get(*index)
                .map(|i| vec![i.ty.clone()])
                .ok_or_else(|| format!("input index {index} is out of range"));
        }
        let types: Vec<TensorType> = inputs.iter().map(|v| self.value_type(*v).clone()).collect();
        let consts: Vec<Option<&Tensor>> = inputs.iter().map(|v| self.const_value(*v)).collect();
        op.infer(&types, &consts)
    }

    fn push(&mut self, node: Node) -> NodeId {
        let inputs = node.inputs.clone();
        let ix = self.g.add_node(node);
        for (slot, v) in inputs.iter().enumerate() {
            self.g.add_edge(v.node.ix(), ix, slot as u32);
        }
        NodeId(ix.index() as u32)
    }

    fn check_value(&self, v: ValueId) -> std::result::Result<(), String> {
        match self.g.node_weight(v.node.ix()) {
            None => Err(format!("refers to {} which is not in the graph", v.node)),
            Some(n) if v.output as usize >= n.outputs.len() => Err(format!(
                "refers to output {} of `{}` which has {} output(s)",
                v.output,
                n.name,
                n.outputs.len()
            )),
            Some(_) => Ok(()),
        }
    }

    /// The node with id `id`. Panics if it was removed.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id.ix()]
    }

    /// True when `id` names a node of this graph.
    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id.ix())
    }

    /// Replaces a node's op and output types, keeping its inputs and users.
    pub fn set_op(&mut self, id: NodeId, op: Op, outputs: Vec<TensorType>) {
        let n = &mut self.g[id.ix()];
        n.op = op;
        n.outputs = outputs;
    }

    /// Renames a node.
    pub fn set_name(&mut self, id: NodeId, name: impl Into<String>) {
        self.g[id.ix()].name = name.into();
    }

    /// The type of a value.
    pub fn value_type(&self, v: ValueId) -> &TensorType {
        &self.g[v.node.ix()].outputs[v.output as usize]
    }

    /// The tensor, if `v` is produced by a constant node.
    pub fn const_value(&self, v: ValueId) -> Option<&Tensor> {
        match &self.g[v.node.ix()].op {
            Op::Const(t) => Some(t),
            _ => None,
        }
    }

    /// The graph's inputs, in order.
    pub fn inputs(&self) -> &[GraphInput] {
        &self.inputs
    }

    /// The graph's outputs, in order.
    pub fn outputs(&self) -> &[GraphOutput] {
        &self.outputs
    }

    /// Every node id, in insertion order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g
            .node_indices()
            .map(|i| NodeId(i.index() as u32))
            .collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// One more than the largest node index: the size for tables indexed by [`NodeId::index`].
    pub fn node_bound(&self) -> usize {
        self.g.node_bound()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// Nodes in a topological order (producers first), ties broken by insertion order so the
    /// order is deterministic. Errors on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        // Kahn's algorithm over a min-heap of node indices: deterministic and stable.
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let bound = self.g.node_bound();
        let mut indeg = vec![0usize; bound];
        for e in self.g.edge_references() {
            indeg[e.target().index()] += 1;
        }
        let mut ready: BinaryHeap<Reverse<usize>> = self
            .g
            .node_indices()
            .filter(|i| indeg[i.index()] == 0)
            .map(|i| Reverse(i.index()))
            .collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(NodeId(i as u32));
            for e in self
                .g
                .edges_directed(NodeIndex::new(i), Direction::Outgoing)
            {
                let t = e.target().index();
                indeg[t] -= 1;
                if indeg[t] == 0 {
                    ready.push(Reverse(t));
                }
            }
        }
        if order.len() != self.g.node_count() {
            let stuck = self
                .g
                .node_indices()
                .find(|i| indeg[i.index()] > 0)
                .map(|i| self.g[i].name.clone())
                .unwrap_or_default();
            return Err(IrError::Graph(format!(
                "graph `{}` has a cycle through node `{stuck}`",
                self.name
            )));
        }
        Ok(order)
    }

    /// The nodes that use `v`, with the input slot, in no particular order.
    pub fn users(&self, v: ValueId) -> Vec<(NodeId, usize)> {
        let mut out: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(v.node.ix(), Direction::Outgoing)
            .filter_map(|e| {
                let user = NodeId(e.target().index() as u32);
                let slot = *e.weight() as usize;
                (self.g[e.target()].inputs[slot] == v).then_some((user, slot))
            })
            .collect();
        out.sort();
        out
    }

    /// Nodes that consume any output of `id`.
    pub fn successors(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .g
            .neighbors_directed(id.ix(), Direction::Outgoing)
            .map(|i| NodeId(i.index() as u32))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Points input `slot` of `node` at `value`.
    pub fn set_input(&mut self, node: NodeId, slot: usize, value: ValueId) {
        let edge = self
            .g
            .edges_directed(node.ix(), Direction::Incoming)
            .find(|e| *e.weight() as usize == slot)
            .map(|e| e.id())
            .expect("every input slot has an edge");
        self.g.remove_edge(edge);
        self.g.add_edge(value.node.ix(), node.ix(), slot as u32);
        self.g[node.ix()].inputs[slot] = value;
    }

    /// Replaces every use of `old` (by nodes and by graph outputs) with `new`.
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        for (user, slot) in self.users(old) {
            self.set_input(user, slot, new);
        }
        for o in &mut self.outputs {
            if o.value == old {
                o.value = new;
            }
        }
    }

    /// Removes a node. Errors if any of its outputs is still used or it is a graph input.
    pub fn remove_node(&mut self, id: NodeId) -> Result<()> {
        let n = self.node(id);
        let used =
            !self.successors(id).is_empty() || self.outputs.iter().any(|o| o.value.node == id);
        if used || matches!(n.op, Op::Input { .. }) {
            return Err(node_error(
                &n.name,
                &n.op,
                "cannot be removed while it is used or is a graph input".into(),
            ));
        }
        self.g.remove_node(id.ix());
        Ok(())
    }

    /// Total elements and bytes of all constants (the model's parameters).
    pub fn param_stats(&self) -> (usize, usize) {
        self.g
            .node_weights()
            .filter_map(|n| match &n.op {
                Op::Const(t) => Some((t.len(), t.size_bytes())),
                _ => None,
            })
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// Structural equality: same signature, and the same nodes (op, types, name, inputs) in
    /// [`Graph::canonical_order`], regardless of node ids.
    pub fn structurally_eq(&self, other: &Graph) -> bool {
        let (Ok(a), Ok(b)) = (self.canonical_order(), other.canonical_order()) else {
            return false;
        };
        if self.name != other.name || a.len() != b.len() {
            return false;
        }
        let pos_a = positions(&a, self.g.node_bound());
        let pos_b = positions(&b, other.g.node_bound());
        let val = |pos: &[usize], v: ValueId| (pos[v.node.index()], v.output);
        let same_nodes = a.iter().zip(&b).all(|(&x, &y)| {
            let (nx, ny) = (self.node(x), other.node(y));
            nx.op == ny.op
                && nx.outputs == ny.outputs
                && nx.name == ny.name
                && nx.inputs.len() == ny.inputs.len()
                && nx
                    .inputs
                    .iter()
                    .zip(&ny.inputs)
                    .all(|(&u, &v)| val(&pos_a, u) == val(&pos_b, v))
        });
        let same_inputs = self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(x, y)| {
                x.name == y.name && x.ty == y.ty && pos_a[x.node.index()] == pos_b[y.node.index()]
            });
        let same_outputs = self.outputs.len() == other.outputs.len()
            && self
                .outputs
                .iter()
                .zip(&other.outputs)
                .all(|(x, y)| x.name == y.name && val(&pos_a, x.value) == val(&pos_b, y.value));
        same_nodes && same_inputs && same_outputs
    }

    /// The order structural comparison and the text format use: graph inputs in signature
    /// order, then every other node in topological order. Unlike [`Graph::topo_order`] alone,
    /// it does not depend on when inputs were inserted relative to other nodes.
    pub fn canonical_order(&self) -> Result<Vec<NodeId>> {
        let mut order: Vec<NodeId> = self.inputs.iter().map(|i| i.node).collect();
        order.extend(
            self.topo_order()?
                .into_iter()
                .filter(|id| !matches!(self.node(*id).op, Op::Input { .. })),
        );
        Ok(order)
    }

    /// A node's display name: its source name, or its id when it has none.
    pub fn display_name(&self, id: NodeId) -> String {
        let n = self.node(id);
        if n.name.is_empty() {
            id.to_string()
        } else {
            n.name.clone()
        }
    }
}

/// Graphs are equal when they are structurally equal (see [`Graph::structurally_eq`]).
impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        self.structurally_eq(other)
    }
}

fn positions(order: &[NodeId], bound: usize) -> Vec<usize> {
    let mut pos = vec![usize::MAX; bound];
    for (i, id) in order.iter().enumerate() {
        pos[id.index()] = i;
    }
    pos
}

/// An error about node `name` running `op`.
pub fn node_error(name: &str, op: &Op, message: String) -> IrError {
    IrError::Node {
        node: name.to_string(),
        op: op.mnemonic().to_string(),
        message,
    }
}
