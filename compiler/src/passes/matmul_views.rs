//! `matmul-views`: a matrix product that reads its operands, and writes its result, through
//! reshapes and transposes becomes one `einsum` over the untransposed tensors.
//!
//! Exporters spell a multi-head attention's `einsum`s as reshape → transpose → reshape →
//! `batch_matmul` (tf2onnx, PyTorch): a `[B, T, H·D]` projection is split into heads, the heads
//! are moved in front and merged into one batch axis, multiplied, and the result is moved back
//! the same way. Each transpose copies a whole tensor. But a reshape that only splits or merges
//! axes and a transpose are both *views* (each element of the result is the source's element at
//! a sum of per-axis strides), and the CPU backend runs an `einsum` as a batch of GEMMs over
//! strided views, so the product can read the sources, and write the result, in place.
//!
//! The pass describes each operand as a [`View`] of a source tensor: the source's axes split into
//! *atoms* (factors of its dims), each operand axis a run of atoms, major first. The result and
//! its consumers (a chain of reshapes and transposes, each the only user of the one before) are
//! described the same way with the product as the source. Every logical axis of the product
//! (each batch axis, m, n and k) is split into the common refinement of the atoms that make it
//! up in the operands and the result, one einsum letter per factor; the operands become
//! split-only reshapes of their sources and the result a merge-only reshape of the einsum (both
//! views, no copies).
//!
//! It fires only when that takes a transpose off the product's path, every shape is known,
//! neither operand is a constant (weights stay packable; the next product reads the result as
//! strides instead), and the summed letters form one strided run in both operands (else the
//! backend would run the einsum as loops instead of a GEMM). The products and sums are the
//! same ones.

use super::simplify::shape::{is_reshape_like, transpose_parts};
use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::{Graph, NodeId, Op, ValueId};
use std::collections::{HashMap, VecDeque};

/// The `matmul-views` pass.
pub struct MatmulViews;

/// Reshapes and transposes followed from one product (each way).
const MAX_CHAIN: usize = 8;

impl Pass for MatmulViews {
    fn name(&self) -> &'static str {
        "matmul-views"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let products: Vec<NodeId> = g
            .node_ids()
            .into_iter()
            .filter(|&id| matches!(g.node(id).op, Op::MatMul { .. } | Op::BatchMatMul { .. }))
            .collect();
        let mut rewritten = 0;
        for id in products {
            if let Some(plan) = plan(g, id) {
                apply(g, id, plan).map_err(|e| PassError::ir(self.name(), e))?;
                rewritten += 1;
            }
        }
        cx.count("products_on_views", rewritten);
        Ok(Changed::from_bool(rewritten > 0))
    }
}

/// A tensor seen through reshapes (that only split and merge axes) and transposes of a source.
#[derive(Clone, Debug)]
struct View {
    /// The tensor read.
    source: ValueId,
    /// Each atom's size, by atom id (atoms of size 1 are never made).
    size: Vec<usize>,
    /// Each atom's source axis.
    origin: Vec<usize>,
    /// The atoms in the source's row-major order.
    order: Vec<usize>,
    /// Each axis of the viewed tensor: its atoms, major first (none for an axis of size 1).
    axes: Vec<Vec<usize>>,
    /// How many transposes the view passes through.
    transposes: usize,
}

impl View {
    /// `source` (of dims `dims`) as it is.
    fn of(source: ValueId, dims: &[usize]) -> View {
        let mut v = View {
            source,
            size: vec![],
            origin: vec![],
            order: vec![],
            axes: vec![],
            transposes: 0,
        };
        for (axis, &d) in dims.iter().enumerate() {
            if d == 1 {
                v.axes.push(vec![]);
                continue;
            }
            let id = v.size.len();
            v.size.push(d);
            v.origin.push(axis);
            v.order.push(id);
            v.axes.push(vec![id]);
        }
        v
    }

    /// Splits atom `a` into a major part of `major` elements (keeping `a`'s id) and the minor
    /// rest, which it returns; the minor part follows the major one wherever `a` is listed.
    fn split(&mut self, a: usize, major: usize) -> usize {
        let minor = self.size.len();
        self.size.push(self.size[a] / major);
        self.origin.push(self.origin[a]);
        self.size[a] = major;
        for list in std::iter::once(&mut self.order).chain(self.axes.iter_mut()) {
            if let Some(p) = list.iter().position(|&x| x == a) {
                list.insert(p + 1, minor);
            }
        }
        minor
    }

    /// The view transposed by `perm` (a permutation of its axes, as the verified transpose it
    /// comes from holds).
    fn transpose(&mut self, perm: &[i64]) {
        self.axes = perm
            .iter()
            .map(|&p| self.axes[p as usize].clone())
            .collect();
        self.transposes += 1;
    }

