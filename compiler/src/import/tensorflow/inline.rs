//! Function calls of a `GraphDef`'s library, inlined before import.
//!
//! Keras and `tf.function` graphs call functions: `PartitionedCall` / `StatefulPartitionedCall`
//! (the function named by attribute `f`), or a node whose op *is* a library function's name.
//! [`inline_calls`] replaces each call by the function's body, recursively, so that the rest of
//! the importer sees one flat graph:
//!
//! * body nodes are renamed `CALL/NODE` (unique, as TensorFlow's own inliner names them);
//! * a body's references to the function's inputs become the call's inputs, and its
//!   `node:output_arg:index` references become `CALL/node:k`, `k` the flat output index;
//! * attribute placeholders (`T` in a generic function) take the call's values;
//! * the call node itself becomes an `IdentityN` of the function's return values, so whatever
//!   consumed `CALL:k` still does;
//! * only body nodes the return values depend on are kept (a call is data flow here: control
//!   edges and side effects with no data consumer are dropped, as for the whole graph).
//!
//! Functional control flow (`While`, `StatelessWhile`, `If`, `StatelessIf`) is not inlined: its
//! functions become [`Region`]s of the node, each a list of nodes of its own (inlined the same
//! way) whose inputs are `_Arg` nodes, which the importer turns into the regions of an IR `while`
//! or `if` (`control_flow.rs`).
//!
//! Recursion deeper than [`MAX_DEPTH`] and graphs past [`MAX_NODES`] after inlining are errors,
//! so a malicious library cannot make the importer loop or allocate without bound.

use super::super::ImportError;
use lathe_proto::tensorflow::{
    attr_value, AttrValue, FunctionDef, GraphDef, NameAttrList, NodeDef,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

/// Nested calls deeper than this are taken for recursion.
pub const MAX_DEPTH: usize = 64;
/// Nodes the inlined graph may have.
pub const MAX_NODES: usize = 4_000_000;

/// Output arguments of the ops that have more than one (each a single tensor), so that a
/// body's `node:arg:index` reference finds its flat output. Every other op has one output
/// argument (possibly a list), whose index is the flat index.
const MULTI_OUTPUT_ARGS: &[(&str, &[&str])] = &[
    ("BroadcastGradientArgs", &["r0", "r1"]),
    (
        "FusedBatchNorm",
        &[
            "y",
            "batch_mean",
            "batch_variance",
            "reserve_space_1",
            "reserve_space_2",
        ],
    ),
    (
        "FusedBatchNormV2",
        &[
            "y",
            "batch_mean",
            "batch_variance",
            "reserve_space_1",
            "reserve_space_2",
        ],
    ),
    (
        "FusedBatchNormV3",
        &[
            "y",
            "batch_mean",
            "batch_variance",
            "reserve_space_1",
            "reserve_space_2",
            "reserve_space_3",
        ],
    ),
    ("GRUBlockCell", &["r", "u", "c", "h"]),
    ("LSTMBlockCell", &["i", "cs", "f", "o", "ci", "co", "h"]),
    ("ListDiff", &["out", "idx"]),
    ("MaxPoolWithArgmax", &["output", "argmax"]),
    ("Merge", &["output", "value_index"]),
    (
        "NonMaxSuppressionV4",
        &["selected_indices", "valid_outputs"],
    ),
    (
        "NonMaxSuppressionV5",
        &["selected_indices", "selected_scores", "valid_outputs"],
    ),
    ("Qr", &["q", "r"]),
    ("QuantizeV2", &["output", "output_min", "output_max"]),
    ("RefMerge", &["output", "value_index"]),
    ("RefSwitch", &["output_false", "output_true"]),
    ("SelfAdjointEigV2", &["e", "v"]),
    ("Svd", &["s", "u", "v"]),
    ("Switch", &["output_false", "output_true"]),
    ("TensorListPopBack", &["output_handle", "tensor"]),
    ("TopK", &["values", "indices"]),
    ("TopKV2", &["values", "indices"]),
    ("Unique", &["y", "idx"]),
    ("UniqueV2", &["y", "idx"]),
    ("UniqueWithCounts", &["y", "idx", "count"]),
    ("UniqueWithCountsV2", &["y", "idx", "count"]),
];

/// One region of a control-flow node (a loop's cond or body, a branch): its nodes, the `_Arg`
/// nodes that stand for its inputs (in order) and the tensors it returns (in order).
#[derive(Clone, Debug, Default)]
pub struct Region {
    /// Its nodes, `_Arg` nodes included, calls inlined.
    pub nodes: Vec<NodeDef>,
    /// The names of its `_Arg` nodes, one per input of the region.
    pub args: Vec<String>,
    /// What it returns: tensor references (`node:k`) into `nodes`.
    pub rets: Vec<String>,
}

/// The regions of each control-flow node, by node name: `[cond, body]` for a loop,
/// `[then, else]` for an `if`.
pub type Regions = HashMap<String, Vec<Region>>;

/// The ops whose functions become regions, with the attributes naming them in region order.
pub const REGION_OPS: &[(&str, &[&str])] = &[
    ("While", &["cond", "body"]),
    ("StatelessWhile", &["cond", "body"]),
    ("If", &["then_branch", "else_branch"]),
    ("StatelessIf", &["then_branch", "else_branch"]),
];

/// Inlines every function call of `gd` (see the module notes) and drops its library, which
/// nothing after import reads. Returns the regions of its functional control-flow nodes
/// (nested ones included).
pub fn inline_calls(gd: &mut GraphDef, path: &Path) -> Result<Regions, ImportError> {
    let Some(library) = gd.library.take().filter(|l| !l.function.is_empty()) else {
        return Ok(Regions::new());
    };
    let functions: HashMap<&str, &FunctionDef> = library
        .function
        .iter()
        .filter_map(|f| f.signature.as_ref().map(|s| (s.name.as_str(), f)))
        .collect();
    let inl = Inliner { functions, path };
    let mut regions = Regions::new();
    let mut budget = MAX_NODES;
    gd.node = inl.inline(std::mem::take(&mut gd.node), 0, &mut regions, &mut budget)?;
    Ok(regions)
}

/// Attribute values by name: what fills a called function's placeholders.
type Attrs = HashMap<String, AttrValue>;

struct Inliner<'a> {
    functions: HashMap<&'a str, &'a FunctionDef>,
    path: &'a Path,
}

