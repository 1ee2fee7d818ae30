//! Choosing the groups: which nodes `fuse` puts together, before any graph is rewritten.
//!
//! Invariant kept by every step: contracting each group to one node leaves the graph acyclic
//! (checked by [`Partition::acyclic_with`] whenever a step could break it), so the groups can
//! be outlined in any order.

use lathe_ir::ops::{FusedKind, Op};
use lathe_ir::{Capabilities, DType, Dim, Graph, NodeId, Shape, ValueId};

/// What role a node can play in a group.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Class {
    /// Unary, binary, cast, select, bias add: one output element from the same element of
    /// each (broadcast) input.
    Elementwise,
    /// A reduction over constant axes (reduce_*, softmax, log_softmax).
    Reduction(Domain),
    /// A contraction that an epilogue can be attached to (matmul, batch matmul, einsum,
    /// conv2d, depthwise conv2d, and their integer forms).
    Anchor,
    /// Everything else: never inside a group.
    Boundary,
}

/// The iteration space of a reduction: the shape it reads and the axes it reduces. Ops of a
/// reduction group all work in one domain.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Domain {
    /// The shape of the reduced input.
    pub full: Shape,
    /// The reduced axes, sorted, without duplicates.
    pub axes: Vec<usize>,
}

impl Domain {
    /// The reduced shape with the reduced axes kept as 1.
    fn kept(&self) -> Shape {
        Shape(
            self.full
                .dims()
                .iter()
                .enumerate()
                .map(|(i, d)| match self.axes.contains(&i) {
                    true => Dim::Known(1),
                    false => d.clone(),
                })
                .collect(),
        )
    }

    /// The reduced shape with the reduced axes dropped.
    fn dropped(&self) -> Shape {
        Shape(
            self.full
                .dims()
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.axes.contains(i))
                .map(|(_, d)| d.clone())
                .collect(),
        )
    }

    /// True when an elementwise op producing `s` works in this domain: on the full shape or
    /// on the reduced shape (kept or dropped axes).
    fn admits(&self, s: &Shape) -> bool {
        same_shape(s, &self.full) || same_shape(s, &self.kept()) || same_shape(s, &self.dropped())
    }
}

/// Shapes that are equal at run time: the same dims, none of them unknown.
pub(super) fn same_shape(a: &Shape, b: &Shape) -> bool {
    a == b && a.dims().iter().all(|d| !matches!(d, Dim::Unknown))
}

/// The class of node `id`: its role by op, kept only when the backend's capability query
/// says the op may be compiled into a fused body on these input dtypes (else a boundary, so
/// fusion never groups what codegen cannot compile).
pub(super) fn classify(g: &Graph, id: NodeId, caps: &dyn Capabilities) -> Class {
    let n = g.node(id);
    let dtypes: Vec<DType> = n.inputs.iter().map(|v| g.value_type(*v).dtype).collect();
    let class = role(g, id);
    if class != Class::Boundary && !caps.fusible(&n.op, &dtypes) {
        return Class::Boundary;
    }
    // A reduction the backend's generated code cannot do (over middle axes, say) stays alone,
    // for the backend's reduction kernels (global average pooling).
    if let (Class::Reduction(d), Op::Reduce { keep_dims, .. }) = (&class, &n.op) {
        if !caps.fusible_reduction(&d.full, &d.axes, *keep_dims) {
            return Class::Boundary;
        }
    }
    class
}

