//! Every IR op runs natively on the CPU for every dtype it accepts, asked of the backend's one
//! capability query (what fusion, lowering and `lathe ops` ask too).
//!
//! Ops not there yet are listed below, by name and dtype (none now). The list can only shrink:
//! a new op or dtype without a native path fails this test, and so does a listed gap that has
//! been closed (remove it from the list).

use lathe_ir::ops::{registry, AttrKind};
use lathe_runtime::cpu::capability::native_dtypes;

/// `(op, dtypes)` the CPU backend does not run natively yet.
const KNOWN_GAPS: &[(&str, &str)] = &[];

#[test]
fn every_op_is_native_for_every_dtype_it_accepts() {
    let mut gaps: Vec<(String, String)> = vec![];
    let mut reasons = vec![];
    let mut unasked = vec![];
    for info in registry() {
        let Some((_, no)) = native_dtypes(info) else {
            // Graph structure and fused bodies are asked about per node, not per op.
            let per_node = info.structural || info.attrs.iter().any(|a| a.kind == AttrKind::Graph);
            if !per_node {
                unasked.push(info.name);
            }
            continue;
        };
        if !no.is_empty() {
            let dtypes: Vec<&str> = no.iter().map(|(d, _)| d.name()).collect();
            gaps.push((info.name.to_string(), dtypes.join(" ")));
            reasons.push(format!("{}: {}", info.name, no[0].1));
        }
    }
    assert!(unasked.is_empty(), "no sample op to ask about: {unasked:?}");
    let known: Vec<(String, String)> = KNOWN_GAPS
        .iter()
        .map(|(o, d)| (o.to_string(), d.to_string()))
        .collect();
    let new: Vec<_> = gaps.iter().filter(|g| !known.contains(g)).collect();
    let closed: Vec<_> = known.iter().filter(|k| !gaps.contains(k)).collect();
    assert!(
        new.is_empty() && closed.is_empty(),
        "ops without a native CPU path that are not in KNOWN_GAPS: {new:?}\n\
         gaps in KNOWN_GAPS that are closed now (remove them): {closed:?}\n\
         reasons: {reasons:#?}"
    );
}
