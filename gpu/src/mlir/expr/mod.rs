//! A kernel as the value of its output at one element: each op's value at given coordinates,
//! in terms of its inputs' values at coordinates computed from those (index expressions).
//!
//! The thread's element `%i` gives the output's coordinates; an elementwise op reads its
//! inputs at the same coordinates (projected onto a broadcast input's dimensions), a shape op
//! at moved ones (a transpose permutes them, a reshape relinearizes them), a reduction or a
//! contraction loops (`scf.for`) over the axes it sums, reading its inputs at the loop's
//! coordinates. A value is computed once per coordinates in a scope ([`Emitter::recall`]),
//! in the outermost scope its coordinates allow (a mean used inside a variance's loop is
//! computed before the loop).
//!
//! A kernel's leaves are its arguments: the fused node's inputs (or a lone op's), and the
//! body's constants of more than one element (its weights); single values are inlined.

mod contract;
mod movement;
mod reduce;

use super::emit::{Emitter, Regions};
use super::kernel::{dims, storage};
use super::scalar::{self, Compute, Scalar};
use lathe_ir::{Graph, NodeId, Op, Tensor, TensorType, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

/// What a kernel argument is bound to when it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A value of the graph the kernel's node is in (its buffer).
    Value(ValueId),
    /// A constant of the fused body (uploaded once, as the graph's constants are).
    Weight(Arc<Tensor>),
    /// One i32, set to 1 by a thread that found an index out of range (a gather's).
    Fault,
}

/// A kernel's parameters, arguments and instructions.
pub struct Built {
    /// `%a0: memref<6xf32>`, ..., then `%out0: ...`.
    pub params: Vec<String>,
    /// What each `%aK` is bound to.
    pub args: Vec<Arg>,
    /// The outputs' types (all of one shape).
    pub outputs: Vec<TensorType>,
    /// Elements of each output: the threads.
    pub elements: usize,
    /// The instructions computing element `%i` of every output.
    pub text: String,
}

/// The body of a [`Ctx::fold`]: given the grid point's coordinates and the carried values,
/// their next values.
pub type FoldBody<'b> =
    dyn FnMut(&mut Ctx, &[String], &[String]) -> Result<Vec<String>, String> + 'b;

/// Where a kernel's leaves are.
enum Leaves<'g> {
    /// The body of a fused node: `input k` is the node's input `inputs[k]`.
    Body { inputs: &'g [ValueId] },
    /// One op of the graph itself: its inputs are the leaves.
    Lone { root: NodeId },
}

/// A kernel being built.
pub struct Ctx<'g> {
    g: &'g Graph,
    leaves: Leaves<'g>,
    pub(crate) e: Emitter,
    args: Vec<Arg>,
    params: Vec<String>,
    /// The argument of each leaf (by a key of its value).
    arg_of: HashMap<String, usize>,
    /// The output's dims and the coordinates of `%i` in them.
    domain: (Vec<usize>, Vec<String>),
}

impl Regions for Ctx<'_> {
    fn em(&mut self) -> &mut Emitter {
        &mut self.e
    }
}

/// The kernel computing `body`'s outputs, `body` the body of a fused node with inputs
/// `inputs` (values of the node's graph).
pub fn fused(body: &Graph, inputs: &[ValueId]) -> Result<Built, String> {
    let outputs: Vec<ValueId> = body.outputs().iter().map(|o| o.value).collect();
    build(body, Leaves::Body { inputs }, &outputs)
}

/// The kernel computing node `id` of `graph` alone.
pub fn lone(graph: &Graph, id: NodeId) -> Result<Built, String> {
    let outputs: Vec<ValueId> = (0..graph.node(id).outputs.len())
        .map(|k| ValueId {
            node: id,
            output: k as u32,
        })
        .collect();
    build(graph, Leaves::Lone { root: id }, &outputs)
}

