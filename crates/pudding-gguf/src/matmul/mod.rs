//! Matrix products on weights kept in their ggml block formats.
//!
//! A [`QuantizedMatrix`] is a `[rows, cols]` weight (`rows` output features, `cols` input
//! features, ggml's `[ne1, ne0]`) whose bytes stay as stored in the GGUF file (memory-mapped,
//! no `f32` copy). [`QuantizedMatrix::matmul`] computes `y = x W^T` for `x` `[n, cols]`,
//! giving `[n, rows]`:
//!
//! - **Integer formats** (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K): the activations
//!   are quantised to 8 bits per block of 32 (one `f32` scale `d_a` and the block sum
//!   `d_a * sum(q_a)` per block, llama.cpp's `Q8_1`), and every weight sub-block of 32 is
//!   multiplied as integers: `w = s * u + m` gives `dot(w, a) = s * d_a * sum(u * q_a) +
//!   m * d_a * sum(q_a)`. This is what llama.cpp does on the CPU; its accuracy against the
//!   `f32` path is measured in `docs/correctness.md`.
//! - **Float formats** (F32, F16, BF16): the stored values times the `f32` activations.
//!
//! Rows are split over rayon's pool (so batch-1 decode uses every core); the inner products
//! use AVX2 + FMA when the CPU has them (chosen at run time), else portable scalar code that
//! computes the same integer sums.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::{GgmlType, TensorBytes};
use rayon::prelude::*;
use std::fmt;
use std::sync::Arc;

/// Elements per activation block (and per weight sub-block).
pub const ACT_BLOCK: usize = 32;

/// Products with fewer multiply-accumulates than this run on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// Why a [`QuantizedMatrix`] could not be built or multiplied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizedMatrixError {
    /// The tensor's type has no matrix kernel.
    #[error(
        "tensor `{tensor}` is stored as {dtype}, which has no quantised matrix kernel \
         (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); load \
         it dequantised instead"
    )]
    UnsupportedType {
        /// Tensor name.
        tensor: String,
        /// Its stored type.
        dtype: GgmlType,
    },
    /// A row is not a whole number of the format's blocks.
    #[error(
        "tensor `{tensor}`: a row of {cols} values is not a whole number of {dtype} blocks of \
         {block}"
    )]
    MisalignedRow {
        /// Tensor name.
        tensor: String,
        /// Its stored type.
        dtype: GgmlType,
        /// Values per row.
        cols: usize,
        /// Values per block of the format.
        block: usize,
    },
    /// The stored bytes disagree with the type and shape.
    #[error(
        "tensor `{tensor}`: {rows} x {cols} {dtype} values take {expected} bytes, found {actual}"
    )]
    ByteSize {
        /// Tensor name.
        tensor: String,
        /// Its stored type.
        dtype: GgmlType,
        /// Rows (output features).
        rows: usize,
        /// Columns (input features).
        cols: usize,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes found.
        actual: usize,
    },
    /// A row order that is not a permutation of the rows.
    #[error("tensor `{tensor}`: the row order is not a permutation of its {rows} rows")]
    BadRowOrder {
        /// Tensor name.
        tensor: String,
        /// Rows of the matrix.
        rows: usize,
    },
    /// The input's length is not `n * cols`.
    #[error("tensor `{tensor}`: an input of {len} values is not a whole number of rows of {cols}")]
    InputShape {
        /// Tensor name.
        tensor: String,
        /// Values given.
        len: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// A row index past the matrix (e.g. a token id past the embedding table).
    #[error("tensor `{tensor}`: row {row} is past its {rows} rows")]
    RowOutOfRange {
        /// Tensor name.
        tensor: String,
        /// The index asked for.
        row: usize,
        /// Rows of the matrix.
        rows: usize,
    },
}

/// A `[rows, cols]` weight matrix held in its ggml storage format (see the module docs).
///
/// Cloning is cheap: the bytes are shared.
#[derive(Clone)]
pub struct QuantizedMatrix {
    name: Arc<str>,
    dtype: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    bytes: TensorBytes,
    /// Output row `r` is stored row `row_order[r]` (llama.cpp permutes the query and key
    /// rows of Llama checkpoints; the model wants them in the Hugging Face order).
    row_order: Option<Arc<[u32]>>,
}

