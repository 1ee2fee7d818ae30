//! `fold-batchnorm`: folds per-output-channel scales and shifts that follow a `conv2d`,
//! `depthwise_conv2d` or `matmul` with a constant weight into that weight and a bias.
//!
//! A *producer* is a `conv2d` / `depthwise_conv2d` / `matmul` of a float dtype whose weight
//! (input 1) is a constant, or computes one from constants only (through `identity` and any
//! small constant expression, so the pass does not depend on `fold-constants` or `prune`
//! having run). Its *channel axis* is the output channel axis of its data format (`matmul`:
//! axis 1). A constant is *per-channel* when it broadcasts only along that axis: every
//! dimension is 1 except, possibly, the one aligned with the channel axis, which is `C`
//! (`[C]`, `[1,C]`, `[1,1,1,C]` for NHWC, `[C,1,1]` for NCHW, or a scalar).
//!
//! Rewrites (either operand order for `mul` and `add`; `sub` only with the constant second):
//! 1. `mul(P, s)`, P used only there → `P'`, whose weight is scaled per output channel
//!    (conv2d: `filter[.., o] *= s[o]`; depthwise: `filter[.., c, m] *= s[c*mult + m]`;
//!    matmul: `W[:, o] *= s[o]`, or `W[o, :]` with `transpose_b`).
//! 2. `mul(bias_add(P, b), s)`, both used only there, `b` constant → `bias_add(P', b*s)`.
//! 3. `add(P, t)` / `sub(P, t)` → `bias_add(P, ±t)` in P's data format (the add node becomes
//!    the bias_add, keeping its name).
//! 4. `add(bias_add(P, b), t)` / `sub(..)`, the bias_add used only there → `bias_add(P, b ± t)`.
//! 5. `fused_batch_norm(x, scale, offset, mean, variance)` with constant parameters →
//!    `add(mul(x, s), t)` with `s = scale / sqrt(variance + epsilon)` and
//!    `t = offset - mean * s` (computed in f64, stored in x's dtype, shaped to broadcast along
//!    the channel axis), which rules 1–4 then fold when x comes from a producer.
//!
//! New weights and biases are new constant nodes; the old ones are left for `prune`. Values
//! are computed in f64 and rounded once to the tensor's dtype, so a folded graph differs from
//! the original only by floating-point reassociation. Scales and shifts after anything else
//! (an `add`, a `relu`, a producer with other users) are left alone: `fuse` handles them as
//! elementwise ops. Canonical form: a producer's per-channel affine epilogue is its weight
//! and one `bias_add`.
//!
//! Counters: `batchnorms_expanded` (rule 5), `batchnorms_folded` (scales folded into a
//! weight, rules 1–2), `shifts_folded` (shifts folded into a bias, rules 3–4).

