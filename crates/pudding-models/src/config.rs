//! [`LlamaConfig`]: the hyper-parameters of a Llama-family decoder, read from a Hugging
//! Face `config.json` or from GGUF metadata.

use crate::gguf::GgufFile;
use crate::ModelError;
use serde::{Deserialize, Serialize};

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

#[derive(Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    num_hidden_layers: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rope_theta: Option<f32>,
    rope_scaling: Option<HfRopeScaling>,
    rms_norm_eps: Option<f32>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    // Llama / Mistral / Qwen2: the MLP's activation and biases.
    hidden_act: Option<String>,
    mlp_bias: Option<bool>,
    // Gemma 3 (`gemma3_text`) keys.
    hidden_activation: Option<String>,
    query_pre_attn_scalar: Option<f32>,
    sliding_window: Option<usize>,
    sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    private_sliding_window_pattern: Option<usize>,
    layer_types: Option<Vec<String>>,
    rope_local_base_freq: Option<f32>,
    final_logit_softcapping: Option<f32>,
    attn_logit_softcapping: Option<f32>,
    use_bidirectional_attention: Option<bool>,
    // Qwen2: whether `sliding_window` applies at all.
    use_sliding_window: Option<bool>,
}

impl HfConfig {
    /// The context pudding serves: `max_position_embeddings`, capped at the attention
    /// window of a Mistral (v0.1: `sliding_window` 4096) or a Qwen2 with
    /// `use_sliding_window`, whose every block attends through the window. pudding's
    /// Llama blocks attend globally, which is exact as long as the whole sequence fits the
    /// window; longer prompts are then refused as over-long instead of answered wrongly.
    /// (Gemma 3's interleaved windows are implemented, not capped.)
    fn context_without_window(&self) -> usize {
        let context = self.max_position_embeddings.unwrap_or(2048);
        let windowed = match self.model_type.as_deref() {
            Some("mistral") => true,
            Some("qwen2") => self.use_sliding_window == Some(true),
            _ => false,
        };
        match self.sliding_window {
            Some(window) if windowed && window > 0 => context.min(window),
            _ => context,
        }
    }

    /// Refuses Llama / Mistral / Qwen2 settings the blocks do not implement, which would
    /// otherwise load and give wrong logits: an MLP activation other than SiLU, MLP
    /// biases, and (outside Qwen2, whose attention biases are on q/k/v only) attention
    /// biases, which transformers' Llama also puts on `o_proj`.
    fn check_llama_mlp_and_biases(&self, model_type: &str) -> Result<(), ModelError> {
        let bad = |m: String| {
            Err(ModelError::Config(format!(
                "config.json ({model_type}): {m}"
            )))
        };
        match self.hidden_act.as_deref() {
            None | Some("silu") | Some("swish") => {}
            Some(other) => return bad(format!("hidden_act {other:?} is not supported (silu)")),
        }
        if self.mlp_bias == Some(true) {
            return bad("mlp_bias (biases on the MLP projections) is not supported".into());
        }
        if model_type != "qwen2" && self.attention_bias == Some(true) {
            return bad(
                "attention_bias (biases on q/k/v/o, as transformers' Llama adds them) is not \
                 supported"
                    .into(),
            );
        }
        Ok(())
    }

