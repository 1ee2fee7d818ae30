//! `grid_sample`: ONNX's `GridSample` (opsets 16, 20, 22) over any number of spatial axes.
//!
//! A grid entry holds normalized coordinates in `[-1, 1]`, the innermost axis first (`x` is
//! width, `y` height, `z` depth). Each is mapped to a pixel coordinate (`align_corners`: -1
//! and 1 are the centres of the edge pixels, else their outer edges), brought inside by the
//! padding mode when it falls outside (`border` clamps, `reflection` mirrors at the edges),
//! then interpolated: `nearest` takes the pixel at the coordinate rounded half to even,
//! `linear` the 2 and `cubic` the 4 neighbours on each axis (Keys' kernel with `a = -0.75`),
//! weights multiplied across axes. A neighbour outside the image is zero (`zeros`), the edge
//! pixel (`border`) or its mirror image (`reflection`). This is the ONNX reference's meaning
//! (`onnx/reference/ops/op_grid_sample.py`), as PyTorch's `grid_sample`.
//!
//! The taps and weights of an output cell are computed once and serve every channel.

use crate::ops::common::expect_arity;
use crate::ops::{Op, OpResult};
use crate::{Elem, Shape, Tensor, TensorType};

/// How `grid_sample` interpolates (its `mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleMode {
    /// The pixel at the coordinate rounded half to even.
    Nearest,
    /// The 2 neighbours on each axis.
    Linear,
    /// The 4 neighbours on each axis (Keys' kernel, `a = -0.75`).
    Cubic,
}

impl SampleMode {
    /// Every mode, in declaration order.
    pub const ALL: [SampleMode; 3] = [SampleMode::Nearest, SampleMode::Linear, SampleMode::Cubic];

