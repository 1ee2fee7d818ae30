//! Linalg family: `matmul`, `batch_matmul`, `einsum`, `bias_add` (and `matmul_integer`, whose
//! meaning is in [`super::quantized`], `det`, in [`det`], and `dft`, in [`dft`]).
//!
//! Every product runs through one batched GEMM ([`batched_gemm`]): `einsum` permutes and
//! reshapes its operands into `[batch, m, k] @ [batch, k, n]`, so it runs at GEMM speed. f32 and
//! f64 use ndarray's `general_mat_mul`; f16/bf16 are computed in f32 and integers in i64 with
//! wrapping arithmetic (which equals fixed-width wrapping after the cast back). The numeric
//! dispatch ([`Kernel`], [`dispatch`]) is shared with the conv family.

use super::common::{broadcast_concrete, broadcast_shapes, expect_arity};
use super::{quantized, DataFormat, Op, OpResult};
use crate::{DType, Dim, Elem, Shape, Tensor, TensorType};
use ndarray::linalg::general_mat_mul;
use ndarray::{
    Array3, ArrayD, ArrayView2, ArrayView3, ArrayViewD, ArrayViewMut2, Axis, CowArray, Ix3, IxDyn,
    LinalgScalar,
};
use std::borrow::Cow;

pub mod det;
pub mod dft;

// ---- numeric dispatch shared with conv ------------------------------------------------------

/// A type the kernels compute in: f32, f64, or i64 (integers, wrapping like fixed-width ints).
pub(super) trait Scalar: Elem + LinalgScalar {
    /// `c = a @ b`, overwriting `c` (any strides).
    fn gemm(a: ArrayView2<'_, Self>, b: ArrayView2<'_, Self>, c: ArrayViewMut2<'_, Self>);
    /// `self + o` (wrapping for integers).
    fn plus(self, o: Self) -> Self;
    /// `self - o` (wrapping for integers).
    fn minus(self, o: Self) -> Self;
    /// `self * o` (wrapping for integers).
    fn times(self, o: Self) -> Self;
}

macro_rules! float_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            fn gemm(a: ArrayView2<'_, $t>, b: ArrayView2<'_, $t>, mut c: ArrayViewMut2<'_, $t>) {
                general_mat_mul(1.0, &a, &b, 0.0, &mut c);
            }
            fn plus(self, o: $t) -> $t {
                self + o
            }
            fn minus(self, o: $t) -> $t {
                self - o
            }
            fn times(self, o: $t) -> $t {
                self * o
            }
        }
    };
}
float_scalar!(f32);
float_scalar!(f64);

impl Scalar for i64 {
    fn gemm(a: ArrayView2<'_, i64>, b: ArrayView2<'_, i64>, mut c: ArrayViewMut2<'_, i64>) {
        // Integer products are rare in inference graphs; a plain loop is enough, and it wraps
        // where ndarray's generic product would panic on overflow in debug builds.
        let (m, k) = a.dim();
        let n = b.dim().1;
        for i in 0..m {
            for j in 0..n {
                let mut s = 0i64;
                for p in 0..k {
                    s = s.wrapping_add(a[[i, p]].wrapping_mul(b[[p, j]]));
                }
                c[[i, j]] = s;
            }
        }
    }
    fn plus(self, o: i64) -> i64 {
        self.wrapping_add(o)
    }
    fn minus(self, o: i64) -> i64 {
        self.wrapping_sub(o)
    }
    fn times(self, o: i64) -> i64 {
        self.wrapping_mul(o)
    }
}

/// A computation written once over the compute type and run by [`dispatch`].
pub(super) trait Kernel {
    /// Computes the result from the inputs, all converted to the compute type `T`.
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>>;
}

/// The dtypes a kernel is defined on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Accept {
    /// f16, bf16, f32, f64.
    Float,
    /// Floats and integers (not bool).
    Numeric,
}

impl Accept {
    fn admits(self, dt: DType) -> bool {
        match self {
            Accept::Float => dt.is_float(),
            Accept::Numeric => dt.is_numeric(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Accept::Float => "a float",
            Accept::Numeric => "a numeric",
        }
    }
}

/// Runs `k` in the compute type of `inputs[0]`'s dtype (every input is converted to it) and
/// casts the result back to that dtype.
pub(super) fn dispatch<K: Kernel>(
    op: &str,
    k: &K,
    inputs: &[&Tensor],
    accept: Accept,
) -> OpResult<Tensor> {
    let dt = inputs[0].dtype();
    if !accept.admits(dt) {
        return Err(format!("{op}: dtype {dt} is not supported"));
    }
    match dt {
        DType::F64 => run_as::<f64, K>(k, inputs, dt),
        DType::F32 | DType::F16 | DType::BF16 => run_as::<f32, K>(k, inputs, dt),
        _ => run_as::<i64, K>(k, inputs, dt),
    }
}

fn run_as<T: Scalar, K: Kernel>(k: &K, inputs: &[&Tensor], dt: DType) -> OpResult<Tensor> {
    let arrays: Vec<Cow<'_, ArrayD<T>>> = inputs.iter().map(|t| to_compute::<T>(t)).collect();
    let views: Vec<ArrayViewD<'_, T>> = arrays.iter().map(|a| a.view()).collect();
    let out = T::wrap(k.run(&views)?);
    // `cast` clones when the dtype already matches; skip that copy.
    Ok(if dt == T::DTYPE { out } else { out.cast(dt) })
}

/// The tensor's elements in the compute type, borrowed when it already is that type.
fn to_compute<T: Scalar>(t: &Tensor) -> Cow<'_, ArrayD<T>> {
    if let Some(a) = T::view(t) {
        return Cow::Borrowed(a);
    }
    // Integers go through i64 so that 64-bit values stay exact.
    Cow::Owned(if T::DTYPE.is_float() {
        crate::tensor_match!(t, a => a.mapv(|x| T::from_f64(Elem::to_f64(x))))
    } else {
        crate::tensor_match!(t, a => a.mapv(|x| T::from_i64(Elem::to_i64(x))))
    })
}

