//! Differential tests of the Cranelift row kernels (`cpu::codegen`) against the interpreter.
//!
//! Tolerance: `|got - want| <= TOL * max(1, |want|)` with `TOL = 1e-5` for elementwise bodies
//! and `1e-4` for bodies with reductions (f32 accumulation in a different order than the
//! interpreter's f64); NaN must match NaN and infinities must match exactly.

// `&[0..rows]` is a list of row ranges to run, not a mistaken `Vec` of a range.
#![allow(clippy::single_range_in_vec_init)]

use lathe_ir::ops::{BinaryOp, ReduceKind, UnaryOp};
use lathe_ir::{DType, Graph, Op, Tensor, TensorType, ValueId};
use lathe_runtime::cpu::codegen::{CodegenError, RowKernel};
use proptest::prelude::*;

const TOL_ELEMENTWISE: f64 = 1e-5;
const TOL_REDUCTION: f64 = 1e-4;

/// Deterministic pseudo-random values in `[lo, hi)`.
fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

fn dims_of(g: &Graph, i: usize) -> Vec<usize> {
    g.inputs()[i].ty.shape.as_known().unwrap()
}

fn interp(g: &Graph, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let ts: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| Tensor::from_vec(&dims_of(g, i), v.clone()))
        .collect();
    lathe_ir::interp::run(g, &ts)
        .unwrap()
        .iter()
        .map(|t| t.as_array::<f32>().unwrap().iter().copied().collect())
        .collect()
}

fn output_len(g: &Graph) -> usize {
    g.value_type(g.outputs()[0].value)
        .shape
        .num_elements()
        .unwrap()
}

/// Runs `k` over `ranges` (which together cover all rows) on fresh output buffers.
fn run_kernel(
    k: &RowKernel,
    g: &Graph,
    inputs: &[Vec<f32>],
    ranges: &[std::ops::Range<usize>],
) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = g
        .outputs()
        .iter()
        .map(|_| vec![f32::NAN; output_len(g)])
        .collect();
    let ins: Vec<*const f32> = inputs.iter().map(|v| v.as_ptr()).collect();
    let optrs: Vec<*mut f32> = outs.iter_mut().map(|v| v.as_mut_ptr()).collect();
    for r in ranges {
        unsafe { k.run(&ins, &optrs, r.clone()) };
    }
    outs
}

fn assert_close(got: &[f32], want: &[f32], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            ((g as f64) - (w as f64)).abs() <= tol * (w as f64).abs().max(1.0)
        };
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

fn has_reduction(g: &Graph) -> bool {
    g.node_ids().iter().any(|&id| {
        matches!(
            g.node(id).op,
            Op::Reduce { .. } | Op::Softmax | Op::LogSoftmax
        )
    })
}

/// Compiles `g`, runs it on `inputs` whole and in uneven row chunks, and compares with the
/// interpreter.
fn check_with(g: &Graph, inputs: &[Vec<f32>]) {
    let k = RowKernel::compile(g).unwrap_or_else(|e| panic!("{e}\n{}", lathe_ir::text::print(g)));
    let want = interp(g, inputs);
    let tol = if has_reduction(g) {
        TOL_REDUCTION
    } else {
        TOL_ELEMENTWISE
    };
    let rows = k.rows();
    let whole = run_kernel(&k, g, inputs, &[0..rows]);
    let mid = rows / 3;
    let chunks = run_kernel(&k, g, inputs, &[mid..rows, 0..mid, 0..0]);
    for (j, w) in want.iter().enumerate() {
        let text = lathe_ir::text::print(g);
        assert_close(&whole[j], w, tol, &format!("output {j} of\n{text}"));
        assert_close(
            &chunks[j],
            w,
            tol,
            &format!("output {j} (chunked) of\n{text}"),
        );
    }
}

fn check(g: &Graph, seed: u64) {
    let inputs: Vec<Vec<f32>> = (0..g.inputs().len())
        .map(|i| {
            let n: usize = dims_of(g, i).iter().product();
            values(n, seed + i as u64, -3.0, 3.0)
        })
        .collect();
    check_with(g, &inputs);
}

fn parse(text: &str) -> Graph {
    lathe_ir::text::parse(text).unwrap()
}

