//! Full fine-tuning (the paper's setting, its section on the router): the BERT encoder and the
//! head are trained together on the MSE against the label vectors. AdamW with a linear
//! warm-up (in steps) then linear decay, decoupled weight decay, gradient-norm clipping,
//! mini-batches, the seeded split of [`crate::fit`], per-epoch metrics, a checkpoint
//! directory per epoch, early stopping; the best epoch is kept.
//!
//! The encoder and the head are one Burn module ([`EncoderAndHead`]) stepped by burn's
//! AdamW. Gradients are clipped by their global norm over every parameter (the paper's
//! "grad-norm clip 1.0", read as PyTorch's `clip_grad_norm_(model.parameters())`); burn's
//! own `GradientClipping::Norm` clips each parameter on its own, so the clip is done here
//! ([`clip_global_norm`]) before the step.

use crate::config::{EpochMetrics, FinetuneConfig};
use crate::fit::{linear_schedule, route_metrics, shuffle, split_rows};
use crate::head::RouterHead;
use crate::RouterError;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use pudding_models::bert::BertEncoder;
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

/// The router being fine-tuned: the encoder and the head as one module, so one optimiser
/// steps both.
#[derive(Module, Debug)]
pub struct EncoderAndHead<B: Backend> {
    /// The prompt encoder (`[b, s]` ids -> `[b, d]` mean-pooled embeddings).
    pub encoder: BertEncoder<B>,
    /// The MLP head (`[b, d]` -> `[b, m]` predicted label vectors).
    pub head: RouterHead<B>,
}

/// Sums the squares of every gradient of a module's parameters (one `[1]` tensor each).
struct SquaredNorms<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorms<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sums.push(g.powi_scalar(2).sum());
        }
    }
}

/// Multiplies every gradient of a module's parameters by `factor`.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Scales `grads` (of `module`'s parameters) so their global L2 norm is at most
/// `max_norm`; returns the norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Result<f64, RouterError> {
    let mut squares = SquaredNorms::<B> {
        grads,
        sums: Vec::new(),
    };
    module.visit(&mut squares);
    if squares.sums.is_empty() {
        return Ok(0.0);
    }
    let norm = scalar(Tensor::cat(squares.sums, 0).sum())?.sqrt();
    if norm > max_norm {
        module.visit(&mut ScaleGrads {
            grads,
            factor: max_norm / norm,
        });
    }
    Ok(norm)
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
    let head = RouterHead::<AB>::new(d, config.hidden, m, device);
    let mut model = EncoderAndHead { encoder, head };
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init::<AB, EncoderAndHead<AB>>();

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
            let x = model.encoder.embed(&batch_texts, config.max_tokens)?;
            let loss = (model.head.forward(x) - targets(chunk))
                .powi_scalar(2)
                .mean();
            train_mse += scalar(loss.clone().inner())? * chunk.len() as f64;
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, config.grad_clip)?;
            model = optim.step(lr_at(step), model, grads);
            step += 1;
        }
        let mut pred = Vec::with_capacity(val_y.len());
        for chunk in val_rows.chunks(batch) {
            let batch_texts: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let x = model.encoder.embed(&batch_texts, config.max_tokens)?;
            pred.extend(pudding_models::host_values(model.head.forward(x).inner())?);
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
        model.encoder.save_dir(&dir.join("encoder"))?;
        let valid = model.head.valid();
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
    use super::clip_global_norm;
    use crate::head::RouterHead;
    use burn::backend::Autodiff;
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use pudding_models::{host_values, CpuBackend};

    type B = Autodiff<CpuBackend>;

    /// The global norm is the root of the sum of every gradient's squares (computed here on
    /// the host from the gradients themselves), and clipping scales all of them by
    /// `max / norm`, leaving their directions alone; under the limit nothing changes.
    #[test]
    fn global_norm_clipping_scales_every_gradient_by_one_factor() {
        let device = Default::default();
        let head = RouterHead::<B>::new(4, 3, 2, &device);
        let x =
            Tensor::<B, 2>::from_floats([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]], &device);
        let loss = head.forward(x).powi_scalar(2).sum().mul_scalar(10.0);
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        let values = |g: &GradientsParams| -> Vec<f64> {
            let mut out = Vec::new();
            for linear in [&head.hidden, &head.out] {
                let w = g.get::<CpuBackend, 2>(linear.weight.id).unwrap();
                out.extend(host_values(w).unwrap().into_iter().map(f64::from));
                let b = g
                    .get::<CpuBackend, 1>(linear.bias.as_ref().unwrap().id)
                    .unwrap();
                out.extend(host_values(b).unwrap().into_iter().map(f64::from));
            }
            out
        };
        let before = values(&grads);
        let want_norm = before.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(want_norm > 1.0, "the test needs a norm over the limit");

        let mut unclipped = GradientsParams::from_grads(
            head.forward(Tensor::ones([1, 4], &device))
                .sum()
                .mul_scalar(1e-6)
                .backward(),
            &head,
        );
        let small = values(&unclipped);
        let small_norm = clip_global_norm(&head, &mut unclipped, 1.0).unwrap();
        assert!(small_norm < 1.0);
        assert_eq!(values(&unclipped), small);

        let mut clipped = grads;
        let norm = clip_global_norm(&head, &mut clipped, 1.0).unwrap();
        assert!(
            (norm - want_norm).abs() < 1e-4 * want_norm,
            "{norm} vs {want_norm}"
        );
        let after = values(&clipped);
        let after_norm = after.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((after_norm - 1.0).abs() < 1e-4, "clipped norm {after_norm}");
        for (a, b) in after.iter().zip(&before) {
            assert!((a - b / want_norm).abs() < 1e-5, "{a} vs {}", b / want_norm);
        }
    }
}
