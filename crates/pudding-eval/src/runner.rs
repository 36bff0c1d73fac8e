//! Harness runs: score every item of a task split under an omission set, aggregate the
//! metrics, checkpoint to a results file (atomically) and resume from it.

use crate::parallel::ParallelSetScorer;
use crate::scorer::{score_requests, score_requests_sets, ScoreError};
use crate::tasks::{
    aggregate, mean_stderr, DataError, ItemScore, Metric, Request, Split, TaskItem, TaskName,
};
use pudding_core::{io, CoreError, ModelFingerprint, OmissionSet, Shard, SkippableLm};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors of a harness run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Task data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Scoring failed.
    #[error(transparent)]
    Score(#[from] ScoreError),
    /// A results file could not be read or written.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Choosing the omission set failed (router error).
    #[error("choosing the omission set failed: {0}")]
    Choose(String),
    /// The request is inconsistent (e.g. a different number of sets and results files).
    #[error("invalid evaluation request: {0}")]
    Invalid(String),
    /// Shard results files cannot be joined (see [`crate::merge::merge_shards`]).
    #[error("cannot merge the shard results: {0}")]
    Merge(String),
    /// A results file to resume belongs to another model or omission set.
    #[error("cannot resume from {path}: {reason}; delete it or choose another --out")]
    ResumeMismatch {
        /// The results file.
        path: String,
        /// What differs.
        reason: String,
    },
}

/// The scored outcome of one item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// Document id in the task split.
    pub doc_id: usize,
    /// Summed log-likelihood per choice.
    pub loglikelihoods: Vec<f64>,
    /// Whether each choice's continuation is the greedy one.
    pub is_greedy: Vec<bool>,
    /// Argmax of the log-likelihoods.
    pub pred: usize,
    /// Argmax of the length-normalised log-likelihoods.
    pub pred_norm: usize,
    /// Gold choice.
    pub gold: usize,
    /// Index of the pool candidate used (routed and oracle runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<usize>,
    /// Blocks skipped for this item.
    pub skip: Vec<usize>,
    /// Seconds spent choosing the set (routing), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_secs: Option<f64>,
}

impl ItemResult {
    fn score(&self) -> ItemScore {
        ItemScore {
            pred: self.pred,
            pred_norm: self.pred_norm,
            gold: self.gold,
        }
    }
}

/// A mean with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Mean over items (0..1); NaN with no items (a shard that got none of a task's items),
    /// which JSON holds as `null`.
    #[serde(deserialize_with = "nan_from_null")]
    pub mean: f64,
    /// lm-eval's standard error of the mean (None below two items).
    pub stderr: Option<f64>,
}

/// Reads a number written by serde_json, which writes NaN as `null`, back as NaN.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Results of one task split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// lm-eval task name.
    pub task: String,
    /// Split evaluated.
    pub split: String,
    /// The metric reported for this task (`acc` or `acc_norm`).
    pub metric: String,
    /// Items scored so far.
    pub n: usize,
    /// Items in the (limited) split of the largest run the file has seen: a run with a
    /// smaller `--limit` over it leaves the total alone.
    pub n_total: usize,
    /// Accuracy.
    pub acc: Stat,
    /// Length-normalised accuracy.
    pub acc_norm: Stat,
    /// Seconds spent scoring (summed over resumed runs).
    pub seconds: f64,
    /// Per-item outcomes (kept so runs can resume and be re-analysed).
    pub items: Vec<ItemResult>,
}

impl TaskResult {
    /// The value of the reported metric.
    pub fn reported(&self) -> f64 {
        if self.metric == "acc_norm" {
            self.acc_norm.mean
        } else {
            self.acc.mean
        }
    }

    pub(crate) fn refresh(&mut self) {
        let scores: Vec<ItemScore> = self.items.iter().map(ItemResult::score).collect();
        let stat = |metric| {
            let m = aggregate(&scores, metric);
            Stat {
                mean: m.mean,
                stderr: m.stderr,
            }
        };
        self.acc = stat(Metric::Acc);
        self.acc_norm = stat(Metric::AccNorm);
        self.n = self.items.len();
    }
}

