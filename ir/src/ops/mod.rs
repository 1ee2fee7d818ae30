//! The op set, declared once.
//!
//! The table below declares every IR op in one row: its variant (with attribute fields), its
//! mnemonic, family, operands, dtype rule and a one-line summary. The macros in [`decl`] derive
//! from it the [`Op`] enum and its sub-enums ([`UnaryOp`], [`BinaryOp`], [`ReduceKind`],
//! [`CumulativeKind`], [`FusedKind`]) with their `ALL` lists, [`Op::mnemonic`],
//! [`Op::family`], [`Op::attrs`], [`Op::from_parts`] (which the text format goes through) and
//! [`registry`], which `lathe ops` and `docs/ops.md` print. Each family module answers, for its ops, output types (`infer`, also
//! the invariants the verifier checks) and meaning (`eval`, the reference interpreter);
//! [`Op::infer`] also checks every input dtype against the declared rule.
//!
//! Adding an op: see `docs/adding-an-op.md`.
//!
//! Conventions: configuration that TensorFlow and ONNX pass as tensors (reshape target, reduce
//! axes, transpose permutation, pad amounts, concat axis, slice bounds) stays an *input*, so the
//! IR is faithful to the source and shape computations fold like any other constant; `infer`
//! uses the value when the input is a constant. Convolution filters are HWIO
//! (`[kh, kw, in, out]`), depthwise filters `[kh, kw, in, multiplier]`, as in TensorFlow.

pub mod common;
pub mod control;
pub mod control_flow;
pub mod conv;
pub mod decl;
pub mod elementwise;
pub mod fused;
pub mod image;
pub mod linalg;
pub mod quantized;
pub mod reduce;
pub mod shape;
#[cfg(test)]
mod test_util;

pub use decl::{registry, Arity, AttrDecl, AttrKind, DTypeClass, OpInfo, Operand};
pub use image::grid_sample::{SampleMode, SamplePadding};

use crate::{DType, Graph, Tensor, TensorType};
use std::fmt;
use std::sync::Arc;

/// Error from an op's `infer` or `eval`: a message without location; the caller adds the node.
pub type OpResult<T> = Result<T, String>;

decl::op_kinds! {
    /// Elementwise ops of one operand.
    pub enum UnaryOp {
        Neg = "neg", Numeric, "`-x` (wrapping for integers).";
        Abs = "abs", Numeric, "`|x|` (wrapping for integers).";
        Relu = "relu", Numeric, "`max(x, 0)`, NaN passing through.";
        Relu6 = "relu6", Numeric, "`min(max(x, 0), 6)`.";
        Sigmoid = "sigmoid", Float, "`1 / (1 + exp(-x))`.";
        Tanh = "tanh", Float, "Hyperbolic tangent.";
        Erf = "erf", Float, "The error function.";
        Erfc = "erfc", Float, "The complementary error function `1 - erf(x)`.";
        Rsqrt = "rsqrt", Float, "`1 / sqrt(x)`.";
        Sqrt = "sqrt", Float, "Square root.";
        Exp = "exp", Float, "`e^x`.";
        Log = "log", Float, "Natural logarithm.";
        Square = "square", Numeric, "`x * x`.";
        Reciprocal = "reciprocal", Float, "`1 / x`.";
        Floor = "floor", Float, "Largest integer not above `x`.";
        Ceil = "ceil", Float, "Smallest integer not below `x`.";
        Round = "round", Numeric, "Nearest integer, ties to even.";
        Sign = "sign", Numeric, "-1, 0 or 1 by the sign of `x` (NaN stays NaN).";
        Sin = "sin", Float, "Sine.";
        Cos = "cos", Float, "Cosine.";
        Asin = "asin", Float, "Arcsine, in `[-pi/2, pi/2]`; NaN outside `[-1, 1]`.";
        Acos = "acos", Float, "Arccosine, in `[0, pi]`; NaN outside `[-1, 1]`.";
        Atan = "atan", Float, "Arctangent, in `(-pi/2, pi/2)`.";
        Asinh = "asinh", Float, "Inverse hyperbolic sine.";
        Acosh = "acosh", Float, "Inverse hyperbolic cosine; NaN below 1.";
        Atanh = "atanh", Float, "Inverse hyperbolic tangent; NaN outside `[-1, 1]`.";
        Softplus = "softplus", Float, "`log(1 + exp(x))`, without overflow.";
        Softsign = "softsign", Float, "`x / (1 + |x|)`.";
        LogicalNot = "logical_not", Bool, "`!x`.";
        BitwiseNot = "bitwise_not", Int, "`~x`: every bit flipped.";
    }
}