/// The GELU body of the gelu_chain model (TensorFlow's exact GELU).
fn gelu_body(rows: usize, len: usize) -> Graph {
    parse(&format!(
        r#"graph @gelu(%x: f32[{rows},{len}]) -> ("y": f32[{rows},{len}]) {{
  %0 = const dense<1.1> : f32[]
  %1 = mul(%x, %0) : f32[{rows},{len}]
  %2 = const dense<0.1> : f32[]
  %3 = add(%1, %2) : f32[{rows},{len}]
  %4 = const dense<0.5> : f32[]
  %5 = mul(%3, %4) : f32[{rows},{len}]
  %6 = const dense<0.70710677> : f32[]
  %7 = mul(%3, %6) : f32[{rows},{len}]
  %8 = erf(%7) : f32[{rows},{len}]
  %9 = const dense<1.0> : f32[]
  %10 = add(%8, %9) : f32[{rows},{len}]
  %11 = mul(%5, %10) : f32[{rows},{len}]
  return %11
}}"#
    ))
}

/// The layer-norm body of the gelu_chain and encoder models.
fn layer_norm_body(rows: usize, len: usize) -> Graph {
    parse(&format!(
        r#"graph @layer_norm(%x: f32[1,{rows},{len}]) -> ("y": f32[1,{rows},{len}]) {{
  %0 = const dense<[-1]> : i32[1]
  %1 = reduce_mean(%x, %0) {{keep_dims = true}} : f32[1,{rows},1]
  %2 = squared_difference(%x, %1) : f32[1,{rows},{len}]
  %3 = reduce_mean(%2, %0) {{keep_dims = true}} : f32[1,{rows},1]
  %4 = const dense<0.001> : f32[]
  %5 = add(%3, %4) : f32[1,{rows},1]
  %6 = rsqrt(%5) : f32[1,{rows},1]
  %7 = const dense<splat 1.0> : f32[1,1,{len}]
  %8 = mul(%6, %7) : f32[1,{rows},{len}]
  %9 = mul(%x, %8) : f32[1,{rows},{len}]
  %10 = neg(%1) : f32[1,{rows},1]
  %11 = mul(%10, %8) : f32[1,{rows},{len}]
  %12 = add(%9, %11) : f32[1,{rows},{len}]
  return %12
}}"#
    ))
}

#[test]
fn gelu_body_matches_interpreter() {
    for (rows, len) in [(4, 1024), (3, 13), (1, 1), (2, 8), (5, 7)] {
        let g = gelu_body(rows, len);
        let k = RowKernel::compile(&g).unwrap();
        assert_eq!((k.rows(), k.row_len()), (rows, len));
        check(&g, 1);
    }
}

#[test]
fn layer_norm_body_matches_interpreter() {
    for (rows, len) in [(16, 1024), (3, 13), (2, 1), (4, 8), (1, 3)] {
        let g = layer_norm_body(rows, len);
        let k = RowKernel::compile(&g).unwrap();
        assert_eq!((k.rows(), k.row_len()), (rows, len));
        check(&g, 2);
    }
}

#[test]
fn in_place_layer_norm_and_gelu() {
    for g in [layer_norm_body(8, 100), gelu_body(8, 100)] {
        let k = RowKernel::compile(&g).unwrap();
        let n = 8 * 100;
        let x = values(n, 7, -3.0, 3.0);
        let want = interp(&g, std::slice::from_ref(&x));
        let mut buf = x.clone();
        let p = buf.as_mut_ptr();
        unsafe { k.run(&[p as *const f32], &[p], 0..k.rows()) };
        assert_close(&buf, &want[0], TOL_REDUCTION, "in place");
    }
}

#[test]
fn softmax_and_log_softmax() {
    for op in ["softmax", "log_softmax"] {
        for len in [1, 3, 8, 21, 128] {
            let g = parse(&format!(
                r#"graph @s(%x: f32[2,3,{len}]) -> ("y": f32[2,3,{len}]) {{
  %0 = {op}(%x) : f32[2,3,{len}]
  return %0
}}"#
            ));
            check(&g, 3);
        }
    }
    // Large logits: the max is subtracted first.
    let g = parse(
        r#"graph @s(%x: f32[2,5]) -> ("y": f32[2,5]) {
  %0 = softmax(%x) : f32[2,5]
  return %0
}"#,
    );
    check_with(
        &g,
        &[vec![
            1000.0, 999.0, -1000.0, 0.0, 998.5, -50.0, -51.0, -52.0, -53.0, -54.0,
        ]],
    );
}

