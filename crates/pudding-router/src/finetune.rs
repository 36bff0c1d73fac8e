//! Full fine-tuning (the paper's setting, its section on the router): the BERT encoder and the
//! head are trained together on the MSE against the label vectors. AdamW with a linear
//! warm-up (in steps) then linear decay, decoupled weight decay, gradient-norm clipping,
//! mini-batches, the seeded split of [`crate::fit`], per-epoch metrics, a checkpoint
//! directory per epoch, early stopping; the best epoch is kept.
//!
//! The head is a burn module updated by burn's AdamW; the encoder's plain tensors are
//! updated by [`EncoderAdamW`], the same rule written out (moments per parameter, bias
//! correction, decoupled decay), with their gradients clipped by their global norm.

use crate::config::{EpochMetrics, FinetuneConfig};
use crate::fit::{linear_schedule, route_metrics, shuffle, split_rows};
use crate::head::RouterHead;
use crate::RouterError;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use pudding_models::bert::{BertEncoder, BertParam, ParamMapper};
use pudding_models::sampling::SplitMix64;
use std::path::{Path, PathBuf};

/// The outcome: the best epoch's head (inference backend) and where its encoder was saved.
pub struct FinetuneOutcome<B: Backend> {
    /// The head of the best validation epoch.
    pub head: RouterHead<B>,
    /// The best epoch's fine-tuned encoder, as a Hugging Face directory.
    pub encoder_dir: PathBuf,
    /// Metrics of every epoch run.
    pub history: Vec<EpochMetrics>,
    /// The best epoch's metrics.
    pub best: EpochMetrics,
    /// Indices of the validation rows.
    pub val_rows: Vec<usize>,
}

/// AdamW over the encoder's tensors (moments kept on the inner backend).
pub struct EncoderAdamW<B: Backend> {
    moments: Vec<Option<(Tensor<B, 1>, Tensor<B, 1>)>>,
    step: i32,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl<B: Backend> EncoderAdamW<B> {
    /// AdamW with burn's defaults (betas 0.9 / 0.999, eps 1e-5) and `weight_decay`.
    pub fn new(n_params: usize, weight_decay: f64) -> Self {
        Self {
            moments: vec![None; n_params],
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-5,
            weight_decay,
        }
    }

    /// The new value of parameter `index` (flattened) with gradient `grad` at rate `lr`.
    fn update(
        &mut self,
        index: usize,
        w: Tensor<B, 1>,
        grad: Tensor<B, 1>,
        lr: f64,
    ) -> Tensor<B, 1> {
        let (m, v) = match self.moments[index].take() {
            Some((m, v)) => (
                m.mul_scalar(self.beta1) + grad.clone().mul_scalar(1.0 - self.beta1),
                v.mul_scalar(self.beta2) + grad.powi_scalar(2).mul_scalar(1.0 - self.beta2),
            ),
            None => (
                grad.clone().mul_scalar(1.0 - self.beta1),
                grad.powi_scalar(2).mul_scalar(1.0 - self.beta2),
            ),
        };
        let t = self.step.max(1);
        let m_hat = m.clone().div_scalar(1.0 - self.beta1.powi(t));
        let v_hat = v.clone().div_scalar(1.0 - self.beta2.powi(t));
        self.moments[index] = Some((m, v));
        let decayed = w.mul_scalar(1.0 - lr * self.weight_decay);
        decayed - (m_hat / v_hat.sqrt().add_scalar(self.eps)).mul_scalar(lr)
    }
}

/// One optimiser step over the encoder: gradients `grads[index]` (flattened, already
/// clipped), applied through [`BertEncoder::map_params`].
struct Step<'a, AB: AutodiffBackend> {
    optim: &'a mut EncoderAdamW<AB::InnerBackend>,
    grads: &'a [Option<Tensor<AB::InnerBackend, 1>>],
    lr: f64,
}

