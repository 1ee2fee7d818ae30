//! Control flow on the CPU backend against the interpreter: `while` loops that accumulate into
//! lists, an LSTM-like loop (constant weights, gates, a list of hidden states), `if`s, loops
//! inside branches and branches inside loops, loops that run zero times, carried values that
//! pass through, swap or come back constant, and the errors a loop's kernels raise.
//!
//! Each graph is a hand-written specialized `.lir` (every type known, as the specializer
//! leaves it) compiled at one and at three threads; none of them may leave a step to the
//! interpreter, at any depth.

use lathe_compiler::pipeline::{NoHooks, Pipeline};
use lathe_compiler::SpecializedGraph;
use lathe_ir::{DType, Graph, Op, Tensor};
use lathe_runtime::cpu::{CpuError, CpuPlan, ThreadPool};
use std::fmt::Write as _;
use std::sync::Arc;

fn parse(src: &str) -> Graph {
    let g = lathe_ir::text::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    lathe_ir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{src}"));
    g
}

fn compile(g: &Graph, threads: usize) -> CpuPlan {
    let spec = SpecializedGraph::new(g.clone()).unwrap();
    CpuPlan::compile(spec, Arc::new(ThreadPool::new(threads))).unwrap()
}

/// Runs `g` on `inputs` with the interpreter and compiled at 1 and 3 threads; the results
/// must agree within `tol` (relative to the larger magnitude, and absolutely near zero).
fn check(g: &Graph, inputs: &[Tensor], tol: f64) -> Vec<Tensor> {
    let want = lathe_ir::interp::run(g, inputs).unwrap();
    for threads in [1, 3] {
        let plan = compile(g, threads);
        let st = plan.stats();
        assert_eq!(st.interp_steps, 0, "{}", plan.print(&g.name));
        // Twice: the second call reuses the first one's arena.
        for _ in 0..2 {
            let got = plan.run(inputs).unwrap();
            assert_eq!(got.len(), want.len());
            for (k, (a, b)) in want.iter().zip(&got).enumerate() {
                assert_eq!(a.ty(), b.ty(), "output {k}");
                for (i, (x, y)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).enumerate() {
                    let ok = (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs()));
                    assert!(
                        ok,
                        "output {k}[{i}]: interpreter {x}, cpu {y} ({threads} threads)\n{}",
                        plan.print(&g.name)
                    );
                }
            }
        }
    }
    want
}

fn ints(v: i64) -> Tensor {
    Tensor::from_i64(DType::I32, &[], &[v])
}

fn floats(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_f64(DType::F32, dims, &values(n, seed, 1.0))
}

/// `n` pseudo-random values in `[-scale, scale)`.
fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A dense literal of `dims` (rank 1 or 2) from `v`.
fn literal(dims: &[usize], v: &[f64]) -> String {
    let row = |r: &[f64]| {
        let items: Vec<String> = r.iter().map(|x| format!("{x:.6}")).collect();
        format!("[{}]", items.join(", "))
    };
    match dims {
        [_] => row(v),
        [_, cols] => {
            let rows: Vec<String> = v.chunks(*cols).map(row).collect();
            format!("[{}]", rows.join(", "))
        }
        _ => panic!("rank 1 or 2"),
    }
}

/// `while i < n: acc[i] = x * (i + 1); i += 1`, with `n` an input, over a list of 4 rows.
const COUNTING: &str = r#"
graph @count(%x: f32[2], %n: i32[]) -> ("acc": f32[4,2], "i": i32[]) {
  %0 = const dense<[2]> : i32[1]
  %1 = const dense<4> : i32[]
  %2 = list_reserve(%0, %1) {dtype = f32} : f32[4,2] loc("reserve")
  %3 = const dense<0> : i32[]
  %4:4 = while(%3, %n, %2, %x) {cond = graph @cond(%i: i32[], %n: i32[], %acc: f32[4,2], %x: f32[2]) -> ("c": bool[]) {
    %0 = less(%i, %n) : bool[] loc("lt")
    return %0
  }, body = graph @body(%i: i32[], %n: i32[], %acc: f32[4,2], %x: f32[2]) -> ("i": i32[], "n": i32[], "acc": f32[4,2], "x": f32[2]) {
    %0 = const dense<1> : i32[]
    %1 = add(%i, %0) : i32[] loc("next")
    %2 = cast(%1) {to = f32} : f32[] loc("scale")
    %3 = mul(%x, %2) : f32[2] loc("item")
    %4 = set_item(%acc, %i, %3) : f32[4,2] loc("write")
    return %1, %n, %4, %x
  }} : i32[], i32[], f32[4,2], f32[2] loc("loop")
  return %4#2, %4#0
}
"#;

