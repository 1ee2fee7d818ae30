//! Gather (embedding lookup): rows of `params` picked by run-time indices, copied as bytes.
//!
//! `params` is seen as `[batch, outer, limit, inner]` and the indices as `[batch, count]`; the
//! output is `[batch, outer, count, inner]`, one `inner`-element row per `(batch, outer, index)`.
//! Every index is checked against `limit` before its row is read: an index out of range is an
//! error (naming it), never a read outside `params`.

use lathe_ir::DType;
use std::ops::Range;

/// A gather with its geometry fixed at compile time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gather {
    /// Bytes per element of `params` and the output.
    pub elem: usize,
    /// The dtype of the indices (an integer type).
    pub index_dtype: DType,
    pub batch: usize,
    pub outer: usize,
    /// The size of the gathered axis: indices must be in `[0, limit)`.
    pub limit: usize,
    pub inner: usize,
    /// Indices per batch.
    pub count: usize,
}

impl Gather {
    /// Rows of output (`batch · outer · count`), the unit of the thread split.
    pub fn rows(&self) -> usize {
        self.batch * self.outer * self.count
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.inner * self.elem
    }

    /// Copies output rows `rows`; an index out of range is an error naming it.
    ///
    /// # Safety
    /// `params` is valid for reads of `batch·outer·limit·inner` elements, `indices` for reads of
    /// `batch·count` indices of `index_dtype`, `out` for writes of `rows()·inner` elements, the
    /// output overlaps neither input, and no other thread writes these rows of it.
    pub unsafe fn run_rows(
        &self,
        params: *const u8,
        indices: *const u8,
        out: *mut u8,
        rows: Range<usize>,
    ) -> Result<(), String> {
        let row = self.row_bytes();
        for r in rows {
            let n = r % self.count;
            let bo = r / self.count;
            let b = bo / self.outer;
            let at = b * self.count + n;
            let index = self.index(indices, at);
            if index < 0 || index as u64 >= self.limit as u64 {
                return Err(format!(
                    "index {index} (element {at} of the indices) is not in [0, {})",
                    self.limit
                ));
            }
            let src = (bo * self.limit + index as usize) * row;
            // SAFETY: the index is in range, so the row lies inside `params`; row `r` of the
            // output is this task's (caller's contract).
            std::ptr::copy_nonoverlapping(params.add(src), out.add(r * row), row);
        }
        Ok(())
    }

    /// Index number `at`, widened to i64.
    ///
    /// # Safety
    /// `indices` holds more than `at` indices of `index_dtype`.
    unsafe fn index(&self, indices: *const u8, at: usize) -> i64 {
        read_index(self.index_dtype, indices, at)
    }
}

/// Index number `at` of an array of `dtype` indices, widened to i64 (beyond `i64::MAX`, and
/// any non-integer dtype, read as an index out of every range).
///
/// # Safety
/// `indices` holds more than `at` indices of `dtype`.
pub unsafe fn read_index(dtype: DType, indices: *const u8, at: usize) -> i64 {
    match dtype {
        DType::I32 => (indices as *const i32).add(at).read_unaligned() as i64,
        DType::I64 => (indices as *const i64).add(at).read_unaligned(),
        DType::U8 => *indices.add(at) as i64,
        DType::I8 => *(indices as *const i8).add(at) as i64,
        DType::I16 => (indices as *const i16).add(at).read_unaligned() as i64,
        DType::U16 => (indices as *const u16).add(at).read_unaligned() as i64,
        DType::U32 => (indices as *const u32).add(at).read_unaligned() as i64,
        DType::U64 => (indices as *const u64)
            .add(at)
            .read_unaligned()
            .min(i64::MAX as u64) as i64,
        _ => -1,
    }
}
