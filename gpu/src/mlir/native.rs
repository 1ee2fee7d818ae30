//! MLIR in-process, through melior (the `cuda` feature): a lowered module on to PTX with
//! [`super::ptx_pipeline`], and host functions compiled by MLIR's JIT and called on the caller's
//! buffers, without `mlir-opt` or `mlir-cpu-runner`.
//!
//! An MLIR context is not thread-safe to share: a [`Native`] (and a [`HostModule`]) belongs to
//! the thread that made it.

#![allow(unsafe_code)]

use melior::dialect::DialectRegistry;
use melior::ir::attribute::{StringAttribute, TypeAttribute};
use melior::ir::r#type::FunctionType;
use melior::ir::{BlockLike, Module, OperationRef};
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::{Context, StringRef};
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// MLIR's pipeline from a module of host functions (`func.func` over static memrefs, with
/// `scf`, `arith`, `math` and `memref` ops) to the LLVM dialect, in which each memref parameter
/// is one bare pointer to its first element; math functions become calls to libm.
pub const NATIVE_HOST_PIPELINE: &str = "builtin.module(convert-math-to-libm,convert-scf-to-cf,\
convert-math-to-llvm,convert-arith-to-llvm,convert-index-to-llvm,convert-cf-to-llvm,\
finalize-memref-to-llvm,convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},\
reconcile-unrealized-casts)";

/// An MLIR context with every dialect, pass and translation to LLVM IR registered: what
/// [`Native::ptx`] and [`Native::host`] parse and lower modules in.
pub struct Native {
    context: Context,
}

impl Default for Native {
    fn default() -> Self {
        Self::new()
    }
}

impl Native {
    /// A context with all of MLIR's dialects registered and loaded, all passes registered, and
    /// the translations to LLVM IR.
    pub fn new() -> Native {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        register_all_passes();
        let context = Context::new();
        context.append_dialect_registry(&registry);
        context.load_all_available_dialects();
        register_all_llvm_translations(&context);
        Native { context }
    }

    /// The PTX of `module` (a module of [`super::lower_graph`], its kernels in one
    /// `gpu.module`) for `chip` (`sm_80`, `sm_90`), by [`super::ptx_pipeline`]; with
    /// `libdevice` (CUDA's `libdevice.10.bc`) its math functions are linked in.
    pub fn ptx(
        &self,
        module: &str,
        chip: &str,
        libdevice: Option<&Path>,
    ) -> Result<String, String> {
        let mut binary = self.parse(module)?;
        self.run_pipeline(&mut binary, &super::ptx_pipeline(chip, libdevice), "to PTX")?;
        let text = binary.as_operation().to_string();
        super::ptx_of(&text).ok_or_else(|| format!("no PTX in MLIR's output:\n{text}"))
    }

    /// `module`'s functions (`func.func`, each memref parameter static) lowered by
    /// [`NATIVE_HOST_PIPELINE`] and compiled by MLIR's JIT (LLVM at `-O2`) for this CPU, to be
    /// called with [`HostModule::call`]. The text may be a `module {...}` or its functions
    /// alone. Math functions resolve to this process's libm.
    pub fn host(&self, module: &str) -> Result<HostModule, String> {
        let mut lowered = self.parse(module)?;
        let functions = functions(&lowered)?;
        self.run_pipeline(&mut lowered, NATIVE_HOST_PIPELINE, "to the LLVM dialect")?;
        let diagnostics = self.collect_diagnostics();
        // SAFETY: the module is valid and in the LLVM dialect; the engine copies what it needs
        // (it translates the module to LLVM IR of its own), so it may outlive the module.
        let raw = unsafe {
            mlir_sys::mlirExecutionEngineCreate(lowered.to_raw(), 2, 0, std::ptr::null(), false)
        };
        let messages = diagnostics.finish();
        if raw.ptr.is_null() {
            return Err(format!(
                "MLIR's JIT could not compile the module{}",
                messages.unwrap_or_default()
            ));
        }
        Ok(HostModule {
            engine: raw,
            functions,
        })
    }

    /// Runs `pipeline` (a textual `builtin.module(...)`) on `module`; `what` says where the
    /// pipeline goes, for errors.
    fn run_pipeline(&self, module: &mut Module, pipeline: &str, what: &str) -> Result<(), String> {
        let manager = PassManager::new(&self.context);
        parse_pass_pipeline(manager.as_operation_pass_manager(), pipeline)
            .map_err(|e| format!("MLIR did not parse the pass pipeline `{pipeline}`: {e}"))?;
        let diagnostics = self.collect_diagnostics();
        let run = manager.run(module);
        let messages = diagnostics.finish();
        run.map_err(|_| {
            format!(
                "MLIR's pipeline {what} failed{}",
                messages.unwrap_or_default()
            )
        })
    }

    /// `module` parsed and verified, or MLIR's diagnostics.
    fn parse(&self, module: &str) -> Result<Module<'_>, String> {
        let diagnostics = self.collect_diagnostics();
        let parsed = Module::parse(&self.context, module).filter(|m| m.as_operation().verify());
        let messages = diagnostics.finish();
        parsed.ok_or_else(|| {
            format!(
                "MLIR did not parse the module{}",
                messages.unwrap_or_default()
            )
        })
    }

    /// Captures the context's diagnostics (instead of printing them) until `finish`.
    fn collect_diagnostics(&self) -> Diagnostics<'_> {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        let id = self.context.attach_diagnostic_handler(move |d| {
            let mut m = format!("{}: {d}", d.location());
            // Not the notes that print the whole operation (a module, often): the location
            // says where.
            for note in (0..d.note_count()).filter_map(|k| d.note(k).ok()) {
                let text = note.to_string();
                if !text.starts_with("see current operation") {
                    m.push_str(&format!("\n  note: {}: {text}", note.location()));
                }
            }
            sink.lock().map(|mut s| s.push(m)).is_ok()
        });
        Diagnostics {
            context: &self.context,
            id: Some(id),
            messages,
        }
    }
}

