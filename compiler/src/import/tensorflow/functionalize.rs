//! TensorFlow 1 dataflow loops made functional: each outermost loop frame of a `GraphDef`
//! (`Enter` → `Merge` → `Switch` → body → `NextIteration` → `Merge`, with `LoopCond` and `Exit`)
//! becomes one `While` node whose cond and body are [`Region`]s, as TensorFlow's own
//! `FunctionalizeControlFlow` does. Frozen graphs of Keras recurrent layers have this form
//! (freezing lowers `While` to it). Loops nested in a body stay in the body's nodes and are
//! made functional when that region is imported.
//!
//! Each node gets a frame: an `Enter` opens the frame it names (inside its input's frame), an
//! `Exit` goes back to the parent frame, and any other node is in the frame of its data
//! inputs (of its control inputs when it has none, as a constant inside a loop body has).
//! For a frame, the loop-carried values are its non-constant `Enter`s, each with its `Merge`,
//! `Switch` and `NextIteration`; constant `Enter`s, and values of the enclosing frame that the
//! loop reads directly, enter as loop invariants (passed through the body unchanged). The cond
//! is what `LoopCond` reads, computed from the `Merge`s; the body is what the `NextIteration`s
//! read, computed from the `Switch`es' true outputs. Each `Exit` becomes an `Identity` of the
//! `While`'s output, under the `Exit`'s name, so its readers stay as they are. Everything else
//! in the frame (control-only nodes) is dropped, as control edges are.
//!
//! Freezing also leaves `unused_control_flow_input*` placeholders that nothing reads; they are
//! dropped, not made graph inputs.

use super::super::ImportError;
use super::inline::{Region, Regions};
use super::{node_index, parse_input};
use lathe_proto::tensorflow::{attr_value, GraphDef, NodeDef};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;

/// The frame of the graph itself.
const ROOT: &str = "";

/// Makes every outermost loop frame of `gd` a `While` node with its regions in `regions`.
pub(super) fn functionalize(
    gd: &mut GraphDef,
    regions: &mut Regions,
    path: &Path,
) -> Result<(), ImportError> {
    if !gd.node.iter().any(|n| n.op == "Enter") {
        return refuse_conditionals(gd, path);
    }
    let frames = assign_frames(gd, path)?;
    let mut outermost: Vec<String> = Vec::new();
    for (i, n) in gd.node.iter().enumerate() {
        if n.op == "Enter"
            && frames.parent_of(&frames.of[i]) == Some(ROOT)
            && !outermost.contains(&frames.of[i])
        {
            outermost.push(frames.of[i].clone());
        }
    }
    let mut removed: HashSet<String> = HashSet::new();
    let mut replaced: HashMap<String, NodeDef> = HashMap::new();
    let mut added: Vec<NodeDef> = Vec::new();
    for frame in &outermost {
        let lp = Loop::find(gd, &frames, frame, path)?;
        let f = lp.functional(gd, &frames, path)?;
        regions.insert(f.while_node.name.clone(), f.regions);
        removed.extend(f.gone);
        for x in f.exits {
            replaced.insert(x.name.clone(), x);
        }
        added.push(f.while_node);
    }
    let consumed: HashSet<String> = gd
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .filter_map(|i| parse_input(i).map(|(p, _)| p.to_string()))
        .collect();
    let nodes = std::mem::take(&mut gd.node);
    for mut n in nodes {
        if removed.contains(&n.name)
            || (n.op == "Placeholder"
                && n.name.starts_with("unused_control_flow_input")
                && !consumed.contains(&n.name))
        {
            continue;
        }
        if let Some(x) = replaced.remove(&n.name) {
            n = x;
        }
        n.input
            .retain(|i| !(i.starts_with('^') && removed.contains(i.trim_start_matches('^'))));
        gd.node.push(n);
    }
    gd.node.extend(added);
    refuse_conditionals(gd, path)
}

/// A `Switch` or `Merge` left outside every loop is a TensorFlow 1 conditional (`tf.cond`
/// lowered by freezing), which Lathe does not import: the error says how to export instead.
fn refuse_conditionals(gd: &GraphDef, path: &Path) -> Result<(), ImportError> {
    match gd
        .node
        .iter()
        .find(|n| matches!(n.op.as_str(), "Switch" | "Merge"))
    {
        Some(n) => Err(ImportError::node(
            path,
            &n.name,
            &n.op,
            "a TensorFlow 1 conditional (Switch/Merge outside a loop) is not supported; \
             freeze with convert_variables_to_constants_v2(..., lower_control_flow=False) to keep \
             it a functional If, or export a SavedModel",
        )),
        None => Ok(()),
    }
}

