//! Constant and runtime tensors: an n-dimensional array of one of the IR's dtypes.
//!
//! `Tensor` is an enum over `ndarray::ArrayD<T>`, one variant per [`DType`]. Generic code goes
//! through the [`Elem`] trait and the [`tensor_map!`](crate::tensor_map) /
//! [`tensor_match!`](crate::tensor_match) macros, which expand a generic body once per dtype.

mod convert;
mod lowp;

pub use convert::convert_le;
pub use lowp::{
    lowp_from_f64, lowp_from_i64, lowp_to_f64, lowp_to_i64, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2,
    F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};

use crate::{DType, Shape, TensorType};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::fmt;

/// A dense tensor of any IR dtype (row-major when laid out as bytes).
///
/// Equality is bitwise (same dtype, shape and element bits): a NaN constant equals itself and
/// `0.0` differs from `-0.0`, which is what structural comparison and CSE need.
#[derive(Clone)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
    F8E4M3FN(ArrayD<F8E4M3FN>),
    F8E4M3FNUZ(ArrayD<F8E4M3FNUZ>),
    F8E5M2(ArrayD<F8E5M2>),
    F8E5M2FNUZ(ArrayD<F8E5M2FNUZ>),
    F8E8M0(ArrayD<F8E8M0>),
    F4E2M1(ArrayD<F4E2M1>),
    I4(ArrayD<I4>),
    U4(ArrayD<U4>),
    I2(ArrayD<I2>),
    U2(ArrayD<U2>),
}

/// Expands `$body` for whichever variant `$t` holds, binding the array to `$a`, and wraps the
/// result (an `ArrayD` of the same element type) back into the same variant.
#[macro_export]
macro_rules! tensor_map {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $crate::Tensor::F32($body),
            $crate::Tensor::F64($a) => $crate::Tensor::F64($body),
            $crate::Tensor::F16($a) => $crate::Tensor::F16($body),
            $crate::Tensor::BF16($a) => $crate::Tensor::BF16($body),
            $crate::Tensor::I8($a) => $crate::Tensor::I8($body),
            $crate::Tensor::I16($a) => $crate::Tensor::I16($body),
            $crate::Tensor::I32($a) => $crate::Tensor::I32($body),
            $crate::Tensor::I64($a) => $crate::Tensor::I64($body),
            $crate::Tensor::U8($a) => $crate::Tensor::U8($body),
            $crate::Tensor::U16($a) => $crate::Tensor::U16($body),
            $crate::Tensor::U32($a) => $crate::Tensor::U32($body),
            $crate::Tensor::U64($a) => $crate::Tensor::U64($body),
            $crate::Tensor::Bool($a) => $crate::Tensor::Bool($body),
            $crate::Tensor::F8E4M3FN($a) => $crate::Tensor::F8E4M3FN($body),
            $crate::Tensor::F8E4M3FNUZ($a) => $crate::Tensor::F8E4M3FNUZ($body),
            $crate::Tensor::F8E5M2($a) => $crate::Tensor::F8E5M2($body),
            $crate::Tensor::F8E5M2FNUZ($a) => $crate::Tensor::F8E5M2FNUZ($body),
            $crate::Tensor::F8E8M0($a) => $crate::Tensor::F8E8M0($body),
            $crate::Tensor::F4E2M1($a) => $crate::Tensor::F4E2M1($body),
            $crate::Tensor::I4($a) => $crate::Tensor::I4($body),
            $crate::Tensor::U4($a) => $crate::Tensor::U4($body),
            $crate::Tensor::I2($a) => $crate::Tensor::I2($body),
            $crate::Tensor::U2($a) => $crate::Tensor::U2($body),
        }
    };
}

