//! ONNX control flow (`If`, `Loop`, `Scan`) onto the IR's `if` and `while` regions.
//!
//! A body may read values of the graphs around it by name (implicit captures). Its free
//! variables ([`free_vars`]: names its nodes, the graphs nested in them, or its outputs use and
//! it does not define) are looked up in the enclosing builder ([`Captures`]): a captured
//! constant becomes a constant inside the region, sharing the tensor, so a body's weights fold
//! and pack as they would outside it; every other captured value is passed to the region, as an
//! `if`'s extra argument or a `while`'s loop-invariant carried value, in first-use order.
//!
//! - `If(cond)` is an `if` whose branches both take the union of the two bodies' captures; on
//!   a condition constant while importing (a test of shapes), the branch taken is imported in
//!   place.
//! - `Loop(M, cond, v...)` is a `while` carrying `[i, M, cond, v..., captures..., lists...]`
//!   (`i` the iteration number, `M` the trip count or `i64::MAX`), whose cond is
//!   `cond && i < M`. A scan output is a list (`list_reserve`) whose row `i` the body writes
//!   (`set_item`). How many rows: when the loop's control (the counter, the condition, and the
//!   carried values they are computed from) starts from constants, the importer runs just that
//!   part of the loop ([`trip_count`]) and reserves the exact count (the loops tf2onnx writes
//!   for Keras layers count to a constant). Otherwise it reserves `M` rows and, when the
//!   condition may end the loop early, slices the result to the iterations run: a shape known
//!   only at run time, which specialization refuses (as it does a reservation of `M` rows when
//!   `M` is not known by then).
//! - `Scan` (opset 9 and later) is a `while` over `t < T` reading row `t` (`T - 1 - t` when
//!   reversed) of each scan input moved to axis 0 by a transpose, and writing each scan output
//!   the same way.
//!
//! [`LoopBody`] builds a `while` whose body the importer writes itself; the recurrent layers
//! (`ops/recurrent.rs`) use it too.

use super::items::is_container;
use super::ops::{item_row, norm_axis, row, OnnxOp};
use super::unroll::{carries_items, inline_body, unroll_loop};
use super::{Builder, Item, NodeCx};
use crate::import::ImportError;
use lathe_ir::ops::BinaryOp as B;
use lathe_ir::{DType, Dim, NodeId, Op, Tensor, TensorType, ValueId};
use lathe_proto::onnx::GraphProto;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

type Out = Result<Vec<ValueId>, String>;

/// Iterations of a loop's control the importer runs at most to learn its trip count.
const MAX_TRIP_COUNT_RUN: u64 = 1 << 14;
/// Largest value (elements) the control of a loop may compute while the importer runs it.
const MAX_CONTROL_ELEMENTS: usize = 4096;

/// The control-flow rows of the table.
pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        item_row("If", &["if", "reshape"], import_if),
        item_row(
            "Loop",
            &[
                "while",
                "list_reserve",
                "set_item",
                "add",
                "less",
                "logical_and",
                "maximum",
                "slice",
                "concat",
                "reshape",
                "cast",
                "pack",
            ],
            |b, cx| match carries_items(b, cx) {
                true => unroll_loop(b, cx),
                false => Ok(import_loop(b, cx)?.into_iter().map(Item::Tensor).collect()),
            },
        ),
        row(
            "Scan",
            &[
                "while",
                "list_reserve",
                "set_item",
                "gather",
                "transpose",
                "shape",
                "add",
                "sub",
                "less",
            ],
            import_scan,
        ),
    ]
}

/// The names a graph reads from the graphs around it: names its nodes use as inputs (or the
/// graphs nested in its nodes read from outside themselves) or that it returns, which it does
/// not define as an input, an initializer or a node output. In order of first use, each once.
pub(crate) fn free_vars(gp: &GraphProto) -> Vec<String> {
    let mut defined: HashSet<&str> = HashSet::new();
    defined.extend(gp.input.iter().filter_map(|i| i.name.as_deref()));
    defined.extend(gp.initializer.iter().filter_map(|t| t.name.as_deref()));
    defined.extend(
        gp.sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref()?.name.as_deref()),
    );
    for n in &gp.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    let mut seen = HashSet::new();
    let mut free = Vec::new();
    let mut read = |name: &str| {
        if !name.is_empty() && !defined.contains(name) && seen.insert(name.to_string()) {
            free.push(name.to_string());
        }
    };
    for n in &gp.node {
        for i in &n.input {
            read(i);
        }
        for a in &n.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                for v in free_vars(g) {
                    read(&v);
                }
            }
        }
    }
    for o in &gp.output {
        read(o.name.as_deref().unwrap_or(""));
    }
    free
}

/// The values regions read from the enclosing graph, by name: constants (taken into the
/// region) and other values (passed to it).
#[derive(Default)]
pub(crate) struct Captures {
    consts: Vec<(String, Arc<Tensor>)>,
    values: Vec<(String, ValueId)>,
}

impl Captures {
    /// What `graphs` (the bodies of one node) read from `b`'s scope, in one order for all.
    pub fn of(b: &Builder, graphs: &[&GraphProto]) -> Result<Captures, String> {
        let mut c = Captures::default();
        let mut seen = HashSet::new();
        for g in graphs {
            for name in free_vars(g) {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let v = b.lookup(&name).ok_or_else(|| match b.item(&name) {
                    Some(item) => format!(
                        "its body reads `{name}`, which is {}: a region (a branch or loop body \
                         whose condition or trip count is known only at run time) reads \
                         tensors only, so this is not supported",
                        item.kind()
                    ),
                    None => format!(
                        "its body reads `{name}`, which neither it nor an enclosing graph defines"
                    ),
                })?;
                match const_tensor(b, v) {
                    Some(t) => c.consts.push((name, t)),
                    None => c.values.push((name, v)),
                }
            }
        }
        Ok(c)
    }

    /// The captured values that are not constants, in order (the extra region arguments).
    pub fn values(&self) -> Vec<ValueId> {
        self.values.iter().map(|(_, v)| *v).collect()
    }

    /// Binds the captures in region builder `inner`: constants as constants, the other values
    /// as new inputs of the region (typed as in `outer`).
    pub fn bind(&self, outer: &Builder, inner: &mut Builder) {
        for (name, t) in &self.consts {
            let v = shared_const(inner, t.clone(), name);
            inner.bind(name, v);
        }
        for (name, v) in &self.values {
            let arg = inner.g.add_input(name.clone(), outer.ty(*v).clone());
            inner.bind(name, arg);
        }
    }

    /// Binds the captures in a loop body: constants as constants, the other values as
    /// loop-invariant carried values.
    fn bind_loop(&self, outer: &Builder, lp: &mut LoopBody) {
        for (name, t) in &self.consts {
            let v = shared_const(&mut lp.b, t.clone(), name);
            lp.b.bind(name, v);
        }
        for (name, v) in &self.values {
            let arg = lp.invariant(outer, *v, name);
            lp.b.bind(name, arg);
        }
    }
}

