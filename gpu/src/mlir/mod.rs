//! A graph's kernels as MLIR: one `gpu.func` per computing node (a fused node's body, or a
//! lone op) in a `gpu.module`.
//!
//! Each kernel takes one flat memref per argument and per output, arguments first (with the
//! bare-pointer calling convention of [`ptx_pipeline`], one pointer each), and runs one thread
//! per element of its outputs: thread `blockIdx.x * blockDim.x + threadIdx.x` computes element
//! `i` of every output, guarded by `i < n`, as the value of the body at `i`'s coordinates
//! (`expr`: elementwise ops read their inputs at the same coordinates, broadcast as NumPy
//! does; shape ops at moved ones; reductions, contractions and windows loop over what they
//! sum). f16 and bf16 compute in f32 (rounded once when stored, or at a cast), as the CPU
//! backend does; bool is stored as one byte. Nodes that compute nothing (`identity`, reshapes)
//! are views of their input's buffer.

mod emit;
mod expr;
pub mod host;
mod kernel;
#[cfg(feature = "cuda")]
pub mod native;
mod scalar;

pub use expr::Arg;
pub use kernel::element;
use lathe_ir::{Graph, NodeId, Op, TensorType, ValueId};
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
    /// What its parameters `%a0`, `%a1`, ... are bound to; its outputs (the node's, in
    /// order) follow them.
    pub args: Vec<Arg>,
    /// The types of its outputs.
    pub outputs: Vec<TensorType>,
    /// The same instructions as a host function looping over the elements
    /// (`func.func @symbol`), for running the kernel on the CPU ([`host`]).
    pub host: String,
}

/// A graph's kernels as one MLIR module.
#[derive(Debug, Clone, PartialEq)]
pub struct Lowered {
    /// The module: `module attributes {gpu.container_module} { gpu.module @kernels {...} }`.
    pub text: String,
    pub kernels: Vec<Kernel>,
    /// Nodes that compute nothing: each output is the same buffer as a value of the graph
    /// (`identity`, and `reshape`, `squeeze`, `expand_dims` of a row-major buffer).
    pub views: Vec<(ValueId, ValueId)>,
}

/// Lowers every computing node of `graph` (a specialized graph: every shape known) to a
/// `gpu.func`: a fused node's body, or a lone op. A node that cannot be lowered is an error
/// naming it and its op.
pub fn lower_graph(graph: &Graph) -> Result<Lowered, LowerError> {
    let mut text = String::new();
    let mut kernels = Vec::new();
    let mut views = Vec::new();
    let order = graph.topo_order().map_err(|e| LowerError {
        node: graph.name.clone(),
        op: "graph".into(),
        message: e.to_string(),
    })?;
    for id in order {
        let node = graph.node(id);
        let name = graph.display_name(id);
        let built = match &node.op {
            Op::Input { .. } | Op::Const(_) | Op::NoOp => continue,
            Op::Identity | Op::StopGradient | Op::Reshape | Op::Squeeze { .. } | Op::ExpandDims => {
                views.push((ValueId::first(id), node.inputs[0]));
                continue;
            }
            Op::IdentityN => {
                for (k, v) in node.inputs.iter().enumerate() {
                    let out = ValueId {
                        node: id,
                        output: k as u32,
                    };
                    views.push((out, *v));
                }
                continue;
            }
            Op::Fused { body, .. } => expr::fused(body, &node.inputs),
            _ => expr::lone(graph, id),
        };
        let built = built.map_err(|m| error(&name, &node.op, m))?;
        let symbol = format!("k{}", kernels.len());
        kernel::gpu_func(&mut text, &symbol, &name, &built);
        let mut host = String::new();
        kernel::host_func(&mut host, &symbol, &built);
        kernels.push(Kernel {
            symbol,
            node: id,
            elements: built.elements,
            args: built.args,
            outputs: built.outputs,
            host,
        });
    }
    let text = format!(
        "module attributes {{gpu.container_module}} {{\n  gpu.module @kernels {{\n{text}  }}\n}}\n"
    );
    Ok(Lowered {
        text,
        kernels,
        views,
    })
}

impl Lowered {
    /// The module, then one comment line per view: what `; print: mlir` and a dump show.
    pub fn print(&self, graph: &Graph) -> String {
        let mut out = self.text.clone();
        for (v, of) in &self.views {
            let _ = writeln!(
                out,
                "// `{}` is a view of `{}`",
                value_name(graph, *v),
                value_name(graph, *of)
            );
        }
        out
    }
}

fn value_name(g: &Graph, v: ValueId) -> String {
    let name = g.display_name(v.node);
    if g.node(v.node).outputs.len() > 1 {
        format!("{name}:{}", v.output)
    } else {
        name
    }
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
