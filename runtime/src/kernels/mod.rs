//! CPU kernel library: tuned dense kernels that the CPU backend calls into.
//!
//! Everything around these kernels (bias, activation, residual add) is generated and fused by
//! codegen (`crate::cpu::codegen`); the kernels here do the heavy, hard-to-generate part. The
//! commonest of those tails, straight lines of per-channel and elementwise ops, also run here
//! with wide vectors ([`chain`]).
//!
//! f32 has tuned kernels (`gemm`, `packed`, `gemv`, `conv`, `winograd`, `depthwise`, `pool`,
//! `reduce`);
//! every other numeric dtype, and the forms those do not take (NCHW, a filter computed at run
//! time, reductions over scattered axes), run the `generic_*`, `einsum`, `reduce_axes` and
//! `argmax` kernels, written once over the element type ([`numeric`]). ONNX's indexing ops
//! (element gathers and scatters, `trilu`, `cumsum`/`cumprod`, `top_k`) are in [`indexing`],
//! determinants in [`det`], the image ops (`grid_sample`, `roi_align`, `col2im`) in [`image`], Fourier transforms in [`dft`]. Quantized (i8/u8) products have integer kernels of their own
//! (`int_gemm`, `int_conv`). Casts to and from the low-precision
//! storage types run [`convert`].

/// Runs `$f::<T>($args)` with `T` the element type of the float dtype `$dt` (f32, f64, f16,
/// bf16); any other dtype returns `Err("<$what> of <dtype> (floats only)")` from the enclosing
/// function. The float kernels (`det`, `dft`, the image ops) dispatch through it.
macro_rules! with_float {
    ($dt:expr, $what:expr, $($f:ident)::+($($args:expr),*)) => {
        match $dt {
            lathe_ir::DType::F32 => $($f)::+::<f32>($($args),*),
            lathe_ir::DType::F64 => $($f)::+::<f64>($($args),*),
            lathe_ir::DType::F16 => $($f)::+::<half::f16>($($args),*),
            lathe_ir::DType::BF16 => $($f)::+::<half::bf16>($($args),*),
            d => return Err(format!("{} of {d} (floats only)", $what)),
        }
    };
}

pub mod argmax;
pub mod chain;
pub mod conv;
pub mod convert;
pub mod copy;
pub mod depthwise;
pub mod det;
pub mod dft;
pub mod direct_conv;
pub mod einsum;
pub mod gather;
pub mod gemm;
pub mod gemv;
pub mod generic_gemm;
pub mod generic_window;
pub mod image;
pub mod indexing;
pub mod int_conv;
pub mod int_gemm;
pub mod int_micro;
pub mod int_pack;
pub mod numeric;
pub mod packed;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod reduce_axes;
pub mod set_item;
pub(crate) mod simd;
pub mod winograd;

pub use gemm::{sgemm, GemmError, MatMut, MatRef};
