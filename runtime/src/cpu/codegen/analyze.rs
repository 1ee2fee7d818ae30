//! From a fused body [`Graph`] to the [`Plan`] the lowering emits: an expression DAG over the
//! kernel's iteration space (rows × row elements), the memory leaves it reads, and the order of
//! the reduction phases.
//!
//! Invariant the lowering relies on: every node has a `len`, the length of the axis it varies
//! along within a row. `len == 1` means the node is *row-uniform* (one value per row: per-row
//! inputs `[..., 1]`, scalars, splat constants, reduction results and anything computed only
//! from those); it is computed once per row. A node with `len > 1` is evaluated per element in
//! a loop of that length; its operands have its `len` or are row-uniform.

use super::CodegenError;
use lathe_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use lathe_ir::{DType, Graph, NodeId, Op, Tensor, ValueId};
use std::collections::HashMap;

/// Index of a node of [`Plan::nodes`].
pub(crate) type Id = usize;

/// What a node of the kernel's expression DAG computes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// An element read from memory: leaf `Plan::leaves[i]`.
    Leaf(usize),
    /// A constant, the same everywhere: the value's bits in the node's dtype (see
    /// [`splat_bits`]).
    Splat(u64),
    Unary(UnaryOp, Id),
    /// A binary op; comparisons have a bool node, the others the operands' dtype.
    Binary(BinaryOp, Id, Id),
    /// The operand converted to the node's dtype with the interpreter's `Tensor::cast` rules.
    Cast(Id),
    /// `cond ? x : y`, the condition bool.
    Select(Id, Id, Id),
    /// A reduction over the last axis of its argument, which has `count` elements per row (the
    /// argument's `len`, or the IR axis length when the argument is row-uniform).
    Reduce {
        kind: ReduceKind,
        arg: Id,
        count: usize,
    },
}

/// A node of the expression DAG.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub expr: Expr,
    /// Length of the axis the node varies along within a row; 1 for row-uniform nodes.
    pub len: usize,
    /// The dtype of the node's value.
    pub dtype: DType,
}

/// Where a leaf's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeafSource {
    /// Body input `i` (the pointer `inputs[i]` of `RowKernel::run`).
    Input(usize),
    /// Kernel-owned constant table `i` (`Plan::tables[i]`), addressed by a baked pointer.
    Table(usize),
}

/// One term of a leaf's row offset: `((row / div) % modulo) * stride` elements, where a
/// `modulo` of 0 means "no modulo" (the outermost term).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowTerm {
    pub div: u64,
    pub modulo: u64,
    pub stride: u64,
}

/// A tensor the kernel reads, with how the kernel's row index maps to its memory.
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    pub source: LeafSource,
    /// Row offset terms (empty: every row reads the same elements).
    pub row_terms: Vec<RowTerm>,
    /// The element type in memory.
    pub dtype: DType,
}

/// The reductions computed by one loop over a row.
#[derive(Clone, Debug)]
pub(crate) struct Phase {
    /// Loop length (elements of the row the reductions read).
    pub len: usize,
    pub reductions: Vec<Id>,
}

/// Everything the lowering needs to emit one kernel.
#[derive(Debug)]
pub(crate) struct Plan {
    pub nodes: Vec<Node>,
    pub leaves: Vec<Leaf>,
    /// Constant tensors the kernel owns, row-major little-endian bytes of their dtype.
    pub tables: Vec<Box<[u8]>>,
    /// Body outputs, in order.
    pub outputs: Vec<Id>,
    pub num_inputs: usize,
    pub rows: usize,
    pub row_len: usize,
    /// Reduction loops in execution order (each row runs them all, then the output loop).
    pub phases: Vec<Phase>,
}

