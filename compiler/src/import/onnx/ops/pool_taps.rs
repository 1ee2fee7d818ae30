//! ONNX `MaxPool` and `AveragePool` over windows the IR's pools do not take (3-D windows,
//! dilations), one spatial axis at a time: a box window is separable, the max of maxes is
//! the max, and the in-bounds count of a box is the product of its per-axis counts, so an
//! average of averages is the average (up to rounding).
//!
//! Along one axis, the input is padded (with the dtype's lowest value for a max, zeros for
//! an average) and each of the window's `k` taps is a strided slice; the taps are combined
//! with `max` or `add`, and an average is scaled by the reciprocal of each output's count,
//! a constant. Every piece runs natively; a `k`-tap axis reads its input `k` times.

use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{BinaryOp as B, PadMode, StridedSliceAttrs};
use lathe_ir::{DType, Op, Tensor, ValueId};

/// The window of one spatial axis, its padding resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct AxisWindow {
    pub len: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Padding before and after (padded cells never count for a max; for an average only
    /// with `count_include_pad`).
    pub pads: [usize; 2],
    pub out: usize,
}

impl AxisWindow {
    /// The geometry of one axis as ONNX defines it: `auto_pad` `SAME_*` gives
    /// `ceil(len / stride)` outputs (the odd padding cell at the end for `SAME_UPPER`, at the
    /// start for `SAME_LOWER`); otherwise `pads`, rounding the output count down, or up with
    /// `ceil` (dropping a last window that would start in the end padding).
    pub fn new(
        len: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pads: [usize; 2],
        auto_pad: &str,
        ceil: bool,
    ) -> Result<AxisWindow, String> {
        let span = (kernel - 1) * dilation + 1;
        let (pads, out) = match auto_pad {
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = len.div_ceil(stride);
                let total = ((out.max(1) - 1) * stride + span).saturating_sub(len);
                let odd_first = auto_pad == "SAME_LOWER";
                let before = if odd_first {
                    total.div_ceil(2)
                } else {
                    total / 2
                };
                ([before, total - before], out)
            }
            "NOTSET" | "VALID" => {
                let pads = if auto_pad == "VALID" { [0, 0] } else { pads };
                let padded = len + pads[0] + pads[1];
                if padded < span {
                    return Err(format!(
                        "the window (span {span}) is larger than the padded input {padded}"
                    ));
                }
                let mut out = if ceil {
                    (padded - span).div_ceil(stride) + 1
                } else {
                    (padded - span) / stride + 1
                };
                if ceil && (out - 1) * stride >= len + pads[0] {
                    out -= 1;
                }
                (pads, out)
            }
            other => return Err(format!("unknown `auto_pad` value `{other}`")),
        };
        Ok(AxisWindow {
            len,
            kernel,
            stride,
            dilation,
            pads,
            out,
        })
    }

    /// The padded length the taps read: through the last window's last tap.
    pub fn needed(&self) -> usize {
        (self.out - 1) * self.stride + (self.kernel - 1) * self.dilation + 1
    }

    /// How many taps of output `o`'s window count for an average: those inside the input,
    /// or, with `include_pad`, inside the padded input (never ceil mode's overhang).
    pub fn count(&self, o: usize, include_pad: bool) -> usize {
        let [pb, pe] = self.pads;
        let range = if include_pad {
            0..self.len + pb + pe
        } else {
            pb..pb + self.len
        };
        (0..self.kernel)
            .filter(|j| range.contains(&(o * self.stride + j * self.dilation)))
            .count()
    }
}

/// The lowest value of `dt` (a max pool's padding).
pub(super) fn lowest(dt: DType) -> f64 {
    if dt.is_float() {
        f64::NEG_INFINITY
    } else if dt.is_signed_int() {
        -(2f64.powi(8 * dt.size_bytes() as i32 - 1))
    } else {
        0.0
    }
}

/// A max or average pool of `x` (NC followed by any number of spatial axes, every size
/// known) with `cx`'s window attributes, axis by axis.
pub(super) fn pool(
    b: &mut Builder,
    cx: &NodeCx,
    x: ValueId,
    max: bool,
    include_pad: bool,
) -> Result<ValueId, String> {
    let mut y = x;
    for (i, w) in windows(b, cx, x)?.iter().enumerate() {
        y = pool_axis(b, y, 2 + i, w, max, include_pad)?;
    }
    Ok(y)
}

/// A pool's window attributes as a node gives them, one entry per spatial axis (`pads`: the
/// starts, then the ends).
pub(super) struct WindowAttrs {
    /// `kernel_shape`.
    pub kernel: Vec<usize>,
    /// `strides` (1 when absent).
    pub strides: Vec<usize>,
    /// `dilations` (1 when absent).
    pub dilations: Vec<usize>,
    /// `pads`, two per spatial axis (0 when absent).
    pub pads: Vec<usize>,
}

