//! The executable plan's data: storages (where bytes live), buffers (typed views of a storage)
//! and steps (one kernel call each, in a topological order of the graph).

use super::codegen::RowKernel;
use super::matmul::BatchedGemm;
use crate::kernels::argmax::ArgMax;
use crate::kernels::conv::Conv2d;
use crate::kernels::depthwise::DepthwiseConv2d;
use crate::kernels::det::Det;
use crate::kernels::dft::Dft;
use crate::kernels::einsum::EinsumLoops;
use crate::kernels::gemm::MatMut;
use crate::kernels::generic_window::GenericWindow;
use crate::kernels::int_conv::IntConv;
use crate::kernels::int_gemm::PackedB as PackedInt;
use crate::kernels::packed::PackedB;
use crate::kernels::pool::Pool2d;
use crate::kernels::reduce_axes::ReduceAxes;
use crate::kernels::winograd::Winograd3x3;
use lathe_ir::ops::Op;
use lathe_ir::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// Index of a [`Buf`] in [`Plan::bufs`].
pub type BufId = usize;

/// Where a storage's bytes are during a call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StorageKind {
    /// The caller's input tensor `i`, read in place.
    Input(usize),
    /// A constant of the graph, shared with it (standard layout).
    Const(#[serde(with = "super::image::tensor_arc")] Arc<Tensor>),
    /// A constant that no step reads from memory: every step that uses it holds it in its own
    /// kernel (packed GEMM panels, a convolution's packed filter). No bytes at run time.
    Baked,
    /// A region of the call's arena, at a byte offset set by the memory plan.
    Arena { offset: usize },
    /// A fresh tensor handed to the caller as a graph output (no copy at the end).
    Output,
}

/// Bytes that some values share (a value and its reshapes, or an in-place kernel's input and
/// output).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Storage {
    pub kind: StorageKind,
    pub bytes: usize,
}

/// A typed, dense, row-major view of a storage's bytes from `offset` on: the whole storage,
/// or (for a concat written in place by its producers) one member's slice of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Buf {
    pub storage: usize,
    /// Bytes from the storage's start (0 unless the buffer is a slice of a larger one).
    pub offset: usize,
    pub dtype: DType,
    pub dims: Vec<usize>,
}

impl Buf {
    /// Elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Bytes.
    pub fn bytes(&self) -> usize {
        self.len() * self.dtype.size_bytes()
    }
}

/// One strided copy of a data-movement step: from buffer `src` into buffer `dst`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MovePart {
    pub src: BufId,
    pub dst: BufId,
    pub copy: crate::kernels::copy::StridedCopy,
}

/// A convolution-like kernel that computes ranges of output rows (`[N·OH·OW, C]` view).
#[derive(Debug, Serialize, Deserialize)]
pub enum Window {
    Conv(Conv2d),
    /// A 3×3 stride-1 convolution by Winograd F(2×2, 3×3).
    Winograd(Winograd3x3),
    Depthwise(DepthwiseConv2d),
    Pool(Pool2d),
}

impl Window {
    pub fn rows(&self) -> usize {
        match self {
            Window::Conv(k) => k.rows(),
            Window::Winograd(k) => k.rows(),
            Window::Depthwise(k) => k.rows(),
            Window::Pool(k) => k.rows(),
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Window::Conv(k) => k.cols(),
            Window::Winograd(k) => k.cols(),
            Window::Depthwise(k) => k.cols(),
            Window::Pool(k) => k.cols(),
        }
    }

    /// Scratch f32s for a tile of `rows` rows.
    pub fn scratch_len(&self, rows: usize) -> usize {
        match self {
            Window::Conv(k) => k.scratch_len(rows),
            Window::Winograd(k) => k.scratch_len(rows),
            Window::Depthwise(_) | Window::Pool(_) => 0,
        }
    }