impl<'a> Inliner<'a> {
    /// `nodes` with every call inlined, at call depth `depth`; the functions of control-flow
    /// nodes become their regions in `regions`. `budget` is how many more nodes may be made.
    fn inline(
        &self,
        nodes: Vec<NodeDef>,
        depth: usize,
        regions: &mut Regions,
        budget: &mut usize,
    ) -> Result<Vec<NodeDef>, ImportError> {
        let mut queue: VecDeque<(NodeDef, usize)> = nodes.into_iter().map(|n| (n, depth)).collect();
        let mut out = Vec::with_capacity(queue.len());
        while let Some((node, depth)) = queue.pop_front() {
            if let Some((_, attrs)) = REGION_OPS.iter().find(|(op, _)| *op == node.op) {
                let mut rs = Vec::with_capacity(attrs.len());
                for attr in *attrs {
                    let f = match node.attr.get(*attr).and_then(|a| a.value.as_ref()) {
                        Some(attr_value::Value::Func(f)) => f.clone(),
                        _ => {
                            return Err(self.err(
                                &node,
                                format!("the node has no function attribute `{attr}`"),
                            ))
                        }
                    };
                    rs.push(self.region(&node, attr, &f, depth, regions, budget)?);
                }
                regions.insert(node.name.clone(), rs);
                out.push(node);
            } else if matches!(node.op.as_str(), "Case" | "StatelessCase") {
                let funcs = match node.attr.get("branches").and_then(|a| a.value.as_ref()) {
                    Some(attr_value::Value::List(l)) if !l.func.is_empty() => l.func.clone(),
                    _ => return Err(self.err(&node, "the Case has no `branches`")),
                };
                let mut rs = Vec::with_capacity(funcs.len());
                for (k, f) in funcs.iter().enumerate() {
                    rs.push(self.region(
                        &node,
                        &format!("branch{k}"),
                        f,
                        depth,
                        regions,
                        budget,
                    )?);
                }
                regions.insert(node.name.clone(), rs);
                out.push(node);
            } else {
                match self.callee(&node)? {
                    None => out.push(node),
                    Some((f, subst)) => {
                        let (body, identity) = self.expand(&node, f, &subst, depth)?;
                        out.push(identity);
                        queue.extend(body.into_iter().map(|n| (n, depth + 1)));
                    }
                }
            }
            if out.len() + queue.len() > *budget {
                return Err(ImportError::file(
                    self.path,
                    format!("inlining the function library makes more than {MAX_NODES} nodes"),
                ));
            }
        }
        *budget -= out.len();
        Ok(out)
    }

