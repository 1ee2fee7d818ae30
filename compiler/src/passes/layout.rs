//! `layout`: puts convolutions and pooling in the one internal layout, NHWC.
//!
//! An NCHW `conv2d`, `conv2d_integer`, `depthwise_conv2d`, `max_pool`, `avg_pool`, `bias_add`
//! or `fused_batch_norm` becomes `transpose(x, [0,2,3,1])` → the NHWC op →
//! `transpose(y, [0,3,1,2])` (for `bias_add`/`fused_batch_norm` of another rank, the channel
//! axis moves last and back; at rank 2 only the format changes). Filters are HWIO in both
//! formats, so only the data input moves.
//!
//! The pass then removes the transposes this leaves between consecutive ops, itself rather
//! than leaving it to `simplify`, so that its result is clean on its own:
//! - a transpose of a transpose becomes one transpose, or none when they cancel;
//! - a transpose back to NCHW that this pass made, used by one elementwise op only, moves
//!   below that op (`relu(transpose(y))` → `transpose(relu(y))`; for a binary op the other
//!   operand must be a transpose by the same permutation, or a constant, which is permuted
//!   to match), so that it meets the next op's transpose to NHWC and cancels. Moving it does
//!   not add nodes or work, and an op whose result would be bigger than its transposed
//!   operand (broadcasting, a widening cast) does not take it;
//! - such a transpose also moves below a reshape, squeeze or expand_dims that only drops or
//!   adds axes of size 1 (it becomes a reshape of the untransposed value, which is a view),
//!   so the squeeze/unsqueeze pair around an exported 1-D convolution does not stop it;
//! - and below a reduction over constant axes, which then reduces the untransposed value's
//!   matching axes (a global average pool after NCHW convolutions reduces NHWC's middle axes,
//!   and the transpose of what is left has axes of size 1 only, a reshape).
//!
//! Replaced nodes are removed here (so use counts stay right for the moves above); constants
//! left unused are `prune`'s.

use super::simplify::arith::SMALL_CONST;
use super::simplify::shape::{is_reshape_like, transpose_parts};
use super::simplify::{compose_perms, index_tensor, is_identity_perm, rewrite_in_place, sole_user};
use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::ops::{ConvAttrs, DataFormat, PoolAttrs};
use lathe_ir::{DType, Graph, NodeId, Op, Tensor, ValueId};
use std::collections::{HashMap, HashSet, VecDeque};

/// The `layout` pass.
pub struct Layout;

const NAME: &str = "layout";

fn ir_err(e: lathe_ir::IrError) -> PassError {
    PassError::ir(NAME, e)
}

impl Pass for Layout {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let mut st = State::default();
        for id in g.topo_order().map_err(ir_err)? {
            if g.contains(id) {
                st.convert(g, id, cx)?;
            }
        }
        if st.changed {
            st.clean_transposes(g, cx)?;
        }
        Ok(Changed::from_bool(st.changed))
    }
}

/// The pass's working state.
#[derive(Default)]
struct State {
    /// Permutation constants made so far, by value, so that each is made once.
    perms: HashMap<Vec<i64>, ValueId>,
    /// Transposes to NHWC made so far, by operand, so that ops reading one NCHW value share
    /// one transpose of it.
    nhwc_of: HashMap<ValueId, ValueId>,
    /// Transposes back to NCHW made by this pass (and their moved copies): the ones that may
    /// move below elementwise ops.
    movable: HashSet<NodeId>,
    changed: bool,
}

/// `[0, 2, ..., r-1, 1]`: channels from axis 1 to last.
fn to_last(r: usize) -> Vec<i64> {
    let mut p = vec![0];
    p.extend(2..r as i64);
    p.push(1);
    p
}

/// `[0, r-1, 1, ..., r-2]`: channels from last to axis 1.
fn to_second(r: usize) -> Vec<i64> {
    let mut p = vec![0, r as i64 - 1];
    p.extend(1..r as i64 - 1);
    p
}

