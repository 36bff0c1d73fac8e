//! burn-train plumbing for the head trainer ([`crate::train::train_head`]): the dataset
//! rows and their batcher, the train/validation steps of [`RouterHead`], the warm-up +
//! linear-decay learning-rate schedule, the routing metrics (MSE, top-1 agreement,
//! regret), an in-memory per-epoch metric log, the best-epoch checkpoint / early-stopping
//! strategy, and a silent renderer.
//!
//! Why our own log and strategy rather than burn-train's file logger and
//! `MetricEarlyStoppingStrategy`: burn-train's built-in strategies query the metric store
//! right after the validation epoch, while metrics are still in flight on another thread;
//! ours wait for the store's end-of-epoch event, so every decision sees the whole epoch.

use crate::config::EpochMetrics;
use crate::fit::{linear_schedule, route_metrics};
use crate::head::RouterHead;
use burn::backend::Flex;
use burn::data::dataloader::batcher::Batcher;
use burn::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::logger::MetricLogger;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::store::{EpochSummary, EventStoreClient, MetricsUpdate, Split};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricDefinition, MetricId, MetricMetadata, MetricName,
    Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{EarlyStoppingStrategy, InferenceStep, RegressionOutput, TrainOutput, TrainStep};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One training example: an embedding (`d` values) and its label vector (`m` values).
#[derive(Clone, Debug)]
pub struct Row {
    /// The pooled prompt embedding.
    pub input: Vec<f32>,
    /// Mean per-token log-likelihood of the answer under each candidate.
    pub label: Vec<f32>,
}

/// A mini-batch: inputs `[b, d]`, targets `[b, m]`.
#[derive(Clone, Debug)]
pub struct HeadBatch<B: Backend> {
    /// Embeddings `[b, d]`.
    pub inputs: Tensor<B, 2>,
    /// Label vectors `[b, m]`.
    pub targets: Tensor<B, 2>,
}

/// Stacks [`Row`]s into a [`HeadBatch`].
#[derive(Clone, Debug, Default)]
pub struct RowBatcher;

impl<B: Backend> Batcher<B, Row, HeadBatch<B>> for RowBatcher {
    fn batch(&self, items: Vec<Row>, device: &B::Device) -> HeadBatch<B> {
        let (b, d) = (items.len(), items.first().map_or(0, |r| r.input.len()));
        let m = items.first().map_or(0, |r| r.label.len());
        let inputs: Vec<f32> = items.iter().flat_map(|r| r.input.iter().copied()).collect();
        let targets: Vec<f32> = items.iter().flat_map(|r| r.label.iter().copied()).collect();
        HeadBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, [b, d]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, m]), device),
        }
    }
}

impl<B: Backend> RouterHead<B> {
    /// Predictions and the mean squared error of a batch.
    fn regression(&self, batch: HeadBatch<B>) -> RegressionOutput<B> {
        let output = self.forward(batch.inputs);
        let loss = (output.clone() - batch.targets.clone())
            .powi_scalar(2)
            .mean();
        RegressionOutput::new(loss, output, batch.targets)
    }
}