impl fmt::Debug for QuantizedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantizedMatrix")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("reordered", &self.row_order.is_some())
            .finish()
    }
}

/// Whether `dtype` has a matrix kernel here.
pub fn has_kernel(dtype: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        dtype,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K
    )
}

impl QuantizedMatrix {
    /// Wraps `bytes`, the ggml storage of a `[rows, cols]` matrix of type `dtype` (rows of
    /// `cols` values, each row a whole number of blocks). `name` names the tensor in errors.
    pub fn new(
        name: &str,
        dtype: GgmlType,
        rows: usize,
        cols: usize,
        bytes: TensorBytes,
    ) -> Result<Self, QuantizedMatrixError> {
        if !has_kernel(dtype) {
            return Err(QuantizedMatrixError::UnsupportedType {
                tensor: name.to_string(),
                dtype,
            });
        }
        let block = dtype.block_size();
        if cols == 0 || !cols.is_multiple_of(block) {
            return Err(QuantizedMatrixError::MisalignedRow {
                tensor: name.to_string(),
                dtype,
                cols,
                block,
            });
        }
        let row_bytes = cols / block * dtype.bytes_per_block();
        let expected = row_bytes.checked_mul(rows);
        if expected != Some(bytes.bytes().len()) {
            return Err(QuantizedMatrixError::ByteSize {
                tensor: name.to_string(),
                dtype,
                rows,
                cols,
                expected: expected.unwrap_or(usize::MAX),
                actual: bytes.bytes().len(),
            });
        }
        Ok(Self {
            name: name.into(),
            dtype,
            rows,
            cols,
            row_bytes,
            bytes,
            row_order: None,
        })
    }