/// The dims of `x` (NC followed by any number of spatial axes, every size known) and `cx`'s
/// window attributes for them, checked: positive kernel, strides and dilations (1 when
/// absent), non-negative pads (0 when absent).
pub(super) fn window_attrs(
    b: &Builder,
    cx: &NodeCx,
    x: ValueId,
) -> Result<(Vec<usize>, WindowAttrs), String> {
    let dims = b
        .ty(x)
        .shape
        .as_known()
        .ok_or_else(|| format!("needs the input's shape known, got {}", b.ty(x)))?;
    if dims.len() < 3 {
        return Err(format!("needs an input of rank 3 or more, got {}", b.ty(x)));
    }
    let n = dims.len() - 2;
    let sizes = |name: &str, default: Option<usize>, len: usize| -> Result<Vec<usize>, String> {
        let v = match (cx.attrs.ints(name), default) {
            (Some(v), _) => v.to_vec(),
            (None, Some(d)) => vec![d as i64; len],
            (None, None) => return Err(format!("missing attribute `{name}`")),
        };
        if v.len() != len || v.iter().any(|&e| e < 0) {
            return Err(format!("`{name}` {v:?} is not {len} non-negative entries"));
        }
        Ok(v.into_iter().map(|e| e as usize).collect())
    };
    let kernel = sizes("kernel_shape", None, n)?;
    let strides = sizes("strides", Some(1), n)?;
    let dilations = sizes("dilations", Some(1), n)?;
    let pads = sizes("pads", Some(0), 2 * n)?;
    if [&kernel, &strides, &dilations]
        .iter()
        .any(|v| v.contains(&0))
    {
        return Err("kernel_shape, strides and dilations must be positive".into());
    }
    let attrs = WindowAttrs {
        kernel,
        strides,
        dilations,
        pads,
    };
    Ok((dims, attrs))
}

/// The window of each spatial axis of `x` (NC followed by any number of spatial axes, every
/// size known) from `cx`'s attributes (`storage_order` only orders `MaxPool`'s indices).
pub(super) fn windows(b: &Builder, cx: &NodeCx, x: ValueId) -> Result<Vec<AxisWindow>, String> {
    let (dims, a) = window_attrs(b, cx, x)?;
    let n = dims.len() - 2;
    let ceil = cx.attrs.int_or("ceil_mode", 0)? != 0;
    let auto_pad = cx.attrs.str_or("auto_pad", "NOTSET")?;
    (0..n)
        .map(|i| {
            AxisWindow::new(
                dims[2 + i],
                a.kernel[i],
                a.strides[i],
                a.dilations[i],
                [a.pads[i], a.pads[n + i]],
                &auto_pad,
                ceil,
            )
            .map_err(|e| format!("spatial axis {i}: {e}"))
        })
        .collect()
}

/// The pool of `x` along `axis` alone.
fn pool_axis(
    b: &mut Builder,
    x: ValueId,
    axis: usize,
    w: &AxisWindow,
    max: bool,
    include_pad: bool,
) -> Result<ValueId, String> {
    let rank = b.rank(x);
    let dt = b.dtype(x);
    let x = pad_for_taps(b, x, &[(axis, w)], if max { lowest(dt) } else { 0.0 })?;
    let mut acc: Option<ValueId> = None;
    for j in 0..w.kernel {
        let tap = tap_slice(b, x, &[(axis, w, j)])?;
        acc = Some(match acc {
            None => tap,
            Some(a) => b.op(Op::Binary(if max { B::Maximum } else { B::Add }), &[a, tap])?,
        });
    }
    let y = acc.expect("a window has at least one tap");
    if max {
        return Ok(y);
    }
    let scale: Vec<f64> = (0..w.out)
        .map(|o| 1.0 / w.count(o, include_pad).max(1) as f64)
        .collect();
    let mut shape = vec![1; rank];
    shape[axis] = w.out;
    let scale = b.konst(Tensor::from_f64(dt, &shape, &scale));
    b.op(Op::Binary(B::Mul), &[y, scale])
}

/// `x` padded with `fill` along each `(axis, window)` for the window's taps: its `pads[0]`
/// before, and after through the last window's last tap.
pub(super) fn pad_for_taps(
    b: &mut Builder,
    x: ValueId,
    axes: &[(usize, &AxisWindow)],
    fill: f64,
) -> Result<ValueId, String> {
    let rank = b.rank(x);
    let mut amounts = vec![0i64; 2 * rank];
    for &(axis, w) in axes {
        amounts[2 * axis] = w.pads[0] as i64;
        amounts[2 * axis + 1] = w.needed().saturating_sub(w.len + w.pads[0]) as i64;
    }
    if amounts.iter().all(|&a| a == 0) {
        return Ok(x);
    }
    let flat = b.i64s(&amounts);
    let shape = b.i64s(&[rank as i64, 2]);
    let paddings = b.op(Op::Reshape, &[flat, shape])?;
    let fill = b.scalar(b.dtype(x), fill);
    let op = Op::Pad {
        mode: PadMode::Constant,
    };
    b.op(op, &[x, paddings, fill])
}

