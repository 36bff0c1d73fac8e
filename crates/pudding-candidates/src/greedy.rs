//! SLEB-style iterative greedy search for k blocks to omit.
//!
//! Phase p (1..=k): try switching off each block still on (except the protected first and
//! last blocks), score every trial by the summed calibration loss, and remove for good the
//! block whose removal gives the lowest loss. A checkpoint is written after each phase and
//! a restarted search resumes from it. Ties go to the lowest block index, so the search is
//! deterministic.

use crate::losses::{sample_loss, total_loss, LossKind};
use crate::CalibrationSample;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use pudding_core::{io, CoreError, OmissionSet, Shard, SkippableLm};
use pudding_eval::scorer::ScoreError;
use pudding_models::llama::StepContext;
use pudding_models::{LlamaLm, ModelError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Errors of the search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Scoring failed.
    #[error(transparent)]
    Score(#[from] ScoreError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A core error (omission set, checkpoint I/O).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The request cannot be satisfied.
    #[error("invalid search: {0}")]
    Invalid(String),
}

/// Search settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreedyConfig {
    /// Blocks to omit.
    pub k: usize,
    /// The first `protect_first` blocks are never removed (reference: 1).
    pub protect_first: usize,
    /// The last `protect_last` blocks are never removed (reference: 1).
    pub protect_last: usize,
}

impl Default for GreedyConfig {
    fn default() -> Self {
        Self {
            k: 6,
            protect_first: 1,
            protect_last: 1,
        }
    }
}

/// One phase of the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GreedyStep {
    /// The block removed in this phase.
    pub block: usize,
    /// Summed calibration loss with it removed (on top of the earlier phases).
    pub loss: f64,
    /// Every trial of the phase: (block, loss).
    pub trials: Vec<(usize, f64)>,
}

/// The outcome of a search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GreedyResult {
    /// The final omission set.
    pub set: OmissionSet,
    /// Blocks in the order they were removed.
    pub order: Vec<usize>,
    /// Loss of the dense model.
    pub dense_loss: f64,
    /// One entry per phase.
    pub steps: Vec<GreedyStep>,
}

/// Scores the trials of one phase: given the current set and the candidate blocks, the
/// summed loss with each candidate additionally removed.
pub trait TrialEvaluator {
    /// Summed loss under `set`.
    fn loss(&mut self, set: &OmissionSet) -> Result<f64, SearchError>;
    /// Summed loss of `current ∪ {b}` for each `b` in `candidates`.
    fn phase(
        &mut self,
        current: &OmissionSet,
        candidates: &[usize],
    ) -> Result<Vec<f64>, SearchError> {
        candidates
            .iter()
            .map(|&b| self.loss(&current.with(b)?))
            .collect()
    }
}

/// The plain evaluator: every trial scores every sample from scratch with the shared
/// scorer.
pub struct ScorerEvaluator<'a, L: SkippableLm> {
    /// The model.
    pub lm: &'a L,
    /// Calibration samples.
    pub samples: &'a [CalibrationSample],
    /// The loss.
    pub kind: LossKind,
}

impl<L: SkippableLm> TrialEvaluator for ScorerEvaluator<'_, L> {
    fn loss(&mut self, set: &OmissionSet) -> Result<f64, SearchError> {
        Ok(total_loss(self.lm, self.samples, self.kind, set)?)
    }
}

/// The fast evaluator for Llama-family models: a trial that switches off block `b` shares
/// every hidden state before `b` with the current model, so per sample the inputs of all
/// blocks are computed once per phase and each trial starts at block `b`.
pub struct PrefixCacheEvaluator<'a, B: Backend> {
    /// The model.
    pub lm: &'a LlamaLm<B>,
    /// Calibration samples.
    pub samples: &'a [CalibrationSample],
    /// The loss.
    pub kind: LossKind,
}

/// Samples scored together as one right-padded batch. The choices of a sample that share
/// one context are packed into a single row, `context ++ cont_0 ++ cont_1 ++ ...`: every
/// continuation sits at the positions it would have after the context alone and sees only
/// the context and itself (a tree-shaped mask), so the context is computed once per sample
/// instead of once per choice, with the same result.
struct SampleBatch {
    rows: Vec<Vec<u32>>,
    /// Per row and token: the rotary position.
    positions: Vec<Vec<usize>>,
    /// Per row and token: 0 for the shared context, `c + 1` for continuation `c`.
    segments: Vec<Vec<usize>>,
    /// Per choice: (row, positions whose next-token distribution predicts each
    /// continuation token, the continuation tokens).
    predicted: Vec<(usize, Vec<usize>, Vec<u32>)>,
    /// Per sample: (first choice, number of choices, gold choice relative to the first).
    samples: Vec<(usize, usize, usize)>,
}