    /// The view reshaped to `dims`: `None` unless that only splits atoms and groups runs of
    /// them (a reshape that would interleave elements is no view).
    fn reshape(&mut self, dims: &[usize]) -> Option<()> {
        let mut run: VecDeque<usize> = self.axes.concat().into();
        let mut axes = Vec::with_capacity(dims.len());
        if dims.contains(&0) {
            return None;
        }
        for &d in dims {
            let (mut need, mut axis) = (d, vec![]);
            while need > 1 {
                let a = run.pop_front()?;
                let s = self.size[a];
                if need.is_multiple_of(s) {
                    need /= s;
                } else if s.is_multiple_of(need) {
                    run.push_front(self.split(a, need));
                    need = 1;
                } else {
                    return None;
                }
                axis.push(a);
            }
            axes.push(axis);
        }
        if !run.is_empty() {
            return None;
        }
        self.axes = axes;
        Some(())
    }

    /// The atoms of source axis `axis`, major first.
    fn of_origin(&self, axis: usize) -> Vec<usize> {
        (self.order.iter().copied())
            .filter(|&a| self.origin[a] == axis)
            .collect()
    }

    /// The atoms' sizes in source order: the split-only reshape of the source the view reads.
    fn source_dims(&self) -> Vec<usize> {
        self.order.iter().map(|&a| self.size[a]).collect()
    }
}

/// The static dims of `v`.
fn dims(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    g.value_type(v).shape.as_known()
}

/// One step of a chain: the value it produces and, for a transpose, the permutation.
type Link = (ValueId, Option<Vec<i64>>);

/// Node `id` as a link of a chain of views: a reshape-like op (`Some(None)`) or a transpose
/// by a constant permutation (`Some(Some(perm))`).
fn link(g: &Graph, id: NodeId) -> Option<Option<Vec<i64>>> {
    match &g.node(id).op {
        op if is_reshape_like(op) => Some(None),
        Op::Transpose => Some(Some(transpose_parts(g, ValueId::first(id))?.1)),
        _ => None,
    }
}

/// `view` followed through `links` in order; `None` at the first one that is no view.
fn follow(mut view: View, g: &Graph, links: &[Link]) -> Option<View> {
    for (value, perm) in links {
        match perm {
            Some(p) => view.transpose(p),
            None => view.reshape(&dims(g, *value)?)?,
        }
    }
    Some(view)
}

/// Operand `v` as a view of the farthest tensor up its chain of reshapes and transposes.
fn operand_view(g: &Graph, v: ValueId) -> Option<View> {
    let mut links: Vec<Link> = vec![];
    let mut cur = v;
    while links.len() < MAX_CHAIN {
        let Some(perm) = link(g, cur.node) else {
            break;
        };
        links.push((cur, perm));
        cur = g.node(cur.node).inputs[0];
    }
    links.reverse();
    // The longest chain that is all views; a shorter one from a nearer source otherwise.
    (0..=links.len()).find_map(|start| {
        let source = if start == 0 { cur } else { links[start - 1].0 };
        follow(View::of(source, &dims(g, source)?), g, &links[start..])
    })
}

/// The product's result `out` and its consumers as a view of `out`, and the value the last
/// consumer gives: the chain ends where a value has another user or is a graph output.
fn result_view(g: &Graph, out: ValueId) -> Option<(View, ValueId)> {
    let mut view = View::of(out, &dims(g, out)?);
    let mut last = out;
    for _ in 0..MAX_CHAIN {
        if g.outputs().iter().any(|o| o.value == last) {
            break;
        }
        let [(user, 0)] = g.users(last)[..] else {
            break;
        };
        let Some(perm) = link(g, user) else {
            break;
        };
        let next = ValueId::first(user);
        match follow(view.clone(), g, &[(next, perm)]) {
            Some(v) => view = v,
            None => break,
        }
        last = next;
    }
    Some((view, last))
}

/// What to build for one product: the three views with every atom lettered.
struct Rewrite {
    a: View,
    b: View,
    out: View,
    /// The value the rewrite replaces (the product, or the end of its consumer chain).
    replaces: ValueId,
    letters: [HashMap<usize, char>; 3],
}

/// Which atoms of each view (A, B, result) make up one logical axis of the product.
type Axis = [Vec<usize>; 3];

