//! Measures one-pass scoring of several omission sets (`score_requests_sets`: a block
//! whose input is the same under several sets runs once) against one pass per set, the
//! sets scored in JOBS groups at once (`ParallelSetScorer::score`), and JOBS items scored
//! at once in one pass each (`ParallelSetScorer::score_items`, what `pudding eval --jobs`
//! does), each on one CPU thread, on the first N items of a task, in one run.
//!
//! ```text
//! cargo run --release --example sets_speed -- arc_easy 20 results/smollm2 [JOBS]
//! ```
//!
//! JOBS defaults to the number of CPU threads.
//!
//! The sets are every distinct set of a `pudding reproduce` output directory: dense, each
//! `baseline-*.json` and each `pool-k*.json` candidate.

use pudding_cli::backend::{self, Backend};
use pudding_cli::resolve_model;
use pudding_core::{CandidatePool, OmissionSet, SkippableLm};
use pudding_eval::parallel::{partition_sets, shared_block_count, ParallelSetScorer};
use pudding_eval::scorer::{score_requests, score_requests_sets, ScoreError};
use pudding_eval::tasks::{load_task, TaskName};
use pudding_models::LlamaLm;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    backend::start(None)?;
    let mut args = std::env::args().skip(1);
    let task: TaskName = args.next().unwrap_or_else(|| "arc_easy".into()).parse()?;
    let n: usize = args.next().unwrap_or_else(|| "20".into()).parse()?;
    if n == 0 {
        return Err("the number of items must be at least 1".into());
    }
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "results/smollm2".into()));
    let jobs: usize = match args.next() {
        Some(j) => j.parse()?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if jobs == 0 {
        return Err("jobs must be at least 1".into());
    }
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
    if sets.len() < 2 {
        return Err(format!(
            "{} holds no pool-k*.json or baseline-*.json with a non-dense set to time",
            dir.display()
        )
        .into());
    }
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
    let scorer = ParallelSetScorer::new(jobs)?;
    let start = Instant::now();
    for item in items {
        scorer.score(&lm, &item.requests(), &sets)?;
    }
    let grouped = start.elapsed().as_secs_f64();
    let work: Vec<_> = items.iter().map(|i| (i.requests(), sets.clone())).collect();
    let start = Instant::now();
    scorer.score_items(&lm, &work, |_, _| Ok::<(), ScoreError>(()))?;
    let side_by_side = start.elapsed().as_secs_f64();
    let shared = shared_block_count(&sets);
    let group_passes: Vec<String> = partition_sets(&sets, jobs)
        .iter()
        .map(|g| shared_block_count(g.iter().map(|&i| &sets[i])).to_string())
        .collect();
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
        "block passes per forward: {} one pass per set, {} in one pass ({:.2}x fewer), {} in {} groups",
        separate_passes,
        shared,
        separate_passes as f64 / shared as f64,
        group_passes.join(" + "),
        group_passes.len()
    );
    let rate = |secs: f64| (items.len() * sets.len()) as f64 / secs;
    println!(
        "one pass per set: {:.2} item-sets/s; all sets in one pass: {:.2} item-sets/s; speed-up {:.2}x",
        rate(per_set),
        rate(together),
        per_set / together
    );
    println!(
        "{jobs} groups at once, one thread each: {:.2} item-sets/s; {:.2}x one pass",
        rate(grouped),
        together / grouped
    );
    println!(
        "{jobs} items at once, one thread each (`pudding eval --jobs {jobs}`): {:.2} item-sets/s; {:.2}x one pass, {:.2}x the groups",
        rate(side_by_side),
        together / side_by_side,
        grouped / side_by_side
    );
    Ok(())
}
