//! Cranelift code generation for fused bodies: one fused body (`fused.elementwise`,
//! `fused.reduction`, or the elementwise part of an epilogue) becomes one native function, a
//! [`RowKernel`].
//!
//! # Iteration space
//!
//! All outputs of a body share one shape `S`. The kernel sees `S` as `rows() × row_len()`:
//! the product of `S` without its last axis, times the last axis. Every other value of the body
//! is placed in that space by NumPy broadcasting: a value whose last axis has size 1 (per-row
//! inputs `[..., 1]`, scalars, splat constants, results of reductions) is *row-uniform* and is
//! computed once per row; a value varying along its last axis is computed per element. Inputs
//! broadcast over rows are read with row stride 0 (or with `(row / d) % n` terms for partial
//! broadcasts); inputs broadcast along the row are loaded once per row and splatted.
//!
//! # Loop structure
//!
//! ```text
//! for row in row_start..row_end:
//!     for each reduction phase:          // reductions over the last axis, grouped by stage
//!         row-uniform values it needs     // computed once, before the loop
//!         for j in 0..n step 16:          // four f32x4 vectors per iteration, one accumulator each
//!             acc += expression DAG at j  // recomputed from the inputs, not materialized
//!         leftover vector, leftover elements; horizontal combine → per-row scalar
//!     for j in 0..row_len step 16:        // the output loop
//!         evaluate every output at j, then store them all (outputs may alias inputs)
//!     leftover vector, leftover elements
//! ```
//!
//! A reduction whose argument depends on another reduction (layer norm's variance needs the
//! mean) runs in a later phase; independent reductions over rows of one length share a loop.
//! `softmax`/`log_softmax` expand to max, `exp(x - max)`, sum. Shapes are compile-time
//! constants, so trip counts and tails are too.
//!
//! # Two lowerings
//!
//! A body whose values are all f32 and whose ops the vector math implements (the hot path:
//! GELU, layer norm, softmax, bias + activation) is lowered to `f32x4` code (Cranelift's x86-64
//! SIMD is 128-bit; leftover elements are computed in lane 0 of a splat). Every other body
//! (integers, bool, f64, f16/bf16, casts, selects, comparisons, `sin`/`cos`, general `pow`) is
//! lowered one element at a time by `scalar.rs`, which states how each dtype is held and
//! why its results match the interpreter's. [`support::compiles`] is the one answer to "which
//! op on which dtypes compiles", asked by the analysis itself.
//!
//! # ABI
//!
//! The native function is `extern "C" fn(inputs: *const *const u8, outputs: *const *mut u8,
//! row_start: usize, row_end: usize) -> u32`: two arrays of base pointers (one per body input,
//! one per body output, each the whole dense row-major tensor of its dtype) and the row range;
//! it returns fault bits (integer division by zero, negative integer power), 0 when none.
//! Constant tensors of the body are copied into memory the kernel owns and addressed by baked
//! pointers; splat constants become immediates. The kernel keeps no state: many threads may
//! run it at once on disjoint row ranges.
//!
//! Transcendental functions are polynomial/rational approximations in f32; see [`math`] for
//! the methods and their accuracy (max relative error ≲ 1e-6, erfc absolute 1e-6). f64 and
//! half-precision bodies call the interpreter's own f64 functions (`libcalls.rs`).

mod analyze;
mod chain;
mod jit;
mod libcalls;
mod lower;
pub mod math;
pub(crate) mod object;
mod refs;
mod rows;
mod scalar;
pub mod support;

use crate::kernels::chain::Chain;
use crate::kernels::simd::Isa;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Why a body could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The body uses an op, dtype or shape the row-kernel codegen does not handle; the message
    /// names the body node and its op, e.g. "node `foo` (sin): ...".
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Cranelift failed (a bug in the lowering or an unsupported host).
    #[error("codegen backend: {0}")]
    Backend(String),
}