    /// The text-format spelling (ONNX's from opset 20).
    pub fn name(self) -> &'static str {
        match self {
            SampleMode::Nearest => "nearest",
            SampleMode::Linear => "linear",
            SampleMode::Cubic => "cubic",
        }
    }

    /// The mode spelled `name` in the text format.
    pub fn parse(name: &str) -> Option<SampleMode> {
        SampleMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What `grid_sample` reads outside the image (its `padding_mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplePadding {
    /// Zeros.
    Zeros,
    /// The edge pixel.
    Border,
    /// The pixel's mirror image at the edges.
    Reflection,
}

impl SamplePadding {
    /// Every padding mode, in declaration order.
    pub const ALL: [SamplePadding; 3] = [
        SamplePadding::Zeros,
        SamplePadding::Border,
        SamplePadding::Reflection,
    ];

    /// The text-format spelling (ONNX's).
    pub fn name(self) -> &'static str {
        match self {
            SamplePadding::Zeros => "zeros",
            SamplePadding::Border => "border",
            SamplePadding::Reflection => "reflection",
        }
    }

    /// The padding mode spelled `name` in the text format.
    pub fn parse(name: &str) -> Option<SamplePadding> {
        SamplePadding::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The geometry of one `grid_sample`: everything but the values.
#[derive(Clone, Debug, PartialEq)]
pub struct GridSample {
    pub mode: SampleMode,
    pub padding: SamplePadding,
    pub align_corners: bool,
    pub batch: usize,
    pub channels: usize,
    /// The input's spatial sizes, outermost first.
    pub in_dims: Vec<usize>,
    /// Output cells per channel (the product of the grid's spatial sizes).
    pub out_cells: usize,
}

pub(super) fn infer(inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    expect_arity("grid_sample", inputs, 2)?;
    let (x, grid) = (&inputs[0], &inputs[1]);
    let r = x.rank();
    if r < 3 {
        return Err(format!(
            "grid_sample needs an input of rank 3 or more ([N, C, spatial..]), got {x}"
        ));
    }
    let g = grid.shape.dims();
    let fits = g.len() == r
        && g[0].compatible(&x.shape.dims()[0])
        && g[r - 1].known().is_none_or(|k| k == r - 2);
    if !fits {
        return Err(format!(
            "grid_sample: grid {grid} is not [N, spatial.., {}] for input {x}",
            r - 2
        ));
    }
    let mut dims = x.shape.dims()[..2].to_vec();
    dims.extend_from_slice(&g[1..r - 1]);
    Ok(vec![TensorType::new(x.dtype, Shape(dims))])
}

pub(super) fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let (x, grid) = (inputs[0], inputs[1]);
    let k = GridSample::new(op, x.shape(), grid.shape())?;
    let mut out = vec![0.0f64; k.out_len()];
    k.run(&x.to_f64_vec(), &grid.to_f64_vec(), &mut out);
    let mut dims = x.shape()[..2].to_vec();
    dims.extend_from_slice(&grid.shape()[1..grid.shape().len() - 1]);
    Ok(vec![Tensor::from_f64(x.dtype(), &dims, &out)])
}

/// One tap of an axis: the pixel's index (`None`: a zero) and its weight.
type Tap = (Option<usize>, f64);

impl GridSample {
    /// The geometry of `op` (a `grid_sample`) on an input of `x` dims and a grid of `grid`
    /// dims, checked as `infer` checks them.
    pub fn new(op: &Op, x: &[usize], grid: &[usize]) -> OpResult<GridSample> {
        let &Op::GridSample {
            mode,
            padding_mode,
            align_corners,
        } = op
        else {
            unreachable!("{op:?} is not grid_sample")
        };
        let r = x.len();
        if r < 3 || grid.len() != r || grid[0] != x[0] || grid[r - 1] != r - 2 {
            return Err(format!(
                "grid_sample: grid {grid:?} does not fit input {x:?}"
            ));
        }
        Ok(GridSample {
            mode,
            padding: padding_mode,
            align_corners,
            batch: x[0],
            channels: x[1],
            in_dims: x[2..].to_vec(),
            out_cells: grid[1..r - 1].iter().product(),
        })
    }

    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.batch * self.channels * self.in_dims.iter().product::<usize>()
    }

    /// Elements of the grid.
    pub fn grid_len(&self) -> usize {
        self.batch * self.out_cells * self.in_dims.len()
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        self.batch * self.channels * self.out_cells
    }

    /// Samples `x` at `grid` into `out` (lengths `x_len`, `grid_len`, `out_len`).
    pub fn run<T: Elem>(&self, x: &[T], grid: &[T], out: &mut [T]) {
        assert!(
            x.len() == self.x_len() && grid.len() == self.grid_len() && out.len() == self.out_len(),
            "grid_sample buffers do not fit the geometry"
        );
        let k = self.in_dims.len();
        let in_size: usize = self.in_dims.iter().product();
        // Row-major strides of the spatial axes.
        let mut strides = vec![1usize; k];
        for i in (0..k.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.in_dims[i + 1];
        }
        let mut axes: Vec<Vec<Tap>> = vec![Vec::with_capacity(4); k];
        // The cell's taps, and the partial products `cross` builds them from: both kept
        // across cells so that no cell allocates.
        let mut taps: Vec<(usize, f64)> = Vec::new();
        let mut partial: Vec<(usize, f64)> = Vec::new();
        for n in 0..self.batch {
            for o in 0..self.out_cells {
                let g = &grid[(n * self.out_cells + o) * k..][..k];
                for (i, axis) in axes.iter_mut().enumerate() {
                    // The grid's last axis is innermost first.
                    let coord = g[k - 1 - i].to_f64();
                    self.axis_taps(coord, self.in_dims[i], axis);
                }
                cross(&axes, &strides, &mut taps, &mut partial);
                for c in 0..self.channels {
                    let plane = &x[(n * self.channels + c) * in_size..][..in_size];
                    let sum: f64 = taps.iter().map(|&(p, w)| w * plane[p].to_f64()).sum();
                    out[(n * self.channels + c) * self.out_cells + o] = T::from_f64(sum);
                }
            }
        }
    }

    /// The taps along one axis of `len` pixels for normalized coordinate `coord`.
    fn axis_taps(&self, coord: f64, len: usize, taps: &mut Vec<Tap>) {
        taps.clear();
        let d = len as f64;
        let mut x = if self.align_corners {
            (coord + 1.0) / 2.0 * (d - 1.0)
        } else {
            ((coord + 1.0) * d - 1.0) / 2.0
        };
        let (lo, hi) = if self.align_corners {
            (0.0, d - 1.0)
        } else {
            (-0.5, d - 0.5)
        };
        if self.mode == SampleMode::Nearest {
            x = x.round_ties_even();
        }
        if x < lo || x > hi {
            match self.padding {
                SamplePadding::Border => x = x.clamp(0.0, d - 1.0),
                SamplePadding::Reflection => x = reflect(x, lo, hi),
                SamplePadding::Zeros => {}
            }
        }
        let base = x.floor();
        let t = x - base;
        let base = base as i64;
        match self.mode {
            // Truncated toward zero, as the reference's cast to int32.
            SampleMode::Nearest => taps.push((self.pixel(x as i64, len, lo, hi), 1.0)),
            SampleMode::Linear => {
                taps.push((self.pixel(base, len, lo, hi), 1.0 - t));
                taps.push((self.pixel(base.saturating_add(1), len, lo, hi), t));
            }
            SampleMode::Cubic => {
                for (j, w) in cubic_weights(t).into_iter().enumerate() {
                    let at = base.saturating_add(j as i64 - 1);
                    taps.push((self.pixel(at, len, lo, hi), w));
                }
            }
        }
    }

    /// The pixel read at index `i` of an axis of `len` pixels (`None`: a zero).
    fn pixel(&self, i: i64, len: usize, lo: f64, hi: f64) -> Option<usize> {
        let last = len as i64 - 1;
        match self.padding {
            SamplePadding::Zeros => (0..=last).contains(&i).then_some(i as usize),
            SamplePadding::Border => Some(i.clamp(0, last) as usize),
            // The mirror of an integer index is whole; clamped against rounding at the edge.
            SamplePadding::Reflection => {
                Some((reflect(i as f64, lo, hi) as i64).clamp(0, last) as usize)
            }
        }
    }
}

/// Every combination of one tap per axis, as (offset, product of weights); combinations
/// with a zero tap are left out. `prev` is scratch: it holds the previous axes' products
/// while `out` is rebuilt, and both keep their capacity for the next call.
fn cross(
    axes: &[Vec<Tap>],
    strides: &[usize],
    out: &mut Vec<(usize, f64)>,
    prev: &mut Vec<(usize, f64)>,
) {
    out.clear();
    out.push((0, 1.0));
    for (axis, &stride) in axes.iter().zip(strides) {
        std::mem::swap(out, prev);
        out.clear();
        for &(off, w) in prev.iter() {
            for &(p, tw) in axis {
                if let Some(p) = p {
                    out.push((off + p * stride, w * tw));
                }
            }
        }
    }
}

/// `x` mirrored at `lo` and `hi` until it lies between them (the reference's `_gs_reflect`).
/// An empty range (a one-pixel axis with `align_corners`) gives `lo`.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range.is_nan() || range <= 0.0 {
        return lo;
    }
    let (dx, from_lo) = if x < lo {
        (lo - x, true)
    } else if x > hi {
        (x - hi, false)
    } else {
        return x;
    };
    let n = (dx / range).trunc();
    let r = dx - n * range;
    let even = n % 2.0 == 0.0;
    if even == from_lo {
        lo + r
    } else {
        hi - r
    }
}

/// Keys' cubic convolution weights (`a = -0.75`) of the taps at -1, 0, 1 and 2 from the
/// pixel below a coordinate `t` past it (`0 <= t < 1`).
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::AttrValue;
    use crate::DType;

    fn op(mode: &str, padding: &str, align_corners: bool) -> Op {
        Op::GridSample {
            mode: SampleMode::parse(mode).unwrap(),
            padding_mode: SamplePadding::parse(padding).unwrap(),
            align_corners,
        }
    }

    /// Samples a 1×1×2×3 image `0..6` at the (x, y) points.
    fn sample(o: &Op, points: &[[f32; 2]]) -> Vec<f64> {
        let x = Tensor::from_vec(&[1, 1, 2, 3], vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let g: Vec<f32> = points.iter().flatten().copied().collect();
        let grid = Tensor::from_vec(&[1, 1, points.len(), 2], g);
        let y = o.eval(&[&x, &grid]).unwrap().remove(0);
        assert_eq!(y.shape(), [1, 1, 1, points.len()]);
        y.to_f64_vec()
    }

    #[test]
    fn corners_and_centres() {
        // align_corners: -1 and 1 are the edge pixels' centres.
        let o = op("linear", "zeros", true);
        assert_eq!(
            sample(&o, &[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]),
            [0.0, 5.0, 2.5]
        );
        // Otherwise their outer edges.
        let o = op("linear", "zeros", false);
        // (x, y) = (-1, 1) is pixel (-0.5, 1.5): a quarter of pixel (0, 1), the rest zeros.
        assert_eq!(sample(&o, &[[-1.0, 1.0], [0.0, 0.0]]), [0.75, 2.5]);
        let o = op("linear", "border", false);
        assert_eq!(sample(&o, &[[-1.0, -1.0], [5.0, 5.0]]), [0.0, 5.0]);
    }

    #[test]
    fn nearest_rounds_half_to_even() {
        let o = op("nearest", "zeros", true);
        // x = 0.5 pixel → 0, x = 1.5 → 2 (ties to even); y = 0.
        assert_eq!(sample(&o, &[[-0.5, -1.0], [0.5, -1.0]]), [0.0, 2.0]);
        // Outside the image: zero; with border, the edge.
        assert_eq!(sample(&o, &[[3.0, -1.0]]), [0.0]);
        let o = op("nearest", "border", true);
        assert_eq!(sample(&o, &[[3.0, -1.0]]), [2.0]);
    }

    #[test]
    fn reflection_mirrors_at_the_edges() {
        assert_eq!(reflect(-1.0, 0.0, 2.0), 1.0);
        assert_eq!(reflect(3.0, 0.0, 2.0), 1.0);
        assert_eq!(reflect(5.0, 0.0, 2.0), 1.0);
        assert_eq!(reflect(-0.75, -0.5, 2.5), -0.25);
        assert_eq!(reflect(7.0, 0.0, 0.0), 0.0);
        // x = 1.5 with align_corners on 3 pixels is pixel 3.5 of [0, 2]: mirrored to 0.5.
        let o = op("linear", "reflection", true);
        assert_eq!(sample(&o, &[[2.5, -1.0]]), [0.5]);
    }

    #[test]
    fn cubic_weights_interpolate() {
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
        let w = cubic_weights(0.5);
        assert_eq!(w, [-0.09375, 0.59375, 0.59375, -0.09375]);
        // A constant image stays constant inside it, and a line stays a line.
        let o = op("cubic", "border", true);
        let x = Tensor::from_vec(&[1, 1, 1, 4], vec![3.0f64, 4.0, 5.0, 6.0]);
        let grid = Tensor::from_vec(&[1, 1, 1, 2], vec![0.0f64, 0.0]);
        let y = o.eval(&[&x, &grid]).unwrap().remove(0);
        assert!((y.to_f64_vec()[0] - 4.5).abs() < 1e-12);
    }

    #[test]
    fn volumetric_and_channels() {
        // 1×2×2×2×2: channel 1 is channel 0 plus 10; the centre averages all eight.
        let v: Vec<f32> = (0..16).map(|i| (i % 8 + 10 * (i / 8)) as f32).collect();
        let x = Tensor::from_vec(&[1, 2, 2, 2, 2], v);
        let grid = Tensor::from_vec(&[1, 1, 1, 2, 3], vec![0.0f32, 0.0, 0.0, 1.0, -1.0, 1.0]);
        let y = op("linear", "zeros", true)
            .eval(&[&x, &grid])
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), [1, 2, 1, 1, 2]);
        // (x, y, z) = (1, -1, 1): z = 1, y = 0, x = 1, pixel 5.
        assert_eq!(y.to_f64_vec(), [3.5, 5.0, 13.5, 15.0]);
    }

    #[test]
    fn infer_checks_the_grid() {
        let t = |dims: &[usize]| TensorType::known(DType::F32, dims);
        let o = op("linear", "zeros", false);
        let y = o
            .infer(&[t(&[2, 3, 4, 5]), t(&[2, 6, 7, 2])], &[None, None])
            .unwrap();
        assert_eq!(y[0].to_string(), "f32[2,3,6,7]");
        let e = o
            .infer(&[t(&[2, 3, 4, 5]), t(&[2, 6, 7, 3])], &[None, None])
            .unwrap_err();
        assert!(e.contains("grid_sample: grid f32[2,6,7,3]"), "{e}");
    }

    #[test]
    fn modes_are_named_in_the_text_format() {
        for m in SampleMode::ALL {
            assert_eq!(SampleMode::parse(m.name()), Some(m));
        }
        for p in SamplePadding::ALL {
            assert_eq!(SamplePadding::parse(p.name()), Some(p));
        }
        // Another spelling (ONNX's before opset 20) is not an op's mode.
        let attrs = |mode: &str| {
            vec![
                ("mode".to_string(), AttrValue::Str(mode.into())),
                ("padding_mode".to_string(), AttrValue::Str("zeros".into())),
                ("align_corners".to_string(), AttrValue::Bool(false)),
            ]
        };
        assert_eq!(
            Op::from_parts("grid_sample", &attrs("cubic")).unwrap(),
            op("cubic", "zeros", false)
        );
        let e = Op::from_parts("grid_sample", &attrs("bilinear")).unwrap_err();
        assert!(
            e.contains(
                "grid_sample: attribute `mode` must be \"nearest\", \"linear\" or \"cubic\""
            ),
            "{e}"
        );
    }
}
