//! ONNX recurrent layers (`LSTM`, `GRU`, `RNN`) as `while` loops over the time steps.
//!
//! Each direction is one loop (`control_flow::LoopBody`) carrying the step `t`, the hidden
//! state `H` (and LSTM's cell state `C`) and a list of the outputs `Y`. Its body reads row `t`
//! of `X` (row `T - 1 - t` in reverse) and computes the gates with the IR's own ops, the
//! equations of the ONNX operator reference: `X_t · Wᵀ + b` and `H · Rᵀ` as matmuls with
//! transposed weights, a slice per gate, the activations and the state update. A constant `W`
//! is a constant in the body, so `hoist-input-projections` computes `X · Wᵀ` for every step as
//! one GEMM before the loop. One direction's weights, biases and initial states are taken out
//! of the stacked tensors before the loop (while importing, when they are constants).
//!
//! Supported: forward, reverse and bidirectional layers, layout 0 and 1, `clip`, LSTM
//! peepholes, GRU's `linear_before_reset`, the activations Sigmoid, Tanh and Relu, and
//! `sequence_lens` when it is a constant equal to the sequence length everywhere, or in the
//! forward direction (each sequence's state stops at its end; later outputs are zeros). Refused
//! with an error: other activations, LSTM's `input_forget`, and shorter sequences in reverse.

use super::{row, OnnxOp};
use crate::import::onnx::control_flow::{dim0, node_name, reserve, LoopBody};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, UnaryOp as U};
use lathe_ir::{DType, Dim, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

/// The IR ops the recurrent rows import to.
const IR_OPS: &[&str] = &[
    "while",
    "matmul",
    "add",
    "sub",
    "mul",
    "sigmoid",
    "tanh",
    "relu",
    "slice",
    "gather",
    "list_reserve",
    "set_item",
    "expand_dims",
    "pack",
    "transpose",
    "select",
    "less",
    "maximum",
    "minimum",
    "fill",
];

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("LSTM", IR_OPS, |b, cx| recurrent(b, cx, Cell::Lstm)),
        row("GRU", IR_OPS, |b, cx| recurrent(b, cx, Cell::Gru)),
        row("RNN", IR_OPS, |b, cx| recurrent(b, cx, Cell::Rnn)),
    ]
}

/// The kind of recurrent cell.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cell {
    Lstm,
    Gru,
    Rnn,
}

impl Cell {
    /// Gates stacked in `W` and `R` (LSTM `iofc`, GRU `zrh`, RNN one).
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }

    /// The activations of one direction when the node names none.
    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Rnn => &["Tanh"],
        }
    }
}

/// An activation function of a recurrent layer.
#[derive(Clone, Copy, Debug)]
enum Act {
    Sigmoid,
    Tanh,
    Relu,
}

impl Act {
    fn parse(name: &str) -> Result<Act, String> {
        match name.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(Act::Sigmoid),
            "tanh" => Ok(Act::Tanh),
            "relu" => Ok(Act::Relu),
            _ => Err(format!(
                "activation `{name}` is not supported (Sigmoid, Tanh and Relu are)"
            )),
        }
    }

    fn apply(self, b: &mut Builder, x: ValueId) -> Result<ValueId, String> {
        let op = match self {
            Act::Sigmoid => U::Sigmoid,
            Act::Tanh => U::Tanh,
            Act::Relu => U::Relu,
        };
        b.op(Op::Unary(op), &[x])
    }
}

/// What every direction of one layer shares.
struct Layer {
    cell: Cell,
    hidden: usize,
    clip: Option<f64>,
    /// GRU's `linear_before_reset`.
    linear_before_reset: bool,
}

/// One direction's weights and initial state, values of the enclosing graph.
struct Direction {
    reverse: bool,
    /// `f`, `g`, `h` (as many as the cell uses).
    acts: Vec<Act>,
    /// `[G·h, input]`.
    w: ValueId,
    /// `[G·h, h]`; for GRU without `linear_before_reset`, the `z` and `r` rows only.
    r: ValueId,
    /// GRU without `linear_before_reset`: the `h` rows of `R`.
    r_h: Option<ValueId>,
    /// `[G·h]`, added to `X_t · Wᵀ` (both biases, but GRU's `Rbh` with `linear_before_reset`).
    bias: Option<ValueId>,
    /// GRU with `linear_before_reset`: `Rbh`.
    rb_h: Option<ValueId>,
    /// LSTM peepholes `i`, `o`, `f`.
    peep: Option<[ValueId; 3]>,
    h0: ValueId,
    c0: Option<ValueId>,
}

