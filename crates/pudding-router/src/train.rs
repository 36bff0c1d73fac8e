//! Training the router head on frozen-encoder embeddings with burn-train's `Learner`:
//! AdamW on the MSE between the predicted and the label vectors, linear warm-up then
//! linear decay, weight decay, gradient-norm clipping, mini-batches, a seeded
//! train/validation split, per-epoch metrics (MSE, top-1 agreement, regret), and early
//! stopping on validation MSE (the best epoch's checkpoint is kept). Also the split,
//! shuffle and schedule helpers the full fine-tune shares.

use crate::head::RouterHead;
use crate::learner::{
    BestEpoch, EpochLog, RoutingMetric, RoutingMetricKind, Row, RowBatcher, Silent,
    WarmupLinearDecay,
};
use crate::RouterError;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::{AutodiffModule, Module};
use burn::optim::AdamWConfig;
use burn::prelude::*;
use burn::record::DefaultRecorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{Learner, SupervisedTraining};
use pudding_core::router::argmax;
use pudding_models::sampling::SplitMix64;
use serde::{Deserialize, Serialize};

/// Training settings (defaults for the frozen-encoder head).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Width of the head's hidden layer.
    pub hidden: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Maximum epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Fraction of all steps spent warming up linearly (then linear decay to 0).
    pub warmup_fraction: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Gradient-norm clipping.
    pub grad_clip: f32,
    /// Seed of the split, the shuffling and the initialisation.
    pub seed: u64,
    /// Fraction of rows held out for validation.
    pub val_fraction: f64,
    /// Stop after this many epochs without a better validation MSE.
    pub patience: usize,
    /// Subtract each row's mean from its label before training (the paper's labels are
    /// raw; off by default). Routing takes the argmax, which a per-row shift does not
    /// change, so the head can spend its capacity on the differences between candidates
    /// instead of each prompt's overall difficulty. Validation MSE is then on the
    /// centred labels; top-1 and regret are unchanged by the shift.
    #[serde(default)]
    pub center_labels: bool,
}

impl TrainConfig {
    /// Errors unless every setting is usable: a non-zero head width, epoch count and batch
    /// size, a finite positive learning rate and clipping norm, fractions in range, a
    /// finite non-negative weight decay.
    pub fn validate(&self) -> Result<(), RouterError> {
        check_training_settings(&TrainingSettings {
            hidden: self.hidden,
            lr: self.lr,
            epochs: self.epochs,
            batch_size: self.batch_size,
            weight_decay: f64::from(self.weight_decay),
            grad_clip: f64::from(self.grad_clip),
            val_fraction: self.val_fraction,
        })?;
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return Err(RouterError::Invalid(format!(
                "warmup_fraction {} must lie in [0, 1)",
                self.warmup_fraction
            )));
        }
        Ok(())
    }
}

/// The settings head training and fine-tuning share, for [`check_training_settings`].
pub(crate) struct TrainingSettings {
    /// Head hidden width.
    pub hidden: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Maximum epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient-norm clipping.
    pub grad_clip: f64,
    /// Fraction of rows held out for validation.
    pub val_fraction: f64,
}

/// Errors on a setting no training run can use (instead of clamping it silently).
pub(crate) fn check_training_settings(s: &TrainingSettings) -> Result<(), RouterError> {
    let invalid = |m: String| Err(RouterError::Invalid(m));
    if s.hidden == 0 || s.epochs == 0 || s.batch_size == 0 {
        return invalid(format!(
            "hidden width {}, epochs {} and batch size {} must all be at least 1",
            s.hidden, s.epochs, s.batch_size
        ));
    }
    if !(s.lr.is_finite() && s.lr > 0.0) {
        return invalid(format!(
            "learning rate {} must be finite and positive",
            s.lr
        ));
    }
    if !(s.grad_clip.is_finite() && s.grad_clip > 0.0) {
        return invalid(format!(
            "gradient clipping norm {} must be finite and positive",
            s.grad_clip
        ));
    }
    if !(s.weight_decay.is_finite() && s.weight_decay >= 0.0) {
        return invalid(format!(
            "weight decay {} must be finite and non-negative",
            s.weight_decay
        ));
    }
    if !(s.val_fraction > 0.0 && s.val_fraction < 1.0) {
        return invalid(format!(
            "validation fraction {} must lie strictly between 0 and 1",
            s.val_fraction
        ));
    }
    Ok(())
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            hidden: 256,
            lr: 1e-3,
            epochs: 200,
            batch_size: 32,
            warmup_fraction: 0.05,
            weight_decay: 0.01,
            grad_clip: 1.0,
            seed: 42,
            val_fraction: 0.2,
            patience: 20,
            center_labels: false,
        }
    }
}

