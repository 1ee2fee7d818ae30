//! `bitcast`: the bytes of `x` read as elements of another numeric dtype (ONNX `BitCast`,
//! NumPy's `ndarray.view(dtype)`). Elements of one size keep the shape; otherwise the last
//! axis is resized to hold the same bytes (`f32[2, 4]` is `i64[2, 2]` and `u8[2, 16]`), which
//! a scalar cannot be.

use super::super::common::expect_arity;
use super::super::OpResult;
use crate::{DType, Dim, Shape, Tensor, TensorType};

pub(super) fn infer_bitcast(to: DType, inputs: &[TensorType]) -> OpResult<TensorType> {
    expect_arity("bitcast", inputs, 1)?;
    let x = &inputs[0];
    if !to.is_numeric() {
        return Err(format!(
            "bitcast to {to} is not supported (numeric dtypes only)"
        ));
    }
    let (from, into) = (x.dtype.size_bytes(), to.size_bytes());
    if from == into {
        return Ok(TensorType::new(to, x.shape.clone()));
    }
    let mut dims = x.shape.dims().to_vec();
    let bytes = match dims.last() {
        Some(Dim::Known(n)) => n * from,
        _ => {
            return Err(format!(
                "bitcast of {x} to {to} resizes the last axis, which must be known"
            ))
        }
    };
    if bytes % into != 0 {
        return Err(format!(
            "bitcast of {x} to {to}: the last axis's {bytes} bytes are not a whole number of \
             {to} elements"
        ));
    }
    *dims.last_mut().expect("a last axis") = Dim::Known(bytes / into);
    Ok(TensorType::new(to, Shape(dims)))
}

pub(super) fn eval_bitcast(to: DType, x: &Tensor, dims: &[usize]) -> OpResult<Tensor> {
    Tensor::from_le_bytes(to, dims, &x.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use crate::{DType, Op, Tensor, TensorType};

    fn bitcast(to: DType, x: &Tensor) -> Tensor {
        Op::Bitcast { to }.eval(&[x]).unwrap().remove(0)
    }

    #[test]
    fn bitcast_known_values() {
        let x = Tensor::from_vec(&[2], vec![1.0f32, -2.0]);
        let y = bitcast(DType::I32, &x);
        assert_eq!(y.ty().to_string(), "i32[2]");
        assert_eq!(
            y.to_i64_vec().unwrap(),
            [0x3f80_0000, 0xc000_0000u32 as i32 as i64]
        );
        // Back again, bit for bit (a NaN's payload included).
        let nan = Tensor::from_vec(&[], vec![0x7fc0_1234u32]);
        let f = bitcast(DType::F32, &nan);
        assert_eq!(bitcast(DType::U32, &f).to_le_bytes(), nan.to_le_bytes());
        let s = Tensor::from_vec(&[3], vec![-1i8, 0, 127]);
        assert_eq!(bitcast(DType::U8, &s).to_i64_vec().unwrap(), [255, 0, 127]);
        // Another element size resizes the last axis.
        let w = Tensor::from_vec(&[2, 2], vec![1u16, 2, 3, 4]);
        let y = bitcast(DType::U32, &w);
        assert_eq!(y.shape(), [2, 1]);
        assert_eq!(y.to_i64_vec().unwrap(), [0x0002_0001, 0x0004_0003]);
        let y = bitcast(DType::U8, &w);
        assert_eq!(y.shape(), [2, 4]);
        assert_eq!(y.to_i64_vec().unwrap(), [1, 0, 2, 0, 3, 0, 4, 0]);
    }

    #[test]
    fn bitcast_checks_sizes_and_dtypes() {
        let infer = |to: DType, x: TensorType| Op::Bitcast { to }.infer(&[x], &[None]);
        let e = infer(DType::I64, TensorType::known(DType::F32, &[3])).unwrap_err();
        assert!(e.contains("not a whole number of i64 elements"), "{e}");
        let e = infer(DType::I64, TensorType::known(DType::F32, &[])).unwrap_err();
        assert!(e.contains("must be known"), "{e}");
        let e = infer(DType::Bool, TensorType::known(DType::U8, &[3])).unwrap_err();
        assert!(e.contains("bitcast to bool is not supported"), "{e}");
        assert!(infer(DType::U8, TensorType::known(DType::Bool, &[3])).is_err());
    }
}