/// Builds the plan for `body`, or says which node cannot be compiled and why.
pub(crate) fn analyze(body: &Graph) -> Result<Plan, CodegenError> {
    let mut a = Analyzer::new(body)?;
    let outputs = body
        .outputs()
        .iter()
        .map(|o| a.value(o.value))
        .collect::<Result<Vec<_>, _>>()?;
    for (o, &id) in body.outputs().iter().zip(&outputs) {
        if a.nodes[id].len != 1 && a.nodes[id].len != a.row_len {
            return Err(unsupported(
                body,
                o.value.node,
                format!(
                    "varies along rows of length {} but the outputs' rows have length {}",
                    a.nodes[id].len, a.row_len
                ),
            ));
        }
    }
    let phases = schedule(&a.nodes);
    Ok(Plan {
        nodes: a.nodes,
        leaves: a.leaves,
        tables: a.tables,
        outputs,
        num_inputs: body.inputs().len(),
        rows: a.outer.iter().product(),
        row_len: a.row_len,
        phases,
    })
}

/// An `Unsupported` error naming the body node and its op.
fn unsupported(g: &Graph, id: NodeId, msg: impl std::fmt::Display) -> CodegenError {
    CodegenError::Unsupported(format!(
        "node `{}` ({}): {msg}",
        g.display_name(id),
        g.node(id).op.mnemonic()
    ))
}

struct Analyzer<'g> {
    g: &'g Graph,
    /// The iteration space without its last dim.
    outer: Vec<usize>,
    row_len: usize,
    nodes: Vec<Node>,
    leaves: Vec<Leaf>,
    tables: Vec<Box<[u8]>>,
    memo: HashMap<ValueId, Id>,
    /// Hash-consing of expressions, so repeated subexpressions (and softmax's pieces) are shared.
    interned: HashMap<String, Id>,
}

/// The bits a [`Expr::Splat`] holds for one element of `t` (its first): floats their IEEE
/// bits (f16/bf16 their 16 bits), integers their value as i64 (two's complement), bool 0/1.
pub(crate) fn splat_bits(t: &Tensor) -> u64 {
    use lathe_ir::tensor_match;
    match t {
        Tensor::F32(a) => a.iter().next().map_or(0, |v| v.to_bits() as u64),
        Tensor::F64(a) => a.iter().next().map_or(0, |v| v.to_bits()),
        Tensor::F16(a) => a.iter().next().map_or(0, |v| v.to_bits() as u64),
        Tensor::BF16(a) => a.iter().next().map_or(0, |v| v.to_bits() as u64),
        _ => {
            tensor_match!(t, a => a.iter().next().map_or(0, |&v| lathe_ir::Elem::to_i64(v) as u64))
        }
    }
}

/// The splat bits of the f32 value `v`.
fn f32_bits(v: f32) -> u64 {
    v.to_bits() as u64
}

