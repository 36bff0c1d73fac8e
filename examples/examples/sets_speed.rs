//! Measures one-pass scoring of several omission sets (`score_requests_sets`: a block
//! whose input is the same under several sets runs once) against one pass per set, on the
//! first N items of a task, in one run.
//!
//! ```text
//! cargo run --release --example sets_speed -- arc_easy 20 results/smollm2
//! ```
//!
//! The sets are every distinct set of a `pudding reproduce` output directory: dense, each
//! `baseline-*.json` and each `pool-k*.json` candidate.

use pudding_cli::backend::{self, Backend};
use pudding_cli::resolve_model;
use pudding_core::{CandidatePool, OmissionSet, SkippableLm};
use pudding_eval::scorer::{score_requests, score_requests_sets};
use pudding_eval::tasks::{load_task, TaskName};
use pudding_models::LlamaLm;
use std::collections::BTreeSet;
use std::time::Instant;

/// Block passes of the prefix tree: block `i` runs once per distinct pattern of skipped
/// blocks below it among the sets that keep it.
fn shared_block_passes(sets: &[OmissionSet], n_blocks: usize) -> usize {
    (0..n_blocks)
        .map(|i| {
            sets.iter()
                .filter(|s| !s.skips(i))
                .map(|s| s.blocks().iter().filter(|&&b| b < i).copied().collect())
                .collect::<BTreeSet<Vec<usize>>>()
                .len()
        })
        .sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let task: TaskName = args.next().unwrap_or_else(|| "arc_easy".into()).parse()?;
    let n: usize = args.next().unwrap_or_else(|| "20".into()).parse()?;
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "results/smollm2".into()));
    let lm = LlamaLm::<Backend>::load(&resolve_model(None)?, &backend::device())?;
    let mut sets = vec![OmissionSet::dense(lm.n_blocks())?];
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if (name.starts_with("pool-k") || name.starts_with("baseline-"))
            && name.ends_with(".json")
            && !name.contains("checkpoint")
        {
            let pool = CandidatePool::load(&path)?;
            pool.check_model(lm.fingerprint())?;
            sets.extend(pool.candidates.into_iter().map(|c| c.set));
        }
    }
    sets.sort_by_key(|s| (s.len(), s.blocks().to_vec()));
    sets.dedup();
    let items = load_task(task, task.default_eval_split())?;
    let items = &items[..n.min(items.len())];
    // Warm-up.
    score_requests_sets(&lm, &items[0].requests(), &sets[..2])?;

    let start = Instant::now();
    for item in items {
        for set in &sets {
            score_requests(&lm, &item.requests(), set)?;
        }
    }
    let per_set = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for item in items {
        score_requests_sets(&lm, &item.requests(), &sets)?;
    }
    let together = start.elapsed().as_secs_f64();
    let separate_passes: usize = sets.iter().map(|s| lm.n_blocks() - s.len()).sum();
    println!(
        "{} ({}), {} items x {} omission sets, backend {}",
        task.name(),
        task.default_eval_split().name(),
        items.len(),
        sets.len(),
        backend::NAME
    );
    println!(
        "block passes per forward: {} one pass per set, {} in one pass ({:.2}x fewer)",
        separate_passes,
        shared_block_passes(&sets, lm.n_blocks()),
        separate_passes as f64 / shared_block_passes(&sets, lm.n_blocks()) as f64
    );
    println!(
        "one pass per set: {:.2} item-sets/s; all sets in one pass: {:.2} item-sets/s; speed-up {:.2}x",
        (items.len() * sets.len()) as f64 / per_set,
        (items.len() * sets.len()) as f64 / together,
        per_set / together
    );
    Ok(())
}
