//! Lathe's C API (`liblathe.so`, `liblathe.a`, header `include/lathe.h`): load a model or a
//! compiled artifact, list its inputs and outputs, and run it on named tensors, from any
//! number of threads at once.
//!
//! Conventions:
//! - Every function that can fail returns a [`LatheStatus`]; on failure the thread's last
//!   error message ([`lathe_last_error`]) says in one line what went wrong, naming the
//!   argument or field, the input, output or file. The caller's mistakes (null pointers,
//!   unknown dtype codes, bad sizes, unknown, missing or repeated names, non-UTF-8 strings)
//!   are `LATHE_STATUS_INVALID_ARGUMENT`, never undefined behaviour: fields a caller fills
//!   with a dtype are `int32_t`, checked, rather than a Rust enum any value of which must be
//!   valid. No panic crosses the boundary: one is caught and reported as
//!   `LATHE_STATUS_PANIC`.
//! - A [`LatheModel`] is thread-safe: one model may be run from many threads at once.
//! - Results are either runtime-owned ([`lathe_model_run`] fills a [`LatheOutputs`] the
//!   caller frees) or written into caller-owned buffers ([`lathe_model_run_into`]).
//! - Tensors are dense, row-major, little-endian.

use lathe_compiler::specialize::SpecializeError;
use lathe_ir::{DType, Tensor};
use lathe_runtime::{Model, ModelOptions, RunError};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// What a call returned.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatheStatus {
    /// It worked.
    Ok = 0,
    /// The caller's mistake: a null pointer, a name that is not UTF-8 or not the model's, a
    /// missing or repeated input, an unknown dtype, a size that does not fit its dims, a
    /// buffer of the wrong dtype. The message names the argument or field.
    InvalidArgument = 1,
    /// The model could not be loaded (the message names the file and why).
    Load = 2,
    /// The model could not run on the inputs (the message names the input or the node).
    Run = 3,
    /// A caller-owned output buffer is too small (the message names it and the size needed;
    /// its `written` field holds that size, and no buffer was written).
    OutputTooSmall = 4,
    /// Lathe panicked: a bug; the message says where.
    Panic = 5,
}

/// Element types. Structs that a caller fills hold them as `int32_t` (any value a caller
/// stores there is checked, never undefined behaviour).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatheDtype {
    F32 = 0,
    F64 = 1,
    F16 = 2,
    Bf16 = 3,
    I8 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    U8 = 8,
    U16 = 9,
    U32 = 10,
    U64 = 11,
    Bool = 12,
    /// A dtype the C API has no name for (storage types: float8, int4, ...).
    Other = 255,
}

/// The C names of the IR's dtypes, each once.
const DTYPES: [(LatheDtype, DType); 13] = [
    (LatheDtype::F32, DType::F32),
    (LatheDtype::F64, DType::F64),
    (LatheDtype::F16, DType::F16),
    (LatheDtype::Bf16, DType::BF16),
    (LatheDtype::I8, DType::I8),
    (LatheDtype::I16, DType::I16),
    (LatheDtype::I32, DType::I32),
    (LatheDtype::I64, DType::I64),
    (LatheDtype::U8, DType::U8),
    (LatheDtype::U16, DType::U16),
    (LatheDtype::U32, DType::U32),
    (LatheDtype::U64, DType::U64),
    (LatheDtype::Bool, DType::Bool),
];

fn to_c(d: DType) -> LatheDtype {
    DTYPES
        .iter()
        .find(|(_, ir)| *ir == d)
        .map_or(LatheDtype::Other, |(c, _)| *c)
}

/// The dtype a caller's `int32_t` names, if it names one a tensor can have.
fn from_c(code: i32) -> Option<DType> {
    DTYPES
        .iter()
        .find(|(c, _)| *c as i32 == code)
        .map(|(_, ir)| *ir)
}

/// An input tensor, read in place for the call.
#[repr(C)]
pub struct LatheTensorView {
    /// The model input's name (NUL-terminated UTF-8).
    pub name: *const c_char,
    /// A [`LatheDtype`].
    pub dtype: i32,
    /// `rank` dimensions, none negative.
    pub dims: *const i64,
    pub rank: usize,
    /// `bytes` bytes of elements, little-endian, row-major: exactly the product of `dims`
    /// times the element size.
    pub data: *const c_void,
    pub bytes: usize,
}

/// A caller-owned buffer for one output of [`lathe_model_run_into`].
#[repr(C)]
pub struct LatheOutputBuffer {
    /// The model output's name (NUL-terminated UTF-8).
    pub name: *const c_char,
    /// The [`LatheDtype`] the caller expects; an output of another dtype is
    /// `LATHE_STATUS_INVALID_ARGUMENT`.
    pub dtype: i32,
    /// Where to write it, `capacity` bytes.
    pub data: *mut c_void,
    pub capacity: usize,
    /// Set by the call: the bytes written (on `LATHE_STATUS_OUTPUT_TOO_SMALL`, the bytes
    /// needed).
    pub written: usize,
}

/// A loaded model. Thread-safe; free it with [`lathe_model_free`].
pub struct LatheModel {
    model: Model,
    inputs: Vec<Declared>,
    outputs: Vec<CString>,
}