impl<'g> Analyzer<'g> {
    fn new(g: &'g Graph) -> Result<Analyzer<'g>, CodegenError> {
        let body = |msg: String| CodegenError::Unsupported(format!("body `{}`: {msg}", g.name));
        for i in g.inputs() {
            if !i.ty.shape.is_known() {
                return Err(body(format!(
                    "input `{}` is {}; only known shapes are supported",
                    i.name, i.ty
                )));
            }
        }
        let mut shape: Option<Vec<usize>> = None;
        for o in g.outputs() {
            let ty = g.value_type(o.value);
            let Some(dims) = ty.shape.as_known() else {
                return Err(body(format!(
                    "output `{}` is {ty}; only known shapes are supported",
                    o.name
                )));
            };
            match &shape {
                Some(s) if *s != dims => {
                    return Err(body(format!(
                        "outputs have different shapes ({s:?} and {dims:?}); a row kernel \
                         needs one iteration space"
                    )))
                }
                _ => shape = Some(dims),
            }
        }
        let Some(shape) = shape else {
            return Err(body("the body has no outputs".into()));
        };
        if shape.contains(&0) {
            return Err(body(format!(
                "the outputs are empty ({shape:?}); there is nothing to compile"
            )));
        }
        let (outer, row_len) = match shape.split_last() {
            Some((&l, o)) => (o.to_vec(), l),
            None => (vec![], 1),
        };
        Ok(Analyzer {
            g,
            outer,
            row_len,
            nodes: vec![],
            leaves: vec![],
            tables: vec![],
            memo: HashMap::new(),
            interned: HashMap::new(),
        })
    }

    fn push(&mut self, expr: Expr, len: usize, dtype: DType) -> Id {
        let key = format!("{expr:?}/{len}/{dtype:?}");
        if let Some(&id) = self.interned.get(&key) {
            return id;
        }
        self.nodes.push(Node { expr, len, dtype });
        let id = self.nodes.len() - 1;
        self.interned.insert(key, id);
        id
    }

    /// `x` converted to `to` (itself when it already is).
    fn cast(&mut self, x: Id, to: DType) -> Id {
        if self.nodes[x].dtype == to {
            return x;
        }
        self.push(Expr::Cast(x), self.nodes[x].len, to)
    }

    /// The DAG node computing `v`, translating its producers first.
    fn value(&mut self, v: ValueId) -> Result<Id, CodegenError> {
        if let Some(&id) = self.memo.get(&v) {
            return Ok(id);
        }
        let g = self.g;
        let node = g.node(v.node);
        let err = |msg: String| unsupported(g, v.node, msg);
        let ty = g.value_type(v);
        let Some(dims) = ty.shape.as_known() else {
            return Err(err(format!("its type {ty} has an unknown shape")));
        };
        if dims.contains(&0) {
            return Err(err(format!("its type {ty} is empty")));
        }
        if !matches!(node.op, Op::Input { .. } | Op::Const(_)) {
            let in_dtypes: Vec<DType> =
                node.inputs.iter().map(|&i| g.value_type(i).dtype).collect();
            super::support::compiles(&node.op, &in_dtypes).map_err(err)?;
        }
        let dtype = ty.dtype;
        let id = match &node.op {
            Op::Input { index } => self.leaf(v.node, LeafSource::Input(*index), &dims, dtype)?,
            Op::Const(t) => self.constant(v.node, t, &dims)?,
            Op::Identity | Op::StopGradient => self.operands(v.node, 1)?[0],
            Op::Cast { to } => {
                let x = self.operands(v.node, 1)?[0];
                self.cast(x, *to)
            }
            Op::Unary(u) => {
                let x = self.operands(v.node, 1)?[0];
                self.push(Expr::Unary(*u, x), self.nodes[x].len, dtype)
            }
            Op::BiasAdd { .. } => {
                let xs = self.operands(v.node, 2)?;
                self.binary(v.node, BinaryOp::Add, xs[0], xs[1])?
            }
            Op::Binary(BinaryOp::Pow) if dtype == DType::F32 => match self.pow(v.node)? {
                Some(id) => id,
                None => {
                    let xs = self.operands(v.node, 2)?;
                    self.binary(v.node, BinaryOp::Pow, xs[0], xs[1])?
                }
            },
            Op::Binary(b) => {
                let xs = self.operands(v.node, 2)?;
                self.binary(v.node, *b, xs[0], xs[1])?
            }
            Op::Select => {
                let xs = self.operands(v.node, 3)?;
                let lens: Vec<usize> = xs.iter().map(|&x| self.nodes[x].len).collect();
                let len = lens.iter().copied().max().unwrap_or(1);
                if lens.iter().any(|&l| l != 1 && l != len) {
                    return Err(err(format!(
                        "operands vary along rows of different lengths ({lens:?})"
                    )));
                }
                self.push(Expr::Select(xs[0], xs[1], xs[2]), len, dtype)
            }
            Op::Reduce { kind, keep_dims } => self.reduce(v.node, *kind, *keep_dims)?,
            Op::FusedBatchNorm { epsilon, .. } => {
                // `(x - mean) * (scale / sqrt(variance + epsilon)) + offset`, the statistics
                // in their own dtype (TensorFlow allows f32 ones for a half input), then
                // converted to the input's, as the interpreter.
                let xs = self.operands(v.node, 5)?;
                let (x, scale, offset, mean, var) = (xs[0], xs[1], xs[2], xs[3], xs[4]);
                let pd = self.nodes[scale].dtype;
                let c = self.nodes[var].len;
                let eps = Tensor::from_f64(pd, &[], &[f64::from(*epsilon)]);
                let eps = self.push(Expr::Splat(splat_bits(&eps)), 1, pd);
                let ve = self.push(Expr::Binary(BinaryOp::Add, var, eps), c, pd);
                let sd = self.push(Expr::Unary(UnaryOp::Sqrt, ve), c, pd);
                let factor = self.push(Expr::Binary(BinaryOp::Div, scale, sd), c, pd);
                let (factor, mean, offset) = (
                    self.cast(factor, dtype),
                    self.cast(mean, dtype),
                    self.cast(offset, dtype),
                );
                let d = self.binary(v.node, BinaryOp::Sub, x, mean)?;
                let p = self.binary(v.node, BinaryOp::Mul, d, factor)?;
                self.binary(v.node, BinaryOp::Add, p, offset)?
            }
            Op::Softmax | Op::LogSoftmax => {
                let x = self.operands(v.node, 1)?[0];
                let count = g
                    .value_type(node.inputs[0])
                    .shape
                    .as_known()
                    .and_then(|d| d.last().copied())
                    .unwrap_or(1);
                let len = self.nodes[x].len;
                if len != 1 && len != count {
                    return Err(err(format!(
                        "its input varies along rows of length {len}, not {count}"
                    )));
                }
                // Half-precision inputs are computed in f64 and rounded once, as the
                // interpreter does.
                let cd = match dtype {
                    DType::F16 | DType::BF16 => DType::F64,
                    d => d,
                };
                let x = self.cast(x, cd);
                let m = self.push(
                    Expr::Reduce {
                        kind: ReduceKind::Max,
                        arg: x,
                        count,
                    },
                    1,
                    cd,
                );
                let d = self.push(Expr::Binary(BinaryOp::Sub, x, m), len, cd);
                let e = self.push(Expr::Unary(UnaryOp::Exp, d), len, cd);
                let s = self.push(
                    Expr::Reduce {
                        kind: ReduceKind::Sum,
                        arg: e,
                        count,
                    },
                    1,
                    cd,
                );
                let r = if node.op == Op::Softmax {
                    self.push(Expr::Binary(BinaryOp::Div, e, s), len, cd)
                } else {
                    let l = self.push(Expr::Unary(UnaryOp::Log, s), 1, cd);
                    self.push(Expr::Binary(BinaryOp::Sub, d, l), len, cd)
                };
                self.cast(r, dtype)
            }
            op => {
                return Err(err(format!(
                    "{} is not supported in a CPU row kernel",
                    op.mnemonic()
                )))
            }
        };
        self.memo.insert(v, id);
        Ok(id)
    }

    /// The translated inputs of `id`, checking there are `n`.
    fn operands(&mut self, id: NodeId, n: usize) -> Result<Vec<Id>, CodegenError> {
        let inputs = self.g.node(id).inputs.clone();
        if inputs.len() != n {
            return Err(unsupported(
                self.g,
                id,
                format!("expected {n} input(s), got {}", inputs.len()),
            ));
        }
        inputs.into_iter().map(|v| self.value(v)).collect()
    }

    fn binary(&mut self, id: NodeId, b: BinaryOp, x: Id, y: Id) -> Result<Id, CodegenError> {
        let (lx, ly) = (self.nodes[x].len, self.nodes[y].len);
        if lx != ly && lx != 1 && ly != 1 {
            return Err(unsupported(
                self.g,
                id,
                format!("operands vary along rows of different lengths ({lx} and {ly})"),
            ));
        }
        let dtype = if b.is_comparison() {
            DType::Bool
        } else {
            self.nodes[x].dtype
        };
        Ok(self.push(Expr::Binary(b, x, y), lx.max(ly), dtype))
    }

    /// f32 `pow` with a constant integer exponent in -64..=64, as multiplications; `None` for
    /// other exponents (computed by the general `pow`).
    fn pow(&mut self, id: NodeId) -> Result<Option<Id>, CodegenError> {
        let g = self.g;
        let exp_value = g.node(id).inputs[1];
        let e = g
            .const_value(exp_value)
            .filter(|t| t.dtype() == DType::F32 && t.is_splat() && !t.is_empty())
            .map(|t| t.to_f64_vec()[0]);
        let n = match e {
            Some(e) if e.fract() == 0.0 && e.abs() <= 64.0 => e as i32,
            _ => return Ok(None),
        };
        let xs = self.operands(id, 2)?;
        let x = xs[0];
        let len = self.nodes[x].len.max(self.nodes[xs[1]].len);
        let f32 = DType::F32;
        if n == 0 {
            // powf(x, 0) is 1 for every x, NaN included.
            return Ok(Some(self.push(Expr::Splat(f32_bits(1.0)), 1, f32)));
        }
        // Square-and-multiply; f32 rounding at each step stays within a few ulp for |n| <= 64.
        let mut acc: Option<Id> = None;
        let mut base = x;
        let mut k = n.unsigned_abs();
        while k > 0 {
            if k & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => self.push(Expr::Binary(BinaryOp::Mul, a, base), len, f32),
                });
            }
            k >>= 1;
            if k > 0 {
                base = self.push(Expr::Binary(BinaryOp::Mul, base, base), len, f32);
            }
        }
        let mut r = acc.expect("n != 0");
        if n < 0 {
            r = self.push(Expr::Unary(UnaryOp::Reciprocal, r), len, f32);
        }
        // A splat exponent of shape [.., L] could widen the result; keep `len` consistent.
        if self.nodes[r].len != len {
            let one = self.push(Expr::Splat(f32_bits(1.0)), len, f32);
            r = self.push(Expr::Binary(BinaryOp::Mul, r, one), len, f32);
        }
        Ok(Some(r))
    }

    fn reduce(
        &mut self,
        id: NodeId,
        kind: ReduceKind,
        keep_dims: bool,
    ) -> Result<Id, CodegenError> {
        let g = self.g;
        let node = g.node(id);
        let err = |msg: String| unsupported(g, id, msg);
        if node.inputs.len() != 2 {
            return Err(err("expected 2 inputs (x, axes)".into()));
        }
        let xdims = g
            .value_type(node.inputs[0])
            .shape
            .as_known()
            .unwrap_or_default();
        let rank = xdims.len();
        let axes = g
            .const_value(node.inputs[1])
            .and_then(|t| t.to_i64_vec().ok())
            .ok_or_else(|| err("the axes must be a constant".into()))?;
        let axes: Vec<usize> = axes
            .iter()
            .map(|&a| if a < 0 { a + rank as i64 } else { a })
            .filter(|&a| (0..rank as i64).contains(&a))
            .map(|a| a as usize)
            .collect();
        if axes.is_empty() {
            // Reducing no axes returns the input unchanged.
            return self.value(node.inputs[0]);
        }
        let mut sorted = axes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        super::support::row_reduction(&xdims, &sorted, keep_dims).map_err(err)?;
        let x = self.value(node.inputs[0])?;
        let count = xdims[rank - 1];
        if self.nodes[x].len != 1 && self.nodes[x].len != count {
            return Err(err(format!(
                "its input varies along rows of length {}, not {count}",
                self.nodes[x].len
            )));
        }
        let dtype = self.nodes[x].dtype;
        Ok(self.push(
            Expr::Reduce {
                kind,
                arg: x,
                count,
            },
            1,
            dtype,
        ))
    }

    fn constant(&mut self, id: NodeId, t: &Tensor, dims: &[usize]) -> Result<Id, CodegenError> {
        if t.is_splat() {
            return Ok(self.push(Expr::Splat(splat_bits(t)), 1, t.dtype()));
        }
        let data: Box<[u8]> = t.to_le_bytes().into_boxed_slice();
        self.tables.push(data);
        let table = self.tables.len() - 1;
        self.leaf(id, LeafSource::Table(table), dims, t.dtype())
    }

    /// A leaf read from memory with shape `dims`, broadcast NumPy-style to the iteration space.
    fn leaf(
        &mut self,
        id: NodeId,
        source: LeafSource,
        dims: &[usize],
        dtype: DType,
    ) -> Result<Id, CodegenError> {
        let (len, louter) = match dims.split_last() {
            Some((&l, o)) => (l, o),
            None => (1, &[][..]),
        };
        let r = self.outer.len();
        let extra = louter.len().saturating_sub(r);
        if louter[..extra].iter().any(|&d| d != 1) {
            return Err(unsupported(
                self.g,
                id,
                format!("shape {dims:?} has more axes than the iteration space"),
            ));
        }
        let louter = &louter[extra..];
        // Per outer axis of the iteration space: (size, stride in elements of the leaf).
        let mut axes: Vec<(u64, u64)> = Vec::with_capacity(r);
        let mut stride = len as u64;
        let mut strides = vec![0u64; louter.len()];
        for (k, &d) in louter.iter().enumerate().rev() {
            strides[k] = if d == 1 { 0 } else { stride };
            stride *= d as u64;
        }
        for (k, &s) in self.outer.iter().enumerate() {
            let lk = (k + louter.len()).checked_sub(r);
            let st = match lk {
                Some(lk) if louter[lk] == s => strides[lk],
                Some(lk) if louter[lk] == 1 => 0,
                None => 0,
                Some(lk) => {
                    return Err(unsupported(
                        self.g,
                        id,
                        format!(
                            "shape {dims:?} does not broadcast to the iteration space (axis of \
                             size {} against {s})",
                            louter[lk]
                        ),
                    ))
                }
            };
            axes.push((s as u64, if s == 1 { 0 } else { st }));
        }
        // Merge adjacent axes that are contiguous in the leaf, so common shapes need no division.
        let mut merged: Vec<(u64, u64)> = vec![];
        for (size, st) in axes {
            if size == 1 {
                continue;
            }
            match merged.last_mut() {
                Some((ps, pst)) if *pst == st * size => {
                    *ps *= size;
                    *pst = st;
                }
                _ => merged.push((size, st)),
            }
        }
        let mut row_terms = vec![];
        let mut div = 1u64;
        for (k, &(size, st)) in merged.iter().enumerate().rev() {
            if st != 0 {
                row_terms.push(RowTerm {
                    div,
                    modulo: if k == 0 { 0 } else { size },
                    stride: st,
                });
            }
            div *= size;
        }
        self.leaves.push(Leaf {
            source,
            row_terms,
            dtype,
        });
        let leaf = self.leaves.len() - 1;
        // Leaves are never interned: two leaves are different memory.
        self.nodes.push(Node {
            expr: Expr::Leaf(leaf),
            len,
            dtype,
        });
        Ok(self.nodes.len() - 1)
    }
}

