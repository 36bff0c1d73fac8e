//! Building candidate pools: one greedy run per (calibration task, loss), duplicates
//! merged, written with the model fingerprint and each candidate's provenance.

use crate::calibration::{samples_from_items, samples_from_texts};
use crate::greedy::{
    greedy_phase_shard, greedy_search, PhaseShard, PrefixCacheEvaluator, SearchError,
};
use crate::{GreedyConfig, GreedyResult, LossKind};
use burn::prelude::*;
use pudding_core::{Candidate, CandidatePool, Shard, SkippableLm};
use pudding_eval::tasks::{load_task, DataError, Split, TaskItem, TaskName};
use pudding_models::LlamaLm;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Progress callback: (run label, phase, phases).
pub type PoolProgress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Runs the greedy search for every (task, loss) pair on the first `calib` train rows of
/// each task and collects the results into a pool (identical sets merged, their sources
/// listed together). Checkpoints go to `checkpoint_dir/<task>-<loss>-k<k>.json`.
pub fn build_pool<B: Backend>(
    lm: &LlamaLm<B>,
    tasks: &[TaskName],
    losses: &[LossKind],
    config: &GreedyConfig,
    calib: usize,
    checkpoint_dir: Option<&Path>,
    progress: PoolProgress<'_>,
) -> Result<CandidatePool, SearchError> {
    let job = SearchJob::new(tasks, losses, config.k, calib);
    Ok(run_searches(lm, &job, None, config, checkpoint_dir, progress)?.pool)
}

/// The searches of a pool build, in their canonical order: every loss of the first task,
/// then of the next (`tl` and `tld` of ARC-Challenge, then of ARC-Easy, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchJob {
    /// Calibration tasks (lm-eval names), in order.
    pub tasks: Vec<String>,
    /// Losses, in order.
    pub losses: Vec<String>,
    /// Blocks each search omits.
    pub k: usize,
    /// Calibration rows per task.
    pub calib: usize,
}

impl SearchJob {
    /// The job of `tasks` x `losses` at `k` on `calib` rows.
    pub fn new(tasks: &[TaskName], losses: &[LossKind], k: usize, calib: usize) -> Self {
        Self {
            tasks: tasks.iter().map(|t| t.name().to_string()).collect(),
            losses: losses.iter().map(|l| l.name().to_string()).collect(),
            k,
            calib,
        }
    }

    /// How many searches the job runs.
    pub fn searches(&self) -> usize {
        self.tasks.len() * self.losses.len()
    }
}

/// One shard's part of a pool build (`pudding candidates --shard I/N`): the pool of its
/// searches, which [`merge_pool_shards`] joins with the other shards' into the pool one
/// process builds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolShard {
    /// Which shard.
    pub shard: Shard,
    /// The whole job (all shards).
    pub job: SearchJob,
    /// How many of the job's searches this shard ran (positions [`Shard::range`] of
    /// [`SearchJob::searches`]).
    pub searches: usize,
    /// The candidates of those searches.
    pub pool: CandidatePool,
}