use super::{Changed, Pass, PassCx, PassError};
use lathe_ir::ops::{BinaryOp, DataFormat};
use lathe_ir::{Dim, Graph, NodeId, Op, Tensor, TensorType, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

/// The `fold-batchnorm` pass.
pub struct FoldBatchnorm;

/// Sweeps over the graph within one run, so that an expanded batch norm folds in the same run.
const MAX_SWEEPS: usize = 8;

/// How deep [`Consts`] follows a chain of constant ops.
const MAX_CONST_DEPTH: usize = 32;

impl Pass for FoldBatchnorm {
    fn name(&self) -> &'static str {
        "fold-batchnorm"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError> {
        let mut stats = Stats::default();
        let mut consts = Consts::new(cx.options.fold_max_elements);
        let mut changed = false;
        for _ in 0..MAX_SWEEPS {
            let order = g.topo_order().map_err(|e| PassError::ir(self.name(), e))?;
            let mut any = false;
            for id in order {
                if !g.contains(id) {
                    continue;
                }
                let did = rewrite(g, id, &mut consts, &mut stats)
                    .map_err(|e| PassError::ir(self.name(), e))?;
                if did {
                    // Rewrites change weights and biases in place: forget what was evaluated.
                    consts.clear();
                    any = true;
                }
            }
            changed |= any;
            if !any {
                break;
            }
        }
        cx.count("batchnorms_expanded", stats.expanded);
        cx.count("batchnorms_folded", stats.scales);
        cx.count("shifts_folded", stats.shifts);
        Ok(Changed::from_bool(changed))
    }
}

#[derive(Default)]
struct Stats {
    expanded: usize,
    scales: usize,
    shifts: usize,
}

/// Values computed from constants only, evaluated on demand and memoized.
struct Consts {
    limit: usize,
    memo: HashMap<ValueId, Option<Arc<Tensor>>>,
}

impl Consts {
    fn new(limit: usize) -> Consts {
        Consts {
            limit,
            memo: HashMap::new(),
        }
    }

    fn clear(&mut self) {
        self.memo.clear();
    }

    /// The value of `v` when it depends on constants only: a constant, an identity of one, or
    /// an op on such values whose outputs have at most `limit` elements.
    fn get(&mut self, g: &Graph, v: ValueId) -> Option<Arc<Tensor>> {
        self.eval(g, v, 0)
    }

    fn eval(&mut self, g: &Graph, v: ValueId, depth: usize) -> Option<Arc<Tensor>> {
        if let Some(r) = self.memo.get(&v) {
            return r.clone();
        }
        let n = g.node(v.node);
        let r = match &n.op {
            Op::Const(t) => Some(t.clone()),
            Op::Input { .. } | Op::NoOp => None,
            Op::Identity | Op::StopGradient => self.eval(g, n.inputs[0], depth),
            Op::IdentityN => self.eval(g, n.inputs[v.output as usize], depth),
            // Not memoized: from a shallower start the same value may be reachable.
            _ if depth >= MAX_CONST_DEPTH => return None,
            op => {
                let small = n
                    .outputs
                    .iter()
                    .all(|t| t.shape.num_elements().is_some_and(|k| k <= self.limit));
                if !small {
                    None
                } else {
                    let op = op.clone();
                    let inputs = n.inputs.clone();
                    let mut vals = Vec::with_capacity(inputs.len());
                    for i in inputs {
                        match self.eval(g, i, depth + 1) {
                            Some(t) => vals.push(t),
                            None => {
                                self.memo.insert(v, None);
                                return None;
                            }
                        }
                    }
                    let refs: Vec<&Tensor> = vals.iter().map(|t| t.as_ref()).collect();
                    op.eval(&refs)
                        .ok()
                        .and_then(|mut outs| {
                            let k = v.output as usize;
                            (k < outs.len()).then(|| outs.swap_remove(k))
                        })
                        .map(Arc::new)
                }
            }
        };
        self.memo.insert(v, r.clone());
        r
    }
}

/// How a producer's weight maps to its output channels.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// HWIO filter: output channel `o` is the last index.
    Conv,
    /// `[kh, kw, in, mult]` filter: output channel `c*mult + m` is the last two indices.
    Depthwise,
    /// `[k, n]` weight (`[n, k]` when transposed): output channel is the column (row).
    MatMul { transpose_b: bool },
}

/// A `conv2d` / `depthwise_conv2d` / `matmul` with a constant weight.
struct Producer {
    node: NodeId,
    kind: Kind,
    weight: Arc<Tensor>,
    /// The output's channel axis.
    axis: usize,
    /// Number of output channels.
    channels: usize,
    /// The data format a `bias_add` on the output uses.
    format: DataFormat,
}

/// The channel axis of a rank-`rank` tensor in `format` (as `bias_add` sees it).
fn channel_axis(format: DataFormat, rank: usize) -> usize {
    match format {
        DataFormat::Nhwc => rank - 1,
        DataFormat::Nchw => 1,
    }
}

/// `v` as a producer, if it is one.
fn producer(g: &Graph, v: ValueId, consts: &mut Consts) -> Option<Producer> {
    let n = g.node(v.node);
    if v.output != 0 || n.inputs.len() != 2 {
        return None;
    }
    let out = &n.outputs[0];
    if !out.dtype.is_float() {
        return None;
    }
    let (kind, format) = match &n.op {
        Op::Conv2D(a) => (Kind::Conv, a.format),
        Op::DepthwiseConv2D(a) => (Kind::Depthwise, a.format),
        Op::MatMul { transpose_b, .. } => (
            Kind::MatMul {
                transpose_b: *transpose_b,
            },
            DataFormat::Nhwc,
        ),
        _ => return None,
    };
    let weight = consts.get(g, n.inputs[1])?;
    let ws = weight.shape();
    if weight.dtype() != out.dtype {
        return None;
    }
    let channels = match kind {
        Kind::Conv if ws.len() == 4 => ws[3],
        Kind::Depthwise if ws.len() == 4 => ws[2] * ws[3],
        Kind::MatMul { transpose_b } if ws.len() == 2 => ws[usize::from(!transpose_b)],
        _ => return None,
    };
    if out.rank() < 2 {
        return None;
    }
    let axis = channel_axis(format, out.rank());
    if out.shape.dims()[axis] != Dim::Known(channels) {
        return None;
    }
    Some(Producer {
        node: v.node,
        kind,
        weight,
        axis,
        channels,
        format,
    })
}

