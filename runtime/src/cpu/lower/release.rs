//! Letting go of weights while lowering, so a model's weights are never held twice.
//!
//! Lowering packs a convolution's filter or a GEMM's `B` into its kernel. Once the kernel holds
//! the packed copy, the plain tensor is needed only if a step still reads it from memory; if
//! none does, both the plan's reference to it and the graph's are dropped right after the last
//! node that uses it is lowered (not at the end), so the plain and packed copies of all the
//! weights never live at the same time. Lowering owns its graph for this: a node whose users
//! are all lowered is never looked at again.
//!
//! A value is *pending* while a node that reads it (or the graph's outputs) has not been
//! lowered; a constant storage is released when no pending value lives in it and no step reads
//! it from memory. A fused node's body (and the constants in it) is released right after the
//! node itself is lowered: its kernel holds what it needs. So are a `while`'s or an `if`'s
//! regions: their sub-plans were lowered from copies that let go of their own weights the
//! same way.

use super::{Builder, StorageKind};
use lathe_ir::ops::Op;
use lathe_ir::{DType, Graph, NodeId, Tensor, ValueId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What lowering still needs of each value and constant storage.
pub(super) struct Release {
    /// Readers of each value not lowered yet (a graph output counts as one that never is).
    pending: HashMap<ValueId, usize>,
    /// The constant storage each pending value's buffer lives in (as bound when its node was
    /// lowered: constants never move, other storages may later merge).
    in_const: HashMap<ValueId, usize>,
    /// Pending values whose buffer lives in each constant storage.
    live: HashMap<usize, usize>,
    /// Constant storages some step reads from memory, from the first `steps_seen` steps.
    read: HashSet<usize>,
    steps_seen: usize,
    /// What a released constant node holds instead of its tensor.
    empty: Arc<Tensor>,
}

impl Release {
    pub fn new(g: &Graph) -> Release {
        let mut pending: HashMap<ValueId, usize> = HashMap::new();
        for id in g.node_ids() {
            for &v in &g.node(id).inputs {
                *pending.entry(v).or_default() += 1;
            }
        }
        for out in g.outputs() {
            *pending.entry(out.value).or_default() += 1;
        }
        Release {
            pending,
            in_const: HashMap::new(),
            live: HashMap::new(),
            read: HashSet::new(),
            steps_seen: 0,
            empty: Arc::new(Tensor::zeros(DType::F32, &[0])),
        }
    }

    /// Node `id` was just lowered by `b`, which created the storages `new_storages` for it:
    /// its inputs have one reader fewer and its outputs are bound. Drops what no later node or
    /// step needs, in the plan and in `g`.
    pub fn after_node(
        &mut self,
        g: &mut Graph,
        id: NodeId,
        b: &mut Builder,
        new_storages: std::ops::Range<usize>,
    ) {
        let storage_of = |b: &Builder, v: ValueId| b.values.get(&v).map(|&buf| b.bufs[buf].storage);
        let mut candidates: Vec<usize> = new_storages.collect();
        let mut done_consts: Vec<NodeId> = vec![];
        let node = g.node(id);
        let fused = match &node.op {
            Op::Fused { kind, .. } => Some(*kind),
            _ => None,
        };
        let (inputs, outputs) = (node.inputs.clone(), node.outputs.clone());
        for k in 0..outputs.len() {
            let w = ValueId {
                node: id,
                output: k as u32,
            };
            let Some(s) = storage_of(b, w) else { continue };
            if !matches!(b.storages[s].kind, StorageKind::Const(_)) {
                continue;
            }
            if self.pending.get(&w).copied().unwrap_or(0) > 0 {
                *self.live.entry(s).or_default() += 1;
                self.in_const.insert(w, s);
            }
            candidates.push(s);
        }
        for &v in &inputs {
            let Some(p) = self.pending.get_mut(&v) else {
                continue;
            };
            *p -= 1;
            if *p > 0 {
                continue;
            }
            if matches!(g.node(v.node).op, Op::Const(_)) {
                done_consts.push(v.node);
            }
            if let Some(s) = self.in_const.remove(&v) {
                if let Some(l) = self.live.get_mut(&s) {
                    *l = l.saturating_sub(1);
                }
                candidates.push(s);
            }
        }
        // The steps lowered since the last node: which constants they read from memory
        // (constant storages never move, so a step's reads of them stay what they are now).
        for step in &b.steps[self.steps_seen..] {
            for buf in super::memory_reads(step) {
                let s = b.bufs[buf].storage;
                if matches!(b.storages[s].kind, StorageKind::Const(_)) {
                    self.read.insert(s);
                }
            }
        }
        self.steps_seen = b.steps.len();
        for s in candidates {
            let idle = self.live.get(&s).copied().unwrap_or(0) == 0;
            if idle
                && matches!(b.storages[s].kind, StorageKind::Const(_))
                && !self.read.contains(&s)
            {
                b.storages[s].kind = StorageKind::Baked;
            }
        }
        // The graph's own references: a lowered fused body or region (its sub-plan holds
        // what it needs), constants nobody reads any more.
        let released = || Arc::new(Graph::new("released"));
        if let Some(kind) = fused {
            g.set_op(
                id,
                Op::Fused {
                    kind,
                    body: released(),
                },
                outputs,
            );
        } else if matches!(g.node(id).op, Op::While { .. }) {
            let op = Op::While {
                cond: released(),
                body: released(),
            };
            g.set_op(id, op, outputs);
        } else if matches!(g.node(id).op, Op::If { .. }) {
            let op = Op::If {
                then_branch: released(),
                else_branch: released(),
            };
            g.set_op(id, op, outputs);
        }
        for c in done_consts {
            let outputs = g.node(c).outputs.clone();
            g.set_op(c, Op::Const(Arc::clone(&self.empty)), outputs);
        }
    }
}
