//! Building a model: from a checkpoint's weights (whole, or only the resident blocks)
//! or from seeded random weights, checking every shape and value on the way.

use super::attention::Attention;
use super::layers::{Block, Mlp, Projection, RmsNorm};
use super::LlamaModel;
use crate::linear::{Embedding, LinearWeight, WeightMode};
use crate::rope::RotaryTables;
use crate::weights::{HostTensor, WeightSource};
use crate::{LlamaConfig, ModelError};
use burn::prelude::*;
use burn::tensor::DType;
use pudding_core::OmissionSet;
use std::collections::HashSet;

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
    if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::NonFiniteWeight {
            name: name.to_string(),
            index,
            value: t.data[index],
        });
    }
    Ok(Tensor::from_data(TensorData::new(t.data, expected), device))
}

/// Where the weights of a model come from while it is built.
trait ParamSource<B: Backend> {
    fn matrix(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError>;
    /// A projection weight: dense `[in, out]` unless the source keeps it as stored.
    fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<LinearWeight<B>, ModelError> {
        Ok(LinearWeight::Dense(self.matrix(name, out, inp)?))
    }
    /// The `[v, d]` token embedding table.
    fn embedding(&mut self, name: &str, v: usize, d: usize) -> Result<Embedding<B>, ModelError> {
        // `matrix` transposes to `[in, out]`; undo it for a look-up table.
        Ok(Embedding::Dense(self.matrix(name, v, d)?.transpose()))
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError>;
    fn has(&self, name: &str) -> bool;
    /// Errors if the source holds tensors of a block past the `n_blocks` the configuration
    /// declares (those of block `n_blocks`, the first one past).
    fn check_no_block_past(&self, _n_blocks: usize) -> Result<(), ModelError> {
        Ok(())
    }
    /// Called when block `block` is built: a checkpoint refuses a block holding a tensor
    /// that was not read.
    fn finish_block(&mut self, _block: usize) -> Result<(), ModelError> {
        Ok(())
    }
}

struct FromCheckpoint<'a, B: Backend> {
    source: &'a dyn WeightSource,
    device: &'a B::Device,
    /// HF names read since the last [`ParamSource::finish_block`].
    read: HashSet<String>,
    architecture: &'a str,
    mode: WeightMode,
}

impl<'a, B: Backend> FromCheckpoint<'a, B> {
    fn new(
        source: &'a dyn WeightSource,
        device: &'a B::Device,
        architecture: &'a str,
        mode: WeightMode,
    ) -> Self {
        Self {
            source,
            device,
            read: HashSet::new(),
            architecture,
            mode,
        }
    }

    /// The stored matrix `name` (`[out, inp]`), when quantised weights are asked for and the
    /// source keeps this one as stored.
    fn stored(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<Option<pudding_gguf::QuantizedMatrix>, ModelError> {
        if self.mode != WeightMode::Quantized {
            return Ok(None);
        }
        let Some(m) = self.source.quantized(name)? else {
            return Ok(None);
        };
        if (m.rows(), m.cols()) != (out, inp) {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: vec![out, inp],
                actual: vec![m.rows(), m.cols()],
            });
        }
        self.read.insert(name.to_string());
        Ok(Some(m))
    }
}

impl<B: Backend> ParamSource<B> for FromCheckpoint<'_, B> {
    /// HF `[out, in]` -> `[in, out]`.
    fn matrix(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError> {
        let t = self.source.tensor(name)?;
        self.read.insert(name.to_string());
        Ok(to_device::<B, 2>(t, name, [out, inp], self.device)?.transpose())
    }
    fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<LinearWeight<B>, ModelError> {
        match self.stored(name, out, inp)? {
            Some(m) => Ok(LinearWeight::Quantized(m)),
            None => Ok(LinearWeight::Dense(self.matrix(name, out, inp)?)),
        }
    }
    fn embedding(&mut self, name: &str, v: usize, d: usize) -> Result<Embedding<B>, ModelError> {
        match self.stored(name, v, d)? {
            Some(m) => Ok(Embedding::Quantized(m)),
            None => Ok(Embedding::Dense(self.matrix(name, v, d)?.transpose())),
        }
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError> {
        let t = self.source.tensor(name)?;
        self.read.insert(name.to_string());
        to_device::<B, 1>(t, name, [len], self.device)
    }
    fn has(&self, name: &str) -> bool {
        self.source.contains(name)
    }
    fn check_no_block_past(&self, n_blocks: usize) -> Result<(), ModelError> {
        match self.source.block_tensor_names(n_blocks).into_iter().next() {
            Some(name) => Err(ModelError::BlockPastCount {
                name,
                block: n_blocks,
                n_blocks,
            }),
            None => Ok(()),
        }
    }
    fn finish_block(&mut self, block: usize) -> Result<(), ModelError> {
        let read = std::mem::take(&mut self.read);
        let unread = self
            .source
            .block_tensor_names(block)
            .into_iter()
            .find(|name| !read.contains(name) && !crate::weights::is_unread_buffer(name));
        match unread {
            Some(name) => Err(ModelError::UnreadTensor {
                name,
                arch: self.architecture.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// Random weights from the model's own seeded generator, not the backend's global one
/// (`Backend::seed` is process-wide, so models built on several threads at once would
/// interleave its draws and differ from run to run).
struct Random<'a, B: Backend> {
    device: &'a B::Device,
    bias: bool,
    rng: crate::sampling::SplitMix64,
}

impl<B: Backend> Random<'_, B> {
    /// `n` draws from a normal distribution (Box-Muller).
    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = self.rng.next_f64().max(1e-12);
                let u2 = self.rng.next_f64();
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
            })
            .collect()
    }

    fn tensor<const D: usize>(&self, data: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(data, shape), self.device)
    }
}