/// A whole evaluation: one model, one method, several tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model evaluated.
    pub model: ModelFingerprint,
    /// A label for the method (e.g. `dense`, `static 3,7,19`,
    /// `routed <pool id> router <card hash>`).
    pub method: String,
    /// Per-task results, by task name.
    pub tasks: BTreeMap<String, TaskResult>,
    /// The shard of the items this file holds, for a sharded run (`pudding eval --shard`):
    /// each task's `n_total` is then the shard's share of the items, and `pudding merge`
    /// joins the shards into the file one process writes. Absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl EvalReport {
    /// Mean of the reported metric over the tasks with all items scored.
    pub fn average(&self) -> f64 {
        let done: Vec<f64> = self
            .tasks
            .values()
            .filter(|t| t.n == t.n_total)
            .map(TaskResult::reported)
            .collect();
        mean_stderr(&done).mean
    }
}

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Tasks, evaluated in this order on their default evaluation split.
    pub tasks: Vec<TaskName>,
    /// Use only N items of each split ([`crate::tasks::limit_items`]: the first N; for
    /// MMLU the subjects in turn).
    pub limit: Option<usize>,

    /// Write the results file after this many items.
    pub checkpoint_every: usize,
    /// [`run_eval_sets`] only: score this many items at once, each in one pass over its
    /// sets on one CPU thread ([`crate::parallel`]); 1 scores one item at a time on the
    /// backend's threads.
    pub jobs: usize,
    /// Score only this shard of each task's (limited) items, by position
    /// ([`Shard::range`]); `None` scores them all.
    pub shard: Option<Shard>,
}

/// The omission set chosen for one item.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Blocks to skip for the whole item.
    pub set: OmissionSet,
    /// The pool candidate, when the set comes from a pool.
    pub candidate: Option<usize>,
    /// Seconds spent choosing (routing).
    pub secs: Option<f64>,
}

/// Chooses the omission set of each item: one fixed set, a router, or the oracle.
pub trait SetChooser {
    /// A label identifying the method (stored in the report; a resumed run must match).
    fn label(&self) -> String;
    /// The set for `item`.
    fn choose(&mut self, item: &TaskItem) -> Result<Choice, EvalError>;
}

/// The same set for every item (dense, or a static baseline).
pub struct StaticChooser(pub OmissionSet);

impl SetChooser for StaticChooser {
    fn label(&self) -> String {
        if self.0.is_empty() {
            "dense".into()
        } else {
            format!("static {}", self.0)
        }
    }
    fn choose(&mut self, _: &TaskItem) -> Result<Choice, EvalError> {
        Ok(Choice {
            set: self.0.clone(),
            candidate: None,
            secs: None,
        })
    }
}

/// PuDDing: the router reads the item's prompt (the context, without answers) once, or,
/// for a router trained that way, the prompt followed by the first answer choice.
pub struct RoutedChooser<'a, R: pudding_core::Router>(pub &'a R);

impl<R: pudding_core::Router> SetChooser for RoutedChooser<'_, R> {
    fn label(&self) -> String {
        format!("routed {}", self.0.identity())
    }
    fn choose(&mut self, item: &TaskItem) -> Result<Choice, EvalError> {
        let d = self
            .0
            .route(&item.router_text(self.0.reads_first_choice()))
            .map_err(|e| EvalError::Choose(e.to_string()))?;
        Ok(Choice {
            set: d.set,
            candidate: Some(d.candidate),
            secs: Some(d.router_secs),
        })
    }
}

/// The oracle: per item, the candidate under which the correct answer has the highest
/// mean per-token log-likelihood (the router's training target), found by scoring.
pub struct OracleChooser<'a, L: SkippableLm> {
    /// The model.
    pub lm: &'a L,
    /// The pool.
    pub pool: &'a pudding_core::CandidatePool,
}

