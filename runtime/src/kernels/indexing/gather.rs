//! `gather_elements` (one element per index, along one axis) and `gather_nd` (one contiguous
//! slice per index tuple), as byte copies: every dtype.

use super::{advance, out_of_range, unravel};
use crate::kernels::copy::row_major_strides;
use crate::kernels::gather::read_index;
use lathe_ir::ops::shape::resolve_index;
use lathe_ir::DType;

/// `gather_elements` of `x` (`x_dims`) at indices of shape `idx_dims` along `axis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatherElements {
    /// Bytes per element.
    pub elem: usize,
    pub index_dtype: DType,
    pub x_dims: Vec<usize>,
    /// Also the output's dims; no longer than `x_dims` on every axis but `axis`.
    pub idx_dims: Vec<usize>,
    pub axis: usize,
}

impl GatherElements {
    /// # Safety
    /// `x` holds `x_dims` elements, `idx` as many indices of `index_dtype` as `idx_dims` says
    /// and `out` as many elements; `out` overlaps neither.
    pub unsafe fn run(&self, x: *const u8, idx: *const u8, out: *mut u8) -> Result<(), String> {
        let strides = row_major_strides(&self.x_dims);
        let n = self.x_dims[self.axis];
        let count: usize = self.idx_dims.iter().product();
        let mut at = vec![0usize; self.idx_dims.len()];
        for p in 0..count {
            let v = read_index(self.index_dtype, idx, p);
            let i = resolve_index(v, n).ok_or_else(|| out_of_range(&at, v, n, self.axis))?;
            let mut src = 0;
            for (d, (&c, &s)) in at.iter().zip(&strides).enumerate() {
                src += if d == self.axis { i } else { c } * s;
            }
            // SAFETY: `i < n` and every other coordinate is below the index dim, no larger than
            // x's (checked when lowered), so `src` is an element of `x`; `p` is one of `out`.
            std::ptr::copy_nonoverlapping(
                x.add(src * self.elem),
                out.add(p * self.elem),
                self.elem,
            );
            advance(&mut at, &self.idx_dims);
        }
        Ok(())
    }
}

/// `gather_nd`: `params` seen as `[batch, dims..., slice]`, indices as `[batch, tuples, m]`
/// (`m = dims.len()`), the output as `[batch, tuples, slice]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatherNd {
    pub elem: usize,
    pub index_dtype: DType,
    /// The indices' dims (for errors) and the leading ones shared with `params`.
    pub idx_dims: Vec<usize>,
    pub batch_dims: usize,
    pub batch: usize,
    /// Index tuples per batch.
    pub tuples: usize,
    /// The sizes of the axes the tuples address.
    pub dims: Vec<usize>,
    /// Elements of one gathered slice.
    pub slice: usize,
}

impl GatherNd {
    /// The kernel for `params` and indices of these dims; `None` when they do not fit
    /// (`batch_dims` below both ranks, tuples of 1 to `rank - batch_dims` entries).
    pub fn new(
        elem: usize,
        index_dtype: DType,
        params: &[usize],
        idx_dims: &[usize],
        batch_dims: usize,
    ) -> Option<GatherNd> {
        let (&m, lead) = idx_dims.split_last()?;
        if batch_dims >= params.len().min(idx_dims.len()) || m == 0 || m > params.len() - batch_dims
        {
            return None;
        }
        let prod = |d: &[usize]| d.iter().product::<usize>();
        Some(GatherNd {
            elem,
            index_dtype,
            idx_dims: idx_dims.to_vec(),
            batch_dims,
            batch: prod(&params[..batch_dims]),
            tuples: prod(&lead[batch_dims..]),
            dims: params[batch_dims..batch_dims + m].to_vec(),
            slice: prod(&params[batch_dims + m..]),
        })
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        self.batch * self.tuples * self.slice
    }

