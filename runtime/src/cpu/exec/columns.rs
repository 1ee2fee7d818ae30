//! Products split over columns as well as rows: a product with few rows and many columns (a
//! batch-1 convolution late in a network: 7×7 = 49 rows, 512 to 2048 columns; a dense layer
//! over a short sequence) against a constant, packed `B`.
//!
//! Split by rows only, every task streams all of `B` for a few rows of `A`: with two threads
//! ResNet-50's 3×3 convolutions at 7×7 read their 9.4 MB filter twice, from memory, and ran at
//! half the speed one thread reaches on 49 rows. Split by columns, each task reads only its
//! panels of `B` and all the rows of `A` (rebuilding their im2col rows itself), which costs
//! less whenever `B` has more columns than `A` has rows: `(T - 1)·m·k` floats read again
//! instead of `(T - 1)·k·n`.
//!
//! An epilogue then runs once the whole product is done (a tile of rows is finished only when
//! every column task has finished it).

use super::{block, with_scratch, Frame, SendPtr};
use crate::cpu::matmul::BatchedGemm;
use crate::cpu::plan::*;
use crate::cpu::threads::ThreadPool;
use crate::kernels::conv::Conv2d;
use crate::kernels::gemm::{MatMut, MatRef};
use crate::kernels::packed::{gemm_packed_cols, PackedB};

/// Columns per task at least: two AVX-512 panels, so each task's micro-kernel calls still
/// reuse a row of `A` across a few panels.
const MIN_TASK_COLS: usize = 64;

/// Fewest floats of `B` for which columns are split: 2 MiB, a core's L2 on the machines
/// measured. A smaller `B` is read from L2 or L3 quickly enough that reading it once per row
/// block costs less than what the column split costs: shorter micro-kernel runs, and rows
/// of the output written half by one core and half by another, so the next step (split by
/// rows) reads half of each row from the other core's cache. Measured on two threads
/// (Sapphire Rapids): 196×64·64×384 took 29 µs by rows and 35 µs by columns, 49×960·960×160
/// 50 and 55 µs; a transformer encoder's 128×256·256×1024 layers were level, but the steps
/// after them slowed the model by 4%. From 4608×512 up the columns win: 0.87 → 0.82 ms with
/// `B` warm, 1.58 → 0.8 ms per layer inside ResNet-50, where it comes from memory.
const MIN_SPLIT_B_FLOATS: usize = 1 << 19;

/// How `tasks` tasks split an `m × k` by `k × n` product: `(row blocks, column blocks)`.
/// Columns are split when `B` is large and has more columns than `A` has rows (see the
/// module notes), into blocks of at least [`MIN_TASK_COLS`]; the tasks left over split the
/// rows.
pub(super) fn blocks(m: usize, k: usize, n: usize, tasks: usize) -> (usize, usize) {
    let col_blocks = if n > m && k * n >= MIN_SPLIT_B_FLOATS {
        (n / MIN_TASK_COLS).clamp(1, tasks.max(1))
    } else {
        1
    };
    ((tasks / col_blocks).max(1), col_blocks)
}

