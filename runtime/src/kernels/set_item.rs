//! `set_item`: a list (`[n, element...]`, any dtype) with row `index` replaced by an item, the
//! index read at run time and checked against `n` before anything is written.
//!
//! When the output is the list's own buffer (the list dies at this step, or a loop body hands
//! the carried list in and out as one buffer) only the row is written; otherwise the list is
//! copied first.

use super::gather::read_index;
use lathe_ir::DType;

/// A row write with its geometry fixed at compile time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetItem {
    /// Rows of the list.
    pub rows: usize,
    /// Bytes of one row (of the item).
    pub row_bytes: usize,
    /// The dtype of the index (i32 or i64; any integer type is read).
    pub index_dtype: DType,
}

impl SetItem {
    /// Writes `item` into row `*index` of `out`, after copying `x` into `out` unless they are
    /// the same buffer. An index out of range is an error naming it, and writes nothing.
    ///
    /// # Safety
    /// `x` and `out` are valid for `rows · row_bytes` bytes (reads and writes), `index` for one
    /// index of `index_dtype`, `item` for `row_bytes` bytes; `x` and `out` are the same pointer
    /// or do not overlap, and nothing else touches `out` during the call (`item` may lie in
    /// `x`: the row write is a `memmove`).
    pub unsafe fn run(
        &self,
        x: *const u8,
        index: *const u8,
        item: *const u8,
        out: *mut u8,
    ) -> Result<usize, String> {
        let i = read_index(self.index_dtype, index, 0);
        let row = lathe_ir::ops::control_flow::row_index(i, self.rows)?;
        if !std::ptr::eq(x, out) {
            std::ptr::copy_nonoverlapping(x, out, self.rows * self.row_bytes);
        }
        std::ptr::copy(item, out.add(row * self.row_bytes), self.row_bytes);
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_row_in_place_or_into_a_copy_and_checks_the_index() {
        let k = SetItem {
            rows: 3,
            row_bytes: 8,
            index_dtype: DType::I64,
        };
        let mut list = [0.0f32; 6];
        let item = [5.0f32, 6.0];
        let p = list.as_mut_ptr() as *mut u8;
        // SAFETY: buffers of the kernel's sizes; in place (`x == out`).
        let r = unsafe { k.run(p, (&1i64 as *const i64).cast(), item.as_ptr().cast(), p) };
        assert_eq!(r, Ok(1));
        assert_eq!(list, [0.0, 0.0, 5.0, 6.0, 0.0, 0.0]);
        let mut copy = [9.0f32; 6];
        // SAFETY: as above, into a distinct buffer.
        let r = unsafe {
            k.run(
                list.as_ptr().cast(),
                (&2i64 as *const i64).cast(),
                item.as_ptr().cast(),
                copy.as_mut_ptr().cast(),
            )
        };
        assert_eq!(r, Ok(2));
        assert_eq!(copy, [0.0, 0.0, 5.0, 6.0, 5.0, 6.0]);
        // SAFETY: as above; the index is refused before anything is read or written.
        let e = unsafe { k.run(p, (&-1i64 as *const i64).cast(), item.as_ptr().cast(), p) };
        assert_eq!(e, Err("index -1 is out of range for 3 rows".to_string()));
    }
}
