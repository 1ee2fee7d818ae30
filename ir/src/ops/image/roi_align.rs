//! `roi_align`: ONNX's `RoiAlign` (opsets 10, 16, 22) on NCHW images.
//!
//! Region `r` (`rois[r] = [x1, y1, x2, y2]`, scaled by `spatial_scale`, shifted by half a
//! pixel with `half_pixel`) of image `batch_indices[r]` is cut into `output_height` ×
//! `output_width` bins; each bin samples a grid of `sampling_ratio` points per axis (when 0,
//! `ceil(bin size)`), each point bilinearly interpolated, and the bin is their average or
//! (`max`) the largest weighted corner of any point, as the ONNX reference computes it
//! (`onnx/reference/ops/op_roi_align.py`, after Caffe2). Without `half_pixel` a region is at
//! least one pixel wide and high. Points more than a pixel outside the image count as zero.
//! A batch index outside the batch is an error when the op runs.

use crate::ops::common::expect_arity;
use crate::ops::{Op, OpResult};
use crate::{Dim, Elem, Shape, Tensor, TensorType};

/// Sample points one bin may have (a region far larger than its image would otherwise take
/// unbounded time).
pub const MAX_BIN_SAMPLES: usize = 1 << 20;

/// The geometry of one `roi_align`: everything but the values.
#[derive(Clone, Debug, PartialEq)]
pub struct RoiAlign {
    pub max: bool,
    pub half_pixel: bool,
    pub out_h: usize,
    pub out_w: usize,
    pub sampling_ratio: usize,
    pub spatial_scale: f64,
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub rois: usize,
}

pub(super) fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    expect_arity("roi_align", inputs, 3)?;
    let Op::RoiAlign {
        output_height,
        output_width,
        ..
    } = op
    else {
        unreachable!("{op:?} is not roi_align")
    };
    if *output_height == 0 || *output_width == 0 {
        return Err("roi_align: output_height and output_width must be positive".into());
    }
    let (x, rois, idx) = (&inputs[0], &inputs[1], &inputs[2]);
    if x.rank() != 4 {
        return Err(format!("roi_align needs a 4-D NCHW input, got {x}"));
    }
    let r = rois.shape.dims();
    let i = idx.shape.dims();
    let fits = r.len() == 2
        && r[1].known().is_none_or(|k| k == 4)
        && i.len() == 1
        && r[0].compatible(&i[0]);
    if !fits {
        return Err(format!(
            "roi_align: rois {rois} and batch_indices {idx} are not [R, 4] and [R]"
        ));
    }
    let count = match (&r[0], &i[0]) {
        (Dim::Known(_), _) | (_, Dim::Unknown) => r[0].clone(),
        _ => i[0].clone(),
    };
    let dims = vec![
        count,
        x.shape.dims()[1].clone(),
        Dim::Known(*output_height),
        Dim::Known(*output_width),
    ];
    Ok(vec![TensorType::new(x.dtype, Shape(dims))])
}

pub(super) fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let (x, rois, idx) = (inputs[0], inputs[1], inputs[2]);
    let k = RoiAlign::new(op, x.shape(), rois.shape(), idx.shape())?;
    let idx = idx.to_i64_vec()?;
    let mut out = vec![0.0f64; k.out_len()];
    k.run(&x.to_f64_vec(), &rois.to_f64_vec(), &idx, &mut out)?;
    let dims = [k.rois, k.channels, k.out_h, k.out_w];
    Ok(vec![Tensor::from_f64(x.dtype(), &dims, &out)])
}

