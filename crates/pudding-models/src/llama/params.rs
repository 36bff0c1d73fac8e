//! Parameter walks: a block's parameters by Hugging Face name, mapped in place, and the
//! model copied onto an autodiff backend (for the gradient-based baselines).
//!
//! These walks are written out rather than derived with Burn's `Module`: a projection's
//! weight is a [`LinearWeight`], which holds GGUF blocks (Q4_0 ... Q6_K bytes on the host,
//! run by our own kernels) as well as dense tensors, and blocks may be absent (resident
//! mode); a derived module would need a hand-written `Module` for `LinearWeight` that
//! could not visit the quantised bytes as parameters anyway. What the walks serve is also
//! narrower than a module's: the gradient baselines (Taylor+) read per-block gradients by
//! HF name and copy an inference model onto the autodiff backend, which `Module` offers
//! only the other way (`AutodiffModule::valid`). Nothing here is trained with an
//! optimiser.

use super::attention::Attention;
use super::build::BlockNormNames;
use super::layers::{Block, Mlp, Projection, RmsNorm};
use super::LlamaModel;
use crate::linear::{Embedding, LinearWeight, WeightMode};
use burn::prelude::*;

impl<B: Backend> Block<B> {
    /// Number of parameters of this block.
    pub fn param_count(&self) -> usize {
        self.projections()
            .iter()
            .map(|(_, p)| p.weight.param_count() + p.bias.as_ref().map_or(0, |b| b.dims()[0]))
            .sum::<usize>()
            + self
                .norms()
                .iter()
                .map(|(_, n)| n.weight.dims()[0])
                .sum::<usize>()
    }

