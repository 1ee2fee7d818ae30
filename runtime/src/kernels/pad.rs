//! Constant padding of a dense row-major tensor: the output is filled with the pad value and
//! the input is copied in, one contiguous run of its last axis at a time.

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

    /// Pads `x` into `out`.
    ///
    /// # Panics
    /// When a slice has the wrong length.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let out_dims = self.out_dims();
        assert_eq!(
            x.len(),
            self.in_dims.iter().product::<usize>(),
            "pad input length"
        );
        assert_eq!(
            out.len(),
            out_dims.iter().product::<usize>(),
            "pad output length"
        );
        out.fill(self.value);
        let rank = self.in_dims.len();
        if rank == 0 {
            out.copy_from_slice(x);
            return;
        }
        let run = self.in_dims[rank - 1];
        let rows = x.len() / run.max(1);
        // Output strides, to place each input row.
        let mut strides = vec![1; rank];
        for i in (0..rank - 1).rev() {
            strides[i] = strides[i + 1] * out_dims[i + 1];
        }
        let mut idx = vec![0usize; rank.saturating_sub(1)];
        for r in 0..rows {
            let mut off = self.before[rank - 1];
            for (a, &i) in idx.iter().enumerate() {
                off += (i + self.before[a]) * strides[a];
            }
            out[off..off + run].copy_from_slice(&x[r * run..(r + 1) * run]);
            // Next row index (odometer over the leading axes).
            for a in (0..idx.len()).rev() {
                idx[a] += 1;
                if idx[a] < self.in_dims[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
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
    }
}
