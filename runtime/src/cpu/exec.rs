//! Running a plan: one call binds the storages to memory (the caller's inputs, the plan's
//! constants, a pooled arena, fresh output tensors), then runs the steps in order, splitting
//! each large kernel into tasks over the thread pool.
//!
//! Tasks of one step write disjoint rows (or columns) of their output, so handing them raw
//! pointers into the same buffer is sound; every pointer is derived from a storage of the
//! right size for its buffer (checked when the plan is built: a buffer is a dense view of its
//! whole storage).

use super::codegen::RowKernel;
use super::error::CpuError;
use super::plan::*;
use super::threads::ThreadPool;
use crate::kernels::gemm::{sgemm, MatMut, MatRef};
use crate::kernels::gemv::{gemv, gemv_packed};
use crate::kernels::generic_gemm::{self, GemmDims};
use crate::kernels::packed::{gemm_packed_then, PackedB};
use lathe_ir::{DType, Tensor};
use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::Ordering;

mod columns;
mod integer;
mod regions;

/// Output rows a generated kernel handles per task, at least (in elements, rows × row length).
const MIN_TASK_ELEMS: usize = 16 * 1024;

/// Floating-point operations a dense kernel's task gets, at least: about a microsecond of
/// work, which is what handing a task to another thread costs at worst.
pub(super) const MIN_TASK_FLOPS: usize = 100_000;

/// A cache line of bytes: the arena's unit, so every offset is 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line(pub [u8; 64]);

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Line")
    }
}

/// The memory of one call.
pub struct Frame {
    /// Base pointer of every storage (bytes; any dtype).
    ptrs: Vec<*mut u8>,
    /// Output tensors being written, by output storage: created with the dtype and shape of
    /// the output buffer, their data written in place and handed to the caller as they are.
    outputs: Vec<(usize, Tensor)>,
    /// The sub-frames of each `while` and `if` step (by its `frame` index), bound once per
    /// call so that iterations bind nothing (see `exec/regions.rs`).
    regions: Vec<regions::BoundRegion>,
}

// SAFETY: a frame's pointers are into memory that outlives the call (the caller's inputs, the
// plan's constants, the call's arena and output vectors). Shared between the tasks of one
// step (or of one wave's independent steps), which write disjoint regions of their outputs
// and only read the rest (see the module notes).
unsafe impl Sync for Frame {}
// SAFETY: the pointers are into memory the caller keeps alive for the frame's whole life
// (inputs, constants, the arena) or that the frame owns (outputs); moving it moves no data.
unsafe impl Send for Frame {}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `need` floats of this thread's scratch (grown when shorter; its contents are
/// whatever the last user left).
fn with_scratch<R>(need: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut scratch = s.borrow_mut();
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        f(&mut scratch[..need])
    })
}

impl Frame {
    /// Binds `plan`'s storages: inputs (already in plan order, checked by the caller) read in
    /// place when dense, constants, the arena and fresh output tensors. `keep` receives
    /// standard-layout copies of inputs that are not dense, for the frame to read.
    pub fn bind(
        plan: &Plan,
        inputs: &[Tensor],
        arena: &mut [Line],
        keep: &mut Vec<Tensor>,
    ) -> Frame {
        let base = arena.as_mut_ptr() as *mut u8;
        let mut outputs = vec![];
        // SAFETY: the arena holds at least `plan.stats.arena_bytes` bytes (the caller's).
        let ptrs = unsafe {
            storage_ptrs(plan, base, |s, kind| match kind {
                StorageKind::Input(i) => match dense_bytes(&inputs[*i]) {
                    Some(p) => p,
                    None => {
                        keep.push(inputs[*i].clone().into_standard_layout());
                        dense_bytes(keep.last().expect("just pushed"))
                            .expect("a standard-layout tensor is dense")
                    }
                },
                _ => {
                    // An output: the output buffer that owns this storage says its type.
                    let (dtype, dims) = plan
                        .outputs
                        .iter()
                        .map(|&b| &plan.bufs[b])
                        .find(|b| b.storage == s)
                        .map(|b| (b.dtype, b.dims.clone()))
                        .unwrap_or((DType::U8, vec![plan.storages[s].bytes]));
                    let mut t = Tensor::zeros(dtype, &dims);
                    let p = dense_bytes_mut(&mut t).expect("a fresh tensor is dense");
                    // Moving the tensor moves its array header, not its heap data.
                    outputs.push((s, t));
                    p
                }
            })
        };
        let regions = regions::bind_regions(plan, &ptrs);
        Frame {
            ptrs,
            outputs,
            regions,
        }
    }

    /// Binds `plan`'s storages to the caller's memory: input `i` read at `inputs[i]`, each
    /// output written at `outputs[j]` where the plan writes it in place (others are copied
    /// there by [`Frame::copy_outputs`]), the arena at `arena`.
    ///
    /// # Safety
    /// Every pointer is valid for its buffer's bytes (dense row-major, inputs read, outputs
    /// written) until the frame is gone; `arena` is 64-byte aligned and valid for
    /// `plan.stats.arena_bytes` bytes; no pointer overlaps another.
    pub unsafe fn bind_raw(
        plan: &Plan,
        inputs: &[*const u8],
        outputs: &[*mut u8],
        arena: *mut u8,
    ) -> Frame {
        // SAFETY: the caller gives the arena's bytes.
        let ptrs = unsafe {
            storage_ptrs(plan, arena, |s, kind| match kind {
                StorageKind::Input(i) => inputs[*i].cast_mut(),
                _ => (plan.outputs.iter())
                    .position(|&b| plan.bufs[b].storage == s)
                    .map_or(std::ptr::null_mut(), |j| outputs[j]),
            })
        };
        let regions = regions::bind_regions(plan, &ptrs);
        Frame {
            ptrs,
            outputs: vec![],
            regions,
        }
    }

