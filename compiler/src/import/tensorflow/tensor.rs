//! TensorFlow `TensorProto`, `DataType` and `TensorShapeProto` to IR tensors, dtypes and shapes.
//!
//! A `TensorProto` carries its elements in one of three encodings: raw little-endian
//! `tensor_content`; a typed value list (`float_val`, `int_val`, ...) holding every element; or
//! a shorter typed list whose last value is repeated to fill the shape (TensorFlow writes a
//! splat as one value). An empty list means all zeros.

use crate::import::value_list::FromList;
use lathe_ir::{DType, Dim, Shape, Tensor};
use lathe_proto::tensorflow::{DataType, TensorProto, TensorShapeProto};

/// The IR dtype of a TensorFlow `DataType` (as the raw enum number in the proto).
pub fn dtype(raw: i32) -> Result<DType, String> {
    let dt =
        DataType::try_from(raw).map_err(|_| format!("unknown TensorFlow dtype number {raw}"))?;
    Ok(match dt {
        DataType::DtFloat => DType::F32,
        DataType::DtDouble => DType::F64,
        DataType::DtHalf => DType::F16,
        DataType::DtBfloat16 => DType::BF16,
        DataType::DtInt8 => DType::I8,
        DataType::DtInt16 => DType::I16,
        DataType::DtInt32 => DType::I32,
        DataType::DtInt64 => DType::I64,
        DataType::DtUint8 => DType::U8,
        DataType::DtUint16 => DType::U16,
        DataType::DtUint32 => DType::U32,
        DataType::DtUint64 => DType::U64,
        DataType::DtBool => DType::Bool,
        other => {
            return Err(format!(
                "dtype {} is not supported",
                other.as_str_name().trim_start_matches("DT_")
            ))
        }
    })
}

