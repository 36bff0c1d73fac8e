//! Errors of label generation, training and routing.

use pudding_core::CoreError;
use pudding_models::ModelError;

/// Everything that can go wrong in `pudding-router`.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Model or encoder failure.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Core-type failure (pool, fingerprint, file I/O).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Scoring failure while computing labels.
    #[error(transparent)]
    Score(#[from] pudding_eval::scorer::ScoreError),
    /// A labels or router file is malformed.
    #[error("malformed {what} {path}, line {line}: {reason}")]
    Malformed {
        /// What kind of file.
        what: &'static str,
        /// The file.
        path: String,
        /// 1-based line (0 when not line-based).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Artifacts that do not belong together (labels for another pool, router for
    /// another pool or model).
    #[error("{0}; rebuild it for this pool/model")]
    Mismatch(String),
    /// Invalid settings or inputs.
    #[error("invalid input: {0}")]
    Invalid(String),
}
