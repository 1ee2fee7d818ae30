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
use std::sync::{Arc, OnceLock};

/// The native signature of a kernel: `(inputs, outputs, row_start, row_end) -> fault bits`
/// (the `FAULT_*` constants; 0 when nothing went wrong). Pointers are byte addresses of
/// tensors of the body's dtypes.
pub(crate) type KernelFn =
    unsafe extern "C" fn(*const *const u8, *const *mut u8, usize, usize) -> u32;

/// A JIT module that frees its executable memory when the last kernel in it is dropped.
struct Owned(Option<JITModule>);

// SAFETY: after `finalize_definitions` the module is never touched again except by `Drop`,
// which runs once, when the last `Code` sharing it is gone (the `Arc` gives it exclusive
// access); the code it owns is immutable and position-fixed.
unsafe impl Send for Owned {}
// SAFETY: as for `Send`: shared access never touches the module.
unsafe impl Sync for Owned {}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: the last `Code` holding the module is gone, and with it every `entry`
            // into it: no `run` is executing.
            unsafe { m.free_memory() };
        }
    }
}

/// Compiled code: the module that owns the executable memory (shared by the kernels placed
/// together from an image), and the entry point in it.
pub(crate) struct Code {
    /// Held for its memory (freed when the last kernel in it goes), never read.
    _module: Option<Arc<Owned>>,
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
            _module: None,
            entry,
            disasm: None,
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
    let mut isa = cranelift_native::builder().map_err(|e| backend(format!("host ISA: {e}")))?;
    // The host's flags, less what the instruction-set cap hides (`LATHE_ISA`).
    #[cfg(target_arch = "x86_64")]
    for (flag, feature) in [
        ("has_avx", "avx"),
        ("has_avx2", "avx2"),
        ("has_fma", "fma"),
        ("has_avx512f", "avx512f"),
        ("has_avx512dq", "avx512f"),
        ("has_avx512vl", "avx512f"),
        ("has_avx512bitalg", "avx512f"),
        ("has_avx512vbmi", "avx512f"),
    ] {
        if !crate::cpu::has_feature(feature) {
            isa.set(flag, "false")
                .map_err(|e| backend(format!("flag {flag}: {e}")))?;
        }
    }
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
        _module: Some(Arc::new(Owned(Some(module)))),
        entry,
        disasm,
    })
}

/// A kernel's machine code as bytes and relocations, not yet placed anywhere: what a plan
/// image stores beside the kernel's body, so that loading it copies code instead of
/// compiling it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Relocatable {
    /// The ISA flags the code was compiled with (`has_avx2`, ...): it is used only on a CPU
    /// whose own flags include them all, else the body is compiled again.
    flags: Vec<String>,
    /// The kernel's iteration space and counts, from the body's analysis.
    shape: KernelShape,
    /// The kernel's constant tables (the analysis's), which the code addresses.
    tables: Vec<Vec<u8>>,
    align: u64,
    bytes: Vec<u8>,
    /// Absolute 8-byte addresses to write: at `offset`, the target's address plus `addend`.
    relocs: Vec<(u32, Target, i64)>,
}

/// A kernel's rows, row length, and input and output counts.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct KernelShape {
    pub rows: usize,
    pub row_len: usize,
    pub num_inputs: usize,
    pub num_outputs: usize,
}

impl Relocatable {
    pub fn shape(&self) -> KernelShape {
        self.shape
    }

    /// Copies of its tables, for the kernel to own.
    pub fn tables(&self) -> Vec<Box<[u8]>> {
        self.tables
            .iter()
            .map(|t| t.clone().into_boxed_slice())
            .collect()
    }

    /// The same code, said to need ISA flag `flag` too (for tests of CPUs that lack one).
    #[cfg(test)]
    pub fn needing(mut self, flag: &str) -> Relocatable {
        self.flags.push(flag.to_string());
        self
    }

    /// Whether this CPU has every ISA flag the code was compiled with.
    pub fn usable_here(&self) -> bool {
        let host = host_flags();
        self.flags.iter().all(|f| host.binary_search(f).is_ok())
    }
}

/// This CPU's enabled ISA flags, sorted (empty when it has no ISA Cranelift supports).
fn host_flags() -> &'static [String] {
    static FLAGS: OnceLock<Vec<String>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        host_isa(false)
            .map(|i| enabled_flags(&i))
            .unwrap_or_default()
    })
}

/// What a stored relocation points at.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Target {
    /// The kernel's constant table `i`.
    Table(u32),
    /// The libcall with this symbol (`libcalls::symbols`).
    Libcall(String),
}

/// The enabled `has_*` flags of an ISA, sorted.
pub(crate) fn enabled_flags(isa: &OwnedTargetIsa) -> Vec<String> {
    let mut flags: Vec<String> = (isa.isa_flags().iter())
        .filter(|v| v.as_bool() == Some(true))
        .map(|v| v.name.to_string())
        .collect();
    flags.sort();
    flags
}