/// The node using `v`, when exactly one node uses it once and it is not a graph output.
fn single_user(g: &Graph, v: ValueId) -> Option<NodeId> {
    let users = g.users(v);
    if users.len() != 1 || g.outputs().iter().any(|o| o.value == v) {
        return None;
    }
    Some(users[0].0)
}

/// The per-channel values of `c` applied to a tensor of type `out` with `channels` channels
/// along `axis`: `None` unless `c` broadcasts along that axis only.
fn per_channel(c: &Tensor, out: &TensorType, axis: usize, channels: usize) -> Option<Vec<f64>> {
    let r = out.rank();
    let cs = c.shape();
    if cs.len() > r || !c.dtype().is_float() {
        return None;
    }
    for (j, &d) in cs.iter().enumerate() {
        let ok = if r - cs.len() + j == axis {
            d == 1 || d == channels
        } else {
            d == 1
        };
        if !ok {
            return None;
        }
    }
    let vals = c.to_f64_vec();
    match vals.len() {
        1 => Some(vec![vals[0]; channels]),
        n if n == channels => Some(vals),
        _ => None,
    }
}

/// `w` with output channel `o` scaled by `s[o]`.
fn scale_weight(w: &Tensor, kind: Kind, s: &[f64]) -> Tensor {
    let shape = w.shape().to_vec();
    // Row-major, the weight is blocks of `s.len()` runs of `inner` elements, run `o` of each
    // block belonging to output channel `o`.
    let inner = match kind {
        Kind::MatMul { transpose_b: true } => shape[1],
        _ => 1,
    };
    // f32 (nearly every model's weights) directly, without an f64 copy of the weight.
    if let Some(a) = w.as_array::<f32>() {
        let a = a.as_standard_layout();
        let src = a.as_slice().expect("standard layout is contiguous");
        let vals = scale_runs(src, inner, s, |x, k| (f64::from(x) * k) as f32);
        return Tensor::from_vec(&shape, vals);
    }
    let vals = scale_runs(&w.to_f64_vec(), inner, s, |x, k| x * k);
    Tensor::from_f64(w.dtype(), &shape, &vals)
}

/// `f(x, s[channel])` for every element of `src`, laid out as in [`scale_weight`].
fn scale_runs<T: Copy>(src: &[T], inner: usize, s: &[f64], f: impl Fn(T, f64) -> T) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    if s.is_empty() || inner == 0 {
        return src.to_vec();
    }
    for block in src.chunks(s.len() * inner) {
        if inner == 1 {
            out.extend(block.iter().zip(s).map(|(&x, &k)| f(x, k)));
        } else {
            for (run, &k) in block.chunks(inner).zip(s) {
                out.extend(run.iter().map(|&x| f(x, k)));
            }
        }
    }
    out
}

/// `name/suffix` for node `id` with source name `name`; empty when it has none.
fn derived_name(g: &Graph, id: NodeId, suffix: &str) -> String {
    let name = &g.node(id).name;
    if name.is_empty() {
        String::new()
    } else {
        format!("{name}/{suffix}")
    }
}

/// Adds a constant node with `vals` of `dtype` and `shape`.
fn add_const(
    g: &mut Graph,
    dtype: lathe_ir::DType,
    shape: &[usize],
    vals: &[f64],
    name: String,
) -> ValueId {
    g.add_const(Tensor::from_f64(dtype, shape, vals), name)
}

/// Gives producer `p` the weight scaled by `s`. The constant it replaces is removed at once
/// when nothing else uses it, so a model's weights are not all held twice until `prune` runs.
fn scale_producer(g: &mut Graph, p: &Producer, s: &[f64]) -> lathe_ir::Result<()> {
    let w = scale_weight(&p.weight, p.kind, s);
    let name = derived_name(g, p.node, "folded_weight");
    let wv = g.add_const(w, name);
    let old = g.node(p.node).inputs[1];
    g.set_input(p.node, 1, wv);
    let unused = g.users(old).is_empty() && !g.outputs().iter().any(|o| o.value == old);
    if unused && matches!(g.node(old.node).op, Op::Const(_)) {
        g.remove_node(old.node)?;
    }
    Ok(())
}

