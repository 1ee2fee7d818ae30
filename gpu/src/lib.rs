//! Lathe's GPU backend (issue 13): a specialized graph's computing nodes lowered to MLIR
//! kernels, compiled to PTX by MLIR's own pipeline, run through cudarc.
//!
//! [`mlir::lower_graph`] writes one `gpu.func` per computing node (a fused node's body, or a
//! lone op) into a `gpu.module`, in MLIR's `arith`, `math`, `memref`, `scf` and `gpu` dialects:
//! one thread per output element, the value at its coordinates as an index expression over the
//! inputs (loops for what it sums), memrefs flat and of static size. MLIR's pipeline takes the
//! module on to PTX ([`mlir::ptx_pipeline`]). [`exec::Loaded`] runs a lowered graph on a
//! [`exec::Device`]: a CUDA GPU (`cuda`, through cudarc) or the host (`host_device`, each
//! kernel's host form compiled by MLIR's JIT), which checks the lowering without a GPU.
//!
//! The lowering is plain text generation and needs no LLVM to build or test; the `cuda`
//! feature adds MLIR in-process (melior: `mlir::native`), the devices, and the runtime's
//! `--backend cuda`. The tests check the text (`tests/filetests/gpu/`, `; print: mlir`) and,
//! where MLIR's tools are installed, run every kernel on the host against the interpreter;
//! with the feature, every fixture model (`tests/tests/gpu_fixtures.rs`).

// Unsafe code (FFI: MLIR's JIT, the CUDA driver) only in the `cuda` modules that allow it.
#![cfg_attr(not(feature = "cuda"), forbid(unsafe_code))]
#![cfg_attr(feature = "cuda", deny(unsafe_code))]

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod exec;
#[cfg(feature = "cuda")]
pub mod host_device;
pub mod mlir;
