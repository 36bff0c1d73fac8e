//! The errors of reading, dequantising and writing GGUF files.

use crate::GgmlType;
use std::path::PathBuf;

/// Everything that can go wrong while reading, dequantising or writing a GGUF file.
///
/// Each message says what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, mapped, written or renamed.
    #[error("I/O error on GGUF file {}: {source}; check that the path exists and is accessible", path.display())]
    Io {
        /// The file (or temporary file) involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file does not start with the `GGUF` magic bytes.
    #[error(
        "not a GGUF file (starts with bytes {found:02x?}, expected \"GGUF\"); pass a .gguf model \
         file, or re-download it if it should be one"
    )]
    NotGguf {
        /// The first (up to four) bytes of the file.
        found: Vec<u8>,
    },

    /// The GGUF version is not 2 or 3.
    #[error(
        "unsupported GGUF version {0} (only versions 2 and 3 are supported); re-convert the model \
         with a current llama.cpp / gguf-py, or re-download it if the file is damaged"
    )]
    UnsupportedVersion(u32),

    /// The file ends before a structure that it declares.
    #[error(
        "GGUF file is truncated: cannot read {what} at byte offset {offset}; the file is \
         incomplete or damaged, re-download the file"
    )]
    Truncated {
        /// What was being read.
        what: String,
        /// Absolute byte offset in the file where the read started.
        offset: u64,
    },

    /// The file goes past one of the reader's named limits (a constant, named in `what`),
    /// which bound the memory a hostile file can make the reader allocate.
    #[error("GGUF file exceeds a limit: {what} is at most {limit}")]
    LimitExceeded {
        /// The quantity and the constant that bounds it.
        what: &'static str,
        /// The limit.
        limit: u64,
    },

    /// The file is structurally invalid.
    #[error("GGUF file is corrupt: {0}; re-download the file (or re-convert the model)")]
    Corrupt(String),

    /// A tensor's data range lies (partly) beyond the end of the file.
    #[error(
        "data of tensor `{tensor}` spans bytes {start}..{end} but the file has only {file_len} \
         bytes; the file is truncated or corrupt, re-download the file"
    )]
    TensorDataOutOfBounds {
        /// Tensor name.
        tensor: String,
        /// Absolute start offset of the tensor data.
        start: u64,
        /// Absolute end offset (exclusive) of the tensor data.
        end: u64,
        /// Length of the file in bytes.
        file_len: u64,
    },

    /// A required metadata key is absent.
    #[error(
        "metadata key `{0}` is missing from the GGUF file; the model was converted without it or \
         is for a different architecture: re-convert it with a current llama.cpp / gguf-py"
    )]
    MissingKey(String),

    /// A metadata key exists but holds a value of an incompatible type.
    #[error(
        "metadata key `{key}` holds {found}, expected {expected}; the file was written by an \
         incompatible converter, re-convert the model with a current llama.cpp / gguf-py"
    )]
    WrongKeyType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds (e.g. `"string"`, `"array<i32>"`, `"i32 -5"`).
        found: String,
    },

    /// A tensor name is not in the file.
    #[error(
        "tensor `{0}` is not in the GGUF file; the model is for a different architecture or was \
         converted incompletely: check the model file"
    )]
    MissingTensor(String),

    /// A tensor declares a ggml type id this module does not know.
    #[error(
        "tensor `{tensor}` has unknown ggml type id {type_id}; the file is corrupt or was written \
         by a newer ggml: re-download it, or convert the model to Q8_0/Q4_0/Q4_1/F16"
    )]
    UnknownTensorType {
        /// Tensor name.
        tensor: String,
        /// The raw ggml type id.
        type_id: u32,
    },

    /// The tensor type is known but cannot be dequantised (or written) by this module.
    #[error(
        "tensor `{tensor}` has type {dtype}, which is not supported (supported: F32, F16, BF16, \
         Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K); this tensor type is not supported, \
         convert the model to Q8_0/Q4_0/Q4_1/F16"
    )]
    UnsupportedTensorType {
        /// Tensor name.
        tensor: String,
        /// Its ggml type.
        dtype: GgmlType,
    },

    /// Invalid arguments to [`GgufWriter`](crate::GgufWriter) or to the raw (de)quantisation functions.
    #[error("invalid input: {0}; fix the caller")]
    InvalidInput(String),
}

impl GgufError {
    /// Prefixes the location description of `Truncated` / `Corrupt` errors with `ctx`.
    pub(crate) fn context(self, ctx: impl FnOnce() -> String) -> Self {
        match self {
            GgufError::Truncated { what, offset } => GgufError::Truncated {
                what: format!("{what} of {}", ctx()),
                offset,
            },
            GgufError::Corrupt(msg) => GgufError::Corrupt(format!("{}: {msg}", ctx())),
            other => other,
        }
    }
}

pub(crate) fn truncated(what: &str, offset: usize) -> GgufError {
    GgufError::Truncated {
        what: what.to_string(),
        offset: offset as u64,
    }
}
