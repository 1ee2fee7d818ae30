//! ONNX ops that are compositions of IR ops: normalizations (`LRN` too), `Hardmax`, `Swish`,
//! `SwiGLU`, the depth/space rearrangements, `EyeLike`, Lp pooling and norms. Each is written the way the
//! ONNX function body (or the reference) defines it; the optimizer fuses the pieces again.

use super::elementwise::{add_scalar, cast, mul_scalar};
use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, PadMode, ReduceKind as R, UnaryOp as U};
use lathe_ir::{DType, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row(
            "RMSNormalization",
            &["reduce_mean", "mul", "rsqrt", "cast"],
            import_rms_norm,
        ),
        row(
            "MeanVarianceNormalization",
            &["reduce_mean", "sub", "mul", "sqrt", "div"],
            import_mvn,
        ),
        row(
            "GroupNormalization",
            &["reshape", "reduce_mean", "sub", "mul", "rsqrt"],
            import_group_norm,
        ),
        row(
            "LpNormalization",
            &["reduce_sum", "abs", "sqrt", "div"],
            import_lp_norm,
        ),
        row(
            "Hardmax",
            &["arg_max", "equal", "range", "cast"],
            import_hardmax,
        ),
        row("Swish", &["sigmoid", "mul"], |b, cx| {
            let alpha = cx.attrs.float_or("alpha", 1.0)? as f64;
            one(swish(b, cx.input(0)?, alpha)?)
        }),
        row("SwiGLU", &["sigmoid", "mul"], |b, cx| {
            // `a * sigmoid(alpha * a) * b`: a Swish of the gate times the value.
            let (a, v) = (cx.input(0)?, cx.input(1)?);
            let alpha = cx.attrs.float_or("alpha", 1.0)? as f64;
            let gate = swish(b, a, alpha)?;
            one(b.op(Op::Binary(B::Mul), &[gate, v])?)
        }),
        row("DepthToSpace", &["reshape", "transpose"], |b, cx| {
            depth_space(b, cx, true)
        }),
        row("SpaceToDepth", &["reshape", "transpose"], |b, cx| {
            depth_space(b, cx, false)
        }),
        row("EyeLike", &["const"], import_eye_like),
        row("LpPool", &["avg_pool", "abs", "pow", "mul"], import_lp_pool),
        row(
            "LRN",
            &["square", "pad", "slice", "add", "mul", "pow", "div"],
            import_lrn,
        ),
    ]
}

/// `x * sigmoid(alpha * x)`: Swish, SiLU when `alpha` is 1 (which scales nothing).
pub(crate) fn swish(b: &mut Builder, x: ValueId, alpha: f64) -> Result<ValueId, String> {
    let ax = if alpha == 1.0 {
        x
    } else {
        mul_scalar(b, x, alpha)?
    };
    let s = b.op(Op::Unary(U::Sigmoid), &[ax])?;
    b.op(Op::Binary(B::Mul), &[x, s])
}

