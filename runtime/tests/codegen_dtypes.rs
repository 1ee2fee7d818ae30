//! Differential tests of generated code on every dtype: each elementwise op, cast, select,
//! reduction and softmax as a one-op body, on random broadcast shapes and values that include
//! the edge cases (0, -0, ±1, MIN, MAX, NaN, ±inf), against the interpreter.
//!
//! Tolerances: integers and bool exact; f64, f16 and bf16 exact for elementwise ops (they
//! compute in f64 with the interpreter's own functions and round once) and 1e-12 relative
//! (f64) or one ulp of the dtype (f16/bf16) for reductions and softmax (summation order);
//! f32 `FLOAT32_TOL` relative (the vector math of `codegen::math`, see its accuracy table;
//! erfc absolute). Casts are exact everywhere.

use lathe_ir::ops::{BinaryOp, DTypeClass, ReduceKind, UnaryOp};
use lathe_ir::{DType, Graph, Op, Tensor, TensorType};
use lathe_runtime::cpu::codegen::support::compiles;
use lathe_runtime::cpu::codegen::{KernelFault, RowKernel};
use proptest::prelude::*;

/// Relative tolerance of f32 results (max(1, |want|) scaled) for the vector math.
const FLOAT32_TOL: f64 = 4e-6;

/// Deterministic pseudo-random stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 ^ (self.0 >> 29)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// A random tensor of `dt` with edge values mixed in; `nonzero` avoids zero (divisors).
fn random_tensor(dt: DType, dims: &[usize], rng: &mut Rng, nonzero: bool) -> Tensor {
    let n: usize = dims.iter().product();
    if dt.is_float() {
        let edges = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.5,
            -2.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-3,
            100.0,
            -7.25,
        ];
        let v: Vec<f64> = (0..n)
            .map(|_| {
                let x = if rng.next().is_multiple_of(3) {
                    rng.pick(&edges)
                } else {
                    ((rng.next() >> 11) as f64 / (1u64 << 53) as f64) * 20.0 - 10.0
                };
                if nonzero && x == 0.0 {
                    1.5
                } else {
                    x
                }
            })
            .collect();
        return Tensor::from_f64(dt, dims, &v);
    }
    let (lo, hi): (i64, i64) = match dt {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I64 => (i64::MIN, i64::MAX),
        DType::U8 => (0, u8::MAX as i64),
        DType::U16 => (0, u16::MAX as i64),
        DType::U32 => (0, u32::MAX as i64),
        DType::U64 => (0, -1),
        _ => (0, 1),
    };
    let edges = [0, 1, -1, 2, -2, 7, -7, lo, hi, lo.wrapping_add(1), 3];
    let v: Vec<i64> = (0..n)
        .map(|_| {
            let x = match rng.next() % 4 {
                0 => rng.pick(&edges),
                1 => rng.next() as i64,
                _ => (rng.next() % 21) as i64 - 10,
            };
            if dt == DType::Bool {
                return x & 1;
            }
            // Wrapped into the dtype by `from_i64`.
            if nonzero && Tensor::from_i64(dt, &[], &[x]).to_i64_vec().unwrap()[0] == 0 {
                3
            } else {
                x
            }
        })
        .collect();
    Tensor::from_i64(dt, dims, &v)
}

/// Runs `k` on `inputs`, in two row chunks, returning the outputs or the fault.
fn run_kernel(k: &RowKernel, g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, KernelFault> {
    let in_bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.to_le_bytes()).collect();
    let out_types: Vec<TensorType> = g
        .outputs()
        .iter()
        .map(|o| g.value_type(o.value).clone())
        .collect();
    let mut outs: Vec<Vec<u8>> = out_types
        .iter()
        .map(|t| vec![0xAB; t.shape.num_elements().unwrap() * t.dtype.size_bytes()])
        .collect();
    let ins: Vec<*const u8> = in_bytes.iter().map(|b| b.as_ptr()).collect();
    let optrs: Vec<*mut u8> = outs.iter_mut().map(|b| b.as_mut_ptr()).collect();
    let mid = k.rows() / 2;
    for r in [mid..k.rows(), 0..mid] {
        // SAFETY: the buffers hold the body's inputs and outputs, whole.
        unsafe { k.run_checked(&ins, &optrs, r)? };
    }
    Ok(out_types
        .iter()
        .zip(&outs)
        .map(|(t, b)| Tensor::from_le_bytes(t.dtype, &t.shape.as_known().unwrap(), b).unwrap())
        .collect())
}