/// Each node's frame (by index), and each frame's parent.
struct Frames {
    of: Vec<String>,
    parent: HashMap<String, String>,
}

impl Frames {
    fn parent_of(&self, frame: &str) -> Option<&str> {
        self.parent.get(frame).map(String::as_str)
    }

    /// Whether `frame` is `outer` or nested in it.
    fn within(&self, frame: &str, outer: &str) -> bool {
        let mut f = frame;
        for _ in 0..=self.parent.len() {
            if f == outer {
                return true;
            }
            match self.parent.get(f) {
                Some(p) => f = p,
                None => return false,
            }
        }
        false
    }
}

fn frame_name(n: &NodeDef) -> Option<&str> {
    match n.attr.get("frame_name").and_then(|a| a.value.as_ref()) {
        Some(attr_value::Value::S(s)) => std::str::from_utf8(s).ok(),
        _ => None,
    }
}

fn is_constant_enter(n: &NodeDef) -> bool {
    matches!(
        n.attr.get("is_constant").and_then(|a| a.value.as_ref()),
        Some(attr_value::Value::B(true))
    )
}

/// Whether `frame` is nested (at any depth) in `outer`, by the parents known so far.
fn nested(parent: &HashMap<String, String>, frame: &str, outer: &str) -> bool {
    let mut f = frame;
    for _ in 0..=parent.len() {
        match parent.get(f) {
            Some(p) if p == outer => return true,
            Some(p) => f = p,
            None => return false,
        }
    }
    false
}

/// Propagates frames from the nodes without inputs (see the module notes).
fn assign_frames(gd: &GraphDef, path: &Path) -> Result<Frames, ImportError> {
    let index = node_index(gd);
    let n = gd.node.len();
    // (consumer, is a data input, the input's position among data inputs)
    let mut users: Vec<Vec<(usize, bool, usize)>> = vec![Vec::new(); n];
    let mut queue = VecDeque::new();
    let mut of: Vec<Option<String>> = vec![None; n];
    for (c, node) in gd.node.iter().enumerate() {
        let mut data = 0;
        for inp in &node.input {
            let control = inp.starts_with('^');
            let name = parse_input(inp.trim_start_matches('^')).map_or(inp.as_str(), |(p, _)| p);
            if let Some(&p) = index.get(name) {
                users[p].push((c, !control, data));
            }
            if !control {
                data += 1;
            }
        }
        if node.input.is_empty() {
            of[c] = Some(ROOT.to_string());
            queue.push_back(c);
        }
    }
    let mut parent: HashMap<String, String> = HashMap::new();
    let has_data = |i: usize| gd.node[i].input.iter().any(|s| !s.starts_with('^'));
    while let Some(p) = queue.pop_front() {
        let pf = of[p].clone().expect("queued nodes have frames");
        for &(c, data, pos) in &users[p] {
            if !data && has_data(c) {
                continue;
            }
            let node = &gd.node[c];
            let f = match node.op.as_str() {
                "Enter" | "RefEnter" => {
                    if !data || pos != 0 {
                        continue;
                    }
                    let name = frame_name(node).ok_or_else(|| {
                        ImportError::node(path, &node.name, &node.op, "the Enter has no frame_name")
                    })?;
                    parent.entry(name.to_string()).or_insert_with(|| pf.clone());
                    name.to_string()
                }
                "Exit" | "RefExit" => parent.get(&pf).cloned().ok_or_else(|| {
                    ImportError::node(path, &node.name, &node.op, "the Exit is not inside a loop")
                })?,
                _ => pf.clone(),
            };
            // The innermost frame of a node's inputs wins (a constant of the graph read by a
            // loop body does not take the body out of its loop).
            match &of[c] {
                Some(old) if *old == f || !nested(&parent, &f, old) => continue,
                _ => {}
            }
            of[c] = Some(f);
            queue.push_back(c);
        }
    }
    Ok(Frames {
        // Nodes no path from an input-free node reaches (a cycle with no entry) are in no
        // frame; they are nobody's data and are left for the importer to reject.
        of: of
            .into_iter()
            .map(|f| f.unwrap_or_else(|| "?".into()))
            .collect(),
        parent,
    })
}

