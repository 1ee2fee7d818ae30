//! The IR's elementwise kernels as MLIR: one `gpu.func` per kernel in a `gpu.module`.
//!
//! Each kernel takes one flat memref per input and per output, inputs first (with the
//! bare-pointer calling convention of [`ptx_pipeline`], one pointer each), and runs one thread
//! per element of its output: thread `blockIdx.x * blockDim.x + threadIdx.x` computes element
//! `i` of every output, guarded by `i < n`. An input of a smaller (broadcast) shape is read at
//! `i`'s projection onto its dimensions, as NumPy broadcasting reads it; values in between are
//! SSA scalars. f16 and bf16 compute in f32 (rounded once when stored, or at a cast), as the
//! CPU backend does; bool is stored as one byte.

pub mod host;
mod kernel;
mod scalar;

use lathe_ir::ops::FusedKind;
use lathe_ir::{Graph, NodeId, Op};
use std::fmt::Write as _;

/// MLIR's pipeline from a module of [`lower_graph`] to one PTX module per `gpu.module` (as the
/// `assembly` of a `gpu.binary`, read out by [`ptx_of`]), for `chip` (`sm_80`, `sm_90`) with
/// PTX 8.0; its textual form, for `mlir-opt --pass-pipeline` and melior's parser alike. Math
/// functions become calls to libdevice (`__nv_erff`, ...): with `libdevice` (CUDA's
/// `libdevice.10.bc`) they are linked in, so that `ptxas` can assemble the module alone.
pub fn ptx_pipeline(chip: &str, libdevice: Option<&std::path::Path>) -> String {
    let link = libdevice.map_or(String::new(), |l| format!(" l={}", l.display()));
    format!(
        "builtin.module(gpu.module(convert-scf-to-cf,\
         convert-gpu-to-nvvm{{use-bare-ptr-memref-call-conv=1}},reconcile-unrealized-casts),\
         nvvm-attach-target{{chip={chip} features=+ptx80{link}}},gpu-module-to-binary{{format=isa}})"
    )
}

/// The PTX text of the first `gpu.binary` in the output of [`ptx_pipeline`]: its `assembly`
/// string, with MLIR's `\XX` escapes undone.
pub fn ptx_of(binary_module: &str) -> Option<String> {
    let start = binary_module.find("assembly = \"")? + "assembly = \"".len();
    let bytes = &binary_module.as_bytes()[start..];
    let mut out = Vec::new();
    let mut k = 0;
    while k < bytes.len() {
        match bytes[k] {
            b'"' => return String::from_utf8(out).ok(),
            b'\\' if k + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[k + 1..k + 3]).ok()?;
                match u8::from_str_radix(hex, 16) {
                    Ok(0) => {}
                    Ok(b) => out.push(b),
                    // `\\` and `\"`: the character itself.
                    Err(_) => {
                        out.push(bytes[k + 1]);
                        k += 2;
                        continue;
                    }
                }
                k += 3;
            }
            b => {
                out.push(b);
                k += 1;
            }
        }
    }
    None
}

/// Why a node could not be lowered: the node, its op, what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("node `{node}` (op {op}): {message}")]
pub struct LowerError {
    pub node: String,
    pub op: String,
    pub message: String,
}

/// One kernel of a lowered graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// The `gpu.func`'s symbol (`k0`, `k1`, ... in graph order).
    pub symbol: String,
    /// The graph node it computes.
    pub node: NodeId,
    /// Elements of each output: the threads the kernel is launched with.
    pub elements: usize,
    /// What it computes: a graph whose inputs are the kernel's inputs and whose outputs are
    /// its outputs (a fused node's body, or a lone op's).
    pub body: Graph,
    /// The same instructions as a host function looping over the elements
    /// (`func.func @symbol`), for running the kernel on the CPU ([`host`]).
    pub host: String,
}

/// A graph's kernels as one MLIR module, and what was left out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lowered {
    /// The module: `module attributes {gpu.container_module} { gpu.module @kernels {...} }`.
    pub text: String,
    pub kernels: Vec<Kernel>,
    /// Nodes that are kernels of another kind (contractions, reductions, data movement), not
    /// lowered by this backend yet: each node's name and op.
    pub skipped: Vec<(String, String)>,
}

