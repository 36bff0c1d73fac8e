//! [`LlamaConfig`]: the hyper-parameters of a Llama-family decoder, read from a Hugging
//! Face `config.json` (module `hf`) or from GGUF metadata (module `gguf`).

use crate::ModelError;
use serde::{Deserialize, Serialize};

mod gguf;
mod hf;
#[cfg(test)]
mod tests;

pub(crate) use hf::hf_text_config;

/// Rotary-embedding frequency scaling (Llama 3.1 style); `None` in [`LlamaConfig`] means
/// plain RoPE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    /// Overall scaling factor of the low frequencies.
    pub factor: f32,
    /// Wavelength boundary (in original-context units) of the unscaled high frequencies.
    pub low_freq_factor: f32,
    /// Wavelength boundary of the fully scaled low frequencies.
    pub high_freq_factor: f32,
    /// The context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
}

/// The activation of the gated feed-forward: `down(act(gate(x)) * up(x))`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SiLU (SwiGLU; Llama, Qwen2).
    #[default]
    Silu,
    /// GELU with the tanh approximation (GeGLU; Gemma, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    fn is_silu(&self) -> bool {
        *self == Activation::Silu
    }
}

/// Sliding-window attention interleaved with global attention (Gemma 2/3): the windowed
/// blocks attend only to recent keys and rotate with their own RoPE base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlidingWindow {
    /// A query at position `p` sees keys at positions `p - size + 1 ..= p`.
    pub size: usize,
    /// Block `i` attends globally iff `(i + 1) % global_every == 0` (Gemma 3: 6, so
    /// blocks 5, 11, 17, ...); every other block uses the window. Ignored when
    /// [`Self::global_blocks`] is set.
    pub global_every: usize,
    /// RoPE base of the windowed blocks (never scaled; the global blocks use
    /// [`LlamaConfig::rope_theta`] and any scaling).
    pub local_rope_theta: f32,
    /// The blocks that attend globally, in increasing order, when they follow no period
    /// (a model with blocks removed, e.g. by `pudding export`); `None`: the period
    /// [`Self::global_every`] decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_blocks: Option<Vec<usize>>,
}

impl SlidingWindow {
    /// Whether block `index` attends globally (else through the window).
    pub fn is_global(&self, index: usize) -> bool {
        match &self.global_blocks {
            Some(blocks) => blocks.binary_search(&index).is_ok(),
            None => (index + 1).is_multiple_of(self.global_every),
        }
    }

    /// The window with the global/windowed kind of each block in `flags` (`true`: global),
    /// as a period when the flags follow one (`(i + 1) % p == 0`), else as a list.
    pub fn with_block_kinds(size: usize, local_rope_theta: f32, flags: &[bool]) -> Self {
        let global: Vec<usize> = (0..flags.len()).filter(|&i| flags[i]).collect();
        let period = global.first().map_or(flags.len() + 1, |&i| i + 1);
        let periodic = (0..flags.len()).all(|i| flags[i] == (i + 1).is_multiple_of(period));
        SlidingWindow {
            size,
            global_every: if periodic { period } else { 6 },
            local_rope_theta,
            global_blocks: (!periodic).then_some(global),
        }
    }
}

/// What a model family changes in the Llama block and at the model's ends (Gemma 3).
///
/// The default is the plain Llama block; unset features are left out of the serialised form
/// (flattened into [`LlamaConfig`]'s), so the configuration, and fingerprint, of a Llama or
/// Qwen2 model does not depend on them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FamilyFeatures {
    /// The feed-forward activation.
    #[serde(default, skip_serializing_if = "Activation::is_silu")]
    pub activation: Activation,
    /// Token embeddings are multiplied by this before the first block (Gemma:
    /// `sqrt(hidden_size)`); the tied output head uses them unscaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_scale: Option<f32>,
    /// Queries and keys are RMS-normalised per head (over `head_dim`) before RoPE.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qk_norm: bool,
    /// The attention and feed-forward outputs are RMS-normalised before they join the
    /// residual stream (Gemma's post-attention / post-feed-forward norms).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandwich_norms: bool,
    /// The factor on attention scores; `None` is `1 / sqrt(head_dim)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_scale: Option<f32>,
    /// Sliding-window attention on some blocks; `None`: every block attends globally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<SlidingWindow>,
    /// Final logits become `cap * tanh(logits / cap)` (Gemma 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcap: Option<f32>,
}

