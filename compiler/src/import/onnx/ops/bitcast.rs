//! ONNX `BitCast` (opset 26): the bytes of `x` read as another type of the same width. Numeric
//! types are the IR's `bitcast`; bool (one byte, 0 or 1) to a one-byte integer is a cast, and a
//! one-byte integer to bool is `x != 0` (a byte other than 0 or 1 reads as true, as NumPy's
//! view reads it). The low-precision storage types, which the IR holds unpacked, are refused.

use super::elementwise::cast;
use super::{one, row, OnnxOp};
use crate::import::onnx::{tensor, Builder, NodeCx};
use lathe_ir::ops::BinaryOp;
use lathe_ir::{DType, Op, Tensor, ValueId};

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![row(
        "BitCast",
        &["bitcast", "cast", "not_equal"],
        import_bitcast,
    )]
}

fn import_bitcast(b: &mut Builder, cx: &NodeCx) -> Result<Vec<ValueId>, String> {
    let x = cx.input(0)?;
    let from = b.dtype(x);
    let to = tensor::dtype(cx.attrs.int("to")? as i32)?;
    if from.is_low_precision() || to.is_low_precision() {
        return Err(format!("a bitcast from {from} to {to} is not supported"));
    }
    if from.size_bytes() != to.size_bytes() {
        return Err(format!(
            "a bitcast from {from} to {to} changes the element size ({} to {} bytes), which \
             BitCast does not allow",
            from.size_bytes(),
            to.size_bytes()
        ));
    }
    one(match (from, to) {
        _ if from == to => x,
        (DType::Bool, _) => cast(b, x, to)?,
        (_, DType::Bool) => {
            let zero = b.konst(Tensor::from_i64(from, &[], &[0]));
            b.op(Op::Binary(BinaryOp::NotEqual), &[x, zero])?
        }
        _ => b.op(Op::Bitcast { to }, &[x])?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::attention::tests::{one_node, run, A};
    use super::*;

    fn bitcast(x: &Tensor, to: i64) -> Result<Tensor, String> {
        let g = one_node(
            26,
            "BitCast",
            &[("x", x)],
            &[],
            &[("to", A::I(to))],
            &["x"],
            &["y"],
        )?;
        Ok(run(&g, &[x]).remove(0))
    }

    #[test]
    fn bitcast_reads_the_bytes() {
        let x = Tensor::from_vec(&[2], vec![1.0f32, -0.0]);
        let y = bitcast(&x, 6).unwrap();
        assert_eq!(y.dtype(), DType::I32);
        assert_eq!(y.to_i64_vec().unwrap(), [0x3f80_0000, i32::MIN as i64]);
        let x = Tensor::from_vec(&[2], vec![-2i16, 1]);
        assert_eq!(bitcast(&x, 4).unwrap().to_i64_vec().unwrap(), [65534, 1]);
        // bool <-> one-byte integers: 0 and 1, and any nonzero byte is true.
        let x = Tensor::from_vec(&[3], vec![true, false, true]);
        let y = bitcast(&x, 2).unwrap();
        assert_eq!(
            (y.dtype(), y.to_i64_vec().unwrap()),
            (DType::U8, vec![1, 0, 1])
        );
        let x = Tensor::from_vec(&[3], vec![0u8, 1, 2]);
        let y = bitcast(&x, 9).unwrap();
        assert_eq!(y.dtype(), DType::Bool);
        assert_eq!(y.to_f64_vec(), [0.0, 1.0, 1.0]);
    }

    #[test]
    fn bitcast_refuses_other_widths() {
        let x = Tensor::from_vec(&[2], vec![1.0f32, 2.0]);
        let e = bitcast(&x, 7).unwrap_err();
        assert!(
            e.contains("a bitcast from f32 to i64 changes the element size (4 to 8 bytes)"),
            "{e}"
        );
        let x = Tensor::from_vec(&[2], vec![1u8, 2]);
        let e = bitcast(&x, 17).unwrap_err();
        assert!(e.contains("is not supported"), "{e}");
    }
}