/// The tensor `v` is, when it is a constant.
pub(crate) fn const_tensor(b: &Builder, v: ValueId) -> Option<Arc<Tensor>> {
    match &b.g.node(v.node).op {
        Op::Const(t) => Some(t.clone()),
        _ => None,
    }
}

/// A constant node holding `t` (shared, not copied).
fn shared_const(b: &mut Builder, t: Arc<Tensor>, name: &str) -> ValueId {
    let id =
        b.g.add_node(Op::Const(t), vec![], name)
            .expect("a constant has no inputs to check");
    ValueId::first(id)
}

/// The name the current ONNX node's IR nodes get.
pub(crate) fn node_name(b: &Builder) -> String {
    b.current.clone()
}

/// An error inside a nested graph (`what`: a region, or a graph imported in place), said as
/// the enclosing node's, which `b` converts. The graph input values it needed stay reported
/// (see [`Builder::not_constant`]); only a graph imported in place into the model's graph can
/// need them.
pub(crate) fn in_region(b: &Builder, what: &str, e: ImportError) -> String {
    let message = match (&e.node, &e.op) {
        (Some(n), Some(op)) => format!("in its {what}, node `{n}` (op {op}): {}", e.message),
        _ => format!("in its {what}: {}", e.message),
    };
    if let Some(needs) = e.needs_values {
        b.needs.replace(Some((needs.inputs, e.message)));
    }
    message
}

/// The outputs of a node with `n` outputs.
fn outputs_of(node: NodeId, n: usize) -> Vec<ValueId> {
    (0..n)
        .map(|k| ValueId {
            node,
            output: k as u32,
        })
        .collect()
}

/// `v` as a scalar: a rank-0 value as it is, a one-element one reshaped. `what` names it.
fn scalar(b: &mut Builder, v: ValueId, what: &str) -> Result<ValueId, String> {
    let ty = b.ty(v).clone();
    if ty.rank() == 0 {
        return Ok(v);
    }
    if ty.shape.num_elements() != Some(1) {
        return Err(format!("{what} must hold one element, got {ty}"));
    }
    let empty = b.konst(Tensor::from_vec(&[0], Vec::<i64>::new()));
    b.op(Op::Reshape, &[v, empty])
}

/// `v` as a bool scalar (a condition).
fn bool_scalar(b: &mut Builder, v: ValueId, what: &str) -> Result<ValueId, String> {
    let dt = b.dtype(v);
    if dt != DType::Bool {
        return Err(format!("{what} must be bool, got {}", b.ty(v)));
    }
    scalar(b, v, what)
}

/// `v` as an i64 scalar (a count).
fn i64_scalar_of(b: &mut Builder, v: ValueId, what: &str) -> Result<ValueId, String> {
    let dt = b.dtype(v);
    if !dt.is_int() {
        return Err(format!("{what} must be an integer, got {}", b.ty(v)));
    }
    let v = scalar(b, v, what)?;
    if dt == DType::I64 {
        return Ok(v);
    }
    b.op(Op::Cast { to: DType::I64 }, &[v])
}

/// A `while` whose body is being built: the carried values' initial values (in the enclosing
/// graph), the body inputs standing for them, and their next values. Carried value `k` is the
/// body's (and the cond's) input `k`.
pub(crate) struct LoopBody<'a> {
    /// The body being built.
    pub b: Builder<'a>,
    name: String,
    inits: Vec<ValueId>,
    args: Vec<ValueId>,
    /// The body's result for each carried value; `None` returns it unchanged.
    next: Vec<Option<ValueId>>,
    /// The carried step and step count of a loop made by [`LoopBody::counted`].
    counter: Option<(usize, usize)>,
}

impl<'a> LoopBody<'a> {
    /// An empty loop in `outer`, its regions named after `name`.
    pub fn new(outer: &Builder<'a>, name: &str) -> Result<LoopBody<'a>, String> {
        let b = outer
            .nested(&format!("{name}/body"))
            .map_err(|e| e.message)?;
        Ok(LoopBody {
            b,
            name: name.to_string(),
            inits: Vec::new(),
            args: Vec::new(),
            next: Vec::new(),
            counter: None,
        })
    }

    /// A loop of `steps` iterations (an i64 scalar of `outer`), its regions named after
    /// `name`: it carries the step `t`, from 0, and `steps` (in the body,
    /// [`LoopBody::step`] and [`LoopBody::steps`]); [`LoopBody::finish_counted`] adds it.
    pub fn counted(
        outer: &mut Builder<'a>,
        name: &str,
        steps: ValueId,
    ) -> Result<LoopBody<'a>, String> {
        let mut lp = LoopBody::new(outer, name)?;
        let zero = outer.i64_scalar(0);
        let t = lp.carry(outer, zero, "t");
        let n = lp.carry(outer, steps, "steps");
        lp.counter = Some((t, n));
        Ok(lp)
    }

    /// The carried step and step count of a counted loop.
    fn counter(&self) -> (usize, usize) {
        self.counter
            .expect("a loop made by LoopBody::counted has a counter")
    }

    /// The step `t` (an i64 scalar, from 0) in the body of a counted loop.
    pub fn step(&self) -> ValueId {
        self.args[self.counter().0]
    }

    /// The step count in the body of a counted loop.
    pub fn steps(&self) -> ValueId {
        self.args[self.counter().1]
    }

    /// Carries `init` (a value of `outer`) through the loop, unchanged until
    /// [`LoopBody::set_next`] says otherwise; returns its index.
    pub fn carry(&mut self, outer: &Builder, init: ValueId, name: &str) -> usize {
        let arg = self.b.g.add_input(name, outer.ty(init).clone());
        self.inits.push(init);
        self.args.push(arg);
        self.next.push(None);
        self.args.len() - 1
    }

    /// The body input of carried value `k`.
    pub fn arg(&self, k: usize) -> ValueId {
        self.args[k]
    }

    /// Sets the body's result for carried value `k`.
    pub fn set_next(&mut self, k: usize, v: ValueId) {
        self.next[k] = Some(v);
    }

    /// `v` (a value of `outer` the body reads and never changes) in the body: a constant
    /// stays a constant, sharing the tensor; another value is carried unchanged.
    pub fn invariant(&mut self, outer: &Builder, v: ValueId, name: &str) -> ValueId {
        match const_tensor(outer, v) {
            Some(t) => shared_const(&mut self.b, t, name),
            None => {
                let k = self.carry(outer, v, name);
                self.args[k]
            }
        }
    }

    /// Adds a counted loop's `while` to `outer`: the step's next value is `t + 1`, and the
    /// loop runs while `t < steps`. Returns the loop's results, one per carried value.
    pub fn finish_counted(mut self, outer: &mut Builder) -> Result<Vec<ValueId>, String> {
        let (kt, kn) = self.counter();
        let one = self.b.i64_scalar(1);
        let t_next = self.b.op(Op::Binary(B::Add), &[self.args[kt], one])?;
        self.set_next(kt, t_next);
        self.finish(outer, |c, a| c.op(Op::Binary(B::Less), &[a[kt], a[kn]]))
    }