// ---- type-checking helpers shared with conv -------------------------------------------------

/// The common dtype of `inputs`, which must all be of one dtype that `accept` admits.
pub(super) fn common_dtype(op: &str, inputs: &[TensorType], accept: Accept) -> OpResult<DType> {
    let dt = inputs[0].dtype;
    if let Some(t) = inputs.iter().find(|t| t.dtype != dt) {
        return Err(format!(
            "{op}: operand dtypes differ: {} and {t}",
            inputs[0]
        ));
    }
    if !accept.admits(dt) {
        return Err(format!(
            "{op} needs {} tensor, got {}",
            accept.describe(),
            inputs[0]
        ));
    }
    Ok(dt)
}

/// The more informative of two dims that must be equal: a known size, else a symbol.
pub(super) fn unify(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(_), _) => a.clone(),
        (_, Dim::Known(_)) => b.clone(),
        (Dim::Sym(_), _) => a.clone(),
        _ => b.clone(),
    }
}

/// The channel axis of a rank-`rank` tensor: last for NHWC, 1 for NCHW.
pub(super) fn channel_axis(format: DataFormat, rank: usize) -> usize {
    match format {
        DataFormat::Nhwc => rank - 1,
        DataFormat::Nchw => 1,
    }
}

/// `f(x, channel)` for every element of `x`, where `channel` is the index along `axis`.
pub(super) fn map_channels<T: Scalar>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    f: impl Fn(T, usize) -> T,
) -> ArrayD<T> {
    let shape = x.shape().to_vec();
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let x = x.as_standard_layout();
    let src = x.as_slice().expect("standard layout is contiguous");
    let mut out = Vec::with_capacity(src.len());
    if inner == 1 {
        // Channels last: each run of `channels` elements is one position.
        for run in src.chunks(channels.max(1)) {
            out.extend(run.iter().enumerate().map(|(c, &v)| f(v, c)));
        }
    } else {
        // Row-major order visits `inner` consecutive elements per channel, channels cycling.
        for (i, run) in src.chunks(inner.max(1)).enumerate() {
            let c = i % channels;
            out.extend(run.iter().map(|&v| f(v, c)));
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).expect("same element count")
}

// ---- infer -----------------------------------------------------------------------------------

/// Output types of linalg ops.
pub fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    let out = match op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => infer_matmul(inputs, *transpose_a, *transpose_b)?,
        Op::BatchMatMul { adj_x, adj_y } => infer_batch_matmul(inputs, *adj_x, *adj_y)?,
        Op::Einsum { equation } => infer_einsum(equation, inputs)?,
        Op::BiasAdd { format } => infer_bias_add(inputs, *format)?,
        Op::MatMulInteger => quantized::infer_matmul_integer(inputs)?,
        Op::Det => det::infer_det(inputs)?,
        Op::Dft {
            axis,
            length,
            inverse,
            onesided,
        } => dft::infer_dft(inputs, *axis, *length, *inverse, *onesided)?,
        _ => unreachable!("{op:?} is not a linalg op"),
    };
    Ok(vec![out])
}

/// `(rows, cols)` of the matrix in the last two dims, after an optional transpose.
fn matrix_dims(t: &TensorType, transpose: bool) -> (Dim, Dim) {
    let d = t.shape.dims();
    let (r, c) = (d[d.len() - 2].clone(), d[d.len() - 1].clone());
    if transpose {
        (c, r)
    } else {
        (r, c)
    }
}

/// The `[m, n]` of `a @ b`, checking that the inner dims agree.
pub(super) fn product_dims(
    op: &str,
    a: &TensorType,
    b: &TensorType,
    ta: bool,
    tb: bool,
) -> OpResult<(Dim, Dim)> {
    let (m, k1) = matrix_dims(a, ta);
    let (k2, n) = matrix_dims(b, tb);
    if !k1.compatible(&k2) {
        let t = |yes: bool| if yes { " (transposed)" } else { "" };
        return Err(format!(
            "{op}: inner dimensions do not match: {a}{} @ {b}{} contracts {k1} with {k2}",
            t(ta),
            t(tb)
        ));
    }
    Ok((m, n))
}

fn infer_matmul(inputs: &[TensorType], ta: bool, tb: bool) -> OpResult<TensorType> {
    expect_arity("matmul", inputs, 2)?;
    let dt = common_dtype("matmul", inputs, Accept::Numeric)?;
    let (a, b) = (&inputs[0], &inputs[1]);
    if a.rank() != 2 || b.rank() != 2 {
        return Err(format!("matmul needs rank-2 operands, got {a} and {b}"));
    }
    let (m, n) = product_dims("matmul", a, b, ta, tb)?;
    Ok(TensorType::new(dt, Shape(vec![m, n])))
}

fn infer_batch_matmul(inputs: &[TensorType], adj_x: bool, adj_y: bool) -> OpResult<TensorType> {
    expect_arity("batch_matmul", inputs, 2)?;
    let dt = common_dtype("batch_matmul", inputs, Accept::Numeric)?;
    let (a, b) = (&inputs[0], &inputs[1]);
    if a.rank() < 2 || b.rank() < 2 {
        return Err(format!(
            "batch_matmul needs operands of rank at least 2, got {a} and {b}"
        ));
    }
    let batch_a = Shape(a.shape.dims()[..a.rank() - 2].to_vec());
    let batch_b = Shape(b.shape.dims()[..b.rank() - 2].to_vec());
    let mut dims = broadcast_shapes(&batch_a, &batch_b)
        .map_err(|_| format!("batch_matmul: batch dimensions of {a} and {b} do not broadcast"))?
        .0;
    let (m, n) = product_dims("batch_matmul", a, b, adj_x, adj_y)?;
    dims.extend([m, n]);
    Ok(TensorType::new(dt, Shape(dims)))
}