// C callers share one model between threads and may free it on another: it must be both.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<LatheModel>();
    shareable::<LatheOutputs>();
};

/// A model input as the model declares it, kept in C form for the listing functions.
struct Declared {
    name: CString,
    dtype: LatheDtype,
    /// Each dimension's size, -1 where it is fixed only by the call.
    dims: Vec<i64>,
}

/// One result of [`lathe_model_run`], owned by its [`LatheOutputs`].
struct Output {
    name: CString,
    dtype: LatheDtype,
    dims: Vec<i64>,
    data: Vec<u8>,
}

/// The results of one [`lathe_model_run`], in the model's output order. Free it with
/// [`lathe_outputs_free`].
pub struct LatheOutputs {
    outputs: Vec<Output>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: its status and its one-line message.
type Failure = (LatheStatus, String);

/// Records `message` as this thread's last error and returns `status`.
fn fail(status: LatheStatus, message: &str) -> LatheStatus {
    // One line, and no NUL (a C string ends at the first).
    let text: String = message
        .chars()
        .map(|c| if c == '\0' || c == '\n' { ' ' } else { c })
        .collect();
    let text = CString::new(text).unwrap_or_default();
    // `try_with` fails only while the thread is being torn down; the status still says it.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = text);
    status
}

/// Runs `f`, turning a panic into `LATHE_STATUS_PANIC` with its message.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> LatheStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => LatheStatus::Ok,
        Ok(Err((status, message))) => fail(status, &message),
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_string());
            fail(LatheStatus::Panic, &format!("lathe panicked: {what}"))
        }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    (LatheStatus::InvalidArgument, message.into())
}

/// A NUL-terminated UTF-8 string argument; `what` names it in errors.
///
/// # Safety
/// `s` is null or points to a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(invalid(format!("{what} is null")));
    }
    // SAFETY: non-null and NUL-terminated, by the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// `count` elements at `p`, or an error naming `what` when `p` is null and `count > 0`.
///
/// # Safety
/// `p` is null or points to `count` readable, initialized `T`s that outlive `'a`.
unsafe fn slice<'a, T>(p: *const T, count: usize, what: &str) -> Result<&'a [T], Failure> {
    if count == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(format!("{what} is null")));
    }
    // SAFETY: non-null, `count` readable `T`s, by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// The message of this thread's last failed call (empty if none failed): one line that
/// names the argument, field, input, output or file. Valid until the next failing call on
/// this thread; never null.
#[no_mangle]
pub extern "C" fn lathe_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Loads the model at `path` (a SavedModel directory, a frozen GraphDef `.pb`, an ONNX
/// model, Lathe IR text `.lir`, or a `.lathe` artifact of `lathe compile`, told by its
/// content) to run on `threads` threads (0: one per core) on the CPU backend. On success
/// `*out` holds the model; on failure `*out` is null.
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is null or points to writable storage
/// for a pointer.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_load(
    path: *const c_char,
    threads: u32,
    out: *mut *mut LatheModel,
) -> LatheStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { lathe_model_load_on(path, c"cpu".as_ptr(), threads, out) }
}

/// Loads the model at `path` as [`lathe_model_load`] does, to run on `backend`: `"cpu"`
/// (native code), `"interp"` (the reference interpreter) or `"cuda"` (an NVIDIA GPU, in a
/// library built with the `cuda` feature; elsewhere, or without a device, the error says so
/// when the model is first compiled).
///
/// # Safety
/// `path` and `backend` are null or NUL-terminated strings; `out` is null or points to
/// writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_load_on(
    path: *const c_char,
    backend: *const c_char,
    threads: u32,
    out: *mut *mut LatheModel,
) -> LatheStatus {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is null"));
        }
        // SAFETY: non-null and writable, by the caller's contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's contract for `path`.
        let path = Path::new(unsafe { text(path, "path") }?);
        // SAFETY: the caller's contract for `backend`.
        let backend: lathe_runtime::Backend = (unsafe { text(backend, "backend") }?)
            .parse()
            .map_err(|e: String| invalid(format!("backend: {e}")))?;
        let options = ModelOptions {
            threads: (threads > 0).then_some(threads as usize),
            backend,
            ..ModelOptions::default()
        };
        let load = |e: String| (LatheStatus::Load, e);
        let model = Model::open(path, options).map_err(|e| load(e.to_string()))?;
        let c_name = |n: &str| {
            CString::new(n).map_err(|_| load(format!("the model's name `{n}` holds a NUL")))
        };
        let inputs = (model.inputs().iter())
            .map(|i| {
                Ok(Declared {
                    name: c_name(&i.name)?,
                    dtype: to_c(i.ty.dtype),
                    dims: (i.ty.shape.dims().iter())
                        .map(|d| d.known().map_or(-1, |n| n as i64))
                        .collect(),
                })
            })
            .collect::<Result<_, Failure>>()?;
        let outputs = (model.outputs().iter())
            .map(|n| c_name(n))
            .collect::<Result<_, Failure>>()?;
        let boxed = Box::new(LatheModel {
            model,
            inputs,
            outputs,
        });
        // SAFETY: `out` is non-null and writable, by the caller's contract.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Frees a model (null is ignored). No call may be running on it.
