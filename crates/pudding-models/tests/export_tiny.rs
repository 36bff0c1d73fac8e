//! `pudding_models::export` on tiny random models: sharded Hugging Face directories stay
//! sharded, and what an export cannot do right is refused. The real models are in
//! `export_real.rs` and `real_gemma3_hf.rs`.

use pudding_core::{OmissionSet, SkippableLm};
use pudding_models::export::export_pruned;
use pudding_models::gguf::{GgufFile, GgufValue, GgufValueType};
use pudding_models::testing::{tiny_llama_gguf, write_tiny_llama_hf, TinyLlamaSpec};
use pudding_models::{CpuBackend as B, LlamaLm, ModelError};
use safetensors::SafeTensors;
use std::path::Path;

fn spec() -> TinyLlamaSpec {
    TinyLlamaSpec {
        n_blocks: 4,
        ..Default::default()
    }
}

/// Rewrites `dir`'s single `model.safetensors` as two shards with an index, as
/// transformers saves a large model.
fn reshard(dir: &Path) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].into_iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let views: Vec<_> = part
            .iter()
            .map(|n| {
                weight_map.insert(n.clone(), file.clone().into());
                (n.clone(), st.tensor(n).unwrap())
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(&file)).unwrap();
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn a_sharded_directory_exports_as_shards_that_score_as_the_skipped_model() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    write_tiny_llama_hf(&spec(), &source).unwrap();
    reshard(&source);
    let removed = OmissionSet::new([1], 4).unwrap();
    let out = dir.path().join("pruned");
    export_pruned(&source, &removed, &out).unwrap();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert!(map.contains_key("model.layers.2.mlp.up_proj.weight"));
    assert!(!map.contains_key("model.layers.3.mlp.up_proj.weight"));
    let mut shards: Vec<&str> = map.values().map(|v| v.as_str().unwrap()).collect();
    shards.sort_unstable();
    shards.dedup();
    assert!(shards.len() >= 2, "{shards:?}");

    let device = Default::default();
    let full: LlamaLm<B> = LlamaLm::load(&source, &device).unwrap();
    let pruned: LlamaLm<B> = LlamaLm::load(&out, &device).unwrap();
    assert_eq!(pruned.n_blocks(), 3);
    let ids = [5, 9, 14, 3, 22, 7];
    assert_eq!(
        full.token_logprobs(&ids, &removed).unwrap(),
        pruned
            .token_logprobs(&ids, &OmissionSet::dense(3).unwrap())
            .unwrap()
    );
    // A directory export never lands on an existing, non-empty directory.
    match export_pruned(&source, &removed, &out) {
        Err(ModelError::Export(m)) => assert!(m.contains("exists"), "{m}"),
        other => panic!("{other:?}"),
    }
    match export_pruned(&source, &removed, &source.join("inside")) {
        Err(ModelError::Export(m)) => assert!(m.contains("overwrite the input"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Writes the tiny GGUF after `edit` and tries to export it without block 1.
fn export_edited(edit: impl FnOnce(&mut pudding_models::gguf::GgufWriter)) -> ModelError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let mut writer = tiny_llama_gguf(&spec()).unwrap();
    edit(&mut writer);
    writer.write_to(&path).unwrap();
    let out = dir.path().join("out.gguf");
    let err = export_pruned(&path, &OmissionSet::new([1], 4).unwrap(), &out).unwrap_err();
    assert!(!out.exists());
    err
}

#[test]
fn per_block_metadata_is_cut_and_unknown_arrays_are_refused() {
    // A per-block array (one value per block) is cut to the kept blocks.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let mut writer = tiny_llama_gguf(&spec()).unwrap();
    writer.add_u32_array("llama.attention.head_count_kv_per_block", &[1, 2, 3, 4]);
    writer.write_to(&path).unwrap();
    let out = dir.path().join("out.gguf");
    export_pruned(&path, &OmissionSet::new([1], 4).unwrap(), &out).unwrap();
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(
        file.get("llama.attention.head_count_kv_per_block"),
        Some(&GgufValue::Array(
            GgufValueType::U32,
            vec![GgufValue::U32(1), GgufValue::U32(3), GgufValue::U32(4)]
        ))
    );
    assert_eq!(file.get_u32("llama.block_count").unwrap(), 3);

    // An architecture array of another length cannot be adjusted safely.
    let err = export_edited(|w| {
        w.add_u32_array("llama.rope.dimension_sections", &[8, 8, 8]);
    });
    assert!(err.to_string().contains("rope.dimension_sections"), "{err}");
}

#[test]
fn a_tensor_of_a_block_past_the_block_count_is_refused() {
    let err = export_edited(|w| {
        w.add_tensor(
            "blk.7.attn_norm.weight",
            &[64],
            &[1.0; 64],
            pudding_models::gguf::GgmlType::F32,
        )
        .unwrap();
    });
    assert!(err.to_string().contains("blk.7"), "{err}");
}
