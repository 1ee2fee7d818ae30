//! `LinearAttention` (opset 27): attention with a fixed-size state per key/value head instead
//! of a key/value cache, in its four update rules (`linear`, `gated`, `delta`,
//! `gated_delta`), as one `while` loop over the time steps.
//!
//! The state `S` (`[batch, kv_heads, d_k, d_v]`) is updated at each step `t` as the ONNX
//! reference does: decayed by `exp(g_t)` (gated rules), the value corrected by what the state
//! already recalls for the key, `v_t <- beta_t * (v_t - k_t S)` (delta rules), then
//! `S += k_tᵀ v_t`; the step's output is `q_t S`, scaled. Query, key and value are split into
//! heads and laid out time-major before the loop (`[T, batch, heads, 1 or group, d]`), so the
//! body reads row `t` of each with one `gather`; the `group` query heads sharing one key/value
//! head (GQA, MQA) are one batched product against that head's state, never a copy of it.
//! Narrower floats compute in f32, as the reference does; the present state is returned in
//! the past state's dtype (the query's when there is none). `chunk_size` is a tuning hint of
//! no effect on the result, and is ignored.

use super::attention::{batch_matmul, reshape, transpose, Part};
use super::composite::wide;
use super::elementwise::{cast, mul_scalar};
use super::{row, OnnxOp};
use crate::import::onnx::control_flow::{dim0, node_name, reserve, LoopBody};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, UnaryOp as U};
use lathe_ir::{DType, Dim, Op, Shape, TensorType, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "LinearAttention",
        &[
            "while",
            "batch_matmul",
            "mul",
            "add",
            "sub",
            "exp",
            "gather",
            "list_reserve",
            "set_item",
            "reshape",
            "transpose",
            "cast",
            "less",
            "fill",
        ],
        import_linear_attention,
    )]
}

/// The head geometry of a node.
struct Heads {
    q: usize,
    kv: usize,
    d_k: usize,
    d_v: usize,
}

/// The known size of `v`'s last axis.
fn last_dim(b: &Builder, v: ValueId, what: &str) -> Result<usize, String> {
    let ty = b.ty(v);
    if ty.rank() != 3 {
        return Err(format!("{what} must have rank 3 [B, T, H * D], got {ty}"));
    }
    ty.shape.dims()[2]
        .known()
        .ok_or_else(|| format!("{what}'s last dim must be known, got {ty}"))
}

/// `x` (`[B, T, heads * group * d]`) as `[T, B, heads, group, d]`, in dtype `ct`.
fn time_major(
    b: &mut Builder,
    x: ValueId,
    heads: usize,
    group: usize,
    d: usize,
    ct: DType,
) -> Result<ValueId, String> {
    let x = cast(b, x, ct)?;
    let parts = [
        Part::Dim(x, 0),
        Part::Dim(x, 1),
        Part::K(heads as i64),
        Part::K(group as i64),
        Part::K(d as i64),
    ];
    let x = reshape(b, x, &parts)?;
    transpose(b, x, &[1, 0, 2, 3, 4])
}