    /// Quantises a row-major `[rows, cols]` `f32` matrix to `dtype` (tests, benchmarks and
    /// random models; the formats of [`crate::quantize()`]).
    pub fn quantize_f32(
        name: &str,
        dtype: GgmlType,
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<Self, crate::GgufError> {
        let bytes = crate::quantize(dtype, values)?;
        Self::new(name, dtype, rows, cols, TensorBytes::from_vec(bytes))
            .map_err(|e| crate::GgufError::InvalidInput(e.to_string()))
    }

    /// The same matrix with its rows read in `order` (output row `r` is stored row
    /// `order[r]`); `order` must be a permutation of `0..rows`.
    pub fn with_row_order(mut self, order: Vec<u32>) -> Result<Self, QuantizedMatrixError> {
        let mut seen = vec![false; self.rows];
        let ok = order.len() == self.rows
            && order.iter().all(|&r| {
                let r = r as usize;
                r < self.rows && !std::mem::replace(&mut seen[r], true)
            });
        if !ok {
            return Err(QuantizedMatrixError::BadRowOrder {
                tensor: self.name.to_string(),
                rows: self.rows,
            });
        }
        self.row_order = Some(order.into());
        Ok(self)
    }

    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The storage format.
    pub fn dtype(&self) -> GgmlType {
        self.dtype
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (the stored size, shared with the memory map).
    pub fn stored_bytes(&self) -> usize {
        self.bytes.bytes().len()
    }

    /// Whether the bytes are read straight from the file's memory map.
    pub fn is_mapped(&self) -> bool {
        self.bytes.is_mapped()
    }

    /// The stored bytes of output row `r` (`r < rows`).
    fn row(&self, r: usize) -> &[u8] {
        let stored = match &self.row_order {
            Some(order) => order[r] as usize,
            None => r,
        };
        &self.bytes.bytes()[stored * self.row_bytes..(stored + 1) * self.row_bytes]
    }

    /// Rows `ids` dequantised to `f32`: `[ids.len(), cols]` row-major (an embedding
    /// look-up).
    pub fn dequantize_rows(&self, ids: &[u32]) -> Result<Vec<f32>, QuantizedMatrixError> {
        let mut out = vec![0.0f32; ids.len() * self.cols];
        for (&id, o) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            let r = id as usize;
            if r >= self.rows {
                return Err(QuantizedMatrixError::RowOutOfRange {
                    tensor: self.name.to_string(),
                    row: r,
                    rows: self.rows,
                });
            }
            crate::dequantize_into(self.dtype, self.row(r), o)
                .expect("row length checked at construction");
        }
        Ok(out)
    }

    /// The whole matrix dequantised to `f32`: `[rows, cols]` row-major, rows in output
    /// order.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(r, o)| {
                crate::dequantize_into(self.dtype, self.row(r), o)
                    .expect("row length checked at construction")
            });
        out
    }

    /// `y = x W^T`: `x` is `[n, cols]` row-major, the result `[n, rows]` row-major.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, QuantizedMatrixError> {
        self.matmul_with(x, Kernel::detect())
    }

    /// [`Self::matmul`] with a chosen inner-product implementation (benchmarks and tests
    /// compare them).
    pub fn matmul_with(&self, x: &[f32], kernel: Kernel) -> Result<Vec<f32>, QuantizedMatrixError> {
        let mut ys = matmul_group_with(&[self], x, kernel)?;
        Ok(ys.pop().expect("one product per matrix"))
    }
    /// Output rows `rows` for all `n` inputs into `out` (`[rows.len(), n]`); the input was
    /// prepared for this matrix's width and format.
    fn rows_kernel(
        &self,
        kernel: Kernel,
        rows: std::ops::Range<usize>,
        input: &PreparedInput<'_>,
        out: &mut [f32],
    ) {
        let n = input.n();
        // `Kernel` is a public enum: never run the AVX2 code on a CPU without it, whatever
        // the caller asked for (the feature checks are cached).
        let kernel = if kernel.runs_here() {
            kernel
        } else {
            Kernel::detect()
        };
        let acts = match &input.quantized {
            Some(a) if self.dtype.block_size() > 1 => Activations::Quantized(a),
            _ => Activations::Float(input.x),
        };
        match (kernel, acts) {
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, Activations::Quantized(a)) => {
                // SAFETY: `Kernel::Avx2` is only kept (above) when the CPU has AVX2 and FMA.
                unsafe { x86::int_rows(self, rows, a, out) }
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::AvxVnni, Activations::Quantized(a)) => {
                // SAFETY: `Kernel::AvxVnni` is only kept when the CPU has AVX-VNNI too.
                unsafe { x86::int_rows_vnni(self, rows, a, out) }
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2 | Kernel::AvxVnni, Activations::Float(x)) => {
                // SAFETY: as above.
                unsafe { x86::float_rows(self, rows, x, n, out) }
            }
            (_, Activations::Quantized(a)) => scalar::int_rows(self, rows, a, out),
            (_, Activations::Float(x)) => scalar::float_rows(self, rows, x, n, out),
        }
    }
}

/// `x W_i^T` for every matrix of `mats` (all with the same `cols`; `x` is `[n, cols]`):
/// one `[n, rows_i]` product each. The activations are quantised once and every matrix's
/// rows are shared out over the threads in one go, which is what fusing Q/K/V or gate/up
/// buys on the CPU.
pub fn matmul_group(
    mats: &[&QuantizedMatrix],
    x: &[f32],
) -> Result<Vec<Vec<f32>>, QuantizedMatrixError> {
    matmul_group_with(mats, x, Kernel::detect())
}

