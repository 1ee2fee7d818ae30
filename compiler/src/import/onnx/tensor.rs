//! ONNX `TensorProto`, element types and shapes to IR tensors, dtypes and shapes.
//!
//! A `TensorProto` holds its elements in one of three places: `raw_data` (little-endian, one
//! byte per bool); a typed list (`float_data`, `int32_data`, `int64_data`, `double_data`,
//! `uint64_data`, each holding every element; 16-bit floats and narrow integers travel in
//! `int32_data`); or an external file next to the model (`data_location = EXTERNAL`, with
//! `location`, `offset` and `length`). Every size is checked against what the data holds
//! before anything is allocated, and an external file must lie inside the model's directory.
//! The low-precision types (float8, float4, int4, int2, ...) keep one stored byte per
//! `int32_data` entry, and 4- and 2-bit elements are packed (`packed.rs`).

use super::packed;
use crate::import::value_list::FromList;
use lathe_ir::{DType, Dim, Shape, Tensor};
use lathe_proto::onnx::tensor_proto::{DataLocation, DataType};
use lathe_proto::onnx::{TensorProto, TensorShapeProto};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// The largest tensor (in elements) a model may declare: more than any real model holds, and
/// small enough that its byte count cannot overflow.
const MAX_ELEMENTS: usize = 1 << 40;

/// The IR dtype of an ONNX element type (the raw `TensorProto.DataType` number).
pub fn dtype(raw: i32) -> Result<DType, String> {
    let dt = DataType::try_from(raw).map_err(|_| format!("unknown ONNX element type {raw}"))?;
    Ok(match dt {
        DataType::Float => DType::F32,
        DataType::Double => DType::F64,
        DataType::Float16 => DType::F16,
        DataType::Bfloat16 => DType::BF16,
        DataType::Int8 => DType::I8,
        DataType::Int16 => DType::I16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Uint8 => DType::U8,
        DataType::Uint16 => DType::U16,
        DataType::Uint32 => DType::U32,
        DataType::Uint64 => DType::U64,
        DataType::Bool => DType::Bool,
        DataType::Float8e4m3fn => DType::F8E4M3FN,
        DataType::Float8e4m3fnuz => DType::F8E4M3FNUZ,
        DataType::Float8e5m2 => DType::F8E5M2,
        DataType::Float8e5m2fnuz => DType::F8E5M2FNUZ,
        DataType::Float8e8m0 => DType::F8E8M0,
        DataType::Float4e2m1 => DType::F4E2M1,
        DataType::Int4 => DType::I4,
        DataType::Uint4 => DType::U4,
        DataType::Int2 => DType::I2,
        DataType::Uint2 => DType::U2,
        other => {
            return Err(format!(
                "element type {} is not supported",
                other.as_str_name()
            ))
        }
    })
}

/// The ONNX element type number of an IR dtype.
pub fn onnx_dtype(dt: DType) -> i32 {
    (match dt {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::I8 => DataType::Int8,
        DType::I16 => DataType::Int16,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::U8 => DataType::Uint8,
        DType::U16 => DataType::Uint16,
        DType::U32 => DataType::Uint32,
        DType::U64 => DataType::Uint64,
        DType::Bool => DataType::Bool,
        DType::F8E4M3FN => DataType::Float8e4m3fn,
        DType::F8E4M3FNUZ => DataType::Float8e4m3fnuz,
        DType::F8E5M2 => DataType::Float8e5m2,
        DType::F8E5M2FNUZ => DataType::Float8e5m2fnuz,
        DType::F8E8M0 => DataType::Float8e8m0,
        DType::F4E2M1 => DataType::Float4e2m1,
        DType::I4 => DataType::Int4,
        DType::U4 => DataType::Uint4,
        DType::I2 => DataType::Int2,
        DType::U2 => DataType::Uint2,
    }) as i32
}