/// `p` inverted: `inv[p[i]] = i`.
fn invert(p: &[i64]) -> Vec<i64> {
    let mut inv = vec![0; p.len()];
    for (i, &x) in p.iter().enumerate() {
        inv[x as usize] = i as i64;
    }
    inv
}

impl State {
    fn perm(&mut self, g: &mut Graph, p: &[i64]) -> ValueId {
        if let Some(&v) = self.perms.get(p) {
            if g.contains(v.node) {
                return v;
            }
        }
        let name = format!(
            "layout/perm_{}",
            p.iter().map(i64::to_string).collect::<Vec<_>>().join("_")
        );
        let v = g.add_const(index_tensor(DType::I32, p), name);
        self.perms.insert(p.to_vec(), v);
        v
    }

    /// Rewrites node `id` into NHWC when it is an NCHW op.
    fn convert(&mut self, g: &mut Graph, id: NodeId, cx: &mut PassCx) -> Result<(), PassError> {
        let node = g.node(id);
        let nhwc = match &node.op {
            Op::Conv2D(a) if a.format == DataFormat::Nchw => Op::Conv2D(with_nhwc(a)),
            Op::Conv2DInteger(a) if a.format == DataFormat::Nchw => Op::Conv2DInteger(with_nhwc(a)),
            Op::DepthwiseConv2D(a) if a.format == DataFormat::Nchw => {
                Op::DepthwiseConv2D(with_nhwc(a))
            }
            Op::MaxPool(p) if p.format == DataFormat::Nchw => Op::MaxPool(PoolAttrs {
                format: DataFormat::Nhwc,
                ..p.clone()
            }),
            Op::AvgPool(p) if p.format == DataFormat::Nchw => Op::AvgPool(PoolAttrs {
                format: DataFormat::Nhwc,
                ..p.clone()
            }),
            Op::BiasAdd {
                format: DataFormat::Nchw,
            } => Op::BiasAdd {
                format: DataFormat::Nhwc,
            },
            Op::FusedBatchNorm {
                epsilon,
                format: DataFormat::Nchw,
            } => Op::FusedBatchNorm {
                epsilon: *epsilon,
                format: DataFormat::Nhwc,
            },
            _ => return Ok(()),
        };
        let ins = node.inputs.clone();
        let out_ty = node.outputs.clone();
        let name = g.display_name(id);
        let r = g.value_type(ins[0]).rank();
        if r == 2 {
            // The channel axis is 1, which is also the last: only the format changes.
            if rewrite_in_place(g, id, nhwc, &ins) {
                cx.count("nchw_to_nhwc", 1);
                self.changed = true;
            }
            return Ok(());
        }
        if r < 2 {
            return Ok(());
        }
        let (p_in, p_out) = (self.perm(g, &to_last(r)), self.perm(g, &to_second(r)));
        let t_in = match self.nhwc_of.get(&ins[0]) {
            Some(&t) if g.contains(t.node) => t,
            _ => {
                let t = g
                    .add(Op::Transpose, vec![ins[0], p_in], format!("{name}/to_nhwc"))
                    .map_err(ir_err)?;
                self.nhwc_of.insert(ins[0], t);
                t
            }
        };
        let x = ins[0];
        let mut new_ins = ins;
        new_ins[0] = t_in;
        let y = match g.add(nhwc, new_ins, format!("{name}/nhwc")) {
            Ok(y) => y,
            Err(_) => {
                self.drop_unused_input_transpose(g, x, t_in)?;
                return Ok(());
            }
        };
        let t_out = g
            .add(Op::Transpose, vec![y, p_out], format!("{name}/to_nchw"))
            .map_err(ir_err)?;
        if g.value_type(t_out) != &out_ty[0] {
            // Symbolic dims inferred differently: keep the NCHW op.
            g.remove_node(t_out.node).map_err(ir_err)?;
            g.remove_node(y.node).map_err(ir_err)?;
            self.drop_unused_input_transpose(g, x, t_in)?;
            return Ok(());
        }
        g.replace_all_uses(ValueId::first(id), t_out);
        g.remove_node(id).map_err(ir_err)?;
        self.movable.insert(t_out.node);
        cx.count("nchw_to_nhwc", 1);
        self.changed = true;
        Ok(())
    }

