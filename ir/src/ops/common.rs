//! Helpers the op families share: arity checks, axis normalization, broadcasting.

use super::OpResult;
use crate::{Dim, Graph, Shape, Tensor, TensorType};

/// Errors unless there are exactly `n` inputs.
pub fn expect_arity<T>(op: &str, inputs: &[T], n: usize) -> OpResult<()> {
    if inputs.len() != n {
        return Err(format!(
            "{op} takes {n} input{}, got {}",
            if n == 1 { "" } else { "s" },
            inputs.len()
        ));
    }
    Ok(())
}

/// Maps an axis in `-rank..rank` to `0..rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// NumPy broadcasting of two symbolic shapes (right-aligned; size 1 stretches).
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> OpResult<Shape> {
    let r = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = dim_from_right(a, r - 1 - i);
        let db = dim_from_right(b, r - 1 - i);
        let d = match (&da, &db) {
            (Dim::Known(1), _) => db.clone(),
            (_, Dim::Known(1)) => da.clone(),
            (Dim::Known(x), Dim::Known(y)) if x == y => da.clone(),
            (Dim::Known(_), Dim::Known(_)) => {
                return Err(format!("shapes {a} and {b} do not broadcast"));
            }
            (Dim::Known(_), _) => da.clone(),
            (_, Dim::Known(_)) => db.clone(),
            (Dim::Sym(x), Dim::Sym(y)) if x == y => da.clone(),
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    Ok(Shape(out))
}

fn dim_from_right(s: &Shape, from_right: usize) -> Dim {
    if from_right < s.rank() {
        s.0[s.rank() - 1 - from_right].clone()
    } else {
        Dim::Known(1)
    }
}

/// NumPy broadcasting of concrete shapes.
pub fn broadcast_concrete(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let s = broadcast_shapes(&Shape::known(a), &Shape::known(b))?;
    Ok(s.as_known()
        .expect("known shapes broadcast to a known shape"))
}

/// The integer values of a constant configuration input, if it is a constant.
pub fn const_ints(c: Option<&Tensor>) -> OpResult<Option<Vec<i64>>> {
    c.map(|t| t.to_i64_vec()).transpose()
}

/// Errors unless `t` has an integer dtype; `what` names the input in the message.
pub fn expect_int(what: &str, t: &TensorType) -> OpResult<()> {
    if !t.dtype.is_int() {
        return Err(format!("{what} must be an integer tensor, got {t}"));
    }
    Ok(())
}

/// Checks that `region` (a fused body, a loop's cond or body, a branch; `what` names it) takes
/// values of the types `args` (count and compatible types), and verifies it.
pub fn check_region(what: &str, region: &Graph, args: &[TensorType]) -> OpResult<()> {
    if region.inputs().len() != args.len() {
        return Err(format!(
            "{what} takes {} values, the op gives {}",
            region.inputs().len(),
            args.len()
        ));
    }
    for (k, (decl, got)) in region.inputs().iter().zip(args).enumerate() {
        if !decl.ty.compatible(got) {
            return Err(format!(
                "{what}'s input {k} (`{}`) is {} but the op gives {got}",
                decl.name, decl.ty
            ));
        }
    }
    crate::verify(region).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast_concrete(&[2, 3, 4], &[3, 1]).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(broadcast_concrete(&[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_concrete(&[2, 3], &[4]).is_err());
        let s = broadcast_shapes(
            &Shape(vec![Dim::sym("n"), Dim::Known(1)]),
            &Shape::known(&[4]),
        )
        .unwrap();
        assert_eq!(s.to_string(), "[?n,4]");
    }

    #[test]
    fn axes() {
        assert_eq!(normalize_axis(-1, 3).unwrap(), 2);
        assert!(normalize_axis(3, 3).is_err());
    }
}
