//! Lowering: a specialized, optimized graph becomes a [`Plan`] of kernel calls.
//!
//! Nodes are visited in topological order and each picks its kernel:
//!
//! | node | kernel |
//! |---|---|
//! | matmul / batch_matmul / einsum, alone or anchoring a `fused.epilogue` | strided batched GEMM, tail generated |
//! | conv2d / depthwise_conv2d, alone or anchoring one; max_pool, avg_pool | window kernel, tail generated |
//! | matmul_integer / conv2d_integer, alone or anchoring one | integer GEMM (after im2col), tail generated |
//! | `fused.elementwise`, `fused.reduction` | one generated function (Cranelift) |
//! | lone elementwise ops, softmax, last-axis reductions | one generated function |
//! | other reductions | f32 middle-axes kernel, or the strided kernel for any axes and dtype |
//! | arg_max | arg-max kernel |
//! | det | LU determinant kernel (f64, the interpreter's factoring) |
//! | grid_sample, roi_align, col2im | image kernels (`lower/image.rs`, the interpreter's own geometry) |
//! | dft | Fourier transform kernel (f64, the interpreter's FFT or direct sum) |
//! | gather_elements, gather_nd, scatters, trilu, cumsum, cumprod, top_k | indexing kernels (`lower/indexing.rs`) |
//! | reshape, squeeze, expand_dims, identity | nothing: a new view of the same storage |
//! | list_reserve, set_item | a zero fill; a bounds-checked row write (in place when the list dies there) |
//! | while, if | each region compiled once into a sub-plan of its own (`regions.rs`) |
//! | anything else (or a kernel that declines) | the reference interpreter on that op |
//!
//! GEMMs and windows have tuned kernels for f32 (NHWC, a constant filter); every other dtype
//! and form runs the dtype-generic ones, and an einsum that is no batch of GEMMs runs loops.
//!
//! The interpreter fallback keeps every graph runnable and correct; `PlanStats::interp_steps`
//! says how much of a model it covers, and each fallback logs why at debug level.
//!
//! After the steps come the storage decisions: graph outputs are written straight into the
//! tensors handed to the caller, a generated kernel writes over an input that dies at that
//! step (in place), and the rest get arena offsets from the memory plan.

