//! ONNX `RoiAlign` (opsets 10, 16, 22) and `Col2Im` (18) as the IR's `roi_align` and
//! `col2im`.
//!
//! `RoiAlign` before opset 16 has no `coordinate_transformation_mode` and means
//! `output_half_pixel` (no half-pixel shift); from 16 the default is `half_pixel`. `Col2Im`'s
//! `image_shape` and `block_shape` inputs must be known while importing (constants, or the
//! values of graph inputs the model is then imported once per value of).

use super::{one, row, OnnxOp};
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::{Op, ValueId};

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![
        row("RoiAlign", &["roi_align"], import_roi_align),
        row("Col2Im", &["col2im"], import_col2im),
    ]
}

fn import_roi_align(b: &mut Builder, cx: &NodeCx) -> Out {
    let (x, rois, idx) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    if !b.dtype(x).is_float() || b.dtype(rois) != b.dtype(x) {
        return Err(format!(
            "RoiAlign of {} with rois {} is not supported (one float type)",
            b.ty(x),
            b.ty(rois)
        ));
    }
    let max = match cx.attrs.str_or("mode", "avg")?.as_str() {
        "avg" => false,
        "max" => true,
        m => return Err(format!("mode `{m}` is not supported (avg, max)")),
    };
    let default = if cx.opset < 16 {
        "output_half_pixel"
    } else {
        "half_pixel"
    };
    let half_pixel = match cx
        .attrs
        .str_or("coordinate_transformation_mode", default)?
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => {
            return Err(format!(
                "coordinate_transformation_mode `{m}` is not supported"
            ))
        }
    };
    let size = |name: &str| -> Result<usize, String> {
        let v = cx.attrs.int_or(name, 1)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("`{name}` {v} must be positive"))
    };
    let sampling_ratio = cx.attrs.int_or("sampling_ratio", 0)?;
    let sampling_ratio = usize::try_from(sampling_ratio)
        .map_err(|_| format!("`sampling_ratio` {sampling_ratio} must not be negative"))?;
    let op = Op::RoiAlign {
        max,
        half_pixel,
        output_height: size("output_height")?,
        output_width: size("output_width")?,
        sampling_ratio,
        spatial_scale: cx.attrs.float_or("spatial_scale", 1.0)?,
    };
    one(b.op(op, &[x, rois, idx])?)
}

fn import_col2im(b: &mut Builder, cx: &NodeCx) -> Out {
    let x = cx.input(0)?;
    if !b.dtype(x).is_float() {
        return Err(format!(
            "Col2Im of {} is not supported (floats only)",
            b.ty(x)
        ));
    }
    let image_shape = b.ints_of(cx.input(1)?, "image_shape")?;
    let block_shape = b.ints_of(cx.input(2)?, "block_shape")?;
    let n = image_shape.len();
    let op = Op::Col2Im {
        dilations: cx.attrs.ints_or("dilations", &vec![1; n]),
        pads: cx.attrs.ints_or("pads", &vec![0; 2 * n]),
        strides: cx.attrs.ints_or("strides", &vec![1; n]),
        image_shape,
        block_shape,
    };
    one(b.op(op, &[x])?)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use lathe_ir::Tensor;

    fn roi_align(attrs: &[(&str, &str)], opset: i64) -> Result<Vec<f64>, String> {
        let mut n = node("RoiAlign", &["x", "rois", "i"], &["y"]);
        for (k, v) in attrs {
            n = str_attr(n, k, v);
        }
        let n = int_attr(int_attr(n, "sampling_ratio", 2), "output_height", 1);
        let g = graph(
            "g",
            vec![n],
            vec![
                value("x", F32, &[1, 1, 4, 4]),
                value("rois", F32, &[1, 4]),
                value("i", I64, &[1]),
            ],
            vec![value("y", F32, &[])],
            &[],
        );
        let g = import(g, opset).map_err(|e| e.to_string())?;
        let x = Tensor::from_vec(&[1, 1, 4, 4], (0..16).map(|v| v as f32).collect());
        let rois = Tensor::from_vec(&[1, 4], vec![0.0f32, 0.0, 2.0, 2.0]);
        let i = Tensor::from_vec(&[1], vec![0i64]);
        let y = run(&g, &[x, rois, i]);
        assert_eq!(y[0].shape(), [1, 1, 1, 1]);
        Ok(vals(&y[0]))
    }

    #[test]
    fn roi_align_coordinate_modes_by_opset() {
        // The region [0, 2)² averages to pixel (1, 1) = 5, or shifted by half a pixel 2.5.
        assert_eq!(roi_align(&[], 10).unwrap(), [5.0]);
        assert_eq!(roi_align(&[], 16).unwrap(), [2.5]);
        let m = [("coordinate_transformation_mode", "output_half_pixel")];
        assert_eq!(roi_align(&m, 22).unwrap(), [5.0]);
        let e = roi_align(&[("mode", "sum")], 16).unwrap_err();
        assert!(e.contains("mode `sum` is not supported"), "{e}");
    }

    fn col2im(shapes: Option<(&[i64], &[i64])>) -> Result<Vec<f64>, String> {
        let n = ints_attr(
            node("Col2Im", &["x", "image", "block"], &["y"]),
            "strides",
            &[2],
        );
        let (mut ins, mut inits) = (vec![value("x", F32, &[1, 2, 2])], vec![]);
        match shapes {
            Some((image, block)) => {
                inits.push(("image", Tensor::from_vec(&[1], image.to_vec())));
                inits.push(("block", Tensor::from_vec(&[1], block.to_vec())));
            }
            None => {
                ins.push(value("image", I64, &[1]));
                ins.push(value("block", I64, &[1]));
            }
        }
        let g = graph("g", vec![n], ins, vec![value("y", F32, &[])], &inits);
        let g = import(g, 18).map_err(|e| e.to_string())?;
        let x = Tensor::from_vec(&[1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        Ok(vals(&run(&g, &[x])[0]))
    }

    #[test]
    fn col2im_with_known_shapes() {
        // Blocks of 2 at stride 2 over 4 cells: no overlap, cell-major columns interleave.
        assert_eq!(col2im(Some((&[4], &[2]))).unwrap(), [1.0, 3.0, 2.0, 4.0]);
        let e = col2im(None).unwrap_err();
        assert!(
            e.contains("image_shape must be known while importing"),
            "{e}"
        );
    }
}