#[test]
fn a_counting_loop_fills_a_list_for_any_trip_count() {
    let g = parse(COUNTING);
    let x = Tensor::from_f64(DType::F32, &[2], &[1.5, -2.0]);
    // Zero, odd and even iteration counts (the final slot differs with the parity).
    for n in 0..=4 {
        let out = check(&g, &[x.clone(), ints(n)], 0.0);
        assert_eq!(out[1].to_i64_vec().unwrap(), vec![n]);
    }
    let out = check(&g, &[x, ints(3)], 0.0);
    assert_eq!(
        out[0].to_f64_vec(),
        vec![1.5, -2.0, 3.0, -4.0, 4.5, -6.0, 0.0, 0.0]
    );
}

#[test]
fn the_carried_list_is_written_in_place_and_passed_through_values_keep_one_slot() {
    let g = parse(COUNTING);
    let plan = compile(&g, 1);
    let text = plan.print("count");
    // i is read (as the index) after its next value is computed: two slots. The list is
    // written in place; n and x pass through.
    assert!(text.contains("loop carried=4 one-buffer=3"), "{text}");
    assert!(
        text.contains("\"write\" set_item: set_item in place"),
        "{text}"
    );
    let st = plan.stats();
    assert_eq!((st.control_steps, st.interp_steps), (1, 0));
    assert!(st.region_steps >= 5, "{st:?}");
}

#[test]
fn an_index_out_of_range_is_a_kernel_error_naming_the_node() {
    let g = parse(COUNTING);
    let plan = compile(&g, 1);
    let e = plan
        .run(&[Tensor::from_f64(DType::F32, &[2], &[1.0, 2.0]), ints(6)])
        .unwrap_err();
    let CpuError::Kernel { node, op, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((node.as_str(), op.as_str()), ("write", "set_item"));
    assert_eq!(
        e.to_string(),
        "node `write` (set_item): index 4 is out of range for 4 rows (in the body of while \
         `loop`, iteration 4)"
    );
    assert!(!e.to_string().contains('\n'));
    // And at the top level, outside any loop.
    let g = parse(
        r#"graph @w(%l: f32[3,2], %i: i64[], %v: f32[2]) -> ("y": f32[3,2]) {
          %0 = set_item(%l, %i, %v) : f32[3,2] loc("put")
          return %0
        }"#,
    );
    let l = floats(&[3, 2], 1);
    let v = floats(&[2], 2);
    check(
        &g,
        &[
            l.clone(),
            Tensor::from_i64(DType::I64, &[], &[2]),
            v.clone(),
        ],
        0.0,
    );
    let e = compile(&g, 1)
        .run(&[l, Tensor::from_i64(DType::I64, &[], &[-1]), v])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "node `put` (set_item): index -1 is out of range for 3 rows"
    );
}