/// Compiles `plan` to relocatable machine code for this CPU; `None` when its code needs a
/// relocation of another kind than those [`link`] applies.
pub(crate) fn compile_relocatable(plan: &Plan) -> Result<Option<Relocatable>, CodegenError> {
    use cranelift_codegen::binemit::Reloc;
    use cranelift_codegen::ir::ExternalName;
    use cranelift_codegen::FinalizedRelocTarget;
    use cranelift_module::{DataId, FuncId};
    check_host()?;
    let isa = host_isa(false)?;
    let ptr = isa.pointer_type();
    let symbols = super::libcalls::symbols();
    let refs = Refs::Symbols {
        tables: (0..plan.tables.len() as u32)
            .map(DataId::from_u32)
            .collect(),
        libcalls: (symbols.iter().enumerate())
            .map(|(k, &(_, address))| (address, FuncId::from_u32(k as u32)))
            .collect(),
        // Placed anywhere at load: every address is an absolute one.
        near_tables: false,
    };
    let mut ctx = Context::new();
    ctx.func.name = UserFuncName::user(0, 0);
    build(plan, &refs, &mut ctx, ptr);
    let names = ctx.func.params.clone();
    let code = ctx
        .compile(&*isa, &mut Default::default())
        .map_err(|e| CodegenError::Backend(format!("compile: {:?}", e.inner)))?;
    let mut relocs = Vec::new();
    for r in code.buffer.relocs() {
        let FinalizedRelocTarget::ExternalName(ExternalName::User(name)) = r.target else {
            return Ok(None);
        };
        let name = &names.user_named_funcs()[name];
        let target = match name.namespace {
            1 => Target::Table(name.index),
            0 => Target::Libcall(symbols[name.index as usize].0.to_string()),
            _ => return Ok(None),
        };
        if r.kind != Reloc::Abs8 {
            return Ok(None);
        }
        relocs.push((r.offset, target, r.addend));
    }
    Ok(Some(Relocatable {
        flags: enabled_flags(&isa),
        shape: KernelShape {
            rows: plan.rows,
            row_len: plan.row_len,
            num_inputs: plan.num_inputs,
            num_outputs: plan.outputs.len(),
        },
        tables: plan.tables.iter().map(|t| t.to_vec()).collect(),
        align: u64::from(code.buffer.alignment),
        bytes: code.code_buffer().to_vec(),
        relocs,
    }))
}

/// Places stored machine code in executable memory, one module for them all: each
/// `(code, tables)` with its tables at those addresses. An error when this CPU lacks a flag
/// the code was compiled with ([`Relocatable::usable_here`] says) or the code does not fit
/// its tables.
pub(crate) fn link(kernels: &[(&Relocatable, Vec<*const u8>)]) -> Result<Vec<Code>, CodegenError> {
    check_host()?;
    let bad = |what: String| CodegenError::Backend(format!("stored machine code: {what}"));
    let backend = |what: &str, e: String| CodegenError::Backend(format!("{what}: {e}"));
    let symbols = super::libcalls::symbols();
    let isa = host_isa(false)?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let mut sig = module.make_signature();
    for _ in 0..4 {
        sig.params
            .push(AbiParam::new(module.target_config().pointer_type()));
    }
    sig.returns.push(AbiParam::new(I32));
    let mut ids = Vec::with_capacity(kernels.len());
    for (k, (code, tables)) in kernels.iter().enumerate() {
        if !code.usable_here() {
            return Err(bad("it needs ISA flags this CPU lacks".into()));
        }
        let mut bytes = code.bytes.clone();
        for (offset, target, addend) in &code.relocs {
            let address = match target {
                Target::Table(i) => *tables
                    .get(*i as usize)
                    .ok_or_else(|| bad(format!("table {i} of {}", tables.len())))?
                    as usize,
                Target::Libcall(name) => {
                    (symbols.iter())
                        .find(|(s, _)| s == name)
                        .ok_or_else(|| bad(format!("unknown function `{name}`")))?
                        .1
                }
            };
            let value = (address as i64).wrapping_add(*addend);
            let at = *offset as usize;
            let slot = (bytes.get_mut(at..at.saturating_add(8))).ok_or_else(|| {
                bad(format!(
                    "relocation at {at} past {} bytes",
                    code.bytes.len()
                ))
            })?;
            slot.copy_from_slice(&value.to_le_bytes());
        }
        let id = module
            .declare_function(&format!("kernel_{k}"), Linkage::Local, &sig)
            .map_err(|e| backend("declare", e.to_string()))?;
        module
            .define_function_bytes(id, code.align.max(1), &bytes, &[])
            .map_err(|e| backend("define", e.to_string()))?;
        ids.push(id);
    }
    module
        .finalize_definitions()
        .map_err(|e| backend("finalize", e.to_string()))?;
    let entries: Vec<KernelFn> = (ids.into_iter())
        .map(|id| {
            let p = module.get_finalized_function(id);
            // SAFETY: the code was compiled with exactly `KernelFn`'s signature, for a CPU
            // with no flag this one lacks, and every address it holds was just written.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
        })
        .collect();
    let owned = Arc::new(Owned(Some(module)));
    Ok((entries.into_iter())
        .map(|entry| Code {
            _module: Some(Arc::clone(&owned)),
            entry,
            disasm: None,
        })
        .collect())
}
