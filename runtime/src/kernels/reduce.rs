//! Reductions over a run of middle axes, keeping the last: `x` viewed as `[outer, r, inner]`
//! reduces to `[outer, inner]`. Global average pooling (NHWC `reduce_mean` over H and W) is the
//! case that matters; the inner loop runs over contiguous channels, which the compiler
//! vectorizes. (Reductions over the last axis are generated code, see `cpu::codegen`.)

use lathe_ir::ops::ReduceKind;

/// The shape of a middle-axes reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MiddleReduce {
    pub kind: ReduceKind,
    pub outer: usize,
    pub r: usize,
    pub inner: usize,
}

impl MiddleReduce {
    /// The reduction of `axes` (sorted, distinct, non-negative) of `dims`, if they are one
    /// contiguous run that leaves the last axis alone.
    pub fn new(kind: ReduceKind, dims: &[usize], axes: &[usize]) -> Option<MiddleReduce> {
        let (&first, &last) = (axes.first()?, axes.last()?);
        if last + 1 >= dims.len() || last - first + 1 != axes.len() {
            return None;
        }
        Some(MiddleReduce {
            kind,
            outer: dims[..first].iter().product(),
            r: dims[first..=last].iter().product(),
            inner: dims[last + 1..].iter().product(),
        })
    }

    /// Reduces `x` (`outer · r · inner` elements) into `out` (`outer · inner`).
    ///
    /// # Panics
    /// When a slice has the wrong length.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (outer, r, inner) = (self.outer, self.r, self.inner);
        assert_eq!(x.len(), outer * r * inner, "reduce input length");
        assert_eq!(out.len(), outer * inner, "reduce output length");
        let init = match self.kind {
            ReduceKind::Sum | ReduceKind::Mean => 0.0,
            ReduceKind::Prod => 1.0,
            ReduceKind::Max => f32::NEG_INFINITY,
            ReduceKind::Min => f32::INFINITY,
        };
        for o in 0..outer {
            let acc = &mut out[o * inner..(o + 1) * inner];
            acc.fill(init);
            for i in 0..r {
                let row = &x[(o * r + i) * inner..(o * r + i + 1) * inner];
                match self.kind {
                    ReduceKind::Sum | ReduceKind::Mean => {
                        acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v)
                    }
                    ReduceKind::Prod => acc.iter_mut().zip(row).for_each(|(a, &v)| *a *= v),
                    // NaN-propagating, as the interpreter's max/min are.
                    ReduceKind::Max => acc.iter_mut().zip(row).for_each(|(a, &v)| {
                        if v > *a || v.is_nan() {
                            *a = v
                        }
                    }),
                    ReduceKind::Min => acc.iter_mut().zip(row).for_each(|(a, &v)| {
                        if v < *a || v.is_nan() {
                            *a = v
                        }
                    }),
                }
            }
            if self.kind == ReduceKind::Mean && r > 0 {
                let scale = 1.0 / r as f32;
                acc.iter_mut().for_each(|a| *a *= scale);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::Op;
    use lathe_ir::Tensor;

    #[test]
    fn matches_the_interpreter_on_global_pooling() {
        let dims = [2, 3, 5, 7];
        let n: usize = dims.iter().product();
        let vals: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 101) as f32 / 7.0 - 5.0)
            .collect();
        let x = Tensor::from_vec(&dims, vals.clone());
        let axes = Tensor::from_vec(&[2], vec![1i32, 2]);
        for kind in ReduceKind::ALL {
            let want = Op::Reduce {
                kind,
                keep_dims: false,
            }
            .eval(&[&x, &axes])
            .unwrap()
            .remove(0);
            let k = MiddleReduce::new(kind, &dims, &[1, 2]).unwrap();
            let mut out = vec![0.0; 2 * 7];
            k.run(&vals, &mut out);
            for (g, w) in out.iter().zip(want.to_f64_vec()) {
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{kind:?}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn only_middle_runs_qualify() {
        assert!(MiddleReduce::new(ReduceKind::Sum, &[2, 3, 4], &[2]).is_none());
        assert!(MiddleReduce::new(ReduceKind::Sum, &[2, 3, 4, 5], &[0, 2]).is_none());
        assert_eq!(
            MiddleReduce::new(ReduceKind::Sum, &[2, 3, 4, 5], &[0, 1]),
            Some(MiddleReduce {
                kind: ReduceKind::Sum,
                outer: 1,
                r: 6,
                inner: 20
            })
        );
    }
}
