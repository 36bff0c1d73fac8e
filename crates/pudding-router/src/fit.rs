//! The pieces both trainers share and the analyses of a trained router use: the seeded
//! train/validation split, shuffling, the warm-up + linear-decay schedule, label
//! centring and the routing metrics (MSE, top-1 agreement, regret). No training framework.

use crate::RouterError;
use pudding_core::router::argmax;
use pudding_models::sampling::SplitMix64;

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
