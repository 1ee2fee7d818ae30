//! Lowering of ONNX's indexing ops to the kernels of `kernels::indexing`: each kernel's
//! geometry comes from the node's (specialized) types and is checked here, so what the kernel
//! relies on for memory safety (an index's other coordinates inside `x`, buffers of the sizes it
//! walks) holds whatever the graph says; index values are checked when it runs.

use super::dims_of;
use crate::kernels::indexing::*;
use lathe_ir::ops::common::normalize_axis;
use lathe_ir::ops::Op;
use lathe_ir::{DType, TensorType};

/// The kernel of an indexing node with inputs `ins` and outputs `outs`.
pub(super) fn kernel(
    op: &Op,
    ins: &[&TensorType],
    outs: &[&TensorType],
) -> Result<IndexKernel, String> {
    let dims = |i: usize| -> Result<Vec<usize>, String> {
        let t = ins.get(i).ok_or_else(|| format!("input {i} is missing"))?;
        dims_of(t, "input")
    };
    let out = |i: usize| -> Result<Vec<usize>, String> {
        let t = outs
            .get(i)
            .ok_or_else(|| format!("output {i} is missing"))?;
        dims_of(t, "output")
    };
    let dtype = |i: usize| ins.get(i).map(|t| t.dtype).ok_or("an input is missing");
    let x_dtype = dtype(0)?;
    let elem = x_dtype.size_bytes();
    let index_dtype = dtype(1)?;
    let mismatch = || {
        format!(
            "internal error: {}'s types do not fit its kernel",
            op.mnemonic()
        )
    };
    Ok(match op {
        Op::GatherElements { axis } => {
            let (x_dims, idx_dims) = (dims(0)?, dims(1)?);
            let axis = along(*axis, &x_dims, &idx_dims)?;
            if out(0)? != idx_dims {
                return Err(mismatch());
            }
            IndexKernel::GatherElements(GatherElements {
                elem,
                index_dtype,
                x_dims,
                idx_dims,
                axis,
            })
        }
        Op::GatherNd { batch_dims } => {
            let k = GatherNd::new(elem, index_dtype, &dims(0)?, &dims(1)?, *batch_dims)
                .ok_or_else(mismatch)?;
            if out(0)?.iter().product::<usize>() != k.out_len() {
                return Err(mismatch());
            }
            IndexKernel::GatherNd(k)
        }
        Op::ScatterElements { axis, reduction } => {
            let (x_dims, idx_dims) = (dims(0)?, dims(1)?);
            let axis = along(*axis, &x_dims, &idx_dims)?;
            if dims(2)? != idx_dims || dtype(2)? != x_dtype || out(0)? != x_dims {
                return Err(mismatch());
            }
            IndexKernel::ScatterElements(ScatterElements {
                dtype: x_dtype,
                index_dtype,
                reduction: *reduction,
                x_dims,
                idx_dims,
                axis,
            })
        }
        Op::ScatterNd { reduction } => {
            let x_dims = dims(0)?;
            let k = ScatterNd::new(x_dtype, index_dtype, *reduction, &x_dims, &dims(1)?)
                .ok_or_else(mismatch)?;
            let updates = dims(2)?.iter().product::<usize>();
            if updates != k.updates_len() || dtype(2)? != x_dtype || out(0)? != x_dims {
                return Err(mismatch());
            }
            IndexKernel::ScatterNd(k)
        }
        Op::Trilu { upper } => {
            let x_dims = dims(0)?;
            let [lead @ .., rows, cols] = x_dims.as_slice() else {
                return Err(mismatch());
            };
            if out(0)? != x_dims || dims(1)?.iter().product::<usize>() != 1 {
                return Err(mismatch());
            }
            IndexKernel::Trilu(Trilu {
                elem,
                k_dtype: index_dtype,
                upper: *upper,
                batch: lead.iter().product(),
                rows: *rows,
                cols: *cols,
            })
        }
        Op::Cumulative {
            kind,
            exclusive,
            reverse,
        } => {
            let x_dims = dims(0)?;
            if x_dims.is_empty() || out(0)? != x_dims || dims(1)?.iter().product::<usize>() != 1 {
                return Err(mismatch());
            }
            IndexKernel::Cumulative(Cumulative {
                kind: *kind,
                dtype: x_dtype,
                axis_dtype: index_dtype,
                dims: x_dims,
                exclusive: *exclusive,
                reverse: *reverse,
            })
        }
        Op::TopK { axis, largest } => {
            let x_dims = dims(0)?;
            let a = normalize_axis(*axis, x_dims.len())?;
            let values = out(0)?;
            let k = *values.get(a).ok_or_else(mismatch)?;
            let mut want = x_dims.clone();
            want[a] = k;
            let fits = values == want
                && out(1)? == want
                && outs[1].dtype == DType::I64
                && k <= x_dims[a]
                && dims(1)?.iter().product::<usize>() == 1;
            if !fits {
                return Err(mismatch());
            }
            IndexKernel::TopK(TopK {
                dtype: x_dtype,
                k_dtype: index_dtype,
                outer: x_dims[..a].iter().product(),
                n: x_dims[a],
                inner: x_dims[a + 1..].iter().product(),
                k,
                largest: *largest,
            })
        }
        other => return Err(format!("{} is not an indexing op", other.mnemonic())),
    })
}

/// `axis` of `x` made non-negative, with the indices (one per element, positioned like `x`'s
/// elements off the axis) checked to fit inside `x` on every other axis.
fn along(axis: i64, x: &[usize], idx: &[usize]) -> Result<usize, String> {
    let a = normalize_axis(axis, x.len())?;
    let fits = idx.len() == x.len()
        && x.iter()
            .zip(idx)
            .enumerate()
            .all(|(d, (&xn, &n))| d == a || n <= xn);
    if !fits {
        return Err(format!("indices {idx:?} do not fit x {x:?} off axis {a}"));
    }
    Ok(a)
}
