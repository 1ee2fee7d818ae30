//! `liblathe_kernels.a`: what an object file from `lathe compile --emit obj` links against.
//!
//! The object holds a model's generated kernels, its plan and its weights, and its entry
//! point `{prefix}_run` calls [`lathe_kernels_run`] here, which runs the plan with the
//! runtime's kernels and scheduler (see `lathe_runtime::cpu::aot`). The library also exports
//! the functions generated code calls (`lathe_rt_*`, from the runtime's codegen). Nothing is
//! compiled at run time and no importer is linked.
//!
//! Errors are a nonzero status and a per-thread message ([`lathe_kernels_last_error`]); no
//! panic crosses the boundary.

use lathe_runtime::cpu::aot::{self, CompiledModel};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The call failed; [`lathe_kernels_last_error`] says why.
pub const LATHE_KERNELS_ERROR: i32 = 1;
/// Lathe panicked (a bug); [`lathe_kernels_last_error`] says where.
pub const LATHE_KERNELS_PANIC: i32 = 2;

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn fail(status: i32, message: String) -> i32 {
    let message = CString::new(message.replace('\0', " ")).expect("NULs were replaced");
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(message));
    status
}

/// Runs the model an object file describes (called by its `{prefix}_run`): 0 on success.
///
/// # Safety
/// `model` is the object's own model; `inputs` and `outputs` hold one pointer per tensor of
/// the header's sizes; `scratch` holds the header's scratch bytes, 64-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn lathe_kernels_run(
    model: *const CompiledModel,
    inputs: *const *const c_void,
    outputs: *const *mut c_void,
    scratch: *mut c_void,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded under the same contract.
        unsafe { aot::run(model, inputs.cast(), outputs.cast(), scratch.cast()) }
    }));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => fail(LATHE_KERNELS_ERROR, e),
        Err(p) => {
            let what = (p.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            fail(LATHE_KERNELS_PANIC, format!("lathe panicked: {what}"))
        }
    }
}

/// The message of this thread's last failed call, or NULL; valid until its next call.
#[no_mangle]
pub extern "C" fn lathe_kernels_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ref().map_or(std::ptr::null(), |m| m.as_ptr()))
}