/// A loop frame made functional.
struct Functional {
    /// The `While` node.
    while_node: NodeDef,
    /// The `Identity` nodes replacing the frame's `Exit`s, under their names.
    exits: Vec<NodeDef>,
    /// `[cond, body]`.
    regions: Vec<Region>,
    /// The names of every node of the frame that goes away.
    gone: Vec<String>,
}

/// One loop-carried value of a frame: its `Enter`, `Merge`, `Switch`, `NextIteration` and
/// (when read) `Exit`, as node indices.
struct Carried {
    enter: usize,
    merge: usize,
    switch: usize,
    next: usize,
    exit: Option<usize>,
}

/// The control structure of one loop frame.
struct Loop {
    frame: String,
    carried: Vec<Carried>,
    /// Constant `Enter`s.
    invariant: Vec<usize>,
    loop_cond: usize,
}

impl Loop {
    /// Finds the control structure of `frame`.
    fn find(gd: &GraphDef, frames: &Frames, frame: &str, path: &Path) -> Result<Loop, ImportError> {
        let in_frame = |i: usize| frames.of[i] == frame;
        let err =
            |i: usize, m: String| ImportError::node(path, &gd.node[i].name, &gd.node[i].op, m);
        let readers = |i: usize, out: usize| -> Vec<usize> {
            let name = &gd.node[i].name;
            gd.node
                .iter()
                .enumerate()
                .filter(|(_, n)| {
                    n.input
                        .iter()
                        .any(|s| parse_input(s) == Some((name.as_str(), out)))
                })
                .map(|(j, _)| j)
                .collect()
        };
        let conds: Vec<usize> = (0..gd.node.len())
            .filter(|&i| gd.node[i].op == "LoopCond" && in_frame(i))
            .collect();
        let [loop_cond] = conds[..] else {
            return Err(ImportError::file(
                path,
                format!(
                    "loop frame `{frame}` has {} LoopCond nodes, not one",
                    conds.len()
                ),
            ));
        };
        let mut carried = Vec::new();
        let mut invariant = Vec::new();
        for e in (0..gd.node.len())
            .filter(|&i| matches!(gd.node[i].op.as_str(), "Enter" | "RefEnter") && in_frame(i))
        {
            if is_constant_enter(&gd.node[e]) {
                invariant.push(e);
                continue;
            }
            let merge = *readers(e, 0)
                .iter()
                .find(|&&j| gd.node[j].op == "Merge")
                .ok_or_else(|| err(e, "a loop variable's Enter without a Merge".into()))?;
            let next = gd.node[merge]
                .input
                .iter()
                .filter_map(|s| parse_input(s))
                .filter_map(|(p, _)| gd.node.iter().position(|n| n.name == p))
                .find(|&j| gd.node[j].op == "NextIteration")
                .ok_or_else(|| err(merge, "a loop Merge without a NextIteration".into()))?;
            let switch = *readers(merge, 0)
                .iter()
                .find(|&&j| gd.node[j].op == "Switch")
                .ok_or_else(|| err(merge, "a loop Merge without a Switch".into()))?;
            let exit = readers(switch, 0)
                .into_iter()
                .find(|&j| gd.node[j].op == "Exit");
            carried.push(Carried {
                enter: e,
                merge,
                switch,
                next,
                exit,
            });
        }
        Ok(Loop {
            frame: frame.to_string(),
            carried,
            invariant,
            loop_cond,
        })
    }