use super::capability::CpuCapabilities;
use super::codegen::support;
use super::codegen::RowKernel;
use super::error::CpuError;
use super::matmul::BatchedGemm;
use super::memory::{self, Lifetime};
use super::movement;
use super::plan::*;
use crate::kernels::argmax::ArgMax;
use crate::kernels::conv::Conv2d;
use crate::kernels::depthwise::DepthwiseConv2d;
use crate::kernels::det::Det;
use crate::kernels::dft::Dft;
use crate::kernels::einsum::EinsumLoops;
use crate::kernels::generic_window::GenericWindow;
use crate::kernels::packed::PackedB;
use crate::kernels::pool::{Pool2d, PoolKind};
use crate::kernels::reduce::MiddleReduce;
use crate::kernels::reduce_axes::ReduceAxes;
use crate::kernels::winograd::{self, Winograd3x3};
use lathe_ir::ops::{ConvAttrs, DataFormat};
use lathe_ir::ops::{FusedKind, Op};
use lathe_ir::{Capabilities, DType, Graph, Native, NodeId, Tensor, TensorType, ValueId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

mod image;
mod indexing;
mod integer;
mod regions;
mod release;

pub(super) use regions::one_buffer;

/// Lowers `g` (every shape known) to a plan.
///
/// Lowering owns the graph so that it can let go of each weight as soon as the kernels that
/// use it hold it packed (see `release.rs`).
pub fn lower(g: Graph) -> Result<Plan, CpuError> {
    lower_graph(g, false)
}

/// Lowers `g`; with `carried`, `g` is a loop body whose output `k` is the next value of its
/// input `k`, and output `k` may share input `k`'s buffer (see `regions.rs`).
fn lower_graph(mut g: Graph, carried: bool) -> Result<Plan, CpuError> {
    let mut b = Builder::default();
    let mut release = release::Release::new(&g);
    let order = g.topo_order().map_err(CpuError::Graph)?;
    for id in order {
        let first = b.storages.len();
        b.node(&g, id)?;
        let created = first..b.storages.len();
        release.after_node(&mut g, id, &mut b, created);
    }
    for (j, out) in g.outputs().iter().enumerate() {
        if !(carried && b.passes_through(j, out.value)) {
            b.claim_output(j, out.value);
        }
    }
    b.in_place();
    if carried {
        b.carry_in_place();
    }
    Ok(b.finish())
}

#[derive(Default)]
struct Builder {
    storages: Vec<Storage>,
    bufs: Vec<Buf>,
    steps: Vec<Step>,
    values: HashMap<ValueId, BufId>,
    inputs: Vec<BufId>,
    outputs: Vec<BufId>,
    /// Storages already handed to a graph output.
    claimed: Vec<bool>,
    /// Values that are views of another value's bytes (no step).
    views: usize,
    /// `while` and `if` steps so far: the next one's index among the frame's bound regions.
    regions: usize,
}

fn dims_of(ty: &TensorType, what: &str) -> Result<Vec<usize>, String> {
    ty.shape
        .as_known()
        .ok_or_else(|| format!("{what} has shape {} (not specialized)", ty.shape))
}

impl Builder {
    fn new_storage(&mut self, kind: StorageKind, bytes: usize) -> usize {
        self.storages.push(Storage { kind, bytes });
        self.claimed.push(false);
        self.storages.len() - 1
    }

    fn new_buf(&mut self, storage: usize, dtype: DType, dims: Vec<usize>) -> BufId {
        self.bufs.push(Buf {
            storage,
            offset: 0,
            dtype,
            dims,
        });
        self.bufs.len() - 1
    }

    /// A fresh arena buffer for a value of type `ty`.
    fn fresh(&mut self, ty: &TensorType, what: &str) -> Result<BufId, String> {
        let dims = dims_of(ty, what)?;
        let bytes = dims.iter().product::<usize>() * ty.dtype.size_bytes();
        let s = self.new_storage(StorageKind::Arena { offset: 0 }, bytes);
        Ok(self.new_buf(s, ty.dtype, dims))
    }

    /// Node `id`'s value is the constant `t`, owned by the plan.
    fn constant(&mut self, id: NodeId, t: Tensor) {
        let t = Arc::new(t.into_standard_layout());
        let s = self.new_storage(StorageKind::Const(t.clone()), t.size_bytes());
        let buf = self.new_buf(s, t.dtype(), t.shape().to_vec());
        self.values.insert(ValueId::first(id), buf);
    }

    fn buf(&self, v: ValueId) -> BufId {
        self.values[&v]
    }

    /// Gives node `id` its buffers and, unless it is a view or a constant, its step.
    fn node(&mut self, g: &Graph, id: NodeId) -> Result<(), CpuError> {
        let node = g.node(id);
        let name = g.display_name(id);
        let at = |message: String| CpuError::Lower {
            node: name.clone(),
            op: node.op.mnemonic().to_string(),
            message,
        };
        match &node.op {
            Op::Input { index } => {
                let dims = dims_of(&node.outputs[0], "input").map_err(at)?;
                let bytes = dims.iter().product::<usize>() * node.outputs[0].dtype.size_bytes();
                let s = self.new_storage(StorageKind::Input(*index), bytes);
                let buf = self.new_buf(s, node.outputs[0].dtype, dims);
                self.inputs.push(buf);
                self.values.insert(ValueId::first(id), buf);
                return Ok(());
            }
            Op::Const(t) => {
                let buf = self.const_buf(t);
                self.values.insert(ValueId::first(id), buf);
                return Ok(());
            }
            Op::Shape { output } => {
                // Every shape is known: the result is a constant of the plan.
                let dims = dims_of(g.value_type(node.inputs[0]), "input").map_err(at)?;
                let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                self.constant(id, Tensor::from_i64(*output, &[dims.len()], &dims));
                return Ok(());
            }
            Op::Range => {
                // With constant start, limit and delta the range is a constant of the plan (too
                // large to have been folded). Otherwise (`-O0`, computed bounds) it goes the
                // general way below, where it has no kernel yet.
                let args: Option<Vec<&Tensor>> =
                    node.inputs.iter().map(|v| g.const_value(*v)).collect();
                if let Some(args) = args {
                    let t = node.op.eval(&args).map_err(at)?.remove(0);
                    self.constant(id, t);
                    return Ok(());
                }
            }
            _ => {}
        }
        let in_dtypes: Vec<DType> = node.inputs.iter().map(|v| g.value_type(*v).dtype).collect();
        if let Ok(Native::View) = CpuCapabilities.native(&node.op, &in_dtypes) {
            // Output k is a new view of input k's bytes (of input 0 for single-output ops).
            for (k, ty) in node.outputs.iter().enumerate() {
                let src = self.buf(node.inputs[if node.inputs.len() > 1 { k } else { 0 }]);
                let dims = dims_of(ty, "output").map_err(at)?;
                let (storage, offset) = (self.bufs[src].storage, self.bufs[src].offset);
                let buf = self.new_buf(storage, ty.dtype, dims);
                self.bufs[buf].offset = offset;
                self.values.insert(
                    ValueId {
                        node: id,
                        output: k as u32,
                    },
                    buf,
                );
                self.views += 1;
            }
            return Ok(());
        }
        let outputs = node
            .outputs
            .iter()
            .map(|t| self.fresh(t, "output"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at)?;
        for (i, &o) in outputs.iter().enumerate() {
            self.values.insert(
                ValueId {
                    node: id,
                    output: i as u32,
                },
                o,
            );
        }
        let inputs: Vec<BufId> = node.inputs.iter().map(|v| self.buf(*v)).collect();
        if matches!(node.op, Op::While { .. } | Op::If { .. }) {
            // Regions always compile (a member without a kernel is an interpreter step inside
            // its sub-plan, counted there); a region that cannot compile is an error.
            return self.region_step(g, id, inputs, outputs);
        }
        let kernel = match self.kernel(g, id, &inputs, &outputs) {
            Ok(Kernel::Move { fills, parts }) if node.op == Op::Concat => Kernel::Move {
                fills,
                parts: self.concat_in_place(parts, outputs[0]),
            },
            Ok(k) => k,
            Err(reason) => {
                tracing::debug!(node = %name, op = node.op.mnemonic(), %reason, "interpreter fallback");
                Kernel::Interp {
                    op: node.op.clone(),
                    inputs: inputs.clone(),
                    outputs: outputs.clone(),
                    reason,
                }
            }
        };
        // An anchor's step reads its operands and what its tail reads besides the anchor's
        // result (a tuned kernel's constant filter is not read: the kernel holds it).
        let with_tail = |mut r: Vec<BufId>, e: &Option<Epilogue>| {
            r.extend(e.iter().flat_map(|e| e.inputs.iter().skip(1)));
            r
        };
        let reads = match &kernel {
            Kernel::Gemm { a, b, epilogue, .. } | Kernel::GenericGemm { a, b, epilogue, .. } => {
                with_tail(vec![*a, *b], epilogue)
            }
            Kernel::Einsum {
                inputs, epilogue, ..
            } => with_tail(inputs.clone(), epilogue),
            Kernel::Window { x, epilogue, .. } => with_tail(vec![*x], epilogue),
            Kernel::GenericWindow {
                x,
                filter,
                epilogue,
                ..
            } => with_tail([*x].into_iter().chain(*filter).collect(), epilogue),
            // Packed weights are held by the kernel, not read.
            Kernel::IntGemm {
                kernel,
                a,
                b,
                a_zp,
                b_zp,
                epilogue,
                ..
            } => {
                let b = Some(*b).filter(|_| kernel.packed.is_none());
                with_tail([*a, *a_zp, *b_zp].into_iter().chain(b).collect(), epilogue)
            }
            Kernel::IntConv {
                kernel,
                x,
                filter,
                x_zp,
                filter_zp,
                epilogue,
                ..
            } => {
                let f = Some(*filter).filter(|_| kernel.packed.is_none());
                with_tail(
                    [*x, *x_zp, *filter_zp].into_iter().chain(f).collect(),
                    epilogue,
                )
            }
            _ => inputs.clone(),
        };
        // An anchor whose result is none of the node's outputs writes a buffer of its own.
        let mut writes = outputs;
        if let Kernel::Gemm { c, .. }
        | Kernel::GenericGemm { c, .. }
        | Kernel::IntGemm { c, .. }
        | Kernel::Einsum { out: c, .. }
        | Kernel::Window { out: c, .. }
        | Kernel::GenericWindow { out: c, .. }
        | Kernel::IntConv { out: c, .. } = &kernel
        {
            if !writes.contains(c) {
                writes.push(*c);
            }
        }
        let work = kernel.work(&self.bufs);
        self.steps.push(Step {
            name,
            op: OpName(node.op.mnemonic()),
            kernel,
            reads,
            writes,
            work,
        });
        Ok(())
    }

    /// The compiled kernel for a node, or why there is none.
    fn kernel(
        &mut self,
        g: &Graph,
        id: NodeId,
        inputs: &[BufId],
        outputs: &[BufId],
    ) -> Result<Kernel, String> {
        let node = g.node(id);
        let in_tys: Vec<&TensorType> = node.inputs.iter().map(|v| g.value_type(*v)).collect();
        let in_dtypes: Vec<DType> = in_tys.iter().map(|t| t.dtype).collect();
        // The one capability query decides whether the op is native here at all; the match
        // below only builds the kernel it names.
        let route = CpuCapabilities.native(&node.op, &in_dtypes)?;
        let moves = [
            Native::Kernel("copy"),
            Native::Kernel("gather"),
            Native::Kernel("generate"),
        ];
        if moves.contains(&route) {
            let operands = movement::Operands {
                bufs: &self.bufs,
                inputs,
                outputs,
                consts: node.inputs.iter().map(|v| g.const_value(*v)).collect(),
            };
            return movement::lower(&node.op, &operands);
        }
        match &node.op {
            Op::Fused {
                kind: FusedKind::Epilogue,
                body,
            } => self.epilogue(body, inputs, outputs),
            Op::Fused { body, .. } => match RowKernel::compile(body) {
                Ok(kernel) => Ok(Kernel::Rows {
                    kernel,
                    inputs: inputs.to_vec(),
                    outputs: outputs.to_vec(),
                }),
                Err(e) => match (lone_reduce(body), inputs, outputs) {
                    (Some(reduce), &[x], &[out]) => Ok(reduce.kernel(x, out)),
                    _ => Err(e.to_string()),
                },
            },
            Op::MatMul { .. } | Op::BatchMatMul { .. } | Op::Einsum { .. } => {
                self.product(&node.op, inputs, outputs[0], None)
            }
            Op::MatMulInteger | Op::Conv2DInteger(_) => {
                let weights = [1, 3].map(|i| node.inputs.get(i).and_then(|v| g.const_value(*v)));
                match &node.op {
                    Op::MatMulInteger => self.int_matmul(inputs, weights, outputs[0], None),
                    op => self.int_conv(op, inputs, weights, outputs[0], None),
                }
            }
            Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::MaxPool(_) | Op::AvgPool(_) => {
                let filter = node.inputs.get(1).map(|v| g.value_type(*v));
                let filter_value = node.inputs.get(1).and_then(|v| g.const_value(*v));
                let kernel = window(&node.op, in_tys[0], filter, filter_value)?;
                Ok(kernel.step(inputs[0], inputs.get(1).copied(), outputs[0], None))
            }
            Op::Cast { to } | Op::CastUnsaturated { to } if route == Native::Kernel("convert") => {
                let len = dims_of(in_tys[0], "input")?.iter().product();
                Ok(Kernel::Convert {
                    kernel: crate::kernels::convert::Convert {
                        from: in_tys[0].dtype,
                        to: *to,
                        saturate: matches!(node.op, Op::Cast { .. }),
                        len,
                    },
                    x: inputs[0],
                    out: outputs[0],
                })
            }
            _ if route == Native::Kernel("image") => {
                let out_tys: Vec<&TensorType> = node.outputs.iter().collect();
                Ok(Kernel::Image {
                    kernel: image::kernel(&node.op, &in_tys, &out_tys)?,
                    inputs: inputs.to_vec(),
                    outputs: outputs.to_vec(),
                })
            }
            _ if route == Native::Kernel("indexing") => {
                let out_tys: Vec<&TensorType> = node.outputs.iter().collect();
                Ok(Kernel::Indexing {
                    kernel: indexing::kernel(&node.op, &in_tys, &out_tys)?,
                    inputs: inputs.to_vec(),
                    outputs: outputs.to_vec(),
                })
            }
            Op::Det => Ok(Kernel::Det {
                kernel: Det::new(in_tys[0])?,
                x: inputs[0],
                out: outputs[0],
            }),
            Op::Dft { .. } => Ok(Kernel::Dft {
                kernel: Dft::new(&node.op, in_tys[0])?,
                x: inputs[0],
                out: outputs[0],
            }),
            Op::ArgMax { .. } => {
                let dims = dims_of(in_tys[0], "input")?;
                let axis = node
                    .inputs
                    .get(1)
                    .and_then(|v| g.const_value(*v))
                    .and_then(|t| t.to_i64_vec().ok())
                    .and_then(|v| v.first().copied())
                    .ok_or("the axis is not a constant")?;
                let axis = lathe_ir::ops::common::normalize_axis(axis, dims.len())?;
                Ok(Kernel::ArgMax {
                    kernel: ArgMax::new(&node.op, in_tys[0], axis)?,
                    x: inputs[0],
                    out: outputs[0],
                })
            }
            op if matches!(op.family(), lathe_ir::ops::Family::Elementwise)
                || matches!(
                    op,
                    Op::Softmax
                        | Op::LogSoftmax
                        | Op::Reduce { .. }
                        | Op::BiasAdd { .. }
                        | Op::FusedBatchNorm { .. }
                ) =>
            {
                // A reduction of a run of trailing axes (the last one, with or without
                // `keep_dims`, or all of them) is the last axis of its input viewed as
                // `[outer, inner]`: the same bytes, in the form generated code takes.
                let (body, used) = match trailing_reduce_body(g, id) {
                    Some(flat) => flat,
                    None => single_op_body(g, id)?,
                };
                if let (Some(reduce), [x]) = (lone_reduce(&body), used.as_slice()) {
                    return Ok(reduce.kernel(inputs[*x], outputs[0]));
                }
                Ok(Kernel::Rows {
                    kernel: RowKernel::compile(&body).map_err(|e| e.to_string())?,
                    inputs: used.iter().map(|&i| inputs[i]).collect(),
                    outputs: outputs.to_vec(),
                })
            }
            Op::Pad {
                mode: lathe_ir::ops::PadMode::Constant,
            } if in_tys[0].dtype == DType::F32 => {
                let pads = node
                    .inputs
                    .get(1)
                    .and_then(|v| g.const_value(*v))
                    .and_then(|t| t.to_i64_vec().ok())
                    .ok_or("the paddings are not a constant")?;
                let value = match node.inputs.get(2) {
                    None => 0.0,
                    Some(v) => g
                        .const_value(*v)
                        .and_then(|t| t.to_f64_vec().first().copied())
                        .ok_or("the pad value is not a constant")?
                        as f32,
                };
                let in_dims = self.bufs[inputs[0]].dims.clone();
                let amount = |i: usize| usize::try_from(pads[i]).map_err(|_| "negative padding");
                let kernel = crate::kernels::pad::ConstPad {
                    before: (0..in_dims.len())
                        .map(|a| amount(2 * a))
                        .collect::<Result<_, _>>()?,
                    after: (0..in_dims.len())
                        .map(|a| amount(2 * a + 1))
                        .collect::<Result<_, _>>()?,
                    in_dims,
                    value,
                };
                if kernel.out_dims() != self.bufs[outputs[0]].dims
                    || pads.len() != 2 * kernel.in_dims.len()
                {
                    return Err("paddings do not match the output shape".into());
                }
                Ok(Kernel::Pad {
                    kernel,
                    x: inputs[0],
                    out: outputs[0],
                })
            }
            _ => Err("no compiled kernel for this op".into()),
        }
    }

    /// A `fused.epilogue`: the anchor's kernel writing into the buffer the tail then updates in
    /// place, tile by tile.
    fn epilogue(
        &mut self,
        body: &Graph,
        inputs: &[BufId],
        outputs: &[BufId],
    ) -> Result<Kernel, String> {
        let split = split_epilogue(body)?;
        let anchor = body.node(split.anchor);
        let operand = |v: ValueId| -> Result<BufId, String> {
            match &body.node(v.node).op {
                Op::Input { index } => Ok(inputs[*index]),
                _ => Err("anchor operand is neither a body input nor a constant".into()),
            }
        };
        let anchor_ty = &anchor.outputs[0];
        // The anchor writes into the body output it is, else into the tail's first output
        // (which the tail then overwrites in place) when that has the anchor's dtype, else
        // into a buffer of its own (a cast in the tail).
        let c = match split.anchor_output {
            Some(j) => outputs[j],
            None => match outputs[split.tail_outputs[0]] {
                t if self.bufs[t].dtype == anchor_ty.dtype => t,
                _ => self.fresh(anchor_ty, "anchor")?,
            },
        };
        if dims_of(anchor_ty, "anchor")? != self.bufs[c].dims {
            return Err("the anchor's result and the fused output differ in shape".into());
        }
        let epilogue = match &split.tail {
            None => None,
            Some(tail) => {
                let kernel = RowKernel::compile(tail).map_err(|e| format!("epilogue: {e}"))?;
                let mut ins = vec![c];
                ins.extend_from_slice(inputs);
                let outs: Vec<BufId> = split.tail_outputs.iter().map(|&j| outputs[j]).collect();
                Some(Epilogue {
                    kernel,
                    inputs: ins,
                    outputs: outs,
                    tiled: false,
                })
            }
        };
        match &anchor.op {
            Op::MatMul { .. } | Op::BatchMatMul { .. } | Op::Einsum { .. } => {
                let operands = anchor
                    .inputs
                    .iter()
                    .map(|&v| self.operand_or_const(body, v, &operand))
                    .collect::<Result<Vec<_>, _>>()?;
                self.product(&anchor.op, &operands, c, epilogue)
            }
            Op::Conv2D(_) | Op::DepthwiseConv2D(_) => {
                let &[x, f] = anchor.inputs.as_slice() else {
                    return Err("a convolution needs an input and a filter".into());
                };
                let kernel = window(
                    &anchor.op,
                    body.value_type(x),
                    Some(body.value_type(f)),
                    body.const_value(f),
                )?;
                let x = operand(x)?;
                // The tuned kernels hold the filter; the generic one reads it.
                let filter = match kernel {
                    WindowKernel::Tuned(_) => None,
                    WindowKernel::Generic(_) => Some(self.operand_or_const(body, f, &operand)?),
                };
                Ok(kernel.step(x, filter, c, epilogue))
            }
            Op::MatMulInteger | Op::Conv2DInteger(_) => {
                let operands = anchor
                    .inputs
                    .iter()
                    .map(|&v| self.operand_or_const(body, v, &operand))
                    .collect::<Result<Vec<_>, _>>()?;
                let weights =
                    [1, 3].map(|i| anchor.inputs.get(i).and_then(|v| body.const_value(*v)));
                match &anchor.op {
                    Op::MatMulInteger => self.int_matmul(&operands, weights, c, epilogue),
                    op => self.int_conv(op, &operands, weights, c, epilogue),
                }
            }
            other => Err(format!(
                "no kernel for epilogue anchor {}",
                other.mnemonic()
            )),
        }
    }

    /// A matrix product into `c` (`op` a matmul, batch_matmul or einsum): the tuned GEMM for
    /// f32 (B packed when it is a constant), the generic one for the other dtypes, an einsum
    /// that is no batch of GEMMs by its definition; then the epilogue, tile by tile when the
    /// tuned GEMM's rows are the tail's rows.
    fn product(
        &mut self,
        op: &Op,
        operands: &[BufId],
        c: BufId,
        epilogue: Option<Epilogue>,
    ) -> Result<Kernel, String> {
        let gemm = match operands {
            &[a, b] => BatchedGemm::from_op(
                op,
                &self.bufs[a].dims,
                &self.bufs[b].dims,
                &self.bufs[c].dims,
            ),
            _ => Err("a GEMM has two operands".into()),
        };
        let gemm = match (gemm, op) {
            (Ok(gemm), _) => gemm,
            (Err(_), Op::Einsum { equation }) => {
                let types: Vec<TensorType> = operands
                    .iter()
                    .map(|&b| TensorType::known(self.bufs[b].dtype, &self.bufs[b].dims))
                    .collect();
                return Ok(Kernel::Einsum {
                    kernel: EinsumLoops::new(equation, &types.iter().collect::<Vec<_>>())?,
                    inputs: operands.to_vec(),
                    out: c,
                    epilogue,
                });
            }
            (Err(e), _) => return Err(e),
        };
        let (a, b) = (operands[0], operands[1]);
        let dtype = self.bufs[a].dtype;
        if self.bufs[b].dtype != dtype || self.bufs[c].dtype != dtype {
            return Err("the operands and the result of a product differ in dtype".into());
        }
        if dtype != DType::F32 {
            crate::kernels::numeric::check_numeric(op.mnemonic(), dtype)?;
            return Ok(Kernel::GenericGemm {
                gemm,
                dtype,
                a,
                b,
                c,
                epilogue,
            });
        }
        let cols = *self.bufs[c].dims.last().unwrap_or(&1);
        let rows = self.bufs[c].len() / cols.max(1);
        let mut epilogue = epilogue;
        if let Some(e) = epilogue.as_mut() {
            e.tiled =
                gemm.c_is_dense_rows() && e.kernel.rows() == rows && e.kernel.row_len() == cols;
        }
        let packed = self.pack(&gemm, b);
        Ok(Kernel::Gemm {
            gemm,
            a,
            b,
            packed,
            c,
            epilogue,
        })
    }

    /// B packed for the GEMM kernel, when it is a constant f32 matrix shared by every GEMM of
    /// the batch (weights). A matrix-vector product reads it packed too: its panels are
    /// contiguous streams, where B's own rows may share cache sets.
    fn pack(&self, gemm: &BatchedGemm, b: BufId) -> Option<Arc<PackedB>> {
        let StorageKind::Const(t) = &self.storages[self.bufs[b].storage].kind else {
            return None;
        };
        if gemm.batch.iter().any(|l| l.1[1] != 0) {
            return None;
        }
        let data = t.as_array::<f32>()?.as_slice()?;
        Some(Arc::new(PackedB::new(crate::kernels::MatRef {
            data,
            rows: gemm.k,
            cols: gemm.n,
            strides: gemm.b,
        })))
    }

    /// A buffer for an anchor operand: the node input it is, or a constant of the body.
    fn operand_or_const(
        &mut self,
        body: &Graph,
        v: ValueId,
        operand: &dyn Fn(ValueId) -> Result<BufId, String>,
    ) -> Result<BufId, String> {
        if let Op::Const(t) = &body.node(v.node).op {
            return Ok(self.const_buf(t));
        }
        operand(v)
    }

    /// A buffer holding constant `t`: the graph's own tensor when it is already in standard
    /// layout (shared, not copied), else a standard-layout copy.
    fn const_buf(&mut self, t: &Arc<lathe_ir::Tensor>) -> BufId {
        let t = if t.is_standard_layout() {
            Arc::clone(t)
        } else {
            Arc::new((**t).clone().into_standard_layout())
        };
        let s = self.new_storage(StorageKind::Const(Arc::clone(&t)), t.size_bytes());
        self.new_buf(s, t.dtype(), t.shape().to_vec())
    }

    /// A concat whose members are contiguous slices of its output (the outer size before the
    /// axis is 1) has each member's producer write straight into its slice: the member's
    /// storage moves into the concat's, and its copy disappears. Returns the copies left.
    ///
    /// A member moves only when it owns a whole arena storage that nothing has placed yet
    /// (not a graph input, constant, or another concat's slice), and its slice starts on an
    /// `ALIGN`ed byte, as every kernel's output does.
    fn concat_in_place(&mut self, parts: Vec<MovePart>, out: BufId) -> Vec<MovePart> {
        let so = self.bufs[out].storage;
        let mut left = vec![];
        for part in parts {
            let m = part.src;
            let sm = self.bufs[m].storage;
            let slice = part
                .copy
                .contiguous_offset()
                .map(|e| e * self.bufs[m].dtype.size_bytes());
            let movable = matches!(self.storages[sm].kind, StorageKind::Arena { .. })
                && sm != so
                && self.bufs[m].offset == 0
                && self.bufs[m].bytes() == self.storages[sm].bytes
                && self.bufs[m].bytes() > 0;
            match slice {
                Some(offset) if movable && offset % memory::ALIGN == 0 => {
                    for b in &mut self.bufs {
                        if b.storage == sm {
                            b.storage = so;
                            b.offset += offset;
                        }
                    }
                    self.views += 1;
                }
                _ => left.push(part),
            }
        }
        left
    }

    /// Graph output `j` is `v`: its storage becomes the output tensor when that is safe,
    /// else a copy step fills a fresh one.
    fn claim_output(&mut self, j: usize, v: ValueId) {
        let buf = self.buf(v);
        let s = self.bufs[buf].storage;
        let is_arena = matches!(self.storages[s].kind, StorageKind::Arena { .. });
        let whole = self.bufs[buf].offset == 0 && self.bufs[buf].bytes() == self.storages[s].bytes;
        if is_arena && whole && !self.claimed[s] {
            self.storages[s].kind = StorageKind::Output;
            self.claimed[s] = true;
            self.outputs.push(buf);
            return;
        }
        let (dtype, dims) = (self.bufs[buf].dtype, self.bufs[buf].dims.clone());
        let bytes = self.storages[s].bytes;
        let to_s = self.new_storage(StorageKind::Output, bytes);
        self.claimed[to_s] = true;
        let to = self.new_buf(to_s, dtype, dims);
        self.steps.push(Step {
            name: format!("output {j}"),
            op: OpName("copy"),
            kernel: Kernel::Copy { from: buf, to },
            reads: vec![buf],
            writes: vec![to],
            work: self.bufs[to].len(),
        });
        self.outputs.push(to);
    }

    /// Lets a step write over an input that dies at it: the output's storage merges into the
    /// input's. Generated kernels may write any output over any input of the same shape (each
    /// row is read before it is written); a `set_item` writes its list in place (then only the
    /// row is written); a `while` keeps carried value `k` in its init's bytes (no copy in).
    fn in_place(&mut self) {
        let n = self.storages.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut s: usize) -> usize {
            while p[s] != s {
                p[s] = p[p[s]];
                s = p[s];
            }
            s
        }
        let mut last_read = vec![0usize; n];
        let mut first_write = vec![usize::MAX; n];
        for (i, step) in self.steps.iter().enumerate() {
            for &r in &step.reads {
                last_read[self.bufs[r].storage] = i;
            }
            for &w in &step.writes {
                let s = self.bufs[w].storage;
                first_write[s] = first_write[s].min(i);
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            // The step's inputs, and for each output the inputs it may be written over.
            let (inputs, candidates): (&[BufId], Vec<(BufId, Vec<BufId>)>) = match &step.kernel {
                Kernel::Rows {
                    inputs, outputs, ..
                } => (
                    inputs,
                    outputs.iter().map(|&o| (o, inputs.clone())).collect(),
                ),
                Kernel::SetItem { x, out, .. } => (&step.reads, vec![(*out, vec![*x])]),
                Kernel::While(l) => (
                    &l.init,
                    l.slots
                        .iter()
                        .zip(&l.init)
                        .map(|(&o, &x)| (o, vec![x]))
                        .collect(),
                ),
                _ => continue,
            };
            let mut used = vec![];
            for (o, over) in candidates {
                let so = find(&mut parent, self.bufs[o].storage);
                if !matches!(self.storages[so].kind, StorageKind::Arena { .. })
                    || first_write[so] != i
                {
                    continue;
                }
                for inp in over {
                    let si = find(&mut parent, self.bufs[inp].storage);
                    let fits = self.bufs[inp].dims == self.bufs[o].dims
                        && self.bufs[inp].dtype == self.bufs[o].dtype
                        && self.bufs[inp].offset == 0
                        && self.bufs[o].offset == 0
                        && self.storages[si].bytes == self.storages[so].bytes;
                    let arena = matches!(self.storages[si].kind, StorageKind::Arena { .. });
                    let once = inputs
                        .iter()
                        .filter(|&&x| self.bufs[x].storage == self.bufs[inp].storage)
                        .count()
                        == 1;
                    if fits
                        && arena
                        && once
                        && si != so
                        && last_read[si] == i
                        && !used.contains(&si)
                    {
                        parent[so] = si;
                        last_read[si] = last_read[si].max(last_read[so]);
                        used.push(si);
                        break;
                    }
                }
            }
        }
        for b in &mut self.bufs {
            b.storage = find(&mut parent, b.storage);
        }
    }

    /// Splits the steps into waves: a step joins the current wave unless it reads a storage
    /// the wave writes, or writes one the wave reads or writes.
    fn waves(&self) -> Vec<std::ops::Range<usize>> {
        let mut waves = vec![];
        let mut start = 0;
        let (mut reads, mut writes) = (HashSet::new(), HashSet::new());
        for (i, step) in self.steps.iter().enumerate() {
            let r: Vec<usize> = step.reads.iter().map(|&b| self.bufs[b].storage).collect();
            let w: Vec<usize> = step.writes.iter().map(|&b| self.bufs[b].storage).collect();
            let conflict = r.iter().any(|s| writes.contains(s))
                || w.iter().any(|s| writes.contains(s) || reads.contains(s));
            if conflict {
                waves.push(start..i);
                start = i;
                reads.clear();
                writes.clear();
            }
            reads.extend(r);
            writes.extend(w);
        }
        if start < self.steps.len() {
            waves.push(start..self.steps.len());
        }
        waves
    }

    fn finish(mut self) -> Plan {
        let waves = self.waves();
        // Lifetimes of the arena storages still in use, in waves (steps of one wave may run
        // at the same time, so they must not share bytes), then their offsets.
        let n = self.storages.len();
        let (mut first, mut last) = (vec![usize::MAX; n], vec![0usize; n]);
        for (w, wave) in waves.iter().enumerate() {
            for step in &self.steps[wave.clone()] {
                for &b in step.reads.iter().chain(&step.writes) {
                    let s = self.bufs[b].storage;
                    first[s] = first[s].min(w);
                    last[s] = last[s].max(w);
                }
            }
        }
        // Outputs are read after the last step (only matters for one kept in the arena).
        for &b in &self.outputs {
            let s = self.bufs[b].storage;
            last[s] = waves.len();
        }
        let arena: Vec<usize> = (0..n)
            .filter(|&s| {
                matches!(self.storages[s].kind, StorageKind::Arena { .. }) && first[s] != usize::MAX
            })
            .collect();
        let lifetimes: Vec<Lifetime> = arena
            .iter()
            .map(|&s| Lifetime {
                bytes: self.storages[s].bytes,
                first: first[s],
                last: last[s],
            })
            .collect();
        let placed = memory::plan(&lifetimes);
        for (&s, &offset) in arena.iter().zip(&placed.offsets) {
            self.storages[s].kind = StorageKind::Arena { offset };
        }
        let mut stats = PlanStats {
            steps: self.steps.len(),
            parallel_waves: waves.iter().filter(|w| w.len() > 1).count(),
            arena_bytes: placed.bytes,
            arena_lower_bound: memory::lower_bound(&lifetimes),
            views: self.views,
            ..PlanStats::default()
        };
        for s in &self.storages {
            if matches!(s.kind, StorageKind::Output) {
                stats.output_bytes += s.bytes;
            }
        }
        for step in &self.steps {
            match &step.kernel {
                Kernel::Gemm { epilogue, .. }
                | Kernel::GenericGemm { epilogue, .. }
                | Kernel::IntGemm { epilogue, .. }
                | Kernel::Einsum { epilogue, .. } => {
                    stats.gemm_steps += 1;
                    stats.epilogues += epilogue.is_some() as usize;
                }
                Kernel::Window { epilogue, .. }
                | Kernel::GenericWindow { epilogue, .. }
                | Kernel::IntConv { epilogue, .. } => {
                    stats.window_steps += 1;
                    stats.epilogues += epilogue.is_some() as usize;
                }
                Kernel::Rows { .. } => stats.generated_steps += 1,
                Kernel::Reduce { .. }
                | Kernel::ReduceAxes { .. }
                | Kernel::ArgMax { .. }
                | Kernel::Det { .. }
                | Kernel::Dft { .. }
                | Kernel::Pad { .. } => stats.window_steps += 1,
                Kernel::Interp { .. } => stats.interp_steps += 1,
                Kernel::Copy { .. }
                | Kernel::Move { .. }
                | Kernel::Indexed { .. }
                | Kernel::Gather { .. }
                | Kernel::Fill { .. }
                | Kernel::SetItem { .. } => stats.copy_steps += 1,
                Kernel::Indexing { kernel, .. } if kernel.moves() => stats.copy_steps += 1,
                Kernel::Convert { .. } => stats.generated_steps += 1,
                Kernel::Indexing { .. } | Kernel::Image { .. } => stats.window_steps += 1,
                Kernel::While(l) => {
                    stats.control_steps += 1;
                    stats.absorb(&l.cond.stats);
                    stats.absorb(&l.body.stats);
                }
                Kernel::If(b) => {
                    stats.control_steps += 1;
                    stats.absorb(&b.then_branch.stats);
                    stats.absorb(&b.else_branch.stats);
                }
            }
        }
        let side_by_side = waves
            .iter()
            .map(|w| side_by_side(&self.steps[w.clone()]))
            .collect();
        Plan {
            storages: self.storages,
            bufs: self.bufs,
            steps: self.steps,
            waves,
            side_by_side,
            outputs: self.outputs,
            inputs: self.inputs,
            stats,
        }
    }
}

/// A window op's kernel: a tuned f32 NHWC one, or the generic one.
enum WindowKernel {
    Tuned(Window),
    Generic(GenericWindow),
}

impl WindowKernel {
    /// The step running it on `x` (and `filter`, which only the generic kernel reads: the
    /// tuned ones hold theirs) into `out`, then `epilogue`, tile by tile when the tuned
    /// kernel's rows are the tail's rows.
    fn step(
        self,
        x: BufId,
        filter: Option<BufId>,
        out: BufId,
        epilogue: Option<Epilogue>,
    ) -> Kernel {
        match self {
            WindowKernel::Tuned(kernel) => {
                let mut epilogue = epilogue;
                if let Some(e) = epilogue.as_mut() {
                    e.tiled =
                        e.kernel.rows() == kernel.rows() && e.kernel.row_len() == kernel.cols();
                }
                Kernel::Window {
                    kernel,
                    x,
                    out,
                    epilogue,
                }
            }
            WindowKernel::Generic(kernel) => Kernel::GenericWindow {
                kernel,
                x,
                filter,
                out,
                epilogue,
            },
        }
    }
}

/// The kernel for a conv/pool op on an input of type `x` (and a filter of type `filter_ty`,
/// whose value is `filter` when constant): the tuned one for f32 NHWC data (with a constant
/// filter, which it packs), else the generic one.
fn window(
    op: &Op,
    x: &TensorType,
    filter_ty: Option<&TensorType>,
    filter: Option<&Tensor>,
) -> Result<WindowKernel, String> {
    let format = match op {
        Op::Conv2D(a) | Op::DepthwiseConv2D(a) => a.format,
        Op::MaxPool(p) | Op::AvgPool(p) => p.format,
        other => return Err(format!("{} is not a window op", other.mnemonic())),
    };
    if x.dtype == DType::F32 && format == DataFormat::Nhwc {
        let constant = || filter.ok_or_else(|| "the filter is not a constant".to_string());
        let tuned = match op {
            Op::Conv2D(a) => constant().and_then(|f| conv2d(a, x, f)),
            Op::DepthwiseConv2D(a) => {
                constant().and_then(|f| DepthwiseConv2d::new(a, x, f).map(Window::Depthwise))
            }
            Op::MaxPool(a) => Pool2d::new(PoolKind::Max, a, x).map(Window::Pool),
            Op::AvgPool(a) => Pool2d::new(PoolKind::Avg, a, x).map(Window::Pool),
            _ => unreachable!("a window op"),
        };
        if let Ok(kernel) = tuned {
            return Ok(WindowKernel::Tuned(kernel));
        }
    }
    GenericWindow::new(op, x, filter_ty).map(WindowKernel::Generic)
}

/// The tuned f32 NHWC `conv2d`: Winograd where [`winograd::pays_off`], else im2col + GEMM.
fn conv2d(attrs: &ConvAttrs, x: &TensorType, filter: &Tensor) -> Result<Window, String> {
    if winograd::pays_off(attrs, x, filter.shape()) {
        if let Ok(k) = Winograd3x3::new(attrs, x, filter) {
            return Ok(Window::Winograd(k));
        }
    }
    Conv2d::new(attrs, x, filter).map(Window::Conv)
}

/// The kernel of a reduction that generated code does not do.
enum LoneReduce {
    /// f32 over a run of middle axes.
    Middle(MiddleReduce),
    /// Any other axes or dtype.
    Axes(ReduceAxes),
}

impl LoneReduce {
    fn kernel(self, x: BufId, out: BufId) -> Kernel {
        match self {
            LoneReduce::Middle(kernel) => Kernel::Reduce { kernel, x, out },
            LoneReduce::Axes(kernel) => Kernel::ReduceAxes { kernel, x, out },
        }
    }
}

/// For a body that is one reduction of its one input over axes generated code does not take
/// (anything but the last axis, kept), the kernel that does it.
fn lone_reduce(body: &Graph) -> Option<LoneReduce> {
    let [out] = body.outputs() else { return None };
    let node = body.node(out.value.node);
    let Op::Reduce { kind, keep_dims } = node.op else {
        return None;
    };
    let x = *node.inputs.first()?;
    if !matches!(body.node(x.node).op, Op::Input { index: 0 }) || body.inputs().len() != 1 {
        return None;
    }
    let ty = body.value_type(x);
    let dims = ty.shape.as_known()?;
    let mut axes: Vec<usize> = body
        .const_value(*node.inputs.get(1)?)?
        .to_i64_vec()
        .ok()?
        .into_iter()
        .map(|a| if a < 0 { a + dims.len() as i64 } else { a })
        .map(|a| usize::try_from(a).ok())
        .collect::<Option<_>>()?;
    axes.sort_unstable();
    axes.dedup();
    if support::row_reduction(&dims, &axes, keep_dims).is_ok() {
        return None;
    }
    if ty.dtype == DType::F32 {
        if let Some(m) = MiddleReduce::new(kind, &dims, &axes) {
            return Some(LoneReduce::Middle(m));
        }
    }
    ReduceAxes::new(&node.op, ty, &axes)
        .ok()
        .map(LoneReduce::Axes)
}

/// An epilogue body taken apart: the anchor node and the elementwise tail after it.
struct EpilogueSplit {
    anchor: NodeId,
    /// The body output that is the anchor's own result, if any.
    anchor_output: Option<usize>,
    /// The tail as a graph of inputs `[anchor result, body inputs...]`, if there is one.
    tail: Option<Graph>,
    /// Which body outputs the tail's outputs are, in order.
    tail_outputs: Vec<usize>,
}

fn split_epilogue(body: &Graph) -> Result<EpilogueSplit, String> {
    let order = body.topo_order().map_err(|e| e.to_string())?;
    let anchor = order
        .iter()
        .copied()
        .find(|&n| {
            matches!(
                body.node(n).op,
                Op::MatMul { .. }
                    | Op::BatchMatMul { .. }
                    | Op::Einsum { .. }
                    | Op::Conv2D(_)
                    | Op::DepthwiseConv2D(_)
                    | Op::MatMulInteger
                    | Op::Conv2DInteger(_)
            )
        })
        .ok_or("the epilogue has no anchor")?;
    let anchor_value = ValueId::first(anchor);
    let mut tail = Graph::new(format!("{}_tail", body.name));
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    map.insert(
        anchor_value,
        tail.add_input("anchor", body.node(anchor).outputs[0].clone()),
    );
    for (i, input) in body.inputs().iter().enumerate() {
        let v = tail.add_input(format!("in{i}_{}", input.name), input.ty.clone());
        map.insert(ValueId::first(input.node), v);
    }
    let mut tail_nodes = 0;
    for &n in &order {
        let node = body.node(n);
        if n == anchor || matches!(node.op, Op::Input { .. }) {
            continue;
        }
        if let Op::Const(_) = &node.op {
            continue; // added when a tail op reads it (`tail_value`)
        }
        let ins = (node.inputs.iter())
            .map(|&v| tail_value(body, &mut tail, &mut map, v))
            .collect::<Result<Vec<_>, _>>()?;
        let id = tail
            .add_node_typed(
                node.op.clone(),
                ins,
                node.outputs.clone(),
                node.name.clone(),
            )
            .map_err(|e| e.to_string())?;
        for k in 0..node.outputs.len() {
            map.insert(
                ValueId {
                    node: n,
                    output: k as u32,
                },
                ValueId {
                    node: id,
                    output: k as u32,
                },
            );
        }
        tail_nodes += 1;
    }
    let mut anchor_output = None;
    let mut tail_outputs = vec![];
    for (j, out) in body.outputs().iter().enumerate() {
        if out.value == anchor_value {
            if anchor_output.is_some() {
                return Err("the anchor's result is output twice".into());
            }
            anchor_output = Some(j);
        } else {
            let value = tail_value(body, &mut tail, &mut map, out.value)?;
            tail.add_output(out.name.clone(), value)
                .map_err(|e| e.to_string())?;
            tail_outputs.push(j);
        }
    }
    let tail = (tail_nodes > 0 && !tail_outputs.is_empty()).then_some(tail);
    if tail.is_none() && anchor_output.is_none() {
        return Err("the epilogue computes nothing".into());
    }
    Ok(EpilogueSplit {
        anchor,
        anchor_output,
        tail,
        tail_outputs,
    })
}

/// Body value `v` in the epilogue's tail: mapped already, or a body constant, shared into the
/// tail when first read (so the anchor's own constants, its filter, never enter the tail).
fn tail_value(
    body: &Graph,
    tail: &mut Graph,
    map: &mut HashMap<ValueId, ValueId>,
    v: ValueId,
) -> Result<ValueId, String> {
    if let Some(&m) = map.get(&v) {
        return Ok(m);
    }
    let node = body.node(v.node);
    let Op::Const(t) = &node.op else {
        return Err("an epilogue op reads the anchor's inputs' producers".into());
    };
    let c = tail.add_const_shared(Arc::clone(t), node.name.clone());
    map.insert(v, c);
    Ok(c)
}

/// For a reduction of a run of axes that ends with the last one, a body reducing the last axis
/// of its input viewed as `[outer, inner]` (the same bytes), with the kept dim; `None` otherwise.
fn trailing_reduce_body(g: &Graph, id: NodeId) -> Option<(Graph, Vec<usize>)> {
    let node = g.node(id);
    let Op::Reduce { kind, .. } = node.op else {
        return None;
    };
    let x = g.value_type(node.inputs[0]);
    let dims = x.shape.as_known()?;
    let rank = dims.len() as i64;
    let mut axes: Vec<i64> = g
        .const_value(node.inputs[1])?
        .to_i64_vec()
        .ok()?
        .into_iter()
        .map(|a| if a < 0 { a + rank } else { a })
        .collect();
    axes.sort_unstable();
    axes.dedup();
    let first = *axes.first()?;
    if first < 0 || axes != (first..rank).collect::<Vec<_>>() {
        return None;
    }
    let outer: usize = dims[..first as usize].iter().product();
    let inner: usize = dims[first as usize..].iter().product();
    let mut body = Graph::new("reduce_trailing");
    let v = body.add_input("x0", TensorType::known(x.dtype, &[outer, inner]));
    let a = body.add_const(lathe_ir::Tensor::from_i64(DType::I64, &[1], &[1]), "axes");
    let op = Op::Reduce {
        kind,
        keep_dims: true,
    };
    let y = body.add(op, vec![v, a], g.display_name(id)).ok()?;
    body.add_output("y0", y).ok()?;
    Some((body, vec![0]))
}

/// The buffers a step reads from memory when it runs: a GEMM with packed `B` (its second
/// read) reads the panels instead.
pub(super) fn memory_reads(step: &Step) -> impl Iterator<Item = BufId> + '_ {
    let packed = matches!(
        step.kernel,
        Kernel::Gemm {
            packed: Some(_),
            ..
        }
    );
    step.reads
        .iter()
        .enumerate()
        .filter(move |&(i, _)| !(packed && i == 1))
        .map(|(_, &r)| r)
}

/// A one-node body for a lone op, so codegen can compile it like a fused node. Constant
/// operands are copied in; returns the body and which of the node's inputs it takes.
fn single_op_body(g: &Graph, id: NodeId) -> Result<(Graph, Vec<usize>), String> {
    let node = g.node(id);
    let mut body = Graph::new(node.op.mnemonic());
    let mut ins = vec![];
    let mut used = vec![];
    for (i, v) in node.inputs.iter().enumerate() {
        match g.const_value(*v) {
            Some(t) => ins.push(body.add_const(t.clone(), format!("c{i}"))),
            None => {
                ins.push(body.add_input(format!("x{i}"), g.value_type(*v).clone()));
                used.push(i);
            }
        }
    }
    let n = body
        .add_node_typed(
            node.op.clone(),
            ins,
            node.outputs.clone(),
            g.display_name(id),
        )
        .map_err(|e| e.to_string())?;
    for k in 0..node.outputs.len() {
        body.add_output(
            format!("y{k}"),
            ValueId {
                node: n,
                output: k as u32,
            },
        )
        .map_err(|e| e.to_string())?;
    }
    Ok((body, used))
}

/// Whether a wave's steps are worth running side by side: several, together worth at least
/// one task (less is cheaper run in order than handed to other threads, as a loop body's
/// small steps each iteration), and none of them with most of the work (a lopsided wave runs
/// better one step at a time, each split over every thread).
fn side_by_side(steps: &[Step]) -> bool {
    let total: usize = steps.iter().map(|s| s.work).fold(0, usize::saturating_add);
    let max = steps.iter().map(|s| s.work).max().unwrap_or(0);
    steps.len() > 1
        && total >= super::exec::MIN_TASK_FLOPS
        && max.saturating_mul(10) <= total.saturating_mul(7)
}
