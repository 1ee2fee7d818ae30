//! ONNX attention ops written with the IR's batched matrix products, softmax and selects:
//! `Attention` (opset 23; 24 adds `nonpad_kv_seqlen`, 25 the sliding-window bounds) and
//! `RotaryEmbedding` (23).
//!
//! `Attention` works on `[batch, heads, seq, head_size]` values (3-D inputs are split into
//! heads first). Grouped-query attention never copies K or V per query head: the `r` query
//! heads sharing one key/value head are stacked along the sequence axis (a reshape, since
//! they are adjacent), so each product is one batched matmul against the shared K or V. Every
//! mask (the `attn_mask` input, causal, sliding window, non-padding lengths) becomes one
//! additive bias of 0 and -inf; a query row whose bias is -inf everywhere gives zeros, as the
//! reference does, instead of softmax's 0/0.

use super::elementwise::cast;
use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, PadMode, ReduceKind, UnaryOp as U};
use lathe_ir::{DType, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row(
            "Attention",
            &[
                "batch_matmul",
                "softmax",
                "mul",
                "add",
                "div",
                "tanh",
                "select",
                "reduce_max",
                "equal",
                "range",
                "less",
                "less_equal",
                "greater_equal",
                "logical_and",
                "pad",
                "concat",
                "reshape",
                "transpose",
                "cast",
                "sub",
                "expand_dims",
                "shape",
                "slice",
            ],
            import_attention,
        ),
        row(
            "RotaryEmbedding",
            &[
                "mul",
                "sub",
                "add",
                "gather",
                "slice",
                "concat",
                "expand_dims",
                "reshape",
            ],
            import_rotary,
        ),
    ]
}

/// One entry of a shape built for a reshape: a constant, or dim `axis` of a value (a constant
/// when the dim is known, read from the value's shape at run time when it is not).
#[derive(Clone, Copy)]
pub(super) enum Part {
    K(i64),
    Dim(ValueId, usize),
}

/// Dim `axis` of `x` as a rank-1 i64 of one entry.
fn dim1(b: &mut Builder, x: ValueId, axis: usize) -> Result<ValueId, String> {
    if let Some(d) = b.ty(x).shape.0[axis].known() {
        return Ok(b.i64s(&[d as i64]));
    }
    let s = b.op(Op::Shape { output: DType::I64 }, &[x])?;
    let begin = b.i64s(&[axis as i64]);
    let size = b.i64s(&[1]);
    b.op(Op::Slice, &[s, begin, size])
}

/// Dim `axis` of `x` as an i64 scalar.
fn dim0(b: &mut Builder, x: ValueId, axis: usize) -> Result<ValueId, String> {
    if let Some(d) = b.ty(x).shape.0[axis].known() {
        return Ok(b.i64_scalar(d as i64));
    }
    let d = dim1(b, x, axis)?;
    let scalar = b.i64s(&[]);
    b.op(Op::Reshape, &[d, scalar])
}

/// A rank-1 i64 shape from `parts`: one constant when every part is known.
pub(super) fn shape_of_parts(b: &mut Builder, parts: &[Part]) -> Result<ValueId, String> {
    let known: Option<Vec<i64>> = parts
        .iter()
        .map(|p| match *p {
            Part::K(k) => Some(k),
            Part::Dim(v, a) => b.ty(v).shape.0[a].known().map(|d| d as i64),
        })
        .collect();
    if let Some(k) = known {
        return Ok(b.i64s(&k));
    }
    let mut vals = Vec::with_capacity(parts.len() + 1);
    for p in parts {
        vals.push(match *p {
            Part::K(k) => b.i64s(&[k]),
            Part::Dim(v, a) => dim1(b, v, a)?,
        });
    }
    vals.push(b.i64_scalar(0));
    b.op(Op::Concat, &vals)
}

/// `x` reshaped to `parts`.
pub(super) fn reshape(b: &mut Builder, x: ValueId, parts: &[Part]) -> Result<ValueId, String> {
    let s = shape_of_parts(b, parts)?;
    b.op(Op::Reshape, &[x, s])
}

pub(super) fn transpose(b: &mut Builder, x: ValueId, perm: &[i64]) -> Result<ValueId, String> {
    let p = b.i64s(perm);
    b.op(Op::Transpose, &[x, p])
}

fn bin(b: &mut Builder, op: B, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Binary(op), &[x, y])
}

/// The batched matrix product `x @ y`, `x` transposed when `adj_x` and `y` when `adj_y`.
pub(super) fn batch_matmul(
    b: &mut Builder,
    x: ValueId,
    y: ValueId,
    adj_x: bool,
    adj_y: bool,
) -> Result<ValueId, String> {
    b.op(Op::BatchMatMul { adj_x, adj_y }, &[x, y])
}

/// The dtype the softmax computes in: the `softmax_precision` attribute (a float type), else
/// `default`.
pub(super) fn softmax_precision(cx: &NodeCx, default: DType) -> Result<DType, String> {
    if !cx.attrs.has("softmax_precision") {
        return Ok(default);
    }
    let p = cx.attrs.dtype("softmax_precision")?;
    if !matches!(p, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
        return Err(format!(
            "`softmax_precision` {p} is not supported (a float type is)"
        ));
    }
    Ok(p)
}

/// The heads of grouped-query attention: `hq` query heads of `q` (`[batch, hq, seq, size]`)
/// share `hk` key/value heads. The `hq / hk` query heads sharing one key/value head are
/// adjacent, so a reshape stacks them along the sequence axis, and each product with K or V
/// is one batched matmul against the shared head, never a copy of it per query head.
#[derive(Clone, Copy)]
pub(super) struct Groups {
    /// The queries, `[batch, hq, seq, size]`: the batch and sequence sizes of the products.
    pub q: ValueId,
    /// Query heads.
    pub hq: usize,
    /// Key/value heads (`hq` is a multiple of them).
    pub hk: usize,
}