    /// Gemma 3's features from its `config.json` keys (transformers' `Gemma3TextConfig`
    /// defaults where a key is missing). Refuses what the model does not implement:
    /// attention-logit soft-capping (Gemma 2), bidirectional attention (EmbeddingGemma) and
    /// a sliding / global layout other than one global block every N. `head_dim` is the
    /// configuration's (256 when the key is missing).
    fn gemma3_features(&self, head_dim: usize) -> Result<FamilyFeatures, ModelError> {
        let bad = |m: String| {
            Err(ModelError::Config(format!(
                "config.json (gemma3_text): {m}"
            )))
        };
        match self.hidden_activation.as_deref() {
            None | Some("gelu_pytorch_tanh") | Some("gelu_tanh") => {}
            Some(other) => return bad(format!("hidden_activation {other:?} is not supported")),
        }
        if self.attn_logit_softcapping.is_some() {
            return bad("attention-logit soft-capping (Gemma 2) is not supported".into());
        }
        if self.use_bidirectional_attention == Some(true) {
            return bad("bidirectional attention (an embedding model) is not a decoder".into());
        }
        let size = self.sliding_window.unwrap_or(4096);
        let local_rope_theta = self.rope_local_base_freq.unwrap_or(10_000.0);
        let window = match &self.layer_types {
            Some(types) => {
                if types.len() != self.num_hidden_layers {
                    return bad(format!(
                        "layer_types has {} entries for {} layers",
                        types.len(),
                        self.num_hidden_layers
                    ));
                }
                let mut global = Vec::with_capacity(types.len());
                for (i, t) in types.iter().enumerate() {
                    global.push(match t.as_str() {
                        "full_attention" => true,
                        "sliding_attention" => false,
                        other => {
                            return bad(format!(
                                "layer {i} is {other:?}; only full_attention and \
                                 sliding_attention are supported"
                            ))
                        }
                    });
                }
                SlidingWindow::with_block_kinds(size, local_rope_theta, &global)
            }
            None => SlidingWindow {
                size,
                global_every: self
                    .sliding_window_pattern
                    .or(self.private_sliding_window_pattern)
                    .unwrap_or(6),
                local_rope_theta,
                global_blocks: None,
            },
        };
        let scalar = self.query_pre_attn_scalar.unwrap_or(256.0);
        Ok(FamilyFeatures {
            activation: Activation::GeluTanh,
            embedding_scale: Some((self.hidden_size as f32).sqrt()),
            qk_norm: true,
            sandwich_norms: true,
            // As the GGUF path reads it: unset when it is the default 1 / sqrt(head_dim).
            attention_scale: (scalar != head_dim as f32).then(|| 1.0 / scalar.sqrt()),
            sliding_window: Some(window),
            final_logit_softcap: self.final_logit_softcapping,
        })
    }
}

/// Gemma 3's window from GGUF metadata. `<arch>.attention.sliding_window_pattern` is
/// either a period `p` (block `i` is global iff `(i + 1) % p == 0`) or one flag per block
/// (`true`: windowed), as llama.cpp reads it; without the key llama.cpp's default for
/// Gemma 3 applies, one global block in six. A pruned export writes the flags.
fn gguf_sliding_window(
    file: &GgufFile,
    architecture: &str,
    size: usize,
    local_rope_theta: f32,
    n_blocks: usize,
) -> Result<SlidingWindow, ModelError> {
    let key = format!("{architecture}.attention.sliding_window_pattern");
    let bad = |m: String| ModelError::Config(format!("{key}: {m}"));
    let periodic = |global_every| SlidingWindow {
        size,
        global_every,
        local_rope_theta,
        global_blocks: None,
    };
    match file.get(&key) {
        None => Ok(periodic(6)),
        Some(value) => match value.as_array() {
            Some(flags) => {
                if flags.len() != n_blocks {
                    return Err(bad(format!("{} flags for {n_blocks} blocks", flags.len())));
                }
                let global = flags
                    .iter()
                    .map(|f| match (f.as_bool(), f.as_i64()) {
                        (Some(windowed), _) => Ok(!windowed),
                        (None, Some(n @ (0 | 1))) => Ok(n == 0),
                        _ => Err(bad(format!("{} is not a per-block flag", f.type_name()))),
                    })
                    .collect::<Result<Vec<bool>, _>>()?;
                Ok(SlidingWindow::with_block_kinds(
                    size,
                    local_rope_theta,
                    &global,
                ))
            }
            None => match value.as_u64() {
                // Period 0: every block windowed.
                Some(0) => Ok(SlidingWindow {
                    global_blocks: Some(Vec::new()),
                    ..periodic(6)
                }),
                Some(p) => Ok(periodic(p as usize)),
                None => Err(bad(format!(
                    "{} is neither a period nor flags",
                    value.type_name()
                ))),
            },
        },
    }
}

/// transformers' `Gemma3TextConfig` defaults of the keys pudding reads. Published Gemma 3
/// configs rely on them: a multimodal checkpoint's `text_config` (gemma-3-4b and up) lists
/// little besides the sizes that differ from these.
fn gemma3_text_defaults() -> serde_json::Value {
    serde_json::json!({
        "vocab_size": 262208,
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "tie_word_embeddings": true,
        "attention_bias": false,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    })
}

