//! CPU kernel library: tuned dense kernels that the CPU backend calls into.
//!
//! Everything around these kernels (bias, activation, residual add) is generated and fused by
//! codegen (`crate::cpu::codegen`); the kernels here do the heavy, hard-to-generate part.

pub mod conv;
pub mod copy;
pub mod depthwise;
pub mod gather;
pub mod gemm;
pub mod gemv;
pub mod packed;
pub mod pad;
pub mod pool;
pub mod reduce;
pub(crate) mod simd;

pub use gemm::{sgemm, GemmError, MatMut, MatRef};
