//! ONNX's indexing ops on raw byte buffers: `gather_elements`, `gather_nd`, the scatters,
//! `trilu`, `cumsum`/`cumprod` and `top_k`, each with its geometry fixed when lowered.
//!
//! Index rules are the interpreter's own (`lathe_ir::ops::shape::resolve_index`: negative
//! counts from the end), and an index out of range is an error naming it, returned before
//! anything is read outside a buffer. Configuration inputs that do not change the shape (the
//! cumulative axis, the trilu diagonal) are read when the kernel runs; top_k's `k` is checked
//! against the planned output. Kernels run on the calling thread.

mod cumulative;
mod gather;
mod scatter;
mod top_k;
mod trilu;

pub use cumulative::Cumulative;
pub use gather::{GatherElements, GatherNd};
pub use scatter::{ScatterElements, ScatterNd};
pub use top_k::TopK;
pub use trilu::Trilu;

use super::gather::read_index;
use lathe_ir::DType;

/// One indexing kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexKernel {
    GatherElements(GatherElements),
    GatherNd(GatherNd),
    ScatterElements(ScatterElements),
    ScatterNd(ScatterNd),
    Trilu(Trilu),
    Cumulative(Cumulative),
    TopK(TopK),
}

impl IndexKernel {
    /// Runs the kernel: `inputs` are the node's inputs, `outputs` its outputs, in order.
    ///
    /// # Safety
    /// Each pointer is valid for the whole buffer of its value (of the types the kernel was
    /// built for), outputs overlap no input and no other output, and nothing else writes the
    /// outputs or the inputs during the call.
    pub unsafe fn run(&self, inputs: &[*const u8], outputs: &[*mut u8]) -> Result<(), String> {
        let (i, o) = (inputs, outputs);
        match self {
            IndexKernel::GatherElements(k) => k.run(i[0], i[1], o[0]),
            IndexKernel::GatherNd(k) => k.run(i[0], i[1], o[0]),
            IndexKernel::ScatterElements(k) => k.run(i[0], i[1], i[2], o[0]),
            IndexKernel::ScatterNd(k) => k.run(i[0], i[1], i[2], o[0]),
            IndexKernel::Trilu(k) => k.run(i[0], i[1], o[0]),
            IndexKernel::Cumulative(k) => k.run(i[0], i[1], o[0]),
            IndexKernel::TopK(k) => k.run(i[0], i[1], o[0], o[1]),
        }
    }

    /// The op it runs, for plans and profiles.
    pub fn name(&self) -> &'static str {
        match self {
            IndexKernel::GatherElements(_) => "gather_elements",
            IndexKernel::GatherNd(_) => "gather_nd",
            IndexKernel::ScatterElements(_) => "scatter_elements",
            IndexKernel::ScatterNd(_) => "scatter_nd",
            IndexKernel::Trilu(_) => "trilu",
            IndexKernel::Cumulative(k) => k.kind.mnemonic(),
            IndexKernel::TopK(_) => "top_k",
        }
    }

    /// True for the kernels that only move elements (the others compute: cumulative, top_k).
    pub fn moves(&self) -> bool {
        !matches!(self, IndexKernel::Cumulative(_) | IndexKernel::TopK(_))
    }
}

/// The scalar configuration input at `p` (an index dtype), widened to i64.
///
/// # Safety
/// `p` holds at least one element of `dtype`.
unsafe fn read_scalar(dtype: DType, p: *const u8) -> i64 {
    read_index(dtype, p, 0)
}

/// Steps `coord` to the next multi-index of `dims` in row-major order.
fn advance(coord: &mut [usize], dims: &[usize]) {
    for d in (0..dims.len()).rev() {
        coord[d] += 1;
        if coord[d] < dims[d] {
            return;
        }
        coord[d] = 0;
    }
}

/// The multi-index of flat position `flat` over `dims` (row-major).
fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut at = vec![0; dims.len()];
    for (a, &d) in at.iter_mut().zip(dims).rev() {
        *a = flat % d.max(1);
        flat /= d.max(1);
    }
    at
}

/// The error for index `value` at multi-index `at` of the indices, outside an axis of `n`.
fn out_of_range(at: &[usize], value: i64, n: usize, axis: usize) -> String {
    let at: Vec<String> = at.iter().map(usize::to_string).collect();
    format!(
        "indices[{}] = {value} is not in [-{n}, {n}) (axis {axis})",
        at.join(",")
    )
}

#[cfg(test)]
mod testing {
    use lathe_ir::{Op, Tensor};

    /// The interpreter's outputs of `op` on `inputs`, as bytes, or its error.
    pub fn want(op: &Op, inputs: &[&Tensor]) -> Result<Vec<Vec<u8>>, String> {
        op.eval(inputs)
            .map(|v| v.into_iter().map(|t| t.to_le_bytes()).collect())
    }

    /// Runs `k` on `inputs` into zeroed outputs of `sizes` bytes.
    pub fn run(
        k: &super::IndexKernel,
        inputs: &[&Tensor],
        sizes: &[usize],
    ) -> Result<Vec<Vec<u8>>, String> {
        let bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.to_le_bytes()).collect();
        let ins: Vec<*const u8> = bytes.iter().map(|b| b.as_ptr()).collect();
        let mut outs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0u8; n]).collect();
        let ptrs: Vec<*mut u8> = outs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        // SAFETY: buffers of the kernel's geometry (the tests build both from one shape).
        unsafe { k.run(&ins, &ptrs) }?;
        Ok(outs)
    }
}
