//! Differential tests of the dtype-generic kernels (matrix products, convolutions, pooling,
//! arg-max, reductions over any axes) on every dtype, against the interpreter, through the
//! whole CPU backend: each graph must plan with no interpreter step, and run on one thread and
//! on several.
//!
//! Tolerances: integers exact (both wrap), and so are depthwise convolution, pooling and
//! arg-max on every dtype (the same operations in the same order). Matrix products,
//! convolutions and float reductions sum in another order than the interpreter: f64 within
//! `1e-12`, f32 within `1e-5` of the output's largest magnitude; f16 and bf16 (accumulated in
//! f32 and rounded once, as the interpreter does) within two ulps of each value.

use lathe_compiler::SpecializedGraph;
use lathe_ir::ops::{ConvAttrs, DTypeClass, DataFormat, Padding, PoolAttrs, ReduceKind};
use lathe_ir::{DType, Graph, Op, Tensor, TensorType, ValueId};
use lathe_runtime::cpu::{CpuError, CpuPlan, ThreadPool};
use lathe_runtime::{Backend, Model, ModelOptions};
use proptest::prelude::*;
use std::sync::Arc;

/// Every dtype but bool and the low-precision storage types (which only casts take).
fn numeric() -> Vec<DType> {
    DTypeClass::Numeric.dtypes()
}

/// Deterministic values of `dtype`: integers over their whole range (products wrap), floats in
/// [-3, 3) with repeats and signed zeros, NaN mixed in when `nan`.
fn tensor(dtype: DType, dims: &[usize], seed: u64, nan: bool) -> Tensor {
    let n: usize = dims.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    if dtype.is_float() {
        let v: Vec<f64> = (0..n)
            .map(|_| match next() % 16 {
                0 if nan => f64::NAN,
                // Repeated values, so ties happen, and both zeros.
                1 => 1.0,
                2 => 0.0,
                3 => -0.0,
                r => (r as f64 + (next() % 1000) as f64 / 1000.0) * 0.4 - 3.0,
            })
            .collect();
        return Tensor::from_f64(dtype, dims, &v);
    }
    let v: Vec<i64> = (0..n)
        .map(|_| match next() % 4 {
            0 => 1,
            1 => (next() % 7) as i64 - 3,
            _ => next() as i64,
        })
        .collect();
    Tensor::from_i64(dtype, dims, &v)
}

/// How close a result must be: `|got - want| <= rel * |want| + abs * scale`, with `scale` the
/// largest magnitude of the expected output (at least 1).
fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F64 => (0.0, 1e-12),
        DType::F32 => (0.0, 1e-5),
        DType::F16 => (2.0 / 1024.0, 1e-6),
        DType::BF16 => (2.0 / 128.0, 1e-5),
        _ => (0.0, 0.0),
    }
}

