//! Differential tests of the integer kernels (`matmul_integer`, `conv2d_integer`) against the
//! interpreter, through the whole CPU backend: every graph must plan with no interpreter step
//! and give the interpreter's i32 sums exactly, on one thread and on several, with the weights
//! and zero points as constants (packed when the plan is built) and as inputs (packed per call).

use lathe_compiler::SpecializedGraph;
use lathe_ir::ops::{ConvAttrs, DataFormat, Padding, UnaryOp};
use lathe_ir::{DType, Graph, Op, Tensor, ValueId};
use lathe_runtime::cpu::{CpuPlan, ThreadPool};
use lathe_runtime::{Backend, Model, ModelOptions};
use std::sync::Arc;

/// Deterministic i8 or u8 values over the whole range.
fn bytes(dtype: DType, dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<i64> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 3) as i64
        })
        .collect();
    Tensor::from_i64(dtype, dims, &v)
}

/// A graph of `op` on `args`: each a graph input (`true`) or a constant.
fn one_op(op: Op, args: &[(&Tensor, bool)]) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("t");
    let mut ins: Vec<ValueId> = vec![];
    let mut inputs = vec![];
    for (i, (t, input)) in args.iter().enumerate() {
        ins.push(if *input {
            inputs.push((*t).clone());
            g.add_input(format!("x{i}"), t.ty())
        } else {
            g.add_const((*t).clone(), format!("c{i}"))
        });
    }
    let y = g.add(op, ins, "y").unwrap();
    g.add_output("y", y).unwrap();
    (g, inputs)
}

/// Runs `g` on the CPU backend (no passes) on 1 and 3 threads, checks it against the
/// interpreter bit for bit and that no step is the interpreter's; returns the plan's text.
fn check(g: &Graph, inputs: &[Tensor]) -> String {
    let want = lathe_ir::interp::run(g, inputs).expect("the interpreter runs it");
    let mut text = String::new();
    for threads in [1, 3] {
        let specialized = SpecializedGraph::new(g.clone()).expect("every shape known");
        let plan =
            CpuPlan::compile(specialized, Arc::new(ThreadPool::new(threads))).expect("compiles");
        text = plan.print("t");
        assert_eq!(plan.stats().interp_steps, 0, "{text}");
        let got = plan.run(inputs).expect("runs");
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(got.ty(), want.ty());
            assert!(
                got.to_le_bytes() == want.to_le_bytes(),
                "{threads} threads:\n{}\ngot {got:?}\nwant {want:?}",
                lathe_ir::text::print(g)
            );
        }
    }
    text
}

/// The operands of one case: the dims of the two operands and of their zero points, and the
/// two operands' dtypes.
struct Operands(
    &'static [usize],
    &'static [usize],
    &'static [usize],
    &'static [usize],
    DType,
    DType,
);

#[test]
fn matmul_integer_matches_the_interpreter() {
    use DType::{I8, U8};
    let cases = [
        Operands(&[5, 7], &[7, 33], &[], &[], U8, U8),
        Operands(&[70, 9], &[9, 17], &[70], &[17], U8, I8),
        Operands(&[1, 300], &[300, 40], &[], &[40], I8, U8),
        Operands(&[3, 0], &[0, 4], &[], &[], I8, I8),
        Operands(&[2, 3, 6, 5], &[5, 7], &[6], &[], U8, I8),
        Operands(&[2, 1, 4, 5], &[3, 5, 6], &[], &[6], I8, U8),
    ];
    for (i, &Operands(sa, sb, za, zb, da, db)) in cases.iter().enumerate() {
        let s = 10 * i as u64;
        let (a, b) = (bytes(da, sa, s), bytes(db, sb, s + 1));
        let (a_zp, b_zp) = (bytes(da, za, s + 2), bytes(db, zb, s + 3));
        for weights_in in [false, true] {
            let args = [
                (&a, true),
                (&b, weights_in),
                (&a_zp, true),
                (&b_zp, weights_in),
            ];
            let (g, inputs) = one_op(Op::MatMulInteger, &args);
            let text = check(&g, &inputs);
            assert!(text.contains("gemm integer"), "{text}");
            let shared = sb.len() == 2;
            assert_eq!(text.contains("packed"), !weights_in && shared, "{text}");
        }
    }
}