fn infer_bias_add(inputs: &[TensorType], format: DataFormat) -> OpResult<TensorType> {
    expect_arity("bias_add", inputs, 2)?;
    common_dtype("bias_add", inputs, Accept::Numeric)?;
    let (x, bias) = (&inputs[0], &inputs[1]);
    if x.rank() < 2 {
        return Err(format!(
            "bias_add needs an input of rank at least 2, got {x}"
        ));
    }
    if bias.rank() != 1 {
        return Err(format!("bias_add needs a 1-D bias, got {bias}"));
    }
    let c = &x.shape.dims()[channel_axis(format, x.rank())];
    let len = &bias.shape.dims()[0];
    if !c.compatible(len) {
        return Err(format!(
            "bias_add: bias {bias} has {len} elements but input {x} has {c} channels ({})",
            format.name()
        ));
    }
    Ok(x.clone())
}

// ---- einsum equations ----------------------------------------------------------------------

/// A parsed einsum equation: one letter per axis of each operand, and of the output.
#[derive(Clone, Debug, PartialEq)]
pub struct Equation {
    /// Each operand's subscripts, one letter per axis.
    pub inputs: Vec<Vec<char>>,
    /// The output's subscripts (NumPy's implicit output when the equation has no `->`).
    pub output: Vec<char>,
}

/// Parses an einsum equation: letters only, no ellipsis, no index repeated within a term.
pub fn parse_equation(equation: &str) -> OpResult<Equation> {
    let bad = |why: String| format!("unsupported einsum equation {equation:?}: {why}");
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') {
        return Err(bad("ellipsis (`...`) is not supported".into()));
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((_, r)) if r.contains("->") => return Err(bad("more than one `->`".into())),
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let term = |s: &str, what: &str| -> OpResult<Vec<char>> {
        let mut letters = Vec::new();
        for c in s.chars() {
            if !c.is_ascii_alphabetic() {
                return Err(bad(format!("unexpected character {c:?} in {what}")));
            }
            if letters.contains(&c) {
                return Err(bad(format!(
                    "index '{c}' is repeated in {what} (diagonals are not supported)"
                )));
            }
            letters.push(c);
        }
        Ok(letters)
    };
    let inputs = lhs
        .split(',')
        .enumerate()
        .map(|(i, s)| term(s, &format!("operand {i}")))
        .collect::<OpResult<Vec<_>>>()?;
    let output = match rhs {
        Some(r) => {
            let out = term(r, "the output")?;
            if let Some(c) = out.iter().find(|c| !inputs.iter().any(|t| t.contains(c))) {
                return Err(bad(format!(
                    "output index '{c}' does not appear in any operand"
                )));
            }
            out
        }
        // NumPy's implicit output: the indices that appear once, in alphabetical order.
        None => {
            let mut once: Vec<char> = inputs
                .iter()
                .flatten()
                .copied()
                .filter(|c| inputs.iter().filter(|t| t.contains(c)).count() == 1)
                .collect();
            once.sort_unstable();
            once
        }
    };
    Ok(Equation { inputs, output })
}

/// The size of every index, checked across operands; in first-appearance order.
fn index_dims(equation: &str, eq: &Equation, inputs: &[TensorType]) -> OpResult<Vec<(char, Dim)>> {
    if eq.inputs.len() != inputs.len() {
        return Err(format!(
            "unsupported einsum equation {equation:?}: it has {} operand(s) but the op has {} input(s)",
            eq.inputs.len(),
            inputs.len()
        ));
    }
    let mut dims: Vec<(char, Dim, usize)> = Vec::new();
    for (i, (letters, t)) in eq.inputs.iter().zip(inputs).enumerate() {
        if letters.len() != t.rank() {
            return Err(format!(
                "einsum {equation:?}: operand {i} is {t}, of rank {}, but its subscripts {:?} name {} axes",
                t.rank(),
                letters.iter().collect::<String>(),
                letters.len()
            ));
        }
        for (&c, d) in letters.iter().zip(t.shape.dims()) {
            match dims.iter_mut().find(|(l, _, _)| *l == c) {
                Some((_, seen, j)) => {
                    if !seen.compatible(d) {
                        return Err(format!(
                            "einsum {equation:?}: index '{c}' is {seen} in operand {j} ({}) but {d} in operand {i} ({t})",
                            inputs[*j]
                        ));
                    }
                    *seen = unify(seen, d);
                }
                None => dims.push((c, d.clone(), i)),
            }
        }
    }
    Ok(dims.into_iter().map(|(c, d, _)| (c, d)).collect())
}

fn infer_einsum(equation: &str, inputs: &[TensorType]) -> OpResult<TensorType> {
    let eq = parse_equation(equation)?;
    if inputs.is_empty() {
        return Err(format!("einsum {equation:?} needs at least one input"));
    }
    let dims = index_dims(equation, &eq, inputs)?;
    let dt = common_dtype("einsum", inputs, Accept::Numeric)?;
    let out = eq
        .output
        .iter()
        .map(|c| {
            dims.iter()
                .find(|(l, _)| l == c)
                .map(|(_, d)| d.clone())
                .expect("output indices appear in an operand")
        })
        .collect();
    Ok(TensorType::new(dt, Shape(out)))
}