    /// [`Conv2d::run_rows_then`] for every window kernel: a convolution calls `after` every
    /// few GEMM slivers; the others once, at the end.
    pub fn run_rows_then(
        &self,
        x: &[f32],
        rows: Range<usize>,
        mut out: MatMut<'_>,
        scratch: &mut [f32],
        after: &mut dyn FnMut(Range<usize>),
    ) {
        if let Window::Conv(k) = self {
            return k.run_rows_then(x, rows, out, scratch, after);
        }
        assert!(
            out.rows == rows.len() && out.cols == self.cols(),
            "window: a {}x{} output view for rows {rows:?} of {}",
            out.rows,
            out.cols,
            self.cols()
        );
        // The slice is gone before `after` runs.
        let o = out
            .dense_rows()
            .expect("window: output view is not dense rows");
        match self {
            Window::Winograd(k) => k.run_rows(x, rows.clone(), o, scratch),
            Window::Depthwise(k) => k.run_rows(x, rows.clone(), o),
            Window::Pool(k) => k.run_rows(x, rows.clone(), o),
            Window::Conv(_) => unreachable!("returned above"),
        }
        after(rows)
    }

    /// Rows per tile: enough work per kernel call to amortize its set-up, small enough that
    /// the tile is still in cache for the epilogue.
    pub fn tile_rows(&self) -> usize {
        match self {
            Window::Conv(k) => k.tile_rows(),
            Window::Winograd(k) => k.tile_rows(),
            Window::Depthwise(_) | Window::Pool(_) => 64,
        }
    }

    /// Rows that a thread's chunk of rows should start and end on (chunks are rounded up to
    /// a multiple): 1, except a Winograd convolution's row of 2×2 tiles, which a range split
    /// inside would compute twice.
    pub fn row_align(&self) -> usize {
        match self {
            Window::Winograd(k) => k.row_align(),
            Window::Conv(_) | Window::Depthwise(_) | Window::Pool(_) => 1,
        }
    }

    /// Floating-point operations per output row, to decide how many threads a step is worth.
    pub fn flops_per_row(&self) -> usize {
        match self {
            Window::Conv(k) => 2 * k.depth() * k.cols(),
            // 16 products per 4 pixels of a tile (the transforms are not counted).
            Window::Winograd(k) => 2 * 4 * k.in_channels() * k.cols(),
            Window::Depthwise(k) => 2 * k.taps() * k.cols(),
            Window::Pool(k) => k.taps() * k.cols(),
        }
    }
}

/// An elementwise tail run on the rows an anchor kernel has just written.
#[derive(Debug, Serialize, Deserialize)]
pub struct Epilogue {
    pub kernel: RowKernel,
    /// The tail's inputs: the anchor's result first, then the fused body's inputs.
    pub inputs: Vec<BufId>,
    pub outputs: Vec<BufId>,
    /// Whether output rows of the anchor map one to one onto the tail's rows, so the tail can
    /// run tile by tile; otherwise it runs once the anchor has finished.
    pub tiled: bool,
}

