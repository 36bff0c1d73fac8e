//! Weight matrices that are either dense backend tensors or GGUF blocks kept as stored.
//!
//! A quantised weight is multiplied by `pudding-gguf`'s CPU kernels (SIMD, every core,
//! activations quantised per block of 32 as llama.cpp does): the activations go to the host,
//! the product comes back as a backend tensor. On the CPU backend that round trip is a copy
//! of the (small) activations; on a GPU backend it is a transfer, so GPU users load the
//! weights dequantised ([`WeightMode::Dequantized`]).

use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use pudding_gguf::QuantizedMatrix;

/// How a checkpoint's block-quantised GGUF matrices are held once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightMode {
    /// Dequantised to the backend's float type at load (`f32` unless cast): exact scoring
    /// with the `f32` activations the reference fixtures use, at ~7x the file's memory and
    /// the backend's own matrix products.
    #[default]
    Dequantized,
    /// Kept in their GGUF block formats (memory-mapped, no `f32` copy) and multiplied by
    /// the quantised CPU kernels, activations quantised to 8 bits per block of 32 (what
    /// llama.cpp computes). Float tensors (F16/BF16) also stay as stored; F32 tensors and
    /// safetensors checkpoints load dense as before.
    Quantized,
}

impl WeightMode {
    /// The name used on the command line (`dequantized` / `quantized`).
    pub fn name(self) -> &'static str {
        match self {
            WeightMode::Dequantized => "dequantized",
            WeightMode::Quantized => "quantized",
        }
    }
}

/// A projection's weight.
#[derive(Clone, Debug)]
pub enum LinearWeight<B: Backend> {
    /// `[in, out]` on the backend.
    Dense(Tensor<B, 2>),
    /// `[out, in]` in its stored block format (host memory or the file's memory map).
    Quantized(QuantizedMatrix),
}

impl<B: Backend> LinearWeight<B> {
    /// `x` `[n, in]` -> `x W` `[n, out]`, in `x`'s float type.
    pub fn matmul(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            LinearWeight::Dense(w) => x.matmul(w.clone()),
            LinearWeight::Quantized(m) => quantized_matmul(x, m),
        }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        match self {
            LinearWeight::Dense(w) => w.dims()[0],
            LinearWeight::Quantized(m) => m.cols(),
        }
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        match self {
            LinearWeight::Dense(w) => w.dims()[1],
            LinearWeight::Quantized(m) => m.rows(),
        }
    }

    /// Number of parameters (`in * out`).
    pub fn param_count(&self) -> usize {
        self.in_features() * self.out_features()
    }

    /// Bytes the weight takes in memory (the stored size when quantised).
    pub fn memory_bytes(&self) -> usize {
        match self {
            LinearWeight::Dense(w) => w.shape().num_elements() * w.dtype().size(),
            LinearWeight::Quantized(m) => m.stored_bytes(),
        }
    }

    /// The dense `[in, out]` tensor, if the weight is dense.
    pub fn as_dense(&self) -> Option<&Tensor<B, 2>> {
        match self {
            LinearWeight::Dense(w) => Some(w),
            LinearWeight::Quantized(_) => None,
        }
    }

    /// The weight as a dense `[in, out]` tensor on `device` (a quantised weight is
    /// dequantised: gradients and other backends need it dense).
    pub fn to_dense(&self, device: &B::Device) -> Tensor<B, 2> {
        match self {
            LinearWeight::Dense(w) => w.clone(),
            LinearWeight::Quantized(m) => dequantized(m, device).transpose(),
        }
    }
}

/// Runs `f` on one of rayon's worker threads and returns its result. The quantised
/// products split their rows over rayon's pool; called from a thread outside the pool, each
/// of them would hand its work over and sleep until it is done (two context switches per
/// product, about a third of a decode step on one core). Inside a worker they split and
/// join without blocking, so a whole forward pass is moved there once.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// `m` dequantised to a dense `[rows, cols]` tensor on `device`.
pub fn dequantized<B: Backend>(m: &QuantizedMatrix, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(m.dequantize(), [m.rows(), m.cols()]),
        device,
    )
}

/// `x` `[n, cols]` times the transpose of `m` (`[rows, cols]`) -> `[n, rows]`, in `x`'s float
/// type, on `x`'s device, through the quantised CPU kernels.
pub fn quantized_matmul<B: Backend>(x: Tensor<B, 2>, m: &QuantizedMatrix) -> Tensor<B, 2> {
    quantized_matmul_group(x, &[m])
        .pop()
        .expect("one product per matrix")
}

