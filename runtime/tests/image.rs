//! The image ops (grid_sample, roi_align, col2im) compiled through the whole CPU lowering:
//! results equal the interpreter's bit for bit on every float dtype and attribute value, plans
//! have no interpreter step, and a batch index out of range is the step's error.

mod common;

use common::{check, check_fault};
use lathe_ir::ops::{SampleMode, SamplePadding};
use lathe_ir::{DType, Op, Tensor};

/// Values spread over `[-lo, hi)` with a fixed pattern.
fn values(dtype: DType, dims: &[usize], scale: f64, shift: f64) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| ((i * 37 + 11) % 29) as f64 / 29.0 * scale - shift)
        .collect();
    Tensor::from_f64(dtype, dims, &v)
}

#[test]
fn grid_sample_matches_the_interpreter() {
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        for (x_dims, grid_dims) in [
            (vec![2, 3, 4, 5], vec![2, 3, 6, 2]),
            (vec![1, 2, 3, 4, 2], vec![1, 2, 3, 2, 3]),
        ] {
            let x = values(dtype, &x_dims, 10.0, 5.0);
            // Coordinates past both edges, so every padding mode has work.
            let grid = values(dtype, &grid_dims, 3.0, 1.5);
            for mode in SampleMode::ALL {
                for padding_mode in SamplePadding::ALL {
                    for align_corners in [false, true] {
                        let op = Op::GridSample {
                            mode,
                            padding_mode,
                            align_corners,
                        };
                        check(op, &[x.clone(), grid.clone()]);
                    }
                }
            }
        }
    }
}

#[test]
fn roi_align_matches_the_interpreter() {
    let rois = [
        0.0, 0.0, 7.0, 5.0, // inside
        1.5, 2.25, 3.0, 9.5, // past the bottom
        -3.0, -2.0, 1.0, 1.0, // before the top left
        4.0, 4.0, 4.0, 4.0, // empty
    ];
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        let x = values(dtype, &[2, 3, 6, 8], 10.0, 5.0);
        let r = Tensor::from_f64(dtype, &[4, 4], &rois);
        for index_dtype in [DType::I64, DType::I32] {
            let idx = Tensor::from_f64(index_dtype, &[4], &[1.0, 0.0, 1.0, 0.0]);
            for (max, half_pixel, sampling_ratio) in [
                (false, true, 0),
                (false, false, 2),
                (true, true, 1),
                (true, false, 0),
            ] {
                let op = Op::RoiAlign {
                    max,
                    half_pixel,
                    output_height: 3,
                    output_width: 2,
                    sampling_ratio,
                    spatial_scale: 0.75,
                };
                check(op, &[x.clone(), r.clone(), idx.clone()]);
            }
        }
    }
}

#[test]
fn roi_align_batch_index_out_of_range_is_the_steps_error() {
    let x = values(DType::F32, &[2, 1, 4, 4], 1.0, 0.0);
    let r = Tensor::from_f64(DType::F32, &[1, 4], &[0.0, 0.0, 1.0, 1.0]);
    let idx = Tensor::from_vec(&[1], vec![2i64]);
    let op = Op::RoiAlign {
        max: false,
        half_pixel: true,
        output_height: 1,
        output_width: 1,
        sampling_ratio: 0,
        spatial_scale: 1.0,
    };
    check_fault(
        op,
        &[x, r, idx],
        "batch index 2 of region 0 is out of range",
    );
}

#[test]
fn col2im_matches_the_interpreter() {
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        // 2-D: image 5×6, blocks 2×3 dilated (1, 2), pads (1, 0, 0, 1), strides (2, 1).
        let op = Op::Col2Im {
            image_shape: vec![5, 6],
            block_shape: vec![2, 3],
            dilations: vec![1, 2],
            pads: vec![1, 0, 0, 1],
            strides: vec![2, 1],
        };
        // Positions: (5 + 1 - 2) / 2 + 1 = 3 by (6 + 1 - 5) / 1 + 1 = 3.
        check(op, &[values(dtype, &[2, 12, 9], 4.0, 2.0)]);
        // 3-D, overlapping blocks.
        let op = Op::Col2Im {
            image_shape: vec![3, 3, 4],
            block_shape: vec![2, 2, 2],
            dilations: vec![1, 1, 1],
            pads: vec![0, 0, 0, 0, 0, 0],
            strides: vec![1, 1, 1],
        };
        check(op, &[values(dtype, &[1, 16, 12], 4.0, 2.0)]);
    }
}