fn compare(got: &Tensor, want: &Tensor, exact: bool, what: &str) {
    assert_eq!(got.ty(), want.ty(), "{what}");
    if exact || !want.dtype().is_float() {
        assert!(
            got.to_le_bytes() == want.to_le_bytes(),
            "{what}: got {got:?}, want {want:?}"
        );
        return;
    }
    let (rel, abs) = tolerance(want.dtype());
    let w = want.to_f64_vec();
    let scale = w
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.to_f64_vec().iter().zip(&w).enumerate() {
        let ok =
            (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= rel * w.abs() + abs * scale;
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

/// Compiles `g` with no passes, runs it on `inputs` on 1 and 3 threads and compares it with
/// the interpreter; the plan must have no interpreter step. Returns the plan's text.
fn check(g: &Graph, inputs: &[Tensor], exact: bool) -> String {
    let want = lathe_ir::interp::run(g, inputs).expect("the interpreter runs it");
    let mut text = String::new();
    for threads in [1, 3] {
        let specialized = SpecializedGraph::new(g.clone()).expect("every shape known");
        let plan =
            CpuPlan::compile(specialized, Arc::new(ThreadPool::new(threads))).expect("compiles");
        assert_eq!(
            plan.stats().interp_steps,
            0,
            "interpreter steps: {:?}",
            plan.interp_steps()
        );
        let got = plan.run(inputs).expect("runs");
        let what = format!("{threads} threads:\n{}", lathe_ir::text::print(g));
        for (g, w) in got.iter().zip(&want) {
            compare(g, w, exact, &what);
        }
        text = plan.print("t");
    }
    text
}

/// A graph of `op` on graph inputs `xs` and constant `config` operands after them.
fn one_op(op: Op, xs: &[&Tensor], config: &[Tensor]) -> Graph {
    let mut g = Graph::new("t");
    let mut ins: Vec<ValueId> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| g.add_input(format!("x{i}"), x.ty()))
        .collect();
    for (i, c) in config.iter().enumerate() {
        ins.push(g.add_const(c.clone(), format!("c{i}")));
    }
    let y = g.add(op, ins, "y").unwrap();
    g.add_output("y", y).unwrap();
    g
}

fn ints(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec())
}

#[test]
fn matrix_products_on_every_dtype() {
    let mm = |ta, tb| Op::MatMul {
        transpose_a: ta,
        transpose_b: tb,
    };
    let bmm = |x, y| Op::BatchMatMul { adj_x: x, adj_y: y };
    let einsum = |e: &str| Op::Einsum { equation: e.into() };
    let cases: Vec<(Op, &[usize], &[usize])> = vec![
        (mm(false, false), &[5, 7], &[7, 130]),
        (mm(true, false), &[7, 5], &[7, 3]),
        (mm(false, true), &[1, 9], &[4, 9]),
        (mm(true, true), &[6, 2], &[3, 6]),
        (mm(false, false), &[3, 0], &[0, 4]),
        (bmm(false, false), &[2, 1, 3, 4], &[3, 4, 5]),
        (bmm(true, true), &[3, 4, 3], &[1, 2, 4]),
        (einsum("BTNH,BSNH->BNTS"), &[1, 5, 2, 3], &[1, 4, 2, 3]),
        (einsum("abc,cd->abd"), &[2, 3, 6], &[6, 5]),
    ];
    for dt in numeric() {
        for (i, (op, sa, sb)) in cases.iter().enumerate() {
            let a = tensor(dt, sa, i as u64, false);
            let b = tensor(dt, sb, 100 + i as u64, false);
            let text = check(&one_op(op.clone(), &[&a, &b], &[]), &[a, b], false);
            assert!(text.contains(": gemm"), "{text}");
        }
    }
}

#[test]
fn einsums_that_are_no_gemm_on_every_dtype() {
    let cases: &[(&str, &[&[usize]])] = &[
        ("ij->ji", &[&[3, 4]]),
        ("ij,jk->k", &[&[2, 3], &[3, 4]]),
        ("ij,jk,kl->il", &[&[2, 3], &[3, 4], &[4, 5]]),
        ("abc,bac->c", &[&[2, 3, 4], &[3, 2, 4]]),
        ("acb,bdc->ad", &[&[2, 3, 4], &[4, 5, 3]]),
    ];
    for dt in numeric() {
        for (i, &(eq, shapes)) in cases.iter().enumerate() {
            let xs: Vec<Tensor> = shapes
                .iter()
                .enumerate()
                .map(|(j, d)| tensor(dt, d, (10 * i + j) as u64, false))
                .collect();
            let op = Op::Einsum {
                equation: eq.into(),
            };
            let text = check(&one_op(op, &xs.iter().collect::<Vec<_>>(), &[]), &xs, false);
            assert!(text.contains("einsum loops"), "{eq}: {text}");
        }
    }
}

/// `y = op(x, w) + bias`, then a cast to another dtype, compiled through fusion (an epilogue
/// whose anchor's result has another dtype than the fused output, so it needs a buffer of its
/// own) and run against the interpreter.
fn check_epilogue(op: Op, x: &Tensor, w: &Tensor, channels: usize) {
    let dt = x.dtype();
    let mut g = Graph::new("t");
    let xv = g.add_input("x", x.ty());
    let wv = g.add_const(w.clone(), "w");
    let y = g.add(op, vec![xv, wv], "anchor").unwrap();
    let bias = g.add_const(tensor(dt, &[channels], 9, false), "bias");
    let y = g.add(
        Op::BiasAdd {
            format: DataFormat::Nhwc,
        },
        vec![y, bias],
        "bias",
    );
    let to = if dt == DType::F32 {
        DType::F16
    } else {
        DType::F32
    };
    let y = g.add(Op::Cast { to }, vec![y.unwrap()], "cast").unwrap();
    g.add_output("y", y).unwrap();
    let options = ModelOptions {
        backend: Backend::Cpu,
        passes: Some("fuse".into()),
        threads: Some(2),
        ..ModelOptions::default()
    };
    let model = Model::with_options(g.clone(), options).unwrap();
    let spec = model.specialize_for(&[x.ty()]).unwrap();
    let plan = spec.cpu_plan().unwrap();
    let text = plan.print("t");
    assert_eq!(plan.stats().interp_steps, 0, "{text}");
    assert_eq!(plan.stats().epilogues, 1, "{text}");
    let got = model.run(&[("x", x.clone())]).unwrap().remove(0).1;
    let want = lathe_ir::interp::run(&g, std::slice::from_ref(x))
        .unwrap()
        .remove(0);
    compare(&got, &want, false, &text);
}

#[test]
fn generic_anchors_take_epilogues() {
    for dt in [DType::F32, DType::I32, DType::F64, DType::BF16, DType::U8] {
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        };
        check_epilogue(
            mm,
            &tensor(dt, &[6, 5], 1, false),
            &tensor(dt, &[5, 7], 2, false),
            7,
        );
        let conv = Op::Conv2D(ConvAttrs {
            strides: [1, 2],
            dilations: [1, 1],
            padding: Padding::Same,
            format: DataFormat::Nhwc,
        });
        let (x, w) = (
            tensor(dt, &[1, 5, 6, 3], 3, false),
            tensor(dt, &[3, 3, 3, 4], 4, false),
        );
        check_epilogue(conv, &x, &w, 4);
    }
}

