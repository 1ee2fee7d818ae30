//! Strided copies of elements of any dtype: the one engine behind concat, pack, unpack,
//! slice, strided slice, transpose, tile and padding.
//!
//! A copy is `dims` elements of `elem` bytes, element `i` read at `src_offset + Σ i_k·src[k]`
//! and written at `dst_offset + Σ i_k·dst[k]` (offsets and strides in elements). Building one
//! normalizes it: unit axes are dropped, axes are ordered by destination stride (a copy may run
//! in any order, since it writes each destination element once), and axes that are contiguous
//! in both layouts are merged, so a contiguous block becomes one `memcpy` and a concat along
//! channels becomes one `memcpy` per row. When the innermost destination axis is strided in the
//! source (a transpose), the copy runs in square tiles so both sides stay in cache.

use std::ops::Range;

/// Elements of a tile side in the blocked transpose.
const TILE: usize = 16;

/// One strided copy (see the module notes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StridedCopy {
    /// Bytes per element.
    pub elem: usize,
    /// Normalized axes (outer first); the last is the inner loop.
    dims: Vec<usize>,
    src: Vec<usize>,
    dst: Vec<usize>,
    src_offset: usize,
    dst_offset: usize,
    /// The outer axis read contiguously from the source, when the inner axis is not: the copy
    /// then runs in tiles over (that axis, the inner axis).
    tile_axis: Option<usize>,
}

impl StridedCopy {
    /// A copy of `dims` elements of `elem` bytes between two strided layouts.
    pub fn new(
        elem: usize,
        dims: &[usize],
        (src_offset, src): (usize, &[usize]),
        (dst_offset, dst): (usize, &[usize]),
    ) -> StridedCopy {
        assert!(src.len() == dims.len() && dst.len() == dims.len());
        let empty = dims.contains(&0);
        let mut axes: Vec<(usize, usize, usize)> = dims
            .iter()
            .zip(src.iter().zip(dst))
            .filter(|(&d, _)| d != 1)
            .map(|(&d, (&s, &t))| (d, s, t))
            .collect();
        if empty {
            axes = vec![(0, 1, 1)];
        }
        // Outermost first by destination stride; ties keep their order.
        axes.sort_by_key(|&(_, _, t)| std::cmp::Reverse(t));
        let mut merged: Vec<(usize, usize, usize)> = Vec::with_capacity(axes.len());
        for (d, s, t) in axes {
            match merged.last_mut() {
                Some(last) if last.1 == d * s && last.2 == d * t => {
                    *last = (last.0 * d, s, t);
                }
                _ => merged.push((d, s, t)),
            }
        }
        if merged.is_empty() {
            merged.push((1, 1, 1));
        }
        let inner = *merged.last().expect("one axis at least");
        // Tiles only for the typed paths (1, 2, 4 or 8-byte elements).
        let tile_axis = if matches!(elem, 1 | 2 | 4 | 8) && inner.2 == 1 && inner.1 != 1 {
            merged[..merged.len() - 1]
                .iter()
                .position(|&(d, s, _)| s == 1 && d > 1)
        } else {
            None
        };
        StridedCopy {
            elem,
            dims: merged.iter().map(|a| a.0).collect(),
            src: merged.iter().map(|a| a.1).collect(),
            dst: merged.iter().map(|a| a.2).collect(),
            src_offset,
            dst_offset,
            tile_axis,
        }
    }

    /// A copy of a dense row-major block of `dims` into the dense row-major array of `out_dims`,
    /// starting at `at` (an index per axis): a concat member, a pad's interior.
    pub fn into_block(elem: usize, dims: &[usize], out_dims: &[usize], at: &[usize]) -> Self {
        let dst = row_major_strides(out_dims);
        let dst_offset = at.iter().zip(&dst).map(|(i, s)| i * s).sum();
        StridedCopy::new(
            elem,
            dims,
            (0, &row_major_strides(dims)),
            (dst_offset, &dst),
        )
    }

