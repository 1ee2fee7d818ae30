//! f32 GEMM: Lathe's `kernels::sgemm` (the `gemm` crate) against `matrixmultiply::sgemm`, and
//! `kernels::packed::gemm_packed` (B packed once, as convolution filters are) against
//! `kernels::sgemm` on ResNet-shaped problems, one thread (`-- packed`).
//!
//! Throughput is `Elements(2·m·n·k)`, so criterion's "elem/s" reads as FLOP/s.
//!
//! `matrixmultiply` takes its thread count once per process from `MATMUL_NUM_THREADS`
//! (this bench sets it to 1 when unset), so its two-thread numbers come from a second run:
//! `MATMUL_NUM_THREADS=2 cargo bench -p lathe-benches --bench gemm -- matrixmultiply`.

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use lathe_runtime::kernels::packed::{gemm_packed, Isa, PackedB};
use lathe_runtime::kernels::{sgemm, MatMut, MatRef};
use std::time::Duration;

/// `(name, m, n, k)`: C is m×n, A m×k, B k×n.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("square256", 256, 256, 256),
    ("square512", 512, 512, 512),
    ("square1024", 1024, 1024, 1024),
    ("square2048", 2048, 2048, 2048),
    ("mlp_1x784x512", 1, 512, 784),
    ("encoder_1x256x1024", 1, 1024, 256),
    ("encoder_128x256x1024", 128, 1024, 256),
    ("resnet_im2col_3136x576x64", 3136, 64, 576),
];

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

fn mm_threads() -> usize {
    std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn bench_gemm(c: &mut Criterion) {
    let mm = mm_threads();
    for &(name, m, n, k) in SHAPES {
        let a = data(m * k, 1);
        let b = data(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        let mut group = c.benchmark_group(format!("sgemm/{name}"));
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        if m * n * k >= 512 * 512 * 512 {
            group.sample_size(10);
        }
        for threads in [1usize, 2] {
            group.bench_function(
                BenchmarkId::new("gemm-crate", format!("t{threads}")),
                |bench| {
                    bench.iter(|| {
                        sgemm(
                            MatRef::row_major(black_box(&a), m, k),
                            MatRef::row_major(black_box(&b), k, n),
                            MatMut::row_major(&mut out, m, n),
                            false,
                            threads,
                        )
                        .unwrap()
                    })
                },
            );
        }
        group.bench_function(
            BenchmarkId::new("matrixmultiply", format!("t{mm}")),
            |bench| {
                bench.iter(|| {
                    // SAFETY: dense row-major m×k, k×n and m×n buffers of exactly those sizes.
                    unsafe {
                        matrixmultiply::sgemm(
                            m,
                            k,
                            n,
                            1.0,
                            black_box(a.as_ptr()),
                            k as isize,
                            1,
                            black_box(b.as_ptr()),
                            n as isize,
                            1,
                            0.0,
                            out.as_mut_ptr(),
                            n as isize,
                            1,
                        )
                    }
                })
            },
        );
        group.finish();
    }
}

/// `(k, n)` of ResNet-50's convolutions as GEMMs (im2col depth, output channels).
const RESNET_KN: &[(usize, usize)] = &[
    (576, 64),
    (256, 64),
    (64, 256),
    (1152, 128),
    (2304, 256),
    (4608, 512),
    (1024, 256),
];

/// Packed-B GEMM against the `gemm` crate, single-threaded, on the row counts a convolution
/// tile or a thread's share of one has. `LATHE_PACKED_ISAS=1` adds every other micro-kernel
/// this CPU runs (AVX2 on an AVX-512 machine).
fn bench_packed(c: &mut Criterion) {
    let mut shapes: Vec<(usize, usize, usize)> = Vec::new();
    for m in [128, 256, 512] {
        shapes.extend(RESNET_KN.iter().map(|&(k, n)| (m, n, k)));
    }
    shapes.push((512, 512, 512));
    let all_isas = std::env::var_os("LATHE_PACKED_ISAS").is_some();
    for (m, n, k) in shapes {
        let a = data(m * k, 1);
        let b = data(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        let mut group = c.benchmark_group(format!("packed/m{m}_k{k}_n{n}"));
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let bm = MatRef::row_major(&b, k, n);
        let mut isas = vec![Isa::detect()];
        if all_isas {
            isas.extend(
                Isa::ALL
                    .into_iter()
                    .filter(|&i| i != Isa::detect() && i != Isa::Scalar && i.supported()),
            );
        }
        for isa in isas {
            let packed = PackedB::with_isa(bm, isa);
            group.bench_function(
                BenchmarkId::new("packed", format!("{isa:?}").to_lowercase()),
                |bench| {
                    bench.iter(|| {
                        gemm_packed(
                            MatRef::row_major(black_box(&a), m, k),
                            &packed,
                            MatMut::row_major(&mut out, m, n),
                            false,
                        )
                    })
                },
            );
        }
        group.bench_function(BenchmarkId::new("gemm-crate", "t1"), |bench| {
            bench.iter(|| {
                sgemm(
                    MatRef::row_major(black_box(&a), m, k),
                    bm,
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

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_gemm
}

criterion_group! {
    name = packed;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_packed
}

fn main() {
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    benches();
    packed();
    Criterion::default().configure_from_args().final_summary();
}