/// How far a float result may be from the interpreter's.
#[derive(Clone, Copy, Debug)]
enum Tol {
    Exact,
    /// `|got - want| <= r * max(1, |want|)`.
    Rel(f64),
    /// `|got - want| <= a`.
    Abs(f64),
}

fn assert_matches(got: &Tensor, want: &Tensor, tol: Tol, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if !want.dtype().is_float() {
        assert!(
            got == want,
            "{what}: got {:?}, want {:?}",
            got.to_i64_vec().ok(),
            want.to_i64_vec().ok()
        );
        return;
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    for (i, (&g, &w)) in g.iter().zip(&w).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() || matches!(tol, Tol::Exact) {
            // Zeros compare by value: max/relu may pick either sign of zero.
            g == w
        } else {
            match tol {
                Tol::Rel(r) => (g - w).abs() <= r * w.abs().max(1.0),
                Tol::Abs(a) => (g - w).abs() <= a,
                Tol::Exact => unreachable!(),
            }
        };
        assert!(ok, "{what}: element {i}: got {g:e}, want {w:e}");
    }
}

/// One op on inputs of the given types, as a body with one output.
fn one_op(op: Op, inputs: &[TensorType], consts: &[Tensor]) -> Option<Graph> {
    let mut g = Graph::new("one_op");
    let mut vs: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| g.add_input(format!("x{i}"), t.clone()))
        .collect();
    for (i, c) in consts.iter().enumerate() {
        vs.push(g.add_const(c.clone(), format!("c{i}")));
    }
    let v = g.add(op, vs, "op").ok()?;
    g.add_output("y", v).ok()?;
    Some(g)
}

