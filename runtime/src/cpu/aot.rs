//! Ahead-of-time compiled models: one specialization's plan written into a relocatable object
//! file with a C header (`lathe compile --emit obj`), and the run side that the kernels
//! library (`runtime/aot`, `liblathe_kernels.a`) links into a C program.
//!
//! # What the object holds
//!
//! - `{prefix}_kernel_N`: every generated kernel of the plan, compiled by Cranelift's object
//!   backend for this machine's CPU, with its constant tables as read-only data beside it.
//! - `{prefix}_plan` and `{prefix}_blob`: the plan's image (`image.rs`: the steps with their
//!   kernels' parameters, the memory plan) and its blob (packed weights and constants, each
//!   64-byte aligned), read-only data used where it lies: nothing is copied at load.
//! - `{prefix}_model`: a [`CompiledModel`] pointing at the above.
//! - `{prefix}_run(inputs, outputs, scratch)`: the exported entry point, which hands its model
//!   to `lathe_kernels_run` in the kernels library.
//!
//! # The run side
//!
//! The first call of a model decodes its plan once (microseconds to a few milliseconds: no
//! pass, no lowering, no packing, no code generation) with its generated kernels bound to the
//! object's functions instead of compiled, checks the CPU has every feature the code and the
//! kernels need, and keeps it for the process's life. Every call then runs the plan as
//! [`CpuPlan::run`] does, with the same scheduler and kernels, reading the caller's inputs in
//! place, writing outputs into the caller's buffers, and using the caller's scratch as the
//! arena: the library allocates nothing per call but per-thread kernel scratch.

use super::codegen::{self, object::ObjectWriter, KernelFn};
use super::exec::Frame;
use super::{image, plan::StorageKind, CpuPlan, ThreadPool};
use cranelift_codegen::ir::{types::I32, AbiParam, InstBuilder, UserFuncName};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, Linkage, Module};
use lathe_ir::DType;
use std::ffi::{c_char, CStr};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// The layout version of [`CompiledModel`]: an object from another version is refused.
pub const ABI_VERSION: u32 = 1;

/// The entry the object's `{prefix}_run` calls, which the kernels library exports.
pub const RUN_SYMBOL: &str = "lathe_kernels_run";

/// What an object file says about its model (`{prefix}_model`), read by [`run`].
#[repr(C)]
#[derive(Debug)]
pub struct CompiledModel {
    /// [`ABI_VERSION`] of the writer.
    pub abi: u32,
    /// Entries of `kernels`.
    pub kernel_count: u32,
    pub plan: *const u8,
    pub plan_len: u64,
    /// 64-byte aligned.
    pub blob: *const u8,
    pub blob_len: u64,
    /// The generated kernels, in the order the plan holds them (each set by a relocation).
    pub kernels: *const Option<KernelFn>,
    /// CPU features the code and kernels need, comma-separated, NUL-terminated.
    pub features: *const c_char,
    /// The model's name, NUL-terminated.
    pub name: *const c_char,
}

/// Why an object file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AotError {
    #[error("{0}")]
    Image(#[from] image::ImageError),
    #[error("{0}")]
    Codegen(#[from] codegen::CodegenError),
    #[error("symbol prefix `{0}` is not a C identifier")]
    Prefix(String),
}

/// A tensor of the interface: its name, dtype and shape.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<usize>,
}

/// An object file and its header.
pub struct ObjectOutput {
    pub object: Vec<u8>,
    pub header: String,
    /// Generated kernels in the object.
    pub kernels: usize,
    /// Bytes of the arena each call needs (`{PREFIX}_SCRATCH_BYTES`).
    pub scratch_bytes: usize,
}