/// What a step runs.
#[derive(Debug, Serialize, Deserialize)]
pub enum Kernel {
    /// A batch of strided GEMMs `c = a · b`, then the epilogue.
    Gemm {
        gemm: BatchedGemm,
        a: BufId,
        b: BufId,
        /// B packed once at compile time, when it is a constant shared by the whole batch.
        packed: Option<Arc<PackedB>>,
        c: BufId,
        epilogue: Option<Epilogue>,
    },
    /// A window kernel (convolution, depthwise convolution, pooling), then the epilogue.
    Window {
        kernel: Window,
        x: BufId,
        out: BufId,
        epilogue: Option<Epilogue>,
    },
    /// A batch of strided GEMMs of a dtype other than f32 (which runs [`Kernel::Gemm`]),
    /// computed in the interpreter's compute type, then the epilogue (once the whole product
    /// is done).
    GenericGemm {
        gemm: BatchedGemm,
        dtype: DType,
        a: BufId,
        b: BufId,
        c: BufId,
        epilogue: Option<Epilogue>,
    },
    /// Constant padding.
    Pad {
        kernel: crate::kernels::pad::ConstPad,
        x: BufId,
        out: BufId,
    },
    /// A reduction over middle axes (global average pooling).
    Reduce {
        kernel: crate::kernels::reduce::MiddleReduce,
        x: BufId,
        out: BufId,
    },
    /// A reduction over any set of axes, of any numeric dtype.
    ReduceAxes {
        kernel: ReduceAxes,
        x: BufId,
        out: BufId,
    },
    /// The index of the largest element along one axis.
    ArgMax {
        kernel: ArgMax,
        x: BufId,
        out: BufId,
    },
    /// A generated kernel (a fused body or a single elementwise/row op).
    Rows {
        kernel: RowKernel,
        inputs: Vec<BufId>,
        outputs: Vec<BufId>,
    },
    /// A copy of one buffer into another of the same size (a graph output that is also an
    /// input, a constant or another output).
    Copy { from: BufId, to: BufId },
    /// Data movement of any dtype (concat, pack, unpack, slices, transpose, tile, constant
    /// pad): each fill sets a whole buffer to one element's bytes, then the strided copies run,
    /// each split across the thread pool when large.
    Move {
        fills: Vec<(BufId, Vec<u8>)>,
        parts: Vec<MovePart>,
    },
    /// A copy through per-axis index tables (reflect and symmetric pad).
    Indexed {
        kernel: crate::kernels::copy::IndexedCopy,
        x: BufId,
        out: BufId,
    },
    /// Rows of `params` picked by run-time indices (embedding lookup), bounds checked.
    Gather {
        kernel: crate::kernels::gather::Gather,
        params: BufId,
        indices: BufId,
        out: BufId,
    },
    /// A cast to or from a low-precision storage type, element by element.
    Convert {
        kernel: crate::kernels::convert::Convert,
        x: BufId,
        out: BufId,
    },
    /// Every element of `out` set to the one element of `value`.
    Fill { value: BufId, out: BufId },
    /// `x` with one row replaced by `item` (a list write); only the row is written when `out`
    /// is `x`'s own storage (see `in_place` in `lower.rs`).
    SetItem {
        kernel: crate::kernels::set_item::SetItem,
        x: BufId,
        index: BufId,
        item: BufId,
        out: BufId,
    },
    /// A `while`: its cond and body compiled once into sub-plans, run per iteration on slots
    /// of this plan's arena (see [`LoopKernel`]).
    While(Box<LoopKernel>),
    /// An `if`: both branches compiled into sub-plans, one run per call (see [`BranchKernel`]).
    If(Box<BranchKernel>),
    // Variants plan images do not hold (`#[serde(skip)]`) come last: the encoding numbers
    // variants by position, and a skipped variant before a stored one would shift it.
    /// `matmul_integer`: a batch of integer GEMMs of i8/u8 operands minus their zero points
    /// (`kernels::int_gemm`), then the epilogue (once the whole product is done).
    #[serde(skip)]
    IntGemm {
        kernel: IntGemm,
        a: BufId,
        b: BufId,
        a_zp: BufId,
        b_zp: BufId,
        c: BufId,
        epilogue: Option<Epilogue>,
    },
    /// `conv2d_integer`: im2col into the integer GEMM (`kernels::int_conv`), then the
    /// epilogue (once the whole convolution is done).
    #[serde(skip)]
    IntConv {
        kernel: IntConv,
        x: BufId,
        filter: BufId,
        x_zp: BufId,
        filter_zp: BufId,
        out: BufId,
        epilogue: Option<Epilogue>,
    },
    /// An einsum that is no batch of GEMMs, by its definition, then the epilogue (once the
    /// whole op is done).
    #[serde(skip)]
    Einsum {
        kernel: EinsumLoops,
        inputs: Vec<BufId>,
        out: BufId,
        epilogue: Option<Epilogue>,
    },
    /// A window op the tuned f32 kernels of [`Kernel::Window`] do not take (another dtype,
    /// NCHW, a filter computed at run time), then the epilogue (once the whole op is done).
    #[serde(skip)]
    GenericWindow {
        kernel: GenericWindow,
        x: BufId,
        /// The filter of a convolution.
        filter: Option<BufId>,
        out: BufId,
        epilogue: Option<Epilogue>,
    },
    /// The determinant of each matrix of a batch.
    #[serde(skip)]
    Det { kernel: Det, x: BufId, out: BufId },
    /// A Fourier transform along one axis.
    #[serde(skip)]
    Dft { kernel: Dft, x: BufId, out: BufId },
    /// The reference interpreter on one op, for what has no compiled kernel (yet). Correct,
    /// slow, and counted in [`PlanStats::interp_steps`]. Not stored in plan images (an
    /// artifact holding such a plan compiles it again when loaded).
    #[serde(skip)]
    Interp {
        op: Op,
        inputs: Vec<BufId>,
        outputs: Vec<BufId>,
        /// Why no compiled kernel was used.
        reason: String,
    },
    /// An ONNX indexing op (element gathers and scatters, trilu, cumsum, top_k) on the node's
    /// own inputs and outputs; an index out of range is the step's error.
    #[serde(skip)]
    Indexing {
        kernel: crate::kernels::indexing::IndexKernel,
        inputs: Vec<BufId>,
        outputs: Vec<BufId>,
    },
    /// An image op (`grid_sample`, `roi_align`, `col2im`) on the node's own inputs and
    /// outputs; a batch index out of range is the step's error.
    #[serde(skip)]
    Image {
        kernel: crate::kernels::image::ImageKernel,
        inputs: Vec<BufId>,
        outputs: Vec<BufId>,
    },
}