/// Metrics after one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training MSE over the epoch's batches.
    pub train_mse: f64,
    /// Validation MSE.
    pub val_mse: f64,
    /// Fraction of validation rows where the predicted best candidate is the label's best.
    pub val_top1: f64,
    /// Mean over validation rows of `label[best] - label[chosen]` (0 is perfect).
    pub val_regret: f64,
}

/// A trained head with its history.
pub struct TrainOutcome<B: Backend> {
    /// The head of the best validation epoch (inference backend).
    pub head: RouterHead<B>,
    /// Metrics of every epoch run.
    pub history: Vec<EpochMetrics>,
    /// The best epoch's metrics.
    pub best: EpochMetrics,
    /// Indices of the validation rows.
    pub val_rows: Vec<usize>,
}

/// Validation metrics of predictions against labels (row-major `[n, m]` both).
pub fn route_metrics(pred: &[f32], labels: &[f32], m: usize) -> (f64, f64, f64) {
    let n = labels.len() / m.max(1);
    let (mut mse, mut top1, mut regret) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let p = &pred[i * m..(i + 1) * m];
        let l = &labels[i * m..(i + 1) * m];
        mse += p
            .iter()
            .zip(l)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / m as f64;
        let (chosen, best) = (argmax(p), argmax(l));
        top1 += (chosen == best) as u8 as f64;
        regret += (l[best] - l[chosen]) as f64;
    }
    let n = n.max(1) as f64;
    (mse / n, top1 / n, regret / n)
}

/// `label` minus its mean.
pub fn centered(label: &[f32]) -> Vec<f32> {
    let mean = label.iter().sum::<f32>() / label.len().max(1) as f32;
    label.iter().map(|v| v - mean).collect()
}

/// Fisher-Yates shuffle driven by `rng` (the order every training loop here uses).
pub fn shuffle(rows: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..rows.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        rows.swap(i, j);
    }
}

/// Learning rate at 0-based `step` of `total` steps: linear warm-up over `warmup` steps to
/// `peak`, then linear decay to 0.
pub fn linear_schedule(peak: f64, warmup: usize, total: usize, step: usize) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        peak * (total - step) as f64 / (total - warmup).max(1) as f64
    }
}

/// The seeded train/validation split: `(validation rows, training rows)`, at least one
/// row in each. Fewer than 2 rows cannot be split: [`RouterError::Invalid`].
pub fn split_rows(
    n: usize,
    val_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), RouterError> {
    if n < 2 {
        return Err(RouterError::Invalid(format!(
            "{n} labelled rows cannot be split into training and validation rows (need at least 2)"
        )));
    }
    Ok(split_with(n, val_fraction, &mut SplitMix64::new(seed)))
}