/// Errors unless `sample` has a choice and its gold index names one of them.
pub(crate) fn check_sample(sample: &CalibrationSample, index: usize) -> Result<(), SearchError> {
    match sample.gold_error() {
        Some(reason) => Err(SearchError::Invalid(format!(
            "calibration sample {index}: {reason}"
        ))),
        None => Ok(()),
    }
}

/// Samples per batch: bounds the memory of the stored block inputs.
const SAMPLES_PER_BATCH: usize = 16;

/// Segment of padding tokens: seen by no real token.
const PADDING: usize = usize::MAX;

impl<B: Backend> PrefixCacheEvaluator<'_, B> {
    /// With no samples every loss would be 0 and every search would pick the lowest
    /// unprotected blocks, which looks like a result but is none.
    fn require_samples(&self) -> Result<(), SearchError> {
        if self.samples.is_empty() {
            return Err(SearchError::Invalid(
                "the loss needs at least one calibration sample".into(),
            ));
        }
        Ok(())
    }

    /// The choices each sample's loss needs, all samples in one batch.
    fn batch(&self, samples: &[CalibrationSample]) -> Result<SampleBatch, SearchError> {
        if samples
            .iter()
            .flat_map(|s| &s.choices)
            .any(|r| r.context.is_empty() || r.continuation.is_empty())
        {
            return Err(SearchError::Invalid(
                "a calibration request has an empty context or continuation".into(),
            ));
        }
        for (i, sample) in samples.iter().enumerate() {
            check_sample(sample, i)?;
            for r in &sample.choices {
                let mut ids = r.context.clone();
                ids.extend_from_slice(&r.continuation);
                self.lm.check_ids(&ids)?;
            }
        }
        let mut batch = SampleBatch {
            rows: Vec::new(),
            positions: Vec::new(),
            segments: Vec::new(),
            predicted: Vec::new(),
            samples: Vec::new(),
        };
        for sample in samples {
            let (chosen, gold) = match self.kind {
                LossKind::Tld => (sample.choices.iter().collect::<Vec<_>>(), sample.gold),
                _ => (vec![&sample.choices[sample.gold]], 0),
            };
            batch
                .samples
                .push((batch.predicted.len(), chosen.len(), gold));
            let shared = chosen.iter().all(|r| r.context == chosen[0].context);
            if shared {
                let context = &chosen[0].context;
                let l = context.len();
                let row = batch.rows.len();
                let mut ids = context.clone();
                let mut positions: Vec<usize> = (0..l).collect();
                let mut segments = vec![0; l];
                for (c, r) in chosen.iter().enumerate() {
                    let start = ids.len();
                    let n = r.continuation.len();
                    ids.extend_from_slice(&r.continuation);
                    positions.extend(l..l + n);
                    segments.extend(std::iter::repeat_n(c + 1, n));
                    // Token 0 is predicted by the last context token, token j by j - 1.
                    let at = std::iter::once(l - 1).chain(start..start + n - 1).collect();
                    batch.predicted.push((row, at, r.continuation.clone()));
                }
                batch.rows.push(ids);
                batch.positions.push(positions);
                batch.segments.push(segments);
            } else {
                for r in chosen {
                    let row = batch.rows.len();
                    let (l, n) = (r.context.len(), r.continuation.len());
                    let mut ids = r.context.clone();
                    ids.extend_from_slice(&r.continuation);
                    batch.predicted.push((
                        row,
                        (l - 1..l - 1 + n).collect(),
                        r.continuation.clone(),
                    ));
                    batch.positions.push((0..l + n).collect());
                    batch.segments.push(vec![0; l + n]);
                    batch.rows.push(ids);
                }
            }
        }
        Ok(batch)
    }

    /// Token ids `[rows, width]` (right-padded) and the packed step context.
    fn inputs(
        &self,
        batch: &SampleBatch,
    ) -> Result<(Tensor<B, 2, Int>, StepContext<B>), ModelError> {
        let width = batch.rows.iter().map(Vec::len).max().unwrap_or(0);
        let n = batch.rows.len();
        let mut flat = Vec::with_capacity(n * width);
        let mut positions = Vec::with_capacity(n * width);
        let mut segments = Vec::with_capacity(n * width);
        for ((r, p), g) in batch.rows.iter().zip(&batch.positions).zip(&batch.segments) {
            let pad = width - r.len();
            flat.extend(r.iter().map(|&t| t as i64));
            flat.extend(std::iter::repeat_n(0i64, pad));
            positions.extend_from_slice(p);
            positions.extend(std::iter::repeat_n(0, pad));
            segments.extend_from_slice(g);
            segments.extend(std::iter::repeat_n(PADDING, pad));
        }
        let model = self.lm.model();
        let tokens = Tensor::from_data(TensorData::new(flat, [n, width]), &model.device());
        let step = model.packed_step(n, width, &positions, |row, i, j| {
            let (si, sj) = (segments[row * width + i], segments[row * width + j]);
            j <= i && (sj == 0 || sj == si)
        })?;
        Ok((tokens, step))
    }

    /// Summed loss of a batch's samples from the final hidden states `[rows, width, d]`.
    /// Only the positions that predict continuation tokens go through the output head
    /// (the head is the most expensive matrix of a small model, and calibration contexts
    /// are long).
    fn loss_from_hidden(
        &self,
        hidden: Tensor<B, 3>,
        batch: &SampleBatch,
    ) -> Result<f64, SearchError> {
        let model = self.lm.model();
        let [rows, width, d] = hidden.dims();
        let device = hidden.device();
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        for (row, at, cont) in &batch.predicted {
            for (&p, &t) in at.iter().zip(cont) {
                positions.push((row * width + p) as i64);
                targets.push(t as i64);
            }
        }
        let n = positions.len();
        let picked = hidden
            .reshape([rows * width, d])
            .select(
                0,
                Tensor::<B, 1, Int>::from_data(TensorData::new(positions, [n]), &device),
            )
            .reshape([1, n, d]);
        let logp = log_softmax(model.head(picked), 2); // [1, n, v]
        let index = Tensor::<B, 3, Int>::from_data(TensorData::new(targets, [1, n, 1]), &device);
        let values = pudding_models::host_values(logp.gather(2, index))?;
        let mut per_choice = Vec::with_capacity(batch.predicted.len());
        let mut at = 0;
        for (_, _, cont) in &batch.predicted {
            per_choice.push(&values[at..at + cont.len()]);
            at += cont.len();
        }
        Ok(batch
            .samples
            .iter()
            .map(|&(first, count, gold)| {
                sample_loss(self.kind, &per_choice[first..first + count], gold)
            })
            .sum())
    }
}

