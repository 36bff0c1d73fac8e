//! Joining the results files of a sharded evaluation (`pudding eval --shard I/N`) into the
//! file one process writes: the same items in the same order, the same statistics; only
//! the recorded `seconds` are the shards' sum rather than one process's wall-clock time.

use crate::runner::{EvalError, EvalReport, TaskResult};
use pudding_core::Shard;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Merges the results files of every shard of one evaluation (any order). Refuses shards
/// of different models, methods or shard counts, a missing or repeated shard, a shard
/// that is not complete, tasks, splits or metrics that differ between shards, shard
/// sizes that do not match one split of the same items (e.g. runs with different
/// `--limit`s) and a document in two shards.
pub fn merge_shards(shards: &[EvalReport]) -> Result<EvalReport, EvalError> {
    let bad = |m: String| Err(EvalError::Merge(m));
    let Some(first) = shards.first() else {
        return bad("no shard results given".into());
    };
    let mut parts: Vec<(Shard, &EvalReport)> = Vec::with_capacity(shards.len());
    for report in shards {
        let Some(shard) = report.shard else {
            return bad(format!(
                "a file of method {:?} holds a whole run, not a shard",
                report.method
            ));
        };
        if report.model != first.model {
            return bad(format!(
                "shard {shard} holds results of model {}, another holds {}",
                report.model, first.model
            ));
        }
        if report.method != first.method {
            return bad(format!(
                "shard {shard} holds method {:?}, another holds {:?}",
                report.method, first.method
            ));
        }
        parts.push((shard, report));
    }
    let indices: Vec<Shard> = parts.iter().map(|(s, _)| *s).collect();
    Shard::check_complete(&indices).map_err(|e| EvalError::Merge(e.to_string()))?;
    parts.sort_by_key(|(s, _)| s.index);
    let task_names: BTreeSet<&String> = parts[0].1.tasks.keys().collect();
    let mut tasks = BTreeMap::new();
    for name in task_names {
        let entries: Vec<(Shard, &TaskResult)> = parts
            .iter()
            .map(|(s, r)| {
                r.tasks.get(name).map(|t| (*s, t)).ok_or_else(|| {
                    EvalError::Merge(format!("shard {s} has no results for task {name}"))
                })
            })
            .collect::<Result<_, _>>()?;
        tasks.insert(name.clone(), merge_task(name, &entries)?);
    }
    for (s, r) in &parts {
        if let Some(extra) = r.tasks.keys().find(|k| !tasks.contains_key(*k)) {
            return bad(format!(
                "shard {s} has task {extra}, shard 0/{} has not",
                s.count
            ));
        }
    }
    Ok(EvalReport {
        model: first.model.clone(),
        method: first.method.clone(),
        tasks,
        shard: None,
    })
}

/// One task's entries of every shard (in shard order) joined.
fn merge_task(name: &str, entries: &[(Shard, &TaskResult)]) -> Result<TaskResult, EvalError> {
    let bad = |m: String| Err(EvalError::Merge(format!("task {name}: {m}")));
    let (_, head) = entries[0];
    let total: usize = entries.iter().map(|(_, t)| t.n_total).sum();
    let mut seen = HashSet::new();
    let mut items = Vec::with_capacity(total);
    let mut seconds = 0.0;
    for &(shard, t) in entries {
        if t.split != head.split || t.metric != head.metric {
            return bad(format!(
                "shard {shard} scored split {:?} with metric {:?}, shard 0 split {:?} with {:?}",
                t.split, t.metric, head.split, head.metric
            ));
        }
        if t.items.len() != t.n_total {
            return bad(format!(
                "shard {shard} is not complete ({} of its {} items scored); rerun it",
                t.items.len(),
                t.n_total
            ));
        }
        let expected = shard.len_of(total);
        if t.n_total != expected {
            return bad(format!(
                "shard {shard} holds {} items where a {}-way split of {total} gives it \
                 {expected}: the shards ran over different items (another --limit?)",
                t.n_total, shard.count
            ));
        }
        for item in &t.items {
            if !seen.insert(item.doc_id) {
                return bad(format!("document {} is in two shards", item.doc_id));
            }
        }
        items.extend(t.items.iter().cloned());
        seconds += t.seconds;
    }
    items.sort_by_key(|i| i.doc_id);
    let mut merged = TaskResult {
        items,
        seconds,
        n_total: total,
        ..head.clone()
    };
    merged.refresh();
    Ok(merged)
}
