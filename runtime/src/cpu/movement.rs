//! Lowering of the data-movement ops (concat, pack, unpack, slice, strided slice, transpose,
//! tile, pad, gather, fill) to byte-copy kernels that work for every dtype.
//!
//! Configuration inputs (axes, begins, permutations, multiples, paddings) must be constants
//! of the specialized graph; shapes are all known, so every copy's geometry is fixed here and
//! checked against its buffers (a copy can never reach outside them at run time).

use super::plan::*;
use crate::kernels::copy::{row_major_strides, IndexedCopy, StridedCopy};
use crate::kernels::gather::Gather;
use lathe_ir::ops::{Op, PadMode};
use lathe_ir::{DType, Tensor};

/// Elements of an input a strided slice's layout is worked out on (the interpreter runs the
/// op once on a tensor of element indices).
const MAX_PROBE_ELEMENTS: usize = 1 << 26;

/// What a movement lowering sees of a node.
pub(super) struct Operands<'a> {
    pub bufs: &'a [Buf],
    pub inputs: &'a [BufId],
    pub outputs: &'a [BufId],
    /// Each input's value when it is a constant.
    pub consts: Vec<Option<&'a Tensor>>,
}

impl Operands<'_> {
    fn dims(&self, b: BufId) -> &[usize] {
        &self.bufs[b].dims
    }

    fn ints(&self, i: usize, what: &str) -> Result<Vec<i64>, String> {
        self.consts
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("{what} (input {i}) is not a constant"))?
            .to_i64_vec()
    }

    fn part(&self, src: BufId, dst: BufId, copy: StridedCopy) -> Result<MovePart, String> {
        let (s, d) = copy.extents();
        if s > self.bufs[src].len() || d > self.bufs[dst].len() {
            return Err("internal error: a copy reaches outside its buffers".into());
        }
        Ok(MovePart { src, dst, copy })
    }
}

/// `axis` in `[-rank, rank)` made non-negative.
fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let ax = if a < 0 { a + r } else { a };
    if !(0..r).contains(&ax) {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(ax as usize)
}

