//! The CPU plan as text: what `lathe dump --format plan` prints and the lowering file tests
//! (`tests/filetests/lower/`) check. One line per step, grouped by wave:
//!
//! ```text
//! cpu plan @mlp: 3 steps, 3 waves, arena 4096 B (lower bound 4096 B), outputs 40 B
//!   wave 0
//!     s0 "dense/MatMul" fused.epilogue: gemm m=1 n=512 k=784 packed +epilogue(tiled) chain(2)
//!         %0 f32[1,784] input 0, %1 f32[784,512] const -> %3 f32[1,512] arena+0
//!   ...
//!   return %9 f32[1,10] output
//! ```
//!
//! `chain(N)` marks a generated kernel (or epilogue) whose body is a straight line of N
//! elementwise stages, run as a wide-vector [`crate::kernels::chain::Chain`].
//!
//! `%N` names a buffer (a typed view of a storage); two buffers with the same place are views of
//! the same bytes (a reshape, or a kernel writing in place). A buffer read twice is listed once.
//!
//! A `while` or `if` step is followed by its regions' sub-plans (`cond` and `body`, or
//! `then_branch` and `else_branch`), indented under it in the same form: what runs per
//! iteration or per branch. Their `input k` and `output k` are the step's slots for value `k`
//! (a loop's current and next carried values); an output printed as `input k` is written in
//! the buffer it came in (no second slot), and their arena offsets are within the step's
//! scratch buffer.

use super::matmul::BatchedGemm;
use super::plan::{Kernel, Plan, StorageKind, Window};
use crate::kernels::generic_window::WindowOp;
use std::fmt::Write as _;

/// Prints `plan` for the graph called `name`.
pub(crate) fn print(plan: &Plan, name: &str) -> String {
    let mut s = String::new();
    print_into(&mut s, plan, &format!("cpu plan @{name}"), "");
    s
}

/// Appends `plan` under the heading `title`, every line indented by `indent` (a region's
/// sub-plan is printed under its step, one level deeper).
fn print_into(s: &mut String, plan: &Plan, title: &str, indent: &str) {
    let st = &plan.stats;
    let _ = write!(
        s,
        "{indent}{title}: {} steps, {} waves, arena {} B (lower bound {} B), outputs {} B",
        st.steps,
        plan.waves.len(),
        st.arena_bytes,
        st.arena_lower_bound,
        st.output_bytes
    );
    if st.region_steps > 0 {
        let _ = write!(s, ", {} steps in regions", st.region_steps);
    }
    s.push('\n');
    for (w, wave) in plan.waves.iter().enumerate() {
        let _ = writeln!(s, "{indent}  wave {w}");
        for i in wave.clone() {
            let step = &plan.steps[i];
            let _ = writeln!(
                s,
                "{indent}    s{i} {:?} {}: {}",
                step.name,
                step.op,
                kernel(plan, &step.kernel)
            );
            let mut reads: Vec<String> = vec![];
            for &b in &step.reads {
                let r = buf(plan, b);
                if !reads.contains(&r) {
                    reads.push(r);
                }
            }
            let writes: Vec<String> = step.writes.iter().map(|&b| buf(plan, b)).collect();
            let _ = writeln!(
                s,
                "{indent}        {} -> {}",
                reads.join(", "),
                writes.join(", ")
            );
            let deeper = format!("{indent}        ");
            match &step.kernel {
                Kernel::While(l) => {
                    print_into(s, &l.cond, "cond", &deeper);
                    print_into(s, &l.body, "body", &deeper);
                }
                Kernel::If(b) => {
                    print_into(s, &b.then_branch, "then_branch", &deeper);
                    print_into(s, &b.else_branch, "else_branch", &deeper);
                }
                _ => {}
            }
        }
    }
    let outs: Vec<String> = plan.outputs.iter().map(|&b| buf(plan, b)).collect();
    let _ = writeln!(s, "{indent}  return {}", outs.join(", "));
}

/// `%3 f32[1,512] arena+0`.
fn buf(plan: &Plan, b: usize) -> String {
    let buf = &plan.bufs[b];
    let dims: Vec<String> = buf.dims.iter().map(usize::to_string).collect();
    let place = match &plan.storages[buf.storage].kind {
        StorageKind::Input(i) => format!("input {i}"),
        StorageKind::Const(_) => "const".to_string(),
        StorageKind::Baked => "baked".to_string(),
        StorageKind::Arena { offset } => format!("arena+{offset}"),
        StorageKind::Output => "output".to_string(),
    };
    format!("%{b} {}[{}] {place}", buf.dtype, dims.join(","))
}

/// ` chain(N)` for a generated kernel that runs as an N-stage wide-vector chain.
fn chain(k: &super::codegen::RowKernel) -> String {
    k.chain()
        .map(|c| format!(" chain({})", c.stages.len()))
        .unwrap_or_default()
}

