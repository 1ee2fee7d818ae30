//! Running `while` and `if` steps: their sub-plans' frames are bound once per call (when the
//! frame around them is), so an iteration binds, plans and allocates nothing.
//!
//! A loop's carried value `k` has slot A (the while's output) and slot B (unless the body
//! reads and writes it in one buffer); iteration `i` runs the frames of parity `i % 2`, which
//! read the slots of that parity and write the others. Both parities' frames exist from the
//! start, so going round the loop only picks one of two frames. The sub-plans' arenas and
//! the cond's flag live in the step's scratch buffer of the enclosing arena.

use super::{CpuError, Frame};
use crate::cpu::lower::one_buffer;
use crate::cpu::plan::*;
use crate::cpu::threads::ThreadPool;

/// The frames of one region step, bound to the enclosing frame's buffers.
pub(in crate::cpu) enum BoundRegion {
    /// A loop's cond and body frames, by iteration parity.
    Loop { cond: [Frame; 2], body: [Frame; 2] },
    /// An if's branches.
    Branch {
        then_branch: Frame,
        else_branch: Frame,
    },
}

/// The frames of every region step of `plan`, whose storages are bound at `ptrs`.
pub(super) fn bind_regions(plan: &Plan, ptrs: &[*mut u8]) -> Vec<BoundRegion> {
    let at = |b: BufId| {
        let buf = &plan.bufs[b];
        // SAFETY: the lowering keeps every buffer inside its storage, and `ptrs` binds each
        // storage to at least its bytes (as `Frame::bytes_ptr`).
        unsafe { ptrs[buf.storage].add(buf.offset) }
    };
    let mut regions = vec![];
    for step in &plan.steps {
        match &step.kernel {
            Kernel::While(l) => {
                debug_assert_eq!(l.frame, regions.len());
                let a: Vec<*mut u8> = l.slots.iter().map(|&b| at(b)).collect();
                let b: Vec<*mut u8> = (l.spare.iter().zip(&a))
                    .map(|(s, &a)| s.map_or(a, at))
                    .collect();
                let flag = at(l.scratch);
                // SAFETY: the scratch buffer holds the flag's line and then the sub-plans'
                // arena (`REGION_ARENA_OFFSET + arena_bytes` of the larger one).
                let arena = unsafe { flag.add(REGION_ARENA_OFFSET) };
                let cond = [0, 1].map(|p| {
                    let ins = if p == 0 { &a } else { &b };
                    Frame::bind_sub(&l.cond, ins, &[flag], arena)
                });
                let body = [0, 1].map(|p| {
                    let (ins, outs) = if p == 0 { (&a, &b) } else { (&b, &a) };
                    Frame::bind_sub(&l.body, ins, outs, arena)
                });
                regions.push(BoundRegion::Loop { cond, body });
            }
            Kernel::If(k) => {
                debug_assert_eq!(k.frame, regions.len());
                let args: Vec<*mut u8> = k.args.iter().map(|&b| at(b)).collect();
                let outs: Vec<*mut u8> = k.outputs.iter().map(|&b| at(b)).collect();
                let arena = at(k.scratch);
                regions.push(BoundRegion::Branch {
                    then_branch: Frame::bind_sub(&k.then_branch, &args, &outs, arena),
                    else_branch: Frame::bind_sub(&k.else_branch, &args, &outs, arena),
                });
            }
            _ => {}
        }
    }
    regions
}

impl Frame {
    /// A sub-plan's frame: its input `i` at `ins[i]`, output `j` at `outs[j]`, its arena at
    /// `arena` (every pointer valid for the whole call, for the bytes the sub-plan gives it).
    fn bind_sub(plan: &Plan, ins: &[*mut u8], outs: &[*mut u8], arena: *mut u8) -> Frame {
        let ptrs: Vec<*mut u8> = (plan.storages.iter().enumerate())
            .map(|(s, st)| match &st.kind {
                StorageKind::Input(i) => ins[*i],
                // Constants are standard layout (the lowering makes them so); only read.
                StorageKind::Const(t) => {
                    super::dense_bytes(t).expect("constants are held in standard layout")
                }
                // SAFETY: the sub-plan's arena is `arena_bytes` long, and its memory plan put
                // every arena storage inside it.
                StorageKind::Arena { offset } => unsafe { arena.add(*offset) },
                // The output that claimed this storage (a claimed output is all of it).
                StorageKind::Output => plan
                    .outputs
                    .iter()
                    .position(|&b| plan.bufs[b].storage == s)
                    .map_or(std::ptr::null_mut(), |j| outs[j]),
                // Held by kernels, or merged away: nothing reads it from memory.
                StorageKind::Baked => std::ptr::null_mut(),
            })
            .collect();
        let regions = bind_regions(plan, &ptrs);
        Frame {
            ptrs,
            outputs: vec![],
            regions,
        }
    }