    /// After a run of a frame from [`Frame::bind_raw`]: copies each output the steps did not
    /// write at `outputs[j]` itself (a constant, an input, or a value output twice) there.
    ///
    /// # Safety
    /// As [`Frame::bind_raw`], with the same `outputs`.
    pub unsafe fn copy_outputs(&self, plan: &Plan, outputs: &[*mut u8]) {
        for (&b, &to) in plan.outputs.iter().zip(outputs) {
            let from = self.bytes_ptr(plan, b);
            if from != to {
                // SAFETY: both hold the buffer's bytes (the caller's contract), and the
                // caller's output buffers overlap nothing.
                unsafe { std::ptr::copy_nonoverlapping(from, to, plan.bufs[b].bytes()) };
            }
        }
    }

    /// The base of a buffer's storage, as bytes.
    fn bytes_ptr(&self, plan: &Plan, b: BufId) -> *mut u8 {
        let buf = &plan.bufs[b];
        // SAFETY: the lowering keeps every buffer inside its storage (`offset + bytes` at most
        // the storage's bytes), and the storage is bound to at least that many bytes.
        unsafe { self.ptrs[buf.storage].add(buf.offset) }
    }

    fn ptr(&self, plan: &Plan, b: BufId) -> *mut f32 {
        self.bytes_ptr(plan, b) as *mut f32
    }

    /// The buffer as a slice.
    ///
    /// # Safety
    /// No task may write the buffer while the slice lives.
    unsafe fn f32s<'a>(&self, plan: &Plan, b: BufId) -> &'a [f32] {
        std::slice::from_raw_parts(self.ptr(plan, b), plan.bufs[b].len())
    }