impl<B: Backend> TrialEvaluator for PrefixCacheEvaluator<'_, B> {
    fn loss(&mut self, set: &OmissionSet) -> Result<f64, SearchError> {
        self.require_samples()?;
        let model = self.lm.model();
        let mut total = 0.0;
        for chunk in self.samples.chunks(SAMPLES_PER_BATCH) {
            let batch = self.batch(chunk)?;
            let (tokens, step) = self.inputs(&batch)?;
            let hidden = model.run_blocks_in(&step, set.kept(), model.embed_tokens(tokens))?;
            total += self.loss_from_hidden(hidden, &batch)?;
        }
        Ok(total)
    }

    fn phase(
        &mut self,
        current: &OmissionSet,
        candidates: &[usize],
    ) -> Result<Vec<f64>, SearchError> {
        self.require_samples()?;
        let model = self.lm.model();
        let n_blocks = current.n_blocks();
        let mut totals = vec![0.0; candidates.len()];
        for chunk in self.samples.chunks(SAMPLES_PER_BATCH) {
            let batch = self.batch(chunk)?;
            let (tokens, step) = self.inputs(&batch)?;
            // inputs[j] = residual stream entering block j under `current`.
            let mut inputs = Vec::with_capacity(n_blocks);
            let mut x = model.embed_tokens(tokens);
            for j in 0..n_blocks {
                inputs.push(x.clone());
                if !current.skips(j) {
                    x = model.run_blocks_in(&step, [j], x)?;
                }
            }
            for (slot, &b) in candidates.iter().enumerate() {
                let rest = ((b + 1)..n_blocks).filter(|&j| !current.skips(j));
                let h = model.run_blocks_in(&step, rest, inputs[b].clone())?;
                totals[slot] += self.loss_from_hidden(h, &batch)?;
            }
        }
        Ok(totals)
    }
}