    /// Adds the `while` to `outer`; `cond` computes its condition from the carried values
    /// (the inputs of a graph of its own, built with the given builder). Returns the loop's
    /// results, one per carried value.
    pub fn finish(
        self,
        outer: &mut Builder,
        cond: impl FnOnce(&mut Builder, &[ValueId]) -> Result<ValueId, String>,
    ) -> Result<Vec<ValueId>, String> {
        let LoopBody {
            b: mut body,
            name,
            inits,
            args,
            next,
            ..
        } = self;
        let mut c = outer
            .nested(&format!("{name}/cond"))
            .map_err(|e| e.message)?;
        let mut cond_args = Vec::with_capacity(args.len());
        for input in body.g.inputs() {
            cond_args.push(c.g.add_input(input.name.clone(), input.ty.clone()));
        }
        c.naming(&format!("{name}/cond"));
        let flag = cond(&mut c, &cond_args)?;
        let flag = bool_scalar(&mut c, flag, "the loop condition")?;
        c.g.add_output("cond", flag).map_err(|e| e.to_string())?;
        for (k, n) in next.iter().enumerate() {
            let name = body.g.inputs()[k].name.clone();
            body.g
                .add_output(name, n.unwrap_or(args[k]))
                .map_err(|e| e.to_string())?;
        }
        let op = Op::While {
            cond: Arc::new(c.g),
            body: Arc::new(body.g),
        };
        let node = outer.node_of(op, &inits)?;
        Ok(outputs_of(node, inits.len()))
    }
}

/// `If(cond)`: an `if` on the condition and the branches' captured values; when the
/// condition is a constant while importing (a test of shapes, as ONNX's function expansions
/// write), the branch taken is imported in place and the other is never read. Branches that
/// return sequences or optionals need that: the condition must be known while importing.
fn import_if(b: &mut Builder, cx: &NodeCx) -> Result<Vec<Item>, String> {
    let then_g = cx.attrs.graph("then_branch")?;
    let else_g = cx.attrs.graph("else_branch")?;
    let cond = bool_scalar(b, cx.input(0)?, "the condition")?;
    if let Some(taken) = b.const_of(cond).and_then(truth) {
        let (what, gp) = if taken {
            ("then_branch", then_g)
        } else {
            ("else_branch", else_g)
        };
        return inline(b, cx, what, gp);
    }
    if (then_g.output.iter().chain(&else_g.output)).any(is_container) {
        return Err(b.not_constant(
            cond,
            "the condition",
            " (its branches return sequences or optionals)",
        ));
    }
    let caps = Captures::of(b, &[then_g, else_g])?;
    let then_branch = b
        .region(then_g, &[], &caps)
        .map_err(|e| in_region(b, "then_branch", e))?;
    let else_branch = b
        .region(else_g, &[], &caps)
        .map_err(|e| in_region(b, "else_branch", e))?;
    let n = then_branch.outputs().len();
    if else_branch.outputs().len() != n {
        return Err(format!(
            "then_branch returns {n} values but else_branch {}",
            else_branch.outputs().len()
        ));
    }
    if cx.outputs() > n {
        return Err(format!(
            "the node has {} outputs but its branches return {n}",
            cx.outputs()
        ));
    }
    let mut ins = vec![cond];
    ins.extend(caps.values());
    let op = Op::If {
        then_branch: Arc::new(then_branch),
        else_branch: Arc::new(else_branch),
    };
    let node = b.node_of(op, &ins)?;
    Ok(outputs_of(node, n).into_iter().map(Item::Tensor).collect())
}

/// Imports the branch `gp` of an `If` into the enclosing graph itself (its names are unique
/// in the model, so they can share the scope); returns its outputs.
fn inline(b: &mut Builder, cx: &NodeCx, what: &str, gp: &GraphProto) -> Result<Vec<Item>, String> {
    if !gp.input.is_empty() {
        return Err(format!("its {what} takes inputs; a branch takes none"));
    }
    if cx.outputs() > gp.output.len() {
        return Err(format!(
            "the node has {} outputs but its {what} returns {}",
            cx.outputs(),
            gp.output.len()
        ));
    }
    inline_body(b, gp, &[], what)
}

/// The name of input or output `k` of a body (`""` when unnamed).
fn io_name(list: &[lathe_proto::onnx::ValueInfoProto], k: usize) -> &str {
    list.get(k).and_then(|v| v.name.as_deref()).unwrap_or("")
}

/// The value a body output names, after the body's nodes are imported.
fn body_output(lp: &LoopBody, gp: &GraphProto, k: usize) -> Result<ValueId, String> {
    let name = io_name(&gp.output, k);
    lp.b.lookup(name)
        .ok_or_else(|| format!("its body's output `{name}` is not produced by any node"))
}

/// Whether body output `out` is body input `input` (directly or through `Identity` nodes).
fn passes_through(gp: &GraphProto, input: usize, out: usize) -> bool {
    let want = io_name(&gp.input, input);
    let mut name = io_name(&gp.output, out);
    for _ in 0..=gp.node.len() {
        if name == want {
            return !want.is_empty();
        }
        let producer = gp.node.iter().find(|n| n.output.iter().any(|o| o == name));
        match producer {
            Some(n) if n.op_type.as_deref() == Some("Identity") && n.input.len() == 1 => {
                name = &n.input[0];
            }
            _ => return false,
        }
    }
    false
}