fn build(g: &Graph, leaves: Leaves, outputs: &[ValueId]) -> Result<Built, String> {
    let first = outputs.first().ok_or("a kernel without outputs")?;
    let domain = dims(g.value_type(*first))?;
    for o in outputs {
        if dims(g.value_type(*o))? != domain {
            return Err(format!(
                "outputs of several shapes ({} and {}): such kernels are not lowered to MLIR yet",
                g.value_type(*first),
                g.value_type(*o)
            ));
        }
    }
    let n: usize = domain.iter().product();
    let mut c = Ctx {
        g,
        leaves,
        e: Emitter::new(),
        args: Vec::new(),
        params: Vec::new(),
        arg_of: HashMap::new(),
        domain: (domain.clone(), Vec::new()),
    };
    let coords = c.delinear("%i", &domain);
    c.domain.1 = coords.clone();
    let mut stores = Vec::new();
    for (k, o) in outputs.iter().enumerate() {
        let dtype = g.value_type(*o).dtype;
        let v = c.at(*o, &coords)?;
        let stored = scalar::narrow(&mut c.e, &v, dtype);
        stores.push((k, stored, storage(dtype)?.0));
    }
    for (k, stored, elem) in stores {
        c.e.line(format!(
            "memref.store {stored}, %out{k}[%i] : memref<{n}x{elem}>"
        ));
    }
    let mut params = c.params;
    let mut types = Vec::new();
    for (k, o) in outputs.iter().enumerate() {
        let ty = g.value_type(*o).clone();
        params.push(format!("%out{k}: memref<{n}x{}>", storage(ty.dtype)?.0));
        types.push(ty);
    }
    Ok(Built {
        params,
        args: c.args,
        outputs: types,
        elements: n,
        text: c.e.finish(0),
    })
}

impl<'g> Ctx<'g> {
    /// The value of `v` at `coords` (one index name per axis of `v`).
    pub fn at(&mut self, v: ValueId, coords: &[String]) -> Result<Scalar, String> {
        let ty = self.g.value_type(v).clone();
        let d = dims(&ty)?;
        // Size-1 axes are always at 0: one canonical name keeps the memo's keys equal.
        let coords: Vec<String> = (coords.iter().zip(&d))
            .map(|(c, &n)| if n == 1 { self.e.index(0) } else { c.clone() })
            .collect();
        let key = format!("{}.{}@{}", v.node.index(), v.output, coords.join(","));
        let names = self.memo(key, &coords, |c| Ok(vec![c.compute(v, &ty, &coords)?.name]))?;
        Ok(Scalar {
            name: names[0].clone(),
            ty: Compute::of(ty.dtype)?,
        })
    }