    /// A single-threaded step's input and output slices.
    ///
    /// # Safety
    /// `x` and `out` are distinct storages that nothing else touches while the slices live.
    unsafe fn in_out<'a>(&self, plan: &Plan, x: BufId, out: BufId) -> (&'a [f32], &'a mut [f32]) {
        (
            self.f32s(plan, x),
            std::slice::from_raw_parts_mut(self.ptr(plan, out), plan.bufs[out].len()),
        )
    }

    /// Takes the output tensors, in output order: the tensors the steps wrote, without a
    /// copy (reshaped when the output buffer views its storage with other dims).
    pub fn into_outputs(mut self, plan: &Plan) -> Vec<Tensor> {
        plan.outputs
            .iter()
            .map(|&b| {
                let buf = &plan.bufs[b];
                match self.outputs.iter().position(|(s, _)| *s == buf.storage) {
                    Some(i) => {
                        let t = std::mem::replace(
                            &mut self.outputs[i].1,
                            Tensor::zeros(DType::U8, &[0]),
                        );
                        if t.dtype() == buf.dtype && t.shape() == buf.dims.as_slice() {
                            t
                        } else {
                            let bytes = t.to_le_bytes();
                            Tensor::from_le_bytes(buf.dtype, &buf.dims, &bytes)
                                .expect("an output buffer views its whole storage")
                        }
                    }
                    None => self.tensor(plan, b),
                }
            })
            .collect()
    }

    /// A copy of a buffer as a tensor (for the interpreter).
    fn tensor(&self, plan: &Plan, b: BufId) -> Tensor {
        let buf = &plan.bufs[b];
        if let StorageKind::Const(t) = &plan.storages[buf.storage].kind {
            if t.shape() == buf.dims.as_slice() && t.dtype() == buf.dtype {
                return (**t).clone();
            }
        }
        // SAFETY: the storage holds the buffer's bytes and nothing writes it now.
        let bytes = unsafe { std::slice::from_raw_parts(self.bytes_ptr(plan, b), buf.bytes()) };
        Tensor::from_le_bytes(buf.dtype, &buf.dims, bytes).expect("a buffer holds its type's bytes")
    }

    /// Runs every step; with `times`, adds each step's wall time to its entry.
    pub fn run(
        &self,
        plan: &Plan,
        pool: &ThreadPool,
        mut times: Option<&mut [std::time::Duration]>,
    ) -> Result<(), CpuError> {
        for (wave, &side_by_side) in plan.waves.iter().zip(&plan.side_by_side) {
            if side_by_side && pool.threads() > 1 && !splits_well(&plan.steps[wave.clone()], pool) {
                // Independent branches: one step per task; each step's own split runs inline
                // (the pool is busy with this wave).
                let spent: Vec<std::sync::atomic::AtomicU64> =
                    wave.clone().map(|_| Default::default()).collect();
                let err = std::sync::Mutex::new(None);
                pool.run(wave.len(), &|t| {
                    let step = &plan.steps[wave.start + t];
                    let start = std::time::Instant::now();
                    if let Err(e) = self.timed_step(plan, step, pool) {
                        *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                    spent[t].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                });
                if let Some(e) = err.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    return Err(e);
                }
                if let Some(t) = times.as_deref_mut() {
                    for (k, ns) in spent.iter().enumerate() {
                        t[wave.start + k] +=
                            std::time::Duration::from_nanos(ns.load(Ordering::Relaxed));
                    }
                }
                continue;
            }
            for i in wave.clone() {
                let start = times.as_ref().map(|_| std::time::Instant::now());
                self.timed_step(plan, &plan.steps[i], pool)?;
                if let (Some(t), Some(start)) = (times.as_deref_mut(), start) {
                    t[i] += start.elapsed();
                }
            }
        }
        Ok(())
    }

    /// One step, in a tracing span, with its error located.
    fn timed_step(&self, plan: &Plan, step: &Step, pool: &ThreadPool) -> Result<(), CpuError> {
        let _span = tracing::trace_span!("kernel", node = %step.name, op = step.op.0).entered();
        match &step.kernel {
            Kernel::While(l) => return self.run_loop(plan, step, l, pool),
            Kernel::If(b) => return self.run_branch(plan, step, b, pool),
            _ => {}
        }
        self.step(plan, step, pool)
            .map_err(|message| CpuError::Kernel {
                node: step.name.clone(),
                op: step.op.to_string(),
                message,
            })
    }

    fn step(&self, plan: &Plan, step: &Step, pool: &ThreadPool) -> Result<(), String> {
        match &step.kernel {
            Kernel::Gemm {
                gemm,
                a,
                b,
                packed,
                c,
                epilogue,
            } => self.gemm(
                plan,
                gemm,
                (*a, *b, packed.as_deref()),
                *c,
                epilogue.as_ref(),
                pool,
            ),
            Kernel::Window {
                kernel,
                x,
                out,
                epilogue,
            } => {
                self.window(plan, kernel, *x, *out, epilogue.as_ref(), pool);
                Ok(())
            }
            Kernel::GenericGemm {
                gemm,
                dtype,
                a,
                b,
                c,
                epilogue,
            } => {
                self.generic_gemm(plan, gemm, *dtype, [*a, *b, *c], pool);
                self.after(plan, epilogue.as_ref(), pool)
            }
            Kernel::IntGemm {
                kernel,
                a,
                b,
                a_zp,
                b_zp,
                c,
                epilogue,
            } => {
                self.int_gemm(plan, kernel, [*a, *b, *a_zp, *b_zp, *c], pool);
                self.after(plan, epilogue.as_ref(), pool)
            }
            Kernel::IntConv {
                kernel,
                x,
                filter,
                x_zp,
                filter_zp,
                out,
                epilogue,
            } => {
                self.int_conv(plan, kernel, [*x, *filter, *x_zp, *filter_zp], *out, pool);
                self.after(plan, epilogue.as_ref(), pool)
            }
            Kernel::Einsum {
                kernel,
                inputs,
                out,
                epilogue,
            } => {
                let ins: Vec<SendBytes> = inputs
                    .iter()
                    .map(|&b| SendBytes(self.bytes_ptr(plan, b)))
                    .collect();
                let dst = SendBytes(self.bytes_ptr(plan, *out));
                let n = kernel.out_len();
                split(pool, n, kernel.work() / MIN_TASK_FLOPS, &|mine| {
                    let ptrs: Vec<*const u8> = ins.iter().map(|p| p.get() as *const u8).collect();
                    // SAFETY: the buffers have the kernel's dtype and shapes (built from their
                    // types); operands are only read, and each task writes its own elements.
                    unsafe { kernel.run(&ptrs, dst.get(), mine) };
                });
                self.after(plan, epilogue.as_ref(), pool)
            }
            Kernel::GenericWindow {
                kernel,
                x,
                filter,
                out,
                epilogue,
            } => {
                let (xs, fs, os) = (
                    SendBytes(self.bytes_ptr(plan, *x)),
                    SendBytes(filter.map_or(std::ptr::null_mut(), |f| self.bytes_ptr(plan, f))),
                    SendBytes(self.bytes_ptr(plan, *out)),
                );
                let rows = kernel.rows();
                let tasks = rows * kernel.flops_per_row() / MIN_TASK_FLOPS;
                split(pool, rows, tasks, &|mine| {
                    // SAFETY: the buffers have the kernel's dtype and shapes (built from their
                    // types); input and filter are only read, and each task writes its own
                    // output pixels.
                    unsafe { kernel.run_rows(xs.get(), fs.get(), os.get(), mine) };
                });
                self.after(plan, epilogue.as_ref(), pool)
            }
            Kernel::ReduceAxes { kernel, x, out } => {
                if let Some(e) = kernel.fault() {
                    return Err(e.to_string());
                }
                let (src, dst) = (
                    SendBytes(self.bytes_ptr(plan, *x)),
                    SendBytes(self.bytes_ptr(plan, *out)),
                );
                let tasks = kernel.input_len() / MIN_TASK_ELEMS;
                split(pool, kernel.parts(), tasks, &|mine| {
                    // SAFETY: the buffers have the kernel's dtype and shapes (built from their
                    // types); `x` is only read, and each task writes the output of its parts.
                    unsafe { kernel.run_parts(src.get(), dst.get(), mine) };
                });
                Ok(())
            }
            Kernel::Det { kernel, x, out } => {
                // SAFETY: the buffers have the kernel's dtype and shapes (built from their
                // types); `x` is only read and `out` is a distinct buffer.
                unsafe { kernel.run(self.bytes_ptr(plan, *x), self.bytes_ptr(plan, *out)) }
            }
            Kernel::Dft { kernel, x, out } => {
                // SAFETY: as for `Det`: the buffers have the kernel's dtype and shapes, `x` is
                // only read and `out` is a distinct buffer.
                unsafe { kernel.run(self.bytes_ptr(plan, *x), self.bytes_ptr(plan, *out)) }
            }
            Kernel::ArgMax { kernel, x, out } => {
                if let Some(e) = kernel.fault() {
                    return Err(e.to_string());
                }
                let (src, dst) = (
                    SendBytes(self.bytes_ptr(plan, *x)),
                    SendBytes(self.bytes_ptr(plan, *out)),
                );
                let tasks = kernel.outer * kernel.n * kernel.inner / MIN_TASK_ELEMS;
                split(pool, kernel.outer, tasks, &|mine| {
                    // SAFETY: as for a reduction: typed buffers of the kernel's shapes, the
                    // input only read, each task writing the rows of its outer indices.
                    unsafe { kernel.run_outer(src.get(), dst.get(), mine) };
                });
                Ok(())
            }
            Kernel::Rows {
                kernel,
                inputs,
                outputs,
            } => {
                let bound = self.bind_rows(plan, kernel, inputs, outputs);
                bound.run_split(pool);
                // Inputs the interpreter rejects (an integer division by zero) are this
                // step's error too, never a silent 0.
                bound.fault().map_err(|f| f.to_string())
            }
            Kernel::Pad { kernel, x, out } => {
                // SAFETY: x is only read during this step (a step's input and output are
                // distinct storages: only generated kernels write in place).
                let xs = unsafe { self.f32s(plan, *x) };
                let o = SendPtr(self.ptr(plan, *out));
                let (rows, len) = kernel.out_rows();
                let tasks = copy_tasks(4 * rows * len, rows, pool);
                split(pool, rows, tasks, &|mine| {
                    // SAFETY: the output holds `rows × len` floats; each task writes its own
                    // rows of it, and nothing else touches it during the step.
                    let o = unsafe {
                        std::slice::from_raw_parts_mut(
                            o.get().add(mine.start * len),
                            mine.len() * len,
                        )
                    };
                    kernel.run_rows(xs, mine, o);
                });
                Ok(())
            }
            Kernel::Reduce { kernel, x, out } => {
                // SAFETY: a step's input and output are distinct storages (only generated
                // kernels write in place), and this step alone touches them now.
                let (xs, o) = unsafe { self.in_out(plan, *x, *out) };
                kernel.run(xs, o);
                Ok(())
            }
            Kernel::Interp {
                op,
                inputs,
                outputs,
                ..
            } => {
                let tensors: Vec<Tensor> = inputs.iter().map(|&b| self.tensor(plan, b)).collect();
                let refs: Vec<&Tensor> = tensors.iter().collect();
                let results = op.eval(&refs)?;
                for (&o, t) in outputs.iter().zip(results) {
                    let buf = &plan.bufs[o];
                    if t.dtype() != buf.dtype || t.shape() != buf.dims.as_slice() {
                        return Err(format!(
                            "the interpreter produced {} where the plan expects {}{:?}",
                            t.ty(),
                            buf.dtype,
                            buf.dims
                        ));
                    }
                    let bytes = t.into_standard_layout().to_le_bytes();
                    // SAFETY: the output buffer holds exactly these bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            self.bytes_ptr(plan, o),
                            bytes.len(),
                        )
                    };
                }
                Ok(())
            }
            Kernel::Move { fills, parts } => {
                for (b, value) in fills {
                    // SAFETY: the buffer holds `len` elements of `value.len()` bytes, written by
                    // this step alone.
                    unsafe {
                        crate::kernels::copy::fill(
                            self.bytes_ptr(plan, *b),
                            value,
                            plan.bufs[*b].len(),
                        )
                    };
                }
                for part in parts {
                    self.strided_copy(plan, part, pool);
                }
                Ok(())
            }
            Kernel::Indexed { kernel, x, out } => {
                let (src, dst) = (
                    SendBytes(self.bytes_ptr(plan, *x)),
                    SendBytes(self.bytes_ptr(plan, *out)),
                );
                let rows = kernel.rows();
                let tasks = copy_tasks(plan.bufs[*out].bytes(), rows, pool);
                pool.run(tasks, &|t| {
                    let mine = block(rows, tasks, 1, t);
                    // SAFETY: `x` and `out` are distinct storages of this step (the input is
                    // only read); each task writes its own rows of the output.
                    unsafe { kernel.run_rows(src.get(), dst.get(), mine) };
                });
                Ok(())
            }
            Kernel::Gather {
                kernel,
                params,
                indices,
                out,
            } => {
                let (p, i, o) = (
                    SendBytes(self.bytes_ptr(plan, *params)),
                    SendBytes(self.bytes_ptr(plan, *indices)),
                    SendBytes(self.bytes_ptr(plan, *out)),
                );
                let rows = kernel.rows();
                let tasks = copy_tasks(plan.bufs[*out].bytes(), rows, pool);
                let err = std::sync::Mutex::new(None);
                pool.run(tasks, &|t| {
                    let mine = block(rows, tasks, 1, t);
                    // SAFETY: the buffers have the kernel's geometry (checked when lowered);
                    // the output is its own storage and each task writes its own rows.
                    if let Err(e) = unsafe { kernel.run_rows(p.get(), i.get(), o.get(), mine) } {
                        *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                });
                match err.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            Kernel::Fill { value, out } => {
                // An element on the stack (no allocation: loop bodies run steps many times).
                let mut v = [0u8; 16];
                let elem = plan.bufs[*value].dtype.size_bytes().min(v.len());
                // SAFETY: `value` holds one element of `elem` bytes (no dtype is wider than
                // 16); nothing writes it during this step.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.bytes_ptr(plan, *value),
                        v.as_mut_ptr(),
                        elem,
                    )
                };
                // SAFETY: `out` holds `len` elements of this size, written by this step alone.
                unsafe {
                    crate::kernels::copy::fill(
                        self.bytes_ptr(plan, *out),
                        &v[..elem],
                        plan.bufs[*out].len(),
                    )
                };
                Ok(())
            }
            Kernel::SetItem {
                kernel,
                x,
                index,
                item,
                out,
            } => {
                let ptr = |b: &BufId| self.bytes_ptr(plan, *b);
                // SAFETY: the buffers have the kernel's geometry (checked when lowered); `out`
                // is `x`'s own storage (written in place, see `in_place`) or a distinct one, and
                // this step alone touches it.
                unsafe { kernel.run(ptr(x), ptr(index), ptr(item), ptr(out)) }.map(|_| ())
            }
            Kernel::Indexing {
                kernel,
                inputs,
                outputs,
            } => {
                let (ins, outs) = self.byte_ptrs(plan, inputs, outputs);
                // SAFETY: the buffers have the kernel's geometry (built from their types when
                // lowered); the outputs are fresh storages of this step, which alone touches
                // them now, and the inputs are only read.
                unsafe { kernel.run(ins.as_slice(), outs.as_slice()) }
            }
            Kernel::Image {
                kernel,
                inputs,
                outputs,
            } => {
                let (ins, outs) = self.byte_ptrs(plan, inputs, outputs);
                // SAFETY: the buffers have the kernel's geometry and dtype (built from their
                // types when lowered); the outputs are fresh storages of this step, which alone
                // touches them now, and the inputs are only read.
                unsafe { kernel.run(ins.as_slice(), outs.as_slice()) }
            }
            Kernel::Convert { kernel, x, out } => {
                let (x, out) = (
                    self.bytes_ptr(plan, *x) as *const u8,
                    self.bytes_ptr(plan, *out),
                );
                // SAFETY: both buffers hold `len` elements of their dtypes (lowered from the
                // node's types); the output is this step's own fresh storage, never the input's
                // (a conversion is not an in-place elementwise kernel).
                unsafe { kernel.run(x, out) };
                Ok(())
            }
            Kernel::While(_) | Kernel::If(_) => {
                Err("internal error: a region step reached the kernel dispatch".into())
            }
            Kernel::Copy { from, to } => {
                let n = plan.bufs[*from].bytes();
                // SAFETY: distinct storages of at least `n` bytes each (every storage, constants
                // included, is bound to its dense bytes).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.bytes_ptr(plan, *from),
                        self.bytes_ptr(plan, *to),
                        n,
                    )
                };
                Ok(())
            }
        }
    }

    /// One strided copy, split by rows across the pool when it moves enough bytes.
    fn strided_copy(&self, plan: &Plan, part: &MovePart, pool: &ThreadPool) {
        let (src, dst) = (
            SendBytes(self.bytes_ptr(plan, part.src)),
            SendBytes(self.bytes_ptr(plan, part.dst)),
        );
        let rows = part.copy.rows();
        let tasks = copy_tasks(part.copy.len() * part.copy.elem, rows, pool);
        pool.run(tasks, &|t| {
            let mine = block(rows, tasks, 1, t);
            // SAFETY: the copy's extents fit its buffers (checked when lowered); source and
            // destination are distinct storages, or disjoint slices of one (a concat member
            // is never copied onto itself); each task writes its own rows.
            unsafe { part.copy.run_rows(src.get(), dst.get(), mine) };
        });
    }

    fn gemm(
        &self,
        plan: &Plan,
        g: &super::matmul::BatchedGemm,
        (a, b, packed): (BufId, BufId, Option<&PackedB>),
        c: BufId,
        epilogue: Option<&Epilogue>,
        pool: &ThreadPool,
    ) -> Result<(), String> {
        // SAFETY: A and B are only read during this step (C is a distinct storage: GEMM never
        // runs in place). A packed B is not read from memory (its storage may be dropped).
        let a_all = unsafe { self.f32s(plan, a) };
        let b_all: &[f32] = match packed {
            Some(_) => &[],
            // SAFETY: as for A.
            None => unsafe { self.f32s(plan, b) },
        };
        let c_ptr = SendPtr(self.ptr(plan, c));
        let c_len = plan.bufs[c].len();
        let threads = pool.threads();
        let batches = g.batch_count();
        let dense_c_row = g.c == (g.n, 1);
        if batches == 1 && g.m == 1 && dense_c_row && g.n >= 64 && g.k > 0 {
            // Batch-1 dense layer: memory-bound, split over columns (whole panels of a
            // packed B).
            let tasks = (g.n / 64).clamp(1, threads);
            let panel = packed.map_or(1, |p| p.panel_width());
            // A's one row, contiguous for a packed B (copied only when its column stride is
            // not 1).
            let a_row: std::borrow::Cow<'_, [f32]> = match (packed, g.a.1) {
                (None, _) => (&[][..]).into(),
                (Some(_), 1) => a_all[..g.k].into(),
                (Some(_), s) => (0..g.k).map(|p| a_all[p * s]).collect(),
            };
            let av = MatRef {
                data: a_all,
                rows: 1,
                cols: g.k,
                strides: g.a,
            };
            let bv = MatRef {
                data: b_all,
                rows: g.k,
                cols: g.n,
                strides: g.b,
            };
            pool.run(tasks, &|t| {
                let cols = block(g.n, tasks, panel, t);
                // SAFETY: each task writes its own columns of C's one row.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(c_ptr.get().add(cols.start), cols.len())
                };
                match packed {
                    Some(p) => gemv_packed(&a_row, p, cols, out),
                    None => gemv(av, bv, cols, out),
                }
            });
            if let Some(e) = epilogue {
                self.bind_epilogue(plan, e).run_split(pool);
            }
            return Ok(());
        }
        if let (1, Some(p)) = (batches, packed) {
            let split = columns::blocks(g.m, g.k, g.n, gemm_threads(g, threads));
            if split.1 > 1 {
                self.gemm_blocks(plan, g, (a, p, c), split, epilogue, pool);
                return Ok(());
            }
        }
        let (row_chunk, chunks) = gemm_tasks(g, threads);
        let tasks = batches * chunks;
        let err = std::sync::Mutex::new(None);
        let tiled = epilogue
            .filter(|e| e.tiled)
            .map(|e| self.bind_epilogue(plan, e));
        pool.run(tasks, &|t| {
            let (bi, ci) = (t / chunks, t % chunks);
            let rows = (ci * row_chunk).min(g.m)..((ci + 1) * row_chunk).min(g.m);
            let [oa, ob, oc] = g.offsets(bi);
            let oa = oa + rows.start * g.a.0;
            let oc = oc + rows.start * g.c.0;
            let av = MatRef {
                data: &a_all[oa.min(a_all.len())..],
                rows: rows.len(),
                cols: g.k,
                strides: g.a,
            };
            let bv = MatRef {
                data: &b_all[ob.min(b_all.len())..],
                rows: g.k,
                cols: g.n,
                strides: g.b,
            };
            let oc_in = oc.min(c_len);
            // SAFETY: C's storage holds `c_len` floats, so `oc_in..c_len` is in it. The view's
            // range reaches over other tasks' rows, but the elements it addresses (rows
            // `rows` of this batch) belong to this task alone: tasks are distinct (batch,
            // row chunk) pairs and C is the op's output, each of its elements the result of
            // exactly one (batch, row, column) of the product. Nothing else reads C during
            // the step but each task's tiled epilogue, on its own rows once they are final.
            let cv = unsafe {
                MatMut::from_raw_parts(c_ptr.get().add(oc_in), c_len - oc_in, rows.len(), g.n, g.c)
            };
            // C is dense rows when the epilogue is tiled: its element offset says which
            // output row is this task's first.
            let r0 = oc / g.n.max(1);
            if let Some(p) = packed {
                // The tiled epilogue runs on rows as soon as they are final, still in cache
                // (the view holds no reference to C, so it may write them in place).
                let after: &mut dyn FnMut(Range<usize>) = match &tiled {
                    Some(e) => &mut |r| e.run(r0 + r.start..r0 + r.end),
                    None => &mut |_| {},
                };
                gemm_packed_then(av, p, 0..g.n, cv, false, after);
                return;
            }
            if let Err(e) = sgemm(av, bv, cv, false, 1) {
                *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return;
            }
            if let Some(e) = &tiled {
                e.run(r0..r0 + rows.len());
            }
        });
        if let Some(e) = err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        if let Some(e) = epilogue.filter(|e| !e.tiled) {
            self.bind_epilogue(plan, e).run_split(pool);
        }
        Ok(())
    }

    fn window(
        &self,
        plan: &Plan,
        k: &Window,
        x: BufId,
        out: BufId,
        epilogue: Option<&Epilogue>,
        pool: &ThreadPool,
    ) {
        // SAFETY: x is only read during this step.
        let xs = unsafe { self.f32s(plan, x) };
        let out_ptr = SendPtr(self.ptr(plan, out));
        let (rows, cols) = (k.rows(), k.cols());
        let tile = k.tile_rows().min(rows.max(1));
        let tasks = (rows * k.flops_per_row() / MIN_TASK_FLOPS).clamp(1, pool.threads());
        if let Window::Conv(conv) = k {
            let split = columns::blocks(rows, conv.depth(), cols, tasks);
            if split.1 > 1 && conv.splits_columns() {
                return self.conv_blocks(plan, conv, (x, out), split, epilogue, pool);
            }
        }
        let tiled = epilogue
            .filter(|e| e.tiled)
            .map(|e| self.bind_epilogue(plan, e));
        pool.run(tasks, &|t| {
            let mine = block(rows, tasks, k.row_align(), t);
            // Every tile's scratch: at most a whole tile's.
            with_scratch(k.scratch_len(tile.min(mine.len())), |scratch| {
                let mut r = mine.start;
                while r < mine.end {
                    let tile_rows = r..(r + tile).min(mine.end);
                    let need = k.scratch_len(tile_rows.len());
                    let n = tile_rows.len();
                    // SAFETY: this task alone writes these rows of the output, `n × cols`
                    // dense floats from this pointer; the view holds no reference, so the
                    // tiled epilogue may write them (in place) through its own pointers.
                    let o = unsafe {
                        MatMut::from_raw_parts(
                            out_ptr.get().add(tile_rows.start * cols),
                            n * cols,
                            n,
                            cols,
                            (cols, 1),
                        )
                    };
                    // The epilogue runs on rows as soon as they are final, still in cache.
                    let after: &mut dyn FnMut(Range<usize>) = match &tiled {
                        Some(e) => &mut |r| e.run(r),
                        None => &mut |_| {},
                    };
                    k.run_rows_then(xs, tile_rows.clone(), o, &mut scratch[..need], after);
                    r = tile_rows.end;
                }
            });
        });
        if let Some(e) = epilogue.filter(|e| !e.tiled) {
            self.bind_epilogue(plan, e).run_split(pool);
        }
    }

    /// A batch of strided GEMMs of any dtype: tasks are (batch, row chunk) pairs, as in
    /// [`Self::gemm`].
    fn generic_gemm(
        &self,
        plan: &Plan,
        g: &super::matmul::BatchedGemm,
        dtype: DType,
        [a, b, c]: [BufId; 3],
        pool: &ThreadPool,
    ) {
        let size = dtype.size_bytes();
        let (pa, pb, pc) = (
            SendBytes(self.bytes_ptr(plan, a)),
            SendBytes(self.bytes_ptr(plan, b)),
            SendBytes(self.bytes_ptr(plan, c)),
        );
        let (row_chunk, chunks) = gemm_tasks(g, pool.threads());
        pool.run(g.batch_count() * chunks, &|t| {
            let (bi, ci) = (t / chunks, t % chunks);
            let rows = (ci * row_chunk).min(g.m)..((ci + 1) * row_chunk).min(g.m);
            let [oa, ob, oc] = g.offsets(bi);
            let d = GemmDims {
                m: rows.len(),
                n: g.n,
                k: g.k,
                a: g.a,
                b: g.b,
                c: g.c,
            };
            let at = |p: &SendBytes, elems: usize| p.get().wrapping_add(elems * size);
            // SAFETY: the geometry was built from the operands' shapes, so every element it
            // addresses lies in its buffer; A and B are only read, and each task writes the
            // elements of C of its own (batch, rows), which no other task addresses.
            unsafe {
                generic_gemm::gemm(
                    dtype,
                    &d,
                    at(&pa, oa + rows.start * g.a.0),
                    at(&pb, ob),
                    at(&pc, oc + rows.start * g.c.0),
                )
            };
        });
    }

    /// An epilogue run once its anchor has finished, its faults (an integer division by
    /// zero) the step's error.
    fn after(&self, plan: &Plan, e: Option<&Epilogue>, pool: &ThreadPool) -> Result<(), String> {
        let Some(e) = e else { return Ok(()) };
        let bound = self.bind_epilogue(plan, e);
        bound.run_split(pool);
        bound.fault().map_err(|f| f.to_string())
    }

    /// A generated kernel with this call's pointers to its buffers, computed once per step.
    fn bind_rows<'k>(
        &self,
        plan: &Plan,
        kernel: &'k RowKernel,
        inputs: &[BufId],
        outputs: &[BufId],
    ) -> BoundRows<'k> {
        BoundRows {
            kernel,
            ins: Ptrs::new(
                inputs.iter().map(|&b| self.ptr(plan, b) as *const f32),
                std::ptr::null(),
            ),
            outs: Ptrs::new(
                outputs.iter().map(|&b| self.ptr(plan, b)),
                std::ptr::null_mut(),
            ),
            fault: std::sync::Mutex::new(None),
        }
    }

    /// The pointers to the bytes of a step's `inputs` and `outputs` (an indexing or image
    /// kernel's operands), held inline: loop bodies run steps many times, and this allocates
    /// nothing.
    fn byte_ptrs(
        &self,
        plan: &Plan,
        inputs: &[BufId],
        outputs: &[BufId],
    ) -> (Ptrs<*const u8>, Ptrs<*mut u8>) {
        (
            Ptrs::new(
                inputs.iter().map(|&b| self.bytes_ptr(plan, b) as *const u8),
                std::ptr::null(),
            ),
            Ptrs::new(
                outputs.iter().map(|&b| self.bytes_ptr(plan, b)),
                std::ptr::null_mut(),
            ),
        )
    }

    fn bind_epilogue<'k>(&self, plan: &Plan, e: &'k Epilogue) -> BoundRows<'k> {
        self.bind_rows(plan, &e.kernel, &e.inputs, &e.outputs)
    }
}