/// An LSTM over `t` steps of `x: [t, 4]` with hidden size 8: gates from one matmul of
/// `[x_t, h]` with constant weights, plus a bias; the hidden states are written to a list.
fn lstm(t: usize) -> String {
    let (input, hidden) = (4, 8);
    let w = literal(
        &[input + hidden, 4 * hidden],
        &values((input + hidden) * 4 * hidden, 7, 0.5),
    );
    let b = literal(&[4 * hidden], &values(4 * hidden, 8, 0.1));
    let mut s = String::new();
    let carried =
        format!("%t: i32[], %h: f32[1,8], %c: f32[1,8], %hs: f32[{t},1,8], %x: f32[{t},4]");
    let types = format!("i32[], f32[1,8], f32[1,8], f32[{t},1,8], f32[{t},4]");
    let _ = write!(
        s,
        r#"graph @lstm(%x: f32[{t},4], %h0: f32[1,8], %c0: f32[1,8]) -> ("hs": f32[{t},1,8], "h": f32[1,8], "c": f32[1,8]) {{
  %0 = const dense<[1, 8]> : i32[2]
  %1 = const dense<{t}> : i32[]
  %2 = list_reserve(%0, %1) {{dtype = f32}} : f32[{t},1,8] loc("hs")
  %3 = const dense<0> : i32[]
  %4:5 = while(%3, %h0, %c0, %2, %x) {{cond = graph @cond({carried}) -> ("c": bool[]) {{
    %0 = const dense<{t}> : i32[]
    %1 = less(%t, %0) : bool[]
    return %1
  }}, body = graph @cell({carried}) -> ("t": i32[], "h": f32[1,8], "c": f32[1,8], "hs": f32[{t},1,8], "x": f32[{t},4]) {{
    %0 = const dense<0> : i32[]
    %1 = gather(%x, %t, %0) {{batch_dims = 0}} : f32[4] loc("x_t")
    %2 = expand_dims(%1, %0) : f32[1,4]
    %3 = const dense<1> : i32[]
    %4 = concat(%2, %h, %3) : f32[1,12] loc("xh")
    %5 = const dense<{w}> : f32[12,32] loc("kernel")
    %6 = matmul(%4, %5) {{transpose_a = false, transpose_b = false}} : f32[1,32] loc("gates")
    %7 = const dense<{b}> : f32[32] loc("bias")
    %8 = add(%6, %7) : f32[1,32] loc("gates_b")
    %9 = const dense<[1, 8]> : i32[2]
    %10 = const dense<[0, 0]> : i32[2]
    %11 = slice(%8, %10, %9) : f32[1,8] loc("i")
    %12 = const dense<[0, 8]> : i32[2]
    %13 = slice(%8, %12, %9) : f32[1,8] loc("f")
    %14 = const dense<[0, 16]> : i32[2]
    %15 = slice(%8, %14, %9) : f32[1,8] loc("g")
    %16 = const dense<[0, 24]> : i32[2]
    %17 = slice(%8, %16, %9) : f32[1,8] loc("o")
    %18 = sigmoid(%11) : f32[1,8]
    %19 = sigmoid(%13) : f32[1,8]
    %20 = tanh(%15) : f32[1,8]
    %21 = sigmoid(%17) : f32[1,8]
    %22 = mul(%19, %c) : f32[1,8]
    %23 = mul(%18, %20) : f32[1,8]
    %24 = add(%22, %23) : f32[1,8] loc("c_next")
    %25 = tanh(%24) : f32[1,8]
    %26 = mul(%21, %25) : f32[1,8] loc("h_next")
    %27 = set_item(%hs, %t, %26) : f32[{t},1,8] loc("write_h")
    %28 = add(%t, %3) : i32[] loc("t_next")
    return %28, %26, %24, %27, %x
  }}}} : {types} loc("lstm")
  return %4#3, %4#1, %4#2
}}
"#
    );
    s
}

fn lstm_inputs(t: usize) -> Vec<Tensor> {
    vec![floats(&[t, 4], 1), floats(&[1, 8], 2), floats(&[1, 8], 3)]
}

