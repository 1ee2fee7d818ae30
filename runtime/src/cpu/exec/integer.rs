//! Running `matmul_integer` and `conv2d_integer` steps (`kernels::int_gemm`,
//! `kernels::int_conv`): the zero points are read, operands the plan did not pack are packed
//! for this call, and the rows are split into tasks over the thread pool.

use super::{gemm_tasks, split, Frame, SendBytes, MIN_TASK_FLOPS};
use crate::cpu::plan::*;
use crate::cpu::threads::ThreadPool;
use crate::kernels::int_conv::IntConv;
use crate::kernels::int_gemm::{self, gemm_rows, zero_points, ByteMat, PackedB};
use std::sync::Mutex;

impl Frame {
    /// A zero-point buffer's values, widened.
    fn zero_points_of(&self, plan: &Plan, b: BufId, signed: bool) -> Vec<i32> {
        // SAFETY: the buffer holds `len` elements of its dtype (i8 or u8, as `signed` says:
        // the lowering took it from the buffer's dtype), only read during the step.
        unsafe { zero_points(self.bytes_ptr(plan, b), signed, plan.bufs[b].len()) }
    }

    /// A `matmul_integer` step: tasks are (batch, row chunk) pairs, as for the float GEMMs.
    pub(super) fn int_gemm(
        &self,
        plan: &Plan,
        k: &IntGemm,
        [a, b, a_zp, b_zp, c]: [BufId; 5],
        pool: &ThreadPool,
    ) {
        let g = &k.gemm;
        let a_zp = self.zero_points_of(plan, a_zp, k.a_signed);
        let batches = g.batch_count();
        let shared_b = g.batch.iter().all(|l| l.1[1] == 0);
        // B of each batch entry (of all, when shared) packed for this call, unless the plan
        // holds it packed.
        let owned: Vec<PackedB> = match &k.packed {
            Some(_) => vec![],
            None => {
                let b_zp = self.zero_points_of(plan, b_zp, k.b_signed);
                let pb = SendBytes(self.bytes_ptr(plan, b));
                let count = if shared_b { 1 } else { batches };
                let slots: Vec<Mutex<Option<PackedB>>> =
                    (0..count).map(|_| Mutex::new(None)).collect();
                pool.run(count, &|t| {
                    let m = ByteMat {
                        ptr: pb.get().wrapping_add(g.offsets(t)[1]),
                        signed: k.b_signed,
                        strides: g.b,
                    };
                    // SAFETY: the geometry was built from B's shape, so it addresses elements
                    // of B's buffer, which is only read.
                    let p = unsafe { PackedB::new(m, g.k, g.n, &b_zp) };
                    *slots[t].lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                });
                slots
                    .into_iter()
                    .map(|s| {
                        s.into_inner()
                            .unwrap_or_else(|e| e.into_inner())
                            .expect("every batch entry is packed")
                    })
                    .collect()
            }
        };
        let packed_for = |bi: usize| -> &PackedB {
            match &k.packed {
                Some(p) => p,
                None => &owned[if shared_b { 0 } else { bi }],
            }
        };
        let (pa, pc) = (
            SendBytes(self.bytes_ptr(plan, a)),
            SendBytes(self.bytes_ptr(plan, c)),
        );
        let (row_chunk, chunks) = gemm_tasks(g, pool.threads());
        pool.run(batches * chunks, &|t| {
            let (bi, ci) = (t / chunks, t % chunks);
            let rows = (ci * row_chunk).min(g.m)..((ci + 1) * row_chunk).min(g.m);
            let [oa, _, oc] = g.offsets(bi);
            let am = ByteMat {
                ptr: pa.get().wrapping_add(oa),
                signed: k.a_signed,
                strides: g.a,
            };
            let cp = (pc.get() as *mut i32).wrapping_add(oc);
            // SAFETY: the geometry was built from the operands' shapes, so every element it
            // addresses lies in its buffer; A is only read, and each task writes the elements
            // of C of its own (batch, rows), which no other task addresses.
            unsafe { gemm_rows(am, &a_zp, packed_for(bi), rows, cp, g.c) };
        });
    }

    /// A `conv2d_integer` step: tasks are ranges of output pixels.
    pub(super) fn int_conv(
        &self,
        plan: &Plan,
        k: &IntConv,
        [x, filter, x_zp, f_zp]: [BufId; 4],
        out: BufId,
        pool: &ThreadPool,
    ) {
        let x_signed = int_gemm::byte_signedness(plan.bufs[x].dtype) == Some(true);
        let x_zp = self.zero_points_of(plan, x_zp, x_signed)[0];
        let owned;
        let packed: &[PackedB] = match &k.packed {
            Some(p) => &p[..],
            None => {
                let f_signed = int_gemm::byte_signedness(plan.bufs[filter].dtype) == Some(true);
                let f_zp = self.zero_points_of(plan, f_zp, f_signed);
                // SAFETY: the filter buffer is the whole dense filter of the kernel's shape.
                owned = unsafe { k.pack(self.bytes_ptr(plan, filter), &f_zp) };
                &owned
            }
        };
        let (xs, os) = (
            SendBytes(self.bytes_ptr(plan, x)),
            SendBytes(self.bytes_ptr(plan, out)),
        );
        let rows = k.rows();
        split(
            pool,
            rows,
            rows * k.flops_per_row() / MIN_TASK_FLOPS,
            &|mine| {
                // SAFETY: the buffers are dense tensors of the kernel's input and output shapes
                // (built from their types); x is only read, and each task writes the output
                // pixels of its own rows.
                unsafe { k.run_rows(xs.get(), x_zp, packed, os.get() as *mut i32, mine) };
            },
        );
    }
}