    /// Elements copied.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when nothing is copied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the highest element index read, and written (0 when empty): what the source
    /// and destination buffers must hold.
    pub fn extents(&self) -> (usize, usize) {
        if self.is_empty() {
            return (0, 0);
        }
        let far = |strides: &[usize]| -> usize {
            self.dims
                .iter()
                .zip(strides)
                .map(|(d, s)| (d - 1) * s)
                .sum::<usize>()
                + 1
        };
        (
            self.src_offset + far(&self.src),
            self.dst_offset + far(&self.dst),
        )
    }

    /// True when the whole copy is one contiguous run of bytes.
    pub fn is_contiguous(&self) -> bool {
        self.dims.len() == 1 && self.src[0] == 1 && self.dst[0] == 1
    }

    /// Where in the destination the copy lands (in elements), when it is one contiguous run
    /// read from the start of a dense source (a member of a concat whose outer size is 1).
    pub fn contiguous_offset(&self) -> Option<usize> {
        (self.is_contiguous() && self.src_offset == 0).then_some(self.dst_offset)
    }

    /// The units a copy splits into across threads (outer iterations).
    pub fn rows(&self) -> usize {
        match self.tile_axis {
            // Outer axes, with the tiled axis counted in tiles.
            Some(p) => self.dims[..self.dims.len() - 1]
                .iter()
                .enumerate()
                .map(|(k, &d)| if k == p { d.div_ceil(TILE) } else { d })
                .product(),
            None => self.dims[..self.dims.len() - 1].iter().product(),
        }
    }

    /// Copies the outer iterations `rows` (of [`StridedCopy::rows`]).
    ///
    /// # Safety
    /// `src` is valid for reads of `extents().0` elements and `dst` for writes of `extents().1`
    /// elements of `elem` bytes, the two do not overlap, and no other thread writes the
    /// destination elements of these rows (distinct rows write distinct elements) or any
    /// source element while this runs.
    pub unsafe fn run_rows(&self, src: *const u8, dst: *mut u8, rows: Range<usize>) {
        if self.is_empty() {
            return;
        }
        match self.elem {
            1 => self.typed::<u8>(src, dst, rows),
            2 => self.typed::<u16>(src, dst, rows),
            4 => self.typed::<u32>(src, dst, rows),
            8 => self.typed::<u64>(src, dst, rows),
            _ => self.bytes(src, dst, rows),
        }
    }

    /// [`StridedCopy::run_rows`] for elements of `T`'s size.
    ///
    /// # Safety
    /// As for `run_rows`, with `size_of::<T>() == self.elem`.
    unsafe fn typed<T: Copy>(&self, src: *const u8, dst: *mut u8, rows: Range<usize>) {
        let (src, dst) = (src as *const T, dst as *mut T);
        let n = self.dims.len();
        let (inner, si, di) = (self.dims[n - 1], self.src[n - 1], self.dst[n - 1]);
        let outer = &self.dims[..n - 1];
        if let Some(p) = self.tile_axis {
            // Tiles over (axis p, the inner axis): read along p (contiguous in the source),
            // write along the inner axis (contiguous in the destination).
            let tiled: Vec<usize> = outer
                .iter()
                .enumerate()
                .map(|(k, &d)| if k == p { d.div_ceil(TILE) } else { d })
                .collect();
            let mut idx = vec![0usize; outer.len()];
            for r in rows {
                unflatten(r, &tiled, &mut idx);
                let p0 = idx[p] * TILE;
                let p_end = (p0 + TILE).min(outer[p]);
                idx[p] = 0;
                let (mut so, mut d_o) = (self.src_offset, self.dst_offset);
                for (k, &i) in idx.iter().enumerate() {
                    so += i * self.src[k];
                    d_o += i * self.dst[k];
                }
                let mut j0 = 0;
                while j0 < inner {
                    let j_end = (j0 + TILE).min(inner);
                    for j in j0..j_end {
                        for i in p0..p_end {
                            let s = so + i * self.src[p] + j * si;
                            let d = d_o + i * self.dst[p] + j * di;
                            // SAFETY: within the extents the caller guarantees.
                            dst.add(d).write_unaligned(src.add(s).read_unaligned());
                        }
                    }
                    j0 = j_end;
                }
            }
            return;
        }
        for r in rows {
            let (so, d_o) = self.row_start(r, outer);
            if si == 1 && di == 1 {
                // SAFETY: a run of `inner` elements inside both extents; the buffers are
                // distinct (caller's contract).
                std::ptr::copy_nonoverlapping(src.add(so), dst.add(d_o), inner);
            } else {
                for j in 0..inner {
                    // SAFETY: within the extents the caller guarantees.
                    dst.add(d_o + j * di)
                        .write_unaligned(src.add(so + j * si).read_unaligned());
                }
            }
        }
    }