/// NHWC and NCHW input shapes of `[n, h, w, c]`.
fn image(format: DataFormat, [n, h, w, c]: [usize; 4]) -> Vec<usize> {
    match format {
        DataFormat::Nhwc => vec![n, h, w, c],
        DataFormat::Nchw => vec![n, c, h, w],
    }
}

#[test]
fn convolutions_on_every_dtype_and_layout() {
    let paddings = [
        Padding::Valid,
        Padding::Same,
        Padding::Explicit([[2, 0], [1, 2]]),
    ];
    let mut seed = 0;
    for dt in numeric() {
        for format in [DataFormat::Nhwc, DataFormat::Nchw] {
            for (p, padding) in paddings.iter().enumerate() {
                seed += 1;
                let attrs = ConvAttrs {
                    strides: [1 + p % 2, 1 + (p + 1) % 2],
                    dilations: [1 + p / 2, 1],
                    padding: padding.clone(),
                    format,
                };
                let x = tensor(dt, &image(format, [2, 7, 6, 4]), seed, false);
                // Two groups of two input channels; the filter a graph input (read at run time).
                let w = tensor(dt, &[3, 2, 2, 6], seed + 50, false);
                let g = one_op(Op::Conv2D(attrs.clone()), &[&x, &w], &[]);
                let text = check(&g, &[x.clone(), w], false);
                assert!(text.contains("window conv"), "{text}");
                // Depthwise with multiplier 2 and a constant filter: bit for bit.
                let w = tensor(dt, &[2, 3, 4, 2], seed + 70, false);
                let g = one_op(Op::DepthwiseConv2D(attrs), &[&x], &[w]);
                let text = check(&g, &[x], true);
                assert!(text.contains("window depthwise"), "{text}");
            }
        }
    }
}