/// What is saved after each phase.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    config: GreedyConfig,
    label: String,
    dense_loss: f64,
    steps: Vec<GreedyStep>,
}

/// Runs the greedy search over a model with `n_blocks` blocks. `label` identifies the run
/// (model, task, loss, calibration) in the checkpoint, which is resumed only when the label
/// and config match. `progress(phase, trial, trials)` is called as trials complete phases.
pub fn greedy_search(
    evaluator: &mut dyn TrialEvaluator,
    n_blocks: usize,
    config: &GreedyConfig,
    label: &str,
    checkpoint: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GreedyResult, SearchError> {
    let movable = movable_blocks(n_blocks, config)?;
    let mut state = resume_or_start(evaluator, n_blocks, config, label, checkpoint, &movable)?;
    let mut set = OmissionSet::new(state.steps.iter().map(|s| s.block), n_blocks)?;
    while state.steps.len() < config.k {
        let candidates = phase_candidates(&movable, &set);
        progress(state.steps.len() + 1, config.k);
        let losses = evaluator.phase(&set, &candidates)?;
        if losses.len() != candidates.len() {
            return Err(SearchError::Invalid(format!(
                "the evaluator returned {} losses for {} candidate blocks",
                losses.len(),
                candidates.len()
            )));
        }
        let step = choose_step(&set, candidates.into_iter().zip(losses).collect())?;
        set = set.with(step.block)?;
        state.steps.push(step);
        if let Some(path) = checkpoint {
            io::write_json_atomic(path, &state)?;
        }
    }
    Ok(GreedyResult {
        order: state.steps.iter().map(|s| s.block).collect(),
        set,
        dense_loss: state.dense_loss,
        steps: state.steps,
    })
}

/// The blocks a search may remove; errors when `k` blocks cannot be.
fn movable_blocks(n_blocks: usize, config: &GreedyConfig) -> Result<Vec<usize>, SearchError> {
    let movable: Vec<usize> =
        (config.protect_first..n_blocks.saturating_sub(config.protect_last)).collect();
    if config.k == 0 {
        return Err(SearchError::Invalid(
            "cannot search for an omission set of 0 blocks: k must be at least 1".into(),
        ));
    }
    if config.k > movable.len() || config.k >= n_blocks {
        return Err(SearchError::Invalid(format!(
            "cannot omit {} blocks: only {} of {n_blocks} are unprotected",
            config.k,
            movable.len()
        )));
    }
    Ok(movable)
}

/// The search's state from its checkpoint when there is one (refused when it belongs to
/// another search or is corrupt), else a fresh start with the dense loss.
fn resume_or_start(
    evaluator: &mut dyn TrialEvaluator,
    n_blocks: usize,
    config: &GreedyConfig,
    label: &str,
    checkpoint: Option<&Path>,
    movable: &[usize],
) -> Result<Checkpoint, SearchError> {
    match checkpoint.filter(|p| p.exists()) {
        Some(path) => {
            let saved: Checkpoint = io::read_json(path)?;
            if saved.config != *config || saved.label != label {
                return Err(SearchError::Invalid(format!(
                    "checkpoint {} belongs to another search ({}); delete it to start over",
                    path.display(),
                    saved.label
                )));
            }
            check_checkpoint(&saved, movable, path)?;
            Ok(saved)
        }
        None => Ok(Checkpoint {
            config: config.clone(),
            label: label.to_string(),
            dense_loss: finite_loss(evaluator.loss(&OmissionSet::dense(n_blocks)?)?, "dense")?,
            steps: Vec::new(),
        }),
    }
}

/// The trials of the next phase: every movable block still on, in block order.
fn phase_candidates(movable: &[usize], set: &OmissionSet) -> Vec<usize> {
    movable.iter().copied().filter(|b| !set.skips(*b)).collect()
}

/// The phase's outcome from its `(block, loss)` trials on top of `set`: the block with the
/// lowest loss, ties to the first (lowest) block. Non-finite losses are refused.
fn choose_step(set: &OmissionSet, trials: Vec<(usize, f64)>) -> Result<GreedyStep, SearchError> {
    for &(block, loss) in &trials {
        finite_loss(loss, &format!("block {block} omitted on top of [{set}]"))?;
    }
    let Some(&first) = trials.first() else {
        return Err(SearchError::Invalid(
            "a greedy phase has no blocks left to try".into(),
        ));
    };
    let (block, loss) = trials
        .iter()
        .skip(1)
        .fold(first, |best, &t| if t.1 < best.1 { t } else { best });
    Ok(GreedyStep {
        block,
        loss,
        trials,
    })
}

/// One shard's share of the trials of a search's next phase (`--step-shard I/N`): the
/// phase's candidate blocks split by position ([`Shard::range`]), each scored on top of
/// the finished phases. [`merge_phase_shards`] joins the N shards into the next checkpoint,
/// so a single search spreads over N workers, one round per phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseShard {
    /// Which shard of the phase's trials.
    pub shard: Shard,
    /// The search's label (as in its checkpoint).
    pub label: String,
    /// The search's settings.
    pub config: GreedyConfig,
    /// Blocks of the model.
    pub n_blocks: usize,
    /// The dense model's loss.
    pub dense_loss: f64,
    /// The finished phases the trials build on.
    pub steps: Vec<GreedyStep>,
    /// This shard's trials: (block, loss with it omitted on top of `steps`).
    pub trials: Vec<(usize, f64)>,
}