decl::op_kinds! {
    /// Elementwise ops of two operands, with NumPy broadcasting.
    pub enum BinaryOp {
        Add = "add", Numeric, "`x + y`.";
        Sub = "sub", Numeric, "`x - y`.";
        Mul = "mul", Numeric, "`x * y`.";
        Div = "div", Numeric,
            "`x / y`: true division for floats, truncating for integers (`RealDiv`/`Div`).";
        FloorDiv = "floor_div", Numeric, "`floor(x / y)`.";
        FloorMod = "floor_mod", Numeric, "Remainder with the sign of the divisor (Python's `%`).";
        Maximum = "maximum", Numeric, "`max(x, y)`, NaN in either giving NaN.";
        Minimum = "minimum", Numeric, "`min(x, y)`, NaN in either giving NaN.";
        Pow = "pow", Numeric, "`x ^ y` (integers: non-negative exponents, wrapping).";
        SquaredDifference = "squared_difference", Numeric, "`(x - y)^2`.";
        Equal = "equal", Any, "`x == y`, bool.";
        NotEqual = "not_equal", Any, "`x != y`, bool.";
        Less = "less", Numeric, "`x < y`, bool.";
        LessEqual = "less_equal", Numeric, "`x <= y`, bool.";
        Greater = "greater", Numeric, "`x > y`, bool.";
        GreaterEqual = "greater_equal", Numeric, "`x >= y`, bool.";
        LogicalAnd = "logical_and", Bool, "`x && y`.";
        LogicalOr = "logical_or", Bool, "`x || y`.";
        BitwiseAnd = "bitwise_and", Int, "`x & y`.";
        BitwiseOr = "bitwise_or", Int, "`x | y`.";
        BitwiseXor = "bitwise_xor", Int, "`x ^ y`.";
        LeftShift = "left_shift", Int,
            "`x << y`; 0 when `y` is negative or not below the bit width.";
        RightShift = "right_shift", Int,
            "`x >> y`, arithmetic for signed `x`; by a negative `y` or one not below the bit width, \
             0 (or -1 for negative `x`).";
    }
}

impl BinaryOp {
    /// True for comparisons, whose result is bool.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::NotEqual
                | BinaryOp::Less
                | BinaryOp::LessEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterEqual
        )
    }

    /// True for the logical ops, defined on bool only.
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::LogicalAnd | BinaryOp::LogicalOr)
    }
}

decl::op_kinds! {
    /// Reductions over a set of axes.
    #[derive(serde::Serialize, serde::Deserialize)]
    pub enum ReduceKind {
        Sum = "reduce_sum", Numeric, "Sum of `x` over the axes in `axes`.";
        Mean = "reduce_mean", Numeric, "Mean of `x` over the axes in `axes`.";
        Max = "reduce_max", Numeric, "Largest value of `x` over the axes in `axes`.";
        Min = "reduce_min", Numeric, "Smallest value of `x` over the axes in `axes`.";
        Prod = "reduce_prod", Numeric, "Product of `x` over the axes in `axes`.";
    }
}

decl::op_kinds! {
    /// Running combinations along one axis (ONNX `CumSum`, `CumProd`). Floats accumulate in
    /// f64 (each output rounded once), integers wrap.
    pub enum CumulativeKind {
        Sum = "cumsum", Numeric,
            "Running sum of `x` along `axis` (a scalar); `exclusive` leaves out the element \
             itself, `reverse` runs from the end.";
        Prod = "cumprod", Numeric,
            "Running product of `x` along `axis` (a scalar); `exclusive` leaves out the \
             element itself, `reverse` runs from the end.";
    }
}

decl::op_kinds! {
    /// What a fused group is built around, which tells codegen how to lower it.
    pub enum FusedKind {
        Elementwise = "fused.elementwise", Any,
            "Elementwise ops only, lowered as one loop over the output.";
        Epilogue = "fused.epilogue", Any,
            "A contraction (matmul, einsum, convolution) with elementwise ops applied to its \
             output tile (bias, activation, residual add).";
        Reduction = "fused.reduction", Any,
            "Reductions (softmax, mean/variance, layer norm) with the elementwise ops around \
             them.";
    }
}

/// Where the channel axis of a 4-D image tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DataFormat {
    /// `[batch, height, width, channels]` (TensorFlow's default).
    #[default]
    Nhwc,
    /// `[batch, channels, height, width]`.
    Nchw,
}

