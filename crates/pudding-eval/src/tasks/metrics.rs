//! Multiple-choice metrics as lm-evaluation-harness 0.4 computes them
//! (`ConfigurableTask.process_results` for `output_type: multiple_choice`, and
//! `lm_eval.api.metrics.mean` / `mean_stderr`).
//!
//! - `acc`: `argmax(lls) == gold`, where `lls[i]` is the summed log-likelihood of
//!   continuation `i` given its context.
//! - `acc_norm`: `argmax(lls / completion_len) == gold` with
//!   `completion_len[i] = len(doc_to_choice(doc)[i])`, the length in Unicode code points of
//!   the *choice text*, i.e. without the `" "` target delimiter that the continuation carries
//!   (for WinoGrande `doc_to_choice` returns the partial contexts, so those are the lengths).
//! - `argmax` follows `numpy.argmax`: the first maximum wins ties, and a NaN counts as the
//!   maximum (the first NaN is returned).

use super::error::DataError;

/// Which accuracy a task reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Unnormalised accuracy (`acc`).
    Acc,
    /// Accuracy after dividing each log-likelihood by the choice length in characters
    /// (`acc_norm`).
    AccNorm,
}

impl Metric {
    /// lm-eval's metric name: `"acc"` or `"acc_norm"`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::AccNorm => "acc_norm",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `numpy.argmax` over a slice: index of the first maximum, the first NaN if any value is
/// NaN, `None` for an empty slice.
pub fn argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            return Some(i);
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// Length of a choice as lm-eval's `len(choice)` counts it: Unicode code points.
pub fn choice_len(choice: &str) -> usize {
    choice.chars().count()
}

/// The `acc` prediction: argmax of the summed log-likelihoods.
pub fn predict_acc(lls: &[f64]) -> Option<usize> {
    argmax(lls)
}

/// The `acc_norm` prediction: argmax of `lls[i] / choice_len(choices[i])`.
///
/// `choices` are lm-eval's `doc_to_choice` strings (see [`super::TaskItem::choices`]); an empty
/// choice gives a division by zero exactly as numpy does (±inf or NaN).
pub fn predict_acc_norm(
    lls: &[f64],
    choices: &[impl AsRef<str>],
) -> Result<Option<usize>, DataError> {
    if lls.len() != choices.len() {
        return Err(DataError::ChoiceCountMismatch {
            expected: choices.len(),
            got: lls.len(),
        });
    }
    let normed: Vec<f64> = lls
        .iter()
        .zip(choices)
        .map(|(ll, c)| ll / choice_len(c.as_ref()) as f64)
        .collect();
    Ok(argmax(&normed))
}

/// The outcome of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemScore {
    /// Index of the choice with the highest log-likelihood.
    pub pred: usize,
    /// Index of the choice with the highest length-normalised log-likelihood.
    pub pred_norm: usize,
    /// The gold choice.
    pub gold: usize,
}

impl ItemScore {
    /// Whether the item counts as correct under `metric` (1.0 / 0.0 in lm-eval).
    pub fn correct(&self, metric: Metric) -> bool {
        match metric {
            Metric::Acc => self.pred == self.gold,
            Metric::AccNorm => self.pred_norm == self.gold,
        }
    }

    /// `correct(metric)` as lm-eval's per-sample value, 1.0 or 0.0.
    pub fn value(&self, metric: Metric) -> f64 {
        if self.correct(metric) {
            1.0
        } else {
            0.0
        }
    }
}

/// A mean with lm-eval's standard error of the mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStderr {
    /// Number of samples.
    pub n: usize,
    /// Arithmetic mean (NaN for no samples).
    pub mean: f64,
    /// `sample_stddev / sqrt(n)` with the sample (n - 1) standard deviation, as
    /// `lm_eval.api.metrics.mean_stderr`; `None` for fewer than two samples (lm-eval would
    /// divide by zero there).
    pub stderr: Option<f64>,
}

