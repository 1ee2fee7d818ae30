//! ONNX `TensorScatter` (opset 24), a key-value cache update: the `update` rows of each batch
//! entry `b` are written into `past_cache` along `axis` from row `write_indices[b]` on
//! (wrapping around the axis in `circular` mode). It is a `scatter_elements` whose indices
//! are `write_indices[b] + s` for update row `s`, computed on a small `[batch, .., seq, ..]`
//! tensor and tiled to the update's shape. In `linear` mode a row that would land outside the
//! cache (a negative start, or one too near the end) is given an index past the end, so the
//! scatter reports it when it runs instead of writing elsewhere.

use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp, ScatterReduction};
use lathe_ir::{DType, Op, Tensor, ValueId};

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "TensorScatter",
        &[
            "scatter_elements",
            "reshape",
            "add",
            "floor_mod",
            "less",
            "select",
            "tile",
        ],
        import_tensor_scatter,
    )]
}

fn import_tensor_scatter(b: &mut Builder, cx: &NodeCx) -> Result<Vec<ValueId>, String> {
    let (past, update) = (cx.input(0)?, cx.input(1)?);
    let rank = b.rank(past);
    let circular = match cx.attrs.str_or("mode", "linear")?.as_str() {
        "linear" => false,
        "circular" => true,
        m => {
            return Err(format!(
                "mode `{m}` is not supported (`linear` or `circular`)"
            ))
        }
    };
    let axis = norm_axis(cx.attrs.int_or("axis", -2)?, rank)?;
    if axis == 0 {
        return Err("the axis cannot be the batch axis (0)".into());
    }
    let dims = b.ty(update).shape.as_known().ok_or_else(|| {
        format!(
            "an update of unknown shape ({}) is not supported",
            b.ty(update)
        )
    })?;
    let cache = b.ty(past).shape.dims()[axis]
        .known()
        .ok_or("a cache of unknown length along the axis is not supported")?;
    if dims.len() != rank {
        return Err(format!(
            "the update {} must have the cache's rank {rank}",
            b.ty(update)
        ));
    }
    let (batch, seq) = (dims[0], dims[axis]);
    // The start of each batch entry, as [batch, 1, .., 1].
    let mut lead = vec![1i64; rank];
    lead[0] = batch as i64;
    let start = match cx.opt(2) {
        Some(w) => {
            let w = super::elementwise::cast(b, w, DType::I64)?;
            let shape = b.i64s(&lead);
            b.op(Op::Reshape, &[w, shape])?
        }
        None => b.konst(Tensor::from_vec(
            &lead.iter().map(|&d| d as usize).collect::<Vec<_>>(),
            vec![0i64; batch],
        )),
    };
    // Update row s goes to row start + s: [batch, 1, .., seq, .., 1].
    let mut along = vec![1usize; rank];
    along[axis] = seq;
    let rows = b.konst(Tensor::from_vec(&along, (0..seq as i64).collect()));
    let mut at = b.op(Op::Binary(BinaryOp::Add), &[start, rows])?;
    let len = b.i64_scalar(cache as i64);
    if circular {
        at = b.op(Op::Binary(BinaryOp::FloorMod), &[at, len])?;
    } else {
        let zero = b.i64_scalar(0);
        let before = b.op(Op::Binary(BinaryOp::Less), &[at, zero])?;
        at = b.op(Op::Select, &[before, len, at])?;
    }
    let multiples: Vec<i64> = (0..rank)
        .map(|i| {
            if i == 0 || i == axis {
                1
            } else {
                dims[i] as i64
            }
        })
        .collect();
    let multiples = b.i64s(&multiples);
    let at = b.op(Op::Tile, &[at, multiples])?;
    one(b.op(
        Op::ScatterElements {
            axis: axis as i64,
            reduction: ScatterReduction::None,
        },
        &[past, at, update],
    )?)
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, run, A};
    use super::*;

    fn scatter(mode: &str, past: &Tensor, update: &Tensor, at: &[i64]) -> Result<Tensor, String> {
        let w = Tensor::from_vec(&[at.len()], at.to_vec());
        let inputs = [("past", past), ("update", update), ("w", &w)];
        let g = one_node(
            24,
            "TensorScatter",
            &inputs,
            &[],
            &[("mode", A::S(mode))],
            &["past", "update", "w"],
            &["y"],
        )?;
        let out = lathe_ir::interp::run(&g, &[past, update, &w]).map_err(|e| e.to_string())?;
        Ok(out.into_iter().next().expect("one output"))
    }

    #[test]
    fn tensor_scatter_writes_rows_from_each_start() {
        // Two batch entries of a 4-row cache of 2 values; one update row each.
        let past = Tensor::from_vec(&[2, 4, 2], vec![0.0f32; 16]);
        let update = Tensor::from_vec(&[2, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let y = scatter("linear", &past, &update, &[1, 2]).unwrap();
        let want = [
            0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0,
        ];
        assert_eq!(y.to_f64_vec(), want);
        // Circular mode wraps past the end.
        let y = scatter("circular", &past, &update, &[3, 0]).unwrap();
        let want = [
            3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, //
            5.0, 6.0, 7.0, 8.0, 0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(y.to_f64_vec(), want);
        // Without write indices every entry starts at row 0.
        let g = one_node(
            24,
            "TensorScatter",
            &[("past", &past), ("update", &update)],
            &[],
            &[],
            &["past", "update"],
            &["y"],
        )
        .unwrap();
        let y = run(&g, &[&past, &update]).remove(0);
        assert_eq!(&y.to_f64_vec()[..4], [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn linear_rows_outside_the_cache_are_errors() {
        let past = Tensor::from_vec(&[1, 4, 1], vec![0.0f32; 4]);
        let update = Tensor::from_vec(&[1, 2, 1], vec![1.0f32, 2.0]);
        // Rows 3 and 4: row 4 is past the end.
        let e = scatter("linear", &past, &update, &[3]).unwrap_err();
        assert!(
            e.contains("indices[0,1,0] = 4 is not in [-4, 4) (axis 1"),
            "{e}"
        );
        // Rows -1 and 0: row -1 is before the start (given index 4, past the end).
        let e = scatter("linear", &past, &update, &[-1]).unwrap_err();
        assert!(
            e.contains("indices[0,0,0] = 4 is not in [-4, 4) (axis 1"),
            "{e}"
        );
        let e = scatter("ring", &past, &update, &[0]).unwrap_err();
        assert!(e.contains("mode `ring` is not supported"), "{e}");
    }
}
