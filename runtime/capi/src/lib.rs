//! Lathe's C API (`liblathe.so`, `liblathe.a`, header `include/lathe.h`): load a model or a
//! compiled artifact, list its inputs and outputs, and run it on named tensors, from any
//! number of threads at once.
//!
//! Conventions:
//! - Every function that can fail returns a [`LatheStatus`]; on failure the thread's last
//!   error message ([`lathe_last_error`]) says what went wrong, naming the input, output or
//!   file. No panic crosses the boundary: one is caught and reported as
//!   [`LatheStatus::Panic`].
//! - A [`LatheModel`] is thread-safe: one model may be run from many threads at once.
//! - Results are either runtime-owned ([`lathe_model_run`] fills a [`LatheOutputs`] the
//!   caller frees) or written into caller-owned buffers ([`lathe_model_run_into`]).
//! - Tensors are dense, row-major, in the machine's byte order.

use lathe_compiler::artifact::is_artifact;
use lathe_compiler::{LoadOptions, ModelFile};
use lathe_ir::{DType, Tensor};
use lathe_runtime::{Model, ModelOptions};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

/// What a call returned.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatheStatus {
    /// It worked.
    Ok = 0,
    /// A null pointer, a bad name, a size that does not fit its dims, an unknown dtype.
    InvalidArgument = 1,
    /// The model could not be loaded (the message names the file and why).
    Load = 2,
    /// The model could not run on the inputs (the message names the input or the node).
    Run = 3,
    /// A caller-owned output buffer is too small (the message names it and the size needed).
    OutputTooSmall = 4,
    /// Lathe panicked: a bug; the message says where.
    Panic = 5,
}

/// Element types.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatheDType {
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
const DTYPES: [(LatheDType, DType); 13] = [
    (LatheDType::F32, DType::F32),
    (LatheDType::F64, DType::F64),
    (LatheDType::F16, DType::F16),
    (LatheDType::Bf16, DType::BF16),
    (LatheDType::I8, DType::I8),
    (LatheDType::I16, DType::I16),
    (LatheDType::I32, DType::I32),
    (LatheDType::I64, DType::I64),
    (LatheDType::U8, DType::U8),
    (LatheDType::U16, DType::U16),
    (LatheDType::U32, DType::U32),
    (LatheDType::U64, DType::U64),
    (LatheDType::Bool, DType::Bool),
];

fn to_c(d: DType) -> LatheDType {
    DTYPES
        .iter()
        .find(|(_, ir)| *ir == d)
        .map_or(LatheDType::Other, |(c, _)| *c)
}

fn from_c(d: LatheDType) -> Option<DType> {
    DTYPES.iter().find(|(c, _)| *c == d).map(|(_, ir)| *ir)
}

/// An input tensor, read in place for the call.
#[repr(C)]
pub struct LatheTensorView {
    /// The model input's name (NUL-terminated).
    pub name: *const c_char,
    pub dtype: LatheDType,
    /// `rank` dimensions.
    pub dims: *const i64,
    pub rank: usize,
    /// `bytes` bytes of elements: exactly the product of `dims` times the element size.
    pub data: *const c_void,
    pub bytes: usize,
}

/// A caller-owned buffer for one output of [`lathe_model_run_into`].
#[repr(C)]
pub struct LatheOutputBuffer {
    /// The model output's name (NUL-terminated).
    pub name: *const c_char,
    /// Where to write it, `capacity` bytes.
    pub data: *mut c_void,
    pub capacity: usize,
    /// Set by the call: the bytes written.
    pub written: usize,
}

/// A loaded model. Thread-safe; free it with [`lathe_model_free`].
pub struct LatheModel {
    model: Arc<Model>,
    inputs: Vec<CString>,
    outputs: Vec<CString>,
}

/// One result of [`lathe_model_run`], owned by its [`LatheOutputs`].
struct Output {
    name: CString,
    dtype: LatheDType,
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

/// Records `message` as this thread's last error and returns `status`.
fn fail(status: LatheStatus, message: impl Into<String>) -> LatheStatus {
    let text = message.into().replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(text).expect("NULs replaced"));
    status
}

/// Runs `f`, turning a panic into [`LatheStatus::Panic`] with its message.
fn guard(f: impl FnOnce() -> Result<(), (LatheStatus, String)>) -> LatheStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => LatheStatus::Ok,
        Ok(Err((status, message))) => fail(status, message),
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_string());
            fail(LatheStatus::Panic, format!("lathe panicked: {what}"))
        }
    }
}

fn invalid(message: impl Into<String>) -> (LatheStatus, String) {
    (LatheStatus::InvalidArgument, message.into())
}