impl<B: AutodiffBackend> TrainStep for RouterHead<B> {
    type Input = HeadBatch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: HeadBatch<B>) -> TrainOutput<RegressionOutput<B>> {
        let item = self.regression(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl<B: Backend> InferenceStep for RouterHead<B> {
    type Input = HeadBatch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: HeadBatch<B>) -> RegressionOutput<B> {
        self.regression(batch)
    }
}

/// Linear warm-up to the peak over `warmup` steps, then linear decay to 0 at `total`
/// ([`linear_schedule`]); burn-train asks for one rate before every training batch.
#[derive(Clone, Debug)]
pub struct WarmupLinearDecay {
    peak: f64,
    warmup: usize,
    total: usize,
    step: usize,
}

impl WarmupLinearDecay {
    /// A schedule over `total` optimiser steps.
    pub fn new(peak: f64, warmup: usize, total: usize) -> Self {
        Self {
            peak,
            warmup,
            total,
            step: 0,
        }
    }
}

impl LrScheduler for WarmupLinearDecay {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> LearningRate {
        let lr = linear_schedule(
            self.peak,
            self.warmup,
            self.total,
            self.step.min(self.total),
        );
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.step = record;
        self
    }
}

/// Predictions and labels of one batch on the host, row-major `[n, m]`.
pub struct RoutingInput {
    predictions: Vec<f32>,
    labels: Vec<f32>,
    m: usize,
}

impl Adaptor<RoutingInput> for RegressionOutput<Flex> {
    fn adapt(&self) -> RoutingInput {
        let [_, m] = self.output.dims();
        let host = |t: &Tensor<Flex, 2>| t.to_data().iter::<f32>().collect::<Vec<f32>>();
        RoutingInput {
            predictions: host(&self.output),
            labels: host(&self.targets),
            m,
        }
    }
}

/// Which routing metric a [`RoutingMetric`] computes (per row, averaged over rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingMetricKind {
    /// Mean squared error between predictions and labels (mean over the `m` outputs).
    Mse,
    /// 1 when the predicted best candidate is the label's best, else 0.
    Top1,
    /// `label[best] - label[chosen]` (0 is perfect).
    Regret,
}

impl RoutingMetricKind {
    /// The metric's name in burn-train's logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mse => "Routing MSE",
            Self::Top1 => "Routing top-1",
            Self::Regret => "Routing regret",
        }
    }
}

/// A routing metric, weighted by rows so that an epoch's value is the exact mean over
/// its rows (burn-train's `LossMetric` weights every batch equally).
#[derive(Clone)]
pub struct RoutingMetric {
    kind: RoutingMetricKind,
    name: MetricName,
    state: NumericMetricState,
}

impl RoutingMetric {
    /// A fresh metric.
    pub fn new(kind: RoutingMetricKind) -> Self {
        Self {
            kind,
            name: Arc::new(kind.name().to_string()),
            state: NumericMetricState::default(),
        }
    }
}

