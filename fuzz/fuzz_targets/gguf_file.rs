//! A GGUF file from untrusted bytes: container, metadata, tensor table, the dequantisation
//! of every tensor, the model configuration, the tokenizer rebuilt from the metadata, the
//! chat template, and a tiny forward pass when the whole model loads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pudding_core::{GenerationConfig, OmissionSet};
use pudding_models::gguf::GgufFile;
use pudding_models::lm::{generate_ids, Checkpoint};
use pudding_models::{CpuBackend, WeightMode};

/// Tensors past this many elements are not dequantised (the input's size bounds them
/// anyway; this keeps one execution fast).
const MAX_DEQUANTISED: u64 = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = file.version();
    for (key, value) in file.metadata() {
        let _ = (key.len(), value.type_name(), value.as_u64(), value.as_f64());
    }
    for info in file.tensors() {
        let _ = (info.shape_row_major(), info.n_bytes());
        if info.n_elements() <= MAX_DEQUANTISED {
            let _ = file.dequantize(&info.name);
        }
    }
    let quantised = data.len().is_multiple_of(2);
    let Ok(checkpoint) = Checkpoint::from_gguf_file(file) else {
        return;
    };
    let tokenizer = &checkpoint.tokenizer;
    if let Ok(ids) = tokenizer.encode("Hello, world! 12 ünï <|im_start|>") {
        let _ = tokenizer.decode(&ids);
    }
    if let Some(template) = &checkpoint.chat_template {
        let _ = pudding_models::chat::render_user_turn(template, "Hi", "<s>", "</s>");
    }
    let mode = if quantised {
        WeightMode::Quantized
    } else {
        WeightMode::Dequantized
    };
    let device = Default::default();
    let Ok(lm) = checkpoint
        .with_weight_mode(mode)
        .into_lm::<CpuBackend>(&device)
    else {
        return;
    };
    let model = lm.model();
    let vocab = model.config().vocab_size.max(1) as u32;
    let ids: Vec<u32> = [1u32, 7, 3].iter().map(|i| i % vocab).collect();
    let Ok(dense) = OmissionSet::dense(model.config().n_blocks) else {
        return;
    };
    let _ = lm.position_log_probs(&ids, &dense);
    let config = GenerationConfig {
        max_new_tokens: 2,
        ..GenerationConfig::default()
    };
    let _ = generate_ids(model, &[ids], &dense, &config, 0);
});
