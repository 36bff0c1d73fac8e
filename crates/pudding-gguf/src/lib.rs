//! # pudding-gguf
//!
//! GGUF (v2/v3) model files without a deep-learning framework: a bounds-checked reader over
//! a read-only memory map ([`reader`]), the ggml block formats ([`dequant`] to `f32`,
//! [`quantize`](mod@quantize) from it), the quantised matrix products that run on the stored blocks
//! ([`matmul`]: SIMD and multi-threaded, with the activations quantised per block of 32), and
//! a small writer used to build test models ([`writer`]).
//!
//! ```
//! use pudding_gguf::{GgufFile, GgufWriter, GgmlType};
//!
//! let mut w = GgufWriter::new();
//! w.add_string("general.architecture", "llama");
//! w.add_tensor("t", &[32, 2], &[0.5f32; 64], GgmlType::Q8_0).unwrap();
//! let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
//! assert!((file.dequantize("t").unwrap()[0] - 0.5).abs() < 1e-3);
//!
//! // The matrix `t` (2 rows of 32) as stored, times one input row.
//! let info = file.tensor("t").unwrap();
//! let bytes = file.tensor_bytes_shared("t").unwrap();
//! let m = pudding_gguf::QuantizedMatrix::new("t", info.dtype, 2, 32, bytes).unwrap();
//! let y = m.matmul(&[1.0f32; 32]).unwrap();
//! assert!((y[0] - 16.0).abs() < 0.1);
//! ```
//!
//! # File layout (little endian, as written by llama.cpp / gguf-py)
//!
//! ```text
//! "GGUF" | version: u32 (2 or 3) | tensor_count: u64 | kv_count: u64
//! kv_count x { key: string | value_type: u32 | value }
//! tensor_count x { name: string | n_dims: u32 | dims: n_dims x u64 | ggml_type: u32 | offset: u64 }
//! zero padding up to a multiple of `general.alignment` (default 32)
//! tensor data (each tensor at `data_start + offset`)
//! ```
//!
//! A `string` is a `u64` byte length followed by UTF-8 bytes; an array value is
//! `element_type: u32 | count: u64 | count x value` (arrays may nest).
//!
//! # Shapes and element order
//!
//! ggml lists dimensions fastest-varying first: a matrix with `dims == [ne0, ne1]` has `ne1`
//! rows of `ne0` contiguous columns, i.e. it is the row-major `[ne1, ne0]` array of
//! [`GgufTensorInfo::shape_row_major`]. [`GgufFile::dequantize`] returns values in storage
//! order, so element `i` of the flat output is element `i` of that row-major array.
//!
//! # Robustness
//!
//! Every read is bounds-checked and every size computation uses checked arithmetic: a
//! truncated or corrupt file yields a [`GgufError`] (never a panic), and absurd counts in a
//! header cannot trigger huge allocations.

pub mod dequant;
pub mod error;
pub mod matmul;
pub mod quantize;
pub mod reader;
pub mod types;
pub mod value;
pub mod writer;

#[cfg(test)]
mod tests;

pub use dequant::dequantize_into;
pub use error::GgufError;
pub use matmul::{matmul_group, QuantizedMatrix, QuantizedMatrixError};
pub use quantize::quantize;
pub use reader::{GgufFile, GgufTensorInfo, TensorBytes};
pub use types::GgmlType;
pub use value::{GgufValue, GgufValueType};
pub use writer::GgufWriter;

/// The four magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Alignment of the tensor data section (and of every tensor in it) when the file has no
/// `general.alignment` key.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Metadata key that overrides [`DEFAULT_ALIGNMENT`].
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Largest number of dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Deepest nesting of array values accepted (guards the recursive parser's stack).
pub(crate) const MAX_ARRAY_DEPTH: usize = 32;

/// The most metadata values (array elements included) a file may hold. Each is held as a
/// [`GgufValue`] (32 bytes), so this bounds the parsed metadata near 512 MiB, while the
/// largest real vocabularies need about a million (tokens, scores, types and merges of a
/// 262k-token vocabulary).
pub const MAX_METADATA_VALUES: u64 = 1 << 24;

/// Upper bound on any up-front `Vec` reservation driven by a count read from the file.
pub(crate) const MAX_PREALLOC: usize = 1 << 16;

/// Super-block size of the k-quants (`QK_K`).
pub(crate) const QK_K: usize = 256;
