//! The table from ONNX ops to IR ops.
//!
//! One row per ONNX op (default domain, or `ai.onnx.preview` for the preview ops Lathe
//! implements): its name, the IR ops it imports to, and its converter, which reads the node's operator set version (`NodeCx::opset`) where the op's
//! meaning or its inputs changed between versions. Rows live in one file per family; the
//! supported-op list, the unsupported-op error and `lathe ops` read the assembled table.

mod affine_grid;
mod attention;
mod bitcast;
mod causal_conv;
mod composite;
mod conv_transpose;
mod crop_reverse;
mod deform_conv;
mod einsum;
mod elementwise;
mod flex_attention;
mod grid_sample;
mod image;
mod indexing;
mod linear_attention;
mod loss;
mod max_pool_indices;
mod max_unpool;
mod nn;
mod pool_taps;
mod quant;
mod recurrent;
mod reduce;
mod resize;
mod sequence;
mod shape;
mod signal;
mod tensor_scatter;
mod window;

use super::{Builder, Item, NodeCx};
use lathe_ir::{Op, ValueId};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How a node becomes IR: its outputs, in ONNX order.
pub(crate) type Convert = fn(&mut Builder, &NodeCx) -> Result<Vec<ValueId>, String>;

/// How a node that reads or makes sequences or optionals becomes IR: its outputs, in ONNX
/// order. Its inputs that are sequences or optionals are `None` in `NodeCx::inputs`; it reads
/// them with [`Builder::item_input`].
pub(crate) type ConvertItems = fn(&mut Builder, &NodeCx) -> Result<Vec<Item>, String>;

/// A row's converter: most take and make tensors only.
#[derive(Clone, Copy)]
pub(crate) enum Converter {
    Tensors(Convert),
    Items(ConvertItems),
}

/// One row of the table.
#[derive(Clone)]
pub struct OnnxOp {
    /// The ONNX op type (`Conv`).
    pub name: &'static str,
    /// Its operator domain: `""` for the default one, or [`PREVIEW`].
    pub domain: &'static str,
    /// The mnemonics of the IR ops it imports to (the main one first).
    pub ir: Vec<&'static str>,
    pub(crate) convert: Converter,
}

/// A row converted by `f`, producing the IR ops `ir`.
pub(crate) fn row(name: &'static str, ir: &[&'static str], f: Convert) -> OnnxOp {
    OnnxOp {
        name,
        domain: "",
        ir: ir.to_vec(),
        convert: Converter::Tensors(f),
    }
}

/// A row whose inputs or outputs may be sequences or optionals, converted by `f`.
pub(crate) fn item_row(name: &'static str, ir: &[&'static str], f: ConvertItems) -> OnnxOp {
    OnnxOp {
        name,
        domain: "",
        ir: ir.to_vec(),
        convert: Converter::Items(f),
    }
}

/// The preview operator domain, whose ops may still change.
pub const PREVIEW: &str = "ai.onnx.preview";

/// `r` as an op of the [`PREVIEW`] domain.
pub(crate) fn preview(r: OnnxOp) -> OnnxOp {
    OnnxOp {
        domain: PREVIEW,
        ..r
    }
}

/// Every ONNX op the importer knows, in table order.
pub fn table() -> &'static [OnnxOp] {
    &index().0
}

/// The names of every ONNX op the importer knows (derived from [`table`]).
pub fn supported_ops() -> Vec<&'static str> {
    table().iter().map(|r| r.name).collect()
}

/// The row for `op_type` of operator domain `domain` (`""` for the default one).
pub(crate) fn lookup(domain: &str, op_type: &str) -> Option<&'static OnnxOp> {
    let (rows, by_name) = index();
    let r = &rows[*by_name.get(op_type)?];
    (r.domain == domain).then_some(r)
}

fn index() -> &'static (Vec<OnnxOp>, HashMap<&'static str, usize>) {
    static INDEX: OnceLock<(Vec<OnnxOp>, HashMap<&'static str, usize>)> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut rows = Vec::new();
        rows.extend(elementwise::rows());
        rows.extend(shape::rows());
        rows.extend(nn::rows());
        rows.extend(conv_transpose::rows());
        rows.extend(affine_grid::rows());
        rows.extend(grid_sample::rows());
        rows.extend(max_unpool::rows());
        rows.extend(image::rows());
        rows.extend(deform_conv::rows());
        rows.extend(crop_reverse::rows());
        rows.extend(einsum::rows());
        rows.extend(reduce::rows());
        rows.extend(composite::rows());
        rows.extend(loss::rows());
        rows.extend(attention::rows());
        rows.extend(causal_conv::rows());
        rows.extend(linear_attention::rows());
        rows.extend(flex_attention::rows());
        rows.extend(resize::rows());
        rows.extend(recurrent::rows());
        rows.extend(indexing::rows());
        rows.extend(quant::rows());
        rows.extend(window::rows());
        rows.extend(sequence::rows());
        rows.extend(signal::rows());
        rows.extend(bitcast::rows());
        rows.extend(tensor_scatter::rows());
        rows.extend(super::control_flow::rows());
        let by_name = rows.iter().enumerate().map(|(i, r)| (r.name, i)).collect();
        (rows, by_name)
    })
}

/// One output.
pub(crate) fn one(v: ValueId) -> Result<Vec<ValueId>, String> {
    Ok(vec![v])
}

/// The IR op `op` on the node's inputs `0..n`, one output.
pub(crate) fn apply(
    b: &mut Builder,
    cx: &NodeCx,
    op: Op,
    n: usize,
) -> Result<Vec<ValueId>, String> {
    let inputs = (0..n).map(|i| cx.input(i)).collect::<Result<Vec<_>, _>>()?;
    one(b.op(op, &inputs)?)
}

/// An axis attribute or input in `[-rank, rank)` made non-negative.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r.max(1) {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_row_names_ir_ops_that_exist_once() {
        let known: HashSet<&str> = lathe_ir::ops::registry().iter().map(|i| i.name).collect();
        let mut seen = HashSet::new();
        for r in table() {
            assert!(seen.insert(r.name), "ONNX op {} has two rows", r.name);
            assert!(!r.ir.is_empty(), "{} names no IR op", r.name);
            for ir in &r.ir {
                assert!(
                    known.contains(ir),
                    "{} imports to unknown IR op {ir}",
                    r.name
                );
            }
        }
        assert_eq!(supported_ops().len(), table().len());
    }
}