/// Compiles `g`, runs it, and compares with the interpreter: an input the interpreter rejects
/// (integer division by zero) must fault.
fn check(g: &Graph, inputs: &[Tensor], tol: Tol) {
    let text = lathe_ir::text::print(g);
    let k = RowKernel::compile(g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let got = run_kernel(&k, g, inputs);
    match lathe_ir::interp::run(g, inputs) {
        Ok(want) => {
            let got =
                got.unwrap_or_else(|e| panic!("kernel faulted ({e}), interpreter did not\n{text}"));
            for (g, w) in got.iter().zip(&want) {
                assert_matches(g, w, tol, &text);
            }
        }
        Err(e) => assert!(
            got.is_err(),
            "interpreter failed ({e}), kernel did not\n{text}"
        ),
    }
}

fn unary_tol(u: UnaryOp, dt: DType) -> Tol {
    match (dt, u) {
        (DType::F32, UnaryOp::Erfc) => Tol::Abs(2e-6),
        (DType::F32, _) => Tol::Rel(FLOAT32_TOL),
        _ => Tol::Exact,
    }
}

fn binary_tol(dt: DType) -> Tol {
    if dt == DType::F32 {
        Tol::Rel(FLOAT32_TOL)
    } else {
        Tol::Exact
    }
}

fn reduce_tol(dt: DType) -> Tol {
    match dt {
        DType::F32 => Tol::Rel(1e-5),
        DType::F64 => Tol::Rel(1e-12),
        // One ulp of the half type (f16: 2^-10, bf16: 2^-7), relative.
        DType::F16 => Tol::Rel(1e-3),
        DType::BF16 => Tol::Rel(8e-3),
        _ => Tol::Exact,
    }
}

/// Operand shapes broadcasting to `[rows, len]`: full, one row, per row, scalar.
fn operand_dims(kind: u8, rows: usize, len: usize) -> Vec<usize> {
    match kind % 4 {
        0 => vec![rows, len],
        1 => vec![len],
        2 => vec![rows, 1],
        _ => vec![],
    }
}

/// The dtypes generated code computes on: every one but the low-precision storage types, whose
/// casts run the conversion kernel (tested in `kernels::convert`).
fn compute_dtypes() -> Vec<DType> {
    DTypeClass::Any.dtypes()
}

fn dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(compute_dtypes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_unary_op_on_every_dtype(
        dt in dtype(), rows in 1usize..5, len in 1usize..23, seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        for u in UnaryOp::ALL {
            let ty = TensorType::known(dt, &[rows, len]);
            let Some(g) = one_op(Op::Unary(u), &[ty], &[]) else { continue };
            let x = random_tensor(dt, &[rows, len], &mut rng, false);
            check(&g, &[x], unary_tol(u, dt));
        }
    }

    #[test]
    fn every_binary_op_on_every_dtype_with_broadcasting(
        dt in dtype(), rows in 1usize..5, len in 1usize..23,
        kx in 0u8..4, ky in 0u8..4, seed in any::<u64>(), zeros in any::<bool>(),
    ) {
        let mut rng = Rng(seed);
        let (dx, dy) = (operand_dims(kx, rows, len), operand_dims(ky, rows, len));
        for b in BinaryOp::ALL {
            let tys = [TensorType::known(dt, &dx), TensorType::known(dt, &dy)];
            let Some(g) = one_op(Op::Binary(b), &tys, &[]) else { continue };
            let divisor = matches!(b, BinaryOp::Div | BinaryOp::FloorDiv | BinaryOp::FloorMod);
            let x = random_tensor(dt, &dx, &mut rng, false);
            let mut y = random_tensor(dt, &dy, &mut rng, divisor && !zeros);
            if b == BinaryOp::Pow && dt.is_int() {
                // Small exponents (a few negative ones for signed types, which must fault).
                let e: Vec<i64> = y.to_i64_vec().unwrap().iter()
                    .map(|v| if zeros { v.rem_euclid(9) - 1 } else { v.rem_euclid(9) })
                    .collect();
                y = Tensor::from_i64(dt, &dy, &e);
            }
            if matches!(b, BinaryOp::LeftShift | BinaryOp::RightShift) && !zeros {
                // Amounts across the whole width and a little past it either side.
                let bits = 8 * dt.size_bytes() as i64;
                let e: Vec<i64> = y.to_i64_vec().unwrap().iter()
                    .map(|v| v.rem_euclid(bits + 4) - 2)
                    .collect();
                y = Tensor::from_i64(dt, &dy, &e);
            }
            check(&g, &[x, y], binary_tol(dt));
        }
    }

    #[test]
    fn casts_between_every_pair(
        from in dtype(), to in dtype(), len in 1usize..40, seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let g = one_op(Op::Cast { to }, &[TensorType::known(from, &[2, len])], &[]).unwrap();
        let mut x = random_tensor(from, &[2, len], &mut rng, false);
        if from.is_float() {
            // Values at the integer types' boundaries.
            let edges = [127.9, 128.0, -128.5, -129.0, 255.5, 256.0, 32767.5, -32769.0,
                2147483647.0, 2147483648.0, -2147483649.0, 4294967296.0, 9.3e18, -9.3e18,
                1.9e19, -0.7, 0.7];
            let mut v = x.to_f64_vec();
            for (i, e) in v.iter_mut().enumerate() {
                if i % 2 == 0 {
                    *e = rng.pick(&edges);
                }
            }
            x = Tensor::from_f64(from, &[2, len], &v);
        }
        check(&g, &[x], Tol::Exact);
    }

    #[test]
    fn select_on_every_dtype(
        dt in dtype(), rows in 1usize..5, len in 1usize..23,
        kc in 0u8..4, kx in 0u8..4, ky in 0u8..4, seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let dims = [operand_dims(kc, rows, len), operand_dims(kx, rows, len), operand_dims(ky, rows, len)];
        let tys = [
            TensorType::known(DType::Bool, &dims[0]),
            TensorType::known(dt, &dims[1]),
            TensorType::known(dt, &dims[2]),
        ];
        let g = one_op(Op::Select, &tys, &[]).unwrap();
        let ins = [
            random_tensor(DType::Bool, &dims[0], &mut rng, false),
            random_tensor(dt, &dims[1], &mut rng, false),
            random_tensor(dt, &dims[2], &mut rng, false),
        ];
        check(&g, &ins, Tol::Exact);
    }

    #[test]
    fn last_axis_reductions_on_every_dtype(
        dt in dtype(), rows in 1usize..5, len in 1usize..40, seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        for kind in ReduceKind::ALL {
            let op = Op::Reduce { kind, keep_dims: true };
            let axes = Tensor::from_vec(&[1], vec![-1i32]);
            let ty = TensorType::known(dt, &[rows, len]);
            let Some(g) = one_op(op, &[ty], &[axes]) else { continue };
            let x = random_tensor(dt, &[rows, len], &mut rng, false);
            check(&g, &[x], reduce_tol(dt));
        }
    }

    #[test]
    fn softmax_on_every_float_dtype(
        dt in prop::sample::select(vec![DType::F32, DType::F64, DType::F16, DType::BF16]),
        rows in 1usize..5, len in 1usize..40, seed in any::<u64>(), log in any::<bool>(),
    ) {
        let mut rng = Rng(seed);
        let op = if log { Op::LogSoftmax } else { Op::Softmax };
        let g = one_op(op, &[TensorType::known(dt, &[rows, len])], &[]).unwrap();
        // Finite values: rows with NaN/inf are covered by the f32 tests in codegen.rs.
        let v: Vec<f64> = random_tensor(dt, &[rows, len], &mut rng, false)
            .to_f64_vec().into_iter().map(|x| if x.is_finite() { x } else { 0.25 }).collect();
        let x = Tensor::from_f64(dt, &[rows, len], &v);
        let tol = if dt == DType::F32 { Tol::Rel(1e-5) } else { reduce_tol(dt) };
        check(&g, &[x], tol);
    }
}

/// A mixed body: integer arithmetic, a comparison, a select on f32 and a cast, fused.
#[test]
fn mixed_dtype_body() {
    let g = lathe_ir::text::parse(
        r#"graph @mixed(%i: i32[3,7], %x: f32[3,7]) -> ("y": f32[3,7], "b": bool[3,7]) {
  %0 = const dense<3> : i32[]
  %1 = floor_mod(%i, %0) : i32[3,7]
  %2 = const dense<1> : i32[]
  %3 = equal(%1, %2) : bool[3,7]
  %4 = cast(%i) {to = f32} : f32[3,7]
  %5 = mul(%4, %x) : f32[3,7]
  %6 = select(%3, %5, %x) : f32[3,7]
  return %6, %3
}"#,
    )
    .unwrap();
    let mut rng = Rng(7);
    let ins = [
        random_tensor(DType::I32, &[3, 7], &mut rng, false),
        random_tensor(DType::F32, &[3, 7], &mut rng, false),
    ];
    check(&g, &ins, Tol::Rel(FLOAT32_TOL));
}

