//! ONNX `MaxPool` with its second output: each window's maximum and its flat index (over
//! the whole input, `((n * C + c) * H + h) * W + w`; with `storage_order = 1` the spatial
//! part is column-major, `h + w * H`).
//!
//! Written with IR ops, as the taps of `pool_taps`: the input is padded, each of the
//! window's taps is a strided slice over every spatial axis, and a running maximum keeps,
//! beside its value, the index of the tap that set it (a constant per tap: the position each
//! output's tap reads). A later tap is taken when it is a real cell (a constant mask) and
//! strictly greater or the window's first real cell, so padding never wins and ties (and a
//! NaN) keep the first position in window order, as the ONNX reference does. The running
//! maximum is the pooled output, so each maximum is the cell its index names: a NaN wins
//! only as its window's first real cell (the reference's running `x > best`), where
//! `pool_taps`' `maximum` would propagate any NaN. The batch and channel offset is added
//! last.

use super::pool_taps::{lowest, pad_for_taps, tap_slice, windows, AxisWindow};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, UnaryOp as U};
use lathe_ir::{Op, Tensor, ValueId};

/// Taps a window may have (each is a strided slice of the input and a select).
const MAX_TAPS: usize = 4096;

/// The outputs of `MaxPool` node `cx` on `x` (every size known): the maxima and their
/// indices.
pub(super) fn max_pool_with_indices(
    b: &mut Builder,
    cx: &NodeCx,
    x: ValueId,
) -> Result<(ValueId, ValueId), String> {
    let dims = b.ty(x).shape.as_known().ok_or_else(|| {
        format!(
            "the Indices output needs the input's shape known, got {}",
            b.ty(x)
        )
    })?;
    let wins = windows(b, cx, x)?;
    let column_major = match cx.attrs.int_or("storage_order", 0)? {
        0 => false,
        1 if wins.len() == 2 => true,
        1 => return Err("`storage_order = 1` is only supported for 2-D pools".into()),
        s => return Err(format!("`storage_order = {s}` is not supported")),
    };
    let taps: usize = wins.iter().map(|w| w.kernel).product();
    if taps > MAX_TAPS {
        return Err(format!(
            "the Indices output of a window of {taps} cells is not supported (at most {MAX_TAPS})"
        ));
    }
    let axes: Vec<(usize, &AxisWindow)> =
        wins.iter().enumerate().map(|(i, w)| (2 + i, w)).collect();
    let fill = lowest(b.dtype(x));
    let padded = pad_for_taps(b, x, &axes, fill)?;
    // The spatial strides of a flat index.
    let spatial = &dims[2..];
    let mut strides = vec![1i64; spatial.len()];
    if column_major {
        strides[1] = spatial[0] as i64;
    } else {
        for i in (0..spatial.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * spatial[i + 1] as i64;
        }
    }
    let out: Vec<usize> = wins.iter().map(|w| w.out).collect();
    // The running maximum, its index, and where it is a real cell yet (`None`: everywhere).
    let mut best: Option<(ValueId, ValueId, Option<ValueId>)> = None;
    let mut tap = vec![0usize; wins.len()];
    for _ in 0..taps {
        let at: Vec<_> = axes
            .iter()
            .zip(&tap)
            .map(|(&(a, w), &j)| (a, w, j))
            .collect();
        let value = tap_slice(b, padded, &at)?;
        let (index, real) = tap_indices(&wins, &tap, &out, &strides);
        let index = b.konst(index);
        let real = real.map(|r| b.konst(r));
        best = Some(match best {
            None => (value, index, real),
            Some((v, i, seen)) => {
                // Strictly greater, or the first real cell of its window.
                let mut take = b.op(Op::Binary(B::Greater), &[value, v])?;
                if let Some(seen) = seen {
                    let fresh = b.op(Op::Unary(U::LogicalNot), &[seen])?;
                    take = b.op(Op::Binary(B::LogicalOr), &[take, fresh])?;
                }
                if let Some(real) = real {
                    take = b.op(Op::Binary(B::LogicalAnd), &[take, real])?;
                }
                let seen = match (seen, real) {
                    (Some(s), Some(r)) => Some(b.op(Op::Binary(B::LogicalOr), &[s, r])?),
                    _ => None,
                };
                let v = b.op(Op::Select, &[take, value, v])?;
                (v, b.op(Op::Select, &[take, index, i])?, seen)
            }
        });
        // The next tap, the last axis fastest (window order).
        for a in (0..tap.len()).rev() {
            tap[a] += 1;
            if tap[a] < wins[a].kernel {
                break;
            }
            tap[a] = 0;
        }
    }
    let (value, index, _) = best.expect("a window has at least one tap");
    // The first tap's index is `[1, 1, out..]`; every later one broadcasts it to the input's
    // batch and channels, so add the plane offsets either way.
    let plane: usize = spatial.iter().product();
    let offsets: Vec<i64> = (0..dims[0] * dims[1]).map(|p| (p * plane) as i64).collect();
    let mut shape = vec![dims[0], dims[1]];
    shape.extend(std::iter::repeat_n(1, wins.len()));
    let offsets = b.konst(Tensor::from_vec(&shape, offsets));
    Ok((value, b.op(Op::Binary(B::Add), &[index, offsets])?))
}

