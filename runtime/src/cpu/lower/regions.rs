//! Lowering of control flow: each region of a `while` or `if` compiles once, at plan-compile
//! time, into a sub-plan of its own (the same lowering, codegen, packed weights and memory
//! plan as any graph; regions nest), which the step runs per iteration or per call without
//! planning or allocating anything (see `exec/regions.rs`).
//!
//! A sub-plan's inputs and outputs are bound to the outer plan's buffers: an `if`'s branches
//! read its args and write its outputs; a `while`'s cond and body read the carried values'
//! current slots and the body writes the next ones (see [`LoopKernel`] for the two slots). A
//! sub-plan's intermediates live in one scratch buffer of the outer arena, shared by the
//! regions of the step (only one of them runs at a time).
//!
//! The contract the specializer gives (and these checks hold it to): every type in a region
//! is known, a loop's init, cond and body inputs, body outputs and outputs have one type per
//! carried value, and an `if`'s branches take its args' types and return its outputs' types.

use super::{lower_graph, Builder};
use crate::cpu::error::CpuError;
use crate::cpu::plan::*;
use lathe_ir::ops::Op;
use lathe_ir::{DType, Graph, NodeId, ValueId};

impl Builder {
    /// The step of a `while` or `if` node, its regions compiled into sub-plans.
    pub(super) fn region_step(
        &mut self,
        g: &Graph,
        id: NodeId,
        inputs: Vec<BufId>,
        outputs: Vec<BufId>,
    ) -> Result<(), CpuError> {
        let node = g.node(id);
        let name = g.display_name(id);
        let op = node.op.mnemonic();
        let at = |message: String| CpuError::Lower {
            node: name.clone(),
            op: op.to_string(),
            message,
        };
        let frame = self.regions;
        let (kernel, writes) = match &node.op {
            Op::While { cond, body } => {
                let cond = region(cond, "cond", &name, op, false)?;
                let body = region(body, "body", &name, op, true)?;
                self.check_region(&cond, "cond", &inputs, None)
                    .map_err(at)?;
                self.check_region(&body, "body", &inputs, Some(&outputs))
                    .map_err(at)?;
                match cond.outputs.as_slice() {
                    [flag]
                        if cond.bufs[*flag].dtype == DType::Bool && cond.bufs[*flag].len() == 1 => {
                    }
                    _ => return Err(at("the cond must return one bool scalar".into())),
                }
                let mut spare = vec![];
                let mut writes = vec![];
                for (k, (&slot, &init)) in outputs.iter().zip(&inputs).enumerate() {
                    if unchanged(&body, k) {
                        // The loop never changes it: the output is a view of the init (its
                        // fresh storage is left unused), read in place by cond and body.
                        let (storage, offset) = (self.bufs[init].storage, self.bufs[init].offset);
                        self.bufs[slot].storage = storage;
                        self.bufs[slot].offset = offset;
                        self.views += 1;
                    } else {
                        writes.push(slot);
                    }
                    spare.push((!one_buffer(&body, k)).then(|| self.like(slot)));
                }
                let scratch = self.scratch(&[&cond, &body]);
                writes.extend(spare.iter().flatten());
                writes.push(scratch);
                let kernel = Kernel::While(Box::new(LoopKernel {
                    cond,
                    body,
                    init: inputs.clone(),
                    slots: outputs,
                    spare,
                    scratch,
                    frame,
                }));
                (kernel, writes)
            }
            Op::If {
                then_branch,
                else_branch,
            } => {
                let then_branch = region(then_branch, "then_branch", &name, op, false)?;
                let else_branch = region(else_branch, "else_branch", &name, op, false)?;
                let (&cond, args) = inputs
                    .split_first()
                    .ok_or_else(|| at("an if has a condition".into()))?;
                if self.bufs[cond].dtype != DType::Bool || self.bufs[cond].len() != 1 {
                    return Err(at(format!(
                        "the condition must be a bool scalar, got {}{:?}",
                        self.bufs[cond].dtype, self.bufs[cond].dims
                    )));
                }
                for (branch, what) in [(&then_branch, "then_branch"), (&else_branch, "else_branch")]
                {
                    self.check_region(branch, what, args, Some(&outputs))
                        .map_err(at)?;
                }
                let scratch = self.scratch(&[&then_branch, &else_branch]);
                let mut writes = outputs.clone();
                writes.push(scratch);
                let kernel = Kernel::If(Box::new(BranchKernel {
                    then_branch,
                    else_branch,
                    cond,
                    args: args.to_vec(),
                    outputs,
                    scratch,
                    frame,
                }));
                (kernel, writes)
            }
            other => return Err(at(format!("{} has no regions", other.mnemonic()))),
        };
        self.regions += 1;
        let work = kernel.work(&self.bufs);
        self.steps.push(Step {
            name,
            op: OpName(op),
            kernel,
            reads: inputs,
            writes,
            work,
        });
        Ok(())
    }

