//! Measures the greedy candidate search with the prefix-cache trial evaluator against the
//! plain one (every trial from the embeddings), on the real model, in one run, and checks
//! that both remove the same blocks in the same order.
//!
//! ```text
//! cargo run --release --example search_speed -- arc_easy tl 8 2
//! ```
//! Arguments: task, loss (tl | tld), calibration rows, k.

use pudding_candidates::calibration::samples_from_items;
use pudding_candidates::greedy::{PrefixCacheEvaluator, ScorerEvaluator};
use pudding_candidates::{greedy_search, GreedyConfig, LossKind};
use pudding_cli::backend::{self, Backend};
use pudding_cli::resolve_model;
use pudding_core::SkippableLm;
use pudding_eval::tasks::{load_task, Split, TaskName};
use pudding_models::LlamaLm;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    backend::start(None)?;
    let mut args = std::env::args().skip(1);
    let task: TaskName = args.next().unwrap_or_else(|| "arc_easy".into()).parse()?;
    let kind: LossKind = args.next().unwrap_or_else(|| "tl".into()).parse()?;
    let rows: usize = args.next().unwrap_or_else(|| "8".into()).parse()?;
    let k: usize = args.next().unwrap_or_else(|| "2".into()).parse()?;
    let lm = LlamaLm::<Backend>::load(&resolve_model(None)?, &backend::device())?;
    let items = load_task(task, Split::Train)?;
    let samples = samples_from_items(&lm, &items, rows)?;
    let config = GreedyConfig {
        k,
        ..Default::default()
    };
    let n = lm.n_blocks();
    let start = Instant::now();
    let mut plain = ScorerEvaluator {
        lm: &lm,
        samples: &samples,
        kind,
    };
    let a = greedy_search(&mut plain, n, &config, "plain", None, &mut |_, _| {})?;
    let plain_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut fast = PrefixCacheEvaluator {
        lm: &lm,
        samples: &samples,
        kind,
    };
    let b = greedy_search(&mut fast, n, &config, "fast", None, &mut |_, _| {})?;
    let fast_secs = start.elapsed().as_secs_f64();
    println!(
        "{} {} rows={rows} k={k}: plain {plain_secs:.1} s (order {:?}), prefix-cache {fast_secs:.1} s (order {:?}); speed-up {:.2}x; same result: {}",
        task.name(),
        kind.name(),
        a.order,
        b.order,
        plain_secs / fast_secs,
        a.order == b.order
    );
    if a.order != b.order {
        return Err("the two evaluators chose different blocks".into());
    }
    Ok(())
}
