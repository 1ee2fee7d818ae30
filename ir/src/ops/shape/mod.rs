//! Shape family: ops that move, select, repeat or generate elements without arithmetic on them.
//!
//! Configuration (target shape, permutation, paddings, axis, slice bounds, multiples, dims) is an
//! input tensor. `infer` uses its value when that input is a constant; otherwise it still works
//! out the rank from the configuration input's static shape and leaves the dims it cannot know
//! `?`, passing symbolic dims through wherever they are copied unchanged. `eval` runs `infer`
//! with every input constant first, so the checks and the output shape live in one place and
//! the evaluators only move data.

mod bitcast;
mod combine;
mod gather;
mod generate;
mod index;
mod reshape;
mod scatter;
mod slice;
mod trilu;

pub use index::resolve_index;
pub use scatter::Combine;
pub use slice::strided_slice_selection;
pub use trilu::trilu_keeps;

use super::common::{const_ints, expect_int};
use super::{Op, OpResult};
use crate::{tensor_map, with_dtype};
use crate::{DType, Dim, Elem, Tensor, TensorType};
use ndarray::{ArrayD, IxDyn};

/// Output types of shape ops; also their verifier check.
pub fn infer(
    op: &Op,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<Vec<TensorType>> {
    let one = |t: OpResult<TensorType>| t.map(|t| vec![t]);
    match op {
        Op::Reshape => one(reshape::infer_reshape(inputs, consts)),
        Op::Squeeze { axes } => one(reshape::infer_squeeze(axes, inputs)),
        Op::ExpandDims => one(reshape::infer_expand_dims(inputs, consts)),
        Op::Transpose => one(reshape::infer_transpose(inputs, consts)),
        Op::Shape { output } => one(reshape::infer_shape(*output, inputs)),
        Op::Bitcast { to } => one(bitcast::infer_bitcast(*to, inputs)),
        Op::Pad { mode } => one(combine::infer_pad(*mode, inputs, consts)),
        Op::Concat => one(combine::infer_concat(inputs, consts)),
        Op::Pack { axis } => one(combine::infer_pack(*axis, inputs)),
        Op::Unpack { axis, num } => combine::infer_unpack(*axis, *num, inputs),
        Op::Tile => one(combine::infer_tile(inputs, consts)),
        Op::StridedSlice(attrs) => one(slice::infer_strided_slice(attrs, inputs, consts)),
        Op::Slice => one(slice::infer_slice(inputs, consts)),
        Op::Gather { batch_dims } => one(gather::infer_gather(*batch_dims, inputs, consts)),
        Op::GatherElements { axis } => one(index::infer_gather_elements(*axis, inputs, consts)),
        Op::GatherNd { batch_dims } => one(index::infer_gather_nd(*batch_dims, inputs, consts)),
        Op::ScatterElements { axis, .. } => {
            one(scatter::infer_scatter_elements(*axis, inputs, consts))
        }
        Op::ScatterNd { .. } => one(scatter::infer_scatter_nd(inputs, consts)),
        Op::Trilu { .. } => one(trilu::infer_trilu(inputs, consts)),
        Op::Fill => one(generate::infer_fill(inputs, consts)),
        Op::Range => one(generate::infer_range(inputs, consts)),
        _ => unreachable!("{op:?} is not a shape op"),
    }
}

/// Evaluates shape ops (TensorFlow semantics, every dtype).
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let consts: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    let out = infer(op, &types, &consts)?;
    let dims = out.iter().map(concrete).collect::<OpResult<Vec<_>>>()?;
    let results = match op {
        // These keep the row-major order of the elements and only change the shape.
        Op::Reshape | Op::Squeeze { .. } | Op::ExpandDims => vec![reshaped(inputs[0], &dims[0])?],
        Op::Transpose => vec![reshape::eval_transpose(inputs)?],
        Op::Shape { output } => vec![reshape::eval_shape(*output, inputs[0])?],
        Op::Bitcast { to } => vec![bitcast::eval_bitcast(*to, inputs[0], &dims[0])?],
        Op::Pad { mode } => vec![combine::eval_pad(*mode, inputs)?],
        Op::Concat => vec![combine::eval_concat(inputs)?],
        Op::Pack { axis } => vec![combine::eval_pack(*axis, inputs)?],
        Op::Unpack { axis, .. } => combine::eval_unpack(*axis, inputs[0]),
        Op::Tile => vec![combine::eval_tile(inputs, &dims[0])?],
        Op::StridedSlice(attrs) => vec![slice::eval_strided_slice(attrs, inputs, &dims[0])?],
        Op::Slice => vec![slice::eval_slice(inputs, &dims[0])?],
        Op::Gather { batch_dims } => vec![gather::eval_gather(*batch_dims, inputs, &dims[0])?],
        Op::GatherElements { axis } => vec![index::eval_gather_elements(*axis, inputs)?],
        Op::GatherNd { batch_dims } => vec![index::eval_gather_nd(*batch_dims, inputs, &dims[0])?],
        Op::ScatterElements { axis, reduction } => {
            vec![scatter::eval_scatter_elements(*axis, *reduction, inputs)?]
        }
        Op::ScatterNd { reduction } => vec![scatter::eval_scatter_nd(*reduction, inputs)?],
        Op::Trilu { upper } => vec![trilu::eval_trilu(*upper, inputs)?],
        Op::Fill => vec![generate::eval_fill(inputs[1], &dims[0])],
        Op::Range => vec![generate::eval_range(inputs, dims[0][0])?],
        _ => unreachable!("{op:?} is not a shape op"),
    };
    Ok(results
        .into_iter()
        .map(Tensor::into_standard_layout)
        .collect())
}