/// [`matmul_group`] with a chosen inner-product implementation.
pub fn matmul_group_with(
    mats: &[&QuantizedMatrix],
    x: &[f32],
    kernel: Kernel,
) -> Result<Vec<Vec<f32>>, QuantizedMatrixError> {
    if mats.is_empty() {
        return Ok(Vec::new());
    }
    let input = PreparedInput::new(x, mats)?;
    let n = input.n();
    if n == 0 {
        return Ok(vec![Vec::new(); mats.len()]);
    }
    // Each task computes a run of one matrix's output rows for all `n` inputs, `[rows, n]`.
    let mut by_row: Vec<Vec<f32>> = mats.iter().map(|m| vec![0.0f32; m.rows * n]).collect();
    let total_rows: usize = mats.iter().map(|m| m.rows).sum();
    let tasks = rayon::current_num_threads().max(1) * 4;
    let rows_per_task = total_rows.div_ceil(tasks).max(8);
    let mut work: Vec<(&QuantizedMatrix, usize, &mut [f32])> = Vec::new();
    for (m, out) in mats.iter().zip(by_row.iter_mut()) {
        for (i, chunk) in out.chunks_mut(rows_per_task * n).enumerate() {
            work.push((m, i * rows_per_task, chunk));
        }
    }
    let run = |(m, first, out): (&QuantizedMatrix, usize, &mut [f32])| {
        m.rows_kernel(kernel, first..first + out.len() / n, &input, out);
    };
    // Handing work to the pool costs microseconds (and, from outside it, two context
    // switches): one thread, or a product too small to share, runs here.
    let parallel =
        rayon::current_num_threads() > 1 && total_rows * input.cols * n >= PARALLEL_MIN_MACS;
    if parallel {
        work.into_par_iter().for_each(run);
    } else {
        work.into_iter().for_each(run);
    }
    if n == 1 {
        return Ok(by_row);
    }
    Ok(mats
        .iter()
        .zip(by_row)
        .map(|(m, by_row)| {
            let mut y = vec![0.0f32; n * m.rows];
            transpose_into(&by_row, n, m.rows, &mut y, parallel);
            y
        })
        .collect())
}

/// `y` (`[n, rows]`) = the transpose of `by_row` (`[rows, n]`), in square tiles so that both
/// sides stay in cache, and split over the threads by bands of `y`'s rows when `parallel`.
/// (Element by element, with a store to a new cache line each time, this copy was a
/// twentieth of a 512-token prefill, on one thread.)
fn transpose_into(by_row: &[f32], n: usize, rows: usize, y: &mut [f32], parallel: bool) {
    const TILE: usize = 64;
    let band = |(b, out): (usize, &mut [f32])| {
        let t0 = b * TILE;
        let tn = out.len() / rows;
        for r0 in (0..rows).step_by(TILE) {
            let rn = TILE.min(rows - r0);
            for t in 0..tn {
                let dst = &mut out[t * rows + r0..t * rows + r0 + rn];
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = by_row[(r0 + r) * n + t0 + t];
                }
            }
        }
    };
    if parallel {
        y.par_chunks_mut(TILE * rows).enumerate().for_each(band);
    } else {
        y.chunks_mut(TILE * rows).enumerate().for_each(band);
    }
}

/// The input of one or more products, prepared once: `x` (`[n, cols]` row-major) and, when
/// one of the matrices is block-quantised, its 8-bit quantisation per block of 32. A caller
/// that shares out the output rows itself (e.g. a team of threads kept busy across
/// several products) computes any run of rows with [`QuantizedMatrix::rows_into`].
pub struct PreparedInput<'a> {
    x: &'a [f32],
    cols: usize,
    quantized: Option<QuantizedActivations>,
}

impl<'a> PreparedInput<'a> {
    /// Prepares `x` for products with each of `mats` (which must all have `x`'s width);
    /// an error unless `x` is a whole number of rows of that width.
    pub fn new(x: &'a [f32], mats: &[&QuantizedMatrix]) -> Result<Self, QuantizedMatrixError> {
        let cols = mats.first().map_or(x.len().max(1), |m| m.cols);
        for m in mats {
            if m.cols != cols || !x.len().is_multiple_of(cols) {
                return Err(QuantizedMatrixError::InputShape {
                    tensor: m.name.to_string(),
                    len: x.len(),
                    cols: m.cols,
                });
            }
        }
        let quantized = mats
            .iter()
            .any(|m| m.dtype.block_size() > 1)
            .then(|| QuantizedActivations::new(x, cols));
        Ok(Self { x, cols, quantized })
    }

