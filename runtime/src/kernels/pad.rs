//! Constant padding of a dense row-major tensor, computed a range of output rows (runs of the
//! last axis) at a time so threads can split it. Each output element is written once: a row
//! inside the input's box is the pad value, the input's row, and the pad value again; any
//! other row is the pad value only.

use std::ops::Range;

/// `pad` with constant `value`, amounts `before`/`after` per axis.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConstPad {
    pub in_dims: Vec<usize>,
    pub before: Vec<usize>,
    pub after: Vec<usize>,
    pub value: f32,
}

impl ConstPad {
    /// The output dims.
    pub fn out_dims(&self) -> Vec<usize> {
        (0..self.in_dims.len())
            .map(|i| self.in_dims[i] + self.before[i] + self.after[i])
            .collect()
    }

    /// The output as rows: `(rows, row length)`, a row being a run of the last axis (a scalar
    /// is one row of one element).
    pub fn out_rows(&self) -> (usize, usize) {
        rows_of(&self.out_dims())
    }

    /// Pads `x` into `out`.
    ///
    /// # Panics
    /// When a slice has the wrong length.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        self.run_rows(x, 0..self.out_rows().0, out)
    }

    /// Output rows `rows` (see [`Self::out_rows`]) into `out`, which holds just those rows.
    ///
    /// # Panics
    /// When `x` is not the input's length, `rows` is past the output or `out` is not
    /// `rows.len()` rows long.
    pub fn run_rows(&self, x: &[f32], rows: Range<usize>, out: &mut [f32]) {
        let out_dims = self.out_dims();
        let (total, len) = rows_of(&out_dims);
        assert_eq!(
            x.len(),
            self.in_dims.iter().product::<usize>(),
            "pad input length"
        );
        assert!(
            rows.start <= rows.end && rows.end <= total,
            "pad rows {rows:?} of {total}"
        );
        assert_eq!(out.len(), rows.len() * len, "pad output length");
        let Some((&run, lead)) = self.in_dims.split_last() else {
            out.copy_from_slice(x);
            return;
        };
        let (lo, hi) = (self.before[lead.len()], self.before[lead.len()] + run);
        let out_lead = &out_dims[..lead.len()];
        for (r, row) in rows.zip(out.chunks_exact_mut(len.max(1))) {
            // Row `r`'s index over the leading axes, and the input row it reads if inside.
            let (mut rest, mut src, mut stride) = (r, 0usize, 1usize);
            let mut inside = true;
            for a in (0..lead.len()).rev() {
                let i = rest % out_lead[a];
                rest /= out_lead[a];
                match i.checked_sub(self.before[a]).filter(|&i| i < lead[a]) {
                    Some(i) => src += i * stride,
                    None => inside = false,
                }
                stride *= lead[a];
            }
            if inside && run > 0 {
                row[..lo].fill(self.value);
                row[lo..hi].copy_from_slice(&x[src * run..][..run]);
                row[hi..].fill(self.value);
            } else {
                row.fill(self.value);
            }
        }
    }
}

/// Dims as `(rows, row length)`: runs of the last axis (a scalar is one row of one element).
fn rows_of(dims: &[usize]) -> (usize, usize) {
    match dims.split_last() {
        Some((&last, lead)) => (lead.iter().product(), last),
        None => (1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::{Op, PadMode};
    use lathe_ir::Tensor;

    #[test]
    fn matches_the_interpreter() {
        let dims = [2, 3, 4, 2];
        let n: usize = dims.iter().product();
        let vals: Vec<f32> = (0..n).map(|i| i as f32 - 7.5).collect();
        let (before, after) = (vec![0, 1, 3, 0], vec![1, 2, 0, 1]);
        let pads: Vec<i32> = before
            .iter()
            .zip(&after)
            .flat_map(|(&b, &a)| [b as i32, a as i32])
            .collect();
        let want = Op::Pad {
            mode: PadMode::Constant,
        }
        .eval(&[
            &Tensor::from_vec(&dims, vals.clone()),
            &Tensor::from_vec(&[4, 2], pads),
        ])
        .unwrap()
        .remove(0);
        let k = ConstPad {
            in_dims: dims.to_vec(),
            before,
            after,
            value: 0.0,
        };
        assert_eq!(k.out_dims(), want.shape());
        let mut out = vec![f32::NAN; want.len()];
        k.run(&vals, &mut out);
        let got: Vec<f64> = out.iter().map(|&v| v as f64).collect();
        assert_eq!(got, want.to_f64_vec());
        // Any range of rows, as threads split them.
        let (rows, len) = k.out_rows();
        assert_eq!(rows * len, want.len());
        for (a, b) in [(0, 1), (3, 17), (rows - 5, rows), (7, 7)] {
            let mut part = vec![f32::NAN; (b - a) * len];
            k.run_rows(&vals, a..b, &mut part);
            let got: Vec<f64> = part.iter().map(|&v| v as f64).collect();
            assert_eq!(got, want.to_f64_vec()[a * len..b * len], "rows {a}..{b}");
        }
    }
}