/// `x` `[n, cols]` times every matrix of `mats` (transposed), sharing one quantisation of
/// the activations and one dispatch over the threads: `[n, rows_i]` each.
pub fn quantized_matmul_group<B: Backend>(
    x: Tensor<B, 2>,
    mats: &[&QuantizedMatrix],
) -> Vec<Tensor<B, 2>> {
    let [n, cols] = x.dims();
    if let Some(m) = mats.iter().find(|m| m.cols() != cols) {
        panic!(
            "input width {cols} does not match `{}` ({} columns); the model checks shapes \
             at load",
            m.name(),
            m.cols()
        );
    }
    let dtype = x.dtype();
    let device = x.device();
    let values: Vec<f32> = x
        .cast(FloatDType::F32)
        .into_data()
        .into_vec::<f32>()
        .expect("an f32 tensor reads back as f32");
    let ys = pudding_gguf::matmul_group(mats, &values).expect("input widths checked above");
    mats.iter()
        .zip(ys)
        .map(|(m, y)| from_host(y, [n, m.rows()], dtype, &device))
        .collect()
}

/// Host `f32` values of shape `shape` as a tensor of float type `dtype` on `device`.
fn from_host<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    dtype: DType,
    device: &B::Device,
) -> Tensor<B, D> {
    let t = Tensor::<B, D>::from_data(TensorData::new(values, shape), device);
    match dtype {
        DType::F16 => t.cast(FloatDType::F16),
        DType::BF16 => t.cast(FloatDType::BF16),
        _ => t,
    }
}

/// `x` `[n, in]` times each weight: one product per weight, `[n, out_i]`. When every weight
/// is quantised they run as one group ([`quantized_matmul_group`]).
pub fn matmul_each<B: Backend>(x: Tensor<B, 2>, weights: &[&LinearWeight<B>]) -> Vec<Tensor<B, 2>> {
    let quantized: Option<Vec<&QuantizedMatrix>> = weights
        .iter()
        .map(|w| match w {
            LinearWeight::Quantized(m) => Some(m),
            LinearWeight::Dense(_) => None,
        })
        .collect();
    match quantized {
        Some(mats) if mats.len() > 1 => quantized_matmul_group(x, &mats),
        _ => weights.iter().map(|w| w.matmul(x.clone())).collect(),
    }
}

/// The token embedding table, `[vocab, d]`, dense or as stored.
#[derive(Clone, Debug)]
pub enum Embedding<B: Backend> {
    /// `[vocab, d]` on the backend.
    Dense(Tensor<B, 2>),
    /// `[vocab, d]` rows in their stored block format.
    Quantized(QuantizedMatrix),
}

impl<B: Backend> Embedding<B> {
    /// Look-up: `tokens` `[b, s]` -> `[b, s, d]` (ids were checked against the vocabulary).
    pub fn lookup(&self, tokens: Tensor<B, 2, Int>, dtype: DType) -> Tensor<B, 3> {
        let [b, s] = tokens.dims();
        match self {
            Embedding::Dense(e) => {
                let d = e.dims()[1];
                e.clone()
                    .select(0, tokens.reshape([b * s]))
                    .reshape([b, s, d])
            }
            Embedding::Quantized(m) => {
                let device = tokens.device();
                let ids: Vec<u32> = tokens
                    .into_data()
                    .convert::<i64>()
                    .into_vec::<i64>()
                    .expect("int ids read back")
                    .into_iter()
                    .map(|id| u32::try_from(id).unwrap_or(u32::MAX))
                    .collect();
                let rows = m
                    .dequantize_rows(&ids)
                    .expect("token ids are checked against the vocabulary before a forward");
                from_host(rows, [b, s, m.cols()], dtype, &device)
            }
        }
    }

    /// Tied output head: `x` `[n, d]` -> logits `[n, vocab]`.
    pub fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Embedding::Dense(e) => x.matmul(e.clone().transpose()),
            Embedding::Quantized(m) => quantized_matmul(x, m),
        }
    }

    /// Number of parameters (`vocab * d`).
    pub fn param_count(&self) -> usize {
        match self {
            Embedding::Dense(e) => e.shape().num_elements(),
            Embedding::Quantized(m) => m.rows() * m.cols(),
        }
    }

    /// Bytes the table takes in memory (the stored size when quantised).
    pub fn memory_bytes(&self) -> usize {
        match self {
            Embedding::Dense(e) => e.shape().num_elements() * e.dtype().size(),
            Embedding::Quantized(m) => m.stored_bytes(),
        }
    }

    /// The float type of the dense table (`F32` for a quantised one, whose rows are
    /// dequantised to `f32`).
    pub fn dtype(&self) -> DType {
        match self {
            Embedding::Dense(e) => e.dtype(),
            Embedding::Quantized(_) => DType::F32,
        }
    }

    /// The dense `[vocab, d]` table, if it is dense.
    pub fn as_dense(&self) -> Option<&Tensor<B, 2>> {
        match self {
            Embedding::Dense(e) => Some(e),
            Embedding::Quantized(_) => None,
        }
    }

    /// The table as a dense `[vocab, d]` tensor on `device`.
    pub fn to_dense(&self, device: &B::Device) -> Tensor<B, 2> {
        match self {
            Embedding::Dense(e) => e.clone(),
            Embedding::Quantized(m) => dequantized(m, device),
        }
    }
}