    /// Input rows (`n`).
    pub fn n(&self) -> usize {
        self.x.len() / self.cols
    }
}

impl QuantizedMatrix {
    /// Output rows `rows` of `x W^T` for every input row of `input` (prepared for this
    /// matrix), into `out`, `[rows.len(), n]` (each output row's `n` values together).
    pub fn rows_into(
        &self,
        input: &PreparedInput<'_>,
        rows: std::ops::Range<usize>,
        kernel: Kernel,
        out: &mut [f32],
    ) -> Result<(), QuantizedMatrixError> {
        let n = input.n();
        if input.cols != self.cols || (self.dtype.block_size() > 1 && input.quantized.is_none()) {
            return Err(QuantizedMatrixError::InputShape {
                tensor: self.name.to_string(),
                len: input.x.len(),
                cols: self.cols,
            });
        }
        if rows.start > rows.end || rows.end > self.rows {
            return Err(QuantizedMatrixError::RowOutOfRange {
                tensor: self.name.to_string(),
                row: rows.end.max(rows.start),
                rows: self.rows,
            });
        }
        if out.len() != rows.len() * n {
            return Err(QuantizedMatrixError::InputShape {
                tensor: self.name.to_string(),
                len: out.len(),
                cols: rows.len() * n,
            });
        }
        if n > 0 && !rows.is_empty() {
            self.rows_kernel(kernel, rows, input, out);
        }
        Ok(())
    }
}

/// The inner-product implementation, in the order of the CPU features each needs (each
/// needs the features of the one before it, and more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Portable scalar code.
    Scalar,
    /// AVX2 + FMA + F16C (x86-64).
    Avx2,
    /// [`Kernel::Avx2`] with AVX-VNNI byte dot products in the integer kernel (x86-64: Intel
    /// from Alder Lake and Sapphire Rapids, AMD from Zen 4).
    AvxVnni,
}

impl Kernel {
    /// The fastest implementation this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                if std::arch::is_x86_feature_detected!("avxvnni") {
                    return Kernel::AvxVnni;
                }
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// Whether this CPU runs `self` (each kernel's features include the one before's).
    pub fn runs_here(self) -> bool {
        self as u8 <= Kernel::detect() as u8
    }

    /// Every implementation this CPU runs (tests and benchmarks compare them).
    pub fn available() -> Vec<Kernel> {
        [Kernel::Scalar, Kernel::Avx2, Kernel::AvxVnni]
            .into_iter()
            .filter(|k| k.runs_here())
            .collect()
    }
}

enum Activations<'a> {
    Quantized(&'a QuantizedActivations),
    Float(&'a [f32]),
}

/// Activations quantised to 8 bits per block of 32 (llama.cpp's `Q8_1`): `[n, cols]` values
/// `q` in -127..=127, and per block the scale `d` and `d * sum(q)`.
#[derive(Debug, Clone)]
pub struct QuantizedActivations {
    /// `[n, cols]` quantised values.
    pub q: Vec<i8>,
    /// `[n, cols / 32]` scales.
    pub d: Vec<f32>,
    /// `[n, cols / 32]` block sums `d * sum(q)`.
    pub s: Vec<f32>,
    /// Values per row.
    pub cols: usize,
}

/// Activations (values) from which [`QuantizedActivations::new`] works in parallel.
const PARALLEL_QUANTIZE_MIN: usize = 1 << 15;

/// Quantises one block of 32 values into `q`; returns the scale `d` and `d * sum(q)`.
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, f32) {
    // Adding and subtracting 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to the
    // nearest integer, ties to even, in two additions the compiler vectorises (`round()`
    // is a library call on baseline x86-64, a fifth of a prefill's quantisation).
    const ROUND: f32 = 12_582_912.0;
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let mut sum = 0i32;
    for (qv, &xv) in q.iter_mut().zip(x) {
        let v = ((xv * inv).clamp(-127.0, 127.0) + ROUND) - ROUND;
        let v = v as i8;
        sum += i32::from(v);
        *qv = v;
    }
    (scale, scale * sum as f32)
}

