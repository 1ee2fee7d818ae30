//! A compiled loop allocates nothing per iteration: its regions' sub-plans are compiled once
//! and bound once per call, the carried values live in slots of the call's arena, and a list
//! carried through the body is written in place. Counted with a counting global allocator
//! (this test binary's own), on one thread (handing tasks to the pool allocates a job).

use lathe_compiler::SpecializedGraph;
use lathe_ir::{DType, Tensor};
use lathe_runtime::cpu::{CpuPlan, ThreadPool};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `GlobalAlloc::alloc`'s, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A loop of `n` (an input) iterations over a list of 2000 rows: the cell reads row `i` of
/// `x`, runs a small dense layer with constant weights and tanh, carries `h`, and writes it
/// into row `i` of the list.
const LOOP: &str = r#"
graph @cells(%x: f32[2000,16], %n: i32[]) -> ("hs": f32[2000,16], "h": f32[16]) {
  %0 = const dense<[16]> : i32[1]
  %1 = const dense<2000> : i32[]
  %2 = list_reserve(%0, %1) {dtype = f32} : f32[2000,16] loc("reserve")
  %3 = const dense<0> : i32[]
  %4 = const dense<splat 0.0> : f32[16]
  %5:5 = while(%3, %n, %4, %2, %x) {cond = graph @cond(%i: i32[], %n: i32[], %h: f32[16], %hs: f32[2000,16], %x: f32[2000,16]) -> ("c": bool[]) {
    %0 = less(%i, %n) : bool[]
    return %0
  }, body = graph @cell(%i: i32[], %n: i32[], %h: f32[16], %hs: f32[2000,16], %x: f32[2000,16]) -> ("i": i32[], "n": i32[], "h": f32[16], "hs": f32[2000,16], "x": f32[2000,16]) {
    %0 = const dense<0> : i32[]
    %1 = gather(%x, %i, %0) {batch_dims = 0} : f32[16] loc("x_i")
    %2 = add(%1, %h) : f32[16]
    %3 = expand_dims(%2, %0) : f32[1,16]
    %4 = const dense<splat 0.125> : f32[16,16]
    %5 = matmul(%3, %4) {transpose_a = false, transpose_b = false} : f32[1,16] loc("dense")
    %6 = tanh(%5) : f32[1,16]
    %7 = const dense<[16]> : i32[1]
    %8 = reshape(%6, %7) : f32[16] loc("h_next")
    %9 = set_item(%hs, %i, %8) : f32[2000,16] loc("write")
    %10 = const dense<1> : i32[]
    %11 = add(%i, %10) : i32[] loc("i_next")
    return %11, %n, %8, %9, %x
  }} : i32[], i32[], f32[16], f32[2000,16], f32[2000,16] loc("loop")
  return %5#3, %5#2
}
"#;

#[test]
fn a_loop_allocates_nothing_per_iteration() {
    let g = lathe_ir::text::parse(LOOP).unwrap();
    let plan = CpuPlan::compile(
        SpecializedGraph::new(g.clone()).unwrap(),
        Arc::new(ThreadPool::new(1)),
    )
    .unwrap();
    let printed = plan.print("cells");
    assert!(
        printed.contains("\"write\" set_item: set_item in place"),
        "{printed}"
    );
    assert_eq!(plan.stats().interp_steps, 0, "{printed}");
    let x = Tensor::from_f64(
        DType::F32,
        &[2000, 16],
        &(0..32000).map(|i| (i % 7) as f64 * 0.1).collect::<Vec<_>>(),
    );
    let n = |k: i64| Tensor::from_i64(DType::I32, &[], &[k]);
    let allocations = |k: i64| {
        let inputs = [x.clone(), n(k)];
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let out = plan.run(&inputs).unwrap();
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        drop(out);
        after - before
    };
    // The first call makes the arena; later calls take it from the pool.
    allocations(1);
    let (ten, thousand, odd) = (allocations(10), allocations(1000), allocations(1001));
    assert!(
        ten > 0,
        "the counting allocator counts (a call allocates its outputs)"
    );
    assert_eq!(ten, thousand, "allocations grow with the iterations");
    assert_eq!(ten, odd);
    // And the result is the interpreter's.
    let inputs = [x.clone(), n(37)];
    let want = lathe_ir::interp::run(&g, &inputs).unwrap();
    let got = plan.run(&inputs).unwrap();
    for (a, b) in want.iter().zip(&got) {
        for (u, v) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            assert!((u - v).abs() <= 1e-5, "{u} vs {v}");
        }
    }
}
