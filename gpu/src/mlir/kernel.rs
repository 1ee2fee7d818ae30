//! A kernel's wrappers (its `gpu.func`, one thread per element; its host function, a loop
//! over the elements) and how tensors are stored in its memrefs.

use super::expr::Built;
use super::scalar::Compute;
use lathe_ir::{DType, Tensor, TensorType};
use std::fmt::Write as _;

/// How a dtype is stored in a kernel's memrefs and what it computes in.
pub fn storage(d: DType) -> Result<(&'static str, Compute), String> {
    let compute = Compute::of(d)?;
    Ok((element(d)?.0, compute))
}

/// The MLIR type an element of `d` is stored as in a memref, and its width in bits.
pub fn element(d: DType) -> Result<(&'static str, usize), String> {
    Ok(match d {
        DType::F32 => ("f32", 32),
        DType::F64 => ("f64", 64),
        DType::F16 => ("f16", 16),
        DType::BF16 => ("bf16", 16),
        DType::Bool | DType::I8 | DType::U8 => ("i8", 8),
        DType::I16 | DType::U16 => ("i16", 16),
        DType::I32 | DType::U32 => ("i32", 32),
        DType::I64 | DType::U64 => ("i64", 64),
        d => return Err(format!("{d} kernels are not lowered to MLIR yet")),
    })
}

/// The elements of `t` as an MLIR dense literal's items: floats as their bit patterns (exact,
/// NaN and infinities included), bools as 0 and 1.
pub fn dense(t: &Tensor) -> Result<Vec<String>, String> {
    let d = t.dtype();
    let (_, bits) = element(d)?;
    let signed = matches!(d, DType::I8 | DType::I16 | DType::I32 | DType::I64);
    Ok((t.to_le_bytes().chunks(bits / 8))
        .map(|c| {
            let mut v = [0u8; 8];
            v[..c.len()].copy_from_slice(c);
            let v = u64::from_le_bytes(v);
            if d.is_float() {
                format!("0x{v:0w$X}", w = bits / 4)
            } else if signed {
                // Sign-extended from the element's width.
                (((v << (64 - bits)) as i64) >> (64 - bits)).to_string()
            } else {
                v.to_string()
            }
        })
        .collect())
}

pub fn dims(t: &TensorType) -> Result<Vec<usize>, String> {
    (t.shape.dims().iter())
        .map(|d| d.known())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("the shape {t} is not known: lower a specialized graph"))
}

/// Writes `b` as the `gpu.func` named `symbol`: one thread per element, guarded by `i < n`.
pub fn gpu_func(out: &mut String, symbol: &str, name: &str, b: &Built) {
    let n = b.elements;
    let _ = writeln!(
        out,
        "    // node `{}`: {n} elements",
        name.replace('\n', " ")
    );
    let _ = writeln!(
        out,
        "    gpu.func @{symbol}({}) kernel {{",
        b.params.join(", ")
    );
    out.push_str(
        "      %block = gpu.block_id x\n      %width = gpu.block_dim x\n      \
         %thread = gpu.thread_id x\n      %first = arith.muli %block, %width : index\n      \
         %i = arith.addi %first, %thread : index\n",
    );
    let _ = writeln!(out, "      %n = arith.constant {n} : index");
    out.push_str("      %inside = arith.cmpi ult, %i, %n : index\n      scf.if %inside {\n");
    indented(out, &b.text, 8);
    out.push_str("      }\n      gpu.return\n    }\n");
}

/// Writes `b` as the host function named `symbol`: a loop over the elements, the same
/// instructions in its body (what the tests run on the CPU).
pub fn host_func(out: &mut String, symbol: &str, b: &Built) {
    let _ = writeln!(out, "  func.func @{symbol}({}) {{", b.params.join(", "));
    let _ = writeln!(
        out,
        "    %zero = arith.constant 0 : index\n    %one = arith.constant 1 : index\n    \
         %n = arith.constant {} : index\n    scf.for %i = %zero to %n step %one {{",
        b.elements
    );
    indented(out, &b.text, 6);
    out.push_str("    }\n    return\n  }\n");
}

fn indented(out: &mut String, text: &str, by: usize) {
    for l in text.lines() {
        let _ = writeln!(out, "{:by$}{l}", "");
    }
}
