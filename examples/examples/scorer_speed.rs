//! Measures the shared scorer's throughput (items/s) against scoring every choice from
//! scratch, on the first N items of a task, in one run.
//!
//! ```text
//! cargo run --release --example scorer_speed -- arc_easy 40
//! ```

use pudding_cli::backend::{self, Backend};
use pudding_cli::resolve_model;
use pudding_core::{OmissionSet, SkippableLm};
use pudding_eval::scorer::{score_requests, score_requests_unshared};
use pudding_eval::tasks::{load_task, TaskName};
use pudding_models::LlamaLm;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    backend::start(None)?;
    let mut args = std::env::args().skip(1);
    let task: TaskName = args.next().unwrap_or_else(|| "arc_easy".into()).parse()?;
    let n: usize = args.next().unwrap_or_else(|| "40".into()).parse()?;
    if n == 0 {
        return Err("the number of items must be at least 1".into());
    }
    let lm = LlamaLm::<Backend>::load(&resolve_model(None)?, &backend::device())?;
    let items = load_task(task, task.default_eval_split())?;
    let items = &items[..n.min(items.len())];
    let dense = OmissionSet::dense(lm.n_blocks())?;
    // Warm-up.
    score_requests(&lm, &items[0].requests(), &dense)?;

    let start = Instant::now();
    for item in items {
        score_requests(&lm, &item.requests(), &dense)?;
    }
    let shared = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for item in items {
        score_requests_unshared(&lm, &item.requests(), &dense)?;
    }
    let alone = start.elapsed().as_secs_f64();
    let requests: usize = items.iter().map(|i| i.requests().len()).sum();
    println!(
        "{} ({}), {} items / {requests} requests, backend {}",
        task.name(),
        task.default_eval_split().name(),
        items.len(),
        backend::NAME
    );
    println!(
        "shared context: {:.2} items/s; every choice from scratch: {:.2} items/s; speed-up {:.2}x",
        items.len() as f64 / shared,
        items.len() as f64 / alone,
        alone / shared
    );
    Ok(())
}
