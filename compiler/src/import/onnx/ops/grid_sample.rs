//! ONNX `GridSample` (opsets 16, 20, 22) as the IR's `grid_sample`.
//!
//! Opset 16 spells the modes `bilinear` and `bicubic` and takes 4-D inputs only; from opset
//! 20 they are `linear` and `cubic`, on any number of spatial axes. A grid of another float
//! type than `X` is cast to `X`'s.

use super::elementwise::cast;
use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::ops::{SampleMode, SamplePadding};
use lathe_ir::{Op, ValueId};

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "GridSample",
        &["grid_sample", "cast"],
        import_grid_sample,
    )]
}

fn import_grid_sample(b: &mut Builder, cx: &NodeCx) -> Result<Vec<ValueId>, String> {
    let (x, grid) = (cx.input(0)?, cx.input(1)?);
    let dt = b.dtype(x);
    if !dt.is_float() {
        return Err(format!(
            "GridSample of {} is not supported (floats only)",
            b.ty(x)
        ));
    }
    if !b.dtype(grid).is_float() {
        return Err(format!(
            "the grid must be a float tensor, got {}",
            b.ty(grid)
        ));
    }
    let old = cx.opset < 20;
    let mode = cx
        .attrs
        .str_or("mode", if old { "bilinear" } else { "linear" })?;
    let mode = match (mode.as_str(), old) {
        ("nearest", _) => SampleMode::Nearest,
        ("bilinear", true) | ("linear", false) => SampleMode::Linear,
        ("bicubic", true) | ("cubic", false) => SampleMode::Cubic,
        (m, _) => {
            return Err(format!(
                "mode `{m}` is not supported (opset {}: nearest, {})",
                cx.opset,
                if old {
                    "bilinear, bicubic"
                } else {
                    "linear, cubic"
                }
            ))
        }
    };
    // ONNX spells the padding modes as the IR does.
    let padding_mode = cx.attrs.str_or("padding_mode", "zeros")?;
    let padding_mode = SamplePadding::parse(&padding_mode)
        .ok_or_else(|| format!("padding_mode `{padding_mode}` is not supported"))?;
    if old && b.rank(x) != 4 {
        return Err(format!(
            "GridSample before opset 20 takes 4-D inputs, got {}",
            b.ty(x)
        ));
    }
    let op = Op::GridSample {
        mode,
        padding_mode,
        align_corners: cx.attrs.int_or("align_corners", 0)? != 0,
    };
    let grid = cast(b, grid, dt)?;
    one(b.op(op, &[x, grid])?)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    fn model(attrs: &[(&str, &str)], opset: i64) -> Result<lathe_ir::Graph, String> {
        let mut n = node("GridSample", &["x", "grid"], &["y"]);
        for (k, v) in attrs {
            n = str_attr(n, k, v);
        }
        let n = int_attr(n, "align_corners", 1);
        let g = graph(
            "g",
            vec![n],
            vec![
                value("x", F32, &[1, 1, 2, 2]),
                value("grid", F32, &[1, 1, 2, 2]),
            ],
            vec![value("y", F32, &[])],
            &[],
        );
        import(g, opset).map_err(|e| e.to_string())
    }

    #[test]
    fn modes_of_both_spellings() {
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![0.0f32, 1.0, 2.0, 3.0]);
        // The centre and the bottom-right corner.
        let grid = Tensor::from_vec(&[1, 1, 2, 2], vec![0.0f32, 0.0, 1.0, 1.0]);
        for (mode, opset, want) in [
            ("bilinear", 16, [1.5, 3.0]),
            ("linear", 20, [1.5, 3.0]),
            // Pixel (0.5, 0.5) rounds to (0, 0), half to even.
            ("nearest", 16, [0.0, 3.0]),
        ] {
            let g = model(&[("mode", mode)], opset).unwrap();
            let y = run(&g, &[x.clone(), grid.clone()]);
            assert_eq!(vals(&y[0]), want, "{mode}");
        }
        // The default mode is linear.
        let g = model(&[], 22).unwrap();
        assert_eq!(vals(&run(&g, &[x, grid])[0]), [1.5, 3.0]);
    }

    #[test]
    fn unsupported_spellings_are_named() {
        let e = model(&[("mode", "linear")], 16).unwrap_err();
        assert!(
            e.contains("mode `linear` is not supported (opset 16"),
            "{e}"
        );
        let e = model(&[("mode", "bicubic")], 20).unwrap_err();
        assert!(
            e.contains("mode `bicubic` is not supported (opset 20"),
            "{e}"
        );
        let e = model(&[("padding_mode", "wrap")], 20).unwrap_err();
        assert!(e.contains("padding_mode `wrap` is not supported"), "{e}");
    }
}