    /// The source and destination element offsets of outer row `r` (row-major over `outer`).
    fn row_start(&self, mut r: usize, outer: &[usize]) -> (usize, usize) {
        let (mut so, mut d_o) = (self.src_offset, self.dst_offset);
        for k in (0..outer.len()).rev() {
            let n = outer[k].max(1);
            let i = r % n;
            r /= n;
            so += i * self.src[k];
            d_o += i * self.dst[k];
        }
        (so, d_o)
    }

    /// [`StridedCopy::run_rows`] for elements of any size, byte by byte.
    ///
    /// # Safety
    /// As for `run_rows`.
    unsafe fn bytes(&self, src: *const u8, dst: *mut u8, rows: Range<usize>) {
        let n = self.dims.len();
        let outer = &self.dims[..n - 1];
        let e = self.elem;
        for r in rows {
            let (so, d_o) = self.row_start(r, outer);
            for j in 0..self.dims[n - 1] {
                // SAFETY: within the extents the caller guarantees.
                std::ptr::copy_nonoverlapping(
                    src.add((so + j * self.src[n - 1]) * e),
                    dst.add((d_o + j * self.dst[n - 1]) * e),
                    e,
                );
            }
        }
    }
}

/// A copy where each output axis adds its own source offset: output element `[o0, o1, ..]`
/// is source element `base + Σ tables[k][o_k]`. Reflect and symmetric padding (mirrored index
/// tables) and slices with negative steps are this.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedCopy {
    pub elem: usize,
    out_dims: Vec<usize>,
    base: isize,
    /// Per output axis, the source element offset (signed) per index.
    tables: Vec<Vec<isize>>,
}

impl IndexedCopy {
    /// A copy from a dense row-major input of `in_dims` through `maps` (one table of input
    /// indices per axis, its length the output size); `None` when an index is out of range.
    pub fn new(elem: usize, in_dims: &[usize], maps: &[Vec<usize>]) -> Option<IndexedCopy> {
        if maps.len() != in_dims.len()
            || maps
                .iter()
                .zip(in_dims)
                .any(|(m, &n)| m.iter().any(|&i| i >= n))
        {
            return None;
        }
        let strides = row_major_strides(in_dims);
        let tables = maps
            .iter()
            .zip(&strides)
            .map(|(m, &s)| m.iter().map(|&i| (i * s) as isize).collect())
            .collect();
        IndexedCopy::from_offsets(elem, 0, tables, in_dims.iter().product())
    }

    /// A copy from `base` plus a signed offset table per output axis, reading a source of
    /// `src_len` elements; `None` when some element would be read outside it.
    pub fn from_offsets(
        elem: usize,
        base: isize,
        tables: Vec<Vec<isize>>,
        src_len: usize,
    ) -> Option<IndexedCopy> {
        let out_dims: Vec<usize> = tables.iter().map(Vec::len).collect();
        if !out_dims.contains(&0) {
            let lo = base
                + tables
                    .iter()
                    .map(|t| t.iter().min().copied().unwrap_or(0))
                    .sum::<isize>();
            let hi = base
                + tables
                    .iter()
                    .map(|t| t.iter().max().copied().unwrap_or(0))
                    .sum::<isize>();
            if lo < 0 || hi >= src_len as isize {
                return None;
            }
        }
        Some(IndexedCopy {
            elem,
            out_dims,
            base,
            tables,
        })
    }

    /// Elements written.
    pub fn len(&self) -> usize {
        self.out_dims.iter().product()
    }

    /// True when nothing is written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows of the output (every axis but the last), the unit of the thread split.
    pub fn rows(&self) -> usize {
        match self.out_dims.split_last() {
            Some((_, outer)) => outer.iter().product(),
            None => 1,
        }
    }