fn recurrent(b: &mut Builder, cx: &NodeCx, cell: Cell) -> Out {
    let a = cx.attrs;
    let hidden = a.int("hidden_size")?;
    let hidden = usize::try_from(hidden)
        .ok()
        .filter(|&h| h > 0)
        .ok_or_else(|| format!("hidden_size is {hidden}, not a positive size"))?;
    let direction = a.str_or("direction", "forward")?;
    let reverse: &[bool] = match direction.as_str() {
        "forward" => &[false],
        "reverse" => &[true],
        "bidirectional" => &[false, true],
        d => {
            return Err(format!(
                "direction `{d}` is not forward, reverse or bidirectional"
            ))
        }
    };
    let nd = reverse.len();
    let layout = a.int_or("layout", 0)?;
    if !matches!(layout, 0 | 1) {
        return Err(format!("layout {layout} is not 0 or 1"));
    }
    let clip = match a.get("clip") {
        None => None,
        Some(_) => {
            let c = a.float_or("clip", 0.0)?;
            if c.is_nan() || c <= 0.0 {
                return Err(format!("clip is {c}, not a positive threshold"));
            }
            Some(c as f64)
        }
    };
    if cell == Cell::Lstm && a.int_or("input_forget", 0)? != 0 {
        return Err("input_forget = 1 (coupled input and forget gates) is not supported".into());
    }
    let layer = Layer {
        cell,
        hidden,
        clip,
        linear_before_reset: cell == Cell::Gru && a.int_or("linear_before_reset", 0)? != 0,
    };
    let acts = activations(cx, cell, nd)?;

    let mut x = cx.input(0)?;
    if b.rank(x) != 3 {
        return Err(format!("X must have rank 3, got {}", b.ty(x)));
    }
    if !b.dtype(x).is_float() {
        return Err(format!("X must be floating point, got {}", b.ty(x)));
    }
    if layout == 1 {
        x = transpose(b, x, &[1, 0, 2])?;
    }
    let (w, r) = (cx.input(1)?, cx.input(2)?);
    let g = cell.gates();
    check_dims(b, w, "W", &[Some(nd), Some(g * hidden), None])?;
    check_dims(b, r, "R", &[Some(nd), Some(g * hidden), Some(hidden)])?;
    let bias = cx.opt(3);
    if let Some(bv) = bias {
        check_dims(b, bv, "B", &[Some(nd), Some(2 * g * hidden)])?;
    }
    let state_axis = if layout == 0 { 0 } else { 1 };
    let (h0, c0) = (cx.opt(5), cx.opt(6).filter(|_| cell == Cell::Lstm));
    let peep = cx.opt(7).filter(|_| cell == Cell::Lstm);
    if let Some(p) = peep {
        check_dims(b, p, "P", &[Some(nd), Some(3 * hidden)])?;
    }
    let steps = dim0(b, x)?;
    let lens = sequence_lens(b, cx.opt(4), x, reverse)?;

    let mut ys = Vec::with_capacity(nd);
    let mut hs = Vec::with_capacity(nd);
    let mut cs = Vec::with_capacity(nd);
    for (d, &rev) in reverse.iter().enumerate() {
        let h = hidden as i64;
        let wd = take(b, w, d, 0)?;
        let rd = take(b, r, d, 0)?;
        let (r, r_h) = if cell == Cell::Gru && !layer.linear_before_reset {
            (
                slice_rows(b, rd, 0, 2 * h)?,
                Some(slice_rows(b, rd, 2 * h, h)?),
            )
        } else {
            (rd, None)
        };
        let (bias, rb_h) = match bias {
            None => (None, None),
            Some(bv) => {
                let bd = take(b, bv, d, 0)?;
                let gh = g as i64 * h;
                let wb = slice_rows(b, bd, 0, gh)?;
                let rb = slice_rows(b, bd, gh, gh)?;
                if layer.linear_before_reset {
                    // `Rbh` is added inside `r ⊙ (H · Rhᵀ + Rbh)`.
                    let zr = slice_rows(b, rb, 0, 2 * h)?;
                    let wb_zr = slice_rows(b, wb, 0, 2 * h)?;
                    let zr = eager(b, Op::Binary(B::Add), &[wb_zr, zr])?;
                    let wb_h = slice_rows(b, wb, 2 * h, h)?;
                    let axis = b.i64_scalar(0);
                    let both = eager(b, Op::Concat, &[zr, wb_h, axis])?;
                    (Some(both), Some(slice_rows(b, rb, 2 * h, h)?))
                } else {
                    (Some(eager(b, Op::Binary(B::Add), &[wb, rb])?), None)
                }
            }
        };
        let peep = match peep {
            None => None,
            Some(p) => {
                let pd = take(b, p, d, 0)?;
                Some([
                    slice_rows(b, pd, 0, h)?,
                    slice_rows(b, pd, h, h)?,
                    slice_rows(b, pd, 2 * h, h)?,
                ])
            }
        };
        let h0d = match h0 {
            Some(h0) => take(b, h0, d, state_axis)?,
            None => zeros(b, x, hidden)?,
        };
        let c0d = match (cell, c0) {
            (Cell::Lstm, Some(c0)) => Some(take(b, c0, d, state_axis)?),
            (Cell::Lstm, None) => Some(zeros(b, x, hidden)?),
            _ => None,
        };
        let dir = Direction {
            reverse: rev,
            acts: acts[d].clone(),
            w: wd,
            r,
            r_h,
            bias,
            rb_h,
            peep,
            h0: h0d,
            c0: c0d,
        };
        let tag = if rev { "reverse" } else { "forward" };
        let (y, hl, cl) = direction_loop(b, &layer, &dir, x, steps, lens, cx.wants(0), tag)?;
        ys.extend(y);
        hs.push(hl);
        cs.extend(cl);
    }

    // Y: [T, nd, batch, h]; Y_h, Y_c: [nd, batch, h] (layout 1: batch first).
    let stack = |b: &mut Builder, vs: &[ValueId], axis: i64| -> Result<ValueId, String> {
        if let [v] = vs {
            let a = b.i64_scalar(axis);
            b.op(Op::ExpandDims, &[*v, a])
        } else {
            b.op(Op::Pack { axis }, vs)
        }
    };
    let mut y_h = stack(b, &hs, 0)?;
    if layout == 1 {
        y_h = transpose(b, y_h, &[1, 0, 2])?;
    }
    // An output the node does not name is never bound; Y_h stands in for it.
    let y = if ys.is_empty() {
        y_h
    } else {
        let y = stack(b, &ys, 1)?;
        if layout == 1 {
            transpose(b, y, &[2, 0, 1, 3])?
        } else {
            y
        }
    };
    let mut outs = vec![y, y_h];
    if cell == Cell::Lstm {
        let mut y_c = stack(b, &cs, 0)?;
        if layout == 1 {
            y_c = transpose(b, y_c, &[1, 0, 2])?;
        }
        outs.push(y_c);
    }
    Ok(outs)
}