impl Metric for RoutingMetric {
    type Input = RoutingInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: self.kind == RoutingMetricKind::Top1,
        }
        .into()
    }

    fn update(&mut self, item: &RoutingInput, _metadata: &MetricMetadata) -> SerializedEntry {
        let m = item.m.max(1);
        let n = item.labels.len() / m;
        let (mse, top1, regret) = route_metrics(&item.predictions, &item.labels, m);
        let value = match self.kind {
            RoutingMetricKind::Mse => mse,
            RoutingMetricKind::Top1 => top1,
            RoutingMetricKind::Regret => regret,
        };
        self.state
            .update(value, n, FormatOptions::new(self.name()).precision(4))
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl Numeric for RoutingMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

#[derive(Default)]
struct LogState {
    names: HashMap<MetricId, String>,
    /// (split, epoch, metric) -> (sum of value x rows, rows).
    sums: HashMap<(Split, usize, String), (f64, usize)>,
    finished: Vec<(Split, usize)>,
}

/// burn-train's metric logger replaced by an in-memory one: the row-weighted mean of every
/// numeric metric per split and epoch, and a signal when an epoch's metrics are complete.
/// Clones share the log.
#[derive(Clone, Default)]
pub struct EpochLog(Arc<(Mutex<LogState>, Condvar)>);

impl EpochLog {
    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.0
             .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch's mean of `metric` on `split`, once logged.
    pub fn value(&self, split: &Split, epoch: usize, metric: RoutingMetricKind) -> Option<f64> {
        self.state()
            .sums
            .get(&(split.clone(), epoch, metric.name().to_string()))
            .map(|&(sum, n)| sum / n.max(1) as f64)
    }

    /// Blocks until the store has delivered the end of `epoch` on `split` (bounded wait,
    /// in case a run is interrupted before the event comes).
    fn wait_for(&self, split: &Split, epoch: usize) {
        let (lock, signal) = &*self.0;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        let key = (split.clone(), epoch);
        while !state.finished.contains(&key) {
            let (next, timeout) = signal
                .wait_timeout(state, Duration::from_secs(60))
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if timeout.timed_out() {
                break;
            }
        }
    }

    /// The metrics of every epoch with both splits logged, in order.
    pub fn history(&self) -> Vec<EpochMetrics> {
        let mut epochs: Vec<usize> = self
            .state()
            .finished
            .iter()
            .filter(|(split, _)| *split == Split::Valid)
            .map(|&(_, e)| e)
            .collect();
        epochs.sort_unstable();
        epochs
            .into_iter()
            .filter_map(|epoch| self.metrics(epoch))
            .collect()
    }

    /// One epoch's [`EpochMetrics`] (training MSE and validation metrics).
    pub fn metrics(&self, epoch: usize) -> Option<EpochMetrics> {
        use RoutingMetricKind::*;
        Some(EpochMetrics {
            epoch,
            train_mse: self.value(&Split::Train, epoch, Mse)?,
            val_mse: self.value(&Split::Valid, epoch, Mse)?,
            val_top1: self.value(&Split::Valid, epoch, Top1)?,
            val_regret: self.value(&Split::Valid, epoch, Regret)?,
        })
    }
}

impl MetricLogger for EpochLog {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let mut state = self.state();
        for entry in update.entries_numeric {
            let Some(name) = state.names.get(&entry.entry.metric_id).cloned() else {
                continue;
            };
            let (value, n) = match entry.numeric_entry {
                NumericEntry::Value(v) => (v, 1),
                NumericEntry::Aggregated {
                    aggregated_value,
                    count,
                } => (aggregated_value, count),
            };
            let slot = state
                .sums
                .entry((split.clone(), epoch, name))
                .or_insert((0.0, 0));
            slot.0 += value * n as f64;
            slot.1 += n;
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        Ok(self
            .state()
            .sums
            .get(&(split.clone(), epoch, name.to_string()))
            .map(|&(sum, n)| {
                vec![NumericEntry::Aggregated {
                    aggregated_value: sum / n.max(1) as f64,
                    count: n,
                }]
            })
            .unwrap_or_default())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.state()
            .names
            .insert(definition.metric_id, definition.name);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        self.state()
            .finished
            .push((summary.split, summary.epoch_number));
        self.0 .1.notify_all();
    }
}

#[derive(Default)]
struct TrackerState {
    /// The last epoch looked at.
    seen: usize,
    /// Best epoch so far (0: none) and its validation MSE.
    best: (usize, f64),
    /// The epoch whose checkpoint is on disk.
    saved: Option<usize>,
}

/// Keeps one checkpoint, of the epoch with the lowest validation MSE, and stops training
/// after `patience` epochs without a better one. Clones share their state (burn-train
/// takes one for checkpointing and one for early stopping).
#[derive(Clone)]
pub struct BestEpoch {
    log: EpochLog,
    patience: usize,
    state: Arc<Mutex<TrackerState>>,
}

impl BestEpoch {
    /// A tracker reading `log`.
    pub fn new(log: EpochLog, patience: usize) -> Self {
        Self {
            log,
            patience,
            state: Arc::new(Mutex::new(TrackerState {
                best: (0, f64::INFINITY),
                ..Default::default()
            })),
        }
    }

    fn observe(&self, epoch: usize) -> std::sync::MutexGuard<'_, TrackerState> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.seen < epoch {
            self.log.wait_for(&Split::Valid, epoch);
            state.seen = epoch;
            if let Some(mse) = self.log.value(&Split::Valid, epoch, RoutingMetricKind::Mse) {
                if mse < state.best.1 {
                    state.best = (epoch, mse);
                }
            }
        }
        state
    }

    /// The best epoch so far (`None` before the first).
    pub fn best_epoch(&self) -> Option<usize> {
        let best = self.state.lock().unwrap_or_else(|p| p.into_inner()).best.0;
        (best > 0).then_some(best)
    }
}