    /// Merges transpose pairs and moves this pass's transposes below elementwise ops until
    /// neither applies (each step removes a transpose or moves one further down, so it ends).
    fn clean_transposes(&mut self, g: &mut Graph, cx: &mut PassCx) -> Result<(), PassError> {
        let mut work: VecDeque<NodeId> = g
            .topo_order()
            .map_err(ir_err)?
            .into_iter()
            .filter(|&id| g.node(id).op == Op::Transpose)
            .collect();
        while let Some(t) = work.pop_front() {
            if !g.contains(t) || g.node(t).op != Op::Transpose {
                continue;
            }
            if let Some(more) = self.merge_pair(g, t, cx)? {
                work.extend(more);
                continue;
            }
            if let Some(more) = self.sink(g, t, cx)? {
                work.extend(more);
                continue;
            }
            if let Some(more) = self.sink_into_concat(g, t, cx)? {
                work.extend(more);
            }
        }
        Ok(())
    }

    /// `concat(transpose(a, p), transpose(b, p), axis)` → `transpose(concat(a, b, p[axis]),
    /// p)`, for a concat (a user of the movable transpose `t`) whose every operand is a
    /// transpose by the same permutation: the NCHW dense blocks of an ONNX DenseNet then
    /// concatenate in NHWC, and the transposes meet and cancel below. Transposes that keep
    /// other users stay; having lost one, they may sink there. Returns the transposes to
    /// look at again.
    fn sink_into_concat(
        &mut self,
        g: &mut Graph,
        t: NodeId,
        cx: &mut PassCx,
    ) -> Result<Option<Vec<NodeId>>, PassError> {
        let tv = ValueId::first(t);
        if !self.movable.contains(&t) {
            return Ok(None);
        }
        let Some((_, p)) = transpose_parts(g, tv) else {
            return Ok(None);
        };
        for (u, _) in g.users(tv) {
            let node = g.node(u).clone();
            if node.op != Op::Concat || node.outputs.len() != 1 {
                continue;
            }
            let (axis_v, values) = node.inputs.split_last().expect("concat has an axis");
            let Some(axis) = g.const_value(*axis_v).and_then(|a| a.to_i64_vec().ok()) else {
                continue;
            };
            let rank = p.len() as i64;
            let Some(&axis) = axis.first().filter(|&&a| (-rank..rank).contains(&a)) else {
                continue;
            };
            let axis = if axis < 0 { axis + rank } else { axis } as usize;
            let mut inner = Vec::with_capacity(values.len());
            for &v in values {
                match transpose_parts(g, v).filter(|(_, q)| *q == p) {
                    Some((x, _)) => inner.push(x),
                    None => break,
                }
            }
            if inner.len() != values.len() {
                continue;
            }
            let new_axis = g.add_const(Tensor::scalar(p[axis]), format!("{}/nhwc_axis", node.name));
            inner.push(new_axis);
            let Ok(c2) = g.add(Op::Concat, inner, node.name.clone()) else {
                g.remove_node(new_axis.node).map_err(ir_err)?;
                continue;
            };
            let perm_v = g.node(t).inputs[1];
            let t2 = g
                .add(
                    Op::Transpose,
                    vec![c2, perm_v],
                    format!("{}/to_nchw", node.name),
                )
                .map_err(ir_err)?;
            if g.value_type(t2) != &node.outputs[0] {
                g.remove_node(t2.node).map_err(ir_err)?;
                g.remove_node(c2.node).map_err(ir_err)?;
                g.remove_node(new_axis.node).map_err(ir_err)?;
                continue;
            }
            g.replace_all_uses(ValueId::first(u), t2);
            g.remove_node(u).map_err(ir_err)?;
            self.movable.insert(t2.node);
            let mut again = vec![t2.node];
            for &v in values {
                if !self.remove_if_dead(g, v.node)? {
                    again.push(v.node);
                }
            }
            cx.count("transposes_sunk", 1);
            self.changed = true;
            return Ok(Some(again));
        }
        Ok(None)
    }

