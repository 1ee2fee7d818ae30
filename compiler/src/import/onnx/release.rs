//! Letting go of initializers the model's graph no longer reads, while it is imported.
//!
//! A converter that moves a weight (a `Conv` filter transposed to the IR's layout) folds the
//! move at import time: the moved copy is a new constant and the initializer's is left
//! unused. Pruning would drop it after the import, but by then every weight has been held
//! twice. So the uses of each initializer by name are counted before the nodes are
//! converted; once a node has read its last one and neither an IR node, another name
//! (`Builder::values`) nor a sequence or optional (`Builder::items`) holds its constant, the
//! constant is removed at once. (A converter that keeps IR values anywhere else must be
//! counted here too.) The count is an upper bound: every name a nested graph mentions and
//! every graph output counts as a use that never ends, so an initializer that might still be
//! read is kept.

use super::Builder;
use lathe_proto::onnx::{GraphProto, NodeProto};
use std::collections::{HashMap, HashSet};

/// How often the nodes of `gp` (and anything nested in them) and its outputs name each of
/// `inits`.
pub fn uses(gp: &GraphProto, inits: &HashSet<String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut count = |name: &str| {
        if inits.contains(name) {
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
    };
    mentions(gp, &mut count);
    counts
}

/// Calls `f` with every name the nodes of `gp` read or write, those of the graphs nested in
/// them, and `gp`'s outputs.
fn mentions(gp: &GraphProto, f: &mut impl FnMut(&str)) {
    for n in &gp.node {
        n.input.iter().chain(&n.output).for_each(|i| f(i));
        for a in &n.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                mentions(g, f);
            }
        }
    }
    for o in &gp.output {
        f(o.name.as_deref().unwrap_or(""));
    }
}

impl Builder<'_> {
    /// After `node` is converted: counts its reads of initializers off `uses`, and removes
    /// the constant of each it read for the last time that no IR node uses.
    pub(super) fn release(&mut self, node: &NodeProto, uses: &mut HashMap<String, usize>) {
        for name in &node.input {
            let Some(n) = uses.get_mut(name) else {
                continue;
            };
            *n -= 1;
            if *n > 0 {
                continue;
            }
            uses.remove(name);
            let Some(&v) = self.values.get(name) else {
                continue;
            };
            if self.g.const_value(v).is_none() || !self.g.users(v).is_empty() {
                continue;
            }
            // Another name may stand for the same value (an `Identity` of it), or a sequence
            // or optional may hold it: scanned only for a constant nothing uses.
            let named = self.values.iter().any(|(k, &w)| w == v && k != name)
                || self.items.values().any(|item| item.holds(v));
            if !named && self.g.remove_node(v.node).is_ok() {
                self.values.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::import_bytes;
    use lathe_ir::{Graph, Op, Tensor};
    use lathe_proto::onnx::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
    };
    use prost::Message;
    use std::path::Path;

    /// Imports a graph of `nodes` (op, inputs, output) over the initializer `w: f32[2, 3]`,
    /// returning `outputs`.
    fn import(nodes: &[(&str, &[&str], &str)], outputs: &[&str]) -> Graph {
        let w = TensorProto {
            name: Some("w".into()),
            data_type: Some(1),
            dims: vec![2, 3],
            float_data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            ..TensorProto::default()
        };
        let node = (nodes.iter())
            .map(|(op, inputs, output)| NodeProto {
                op_type: Some(op.to_string()),
                input: inputs.iter().map(|s| s.to_string()).collect(),
                output: vec![output.to_string()],
                ..NodeProto::default()
            })
            .collect();
        let output = (outputs.iter())
            .map(|o| ValueInfoProto {
                name: Some(o.to_string()),
                ..ValueInfoProto::default()
            })
            .collect();
        let m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(17),
            }],
            graph: Some(GraphProto {
                node,
                initializer: vec![w],
                output,
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        import_bytes(&m.encode_to_vec(), Path::new("m.onnx")).unwrap()
    }

    /// The shapes of the graph's constants of six elements (`w` and its moves), sorted.
    fn weights(g: &Graph) -> Vec<Vec<usize>> {
        let mut shapes: Vec<Vec<usize>> = (g.node_ids().into_iter())
            .filter_map(|id| match &g.node(id).op {
                Op::Const(t) if t.len() == 6 => Some(t.shape().to_vec()),
                _ => None,
            })
            .collect();
        shapes.sort();
        shapes
    }

    /// The value of output `k`, a constant.
    fn output(g: &Graph, k: usize) -> &Tensor {
        g.const_value(g.outputs()[k].value)
            .expect("a constant output")
    }

    #[test]
    fn a_weight_moved_for_the_last_time_is_let_go() {
        let g = import(&[("Transpose", &["w"], "t")], &["t"]);
        assert_eq!(weights(&g), [[3, 2]]);
        let want = Tensor::from_vec(&[3, 2], vec![0.0f32, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(output(&g, 0), &want);
        // Read by two nodes: let go after the second.
        let g = import(
            &[("Transpose", &["w"], "t"), ("Neg", &["w"], "n")],
            &["t", "n"],
        );
        assert_eq!(weights(&g), [[2, 3], [3, 2]]);
        assert_eq!(output(&g, 1).shape(), [2, 3]);
        assert_eq!(output(&g, 0), &want);
    }

    #[test]
    fn a_weight_still_named_is_kept() {
        // A graph output.
        let g = import(&[("Transpose", &["w"], "t")], &["t", "w"]);
        assert_eq!(weights(&g), [[2, 3], [3, 2]]);
        assert_eq!(output(&g, 1).shape(), [2, 3]);
        // Another name for it, read after `w` is.
        let g = import(
            &[("Identity", &["w"], "v"), ("Transpose", &["v"], "t")],
            &["t"],
        );
        assert_eq!(
            output(&g, 0),
            &Tensor::from_vec(&[3, 2], vec![0.0f32, 3.0, 1.0, 4.0, 2.0, 5.0])
        );
        // Read inside a nested graph: never counted off.
        let uses = super::uses(
            &GraphProto {
                node: vec![NodeProto {
                    input: vec!["w".into(), "w".into()],
                    attribute: vec![lathe_proto::onnx::AttributeProto {
                        g: Some(GraphProto {
                            node: vec![NodeProto {
                                input: vec!["w".into()],
                                ..NodeProto::default()
                            }],
                            ..GraphProto::default()
                        }),
                        ..Default::default()
                    }],
                    ..NodeProto::default()
                }],
                ..GraphProto::default()
            },
            &["w".to_string(), "u".to_string()].into(),
        );
        assert_eq!(uses, [("w".to_string(), 3)].into());
    }
}
