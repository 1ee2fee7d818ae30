//! `col2im`: ONNX's `Col2Im` (opset 18), the inverse of im2col over any number of spatial
//! axes: column `l` of block cell `k` of channel `c` (`x[n, c * K + k, l]`, `K` the block's
//! cells, `l` a block position in row-major order) is added into the image at
//! `position * stride - pad_begin + cell * dilation`, where that lies inside the image.
//! Sums are in f64, each output rounded once.

use crate::ops::common::expect_arity;
use crate::ops::{Op, OpResult};
use crate::{Dim, Elem, Shape, Tensor, TensorType};

/// The geometry of one `col2im`, with the table its runs share.
#[derive(Clone, Debug, PartialEq)]
pub struct Col2Im {
    pub batch: usize,
    pub channels: usize,
    /// The image's spatial sizes.
    pub image: Vec<usize>,
    /// Cells of a block (the input's middle axis is `channels * cells`).
    pub cells: usize,
    /// Block positions (the input's last axis).
    pub positions: usize,
    /// For each (cell, position), row-major, the flat image index it adds into, if inside.
    targets: Vec<Option<usize>>,
}

/// The spatial attributes of a `col2im` op, checked.
struct Spatial {
    /// The image's spatial sizes.
    image: Vec<usize>,
    block: Vec<usize>,
    dilations: Vec<usize>,
    /// Padding before each axis (the end padding only sets `blocks`).
    pads_begin: Vec<usize>,
    strides: Vec<usize>,
    /// Block positions along each axis.
    blocks: Vec<usize>,
}

/// The attributes of a `col2im` op, checked: each list has one entry per spatial axis (`pads`
/// two), sizes positive, pads non-negative.
fn spatial(op: &Op) -> OpResult<Spatial> {
    let Op::Col2Im {
        image_shape,
        block_shape,
        dilations,
        pads,
        strides,
    } = op
    else {
        unreachable!("{op:?} is not col2im")
    };
    let n = image_shape.len();
    if block_shape.len() != n || dilations.len() != n || strides.len() != n || pads.len() != 2 * n {
        return Err(format!(
            "col2im: image_shape {image_shape:?}, block_shape {block_shape:?}, dilations \
             {dilations:?}, pads {pads:?} and strides {strides:?} do not have one entry per \
             spatial axis (pads two)"
        ));
    }
    let positive = |v: &[i64], what: &str| -> OpResult<Vec<usize>> {
        if v.iter().any(|&e| e <= 0) {
            return Err(format!("col2im: {what} {v:?} must be positive"));
        }
        Ok(v.iter().map(|&e| e as usize).collect())
    };
    let image = positive(image_shape, "image_shape")?;
    let block = positive(block_shape, "block_shape")?;
    let dilations = positive(dilations, "dilations")?;
    let strides = positive(strides, "strides")?;
    if pads.iter().any(|&p| p < 0) {
        return Err(format!("col2im: pads {pads:?} must not be negative"));
    }
    let mut blocks = Vec::with_capacity(n);
    for i in 0..n {
        let padded = image[i] as i64 + pads[i] + pads[n + i];
        let span = (block[i] as i64 - 1) * dilations[i] as i64 + 1;
        if padded < span {
            return Err(format!(
                "col2im: the block (span {span}) of axis {i} is larger than the padded image \
                 {padded}"
            ));
        }
        blocks.push(((padded - span) / strides[i] as i64 + 1) as usize);
    }
    Ok(Spatial {
        image,
        block,
        dilations,
        pads_begin: pads[..n].iter().map(|&p| p as usize).collect(),
        strides,
        blocks,
    })
}

impl Spatial {
    /// For each (cell, position), row-major, the flat image index it adds into, if inside.
    fn targets(&self) -> Vec<Option<usize>> {
        let n = self.image.len();
        let cells: usize = self.block.iter().product();
        let positions: usize = self.blocks.iter().product();
        let mut targets = Vec::with_capacity(cells * positions);
        let (mut cell, mut pos) = (vec![0usize; n], vec![0usize; n]);
        for _ in 0..cells {
            pos.iter_mut().for_each(|p| *p = 0);
            for _ in 0..positions {
                let mut flat = Some(0usize);
                for i in 0..n {
                    let at = (pos[i] * self.strides[i] + cell[i] * self.dilations[i]) as i64
                        - self.pads_begin[i] as i64;
                    flat = match flat {
                        Some(f) if (0..self.image[i] as i64).contains(&at) => {
                            Some(f * self.image[i] + at as usize)
                        }
                        _ => None,
                    };
                }
                targets.push(flat);
                step(&mut pos, &self.blocks);
            }
            step(&mut cell, &self.block);
        }
        targets
    }
}

pub(super) fn infer(op: &Op, inputs: &[TensorType]) -> OpResult<Vec<TensorType>> {
    expect_arity("col2im", inputs, 1)?;
    let Spatial {
        image,
        block,
        blocks,
        ..
    } = spatial(op)?;
    let x = &inputs[0];
    if x.rank() != 3 {
        return Err(format!(
            "col2im needs a 3-D input [N, C * block, blocks], got {x}"
        ));
    }
    let d = x.shape.dims();
    let cells: usize = block.iter().product();
    let positions: usize = blocks.iter().product();
    if d[1].known().is_some_and(|c| c % cells != 0) || d[2].known().is_some_and(|l| l != positions)
    {
        return Err(format!(
            "col2im: input {x} is not [N, C * {cells}, {positions}] for blocks {block:?} at \
             {blocks:?} positions"
        ));
    }
    let channels = match d[1] {
        Dim::Known(c) => Dim::Known(c / cells),
        _ if cells == 1 => d[1].clone(),
        _ => Dim::Unknown,
    };
    let mut dims = vec![d[0].clone(), channels];
    dims.extend(image.iter().map(|&s| Dim::Known(s)));
    Ok(vec![TensorType::new(x.dtype, Shape(dims))])
}