/// A shape proto as an IR shape; an unknown dimension (-1) becomes the symbol `unknown_dim`
/// built by `symbol(axis)`. Unknown rank is an error.
pub fn shape(p: &TensorShapeProto, symbol: impl Fn(usize) -> Dim) -> Result<Shape, String> {
    if p.unknown_rank {
        return Err(
            "shapes of unknown rank are not supported; give the input a ranked shape".into(),
        );
    }
    p.dim
        .iter()
        .enumerate()
        .map(|(axis, d)| match d.size {
            -1 => Ok(symbol(axis)),
            n if n >= 0 => Ok(Dim::Known(n as usize)),
            n => Err(format!("invalid dimension size {n}")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Shape)
}

/// Decodes a constant tensor.
pub fn tensor(p: &TensorProto) -> Result<Tensor, String> {
    let dt = dtype(p.dtype)?;
    let dims = match &p.tensor_shape {
        None => vec![],
        Some(s) => shape(s, |_| Dim::Unknown)?
            .as_known()
            .ok_or("a constant's shape must be fully known")?,
    };
    if !p.tensor_content.is_empty() {
        return Tensor::from_le_bytes(dt, &dims, &p.tensor_content);
    }
    match dt {
        DType::F32 => from_list(dt, &dims, &p.float_val),
        DType::F64 => from_list(dt, &dims, &p.double_val),
        // half_val holds the raw 16 bits of each f16/bf16 value in an int32.
        DType::F16 | DType::BF16 => from_list(dt, &dims, &p.half_val),
        DType::I8 | DType::I16 | DType::I32 | DType::U8 | DType::U16 => {
            from_list(dt, &dims, &p.int_val)
        }
        DType::I64 => from_list(dt, &dims, &p.int64_val),
        DType::U32 => from_list(dt, &dims, &p.uint32_val),
        DType::U64 => from_list(dt, &dims, &p.uint64_val),
        DType::Bool => from_list(dt, &dims, &p.bool_val),
        other => unreachable!("TensorFlow has no {other} dtype"),
    }
}

/// A tensor from a typed value list: every element, or fewer with the last one repeated
/// (TensorFlow's splat encoding), or none (zeros).
fn from_list<V: Copy>(dt: DType, dims: &[usize], vals: &[V]) -> Result<Tensor, String>
where
    Tensor: FromList<V>,
{
    let n: usize = dims.iter().product();
    if vals.len() > n {
        return Err(format!(
            "constant of shape {dims:?} has {} values, more than its {n} elements",
            vals.len()
        ));
    }
    let Some(&last) = vals.last() else {
        return Ok(Tensor::zeros(dt, dims));
    };
    let mut full = vals.to_vec();
    full.resize(n, last);
    Ok(Tensor::from_list(dt, dims, full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use lathe_proto::tensorflow::tensor_shape_proto::Dim as ProtoDim;

    fn proto(dt: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dt as i32,
            tensor_shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&size| ProtoDim {
                        size,
                        name: String::new(),
                    })
                    .collect(),
                unknown_rank: false,
            }),
            ..TensorProto::default()
        }
    }

    #[test]
    fn raw_content() {
        let mut p = proto(DataType::DtFloat, &[2]);
        p.tensor_content = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(
            tensor(&p).unwrap(),
            Tensor::from_vec(&[2], vec![1.5f32, -2.0])
        );
        p.tensor_content.pop();
        assert!(tensor(&p).unwrap_err().contains("needs 8 bytes"));
    }

    #[test]
    fn full_list_splat_and_zeros() {
        let mut p = proto(DataType::DtInt32, &[2, 2]);
        p.int_val = vec![1, 2, 3, 4];
        assert_eq!(
            tensor(&p).unwrap(),
            Tensor::from_vec(&[2, 2], vec![1i32, 2, 3, 4])
        );
        // Fewer values than elements: the last one repeats (TensorFlow's splat encoding).
        p.int_val = vec![7, 9];
        assert_eq!(
            tensor(&p).unwrap(),
            Tensor::from_vec(&[2, 2], vec![7i32, 9, 9, 9])
        );
        p.int_val = vec![];
        assert_eq!(tensor(&p).unwrap(), Tensor::zeros(DType::I32, &[2, 2]));
        p.int_val = vec![1, 2, 3, 4, 5];
        assert!(tensor(&p).unwrap_err().contains("more than its 4 elements"));
    }

    #[test]
    fn typed_lists_of_every_kind() {
        let mut p = proto(DataType::DtHalf, &[2]);
        p.half_val = vec![f16::from_f32(0.5).to_bits() as i32];
        assert_eq!(
            tensor(&p).unwrap(),
            Tensor::from_vec(&[2], vec![f16::from_f32(0.5); 2])
        );
        let mut p = proto(DataType::DtBool, &[3]);
        p.bool_val = vec![true, false, true];
        assert_eq!(
            tensor(&p).unwrap(),
            Tensor::from_vec(&[3], vec![true, false, true])
        );
        let mut p = proto(DataType::DtInt64, &[]);
        p.int64_val = vec![-5];
        assert_eq!(tensor(&p).unwrap(), Tensor::scalar(-5i64));
        let mut p = proto(DataType::DtDouble, &[1]);
        p.double_val = vec![0.25];
        assert_eq!(tensor(&p).unwrap(), Tensor::from_vec(&[1], vec![0.25f64]));
        let mut p = proto(DataType::DtUint8, &[2]);
        p.int_val = vec![255];
        assert_eq!(
            tensor(&p).unwrap(),
            Tensor::from_vec(&[2], vec![255u8, 255])
        );
    }

    #[test]
    fn unsupported_dtypes_and_shapes() {
        let p = proto(DataType::DtString, &[1]);
        assert_eq!(tensor(&p).unwrap_err(), "dtype STRING is not supported");
        let p = proto(DataType::DtFloat, &[-1]);
        assert!(tensor(&p).unwrap_err().contains("fully known"));
        let unknown_rank = TensorShapeProto {
            dim: vec![],
            unknown_rank: true,
        };
        assert!(shape(&unknown_rank, |_| lathe_ir::Dim::Unknown).is_err());
    }
}