    /// Removes the transpose `t` of `x` made for a conversion that did not happen, unless
    /// another converted op reads it.
    fn drop_unused_input_transpose(
        &mut self,
        g: &mut Graph,
        x: ValueId,
        t: ValueId,
    ) -> Result<(), PassError> {
        if self.remove_if_dead(g, t.node)? {
            self.nhwc_of.remove(&x);
        }
        Ok(())
    }

    /// Removes `id` when nothing uses it any more.
    fn remove_if_dead(&mut self, g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
        let v = ValueId::first(id);
        if g.contains(id)
            && g.users(v).is_empty()
            && !g.outputs().iter().any(|o| o.value.node == id)
        {
            g.remove_node(id).map_err(ir_err)?;
            self.movable.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }

    /// `transpose(transpose(x, p), q)` → `x` (cancelled) or `transpose(x, p∘q)` (merged).
    /// Returns the transposes to look at again.
    fn merge_pair(
        &mut self,
        g: &mut Graph,
        t: NodeId,
        cx: &mut PassCx,
    ) -> Result<Option<Vec<NodeId>>, PassError> {
        let tv = ValueId::first(t);
        let Some((inner, q)) = transpose_parts(g, tv) else {
            return Ok(None);
        };
        let Some((x, p)) = transpose_parts(g, inner) else {
            return Ok(None);
        };
        let Some(r) = compose_perms(&p, &q) else {
            return Ok(None);
        };
        let out_ty = g.value_type(tv).clone();
        let mut again = Vec::new();
        if is_identity_perm(&r) {
            if g.value_type(x) != &out_ty {
                return Ok(None);
            }
            g.replace_all_uses(tv, x);
            g.remove_node(t).map_err(ir_err)?;
            self.movable.remove(&t);
            cx.count("transposes_cancelled", 1);
            // Users of `t` that are transposes may now sit on another transpose.
            again.extend(
                g.users(x)
                    .into_iter()
                    .map(|(u, _)| u)
                    .filter(|&u| g.node(u).op == Op::Transpose),
            );
        } else {
            let perm = self.perm(g, &r);
            if !rewrite_in_place(g, t, Op::Transpose, &[x, perm]) {
                return Ok(None);
            }
            cx.count("transposes_merged", 1);
            again.push(t);
        }
        self.changed = true;
        if !self.remove_if_dead(g, inner.node)? {
            // The inner transpose lost a user: it may be movable now.
            again.push(inner.node);
        }
        Ok(Some(again))
    }

    /// Moves a movable transpose below its only user, an elementwise op (see the module
    /// docs). Returns the transposes to look at again.
    fn sink(
        &mut self,
        g: &mut Graph,
        t: NodeId,
        cx: &mut PassCx,
    ) -> Result<Option<Vec<NodeId>>, PassError> {
        let tv = ValueId::first(t);
        if !self.movable.contains(&t) {
            return Ok(None);
        }
        let Some((y, p)) = transpose_parts(g, tv) else {
            return Ok(None);
        };
        let users = g.users(tv);
        let Some(&(u, _)) = users.first() else {
            return Ok(None);
        };
        if !sole_user(g, tv, u) || g.node(u).outputs.len() != 1 {
            return Ok(None);
        }
        let t_ty = g.value_type(tv).clone();
        let u_node = g.node(u).clone();
        if let Some(more) = self.sink_through_unit_axes(g, t, u, y, &p, cx)? {
            return Ok(Some(more));
        }
        if let Some(more) = self.sink_through_reduce(g, t, u, y, &p, cx)? {
            return Ok(Some(more));
        }
        // Below `u` the transpose moves `u`'s result: not when that is bigger (broadcasting,
        // a widening cast).
        // (A constant pad is the exception: its border is small, and moving below it lets the
        // transpose meet the next convolution's, as in an ONNX ResNet's stem.)
        let out = &u_node.outputs[0];
        let is_pad = matches!(u_node.op, Op::Pad { .. });
        if !is_pad && (out.shape != t_ty.shape || out.dtype.size_bytes() > t_ty.dtype.size_bytes())
        {
            return Ok(None);
        }
        let mut other_transpose = None;
        let new_ins: Vec<ValueId> = match &u_node.op {
            Op::Unary(_) | Op::Cast { .. } => vec![y],
            Op::Pad { .. } if u_node.inputs[0] == tv => {
                // Row `i` of the paddings of `transpose(y, p)` pads axis `p[i]` of `y`.
                let pads_v = u_node.inputs[1];
                let Some(pads) = g.const_value(pads_v).and_then(|c| c.to_i64_vec().ok()) else {
                    return Ok(None);
                };
                let rank = p.len();
                if pads.len() != 2 * rank {
                    return Ok(None);
                }
                let mut moved = vec![0i64; 2 * rank];
                for (i, &axis) in p.iter().enumerate() {
                    let a = axis as usize;
                    moved[2 * a] = pads[2 * i];
                    moved[2 * a + 1] = pads[2 * i + 1];
                }
                let dt = g.value_type(pads_v).dtype;
                let c = Tensor::from_i64(dt, &[rank, 2], &moved);
                let name = format!("{}/nhwc", g.display_name(pads_v.node));
                let mut ins = vec![y, g.add_const(c, name)];
                ins.extend(u_node.inputs.get(2).copied());
                ins
            }
            Op::Binary(_) => {
                let mut ins = Vec::with_capacity(2);
                for &v in &u_node.inputs {
                    if v == tv {
                        ins.push(y);
                    } else if let Some((y2, _)) = transpose_parts(g, v).filter(|(_, q)| *q == p) {
                        other_transpose = Some(v.node);
                        ins.push(y2);
                    } else if let Some(c) = g.const_value(v) {
                        let small = c.len() <= SMALL_CONST || sole_user(g, v, u);
                        let Some(c2) = small.then(|| permuted_const(c, &p)).flatten() else {
                            return Ok(None);
                        };
                        let name = format!("{}/nhwc", g.display_name(v.node));
                        ins.push(g.add_const(c2, name));
                    } else {
                        return Ok(None);
                    }
                }
                ins
            }
            _ => return Ok(None),
        };
        let perm_v = g.node(t).inputs[1];
        let Ok(u2) = g.add(u_node.op.clone(), new_ins, u_node.name.clone()) else {
            return Ok(None);
        };
        let t2 = g
            .add(Op::Transpose, vec![u2, perm_v], g.node(t).name.clone())
            .map_err(ir_err)?;
        let Some(mut again) = self.replace_below(g, t, u, t2, &[u2.node], cx)? else {
            return Ok(None);
        };
        if let Some(o) = other_transpose {
            if !self.remove_if_dead(g, o)? {
                again.push(o);
            }
        }
        Ok(Some(again))
    }

    /// Moves the transpose `t` below its user `u`: `t2`, a transpose of `u`'s work done on the
    /// untransposed value, replaces `u`. `made` are the nodes built for that work, removed
    /// again with `t2` (and nothing else changed) when `t2` is not of `u`'s type. Returns the
    /// transposes to look at again.
    fn replace_below(
        &mut self,
        g: &mut Graph,
        t: NodeId,
        u: NodeId,
        t2: ValueId,
        made: &[NodeId],
        cx: &mut PassCx,
    ) -> Result<Option<Vec<NodeId>>, PassError> {
        if g.value_type(t2) != &g.node(u).outputs[0] {
            g.remove_node(t2.node).map_err(ir_err)?;
            for &n in made {
                g.remove_node(n).map_err(ir_err)?;
            }
            return Ok(None);
        }
        g.replace_all_uses(ValueId::first(u), t2);
        g.remove_node(u).map_err(ir_err)?;
        self.remove_if_dead(g, t)?;
        self.movable.insert(t2.node);
        let mut again = vec![t2.node];
        again.extend(
            g.users(t2)
                .into_iter()
                .map(|(w, _)| w)
                .filter(|&w| g.node(w).op == Op::Transpose),
        );
        cx.count("transposes_sunk", 1);
        self.changed = true;
        Ok(Some(again))
    }

    /// `u(transpose(y, p))` with `u` a reshape, squeeze or expand_dims that only adds or drops
    /// axes of size 1 → `transpose(reshape(y, w), p')`: the same elements in the same order,
    /// with the axes of size 1 placed beside `y`'s axes they followed, so the transpose moves
    /// on below (to meet the next convolution's, as around the squeeze/unsqueeze pairs an ONNX
    /// exporter writes for a 1-D convolution). `u` is `t`'s only user.
    fn sink_through_unit_axes(
        &mut self,
        g: &mut Graph,
        t: NodeId,
        u: NodeId,
        y: ValueId,
        p: &[i64],
        cx: &mut PassCx,
    ) -> Result<Option<Vec<NodeId>>, PassError> {
        let tv = ValueId::first(t);
        let u_node = g.node(u).clone();
        if !is_reshape_like(&u_node.op) {
            return Ok(None);
        }
        let (Some(t_dims), Some(u_dims)) = (
            g.value_type(tv).shape.as_known(),
            u_node.outputs[0].shape.as_known(),
        ) else {
            return Ok(None);
        };
        let big = |d: &[usize]| d.iter().copied().filter(|&n| n != 1).collect::<Vec<_>>();
        if big(&t_dims) != big(&u_dims) {
            return Ok(None);
        }
        // Each axis of `u`'s result, keyed by the axis of `y` its elements come from (twice
        // the index; an axis of size 1 takes the key of the one before it, plus one).
        let sources: Vec<usize> = (0..t_dims.len())
            .filter(|&i| t_dims[i] != 1)
            .map(|i| p[i] as usize)
            .collect();
        let mut next = sources.iter();
        let mut key = 0;
        let keys: Vec<usize> = u_dims
            .iter()
            .map(|&d| {
                if d != 1 {
                    key = 2 * next.next().expect("as many big axes") + 2;
                    key
                } else {
                    key + 1
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..u_dims.len()).collect();
        order.sort_by_key(|&j| keys[j]);
        let w_dims: Vec<i64> = order.iter().map(|&j| u_dims[j] as i64).collect();
        let moved = invert(&order.iter().map(|&j| j as i64).collect::<Vec<_>>());
        let shape = index_tensor(DType::I64, &w_dims);
        self.rebuild_below(g, (t, u), Op::Reshape, (y, shape, "nhwc_shape"), &moved, cx)
    }

    /// `reduce(transpose(y, p), axes)` → `transpose(reduce(y, p[axes]), p')`: the reduction
    /// runs on the untransposed value (a global pooling after NCHW convolutions reduces the
    /// middle axes of NHWC, which the CPU does natively) and the transpose moves on with the
    /// smaller result, where its axes of size 1 make it a reshape. `p'` is `p` when the
    /// reduction keeps its axes, else `p` without them, renumbered. `u` is `t`'s only user.
    fn sink_through_reduce(
        &mut self,
        g: &mut Graph,
        t: NodeId,
        u: NodeId,
        y: ValueId,
        p: &[i64],
        cx: &mut PassCx,
    ) -> Result<Option<Vec<NodeId>>, PassError> {
        let u_node = g.node(u).clone();
        let Op::Reduce { keep_dims, .. } = u_node.op else {
            return Ok(None);
        };
        let axes_v = u_node.inputs[1];
        let Some(axes) = g.const_value(axes_v).and_then(|c| c.to_i64_vec().ok()) else {
            return Ok(None);
        };
        let rank = p.len() as i64;
        let mut reduced = vec![false; p.len()];
        for a in &axes {
            let a = if *a < 0 { a + rank } else { *a };
            if !(0..rank).contains(&a) {
                return Ok(None);
            }
            reduced[a as usize] = true;
        }
        if axes.is_empty() {
            return Ok(None);
        }
        // Axis `i` of the transposed value is axis `p[i]` of `y`.
        let mut moved: Vec<i64> = (0..p.len()).filter(|&i| reduced[i]).map(|i| p[i]).collect();
        moved.sort_unstable();
        let perm: Vec<i64> = if keep_dims {
            p.to_vec()
        } else {
            let kept: Vec<i64> = (0..rank).filter(|a| !moved.contains(a)).collect();
            (0..p.len())
                .filter(|&i| !reduced[i])
                .map(|i| kept.iter().position(|&a| a == p[i]).expect("kept") as i64)
                .collect()
        };
        let dt = g.value_type(axes_v).dtype;
        let axes = Tensor::from_i64(dt, &[moved.len()], &moved);
        self.rebuild_below(g, (t, u), u_node.op, (y, axes, "nhwc_axes"), &perm, cx)
    }

    /// Replaces `u` (the only user of the transpose `t`) by `transpose(op(y, c), perm)`, `c` a
    /// new constant named after `u` with `suffix`: the shared end of the sinks above. Nothing
    /// changes when `op` refuses those operands or its result is not of `u`'s type.
    fn rebuild_below(
        &mut self,
        g: &mut Graph,
        (t, u): (NodeId, NodeId),
        op: Op,
        (y, c, suffix): (ValueId, Tensor, &str),
        perm: &[i64],
        cx: &mut PassCx,
    ) -> Result<Option<Vec<NodeId>>, PassError> {
        let name = g.node(u).name.clone();
        let c = g.add_const(c, format!("{name}/{suffix}"));
        let Ok(w) = g.add(op, vec![y, c], format!("{name}/nhwc")) else {
            g.remove_node(c.node).map_err(ir_err)?;
            return Ok(None);
        };
        let perm = self.perm(g, perm);
        let t2 = g
            .add(Op::Transpose, vec![w, perm], g.node(t).name.clone())
            .map_err(ir_err)?;
        self.replace_below(g, t, u, t2, &[w.node, c.node], cx)
    }
}

fn with_nhwc(a: &ConvAttrs) -> ConvAttrs {
    ConvAttrs {
        format: DataFormat::Nhwc,
        ..a.clone()
    }
}

/// The constant `c'` with `transpose(c', p)` equal to `c` broadcast to rank `p.len()`
/// (leading 1s added), so that `op(transpose(y, p), c) == transpose(op(y, c'), p)`.
fn permuted_const(c: &Tensor, p: &[i64]) -> Option<Tensor> {
    let r = p.len();
    let shape = c.shape();
    if shape.len() > r {
        return None;
    }
    if shape.is_empty() {
        return Some(c.clone());
    }
    let mut full = vec![1i64; r - shape.len()];
    full.extend(shape.iter().map(|&d| d as i64));
    let reshaped = Op::Reshape
        .eval(&[c, &index_tensor(DType::I64, &full)])
        .ok()?
        .remove(0);
    Op::Transpose
        .eval(&[&reshaped, &index_tensor(DType::I64, &invert(p))])
        .ok()
        .map(|mut v| v.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::text;

    fn run(
        src: &str,
    ) -> (
        Graph,
        Graph,
        std::collections::BTreeMap<&'static str, usize>,
    ) {
        let before = text::parse(src).expect("test graph parses");
        let mut g = before.clone();
        let mut cx = PassCx::default();
        Layout.run(&mut g, &mut cx).expect("layout runs");
        lathe_ir::verify(&g).expect("layout leaves a valid graph");
        (before, g, cx.take_counters())
    }

    fn count(g: &Graph, f: impl Fn(&Op) -> bool) -> usize {
        g.node_ids()
            .into_iter()
            .filter(|&id| f(&g.node(id).op))
            .count()
    }

    /// Both graphs give the same outputs on one input of ramp values.
    fn same_results(a: &Graph, b: &Graph) {
        let inputs: Vec<Tensor> = a
            .inputs()
            .iter()
            .map(|i| {
                let dims = i.ty.shape.as_known().unwrap();
                let n: usize = dims.iter().product();
                let vals: Vec<f64> = (0..n).map(|k| ((k * 7) % 11) as f64 / 5.0 - 1.0).collect();
                Tensor::from_f64(i.ty.dtype, &dims, &vals)
            })
            .collect();
        let (x, y) = (
            lathe_ir::interp::run(a, &inputs).unwrap(),
            lathe_ir::interp::run(b, &inputs).unwrap(),
        );
        for (p, q) in x.iter().zip(&y) {
            for (u, v) in p.to_f64_vec().iter().zip(q.to_f64_vec()) {
                assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "{u} vs {v}");
            }
        }
    }

    #[test]
    fn perms() {
        assert_eq!(to_last(4), vec![0, 2, 3, 1]);
        assert_eq!(to_second(4), vec![0, 3, 1, 2]);
        assert_eq!(to_last(3), vec![0, 2, 1]);
        assert_eq!(invert(&[0, 2, 3, 1]), vec![0, 3, 1, 2]);
        assert_eq!(
            compose_perms(&to_second(5), &to_last(5)),
            Some(vec![0, 1, 2, 3, 4])
        );
    }

    #[test]
    fn permuted_constant_matches_transpose() {
        // A [3,1,1] per-channel constant of an NCHW value is [1,1,1,3] in NHWC.
        let c = Tensor::from_vec(&[3, 1, 1], vec![1.0f32, 2.0, 3.0]);
        let p = permuted_const(&c, &to_second(4)).unwrap();
        assert_eq!(p.shape(), &[1, 1, 1, 3]);
        assert_eq!(p.to_f64_vec(), vec![1.0, 2.0, 3.0]);
        assert!(permuted_const(&Tensor::zeros(DType::F32, &[1, 1, 1, 1, 1]), &[1, 0]).is_none());
    }

    #[test]
    fn nchw_chain_keeps_boundary_transposes_only() {
        let (before, g, c) = run(r#"graph @t(%x: f32[1,2,4,4]) -> ("y": f32[1,2,2,2]) {
              %0 = const dense<splat 0.25> : f32[3,3,2,2]
              %1 = conv2d(%x, %0) {strides = [1, 1], dilations = [1, 1], padding = "SAME", format = "NCHW"} : f32[1,2,4,4]
              %2 = tanh(%1) : f32[1,2,4,4]
              %3 = const dense<0.5> : f32[]
              %4 = mul(%2, %3) : f32[1,2,4,4]
              %5 = avg_pool(%4) {ksize = [2, 2], strides = [2, 2], padding = "VALID", format = "NCHW"} : f32[1,2,2,2]
              return %5
            }"#);
        assert_eq!(count(&g, |op| *op == Op::Transpose), 2);
        assert_eq!(c.get("nchw_to_nhwc"), Some(&2));
        assert_eq!(c.get("transposes_sunk"), Some(&2));
        assert_eq!(c.get("transposes_cancelled"), Some(&1));
        same_results(&before, &g);
    }

    #[test]
    fn does_not_sink_past_an_untransposed_operand() {
        // add(transpose(conv), x): moving the transpose would need one on x too.
        let (before, g, c) = run(r#"graph @t(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
              %0 = const dense<splat 0.5> : f32[1,1,2,2]
              %1 = conv2d(%x, %0) {strides = [1, 1], dilations = [1, 1], padding = "VALID", format = "NCHW"} : f32[1,2,3,3]
              %2 = add(%1, %x) : f32[1,2,3,3]
              return %2
            }"#);
        assert!(!c.contains_key("transposes_sunk"), "{c:?}");
        assert_eq!(count(&g, |op| *op == Op::Transpose), 2);
        same_results(&before, &g);
    }

    #[test]
    fn nhwc_graph_is_unchanged() {
        let src = r#"graph @t(%x: f32[1,3,3,2]) -> ("y": f32[1,3,3,2]) {
              %0 = const dense<splat 0.5> : f32[1,1,2,2]
              %1 = conv2d(%x, %0) {strides = [1, 1], dilations = [1, 1], padding = "VALID", format = "NHWC"} : f32[1,3,3,2]
              return %1
            }"#;
        let mut g = text::parse(src).unwrap();
        let mut cx = PassCx::default();
        assert_eq!(Layout.run(&mut g, &mut cx).unwrap(), Changed::No);
        assert_eq!(g, text::parse(src).unwrap());
    }
}