fn split_with(n: usize, val_fraction: f64, rng: &mut SplitMix64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, rng);
    let n_val = ((n as f64 * val_fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    (order[..n_val].to_vec(), order[n_val..].to_vec())
}

/// Trains a head mapping `inputs[i]` (`n` embeddings of width `d`) to `labels[i]` (`n`
/// rows of `m` values, one per pool candidate) with
/// burn-train's `Learner` (see [`crate::learner`]): AdamW with weight decay and gradient
/// clipping, the warm-up + linear-decay schedule, seeded shuffling, validation metrics
/// every epoch, a checkpoint of the best epoch (in a temporary directory) and early
/// stopping. Returns the best epoch's head; `on_epoch` then sees every epoch's metrics.
pub fn train_head<AB: AutodiffBackend>(
    inputs: &[Vec<f32>],
    labels: &[Vec<f32>],
    config: &TrainConfig,
    device: &AB::Device,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<TrainOutcome<AB::InnerBackend>, RouterError> {
    config.validate()?;
    let n = inputs.len();
    if n < 2 || labels.len() != n {
        return Err(RouterError::Invalid(format!(
            "need at least 2 rows with one label each (got {n} inputs, {} labels)",
            labels.len()
        )));
    }
    let d = inputs[0].len();
    let m = labels[0].len();
    if inputs.iter().any(|x| x.len() != d) || labels.iter().any(|y| y.len() != m) || m == 0 {
        return Err(RouterError::Invalid("rows of unequal width".into()));
    }
    let (val_rows, train_rows) = split_rows(n, config.val_fraction, config.seed)?;
    let rows = |indices: &[usize]| -> Vec<Row> {
        indices
            .iter()
            .map(|&i| Row {
                input: inputs[i].clone(),
                label: if config.center_labels {
                    centered(&labels[i])
                } else {
                    labels[i].clone()
                },
            })
            .collect()
    };
    let batch = config.batch_size;
    let total_steps = (train_rows.len().div_ceil(batch) * config.epochs).max(1);
    let warmup = ((total_steps as f64 * config.warmup_fraction) as usize).max(1);
    let train_loader = DataLoaderBuilder::new(RowBatcher)
        .batch_size(batch)
        .shuffle(config.seed)
        .set_device(device.clone())
        .build(InMemDataset::new(rows(&train_rows)));
    let valid_loader = DataLoaderBuilder::<AB::InnerBackend, Row, _>::new(RowBatcher)
        .batch_size(batch)
        .set_device(device.clone())
        .build(InMemDataset::new(rows(&val_rows)));

    AB::seed(device, config.seed);
    let head = RouterHead::<AB>::new(d, config.hidden, m, device);
    let optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(config.grad_clip)))
        .init::<AB, RouterHead<AB>>();
    let schedule = WarmupLinearDecay::new(config.lr, warmup, total_steps);

    let artifacts = tempfile::tempdir().map_err(|source| pudding_core::CoreError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let log = EpochLog::default();
    let best_epoch = BestEpoch::new(log.clone(), config.patience.max(1));
    use RoutingMetricKind::{Mse, Regret, Top1};
    SupervisedTraining::new(artifacts.path(), train_loader, valid_loader)
        .num_epochs(config.epochs)
        .renderer(Silent)
        .with_application_logger(None)
        .with_metric_logger(log.clone())
        .metric_train_numeric(RoutingMetric::new(Mse))
        .metric_valid_numeric(RoutingMetric::new(Mse))
        .metric_valid_numeric(RoutingMetric::new(Top1))
        .metric_valid_numeric(RoutingMetric::new(Regret))
        .with_file_checkpointer(DefaultRecorder::new())
        .with_checkpointing_strategy(best_epoch.clone())
        .early_stopping(best_epoch.clone())
        .launch(Learner::new(head, optim, schedule));

    let history = log.history();
    history.iter().for_each(on_epoch);
    let best_index = best_epoch
        .best_epoch()
        .ok_or_else(|| RouterError::Invalid("training logged no validation epoch".into()))?;
    let best = log
        .metrics(best_index)
        .ok_or_else(|| RouterError::Invalid(format!("no metrics for epoch {best_index}")))?;
    if let Some(bad) = history
        .iter()
        .find(|m| !m.val_mse.is_finite() || !m.train_mse.is_finite())
    {
        return Err(RouterError::Invalid(format!(
            "epoch {}: the MSE is {} (train) / {} (validation); the training diverged \
             (try a lower --lr)",
            bad.epoch, bad.train_mse, bad.val_mse
        )));
    }
    let checkpoint = artifacts
        .path()
        .join("checkpoint")
        .join(format!("model-{best_index}"));
    let head = RouterHead::<AB>::new(d, config.hidden, m, device)
        .load_file(checkpoint, &DefaultRecorder::new(), device)
        .map_err(|e| RouterError::Invalid(format!("best checkpoint: {e}")))?
        .valid();
    Ok(TrainOutcome {
        head,
        history,
        best,
        val_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::route_metrics;

    #[test]
    fn metrics_on_literal_values() {
        // Row 0: predicted best 1 = label best 1. Row 1: predicted 0, label best 1.
        let pred = [0.0, 1.0, 1.0, 0.0];
        let labels = [-2.0, -1.0, -3.0, -1.0];
        let (mse, top1, regret) = route_metrics(&pred, &labels, 2);
        assert_eq!(top1, 0.5);
        assert_eq!(regret, 1.0); // row 1: -1 - (-3)
        assert!((mse - (4.0 + 4.0 + 16.0 + 1.0) / 4.0).abs() < 1e-9);
    }
}