/// Fault bit: an integer division, floor division or floor modulo by zero (the element is 0).
pub(crate) const FAULT_DIV_BY_ZERO: u32 = 1;
/// Fault bit: an integer raised to a negative power (the element is 0).
pub(crate) const FAULT_NEGATIVE_POW: u32 = 2;

/// What went wrong in a kernel run whose inputs the interpreter would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelFault {
    /// An integer division, floor division or floor modulo had a zero divisor.
    #[error("integer division by zero")]
    DivisionByZero,
    /// An integer `pow` had a negative exponent.
    #[error("integers to negative integer powers are not allowed")]
    NegativePower,
}

/// One fused body compiled to one native function by Cranelift. Send + Sync.
pub struct RowKernel {
    /// The body it was compiled from: what a plan image stores (`crate::cpu::image`).
    body: Body,
    /// Set when compiled: at once by [`RowKernel::compile`]; for a kernel read from a plan
    /// image, by [`compile_pending`] before the plan is handed out (so never empty in use).
    code: Arc<OnceLock<jit::Code>>,
    /// Constant tensors the code reads through baked pointers (they must outlive it).
    _tables: Vec<Box<[u8]>>,
    rows: usize,
    row_len: usize,
    num_inputs: usize,
    num_outputs: usize,
    /// The body as a wide-vector chain, when it is one ([`chain::find`]): run instead of the
    /// generated code wherever this CPU has vectors wider than Cranelift's.
    chain: Option<Chain>,
}

/// A kernel's body: the graph, or (for a kernel placed from stored machine code, which needs
/// no analysis) its IR text, parsed only if asked for.
enum Body {
    Graph(lathe_ir::Graph),
    Text(String),
}

impl Body {
    fn graph(&self) -> Result<std::borrow::Cow<'_, lathe_ir::Graph>, String> {
        match self {
            Body::Graph(g) => Ok(std::borrow::Cow::Borrowed(g)),
            Body::Text(t) => parse_body(t).map(std::borrow::Cow::Owned),
        }
    }

    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Body::Graph(g) => std::borrow::Cow::Owned(lathe_ir::text::print(g)),
            Body::Text(t) => std::borrow::Cow::Borrowed(t),
        }
    }
}

/// A body's IR text parsed and verified.
fn parse_body(text: &str) -> Result<lathe_ir::Graph, String> {
    let body = lathe_ir::text::parse(text).map_err(|e| format!("generated kernel body: {e}"))?;
    lathe_ir::verify::verify(&body)
        .map_err(|e| format!("generated kernel body `{}`: {e}", body.name))?;
    Ok(body)
}

/// The name in a body's IR text (`graph @name(...`), for errors, without parsing it.
fn body_name(text: &str) -> &str {
    let after = text.split_once('@').map_or(text, |(_, rest)| rest);
    after.split(['(', ' ', '\n']).next().unwrap_or("")
}

impl std::fmt::Debug for RowKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowKernel")
            .field("rows", &self.rows)
            .field("row_len", &self.row_len)
            .field("num_inputs", &self.num_inputs)
            .field("num_outputs", &self.num_outputs)
            .finish_non_exhaustive()
    }
}

/// Stored as its body's IR text and, inside [`storing_code`], its machine code (relocatable):
/// read back, the code is placed in executable memory when this CPU has every ISA flag it was
/// compiled with, else the body is compiled again.
impl serde::Serialize for RowKernel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let recording = RECORDED.with(|r| r.borrow().is_some());
        let storing = STORE_CODE.with(|c| c.get());
        if recording || storing {
            let body = self.body.graph().map_err(S::Error::custom)?;
            if recording {
                RECORDED.with(|r| {
                    if let Some(bodies) = r.borrow_mut().as_mut() {
                        bodies.push(body.clone().into_owned());
                    }
                });
            }
            if storing {
                let code = analyze::analyze(&body)
                    .ok()
                    .and_then(|plan| jit::compile_relocatable(&plan).ok().flatten());
                return serde::Serialize::serialize(&(self.body.text(), code, &self.chain), s);
            }
        }
        serde::Serialize::serialize(
            &(self.body.text(), None::<jit::Relocatable>, &self.chain),
            s,
        )
    }
}

