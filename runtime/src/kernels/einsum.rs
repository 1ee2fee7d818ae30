//! `einsum` by its definition, for every numeric dtype: `out[o] = Σ_s Π_i x_i[o, s]` over the
//! summed indices `s`. This is what runs the equations a batched GEMM does not express
//! (one operand or three, an index summed within one operand, contracted indices that are not
//! one strided run); the others are GEMMs (`cpu::matmul`).
//!
//! Each output element walks the summed indices with an odometer that moves every operand's
//! offset by its stride, multiplying and adding in the interpreter's compute type
//! ([`Numeric::Acc`]). Tasks split the output elements.

use super::numeric::{check_numeric, elements, elements_mut, with_numeric, Arith, Numeric};
use lathe_ir::ops::linalg::parse_equation;
use lathe_ir::{DType, TensorType};
use std::ops::Range;

/// An einsum over known shapes.
#[derive(Clone, Debug)]
pub struct EinsumLoops {
    pub dtype: DType,
    /// Sizes of the output's indices, then of the summed ones.
    out_dims: Vec<usize>,
    sum_dims: Vec<usize>,
    /// Per operand, its stride along each output index and each summed index (0 where the
    /// operand does not have the index).
    out_strides: Vec<Vec<usize>>,
    sum_strides: Vec<Vec<usize>>,
    /// Elements of each operand.
    lens: Vec<usize>,
}

impl EinsumLoops {
    /// Prepares `equation` on operands of types `inputs`; errors for an equation the op
    /// rejects, bool, or unknown shapes.
    pub fn new(equation: &str, inputs: &[&TensorType]) -> Result<EinsumLoops, String> {
        let eq = parse_equation(equation)?;
        let dtype = inputs.first().ok_or("einsum has no operand")?.dtype;
        check_numeric("einsum", dtype)?;
        if eq.inputs.len() != inputs.len() {
            return Err(format!(
                "einsum {equation:?} names {} operands, got {}",
                eq.inputs.len(),
                inputs.len()
            ));
        }
        let mut sizes: Vec<(char, usize)> = vec![];
        let mut strides = vec![];
        for (letters, t) in eq.inputs.iter().zip(inputs) {
            let dims = t
                .shape
                .as_known()
                .filter(|d| d.len() == letters.len())
                .ok_or_else(|| format!("einsum operand {t} does not fit {equation:?}"))?;
            for (&c, &d) in letters.iter().zip(&dims) {
                match sizes.iter().find(|(l, _)| *l == c) {
                    Some(&(_, s)) if s != d => {
                        return Err(format!("einsum index '{c}' is {s} and {d}"));
                    }
                    Some(_) => {}
                    None => sizes.push((c, d)),
                }
            }
            let mut st = vec![1; dims.len()];
            for i in (0..dims.len().saturating_sub(1)).rev() {
                st[i] = st[i + 1] * dims[i + 1];
            }
            strides.push((letters.clone(), st, dims.iter().product::<usize>()));
        }
        let summed: Vec<char> = sizes
            .iter()
            .map(|&(c, _)| c)
            .filter(|c| !eq.output.contains(c))
            .collect();
        let size = |c: &char| sizes.iter().find(|(l, _)| l == c).map_or(1, |s| s.1);
        let along = |letters: &[char], st: &[usize], cs: &[char]| -> Vec<usize> {
            cs.iter()
                .map(|c| letters.iter().position(|l| l == c).map_or(0, |i| st[i]))
                .collect()
        };
        Ok(EinsumLoops {
            dtype,
            out_dims: eq.output.iter().map(size).collect(),
            sum_dims: summed.iter().map(size).collect(),
            out_strides: strides
                .iter()
                .map(|(l, st, _)| along(l, st, &eq.output))
                .collect(),
            sum_strides: strides
                .iter()
                .map(|(l, st, _)| along(l, st, &summed))
                .collect(),
            lens: strides.iter().map(|s| s.2).collect(),
        })
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        self.out_dims.iter().product()
    }

    /// Multiply-adds of the whole op.
    pub fn work(&self) -> usize {
        self.out_len() * self.sum_dims.iter().product::<usize>() * self.lens.len()
    }