/// Lowers every elementwise kernel of `graph` (a `fused.elementwise` node, or a lone
/// elementwise op) to a `gpu.func`. Every shape must be known (a specialized graph). Other
/// computing nodes are listed in [`Lowered::skipped`]; a node that is an elementwise kernel but
/// cannot be lowered (an integer op, a non-scalar constant in its body) is an error naming it.
pub fn lower_graph(graph: &Graph) -> Result<Lowered, LowerError> {
    let mut text = String::new();
    let mut kernels = Vec::new();
    let mut skipped = Vec::new();
    let order = graph.topo_order().map_err(|e| LowerError {
        node: graph.name.clone(),
        op: "graph".into(),
        message: e.to_string(),
    })?;
    for id in order {
        let node = graph.node(id);
        let name = graph.display_name(id);
        match &node.op {
            Op::Input { .. } | Op::Const(_) | Op::Identity | Op::NoOp => {}
            Op::Fused {
                kind: FusedKind::Elementwise,
                body: fused,
            } => {
                let k = kernel(&mut text, kernels.len(), id, &name, (**fused).clone())
                    .map_err(|m| error(&name, &node.op, m))?;
                kernels.push(k);
            }
            op if kernel::is_elementwise(op) => {
                let alone = kernel::single_op_body(graph, id).map_err(|m| error(&name, op, m))?;
                let k = kernel(&mut text, kernels.len(), id, &name, alone)
                    .map_err(|m| error(&name, op, m))?;
                kernels.push(k);
            }
            op => skipped.push((name, op.mnemonic().to_string())),
        }
    }
    let text = format!(
        "module attributes {{gpu.container_module}} {{\n  gpu.module @kernels {{\n{text}  }}\n}}\n"
    );
    Ok(Lowered {
        text,
        kernels,
        skipped,
    })
}

impl Lowered {
    /// The module with one comment line per skipped node after it: what `; print: mlir` and a
    /// dump show.
    pub fn print(&self) -> String {
        let mut out = self.text.clone();
        for (name, op) in &self.skipped {
            let _ = writeln!(out, "// not lowered to MLIR yet: node `{name}` (op {op})");
        }
        out
    }
}

/// Kernel number `k`, node `id` named `name`, computing `body`: its `gpu.func` written to
/// `gpu`, its host function kept.
fn kernel(
    gpu: &mut String,
    k: usize,
    id: NodeId,
    name: &str,
    body: Graph,
) -> Result<Kernel, String> {
    let symbol = format!("k{k}");
    let b = kernel::body(&symbol, &body)?;
    kernel::gpu_func(gpu, &symbol, name, &b);
    let mut host = String::new();
    kernel::host_func(&mut host, &symbol, &b);
    Ok(Kernel {
        symbol,
        node: id,
        elements: b.elements,
        body,
        host,
    })
}

fn error(node: &str, op: &Op, message: String) -> LowerError {
    LowerError {
        node: node.to_string(),
        op: op.mnemonic().to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(text: &str) -> Result<Lowered, LowerError> {
        let g = lathe_ir::text::parse(text).expect("parses");
        lathe_ir::verify(&g).expect("verifies");
        lower_graph(&g)
    }

    #[test]
    fn an_op_not_lowered_is_an_error_naming_the_node() {
        let e = lower(
            "graph @t(%x: i32[4]) -> (\"y\": i32[4]) {\n  %0 = div(%x, %x) : i32[4] loc(\"d\")\n  return %0\n}\n",
        )
        .unwrap_err();
        assert_eq!(e.node, "d");
        assert_eq!(e.op, "div");
        assert!(e.message.contains("div of integers is not lowered"), "{e}");
    }

    #[test]
    fn unknown_shapes_are_refused() {
        let e = lower(
            "graph @t(%x: f32[?]) -> (\"y\": f32[?]) {\n  %0 = exp(%x) : f32[?] loc(\"e\")\n  return %0\n}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("lower a specialized graph"), "{e}");
    }

    #[test]
    fn ptx_is_read_out_of_a_gpu_binary() {
        let binary = r#"gpu.binary @kernels  [#gpu.object<#nvvm.target<chip = "sm_90">, assembly = "//\0A.version 8.0\0A\09.entry k0(\22a\22)\0A\00">]"#;
        assert_eq!(
            ptx_of(binary).as_deref(),
            Some("//\n.version 8.0\n\t.entry k0(\"a\")\n")
        );
        assert_eq!(ptx_of("module {}"), None);
    }

    #[test]
    fn float_constants_are_valid_mlir_literals() {
        use scalar_text as t;
        assert_eq!(t(1e-7, false), "1.0e-7");
        assert_eq!(t(0.5, false), "0.5");
        assert_eq!(t(f64::INFINITY, false), "0x7F800000");
        assert_eq!(t(f64::NAN, true), format!("0x{:016X}", f64::NAN.to_bits()));
    }

    fn scalar_text(v: f64, wide: bool) -> String {
        scalar::float_text(
            v,
            if wide {
                scalar::Compute::F64
            } else {
                scalar::Compute::F32
            },
        )
    }
}
