//! ONNX `CenterCropPad` (a slice then a pad, amounts computed from the target shape) and
//! `ReverseSequence` (a `gather_nd` whose time indices are computed from the lengths).
//!
//! Both compute their amounts and indices with IR ops, so a target shape or lengths fed at
//! run time work (a target shape becomes a shape input of the model); constant ones fold
//! while importing.

use super::elementwise::cast;
use super::{norm_axis, one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, PadMode};
use lathe_ir::{DType, Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row(
            "CenterCropPad",
            &[
                "slice",
                "pad",
                "shape",
                "gather",
                "sub",
                "maximum",
                "floor_div",
            ],
            import_center_crop_pad,
        ),
        row(
            "ReverseSequence",
            &["gather_nd", "select", "less", "sub", "pack"],
            import_reverse_sequence,
        ),
    ]
}

fn binary(b: &mut Builder, op: B, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Binary(op), &[x, y])
}

/// `CenterCropPad`: each listed axis cropped (its start at `(size - target) / 2`, rounded
/// down) or padded with zeros (`(target - size) / 2` before) to its entry of `shape`.
fn import_center_crop_pad(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let rank = b.rank(x);
    let target = cast(b, cx.input(1)?, DType::I64)?;
    let axes = match cx.attrs.ints("axes") {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..rank).collect(),
    };
    if let Some(n) = b.ty(target).shape.0.first().and_then(|d| d.known()) {
        if n != axes.len() || b.rank(target) != 1 {
            return Err(format!(
                "`shape` {} does not have one entry per axis ({} axes)",
                b.ty(target),
                axes.len()
            ));
        }
    }
    // The target of every axis: the input's size where `axes` does not list it.
    let sizes = b.op(Op::Shape { output: DType::I64 }, &[x])?;
    let zero_axis = b.i64_scalar(0);
    let both = b.op(Op::Concat, &[sizes, target, zero_axis])?;
    let pick: Vec<i64> = (0..rank)
        .map(|a| match axes.iter().position(|&l| l == a) {
            Some(i) => (rank + i) as i64,
            None => a as i64,
        })
        .collect();
    let pick = b.i64s(&pick);
    let full = b.op(Op::Gather { batch_dims: 0 }, &[both, pick, zero_axis])?;
    let zeros = b.i64s(&vec![0; rank]);
    let twos = b.i64s(&vec![2; rank]);
    // Crop: start at half the excess; keep min(size, target).
    let excess = binary(b, B::Sub, sizes, full)?;
    let excess = binary(b, B::Maximum, excess, zeros)?;
    let begin = binary(b, B::FloorDiv, excess, twos)?;
    let kept = binary(b, B::Sub, sizes, excess)?;
    let y = b.op(Op::Slice, &[x, begin, kept])?;
    // Pad: half the shortfall before, the rest after.
    let short = binary(b, B::Sub, full, sizes)?;
    let short = binary(b, B::Maximum, short, zeros)?;
    let before = binary(b, B::FloorDiv, short, twos)?;
    let after = binary(b, B::Sub, short, before)?;
    let paddings = b.op(Op::Pack { axis: 1 }, &[before, after])?;
    let op = Op::Pad {
        mode: PadMode::Constant,
    };
    one(b.op(op, &[y, paddings])?)
}

/// `ReverseSequence`: along `time_axis`, the first `sequence_lens[b]` cells of each batch
/// entry `b` reversed and the rest kept. A `gather_nd` of `x` at the index pairs of its
/// first two axes (time and batch, in either order), the time index computed from the
/// lengths; a length past the time axis is the kernel's index error.
fn import_reverse_sequence(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    let time_axis = cx.attrs.int_or("time_axis", 0)?;
    let batch_axis = cx.attrs.int_or("batch_axis", 1)?;
    let time_first = match (time_axis, batch_axis) {
        (0, 1) => true,
        (1, 0) => false,
        _ => {
            return Err(format!(
                "time_axis {time_axis} and batch_axis {batch_axis} must be 0 and 1"
            ))
        }
    };
    if b.rank(x) < 2 {
        return Err(format!("needs an input of rank 2 or more, got {}", b.ty(x)));
    }
    let d = &b.ty(x).shape.0;
    let (Some(d0), Some(d1)) = (d[0].known(), d[1].known()) else {
        return Err(format!(
            "needs the time and batch sizes known, got {}",
            b.ty(x)
        ));
    };
    let n = if time_first { d1 } else { d0 };
    let lens = cast(b, cx.input(1)?, DType::I64)?;
    if let Some(k) = b.ty(lens).shape.0.first().and_then(|d| d.known()) {
        if k != n || b.rank(lens) != 1 {
            return Err(format!(
                "sequence_lens {} does not have one length per batch entry ({n})",
                b.ty(lens)
            ));
        }
    }
    // Grids over [d0, d1] of the time and batch coordinates, and the lengths broadcast.
    let grid = |time: bool| -> Vec<i64> {
        (0..d0 * d1)
            .map(|k| {
                let (i, j) = (k / d1, k % d1);
                let (ti, bi) = if time_first { (i, j) } else { (j, i) };
                (if time { ti } else { bi }) as i64
            })
            .collect()
    };
    let times = b.konst(Tensor::from_vec(&[d0, d1], grid(true)));
    let batches = b.konst(Tensor::from_vec(&[d0, d1], grid(false)));
    let lens_shape = b.i64s(&if time_first {
        [1, n as i64]
    } else {
        [n as i64, 1]
    });
    let lens = b.op(Op::Reshape, &[lens, lens_shape])?;
    let one_ = b.i64_scalar(1);
    let last = binary(b, B::Sub, lens, one_)?;
    let reversed = binary(b, B::Sub, last, times)?;
    let inside = binary(b, B::Less, times, lens)?;
    let time_index = b.op(Op::Select, &[inside, reversed, times])?;
    let pair = if time_first {
        [time_index, batches]
    } else {
        [batches, time_index]
    };
    let indices = b.op(Op::Pack { axis: 2 }, &pair)?;
    one(b.op(Op::GatherNd { batch_dims: 0 }, &[x, indices])?)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    #[test]
    fn center_crop_pad_crops_and_pads_around_the_center() {
        let g = graph(
            "g",
            vec![node("CenterCropPad", &["x", "s"], &["y"])],
            vec![value("x", F32, &[2, 3])],
            vec![value("y", F32, &[])],
            &[("s", Tensor::from_vec(&[2], vec![4i64, 1]))],
        );
        let x = Tensor::from_vec(&[2, 3], (0..6).map(|v| v as f32).collect());
        let y = run(&import(g, 18).unwrap(), &[x]);
        assert_eq!(y[0].shape(), [4, 1]);
        assert_eq!(vals(&y[0]), [0.0, 1.0, 4.0, 0.0]);
    }

    #[test]
    fn reverse_sequence_reverses_each_prefix() {
        let g = graph(
            "g",
            vec![node("ReverseSequence", &["x", "lens"], &["y"])],
            vec![value("x", F32, &[3, 2]), value("lens", I64, &[2])],
            vec![value("y", F32, &[])],
            &[],
        );
        let g = import(g, 10).unwrap();
        let x = Tensor::from_vec(&[3, 2], (0..6).map(|v| v as f32).collect());
        let lens = Tensor::from_vec(&[2], vec![2i64, 3]);
        let y = run(&g, &[x, lens]);
        assert_eq!(vals(&y[0]), [2.0, 5.0, 0.0, 3.0, 4.0, 1.0]);
    }
}