/// What tap `j` of each `(axis, window, j)` reads of `x` (padded by [`pad_for_taps`]): a
/// strided slice along those axes, every other axis whole.
pub(super) fn tap_slice(
    b: &mut Builder,
    x: ValueId,
    taps: &[(usize, &AxisWindow, usize)],
) -> Result<ValueId, String> {
    let rank = b.rank(x);
    let (mut begin, mut end, mut step) = (vec![0i64; rank], vec![0i64; rank], vec![1i64; rank]);
    let mut whole = (1i64 << rank) - 1;
    for &(axis, w, j) in taps {
        let start = j * w.dilation;
        begin[axis] = start as i64;
        end[axis] = (start + (w.out - 1) * w.stride + 1) as i64;
        step[axis] = w.stride as i64;
        whole &= !(1i64 << axis);
    }
    let attrs = StridedSliceAttrs {
        begin_mask: whole,
        end_mask: whole,
        ..StridedSliceAttrs::default()
    };
    let (begin, end, step) = (b.i64s(&begin), b.i64s(&end), b.i64s(&step));
    b.op(Op::StridedSlice(attrs), &[x, begin, end, step])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_onnx() {
        // 5 cells, window 2 dilated by 2 (span 3), stride 1: 3 outputs.
        let w = AxisWindow::new(5, 2, 1, 2, [0, 0], "NOTSET", false).unwrap();
        assert_eq!((w.out, w.needed()), (3, 5));
        // Ceil mode keeps a last partial window: (6 - 3) / 2 rounds up to 2, so 3 outputs.
        let w = AxisWindow::new(6, 3, 2, 1, [0, 0], "NOTSET", true).unwrap();
        assert_eq!((w.out, w.needed()), (3, 7));
        assert_eq!([0, 1, 2].map(|o| w.count(o, false)), [3, 3, 2]);
        // ... but not one that would start in the end padding.
        let w = AxisWindow::new(4, 2, 2, 1, [0, 1], "NOTSET", true).unwrap();
        assert_eq!(w.out, 2);
        // SAME_LOWER puts the odd cell first.
        let w = AxisWindow::new(4, 2, 1, 1, [0, 0], "SAME_LOWER", false).unwrap();
        assert_eq!((w.pads, w.out), ([1, 0], 4));
        assert_eq!(w.count(0, false), 1);
        assert_eq!(w.count(0, true), 2);
    }

    #[test]
    fn lowest_values_by_dtype() {
        assert_eq!(lowest(DType::F16), f64::NEG_INFINITY);
        assert_eq!(lowest(DType::I8), -128.0);
        assert_eq!(lowest(DType::U8), 0.0);
    }
}

#[cfg(test)]
mod import_tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    fn pool(op: &str, dims: &[i64], attrs: &[(&str, &[i64])], x: Tensor) -> Vec<f64> {
        let mut n = node(op, &["x"], &["y"]);
        for (name, v) in attrs {
            n = ints_attr(n, name, v);
        }
        let g = graph(
            "g",
            vec![n],
            vec![value("x", F32, dims)],
            vec![value("y", F32, &[])],
            &[],
        );
        vals(&run(&import(g, 19).unwrap(), &[x])[0])
    }

    #[test]
    fn dilated_max_pool_reads_taps_apart() {
        let x = Tensor::from_vec(&[1, 1, 5], vec![1.0f32, 5.0, 2.0, 4.0, 3.0]);
        let attrs: &[(&str, &[i64])] = &[("kernel_shape", &[2]), ("dilations", &[2])];
        assert_eq!(pool("MaxPool", &[1, 1, 5], attrs, x), [2.0, 5.0, 3.0]);
    }

    #[test]
    fn three_d_average_pool_ignores_padding() {
        let x = Tensor::from_vec(&[1, 1, 2, 2, 2], (0..8).map(|v| v as f32).collect());
        let attrs: &[(&str, &[i64])] = &[("kernel_shape", &[2, 2, 2])];
        assert_eq!(pool("AveragePool", &[1, 1, 2, 2, 2], attrs, x), [3.5]);
        let x = Tensor::from_vec(&[1, 1, 1, 1, 3], vec![1.0f32, 2.0, 3.0]);
        let attrs: &[(&str, &[i64])] =
            &[("kernel_shape", &[1, 1, 2]), ("pads", &[0, 0, 1, 0, 0, 1])];
        let y = pool("AveragePool", &[1, 1, 1, 1, 3], attrs, x);
        assert_eq!(y, [1.0, 1.5, 2.5, 3.0]);
    }
}