/// `Loop(M, cond, v...)`: a `while`; see the module documentation.
fn import_loop(b: &mut Builder, cx: &NodeCx) -> Out {
    let gp = cx.attrs.graph("body")?;
    let name = node_name(b);
    let nv = cx.inputs.len().saturating_sub(2);
    if gp.input.len() != nv + 2 {
        return Err(format!(
            "its body takes {} inputs; a Loop with {nv} loop-carried values needs {} \
             (the iteration number, the condition, the values)",
            gp.input.len(),
            nv + 2
        ));
    }
    if gp.output.len() < nv + 1 {
        return Err(format!(
            "its body returns {} values; a Loop with {nv} loop-carried values needs at least {}",
            gp.output.len(),
            nv + 1
        ));
    }
    let nscan = gp.output.len() - 1 - nv;
    let m = match cx.opt(0) {
        Some(m) => Some(i64_scalar_of(b, m, "the trip count M")?),
        None => None,
    };
    let cond0 = match cx.opt(1) {
        Some(c) => Some(bool_scalar(b, c, "the condition")?),
        None => None,
    };
    if m.is_none() && cond0.is_none() {
        return Err("a Loop with neither a trip count nor a condition never ends".into());
    }
    let inits: Vec<ValueId> = (0..nv)
        .map(|k| {
            cx.opt(2 + k)
                .ok_or_else(|| format!("loop-carried input {} has no value", 2 + k))
        })
        .collect::<Result<_, _>>()?;
    let caps = Captures::of(b, &[gp])?;

    let mut lp = LoopBody::new(b, &name)?;
    let zero = b.i64_scalar(0);
    let bound = match m {
        Some(m) => m,
        None => b.i64_scalar(i64::MAX),
    };
    let yes = b.konst(Tensor::scalar(true));
    let ki = lp.carry(b, zero, "iteration");
    let km = lp.carry(b, bound, "trip_count");
    let kc = lp.carry(b, cond0.unwrap_or(yes), "cond");
    lp.b.bind(io_name(&gp.input, 0), lp.arg(ki));
    lp.b.bind(io_name(&gp.input, 1), lp.arg(kc));
    let mut kv = Vec::with_capacity(nv);
    for (k, &init) in inits.iter().enumerate() {
        let input = io_name(&gp.input, 2 + k).to_string();
        let kk = lp.carry(b, init, &input);
        kv.push(kk);
        // A constant the body returns unchanged is a constant inside it too.
        match const_tensor(b, init).filter(|_| passes_through(gp, 2 + k, 1 + k)) {
            Some(t) => {
                let c = shared_const(&mut lp.b, t, &input);
                lp.b.bind(&input, c);
            }
            None => lp.b.bind(&input, lp.arg(kk)),
        }
    }
    caps.bind_loop(b, &mut lp);
    lp.b.initializers(gp).map_err(|e| in_region(b, "body", e))?;
    lp.b.nodes(gp).map_err(|e| in_region(b, "body", e))?;

    lp.b.naming(&format!("{name}/step"));
    let cond_out = body_output(&lp, gp, 0)?;
    let cond_next = if cond0.is_some() {
        bool_scalar(&mut lp.b, cond_out, "the body's condition output")?
    } else {
        // Without a condition input the body's condition output is ignored.
        lp.b.konst(Tensor::scalar(true))
    };
    lp.set_next(kc, cond_next);
    let one = lp.b.i64_scalar(1);
    let i_next = lp.b.op(Op::Binary(B::Add), &[lp.arg(ki), one])?;
    lp.set_next(ki, i_next);
    for (k, &kk) in kv.iter().enumerate() {
        let v = body_output(&lp, gp, 1 + k)?;
        lp.set_next(kk, v);
    }
    let items: Vec<ValueId> = (0..nscan)
        .map(|j| body_output(&lp, gp, 1 + nv + j))
        .collect::<Result<_, _>>()?;

    // Scan outputs: how many rows, and whether the loop may stop before writing them all.
    let (count, may_stop_early) = if nscan == 0 {
        (None, false)
    } else {
        match trip_count(b, &lp, ki, km, kc) {
            Some(n) => (Some(b.i64_scalar(n as i64)), false),
            None => match m {
                Some(m) => {
                    let z = b.i64_scalar(0);
                    let rows = b.op(Op::Binary(B::Maximum), &[m, z])?;
                    (Some(rows), cond0.is_some())
                }
                None => {
                    return Err(
                        "scan outputs of a Loop without a trip count M (whose condition the \
                         importer cannot run ahead) are not supported"
                            .into(),
                    )
                }
            },
        }
    };
    let mut kl = Vec::with_capacity(nscan);
    for (j, &item) in items.iter().enumerate() {
        let count = count.expect("a count when there are scan outputs");
        let list = reserve(b, lp.b.ty(item), count)?;
        let k = lp.carry(b, list, &format!("scan_output_{j}"));
        lp.b.naming(&format!("{name}/scan_output_{j}"));
        let written = lp.b.op(Op::SetItem, &[lp.arg(k), lp.arg(ki), item])?;
        lp.set_next(k, written);
        kl.push(k);
    }
    let results = lp.finish(b, |c, a| {
        let less = c.op(Op::Binary(B::Less), &[a[ki], a[km]])?;
        c.op(Op::Binary(B::LogicalAnd), &[a[kc], less])
    })?;
    let mut outs: Vec<ValueId> = kv.iter().map(|&k| results[k]).collect();
    for &k in &kl {
        let list = results[k];
        outs.push(if may_stop_early {
            first_rows(b, list, results[ki])?
        } else {
            list
        });
    }
    Ok(outs)
}

/// A list of `count` rows of `item`'s type, zeros: its unknown dims are `-1`, which
/// specialization learns from the item the loop writes.
pub(crate) fn reserve(
    b: &mut Builder,
    item: &TensorType,
    count: ValueId,
) -> Result<ValueId, String> {
    let dims: Vec<i64> = item
        .shape
        .dims()
        .iter()
        .map(|d| d.known().map_or(-1, |k| k as i64))
        .collect();
    let dtype = item.dtype;
    let shape = b.i64s(&dims);
    b.op(Op::ListReserve { dtype }, &[shape, count])
}

/// The first `n` (an i64 scalar) rows of `list`.
fn first_rows(b: &mut Builder, list: ValueId, n: ValueId) -> Result<ValueId, String> {
    let rank = b.rank(list);
    let begin = b.i64s(&vec![0; rank]);
    let one = b.i64s(&[1]);
    let n1 = b.op(Op::Reshape, &[n, one])?;
    let rest = b.i64s(&vec![-1; rank - 1]);
    let axis = b.i64_scalar(0);
    let size = b.op(Op::Concat, &[n1, rest, axis])?;
    b.op(Op::Slice, &[list, begin, size])
}

/// The number of iterations a loop runs, when the importer can tell: its control (the
/// iteration counter `ki`, the bound `km`, the condition `kc`, and every carried value their
/// next values are computed from) starts from constants, and running just that part of the
/// body ends within [`MAX_TRIP_COUNT_RUN`] iterations on small values.
fn trip_count(outer: &Builder, lp: &LoopBody, ki: usize, km: usize, kc: usize) -> Option<u64> {
    let g = &lp.b.g;
    let input_index: HashMap<NodeId, usize> = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, i)| (i.node, k))
        .collect();
    // The carried values the control depends on, and the body nodes computing their next values.
    let mut control: BTreeSet<usize> = [ki, km, kc].into();
    let mut needed: HashSet<NodeId> = HashSet::new();
    let mut queue: Vec<usize> = control.iter().copied().collect();
    while let Some(k) = queue.pop() {
        let Some(v) = lp.next[k] else { continue };
        let mut stack = vec![v.node];
        while let Some(n) = stack.pop() {
            if !needed.insert(n) {
                continue;
            }
            if let Some(&j) = input_index.get(&n) {
                if control.insert(j) {
                    queue.push(j);
                }
            }
            stack.extend(g.node(n).inputs.iter().map(|i| i.node));
        }
    }
    let mut vals: HashMap<usize, Arc<Tensor>> = HashMap::new();
    for &k in &control {
        vals.insert(k, const_tensor(outer, lp.inits[k])?);
    }
    let scalar = |t: &Tensor| t.to_i64_vec().ok().filter(|v| v.len() == 1).map(|v| v[0]);
    let m = scalar(&vals[&km])?;
    // A condition that stays true: the bound decides.
    let cond_fixed = match lp.next[kc] {
        None => true,
        Some(v) => g.const_value(v).is_some_and(|t| truth(t) == Some(true)),
    };
    if cond_fixed && truth(&vals[&kc]) == Some(true) && scalar(&vals[&ki]) == Some(0) {
        return (m != i64::MAX).then_some(m.max(0) as u64);
    }
    let order: Vec<NodeId> = g
        .topo_order()
        .ok()?
        .into_iter()
        .filter(|n| needed.contains(n))
        .collect();
    for id in &order {
        let node = g.node(*id);
        let small = node.outputs.iter().all(|t| {
            t.shape
                .num_elements()
                .is_some_and(|n| n <= MAX_CONTROL_ELEMENTS)
        });
        if !small || matches!(node.op, Op::While { .. } | Op::If { .. }) {
            return None;
        }
    }
    for n in 0..=MAX_TRIP_COUNT_RUN {
        let i = scalar(&vals[&ki])?;
        if !(truth(&vals[&kc])? && i < m) {
            return Some(n);
        }
        let mut computed: HashMap<ValueId, Arc<Tensor>> = HashMap::new();
        for &id in &order {
            let node = g.node(id);
            let outs = match &node.op {
                Op::Input { .. } => vec![vals.get(&input_index[&id])?.clone()],
                Op::Const(t) => vec![t.clone()],
                op => {
                    let args: Vec<&Tensor> = node
                        .inputs
                        .iter()
                        .map(|v| computed.get(v).map(Arc::as_ref))
                        .collect::<Option<_>>()?;
                    op.eval(&args).ok()?.into_iter().map(Arc::new).collect()
                }
            };
            for (k, t) in outs.into_iter().enumerate() {
                computed.insert(
                    ValueId {
                        node: id,
                        output: k as u32,
                    },
                    t,
                );
            }
        }
        let mut next = HashMap::new();
        for &k in &control {
            let t = match lp.next[k] {
                None => vals[&k].clone(),
                Some(v) => computed.get(&v)?.clone(),
            };
            next.insert(k, t);
        }
        vals = next;
    }
    None
}