/// The kernel of a data-movement op.
pub(super) fn lower(op: &Op, o: &Operands) -> Result<Kernel, String> {
    let out = *o.outputs.first().ok_or("the op has no output")?;
    let x = *o.inputs.first().ok_or("the op has no input")?;
    let elem = o.bufs[x].dtype.size_bytes();
    let moves = |parts: Vec<MovePart>| Kernel::Move {
        fills: vec![],
        parts,
    };
    match op {
        Op::Concat => {
            let (last, members) = o.inputs.split_last().ok_or("concat has no inputs")?;
            let _ = last;
            let out_dims = o.dims(out).to_vec();
            let ax = axis(o.ints(members.len(), "the axis")?[0], out_dims.len())?;
            let mut at = vec![0; out_dims.len()];
            let mut parts = vec![];
            for &m in members {
                let dims = o.dims(m);
                if dims.iter().product::<usize>() > 0 {
                    let copy = StridedCopy::into_block(elem, dims, &out_dims, &at);
                    parts.push(o.part(m, out, copy)?);
                }
                at[ax] += dims[ax];
            }
            Ok(moves(parts))
        }
        Op::Pack { axis: a } => {
            let out_dims = o.dims(out).to_vec();
            let ax = axis(*a, out_dims.len())?;
            let mut parts = vec![];
            for (k, &m) in o.inputs.iter().enumerate() {
                let mut dims = o.dims(m).to_vec();
                dims.insert(ax, 1);
                let mut at = vec![0; out_dims.len()];
                at[ax] = k;
                parts.push(o.part(m, out, StridedCopy::into_block(elem, &dims, &out_dims, &at))?);
            }
            Ok(moves(parts))
        }
        Op::Unpack { axis: a, .. } => {
            let in_dims = o.dims(x).to_vec();
            let ax = axis(*a, in_dims.len())?;
            let strides = row_major_strides(&in_dims);
            let mut block = in_dims.clone();
            block[ax] = 1;
            let dense = row_major_strides(&block);
            let mut parts = vec![];
            for (k, &y) in o.outputs.iter().enumerate() {
                let copy = StridedCopy::new(elem, &block, (k * strides[ax], &strides), (0, &dense));
                parts.push(o.part(x, y, copy)?);
            }
            Ok(moves(parts))
        }
        Op::Slice => {
            let begin = o.ints(1, "the begin")?;
            let in_dims = o.dims(x);
            let strides = row_major_strides(in_dims);
            let out_dims = o.dims(out).to_vec();
            if begin.len() != in_dims.len() || begin.iter().any(|&b| b < 0) {
                return Err(format!("begin {begin:?} does not fit x {in_dims:?}"));
            }
            let offset = begin
                .iter()
                .zip(&strides)
                .map(|(&b, s)| b as usize * s)
                .sum();
            let copy = StridedCopy::new(
                elem,
                &out_dims,
                (offset, &strides),
                (0, &row_major_strides(&out_dims)),
            );
            Ok(moves(vec![o.part(x, out, copy)?]))
        }
        Op::StridedSlice(_) => strided_slice(op, o, x, out, elem),
        Op::Transpose => {
            let perm = o.ints(1, "the permutation")?;
            let in_dims = o.dims(x);
            let strides = row_major_strides(in_dims);
            let out_dims = o.dims(out).to_vec();
            let src: Vec<usize> = perm
                .iter()
                .map(|&p| axis(p, in_dims.len()).map(|p| strides[p]))
                .collect::<Result<_, _>>()?;
            if src.len() != out_dims.len() {
                return Err(format!("permutation {perm:?} does not fit x {in_dims:?}"));
            }
            let copy = StridedCopy::new(
                elem,
                &out_dims,
                (0, &src),
                (0, &row_major_strides(&out_dims)),
            );
            Ok(moves(vec![o.part(x, out, copy)?]))
        }
        Op::Tile => {
            let multiples = o.ints(1, "the multiples")?;
            let in_dims = o.dims(x);
            let out_dims = o.dims(out);
            if multiples.len() != in_dims.len() || multiples.iter().any(|&m| m < 0) {
                return Err(format!("multiples {multiples:?} do not fit x {in_dims:?}"));
            }
            let src_strides = row_major_strides(in_dims);
            let dst_strides = row_major_strides(out_dims);
            let (mut dims, mut src, mut dst) = (vec![], vec![], vec![]);
            for k in 0..in_dims.len() {
                // Axis k of the output as (repeat, element) pairs: the repeat reads the same
                // source again (stride 0).
                dims.extend([multiples[k] as usize, in_dims[k]]);
                src.extend([0, src_strides[k]]);
                dst.extend([in_dims[k] * dst_strides[k], dst_strides[k]]);
            }
            let copy = StridedCopy::new(elem, &dims, (0, &src), (0, &dst));
            Ok(moves(vec![o.part(x, out, copy)?]))
        }
        Op::Pad { mode } => pad(*mode, o, x, out, elem),
        Op::Gather { batch_dims } => gather(*batch_dims, o, x, out, elem),
        Op::Fill => {
            let value = *o.inputs.get(1).ok_or("fill has no value")?;
            Ok(Kernel::Fill { value, out })
        }
        // A reserved list is zeros (every dtype's zero is all zero bytes).
        Op::ListReserve { dtype } => Ok(Kernel::Move {
            fills: vec![(out, vec![0; dtype.size_bytes()])],
            parts: vec![],
        }),
        Op::SetItem => set_item(o, x, out),
        other => Err(format!("{} is not a data-movement op", other.mnemonic())),
    }
}

