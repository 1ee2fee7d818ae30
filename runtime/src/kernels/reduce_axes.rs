//! Reductions (`reduce_sum`, `_mean`, `_prod`, `_max`, `_min`) over any set of axes, for every
//! numeric dtype: the ones generated code (the last axis) and [`super::reduce`] (an f32 run of
//! middle axes) do not take, such as axes `[1, 3]` of a 4-D tensor.
//!
//! The input's axes merge into alternating runs of kept and reduced axes (size-1 axes drop
//! out), and the input is walked once in memory order without a transpose: a kept innermost
//! run adds a contiguous row into a row of accumulators, a reduced innermost run folds a
//! contiguous row into one. Accumulators are the interpreter's compute type
//! ([`Numeric::Wide`]: f64 for floats, rounded once at the end; integers wrapping in their own
//! type, and an integer mean truncates), and max/min keep the first NaN as the interpreter's
//! do. Tasks split the outermost kept run, so each writes its own slice of the output.
//!
//! An empty input gives what the interpreter gives on it: the identity (0, 1, or NaN for a
//! float mean), or its error (max, min or integer mean of an empty axis), which the kernel
//! reports when run.

use super::numeric::{check_numeric, elements, elements_mut, with_numeric, Arith, Numeric};
use lathe_ir::ops::{Op, ReduceKind};
use lathe_ir::{DType, Tensor, TensorType};
use std::ops::Range;

/// A run of adjacent axes that are all kept or all reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Run {
    size: usize,
    reduced: bool,
    /// Elements between consecutive indices of the run, in the input.
    x_stride: usize,
    /// The same in the output (0 for a reduced run).
    out_stride: usize,
}

/// A reduction of some axes of a known-shape input.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReduceAxes {
    pub kind: ReduceKind,
    pub dtype: DType,
    /// The reduced axes, sorted.
    pub axes: Vec<usize>,
    runs: Vec<Run>,
    /// The outermost kept run, which tasks split.
    split: Option<usize>,
    /// Input elements per output element.
    count: usize,
    in_len: usize,
    out_len: usize,
    /// The interpreter's error on this (empty) input, if it has one.
    fault: Option<String>,
}

impl ReduceAxes {
    /// Prepares `op` (a `reduce_*`) of an input of type `x` over `axes` (sorted, distinct, in
    /// range). Errors for bool or an unknown shape.
    pub fn new(op: &Op, x: &TensorType, axes: &[usize]) -> Result<ReduceAxes, String> {
        let Op::Reduce { kind, .. } = op else {
            return Err(format!("{} is not a reduction", op.mnemonic()));
        };
        check_numeric(op.mnemonic(), x.dtype)?;
        let dims = x
            .shape
            .as_known()
            .ok_or_else(|| format!("{} needs a known shape, got {x}", op.mnemonic()))?;
        if axes.iter().any(|&a| a >= dims.len()) || axes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("axes {axes:?} of {x} are not sorted and in range"));
        }
        let mut runs: Vec<Run> = vec![];
        for (a, &size) in dims.iter().enumerate() {
            let reduced = axes.contains(&a);
            match runs.last_mut() {
                _ if size == 1 => {}
                Some(r) if r.reduced == reduced => r.size *= size,
                _ => runs.push(Run {
                    size,
                    reduced,
                    x_stride: 0,
                    out_stride: 0,
                }),
            }
        }
        if runs.is_empty() {
            // One element (every axis has size 1).
            runs.push(Run {
                size: 1,
                reduced: false,
                x_stride: 0,
                out_stride: 0,
            });
        }
        let (mut xs, mut os) = (1, 1);
        for r in runs.iter_mut().rev() {
            r.x_stride = xs;
            xs *= r.size;
            if !r.reduced {
                r.out_stride = os;
                os *= r.size;
            }
        }
        let in_len: usize = dims.iter().product();
        let fault = if in_len == 0 {
            let axes_t = Tensor::from_i64(
                DType::I64,
                &[axes.len()],
                &axes.iter().map(|&a| a as i64).collect::<Vec<_>>(),
            );
            op.eval(&[&Tensor::zeros(x.dtype, &dims), &axes_t]).err()
        } else {
            None
        };
        Ok(ReduceAxes {
            kind: *kind,
            dtype: x.dtype,
            axes: axes.to_vec(),
            split: runs.iter().position(|r| !r.reduced),
            runs,
            count: axes.iter().map(|&a| dims[a]).product(),
            in_len,
            out_len: os,
            fault,
        })
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.in_len
    }

    /// How many parts the work splits into (indices of the outermost kept run).
    pub fn parts(&self) -> usize {
        self.split.map_or(1, |s| self.runs[s].size)
    }

    /// Output elements per part.
    fn part_len(&self) -> usize {
        self.split.map_or(self.out_len, |s| self.runs[s].out_stride)
    }

    /// The interpreter's error for this input, if it has one (then nothing is computed).
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Computes parts `parts` of the output on the calling thread.
    ///
    /// # Safety
    /// `x` holds the whole dense input of this kernel's dtype and nothing writes it now; `out`
    /// holds the whole output, whose elements of `parts` nothing else touches now.
    pub unsafe fn run_parts(&self, x: *const u8, out: *mut u8, parts: Range<usize>) {
        let per = self.part_len();
        with_numeric!(self.dtype, T => self.parts_typed::<T>(
            elements(x as *const T, self.in_len),
            elements_mut((out as *mut T).wrapping_add(parts.start * per), parts.len() * per),
            parts,
        ), bool => ())
    }

    fn parts_typed<T: Numeric>(&self, x: &[T], out: &mut [T], parts: Range<usize>) {
        if out.is_empty() {
            return;
        }
        let mut runs = self.runs.clone();
        let mut x0 = 0;
        if let Some(s) = self.split {
            x0 = parts.start * runs[s].x_stride;
            runs[s].size = parts.len();
        }
        let mut acc = vec![self.identity::<T::Wide>(); out.len()];
        match self.kind {
            ReduceKind::Sum | ReduceKind::Mean => walk(&runs, x, x0, &mut acc, 0, Arith::add),
            ReduceKind::Prod => walk(&runs, x, x0, &mut acc, 0, Arith::mul),
            ReduceKind::Max => walk(&runs, x, x0, &mut acc, 0, Arith::max_nan),
            ReduceKind::Min => walk(&runs, x, x0, &mut acc, 0, Arith::min_nan),
        }
        let mean = self.kind == ReduceKind::Mean;
        for (o, a) in out.iter_mut().zip(acc) {
            *o = T::from_wide(if mean { a.div_count(self.count) } else { a });
        }
    }

    /// The value an empty reduction starts from.
    fn identity<W: Arith>(&self) -> W {
        match self.kind {
            ReduceKind::Sum | ReduceKind::Mean => W::ZERO,
            ReduceKind::Prod => W::ONE,
            ReduceKind::Max => W::LOWEST,
            ReduceKind::Min => W::HIGHEST,
        }
    }
}

