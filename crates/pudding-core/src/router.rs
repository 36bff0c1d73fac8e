//! [`Router`]: prompt -> candidate, and the visible [`RouteDecision`].

use crate::{CandidatePool, CoreError, OmissionSet};
use serde::{Deserialize, Serialize};

/// What a router decided for one prompt; returned to the caller so the choice is visible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// Index of the chosen candidate in the pool.
    pub candidate: usize,
    /// The blocks that will be skipped.
    pub set: OmissionSet,
    /// Predicted score per candidate (higher is better; for PuDDing routers the predicted
    /// mean log-likelihood of the answer), length = pool size.
    pub scores: Vec<f32>,
    /// Seconds spent routing (tokenise + encode + head).
    pub router_secs: f64,
}

/// Maps a prompt to per-candidate scores for a fixed [`CandidatePool`].
pub trait Router {
    /// The implementation's error type.
    type Error: std::error::Error + Send + Sync + 'static + From<CoreError>;

    /// The pool whose candidates the scores refer to.
    fn pool(&self) -> &CandidatePool;

    /// A short identity for results files: the pool and, for a trained router, the
    /// training that made it. A resumed routed evaluation must match it, so results of two
    /// routers for one pool are never merged. Default: the first 12 digits of the pool id.
    fn identity(&self) -> String {
        self.pool().id().chars().take(12).collect()
    }

    /// Whether the router reads the prompt followed by the item's first answer choice (the
    /// reference code's input) instead of the prompt alone. Such a router can route task
    /// items, whose choices are known, but not a bare prompt.
    fn reads_first_choice(&self) -> bool {
        false
    }

    /// One score per candidate for `prompt` (higher is better).
    fn scores(&self, prompt: &str) -> Result<Vec<f32>, Self::Error>;

    /// Routes `prompt`: the argmax candidate (ties: lowest index), with timing.
    fn route(&self, prompt: &str) -> Result<RouteDecision, Self::Error> {
        let start = std::time::Instant::now();
        let scores = self.scores(prompt)?;
        let router_secs = start.elapsed().as_secs_f64();
        let candidates = &self.pool().candidates;
        if scores.len() != candidates.len() {
            return Err(CoreError::RouterScores {
                got: scores.len(),
                expected: candidates.len(),
            }
            .into());
        }
        if let Some((candidate, &value)) = scores.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CoreError::RouterNonFinite { candidate, value }.into());
        }
        let candidate = argmax(&scores);
        Ok(RouteDecision {
            candidate,
            set: candidates[candidate].set.clone(),
            scores,
            router_secs,
        })
    }
}

/// Index of the largest value (first on ties; NaN never wins; 0 when every value is NaN
/// or the slice is empty).
pub fn argmax(values: &[f32]) -> usize {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|b| v > values[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{argmax, Router};
    use crate::{Candidate, CandidatePool, CoreError, ModelFingerprint, OmissionSet};

    /// A pool of two single-block candidates ("1", "2") for a 4-block model with `hash`.
    fn pool_of_two(hash: String) -> CandidatePool {
        let fingerprint = ModelFingerprint {
            architecture: "llama".into(),
            n_blocks: 4,
            hidden_size: 8,
            vocab_size: 16,
            hash,
        };
        let candidates = ["1", "2"]
            .iter()
            .map(|s| Candidate {
                set: OmissionSet::parse(s, 4).unwrap(),
                provenance: serde_json::Value::Null,
            })
            .collect();
        CandidatePool::new(fingerprint, candidates).unwrap()
    }

    /// A router whose scores have a fixed length, whatever the pool.
    struct FixedScores(CandidatePool, usize);

    impl Router for FixedScores {
        type Error = CoreError;
        fn pool(&self) -> &CandidatePool {
            &self.0
        }
        fn scores(&self, _prompt: &str) -> Result<Vec<f32>, CoreError> {
            Ok((0..self.1).map(|i| i as f32).collect())
        }
    }

    #[test]
    fn a_score_vector_of_the_wrong_length_is_an_error() {
        let pool = pool_of_two("é".repeat(20));
        assert_eq!(
            FixedScores(pool.clone(), 2).route("x").unwrap().candidate,
            1
        );
        let err = FixedScores(pool.clone(), 3).route("x").unwrap_err();
        assert!(matches!(
            err,
            CoreError::RouterScores {
                got: 3,
                expected: 2
            }
        ));
        // A non-ASCII hash prints instead of panicking on a character boundary.
        assert!(pool.fingerprint.short().ends_with(&"é".repeat(12)));
    }

    #[test]
    fn argmax_first_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.2]), 1);
        assert_eq!(argmax(&[0.1, f32::NAN, 0.7, f32::NAN]), 2);
        assert_eq!(argmax(&[f32::NAN, f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    /// A router whose second score is NaN.
    struct NanScores(CandidatePool);

    impl Router for NanScores {
        type Error = CoreError;
        fn pool(&self) -> &CandidatePool {
            &self.0
        }
        fn scores(&self, _prompt: &str) -> Result<Vec<f32>, CoreError> {
            Ok(vec![0.5, f32::NAN])
        }
    }

    #[test]
    fn a_non_finite_score_is_an_error_not_a_choice() {
        let err = NanScores(pool_of_two("ab".repeat(20)))
            .route("x")
            .unwrap_err();
        assert!(matches!(
            err,
            CoreError::RouterNonFinite { candidate: 1, value } if value.is_nan()
        ));
    }
}
