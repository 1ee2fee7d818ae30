//! Reading and writing NumPy `.npy` files as [`Tensor`]s.
//!
//! Supports the dtypes NumPy and the IR share (float16/32/64, int8–64, uint8–64, bool) in C or
//! Fortran order, little- or big-endian. bfloat16 and the low-precision storage types (float8,
//! float4, int4, ...) have no `.npy` type code NumPy itself reads, and are refused.

use half::f16;
use lathe_ir::{DType, Tensor};
use npyz::{NpyFile, TypeChar, WriterBuilder};
use std::io::{Read, Write};
use std::path::Path;

/// Reads a `.npy` file; errors name the file.
pub fn read_file(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read(&bytes[..]).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a `.npy` stream.
pub fn read(r: impl Read) -> Result<Tensor, String> {
    let npy = NpyFile::new(r).map_err(|e| format!("not a valid .npy file: {e}"))?;
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err("structured .npy arrays are not supported".into());
    };
    let dtype = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 2) => DType::F16,
        (TypeChar::Float, 4) => DType::F32,
        (TypeChar::Float, 8) => DType::F64,
        (TypeChar::Int, 1) => DType::I8,
        (TypeChar::Int, 2) => DType::I16,
        (TypeChar::Int, 4) => DType::I32,
        (TypeChar::Int, 8) => DType::I64,
        (TypeChar::Uint, 1) => DType::U8,
        (TypeChar::Uint, 2) => DType::U16,
        (TypeChar::Uint, 4) => DType::U32,
        (TypeChar::Uint, 8) => DType::U64,
        (TypeChar::Bool, 1) => DType::Bool,
        _ => return Err(format!("unsupported .npy dtype `{ts}`")),
    };
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let fortran = npy.order() == npyz::Order::Fortran;
    let e = |e: std::io::Error| format!("reading .npy data: {e}");
    let t = match dtype {
        DType::F16 => from_vec(&shape, fortran, npy.into_vec::<f16>().map_err(e)?),
        DType::F32 => from_vec(&shape, fortran, npy.into_vec::<f32>().map_err(e)?),
        DType::F64 => from_vec(&shape, fortran, npy.into_vec::<f64>().map_err(e)?),
        DType::I8 => from_vec(&shape, fortran, npy.into_vec::<i8>().map_err(e)?),
        DType::I16 => from_vec(&shape, fortran, npy.into_vec::<i16>().map_err(e)?),
        DType::I32 => from_vec(&shape, fortran, npy.into_vec::<i32>().map_err(e)?),
        DType::I64 => from_vec(&shape, fortran, npy.into_vec::<i64>().map_err(e)?),
        DType::U8 => from_vec(&shape, fortran, npy.into_vec::<u8>().map_err(e)?),
        DType::U16 => from_vec(&shape, fortran, npy.into_vec::<u16>().map_err(e)?),
        DType::U32 => from_vec(&shape, fortran, npy.into_vec::<u32>().map_err(e)?),
        DType::U64 => from_vec(&shape, fortran, npy.into_vec::<u64>().map_err(e)?),
        DType::Bool => from_vec(&shape, fortran, npy.into_vec::<bool>().map_err(e)?),
        other => unreachable!("no .npy code maps to {other}"),
    };
    t
}

fn from_vec<T: lathe_ir::Elem>(
    shape: &[usize],
    fortran: bool,
    v: Vec<T>,
) -> Result<Tensor, String> {
    let n: usize = shape.iter().product();
    if v.len() != n {
        return Err(format!(
            "shape {shape:?} needs {n} elements, file has {}",
            v.len()
        ));
    }
    if !fortran {
        return Ok(Tensor::from_vec(shape, v));
    }
    // Fortran order: the data is the transpose's row-major layout.
    let rev: Vec<usize> = shape.iter().rev().copied().collect();
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&rev), v).expect("sizes checked");
    let a = a.reversed_axes().as_standard_layout().into_owned();
    Ok(T::wrap(a))
}

/// Writes `t` as a `.npy` file (C order, little-endian); errors name the file.
pub fn write_file(path: &Path, t: &Tensor) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    write(&mut f, t).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `t` in `.npy` format.
pub fn write<W: Write>(w: &mut W, t: &Tensor) -> Result<(), String> {
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let io = |e: std::io::Error| e.to_string();
    macro_rules! emit {
        ($a:expr) => {{
            let mut wr = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut *w)
                .begin_nd()
                .map_err(io)?;
            wr.extend($a.iter().copied()).map_err(io)?;
            wr.finish().map_err(io)
        }};
    }
    match t {
        Tensor::F32(a) => emit!(a),
        Tensor::F64(a) => emit!(a),
        Tensor::F16(a) => emit!(a),
        Tensor::I8(a) => emit!(a),
        Tensor::I16(a) => emit!(a),
        Tensor::I32(a) => emit!(a),
        Tensor::I64(a) => emit!(a),
        Tensor::U8(a) => emit!(a),
        Tensor::U16(a) => emit!(a),
        Tensor::U32(a) => emit!(a),
        Tensor::U64(a) => emit!(a),
        Tensor::Bool(a) => emit!(a),
        Tensor::BF16(_) => Err("bfloat16 has no .npy type; cast it to float32 first".into()),
        other => Err(format!(
            "{} ({}) has no .npy type NumPy reads; cast it to float32 first",
            other.dtype(),
            other.dtype().numpy_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_npy_dtype() {
        let npy_types = DType::ALL
            .into_iter()
            .filter(|d| *d != DType::BF16 && !d.is_low_precision());
        for dt in npy_types {
            let t = Tensor::from_f64(dt, &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
            let mut buf = Vec::new();
            write(&mut buf, &t).unwrap();
            assert_eq!(read(&buf[..]).unwrap(), t, "{dt}");
        }
        let s = Tensor::scalar(7i64);
        let mut buf = Vec::new();
        write(&mut buf, &s).unwrap();
        assert_eq!(read(&buf[..]).unwrap(), s);
    }

    #[test]
    fn rejects_garbage_and_bf16() {
        assert!(read(&b"not numpy"[..])
            .unwrap_err()
            .contains("not a valid .npy"));
        let t = Tensor::from_f64(DType::BF16, &[1], &[1.0]);
        assert!(write(&mut Vec::new(), &t).is_err());
        let t = Tensor::from_f64(DType::F8E4M3FN, &[1], &[1.0]);
        let err = write(&mut Vec::new(), &t).unwrap_err();
        assert!(
            err.contains("f8e4m3fn (float8_e4m3fn) has no .npy type"),
            "{err}"
        );
    }
}