/// Writes `cpu`'s plan as an object file whose symbols start with `prefix`, and its header
/// (which names the tensors `input_names` and `output_names`, in plan order).
pub fn write_object(
    cpu: &CpuPlan,
    model_name: &str,
    prefix: &str,
    input_names: &[String],
    output_names: &[String],
) -> Result<ObjectOutput, AotError> {
    let c_ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !c_ident(prefix) {
        return Err(AotError::Prefix(prefix.to_string()));
    }
    let plan = &cpu.plan;
    let (image, bodies) = codegen::recording_bodies(|| image::encode(plan));
    let image::Image {
        plan: plan_bytes,
        blob,
        features: mut needed,
    } = image?;
    let (plan_len, blob_len) = (plan_bytes.len() as u64, blob.len() as u64);
    let mut w = ObjectWriter::new(prefix)?;
    let kernels = bodies
        .iter()
        .map(|b| w.add_kernel(b))
        .collect::<Result<Vec<_>, _>>()?;
    let mut features = std::mem::take(&mut needed);
    features.extend(w.features().iter().cloned());
    features.sort();
    features.dedup();
    let cstr = |s: &str| {
        let mut v = s.replace('\0', "").into_bytes();
        v.push(0);
        v
    };
    let plan_id = w.add_data("plan", plan_bytes, 8)?;
    let blob_id = w.add_data("blob", blob, image::BLOB_ALIGN as u64)?;
    let features_id = w.add_data("features", cstr(&features.join(",")), 1)?;
    let name_id = w.add_data("name", cstr(model_name), 1)?;
    let backend = |what: &str, e: cranelift_module::ModuleError| {
        AotError::Codegen(codegen::CodegenError::Backend(format!("{what}: {e}")))
    };

    let m = w.module();
    let table_id = m
        .declare_data(&format!("{prefix}_kernels"), Linkage::Local, false, false)
        .map_err(|e| backend("declare", e))?;
    let mut table = DataDescription::new();
    // Defined bytes, not zero-init: a zero-init object would go to .bss, without relocations.
    table.define(vec![0u8; kernels.len().max(1) * 8].into_boxed_slice());
    table.set_align(8);
    for (i, &f) in kernels.iter().enumerate() {
        let r = m.declare_func_in_data(f, &mut table);
        table.write_function_addr((i * 8) as u32, r);
    }
    m.define_data(table_id, &table)
        .map_err(|e| backend("data", e))?;

    // `CompiledModel`, its fields at their offsets in the struct (little-endian, 64-bit).
    use std::mem::offset_of;
    let model_id = m
        .declare_data(&format!("{prefix}_model"), Linkage::Local, false, false)
        .map_err(|e| backend("declare", e))?;
    let mut bytes = vec![0u8; size_of::<CompiledModel>()];
    let mut put = |at: usize, v: &[u8]| bytes[at..at + v.len()].copy_from_slice(v);
    put(offset_of!(CompiledModel, abi), &ABI_VERSION.to_le_bytes());
    put(
        offset_of!(CompiledModel, kernel_count),
        &(kernels.len() as u32).to_le_bytes(),
    );
    put(offset_of!(CompiledModel, plan_len), &plan_len.to_le_bytes());
    put(offset_of!(CompiledModel, blob_len), &blob_len.to_le_bytes());
    let mut model = DataDescription::new();
    model.define(bytes.into_boxed_slice());
    model.set_align(8);
    for (offset, id) in [
        (offset_of!(CompiledModel, plan), plan_id),
        (offset_of!(CompiledModel, blob), blob_id),
        (offset_of!(CompiledModel, kernels), table_id),
        (offset_of!(CompiledModel, features), features_id),
        (offset_of!(CompiledModel, name), name_id),
    ] {
        let gv = m.declare_data_in_data(id, &mut model);
        model.write_data_addr(offset as u32, gv, 0);
    }
    m.define_data(model_id, &model)
        .map_err(|e| backend("data", e))?;

    // `int32_t {prefix}_run(inputs, outputs, scratch)`: `lathe_kernels_run(&model, ...)`.
    let run = w.declare_export(&format!("{prefix}_run"), 3)?;
    let target = w.declare_import(RUN_SYMBOL, 4)?;
    let m = w.module();
    let ptr = m.target_config().pointer_type();
    let mut ctx = m.make_context();
    for _ in 0..3 {
        ctx.func.signature.params.push(AbiParam::new(ptr));
    }
    ctx.func.signature.returns.push(AbiParam::new(I32));
    ctx.func.name = UserFuncName::user(1, 0);
    {
        let mut fctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let gv = m.declare_data_in_func(model_id, b.func);
        let model = b.ins().symbol_value(ptr, gv);
        let callee = m.declare_func_in_func(target, b.func);
        let call = b
            .ins()
            .call(callee, &[model, params[0], params[1], params[2]]);
        let status = b.inst_results(call)[0];
        b.ins().return_(&[status]);
        b.seal_all_blocks();
        b.finalize();
    }
    m.define_function(run, &mut ctx)
        .map_err(|e| backend("compile the entry", e))?;
    let object = w.finish()?;

    let info = |bufs: &[usize], names: &[String]| -> Vec<TensorInfo> {
        (bufs.iter().enumerate())
            .map(|(i, &b)| TensorInfo {
                name: names.get(i).cloned().unwrap_or_else(|| format!("{i}")),
                dtype: plan.bufs[b].dtype,
                dims: plan.bufs[b].dims.clone(),
            })
            .collect()
    };
    let scratch_bytes = plan.stats.arena_bytes;
    let header = header(
        model_name,
        prefix,
        &info(&plan.inputs, input_names),
        &info(&plan.outputs, output_names),
        scratch_bytes,
        &features,
    );
    Ok(ObjectOutput {
        object,
        header,
        kernels: kernels.len(),
        scratch_bytes,
    })
}