/// Hyper-parameters of a Llama-family decoder (Llama, SmolLM, Mistral, Qwen2, Gemma 3).
///
/// What Gemma 3 changes in the block is in [`LlamaConfig::features`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Architecture name (`"llama"`, `"qwen2"`, `"mistral"`, `"gemma3"`).
    pub architecture: String,
    /// Number of transformer blocks (L).
    pub n_blocks: usize,
    /// Residual-stream width (d).
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention; divides `n_heads`).
    pub n_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// RoPE base frequency (theta).
    pub rope_theta: f32,
    /// Optional Llama-3 frequency scaling.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Optional per-frequency RoPE divisors, `head_dim / 2` values: inverse frequency `j`
    /// is divided by factor `j`. This is how llama.cpp stores Llama-3 scaling in a GGUF
    /// (the `rope_freqs.weight` tensor); never set together with `rope_scaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_factors: Option<Vec<f32>>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Context window in tokens.
    pub max_seq_len: usize,
    /// Output head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
    /// How the family departs from the plain Llama block (Gemma 3); all off for Llama,
    /// Mistral and Qwen2. Flattened into this struct's serialised form.
    #[serde(flatten)]
    pub features: FamilyFeatures,
}

impl LlamaConfig {
    /// Checks the hyper-parameters are consistent: heads divide, sizes non-zero and within
    /// [`LlamaConfig::LIMITS`] (so no product of sizes overflows and no table is absurd),
    /// RMSNorm epsilon, RoPE theta and the Llama-3 scaling finite and positive.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.n_blocks == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return bad("block count, hidden size and vocabulary must be non-zero".into());
        }
        let sizes = [
            ("n_blocks", self.n_blocks),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_seq_len", self.max_seq_len),
        ];
        for ((name, value), (_, limit)) in sizes.iter().zip(Self::LIMITS) {
            if *value > limit {
                return bad(format!(
                    "{name} = {value} is larger than any supported model (at most {limit}); \
                     the configuration is corrupt"
                ));
            }
        }
        if self.intermediate_size == 0 {
            return bad("intermediate_size must be non-zero".into());
        }
        let positive = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ModelError::Config(format!(
                    "{name} = {v} must be finite and positive"
                )))
            }
        };
        positive("rms_norm_eps", self.rms_norm_eps)?;
        positive("rope_theta", self.rope_theta)?;
        if let Some(s) = &self.rope_scaling {
            positive("rope_scaling.factor", s.factor)?;
            positive("rope_scaling.low_freq_factor", s.low_freq_factor)?;
            positive("rope_scaling.high_freq_factor", s.high_freq_factor)?;
            if s.high_freq_factor <= s.low_freq_factor {
                return bad(format!(
                    "rope_scaling.high_freq_factor {} must exceed low_freq_factor {}",
                    s.high_freq_factor, s.low_freq_factor
                ));
            }
            if s.original_max_position_embeddings == 0 {
                return bad(
                    "rope_scaling.original_max_position_embeddings must be non-zero".into(),
                );
            }
        }
        if let Some(factors) = &self.rope_freq_factors {
            if self.rope_scaling.is_some() {
                return bad("RoPE scaling and per-frequency RoPE factors are both set".into());
            }
            if factors.len() != self.head_dim / 2 {
                return bad(format!(
                    "{} RoPE frequency factors for head_dim {} (expected {})",
                    factors.len(),
                    self.head_dim,
                    self.head_dim / 2
                ));
            }
            if let Some(f) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                return bad(format!(
                    "RoPE frequency factor {f} must be finite and positive"
                ));
            }
        }
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
        {
            return bad(format!(
                "{} query heads cannot be grouped over {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even and non-zero",
                self.head_dim
            ));
        }
        if self.max_seq_len == 0 {
            return bad("context length must be non-zero".into());
        }
        for (name, value) in [
            ("embedding_scale", self.features.embedding_scale),
            ("attention_scale", self.features.attention_scale),
            ("final_logit_softcap", self.features.final_logit_softcap),
        ] {
            if let Some(v) = value {
                positive(name, v)?;
            }
        }
        if let Some(w) = &self.features.sliding_window {
            if w.size == 0 || w.global_every == 0 {
                return bad(format!(
                    "sliding window of {} tokens with a global block every {} must be non-zero",
                    w.size, w.global_every
                ));
            }
            positive("sliding_window.local_rope_theta", w.local_rope_theta)?;
            if let Some(blocks) = &w.global_blocks {
                if !blocks.windows(2).all(|p| p[0] < p[1])
                    || blocks.last().is_some_and(|&b| b >= self.n_blocks)
                {
                    return bad(format!(
                        "global blocks {blocks:?} must increase and lie below {} blocks",
                        self.n_blocks
                    ));
                }
            }
        }
        Ok(())
    }

    /// Upper bounds [`LlamaConfig::validate`] enforces, in the order n_blocks, hidden_size,
    /// intermediate_size, n_heads, n_kv_heads, head_dim, vocab_size, max_seq_len: far above
    /// any released Llama-family model, low enough that every product of two sizes fits a
    /// `usize` and the rotary tables (`max_seq_len x head_dim`) stay allocatable.
    pub const LIMITS: [(&'static str, usize); 8] = [
        ("n_blocks", pudding_core::omission::MAX_BLOCKS),
        ("hidden_size", 1 << 17),
        ("intermediate_size", 1 << 19),
        ("n_heads", 1 << 12),
        ("n_kv_heads", 1 << 12),
        ("head_dim", HEAD_DIM_LIMIT),
        ("vocab_size", 1 << 23),
        ("max_seq_len", 1 << 20),
    ];

    /// The shape of SmolLM2-135M (30 blocks, hidden 576, FFN 1536, 9/3 heads, vocabulary
    /// 49152, tied head), with a context of `max_seq_len` tokens.
    pub fn smollm2_135m_shape(max_seq_len: usize) -> Self {
        Self {
            architecture: "llama".into(),
            n_blocks: 30,
            hidden_size: 576,
            intermediate_size: 1536,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            vocab_size: 49152,
            rope_theta: 100_000.0,
            rope_scaling: None,
            rope_freq_factors: None,
            rms_norm_eps: 1e-5,
            max_seq_len,
            tie_word_embeddings: true,
            attention_bias: false,
            features: FamilyFeatures::default(),
        }
    }

    /// The shape of Llama-3.1-8B (32 blocks, hidden 4096, FFN 14336, 32/8 heads,
    /// vocabulary 128256, untied head, Llama-3 RoPE scaling), with a context of
    /// `max_seq_len` tokens (the rotary tables are sized to it).
    pub fn llama31_8b_shape(max_seq_len: usize) -> Self {
        Self {
            architecture: "llama".into(),
            n_blocks: 32,
            hidden_size: 4096,
            intermediate_size: 14336,
            n_heads: 32,
            n_kv_heads: 8,
            head_dim: 128,
            vocab_size: 128_256,
            rope_theta: 500_000.0,
            rope_scaling: Some(Llama3RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            rope_freq_factors: None,
            rms_norm_eps: 1e-5,
            max_seq_len,
            tie_word_embeddings: false,
            attention_bias: false,
            features: FamilyFeatures::default(),
        }
    }

    /// Whether block `index` attends through the sliding window (else globally).
    pub fn is_sliding(&self, index: usize) -> bool {
        self.features
            .sliding_window
            .as_ref()
            .is_some_and(|w| !w.is_global(index))
    }

    /// The factor on attention scores: [`FamilyFeatures::attention_scale`] or
    /// `1 / sqrt(head_dim)`.
    pub fn score_scale(&self) -> f64 {
        self.features
            .attention_scale
            .map_or(1.0 / (self.head_dim as f64).sqrt(), f64::from)
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Multiply-accumulates per token of one block (projections + MLP, attention scores
    /// excluded), used for ideal speed-up ratios.
    pub fn block_macs_per_token(&self) -> u64 {
        let d = self.hidden_size as u64;
        let q = (self.n_heads * self.head_dim) as u64;
        let kv = (self.n_kv_heads * self.head_dim) as u64;
        let ffn = self.intermediate_size as u64;
        d * q + 2 * d * kv + q * d + 3 * d * ffn
    }

    /// Multiply-accumulates per token of the output head.
    pub fn head_macs_per_token(&self) -> u64 {
        (self.hidden_size * self.vocab_size) as u64
    }

    /// Ideal cost ratio (skipped / dense) per decoded token when `k` blocks are skipped,
    /// counting the block stack and the output head once each; an error if `k` exceeds the
    /// block count. (A prefill runs the head once for many positions, so its ideal is
    /// nearer the blocks' kept fraction: [`IdealCost::ratio`].)
    pub fn ideal_ratio(&self, k: usize) -> Result<f64, ModelError> {
        if k > self.n_blocks {
            return Err(ModelError::Config(format!(
                "cannot skip {k} blocks of a {}-block model",
                self.n_blocks
            )));
        }
        Ok(IdealCost::of(self).ratio(k, 1, 1))
    }
}

/// Multiply-accumulates per token of one block and of the output head: what an ideal
/// speed-up ratio counts (attention scores, norms and the embedding lookup are left out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IdealCost {
    /// Blocks of the model.
    pub n_blocks: usize,
    /// Multiply-accumulates of one block per token position.
    pub block_macs: f64,
    /// Multiply-accumulates of the output head per position it is applied to.
    pub head_macs: f64,
}

impl IdealCost {
    /// The costs of a Llama-family model.
    pub fn of(config: &LlamaConfig) -> Self {
        Self {
            n_blocks: config.n_blocks,
            block_macs: config.block_macs_per_token() as f64,
            head_macs: config.head_macs_per_token() as f64,
        }
    }

    /// Skipped / dense cost of a workload that runs `positions` token positions through
    /// the block stack and the head on `heads` of them, with `k` blocks skipped. A prefill
    /// of n tokens is `(n, 1)` (the head only reads the last position); a prompt of p
    /// tokens plus g generated ones is `(p + g - 1, g)`. `k` is at most `n_blocks`.
    pub fn ratio(&self, k: usize, positions: usize, heads: usize) -> f64 {
        let (positions, heads) = (positions as f64, heads as f64);
        let head = self.head_macs * heads;
        let dense = self.block_macs * positions * self.n_blocks as f64 + head;
        let kept = self.n_blocks.saturating_sub(k) as f64;
        (self.block_macs * positions * kept + head) / dense
    }
}

/// The largest head size [`LlamaConfig::validate`] accepts.
const HEAD_DIM_LIMIT: usize = 1 << 12;

/// Linear RoPE scaling as per-frequency divisors: `head_dim / 2` copies of `factor`. The
/// head size is checked against [`LlamaConfig::LIMITS`] first, since this table is built
/// before [`LlamaConfig::validate`] runs and a corrupt header could ask for gigabytes.
fn linear_rope_factors(factor: f32, head_dim: usize) -> Result<Vec<f32>, ModelError> {
    let limit = HEAD_DIM_LIMIT;
    if head_dim > limit {
        return Err(ModelError::Config(format!(
            "head_dim = {head_dim} is larger than any supported model (at most {limit}); \
             the configuration is corrupt"
        )));
    }
    Ok(vec![factor; head_dim / 2])
}