/// Folds the input elements under `runs` (the first one outermost), from input offset `xo`,
/// into the accumulators from `oo` on.
fn walk<T: Numeric>(
    runs: &[Run],
    x: &[T],
    xo: usize,
    acc: &mut [T::Wide],
    oo: usize,
    f: impl Fn(T::Wide, T::Wide) -> T::Wide + Copy,
) {
    let (r, rest) = runs
        .split_first()
        .expect("a reduction has at least one run");
    if !rest.is_empty() {
        for i in 0..r.size {
            walk(rest, x, xo + i * r.x_stride, acc, oo + i * r.out_stride, f);
        }
        return;
    }
    // The innermost run: contiguous in the input.
    let lane = &x[xo..xo + r.size];
    if r.reduced {
        acc[oo] = lane.iter().fold(acc[oo], |a, &v| f(a, v.wide()));
    } else {
        for (a, &v) in acc[oo..oo + r.size].iter_mut().zip(lane) {
            *a = f(*a, v.wide());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: ReduceKind, x: &Tensor, axes: &[usize]) {
        let op = Op::Reduce {
            kind,
            keep_dims: false,
        };
        let k = ReduceAxes::new(&op, &x.ty(), axes).unwrap();
        let axes_t = Tensor::from_i64(
            DType::I32,
            &[axes.len()],
            &axes.iter().map(|&a| a as i64).collect::<Vec<_>>(),
        );
        let want = op.eval(&[x, &axes_t]).unwrap().remove(0);
        let xb = x.to_le_bytes();
        let mut out = vec![0u8; want.size_bytes()];
        let p = k.parts();
        for r in [p / 2..p, 0..p / 2] {
            // SAFETY: dense buffers of the kernel's shapes; one range of parts at a time.
            unsafe { k.run_parts(xb.as_ptr(), out.as_mut_ptr(), r) };
        }
        let got = Tensor::from_le_bytes(want.dtype(), want.shape(), &out).unwrap();
        if x.dtype().is_float() {
            for (g, w) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
                assert!(
                    g == &w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-12 * w.abs(),
                    "{kind:?} {axes:?}: {g} vs {w}"
                );
            }
        } else {
            assert_eq!(got, want, "{kind:?} {axes:?}");
        }
    }

    #[test]
    fn any_axes_match_the_interpreter() {
        let v: Vec<i64> = (0..360).map(|i| (i * 7919) % 201 - 100).collect();
        for dt in [DType::I8, DType::U16, DType::I64, DType::F64, DType::F32] {
            let x = Tensor::from_i64(dt, &[2, 3, 1, 4, 15], &v);
            for axes in [
                &[1, 3][..],
                &[0, 2, 3],
                &[0, 4],
                &[4],
                &[1],
                &[0, 1, 2, 3, 4],
            ] {
                for kind in ReduceKind::ALL {
                    check(kind, &x, axes);
                }
            }
        }
    }

    #[test]
    fn empty_inputs_give_the_identity_or_the_interpreters_error() {
        let op = |kind| Op::Reduce {
            kind,
            keep_dims: true,
        };
        let x = TensorType::known(DType::I32, &[2, 0, 3]);
        let k = ReduceAxes::new(&op(ReduceKind::Max), &x, &[1]).unwrap();
        assert!(k.fault().unwrap().contains("empty axis"), "{:?}", k.fault());
        let k = ReduceAxes::new(&op(ReduceKind::Mean), &x, &[1]).unwrap();
        assert!(k.fault().unwrap().contains("divides by zero"));
        let k = ReduceAxes::new(&op(ReduceKind::Prod), &x, &[1]).unwrap();
        assert!(k.fault().is_none());
        let mut out = [0u8; 24];
        // SAFETY: an empty input (never read) and a 6-element i32 output.
        unsafe { k.run_parts(std::ptr::null(), out.as_mut_ptr(), 0..k.parts()) };
        assert_eq!(
            out,
            Tensor::from_i64(DType::I32, &[6], &[1; 6]).to_le_bytes()[..]
        );
    }
}