    /// The region of control-flow node `node` made of function `func` (its attribute `attr`,
    /// or branch `attr` of a `Case`): the function's body called on `_Arg` nodes
    /// (`NODE/ATTR/arg_K`), inlined.
    fn region(
        &self,
        node: &NodeDef,
        attr: &str,
        func: &NameAttrList,
        depth: usize,
        regions: &mut Regions,
        budget: &mut usize,
    ) -> Result<Region, ImportError> {
        let (name, subst) = (&func.name, func.attr.clone());
        let f = *self.functions.get(name.as_str()).ok_or_else(|| {
            self.err(
                node,
                format!("its `{attr}` is function `{name}`, which is not in the graph's library"),
            )
        })?;
        let sig = f
            .signature
            .as_ref()
            .expect("library functions have signatures");
        let prefix = format!("{}/{attr}", node.name);
        let mut nodes: Vec<NodeDef> = Vec::new();
        let mut args = Vec::new();
        for k in 0..sig.input_arg.len() {
            let arg = NodeDef {
                name: format!("{prefix}/arg_{k}"),
                op: "_Arg".into(),
                ..Default::default()
            };
            args.push(arg.name.clone());
            nodes.push(arg);
        }
        let call = NodeDef {
            name: prefix.clone(),
            op: name.clone(),
            input: args.clone(),
            ..Default::default()
        };
        let (body, identity) = self.expand(&call, f, &subst, depth)?;
        let rets = (0..identity.input.len())
            .map(|k| format!("{prefix}:{k}"))
            .collect();
        nodes.push(identity);
        nodes.extend(self.inline(body, depth + 1, regions, budget)?);
        Ok(Region { nodes, args, rets })
    }

    fn err(&self, node: &NodeDef, message: impl Into<String>) -> ImportError {
        ImportError::node(self.path, &node.name, &node.op, message)
    }

    /// The function `node` calls and the attributes that fill its placeholders, if it is a call.
    fn callee(&self, node: &NodeDef) -> Result<Option<(&'a FunctionDef, Attrs)>, ImportError> {
        let (name, subst) = match node.op.as_str() {
            "PartitionedCall" | "StatefulPartitionedCall" => {
                match node.attr.get("f").and_then(|a| a.value.as_ref()) {
                    Some(attr_value::Value::Func(NameAttrList { name, attr })) => {
                        (name.as_str(), attr.clone())
                    }
                    _ => return Err(self.err(node, "the call has no function attribute `f`")),
                }
            }
            op if self.functions.contains_key(op) => (op, node.attr.clone()),
            _ => return Ok(None),
        };
        let f = self.functions.get(name).ok_or_else(|| {
            self.err(
                node,
                format!("calls function `{name}`, which is not in the graph's library"),
            )
        })?;
        Ok(Some((f, subst)))
    }

