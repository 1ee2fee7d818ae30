//! Strided slice and slice.
//!
//! `strided_slice` follows TensorFlow's `ValidateStridedSliceOp`: the sparse spec (one entry per
//! element of begin/end/strides, with ellipsis and new axes) is first expanded to a dense spec
//! with one entry per axis of `x`, then each axis is canonicalized as Python slicing does
//! (negative indices count from the end, out-of-range bounds clamp), and finally new axes are
//! inserted and shrunk axes dropped.

use super::{arg, expect_len, index_vector, remap_tensor, reshaped, to_usize};
use crate::ops::common::expect_arity;
use crate::ops::{OpResult, StridedSliceAttrs};
use crate::{Dim, Shape, Tensor, TensorType};

/// One axis of `x` as the dense spec sees it; `None` values are not constant.
struct DenseAxis {
    /// The entry of begin/end/strides this axis came from (`None` for ellipsis axes).
    entry: Option<usize>,
    begin: Option<i64>,
    end: Option<i64>,
    stride: Option<i64>,
    begin_masked: bool,
    end_masked: bool,
    shrink: bool,
}

/// Where an output axis comes from.
enum OutAxis {
    /// The slice of dense axis `i`.
    Dense(usize),
    /// A size-1 axis from `new_axis_mask`.
    New,
}

