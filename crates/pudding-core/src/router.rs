//! [`Router`]: prompt -> candidate, and the visible [`RouteDecision`].

use crate::{CandidatePool, OmissionSet};
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
    type Error: std::error::Error + Send + Sync + 'static;

    /// The pool whose candidates the scores refer to.
    fn pool(&self) -> &CandidatePool;

    /// One score per candidate for `prompt` (higher is better).
    fn scores(&self, prompt: &str) -> Result<Vec<f32>, Self::Error>;

    /// Routes `prompt`: the argmax candidate (ties: lowest index), with timing.
    fn route(&self, prompt: &str) -> Result<RouteDecision, Self::Error> {
        let start = std::time::Instant::now();
        let scores = self.scores(prompt)?;
        let router_secs = start.elapsed().as_secs_f64();
        let candidate = argmax(&scores);
        Ok(RouteDecision {
            candidate,
            set: self.pool().candidates[candidate].set.clone(),
            scores,
            router_secs,
        })
    }
}

/// Index of the largest value (first on ties; NaN never wins).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_first_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.2]), 1);
    }
}
