//! [`SpecializedGraph`]: the typed gate between the compiler and the backends. A value of this
//! type is a verified graph in which every value's shape is fully known; backends take it
//! instead of a plain [`Graph`], so that check is made once, where the graph is built, and
//! never again (as naga's backends take a validated module).
//!
//! The only ways to get one are [`SpecializedGraph::specialize`] (a model's graph bound to one
//! input signature) and [`SpecializedGraph::new`] (a graph that already has concrete shapes);
//! [`SpecializedGraph::optimize`] runs a pipeline on it and checks the result again.

use crate::passes::PassError;
use crate::pipeline::{PassHooks, PassRecord, Pipeline};
use crate::specialize::{describe_signature, specialize, SpecializeError};
use lathe_ir::{Graph, Tensor, TensorType};
use std::sync::Arc;

/// A verified graph in which every value has a fully known shape: what backends compile.
#[derive(Clone, Debug)]
pub struct SpecializedGraph {
    graph: Graph,
}

impl SpecializedGraph {
    /// `graph` specialized to the concrete input types `inputs` (one per graph input, in
    /// order); see [`specialize`].
    pub fn specialize(graph: &Graph, inputs: &[TensorType]) -> Result<Self, SpecializeError> {
        Ok(SpecializedGraph {
            graph: specialize(graph, inputs)?,
        })
    }

    /// [`SpecializedGraph::specialize`] with shape inputs bound to values (see
    /// [`crate::specialize::specialize_with_values`]).
    pub fn specialize_with_values(
        graph: &Graph,
        inputs: &[TensorType],
        values: &[Option<Arc<Tensor>>],
    ) -> Result<Self, SpecializeError> {
        Ok(SpecializedGraph {
            graph: crate::specialize::specialize_with_values(graph, inputs, values)?,
        })
    }

    /// Checks that `graph` verifies and that every value of it has a fully known shape.
    pub fn new(graph: Graph) -> Result<Self, SpecializeError> {
        let signature = || {
            let types: Vec<TensorType> = graph.inputs().iter().map(|i| i.ty.clone()).collect();
            describe_signature(&graph, &types)
        };
        lathe_ir::verify(&graph).map_err(|source| SpecializeError::Graph {
            signature: signature(),
            source,
        })?;
        if let Some((node, op, output, ty)) = first_unknown(&graph) {
            return Err(SpecializeError::UnknownShape {
                signature: signature(),
                node,
                op,
                output,
                ty,
            });
        }
        Ok(SpecializedGraph { graph })
    }

    /// Runs `pipeline` on the graph (the pass manager verifies after every pass), then checks
    /// that every shape is still known: a pass that loses a shape is a bug, reported as the
    /// pass's error.
    pub fn optimize(
        &mut self,
        pipeline: &Pipeline,
        hooks: &mut dyn PassHooks,
    ) -> Result<Vec<PassRecord>, PassError> {
        let records = pipeline.run(&mut self.graph, hooks)?;
        if let Some((node, op, output, ty)) = first_unknown(&self.graph) {
            return Err(PassError {
                pass: "pipeline",
                message: format!(
                    "node `{node}` ({op}) output {output} has type {ty} after optimization, \
                     which is not fully known"
                ),
            });
        }
        Ok(records)
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The graph, giving up the guarantee.
    pub fn into_graph(self) -> Graph {
        self.graph
    }
}

/// The first node output whose shape is not fully known: `(node, op, output, type)`.
fn first_unknown(g: &Graph) -> Option<(String, String, usize, TensorType)> {
    g.node_ids().into_iter().find_map(|id| {
        let n = g.node(id);
        n.outputs
            .iter()
            .enumerate()
            .find(|(_, ty)| !ty.shape.is_known())
            .map(|(k, ty)| {
                (
                    g.display_name(id),
                    n.op.mnemonic().to_string(),
                    k,
                    ty.clone(),
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::UnaryOp;
    use lathe_ir::{DType, Dim, Op, Shape};

    fn relu_graph(dim: Dim) -> Graph {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape(vec![dim])));
        let y = g.add(Op::Unary(UnaryOp::Relu), vec![x], "y").unwrap();
        g.add_output("y", y).unwrap();
        g
    }

    #[test]
    fn new_requires_known_shapes() {
        assert!(SpecializedGraph::new(relu_graph(Dim::Known(3))).is_ok());
        let e = SpecializedGraph::new(relu_graph(Dim::sym("n"))).unwrap_err();
        assert!(e.to_string().contains("node `x` (input) output 0"), "{e}");
    }

    #[test]
    fn specialize_binds_symbols_and_optimize_keeps_the_guarantee() {
        let g = relu_graph(Dim::sym("n"));
        let mut s =
            SpecializedGraph::specialize(&g, &[TensorType::known(DType::F32, &[5])]).unwrap();
        assert_eq!(s.graph().outputs().len(), 1);
        let p = Pipeline::for_level(2).unwrap();
        s.optimize(&p, &mut crate::pipeline::NoHooks).unwrap();
        let out = s.graph().outputs()[0].value;
        assert_eq!(
            s.graph().value_type(out),
            &TensorType::known(DType::F32, &[5])
        );
    }
}
