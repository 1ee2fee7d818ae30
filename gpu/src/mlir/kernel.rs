//! One elementwise kernel: its `gpu.func`, the thread's element, the loads and stores.

use super::scalar::{self, Compute, Scalar};
use lathe_ir::{DType, Graph, NodeId, Op, Tensor, TensorType, ValueId};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Whether `op` is an elementwise op the fuser would give a kernel of its own.
pub fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Cast { .. } | Op::Select
    )
}

/// A one-op body for a lone elementwise node: its inputs (constants included) become the
/// body's inputs, its output the body's output.
pub fn single_op_body(graph: &Graph, id: NodeId) -> Result<Graph, String> {
    let node = graph.node(id);
    let mut body = Graph::new(graph.display_name(id));
    let inputs: Vec<ValueId> = (node.inputs.iter().enumerate())
        .map(|(k, v)| body.add_input(format!("x{k}"), graph.value_type(*v).clone()))
        .collect();
    let out = (body.add_node_typed(node.op.clone(), inputs, node.outputs.clone(), &node.name))
        .map_err(|e| e.to_string())?;
    body.add_output("y", ValueId::first(out))
        .map_err(|e| e.to_string())?;
    Ok(body)
}

/// The instructions of one kernel being written, and its next SSA number.
pub struct Emitter<'a> {
    out: &'a mut String,
    next: usize,
}

impl Emitter<'_> {
    /// A fresh SSA name.
    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next - 1)
    }

    /// Writes `%name = rhs` in the guarded block and returns `%name`.
    pub fn assign(&mut self, rhs: impl AsRef<str>) -> String {
        let name = self.fresh();
        let _ = writeln!(self.out, "        {name} = {}", rhs.as_ref());
        name
    }

    /// Writes a line with no result.
    pub fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "        {}", text.as_ref());
    }
}

/// How a dtype is stored in a kernel's memrefs and what it computes in.
fn storage(d: DType) -> Result<(&'static str, Compute), String> {
    let compute = Compute::of(d)?;
    Ok((element(d)?.0, compute))
}

/// The MLIR type an element of `d` is stored as in a memref, and its width in bits.
pub fn element(d: DType) -> Result<(&'static str, usize), String> {
    Ok(match d {
        DType::F32 => ("f32", 32),
        DType::F64 => ("f64", 64),
        DType::F16 => ("f16", 16),
        DType::BF16 => ("bf16", 16),
        DType::Bool | DType::I8 | DType::U8 => ("i8", 8),
        DType::I16 | DType::U16 => ("i16", 16),
        DType::I32 | DType::U32 => ("i32", 32),
        DType::I64 | DType::U64 => ("i64", 64),
        d => return Err(format!("{d} kernels are not lowered to MLIR yet")),
    })
}

/// The elements of `t` as an MLIR dense literal's items: floats as their bit patterns (exact,
/// NaN and infinities included), bools as 0 and 1.
pub fn dense(t: &Tensor) -> Result<Vec<String>, String> {
    let d = t.dtype();
    let (_, bits) = element(d)?;
    let signed = matches!(d, DType::I8 | DType::I16 | DType::I32 | DType::I64);
    Ok((t.to_le_bytes().chunks(bits / 8))
        .map(|c| {
            let mut v = [0u8; 8];
            v[..c.len()].copy_from_slice(c);
            let v = u64::from_le_bytes(v);
            if d.is_float() {
                format!("0x{v:0w$X}", w = bits / 4)
            } else if signed {
                // Sign-extended from the element's width.
                (((v << (64 - bits)) as i64) >> (64 - bits)).to_string()
            } else {
                v.to_string()
            }
        })
        .collect())
}

fn dims(t: &TensorType) -> Result<Vec<usize>, String> {
    (t.shape.dims().iter())
        .map(|d| d.known())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("the shape {t} is not known: lower a specialized graph"))
}