    /// A fresh arena buffer of `b`'s type (a carried value's second slot).
    fn like(&mut self, b: BufId) -> BufId {
        let (dtype, dims) = (self.bufs[b].dtype, self.bufs[b].dims.clone());
        let bytes = self.bufs[b].bytes();
        let s = self.new_storage(StorageKind::Arena { offset: 0 }, bytes);
        self.new_buf(s, dtype, dims)
    }

    /// A region step's scratch buffer: the flag, then room for the largest sub-plan arena.
    fn scratch(&mut self, plans: &[&Plan]) -> BufId {
        let arena = plans.iter().map(|p| p.stats.arena_bytes).max().unwrap_or(0);
        let bytes = REGION_ARENA_OFFSET + arena;
        let s = self.new_storage(StorageKind::Arena { offset: 0 }, bytes);
        self.new_buf(s, DType::U8, vec![bytes])
    }

    /// Checks that a sub-plan takes values of the types of `args` (and returns those of
    /// `outputs`): the specializer's contract.
    fn check_region(
        &self,
        plan: &Plan,
        what: &str,
        args: &[BufId],
        outputs: Option<&[BufId]>,
    ) -> Result<(), String> {
        let ty = |bufs: &[Buf], b: BufId| (bufs[b].dtype, bufs[b].dims.clone());
        let show = |(d, dims): (DType, Vec<usize>)| format!("{d}{dims:?}");
        for (s, storage) in plan.storages.iter().enumerate() {
            let StorageKind::Input(k) = storage.kind else {
                continue;
            };
            let Some(&arg) = args.get(k) else {
                return Err(format!(
                    "the {what} takes input {k} but the op gives {} values",
                    args.len()
                ));
            };
            let Some(b) = plan
                .bufs
                .iter()
                .position(|b| b.storage == s && b.offset == 0)
            else {
                continue;
            };
            if storage.bytes != self.bufs[arg].bytes()
                || ty(&plan.bufs, b).0 != self.bufs[arg].dtype
            {
                return Err(format!(
                    "the {what}'s input {k} is {} but the op gives {} (regions must be \
                     specialized to the op's types)",
                    show(ty(&plan.bufs, b)),
                    show(ty(&self.bufs, arg))
                ));
            }
        }
        if let Some(outputs) = outputs {
            if plan.outputs.len() != outputs.len() {
                return Err(format!(
                    "the {what} returns {} values for {} outputs",
                    plan.outputs.len(),
                    outputs.len()
                ));
            }
            for (k, (&inner, &outer)) in plan.outputs.iter().zip(outputs).enumerate() {
                if ty(&plan.bufs, inner) != ty(&self.bufs, outer) {
                    return Err(format!(
                        "the {what}'s output {k} is {} but the op's is {} (regions must be \
                         specialized to the op's types)",
                        show(ty(&plan.bufs, inner)),
                        show(ty(&self.bufs, outer))
                    ));
                }
            }
        }
        Ok(())
    }

    /// In a loop body: whether output `j` is input `j` itself (or a view of all its bytes),
    /// which then needs no step and no second slot. Records the output when it is.
    pub(super) fn passes_through(&mut self, j: usize, v: ValueId) -> bool {
        let b = self.buf(v);
        let s = self.bufs[b].storage;
        let whole = self.bufs[b].offset == 0 && self.bufs[b].bytes() == self.storages[s].bytes;
        if matches!(self.storages[s].kind, StorageKind::Input(k) if k == j) && whole {
            self.outputs.push(b);
            return true;
        }
        false
    }

