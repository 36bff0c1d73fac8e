//! A Hugging Face checkpoint directory from untrusted bytes: `config.json`,
//! `tokenizer.json`, `model.safetensors` (header and data) and `tokenizer_config.json`
//! (packed as the sections of one input, see `pudding_fuzz::sections`), opened as
//! `pudding` opens a directory, then loaded and run when it is a whole model.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pudding_core::OmissionSet;
use pudding_models::lm::Checkpoint;
use pudding_models::CpuBackend;

const FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "tokenizer_config.json",
];

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(pudding_fuzz::scratch_dir)
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    for (name, bytes) in FILES.iter().zip(pudding_fuzz::sections(data, FILES.len())) {
        let path = dir.join(name);
        // An empty tokenizer_config.json section means the file is absent.
        if bytes.is_empty() && *name == "tokenizer_config.json" {
            let _ = std::fs::remove_file(&path);
        } else {
            std::fs::write(&path, bytes).expect("scratch file");
        }
    }
    let Ok(checkpoint) = Checkpoint::open_hf_dir(dir) else {
        return;
    };
    if let Ok(ids) = checkpoint.tokenizer.encode("Hello, world! 12 ünï") {
        let _ = checkpoint.tokenizer.decode(&ids);
    }
    if let Some(template) = &checkpoint.chat_template {
        let _ = pudding_models::chat::render_user_turn(template, "Hi", "<s>", "</s>");
    }
    let device = Default::default();
    let Ok(lm) = checkpoint.into_lm::<CpuBackend>(&device) else {
        return;
    };
    let model = lm.model();
    let vocab = model.config().vocab_size.max(1) as u32;
    let ids: Vec<u32> = [1u32, 7, 3].iter().map(|i| i % vocab).collect();
    if let Ok(dense) = OmissionSet::dense(model.config().n_blocks) {
        let _ = lm.position_log_probs(&ids, &dense);
    }
});