impl PhaseShard {
    /// The phase (1-based) these trials belong to.
    pub fn phase(&self) -> usize {
        self.steps.len() + 1
    }
}

/// Scores `shard`'s share of the next phase of the search that [`greedy_search`] would run
/// with the same arguments, resuming from `checkpoint` (which it only reads). A shard may
/// get no trials when the phase has fewer candidates than shards. Errors when the
/// checkpoint already holds all `k` phases.
pub fn greedy_phase_shard(
    evaluator: &mut dyn TrialEvaluator,
    n_blocks: usize,
    config: &GreedyConfig,
    label: &str,
    checkpoint: Option<&Path>,
    shard: Shard,
) -> Result<PhaseShard, SearchError> {
    let movable = movable_blocks(n_blocks, config)?;
    let state = resume_or_start(evaluator, n_blocks, config, label, checkpoint, &movable)?;
    if state.steps.len() >= config.k {
        return Err(SearchError::Invalid(format!(
            "the search {label} is complete: its checkpoint holds all {} phases; run it \
             without a step shard to write its result",
            config.k
        )));
    }
    let set = OmissionSet::new(state.steps.iter().map(|s| s.block), n_blocks)?;
    let blocks = shard.select(phase_candidates(&movable, &set));
    let losses = if blocks.is_empty() {
        Vec::new()
    } else {
        evaluator.phase(&set, &blocks)?
    };
    if losses.len() != blocks.len() {
        return Err(SearchError::Invalid(format!(
            "the evaluator returned {} losses for {} candidate blocks",
            losses.len(),
            blocks.len()
        )));
    }
    Ok(PhaseShard {
        shard,
        label: label.to_string(),
        config: config.clone(),
        n_blocks,
        dense_loss: state.dense_loss,
        steps: state.steps,
        trials: blocks.into_iter().zip(losses).collect(),
    })
}

/// What [`merge_phase_shards`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseMerge {
    /// The phase merged (1-based).
    pub phase: usize,
    /// Phases of the whole search.
    pub phases: usize,
    /// The phase's outcome.
    pub step: GreedyStep,
}