    /// In a loop body: lets output `k` be written in the buffer input `k` came in, when that
    /// is safe, so the loop keeps one slot for it (a `set_item` of a carried list then writes
    /// just its row, each iteration).
    ///
    /// Safe when every step that reads input `k`'s bytes (the old value) runs before the first
    /// step that writes output `k`'s bytes, or is that step and writes over that input by
    /// construction: a `set_item` whose list it is (and not its index or item), or a generated
    /// kernel reading it once as rows of the output's shape (each row read before it is
    /// written, as `in_place` allows). The old value is then dead before a byte of the new
    /// one is written. Waves are split afterwards, from the merged storages, so no reader of
    /// the old value runs beside the writer.
    pub(super) fn carry_in_place(&mut self) {
        for k in 0..self.outputs.len() {
            let out = self.outputs[k];
            let so = self.bufs[out].storage;
            let Some(si) = self
                .storages
                .iter()
                .position(|s| matches!(s.kind, StorageKind::Input(i) if i == k))
            else {
                continue;
            };
            if so == si
                || !matches!(self.storages[so].kind, StorageKind::Output)
                || self.bufs[out].offset != 0
                || self.storages[so].bytes != self.storages[si].bytes
            {
                continue;
            }
            let on =
                |bufs: &[Buf], list: &[BufId], s: usize| list.iter().any(|&b| bufs[b].storage == s);
            let Some(w) = self
                .steps
                .iter()
                .position(|st| on(&self.bufs, &st.writes, so))
            else {
                continue;
            };
            let last_read = self
                .steps
                .iter()
                .rposition(|st| on(&self.bufs, &st.reads, si));
            let safe = match last_read {
                None => true,
                Some(r) if r < w => true,
                Some(r) if r == w => self.writes_over(&self.steps[w], si, so),
                Some(_) => false,
            };
            if safe {
                for b in &mut self.bufs {
                    if b.storage == so {
                        b.storage = si;
                    }
                }
                // Nothing lives in the output's storage any more.
                self.storages[so] = Storage {
                    kind: StorageKind::Baked,
                    bytes: 0,
                };
            }
        }
    }

    /// Whether `step` may write its output in storage `so` over its input in storage `si`
    /// (see [`Builder::carry_in_place`]).
    fn writes_over(&self, step: &Step, si: usize, so: usize) -> bool {
        let s = |b: BufId| self.bufs[b].storage;
        match &step.kernel {
            Kernel::SetItem {
                x,
                index,
                item,
                out,
                ..
            } => s(*x) == si && s(*out) == so && s(*index) != si && s(*item) != si,
            Kernel::Rows {
                inputs, outputs, ..
            } => {
                let ins: Vec<BufId> = inputs.iter().copied().filter(|&b| s(b) == si).collect();
                let outs: Vec<BufId> = outputs.iter().copied().filter(|&b| s(b) == so).collect();
                match (ins.as_slice(), outs.as_slice()) {
                    ([i], [o]) => {
                        let (i, o) = (&self.bufs[*i], &self.bufs[*o]);
                        i.offset == 0 && o.offset == 0 && i.dims == o.dims && i.dtype == o.dtype
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

/// Whether a loop body reads and writes carried value `k` in one buffer: its output `k` lives
/// in its input `k`'s storage (passed through, or written in place).
pub(in crate::cpu) fn one_buffer(body: &Plan, k: usize) -> bool {
    body.outputs.get(k).is_some_and(
        |&b| matches!(body.storages[body.bufs[b].storage].kind, StorageKind::Input(i) if i == k),
    )
}

/// Whether a loop body passes carried value `k` through untouched: its output `k` is its
/// input `k`, whose bytes no step writes.
fn unchanged(body: &Plan, k: usize) -> bool {
    one_buffer(body, k) && {
        let s = body.bufs[body.outputs[k]].storage;
        !(body.steps.iter())
            .flat_map(|st| &st.writes)
            .any(|&w| body.bufs[w].storage == s)
    }
}

/// A region compiled into a sub-plan; its errors say which region of which node they are in.
fn region(g: &Graph, what: &str, node: &str, op: &str, carried: bool) -> Result<Plan, CpuError> {
    lower_graph(g.clone(), carried).map_err(|e| match e {
        CpuError::Lower {
            node: inner,
            op: inner_op,
            message,
        } => CpuError::Lower {
            node: inner,
            op: inner_op,
            message: format!("{message} (in the {what} of {op} `{node}`)"),
        },
        other => other,
    })
}
