//! Quantised matrix products per format at SmolLM2-135M's MLP shape (`[1536, 576]`):
//! batch-1 decode (a matrix-vector product) and a 128-row prefill, with the portable
//! scalar kernel beside the SIMD one for the decode case.
//!
//! `cargo bench -p pudding-gguf --bench quantized_matmul`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pudding_gguf::matmul::Kernel;
use pudding_gguf::{GgmlType, QuantizedMatrix, TensorBytes};

const ROWS: usize = 1536;
const COLS: usize = 768; // a multiple of 256 for the K-quants (SmolLM2's 576 is not)

fn matrix(dtype: GgmlType) -> QuantizedMatrix {
    let blocks = ROWS * COLS / dtype.block_size();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut bytes: Vec<u8> = (0..blocks * dtype.bytes_per_block())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    // Finite scales: the f16 fields of every block set to 0.01.
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    let fields: &[usize] = match dtype {
        GgmlType::Q6_K => &[208],
        GgmlType::Q4_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::F16 => &[],
        _ => &[0],
    };
    if dtype == GgmlType::F16 {
        for v in bytes.chunks_exact_mut(2) {
            v.copy_from_slice(&scale);
        }
    }
    for block in bytes.chunks_exact_mut(dtype.bytes_per_block()) {
        for &at in fields {
            block[at..at + 2].copy_from_slice(&scale);
        }
    }
    QuantizedMatrix::new("bench", dtype, ROWS, COLS, TensorBytes::from_vec(bytes)).unwrap()
}

fn bench(c: &mut Criterion) {
    let formats = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::F16,
    ];
    let x: Vec<f32> = (0..128 * COLS)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut group = c.benchmark_group("matvec");
    group.throughput(Throughput::Elements((ROWS * COLS) as u64));
    for dtype in formats {
        let m = matrix(dtype);
        for kernel in Kernel::available() {
            let id = BenchmarkId::new(format!("{kernel:?}"), dtype.name());
            group.bench_with_input(id, &m, |b, m| {
                b.iter(|| m.matmul_with(&x[..COLS], kernel).unwrap())
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("matmul_128_rows");
    group.throughput(Throughput::Elements((128 * ROWS * COLS) as u64));
    group.sample_size(10);
    // The scalar kernel is left out where a SIMD one runs (it would take minutes here).
    let kernels: Vec<Kernel> = match Kernel::available().as_slice() {
        [only] => vec![*only],
        all => all
            .iter()
            .copied()
            .filter(|&k| k != Kernel::Scalar)
            .collect(),
    };
    for dtype in formats {
        let m = matrix(dtype);
        for &kernel in &kernels {
            let id = BenchmarkId::new(format!("{kernel:?}"), dtype.name());
            group.bench_with_input(id, &m, |b, m| b.iter(|| m.matmul_with(&x, kernel).unwrap()));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