/// Joins the [`PhaseShard`]s of one phase (any order) and writes `checkpoint` (atomically)
/// exactly as [`greedy_search`] writes it after that phase, so the next round of shards, or
/// an unsharded run, resumes from it. Refuses a missing or repeated shard, mixed shard
/// counts, shards of another search or built on other phases, trials that do not cover the
/// phase's candidates once each, and a `checkpoint` on which the shards do not build
/// (merging the same shards again is a no-op).
pub fn merge_phase_shards(
    shards: &[PhaseShard],
    checkpoint: &Path,
) -> Result<PhaseMerge, SearchError> {
    let bad = |m: String| SearchError::Invalid(format!("cannot merge the phase shards: {m}"));
    let parts = Shard::in_order(shards, |p| p.shard).map_err(|e| bad(e.to_string()))?;
    let first = parts[0];
    for p in &parts {
        if p.label != first.label || p.config != first.config || p.n_blocks != first.n_blocks {
            return Err(bad(format!(
                "shard {} is of another search ({})",
                p.shard, p.label
            )));
        }
        // Bitwise: shards of one search compute the dense loss and the earlier phases the
        // same way, so any difference means they did not start from the same checkpoint.
        if p.dense_loss.to_bits() != first.dense_loss.to_bits() || p.steps != first.steps {
            return Err(bad(format!(
                "shard {} built on other phases than shard {} (phase {} vs {}): rerun it \
                 from the current checkpoint",
                p.shard,
                first.shard,
                p.phase(),
                first.phase()
            )));
        }
    }
    let movable = movable_blocks(first.n_blocks, &first.config)?;
    let state = Checkpoint {
        config: first.config.clone(),
        label: first.label.clone(),
        dense_loss: first.dense_loss,
        steps: first.steps.clone(),
    };
    check_checkpoint(&state, &movable, checkpoint)?;
    if state.steps.len() >= state.config.k {
        return Err(bad(format!(
            "the shards build on all {} phases: there is no phase left to merge",
            state.config.k
        )));
    }
    let set = OmissionSet::new(state.steps.iter().map(|s| s.block), first.n_blocks)?;
    let expected = phase_candidates(&movable, &set);
    let trials: Vec<(usize, f64)> = parts.iter().flat_map(|p| p.trials.clone()).collect();
    let blocks: Vec<usize> = trials.iter().map(|t| t.0).collect();
    if blocks != expected {
        return Err(bad(format!(
            "the shards tried blocks {blocks:?}, phase {} tries {expected:?}",
            first.phase()
        )));
    }
    let step = choose_step(&set, trials)?;
    let mut merged = state;
    merged.steps.push(step.clone());
    if checkpoint.exists() {
        let saved: Checkpoint = io::read_json(checkpoint)?;
        let builds_on = saved.label == merged.label
            && saved.config == merged.config
            && (saved.steps == first.steps || saved.steps == merged.steps);
        if !builds_on {
            return Err(bad(format!(
                "the shards build on phase {} of {}, but {} holds {} phases of {}",
                first.steps.len(),
                first.label,
                checkpoint.display(),
                saved.steps.len(),
                saved.label
            )));
        }
    }
    io::write_json_atomic(checkpoint, &merged)?;
    Ok(PhaseMerge {
        phase: merged.steps.len(),
        phases: merged.config.k,
        step,
    })
}

/// A loss that is NaN or infinite means the model's numbers broke (an f16 overflow, weights
/// holding NaN): comparing it with the others would pick a block silently, so it is refused.
fn finite_loss(loss: f64, what: &str) -> Result<f64, SearchError> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(SearchError::Invalid(format!(
            "the calibration loss with {what} is {loss}: the model produced non-finite \
             numbers (try --dtype f32, or check the weights)"
        )))
    }
}

/// Refuses a checkpoint that cannot come from this search: more steps than `k`, a block
/// outside the movable range or repeated, or a non-finite loss.
fn check_checkpoint(saved: &Checkpoint, movable: &[usize], path: &Path) -> Result<(), SearchError> {
    let corrupt = |why: String| {
        SearchError::Invalid(format!(
            "checkpoint {} is corrupt ({why}); delete it to start over",
            path.display()
        ))
    };
    if saved.steps.len() > saved.config.k {
        return Err(corrupt(format!(
            "{} steps for k = {}",
            saved.steps.len(),
            saved.config.k
        )));
    }
    if !saved.dense_loss.is_finite() {
        return Err(corrupt(format!("dense loss {}", saved.dense_loss)));
    }
    let mut seen = std::collections::HashSet::new();
    for step in &saved.steps {
        if !movable.contains(&step.block) || !seen.insert(step.block) {
            return Err(corrupt(format!(
                "block {} is protected, out of range or repeated",
                step.block
            )));
        }
        if !step.loss.is_finite() {
            return Err(corrupt(format!(
                "loss {} at block {}",
                step.loss, step.block
            )));
        }
    }
    Ok(())
}