/// The C header of an object file.
fn header(
    model_name: &str,
    prefix: &str,
    inputs: &[TensorInfo],
    outputs: &[TensorInfo],
    scratch: usize,
    features: &[String],
) -> String {
    let up = prefix.to_ascii_uppercase();
    let mut h = String::new();
    let quoted = |s: &str| format!("{s:?}");
    let list = |items: Vec<String>| format!("{{{}}}", items.join(", "));
    let _ = write!(
        h,
        "/* {prefix}.h: the model `{}` compiled ahead of time by `lathe compile --emit obj`.\n \
         * Generated; do not edit. Link the object with liblathe_kernels.a (and -lpthread -ldl -lm).\n \
         * Compiled for CPUs with: {}. */\n\
         #ifndef {up}_H\n#define {up}_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n\
         #ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n",
        model_name.replace("*/", "* /"),
        if features.is_empty() {
            "no special features".to_string()
        } else {
            features.join(", ")
        },
    );
    let _ = writeln!(
        h,
        "/* Bytes of scratch memory a call needs, 64-byte aligned (the plan's arena). */\n\
         #define {up}_SCRATCH_BYTES {scratch}\n#define {up}_SCRATCH_ALIGN 64\n"
    );
    for (what, tensors) in [("INPUT", inputs), ("OUTPUT", outputs)] {
        let _ = writeln!(
            h,
            "/* {}s, in the order {prefix}_run takes them: dense, row-major, little-endian. */",
            what.to_ascii_lowercase()
        );
        let _ = writeln!(h, "#define {up}_NUM_{what}S {}", tensors.len());
        let _ = writeln!(
            h,
            "#define {up}_{what}_NAMES {}",
            list(tensors.iter().map(|t| quoted(&t.name)).collect())
        );
        let _ = writeln!(
            h,
            "#define {up}_{what}_DTYPES {}",
            list(
                tensors
                    .iter()
                    .map(|t| quoted(&t.dtype.to_string()))
                    .collect()
            )
        );
        let _ = writeln!(
            h,
            "#define {up}_{what}_BYTES {}",
            list(
                tensors
                    .iter()
                    .map(|t| (t.dims.iter().product::<usize>() * t.dtype.size_bytes()).to_string())
                    .collect()
            )
        );
        for (i, t) in tensors.iter().enumerate() {
            let _ = writeln!(
                h,
                "/* {what} {i}: {} {}{:?} */\n#define {up}_{what}_{i}_RANK {}\n#define {up}_{what}_{i}_SHAPE {}",
                quoted(&t.name),
                t.dtype,
                t.dims,
                t.dims.len(),
                list(t.dims.iter().map(|d| d.to_string()).collect()),
            );
        }
        h.push('\n');
    }
    let _ = write!(
        h,
        "/* Runs the model: inputs[i] points at input i's bytes, outputs[j] at room for output j's,\n \
         * scratch at {up}_SCRATCH_BYTES bytes aligned to {up}_SCRATCH_ALIGN (NULL when 0). Returns 0,\n \
         * or nonzero with lathe_kernels_last_error() saying why. Thread-safe: calls at once each\n \
         * need their own scratch and outputs. The first call prepares the model (once). */\n\
         int32_t {prefix}_run(const void *const *inputs, void *const *outputs, void *scratch);\n\n\
         /* The message of this thread's last failed call, or NULL. */\n\
         const char *lathe_kernels_last_error(void);\n\n\
         #ifdef __cplusplus\n}}\n#endif\n\n#endif /* {up}_H */\n"
    );
    h
}