/// The text model's configuration in a Hugging Face `config.json` value: for a multimodal
/// Gemma 3 (`model_type` gemma3) its `text_config`, else the value itself; a Gemma 3 text
/// configuration gets `Gemma3TextConfig`'s defaults for the keys it omits (this table is
/// then the one source of Gemma 3's defaults; `from_hf_json`'s own fallbacks serve the
/// other families).
pub(crate) fn hf_text_config(value: &serde_json::Value) -> Result<serde_json::Value, ModelError> {
    let bad = |m: &str| Err(ModelError::Config(format!("config.json: {m}")));
    let Some(top) = value.as_object() else {
        return bad("not a JSON object");
    };
    let mut text = match top.get("model_type").and_then(|t| t.as_str()) {
        Some("gemma3") => {
            let Some(inner) = top.get("text_config").and_then(|t| t.as_object()) else {
                return bad(
                    "a multimodal Gemma 3 (model_type gemma3) without a text_config object",
                );
            };
            let mut inner = inner.clone();
            match inner.get("model_type").and_then(|t| t.as_str()) {
                None | Some("gemma3_text") => {}
                Some(other) => {
                    return bad(&format!(
                        "the text_config of a gemma3 checkpoint has model_type {other:?}, \
                         not gemma3_text"
                    ))
                }
            }
            inner.insert("model_type".into(), "gemma3_text".into());
            inner
        }
        _ => top.clone(),
    };
    if text.get("model_type").and_then(|t| t.as_str()) == Some("gemma3_text") {
        if let serde_json::Value::Object(defaults) = gemma3_text_defaults() {
            for (key, default) in defaults {
                // Only missing keys: an explicit null stays null, as in transformers.
                text.entry(key).or_insert(default);
            }
        }
    }
    Ok(serde_json::Value::Object(text))
}

