//! Training the router head on frozen-encoder embeddings with burn-train's `Learner`:
//! AdamW on the MSE between the predicted and the label vectors, linear warm-up then
//! linear decay, weight decay, gradient-norm clipping, mini-batches, a seeded
//! train/validation split, per-epoch metrics (MSE, top-1 agreement, regret), and early
//! stopping on validation MSE (the best epoch's checkpoint is kept).

use crate::config::{EpochMetrics, TrainConfig};
use crate::fit::{centered, split_rows};
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
