//! Running a plan: one call binds the storages to memory (the caller's inputs, the plan's
//! constants, a pooled arena, fresh output tensors), then runs the steps in order, splitting
//! each large kernel into tasks over the thread pool.
//!
//! Tasks of one step write disjoint rows (or columns) of their output, so handing them raw
//! pointers into the same buffer is sound; every pointer is derived from a storage of the
//! right size for its buffer (checked when the plan is built: a buffer is a dense view of its
//! whole storage).

use super::codegen::RowKernel;
use super::plan::*;
use super::threads::ThreadPool;
use crate::kernels::gemm::{sgemm, MatMut, MatRef};
use crate::kernels::gemv::gemv;
use crate::kernels::packed::{gemm_packed, PackedB};
use lathe_ir::{DType, Tensor};
use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::Ordering;

/// Output rows a generated kernel handles per task, at least (in elements, rows × row length).
const MIN_TASK_ELEMS: usize = 16 * 1024;

/// Floating-point operations a dense kernel's task gets, at least: about a microsecond of
/// work, which is what handing a task to another thread costs at worst.
const MIN_TASK_FLOPS: usize = 100_000;

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
    /// Base pointer of every storage.
    ptrs: Vec<*mut u8>,
    /// Output tensors being written (f32), by output storage.
    outputs: Vec<(usize, Vec<f32>)>,
}

