//! Training the router head on frozen-encoder embeddings: AdamW on the MSE between the
//! predicted and the label vectors, linear warm-up then linear decay, weight decay,
//! gradient-norm clipping, mini-batches, a seeded train/validation split, per-epoch
//! metrics, and early stopping on validation MSE (the best epoch's weights are kept).

use crate::head::RouterHead;
use crate::RouterError;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
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
/// row in each (`n >= 2`).
pub fn split_rows(n: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    split_with(n, val_fraction, &mut SplitMix64::new(seed))
}

fn split_with(n: usize, val_fraction: f64, rng: &mut SplitMix64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, rng);
    let n_val = ((n as f64 * val_fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    (order[..n_val].to_vec(), order[n_val..].to_vec())
}

fn matrix<B: Backend>(rows: &[&Vec<f32>], width: usize, device: &B::Device) -> Tensor<B, 2> {
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// Trains a head mapping `inputs[i]` (embeddings, all the same width) to `labels[i]`.
pub fn train_head<AB: AutodiffBackend>(
    inputs: &[Vec<f32>],
    labels: &[Vec<f32>],
    config: &TrainConfig,
    device: &AB::Device,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<TrainOutcome<AB::InnerBackend>, RouterError> {
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
    let mut rng = SplitMix64::new(config.seed);
    let (val_rows, mut train_rows) = split_with(n, config.val_fraction, &mut rng);

    AB::seed(device, config.seed);
    let mut head = RouterHead::<AB>::new(d, config.hidden, m, device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .with_grad_clipping(Some(
            burn::optim::grad_clipping::GradientClippingConfig::Norm(config.grad_clip),
        ))
        .init::<AB, RouterHead<AB>>();
    let inner_device = device.clone();
    let val_x = matrix::<AB::InnerBackend>(
        &val_rows.iter().map(|&i| &inputs[i]).collect::<Vec<_>>(),
        d,
        &inner_device,
    );
    let val_y: Vec<f32> = val_rows
        .iter()
        .flat_map(|&i| labels[i].iter().copied())
        .collect();

    let batch = config.batch_size.max(1);
    let steps_per_epoch = train_rows.len().div_ceil(batch);
    let total_steps = (steps_per_epoch * config.epochs).max(1);
    let warmup = ((total_steps as f64 * config.warmup_fraction) as usize).max(1);
    let lr_at = |step| linear_schedule(config.lr, warmup, total_steps, step);
    let mut history = Vec::new();
    let mut best: Option<(EpochMetrics, RouterHead<AB::InnerBackend>)> = None;
    let mut since_best = 0;
    let mut step = 0;
    for epoch in 1..=config.epochs {
        shuffle(&mut train_rows, &mut rng);
        let mut train_mse = 0.0;
        for chunk in train_rows.chunks(batch) {
            let x = matrix::<AB>(
                &chunk.iter().map(|&i| &inputs[i]).collect::<Vec<_>>(),
                d,
                device,
            );
            let y = matrix::<AB>(
                &chunk.iter().map(|&i| &labels[i]).collect::<Vec<_>>(),
                m,
                device,
            );
            let loss = (head.forward(x) - y).powi_scalar(2).mean();
            train_mse += loss
                .clone()
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .map_err(|e| RouterError::Invalid(format!("{e:?}")))?[0]
                * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(lr_at(step), head, grads);
            step += 1;
        }
        let valid = head.valid();
        let pred = pudding_models::host_values(valid.forward(val_x.clone()))?;
        let (val_mse, val_top1, val_regret) = route_metrics(&pred, &val_y, m);
        let metrics = EpochMetrics {
            epoch,
            train_mse: train_mse / train_rows.len() as f64,
            val_mse,
            val_top1,
            val_regret,
        };
        on_epoch(&metrics);
        history.push(metrics.clone());
        if best.as_ref().is_none_or(|(b, _)| val_mse < b.val_mse) {
            best = Some((metrics, valid));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }
    let (best, head) = best.expect("at least one epoch ran");
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
