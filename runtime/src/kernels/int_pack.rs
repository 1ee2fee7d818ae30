//! The integer GEMM's operands laid out for its micro-kernels ([`super::int_micro`]): B packed
//! once into panels ([`PackedB`]), rows of A (or the convolution's patches) widened a block at
//! a time ([`Widened`]), both in one of two forms:
//!
//! - **pairs**: `x - zero_point` as i16 (`|x - zero_point| <= 255`), k in pairs, for
//!   `vpdpwssd`/`vpmaddwd` and the portable loop;
//! - **quads** (AVX-512 VNNI): bytes as they are but for a sign flip that makes A u8 and B i8
//!   (`a ^ 0x80` for i8 A, `b - 128` for u8 B, the zero points moved with them, so every
//!   difference stays what it was), k in fours, for `vpdpbusd`; the zero points are applied
//!   to each finished tile from its rows' and columns' sums: `Σ (a - za)(b - zb) = Σ ab -
//!   zb·Σa - za·(Σb - k·zb)`, an identity of integers that holds modulo 2^32 too.
//!
//! The form is chosen when B is packed ([`IntIsa::detect`]) and A follows it.

#[cfg(doc)]
use super::int_micro::QuadTerms;
use super::int_micro::{IntIsa, MR, NR};
use lathe_ir::DType;

/// An i8 or u8 matrix read through strides (in elements, which are bytes).
#[derive(Clone, Copy, Debug)]
pub struct ByteMat {
    pub ptr: *const u8,
    /// i8 when true, u8 otherwise.
    pub signed: bool,
    /// `(row, column)` strides.
    pub strides: (usize, usize),
}

impl ByteMat {
    /// Element `(i, j)` widened.
    ///
    /// # Safety
    /// The strides address element `(i, j)` inside the matrix's buffer.
    #[inline(always)]
    pub unsafe fn at(&self, i: usize, j: usize) -> i32 {
        let p = self.ptr.add(i * self.strides.0 + j * self.strides.1);
        if self.signed {
            *(p as *const i8) as i32
        } else {
            *p as i32
        }
    }

    /// Elements `(i, j0 ..)` minus `zp`, as many as `out` holds, into `out`.
    ///
    /// # Safety
    /// The strides address every element read inside the matrix's buffer.
    #[inline]
    unsafe fn diffs(&self, i: usize, j0: usize, zp: i32, out: &mut [i16]) {
        let p = self.ptr.add(i * self.strides.0 + j0 * self.strides.1);
        let n = out.len();
        // Contiguous runs (the usual case) as plain slices, which vectorize.
        match (self.strides.1, self.signed) {
            (1, true) => {
                let src = std::slice::from_raw_parts(p as *const i8, n);
                for (o, &v) in out.iter_mut().zip(src) {
                    *o = (v as i32 - zp) as i16;
                }
            }
            (1, false) => {
                let src = std::slice::from_raw_parts(p, n);
                for (o, &v) in out.iter_mut().zip(src) {
                    *o = (v as i32 - zp) as i16;
                }
            }
            _ => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = (self.at(i, j0 + j) - zp) as i16;
                }
            }
        }
    }

    /// Elements `(i, j0 ..)` as u8 (i8 with the sign bit flipped: `+ 128`) into `out`.
    ///
    /// # Safety
    /// As for [`ByteMat::diffs`].
    #[inline]
    unsafe fn unsigned(&self, i: usize, j0: usize, out: &mut [u8]) {
        let p = self.ptr.add(i * self.strides.0 + j0 * self.strides.1);
        let flip = if self.signed { 0x80 } else { 0 };
        if self.strides.1 == 1 {
            let src = std::slice::from_raw_parts(p, out.len());
            for (o, &v) in out.iter_mut().zip(src) {
                *o = v ^ flip;
            }
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                *o = *p.add(j * self.strides.1) ^ flip;
            }
        }
    }
}

/// Whether `dt` is a signed byte (i8) or an unsigned one (u8); `None` for other dtypes.
pub fn byte_signedness(dt: DType) -> Option<bool> {
    match dt {
        DType::I8 => Some(true),
        DType::U8 => Some(false),
        _ => None,
    }
}