/// The diagnostics MLIR reported while one is attached; detached when dropped.
struct Diagnostics<'n> {
    context: &'n Context,
    id: Option<melior::diagnostic::DiagnosticHandlerId>,
    messages: Arc<Mutex<Vec<String>>>,
}

impl Diagnostics<'_> {
    /// Detaches the handler and returns what it got, each message on a line of its own after
    /// `:`; `None` if there was nothing.
    fn finish(mut self) -> Option<String> {
        if let Some(id) = self.id.take() {
            self.context.detach_diagnostic_handler(id);
        }
        let messages = std::mem::take(&mut *self.messages.lock().ok()?);
        (!messages.is_empty()).then(|| format!(":\n{}", messages.join("\n")))
    }
}

impl Drop for Diagnostics<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.context.detach_diagnostic_handler(id);
        }
    }
}

/// Each top-level `func.func` of `module` with a body: its symbol, and its numbers of
/// parameters and results.
fn functions(module: &Module) -> Result<HashMap<String, (usize, usize)>, String> {
    let mut out = HashMap::new();
    let mut next = module.body().first_operation();
    while let Some(op) = next {
        if op.name().as_string_ref().as_str() == Ok("func.func") && op.region_count() > 0 {
            let attribute = |name| op.attribute(name).map_err(|e| e.to_string());
            let name = StringAttribute::try_from(attribute("sym_name")?)
                .map_err(|e| e.to_string())?
                .value()
                .to_string();
            let signature = TypeAttribute::try_from(attribute("function_type")?)
                .map_err(|e| e.to_string())?
                .value();
            let signature = FunctionType::try_from(signature).map_err(|e| e.to_string())?;
            let declaration = op
                .region(0)
                .map_or(true, |r| melior::ir::RegionLike::first_block(r).is_none());
            if !declaration {
                out.insert(name, (signature.input_count(), signature.result_count()));
            }
        }
        // SAFETY: the operations live as long as `module`, which outlives this loop.
        next = unsafe { op.to_ref() }
            .next_in_block()
            .map(|o| unsafe { OperationRef::from_raw(o.to_raw()) });
    }
    Ok(out)
}

/// A module of host functions compiled by MLIR's JIT ([`Native::host`]).
pub struct HostModule {
    engine: mlir_sys::MlirExecutionEngine,
    /// Each function's numbers of parameters and results, by symbol.
    functions: HashMap<String, (usize, usize)>,
}

impl HostModule {
    /// Calls function `symbol` with `buffers`, one per memref parameter in order (inputs,
    /// then outputs, for a kernel's host function), through the JIT's packed interface.
    ///
    /// # Safety
    ///
    /// Each pointer must be valid for reads and writes of its memref's whole size (elements
    /// times element bytes, bool as one byte), aligned for its element type, and a buffer the
    /// function writes must not overlap another it reads or writes.
    pub unsafe fn call(&self, symbol: &str, buffers: &[*mut u8]) -> Result<(), String> {
        let &(params, results) = (self.functions.get(symbol))
            .ok_or_else(|| format!("no function `{symbol}` in the module"))?;
        if results != 0 {
            return Err(format!(
                "function `{symbol}` returns {results} values; only functions without results can be called"
            ));
        }
        if buffers.len() != params {
            return Err(format!(
                "function `{symbol}` takes {params} memrefs, called with {} buffers",
                buffers.len()
            ));
        }
        // The packed wrapper MLIR's JIT makes of every function, `_mlir_<symbol>`: it takes one
        // pointer per argument, to the argument's value (here to each buffer's pointer).
        // (`mlirExecutionEngineInvokePacked` would call `_mlir_ciface_<symbol>`'s wrapper,
        // which needs `llvm.emit_c_interface` and descriptors, not bare pointers.)
        // SAFETY: the engine is valid; the name is read during the call only.
        let packed = unsafe {
            mlir_sys::mlirExecutionEngineLookupPacked(self.engine, StringRef::new(symbol).to_raw())
        };
        if packed.is_null() {
            return Err(format!(
                "MLIR's JIT could not link function `{symbol}` (a symbol it calls did not resolve)"
            ));
        }
        // SAFETY: a packed wrapper is `void(void **)`.
        let packed: unsafe extern "C" fn(*mut *mut c_void) = unsafe { std::mem::transmute(packed) };
        let mut pointers = buffers.to_vec();
        let mut arguments: Vec<*mut c_void> = (pointers.iter_mut())
            .map(|p| p as *mut *mut u8 as *mut c_void)
            .collect();
        // SAFETY: `symbol` takes `params` bare pointers and returns nothing; `arguments` holds
        // one pointer per parameter, each to a buffer pointer the caller vouches for.
        unsafe { packed(arguments.as_mut_ptr()) };
        Ok(())
    }
}

impl Drop for HostModule {
    fn drop(&mut self) {
        // SAFETY: the engine was created by `Native::host`, not null, and is destroyed once.
        unsafe { mlir_sys::mlirExecutionEngineDestroy(self.engine) }
    }
}