impl Groups {
    /// `x` (`[batch, hq, seq, last]`) as `[batch, hk, group * seq, last]`; `x` itself when
    /// each query head has its own key/value head.
    pub(super) fn stacked(
        self,
        b: &mut Builder,
        x: ValueId,
        last: Part,
    ) -> Result<ValueId, String> {
        if self.hq == self.hk {
            return Ok(x);
        }
        let parts = [
            Part::Dim(self.q, 0),
            Part::K(self.hk as i64),
            Part::K(-1),
            last,
        ];
        reshape(b, x, &parts)
    }

    /// `x` (`[batch, hk, group * seq, n]`, a product of stacked rows) as `[batch, hq, seq, n]`.
    pub(super) fn unstacked(self, b: &mut Builder, x: ValueId) -> Result<ValueId, String> {
        if self.hq == self.hk {
            return Ok(x);
        }
        let parts = [
            Part::Dim(self.q, 0),
            Part::K(self.hq as i64),
            Part::Dim(self.q, 2),
            Part::K(-1),
        ];
        reshape(b, x, &parts)
    }
}

/// A known dim of `x`, or an error naming `what`.
fn known_dim(b: &Builder, x: ValueId, axis: usize, what: &str) -> Result<usize, String> {
    b.ty(x).shape.0[axis]
        .known()
        .ok_or_else(|| format!("{what} of unknown size is not supported"))
}

/// A positive count attribute.
fn heads_attr(cx: &NodeCx, name: &str) -> Result<Option<usize>, String> {
    if !cx.attrs.has(name) {
        return Ok(None);
    }
    let h = cx.attrs.int(name)?;
    usize::try_from(h)
        .ok()
        .filter(|&h| h > 0)
        .map(Some)
        .ok_or_else(|| format!("`{name}` {h} is not positive"))
}

/// The size of each head of a `[batch, seq, heads * size]` value, when its last dim is known.
fn head_size(b: &Builder, x: ValueId, heads: usize) -> Result<Option<usize>, String> {
    match b.ty(x).shape.0[2].known() {
        Some(h) if h % heads == 0 => Ok(Some(h / heads)),
        Some(h) => Err(format!(
            "a hidden size of {h} does not split into {heads} heads"
        )),
        None => Ok(None),
    }
}

/// A 3-D `[batch, seq, heads * size]` value as `[batch, seq, heads, size]`.
fn split_heads(b: &mut Builder, x: ValueId, heads: usize) -> Result<ValueId, String> {
    let size = head_size(b, x, heads)?.map_or(-1, |s| s as i64);
    reshape(
        b,
        x,
        &[
            Part::Dim(x, 0),
            Part::Dim(x, 1),
            Part::K(heads as i64),
            Part::K(size),
        ],
    )
}

/// What the optional fourth output of `Attention` holds (`qk_matmul_output_mode`).
#[derive(Clone, Copy, PartialEq)]
enum QkMode {
    Raw,
    Softcapped,
    Biased,
    Softmax,
}

