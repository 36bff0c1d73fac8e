//! The layers of a block: projections, RMS norm, the gated feed-forward and the block
//! itself (its attention is in [`super::attention`]).

use super::attention::{Attention, StepContext};
use crate::cache::KvCache;
use crate::config::Activation;
use crate::linear::LinearWeight;
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::{DType, FloatDType};

/// A projection `y = x W + b`: `W` dense `[in, out]`, or `[out, in]` blocks as stored in the
/// GGUF file (see [`LinearWeight`]).
#[derive(Clone, Debug)]
pub struct Projection<B: Backend> {
    /// `[in_features, out_features]` when dense (the transpose of the HF `[out, in]`
    /// layout).
    pub weight: LinearWeight<B>,
    /// `[out_features]`, when the architecture has one.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Projection<B> {
    /// `x`: `[b, s, in]` -> `[b, s, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d_in] = x.dims();
        let d_out = self.weight.out_features();
        let y = self
            .weight
            .matmul(x.reshape([b * s, d_in]))
            .reshape([b, s, d_out]);
        self.add_bias(y)
    }

    fn add_bias(&self, y: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<3>(),
            None => y,
        }
    }

    /// Several projections of the same `x` (`[b, s, in]`), e.g. Q/K/V or gate/up: `[b, s,
    /// out_i]` each. Quantised weights run as one group (one activation quantisation, one
    /// dispatch over the threads).
    pub fn forward_each<const N: usize>(
        projections: [&Self; N],
        x: Tensor<B, 3>,
    ) -> [Tensor<B, 3>; N] {
        let [b, s, d_in] = x.dims();
        let weights = projections.map(|p| &p.weight);
        let ys = crate::linear::matmul_each(x.reshape([b * s, d_in]), &weights);
        let mut ys = ys.into_iter();
        projections.map(|p| {
            let y = ys.next().expect("one product per projection");
            p.add_bias(y.reshape([b, s, p.weight.out_features()]))
        })
    }
}

/// Runs `f` in f32 when `x` is half precision, returning the result in `x`'s dtype: sums
/// of squares and softmax normalisers lose too much in f16/bf16 (as llama.cpp and
/// transformers, norms and softmax run in f32 whatever the weights are stored in).
pub(super) fn in_f32<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    match x.dtype() {
        DType::F16 => f(x.cast(FloatDType::F32)).cast(FloatDType::F16),
        DType::BF16 => f(x.cast(FloatDType::F32)).cast(FloatDType::BF16),
        _ => f(x),
    }
}

/// Root-mean-square layer norm over the last axis: `x / sqrt(mean(x^2) + eps) * weight`.
#[derive(Clone, Debug)]
pub struct RmsNorm<B: Backend> {
    /// `[d]` (the width of the last axis).
    pub weight: Tensor<B, 1>,
    /// Epsilon added to the mean square.
    pub eps: f32,
}

impl<B: Backend> RmsNorm<B> {
    /// `x`: `[..., d]` -> `[..., d]` (e.g. `[b, s, d]`, or `[b, s, heads, head_dim]` for
    /// per-head query/key norms).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        in_f32(x, |x| {
            let inv_rms = x
                .clone()
                .powi_scalar(2)
                .mean_dim(D - 1)
                .add_scalar(self.eps)
                .sqrt()
                .recip();
            x * inv_rms * self.weight.clone().cast(FloatDType::F32).unsqueeze::<D>()
        })
    }
}

/// GELU with the tanh approximation (`gelu_pytorch_tanh`):
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let inner = (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044_715))
        .mul_scalar((2.0 / std::f64::consts::PI).sqrt());
    x.mul(inner.tanh().add_scalar(1.0)).mul_scalar(0.5)
}

/// Gated feed-forward: `down(act(gate(x)) * up(x))` (SwiGLU with SiLU, GeGLU with GELU).
#[derive(Clone, Debug)]
pub struct Mlp<B: Backend> {
    /// `[d, ffn]`.
    pub gate: Projection<B>,
    /// `[d, ffn]`.
    pub up: Projection<B>,
    /// `[ffn, d]`.
    pub down: Projection<B>,
    /// The gate's activation.
    pub activation: Activation,
}

impl<B: Backend> Mlp<B> {
    /// `x`: `[b, s, d]` -> `[b, s, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [gate, up] = Projection::forward_each([&self.gate, &self.up], x);
        let gate = match self.activation {
            Activation::Silu => silu(gate),
            Activation::GeluTanh => gelu_tanh(gate),
        };
        self.down.forward(gate * up)
    }
}

/// One pre-norm transformer block (with Gemma's extra norms on the two branch outputs
/// when it has them).
#[derive(Clone, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub attn_norm: RmsNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm of the attention output before the residual add (Gemma).
    pub post_attn_norm: Option<RmsNorm<B>>,
    /// Norm before the MLP.
    pub mlp_norm: RmsNorm<B>,
    /// Feed-forward.
    pub mlp: Mlp<B>,
    /// Norm of the MLP output before the residual add (Gemma).
    pub post_mlp_norm: Option<RmsNorm<B>>,
}

impl<B: Backend> Block<B> {
    /// `x`: `[b, s, d]` residual stream of the new tokens described by `step` ->
    /// `[b, s, d]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        step: &StepContext<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let a = self
            .attn
            .forward(self.attn_norm.forward(x.clone()), step, cache);
        self.finish(x, a)
    }

    /// One decode step of several sequences, each with its own position and cache (see
    /// [`Attention::forward_rows`]): `x` `[n, 1, d]` -> `[n, 1, d]`.
    pub fn forward_rows(
        &self,
        x: Tensor<B, 3>,
        steps: &[&StepContext<B>],
        caches: &mut [&mut KvCache<B>],
        block: usize,
    ) -> Tensor<B, 3> {
        let a = self
            .attn
            .forward_rows(self.attn_norm.forward(x.clone()), steps, caches, block);
        self.finish(x, a)
    }

    /// The rest of the block after attention: `x` the block's input and `a` the attention
    /// output (both `[b, s, d]`) -> the block's output.
    fn finish(&self, x: Tensor<B, 3>, a: Tensor<B, 3>) -> Tensor<B, 3> {
        let post = |y: Tensor<B, 3>, norm: &Option<RmsNorm<B>>| match norm {
            Some(n) => n.forward(y),
            None => y,
        };
        let x = x + post(a, &self.post_attn_norm);
        let m = self.mlp.forward(self.mlp_norm.forward(x.clone()));
        x + post(m, &self.post_mlp_norm)
    }
}