/// Read back with its stored machine code, when this CPU runs it: nothing is parsed or
/// analyzed, and [`compile_pending`] places the code. Else as its body, analyzed at once
/// (cheap) and compiled by [`compile_pending`] on all cores; or, inside [`linking`], bound to
/// an object file's function.
impl<'de> serde::Deserialize<'de> for RowKernel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RowKernel, D::Error> {
        use crate::cpu::image::invalid;
        let (text, stored, stored_chain) = <(
            std::borrow::Cow<'de, str>,
            Option<jit::Relocatable>,
            Option<Chain>,
        )>::deserialize(d)?;
        let linked = LINKED.with(|l| {
            l.borrow_mut().as_mut().map(|(entries, next)| {
                let entry = entries.get(*next).copied();
                *next += 1;
                entry
            })
        });
        if linked.is_none() {
            if let Some(code) = stored.as_ref().filter(|c| c.usable_here()) {
                let shape = code.shape();
                let name = body_name(&text).to_string();
                if let Some(c) = &stored_chain {
                    c.check(shape.num_inputs, shape.num_outputs, shape.row_len)
                        .map_err(|e| invalid(format!("generated kernel `{name}`: {e}")))?;
                }
                let kernel = RowKernel {
                    chain: stored_chain,
                    code: Arc::new(OnceLock::new()),
                    rows: shape.rows,
                    row_len: shape.row_len,
                    num_inputs: shape.num_inputs,
                    num_outputs: shape.num_outputs,
                    _tables: code.tables(),
                    body: Body::Text(text.into_owned()),
                };
                PENDING.with(|p| {
                    p.borrow_mut().push(Pending {
                        name,
                        tables: kernel._tables.iter().map(|t| t.as_ptr() as usize).collect(),
                        plan: None,
                        stored,
                        code: Arc::clone(&kernel.code),
                    })
                });
                return Ok(kernel);
            }
        }
        let body = parse_body(&text).map_err(invalid)?;
        let mut plan = analyze::analyze(&body)
            .map_err(|e| invalid(format!("generated kernel body `{}`: {e}", body.name)))?;
        // The body is at hand: its chain is found again rather than trusted from the file.
        let chain = chain::find(&plan);
        let tables = std::mem::take(&mut plan.tables);
        let code = match linked {
            Some(entry) => OnceLock::from(jit::Code::linked(entry.ok_or_else(|| {
                invalid("the plan holds more generated kernels than the object file")
            })?)),
            None => OnceLock::new(),
        };
        let kernel = RowKernel {
            chain,
            code: Arc::new(code),
            rows: plan.rows,
            row_len: plan.row_len,
            num_inputs: plan.num_inputs,
            num_outputs: plan.outputs.len(),
            _tables: tables,
            body: Body::Graph(body),
        };
        if linked.is_none() {
            PENDING.with(|p| {
                p.borrow_mut().push(Pending {
                    name: body_name(&text).to_string(),
                    tables: kernel._tables.iter().map(|t| t.as_ptr() as usize).collect(),
                    plan: Some(plan),
                    // Compiled for flags this CPU lacks: the body is compiled instead.
                    stored: None,
                    code: Arc::clone(&kernel.code),
                })
            });
        }
        Ok(kernel)
    }
}

/// A kernel read from a plan image waiting for its code: analyzed, to be compiled, or with
/// machine code this CPU runs, to be placed.
struct Pending {
    name: String,
    /// The body's analysis, when it is compiled.
    plan: Option<analyze::Plan>,
    /// Addresses of the kernel's tables (owned by the kernel, which outlives the compile).
    tables: Vec<usize>,
    /// Its machine code, when the image holds it.
    stored: Option<jit::Relocatable>,
    code: Arc<OnceLock<jit::Code>>,
}

