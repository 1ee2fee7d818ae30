//! The CPU backend's dense kernels on model shapes, one thread: `conv2d` (im2col + GEMM, and
//! pointwise GEMM), Winograd against im2col on 3×3 stride-1 convolutions, `depthwise_conv2d`,
//! pooling and small-`m` GEMV.
//!
//! Convolutions declare `Throughput::Elements(FLOPs)` (2 per multiply-add, padding taps
//! included, the usual count), so criterion's "elem/s" reads as FLOP/s. Pooling and GEMV are
//! memory-bound and declare `Throughput::Bytes`: input read plus output written for pooling,
//! the bytes of `B` for GEMV.
//!
//! ```text
//! cargo bench -p lathe-benches --bench conv
//! cargo bench -p lathe-benches --bench conv -- depthwise   # a filter
//! cargo bench -p lathe-benches --bench conv -- winograd/    # Winograd vs im2col
//! ```
//!
//! The `winograd` groups declare the direct convolution's FLOPs for both kernels, so their
//! "elem/s" compare as effective speed.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lathe_ir::ops::{ConvAttrs, DataFormat, Padding, PoolAttrs};
use lathe_ir::{DType, Tensor, TensorType};
use lathe_runtime::kernels::conv::Conv2d;
use lathe_runtime::kernels::depthwise::DepthwiseConv2d;
use lathe_runtime::kernels::gemv::gemv;
use lathe_runtime::kernels::pool::{Pool2d, PoolKind};
use lathe_runtime::kernels::winograd::Winograd3x3;
use lathe_runtime::kernels::{sgemm, MatMut, MatRef};
use std::time::Duration;

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

fn attrs(stride: usize) -> ConvAttrs {
    ConvAttrs {
        strides: [stride, stride],
        dilations: [1, 1],
        padding: Padding::Same,
        format: DataFormat::Nhwc,
    }
}

/// `(name, hw, in, out, k, stride)`: ResNet-50 convolutions at 224×224, batch 1.
const CONVS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("r50_stem_224x3_7x7x64_s2", 224, 3, 64, 7, 2),
    ("r50_56x64_3x3x64", 56, 64, 64, 3, 1),
    ("r50_56x256_1x1x64", 56, 256, 64, 1, 1),
    ("r50_56x64_1x1x256", 56, 64, 256, 1, 1),
    ("r50_28x128_3x3x128", 28, 128, 128, 3, 1),
    ("r50_56x256_1x1x512_s2", 56, 256, 512, 1, 2),
    ("r50_14x256_3x3x256", 14, 256, 256, 3, 1),
    ("r50_7x512_3x3x512", 7, 512, 512, 3, 1),
];

fn bench_conv(c: &mut Criterion) {
    for &(name, hw, cin, cout, k, s) in CONVS {
        let x = data(hw * hw * cin, 1);
        let f = Tensor::from_vec(&[k, k, cin, cout], data(k * k * cin * cout, 2));
        let xt = TensorType::known(DType::F32, &[1, hw, hw, cin]);
        let conv = Conv2d::new(&attrs(s), &xt, &f).unwrap();
        let rows = conv.rows();
        let mut out = vec![0.0f32; rows * cout];
        let mut group = c.benchmark_group(format!("conv2d/{name}"));
        group.throughput(Throughput::Elements((2 * rows * cout * k * k * cin) as u64));
        // The default tile, and for im2col convolutions a sweep of tile sizes.
        let tiles: &[usize] = if conv.scratch_len(1) == 0 {
            &[0]
        } else {
            &[0, 32, 64, 128, 256, 512]
        };
        for &tile in tiles {
            let conv = match tile {
                0 => conv.clone(),
                t => conv.clone().with_tile_rows(t),
            };
            let mut scratch = vec![0.0f32; conv.scratch_len(rows)];
            let id = match tile {
                0 => format!("default_t{}", conv.tile_rows().min(rows)),
                t => format!("tile{t}"),
            };
            group.bench_function(BenchmarkId::new("run_rows", id), |b| {
                b.iter(|| conv.run_rows(black_box(&x), 0..rows, &mut out, &mut scratch))
            });
        }
        group.finish();
    }
}