impl<B: Backend> ParamSource<B> for Random<'_, B> {
    /// Drawn in the checkpoint layout `[out, in]` and transposed, like
    /// [`FromCheckpoint::matrix`]: the same memory layout as a loaded model, so benchmarks
    /// on random weights run the same kernels (a contiguous `[in, out]` matrix makes the
    /// CPU's matrix-vector products several times slower).
    fn matrix(&mut self, _: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError> {
        let data = self.normal(out * inp, 1.0 / (inp as f64).sqrt());
        Ok(self.tensor(data, [out, inp]).transpose())
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError> {
        let data = if name.ends_with("bias") {
            self.normal(len, 0.02)
        } else {
            (0..len)
                .map(|_| (0.8 + 0.4 * self.rng.next_f64()) as f32)
                .collect()
        };
        Ok(self.tensor(data, [len]))
    }
    fn has(&self, name: &str) -> bool {
        self.bias || !name.ends_with("bias")
    }
}

/// Builds block `i` of `c` from `src`.
fn build_block<B: Backend>(
    c: &LlamaConfig,
    src: &mut dyn ParamSource<B>,
    i: usize,
) -> Result<Block<B>, ModelError> {
    let (d, e) = (c.hidden_size, c.head_dim);
    let (qd, kvd) = (c.n_heads * e, c.n_kv_heads * e);
    let p = |part: &str| format!("model.layers.{i}.{part}");
    let proj = |src: &mut dyn ParamSource<B>, name: String, out: usize, inp: usize| {
        let bias_name = name.replace(".weight", ".bias");
        let weight = src.linear(&name, out, inp)?;
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
    let norm = |src: &mut dyn ParamSource<B>, part: &str, len: usize| {
        Ok::<_, ModelError>(RmsNorm {
            weight: src.vector(&p(part), len)?,
            eps: c.rms_norm_eps,
        })
    };
    let (q_norm, k_norm) = if c.features.qk_norm {
        (
            Some(norm(src, "self_attn.q_norm.weight", e)?),
            Some(norm(src, "self_attn.k_norm.weight", e)?),
        )
    } else {
        (None, None)
    };
    let attn = Attention {
        q: proj(src, p("self_attn.q_proj.weight"), qd, d)?,
        k: proj(src, p("self_attn.k_proj.weight"), kvd, d)?,
        v: proj(src, p("self_attn.v_proj.weight"), kvd, d)?,
        o: proj(src, p("self_attn.o_proj.weight"), d, qd)?,
        q_norm,
        k_norm,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: e,
        scale: c.score_scale(),
        sliding: c.is_sliding(i),
    };
    let mlp = Mlp {
        gate: proj(src, p("mlp.gate_proj.weight"), c.intermediate_size, d)?,
        up: proj(src, p("mlp.up_proj.weight"), c.intermediate_size, d)?,
        down: proj(src, p("mlp.down_proj.weight"), d, c.intermediate_size)?,
        activation: c.features.activation,
    };
    let names = BlockNormNames::of(c.features.sandwich_norms);
    let block = Block {
        attn_norm: norm(src, names.attn, d)?,
        attn,
        post_attn_norm: names.post_attn.map(|n| norm(src, n, d)).transpose()?,
        mlp_norm: norm(src, names.mlp, d)?,
        mlp,
        post_mlp_norm: names.post_mlp.map(|n| norm(src, n, d)).transpose()?,
    };
    src.finish_block(i)?;
    Ok(block)
}

/// The HF names (after `model.layers.{i}.`) of a block's norms. Gemma's
/// `post_attention_layernorm` normalises the attention output; in Llama the same name is
/// the norm before the MLP, which Gemma calls `pre_feedforward_layernorm`.
pub(super) struct BlockNormNames {
    pub(super) attn: &'static str,
    pub(super) post_attn: Option<&'static str>,
    pub(super) mlp: &'static str,
    pub(super) post_mlp: Option<&'static str>,
}

impl BlockNormNames {
    pub(super) fn of(sandwich_norms: bool) -> Self {
        if sandwich_norms {
            Self {
                attn: "input_layernorm.weight",
                post_attn: Some("post_attention_layernorm.weight"),
                mlp: "pre_feedforward_layernorm.weight",
                post_mlp: Some("post_feedforward_layernorm.weight"),
            }
        } else {
            Self {
                attn: "input_layernorm.weight",
                post_attn: None,
                mlp: "post_attention_layernorm.weight",
                post_mlp: None,
            }
        }
    }
}

impl<B: Backend> LlamaModel<B> {
    /// Builds the model from a checkpoint (weights by HF name, already in HF layout).
    pub fn from_weights(
        config: &LlamaConfig,
        source: &dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Self::from_weights_with(config, source, device, WeightMode::Dequantized)
    }

    /// Builds the model from a checkpoint, holding its block-quantised matrices as `mode`
    /// says.
    pub fn from_weights_with(
        config: &LlamaConfig,
        source: &dyn WeightSource,
        device: &B::Device,
        mode: WeightMode,
    ) -> Result<Self, ModelError> {
        let all = OmissionSet::dense(config.n_blocks)?;
        Self::build(
            config,
            &mut FromCheckpoint::new(source, device, &config.architecture, mode),
            &all,
            device,
            mode,
        )
    }

    /// Memory-constrained mode: builds the model with only the blocks `skip` keeps
    /// resident (the embedding, final norm and head always are). The others stay in the
    /// checkpoint until [`Self::make_resident`] loads them.
    pub fn from_weights_resident(
        config: &LlamaConfig,
        source: &dyn WeightSource,
        skip: &OmissionSet,
        device: &B::Device,
        mode: WeightMode,
    ) -> Result<Self, ModelError> {
        skip.check_blocks(config.n_blocks)?;
        Self::build(
            config,
            &mut FromCheckpoint::new(source, device, &config.architecture, mode),
            skip,
            device,
            mode,
        )
    }

    /// A model with random weights of `config`'s shape (tests, benchmarks of large shapes
    /// without downloads). The same `seed` gives the same weights on any thread (the draws
    /// come from the model's own generator, not the backend's process-wide one).
    pub fn random(config: &LlamaConfig, seed: u64, device: &B::Device) -> Result<Self, ModelError> {
        let mut source = Random {
            device,
            bias: config.attention_bias,
            rng: crate::sampling::SplitMix64::new(seed),
        };
        let all = OmissionSet::dense(config.n_blocks)?;
        Self::build(config, &mut source, &all, device, WeightMode::Dequantized)
    }

    fn build(
        config: &LlamaConfig,
        src: &mut dyn ParamSource<B>,
        skip: &OmissionSet,
        device: &B::Device,
        weight_mode: WeightMode,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let c = config;
        let d = c.hidden_size;
        let embed = src.embedding("model.embed_tokens.weight", c.vocab_size, d)?;
        if embed.dtype() == DType::F16 && c.architecture.starts_with("gemma") {
            // Gemma's residual stream grows past f16's 65504 (transformers refuses it too).
            return Err(ModelError::Config(
                "Gemma models overflow f16 activations; use bf16 or f32".into(),
            ));
        }
        let mut blocks = Vec::with_capacity(c.n_blocks);
        for i in 0..c.n_blocks {
            blocks.push(if skip.skips(i) {
                None
            } else {
                Some(build_block(c, src, i)?)
            });
        }
        src.check_no_block_past(c.n_blocks)?;
        let norm = RmsNorm {
            weight: src.vector("model.norm.weight", d)?,
            eps: c.rms_norm_eps,
        };
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(src.linear("lm_head.weight", c.vocab_size, d)?)
        };
        Ok(Self {
            config: config.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            weight_mode,
            rope: RotaryTables::new(config, device),
            rope_local: RotaryTables::local(config, device),
        })
    }

    /// Loads from `source` every block `skip` keeps that is not resident yet and, when
    /// `evict` is true, drops the resident blocks `skip` omits. Returns the blocks loaded.
    pub fn make_resident(
        &mut self,
        source: &dyn WeightSource,
        skip: &OmissionSet,
        evict: bool,
    ) -> Result<Vec<usize>, ModelError> {
        skip.check_blocks(self.config.n_blocks)?;
        let device = self.device();
        let mut src =
            FromCheckpoint::new(source, &device, &self.config.architecture, self.weight_mode);
        let mut loaded = Vec::new();
        for i in 0..self.config.n_blocks {
            if skip.skips(i) {
                if evict {
                    self.blocks[i] = None;
                }
            } else if self.blocks[i].is_none() {
                self.blocks[i] = Some(build_block(&self.config, &mut src, i)?);
                loaded.push(i);
            }
        }
        Ok(loaded)
    }
}
