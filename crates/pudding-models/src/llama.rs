//! The Llama-family decoder with skippable blocks.
//!
//! Shapes: `b` batch, `s` new tokens, `t` cached + new tokens, `d` hidden size, `h` query
//! heads, `g` key/value heads, `r = h / g` query heads per key/value head, `e` head_dim,
//! `v` vocabulary.

use crate::cache::KvCache;
use crate::rope::RotaryTables;
use crate::weights::{HostTensor, WeightSource};
use crate::{LlamaConfig, ModelError};
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::Distribution;
use pudding_core::OmissionSet;

/// A dense projection `y = x W + b` with `W` stored `[in, out]`.
#[derive(Clone, Debug)]
pub struct Projection<B: Backend> {
    /// `[in_features, out_features]` (the transpose of the HF `[out, in]` layout).
    pub weight: Tensor<B, 2>,
    /// `[out_features]`, when the architecture has one.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Projection<B> {
    /// `x`: `[b, s, in]` -> `[b, s, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d_in] = x.dims();
        let d_out = self.weight.dims()[1];
        let y = x
            .reshape([b * s, d_in])
            .matmul(self.weight.clone())
            .reshape([b, s, d_out]);
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<3>(),
            None => y,
        }
    }
}

/// Root-mean-square layer norm: `x / sqrt(mean(x^2) + eps) * weight`.
#[derive(Clone, Debug)]
pub struct RmsNorm<B: Backend> {
    /// `[d]`.
    pub weight: Tensor<B, 1>,
    /// Epsilon added to the mean square.
    pub eps: f32,
}

impl<B: Backend> RmsNorm<B> {
    /// `x`: `[b, s, d]` -> `[b, s, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inv_rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(2)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        x * inv_rms * self.weight.clone().unsqueeze::<3>()
    }
}

/// Grouped-query self-attention.
#[derive(Clone, Debug)]
pub struct Attention<B: Backend> {
    /// `[d, h*e]`.
    pub q: Projection<B>,
    /// `[d, g*e]`.
    pub k: Projection<B>,
    /// `[d, g*e]`.
    pub v: Projection<B>,
    /// `[h*e, d]`.
    pub o: Projection<B>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

/// Additive causal mask `[1, 1, r*s, t]`: query row `(rep, i)` at position `offset + i` sees
/// keys `0..=offset + i`.
fn causal_mask<B: Backend>(
    reps: usize,
    seq: usize,
    offset: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let total = offset + seq;
    let mut mask = Vec::with_capacity(reps * seq * total);
    for _ in 0..reps {
        for i in 0..seq {
            mask.extend((0..total).map(|j| {
                if j <= offset + i {
                    0.0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
    }
    Tensor::from_data(TensorData::new(mask, [1, 1, reps * seq, total]), device)
}

impl<B: Backend> Attention<B> {
    /// `x`: `[b, s, d]` (already normalised) at positions `offset..offset+s`; returns
    /// `[b, s, d]`. With a cache, this block's keys/values are appended and attention
    /// spans every cached position.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RotaryTables<B>,
        offset: usize,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, g, e) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let r = h / g;
        let heads = |t: Tensor<B, 3>, n: usize| t.reshape([b, s, n, e]).swap_dims(1, 2);
        let q = rope.apply(heads(self.q.forward(x.clone()), h), offset);
        let k = rope.apply(heads(self.k.forward(x.clone()), g), offset);
        let v = heads(self.v.forward(x), g);
        let (k, v) = match cache {
            Some((cache, block)) => cache.append(block, k, v),
            None => (k, v),
        };
        let t = k.dims()[2];
        // Group the r query heads that share a key/value head into one matrix of r*s rows,
        // so keys and values are used as they are, without repeating them r times.
        let q = q.reshape([b, g, r * s, e]);
        let scale = 1.0 / (e as f64).sqrt();
        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale); // [b, g, r*s, t]
        if s > 1 {
            let mask = causal_mask::<B>(r, s, t - s, &scores.device());
            scores = scores + mask;
        }
        let out = softmax(scores, 3).matmul(v); // [b, g, r*s, e]
        let out = out
            .reshape([b, h, s, e])
            .swap_dims(1, 2)
            .reshape([b, s, h * e]);
        self.o.forward(out)
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Clone, Debug)]
pub struct Mlp<B: Backend> {
    /// `[d, ffn]`.
    pub gate: Projection<B>,
    /// `[d, ffn]`.
    pub up: Projection<B>,
    /// `[ffn, d]`.
    pub down: Projection<B>,
}

impl<B: Backend> Mlp<B> {
    /// `x`: `[b, s, d]` -> `[b, s, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down
            .forward(silu(self.gate.forward(x.clone())) * self.up.forward(x))
    }
}

/// One pre-norm transformer block.
#[derive(Clone, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub attn_norm: RmsNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm before the MLP.
    pub mlp_norm: RmsNorm<B>,
    /// Feed-forward.
    pub mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    /// `x`: `[b, s, d]` residual stream at positions `offset..offset+s` -> `[b, s, d]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RotaryTables<B>,
        offset: usize,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .attn
                .forward(self.attn_norm.forward(x), rope, offset, cache);
        x.clone() + self.mlp.forward(self.mlp_norm.forward(x))
    }
}

