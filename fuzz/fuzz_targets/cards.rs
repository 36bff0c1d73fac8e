//! The JSON files pudding reads back from users: candidate pools, router cards and label
//! files (header line plus rows). The first byte picks the kind; the rest is the file.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pudding_core::CandidatePool;
use pudding_router::labels::{read_labels, read_labels_header};
use pudding_router::router::PuddingRouter;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(pudding_fuzz::scratch_dir)
}

fuzz_target!(|data: &[u8]| {
    let [kind, file @ ..] = data else {
        return;
    };
    let dir = dir();
    match kind % 3 {
        0 => {
            let path = dir.join("pool.json");
            std::fs::write(&path, file).expect("scratch file");
            if let Ok(pool) = CandidatePool::load(&path) {
                let _ = pool.id();
                for c in &pool.candidates {
                    assert!(c.set.n_blocks() == pool.fingerprint.n_blocks);
                }
            }
        }
        1 => {
            std::fs::write(dir.join("router.json"), file).expect("scratch file");
            let _ = PuddingRouter::<pudding_models::CpuBackend>::read_card(dir);
        }
        _ => {
            let path = dir.join("labels.jsonl");
            std::fs::write(&path, file).expect("scratch file");
            let _ = read_labels_header(&path);
            let _ = read_labels(&path);
        }
    }
});