/// Applies the first rule that matches node `id`.
fn rewrite(
    g: &mut Graph,
    id: NodeId,
    consts: &mut Consts,
    stats: &mut Stats,
) -> lathe_ir::Result<bool> {
    match g.node(id).op {
        Op::FusedBatchNorm { epsilon, format } => {
            let done = expand_batch_norm(g, id, epsilon, format, consts);
            stats.expanded += usize::from(done);
            Ok(done)
        }
        Op::Binary(BinaryOp::Mul) => {
            let done = fold_scale(g, id, consts)?;
            stats.scales += usize::from(done);
            Ok(done)
        }
        Op::Binary(b @ (BinaryOp::Add | BinaryOp::Sub)) => {
            let done = fold_shift(g, id, b == BinaryOp::Sub, consts)?;
            stats.shifts += usize::from(done);
            Ok(done)
        }
        _ => Ok(false),
    }
}

/// `(data, constant)` operand orders to try for binary node `id`: those whose data operand is
/// a producer or a `bias_add` (a cheap test before any constant is evaluated).
fn operand_orders(g: &Graph, id: NodeId, commutative: bool) -> Vec<(ValueId, ValueId)> {
    let ins = &g.node(id).inputs;
    if ins.len() != 2 {
        return vec![];
    }
    let mut v = vec![(ins[0], ins[1])];
    if commutative {
        v.push((ins[1], ins[0]));
    }
    v.retain(|(x, _)| {
        matches!(
            g.node(x.node).op,
            Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::MatMul { .. } | Op::BiasAdd { .. }
        )
    });
    v
}

/// When `x` is `bias_add(P, b)` with P a foldable producer whose channel axis is the
/// bias_add's, and b a constant with one value per channel: P and b.
fn bias_over_producer(
    g: &Graph,
    x: ValueId,
    rank: usize,
    consts: &mut Consts,
) -> Option<(Producer, Arc<Tensor>)> {
    let bn = g.node(x.node);
    let Op::BiasAdd { format } = bn.op else {
        return None;
    };
    let p = producer(g, bn.inputs[0], consts)?;
    if channel_axis(format, rank) != p.axis {
        return None;
    }
    let b = consts.get(g, bn.inputs[1])?;
    (b.shape() == [p.channels]).then_some((p, b))
}

/// Rules 1 and 2: `mul(P, s)` and `mul(bias_add(P, b), s)`.
fn fold_scale(g: &mut Graph, id: NodeId, consts: &mut Consts) -> lathe_ir::Result<bool> {
    let out = ValueId::first(id);
    let out_ty = g.node(id).outputs[0].clone();
    for (x, c) in operand_orders(g, id, true) {
        if single_user(g, x) != Some(id) || g.value_type(x) != &out_ty {
            continue;
        }
        let Some(cv) = consts.get(g, c) else {
            continue;
        };
        // Rule 1: mul(P, s).
        if let Some(p) = producer(g, x, consts) {
            let Some(s) = per_channel(&cv, &out_ty, p.axis, p.channels) else {
                continue;
            };
            scale_producer(g, &p, &s)?;
            g.replace_all_uses(out, x);
            g.remove_node(id)?;
            return Ok(true);
        }
        // Rule 2: mul(bias_add(P, b), s); P's weights change, so the bias_add must be its
        // only user.
        let Some((p, b)) = bias_over_producer(g, x, out_ty.rank(), consts) else {
            continue;
        };
        if single_user(g, ValueId::first(p.node)) != Some(x.node) {
            continue;
        }
        let Some(s) = per_channel(&cv, &out_ty, p.axis, p.channels) else {
            continue;
        };
        let nb: Vec<f64> = b.to_f64_vec().iter().zip(&s).map(|(b, s)| b * s).collect();
        let name = derived_name(g, x.node, "folded_bias");
        let nbv = add_const(g, b.dtype(), &[p.channels], &nb, name);
        scale_producer(g, &p, &s)?;
        g.set_input(x.node, 1, nbv);
        g.replace_all_uses(out, x);
        g.remove_node(id)?;
        return Ok(true);
    }
    Ok(false)
}