    /// The loop as a `While` node with its regions (see [`Functional`]).
    fn functional(
        &self,
        gd: &GraphDef,
        frames: &Frames,
        path: &Path,
    ) -> Result<Functional, ImportError> {
        let index = node_index(gd);
        let data_input = |i: usize| -> Result<String, ImportError> {
            gd.node[i]
                .input
                .iter()
                .find(|s| !s.starts_with('^'))
                .cloned()
                .ok_or_else(|| {
                    ImportError::node(path, &gd.node[i].name, &gd.node[i].op, "no data input")
                })
        };
        let f = &self.frame;
        let while_name = if index.contains_key(f.as_str()) {
            format!("{f}/functional_while")
        } else {
            f.clone()
        };
        // What stands for each region input: carried values, then invariants, then captures.
        // `stops` maps a tensor reference inside the loop to the index of its region input.
        let mut init: Vec<String> = Vec::new();
        let mut cond_stops: HashMap<(String, usize), usize> = HashMap::new();
        let mut body_stops: HashMap<(String, usize), usize> = HashMap::new();
        for (k, c) in self.carried.iter().enumerate() {
            init.push(data_input(c.enter)?);
            cond_stops.insert((gd.node[c.merge].name.clone(), 0), k);
            body_stops.insert((gd.node[c.switch].name.clone(), 1), k);
        }
        for &e in &self.invariant {
            let k = init.len();
            init.push(data_input(e)?);
            cond_stops.insert((gd.node[e].name.clone(), 0), k);
            body_stops.insert((gd.node[e].name.clone(), 0), k);
        }
        let inner = |i: usize| frames.within(&frames.of[i], f);
        // The nodes of each region, and the outer values they read (captures).
        let cond_root = data_input(self.loop_cond)?;
        let nexts: Vec<String> = self
            .carried
            .iter()
            .map(|c| data_input(c.next))
            .collect::<Result<_, _>>()?;
        let mut captures: Vec<(String, usize)> = Vec::new();
        let mut walk = |roots: &[String],
                        stops: &HashMap<(String, usize), usize>|
         -> Result<BTreeSet<usize>, ImportError> {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<String> = roots.to_vec();
            while let Some(r) = stack.pop() {
                let Some((p, k)) = parse_input(&r) else {
                    continue;
                };
                if stops.contains_key(&(p.to_string(), k)) {
                    continue;
                }
                let &i = index.get(p).ok_or_else(|| {
                    ImportError::file(path, format!("loop `{f}` reads `{r}`, which is not a node"))
                })?;
                if !inner(i) {
                    if !captures.contains(&(p.to_string(), k)) {
                        captures.push((p.to_string(), k));
                    }
                    continue;
                }
                if matches!(
                    gd.node[i].op.as_str(),
                    "Merge" | "Switch" | "Enter" | "NextIteration" | "LoopCond"
                ) && frames.of[i] == *f
                {
                    return Err(ImportError::node(
                        path,
                        &gd.node[i].name,
                        &gd.node[i].op,
                        format!("loop `{f}` reads this control-flow node in a way Lathe does not understand"),
                    ));
                }
                if seen.insert(i) {
                    stack.extend(
                        gd.node[i]
                            .input
                            .iter()
                            .filter(|s| !s.starts_with('^'))
                            .cloned(),
                    );
                }
            }
            Ok(seen)
        };
        let cond_nodes = walk(std::slice::from_ref(&cond_root), &cond_stops)?;
        let body_nodes = walk(&nexts, &body_stops)?;
        for (p, k) in &captures {
            let at = init.len();
            init.push(format!("{p}:{k}"));
            cond_stops.insert((p.clone(), *k), at);
            body_stops.insert((p.clone(), *k), at);
        }
        let n_args = init.len();
        let region = |what: &str,
                      nodes: &BTreeSet<usize>,
                      stops: &HashMap<(String, usize), usize>,
                      rets: Vec<String>| {
            let prefix = format!("{while_name}/{what}");
            let args: Vec<String> = (0..n_args).map(|k| format!("{prefix}/arg_{k}")).collect();
            let rewrite = |r: &str| -> String {
                match parse_input(r) {
                    Some((p, k)) => match stops.get(&(p.to_string(), k)) {
                        Some(&a) => args[a].clone(),
                        None => r.to_string(),
                    },
                    None => r.to_string(),
                }
            };
            let mut out: Vec<NodeDef> = args
                .iter()
                .map(|a| NodeDef {
                    name: a.clone(),
                    op: "_Arg".into(),
                    ..Default::default()
                })
                .collect();
            for &i in nodes {
                let mut n = gd.node[i].clone();
                n.input = n
                    .input
                    .iter()
                    .filter(|s| !s.starts_with('^'))
                    .map(|s| rewrite(s))
                    .collect();
                out.push(n);
            }
            let rets = rets.iter().map(|r| rewrite(r)).collect();
            Region {
                nodes: out,
                args,
                rets,
            }
        };
        let cond = region("cond", &cond_nodes, &cond_stops, vec![cond_root]);
        // The body returns the next carried values, then its invariants unchanged.
        let mut body_rets = nexts.clone();
        let body_prefix = format!("{while_name}/body");
        body_rets.extend((self.carried.len()..n_args).map(|k| format!("{body_prefix}/arg_{k}")));
        let body = region("body", &body_nodes, &body_stops, body_rets);
        let while_node = NodeDef {
            name: while_name.clone(),
            op: "While".into(),
            input: init,
            ..Default::default()
        };
        let exits: Vec<NodeDef> = self
            .carried
            .iter()
            .enumerate()
            .filter_map(|(k, c)| c.exit.map(|x| (k, x)))
            .map(|(k, x)| NodeDef {
                name: gd.node[x].name.clone(),
                op: "Identity".into(),
                input: vec![format!("{while_name}:{k}")],
                ..Default::default()
            })
            .collect();
        let exit_set: HashSet<usize> = self.carried.iter().filter_map(|c| c.exit).collect();
        let gone: Vec<String> = (0..gd.node.len())
            .filter(|&i| inner(i) && !exit_set.contains(&i))
            .map(|i| gd.node[i].name.clone())
            .collect();
        Ok(Functional {
            while_node,
            exits,
            regions: vec![cond, body],
            gone,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::import_graph_def;
    use lathe_proto::tensorflow::{attr_value, AttrValue, GraphDef, NodeDef};
    use std::path::Path;

    fn node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
        NodeDef {
            name: name.into(),
            op: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn with(mut n: NodeDef, key: &str, v: attr_value::Value) -> NodeDef {
        n.attr.insert(key.into(), AttrValue { value: Some(v) });
        n
    }

    fn scalar_i32(name: &str, v: i32) -> NodeDef {
        use lathe_proto::tensorflow::{TensorProto, TensorShapeProto};
        let t = TensorProto {
            dtype: 3,
            tensor_shape: Some(TensorShapeProto::default()),
            int_val: vec![v],
            ..Default::default()
        };
        let n = with(
            node(name, "Const", &[]),
            "value",
            attr_value::Value::Tensor(t),
        );
        with(n, "dtype", attr_value::Value::Type(3))
    }

    /// `i = 0; while i < n: i += 2` as TensorFlow 1 dataflow, `n` a graph input.
    fn counting_loop() -> GraphDef {
        use lathe_proto::tensorflow::TensorShapeProto;
        let frame = attr_value::Value::S(b"loop".to_vec());
        let shape = TensorShapeProto {
            dim: vec![],
            ..Default::default()
        };
        let n = with(
            with(
                node("n", "Placeholder", &[]),
                "dtype",
                attr_value::Value::Type(3),
            ),
            "shape",
            attr_value::Value::Shape(shape),
        );
        GraphDef {
            node: vec![
                n,
                scalar_i32("zero", 0),
                with(
                    node("enter_i", "Enter", &["zero"]),
                    "frame_name",
                    frame.clone(),
                ),
                with(
                    with(node("enter_n", "Enter", &["n"]), "frame_name", frame),
                    "is_constant",
                    attr_value::Value::B(true),
                ),
                node("merge", "Merge", &["enter_i", "next"]),
                node("less", "Less", &["merge", "enter_n"]),
                node("cond", "LoopCond", &["less"]),
                node("switch", "Switch", &["merge", "cond"]),
                node("body_i", "Identity", &["switch:1"]),
                scalar_i32("two", 2),
                node("add", "AddV2", &["body_i", "two"]),
                node("next", "NextIteration", &["add"]),
                node("exit", "Exit", &["switch"]),
                node("out", "Identity", &["exit"]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_dataflow_loop_becomes_a_while_that_runs() {
        let g = import_graph_def(&counting_loop(), Path::new("loop.pb")).unwrap();
        let text = lathe_ir::text::print(&g);
        assert!(text.contains("while("), "{text}");
        let out = lathe_ir::interp::run(&g, &[lathe_ir::Tensor::scalar(7i32)]).unwrap();
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![8]);
    }

    #[test]
    fn a_broken_loop_is_an_error_naming_the_node() {
        let mut gd = counting_loop();
        gd.node.retain(|n| n.name != "switch");
        let e = import_graph_def(&gd, Path::new("loop.pb"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("loop.pb: node `merge` (op Merge): a loop Merge without a Switch"),
            "{e}"
        );
    }

    #[test]
    fn a_dataflow_conditional_is_refused_with_advice() {
        let mut gd = counting_loop();
        gd.node.retain(|n| {
            !matches!(
                n.op.as_str(),
                "Enter" | "Exit" | "LoopCond" | "NextIteration"
            )
        });
        gd.node.retain(|n| n.name != "merge");
        gd.node.push(node("merge", "Merge", &["zero", "two"]));
        gd.node.retain(|n| {
            !matches!(
                n.name.as_str(),
                "less" | "switch" | "body_i" | "add" | "out"
            )
        });
        let e = import_graph_def(&gd, Path::new("cond.pb"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node `merge` (op Merge): a TensorFlow 1 conditional"),
            "{e}"
        );
        assert!(e.contains("lower_control_flow=False"), "{e}");
    }
}
