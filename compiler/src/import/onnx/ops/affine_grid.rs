//! ONNX `AffineGrid`: the sampling grid of `N` affine maps `theta` (`[N, 2, 3]` or
//! `[N, 3, 4]`) over an output of `size` (`[N, C, H, W]` or `[N, C, D, H, W]`).
//!
//! Each spatial axis of length `L` has coordinates `(2i + 1) / L - 1` (`linspace(-1, 1, L)`
//! with `align_corners`: `2i / (L - 1) - 1`, just `-1` when `L` is 1); the base grid
//! `[..., x, y, (z,) 1]` of every output cell, one row per cell, is multiplied by each
//! `theta` transposed. The sizes are read with IR ops, so a `size` fed at run time works
//! (it becomes a shape input of the model).

use super::elementwise::cast;
use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::BinaryOp as B;
use lathe_ir::{DType, Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "AffineGrid",
        &["batch_matmul", "range", "pack", "reshape", "gather", "cast"],
        import_affine_grid,
    )]
}

fn binary(b: &mut Builder, op: B, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Binary(op), &[x, y])
}

/// The coordinates of an axis of `len` cells (an i64 scalar), in `dt`.
fn coordinates(
    b: &mut Builder,
    len: ValueId,
    dt: DType,
    align_corners: bool,
) -> Result<ValueId, String> {
    let (zero, one_) = (b.i64_scalar(0), b.i64_scalar(1));
    let i = b.op(Op::Range, &[zero, len, one_])?;
    let i = cast(b, i, dt)?;
    let two = b.scalar(dt, 2.0);
    let minus_one = b.scalar(dt, -1.0);
    let twice = binary(b, B::Mul, i, two)?;
    let scaled = if align_corners {
        // 2i / max(L - 1, 1): a one-cell axis is just -1, as linspace(-1, 1, 1).
        let gaps = binary(b, B::Sub, len, one_)?;
        let gaps = binary(b, B::Maximum, gaps, one_)?;
        let gaps = cast(b, gaps, dt)?;
        binary(b, B::Div, twice, gaps)?
    } else {
        let half = b.scalar(dt, 1.0);
        let odd = binary(b, B::Add, twice, half)?;
        let l = cast(b, len, dt)?;
        binary(b, B::Div, odd, l)?
    };
    binary(b, B::Add, scaled, minus_one)
}

fn import_affine_grid(b: &mut Builder, cx: &NodeCx) -> Out {
    let theta = cx.input(0)?;
    let size = cast(b, cx.input(1)?, DType::I64)?;
    let dt = b.dtype(theta);
    if !dt.is_float() {
        return Err(format!("theta must be a float tensor, got {}", b.ty(theta)));
    }
    let align_corners = cx.attrs.int_or("align_corners", 0)? != 0;
    let n = match b.ty(size).shape.as_known().as_deref() {
        Some([4]) => 2,
        Some([5]) => 3,
        _ => {
            return Err(format!(
                "`size` must have 4 or 5 entries (a 2-D or 3-D grid), got {}",
                b.ty(size)
            ))
        }
    };
    let td = b.ty(theta).shape.0.clone();
    let fits = td.len() == 3
        && td[1].known().is_none_or(|d| d == n)
        && td[2].known().is_none_or(|d| d == n + 1);
    if !fits {
        return Err(format!(
            "theta {} is not [N, {n}, {}] for a {n}-D grid",
            b.ty(theta),
            n + 1
        ));
    }
    // The spatial lengths, outermost first ([H, W] or [D, H, W]), as i64 scalars.
    let zero_axis = b.i64_scalar(0);
    let mut lens = Vec::with_capacity(n);
    for k in 0..n {
        let at = b.i64_scalar(2 + k as i64);
        lens.push(b.op(Op::Gather { batch_dims: 0 }, &[size, at, zero_axis])?);
    }
    // Each axis's coordinates shaped to broadcast over the grid ([L, 1], [1, L], ...).
    let mut axes = Vec::with_capacity(n);
    for (k, &len) in lens.iter().enumerate() {
        let c = coordinates(b, len, dt, align_corners)?;
        let mut shape = vec![1i64; n];
        shape[k] = -1;
        let shape = b.i64s(&shape);
        axes.push(b.op(Op::Reshape, &[c, shape])?);
    }
    // A zero of the grid's shape, to broadcast each coordinate to every cell.
    let zero = b.scalar(dt, 0.0);
    let mut zeros = None;
    for &a in &axes {
        let z = binary(b, B::Mul, a, zero)?;
        zeros = Some(match zeros {
            None => z,
            Some(s) => binary(b, B::Add, s, z)?,
        });
    }
    let zeros = zeros.expect("a grid has an axis");
    // Components x (the last axis), y, z, then 1.
    let mut parts = Vec::with_capacity(n + 1);
    for &a in axes.iter().rev() {
        parts.push(binary(b, B::Add, a, zeros)?);
    }
    let one_f = b.scalar(dt, 1.0);
    parts.push(binary(b, B::Add, zeros, one_f)?);
    let base = b.op(Op::Pack { axis: n as i64 }, &parts)?;
    let rows = b.i64s(&[1, -1, n as i64 + 1]);
    let base = b.op(Op::Reshape, &[base, rows])?;
    // [1, cells, n + 1] x [N, n, n + 1]^T = [N, cells, n].
    let grid = b.op(
        Op::BatchMatMul {
            adj_x: false,
            adj_y: true,
        },
        &[base, theta],
    )?;
    // [N, (D,) H, W, n]: the batch from theta, the rest from `size`.
    let batch = b.i64s(&[-1]);
    let mut dims = vec![batch];
    for &len in &lens {
        let one_axis = b.i64s(&[1]);
        dims.push(b.op(Op::Reshape, &[len, one_axis])?);
    }
    dims.push(b.i64s(&[n as i64]));
    dims.push(zero_axis);
    let shape = b.op(Op::Concat, &dims)?;
    one(b.op(Op::Reshape, &[grid, shape])?)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    #[test]
    fn identity_theta_gives_the_cell_centres() {
        let g = graph(
            "g",
            vec![node("AffineGrid", &["theta", "size"], &["grid"])],
            vec![value("theta", F32, &[1, 2, 3]), value("size", I64, &[4])],
            vec![value("grid", F32, &[])],
            &[],
        );
        let g = import(g, 20).unwrap();
        let theta = Tensor::from_vec(&[1, 2, 3], vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let size = Tensor::from_vec(&[4], vec![1i64, 1, 2, 3]);
        let y = run(&g, &[theta, size]);
        assert_eq!(y[0].shape(), [1, 2, 3, 2]);
        let t = 2.0 / 3.0;
        let want = [-t, -0.5, 0.0, -0.5, t, -0.5, -t, 0.5, 0.0, 0.5, t, 0.5];
        for (got, want) in vals(&y[0]).iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{:?}", vals(&y[0]));
        }
    }
}