thread_local! {
    static PENDING: std::cell::RefCell<Vec<Pending>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Whether kernels serialized on this thread store their machine code.
    static STORE_CODE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// While set, the bodies of the kernels serialized on this thread, in order.
    static RECORDED: std::cell::RefCell<Option<Vec<lathe_ir::Graph>>> =
        const { std::cell::RefCell::new(None) };
    /// While set, the code of the kernels deserialized on this thread, in order (compiled
    /// into an object file and linked), and how many were taken.
    static LINKED: std::cell::RefCell<Option<(Vec<KernelFn>, usize)>> =
        const { std::cell::RefCell::new(None) };
}

pub(crate) use jit::KernelFn;

/// Runs `f` (which serializes a plan) with each generated kernel storing its machine code.
pub(crate) fn storing_code<R>(f: impl FnOnce() -> R) -> R {
    STORE_CODE.with(|c| c.set(true));
    let out = f();
    STORE_CODE.with(|c| c.set(false));
    out
}

/// Runs `f` (which serializes a plan), also returning the bodies of the generated kernels it
/// serialized, in order: what an object file compiles ([`object::ObjectWriter`]).
pub(crate) fn recording_bodies<R>(f: impl FnOnce() -> R) -> (R, Vec<lathe_ir::Graph>) {
    RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let out = f();
    let bodies = RECORDED.with(|r| r.borrow_mut().take()).unwrap_or_default();
    (out, bodies)
}

/// Runs `f` (which deserializes a plan) with its generated kernels bound, in order, to
/// `entries` instead of compiled; its error, else an error unless it took exactly that many.
pub(crate) fn linking<T, E: std::fmt::Display>(
    entries: Vec<KernelFn>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    let want = entries.len();
    LINKED.with(|l| *l.borrow_mut() = Some((entries, 0)));
    let out = f();
    let (_, taken) = LINKED.with(|l| l.borrow_mut().take()).unwrap_or_default();
    let out = out.map_err(|e| e.to_string())?;
    if taken == want {
        Ok(out)
    } else {
        Err(format!(
            "the plan holds {taken} generated kernels and the object file {want}"
        ))
    }
}

/// Drops the kernels read on this thread and not compiled yet (a decode that failed).
pub(crate) fn forget_pending() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// How the generated kernels of a plan read from an image got their code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLoads {
    /// Stored machine code placed in executable memory.
    pub placed: usize,
    /// Bodies compiled (no code stored, or stored for ISA flags this CPU lacks).
    pub compiled: usize,
}

/// Compiles (or places the stored code of) every kernel read on this thread since the last
/// call, on up to `threads` threads at once; the first failure is the error.
pub(crate) fn compile_pending(threads: usize) -> Result<KernelLoads, String> {
    let jobs = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let _span = tracing::debug_span!("codegen.compile_pending", kernels = jobs.len()).entered();
    let tables =
        |job: &Pending| -> Vec<*const u8> { job.tables.iter().map(|&a| a as *const u8).collect() };
    // Stored code, placed together in one module on this thread (no compiling: fast).
    let stored: Vec<(&Pending, &jit::Relocatable)> = (jobs.iter())
        .filter_map(|j| j.stored.as_ref().map(|c| (j, c)))
        .collect();
    if !stored.is_empty() {
        let kernels: Vec<_> = stored.iter().map(|(j, c)| (*c, tables(j))).collect();
        let codes = jit::link(&kernels).map_err(|e| format!("generated kernels: {e}"))?;
        for ((job, _), code) in stored.iter().zip(codes) {
            // Each job's cell is its own and still empty.
            let _ = job.code.set(code);
        }
    }
    // The others, compiled on up to `threads` threads.
    let compile: Vec<(&Pending, &analyze::Plan)> = (jobs.iter())
        .filter(|j| j.stored.is_none())
        .map(|j| {
            (
                j,
                j.plan.as_ref().expect("a kernel without code is analyzed"),
            )
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> Result<(), String> {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((job, plan)) = compile.get(i) else {
                return Ok(());
            };
            let code = jit::compile(plan, &tables(job), false)
                .map_err(|e| format!("generated kernel body `{}`: {e}", job.name))?;
            let _ = job.code.set(code);
        }
    };
    let threads = threads.clamp(1, compile.len().max(1));
    let done = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mine = work();
        helpers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a compile thread panicked".into()))
            })
            .fold(mine, Result::and)
    });
    done?;
    let loads = KernelLoads {
        placed: stored.len(),
        compiled: compile.len(),
    };
    tracing::debug!(
        placed = loads.placed,
        compiled = loads.compiled,
        "generated kernels loaded"
    );
    Ok(loads)
}