impl<AB: AutodiffBackend> ParamMapper<AB> for Step<'_, AB> {
    fn matrix(&mut self, index: usize, t: Tensor<AB, 2>) -> Tensor<AB, 2> {
        let dims = t.dims();
        let w = t.inner().reshape([dims[0] * dims[1]]);
        let new = match &self.grads[index] {
            Some(g) => self.optim.update(index, w, g.clone(), self.lr),
            None => w,
        };
        Tensor::from_inner(new.reshape(dims)).require_grad()
    }
    fn vector(&mut self, index: usize, t: Tensor<AB, 1>) -> Tensor<AB, 1> {
        let w = t.inner();
        let new = match &self.grads[index] {
            Some(g) => self.optim.update(index, w, g.clone(), self.lr),
            None => w,
        };
        Tensor::from_inner(new).require_grad()
    }
}

/// Marks every parameter as requiring gradients.
pub struct RequireGrad;

impl<AB: AutodiffBackend> ParamMapper<AB> for RequireGrad {
    fn matrix(&mut self, _: usize, t: Tensor<AB, 2>) -> Tensor<AB, 2> {
        t.require_grad()
    }
    fn vector(&mut self, _: usize, t: Tensor<AB, 1>) -> Tensor<AB, 1> {
        t.require_grad()
    }
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64, RouterError> {
    Ok(f64::from(pudding_models::host_values(t)?[0]))
}

/// Fine-tunes `encoder` (loaded on the autodiff backend) and a fresh head on `texts[i]`
/// -> `labels[i]` (`n` texts, `n` label rows of `m` values, one per pool candidate).
/// Every epoch is saved under `checkpoints/epoch-NNN/` (`encoder/`, `head.safetensors`,
/// `metrics.json`); the best epoch's directory is returned.
pub fn finetune<AB: AutodiffBackend>(
    encoder: BertEncoder<AB>,
    texts: &[String],
    labels: &[Vec<f32>],
    config: &FinetuneConfig,
    checkpoints: &Path,
    device: &AB::Device,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<FinetuneOutcome<AB::InnerBackend>, RouterError> {
    config.validate()?;
    let positions = encoder.config().max_position_embeddings;
    if config.max_tokens > positions {
        return Err(RouterError::Invalid(format!(
            "max_tokens {} is more than the encoder's {positions} positions",
            config.max_tokens
        )));
    }
    let n = texts.len();
    if n < 2 || labels.len() != n {
        return Err(RouterError::Invalid(format!(
            "need at least 2 rows with one label each (got {n} texts, {} labels)",
            labels.len()
        )));
    }
    let m = labels[0].len();
    if m == 0 || labels.iter().any(|l| l.len() != m) {
        return Err(RouterError::Invalid(
            "label vectors of unequal width".into(),
        ));
    }
    let (val_rows, mut train_rows) = split_rows(n, config.val_fraction, config.seed)?;
    let mut rng = SplitMix64::new(config.seed ^ 0x5EED);
    let d = encoder.config().hidden_size;
    AB::seed(device, config.seed);
    let mut head = RouterHead::<AB>::new(d, config.hidden, m, device);
    let mut head_optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(Some(
            burn::optim::grad_clipping::GradientClippingConfig::Norm(config.grad_clip as f32),
        ))
        .init::<AB, RouterHead<AB>>();
    let mut encoder = encoder.map_params(&mut RequireGrad);
    let n_params = encoder.params().len();
    let mut encoder_optim = EncoderAdamW::<AB::InnerBackend>::new(n_params, config.weight_decay);

    let batch = config.batch_size;
    let total_steps = (train_rows.len().div_ceil(batch) * config.epochs).max(1);
    let warmup = config.warmup_steps.clamp(1, total_steps);
    let lr_at = |step| linear_schedule(config.lr, warmup, total_steps, step);
    let targets = |rows: &[usize]| -> Tensor<AB, 2> {
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|&i| labels[i].iter().copied())
            .collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), m]), device)
    };
    let val_y: Vec<f32> = val_rows
        .iter()
        .flat_map(|&i| labels[i].iter().copied())
        .collect();
    let mut history = Vec::new();
    let mut best: Option<(EpochMetrics, RouterHead<AB::InnerBackend>, PathBuf)> = None;
    let mut since_best = 0;
    let mut step = 0;
    for epoch in 1..=config.epochs {
        shuffle(&mut train_rows, &mut rng);
        let mut train_mse = 0.0;
        for chunk in train_rows.chunks(batch) {
            let batch_texts: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let x = encoder.embed(&batch_texts, config.max_tokens)?;
            let loss = (head.forward(x) - targets(chunk)).powi_scalar(2).mean();
            train_mse += scalar(loss.clone().inner())? * chunk.len() as f64;
            let grads = loss.backward();
            // Encoder gradients, flattened, clipped by their global norm.
            let mut encoder_grads: Vec<Option<Tensor<AB::InnerBackend, 1>>> = encoder
                .params()
                .into_iter()
                .map(|(_, p)| match p {
                    BertParam::Matrix(t) => t.grad(&grads).map(|g| {
                        let n = g.shape().num_elements();
                        g.reshape([n])
                    }),
                    BertParam::Vector(t) => t.grad(&grads),
                })
                .collect();
            let mut squared = 0.0;
            for g in encoder_grads.iter().flatten() {
                squared += scalar(g.clone().powi_scalar(2).sum())?;
            }
            let norm = squared.sqrt();
            if norm > config.grad_clip {
                let factor = config.grad_clip / norm;
                for g in encoder_grads.iter_mut() {
                    *g = g.take().map(|g| g.mul_scalar(factor));
                }
            }
            let lr = lr_at(step);
            let head_grads = GradientsParams::from_grads(grads, &head);
            head = head_optim.step(lr, head, head_grads);
            encoder_optim.step += 1;
            encoder = encoder.map_params(&mut Step::<AB> {
                optim: &mut encoder_optim,
                grads: &encoder_grads,
                lr,
            });
            step += 1;
        }
        let mut pred = Vec::with_capacity(val_y.len());
        for chunk in val_rows.chunks(batch) {
            let batch_texts: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let x = encoder.embed(&batch_texts, config.max_tokens)?;
            pred.extend(pudding_models::host_values(head.forward(x).inner())?);
        }
        let (val_mse, val_top1, val_regret) = route_metrics(&pred, &val_y, m);
        if !val_mse.is_finite() {
            return Err(RouterError::Invalid(format!(
                "epoch {epoch}: the validation MSE is {val_mse}; the training diverged \
                 (try a lower --lr)"
            )));
        }
        let metrics = EpochMetrics {
            epoch,
            train_mse: train_mse / train_rows.len().max(1) as f64,
            val_mse,
            val_top1,
            val_regret,
        };
        on_epoch(&metrics);
        let dir = checkpoints.join(format!("epoch-{epoch:03}"));
        encoder.save_dir(&dir.join("encoder"))?;
        let valid = head.valid();
        valid.save(&dir.join("head.safetensors"))?;
        pudding_core::io::write_json_atomic(&dir.join("metrics.json"), &metrics)?;
        history.push(metrics.clone());
        if best.as_ref().is_none_or(|(b, _, _)| val_mse < b.val_mse) {
            best = Some((metrics, valid, dir));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }
    let (best, head, dir) = best.ok_or_else(|| RouterError::Invalid("no epoch ran".into()))?;
    Ok(FinetuneOutcome {
        head,
        encoder_dir: dir.join("encoder"),
        history,
        best,
        val_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::EncoderAdamW;
    use burn::prelude::*;
    use pudding_models::{host_values, CpuBackend as B};

    #[test]
    fn first_adamw_step_matches_the_closed_form() {
        // With zero moments the bias-corrected first step is w(1 - lr wd) - lr g/(|g| + eps).
        let device = Default::default();
        let w = Tensor::<B, 1>::from_floats([1.0, -2.0, 0.5], &device);
        let g = Tensor::<B, 1>::from_floats([0.1, -0.4, 0.0], &device);
        let mut opt = EncoderAdamW::<B>::new(1, 0.01);
        opt.step = 1;
        let (lr, eps) = (0.1, 1e-5);
        let got = host_values(opt.update(0, w, g, lr)).unwrap();
        let want: Vec<f64> = [(1.0, 0.1), (-2.0, -0.4), (0.5, 0.0)]
            .iter()
            .map(|&(w, g): &(f64, f64)| w * (1.0 - lr * 0.01) - lr * g / (g.abs() + eps))
            .collect();
        for (a, b) in got.iter().zip(&want) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }
}