/// Runs the searches of `job` (only `shard`'s share of them, by position in the job's
/// order, when given) and collects them into a pool, as [`build_pool`] does. A shard
/// must get at least one search: a job of S searches splits into at most S shards.
pub fn run_searches<B: Backend>(
    lm: &LlamaLm<B>,
    job: &SearchJob,
    shard: Option<Shard>,
    config: &GreedyConfig,
    checkpoint_dir: Option<&Path>,
    progress: PoolProgress<'_>,
) -> Result<PoolShard, SearchError> {
    let tasks: Vec<TaskName> = job
        .tasks
        .iter()
        .map(|t| t.parse::<TaskName>())
        .collect::<Result<_, _>>()
        .map_err(|e| SearchError::Invalid(e.to_string()))?;
    let losses: Vec<LossKind> = job
        .losses
        .iter()
        .map(|l| l.parse::<LossKind>())
        .collect::<Result<_, _>>()
        .map_err(|e| SearchError::Invalid(e.to_string()))?;
    if config.k != job.k {
        return Err(SearchError::Invalid(format!(
            "the search config omits {} blocks, the job {}",
            config.k, job.k
        )));
    }
    let calib = job.calib;
    let whole = Shard { index: 0, count: 1 };
    let shard_or_whole = shard.unwrap_or(whole);
    let range = shard_or_whole.range(job.searches());
    if range.is_empty() {
        return Err(SearchError::Invalid(format!(
            "shard {shard_or_whole} of a job of {} searches gets none: split it into at most {} shards",
            job.searches(),
            job.searches()
        )));
    }
    // Every task's rows are loaded and checked before any search runs, so a task with too
    // few rows fails at once rather than after the searches of the tasks before it.
    let mut task_items = Vec::with_capacity(tasks.len());
    for &task in &tasks {
        task_items.push((task, calibration_items(task, calib)?));
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for (t, (task, items)) in task_items.into_iter().enumerate() {
        let positions = t * losses.len()..(t + 1) * losses.len();
        if positions.end <= range.start || positions.start >= range.end {
            continue;
        }
        let samples = samples_from_items(lm, &items, calib)?;
        for (l, &loss) in losses.iter().enumerate() {
            if !range.contains(&(t * losses.len() + l)) {
                continue;
            }
            let (label, run_label) = search_labels(lm, task, loss, config.k, calib);
            let ckpt = checkpoint_dir.map(|d| d.join(format!("{label}.json")));
            let mut evaluator = PrefixCacheEvaluator {
                lm,
                samples: &samples,
                kind: loss,
            };
            let result = greedy_search(
                &mut evaluator,
                lm.n_blocks(),
                config,
                &run_label,
                ckpt.as_deref(),
                &mut |phase, phases| progress(&label, phase, phases),
            )?;
            let source = provenance("pudding_greedy", Some(task), loss, calib, &result);
            add_candidate(&mut candidates, result, source);
        }
    }
    Ok(PoolShard {
        shard: shard_or_whole,
        job: job.clone(),
        searches: range.len(),
        pool: CandidatePool::new(lm.fingerprint().clone(), candidates)?,
    })
}

/// A search's name (`arc_easy-tl-k6`: its checkpoint is `<name>.json`) and the label its
/// checkpoint records (the name with the calibration size and the model fingerprint).
fn search_labels<B: Backend>(
    lm: &LlamaLm<B>,
    task: TaskName,
    loss: LossKind,
    k: usize,
    calib: usize,
) -> (String, String) {
    let label = search_name(task, loss, k);
    let run_label = format!("{label}-calib{calib}-{}", lm.fingerprint().short());
    (label, run_label)
}

/// A search's name: `arc_easy-tl-k6`.
fn search_name(task: TaskName, loss: LossKind, k: usize) -> String {
    format!("{}-{}-k{k}", task.name(), loss.name())
}

/// The first `calib` train rows of `task`, checked to exist. Only a task without a train
/// split falls back to validation; a data error in the train split is reported, never
/// hidden behind the evaluation split.
fn calibration_items(task: TaskName, calib: usize) -> Result<Vec<TaskItem>, SearchError> {
    let items = match load_task(task, Split::Train) {
        Err(DataError::SplitUnavailable { .. }) => load_task(task, Split::Validation),
        other => other,
    }
    .map_err(|e| SearchError::Invalid(e.to_string()))?;
    check_calibration_rows(task, items.len(), calib)?;
    Ok(items)
}

/// The checkpoint of the one search of `job` in `checkpoint_dir`, where
/// [`run_searches`] keeps it.
pub fn search_checkpoint(job: &SearchJob, checkpoint_dir: &Path) -> Result<PathBuf, SearchError> {
    let (task, loss) = single_search(job)?;
    Ok(checkpoint_dir.join(format!("{}.json", search_name(task, loss, job.k))))
}

/// The (task, loss) of a job that runs exactly one search.
fn single_search(job: &SearchJob) -> Result<(TaskName, LossKind), SearchError> {
    let invalid = |e: String| SearchError::Invalid(e);
    match (job.tasks.as_slice(), job.losses.as_slice()) {
        ([task], [loss]) => Ok((
            task.parse::<TaskName>()
                .map_err(|e| invalid(e.to_string()))?,
            loss.parse::<LossKind>()
                .map_err(|e| invalid(e.to_string()))?,
        )),
        _ => Err(invalid(format!(
            "a step shard spreads the trials of one search, but the job runs {} ({} tasks x {} \
             losses): give one task and one loss, or split the searches with --shard",
            job.searches(),
            job.tasks.len(),
            job.losses.len()
        ))),
    }
}

/// Scores `shard`'s share of the next phase's trials of the one search of `job`
/// ([`greedy_phase_shard`]), resuming from its checkpoint in `checkpoint_dir`;
/// [`crate::greedy::merge_phase_shards`] writes the next checkpoint from the N shards, and
/// once it holds all `k` phases [`run_searches`] writes the pool without searching.
pub fn search_phase_shard<B: Backend>(
    lm: &LlamaLm<B>,
    job: &SearchJob,
    checkpoint_dir: &Path,
    shard: Shard,
) -> Result<PhaseShard, SearchError> {
    let (task, loss) = single_search(job)?;
    let samples = samples_from_items(lm, &calibration_items(task, job.calib)?, job.calib)?;
    let (_, run_label) = search_labels(lm, task, loss, job.k, job.calib);
    let config = GreedyConfig {
        k: job.k,
        ..Default::default()
    };
    let mut evaluator = PrefixCacheEvaluator {
        lm,
        samples: &samples,
        kind: loss,
    };
    greedy_phase_shard(
        &mut evaluator,
        lm.n_blocks(),
        &config,
        &run_label,
        Some(&search_checkpoint(job, checkpoint_dir)?),
        shard,
    )
}

/// Joins the [`PoolShard`]s of one job (any order) into the pool one process builds:
/// [`merge_pools`] over the shards' pools in shard order, which keeps the candidates in
/// order of first appearance and each set's sources in search order. Refuses shards of
/// another model, job or shard count, a missing or repeated shard and a shard that ran
/// another number of searches than its share.
pub fn merge_pool_shards(shards: &[PoolShard]) -> Result<CandidatePool, SearchError> {
    let bad = |m: String| {
        Err(SearchError::Invalid(format!(
            "cannot merge the pool shards: {m}"
        )))
    };
    let parts = match Shard::in_order(shards, |p| p.shard) {
        Ok(parts) => parts,
        Err(e) => return bad(e.to_string()),
    };
    let first = parts[0];
    for p in &parts {
        if p.job != first.job {
            return bad(format!("shard {} is of another search job", p.shard));
        }
        p.pool.check_model(&first.pool.fingerprint)?;
        let want = p.shard.len_of(p.job.searches());
        if p.searches != want {
            return bad(format!(
                "shard {} ran {} searches, its share is {want}",
                p.shard, p.searches
            ));
        }
    }
    let pools: Vec<CandidatePool> = parts.iter().map(|p| p.pool.clone()).collect();
    merge_pools(&pools)
}

/// SLEB: the greedy search with the perplexity loss on plain text (`texts`, each cut to
/// `max_tokens` tokens).
pub fn sleb<B: Backend>(
    lm: &LlamaLm<B>,
    texts: &[String],
    max_tokens: usize,
    config: &GreedyConfig,
    checkpoint: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GreedyResult, SearchError> {
    let samples = samples_from_texts(lm, texts, max_tokens)?;
    let mut evaluator = PrefixCacheEvaluator {
        lm,
        samples: &samples,
        kind: LossKind::Perplexity,
    };
    greedy_search(
        &mut evaluator,
        lm.n_blocks(),
        config,
        &sleb_label(lm, config, texts.len()),
        checkpoint,
        progress,
    )
}

/// The label of a SLEB search's checkpoint.
fn sleb_label<B: Backend>(lm: &LlamaLm<B>, config: &GreedyConfig, texts: usize) -> String {
    format!("sleb-k{}-n{texts}-{}", config.k, lm.fingerprint().short())
}

/// `shard`'s share of the trials of the next phase of the [`sleb`] search with the same
/// arguments ([`greedy_phase_shard`]), resuming from `checkpoint`, which only
/// [`crate::greedy::merge_phase_shards`] writes.
pub fn sleb_phase_shard<B: Backend>(
    lm: &LlamaLm<B>,
    texts: &[String],
    max_tokens: usize,
    config: &GreedyConfig,
    checkpoint: &Path,
    shard: Shard,
) -> Result<PhaseShard, SearchError> {
    let samples = samples_from_texts(lm, texts, max_tokens)?;
    let mut evaluator = PrefixCacheEvaluator {
        lm,
        samples: &samples,
        kind: LossKind::Perplexity,
    };
    greedy_phase_shard(
        &mut evaluator,
        lm.n_blocks(),
        config,
        &sleb_label(lm, config, texts.len()),
        Some(checkpoint),
        shard,
    )
}

/// Refuses a calibration of zero rows (every loss would be 0 and the search would return
/// blocks `1..=k` as if calibrated) or of more rows than the split holds (the provenance
/// would record rows that were never used).
fn check_calibration_rows(
    task: TaskName,
    available: usize,
    wanted: usize,
) -> Result<(), SearchError> {
    if wanted == 0 {
        return Err(SearchError::Invalid(
            "the calibration needs at least one row".into(),
        ));
    }
    if wanted > available {
        return Err(SearchError::Invalid(format!(
            "{} has {available} calibration rows, fewer than the {wanted} asked for",
            task.name()
        )));
    }
    Ok(())
}

/// Generic text for perplexity calibration: BoolQ train passages (no WikiText is available
/// offline; BoolQ is the one paper task never used to build PuDDing candidates).
pub fn calibration_texts(n: usize) -> Result<Vec<String>, SearchError> {
    let items = load_task(TaskName::BoolQ, Split::Train)
        .map_err(|e| SearchError::Invalid(e.to_string()))?;
    check_calibration_rows(TaskName::BoolQ, items.len(), n)?;
    Ok(items
        .iter()
        .take(n)
        .map(|item| {
            // The context is "{passage}\nQuestion: ...": keep the passage.
            let ctx = item.context(0);
            ctx.split("\nQuestion:").next().unwrap_or(ctx).to_string()
        })
        .collect())
}

/// Provenance of one search.
pub fn provenance(
    method: &str,
    task: Option<TaskName>,
    loss: LossKind,
    calib: usize,
    result: &GreedyResult,
) -> serde_json::Value {
    json!({
        "method": method,
        "task": task.map(|t| t.name()),
        "loss": loss.name(),
        "calib": calib,
        "order": result.order,
        "dense_loss": result.dense_loss,
        "loss_per_step": result.steps.iter().map(|s| s.loss).collect::<Vec<_>>(),
    })
}

/// Merges pools built for the same model (e.g. searches run in separate sessions) into
/// one: candidates in order of first appearance, identical sets merged with their
/// provenance sources concatenated. Errors when the pools belong to different models.
pub fn merge_pools(pools: &[CandidatePool]) -> Result<CandidatePool, SearchError> {
    let first = pools
        .first()
        .ok_or_else(|| SearchError::Invalid("no pools to merge".into()))?;
    let mut candidates: Vec<Candidate> = Vec::new();
    for pool in pools {
        pool.check_model(&first.fingerprint)?;
        for c in &pool.candidates {
            let sources = c.provenance["sources"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![c.provenance.clone()]);
            match candidates.iter_mut().find(|e| e.set == c.set) {
                Some(existing) => {
                    if let Some(list) = existing.provenance["sources"].as_array_mut() {
                        list.extend(sources);
                    }
                }
                None => candidates.push(Candidate {
                    set: c.set.clone(),
                    provenance: json!({ "sources": sources }),
                }),
            }
        }
    }
    Ok(CandidatePool::new(first.fingerprint.clone(), candidates)?)
}

fn add_candidate(candidates: &mut Vec<Candidate>, result: GreedyResult, source: serde_json::Value) {
    match candidates.iter_mut().find(|c| c.set == result.set) {
        Some(existing) => {
            if let Some(sources) = existing.provenance["sources"].as_array_mut() {
                sources.push(source);
            }
        }
        None => candidates.push(Candidate {
            set: result.set,
            provenance: json!({ "sources": [source] }),
        }),
    }
}