    /// Copies output rows `rows`.
    ///
    /// # Safety
    /// `src` is valid for reads of the `src_len` elements given to the constructor (which
    /// checked every offset against it), `dst` for writes of the whole output (dense
    /// row-major), they do not overlap, and no other thread writes these output rows.
    pub unsafe fn run_rows(&self, src: *const u8, dst: *mut u8, rows: Range<usize>) {
        if self.is_empty() {
            return;
        }
        let e = self.elem;
        let Some((&inner, outer)) = self.out_dims.split_last() else {
            // A scalar: one element.
            std::ptr::copy_nonoverlapping(src.offset(self.base * e as isize), dst, e);
            return;
        };
        let last = &self.tables[self.tables.len() - 1];
        let mut idx = vec![0usize; outer.len()];
        for r in rows {
            unflatten(r, outer, &mut idx);
            let row_base: isize = self.base
                + idx
                    .iter()
                    .zip(&self.tables)
                    .map(|(&i, t)| t[i])
                    .sum::<isize>();
            for (j, &o) in last.iter().enumerate() {
                // SAFETY: every source offset is inside the source (checked by the
                // constructor); the destination element is inside this row of the output.
                std::ptr::copy_nonoverlapping(
                    src.offset((row_base + o) * e as isize),
                    dst.add((r * inner + j) * e),
                    e,
                );
            }
        }
    }
}

/// Row-major strides (in elements) of `dims`.
pub fn row_major_strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// The multi-index of flat index `r` over `dims` (row-major), into `idx`.
fn unflatten(mut r: usize, dims: &[usize], idx: &mut [usize]) {
    for k in (0..dims.len()).rev() {
        idx[k] = r % dims[k].max(1);
        r /= dims[k].max(1);
    }
}

/// Fills `count` elements of `value.len()` bytes each at `dst` with `value`.
///
/// # Safety
/// `dst` is valid for writes of `count * value.len()` bytes that no other thread touches.
pub unsafe fn fill(dst: *mut u8, value: &[u8], count: usize) {
    let e = value.len();
    if value.iter().all(|&b| b == 0) {
        std::ptr::write_bytes(dst, 0, count * e);
        return;
    }
    for i in 0..count {
        std::ptr::copy_nonoverlapping(value.as_ptr(), dst.add(i * e), e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &StridedCopy, src: &[u32], dst: &mut [u32]) {
        let (s, d) = c.extents();
        assert!(s <= src.len() && d <= dst.len());
        // SAFETY: extents checked above; distinct vectors.
        unsafe {
            c.run_rows(
                src.as_ptr() as *const u8,
                dst.as_mut_ptr() as *mut u8,
                0..c.rows(),
            )
        };
    }

    #[test]
    fn contiguous_block_is_one_run() {
        let c = StridedCopy::into_block(4, &[1, 3, 4], &[2, 3, 4], &[1, 0, 0]);
        assert!(c.is_contiguous());
        let src: Vec<u32> = (0..12).collect();
        let mut dst = vec![0; 24];
        run(&c, &src, &mut dst);
        assert_eq!(&dst[12..], &src[..]);
        assert!(dst[..12].iter().all(|&x| x == 0));
    }

    #[test]
    fn transpose_is_tiled_and_right() {
        // [37, 19] -> its transpose [19, 37].
        let (a, b) = (37, 19);
        let c = StridedCopy::new(4, &[b, a], (0, &[1, b]), (0, &[a, 1]));
        assert!(c.tile_axis.is_some());
        let src: Vec<u32> = (0..(a * b) as u32).collect();
        let mut dst = vec![0; a * b];
        run(&c, &src, &mut dst);
        for i in 0..b {
            for j in 0..a {
                assert_eq!(dst[i * a + j], src[j * b + i]);
            }
        }
    }

    #[test]
    fn odd_element_sizes_copy_bytes() {
        let c = StridedCopy::new(3, &[2, 2], (0, &[1, 2]), (0, &[2, 1]));
        let src: Vec<u8> = (0..12).collect();
        let mut dst = vec![0u8; 12];
        // SAFETY: 4 elements of 3 bytes on both sides.
        unsafe { c.run_rows(src.as_ptr(), dst.as_mut_ptr(), 0..c.rows()) };
        assert_eq!(dst, [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]);
    }
}
