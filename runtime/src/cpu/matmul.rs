//! `matmul`, `batch_matmul` and two-operand `einsum` as one thing: a batch of strided GEMMs.
//!
//! Each op becomes `C[b] = A[b] · B[b]` over a (possibly multi-dimensional) batch, where every
//! matrix is a strided view into its operand, so transposes, heads of an attention layer and
//! broadcast batch axes cost no copies: they are strides (zero for broadcast).
//!
//! For einsum, the subscripts fall into four groups: batch (in A, B and the output), m (A and
//! output), n (B and output) and k (A and B, summed). Extra m or n letters become batch loops;
//! several k letters must merge into one strided run (they do when contiguous in both
//! operands), else the einsum is not lowered here (it runs `kernels::einsum`'s loops).

use lathe_ir::ops::linalg::parse_equation;
use lathe_ir::ops::Op;

/// A batch of GEMMs over strided views, in elements (of any dtype).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchedGemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Strides `(row, col)` of A (`m × k`), B (`k × n`) and C (`m × n`).
    pub a: (usize, usize),
    pub b: (usize, usize),
    pub c: (usize, usize),
    /// Batch loops: `(size, [stride in A, stride in B, stride in C])`, outermost first.
    pub batch: Vec<(usize, [usize; 3])>,
}

impl BatchedGemm {
    /// How many GEMMs.
    pub fn batch_count(&self) -> usize {
        self.batch.iter().map(|b| b.0).product()
    }

    /// Element offsets of A, B and C for the `index`-th GEMM of the batch.
    pub fn offsets(&self, mut index: usize) -> [usize; 3] {
        let mut off = [0; 3];
        for &(size, strides) in self.batch.iter().rev() {
            let i = index % size;
            index /= size;
            for (o, s) in off.iter_mut().zip(strides) {
                *o += i * s;
            }
        }
        off
    }

    /// Whether C is dense row-major `[batch..., m, n]` with rows of `n` consecutive elements
    /// (so output row `r` of the flattened output is row `r % m` of GEMM `r / m`).
    pub fn c_is_dense_rows(&self) -> bool {
        if self.c != (self.n, 1) {
            return false;
        }
        let mut expect = self.m * self.n;
        for &(size, s) in self.batch.iter().rev() {
            if size > 1 && s[2] != expect {
                return false;
            }
            expect *= size;
        }
        true
    }

