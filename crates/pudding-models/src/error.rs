//! Errors of model loading, tokenisation and inference.

use crate::gguf::GgufError;
use pudding_core::CoreError;
use std::path::PathBuf;

/// Everything that can go wrong in `pudding-models`. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A GGUF file could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A GGUF matrix cannot be kept as stored (its bytes disagree with its type and shape,
    /// its type has no kernel, a row is not whole blocks).
    #[error(transparent)]
    QuantizedMatrix(#[from] crate::gguf::QuantizedMatrixError),
    /// A core-type error (omission set, fingerprint, ...).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file is truncated or malformed.
    #[error("invalid safetensors file {path}: {reason}; re-download or re-export the checkpoint")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader reported.
        reason: String,
    },
    /// The configuration is missing a field or holds an unsupported value.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// A weight the architecture needs is absent.
    #[error("tensor {name:?} is missing from the checkpoint; is this a {arch} model, and is the file complete?")]
    MissingTensor {
        /// The tensor's name (in the checkpoint's naming).
        name: String,
        /// Architecture being loaded.
        arch: String,
    },
    /// A block of the checkpoint holds a tensor the model does not read (a bias or norm
    /// of a variant this loader does not support): ignoring it would give wrong logits.
    #[error("tensor {name:?} is in the checkpoint but a {arch} model as configured does not use it; this is a variant pudding does not support (check config.json, e.g. attention_bias)")]
    UnreadTensor {
        /// The tensor's name (HF naming where known, else the checkpoint's).
        name: String,
        /// Architecture being loaded.
        arch: String,
    },
    /// The checkpoint holds tensors of a block past its declared block count (a block
    /// count edited down, or tensors of another model): loading would drop them silently.
    #[error("tensor {name:?} belongs to block {block}, but the checkpoint declares {n_blocks} blocks (0..{n_blocks}); its metadata and tensors disagree")]
    BlockPastCount {
        /// One such tensor (HF naming where known, else the checkpoint's).
        name: String,
        /// Its block.
        block: usize,
        /// The declared block count.
        n_blocks: usize,
    },
    /// A weight has the wrong shape for the configuration.
    #[error("tensor {name:?} has shape {actual:?} but the configuration implies {expected:?}; the config and weights do not belong together")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// Shape implied by the configuration (row-major).
        expected: Vec<usize>,
        /// Shape found in the file (row-major).
        actual: Vec<usize>,
    },
    /// A weight holds NaN or an infinity (a flipped scale bit, a bad conversion).
    #[error("tensor {name:?} holds a non-finite value ({value}) at element {index}; the checkpoint is corrupt, re-download or re-export it")]
    NonFiniteWeight {
        /// Tensor name.
        name: String,
        /// Flat index of the first such value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The model's output (logits or log-probabilities) holds NaN or an infinity: the
    /// activations overflowed, so any token it picks or score it prints would be noise.
    #[error("the model's {what} hold a non-finite value at index {index}: the activations overflowed (half precision, or extreme weights); nothing was printed from them")]
    NonFiniteOutput {
        /// Which output (`"logits"`, `"log-probabilities"`).
        what: &'static str,
        /// Flat index of the first such value.
        index: usize,
    },
    /// A tensor is stored in a type this loader cannot convert.
    #[error("tensor {name:?} is stored as {dtype}, which is not supported; convert the checkpoint to F32/F16/BF16 (safetensors) or F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K (GGUF)")]
    UnsupportedDtype {
        /// The tensor's name.
        name: String,
        /// Its storage type.
        dtype: String,
    },
    /// Tokenizer construction or use failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The prompt has no tokens.
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    /// The input does not fit the context window.
    #[error("the input has {len} tokens but the model's context holds {max}; shorten the prompt or lower max_new_tokens")]
    PromptTooLong {
        /// Tokens requested.
        len: usize,
        /// Context length of the model.
        max: usize,
    },
    /// A token id is not in the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfVocab {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// Invalid generation settings.
    #[error("invalid generation settings: {0}")]
    Generation(String),
    /// A KV cache was used with another omission set or batch than it was built for.
    #[error("KV cache mismatch: {0}")]
    Cache(String),
    /// Fetching an asset failed.
    #[error("asset fetch failed: {0}")]
    Fetch(String),
    /// Untrusted input went past one of pudding's named limits (a constant, given by
    /// name in `what`).
    #[error("limit exceeded: {what} is at most {limit}")]
    LimitExceeded {
        /// The quantity and the constant that bounds it.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A pruned export was refused (output equal to the input, per-block metadata that
    /// cannot be adjusted, a set for another model, ...).
    #[error("export refused: {0}")]
    Export(String),
    /// Tensor data could not be read back from the backend.
    #[error("backend error: {0}")]
    Backend(String),
    /// A block the omission set keeps is not loaded (memory-constrained mode).
    #[error("block {block} is not resident; switch the model to this omission set first (it loads the missing blocks)")]
    BlockNotResident {
        /// The block index.
        block: usize,
    },
    /// Inputs of a batch do not agree with each other.
    #[error("invalid batch: {0}")]
    Batch(String),
}
