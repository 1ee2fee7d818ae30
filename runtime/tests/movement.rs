//! Differential tests of the CPU data-movement kernels (concat, pack, unpack, slices,
//! transpose, tile, pad, gather, fill, shape) against the interpreter, over random shapes,
//! axes and dtypes. Copies move bytes, so results must be bitwise equal, and every plan must
//! run without an interpreter step.

use lathe_compiler::SpecializedGraph;
use lathe_ir::ops::{PadMode, StridedSliceAttrs, UnaryOp};
use lathe_ir::{DType, Graph, Op, Tensor, TensorType, ValueId};
use lathe_runtime::cpu::{CpuError, CpuPlan, PlanStats, ThreadPool};
use proptest::prelude::*;
use std::sync::Arc;

const DTYPES: [DType; 7] = [
    DType::F32,
    DType::I64,
    DType::Bool,
    DType::U8,
    DType::F16,
    DType::I32,
    DType::I16,
];

/// Deterministic values of `dtype` (small integers, so every dtype holds them exactly).
fn tensor(dtype: DType, dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let vals: Vec<f64> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 100) as f64
        })
        .collect();
    Tensor::from_f64(dtype, dims, &vals)
}

fn ints(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec())
}

/// Compiles `g`, runs it on `inputs` (on 1 and 4 threads) and checks it against the
/// interpreter bit for bit, with no interpreter step in the plan.
fn check(g: &Graph, inputs: &[Tensor]) -> PlanStats {
    let want = lathe_ir::interp::run(g, inputs).expect("the interpreter runs it");
    let mut stats = PlanStats::default();
    for threads in [1, 4] {
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
        assert_eq!(got, want, "graph:\n{}", lathe_ir::text::print(g));
        stats = plan.stats();
    }
    stats
}

/// A graph of one op on `x` (a graph input) and constant configuration inputs; the input
/// goes through an identity transpose first when `produced` (so the op's operand is an arena
/// buffer).
fn one_op(op: Op, x: &Tensor, config: &[Tensor], produced: bool) -> Graph {
    let mut g = Graph::new("t");
    let mut v = g.add_input("x", x.ty());
    if produced {
        let perm: Vec<i64> = (0..x.shape().len() as i64).collect();
        let p = g.add_const(ints(&perm), "perm");
        v = g.add(Op::Transpose, vec![v, p], "copy").unwrap();
    }
    let mut ins = vec![v];
    for (i, c) in config.iter().enumerate() {
        ins.push(g.add_const(c.clone(), format!("c{i}")));
    }
    let y = g.add(op, ins, "y").unwrap();
    g.add_output("y", y).unwrap();
    g
}

fn shape_strategy(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..6, 1..=max_rank)
}