/// Expands `$body` for whichever variant `$t` holds, binding the array to `$a`; the body's
/// value (of one type for every variant) is the result.
#[macro_export]
macro_rules! tensor_match {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::F16($a) => $body,
            $crate::Tensor::BF16($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::I16($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::U16($a) => $body,
            $crate::Tensor::U32($a) => $body,
            $crate::Tensor::U64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
            $crate::Tensor::F8E4M3FN($a) => $body,
            $crate::Tensor::F8E4M3FNUZ($a) => $body,
            $crate::Tensor::F8E5M2($a) => $body,
            $crate::Tensor::F8E5M2FNUZ($a) => $body,
            $crate::Tensor::F8E8M0($a) => $body,
            $crate::Tensor::F4E2M1($a) => $body,
            $crate::Tensor::I4($a) => $body,
            $crate::Tensor::U4($a) => $body,
            $crate::Tensor::I2($a) => $body,
            $crate::Tensor::U2($a) => $body,
        }
    };
}

/// An element type a tensor can hold.
pub trait Elem:
    Copy + Clone + Default + PartialEq + PartialOrd + fmt::Debug + Send + Sync + 'static
{
    /// The IR dtype of this element type.
    const DTYPE: DType;
    /// Converts to f64 (bool: 0 or 1). Exact for every type but i64/u64 beyond 2^53.
    fn to_f64(self) -> f64;
    /// Converts from f64 with Rust `as` semantics: floats round to nearest, integers truncate
    /// toward zero and saturate (NaN becomes 0), bool is `x != 0`.
    fn from_f64(v: f64) -> Self;
    /// Converts to i64 (exact for integers and bool; floats truncate toward zero).
    fn to_i64(self) -> i64;
    /// Converts from i64 (integers wrap as in two's complement; bool is `x != 0`).
    fn from_i64(v: i64) -> Self;
    /// Wraps an array of this type in a `Tensor`.
    fn wrap(a: ArrayD<Self>) -> Tensor;
    /// The array, if `t` holds this type.
    fn view(t: &Tensor) -> Option<&ArrayD<Self>>;
    /// Appends the little-endian bytes of `self`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Appends the little-endian bytes of every element of `s`, in order.
    fn extend_le(s: &[Self], out: &mut Vec<u8>) {
        for &x in s {
            x.write_le(out);
        }
    }
    /// Reads one element from exactly `size_bytes` little-endian bytes.
    fn read_le(b: &[u8]) -> Self;
}

macro_rules! impl_elem_num {
    ($t:ty, $variant:ident, $dt:expr, float) => {
        impl_elem_num!(@common $t, $variant, $dt);
        impl Elem for $t {
            const DTYPE: DType = $dt;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_i64(self) -> i64 { self as i64 }
            fn from_i64(v: i64) -> Self { v as $t }
            impl_elem_num!(@methods $t, $variant);
        }
    };
    ($t:ty, $variant:ident, $dt:expr, int) => {
        impl_elem_num!(@common $t, $variant, $dt);
        impl Elem for $t {
            const DTYPE: DType = $dt;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_i64(self) -> i64 { self as i64 }
            fn from_i64(v: i64) -> Self { v as $t }
            impl_elem_num!(@methods $t, $variant);
        }
    };
    (@common $t:ty, $variant:ident, $dt:expr) => {};
    (@methods $t:ty, $variant:ident) => {
        fn wrap(a: ArrayD<Self>) -> Tensor { Tensor::$variant(a) }
        fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
            match t { Tensor::$variant(a) => Some(a), _ => None }
        }
        fn write_le(self, out: &mut Vec<u8>) { out.extend_from_slice(&self.to_le_bytes()) }
        fn extend_le(s: &[Self], out: &mut Vec<u8>) {
            // Sized once, then filled in place: a plain copy on a little-endian machine.
            const W: usize = std::mem::size_of::<$t>();
            let start = out.len();
            out.resize(start + s.len() * W, 0);
            for (o, x) in out[start..].chunks_exact_mut(W).zip(s) {
                o.copy_from_slice(&x.to_le_bytes());
            }
        }
        fn read_le(b: &[u8]) -> Self { <$t>::from_le_bytes(b.try_into().expect("element width")) }
    };
}