impl DataFormat {
    /// The text-format and TensorFlow spelling.
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Nhwc => "NHWC",
            DataFormat::Nchw => "NCHW",
        }
    }

    /// Parses `NHWC` / `NCHW`.
    pub fn parse(s: &str) -> OpResult<DataFormat> {
        match s {
            "NHWC" => Ok(DataFormat::Nhwc),
            "NCHW" => Ok(DataFormat::Nchw),
            _ => Err(format!("unknown data format `{s}` (expected NHWC or NCHW)")),
        }
    }

    /// The (height, width, channel) axes of a 4-D tensor in this format.
    pub fn hwc_axes(self) -> (usize, usize, usize) {
        match self {
            DataFormat::Nhwc => (1, 2, 3),
            DataFormat::Nchw => (2, 3, 1),
        }
    }
}

/// How a window op pads its input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding; windows that do not fit are dropped.
    Valid,
    /// Output size `ceil(in / stride)`; padding split with the extra cell at the end.
    Same,
    /// Explicit `[[top, bottom], [left, right]]` padding of the spatial axes.
    Explicit([[usize; 2]; 2]),
}

decl::attr_struct! {
    /// Attributes of `conv2d` and `depthwise_conv2d`.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    pub struct ConvAttrs {
        /// `[stride_h, stride_w]`.
        pub strides: [usize; 2],
        /// `[dilation_h, dilation_w]`.
        pub dilations: [usize; 2],
        pub padding: Padding,
        pub format: DataFormat,
    }
}

decl::attr_struct! {
    /// Attributes of `max_pool` and `avg_pool`.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    pub struct PoolAttrs {
        /// `[window_h, window_w]`.
        pub ksize: [usize; 2],
        /// `[stride_h, stride_w]`.
        pub strides: [usize; 2],
        pub padding: Padding,
        pub format: DataFormat,
    }
}

/// How a scatter combines an update with the value already at its position (ONNX's
/// `reduction`): `None` writes the update over it; the others compute as the binary op of that
/// name does (wrapping integers, NaN-propagating max and min), and on bool as NumPy does
/// (`add` and `max` are or, `mul` and `min` are and).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScatterReduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl ScatterReduction {
    /// Every reduction.
    pub const ALL: [ScatterReduction; 5] = [
        ScatterReduction::None,
        ScatterReduction::Add,
        ScatterReduction::Mul,
        ScatterReduction::Max,
        ScatterReduction::Min,
    ];

    /// The text-format (and ONNX) spelling.
    pub fn name(self) -> &'static str {
        match self {
            ScatterReduction::None => "none",
            ScatterReduction::Add => "add",
            ScatterReduction::Mul => "mul",
            ScatterReduction::Max => "max",
            ScatterReduction::Min => "min",
        }
    }

    /// The reduction spelled `s`.
    pub fn parse(s: &str) -> Option<ScatterReduction> {
        ScatterReduction::ALL.into_iter().find(|r| r.name() == s)
    }
}

decl::attr_struct! {
    /// The masks of TensorFlow's `StridedSlice` (bit `i` refers to entry `i` of begin/end/strides).
    #[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct StridedSliceAttrs {
        pub begin_mask: i64,
        pub end_mask: i64,
        pub ellipsis_mask: i64,
        pub new_axis_mask: i64,
        pub shrink_axis_mask: i64,
    }
}

/// How `pad` fills the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    /// With a constant: the optional third input (a scalar), else zero.
    Constant,
    /// Mirror without repeating the edge (`MirrorPad` REFLECT).
    Reflect,
    /// Mirror repeating the edge (`MirrorPad` SYMMETRIC).
    Symmetric,
    /// The edge element repeated (ONNX `edge`, NumPy's `edge`).
    Edge,
    /// `x` repeated periodically (ONNX `wrap`, NumPy's `wrap`).
    Wrap,
}

impl PadMode {
    /// Every mode, in declaration order.
    pub const ALL: [PadMode; 5] = [
        PadMode::Constant,
        PadMode::Reflect,
        PadMode::Symmetric,
        PadMode::Edge,
        PadMode::Wrap,
    ];

