//! [`LlamaConfig`] from GGUF metadata (`general.architecture` and the `{arch}.*` keys).

use super::{linear_rope_factors, Activation, FamilyFeatures, LlamaConfig, SlidingWindow};
use crate::gguf::GgufFile;
use crate::ModelError;

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

impl LlamaConfig {
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
}
