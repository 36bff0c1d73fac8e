//! Parsing, validation and the stable serialised form of [`LlamaConfig`].

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
    let back: LlamaConfig = serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
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