/// What is known of begin, end and strides.
struct Bounds {
    len: usize,
    begin: Option<Vec<i64>>,
    end: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

fn bit(mask: i64, i: usize) -> bool {
    i < 64 && (mask >> i) & 1 != 0
}

/// Expands the sparse spec to one [`DenseAxis`] per axis of a rank-`rank` input.
fn dense_spec(
    attrs: &StridedSliceAttrs,
    rank: usize,
    b: &Bounds,
) -> OpResult<(Vec<DenseAxis>, Vec<OutAxis>)> {
    if attrs.ellipsis_mask.count_ones() > 1 {
        return Err(format!(
            "ellipsis_mask {:#b} has more than one bit set; a slice has at most one ellipsis",
            attrs.ellipsis_mask
        ));
    }
    let n = b.len;
    let ellipsis = (0..n).find(|&i| bit(attrs.ellipsis_mask, i));
    // New axes after the ellipsis take no input axis, so the ellipsis covers that many more.
    let new_after = ellipsis.map_or(0, |e| {
        (e + 1..n).filter(|&i| bit(attrs.new_axis_mask, i)).count()
    });
    // Without an ellipsis, one is implied at the end: unmentioned axes are taken whole.
    let entries = if ellipsis.is_some() { n } else { n + 1 };
    let mut dense = Vec::with_capacity(rank);
    let mut out = Vec::new();
    for i in 0..entries {
        let is_ellipsis = ellipsis == Some(i) || (ellipsis.is_none() && i == n);
        if is_ellipsis {
            let next = (rank + 1 + new_after).saturating_sub(entries - i).min(rank);
            while dense.len() < next {
                out.push(OutAxis::Dense(dense.len()));
                dense.push(DenseAxis {
                    entry: None,
                    begin: Some(0),
                    end: Some(0),
                    stride: Some(1),
                    begin_masked: true,
                    end_masked: true,
                    shrink: false,
                });
            }
        } else if bit(attrs.new_axis_mask, i) {
            out.push(OutAxis::New);
        } else {
            if dense.len() == rank {
                return Err(format!(
                    "the slice has more indices than x has axes ({rank}): begin/end/strides \
                     entry {i} has no axis left to index"
                ));
            }
            let shrink = bit(attrs.shrink_axis_mask, i);
            if !shrink {
                out.push(OutAxis::Dense(dense.len()));
            }
            dense.push(DenseAxis {
                entry: Some(i),
                begin: b.begin.as_ref().map(|v| v[i]),
                end: b.end.as_ref().map(|v| v[i]),
                stride: b.strides.as_ref().map(|v| v[i]),
                begin_masked: bit(attrs.begin_mask, i),
                end_masked: bit(attrs.end_mask, i),
                shrink,
            });
        }
    }
    if dense.len() != rank {
        return Err(format!(
            "the slice indexes {} axes but x has {rank}",
            dense.len()
        ));
    }
    Ok((dense, out))
}

/// A concrete selection along one axis: `len` indices `start, start + step, ...`.
struct Selection {
    start: i64,
    step: i64,
    len: usize,
}

/// The size of dense axis `i` (of size `d`) after slicing, and the selection when concrete.
fn slice_axis(i: usize, d: &Dim, a: &DenseAxis) -> OpResult<(Dim, Option<Selection>)> {
    let name = match a.entry {
        Some(e) => format!("entry {e} (axis {i})"),
        None => format!("axis {i}"),
    };
    if a.stride == Some(0) {
        return Err(format!("strides {name} must be non-zero"));
    }
    if let (true, Some(s)) = (a.shrink, a.stride) {
        if s < 0 {
            return Err(format!(
                "shrink_axis_mask selects one index at {name}, which needs a positive stride, \
                 got {s}"
            ));
        }
    }
    let (Some(n), Some(s)) = (d.known(), a.stride) else {
        let whole = a.begin_masked && a.end_masked && matches!(a.stride, Some(1) | Some(-1));
        let dim = match () {
            _ if a.shrink => Dim::Known(1),
            // x[:] and x[::-1] keep the size, whatever it is.
            _ if whole => d.clone(),
            _ => Dim::Unknown,
        };
        return Ok((dim, None));
    };
    let n = n as i64;
    if a.shrink {
        let Some(b) = a.begin else {
            return Ok((Dim::Known(1), None));
        };
        let fwd = if b < 0 { b + n } else { b };
        if !(0..n).contains(&fwd) {
            return Err(format!("index {b} at {name} is out of bounds for size {n}"));
        }
        let sel = Selection {
            start: fwd,
            step: 1,
            len: 1,
        };
        return Ok((Dim::Known(1), Some(sel)));
    }
    // Python's rules: masked bounds take the whole axis in the stride's direction; others
    // count negatives from the end and clamp to the axis.
    let (lo, hi) = if s > 0 { (0, n) } else { (-1, n - 1) };
    let canonical = |x: Option<i64>, masked: bool, is_begin: bool| -> Option<i64> {
        if masked {
            return Some(if (s > 0) == is_begin { lo } else { hi });
        }
        let x = x?;
        let fwd = if x < 0 { x.saturating_add(n) } else { x };
        Some(fwd.clamp(lo, hi))
    };
    let begin = canonical(a.begin, a.begin_masked, true);
    let end = canonical(a.end, a.end_masked, false);
    let (Some(begin), Some(end)) = (begin, end) else {
        return Ok((Dim::Unknown, None));
    };
    let span = end - begin;
    let len = if span == 0 || (span < 0) != (s < 0) {
        0
    } else {
        span / s + i64::from(span % s != 0)
    };
    let sel = Selection {
        start: begin,
        step: s,
        len: to_usize(len),
    };
    Ok((Dim::Known(sel.len), Some(sel)))
}

/// Reads begin/end/strides: 1-D, one i32/i64 dtype, one length (which must be static).
fn read_bounds(inputs: &[TensorType], consts: &[Option<&Tensor>]) -> OpResult<Bounds> {
    let names = ["begin (input 1)", "end (input 2)", "strides (input 3)"];
    let mut parts = Vec::with_capacity(3);
    for (k, name) in names.iter().enumerate() {
        parts.push(index_vector(
            &format!("strided_slice's {name}"),
            &inputs[k + 1],
            arg(consts, k + 1),
        )?);
    }
    let (b, e, s) = (&inputs[1], &inputs[2], &inputs[3]);
    let lens: Vec<usize> = parts.iter().filter_map(|p| p.len).collect();
    if b.dtype != e.dtype || b.dtype != s.dtype || lens.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!(
            "begin, end and strides must be 1-D of one dtype and length, got {b}, {e} and {s}"
        ));
    }
    let Some(&len) = lens.first() else {
        return Err(format!(
            "the output rank cannot be known: begin, end and strides ({b}, {e}, {s}) have no \
             static length"
        ));
    };
    if len >= 64 {
        return Err(format!(
            "a slice has at most 63 entries (the masks are 64-bit), got {len}"
        ));
    }
    let mut vals = parts.into_iter().map(|p| p.values);
    Ok(Bounds {
        len,
        begin: vals.next().flatten(),
        end: vals.next().flatten(),
        strides: vals.next().flatten(),
    })
}