#[test]
fn bias_add_relu_relu6_residual() {
    let g = parse(
        r#"graph @b(%x: f32[2,7,19], %b: f32[19], %r: f32[2,7,19]) -> ("y": f32[2,7,19], "z": f32[2,7,19]) {
  %0 = add(%x, %b) : f32[2,7,19]
  %1 = relu(%0) : f32[2,7,19]
  %2 = add(%1, %r) : f32[2,7,19]
  %3 = relu6(%0) : f32[2,7,19]
  return %2, %3
}"#,
    );
    check(&g, 4);
}

#[test]
fn broadcast_patterns() {
    // Scalar input, per-row column, broadcast middle axis, per-last-axis table constant.
    let g = parse(
        r#"graph @b(%x: f32[2,3,9], %s: f32[], %c: f32[2,3,1], %m: f32[2,1,9], %k: f32[3,1]) -> ("y": f32[2,3,9]) {
  %0 = mul(%x, %s) : f32[2,3,9]
  %1 = add(%0, %c) : f32[2,3,9]
  %2 = sub(%1, %m) : f32[2,3,9]
  %3 = mul(%2, %k) : f32[2,3,9]
  %4 = const dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]> : f32[9]
  %5 = add(%3, %4) : f32[2,3,9]
  return %5
}"#,
    );
    check(&g, 5);
}

#[test]
fn rank_zero_and_rank_one() {
    let g = parse(
        r#"graph @s(%x: f32[], %y: f32[]) -> ("z": f32[]) {
  %0 = add(%x, %y) : f32[]
  %1 = exp(%0) : f32[]
  return %1
}"#,
    );
    let k = RowKernel::compile(&g).unwrap();
    assert_eq!((k.rows(), k.row_len()), (1, 1));
    check(&g, 6);
    let g = parse(
        r#"graph @s(%x: f32[37]) -> ("z": f32[37], "m": f32[37]) {
  %0 = const dense<[0]> : i32[1]
  %1 = reduce_max(%x, %0) {keep_dims = true} : f32[1]
  %2 = sub(%x, %1) : f32[37]
  %3 = reduce_sum(%x, %0) {keep_dims = false} : f32[]
  %4 = mul(%x, %3) : f32[37]
  return %2, %4
}"#,
    );
    let k = RowKernel::compile(&g).unwrap();
    assert_eq!((k.rows(), k.row_len()), (1, 37));
    check(&g, 7);
}

#[test]
fn reductions_of_every_kind() {
    for kind in [
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
    ] {
        for len in [1, 4, 5, 8, 16, 35] {
            let g = parse(&format!(
                r#"graph @r(%x: f32[3,{len}]) -> ("y": f32[3,1]) {{
  %0 = const dense<-1> : i64[]
  %1 = {kind}(%x, %0) {{keep_dims = true}} : f32[3,1]
  return %1
}}"#
            ));
            let k = RowKernel::compile(&g).unwrap();
            assert_eq!((k.rows(), k.row_len()), (3, 1));
            let inputs = vec![values(3 * len, 8, 0.5, 1.5)];
            check_with(&g, &inputs);
        }
    }
}

#[test]
fn reduction_of_a_broadcast_value() {
    // The reduced tensor is row-uniform (a per-row value times a splat).
    let g = parse(
        r#"graph @r(%x: f32[4,1]) -> ("y": f32[4,1], "z": f32[4,6]) {
  %0 = const dense<splat 2.0> : f32[1,6]
  %1 = mul(%x, %0) : f32[4,6]
  %2 = const dense<[-1]> : i32[1]
  %3 = reduce_sum(%1, %2) {keep_dims = true} : f32[4,1]
  %4 = softmax(%1) : f32[4,6]
  return %3, %4
}"#,
    );
    // Outputs of different shapes are rejected...
    assert!(matches!(
        RowKernel::compile(&g),
        Err(CodegenError::Unsupported(_))
    ));
    // ...so check them one at a time.
    for out in [3, 4] {
        let shape = if out == 3 { "[4,1]" } else { "[4,6]" };
        let g = parse(&format!(
            r#"graph @r(%x: f32[4,1]) -> ("y": f32{shape}) {{
  %0 = const dense<splat 2.0> : f32[1,6]
  %1 = mul(%x, %0) : f32[4,6]
  %2 = const dense<[-1]> : i32[1]
  %3 = reduce_sum(%1, %2) {{keep_dims = true}} : f32[4,1]
  %4 = softmax(%1) : f32[4,6]
  return %{out}
}}"#
        ));
        check(&g, 9);
    }
}