    /// The body of `f` called by `call`, renamed and rewired, and the `IdentityN` that stands
    /// for the call.
    fn expand(
        &self,
        call: &NodeDef,
        f: &FunctionDef,
        subst: &HashMap<String, AttrValue>,
        depth: usize,
    ) -> Result<(Vec<NodeDef>, NodeDef), ImportError> {
        let sig = f
            .signature
            .as_ref()
            .expect("library functions have signatures");
        if depth >= MAX_DEPTH {
            return Err(self.err(
                call,
                format!(
                    "calls to `{}` nest more than {MAX_DEPTH} deep (recursion is not supported)",
                    sig.name
                ),
            ));
        }
        // The function's inputs: each argument takes one of the call's data inputs, or as many
        // as its list length says.
        let inputs: Vec<&String> = call.input.iter().filter(|i| !i.starts_with('^')).collect();
        let mut args: HashMap<&str, Vec<&String>> = HashMap::new();
        let mut next = 0;
        for a in &sig.input_arg {
            let n = self.arg_len(call, a, subst)?;
            let taken = inputs.get(next..next + n).ok_or_else(|| {
                self.err(
                    call,
                    format!(
                        "passes {} inputs, fewer than function `{}` takes",
                        inputs.len(),
                        sig.name
                    ),
                )
            })?;
            args.insert(a.name.as_str(), taken.to_vec());
            next += n;
        }
        if next != inputs.len() {
            return Err(self.err(
                call,
                format!(
                    "passes {} inputs; function `{}` takes {next}",
                    inputs.len(),
                    sig.name
                ),
            ));
        }
        let body: HashMap<&str, &NodeDef> =
            f.node_def.iter().map(|n| (n.name.as_str(), n)).collect();
        let prefix = format!("{}/", call.name);
        // A body reference (`arg`, `arg:i`, `node:out`, `node:out:i`) as an outer one.
        let resolve = |r: &str, user: &NodeDef| -> Result<String, ImportError> {
            let bad = |m: String| self.err(call, format!("function `{}`: {m}", sig.name));
            let mut parts = r.splitn(3, ':');
            let head = parts.next().unwrap_or_default();
            let (p1, p2) = (parts.next(), parts.next());
            if let Some(outer) = args.get(head) {
                let i = match p1 {
                    None => 0,
                    Some(i) => i
                        .parse::<usize>()
                        .map_err(|_| bad(format!("bad reference `{r}` in node `{}`", user.name)))?,
                };
                return outer
                    .get(i)
                    .map(|s| s.to_string())
                    .ok_or_else(|| bad(format!("`{r}` is past the end of argument `{head}`")));
            }
            let producer = body.get(head).ok_or_else(|| {
                bad(format!(
                    "node `{}` reads `{r}`, which is neither an argument nor a node",
                    user.name
                ))
            })?;
            let index = match p2 {
                None => 0,
                Some(i) => i
                    .parse::<usize>()
                    .map_err(|_| bad(format!("bad reference `{r}` in node `{}`", user.name)))?,
            };
            let k = self
                .flat_output(producer, p1.unwrap_or_default(), index)
                .map_err(|m| bad(format!("reference `{r}`: {m}")))?;
            Ok(format!("{prefix}{head}:{k}"))
        };
        // The return values, in the signature's order.
        let mut rets = Vec::with_capacity(sig.output_arg.len());
        for a in &sig.output_arg {
            if !a.number_attr.is_empty() || !a.type_list_attr.is_empty() {
                return Err(self.err(
                    call,
                    format!(
                        "function `{}` returns a list (`{}`), which is not supported",
                        sig.name, a.name
                    ),
                ));
            }
            let r = f.ret.get(&a.name).ok_or_else(|| {
                self.err(
                    call,
                    format!(
                        "function `{}` does not say what `{}` returns",
                        sig.name, a.name
                    ),
                )
            })?;
            rets.push(resolve(r, call)?);
        }
        // Body nodes the return values depend on, through data inputs.
        let mut live: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = f
            .ret
            .values()
            .filter_map(|r| r.split(':').next())
            .filter(|h| body.contains_key(h))
            .collect();
        while let Some(n) = stack.pop() {
            if !live.insert(n) {
                continue;
            }
            for i in body[n].input.iter().filter(|i| !i.starts_with('^')) {
                let h = i.split(':').next().unwrap_or_default();
                if body.contains_key(h) && !live.contains(h) {
                    stack.push(h);
                }
            }
        }
        let mut nodes = Vec::with_capacity(live.len());
        for n in f.node_def.iter().filter(|n| live.contains(n.name.as_str())) {
            let mut m = n.clone();
            m.name = format!("{prefix}{}", n.name);
            m.device.clear();
            m.input = n
                .input
                .iter()
                .filter(|i| !i.starts_with('^'))
                .map(|i| resolve(i, n))
                .collect::<Result<_, _>>()?;
            for (key, v) in m.attr.iter_mut() {
                substitute(v, subst).map_err(|p| {
                    self.err(
                        call,
                        format!(
                            "function `{}`: attribute `{key}` of node `{}` takes placeholder \
                             `{p}`, which the call does not give",
                            sig.name, n.name
                        ),
                    )
                })?;
            }
            nodes.push(m);
        }
        // Its types are its inputs' (the importer reads no `T` from it).
        let identity = NodeDef {
            name: call.name.clone(),
            op: "IdentityN".into(),
            input: rets,
            ..Default::default()
        };
        Ok((nodes, identity))
    }

