//! [`LlamaConfig`] from a Hugging Face `config.json` (llama, mistral, qwen2, gemma3_text and
//! the multimodal gemma3's `text_config`).

use super::{
    linear_rope_factors, Activation, FamilyFeatures, Llama3RopeScaling, LlamaConfig, SlidingWindow,
};
use crate::ModelError;
use serde::Deserialize;

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
}