/// Rules 3 and 4: `add(P, t)` / `sub(P, t)` and `add(bias_add(P, b), t)` / `sub(..)`.
fn fold_shift(g: &mut Graph, id: NodeId, sub: bool, consts: &mut Consts) -> lathe_ir::Result<bool> {
    let out = ValueId::first(id);
    let out_ty = g.node(id).outputs[0].clone();
    let sign = if sub { -1.0 } else { 1.0 };
    for (x, c) in operand_orders(g, id, !sub) {
        if g.value_type(x) != &out_ty {
            continue;
        }
        let Some(cv) = consts.get(g, c) else {
            continue;
        };
        // Rule 3: add(P, t) → bias_add(P, t).
        if let Some(p) = producer(g, x, consts) {
            let Some(t) = per_channel(&cv, &out_ty, p.axis, p.channels) else {
                continue;
            };
            let t: Vec<f64> = t.iter().map(|t| sign * t).collect();
            let name = derived_name(g, id, "bias");
            let tv = add_const(g, out_ty.dtype, &[p.channels], &t, name);
            g.set_op(id, Op::BiasAdd { format: p.format }, vec![out_ty.clone()]);
            g.set_input(id, 0, x);
            g.set_input(id, 1, tv);
            return Ok(true);
        }
        // Rule 4: add(bias_add(P, b), t) → bias_add(P, b + t).
        if single_user(g, x) != Some(id) {
            continue;
        }
        let Some((p, b)) = bias_over_producer(g, x, out_ty.rank(), consts) else {
            continue;
        };
        let Some(t) = per_channel(&cv, &out_ty, p.axis, p.channels) else {
            continue;
        };
        let nb: Vec<f64> = b
            .to_f64_vec()
            .iter()
            .zip(&t)
            .map(|(b, t)| b + sign * t)
            .collect();
        let name = derived_name(g, x.node, "folded_bias");
        let nbv = add_const(g, b.dtype(), &[p.channels], &nb, name);
        g.set_input(x.node, 1, nbv);
        g.replace_all_uses(out, x);
        g.remove_node(id)?;
        return Ok(true);
    }
    Ok(false)
}