/// Padding: constant mode fills the output then copies `x` into its interior; the other modes
/// (mirrors, edge, wrap) read through index tables of [`PadMode::source`].
fn pad(mode: PadMode, o: &Operands, x: BufId, out: BufId, elem: usize) -> Result<Kernel, String> {
    let pads = o.ints(1, "the paddings")?;
    let in_dims = o.dims(x).to_vec();
    if pads.len() != 2 * in_dims.len() || pads.iter().any(|&p| p < 0) {
        return Err(format!("paddings {pads:?} do not fit x {in_dims:?}"));
    }
    let before: Vec<usize> = (0..in_dims.len()).map(|k| pads[2 * k] as usize).collect();
    let out_dims = o.dims(out).to_vec();
    match mode {
        PadMode::Constant => {
            let value = match o.inputs.get(2) {
                None => vec![0u8; elem],
                Some(_) => {
                    let v = o
                        .consts
                        .get(2)
                        .copied()
                        .flatten()
                        .ok_or("the pad value is not a constant")?;
                    if v.dtype() != o.bufs[x].dtype || v.len() != 1 {
                        return Err(format!(
                            "the pad value {} is not one {}",
                            v.ty(),
                            o.bufs[x].dtype
                        ));
                    }
                    v.to_le_bytes()
                }
            };
            let padded = out_dims != in_dims;
            let mut parts = vec![];
            if in_dims.iter().product::<usize>() > 0 {
                let copy = StridedCopy::into_block(elem, &in_dims, &out_dims, &before);
                parts.push(o.part(x, out, copy)?);
            }
            Ok(Kernel::Move {
                fills: if padded { vec![(out, value)] } else { vec![] },
                parts,
            })
        }
        _ => {
            let maps: Vec<Vec<usize>> = (0..in_dims.len())
                .map(|k| {
                    let n = in_dims[k] as i64;
                    (0..out_dims[k] as i64)
                        .map(|j| {
                            let i = mode.source(j - before[k] as i64, n).unwrap_or(-1);
                            usize::try_from(i).unwrap_or(usize::MAX)
                        })
                        .collect()
                })
                .collect();
            let kernel = IndexedCopy::new(elem, &in_dims, &maps).ok_or_else(|| {
                format!(
                    "paddings {pads:?} reach past what {} mode can fill from x {in_dims:?}",
                    mode.name()
                )
            })?;
            Ok(Kernel::Indexed { kernel, x, out })
        }
    }
}

/// A strided slice: its layout read off the interpreter's answer on a tensor of element
/// indices (so the masks' semantics live only in `ir`), then a strided copy when every step
/// is positive, else a copy through offset tables.
fn strided_slice(
    op: &Op,
    o: &Operands,
    x: BufId,
    out: BufId,
    elem: usize,
) -> Result<Kernel, String> {
    let in_dims = o.dims(x).to_vec();
    let n: usize = in_dims.iter().product();
    let out_dims = o.dims(out).to_vec();
    let out_len: usize = out_dims.iter().product();
    if out_len == 0 {
        return Ok(Kernel::Move {
            fills: vec![],
            parts: vec![],
        });
    }
    if n > MAX_PROBE_ELEMENTS {
        return Err(format!(
            "x has {n} elements, more than a strided slice is planned for"
        ));
    }
    let mut args = vec![Tensor::from_vec(
        &in_dims,
        (0..n as i64).collect::<Vec<i64>>(),
    )];
    for i in 1..o.inputs.len() {
        let c = o
            .consts
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {i} of the strided slice is not a constant"))?;
        args.push(c.clone());
    }
    let refs: Vec<&Tensor> = args.iter().collect();
    let probe = op.eval(&refs)?.remove(0);
    if probe.shape() != out_dims.as_slice() {
        return Err("internal error: the slice's shape differs from the planned one".into());
    }
    let at = probe.to_i64_vec()?;
    let dst_strides = row_major_strides(&out_dims);
    let base = at[0] as isize;
    let steps: Vec<isize> = out_dims
        .iter()
        .zip(&dst_strides)
        .map(|(&d, &s)| if d > 1 { at[s] as isize - base } else { 0 })
        .collect();
    if steps.iter().all(|&s| s >= 0) {
        let src: Vec<usize> = steps.iter().map(|&s| s as usize).collect();
        let copy = StridedCopy::new(elem, &out_dims, (base as usize, &src), (0, &dst_strides));
        return Ok(Kernel::Move {
            fills: vec![],
            parts: vec![o.part(x, out, copy)?],
        });
    }
    let tables = out_dims
        .iter()
        .zip(&steps)
        .map(|(&d, &s)| (0..d as isize).map(|i| i * s).collect())
        .collect();
    let kernel = IndexedCopy::from_offsets(elem, base, tables, n)
        .ok_or("internal error: the slice reads outside x")?;
    Ok(Kernel::Indexed { kernel, x, out })
}

