//! Tiny random Llama checkpoints written to disk in real formats (GGUF and Hugging Face
//! safetensors), for unit tests here and in the other crates. The same spec and seed give
//! the same weights in both formats, so the two loaders can be checked against each other.

use crate::gguf::{GgmlType, GgufWriter};
use crate::sampling::SplitMix64;
use crate::weights::permute_rotary_rows;
use crate::{LlamaLm, ModelError};
use std::collections::BTreeMap;
use std::path::Path;

/// Shape of a tiny Llama for tests.
#[derive(Clone, Debug)]
pub struct TinyLlamaSpec {
    /// Transformer blocks.
    pub n_blocks: usize,
    /// Hidden size (multiple of 32 for quantised storage).
    pub hidden: usize,
    /// SwiGLU width (multiple of 32).
    pub ffn: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Context length.
    pub context: usize,
    /// Weight seed.
    pub seed: u64,
    /// Storage type of the matrices in GGUF (norms are always F32).
    pub matrix_type: GgmlType,
}

impl Default for TinyLlamaSpec {
    fn default() -> Self {
        Self {
            n_blocks: 4,
            hidden: 64,
            ffn: 128,
            n_heads: 4,
            n_kv_heads: 2,
            context: 64,
            seed: 7,
            matrix_type: GgmlType::F32,
        }
    }
}

/// GPT-2's byte -> printable-character map used by byte-level BPE.
pub fn bytes_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut map = vec![' '; 256];
    for (b, c) in printable.iter().zip(chars) {
        map[*b as usize] = char::from_u32(c).unwrap_or('?');
    }
    map
}

/// The tiny vocabulary: 3 control tokens, the 256 byte tokens, then a few merged tokens.
/// Returns (tokens, token types, merges).
pub fn tiny_vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut types = vec![3, 3, 3];
    for c in bytes_to_unicode() {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges = vec!["Ġ t", "h e", "Ġt he", "i n", "Ġ a"];
    for m in &merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    (
        tokens,
        types,
        merges.iter().map(|s| s.to_string()).collect(),
    )
}

/// All weights of a tiny model by HF name, HF layout (row-major `[out, in]`).
pub fn tiny_weights(
    spec: &TinyLlamaSpec,
    vocab: usize,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut rng = SplitMix64::new(spec.seed);
    let mut normal = |n: usize, std: f64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                // Box-Muller.
                let u1 = rng.next_f64().max(1e-12);
                let u2 = rng.next_f64();
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
            })
            .collect()
    };
    let (d, e) = (spec.hidden, spec.hidden / spec.n_heads);
    let (qd, kvd) = (spec.n_heads * e, spec.n_kv_heads * e);
    let mut w = BTreeMap::new();
    let mut add = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        w.insert(name, (shape, data));
    };
    add(
        "model.embed_tokens.weight".into(),
        vec![vocab, d],
        normal(vocab * d, 0.1),
    );
    let sd = |fan_in: usize| 1.0 / (fan_in as f64).sqrt();
    for i in 0..spec.n_blocks {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        add(
            p("self_attn.q_proj.weight"),
            vec![qd, d],
            normal(qd * d, sd(d)),
        );
        add(
            p("self_attn.k_proj.weight"),
            vec![kvd, d],
            normal(kvd * d, sd(d)),
        );
        add(
            p("self_attn.v_proj.weight"),
            vec![kvd, d],
            normal(kvd * d, sd(d)),
        );
        add(
            p("self_attn.o_proj.weight"),
            vec![d, qd],
            normal(d * qd, sd(qd)),
        );
        add(
            p("mlp.gate_proj.weight"),
            vec![spec.ffn, d],
            normal(spec.ffn * d, sd(d)),
        );
        add(
            p("mlp.up_proj.weight"),
            vec![spec.ffn, d],
            normal(spec.ffn * d, sd(d)),
        );
        add(
            p("mlp.down_proj.weight"),
            vec![d, spec.ffn],
            normal(d * spec.ffn, sd(spec.ffn)),
        );
        let norm: Vec<f32> = normal(d, 0.1).iter().map(|v| 1.0 + v).collect();
        add(p("input_layernorm.weight"), vec![d], norm.clone());
        add(
            p("post_attention_layernorm.weight"),
            vec![d],
            norm.iter().rev().copied().collect(),
        );
    }
    add("model.norm.weight".into(), vec![d], vec![1.0; d]);
    w
}

