//! Concat, pack, unpack, tile and pad: ops that join, split, repeat or border tensors.

use super::{
    arg, dim_padded, dim_scaled, expect_index, expect_len, index_scalar, index_vector, merge_dim,
    remap_tensor, to_usize,
};
use crate::ops::common::{const_ints, expect_arity, normalize_axis};
use crate::ops::{OpResult, PadMode};
use crate::{tensor_map, with_dtype};
use crate::{Dim, Elem, Shape, Tensor, TensorType};
use ndarray::{ArrayViewD, Axis};

/// Errors unless every type in `xs` has the dtype and rank of the first; `op` names the op.
fn expect_uniform(op: &str, xs: &[TensorType]) -> OpResult<()> {
    let first = &xs[0];
    for (k, x) in xs.iter().enumerate().skip(1) {
        if x.dtype != first.dtype || x.rank() != first.rank() {
            return Err(format!(
                "{op} inputs must have one dtype and rank: input {k} is {x} but input 0 is \
                 {first}"
            ));
        }
    }
    Ok(())
}

/// `concat(x0, .., xn-1, axis)`: the inputs joined along `axis` (the last input, a scalar).
pub(super) fn infer_concat(
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    let n = inputs.len();
    if n < 2 {
        return Err(format!(
            "concat takes the values then the axis, at least 2 inputs, got {n}"
        ));
    }
    let values = &inputs[..n - 1];
    let axis = index_scalar(
        "concat's axis (the last input)",
        &inputs[n - 1],
        arg(consts, n - 1),
        false,
    )?;
    expect_uniform("concat", values)?;
    let first = &values[0];
    if first.rank() == 0 {
        return Err(format!(
            "cannot concatenate scalars ({first}); pack stacks them"
        ));
    }
    let Some(axis) = axis else {
        // The axis could be any of them, and along it the size is a sum.
        let dims = match values {
            [only] => only.shape.0.clone(),
            _ => vec![Dim::Unknown; first.rank()],
        };
        return Ok(TensorType::new(first.dtype, Shape(dims)));
    };
    let ax = normalize_axis(axis, first.rank()).map_err(|e| format!("concat of {first}: {e}"))?;
    let mut dims = first.shape.0.clone();
    for (k, x) in values.iter().enumerate().skip(1) {
        for (j, d) in x.shape.dims().iter().enumerate() {
            if j != ax {
                dims[j] = merge_dim(&dims[j], d).ok_or_else(|| {
                    format!(
                        "concat along axis {ax}: input {k} is {x} but input 0 is {first}; sizes \
                         must match on every other axis"
                    )
                })?;
            }
        }
    }
    let along: Vec<&Dim> = values.iter().map(|x| &x.shape.0[ax]).collect();
    let nonzero: Vec<&&Dim> = along.iter().filter(|d| **d != &Dim::Known(0)).collect();
    dims[ax] = match along.iter().map(|d| d.known()).sum::<Option<usize>>() {
        Some(total) => Dim::Known(total),
        None if nonzero.len() == 1 => (**nonzero[0]).clone(),
        None => Dim::Unknown,
    };
    Ok(TensorType::new(first.dtype, Shape(dims)))
}

fn concat_of<T: Elem>(xs: &[&Tensor], axis: usize) -> OpResult<Tensor> {
    let views = views_of::<T>(xs)?;
    let joined = ndarray::concatenate(Axis(axis), &views).map_err(|e| e.to_string())?;
    Ok(T::wrap(joined))
}

fn views_of<'a, T: Elem>(xs: &[&'a Tensor]) -> OpResult<Vec<ArrayViewD<'a, T>>> {
    xs.iter()
        .map(|x| {
            T::view(x)
                .map(|a| a.view())
                .ok_or_else(|| format!("expected {} values, got {x:?}", T::DTYPE))
        })
        .collect()
}

/// Joins the value inputs along the (checked) axis.
pub(super) fn eval_concat(inputs: &[&Tensor]) -> OpResult<Tensor> {
    let (axis, values) = inputs.split_last().expect("arity checked by infer");
    let ax = normalize_axis(axis.to_i64_vec()?[0], values[0].shape().len())?;
    with_dtype!(values[0].dtype(), concat_of(values, ax))
}