// ---- eval ------------------------------------------------------------------------------------

/// Evaluates linalg ops.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    // The type check is the same as the verifier's, so eval never sees a malformed op.
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    infer(op, &types)?;
    let name = op.mnemonic();
    let out = match op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => dispatch(
            name,
            &BatchMatMulKernel {
                adj_a: *transpose_a,
                adj_b: *transpose_b,
            },
            inputs,
            Accept::Numeric,
        )?,
        Op::BatchMatMul { adj_x, adj_y } => dispatch(
            name,
            &BatchMatMulKernel {
                adj_a: *adj_x,
                adj_b: *adj_y,
            },
            inputs,
            Accept::Numeric,
        )?,
        Op::Einsum { equation } => dispatch(
            name,
            &EinsumKernel {
                eq: parse_equation(equation)?,
            },
            inputs,
            Accept::Numeric,
        )?,
        Op::BiasAdd { format } => dispatch(name, &BiasAddKernel(*format), inputs, Accept::Numeric)?,
        Op::MatMulInteger => quantized::eval_matmul_integer(inputs)?,
        Op::Det => det::eval_det(inputs[0])?,
        Op::Dft {
            axis,
            length,
            inverse,
            onesided,
        } => dft::eval_dft(inputs[0], *axis, *length, *inverse, *onesided)?,
        _ => unreachable!("{op:?} is not a linalg op"),
    };
    Ok(vec![out])
}

/// `out[o] = a[pairs[o].0] @ b[pairs[o].1]` over 3-D `[batch, m, k]` and `[batch, k, n]` views.
pub(super) fn batched_gemm<T: Scalar>(
    a: ArrayView3<'_, T>,
    b: ArrayView3<'_, T>,
    pairs: &[(usize, usize)],
) -> Array3<T> {
    let (m, n) = (a.dim().1, b.dim().2);
    let mut out = Array3::zeros((pairs.len(), m, n));
    for (o, &(ia, ib)) in pairs.iter().enumerate() {
        T::gemm(
            a.index_axis(Axis(0), ia),
            b.index_axis(Axis(0), ib),
            out.index_axis_mut(Axis(0), o),
        );
    }
    out
}

/// For each row-major position in `out_shape`, the flat index of the element of a
/// (right-aligned, NumPy-broadcast) operand of `in_shape` that it reads.
fn broadcast_sources(out_shape: &[usize], in_shape: &[usize]) -> Vec<usize> {
    let total: usize = out_shape.iter().product();
    let offset = out_shape.len() - in_shape.len();
    // Row-major strides of the input, zero along broadcast (size-1) axes.
    let mut strides = vec![0; in_shape.len()];
    let mut s = 1;
    for i in (0..in_shape.len()).rev() {
        strides[i] = if in_shape[i] == 1 { 0 } else { s };
        s *= in_shape[i];
    }
    (0..total)
        .map(|mut flat| {
            let mut src = 0;
            for i in (0..out_shape.len()).rev() {
                let idx = flat % out_shape[i];
                flat /= out_shape[i];
                if i >= offset {
                    src += idx * strides[i - offset];
                }
            }
            src
        })
        .collect()
}

/// A view of `x` (`[batch..., r, c]`) as 3-D `[batch, r, c]`, transposed to `[batch, c, r]`
/// when `adj`.
fn as_batched<'a, T: Scalar>(x: &'a ArrayViewD<'_, T>, adj: bool) -> CowArray<'a, T, Ix3> {
    let s = x.shape();
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    let batch: usize = s[..s.len() - 2].iter().product();
    let mut v = x.to_shape((batch, r, c)).expect("same element count");
    if adj {
        v.swap_axes(1, 2);
    }
    v
}

/// `matmul` and `batch_matmul` (matmul is the rank-2 case).
pub(super) struct BatchMatMulKernel {
    pub(super) adj_a: bool,
    pub(super) adj_b: bool,
}

impl Kernel for BatchMatMulKernel {
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>> {
        let (a, b) = (&xs[0], &xs[1]);
        let (sa, sb) = (a.shape(), b.shape());
        let batch_a = &sa[..sa.len() - 2];
        let batch_b = &sb[..sb.len() - 2];
        let batch = broadcast_concrete(batch_a, batch_b)?;
        let a3 = as_batched(a, self.adj_a);
        let b3 = as_batched(b, self.adj_b);
        let (m, k, n) = (a3.dim().1, a3.dim().2, b3.dim().2);
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        let out = if batch_b.iter().product::<usize>() == 1 && !self.adj_a {
            // One right-hand matrix (a dense layer over a batch): fold a's batch into its rows
            // and run a single large GEMM.
            let rows: usize = batch_a.iter().product::<usize>() * m;
            let a2 = a.to_shape((rows, k)).expect("same element count");
            let mut out = ndarray::Array2::zeros((rows, n));
            T::gemm(a2.view(), b3.index_axis(Axis(0), 0), out.view_mut());
            out.into_dyn()
        } else {
            let pairs: Vec<(usize, usize)> = broadcast_sources(&batch, batch_a)
                .into_iter()
                .zip(broadcast_sources(&batch, batch_b))
                .collect();
            batched_gemm(a3.view(), b3.view(), &pairs).into_dyn()
        };
        Ok(out
            .into_shape_with_order(IxDyn(&out_shape))
            .expect("same element count"))
    }
}

struct BiasAddKernel(DataFormat);

impl Kernel for BiasAddKernel {
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>> {
        let (x, bias) = (&xs[0], &xs[1]);
        let bias: Vec<T> = bias.iter().copied().collect();
        Ok(map_channels(x, channel_axis(self.0, x.ndim()), |v, c| {
            v.plus(bias[c])
        }))
    }
}