impl RowKernel {
    /// The compiled code (set before any kernel is handed out: see [`RowKernel::code`]).
    fn code(&self) -> &jit::Code {
        self.code
            .get()
            .expect("a row kernel is compiled before its plan is used")
    }
}

impl RowKernel {
    /// Compiles `body`: every value has a fully known shape and every op is one
    /// [`support::compiles`] admits, else [`CodegenError::Unsupported`].
    pub fn compile(body: &lathe_ir::Graph) -> Result<RowKernel, CodegenError> {
        let span = tracing::debug_span!("codegen.compile", body = %body.name);
        let _guard = span.enter();
        let start = Instant::now();
        let plan = analyze::analyze(body)?;
        let tables: Vec<*const u8> = plan.tables.iter().map(|t| t.as_ptr()).collect();
        let disasm = tracing::enabled!(tracing::Level::TRACE);
        let code = jit::compile(&plan, &tables, disasm)?;
        if let Some(d) = &code.disasm {
            tracing::trace!(body = %body.name, "machine code:\n{d}");
        }
        tracing::debug!(
            body = %body.name,
            nodes = plan.nodes.len(),
            phases = plan.phases.len(),
            rows = plan.rows,
            row_len = plan.row_len,
            elapsed_us = start.elapsed().as_micros() as u64,
            "compiled row kernel"
        );
        Ok(RowKernel {
            chain: chain::find(&plan),
            body: Body::Graph(body.clone()),
            code: Arc::new(OnceLock::from(code)),
            rows: plan.rows,
            row_len: plan.row_len,
            num_inputs: plan.num_inputs,
            num_outputs: plan.outputs.len(),
            _tables: plan.tables,
        })
    }