/// `pack(x0, .., xn-1)`: the inputs (one type) stacked along a new axis in `[-rank-1, rank]`.
pub(super) fn infer_pack(axis: i64, inputs: &[TensorType]) -> OpResult<TensorType> {
    if inputs.is_empty() {
        return Err("pack takes at least 1 input, got 0".into());
    }
    expect_uniform("pack", inputs)?;
    let first = &inputs[0];
    let mut dims = first.shape.0.clone();
    for (k, x) in inputs.iter().enumerate().skip(1) {
        for (j, d) in x.shape.dims().iter().enumerate() {
            dims[j] = merge_dim(&dims[j], d).ok_or_else(|| {
                format!("pack inputs must have one shape: input {k} is {x} but input 0 is {first}")
            })?;
        }
    }
    let r = first.rank();
    let ax = normalize_axis(axis, r + 1).map_err(|_| {
        format!(
            "axis {axis} is out of range [{}, {r}] for pack of {first}",
            -(r as i64) - 1
        )
    })?;
    dims.insert(ax, Dim::Known(inputs.len()));
    Ok(TensorType::new(first.dtype, Shape(dims)))
}

fn pack_of<T: Elem>(xs: &[&Tensor], axis: usize) -> OpResult<Tensor> {
    let views = views_of::<T>(xs)?;
    let stacked = ndarray::stack(Axis(axis), &views).map_err(|e| e.to_string())?;
    Ok(T::wrap(stacked))
}

/// Stacks the inputs along a new axis.
pub(super) fn eval_pack(axis: i64, inputs: &[&Tensor]) -> OpResult<Tensor> {
    let ax = normalize_axis(axis, inputs[0].shape().len() + 1)?;
    with_dtype!(inputs[0].dtype(), pack_of(inputs, ax))
}

/// `unpack(x)`: `num` outputs, the slices of `x` along `axis` (whose size must be `num`).
pub(super) fn infer_unpack(
    axis: i64,
    num: usize,
    inputs: &[TensorType],
) -> OpResult<Vec<TensorType>> {
    expect_arity("unpack", inputs, 1)?;
    let x = &inputs[0];
    if x.rank() == 0 {
        return Err(format!("cannot unpack a scalar ({x})"));
    }
    let ax = normalize_axis(axis, x.rank()).map_err(|e| format!("unpack of {x}: {e}"))?;
    if let Dim::Known(d) = x.shape.0[ax] {
        if d != num {
            return Err(format!(
                "unpack into {num} outputs along axis {ax} of {x}, whose size is {d}"
            ));
        }
    }
    let mut dims = x.shape.0.clone();
    dims.remove(ax);
    Ok(vec![TensorType::new(x.dtype, Shape(dims)); num])
}

/// The slices of `x` along `axis`, one output each.
pub(super) fn eval_unpack(axis: i64, x: &Tensor) -> Vec<Tensor> {
    let rank = x.shape().len();
    let ax = to_usize(if axis < 0 { axis + rank as i64 } else { axis });
    (0..x.shape()[ax])
        .map(|k| tensor_map!(x, a => a.index_axis(Axis(ax), k).to_owned()))
        .collect()
}

