//! An NVIDIA GPU as a [`Device`], through cudarc (the driver API, loaded at run time: no CUDA
//! toolkit to build): one context and stream, the graph's kernels as one PTX module made by
//! MLIR in-process for the device's architecture (sm_80 or sm_90), a caching allocator (freed
//! buffers are kept by size and reused, zeroed).

#![allow(unsafe_code)]

use crate::exec::Device;
use crate::mlir::native::Native;
use crate::mlir::{Kernel, Lowered};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Threads per block of every launch.
const BLOCK: u32 = 256;

/// A CUDA device running the kernels of one lowered graph.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    chip: &'static str,
    libdevice: Option<PathBuf>,
    module: Option<Arc<CudaModule>>,
    functions: HashMap<String, CudaFunction>,
    /// Released buffers by size, for reuse.
    free: HashMap<usize, Vec<CudaSlice<u8>>>,
}

/// Why there is no CUDA device, in one line (no driver, no device, an unsupported one).
pub fn unavailable(ordinal: usize) -> Option<String> {
    CudaDevice::new(ordinal).err()
}

impl CudaDevice {
    /// Device `ordinal`; an error saying why when there is no driver or no such device.
    /// libdevice (CUDA's math functions, which the kernels call) comes from
    /// `$LATHE_CUDA_NVCC/nvvm/libdevice/libdevice.10.bc` (the `nvidia-cuda-nvcc-cu12` pip
    /// package's `nvidia/cuda_nvcc`).
    pub fn new(ordinal: usize) -> Result<CudaDevice, String> {
        // SAFETY: only tries to load the driver library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver: libcuda.so could not be loaded".into());
        }
        let ctx =
            CudaContext::new(ordinal).map_err(|e| format!("no CUDA device {ordinal}: {e}"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| format!("CUDA device {ordinal}: {e}"))?;
        let chip = match major {
            9.. => "sm_90",
            8 => "sm_80",
            _ => {
                return Err(format!(
                    "CUDA device {ordinal} has compute capability {major}.{minor}; Lathe's \
                     kernels need 8.0 or newer"
                ))
            }
        };
        let libdevice = std::env::var_os("LATHE_CUDA_NVCC")
            .map(|d| PathBuf::from(d).join("nvvm/libdevice/libdevice.10.bc"))
            .filter(|p| p.is_file());
        let stream = ctx.default_stream();
        Ok(CudaDevice {
            ctx,
            stream,
            chip,
            libdevice,
            module: None,
            functions: HashMap::new(),
            free: HashMap::new(),
        })
    }

    /// The architecture the kernels are compiled for (`sm_80`, `sm_90`).
    pub fn chip(&self) -> &str {
        self.chip
    }
}

impl Device for CudaDevice {
    type Buf = CudaSlice<u8>;

    fn load(&mut self, lowered: &Lowered) -> Result<(), String> {
        // An MLIR context of its own (not kept: it may not move between threads, the device may).
        let ptx = Native::new().ptx(&lowered.text, self.chip, self.libdevice.as_deref())?;
        if self.libdevice.is_none() && ptx.contains("__nv_") {
            return Err(
                "the kernels call CUDA's math library: set LATHE_CUDA_NVCC to the \
                 `nvidia/cuda_nvcc` directory of the `nvidia-cuda-nvcc-cu12` pip package \
                 (for nvvm/libdevice/libdevice.10.bc)"
                    .into(),
            );
        }
        let module = (self.ctx)
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| format!("the CUDA driver refused the PTX: {e}"))?;
        self.functions.clear();
        for k in &lowered.kernels {
            let f = module
                .load_function(&k.symbol)
                .map_err(|e| format!("kernel {}: {e}", k.symbol))?;
            self.functions.insert(k.symbol.clone(), f);
        }
        self.module = Some(module);
        Ok(())
    }

    fn upload(&mut self, bytes: &[u8]) -> Result<CudaSlice<u8>, String> {
        let mut buf = self.alloc_zeroed(bytes.len())?;
        (self.stream)
            .memcpy_htod(bytes, &mut buf)
            .map_err(|e| format!("copying {} bytes to the device: {e}", bytes.len()))?;
        Ok(buf)
    }

    fn alloc_zeroed(&mut self, len: usize) -> Result<CudaSlice<u8>, String> {
        let len = len.max(1);
        if let Some(mut buf) = self.free.get_mut(&len).and_then(Vec::pop) {
            (self.stream)
                .memset_zeros(&mut buf)
                .map_err(|e| format!("zeroing {len} bytes: {e}"))?;
            return Ok(buf);
        }
        (self.stream)
            .alloc_zeros::<u8>(len)
            .map_err(|e| format!("allocating {len} bytes on the device: {e}"))
    }

    fn alloc_output(&mut self, len: usize) -> Result<CudaSlice<u8>, String> {
        let len = len.max(1);
        if let Some(buf) = self.free.get_mut(&len).and_then(Vec::pop) {
            return Ok(buf);
        }
        // SAFETY: the kernel writes every byte of its output before anything reads it.
        unsafe { self.stream.alloc::<u8>(len) }
            .map_err(|e| format!("allocating {len} bytes on the device: {e}"))
    }

    fn download(&mut self, buf: &CudaSlice<u8>, len: usize) -> Result<Vec<u8>, String> {
        let mut bytes = (self.stream)
            .clone_dtoh(buf)
            .map_err(|e| format!("copying {len} bytes from the device: {e}"))?;
        bytes.truncate(len);
        Ok(bytes)
    }

    fn launch(&mut self, kernel: &Kernel, args: &[&CudaSlice<u8>]) -> Result<(), String> {
        let f = (self.functions.get(&kernel.symbol))
            .ok_or_else(|| format!("kernel {} is not loaded", kernel.symbol))?;
        let blocks = u32::try_from(kernel.elements.div_ceil(BLOCK as usize))
            .map_err(|_| format!("{} elements are too many for one launch", kernel.elements))?;
        let config = LaunchConfig {
            grid_dim: (blocks.max(1), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(f);
        for a in args {
            launch.arg(*a);
        }
        // SAFETY: the kernel takes one pointer per argument and output, in this order, and
        // reads and writes within each buffer's size (the types the executor allocated them
        // from); threads past the last element do nothing.
        unsafe { launch.launch(config) }
            .map(|_| ())
            .map_err(|e| format!("launching kernel {}: {e}", kernel.symbol))
    }

    fn release(&mut self, buf: CudaSlice<u8>) {
        self.free.entry(buf.len()).or_default().push(buf);
    }
}