#[test]
fn pow_with_constant_exponent() {
    for e in ["2.0", "3.0", "-1.0", "-2.0", "0.0", "5.0", "1.0"] {
        let g = parse(&format!(
            r#"graph @p(%x: f32[3,10]) -> ("y": f32[3,10]) {{
  %0 = const dense<{e}> : f32[]
  %1 = pow(%x, %0) : f32[3,10]
  return %1
}}"#
        ));
        let inputs = vec![values(30, 10, 0.5, 2.0)];
        check_with(&g, &inputs);
    }
}

/// Every supported unary op over ordinary values and special ones.
#[test]
fn unary_ops_including_special_values() {
    use UnaryOp::*;
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        1e-3,
        -1e-3,
        1e-20,
        1e-40,
        f32::MIN_POSITIVE,
        3.9,
        -3.9,
        4.5,
        9.5,
        -9.5,
        20.0,
        -20.0,
        80.0,
        88.5,
        88.8,
        89.0,
        -87.0,
        -88.0,
        -100.0,
        100.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        -f32::MAX,
    ];
    let mut xs: Vec<f32> = specials.to_vec();
    xs.extend(values(4000, 11, -12.0, 12.0));
    xs.extend(values(2000, 12, -0.1, 0.1));
    xs.extend(values(2000, 13, -100.0, 100.0));
    xs.extend(values(1000, 14, 0.0, 1e-3));
    let n = xs.len();
    for u in UnaryOp::ALL {
        // The vector math has no sin or cos; ops not defined on f32 are not its business.
        if matches!(u, Sin | Cos) || !u.dtypes().contains(DType::F32) {
            continue;
        }
        let mut g = Graph::new(u.mnemonic());
        let x = g.add_input("x", TensorType::known(DType::F32, &[n]));
        let y = g.add(Op::Unary(u), vec![x], "y").unwrap();
        g.add_output("y", y).unwrap();
        let k = RowKernel::compile(&g).unwrap();
        let want = interp(&g, std::slice::from_ref(&xs));
        let got = run_kernel(&k, &g, std::slice::from_ref(&xs), &[0..1]);
        for i in 0..n {
            let (gv, w) = (got[0][i], want[0][i]);
            let ok = if w.is_nan() {
                gv.is_nan()
            } else if w.is_infinite() {
                gv == w
            } else if u == Erfc {
                // erfc = 1 - erf: absolute accuracy.
                ((gv - w) as f64).abs() <= 1e-6
            } else {
                let err = ((gv as f64) - (w as f64)).abs();
                // Relative 2e-6, or absolute below the smallest normal (exp flushes results below 2^-125.5).
                err <= 2e-6 * (w as f64).abs() || err <= 2.4e-38
            };
            assert!(ok, "{}({:e}) = {gv:e}, want {w:e}", u.mnemonic(), xs[i]);
        }
    }
}

#[test]
fn binary_ops_with_special_values() {
    let specials = [
        0.0,
        -0.0,
        1.0,
        -2.0,
        3.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e30,
    ];
    let n = specials.len();
    let a: Vec<f32> = (0..n * n).map(|i| specials[i / n]).collect();
    let b: Vec<f32> = (0..n * n).map(|i| specials[i % n]).collect();
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::SquaredDifference,
        BinaryOp::FloorDiv,
    ] {
        let mut g = Graph::new(op.mnemonic());
        let x = g.add_input("a", TensorType::known(DType::F32, &[n, n]));
        let y = g.add_input("b", TensorType::known(DType::F32, &[n, n]));
        let z = g.add(Op::Binary(op), vec![x, y], "z").unwrap();
        g.add_output("z", z).unwrap();
        check_with(&g, &[a.clone(), b.clone()]);
    }
}