impl CheckpointingStrategy for BestEpoch {
    fn checkpointing(
        &mut self,
        epoch: usize,
        _store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        let mut state = self.observe(epoch);
        if state.best.0 != epoch {
            return Vec::new();
        }
        let mut actions = vec![CheckpointingAction::Save];
        if let Some(previous) = state.saved.replace(epoch) {
            actions.push(CheckpointingAction::Delete(previous));
        }
        actions
    }
}

impl EarlyStoppingStrategy for BestEpoch {
    fn should_stop(&mut self, epoch: usize, _store: &EventStoreClient) -> bool {
        let state = self.observe(epoch);
        state.best.0 > 0 && epoch - state.best.0 >= self.patience
    }
}

/// A renderer that shows nothing (progress is reported by the caller per epoch).
pub struct Silent;

impl MetricsRendererTraining for Silent {
    fn update_train(&mut self, _state: MetricState) {}
    fn update_valid(&mut self, _state: MetricState) {}
    fn render_train(&mut self, _item: TrainingProgress, _progress: Vec<ProgressType>) {}
    fn render_valid(&mut self, _item: TrainingProgress, _progress: Vec<ProgressType>) {}
}

impl MetricsRendererEvaluation for Silent {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    fn render_test(&mut self, _item: EvaluationProgress, _progress: Vec<ProgressType>) {}
}

impl MetricsRenderer for Silent {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _definition: MetricDefinition) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_linear_schedule() {
        let mut schedule = WarmupLinearDecay::new(0.1, 3, 10);
        let rates: Vec<f64> = (0..10).map(|_| schedule.step()).collect();
        // Written out by hand: warm-up 1/3, 2/3, 1 of the peak over 3 steps, then a linear
        // decay over the remaining 7 steps that would reach 0 at step 10.
        let expected = [
            0.1 / 3.0,
            0.2 / 3.0,
            0.1,
            0.1,
            0.6 / 7.0,
            0.5 / 7.0,
            0.4 / 7.0,
            0.3 / 7.0,
            0.2 / 7.0,
            0.1 / 7.0,
        ];
        for (step, (got, want)) in rates.iter().zip(expected).enumerate() {
            assert!((got - want).abs() < 1e-12, "step {step}: {got} vs {want}");
        }
        let direct: Vec<f64> = (0..10).map(|s| linear_schedule(0.1, 3, 10, s)).collect();
        assert_eq!(rates, direct);
    }

    #[test]
    fn routing_metrics_are_row_weighted_over_batches() {
        let input = |predictions: Vec<f32>, labels: Vec<f32>| RoutingInput {
            predictions,
            labels,
            m: 2,
        };
        let progress = || burn::data::dataloader::Progress {
            items_processed: 1,
            items_total: 1,
        };
        let meta = MetricMetadata {
            progress: progress(),
            global_progress: progress(),
            iteration: None,
            lr: None,
        };
        // Batch 1: one row, chosen 1 = best 1. Batch 2: two rows, one wrong by 2.
        let batches = [
            input(vec![0.0, 1.0], vec![-2.0, -1.0]),
            input(vec![1.0, 0.0, 0.0, 1.0], vec![-3.0, -1.0, -2.0, -1.0]),
        ];
        let mut top1 = RoutingMetric::new(RoutingMetricKind::Top1);
        let mut regret = RoutingMetric::new(RoutingMetricKind::Regret);
        for b in &batches {
            top1.update(b, &meta);
            regret.update(b, &meta);
        }
        let running = |m: &RoutingMetric| match m.running_value() {
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => (aggregated_value, count),
            NumericEntry::Value(v) => (v, 1),
        };
        assert_eq!(running(&top1), (2.0 / 3.0, 3));
        assert_eq!(running(&regret), (2.0 / 3.0, 3));
    }
}
