//! The CPU backend's answer to the capability query: which ops it runs natively on which
//! dtypes, and how. Fusion (through `PassOptions::capabilities`), the lowering (`lower.rs`)
//! and `lathe ops`/`inspect` ([`op_native`]) all ask this one implementation.

use super::codegen::support;
use lathe_ir::ops::decl::OpInfo;
use lathe_ir::ops::Arity;
use lathe_ir::ops::{Family, Op, PadMode};
use lathe_ir::{Capabilities, DType, Graph, Native, Shape};

/// The CPU backend's capabilities.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuCapabilities;

/// Whether `d` is one of `dtypes`' first entry (the data input), or say what is missing.
fn data(inputs: &[DType]) -> Result<DType, String> {
    inputs
        .first()
        .copied()
        .ok_or_else(|| "the op has no input".to_string())
}

/// `kernel` when the data operand is numeric: the dense kernels take every dtype but bool
/// (f32 through the tuned kernels, the others through the generic ones).
fn numeric_data(op: &Op, inputs: &[DType], kernel: &'static str) -> Result<Native, String> {
    match data(inputs)? {
        DType::Bool => Err(format!(
            "the CPU {kernel} kernels compute on numbers, {} has a bool input",
            op.mnemonic()
        )),
        _ => Ok(Native::Kernel(kernel)),
    }
}

impl CpuCapabilities {
    /// Whether every member of a region graph is native, or which one is not and why.
    fn region_native(&self, region: &Graph) -> Result<(), String> {
        for id in region.node_ids() {
            let member = region.node(id);
            let dtypes: Vec<DType> = member
                .inputs
                .iter()
                .map(|v| region.value_type(*v).dtype)
                .collect();
            self.native(&member.op, &dtypes).map_err(|why| {
                format!(
                    "`{}` ({}) in region @{}: {why}",
                    region.display_name(id),
                    member.op.mnemonic(),
                    region.name
                )
            })?;
        }
        Ok(())
    }
}