/// A Llama-family decoder (Llama, SmolLM2, Mistral, Qwen2) whose blocks can be skipped.
#[derive(Clone, Debug)]
pub struct LlamaModel<B: Backend> {
    config: LlamaConfig,
    /// Token embeddings `[v, d]`.
    pub embed: Tensor<B, 2>,
    /// The transformer blocks, in order.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Untied output head `[d, v]`; `None` when tied to `embed`.
    pub lm_head: Option<Tensor<B, 2>>,
    rope: RotaryTables<B>,
}

fn to_device<B: Backend, const D: usize>(
    t: HostTensor,
    name: &str,
    expected: [usize; D],
    device: &B::Device,
) -> Result<Tensor<B, D>, ModelError> {
    if t.shape != expected {
        return Err(ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            actual: t.shape,
        });
    }
    Ok(Tensor::from_data(TensorData::new(t.data, expected), device))
}

/// Where the weights of a model come from while it is built.
trait ParamSource<B: Backend> {
    fn matrix(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError>;
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError>;
    fn has(&self, name: &str) -> bool;
}

struct FromCheckpoint<'a, B: Backend> {
    source: &'a dyn WeightSource,
    device: &'a B::Device,
}

impl<B: Backend> ParamSource<B> for FromCheckpoint<'_, B> {
    /// HF `[out, in]` -> `[in, out]`.
    fn matrix(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError> {
        let t = self.source.tensor(name)?;
        Ok(to_device::<B, 2>(t, name, [out, inp], self.device)?.transpose())
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError> {
        to_device::<B, 1>(self.source.tensor(name)?, name, [len], self.device)
    }
    fn has(&self, name: &str) -> bool {
        self.source.contains(name)
    }
}

struct Random<'a, B: Backend> {
    device: &'a B::Device,
    bias: bool,
}

