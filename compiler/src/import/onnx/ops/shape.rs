//! ONNX ops that move, select or make data: reshapes, transposes, slices, gathers, padding,
//! constants. Operands ONNX turned from attributes into inputs over the versions
//! (`Squeeze`/`Unsqueeze` axes at 13, `Slice` bounds at 10, `Pad` amounts at 11, `Split` sizes
//! at 13) are read from whichever the node's version has.

use super::{apply, norm_axis, one, row, OnnxOp};
use crate::import::onnx::ops::elementwise::cast;
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, PadMode, ReduceKind, StridedSliceAttrs};
use lathe_ir::{DType, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("Constant", &["const"], import_constant),
        row("ConstantOfShape", &["fill"], import_constant_of_shape),
        row("Reshape", &["reshape", "shape", "select"], import_reshape),
        row(
            "Flatten",
            &["reshape", "shape", "slice", "reduce_prod", "concat"],
            import_flatten,
        ),
        row("Transpose", &["transpose"], |b, cx| {
            let x = cx.input(0)?;
            let rank = b.rank(x) as i64;
            let perm = cx
                .attrs
                .ints_or("perm", &(0..rank).rev().collect::<Vec<_>>());
            let perm = b.i64s(&perm);
            one(b.op(Op::Transpose, &[x, perm])?)
        }),
        row("Concat", &["concat"], |b, cx| {
            let axis = cx.attrs.int("axis")?;
            let mut vals: Vec<ValueId> = cx.inputs.iter().flatten().copied().collect();
            vals.push(b.i64_scalar(axis));
            one(b.op(Op::Concat, &vals)?)
        }),
        row("Squeeze", &["squeeze"], |b, cx| {
            let axes = axes(b, cx, 13)?.unwrap_or_default();
            one(b.op(Op::Squeeze { axes }, &[cx.input(0)?])?)
        }),
        row("Unsqueeze", &["expand_dims"], import_unsqueeze),
        row("Shape", &["shape", "slice"], import_shape),
        row("Size", &["shape", "reduce_prod"], |b, cx| {
            let s = b.op(Op::Shape { output: DType::I64 }, &[cx.input(0)?])?;
            let ax = b.i64s(&[0]);
            let op = Op::Reduce {
                kind: ReduceKind::Prod,
                keep_dims: false,
            };
            one(b.op(op, &[s, ax])?)
        }),
        row("Gather", &["gather", "select", "add", "less"], |b, cx| {
            let data = cx.input(0)?;
            let axis = norm_axis(cx.attrs.int_or("axis", 0)?, b.rank(data))?;
            let idx = from_end(b, cx.input(1)?, data, axis)?;
            let axis = b.i64_scalar(axis as i64);
            let op = Op::Gather { batch_dims: 0 };
            one(b.op(op, &[data, idx, axis])?)
        }),
        row("Slice", &["strided_slice"], import_slice),
        row("Split", &["slice"], import_split),
        row("Expand", &["select", "fill"], |b, cx| {
            // Broadcasting `x` against a tensor of the target shape: a select whose
            // condition is all true.
            let x = cx.input(0)?;
            let shape = cx.input(1)?;
            let shape = cast(b, shape, DType::I64)?;
            let t = b.konst(Tensor::scalar(true));
            let all = b.op(Op::Fill, &[shape, t])?;
            one(b.op(Op::Select, &[all, x, x])?)
        }),
        row("Tile", &["tile"], |b, cx| apply(b, cx, Op::Tile, 2)),
        row("Range", &["range", "reshape"], |b, cx| {
            // Scalars; a one-element vector (as some function bodies pass) is taken as one.
            let mut ins = Vec::with_capacity(3);
            for i in 0..3 {
                let v = cx.input(i)?;
                let one_element = b.ty(v).shape.as_known().is_some_and(|d| d == [1]);
                ins.push(if one_element {
                    let s = b.i64s(&[]);
                    b.op(Op::Reshape, &[v, s])?
                } else {
                    v
                });
            }
            one(b.op(Op::Range, &ins)?)
        }),
        row("Pad", &["pad", "reshape", "transpose"], import_pad),
        row("Dropout", &["identity", "fill", "shape"], import_dropout),
    ]
}