/// A kernel's parameters and the instructions computing the thread's element `%i` (which the
/// wrapper defines: from the thread and block ids on a GPU, a loop on the host).
pub struct Body {
    /// `%in0: memref<6xf32>`, ..., then `%out0: ...`.
    pub params: Vec<String>,
    /// The body's constants of more than one element, as `memref.global`s the kernel reads.
    pub globals: String,
    /// Elements of the kernel's shape.
    pub elements: usize,
    /// The instructions, indented for the guarded block.
    pub text: String,
}

/// The parameters and instructions of the kernel computing `body` (inputs: the kernel's
/// inputs, in order; outputs: its outputs, all of one shape).
pub fn body(symbol: &str, body: &Graph) -> Result<Body, String> {
    let outputs = body.outputs();
    let first = outputs.first().ok_or("a kernel without outputs")?;
    let domain = dims(body.value_type(first.value))?;
    for o in outputs {
        if dims(body.value_type(o.value))? != domain {
            return Err(format!(
                "output `{}` is {}, not of the kernel's shape {:?}: kernels with outputs of \
                 several shapes are not lowered to MLIR yet",
                o.name,
                body.value_type(o.value),
                domain
            ));
        }
    }
    let n: usize = domain.iter().product();
    let mut params = Vec::new();
    for (k, input) in body.inputs().iter().enumerate() {
        let (elem, _) = storage(input.ty.dtype)?;
        let count: usize = dims(&input.ty)?.iter().product();
        params.push(format!("%in{k}: memref<{count}x{elem}>"));
    }
    for (k, o) in outputs.iter().enumerate() {
        let (elem, _) = storage(body.value_type(o.value).dtype)?;
        params.push(format!("%out{k}: memref<{n}x{elem}>"));
    }
    let mut text = String::new();
    let mut globals = String::new();
    let mut e = Emitter {
        out: &mut text,
        next: 0,
    };
    let mut index = Index {
        domain: &domain,
        coords: None,
    };
    let mut values: HashMap<ValueId, Scalar> = HashMap::new();
    let order = body.topo_order().map_err(|e| e.to_string())?;
    for id in order {
        let node = body.node(id);
        let result = ValueId::first(id);
        let scalar = match &node.op {
            Op::Input { index: k } => {
                let ty = &body.inputs()[*k].ty;
                let (elem, compute) = storage(ty.dtype)?;
                let count: usize = dims(ty)?.iter().product();
                let at = index.of(&mut e, &dims(ty)?);
                let raw = e.assign(format!("memref.load %in{k}[{at}] : memref<{count}x{elem}>"));
                scalar::widen(&mut e, raw, ty.dtype, compute)
            }
            Op::Const(t) if t.len() == 1 => scalar::constant(&mut e, t)?,
            Op::Const(t) => {
                // Read like an input, from a constant global of the module.
                let (elem, compute) = storage(t.dtype())?;
                let global = format!("{symbol}_c{}", id.index());
                let ty = format!("memref<{}x{elem}>", t.len());
                let _ = writeln!(
                    globals,
                    "memref.global \"private\" constant @{global} : {ty} = dense<[{}]>",
                    dense(t)?.join(", ")
                );
                let whole = e.assign(format!("memref.get_global @{global} : {ty}"));
                let at = index.of(&mut e, t.shape());
                let raw = e.assign(format!("memref.load {whole}[{at}] : {ty}"));
                scalar::widen(&mut e, raw, t.dtype(), compute)
            }
            Op::Identity | Op::StopGradient => values[&node.inputs[0]].clone(),
            op => {
                let args: Vec<Scalar> = node.inputs.iter().map(|v| values[v].clone()).collect();
                let dtypes: Vec<DType> = (node.inputs.iter())
                    .map(|v| body.value_type(*v).dtype)
                    .collect();
                scalar::op(&mut e, op, &args, &dtypes, node.outputs[0].dtype)?
            }
        };
        values.insert(result, scalar);
    }
    for (k, o) in outputs.iter().enumerate() {
        let dtype = body.value_type(o.value).dtype;
        let (elem, _) = storage(dtype)?;
        let stored = scalar::narrow(&mut e, &values[&o.value], dtype);
        e.line(format!(
            "memref.store {stored}, %out{k}[%i] : memref<{n}x{elem}>"
        ));
    }
    Ok(Body {
        params,
        globals,
        elements: n,
        text,
    })
}

