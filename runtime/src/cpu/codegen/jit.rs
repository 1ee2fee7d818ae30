//! The Cranelift JIT: host ISA, one module per kernel, and the executable memory it owns.

use super::analyze::Plan;
use super::refs::Refs;
use super::{lower, scalar, CodegenError};
use cranelift_codegen::ir::{types::I32, AbiParam, Type, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{isa::OwnedTargetIsa, Context};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};

/// The native signature of a kernel: `(inputs, outputs, row_start, row_end) -> fault bits`
/// (the `FAULT_*` constants; 0 when nothing went wrong). Pointers are byte addresses of
/// tensors of the body's dtypes.
pub(crate) type KernelFn =
    unsafe extern "C" fn(*const *const u8, *const *mut u8, usize, usize) -> u32;

/// Compiled code: the module that owns the executable memory, and the entry point in it.
pub(crate) struct Code {
    module: Option<JITModule>,
    pub entry: KernelFn,
    /// Cranelift's VCode listing, when asked for (`tracing` at TRACE level).
    pub disasm: Option<String>,
}

// SAFETY: after `finalize_definitions` the module is never touched again except by `Drop`
// (which has exclusive access); the code it owns is immutable, position-fixed, and reentrant
// (it reads its arguments and kernel-owned constants, and writes only through `outputs`).
unsafe impl Send for Code {}
// SAFETY: as for `Send`: shared access only calls `entry`, which is reentrant and touches no
// state of `Code` (each call writes only through its own `outputs`).
unsafe impl Sync for Code {}

impl Code {
    /// Code linked into this program (an object file's kernel): nothing to own or free.
    pub(crate) fn linked(entry: KernelFn) -> Code {
        Code {
            module: None,
            entry,
            disasm: None,
        }
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `&mut self` means no `run` is executing and `entry` dies with us.
            unsafe { m.free_memory() };
        }
    }
}

/// The host ISA, optimizing for speed. (Measured on GELU: `opt_level = none`, which keeps
/// vector constants next to their uses instead of hoisting them into registers and spilling,
/// is 15-20% slower; the egraph's hoisting wins despite the spills.)
/// Position-independent code (`pic`) for object files, which may be linked into a PIE.
pub(crate) fn host_isa(pic: bool) -> Result<OwnedTargetIsa, CodegenError> {
    let backend = |e: String| CodegenError::Backend(e);
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        ("use_colocated_libcalls", "false"),
        ("is_pic", if pic { "true" } else { "false" }),
        (
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        ),
    ] {
        flags
            .set(k, v)
            .map_err(|e| backend(format!("flag {k}: {e}")))?;
    }
    let isa = cranelift_native::builder().map_err(|e| backend(format!("host ISA: {e}")))?;
    isa.finish(settings::Flags::new(flags))
        .map_err(|e| backend(format!("host ISA: {e}")))
}

/// Builds the kernel for `plan` into `ctx`'s function, with [`KernelFn`]'s signature.
pub(crate) fn build(plan: &Plan, refs: &Refs, ctx: &mut Context, ptr: Type) {
    for _ in 0..4 {
        ctx.func.signature.params.push(AbiParam::new(ptr));
    }
    ctx.func.signature.returns.push(AbiParam::new(I32));
    let call_conv = ctx.func.signature.call_conv;
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let fma = crate::kernels::simd::has_native_fma();
    if lower::vector_ok(plan) {
        lower::emit(plan, refs, &mut b, ptr, fma);
    } else {
        scalar::emit(plan, refs, &mut b, ptr, call_conv, fma);
    }
    b.finalize();
}

/// Fails unless this CPU runs what the codegen emits.
pub(crate) fn check_host() -> Result<(), CodegenError> {
    if crate::kernels::simd::has_vector_rounding() {
        Ok(())
    } else {
        Err(CodegenError::Backend(
            "the CPU codegen needs SSE4.1 (vector rounding)".into(),
        ))
    }
}

/// Compiles `plan` (whose constant tables live at `tables`) to native code.
pub(crate) fn compile(
    plan: &Plan,
    tables: &[*const u8],
    disasm: bool,
) -> Result<Code, CodegenError> {
    check_host()?;
    let backend = |what: &str, e: String| CodegenError::Backend(format!("{what}: {e}"));
    let isa = host_isa(false)?;
    let ptr = isa.pointer_type();
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let mut ctx: Context = module.make_context();
    ctx.func.name = UserFuncName::user(0, 0);
    let refs = Refs::Addresses {
        tables: tables.to_vec(),
    };
    build(plan, &refs, &mut ctx, ptr);
    ctx.set_disasm(disasm);
    let id = module
        .declare_function("row_kernel", Linkage::Local, &ctx.func.signature)
        .map_err(|e| backend("declare", e.to_string()))?;
    module
        .define_function(id, &mut ctx)
        .map_err(|e| backend("compile", format!("{e:?}")))?;
    let disasm = ctx
        .compiled_code()
        .and_then(|c| c.vcode.clone())
        .filter(|_| disasm);
    module
        .finalize_definitions()
        .map_err(|e| backend("finalize", e.to_string()))?;
    let p = module.get_finalized_function(id);
    // SAFETY: the function was built with exactly `KernelFn`'s signature in the host's
    // default calling convention (the C one).
    let entry = unsafe { std::mem::transmute::<*const u8, KernelFn>(p) };
    Ok(Code {
        module: Some(module),
        entry,
        disasm,
    })
}