    /// The seven projections with their HF weight names, in a fixed order.
    pub fn projections(&self) -> [(&'static str, &Projection<B>); 7] {
        [
            ("self_attn.q_proj.weight", &self.attn.q),
            ("self_attn.k_proj.weight", &self.attn.k),
            ("self_attn.v_proj.weight", &self.attn.v),
            ("self_attn.o_proj.weight", &self.attn.o),
            ("mlp.gate_proj.weight", &self.mlp.gate),
            ("mlp.up_proj.weight", &self.mlp.up),
            ("mlp.down_proj.weight", &self.mlp.down),
        ]
    }

    /// Every norm of the block with its HF name suffix, in a fixed order.
    fn norms(&self) -> Vec<(&'static str, &RmsNorm<B>)> {
        let names = BlockNormNames::of(self.post_attn_norm.is_some());
        let mut norms = vec![(names.attn, &self.attn_norm), (names.mlp, &self.mlp_norm)];
        for (name, norm) in [
            (names.post_attn, &self.post_attn_norm),
            (names.post_mlp, &self.post_mlp_norm),
            (Some("self_attn.q_norm.weight"), &self.attn.q_norm),
            (Some("self_attn.k_norm.weight"), &self.attn.k_norm),
        ] {
            if let (Some(name), Some(norm)) = (name, norm) {
                norms.push((name, norm));
            }
        }
        norms
    }

    /// Every parameter of the block, matrices and vectors apart, as `(HF name suffix,
    /// tensor)` in a fixed order (a quantised matrix is dequantised into a new tensor, so
    /// gradients need a model loaded with [`WeightMode::Dequantized`]). Matrices are in this
    /// crate's `[in, out]` layout (the
    /// transpose of the Hugging Face tensor of that name), e.g. `q_proj` is
    /// `[d, n_heads * head_dim]`; vectors are `[out]` biases, `[d]` norm weights or
    /// `[head_dim]` query/key norm weights. The
    /// tensors are clones of the block's own (the same autodiff nodes), so gradients can be
    /// read for them.
    #[allow(clippy::type_complexity)]
    pub fn params(
        &self,
    ) -> (
        Vec<(&'static str, Tensor<B, 2>)>,
        Vec<(&'static str, Tensor<B, 1>)>,
    ) {
        let device = self.attn_norm.weight.device();
        let matrices = self
            .projections()
            .into_iter()
            .map(|(name, p)| (name, p.weight.to_dense(&device)))
            .collect();
        let mut vectors: Vec<(&'static str, Tensor<B, 1>)> = self
            .norms()
            .into_iter()
            .map(|(name, n)| (name, n.weight.clone()))
            .collect();
        for (name, p) in [
            ("self_attn.q_proj.bias", &self.attn.q),
            ("self_attn.k_proj.bias", &self.attn.k),
            ("self_attn.v_proj.bias", &self.attn.v),
        ] {
            if let Some(b) = &p.bias {
                vectors.push((name, b.clone()));
            }
        }
        (matrices, vectors)
    }

    /// Applies `f2` to every matrix (`[in, out]`) and `f1` to every vector (`[out]` or
    /// `[d]`) of the block, e.g. to mark them as requiring gradients. Both must return a
    /// tensor of the shape they were given. Quantised matrices are dequantised first (the
    /// result is dense).
    pub fn map_params(
        self,
        f2: &mut impl FnMut(Tensor<B, 2>) -> Tensor<B, 2>,
        f1: &mut impl FnMut(Tensor<B, 1>) -> Tensor<B, 1>,
    ) -> Self {
        let device = self.attn_norm.weight.device();
        let mut proj = |p: Projection<B>| Projection {
            weight: LinearWeight::Dense(f2(p.weight.to_dense(&device))),
            bias: p.bias.map(&mut *f1),
        };
        let (q, k, v, o) = (
            proj(self.attn.q),
            proj(self.attn.k),
            proj(self.attn.v),
            proj(self.attn.o),
        );
        let (gate, up, down) = (proj(self.mlp.gate), proj(self.mlp.up), proj(self.mlp.down));
        let mut norm = |n: RmsNorm<B>| RmsNorm {
            weight: f1(n.weight),
            eps: n.eps,
        };
        Block {
            attn_norm: norm(self.attn_norm),
            attn: Attention {
                q,
                k,
                v,
                o,
                q_norm: self.attn.q_norm.map(&mut norm),
                k_norm: self.attn.k_norm.map(&mut norm),
                ..self.attn
            },
            post_attn_norm: self.post_attn_norm.map(&mut norm),
            mlp_norm: norm(self.mlp_norm),
            mlp: Mlp {
                gate,
                up,
                down,
                activation: self.mlp.activation,
            },
            post_mlp_norm: self.post_mlp_norm.map(&mut norm),
        }
    }
}

impl<B: Backend> LlamaModel<B> {
    /// The same model on the autodiff backend `A` (weights copied as leaves that do not
    /// require gradients yet; see [`Self::map_blocks`] and [`Block::map_params`]).
    pub fn into_autodiff<A>(self) -> LlamaModel<A>
    where
        A: burn::tensor::backend::AutodiffBackend<InnerBackend = B>,
    {
        let device = self.device();
        let t2 = |t: Tensor<B, 2>| Tensor::<A, 2>::from_inner(t);
        let t1 = |t: Tensor<B, 1>| Tensor::<A, 1>::from_inner(t);
        let proj = |p: Projection<B>| Projection {
            weight: LinearWeight::Dense(t2(p.weight.to_dense(&device))),
            bias: p.bias.map(t1),
        };
        let norm = |n: RmsNorm<B>| RmsNorm {
            weight: t1(n.weight),
            eps: n.eps,
        };
        let blocks = self
            .blocks
            .into_iter()
            .map(|b| {
                b.map(|b| Block {
                    attn_norm: norm(b.attn_norm),
                    attn: Attention {
                        q: proj(b.attn.q),
                        k: proj(b.attn.k),
                        v: proj(b.attn.v),
                        o: proj(b.attn.o),
                        q_norm: b.attn.q_norm.map(norm),
                        k_norm: b.attn.k_norm.map(norm),
                        n_heads: b.attn.n_heads,
                        n_kv_heads: b.attn.n_kv_heads,
                        head_dim: b.attn.head_dim,
                        scale: b.attn.scale,
                        sliding: b.attn.sliding,
                    },
                    post_attn_norm: b.post_attn_norm.map(norm),
                    mlp_norm: norm(b.mlp_norm),
                    mlp: Mlp {
                        gate: proj(b.mlp.gate),
                        up: proj(b.mlp.up),
                        down: proj(b.mlp.down),
                        activation: b.mlp.activation,
                    },
                    post_mlp_norm: b.post_mlp_norm.map(norm),
                })
            })
            .collect();
        let final_norm = norm(self.norm);
        let autodiff_device = final_norm.weight.device();
        LlamaModel {
            config: self.config,
            embed: Embedding::Dense(t2(self.embed.to_dense(&device))),
            blocks,
            norm: final_norm,
            lm_head: self
                .lm_head
                .map(|h| LinearWeight::Dense(t2(h.to_dense(&device)))),
            weight_mode: WeightMode::Dequantized,
            rope: self.rope.into_autodiff(&autodiff_device),
            rope_local: self.rope_local.map(|r| r.into_autodiff(&autodiff_device)),
        }
    }
}