/// The truth of a condition value (`None` when it is not a bool with one element).
fn truth(t: &Tensor) -> Option<bool> {
    lathe_ir::ops::control_flow::truth(t).ok()
}

/// `Scan` (opset 9 and later): a `while` over the scan inputs' rows.
fn import_scan(b: &mut Builder, cx: &NodeCx) -> Out {
    if cx.opset < 9 {
        return Err(
            "Scan before opset 9 (with a batch axis and sequence_lens) is not supported".into(),
        );
    }
    let gp = cx.attrs.graph("body")?;
    let name = node_name(b);
    let inputs: Vec<ValueId> = (0..cx.inputs.len())
        .map(|i| cx.input(i))
        .collect::<Result<_, _>>()?;
    let n_in = inputs.len();
    let n_scan = cx.attrs.int("num_scan_inputs")?;
    let n_scan = usize::try_from(n_scan)
        .ok()
        .filter(|&n| (1..=n_in).contains(&n))
        .ok_or_else(|| {
            format!("num_scan_inputs is {n_scan}, not between 1 and the {n_in} inputs")
        })?;
    let n_state = n_in - n_scan;
    if gp.input.len() != n_in {
        return Err(format!(
            "its body takes {} inputs but the node has {n_in}",
            gp.input.len()
        ));
    }
    if gp.output.len() < n_state {
        return Err(format!(
            "its body returns {} values, fewer than the {n_state} state values",
            gp.output.len()
        ));
    }
    let n_out = gp.output.len() - n_state;
    let list_attr = |attr: &str, n: usize| -> Result<Vec<i64>, String> {
        let v = cx.attrs.ints_or(attr, &vec![0; n]);
        if v.len() != n {
            return Err(format!("`{attr}` has {} entries, not {n}", v.len()));
        }
        Ok(v)
    };
    let in_axes = list_attr("scan_input_axes", n_scan)?;
    let in_dirs = list_attr("scan_input_directions", n_scan)?;
    let out_axes = list_attr("scan_output_axes", n_out)?;
    let out_dirs = list_attr("scan_output_directions", n_out)?;
    if let Some(d) = in_dirs
        .iter()
        .chain(&out_dirs)
        .find(|d| !matches!(d, 0 | 1))
    {
        return Err(format!("a scan direction is {d}, not 0 or 1"));
    }

    // Each scan input with its scan axis first.
    let mut xs = Vec::with_capacity(n_scan);
    for (j, &axis) in in_axes.iter().enumerate() {
        let x = inputs[n_state + j];
        let rank = b.rank(x);
        if rank == 0 {
            return Err(format!(
                "scan input {j} is a scalar; it has no axis to scan"
            ));
        }
        let axis = norm_axis(axis, rank)?;
        xs.push(if axis == 0 {
            x
        } else {
            let mut perm = vec![axis as i64];
            perm.extend((0..rank as i64).filter(|&a| a != axis as i64));
            let perm = b.i64s(&perm);
            b.op(Op::Transpose, &[x, perm])?
        });
    }
    let lengths: BTreeSet<usize> = xs
        .iter()
        .filter_map(|&x| b.ty(x).shape.dims()[0].known())
        .collect();
    if lengths.len() > 1 {
        return Err(format!(
            "the scan inputs have different lengths along their scan axes: {lengths:?}"
        ));
    }
    let steps = match lengths.first() {
        Some(&t) => b.i64_scalar(t as i64),
        None => dim0(b, xs[0])?,
    };
    let caps = Captures::of(b, &[gp])?;

    let mut lp = LoopBody::counted(b, &name, steps)?;
    let mut ks = Vec::with_capacity(n_state);
    for (k, &init) in inputs[..n_state].iter().enumerate() {
        let input = io_name(&gp.input, k).to_string();
        let kk = lp.carry(b, init, &input);
        lp.b.bind(&input, lp.arg(kk));
        ks.push(kk);
    }
    let xs_body: Vec<ValueId> = xs
        .iter()
        .enumerate()
        .map(|(j, &x)| lp.invariant(b, x, &format!("scan_input_{j}")))
        .collect();
    caps.bind_loop(b, &mut lp);

    lp.b.naming(&format!("{name}/step"));
    let (t, n) = (lp.step(), lp.steps());
    let one = lp.b.i64_scalar(1);
    let last = lp.b.op(Op::Binary(B::Sub), &[n, one])?;
    let back = lp.b.op(Op::Binary(B::Sub), &[last, t])?;
    let index = |reverse: i64| if reverse == 1 { back } else { t };
    let axis = lp.b.i64_scalar(0);
    for (j, &x) in xs_body.iter().enumerate() {
        let row =
            lp.b.op(Op::Gather { batch_dims: 0 }, &[x, index(in_dirs[j]), axis])?;
        lp.b.bind(io_name(&gp.input, n_state + j), row);
    }
    lp.b.initializers(gp).map_err(|e| in_region(b, "body", e))?;
    lp.b.nodes(gp).map_err(|e| in_region(b, "body", e))?;
    lp.b.naming(&format!("{name}/step"));
    for (k, &kk) in ks.iter().enumerate() {
        let v = body_output(&lp, gp, k)?;
        lp.set_next(kk, v);
    }
    let mut kl = Vec::with_capacity(n_out);
    for (j, &dir) in out_dirs.iter().enumerate() {
        let item = body_output(&lp, gp, n_state + j)?;
        let list = reserve(b, &lp.b.ty(item).clone(), steps)?;
        let k = lp.carry(b, list, &format!("scan_output_{j}"));
        let written = lp.b.op(Op::SetItem, &[lp.arg(k), index(dir), item])?;
        lp.set_next(k, written);
        kl.push(k);
    }
    let results = lp.finish_counted(b)?;
    let mut outs: Vec<ValueId> = ks.iter().map(|&k| results[k]).collect();
    for (j, &k) in kl.iter().enumerate() {
        let list = results[k];
        let rank = b.rank(list);
        let axis = norm_axis(out_axes[j], rank)?;
        outs.push(if axis == 0 {
            list
        } else {
            // Axis 0 (the steps) moves to `axis`.
            let mut perm: Vec<i64> = (1..=axis as i64).collect();
            perm.push(0);
            perm.extend(axis as i64 + 1..rank as i64);
            let perm = b.i64s(&perm);
            b.op(Op::Transpose, &[list, perm])?
        });
    }
    Ok(outs)
}

