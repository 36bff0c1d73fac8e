//! Dequantisation of every ggml type from arbitrary block bytes, and the quantised matrix
//! products (every kernel this CPU runs, all tile sizes) checked against the dequantised
//! matrix times the input in plain `f32`: a differential target for the SIMD code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pudding_gguf::matmul::{has_kernel, Kernel};
use pudding_gguf::{dequantize_into, GgmlType, QuantizedMatrix, TensorBytes};

fuzz_target!(|data: &[u8]| {
    let [t, shape, n, rest @ ..] = data else {
        return;
    };
    let dtype = GgmlType::ALL[*t as usize % GgmlType::ALL.len()];
    let block = dtype.block_size();
    let cols = block * (1 + (*shape as usize & 3));
    let rows = 1 + (*shape as usize >> 2) % 8;
    let n = 1 + *n as usize % 10;
    let (x_bytes, w_bytes) = rest.split_at(rest.len().min(n * cols));
    let x: Vec<f32> = (0..n * cols)
        .map(|i| x_bytes.get(i).map_or(0.5, |&b| f32::from(b as i8) / 16.0))
        .collect();

    // Any type: dequantising arbitrary bytes must give a typed error or values, never a crash.
    let mut out = vec![0f32; w_bytes.len().min(1 << 16) * 4];
    let _ = dequantize_into(dtype, w_bytes, &mut out);
    if !has_kernel(dtype) {
        return;
    }
    let row_bytes = cols / block * dtype.bytes_per_block();
    if w_bytes.len() < rows * row_bytes {
        return;
    }
    let bytes = TensorBytes::from_vec(w_bytes[..rows * row_bytes].to_vec());
    let m = QuantizedMatrix::new("fuzz", dtype, rows, cols, bytes).expect("sizes match");
    let w = m.dequantize();
    if w.iter().any(|v| !v.is_finite() || v.abs() > 1e15) {
        return;
    }
    // The integer kernels quantise each block of 32 inputs to 8 bits: an error of at most
    // half a step (amax / 254) per input, times the weight it meets.
    let quantised = block > 1;
    for kernel in Kernel::available() {
        let y = m.matmul_with(&x, kernel).expect("shapes match");
        assert_eq!(y.len(), n * rows);
        for i in 0..n {
            let xi = &x[i * cols..(i + 1) * cols];
            for r in 0..rows {
                let wr = &w[r * cols..(r + 1) * cols];
                let exact: f64 = wr.iter().zip(xi).map(|(&a, &b)| a as f64 * b as f64).sum();
                let magnitude: f64 = wr
                    .iter()
                    .zip(xi)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                let step: f64 = if quantised {
                    xi.chunks(32)
                        .zip(wr.chunks(32))
                        .map(|(xb, wb)| {
                            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                            wb.iter().map(|v| v.abs() as f64).sum::<f64>() * amax / 254.0
                        })
                        .sum()
                } else {
                    0.0
                };
                // Plus the rounding of a half-precision activation scale, and f32 sums.
                let tolerance = 1.01 * step + 2e-3 * magnitude + 1e-5;
                let got = y[i * rows + r] as f64;
                assert!(
                    (got - exact).abs() <= tolerance,
                    "{dtype:?} {kernel:?} n={n} row {r} of {rows}x{cols}: {got} vs {exact} (tolerance {tolerance})"
                );
            }
        }
    }
});