/// `g` with the pass pipeline `passes` run inside every while body and cond (what the
/// optimizer does to regions), so bodies hold fused ops.
fn optimize_regions(g: &Graph, passes: &str) -> Graph {
    let pipeline = Pipeline::parse(passes).unwrap();
    let mut out = g.clone();
    for id in g.node_ids() {
        if let Op::While { cond, body } = &g.node(id).op {
            let run = |r: &Arc<Graph>| {
                let mut r = (**r).clone();
                pipeline.run(&mut r, &mut NoHooks).unwrap();
                Arc::new(r)
            };
            let op = Op::While {
                cond: run(cond),
                body: run(body),
            };
            out.set_op(id, op, g.node(id).outputs.clone());
        }
    }
    lathe_ir::verify(&out).unwrap();
    out
}

#[test]
fn an_lstm_loop_matches_the_interpreter_raw_and_fused() {
    let g = parse(&lstm(6));
    check(&g, &lstm_inputs(6), 1e-4);
    let fused = optimize_regions(&g, "fixed-point(fold-constants,prune,cse),fuse");
    let text = lathe_ir::text::print(&fused);
    assert!(text.contains("fused."), "{text}");
    check(&fused, &lstm_inputs(6), 1e-4);
    let plan = compile(&fused, 1);
    let printed = plan.print("lstm");
    assert!(printed.contains("set_item in place"), "{printed}");
}

#[test]
fn an_if_runs_the_branch_its_condition_names() {
    let g = parse(
        r#"graph @choose(%p: bool[], %x: f32[2,3]) -> ("y": f32[2,3], "z": f32[2,3]) {
  %0:2 = if(%p, %x) {then_branch = graph @neg(%x: f32[2,3]) -> ("y": f32[2,3], "z": f32[2,3]) {
    %0 = neg(%x) : f32[2,3]
    return %0, %x
  }, else_branch = graph @dense(%x: f32[2,3]) -> ("y": f32[2,3], "z": f32[2,3]) {
    %0 = const dense<[[1.0, 0.5, -1.0], [0.25, 2.0, 0.0], [-0.5, 1.0, 1.5]]> : f32[3,3]
    %1 = matmul(%x, %0) {transpose_a = false, transpose_b = false} : f32[2,3]
    %2 = relu(%1) : f32[2,3]
    %3 = const dense<splat 1.0> : f32[2,3]
    return %2, %3
  }} : f32[2,3], f32[2,3] loc("choose")
  return %0#0, %0#1
}"#,
    );
    let x = floats(&[2, 3], 4);
    let yes = check(
        &g,
        &[Tensor::from_f64(DType::Bool, &[], &[1.0]), x.clone()],
        1e-6,
    );
    let no = check(
        &g,
        &[Tensor::from_f64(DType::Bool, &[], &[0.0]), x.clone()],
        1e-6,
    );
    assert_eq!(yes[1], x);
    assert_eq!(no[1].to_f64_vec(), vec![1.0; 6]);
    let printed = compile(&g, 1).print("choose");
    assert!(
        printed.contains("then_branch:") && printed.contains("else_branch:"),
        "{printed}"
    );
}

/// A sum loop `while k < n: s += v; k += 1` as a region text (carried `k, n, s, v`).
fn sum_loop(indent: &str) -> String {
    format!(
        r#"while(%0, %n, %v, %v) {{cond = graph @c(%k: i32[], %n: i32[], %s: f32[3], %v: f32[3]) -> ("c": bool[]) {{
{indent}  %0 = less(%k, %n) : bool[]
{indent}  return %0
{indent}}}, body = graph @b(%k: i32[], %n: i32[], %s: f32[3], %v: f32[3]) -> ("k": i32[], "n": i32[], "s": f32[3], "v": f32[3]) {{
{indent}  %0 = const dense<1> : i32[]
{indent}  %1 = add(%k, %0) : i32[]
{indent}  %2 = add(%s, %v) : f32[3]
{indent}  return %1, %n, %2, %v
{indent}}}}} : i32[], i32[], f32[3], f32[3] loc("sum")"#
    )
}