fn import_linear_attention(b: &mut Builder, cx: &NodeCx) -> Out {
    let (q, k, v) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let (past, decay, beta) = (cx.opt(3), cx.opt(4), cx.opt(5));
    let rule = cx.attrs.str_or("update_rule", "gated_delta")?;
    let (gating, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        other => return Err(format!("update_rule `{other}` is not supported")),
    };
    if gating != decay.is_some() {
        let need = if gating { "requires" } else { "forbids" };
        return Err(format!("update_rule `{rule}` {need} the decay input"));
    }
    if delta != beta.is_some() {
        let need = if delta { "requires" } else { "forbids" };
        return Err(format!("update_rule `{rule}` {need} the beta input"));
    }
    let (hq, hkv) = (cx.attrs.int("q_num_heads")?, cx.attrs.int("kv_num_heads")?);
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 {
        return Err(format!(
            "q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})"
        ));
    }
    let (hq, hkv) = (hq as usize, hkv as usize);
    let (ql, kl, vl) = (
        last_dim(b, q, "query")?,
        last_dim(b, k, "key")?,
        last_dim(b, v, "value")?,
    );
    if ql % hq != 0 || kl != hkv * (ql / hq) || vl % hkv != 0 || ql < hq || vl < hkv {
        return Err(format!(
            "query, key and value last dims {ql}, {kl}, {vl} do not split into {hq} query and \
             {hkv} key/value heads of one positive key size and a positive value size"
        ));
    }
    let h = Heads {
        q: hq,
        kv: hkv,
        d_k: ql / hq,
        d_v: vl / hkv,
    };
    let dt = b.dtype(q);
    let inputs = [Some(q), Some(k), Some(v), past, decay, beta];
    for x in inputs.into_iter().flatten() {
        if !b.dtype(x).is_float() {
            return Err(format!("inputs must be floats, got {}", b.ty(x)));
        }
    }
    let ct = wide(dt);
    let scale = match cx.attrs.float_or("scale", 0.0)? {
        0.0 => 1.0 / (h.d_k as f64).sqrt(),
        s => s as f64,
    };
    let group = h.q / h.kv;
    let qs = time_major(b, q, h.kv, group, h.d_k, ct)?;
    let ks = time_major(b, k, h.kv, 1, h.d_k, ct)?;
    let vs = time_major(b, v, h.kv, 1, h.d_v, ct)?;
    // Decay as `exp(g)`, `[T, B, H_kv, 1 or d_k, 1]`: it scales the state's rows.
    let gs = match decay {
        Some(g) => {
            let gl = last_dim(b, g, "decay")?;
            let per = match gl {
                _ if gl == h.kv => 1,
                _ if gl == h.kv * h.d_k => h.d_k,
                _ => {
                    return Err(format!(
                        "decay's last dim {gl} must be kv_num_heads ({}) or kv_num_heads * d_k \
                         ({})",
                        h.kv,
                        h.kv * h.d_k
                    ))
                }
            };
            let g = time_major(b, g, h.kv, per, 1, ct)?;
            Some(b.op(Op::Unary(U::Exp), &[g])?)
        }
        None => None,
    };
    // Beta as `[T, B, H_kv or 1, 1, 1]`.
    let betas = match beta {
        Some(be) => {
            let bl = last_dim(b, be, "beta")?;
            if bl != h.kv && bl != 1 {
                return Err(format!(
                    "beta's last dim {bl} must be kv_num_heads ({}) or 1",
                    h.kv
                ));
            }
            Some(time_major(b, be, bl, 1, 1, ct)?)
        }
        None => None,
    };
    let batch = b.ty(q).shape.dims()[0].clone();
    let state_dims = [
        batch.clone(),
        Dim::Known(h.kv),
        Dim::Known(h.d_k),
        Dim::Known(h.d_v),
    ];
    let (s0, state_dt) = match past {
        Some(p) => {
            let pt = b.ty(p).clone();
            let fits = pt.rank() == 4
                && (pt.shape.dims().iter().zip(&state_dims))
                    .all(|(a, e)| a.known().is_none() || e.known().is_none() || a == e);
            if !fits {
                return Err(format!(
                    "past_state must be [B, {}, {}, {}], got {pt}",
                    h.kv, h.d_k, h.d_v
                ));
            }
            (cast(b, p, ct)?, pt.dtype)
        }
        None => {
            let parts = [
                Part::Dim(q, 0),
                Part::K(h.kv as i64),
                Part::K(h.d_k as i64),
                Part::K(h.d_v as i64),
            ];
            let zero = b.scalar(ct, 0.0);
            let shape = super::attention::shape_of_parts(b, &parts)?;
            (b.op(Op::Fill, &[shape, zero])?, dt)
        }
    };
    let outs = recurrence(b, &h, [qs, ks, vs], gs, betas, s0, ct, &batch)?;
    let (list, state) = (outs[0], outs[1]);
    // `[T, B, H_kv, group, d_v]` -> `[B, T, H_q * d_v]`.
    let y = transpose(b, list, &[1, 0, 2, 3, 4])?;
    let parts = [
        Part::Dim(q, 0),
        Part::Dim(q, 1),
        Part::K((h.q * h.d_v) as i64),
    ];
    let y = reshape(b, y, &parts)?;
    let y = mul_scalar(b, y, scale)?;
    Ok(vec![cast(b, y, dt)?, cast(b, state, state_dt)?])
}

