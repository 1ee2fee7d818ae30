//! The image family's kernels (`grid_sample`, `roi_align`, `col2im`), each running the IR's own geometry struct
//! (`lathe_ir::ops::image`) on the buffers' element type: the interpreter runs the same code
//! on f64 copies and rounds once, as the kernel does, so both backends give the same bits.
//! Geometry is fixed when lowered, from the node's types; kernels run on the calling thread.

use super::numeric::{elements, elements_mut};
use lathe_ir::ops::image::col2im::Col2Im;
use lathe_ir::ops::image::grid_sample::{GridSample, SampleMode};
use lathe_ir::ops::image::roi_align::RoiAlign;
use lathe_ir::{DType, Elem};

/// One image kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageKernel {
    GridSample {
        dtype: DType,
        geometry: GridSample,
    },
    /// `index_dtype` is the batch indices' (i32 or i64).
    RoiAlign {
        dtype: DType,
        index_dtype: DType,
        geometry: RoiAlign,
    },
    Col2Im {
        dtype: DType,
        geometry: Col2Im,
    },
}

impl ImageKernel {
    /// Runs the kernel: `inputs` are the node's inputs, `outputs` its outputs, in order.
    ///
    /// # Safety
    /// Each pointer is valid and aligned for the whole buffer of its value (of the types the
    /// kernel was built for), outputs overlap no input and no other output, and nothing else
    /// writes the outputs or the inputs during the call.
    pub unsafe fn run(&self, inputs: &[*const u8], outputs: &[*mut u8]) -> Result<(), String> {
        let (i, o) = (inputs, outputs);
        match self {
            ImageKernel::GridSample { dtype, geometry } => {
                with_float!(
                    dtype,
                    "grid_sample",
                    grid_sample(geometry, i[0], i[1], o[0])
                );
                Ok(())
            }
            ImageKernel::RoiAlign {
                dtype,
                index_dtype,
                geometry: g,
            } => {
                // The batch indices widened to i64 (checked against the batch when it runs).
                let indices: Vec<i64> = match index_dtype {
                    DType::I64 => elements(i[2] as *const i64, g.rois).to_vec(),
                    DType::I32 => elements(i[2] as *const i32, g.rois)
                        .iter()
                        .map(|&v| i64::from(v))
                        .collect(),
                    d => return Err(format!("roi_align batch indices of {d}")),
                };
                with_float!(dtype, "roi_align", roi_align(g, i[0], i[1], &indices, o[0]))
            }
            ImageKernel::Col2Im { dtype, geometry } => {
                with_float!(dtype, "col2im", col2im(geometry, i[0], o[0]));
                Ok(())
            }
        }
    }

    /// The op it runs, for plans and profiles.
    pub fn name(&self) -> &'static str {
        match self {
            ImageKernel::GridSample { .. } => "grid_sample",
            ImageKernel::RoiAlign { .. } => "roi_align",
            ImageKernel::Col2Im { .. } => "col2im",
        }
    }

    /// About how many multiply-adds a run takes, for scheduling.
    pub fn work(&self) -> usize {
        match self {
            ImageKernel::GridSample { geometry: g, .. } => {
                let taps: usize = match g.mode {
                    SampleMode::Nearest => 1,
                    SampleMode::Linear => 2,
                    SampleMode::Cubic => 4,
                };
                g.out_len() * taps.pow(g.in_dims.len() as u32)
            }
            // Samples per bin depend on the regions; say a few, four corners each.
            ImageKernel::RoiAlign { geometry: g, .. } => 16 * g.out_len(),
            ImageKernel::Col2Im { geometry: g, .. } => g.x_len() + g.out_len(),
        }
    }
}

/// # Safety
/// As for [`ImageKernel::run`], the buffers holding elements of `T`.
unsafe fn grid_sample<T: Elem>(g: &GridSample, x: *const u8, grid: *const u8, out: *mut u8) {
    let x = elements(x as *const T, g.x_len());
    let grid = elements(grid as *const T, g.grid_len());
    let out = elements_mut(out as *mut T, g.out_len());
    g.run(x, grid, out);
}

/// # Safety
/// As for [`ImageKernel::run`], the buffers holding elements of `T`.
unsafe fn roi_align<T: Elem>(
    g: &RoiAlign,
    x: *const u8,
    rois: *const u8,
    batch_indices: &[i64],
    out: *mut u8,
) -> Result<(), String> {
    let x = elements(x as *const T, g.x_len());
    let rois = elements(rois as *const T, 4 * g.rois);
    let out = elements_mut(out as *mut T, g.out_len());
    g.run(x, rois, batch_indices, out)
}

/// # Safety
/// As for [`ImageKernel::run`], the buffers holding elements of `T`.
unsafe fn col2im<T: Elem>(g: &Col2Im, x: *const u8, out: *mut u8) {
    let x = elements(x as *const T, g.x_len());
    let out = elements_mut(out as *mut T, g.out_len());
    g.run(x, out);
}