#[test]
fn conv2d_integer_matches_the_interpreter() {
    use DType::{I8, U8};
    let conv = |s: [usize; 2], d: [usize; 2], padding: Padding, format| {
        Op::Conv2DInteger(ConvAttrs {
            strides: s,
            dilations: d,
            padding,
            format,
        })
    };
    // The filter is HWIO, the input's zero point a scalar (its dims are not used).
    let explicit = Padding::Explicit([[1, 0], [2, 1]]);
    let cases = [
        (
            conv([1, 1], [1, 1], Padding::Same, DataFormat::Nhwc),
            Operands(&[1, 6, 5, 3], &[3, 3, 3, 20], &[], &[20], U8, I8),
        ),
        (
            conv([2, 1], [1, 2], explicit, DataFormat::Nchw),
            Operands(&[2, 4, 7, 6], &[2, 3, 2, 6], &[], &[], I8, I8),
        ),
        (
            conv([1, 2], [1, 1], Padding::Valid, DataFormat::Nhwc),
            Operands(&[2, 5, 9, 8], &[1, 3, 1, 8], &[], &[8], U8, U8),
        ),
        (
            conv([1, 1], [2, 2], Padding::Same, DataFormat::Nchw),
            Operands(&[1, 17, 9, 10], &[3, 3, 17, 5], &[], &[5], I8, U8),
        ),
    ];
    for (i, (op, Operands(sx, sf, _, zf, dx, df))) in cases.into_iter().enumerate() {
        let s = 10 * i as u64;
        let (x, f) = (bytes(dx, sx, s), bytes(df, sf, s + 1));
        let (x_zp, f_zp) = (bytes(dx, &[], s + 2), bytes(df, zf, s + 3));
        for weights_in in [false, true] {
            let args = [
                (&x, true),
                (&f, weights_in),
                (&x_zp, true),
                (&f_zp, weights_in),
            ];
            let (g, inputs) = one_op(op.clone(), &args);
            let text = check(&g, &inputs);
            assert!(text.contains("window conv integer"), "{text}");
            assert_eq!(text.contains("packed"), !weights_in, "{text}");
        }
    }
}

/// QLinearMatMul's shape: the integer product anchoring an epilogue that requantizes it (cast,
/// scale, round, clamp, cast to u8), through `fuse`.
#[test]
fn integer_products_anchor_requantizing_epilogues() {
    let (a, b) = (
        bytes(DType::U8, &[9, 12], 1),
        bytes(DType::I8, &[12, 10], 2),
    );
    let mut g = Graph::new("t");
    let av = g.add_input("a", a.ty());
    let bv = g.add_const(b, "b");
    let za = g.add_const(Tensor::from_vec(&[], vec![128u8]), "za");
    let zb = g.add_const(Tensor::from_vec(&[], vec![0i8]), "zb");
    let acc = g
        .add(Op::MatMulInteger, vec![av, bv, za, zb], "acc")
        .unwrap();
    let f = g.add(Op::Cast { to: DType::F32 }, vec![acc], "f").unwrap();
    let scale = g.add_const(Tensor::from_vec(&[], vec![0.003f32]), "scale");
    let v = g
        .add(
            Op::Binary(lathe_ir::ops::BinaryOp::Mul),
            vec![f, scale],
            "v",
        )
        .unwrap();
    let r = g.add(Op::Unary(UnaryOp::Round), vec![v], "r").unwrap();
    let y = g.add(Op::Cast { to: DType::U8 }, vec![r], "y").unwrap();
    g.add_output("y", y).unwrap();
    let options = ModelOptions {
        backend: Backend::Cpu,
        passes: Some("fuse".into()),
        threads: Some(2),
        ..ModelOptions::default()
    };
    let model = Model::with_options(g.clone(), options).unwrap();
    let spec = model.specialize_for(&[a.ty()]).unwrap();
    let plan = spec.cpu_plan().unwrap();
    let text = plan.print("t");
    assert_eq!(plan.stats().interp_steps, 0, "{text}");
    assert_eq!(plan.stats().epilogues, 1, "{text}");
    let got = model.run(&[("a", a.clone())]).unwrap().remove(0).1;
    let want = lathe_ir::interp::run(&g, &[a]).unwrap().remove(0);
    assert_eq!(got.to_le_bytes(), want.to_le_bytes(), "{text}");
}