#[test]
fn a_loop_inside_a_branch() {
    let src = format!(
        r#"graph @g(%p: bool[], %n: i32[], %v: f32[3]) -> ("y": f32[3]) {{
  %0 = if(%p, %n, %v) {{then_branch = graph @t(%n: i32[], %v: f32[3]) -> ("y": f32[3]) {{
    %0 = const dense<0> : i32[]
    %1:4 = {}
    return %1#2
  }}, else_branch = graph @e(%n: i32[], %v: f32[3]) -> ("y": f32[3]) {{
    return %v
  }}}} : f32[3] loc("pick")
  return %0
}}"#,
        sum_loop("    ")
    );
    let g = parse(&src);
    let v = floats(&[3], 5);
    for (p, n) in [(1.0, 0), (1.0, 1), (1.0, 4), (0.0, 3)] {
        check(
            &g,
            &[Tensor::from_f64(DType::Bool, &[], &[p]), ints(n), v.clone()],
            1e-6,
        );
    }
}

#[test]
fn a_branch_inside_a_loop_and_a_loop_inside_a_loop() {
    // Each iteration doubles s while k < 2, else adds an inner loop's sum of v (k + 1 times).
    let src = format!(
        r#"graph @g(%n: i32[], %v: f32[3]) -> ("s": f32[3], "k": i32[]) {{
  %0 = const dense<0> : i32[]
  %1:4 = while(%0, %n, %v, %v) {{cond = graph @c(%k: i32[], %n: i32[], %s: f32[3], %v: f32[3]) -> ("c": bool[]) {{
    %0 = less(%k, %n) : bool[]
    return %0
  }}, body = graph @b(%k: i32[], %n: i32[], %s: f32[3], %v: f32[3]) -> ("k": i32[], "n": i32[], "s": f32[3], "v": f32[3]) {{
    %0 = const dense<2> : i32[]
    %1 = less(%k, %0) : bool[]
    %2 = const dense<1> : i32[]
    %3 = add(%k, %2) : i32[]
    %4 = if(%1, %s, %v, %3) {{then_branch = graph @t(%s: f32[3], %v: f32[3], %n: i32[]) -> ("s": f32[3]) {{
      %0 = add(%s, %s) : f32[3]
      return %0
    }}, else_branch = graph @e(%s: f32[3], %v: f32[3], %n: i32[]) -> ("s": f32[3]) {{
      %0 = const dense<0> : i32[]
      %1:4 = {}
      %2 = add(%s, %1#2) : f32[3]
      return %2
    }}}} : f32[3] loc("step")
    return %3, %n, %4, %v
  }}}} : i32[], i32[], f32[3], f32[3] loc("outer")
  return %1#2, %1#0
}}"#,
        sum_loop("      ")
    );
    let g = parse(&src);
    let v = floats(&[3], 6);
    for n in [0, 1, 2, 3, 5] {
        check(&g, &[ints(n), v.clone()], 1e-5);
    }
}

#[test]
fn carried_values_that_swap_repeat_or_come_back_constant() {
    // Body returns (k + 1, b, a, a, const): a and b swap each iteration, `a` is returned twice,
    // and the last value comes back as a constant whatever it entered as.
    let g = parse(
        r#"graph @g(%n: i32[], %a: f32[2], %b: f32[2], %z: f32[2]) -> ("a": f32[2], "b": f32[2], "d": f32[2], "z": f32[2]) {
  %0 = const dense<0> : i32[]
  %1:6 = while(%0, %n, %a, %b, %a, %z) {cond = graph @c(%k: i32[], %n: i32[], %a: f32[2], %b: f32[2], %d: f32[2], %z: f32[2]) -> ("c": bool[]) {
    %0 = less(%k, %n) : bool[]
    return %0
  }, body = graph @b(%k: i32[], %n: i32[], %a: f32[2], %b: f32[2], %d: f32[2], %z: f32[2]) -> ("k": i32[], "n": i32[], "a": f32[2], "b": f32[2], "d": f32[2], "z": f32[2]) {
    %0 = const dense<1> : i32[]
    %1 = add(%k, %0) : i32[]
    %2 = const dense<[7.0, -7.0]> : f32[2]
    return %1, %n, %b, %a, %a, %2
  }} : i32[], i32[], f32[2], f32[2], f32[2], f32[2] loc("swap")
  return %1#2, %1#3, %1#4, %1#5
}"#,
    );
    let (a, b, z) = (floats(&[2], 7), floats(&[2], 8), floats(&[2], 9));
    for n in 0..4 {
        check(&g, &[ints(n), a.clone(), b.clone(), z.clone()], 0.0);
    }
}

