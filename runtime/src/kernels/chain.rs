//! Elementwise chains over the columns of a matrix: the usual tail of a convolution or a
//! dense layer (a per-channel bias or scale, a residual input, a ReLU or a clamp), run with the
//! widest vectors this CPU has.
//!
//! Generated row kernels ([`crate::cpu::codegen`]) compute any fused body, but Cranelift's
//! x86-64 SIMD is 128 bits wide; a [`Chain`] is the same body when it is a straight line of
//! the ops below, run 16 lanes at a time under AVX-512 (8 under AVX2). The analysis finds
//! chains in a body's expression DAG (`codegen::chain`), and a row kernel that has one runs it
//! instead of its generated code.
//!
//! # Semantics
//!
//! A chain reads one `rows × row_len` input (the *start*), applies its stages in order to each
//! element, and writes one `rows × row_len` output (which may be the start or another input:
//! every element is read before it is written). Each stage computes exactly what the
//! interpreter computes for its op on f32, bit for bit: `add`, `sub`, `mul` and `div` are one
//! IEEE operation each (never fused), `maximum`/`minimum` keep the IR's NaN and signed-zero
//! rules ([`Simd::maximum`]), `relu` is `x < 0 ? 0 : x` and `relu6` clamps to `[0, 6]`, NaN
//! passing through both.

use super::simd::{self, load_first, store_first, Isa, Simd};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The second operand of a binary stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Operand {
    /// One value for every element.
    Scalar(f32),
    /// One value per column (a per-channel bias or scale), wrapped: [`Operand::column`]'s
    /// `row_len + MAX_LANES - 1` values, so that a vector starting at any column reads on.
    Column(Vec<f32>),
    /// Input `k` of the kernel, a dense `rows × row_len` matrix (a residual).
    Input(usize),
}

/// The widest vector's lanes (AVX-512's 16 f32).
pub const MAX_LANES: usize = 16;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(MAX_LANES == <simd::Avx512 as Simd>::LANES);

impl Operand {
    /// A per-column operand from one value per column: element `i` of the result is
    /// `values[i % len]`, for `len + MAX_LANES - 1` elements.
    pub fn column(values: &[f32]) -> Operand {
        let n = values.len();
        if n == 0 {
            // No columns: no valid chain reads it (`Chain::check` refuses it).
            return Operand::Column(vec![]);
        }
        Operand::Column((0..n + MAX_LANES - 1).map(|i| values[i % n]).collect())
    }
}

/// A binary op of a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

/// One step of a chain, applied to the running value `x`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stage {
    /// `op(x, operand)`, or `op(operand, x)` when `operand_first` (it matters for `sub`,
    /// `div`, and for which NaN or zero `maximum`/`minimum` return).
    Binary {
        op: Binary,
        operand: Operand,
        operand_first: bool,
    },
    /// `x < 0 ? 0 : x`.
    Relu,
    /// `x < 0 ? 0 : x > 6 ? 6 : x`.
    Relu6,
}

/// A straight line of elementwise stages over a `rows × row_len` f32 matrix (see the module
/// docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    /// The input the chain starts from.
    pub start: usize,
    pub stages: Vec<Stage>,
    pub row_len: usize,
}