    /// How many inputs argument `a` takes: one, or its list's length from the call's attributes.
    fn arg_len(
        &self,
        call: &NodeDef,
        a: &lathe_proto::tensorflow::op_def::ArgDef,
        subst: &HashMap<String, AttrValue>,
    ) -> Result<usize, ImportError> {
        let attr = |name: &str| subst.get(name).or_else(|| call.attr.get(name));
        if !a.number_attr.is_empty() {
            return match attr(&a.number_attr).and_then(|v| v.value.as_ref()) {
                Some(attr_value::Value::I(n)) if *n >= 0 => Ok(*n as usize),
                _ => Err(self.err(
                    call,
                    format!("argument `{}` needs attribute `{}`", a.name, a.number_attr),
                )),
            };
        }
        if !a.type_list_attr.is_empty() {
            return match attr(&a.type_list_attr).and_then(|v| v.value.as_ref()) {
                Some(attr_value::Value::List(l)) => Ok(l.r#type.len()),
                _ => Err(self.err(
                    call,
                    format!(
                        "argument `{}` needs attribute `{}`",
                        a.name, a.type_list_attr
                    ),
                )),
            };
        }
        Ok(1)
    }

    /// The flat output index of `node`'s output argument `arg`, element `index`.
    fn flat_output(&self, node: &NodeDef, arg: &str, index: usize) -> Result<usize, String> {
        // A call of a library function: its signature's outputs, one tensor each.
        let args: Vec<&str> = if let Some(f) = self.functions.get(node.op.as_str()) {
            let sig = f
                .signature
                .as_ref()
                .expect("library functions have signatures");
            sig.output_arg.iter().map(|a| a.name.as_str()).collect()
        } else if let Some((_, a)) = MULTI_OUTPUT_ARGS.iter().find(|(op, _)| *op == node.op) {
            a.to_vec()
        } else {
            // One output argument: the index is the flat index.
            return Ok(index);
        };
        let pos = args.iter().position(|a| *a == arg).ok_or_else(|| {
            format!(
                "op {} has no output argument `{arg}` (it has {args:?})",
                node.op
            )
        })?;
        if index != 0 {
            return Err(format!(
                "output `{arg}` of op {} is a single tensor",
                node.op
            ));
        }
        Ok(pos)
    }
}

/// Replaces attribute placeholders in `v` (and in the attributes of functions it names) by the
/// call's values; errors with the first placeholder the call does not give.
fn substitute(v: &mut AttrValue, subst: &HashMap<String, AttrValue>) -> Result<(), String> {
    match &mut v.value {
        Some(attr_value::Value::Placeholder(p)) => {
            *v = subst.get(p.as_str()).cloned().ok_or_else(|| p.clone())?;
        }
        Some(attr_value::Value::Func(f)) => {
            for a in f.attr.values_mut() {
                substitute(a, subst)?;
            }
        }
        Some(attr_value::Value::List(l)) => {
            for f in &mut l.func {
                for a in f.attr.values_mut() {
                    substitute(a, subst)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}