/// `tile(x, multiples)`: `x` repeated `multiples[i]` times along each axis `i`.
pub(super) fn infer_tile(
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    expect_arity("tile", inputs, 2)?;
    let x = &inputs[0];
    let m = index_vector("tile's multiples (input 1)", &inputs[1], arg(consts, 1))?;
    expect_len("multiples (input 1)", m.len, x)?;
    let dims = match m.values {
        Some(m) => {
            if let Some(bad) = m.iter().find(|&&v| v < 0) {
                return Err(format!("multiples {m:?} must be non-negative, got {bad}"));
            }
            x.shape
                .dims()
                .iter()
                .zip(&m)
                .map(|(d, &k)| dim_scaled(d, to_usize(k)))
                .collect::<OpResult<_>>()?
        }
        // Zero times anything is zero.
        None => x
            .shape
            .dims()
            .iter()
            .map(|d| match d {
                Dim::Known(0) => Dim::Known(0),
                _ => Dim::Unknown,
            })
            .collect(),
    };
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

/// Repeats `x` to the output shape `out` (output index `j` reads `j % size`).
pub(super) fn eval_tile(inputs: &[&Tensor], out: &[usize]) -> OpResult<Tensor> {
    let x = inputs[0];
    let maps: Vec<Vec<Option<usize>>> = x
        .shape()
        .iter()
        .zip(out)
        .map(|(&n, &len)| (0..len).map(|j| Some(j % n)).collect())
        .collect();
    remap_tensor(x, &maps, None)
}

/// `pad(x, paddings[, value])`: `paddings` is `[rank, 2]` of before/after counts.
pub(super) fn infer_pad(
    mode: PadMode,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    match mode {
        PadMode::Constant if !(2..=3).contains(&inputs.len()) => {
            return Err(format!(
                "pad takes 2 or 3 inputs (x, paddings, optional constant value), got {}",
                inputs.len()
            ))
        }
        PadMode::Constant => {}
        _ => expect_arity(&format!("pad in {} mode", mode.name()), inputs, 2)?,
    }
    let x = &inputs[0];
    let r = x.rank();
    let p = &inputs[1];
    expect_index("pad's paddings (input 1)", p)?;
    let fits = p.rank() == 2
        && p.shape.0[0].compatible(&Dim::Known(r))
        && p.shape.0[1].compatible(&Dim::Known(2));
    if !fits {
        return Err(format!(
            "paddings (input 1) must have shape [{r}, 2] for x {x}, got {p}"
        ));
    }
    if let Some(v) = inputs.get(2) {
        if v.rank() != 0 || v.dtype != x.dtype {
            return Err(format!(
                "the constant value (input 2) must be a {} scalar like x {x}, got {v}",
                x.dtype
            ));
        }
    }
    let Some(pads) = const_ints(arg(consts, 1))? else {
        return Ok(TensorType::new(x.dtype, Shape(vec![Dim::Unknown; r])));
    };
    if pads.len() != 2 * r {
        return Err(format!(
            "paddings (input 1) must hold {} values for x {x}, got {pads:?}",
            2 * r
        ));
    }
    let mut dims = Vec::with_capacity(r);
    for (i, d) in x.shape.dims().iter().enumerate() {
        let (before, after) = (pads[2 * i], pads[2 * i + 1]);
        if before < 0 || after < 0 {
            return Err(format!(
                "paddings must be non-negative, got [{before}, {after}] for axis {i}"
            ));
        }
        // MirrorPad's limits: reflect never repeats the edge, so it has one cell fewer to use.
        // Edge and wrap pad any amount, but need an element to repeat.
        let limit = match (mode, d) {
            (PadMode::Reflect, Dim::Known(n)) => Some(*n as i64 - 1),
            (PadMode::Symmetric, Dim::Known(n)) => Some(*n as i64),
            (PadMode::Edge | PadMode::Wrap, Dim::Known(0)) => Some(0),
            _ => None,
        };
        if let Some(max) = limit {
            if before > max || after > max {
                return Err(format!(
                    "{} padding of axis {i} (size {d}) must be at most {max} on each side, got \
                     [{before}, {after}]",
                    mode.name()
                ));
            }
        }
        dims.push(dim_padded(d, to_usize(before), to_usize(after))?);
    }
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

/// Borders `x` by the (checked) paddings: a constant, a mirror image, the edge or a wrap.
pub(super) fn eval_pad(mode: PadMode, inputs: &[&Tensor]) -> OpResult<Tensor> {
    let x = inputs[0];
    let pads = inputs[1].to_i64_vec()?;
    let maps: Vec<Vec<Option<usize>>> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let (before, after, n) = (pads[2 * i], pads[2 * i + 1], n as i64);
            (-before..n + after)
                .map(|j| mode.source(j, n).map(to_usize))
                .collect()
        })
        .collect();
    remap_tensor(x, &maps, inputs.get(2).copied())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::ops::PadMode;
    use crate::{DType, Op, Tensor};

    fn pad(mode: PadMode) -> Op {
        Op::Pad { mode }
    }

    #[test]
    fn concat() {
        let a = iota(&[2, 2]);
        let b = Tensor::from_vec(&[2, 1], vec![9.0f32, 8.0]);
        let y = eval1(&Op::Concat, &[&a, &b, &int(1)]);
        assert_eq!(vals(&y), (vec![2, 3], vec![0.0, 1.0, 9.0, 2.0, 3.0, 8.0]));
        let y = eval1(&Op::Concat, &[&a, &a, &Tensor::scalar(-2i64)]);
        assert_eq!(
            vals(&y),
            (vec![4, 2], vec![0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0])
        );
        let e = eval_err(&Op::Concat, &[&a, &b, &int(0)]);
        assert!(
            e.contains("input 1 is f32[2,1] but input 0 is f32[2,2]"),
            "{e}"
        );
        let e = eval_err(&Op::Concat, &[&a, &a.cast(DType::F16), &int(0)]);
        assert!(e.contains("one dtype and rank"), "{e}");
        let e = eval_err(&Op::Concat, &[&a, &a, &int(2)]);
        assert!(e.contains("axis 2 is out of range for rank 2"), "{e}");
        let e = eval_err(&Op::Concat, &[&Tensor::scalar(1.0f32), &int(0)]);
        assert!(e.contains("cannot concatenate scalars"), "{e}");
    }

    #[test]
    fn concat_types() {
        let i = ty(DType::I32, &[]);
        let ax = int(1);
        let a = sty(DType::F32, &["?n", "3"]);
        let b = sty(DType::F32, &["?", "?m"]);
        let z = sty(DType::F32, &["?n", "0"]);
        assert_eq!(
            infer1(
                &Op::Concat,
                &[a.clone(), b.clone(), i.clone()],
                &[None, None, Some(&ax)]
            ),
            "f32[?n,?]"
        );
        assert_eq!(
            infer1(
                &Op::Concat,
                &[a.clone(), a.clone(), i.clone()],
                &[None, None, Some(&ax)]
            ),
            "f32[?n,6]"
        );
        assert_eq!(
            infer1(
                &Op::Concat,
                &[b.clone(), z.clone(), i.clone()],
                &[None, None, Some(&ax)]
            ),
            "f32[?n,?m]"
        );
        assert_eq!(
            infer1(&Op::Concat, &[a.clone(), b, i.clone()], &[]),
            "f32[?,?]"
        );
        assert_eq!(infer1(&Op::Concat, &[a, i], &[]), "f32[?n,3]");
    }

    #[test]
    fn pack_and_unpack() {
        let a = iota(&[2]);
        let b = Tensor::from_vec(&[2], vec![5.0f32, 6.0]);
        let y = eval1(&Op::Pack { axis: 0 }, &[&a, &b]);
        assert_eq!(vals(&y), (vec![2, 2], vec![0.0, 1.0, 5.0, 6.0]));
        let y = eval1(&Op::Pack { axis: -1 }, &[&a, &b]);
        assert_eq!(vals(&y), (vec![2, 2], vec![0.0, 5.0, 1.0, 6.0]));
        let s = eval1(
            &Op::Pack { axis: 0 },
            &[&Tensor::scalar(true), &Tensor::scalar(false)],
        );
        assert_eq!(s, Tensor::from_vec(&[2], vec![true, false]));
        let e = eval_err(&Op::Pack { axis: 2 }, &[&a, &b]);
        assert!(e.contains("axis 2 is out of range [-2, 1]"), "{e}");
        let e = eval_err(&Op::Pack { axis: 0 }, &[&a, &iota(&[3])]);
        assert!(e.contains("input 1 is f32[3] but input 0 is f32[2]"), "{e}");
        let t = sty(DType::F32, &["?n", "3"]);
        assert_eq!(
            infer1(
                &Op::Pack { axis: 1 },
                &[t.clone(), t.clone(), t.clone()],
                &[]
            ),
            "f32[?n,3,3]"
        );

        let x = iota(&[2, 3]);
        let parts = super::super::eval(&Op::Unpack { axis: 1, num: 3 }, &[&x]).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(vals(&parts[2]), (vec![2], vec![2.0, 5.0]));
        let parts = super::super::eval(&Op::Unpack { axis: -2, num: 2 }, &[&x]).unwrap();
        assert_eq!(vals(&parts[1]), (vec![3], vec![3.0, 4.0, 5.0]));
        let e = eval_err(&Op::Unpack { axis: 0, num: 3 }, &[&x]);
        assert!(
            e.contains("unpack into 3 outputs along axis 0 of f32[2,3], whose size is 2"),
            "{e}"
        );
        let out = super::super::infer(&Op::Unpack { axis: 0, num: 4 }, &[t], &[]).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].to_string(), "f32[3]");
    }

    #[test]
    fn tile() {
        let x = iota(&[2, 2]);
        let y = eval1(&Op::Tile, &[&x, &ints(&[1, 2])]);
        assert_eq!(
            vals(&y),
            (vec![2, 4], vec![0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 3.0])
        );
        let y = eval1(&Op::Tile, &[&x, &ints(&[2, 0])]);
        assert_eq!(y.shape(), &[4, 0]);
        let e = eval_err(&Op::Tile, &[&x, &ints(&[1, -1])]);
        assert!(
            e.contains("multiples [1, -1] must be non-negative, got -1"),
            "{e}"
        );
        let e = eval_err(&Op::Tile, &[&x, &ints(&[2])]);
        assert!(
            e.contains("multiples (input 1) has 1 entries but x f32[2,2] has rank 2"),
            "{e}"
        );
        let t = sty(DType::F32, &["?n", "3", "0"]);
        let m = ints(&[1, 2, 5]);
        assert_eq!(
            infer1(
                &Op::Tile,
                &[t.clone(), ty(DType::I32, &[3])],
                &[None, Some(&m)]
            ),
            "f32[?n,6,0]"
        );
        assert_eq!(
            infer1(&Op::Tile, &[t, ty(DType::I32, &[3])], &[]),
            "f32[?,?,0]"
        );
    }

    #[test]
    fn pad_constant() {
        let x = iota(&[2, 2]);
        let p = ints(&[1, 0, 0, 2]).cast(DType::I64);
        let p = super::super::reshaped(&p, &[2, 2]).unwrap();
        let y = eval1(&pad(PadMode::Constant), &[&x, &p]);
        assert_eq!(
            vals(&y),
            (
                vec![3, 4],
                vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0]
            )
        );
        let y = eval1(&pad(PadMode::Constant), &[&x, &p, &Tensor::scalar(-1.0f32)]);
        assert_eq!(y.to_f64_vec()[..5], [-1.0, -1.0, -1.0, -1.0, 0.0]);
        let e = eval_err(&pad(PadMode::Constant), &[&x, &p, &Tensor::scalar(-1.0f64)]);
        assert!(
            e.contains("must be a f32 scalar like x f32[2,2], got f64[]"),
            "{e}"
        );
        let e = eval_err(&pad(PadMode::Constant), &[&x, &ints(&[1, 1])]);
        assert!(
            e.contains("paddings (input 1) must have shape [2, 2] for x f32[2,2], got i32[2]"),
            "{e}"
        );
        let neg = super::super::reshaped(&ints(&[0, 0, -1, 0]), &[2, 2]).unwrap();
        let e = eval_err(&pad(PadMode::Constant), &[&x, &neg]);
        assert!(e.contains("non-negative, got [-1, 0] for axis 1"), "{e}");
    }

    #[test]
    fn pad_reflect_and_symmetric() {
        let x = Tensor::from_vec(&[3], vec![1i32, 2, 3]);
        let p = Tensor::from_vec(&[1, 2], vec![2i32, 2]);
        let y = eval1(&pad(PadMode::Reflect), &[&x, &p]);
        assert_eq!(y.to_i64_vec().unwrap(), vec![3, 2, 1, 2, 3, 2, 1]);
        let y = eval1(&pad(PadMode::Symmetric), &[&x, &p]);
        assert_eq!(y.to_i64_vec().unwrap(), vec![2, 1, 1, 2, 3, 3, 2]);
        let p3 = Tensor::from_vec(&[1, 2], vec![3i32, 0]);
        let y = eval1(&pad(PadMode::Symmetric), &[&x, &p3]);
        assert_eq!(y.to_i64_vec().unwrap(), vec![3, 2, 1, 1, 2, 3]);
        let e = eval_err(&pad(PadMode::Reflect), &[&x, &p3]);
        assert!(
            e.contains(
                "reflect padding of axis 0 (size 3) must be at most 2 on each side, got [3, 0]"
            ),
            "{e}"
        );
        let e = eval_err(&pad(PadMode::Reflect), &[&x, &p, &Tensor::scalar(0i32)]);
        assert!(
            e.contains("pad in reflect mode takes 2 inputs, got 3"),
            "{e}"
        );
        // 2-D reflect: rows and columns mirror independently.
        let x = iota(&[2, 3]);
        let p = super::super::reshaped(&ints(&[1, 0, 0, 1]), &[2, 2]).unwrap();
        let y = eval1(&pad(PadMode::Reflect), &[&x, &p]);
        assert_eq!(
            vals(&y),
            (
                vec![3, 4],
                vec![3.0, 4.0, 5.0, 4.0, 0.0, 1.0, 2.0, 1.0, 3.0, 4.0, 5.0, 4.0]
            )
        );
        let t = sty(DType::F32, &["?n", "3"]);
        assert_eq!(
            infer1(
                &pad(PadMode::Symmetric),
                &[t.clone(), ty(DType::I32, &[2, 2])],
                &[None, Some(&p)]
            ),
            "f32[?,4]"
        );
        let p0 = super::super::reshaped(&ints(&[0, 0, 3, 3]), &[2, 2]).unwrap();
        assert_eq!(
            infer1(
                &pad(PadMode::Symmetric),
                &[t.clone(), ty(DType::I32, &[2, 2])],
                &[None, Some(&p0)]
            ),
            "f32[?n,9]"
        );
        assert_eq!(
            infer1(&pad(PadMode::Symmetric), &[t, ty(DType::I32, &[2, 2])], &[]),
            "f32[?,?]"
        );
    }

    #[test]
    fn pad_edge_and_wrap() {
        // Both pad any amount: edge repeats the end elements, wrap repeats x periodically.
        let x = Tensor::from_vec(&[3], vec![1i32, 2, 3]);
        let p = Tensor::from_vec(&[1, 2], vec![4i32, 2]);
        let y = eval1(&pad(PadMode::Edge), &[&x, &p]);
        assert_eq!(y.to_i64_vec().unwrap(), vec![1, 1, 1, 1, 1, 2, 3, 3, 3]);
        let y = eval1(&pad(PadMode::Wrap), &[&x, &p]);
        assert_eq!(y.to_i64_vec().unwrap(), vec![3, 1, 2, 3, 1, 2, 3, 1, 2]);
        // 2-D: rows and columns independently.
        let x = iota(&[2, 2]);
        let p = super::super::reshaped(&ints(&[1, 0, 0, 1]), &[2, 2]).unwrap();
        let y = eval1(&pad(PadMode::Wrap), &[&x, &p]);
        assert_eq!(
            vals(&y),
            (
                vec![3, 3],
                vec![2.0, 3.0, 2.0, 0.0, 1.0, 0.0, 2.0, 3.0, 2.0]
            )
        );
        let y = eval1(&pad(PadMode::Edge), &[&x, &p]);
        assert_eq!(
            vals(&y),
            (
                vec![3, 3],
                vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 2.0, 3.0, 3.0]
            )
        );
        // An empty axis has nothing to repeat; no constant value is taken.
        let empty = Tensor::from_vec(&[0], Vec::<i32>::new());
        let p1 = Tensor::from_vec(&[1, 2], vec![1i32, 0]);
        let e = eval_err(&pad(PadMode::Wrap), &[&empty, &p1]);
        assert!(
            e.contains("wrap padding of axis 0 (size 0) must be at most 0 on each side"),
            "{e}"
        );
        let e = eval_err(&pad(PadMode::Edge), &[&x, &p, &Tensor::scalar(0.0f32)]);
        assert!(e.contains("pad in edge mode takes 2 inputs, got 3"), "{e}");
        assert_eq!(PadMode::parse("wrap"), Some(PadMode::Wrap));
        assert_eq!(PadMode::parse("mirror"), None);
    }
}
