//! Rotary position embeddings in the Hugging Face "rotate-half" layout.

use crate::config::{Llama3RopeScaling, LlamaConfig};
use burn::prelude::*;

/// The cos/sin tables of rotate-half RoPE, computed for the positions each call asks for.
///
/// A table row is `[head_dim]`: column `j` and `j + head_dim/2` share the frequency of pair
/// `j`, matching rotate-half RoPE (`x * cos + rotate_half(x) * sin`). Rows are computed on
/// demand (angles in f64) rather than stored for the whole context: for Gemma 3 (head_dim
/// 256, a 32k context, two sets of tables) the stored tables took 128 MiB, half the
/// quantised model's memory, against a few microseconds per step to compute them.
#[derive(Clone, Debug)]
pub struct RotaryTables<B: Backend> {
    /// `[head_dim / 2]` inverse frequencies.
    inv_freq: Vec<f64>,
    head_dim: usize,
    device: B::Device,
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
    /// The tables of `config`'s global blocks.
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        Self::from_inverse_frequencies(inverse_frequencies(config), config, device)
    }

    /// The tables of the sliding-window blocks (their own RoPE base), if the model has any.
    pub fn local(config: &LlamaConfig, device: &B::Device) -> Option<Self> {
        local_inverse_frequencies(config)
            .map(|inv| Self::from_inverse_frequencies(inv, config, device))
    }

    fn from_inverse_frequencies(
        inv_freq: Vec<f64>,
        config: &LlamaConfig,
        device: &B::Device,
    ) -> Self {
        Self {
            inv_freq,
            head_dim: config.head_dim,
            device: device.clone(),
        }
    }

    /// The same tables on the autodiff backend `A` (constants, no gradients), whose tensors
    /// go to `device`.
    pub fn into_autodiff<A>(self, device: &A::Device) -> RotaryTables<A>
    where
        A: burn::tensor::backend::AutodiffBackend<InnerBackend = B>,
    {
        RotaryTables {
            inv_freq: self.inv_freq,
            head_dim: self.head_dim,
            device: device.clone(),
        }
    }

    /// `(cos, sin)` rows of `positions`, `[positions.len(), head_dim]` each, row-major.
    fn rows(&self, positions: impl Iterator<Item = usize>) -> (Vec<f32>, Vec<f32>) {
        let (hd, half) = (self.head_dim, self.head_dim / 2);
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in positions {
            for j in 0..hd {
                let angle = p as f64 * self.inv_freq[j % half];
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }

    /// Tables for positions `offset..offset + seq`, shared by every row: `([1, 1, seq,
    /// head_dim], [1, 1, seq, head_dim])` (cos, sin).
    pub fn window(&self, offset: usize, seq: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        self.at_positions(&(offset..offset + seq).collect::<Vec<_>>(), 1, seq)
    }

    /// Tables for a position per row and token: `positions` is `[batch * seq]` row-major;
    /// returns `([batch, 1, seq, head_dim], [batch, 1, seq, head_dim])` (cos, sin).
    pub fn at_positions(
        &self,
        positions: &[usize],
        batch: usize,
        seq: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        debug_assert_eq!(positions.len(), batch * seq);
        let (cos, sin) = self.rows(positions.iter().copied());
        let make = |v: Vec<f32>| {
            Tensor::from_data(
                TensorData::new(v, [batch, 1, seq, self.head_dim]),
                &self.device,
            )
        };
        (make(cos), make(sin))
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
