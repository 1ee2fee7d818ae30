//! Single-precision GEMM: `C = A·B` or `C += A·B`, backed by the [`gemm`] crate.
//!
//! The backend was chosen by measurement (`benches/benches/gemm.rs`, results in
//! `benches/README.md`): the `gemm` crate against `matrixmultiply`, square and model-shaped
//! problems, one and two threads.
//!
//! # Contract
//!
//! Matrices are views over slices with element strides `(row, col)`: element `(i, j)` of a
//! view is `data[i * row + j * col]`. A row-major `r × c` matrix has strides `(c, 1)`; its
//! transpose is the same slice with strides `(1, c)`. So transposes cost nothing: swap the
//! strides. Strides are non-negative; zero strides (broadcast) are allowed for the inputs but
//! not for `C`, whose elements must not alias each other.
//!
//! Every slice must hold every element its view can address (checked, never assumed: a short
//! slice is an error, not undefined behaviour). Empty problems (`m`, `n` or `k` zero) are
//! fine: with `k == 0` and `accumulate == false`, `C` is set to zero.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

/// A read-only matrix view: `rows × cols` elements of `data` with strides `(row, col)`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    /// Element strides `(row, col)`.
    pub strides: (usize, usize),
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            strides: (cols, 1),
        }
    }

    /// The transposed view of the same data (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            strides: (self.strides.1, self.strides.0),
        }
    }
}

/// A writable matrix view: `rows × cols` elements from a base pointer with strides
/// `(row, col)`.
///
/// It holds a pointer, not a `&mut [f32]`, so that tasks of one product can each write their
/// own rows of a shared output: their views' ranges may overlap (a view spans from its first
/// to its last element, other tasks' rows in between), but the elements they address do not.
/// A view only ever touches the elements it addresses.
#[derive(Debug)]
pub struct MatMut<'a> {
    ptr: *mut f32,
    /// Elements from `ptr` the view may address (checked against the view's extent).
    len: usize,
    pub rows: usize,
    pub cols: usize,
    /// Element strides `(row, col)`.
    pub strides: (usize, usize),
    _borrow: PhantomData<&'a mut [f32]>,
}

impl<'a> MatMut<'a> {
    /// A view of `data` with strides `(row, col)`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, strides: (usize, usize)) -> Self {
        MatMut {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            rows,
            cols,
            strides,
            _borrow: PhantomData,
        }
    }

    /// A dense row-major `rows × cols` view.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut::new(data, rows, cols, (cols, 1))
    }

    /// A view of the `len` elements from `ptr`, shared with other views over the same memory.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` is one allocation, valid for reads and writes for `'a`. While the view
    /// lives, the elements it addresses (`i * row + j * col` for `i < rows`, `j < cols`) are
    /// read and written through it alone; the other elements of the range may be used by
    /// other threads, since the view never touches them.
    pub unsafe fn from_raw_parts(
        ptr: *mut f32,
        len: usize,
        rows: usize,
        cols: usize,
        strides: (usize, usize),
    ) -> Self {
        MatMut {
            ptr,
            len,
            rows,
            cols,
            strides,
            _borrow: PhantomData,
        }
    }

    /// The view of rows `rows` of this one, borrowing it.
    ///
    /// Panics when `rows` is not inside `0..self.rows`.
    pub fn rows_view(&mut self, rows: Range<usize>) -> MatMut<'_> {
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "MatMut: rows {rows:?} out of 0..{}",
            self.rows
        );
        let at = (rows.start * self.strides.0).min(self.len);
        MatMut {
            // In bounds or one past the end (`at <= len`).
            ptr: self.ptr.wrapping_add(at),
            len: self.len - at,
            rows: rows.len(),
            cols: self.cols,
            strides: self.strides,
            _borrow: PhantomData,
        }
    }

    /// The view of columns `cols` of this one, borrowing it.
    ///
    /// Panics when `cols` is not inside `0..self.cols`.
    pub fn cols_view(&mut self, cols: Range<usize>) -> MatMut<'_> {
        assert!(
            cols.start <= cols.end && cols.end <= self.cols,
            "MatMut: columns {cols:?} out of 0..{}",
            self.cols
        );
        let at = (cols.start * self.strides.1).min(self.len);
        MatMut {
            // In bounds or one past the end (`at <= len`).
            ptr: self.ptr.wrapping_add(at),
            len: self.len - at,
            rows: self.rows,
            cols: cols.len(),
            strides: self.strides,
            _borrow: PhantomData,
        }
    }

    /// How many elements from the base pointer the view may address.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the view's range holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The base pointer: element `(i, j)` is at `i * row + j * col` from it.
    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.ptr
    }

    /// Sets every element to zero, touching nothing else.
    /// The view's elements as one slice, borrowing the view, when they are dense rows
    /// (strides `(cols, 1)`); `None` otherwise.
    pub fn dense_rows(&mut self) -> Option<&mut [f32]> {
        let n = self.rows * self.cols;
        let dense = self.strides == (self.cols, 1) || self.rows <= 1 && self.strides.1 == 1;
        (dense && n <= self.len).then(|| {
            // SAFETY: dense rows make the view's elements exactly `ptr..ptr + n`, inside its
            // range (`n <= len`), and this view alone accesses them (the constructors'
            // contract) for as long as the slice borrows it.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, n) }
        })
    }

    pub(crate) fn fill_zero(&mut self) {
        check("C", self.len, self.rows, self.cols, self.strides).expect("a view fits its range");
        for i in 0..self.rows {
            for j in 0..self.cols {
                // SAFETY: (i, j) is an element of the view, inside its range (checked above),
                // and this view alone accesses it (the constructors' contract).
                unsafe { *self.ptr.add(i * self.strides.0 + j * self.strides.1) = 0.0 };
            }
        }
    }
}