/// The axes of `Squeeze`/`Unsqueeze`/reductions: the `axes` attribute before version
/// `input_since`, the (constant) second input from it; `None` when absent.
pub(crate) fn axes(b: &Builder, cx: &NodeCx, input_since: i64) -> Result<Option<Vec<i64>>, String> {
    if cx.opset < input_since {
        return Ok(cx.attrs.ints("axes").map(<[i64]>::to_vec));
    }
    match cx.opt(1) {
        None => Ok(None),
        Some(v) => b.ints_of(v, "the `axes` input").map(Some),
    }
}

fn import_constant(b: &mut Builder, cx: &NodeCx) -> Out {
    let a = cx.attrs;
    let t = if let Some(t) = a.tensor("value")? {
        t
    } else if a.has("value_float") {
        Tensor::scalar(a.float_or("value_float", 0.0)?)
    } else if let Some(f) = a.floats("value_floats") {
        Tensor::from_vec(&[f.len()], f.to_vec())
    } else if a.has("value_int") {
        Tensor::scalar(a.int("value_int")?)
    } else if let Some(i) = a.ints("value_ints") {
        Tensor::from_vec(&[i.len()], i.to_vec())
    } else {
        let what = a.names().next().unwrap_or("none");
        return Err(format!(
            "constant value attribute `{what}` is not supported"
        ));
    };
    one(b.konst(t))
}

fn import_constant_of_shape(b: &mut Builder, cx: &NodeCx) -> Out {
    let value = match cx.attrs.tensor("value")? {
        Some(t) if t.len() == 1 => t.into_standard_layout(),
        Some(t) => return Err(format!("`value` must hold one element, not {}", t.len())),
        None => Tensor::scalar(0f32),
    };
    let scalar = Tensor::from_le_bytes(value.dtype(), &[], &value.to_le_bytes())?;
    let v = b.konst(scalar);
    let shape = cast(b, cx.input(0)?, DType::I64)?;
    one(b.op(Op::Fill, &[shape, v])?)
}

/// Indices into axis `axis` of `data` with negative ones counted from the end (ONNX's
/// rule; the IR's gather takes indices in range).
pub(crate) fn from_end(
    b: &mut Builder,
    idx: ValueId,
    data: ValueId,
    axis: usize,
) -> Result<ValueId, String> {
    let dt = b.dtype(idx);
    if let Some(t) = b.const_of(idx) {
        if t.to_i64_vec()?.iter().all(|&i| i >= 0) {
            return Ok(idx);
        }
    }
    let dim = match b.ty(data).shape.0[axis].known() {
        Some(d) => b.scalar(dt, d as f64),
        None => {
            let s = shape_of(b, data)?;
            let d = slice1(b, s, axis as i64, axis as i64 + 1)?;
            cast(b, d, dt)?
        }
    };
    let zero = b.scalar(dt, 0.0);
    let neg = b.op(Op::Binary(B::Less), &[idx, zero])?;
    let wrapped = b.op(Op::Binary(B::Add), &[idx, dim])?;
    b.op(Op::Select, &[neg, wrapped, idx])
}

/// `shape(x)` as i64.
fn shape_of(b: &mut Builder, x: ValueId) -> Result<ValueId, String> {
    b.op(Op::Shape { output: DType::I64 }, &[x])
}

/// Entries `[lo, hi)` of the rank-1 `v`.
fn slice1(b: &mut Builder, v: ValueId, lo: i64, hi: i64) -> Result<ValueId, String> {
    let begin = b.i64s(&[lo]);
    let size = b.i64s(&[hi - lo]);
    b.op(Op::Slice, &[v, begin, size])
}

