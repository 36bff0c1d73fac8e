//! What a router card records about how its router was trained ([`TrainConfig`] for the
//! frozen-encoder head, [`FinetuneConfig`] for the full fine-tune, [`EpochMetrics`]) and
//! the checks of those settings. Plain data: routing needs it to read a card, so it is
//! compiled without the `train` feature.

use crate::RouterError;
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

/// Settings of the full fine-tune (defaults: the paper's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Width of the head's hidden layer.
    pub hidden: usize,
    /// Peak learning rate (encoder and head).
    pub lr: f64,
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Linear warm-up steps (capped at the total number of steps), then linear decay.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient-norm clipping.
    pub grad_clip: f64,
    /// Seed of the split, the shuffling and the head's initialisation.
    pub seed: u64,
    /// Fraction of rows held out for validation.
    pub val_fraction: f64,
    /// Stop after this many epochs without a better validation MSE.
    pub patience: usize,
    /// Router input tokens kept.
    pub max_tokens: usize,
}

impl FinetuneConfig {
    /// Errors unless every setting is usable: the checks of
    /// [`TrainConfig::validate`] on the shared settings, and room for text
    /// between `[CLS]` and `[SEP]`.
    pub fn validate(&self) -> Result<(), RouterError> {
        check_training_settings(&TrainingSettings {
            hidden: self.hidden,
            lr: self.lr,
            epochs: self.epochs,
            batch_size: self.batch_size,
            weight_decay: self.weight_decay,
            grad_clip: self.grad_clip,
            val_fraction: self.val_fraction,
        })?;
        if self.max_tokens < 3 {
            return Err(RouterError::Invalid(format!(
                "max_tokens {} leaves no room for text between [CLS] and [SEP]",
                self.max_tokens
            )));
        }
        Ok(())
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            hidden: 256,
            lr: 1e-5,
            epochs: 10,
            batch_size: 32,
            warmup_steps: 500,
            weight_decay: 0.01,
            grad_clip: 1.0,
            seed: 42,
            val_fraction: 0.2,
            patience: 3,
            max_tokens: 256,
        }
    }
}