/// `maximum`/`minimum` against a constant (ReLU6 from ONNX's Clip, clipping) take a shorter
/// lowering than between two values: it must pick exactly the interpreter's element, bit for
/// bit (NaN from the value, zero signs as the interpreter chooses them), on either side.
#[test]
fn min_max_against_a_constant_match_the_interpreter_bit_for_bit() {
    let xs = [
        0.0,
        -0.0,
        1.0,
        -2.0,
        6.0,
        7.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        1e-40,
    ];
    let consts = [
        0.0,
        -0.0,
        6.0,
        -2.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
        for c in consts {
            for const_first in [false, true] {
                let mut g = Graph::new(op.mnemonic());
                let x = g.add_input("x", TensorType::known(DType::F32, &[xs.len()]));
                let k = g.add_const(Tensor::from_vec(&[], vec![c]), "c");
                let args = if const_first { vec![k, x] } else { vec![x, k] };
                let z = g.add(Op::Binary(op), args, "z").unwrap();
                g.add_output("z", z).unwrap();
                let kernel = RowKernel::compile(&g).unwrap();
                let want = interp(&g, &[xs.to_vec()]);
                let got = run_kernel(&kernel, &g, &[xs.to_vec()], &[0..kernel.rows()]);
                for (i, (&gv, &w)) in got[0].iter().zip(&want[0]).enumerate() {
                    let same = (gv.is_nan() && w.is_nan()) || gv.to_bits() == w.to_bits();
                    assert!(
                        same,
                        "{}(x, {c}) (constant first: {const_first}) at x = {}: got {gv:e}, want {w:e}",
                        op.mnemonic(),
                        xs[i]
                    );
                }
            }
        }
    }
}

fn unsupported(text: &str) -> String {
    match RowKernel::compile(&parse(text)) {
        Err(CodegenError::Unsupported(m)) => m,
        Err(e) => panic!("expected Unsupported, got {e}"),
        Ok(_) => panic!("expected Unsupported, compiled"),
    }
}

#[test]
fn unsupported_bodies_are_errors_naming_the_node() {
    let m = unsupported(
        r#"graph @u(%x: f32[4,8]) -> ("y": f32[1,8]) {
  %0 = const dense<[0]> : i32[1]
  %1 = reduce_sum(%x, %0) {keep_dims = true} : f32[1,8] loc("colsum")
  return %1
}"#,
    );
    assert!(
        m.contains("node `colsum` (reduce_sum)") && m.contains("last axis"),
        "{m}"
    );
    let m = unsupported(
        r#"graph @u(%x: f32[4,8]) -> ("y": f32[4]) {
  %0 = const dense<[1]> : i32[1]
  %1 = reduce_max(%x, %0) {keep_dims = false} : f32[4] loc("rowmax")
  return %1
}"#,
    );
    assert!(
        m.contains("node `rowmax` (reduce_max)") && m.contains("keep_dims"),
        "{m}"
    );
    let m = unsupported(
        r#"graph @u(%x: f32[4,8], %w: f32[8,8]) -> ("y": f32[4,8]) {
  %0 = matmul(%x, %w) {transpose_a = false, transpose_b = false} : f32[4,8] loc("mm")
  return %0
}"#,
    );
    assert!(m.contains("node `mm` (matmul)"), "{m}");
    let m = unsupported(
        r#"graph @u(%x: f32[4,8]) -> ("y": f32[4,8], "z": f32[4,1]) {
  %0 = const dense<[-1]> : i32[1]
  %1 = reduce_sum(%x, %0) {keep_dims = true} : f32[4,1]
  return %x, %1
}"#,
    );
    assert!(m.contains("different shapes"), "{m}");
    let m = unsupported(
        r#"graph @u(%x: f32[0,8]) -> ("y": f32[0,8]) {
  %0 = neg(%x) : f32[0,8]
  return %0
}"#,
    );
    assert!(m.contains("empty"), "{m}");
}