#[test]
fn no_output_channels_compute_nothing() {
    let attrs = ConvAttrs {
        strides: [1, 1],
        dilations: [1, 1],
        padding: Padding::Same,
        format: DataFormat::Nhwc,
    };
    for dt in [DType::F32, DType::I32] {
        let x = tensor(dt, &[1, 3, 3, 2], 1, false);
        let g = one_op(
            Op::DepthwiseConv2D(attrs.clone()),
            &[&x],
            &[Tensor::zeros(dt, &[2, 2, 2, 0])],
        );
        check(&g, std::slice::from_ref(&x), true);
        let g = one_op(
            Op::Conv2D(attrs.clone()),
            &[&x],
            &[Tensor::zeros(dt, &[2, 2, 2, 0])],
        );
        check(&g, &[x], true);
    }
}

#[test]
fn pooling_on_every_dtype_and_layout() {
    for (i, dt) in numeric().into_iter().enumerate() {
        for format in [DataFormat::Nhwc, DataFormat::Nchw] {
            for (ksize, strides, padding) in [
                ([3, 3], [2, 2], Padding::Same),
                ([2, 3], [1, 2], Padding::Valid),
                ([3, 2], [2, 1], Padding::Explicit([[1, 2], [0, 1]])),
            ] {
                let attrs = PoolAttrs {
                    ksize,
                    strides,
                    padding,
                    format,
                };
                let x = tensor(dt, &image(format, [2, 7, 5, 3]), i as u64, true);
                if dt != DType::U64 {
                    let g = one_op(Op::MaxPool(attrs.clone()), &[&x], &[]);
                    check(&g, std::slice::from_ref(&x), true);
                }
                if dt.is_float() {
                    check(&one_op(Op::AvgPool(attrs), &[&x], &[]), &[x], true);
                }
            }
        }
    }
}

#[test]
fn arg_max_on_every_dtype() {
    for (i, dt) in numeric().into_iter().enumerate() {
        let x = tensor(dt, &[3, 4, 5], i as u64, true);
        for axis in [0i64, 1, 2, -1] {
            for output in [DType::I32, DType::I64] {
                let g = one_op(Op::ArgMax { output }, &[&x], &[Tensor::scalar(axis as i32)]);
                let text = check(&g, std::slice::from_ref(&x), true);
                assert!(text.contains("arg_max"), "{text}");
            }
        }
    }
}

fn reduce_graph(kind: ReduceKind, keep_dims: bool, x: &Tensor, axes: &[i64]) -> Graph {
    one_op(Op::Reduce { kind, keep_dims }, &[x], &[ints(axes)])
}

#[test]
fn reductions_over_scattered_axes_on_every_dtype() {
    for (i, dt) in numeric().into_iter().enumerate() {
        let x = tensor(dt, &[3, 4, 2, 5], i as u64, dt.is_float());
        for axes in [&[1, 3][..], &[0, 2, 3], &[0, 2], &[-3, -1], &[1, 2], &[0]] {
            for kind in ReduceKind::ALL {
                for keep_dims in [false, true] {
                    let g = reduce_graph(kind, keep_dims, &x, axes);
                    check(&g, std::slice::from_ref(&x), false);
                }
            }
        }
    }
}