#[test]
fn a_loop_that_never_runs_returns_its_inits() {
    let g = parse(COUNTING);
    let x = floats(&[2], 10);
    let out = compile(&g, 3).run(&[x, ints(-3)]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![0.0; 8]);
    assert_eq!(out[1].to_i64_vec().unwrap(), vec![0]);
}

/// Per-iteration time of a loop (not a test of speed: prints what it measures).
/// `cargo test -p lathe-tests --release --test control_flow_cpu -- --ignored --nocapture`
#[test]
#[ignore]
fn loop_overhead() {
    let t = 20;
    let g = optimize_regions(
        &parse(&lstm(t)),
        "fixed-point(fold-constants,prune,cse),fuse",
    );
    let plan = compile(&g, 1);
    println!("{}", plan.print("lstm"));
    let inputs = lstm_inputs(t);
    let time = |f: &dyn Fn()| {
        f();
        let start = std::time::Instant::now();
        let reps = 2000;
        for _ in 0..reps {
            f();
        }
        start.elapsed().as_secs_f64() / reps as f64
    };
    let whole = time(&|| {
        plan.run(&inputs).unwrap();
    });
    // The body alone, as a plan of its own, run t times per repetition.
    let Some(body) = g
        .node_ids()
        .into_iter()
        .find_map(|id| match &g.node(id).op {
            Op::While { body, .. } => Some(body.clone()),
            _ => None,
        })
    else {
        panic!("no loop");
    };
    let body_plan = compile(&body, 1);
    let body_inputs: Vec<Tensor> = body
        .inputs()
        .iter()
        .map(|i| Tensor::zeros(i.ty.dtype, &i.ty.shape.as_known().unwrap()))
        .collect();
    let body_time = time(&|| {
        for _ in 0..t {
            body_plan.run(&body_inputs).unwrap();
        }
    });
    let counting = compile(&parse(COUNTING), 1);
    let x = floats(&[2], 1);
    let empty = time(&|| {
        counting.run(&[x.clone(), ints(0)]).unwrap();
    });
    let four = time(&|| {
        counting.run(&[x.clone(), ints(4)]).unwrap();
    });
    println!(
        "lstm loop of {t}: {:.2} us per call, {:.3} us per iteration; the body as a plan of its \
         own: {:.3} us per call; counting loop: {:.3} us per iteration (cond + 4 tiny steps)",
        whole * 1e6,
        whole * 1e6 / t as f64,
        body_time * 1e6 / t as f64,
        (four - empty) * 1e6 / 4.0
    );
}