/// `Reshape`: a 0 in the target copies the input's dim there (unless `allowzero`).
fn import_reshape(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let target = if cx.opset < 5 {
        let shape = cx.attrs.ints("shape").ok_or("missing attribute `shape`")?;
        b.i64s(shape)
    } else {
        cast(b, cx.input(1)?, DType::I64)?
    };
    let allowzero = cx.attrs.int_or("allowzero", 0)? != 0;
    if allowzero {
        return one(b.op(Op::Reshape, &[x, target])?);
    }
    if let Some(t) = b.const_of(target) {
        let mut dims = t.to_i64_vec()?;
        if !dims.contains(&0) {
            return one(b.op(Op::Reshape, &[x, target])?);
        }
        let in_dims = b.ty(x).shape.0.clone();
        let mut known = true;
        for (i, d) in dims.iter_mut().enumerate() {
            if *d == 0 {
                match in_dims.get(i).and_then(|d| d.known()) {
                    Some(n) => *d = n as i64,
                    None => known = false,
                }
            }
        }
        if known {
            let target = b.i64s(&dims);
            return one(b.op(Op::Reshape, &[x, target])?);
        }
    }
    // Zeros resolved at run time: where the target is 0, the input's dim (the input's
    // shape extended with ones, cut to the target's length).
    let s = shape_of(b, x)?;
    let n = shape_of(b, target)?;
    let one_ = b.i64_scalar(1);
    let ones = b.op(Op::Fill, &[n, one_])?;
    let axis = b.i64_scalar(0);
    let s = b.op(Op::Concat, &[s, ones, axis])?;
    let begin = b.i64s(&[0]);
    let s = b.op(Op::Slice, &[s, begin, n])?;
    let zero = b.i64_scalar(0);
    let is_zero = b.op(Op::Binary(B::Equal), &[target, zero])?;
    let target = b.op(Op::Select, &[is_zero, s, target])?;
    one(b.op(Op::Reshape, &[x, target])?)
}

/// `Flatten`: `[prod(dims[..axis]), prod(dims[axis..])]`.
fn import_flatten(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let axis = cx.attrs.int_or("axis", 1)?;
    let axis = if axis == rank as i64 {
        rank
    } else {
        norm_axis(axis, rank)?
    };
    if let Some(dims) = b.ty(x).shape.as_known() {
        let outer: usize = dims[..axis].iter().product();
        let inner: usize = dims[axis..].iter().product();
        let t = b.i64s(&[outer as i64, inner as i64]);
        return one(b.op(Op::Reshape, &[x, t])?);
    }
    let s = shape_of(b, x)?;
    let prod = |b: &mut Builder, lo: usize, hi: usize| -> Result<ValueId, String> {
        if lo == hi {
            return Ok(b.i64s(&[1]));
        }
        let part = slice1(b, s, lo as i64, hi as i64)?;
        let ax = b.i64s(&[0]);
        let op = Op::Reduce {
            kind: ReduceKind::Prod,
            keep_dims: true,
        };
        b.op(op, &[part, ax])
    };
    let outer = prod(b, 0, axis)?;
    let inner = prod(b, axis, rank)?;
    let ax = b.i64_scalar(0);
    let t = b.op(Op::Concat, &[outer, inner, ax])?;
    one(b.op(Op::Reshape, &[x, t])?)
}

/// `Unsqueeze`: one `expand_dims` per axis, in ascending order of the output's axes.
fn import_unsqueeze(b: &mut Builder, cx: &NodeCx) -> Out {
    let mut y = cx.input(0)?;
    let ax = axes(b, cx, 13)?.ok_or("`axes` is required")?;
    let out_rank = b.rank(y) + ax.len();
    let mut ax = ax
        .iter()
        .map(|&a| norm_axis(a, out_rank))
        .collect::<Result<Vec<_>, _>>()?;
    ax.sort_unstable();
    if ax.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("`axes` {ax:?} repeats an axis"));
    }
    for a in ax {
        let a = b.i64_scalar(a as i64);
        y = b.op(Op::ExpandDims, &[y, a])?;
    }
    if y == cx.input(0)? {
        y = b.op(Op::Identity, &[y])?;
    }
    one(y)
}