fn dtype_strategy() -> impl Strategy<Value = DType> {
    (0..DTYPES.len()).prop_map(|i| DTYPES[i])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn concat_matches_the_interpreter(
        dims in shape_strategy(4),
        axis in 0usize..4,
        sizes in prop::collection::vec(0usize..5, 2..5),
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        let axis = axis % dims.len();
        let mut g = Graph::new("t");
        let mut inputs = vec![];
        let mut vals = vec![];
        for (k, &n) in sizes.iter().enumerate() {
            let mut d = dims.clone();
            d[axis] = n;
            let t = tensor(dtype, &d, seed + k as u64);
            vals.push(g.add_input(format!("x{k}"), t.ty()));
            inputs.push(t);
        }
        vals.push(g.add_const(Tensor::scalar(axis as i32 - dims.len() as i32), "axis"));
        let y = g.add(Op::Concat, vals, "y").unwrap();
        g.add_output("y", y).unwrap();
        check(&g, &inputs);
    }

    #[test]
    fn transpose_matches_the_interpreter(
        dims in shape_strategy(5),
        keys in prop::collection::vec(any::<u32>(), 5),
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        let mut perm: Vec<i64> = (0..dims.len() as i64).collect();
        perm.sort_by_key(|&p| keys[p as usize]);
        let x = tensor(dtype, &dims, seed);
        check(&one_op(Op::Transpose, &x, &[ints(&perm)], seed % 2 == 0), &[x]);
    }

    #[test]
    fn slice_matches_the_interpreter(
        dims in shape_strategy(4),
        cuts in prop::collection::vec((0usize..6, 0usize..6), 4),
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        let begin: Vec<i64> = dims.iter().zip(&cuts).map(|(&d, c)| (c.0 % d) as i64).collect();
        let size: Vec<i64> = dims
            .iter()
            .zip(&begin)
            .zip(&cuts)
            .map(|((&d, &b), c)| if c.1 == 5 { -1 } else { (c.1 as i64).min(d as i64 - b) })
            .collect();
        let x = tensor(dtype, &dims, seed);
        check(&one_op(Op::Slice, &x, &[ints(&begin), ints(&size)], false), &[x]);
    }

    #[test]
    fn strided_slice_matches_the_interpreter(
        dims in shape_strategy(4),
        spec in prop::collection::vec((-6i64..6, -6i64..6, prop::sample::select(vec![-2i64, -1, 1, 2, 3])), 4),
        masks in (0i64..16, 0i64..16, 0i64..16),
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        let r = dims.len();
        let begin: Vec<i64> = spec[..r].iter().map(|s| s.0).collect();
        let end: Vec<i64> = spec[..r].iter().map(|s| s.1).collect();
        let strides: Vec<i64> = spec[..r].iter().map(|s| s.2).collect();
        // Shrunk axes need an in-range begin and a stride of 1 to be valid.
        let shrink = masks.2 & ((1 << r) - 1);
        let mut begin = begin;
        let mut strides = strides;
        for k in 0..r {
            if shrink >> k & 1 == 1 {
                begin[k] = begin[k].rem_euclid(dims[k] as i64);
                strides[k] = 1;
            }
        }
        let op = Op::StridedSlice(StridedSliceAttrs {
            begin_mask: masks.0,
            end_mask: masks.1,
            shrink_axis_mask: shrink,
            ..StridedSliceAttrs::default()
        });
        let x = tensor(dtype, &dims, seed);
        let config = [ints(&begin), ints(&end), ints(&strides)];
        check(&one_op(op, &x, &config, false), &[x]);
    }

    #[test]
    fn tile_matches_the_interpreter(
        dims in shape_strategy(3),
        multiples in prop::collection::vec(0i64..4, 3),
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        let x = tensor(dtype, &dims, seed);
        let m = ints(&multiples[..dims.len()]);
        check(&one_op(Op::Tile, &x, &[m], true), &[x]);
    }

    #[test]
    fn pad_matches_the_interpreter_in_every_mode(
        dims in shape_strategy(3),
        pads in prop::collection::vec((0usize..4, 0usize..4), 3),
        mode in prop::sample::select(PadMode::ALL.to_vec()),
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        // Mirrored padding reaches at most the edge: n - 1 (reflect) or n (symmetric); edge
        // and wrap pad any amount of a non-empty axis.
        let limit = |n: usize| match mode {
            PadMode::Reflect => n - 1,
            PadMode::Symmetric => n,
            PadMode::Constant | PadMode::Edge | PadMode::Wrap => usize::MAX,
        };
        let flat: Vec<i64> = dims
            .iter()
            .zip(&pads)
            .flat_map(|(&n, &(b, a))| [b.min(limit(n)) as i64, a.min(limit(n)) as i64])
            .collect();
        let x = tensor(dtype, &dims, seed);
        let paddings = Tensor::from_vec(&[dims.len(), 2], flat);
        let mut config = vec![paddings];
        if mode == PadMode::Constant && seed % 2 == 0 {
            config.push(tensor(dtype, &[], seed + 1));
        }
        check(&one_op(Op::Pad { mode }, &x, &config, false), &[x]);
    }

    #[test]
    fn pack_and_unpack_match_the_interpreter(
        dims in shape_strategy(3),
        count in 1usize..4,
        axis in 0usize..4,
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        let mut g = Graph::new("t");
        let mut inputs = vec![];
        let mut vals = vec![];
        for k in 0..count {
            let t = tensor(dtype, &dims, seed + k as u64);
            vals.push(g.add_input(format!("x{k}"), t.ty()));
            inputs.push(t);
        }
        let axis = (axis % (dims.len() + 1)) as i64;
        let packed = g.add(Op::Pack { axis }, vals, "pack").unwrap();
        let un = g
            .add_node(Op::Unpack { axis, num: count }, vec![packed], "unpack")
            .unwrap();
        g.add_output("packed", packed).unwrap();
        for k in 0..count {
            g.add_output(format!("u{k}"), ValueId { node: un, output: k as u32 }).unwrap();
        }
        check(&g, &inputs);
    }

    #[test]
    fn gather_matches_the_interpreter(
        params in shape_strategy(3),
        idx_dims in prop::collection::vec(1usize..4, 0..3),
        axis in 0usize..3,
        dtype in dtype_strategy(),
        wide in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let axis = axis % params.len();
        let limit = params[axis];
        let n: usize = idx_dims.iter().product();
        let raw: Vec<i64> = (0..n).map(|i| ((seed as usize + 7 * i) % limit) as i64).collect();
        let indices = if wide {
            Tensor::from_vec(&idx_dims, raw)
        } else {
            Tensor::from_vec(&idx_dims, raw.iter().map(|&i| i as i32).collect::<Vec<_>>())
        };
        let x = tensor(dtype, &params, seed);
        let mut g = Graph::new("t");
        let p = g.add_input("params", x.ty());
        let i = g.add_input("indices", indices.ty());
        let a = g.add_const(Tensor::scalar(axis as i32), "axis");
        let y = g.add(Op::Gather { batch_dims: 0 }, vec![p, i, a], "lookup").unwrap();
        g.add_output("y", y).unwrap();
        check(&g, &[x, indices]);
    }
}