/// The value of input `i` when it is a constant (tolerates a short `consts`).
fn arg<'a>(consts: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    consts.get(i).copied().flatten()
}

/// Errors unless a configuration input holds i32 or i64 values, the index types TensorFlow
/// accepts for shapes, axes and bounds.
fn expect_index(what: &str, t: &TensorType) -> OpResult<()> {
    expect_int(what, t)?;
    if !matches!(t.dtype, DType::I32 | DType::I64) {
        return Err(format!("{what} must be i32 or i64, got {t}"));
    }
    Ok(())
}

/// What is known of a 1-D index input: its length when static, its values when constant.
struct IndexVector {
    len: Option<usize>,
    values: Option<Vec<i64>>,
}

/// Checks a 1-D i32/i64 configuration input and reads what is known of it.
fn index_vector(what: &str, t: &TensorType, c: Option<&Tensor>) -> OpResult<IndexVector> {
    expect_index(what, t)?;
    if t.rank() != 1 {
        return Err(format!("{what} must be a 1-D tensor, got {t}"));
    }
    let values = const_ints(c)?;
    let len = values.as_ref().map(Vec::len).or(t.shape.0[0].known());
    Ok(IndexVector { len, values })
}

/// Checks a scalar i32/i64 configuration input (or, when `allow_single`, a 1-element vector)
/// and returns its value when constant.
fn index_scalar(
    what: &str,
    t: &TensorType,
    c: Option<&Tensor>,
    allow_single: bool,
) -> OpResult<Option<i64>> {
    expect_index(what, t)?;
    let single = allow_single && t.rank() == 1 && t.shape.0[0].compatible(&Dim::Known(1));
    if t.rank() != 0 && !single {
        let want = if allow_single {
            "a scalar or a 1-element vector"
        } else {
            "a scalar"
        };
        return Err(format!("{what} must be {want}, got {t}"));
    }
    match const_ints(c)? {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(v) => Err(format!("{what} must hold one value, got {v:?}")),
    }
}

/// Errors when a configuration vector of length `len` does not have one entry per axis of `x`.
fn expect_len(what: &str, len: Option<usize>, x: &TensorType) -> OpResult<()> {
    match len {
        Some(n) if n != x.rank() => Err(format!(
            "{what} has {n} entries but x {x} has rank {}; it needs one per axis",
            x.rank()
        )),
        _ => Ok(()),
    }
}