/// Quantises whole blocks of `x` into `q`, with their scales `d` and sums `s` (one each
/// per block).
fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((xb, qb), db), sb) in x
        .chunks_exact(ACT_BLOCK)
        .zip(q.chunks_exact_mut(ACT_BLOCK))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        (*db, *sb) = quantize_block(xb, qb);
    }
}

impl QuantizedActivations {
    /// Quantises `x` (`[n, cols]`, `cols` a multiple of 32) per block of 32: `q =
    /// round(x / d)` with `d = max|x| / 127`, rounding half to even (as llama.cpp's SIMD
    /// quantisers do). Rows are quantised in parallel when there are many of them (a
    /// prefill).
    pub fn new(x: &[f32], cols: usize) -> Self {
        let blocks = x.len() / ACT_BLOCK;
        let mut q = vec![0i8; x.len()];
        let mut d = vec![0.0f32; blocks];
        let mut s = vec![0.0f32; blocks];
        let per_row = cols / ACT_BLOCK;
        if x.len() >= PARALLEL_QUANTIZE_MIN && per_row > 0 && rayon::current_num_threads() > 1 {
            x.par_chunks(cols)
                .zip(q.par_chunks_mut(cols))
                .zip(d.par_chunks_mut(per_row))
                .zip(s.par_chunks_mut(per_row))
                .for_each(|(((x, q), d), s)| quantize_blocks(x, q, d, s));
        } else {
            quantize_blocks(x, &mut q, &mut d, &mut s);
        }
        Self { q, d, s, cols }
    }

    /// Blocks per row.
    fn blocks_per_row(&self) -> usize {
        self.cols / ACT_BLOCK
    }