/// A `matmul_integer`'s batch of GEMMs, whether each operand is i8 (else u8), and B minus its
/// zero points packed once, when both are constants shared by the whole batch.
#[derive(Debug)]
pub struct IntGemm {
    pub gemm: BatchedGemm,
    pub a_signed: bool,
    pub b_signed: bool,
    pub packed: Option<Arc<PackedInt>>,
}

/// A `while` step's compiled regions and where its values live.
///
/// Carried value `k` lives in slot A (`slots[k]`, the while's own output buffer) and, unless
/// the body writes it in place, slot B (`spare[k]`): iteration `i` reads the slots of parity
/// `i % 2` and writes the others, so going round the loop swaps nothing and copies nothing.
/// The init values are copied into slot A once per call (not even that when the while's
/// output took over an init's storage, see `in_place`), and after an odd number of
/// iterations slot B is copied back into slot A once.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoopKernel {
    pub cond: Plan,
    pub body: Plan,
    /// The init values' buffers (the step's reads).
    pub init: Vec<BufId>,
    /// Slot A of each carried value: the while's outputs.
    pub slots: Vec<BufId>,
    /// Slot B of each carried value, `None` when the body reads and writes the value in one
    /// buffer (passed through, or updated in place: see `lower/regions.rs`).
    pub spare: Vec<Option<BufId>>,
    /// One arena buffer holding the cond's flag (its first [`super::memory::ALIGN`] bytes)
    /// and then the arena of whichever sub-plan runs.
    pub scratch: BufId,
    /// This step's entry in the frame's bound regions.
    pub frame: usize,
}

/// An `if` step's compiled branches.
#[derive(Debug, Serialize, Deserialize)]
pub struct BranchKernel {
    pub then_branch: Plan,
    pub else_branch: Plan,
    /// The condition (a bool scalar).
    pub cond: BufId,
    /// The branches' inputs.
    pub args: Vec<BufId>,
    /// The if's outputs, which the branch run writes.
    pub outputs: Vec<BufId>,
    /// The arena of whichever branch runs.
    pub scratch: BufId,
    /// This step's entry in the frame's bound regions.
    pub frame: usize,
}

/// Byte offset of the sub-plans' arena in a region step's scratch buffer (after the flag).
pub const REGION_ARENA_OFFSET: usize = super::memory::ALIGN;