/// A NUL-terminated string argument.
///
/// # Safety
/// `s` is null or points to a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, (LatheStatus, String)> {
    if s.is_null() {
        return Err(invalid(format!("{what} is null")));
    }
    // SAFETY: non-null and NUL-terminated, by the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// The message of this thread's last failed call (empty if none failed). Valid until the
/// next failing call on this thread.
#[no_mangle]
pub extern "C" fn lathe_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Loads the model at `path` (a SavedModel directory, a frozen GraphDef `.pb`, an ONNX
/// model, Lathe IR text `.lir`, or a `.lathe` artifact of `lathe compile`, told by its
/// content) to run on `threads` threads (0: one per core). On success `*out` holds the model.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_load(
    path: *const c_char,
    threads: u32,
    out: *mut *mut LatheModel,
) -> LatheStatus {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is null"));
        }
        // SAFETY: the caller's contract for `path`.
        let path = Path::new(unsafe { text(path, "path") }?);
        let options = ModelOptions {
            threads: (threads > 0).then_some(threads as usize),
            ..ModelOptions::default()
        };
        let load = |e: String| (LatheStatus::Load, e);
        let model = if starts_like_artifact(path) {
            Model::load(path, options).map_err(|e| load(e.to_string()))?
        } else {
            let file = ModelFile {
                path: path.to_path_buf(),
                options: LoadOptions::default(),
            };
            Model::from_import(Arc::new(file), options)
                .map_err(|e| load(format!("`{}`: {e}", path.display())))?
        };
        let names = |v: Vec<String>| -> Result<Vec<CString>, (LatheStatus, String)> {
            v.into_iter()
                .map(|n| CString::new(n).map_err(|_| load("a name holds a NUL".into())))
                .collect()
        };
        let inputs = names(model.inputs().iter().map(|i| i.name.clone()).collect())?;
        let outputs = names(model.outputs().to_vec())?;
        let boxed = Box::new(LatheModel {
            model: Arc::new(model),
            inputs,
            outputs,
        });
        // SAFETY: `out` is non-null and writable, by the caller's contract.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Whether the file at `path` starts like a compiled artifact.
fn starts_like_artifact(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| is_artifact(&head))
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
pub unsafe extern "C" fn lathe_model_input_name(model: *const LatheModel, i: usize) -> *const c_char {
    // SAFETY: null or live, by the caller's contract.
    unsafe { model.as_ref() }
        .and_then(|m| m.inputs.get(i))
        .map_or(std::ptr::null(), |n| n.as_ptr())
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
pub unsafe extern "C" fn lathe_model_output_name(model: *const LatheModel, i: usize) -> *const c_char {
    // SAFETY: null or live, by the caller's contract.
    unsafe { model.as_ref() }
        .and_then(|m| m.outputs.get(i))
        .map_or(std::ptr::null(), |n| n.as_ptr())
}

/// The inputs as tensors, checked.
///
/// # Safety
/// `inputs` points to `count` views whose pointers satisfy [`LatheTensorView`]'s contract.
unsafe fn read_inputs(
    inputs: *const LatheTensorView,
    count: usize,
) -> Result<Vec<(String, Tensor)>, (LatheStatus, String)> {
    if inputs.is_null() && count > 0 {
        return Err(invalid("inputs is null"));
    }
    let views = if count == 0 {
        &[][..]
    } else {
        // SAFETY: `count` readable views, by the caller's contract.
        unsafe { std::slice::from_raw_parts(inputs, count) }
    };
    let mut out = Vec::with_capacity(count);
    for (k, v) in views.iter().enumerate() {
        // SAFETY: the view's name, by the caller's contract.
        let name = unsafe { text(v.name, &format!("the name of input {k}")) }?;
        let dtype = from_c(v.dtype)
            .ok_or_else(|| invalid(format!("input `{name}`: dtype {:?} is not one to give", v.dtype)))?;
        if v.dims.is_null() && v.rank > 0 {
            return Err(invalid(format!("input `{name}`: dims is null")));
        }
        let dims = if v.rank == 0 {
            &[][..]
        } else {
            // SAFETY: `rank` readable dims, by the caller's contract.
            unsafe { std::slice::from_raw_parts(v.dims, v.rank) }
        };
        let dims: Vec<usize> = dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid(format!("input `{name}`: dims {dims:?} has a negative size")))?;
        let want = (dims.iter())
            .try_fold(dtype.size_bytes(), |n, &d| n.checked_mul(d))
            .filter(|&n| n == v.bytes)
            .ok_or_else(|| {
                invalid(format!(
                    "input `{name}`: {} bytes do not hold {} {dims:?}",
                    v.bytes,
                    dtype.name()
                ))
            })?;
        if v.data.is_null() && want > 0 {
            return Err(invalid(format!("input `{name}`: data is null")));
        }
        let bytes = if want == 0 {
            &[][..]
        } else {
            // SAFETY: `bytes` readable bytes, by the caller's contract.
            unsafe { std::slice::from_raw_parts(v.data.cast::<u8>(), want) }
        };
        let t = Tensor::from_le_bytes(dtype, &dims, bytes)
            .map_err(|e| invalid(format!("input `{name}`: {e}")))?;
        out.push((name.to_string(), t));
    }
    Ok(out)
}