    /// Rows.
    fn n(&self) -> usize {
        self.q.len() / self.cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn uniform(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// Offsets of the f16 scale fields in one block of `dtype`.
    fn scale_fields(dtype: GgmlType) -> &'static [usize] {
        use GgmlType::*;
        match dtype {
            Q4_0 | Q5_0 | Q8_0 => &[0],
            Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
            Q6_K => &[208],
            _ => &[],
        }
    }

    /// Random stored bytes of a `[rows, cols]` matrix: random quants, sane scales.
    fn random_matrix(dtype: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let n = rows * cols;
        match dtype {
            GgmlType::F32 => (0..n).flat_map(|_| rng.uniform().to_le_bytes()).collect(),
            GgmlType::F16 => (0..n)
                .flat_map(|_| f16::from_f32(rng.uniform()).to_le_bytes())
                .collect(),
            GgmlType::BF16 => (0..n)
                .flat_map(|_| bf16::from_f32(rng.uniform()).to_le_bytes())
                .collect(),
            _ => {
                let bpb = dtype.bytes_per_block();
                let mut bytes: Vec<u8> = (0..n / dtype.block_size() * bpb)
                    .map(|_| rng.next() as u8)
                    .collect();
                for block in bytes.chunks_exact_mut(bpb) {
                    for &at in scale_fields(dtype) {
                        let v = f16::from_f32(0.001 + 0.02 * rng.uniform().abs());
                        block[at..at + 2].copy_from_slice(&v.to_le_bytes());
                    }
                }
                bytes
            }
        }
    }

    const ALL: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// Every format and kernel against the dequantised weights (ggml's reference
    /// dequantisation) times the activations, in f64: exactly the quantised activations
    /// for the integer formats (the integer sums must be exact), and the activations as
    /// given for the float formats.
    #[test]
    fn every_format_matches_the_dequantised_product() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (rows, cols) = (37, 512);
        for dtype in ALL {
            let bytes = random_matrix(dtype, rows, cols, &mut rng);
            let m =
                QuantizedMatrix::new("w", dtype, rows, cols, TensorBytes::from_vec(bytes)).unwrap();
            let w = m.dequantize();
            // 13 rows: one tile of eight, one of four, one alone.
            for n in [1, 3, 6, 13] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.uniform()).collect();
                let xq: Vec<f32> = if dtype.block_size() > 1 {
                    let a = QuantizedActivations::new(&x, cols);
                    a.q.iter()
                        .enumerate()
                        .map(|(i, &q)| a.d[i / ACT_BLOCK] * f32::from(q))
                        .collect()
                } else {
                    x.clone()
                };
                for kernel in Kernel::available() {
                    let y = m.matmul_with(&x, kernel).unwrap();
                    assert_eq!(y.len(), n * rows);
                    for t in 0..n {
                        for r in 0..rows {
                            let exact: f64 = (0..cols)
                                .map(|c| f64::from(w[r * cols + c]) * f64::from(xq[t * cols + c]))
                                .sum();
                            let scale: f64 = (0..cols)
                                .map(|c| {
                                    (f64::from(w[r * cols + c]) * f64::from(xq[t * cols + c])).abs()
                                })
                                .sum();
                            let got = f64::from(y[t * rows + r]);
                            assert!(
                                (got - exact).abs() <= 1e-5 * scale + 1e-6,
                                "{dtype} {kernel:?} n={n} row {r} input {t}: {got} vs {exact}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The tiled transpose moves every value, for shapes that are not multiples of its
    /// tile, on one thread and split over several.
    #[test]
    fn tiled_transpose_moves_every_value() {
        for (rows, n) in [(70, 130), (1, 200), (129, 2), (64, 64)] {
            let by_row: Vec<f32> = (0..rows * n).map(|i| i as f32).collect();
            for parallel in [false, true] {
                let mut y = vec![f32::NAN; rows * n];
                transpose_into(&by_row, n, rows, &mut y, parallel);
                for t in 0..n {
                    for r in 0..rows {
                        assert_eq!(y[t * rows + r], by_row[r * n + t], "{rows}x{n}");
                    }
                }
            }
        }
    }

    /// Quantising the activations costs little against the f32 product.
    #[test]
    fn activation_quantisation_error_is_small() {
        let mut rng = Rng(7);
        let (rows, cols) = (64, 1024);
        let bytes = random_matrix(GgmlType::Q4_K, rows, cols, &mut rng);
        let m = QuantizedMatrix::new(
            "w",
            GgmlType::Q4_K,
            rows,
            cols,
            TensorBytes::from_vec(bytes),
        )
        .unwrap();
        let w = m.dequantize();
        let x: Vec<f32> = (0..cols).map(|_| rng.uniform()).collect();
        let y = m.matmul(&x).unwrap();
        let (mut err, mut norm) = (0.0f64, 0.0f64);
        for r in 0..rows {
            let exact: f64 = (0..cols)
                .map(|c| f64::from(w[r * cols + c]) * f64::from(x[c]))
                .sum();
            err += (f64::from(y[r]) - exact).powi(2);
            norm += exact.powi(2);
        }
        assert!(
            (err / norm).sqrt() < 0.01,
            "relative error {}",
            (err / norm).sqrt()
        );
    }

    /// A row's product does not depend on the rows beside it (cached decode, one row at a
    /// time, must equal the uncached forward over the whole sequence).
    #[test]
    fn each_input_row_gives_the_same_output_alone_or_in_a_batch() {
        let mut rng = Rng(11);
        let (rows, cols) = (45, 256);
        for dtype in ALL {
            let bytes = random_matrix(dtype, rows, cols, &mut rng);
            let m =
                QuantizedMatrix::new("w", dtype, rows, cols, TensorBytes::from_vec(bytes)).unwrap();
            let n = 7;
            let x: Vec<f32> = (0..n * cols).map(|_| rng.uniform()).collect();
            let all = m.matmul(&x).unwrap();
            for t in 0..n {
                let one = m.matmul(&x[t * cols..(t + 1) * cols]).unwrap();
                assert_eq!(one, all[t * rows..(t + 1) * rows], "{dtype} row {t}");
            }
        }
    }

    /// A group of matrices gives what each gives alone, mixed formats included.
    #[test]
    fn a_group_equals_its_matrices_one_by_one() {
        let mut rng = Rng(5);
        let cols = 256;
        let mats: Vec<QuantizedMatrix> = [
            (GgmlType::Q4_K, 40),
            (GgmlType::F16, 9),
            (GgmlType::Q8_0, 70),
        ]
        .into_iter()
        .map(|(dtype, rows)| {
            let bytes = random_matrix(dtype, rows, cols, &mut rng);
            QuantizedMatrix::new("w", dtype, rows, cols, TensorBytes::from_vec(bytes)).unwrap()
        })
        .collect();
        let refs: Vec<&QuantizedMatrix> = mats.iter().collect();
        for n in [1, 5] {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.uniform()).collect();
            let group = matmul_group(&refs, &x).unwrap();
            for (m, y) in mats.iter().zip(&group) {
                assert_eq!(*y, m.matmul(&x).unwrap());
            }
        }
        let narrow = QuantizedMatrix::quantize_f32("n", GgmlType::Q8_0, 1, 32, &[0.5; 32]).unwrap();
        assert!(matches!(
            matmul_group(&[&mats[0], &narrow], &vec![0.0; cols]),
            Err(QuantizedMatrixError::InputShape { .. })
        ));
    }

    #[test]
    fn row_order_reads_rows_in_that_order() {
        let mut rng = Rng(3);
        let (rows, cols) = (8, 64);
        let bytes = random_matrix(GgmlType::Q8_0, rows, cols, &mut rng);
        let plain = QuantizedMatrix::new(
            "w",
            GgmlType::Q8_0,
            rows,
            cols,
            TensorBytes::from_vec(bytes),
        )
        .unwrap();
        let order: Vec<u32> = vec![3, 1, 7, 0, 2, 6, 5, 4];
        let moved = plain.clone().with_row_order(order.clone()).unwrap();
        let x: Vec<f32> = (0..cols).map(|_| rng.uniform()).collect();
        let (a, b) = (plain.matmul(&x).unwrap(), moved.matmul(&x).unwrap());
        for (r, &from) in order.iter().enumerate() {
            assert_eq!(b[r], a[from as usize]);
        }
        assert_eq!(
            moved.dequantize_rows(&[2]).unwrap(),
            plain.dequantize_rows(&[7]).unwrap()
        );
        for bad in [vec![0u32; 8], vec![0, 1, 2], vec![0, 1, 2, 3, 4, 5, 6, 8]] {
            assert!(matches!(
                plain.clone().with_row_order(bad),
                Err(QuantizedMatrixError::BadRowOrder { .. })
            ));
        }
    }

    #[test]
    fn bad_shapes_and_types_are_typed_errors() {
        let bytes = |n| TensorBytes::from_vec(vec![0u8; n]);
        let e = QuantizedMatrix::new("a", GgmlType::Q4_0, 2, 64, bytes(71)).unwrap_err();
        assert!(matches!(
            e,
            QuantizedMatrixError::ByteSize {
                expected: 72,
                actual: 71,
                ..
            }
        ));
        assert!(e.to_string().contains("`a`"));
        let e = QuantizedMatrix::new("b", GgmlType::Q4_K, 1, 64, bytes(36)).unwrap_err();
        assert!(matches!(
            e,
            QuantizedMatrixError::MisalignedRow { block: 256, .. }
        ));
        let e = QuantizedMatrix::new("c", GgmlType::IQ2_XS, 1, 256, bytes(74)).unwrap_err();
        assert!(matches!(e, QuantizedMatrixError::UnsupportedType { .. }));
        let m = QuantizedMatrix::new("d", GgmlType::Q8_0, 2, 32, bytes(68)).unwrap();
        assert!(matches!(
            m.matmul(&[0.0; 33]),
            Err(QuantizedMatrixError::InputShape {
                len: 33,
                cols: 32,
                ..
            })
        ));
        assert!(matches!(
            m.dequantize_rows(&[2]),
            Err(QuantizedMatrixError::RowOutOfRange {
                row: 2,
                rows: 2,
                ..
            })
        ));
        assert!(m.matmul(&[]).unwrap().is_empty());
    }
}