// SAFETY: a frame's pointers are into memory that outlives the call (the caller's inputs, the
// plan's constants, the call's arena and output vectors). Shared between the tasks of one
// step (or of one wave's independent steps), which write disjoint regions of their outputs
// and only read the rest (see the module notes).
unsafe impl Sync for Frame {}
// SAFETY: as for `Sync`; moving the frame moves only pointers and the output vectors it owns.
unsafe impl Send for Frame {}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Frame {
    /// Binds `plan`'s storages: inputs (already in plan order, checked by the caller), the
    /// arena and fresh outputs. `keep` receives copies of inputs that are not dense f32.
    pub fn bind(
        plan: &Plan,
        inputs: &[Tensor],
        arena: &mut [Line],
        keep: &mut Vec<Vec<u32>>,
    ) -> Frame {
        let base = arena.as_mut_ptr() as *mut u8;
        let mut outputs = vec![];
        let mut ptrs = Vec::with_capacity(plan.storages.len());
        for (s, st) in plan.storages.iter().enumerate() {
            let p = match &st.kind {
                StorageKind::Input(i) => match dense_f32(&inputs[*i]) {
                    Some(p) => p,
                    None => {
                        let bytes = inputs[*i].clone().into_standard_layout().to_le_bytes();
                        let mut words = vec![0u32; bytes.len().div_ceil(4)];
                        // SAFETY: `words` holds at least `bytes.len()` bytes.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                bytes.as_ptr(),
                                words.as_mut_ptr() as *mut u8,
                                bytes.len(),
                            )
                        };
                        keep.push(words);
                        keep.last_mut().unwrap().as_mut_ptr() as *mut u8
                    }
                },
                StorageKind::Const(t) => match dense_f32(t) {
                    Some(p) => p,
                    // Non-f32 constants are only read by interpreter steps, as tensors.
                    None => std::ptr::null_mut(),
                },
                // Held by the kernels that use it; nothing reads it from memory.
                StorageKind::Baked => std::ptr::null_mut(),
                // SAFETY: the arena holds `plan.stats.arena_bytes` bytes, and the memory plan put
                // every arena storage inside it.
                StorageKind::Arena { offset } => unsafe { base.add(*offset) },
                StorageKind::Output => {
                    let mut v = vec![0f32; st.bytes / 4];
                    let p = v.as_mut_ptr() as *mut u8;
                    outputs.push((s, v));
                    p
                }
            };
            ptrs.push(p);
        }
        Frame { ptrs, outputs }
    }

    fn ptr(&self, plan: &Plan, b: BufId) -> *mut f32 {
        self.ptrs[plan.bufs[b].storage] as *mut f32
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

    /// Takes the output tensors, in output order.
    pub fn into_outputs(mut self, plan: &Plan) -> Vec<Tensor> {
        plan.outputs
            .iter()
            .map(|&b| {
                let buf = &plan.bufs[b];
                match self.outputs.iter().position(|(s, _)| *s == buf.storage) {
                    Some(i) => {
                        let v = std::mem::take(&mut self.outputs[i].1);
                        Tensor::from_vec(&buf.dims, v)
                    }
                    None => self.tensor(plan, b),
                }
            })
            .collect()
    }

    /// A copy of a buffer as a tensor (for the interpreter and non-f32 outputs).
    fn tensor(&self, plan: &Plan, b: BufId) -> Tensor {
        let buf = &plan.bufs[b];
        if let StorageKind::Const(t) = &plan.storages[buf.storage].kind {
            if t.shape() == buf.dims.as_slice() {
                return (**t).clone();
            }
            let bytes = t.to_le_bytes();
            return Tensor::from_le_bytes(buf.dtype, &buf.dims, &bytes)
                .expect("a constant reshaped to its own size");
        }
        let n = buf.len() * buf.dtype.size_bytes();
        // SAFETY: the storage holds the buffer's bytes and nothing writes it now.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptrs[buf.storage], n) };
        Tensor::from_le_bytes(buf.dtype, &buf.dims, bytes).expect("a buffer holds its type's bytes")
    }

    /// Runs every step; with `times`, adds each step's wall time to its entry.
    pub fn run(
        &self,
        plan: &Plan,
        pool: &ThreadPool,
        mut times: Option<&mut [std::time::Duration]>,
    ) -> Result<(), String> {
        for wave in &plan.waves {
            if wave.len() > 1 && pool.threads() > 1 && balanced(&plan.steps[wave.clone()]) {
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
    fn timed_step(&self, plan: &Plan, step: &Step, pool: &ThreadPool) -> Result<(), String> {
        let _span = tracing::trace_span!("kernel", node = %step.name, op = step.op).entered();
        self.step(plan, step, pool)
            .map_err(|m| format!("node `{}` ({}): {m}", step.name, step.op))
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
            Kernel::Rows {
                kernel,
                inputs,
                outputs,
            } => {
                self.bind_rows(plan, kernel, inputs, outputs)
                    .run_split(pool);
                Ok(())
            }
            Kernel::Pad { kernel, x, out } => {
                // SAFETY: a step's input and output are distinct storages (only generated
                // kernels write in place), and this step alone touches them now.
                let (xs, o) = unsafe { self.in_out(plan, *x, *out) };
                kernel.run(xs, o);
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
                    // SAFETY: the output storage holds exactly the buffer's bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            self.ptrs[buf.storage],
                            bytes.len(),
                        )
                    };
                }
                Ok(())
            }
            Kernel::Copy { from, to } => {
                let n = plan.bufs[*from].len() * plan.bufs[*from].dtype.size_bytes();
                let (src, dst) = (plan.bufs[*from].storage, plan.bufs[*to].storage);
                if let StorageKind::Const(t) = &plan.storages[src].kind {
                    if dense_f32(t).is_none() {
                        let bytes = t.to_le_bytes();
                        // SAFETY: the destination holds `n` bytes.
                        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptrs[dst], n) };
                        return Ok(());
                    }
                }
                // SAFETY: distinct storages of `n` bytes each.
                unsafe { std::ptr::copy_nonoverlapping(self.ptrs[src], self.ptrs[dst], n) };
                Ok(())
            }
        }
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
            // Batch-1 dense layer: memory-bound, split over columns.
            let tasks = (g.n / 64).clamp(1, threads);
            let chunk = g.n.div_ceil(tasks);
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
                let cols = (t * chunk).min(g.n)..((t + 1) * chunk).min(g.n);
                // SAFETY: each task writes its own columns of C's one row.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(c_ptr.get().add(cols.start), cols.len())
                };
                gemv(av, bv, cols, out);
            });
            if let Some(e) = epilogue {
                self.bind_epilogue(plan, e).run_split(pool);
            }
            return Ok(());
        }
        // Tasks: (batch, row chunk) pairs, as many as the work is worth.
        let flops = 2 * g.m * g.n * g.k * batches;
        let threads = (flops / MIN_TASK_FLOPS).clamp(1, threads);
        let row_chunk = if batches >= threads {
            g.m
        } else {
            let per = threads.div_ceil(batches);
            g.m.div_ceil(per).max(4)
        };
        let chunks = g.m.div_ceil(row_chunk).max(1);
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
            // the step but each task's tiled epilogue, after its GEMM, on its own rows.
            let cv = unsafe {
                MatMut::from_raw_parts(c_ptr.get().add(oc_in), c_len - oc_in, rows.len(), g.n, g.c)
            };
            if let Some(p) = packed {
                gemm_packed(av, p, cv, false);
            } else if let Err(e) = sgemm(av, bv, cv, false, 1) {
                *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return;
            }
            if let Some(e) = &tiled {
                // C is dense rows: its element offset says which output row this is.
                let r0 = oc / g.n.max(1);
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
        let chunk = rows.div_ceil(tasks);
        let tiled = epilogue
            .filter(|e| e.tiled)
            .map(|e| self.bind_epilogue(plan, e));
        pool.run(tasks, &|t| {
            let mine = (t * chunk).min(rows)..((t + 1) * chunk).min(rows);
            SCRATCH.with(|s| {
                let mut scratch = s.borrow_mut();
                let mut r = mine.start;
                while r < mine.end {
                    let tile_rows = r..(r + tile).min(mine.end);
                    let need = k.scratch_len(tile_rows.len());
                    if scratch.len() < need {
                        scratch.resize(need, 0.0);
                    }
                    // SAFETY: this task alone writes these rows of the output.
                    let o = unsafe {
                        std::slice::from_raw_parts_mut(
                            out_ptr.get().add(tile_rows.start * cols),
                            tile_rows.len() * cols,
                        )
                    };
                    k.run_rows(xs, tile_rows.clone(), o, &mut scratch[..need]);
                    if let Some(e) = &tiled {
                        e.run(tile_rows.clone());
                    }
                    r = tile_rows.end;
                }
            });
        });
        if let Some(e) = epilogue.filter(|e| !e.tiled) {
            self.bind_epilogue(plan, e).run_split(pool);
        }
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
            ins: inputs
                .iter()
                .map(|&b| self.ptr(plan, b) as *const f32)
                .collect(),
            outs: outputs.iter().map(|&b| self.ptr(plan, b)).collect(),
        }
    }

    fn bind_epilogue<'k>(&self, plan: &Plan, e: &'k Epilogue) -> BoundRows<'k> {
        self.bind_rows(plan, &e.kernel, &e.inputs, &e.outputs)
    }
}