    /// Lowers a linalg op on operands of shapes `a` and `b` producing `out`, or says why not.
    pub fn from_op(op: &Op, a: &[usize], b: &[usize], out: &[usize]) -> Result<Self, String> {
        match op {
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => {
                if a.len() != 2 || b.len() != 2 {
                    return Err("matmul operands must be rank 2".into());
                }
                let (m, k) = if *transpose_a {
                    (a[1], a[0])
                } else {
                    (a[0], a[1])
                };
                let n = if *transpose_b { b[0] } else { b[1] };
                Ok(BatchedGemm {
                    m,
                    n,
                    k,
                    a: if *transpose_a { (1, a[1]) } else { (a[1], 1) },
                    b: if *transpose_b { (1, b[1]) } else { (b[1], 1) },
                    c: (n, 1),
                    batch: vec![],
                })
            }
            Op::BatchMatMul { adj_x, adj_y } => batch_matmul(a, b, out, *adj_x, *adj_y),
            Op::Einsum { equation } => einsum(equation, a, b, out),
            other => Err(format!("{} is not a matrix product", other.mnemonic())),
        }
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn batch_matmul(
    a: &[usize],
    b: &[usize],
    out: &[usize],
    adj_x: bool,
    adj_y: bool,
) -> Result<BatchedGemm, String> {
    if a.len() < 2 || b.len() < 2 || out.len() < 2 {
        return Err("batch_matmul operands must have rank ≥ 2".into());
    }
    let (ra, rb, ro) = (a.len(), b.len(), out.len());
    let (sa, sb, so) = (strides(a), strides(b), strides(out));
    let (m, k) = if adj_x {
        (a[ra - 1], a[ra - 2])
    } else {
        (a[ra - 2], a[ra - 1])
    };
    let n = if adj_y { b[rb - 2] } else { b[rb - 1] };
    let mut batch = vec![];
    for d in 0..ro - 2 {
        // Batch axis `d` of the output, aligned from the right with the operands' batch axes.
        let from_end = ro - 2 - d;
        let pick = |shape: &[usize], st: &[usize]| -> usize {
            let r = shape.len();
            if from_end > r - 2 {
                return 0;
            }
            let i = r - 2 - from_end;
            if shape[i] == 1 {
                0
            } else {
                st[i]
            }
        };
        if out[d] > 1 {
            batch.push((out[d], [pick(a, &sa), pick(b, &sb), so[d]]));
        }
    }
    Ok(BatchedGemm {
        m,
        n,
        k,
        a: if adj_x {
            (1, a[ra - 1])
        } else {
            (a[ra - 1], 1)
        },
        b: if adj_y {
            (1, b[rb - 1])
        } else {
            (b[rb - 1], 1)
        },
        c: (out[ro - 1], 1),
        batch,
    })
}

/// Where one subscript letter appears: its size and its stride in A, B and the output
/// (`None` where absent).
#[derive(Clone, Copy, Debug)]
struct Letter {
    size: usize,
    a: Option<usize>,
    b: Option<usize>,
    c: Option<usize>,
}

fn einsum(eq: &str, a: &[usize], b: &[usize], out: &[usize]) -> Result<BatchedGemm, String> {
    let eq = parse_equation(eq)?;
    let [la, lb] = eq.inputs.as_slice() else {
        return Err("only two-operand einsum is lowered to GEMM".into());
    };
    let lc = &eq.output;
    if la.len() != a.len() || lb.len() != b.len() || lc.len() != out.len() {
        return Err("einsum subscripts do not match the operand ranks".into());
    }
    let (sa, sb, sc) = (strides(a), strides(b), strides(out));
    let mut letters: Vec<(char, Letter)> = vec![];
    let mut note = |ch: char, size: usize, which: usize, stride: usize| -> Result<(), String> {
        let entry = match letters.iter_mut().find(|(c, _)| *c == ch) {
            Some((_, l)) => l,
            None => {
                letters.push((
                    ch,
                    Letter {
                        size,
                        a: None,
                        b: None,
                        c: None,
                    },
                ));
                &mut letters.last_mut().unwrap().1
            }
        };
        if entry.size != size {
            return Err(format!(
                "einsum letter `{ch}` has sizes {} and {size}",
                entry.size
            ));
        }
        let slot = [&mut entry.a, &mut entry.b, &mut entry.c][which].take();
        if slot.is_some() {
            return Err(format!("einsum letter `{ch}` repeats within an operand"));
        }
        *[&mut entry.a, &mut entry.b, &mut entry.c][which] = Some(stride);
        Ok(())
    };
    for (i, &ch) in la.iter().enumerate() {
        note(ch, a[i], 0, sa[i])?;
    }
    for (i, &ch) in lb.iter().enumerate() {
        note(ch, b[i], 1, sb[i])?;
    }
    for (i, &ch) in lc.iter().enumerate() {
        note(ch, out[i], 2, sc[i])?;
    }
    let (mut ms, mut ns, mut ks, mut batch) = (vec![], vec![], vec![], vec![]);
    for (ch, l) in &letters {
        match (l.a, l.b, l.c) {
            (Some(x), Some(y), Some(z)) => batch.push((l.size, [x, y, z])),
            (Some(x), None, Some(z)) => ms.push((l.size, x, z)),
            (None, Some(y), Some(z)) => ns.push((l.size, y, z)),
            (Some(x), Some(y), None) => ks.push((l.size, x, y)),
            _ => {
                return Err(format!(
                    "einsum letter `{ch}` is summed within one operand (not a matrix product)"
                ))
            }
        }
    }
    // The innermost (smallest output stride) m and n letters are the GEMM's; others loop.
    ms.sort_by_key(|&(_, _, z)| std::cmp::Reverse(z));
    ns.sort_by_key(|&(_, _, z)| std::cmp::Reverse(z));
    let (m, a_row, c_row) = ms.pop().unwrap_or((1, 0, 0));
    let (n, b_col, c_col) = ns.pop().unwrap_or((1, 0, 0));
    for (size, x, z) in ms {
        batch.push((size, [x, 0, z]));
    }
    for (size, y, z) in ns {
        batch.push((size, [0, y, z]));
    }
    // k letters merge into one run when each one's stride is the next one's run length.
    ks.sort_by_key(|&(_, x, _)| std::cmp::Reverse(x));
    let (mut k, mut a_col, mut b_row) = (1, 0, 0);
    if let Some(&(size, x, y)) = ks.last() {
        (k, a_col, b_row) = (size, x, y);
        for &(size2, x2, y2) in ks.iter().rev().skip(1) {
            if x2 != k * a_col || y2 != k * b_row {
                return Err("einsum sums over letters that are not one strided run".into());
            }
            k *= size2;
        }
    }
    batch.retain(|b| b.0 > 1);
    // Keep batch loops in output order (outermost = largest output stride).
    batch.sort_by_key(|b| std::cmp::Reverse(b.1[2]));
    Ok(BatchedGemm {
        m,
        n,
        k,
        a: (a_row, a_col),
        b: (b_row, b_col),
        c: (c_row, c_col),
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_scores_are_strided_heads() {
        // BTNH,BSNH->BNTS with B=1, T=S=128, N=4, H=64: per head, Q_n · K_nᵀ.
        let g = BatchedGemm::from_op(
            &Op::Einsum {
                equation: "BTNH,BSNH->BNTS".into(),
            },
            &[1, 128, 4, 64],
            &[1, 128, 4, 64],
            &[1, 4, 128, 128],
        )
        .unwrap();
        assert_eq!((g.m, g.n, g.k), (128, 128, 64));
        assert_eq!(g.a, (256, 1));
        assert_eq!(g.b, (1, 256));
        assert_eq!(g.c, (128, 1));
        assert_eq!(g.batch, vec![(4, [64, 64, 128 * 128])]);
        assert!(g.c_is_dense_rows());
    }

    #[test]
    fn attention_context_writes_interleaved_heads() {
        let g = BatchedGemm::from_op(
            &Op::Einsum {
                equation: "BNTS,BSNH->BTNH".into(),
            },
            &[1, 4, 128, 128],
            &[1, 128, 4, 64],
            &[1, 128, 4, 64],
        )
        .unwrap();
        assert_eq!((g.m, g.n, g.k), (128, 64, 128));
        assert_eq!(g.c, (256, 1));
        assert!(!g.c_is_dense_rows());
    }

    #[test]
    fn batch_matmul_broadcasts_batch_axes() {
        let g = BatchedGemm::from_op(
            &Op::BatchMatMul {
                adj_x: false,
                adj_y: true,
            },
            &[3, 2, 5],
            &[1, 4, 5],
            &[3, 2, 4],
        )
        .unwrap();
        assert_eq!((g.m, g.n, g.k), (2, 4, 5));
        assert_eq!(g.b, (1, 5));
        assert_eq!(g.batch, vec![(3, [10, 0, 8])]);
    }

    #[test]
    fn reductions_inside_one_operand_are_refused() {
        let e = BatchedGemm::from_op(
            &Op::Einsum {
                equation: "ij,jk->k".into(),
            },
            &[2, 3],
            &[3, 4],
            &[4],
        )
        .unwrap_err();
        assert!(e.contains("`i`"), "{e}");
    }
}
