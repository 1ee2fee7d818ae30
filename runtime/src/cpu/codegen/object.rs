//! Generated kernels written to a relocatable object file instead of executable memory: the
//! code half of `lathe compile --emit obj` (`crate::cpu::aot` writes the rest).
//!
//! Each fused body becomes a function with [`super::jit::KernelFn`]'s signature, its constant
//! tables become read-only data objects beside it, and its libcalls are calls to the symbols
//! `lathe_rt_*` that the kernels library exports (see `libcalls.rs`). The code is compiled
//! for this machine's CPU, like `-march=native`; [`ObjectWriter::features`] says which
//! features it needs, so the loader can refuse a CPU that lacks them.

use super::refs::Refs;
use super::{analyze, jit, libcalls, CodegenError};
use cranelift_codegen::ir::{types::I32, AbiParam, UserFuncName};
use cranelift_codegen::Context;
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use std::collections::HashMap;

/// An object file being written.
pub struct ObjectWriter {
    module: ObjectModule,
    /// Every libcall, declared as an imported function, by its address in this process.
    libcalls: HashMap<usize, FuncId>,
    /// Symbols start with this (a C identifier).
    prefix: String,
    kernels: usize,
    features: Vec<String>,
}

fn backend(what: &str, e: impl std::fmt::Display) -> CodegenError {
    CodegenError::Backend(format!("{what}: {e}"))
}

impl ObjectWriter {
    /// An empty object for this machine's CPU, its symbols named `{prefix}_...`.
    pub fn new(prefix: &str) -> Result<ObjectWriter, CodegenError> {
        jit::check_host()?;
        let isa = jit::host_isa(true)?;
        let features = isa_features(&isa);
        let builder = ObjectBuilder::new(
            isa,
            prefix.as_bytes().to_vec(),
            cranelift_module::default_libcall_names(),
        )
        .map_err(|e| backend("object", e))?;
        let mut module = ObjectModule::new(builder);
        let mut libcalls = HashMap::new();
        for (name, address) in libcalls::symbols() {
            // Their signatures are given at each call (`Refs::function`); the declaration
            // only names the symbol.
            let sig = module.make_signature();
            let id = module
                .declare_function(name, Linkage::Import, &sig)
                .map_err(|e| backend("declare", e))?;
            libcalls.insert(address, id);
        }
        Ok(ObjectWriter {
            module,
            libcalls,
            prefix: prefix.to_string(),
            kernels: 0,
            features,
        })
    }

    /// CPU features the code needs (x86 names, as [`crate::cpu::has_feature`] reads them).
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// The module, to add the caller's own data and functions.
    pub fn module(&mut self) -> &mut ObjectModule {
        &mut self.module
    }

    /// Read-only data `bytes` aligned to `align`, local to the object, named
    /// `{prefix}_{name}`.
    pub fn add_data(
        &mut self,
        name: &str,
        bytes: Vec<u8>,
        align: u64,
    ) -> Result<DataId, CodegenError> {
        let id = self
            .module
            .declare_data(
                &format!("{}_{name}", self.prefix),
                Linkage::Local,
                false,
                false,
            )
            .map_err(|e| backend("declare", e))?;
        let mut data = DataDescription::new();
        data.define(bytes.into_boxed_slice());
        data.set_align(align);
        self.module
            .define_data(id, &data)
            .map_err(|e| backend("data", e))?;
        Ok(id)
    }

    /// Compiles a fused body (as [`super::RowKernel::compile`] does) into the function
    /// `{prefix}_kernel_{n}`, `n` counting from 0 in call order.
    pub fn add_kernel(&mut self, body: &lathe_ir::Graph) -> Result<FuncId, CodegenError> {
        let n = self.kernels;
        let plan = analyze::analyze(body)?;
        let mut tables = Vec::with_capacity(plan.tables.len());
        for (t, bytes) in plan.tables.iter().enumerate() {
            tables.push(self.add_data(&format!("kernel_{n}_table_{t}"), bytes.to_vec(), 64)?);
        }
        let refs = Refs::Symbols {
            tables,
            libcalls: self.libcalls.clone(),
            near_tables: true,
        };
        let ptr = self.module.target_config().pointer_type();
        let mut ctx: Context = self.module.make_context();
        ctx.func.name = UserFuncName::user(0, n as u32);
        jit::build(&plan, &refs, &mut ctx, ptr);
        let id = self
            .module
            .declare_function(
                &format!("{}_kernel_{n}", self.prefix),
                Linkage::Local,
                &ctx.func.signature,
            )
            .map_err(|e| backend("declare", e))?;
        self.module
            .define_function(id, &mut ctx)
            .map_err(|e| backend(&format!("compile `{}`", body.name), format!("{e:?}")))?;
        self.kernels += 1;
        Ok(id)
    }

    /// Declares an exported function `name` taking `params` pointers and returning an i32.
    pub fn declare_export(&mut self, name: &str, params: usize) -> Result<FuncId, CodegenError> {
        let sig = self.pointer_signature(params);
        self.module
            .declare_function(name, Linkage::Export, &sig)
            .map_err(|e| backend("declare", e))
    }

    /// Declares an imported function `name` taking `params` pointers and returning an i32.
    pub fn declare_import(&mut self, name: &str, params: usize) -> Result<FuncId, CodegenError> {
        let sig = self.pointer_signature(params);
        self.module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| backend("declare", e))
    }

    fn pointer_signature(&self, params: usize) -> cranelift_codegen::ir::Signature {
        let ptr = self.module.target_config().pointer_type();
        let mut sig = self.module.make_signature();
        sig.params.extend((0..params).map(|_| AbiParam::new(ptr)));
        sig.returns.push(AbiParam::new(I32));
        sig
    }

    /// The object file's bytes.
    pub fn finish(self) -> Result<Vec<u8>, CodegenError> {
        self.module
            .finish()
            .emit()
            .map_err(|e| backend("object", e))
    }
}

/// The CPU features an ISA's enabled flags name (`has_avx2` → `avx2`), those this build can
/// check for.
fn isa_features(isa: &cranelift_codegen::isa::OwnedTargetIsa) -> Vec<String> {
    (jit::enabled_flags(isa).iter())
        .filter_map(|f| f.strip_prefix("has_"))
        .map(|f| match f {
            "sse41" => "sse4.1".to_string(),
            "sse42" => "sse4.2".to_string(),
            f => f.to_string(),
        })
        .filter(|f| crate::cpu::features::knows_feature(f))
        .collect()
}