impl<L: SkippableLm> SetChooser for OracleChooser<'_, L> {
    fn label(&self) -> String {
        format!("oracle {}", &self.pool.id()[..12])
    }
    fn choose(&mut self, item: &TaskItem) -> Result<Choice, EvalError> {
        let mut best = (f64::NEG_INFINITY, 0);
        for (i, mean) in gold_mean_loglikelihoods(self.lm, self.pool, item)?
            .into_iter()
            .enumerate()
        {
            if mean > best.0 {
                best = (mean, i);
            }
        }
        Ok(Choice {
            set: self.pool.candidates[best.1].set.clone(),
            candidate: Some(best.1),
            secs: None,
        })
    }
}

/// For each candidate of `pool`, the mean per-token log-likelihood of `item`'s correct
/// continuation with that candidate's blocks skipped: the oracle's criterion and the
/// router's training label.
pub fn gold_mean_loglikelihoods<L: SkippableLm>(
    lm: &L,
    pool: &pudding_core::CandidatePool,
    item: &TaskItem,
) -> Result<Vec<f64>, ScoreError> {
    let gold = item.requests()[item.gold].clone();
    let sets: Vec<OmissionSet> = pool.candidates.iter().map(|c| c.set.clone()).collect();
    let per_set = score_requests_sets(lm, std::slice::from_ref(&gold), &sets)?;
    per_set
        .into_iter()
        .map(|scores| {
            let s = scores.first().ok_or_else(|| {
                ScoreError::Model("no score returned for the correct continuation".into())
            })?;
            Ok(s.loglikelihood() / s.logprobs.len().max(1) as f64)
        })
        .collect()
}

/// Progress callback: (task, items done, items total).
pub type Progress<'a> = &'a mut dyn FnMut(TaskName, usize, usize);

/// Scores one item: all its requests, then acc/acc_norm predictions.
pub fn score_item<L: SkippableLm>(
    lm: &L,
    item: &TaskItem,
    skip: &OmissionSet,
) -> Result<ItemResult, EvalError> {
    score_item_with(
        lm,
        item,
        &Choice {
            set: skip.clone(),
            candidate: None,
            secs: None,
        },
    )
}

/// Scores one item under a chosen set, recording the choice.
pub fn score_item_with<L: SkippableLm>(
    lm: &L,
    item: &TaskItem,
    choice: &Choice,
) -> Result<ItemResult, EvalError> {
    let scores = score_requests(lm, &item.requests(), &choice.set)?;
    item_result(item, choice, &scores)
}

/// An item's result from the scores of its requests under `choice`.
fn item_result(
    item: &TaskItem,
    choice: &Choice,
    scores: &[pudding_core::ContinuationScore],
) -> Result<ItemResult, EvalError> {
    let loglikelihoods: Vec<f64> = scores.iter().map(|s| s.loglikelihood()).collect();
    let score = item.score(&loglikelihoods)?;
    Ok(ItemResult {
        doc_id: item.doc_id,
        is_greedy: scores.iter().map(|s| s.is_greedy).collect(),
        loglikelihoods,
        pred: score.pred,
        pred_norm: score.pred_norm,
        gold: score.gold,
        candidate: choice.candidate,
        skip: choice.set.blocks().to_vec(),
        router_secs: choice.secs,
    })
}

/// Opens the results file `out` to resume it (it must hold the same model and method), or
/// starts an empty report.
fn open_report<L: SkippableLm>(
    lm: &L,
    out: &Path,
    method: String,
    shard: Option<Shard>,
) -> Result<EvalReport, EvalError> {
    if !out.exists() {
        // An unwritable output fails now, not at the first checkpoint many items in.
        io::check_writable(out)?;
        return Ok(EvalReport {
            model: lm.fingerprint().clone(),
            method,
            tasks: BTreeMap::new(),
            shard,
        });
    }
    let previous: EvalReport = io::read_json(out)?;
    let mismatch = |reason: String| EvalError::ResumeMismatch {
        path: out.display().to_string(),
        reason,
    };
    if &previous.model != lm.fingerprint() {
        return Err(mismatch(format!(
            "it holds results of model {}",
            previous.model
        )));
    }
    if previous.method != method {
        return Err(mismatch(format!(
            "it holds results of method {:?}",
            previous.method
        )));
    }
    if previous.shard != shard {
        let name = |s: Option<Shard>| s.map_or("all items".to_string(), |s| format!("shard {s}"));
        return Err(mismatch(format!(
            "it holds {} of the items, this run scores {}",
            name(previous.shard),
            name(shard)
        )));
    }
    check_stored_items(&previous).map_err(mismatch)?;
    Ok(previous)
}