/// Converts a checked non-negative i64 to usize.
fn to_usize(v: i64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// `d * m`, keeping the symbol when `m` is 1; errors on overflow.
fn dim_scaled(d: &Dim, m: usize) -> OpResult<Dim> {
    Ok(match d {
        _ if m == 1 => d.clone(),
        _ if m == 0 => Dim::Known(0),
        Dim::Known(n) => Dim::Known(n.checked_mul(m).ok_or_else(|| too_big(d))?),
        _ => Dim::Unknown,
    })
}

/// `before + d + after`, keeping the symbol when nothing is added; errors on overflow.
fn dim_padded(d: &Dim, before: usize, after: usize) -> OpResult<Dim> {
    Ok(match d {
        _ if before == 0 && after == 0 => d.clone(),
        Dim::Known(n) => Dim::Known(
            n.checked_add(before)
                .and_then(|v| v.checked_add(after))
                .ok_or_else(|| too_big(d))?,
        ),
        _ => Dim::Unknown,
    })
}

fn too_big(d: &Dim) -> String {
    format!("a dim grown from {d} does not fit in usize")
}

/// The one dim two inputs must share (known beats symbolic beats unknown), or `None` when
/// their known sizes differ.
fn merge_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => (x == y).then(|| a.clone()),
        (Dim::Known(_), _) => Some(a.clone()),
        (_, Dim::Known(_)) => Some(b.clone()),
        (Dim::Sym(_), _) => Some(a.clone()),
        _ => Some(b.clone()),
    }
}

/// The sizes of an inferred type that `eval` needs to be concrete.
fn concrete(t: &TensorType) -> OpResult<Vec<usize>> {
    t.shape.as_known().ok_or_else(|| {
        format!("internal error: shape {t} inferred from constant inputs is not concrete")
    })
}

/// `x`'s elements, in row-major order, with shape `dims` (same element count).
fn reshaped(x: &Tensor, dims: &[usize]) -> OpResult<Tensor> {
    Ok(tensor_map!(x, a => a
        .to_shape(IxDyn(dims))
        .map_err(|e| format!("cannot reshape {:?} to {dims:?}: {e}", a.shape()))?
        .into_owned()))
}

/// Per output axis, for each output index: the input index it copies, or `None` for a fill.
type IndexMaps = [Vec<Option<usize>>];

/// The array whose element `[o0, o1, ..]` is `a[maps[0][o0], maps[1][o1], ..]`, or `fill` where
/// a map says `None`. Pad, slices and tile are each this with their own maps.
fn remap<T: Elem>(a: &ArrayD<T>, maps: &IndexMaps, fill: T) -> ArrayD<T> {
    let shape: Vec<usize> = maps.iter().map(Vec::len).collect();
    let mut src = vec![0usize; maps.len()];
    ArrayD::from_shape_fn(IxDyn(&shape), |out: IxDyn| {
        for (k, map) in maps.iter().enumerate() {
            match map[out[k]] {
                Some(i) => src[k] = i,
                None => return fill,
            }
        }
        a[&src[..]]
    })
}

fn remap_of<T: Elem>(x: &Tensor, maps: &IndexMaps, fill: Option<&Tensor>) -> OpResult<Tensor> {
    let a = T::view(x).ok_or("internal error: dtype mismatch in remap")?;
    let fill = match fill {
        None => T::default(),
        Some(f) => *T::view(f)
            .and_then(|v| v.iter().next())
            .ok_or_else(|| format!("the fill value must be one {} value, got {f:?}", T::DTYPE))?,
    };
    Ok(T::wrap(remap(a, maps, fill)))
}

/// [`remap`] on a tensor of any dtype; `fill` (same dtype, one element) defaults to zero/false.
fn remap_tensor(x: &Tensor, maps: &IndexMaps, fill: Option<&Tensor>) -> OpResult<Tensor> {
    with_dtype!(x.dtype(), remap_of(x, maps, fill))
}