    /// Rows of the iteration space: the product of the output shape without its last dim
    /// (1 for rank 0 and 1).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row: the last dim of the output shape (1 for rank 0).
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The body as a wide-vector chain, when it is one (what runs instead of the generated
    /// code on a CPU with AVX2 or AVX-512).
    pub fn chain(&self) -> Option<&Chain> {
        self.chain.as_ref()
    }

    /// Computes output rows `rows` (a sub-range of `0..self.rows()`). `inputs[i]` points at
    /// the whole of body input i (dense row-major, its own shape, broadcast by the kernel);
    /// `outputs[j]` at the whole of output j.
    ///
    /// # Safety
    ///
    /// Pointers must be valid for their full shapes (reads for inputs, writes for outputs). An
    /// output may be the very same pointer as an input of the same shape (in place); other
    /// overlaps are not allowed. Several threads may call `run` at once on disjoint row ranges.
    ///
    /// # Panics
    ///
    /// When the pointer counts differ from the body's inputs and outputs, or `rows` is not a
    /// sub-range of `0..self.rows()`.
    pub unsafe fn run<I, O>(&self, inputs: &[*const I], outputs: &[*mut O], rows: Range<usize>) {
        // SAFETY: forwarded under the same contract.
        // Faults are reported by `run_checked`; here the faulting elements hold 0.
        let _ = unsafe { self.run_checked(inputs, outputs, rows) };
    }

    /// [`RowKernel::run`], also saying whether an element faulted (an integer division by zero
    /// or a negative integer power, which the interpreter rejects); such elements hold 0.
    ///
    /// # Safety
    ///
    /// As [`RowKernel::run`].
    pub unsafe fn run_checked<I, O>(
        &self,
        inputs: &[*const I],
        outputs: &[*mut O],
        rows: Range<usize>,
    ) -> Result<(), KernelFault> {
        assert_eq!(inputs.len(), self.num_inputs, "RowKernel::run: input count");
        assert_eq!(
            outputs.len(),
            self.num_outputs,
            "RowKernel::run: output count"
        );
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "RowKernel::run: rows {rows:?} not within 0..{}",
            self.rows
        );
        if let Some(chain) = &self.chain {
            let isa = Isa::detect();
            if isa != Isa::Scalar {
                // SAFETY: the caller's contract is the chain's: a chain's body is f32
                // throughout with one output, so every pointer addresses a dense f32 matrix of
                // `self.rows` rows of `row_len` (checked when the chain was found or read),
                // and an output overlaps an input only exactly.
                unsafe {
                    chain.run(
                        isa,
                        std::slice::from_raw_parts(inputs.as_ptr().cast(), inputs.len()),
                        outputs[0].cast(),
                        rows,
                    )
                };
                return Ok(());
            }
        }
        // SAFETY: the caller guarantees the pointers; the code was compiled for exactly these
        // counts, shapes and dtypes. A slice of thin pointers has the layout of an array of
        // byte pointers, which is what the code reads.
        let faults = unsafe {
            (self.code().entry)(
                inputs.as_ptr().cast(),
                outputs.as_ptr().cast(),
                rows.start,
                rows.end,
            )
        };
        if faults & FAULT_DIV_BY_ZERO != 0 {
            Err(KernelFault::DivisionByZero)
        } else if faults & FAULT_NEGATIVE_POW != 0 {
            Err(KernelFault::NegativePower)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"graph @k(%x: f32[2,5], %b: f32[5]) -> ("y": f32[2,5]) {
  %0 = add(%x, %b) : f32[2,5]
  %1 = tanh(%0) : f32[2,5]
  %2 = const dense<[0.5, 1.5, 2.5, 3.5, 4.5]> : f32[5]
  %3 = mul(%1, %2) : f32[2,5]
  return %3
}"#;

    /// The kernel's output on fixed inputs.
    fn output(k: &RowKernel) -> Vec<f32> {
        let x: Vec<f32> = (0..10).map(|i| i as f32 * 0.3 - 1.2).collect();
        let b = [0.1f32, -0.2, 0.3, -0.4, 0.5];
        let mut y = vec![0f32; 10];
        // SAFETY: the pointers hold the body's shapes.
        unsafe { k.run(&[x.as_ptr(), b.as_ptr()], &[y.as_mut_ptr()], 0..2) };
        y
    }

    /// Serializes `k` storing its machine code, lets `edit` change the stored code, and reads
    /// it back: the kernel and how its code was loaded.
    fn round_trip(
        k: &RowKernel,
        edit: impl FnOnce(jit::Relocatable) -> jit::Relocatable,
    ) -> (RowKernel, KernelLoads) {
        let bytes = storing_code(|| postcard::to_stdvec(k)).unwrap();
        let (text, code, chain): (String, Option<jit::Relocatable>, Option<Chain>) =
            postcard::from_bytes(&bytes).unwrap();
        let code = code.expect("the code is stored");
        assert!(code.usable_here());
        let bytes = postcard::to_stdvec(&(text, Some(edit(code)), chain)).unwrap();
        let back: RowKernel = postcard::from_bytes(&bytes).unwrap();
        let loads = compile_pending(1).unwrap();
        (back, loads)
    }

    #[test]
    fn stored_code_is_placed_and_code_for_another_cpu_is_compiled_again() {
        let body = lathe_ir::text::parse(BODY).unwrap();
        let k = RowKernel::compile(&body).unwrap();
        let want = output(&k);

        let (placed, loads) = round_trip(&k, |c| c);
        assert_eq!(
            loads,
            KernelLoads {
                placed: 1,
                compiled: 0
            }
        );
        assert_eq!(output(&placed), want);

        let (compiled, loads) = round_trip(&k, |c| c.needing("has_a_flag_no_cpu_has"));
        assert_eq!(
            loads,
            KernelLoads {
                placed: 0,
                compiled: 1
            }
        );
        assert_eq!(output(&compiled), want);
        let code = jit::compile_relocatable(&analyze::analyze(&body).unwrap())
            .unwrap()
            .unwrap()
            .needing("has_a_flag_no_cpu_has");
        let e = jit::link(&[(&code, vec![])]).err().expect("refused");
        assert!(e.to_string().contains("ISA flags this CPU lacks"), "{e}");
    }

    /// Bias, then ReLU6 as `maximum` and `minimum`: a chain.
    const CHAIN_BODY: &str = r#"graph @c(%x: f32[3,21]) -> ("y": f32[3,21]) {
  %0 = const dense<[0.5, -1.5, 2.5, -3.5, 4.5, 0.0, -0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, 0.25]> : f32[21]
  %1 = bias_add(%x, %0) {format = "NHWC"} : f32[3,21]
  %2 = const dense<0.0> : f32[]
  %3 = maximum(%1, %2) : f32[3,21]
  %4 = const dense<6.0> : f32[]
  %5 = minimum(%3, %4) : f32[3,21]
  return %5
}"#;