/// The role the op of node `id` could play in a group, whatever the backend.
fn role(g: &Graph, id: NodeId) -> Class {
    let n = g.node(id);
    match &n.op {
        Op::Unary(_) | Op::Binary(_) | Op::Cast { .. } | Op::Select | Op::BiasAdd { .. } => {
            Class::Elementwise
        }
        Op::MatMul { .. }
        | Op::BatchMatMul { .. }
        | Op::Einsum { .. }
        | Op::Conv2D(_)
        | Op::DepthwiseConv2D(_)
        | Op::MatMulInteger
        | Op::Conv2DInteger(_) => Class::Anchor,
        Op::Reduce { .. } => {
            let full = g.value_type(n.inputs[0]).shape.clone();
            let axes = g
                .const_value(n.inputs[1])
                .and_then(|t| t.to_i64_vec().ok())
                .and_then(|v| normalize_axes(&v, full.rank()));
            match axes {
                Some(axes) => Class::Reduction(Domain { full, axes }),
                None => Class::Boundary,
            }
        }
        Op::Softmax | Op::LogSoftmax => {
            let full = g.value_type(n.inputs[0]).shape.clone();
            match full.rank() {
                0 => Class::Boundary,
                rank => Class::Reduction(Domain {
                    full,
                    axes: vec![rank - 1],
                }),
            }
        }
        _ => Class::Boundary,
    }
}

/// Axes in `0..rank` (negative ones count from the end), sorted and deduplicated; `None` when
/// one is out of range.
fn normalize_axes(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = if a < 0 { a + rank as i64 } else { a };
        if a < 0 || a >= rank as i64 {
            return None;
        }
        out.push(a as usize);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// A group being formed.
pub(super) struct Group {
    pub kind: FusedKind,
    /// Members in topological order.
    pub members: Vec<NodeId>,
    /// False once merged into another group.
    alive: bool,
}

/// The groups chosen for a graph.
pub(super) struct Partition<'g> {
    g: &'g Graph,
    /// Position of each node in the topological order (indexed by node index).
    pos: Vec<usize>,
    order: Vec<NodeId>,
    class: Vec<Class>,
    /// Consumers of each node's outputs.
    succ: Vec<Vec<NodeId>>,
    /// Uses of each node's outputs: (user, slot) pairs plus graph outputs.
    uses: Vec<usize>,
    group_of: Vec<Option<usize>>,
    groups: Vec<Group>,
    /// Generation stamps for the reachability search (nodes, then groups).
    seen: Vec<u32>,
    seen_group: Vec<u32>,
    stamp: u32,
}

impl<'g> Partition<'g> {
    /// Partitions `g` (whose topological order is `order`) into groups.
    pub fn new(g: &'g Graph, order: Vec<NodeId>, caps: &dyn Capabilities) -> Partition<'g> {
        let bound = g.node_bound();
        let mut pos = vec![usize::MAX; bound];
        let mut class = vec![Class::Boundary; bound];
        let mut succ = vec![Vec::new(); bound];
        let mut uses = vec![0; bound];
        for (i, &id) in order.iter().enumerate() {
            pos[id.index()] = i;
            class[id.index()] = classify(g, id, caps);
            succ[id.index()] = g.successors(id);
            for v in &g.node(id).inputs {
                uses[v.node.index()] += 1;
            }
        }
        for o in g.outputs() {
            uses[o.value.node.index()] += 1;
        }
        Partition {
            g,
            pos,
            order,
            class,
            succ,
            uses,
            group_of: vec![None; bound],
            groups: Vec::new(),
            seen: vec![0; bound],
            seen_group: Vec::new(),
            stamp: 0,
        }
    }

    /// Forms the groups: epilogues around anchors first, then reductions, then what is left
    /// of the elementwise ops. Returns the live groups in creation order.
    pub fn run(mut self) -> Vec<Group> {
        let order = self.order.clone();
        for &id in &order {
            if self.class[id.index()] == Class::Anchor {
                self.grow_epilogue(id);
            }
        }
        for &id in &order {
            if let Class::Reduction(domain) = self.class[id.index()].clone() {
                if self.group_of[id.index()].is_none() {
                    self.grow_reduction(id, &domain);
                }
            }
        }
        for &id in &order {
            if self.class[id.index()] == Class::Elementwise && self.group_of[id.index()].is_none() {
                self.grow_elementwise(id);
            }
        }
        self.groups.into_iter().filter(|gr| gr.alive).collect()
    }

    fn new_group(&mut self, kind: FusedKind, id: NodeId) -> usize {
        let gid = self.groups.len();
        self.groups.push(Group {
            kind,
            members: vec![id],
            alive: true,
        });
        self.seen_group.push(0);
        self.group_of[id.index()] = Some(gid);
        gid
    }

    fn add(&mut self, gid: usize, id: NodeId) {
        let pos = self.pos[id.index()];
        let members = &mut self.groups[gid].members;
        let at = members.partition_point(|m| self.pos[m.index()] < pos);
        members.insert(at, id);
        self.group_of[id.index()] = Some(gid);
    }

    fn merge(&mut self, into: usize, from: usize) {
        let moved = std::mem::take(&mut self.groups[from].members);
        self.groups[from].alive = false;
        for id in moved {
            self.add(into, id);
        }
    }

    fn ungrouped(&self, id: NodeId) -> bool {
        self.group_of[id.index()].is_none()
    }

    fn out_shape(&self, id: NodeId) -> &Shape {
        &self.g.node(id).outputs[0].shape
    }

    /// Ungrouped consumers of the members of `gid`, in topological order, that pass `keep`.
    fn consumers(&self, gid: usize, keep: impl Fn(NodeId) -> bool) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.groups[gid]
            .members
            .iter()
            .flat_map(|m| self.succ[m.index()].iter().copied())
            .filter(|&c| self.ungrouped(c) && keep(c))
            .collect();
        out.sort_by_key(|c| self.pos[c.index()]);
        out.dedup();
        out
    }