/// Checks what a results file read back holds is usable: each task under its own name,
/// each document once, and every item's gold and predicted choices among its scored
/// choices (an edited or corrupt file would otherwise index out of bounds later).
fn check_stored_items(report: &EvalReport) -> Result<(), String> {
    for (name, entry) in &report.tasks {
        if entry.task != *name {
            return Err(format!("its entry {name:?} holds task {:?}", entry.task));
        }
        let mut seen = HashSet::new();
        for item in &entry.items {
            if !seen.insert(item.doc_id) {
                return Err(format!("{name} document {} appears twice", item.doc_id));
            }
            let n = item.loglikelihoods.len();
            let (gold, pred, pred_norm) = (item.gold, item.pred, item.pred_norm);
            if n == 0 || gold >= n || pred >= n || pred_norm >= n || item.is_greedy.len() != n {
                return Err(format!(
                    "{name} document {}: gold {gold}, predictions {pred}/{pred_norm} and \
                     {} greedy flags for {n} scored choices",
                    item.doc_id,
                    item.is_greedy.len()
                ));
            }
        }
    }
    Ok(())
}

/// Checks a resumed file's entry for `task` against the task as this run loads it: the
/// same split and reported metric, and every stored item that this run would count has
/// as many scored choices and the same gold answer as the item now; every stored item is a
/// document of the task's split (`split_ids`). A file from another split or data version
/// would otherwise resume with foreign items counted as done, or carry them along.
fn check_stored_task(
    report: &EvalReport,
    out: &Path,
    task: TaskName,
    items: &[TaskItem],
    split_ids: &HashSet<usize>,
) -> Result<(), EvalError> {
    let Some(entry) = report.tasks.get(task.name()) else {
        return Ok(());
    };
    let mismatch = |reason: String| EvalError::ResumeMismatch {
        path: out.display().to_string(),
        reason,
    };
    let (split, metric) = (
        task.default_eval_split().name(),
        task.reported_metric().name(),
    );
    if entry.split != split || entry.metric != metric {
        return Err(mismatch(format!(
            "its {} entry is of split {:?} with metric {:?}, not {split:?} with {metric:?}",
            task.name(),
            entry.split,
            entry.metric
        )));
    }
    let by_id: HashMap<usize, &TaskItem> = items.iter().map(|i| (i.doc_id, i)).collect();
    for stored in &entry.items {
        if !split_ids.contains(&stored.doc_id) {
            return Err(mismatch(format!(
                "{} document {} is not in the task's {split} split ({} documents)",
                task.name(),
                stored.doc_id,
                split_ids.len()
            )));
        }
        if let Some(item) = by_id.get(&stored.doc_id) {
            if stored.loglikelihoods.len() != item.num_choices() || stored.gold != item.gold {
                return Err(mismatch(format!(
                    "{} document {} has {} scored choices and gold {}, but the task's item \
                     has {} choices and gold {}",
                    task.name(),
                    stored.doc_id,
                    stored.loglikelihoods.len(),
                    stored.gold,
                    item.num_choices(),
                    item.gold
                )));
            }
        }
    }
    Ok(())
}

/// The items of `task` that `config` evaluates (its shard of them, when sharded), and the doc ids of the task's whole
/// evaluation split (what a resumed file's items must come from).
fn task_items(
    config: &EvalConfig,
    task: TaskName,
    load: &mut dyn FnMut(TaskName, Split) -> Result<Vec<TaskItem>, DataError>,
) -> Result<(Vec<TaskItem>, HashSet<usize>), EvalError> {
    let mut items = load(task, task.default_eval_split())?;
    let split_ids = items.iter().map(|i| i.doc_id).collect();
    if let Some(limit) = config.limit {
        items = crate::tasks::limit_items(items, limit);
    }
    if let Some(shard) = config.shard {
        items = shard.select(items);
    }
    Ok((items, split_ids))
}

