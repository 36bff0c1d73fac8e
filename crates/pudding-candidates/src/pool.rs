//! Building candidate pools: one greedy run per (calibration task, loss), duplicates
//! merged, written with the model fingerprint and each candidate's provenance.

use crate::calibration::{samples_from_items, samples_from_texts};
use crate::greedy::{greedy_search, PrefixCacheEvaluator, SearchError};
use crate::{GreedyConfig, GreedyResult, LossKind};
use burn::prelude::*;
use pudding_core::{Candidate, CandidatePool, SkippableLm};
use pudding_eval::tasks::{load_task, DataError, Split, TaskName};
use pudding_models::LlamaLm;
use serde_json::json;
use std::path::Path;

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
    // Every task's rows are loaded and checked before any search runs, so a task with too
    // few rows fails at once rather than after the searches of the tasks before it.
    let mut task_items = Vec::with_capacity(tasks.len());
    for &task in tasks {
        // Only a task without a train split falls back to validation; a data error in the
        // train split is reported, never hidden behind the evaluation split.
        let items = match load_task(task, Split::Train) {
            Err(DataError::SplitUnavailable { .. }) => load_task(task, Split::Validation),
            other => other,
        }
        .map_err(|e| SearchError::Invalid(e.to_string()))?;
        check_calibration_rows(task, items.len(), calib)?;
        task_items.push((task, items));
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for (task, items) in task_items {
        let samples = samples_from_items(lm, &items, calib)?;
        for &loss in losses {
            let label = format!("{}-{}-k{}", task.name(), loss.name(), config.k);
            let run_label = format!("{label}-calib{calib}-{}", lm.fingerprint().short());
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
    Ok(CandidatePool::new(lm.fingerprint().clone(), candidates)?)
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
    let label = format!(
        "sleb-k{}-n{}-{}",
        config.k,
        texts.len(),
        lm.fingerprint().short()
    );
    greedy_search(
        &mut evaluator,
        lm.n_blocks(),
        config,
        &label,
        checkpoint,
        progress,
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