impl Kernel {
    /// Estimated floating-point operations (or elements moved) of one run.
    pub fn work(&self, bufs: &[Buf]) -> usize {
        match self {
            Kernel::Gemm { gemm, .. }
            | Kernel::GenericGemm { gemm, .. }
            | Kernel::IntGemm {
                kernel: IntGemm { gemm, .. },
                ..
            } => 2 * gemm.m * gemm.n * gemm.k * gemm.batch_count(),
            Kernel::IntConv { kernel, .. } => kernel.rows() * kernel.flops_per_row(),
            Kernel::Window { kernel, .. } => kernel.rows() * kernel.flops_per_row(),
            Kernel::GenericWindow { kernel, .. } => kernel.rows() * kernel.flops_per_row(),
            Kernel::Einsum { kernel, .. } => 2 * kernel.work(),
            Kernel::Rows { kernel, .. } => 4 * kernel.rows() * kernel.row_len(),
            Kernel::Pad { out, .. }
            | Kernel::Reduce { x: out, .. }
            | Kernel::ReduceAxes { x: out, .. }
            | Kernel::ArgMax { x: out, .. } => bufs[*out].len(),
            // LU factoring: about n³ / 3 multiply-adds per matrix.
            Kernel::Det { kernel, .. } => kernel.batch * kernel.n.pow(3) / 3,
            Kernel::Dft { kernel, .. } => kernel.work(),
            Kernel::Copy { to, .. }
            | Kernel::Indexed { out: to, .. }
            | Kernel::Gather { out: to, .. }
            | Kernel::Fill { out: to, .. }
            | Kernel::Convert { out: to, .. } => bufs[*to].len(),
            Kernel::SetItem { kernel, .. } => kernel.row_bytes,
            // Each input element is read and each output written about once (top_k sorts).
            Kernel::Indexing {
                inputs, outputs, ..
            } => inputs.iter().chain(outputs).map(|b| bufs[*b].len()).sum(),
            Kernel::Image { kernel, .. } => kernel.work(),
            // At least one iteration (how many is unknown): a loop beside a small step runs
            // alone, its body's kernels split over every thread.
            Kernel::While(l) => l.cond.work().saturating_add(l.body.work()),
            Kernel::If(b) => b.then_branch.work().max(b.else_branch.work()),
            Kernel::Move { fills, parts } => {
                fills.iter().map(|(b, _)| bufs[*b].len()).sum::<usize>()
                    + parts.iter().map(|p| p.copy.len()).sum::<usize>()
            }
            // Unknown, and slow: never worth balancing against.
            Kernel::Interp { .. } => usize::MAX / 4,
        }
    }

    /// A short name of the kind of kernel, for profiles.
    pub fn kind(&self) -> &'static str {
        let fused = match self {
            Kernel::Gemm { epilogue, .. }
            | Kernel::GenericGemm { epilogue, .. }
            | Kernel::IntGemm { epilogue, .. }
            | Kernel::Einsum { epilogue, .. }
            | Kernel::Window { epilogue, .. }
            | Kernel::GenericWindow { epilogue, .. }
            | Kernel::IntConv { epilogue, .. } => epilogue.is_some(),
            _ => false,
        };
        match self {
            Kernel::Gemm { .. } | Kernel::GenericGemm { .. } | Kernel::IntGemm { .. } if fused => {
                "gemm+epilogue"
            }
            Kernel::Einsum { .. } if fused => "einsum+epilogue",
            Kernel::Einsum { .. } => "einsum",
            Kernel::Window { .. } | Kernel::GenericWindow { .. } | Kernel::IntConv { .. }
                if fused =>
            {
                "window+epilogue"
            }
            Kernel::Gemm { .. } | Kernel::GenericGemm { .. } | Kernel::IntGemm { .. } => "gemm",
            Kernel::Window { .. } | Kernel::GenericWindow { .. } | Kernel::IntConv { .. } => {
                "window"
            }
            Kernel::Pad { .. } => "pad",
            Kernel::Reduce { .. } | Kernel::ReduceAxes { .. } => "reduce",
            Kernel::ArgMax { .. } => "arg_max",
            Kernel::Det { .. } => "det",
            Kernel::Dft { .. } => "dft",
            Kernel::Rows { .. } => "generated",
            Kernel::Interp { .. } => "interp",
            Kernel::Copy { .. } | Kernel::Move { .. } | Kernel::Indexed { .. } => "copy",
            Kernel::Gather { .. } => "gather",
            Kernel::Fill { .. } => "fill",
            Kernel::Convert { .. } => "convert",
            Kernel::SetItem { .. } => "set_item",
            Kernel::Indexing { kernel, .. } => kernel.name(),
            Kernel::Image { kernel, .. } => kernel.name(),
            Kernel::While(_) => "loop",
            Kernel::If(_) => "branch",
        }
    }
}