impl_elem_num!(f32, F32, DType::F32, float);
impl_elem_num!(f64, F64, DType::F64, float);
impl_elem_num!(i8, I8, DType::I8, int);
impl_elem_num!(i16, I16, DType::I16, int);
impl_elem_num!(i32, I32, DType::I32, int);
impl_elem_num!(i64, I64, DType::I64, int);
impl_elem_num!(u8, U8, DType::U8, int);
impl_elem_num!(u16, U16, DType::U16, int);
impl_elem_num!(u32, U32, DType::U32, int);
impl_elem_num!(u64, U64, DType::U64, int);

macro_rules! impl_elem_half {
    ($t:ty, $variant:ident, $dt:expr) => {
        impl Elem for $t {
            const DTYPE: DType = $dt;
            fn to_f64(self) -> f64 {
                self.to_f64()
            }
            fn from_f64(v: f64) -> Self {
                <$t>::from_f64(v)
            }
            fn to_i64(self) -> i64 {
                self.to_f64() as i64
            }
            fn from_i64(v: i64) -> Self {
                <$t>::from_f64(v as f64)
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$variant(a)
            }
            fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$variant(a) => Some(a),
                    _ => None,
                }
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_bits().to_le_bytes())
            }
            fn read_le(b: &[u8]) -> Self {
                <$t>::from_bits(u16::from_le_bytes(b.try_into().expect("element width")))
            }
        }
    };
}

impl_elem_half!(f16, F16, DType::F16);
impl_elem_half!(bf16, BF16, DType::BF16);

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn wrap(a: ArrayD<Self>) -> Tensor {
        Tensor::Bool(a)
    }
    fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
        match t {
            Tensor::Bool(a) => Some(a),
            _ => None,
        }
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self as u8)
    }
    fn read_le(b: &[u8]) -> Self {
        b[0] != 0
    }
}

/// Calls `$f::<T>` with `T` the Rust element type of dtype `$dt`; `$f` is a generic function
/// path and `$args` its arguments. The low-precision storage dtypes, which no computing op
/// accepts, are not expanded (so `$f` may need more than [`Elem`]) and panic: callers reach
/// this only for dtypes an op's rule admits. [`with_any_dtype!`](crate::with_any_dtype)
/// expands every dtype.
#[macro_export]
macro_rules! with_dtype {
    ($dt:expr, $f:ident ( $($args:expr),* )) => {
        match $dt {
            $crate::DType::F32 => $f::<f32>($($args),*),
            $crate::DType::F64 => $f::<f64>($($args),*),
            $crate::DType::F16 => $f::<half::f16>($($args),*),
            $crate::DType::BF16 => $f::<half::bf16>($($args),*),
            $crate::DType::I8 => $f::<i8>($($args),*),
            $crate::DType::I16 => $f::<i16>($($args),*),
            $crate::DType::I32 => $f::<i32>($($args),*),
            $crate::DType::I64 => $f::<i64>($($args),*),
            $crate::DType::U8 => $f::<u8>($($args),*),
            $crate::DType::U16 => $f::<u16>($($args),*),
            $crate::DType::U32 => $f::<u32>($($args),*),
            $crate::DType::U64 => $f::<u64>($($args),*),
            $crate::DType::Bool => $f::<bool>($($args),*),
            low => panic!("{low} is a storage type no computing op accepts"),
        }
    };
}

/// [`with_dtype!`](crate::with_dtype) over every dtype, the low-precision storage types
/// included (their element types implement [`Elem`] and the text format's literals).
#[macro_export]
macro_rules! with_any_dtype {
    ($dt:expr, $f:ident ( $($args:expr),* )) => {
        match $dt {
            $crate::DType::F8E4M3FN => $f::<$crate::tensor::F8E4M3FN>($($args),*),
            $crate::DType::F8E4M3FNUZ => $f::<$crate::tensor::F8E4M3FNUZ>($($args),*),
            $crate::DType::F8E5M2 => $f::<$crate::tensor::F8E5M2>($($args),*),
            $crate::DType::F8E5M2FNUZ => $f::<$crate::tensor::F8E5M2FNUZ>($($args),*),
            $crate::DType::F8E8M0 => $f::<$crate::tensor::F8E8M0>($($args),*),
            $crate::DType::F4E2M1 => $f::<$crate::tensor::F4E2M1>($($args),*),
            $crate::DType::I4 => $f::<$crate::tensor::I4>($($args),*),
            $crate::DType::U4 => $f::<$crate::tensor::U4>($($args),*),
            $crate::DType::I2 => $f::<$crate::tensor::I2>($($args),*),
            $crate::DType::U2 => $f::<$crate::tensor::U2>($($args),*),
            // The computing dtypes: `with_dtype!`'s arms, its storage-type arm unreachable.
            other => $crate::with_dtype!(other, $f($($args),*)),
        }
    };
}

