//! `fuse`: groups the ops that codegen lowers as one kernel into `fused.*` nodes whose body is
//! the group's subgraph.
//!
//! Groups are formed in three rounds, each taking only nodes no earlier round took:
//!
//! 1. **Epilogues** (`fused.epilogue`): each anchor (matmul, batch matmul, einsum, conv2d,
//!    depthwise conv2d, matmul_integer, conv2d_integer) with the elementwise ops downstream of it that produce its output shape
//!    (bias, activation, GELU's mul/add/erf, residual add). The anchor's inputs come from
//!    outside.
//! 2. **Reductions** (`fused.reduction`): from each reduction over constant axes (reduce_*,
//!    softmax, log_softmax), the elementwise ops and same-domain reductions that consume its
//!    results, until the group's results converge to one full-shape value (a layer norm becomes
//!    one node), plus the elementwise producers whose one use is in the group.
//! 3. **Elementwise** (`fused.elementwise`): the remaining elementwise ops, in maximal
//!    producer/consumer DAGs of one output shape.
//!
//! Every step keeps the graph of groups acyclic (a path may not leave a group and come back).
//! Values used outside a group become extra outputs of its node; nothing is ever computed
//! twice. A group of one op becomes a fused node only when it takes a constant in (a layer is
//! one node with its weights); a lone elementwise op with no constant is left as it is.
//! Fused nodes are named after their anchor (epilogues), first reduction (reductions) or first
//! node (elementwise); the body graph is named `<op>_<n>` (`conv2d_3`) and keeps the original
//! node names. Existing fused nodes are
//! boundaries, so running the pass again changes nothing. The rewrite is exact: the body
//! computes the same ops in the same order.

mod outline;
mod partition;
#[cfg(test)]
mod tests;

use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::ops::{FusedKind, Op};
use lathe_ir::{Graph, NodeId};
use std::collections::HashSet;

/// The `fuse` pass.
pub struct Fuse;

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let err = |e| PassError::ir(self.name(), e);
        let order = g.topo_order().map_err(err)?;
        let groups = partition::Partition::new(g, order, cx.options.capabilities.as_ref()).run();
        let chosen: Vec<_> = groups
            .into_iter()
            .filter(|gr| gr.members.len() > 1 || takes_a_constant(g, &gr.members))
            .collect();
        let mut nodes_fused = 0;
        for (index, gr) in chosen.iter().enumerate() {
            let lead = g.node(lead(g, gr.kind, &gr.members));
            let name = lead.name.clone();
            let body_name = format!("{}_{index}", lead.op.mnemonic());
            outline::outline(g, gr.kind, &gr.members, name, body_name).map_err(err)?;
            nodes_fused += gr.members.len();
        }
        cx.count("groups_fused", chosen.len());
        cx.count("nodes_fused", nodes_fused);
        Ok(Changed::from_bool(!chosen.is_empty()))
    }
}

/// The member a group is named after: an epilogue's anchor (its first member, as members are
/// in topological order), a reduction group's first reduction, an elementwise group's first op.
fn lead(g: &Graph, kind: FusedKind, members: &[NodeId]) -> NodeId {
    let is_reduction = |id: &&NodeId| {
        matches!(
            g.node(**id).op,
            Op::Reduce { .. } | Op::Softmax | Op::LogSoftmax
        )
    };
    match kind {
        FusedKind::Reduction => *members.iter().find(is_reduction).unwrap_or(&members[0]),
        FusedKind::Epilogue | FusedKind::Elementwise => members[0],
    }
}

/// True when a group's body would hold a constant (see [`outline::const_goes_inside`]).
fn takes_a_constant(g: &Graph, members: &[NodeId]) -> bool {
    let set: HashSet<_> = members.iter().copied().collect();
    members.iter().any(|&m| {
        g.node(m)
            .inputs
            .iter()
            .any(|v| outline::const_goes_inside(g, v.node, |id| set.contains(&id)))
    })
}