    /// Computes output elements `range` on the calling thread.
    ///
    /// # Safety
    /// `inputs` point at the dense operands (of this kernel's dtype and shapes), which nothing
    /// writes now; `out` at the whole dense output, whose elements `range` nothing else
    /// touches now.
    pub unsafe fn run(&self, inputs: &[*const u8], out: *mut u8, range: Range<usize>) {
        with_numeric!(self.dtype, T => {
            let xs: Vec<&[T]> = inputs
                .iter()
                .zip(&self.lens)
                .map(|(&p, &n)| elements(p as *const T, n))
                .collect();
            let out = elements_mut((out as *mut T).wrapping_add(range.start), range.len());
            self.run_typed::<T>(&xs, out, range.start)
        }, bool => ())
    }

    /// Output elements `first..first + out.len()` into `out`.
    fn run_typed<T: Numeric>(&self, xs: &[&[T]], out: &mut [T], first: usize) {
        let ops = xs.len();
        let mut base = vec![0usize; ops];
        let mut off = vec![0usize; ops];
        let mut idx = vec![0usize; self.sum_dims.len()];
        let sums: usize = self.sum_dims.iter().product();
        for (k, o) in out.iter_mut().enumerate() {
            // The operands' offsets at output element `first + k`.
            let mut rest = first + k;
            base.fill(0);
            for (a, &d) in self.out_dims.iter().enumerate().rev() {
                let i = rest % d;
                rest /= d;
                for (b, st) in base.iter_mut().zip(&self.out_strides) {
                    *b += i * st[a];
                }
            }
            off.copy_from_slice(&base);
            idx.fill(0);
            let mut acc = T::Acc::ZERO;
            for _ in 0..sums {
                let mut p = T::Acc::ONE;
                for (x, &at) in xs.iter().zip(&off) {
                    p = p.mul(x[at].acc());
                }
                acc = acc.add(p);
                // Next summed index, innermost first.
                for a in (0..idx.len()).rev() {
                    idx[a] += 1;
                    for (f, st) in off.iter_mut().zip(&self.sum_strides) {
                        *f += st[a];
                    }
                    if idx[a] < self.sum_dims[a] {
                        break;
                    }
                    for (f, st) in off.iter_mut().zip(&self.sum_strides) {
                        *f -= idx[a] * st[a];
                    }
                    idx[a] = 0;
                }
            }
            *o = T::from_acc(acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::ops::Op;
    use lathe_ir::Tensor;

    #[test]
    fn equations_a_gemm_does_not_take_match_the_interpreter() {
        let cases: &[(&str, &[&[usize]])] = &[
            ("ij->ji", &[&[3, 4]]),
            ("ij->", &[&[3, 4]]),
            ("ij,jk->k", &[&[2, 3], &[3, 4]]),
            ("ij,jk,kl->il", &[&[2, 3], &[3, 4], &[4, 5]]),
            ("abc,bac->c", &[&[2, 3, 4], &[3, 2, 4]]),
            ("ab,bc", &[&[3, 4], &[4, 5]]),
            (",ij->ij", &[&[], &[2, 3]]),
            ("i,i->", &[&[0], &[0]]),
        ];
        for dt in [DType::I16, DType::U64, DType::F64] {
            for &(eq, shapes) in cases {
                let xs: Vec<Tensor> = shapes
                    .iter()
                    .enumerate()
                    .map(|(s, d)| {
                        let n: usize = d.iter().product();
                        let v: Vec<i64> = (0..n as i64)
                            .map(|i| (i * 31 + s as i64) % 17 - 8)
                            .collect();
                        Tensor::from_i64(dt, d, &v)
                    })
                    .collect();
                let refs: Vec<&Tensor> = xs.iter().collect();
                let want = Op::Einsum {
                    equation: eq.into(),
                }
                .eval(&refs)
                .unwrap()
                .remove(0);
                let tys: Vec<TensorType> = xs.iter().map(|x| x.ty()).collect();
                let k = EinsumLoops::new(eq, &tys.iter().collect::<Vec<_>>()).unwrap();
                let bytes: Vec<Vec<u8>> = xs.iter().map(|x| x.to_le_bytes()).collect();
                let ptrs: Vec<*const u8> = bytes.iter().map(|b| b.as_ptr()).collect();
                let mut out = vec![0u8; want.size_bytes()];
                let n = k.out_len();
                for r in [n / 2..n, 0..n / 2] {
                    // SAFETY: dense operands and output of the kernel's shapes.
                    unsafe { k.run(&ptrs, out.as_mut_ptr(), r) };
                }
                assert_eq!(out, want.to_le_bytes(), "{eq} {dt}");
            }
        }
    }
}