impl Chain {
    /// Checks a chain read from a file against the kernel it belongs to: the kernel has one
    /// output, the inputs the chain names exist, and per-column operands have a value per
    /// column.
    pub fn check(
        &self,
        num_inputs: usize,
        num_outputs: usize,
        row_len: usize,
    ) -> Result<(), String> {
        if num_outputs != 1 {
            return Err(format!("chain for a kernel with {num_outputs} outputs"));
        }
        let input = |k: usize| {
            (k < num_inputs)
                .then_some(())
                .ok_or_else(|| format!("chain reads input {k} of a kernel with {num_inputs}"))
        };
        input(self.start)?;
        if self.row_len != row_len {
            return Err(format!(
                "chain over rows of {} for a kernel with rows of {row_len}",
                self.row_len
            ));
        }
        for s in &self.stages {
            match s {
                Stage::Binary {
                    operand: Operand::Input(k),
                    ..
                } => input(*k)?,
                Stage::Binary {
                    operand: Operand::Column(c),
                    ..
                } if row_len == 0 || c.len() != row_len + MAX_LANES - 1 => {
                    return Err(format!(
                        "chain operand of {} values for rows of {row_len}",
                        c.len()
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs rows `rows` with the instruction set `isa`.
    ///
    /// # Safety
    ///
    /// `inputs` holds [`Chain::check`]'s count of pointers, each to a dense `rows.end ×
    /// row_len` f32 matrix (at least; only the start and `Input` operands are read), `out`
    /// addresses such a matrix that no other thread touches in `rows`, and it overlaps no
    /// input except exactly (the same base pointer). `isa` is supported by this CPU.
    pub unsafe fn run(&self, isa: Isa, inputs: &[*const f32], out: *mut f32, rows: Range<usize>) {
        run_rows(isa, self, inputs, out, rows)
    }
}

simd::multiversion! {
    fn run_rows(chain: &Chain, inputs: &[*const f32], out: *mut f32, rows: Range<usize>) => rows_generic
}

/// Vectors per chunk: a chunk's values stay in registers while every stage runs over them.
const CHUNK: usize = 8;

/// Runs the chain over rows `rows`, seen as one flat run of `rows.len() × row_len` elements
/// (every matrix a chain reads or writes is dense; a column operand is stored wrapped, so a
/// vector may start at any column). Chunks of [`CHUNK`] whole vectors first, then single
/// vectors, the last one masked. Within a chunk the stages run one after the other over
/// registers, dispatching once per stage per chunk; each stage reads its operands at the
/// chunk's elements before the chunk is stored, so an output that is also an input stays
/// correct.
#[inline(always)]
fn rows_generic<S: Simd>(chain: &Chain, inputs: &[*const f32], out: *mut f32, rows: Range<usize>) {
    let n = chain.row_len;
    let end = rows.end * n;
    let mut p = rows.start * n;
    // SAFETY: `Chain::run`'s contract: every matrix named has `rows.end × n` floats and the
    // output is this call's alone in `rows`; each chunk lies in `p..end`.
    unsafe {
        while p + CHUNK * S::LANES <= end {
            chunk::<S, CHUNK>(chain, inputs, out, p, S::LANES);
            p += CHUNK * S::LANES;
        }
        while p < end {
            let count = (end - p).min(S::LANES);
            chunk::<S, 1>(chain, inputs, out, p, count);
            p += count;
        }
    }
}

/// `U` vectors from flat element `p`, the last holding `count` elements (the others whole).
///
/// # Safety
///
/// As [`Chain::run`], with elements `p .. p + (U - 1) · LANES + count` inside its rows.
#[inline(always)]
unsafe fn chunk<S: Simd, const U: usize>(
    chain: &Chain,
    inputs: &[*const f32],
    out: *mut f32,
    p: usize,
    count: usize,
) {
    let n = chain.row_len;
    let len = |i: usize| if i + 1 == U { count } else { S::LANES };
    // The column of each vector's first element.
    let mut col = [p % n; U];
    for i in 1..U {
        col[i] = col[i - 1] + S::LANES;
        while col[i] >= n {
            col[i] -= n;
        }
    }
    // SAFETY: the caller's contract; a column operand holds `n + MAX_LANES - 1` values, so
    // `LANES` values from any column `< n` are in it.
    unsafe {
        let start = inputs[chain.start];
        let mut v: [S::V; U] =
            std::array::from_fn(|i| load_first::<S>(start.add(p + i * S::LANES), len(i)));
        for stage in &chain.stages {
            match stage {
                // Plain loops over `v` (not `array::map`, whose closure would not inline
                // into this instruction set's code).
                Stage::Relu => {
                    for x in &mut v {
                        *x = S::max(S::zero(), *x);
                    }
                }
                Stage::Relu6 => {
                    // `6 < r ? 6 : r` keeps a NaN `r`.
                    let six = S::splat(6.0);
                    for x in &mut v {
                        *x = S::min(six, S::max(S::zero(), *x));
                    }
                }
                &Stage::Binary {
                    op: op @ (Binary::Maximum | Binary::Minimum),
                    operand: Operand::Scalar(c),
                    operand_first,
                } if !c.is_nan() && c.to_bits() != (-0.0f32).to_bits() => {
                    // A clamp to a constant `c` (not NaN, not -0): `MAXPS(c, x)` is
                    // `c > x ? c : x`, which is `maximum(c, x)` exactly and `maximum(x, c)`
                    // but for `x = -0, c = +0` (it gives -0; adding +0 makes it +0 and
                    // changes nothing else); `minimum` likewise.
                    let (cv, fix) = (S::splat(c), !operand_first && c == 0.0);
                    let max = op == Binary::Maximum;
                    for x in &mut v {
                        let r = if max { S::max(cv, *x) } else { S::min(cv, *x) };
                        *x = if fix { S::add(r, S::zero()) } else { r };
                    }
                }
                Stage::Binary {
                    op,
                    operand,
                    operand_first,
                } => {
                    let o: [S::V; U] = match operand {
                        Operand::Scalar(c) => [S::splat(*c); U],
                        Operand::Column(c) => {
                            std::array::from_fn(|i| load_first::<S>(c.as_ptr().add(col[i]), len(i)))
                        }
                        Operand::Input(k) => {
                            let q = inputs[*k];
                            std::array::from_fn(|i| {
                                load_first::<S>(q.add(p + i * S::LANES), len(i))
                            })
                        }
                    };
                    let (a, b) = if *operand_first { (o, v) } else { (v, o) };
                    v = match op {
                        Binary::Add => std::array::from_fn(|i| S::add(a[i], b[i])),
                        Binary::Sub => std::array::from_fn(|i| S::sub(a[i], b[i])),
                        Binary::Mul => std::array::from_fn(|i| S::mul(a[i], b[i])),
                        Binary::Div => std::array::from_fn(|i| S::div(a[i], b[i])),
                        Binary::Maximum => std::array::from_fn(|i| S::maximum(a[i], b[i])),
                        Binary::Minimum => std::array::from_fn(|i| S::minimum(a[i], b[i])),
                    };
                }
            }
        }
        for (i, x) in v.into_iter().enumerate() {
            store_first::<S>(out.add(p + i * S::LANES), x, len(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpreter's f32 semantics of each stage, one element at a time.
    fn reference(chain: &Chain, inputs: &[Vec<f32>], r: usize, j: usize) -> f32 {
        let n = chain.row_len;
        let mut x = inputs[chain.start][r * n + j];
        for s in &chain.stages {
            x = match s {
                Stage::Relu => {
                    if x < 0.0 {
                        0.0
                    } else {
                        x
                    }
                }
                Stage::Relu6 => (x as f64).clamp(0.0, 6.0) as f32,
                Stage::Binary {
                    op,
                    operand,
                    operand_first,
                } => {
                    let o = match operand {
                        Operand::Scalar(v) => *v,
                        Operand::Column(c) => c[j],
                        Operand::Input(k) => inputs[*k][r * n + j],
                    };
                    let (a, b) = if *operand_first { (o, x) } else { (x, o) };
                    match op {
                        Binary::Add => a + b,
                        Binary::Sub => a - b,
                        Binary::Mul => a * b,
                        Binary::Div => a / b,
                        Binary::Maximum => {
                            if a.is_nan() || a > b {
                                a
                            } else {
                                b
                            }
                        }
                        Binary::Minimum => {
                            if a.is_nan() || a < b {
                                a
                            } else {
                                b
                            }
                        }
                    }
                }
            };
        }
        x
    }

    #[test]
    fn every_stage_matches_the_interpreter_bit_for_bit_on_every_isa() {
        // Rows of 37: two whole AVX-512 vectors and a masked tail; special values included.
        let (rows, n) = (3, 37);
        let specials = [f32::NAN, -0.0, 0.0, 6.0, -7.5, 7.0, f32::INFINITY, 1e-40];
        let x: Vec<f32> = (0..rows * n)
            .map(|i| {
                specials
                    .get(i % 11)
                    .copied()
                    .unwrap_or(i as f32 * 0.37 - 5.0)
            })
            .collect();
        let res: Vec<f32> = (0..rows * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let col: Vec<f32> = (0..n)
            .map(|j| if j == 5 { -0.0 } else { j as f32 * 0.5 - 2.0 })
            .collect();
        let binary = |op, operand: Operand, operand_first| Stage::Binary {
            op,
            operand,
            operand_first,
        };
        let mut stages = vec![];
        for op in [
            Binary::Add,
            Binary::Sub,
            Binary::Mul,
            Binary::Div,
            Binary::Maximum,
            Binary::Minimum,
        ] {
            for first in [false, true] {
                stages.push(vec![binary(op, Operand::column(&col), first)]);
                for c in [0.0, -0.0, 6.0, f32::NAN] {
                    stages.push(vec![binary(op, Operand::Scalar(c), first)]);
                }
                stages.push(vec![binary(op, Operand::Input(1), first)]);
            }
        }
        stages.push(vec![Stage::Relu]);
        stages.push(vec![Stage::Relu6]);
        // MobileNet's and ResNet's tails.
        stages.push(vec![
            binary(Binary::Add, Operand::column(&col), false),
            binary(Binary::Maximum, Operand::Scalar(0.0), false),
            binary(Binary::Minimum, Operand::Scalar(6.0), false),
        ]);
        stages.push(vec![
            binary(Binary::Add, Operand::Input(1), true),
            Stage::Relu,
        ]);
        let inputs = [x, res];
        let ptrs: Vec<*const f32> = inputs.iter().map(|v| v.as_ptr()).collect();
        for isa in Isa::all_supported() {
            for st in &stages {
                let chain = Chain {
                    start: 0,
                    stages: st.clone(),
                    row_len: n,
                };
                chain.check(2, 1, n).unwrap();
                let mut out = vec![f32::NAN; rows * n];
                // Rows 1.. only: row 0 stays untouched.
                // SAFETY: two dense 3 × 37 inputs, a distinct output of the same size.
                unsafe { chain.run(isa, &ptrs, out.as_mut_ptr(), 1..rows) };
                for (i, &got) in out.iter().enumerate() {
                    let (r, j) = (i / n, i % n);
                    let want = if r == 0 {
                        f32::NAN
                    } else {
                        reference(&chain, &inputs, r, j)
                    };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{isa:?} {st:?} element ({r}, {j}): {got} want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn writes_over_an_input_a_later_stage_reads() {
        // The output is the residual, read by the second stage: the first stage must not
        // have overwritten it. Rows of 20 and 5000 floats: vectors start mid-row.
        for n in [20, 5000] {
            let rows = 3;
            let start: Vec<f32> = (0..rows * n).map(|i| (i % 13) as f32 - 6.0).collect();
            let col: Vec<f32> = (0..n).map(|j| (j % 5) as f32).collect();
            let res0: Vec<f32> = (0..rows * n).map(|i| (i % 7) as f32 * -1.5).collect();
            let chain = Chain {
                start: 0,
                stages: vec![
                    Stage::Binary {
                        op: Binary::Add,
                        operand: Operand::column(&col),
                        operand_first: false,
                    },
                    Stage::Binary {
                        op: Binary::Add,
                        operand: Operand::Input(1),
                        operand_first: false,
                    },
                    Stage::Relu,
                ],
                row_len: n,
            };
            for isa in Isa::all_supported() {
                let mut res = res0.clone();
                let p = res.as_mut_ptr();
                // SAFETY: dense 3 × n matrices; the output is input 1 exactly.
                unsafe { chain.run(isa, &[start.as_ptr(), p as *const f32], p, 0..rows) };
                for i in 0..rows * n {
                    let want = (start[i] + col[i % n] + res0[i]).max(0.0);
                    assert_eq!(res[i], want, "{isa:?} n={n} element {i}");
                }
            }
        }
    }

    #[test]
    fn runs_in_place() {
        let n = 20;
        let mut x: Vec<f32> = (0..2 * n).map(|i| i as f32 - 20.0).collect();
        let chain = Chain {
            start: 0,
            stages: vec![Stage::Relu],
            row_len: n,
        };
        let p = x.as_mut_ptr();
        for isa in Isa::all_supported() {
            // SAFETY: the output is the start input exactly.
            unsafe { chain.run(isa, &[p as *const f32], p, 0..2) };
        }
        let want: Vec<f32> = (0..2 * n).map(|i| (i as f32 - 20.0).max(0.0)).collect();
        assert_eq!(x, want);
    }

    #[test]
    fn checks_what_a_file_says() {
        let chain = |stage| Chain {
            start: 0,
            stages: vec![stage],
            row_len: 4,
        };
        let col = |operand| Stage::Binary {
            op: Binary::Add,
            operand,
            operand_first: false,
        };
        assert!(chain(col(Operand::column(&[0.0; 4])))
            .check(1, 1, 4)
            .is_ok());
        let short = chain(col(Operand::Column(vec![0.0; 4])));
        assert!(short.check(1, 1, 4).unwrap_err().contains("4 values"));
        assert!(chain(Stage::Relu).check(1, 1, 5).is_err());
        let input = Stage::Binary {
            op: Binary::Add,
            operand: Operand::Input(2),
            operand_first: false,
        };
        assert!(chain(input).check(2, 1, 4).unwrap_err().contains("input 2"));
        let two = chain(Stage::Relu).check(1, 2, 4).unwrap_err();
        assert!(two.contains("2 outputs"), "{two}");
        assert_eq!(Operand::column(&[]), Operand::Column(vec![]));
    }
}
