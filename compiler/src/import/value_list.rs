//! Tensors from the typed value lists of protobuf tensor messages (TensorFlow's `float_val`,
//! ONNX's `int32_data`, ...): each list's element type converted to the tensor's dtype.

use half::{bf16, f16};
use lathe_ir::{DType, Tensor};

/// Assembles a tensor of dtype `dt` from a TensorProto value list's element type.
pub trait FromList<V> {
    /// The tensor of shape `dims` holding `vals` converted to `dt`.
    fn from_list(dt: DType, dims: &[usize], vals: Vec<V>) -> Tensor;
}

impl FromList<f32> for Tensor {
    fn from_list(_: DType, dims: &[usize], vals: Vec<f32>) -> Tensor {
        Tensor::from_vec(dims, vals)
    }
}
impl FromList<f64> for Tensor {
    fn from_list(_: DType, dims: &[usize], vals: Vec<f64>) -> Tensor {
        Tensor::from_vec(dims, vals)
    }
}
impl FromList<i32> for Tensor {
    fn from_list(dt: DType, dims: &[usize], vals: Vec<i32>) -> Tensor {
        match dt {
            DType::F16 => Tensor::from_vec(
                dims,
                vals.iter().map(|&b| f16::from_bits(b as u16)).collect(),
            ),
            DType::BF16 => Tensor::from_vec(
                dims,
                vals.iter().map(|&b| bf16::from_bits(b as u16)).collect(),
            ),
            _ => Tensor::from_i64(
                dt,
                dims,
                &vals.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            ),
        }
    }
}
impl FromList<i64> for Tensor {
    fn from_list(dt: DType, dims: &[usize], vals: Vec<i64>) -> Tensor {
        Tensor::from_i64(dt, dims, &vals)
    }
}
impl FromList<u32> for Tensor {
    fn from_list(dt: DType, dims: &[usize], vals: Vec<u32>) -> Tensor {
        Tensor::from_i64(
            dt,
            dims,
            &vals.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        )
    }
}
impl FromList<u64> for Tensor {
    fn from_list(dt: DType, dims: &[usize], vals: Vec<u64>) -> Tensor {
        match dt {
            DType::U64 => Tensor::from_vec(dims, vals),
            // ONNX keeps UINT32 values in `uint64_data`; they fit.
            _ => Tensor::from_i64(
                dt,
                dims,
                &vals.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            ),
        }
    }
}
impl FromList<bool> for Tensor {
    fn from_list(_: DType, dims: &[usize], vals: Vec<bool>) -> Tensor {
        Tensor::from_vec(dims, vals)
    }
}