    /// The text-format spelling.
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Symmetric => "symmetric",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }

    /// The mode spelled `name` in the text format.
    pub fn parse(name: &str) -> Option<PadMode> {
        PadMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The index along an axis of size `n` that padded position `j` copies (`j` counted from
    /// the axis's first element, so negative in the leading border), or `None` where the
    /// constant fills. The answer is outside `0..n` where the border is wider than a mirror
    /// allows (`n - 1` for reflect, `n` for symmetric) or a non-constant border pads an empty
    /// axis; callers check the paddings first.
    pub fn source(self, j: i64, n: i64) -> Option<i64> {
        Some(match self {
            _ if (0..n).contains(&j) => j,
            PadMode::Constant => return None,
            _ if n <= 0 => -1,
            // Mirror around the edge cell (reflect) or the edge itself (symmetric).
            PadMode::Reflect if j < 0 => -j,
            PadMode::Reflect => 2 * (n - 1) - j,
            PadMode::Symmetric if j < 0 => -j - 1,
            PadMode::Symmetric => 2 * n - 1 - j,
            PadMode::Edge => j.clamp(0, n - 1),
            PadMode::Wrap => j.rem_euclid(n),
        })
    }
}

// The op table. Row: variant (attribute fields) = mnemonic, family, (operands), [type
// variables], summary. An operand's type is a type variable of the row or a dtype class;
// `[Optional]`/`[Variadic]` after it say how many inputs it stands for. Extra `///` lines
// document the variant further.
decl::declare_ops! {
    builtin {
        /// Bound by the interpreter and the runtime to the graph's input number `index`.
        Input { index: usize } = "input", Control, (), [],
            "A graph input (a TensorFlow Placeholder), typed by the graph's signature.";
        Const(Arc<Tensor>) = "const", Control, (), [], "A constant tensor.";
    }
    plain {
        Identity = "identity", Control, (x: Any), [], "Returns its input.";
        /// One output per input.
        IdentityN = "identity_n", Control, (xs: Any [Variadic]), [], "Returns each of its inputs.";
        StopGradient = "stop_gradient", Control, (x: Any), [],
            "Returns its input (a gradient barrier in TensorFlow).";
        /// Its inputs, if any, only order it after their producers.
        NoOp = "noop", Control, (deps: Any [Variadic]), [], "Does nothing; no outputs.";

        /// Float8 targets saturate (ONNX's default), E8M0 rounds up, 4- and 2-bit integers
        /// wrap; see `dtype::lowp`.
        Cast { to: DType } = "cast", Elementwise, (x: All), [], "`x` converted to dtype `to`.";
        /// Only float8 and E8M0 targets differ from `cast` (float4 has no infinity or NaN and
        /// saturates anyway); to any other dtype it is `cast`.
        CastUnsaturated { to: DType } = "cast_unsaturated", Elementwise, (x: All), [],
            "`x` converted to dtype `to` without saturating: a value beyond its range becomes \
             infinity or NaN (ONNX's `Cast` with `saturate = 0`).";
        Select = "select", Elementwise, (cond: Bool, x: T, y: T), [T: Any],
            "`cond ? x : y` elementwise, all three broadcast.";

        MatMul { transpose_a: bool, transpose_b: bool } = "matmul", Linalg,
            (a: T, b: T), [T: Numeric], "`a @ b` on rank-2 operands, either transposed first.";
        BatchMatMul { adj_x: bool, adj_y: bool } = "batch_matmul", Linalg,
            (x: T, y: T), [T: Numeric],
            "Batched `x @ y` on the last two axes, batch axes broadcast; `adj_*` transposes.";
        /// Equations without ellipsis and without subscripts repeated within one operand.
        Einsum { equation: String } = "einsum", Linalg, (operands: T [Variadic]), [T: Numeric],
            "Einstein summation of the operands.";
        /// Computed in f64 by LU decomposition with partial pivoting, rounded once.
        Det = "det", Linalg, (x: T), [T: Float],
            "Determinant of each square matrix in the last two axes of `x`.";
        /// `x`'s last axis is 1 (a real signal) or 2 (real and imaginary parts). The signal is
        /// cut or zero-padded to `length` points (to the `length / 2 + 1` frequencies of a real
        /// signal's half spectrum for a one-sided inverse). Computed in f64, rounded once.
        Dft { axis: i64, length: usize, inverse: bool, onesided: bool } = "dft", Linalg,
            (x: T), [T: Float],
            "Discrete Fourier transform of `x` along `axis` (complex result, last axis 2; the \
             first `length / 2 + 1` frequencies when `onesided`); `inverse` is the inverse \
             transform, divided by `length`, and real (last axis 1) when `onesided`.";
        BiasAdd { format: DataFormat } = "bias_add", Linalg, (x: T, bias: T), [T: Numeric],
            "`x + bias` along the channel axis of `format`.";
        /// `a_zero_point` is a scalar or one per row of `a` (`[m]`), `b_zero_point` a scalar or
        /// one per column of `b` (`[n]`); see `ops::quantized`.
        MatMulInteger = "matmul_integer", Linalg,
            (a: A, b: B, a_zero_point: A, b_zero_point: B), [A: Byte, B: Byte],
            "`(a - a_zero_point) @ (b - b_zero_point)` of i8/u8 operands, summed in i32; batch \
             axes broadcast.";

        /// `(x - mean) * scale / sqrt(variance + epsilon) + offset` along the channel axis.
        FusedBatchNorm { epsilon: f32, format: DataFormat } = "fused_batch_norm", Conv,
            (x: T, scale: U, offset: U, mean: U, variance: U), [T: Float, U: Float],
            "Inference batch normalization.";

        /// Sampling as ONNX's `GridSample` (opset 20): `mode` is `nearest` (ties to even),
        /// `linear` or `cubic` (Keys, `a = -0.75`), `padding_mode` `zeros`, `border` or
        /// `reflection`; computed in f64 and rounded once (see `ops::image::grid_sample`).
        GridSample { mode: SampleMode, padding_mode: SamplePadding, align_corners: bool } =
            "grid_sample",
            Image, (x: T, grid: T), [T: Float],
            "`x` (`[N, C, D1.., Dk]`) sampled at the normalized coordinates of `grid` \
             (`[N, O1.., Ok, k]`, innermost axis first), giving `[N, C, O1.., Ok]`.";
        /// ONNX's `RoiAlign`: `max` pools instead of averaging, `half_pixel` shifts the
        /// regions by half a pixel (see `ops::image::roi_align`); a batch index out of range
        /// is an error when it runs.
        RoiAlign {
            max: bool,
            half_pixel: bool,
            output_height: usize,
            output_width: usize,
            sampling_ratio: usize,
            spatial_scale: f32
        } = "roi_align", Image, (x: T, rois: T, batch_indices: Index), [T: Float],
            "Bins of bilinear samples of the regions `rois` (`[R, 4]`, `x1, y1, x2, y2`) of \
             the images `batch_indices` of `x` (NCHW), averaged or maxed: `[R, C, h, w]`.";
        /// ONNX's `Col2Im`; `pads` holds the begin paddings then the end paddings.
        Col2Im {
            image_shape: Vec<i64>,
            block_shape: Vec<i64>,
            dilations: Vec<i64>,
            pads: Vec<i64>,
            strides: Vec<i64>
        } = "col2im", Image, (x: T), [T: Float],
            "Columns `x` (`[N, C * prod(block_shape), blocks]`) added back into images \
             `[N, C, image_shape..]`: the inverse of im2col.";

        Softmax = "softmax", Reduce, (x: T), [T: Float], "Softmax over the last axis.";
        LogSoftmax = "log_softmax", Reduce, (x: T), [T: Float], "Log-softmax over the last axis.";
        ArgMax { output: DType } = "arg_max", Reduce, (x: T, axis: Index), [T: Numeric],
            "Index (dtype `output`) of the largest value of `x` along `axis` (a scalar).";
        /// Outputs: the values (`x`'s dtype) and their indices (i64). NaN ranks above every
        /// number; equal values keep the lower index first.
        TopK { axis: i64, largest: bool } = "top_k", Reduce, (x: T, k: Index), [T: Numeric],
            "The `k` (a scalar) largest or smallest values along `axis`, in order, and their \
             i64 indices.";

        Reshape = "reshape", Shape, (x: Any, shape: Index), [],
            "`x` with the shape `shape` (one entry may be -1).";
        Squeeze { axes: Vec<i64> } = "squeeze", Shape, (x: Any), [],
            "`x` without the listed size-1 axes (every size-1 axis when `axes` is empty).";
        ExpandDims = "expand_dims", Shape, (x: Any, axis: Index), [],
            "`x` with a size-1 axis inserted at `axis` (a scalar).";
        /// The third input, a scalar, is the constant value (zero when absent).
        Pad { mode: PadMode } = "pad", Shape, (x: T, paddings: Index, value: T [Optional]),
            [T: Any], "`x` padded by `paddings` (`[rank, 2]` of before/after).";
        Concat = "concat", Shape, (values: T [Variadic], axis: Index), [T: Any],
            "Concatenation of `values` along `axis` (a scalar).";
        /// Elements of one size keep `x`'s shape; otherwise the last axis is resized to hold
        /// the same bytes, as NumPy's `view` does (see `ops::shape::bitcast`).
        Bitcast { to: DType } = "bitcast", Shape, (x: Numeric), [],
            "The bytes of `x` read as elements of the numeric dtype `to`.";
        Transpose = "transpose", Shape, (x: Any, perm: Index), [],
            "`x` with its axes permuted by `perm`.";
        Shape { output: DType } = "shape", Shape, (x: Any), [],
            "The shape of `x` as a rank-1 tensor of dtype `output`.";
        Slice = "slice", Shape, (x: Any, begin: I, size: I), [I: Index],
            "Contiguous slice of `x` (a size of -1 means to the end).";
        Gather { batch_dims: i64 } = "gather", Shape, (params: Any, indices: Index, axis: Index),
            [], "Slices of `params` at `indices` along `axis` (an embedding lookup).";
        /// Indices may be negative (counting from the end of the axis), as in ONNX.
        GatherElements { axis: i64 } = "gather_elements", Shape, (x: Any, indices: Index), [],
            "Elements of `x` picked along `axis` by `indices` (of `x`'s rank), the output \
             shaped as `indices`.";
        /// The last axis of `indices` addresses axes `batch_dims..` of `params`; negative
        /// indices count from the end.
        GatherNd { batch_dims: usize } = "gather_nd", Shape, (params: Any, indices: Index), [],
            "Slices of `params` at the index tuples of `indices`'s last axis (ONNX GatherND).";
        /// Updates apply in row-major order of `indices` (with `none`, the last write wins).
        ScatterElements { axis: i64, reduction: ScatterReduction } = "scatter_elements", Shape,
            (x: T, indices: Index, updates: T), [T: Any],
            "`x` with each of `updates` stored (or combined by `reduction`) at its position, \
             moved along `axis` by `indices`.";
        /// Updates apply in row-major order of `indices` (with `none`, the last write wins).
        ScatterNd { reduction: ScatterReduction } = "scatter_nd", Shape,
            (x: T, indices: Index, updates: T), [T: Any],
            "`x` with slices of `updates` stored (or combined by `reduction`) at the index \
             tuples of `indices`'s last axis.";
        Trilu { upper: bool } = "trilu", Shape, (x: Any, k: Index), [],
            "`x` with zeros outside the upper (`j - i >= k`) or lower (`j - i <= k`) triangle \
             of its last two axes (`k` a scalar).";
        Pack { axis: i64 } = "pack", Shape, (values: T [Variadic]), [T: Any],
            "Stacks `values` along a new axis.";
        Unpack { axis: i64, num: usize } = "unpack", Shape, (x: Any), [],
            "Splits `x` along `axis` into `num` outputs (TensorFlow's Unstack).";
        Fill = "fill", Shape, (dims: Index, value: Any), [],
            "A tensor of shape `dims` filled with `value` (a scalar).";
        Range = "range", Shape, (start: T, limit: T, delta: T), [T: Numeric],
            "`start, start + delta, ...` below `limit` (scalars), as a 1-D tensor.";
        Tile = "tile", Shape, (x: Any, multiples: Index), [], "`x` repeated `multiples` times.";

        /// Both branches take `args` and return the op's outputs (see `ops::control_flow`).
        If { then_branch: Arc<Graph>, else_branch: Arc<Graph> } = "if", ControlFlow,
            (cond: Bool, args: Any [Variadic]), [],
            "`then_branch(args)` when `cond` (a scalar) is true, else `else_branch(args)`.";
        /// `cond` maps the carried values to a bool scalar, `body` to their next values.
        While { cond: Arc<Graph>, body: Arc<Graph> } = "while", ControlFlow,
            (init: Any [Variadic]), [],
            "Carries `init` through `body` while `cond` holds; returns the last values.";
        /// A `-1` in the element shape is a dim the loop writing the list refines.
        ListReserve { dtype: DType } = "list_reserve", ControlFlow,
            (element_shape: Index, num_elements: Index), [],
            "A zero tensor of `num_elements` rows of `element_shape` (a dense TensorList).";
        SetItem = "set_item", ControlFlow, (x: T, index: Index, item: T), [T: Any],
            "`x` with row `index` (a scalar) replaced by `item`.";
    }
    sets {
        Conv2D(ConvAttrs) = "conv2d", Conv, (x: T, filter: T), [T: Numeric],
            "2-D convolution with an HWIO filter.";
        DepthwiseConv2D(ConvAttrs) = "depthwise_conv2d", Conv, (x: T, filter: T), [T: Numeric],
            "Depthwise 2-D convolution with a `[kh, kw, in, multiplier]` filter.";
        /// `x_zero_point` is a scalar, `filter_zero_point` a scalar or one per output channel;
        /// see `ops::quantized`.
        Conv2DInteger(ConvAttrs) = "conv2d_integer", Conv,
            (x: X, filter: W, x_zero_point: X, filter_zero_point: W), [X: Byte, W: Byte],
            "2-D convolution of `x - x_zero_point` with the HWIO `filter - filter_zero_point` \
             (i8/u8), summed in i32.";
        MaxPool(PoolAttrs) = "max_pool", Conv, (x: T), [T: NumericButU64],
            "Max pooling over spatial windows.";
        AvgPool(PoolAttrs) = "avg_pool", Conv, (x: T), [T: Float],
            "Average pooling; `SAME` padding divides by the in-bounds cells.";
        StridedSlice(StridedSliceAttrs) = "strided_slice", Shape,
            (x: Any, begin: I, end: I, strides: I), [I: Index],
            "TensorFlow's strided slice of `x`.";
    }
    kinds {
        /// `f(x)`.
        Unary(UnaryOp), Elementwise, (x: T), [];
        /// `f(x, y)` with broadcasting; comparisons give bool.
        Binary(BinaryOp), Elementwise, (x: T, y: T), [];
    }
    kinds_with_attrs {
        /// Reduction of `x` over the axes in the second input (negative counts from the end).
        Reduce { kind: ReduceKind, keep_dims: bool }, Reduce, (x: T, axes: Index), [];
        /// A running sum or product of `x` along the axis in the second input (a scalar).
        Cumulative { kind: CumulativeKind, exclusive: bool, reverse: bool }, Reduce,
            (x: T, axis: Index), [];
        /// A group of ops lowered as one kernel: the body graph maps the node's inputs to its
        /// outputs (see `ops::fused`).
        Fused { kind: FusedKind, body: Arc<Graph> }, Fused, (inputs: Any [Variadic]), [];
    }
}

/// An attribute value as the text format sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Bool(bool),
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
    DType(DType),
    Tensor(Arc<Tensor>),
    /// A nested graph (the body of a fused node).
    Graph(Arc<Graph>),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Ints(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            AttrValue::Float(x) => write!(f, "{x:?}"),
            AttrValue::Str(s) => write!(f, "{s:?}"),
            AttrValue::DType(d) => write!(f, "{d}"),
            AttrValue::Tensor(t) => write!(f, "{t:?}"),
            AttrValue::Graph(g) => write!(f, "graph @{} ({} nodes)", g.name, g.len()),
        }
    }
}

