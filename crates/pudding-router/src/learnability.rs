//! How much of the oracle's gain a router could get from the prompt at best: cross-validated
//! simple predictors over a labels file's prompt embeddings, each scored on held-out rows
//! against the oracle (every row's best candidate) and the best single candidate.
//!
//! Row `i` belongs to fold `i % folds`; each fold is predicted by predictors fitted on the
//! other folds. The predictors:
//! - **best single candidate**: the candidate with the highest mean label;
//! - **per-task constant**: per task, the candidate with the highest mean label on that
//!   task's rows (the best single candidate for a task with no training rows);
//! - **k nearest neighbours**: the mean label of the `neighbours` training rows whose
//!   embeddings have the highest cosine similarity (ties to the earlier row);
//! - **ridge probe**: a linear map from the embedding to the label vector, least squares
//!   with an L2 penalty `ridge` on the weights (features and labels centred on the training
//!   means, so the intercept is not penalised).
//!
//! Each picks the candidate with the highest predicted label. A label is the mean per-token
//! log-likelihood of the gold answer under each candidate, so "mean label" is in those units;
//! the share of the oracle's gain a predictor recovers is
//! `(mean label of its picks - best single's) / (oracle's - best single's)`.
//! `scripts/reference/learnability_reference.py` computes the same with numpy.

use crate::RouterError;
use serde::{Deserialize, Serialize};

/// Settings of [`learnability`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnabilityConfig {
    /// Cross-validation folds (at least 2).
    pub folds: usize,
    /// Neighbours of the k-nearest-neighbours predictor (at least 1).
    pub neighbours: usize,
    /// L2 penalty of the ridge probe (> 0).
    pub ridge: f64,
}

impl Default for LearnabilityConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            neighbours: 10,
            ridge: 1.0,
        }
    }
}

impl LearnabilityConfig {
    /// Errors unless there are at least 2 folds, 1 neighbour and a positive ridge penalty.
    pub fn check(&self) -> Result<(), RouterError> {
        if self.folds < 2 {
            return Err(RouterError::Invalid(format!(
                "{} folds: cross-validation needs at least 2 folds",
                self.folds
            )));
        }
        if self.neighbours == 0 || self.ridge.is_nan() || self.ridge <= 0.0 {
            return Err(RouterError::Invalid(
                "the neighbours must be at least 1 and the ridge penalty above 0".into(),
            ));
        }
        Ok(())
    }
}

/// One predictor's held-out scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorScore {
    /// The predictor.
    pub predictor: String,
    /// Mean label of its picks.
    pub mean_label: f64,
    /// Share of rows where it picks the oracle's candidate.
    pub top1_agreement: f64,
    /// Mean of (oracle's label - its pick's label).
    pub regret: f64,
    /// `(mean_label - best single's) / (oracle's - best single's)`; `None` when the oracle
    /// gains nothing over the best single candidate.
    pub recovered: Option<f64>,
}

/// The outcome of [`learnability`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Learnability {
    /// Labelled rows.
    pub rows: usize,
    /// Candidates per row.
    pub candidates: usize,
    /// The settings.
    pub config: LearnabilityConfig,
    /// Per predictor, in order: best single candidate, per-task constant, k nearest
    /// neighbours, ridge probe, oracle.
    pub predictors: Vec<PredictorScore>,
    /// Per predictor (same order), the candidate picked for each row.
    pub picks: Vec<Vec<usize>>,
}

