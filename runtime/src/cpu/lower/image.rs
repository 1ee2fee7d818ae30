//! Lowering of the image ops to the kernels of `kernels::image`: each kernel's geometry is the
//! IR's own, built from the node's (specialized) types and checked against its output here,
//! so the buffers a kernel walks have the sizes it walks.

use super::dims_of;
use crate::kernels::image::ImageKernel;
use lathe_ir::ops::image::col2im::Col2Im;
use lathe_ir::ops::image::grid_sample::GridSample;
use lathe_ir::ops::image::roi_align::RoiAlign;
use lathe_ir::ops::Op;
use lathe_ir::TensorType;

/// The kernel of an image node with inputs `ins` and outputs `outs`.
pub(super) fn kernel(
    op: &Op,
    ins: &[&TensorType],
    outs: &[&TensorType],
) -> Result<ImageKernel, String> {
    let dims = |i: usize| -> Result<Vec<usize>, String> {
        let t = ins.get(i).ok_or_else(|| format!("input {i} is missing"))?;
        dims_of(t, "input")
    };
    let out_len = |i: usize| -> Result<usize, String> {
        let t = outs
            .get(i)
            .ok_or_else(|| format!("output {i} is missing"))?;
        Ok(dims_of(t, "output")?.iter().product())
    };
    let dtype = ins.first().map(|t| t.dtype).ok_or("an input is missing")?;
    let mismatch = || {
        format!(
            "internal error: {}'s types do not fit its kernel",
            op.mnemonic()
        )
    };
    match op {
        Op::GridSample { .. } => {
            let geometry = GridSample::new(op, &dims(0)?, &dims(1)?)?;
            if out_len(0)? != geometry.out_len() || ins[1].dtype != dtype {
                return Err(mismatch());
            }
            Ok(ImageKernel::GridSample { dtype, geometry })
        }
        Op::RoiAlign { .. } => {
            let geometry = RoiAlign::new(op, &dims(0)?, &dims(1)?, &dims(2)?)?;
            let index_dtype = ins[2].dtype;
            let fits = out_len(0)? == geometry.out_len()
                && ins[1].dtype == dtype
                && matches!(index_dtype, lathe_ir::DType::I32 | lathe_ir::DType::I64);
            if !fits {
                return Err(mismatch());
            }
            Ok(ImageKernel::RoiAlign {
                dtype,
                index_dtype,
                geometry,
            })
        }
        Op::Col2Im { .. } => {
            let geometry = Col2Im::new(op, &dims(0)?)?;
            if out_len(0)? != geometry.out_len() {
                return Err(mismatch());
            }
            Ok(ImageKernel::Col2Im { dtype, geometry })
        }
        _ => Err(format!("{} is not an image op", op.mnemonic())),
    }
}
