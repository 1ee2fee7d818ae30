//! How generated code reaches what lies outside it: a kernel's constant tables and the
//! libcalls (`libcalls.rs`).
//!
//! JIT code runs in the process that compiled it, so both are addresses baked in as
//! immediates. Code written to an object file is linked later, elsewhere: both are symbols
//! (`symbol_value` of a data object the object file defines; `func_addr` of a libcall the
//! kernels library exports), resolved by the linker through relocations.

use cranelift_codegen::ir::{
    self, immediates::Imm64, ExternalName, GlobalValueData, InstBuilder, SigRef, Type,
    UserExternalName, Value,
};
use cranelift_frontend::FunctionBuilder;
use cranelift_module::{DataId, FuncId};
use std::collections::HashMap;

/// Where a kernel's tables and libcalls are.
pub(crate) enum Refs {
    /// In this process: table `i` at `tables[i]`; libcalls at their own addresses.
    Addresses { tables: Vec<*const u8> },
    /// Symbols of the module being written: table `i` is data object `tables[i]`; a libcall
    /// is the imported function `libcalls[&address]`.
    Symbols {
        tables: Vec<DataId>,
        libcalls: HashMap<usize, FuncId>,
        /// Whether the tables lie within ±2 GB of the code (one object file), so that code
        /// may address them relative to itself; else by absolute addresses.
        near_tables: bool,
    },
}

impl Refs {
    /// The address of constant table `i`.
    pub fn table(&self, b: &mut FunctionBuilder, ptr: Type, i: usize) -> Value {
        match self {
            Refs::Addresses { tables } => b.ins().iconst(ptr, tables[i] as i64),
            Refs::Symbols {
                tables,
                near_tables,
                ..
            } => {
                // As `cranelift_module::Module::declare_data_in_func` (namespace 1: data).
                let name = b.func.declare_imported_user_function(UserExternalName {
                    namespace: 1,
                    index: tables[i].as_u32(),
                });
                let gv = b.func.create_global_value(GlobalValueData::Symbol {
                    name: ExternalName::user(name),
                    offset: Imm64::new(0),
                    colocated: *near_tables,
                    tls: false,
                });
                b.ins().symbol_value(ptr, gv)
            }
        }
    }

    /// The address of the libcall at `f` (in this process), to call with signature `sig`.
    pub fn function(&self, b: &mut FunctionBuilder, ptr: Type, f: usize, sig: SigRef) -> Value {
        match self {
            Refs::Addresses { .. } => b.ins().iconst(ptr, f as i64),
            Refs::Symbols { libcalls, .. } => {
                let id = libcalls
                    .get(&f)
                    .expect("every libcall is declared in the object module");
                // As `cranelift_module::Module::declare_func_in_func` (namespace 0: functions).
                let name = b.func.declare_imported_user_function(UserExternalName {
                    namespace: 0,
                    index: id.as_u32(),
                });
                let callee = b.func.import_function(ir::ExtFuncData {
                    name: ExternalName::user(name),
                    signature: sig,
                    colocated: false,
                });
                b.ins().func_addr(ptr, callee)
            }
        }
    }
}