fn zeros_of<T: Elem>(shape: &[usize]) -> Tensor {
    T::wrap(ArrayD::from_elem(IxDyn(shape), T::default()))
}

fn from_f64_of<T: Elem>(shape: &[usize], vals: &[f64]) -> Tensor {
    T::wrap(
        ArrayD::from_shape_vec(IxDyn(shape), vals.iter().map(|&v| T::from_f64(v)).collect())
            .expect("shape matches values"),
    )
}

fn from_i64_of<T: Elem>(shape: &[usize], vals: &[i64]) -> Tensor {
    T::wrap(
        ArrayD::from_shape_vec(IxDyn(shape), vals.iter().map(|&v| T::from_i64(v)).collect())
            .expect("shape matches values"),
    )
}

fn from_le_of<T: Elem>(shape: &[usize], bytes: &[u8]) -> Tensor {
    let w = T::DTYPE.size_bytes();
    T::wrap(
        ArrayD::from_shape_vec(
            IxDyn(shape),
            bytes.chunks_exact(w).map(T::read_le).collect(),
        )
        .expect("shape matches bytes"),
    )
}

fn read_le_of<T: Elem>(
    shape: &[usize],
    r: &mut dyn std::io::Read,
    seen: &mut dyn FnMut(&[u8]),
) -> std::io::Result<Tensor> {
    let w = T::DTYPE.size_bytes();
    let n: usize = shape.iter().product();
    let mut vals = Vec::with_capacity(n);
    let mut buf = vec![0u8; (READ_CHUNK / w).max(1) * w];
    while vals.len() < n {
        let take = ((n - vals.len()) * w).min(buf.len());
        let chunk = &mut buf[..take];
        r.read_exact(chunk)?;
        seen(chunk);
        vals.extend(chunk.chunks_exact(w).map(T::read_le));
    }
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(shape), vals).expect("shape matches values"),
    ))
}

/// Bytes [`Tensor::read_le`] reads at a time.
const READ_CHUNK: usize = 1 << 16;

/// True when a cast from `from` to `to` goes through i64 rather than f64: integer (or bool) to
/// integer, so that large 64-bit values stay exact.
pub fn casts_through_i64(from: DType, to: DType) -> bool {
    let int = |d: DType| {
        d.is_int()
            || matches!(
                d.low_precision(),
                Some(crate::dtype::LowPrecision::Int { .. })
            )
    };
    (int(from) || from == DType::Bool) && int(to)
}

fn cast_to<T: Elem>(t: &Tensor) -> Tensor {
    if casts_through_i64(t.dtype(), T::DTYPE) {
        tensor_match!(t, a => T::wrap(a.mapv(|x| T::from_i64(Elem::to_i64(x)))))
    } else {
        tensor_match!(t, a => T::wrap(a.mapv(|x| T::from_f64(Elem::to_f64(x)))))
    }
}

fn cast_unsaturated_to<T: Elem>(t: &Tensor) -> Tensor {
    let to = T::DTYPE;
    tensor_match!(t, a => T::wrap(a.mapv(|x| {
        T::read_le(&[lowp_from_f64(to, Elem::to_f64(x), false)])
    })))
}