/// Gather as `[batch, outer, limit, inner]` rows picked by `[batch, count]` indices.
fn gather(
    batch_dims: i64,
    o: &Operands,
    x: BufId,
    out: BufId,
    elem: usize,
) -> Result<Kernel, String> {
    let indices = *o.inputs.get(1).ok_or("gather has no indices")?;
    let params = o.dims(x).to_vec();
    let idx_dims = o.dims(indices).to_vec();
    let ax = axis(o.ints(2, "the axis")?[0], params.len())?;
    let bd = if batch_dims < 0 {
        batch_dims + idx_dims.len() as i64
    } else {
        batch_dims
    };
    let bd = usize::try_from(bd)
        .ok()
        .filter(|&b| b <= ax && b <= idx_dims.len())
        .ok_or_else(|| format!("batch_dims {batch_dims} does not fit axis {ax}"))?;
    let index_dtype = o.bufs[indices].dtype;
    if !index_dtype.is_int() || index_dtype == DType::Bool {
        return Err(format!("indices must be integers, got {index_dtype}"));
    }
    let prod = |d: &[usize]| d.iter().product::<usize>();
    let kernel = Gather {
        elem,
        index_dtype,
        batch: prod(&params[..bd]),
        outer: prod(&params[bd..ax]),
        limit: params[ax],
        inner: prod(&params[ax + 1..]),
        count: prod(&idx_dims[bd..]),
    };
    if kernel.rows() * kernel.inner != o.bufs[out].len()
        || prod(&idx_dims) != kernel.batch * kernel.count
    {
        return Err("internal error: gather's output does not match its operands".into());
    }
    Ok(Kernel::Gather {
        kernel,
        params: x,
        indices,
        out,
    })
}

/// A row write: `x` (`[n, element...]`) with row `index` replaced by `item` (of the row's
/// shape); the index is checked when it runs.
fn set_item(o: &Operands, x: BufId, out: BufId) -> Result<Kernel, String> {
    let (&[_, index, item], [_]) = (o.inputs, o.outputs) else {
        return Err("set_item takes a list, an index and an item".into());
    };
    let dims = o.dims(x);
    let (list, row) = (&o.bufs[x], &o.bufs[item]);
    if dims.is_empty()
        || dims[1..] != *o.dims(item)
        || o.dims(out) != dims
        || o.bufs[index].len() != 1
        || row.dtype != list.dtype
        || o.bufs[out].dtype != list.dtype
    {
        return Err(format!(
            "set_item writes an item of a row's type into a list, got {}{:?}, an index of {:?} \
             and {}{:?}",
            list.dtype,
            dims,
            o.dims(index),
            row.dtype,
            o.dims(item)
        ));
    }
    Ok(Kernel::SetItem {
        kernel: crate::kernels::set_item::SetItem {
            rows: dims[0],
            row_bytes: row.bytes(),
            index_dtype: o.bufs[index].dtype,
        },
        x,
        index,
        item,
        out,
    })
}