/// Work per thread above which a step splits over the pool about as well as it can
/// (400 kFLOP, a few microseconds on one core: handing out its tasks costs far less).
const SPLITS_WELL_FLOPS: usize = 4 * MIN_TASK_FLOPS;

/// Whether every step of a wave is large enough to split over every thread: then running the
/// steps one after the other, each on all threads, beats running them side by side, which
/// leaves threads idle whenever the steps' times differ (their work estimates cannot say by
/// how much: ResNet-50's Winograd 3×3 and the 1×1 beside it are estimated level and ran 1.1
/// and 0.7 ms, a wave of 1.1 ms against 0.95 in order) or outnumber the threads (three
/// projections of a transformer on two threads).
fn splits_well(steps: &[Step], pool: &ThreadPool) -> bool {
    let least = pool.threads().saturating_mul(SPLITS_WELL_FLOPS);
    steps.iter().all(|s| s.work >= least)
}

/// How many of `threads` threads a batch of GEMMs is worth (at least one).
fn gemm_threads(g: &super::matmul::BatchedGemm, threads: usize) -> usize {
    let flops = 2 * g.m * g.n * g.k * g.batch_count();
    (flops / MIN_TASK_FLOPS).clamp(1, threads)
}

/// How a batch of GEMMs splits into tasks, each a (batch, chunk of rows) pair, as many as the
/// work is worth on `threads` threads: the rows per chunk and the chunks per GEMM. (An empty
/// product, m = 0, still has one chunk, which writes nothing.)
fn gemm_tasks(g: &super::matmul::BatchedGemm, threads: usize) -> (usize, usize) {
    let batches = g.batch_count();
    let threads = gemm_threads(g, threads);
    let row_chunk = if batches >= threads {
        g.m
    } else {
        g.m.div_ceil(threads.div_ceil(batches)).max(4)
    };
    (row_chunk, g.m.div_ceil(row_chunk.max(1)).max(1))
}