/// Builds the GGUF writer of a tiny Llama (metadata, tokenizer, tensors). Tests may edit
/// it (drop a tensor, change a key) before writing.
pub fn tiny_llama_gguf(spec: &TinyLlamaSpec) -> Result<GgufWriter, ModelError> {
    let (tokens, types, merges) = tiny_vocab();
    let e = spec.hidden / spec.n_heads;
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", "llama")
        .add_string("general.name", "tiny-test-llama")
        .add_u32("llama.block_count", spec.n_blocks as u32)
        .add_u32("llama.embedding_length", spec.hidden as u32)
        .add_u32("llama.feed_forward_length", spec.ffn as u32)
        .add_u32("llama.attention.head_count", spec.n_heads as u32)
        .add_u32("llama.attention.head_count_kv", spec.n_kv_heads as u32)
        .add_u32("llama.context_length", spec.context as u32)
        .add_u32("llama.rope.dimension_count", e as u32)
        .add_f32("llama.rope.freq_base", 10_000.0)
        .add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .add_string("tokenizer.ggml.model", "gpt2")
        .add_string("tokenizer.ggml.pre", "smollm")
        .add_str_array("tokenizer.ggml.tokens", &tokens)
        .add_i32_array("tokenizer.ggml.token_type", &types)
        .add_str_array("tokenizer.ggml.merges", &merges)
        .add_u32("tokenizer.ggml.eos_token_id", 2);
    for (name, (shape, data)) in tiny_weights(spec, tokens.len()) {
        let gguf_name = crate::weights::hf_to_gguf_name(&name).unwrap_or(name.clone());
        let data = if name.ends_with("q_proj.weight") {
            permute_rotary_rows(&data, spec.n_heads, e, shape[1])
        } else if name.ends_with("k_proj.weight") {
            permute_rotary_rows(&data, spec.n_kv_heads, e, shape[1])
        } else {
            data
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&v| v as u64).collect();
        let dtype = if shape.len() == 1 {
            GgmlType::F32
        } else {
            spec.matrix_type
        };
        w.add_tensor(&gguf_name, &dims, &data, dtype)?;
    }
    Ok(w)
}

/// The tiny Llama's GGUF writer with every tensor stored as F32 after `edit(gguf_name,
/// values)` has run on it: for tests that need one weight changed (a NaN, an overflow).
pub fn tiny_llama_gguf_edited(
    spec: &TinyLlamaSpec,
    mut edit: impl FnMut(&str, &mut [f32]),
) -> Result<GgufWriter, ModelError> {
    let file = crate::gguf::GgufFile::from_bytes(tiny_llama_gguf(spec)?.to_bytes()?)?;
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        // The writer sets the alignment itself.
        if k != "general.alignment" {
            w.add(k, v.clone());
        }
    }
    for t in file.tensors() {
        let mut data = file.dequantize(&t.name)?;
        edit(&t.name, &mut data);
        w.add_tensor(&t.name, &t.dims, &data, GgmlType::F32)?;
    }
    Ok(w)
}

/// Writes a tiny Llama GGUF file to `path`.
pub fn write_tiny_llama_gguf(spec: &TinyLlamaSpec, path: &Path) -> Result<(), ModelError> {
    tiny_llama_gguf(spec)?.write_to(path)?;
    Ok(())
}

/// Writes the same tiny Llama as a Hugging Face directory (config.json, one F32
/// model.safetensors, tokenizer.json) into `dir`.
pub fn write_tiny_llama_hf(spec: &TinyLlamaSpec, dir: &Path) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    // The tokenizer is the one rebuilt from the GGUF metadata, saved as tokenizer.json.
    let gguf_bytes = tiny_llama_gguf(spec)?.to_bytes()?;
    let file = crate::gguf::GgufFile::from_bytes(gguf_bytes)?;
    let tokenizer = crate::TextTokenizer::from_gguf(&file)?;
    tokenizer.save(&dir.join("tokenizer.json"))?;
    let vocab = file.get_str_array("tokenizer.ggml.tokens")?.len();
    let config = serde_json::json!({
        "model_type": "llama", "num_hidden_layers": spec.n_blocks, "hidden_size": spec.hidden,
        "intermediate_size": spec.ffn, "num_attention_heads": spec.n_heads,
        "num_key_value_heads": spec.n_kv_heads, "vocab_size": vocab, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5, "max_position_embeddings": spec.context,
        "tie_word_embeddings": true, "eos_token_id": 2,
    });
    pudding_core::io::write_atomic(&dir.join("config.json"), config.to_string().as_bytes())?;
    let weights = tiny_weights(spec, vocab);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .into_iter()
        .map(|(n, (s, d))| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::Safetensors {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| ModelError::Safetensors {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    pudding_core::io::write_atomic(&dir.join("model.safetensors"), &bytes)?;
    Ok(())
}

/// Writes a tiny Llama GGUF into a fresh temporary directory and loads it on `B`'s default
/// device. Keep the directory alive as long as the model is used.
pub fn load_tiny_llama<B: burn::prelude::Backend>(
    spec: &TinyLlamaSpec,
) -> Result<(tempfile::TempDir, LlamaLm<B>), ModelError> {
    let dir = tempfile::tempdir().map_err(|source| ModelError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama_gguf(spec, &path)?;
    let lm = LlamaLm::<B>::load(&path, &Default::default())?;
    Ok((dir, lm))
}
