//! The host as a [`Device`]: each kernel's host function (the same instructions as its
//! `gpu.func`, in a loop over the elements) compiled by MLIR's JIT, buffers in this process's
//! memory. What checks the lowering of whole models without a GPU.

#![allow(unsafe_code)]

use crate::exec::Device;
use crate::mlir::native::{HostModule, Native};
use crate::mlir::{Kernel, Lowered};
use std::cell::UnsafeCell;

/// A buffer of host memory, 8-byte aligned (for every element type), written by kernels
/// through a pointer: hence the cell.
pub struct HostBuf {
    words: UnsafeCell<Vec<u64>>,
    len: usize,
}

impl HostBuf {
    fn zeroed(len: usize) -> HostBuf {
        HostBuf {
            words: UnsafeCell::new(vec![0; len.div_ceil(8).max(1)]),
            len,
        }
    }

    fn pointer(&self) -> *mut u8 {
        // SAFETY: the vector is not resized while a pointer to its elements is in use.
        unsafe { (*self.words.get()).as_mut_ptr() as *mut u8 }
    }
}

/// The host, running the kernels of one lowered graph.
pub struct HostDevice {
    native: Native,
    module: Option<HostModule>,
}

impl Default for HostDevice {
    fn default() -> Self {
        HostDevice::new()
    }
}

impl HostDevice {
    pub fn new() -> HostDevice {
        HostDevice {
            native: Native::new(),
            module: None,
        }
    }
}

impl Device for HostDevice {
    type Buf = HostBuf;

    fn load(&mut self, lowered: &Lowered) -> Result<(), String> {
        let mut text = String::from("module {\n");
        for k in &lowered.kernels {
            text.push_str(&k.host);
        }
        text.push_str("}\n");
        self.module = Some(self.native.host(&text)?);
        Ok(())
    }

    fn upload(&mut self, bytes: &[u8]) -> Result<HostBuf, String> {
        let buf = HostBuf::zeroed(bytes.len());
        // SAFETY: the buffer holds at least `bytes.len()` bytes and is not shared yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.pointer(), bytes.len()) };
        Ok(buf)
    }

    fn alloc_zeroed(&mut self, len: usize) -> Result<HostBuf, String> {
        Ok(HostBuf::zeroed(len))
    }

    fn download(&mut self, buf: &HostBuf, len: usize) -> Result<Vec<u8>, String> {
        if len > buf.len {
            return Err(format!("reading {len} bytes of a buffer of {}", buf.len));
        }
        // SAFETY: `len` bytes are inside the buffer; no kernel runs meanwhile.
        Ok(unsafe { std::slice::from_raw_parts(buf.pointer(), len) }.to_vec())
    }

    fn launch(&mut self, kernel: &Kernel, args: &[&HostBuf]) -> Result<(), String> {
        let module = self.module.as_ref().ok_or("no module loaded")?;
        let pointers: Vec<*mut u8> = args.iter().map(|b| b.pointer()).collect();
        // SAFETY: the executor passes a buffer of each argument's and output's size (checked
        // by the types it allocated them from), 8-byte aligned; outputs are fresh buffers.
        unsafe { module.call(&kernel.symbol, &pointers) }
    }

    fn release(&mut self, _buf: HostBuf) {}
}