/// Runs the model on `inputs` (one view per model input, by name, in any order).
fn run(
    model: &LatheModel,
    inputs: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>, (LatheStatus, String)> {
    let (names, tensors): (Vec<String>, Vec<Tensor>) = inputs.into_iter().unzip();
    let named: Vec<(&str, Tensor)> = names.iter().map(String::as_str).zip(tensors).collect();
    model
        .model
        .run(&named)
        .map_err(|e| (LatheStatus::Run, e.to_string()))
}

/// Runs the model on `inputs` (`count` views, one per model input, by name); on success
/// `*out` holds the results, runtime-owned, for [`lathe_outputs_free`].
///
/// # Safety
/// `model` is a live model; `inputs` points to `count` valid views; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn lathe_model_run(
    model: *const LatheModel,
    inputs: *const LatheTensorView,
    count: usize,
    out: *mut *mut LatheOutputs,
) -> LatheStatus {
    guard(|| {
        // SAFETY: null or live, by the caller's contract.
        let model = unsafe { model.as_ref() }.ok_or_else(|| invalid("model is null"))?;
        if out.is_null() {
            return Err(invalid("out is null"));
        }
        // SAFETY: the caller's contract for `inputs`.
        let inputs = unsafe { read_inputs(inputs, count) }?;
        let outputs = run(model, inputs)?
            .into_iter()
            .map(|(name, t)| Output {
                name: CString::new(name.replace('\0', " ")).expect("NULs replaced"),
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
/// name (`buffers`, `buffer_count` of them; outputs without a buffer are dropped). A buffer
/// too small is [`LatheStatus::OutputTooSmall`], naming the output and the bytes it needs.
///
/// # Safety
/// `model` is a live model; `inputs` points to `count` valid views; `buffers` points to
/// `buffer_count` buffers, each `capacity` writable bytes.
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
        if buffers.is_null() && buffer_count > 0 {
            return Err(invalid("buffers is null"));
        }
        let buffers = if buffer_count == 0 {
            &mut [][..]
        } else {
            // SAFETY: `buffer_count` writable buffers, by the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(buffers, buffer_count) }
        };
        let mut names = Vec::with_capacity(buffers.len());
        for (k, b) in buffers.iter().enumerate() {
            // SAFETY: the buffer's name, by the caller's contract.
            names.push(unsafe { text(b.name, &format!("the name of buffer {k}")) }?.to_string());
        }
        for n in &names {
            if !model.outputs.iter().any(|o| o.to_str() == Ok(n.as_str())) {
                return Err(invalid(format!("the model has no output named `{n}`")));
            }
        }
        // SAFETY: the caller's contract for `inputs`.
        let inputs = unsafe { read_inputs(inputs, count) }?;
        let results = run(model, inputs)?;
        for (b, name) in buffers.iter_mut().zip(&names) {
            let Some((_, t)) = results.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let bytes = t.to_le_bytes();
            if bytes.len() > b.capacity || (b.data.is_null() && !bytes.is_empty()) {
                return Err((
                    LatheStatus::OutputTooSmall,
                    format!(
                        "output `{name}` ({} {:?}) needs {} bytes, its buffer holds {}",
                        t.dtype().name(),
                        t.shape(),
                        bytes.len(),
                        b.capacity
                    ),
                ));
            }
            // SAFETY: `capacity >= len` writable bytes, by the caller's contract; the
            // source is our own vector, so they do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), b.data.cast::<u8>(), bytes.len())
            };
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
pub unsafe extern "C" fn lathe_outputs_name(outputs: *const LatheOutputs, i: usize) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(std::ptr::null(), |o| o.name.as_ptr())
}

/// Result `i`'s dtype ([`LatheDType::Other`] when out of range).
///
/// # Safety
/// `outputs` is null or live.
#[no_mangle]
pub unsafe extern "C" fn lathe_outputs_dtype(outputs: *const LatheOutputs, i: usize) -> LatheDType {
    // SAFETY: the caller's contract.
    unsafe { output(outputs, i) }.map_or(LatheDType::Other, |o| o.dtype)
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
pub unsafe extern "C" fn lathe_outputs_data(outputs: *const LatheOutputs, i: usize) -> *const c_void {
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