/// Opens `task`'s entry in `report` for a run over the items with doc ids `ids`: returns
/// the doc ids already scored and the entry's total, which counts this run's items plus
/// any stored items outside them (from a run with a larger limit), so a smaller run never
/// marks a fuller file partial, nor a partial one complete.
fn open_task(
    report: &mut EvalReport,
    task: TaskName,
    ids: &HashSet<usize>,
) -> (HashSet<usize>, usize) {
    let previous = report.tasks.get(task.name()).map(|e| e.n_total);
    let entry = task_entry(report, task, ids.len());
    let done: HashSet<usize> = entry.items.iter().map(|i| i.doc_id).collect();
    let outside = done.difference(ids).count();
    // With stored items outside this run, the file belongs to a larger run: its total
    // stays at least what that run recorded (a partial 4600/10042 must not become
    // 4600/4600 under a --limit 300 run).
    let n_total = if outside > 0 {
        (ids.len() + outside).max(previous.unwrap_or(0))
    } else {
        ids.len()
    };
    entry.n_total = n_total;
    (done, n_total)
}

/// `report` as a run over `ids` (doc ids per task name) sees it: for each of those tasks,
/// only the items in the run count, in the items and in the statistics (`seconds` stays
/// the file's total). The results file keeps every item; this is what the run returns and
/// prints.
fn as_run(mut report: EvalReport, ids: &BTreeMap<String, HashSet<usize>>) -> EvalReport {
    for (task, wanted) in ids {
        if let Some(entry) = report.tasks.get_mut(task) {
            if entry.items.iter().any(|i| !wanted.contains(&i.doc_id)) {
                entry.items.retain(|i| wanted.contains(&i.doc_id));
                entry.n_total = wanted.len();
                entry.refresh();
            }
        }
    }
    report
}

/// The report's entry for `task` (created empty if missing), its total set to `n_total`.
fn task_entry(report: &mut EvalReport, task: TaskName, n_total: usize) -> &mut TaskResult {
    let entry = report
        .tasks
        .entry(task.name().to_string())
        .or_insert_with(|| TaskResult {
            task: task.name().to_string(),
            split: task.default_eval_split().name().to_string(),
            metric: task.reported_metric().name().to_string(),
            n: 0,
            n_total,
            acc: Stat {
                mean: f64::NAN,
                stderr: None,
            },
            acc_norm: Stat {
                mean: f64::NAN,
                stderr: None,
            },
            seconds: 0.0,
            items: Vec::new(),
        });
    entry.n_total = n_total;
    entry
}

/// Runs (or resumes) an evaluation, writing `out` atomically every
/// `checkpoint_every` items and at the end of each task. `load` supplies the items of a
/// task split (normally [`crate::tasks::load_task`]). Stored items outside this run's
/// items (from a run with a larger limit) stay in the file but not in the returned report.
pub fn run_eval<L: SkippableLm>(
    lm: &L,
    config: &EvalConfig,
    chooser: &mut dyn SetChooser,
    out: &Path,
    load: &mut dyn FnMut(TaskName, Split) -> Result<Vec<TaskItem>, DataError>,
    progress: Progress<'_>,
) -> Result<EvalReport, EvalError> {
    let mut report = open_report(lm, out, chooser.label(), config.shard)?;
    let mut run_ids: BTreeMap<String, HashSet<usize>> = BTreeMap::new();
    for &task in &config.tasks {
        let (items, split_ids) = task_items(config, task, load)?;
        check_stored_task(&report, out, task, &items, &split_ids)?;
        let ids: HashSet<usize> = items.iter().map(|i| i.doc_id).collect();
        let (done, _) = open_task(&mut report, task, &ids);
        let mut complete = done.intersection(&ids).count();
        run_ids.insert(task.name().to_string(), ids);
        let start = Instant::now();
        let (mut since_checkpoint, mut scored) = (0, 0);
        progress(task, complete, items.len());
        for item in items.iter().filter(|i| !done.contains(&i.doc_id)) {
            let choice = chooser.choose(item)?;
            let result = score_item_with(lm, item, &choice)?;
            let entry = report.tasks.get_mut(task.name()).expect("inserted above");
            entry.items.push(result);
            since_checkpoint += 1;
            scored += 1;
            complete += 1;
            progress(task, complete, items.len());
            if since_checkpoint >= config.checkpoint_every.max(1) {
                let elapsed = start.elapsed().as_secs_f64();
                entry.seconds += elapsed;
                entry.refresh();
                io::write_json_atomic(out, &report)?;
                let entry = report.tasks.get_mut(task.name()).expect("inserted above");
                entry.seconds -= elapsed;
                since_checkpoint = 0;
            }
        }
        let entry = report.tasks.get_mut(task.name()).expect("inserted above");
        // A resumed task with nothing left to score keeps its recorded time.
        if scored > 0 {
            entry.seconds += start.elapsed().as_secs_f64();
        }
        entry.items.sort_by_key(|i| i.doc_id);
        entry.refresh();
        io::write_json_atomic(out, &report)?;
    }
    Ok(as_run(report, &run_ids))
}