/// The loop over the time steps; returns the outputs (`[T, B, H_kv, group, d_v]`, unscaled)
/// and the final state.
#[allow(clippy::too_many_arguments)]
fn recurrence(
    b: &mut Builder,
    h: &Heads,
    [qs, ks, vs]: [ValueId; 3],
    gs: Option<ValueId>,
    betas: Option<ValueId>,
    s0: ValueId,
    ct: DType,
    batch: &Dim,
) -> Result<Vec<ValueId>, String> {
    let name = node_name(b);
    let steps = dim0(b, qs)?;
    let mut lp = LoopBody::counted(b, &name, steps)?;
    let ks_state = lp.carry(b, s0, "state");
    let item = TensorType::new(
        ct,
        Shape(vec![
            batch.clone(),
            Dim::Known(h.kv),
            Dim::Known(h.q / h.kv),
            Dim::Known(h.d_v),
        ]),
    );
    let list = reserve(b, &item, steps)?;
    let ky = lp.carry(b, list, "y");
    let (q_all, k_all, v_all) = (
        lp.invariant(b, qs, "q"),
        lp.invariant(b, ks, "k"),
        lp.invariant(b, vs, "v"),
    );
    let g_all = gs.map(|g| lp.invariant(b, g, "exp_decay"));
    let beta_all = betas.map(|be| lp.invariant(b, be, "beta"));
    let (t, mut s, list) = (lp.step(), lp.arg(ks_state), lp.arg(ky));

    let lb = &mut lp.b;
    lb.naming(&format!("{name}/step"));
    let axis = lb.i64_scalar(0);
    let row = |lb: &mut Builder, all: ValueId| lb.op(Op::Gather { batch_dims: 0 }, &[all, t, axis]);
    let (q_t, k_t, mut v_t) = (row(lb, q_all)?, row(lb, k_all)?, row(lb, v_all)?);
    if let Some(g) = g_all {
        let g_t = row(lb, g)?;
        s = lb.op(Op::Binary(B::Mul), &[s, g_t])?;
    }
    if let Some(be) = beta_all {
        let be_t = row(lb, be)?;
        let recalled = batch_matmul(lb, k_t, s, false, false)?;
        let d = lb.op(Op::Binary(B::Sub), &[v_t, recalled])?;
        v_t = lb.op(Op::Binary(B::Mul), &[be_t, d])?;
    }
    // `k_tᵀ v_t`: the outer product of a key and a value row.
    let write = batch_matmul(lb, k_t, v_t, true, false)?;
    let s = lb.op(Op::Binary(B::Add), &[s, write])?;
    let y_t = batch_matmul(lb, q_t, s, false, false)?;
    let written = lb.op(Op::SetItem, &[list, t, y_t])?;
    lp.set_next(ks_state, s);
    lp.set_next(ky, written);
    let results = lp.finish_counted(b)?;
    Ok(vec![results[ky], results[ks_state]])
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, run, values, A};
    use lathe_ir::Tensor;

    const T: usize = 3;

    /// The recurrence written out in f64 for one batch, two query heads sharing one key/value
    /// head, `d_k = d_v = 2`: the outputs `[T, 4]` and the final state `[2, 2]`.
    fn naive(
        [q, k, v, g, beta]: [&[f32]; 5],
        gating: bool,
        delta: bool,
        scale: f64,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut s = [[0.0f64; 2]; 2];
        let mut out = Vec::new();
        for t in 0..T {
            let kt = [k[2 * t] as f64, k[2 * t + 1] as f64];
            let mut vt = [v[2 * t] as f64, v[2 * t + 1] as f64];
            if gating {
                for (d, row) in s.iter_mut().enumerate() {
                    let f = (g[2 * t + d] as f64).exp();
                    row.iter_mut().for_each(|x| *x *= f);
                }
            }
            if delta {
                for (m, vm) in vt.iter_mut().enumerate() {
                    let recalled = s[0][m] * kt[0] + s[1][m] * kt[1];
                    *vm = beta[t] as f64 * (*vm - recalled);
                }
            }
            for (d, row) in s.iter_mut().enumerate() {
                for (m, x) in row.iter_mut().enumerate() {
                    *x += kt[d] * vt[m];
                }
            }
            for h in 0..2 {
                let qd = |d: usize| q[4 * t + 2 * h + d] as f64;
                out.extend((0..2).map(|m| scale * (qd(0) * s[0][m] + qd(1) * s[1][m])));
            }
        }
        (out, s.iter().flatten().copied().collect())
    }

    fn check(rule: &str, gating: bool, delta: bool) {
        let sizes = [4, 2, 2, 2, 1];
        let data = [0, 1, 2, 3, 4].map(|i| values(sizes[i] * T, i as u32 + 1));
        let [q, k, v, g, beta] =
            [0, 1, 2, 3, 4].map(|i| Tensor::from_vec(&[1, T, sizes[i]], data[i].clone()));
        let mut inputs = vec![("q", &q), ("k", &k), ("v", &v)];
        let mut names = vec!["q", "k", "v", ""];
        for (on, name, t) in [(gating, "g", &g), (delta, "beta", &beta)] {
            names.push(if on { name } else { "" });
            if on {
                inputs.push((name, t));
            }
        }
        let attrs = [
            ("q_num_heads", A::I(2)),
            ("kv_num_heads", A::I(1)),
            ("update_rule", A::S(rule)),
        ];
        let outs = ["y", "state"];
        let graph = one_node(27, "LinearAttention", &inputs, &[], &attrs, &names, &outs).unwrap();
        let feeds: Vec<&Tensor> = inputs.iter().map(|(_, t)| *t).collect();
        let got = run(&graph, &feeds);
        let all = [0, 1, 2, 3, 4].map(|i| data[i].as_slice());
        let (y, s) = naive(all, gating, delta, 0.5f64.sqrt());
        for (what, got, want) in [("output", &got[0], y), ("state", &got[1], s)] {
            let got = got.to_f64_vec();
            assert_eq!(got.len(), want.len(), "{rule} {what}");
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{rule} {what}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn each_update_rule_matches_the_recurrence() {
        check("linear", false, false);
        check("gated", true, false);
        check("delta", false, true);
        check("gated_delta", true, true);
    }

    #[test]
    fn unknown_batch_and_length_are_read_at_run_time() {
        use crate::import::onnx::control_flow::testing::*;
        let n = node("LinearAttention", &["q", "k", "v"], &["y", "state"]);
        let n = int_attr(n, "q_num_heads", 2);
        let n = int_attr(n, "kv_num_heads", 1);
        let n = str_attr(n, "update_rule", "linear");
        let inputs =
            ["q", "k", "v"].map(|x| value(x, F32, &[-1, -1, if x == "q" { 4 } else { 2 }]));
        let outputs = vec![value("y", F32, &[]), value("state", F32, &[])];
        let g = import(graph("g", vec![n], inputs.to_vec(), outputs, &[]), 27).unwrap();
        let sizes = [4, 2, 2];
        let data = [0, 1, 2].map(|i| values(sizes[i] * T, i as u32 + 7));
        let [q, k, v] =
            [0, 1, 2].map(|i| Tensor::from_vec(&[1, T, data[i].len() / T], data[i].clone()));
        // The loop's output list learns its row type when the graph is specialized.
        let types = [&q, &k, &v].map(|t| t.ty());
        let g = crate::specialize::specialize(&g, &types).unwrap();
        let got = run(&g, &[q, k, v]);
        let none: &[f32] = &[];
        let (y, s) = naive(
            [&data[0], &data[1], &data[2], none, none],
            false,
            false,
            0.5f64.sqrt(),
        );
        for (got, want) in [(&got[0], y), (&got[1], s)] {
            let got = got.to_f64_vec();
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn a_rule_without_its_inputs_is_refused() {
        let x = Tensor::from_vec(&[1, 1, 2], vec![0.5f32, 1.0]);
        let attrs = [("q_num_heads", A::I(1)), ("kv_num_heads", A::I(1))];
        let inputs = [("x", &x)];
        let names = ["x", "x", "x"];
        let e = one_node(27, "LinearAttention", &inputs, &[], &attrs, &names, &["y"]).unwrap_err();
        assert!(
            e.contains("update_rule `gated_delta` requires the decay input"),
            "{e}"
        );
        let attrs = [
            ("q_num_heads", A::I(3)),
            ("kv_num_heads", A::I(2)),
            ("update_rule", A::S("linear")),
        ];
        let e = one_node(27, "LinearAttention", &inputs, &[], &attrs, &names, &["y"]).unwrap_err();
        assert!(e.contains("must be a positive multiple"), "{e}");
    }
}