/// The rewrite of product `id`, when it is one (see the module docs).
fn plan(g: &Graph, id: NodeId) -> Option<Rewrite> {
    let node = g.node(id);
    let (adj_a, adj_b) = match node.op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => (transpose_a, transpose_b),
        Op::BatchMatMul { adj_x, adj_y } => (adj_x, adj_y),
        _ => return None,
    };
    let [a, b] = node.inputs[..] else {
        return None;
    };
    // A product with a constant operand (a layer's weights) keeps its plain layout: the
    // backend packs constant weights for its GEMM, which a batch of strided views would
    // prevent; the products that consume its result read that as strides instead.
    if g.const_value(a).is_some() || g.const_value(b).is_some() {
        return None;
    }
    let out = ValueId::first(id);
    let (mut va, mut vb) = (operand_view(g, a)?, operand_view(g, b)?);
    let (mut vo, replaces) = result_view(g, out)?;
    if va.transposes + vb.transposes + vo.transposes == 0 {
        return None;
    }
    let (ra, rb, ro) = (va.axes.len(), vb.axes.len(), dims(g, out)?.len());
    if ra < 2 || rb < 2 || ro < 2 {
        return None;
    }
    // Logical axes by position: each batch axis of the result, then m, n, k; `None` marks an
    // operand without that axis. Positions are axes of A's and B's views and of the result.
    let batch_axis = |rank: usize, j: usize| (j + rank).checked_sub(ro).filter(|&i| i < rank - 2);
    let mut logical: Vec<[Option<usize>; 3]> = (0..ro - 2)
        .map(|j| [batch_axis(ra, j), batch_axis(rb, j), Some(j)])
        .collect();
    let (am, ak) = if adj_a {
        (ra - 1, ra - 2)
    } else {
        (ra - 2, ra - 1)
    };
    let (bk, bn) = if adj_b {
        (rb - 1, rb - 2)
    } else {
        (rb - 2, rb - 1)
    };
    logical.push([Some(am), None, Some(ro - 2)]);
    logical.push([None, Some(bn), Some(ro - 1)]);
    let k_index = logical.len();
    logical.push([Some(ak), Some(bk), None]);
    // Refine each logical axis, splitting atoms; then letter them.
    let mut axes: Vec<Axis> = vec![];
    for pos in &logical {
        let atoms = |views: [&View; 3]| -> Axis {
            [0, 1, 2].map(|w| match pos[w] {
                None => vec![],
                Some(i) if w == 2 => views[2].of_origin(i),
                Some(i) => views[w].axes[i].clone(),
            })
        };
        let lists = atoms([&va, &vb, &vo]);
        let sizes: Vec<Vec<usize>> = (0..3)
            .map(|w| {
                lists[w]
                    .iter()
                    .map(|&x| [&va, &vb, &vo][w].size[x])
                    .collect()
            })
            .collect();
        let cuts = refinement(&sizes)?;
        for (w, view) in [&mut va, &mut vb, &mut vo].into_iter().enumerate() {
            cut(view, &lists[w], &cuts);
        }
        axes.push(atoms([&va, &vb, &vo]));
    }
    let mut letters: [HashMap<usize, char>; 3] = Default::default();
    let mut pool = ('a'..='z').chain('A'..='Z');
    let mut k_letters = vec![];
    for (index, axis) in axes.iter().enumerate() {
        let count = axis.iter().map(Vec::len).max().unwrap_or(0);
        for f in 0..count {
            let ch = pool.next()?;
            if index == k_index {
                k_letters.push(ch);
            }
            for w in 0..3 {
                if let Some(&atom) = axis[w].get(f) {
                    letters[w].insert(atom, ch);
                }
            }
        }
    }
    // The summed letters must be one strided run: consecutive, in one order, in both sources.
    let run = |view: &View, w: usize| -> Option<Vec<char>> {
        let term: Vec<char> = view.order.iter().map(|a| letters[w][a]).collect();
        let at: Vec<usize> = (term.iter().enumerate())
            .filter(|(_, c)| k_letters.contains(c))
            .map(|(i, _)| i)
            .collect();
        let contiguous = at.windows(2).all(|p| p[1] == p[0] + 1);
        contiguous.then(|| at.iter().map(|&i| term[i]).collect())
    };
    if run(&va, 0)? != run(&vb, 1)? || va.order.is_empty() || vb.order.is_empty() {
        return None;
    }
    Some(Rewrite {
        a: va,
        b: vb,
        out: vo,
        replaces,
        letters,
    })
}