/// Rule 5: `fused_batch_norm` with constant parameters → `add(mul(x, s), t)`.
fn expand_batch_norm(
    g: &mut Graph,
    id: NodeId,
    epsilon: f32,
    format: DataFormat,
    consts: &mut Consts,
) -> bool {
    let n = g.node(id);
    if n.inputs.len() != 5 || n.outputs.len() != 1 {
        return false;
    }
    let inputs = n.inputs.clone();
    let out_ty = n.outputs[0].clone();
    let x_ty = g.value_type(inputs[0]).clone();
    if !x_ty.dtype.is_float() || x_ty != out_ty || x_ty.rank() < 2 {
        return false;
    }
    let mut params = Vec::with_capacity(4);
    for &v in &inputs[1..] {
        match consts.get(g, v) {
            Some(t) => params.push(t.to_f64_vec()),
            None => return false,
        }
    }
    let c = params[0].len();
    let axis = channel_axis(format, x_ty.rank());
    if params.iter().any(|p| p.len() != c) || x_ty.shape.dims()[axis] != Dim::Known(c) {
        return false;
    }
    let eps = f64::from(epsilon);
    let s: Vec<f64> = (0..c)
        .map(|i| params[0][i] / (params[3][i] + eps).sqrt())
        .collect();
    let t: Vec<f64> = (0..c).map(|i| params[1][i] - params[2][i] * s[i]).collect();
    // `[C, 1, ..., 1]`: broadcasts along the channel axis of a rank-r tensor.
    let mut shape = vec![1; x_ty.rank() - axis];
    shape[0] = c;
    let name = g.node(id).name.clone();
    let sv = add_const(g, x_ty.dtype, &shape, &s, derived_name(g, id, "scale"));
    let tv = add_const(g, x_ty.dtype, &shape, &t, derived_name(g, id, "shift"));
    let mul = g.add(
        Op::Binary(BinaryOp::Mul),
        vec![inputs[0], sv],
        derived_name(g, id, "mul"),
    );
    let add = mul
        .as_ref()
        .ok()
        .and_then(|&m| g.add(Op::Binary(BinaryOp::Add), vec![m, tv], name).ok());
    let Some(add) = add.filter(|&a| g.value_type(a) == &out_ty) else {
        // Cannot happen given the checks above; undo and leave the batch norm alone.
        for v in [add.map(|a| a.node), mul.ok().map(|m| m.node)]
            .into_iter()
            .flatten()
            .chain([tv.node, sv.node])
        {
            let _ = g.remove_node(v);
        }
        return false;
    };
    g.replace_all_uses(ValueId::first(id), add);
    // The batch norm is now unused.
    g.remove_node(id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::text::parse;

    /// Pseudo-random tensor of `shape` with values in [-1, 1).
    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect();
        Tensor::from_vec(shape, vals)
    }

    fn inputs_for(g: &Graph) -> Vec<Tensor> {
        g.inputs()
            .iter()
            .enumerate()
            .map(|(i, inp)| random(&inp.ty.shape.as_known().unwrap(), i as u64 + 7))
            .collect()
    }

    /// Runs the pass, checks the graph verifies and computes the same, returns the counters.
    fn fold(text: &str) -> (Graph, std::collections::BTreeMap<&'static str, usize>) {
        let before = parse(text).unwrap();
        let mut g = before.clone();
        let mut cx = PassCx::default();
        FoldBatchnorm.run(&mut g, &mut cx).unwrap();
        lathe_ir::verify(&g).unwrap();
        let xs = inputs_for(&before);
        let a = lathe_ir::interp::run(&before, &xs).unwrap();
        let b = lathe_ir::interp::run(&g, &xs).unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.shape(), b.shape());
            for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!((x - y).abs() <= 1e-5 + 1e-5 * y.abs(), "{x} vs {y}");
            }
        }
        // A second run finds nothing more to do.
        let mut again = g.clone();
        assert_eq!(
            FoldBatchnorm
                .run(&mut again, &mut PassCx::default())
                .unwrap(),
            Changed::No
        );
        (g, cx.take_counters())
    }

    fn count_ops(g: &Graph, mnemonic: &str) -> usize {
        g.node_ids()
            .into_iter()
            .filter(|&id| g.node(id).op.mnemonic() == mnemonic)
            .filter(|&id| {
                // Only nodes something uses (dead constants are left for prune).
                !g.successors(id).is_empty() || g.outputs().iter().any(|o| o.value.node == id)
            })
            .count()
    }

    const CONV: &str =
        r#"{strides = [1, 1], dilations = [1, 1], padding = "SAME", format = "NHWC"}"#;

    #[test]
    fn scale_then_shift_after_conv_folds() {
        let text = format!(
            r#"graph @t(%x: f32[1,4,4,2]) -> ("y": f32[1,4,4,3]) {{
  %0 = const dense<[[[[0.5, -0.25, 1.0], [0.75, 0.125, -0.5]]]]> : f32[1,1,2,3]
  %1 = conv2d(%x, %0) {CONV} : f32[1,4,4,3]
  %2 = const dense<[[[[2.0, 0.5, -1.5]]]]> : f32[1,1,1,3]
  %3 = mul(%2, %1) : f32[1,4,4,3]
  %4 = const dense<[0.25, -0.5, 1.0]> : f32[3]
  %5 = sub(%3, %4) : f32[1,4,4,3]
  return %5
}}"#
        );
        let (g, counts) = fold(&text);
        assert_eq!(count_ops(&g, "mul"), 0);
        assert_eq!(count_ops(&g, "sub"), 0);
        assert_eq!(count_ops(&g, "bias_add"), 1);
        assert_eq!(counts["batchnorms_folded"], 1);
        assert_eq!(counts["shifts_folded"], 1);
    }

    #[test]
    fn bias_add_then_scale_and_shift_fold_into_one_bias() {
        let text = format!(
            r#"graph @t(%x: f32[1,3,3,2]) -> ("y": f32[1,3,3,2]) {{
  %0 = const dense<[[[[0.5, -0.25], [0.75, 0.125]]]]> : f32[1,1,2,2]
  %1 = identity(%0) : f32[1,1,2,2]
  %2 = conv2d(%x, %1) {CONV} : f32[1,3,3,2]
  %3 = const dense<[0.1, -0.2]> : f32[2]
  %4 = bias_add(%2, %3) {{format = "NHWC"}} : f32[1,3,3,2]
  %5 = const dense<[2.0, -0.5]> : f32[2]
  %6 = mul(%4, %5) : f32[1,3,3,2]
  %7 = const dense<[0.3, 0.4]> : f32[2]
  %8 = add(%7, %6) : f32[1,3,3,2]
  return %8
}}"#
        );
        let (g, counts) = fold(&text);
        assert_eq!(count_ops(&g, "mul"), 0);
        assert_eq!(count_ops(&g, "add"), 0);
        assert_eq!(count_ops(&g, "bias_add"), 1);
        assert_eq!(counts["batchnorms_folded"], 1);
        assert_eq!(counts["shifts_folded"], 1);
    }

    #[test]
    fn depthwise_with_multiplier_nchw() {
        let text = r#"graph @t(%x: f32[1,2,3,3]) -> ("y": f32[1,4,3,3]) {
  %0 = const dense<[[[[0.5, -0.25], [0.75, 0.125]]]]> : f32[1,1,2,2]
  %1 = depthwise_conv2d(%x, %0) {strides = [1, 1], dilations = [1, 1], padding = "VALID", format = "NCHW"} : f32[1,4,3,3]
  %2 = const dense<[[[1.0]], [[2.0]], [[3.0]], [[-4.0]]]> : f32[4,1,1]
  %3 = mul(%1, %2) : f32[1,4,3,3]
  %4 = const dense<[[[1.0]], [[2.0]], [[3.0]], [[-4.0]]]> : f32[4,1,1]
  %5 = add(%3, %4) : f32[1,4,3,3]
  return %5
}"#;
        let (g, counts) = fold(text);
        assert_eq!(count_ops(&g, "mul"), 0);
        assert_eq!(count_ops(&g, "add"), 0);
        assert_eq!(counts["batchnorms_folded"], 1);
        let ba = g
            .node_ids()
            .into_iter()
            .find(|&id| g.node(id).op.mnemonic() == "bias_add")
            .unwrap();
        assert_eq!(
            g.node(ba).op,
            Op::BiasAdd {
                format: DataFormat::Nchw
            }
        );
    }

    #[test]
    fn matmul_both_transposes() {
        for (tb, wshape, wvals) in [
            (false, "[3,2]", "[[0.5, -1.0], [0.25, 2.0], [1.5, -0.75]]"),
            (true, "[2,3]", "[[0.5, 0.25, 1.5], [-1.0, 2.0, -0.75]]"),
        ] {
            let text = format!(
                r#"graph @t(%x: f32[4,3]) -> ("y": f32[4,2]) {{
  %0 = const dense<{wvals}> : f32{wshape}
  %1 = matmul(%x, %0) {{transpose_a = false, transpose_b = {tb}}} : f32[4,2]
  %2 = const dense<[[3.0, -0.5]]> : f32[1,2]
  %3 = mul(%1, %2) : f32[4,2]
  return %3
}}"#
            );
            let (g, counts) = fold(&text);
            assert_eq!(count_ops(&g, "mul"), 0, "transpose_b = {tb}");
            assert_eq!(counts["batchnorms_folded"], 1);
        }
    }

    #[test]
    fn fused_batch_norm_expands_and_folds() {
        let text = format!(
            r#"graph @t(%x: f32[1,3,3,2]) -> ("y": f32[1,3,3,2], "z": f32[1,3,3,2]) {{
  %0 = const dense<[[[[0.5, -0.25], [0.75, 0.125]]]]> : f32[1,1,2,2]
  %1 = conv2d(%x, %0) {CONV} : f32[1,3,3,2]
  %2 = const dense<[1.5, 0.5]> : f32[2]
  %3 = const dense<[0.1, -0.2]> : f32[2]
  %4 = const dense<[0.3, -0.1]> : f32[2]
  %5 = const dense<[0.8, 1.2]> : f32[2]
  %6 = fused_batch_norm(%1, %2, %3, %4, %5) {{epsilon = 0.001, format = "NHWC"}} : f32[1,3,3,2]
  %7 = relu(%6) : f32[1,3,3,2]
  return %6, %7
}}"#
        );
        let (g, counts) = fold(&text);
        assert_eq!(count_ops(&g, "fused_batch_norm"), 0);
        assert_eq!(count_ops(&g, "mul"), 0);
        assert_eq!(count_ops(&g, "add"), 0);
        assert_eq!(count_ops(&g, "bias_add"), 1);
        assert_eq!(counts["batchnorms_expanded"], 1);
        assert_eq!(counts["batchnorms_folded"], 1);
    }

    #[test]
    fn fused_batch_norm_after_other_op_stays_elementwise() {
        let text = r#"graph @t(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %0 = relu(%x) : f32[1,2,3,3]
  %1 = const dense<[1.5, 0.5]> : f32[2]
  %2 = const dense<[0.1, -0.2]> : f32[2]
  %3 = const dense<[0.3, -0.1]> : f32[2]
  %4 = const dense<[0.8, 1.2]> : f32[2]
  %5 = fused_batch_norm(%0, %1, %2, %3, %4) {epsilon = 0.001, format = "NCHW"} : f32[1,2,3,3]
  return %5
}"#;
        let (g, counts) = fold(text);
        assert_eq!(count_ops(&g, "fused_batch_norm"), 0);
        assert_eq!(count_ops(&g, "mul"), 1);
        assert_eq!(count_ops(&g, "add"), 1);
        assert_eq!(counts["batchnorms_expanded"], 1);
        assert_eq!(counts["batchnorms_folded"], 0);
    }

    #[test]
    fn does_not_fire() {
        let cases = [
            // Scale of shape [H, W, C]: not per-channel.
            format!(
                r#"graph @t(%x: f32[1,2,2,2]) -> ("y": f32[1,2,2,2]) {{
  %0 = const dense<[[[[0.5, -0.25], [0.75, 0.125]]]]> : f32[1,1,2,2]
  %1 = conv2d(%x, %0) {CONV} : f32[1,2,2,2]
  %2 = const dense<[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]> : f32[2,2,2]
  %3 = mul(%1, %2) : f32[1,2,2,2]
  return %3
}}"#
            ),
            // The conv has another user.
            format!(
                r#"graph @t(%x: f32[1,2,2,2]) -> ("y": f32[1,2,2,2], "z": f32[1,2,2,2]) {{
  %0 = const dense<[[[[0.5, -0.25], [0.75, 0.125]]]]> : f32[1,1,2,2]
  %1 = conv2d(%x, %0) {CONV} : f32[1,2,2,2]
  %2 = const dense<[2.0, 3.0]> : f32[2]
  %3 = mul(%1, %2) : f32[1,2,2,2]
  %4 = relu(%1) : f32[1,2,2,2]
  return %3, %4
}}"#
            ),
            // Non-constant scale.
            format!(
                r#"graph @t(%x: f32[1,2,2,2], %s: f32[2]) -> ("y": f32[1,2,2,2]) {{
  %0 = const dense<[[[[0.5, -0.25], [0.75, 0.125]]]]> : f32[1,1,2,2]
  %1 = conv2d(%x, %0) {CONV} : f32[1,2,2,2]
  %2 = mul(%1, %s) : f32[1,2,2,2]
  return %2
}}"#
            ),
            // Matmul with a non-constant weight.
            r#"graph @t(%x: f32[2,3], %w: f32[3,2]) -> ("y": f32[2,2]) {
  %0 = matmul(%x, %w) {transpose_a = false, transpose_b = false} : f32[2,2]
  %1 = const dense<[2.0, 3.0]> : f32[2]
  %2 = mul(%0, %1) : f32[2,2]
  %3 = const dense<[1.0, -1.0]> : f32[2]
  %4 = add(%2, %3) : f32[2,2]
  return %4
}"#
            .to_string(),
            // sub(t, P): not a shift of P.
            format!(
                r#"graph @t(%x: f32[1,2,2,2]) -> ("y": f32[1,2,2,2]) {{
  %0 = const dense<[[[[0.5, -0.25], [0.75, 0.125]]]]> : f32[1,1,2,2]
  %1 = conv2d(%x, %0) {CONV} : f32[1,2,2,2]
  %2 = const dense<[2.0, 3.0]> : f32[2]
  %3 = sub(%2, %1) : f32[1,2,2,2]
  return %3
}}"#
            ),
        ];
        for text in &cases {
            let g = parse(text).unwrap();
            let mut h = g.clone();
            let changed = FoldBatchnorm.run(&mut h, &mut PassCx::default()).unwrap();
            assert_eq!(changed, Changed::No, "{text}");
            assert!(h == g);
        }
    }

    #[test]
    fn per_channel_shapes() {
        let ty = TensorType::known(lathe_ir::DType::F32, &[1, 4, 4, 3]);
        let t = |shape: &[usize]| Tensor::zeros(lathe_ir::DType::F32, shape);
        assert!(per_channel(&t(&[3]), &ty, 3, 3).is_some());
        assert!(per_channel(&t(&[1, 1, 1, 3]), &ty, 3, 3).is_some());
        assert!(per_channel(&t(&[]), &ty, 3, 3).is_some());
        assert!(per_channel(&t(&[1]), &ty, 3, 3).is_some());
        assert!(per_channel(&t(&[4, 1, 3]), &ty, 3, 3).is_none());
        assert!(per_channel(&t(&[1, 1, 1, 1, 3]), &ty, 3, 3).is_none());
        let nchw = TensorType::known(lathe_ir::DType::F32, &[1, 3, 4, 4]);
        assert!(per_channel(&t(&[3, 1, 1]), &nchw, 1, 3).is_some());
        assert!(per_channel(&t(&[3]), &nchw, 1, 3).is_none());
    }
}