/// Mean and standard error of the mean of per-sample values.
pub fn mean_stderr(values: &[f64]) -> MeanStderr {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let stderr = (n >= 2).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n - 1) as f64).sqrt() / (n as f64).sqrt()
    });
    MeanStderr { n, mean, stderr }
}

/// Aggregates item scores under one metric.
pub fn aggregate(scores: &[ItemScore], metric: Metric) -> MeanStderr {
    let values: Vec<f64> = scores.iter().map(|s| s.value(metric)).collect();
    mean_stderr(&values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_is_numpy_like() {
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[-3.0, -1.0, -2.0]), Some(1));
        assert_eq!(argmax(&[-1.0, -1.0]), Some(0), "ties go to the first");
        assert_eq!(argmax(&[-1.0, f64::NAN, 0.0, f64::NAN]), Some(1));
        assert_eq!(argmax(&[f64::NEG_INFINITY, f64::NEG_INFINITY]), Some(0));
    }

    #[test]
    fn acc_norm_divides_by_choice_length_without_delimiter() {
        // lls -10 vs -12; choice lengths 4 ("abcd") and 8 ("abcdefgh"):
        // normed -2.5 vs -1.5, so acc picks 0 and acc_norm picks 1.
        let lls = [-10.0, -12.0];
        assert_eq!(predict_acc(&lls), Some(0));
        assert_eq!(
            predict_acc_norm(&lls, &["abcd", "abcdefgh"]).unwrap(),
            Some(1)
        );
        // With the leading space counted (5 vs 9): -2.0 vs -1.333.. -> still 1; a case where
        // it matters: lls -3 / -7, lengths 1 and 3 -> -3 vs -2.333 picks 1; counting the space
        // (2 and 4) gives -1.5 vs -1.75 and would pick 0.
        assert_eq!(
            predict_acc_norm(&[-3.0, -7.0], &["a", "abc"]).unwrap(),
            Some(1)
        );
        // Code points, not bytes: "é" is one character.
        assert_eq!(choice_len("é"), 1);
        assert_eq!(
            predict_acc_norm(&[-2.0, -3.0], &["é", "xy"]).unwrap(),
            Some(1)
        );
        assert!(matches!(
            predict_acc_norm(&[-1.0], &["a", "b"]),
            Err(DataError::ChoiceCountMismatch {
                expected: 2,
                got: 1
            })
        ));
    }

    #[test]
    fn mean_stderr_matches_lm_eval() {
        // values 1,0,1,1: mean 0.75; sample var = (3*0.0625 + 0.5625)/3 = 0.25;
        // stderr = 0.5 / 2 = 0.25.
        let m = mean_stderr(&[1.0, 0.0, 1.0, 1.0]);
        assert_eq!(m.n, 4);
        assert!((m.mean - 0.75).abs() < 1e-15);
        assert!((m.stderr.unwrap() - 0.25).abs() < 1e-15);
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sum sq dev 32, var 32/7, stderr sqrt(32/7)/sqrt(8).
        let m = mean_stderr(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m.mean - 5.0).abs() < 1e-15);
        let want = (32.0f64 / 7.0).sqrt() / 8.0f64.sqrt();
        assert!((m.stderr.unwrap() - want).abs() < 1e-15);
        assert_eq!(mean_stderr(&[1.0]).stderr, None);
        assert!(mean_stderr(&[]).mean.is_nan());
    }

    #[test]
    fn aggregate_uses_the_chosen_metric() {
        let scores = [
            ItemScore {
                pred: 0,
                pred_norm: 1,
                gold: 1,
            },
            ItemScore {
                pred: 2,
                pred_norm: 2,
                gold: 2,
            },
        ];
        assert_eq!(aggregate(&scores, Metric::Acc).mean, 0.5);
        assert_eq!(aggregate(&scores, Metric::AccNorm).mean, 1.0);
        assert_eq!(Metric::AccNorm.to_string(), "acc_norm");
    }
}