/// The dtype a float of dtype `dt` computes in: f32 for the narrower floats (the
/// `stash_type` ONNX normalizations compute in), `dt` itself otherwise.
pub(super) fn wide(dt: DType) -> DType {
    match dt {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

/// `x` in [`wide`]'s dtype.
fn widen(b: &mut Builder, x: ValueId) -> Result<ValueId, String> {
    let dt = wide(b.dtype(x));
    if dt == b.dtype(x) {
        return Ok(x);
    }
    cast(b, x, dt)
}

fn reduce(
    b: &mut Builder,
    kind: R,
    x: ValueId,
    axes: &[i64],
    keep: bool,
) -> Result<ValueId, String> {
    let ax = b.i64s(axes);
    b.op(
        Op::Reduce {
            kind,
            keep_dims: keep,
        },
        &[x, ax],
    )
}

/// `RMSNormalization` (23): `x / sqrt(mean(x^2) + eps) * scale` over the axes from `axis`.
fn import_rms_norm(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dt = b.dtype(x);
    let rank = b.rank(x);
    let axis = norm_axis(cx.attrs.int_or("axis", -1)?, rank)?;
    let eps = cx.attrs.float_or("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (axis as i64..rank as i64).collect();
    let xf = widen(b, x)?;
    let sq = b.op(Op::Binary(B::Mul), &[xf, xf])?;
    let ms = reduce(b, R::Mean, sq, &axes, true)?;
    let ms = add_scalar(b, ms, eps)?;
    let r = b.op(Op::Unary(U::Rsqrt), &[ms])?;
    let y = b.op(Op::Binary(B::Mul), &[xf, r])?;
    let y = cast(b, y, dt)?;
    one(b.op(Op::Binary(B::Mul), &[y, cx.input(1)?])?)
}

/// `MeanVarianceNormalization`: `(x - mean) / sqrt(mean(x^2) - mean^2)` over `axes`
/// (default `[0, 2, 3]`), as the ONNX function body writes it.
fn import_mvn(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let axes = cx.attrs.ints_or("axes", &[0, 2, 3]);
    let axes = axes
        .iter()
        .map(|&a| norm_axis(a, rank).map(|a| a as i64))
        .collect::<Result<Vec<_>, _>>()?;
    let mean = reduce(b, R::Mean, x, &axes, true)?;
    let sq = b.op(Op::Binary(B::Mul), &[x, x])?;
    let mean_sq = reduce(b, R::Mean, sq, &axes, true)?;
    let sq_mean = b.op(Op::Binary(B::Mul), &[mean, mean])?;
    let var = b.op(Op::Binary(B::Sub), &[mean_sq, sq_mean])?;
    let sd = b.op(Op::Unary(U::Sqrt), &[var])?;
    let d = b.op(Op::Binary(B::Sub), &[x, mean])?;
    let eps = b.scalar(b.dtype(x), 1e-9);
    let sd = b.op(Op::Binary(B::Add), &[sd, eps])?;
    one(b.op(Op::Binary(B::Div), &[d, sd])?)
}

/// `(x - mean) / sqrt(var + eps)` over `axes` (kept), the variance as `mean((x - mean)^2)`.
fn standardize(b: &mut Builder, x: ValueId, axes: &[i64], eps: f64) -> Result<ValueId, String> {
    let mean = reduce(b, R::Mean, x, axes, true)?;
    let d = b.op(Op::Binary(B::Sub), &[x, mean])?;
    let d2 = b.op(Op::Binary(B::Mul), &[d, d])?;
    let var = reduce(b, R::Mean, d2, axes, true)?;
    let var = add_scalar(b, var, eps)?;
    let r = b.op(Op::Unary(U::Rsqrt), &[var])?;
    b.op(Op::Binary(B::Mul), &[d, r])
}

/// `LRN`: `x / (bias + alpha / size * s)^beta`, where `s` sums `x^2` over a window of `size`
/// channels (axis 1) around each one, `floor((size - 1) / 2)` before and the rest after,
/// clipped to the channels there are. The window sum is the square padded with zeros along
/// the channels, then one slice per window offset added up: at most `2C - 1` slices, as a
/// window reaches no further than the channels.
fn import_lrn(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dims = b.ty(x).shape.dims().to_vec();
    let rank = dims.len();
    if rank < 3 {
        return Err(format!(
            "LRN needs an input of rank 3 or more, got {}",
            b.ty(x)
        ));
    }
    let c = dims[1]
        .known()
        .ok_or_else(|| format!("LRN needs a known channel count, got {}", b.ty(x)))?
        as i64;
    let size = cx.attrs.int("size")?;
    if size < 1 {
        return Err(format!("LRN's `size` must be positive, got {size}"));
    }
    let alpha = cx.attrs.float_or("alpha", 1e-4)? as f64;
    let beta = cx.attrs.float_or("beta", 0.75)? as f64;
    let bias = cx.attrs.float_or("bias", 1.0)? as f64;
    let before = ((size - 1) / 2).min(c - 1).max(0);
    let after = (size - 1 - (size - 1) / 2).min(c - 1).max(0);
    let sq = b.op(Op::Unary(U::Square), &[x])?;
    let mut pads = vec![0i64; 2 * rank];
    (pads[2], pads[3]) = (before, after);
    let pads = b.konst(Tensor::from_vec(&[rank, 2], pads));
    let padded = b.op(
        Op::Pad {
            mode: PadMode::Constant,
        },
        &[sq, pads],
    )?;
    let mut size_of = vec![-1i64; rank];
    size_of[1] = c;
    let slice_size = b.i64s(&size_of);
    let mut sum = None;
    for k in 0..=before + after {
        let mut begin = vec![0i64; rank];
        begin[1] = k;
        let begin = b.i64s(&begin);
        let part = b.op(Op::Slice, &[padded, begin, slice_size])?;
        sum = Some(match sum {
            None => part,
            Some(acc) => b.op(Op::Binary(B::Add), &[acc, part])?,
        });
    }
    let sum = sum.expect("a window has at least one channel");
    let scaled = mul_scalar(b, sum, alpha / size as f64)?;
    let base = add_scalar(b, scaled, bias)?;
    let exponent = b.scalar(b.dtype(x), beta);
    let denominator = b.op(Op::Binary(B::Pow), &[base, exponent])?;
    one(b.op(Op::Binary(B::Div), &[x, denominator])?)
}

/// `GroupNormalization` (18, 21): channels split in `num_groups`, each normalized over its
/// channels and spatial axes, then a per-channel scale and bias (per group before 21).
fn import_group_norm(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dt = b.dtype(x);
    let dims = b
        .ty(x)
        .shape
        .as_known()
        .ok_or("GroupNormalization needs the input's shape")?;
    if dims.len() < 3 {
        return Err(format!(
            "needs an input of rank 3 or more, got {}",
            dims.len()
        ));
    }
    let groups = cx.attrs.int("num_groups")?;
    let c = dims[1] as i64;
    if groups <= 0 || c % groups != 0 {
        return Err(format!("{groups} groups do not divide {c} channels"));
    }
    let eps = cx.attrs.float_or("epsilon", 1e-5)? as f64;
    let xf = widen(b, x)?;
    let grouped = b.i64s(&[dims[0] as i64, groups, -1]);
    let xg = b.op(Op::Reshape, &[xf, grouped])?;
    let y = standardize(b, xg, &[2], eps)?;
    let back = b.i64s(&dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
    let y = b.op(Op::Reshape, &[y, back])?;
    let y = cast(b, y, dt)?;
    // Scale and bias per channel ([C]), or per group before opset 21 ([G]).
    let per_channel = |b: &mut Builder, v: ValueId| -> Result<ValueId, String> {
        let n = b.ty(v).shape.0.first().and_then(|d| d.known()).unwrap_or(0) as i64;
        let v = if n == groups && groups != c {
            let rep = b.i64s(&[groups, 1]);
            let v2 = b.op(Op::Reshape, &[v, rep])?;
            let t = b.i64s(&[1, c / groups]);
            let v2 = b.op(Op::Tile, &[v2, t])?;
            let flat = b.i64s(&[c]);
            b.op(Op::Reshape, &[v2, flat])?
        } else {
            v
        };
        let mut shape = vec![c];
        shape.extend(std::iter::repeat_n(1, dims.len() - 2));
        let s = b.i64s(&shape);
        b.op(Op::Reshape, &[v, s])
    };
    let scale = per_channel(b, cx.input(1)?)?;
    let bias = per_channel(b, cx.input(2)?)?;
    let y = b.op(Op::Binary(B::Mul), &[y, scale])?;
    one(b.op(Op::Binary(B::Add), &[y, bias])?)
}

/// `LpNormalization`: `x / ||x||_p` along `axis` (p 1 or 2).
fn import_lp_norm(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let axis = norm_axis(cx.attrs.int_or("axis", -1)?, rank)? as i64;
    let norm = match cx.attrs.int_or("p", 2)? {
        1 => {
            let a = b.op(Op::Unary(U::Abs), &[x])?;
            reduce(b, R::Sum, a, &[axis], true)?
        }
        2 => {
            let sq = b.op(Op::Binary(B::Mul), &[x, x])?;
            let s = reduce(b, R::Sum, sq, &[axis], true)?;
            b.op(Op::Unary(U::Sqrt), &[s])?
        }
        p => {
            return Err(format!(
                "p = {p} is not supported (only 1 and 2 are defined)"
            ))
        }
    };
    // A zero norm gives zeros, not 0 / 0.
    let y = b.op(Op::Binary(B::Div), &[x, norm])?;
    let zero = b.scalar(b.dtype(x), 0.0);
    let is_zero = b.op(Op::Binary(B::Equal), &[norm, zero])?;
    one(b.op(Op::Select, &[is_zero, zero, y])?)
}

/// A bool mask, true where `idx` (any shape) equals the position along a new axis `axis`
/// of size `depth`: the one-hot encoding of `idx`.
pub(crate) fn one_hot_mask(
    b: &mut Builder,
    idx: ValueId,
    depth: usize,
    axis: usize,
) -> Result<ValueId, String> {
    let dt = b.dtype(idx);
    let rank = b.rank(idx) + 1;
    let mut shape = vec![1i64; rank];
    shape[axis] = depth as i64;
    let positions = Tensor::from_i64(dt, &[depth], &(0..depth as i64).collect::<Vec<_>>());
    let positions = b.konst(positions);
    let s = b.i64s(&shape);
    let positions = b.op(Op::Reshape, &[positions, s])?;
    let a = b.i64_scalar(axis as i64);
    let idx = b.op(Op::ExpandDims, &[idx, a])?;
    b.op(Op::Binary(B::Equal), &[idx, positions])
}

/// `Hardmax`: 1 at the first largest value along the axis, 0 elsewhere (before 13, over the
/// input flattened to 2-D at `axis`).
fn import_hardmax(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let dims = b
        .ty(x)
        .shape
        .as_known()
        .ok_or("Hardmax needs the input's shape")?;
    let rank = dims.len();
    let (v, axis) = if cx.opset < 13 {
        let axis = norm_axis(cx.attrs.int_or("axis", 1)?, rank)?;
        let inner: usize = dims[axis..].iter().product();
        let flat = b.i64s(&[-1, inner as i64]);
        (b.op(Op::Reshape, &[x, flat])?, 1)
    } else {
        (x, norm_axis(cx.attrs.int_or("axis", -1)?, rank)?)
    };
    let depth = b.ty(v).shape.0[axis].known().ok_or("unknown axis size")?;
    let a = b.i64_scalar(axis as i64);
    let arg = b.op(Op::ArgMax { output: DType::I64 }, &[v, a])?;
    let mask = one_hot_mask(b, arg, depth, axis)?;
    let y = cast(b, mask, b.dtype(x))?;
    if cx.opset < 13 {
        let back = b.i64s(&dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
        return one(b.op(Op::Reshape, &[y, back])?);
    }
    one(y)
}

/// `DepthToSpace` (DCR or CRD) and `SpaceToDepth`, as a reshape, a transpose and a reshape.
fn depth_space(b: &mut Builder, cx: &NodeCx, to_space: bool) -> Out {
    let x = cx.input(0)?;
    let d = b
        .ty(x)
        .shape
        .as_known()
        .filter(|d| d.len() == 4)
        .ok_or("needs a 4-D input of known shape")?;
    let bs = cx.attrs.int("blocksize")?;
    if bs <= 0 {
        return Err(format!("blocksize {bs} is not positive"));
    }
    let [n, c, h, w] = [d[0], d[1], d[2], d[3]].map(|v| v as i64);
    let (mid, perm, out): (Vec<i64>, Vec<i64>, Vec<i64>) = if to_space {
        if c % (bs * bs) != 0 {
            return Err(format!("{c} channels are not a multiple of blocksize^2"));
        }
        let oc = c / (bs * bs);
        let out = vec![n, oc, h * bs, w * bs];
        match cx.attrs.str_or("mode", "DCR")?.as_str() {
            "DCR" => (vec![n, bs, bs, oc, h, w], vec![0, 3, 4, 1, 5, 2], out),
            "CRD" => (vec![n, oc, bs, bs, h, w], vec![0, 1, 4, 2, 5, 3], out),
            m => return Err(format!("unknown mode `{m}`")),
        }
    } else {
        if h % bs != 0 || w % bs != 0 {
            return Err(format!("{h}x{w} is not a multiple of the blocksize {bs}"));
        }
        let perm = match cx.attrs.str_or("mode", "DCR")?.as_str() {
            "DCR" => vec![0, 3, 5, 1, 2, 4],
            "CRD" => vec![0, 1, 3, 5, 2, 4],
            m => return Err(format!("unknown mode `{m}`")),
        };
        (
            vec![n, c, h / bs, bs, w / bs, bs],
            perm,
            vec![n, c * bs * bs, h / bs, w / bs],
        )
    };
    let s = b.i64s(&mid);
    let y = b.op(Op::Reshape, &[x, s])?;
    let p = b.i64s(&perm);
    let y = b.op(Op::Transpose, &[y, p])?;
    let s = b.i64s(&out);
    one(b.op(Op::Reshape, &[y, s])?)
}

/// `EyeLike`: ones on diagonal `k` of a matrix shaped like the input (a constant).
fn import_eye_like(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let d = b
        .ty(x)
        .shape
        .as_known()
        .filter(|d| d.len() == 2)
        .ok_or("needs a 2-D input of known shape")?;
    let dt = if cx.attrs.has("dtype") {
        cx.attrs.dtype("dtype")?
    } else {
        b.dtype(x)
    };
    let k = cx.attrs.int_or("k", 0)?;
    let mut vals = vec![0.0; d[0] * d[1]];
    for i in 0..d[0] as i64 {
        let j = i + k;
        if (0..d[1] as i64).contains(&j) {
            vals[i as usize * d[1] + j as usize] = 1.0;
        }
    }
    one(b.konst(Tensor::from_f64(dt, &d, &vals)))
}

/// `LpPool`: `(sum over the window of |x|^p)^(1/p)`, the sum as an average times the window
/// size (padded cells count as zeros).
fn import_lp_pool(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let p = cx.attrs.int_or("p", 2)? as f64;
    let k = cx
        .attrs
        .ints("kernel_shape")
        .ok_or("missing attribute `kernel_shape`")?;
    let size: i64 = k.iter().product();
    let a = b.op(Op::Unary(U::Abs), &[x])?;
    let pe = b.scalar(b.dtype(x), p);
    let ap = b.op(Op::Binary(B::Pow), &[a, pe])?;
    let avg = super::nn::average_pool_including_pads(b, cx, ap)?;
    let sum = mul_scalar(b, avg, size as f64)?;
    let inv = b.scalar(b.dtype(x), 1.0 / p);
    one(b.op(Op::Binary(B::Pow), &[sum, inv])?)
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, run as run_refs, A};
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    #[test]
    fn swiglu_gates_the_value_with_a_swish() {
        let n = node("SwiGLU", &["a", "b"], &["y"]);
        let g = graph(
            "g",
            vec![n],
            vec![value("a", F32, &[2]), value("b", F32, &[2])],
            vec![value("y", F32, &[])],
            &[],
        );
        let g = import(g, 25).unwrap();
        let a = Tensor::from_vec(&[2], vec![0.0f32, 1.0]);
        let b = Tensor::from_vec(&[2], vec![2.0f32, 3.0]);
        let y = vals(&run(&g, &[a, b])[0]);
        let want = 3.0 / (1.0 + (-1.0f64).exp());
        assert_eq!(y[0], 0.0);
        assert!((y[1] - want).abs() < 1e-6, "{y:?}");
    }

    /// `LRN` with `size` and `alpha` (`beta` = `bias` = 1) on channels `[1, 2, 3]`.
    fn lrn(size: i64, alpha: f32) -> Vec<f64> {
        let x = Tensor::from_vec(&[1, 3, 1, 1], vec![1.0f32, 2.0, 3.0]);
        let attrs = [
            ("size", A::I(size)),
            ("alpha", A::F(alpha)),
            ("beta", A::F(1.0)),
        ];
        let g = one_node(13, "LRN", &[("x", &x)], &[], &attrs, &["x"], &["y"]).unwrap();
        run_refs(&g, &[&x]).remove(0).to_f64_vec()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn lrn_sums_squares_over_a_channel_window() {
        // alpha / size = 1: y = x / (1 + window sum of squares). Size 3 takes one channel on
        // each side; size 2 only the next; size 9 every channel.
        assert_close(&lrn(3, 3.0), &[1.0 / 6.0, 2.0 / 15.0, 3.0 / 14.0]);
        assert_close(&lrn(2, 2.0), &[1.0 / 6.0, 2.0 / 14.0, 3.0 / 10.0]);
        assert_close(&lrn(9, 9.0), &[1.0 / 15.0, 2.0 / 15.0, 3.0 / 15.0]);
        let x = Tensor::from_vec(&[1, 3, 1, 1], vec![1.0f32, 2.0, 3.0]);
        let attrs = [("size", A::I(0))];
        let e = one_node(13, "LRN", &[("x", &x)], &[], &attrs, &["x"], &["y"]).unwrap_err();
        assert!(e.contains("LRN's `size` must be positive, got 0"), "{e}");
    }
}
