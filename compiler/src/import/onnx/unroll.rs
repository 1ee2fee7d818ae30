//! Control flow resolved while importing: a nested graph imported into the enclosing one
//! ([`inline_body`]: an `If` branch taken on a constant condition, a `SequenceMap` body per
//! element) and a `Loop` unrolled ([`unroll_loop`]), which is how a sequence or an optional
//! crosses a region's boundary: the IR's regions carry tensors only, so a loop carrying one
//! must have a trip count and a condition known while importing (constants, or graph
//! inputs' values when imported per value), and each iteration's body is imported in turn.

use super::control_flow::in_region;
use super::{Builder, Item, NodeCx};
use lathe_ir::{Op, Tensor, ValueId};
use lathe_proto::onnx::GraphProto;

/// The most iterations a loop is unrolled for.
const MAX_UNROLL: i64 = 4096;

/// Imports `gp` (a nested graph, `what` in errors) into `b` itself with its inputs bound to
/// `bindings` (name, value); returns its outputs. Its names are unique in the model, so they
/// can share `b`'s scope; importing it again rebinds them.
pub(crate) fn inline_body(
    b: &mut Builder,
    gp: &GraphProto,
    bindings: &[(&str, Item)],
    what: &str,
) -> Result<Vec<Item>, String> {
    let (current, added) = (b.current.clone(), b.added);
    for (name, item) in bindings {
        if !name.is_empty() {
            b.bind_item(name, item.clone());
        }
    }
    b.initializers(gp).map_err(|e| in_region(b, what, e))?;
    b.nodes(gp).map_err(|e| in_region(b, what, e))?;
    (b.current, b.added) = (current, added);
    gp.output
        .iter()
        .map(|o| {
            let name = o.name.as_deref().unwrap_or("");
            b.item(name)
                .ok_or_else(|| format!("its {what}'s output `{name}` is not produced by any node"))
        })
        .collect()
}

/// True when a `Loop` node carries a sequence or an optional (which it must be unrolled for:
/// the builder's items are those).
pub(crate) fn carries_items(b: &Builder, cx: &NodeCx) -> bool {
    (cx.node.input.iter().skip(2)).any(|n| b.items.contains_key(n))
}

/// Why a `Loop` that [`unroll_loop`] unrolls needs its trip count and condition known.
const UNROLLED: &str =
    " (the loop carries a sequence or an optional, so it is unrolled while importing)";

/// `v` as a condition known while importing.
fn known_bool(b: &Builder, v: ValueId, what: &str) -> Result<bool, String> {
    let t = b.known(v, what, UNROLLED)?;
    lathe_ir::ops::control_flow::truth(t).map_err(|e| format!("{what}: {e}"))
}

/// `Loop(M, cond, v...)` carrying a sequence or an optional, unrolled: the body imported
/// once per iteration, its inputs bound to the iteration number, the condition and the
/// values the previous iteration returned; scan outputs are the iterations' items stacked.
pub(crate) fn unroll_loop(b: &mut Builder, cx: &NodeCx) -> Result<Vec<Item>, String> {
    let gp = cx.attrs.graph("body")?;
    let nv = cx.node.input.len().saturating_sub(2);
    if gp.input.len() != nv + 2 || gp.output.len() < nv + 1 {
        return Err(format!(
            "its body takes {} inputs and returns {} values; a Loop with {nv} loop-carried \
             values needs {} and at least {}",
            gp.input.len(),
            gp.output.len(),
            nv + 2,
            nv + 1
        ));
    }
    let nscan = gp.output.len() - 1 - nv;
    let trip = match cx.opt(0) {
        Some(m) => Some(b.int_of(m, "the trip count M", UNROLLED)?),
        None => None,
    };
    let mut cond = match cx.opt(1) {
        Some(c) => Some(known_bool(b, c, "the condition")?),
        None => None,
    };
    if trip.is_none() && cond.is_none() {
        return Err("a Loop with neither a trip count nor a condition never ends".into());
    }
    let mut carried: Vec<Item> = (0..nv)
        .map(|k| b.item_input(cx, 2 + k))
        .collect::<Result<_, _>>()?;
    let mut scans: Vec<Vec<ValueId>> = vec![Vec::new(); nscan];
    let name = |k: usize| gp.input[k].name.as_deref().unwrap_or("");
    let mut i = 0i64;
    while cond.unwrap_or(true) && trip.is_none_or(|m| i < m) {
        if i >= MAX_UNROLL {
            return Err(format!(
                "it carries a sequence or an optional and runs more than {MAX_UNROLL} \
                 iterations, the most the importer unrolls"
            ));
        }
        let iteration = b.i64_scalar(i);
        let flag = b.konst(Tensor::scalar(cond.unwrap_or(true)));
        let mut bindings = vec![
            (name(0), Item::Tensor(iteration)),
            (name(1), Item::Tensor(flag)),
        ];
        bindings.extend((0..nv).map(|k| (name(2 + k), carried[k].clone())));
        let outs = inline_body(b, gp, &bindings, "body")?;
        if cond.is_some() {
            let Item::Tensor(c) = outs[0] else {
                return Err(format!("its body's condition is {}", outs[0].kind()));
            };
            cond = Some(known_bool(b, c, "the body's condition output")?);
        }
        carried = outs[1..=nv].to_vec();
        for (j, item) in outs[1 + nv..].iter().enumerate() {
            match item {
                Item::Tensor(v) => scans[j].push(*v),
                other => return Err(format!("its scan output {j} is {}", other.kind())),
            }
        }
        i += 1;
    }
    let mut results = carried;
    for rows in scans {
        if rows.is_empty() {
            return Err(
                "scan outputs of a loop that carries a sequence and runs no iteration are not \
                 supported"
                    .into(),
            );
        }
        results.push(Item::Tensor(b.op(Op::Pack { axis: 0 }, &rows)?));
    }
    Ok(results)
}