/// The kernel and its parameters.
fn kernel(plan: &Plan, k: &Kernel) -> String {
    let epilogue = |e: &Option<super::plan::Epilogue>| match e {
        Some(e) => format!(
            " +epilogue({}){}",
            if e.tiled { "tiled" } else { "after" },
            chain(&e.kernel)
        ),
        None => String::new(),
    };
    match k {
        Kernel::Gemm {
            gemm,
            packed,
            epilogue: e,
            ..
        } => format!(
            "gemm m={} n={} k={}{}{}{}",
            gemm.m,
            gemm.n,
            gemm.k,
            batch(gemm),
            if packed.is_some() { " packed" } else { "" },
            epilogue(e)
        ),
        Kernel::Window {
            kernel,
            epilogue: e,
            ..
        } => {
            let what = match kernel {
                Window::Conv(k) if k.is_direct() => "conv direct",
                Window::Conv(_) => "conv",
                Window::Winograd(_) => "conv winograd",
                Window::Depthwise(_) => "depthwise",
                Window::Pool(_) => "pool",
            };
            format!(
                "window {what} rows={} cols={}{}",
                kernel.rows(),
                kernel.cols(),
                epilogue(e)
            )
        }
        Kernel::GenericGemm {
            gemm,
            dtype,
            epilogue: e,
            ..
        } => format!(
            "gemm {dtype} m={} n={} k={}{}{}",
            gemm.m,
            gemm.n,
            gemm.k,
            batch(gemm),
            epilogue(e)
        ),
        Kernel::IntGemm {
            kernel,
            epilogue: e,
            ..
        } => format!(
            "gemm integer m={} n={} k={}{}{}{}",
            kernel.gemm.m,
            kernel.gemm.n,
            kernel.gemm.k,
            batch(&kernel.gemm),
            if kernel.packed.is_some() {
                " packed"
            } else {
                ""
            },
            epilogue(e)
        ),
        Kernel::IntConv {
            kernel,
            epilogue: e,
            ..
        } => format!(
            "window conv integer {} rows={}{}{}",
            kernel.format.name(),
            kernel.rows(),
            if kernel.packed.is_some() {
                " packed"
            } else {
                ""
            },
            epilogue(e)
        ),
        Kernel::Einsum {
            kernel,
            epilogue: e,
            ..
        } => format!("einsum loops {}{}", kernel.dtype, epilogue(e)),
        Kernel::GenericWindow {
            kernel,
            epilogue: e,
            ..
        } => {
            let what = match kernel.op {
                WindowOp::Conv { .. } => "conv",
                WindowOp::Depthwise { .. } => "depthwise",
                WindowOp::MaxPool | WindowOp::AvgPool => "pool",
            };
            format!(
                "window {what} {} {} rows={} cols={}{}",
                kernel.dtype,
                kernel.format.name(),
                kernel.rows(),
                kernel.cols(),
                epilogue(e)
            )
        }
        Kernel::ReduceAxes { kernel, .. } => {
            format!("reduce {} axes={:?}", kernel.dtype, kernel.axes)
        }
        Kernel::Det { kernel, .. } => {
            format!("det {} batch={} n={}", kernel.dtype, kernel.batch, kernel.n)
        }
        Kernel::Dft { kernel, .. } => {
            let t = &kernel.transform;
            format!(
                "dft {} lanes={} n={}{}{}",
                kernel.dtype,
                t.outer * t.inner,
                t.length,
                if t.inverse { " inverse" } else { "" },
                if t.onesided { " onesided" } else { "" }
            )
        }
        Kernel::ArgMax { kernel, .. } => format!(
            "arg_max {} outer={} n={} inner={}",
            kernel.dtype, kernel.outer, kernel.n, kernel.inner
        ),
        Kernel::Rows { kernel, .. } => {
            format!(
                "generated rows={} len={}{}",
                kernel.rows(),
                kernel.row_len(),
                chain(kernel)
            )
        }
        Kernel::Interp { reason, .. } => format!("interp ({reason})"),
        Kernel::SetItem { x, out, .. } => {
            let same = plan.bufs[*x].storage == plan.bufs[*out].storage;
            format!("set_item {}", if same { "in place" } else { "copy" })
        }
        Kernel::While(l) => {
            // Carried values the body reads and writes in one buffer need no second slot.
            let one = l.spare.iter().filter(|s| s.is_none()).count();
            format!(
                "loop carried={} one-buffer={one} scratch={} B",
                l.slots.len(),
                plan.bufs[l.scratch].bytes()
            )
        }
        Kernel::If(b) => format!("branch scratch={} B", plan.bufs[b.scratch].bytes()),
        other => other.kind().to_string(),
    }
}

/// ` batch=N` for a batched product, nothing for one product.
fn batch(gemm: &BatchedGemm) -> String {
    match gemm.batch_count() {
        1 => String::new(),
        n => format!(" batch={n}"),
    }
}