/// Why a GEMM call was refused. Nothing is written to `C` when an error is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GemmError {
    /// The operands' shapes do not compose: `A` is `m × k`, `B` must be `k × n`, `C` `m × n`.
    Shape {
        a: (usize, usize),
        b: (usize, usize),
        c: (usize, usize),
    },
    /// A slice is too short for its view (`needed` elements, `len` given).
    TooShort {
        operand: &'static str,
        needed: usize,
        len: usize,
    },
    /// A stride is too large to address (overflows `isize`).
    Stride { operand: &'static str },
    /// `C`'s strides make distinct elements share memory.
    AliasedOutput { strides: (usize, usize) },
}

impl fmt::Display for GemmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GemmError::Shape { a, b, c } => write!(
                f,
                "sgemm shapes do not compose: A is {}x{}, B is {}x{}, C is {}x{}",
                a.0, a.1, b.0, b.1, c.0, c.1
            ),
            GemmError::TooShort {
                operand,
                needed,
                len,
            } => {
                write!(
                    f,
                    "sgemm operand {operand} needs {needed} elements, its slice has {len}"
                )
            }
            GemmError::Stride { operand } => write!(
                f,
                "sgemm operand {operand} has a stride too large to address"
            ),
            GemmError::AliasedOutput { strides } => {
                write!(
                    f,
                    "sgemm output strides {strides:?} make distinct elements of C overlap"
                )
            }
        }
    }
}

impl std::error::Error for GemmError {}