/// `(name, hw, in, out, padding)`: 3×3 stride-1 convolutions, batch 1: ResNet-50's four
/// stages, DenseNet-121's bottleneck 3×3s, the small `cnn` model's two, few input channels.
const WINOGRAD: &[(&str, usize, usize, usize, Padding)] = &[
    ("r50_56x64_3x3x64", 56, 64, 64, Padding::Same),
    ("r50_28x128_3x3x128", 28, 128, 128, Padding::Same),
    ("r50_14x256_3x3x256", 14, 256, 256, Padding::Same),
    ("r50_7x512_3x3x512", 7, 512, 512, Padding::Same),
    ("dn121_56x128_3x3x32", 56, 128, 32, Padding::Same),
    ("dn121_28x128_3x3x32", 28, 128, 32, Padding::Same),
    ("dn121_14x128_3x3x32", 14, 128, 32, Padding::Same),
    ("dn121_7x128_3x3x32", 7, 128, 32, Padding::Same),
    ("cnn_28x1_3x3x32_valid", 28, 1, 32, Padding::Valid),
    ("cnn_13x32_3x3x64_valid", 13, 32, 64, Padding::Valid),
    ("few_in_28x4_3x3x32", 28, 4, 32, Padding::Same),
    ("few_in_28x8_3x3x32", 28, 8, 32, Padding::Same),
    ("small_16x64_3x3x64", 16, 64, 64, Padding::Same),
    ("small_8x128_3x3x128", 8, 128, 128, Padding::Same),
];

/// Winograd against im2col + GEMM on the same shapes, in one process and alternating (two
/// rounds of each, so drift in the machine's speed shows as a difference between rounds).
/// Both run the whole output in calls of the backend's tile (`tile_rows`), as a thread does.
fn bench_winograd(c: &mut Criterion) {
    for (name, hw, cin, cout, padding) in WINOGRAD {
        let (hw, cin, cout) = (*hw, *cin, *cout);
        let attrs = ConvAttrs {
            padding: padding.clone(),
            ..attrs(1)
        };
        let x = data(hw * hw * cin, 8);
        let f = Tensor::from_vec(&[3, 3, cin, cout], data(9 * cin * cout, 9));
        let xt = TensorType::known(DType::F32, &[1, hw, hw, cin]);
        let im2col = Conv2d::new(&attrs, &xt, &f).unwrap();
        let wino = Winograd3x3::new(&attrs, &xt, &f).unwrap();
        let rows = im2col.rows();
        let mut out = vec![0.0f32; rows * cout];
        let mut group = c.benchmark_group(format!("winograd/{name}"));
        group.throughput(Throughput::Elements((2 * rows * cout * 9 * cin) as u64));
        for round in 1..=2 {
            let mut scratch = vec![0.0f32; im2col.scratch_len(rows)];
            let tile = im2col.tile_rows().min(rows);
            group.bench_function(BenchmarkId::new("im2col", round), |b| {
                b.iter(|| {
                    in_tiles(rows, tile, cout, &mut out, |r, o| {
                        im2col.run_rows(black_box(&x), r, o, &mut scratch)
                    })
                })
            });
            let mut scratch = vec![0.0f32; wino.scratch_len(rows)];
            let tile = wino.tile_rows().min(rows);
            group.bench_function(BenchmarkId::new("winograd", round), |b| {
                b.iter(|| {
                    in_tiles(rows, tile, cout, &mut out, |r, o| {
                        wino.run_rows(black_box(&x), r, o, &mut scratch)
                    })
                })
            });
        }
        group.finish();
        // The batch size (tiles per input transform, 16 GEMMs and output transform).
        let mut group = c.benchmark_group(format!("winograd_batch/{name}"));
        group.throughput(Throughput::Elements((2 * rows * cout * 9 * cin) as u64));
        for tiles in [12, 24, 48, 96, 192, 384] {
            let wino = wino.clone().with_batch_tiles(tiles);
            let mut scratch = vec![0.0f32; wino.scratch_len(rows)];
            let tile = wino.tile_rows().min(rows);
            let id = if tiles == Winograd3x3::new(&attrs, &xt, &f).unwrap().batch_tiles() {
                format!("{tiles}_default")
            } else {
                tiles.to_string()
            };
            group.bench_function(BenchmarkId::new("tiles", id), |b| {
                b.iter(|| {
                    in_tiles(rows, tile, cout, &mut out, |r, o| {
                        wino.run_rows(black_box(&x), r, o, &mut scratch)
                    })
                })
            });
        }
        group.finish();
    }
}

/// Calls `run` on `0..rows` in ranges of `tile` rows with the matching slices of `out`.
fn in_tiles(
    rows: usize,
    tile: usize,
    cols: usize,
    out: &mut [f32],
    mut run: impl FnMut(std::ops::Range<usize>, &mut [f32]),
) {
    for (i, o) in out.chunks_mut(tile * cols).enumerate() {
        let start = i * tile;
        run(start..(start + tile).min(rows), o);
    }
}