/// A generated kernel bound to one call's buffers.
struct BoundRows<'k> {
    kernel: &'k RowKernel,
    ins: Ptrs<*const f32>,
    outs: Ptrs<*mut f32>,
    /// The first fault a task met (see [`RowKernel::run_checked`]).
    fault: std::sync::Mutex<Option<super::codegen::KernelFault>>,
}

// SAFETY: the pointers are the plan's buffers for this call; tasks given disjoint row ranges
// write disjoint rows (see the module notes).
unsafe impl Sync for BoundRows<'_> {}

impl BoundRows<'_> {
    /// Rows `rows` on this thread.
    fn run(&self, rows: Range<usize>) {
        // SAFETY: full-size buffers of the plan; the caller owns these rows of the outputs.
        if let Err(f) = unsafe {
            self.kernel
                .run_checked(self.ins.as_slice(), self.outs.as_slice(), rows)
        } {
            self.fault
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(f);
        }
    }

    /// The first fault any run met, if one did.
    fn fault(&self) -> Result<(), super::codegen::KernelFault> {
        match self.fault.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Every row, split across the pool when there are enough elements.
    fn run_split(&self, pool: &ThreadPool) {
        let rows = self.kernel.rows();
        let per_task = (MIN_TASK_ELEMS / self.kernel.row_len().max(1)).max(1);
        let tasks = rows.div_ceil(per_task).clamp(1, pool.threads());
        pool.run(tasks, &|t| self.run(block(rows, tasks, 1, t)));
    }
}