    /// # Safety
    /// `params` holds `batch · prod(dims) · slice` elements, `idx` `batch · tuples · m` indices
    /// of `index_dtype`, `out` `batch · tuples · slice` elements, not overlapping them.
    pub unsafe fn run(
        &self,
        params: *const u8,
        idx: *const u8,
        out: *mut u8,
    ) -> Result<(), String> {
        let m = self.dims.len();
        let mut strides = row_major_strides(&self.dims);
        strides.iter_mut().for_each(|s| *s *= self.slice);
        let batch_stride = self.dims.iter().product::<usize>() * self.slice;
        let row = self.slice * self.elem;
        for tuple in 0..self.batch * self.tuples {
            let mut src = tuple / self.tuples * batch_stride;
            for (j, (&n, &s)) in self.dims.iter().zip(&strides).enumerate() {
                let at = tuple * m + j;
                let v = read_index(self.index_dtype, idx, at);
                let i = resolve_index(v, n).ok_or_else(|| {
                    let at = unravel(at, &self.idx_dims);
                    out_of_range(&at, v, n, self.batch_dims + j)
                })?;
                src += i * s;
            }
            // SAFETY: every coordinate is in range, so the slice lies inside `params`;
            // `tuple` is one of the output's rows.
            std::ptr::copy_nonoverlapping(params.add(src * self.elem), out.add(tuple * row), row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, want};
    use super::super::IndexKernel;
    use super::*;
    use lathe_ir::{Op, Tensor};

    #[test]
    fn gather_elements_matches_the_interpreter() {
        let x = Tensor::from_vec(&[3, 3], (0..9).map(|v| v as f32).collect());
        let idx = Tensor::from_vec(&[2, 3], vec![-1i64, 0, 2, 1, -2, 0]);
        for (axis, dtype) in [(0, DType::F32), (1, DType::I8), (0, DType::Bool)] {
            let x = x.cast(dtype);
            let op = Op::GatherElements { axis };
            let k = IndexKernel::GatherElements(GatherElements {
                elem: dtype.size_bytes(),
                index_dtype: DType::I64,
                x_dims: vec![3, 3],
                idx_dims: vec![2, 3],
                axis: axis as usize,
            });
            let got = run(&k, &[&x, &idx], &[6 * dtype.size_bytes()]);
            assert_eq!(got, want(&op, &[&x, &idx]), "axis {axis} {dtype}");
        }
        let bad = Tensor::from_vec(&[2, 3], vec![0i32, 0, 0, 0, 3, 0]);
        let k = IndexKernel::GatherElements(GatherElements {
            elem: 4,
            index_dtype: DType::I32,
            x_dims: vec![3, 3],
            idx_dims: vec![2, 3],
            axis: 0,
        });
        let e = run(&k, &[&x, &bad], &[24]).unwrap_err();
        assert_eq!(e, "indices[1,1] = 3 is not in [-3, 3) (axis 0)");
    }

    #[test]
    fn gather_nd_matches_the_interpreter() {
        // params [2, 2, 3] with batch_dims 1 and tuples of one index: rows of each batch.
        let x = Tensor::from_vec(&[2, 2, 3], (0..12).map(|v| v as f32).collect());
        let idx = Tensor::from_vec(&[2, 2, 1], vec![1i64, -2, 0, 1]);
        let k = GatherNd::new(4, DType::I64, &[2, 2, 3], &[2, 2, 1], 1).unwrap();
        assert_eq!(k.out_len(), 12);
        let k = IndexKernel::GatherNd(k);
        let op = Op::GatherNd { batch_dims: 1 };
        assert_eq!(run(&k, &[&x, &idx], &[48]), want(&op, &[&x, &idx]));
        // No batch, tuples of two: rows of three.
        let idx = Tensor::from_vec(&[3, 2], vec![1i32, 1, 0, -1, 1, 0]);
        let x = x.cast(DType::U16);
        let k =
            IndexKernel::GatherNd(GatherNd::new(2, DType::I32, &[2, 2, 3], &[3, 2], 0).unwrap());
        let op = Op::GatherNd { batch_dims: 0 };
        assert_eq!(run(&k, &[&x, &idx], &[18]), want(&op, &[&x, &idx]));
        let bad = Tensor::from_vec(&[3, 2], vec![0i32, 0, 1, -3, 0, 0]);
        let e = run(&k, &[&x, &bad], &[18]).unwrap_err();
        assert_eq!(e, "indices[1,1] = -3 is not in [-2, 2) (axis 1)");
        assert_eq!(GatherNd::new(4, DType::I32, &[2, 2], &[2, 3], 0), None);
        assert_eq!(GatherNd::new(4, DType::I32, &[2, 2], &[2, 1], 2), None);
    }
}