/// Writes `b` as the `gpu.func` named `symbol`: one thread per element, guarded by `i < n`.
pub fn gpu_func(out: &mut String, symbol: &str, name: &str, b: &Body) {
    let n = b.elements;
    for g in b.globals.lines() {
        let _ = writeln!(out, "    {g}");
    }
    let _ = writeln!(
        out,
        "    // node `{}`: {n} elements",
        name.replace('\n', " ")
    );
    let _ = writeln!(
        out,
        "    gpu.func @{symbol}({}) kernel {{",
        b.params.join(", ")
    );
    out.push_str(
        "      %block = gpu.block_id x\n      %width = gpu.block_dim x\n      \
         %thread = gpu.thread_id x\n      %first = arith.muli %block, %width : index\n      \
         %i = arith.addi %first, %thread : index\n",
    );
    let _ = writeln!(out, "      %n = arith.constant {n} : index");
    out.push_str("      %inside = arith.cmpi ult, %i, %n : index\n      scf.if %inside {\n");
    out.push_str(&b.text);
    out.push_str("      }\n      gpu.return\n    }\n");
}

/// Writes `b` as the host function named `symbol`: a loop over the elements, the same
/// instructions in its body (what the tests run on the CPU).
pub fn host_func(out: &mut String, symbol: &str, b: &Body) {
    for g in b.globals.lines() {
        let _ = writeln!(out, "  {g}");
    }
    let _ = writeln!(out, "  func.func @{symbol}({}) {{", b.params.join(", "));
    let _ = writeln!(
        out,
        "    %zero = arith.constant 0 : index\n    %one = arith.constant 1 : index\n    \
         %n = arith.constant {} : index\n    scf.for %i = %zero to %n step %one {{",
        b.elements
    );
    out.push_str(&b.text);
    out.push_str("    }\n    return\n  }\n");
}

/// The thread's element: its flat index `%i`, and its coordinates in the kernel's shape once
/// a broadcast input needs them.
struct Index<'d> {
    domain: &'d [usize],
    coords: Option<Vec<String>>,
}

impl Index<'_> {
    /// The flat index into an input of dimensions `dims` (right-aligned against the kernel's
    /// shape, as NumPy broadcasts) that the thread's element reads.
    fn of(&mut self, e: &mut Emitter, dims: &[usize]) -> String {
        if dims == self.domain {
            return "%i".into();
        }
        if dims.iter().product::<usize>() == 1 {
            return e.assign("arith.constant 0 : index");
        }
        let coords = self.coords(e);
        let skip = self.domain.len() - dims.len();
        let mut stride = 1;
        let mut offset: Option<String> = None;
        for (j, &d) in dims.iter().enumerate().rev() {
            if d != 1 {
                let c = &coords[skip + j];
                let term = if stride == 1 {
                    c.clone()
                } else {
                    let s = e.assign(format!("arith.constant {stride} : index"));
                    e.assign(format!("arith.muli {c}, {s} : index"))
                };
                offset = Some(match offset {
                    None => term,
                    Some(o) => e.assign(format!("arith.addi {o}, {term} : index")),
                });
            }
            stride *= d;
        }
        offset.expect("an input of more than one element has a dimension above 1")
    }

    /// The coordinates of `%i` in the kernel's shape, written once.
    fn coords(&mut self, e: &mut Emitter) -> Vec<String> {
        if let Some(c) = &self.coords {
            return c.clone();
        }
        let mut coords = vec![String::new(); self.domain.len()];
        let mut rest = "%i".to_string();
        for (k, &d) in self.domain.iter().enumerate().rev() {
            if k == 0 {
                coords[k] = rest.clone();
                break;
            }
            let size = e.assign(format!("arith.constant {d} : index"));
            coords[k] = e.assign(format!("arith.remui {rest}, {size} : index"));
            rest = e.assign(format!("arith.divui {rest}, {size} : index"));
        }
        self.coords = Some(coords.clone());
        coords
    }
}