/// `Attention` (23, 24, 25).
fn import_attention(b: &mut Builder, cx: &NodeCx) -> Out {
    let (q, k, v) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let mask = cx.opt(3);
    let (past_k, past_v) = (cx.opt(4), cx.opt(5));
    let nonpad = cx.opt(6);
    let dt = b.dtype(q);
    if !dt.is_float() {
        return Err(format!(
            "Q of dtype {dt} is not supported (float tensors are)"
        ));
    }
    if b.dtype(k) != dt || b.dtype(v) != dt {
        return Err(format!(
            "Q, K and V must share one dtype, got {dt}, {} and {}",
            b.dtype(k),
            b.dtype(v)
        ));
    }
    if past_k.is_some() != past_v.is_some() {
        return Err("`past_key` and `past_value` must be given together".into());
    }
    if cx.wants(1) != cx.wants(2) {
        return Err("`present_key` and `present_value` must be asked for together".into());
    }
    if nonpad.is_some() {
        if cx.opset < 24 {
            return Err(
                "input 6 (`nonpad_kv_seqlen`) is not part of Attention before opset 24".into(),
            );
        }
        if past_k.is_some() || cx.wants(1) {
            return Err(
                "`nonpad_kv_seqlen` cannot be combined with past or present key/value tensors"
                    .into(),
            );
        }
    }
    let window = |name: &str| -> Result<i64, String> {
        if cx.opset < 25 {
            if cx.attrs.has(name) {
                return Err(format!(
                    "attribute `{name}` is not part of Attention before opset 25"
                ));
            }
            return Ok(-1);
        }
        let w = cx.attrs.int_or(name, -1)?;
        if w < -1 {
            return Err(format!("`{name}` {w} must be -1 or non-negative"));
        }
        Ok(w)
    };
    let (left, right) = (window("left_window_size")?, window("right_window_size")?);
    let causal = cx.attrs.int_or("is_causal", 0)? != 0;
    let softcap = cx.attrs.float_or("softcap", 0.0)? as f64;
    let mode = match cx.attrs.int_or("qk_matmul_output_mode", 0)? {
        0 => QkMode::Raw,
        1 => QkMode::Softcapped,
        2 => QkMode::Biased,
        3 => QkMode::Softmax,
        m => return Err(format!("`qk_matmul_output_mode = {m}` is not supported")),
    };
    let precision = softmax_precision(cx, dt)?;

    // Q, K and V as [batch, heads, seq, size].
    let rank = b.rank(q);
    if b.rank(k) != rank || b.rank(v) != rank {
        return Err(format!(
            "Q, K and V must have one rank, got {rank}, {} and {}",
            b.rank(k),
            b.rank(v)
        ));
    }
    let (q4, k4, v4, hq, hk) = match rank {
        3 => {
            let (Some(hq), Some(hk)) = (
                heads_attr(cx, "q_num_heads")?,
                heads_attr(cx, "kv_num_heads")?,
            ) else {
                return Err("3-D Q, K and V need `q_num_heads` and `kv_num_heads`".into());
            };
            let mut to_4d = |x: ValueId, heads: usize| -> Result<ValueId, String> {
                let x4 = split_heads(b, x, heads)?;
                transpose(b, x4, &[0, 2, 1, 3])
            };
            let (q4, k4, v4) = (to_4d(q, hq)?, to_4d(k, hk)?, to_4d(v, hk)?);
            (q4, k4, v4, hq, hk)
        }
        4 => {
            if cx.opset >= 25 && (cx.attrs.has("q_num_heads") || cx.attrs.has("kv_num_heads")) {
                return Err(
                    "`q_num_heads` and `kv_num_heads` must not be given for 4-D inputs".into(),
                );
            }
            let hq = known_dim(b, q, 1, "a head count")?;
            let hk = known_dim(b, k, 1, "a head count")?;
            (q, k, v, hq, hk)
        }
        r => {
            return Err(format!(
                "Q of rank {r} is not supported (3-D and 4-D Q, K and V are)"
            ))
        }
    };
    if hq % hk != 0 {
        return Err(format!(
            "{hq} query heads for {hk} key/value heads is not supported (a multiple is)"
        ));
    }

    // The caches: present = past ++ new along the sequence axis.
    let concat_seq = |b: &mut Builder, past: Option<ValueId>, new: ValueId| match past {
        Some(p) => {
            let axis = b.i64_scalar(2);
            b.op(Op::Concat, &[p, new, axis])
        }
        None => Ok(new),
    };
    let present_k = concat_seq(b, past_k, k4)?;
    let present_v = concat_seq(b, past_v, v4)?;

    // Q and K each scaled by sqrt(scale), as the reference does (it keeps products in range).
    let scale = if cx.attrs.has("scale") {
        cx.attrs.float_or("scale", 1.0)? as f64
    } else {
        // The head size, from Q's last dim (a 3-D Q's split by the head count).
        let d = match rank {
            3 => head_size(b, q, hq)?,
            _ => b.ty(q).shape.0[3].known(),
        }
        .ok_or("a head size of unknown size (with no `scale`) is not supported")?;
        1.0 / (d as f64).sqrt()
    };
    let root = b.scalar(dt, scale.sqrt());
    let qs = bin(b, B::Mul, q4, root)?;
    let ks = bin(b, B::Mul, present_k, root)?;

    // Query heads sharing a key/value head are stacked along the sequence axis.
    let groups = Groups { q: q4, hq, hk };
    let qg = groups.stacked(b, qs, Part::Dim(q4, 3))?;
    let qk = batch_matmul(b, qg, ks, false, true)?;
    let raw = groups.unstacked(b, qk)?;

    let capped = if softcap > 0.0 {
        let c = b.scalar(dt, softcap);
        let t = bin(b, B::Div, raw, c)?;
        let t = b.op(Op::Unary(U::Tanh), &[t])?;
        bin(b, B::Mul, t, c)?
    } else {
        raw
    };

    let masks = Masks {
        mask,
        causal,
        left,
        right,
        nonpad,
        past_k,
    };
    let bias = attention_bias(b, &masks, dt, q4, present_k)?;
    let biased = match bias {
        Some(bias) => bin(b, B::Add, capped, bias)?,
        None => capped,
    };

    let s = cast(b, biased, precision)?;
    let s = b.op(Op::Softmax, &[s])?;
    let mut probs = cast(b, s, dt)?;
    if let Some(bias) = bias {
        probs = zero_masked_rows(b, bias, probs)?;
    }

    let pg = groups.stacked(b, probs, Part::Dim(present_k, 2))?;
    let y = batch_matmul(b, pg, present_v, false, false)?;
    let mut y = groups.unstacked(b, y)?;
    if rank == 3 {
        let t = transpose(b, y, &[0, 2, 1, 3])?;
        y = reshape(b, t, &[Part::Dim(q, 0), Part::Dim(q, 1), Part::K(-1)])?;
    }

    let qk_out = match mode {
        QkMode::Raw => raw,
        QkMode::Softcapped => capped,
        QkMode::Biased => biased,
        QkMode::Softmax => probs,
    };
    Ok(vec![y, present_k, present_v, qk_out])
}

/// What restricts the keys a query attends.
struct Masks {
    mask: Option<ValueId>,
    causal: bool,
    left: i64,
    right: i64,
    nonpad: Option<ValueId>,
    past_k: Option<ValueId>,
}