///
/// # Safety
/// `model` is null or a model from [`lathe_model_load`], not freed before.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_free(model: *mut LatheModel) {
    if !model.is_null() {
        // SAFETY: from `Box::into_raw` in `lathe_model_load`, freed once.
        drop(unsafe { Box::from_raw(model) });
    }
}

/// Input `i` of a model, if both exist.
///
/// # Safety
/// `model` is null or a live model.
unsafe fn declared<'a>(model: *const LatheModel, i: usize) -> Option<&'a Declared> {
    // SAFETY: null or live, by the caller's contract.
    unsafe { model.as_ref() }.and_then(|m| m.inputs.get(i))
}

/// How many inputs the model takes (0 for a null model).
///
/// # Safety
/// `model` is null or a live model.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_input_count(model: *const LatheModel) -> usize {
    // SAFETY: null or live, by the caller's contract.
    unsafe { model.as_ref() }.map_or(0, |m| m.inputs.len())
}

/// The name of input `i` (null when out of range); valid while the model lives.
///
/// # Safety
/// `model` is null or a live model.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_input_name(
    model: *const LatheModel,
    i: usize,
) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { declared(model, i) }.map_or(std::ptr::null(), |d| d.name.as_ptr())
}

/// The dtype of input `i` (`LATHE_DTYPE_OTHER` when out of range).
///
/// # Safety
/// `model` is null or a live model.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_input_dtype(model: *const LatheModel, i: usize) -> LatheDtype {
    // SAFETY: the caller's contract.
    unsafe { declared(model, i) }.map_or(LatheDtype::Other, |d| d.dtype)
}

/// The rank of input `i` (0 when out of range); its dims are [`lathe_model_input_dims`].
///
/// # Safety
/// `model` is null or a live model.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_input_rank(model: *const LatheModel, i: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { declared(model, i) }.map_or(0, |d| d.dims.len())
}

/// The declared dims of input `i`, `rank` of them, -1 for a size the call chooses (a batch
/// size); null when out of range. Valid while the model lives.
///
/// # Safety
/// `model` is null or a live model.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_input_dims(model: *const LatheModel, i: usize) -> *const i64 {
    // SAFETY: the caller's contract.
    unsafe { declared(model, i) }.map_or(std::ptr::null(), |d| d.dims.as_ptr())
}

/// How many outputs the model gives (0 for a null model).
///
/// # Safety
/// `model` is null or a live model.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_output_count(model: *const LatheModel) -> usize {
    // SAFETY: null or live, by the caller's contract.
    unsafe { model.as_ref() }.map_or(0, |m| m.outputs.len())
}

/// The name of output `i` (null when out of range); valid while the model lives.
///
/// # Safety
/// `model` is null or a live model.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_output_name(
    model: *const LatheModel,
    i: usize,
) -> *const c_char {
    // SAFETY: null or live, by the caller's contract.
    unsafe { model.as_ref() }
        .and_then(|m| m.outputs.get(i))
        .map_or(std::ptr::null(), |n| n.as_ptr())
}

/// The inputs as tensors, checked field by field; errors name the input and the field.
///
/// # Safety
/// `inputs` is null or points to `count` views whose pointers satisfy [`LatheTensorView`]'s
/// contract.
unsafe fn read_inputs(
    inputs: *const LatheTensorView,
    count: usize,
) -> Result<Vec<(String, Tensor)>, Failure> {
    // SAFETY: the caller's contract for `inputs`.
    let views = unsafe { slice(inputs, count, "inputs") }?;
    let mut out = Vec::with_capacity(count);
    for (k, v) in views.iter().enumerate() {
        // SAFETY: the view's name, by the caller's contract.
        let name = unsafe { text(v.name, &format!("inputs[{k}].name")) }?;
        let dtype = from_c(v.dtype).ok_or_else(|| {
            invalid(format!(
                "input `{name}`: dtype {} is not a LatheDtype",
                v.dtype
            ))
        })?;
        // SAFETY: `rank` readable dims, by the caller's contract.
        let dims = unsafe { slice(v.dims, v.rank, &format!("input `{name}`: dims")) }?;
        let dims: Vec<usize> = (dims.iter())
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid(format!("input `{name}`: dims {dims:?} has a negative size")))?;
        let need = (dims.iter()).try_fold(dtype.size_bytes(), |n, &d| n.checked_mul(d));
        if need != Some(v.bytes) {
            let need = need.map_or("more than fits in memory".to_string(), |n| n.to_string());
            return Err(invalid(format!(
                "input `{name}`: bytes is {}, but {dtype}{dims:?} takes {need}",
                v.bytes
            )));
        }
        let data = v.data.cast::<u8>();
        // SAFETY: `bytes` readable bytes, by the caller's contract.
        let bytes = unsafe { slice(data, v.bytes, &format!("input `{name}`: data")) }?;
        let t = Tensor::from_le_bytes(dtype, &dims, bytes)
            .map_err(|e| invalid(format!("input `{name}`: {e}")))?;
        out.push((name.to_string(), t));
    }
    Ok(out)
}

