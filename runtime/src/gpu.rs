//! The CUDA backend ([`Backend::Cuda`]): a specialization's optimized graph lowered by
//! `lathe_gpu` to one kernel per computing node, compiled to PTX by MLIR in-process and run
//! through cudarc, its constants uploaded once. Built with the `cuda` feature only; without it
//! choosing the backend is an error saying how to build it.

use crate::specialization::Exec;
use crate::{Backend, RunError, Signature};
use lathe_compiler::specialized::SpecializedGraph;

/// The CUDA device and the graph loaded on it; one caller at a time.
#[cfg(feature = "cuda")]
pub(crate) struct CudaRunner {
    device: lathe_gpu::cuda::CudaDevice,
    loaded: lathe_gpu::exec::Loaded<lathe_gpu::cuda::CudaDevice>,
}

#[cfg(feature = "cuda")]
impl std::fmt::Debug for CudaRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kernels = self.loaded.lowered().kernels.len();
        write!(
            f,
            "CudaRunner({} kernels for {})",
            kernels,
            self.device.chip()
        )
    }
}

/// Compiles `g` for the CUDA device (device 0).
#[cfg(feature = "cuda")]
pub(crate) fn exec(g: SpecializedGraph, signature: &Signature) -> Result<Exec, RunError> {
    let mut device = lathe_gpu::cuda::CudaDevice::new(0).map_err(RunError::Gpu)?;
    let loaded = lathe_gpu::exec::Loaded::new(&mut device, g.graph().clone()).map_err(|e| {
        RunError::Gpu(format!(
            "compiling the specialization for {signature} for {}: {e}",
            Backend::Cuda
        ))
    })?;
    Ok(Exec::Cuda {
        runner: Box::new(std::sync::Mutex::new(CudaRunner { device, loaded })),
        graph: g,
    })
}

/// Without the `cuda` feature: an error saying how to build the backend.
#[cfg(not(feature = "cuda"))]
pub(crate) fn exec(_g: SpecializedGraph, _signature: &Signature) -> Result<Exec, RunError> {
    Err(RunError::Gpu(format!(
        "this build of Lathe has no {} backend: build it with `cargo build --release -p \
         lathe-cli --features cuda` (needs LLVM/MLIR 19; see the README)",
        Backend::Cuda
    )))
}

/// Runs the loaded graph on `inputs` (in signature order).
#[cfg(feature = "cuda")]
pub(crate) fn run(
    runner: &std::sync::Mutex<CudaRunner>,
    inputs: &[lathe_ir::Tensor],
) -> Result<Vec<lathe_ir::Tensor>, RunError> {
    let mut r = runner
        .lock()
        .map_err(|_| RunError::Gpu("the CUDA device failed in an earlier call".into()))?;
    let CudaRunner { device, loaded } = &mut *r;
    loaded
        .run(device, inputs)
        .map_err(|e| RunError::Gpu(e.to_string()))
}