/// The common refinement of the factorizations `lists` of one size (each major first; an
/// empty one does not take part): the cumulative products where any of them cuts, or `None`
/// when one cut does not divide the next (the views interleave the axis differently).
fn refinement(lists: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut cuts: Vec<usize> = vec![];
    let mut total = None;
    for list in lists.iter().filter(|l| !l.is_empty()) {
        let mut p = 1;
        for &s in list {
            p *= s;
            cuts.push(p);
        }
        if *total.get_or_insert(p) != p {
            return None;
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut prev = 1;
    for &c in &cuts {
        if !c.is_multiple_of(prev) {
            return None;
        }
        prev = c;
    }
    Some(cuts)
}

/// Splits the atoms `list` (one logical axis of `view`, major first) at every cut of `cuts`.
fn cut(view: &mut View, list: &[usize], cuts: &[usize]) {
    let mut p = 1;
    for &atom in list {
        let (mut a, start, end) = (atom, p, p * view.size[atom]);
        for &c in cuts.iter().filter(|&&c| c > start && c < end) {
            a = view.split(a, c / p);
            p = c;
        }
        p = end;
    }
}

/// Builds the einsum of `plan` in place of product `id`'s result (or its consumers').
fn apply(g: &mut Graph, id: NodeId, plan: Rewrite) -> lathe_ir::Result<()> {
    let name = g.node(id).name.clone();
    let term = |order: &[usize], w: usize| -> String {
        order.iter().map(|a| plan.letters[w][a]).collect::<String>()
    };
    let mut operands = vec![];
    for (w, view) in [&plan.a, &plan.b].into_iter().enumerate() {
        operands.push(split_reshape(g, view, &format!("{name}/view{w}"))?);
    }
    let out_order: Vec<usize> = plan.out.axes.concat();
    let equation = format!(
        "{},{}->{}",
        term(&plan.a.order, 0),
        term(&plan.b.order, 1),
        term(&out_order, 2)
    );
    let product = g.add(Op::Einsum { equation }, operands, name.clone())?;
    let want = dims(g, plan.replaces).expect("the replaced value has static dims");
    let result = if dims(g, product).as_deref() == Some(want.as_slice()) {
        product
    } else {
        reshape(g, product, &want, &format!("{name}/result"))?
    };
    g.replace_all_uses(plan.replaces, result);
    Ok(())
}

/// `view`'s source reshaped to its atoms (itself when that changes nothing).
fn split_reshape(g: &mut Graph, view: &View, name: &str) -> lathe_ir::Result<ValueId> {
    let want = view.source_dims();
    if dims(g, view.source).as_deref() == Some(want.as_slice()) {
        return Ok(view.source);
    }
    reshape(g, view.source, &want, name)
}

/// `x` reshaped to `to`.
fn reshape(g: &mut Graph, x: ValueId, to: &[usize], name: &str) -> lathe_ir::Result<ValueId> {
    let shape: Vec<i64> = to.iter().map(|&d| d as i64).collect();
    let shape = g.add_const(
        lathe_ir::Tensor::from_vec(&[shape.len()], shape),
        format!("{name}/shape"),
    );
    g.add(Op::Reshape, vec![x, shape], name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(dims: &[usize]) -> View {
        let mut g = Graph::new("t");
        let x = g.add_input("x", lathe_ir::TensorType::known(lathe_ir::DType::F32, dims));
        View::of(x, dims)
    }

    fn sizes(v: &View) -> Vec<Vec<usize>> {
        (v.axes.iter())
            .map(|axis| axis.iter().map(|&a| v.size[a]).collect())
            .collect()
    }

    #[test]
    fn reshapes_split_and_group_atoms() {
        let mut v = view(&[1, 128, 256]);
        v.reshape(&[1, 128, 4, 1, 64]).unwrap();
        assert_eq!(sizes(&v), [vec![], vec![128], vec![4], vec![], vec![64]]);
        v.transpose(&[0, 2, 1, 3, 4]);
        v.reshape(&[4, 128, 64]).unwrap();
        assert_eq!(sizes(&v), [vec![4], vec![128], vec![64]]);
        assert_eq!(v.source_dims(), [128, 4, 64]);
        assert_eq!(v.transposes, 1);
        // [2, 6] transposed to [6, 2] and read as [4, 3] interleaves elements: no view.
        let mut v = view(&[2, 6]);
        v.transpose(&[1, 0]);
        assert!(v.reshape(&[4, 3]).is_none());
        // An atom split across two new axes: [6] → [2, 3] → merged back with a neighbour.
        let mut v = view(&[6, 5]);
        v.reshape(&[2, 15]).unwrap();
        assert_eq!(sizes(&v), [vec![2], vec![3, 5]]);
        assert_eq!(v.source_dims(), [2, 3, 5]);
    }

    #[test]
    fn refinement_needs_cuts_that_divide() {
        assert_eq!(
            refinement(&[vec![4, 32], vec![128], vec![]]),
            Some(vec![4, 128])
        );
        assert_eq!(refinement(&[vec![2, 3], vec![3, 2]]), None);
        assert_eq!(refinement(&[vec![6], vec![4]]), None);
        let mut v = view(&[128]);
        let list = v.axes[0].clone();
        cut(&mut v, &list, &[4, 128]);
        assert_eq!(sizes(&v), [vec![4, 32]]);
    }
}