/// Runs the model on `inputs` (one per model input, by name, in any order). The caller's
/// mistakes (an unknown, missing or repeated input, a dtype or shape the model does not
/// take) are `LATHE_STATUS_INVALID_ARGUMENT`; the rest `LATHE_STATUS_RUN`.
fn run(
    model: &LatheModel,
    inputs: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>, Failure> {
    let (names, tensors): (Vec<String>, Vec<Tensor>) = inputs.into_iter().unzip();
    let named: Vec<(&str, Tensor)> = names.iter().map(String::as_str).zip(tensors).collect();
    model.model.run(&named).map_err(|e| {
        let status = match &e {
            RunError::UnknownInput { .. }
            | RunError::MissingInput { .. }
            | RunError::DuplicateInput { .. }
            | RunError::Specialize(SpecializeError::Input { .. })
            | RunError::Specialize(SpecializeError::InputCount { .. }) => {
                LatheStatus::InvalidArgument
            }
            _ => LatheStatus::Run,
        };
        (status, e.to_string())
    })
}

/// Runs the model on `inputs` (`count` views, one per model input, by name); on success
/// `*out` holds the results, runtime-owned, for [`lathe_outputs_free`]; on failure `*out`
/// is null.
///
/// # Safety
/// `model` is null or a live model; `inputs` is null or points to `count` valid views;
/// `out` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_run(
    model: *const LatheModel,
    inputs: *const LatheTensorView,
    count: usize,
    out: *mut *mut LatheOutputs,
) -> LatheStatus {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is null"));
        }
        // SAFETY: non-null and writable, by the caller's contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: null or live, by the caller's contract.
        let model = unsafe { model.as_ref() }.ok_or_else(|| invalid("model is null"))?;
        // SAFETY: the caller's contract for `inputs`.
        let inputs = unsafe { read_inputs(inputs, count) }?;
        let outputs = run(model, inputs)?
            .into_iter()
            .map(|(name, t)| Output {
                name: CString::new(name.replace('\0', " ")).unwrap_or_default(),
                dtype: to_c(t.dtype()),
                dims: t.shape().iter().map(|&d| d as i64).collect(),
                data: t.to_le_bytes(),
            })
            .collect();
        let boxed = Box::new(LatheOutputs { outputs });
        // SAFETY: `out` is non-null and writable, by the caller's contract.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Runs the model on `inputs` and writes each output into the caller's buffer of the same