/// Whether a wave's steps are worth running side by side: none of them has most of the work
/// (a lopsided wave runs better one step at a time, each split over every thread).
fn balanced(steps: &[Step]) -> bool {
    let total: usize = steps.iter().map(|s| s.work).fold(0, usize::saturating_add);
    let max = steps.iter().map(|s| s.work).max().unwrap_or(0);
    max.saturating_mul(10) <= total.saturating_mul(7)
}

/// A generated kernel bound to one call's buffers.
struct BoundRows<'k> {
    kernel: &'k RowKernel,
    ins: Vec<*const f32>,
    outs: Vec<*mut f32>,
}

// SAFETY: the pointers are the plan's buffers for this call; tasks given disjoint row ranges
// write disjoint rows (see the module notes).
unsafe impl Sync for BoundRows<'_> {}

impl BoundRows<'_> {
    /// Rows `rows` on this thread.
    fn run(&self, rows: Range<usize>) {
        // SAFETY: full-size buffers of the plan; the caller owns these rows of the outputs.
        unsafe { self.kernel.run(&self.ins, &self.outs, rows) };
    }

    /// Every row, split across the pool when there are enough elements.
    fn run_split(&self, pool: &ThreadPool) {
        let rows = self.kernel.rows();
        let per_task = (MIN_TASK_ELEMS / self.kernel.row_len().max(1)).max(1);
        let tasks = rows.div_ceil(per_task).clamp(1, pool.threads());
        let chunk = rows.div_ceil(tasks);
        pool.run(tasks, &|t| {
            self.run((t * chunk).min(rows)..((t + 1) * chunk).min(rows))
        });
    }
}

/// A pointer to the data of a dense f32 tensor.
fn dense_f32(t: &Tensor) -> Option<*mut u8> {
    if t.dtype() != DType::F32 {
        return None;
    }
    t.as_array::<f32>()
        .and_then(|a| a.as_slice())
        .map(|s| s.as_ptr() as *mut u8)
}

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