/// Cross-validates the predictors above on `embeddings` (`[rows][d]`), the rows' `tasks`
/// and their `labels` (`[rows][candidates]`).
pub fn learnability(
    embeddings: &[Vec<f32>],
    tasks: &[String],
    labels: &[Vec<f32>],
    config: &LearnabilityConfig,
) -> Result<Learnability, RouterError> {
    let invalid = |m: String| Err(RouterError::Invalid(m));
    let n = labels.len();
    if embeddings.len() != n || tasks.len() != n {
        return invalid(format!(
            "{} embeddings and {} tasks for {n} labelled rows",
            embeddings.len(),
            tasks.len()
        ));
    }
    config.check()?;
    if n < config.folds {
        return invalid(format!(
            "{} folds over {n} rows: every fold needs a row",
            config.folds
        ));
    }
    let m = labels[0].len();
    let d = embeddings[0].len();
    if m == 0
        || labels.iter().any(|l| l.len() != m)
        || labels.iter().flatten().any(|v| !v.is_finite())
    {
        return invalid("every label needs the same number of finite values".into());
    }
    if d == 0 || embeddings.iter().any(|e| e.len() != d) {
        return invalid("every embedding needs the same, non-zero width".into());
    }
    let x: Vec<Vec<f64>> = embeddings
        .iter()
        .map(|e| e.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let y: Vec<Vec<f64>> = labels
        .iter()
        .map(|l| l.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let unit: Vec<Vec<f64>> = x
        .iter()
        .map(|e| {
            let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            e.iter().map(|v| v / norm).collect()
        })
        .collect();
    const PREDICTORS: [&str; 5] = [
        "best single candidate",
        "per-task constant",
        "k nearest neighbours",
        "ridge probe",
        "oracle",
    ];
    let mut picks = vec![vec![0usize; n]; PREDICTORS.len()];
    for fold in 0..config.folds {
        let train: Vec<usize> = (0..n).filter(|i| i % config.folds != fold).collect();
        let test: Vec<usize> = (0..n).filter(|i| i % config.folds == fold).collect();
        let single = pick(&mean_rows(&y, &train, m));
        let ridge = RidgeProbe::fit(&x, &y, &train, config.ridge)?;
        for &i in &test {
            picks[0][i] = single;
            let same_task: Vec<usize> = train
                .iter()
                .copied()
                .filter(|&j| tasks[j] == tasks[i])
                .collect();
            picks[1][i] = if same_task.is_empty() {
                single
            } else {
                pick(&mean_rows(&y, &same_task, m))
            };
            let mut near: Vec<(f64, usize)> = train
                .iter()
                .map(|&j| (dot(&unit[i], &unit[j]), j))
                .collect();
            near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let nearest: Vec<usize> = near
                .iter()
                .take(config.neighbours)
                .map(|&(_, j)| j)
                .collect();
            picks[2][i] = pick(&mean_rows(&y, &nearest, m));
            picks[3][i] = pick(&ridge.predict(&x[i]));
            picks[4][i] = pick(&y[i]);
        }
    }
    let mean_of = |p: &[usize]| p.iter().enumerate().map(|(i, &c)| y[i][c]).sum::<f64>() / n as f64;
    let (single_mean, oracle_mean) = (mean_of(&picks[0]), mean_of(&picks[4]));
    let predictors = PREDICTORS
        .iter()
        .zip(&picks)
        .map(|(name, p)| {
            let mean_label = mean_of(p);
            let gain = oracle_mean - single_mean;
            PredictorScore {
                predictor: name.to_string(),
                mean_label,
                top1_agreement: p.iter().zip(&picks[4]).filter(|(a, b)| a == b).count() as f64
                    / n as f64,
                regret: oracle_mean - mean_label,
                recovered: (gain > 0.0).then(|| (mean_label - single_mean) / gain),
            }
        })
        .collect();
    Ok(Learnability {
        rows: n,
        candidates: m,
        config: config.clone(),
        predictors,
        picks,
    })
}

/// The first candidate with the highest value (compared in f64).
fn pick(values: &[f64]) -> usize {
    let mut best = 0;
    for (c, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = c;
        }
    }
    best
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The mean of `rows` of `y` (`m` values each).
fn mean_rows(y: &[Vec<f64>], rows: &[usize], m: usize) -> Vec<f64> {
    let mut sum = vec![0.0; m];
    for &r in rows {
        for (s, v) in sum.iter_mut().zip(&y[r]) {
            *s += v;
        }
    }
    sum.iter().map(|s| s / rows.len().max(1) as f64).collect()
}

/// A ridge regression from embeddings to label vectors, fitted on centred data.
struct RidgeProbe {
    x_mean: Vec<f64>,
    y_mean: Vec<f64>,
    /// `[d][m]`.
    weights: Vec<Vec<f64>>,
}

impl RidgeProbe {
    /// Solves `(Xc^T Xc + ridge I) W = Xc^T Yc` over the `train` rows by Cholesky.
    fn fit(
        x: &[Vec<f64>],
        y: &[Vec<f64>],
        train: &[usize],
        ridge: f64,
    ) -> Result<Self, RouterError> {
        let (d, m) = (x[0].len(), y[0].len());
        let x_mean = mean_rows(x, train, d);
        let y_mean = mean_rows(y, train, m);
        let mut gram = vec![vec![0.0f64; d]; d];
        let mut cross = vec![vec![0.0f64; m]; d];
        for &r in train {
            let xc: Vec<f64> = x[r].iter().zip(&x_mean).map(|(v, mu)| v - mu).collect();
            let yc: Vec<f64> = y[r].iter().zip(&y_mean).map(|(v, mu)| v - mu).collect();
            for a in 0..d {
                for b in 0..=a {
                    gram[a][b] += xc[a] * xc[b];
                }
                for c in 0..m {
                    cross[a][c] += xc[a] * yc[c];
                }
            }
        }
        for (a, row) in gram.iter_mut().enumerate() {
            row[a] += ridge;
        }
        // Cholesky: gram = L L^T (lower triangle of `gram` holds the Gram matrix).
        let mut l = vec![vec![0.0f64; d]; d];
        for a in 0..d {
            for b in 0..=a {
                let s = gram[a][b] - (0..b).map(|k| l[a][k] * l[b][k]).sum::<f64>();
                if a == b {
                    if s <= 0.0 {
                        return Err(RouterError::Invalid(
                            "the ridge probe's system is not positive definite".into(),
                        ));
                    }
                    l[a][a] = s.sqrt();
                } else {
                    l[a][b] = s / l[b][b];
                }
            }
        }
        let mut weights = vec![vec![0.0f64; m]; d];
        for c in 0..m {
            // L z = cross[:, c], then L^T w = z.
            let mut z = vec![0.0f64; d];
            for a in 0..d {
                z[a] = (cross[a][c] - (0..a).map(|k| l[a][k] * z[k]).sum::<f64>()) / l[a][a];
            }
            for a in (0..d).rev() {
                let s = z[a] - ((a + 1)..d).map(|k| l[k][a] * weights[k][c]).sum::<f64>();
                weights[a][c] = s / l[a][a];
            }
        }
        Ok(Self {
            x_mean,
            y_mean,
            weights,
        })
    }

    /// The predicted label vector of one embedding.
    fn predict(&self, x: &[f64]) -> Vec<f64> {
        let mut out = self.y_mean.clone();
        for (a, (v, mu)) in x.iter().zip(&self.x_mean).enumerate() {
            let xc = v - mu;
            for (o, w) in out.iter_mut().zip(&self.weights[a]) {
                *o += xc * w;
            }
        }
        out
    }
}