struct EinsumKernel {
    eq: Equation,
}

impl Kernel for EinsumKernel {
    fn run<T: Scalar>(&self, xs: &[ArrayViewD<'_, T>]) -> OpResult<ArrayD<T>> {
        let eq = &self.eq;
        let n = xs.len();
        // Contract left to right; after step i only the indices that the output or a later
        // operand uses are kept.
        let mut letters = eq.inputs[0].clone();
        let mut acc: CowArray<'_, T, IxDyn> = CowArray::from(xs[0].view());
        for (i, (x, lb)) in xs.iter().zip(&eq.inputs).enumerate().skip(1) {
            let mut keep = eq.output.clone();
            keep.extend(eq.inputs[i + 1..].iter().flatten());
            // On the last step, put the operands in whichever order yields the output's axis
            // order directly, saving the final transpose (e.g. attention's "aecd,abcd->acbe").
            let swap = i == n - 1
                && result_letters(&letters, lb, &keep) != eq.output
                && result_letters(lb, &letters, &keep) == eq.output;
            let (l, out) = if swap {
                contract(lb, x.view(), &letters, acc.view(), &keep)
            } else {
                contract(&letters, acc.view(), lb, x.view(), &keep)
            };
            letters = l;
            acc = CowArray::from(out);
        }
        let (letters, acc) = sum_out(&letters, acc.view(), &eq.output);
        let perm: Vec<usize> = eq
            .output
            .iter()
            .map(|c| letters.iter().position(|l| l == c).expect("output index"))
            .collect();
        Ok(acc
            .view()
            .permuted_axes(IxDyn(&perm))
            .as_standard_layout()
            .into_owned())
    }
}

/// The axis letters of [`contract`]'s result: batch, then `a`'s free, then `b`'s free indices.
fn result_letters(la: &[char], lb: &[char], keep: &[char]) -> Vec<char> {
    let kept = |c: &&char| keep.contains(c);
    let mut out: Vec<char> = la
        .iter()
        .filter(|c| lb.contains(c))
        .filter(kept)
        .copied()
        .collect();
    out.extend(la.iter().filter(|c| !lb.contains(c)).filter(kept));
    out.extend(lb.iter().filter(|c| !la.contains(c)).filter(kept));
    out
}

/// Sums `x` over the axes whose letters are not in `keep`; returns the remaining letters.
fn sum_out<'a, T: Scalar>(
    letters: &[char],
    x: ArrayViewD<'a, T>,
    keep: &[char],
) -> (Vec<char>, CowArray<'a, T, IxDyn>) {
    let (kept, summed): (Vec<usize>, Vec<usize>) =
        (0..letters.len()).partition(|&i| keep.contains(&letters[i]));
    let out_letters: Vec<char> = kept.iter().map(|&i| letters[i]).collect();
    if summed.is_empty() {
        return (out_letters, CowArray::from(x));
    }
    let dims: Vec<usize> = kept.iter().map(|&i| x.shape()[i]).collect();
    let rows: usize = dims.iter().product();
    let cols: usize = summed.iter().map(|&i| x.shape()[i]).product();
    let perm: Vec<usize> = kept.iter().chain(&summed).copied().collect();
    let permuted = x.permuted_axes(IxDyn(&perm));
    let m = permuted.to_shape((rows, cols)).expect("same element count");
    let sums: Vec<T> = m
        .rows()
        .into_iter()
        .map(|r| r.iter().fold(T::zero(), |s, &v| s.plus(v)))
        .collect();
    let out = ArrayD::from_shape_vec(IxDyn(&dims), sums).expect("same element count");
    (out_letters, CowArray::from(out))
}

/// `x` arranged as 3-D `[batch, free, contracted]`, copying only when no reshape of the
/// existing layout (possibly transposed in the last two axes) gives it.
fn arrange<'a, T: Scalar>(
    x: ArrayViewD<'a, T>,
    letters: &[char],
    batch: &[char],
    free: &[char],
    contracted: &[char],
) -> CowArray<'a, T, Ix3> {
    let pos = |c: &char| {
        letters
            .iter()
            .position(|l| l == c)
            .expect("index of operand")
    };
    let size = |cs: &[char]| cs.iter().map(|c| x.shape()[pos(c)]).product::<usize>();
    let (bt, f, k) = (size(batch), size(free), size(contracted));
    let perm_of = |groups: [&[char]; 3]| -> Vec<usize> {
        groups.iter().flat_map(|g| g.iter()).map(pos).collect()
    };
    let identity = |p: &[usize]| p.iter().enumerate().all(|(i, &j)| i == j);
    let natural = perm_of([batch, free, contracted]);
    if x.is_standard_layout() {
        if identity(&natural) {
            let v = x.into_shape_with_order((bt, f, k));
            return CowArray::from(v.expect("same element count"));
        }
        if identity(&perm_of([batch, contracted, free])) {
            let mut v = x
                .into_shape_with_order((bt, k, f))
                .expect("same element count");
            v.swap_axes(1, 2);
            return CowArray::from(v);
        }
    }
    let permuted = x.permuted_axes(IxDyn(&natural));
    let owned = permuted
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((bt, f, k))
        .expect("same element count");
    CowArray::from(owned)
}

