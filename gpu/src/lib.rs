//! Lathe's GPU backend (issue 13), begun: the lowering of the IR's elementwise kernels to MLIR.
//!
//! A kernel is what the CPU backend compiles as one generated function: a `fused.elementwise`
//! node's body, or a lone elementwise op. [`mlir::lower_graph`] writes one `gpu.func` per kernel
//! of a specialized graph (every dimension known) into a `gpu.module`, in MLIR's `arith`, `math`,
//! `memref`, `scf` and `gpu` dialects: one thread per output element, inputs broadcast by their
//! strides, memrefs flat and of static size. MLIR's own pipeline takes such a module on to PTX
//! ([`mlir::ptx_pipeline`]); the runtime that launches the kernels through cudarc is still to
//! come, as are contractions (cuBLAS) and reductions.
//!
//! The lowering is plain text generation and needs no LLVM to build or test; the tests check the
//! text (`tests/filetests/gpu/`, `; print: mlir`) and, where MLIR's `mlir-opt` is installed,
//! that MLIR verifies the module and lowers it to PTX.

// Unsafe code (FFI: MLIR's JIT, the CUDA driver) only in the `cuda` modules that allow it.
#![cfg_attr(not(feature = "cuda"), forbid(unsafe_code))]
#![cfg_attr(feature = "cuda", deny(unsafe_code))]

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod exec;
#[cfg(feature = "cuda")]
pub mod host_device;
pub mod mlir;