/// Operand pointers a kernel's binding holds without allocating.
const INLINE_PTRS: usize = 8;

/// A kernel's operand pointers (a generated kernel's, an indexing or image kernel's): inline up
/// to [`INLINE_PTRS`] of them, so binding a step allocates nothing (a loop body's steps are
/// bound once per iteration).
struct Ptrs<T: Copy> {
    inline: [T; INLINE_PTRS],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy> Ptrs<T> {
    /// The pointers of `all`; `none` fills the unused inline entries.
    fn new(all: impl ExactSizeIterator<Item = T>, none: T) -> Ptrs<T> {
        let mut p = Ptrs {
            inline: [none; INLINE_PTRS],
            len: all.len(),
            heap: Vec::new(),
        };
        if p.len <= p.inline.len() {
            for (slot, ptr) in p.inline.iter_mut().zip(all) {
                *slot = ptr;
            }
        } else {
            p.heap.extend(all);
        }
        p
    }

    fn as_slice(&self) -> &[T] {
        if self.len <= self.inline.len() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

/// A pointer to the bytes of a dense (standard-layout) tensor of any dtype, for reading.
/// The base pointer of each of `plan`'s storages: constants where they lie, the arena's at
/// their offsets from `arena`, and the caller's (`call(storage, kind)`) for inputs and
/// outputs.
///
/// # Safety
/// `arena` is valid for `plan.stats.arena_bytes` bytes.
unsafe fn storage_ptrs(
    plan: &Plan,
    arena: *mut u8,
    mut call: impl FnMut(usize, &StorageKind) -> *mut u8,
) -> Vec<*mut u8> {
    (plan.storages.iter().enumerate())
        .map(|(s, st)| match &st.kind {
            // Constants are standard layout (the lowering makes them so); only read.
            StorageKind::Const(t) => dense_bytes(t).expect("constants are held in standard layout"),
            // Held by the kernels that use it; nothing reads it from memory.
            StorageKind::Baked => std::ptr::null_mut(),
            // SAFETY: the arena holds `plan.stats.arena_bytes` bytes (the caller's contract),
            // and the memory plan put every arena storage inside it.
            StorageKind::Arena { offset } => unsafe { arena.add(*offset) },
            kind @ (StorageKind::Input(_) | StorageKind::Output) => call(s, kind),
        })
        .collect()
}

fn dense_bytes(t: &Tensor) -> Option<*mut u8> {
    lathe_ir::tensor_match!(t, a => a.as_slice().map(|s| s.as_ptr() as *mut u8))
}

/// A pointer to the bytes of a dense tensor of any dtype, for writing.
// The cast is needed for every element type but `u8`, where clippy finds it redundant.
#[allow(clippy::unnecessary_cast)]
fn dense_bytes_mut(t: &mut Tensor) -> Option<*mut u8> {
    lathe_ir::tensor_match!(t, a => a.as_slice_mut().map(|s| s.as_mut_ptr() as *mut u8))
}

/// Bytes a data-movement task gets, at least: below this, handing work to another thread
/// costs more than the copy.
const MIN_TASK_BYTES: usize = 256 * 1024;

/// How many tasks a copy of `bytes` bytes in `rows` rows is worth.
fn copy_tasks(bytes: usize, rows: usize, pool: &ThreadPool) -> usize {
    (bytes / MIN_TASK_BYTES)
        .clamp(1, pool.threads())
        .min(rows.max(1))
}

/// Runs `f` on `n` items split into ranges, one per task: `tasks` of them (as many as the work
/// is worth), at least one and at most one per thread or item.
fn split(pool: &ThreadPool, n: usize, tasks: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
    let tasks = tasks.clamp(1, pool.threads().min(n).max(1));
    pool.run(tasks, &|t| f(block(n, tasks, 1, t)));
}

/// Block `i` of `parts` even blocks of `0..len`, each a multiple of `align` long but the last
/// (which may be shorter, or empty).
fn block(len: usize, parts: usize, align: usize, i: usize) -> Range<usize> {
    let chunk = len.div_ceil(parts.max(1)).next_multiple_of(align.max(1));
    (i * chunk).min(len)..((i + 1) * chunk).min(len)
}

/// A byte pointer handed to the tasks of one step.
struct SendBytes(*mut u8);

impl SendBytes {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not its field).
    fn get(&self) -> *mut u8 {
        self.0
    }
}
// SAFETY: used only to hand disjoint output rows (and shared read-only inputs) to the tasks
// of one step.
unsafe impl Sync for SendBytes {}

struct SendPtr(*mut f32);

impl SendPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not its field).
    fn get(&self) -> *mut f32 {
        self.0
    }
}
// SAFETY: the pointer is only used to make views of disjoint output regions, one per task of
// one step (each use states its own contract); sharing the address itself is harmless.
unsafe impl Sync for SendPtr {}
// SAFETY: as for `Sync`.
unsafe impl Send for SendPtr {}