/// name (`buffers`, `buffer_count` of them; outputs without a buffer are dropped), setting
/// each buffer's `written`. Each buffer is checked before the model runs (its name, its
/// dtype, a null `data` with a nonzero `capacity`) and each result before any is written:
/// an output of another dtype than its buffer's is `LATHE_STATUS_INVALID_ARGUMENT`, a
/// buffer too small `LATHE_STATUS_OUTPUT_TOO_SMALL` (naming the output and the bytes it
/// needs); on any failure no buffer is written.
///
/// # Safety
/// `model` is null or a live model; `inputs` is null or points to `count` valid views;
/// `buffers` is null or points to `buffer_count` buffers, each with `capacity` writable
/// bytes at `data`.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_run_into(
    model: *const LatheModel,
    inputs: *const LatheTensorView,
    count: usize,
    buffers: *mut LatheOutputBuffer,
    buffer_count: usize,
) -> LatheStatus {
    guard(|| {
        // SAFETY: null or live, by the caller's contract.
        let model = unsafe { model.as_ref() }.ok_or_else(|| invalid("model is null"))?;
        let buffers = if buffer_count == 0 {
            &mut [][..]
        } else if buffers.is_null() {
            return Err(invalid("buffers is null"));
        } else {
            // SAFETY: `buffer_count` writable buffers, by the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(buffers, buffer_count) }
        };
        let mut wanted = Vec::with_capacity(buffers.len());
        for (k, b) in buffers.iter_mut().enumerate() {
            b.written = 0;
            // SAFETY: the buffer's name, by the caller's contract.
            let name = unsafe { text(b.name, &format!("buffers[{k}].name")) }?;
            if !model
                .outputs
                .iter()
                .any(|o| o.to_bytes() == name.as_bytes())
            {
                let known: Vec<_> = model.outputs.iter().map(|o| o.to_string_lossy()).collect();
                return Err(invalid(format!(
                    "buffers[{k}].name: the model has no output named `{name}` (its outputs: {})",
                    known.join(", ")
                )));
            }
            let dtype = from_c(b.dtype).ok_or_else(|| {
                invalid(format!(
                    "buffer for output `{name}`: dtype {} is not a LatheDtype",
                    b.dtype
                ))
            })?;
            if b.data.is_null() && b.capacity > 0 {
                return Err(invalid(format!("buffer for output `{name}`: data is null")));
            }
            wanted.push((name.to_string(), dtype));
        }
        // SAFETY: the caller's contract for `inputs`.
        let inputs = unsafe { read_inputs(inputs, count) }?;
        let results = run(model, inputs)?;
        let mut writes = Vec::with_capacity(buffers.len());
        for (k, (name, dtype)) in wanted.iter().enumerate() {
            let Some((_, t)) = results.iter().find(|(n, _)| n == name) else {
                return Err((
                    LatheStatus::Run,
                    format!("output `{name}` was not produced by this call"),
                ));
            };
            if t.dtype() != *dtype {
                return Err(invalid(format!(
                    "buffer for output `{name}`: dtype is {dtype}, but the output is {}{:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            let bytes = t.to_le_bytes();
            if bytes.len() > buffers[k].capacity {
                buffers[k].written = bytes.len();
                return Err((
                    LatheStatus::OutputTooSmall,
                    format!(
                        "buffer for output `{name}`: capacity is {}, but {}{:?} takes {} bytes",
                        buffers[k].capacity,
                        t.dtype(),
                        t.shape(),
                        bytes.len()
                    ),
                ));
            }
            writes.push(bytes);
        }
        for (b, bytes) in buffers.iter_mut().zip(writes) {
            if !bytes.is_empty() {
                // SAFETY: `capacity >= len` writable bytes at a non-null `data` (checked
                // above), by the caller's contract; the source is our own vector, so they do
                // not overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), b.data.cast::<u8>(), bytes.len())
                };
            }
            b.written = bytes.len();
        }
        Ok(())
    })
}

/// The output at `i`, if any.
///
/// # Safety
/// `outputs` is null or live.
unsafe fn output<'a>(outputs: *const LatheOutputs, i: usize) -> Option<&'a Output> {
    // SAFETY: null or live, by the caller's contract.
    unsafe { outputs.as_ref() }.and_then(|o| o.outputs.get(i))
}

/// How many results there are (0 for null).
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_count(outputs: *const LatheOutputs) -> usize {
    // SAFETY: null or live, by the caller's contract.
    unsafe { outputs.as_ref() }.map_or(0, |o| o.outputs.len())
}

/// Result `i`'s name (null when out of range); valid until the results are freed.
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_name(
    outputs: *const LatheOutputs,
    i: usize,
) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(std::ptr::null(), |o| o.name.as_ptr())
}

/// Result `i`'s dtype (`LATHE_DTYPE_OTHER` when out of range).
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_dtype(outputs: *const LatheOutputs, i: usize) -> LatheDtype {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(LatheDtype::Other, |o| o.dtype)
}

/// Result `i`'s rank (0 when out of range); its dims are [`lathe_outputs_dims`].
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_rank(outputs: *const LatheOutputs, i: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(0, |o| o.dims.len())
}

/// Result `i`'s dims, `rank` of them (null when out of range).
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_dims(outputs: *const LatheOutputs, i: usize) -> *const i64 {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(std::ptr::null(), |o| o.dims.as_ptr())
}

/// Result `i`'s elements (null when out of range), [`lathe_outputs_bytes`] bytes.
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_data(
    outputs: *const LatheOutputs,
    i: usize,
) -> *const c_void {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(std::ptr::null(), |o| o.data.as_ptr().cast())
}

/// Result `i`'s size in bytes (0 when out of range).
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_bytes(outputs: *const LatheOutputs, i: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(0, |o| o.data.len())
}

/// Frees results (null is ignored).
///
/// # Safety
/// `outputs` is null or from [`lathe_model_run`], not freed before.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_free(outputs: *mut LatheOutputs) {
    if !outputs.is_null() {
        // SAFETY: from `Box::into_raw` in `lathe_model_run`, freed once.
        drop(unsafe { Box::from_raw(outputs) });
    }
}

#[cfg(test)]
mod tests {
    //! The error paths a C caller can reach, through the extern functions: each is a status
    //! and a one-line message naming the argument or field, never a crash.
    use super::*;
    use std::ptr::{null, null_mut};

    const MODEL: &CStr = c"../../tests/fixtures/tf/mlp_tiny/model.pb";

    /// This thread's last error, checked to be one line.
    fn last_error() -> String {
        // SAFETY: `lathe_last_error` never returns null and its string is NUL-terminated.
        let message = unsafe { CStr::from_ptr(lathe_last_error()) };
        let message = message.to_str().unwrap().to_string();
        assert!(!message.contains('\n'), "{message}");
        message
    }

    /// `(status, last error)` of a failed call.
    fn failed(status: LatheStatus) -> (LatheStatus, String) {
        assert_ne!(status, LatheStatus::Ok);
        (status, last_error())
    }

    fn invalid(message: &str) -> (LatheStatus, String) {
        (LatheStatus::InvalidArgument, message.to_string())
    }

    /// The fixture `mlp_tiny` (input `x`: f32[1,16]; one f32[1,10] output), freed on drop.
    struct Loaded(*mut LatheModel);

    impl Loaded {
        fn new() -> Loaded {
            // Tests run in the crate's directory.
            let mut model = null_mut();
            // SAFETY: a valid path and out pointer.
            let status = unsafe { lathe_model_load(MODEL.as_ptr(), 1, &mut model) };
            assert_eq!(status, LatheStatus::Ok, "{}", last_error());
            Loaded(model)
        }

        fn output_name(&self) -> *const c_char {
            // SAFETY: a live model.
            unsafe { lathe_model_output_name(self.0, 0) }
        }
    }

    impl Drop for Loaded {
        fn drop(&mut self) {
            // SAFETY: from `lathe_model_load`, freed once.
            unsafe { lathe_model_free(self.0) }
        }
    }

    const DIMS: [i64; 2] = [1, 16];
    static X: [f32; 16] = [0.25; 16];

    /// A valid view of `x`, for a test to spoil one field of.
    fn x() -> LatheTensorView {
        LatheTensorView {
            name: c"x".as_ptr(),
            dtype: LatheDtype::F32 as i32,
            dims: DIMS.as_ptr(),
            rank: 2,
            data: X.as_ptr().cast(),
            bytes: 64,
        }
    }

    /// `lathe_model_run` on `inputs`, its results freed.
    fn run(model: &Loaded, inputs: &[LatheTensorView]) -> LatheStatus {
        let mut out = null_mut();
        // SAFETY: a live model, valid views (their pointers are what the test checks), a
        // writable out pointer.
        let status = unsafe { lathe_model_run(model.0, inputs.as_ptr(), inputs.len(), &mut out) };
        assert_eq!(out.is_null(), status != LatheStatus::Ok);
        // SAFETY: null or from `lathe_model_run`.
        unsafe { lathe_outputs_free(out) };
        status
    }

    #[test]
    fn load_on_takes_a_backend_by_name_and_names_an_unknown_one() {
        let mut model = null_mut();
        // SAFETY: valid strings and out pointer; the model is freed once.
        unsafe {
            let status = lathe_model_load_on(MODEL.as_ptr(), c"interp".as_ptr(), 1, &mut model);
            assert_eq!(status, LatheStatus::Ok, "{}", last_error());
            let loaded = Loaded(model);
            assert_eq!(run(&loaded, &[x()]), LatheStatus::Ok, "{}", last_error());
            let status = lathe_model_load_on(MODEL.as_ptr(), c"tpu".as_ptr(), 1, &mut model);
            assert_eq!(status, LatheStatus::InvalidArgument);
            assert!(model.is_null());
            assert!(
                last_error().contains("unknown backend `tpu`"),
                "{}",
                last_error()
            );
        }
    }

    #[test]
    fn load_rejects_null_and_non_utf8_paths_and_names_a_missing_file() {
        let mut model = null_mut();
        // SAFETY: each pointer is null or valid.
        unsafe {
            assert_eq!(
                failed(lathe_model_load(null(), 0, &mut model)),
                invalid("path is null")
            );
            assert!(model.is_null());
            assert_eq!(
                failed(lathe_model_load(MODEL.as_ptr(), 0, null_mut())),
                invalid("out is null")
            );
            assert_eq!(
                failed(lathe_model_load(c"\xff.pb".as_ptr(), 0, &mut model)),
                invalid("path is not UTF-8")
            );
            let (status, message) = failed(lathe_model_load(c"no/such.pb".as_ptr(), 0, &mut model));
            assert_eq!(status, LatheStatus::Load);
            assert_eq!(message, "no/such.pb: no such file or directory");
            assert!(model.is_null());
        }
    }

    /// The first output of `path`'s model on `x` (a ramp), through the C API.
    fn first_output(path: &CStr) -> Vec<u8> {
        let mut model = null_mut();
        let mut out = null_mut();
        let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.125 - 1.0).collect();
        // SAFETY: valid pointers throughout; the results are read while live, then freed.
        unsafe {
            let status = lathe_model_load(path.as_ptr(), 1, &mut model);
            assert_eq!(status, LatheStatus::Ok, "{path:?}: {}", last_error());
            let view = LatheTensorView {
                name: lathe_model_input_name(model, 0),
                data: x.as_ptr().cast(),
                ..self::x()
            };
            let status = lathe_model_run(model, &view, 1, &mut out);
            assert_eq!(status, LatheStatus::Ok, "{path:?}: {}", last_error());
            let data = lathe_outputs_data(out, 0).cast::<u8>();
            let bytes = std::slice::from_raw_parts(data, lathe_outputs_bytes(out, 0)).to_vec();
            lathe_outputs_free(out);
            lathe_model_free(model);
            bytes
        }
    }

    #[test]
    fn a_graph_def_its_onnx_form_and_its_artifact_load_and_agree() {
        let graph = lathe_compiler::load(Path::new(MODEL.to_str().unwrap())).unwrap();
        let types: Vec<lathe_ir::TensorType> =
            graph.inputs().iter().map(|i| i.ty.clone()).collect();
        let model = Model::with_options(graph, ModelOptions::default()).unwrap();
        let level = lathe_compiler::pipeline::level_text(2);
        // Compiled as `lathe compile` does: its plan stored, loaded as it is.
        let artifact =
            lathe_runtime::artifact::compile(&model, &[types], true, "mlp", level, |_| {})
                .unwrap()
                .artifact;
        assert!(artifact.plans[0].is_some());
        let path = std::env::temp_dir().join(format!("lathe-capi-{}.lathe", std::process::id()));
        artifact.write(&path).unwrap();
        let from_artifact = first_output(&CString::new(path.to_str().unwrap()).unwrap());
        std::fs::remove_file(&path).unwrap();
        let from_graph_def = first_output(MODEL);
        assert_eq!(from_graph_def.len(), 40);
        assert_eq!(from_artifact, from_graph_def);
        let onnx = first_output(c"../../tests/fixtures/tf/mlp_tiny/model.onnx");
        let close = (onnx.chunks(4).zip(from_graph_def.chunks(4))).all(|(a, b)| {
            let f = |c: &[u8]| f32::from_le_bytes(c.try_into().unwrap());
            (f(a) - f(b)).abs() <= 1e-5
        });
        assert!(close, "the ONNX form differs");
        // A SavedModel directory.
        let mut model = null_mut();
        let dir = c"../../tests/fixtures/tf_saved/module_saved/saved_model";
        // SAFETY: valid pointers; the model is freed once.
        unsafe {
            let status = lathe_model_load(dir.as_ptr(), 1, &mut model);
            assert_eq!(status, LatheStatus::Ok, "{}", last_error());
            assert_eq!(lathe_model_output_count(model), 2);
            lathe_model_free(model);
        }
    }

    #[test]
    fn the_listing_describes_the_model_and_is_null_out_of_range() {
        let m = Loaded::new();
        // SAFETY: a live model or null; the strings and dims live as long as the model.
        unsafe {
            assert_eq!(lathe_model_input_count(m.0), 1);
            assert_eq!(CStr::from_ptr(lathe_model_input_name(m.0, 0)), c"x");
            assert_eq!(lathe_model_input_dtype(m.0, 0), LatheDtype::F32);
            let dims = std::slice::from_raw_parts(lathe_model_input_dims(m.0, 0), 2);
            assert_eq!((lathe_model_input_rank(m.0, 0), dims), (2, &DIMS[..]));
            assert_eq!(lathe_model_output_count(m.0), 1);
            assert!(lathe_model_input_name(m.0, 1).is_null());
            assert!(lathe_model_input_dims(m.0, 1).is_null());
            assert_eq!(lathe_model_input_dtype(m.0, 1), LatheDtype::Other);
            assert!(lathe_model_output_name(m.0, 1).is_null());
            assert_eq!(lathe_model_input_count(null()), 0);
            assert!(lathe_model_output_name(null(), 0).is_null());
            assert_eq!(lathe_outputs_count(null()), 0);
            assert!(lathe_outputs_data(null(), 0).is_null());
            assert_eq!(lathe_outputs_dtype(null(), 0), LatheDtype::Other);
        }
    }

    #[test]
    fn run_gives_runtime_owned_results() {
        let m = Loaded::new();
        let mut out = null_mut();
        // SAFETY: a live model, a valid view, a writable out; the results are read while live.
        unsafe {
            let status = lathe_model_run(m.0, &x(), 1, &mut out);
            assert_eq!(status, LatheStatus::Ok, "{}", last_error());
            assert_eq!(lathe_outputs_count(out), 1);
            assert_eq!(
                CStr::from_ptr(lathe_outputs_name(out, 0)),
                CStr::from_ptr(m.output_name())
            );
            assert_eq!(lathe_outputs_dtype(out, 0), LatheDtype::F32);
            let dims = std::slice::from_raw_parts(lathe_outputs_dims(out, 0), 2);
            assert_eq!((lathe_outputs_rank(out, 0), dims), (2, &[1i64, 10][..]));
            assert_eq!(lathe_outputs_bytes(out, 0), 40);
            let y = std::slice::from_raw_parts(lathe_outputs_data(out, 0).cast::<f32>(), 10);
            // The model ends in a softmax.
            assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{y:?}");
            assert!(lathe_outputs_data(out, 1).is_null());
            lathe_outputs_free(out);
        }
    }

    #[test]
    fn run_names_the_argument_or_field_a_caller_got_wrong() {
        let m = Loaded::new();
        let negative = [1i64, -16];
        let too_big = [i64::MAX, i64::MAX];
        let ints = [0i32; 16];
        let spoiled = |f: &dyn Fn(&mut LatheTensorView)| {
            let mut v = x();
            f(&mut v);
            failed(run(&m, &[v]))
        };
        assert_eq!(
            spoiled(&|v| v.name = null()),
            invalid("inputs[0].name is null")
        );
        assert_eq!(
            spoiled(&|v| v.name = c"\xc3(".as_ptr()),
            invalid("inputs[0].name is not UTF-8")
        );
        assert_eq!(
            spoiled(&|v| v.dtype = 99),
            invalid("input `x`: dtype 99 is not a LatheDtype")
        );
        assert_eq!(
            spoiled(&|v| v.dims = null()),
            invalid("input `x`: dims is null")
        );
        assert_eq!(
            spoiled(&|v| v.dims = negative.as_ptr()),
            invalid("input `x`: dims [1, -16] has a negative size")
        );
        assert_eq!(
            spoiled(&|v| v.bytes = 63),
            invalid("input `x`: bytes is 63, but f32[1, 16] takes 64")
        );
        assert_eq!(
            spoiled(&|v| v.dims = too_big.as_ptr()),
            invalid(&format!(
                "input `x`: bytes is 64, but f32[{0}, {0}] takes more than fits in memory",
                i64::MAX
            ))
        );
        assert_eq!(
            spoiled(&|v| v.data = null()),
            invalid("input `x`: data is null")
        );
        assert_eq!(
            spoiled(&|v| v.name = c"y".as_ptr()),
            invalid("model has no input named `y` (its inputs: x)")
        );
        let (status, message) = spoiled(&|v| {
            v.dtype = LatheDtype::I32 as i32;
            v.data = ints.as_ptr().cast();
        });
        assert_eq!(status, LatheStatus::InvalidArgument);
        assert!(message.starts_with("input `x`: "), "{message}");
        let (status, message) = spoiled(&|v| {
            v.rank = 1;
            v.bytes = 4;
        });
        assert_eq!(status, LatheStatus::InvalidArgument);
        assert!(message.starts_with("input `x`: "), "{message}");

        assert_eq!(failed(run(&m, &[])), invalid("missing input `x`"));
        assert_eq!(
            failed(run(&m, &[x(), x()])),
            invalid("input `x` given more than once")
        );
        let mut out = null_mut();
        // SAFETY: each pointer is null or valid.
        unsafe {
            assert_eq!(
                failed(lathe_model_run(m.0, null(), 1, &mut out)),
                invalid("inputs is null")
            );
            assert_eq!(
                failed(lathe_model_run(null(), &x(), 1, &mut out)),
                invalid("model is null")
            );
            assert_eq!(
                failed(lathe_model_run(m.0, &x(), 1, null_mut())),
                invalid("out is null")
            );
        }
    }

    #[test]
    fn run_into_checks_each_caller_buffer_and_writes_none_on_failure() {
        let m = Loaded::new();
        let mut y = [7.0f32; 10];
        let buffer = |y: &mut [f32; 10]| LatheOutputBuffer {
            name: m.output_name(),
            dtype: LatheDtype::F32 as i32,
            data: y.as_mut_ptr().cast(),
            capacity: 40,
            written: 99,
        };
        let into = |b: &mut LatheOutputBuffer| {
            // SAFETY: a live model, a valid view, one buffer whose fields the test chose.
            unsafe { lathe_model_run_into(m.0, &x(), 1, b, 1) }
        };
        let spoiled = |f: &dyn Fn(&mut LatheOutputBuffer)| {
            let mut y = [7.0f32; 10];
            let mut b = buffer(&mut y);
            f(&mut b);
            let failure = failed(into(&mut b));
            assert_eq!(y, [7.0; 10], "a failed call wrote a buffer");
            (failure, b.written)
        };
        // SAFETY: the model's output name lives as long as the model.
        let output = unsafe { CStr::from_ptr(m.output_name()) }.to_str().unwrap();

        assert_eq!(
            spoiled(&|b| b.name = null()),
            (invalid("buffers[0].name is null"), 0)
        );
        assert_eq!(
            spoiled(&|b| b.name = c"\xff".as_ptr()),
            (invalid("buffers[0].name is not UTF-8"), 0)
        );
        assert_eq!(
            spoiled(&|b| b.name = c"z".as_ptr()),
            (
                invalid(&format!(
                    "buffers[0].name: the model has no output named `z` (its outputs: {output})"
                )),
                0
            )
        );
        assert_eq!(
            spoiled(&|b| b.dtype = -1),
            (
                invalid(&format!(
                    "buffer for output `{output}`: dtype -1 is not a LatheDtype"
                )),
                0
            )
        );
        assert_eq!(
            spoiled(&|b| b.dtype = LatheDtype::I64 as i32),
            (
                invalid(&format!(
                    "buffer for output `{output}`: dtype is i64, but the output is f32[1, 10]"
                )),
                0
            )
        );
        assert_eq!(
            spoiled(&|b| b.data = null_mut()),
            (
                invalid(&format!("buffer for output `{output}`: data is null")),
                0
            )
        );
        assert_eq!(
            spoiled(&|b| b.capacity = 39),
            (
                (
                    LatheStatus::OutputTooSmall,
                    format!(
                        "buffer for output `{output}`: capacity is 39, but f32[1, 10] takes 40 bytes"
                    )
                ),
                40
            )
        );
        // SAFETY: each pointer is null or valid.
        unsafe {
            assert_eq!(
                failed(lathe_model_run_into(m.0, &x(), 1, null_mut(), 1)),
                invalid("buffers is null")
            );
            assert_eq!(
                failed(lathe_model_run_into(null(), &x(), 1, null_mut(), 0)),
                invalid("model is null")
            );
        }

        let mut b = buffer(&mut y);
        assert_eq!(into(&mut b), LatheStatus::Ok, "{}", last_error());
        assert_eq!(b.written, 40);
        assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{y:?}");
        // No buffers: the call runs and drops the outputs.
        // SAFETY: a live model and a valid view.
        let status = unsafe { lathe_model_run_into(m.0, &x(), 1, null_mut(), 0) };
        assert_eq!(status, LatheStatus::Ok);
    }

    #[test]
    fn a_panic_is_a_status_and_a_message() {
        let status = guard(|| panic!("on purpose\nin a test"));
        assert_eq!(
            failed(status),
            (
                LatheStatus::Panic,
                "lathe panicked: on purpose in a test".into()
            )
        );
    }

    #[test]
    fn the_last_error_is_per_thread() {
        let mut model = null_mut();
        // SAFETY: a writable out pointer.
        let status = unsafe { lathe_model_load(null(), 0, &mut model) };
        assert_eq!(failed(status), invalid("path is null"));
        let other = std::thread::spawn(last_error).join().unwrap();
        assert_eq!(other, "");
    }
}
