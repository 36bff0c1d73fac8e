//! Rotary position embeddings in the Hugging Face "rotate-half" layout.

use crate::config::{Llama3RopeScaling, LlamaConfig};
use burn::prelude::*;

/// Precomputed cos/sin tables for every position of the context.
///
/// Each table is `[max_seq_len, head_dim]`: column `j` and `j + head_dim/2` share the
/// frequency of pair `j`, matching rotate-half RoPE (`x * cos + rotate_half(x) * sin`).
#[derive(Clone, Debug)]
pub struct RotaryTables<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    head_dim: usize,
}

/// Inverse frequencies `theta^(-2j/head_dim)` for `j < head_dim/2`, with Llama-3 scaling
/// (from `config.json`'s parameters, or as GGUF per-frequency divisors).
pub fn inverse_frequencies(config: &LlamaConfig) -> Vec<f64> {
    let half = config.head_dim / 2;
    let theta = config.rope_theta as f64;
    (0..half)
        .map(|j| {
            let freq = theta.powf(-(2.0 * j as f64) / config.head_dim as f64);
            match (&config.rope_scaling, &config.rope_freq_factors) {
                (Some(s), _) => llama3_scale(freq, s),
                (None, Some(factors)) => freq / factors[j] as f64,
                (None, None) => freq,
            }
        })
        .collect()
}

/// Llama 3.1's frequency adjustment: long wavelengths are divided by `factor`, short ones
/// kept, and the band in between interpolated smoothly.
fn llama3_scale(freq: f64, s: &Llama3RopeScaling) -> f64 {
    let old_ctx = s.original_max_position_embeddings as f64;
    let low_wavelen = old_ctx / s.low_freq_factor as f64;
    let high_wavelen = old_ctx / s.high_freq_factor as f64;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor as f64
    } else {
        let smooth = (old_ctx / wavelen - s.low_freq_factor as f64)
            / (s.high_freq_factor as f64 - s.low_freq_factor as f64);
        (1.0 - smooth) * freq / s.factor as f64 + smooth * freq
    }
}

/// Inverse frequencies of the sliding-window blocks, `local_theta^(-2j/head_dim)` (never
/// scaled); `None` without a sliding window.
pub fn local_inverse_frequencies(config: &LlamaConfig) -> Option<Vec<f64>> {
    let window = config.features.sliding_window.as_ref()?;
    let theta = window.local_rope_theta as f64;
    let hd = config.head_dim;
    Some(
        (0..hd / 2)
            .map(|j| theta.powf(-(2.0 * j as f64) / hd as f64))
            .collect(),
    )
}

impl<B: Backend> RotaryTables<B> {
    /// Builds the tables for every position `0..config.max_seq_len` (angles in f64).
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        Self::from_inverse_frequencies(&inverse_frequencies(config), config, device)
    }

    /// The tables of the sliding-window blocks (their own RoPE base), if the model has any.
    pub fn local(config: &LlamaConfig, device: &B::Device) -> Option<Self> {
        local_inverse_frequencies(config)
            .map(|inv| Self::from_inverse_frequencies(&inv, config, device))
    }

    fn from_inverse_frequencies(inv: &[f64], config: &LlamaConfig, device: &B::Device) -> Self {
        let (positions, hd) = (config.max_seq_len, config.head_dim);
        let mut cos = Vec::with_capacity(positions * hd);
        let mut sin = Vec::with_capacity(positions * hd);
        for p in 0..positions {
            for j in 0..hd {
                let angle = p as f64 * inv[j % (hd / 2)];
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let make = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [positions, hd]), device);
        Self {
            cos: make(cos),
            sin: make(sin),
            head_dim: hd,
        }
    }

    /// The same tables on the autodiff backend `A` (constants, no gradients).
    pub fn into_autodiff<A>(self) -> RotaryTables<A>
    where
        A: burn::tensor::backend::AutodiffBackend<InnerBackend = B>,
    {
        RotaryTables {
            cos: Tensor::from_inner(self.cos),
            sin: Tensor::from_inner(self.sin),
            head_dim: self.head_dim,
        }
    }

    /// Tables for positions `offset..offset + seq`, shared by every row: `([1, 1, seq,
    /// head_dim], [1, 1, seq, head_dim])` (cos, sin).
    pub fn window(&self, offset: usize, seq: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let take = |t: &Tensor<B, 2>| t.clone().narrow(0, offset, seq).unsqueeze::<4>();
        (take(&self.cos), take(&self.sin))
    }

    /// Tables for a position per row and token: `positions` is `[batch * seq]` row-major;
    /// returns `([batch, 1, seq, head_dim], [batch, 1, seq, head_dim])` (cos, sin).
    pub fn at_positions(
        &self,
        positions: &[usize],
        batch: usize,
        seq: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let device = self.cos.device();
        let index: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [batch * seq]), &device);
        let take = |t: &Tensor<B, 2>| {
            t.clone()
                .select(0, index.clone())
                .reshape([batch, 1, seq, self.head_dim])
        };
        (take(&self.cos), take(&self.sin))
    }

    /// Rotates `x` (`[batch, heads, seq, head_dim]`) with tables from [`Self::window`] or
    /// [`Self::at_positions`] (broadcast over heads, and over rows when their batch is 1).
    pub fn rotate(&self, x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
        rotate_half(x, cos, sin)
    }
}

/// Rotate-half RoPE: `x * cos + rotate_half(x) * sin`, where `rotate_half` maps the halves
/// `(a, b)` of the last axis to `(-b, a)`. `x` is `[batch, heads, seq, head_dim]` with `cos`
/// and `sin` `[1 or batch, 1, seq, head_dim]`, or (faster on the CPU, being contiguous)
/// `x` `[batch, seq, heads, head_dim]` with the tables `[1 or batch, seq, 1 or heads,
/// head_dim]`. Tables already repeated over the heads (see [`expand_over_heads`]) are the
/// fastest: both products are then contiguous (or one shared row per batch row), where a
/// broadcast over the heads makes burn-flex walk strides element by element.
pub fn rotate_half<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let dims = x.dims();
    let half = dims[3] / 2;
    let first = x.clone().narrow(3, 0, half);
    let second = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    if cos.dims()[1..] == dims[1..] && sin.dims() == cos.dims() {
        // `[b, n]` against `[1 or b, n]`: the same element-wise products, on flat rows.
        let row = dims[1] * dims[2] * dims[3];
        let flat = |t: Tensor<B, 4>| {
            let rows = t.dims()[0];
            t.reshape([rows, row])
        };
        let out = flat(x) * flat(cos.clone()) + flat(rotated) * flat(sin.clone());
        return out.reshape(dims);
    }
    x * cos.clone() + rotated * sin.clone()
}

/// Repeats seq-major tables (`[1 or batch, seq, 1, head_dim]`) over `heads` heads:
/// `[1 or batch, seq, heads, head_dim]`, contiguous, for [`rotate_half`]'s fast path.
pub fn expand_over_heads<B: Backend>(table: &Tensor<B, 4>, heads: usize) -> Tensor<B, 4> {
    table.clone().repeat_dim(2, heads)
}