/// A value's shape: a `dim_value` is a known size, a `dim_param` a symbol of that name, and a
/// dimension with neither a symbol made by `unnamed(axis)`.
pub fn shape(p: &TensorShapeProto, unnamed: impl Fn(usize) -> Dim) -> Result<Shape, String> {
    use lathe_proto::onnx::tensor_shape_proto::dimension::Value;
    p.dim
        .iter()
        .enumerate()
        .map(|(axis, d)| match &d.value {
            Some(Value::DimValue(n)) if *n >= 0 => Ok(Dim::Known(*n as usize)),
            Some(Value::DimValue(n)) => Err(format!("dimension {axis} has negative size {n}")),
            Some(Value::DimParam(s)) if !s.is_empty() => Ok(Dim::sym(s)),
            _ => Ok(unnamed(axis)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Shape)
}

/// The dims of a tensor, checked: none negative, and the element count bounded.
fn dims(p: &TensorProto) -> Result<Vec<usize>, String> {
    let mut n: usize = 1;
    let dims = p
        .dims
        .iter()
        .map(|&d| {
            let d = usize::try_from(d).map_err(|_| format!("negative dimension {d}"))?;
            n = n
                .checked_mul(d)
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| format!("shape {:?} has too many elements", p.dims))?;
            Ok(d)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(dims)
}

/// Decodes a tensor whose data is in the message itself (no external data).
pub fn tensor(p: &TensorProto) -> Result<Tensor, String> {
    tensor_in(p, None)
}

/// Decodes a tensor; external data is read relative to `dir` (the model's directory), and is
/// an error without one.
pub fn tensor_in(p: &TensorProto, dir: Option<&Path>) -> Result<Tensor, String> {
    let raw = p.data_type.unwrap_or(0);
    let dt = dtype(raw)?;
    let dims = dims(p)?;
    let n: usize = dims.iter().product();
    if p.data_location == Some(DataLocation::External as i32) {
        let dir = dir.ok_or("external data is only read from a model file")?;
        let bytes = external(p, dir, packed::stored_bytes(dt, n))?;
        return packed::decode(dt, &dims, &bytes);
    }
    if let Some(raw) = &p.raw_data {
        return packed::decode(dt, &dims, raw);
    }
    if dt.is_low_precision() {
        return low_precision_list(dt, &dims, &p.int32_data);
    }
    match dt {
        DType::F32 => list(dt, &dims, &p.float_data),
        DType::F64 => list(dt, &dims, &p.double_data),
        DType::I64 => list(dt, &dims, &p.int64_data),
        DType::U32 | DType::U64 => list(dt, &dims, &p.uint64_data),
        DType::F16
        | DType::BF16
        | DType::I8
        | DType::I16
        | DType::I32
        | DType::U8
        | DType::U16
        | DType::Bool => list(dt, &dims, &p.int32_data),
        _ => unreachable!("low-precision types are decoded above"),
    }
}

/// A low-precision tensor from `int32_data`, which holds one stored byte per entry (packed for
/// the 4- and 2-bit types, see `packed`).
fn low_precision_list(dt: DType, dims: &[usize], vals: &[i32]) -> Result<Tensor, String> {
    let n: usize = dims.iter().product();
    let want = packed::stored_bytes(dt, n);
    if vals.len() != want {
        return Err(format!(
            "{dt} tensor of shape {dims:?} needs {want} entries of int32_data, got {}",
            vals.len()
        ));
    }
    let bytes = vals
        .iter()
        .map(|&v| u8::try_from(v).map_err(|_| format!("{dt} data entry {v} is not a byte")))
        .collect::<Result<Vec<u8>, String>>()?;
    packed::decode(dt, dims, &bytes)
}

/// A tensor from a typed list, which must hold exactly one value per element.
fn list<V: Copy>(dt: DType, dims: &[usize], vals: &[V]) -> Result<Tensor, String>
where
    Tensor: FromList<V>,
{
    let n: usize = dims.iter().product();
    if vals.len() != n {
        return Err(format!(
            "tensor of shape {dims:?} holds {} values, not {n}",
            vals.len()
        ));
    }
    Ok(Tensor::from_list(dt, dims, vals.to_vec()))
}

/// The `want` bytes of an external tensor: `location` (a relative path that stays inside
/// `dir`), `offset` and `length` (which, when given, must equal `want`) checked against the
/// file before it is read.
fn external(p: &TensorProto, dir: &Path, want: usize) -> Result<Vec<u8>, String> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &p.external_data {
        let value = e.value.as_deref().unwrap_or("");
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("external data {what} `{value}` is not a number"))
        };
        match e.key.as_deref().unwrap_or("") {
            "location" => location = Some(value),
            "offset" => offset = number("offset")?,
            "length" => length = Some(number("length")?),
            _ => {}
        }
    }
    let location = location.ok_or("external data without a `location`")?;
    let file = inside(dir, location)?;
    if let Some(len) = length {
        if len != want as u64 {
            return Err(format!(
                "external data `{location}` has length {len}, but the tensor needs {want} bytes"
            ));
        }
    }
    let io = |e: std::io::Error| format!("external data `{location}`: {e}");
    let mut f = std::fs::File::open(&file).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let end = offset.checked_add(want as u64);
    if end.is_none_or(|end| end > size) {
        return Err(format!(
            "external data `{location}` holds {size} bytes, too few for {want} bytes at offset \
             {offset}"
        ));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = vec![0u8; want];
    f.read_exact(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// `location` under `dir`, refused when it is absolute or climbs out of `dir` (also through a
/// symbolic link).
fn inside(dir: &Path, location: &str) -> Result<PathBuf, String> {
    let rel = Path::new(location);
    let plain = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if location.is_empty() || !plain {
        return Err(format!(
            "external data location `{location}` must be a path inside the model's directory"
        ));
    }
    let root = dir
        .canonicalize()
        .map_err(|e| format!("model directory: {e}"))?;
    let file = root
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("external data `{location}`: {e}"))?;
    if !file.starts_with(&root) {
        return Err(format!(
            "external data location `{location}` leaves the model's directory"
        ));
    }
    Ok(file)
}

/// A `TensorProto` holding `t` in `raw_data` (tests and tools write test data with it).
pub fn to_proto(t: &Tensor, name: &str) -> TensorProto {
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(onnx_dtype(t.dtype())),
        name: Some(name.to_string()),
        raw_data: Some(packed::encode(t)),
        ..TensorProto::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_proto::onnx::StringStringEntryProto;

    fn proto(dt: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: Some(dt as i32),
            ..TensorProto::default()
        }
    }

    #[test]
    fn raw_and_typed_lists() {
        let mut p = proto(DataType::Float, &[2]);
        p.raw_data = Some([1.5f32.to_le_bytes(), (-2f32).to_le_bytes()].concat());
        assert_eq!(tensor(&p).unwrap().to_f64_vec(), vec![1.5, -2.0]);
        let mut p = proto(DataType::Float16, &[2]);
        p.int32_data = vec![0x3c00, 0xc000];
        let t = tensor(&p).unwrap();
        assert_eq!(t.dtype(), DType::F16);
        assert_eq!(t.to_f64_vec(), vec![1.0, -2.0]);
        let mut p = proto(DataType::Uint32, &[1]);
        p.uint64_data = vec![4_000_000_000];
        assert_eq!(
            tensor(&p).unwrap().to_i64_vec().unwrap(),
            vec![4_000_000_000]
        );
        let mut p = proto(DataType::Bool, &[3]);
        p.int32_data = vec![1, 0, 1];
        assert_eq!(tensor(&p).unwrap().to_f64_vec(), vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn sizes_are_checked() {
        let mut p = proto(DataType::Float, &[3]);
        p.float_data = vec![1.0, 2.0];
        assert!(tensor(&p).unwrap_err().contains("holds 2 values, not 3"));
        let mut p = proto(DataType::Int64, &[1 << 31, 1 << 31, 4]);
        p.raw_data = Some(vec![]);
        assert!(tensor(&p).unwrap_err().contains("too many elements"));
        let p = proto(DataType::Float, &[-1]);
        assert!(tensor(&p).unwrap_err().contains("negative dimension"));
        let p = proto(DataType::String, &[1]);
        assert!(tensor(&p).unwrap_err().contains("STRING is not supported"));
    }

    fn external_proto(entries: &[(&str, &str)]) -> TensorProto {
        let mut p = proto(DataType::Float, &[2]);
        p.data_location = Some(DataLocation::External as i32);
        p.external_data = entries
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect();
        p
    }

    #[test]
    fn external_data_stays_inside_the_model_directory() {
        let dir = std::env::temp_dir().join(format!("lathe-onnx-ext-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let data = [0f32, 0.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>();
        std::fs::write(dir.join("sub/w.bin"), &data).unwrap();
        let ok = external_proto(&[("location", "sub/w.bin"), ("offset", "8"), ("length", "8")]);
        let t = tensor_in(&ok, Some(&dir)).unwrap();
        assert_eq!(t.to_f64_vec(), vec![3.0, 4.0]);
        for (entries, want) in [
            (
                vec![("location", "../w.bin")],
                "inside the model's directory",
            ),
            (
                vec![("location", "/etc/passwd")],
                "inside the model's directory",
            ),
            (vec![("location", "sub/w.bin"), ("offset", "12")], "too few"),
            (
                vec![("location", "sub/w.bin"), ("length", "4")],
                "has length 4",
            ),
            (
                vec![("location", "sub/w.bin"), ("offset", "x")],
                "not a number",
            ),
            (vec![("location", "missing.bin")], "missing.bin"),
            (vec![("offset", "0")], "without a `location`"),
        ] {
            let err = tensor_in(&external_proto(&entries), Some(&dir)).unwrap_err();
            assert!(err.contains(want), "{entries:?}: {err}");
        }
        assert!(tensor(&ok)
            .unwrap_err()
            .contains("only read from a model file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