/// `(name, hw, channels, stride)`: MobileNet-v2 depthwise 3×3 SAME convolutions, batch 1.
const DEPTHWISE: &[(&str, usize, usize, usize)] = &[
    ("mnv2_112x32_s1", 112, 32, 1),
    ("mnv2_112x96_s2", 112, 96, 2),
    ("mnv2_56x144_s1", 56, 144, 1),
    ("mnv2_56x144_s2", 56, 144, 2),
    ("mnv2_28x192_s1", 28, 192, 1),
    ("mnv2_14x576_s1", 14, 576, 1),
    ("mnv2_7x960_s1", 7, 960, 1),
];

fn bench_depthwise(c: &mut Criterion) {
    for &(name, hw, ch, s) in DEPTHWISE {
        let x = data(hw * hw * ch, 3);
        let f = Tensor::from_vec(&[3, 3, ch, 1], data(9 * ch, 4));
        let xt = TensorType::known(DType::F32, &[1, hw, hw, ch]);
        let dw = DepthwiseConv2d::new(&attrs(s), &xt, &f).unwrap();
        let rows = dw.rows();
        let mut out = vec![0.0f32; rows * ch];
        let mut group = c.benchmark_group(format!("depthwise/{name}"));
        group.throughput(Throughput::Elements((2 * rows * ch * 9) as u64));
        group.bench_function("run_rows", |b| {
            b.iter(|| dw.run_rows(black_box(&x), 0..rows, &mut out))
        });
        group.finish();
    }
}

/// `(name, kind, hw, channels, k, stride)`.
const POOLS: &[(&str, PoolKind, usize, usize, usize, usize)] = &[
    ("r50_max_112x64_3x3_s2", PoolKind::Max, 112, 64, 3, 2),
    ("avg_56x256_3x3_s1", PoolKind::Avg, 56, 256, 3, 1),
    ("max_28x3_2x2_s2", PoolKind::Max, 28, 3, 2, 2),
];

fn bench_pool(c: &mut Criterion) {
    for &(name, kind, hw, ch, k, s) in POOLS {
        let x = data(hw * hw * ch, 5);
        let attrs = PoolAttrs {
            ksize: [k, k],
            strides: [s, s],
            padding: Padding::Same,
            format: DataFormat::Nhwc,
        };
        let xt = TensorType::known(DType::F32, &[1, hw, hw, ch]);
        let p = Pool2d::new(kind, &attrs, &xt).unwrap();
        let rows = p.rows();
        let mut out = vec![0.0f32; rows * ch];
        let mut group = c.benchmark_group(format!("pool/{name}"));
        group.throughput(Throughput::Bytes((4 * (x.len() + out.len())) as u64));
        group.bench_function("run_rows", |b| {
            b.iter(|| p.run_rows(black_box(&x), 0..rows, &mut out))
        });
        group.finish();
    }
}

/// `(name, m, k, n)`: `C` m×n = `A` m×k · `B` k×n.
const GEMVS: &[(&str, usize, usize, usize)] = &[
    ("mlp_1x784x512", 1, 784, 512),
    ("mlp_1x512x512", 1, 512, 512),
    ("mlp_1x512x10", 1, 512, 10),
    ("m4_4x784x512", 4, 784, 512),
    ("encoder_1x256x1024", 1, 256, 1024),
];

fn bench_gemv(c: &mut Criterion) {
    for &(name, m, k, n) in GEMVS {
        let a = data(m * k, 6);
        let b = data(k * n, 7);
        let mut out = vec![0.0f32; m * n];
        let mut group = c.benchmark_group(format!("gemv/{name}"));
        group.throughput(Throughput::Bytes((4 * k * n) as u64));
        let a_view = MatRef::row_major(&a, m, k);
        group.bench_function("b_row_major", |bench| {
            bench.iter(|| {
                gemv(
                    a_view,
                    MatRef::row_major(black_box(&b), k, n),
                    0..n,
                    &mut out,
                )
            })
        });
        group.bench_function("b_transposed", |bench| {
            bench.iter(|| {
                gemv(
                    a_view,
                    MatRef::row_major(black_box(&b), n, k).t(),
                    0..n,
                    &mut out,
                )
            })
        });
        group.bench_function("sgemm_b_row_major", |bench| {
            bench.iter(|| {
                sgemm(
                    a_view,
                    MatRef::row_major(black_box(&b), k, n),
                    MatMut::row_major(&mut out, m, n),
                    false,
                    1,
                )
                .unwrap()
            })
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_conv, bench_winograd, bench_depthwise, bench_pool, bench_gemv
}
criterion_main!(benches);