/// `Shape`, with the `start`/`end` of version 15.
fn import_shape(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let s = shape_of(b, x)?;
    let rank = b.rank(x) as i64;
    let clamp = |v: i64| {
        if v < 0 {
            (v + rank).max(0)
        } else {
            v.min(rank)
        }
    };
    let start = clamp(cx.attrs.int_or("start", 0)?);
    let end = clamp(cx.attrs.int_or("end", rank)?);
    if start == 0 && end == rank {
        return one(s);
    }
    one(slice1(b, s, start, end.max(start))?)
}

/// A rank-1 i64 of `n` entries, entry `i` being `pick(i)`: either entry `j` of `from` or the
/// constant `k`; made as one constant when `from` is constant.
fn gather_entries(
    b: &mut Builder,
    from: ValueId,
    n: usize,
    pick: impl Fn(usize) -> Result<usize, i64>,
) -> Result<ValueId, String> {
    if let Some(t) = b.const_of(from) {
        let vals = t.to_i64_vec()?;
        let out: Vec<i64> = (0..n)
            .map(|i| match pick(i) {
                Ok(j) => vals[j],
                Err(k) => k,
            })
            .collect();
        return Ok(b.i64s(&out));
    }
    let mut parts = Vec::with_capacity(n + 1);
    for i in 0..n {
        parts.push(match pick(i) {
            Ok(j) => slice1(b, from, j as i64, j as i64 + 1)?,
            Err(k) => b.i64s(&[k]),
        });
    }
    parts.push(b.i64_scalar(0));
    b.op(Op::Concat, &parts)
}

/// `Slice`: bounds from attributes before version 10, from inputs since; a strided slice
/// whose masks leave the unlisted axes whole.
fn import_slice(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        let starts = cx
            .attrs
            .ints("starts")
            .ok_or("missing attribute `starts`")?;
        let ends = cx.attrs.ints("ends").ok_or("missing attribute `ends`")?;
        let axes = cx.attrs.ints("axes").map(<[i64]>::to_vec);
        let s = b.i64s(starts);
        let e = b.i64s(ends);
        (s, e, axes, None)
    } else {
        let s = cast(b, cx.input(1)?, DType::I64)?;
        let e = cast(b, cx.input(2)?, DType::I64)?;
        let axes = match cx.opt(3) {
            None => None,
            Some(v) => Some(b.ints_of(v, "the `axes` input")?),
        };
        let steps = match cx.opt(4) {
            None => None,
            Some(v) => Some(cast(b, v, DType::I64)?),
        };
        (s, e, axes, steps)
    };
    let n = b
        .ty(starts)
        .shape
        .0
        .first()
        .and_then(|d| d.known())
        .ok_or("the length of `starts` must be known")?;
    let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
    if axes.len() != n {
        return Err(format!("{} axes for {n} starts", axes.len()));
    }
    let axes = axes
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    let pos = |d: usize| axes.iter().position(|&a| a == d);
    let mut mask = 0i64;
    for d in 0..rank {
        if pos(d).is_none() {
            mask |= 1 << d;
        }
    }
    let begin = gather_entries(b, starts, rank, |d| pos(d).ok_or(0))?;
    let end = gather_entries(b, ends, rank, |d| pos(d).ok_or(0))?;
    let strides = match steps {
        None => b.i64s(&vec![1; rank]),
        Some(st) => gather_entries(b, st, rank, |d| pos(d).ok_or(1))?,
    };
    let op = Op::StridedSlice(StridedSliceAttrs {
        begin_mask: mask,
        end_mask: mask,
        ..StridedSliceAttrs::default()
    });
    one(b.op(op, &[x, begin, end, strides])?)
}