/// The output dims, and per axis of `x` the concrete selection when every value is known.
fn strided_slice_plan(
    attrs: &StridedSliceAttrs,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<(Vec<Dim>, Vec<Option<Selection>>)> {
    expect_arity("strided_slice", inputs, 4)?;
    let x = &inputs[0];
    let bounds = read_bounds(inputs, consts)?;
    let (dense, out) = dense_spec(attrs, x.rank(), &bounds)?;
    let mut sizes = Vec::with_capacity(dense.len());
    let mut sels = Vec::with_capacity(dense.len());
    for (i, (d, a)) in x.shape.dims().iter().zip(&dense).enumerate() {
        let (size, sel) = slice_axis(i, d, a)?;
        sizes.push(size);
        sels.push(sel);
    }
    let dims = out
        .iter()
        .map(|o| match o {
            OutAxis::Dense(i) => sizes[*i].clone(),
            OutAxis::New => Dim::Known(1),
        })
        .collect();
    Ok((dims, sels))
}

/// `strided_slice(x, begin, end, strides)` with TensorFlow's masks.
pub(super) fn infer_strided_slice(
    attrs: &StridedSliceAttrs,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    let (dims, _) = strided_slice_plan(attrs, inputs, consts)?;
    Ok(TensorType::new(inputs[0].dtype, Shape(dims)))
}

/// What a strided slice of `x` with constant `begin`, `end` and `strides` reads: per axis of
/// `x`, `(start, step, len)` (element `j` of the selection is `start + j * step`). The output
/// is the selection reshaped (new and shrunk axes are of size 1). For backends that lower the
/// op: one definition of TensorFlow's masks.
pub fn strided_slice_selection(
    attrs: &StridedSliceAttrs,
    x: &TensorType,
    bounds: [&Tensor; 3],
) -> OpResult<Vec<(i64, i64, usize)>> {
    let mut types = vec![x.clone()];
    types.extend(bounds.iter().map(|t| t.ty()));
    let consts = [None, Some(bounds[0]), Some(bounds[1]), Some(bounds[2])];
    let (_, sels) = strided_slice_plan(attrs, &types, &consts)?;
    sels.into_iter()
        .map(|s| {
            let s = s.ok_or("the slice is not concrete: the input's shape is not known")?;
            Ok((s.start, s.step, s.len))
        })
        .collect()
}

/// Selects the strided slice; `out` is the final (inferred) shape.
pub(super) fn eval_strided_slice(
    attrs: &StridedSliceAttrs,
    inputs: &[&Tensor],
    out: &[usize],
) -> OpResult<Tensor> {
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let consts: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    let (_, sels) = strided_slice_plan(attrs, &types, &consts)?;
    let maps = sels
        .iter()
        .map(|s| {
            let s = s.as_ref().ok_or("internal error: slice not concrete")?;
            Ok((0..s.len as i64)
                .map(|j| Some(to_usize(s.start + j * s.step)))
                .collect())
        })
        .collect::<OpResult<Vec<_>>>()?;
    // The selection has the dense rank; new and shrunk axes are size 1, so a reshape fixes it.
    reshaped(&remap_tensor(inputs[0], &maps, None)?, out)
}

/// `slice(x, begin, size)`: `size[i]` elements from `begin[i]`, -1 meaning to the end.
pub(super) fn infer_slice(
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<TensorType> {
    expect_arity("slice", inputs, 3)?;
    let x = &inputs[0];
    let begin = index_vector("slice's begin (input 1)", &inputs[1], arg(consts, 1))?;
    let size = index_vector("slice's size (input 2)", &inputs[2], arg(consts, 2))?;
    if inputs[1].dtype != inputs[2].dtype {
        return Err(format!(
            "begin and size must have one dtype, got {} and {}",
            inputs[1], inputs[2]
        ));
    }
    expect_len("begin (input 1)", begin.len, x)?;
    expect_len("size (input 2)", size.len, x)?;
    let mut dims = Vec::with_capacity(x.rank());
    for (i, d) in x.shape.dims().iter().enumerate() {
        let b = begin.values.as_ref().map(|v| v[i]);
        let s = size.values.as_ref().map(|v| v[i]);
        let n = d.known().map(|n| n as i64);
        if let Some(b) = b {
            if b < 0 || n.is_some_and(|n| b > n) {
                return Err(format!(
                    "begin[{i}] = {b} is out of range [0, {d}] for x {x}"
                ));
            }
        }
        let dim = match (s, b, n) {
            (Some(s), _, _) if s < -1 => {
                return Err(format!("size[{i}] = {s} must be -1 or non-negative"))
            }
            (Some(-1), Some(0), _) => d.clone(),
            (Some(-1), Some(b), Some(n)) => Dim::Known(to_usize(n - b)),
            (Some(s), Some(b), Some(n)) if s >= 0 && b + s > n => {
                return Err(format!(
                    "size[{i}] = {s} from begin {b} runs past the end of axis {i} of x {x}"
                ))
            }
            (Some(s), _, _) if s >= 0 => Dim::Known(to_usize(s)),
            _ => Dim::Unknown,
        };
        dims.push(dim);
    }
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

/// Copies the block of shape `out` that starts at `begin`.
pub(super) fn eval_slice(inputs: &[&Tensor], out: &[usize]) -> OpResult<Tensor> {
    let begin = inputs[1].to_i64_vec()?;
    let maps: Vec<Vec<Option<usize>>> = begin
        .iter()
        .zip(out)
        .map(|(&b, &len)| (0..len).map(|j| Some(to_usize(b) + j)).collect())
        .collect();
    remap_tensor(inputs[0], &maps, None)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::ops::StridedSliceAttrs;
    use crate::{DType, Op, Tensor, TensorType};

    fn ss(begin_mask: i64, end_mask: i64, ellipsis: i64, new_axis: i64, shrink: i64) -> Op {
        Op::StridedSlice(StridedSliceAttrs {
            begin_mask,
            end_mask,
            ellipsis_mask: ellipsis,
            new_axis_mask: new_axis,
            shrink_axis_mask: shrink,
        })
    }

    /// Evaluates `x[spec]` on a 3x4 iota; returns shape and values.
    fn on3x4(op: &Op, b: &[i32], e: &[i32], s: &[i32]) -> (Vec<usize>, Vec<f64>) {
        vals(&eval1(op, &[&iota(&[3, 4]), &ints(b), &ints(e), &ints(s)]))
    }

    #[test]
    fn basic_ranges_and_negative_indices() {
        // x[1:3] keeps the unmentioned axis whole.
        assert_eq!(
            on3x4(&ss(0, 0, 0, 0, 0), &[1], &[3], &[1]),
            (vec![2, 4], (4..12).map(f64::from).collect())
        );
        // x[-2:]
        assert_eq!(
            on3x4(&ss(0, 1, 0, 0, 0), &[-2], &[0], &[1]),
            (vec![2, 4], (4..12).map(f64::from).collect())
        );
        // x[:, 1::2]
        assert_eq!(
            on3x4(&ss(1, 3, 0, 0, 0), &[0, 1], &[0, 0], &[1, 2]),
            (vec![3, 2], vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
        );
    }

    #[test]
    fn negative_strides() {
        // x[::-1]
        assert_eq!(
            on3x4(&ss(1, 1, 0, 0, 0), &[0], &[0], &[-1]).1[..4],
            [8.0, 9.0, 10.0, 11.0]
        );
        // x[0, ::-2] on a row: 3, 1
        assert_eq!(
            on3x4(&ss(2, 2, 0, 0, 1), &[0, 0], &[1, 0], &[1, -2]),
            (vec![2], vec![3.0, 1.0])
        );
        // x[2:0:-1] (end excluded), x[-1:-5:-1] past the start clamps.
        assert_eq!(on3x4(&ss(0, 0, 0, 0, 0), &[2], &[0], &[-1]).0, vec![2, 4]);
        let (shape, v) = on3x4(&ss(0, 0, 0, 0, 0), &[-1], &[-5], &[-1]);
        assert_eq!(shape, vec![3, 4]);
        assert_eq!(v[..4], [8.0, 9.0, 10.0, 11.0]);
        // Opposite direction: empty.
        assert_eq!(on3x4(&ss(0, 0, 0, 0, 0), &[0], &[2], &[-1]).0, vec![0, 4]);
    }

    #[test]
    fn clamping_out_of_range_bounds() {
        // x[-10:10] is all of x; x[5:] is empty; x[1:100:2] is rows 1.
        assert_eq!(on3x4(&ss(0, 0, 0, 0, 0), &[-10], &[10], &[1]).0, vec![3, 4]);
        assert_eq!(on3x4(&ss(0, 1, 0, 0, 0), &[5], &[0], &[1]).0, vec![0, 4]);
        assert_eq!(
            on3x4(&ss(0, 0, 0, 0, 0), &[1], &[100], &[2]),
            (vec![1, 4], vec![4.0, 5.0, 6.0, 7.0])
        );
    }

    #[test]
    fn shrink_new_axis_and_ellipsis() {
        // x[1]
        assert_eq!(
            on3x4(&ss(0, 0, 0, 0, 1), &[1], &[2], &[1]),
            (vec![4], vec![4.0, 5.0, 6.0, 7.0])
        );
        // x[-1, -1]: both shrunk to a scalar; end values are ignored.
        assert_eq!(
            on3x4(&ss(0, 0, 0, 0, 3), &[-1, -1], &[0, 0], &[1, 1]),
            (vec![], vec![11.0])
        );
        // x[:, tf.newaxis]
        assert_eq!(
            on3x4(&ss(1, 1, 0, 2, 0), &[0, 0], &[0, 0], &[1, 1]).0,
            vec![3, 1, 4]
        );
        // x[tf.newaxis, ..., tf.newaxis]
        assert_eq!(
            on3x4(&ss(0, 0, 2, 5, 0), &[0, 0, 0], &[0, 0, 0], &[1, 1, 1]).0,
            vec![1, 3, 4, 1]
        );
        // x[..., 1:3]
        assert_eq!(
            on3x4(&ss(0, 0, 1, 0, 0), &[0, 1], &[0, 3], &[1, 1]),
            (vec![3, 2], vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0])
        );
        // x[..., 2] on rank 3
        let x = iota(&[2, 3, 4]);
        let y = eval1(
            &ss(0, 0, 1, 0, 2),
            &[&x, &ints(&[0, 2]), &ints(&[0, 3]), &ints(&[1, 1])],
        );
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.to_f64_vec()[..3], [2.0, 6.0, 10.0]);
        // x[1, ...] with the ellipsis covering nothing extra on rank 2, and x[...] alone.
        assert_eq!(
            on3x4(&ss(0, 0, 2, 0, 1), &[1, 0], &[2, 0], &[1, 1]).0,
            vec![4]
        );
        assert_eq!(on3x4(&ss(0, 0, 1, 0, 0), &[0], &[0], &[1]).0, vec![3, 4]);
        // The new axis bit wins over shrink on the same entry, as in TensorFlow.
        assert_eq!(on3x4(&ss(0, 0, 0, 1, 1), &[0], &[0], &[1]).0, vec![1, 3, 4]);
    }

    #[test]
    fn strided_slice_errors() {
        let e = vals_err(&ss(0, 0, 0, 0, 0), &[0], &[1], &[0]);
        assert!(
            e.contains("strides entry 0 (axis 0) must be non-zero"),
            "{e}"
        );
        let e = vals_err(&ss(0, 0, 0, 0, 1), &[3], &[4], &[1]);
        assert!(
            e.contains("index 3 at entry 0 (axis 0) is out of bounds for size 3"),
            "{e}"
        );
        let e = vals_err(&ss(0, 0, 0, 0, 1), &[-4], &[0], &[1]);
        assert!(e.contains("index -4"), "{e}");
        let e = vals_err(&ss(0, 0, 0, 0, 1), &[1], &[0], &[-1]);
        assert!(e.contains("needs a positive stride, got -1"), "{e}");
        let e = vals_err(&ss(0, 0, 3, 0, 0), &[0, 0], &[0, 0], &[1, 1]);
        assert!(e.contains("more than one bit set"), "{e}");
        let e = vals_err(&ss(0, 0, 0, 0, 0), &[0, 0, 0], &[1, 1, 1], &[1, 1, 1]);
        assert!(e.contains("more indices than x has axes (2)"), "{e}");
        let x = iota(&[3, 4]);
        let e = eval_err(
            &ss(0, 0, 0, 0, 0),
            &[&x, &ints(&[0]), &ints(&[0, 1]), &ints(&[1])],
        );
        assert!(e.contains("one dtype and length"), "{e}");
    }

    fn vals_err(op: &Op, b: &[i32], e: &[i32], s: &[i32]) -> String {
        eval_err(op, &[&iota(&[3, 4]), &ints(b), &ints(e), &ints(s)])
    }

    #[test]
    fn strided_slice_types_without_constants() {
        let x = sty(DType::F32, &["?n", "4", "?"]);
        let v = |n: usize| ty(DType::I32, &[n]);
        let three = [x.clone(), v(3), v(3), v(3)];
        // Masks alone give the rank: x[1, tf.newaxis, ...] -> [1, 4, ?]: the ellipsis
        // takes axes 1 and 2 whole.
        assert_eq!(infer1(&ss(0, 0, 4, 2, 1), &three, &[]), "f32[1,4,?]");
        // Constant strides and full masks keep dims, symbols included: x[:, ::-1].
        let s = ints(&[1, -1]);
        let b = ints(&[0, 0]);
        let c = [None, Some(&b), None, Some(&s)];
        let two = [x.clone(), v(2), v(2), v(2)];
        assert_eq!(infer1(&ss(3, 3, 0, 0, 0), &two, &c), "f32[?n,4,?]");
        // Constant everything on a symbolic axis: x[1:3] is ?, the rest exact.
        let (b, e, s) = (ints(&[1, 0]), ints(&[3, 2]), ints(&[1, 1]));
        assert_eq!(
            infer1(
                &ss(0, 0, 0, 0, 0),
                &two,
                &[None, Some(&b), Some(&e), Some(&s)]
            ),
            "f32[?,2,?]"
        );
        let unknown_len = TensorType::new(DType::I32, crate::Shape(vec![crate::Dim::Unknown]));
        let e = infer_err(
            &ss(0, 0, 0, 0, 0),
            &[x, unknown_len.clone(), unknown_len.clone(), unknown_len],
            &[],
        );
        assert!(e.contains("output rank cannot be known"), "{e}");
    }

    #[test]
    fn strided_slice_on_bool_and_i64_bounds() {
        let x = Tensor::from_vec(&[4], vec![true, false, false, true]);
        let b = Tensor::from_vec(&[1], vec![3i64]);
        let e = Tensor::from_vec(&[1], vec![0i64]);
        let s = Tensor::from_vec(&[1], vec![-2i64]);
        let y = eval1(&ss(0, 0, 0, 0, 0), &[&x, &b, &e, &s]);
        assert_eq!(y, Tensor::from_vec(&[2], vec![true, false]));
    }

    #[test]
    fn slice() {
        let x = iota(&[3, 4]);
        let y = eval1(&Op::Slice, &[&x, &ints(&[1, 1]), &ints(&[2, -1])]);
        assert_eq!(vals(&y), (vec![2, 3], vec![5.0, 6.0, 7.0, 9.0, 10.0, 11.0]));
        let y = eval1(&Op::Slice, &[&x, &ints(&[3, 0]), &ints(&[-1, 0])]);
        assert_eq!(y.shape(), &[0, 0]);
        let e = eval_err(&Op::Slice, &[&x, &ints(&[1, 1]), &ints(&[3, 1])]);
        assert!(
            e.contains("size[0] = 3 from begin 1 runs past the end of axis 0"),
            "{e}"
        );
        let e = eval_err(&Op::Slice, &[&x, &ints(&[-1, 0]), &ints(&[1, 1])]);
        assert!(e.contains("begin[0] = -1 is out of range [0, 3]"), "{e}");
        let e = eval_err(&Op::Slice, &[&x, &ints(&[0, 0]), &ints(&[1, -2])]);
        assert!(e.contains("size[1] = -2 must be -1 or non-negative"), "{e}");
        let t = sty(DType::F32, &["?n", "4"]);
        let (b, s) = (ints(&[0, 1]), ints(&[-1, 2]));
        let v = ty(DType::I32, &[2]);
        assert_eq!(
            infer1(
                &Op::Slice,
                &[t.clone(), v.clone(), v.clone()],
                &[None, Some(&b), Some(&s)]
            ),
            "f32[?n,2]"
        );
        // Constant sizes are the output dims even when begin is not constant.
        assert_eq!(
            infer1(
                &Op::Slice,
                &[t.clone(), v.clone(), v.clone()],
                &[None, None, Some(&s)]
            ),
            "f32[?,2]"
        );
        assert_eq!(infer1(&Op::Slice, &[t, v.clone(), v], &[]), "f32[?,?]");
    }
}
