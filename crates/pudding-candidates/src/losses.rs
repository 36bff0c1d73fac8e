//! Calibration losses (lower is better), computed from per-token log-probabilities of each
//! choice's continuation.

use crate::CalibrationSample;
use pudding_core::{ContinuationScore, OmissionSet, SkippableLm};
use pudding_eval::scorer::{score_tokenized, ScoreError};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Which loss a greedy search minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Task likelihood: mean negative log-likelihood of the correct answer's tokens.
    Tl,
    /// Task likelihood difference, negated: `-((K-1) * ll_correct - sum_wrong ll_wrong)`.
    Tld,
    /// Mean negative log-likelihood over all tokens of plain text (log-perplexity).
    Perplexity,
}

impl LossKind {
    /// The name used on the command line and in pool provenance.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Tl => "tl",
            LossKind::Tld => "tld",
            LossKind::Perplexity => "ppl",
        }
    }
}

impl FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "tl" => Ok(LossKind::Tl),
            "tld" => Ok(LossKind::Tld),
            "ppl" | "perplexity" => Ok(LossKind::Perplexity),
            other => Err(format!("unknown loss {other:?}; use tl, tld or ppl")),
        }
    }
}

/// The loss of one sample from its choices' per-token log-probabilities.
///
/// # Panics
/// If `gold` does not index `choice_logprobs`; the callers in this crate check samples
/// first ([`total_loss`] returns a typed error for such a sample).
pub fn sample_loss(kind: LossKind, choice_logprobs: &[&[f32]], gold: usize) -> f64 {
    let ll = |lp: &[f32]| lp.iter().map(|&v| v as f64).sum::<f64>();
    match kind {
        LossKind::Tl | LossKind::Perplexity => {
            let lp = choice_logprobs[gold];
            -ll(lp) / lp.len().max(1) as f64
        }
        LossKind::Tld => {
            let k = choice_logprobs.len() as f64;
            let wrong: f64 = choice_logprobs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gold)
                .map(|(_, lp)| ll(lp))
                .sum();
            -((k - 1.0) * ll(choice_logprobs[gold]) - wrong)
        }
    }
}

/// Summed loss over samples under `skip`, scored with the shared scorer (each distinct
/// context computed once).
pub fn total_loss<L: SkippableLm>(
    lm: &L,
    samples: &[CalibrationSample],
    kind: LossKind,
    skip: &OmissionSet,
) -> Result<f64, ScoreError> {
    let mut total = 0.0;
    for (index, sample) in samples.iter().enumerate() {
        if let Some(reason) = sample.gold_error() {
            return Err(ScoreError::BadRequest { index, reason });
        }
        // tl and perplexity only need the correct choice.
        let needed: Vec<_> = match kind {
            LossKind::Tld => sample.choices.clone(),
            _ => vec![sample.choices[sample.gold].clone()],
        };
        let scores: Vec<ContinuationScore> = score_tokenized(lm, &needed, skip)?;
        let lps: Vec<&[f32]> = scores.iter().map(|s| s.logprobs.as_slice()).collect();
        let gold = if kind == LossKind::Tld {
            sample.gold
        } else {
            0
        };
        total += sample_loss(kind, &lps, gold);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_on_literal_values() {
        let a: &[f32] = &[-1.0, -3.0];
        let b: &[f32] = &[-2.0];
        let c: &[f32] = &[-0.5];
        assert_eq!(sample_loss(LossKind::Tl, &[a, b], 0), 2.0);
        // (K-1)*ll_correct - sum wrong = 2*(-4) - (-2 - 0.5) = -5.5, negated.
        assert_eq!(sample_loss(LossKind::Tld, &[a, b, c], 0), 5.5);
        assert_eq!("tld".parse::<LossKind>().unwrap(), LossKind::Tld);
        assert!("x".parse::<LossKind>().is_err());
    }
}