    /// Runs a `while` step: the init values into slot A, then cond and body by parity until
    /// the cond says false, then slot B back into slot A after an odd number of iterations.
    pub(super) fn run_loop(
        &self,
        plan: &Plan,
        step: &Step,
        l: &LoopKernel,
        pool: &ThreadPool,
    ) -> Result<(), CpuError> {
        let Some(BoundRegion::Loop { cond, body }) = self.regions.get(l.frame) else {
            return Err(internal(step, "the loop's frames are not bound"));
        };
        for (&init, &slot) in l.init.iter().zip(&l.slots) {
            self.copy_buf(plan, init, slot);
        }
        let flag = self.bytes_ptr(plan, l.scratch) as *const u8;
        let mut i = 0usize;
        loop {
            let p = i % 2;
            cond[p]
                .run(&l.cond, pool, None)
                .map_err(|e| within(e, step, "cond", Some(i)))?;
            // SAFETY: the cond's one output, a bool, was just written at the flag.
            if unsafe { flag.read() } == 0 {
                break;
            }
            body[p]
                .run(&l.body, pool, None)
                .map_err(|e| within(e, step, "body", Some(i)))?;
            i += 1;
        }
        if i % 2 == 1 {
            for (k, (spare, &slot)) in l.spare.iter().zip(&l.slots).enumerate() {
                if let Some(spare) = *spare {
                    debug_assert!(!one_buffer(&l.body, k));
                    self.copy_buf(plan, spare, slot);
                }
            }
        }
        Ok(())
    }

    /// Runs an `if` step: the branch its condition names, on its args, into its outputs.
    pub(super) fn run_branch(
        &self,
        plan: &Plan,
        step: &Step,
        k: &BranchKernel,
        pool: &ThreadPool,
    ) -> Result<(), CpuError> {
        let Some(BoundRegion::Branch {
            then_branch,
            else_branch,
        }) = self.regions.get(k.frame)
        else {
            return Err(internal(step, "the branches' frames are not bound"));
        };
        // SAFETY: the condition is one bool (checked when lowered), written before this step.
        let yes = unsafe { self.bytes_ptr(plan, k.cond).read() } != 0;
        let (frame, sub, what) = if yes {
            (then_branch, &k.then_branch, "then_branch")
        } else {
            (else_branch, &k.else_branch, "else_branch")
        };
        frame
            .run(sub, pool, None)
            .map_err(|e| within(e, step, what, None))
    }

    /// Copies buffer `from` into `to` (same bytes), unless they are one buffer.
    fn copy_buf(&self, plan: &Plan, from: BufId, to: BufId) {
        let (src, dst) = (self.bytes_ptr(plan, from), self.bytes_ptr(plan, to));
        if src != dst {
            // SAFETY: both buffers hold the carried value's bytes; distinct storages (the
            // memory plan keeps buffers alive at one step apart unless `in_place` merged them,
            // and then they are the same pointer), and this step alone touches them now.
            unsafe { std::ptr::copy_nonoverlapping(src, dst, plan.bufs[to].bytes()) };
        }
    }
}

/// A kernel error inside a region, located: the inner node keeps its name, the message says
/// which region of which step (and which iteration) it was in.
fn within(e: CpuError, step: &Step, region: &str, iteration: Option<usize>) -> CpuError {
    match e {
        CpuError::Kernel { node, op, message } => {
            let when = iteration.map_or(String::new(), |i| format!(", iteration {i}"));
            CpuError::Kernel {
                node,
                op,
                message: format!(
                    "{message} (in the {region} of {} `{}`{when})",
                    step.op, step.name
                ),
            }
        }
        other => other,
    }
}

fn internal(step: &Step, what: &str) -> CpuError {
    CpuError::Kernel {
        node: step.name.clone(),
        op: step.op.to_string(),
        message: format!("internal error: {what}"),
    }
}