/// `Split`: sizes from the `split` attribute (before 13) or input (from 13), else equal
/// parts (`num_outputs` from 18, the last part smaller); one `slice` per output.
fn import_split(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let axis = norm_axis(cx.attrs.int_or("axis", 0)?, rank)?;
    let sizes = if cx.opset < 13 {
        cx.attrs.ints("split").map(<[i64]>::to_vec)
    } else {
        match cx.opt(1) {
            None => None,
            Some(v) if b.const_of(v).is_some() => Some(b.ints_of(v, "the `split` input")?),
            Some(v) => return split_at_run_time(b, cx, x, axis, v),
        }
    };
    let sizes = match sizes {
        Some(s) => s,
        None => {
            let dim = b.ty(x).shape.0[axis]
                .known()
                .ok_or("splitting an axis of unknown size needs explicit sizes")?
                as i64;
            let parts = if cx.opset >= 18 && cx.attrs.has("num_outputs") {
                cx.attrs.int("num_outputs")?
            } else {
                cx.outputs() as i64
            };
            if parts <= 0 {
                return Err("no outputs to split into".into());
            }
            let each = (dim + parts - 1) / parts;
            (0..parts)
                .map(|i| (dim - i * each).clamp(0, each))
                .collect()
        }
    };
    if let Some(&bad) = sizes.iter().find(|&&s| s < 0) {
        return Err(format!("negative split size {bad}"));
    }
    split_pieces(b, x, axis, &sizes)
}

/// `x` split along `axis` into consecutive pieces of `sizes`: one `slice` per piece
/// (`Split`, `SplitToSequence`).
pub(super) fn split_pieces(
    b: &mut Builder,
    x: ValueId,
    axis: usize,
    sizes: &[i64],
) -> Result<Vec<ValueId>, String> {
    let rank = b.rank(x);
    let mut pieces = Vec::with_capacity(sizes.len());
    let mut offset = 0i64;
    for &s in sizes {
        let mut begin = vec![0i64; rank];
        let mut size = vec![-1i64; rank];
        begin[axis] = offset;
        size[axis] = s;
        let begin = b.i64s(&begin);
        let size = b.i64s(&size);
        pieces.push(b.op(Op::Slice, &[x, begin, size])?);
        offset += s;
    }
    Ok(pieces)
}

/// `Split` by sizes known at run time only (a shape input): output `i` starts at the sum
/// of the sizes before it.
fn split_at_run_time(b: &mut Builder, cx: &NodeCx, x: ValueId, axis: usize, sizes: ValueId) -> Out {
    let rank = b.rank(x);
    let sizes = cast(b, sizes, DType::I64)?;
    let around = |b: &mut Builder, fill: i64, piece: ValueId| -> Result<ValueId, String> {
        let mut parts = Vec::new();
        if axis > 0 {
            parts.push(b.i64s(&vec![fill; axis]));
        }
        parts.push(piece);
        if axis + 1 < rank {
            parts.push(b.i64s(&vec![fill; rank - axis - 1]));
        }
        parts.push(b.i64_scalar(0));
        b.op(Op::Concat, &parts)
    };
    let mut outs = Vec::with_capacity(cx.outputs());
    for i in 0..cx.outputs() as i64 {
        let start = if i == 0 {
            b.i64s(&[0])
        } else {
            let before = slice1(b, sizes, 0, i)?;
            let ax = b.i64s(&[0]);
            let op = Op::Reduce {
                kind: ReduceKind::Sum,
                keep_dims: true,
            };
            b.op(op, &[before, ax])?
        };
        let len = slice1(b, sizes, i, i + 1)?;
        let begin = around(b, 0, start)?;
        let size = around(b, -1, len)?;
        outs.push(b.op(Op::Slice, &[x, begin, size])?);
    }
    Ok(outs)
}