#[test]
fn kernels_are_send_sync_and_run_concurrently() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RowKernel>();
    let g = layer_norm_body(64, 96);
    let k = RowKernel::compile(&g).unwrap();
    let x = values(64 * 96, 21, -2.0, 2.0);
    let want = interp(&g, std::slice::from_ref(&x));
    let mut out = vec![0.0f32; 64 * 96];
    let (xp, op) = (x.as_ptr() as usize, out.as_mut_ptr() as usize);
    std::thread::scope(|s| {
        for t in 0..4 {
            let k = &k;
            s.spawn(move || unsafe {
                k.run(&[xp as *const f32], &[op as *mut f32], t * 16..(t + 1) * 16)
            });
        }
    });
    assert_close(&out, &want[0], TOL_REDUCTION, "threads");
}

// ---- random bodies ---------------------------------------------------------------------

/// How a random input broadcasts to the iteration space `[outer..., len]`.
#[derive(Clone, Copy, Debug)]
enum Bcast {
    Full,
    Scalar,
    LastAxis,
    PerRow,
}

/// One step of a random body: an op applied to earlier values (indices into the pool).
#[derive(Clone, Debug)]
enum Step {
    Unary(UnaryOp, usize),
    /// A domain-safe wrapper: `u(x*x + 1)` for ops that need positive inputs.
    Positive(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    /// `x - reduce(x)` along the last axis (keeps the full shape).
    Centered(ReduceKind, usize),
    Softmax(usize),
}

fn step() -> impl Strategy<Value = Step> {
    use UnaryOp::*;
    let unary = prop::sample::select(vec![
        Neg, Abs, Relu, Relu6, Sigmoid, Tanh, Erf, Erfc, Exp, Square, Floor, Ceil, Round, Sign,
        Softplus,
    ]);
    let positive = prop::sample::select(vec![Log, Sqrt, Rsqrt, Reciprocal]);
    let binary = prop::sample::select(vec![
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::SquaredDifference,
    ]);
    let reduce = prop::sample::select(vec![
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
    ]);
    prop_oneof![
        3 => (unary, any::<usize>()).prop_map(|(u, a)| Step::Unary(u, a)),
        1 => (positive, any::<usize>()).prop_map(|(u, a)| Step::Positive(u, a)),
        3 => (binary, any::<usize>(), any::<usize>()).prop_map(|(b, x, y)| Step::Binary(b, x, y)),
        1 => (reduce, any::<usize>()).prop_map(|(r, a)| Step::Centered(r, a)),
        1 => any::<usize>().prop_map(Step::Softmax),
    ]
}

/// Builds a body from the shape, the inputs' broadcast kinds and the steps; the output is the
/// last value broadcast to the full shape (added to a full input).
fn build(shape: &[usize], inputs: &[Bcast], steps: &[Step]) -> Graph {
    let mut g = Graph::new("random");
    let full = TensorType::known(DType::F32, shape);
    let r = shape.len();
    let mut pool: Vec<ValueId> = vec![];
    let x0 = g.add_input("x0", full.clone());
    pool.push(x0);
    for (i, b) in inputs.iter().enumerate() {
        let dims: Vec<usize> = match b {
            Bcast::Full => shape.to_vec(),
            Bcast::Scalar => vec![],
            Bcast::LastAxis => vec![shape[r - 1]],
            Bcast::PerRow => {
                let mut d = shape.to_vec();
                d[r - 1] = 1;
                d
            }
        };
        pool.push(g.add_input(format!("x{}", i + 1), TensorType::known(DType::F32, &dims)));
    }
    let axes = g.add_const(Tensor::from_vec(&[1], vec![-1i32]), "axes");
    for (k, s) in steps.iter().enumerate() {
        let pick = |i: usize| pool[i % pool.len()];
        let name = format!("s{k}");
        let v = match *s {
            Step::Unary(u, a) => g.add(Op::Unary(u), vec![pick(a)], name).unwrap(),
            Step::Positive(u, a) => {
                let x = pick(a);
                let sq = g
                    .add(Op::Unary(UnaryOp::Square), vec![x], format!("{name}.sq"))
                    .unwrap();
                let one = g.add_const(Tensor::scalar(1.0f32), format!("{name}.one"));
                let p = g
                    .add(
                        Op::Binary(BinaryOp::Add),
                        vec![sq, one],
                        format!("{name}.p"),
                    )
                    .unwrap();
                g.add(Op::Unary(u), vec![p], name).unwrap()
            }
            Step::Binary(b, x, y) => g.add(Op::Binary(b), vec![pick(x), pick(y)], name).unwrap(),
            Step::Centered(kind, a) => {
                let x = pick(a);
                if g.value_type(x).rank() == 0 {
                    continue;
                }
                let red = g
                    .add(
                        Op::Reduce {
                            kind,
                            keep_dims: true,
                        },
                        vec![x, axes],
                        format!("{name}.r"),
                    )
                    .unwrap();
                g.add(Op::Binary(BinaryOp::Sub), vec![x, red], name)
                    .unwrap()
            }
            Step::Softmax(a) => {
                let x = pick(a);
                if g.value_type(x).rank() == 0 {
                    continue;
                }
                g.add(Op::Softmax, vec![x], name).unwrap()
            }
        };
        pool.push(v);
    }
    let last = *pool.last().unwrap();
    let out = g
        .add(Op::Binary(BinaryOp::Add), vec![x0, last], "out")
        .unwrap();
    g.add_output("y", out).unwrap();
    g
}

fn bcast() -> impl Strategy<Value = Bcast> {
    prop_oneof![
        Just(Bcast::Full),
        Just(Bcast::Scalar),
        Just(Bcast::LastAxis),
        Just(Bcast::PerRow)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bodies_match_interpreter(
        shape in prop::collection::vec(1usize..6, 0..3)
            .prop_flat_map(|outer| (Just(outer), 1usize..40))
            .prop_map(|(mut outer, last)| { outer.push(last); outer }),
        inputs in prop::collection::vec(bcast(), 0..3),
        steps in prop::collection::vec(step(), 1..7),
        seed in any::<u64>(),
    ) {
        let g = build(&shape, &inputs, &steps);
        let inputs: Vec<Vec<f32>> = (0..g.inputs().len())
            .map(|i| {
                let n: usize = dims_of(&g, i).iter().product();
                values(n, seed.wrapping_add(i as u64), -2.0, 2.0)
            })
            .collect();
        check_with(&g, &inputs);
    }
}

#[test]
#[ignore]
fn print_gelu_disasm() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("lathe_runtime=trace")
        .try_init();
    RowKernel::compile(&gelu_body(256, 1024)).unwrap();
}

#[test]
#[ignore]
fn time_kernels() {
    for (name, g) in [
        ("gelu", gelu_body(256, 1024)),
        ("ln", layer_norm_body(256, 1024)),
    ] {
        let k = RowKernel::compile(&g).unwrap();
        let x = values(256 * 1024, 1, -2.0, 2.0);
        let mut y = vec![0.0f32; 256 * 1024];
        let mut best = f64::MAX;
        for _ in 0..300 {
            let t = std::time::Instant::now();
            unsafe { k.run(&[x.as_ptr()], &[y.as_mut_ptr()], 0..k.rows()) };
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{name}: best {:.1} us", best * 1e6);
    }
}

/// Prints the max relative error of each transcendental against the interpreter (f64 libm
/// rounded to f32) over [-12, 12] and [-0.1, 0.1] (`--ignored --nocapture`).
#[test]
#[ignore]
fn accuracy_report() {
    use UnaryOp::*;
    let mut xs = values(200_000, 31, -12.0, 12.0);
    xs.extend(values(100_000, 32, -0.1, 0.1));
    xs.extend(values(100_000, 33, 0.0, 80.0));
    for u in [Exp, Log, Erf, Erfc, Tanh, Sigmoid, Softplus] {
        let mut g = Graph::new(u.mnemonic());
        let x = g.add_input("x", TensorType::known(DType::F32, &[xs.len()]));
        let y = g.add(Op::Unary(u), vec![x], "y").unwrap();
        g.add_output("y", y).unwrap();
        let k = RowKernel::compile(&g).unwrap();
        let want = interp(&g, std::slice::from_ref(&xs));
        let got = run_kernel(&k, &g, std::slice::from_ref(&xs), &[0..1]);
        let worst = got[0]
            .iter()
            .zip(&want[0])
            .filter(|(_, w)| w.is_finite() && w.abs() > 1e-30)
            .map(|(&g, &w)| ((g as f64 - w as f64) / w as f64).abs())
            .fold(0.0f64, f64::max);
        println!("{}: max relative error {worst:.2e}", u.mnemonic());
    }
}