/// Shorthands for the unit tests of the submodules.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::Shape;

    /// A known type.
    pub fn ty(dtype: DType, dims: &[usize]) -> TensorType {
        TensorType::known(dtype, dims)
    }

    /// A type from dims written as text: `"?n"` is a symbol, `"?"` unknown, else a size.
    pub fn sty(dtype: DType, dims: &[&str]) -> TensorType {
        let d = dims
            .iter()
            .map(|s| match *s {
                "?" => Dim::Unknown,
                s if s.starts_with('?') => Dim::sym(&s[1..]),
                s => Dim::Known(s.parse().expect("a size")),
            })
            .collect();
        TensorType::new(dtype, Shape(d))
    }

    /// An f32 tensor holding `0, 1, 2, ...` in row-major order.
    pub fn iota(dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product();
        Tensor::from_vec(dims, (0..n).map(|v| v as f32).collect())
    }

    /// An i32 vector.
    pub fn ints(v: &[i32]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec())
    }

    /// An i32 scalar.
    pub fn int(v: i32) -> Tensor {
        Tensor::scalar(v)
    }

    /// Evaluates `op` and returns its one output.
    pub fn eval1(op: &Op, inputs: &[&Tensor]) -> Tensor {
        let mut out = eval(op, inputs).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    /// Evaluates `op`, expecting an error, and returns its message.
    pub fn eval_err(op: &Op, inputs: &[&Tensor]) -> String {
        match eval(op, inputs) {
            Ok(v) => panic!("{op}: expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    /// Infers the one output type of `op`; `consts` parallel to `inputs`.
    pub fn infer1(op: &Op, inputs: &[TensorType], consts: &[Option<&Tensor>]) -> String {
        let out = infer(op, inputs, consts).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert_eq!(out.len(), 1);
        out[0].to_string()
    }

    /// Infers `op`, expecting an error, and returns its message.
    pub fn infer_err(op: &Op, inputs: &[TensorType], consts: &[Option<&Tensor>]) -> String {
        match infer(op, inputs, consts) {
            Ok(v) => panic!("{op}: expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    /// The shape and the values (as f64) of a tensor.
    pub fn vals(t: &Tensor) -> (Vec<usize>, Vec<f64>) {
        (t.shape().to_vec(), t.to_f64_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn dim_arithmetic_keeps_symbols_when_unchanged() {
        let n = Dim::sym("n");
        assert_eq!(dim_scaled(&n, 1), Ok(n.clone()));
        assert_eq!(dim_scaled(&n, 0), Ok(Dim::Known(0)));
        assert_eq!(dim_scaled(&n, 2), Ok(Dim::Unknown));
        assert_eq!(dim_scaled(&Dim::Known(3), 2), Ok(Dim::Known(6)));
        assert!(dim_scaled(&Dim::Known(3), usize::MAX).is_err());
        assert_eq!(dim_padded(&n, 0, 0), Ok(n.clone()));
        assert_eq!(dim_padded(&n, 1, 0), Ok(Dim::Unknown));
        assert_eq!(dim_padded(&Dim::Known(3), 1, 2), Ok(Dim::Known(6)));
        assert!(dim_padded(&Dim::Known(3), usize::MAX, 0).is_err());
        assert_eq!(merge_dim(&n, &Dim::Known(2)), Some(Dim::Known(2)));
        assert_eq!(merge_dim(&Dim::Unknown, &n), Some(n.clone()));
        assert_eq!(merge_dim(&Dim::Known(2), &Dim::Known(3)), None);
    }

    #[test]
    fn config_inputs_must_be_i32_or_i64() {
        let e = infer_err(
            &Op::Reshape,
            &[ty(DType::F32, &[6]), ty(DType::U8, &[2])],
            &[],
        );
        assert!(e.contains("must be i32 or i64, got u8[2]"), "{e}");
        let e = infer_err(
            &Op::Reshape,
            &[ty(DType::F32, &[6]), ty(DType::F32, &[2])],
            &[],
        );
        assert!(e.contains("must be an integer tensor, got f32[2]"), "{e}");
    }

    #[test]
    fn every_dtype_moves_through_the_evaluators() {
        for dt in crate::ops::DTypeClass::Any.dtypes() {
            let x = Tensor::from_f64(dt, &[2, 2], &[1.0, 0.0, 0.0, 1.0]);
            let t = eval1(&Op::Transpose, &[&x, &ints(&[1, 0])]);
            assert_eq!(t, x, "{dt}");
            let p = eval1(
                &Op::Pad {
                    mode: super::super::PadMode::Constant,
                },
                &[&x, &Tensor::from_vec(&[2, 2], vec![0i64, 1, 0, 0])],
            );
            assert_eq!(p.dtype(), dt);
            assert_eq!(p.to_f64_vec(), vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        }
    }
}