/// `Pad`: amounts `[b1.., e1..]` from the `pads` attribute (before 11) or input, made the
/// IR's `[rank, 2]`; the `axes` input (18) picks the padded axes.
fn import_pad(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let mode = match cx.attrs.str_or("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => return Err(format!("pad mode `{m}` is not supported")),
    };
    let (pads, value) = if cx.opset < 11 {
        let pads = cx
            .attrs
            .ints("pads")
            .ok_or("missing attribute `pads`")?
            .to_vec();
        let v = cx.attrs.float_or("value", 0.0)? as f64;
        let pads = b.i64s(&pads);
        (pads, Some(b.scalar(b.dtype(x), v)))
    } else {
        (cast(b, cx.input(1)?, DType::I64)?, cx.opt(2))
    };
    let pads = match cx.opt(3).filter(|_| cx.opset >= 18) {
        None => pads,
        Some(axes) => {
            let axes = b.ints_of(axes, "the `axes` input")?;
            let axes = axes
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            let n = axes.len();
            let pos = |d: usize| axes.iter().position(|&a| a == d);
            gather_entries(b, pads, 2 * rank, |i| {
                let (d, end) = (i % rank, i / rank);
                pos(d).map(|p| p + end * n).ok_or(0)
            })?
        }
    };
    let shape = b.i64s(&[2, rank as i64]);
    let pads = b.op(Op::Reshape, &[pads, shape])?;
    let perm = b.i64s(&[1, 0]);
    let pads = b.op(Op::Transpose, &[pads, perm])?;
    let mut inputs = vec![x, pads];
    if mode == PadMode::Constant {
        if let Some(v) = value {
            // An empty constant value means zero.
            if b.ty(v).shape.num_elements() != Some(0) {
                let scalar_shape = b.i64s(&[]);
                inputs.push(b.op(Op::Reshape, &[v, scalar_shape])?);
            }
        }
    }
    one(b.op(Op::Pad { mode }, &inputs)?)
}

/// `Dropout` at inference, or in training mode with a zero `ratio` (which drops nothing):
/// the input, and (when asked for) an all-true mask.
fn import_dropout(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    if let Some(t) = cx.opt(2) {
        let training = b.known(t, "`training_mode`", "")?.to_f64_vec();
        if training.iter().any(|&v| v != 0.0) {
            let Some(r) = cx.opt(1) else {
                return Err("training mode is not supported (with the default ratio 0.5)".into());
            };
            let ratio = b.known(r, "`ratio` in training mode", "")?.to_f64_vec();
            if ratio.iter().any(|&v| v != 0.0) {
                return Err(format!(
                    "training mode is not supported (with ratio {}: it draws random numbers)",
                    ratio[0]
                ));
            }
        }
    }
    let y = b.op(Op::Identity, &[x])?;
    if !cx.wants(1) {
        return one(y);
    }
    let s = shape_of(b, x)?;
    let t = b.konst(Tensor::scalar(true));
    let mask = b.op(Op::Fill, &[s, t])?;
    Ok(vec![y, mask])
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node_bound, run};
    use lathe_ir::Tensor;

    /// `training_mode` fed as an input is a value the importer needs; bound to true, a zero
    /// ratio drops nothing and imports, any other ratio is refused.
    #[test]
    fn dropout_training_mode_from_an_input() {
        let x = Tensor::from_vec(&[3], vec![1f32, 2.0, 3.0]);
        let t = Tensor::scalar(true);
        let node = (
            13,
            "Dropout",
            &[][..],
            &["x", "r", "t"][..],
            &["y", "m"][..],
        );
        let inputs = [("x", &x), ("t", &t)];
        let zero = Tensor::scalar(0f32);
        let e = one_node_bound(node, &inputs, &[("r", &zero)], &[]).unwrap_err();
        assert_eq!(e.needs_values.expect("needs values").inputs, ["t"]);
        assert!(
            e.message
                .starts_with("`training_mode` must be known while importing"),
            "{}",
            e.message
        );

        let bound = [("t".to_string(), t.clone())];
        let g = one_node_bound(node, &inputs, &[("r", &zero)], &bound).unwrap();
        let out = run(&g, &[&x, &t]);
        assert_eq!(out[0], x);
        assert_eq!(out[1], Tensor::from_vec(&[3], vec![true; 3]));

        let half = Tensor::scalar(0.5f32);
        let e = one_node_bound(node, &inputs, &[("r", &half)], &bound).unwrap_err();
        assert_eq!(
            e.message,
            "training mode is not supported (with ratio 0.5: it draws random numbers)"
        );
        assert!(e.needs_values.is_none());
    }
}