/// A step's op mnemonic (an IR op's, or `copy`); plan images check it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpName(pub &'static str);

impl std::fmt::Display for OpName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One kernel call.
#[derive(Debug, Serialize, Deserialize)]
pub struct Step {
    /// The graph node's display name, for errors and tracing.
    pub name: String,
    /// The node's op mnemonic.
    pub op: OpName,
    pub kernel: Kernel,
    pub reads: Vec<BufId>,
    pub writes: Vec<BufId>,
    /// Estimated work (floating-point operations, or elements moved), to balance waves.
    pub work: usize,
}

/// Counts describing a plan (for `lathe inspect` and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStats {
    pub steps: usize,
    pub gemm_steps: usize,
    pub window_steps: usize,
    pub generated_steps: usize,
    pub epilogues: usize,
    pub interp_steps: usize,
    /// Data-movement steps (copies, concat, slices, transpose, pad, tile, gather, fill).
    pub copy_steps: usize,
    /// Values that are views of another value's bytes (reshape, squeeze, identity, ...) or
    /// written in place into a concat's buffer by their producer: no step at all.
    pub views: usize,
    /// Bytes of the arena: the peak of intermediate memory.
    pub arena_bytes: usize,
    /// Bytes alive at the busiest step: the lower bound any arena plan could reach.
    pub arena_lower_bound: usize,
    /// Bytes of the graph outputs, allocated per call and handed to the caller.
    pub output_bytes: usize,
    /// Waves of independent steps with more than one step (branches that may run in parallel).
    pub parallel_waves: usize,
    /// `while` and `if` steps (at any depth).
    pub control_steps: usize,
    /// Steps inside `while` and `if` regions (at any depth), which run per iteration or per
    /// branch taken: not among `steps`, which counts this plan's own. The kind counts
    /// (`gemm_steps`, `interp_steps`, ...) count steps at every depth.
    pub region_steps: usize,
}

impl PlanStats {
    /// Adds a region's sub-plan: its steps run per iteration (or per branch taken) inside a
    /// step of this plan. Its arena is inside that step's scratch buffer, already counted.
    pub fn absorb(&mut self, sub: &PlanStats) {
        self.region_steps += sub.steps + sub.region_steps;
        self.gemm_steps += sub.gemm_steps;
        self.window_steps += sub.window_steps;
        self.generated_steps += sub.generated_steps;
        self.epilogues += sub.epilogues;
        self.interp_steps += sub.interp_steps;
        self.copy_steps += sub.copy_steps;
        self.views += sub.views;
        self.parallel_waves += sub.parallel_waves;
        self.control_steps += sub.control_steps;
    }
}

/// Everything a call needs besides its inputs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    pub storages: Vec<Storage>,
    pub bufs: Vec<Buf>,
    pub steps: Vec<Step>,
    /// Waves: runs of consecutive steps independent of each other (no step reads or writes
    /// what another of its wave writes, and the memory plan never lets two of them share
    /// arena bytes), which the scheduler may run at the same time.
    pub waves: Vec<std::ops::Range<usize>>,
    /// Per wave, whether its steps are worth running side by side (decided once, when
    /// lowered, from the steps' work), else they run in order. The executor also runs in
    /// order a wave whose every step is large enough to split over all of its pool's threads
    /// (`splits_well` in `exec.rs`: the thread count is the pool's, not the plan's).
    pub side_by_side: Vec<bool>,
    /// The buffer of each graph output, in output order.
    pub outputs: Vec<BufId>,
    /// Graph input buffers, in input order.
    pub inputs: Vec<BufId>,
    pub stats: PlanStats,
}

impl Plan {
    /// The estimated work of one run of every step.
    pub fn work(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.work)
            .fold(0, usize::saturating_add)
    }
}