    /// Adds the first of `candidates` that keeps the partition acyclic; false when none does.
    fn add_first(&mut self, gid: usize, candidates: &[NodeId]) -> bool {
        for &c in candidates {
            if self.can_add(gid, c) {
                self.add(gid, c);
                return true;
            }
        }
        false
    }

    /// An epilogue: anchor `a` plus the elementwise ops downstream of it that produce the
    /// anchor's output shape.
    fn grow_epilogue(&mut self, a: NodeId) {
        let gid = self.new_group(FusedKind::Epilogue, a);
        let target = self.out_shape(a).clone();
        loop {
            let candidates = self.consumers(gid, |c| {
                self.class[c.index()] == Class::Elementwise
                    && same_shape(self.out_shape(c), &target)
            });
            if !self.add_first(gid, &candidates) {
                break;
            }
        }
    }

    /// A reduction group seeded by reduction `r`: its consumers in the same domain until the
    /// group's results converge to one full-shape value (a layer norm's output, a softmax), then
    /// the single-use elementwise producers that feed it.
    fn grow_reduction(&mut self, r: NodeId, domain: &Domain) {
        let gid = self.new_group(FusedKind::Reduction, r);
        loop {
            let candidates = self.consumers(gid, |c| match &self.class[c.index()] {
                Class::Elementwise => domain.admits(self.out_shape(c)),
                Class::Reduction(d) => d == domain,
                _ => false,
            });
            if self.converged(gid, domain, &candidates) || !self.add_first(gid, &candidates) {
                break;
            }
        }
        // Producers used once, by the group: computing them in the kernel costs nothing extra
        // and saves writing and reading their result. (A producer with other users stays out:
        // it would have to be written anyway, and a kernel that reads its input several times
        // would compute it several times.)
        let mut i = 0;
        while i < self.groups[gid].members.len() {
            let m = self.groups[gid].members[i];
            let mut added = false;
            for v in self.g.node(m).inputs.clone() {
                let p = v.node;
                if self.ungrouped(p)
                    && self.class[p.index()] == Class::Elementwise
                    && self.uses[p.index()] == 1
                    && domain.admits(self.out_shape(p))
                {
                    // Its one use is by a member, so no path can leave the group through it.
                    self.add(gid, p);
                    added = true;
                }
            }
            // Producers sort before their consumer: look at the members from the start again.
            i = if added { 0 } else { i + 1 };
        }
    }