/// The op families, as the architecture guide groups them (in the order docs list them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Control,
    Elementwise,
    Linalg,
    Conv,
    Image,
    Reduce,
    Shape,
    ControlFlow,
    Fused,
}

impl Family {
    /// The family's name, which is also its module (`elementwise`, `shape`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Family::Control => "control",
            Family::Elementwise => "elementwise",
            Family::Linalg => "linalg",
            Family::Conv => "conv",
            Family::Image => "image",
            Family::Reduce => "reduce",
            Family::Shape => "shape",
            Family::ControlFlow => "control_flow",
            Family::Fused => "fused",
        }
    }
}

impl Op {
    /// Output types from input types. `consts[i]` is the value of input `i` when it is a
    /// constant, which ops with configuration inputs (reshape, reduce axes, ...) use.
    /// This is also where an op checks its invariants: a type error here is a verifier error.
    /// `Input` and `Const` are typed by the graph, not here.
    pub fn infer(
        &self,
        inputs: &[TensorType],
        consts: &[Option<&Tensor>],
    ) -> OpResult<Vec<TensorType>> {
        let out = match self.family() {
            Family::Control => control::infer(self, inputs),
            Family::Elementwise => elementwise::infer(self, inputs),
            Family::Linalg => linalg::infer(self, inputs),
            Family::Conv => conv::infer(self, inputs),
            Family::Image => image::infer(self, inputs),
            Family::Reduce => reduce::infer(self, inputs, consts),
            Family::Shape => shape::infer(self, inputs, consts),
            Family::ControlFlow => control_flow::infer(self, inputs, consts),
            Family::Fused => fused::infer(self, inputs),
        }?;
        // The family checked shapes and its own invariants; the declared dtype rule is the
        // last word on dtypes, so the table and type checking cannot disagree.
        self.info().check_dtypes(inputs)?;
        Ok(out)
    }