/// Contracts two operands over their shared indices not in `keep`, summing out any index
/// that only one operand has and `keep` lacks. Result axes: [`result_letters`].
fn contract<T: Scalar>(
    la: &[char],
    a: ArrayViewD<'_, T>,
    lb: &[char],
    b: ArrayViewD<'_, T>,
    keep: &[char],
) -> (Vec<char>, ArrayD<T>) {
    let with = |extra: &[char]| -> Vec<char> { keep.iter().chain(extra).copied().collect() };
    let (la, a) = sum_out(la, a, &with(lb));
    let (lb, b) = sum_out(lb, b.view(), &with(&la));
    let batch: Vec<char> = la
        .iter()
        .filter(|c| lb.contains(c) && keep.contains(c))
        .copied()
        .collect();
    let contracted: Vec<char> = la
        .iter()
        .filter(|c| lb.contains(c) && !keep.contains(c))
        .copied()
        .collect();
    let left: Vec<char> = la.iter().filter(|c| !lb.contains(c)).copied().collect();
    let right: Vec<char> = lb.iter().filter(|c| !la.contains(c)).copied().collect();
    let a3 = arrange(a.view(), &la, &batch, &left, &contracted);
    let mut b3 = arrange(b.view(), &lb, &batch, &right, &contracted);
    b3.swap_axes(1, 2);
    let pairs: Vec<(usize, usize)> = (0..a3.dim().0).map(|i| (i, i)).collect();
    let out = batched_gemm(a3.view(), b3.view(), &pairs);
    let size = |l: &[char], x: &ArrayViewD<'_, T>, c: &char| {
        x.shape()[l.iter().position(|m| m == c).expect("index of operand")]
    };
    let mut letters = batch.clone();
    letters.extend(&left);
    letters.extend(&right);
    let dims: Vec<usize> = batch
        .iter()
        .chain(&left)
        .map(|c| size(&la, &a.view(), c))
        .chain(right.iter().map(|c| size(&lb, &b.view(), c)))
        .collect();
    let out = out
        .into_shape_with_order(IxDyn(&dims))
        .expect("same element count");
    (letters, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::test_util::{close, Rng};

    fn run(op: &Op, inputs: &[&Tensor]) -> Tensor {
        crate::ops::test_util::run(infer, eval, op, inputs)
    }

    fn einsum(eq: &str) -> Op {
        Op::Einsum {
            equation: eq.into(),
        }
    }

    fn f(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_f64(DType::F32, shape, v)
    }

    #[test]
    fn matmul_hand_computed() {
        let a = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
        let mm = |ta, tb| Op::MatMul {
            transpose_a: ta,
            transpose_b: tb,
        };
        let want = f(&[2, 2], &[58., 64., 139., 154.]);
        assert_eq!(run(&mm(false, false), &[&a, &b]), want);
        // aᵀ is [3,2]; aᵀ @ aᵀᵀ = aᵀ a.
        let ata = run(&mm(true, false), &[&a, &a]);
        assert_eq!(
            ata,
            f(&[3, 3], &[17., 22., 27., 22., 29., 36., 27., 36., 45.])
        );
        let bt = f(&[2, 3], &[7., 9., 11., 8., 10., 12.]);
        assert_eq!(run(&mm(false, true), &[&a, &bt]), want);
        // Integers wrap like i32.
        let big = Tensor::from_i64(DType::I32, &[1, 1], &[1 << 30]);
        let four = Tensor::from_i64(DType::I32, &[1, 1], &[4]);
        let r = run(&mm(false, false), &[&big, &four]);
        assert_eq!(r.to_i64_vec().unwrap(), vec![0]);
        // f16 computes in f32 and stays f16.
        let h = run(
            &mm(false, false),
            &[&a.cast(DType::F16), &b.cast(DType::F16)],
        );
        assert_eq!(h.dtype(), DType::F16);
        assert_eq!(h.to_f64_vec(), vec![58., 64., 139., 154.]);
    }

    #[test]
    fn matmul_type_errors() {
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        };
        let t = |d: &[usize]| TensorType::known(DType::F32, d);
        let e = infer(&mm, &[t(&[2, 3]), t(&[4, 5])]).unwrap_err();
        assert!(
            e.contains("inner dimensions") && e.contains("f32[2,3]"),
            "{e}"
        );
        let e = infer(&mm, &[t(&[2, 3, 1]), t(&[4, 5])]).unwrap_err();
        assert!(e.contains("rank-2"), "{e}");
        let e = infer(&mm, &[t(&[2, 3]), TensorType::known(DType::F64, &[3, 5])]).unwrap_err();
        assert!(e.contains("dtypes differ"), "{e}");
        let e = infer(&mm, &[t(&[2, 3])]).unwrap_err();
        assert!(e.contains("takes 2 inputs"), "{e}");
        let b = TensorType::known(DType::Bool, &[2, 2]);
        assert!(infer(&mm, &[b.clone(), b]).is_err());
        let sym = TensorType::new(DType::F32, Shape(vec![Dim::sym("n"), Dim::Known(3)]));
        let out = infer(&mm, &[sym, t(&[3, 7])]).unwrap();
        assert_eq!(out[0].to_string(), "f32[?n,7]");
    }

    /// `a @ b` by loops over row-major flat data, with explicit broadcasting of batch indices.
    fn reference_bmm(a: &Tensor, b: &Tensor, adj_a: bool, adj_b: bool) -> (Vec<usize>, Vec<f64>) {
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        let (va, vb) = (a.to_f64_vec(), b.to_f64_vec());
        let (ra, ca) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (rb, cb) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        let (m, k) = if adj_a { (ca, ra) } else { (ra, ca) };
        let n = if adj_b { rb } else { cb };
        let batch = broadcast_concrete(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).unwrap();
        let nb: usize = batch.iter().product();
        let mut out = vec![0.0; nb * m * n];
        let flat_of = |shape: &[usize], idx: &[usize]| -> usize {
            // Right-aligned broadcast index into a batch shape.
            let off = idx.len() - shape.len();
            shape.iter().enumerate().fold(0, |acc, (i, &d)| {
                acc * d + if d == 1 { 0 } else { idx[off + i] }
            })
        };
        for o in 0..nb {
            let mut idx = vec![0; batch.len()];
            let mut r = o;
            for i in (0..batch.len()).rev() {
                idx[i] = r % batch[i];
                r /= batch[i];
            }
            let ia = flat_of(&sa[..sa.len() - 2], &idx);
            let ib = flat_of(&sb[..sb.len() - 2], &idx);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0;
                    for p in 0..k {
                        let x = if adj_a {
                            va[ia * ra * ca + p * ca + i]
                        } else {
                            va[ia * ra * ca + i * ca + p]
                        };
                        let y = if adj_b {
                            vb[ib * rb * cb + j * cb + p]
                        } else {
                            vb[ib * rb * cb + p * cb + j]
                        };
                        s += x * y;
                    }
                    out[o * m * n + i * n + j] = s;
                }
            }
        }
        let mut shape = batch;
        shape.extend([m, n]);
        (shape, out)
    }

    #[test]
    fn batch_matmul_broadcasts_against_loops() {
        let mut rng = Rng(7);
        let cases: &[(&[usize], &[usize], bool, bool)] = &[
            (&[2, 1, 2, 3], &[3, 3, 4], false, false),
            (&[4, 2, 3], &[3, 5], false, false),
            (&[4, 2, 3], &[1, 3, 5], false, false),
            (&[3, 2], &[2, 2, 3, 4], true, false),
            (&[2, 3, 4], &[2, 5, 4], false, true),
            (&[1, 4, 3], &[2, 1, 5, 4], true, true),
            (&[2, 0, 3], &[3, 4], false, false),
            (&[2, 2, 0], &[2, 0, 4], false, false),
        ];
        for &(sa, sb, adj_x, adj_y) in cases {
            let a = rng.tensor(DType::F64, sa);
            let b = rng.tensor(DType::F64, sb);
            let got = run(&Op::BatchMatMul { adj_x, adj_y }, &[&a, &b]);
            let (shape, want) = reference_bmm(&a, &b, adj_x, adj_y);
            close(&got, &Tensor::from_f64(DType::F64, &shape, &want), 1e-12);
        }
    }

    #[test]
    fn batch_matmul_types() {
        let op = Op::BatchMatMul {
            adj_x: false,
            adj_y: false,
        };
        let a = TensorType::new(
            DType::F32,
            Shape(vec![
                Dim::sym("b"),
                Dim::Known(1),
                Dim::Unknown,
                Dim::Known(3),
            ]),
        );
        let b = TensorType::known(DType::F32, &[5, 3, 7]);
        assert_eq!(infer(&op, &[a, b]).unwrap()[0].to_string(), "f32[?b,5,?,7]");
        let e = infer(
            &op,
            &[
                TensorType::known(DType::F32, &[2, 2, 3]),
                TensorType::known(DType::F32, &[3, 3, 4]),
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("do not broadcast") && e.contains("f32[3,3,4]"),
            "{e}"
        );
        let e = infer(
            &op,
            &[
                TensorType::known(DType::F32, &[3]),
                TensorType::known(DType::F32, &[3, 4]),
            ],
        )
        .unwrap_err();
        assert!(e.contains("rank at least 2"), "{e}");
    }

    /// Einsum by brute force: every assignment of every index, products summed into the output.
    fn reference_einsum(eq: &str, xs: &[&Tensor]) -> Tensor {
        let e = parse_equation(eq).unwrap();
        let mut sizes: Vec<(char, usize)> = Vec::new();
        for (l, t) in e.inputs.iter().zip(xs) {
            for (&c, &d) in l.iter().zip(t.shape()) {
                if !sizes.iter().any(|(x, _)| *x == c) {
                    sizes.push((c, d));
                }
            }
        }
        let size = |c: char| sizes.iter().find(|(x, _)| *x == c).unwrap().1;
        let out_shape: Vec<usize> = e.output.iter().map(|&c| size(c)).collect();
        let mut out = vec![0.0; out_shape.iter().product()];
        let vals: Vec<Vec<f64>> = xs.iter().map(|t| t.to_f64_vec()).collect();
        let total: usize = sizes.iter().map(|(_, d)| d).product();
        let flat = |letters: &[char], assign: &dyn Fn(char) -> usize| {
            letters.iter().fold(0, |acc, &c| acc * size(c) + assign(c))
        };
        for mut n in 0..total {
            let mut assign_v = vec![0; sizes.len()];
            for i in (0..sizes.len()).rev() {
                assign_v[i] = n % sizes[i].1;
                n /= sizes[i].1;
            }
            let assign = |c: char| assign_v[sizes.iter().position(|(x, _)| *x == c).unwrap()];
            let p: f64 = e
                .inputs
                .iter()
                .zip(&vals)
                .map(|(l, v)| v[flat(l, &assign)])
                .product();
            out[flat(&e.output, &assign)] += p;
        }
        Tensor::from_f64(DType::F64, &out_shape, &out)
    }

    #[test]
    fn einsum_matches_loops() {
        let mut rng = Rng(42);
        let cases: &[(&str, &[&[usize]])] = &[
            ("abc,cde->abde", &[&[2, 3, 4], &[4, 2, 3]]),
            ("aecd,abcd->acbe", &[&[2, 5, 3, 4], &[2, 6, 3, 4]]),
            ("acbe,aecd->abcd", &[&[2, 3, 6, 5], &[2, 5, 3, 4]]),
            ("abcd,cde->abe", &[&[2, 3, 4, 5], &[4, 5, 6]]),
            ("ab,bc->ac", &[&[3, 4], &[4, 5]]),
            ("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]]),
            ("ab,bc", &[&[3, 4], &[4, 5]]),
            ("ba,bc", &[&[4, 3], &[4, 5]]),
            ("ij->ji", &[&[3, 4]]),
            ("ij->", &[&[3, 4]]),
            ("ijk->k", &[&[2, 3, 4]]),
            ("i,j->ij", &[&[3], &[4]]),
            ("ij,ij->ij", &[&[3, 4], &[3, 4]]),
            ("ij,ij->", &[&[3, 4], &[3, 4]]),
            ("ij,jk,kl->il", &[&[2, 3], &[3, 4], &[4, 5]]),
            ("abc,bd->ad", &[&[2, 3, 4], &[3, 5]]),
            ("ab,cd->", &[&[2, 3], &[4, 5]]),
            (",ij->ij", &[&[], &[2, 3]]),
            ("b i j , b j k -> b k i", &[&[2, 3, 4], &[2, 4, 5]]),
        ];
        for &(eq, shapes) in cases {
            let xs: Vec<Tensor> = shapes.iter().map(|s| rng.tensor(DType::F64, s)).collect();
            let refs: Vec<&Tensor> = xs.iter().collect();
            let got = run(&einsum(eq), &refs);
            let want = reference_einsum(eq, &refs);
            assert_eq!(got.shape(), want.shape(), "{eq}");
            close(&got, &want, 1e-12);
        }
        // Integers and f16 go through the same path.
        let a = Tensor::from_i64(DType::I64, &[2, 2], &[1, 2, 3, 4]);
        let b = Tensor::from_i64(DType::I64, &[2, 2], &[5, 6, 7, 8]);
        let r = run(&einsum("ij,jk->ki"), &[&a, &b]);
        assert_eq!(r.to_i64_vec().unwrap(), vec![19, 43, 22, 50]);
        let r = run(
            &einsum("ij,jk->ki"),
            &[&a.cast(DType::BF16), &b.cast(DType::BF16)],
        );
        assert_eq!(r.dtype(), DType::BF16);
        assert_eq!(r.to_f64_vec(), vec![19., 43., 22., 50.]);
    }

    #[test]
    fn einsum_infers_symbolic_dims() {
        let x = TensorType::new(
            DType::F32,
            Shape(vec![Dim::sym("batch"), Dim::Unknown, Dim::Known(8)]),
        );
        let w = TensorType::known(DType::F32, &[8, 2, 4]);
        let out = infer(&einsum("abc,cde->abde"), &[x.clone(), w]).unwrap();
        assert_eq!(out[0].to_string(), "f32[?batch,?,2,4]");
        // A symbol on one side and a size on the other: the size wins.
        let k = TensorType::new(
            DType::F32,
            Shape(vec![
                Dim::Known(3),
                Dim::sym("t"),
                Dim::Known(2),
                Dim::Known(4),
            ]),
        );
        let q = TensorType::known(DType::F32, &[3, 5, 2, 4]);
        let out = infer(&einsum("aecd,abcd->acbe"), &[k, q]).unwrap();
        assert_eq!(out[0].to_string(), "f32[3,2,5,?t]");
        let e = infer(
            &einsum("abc,cde->abde"),
            &[x, TensorType::known(DType::F32, &[7, 2, 4])],
        )
        .unwrap_err();
        assert!(
            e.contains("index 'c' is 8") && e.contains("f32[7,2,4]"),
            "{e}"
        );
    }

    #[test]
    fn einsum_rejects_unsupported_equations() {
        let t = TensorType::known(DType::F32, &[3, 3]);
        for (eq, why) in [
            ("...ij,jk->...ik", "ellipsis"),
            ("ii->i", "repeated"),
            ("ij,jk->il", "does not appear"),
            ("ij->jj", "repeated"),
            ("i1,jk->ik", "unexpected character"),
            ("ij->j->i", "more than one"),
        ] {
            let e = infer(&einsum(eq), &[t.clone(), t.clone()]).unwrap_err();
            assert!(
                e.starts_with(&format!("unsupported einsum equation \"{eq}\":")) && e.contains(why),
                "{eq}: {e}"
            );
        }
        let e = infer(&einsum("ij,jk->ik"), std::slice::from_ref(&t)).unwrap_err();
        assert!(
            e.contains("2 operand(s)") && e.contains("1 input(s)"),
            "{e}"
        );
        let e = infer(&einsum("ijk,jk->ik"), &[t.clone(), t]).unwrap_err();
        assert!(e.contains("operand 0 is f32[3,3]"), "{e}");
    }

    #[test]
    fn bias_add_both_formats() {
        let x = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f(&[3], &[10., 20., 30.]);
        let op = Op::BiasAdd {
            format: DataFormat::Nhwc,
        };
        assert_eq!(
            run(&op, &[&x, &b]),
            f(&[2, 3], &[11., 22., 33., 14., 25., 36.])
        );
        // NCHW: channel axis 1 of [1, 2, 2, 2].
        let x = f(&[1, 2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
        let b = f(&[2], &[100., 200.]);
        let op = Op::BiasAdd {
            format: DataFormat::Nchw,
        };
        assert_eq!(
            run(&op, &[&x, &b]),
            f(
                &[1, 2, 2, 2],
                &[100., 101., 102., 103., 204., 205., 206., 207.]
            )
        );
        let e = infer(
            &op,
            &[
                TensorType::known(DType::F32, &[1, 3, 4, 4]),
                TensorType::known(DType::F32, &[4]),
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("bias f32[4] has 4 elements") && e.contains("3 channels"),
            "{e}"
        );
        let e = infer(
            &op,
            &[
                TensorType::known(DType::F32, &[4]),
                TensorType::known(DType::F32, &[4]),
            ],
        )
        .unwrap_err();
        assert!(e.contains("rank at least 2"), "{e}");
    }
}