/// The values of a zero-point buffer of `len` i8/u8 elements, widened.
///
/// # Safety
/// `ptr` addresses `len` elements of the byte dtype `signed` says.
pub unsafe fn zero_points(ptr: *const u8, signed: bool, len: usize) -> Vec<i32> {
    let m = ByteMat {
        ptr,
        signed,
        strides: (0, 1),
    };
    (0..len).map(|j| m.at(0, j)).collect()
}

/// `zp[i]` for a per-index list, `zp[0]` for a per-tensor one.
#[inline(always)]
pub fn zero_point(zp: &[i32], i: usize) -> i32 {
    if zp.len() == 1 {
        zp[0]
    } else {
        zp[i]
    }
}

/// Values a row of `k` takes in a form: `k` rounded up to whole pairs or quads.
fn row_len(k: usize, quads: bool) -> usize {
    if quads {
        k.next_multiple_of(4)
    } else {
        k.next_multiple_of(2)
    }
}

/// B (`k × n`) for the micro-kernels: panels of [`NR`] columns; columns past `n` and rows
/// past `k` are zero.
#[derive(Clone, Debug)]
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    form: Form,
}

#[derive(Clone, Debug)]
enum Form {
    /// `b - zp` as i16, rows in interleaved pairs.
    Pairs(Vec<i16>),
    /// `b` as i8 (u8 minus 128), rows in interleaved fours; each column's zero point `zb`
    /// (moved with it) and `Σb - k·zb` (see [`QuadTerms`]), zero past `n` to whole panels.
    Quads {
        data: Vec<i8>,
        zp: Vec<i32>,
        cols: Vec<i32>,
    },
}

impl PackedB {
    /// Packs `b` (`k × n`) whose column `j` has zero point `zp[j]` (or `zp[0]` for all), in
    /// the form this CPU's micro-kernels take.
    ///
    /// # Safety
    /// `b`'s strides address every element `(p, j)`, `p < k`, `j < n`, inside its buffer.
    pub unsafe fn new(b: ByteMat, k: usize, n: usize, zp: &[i32]) -> PackedB {
        Self::for_isa(IntIsa::detect(), b, k, n, zp)
    }

    /// [`PackedB::new`] for the micro-kernels of `isa`.
    ///
    /// # Safety
    /// As for [`PackedB::new`].
    pub unsafe fn for_isa(isa: IntIsa, b: ByteMat, k: usize, n: usize, zp: &[i32]) -> PackedB {
        let quads = isa == IntIsa::Vnni512;
        let (step, len) = (if quads { 4 } else { 2 }, row_len(k, quads));
        // Element (p, jj) of a panel: its group of `step` rows, column, place in the group.
        let at = |p: usize, jj: usize| (p / step) * step * NR + jj * step + p % step;
        let panels = n.div_ceil(NR);
        let form = if quads {
            let mut data = vec![0i8; panels * len * NR];
            let (mut zb, mut cols) = (vec![0i32; panels * NR], vec![0i32; panels * NR]);
            let shift = if b.signed { 0 } else { 128 };
            for j in 0..n {
                let panel = &mut data[(j / NR) * len * NR..];
                let mut sum = 0i32;
                for p in 0..k {
                    let v = (b.at(p, j) - shift) as i8;
                    panel[at(p, j % NR)] = v;
                    sum = sum.wrapping_add(v as i32);
                }
                zb[j] = zero_point(zp, j) - shift;
                cols[j] = sum.wrapping_sub((k as i32).wrapping_mul(zb[j]));
            }
            Form::Quads { data, zp: zb, cols }
        } else {
            let mut data = vec![0i16; panels * len * NR];
            for j in 0..n {
                let z = zero_point(zp, j);
                let panel = &mut data[(j / NR) * len * NR..];
                for p in 0..k {
                    panel[at(p, j % NR)] = (b.at(p, j) - z) as i16;
                }
            }
            Form::Pairs(data)
        };
        PackedB { k, n, form }
    }

    /// Whether B is in quads (and A must be).
    pub fn quads(&self) -> bool {
        matches!(self.form, Form::Quads { .. })
    }

    /// Values per row of a widened A: `k` in whole pairs or quads.
    pub fn row_len(&self) -> usize {
        row_len(self.k, self.quads())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.form {
            Form::Pairs(d) => d.len() * 2,
            Form::Quads { data, zp, cols } => data.len() + 4 * (zp.len() + cols.len()),
        }
    }
}