/// The size of `x`'s axis 0, an i64 scalar (a constant when known).
pub(crate) fn dim0(b: &mut Builder, x: ValueId) -> Result<ValueId, String> {
    if let Some(Dim::Known(n)) = b.ty(x).shape.dims().first() {
        let n = *n as i64;
        return Ok(b.i64_scalar(n));
    }
    let shape = b.op(Op::Shape { output: DType::I64 }, &[x])?;
    let (index, axis) = (b.i64_scalar(0), b.i64_scalar(0));
    b.op(Op::Gather { batch_dims: 0 }, &[shape, index, axis])
}

/// Small ONNX models built in Rust, for the importer's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::super::{import_bytes, tensor};
    use crate::import::ImportError;
    use lathe_ir::{Graph, Tensor};
    use lathe_proto::onnx::{
        attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
        ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use prost::Message;
    use std::path::Path;

    pub const F32: i32 = 1;
    pub const I64: i32 = 7;
    pub const BOOL: i32 = 9;

    /// A node `op(ins) -> outs`, named after its first output.
    pub fn node(op: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
        NodeProto {
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            name: Some(outs.first().map_or(op, |o| o).to_string()),
            op_type: Some(op.to_string()),
            ..Default::default()
        }
    }

    fn attr(n: &mut NodeProto, name: &str, ty: AttributeType, f: impl FnOnce(&mut AttributeProto)) {
        let mut a = AttributeProto {
            name: Some(name.into()),
            r#type: Some(ty as i32),
            ..Default::default()
        };
        f(&mut a);
        n.attribute.push(a);
    }

    /// `n` with a graph attribute.
    pub fn graph_attr(mut n: NodeProto, name: &str, g: GraphProto) -> NodeProto {
        attr(&mut n, name, AttributeType::Graph, |a| a.g = Some(g));
        n
    }

    /// `n` with an int attribute.
    pub fn int_attr(mut n: NodeProto, name: &str, i: i64) -> NodeProto {
        attr(&mut n, name, AttributeType::Int, |a| a.i = Some(i));
        n
    }

    /// `n` with an ints attribute.
    pub fn ints_attr(mut n: NodeProto, name: &str, v: &[i64]) -> NodeProto {
        attr(&mut n, name, AttributeType::Ints, |a| a.ints = v.to_vec());
        n
    }

    /// `n` with a string attribute.
    pub fn str_attr(mut n: NodeProto, name: &str, s: &str) -> NodeProto {
        attr(&mut n, name, AttributeType::String, |a| {
            a.s = Some(s.as_bytes().to_vec())
        });
        n
    }

    /// `n` with a strings attribute.
    pub fn strs_attr(mut n: NodeProto, name: &str, v: &[&str]) -> NodeProto {
        attr(&mut n, name, AttributeType::Strings, |a| {
            a.strings = v.iter().map(|s| s.as_bytes().to_vec()).collect()
        });
        n
    }

    /// A tensor value of element type `elem` and shape `dims` (`-1`: a symbolic dim).
    pub fn value(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .enumerate()
            .map(|(k, &d)| tensor_shape_proto::Dimension {
                value: Some(if d < 0 {
                    tensor_shape_proto::dimension::Value::DimParam(format!("{name}_{k}"))
                } else {
                    tensor_shape_proto::dimension::Value::DimValue(d)
                }),
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(elem),
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A graph of `nodes` with inputs, outputs and initializers.
    pub fn graph(
        name: &str,
        nodes: Vec<NodeProto>,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
        inits: &[(&str, Tensor)],
    ) -> GraphProto {
        GraphProto {
            node: nodes,
            name: Some(name.into()),
            initializer: inits.iter().map(|(n, t)| tensor::to_proto(t, n)).collect(),
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }

    /// Imports a model of graph `g` at operator set `opset`.
    pub fn import(g: GraphProto, opset: i64) -> Result<Graph, ImportError> {
        let m = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(g),
            ..Default::default()
        };
        import_bytes(&m.encode_to_vec(), Path::new("test.onnx"))
    }

    /// Runs `g` on the interpreter.
    pub fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
        lathe_ir::verify(g).unwrap();
        lathe_ir::interp::run(g, inputs).unwrap()
    }

    /// The values of `t` as f64.
    pub fn vals(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use lathe_ir::Graph;

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(dims, v.to_vec())
    }

    /// The nodes of `g` with op mnemonic `op`.
    fn count(g: &Graph, op: &str) -> usize {
        g.node_ids()
            .into_iter()
            .filter(|&id| g.node(id).op.mnemonic() == op)
            .count()
    }

    #[test]
    fn free_vars_are_uses_not_defined_inside_in_first_use_order() {
        let inner = graph(
            "inner",
            vec![node("Add", &["t", "outer_y"], &["u"])],
            vec![],
            vec![value("u", F32, &[2]), value("outer_w", F32, &[2])],
            &[],
        );
        let body = graph(
            "body",
            vec![
                node("Add", &["a", "outer_x"], &["t"]),
                node("Mul", &["t", "w"], &["t2"]),
                graph_attr(node("If", &["c"], &["v"]), "then_branch", inner),
                node("Sub", &["t2", "outer_x"], &["t3"]),
            ],
            vec![value("a", F32, &[2])],
            vec![value("t3", F32, &[2]), value("outer_z", F32, &[2])],
            &[("w", f32s(&[2], &[1.0, 2.0]))],
        );
        // `t` is defined by the body, so the nested graph's use of it is not free.
        assert_eq!(
            free_vars(&body),
            ["outer_x", "c", "outer_y", "outer_w", "outer_z"]
        );
    }

    /// `If(c)`: then `x * w` (w a constant of the outer graph), else `relu(x)`.
    fn if_model() -> lathe_proto::onnx::GraphProto {
        let then_g = graph(
            "then",
            vec![node("Mul", &["x", "w"], &["y_then"])],
            vec![],
            vec![value("y_then", F32, &[3])],
            &[],
        );
        let else_g = graph(
            "else",
            vec![node("Relu", &["x"], &["y_else"])],
            vec![],
            vec![value("y_else", F32, &[3])],
            &[],
        );
        let n = graph_attr(node("If", &["c"], &["y"]), "then_branch", then_g);
        let n = graph_attr(n, "else_branch", else_g);
        graph(
            "main",
            vec![n],
            vec![value("c", BOOL, &[]), value("x", F32, &[3])],
            vec![value("y", F32, &[3])],
            &[("w", f32s(&[3], &[2.0, 2.0, 2.0]))],
        )
    }

    #[test]
    fn if_passes_captured_values_and_keeps_captured_constants_inside() {
        let g = import(if_model(), 17).unwrap();
        let id = g
            .node_ids()
            .into_iter()
            .find(|&id| matches!(g.node(id).op, Op::If { .. }))
            .unwrap();
        // The condition and `x`; `w` is a constant inside the then branch.
        assert_eq!(g.node(id).inputs.len(), 2);
        let Op::If { then_branch, .. } = &g.node(id).op else {
            unreachable!()
        };
        assert_eq!(then_branch.inputs().len(), 1);
        assert_eq!(count(then_branch, "const"), 1);
        let x = f32s(&[3], &[1.0, -2.0, 3.0]);
        let yes = run(&g, &[Tensor::scalar(true), x.clone()]);
        assert_eq!(vals(&yes[0]), [2.0, -4.0, 6.0]);
        let no = run(&g, &[Tensor::scalar(false), x]);
        assert_eq!(vals(&no[0]), [1.0, 0.0, 3.0]);
    }

    /// `If(c)`: then `x` (an input of type `x_dims`), else a constant `[2]`.
    fn if_of_shapes(x_dims: &[i64]) -> lathe_proto::onnx::GraphProto {
        let then_g = graph(
            "then",
            vec![node("Identity", &["x"], &["a"])],
            vec![],
            vec![value("a", F32, &[-1])],
            &[],
        );
        let else_g = graph(
            "else",
            vec![],
            vec![],
            vec![value("k", F32, &[2])],
            &[("k", f32s(&[2], &[7.0, 8.0]))],
        );
        let n = graph_attr(node("If", &["c"], &["y"]), "then_branch", then_g);
        let n = graph_attr(n, "else_branch", else_g);
        graph(
            "main",
            vec![n],
            vec![value("c", BOOL, &[]), value("x", F32, x_dims)],
            vec![value("y", F32, &[-1])],
            &[],
        )
    }

    #[test]
    fn if_branch_types_join() {
        // A symbolic dim and a known one join to an unknown dim.
        let g = import(if_of_shapes(&[-1]), 17).unwrap();
        assert_eq!(g.value_type(g.outputs()[0].value).to_string(), "f32[?]");
        let no = run(&g, &[Tensor::scalar(false), f32s(&[3], &[1.0, 2.0, 3.0])]);
        assert_eq!(vals(&no[0]), [7.0, 8.0]);
        // Two known sizes that differ make a shape known only at run time: refused.
        let e = import(if_of_shapes(&[3]), 17).unwrap_err().to_string();
        assert_eq!(
            e,
            "test.onnx: node `y` (op If): if: output 0 is f32[3] in then_branch but f32[2] in \
             else_branch"
        );
    }

    #[test]
    fn if_on_a_constant_imports_the_branch_taken_in_place() {
        // `Size(x) == 3` folds while importing; the else branch does not even import.
        let then_g = graph(
            "then",
            vec![node("Neg", &["x"], &["a"])],
            vec![],
            vec![value("a", F32, &[3])],
            &[],
        );
        let else_g = graph(
            "else",
            vec![node("Frobnicate", &["x"], &["k"])],
            vec![],
            vec![value("k", F32, &[2])],
            &[],
        );
        let n = graph_attr(node("If", &["c"], &["y"]), "then_branch", then_g);
        let n = graph_attr(n, "else_branch", else_g);
        let gp = graph(
            "main",
            vec![
                node("Size", &["x"], &["size"]),
                node("Equal", &["size", "three"], &["c"]),
                n,
            ],
            vec![value("x", F32, &[3])],
            vec![value("y", F32, &[3])],
            &[("three", Tensor::scalar(3i64))],
        );
        let g = import(gp, 17).unwrap();
        assert_eq!(count(&g, "if"), 0);
        let out = run(&g, &[f32s(&[3], &[1.0, -2.0, 3.0])]);
        assert_eq!(vals(&out[0]), [-1.0, 2.0, -3.0]);
    }

    /// `Loop(M, cond, y)` whose body adds `x` (captured) to `y`, scans `y`, and returns
    /// `cond_out` as given.
    fn loop_model(
        m: Option<&str>,
        cond: Option<&str>,
        cond_out: Vec<lathe_proto::onnx::NodeProto>,
        inits: &[(&str, Tensor)],
        extra_inputs: Vec<lathe_proto::onnx::ValueInfoProto>,
    ) -> lathe_proto::onnx::GraphProto {
        let mut nodes = cond_out;
        nodes.push(node("Add", &["y_in", "x"], &["y_out"]));
        nodes.push(node("Identity", &["y_out"], &["scan"]));
        let body = graph(
            "body",
            nodes,
            vec![
                value("i", I64, &[]),
                value("cond_in", BOOL, &[]),
                value("y_in", F32, &[2]),
            ],
            vec![
                value("cond_out", BOOL, &[]),
                value("y_out", F32, &[2]),
                value("scan", F32, &[2]),
            ],
            &[],
        );
        let n = node(
            "Loop",
            &[m.unwrap_or(""), cond.unwrap_or(""), "y0"],
            &["y", "ys"],
        );
        let mut inputs = vec![value("x", F32, &[2]), value("y0", F32, &[2])];
        inputs.extend(extra_inputs);
        graph(
            "main",
            vec![graph_attr(n, "body", body)],
            inputs,
            vec![value("y", F32, &[2]), value("ys", F32, &[-1, 2])],
            inits,
        )
    }

    fn less_than(k: i64) -> Vec<lathe_proto::onnx::NodeProto> {
        vec![
            int_attr(node("Constant", &[], &["limit"]), "value_int", k),
            node("Less", &["i", "limit"], &["cond_out"]),
        ]
    }

    #[test]
    fn loop_with_a_constant_control_knows_its_trip_count() {
        // M = 5 but the condition stops it after i = 2: three iterations.
        let inits = [("M", Tensor::scalar(5i64)), ("go", Tensor::scalar(true))];
        let gp = loop_model(Some("M"), Some("go"), less_than(2), &inits, vec![]);
        let g = import(gp, 17).unwrap();
        assert_eq!(g.value_type(g.outputs()[1].value).to_string(), "f32[3,2]");
        assert_eq!(count(&g, "slice"), 0);
        let out = run(&g, &[f32s(&[2], &[1.0, 10.0]), f32s(&[2], &[0.0, 0.0])]);
        assert_eq!(vals(&out[0]), [3.0, 30.0]);
        assert_eq!(vals(&out[1]), [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
    }

    #[test]
    fn loop_with_a_runtime_trip_count_reserves_it() {
        // M is an input, no condition: exactly M iterations.
        let gp = loop_model(
            Some("M"),
            None,
            less_than(0),
            &[],
            vec![value("M", I64, &[])],
        );
        let g = import(gp, 17).unwrap();
        assert_eq!(g.value_type(g.outputs()[1].value).to_string(), "f32[?,2]");
        let x = f32s(&[2], &[1.0, 2.0]);
        let out = run(&g, &[x, f32s(&[2], &[0.0, 0.0]), Tensor::scalar(3i64)]);
        assert_eq!(vals(&out[1]), [1.0, 2.0, 2.0, 4.0, 3.0, 6.0]);
    }

    #[test]
    fn loop_that_may_stop_early_slices_its_scan_outputs() {
        // M and the condition are inputs: M rows reserved, sliced to the iterations run.
        let gp = loop_model(
            Some("M"),
            Some("go"),
            less_than(1),
            &[],
            vec![value("M", I64, &[]), value("go", BOOL, &[])],
        );
        let g = import(gp, 17).unwrap();
        assert_eq!(count(&g, "slice"), 1);
        let x = f32s(&[2], &[1.0, 2.0]);
        let zero = f32s(&[2], &[0.0, 0.0]);
        let ins = [x, zero, Tensor::scalar(5i64), Tensor::scalar(true)];
        let out = run(&g, &ins);
        assert_eq!(out[1].shape(), [2, 2]);
        assert_eq!(vals(&out[1]), [1.0, 2.0, 2.0, 4.0]);
        let ins = [
            ins[0].clone(),
            ins[1].clone(),
            ins[2].clone(),
            Tensor::scalar(false),
        ];
        let out = run(&g, &ins);
        assert_eq!(out[1].shape(), [0, 2]);
        assert_eq!(vals(&out[0]), [0.0, 0.0]);
    }

    #[test]
    fn a_huge_constant_trip_count_allocates_nothing_at_import() {
        let inits = [("M", Tensor::scalar(1i64 << 40))];
        let gp = loop_model(Some("M"), None, less_than(0), &inits, vec![]);
        let g = import(gp, 17).unwrap();
        assert_eq!(
            g.value_type(g.outputs()[1].value).to_string(),
            format!("f32[{},2]", 1u64 << 40)
        );
    }

    #[test]
    fn loop_errors_name_the_node() {
        // No trip count, and a condition computed from an input: no row count.
        let gp = loop_model(
            None,
            Some("go"),
            vec![node("Identity", &["cond_in"], &["cond_out"])],
            &[],
            vec![value("go", BOOL, &[])],
        );
        let e = import(gp, 17).unwrap_err().to_string();
        assert!(
            e.contains("node `y` (op Loop): scan outputs of a Loop without a trip count M"),
            "{e}"
        );
        // The body reads a name nothing defines.
        let gp = loop_model(
            Some("M"),
            None,
            vec![node("Identity", &["nowhere"], &["cond_out"])],
            &[("M", Tensor::scalar(2i64))],
            vec![],
        );
        let e = import(gp, 17).unwrap_err().to_string();
        assert_eq!(
            e,
            "test.onnx: node `y` (op Loop): its body reads `nowhere`, which neither it nor an \
             enclosing graph defines"
        );
        // An error inside the body names the body's node too.
        let gp = loop_model(
            Some("M"),
            None,
            vec![node("Frobnicate", &["cond_in"], &["cond_out"])],
            &[("M", Tensor::scalar(2i64))],
            vec![],
        );
        let e = import(gp, 17).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "test.onnx: node `y` (op Loop): in its body, node `cond_out` (op Frobnicate): op \
                 is not supported"
            ),
            "{e}"
        );
    }

    #[test]
    fn loop_without_trip_count_or_condition_is_refused() {
        let gp = loop_model(None, None, less_than(1), &[], vec![]);
        let e = import(gp, 17).unwrap_err().to_string();
        assert!(
            e.contains("neither a trip count nor a condition never ends"),
            "{e}"
        );
    }

    /// `Scan(s0, x)` summing rows of `x` along `axis` in direction `dir`, scanning the running
    /// sum to output axis `out_axis` in direction `out_dir`.
    fn scan_model(
        x_dims: &[i64],
        (axis, dir): (i64, i64),
        (out_axis, out_dir): (i64, i64),
    ) -> lathe_proto::onnx::GraphProto {
        let body = graph(
            "body",
            vec![
                node("Add", &["s_in", "row"], &["s_out"]),
                node("Identity", &["s_out"], &["scan"]),
            ],
            vec![value("s_in", F32, &[2]), value("row", F32, &[2])],
            vec![value("s_out", F32, &[2]), value("scan", F32, &[2])],
            &[],
        );
        let n = int_attr(
            node("Scan", &["s0", "x"], &["s", "z"]),
            "num_scan_inputs",
            1,
        );
        let n = ints_attr(n, "scan_input_axes", &[axis]);
        let n = ints_attr(n, "scan_input_directions", &[dir]);
        let n = ints_attr(n, "scan_output_axes", &[out_axis]);
        let n = ints_attr(n, "scan_output_directions", &[out_dir]);
        graph(
            "main",
            vec![graph_attr(n, "body", body)],
            vec![value("s0", F32, &[2]), value("x", F32, x_dims)],
            vec![value("s", F32, &[2]), value("z", F32, &[-1, -1])],
            &[],
        )
    }

    #[test]
    fn scan_reads_and_writes_rows_forward_and_reversed_on_any_axis() {
        let x = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let s0 = f32s(&[2], &[0.0, 0.0]);
        let g = import(scan_model(&[3, 2], (0, 0), (0, 0)), 9).unwrap();
        let out = run(&g, &[s0.clone(), x.clone()]);
        assert_eq!(vals(&out[0]), [9.0, 12.0]);
        assert_eq!(vals(&out[1]), [1.0, 2.0, 4.0, 6.0, 9.0, 12.0]);
        // Reading rows 2, 1, 0: the running sums in the order computed.
        let g = import(scan_model(&[3, 2], (0, 1), (0, 0)), 9).unwrap();
        let out = run(&g, &[s0.clone(), x.clone()]);
        assert_eq!(vals(&out[1]), [5.0, 6.0, 8.0, 10.0, 9.0, 12.0]);
        // Writing in reverse too: the first sum computed is the last row.
        let g = import(scan_model(&[3, 2], (0, 1), (0, 1)), 9).unwrap();
        let out = run(&g, &[s0.clone(), x.clone()]);
        assert_eq!(vals(&out[1]), [9.0, 12.0, 8.0, 10.0, 5.0, 6.0]);
        // Scanning axis 1 of the transposed input (of unknown length), writing to axis -1.
        let xt = f32s(&[2, 3], &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let g = import(scan_model(&[2, -1], (1, 0), (-1, 0)), 11).unwrap();
        let out = run(&g, &[s0, xt]);
        assert_eq!(out[1].shape(), [2, 3]);
        assert_eq!(vals(&out[1]), [1.0, 4.0, 9.0, 2.0, 6.0, 12.0]);
    }

    #[test]
    fn scan_before_opset_9_is_refused() {
        let e = import(scan_model(&[3, 2], (0, 0), (0, 0)), 8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("(op Scan): Scan before opset 9"), "{e}");
    }
}
