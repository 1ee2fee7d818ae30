//! Tensors in and out of each wire form: TensorFlow's `TensorProto` (TensorFlow Serving gRPC),
//! JSON values (TensorFlow Serving REST), and the Open Inference Protocol's datatypes, typed
//! content lists and raw bytes (KServe v2, REST and gRPC).
//!
//! Every size a request states is checked against the data it carries, or against the
//! server's request limit, before memory is reserved for it.

use crate::error::{invalid, Result, ServeError};
use crate::json::{self, Json, Number};
use lathe_ir::{tensor_match, DType, Elem, Tensor};
use lathe_proto::inference::InferTensorContents;
use lathe_proto::tensorflow::{tensor_shape_proto, DataType, TensorProto, TensorShapeProto};

/// TensorFlow's number for an IR dtype; `None` for the storage types TensorFlow lacks.
pub fn tf_dtype(d: DType) -> Option<DataType> {
    Some(match d {
        DType::F32 => DataType::DtFloat,
        DType::F64 => DataType::DtDouble,
        DType::F16 => DataType::DtHalf,
        DType::BF16 => DataType::DtBfloat16,
        DType::I8 => DataType::DtInt8,
        DType::I16 => DataType::DtInt16,
        DType::I32 => DataType::DtInt32,
        DType::I64 => DataType::DtInt64,
        DType::U8 => DataType::DtUint8,
        DType::U16 => DataType::DtUint16,
        DType::U32 => DataType::DtUint32,
        DType::U64 => DataType::DtUint64,
        DType::Bool => DataType::DtBool,
        _ => return None,
    })
}

/// The Open Inference Protocol's name for an IR dtype.
pub fn kserve_dtype(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::Bool => "BOOL",
        DType::U8 => "UINT8",
        DType::U16 => "UINT16",
        DType::U32 => "UINT32",
        DType::U64 => "UINT64",
        DType::I8 => "INT8",
        DType::I16 => "INT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::F16 => "FP16",
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        DType::BF16 => "BF16",
        _ => return None,
    })
}

/// The IR dtype of an Open Inference Protocol datatype name.
pub fn from_kserve_dtype(name: &str) -> Option<DType> {
    [
        DType::Bool,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F16,
        DType::F32,
        DType::F64,
        DType::BF16,
    ]
    .into_iter()
    .find(|&d| kserve_dtype(d) == Some(name))
}

/// Element count of `dims`, refused when it overflows or its bytes would pass `max_bytes`.
pub fn checked_elements(
    what: &str,
    dtype: DType,
    dims: &[usize],
    max_bytes: usize,
) -> Result<usize> {
    let n = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    match n {
        Some(n) if n.saturating_mul(dtype.size_bytes()) <= max_bytes => Ok(n),
        _ => Err(ServeError::TooLarge(format!(
            "{what}: shape {dims:?} of {dtype} is larger than the server's limit of {max_bytes} bytes"
        ))),
    }
}