impl LlamaConfig {
    /// Parses a Hugging Face `config.json`: model types llama, mistral, qwen2 and
    /// gemma3_text (the text-only Gemma 3, whose architecture is named `gemma3` as in GGUF),
    /// and the multimodal gemma3, whose language model (its `text_config`) is read and whose
    /// vision tower is ignored.
    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        Self::from_hf_text_config(&hf_text_config(&value)?)
    }

    /// [`Self::from_hf_json`] on the text model's configuration already picked out (and
    /// completed with Gemma 3's defaults) by [`hf_text_config`].
    pub(crate) fn from_hf_text_config(text_config: &serde_json::Value) -> Result<Self, ModelError> {
        let mut hf = HfConfig::deserialize(text_config)
            .map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        // transformers cannot load a config.json without model_type either.
        let model_type = hf.model_type.clone().ok_or_else(|| {
            ModelError::Config(
                "config.json has no model_type (llama, mistral, qwen2, gemma3_text, gemma3)".into(),
            )
        })?;
        let gemma3 = model_type == "gemma3_text";
        if !gemma3 && !matches!(model_type.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(ModelError::Config(format!(
                "model_type {model_type:?} is not a Llama-family decoder (llama, mistral, qwen2, \
                 gemma3_text, gemma3)"
            )));
        }
        if !gemma3 {
            hf.check_llama_mlp_and_biases(&model_type)?;
        }
        let architecture = if gemma3 {
            "gemma3".to_string()
        } else {
            model_type
        };
        let default_head_dim = if gemma3 {
            256
        } else {
            hf.hidden_size / hf.num_attention_heads.max(1)
        };
        let head_dim = hf.head_dim.unwrap_or(default_head_dim);
        let features = if gemma3 {
            hf.gemma3_features(head_dim)?
        } else {
            FamilyFeatures::default()
        };
        let context = hf.context_without_window();
        let mut rope_freq_factors = None;
        let rope_scaling = match hf.rope_scaling.take() {
            None => None,
            Some(s) if s.rope_type.as_deref() == Some("default") => None,
            Some(s) if s.rope_type.as_deref() == Some("linear") => {
                let factor = s.factor.ok_or_else(|| {
                    ModelError::Config("rope_scaling linear without a factor".into())
                })?;
                rope_freq_factors = Some(linear_rope_factors(factor, head_dim)?);
                None
            }
            Some(s) if s.rope_type.as_deref() == Some("llama3") => {
                // transformers reads all four keys and fails without one; a guessed value
                // would shift every position's frequencies.
                let missing =
                    |key: &str| ModelError::Config(format!("rope_scaling llama3 without {key}"));
                Some(Llama3RopeScaling {
                    factor: s.factor.ok_or_else(|| missing("factor"))?,
                    low_freq_factor: s
                        .low_freq_factor
                        .ok_or_else(|| missing("low_freq_factor"))?,
                    high_freq_factor: s
                        .high_freq_factor
                        .ok_or_else(|| missing("high_freq_factor"))?,
                    original_max_position_embeddings: s
                        .original_max_position_embeddings
                        .ok_or_else(|| missing("original_max_position_embeddings"))?,
                })
            }
            Some(s) => {
                return Err(ModelError::Config(format!(
                    "rope_scaling type {:?} is not supported (default, linear, llama3)",
                    s.rope_type
                )))
            }
        };
        let is_qwen2 = architecture == "qwen2";
        let config = Self {
            n_blocks: hf.num_hidden_layers,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            n_heads: hf.num_attention_heads,
            n_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim,
            vocab_size: hf.vocab_size,
            rope_theta: hf
                .rope_theta
                .unwrap_or(if gemma3 { 1_000_000.0 } else { 10_000.0 }),
            rope_scaling,
            rope_freq_factors,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            max_seq_len: context,
            // Gemma3TextConfig ties by default and its config.json usually omits the key.
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(gemma3),
            attention_bias: hf.attention_bias.unwrap_or(is_qwen2),
            architecture,
            features,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the configuration from GGUF metadata (`general.architecture` and the
    /// `{arch}.*` keys). Whether embeddings are tied is decided by the absence of an
    /// `output.weight` tensor.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let architecture = file.get_str("general.architecture")?.to_string();
        if !matches!(architecture.as_str(), "llama" | "qwen2" | "gemma3") {
            return Err(ModelError::Config(format!(
                "GGUF architecture {architecture:?} is not supported (llama, qwen2, gemma3)"
            )));
        }
        let gemma3 = architecture == "gemma3";
        let key = |k: &str| format!("{architecture}.{k}");
        let u = |k: &str| -> Result<usize, ModelError> { Ok(file.get_u32(&key(k))? as usize) };
        // An absent optional key takes its default; a present one of the wrong type is an
        // error, never silently replaced.
        let optional = |k: &str| -> Result<Option<usize>, ModelError> {
            Ok(GgufFile::optional(file.get_u32(&key(k)))?.map(|v| v as usize))
        };
        let n_heads = u("attention.head_count")?;
        let hidden_size = u("embedding_length")?;
        // Gemma's heads are wider than hidden / heads; llama.cpp then writes key_length.
        let rotary_dims = optional("rope.dimension_count")?;
        let key_length = optional("attention.key_length")?;
        let head_dim = match (rotary_dims, key_length) {
            (Some(r), Some(k)) if r != k => {
                return Err(ModelError::Config(format!(
                    "RoPE on {r} of {k} head dimensions (partial rotary) is not supported"
                )))
            }
            (Some(d), _) | (None, Some(d)) => d,
            (None, None) => hidden_size / n_heads.max(1),
        };
        if let Some(v) = optional("attention.value_length")? {
            if v != head_dim {
                return Err(ModelError::Config(format!(
                    "value heads of width {v} differ from key heads of width {head_dim}"
                )));
            }
        }
        let optional_f32 = |k: &str| -> Result<Option<f32>, ModelError> {
            Ok(GgufFile::optional(file.get_f32(&key(k)))?)
        };
        if optional_f32("attn_logit_softcapping")?.is_some() {
            return Err(ModelError::Config(
                "attention logit soft-capping (Gemma 2) is not supported".into(),
            ));
        }
        let vocab_size = match optional("vocab_size")? {
            Some(v) => v,
            None => file.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_theta =
            GgufFile::optional(file.get_f32(&key("rope.freq_base")))?.unwrap_or(10_000.0);
        // Llama 3.x GGUFs carry their RoPE scaling as a `rope_freqs` tensor of per-frequency
        // divisors; linear scaling comes as `rope.scaling.type` + `rope.scaling.factor`.
        // Other scalings would silently change every logit if ignored, so they are refused.
        let mut rope_freq_factors = match file.tensor("rope_freqs.weight") {
            Ok(_) => Some(file.dequantize("rope_freqs.weight")?),
            Err(_) => None,
        };
        match GgufFile::optional(file.get_str(&key("rope.scaling.type")))? {
            None | Some("none") => {}
            Some("linear") if rope_freq_factors.is_none() => {
                let factor = file.get_f32(&key("rope.scaling.factor"))?;
                rope_freq_factors = Some(linear_rope_factors(factor, head_dim)?);
            }
            Some(kind) => {
                return Err(ModelError::Config(format!(
                    "GGUF RoPE scaling {kind:?} is not supported (none, linear, and Llama 3's \
                     rope_freqs factors are)"
                )))
            }
        }
        let config = Self {
            n_blocks: u("block_count")?,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            n_heads,
            n_kv_heads: optional("attention.head_count_kv")?.unwrap_or(n_heads),
            head_dim,
            vocab_size,
            rope_theta,
            rope_scaling: None,
            rope_freq_factors,
            rms_norm_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            max_seq_len: u("context_length")?,
            tie_word_embeddings: file.tensor("output.weight").is_err(),
            attention_bias: architecture == "qwen2",
            // Gemma 3 (llama.cpp's `LLM_ARCH_GEMMA3`): GeGLU, embeddings scaled by
            // sqrt(d), per-head q/k norms, post-attention and post-feed-forward norms,
            // five sliding-window blocks (RoPE base 10000) per global block. llama.cpp's
            // converter already added 1 to every norm weight (HF computes `x * (1 + w)`).
            features: FamilyFeatures {
                activation: if gemma3 {
                    Activation::GeluTanh
                } else {
                    Activation::Silu
                },
                embedding_scale: gemma3.then(|| (hidden_size as f32).sqrt()),
                qk_norm: gemma3,
                sandwich_norms: gemma3,
                attention_scale: match optional_f32("attention.scale")? {
                    Some(scale) => Some(scale),
                    // Gemma 3 27B scales by hidden / heads, the others by head_dim (both are
                    // `query_pre_attn_scalar` in the HF config), as llama.cpp does.
                    None if gemma3 && u("block_count")? == 62 => {
                        Some(1.0 / ((hidden_size / n_heads.max(1)) as f32).sqrt())
                    }
                    None => None,
                },
                sliding_window: if gemma3 {
                    Some(gguf_sliding_window(
                        file,
                        &architecture,
                        u("attention.sliding_window")?,
                        optional_f32("rope.freq_base_swa")?.unwrap_or(10_000.0),
                        u("block_count")?,
                    )?)
                } else {
                    None
                },
                final_logit_softcap: optional_f32("final_logit_softcapping")?,
            },
            architecture,
        };
        config.validate()?;
        Ok(config)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialised configuration enters every model fingerprint (and so every committed
    /// pool, router and result file): a plain Llama's must not mention the family features,
    /// and Gemma's must keep them flat. The strings are those written before the features
    /// moved into [`FamilyFeatures`].
    #[test]
    fn serialised_form_is_stable_and_round_trips() {
        let plain = LlamaConfig::smollm2_135m_shape(2048);
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"architecture":"llama","n_blocks":30,"hidden_size":576,"intermediate_size":1536,"n_heads":9,"n_kv_heads":3,"head_dim":64,"vocab_size":49152,"rope_theta":100000.0,"rope_scaling":null,"rms_norm_eps":0.00001,"max_seq_len":2048,"tie_word_embeddings":true,"attention_bias":false}"#
        );
        let gemma_json = r#"{"architecture":"gemma3","n_blocks":18,"hidden_size":640,"intermediate_size":2048,"n_heads":4,"n_kv_heads":1,"head_dim":256,"vocab_size":262144,"rope_theta":1000000.0,"rope_scaling":null,"rms_norm_eps":0.000001,"max_seq_len":32768,"tie_word_embeddings":true,"attention_bias":false,"activation":"gelu_tanh","embedding_scale":25.298222,"qk_norm":true,"sandwich_norms":true,"sliding_window":{"size":512,"global_every":6,"local_rope_theta":10000.0}}"#;
        let gemma: LlamaConfig = serde_json::from_str(gemma_json).unwrap();
        assert_eq!(gemma.features.activation, Activation::GeluTanh);
        assert!(gemma.features.qk_norm && gemma.features.sandwich_norms);
        assert_eq!(gemma.features.embedding_scale, Some(25.298222));
        assert_eq!(gemma.features.attention_scale, None);
        assert!(gemma.is_sliding(4) && !gemma.is_sliding(5));
        assert_eq!(serde_json::to_string(&gemma).unwrap(), gemma_json);
        let back: LlamaConfig =
            serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
        assert_eq!(back, plain);
        assert_eq!(back.features, FamilyFeatures::default());
    }

    #[test]
    fn parses_hf_config() {
        let text = r#"{"model_type":"llama","num_hidden_layers":30,"hidden_size":576,
            "intermediate_size":1536,"num_attention_heads":9,"num_key_value_heads":3,
            "vocab_size":49152,"rope_theta":100000.0,"rms_norm_eps":1e-5,
            "max_position_embeddings":8192,"tie_word_embeddings":true}"#;
        let c = LlamaConfig::from_hf_json(text).unwrap();
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.group_size(), 3);
        assert!(c.tie_word_embeddings && !c.attention_bias);
        // SmolLM2's head costs 576 * 49152 MACs per token, exactly 8 blocks' worth
        // (576 * (2*576 + 2*192 + 3*1536) = 3,538,944), so skipping 6 of 30 blocks leaves
        // (24 + 8) / (30 + 8) of the work.
        assert_eq!(c.block_macs_per_token(), 3_538_944);
        assert_eq!(c.head_macs_per_token(), 8 * 3_538_944);
        let r = c.ideal_ratio(6).unwrap();
        assert!((r - 32.0 / 38.0).abs() < 1e-12, "{r}");
        assert!(c.ideal_ratio(31).is_err());
    }

    /// google/gemma-3-4b-it's `config.json` as published: a multimodal Gemma 3 whose
    /// `text_config` leaves heads, head size, vocabulary and context to
    /// `Gemma3TextConfig`'s defaults.
    #[test]
    fn parses_a_multimodal_gemma3_config_with_the_text_defaults() {
        let text = r#"{
          "architectures": ["Gemma3ForConditionalGeneration"],
          "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
          "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
          "model_type": "gemma3",
          "text_config": {
            "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
            "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024
          },
          "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
          "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
            "model_type": "siglip_vision_model", "num_attention_heads": 16,
            "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}
        }"#;
        let c = LlamaConfig::from_hf_json(text).unwrap();
        assert_eq!(c.architecture, "gemma3");
        assert_eq!(
            (c.n_blocks, c.hidden_size, c.intermediate_size),
            (34, 2560, 10240)
        );
        assert_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (8, 4, 256));
        assert_eq!((c.vocab_size, c.max_seq_len), (262_208, 131_072));
        assert!(c.tie_word_embeddings && !c.attention_bias);
        assert_eq!(c.rope_theta, 1_000_000.0);
        // Linear scaling by 8 on the global blocks (the windowed ones are never scaled).
        assert_eq!(c.rope_freq_factors.as_deref(), Some(&[8.0; 128][..]));
        let window = c.features.sliding_window.as_ref().unwrap();
        assert_eq!((window.size, window.global_every), (1024, 6));
        assert_eq!(window.local_rope_theta, 10_000.0);
        // query_pre_attn_scalar 256 = head_dim: the default 1/sqrt(head_dim) scale.
        assert_eq!(c.features.attention_scale, None);
        assert_eq!(c.features.embedding_scale, Some(2560f32.sqrt()));
    }

    /// A Mistral v0.1 (or a Qwen2 with `use_sliding_window`) attends through a window in
    /// every block: the served context is capped at the window, where global attention is
    /// exact. No window, or Qwen2's unused one, leaves the context as configured.
    #[test]
    fn whole_model_sliding_windows_cap_the_context() {
        let config = |model_type: &str, extra: &str| {
            let text = format!(
                r#"{{"model_type":"{model_type}","num_hidden_layers":2,"hidden_size":64,
                "intermediate_size":128,"num_attention_heads":4,"num_key_value_heads":2,
                "vocab_size":100,"max_position_embeddings":32768{extra}}}"#
            );
            LlamaConfig::from_hf_json(&text).unwrap().max_seq_len
        };
        assert_eq!(config("mistral", r#","sliding_window":4096"#), 4096);
        assert_eq!(config("mistral", r#","sliding_window":null"#), 32768);
        assert_eq!(config("mistral", ""), 32768);
        assert_eq!(
            config(
                "qwen2",
                r#","sliding_window":4096,"use_sliding_window":false"#
            ),
            32768
        );
        assert_eq!(
            config(
                "qwen2",
                r#","sliding_window":4096,"use_sliding_window":true"#
            ),
            4096
        );
        assert_eq!(config("llama", r#","sliding_window":4096"#), 32768);
    }

    #[test]
    fn rejects_bad_configs() {
        let text = r#"{"num_hidden_layers":2,"hidden_size":64,"intermediate_size":8,
            "num_attention_heads":3,"num_key_value_heads":2,"vocab_size":10}"#;
        assert!(matches!(
            LlamaConfig::from_hf_json(text),
            Err(ModelError::Config(_))
        ));
        assert!(LlamaConfig::from_hf_json("{").is_err());
        let bert = r#"{"model_type":"bert","num_hidden_layers":2,"hidden_size":64,
            "intermediate_size":8,"num_attention_heads":4,"vocab_size":10}"#;
        assert!(LlamaConfig::from_hf_json(bert).is_err());
        // A corrupt head size under linear RoPE scaling is an error, not a huge allocation
        // before validation (1e15 / 2 factors would be 2 PB).
        let huge_head = r#"{"model_type":"llama","num_hidden_layers":2,"hidden_size":64,
            "intermediate_size":8,"num_attention_heads":4,"vocab_size":10,
            "head_dim":1000000000000000,"rope_scaling":{"rope_type":"linear","factor":2.0}}"#;
        let err = LlamaConfig::from_hf_json(huge_head).unwrap_err();
        assert!(err.to_string().contains("head_dim"), "{err}");
    }

    /// Keys whose values the blocks do not implement, or that transformers itself needs,
    /// are refused rather than defaulted: a missing model_type, a llama3 RoPE scaling
    /// without one of its four keys, a non-SiLU MLP, MLP biases, Llama attention biases.
    #[test]
    fn refuses_settings_that_would_give_wrong_logits() {
        let with = |extra: &str| {
            LlamaConfig::from_hf_json(&format!(
                r#"{{"num_hidden_layers":2,"hidden_size":64,"intermediate_size":128,
                "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100{extra}}}"#
            ))
        };
        assert!(with(r#","model_type":"llama""#).is_ok());
        assert!(with(r#","model_type":"llama","hidden_act":"silu","mlp_bias":false"#).is_ok());
        assert!(with(r#","model_type":"qwen2","attention_bias":true"#).is_ok());
        let llama3 = r#""rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192"#;
        assert!(with(&format!(
            r#","model_type":"llama","rope_scaling":{{{llama3}}}"#
        ))
        .is_ok());
        let refused = [
            ("", "model_type"),
            (r#","model_type":"llama","hidden_act":"gelu""#, "hidden_act"),
            (r#","model_type":"mistral","mlp_bias":true"#, "mlp_bias"),
            (
                r#","model_type":"llama","attention_bias":true"#,
                "attention_bias",
            ),
            (
                r#","model_type":"llama","rope_scaling":{"rope_type":"llama3","low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
                "factor",
            ),
            (
                r#","model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0}"#,
                "original_max_position_embeddings",
            ),
        ];
        for (extra, key) in refused {
            let err = with(extra).unwrap_err();
            assert!(
                matches!(&err, ModelError::Config(m) if m.contains(key)),
                "{extra}: {err}"
            );
        }
    }
}