#[test]
fn gather_out_of_range_is_an_error_naming_the_node() {
    let mut g = Graph::new("t");
    let p = g.add_input("table", TensorType::known(DType::F32, &[4, 3]));
    let i = g.add_input("ids", TensorType::known(DType::I32, &[2]));
    let a = g.add_const(Tensor::scalar(0i32), "axis");
    let y = g
        .add(Op::Gather { batch_dims: 0 }, vec![p, i, a], "embed")
        .unwrap();
    g.add_output("y", y).unwrap();
    let specialized = SpecializedGraph::new(g).unwrap();
    let plan = CpuPlan::compile(specialized, Arc::new(ThreadPool::new(2))).unwrap();
    assert_eq!(plan.stats().interp_steps, 0);
    let table = tensor(DType::F32, &[4, 3], 1);
    for bad in [4, -1] {
        let ids = Tensor::from_vec(&[2], vec![1i32, bad]);
        let err = plan.run(&[table.clone(), ids]).unwrap_err();
        let CpuError::Kernel { node, op, message } = &err else {
            panic!("not a kernel fault: {err:?}");
        };
        assert_eq!((node.as_str(), op.as_str()), ("embed", "gather"), "{err}");
        assert!(message.contains(&format!("index {bad}")), "{err}");
    }
    let ok = Tensor::from_vec(&[2], vec![3i32, 0]);
    assert!(plan.run(&[table, ok]).is_ok());
}

#[test]
fn fill_shape_and_views_need_no_interpreter() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::known(DType::I64, &[2, 3]));
    let v = g.add_input("v", TensorType::known(DType::Bool, &[]));
    let s = g
        .add(Op::Shape { output: DType::I32 }, vec![x], "shape")
        .unwrap();
    let dims = g.add_const(ints(&[3, 2]), "dims");
    let f = g.add(Op::Fill, vec![dims, v], "fill").unwrap();
    let r = g.add(Op::StopGradient, vec![x], "stop").unwrap();
    let k = g.add_const(ints(&[3, 2]), "to");
    let r = g.add(Op::Reshape, vec![r, k], "reshape").unwrap();
    g.add_output("s", s).unwrap();
    g.add_output("f", f).unwrap();
    g.add_output("r", r).unwrap();
    let stats = check(&g, &[tensor(DType::I64, &[2, 3], 3), Tensor::scalar(true)]);
    assert!(stats.views >= 2, "{stats:?}");
}

/// Concat of values its producers computed: the members are written in place when the
/// concat's outer size is 1, and the result still matches.
#[test]
fn concat_of_produced_values_matches() {
    // Members of [1, 16, 4] f32 are 256 bytes: a, b and c land on aligned slices in place.
    let cases = [
        (vec![1usize, 16, 4], 1i32, 3),
        (vec![1, 4, 3], 1, 1),
        (vec![3, 2], 0, 1),
        (vec![2, 3, 5], 2, 0),
    ];
    for (dims, axis, in_place) in cases {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::known(DType::F32, &dims));
        let a = g.add(Op::Unary(UnaryOp::Neg), vec![x], "a").unwrap();
        let b = g.add(Op::Unary(UnaryOp::Relu), vec![x], "b").unwrap();
        let c = g.add(Op::Unary(UnaryOp::Abs), vec![a], "c").unwrap();
        let ax = g.add_const(Tensor::scalar(axis), "axis");
        let y = g.add(Op::Concat, vec![a, b, x, c, ax], "y").unwrap();
        let z = g.add(Op::Unary(UnaryOp::Neg), vec![y], "z").unwrap();
        g.add_output("z", z).unwrap();
        g.add_output("b", b).unwrap();
        let mut t = tensor(DType::F32, &dims, 9);
        if let Tensor::F32(a) = &mut t {
            a.mapv_inplace(|v| v / 50.0 - 1.0);
        }
        let stats = check(&g, &[t]);
        assert_eq!(stats.views, in_place, "{dims:?} along {axis}: {stats:?}");
    }
}