impl Capabilities for CpuCapabilities {
    fn backend(&self) -> &'static str {
        "cpu"
    }

    fn native(&self, op: &Op, inputs: &[DType]) -> Result<Native, String> {
        match op {
            // Views: the result is the input's bytes under another shape (every dtype), or
            // another dtype (bitcast).
            Op::Input { .. }
            | Op::Const(_)
            | Op::Identity
            | Op::IdentityN
            | Op::StopGradient
            | Op::NoOp
            | Op::Reshape
            | Op::Squeeze { .. }
            | Op::ExpandDims
            | Op::Bitcast { .. } => Ok(Native::View),
            // Data movement: byte copies, every dtype.
            Op::Concat
            | Op::Pack { .. }
            | Op::Unpack { .. }
            | Op::Slice
            | Op::StridedSlice(_)
            | Op::Transpose
            | Op::Tile => Ok(Native::Kernel("copy")),
            // f32 constant padding has a kernel of its own; the rest is a copy.
            Op::Pad {
                mode: PadMode::Constant,
            } if data(inputs)? == DType::F32 => Ok(Native::Kernel("pad")),
            Op::Pad { .. } => Ok(Native::Kernel("copy")),
            Op::Gather { .. } => match inputs.get(1) {
                Some(d) if d.is_int() => Ok(Native::Kernel("gather")),
                Some(d) => Err(format!("gather indices must be integers, got {d}")),
                None => Err("gather has no indices".into()),
            },
            // ONNX's element gathers and scatters and trilu move bytes (scatters combine in
            // the dtype's own arithmetic), every dtype; cumsum, cumprod and top_k compute on numbers.
            Op::GatherElements { .. }
            | Op::GatherNd { .. }
            | Op::ScatterElements { .. }
            | Op::ScatterNd { .. }
            | Op::Trilu { .. } => match inputs.get(1) {
                Some(d) if d.is_int() => Ok(Native::Kernel("indexing")),
                Some(d) => Err(format!(
                    "{} indices must be integers, got {d}",
                    op.mnemonic()
                )),
                None => Err(format!("{} has no indices", op.mnemonic())),
            },
            Op::Cumulative { .. } | Op::TopK { .. } => numeric_data(op, inputs, "indexing"),
            // Casts to and from the low-precision storage types convert element by element
            // through the IR's conversion functions (generated code has no such types).
            Op::CastUnsaturated { .. } => Ok(Native::Kernel("convert")),
            Op::Cast { to } if to.is_low_precision() || data(inputs)?.is_low_precision() => {
                Ok(Native::Kernel("convert"))
            }
            Op::Shape { .. } | Op::Fill => Ok(Native::Kernel("generate")),
            Op::Range => match data(inputs)? {
                DType::Bool => Err("range of bool".into()),
                _ => Ok(Native::Kernel("generate")),
            },
            // Dense lists: a zero fill, and a row write (in place when the list dies there).
            Op::ListReserve { .. } => Ok(Native::Kernel("generate")),
            Op::SetItem => match inputs.get(1) {
                Some(d) if d.is_int() => Ok(Native::Kernel("copy")),
                Some(d) => Err(format!("set_item's index must be an integer, got {d}")),
                None => Err("set_item has no index".into()),
            },
            // Control flow: each region compiles to a sub-plan, native when each of its
            // members is (regions nest).
            Op::While { cond, body } => {
                self.region_native(cond)?;
                self.region_native(body)?;
                Ok(Native::Kernel("loop"))
            }
            Op::If {
                then_branch,
                else_branch,
            } => {
                self.region_native(then_branch)?;
                self.region_native(else_branch)?;
                Ok(Native::Kernel("branch"))
            }
            Op::MatMul { .. } | Op::BatchMatMul { .. } | Op::Einsum { .. } => {
                numeric_data(op, inputs, "gemm")
            }
            Op::GridSample { .. } | Op::RoiAlign { .. } | Op::Col2Im { .. } => {
                match data(inputs)? {
                    d if d.is_float() => Ok(Native::Kernel("image")),
                    d => Err(format!("{} of {d} (floats only)", op.mnemonic())),
                }
            }
            Op::Det => match data(inputs)? {
                d if d.is_float() => Ok(Native::Kernel("det")),
                d => Err(format!("det of {d} (floats only)")),
            },
            Op::Dft { .. } => match data(inputs)? {
                d if d.is_float() => Ok(Native::Kernel("dft")),
                d => Err(format!("dft of {d} (floats only)")),
            },
            Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::MaxPool(_) | Op::AvgPool(_) => {
                numeric_data(op, inputs, "window")
            }
            Op::ArgMax { .. } => numeric_data(op, inputs, "arg_max"),
            // The integer GEMM takes i8 and u8 operands (each its own), as the op declares.
            Op::MatMulInteger | Op::Conv2DInteger(_) => match inputs {
                [x, w, ..] if [x, w].iter().all(|d| matches!(d, DType::I8 | DType::U8)) => {
                    Ok(Native::Kernel(if *op == Op::MatMulInteger {
                        "gemm"
                    } else {
                        "window"
                    }))
                }
                _ => Err(format!(
                    "the CPU integer GEMM takes i8 and u8 operands, {} has {inputs:?}",
                    op.mnemonic()
                )),
            },
            // A fused body is native when each of its members is: its anchor by its kernel,
            // the rest by generated code.
            Op::Fused { body, .. } => {
                for id in body.node_ids() {
                    let member = body.node(id);
                    if matches!(member.op, Op::Input { .. } | Op::Const(_)) {
                        continue;
                    }
                    let dtypes: Vec<DType> = member
                        .inputs
                        .iter()
                        .map(|v| body.value_type(*v).dtype)
                        .collect();
                    match member.op.family() {
                        Family::Linalg | Family::Conv
                            if !matches!(member.op, Op::BiasAdd { .. }) =>
                        {
                            self.native(&member.op, &dtypes)?;
                        }
                        _ => support::compiles(&member.op, &dtypes)?,
                    }
                }
                Ok(Native::Generated)
            }
            _ => support::compiles(op, inputs).map(|()| Native::Generated),
        }
    }

    fn fusible_reduction(&self, shape: &Shape, axes: &[usize], keep_dims: bool) -> bool {
        shape
            .as_known()
            .is_some_and(|dims| support::row_reduction(&dims, axes, keep_dims).is_ok())
    }

    fn fusible(&self, op: &Op, inputs: &[DType]) -> bool {
        match op.family() {
            Family::Elementwise | Family::Reduce => support::compiles(op, inputs).is_ok(),
            // Contractions anchor an epilogue when their kernel runs them.
            Family::Linalg | Family::Conv => match op {
                Op::BiasAdd { .. } => support::compiles(op, inputs).is_ok(),
                _ => self.native(op, inputs).is_ok(),
            },
            _ => false,
        }
    }
}