/// Runs (or resumes) the evaluation of several fixed omission sets in one pass over the
/// items: `outs[i]` receives what [`run_eval`] with a [`StaticChooser`] for `sets[i]`
/// would write, and a file of either kind resumes the other. Each item is scored once
/// for the sets still missing it, through [`score_requests_sets`], so blocks with the same
/// input under several sets run once. A task's `seconds` in each file is that file's share
/// of the pass (each item's wall-clock time divided among the sets scored on it). With
/// `config.jobs` > 1 that many items are scored at once, each on one thread
/// ([`ParallelSetScorer::score_items`]); results are still recorded in item order. As
/// with [`run_eval`], the returned reports hold only this run's items.
pub fn run_eval_sets<L: SkippableLm + Sync>(
    lm: &L,
    config: &EvalConfig,
    sets: &[OmissionSet],
    outs: &[PathBuf],
    load: &mut dyn FnMut(TaskName, Split) -> Result<Vec<TaskItem>, DataError>,
    progress: Progress<'_>,
) -> Result<Vec<EvalReport>, EvalError> {
    if sets.len() != outs.len() {
        return Err(EvalError::Invalid(format!(
            "{} omission sets but {} results files",
            sets.len(),
            outs.len()
        )));
    }
    let scorer = ParallelSetScorer::new(config.jobs)?;
    let mut reports: Vec<EvalReport> = sets
        .iter()
        .zip(outs)
        .map(|(set, out)| open_report(lm, out, StaticChooser(set.clone()).label(), config.shard))
        .collect::<Result<_, _>>()?;
    let write_all = |reports: &[EvalReport]| -> Result<(), EvalError> {
        for (report, out) in reports.iter().zip(outs) {
            io::write_json_atomic(out, report)?;
        }
        Ok(())
    };
    let mut run_ids: BTreeMap<String, HashSet<usize>> = BTreeMap::new();
    for &task in &config.tasks {
        let (items, split_ids) = task_items(config, task, load)?;
        for (report, out) in reports.iter().zip(outs) {
            check_stored_task(report, out, task, &items, &split_ids)?;
        }
        let ids: HashSet<usize> = items.iter().map(|i| i.doc_id).collect();
        let (done, n_totals): (Vec<HashSet<usize>>, Vec<usize>) =
            reports.iter_mut().map(|r| open_task(r, task, &ids)).unzip();
        run_ids.insert(task.name().to_string(), ids);
        let finished = |doc_id: usize| done.iter().filter(|d| d.contains(&doc_id)).count();
        let mut complete = items
            .iter()
            .filter(|i| finished(i.doc_id) == sets.len())
            .count();
        progress(task, complete, items.len());
        // The items some set still lacks, with those sets.
        let todo: Vec<(&TaskItem, Vec<usize>)> = items
            .iter()
            .map(|item| {
                let missing: Vec<usize> = (0..sets.len())
                    .filter(|&s| !done[s].contains(&item.doc_id))
                    .collect();
                (item, missing)
            })
            .filter(|(_, missing)| !missing.is_empty())
            .collect();
        let work: Vec<(Vec<Request>, Vec<OmissionSet>)> = todo
            .iter()
            .map(|(item, missing)| {
                let wanted = missing.iter().map(|&s| sets[s].clone()).collect();
                (item.requests(), wanted)
            })
            .collect();
        let mut since_checkpoint = 0;
        // Items are scored `jobs` at a time, so an item's time is the wall-clock time since
        // the one before it was handed over: the shares add up to the run's time.
        let mut last = Instant::now();
        scorer.score_items(lm, &work, |i, per_set| -> Result<(), EvalError> {
            let (item, missing) = &todo[i];
            let share = last.elapsed().as_secs_f64() / missing.len() as f64;
            last = Instant::now();
            for (&s, scores) in missing.iter().zip(&per_set) {
                let choice = Choice {
                    set: sets[s].clone(),
                    candidate: None,
                    secs: None,
                };
                let result = item_result(item, &choice, scores)?;
                let entry = task_entry(&mut reports[s], task, n_totals[s]);
                entry.items.push(result);
                entry.seconds += share;
            }
            complete += 1;
            since_checkpoint += 1;
            progress(task, complete, items.len());
            if since_checkpoint >= config.checkpoint_every.max(1) {
                for (r, &n_total) in reports.iter_mut().zip(&n_totals) {
                    task_entry(r, task, n_total).refresh();
                }
                write_all(&reports)?;
                since_checkpoint = 0;
            }
            Ok(())
        })?;
        for (r, &n_total) in reports.iter_mut().zip(&n_totals) {
            let entry = task_entry(r, task, n_total);
            entry.items.sort_by_key(|i| i.doc_id);
            entry.refresh();
        }
        write_all(&reports)?;
    }
    Ok(reports.into_iter().map(|r| as_run(r, &run_ids)).collect())
}