impl<B: Backend> ParamSource<B> for Random<'_, B> {
    fn matrix(&mut self, _: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError> {
        let std = 1.0 / (inp as f64).sqrt();
        Ok(Tensor::random(
            [inp, out],
            Distribution::Normal(0.0, std),
            self.device,
        ))
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError> {
        if name.ends_with("bias") {
            return Ok(Tensor::random(
                [len],
                Distribution::Normal(0.0, 0.02),
                self.device,
            ));
        }
        Ok(Tensor::random(
            [len],
            Distribution::Uniform(0.8, 1.2),
            self.device,
        ))
    }
    fn has(&self, name: &str) -> bool {
        self.bias || !name.ends_with("bias")
    }
}

impl<B: Backend> LlamaModel<B> {
    /// Builds the model from a checkpoint (weights by HF name, already in HF layout).
    pub fn from_weights(
        config: &LlamaConfig,
        source: &dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Self::build(config, &mut FromCheckpoint { source, device }, device)
    }

    /// A model with random weights of `config`'s shape (tests, benchmarks of large shapes
    /// without downloads). Seeds the backend's generator with `seed`.
    pub fn random(config: &LlamaConfig, seed: u64, device: &B::Device) -> Result<Self, ModelError> {
        B::seed(device, seed);
        let mut source = Random {
            device,
            bias: config.attention_bias,
        };
        Self::build(config, &mut source, device)
    }

    fn build(
        config: &LlamaConfig,
        src: &mut dyn ParamSource<B>,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let c = config;
        let (d, e) = (c.hidden_size, c.head_dim);
        let (qd, kvd) = (c.n_heads * e, c.n_kv_heads * e);
        let embed_name = "model.embed_tokens.weight";
        // The embedding is used as is ([v, d]) for look-ups; `matrix` transposes, so undo it.
        let embed = src.matrix(embed_name, c.vocab_size, d)?.transpose();
        let proj = |src: &mut dyn ParamSource<B>, name: String, out: usize, inp: usize| {
            let bias_name = name.replace(".weight", ".bias");
            let weight = src.matrix(&name, out, inp)?;
            let bias = if name.contains("self_attn.")
                && !name.contains("o_proj")
                && c.attention_bias
                && src.has(&bias_name)
            {
                Some(src.vector(&bias_name, out)?)
            } else {
                None
            };
            Ok::<_, ModelError>(Projection { weight, bias })
        };
        let mut blocks = Vec::with_capacity(c.n_blocks);
        for i in 0..c.n_blocks {
            let p = |part: &str| format!("model.layers.{i}.{part}");
            let attn = Attention {
                q: proj(src, p("self_attn.q_proj.weight"), qd, d)?,
                k: proj(src, p("self_attn.k_proj.weight"), kvd, d)?,
                v: proj(src, p("self_attn.v_proj.weight"), kvd, d)?,
                o: proj(src, p("self_attn.o_proj.weight"), d, qd)?,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: e,
            };
            let mlp = Mlp {
                gate: proj(src, p("mlp.gate_proj.weight"), c.intermediate_size, d)?,
                up: proj(src, p("mlp.up_proj.weight"), c.intermediate_size, d)?,
                down: proj(src, p("mlp.down_proj.weight"), d, c.intermediate_size)?,
            };
            blocks.push(Block {
                attn_norm: RmsNorm {
                    weight: src.vector(&p("input_layernorm.weight"), d)?,
                    eps: c.rms_norm_eps,
                },
                attn,
                mlp_norm: RmsNorm {
                    weight: src.vector(&p("post_attention_layernorm.weight"), d)?,
                    eps: c.rms_norm_eps,
                },
                mlp,
            });
        }
        let norm = RmsNorm {
            weight: src.vector("model.norm.weight", d)?,
            eps: c.rms_norm_eps,
        };
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(src.matrix("lm_head.weight", c.vocab_size, d)?)
        };
        Ok(Self {
            config: config.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            rope: RotaryTables::new(config, device),
        })
    }

    /// A statically pruned copy holding only the blocks `skip` keeps (renumbered
    /// `0..L-k`): running it dense equals running `self` with `skip` omitted.
    pub fn pruned(&self, skip: &OmissionSet) -> Result<Self, ModelError> {
        skip.check_blocks(self.config.n_blocks)?;
        let mut pruned = self.clone();
        pruned.blocks = skip.kept().map(|i| self.blocks[i].clone()).collect();
        pruned.config.n_blocks = pruned.blocks.len();
        Ok(pruned)
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> B::Device {
        self.embed.device()
    }

    /// Embedding look-up: `tokens` `[b, s]` -> `[b, s, d]`.
    pub fn embed_tokens(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, s] = tokens.dims();
        self.embed
            .clone()
            .select(0, tokens.reshape([b * s]))
            .reshape([b, s, self.config.hidden_size])
    }

    /// Runs block `index` on the residual stream `x` (`[b, s, d]`, positions
    /// `offset..offset+s`, no cache).
    pub fn block_forward(&self, index: usize, x: Tensor<B, 3>, offset: usize) -> Tensor<B, 3> {
        self.blocks[index].forward(x, &self.rope, offset, None)
    }

    /// Final norm and output head: `[b, s, d]` -> logits `[b, s, v]`.
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.norm.forward(hidden);
        let [b, s, d] = x.dims();
        let weight = match &self.lm_head {
            Some(w) => w.clone(),
            None => self.embed.clone().transpose(),
        };
        x.reshape([b * s, d])
            .matmul(weight)
            .reshape([b, s, self.config.vocab_size])
    }

    /// The residual stream after every kept block: `tokens` `[b, s]` -> `[b, s, d]`
    /// (before the final norm). Skipped blocks are the identity and, with a cache, write
    /// no entries. With a cache the new tokens sit at positions `cache.len()..`.
    pub fn forward_hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        skip: &OmissionSet,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        skip.check_blocks(self.config.n_blocks)?;
        let [_, s] = tokens.dims();
        let offset = match cache.as_deref() {
            Some(c) => {
                c.check_skip(skip)?;
                c.len()
            }
            None => 0,
        };
        if s == 0 {
            return Err(ModelError::EmptyPrompt);
        }
        if offset + s > self.config.max_seq_len {
            return Err(ModelError::PromptTooLong {
                len: offset + s,
                max: self.config.max_seq_len,
            });
        }
        let mut x = self.embed_tokens(tokens);
        for block in skip.kept() {
            let block_cache = cache.as_deref_mut().map(|c| (c, block));
            x = self.blocks[block].forward(x, &self.rope, offset, block_cache);
        }
        if let Some(c) = cache {
            c.advance(s);
        }
        Ok(x)
    }

    /// Logits for every position: `tokens` `[b, s]` -> `[b, s, v]`.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        skip: &OmissionSet,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        Ok(self.head(self.forward_hidden(tokens, skip, cache)?))
    }

    /// Logits of the last position only (what generation needs): `[b, s]` -> `[b, v]`.
    pub fn forward_last(
        &self,
        tokens: Tensor<B, 2, Int>,
        skip: &OmissionSet,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 2>, ModelError> {
        let hidden = self.forward_hidden(tokens, skip, cache)?;
        let [b, s, _] = hidden.dims();
        let last = hidden.narrow(1, s - 1, 1);
        Ok(self.head(last).reshape([b, self.config.vocab_size]))
    }
}