#[test]
fn a_list_read_after_its_write_is_not_written_in_place() {
    // The body reads the old list (`add(%acc, %4)`) after writing the new one: the new list
    // must not overwrite the old one in place. The running total `tot` is never read, so its
    // next value may take its buffer; the while's list output, not a graph output, takes the
    // reserved list's bytes (no copy in).
    let g = parse(
        r#"graph @g(%x: f32[2], %n: i32[]) -> ("acc": f32[4,2], "tot": f32[4,2]) {
  %0 = const dense<[2]> : i32[1]
  %1 = const dense<4> : i32[]
  %2 = list_reserve(%0, %1) {dtype = f32} : f32[4,2] loc("reserve")
  %3 = const dense<0> : i32[]
  %4 = const dense<splat 0.0> : f32[4,2]
  %5:4 = while(%3, %n, %2, %4) {cond = graph @cond(%i: i32[], %n: i32[], %acc: f32[4,2], %tot: f32[4,2]) -> ("c": bool[]) {
    %0 = less(%i, %n) : bool[]
    return %0
  }, body = graph @body(%i: i32[], %n: i32[], %acc: f32[4,2], %tot: f32[4,2]) -> ("i": i32[], "n": i32[], "acc": f32[4,2], "tot": f32[4,2]) {
    %0 = const dense<1> : i32[]
    %1 = add(%i, %0) : i32[]
    %2 = cast(%1) {to = f32} : f32[]
    %3 = const dense<[1.0, -1.0]> : f32[2]
    %4 = mul(%3, %2) : f32[2]
    %5 = set_item(%acc, %i, %4) : f32[4,2] loc("write")
    %6 = add(%acc, %5) : f32[4,2] loc("old_plus_new")
    return %1, %n, %5, %6
  }} : i32[], i32[], f32[4,2], f32[4,2] loc("loop")
  %6 = neg(%5#2) : f32[4,2]
  return %6, %5#3
}"#,
    );
    let x = floats(&[2], 11);
    for n in 0..=4 {
        check(&g, &[x.clone(), ints(n)], 0.0);
    }
    let printed = compile(&g, 1).print("g");
    assert!(
        printed.contains("\"write\" set_item: set_item copy"),
        "{printed}"
    );
    assert!(printed.contains("loop carried=4 one-buffer=2"), "{printed}");
    let place = |line: &str| {
        let at = line.rfind("f32[4,2] arena+").expect("a list in the arena") + "f32[4,2] ".len();
        line[at..].split([',', ' ']).next().map(str::to_string)
    };
    let lines: Vec<&str> = printed.lines().collect();
    let reserve = lines
        .iter()
        .position(|l| l.contains("list_reserve"))
        .unwrap();
    let reserved = place(lines[reserve + 1]).unwrap();
    let looped = lines
        .iter()
        .position(|l| l.contains("\"loop\" while"))
        .unwrap();
    let writes = lines[looped + 1].split("->").nth(1).unwrap();
    assert!(
        writes.contains(&format!("f32[4,2] {reserved}")),
        "the loop's list slot is not the reserved list's bytes:\n{printed}"
    );
}

#[test]
fn a_body_whose_kernels_split_across_threads() {
    // 32768-element rows per step: the generated kernel splits over the pool's threads, and
    // writes the carried value in the buffer it came in.
    let g = parse(
        r#"graph @g(%s: f32[64,512], %x: f32[64,512], %n: i32[]) -> ("s": f32[64,512]) {
  %0 = const dense<0> : i32[]
  %1:4 = while(%0, %n, %s, %x) {cond = graph @c(%k: i32[], %n: i32[], %s: f32[64,512], %x: f32[64,512]) -> ("c": bool[]) {
    %0 = less(%k, %n) : bool[]
    return %0
  }, body = graph @b(%k: i32[], %n: i32[], %s: f32[64,512], %x: f32[64,512]) -> ("k": i32[], "n": i32[], "s": f32[64,512], "x": f32[64,512]) {
    %0 = const dense<1> : i32[]
    %1 = add(%k, %0) : i32[]
    %2 = tanh(%s) : f32[64,512]
    %3 = const dense<0.5> : f32[]
    %4 = mul(%2, %3) : f32[64,512]
    %5 = add(%4, %x) : f32[64,512]
    return %1, %n, %5, %x
  }} : i32[], i32[], f32[64,512], f32[64,512] loc("big")
  return %1#2
}"#,
    );
    let (s, x) = (floats(&[64, 512], 12), floats(&[64, 512], 13));
    for n in [0, 1, 3] {
        check(&g, &[s.clone(), x.clone(), ints(n)], 1e-5);
    }
    let fused = optimize_regions(&g, "fuse");
    check(&fused, &[s.clone(), x.clone(), ints(3)], 1e-5);
    let printed = compile(&fused, 3).print("g");
    // The counter too is updated where it came in (nothing reads it after its increment).
    assert!(printed.contains("loop carried=4 one-buffer=4"), "{printed}");
}