impl Frame {
    /// A convolution's output `[rows, cols]` in `row_blocks × col_blocks` tasks (the
    /// convolution [`Conv2d::splits_columns`]), then its epilogue.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_blocks(
        &self,
        plan: &Plan,
        conv: &Conv2d,
        (x, out): (BufId, BufId),
        (row_blocks, col_blocks): (usize, usize),
        epilogue: Option<&Epilogue>,
        pool: &ThreadPool,
    ) {
        // SAFETY: x is only read during this step.
        let xs = unsafe { self.f32s(plan, x) };
        let out_ptr = SendPtr(self.ptr(plan, out));
        let out_len = plan.bufs[out].len();
        let (rows, cols) = (conv.rows(), conv.cols());
        pool.run(row_blocks * col_blocks, &|t| {
            let mine = block(rows, row_blocks, 1, t / col_blocks);
            let cs = block(cols, col_blocks, conv.column_align(), t % col_blocks);
            if mine.is_empty() || cs.is_empty() {
                return;
            }
            let at = mine.start * cols + cs.start;
            // SAFETY: the output buffer holds `rows × cols` floats, so `at < out_len`; the view
            // addresses rows `mine` × columns `cs` of it, which no other task does (tasks are
            // distinct (row block, column block) pairs) and nothing else reads during the
            // product.
            let o = unsafe {
                MatMut::from_raw_parts(
                    out_ptr.get().add(at),
                    out_len - at,
                    mine.len(),
                    cs.len(),
                    (cols, 1),
                )
            };
            with_scratch(conv.scratch_len(mine.len()), |scratch| {
                conv.run_block(xs, mine, cs, o, scratch)
            });
        });
        if let Some(e) = epilogue {
            self.bind_epilogue(plan, e).run_split(pool);
        }
    }

    /// One GEMM (no batch) against packed `B` in `row_blocks × col_blocks` tasks, then its
    /// epilogue.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_blocks(
        &self,
        plan: &Plan,
        g: &BatchedGemm,
        (a, packed, c): (BufId, &PackedB, BufId),
        (row_blocks, col_blocks): (usize, usize),
        epilogue: Option<&Epilogue>,
        pool: &ThreadPool,
    ) {
        // SAFETY: A is only read during this step (C is a distinct storage).
        let a_all = unsafe { self.f32s(plan, a) };
        let c_ptr = SendPtr(self.ptr(plan, c));
        let c_len = plan.bufs[c].len();
        let [oa, _, oc] = g.offsets(0);
        pool.run(row_blocks * col_blocks, &|t| {
            let mine = block(g.m, row_blocks, 1, t / col_blocks);
            let cs = block(g.n, col_blocks, packed.panel_width(), t % col_blocks);
            if mine.is_empty() || cs.is_empty() {
                return;
            }
            let a_at = (oa + mine.start * g.a.0).min(a_all.len());
            let av = MatRef {
                data: &a_all[a_at..],
                rows: mine.len(),
                cols: g.k,
                strides: g.a,
            };
            let at = (oc + mine.start * g.c.0 + cs.start * g.c.1).min(c_len);
            // SAFETY: `at` is inside C's storage (clamped to its length, which the view's
            // check then refuses if it were past it); the view addresses the product's rows
            // `mine` × columns `cs`, which no other task addresses (tasks are distinct (row
            // block, column block) pairs of one product); nothing else reads C meanwhile.
            let cv = unsafe {
                MatMut::from_raw_parts(c_ptr.get().add(at), c_len - at, mine.len(), cs.len(), g.c)
            };
            gemm_packed_cols(av, packed, cs, cv, false);
        });
        if let Some(e) = epilogue {
            self.bind_epilogue(plan, e).run_split(pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_rows_and_many_columns_split_the_columns() {
        // ResNet-50's 3×3 convolution at 7×7 on two threads: one column block each.
        assert_eq!(blocks(49, 4608, 512, 2), (1, 2));
        // Many rows: rows only.
        assert_eq!(blocks(3136, 576, 64, 2), (2, 1));
        assert_eq!(blocks(512, 512, 512, 4), (4, 1));
        // Sixteen threads, 2048 columns: sixteen column blocks of 128; 100 columns: one
        // block of at least 64, the rest on rows.
        assert_eq!(blocks(49, 512, 2048, 16), (1, 16));
        assert_eq!(blocks(10, 4096, 100, 16), (16, 1));
        assert_eq!(blocks(10, 4096, 200, 16), (5, 3));
        // The shapes of `tests/column_split.rs`, which check the results.
        assert_eq!(blocks(16, 4608, 512, 2), (1, 2));
        assert_eq!(blocks(16, 4608, 512, 3), (1, 3));
        assert_eq!(blocks(8, 1024, 1024, 3), (1, 3));
        // One task; a small B (MobileNet-v2's 1×1 at 14×14).
        assert_eq!(blocks(49, 4608, 512, 1), (1, 1));
        assert_eq!(blocks(196, 64, 384, 2), (2, 1));
    }

    #[test]
    fn blocks_cover_the_range_on_aligned_starts() {
        // (`block` is the executor's one way to cut a range for tasks.)
        for (len, parts, align) in [(512, 2, 32), (1000, 3, 32), (49, 4, 1), (40, 3, 32)] {
            let mut next = 0;
            for i in 0..parts {
                let b = block(len, parts, align, i);
                assert!(
                    b.is_empty() || b.start == next,
                    "{len} {parts} {align}: {b:?}"
                );
                assert!(b.start.is_multiple_of(align) || b.is_empty());
                next = next.max(b.end);
            }
            assert_eq!(next, len);
        }
    }
}