    #[test]
    fn a_chain_matches_the_generated_code_and_is_stored_checked() {
        let body = lathe_ir::text::parse(CHAIN_BODY).unwrap();
        let mut k = RowKernel::compile(&body).unwrap();
        assert_eq!(k.chain().map(|c| c.stages.len()), Some(3));
        let specials = [f32::NAN, -0.0, 0.0, 6.0, -7.5, 1e30];
        let x: Vec<f32> = (0..63)
            .map(|i| specials.get(i % 9).copied().unwrap_or(i as f32 * 0.4 - 9.0))
            .collect();
        let run = |k: &RowKernel| {
            let mut y = vec![0f32; 63];
            // SAFETY: the pointers hold the body's shapes.
            unsafe { k.run(&[x.as_ptr()], &[y.as_mut_ptr()], 0..3) };
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let by_chain = run(&k);

        // Stored with its machine code and read back: the chain comes with it.
        let bytes = storing_code(|| postcard::to_stdvec(&k)).unwrap();
        let back: RowKernel = postcard::from_bytes(&bytes).unwrap();
        compile_pending(1).unwrap();
        assert_eq!(back.chain(), k.chain());
        assert_eq!(run(&back), by_chain);

        // A stored chain naming an input the kernel lacks is refused.
        let (text, code, chain): (String, Option<jit::Relocatable>, Option<Chain>) =
            postcard::from_bytes(&bytes).unwrap();
        let mut bad = chain.expect("stored");
        bad.stages[0] = crate::kernels::chain::Stage::Binary {
            op: crate::kernels::chain::Binary::Add,
            operand: crate::kernels::chain::Operand::Input(7),
            operand_first: false,
        };
        let bytes = postcard::to_stdvec(&(text, code, Some(bad))).unwrap();
        // (The message, which `image::decode` reports, is `Chain::check`'s; tested there.)
        assert!(postcard::from_bytes::<RowKernel>(&bytes).is_err());
        let _ = compile_pending(1);

        // The generated code computes the same bits.
        k.chain = None;
        assert_eq!(run(&k), by_chain);
    }

    #[test]
    fn a_body_name_is_read_without_parsing() {
        assert_eq!(body_name(BODY), "k");
        assert_eq!(
            body_name("graph @matmul_0_tail(%x: f32[1])"),
            "matmul_0_tail"
        );
        assert_eq!(body_name("garbage"), "garbage");
    }
}