    /// True when the group's computation has converged: of its values, only one, of the full
    /// domain shape, still has `candidates` (ops that could join) reading it. Before that, the
    /// reduced values (a mean, a variance) or several partial results still need combining.
    /// Values read only by ops that cannot join (a reshape of the mean) do not count.
    fn converged(&self, gid: usize, domain: &Domain, candidates: &[NodeId]) -> bool {
        let mut pending: Vec<ValueId> = candidates
            .iter()
            .flat_map(|&c| self.g.node(c).inputs.iter().copied())
            .filter(|v| self.group_of[v.node.index()] == Some(gid))
            .collect();
        pending.sort();
        pending.dedup();
        match pending[..] {
            [v] => same_shape(&self.g.value_type(v).shape, &domain.full),
            _ => false,
        }
    }

    /// An elementwise op not absorbed by an epilogue or a reduction: joins the elementwise
    /// group of a producer of the same shape, merging the groups it connects, or starts one.
    fn grow_elementwise(&mut self, id: NodeId) {
        let shape = self.out_shape(id).clone();
        let mut producers: Vec<usize> = Vec::new();
        for v in &self.g.node(id).inputs {
            if let Some(h) = self.group_of[v.node.index()] {
                let gr = &self.groups[h];
                if gr.kind == FusedKind::Elementwise
                    && same_shape(self.out_shape(gr.members[0]), &shape)
                    && !producers.contains(&h)
                {
                    producers.push(h);
                }
            }
        }
        let Some(k) = producers.iter().position(|&h| self.can_add(h, id)) else {
            self.new_group(FusedKind::Elementwise, id);
            return;
        };
        let gid = producers[k];
        self.add(gid, id);
        for &h in &producers[k + 1..] {
            if self.acyclic_with(&[gid, h], &[]) {
                self.merge(gid, h);
            }
        }
    }

    /// True when adding `c` to group `gid` keeps the partition acyclic.
    fn can_add(&mut self, gid: usize, c: NodeId) -> bool {
        // Fast path: every producer of `c` is in the group or has no inputs (a graph input or
        // a constant), so no path can leave the group and come back through `c`.
        let direct = self.g.node(c).inputs.iter().all(|v| {
            self.group_of[v.node.index()] == Some(gid) || self.g.node(v.node).inputs.is_empty()
        });
        direct || self.acyclic_with(&[gid], &[c])
    }

    /// True when the union of `groups` and `extra` can be one group: no path leaves it and
    /// comes back, with every other group counted as one node (it becomes one).
    fn acyclic_with(&mut self, groups: &[usize], extra: &[NodeId]) -> bool {
        self.stamp += 1;
        let stamp = self.stamp;
        let inside = |p: &Partition, id: NodeId| {
            extra.contains(&id) || p.group_of[id.index()].is_some_and(|h| groups.contains(&h))
        };
        let mut stack: Vec<NodeId> = Vec::new();
        let members = groups
            .iter()
            .flat_map(|&h| self.groups[h].members.iter().copied())
            .chain(extra.iter().copied());
        for m in members {
            stack.extend(self.succ[m.index()].iter().copied());
        }
        stack.retain(|&w| !inside(self, w));
        while let Some(w) = stack.pop() {
            if inside(self, w) {
                return false;
            }
            if self.seen[w.index()] == stamp {
                continue;
            }
            self.seen[w.index()] = stamp;
            match self.group_of[w.index()] {
                Some(h) if self.seen_group[h] != stamp => {
                    self.seen_group[h] = stamp;
                    for &m in &self.groups[h].members {
                        self.seen[m.index()] = stamp;
                        stack.extend(self.succ[m.index()].iter().copied());
                    }
                }
                Some(_) => {}
                None => stack.extend(self.succ[w.index()].iter().copied()),
            }
        }
        true
    }
}