/// The additive bias (dtype `dt`, broadcasting against `[batch, heads, q_seq, total_seq]`) of
/// every mask, or `None` when nothing is masked.
///
/// A boolean or causal, window or padding restriction contributes 0 where a key is allowed
/// and -inf where not; a float `attn_mask` is added as it is. A mask shorter than the total
/// sequence is padded with -inf (false). The causal and window bounds are offset-aligned:
/// query `i` sits at position `i + offset`, `offset` being the past length, or per batch
/// `nonpad_kv_seqlen - q_seq` for an external cache.
fn attention_bias(
    b: &mut Builder,
    m: &Masks,
    dt: DType,
    q4: ValueId,
    present_k: ValueId,
) -> Result<Option<ValueId>, String> {
    let mut allowed: Option<ValueId> = None;
    let mut additive: Option<ValueId> = None;
    let and = |b: &mut Builder, acc: Option<ValueId>, x: ValueId| match acc {
        Some(a) => bin(b, B::LogicalAnd, a, x),
        None => Ok(x),
    };

    if let Some(mask) = m.mask {
        let r = b.rank(mask);
        if r == 0 {
            return Err("a scalar `attn_mask` is not supported".into());
        }
        let is_bool = b.dtype(mask) == DType::Bool;
        let mask = if is_bool { mask } else { cast(b, mask, dt)? };
        let padded = pad_to_total(b, mask, present_k, is_bool, dt)?;
        if is_bool {
            allowed = Some(padded);
        } else {
            additive = Some(padded);
        }
    }

    if m.causal || m.left >= 0 || m.right >= 0 || m.nonpad.is_some() {
        let total = dim0(b, present_k, 2)?;
        let zero = b.i64_scalar(0);
        let one_ = b.i64_scalar(1);
        // Key positions j as [1, total].
        let cols = b.op(Op::Range, &[zero, total, one_])?;
        let axis0 = b.i64_scalar(0);
        let cols = b.op(Op::ExpandDims, &[cols, axis0])?;
        let nonpad = match m.nonpad {
            Some(n) => {
                let n = cast(b, n, DType::I64)?;
                // [batch] -> [batch, 1, 1, 1]
                Some(reshape(
                    b,
                    n,
                    &[Part::K(-1), Part::K(1), Part::K(1), Part::K(1)],
                )?)
            }
            None => None,
        };
        if m.causal || m.left >= 0 || m.right >= 0 {
            let q_len = dim0(b, q4, 2)?;
            let zero = b.i64_scalar(0);
            let one_ = b.i64_scalar(1);
            let rows = b.op(Op::Range, &[zero, q_len, one_])?;
            let axis1 = b.i64_scalar(1);
            let rows = b.op(Op::ExpandDims, &[rows, axis1])?;
            // The position of each query: [q, 1], or [batch, 1, q, 1] with a per-batch offset.
            let pos = match (m.past_k, nonpad) {
                (Some(pk), _) => {
                    let p = dim0(b, pk, 2)?;
                    bin(b, B::Add, rows, p)?
                }
                (None, Some(n)) => {
                    let q_len = dim0(b, q4, 2)?;
                    let off = bin(b, B::Sub, n, q_len)?;
                    bin(b, B::Add, rows, off)?
                }
                (None, None) => rows,
            };
            // diff = position - key: causal wants diff >= 0, the window
            // -right <= diff <= left.
            let diff = bin(b, B::Sub, pos, cols)?;
            if m.causal {
                let z = b.i64_scalar(0);
                let ok = bin(b, B::GreaterEqual, diff, z)?;
                allowed = Some(and(b, allowed, ok)?);
            }
            if m.left >= 0 {
                let l = b.i64_scalar(m.left);
                let ok = bin(b, B::LessEqual, diff, l)?;
                allowed = Some(and(b, allowed, ok)?);
            }
            if m.right >= 0 {
                let r = b.i64_scalar(-m.right);
                let ok = bin(b, B::GreaterEqual, diff, r)?;
                allowed = Some(and(b, allowed, ok)?);
            }
        }
        if let Some(n) = nonpad {
            // Keys past each batch item's length: [batch, 1, 1, total].
            let ok = bin(b, B::Less, cols, n)?;
            allowed = Some(and(b, allowed, ok)?);
        }
    }

    let from_allowed = match allowed {
        Some(a) => {
            let zero = b.scalar(dt, 0.0);
            let ninf = b.scalar(dt, f64::NEG_INFINITY);
            Some(b.op(Op::Select, &[a, zero, ninf])?)
        }
        None => None,
    };
    Ok(match (from_allowed, additive) {
        (Some(x), Some(y)) => Some(bin(b, B::Add, y, x)?),
        (x, y) => x.or(y),
    })
}

/// `mask` padded along its last axis to the total key count with -inf (false for a boolean
/// mask).
fn pad_to_total(
    b: &mut Builder,
    mask: ValueId,
    present_k: ValueId,
    is_bool: bool,
    dt: DType,
) -> Result<ValueId, String> {
    let r = b.rank(mask);
    let have = b.ty(mask).shape.0[r - 1].known();
    let want = b.ty(present_k).shape.0[2].known();
    let amount = match (have, want) {
        (Some(h), Some(w)) if h == w => return Ok(mask),
        (Some(h), Some(w)) if h > w => {
            return Err(format!(
                "`attn_mask` covers {h} keys, more than the {w} of the key sequence"
            ))
        }
        (Some(h), Some(w)) => b.i64s(&[(w - h) as i64]),
        _ => {
            let w = dim1(b, present_k, 2)?;
            let h = dim1(b, mask, r - 1)?;
            bin(b, B::Sub, w, h)?
        }
    };
    let mut flat = Vec::with_capacity(2 * r + 1);
    for _ in 0..2 * r - 1 {
        flat.push(b.i64s(&[0]));
    }
    flat.push(amount);
    flat.push(b.i64_scalar(0));
    let flat = b.op(Op::Concat, &flat)?;
    let shape = b.i64s(&[r as i64, 2]);
    let pads = b.op(Op::Reshape, &[flat, shape])?;
    let value = if is_bool {
        b.konst(Tensor::scalar(false))
    } else {
        b.scalar(dt, f64::NEG_INFINITY)
    };
    b.op(
        Op::Pad {
            mode: PadMode::Constant,
        },
        &[mask, pads, value],
    )
}