/// Groups the reductions into loops: a reduction runs in the first loop after every reduction
/// it depends on, together with the other reductions of that stage over a row of the same length.
fn schedule(nodes: &[Node]) -> Vec<Phase> {
    // stage[i]: how many reduction loops must run before node i can be evaluated.
    let mut stage = vec![0usize; nodes.len()];
    let mut phases: Vec<(usize, Phase)> = vec![];
    for (i, n) in nodes.iter().enumerate() {
        stage[i] = match n.expr {
            Expr::Leaf(_) | Expr::Splat(_) => 0,
            Expr::Unary(_, x) | Expr::Cast(x) => stage[x],
            Expr::Binary(_, x, y) => stage[x].max(stage[y]),
            Expr::Select(c, x, y) => stage[c].max(stage[x]).max(stage[y]),
            Expr::Reduce { arg, .. } if nodes[arg].len == 1 => stage[arg],
            Expr::Reduce { arg, .. } => {
                let s = stage[arg];
                let len = nodes[arg].len;
                match phases.iter_mut().find(|(ps, p)| *ps == s && p.len == len) {
                    Some((_, p)) => p.reductions.push(i),
                    None => phases.push((
                        s,
                        Phase {
                            len,
                            reductions: vec![i],
                        },
                    )),
                }
                s + 1
            }
        };
    }
    phases.sort_by_key(|(s, _)| *s);
    phases.into_iter().map(|(_, p)| p).collect()
}