impl RoiAlign {
    /// The geometry of `op` (a `roi_align`) on operands of these dims, checked as `infer`
    /// checks them.
    pub fn new(op: &Op, x: &[usize], rois: &[usize], idx: &[usize]) -> OpResult<RoiAlign> {
        let Op::RoiAlign {
            max,
            half_pixel,
            output_height,
            output_width,
            sampling_ratio,
            spatial_scale,
        } = op
        else {
            unreachable!("{op:?} is not roi_align")
        };
        if x.len() != 4 || rois.len() != 2 || rois[1] != 4 || idx != [rois[0]] {
            return Err(format!(
                "roi_align: operands {x:?}, {rois:?}, {idx:?} are not [N, C, H, W], [R, 4], [R]"
            ));
        }
        if *output_height == 0 || *output_width == 0 {
            return Err("roi_align: output_height and output_width must be positive".into());
        }
        Ok(RoiAlign {
            max: *max,
            half_pixel: *half_pixel,
            out_h: *output_height,
            out_w: *output_width,
            sampling_ratio: *sampling_ratio,
            spatial_scale: f64::from(*spatial_scale),
            batch: x[0],
            channels: x[1],
            height: x[2],
            width: x[3],
            rois: rois[0],
        })
    }

    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.batch * self.channels * self.height * self.width
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        self.rois * self.channels * self.out_h * self.out_w
    }

    /// Pools `x` over `rois` (`[R, 4]`) of images `batch_indices` into `out`; a batch index
    /// outside the batch, or a bin of too many samples, is an error naming it.
    pub fn run<T: Elem>(
        &self,
        x: &[T],
        rois: &[T],
        batch_indices: &[i64],
        out: &mut [T],
    ) -> OpResult<()> {
        assert!(
            x.len() == self.x_len()
                && rois.len() == 4 * self.rois
                && batch_indices.len() == self.rois
                && out.len() == self.out_len(),
            "roi_align buffers do not fit the geometry"
        );
        let plane = self.height * self.width;
        let bins = self.out_h * self.out_w;
        let mut acc = vec![0.0f64; self.channels];
        for r in 0..self.rois {
            let b = batch_indices[r];
            if !(0..self.batch as i64).contains(&b) {
                return Err(format!(
                    "roi_align: batch index {b} of region {r} is out of range for a batch of {}",
                    self.batch
                ));
            }
            let images = &x[b as usize * self.channels * plane..][..self.channels * plane];
            let c = |k: usize| rois[4 * r + k].to_f64() * self.spatial_scale;
            let shift = if self.half_pixel { 0.5 } else { 0.0 };
            let (x0, y0, x1, y1) = (c(0) - shift, c(1) - shift, c(2) - shift, c(3) - shift);
            let (mut roi_w, mut roi_h) = (x1 - x0, y1 - y0);
            if !self.half_pixel {
                roi_w = roi_w.max(1.0);
                roi_h = roi_h.max(1.0);
            }
            let bin_h = roi_h / self.out_h as f64;
            let bin_w = roi_w / self.out_w as f64;
            let grid = |bin: f64| match self.sampling_ratio {
                0 => bin.ceil().max(0.0) as usize,
                s => s,
            };
            let (grid_h, grid_w) = (grid(bin_h), grid(bin_w));
            let samples = grid_h.saturating_mul(grid_w);
            if samples > MAX_BIN_SAMPLES {
                return Err(format!(
                    "roi_align: region {r} takes {samples} samples per bin (at most \
                     {MAX_BIN_SAMPLES})"
                ));
            }
            let count = samples.max(1) as f64;
            for ph in 0..self.out_h {
                for pw in 0..self.out_w {
                    acc.iter_mut().for_each(|a| *a = 0.0);
                    let mut first = true;
                    for iy in 0..grid_h {
                        let y = y0 + ph as f64 * bin_h + (iy as f64 + 0.5) * bin_h / grid_h as f64;
                        for ix in 0..grid_w {
                            let xx =
                                x0 + pw as f64 * bin_w + (ix as f64 + 0.5) * bin_w / grid_w as f64;
                            let corners = self.corners(y, xx);
                            for (ch, a) in acc.iter_mut().enumerate() {
                                let img = &images[ch * plane..][..plane];
                                let v = corners.map(|(p, w)| w * img[p].to_f64());
                                if self.max {
                                    // Python's max: a later value only when greater.
                                    let m =
                                        v[1..].iter().fold(v[0], |m, &e| if e > m { e } else { m });
                                    if first || m > *a {
                                        *a = m;
                                    }
                                } else {
                                    *a += v.iter().sum::<f64>();
                                }
                            }
                            first = false;
                        }
                    }
                    for (ch, a) in acc.iter().enumerate() {
                        let y = if self.max { *a } else { a / count };
                        out[((r * self.channels + ch) * bins) + ph * self.out_w + pw] =
                            T::from_f64(y);
                    }
                }
            }
        }
        Ok(())
    }

    /// The four corners (flat index in a plane, weight) a point interpolates; all weights
    /// zero for a point more than a pixel outside the image.
    fn corners(&self, y: f64, x: f64) -> [(usize, f64); 4] {
        let (h, w) = (self.height as f64, self.width as f64);
        let inside = (-1.0..=h).contains(&y) && (-1.0..=w).contains(&x);
        if !inside || self.height == 0 || self.width == 0 {
            return [(0, 0.0); 4];
        }
        let axis = |v: f64, len: usize| {
            let v = v.max(0.0);
            let low = v as usize;
            if low >= len - 1 {
                (len - 1, len - 1, (len - 1) as f64)
            } else {
                (low, low + 1, v)
            }
        };
        let (y_low, y_high, y) = axis(y, self.height);
        let (x_low, x_high, x) = axis(x, self.width);
        let (ly, lx) = (y - y_low as f64, x - x_low as f64);
        let (hy, hx) = (1.0 - ly, 1.0 - lx);
        let wd = self.width;
        [
            (y_low * wd + x_low, hy * hx),
            (y_low * wd + x_high, hy * lx),
            (y_high * wd + x_low, ly * hx),
            (y_high * wd + x_high, ly * lx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn op(max: bool, half_pixel: bool, size: usize, sampling_ratio: usize) -> Op {
        Op::RoiAlign {
            max,
            half_pixel,
            output_height: size,
            output_width: size,
            sampling_ratio,
            spatial_scale: 1.0,
        }
    }

    /// A 1×1×4×4 image whose pixel (y, x) is `4y + x`.
    fn ramp() -> Tensor {
        Tensor::from_vec(&[1, 1, 4, 4], (0..16).map(|v| v as f32).collect())
    }

    fn pool(o: &Op, rois: &[f32], idx: &[i64]) -> OpResult<Vec<f64>> {
        let r = Tensor::from_vec(&[idx.len(), 4], rois.to_vec());
        let i = Tensor::from_vec(&[idx.len()], idx.to_vec());
        Ok(o.eval(&[&ramp(), &r, &i])?.remove(0).to_f64_vec())
    }

    #[test]
    fn averages_of_bilinear_samples() {
        // One bin over pixels [0, 2) × [0, 2), sampled at (0.5, 0.5), (0.5, 1.5), ...:
        // a linear image averages to its value at the centre (1, 1).
        assert_eq!(
            pool(&op(false, false, 1, 2), &[0.0, 0.0, 2.0, 2.0], &[0]).unwrap(),
            [5.0]
        );
        // half_pixel shifts the region half a pixel up and left: centre (0.5, 0.5).
        assert_eq!(
            pool(&op(false, true, 1, 2), &[0.0, 0.0, 2.0, 2.0], &[0]).unwrap(),
            [2.5]
        );
        // Two by two bins of one sample each (adaptive: ceil(1) = 1), at pixel centres.
        let y = pool(&op(false, false, 2, 0), &[0.0, 0.0, 2.0, 2.0], &[0]).unwrap();
        assert_eq!(y, [2.5, 3.5, 6.5, 7.5]);
    }

    #[test]
    fn max_takes_the_largest_weighted_corner() {
        // The sample at (1.5, 1.5) weighs each of pixels 5, 6, 9, 10 by a quarter.
        let y = pool(&op(true, false, 1, 1), &[1.0, 1.0, 2.0, 2.0], &[0]).unwrap();
        assert_eq!(y, [2.5]);
    }

    #[test]
    fn batch_indices_are_checked() {
        let e = pool(&op(false, false, 1, 1), &[0.0, 0.0, 1.0, 1.0], &[1]).unwrap_err();
        assert!(
            e.contains("batch index 1 of region 0 is out of range"),
            "{e}"
        );
        let t = |d: DType, dims: &[usize]| TensorType::known(d, dims);
        let o = op(false, false, 3, 0);
        let y = o
            .infer(
                &[
                    t(DType::F32, &[2, 5, 8, 8]),
                    t(DType::F32, &[7, 4]),
                    t(DType::I64, &[7]),
                ],
                &[None, None, None],
            )
            .unwrap();
        assert_eq!(y[0].to_string(), "f32[7,5,3,3]");
        let e = o
            .infer(
                &[
                    t(DType::F32, &[2, 5, 8, 8]),
                    t(DType::F32, &[7, 4]),
                    t(DType::I64, &[6]),
                ],
                &[None, None, None],
            )
            .unwrap_err();
        assert!(e.contains("are not [R, 4] and [R]"), "{e}");
    }
}