    /// The reference meaning of the op: naive, obviously correct evaluation on concrete
    /// tensors. `Input` is bound by the interpreter, not evaluated here.
    pub fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        match self.family() {
            Family::Control => control::eval(self, inputs),
            Family::Elementwise => elementwise::eval(self, inputs),
            Family::Linalg => linalg::eval(self, inputs),
            Family::Conv => conv::eval(self, inputs),
            Family::Image => image::eval(self, inputs),
            Family::Reduce => reduce::eval(self, inputs),
            Family::Shape => shape::eval(self, inputs),
            Family::ControlFlow => control_flow::eval(self, inputs),
            Family::Fused => fused::eval(self, inputs),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One op of every attribute shape, for round-trip checks of `attrs` / `from_parts`.
    fn samples() -> Vec<Op> {
        let conv = ConvAttrs {
            strides: [2, 1],
            dilations: [1, 3],
            padding: Padding::Explicit([[0, 1], [2, 3]]),
            format: DataFormat::Nchw,
        };
        let pool = PoolAttrs {
            ksize: [3, 3],
            strides: [2, 2],
            padding: Padding::Same,
            format: DataFormat::Nhwc,
        };
        let mut v = vec![
            Op::Identity,
            Op::IdentityN,
            Op::StopGradient,
            Op::NoOp,
            Op::Cast { to: DType::I64 },
            Op::Select,
            Op::MatMul {
                transpose_a: false,
                transpose_b: true,
            },
            Op::BatchMatMul {
                adj_x: true,
                adj_y: false,
            },
            Op::Einsum {
                equation: "abc,cd->abd".into(),
            },
            Op::BiasAdd {
                format: DataFormat::Nhwc,
            },
            Op::MatMulInteger,
            Op::Det,
            Op::Dft {
                axis: -2,
                length: 8,
                inverse: true,
                onesided: false,
            },
            Op::Conv2D(conv.clone()),
            Op::Conv2DInteger(conv.clone()),
            Op::DepthwiseConv2D(conv),
            Op::MaxPool(pool.clone()),
            Op::AvgPool(pool),
            Op::FusedBatchNorm {
                epsilon: 1e-3,
                format: DataFormat::Nhwc,
            },
            Op::GridSample {
                mode: SampleMode::Cubic,
                padding_mode: SamplePadding::Reflection,
                align_corners: true,
            },
            Op::RoiAlign {
                max: true,
                half_pixel: false,
                output_height: 2,
                output_width: 3,
                sampling_ratio: 0,
                spatial_scale: 0.25,
            },
            Op::Col2Im {
                image_shape: vec![4, 5],
                block_shape: vec![2, 2],
                dilations: vec![1, 2],
                pads: vec![0, 1, 0, 1],
                strides: vec![2, 1],
            },
            Op::Softmax,
            Op::LogSoftmax,
            Op::ArgMax { output: DType::I32 },
            Op::Reshape,
            Op::Squeeze { axes: vec![0, -1] },
            Op::ExpandDims,
            Op::Pad {
                mode: PadMode::Reflect,
            },
            Op::Concat,
            Op::Transpose,
            Op::Bitcast { to: DType::U16 },
            Op::Shape { output: DType::I32 },
            Op::StridedSlice(StridedSliceAttrs {
                begin_mask: 1,
                end_mask: 2,
                ellipsis_mask: 0,
                new_axis_mask: 4,
                shrink_axis_mask: 8,
            }),
            Op::Slice,
            Op::Gather { batch_dims: 1 },
            Op::GatherElements { axis: -1 },
            Op::GatherNd { batch_dims: 1 },
            Op::ScatterElements {
                axis: 1,
                reduction: ScatterReduction::Max,
            },
            Op::ScatterNd {
                reduction: ScatterReduction::None,
            },
            Op::Trilu { upper: true },
            Op::TopK {
                axis: -1,
                largest: false,
            },
            Op::Pack { axis: -1 },
            Op::Unpack { axis: 0, num: 3 },
            Op::Fill,
            Op::Range,
            Op::Tile,
        ];
        v.extend(UnaryOp::ALL.map(Op::Unary));
        v.extend(BinaryOp::ALL.map(Op::Binary));
        v.extend(ReduceKind::ALL.map(|kind| Op::Reduce {
            kind,
            keep_dims: true,
        }));
        v.extend(CumulativeKind::ALL.map(|kind| Op::Cumulative {
            kind,
            exclusive: true,
            reverse: false,
        }));
        v
    }

    #[test]
    fn attrs_round_trip_through_from_parts() {
        for op in samples() {
            let attrs: Vec<(String, AttrValue)> = op
                .attrs()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
            let back = Op::from_parts(op.mnemonic(), &attrs)
                .unwrap_or_else(|e| panic!("{}: {e}", op.mnemonic()));
            assert_eq!(back, op);
        }
    }

    #[test]
    fn from_parts_rejects_bad_attributes() {
        let e =
            Op::from_parts("matmul", &[("transpose_a".into(), AttrValue::Bool(true))]).unwrap_err();
        assert!(e.contains("missing attribute `transpose_b`"), "{e}");
        let e = Op::from_parts("relu", &[("x".into(), AttrValue::Int(1))]).unwrap_err();
        assert!(e.contains("unknown attribute `x`"), "{e}");
        assert!(Op::from_parts("frobnicate", &[]).is_err());
    }
}
