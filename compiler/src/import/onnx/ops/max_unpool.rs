//! ONNX `MaxUnpool`: each value of `X` stored at its flat index (over the whole output, as
//! `MaxPool`'s indices count) of a zero tensor, written with IR ops: a `scatter_elements` of
//! the flattened values into a flat zero tensor of the inferred output's size, reshaped.
//!
//! The inferred size of each spatial axis is `(in - 1) * stride - pads + kernel`. Given an
//! `output_shape` (which must be known while importing), the result is padded with zeros at
//! the end of each axis to it, as the ONNX reference does: indices count in the inferred
//! shape either way.

use super::pool_taps::window_attrs;
use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{PadMode, ScatterReduction};
use lathe_ir::{Op, ValueId};

/// The most elements an output may have.
const MAX_ELEMENTS: usize = 1 << 31;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "MaxUnpool",
        &["scatter_elements", "fill", "reshape", "pad"],
        import_max_unpool,
    )]
}

fn import_max_unpool(b: &mut Builder, cx: &NodeCx) -> Result<Vec<ValueId>, String> {
    let (x, indices) = (cx.input(0)?, cx.input(1)?);
    let (dims, a) = window_attrs(b, cx, x)?;
    let n = dims.len() - 2;
    let mut inferred = dims[..2].to_vec();
    for i in 0..n {
        // Every attribute entry came from a non-negative i64.
        let [stride, kernel, before, after] =
            [a.strides[i], a.kernel[i], a.pads[i], a.pads[n + i]].map(|v| v as i64);
        let size = (dims[2 + i] as i64 - 1)
            .checked_mul(stride)
            .and_then(|s| s.checked_add(kernel))
            .and_then(|s| s.checked_sub(before.saturating_add(after)))
            .filter(|&s| s > 0)
            .ok_or_else(|| {
                format!(
                    "spatial axis {i} of {} with kernel {kernel}, stride {stride} and pads \
                     {before}, {after} has no positive size",
                    dims[2 + i]
                )
            })?;
        inferred.push(size as usize);
    }
    let total = inferred
        .iter()
        .try_fold(1usize, |t, &d| t.checked_mul(d))
        .filter(|&t| t <= MAX_ELEMENTS)
        .ok_or_else(|| format!("an output of {inferred:?} is too large"))?;
    let dt = b.dtype(x);
    let size = b.i64s(&[total as i64]);
    let zero = b.scalar(dt, 0.0);
    let zeros = b.op(Op::Fill, &[size, zero])?;
    let flat = b.i64s(&[-1]);
    let values = b.op(Op::Reshape, &[x, flat])?;
    let flat = b.i64s(&[-1]);
    let indices = b.op(Op::Reshape, &[indices, flat])?;
    let scatter = Op::ScatterElements {
        axis: 0,
        reduction: ScatterReduction::None,
    };
    let y = b.op(scatter, &[zeros, indices, values])?;
    let shape: Vec<i64> = inferred.iter().map(|&d| d as i64).collect();
    let shape = b.i64s(&shape);
    let y = b.op(Op::Reshape, &[y, shape])?;
    let Some(output_shape) = cx.opt(2) else {
        return one(y);
    };
    let want = b.ints_of(output_shape, "output_shape")?;
    if want.len() != inferred.len() || want.iter().zip(&inferred).any(|(&w, &d)| w < d as i64) {
        return Err(format!(
            "output_shape {want:?} smaller than the inferred shape {inferred:?} (or of another \
             rank) is not supported"
        ));
    }
    if want.iter().zip(&inferred).all(|(&w, &d)| w == d as i64) {
        return one(y);
    }
    let mut amounts = Vec::with_capacity(2 * want.len());
    for (&w, &d) in want.iter().zip(&inferred) {
        amounts.extend([0, w - d as i64]);
    }
    let flat = b.i64s(&amounts);
    let shape = b.i64s(&[want.len() as i64, 2]);
    let paddings = b.op(Op::Reshape, &[flat, shape])?;
    let op = Op::Pad {
        mode: PadMode::Constant,
    };
    one(b.op(op, &[y, paddings])?)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    fn unpool(shape: Option<&[i64]>) -> Result<Vec<f64>, String> {
        let mut ins = vec!["x", "i"];
        let mut inits = vec![];
        if let Some(s) = shape {
            ins.push("shape");
            inits.push(("shape", Tensor::from_vec(&[s.len()], s.to_vec())));
        }
        let n = node("MaxUnpool", &ins, &["y"]);
        let n = ints_attr(ints_attr(n, "kernel_shape", &[2, 2]), "strides", &[2, 2]);
        let g = graph(
            "g",
            vec![n],
            vec![
                value("x", F32, &[1, 1, 1, 2]),
                value("i", I64, &[1, 1, 1, 2]),
            ],
            vec![value("y", F32, &[])],
            &inits,
        );
        let g = import(g, 11).map_err(|e| e.to_string())?;
        let x = Tensor::from_vec(&[1, 1, 1, 2], vec![7.0f32, 9.0]);
        let i = Tensor::from_vec(&[1, 1, 1, 2], vec![5i64, 2]);
        let y = run(&g, &[x, i]);
        Ok(vals(&y[0]))
    }

    #[test]
    fn values_land_at_their_indices() {
        // Inferred 2×4: index 5 is (1, 1), 2 is (0, 2).
        let want = [0.0, 0.0, 9.0, 0.0, 0.0, 7.0, 0.0, 0.0];
        assert_eq!(unpool(None).unwrap(), want);
        // A larger output_shape pads at the end; indices still count in 2×4.
        let y = unpool(Some(&[1, 1, 3, 5])).unwrap();
        assert_eq!(&y[..5], [0.0, 0.0, 9.0, 0.0, 0.0]);
        assert_eq!(&y[5..10], [0.0, 7.0, 0.0, 0.0, 0.0]);
        assert_eq!(&y[10..], [0.0; 5]);
        let e = unpool(Some(&[1, 1, 1, 4])).unwrap_err();
        assert!(e.contains("smaller than the inferred shape"), "{e}");
    }
}
