//! Helpers shared by the fuzz targets: a framing that packs several files into one fuzz
//! input, and a scratch directory for targets whose parser reads from paths.

use std::path::{Path, PathBuf};

/// Chat templates render under their memory budget only with the counting allocator.
#[global_allocator]
static ALLOCATOR: pudding_core::memory::BudgetedAllocator = pudding_core::memory::BudgetedAllocator;

/// Separates the files packed into one input (see [`sections`]). Rare in real files, and
/// easy for a mutator to keep or break.
pub const SEPARATOR: &[u8] = b"\n\x00--8<--\x00\n";

/// Splits `data` at [`SEPARATOR`] into at most `n` sections (the last one keeps any further
/// separators); missing sections are empty.
pub fn sections(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match find(rest, SEPARATOR) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    while out.len() < n {
        out.push(&[]);
    }
    out
}

/// Packs files into one input, the inverse of [`sections`] (seed corpora).
pub fn pack(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(SEPARATOR)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A directory of this process for files a target writes before parsing them (on tmpfs
/// where there is one).
pub fn scratch_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("pudding-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}