/// A Markdown table with one row per report (method) and one column per task, reporting
/// each task's metric in percent, plus the average.
pub fn markdown_table(reports: &[EvalReport]) -> String {
    let mut tasks: Vec<&String> = reports.iter().flat_map(|r| r.tasks.keys()).collect();
    tasks.sort();
    tasks.dedup();
    let mut out = String::from("| method |");
    for t in &tasks {
        let metric = reports
            .iter()
            .find_map(|r| r.tasks.get(*t))
            .map(|r| r.metric.as_str())
            .unwrap_or("");
        out.push_str(&format!(" {t} ({metric}) |"));
    }
    out.push_str(" avg |\n|---|");
    out.push_str(&"---|".repeat(tasks.len() + 1));
    out.push('\n');
    for r in reports {
        out.push_str(&format!("| {} |", r.method));
        for t in &tasks {
            match r.tasks.get(*t) {
                Some(res) => {
                    let stderr = match (res.metric.as_str(), res.acc.stderr, res.acc_norm.stderr) {
                        ("acc_norm", _, Some(e)) | ("acc", Some(e), _) => {
                            format!(" ± {:.2}", e * 100.0)
                        }
                        _ => String::new(),
                    };
                    let partial = if res.n < res.n_total {
                        format!(" ({}/{})", res.n, res.n_total)
                    } else {
                        String::new()
                    };
                    out.push_str(&format!(
                        " {:.2}{stderr}{partial} |",
                        res.reported() * 100.0
                    ));
                }
                None => out.push_str(" - |"),
            }
        }
        out.push_str(&format!(" {:.2} |\n", r.average() * 100.0));
    }
    out
}

#[cfg(test)]
mod stat_tests {
    use super::Stat;

    #[test]
    fn the_mean_of_no_items_survives_a_json_round_trip() {
        let empty = Stat {
            mean: f64::NAN,
            stderr: None,
        };
        let text = serde_json::to_string(&empty).unwrap();
        assert_eq!(text, r#"{"mean":null,"stderr":null}"#);
        let back: Stat = serde_json::from_str(&text).unwrap();
        assert!(back.mean.is_nan() && back.stderr.is_none());
        let full: Stat = serde_json::from_str(r#"{"mean":0.5,"stderr":0.1}"#).unwrap();
        assert_eq!((full.mean, full.stderr), (0.5, Some(0.1)));
    }
}