/// Rows of A (or patches) ready for the micro-kernels in the form of the B they multiply,
/// each row with its zero point; a whole number of [`MR`]-row blocks (the rows past the
/// block's own are zero).
#[derive(Debug, Default)]
pub struct Widened {
    quads: bool,
    k: usize,
    /// Values per row.
    len: usize,
    rows: usize,
    pairs: Vec<i16>,
    bytes: Vec<u8>,
    /// Per row, quads only: the zero point (moved to u8) and the sum of the `k` values.
    terms: Vec<[i32; 2]>,
}

impl Widened {
    /// Makes room for `rows` rows to multiply `b`, all zero.
    pub fn reset(&mut self, b: &PackedB, rows: usize) {
        let n = rows.next_multiple_of(MR);
        self.quads = b.quads();
        self.k = b.k;
        self.len = b.row_len();
        self.rows = rows;
        if self.quads {
            self.bytes.clear();
            self.bytes.resize(n * self.len, 0);
            self.terms.clear();
            self.terms.resize(n, [0; 2]);
        } else {
            self.pairs.clear();
            self.pairs.resize(n * self.len, 0);
        }
    }

    /// Starts row `r` of an operand of signedness `signed` with zero point `zp`: its `k`
    /// values set to the zero point (a difference of 0, what a convolution's padding is).
    pub fn begin_row(&mut self, r: usize, signed: bool, zp: i32) {
        if self.quads {
            let z = zp + if signed { 128 } else { 0 };
            self.terms[r][0] = z;
            // A zero point outside u8 (only possible for a matmul's, which every row writes
            // over) has no byte; its row's values are all written anyway.
            let fill = u8::try_from(z).unwrap_or(0);
            self.bytes[r * self.len..r * self.len + self.k].fill(fill);
        }
    }

    /// Values `at ..` of row `r`: elements `(i, j0 ..)` of `m`, whose zero point is `zp`.
    ///
    /// # Safety
    /// `m`'s strides address every element read inside its buffer.
    #[inline]
    pub unsafe fn put(
        &mut self,
        r: usize,
        at: usize,
        m: &ByteMat,
        (i, j0): (usize, usize),
        zp: i32,
        count: usize,
    ) {
        let s = r * self.len + at;
        if self.quads {
            m.unsigned(i, j0, &mut self.bytes[s..s + count]);
        } else {
            m.diffs(i, j0, zp, &mut self.pairs[s..s + count]);
        }
    }

    /// Ends row `r`: quads keep the sum of its `k` values.
    pub fn end_row(&mut self, r: usize) {
        if self.quads {
            let row = &self.bytes[r * self.len..r * self.len + self.k];
            self.terms[r][1] = row.iter().map(|&v| v as i32).sum();
        }
    }

    /// Rows `r0 .. r0 + MR` in pairs.
    pub(super) fn pair_block(&self, r0: usize) -> &[i16] {
        &self.pairs[r0 * self.len..(r0 + MR) * self.len]
    }

    /// Rows `r0 .. r0 + MR` in quads.
    pub(super) fn quad_block(&self, r0: usize) -> &[u8] {
        &self.bytes[r0 * self.len..(r0 + MR) * self.len]
    }

    /// Rows `r0 .. r0 + MR`' zero points and sums (quads).
    pub(super) fn row_terms(&self, r0: usize) -> &[[i32; 2]] {
        &self.terms[r0..r0 + MR]
    }

    /// The rows the block holds.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl PackedB {
    /// Panel `q` in pairs.
    pub(super) fn pair_panel(&self, q: usize) -> &[i16] {
        let len = self.row_len() * NR;
        match &self.form {
            Form::Pairs(d) => &d[q * len..(q + 1) * len],
            Form::Quads { .. } => unreachable!("packed in quads"),
        }
    }

    /// Panel `q` in quads, with its columns' zero-point terms (see [`QuadTerms`]).
    pub(super) fn quad_panel(&self, q: usize) -> (&[i8], &[i32], &[i32]) {
        let len = self.row_len() * NR;
        match &self.form {
            Form::Quads { data, zp, cols } => {
                let c = q * NR..(q + 1) * NR;
                (&data[q * len..(q + 1) * len], &zp[c.clone()], &cols[c])
            }
            Form::Pairs(_) => unreachable!("packed in pairs"),
        }
    }
}
