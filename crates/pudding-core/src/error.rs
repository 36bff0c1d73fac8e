//! Errors of the core vocabulary.

use std::path::PathBuf;

/// Everything that can go wrong when building or checking the core types.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A block index is not below the model's block count.
    #[error("block {block} is out of range: this model has {n_blocks} blocks (valid indices 0..={max})", max = n_blocks.saturating_sub(1))]
    BlockOutOfRange {
        /// The offending index.
        block: usize,
        /// Number of blocks of the model.
        n_blocks: usize,
    },
    /// The same block appears twice.
    #[error("block {0} is listed twice in the omission set; list each block once")]
    DuplicateBlock(usize),
    /// Skipping every block would leave no model.
    #[error(
        "an omission set must keep at least one of the {n_blocks} blocks (got {requested} to skip)"
    )]
    SkipsEverything {
        /// Number of blocks requested to skip.
        requested: usize,
        /// Number of blocks of the model.
        n_blocks: usize,
    },
    /// A model with zero blocks was given.
    #[error("a model must have at least one block")]
    NoBlocks,
    /// A block count above [`crate::omission::MAX_BLOCKS`] (no real model is that deep;
    /// such a count comes from a corrupt or hand-edited file).
    #[error("{n_blocks} blocks is more than any supported model has (at most {max})")]
    TooManyBlocks {
        /// The block count given.
        n_blocks: usize,
        /// The limit.
        max: usize,
    },
    /// An omission-set string could not be parsed.
    #[error("cannot parse omission set {input:?}: {reason}; expected comma-separated block indices such as \"3,7,19\" or ranges such as \"10-19\"")]
    Parse {
        /// The text given.
        input: String,
        /// What was wrong.
        reason: String,
    },
    /// An artifact was made for another model.
    #[error("{what} was made for model {expected}, but the loaded model is {actual}; rebuild it for this model or load the model it was made for")]
    FingerprintMismatch {
        /// What artifact (e.g. "candidate pool").
        what: String,
        /// The fingerprint the artifact carries (short form).
        expected: String,
        /// The fingerprint of the loaded model (short form).
        actual: String,
    },
    /// An omission set was validated for a model with another block count.
    #[error("omission set was made for a model with {set_blocks} blocks, but this model has {model_blocks}")]
    BlockCountMismatch {
        /// Block count the set was made for.
        set_blocks: usize,
        /// Block count of the model.
        model_blocks: usize,
    },
    /// A router returned a score vector whose length is not the pool's size.
    #[error("the router returned {got} scores for a pool of {expected} candidates")]
    RouterScores {
        /// Scores returned.
        got: usize,
        /// Candidates in the pool.
        expected: usize,
    },
    /// A router returned a NaN or infinite score (its weights hold NaN, or its numbers
    /// overflowed): no candidate can be chosen from it.
    #[error("the router's score for candidate {candidate} is {value}; check its weights")]
    RouterNonFinite {
        /// Index of the candidate.
        candidate: usize,
        /// The score.
        value: f32,
    },
    /// A router trained on the prompt followed by the first answer choice was given a
    /// bare prompt to route.
    #[error(
        "this router reads the prompt followed by its first answer choice (it was trained \
         that way), so it routes task items (`pudding eval`), not a bare prompt; train one on \
         `--input prompt` labels to route prompts"
    )]
    RouterNeedsAnswerChoice,
    /// A candidate pool is empty or otherwise malformed.
    #[error("invalid candidate pool: {0}")]
    InvalidPool(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("malformed JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}