/// Whether the CPU runs `op` natively when its data operand (the first) is `dtype`: the
/// operands are typed from the op's declaration (operands of the data operand's type variable
/// take `dtype`, index operands `i32`, others the first dtype of their class; a variadic operand
/// is given twice, an optional one left out).
pub fn op_native(op: &Op, dtype: DType) -> Result<Native, String> {
    let info = op.info();
    let data_var = info.operands.first().map(|o| o.ty);
    let mut inputs = vec![];
    for o in info.operands {
        let class = info
            .operand_class(o)
            .ok_or_else(|| format!("{}: operand `{}` has no dtype class", info.name, o.name))?;
        let d = if Some(o.ty) == data_var {
            dtype
        } else if class.contains(DType::I32) && !class.contains(DType::F32) {
            DType::I32
        } else {
            *class
                .dtypes()
                .first()
                .ok_or_else(|| format!("{}: operand `{}` accepts no dtype", info.name, o.name))?
        };
        let copies = match o.arity {
            Arity::One => 1,
            Arity::Optional => 0,
            Arity::Variadic => 2,
        };
        inputs.extend(std::iter::repeat_n(d, copies));
    }
    CpuCapabilities.native(op, &inputs)
}

/// The dtypes an op runs on natively, and those it does not with the reason.
pub type NativeDtypes = (Vec<DType>, Vec<(DType, String)>);

/// The dtypes of its data operand (the first) that the CPU backend runs the op on natively,
/// among those the op accepts, and the ones it does not, with why (the first reason).
/// `None` for ops asked about per node only (graph structure, fused bodies).
pub fn native_dtypes(info: &OpInfo) -> Option<NativeDtypes> {
    let op = info.sample()?;
    let class = info.operands.first().and_then(|o| info.operand_class(o))?;
    let (mut yes, mut no) = (vec![], vec![]);
    for d in class.dtypes() {
        match op_native(&op, d) {
            Ok(_) => yes.push(d),
            Err(why) => no.push((d, why)),
        }
    }
    Some((yes, no))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::UnaryOp;

    #[test]
    fn movement_is_native_for_every_dtype() {
        for d in [DType::F32, DType::I64, DType::Bool, DType::F16, DType::U8] {
            for op in [Op::Concat, Op::Transpose, Op::Slice, Op::Tile, Op::Reshape] {
                assert!(op_native(&op, d).is_ok(), "{} on {d}", op.mnemonic());
            }
        }
        assert_eq!(
            op_native(&Op::Gather { batch_dims: 0 }, DType::Bool),
            Ok(Native::Kernel("gather"))
        );
    }

    #[test]
    fn fusion_follows_codegen() {
        let c = CpuCapabilities;
        assert!(c.fusible(&Op::Unary(UnaryOp::Relu), &[DType::F32]));
        assert_eq!(
            c.fusible(&Op::Unary(UnaryOp::Sin), &[DType::F32]),
            support::compiles(&Op::Unary(UnaryOp::Sin), &[DType::F32]).is_ok()
        );
        assert!(!c.fusible(&Op::Concat, &[DType::F32, DType::F32, DType::I32]));
    }
}