#[test]
fn empty_inputs_fail_as_the_interpreter_does() {
    let x = Tensor::zeros(DType::I32, &[2, 0, 3]);
    for (g, why) in [
        (reduce_graph(ReduceKind::Max, false, &x, &[1]), "empty axis"),
        (
            reduce_graph(ReduceKind::Mean, true, &x, &[0, 1]),
            "divides by zero",
        ),
        (
            one_op(
                Op::ArgMax { output: DType::I64 },
                &[&x],
                &[Tensor::scalar(1i32)],
            ),
            "empty axis",
        ),
    ] {
        let want = lathe_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap_err();
        let specialized = SpecializedGraph::new(g.clone()).unwrap();
        let plan = CpuPlan::compile(specialized, Arc::new(ThreadPool::new(2))).unwrap();
        assert_eq!(plan.stats().interp_steps, 0);
        let e = plan.run(std::slice::from_ref(&x)).unwrap_err();
        assert!(
            matches!(&e, CpuError::Kernel { node, message, .. } if node == "y" && message.contains(why)),
            "{e} (interpreter: {want})"
        );
    }
    // Sums and products of nothing are their identity.
    check(&reduce_graph(ReduceKind::Prod, false, &x, &[1]), &[x], true);
}

#[test]
fn an_integer_epilogue_division_by_zero_is_an_error() {
    let mut g = Graph::new("t");
    let a = g.add_input("a", TensorType::known(DType::I32, &[2, 3]));
    let b = g.add_const(
        Tensor::from_i64(DType::I32, &[3, 2], &[1, 0, 0, 1, 1, 1]),
        "b",
    );
    let y = g
        .add(
            Op::MatMul {
                transpose_a: false,
                transpose_b: false,
            },
            vec![a, b],
            "mm",
        )
        .unwrap();
    let one = g.add_const(Tensor::from_i64(DType::I32, &[2, 2], &[1, 1, 1, 1]), "one");
    let q = g
        .add(
            Op::Binary(lathe_ir::ops::BinaryOp::Div),
            vec![one, y],
            "quotient",
        )
        .unwrap();
    g.add_output("q", q).unwrap();
    let options = ModelOptions {
        passes: Some("fuse".into()),
        ..ModelOptions::default()
    };
    let model = Model::with_options(g, options).unwrap();
    let a = Tensor::from_i64(DType::I32, &[2, 3], &[1, 1, 1, 0, 0, 0]);
    let e = model.run(&[("a", a)]).unwrap_err().to_string();
    assert!(e.contains("division by zero"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_axes_of_any_shape_reduce_as_the_interpreter_does(
        dims in prop::collection::vec(1usize..5, 1..=5),
        mask in any::<u8>(),
        kind in 0usize..5,
        keep_dims in any::<bool>(),
        dt in 0usize..numeric().len(),
        seed in any::<u64>(),
    ) {
        let axes: Vec<i64> = (0..dims.len() as i64).filter(|a| mask >> a & 1 == 1).collect();
        let x = tensor(numeric()[dt], &dims, seed, seed % 3 == 0);
        let g = reduce_graph(ReduceKind::ALL[kind], keep_dims, &x, &axes);
        check(&g, &[x], false);
    }

    #[test]
    fn products_of_any_shape_match_the_interpreter(
        m in 0usize..9,
        n in 1usize..140,
        k in 0usize..20,
        batch in 1usize..4,
        adj in any::<(bool, bool)>(),
        dt in 0usize..numeric().len(),
        seed in any::<u64>(),
    ) {
        let (sa, sb) = match adj {
            (false, false) => ([batch, m, k], [batch, k, n]),
            (true, false) => ([batch, k, m], [batch, k, n]),
            (false, true) => ([batch, m, k], [batch, n, k]),
            (true, true) => ([batch, k, m], [batch, n, k]),
        };
        let a = tensor(numeric()[dt], &sa, seed, false);
        let b = tensor(numeric()[dt], &sb, seed ^ 1, false);
        let op = Op::BatchMatMul { adj_x: adj.0, adj_y: adj.1 };
        check(&one_op(op, &[&a, &b], &[]), &[a, b], false);
    }
}