/// The spatial index (i64, `[1, 1, out..]`) of the cell tap `tap` of each output's window
/// reads, and where that cell is a real one (bool, the same shape; `None` when it is
/// everywhere). A cell in the padding gets the nearest edge cell's index; it is never taken.
fn tap_indices(
    wins: &[AxisWindow],
    tap: &[usize],
    out: &[usize],
    strides: &[i64],
) -> (Tensor, Option<Tensor>) {
    let cells: usize = out.iter().product();
    let (mut v, mut real) = (Vec::with_capacity(cells), Vec::with_capacity(cells));
    let mut o = vec![0usize; out.len()];
    for _ in 0..cells {
        let (mut index, mut inside) = (0i64, true);
        for (i, w) in wins.iter().enumerate() {
            let at = (o[i] * w.stride + tap[i] * w.dilation) as i64 - w.pads[0] as i64;
            inside &= (0..w.len as i64).contains(&at);
            index += at.clamp(0, (w.len as i64 - 1).max(0)) * strides[i];
        }
        v.push(index);
        real.push(inside);
        for a in (0..o.len()).rev() {
            o[a] += 1;
            if o[a] < out[a] {
                break;
            }
            o[a] = 0;
        }
    }
    let mut shape = vec![1, 1];
    shape.extend_from_slice(out);
    let real = (!real.iter().all(|&r| r)).then(|| Tensor::from_vec(&shape, real));
    (Tensor::from_vec(&shape, v), real)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    fn max_pool(dims: &[i64], attrs: &[(&str, &[i64])], x: Tensor) -> (Vec<f64>, Vec<f64>) {
        let mut n = node("MaxPool", &["x"], &["y", "i"]);
        for (k, v) in attrs {
            n = if *k == "storage_order" {
                int_attr(n, k, v[0])
            } else {
                ints_attr(n, k, v)
            };
        }
        let g = graph(
            "g",
            vec![n],
            vec![value("x", F32, dims)],
            vec![value("y", F32, &[]), value("i", I64, &[])],
            &[],
        );
        let g = import(g, 12).unwrap();
        let y = run(&g, &[x]);
        assert_eq!(y[1].dtype(), lathe_ir::DType::I64);
        (vals(&y[0]), vals(&y[1]))
    }

    #[test]
    fn indices_of_window_maxima() {
        // Two channels of 2×3; channel 1 is channel 0 reversed.
        let v = [1.0f32, 5.0, 2.0, 4.0, 3.0, 6.0];
        let mut all = v.to_vec();
        all.extend(v.iter().rev());
        let x = Tensor::from_vec(&[1, 2, 2, 3], all);
        let (y, i) = max_pool(&[1, 2, 2, 3], &[("kernel_shape", &[2, 2])], x.clone());
        assert_eq!(y, [5.0, 6.0, 6.0, 5.0]);
        // Channel 1's cells count from 6.
        assert_eq!(i, [1.0, 5.0, 6.0, 10.0]);
        // Column-major: (h, w) is h + 2w.
        let attrs: &[(&str, &[i64])] = &[("kernel_shape", &[2, 2]), ("storage_order", &[1])];
        let (_, i) = max_pool(&[1, 2, 2, 3], attrs, x);
        assert_eq!(i, [2.0, 5.0, 6.0, 9.0]);
    }

    #[test]
    fn padding_never_wins_and_ties_keep_the_first() {
        let x = Tensor::from_vec(&[1, 1, 1, 3], vec![-7.0f32, -7.0, -9.0]);
        let attrs: &[(&str, &[i64])] = &[("kernel_shape", &[1, 2]), ("pads", &[0, 1, 0, 1])];
        let (y, i) = max_pool(&[1, 1, 1, 3], attrs, x);
        assert_eq!(y, [-7.0, -7.0, -7.0, -9.0]);
        assert_eq!(i, [0.0, 0.0, 1.0, 2.0]);
    }

    #[test]
    fn each_maximum_is_the_cell_its_index_names() {
        // A NaN after a window's first cell is passed over; a first-cell NaN is kept.
        let x = Tensor::from_vec(&[1, 1, 1, 3], vec![1.0f32, f32::NAN, 3.0]);
        let (y, i) = max_pool(&[1, 1, 1, 3], &[("kernel_shape", &[1, 2])], x);
        assert_eq!(i, [0.0, 1.0]);
        assert_eq!(y.len(), 2);
        assert_eq!(y[0], 1.0);
        assert!(y[1].is_nan(), "{y:?}");
    }
}