/// Integer division by zero faults (the interpreter's error), and `MIN / -1` wraps.
#[test]
fn integer_division_edges() {
    let ty = TensorType::known(DType::I32, &[1, 4]);
    let g = one_op(Op::Binary(BinaryOp::Div), &[ty.clone(), ty], &[]).unwrap();
    let k = RowKernel::compile(&g).unwrap();
    let x = Tensor::from_vec(&[1, 4], vec![i32::MIN, 7, -7, 5]);
    let y = Tensor::from_vec(&[1, 4], vec![-1, -2, 2, 0]);
    assert_eq!(
        run_kernel(&k, &g, &[x.clone(), y]),
        Err(KernelFault::DivisionByZero)
    );
    let y = Tensor::from_vec(&[1, 4], vec![-1, -2, 2, 3]);
    let got = run_kernel(&k, &g, &[x, y]).unwrap();
    assert_eq!(
        got[0].to_i64_vec().unwrap(),
        vec![i32::MIN as i64, -3, -3, 1]
    );
}

/// `compiles` answers exactly what `RowKernel::compile` does on one-op bodies, for every
/// elementwise and reduction op and every dtype.
#[test]
fn support_agrees_with_codegen() {
    let mut ops: Vec<Op> = vec![Op::Select, Op::Softmax, Op::LogSoftmax, Op::Identity];
    ops.extend(UnaryOp::ALL.map(Op::Unary));
    ops.extend(BinaryOp::ALL.map(Op::Binary));
    ops.extend(compute_dtypes().into_iter().map(|to| Op::Cast { to }));
    ops.extend(ReduceKind::ALL.map(|kind| Op::Reduce {
        kind,
        keep_dims: true,
    }));
    let mut checked = 0;
    for op in ops {
        for dt in compute_dtypes() {
            let dtypes: Vec<DType> = match op {
                Op::Select => vec![DType::Bool, dt, dt],
                Op::Binary(_) => vec![dt, dt],
                _ => vec![dt],
            };
            let tys: Vec<TensorType> = dtypes
                .iter()
                .map(|&d| TensorType::known(d, &[2, 5]))
                .collect();
            let consts = match op {
                Op::Reduce { .. } => vec![Tensor::from_vec(&[1], vec![-1i32])],
                _ => vec![],
            };
            let answer = compiles(&op, &dtypes);
            let compiled = one_op(op.clone(), &tys, &consts).map(|g| RowKernel::compile(&g));
            let ok = matches!(compiled, Some(Ok(_)));
            assert_eq!(
                answer.is_ok(),
                ok,
                "{} on {dtypes:?}: compiles says {answer:?}, codegen {:?}",
                op.mnemonic(),
                compiled.map(|r| r.map(|_| ()))
            );
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");
}