/// `probs` with zeros in each query row whose `bias` row is -inf everywhere (no key
/// allowed), where softmax would give 0/0. Decided on the bias, as the reference does; left
/// out when the bias is a constant with no such row.
fn zero_masked_rows(b: &mut Builder, bias: ValueId, probs: ValueId) -> Result<ValueId, String> {
    let dt = b.dtype(bias);
    let last = b.rank(bias) as i64 - 1;
    let axes = b.i64s(&[last]);
    let row_max = b.op(
        Op::Reduce {
            kind: ReduceKind::Max,
            keep_dims: true,
        },
        &[bias, axes],
    )?;
    let ninf = b.scalar(dt, f64::NEG_INFINITY);
    let dead = bin(b, B::Equal, row_max, ninf)?;
    if let Some(t) = b.const_of(dead) {
        if t.to_f64_vec().iter().all(|&x| x == 0.0) {
            return Ok(probs);
        }
    }
    let zero = b.scalar(b.dtype(probs), 0.0);
    b.op(Op::Select, &[dead, zero, probs])
}

/// `RotaryEmbedding` (23): the first `rotary_embedding_dim` entries of each head (all by
/// default), taken as halves or as even/odd pairs (`interleaved`), rotated by the cached
/// cosines and sines of each token's position. Works in the input's own layout: a 4-D input
/// is `[batch, heads, seq, size]`, a 3-D one is split into `[batch, seq, heads, size]`, and
/// the caches get a unit heads axis to match.
fn import_rotary(b: &mut Builder, cx: &NodeCx) -> Out {
    let (x, cos, sin) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let positions = cx.opt(3);
    let interleaved = cx.attrs.int_or("interleaved", 0)? != 0;
    let (x4, heads_axis, size) = match b.rank(x) {
        4 => (x, 1, b.ty(x).shape.0[3].known()),
        3 => {
            let h = heads_attr(cx, "num_heads")?.ok_or("a 3-D input needs `num_heads`")?;
            (split_heads(b, x, h)?, 2, head_size(b, x, h)?)
        }
        r => {
            return Err(format!(
                "an input of rank {r} is not supported (3-D and 4-D are)"
            ))
        }
    };
    let size =
        size.ok_or("an input whose head size is not known while importing is not supported")?;
    let rot = match cx.attrs.int_or("rotary_embedding_dim", 0)? {
        0 => size,
        d if d > 0 && d as usize <= size && d % 2 == 0 => d as usize,
        d => {
            return Err(format!(
                "`rotary_embedding_dim` {d} must be even, positive and at most the head size {size}"
            ))
        }
    };
    if rot % 2 != 0 {
        return Err(format!("the rotated size {rot} must be even"));
    }
    let half = rot / 2;
    // The caches as [batch, seq, half], then with a unit heads axis.
    let table = |b: &mut Builder, c: ValueId| -> Result<ValueId, String> {
        let c = match positions {
            Some(p) => {
                let axis = b.i64_scalar(0);
                b.op(Op::Gather { batch_dims: 0 }, &[c, p, axis])?
            }
            None => c,
        };
        if b.rank(c) != 3 {
            return Err(format!(
                "the cos/sin caches must be [batch, seq, {half}] (or [positions, {half}] with \
                 `position_ids`), got {}",
                b.ty(c)
            ));
        }
        if let Some(d) = b.ty(c).shape.0[2].known() {
            if d != half {
                return Err(format!(
                    "the cos/sin caches hold {d} values per position, not half the rotated size \
                     ({half})"
                ));
            }
        }
        let axis = b.i64_scalar(heads_axis);
        b.op(Op::ExpandDims, &[c, axis])
    };
    let cos = table(b, cos)?;
    let sin = table(b, sin)?;
    let take = |b: &mut Builder, idx: Vec<i64>| -> Result<ValueId, String> {
        let idx = b.i64s(&idx);
        let axis = b.i64_scalar(3);
        b.op(Op::Gather { batch_dims: 0 }, &[x4, idx, axis])
    };
    let slice_last = |b: &mut Builder, from: usize, len: usize| -> Result<ValueId, String> {
        let begin = b.i64s(&[0, 0, 0, from as i64]);
        let size = b.i64s(&[-1, -1, -1, len as i64]);
        b.op(Op::Slice, &[x4, begin, size])
    };
    let (x1, x2) = if interleaved {
        let even = (0..half as i64).map(|i| 2 * i).collect();
        let odd = (0..half as i64).map(|i| 2 * i + 1).collect();
        (take(b, even)?, take(b, odd)?)
    } else {
        (slice_last(b, 0, half)?, slice_last(b, half, half)?)
    };
    let c1 = bin(b, B::Mul, cos, x1)?;
    let s2 = bin(b, B::Mul, sin, x2)?;
    let real = bin(b, B::Sub, c1, s2)?;
    let s1 = bin(b, B::Mul, sin, x1)?;
    let c2 = bin(b, B::Mul, cos, x2)?;
    let imag = bin(b, B::Add, s1, c2)?;
    let mut parts = vec![real, imag];
    if rot < size {
        parts.push(slice_last(b, rot, size - rot)?);
    }
    parts.push(b.i64_scalar(3));
    let mut y = b.op(Op::Concat, &parts)?;
    if interleaved {
        // [real..., imag..., rest...] -> [real0, imag0, real1, imag1, ..., rest...].
        let h = half as i64;
        let perm: Vec<i64> = (0..h)
            .flat_map(|i| [i, h + i])
            .chain(rot as i64..size as i64)
            .collect();
        let perm = b.i64s(&perm);
        let axis = b.i64_scalar(3);
        y = b.op(Op::Gather { batch_dims: 0 }, &[y, perm, axis])?;
    }
    if b.rank(x) == 3 {
        y = reshape(b, y, &[Part::Dim(x, 0), Part::Dim(x, 1), Part::K(-1)])?;
    }
    one(y)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::import::onnx::{import_model, tensor};
    use lathe_ir::Graph;
    use lathe_proto::onnx::{
        attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto,
        NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };

    /// An attribute: an int, a float, a string, a list of ints or of floats.
    pub(crate) enum A<'a> {
        I(i64),
        F(f32),
        S(&'a str),
        Is(&'a [i64]),
        Fs(&'a [f32]),
    }

    /// A model of one node `op` at `opset`: `inputs` are graph inputs (their tensors give
    /// their types), `consts` initializers; `node_inputs` names the node's inputs (`""` for
    /// an omitted one) and `outputs` its outputs.
    pub(crate) fn one_node(
        opset: i64,
        op: &str,
        inputs: &[(&str, &Tensor)],
        consts: &[(&str, &Tensor)],
        attrs: &[(&str, A)],
        node_inputs: &[&str],
        outputs: &[&str],
    ) -> Result<Graph, String> {
        let node = (opset, op, attrs, node_inputs, outputs);
        one_node_bound(node, inputs, consts, &[]).map_err(|e| e.to_string())
    }

    /// [`one_node`] (opset, op, attributes, node inputs and outputs as `node`) imported with
    /// graph inputs bound to values.
    #[allow(clippy::type_complexity)]
    pub(crate) fn one_node_bound(
        (opset, op, attrs, node_inputs, outputs): (i64, &str, &[(&str, A)], &[&str], &[&str]),
        inputs: &[(&str, &Tensor)],
        consts: &[(&str, &Tensor)],
        bound: &[(String, Tensor)],
    ) -> Result<Graph, crate::import::ImportError> {
        use lathe_proto::onnx::tensor_shape_proto::{dimension::Value, Dimension};
        let value_info = |name: &str, t: &Tensor| ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(tensor::onnx_dtype(t.dtype())),
                    shape: Some(TensorShapeProto {
                        dim: t
                            .shape()
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(Value::DimValue(d as i64)),
                                denotation: None,
                            })
                            .collect(),
                    }),
                })),
                denotation: None,
            }),
            ..Default::default()
        };
        let attribute = attrs
            .iter()
            .map(|(name, a)| {
                let mut p = AttributeProto {
                    name: Some(name.to_string()),
                    ..Default::default()
                };
                let ty = match a {
                    A::I(i) => {
                        p.i = Some(*i);
                        AttributeType::Int
                    }
                    A::F(f) => {
                        p.f = Some(*f);
                        AttributeType::Float
                    }
                    A::S(s) => {
                        p.s = Some(s.as_bytes().to_vec());
                        AttributeType::String
                    }
                    A::Is(v) => {
                        p.ints = v.to_vec();
                        AttributeType::Ints
                    }
                    A::Fs(v) => {
                        p.floats = v.to_vec();
                        AttributeType::Floats
                    }
                };
                p.r#type = Some(ty as i32);
                p
            })
            .collect();
        let model = ModelProto {
            ir_version: Some(9),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(GraphProto {
                name: Some("g".into()),
                node: vec![NodeProto {
                    input: node_inputs.iter().map(|s| s.to_string()).collect(),
                    output: outputs.iter().map(|s| s.to_string()).collect(),
                    name: Some("n".into()),
                    op_type: Some(op.into()),
                    attribute,
                    ..Default::default()
                }],
                initializer: consts.iter().map(|(n, t)| tensor::to_proto(t, n)).collect(),
                input: inputs.iter().map(|(n, t)| value_info(n, t)).collect(),
                output: outputs
                    .iter()
                    .filter(|o| !o.is_empty())
                    .map(|o| ValueInfoProto {
                        name: Some(o.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        import_model(&model, std::path::Path::new("test.onnx"), &[], bound)
    }

    /// Runs a one-node model on the interpreter.
    pub(crate) fn run(g: &Graph, inputs: &[&Tensor]) -> Vec<Tensor> {
        lathe_ir::interp::run(g, inputs).expect("the model runs")
    }

    /// `n` deterministic values in [-1, 1].
    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 + 1.0) * (seed as f32 * 0.618 + 0.37)).sin())
            .collect()
    }

    fn assert_close(got: &Tensor, want: &[f64], what: &str) {
        let got = got.to_f64_vec();
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}[{i}]: {g} instead of {w}"
            );
        }
    }

    /// Attention written out naively in f64: `q` is `[b, hq, s, d]`, `k` and `v` the whole
    /// key and value sequences `[b, hk, t, d]` and `[b, hk, t, dv]`; `allowed(b, h, i, j)`
    /// says whether query `i` sees key `j`. A row with no key allowed is zeros.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        [b, hq, s, d]: [usize; 4],
        [hk, t, dv]: [usize; 3],
        scale: f64,
        softcap: f64,
        allowed: impl Fn(usize, usize, usize, usize) -> bool,
    ) -> Vec<f64> {
        let mut y = vec![0.0; b * hq * s * dv];
        for bi in 0..b {
            for h in 0..hq {
                let g = h / (hq / hk);
                for i in 0..s {
                    let mut scores = vec![f64::NEG_INFINITY; t];
                    for (j, sc) in scores.iter_mut().enumerate() {
                        let mut dot = 0.0;
                        for e in 0..d {
                            let qv = q[((bi * hq + h) * s + i) * d + e] as f64;
                            let kv = k[((bi * hk + g) * t + j) * d + e] as f64;
                            dot += qv * kv;
                        }
                        let mut x = dot * scale;
                        if softcap > 0.0 {
                            x = softcap * (x / softcap).tanh();
                        }
                        if allowed(bi, h, i, j) {
                            *sc = x;
                        }
                    }
                    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if m == f64::NEG_INFINITY {
                        continue;
                    }
                    let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for o in 0..dv {
                        y[((bi * hq + h) * s + i) * dv + o] = (0..t)
                            .map(|j| e[j] / sum * v[((bi * hk + g) * t + j) * dv + o] as f64)
                            .sum();
                    }
                }
            }
        }
        y
    }

    fn t4(dims: [usize; 4], seed: u32) -> (Vec<f32>, Tensor) {
        let v = values(dims.iter().product(), seed);
        (v.clone(), Tensor::from_vec(&dims, v))
    }

    /// Grouped-query heads, a past cache, causal masking offset by the past length and a
    /// boolean mask one key short (padded with false).
    #[test]
    fn gqa_with_past_causal_and_short_bool_mask() {
        let (b, hq, hk, s, p, n, d, dv) = (1, 4, 2, 2, 2, 3, 3, 2);
        let t = p + n;
        let (qv, q) = t4([b, hq, s, d], 1);
        let (kv, k) = t4([b, hk, n, d], 2);
        let (vv, v) = t4([b, hk, n, dv], 3);
        let (pkv, pk) = t4([b, hk, p, d], 4);
        let (pvv, pv) = t4([b, hk, p, dv], 5);
        let mask_vals = vec![true, false, true, true, true, true, false, true];
        let mask = Tensor::from_vec(&[s, t - 1], mask_vals.clone());
        let g = one_node(
            24,
            "Attention",
            &[
                ("q", &q),
                ("k", &k),
                ("v", &v),
                ("m", &mask),
                ("pk", &pk),
                ("pv", &pv),
            ],
            &[],
            &[("is_causal", A::I(1))],
            &["q", "k", "v", "m", "pk", "pv"],
            &["y", "present_key", "present_value"],
        )
        .unwrap();
        let out = run(&g, &[&q, &k, &v, &mask, &pk, &pv]);
        // The whole sequences: past then new, per head.
        let cat = |past: &[f32], new: &[f32], w: usize| -> Vec<f32> {
            (0..hk)
                .flat_map(|h| {
                    let a = &past[h * p * w..(h + 1) * p * w];
                    let c = &new[h * n * w..(h + 1) * n * w];
                    a.iter().chain(c).copied().collect::<Vec<_>>()
                })
                .collect()
        };
        let (k_all, v_all) = (cat(&pkv, &kv, d), cat(&pvv, &vv, dv));
        let want = naive(
            &qv,
            &k_all,
            &v_all,
            [b, hq, s, d],
            [hk, t, dv],
            1.0 / (d as f64).sqrt(),
            0.0,
            |_, _, i, j| j <= i + p && j < t - 1 && mask_vals[i * (t - 1) + j],
        );
        assert_close(&out[0], &want, "Y");
        let as_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        assert_close(&out[1], &as_f64(&k_all), "present_key");
        assert_close(&out[2], &as_f64(&v_all), "present_value");
    }

    /// `nonpad_kv_seqlen` (24): causal masking aligned to each item's own length, keys past
    /// it masked; an item shorter than the queries has leading rows with no key: zeros.
    #[test]
    fn nonpad_lengths_align_causal_per_batch() {
        let (b, h, s, t, d) = (2, 1, 3, 4, 2);
        let (qv, q) = t4([b, h, s, d], 6);
        let (kv, k) = t4([b, h, t, d], 7);
        let (vv, v) = t4([b, h, t, d], 8);
        let lens = Tensor::from_vec(&[2], vec![4i64, 2]);
        let g = one_node(
            24,
            "Attention",
            &[("q", &q), ("k", &k), ("v", &v), ("n", &lens)],
            &[],
            &[("is_causal", A::I(1)), ("scale", A::F(0.5))],
            &["q", "k", "v", "", "", "", "n"],
            &["y"],
        )
        .unwrap();
        let out = run(&g, &[&q, &k, &v, &lens]);
        let len = [4i64, 2];
        let want = naive(
            &qv,
            &kv,
            &vv,
            [b, h, s, d],
            [h, t, d],
            0.5,
            0.0,
            |bi, _, i, j| (j as i64) <= i as i64 + len[bi] - s as i64 && (j as i64) < len[bi],
        );
        // Item 1, query 0: offset -1, no key.
        assert!(want[(s * d)..(s * d + d)].iter().all(|&x| x == 0.0));
        assert_close(&out[0], &want, "Y");
        // Before opset 24 the input does not exist.
        let err = one_node(
            23,
            "Attention",
            &[("q", &q), ("k", &k), ("v", &v), ("n", &lens)],
            &[],
            &[],
            &["q", "k", "v", "", "", "", "n"],
            &["y"],
        )
        .unwrap_err();
        assert!(
            err.contains("not part of Attention before opset 24"),
            "{err}"
        );
    }

    /// 3-D inputs split into heads, a sliding window (25) and softcap, with the softcapped
    /// scores as the fourth output.
    #[test]
    fn three_d_window_softcap_and_scores() {
        let (b, hq, hk, s, t, d) = (1, 2, 1, 3, 4, 2);
        let q3 = values(b * s * hq * d, 9);
        let k3 = values(b * t * hk * d, 10);
        let v3 = values(b * t * hk * d, 11);
        let q = Tensor::from_vec(&[b, s, hq * d], q3.clone());
        let k = Tensor::from_vec(&[b, t, hk * d], k3.clone());
        let v = Tensor::from_vec(&[b, t, hk * d], v3.clone());
        let g = one_node(
            25,
            "Attention",
            &[("q", &q), ("k", &k), ("v", &v)],
            &[],
            &[
                ("q_num_heads", A::I(hq as i64)),
                ("kv_num_heads", A::I(hk as i64)),
                ("left_window_size", A::I(1)),
                ("right_window_size", A::I(0)),
                ("softcap", A::F(0.25)),
                ("qk_matmul_output_mode", A::I(1)),
            ],
            &["q", "k", "v"],
            &["y", "", "", "qk"],
        )
        .unwrap();
        let out = run(&g, &[&q, &k, &v]);
        // [b, s, h * d] -> [b, h, s, d]
        let heads = |x: &[f32], h: usize, n: usize| -> Vec<f32> {
            let mut y = vec![0.0; x.len()];
            for hi in 0..h {
                for i in 0..n {
                    for e in 0..d {
                        y[(hi * n + i) * d + e] = x[(i * h + hi) * d + e];
                    }
                }
            }
            y
        };
        let (q4, k4, v4) = (heads(&q3, hq, s), heads(&k3, hk, t), heads(&v3, hk, t));
        let scale = 1.0 / (d as f64).sqrt();
        let y4 = naive(
            &q4,
            &k4,
            &v4,
            [b, hq, s, d],
            [hk, t, d],
            scale,
            0.25,
            |_, _, i, j| {
                let diff = i as i64 - j as i64;
                (0..=1).contains(&diff)
            },
        );
        let mut want = vec![0.0; y4.len()];
        for h in 0..hq {
            for i in 0..s {
                for e in 0..d {
                    want[(i * hq + h) * d + e] = y4[(h * s + i) * d + e];
                }
            }
        }
        assert_close(&out[0], &want, "Y");
        let qk = out[1].to_f64_vec();
        assert_eq!(out[1].shape(), &[b, hq, s, t]);
        for h in 0..hq {
            for i in 0..s {
                for j in 0..t {
                    let dot: f64 = (0..d)
                        .map(|e| q4[(h * s + i) * d + e] as f64 * k4[j * d + e] as f64)
                        .sum();
                    let w = 0.25 * (dot * scale / 0.25).tanh();
                    let g = qk[(h * s + i) * t + j];
                    assert!((g - w).abs() < 1e-5, "qk[{h},{i},{j}]: {g} instead of {w}");
                }
            }
        }
    }

    /// RotaryEmbedding on a 3-D input, interleaved pairs, a partial rotation and position ids,
    /// against the rotation written out.
    #[test]
    fn rotary_interleaved_partial_3d() {
        let (b, s, h, d, rot, positions) = (2, 3, 2, 6, 4, 5);
        let x = values(b * s * h * d, 12);
        let cos = values(positions * rot / 2, 13);
        let sin = values(positions * rot / 2, 14);
        let pos: Vec<i64> = vec![4, 0, 2, 1, 1, 3];
        let xt = Tensor::from_vec(&[b, s, h * d], x.clone());
        let ct = Tensor::from_vec(&[positions, rot / 2], cos.clone());
        let st = Tensor::from_vec(&[positions, rot / 2], sin.clone());
        let pt = Tensor::from_vec(&[b, s], pos.clone());
        let g = one_node(
            23,
            "RotaryEmbedding",
            &[("x", &xt), ("p", &pt)],
            &[("c", &ct), ("s", &st)],
            &[
                ("interleaved", A::I(1)),
                ("rotary_embedding_dim", A::I(rot as i64)),
                ("num_heads", A::I(h as i64)),
            ],
            &["x", "c", "s", "p"],
            &["y"],
        )
        .unwrap();
        let out = run(&g, &[&xt, &pt]);
        let mut want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for bi in 0..b {
            for si in 0..s {
                let p = pos[bi * s + si] as usize;
                for hi in 0..h {
                    let base = ((bi * s + si) * h + hi) * d;
                    for i in 0..rot / 2 {
                        let (c, sn) = (cos[p * rot / 2 + i] as f64, sin[p * rot / 2 + i] as f64);
                        let (x1, x2) = (x[base + 2 * i] as f64, x[base + 2 * i + 1] as f64);
                        want[base + 2 * i] = c * x1 - sn * x2;
                        want[base + 2 * i + 1] = sn * x1 + c * x2;
                    }
                }
            }
        }
        assert_close(&out[0], &want, "Y");
    }

    /// Halves (not interleaved) on a 4-D input with per-token caches.
    #[test]
    fn rotary_halves_4d() {
        let (b, h, s, d) = (1, 2, 2, 4);
        let x = values(b * h * s * d, 15);
        let cos = values(b * s * d / 2, 16);
        let sin = values(b * s * d / 2, 17);
        let xt = Tensor::from_vec(&[b, h, s, d], x.clone());
        let ct = Tensor::from_vec(&[b, s, d / 2], cos.clone());
        let st = Tensor::from_vec(&[b, s, d / 2], sin.clone());
        let g = one_node(
            23,
            "RotaryEmbedding",
            &[("x", &xt), ("c", &ct), ("s", &st)],
            &[],
            &[],
            &["x", "c", "s"],
            &["y"],
        )
        .unwrap();
        let out = run(&g, &[&xt, &ct, &st]);
        let mut want = vec![0.0; x.len()];
        for hi in 0..h {
            for si in 0..s {
                let base = (hi * s + si) * d;
                for i in 0..d / 2 {
                    let (c, sn) = (cos[si * d / 2 + i] as f64, sin[si * d / 2 + i] as f64);
                    let (x1, x2) = (x[base + i] as f64, x[base + d / 2 + i] as f64);
                    want[base + i] = c * x1 - sn * x2;
                    want[base + d / 2 + i] = sn * x1 + c * x2;
                }
            }
        }
        assert_close(&out[0], &want, "Y");
    }
}