impl Tensor {
    /// A tensor of zeros (false for bool).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        with_any_dtype!(dtype, zeros_of(shape))
    }

    /// A tensor from values given as f64, converted with [`Elem::from_f64`].
    /// Panics if `vals.len()` is not the product of `shape`.
    pub fn from_f64(dtype: DType, shape: &[usize], vals: &[f64]) -> Tensor {
        with_any_dtype!(dtype, from_f64_of(shape, vals))
    }

    /// A tensor from values given as i64, converted with [`Elem::from_i64`].
    /// Panics if `vals.len()` is not the product of `shape`.
    pub fn from_i64(dtype: DType, shape: &[usize], vals: &[i64]) -> Tensor {
        with_any_dtype!(dtype, from_i64_of(shape, vals))
    }

    /// A tensor from a typed vector. Panics if `vals.len()` is not the product of `shape`.
    pub fn from_vec<T: Elem>(shape: &[usize], vals: Vec<T>) -> Tensor {
        T::wrap(ArrayD::from_shape_vec(IxDyn(shape), vals).expect("shape matches values"))
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor::from_vec(&[], vec![v])
    }

    /// Decodes row-major little-endian bytes. Errors when the byte count does not match.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, String> {
        let want = (shape.iter()).try_fold(dtype.size_bytes(), |n, &d| n.checked_mul(d));
        if want != Some(bytes.len()) {
            return Err(match want {
                Some(want) => format!(
                    "{dtype}{shape:?} needs {want} bytes of data, got {}",
                    bytes.len()
                ),
                None => format!("{dtype}{shape:?} is too large to address"),
            });
        }
        Ok(with_any_dtype!(dtype, from_le_of(shape, bytes)))
    }

    /// Reads row-major little-endian elements from `r`, a chunk at a time, passing each chunk
    /// of raw bytes to `seen` (to checksum them): the tensor is built as it is read, so its
    /// bytes are never held whole beside it. The caller checks that `r` can hold that many
    /// bytes before calling (the tensor's memory is reserved up front).
    pub fn read_le(
        dtype: DType,
        shape: &[usize],
        r: &mut dyn std::io::Read,
        seen: &mut dyn FnMut(&[u8]),
    ) -> std::io::Result<Tensor> {
        with_any_dtype!(dtype, read_le_of(shape, r, seen))
    }

    /// Row-major little-endian bytes of the elements.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.dtype().size_bytes());
        tensor_match!(self, a => match a.as_slice() {
            Some(elements) => Elem::extend_le(elements, &mut out),
            None => {
                for &x in a.iter() {
                    x.write_le(&mut out);
                }
            }
        });
        out
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        fn dt<T: Elem>(_: &ArrayD<T>) -> DType {
            T::DTYPE
        }
        tensor_match!(self, a => dt(a))
    }

    /// The concrete shape.
    pub fn shape(&self) -> &[usize] {
        tensor_match!(self, a => a.shape())
    }

    /// The static type of this tensor.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), Shape::known(self.shape()))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        tensor_match!(self, a => a.len())
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the elements take.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    /// Converts to another dtype (see [`Elem::from_f64`] for the rounding rules).
    pub fn cast(&self, to: DType) -> Tensor {
        if self.dtype() == to {
            return self.clone();
        }
        with_any_dtype!(to, cast_to(self))
    }

    /// Converts to a low-precision float as [`Tensor::cast`] does but without saturating: a
    /// value beyond the type's range becomes infinity or NaN (ONNX's `Cast` with `saturate =
    /// 0`). To any other dtype it is [`Tensor::cast`].
    pub fn cast_unsaturated(&self, to: DType) -> Tensor {
        if !to.is_low_precision_float() || self.dtype() == to {
            return self.cast(to);
        }
        with_any_dtype!(to, cast_unsaturated_to(self))
    }

    /// The elements as f64, in row-major order.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        tensor_match!(self, a => a.iter().map(|&x| Elem::to_f64(x)).collect())
    }

    /// The elements of an integer tensor as i64, in row-major order; an error for other dtypes.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, String> {
        if !self.dtype().is_int() {
            return Err(format!("expected an integer tensor, got {}", self.dtype()));
        }
        Ok(tensor_match!(self, a => a.iter().map(|&x| Elem::to_i64(x)).collect()))
    }

    /// The tensor as an f64 array of the same shape.
    pub fn to_f64_array(&self) -> ArrayD<f64> {
        tensor_match!(self, a => a.mapv(Elem::to_f64))
    }

    /// The array, if this tensor holds element type `T`.
    pub fn as_array<T: Elem>(&self) -> Option<&ArrayD<T>> {
        T::view(self)
    }

    /// True when the data is in standard (row-major, contiguous) layout already.
    pub fn is_standard_layout(&self) -> bool {
        tensor_match!(self, a => a.is_standard_layout())
    }

    /// Returns the same data in standard (row-major, contiguous) layout.
    pub fn into_standard_layout(self) -> Tensor {
        tensor_map!(self, a => if a.is_standard_layout() { a } else { a.as_standard_layout().into_owned() })
    }

    /// True when every element is bitwise-equal to the first (a splat), or the tensor is empty.
    pub fn is_splat(&self) -> bool {
        tensor_match!(self, a => {
            let mut it = a.iter();
            match it.next() {
                None => true,
                Some(first) => it.all(|x| x == first),
            }
        })
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        fn same_bits<T: Elem>(a: &ArrayD<T>, other: &Tensor) -> bool {
            // Compare element by element through their encodings, without materializing
            // either tensor's bytes (CSE compares large weights).
            let Some(b) = T::view(other) else {
                return false;
            };
            let (mut x, mut y) = (Vec::with_capacity(8), Vec::with_capacity(8));
            a.shape() == b.shape()
                && a.iter().zip(b.iter()).all(|(&p, &q)| {
                    x.clear();
                    y.clear();
                    p.write_le(&mut x);
                    q.write_le(&mut y);
                    x == y
                })
        }
        tensor_match!(self, a => same_bits(a, other))
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?}", self.dtype(), self.shape())?;
        let vals = self.to_f64_vec();
        let n = vals.len().min(8);
        write!(f, " {:?}", &vals[..n])?;
        if vals.len() > n {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_every_dtype() {
        for dt in DType::ALL {
            let t = Tensor::from_f64(dt, &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
            let b = t.to_le_bytes();
            assert_eq!(b.len(), 6 * dt.size_bytes());
            assert_eq!(Tensor::from_le_bytes(dt, &[2, 3], &b).unwrap(), t);
            assert_eq!(t.dtype(), dt);
        }
        assert!(Tensor::from_le_bytes(DType::F32, &[2], &[0u8; 7]).is_err());
    }

    #[test]
    fn bytes_of_a_view_not_in_standard_layout_are_row_major() {
        let a =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let t = Tensor::F32(a.reversed_axes());
        assert!(!t.is_standard_layout());
        let want: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(t.to_le_bytes(), want);
        assert_eq!(t.clone().into_standard_layout().to_le_bytes(), want);
    }

    #[test]
    fn equality_is_bitwise() {
        let nan = Tensor::from_vec(&[2], vec![f32::NAN, 1.0]);
        assert_eq!(nan, nan.clone(), "a NaN constant equals itself");
        let zero = Tensor::from_vec(&[1], vec![0.0f32]);
        assert_ne!(zero, Tensor::from_vec(&[1], vec![-0.0f32]));
        assert_ne!(zero, Tensor::from_vec(&[1], vec![0.0f64]), "dtypes differ");
        assert_ne!(
            zero,
            Tensor::from_vec(&[1, 1], vec![0.0f32]),
            "shapes differ"
        );
    }

    #[test]
    fn cast_rules() {
        let t = Tensor::from_vec(&[4], vec![-1.7f32, 0.0, 2.9, f32::NAN]);
        assert_eq!(t.cast(DType::I32).to_i64_vec().unwrap(), vec![-1, 0, 2, 0]);
        assert_eq!(
            t.cast(DType::Bool).to_f64_vec(),
            vec![1.0, 0.0, 1.0, 1.0],
            "NaN is truthy, as in TensorFlow"
        );
        let big = Tensor::from_vec(&[1], vec![i64::MAX]);
        assert_eq!(big.cast(DType::U64).to_i64_vec().unwrap(), vec![i64::MAX]);
    }
}