/// Dimensions as sizes: negative ones are refused.
fn sizes(what: &str, dims: impl IntoIterator<Item = i64>) -> Result<Vec<usize>> {
    dims.into_iter()
        .map(|d| usize::try_from(d).map_err(|_| invalid!("{what}: dimension {d} is negative")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// TensorProto (TensorFlow Serving gRPC)

/// A request's `TensorProto` as a tensor, `what` naming it in errors.
pub fn from_tensor_proto(what: &str, p: &TensorProto, max_bytes: usize) -> Result<Tensor> {
    let dtype = lathe_compiler::import::tensorflow::tensor::dtype(p.dtype)
        .map_err(|e| invalid!("{what}: {e}"))?;
    let shape = p.tensor_shape.as_ref();
    if shape.is_some_and(|s| s.unknown_rank) {
        return Err(invalid!("{what}: the tensor's shape has an unknown rank"));
    }
    let dims = sizes(
        what,
        shape.into_iter().flat_map(|s| s.dim.iter().map(|d| d.size)),
    )?;
    // A short value list is repeated to fill the shape: bound the shape, not the list.
    checked_elements(what, dtype, &dims, max_bytes)?;
    lathe_compiler::import::tensorflow::tensor::tensor(p).map_err(|e| invalid!("{what}: {e}"))
}

/// A tensor as a `TensorProto` (raw little-endian `tensor_content`).
pub fn to_tensor_proto(what: &str, t: &Tensor) -> Result<TensorProto> {
    let dtype = tf_dtype(t.dtype()).ok_or_else(|| {
        ServeError::Internal(format!("{what}: {} has no TensorFlow dtype", t.dtype()))
    })?;
    Ok(TensorProto {
        dtype: dtype as i32,
        tensor_shape: Some(shape_proto(t.shape().iter().map(|&d| d as i64))),
        tensor_content: t.to_le_bytes(),
        ..TensorProto::default()
    })
}

/// A `TensorShapeProto` of these sizes (-1 for unknown).
pub fn shape_proto(dims: impl IntoIterator<Item = i64>) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|size| tensor_shape_proto::Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

// ---------------------------------------------------------------------------------------
// JSON (TensorFlow Serving REST; the Open Inference Protocol's REST `data`)

/// A JSON value (a scalar or nested lists) as a tensor of `dtype`; `what` names it.
pub fn from_json(what: &str, v: &Json, dtype: DType) -> Result<Tensor> {
    let dims = probe_dims(v);
    let mut leaves = Vec::with_capacity(dims.iter().product());
    collect_leaves(what, v, &dims, &mut leaves)?;
    from_leaves(what, dtype, &dims, &leaves)
}

/// Rows given as separate JSON values (TensorFlow Serving's row format) as one tensor of
/// `dtype` whose axis 0 is the rows; `what` names it.
pub fn from_json_rows(what: &str, rows: &[&Json], dtype: DType) -> Result<Tensor> {
    let mut dims = vec![rows.len()];
    dims.extend(rows.first().map_or(Vec::new(), |r| probe_dims(r)));
    let mut leaves = Vec::with_capacity(dims.iter().product());
    for row in rows {
        collect_leaves(what, row, &dims[1..], &mut leaves)?;
    }
    from_leaves(what, dtype, &dims, &leaves)
}

/// The sizes of nested lists, read along their first elements.
fn probe_dims(mut v: &Json) -> Vec<usize> {
    let mut dims = Vec::new();
    while let Json::Arr(items) = v {
        dims.push(items.len());
        match items.first() {
            Some(first) => v = first,
            None => break,
        }
    }
    dims
}

/// The leaves of a nested list, checked to be rectangular with sizes `dims`.
fn collect_leaves<'a>(
    what: &str,
    v: &'a Json,
    dims: &[usize],
    out: &mut Vec<&'a Json>,
) -> Result<()> {
    match (v, dims.split_first()) {
        (Json::Arr(items), Some((&n, rest))) if items.len() == n => items
            .iter()
            .try_for_each(|item| collect_leaves(what, item, rest, out)),
        (Json::Arr(items), Some((&n, _))) => Err(invalid!(
            "{what}: the nested lists are not rectangular (a list of {} where {n} were expected)",
            items.len()
        )),
        (Json::Arr(_), None) => Err(invalid!(
            "{what}: the nested lists are not rectangular (a list where a value was expected)"
        )),
        (leaf, None) => {
            out.push(leaf);
            Ok(())
        }
        (leaf, Some(_)) => Err(invalid!(
            "{what}: the nested lists are not rectangular ({} where a list was expected)",
            leaf.kind()
        )),
    }
}

/// A tensor of `dtype` and `dims` from its row-major leaf values.
pub fn from_leaves(what: &str, dtype: DType, dims: &[usize], leaves: &[&Json]) -> Result<Tensor> {
    let bad = |v: &Json| invalid!("{what}: {} is not a value of dtype {dtype}", v.to_text());
    if leaves.iter().any(|v| v.get("b64").is_some()) {
        return Err(invalid!(
            "{what}: base64 `{{\"b64\": ...}}` values feed string tensors; this input is {dtype} and Lathe's models take no strings"
        ));
    }
    if dtype.is_float() {
        let vals = (leaves.iter())
            .map(|v| match v {
                Json::Num(n) => Ok(n.as_f64()),
                v => Err(bad(v)),
            })
            .collect::<Result<Vec<f64>>>()?;
        return Ok(Tensor::from_f64(dtype, dims, &vals));
    }
    let vals = (leaves.iter())
        .map(|v| match (v, dtype) {
            (Json::Bool(b), DType::Bool) => Ok(i64::from(*b)),
            (Json::Num(Number::Int(i)), _) if fits(*i as i128, dtype) => Ok(*i),
            (Json::Num(Number::UInt(u)), DType::U64) => Ok(*u as i64),
            (Json::Num(Number::Float(f)), _)
                if f.fract() == 0.0 && f.is_finite() && fits(*f as i128, dtype) =>
            {
                Ok(*f as i64)
            }
            (v, _) => Err(bad(v)),
        })
        .collect::<Result<Vec<i64>>>()?;
    Ok(Tensor::from_i64(dtype, dims, &vals))
}

/// Whether `v` is a value of the integer (or bool) dtype `d`.
fn fits(v: i128, d: DType) -> bool {
    let (lo, hi): (i128, i128) = match d {
        DType::Bool => (0, 1),
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I64 => (i64::MIN.into(), i64::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        DType::U16 => (0, u16::MAX.into()),
        DType::U32 => (0, u32::MAX.into()),
        DType::U64 => (0, u64::MAX.into()),
        _ => return false,
    };
    (lo..=hi).contains(&v)
}

/// Writes elements `[start, start + count)` of `t` as JSON nested to `dims`
/// (`dims.iter().product() == count`).
pub fn write_json(out: &mut String, t: &Tensor, start: usize, dims: &[usize]) {
    fn nest<T: Elem>(out: &mut String, vals: &[T], dims: &[usize], each: &dyn Fn(&mut String, T)) {
        match dims.split_first() {
            None => each(out, vals[0]),
            Some((&n, rest)) => {
                let step: usize = rest.iter().product();
                out.push('[');
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    nest(out, &vals[i * step..], rest, each);
                }
                out.push(']');
            }
        }
    }
    // Outputs are standard layout: copy only a tensor that is not (this runs once per row).
    let owned;
    let t = if t.is_standard_layout() {
        t
    } else {
        owned = t.clone().into_standard_layout();
        &owned
    };
    let count: usize = dims.iter().product();
    tensor_match!(t, a => {
        let vals = &a.as_slice().expect("standard layout")[start..start + count];
        nest(out, vals, dims, &|out, x| write_elem(out, x));
    })
}

/// One element as JSON.
fn write_elem<T: Elem>(out: &mut String, x: T) {
    use std::fmt::Write as _;
    match T::DTYPE {
        DType::Bool => out.push_str(if x.to_i64() != 0 { "true" } else { "false" }),
        DType::U64 => {
            let _ = write!(out, "{}", x.to_i64() as u64);
        }
        d if d.is_int() => {
            let _ = write!(out, "{}", x.to_i64());
        }
        DType::F64 => json::write_float(out, x.to_f64()),
        _ => json::write_f32(out, x.to_f64() as f32),
    }
}

/// A tensor's elements as a flat JSON list (the Open Inference Protocol's REST `data`).
pub fn write_json_flat(out: &mut String, t: &Tensor) {
    write_json(out, t, 0, &[t.len()]);
}

// ---------------------------------------------------------------------------------------
// Open Inference Protocol gRPC contents

/// A tensor from typed `contents`, checked against `dims`.
pub fn from_contents(
    what: &str,
    dtype: DType,
    dims: &[usize],
    c: &InferTensorContents,
) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let check = |len: usize, field: &str| {
        if len == n {
            Ok(())
        } else {
            Err(invalid!(
                "{what}: shape {dims:?} has {n} elements, `contents.{field}` holds {len}"
            ))
        }
    };
    macro_rules! ints {
        ($field:ident) => {{
            check(c.$field.len(), stringify!($field))?;
            let vals: Vec<i64> = c.$field.iter().map(|&v| v as i64).collect();
            if let Some(v) = vals
                .iter()
                .find(|&&v| !fits(v as i128, dtype) && dtype != DType::U64)
            {
                return Err(invalid!("{what}: {v} is not a value of dtype {dtype}"));
            }
            Ok(Tensor::from_i64(dtype, dims, &vals))
        }};
    }
    match dtype {
        DType::Bool => {
            check(c.bool_contents.len(), "bool_contents")?;
            Ok(Tensor::from_vec(dims, c.bool_contents.clone()))
        }
        DType::I8 | DType::I16 | DType::I32 => ints!(int_contents),
        DType::I64 => ints!(int64_contents),
        DType::U8 | DType::U16 | DType::U32 => ints!(uint_contents),
        DType::U64 => ints!(uint64_contents),
        DType::F32 => {
            check(c.fp32_contents.len(), "fp32_contents")?;
            Ok(Tensor::from_vec(dims, c.fp32_contents.clone()))
        }
        DType::F64 => {
            check(c.fp64_contents.len(), "fp64_contents")?;
            Ok(Tensor::from_vec(dims, c.fp64_contents.clone()))
        }
        d => Err(invalid!(
            "{what}: {d} has no typed contents list in the protocol; send it in raw_input_contents"
        )),
    }
}

/// Parses `dims` of a KServe tensor (`what` names it).
pub fn kserve_dims(what: &str, shape: &[i64]) -> Result<Vec<usize>> {
    sizes(what, shape.iter().copied())
}
