//! ONNX `Einsum`, rewritten into the equations the IR's `einsum` takes (letters only, none
//! repeated within an operand):
//!
//! - an ellipsis (`...`) becomes fresh letters, as many as the axes it covers in each operand,
//!   aligned from the right as NumPy broadcasts them; the output's ellipsis (or, without `->`,
//!   the implicit output's leading one) takes them all;
//! - a letter repeated within an operand (a diagonal, `ii`) becomes a fresh letter, with the
//!   operand multiplied by a constant identity mask over the two axes; the fresh letter is in
//!   no output, so the einsum sums it away and leaves the diagonal.
//!
//! An equation with neither goes to the IR unchanged.

use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::BinaryOp as B;
use lathe_ir::{Op, Tensor, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row("Einsum", &["einsum", "mul"], import_einsum)]
}

fn import_einsum(b: &mut Builder, cx: &NodeCx) -> Out {
    let equation = cx.attrs.str_or("equation", "")?.replace(' ', "");
    let mut ins: Vec<ValueId> = cx.inputs.iter().flatten().copied().collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let repeats = terms.iter().any(|t| {
        let letters: Vec<char> = t.chars().filter(char::is_ascii_alphabetic).collect();
        (1..letters.len()).any(|k| letters[..k].contains(&letters[k]))
    });
    if (!equation.contains("...") && !repeats) || terms.len() != ins.len() {
        return one(b.op(Op::Einsum { equation }, &ins)?);
    }
    let mut fresh = ('a'..='z')
        .chain('A'..='Z')
        .filter(|c| !equation.contains(*c));
    let mut next = || {
        fresh
            .next()
            .ok_or_else(|| format!("einsum {equation:?} uses too many indices to rewrite"))
    };
    // Ellipses: the axes each covers, then that many fresh letters for the widest.
    let mut covers = vec![0usize; terms.len()];
    for (i, t) in terms.iter().enumerate() {
        if let Some((l, r)) = t.split_once("...") {
            let named = l.len() + r.len();
            covers[i] = b.rank(ins[i]).checked_sub(named).ok_or_else(|| {
                format!(
                    "einsum {equation:?}: operand {i} has {} axes, fewer than its {named} indices",
                    b.rank(ins[i])
                )
            })?;
        }
    }
    let ellipsis = (0..covers.iter().copied().max().unwrap_or(0))
        .map(|_| next())
        .collect::<Result<String, _>>()?;
    let expand = |t: &str, n: usize| t.replacen("...", &ellipsis[ellipsis.len() - n..], 1);
    let mut new_terms: Vec<Vec<char>> = terms
        .iter()
        .zip(&covers)
        .map(|(t, &n)| expand(t, n).chars().collect())
        .collect();
    let output = match rhs {
        Some(r) => expand(r, ellipsis.len()),
        // NumPy's implicit output: the ellipsis, then the letters used once, sorted.
        None => {
            let all: Vec<char> = terms.iter().flat_map(|t| t.chars()).collect();
            let mut once: Vec<char> = all
                .iter()
                .copied()
                .filter(|c| c.is_ascii_alphabetic() && all.iter().filter(|d| *d == c).count() == 1)
                .collect();
            once.sort_unstable();
            ellipsis.chars().chain(once).collect()
        }
    };
    // Diagonals: each repeat of a letter becomes a fresh one, its axis masked against the first.
    for (i, t) in new_terms.iter_mut().enumerate() {
        for p in 1..t.len() {
            let Some(q) = t[..p].iter().position(|c| *c == t[p]) else {
                continue;
            };
            t[p] = next()?;
            ins[i] = diagonal_mask(b, ins[i], q, p)?;
        }
    }
    let inputs: Vec<String> = new_terms.iter().map(|t| t.iter().collect()).collect();
    let equation = format!("{}->{output}", inputs.join(","));
    one(b.op(Op::Einsum { equation }, &ins)?)
}

/// `x` times the identity over its axes `q` and `p` (which must be of one known size), zero off
/// their diagonal.
fn diagonal_mask(b: &mut Builder, x: ValueId, q: usize, p: usize) -> Result<ValueId, String> {
    let ty = b.ty(x).clone();
    let dims = ty.shape.dims();
    let n = match (dims[q].known(), dims[p].known()) {
        (Some(m), Some(n)) if m == n => n,
        _ => {
            return Err(format!(
                "an einsum diagonal needs two axes of one known size, got axes {q} and {p} of {ty}"
            ))
        }
    };
    let mut shape = vec![1usize; dims.len()];
    (shape[q], shape[p]) = (n, n);
    let eye: Vec<f64> = (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect();
    let mask = b.konst(Tensor::from_f64(ty.dtype, &shape, &eye));
    b.op(Op::Binary(B::Mul), &[x, mask])
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, run, A};
    use lathe_ir::Tensor;

    fn einsum(equation: &str, xs: &[&Tensor]) -> Result<Tensor, String> {
        let names = ["a", "b", "c"];
        let inputs: Vec<(&str, &Tensor)> = names.iter().copied().zip(xs.iter().copied()).collect();
        let attrs = [("equation", A::S(equation))];
        let g = one_node(
            12,
            "Einsum",
            &inputs,
            &[],
            &attrs,
            &names[..xs.len()],
            &["y"],
        )?;
        Ok(run(&g, xs).remove(0))
    }

    fn iota(dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product();
        Tensor::from_vec(dims, (0..n).map(|v| v as f32).collect())
    }

    #[test]
    fn ellipsis_and_diagonals_are_rewritten() {
        // The batch diagonal of [2, 3, 3]: rows 0, 4, 8 of each matrix.
        let x = iota(&[2, 3, 3]);
        let y = einsum("...ii->...i", &[&x]).unwrap();
        assert_eq!(y.shape(), [2, 3]);
        assert_eq!(y.to_f64_vec(), [0.0, 4.0, 8.0, 9.0, 13.0, 17.0]);
        // A trace, and a batched matmul whose ellipses cover different numbers of axes.
        let m = iota(&[3, 3]);
        assert_eq!(einsum("ii", &[&m]).unwrap().to_f64_vec(), [12.0]);
        let a = iota(&[2, 1, 2]);
        let b = iota(&[2, 3]);
        let y = einsum("...ij,jk->...ik", &[&a, &b]).unwrap();
        assert_eq!(y.shape(), [2, 1, 3]);
        assert_eq!(y.to_f64_vec(), [3.0, 4.0, 5.0, 9.0, 14.0, 19.0]);
        // Without `->`, the ellipsis leads the implicit output.
        let y = einsum("...j", &[&a]).unwrap();
        assert_eq!(y.shape(), [2, 1, 2]);
        let e = einsum("...ijk", &[&m]).unwrap_err();
        assert!(
            e.contains("operand 0 has 2 axes, fewer than its 3 indices"),
            "{e}"
        );
    }
}