/// The bytes of an object file's read-only data, for the plan to use where they lie.
struct StaticBytes(&'static [u8]);

impl AsRef<[u8]> for StaticBytes {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

/// A model prepared by its first call, kept for the process's life.
struct Prepared {
    cpu: CpuPlan,
}

/// Models prepared so far, by the address of their [`CompiledModel`].
static PREPARED: Mutex<Vec<(usize, Arc<Prepared>)>> = Mutex::new(Vec::new());

/// `s` as a string, or an error saying which field is bad.
///
/// # Safety
/// `s` is null or NUL-terminated.
unsafe fn c_str(s: *const c_char, what: &str) -> Result<String, String> {
    if s.is_null() {
        return Err(format!("the object's {what} is missing"));
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// Decodes `model`'s plan, its kernels bound to the object's code.
///
/// # Safety
/// `model` is a [`CompiledModel`] an object file of this [`ABI_VERSION`] holds (checked
/// first), alive for the process's life.
unsafe fn prepare(model: &'static CompiledModel) -> Result<Prepared, String> {
    if model.abi != ABI_VERSION {
        return Err(format!(
            "the object file was written for kernels ABI {}, and this library is ABI {ABI_VERSION}: compile the model again",
            model.abi
        ));
    }
    // SAFETY: the writer's NUL-terminated strings.
    let name = unsafe { c_str(model.name, "model name") }?;
    // SAFETY: as above.
    let features = unsafe { c_str(model.features, "feature list") }?;
    let needed: Vec<String> = (features.split(',').filter(|f| !f.is_empty()))
        .map(String::from)
        .collect();
    super::check_features(&needed).map_err(|e| format!("model `{name}`: {e}"))?;
    let len = |n: u64| usize::try_from(n).map_err(|_| format!("model `{name}`: size {n}"));
    // SAFETY: the writer's arrays, of these lengths, in the object's read-only data.
    let (plan, blob, kernels) = unsafe {
        (
            std::slice::from_raw_parts(model.plan, len(model.plan_len)?),
            std::slice::from_raw_parts(model.blob, len(model.blob_len)?),
            std::slice::from_raw_parts(model.kernels, model.kernel_count as usize),
        )
    };
    let threads = std::env::var("LATHE_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|&t| t > 0)
        .unwrap_or_else(crate::model::default_threads);
    let pool = Arc::new(ThreadPool::new(threads));
    let backing: image::Bytes = Arc::new(StaticBytes(blob));
    let kernels: Vec<KernelFn> = (kernels.iter().enumerate())
        .map(|(i, k)| k.ok_or_else(|| format!("model `{name}`: generated kernel {i} is NULL")))
        .collect::<Result<_, _>>()?;
    let cpu = codegen::linking(kernels, || {
        CpuPlan::from_image(plan, backing, 0..blob.len(), pool)
    })
    .map_err(|e| format!("model `{name}`: {e}"))?;
    // Each output the steps write in place is written at the caller's pointer: its buffer
    // must be the whole of its storage.
    let p = &cpu.plan;
    for (s, st) in p.storages.iter().enumerate() {
        if let StorageKind::Output = st.kind {
            let owner = p
                .outputs
                .iter()
                .map(|&b| &p.bufs[b])
                .find(|b| b.storage == s);
            if !owner.is_some_and(|b| b.offset == 0 && b.bytes() == st.bytes) {
                return Err(format!(
                    "model `{name}`: output storage {s} is not one output's whole buffer"
                ));
            }
        }
    }
    Ok(Prepared { cpu })
}

/// Runs an object file's model (what `lathe_kernels_run` does).
///
/// # Safety
/// `model` points at a [`CompiledModel`] an object file holds; `inputs` and `outputs` hold one
/// pointer per input and output, each valid for its tensor's bytes (the header's sizes);
/// `scratch` is valid for the plan's arena bytes; no output overlaps another pointer.
pub unsafe fn run(
    model: *const CompiledModel,
    inputs: *const *const u8,
    outputs: *const *mut u8,
    scratch: *mut u8,
) -> Result<(), String> {
    if model.is_null() {
        return Err("no model given".into());
    }
    // SAFETY: the caller's contract: object data lives as long as the program.
    let model: &'static CompiledModel = unsafe { &*model };
    let key = model as *const CompiledModel as usize;
    let prepared = {
        let mut all = PREPARED.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter().find(|(k, _)| *k == key) {
            Some((_, p)) => Arc::clone(p),
            None => {
                // Prepared under the lock: a second thread's first call waits for it.
                // SAFETY: the caller's contract.
                let p = Arc::new(unsafe { prepare(model) }?);
                all.push((key, Arc::clone(&p)));
                p
            }
        }
    };
    let plan = &prepared.cpu.plan;
    let arena = plan.stats.arena_bytes;
    if arena > 0 && (scratch.is_null() || !(scratch as usize).is_multiple_of(64)) {
        return Err(format!(
            "scratch must be {arena} bytes aligned to 64 (got {scratch:p})"
        ));
    }
    let count = |p: usize, what: &str, n: usize| {
        if n > 0 && p == 0 {
            Err(format!("no {what} pointers given"))
        } else {
            Ok(())
        }
    };
    count(inputs as usize, "input", plan.inputs.len())?;
    count(outputs as usize, "output", plan.outputs.len())?;
    // SAFETY: the caller gives one pointer per input and output.
    let (ins, outs) = unsafe {
        (
            std::slice::from_raw_parts(inputs, plan.inputs.len()),
            std::slice::from_raw_parts(outputs, plan.outputs.len()),
        )
    };
    if let Some(i) = ins.iter().position(|p| p.is_null()) {
        return Err(format!("input {i} is NULL"));
    }
    if let Some(j) = outs.iter().position(|p| p.is_null()) {
        return Err(format!("output {j} is NULL"));
    }
    // SAFETY: the caller's contract; `prepare` checked outputs written in place.
    let frame = unsafe { Frame::bind_raw(plan, ins, outs, scratch) };
    frame
        .run(plan, &prepared.cpu.pool, None)
        .map_err(|e| e.to_string())?;
    // SAFETY: as above.
    unsafe { frame.copy_outputs(plan, outs) };
    Ok(())
}
