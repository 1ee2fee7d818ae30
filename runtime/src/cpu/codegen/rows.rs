//! The frame every generated kernel shares, whichever lowering fills it (the f32 vector one in
//! `lower.rs` or the scalar one in `scalar.rs`): the entry block reading the input and output
//! pointer arrays, the loop over rows `row_start..row_end`, and each row's leaf and output
//! addresses. The lowering emits the row's body between [`RowLoop::begin`] and
//! [`RowLoop::end`].

use super::analyze::{LeafSource, Plan};
use super::refs::Refs;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{Block, InstBuilder, MemFlags, Type, Value};
use cranelift_frontend::{FunctionBuilder, Variable};

/// The row loop of a kernel being emitted.
pub(super) struct RowLoop {
    row_var: Variable,
    row_block: Block,
    exit: Block,
    end: Value,
    /// Each leaf's address at the current row's first element.
    pub leaf_row: Vec<Value>,
    /// Each output's address at the current row's first element.
    pub out_row: Vec<Value>,
}

impl RowLoop {
    /// Emits the entry block of a function with the signature `(inputs, outputs, row_start,
    /// row_end)`, calls `setup` there (for variables the rows update), and opens the first
    /// row: `b` is left in the row's block.
    pub fn begin(
        plan: &Plan,
        refs: &Refs,
        b: &mut FunctionBuilder,
        ptr: Type,
        setup: impl FnOnce(&mut FunctionBuilder),
    ) -> RowLoop {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (inputs, outputs, start, end) = (params[0], params[1], params[2], params[3]);
        let flags = MemFlags::trusted();
        let input_base: Vec<Value> = (0..plan.num_inputs)
            .map(|i| b.ins().load(ptr, flags, inputs, (i * 8) as i32))
            .collect();
        let output_base: Vec<Value> = (0..plan.outputs.len())
            .map(|i| b.ins().load(ptr, flags, outputs, (i * 8) as i32))
            .collect();
        let leaf_base: Vec<Value> = plan
            .leaves
            .iter()
            .map(|l| match l.source {
                LeafSource::Input(i) => input_base[i],
                LeafSource::Table(t) => refs.table(b, ptr, t),
            })
            .collect();
        setup(b);

        let row_var = b.declare_var(ptr);
        b.def_var(row_var, start);
        let row_block = b.create_block();
        let exit = b.create_block();
        let any = b.ins().icmp(IntCC::UnsignedLessThan, start, end);
        b.ins().brif(any, row_block, &[], exit, &[]);

        b.switch_to_block(row_block);
        let row = b.use_var(row_var);
        let leaf_row = plan
            .leaves
            .iter()
            .zip(&leaf_base)
            .map(|(leaf, &base)| {
                let size = leaf.dtype.size_bytes() as u64;
                let mut p = base;
                for t in &leaf.row_terms {
                    let mut idx = row;
                    if t.div != 1 {
                        idx = b.ins().udiv_imm(idx, t.div as i64);
                    }
                    if t.modulo != 0 {
                        idx = b.ins().urem_imm(idx, t.modulo as i64);
                    }
                    let bytes = b.ins().imul_imm(idx, (t.stride * size) as i64);
                    p = b.ins().iadd(p, bytes);
                }
                p
            })
            .collect();
        let out_row = output_base
            .iter()
            .zip(&plan.outputs)
            .map(|(&o, &id)| {
                let size = plan.nodes[id].dtype.size_bytes();
                let bytes = b.ins().imul_imm(row, (plan.row_len * size) as i64);
                b.ins().iadd(o, bytes)
            })
            .collect();
        RowLoop {
            row_var,
            row_block,
            exit,
            end,
            leaf_row,
            out_row,
        }
    }

    /// Closes the row (on to the next, or out of the loop) and leaves `b` in the exit block,
    /// where the caller returns the function's fault bits.
    pub fn end(&self, b: &mut FunctionBuilder) {
        let row = b.use_var(self.row_var);
        let next = b.ins().iadd_imm(row, 1);
        b.def_var(self.row_var, next);
        let more = b.ins().icmp(IntCC::UnsignedLessThan, next, self.end);
        b.ins().brif(more, self.row_block, &[], self.exit, &[]);
        b.switch_to_block(self.exit);
    }
}