/// Elements a view needs: one past the largest offset it addresses (0 if it is empty).
pub(crate) fn needed(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

fn check(
    operand: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    strides: (usize, usize),
) -> Result<(), GemmError> {
    let needed = needed(rows, cols, strides).ok_or(GemmError::Stride { operand })?;
    if needed > len {
        return Err(GemmError::TooShort {
            operand,
            needed,
            len,
        });
    }
    if isize::try_from(needed).is_err()
        || isize::try_from(strides.0).is_err()
        || isize::try_from(strides.1).is_err()
    {
        return Err(GemmError::Stride { operand });
    }
    Ok(())
}

/// True when no two elements of a `rows × cols` view with these strides share an offset.
/// Sufficient test (covers every layout codegen produces): one stride spans the other's
/// whole extent.
pub(crate) fn distinct(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> bool {
    // An empty view has no elements to alias, whatever its strides; nor does one element.
    if rows == 0 || cols == 0 || (rows <= 1 && cols <= 1) {
        return true;
    }
    if rows <= 1 {
        return cs > 0;
    }
    if cols <= 1 {
        return rs > 0;
    }
    (cs > 0 && rs >= cols * cs) || (rs > 0 && cs >= rows * rs)
}

/// `C = A·B` (or `C += A·B` when `accumulate`), with `A` `m × k`, `B` `k × n`, `C` `m × n`.
///
/// `threads` is how many threads may share the work: `0` or `1` runs on the calling thread;
/// more splits the product over rayon's global pool (at most `threads` tasks). Small problems
/// may use fewer threads than asked.
///
/// See the [module documentation](self) for the view contract. Returns an error, writing
/// nothing, when the shapes do not compose or a slice is too short for its view.
pub fn sgemm(
    a: MatRef<'_>,
    b: MatRef<'_>,
    mut c: MatMut<'_>,
    accumulate: bool,
    threads: usize,
) -> Result<(), GemmError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.rows != m || c.cols != n {
        return Err(GemmError::Shape {
            a: (a.rows, a.cols),
            b: (b.rows, b.cols),
            c: (c.rows, c.cols),
        });
    }
    check("A", a.data.len(), a.rows, a.cols, a.strides)?;
    check("B", b.data.len(), b.rows, b.cols, b.strides)?;
    check("C", c.len(), c.rows, c.cols, c.strides)?;
    if !distinct(m, n, c.strides) {
        return Err(GemmError::AliasedOutput { strides: c.strides });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.fill_zero();
        }
        return Ok(());
    }
    let parallelism = if threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    // Strides were checked above to fit in isize.
    let s = |x: usize| x as isize;
    // SAFETY: every offset the kernel reads or writes is `i*rs + j*cs` with `i < rows`,
    // `j < cols`, which `check` proved lies inside the corresponding range; C's elements are
    // distinct (`distinct`) and accessed through this view alone (its contract), so no one
    // else writes them and they alias neither A nor B (which are borrowed shared).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            s(c.strides.1),
            s(c.strides.0),
            accumulate,
            a.data.as_ptr(),
            s(a.strides.1),
            s(a.strides.0),
            b.data.as_ptr(),
            s(b.strides.1),
            s(b.strides.0),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), values in [-1, 1).
    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn naive(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], cs: (usize, usize), accumulate: bool) {
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut acc = 0.0f64;
                for p in 0..a.cols {
                    acc += a.data[i * a.strides.0 + p * a.strides.1] as f64
                        * b.data[p * b.strides.0 + j * b.strides.1] as f64;
                }
                let dst = &mut c[i * cs.0 + j * cs.1];
                *dst = if accumulate {
                    *dst + acc as f32
                } else {
                    acc as f32
                };
            }
        }
    }

    /// Checks one shape with A and/or B stored transposed, C row-major or column-major.
    /// `(m, n, k)`: C is m×n, A m×k, B k×n.
    fn case(
        (m, n, k): (usize, usize, usize),
        ta: bool,
        tb: bool,
        tc: bool,
        accumulate: bool,
        threads: usize,
    ) {
        let seed = (m * 1_000_003 + n * 1009 + k) as u64;
        let a_data = random(m * k, seed);
        let b_data = random(k * n, seed + 1);
        let a = if ta {
            MatRef::row_major(&a_data, k, m).t()
        } else {
            MatRef::row_major(&a_data, m, k)
        };
        let b = if tb {
            MatRef::row_major(&b_data, n, k).t()
        } else {
            MatRef::row_major(&b_data, k, n)
        };
        let cs = if tc { (1, m) } else { (n, 1) };
        let mut want = random(m * n, seed + 2);
        let mut got = want.clone();
        naive(a, b, &mut want, cs, accumulate);
        sgemm(a, b, MatMut::new(&mut got, m, n, cs), accumulate, threads).unwrap();
        let tol = 1e-5 * (k as f32 + 1.0) * 4.0;
        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{m}x{n}x{k} ta={ta} tb={tb} tc={tc} acc={accumulate} threads={threads}: \
                 element {idx} is {g}, want {w}"
            );
        }
    }

    #[test]
    fn matches_naive_on_small_and_odd_shapes() {
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 65),
            (1, 64, 100),
            (64, 1, 9),
            (70, 70, 70),
            (2, 3, 300),
        ];
        for &(m, n, k) in &shapes {
            for ta in [false, true] {
                for tb in [false, true] {
                    for accumulate in [false, true] {
                        case((m, n, k), ta, tb, false, accumulate, 1);
                    }
                }
            }
            case((m, n, k), false, false, true, true, 1);
            case((m, n, k), true, true, false, false, 2);
        }
    }

    #[test]
    fn threaded_large_matches_naive() {
        case((130, 257, 129), false, false, false, false, 2);
        case((130, 257, 129), true, false, false, true, 4);
    }

    #[test]
    fn empty_output_with_zero_stride_is_not_aliased() {
        // `row_major(.., 2, 0)` has strides (0, 1): no elements, so nothing can alias.
        sgemm(
            MatRef::row_major(&[0.0; 6], 2, 3),
            MatRef::row_major(&[], 3, 0),
            MatMut::row_major(&mut [], 2, 0),
            false,
            1,
        )
        .unwrap();
    }

    #[test]
    fn empty_and_zero_k() {
        let mut c = vec![5.0f32; 6];
        sgemm(
            MatRef::row_major(&[], 2, 0),
            MatRef::row_major(&[], 0, 3),
            MatMut::row_major(&mut c, 2, 3),
            true,
            1,
        )
        .unwrap();
        assert_eq!(c, vec![5.0; 6]);
        sgemm(
            MatRef::row_major(&[], 2, 0),
            MatRef::row_major(&[], 0, 3),
            MatMut::row_major(&mut c, 2, 3),
            false,
            1,
        )
        .unwrap();
        assert_eq!(c, vec![0.0; 6]);
        sgemm(
            MatRef::row_major(&[], 0, 4),
            MatRef::row_major(&[0.0; 12], 4, 3),
            MatMut::row_major(&mut [], 0, 3),
            false,
            2,
        )
        .unwrap();
    }

    #[test]
    fn rejects_bad_shapes_and_short_slices() {
        let a = vec![1.0f32; 6];
        let b = vec![1.0f32; 12];
        let mut c = vec![0.0f32; 8];
        let err = sgemm(
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 4, 3),
            MatMut::row_major(&mut c, 2, 3),
            false,
            1,
        );
        assert!(matches!(err, Err(GemmError::Shape { .. })), "{err:?}");
        let err = sgemm(
            MatRef::row_major(&a[..5], 2, 3),
            MatRef::row_major(&b, 3, 4),
            MatMut::row_major(&mut c, 2, 4),
            false,
            1,
        );
        assert_eq!(
            err,
            Err(GemmError::TooShort {
                operand: "A",
                needed: 6,
                len: 5
            })
        );
        let err = sgemm(
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b[..11], 3, 4),
            MatMut::row_major(&mut c, 2, 4),
            false,
            1,
        );
        assert_eq!(
            err,
            Err(GemmError::TooShort {
                operand: "B",
                needed: 12,
                len: 11
            })
        );
        let err = sgemm(
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 4),
            MatMut::row_major(&mut c[..7], 2, 4),
            false,
            1,
        );
        assert_eq!(
            err,
            Err(GemmError::TooShort {
                operand: "C",
                needed: 8,
                len: 7
            })
        );
        let err = sgemm(
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 4),
            MatMut::new(&mut c, 2, 4, (1, 1)),
            false,
            1,
        );
        assert!(
            matches!(err, Err(GemmError::AliasedOutput { .. })),
            "{err:?}"
        );
        let err = sgemm(
            MatRef {
                data: &a,
                rows: 2,
                cols: 3,
                strides: (usize::MAX, 1),
            },
            MatRef::row_major(&b, 3, 4),
            MatMut::row_major(&mut c, 2, 4),
            false,
            1,
        );
        assert!(
            matches!(err, Err(GemmError::Stride { operand: "A" })),
            "{err:?}"
        );
        assert_eq!(c, vec![0.0; 8], "nothing is written on error");
    }

    #[test]
    fn broadcast_input_strides() {
        // A row vector broadcast down the rows (row stride 0).
        let a = [1.0f32, 2.0];
        let b = [3.0f32, 4.0, 5.0, 6.0];
        let mut c = vec![0.0f32; 6];
        sgemm(
            MatRef {
                data: &a,
                rows: 3,
                cols: 2,
                strides: (0, 1),
            },
            MatRef::row_major(&b, 2, 2),
            MatMut::row_major(&mut c, 3, 2),
            false,
            1,
        )
        .unwrap();
        assert_eq!(c, vec![13.0, 16.0, 13.0, 16.0, 13.0, 16.0]);
    }
}