/// The activations of each direction: the node's, or the defaults.
fn activations(cx: &NodeCx, cell: Cell, nd: usize) -> Result<Vec<Vec<Act>>, String> {
    let per = cell.default_activations().len();
    let names: Vec<String> = match cx.attrs.get("activations") {
        None => cell
            .default_activations()
            .iter()
            .cycle()
            .take(per * nd)
            .map(|s| s.to_string())
            .collect(),
        Some(a) => a
            .strings
            .iter()
            .map(|s| {
                String::from_utf8(s.clone()).map_err(|_| "an activation is not UTF-8".to_string())
            })
            .collect::<Result<_, _>>()?,
    };
    let names: Vec<String> = if names.len() == per && nd == 2 {
        names.iter().chain(&names).cloned().collect()
    } else {
        names
    };
    if names.len() != per * nd {
        return Err(format!(
            "`activations` names {} functions; {} with {nd} direction(s) takes {}",
            names.len(),
            cx.op,
            per * nd
        ));
    }
    let acts = names
        .iter()
        .map(|n| Act::parse(n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(acts.chunks(per).map(<[Act]>::to_vec).collect())
}

/// The `sequence_lens` the loops must honour: `None` when absent or equal to the sequence
/// length everywhere; the value when every direction is forward; an error otherwise.
fn sequence_lens(
    b: &Builder,
    lens: Option<ValueId>,
    x: ValueId,
    reverse: &[bool],
) -> Result<Option<ValueId>, String> {
    let Some(lens) = lens else { return Ok(None) };
    if !b.dtype(lens).is_int() || b.rank(lens) != 1 {
        return Err(format!(
            "sequence_lens must be a rank-1 integer tensor, got {}",
            b.ty(lens)
        ));
    }
    let steps = b.ty(x).shape.dims()[0].known();
    let full = match (b.const_of(lens), steps) {
        (Some(t), Some(steps)) => t.to_i64_vec()?.iter().all(|&l| l == steps as i64),
        _ => false,
    };
    if full {
        return Ok(None);
    }
    if reverse.iter().any(|&r| r) {
        return Err(
            "sequence_lens that may be shorter than the sequence is supported only in the \
             forward direction"
                .into(),
        );
    }
    Ok(Some(lens))
}

/// Checks the known dims of `v` against `want` (`None`: any).
fn check_dims(b: &Builder, v: ValueId, what: &str, want: &[Option<usize>]) -> Result<(), String> {
    let ty = b.ty(v);
    let ok = ty.rank() == want.len()
        && ty.shape.dims().iter().zip(want).all(|(d, w)| match (d, w) {
            (Dim::Known(d), Some(w)) => d == w,
            _ => true,
        });
    if ok {
        return Ok(());
    }
    let want: Vec<String> = want
        .iter()
        .map(|w| w.map_or("?".to_string(), |w| w.to_string()))
        .collect();
    Err(format!("{what} is {ty}, not [{}]", want.join(",")))
}

/// `op` on `inputs`, computed now when they are all constants whatever their size (used for
/// ops whose result is no larger than their inputs: the weights are in memory already).
fn eager(b: &mut Builder, op: Op, inputs: &[ValueId]) -> Result<ValueId, String> {
    let evaluated = {
        let consts: Option<Vec<&Tensor>> = inputs.iter().map(|&v| b.const_of(v)).collect();
        consts.map(|ts| op.eval(&ts))
    };
    match evaluated {
        Some(Ok(mut out)) if out.len() == 1 => {
            let t = out.remove(0).into_standard_layout();
            Ok(b.konst(t))
        }
        _ => b.op(op, inputs),
    }
}

/// Entry `d` of `v` along `axis` (one direction of a stacked tensor).
fn take(b: &mut Builder, v: ValueId, d: usize, axis: i64) -> Result<ValueId, String> {
    let (index, axis) = (b.i64_scalar(d as i64), b.i64_scalar(axis));
    eager(b, Op::Gather { batch_dims: 0 }, &[v, index, axis])
}

/// Rows `start..start + len` of `v` along axis 0.
fn slice_rows(b: &mut Builder, v: ValueId, start: i64, len: i64) -> Result<ValueId, String> {
    let rank = b.rank(v);
    let mut begin = vec![0; rank];
    let mut size = vec![-1; rank];
    begin[0] = start;
    size[0] = len;
    let (begin, size) = (b.i64s(&begin), b.i64s(&size));
    eager(b, Op::Slice, &[v, begin, size])
}

/// Columns `k·h..(k + 1)·h` of a `[batch, G·h]` value: gate `k`.
fn gate(b: &mut Builder, v: ValueId, k: usize, h: usize) -> Result<ValueId, String> {
    let begin = b.i64s(&[0, (k * h) as i64]);
    let size = b.i64s(&[-1, h as i64]);
    b.op(Op::Slice, &[v, begin, size])
}

fn transpose(b: &mut Builder, v: ValueId, perm: &[i64]) -> Result<ValueId, String> {
    let perm = b.i64s(perm);
    b.op(Op::Transpose, &[v, perm])
}

/// A zero state `[batch, hidden]` for the sequence `x` (`[T, batch, input]`).
fn zeros(b: &mut Builder, x: ValueId, hidden: usize) -> Result<ValueId, String> {
    let dt = b.dtype(x);
    let dims = match b.ty(x).shape.dims()[1].known() {
        Some(batch) => b.i64s(&[batch as i64, hidden as i64]),
        None => {
            let shape = b.op(Op::Shape { output: DType::I64 }, &[x])?;
            let (begin, size) = (b.i64s(&[1]), b.i64s(&[1]));
            let batch = b.op(Op::Slice, &[shape, begin, size])?;
            let h = b.i64s(&[hidden as i64]);
            let axis = b.i64_scalar(0);
            b.op(Op::Concat, &[batch, h, axis])?
        }
    };
    let zero = b.scalar(dt, 0.0);
    b.op(Op::Fill, &[dims, zero])
}

/// `x · wᵀ`.
fn matmul_t(b: &mut Builder, x: ValueId, w: ValueId) -> Result<ValueId, String> {
    let op = Op::MatMul {
        transpose_a: false,
        transpose_b: true,
    };
    b.op(op, &[x, w])
}

fn binary(b: &mut Builder, op: B, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Binary(op), &[x, y])
}

/// `x` clipped to `[-clip, clip]` when the layer clips.
fn clipped(b: &mut Builder, layer: &Layer, x: ValueId) -> Result<ValueId, String> {
    let Some(c) = layer.clip else { return Ok(x) };
    let dt = b.dtype(x);
    let (lo, hi) = (b.scalar(dt, -c), b.scalar(dt, c));
    let x = binary(b, B::Maximum, x, lo)?;
    binary(b, B::Minimum, x, hi)
}

/// One direction's loop; returns `Y` (`[T, batch, h]`, when wanted), the last `H` and the
/// last `C`.
#[allow(clippy::too_many_arguments)]
fn direction_loop(
    b: &mut Builder,
    layer: &Layer,
    dir: &Direction,
    x: ValueId,
    steps: ValueId,
    lens: Option<ValueId>,
    want_y: bool,
    tag: &str,
) -> Result<(Option<ValueId>, ValueId, Option<ValueId>), String> {
    let name = format!("{}/{tag}", node_name(b));
    let mut lp = LoopBody::counted(b, &name, steps)?;
    let kh = lp.carry(b, dir.h0, "h");
    let kc = dir.c0.map(|c0| lp.carry(b, c0, "c"));
    let ky = if want_y {
        let item = b.ty(dir.h0).clone();
        let list = reserve(b, &item, steps)?;
        Some(lp.carry(b, list, "y"))
    } else {
        None
    };
    let xs = lp.invariant(b, x, "x");
    let w = lp.invariant(b, dir.w, "w");
    let r = lp.invariant(b, dir.r, "r");
    let r_h = dir.r_h.map(|v| lp.invariant(b, v, "r_h"));
    let bias = dir.bias.map(|v| lp.invariant(b, v, "bias"));
    let rb_h = dir.rb_h.map(|v| lp.invariant(b, v, "rb_h"));
    let peep = dir
        .peep
        .map(|[i, o, f]| [("p_i", i), ("p_o", o), ("p_f", f)].map(|(n, v)| lp.invariant(b, v, n)));
    let lens = lens.map(|l| lp.invariant(b, l, "sequence_lens"));
    let (t, n, h_prev) = (lp.step(), lp.steps(), lp.arg(kh));
    let c_prev = kc.map(|k| lp.arg(k));

    let lb = &mut lp.b;
    lb.naming(&format!("{name}/step"));
    let index = if dir.reverse {
        let one = lb.i64_scalar(1);
        let last = binary(lb, B::Sub, n, one)?;
        binary(lb, B::Sub, last, t)?
    } else {
        t
    };
    let axis = lb.i64_scalar(0);
    let xt = lb.op(Op::Gather { batch_dims: 0 }, &[xs, index, axis])?;
    let mut xw = matmul_t(lb, xt, w)?;
    if let Some(bias) = bias {
        xw = binary(lb, B::Add, xw, bias)?;
    }
    let h = layer.hidden;
    let (f, g) = (dir.acts[0], dir.acts.get(1).copied());
    let (h_new, c_new) = match layer.cell {
        Cell::Rnn => {
            let hr = matmul_t(lb, h_prev, r)?;
            let pre = binary(lb, B::Add, xw, hr)?;
            let pre = clipped(lb, layer, pre)?;
            (f.apply(lb, pre)?, None)
        }
        Cell::Lstm => {
            let (g, hact) = (g.expect("three activations"), dir.acts[2]);
            let c_prev = c_prev.expect("an LSTM carries C");
            let hr = matmul_t(lb, h_prev, r)?;
            let all = binary(lb, B::Add, xw, hr)?;
            let (mut gi, mut go, mut gf) = (
                gate(lb, all, 0, h)?,
                gate(lb, all, 1, h)?,
                gate(lb, all, 2, h)?,
            );
            let gc = gate(lb, all, 3, h)?;
            if let Some([pi, _, pf]) = peep {
                let di = binary(lb, B::Mul, pi, c_prev)?;
                gi = binary(lb, B::Add, gi, di)?;
                let df = binary(lb, B::Mul, pf, c_prev)?;
                gf = binary(lb, B::Add, gf, df)?;
            }
            let gi = clipped(lb, layer, gi)?;
            let gf = clipped(lb, layer, gf)?;
            let gc = clipped(lb, layer, gc)?;
            let (it, ft, ct) = (f.apply(lb, gi)?, f.apply(lb, gf)?, g.apply(lb, gc)?);
            let keep = binary(lb, B::Mul, ft, c_prev)?;
            let add = binary(lb, B::Mul, it, ct)?;
            let c = binary(lb, B::Add, keep, add)?;
            if let Some([_, po, _]) = peep {
                let d = binary(lb, B::Mul, po, c)?;
                go = binary(lb, B::Add, go, d)?;
            }
            let go = clipped(lb, layer, go)?;
            let ot = f.apply(lb, go)?;
            let hc = hact.apply(lb, c)?;
            (binary(lb, B::Mul, ot, hc)?, Some(c))
        }
        Cell::Gru => {
            let g = g.expect("two activations");
            let hr = matmul_t(lb, h_prev, r)?;
            let (xz, hz) = (gate(lb, xw, 0, h)?, gate(lb, hr, 0, h)?);
            let z = binary(lb, B::Add, xz, hz)?;
            let (xr, hr_r) = (gate(lb, xw, 1, h)?, gate(lb, hr, 1, h)?);
            let rr = binary(lb, B::Add, xr, hr_r)?;
            let z = clipped(lb, layer, z)?;
            let rr = clipped(lb, layer, rr)?;
            let (zt, rt) = (f.apply(lb, z)?, f.apply(lb, rr)?);
            let recurrent = match r_h {
                // `(r ⊙ H) · Rhᵀ`.
                Some(r_h) => {
                    let rh = binary(lb, B::Mul, rt, h_prev)?;
                    matmul_t(lb, rh, r_h)?
                }
                // `r ⊙ (H · Rhᵀ + Rbh)`.
                None => {
                    let mut hh = gate(lb, hr, 2, h)?;
                    if let Some(rb_h) = rb_h {
                        hh = binary(lb, B::Add, hh, rb_h)?;
                    }
                    binary(lb, B::Mul, rt, hh)?
                }
            };
            let xh = gate(lb, xw, 2, h)?;
            let pre = binary(lb, B::Add, xh, recurrent)?;
            let pre = clipped(lb, layer, pre)?;
            let ht = g.apply(lb, pre)?;
            // `(1 - z) ⊙ ĥ + z ⊙ H`.
            let dt = lb.dtype(zt);
            let one = lb.scalar(dt, 1.0);
            let keep = binary(lb, B::Sub, one, zt)?;
            let a = binary(lb, B::Mul, keep, ht)?;
            let c = binary(lb, B::Mul, zt, h_prev)?;
            (binary(lb, B::Add, a, c)?, None)
        }
    };
    // Past a sequence's end its state stays and its outputs are zeros.
    let (h_next, c_next, y_row) = match lens {
        None => (h_new, c_new, h_new),
        Some(lens) => {
            let to = lb.dtype(lens);
            let lt = lb.op(Op::Cast { to }, &[t])?;
            let valid = binary(lb, B::Less, lt, lens)?;
            let one_axis = lb.i64_scalar(1);
            let valid = lb.op(Op::ExpandDims, &[valid, one_axis])?;
            let h_next = lb.op(Op::Select, &[valid, h_new, h_prev])?;
            let c_next = match (c_new, c_prev) {
                (Some(c), Some(cp)) => Some(lb.op(Op::Select, &[valid, c, cp])?),
                _ => None,
            };
            let dt = lb.dtype(h_new);
            let zero = lb.scalar(dt, 0.0);
            let y_row = lb.op(Op::Select, &[valid, h_new, zero])?;
            (h_next, c_next, y_row)
        }
    };
    let written = match ky {
        Some(k) => {
            let list = lp.arg(k);
            Some(lp.b.op(Op::SetItem, &[list, index, y_row])?)
        }
        None => None,
    };
    lp.set_next(kh, h_next);
    if let (Some(k), Some(c)) = (kc, c_next) {
        lp.set_next(k, c);
    }
    if let (Some(k), Some(wr)) = (ky, written) {
        lp.set_next(k, wr);
    }
    let results = lp.finish_counted(b)?;
    Ok((ky.map(|k| results[k]), results[kh], kc.map(|k| results[k])))
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(dims, v.to_vec())
    }

    /// A bidirectional RNN over `X: [2, 1, 1]` with `W = 0.5`, `R = -1`, `B = 0.1 + 0.2`.
    fn rnn(layout: i64, activations: Option<&[&str]>) -> lathe_proto::onnx::GraphProto {
        let mut n = int_attr(
            node("RNN", &["X", "W", "R", "B"], &["Y", "Y_h"]),
            "hidden_size",
            1,
        );
        n = str_attr(n, "direction", "bidirectional");
        n = int_attr(n, "layout", layout);
        if let Some(a) = activations {
            n = strs_attr(n, "activations", a);
        }
        let (y, y_h): (&[i64], &[i64]) = if layout == 0 {
            (&[2, 2, 1, 1], &[2, 1, 1])
        } else {
            (&[1, 2, 2, 1], &[1, 2, 1])
        };
        let x: &[i64] = if layout == 0 { &[2, 1, 1] } else { &[1, 2, 1] };
        graph(
            "main",
            vec![n],
            vec![value("X", F32, x)],
            vec![value("Y", F32, y), value("Y_h", F32, y_h)],
            &[
                ("W", f32s(&[2, 1, 1], &[0.5, 0.5])),
                ("R", f32s(&[2, 1, 1], &[-1.0, -1.0])),
                ("B", f32s(&[2, 2], &[0.1, 0.2, 0.1, 0.2])),
            ],
        )
    }

    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn a_bidirectional_rnn_runs_each_direction_over_the_steps() {
        let (x1, x2) = (1.0f64, 2.0f64);
        let h1 = (0.5 * x1 + 0.3).tanh();
        let h2 = (0.5 * x2 - h1 + 0.3).tanh();
        let g1 = (0.5 * x2 + 0.3).tanh();
        let g0 = (0.5 * x1 - g1 + 0.3).tanh();
        let g = import(rnn(0, None), 14).unwrap();
        let out = run(&g, &[f32s(&[2, 1, 1], &[1.0, 2.0])]);
        // Y[t, direction]: the reverse direction's outputs in time order.
        close(&vals(&out[0]), &[h1, g0, h2, g1]);
        close(&vals(&out[1]), &[h2, g0]);
        // Layout 1: X is [batch, seq, input] (the same values with batch 1), Y batch first.
        let g = import(rnn(1, None), 14).unwrap();
        let out = run(&g, &[f32s(&[1, 2, 1], &[1.0, 2.0])]);
        close(&vals(&out[0]), &[h1, g0, h2, g1]);
        close(&vals(&out[1]), &[h2, g0]);
        // Relu in place of tanh.
        let g = import(rnn(0, Some(&["Relu", "Relu"])), 14).unwrap();
        let out = run(&g, &[f32s(&[2, 1, 1], &[1.0, 2.0])]);
        let relu = |v: f64| v.max(0.0);
        let (h1, g1) = (relu(0.5 * x1 + 0.3), relu(0.5 * x2 + 0.3));
        close(
            &vals(&out[1]),
            &[relu(0.5 * x2 - h1 + 0.3), relu(0.5 * x1 - g1 + 0.3)],
        );
    }

    #[test]
    fn unsupported_recurrent_attributes_are_named() {
        let e = import(rnn(0, Some(&["HardSigmoid", "Tanh"])), 14)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "test.onnx: node `Y` (op RNN): activation `HardSigmoid` is not supported (Sigmoid, \
             Tanh and Relu are)"
        );
        let e = import(rnn(0, Some(&["Tanh"; 3])), 14)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`activations` names 3 functions; RNN with 2 direction(s) takes 2"),
            "{e}"
        );
        let mut gp = rnn(0, None);
        let mut hidden = gp.node[0].attribute.iter_mut();
        let hidden = hidden
            .find(|a| a.name.as_deref() == Some("hidden_size"))
            .unwrap();
        hidden.i = Some(2);
        let e = import(gp, 14).unwrap_err().to_string();
        assert!(e.contains("(op RNN): W is f32[2,1,1], not [2,2,?]"), "{e}");
    }
}