    /// The values `f` computes, once per `key` in a scope: in the outermost scope where all of
    /// `deps` (index names) are defined, before any loop opened since.
    pub fn memo(
        &mut self,
        key: String,
        deps: &[String],
        f: impl FnOnce(&mut Ctx) -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>, String> {
        if let Some(names) = self.e.recall(&key) {
            return Ok(names);
        }
        let depth = self.e.depth_of(deps);
        self.hoisted(depth, |c: &mut Ctx| {
            let names = f(c)?;
            c.e.remember(key, names.clone());
            Ok(names)
        })
    }

    /// Folds over every point of a grid of `sizes` (nested `scf.for`, outermost first),
    /// carrying values (`(init, type)`): `body` gets the point's coordinates and the carried
    /// values and returns their next values. Returns the final values.
    pub fn fold(
        &mut self,
        sizes: &[usize],
        inits: &[(String, String)],
        body: &mut FoldBody,
    ) -> Result<Vec<String>, String> {
        let mut point = Vec::new();
        self.nest(sizes, &mut point, inits, body)
    }

    fn nest(
        &mut self,
        sizes: &[usize],
        point: &mut Vec<String>,
        inits: &[(String, String)],
        body: &mut FoldBody,
    ) -> Result<Vec<String>, String> {
        let Some((&n, rest)) = sizes.split_first() else {
            let values: Vec<String> = inits.iter().map(|(v, _)| v.clone()).collect();
            return body(self, point, &values);
        };
        self.for_loop(n, inits, |c, j, carried| {
            point.push(j.to_string());
            let inner: Vec<(String, String)> = (carried.iter().zip(inits))
                .map(|(v, (_, t))| (v.clone(), t.clone()))
                .collect();
            let r = c.nest(rest, point, &inner, body);
            point.pop();
            r
        })
    }

    /// Computes `v` (of type `ty`) at `coords`, in the current scope.
    fn compute(
        &mut self,
        v: ValueId,
        ty: &TensorType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let node = self.g.node(v.node);
        if let Some(arg) = self.leaf(v)? {
            return self.load(arg, ty, coords);
        }
        let op = node.op.clone();
        let inputs = node.inputs.clone();
        let out = ty.dtype;
        match &op {
            Op::Const(t) => scalar::constant(&mut self.e, t),
            Op::Identity | Op::StopGradient => self.at(inputs[0], coords),
            Op::Unary(_)
            | Op::Binary(_)
            | Op::Cast { .. }
            | Op::CastUnsaturated { .. }
            | Op::Select => {
                let d = dims(ty)?;
                let mut args = Vec::new();
                let mut dtypes = Vec::new();
                for x in &inputs {
                    let xt = self.g.value_type(*x).clone();
                    let at = project(&mut self.e, coords, &d, &dims(&xt)?);
                    args.push(self.at(*x, &at)?);
                    dtypes.push(xt.dtype);
                }
                // Only float8 targets differ, and those are not lowered (no storage type).
                let op = match op {
                    Op::CastUnsaturated { to } => Op::Cast { to },
                    op => op,
                };
                scalar::op(&mut self.e, &op, &args, &dtypes, out)
            }
            Op::BiasAdd { format } => {
                let axis = match format {
                    lathe_ir::ops::DataFormat::Nhwc => coords.len() - 1,
                    lathe_ir::ops::DataFormat::Nchw => 1.min(coords.len() - 1),
                };
                let x = self.at(inputs[0], coords)?;
                let b = self.at(inputs[1], &coords[axis..=axis])?;
                let add = Op::Binary(lathe_ir::ops::BinaryOp::Add);
                scalar::op(&mut self.e, &add, &[x, b], &[out, out], out)
            }
            Op::FusedBatchNorm { epsilon, format } => {
                let axis = match format {
                    lathe_ir::ops::DataFormat::Nhwc => coords.len() - 1,
                    lathe_ir::ops::DataFormat::Nchw => 1,
                };
                self.batch_norm(&inputs, coords, axis, *epsilon)
            }
            Op::Reshape | Op::Squeeze { .. } | Op::ExpandDims => {
                let x = inputs[0];
                let at = self.relinear(coords, &dims(ty)?, &dims(self.g.value_type(x))?);
                self.at(x, &at)
            }
            Op::Transpose
            | Op::Slice
            | Op::StridedSlice(_)
            | Op::Pad { .. }
            | Op::Concat
            | Op::Pack { .. }
            | Op::Gather { .. }
            | Op::Fill
            | Op::Tile
            | Op::Range => self.movement(&op, &inputs, ty, coords),
            Op::Reduce { .. } | Op::Softmax | Op::LogSoftmax => {
                self.reduction(&op, &inputs, ty, coords)
            }
            Op::MatMul { .. }
            | Op::BatchMatMul { .. }
            | Op::Einsum { .. }
            | Op::Conv2D(_)
            | Op::DepthwiseConv2D(_)
            | Op::MaxPool(_)
            | Op::AvgPool(_) => self.contraction(&op, &inputs, ty, coords),
            op => Err(format!("op {} is not lowered to MLIR yet", op.mnemonic())),
        }
    }

    /// The argument `v` is loaded from, if it is a leaf (`None`: computed here).
    fn leaf(&mut self, v: ValueId) -> Result<Option<usize>, String> {
        let node = self.g.node(v.node);
        let arg = match (&self.leaves, &node.op) {
            (_, Op::Const(t)) if t.len() == 1 => return Ok(None),
            (Leaves::Body { inputs }, Op::Input { index }) => Arg::Value(
                *inputs
                    .get(*index)
                    .ok_or_else(|| format!("the body reads input {index}, not given"))?,
            ),
            (Leaves::Body { .. }, Op::Const(t)) => Arg::Weight(t.clone()),
            (Leaves::Body { .. }, _) => return Ok(None),
            (Leaves::Lone { root }, _) if v.node == *root => return Ok(None),
            (Leaves::Lone { .. }, _) => Arg::Value(v),
        };
        let key = format!("{}.{}", v.node.index(), v.output);
        if let Some(&k) = self.arg_of.get(&key) {
            return Ok(Some(k));
        }
        let ty = self.g.value_type(v);
        let count: usize = dims(ty)?.iter().product();
        let k = self.args.len();
        self.params
            .push(format!("%a{k}: memref<{count}x{}>", storage(ty.dtype)?.0));
        self.args.push(arg);
        self.arg_of.insert(key, k);
        Ok(Some(k))
    }

    /// Element `coords` of argument `k` (of type `ty`), as a value to compute with.
    fn load(&mut self, k: usize, ty: &TensorType, coords: &[String]) -> Result<Scalar, String> {
        let d = dims(ty)?;
        let (elem, compute) = storage(ty.dtype)?;
        let count: usize = d.iter().product();
        let at = self.linear(coords, &d);
        let raw = self
            .e
            .assign(format!("memref.load %a{k}[{at}] : memref<{count}x{elem}>"));
        Ok(scalar::widen(&mut self.e, raw, ty.dtype, compute))
    }

    /// The constant tensor `v` is, if it is one (shape operands: axes, paddings, ...).
    fn konst(&self, v: ValueId) -> Option<&Tensor> {
        self.g.const_value(v)
    }

    /// The integers of constant operand `v` (`what` names it in the error).
    fn ints(&self, v: ValueId, what: &str) -> Result<Vec<i64>, String> {
        let t = self.konst(v).ok_or_else(|| {
            format!("its {what} is not a constant: only constant {what} are lowered to MLIR")
        })?;
        t.to_i64_vec()
    }

    /// The flat index of `coords` in a row-major tensor of `dims`.
    pub fn linear(&mut self, coords: &[String], dims: &[usize]) -> String {
        if dims == self.domain.0 && coords == self.domain.1 {
            return "%i".into();
        }
        let mut stride = 1;
        let mut offset: Option<String> = None;
        for (c, &d) in coords.iter().zip(dims).rev() {
            if d != 1 {
                let term = if stride == 1 {
                    c.clone()
                } else {
                    let s = self.e.index(stride as i64);
                    self.e.assign(format!("arith.muli {c}, {s} : index"))
                };
                offset = Some(match offset {
                    None => term,
                    Some(o) => self.e.assign(format!("arith.addi {o}, {term} : index")),
                });
            }
            stride *= d;
        }
        offset.unwrap_or_else(|| self.e.index(0))
    }

    /// The coordinates of flat index `flat` in a row-major tensor of `dims`.
    pub fn delinear(&mut self, flat: &str, dims: &[usize]) -> Vec<String> {
        let mut coords = vec![String::new(); dims.len()];
        let mut rest = flat.to_string();
        for (k, &d) in dims.iter().enumerate().rev() {
            if d == 1 {
                coords[k] = self.e.index(0);
                continue;
            }
            if k == 0 || dims[..k].iter().all(|&x| x == 1) {
                coords[k] = rest.clone();
                for c in coords.iter_mut().take(k) {
                    *c = self.e.index(0);
                }
                break;
            }
            let size = self.e.index(d as i64);
            coords[k] = self.e.assign(format!("arith.remui {rest}, {size} : index"));
            rest = self.e.assign(format!("arith.divui {rest}, {size} : index"));
        }
        coords
    }

    /// `coords` in a tensor of dims `from`, moved to the element of the same flat index in a
    /// tensor of dims `to` (a reshape).
    fn relinear(&mut self, coords: &[String], from: &[usize], to: &[usize]) -> Vec<String> {
        let squeeze = |d: &[usize]| d.iter().copied().filter(|&x| x != 1).collect::<Vec<_>>();
        if squeeze(from) == squeeze(to) {
            // Only size-1 axes differ: the coordinates of the other axes carry over.
            let mut kept = (coords.iter().zip(from))
                .filter(|(_, &d)| d != 1)
                .map(|(c, _)| c.clone());
            return (to.iter())
                .map(|&d| {
                    if d == 1 {
                        self.e.index(0)
                    } else {
                        kept.next().expect("as many axes above 1")
                    }
                })
                .collect();
        }
        let flat = self.linear(coords, from);
        self.delinear(&flat, to)
    }

    /// `(x - mean) * scale / sqrt(variance + epsilon) + offset` at `coords`, channel `axis`.
    fn batch_norm(
        &mut self,
        inputs: &[ValueId],
        coords: &[String],
        axis: usize,
        epsilon: f32,
    ) -> Result<Scalar, String> {
        let x = self.at(inputs[0], coords)?;
        let ch = &coords[axis..=axis];
        let [scale, offset, mean, var] = [1, 2, 3, 4].map(|k| self.at(inputs[k], ch));
        let (scale, offset, mean, var) = (scale?, offset?, mean?, var?);
        let t = x.ty.name();
        let eps = scalar::float_text(f64::from(epsilon), x.ty);
        let e = &mut self.e;
        let eps = e.assign(format!("arith.constant {eps} : {t}"));
        let v = e.assign(format!("arith.addf {}, {eps} : {t}", var.name));
        let root = e.assign(format!("math.sqrt {v} : {t}"));
        let centered = e.assign(format!("arith.subf {}, {} : {t}", x.name, mean.name));
        let scaled = e.assign(format!("arith.mulf {centered}, {} : {t}", scale.name));
        let normed = e.assign(format!("arith.divf {scaled}, {root} : {t}"));
        let name = e.assign(format!("arith.addf {normed}, {} : {t}", offset.name));
        Ok(Scalar { name, ty: x.ty })
    }
}

/// `coords` of a tensor of dims `from` projected onto a tensor of dims `to` that broadcasts
/// against it (right-aligned, as NumPy does): a size-1 axis reads index 0.
pub fn project(e: &mut Emitter, coords: &[String], from: &[usize], to: &[usize]) -> Vec<String> {
    let skip = from.len() - to.len();
    (to.iter().enumerate())
        .map(|(j, &d)| {
            if d == 1 {
                e.index(0)
            } else {
                coords[skip + j].clone()
            }
        })
        .collect()
}