pub(super) fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    let x = inputs[0];
    let k = Col2Im::new(op, x.shape())?;
    let mut out = vec![0.0f64; k.out_len()];
    k.run(&x.to_f64_vec(), &mut out);
    let mut dims = vec![k.batch, k.channels];
    dims.extend_from_slice(&k.image);
    Ok(vec![Tensor::from_f64(x.dtype(), &dims, &out)])
}

impl Col2Im {
    /// The geometry of `op` (a `col2im`) on an input of `x` dims, checked as `infer` checks,
    /// with its table of targets (built once: the lowering calls this when it plans).
    pub fn new(op: &Op, x: &[usize]) -> OpResult<Col2Im> {
        let spatial = spatial(op)?;
        let cells: usize = spatial.block.iter().product();
        let positions: usize = spatial.blocks.iter().product();
        if x.len() != 3 || !x[1].is_multiple_of(cells) || x[2] != positions {
            return Err(format!(
                "col2im: input {x:?} does not fit blocks {:?}",
                spatial.block
            ));
        }
        Ok(Col2Im {
            batch: x[0],
            channels: x[1] / cells,
            targets: spatial.targets(),
            image: spatial.image,
            cells,
            positions,
        })
    }

    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.batch * self.channels * self.cells * self.positions
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        self.batch * self.channels * self.image.iter().product::<usize>()
    }

    /// Adds the columns of `x` into the image `out` (lengths `x_len`, `out_len`).
    pub fn run<T: Elem>(&self, x: &[T], out: &mut [T]) {
        assert!(
            x.len() == self.x_len() && out.len() == self.out_len(),
            "col2im buffers do not fit the geometry"
        );
        let (cells, positions) = (self.cells, self.positions);
        let plane: usize = self.image.iter().product();
        let mut acc = vec![0.0f64; plane];
        for nc in 0..self.batch * self.channels {
            acc.iter_mut().for_each(|a| *a = 0.0);
            let cols = &x[nc * cells * positions..][..cells * positions];
            for (v, t) in cols.iter().zip(&self.targets) {
                if let Some(t) = t {
                    acc[*t] += v.to_f64();
                }
            }
            for (o, a) in out[nc * plane..][..plane].iter_mut().zip(&acc) {
                *o = T::from_f64(*a);
            }
        }
    }
}

/// Advances a row-major multi-index within `sizes` (wrapping to zeros after the last).
fn step(index: &mut [usize], sizes: &[usize]) {
    for a in (0..index.len()).rev() {
        index[a] += 1;
        if index[a] < sizes[a] {
            return;
        }
        index[a] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn op(image: &[i64], block: &[i64], dil: &[i64], pads: &[i64], strides: &[i64]) -> Op {
        Op::Col2Im {
            image_shape: image.to_vec(),
            block_shape: block.to_vec(),
            dilations: dil.to_vec(),
            pads: pads.to_vec(),
            strides: strides.to_vec(),
        }
    }

    #[test]
    fn overlapping_blocks_add() {
        // A 1-D image of 4 with blocks of 2 at stride 1: 3 positions, cells 0 and 1.
        let o = op(&[4], &[2], &[1], &[0, 0], &[1]);
        let x = Tensor::from_vec(&[1, 2, 3], vec![1.0f32, 2.0, 3.0, 10.0, 20.0, 30.0]);
        let y = o.eval(&[&x]).unwrap().remove(0);
        assert_eq!(y.shape(), [1, 1, 4]);
        assert_eq!(y.to_f64_vec(), [1.0, 12.0, 23.0, 30.0]);
    }

    #[test]
    fn strides_pads_and_dilations() {
        // 2-D: a 3×3 image, 2×2 blocks dilated by 2 (span 3) with a pad of 1 on each side,
        // at stride 2: (5 - 3) / 2 + 1 = 2 positions per axis.
        let o = op(&[3, 3], &[2, 2], &[2, 2], &[1, 1, 1, 1], &[2, 2]);
        let x = Tensor::from_vec(&[1, 4, 4], (0..16).map(|v| v as f32).collect());
        let y = o.eval(&[&x]).unwrap().remove(0);
        // Cell (a, b) of position (p, q) lands at (2p + 2a - 1, 2q + 2b - 1): only p + a = 1
        // and q + b = 1 are inside, at (1, 1), from cells (0,0)@(1,1), (0,1)@(1,0),
        // (1,0)@(0,1) and (1,1)@(0,0): columns 3, 6, 9 and 12 of a row-major [cell][pos].
        let mut want = vec![0.0; 9];
        want[4] = (3 + 6 + 9 + 12) as f64;
        assert_eq!(y.to_f64_vec(), want);
    }

    #[test]
    fn infer_checks_the_columns() {
        let o = op(&[4], &[2], &[1], &[0, 0], &[1]);
        let t = |dims: &[usize]| TensorType::known(DType::F32, dims);
        assert_eq!(
            o.infer(&[t(&[2, 6, 3])], &[None]).unwrap()[0].to_string(),
            "f32[2,3,4]"
        );
        let e = o.infer(&[t(&[2, 6, 4])], &[None]).unwrap_err();
        assert!(e.contains("is not [N, C * 2, 3]"), "{e}");
        let e = op(&[4], &[2], &[1], &[0], &[1])
            .infer(&[t(&[2, 6, 3])], &[None])
            .unwrap_err();
        assert!(e.contains("do not have one entry per spatial axis"), "{e}");
    }
}
