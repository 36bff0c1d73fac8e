//! GGUF (v2/v3) model files: a bounds-checked reader over a read-only memory map, ggml
//! dequantisation to `f32`, and a small writer used to build test models.
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use half::{bf16, f16};
use memmap2::Mmap;

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
const MAX_ARRAY_DEPTH: usize = 32;

/// Upper bound on any up-front `Vec` reservation driven by a count read from the file.
const MAX_PREALLOC: usize = 1 << 16;

/// Super-block size of the k-quants (`QK_K`).
const QK_K: usize = 256;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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

    /// Invalid arguments to [`GgufWriter`] or to the raw (de)quantisation functions.
    #[error("invalid input: {0}; fix the caller")]
    InvalidInput(String),
}

impl GgufError {
    /// Prefixes the location description of `Truncated` / `Corrupt` errors with `ctx`.
    fn context(self, ctx: impl FnOnce() -> String) -> Self {
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

fn truncated(what: &str, offset: usize) -> GgufError {
    GgufError::Truncated {
        what: what.to_string(),
        offset: offset as u64,
    }
}

// ---------------------------------------------------------------------------------------------
// ggml tensor types
// ---------------------------------------------------------------------------------------------

/// ggml tensor storage types, with their on-disk type ids (`enum ggml_type`).
///
/// Block-quantised types store `block_size()` consecutive elements (along `ne0`) in
/// `bytes_per_block()` bytes; plain types have a block size of 1.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE half float.
    F16 = 1,
    /// Blocks of 32: `f16 d`, 16 bytes of 4-bit `q`; `v = d * (q - 8)`.
    Q4_0 = 2,
    /// Blocks of 32: `f16 d`, `f16 m`, 16 bytes of 4-bit `q`; `v = d * q + m`.
    Q4_1 = 3,
    /// Blocks of 32: `f16 d`, 32 high bits, 16 bytes of low nibbles; `v = d * (q - 16)`.
    Q5_0 = 6,
    /// Blocks of 32: `f16 d`, `f16 m`, 32 high bits, 16 bytes of low nibbles; `v = d * q + m`.
    Q5_1 = 7,
    /// Blocks of 32: `f16 d`, 32 x `i8 q`; `v = d * q`.
    Q8_0 = 8,
    /// Blocks of 32: `f32 d`, `f32 s`, 32 x `i8` (activation format, not dequantised here).
    Q8_1 = 9,
    /// 2-bit k-quant (super-blocks of 256).
    Q2_K = 10,
    /// 3-bit k-quant (super-blocks of 256).
    Q3_K = 11,
    /// 4-bit k-quant (super-blocks of 256, 8 sub-blocks with 6-bit scales and mins).
    Q4_K = 12,
    /// 5-bit k-quant (super-blocks of 256, 8 sub-blocks with 6-bit scales and mins).
    Q5_K = 13,
    /// 6-bit k-quant (super-blocks of 256, 16 sub-blocks with 8-bit scales).
    Q6_K = 14,
    /// 8-bit k-quant (activation format).
    Q8_K = 15,
    /// i-quant.
    IQ2_XXS = 16,
    /// i-quant.
    IQ2_XS = 17,
    /// i-quant.
    IQ3_XXS = 18,
    /// i-quant.
    IQ1_S = 19,
    /// i-quant (blocks of 32).
    IQ4_NL = 20,
    /// i-quant.
    IQ3_S = 21,
    /// i-quant.
    IQ2_S = 22,
    /// i-quant.
    IQ4_XS = 23,
    /// 8-bit signed integer.
    I8 = 24,
    /// 16-bit signed integer.
    I16 = 25,
    /// 32-bit signed integer.
    I32 = 26,
    /// 64-bit signed integer.
    I64 = 27,
    /// 64-bit IEEE float.
    F64 = 28,
    /// i-quant.
    IQ1_M = 29,
    /// bfloat16 (upper half of an `f32`).
    BF16 = 30,
    /// Ternary quant.
    TQ1_0 = 34,
    /// Ternary quant.
    TQ2_0 = 35,
    /// Microscaling FP4 (blocks of 32).
    MXFP4 = 39,
    /// NVIDIA FP4 (blocks of 64).
    NVFP4 = 40,
    /// 1-bit quant (blocks of 128).
    Q1_0 = 41,
}

impl GgmlType {
    /// Every known type, in id order.
    pub const ALL: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    /// Maps an on-disk ggml type id to the type; `None` for unknown or removed ids.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            _ => return None,
        })
    }

    /// The on-disk ggml type id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Number of elements in one block (1 for plain types, 32 for Q4_0..Q8_1, 256 for k-quants).
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            NVFP4 => 64,
            Q1_0 => 128,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S
            | IQ3_S | IQ2_S | IQ4_XS | IQ1_M | TQ1_0 | TQ2_0 => QK_K,
        }
    }

    /// Number of bytes one block occupies on disk (`ggml_type_size`).
    pub fn bytes_per_block(self) -> usize {
        use GgmlType::*;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            F64 => 8,
            I8 => 1,
            I16 => 2,
            I32 => 4,
            I64 => 8,
            Q4_0 => 2 + 16,
            Q4_1 => 2 + 2 + 16,
            Q5_0 => 2 + 4 + 16,
            Q5_1 => 2 + 2 + 4 + 16,
            Q8_0 => 2 + 32,
            Q8_1 => 4 + 4 + 32,
            Q2_K => 2 + 2 + QK_K / 16 + QK_K / 4,
            Q3_K => 2 + QK_K / 4 + QK_K / 8 + 12,
            Q4_K => 2 + 2 + QK_K / 2 + 12,
            Q5_K => 2 + 2 + QK_K / 2 + QK_K / 8 + 12,
            Q6_K => 2 + QK_K / 2 + QK_K / 4 + QK_K / 16,
            Q8_K => 4 + QK_K + QK_K / 8,
            IQ2_XXS => 2 + QK_K / 4,
            IQ2_XS => 2 + QK_K / 4 + QK_K / 32,
            IQ3_XXS => 2 + QK_K / 4 + QK_K / 8,
            IQ1_S => 2 + QK_K / 8 + QK_K / 16,
            IQ4_NL => 2 + 16,
            IQ3_S => 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
            IQ2_S => 2 + QK_K / 4 + QK_K / 16,
            IQ4_XS => 2 + 2 + QK_K / 2 + QK_K / 64,
            IQ1_M => QK_K / 8 + QK_K / 16 + QK_K / 32,
            TQ1_0 => 2 + 4 * 13,
            TQ2_0 => 2 + 64,
            MXFP4 => 1 + 16,
            NVFP4 => 4 + 32,
            Q1_0 => 2 + 16,
        }
    }

    /// The ggml name of the type (`"Q4_K"`, `"F16"`, ...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
        }
    }

    /// Whether [`dequantize_into`] / [`GgufFile::dequantize`] support this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K
        )
    }

    /// Whether [`quantize`] / [`GgufWriter::add_tensor`] can produce this type.
    pub fn can_quantize(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1)
    }

    /// Bytes needed for `n_elements` elements, or `None` if `n_elements` is not a multiple of
    /// the block size or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.bytes_per_block() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------------------------

/// GGUF metadata value types, with their on-disk ids (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufValueType {
    /// `u8`.
    U8 = 0,
    /// `i8`.
    I8 = 1,
    /// `u16`.
    U16 = 2,
    /// `i16`.
    I16 = 3,
    /// `u32`.
    U32 = 4,
    /// `i32`.
    I32 = 5,
    /// `f32`.
    F32 = 6,
    /// One byte, 0 = false, anything else = true.
    Bool = 7,
    /// `u64` length + UTF-8 bytes.
    String = 8,
    /// `u32` element type + `u64` count + elements.
    Array = 9,
    /// `u64`.
    U64 = 10,
    /// `i64`.
    I64 = 11,
    /// `f64`.
    F64 = 12,
}

impl GgufValueType {
    /// Maps an on-disk value type id to the type; `None` if unknown.
    pub fn from_id(id: u32) -> Option<GgufValueType> {
        use GgufValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Lower-case name (`"u32"`, `"string"`, `"array"`, ...).
    pub fn name(self) -> &'static str {
        use GgufValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Smallest number of bytes one value of this type occupies on disk.
    fn min_encoded_size(self) -> usize {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

impl fmt::Display for GgufValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One GGUF metadata value.
///
/// Strings that are not valid UTF-8 are decoded lossily (invalid sequences become U+FFFD).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Array with its declared element type (kept so that empty arrays round-trip); every
    /// element has that type. Elements may themselves be arrays.
    Array(GgufValueType, Vec<GgufValue>),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl GgufValue {
    /// The value's type tag.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            GgufValue::U8(_) => GgufValueType::U8,
            GgufValue::I8(_) => GgufValueType::I8,
            GgufValue::U16(_) => GgufValueType::U16,
            GgufValue::I16(_) => GgufValueType::I16,
            GgufValue::U32(_) => GgufValueType::U32,
            GgufValue::I32(_) => GgufValueType::I32,
            GgufValue::F32(_) => GgufValueType::F32,
            GgufValue::Bool(_) => GgufValueType::Bool,
            GgufValue::String(_) => GgufValueType::String,
            GgufValue::Array(..) => GgufValueType::Array,
            GgufValue::U64(_) => GgufValueType::U64,
            GgufValue::I64(_) => GgufValueType::I64,
            GgufValue::F64(_) => GgufValueType::F64,
        }
    }

    /// Human-readable type description (`"u32"`, `"array<string>"`), used in error messages.
    pub fn type_name(&self) -> String {
        match self {
            GgufValue::Array(t, _) => format!("array<{t}>"),
            other => other.value_type().name().to_string(),
        }
    }

    /// Any integer value as `i128` (lossless), `None` for non-integers.
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any integer value that fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// Any integer value that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// Any integer value that fits in `u32`.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }

    /// Any integer value that fits in `i32`.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_i128().and_then(|v| i32::try_from(v).ok())
    }

    /// An `f32` value, or an `f64` value rounded to `f32`.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            GgufValue::F32(v) => Some(v),
            GgufValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// An `f32` or `f64` value as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A `bool` value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of an array value.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(_, v) => Some(v),
            _ => None,
        }
    }

    /// The declared element type of an array value.
    pub fn array_element_type(&self) -> Option<GgufValueType> {
        match self {
            GgufValue::Array(t, _) => Some(*t),
            _ => None,
        }
    }

    /// Short description of the value for error messages (type plus small scalar values).
    fn describe(&self) -> String {
        match self {
            GgufValue::Array(_, v) => format!("{} of {} elements", self.type_name(), v.len()),
            GgufValue::String(_) => "string".to_string(),
            other => {
                let shown = match other.as_i128() {
                    Some(i) => i.to_string(),
                    None => match other.as_f64() {
                        Some(f) => f.to_string(),
                        None => other.as_bool().map(|b| b.to_string()).unwrap_or_default(),
                    },
                };
                format!("{} {shown}", other.type_name())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor infos
// ---------------------------------------------------------------------------------------------

/// Description of one tensor stored in a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// Tensor name (e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order, fastest-varying first: `[ne0, ne1, ...]`. A matrix with
    /// `dims == [ne0, ne1]` has `ne1` rows of `ne0` contiguous elements.
    pub dims: Vec<u64>,
    /// Storage type.
    pub dtype: GgmlType,
    /// Byte offset of the data relative to the start of the data section
    /// ([`GgufFile::data_offset`]).
    pub offset: u64,
}

impl GgufTensorInfo {
    /// Shape in row-major (numpy / PyTorch) order: `dims` reversed, slowest-varying first.
    /// For `dims == [ne0, ne1]` this is `[ne1, ne0]` (rows, columns).
    pub fn shape_row_major(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// Number of elements (product of `dims`, 1 for a scalar; saturates on overflow, which
    /// cannot happen for tensors of a successfully opened file).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Number of bytes of the tensor data (`n_elements / block_size * bytes_per_block`;
    /// saturates on overflow).
    pub fn n_bytes(&self) -> u64 {
        (self.n_elements() / self.dtype.block_size() as u64)
            .saturating_mul(self.dtype.bytes_per_block() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// Bounds-checked little-endian reader over a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| truncated(what, self.pos))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| truncated(what, self.pos))?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let start = self.pos;
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| truncated(what, start))
    }

    fn u8(&mut self, what: &str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let start = self.pos;
        let len = self.u64(what)?;
        let len = usize::try_from(len).map_err(|_| truncated(what, start))?;
        let bytes = self.take(len, what).map_err(|_| truncated(what, start))?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: GgufValueType, depth: usize) -> Result<GgufValue, GgufError> {
        use GgufValueType as T;
        Ok(match ty {
            T::U8 => GgufValue::U8(self.u8("u8 value")?),
            T::I8 => GgufValue::I8(i8::from_le_bytes(self.array("i8 value")?)),
            T::U16 => GgufValue::U16(u16::from_le_bytes(self.array("u16 value")?)),
            T::I16 => GgufValue::I16(i16::from_le_bytes(self.array("i16 value")?)),
            T::U32 => GgufValue::U32(self.u32("u32 value")?),
            T::I32 => GgufValue::I32(i32::from_le_bytes(self.array("i32 value")?)),
            T::F32 => GgufValue::F32(f32::from_le_bytes(self.array("f32 value")?)),
            T::Bool => GgufValue::Bool(self.u8("bool value")? != 0),
            T::String => GgufValue::String(self.string("string value")?),
            T::U64 => GgufValue::U64(self.u64("u64 value")?),
            T::I64 => GgufValue::I64(i64::from_le_bytes(self.array("i64 value")?)),
            T::F64 => GgufValue::F64(f64::from_le_bytes(self.array("f64 value")?)),
            T::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Corrupt(format!(
                        "arrays nested more than {MAX_ARRAY_DEPTH} levels deep"
                    )));
                }
                let type_pos = self.pos;
                let elem_id = self.u32("array element type")?;
                let elem = GgufValueType::from_id(elem_id).ok_or_else(|| {
                    GgufError::Corrupt(format!(
                        "unknown array element type id {elem_id} at byte offset {type_pos}"
                    ))
                })?;
                let count_pos = self.pos;
                let count = self.u64("array length")?;
                // Every element needs at least `min_encoded_size` bytes: reject impossible
                // counts before looping or allocating.
                let fits = count
                    .checked_mul(elem.min_encoded_size() as u64)
                    .is_some_and(|need| need <= self.remaining() as u64);
                if !fits {
                    return Err(GgufError::Truncated {
                        what: format!("{count} array elements of type {elem}"),
                        offset: count_pos as u64,
                    });
                }
                let count = usize::try_from(count).map_err(|_| truncated("array", count_pos))?;
                let mut values = Vec::with_capacity(count.min(MAX_PREALLOC));
                for _ in 0..count {
                    values.push(self.value(elem, depth + 1)?);
                }
                GgufValue::Array(elem, values)
            }
        })
    }
}

/// Backing storage of an opened file.
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: header, metadata and tensor directory, with the tensor data kept in a
/// read-only memory map (or an owned buffer for [`GgufFile::from_bytes`]).
///
/// Tensor data is only touched by [`GgufFile::tensor_bytes`] / [`GgufFile::dequantize`].
pub struct GgufFile {
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("len", &self.storage.bytes().len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file through a read-only memory map.
    ///
    /// The header, metadata and tensor directory are parsed and validated eagerly (including
    /// that every tensor's data lies inside the file); tensor data is read lazily.
    ///
    /// The file must not be modified or truncated by another process while it is open
    /// (standard memory-map caveat).
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io_err = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            // Mapping an empty file is not portable; parse the empty buffer instead.
            return GgufFile::from_bytes(Vec::new());
        }
        // SAFETY: the map is read-only and private to this struct; as documented above, the
        // file must not be modified while mapped (the usual contract for model files).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        GgufFile::parse(Storage::Mapped(map))
    }

    /// Parses a GGUF file held in memory (used by tests and for small files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        GgufFile::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<GgufFile, GgufError> {
        let buf = storage.bytes();
        let file_len = buf.len() as u64;
        let mut c = Cursor { buf, pos: 0 };

        let head = buf.get(..4).unwrap_or(buf);
        if head != GGUF_MAGIC {
            if head.len() < 4 && GGUF_MAGIC.starts_with(head) {
                return Err(truncated("GGUF magic", 0));
            }
            return Err(GgufError::NotGguf {
                found: head.to_vec(),
            });
        }
        c.pos = 4;
        let version = c.u32("GGUF version")?;
        if version != 2 && version != 3 {
            if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                return Err(GgufError::Corrupt(
                    "this is a big-endian GGUF file, which is not supported; convert it to little \
                     endian with gguf-py"
                        .to_string(),
                ));
            }
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = c.u64("tensor count")?;
        let kv_count = c.u64("metadata key/value count")?;

        // Metadata.
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let entry_pos = c.pos;
            let key = c
                .string("metadata key")
                .map_err(|e| e.context(|| format!("metadata entry #{i}")))?;
            let at_key = |e: GgufError| e.context(|| format!("metadata key `{key}`"));
            let type_pos = c.pos;
            let type_id = c.u32("value type").map_err(at_key)?;
            let ty = GgufValueType::from_id(type_id).ok_or_else(|| {
                GgufError::Corrupt(format!(
                    "metadata key `{key}` has unknown value type id {type_id} at byte offset \
                     {type_pos}"
                ))
            })?;
            let value = c.value(ty, 0).map_err(at_key)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Corrupt(format!(
                    "duplicate metadata key `{key}` at byte offset {entry_pos}"
                )));
            }
        }

        // Tensor directory.
        let min_info_size = 8 + 4 + 4 + 8;
        let mut tensors: Vec<GgufTensorInfo> =
            Vec::with_capacity(usize::try_from(tensor_count).map_or(MAX_PREALLOC, |n| {
                n.min(c.remaining() / min_info_size).min(MAX_PREALLOC)
            }));
        let mut index = HashMap::with_capacity(tensors.capacity());
        for i in 0..tensor_count {
            let name = c
                .string("tensor name")
                .map_err(|e| e.context(|| format!("tensor info #{i}")))?;
            let info = read_tensor_info(&mut c, name)?;
            if index.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::Corrupt(format!(
                    "duplicate tensor name `{}`",
                    info.name
                )));
            }
            tensors.push(info);
        }

        // Alignment and data section.
        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Corrupt(format!(
                        "`{ALIGNMENT_KEY}` is {}, expected a power-of-two integer",
                        v.describe()
                    )))
                }
            },
        };
        let data_offset = align_up(c.pos as u64, alignment).ok_or_else(|| {
            GgufError::Corrupt(format!("alignment {alignment} overflows the data offset"))
        })?;

        for t in &tensors {
            tensor_range(t, data_offset, file_len)?;
        }

        Ok(GgufFile {
            storage,
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            index,
        })
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset of the tensor data section; tensor offsets are relative to it.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Total length of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// All metadata key/values, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// The metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// `found` (the result of a `get_*` call) with an absent key as `None`: for optional
    /// metadata, where a missing key takes a default but a key of the wrong type is still
    /// an error.
    pub fn optional<T>(found: Result<T, GgufError>) -> Result<Option<T>, GgufError> {
        match found {
            Ok(v) => Ok(Some(v)),
            Err(GgufError::MissingKey(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
        GgufError::WrongKeyType {
            key: key.to_string(),
            expected,
            found: found.describe(),
        }
    }

    /// `key` as `u32`; any integer type is accepted if the value fits.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let v = self.require(key)?;
        v.as_u32()
            .ok_or_else(|| Self::wrong(key, "an integer in the u32 range", v))
    }

    /// `key` as `u64`; any integer type is accepted if the value fits.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| Self::wrong(key, "an integer in the u64 range", v))
    }

    /// `key` as `f32`; `f32` and `f64` values are accepted.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| Self::wrong(key, "f32 or f64", v))
    }

    /// `key` as `bool`.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "bool", v))
    }

    /// `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }

    /// `key` as an array of strings (in file order).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        let err = || Self::wrong(key, "array<string>", v);
        match v {
            GgufValue::Array(GgufValueType::String, items) => {
                items.iter().map(|x| x.as_str().ok_or_else(err)).collect()
            }
            _ => Err(err()),
        }
    }

    /// `key` as an array of `f32` (in file order); `f32` and `f64` arrays are accepted.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let v = self.require(key)?;
        let err = || Self::wrong(key, "array<f32> or array<f64>", v);
        match v {
            GgufValue::Array(GgufValueType::F32 | GgufValueType::F64, items) => {
                items.iter().map(|x| x.as_f32().ok_or_else(err)).collect()
            }
            _ => Err(err()),
        }
    }

    /// `key` as an array of `i32` (in file order); arrays of any integer type are accepted if
    /// every element fits in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let v = self.require(key)?;
        let err = || Self::wrong(key, "array of integers in the i32 range", v);
        match v {
            GgufValue::Array(_, items) => {
                items.iter().map(|x| x.as_i32().ok_or_else(err)).collect()
            }
            _ => Err(err()),
        }
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<&GgufTensorInfo, GgufError> {
        self.index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    /// The raw stored bytes of tensor `name` (`n_bytes()` bytes, ggml block layout).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.tensor(name)?;
        let buf = self.storage.bytes();
        let (start, end) = tensor_range(info, self.data_offset, buf.len() as u64)?;
        let oob = || GgufError::TensorDataOutOfBounds {
            tensor: info.name.clone(),
            start,
            end,
            file_len: buf.len() as u64,
        };
        let start = usize::try_from(start).map_err(|_| oob())?;
        let end = usize::try_from(end).map_err(|_| oob())?;
        buf.get(start..end).ok_or_else(oob)
    }

    /// Dequantises tensor `name` to `f32`, in storage order: element `i` of the result is
    /// element `i` of the row-major array of shape [`GgufTensorInfo::shape_row_major`]
    /// (for `dims == [ne0, ne1]`: row `i / ne0`, column `i % ne0`).
    ///
    /// Supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K
    /// (bit-exact with ggml's reference `dequantize_row_*`); others give
    /// [`GgufError::UnsupportedTensorType`].
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensor(name)?;
        if !info.dtype.can_dequantize() {
            return Err(GgufError::UnsupportedTensorType {
                tensor: info.name.clone(),
                dtype: info.dtype,
            });
        }
        let bytes = self.tensor_bytes(name)?;
        let n = usize::try_from(info.n_elements()).map_err(|_| {
            GgufError::Corrupt(format!("tensor `{name}` is too large for this platform"))
        })?;
        let mut out = vec![0.0f32; n];
        dequantize_impl(&info.name, info.dtype, bytes, &mut out)?;
        Ok(out)
    }

    /// Like [`GgufFile::dequantize`] but writes into `out`, whose length must equal the
    /// tensor's element count.
    pub fn dequantize_into(&self, name: &str, out: &mut [f32]) -> Result<(), GgufError> {
        let info = self.tensor(name)?;
        let bytes = self.tensor_bytes(name)?;
        dequantize_impl(&info.name, info.dtype, bytes, out)
    }
}

fn read_tensor_info(c: &mut Cursor<'_>, name: String) -> Result<GgufTensorInfo, GgufError> {
    let at = |e: GgufError| e.context(|| format!("tensor info `{name}`"));
    let n_dims = c.u32("dimension count").map_err(at)?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::Corrupt(format!(
            "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS} are allowed)"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64("dimension").map_err(at)?);
    }
    let type_id = c.u32("ggml type").map_err(at)?;
    let offset = c.u64("data offset").map_err(at)?;
    let dtype = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.clone(),
        type_id,
    })?;
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| {
            GgufError::Corrupt(format!(
                "tensor `{name}` has dimensions {dims:?} whose element count overflows"
            ))
        })?;
    let ne0 = dims.first().copied().unwrap_or(1);
    let bs = dtype.block_size() as u64;
    if !ne0.is_multiple_of(bs) {
        return Err(GgufError::Corrupt(format!(
            "tensor `{name}` has row length {ne0}, which is not a multiple of the {dtype} block \
             size {bs}"
        )));
    }
    dtype.bytes_for(n_elements).ok_or_else(|| {
        GgufError::Corrupt(format!("tensor `{name}` has a byte size that overflows"))
    })?;
    Ok(GgufTensorInfo {
        name,
        dims,
        dtype,
        offset,
    })
}

/// Absolute `(start, end)` byte range of a tensor's data, checked against the file length.
fn tensor_range(
    t: &GgufTensorInfo,
    data_offset: u64,
    file_len: u64,
) -> Result<(u64, u64), GgufError> {
    let n_bytes = t
        .dtype
        .bytes_for(t.n_elements())
        .ok_or_else(|| GgufError::Corrupt(format!("tensor `{}` has an invalid size", t.name)))?;
    let start = data_offset.checked_add(t.offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        (Some(start), Some(end)) if end <= file_len => Ok((start, end)),
        (start, end) => Err(GgufError::TensorDataOutOfBounds {
            tensor: t.name.clone(),
            start: start.unwrap_or(u64::MAX),
            end: end.unwrap_or(u64::MAX),
            file_len,
        }),
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    x.checked_add(mask).map(|v| v & !mask)
}

// ---------------------------------------------------------------------------------------------
// Dequantisation
// ---------------------------------------------------------------------------------------------

/// Dequantises raw ggml data of type `dtype` into `out` (storage order).
///
/// `out.len()` must be a multiple of the block size and `data.len()` must be exactly
/// `out.len() / block_size * bytes_per_block`; otherwise [`GgufError::InvalidInput`].
/// Unsupported types give [`GgufError::UnsupportedTensorType`].
pub fn dequantize_into(dtype: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    dequantize_impl("<raw data>", dtype, data, out)
}

fn dequantize_impl(
    name: &str,
    dtype: GgmlType,
    data: &[u8],
    out: &mut [f32],
) -> Result<(), GgufError> {
    if !dtype.can_dequantize() {
        return Err(GgufError::UnsupportedTensorType {
            tensor: name.to_string(),
            dtype,
        });
    }
    let expected = dtype.bytes_for(out.len() as u64);
    if expected != Some(data.len() as u64) {
        return Err(GgufError::InvalidInput(format!(
            "tensor `{name}`: {} {dtype} elements need {} bytes, got {}",
            out.len(),
            expected.map_or_else(
                || "a whole number of blocks and".to_string(),
                |n| n.to_string()
            ),
            data.len()
        )));
    }
    match dtype {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(data.as_chunks::<4>().0) {
                *o = f32::from_le_bytes(*b);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(data.as_chunks::<2>().0) {
                *o = f16::from_le_bytes(*b).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(data.as_chunks::<2>().0) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
            }
        }
        GgmlType::Q8_0 => blocks::<34, 32>(data, out, dequant_q8_0),
        GgmlType::Q4_0 => blocks::<18, 32>(data, out, dequant_q4_0),
        GgmlType::Q4_1 => blocks::<20, 32>(data, out, dequant_q4_1),
        GgmlType::Q5_0 => blocks::<22, 32>(data, out, dequant_q5_0),
        GgmlType::Q5_1 => blocks::<24, 32>(data, out, dequant_q5_1),
        GgmlType::Q4_K => blocks::<144, 256>(data, out, dequant_q4_k),
        GgmlType::Q5_K => blocks::<176, 256>(data, out, dequant_q5_k),
        GgmlType::Q6_K => blocks::<210, 256>(data, out, dequant_q6_k),
        other => {
            return Err(GgufError::UnsupportedTensorType {
                tensor: name.to_string(),
                dtype: other,
            })
        }
    }
    Ok(())
}

/// Applies a per-block kernel over matching input blocks (`B` bytes) and output blocks
/// (`E` elements). Lengths were validated by the caller.
#[inline]
fn blocks<const B: usize, const E: usize>(
    data: &[u8],
    out: &mut [f32],
    kernel: fn(&[u8; B], &mut [f32; E]),
) {
    for (b, o) in data
        .as_chunks::<B>()
        .0
        .iter()
        .zip(out.as_chunks_mut::<E>().0)
    {
        kernel(b, o);
    }
}

#[inline(always)]
fn f16_at(lo: u8, hi: u8) -> f32 {
    f16::from_le_bytes([lo, hi]).to_f32()
}

#[inline(always)]
fn dequant_q8_0(b: &[u8; 34], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    for (o, &q) in o.iter_mut().zip(&b[2..]) {
        *o = f32::from(q as i8) * d;
    }
}

#[inline(always)]
fn dequant_q4_0(b: &[u8; 18], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    let (lo, hi) = o.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[2..]) {
        *l = (i32::from(q & 0x0F) - 8) as f32 * d;
        *h = (i32::from(q >> 4) - 8) as f32 * d;
    }
}

#[inline(always)]
fn dequant_q4_1(b: &[u8; 20], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    let m = f16_at(b[2], b[3]);
    let (lo, hi) = o.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[4..]) {
        *l = f32::from(q & 0x0F) * d + m;
        *h = f32::from(q >> 4) * d + m;
    }
}

#[inline(always)]
fn dequant_q5_0(b: &[u8; 22], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let (lo, hi) = o.split_at_mut(16);
    for (j, ((l, h), &q)) in lo.iter_mut().zip(hi).zip(&b[6..]).enumerate() {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        *l = (i32::from((q & 0x0F) | xh0) - 16) as f32 * d;
        *h = (i32::from((q >> 4) | xh1) - 16) as f32 * d;
    }
}

#[inline(always)]
fn dequant_q5_1(b: &[u8; 24], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    let m = f16_at(b[2], b[3]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (lo, hi) = o.split_at_mut(16);
    for (j, ((l, h), &q)) in lo.iter_mut().zip(hi).zip(&b[8..]).enumerate() {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        *l = f32::from((q & 0x0F) | xh0) * d + m;
        *h = f32::from((q >> 4) | xh1) * d + m;
    }
}

/// ggml's `get_scale_min_k4`: 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K
/// super-block.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn k_scales(b: &[u8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (d, v) in s.iter_mut().zip(b) {
        *d = *v;
    }
    s
}

/// Q4_K super-block: `f16 d | f16 dmin | scales[12] | qs[128]`.
#[inline(always)]
fn dequant_q4_k(b: &[u8; 144], o: &mut [f32; 256]) {
    let d = f16_at(b[0], b[1]);
    let min = f16_at(b[2], b[3]);
    let scales = k_scales(&b[4..16]);
    let qs = &b[16..];
    for (jj, (y, q)) in o.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
        let (sc, m) = scale_min_k4(2 * jj, &scales);
        let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
        let (sc, m) = scale_min_k4(2 * jj + 1, &scales);
        let (d2, m2) = (d * f32::from(sc), min * f32::from(m));
        let (ylo, yhi) = y.split_at_mut(32);
        for ((l, h), &q) in ylo.iter_mut().zip(yhi).zip(q) {
            *l = d1 * f32::from(q & 0x0F) - m1;
            *h = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Q5_K super-block: `f16 d | f16 dmin | scales[12] | qh[32] | qs[128]`.
#[inline(always)]
fn dequant_q5_k(b: &[u8; 176], o: &mut [f32; 256]) {
    let d = f16_at(b[0], b[1]);
    let min = f16_at(b[2], b[3]);
    let scales = k_scales(&b[4..16]);
    let qh = &b[16..48];
    let qs = &b[48..];
    for (jj, (y, ql)) in o.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
        let (sc, m) = scale_min_k4(2 * jj, &scales);
        let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
        let (sc, m) = scale_min_k4(2 * jj + 1, &scales);
        let (d2, m2) = (d * f32::from(sc), min * f32::from(m));
        let u1 = 1u8 << (2 * jj);
        let u2 = 2u8 << (2 * jj);
        let (ylo, yhi) = y.split_at_mut(32);
        for (((l, h), &q), &hb) in ylo.iter_mut().zip(yhi).zip(ql).zip(qh) {
            let b1 = if hb & u1 != 0 { 16 } else { 0 };
            let b2 = if hb & u2 != 0 { 16 } else { 0 };
            *l = d1 * f32::from((q & 0x0F) + b1) - m1;
            *h = d2 * f32::from((q >> 4) + b2) - m2;
        }
    }
}

/// Q6_K super-block: `ql[128] | qh[64] | scales[16] (i8) | f16 d`.
#[inline(always)]
fn dequant_q6_k(b: &[u8; 210], o: &mut [f32; 256]) {
    let d = f16_at(b[208], b[209]);
    let ql_all = &b[..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    for (((y, ql), qh), sc) in o
        .chunks_exact_mut(128)
        .zip(ql_all.chunks_exact(64))
        .zip(qh_all.chunks_exact(32))
        .zip(sc_all.chunks_exact(8))
    {
        // (d * sc) is computed first, exactly as ggml's `d * sc[is] * q`.
        let mut ds = [0.0f32; 8];
        for (x, &s) in ds.iter_mut().zip(sc) {
            *x = d * f32::from(s as i8);
        }
        let (y01, y23) = y.split_at_mut(64);
        let (y0, y1) = y01.split_at_mut(32);
        let (y2, y3) = y23.split_at_mut(32);
        let (ql0, ql1) = ql.split_at(32);
        for (l, ((((((a, b), c), e), &q0), &q1), &h)) in y0
            .iter_mut()
            .zip(y1.iter_mut())
            .zip(y2.iter_mut())
            .zip(y3.iter_mut())
            .zip(ql0)
            .zip(ql1)
            .zip(qh)
            .enumerate()
        {
            let is = l / 16;
            let x1 = i32::from((q0 & 0x0F) | ((h & 3) << 4)) - 32;
            let x2 = i32::from((q1 & 0x0F) | (((h >> 2) & 3) << 4)) - 32;
            let x3 = i32::from((q0 >> 4) | (((h >> 4) & 3) << 4)) - 32;
            let x4 = i32::from((q1 >> 4) | (((h >> 6) & 3) << 4)) - 32;
            *a = ds[is] * x1 as f32;
            *b = ds[is + 2] * x2 as f32;
            *c = ds[is + 4] * x3 as f32;
            *e = ds[is + 6] * x4 as f32;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantisation (reference quantize_row_*)
// ---------------------------------------------------------------------------------------------

/// Encodes `data` (storage order) as ggml type `dtype`, following ggml's reference
/// `quantize_row_*_ref` (round-to-nearest-even for F16/BF16).
///
/// Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1. `data.len()` must be a multiple of the block
/// size (32 for the quantised types).
pub fn quantize(dtype: GgmlType, data: &[f32]) -> Result<Vec<u8>, GgufError> {
    if !dtype.can_quantize() {
        return Err(GgufError::UnsupportedTensorType {
            tensor: "<raw data>".to_string(),
            dtype,
        });
    }
    let n_bytes = dtype
        .bytes_for(data.len() as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            GgufError::InvalidInput(format!(
                "{} values are not a whole number of {dtype} blocks of {}",
                data.len(),
                dtype.block_size()
            ))
        })?;
    let mut out = Vec::with_capacity(n_bytes);
    match dtype {
        GgmlType::F32 => data.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => data
            .iter()
            .for_each(|v| out.extend(f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => data
            .iter()
            .for_each(|v| out.extend(bf16::from_f32(*v).to_le_bytes())),
        GgmlType::Q8_0 => quant_blocks(data, &mut out, quant_q8_0),
        GgmlType::Q4_0 => quant_blocks(data, &mut out, quant_q4_0),
        GgmlType::Q4_1 => quant_blocks(data, &mut out, quant_q4_1),
        other => {
            return Err(GgufError::UnsupportedTensorType {
                tensor: "<raw data>".to_string(),
                dtype: other,
            })
        }
    }
    Ok(out)
}

fn quant_blocks<const B: usize>(data: &[f32], out: &mut Vec<u8>, f: fn(&[f32; 32]) -> [u8; B]) {
    for x in data.as_chunks::<32>().0 {
        out.extend_from_slice(&f(x));
    }
}

fn quant_q8_0(x: &[f32; 32]) -> [u8; 34] {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = [0u8; 34];
    b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (q, v) in b[2..].iter_mut().zip(x) {
        *q = ((v * id).round() as i8) as u8;
    }
    b
}

fn quant_q4_0(x: &[f32; 32]) -> [u8; 18] {
    // The value of largest magnitude, with its sign.
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = [0u8; 18];
    b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    let (lo, hi) = x.split_at(16);
    for ((q, &x0), &x1) in b[2..].iter_mut().zip(lo).zip(hi) {
        let q0 = ((x0 * id + 8.5) as i8).clamp(0, 15) as u8;
        let q1 = ((x1 * id + 8.5) as i8).clamp(0, 15) as u8;
        *q = q0 | (q1 << 4);
    }
    b
}

fn quant_q4_1(x: &[f32; 32]) -> [u8; 20] {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = [0u8; 20];
    b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    b[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
    let (lo, hi) = x.split_at(16);
    for ((q, &x0), &x1) in b[4..].iter_mut().zip(lo).zip(hi) {
        let q0 = (((x0 - min) * id + 0.5) as i8).clamp(0, 15) as u8;
        let q1 = (((x1 - min) * id + 0.5) as i8).clamp(0, 15) as u8;
        *q = q0 | (q1 << 4);
    }
    b
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct WriterTensor {
    name: String,
    dims: Vec<u64>,
    dtype: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF v3 file in memory (metadata + tensors) and writes it atomically.
///
/// Intended for tests and small models: tensor data is held in memory until written.
/// Metadata keys keep insertion order; adding an existing key replaces its value.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<WriterTensor>,
}

impl GgufWriter {
    /// An empty writer (no metadata, no tensors, alignment 32).
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds (or replaces) metadata `key` with `value`. Array values must have elements of
    /// their declared element type (checked when writing).
    pub fn add(&mut self, key: &str, value: GgufValue) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Adds a `u8` value.
    pub fn add_u8(&mut self, key: &str, v: u8) -> &mut Self {
        self.add(key, GgufValue::U8(v))
    }

    /// Adds an `i8` value.
    pub fn add_i8(&mut self, key: &str, v: i8) -> &mut Self {
        self.add(key, GgufValue::I8(v))
    }

    /// Adds a `u16` value.
    pub fn add_u16(&mut self, key: &str, v: u16) -> &mut Self {
        self.add(key, GgufValue::U16(v))
    }

    /// Adds an `i16` value.
    pub fn add_i16(&mut self, key: &str, v: i16) -> &mut Self {
        self.add(key, GgufValue::I16(v))
    }

    /// Adds a `u32` value.
    pub fn add_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.add(key, GgufValue::U32(v))
    }

    /// Adds an `i32` value.
    pub fn add_i32(&mut self, key: &str, v: i32) -> &mut Self {
        self.add(key, GgufValue::I32(v))
    }

    /// Adds a `u64` value.
    pub fn add_u64(&mut self, key: &str, v: u64) -> &mut Self {
        self.add(key, GgufValue::U64(v))
    }

    /// Adds an `i64` value.
    pub fn add_i64(&mut self, key: &str, v: i64) -> &mut Self {
        self.add(key, GgufValue::I64(v))
    }

    /// Adds an `f32` value.
    pub fn add_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.add(key, GgufValue::F32(v))
    }

    /// Adds an `f64` value.
    pub fn add_f64(&mut self, key: &str, v: f64) -> &mut Self {
        self.add(key, GgufValue::F64(v))
    }

    /// Adds a `bool` value.
    pub fn add_bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.add(key, GgufValue::Bool(v))
    }

    /// Adds a string value.
    pub fn add_string(&mut self, key: &str, v: &str) -> &mut Self {
        self.add(key, GgufValue::String(v.to_string()))
    }

    /// Adds an array value whose elements all have type `elem_type`.
    pub fn add_array(
        &mut self,
        key: &str,
        elem_type: GgufValueType,
        values: Vec<GgufValue>,
    ) -> &mut Self {
        self.add(key, GgufValue::Array(elem_type, values))
    }

    /// Adds an `array<string>` value.
    pub fn add_str_array<S: AsRef<str>>(&mut self, key: &str, values: &[S]) -> &mut Self {
        let v = values
            .iter()
            .map(|s| GgufValue::String(s.as_ref().to_string()))
            .collect();
        self.add_array(key, GgufValueType::String, v)
    }

    /// Adds an `array<f32>` value.
    pub fn add_f32_array(&mut self, key: &str, values: &[f32]) -> &mut Self {
        let v = values.iter().map(|&x| GgufValue::F32(x)).collect();
        self.add_array(key, GgufValueType::F32, v)
    }

    /// Adds an `array<i32>` value.
    pub fn add_i32_array(&mut self, key: &str, values: &[i32]) -> &mut Self {
        let v = values.iter().map(|&x| GgufValue::I32(x)).collect();
        self.add_array(key, GgufValueType::I32, v)
    }

    /// Adds an `array<u32>` value.
    pub fn add_u32_array(&mut self, key: &str, values: &[u32]) -> &mut Self {
        let v = values.iter().map(|&x| GgufValue::U32(x)).collect();
        self.add_array(key, GgufValueType::U32, v)
    }

    /// Sets the data alignment (stored as the `general.alignment` u32 key); must be a power
    /// of two.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self, GgufError> {
        if !alignment.is_power_of_two() {
            return Err(GgufError::InvalidInput(format!(
                "alignment {alignment} is not a power of two"
            )));
        }
        Ok(self.add_u32(ALIGNMENT_KEY, alignment))
    }

    /// Adds tensor `name` with ggml-order `dims` (`[ne0, ne1, ...]`, fastest-varying first)
    /// from `data` in storage order (for `[ne0, ne1]`: `ne1` rows of `ne0` values), encoded
    /// as `dtype` (F32, F16, BF16, Q8_0, Q4_0 or Q4_1; `ne0` must be a multiple of the block
    /// size).
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        data: &[f32],
        dtype: GgmlType,
    ) -> Result<&mut Self, GgufError> {
        let n = check_dims(name, dims, dtype)?;
        if n != data.len() as u64 {
            return Err(GgufError::InvalidInput(format!(
                "tensor `{name}` has dims {dims:?} ({n} elements) but {} values were given",
                data.len()
            )));
        }
        let bytes = quantize(dtype, data).map_err(|e| match e {
            GgufError::UnsupportedTensorType { dtype, .. } => GgufError::UnsupportedTensorType {
                tensor: name.to_string(),
                dtype,
            },
            other => other,
        })?;
        self.push_tensor(name, dims, dtype, bytes)
    }

    /// Adds tensor `name` from already-encoded ggml bytes of any known type (e.g. hand-built
    /// k-quant blocks). `bytes.len()` must match `dims` and `dtype`.
    pub fn add_tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: GgmlType,
        bytes: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        let n = check_dims(name, dims, dtype)?;
        let need = dtype.bytes_for(n);
        if need != Some(bytes.len() as u64) {
            return Err(GgufError::InvalidInput(format!(
                "tensor `{name}`: dims {dims:?} of {dtype} need {need:?} bytes, got {}",
                bytes.len()
            )));
        }
        self.push_tensor(name, dims, dtype, bytes)
    }

    fn push_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::InvalidInput(format!(
                "tensor `{name}` was added twice"
            )));
        }
        self.tensors.push(WriterTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            data,
        });
        Ok(self)
    }

    /// Serialises the file (GGUF v3) to bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let alignment = match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
                GgufError::InvalidInput(format!("`{ALIGNMENT_KEY}` must be a power-of-two integer"))
            })?,
        };
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut out, key, value)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.dtype.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = offset
                .checked_add(t.data.len() as u64)
                .and_then(|end| align_up(end, alignment))
                .ok_or_else(|| GgufError::InvalidInput("tensor data too large".to_string()))?;
        }
        pad_to(&mut out, alignment);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad_to(&mut out, alignment);
        }
        Ok(out)
    }

    /// Writes the file to `path` atomically: the bytes go to a temporary file in the same
    /// directory, which is synced and then renamed over `path`.
    pub fn write_to(&self, path: &Path) -> Result<(), GgufError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let bytes = self.to_bytes()?;
        let file_name = path.file_name().ok_or_else(|| {
            GgufError::InvalidInput(format!("{} has no file name", path.display()))
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            GgufError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

fn check_dims(name: &str, dims: &[u64], dtype: GgmlType) -> Result<u64, GgufError> {
    if dims.len() > MAX_DIMS {
        return Err(GgufError::InvalidInput(format!(
            "tensor `{name}` has {} dims (at most {MAX_DIMS})",
            dims.len()
        )));
    }
    let n = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| GgufError::InvalidInput(format!("tensor `{name}` dims overflow")))?;
    let ne0 = dims.first().copied().unwrap_or(1);
    if !ne0.is_multiple_of(dtype.block_size() as u64) {
        return Err(GgufError::InvalidInput(format!(
            "tensor `{name}`: ne0 = {ne0} is not a multiple of the {dtype} block size {}",
            dtype.block_size()
        )));
    }
    Ok(n)
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let rem = (out.len() as u64) % alignment;
    if rem != 0 {
        out.resize(out.len() + (alignment - rem) as usize, 0);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, key: &str, v: &GgufValue) -> Result<(), GgufError> {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend(x.to_le_bytes()),
        GgufValue::U16(x) => out.extend(x.to_le_bytes()),
        GgufValue::I16(x) => out.extend(x.to_le_bytes()),
        GgufValue::U32(x) => out.extend(x.to_le_bytes()),
        GgufValue::I32(x) => out.extend(x.to_le_bytes()),
        GgufValue::F32(x) => out.extend(x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::U64(x) => out.extend(x.to_le_bytes()),
        GgufValue::I64(x) => out.extend(x.to_le_bytes()),
        GgufValue::F64(x) => out.extend(x.to_le_bytes()),
        GgufValue::Array(t, items) => {
            out.extend(t.id().to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *t {
                    return Err(GgufError::InvalidInput(format!(
                        "metadata key `{key}`: array<{t}> contains a {} element",
                        item.type_name()
                    )));
                }
                put_value(out, key, item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic RNG (xorshift64*), so the tests need no extra crates.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn uniform(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
        }
        /// Roughly normal (Irwin-Hall with 4 terms), scaled.
        fn normal(&mut self, scale: f32) -> f32 {
            let s: f32 = (0..4).map(|_| self.uniform()).sum();
            (s - 2.0) * 1.7 * scale
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next_u64() as u8).collect()
        }
    }

    fn f16b(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    /// A small valid file: metadata of several types and two tensors.
    fn sample_file() -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.add_string("general.architecture", "llama")
            .add_u32("llama.block_count", 2)
            .add_f32("llama.rope.freq_base", 10000.0)
            .add_str_array("tokenizer.ggml.tokens", &["<s>", "a", "bc"])
            .add_i32_array("tokenizer.ggml.token_type", &[3, 1, 1]);
        let data: Vec<f32> = (0..64).map(|i| i as f32 * 0.1 - 3.0).collect();
        w.add_tensor("a.weight", &[32, 2], &data, GgmlType::Q4_1)
            .unwrap();
        w.add_tensor("b.weight", &[8], &data[..8], GgmlType::F32)
            .unwrap();
        w.to_bytes().unwrap()
    }

    // ---- metadata ---------------------------------------------------------------------------

    #[test]
    fn metadata_round_trip_every_type() {
        let mut w = GgufWriter::new();
        w.add_u8("u8", 250)
            .add_i8("i8", -120)
            .add_u16("u16", 65000)
            .add_i16("i16", -32000)
            .add_u32("u32", 4_000_000_000)
            .add_i32("i32", -2_000_000_000)
            .add_f32("f32", 1.5e-5)
            .add_bool("bool", true)
            .add_bool("bool_false", false)
            .add_string("string", "h\u{e9}llo \u{2603}")
            .add_string("empty", "")
            .add_u64("u64", u64::MAX)
            .add_i64("i64", i64::MIN)
            .add_f64("f64", std::f64::consts::PI)
            .add_str_array("strs", &["a", "", "\u{fc}ber"])
            .add_f32_array("f32s", &[0.5, -2.25])
            .add_i32_array("i32s", &[i32::MIN, 0, i32::MAX])
            .add_u32_array("u32s", &[1, 2])
            .add_array("empty_arr", GgufValueType::I64, vec![])
            .add_array(
                "nested",
                GgufValueType::Array,
                vec![
                    GgufValue::Array(GgufValueType::U8, vec![GgufValue::U8(1), GgufValue::U8(2)]),
                    GgufValue::Array(GgufValueType::String, vec![GgufValue::String("x".into())]),
                ],
            )
            .add_u32("replaced", 1)
            .add_u32("replaced", 2);
        let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.data_offset() % 32, 0);
        let m = f.metadata();
        assert_eq!(m.len(), 21);
        assert_eq!(m["u8"], GgufValue::U8(250));
        assert_eq!(m["i8"], GgufValue::I8(-120));
        assert_eq!(m["u16"], GgufValue::U16(65000));
        assert_eq!(m["i16"], GgufValue::I16(-32000));
        assert_eq!(m["u32"], GgufValue::U32(4_000_000_000));
        assert_eq!(m["i32"], GgufValue::I32(-2_000_000_000));
        assert_eq!(m["f32"], GgufValue::F32(1.5e-5));
        assert_eq!(m["bool"], GgufValue::Bool(true));
        assert_eq!(m["bool_false"], GgufValue::Bool(false));
        assert_eq!(f.get_str("string").unwrap(), "h\u{e9}llo \u{2603}");
        assert_eq!(f.get_str("empty").unwrap(), "");
        assert_eq!(m["u64"], GgufValue::U64(u64::MAX));
        assert_eq!(m["i64"], GgufValue::I64(i64::MIN));
        assert_eq!(m["f64"], GgufValue::F64(std::f64::consts::PI));
        assert_eq!(f.get_str_array("strs").unwrap(), ["a", "", "\u{fc}ber"]);
        assert_eq!(f.get_f32_array("f32s").unwrap(), [0.5, -2.25]);
        assert_eq!(f.get_i32_array("i32s").unwrap(), [i32::MIN, 0, i32::MAX]);
        assert_eq!(f.get_i32_array("u32s").unwrap(), [1, 2]);
        assert_eq!(m["empty_arr"], GgufValue::Array(GgufValueType::I64, vec![]));
        assert_eq!(m["nested"].type_name(), "array<array>");
        let nested = m["nested"].as_array().unwrap();
        assert_eq!(
            nested[0].as_array().unwrap(),
            [GgufValue::U8(1), GgufValue::U8(2)]
        );
        assert_eq!(nested[1].as_array().unwrap()[0].as_str(), Some("x"));
        assert_eq!(f.get_u32("replaced").unwrap(), 2);
        assert!(f.tensors().is_empty());
    }

    #[test]
    fn typed_getters_convert_or_report_wrong_type() {
        let mut w = GgufWriter::new();
        w.add_u8("u8", 7)
            .add_i64("i64_small", 42)
            .add_i32("neg", -1)
            .add_u64("big", 1 << 40)
            .add_f64("f64", 0.25)
            .add_string("s", "x")
            .add_array(
                "mixed_ints",
                GgufValueType::I64,
                vec![GgufValue::I64(1), GgufValue::I64(1 << 40)],
            );
        let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        assert_eq!(f.get_u32("u8").unwrap(), 7);
        assert_eq!(f.get_u32("i64_small").unwrap(), 42);
        assert_eq!(f.get_u64("big").unwrap(), 1 << 40);
        assert_eq!(f.get_f32("f64").unwrap(), 0.25);
        for key in ["neg", "big", "s", "f64"] {
            let err = f.get_u32(key).unwrap_err();
            assert!(
                matches!(err, GgufError::WrongKeyType { .. }),
                "{key}: {err}"
            );
        }
        let err = f.get_u32("neg").unwrap_err().to_string();
        assert!(err.contains("`neg`") && err.contains("i32 -1"), "{err}");
        assert!(matches!(
            f.get_f32("s"),
            Err(GgufError::WrongKeyType { .. })
        ));
        assert!(matches!(
            f.get_str("u8"),
            Err(GgufError::WrongKeyType { .. })
        ));
        assert!(matches!(
            f.get_str_array("s"),
            Err(GgufError::WrongKeyType { .. })
        ));
        assert!(matches!(
            f.get_i32_array("mixed_ints"),
            Err(GgufError::WrongKeyType { .. })
        ));
        assert!(matches!(
            f.get_f32_array("mixed_ints"),
            Err(GgufError::WrongKeyType { .. })
        ));
        let err = f.get_u32("nope").unwrap_err();
        assert!(matches!(err, GgufError::MissingKey(ref k) if k == "nope"));
        assert!(err.to_string().contains("re-convert"), "{err}");
        assert!(f.get("nope").is_none());
    }

    // ---- tensors: writer -> reader ------------------------------------------------------------

    #[test]
    fn tensor_round_trip_every_writable_type() {
        let mut rng = Rng(0x1234_5678);
        let (ne0, ne1) = (96u64, 5u64);
        let n = (ne0 * ne1) as usize;
        let mut data: Vec<f32> = (0..n).map(|_| rng.normal(0.7)).collect();
        // Special blocks: all zero, constant, with an outlier.
        data[..32].fill(0.0);
        data[32..64].fill(-0.3);
        data[100] = 9.0;
        let types = [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
        ];
        let mut w = GgufWriter::new();
        w.set_alignment(64).unwrap();
        for t in types {
            w.add_tensor(&format!("t.{t}"), &[ne0, ne1], &data, t)
                .unwrap();
        }
        let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        assert_eq!(f.alignment(), 64);
        for t in types {
            let name = format!("t.{t}");
            let info = f.tensor(&name).unwrap();
            assert_eq!(info.dtype, t);
            assert_eq!(info.dims, [ne0, ne1]);
            assert_eq!(info.shape_row_major(), [ne1 as usize, ne0 as usize]);
            assert_eq!(info.n_elements(), ne0 * ne1);
            assert_eq!(
                info.n_bytes(),
                ne0 * ne1 / t.block_size() as u64 * t.bytes_per_block() as u64
            );
            assert_eq!((f.data_offset() + info.offset) % 64, 0);
            assert_eq!(f.tensor_bytes(&name).unwrap().len() as u64, info.n_bytes());
            let got = f.dequantize(&name).unwrap();
            assert_eq!(got.len(), n);
            let mut into = vec![0.0; n];
            f.dequantize_into(&name, &mut into).unwrap();
            assert_eq!(got, into);
            for (b, (xs, ys)) in data.chunks(32).zip(got.chunks(32)).enumerate() {
                let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let (lo, hi) = xs
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                for (x, y) in xs.iter().zip(ys) {
                    let tol = match t {
                        GgmlType::F32 => 0.0,
                        GgmlType::F16 => x.abs() * 1e-3 + 1e-7,
                        GgmlType::BF16 => x.abs() * 4e-3,
                        GgmlType::Q8_0 => amax / 127.0 * 0.5 + amax * 1e-3,
                        GgmlType::Q4_0 => amax / 8.0 + amax * 4e-3,
                        GgmlType::Q4_1 => (hi - lo) / 15.0 * 0.5 + (hi.abs() + lo.abs()) * 2e-3,
                        _ => unreachable!(),
                    };
                    assert!(
                        (x - y).abs() <= tol,
                        "{t} block {b}: {x} -> {y} (tol {tol})"
                    );
                }
            }
            // The all-zero and constant blocks are reproduced (near-)exactly.
            assert!(got[..32].iter().all(|&v| v == 0.0), "{t}");
            assert!(got[32..64].iter().all(|&v| (v + 0.3).abs() < 2e-3), "{t}");
        }
    }

    #[test]
    fn quantisers_follow_ggml_reference() {
        // Q8_0: d = amax / 127, q = round(x / d).
        let x: [f32; 32] = std::array::from_fn(|j| j as f32 - 16.0);
        let q = quantize(GgmlType::Q8_0, &x).unwrap();
        assert_eq!(q.len(), 34);
        assert_eq!(q[..2], f16b(16.0 / 127.0));
        let id = 1.0 / (16.0f32 / 127.0); // 1/d, computed in f32 as ggml does
        for j in 0..32 {
            assert_eq!(q[2 + j] as i8, (x[j] * id).round() as i8, "j={j}");
        }
        assert_eq!(q[2] as i8, -127);

        // Q4_0: d = max / -8 where max is the signed value of largest magnitude.
        let mut x = [0.25f32; 32];
        x[5] = -4.0;
        x[20] = 3.0;
        let q = quantize(GgmlType::Q4_0, &x).unwrap();
        assert_eq!(q[..2], f16b(0.5));
        // x = -4 -> trunc(-4/0.5 + 8.5) = 0 ; x = 3 -> trunc(6 + 8.5) = 14 ; 0.25 -> trunc(9) = 9
        assert_eq!(q[2 + 5] & 0x0F, 0);
        assert_eq!(q[2 + 4] >> 4, 14);
        assert_eq!(q[2] & 0x0F, 9);

        // Q4_1: d = (max - min) / 15, m = min, q = trunc((x - min) / d + 0.5).
        let x: [f32; 32] = std::array::from_fn(|j| -1.0 + 0.5 * (j % 16) as f32);
        let q = quantize(GgmlType::Q4_1, &x).unwrap();
        assert_eq!(q[..2], f16b(0.5));
        assert_eq!(q[2..4], f16b(-1.0));
        for j in 0..16 {
            assert_eq!(q[4 + j], (j as u8) | ((j as u8) << 4));
        }

        // All-zero block: d = 0 and every q is the zero point.
        let q = quantize(GgmlType::Q4_0, &[0.0; 32]).unwrap();
        assert_eq!(f16::from_le_bytes([q[0], q[1]]).to_f32(), 0.0); // -0.0, as in ggml
        assert!(q[2..].iter().all(|&b| b == 0x88));

        // Errors: partial blocks and types without a quantiser.
        assert!(matches!(
            quantize(GgmlType::Q8_0, &[0.0; 33]),
            Err(GgufError::InvalidInput(_))
        ));
        assert!(matches!(
            quantize(GgmlType::Q4_K, &[0.0; 256]),
            Err(GgufError::UnsupportedTensorType { .. })
        ));
    }

    // ---- exact dequantisation of hand-built blocks -------------------------------------------

    fn deq(t: GgmlType, bytes: &[u8]) -> Vec<f32> {
        let n = bytes.len() / t.bytes_per_block() * t.block_size();
        let mut out = vec![f32::NAN; n];
        dequantize_into(t, bytes, &mut out).unwrap();
        out
    }

    #[test]
    fn q4_1_hand_block() {
        // d = 0.5, m = -1; byte j holds element j (low nibble = j) and 16 + j (high = 15 - j).
        let mut b = Vec::new();
        b.extend(f16b(0.5));
        b.extend(f16b(-1.0));
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q4_1, &b);
        for j in 0..16 {
            assert_eq!(y[j], 0.5 * j as f32 - 1.0);
            assert_eq!(y[16 + j], 0.5 * (15 - j) as f32 - 1.0);
        }
        assert_eq!(y[0], -1.0);
        assert_eq!(y[15], 6.5);
        assert_eq!(y[16], 6.5);
    }

    #[test]
    fn q4_0_and_q8_0_hand_blocks() {
        let mut b = Vec::new();
        b.extend(f16b(0.25));
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = deq(GgmlType::Q4_0, &b);
        for j in 0..16 {
            assert_eq!(y[j], 0.25 * (j as f32 - 8.0));
            assert_eq!(y[16 + j], 0.25 * (7.0 - j as f32));
        }

        let mut b = Vec::new();
        b.extend(f16b(-0.125));
        b.extend((0..32i32).map(|j| ((j - 16) * 8 - 1).clamp(-128, 127) as i8 as u8));
        let y = deq(GgmlType::Q8_0, &b);
        for (j, v) in y.iter().enumerate() {
            assert_eq!(
                *v,
                -0.125 * ((j as i32 - 16) * 8 - 1).clamp(-128, 127) as f32
            );
        }
        assert_eq!(y[0], 16.0); // q = -128
        assert_eq!(y[31], -0.125 * 119.0);
    }

    #[test]
    fn q5_hand_blocks() {
        // qh bit j is the 5th bit of element j. Set bits for elements 1, 16, 31.
        let qh: u32 = (1 << 1) | (1 << 16) | (1 << 31);
        let qs: Vec<u8> = (0..16u8).map(|j| j | (j << 4)).collect();
        let expect_q = |e: usize| -> i32 {
            let low = (e % 16) as i32;
            low + if qh >> e & 1 == 1 { 16 } else { 0 }
        };
        let mut b = Vec::new();
        b.extend(f16b(2.0));
        b.extend(qh.to_le_bytes());
        b.extend(&qs);
        let y = deq(GgmlType::Q5_0, &b);
        for (e, v) in y.iter().enumerate() {
            assert_eq!(*v, 2.0 * (expect_q(e) - 16) as f32, "Q5_0 element {e}");
        }
        assert_eq!(y[1], 2.0 * (1 + 16 - 16) as f32);
        assert_eq!(y[31], 2.0 * (15 + 16 - 16) as f32);

        let mut b = Vec::new();
        b.extend(f16b(0.5));
        b.extend(f16b(-3.0));
        b.extend(qh.to_le_bytes());
        b.extend(&qs);
        let y = deq(GgmlType::Q5_1, &b);
        for (e, v) in y.iter().enumerate() {
            assert_eq!(*v, 0.5 * expect_q(e) as f32 - 3.0, "Q5_1 element {e}");
        }
    }

    /// Straightforward per-element k-quant decoders written from the block layouts (for
    /// cross-checking the block kernels on random data).
    fn naive_k(t: GgmlType, b: &[u8], e: usize) -> f32 {
        let h = |i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        let sm = |sub: usize, s: &[u8]| -> (f32, f32) {
            if sub < 4 {
                ((s[sub] & 63) as f32, (s[sub + 4] & 63) as f32)
            } else {
                let sc = (s[sub + 4] & 15) | ((s[sub - 4] >> 6) << 4);
                let m = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
                (sc as f32, m as f32)
            }
        };
        let (chunk, within) = (e / 64, e % 64);
        let sub = 2 * chunk + within / 32;
        match t {
            GgmlType::Q4_K => {
                let (sc, m) = sm(sub, &b[4..16]);
                let byte = b[16 + 32 * chunk + within % 32];
                let q = if within < 32 { byte & 15 } else { byte >> 4 };
                h(0) * sc * q as f32 - h(2) * m
            }
            GgmlType::Q5_K => {
                let (sc, m) = sm(sub, &b[4..16]);
                let byte = b[48 + 32 * chunk + within % 32];
                let low = if within < 32 { byte & 15 } else { byte >> 4 };
                let high = (b[16 + within % 32] >> sub) & 1;
                h(0) * sc * (low + 16 * high) as f32 - h(2) * m
            }
            GgmlType::Q6_K => {
                let (half, l) = (e / 128, e % 128);
                let quarter = l / 32; // which of the 4 interleaved groups
                let col = l % 32;
                let ql = b[64 * half + col + if quarter % 2 == 1 { 32 } else { 0 }];
                let low = if quarter < 2 { ql & 15 } else { ql >> 4 };
                let high = (b[128 + 32 * half + col] >> (2 * quarter)) & 3;
                let q = (low | (high << 4)) as i32 - 32;
                let sc = b[192 + 8 * half + col / 16 + 2 * quarter] as i8;
                h(208) * sc as f32 * q as f32
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn k_quants_match_naive_decoder() {
        let mut rng = Rng(42);
        for t in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let bs = t.bytes_per_block();
            let mut bytes = rng.bytes(3 * bs);
            for blk in bytes.chunks_mut(bs) {
                match t {
                    GgmlType::Q6_K => blk[bs - 2..].copy_from_slice(&f16b(0.01)),
                    _ => {
                        blk[..2].copy_from_slice(&f16b(0.02));
                        blk[2..4].copy_from_slice(&f16b(0.015));
                    }
                }
            }
            let y = deq(t, &bytes);
            assert_eq!(y.len(), 3 * 256);
            for (i, v) in y.iter().enumerate() {
                let b = &bytes[(i / 256) * bs..][..bs];
                assert_eq!(*v, naive_k(t, b, i % 256), "{t} element {i}");
            }
        }
    }

    #[test]
    fn k_quants_hand_values() {
        // Q4_K: d = 1, dmin = 0.5; sub-block 0 scale 3 / min 2; sub-block 5 uses the packed
        // high bits: scales[9] = 0x21 -> sc low 1, m low 2; scales[1] top bits 01 -> sc += 16;
        // scales[5] top bits 10 -> m += 32.
        let mut b = vec![0u8; 144];
        b[..2].copy_from_slice(&f16b(1.0));
        b[2..4].copy_from_slice(&f16b(0.5));
        b[4] = 3; // sc0
        b[8] = 2; // m0
        b[4 + 1] = 0b0100_0000;
        b[4 + 5] = 0b1000_0000;
        b[4 + 9] = 0x21;
        b[16] = 0x5A; // element 0 (low nibble 0xA) and element 32 (high nibble 5)
        b[16 + 64] = 0x07; // chunk 2, sub-block 4 (low) / 5 (high): element 128 low nibble 7
        b[16 + 64 + 1] = 0x90; // element 129 low 0, element 161 high 9
        let y = deq(GgmlType::Q4_K, &b);
        assert_eq!(y[0], 1.0 * 3.0 * 10.0 - 0.5 * 2.0);
        // sub-block 5: sc = 1 | (1 << 4) = 17, m = 2 | (2 << 4) = 34.
        assert_eq!(y[161], 17.0 * 9.0 - 0.5 * 34.0);

        // Q6_K: d = 0.5, scale[0] = -2; element 0 = ql[0] low | qh[0] bits 0..1 << 4, minus 32.
        let mut b = vec![0u8; 210];
        b[208..].copy_from_slice(&f16b(0.5));
        b[192] = (-2i8) as u8;
        b[0] = 0x0F; // low nibble 15
        b[128] = 0b10; // high bits 2 -> q = 15 | 32 = 47 -> 15
        let y = deq(GgmlType::Q6_K, &b);
        assert_eq!(y[0], 0.5 * -2.0 * 15.0);
        // Element 1: ql = 0, qh = 0 -> q = -32.
        assert_eq!(y[1], 0.5 * -2.0 * -32.0);
        // Element 16 uses scale[1] = 0.
        assert_eq!(y[16], 0.0);
    }

    #[test]
    fn dequantize_validates_sizes_and_types() {
        let mut out = vec![0.0; 32];
        assert!(matches!(
            dequantize_into(GgmlType::Q8_0, &[0u8; 33], &mut out),
            Err(GgufError::InvalidInput(_))
        ));
        let mut out = vec![0.0; 31];
        assert!(matches!(
            dequantize_into(GgmlType::Q8_0, &[0u8; 34], &mut out),
            Err(GgufError::InvalidInput(_))
        ));
        let mut out = vec![0.0; 256];
        let err = dequantize_into(GgmlType::Q2_K, &[0u8; 84], &mut out).unwrap_err();
        assert!(matches!(
            err,
            GgufError::UnsupportedTensorType {
                dtype: GgmlType::Q2_K,
                ..
            }
        ));

        let mut w = GgufWriter::new();
        w.add_tensor_raw("iq", &[256, 1], GgmlType::IQ2_XS, vec![0; 74])
            .unwrap();
        let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        let err = f.dequantize("iq").unwrap_err();
        assert!(
            matches!(err, GgufError::UnsupportedTensorType { ref tensor, dtype: GgmlType::IQ2_XS } if tensor == "iq")
        );
        let msg = err.to_string();
        assert!(msg.contains("`iq`") && msg.contains("convert the model to Q8_0/Q4_0/Q4_1/F16"));
        assert!(f.tensor_bytes("iq").is_ok());
    }

    // ---- errors on bad input ------------------------------------------------------------------

    #[test]
    fn truncation_at_every_cut_point_is_an_error_not_a_panic() {
        let bytes = sample_file();
        let full = GgufFile::from_bytes(bytes.clone()).unwrap();
        let needed = full
            .tensors()
            .iter()
            .map(|t| full.data_offset() + t.offset + t.n_bytes())
            .max()
            .unwrap() as usize;
        assert!(needed <= bytes.len());
        for cut in 0..bytes.len() {
            let res = GgufFile::from_bytes(bytes[..cut].to_vec());
            if cut < needed {
                let err = res.unwrap_err();
                assert!(
                    matches!(
                        err,
                        GgufError::Truncated { .. } | GgufError::TensorDataOutOfBounds { .. }
                    ),
                    "cut {cut}: {err}"
                );
                assert!(err.to_string().contains("re-download"), "{err}");
            } else {
                // Only the trailing padding is missing.
                let f = res.unwrap();
                assert_eq!(
                    f.dequantize("a.weight").unwrap(),
                    full.dequantize("a.weight").unwrap()
                );
            }
        }
        // Specific cut points and their messages.
        let err = GgufFile::from_bytes(bytes[..10].to_vec()).unwrap_err();
        assert!(
            matches!(err, GgufError::Truncated { offset: 8, .. }),
            "{err}"
        );
        let err = GgufFile::from_bytes(bytes[..40].to_vec()).unwrap_err();
        assert!(err.to_string().contains("metadata entry #0"), "{err}");
        // Inside the value of the first key ("llama" starts at byte 64).
        let err = GgufFile::from_bytes(bytes[..66].to_vec()).unwrap_err();
        assert!(
            matches!(err, GgufError::Truncated { offset: 56, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("`general.architecture`"), "{err}");
        let err = GgufFile::from_bytes(bytes[..needed - 1].to_vec()).unwrap_err();
        match err {
            GgufError::TensorDataOutOfBounds { ref tensor, .. } => assert_eq!(tensor, "b.weight"),
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("`b.weight`"));
    }

    #[test]
    fn truncated_file_on_disk_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = sample_file();
        let path = dir.path().join("cut.gguf");
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(GgufFile::open(&path).is_err());
        let empty = dir.path().join("empty.gguf");
        fs::write(&empty, b"").unwrap();
        assert!(matches!(
            GgufFile::open(&empty),
            Err(GgufError::Truncated { offset: 0, .. })
        ));
        let err = GgufFile::open(&dir.path().join("missing.gguf")).unwrap_err();
        assert!(matches!(err, GgufError::Io { .. }));
        assert!(err.to_string().contains("missing.gguf"));
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = sample_file();
        bytes[..4].copy_from_slice(b"GGML");
        let err = GgufFile::from_bytes(bytes).unwrap_err();
        assert!(matches!(err, GgufError::NotGguf { .. }), "{err}");
        assert!(err.to_string().contains("not a GGUF file"));
        assert!(matches!(
            GgufFile::from_bytes(b"{\"x\"".to_vec()),
            Err(GgufError::NotGguf { .. })
        ));
        assert!(matches!(
            GgufFile::from_bytes(b"PK".to_vec()),
            Err(GgufError::NotGguf { .. })
        ));

        for (v, big_endian) in [(1u32, false), (4, false), (0x0300_0000, true)] {
            let mut bytes = sample_file();
            bytes[4..8].copy_from_slice(&v.to_le_bytes());
            let err = GgufFile::from_bytes(bytes).unwrap_err();
            if big_endian {
                assert!(err.to_string().contains("big-endian"), "{err}");
            } else {
                assert!(
                    matches!(err, GgufError::UnsupportedVersion(x) if x == v),
                    "{err}"
                );
            }
        }
        // Version 2 has the same layout and is accepted.
        let mut bytes = sample_file();
        bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(GgufFile::from_bytes(bytes).unwrap().version(), 2);
    }

    /// Hand-assembles a file: header, encoded metadata entries, tensor infos, padding, data.
    struct Raw {
        tensor_count: u64,
        kv_count: u64,
        body: Vec<u8>,
    }

    impl Raw {
        fn new(tensor_count: u64, kv_count: u64) -> Raw {
            Raw {
                tensor_count,
                kv_count,
                body: Vec::new(),
            }
        }
        fn str(&mut self, s: &str) -> &mut Raw {
            put_str(&mut self.body, s);
            self
        }
        fn u32(&mut self, v: u32) -> &mut Raw {
            self.body.extend(v.to_le_bytes());
            self
        }
        fn u64(&mut self, v: u64) -> &mut Raw {
            self.body.extend(v.to_le_bytes());
            self
        }
        fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Raw {
            self.str(name).u32(dims.len() as u32);
            for &d in dims {
                self.u64(d);
            }
            self.u32(type_id).u64(offset)
        }
        fn build(&self, data_len: usize) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(b"GGUF");
            out.extend(3u32.to_le_bytes());
            out.extend(self.tensor_count.to_le_bytes());
            out.extend(self.kv_count.to_le_bytes());
            out.extend_from_slice(&self.body);
            pad_to(&mut out, 32);
            out.resize(out.len() + data_len, 0);
            out
        }
    }

    fn parse(bytes: Vec<u8>) -> GgufError {
        GgufFile::from_bytes(bytes).expect_err("expected an error")
    }

    #[test]
    fn unknown_tensor_type_id() {
        let bytes = Raw::new(1, 0).tensor("w", &[32], 5, 0).build(64);
        match parse(bytes) {
            GgufError::UnknownTensorType { tensor, type_id } => {
                assert_eq!((tensor.as_str(), type_id), ("w", 5));
            }
            other => panic!("unexpected {other}"),
        }
        let err = parse(Raw::new(1, 0).tensor("x", &[32], 999, 0).build(64));
        assert!(err.to_string().contains("`x`") && err.to_string().contains("999"));
        // And a known id parses.
        let f = GgufFile::from_bytes(Raw::new(1, 0).tensor("w", &[32], 8, 0).build(34)).unwrap();
        assert_eq!(f.tensor("w").unwrap().dtype, GgmlType::Q8_0);
    }

    #[test]
    fn absurd_counts_and_sizes_fail_cleanly() {
        // 2^60 tensors / kv pairs in an otherwise tiny file.
        assert!(matches!(
            parse(Raw::new(1 << 60, 0).build(0)),
            GgufError::Truncated { .. }
        ));
        assert!(matches!(
            parse(Raw::new(0, 1 << 60).build(0)),
            GgufError::Truncated { .. }
        ));
        assert!(matches!(
            parse(Raw::new(u64::MAX, u64::MAX).build(0)),
            GgufError::Truncated { .. }
        ));
        // Huge string length (key, and a string value).
        let mut r = Raw::new(0, 1);
        r.u64(1 << 60);
        assert!(matches!(parse(r.build(0)), GgufError::Truncated { .. }));
        let mut r = Raw::new(0, 1);
        r.str("k").u32(8).u64(u64::MAX);
        assert!(matches!(parse(r.build(0)), GgufError::Truncated { .. }));
        // Huge arrays of u8 / strings / arrays.
        for elem in [0u32, 8, 9] {
            let mut r = Raw::new(0, 1);
            r.str("arr").u32(9).u32(elem).u64(1 << 60);
            let err = parse(r.build(0));
            assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
            assert!(err.to_string().contains("`arr`"), "{err}");
        }
        // Unknown value types.
        let mut r = Raw::new(0, 1);
        r.str("k").u32(13);
        assert!(matches!(parse(r.build(0)), GgufError::Corrupt(_)));
        let mut r = Raw::new(0, 1);
        r.str("k").u32(9).u32(77).u64(0);
        assert!(matches!(parse(r.build(0)), GgufError::Corrupt(_)));
        // Deeply nested arrays: rejected without exhausting the stack.
        let mut r = Raw::new(0, 1);
        r.str("deep").u32(9);
        for _ in 0..10_000 {
            r.u32(9).u64(1);
        }
        r.u32(0).u64(0);
        assert!(matches!(parse(r.build(0)), GgufError::Corrupt(_)));
        // Too many dims, element-count overflow, partial block, offset overflow / out of range.
        let err = parse(Raw::new(1, 0).tensor("w", &[1; 5], 0, 0).build(4));
        assert!(matches!(err, GgufError::Corrupt(_)), "{err}");
        let err = parse(
            Raw::new(1, 0)
                .tensor("w", &[1 << 40, 1 << 40], 0, 0)
                .build(0),
        );
        assert!(matches!(err, GgufError::Corrupt(_)), "{err}");
        let err = parse(
            Raw::new(1, 0)
                .tensor("w", &[1 << 62, 1, 1, 1], 0, 0)
                .build(0),
        );
        assert!(matches!(err, GgufError::Corrupt(_)), "{err}");
        let err = parse(Raw::new(1, 0).tensor("w", &[31], 8, 0).build(64));
        assert!(matches!(err, GgufError::Corrupt(_)), "{err}");
        for offset in [u64::MAX, u64::MAX - 40, 1 << 40, 1] {
            let err = parse(Raw::new(1, 0).tensor("w", &[8], 0, offset).build(32));
            assert!(
                matches!(err, GgufError::TensorDataOutOfBounds { ref tensor, .. } if tensor == "w"),
                "{offset}: {err}"
            );
        }
        // Huge but in-range declared sizes never allocate: a tensor claiming 2^61 bytes.
        let err = parse(Raw::new(1, 0).tensor("w", &[1 << 59], 0, 0).build(32));
        assert!(
            matches!(err, GgufError::TensorDataOutOfBounds { .. }),
            "{err}"
        );
        // Duplicates and a bad alignment.
        let err = parse(
            Raw::new(2, 0)
                .tensor("w", &[8], 0, 0)
                .tensor("w", &[8], 0, 32)
                .build(64),
        );
        assert!(err.to_string().contains("duplicate tensor"), "{err}");
        let mut r = Raw::new(0, 2);
        r.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
        assert!(parse(r.build(0))
            .to_string()
            .contains("duplicate metadata key"));
        for align in [0u32, 3, 48] {
            let mut r = Raw::new(0, 1);
            r.str(ALIGNMENT_KEY).u32(4).u32(align);
            assert!(
                matches!(parse(r.build(0)), GgufError::Corrupt(_)),
                "{align}"
            );
        }
    }

    #[test]
    fn random_corruption_never_panics() {
        let base = sample_file();
        let mut rng = Rng(0xDEAD_BEEF);
        let mut n_ok = 0;
        for _ in 0..4000 {
            let mut bytes = base.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let i = (rng.next_u64() % bytes.len() as u64) as usize;
                bytes[i] = match rng.next_u64() % 3 {
                    0 => rng.next_u64() as u8,
                    1 => 0xFF,
                    _ => 0,
                };
            }
            if rng.next_u64().is_multiple_of(4) {
                let cut = (rng.next_u64() % bytes.len() as u64) as usize;
                bytes.truncate(cut);
            }
            if let Ok(f) = GgufFile::from_bytes(bytes) {
                n_ok += 1;
                for t in f.tensors() {
                    let _ = f.dequantize(&t.name);
                    let _ = f.tensor_bytes(&t.name);
                }
                for k in f.metadata().keys() {
                    let _ = f.get_u32(k);
                    let _ = f.get_str_array(k);
                    let _ = f.get_i32_array(k);
                }
            }
        }
        assert!(n_ok > 0);
    }

    #[test]
    fn missing_tensor_is_named() {
        let f = GgufFile::from_bytes(sample_file()).unwrap();
        let err = f.tensor("blk.9.attn_q.weight").unwrap_err();
        assert!(matches!(err, GgufError::MissingTensor(ref n) if n == "blk.9.attn_q.weight"));
        assert!(err.to_string().contains("`blk.9.attn_q.weight`"));
        assert!(f.dequantize("nope").is_err());
        assert!(f.tensor_bytes("nope").is_err());
        assert_eq!(f.tensors().len(), 2);
        assert_eq!(f.tensors()[0].name, "a.weight");
        assert_eq!(
            f.get_str_array("tokenizer.ggml.tokens").unwrap(),
            ["<s>", "a", "bc"]
        );
    }

    // ---- writer ---------------------------------------------------------------------------------

    #[test]
    fn write_to_is_atomic_and_reopens_via_mmap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        fs::write(&path, b"old contents").unwrap();
        let mut w = GgufWriter::new();
        w.add_u32("x", 1);
        let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
        w.add_tensor("t", &[64], &data, GgmlType::F16).unwrap();
        w.write_to(&path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.get_u32("x").unwrap(), 1);
        assert_eq!(f.dequantize("t").unwrap(), data);
        assert_eq!(f.file_len(), fs::metadata(&path).unwrap().len());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["model.gguf"], "no temporary files left behind");
        // Writing into a missing directory fails cleanly.
        let err = w
            .write_to(&dir.path().join("no/such/dir/m.gguf"))
            .unwrap_err();
        assert!(matches!(err, GgufError::Io { .. }));
        // Same bytes as to_bytes.
        assert_eq!(fs::read(&path).unwrap(), w.to_bytes().unwrap());
    }

    #[test]
    fn writer_rejects_bad_input() {
        let mut w = GgufWriter::new();
        assert!(matches!(
            w.add_tensor("t", &[32, 2], &[0.0; 63], GgmlType::F32),
            Err(GgufError::InvalidInput(_))
        ));
        assert!(matches!(
            w.add_tensor("t", &[48], &[0.0; 48], GgmlType::Q8_0),
            Err(GgufError::InvalidInput(_))
        ));
        assert!(matches!(
            w.add_tensor("t", &[32], &[0.0; 32], GgmlType::Q5_0),
            Err(GgufError::UnsupportedTensorType { ref tensor, .. }) if tensor == "t"
        ));
        assert!(matches!(
            w.add_tensor_raw("t", &[32], GgmlType::Q8_0, vec![0; 33]),
            Err(GgufError::InvalidInput(_))
        ));
        w.add_tensor("t", &[32], &[1.0; 32], GgmlType::Q8_0)
            .unwrap();
        assert!(matches!(
            w.add_tensor("t", &[32], &[1.0; 32], GgmlType::Q8_0),
            Err(GgufError::InvalidInput(_))
        ));
        assert!(w.set_alignment(48).is_err());
        w.add_array("bad", GgufValueType::U8, vec![GgufValue::U16(1)]);
        assert!(matches!(w.to_bytes(), Err(GgufError::InvalidInput(_))));
    }

    #[test]
    fn ggml_type_table() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(t.to_string(), t.name());
            assert!(t.block_size() > 0 && t.bytes_per_block() > 0);
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None, "{id}");
        }
        assert_eq!(
            (
                GgmlType::Q4_K.block_size(),
                GgmlType::Q4_K.bytes_per_block()
            ),
            (256, 144)
        );
        assert_eq!(
            (
                GgmlType::Q5_K.block_size(),
                GgmlType::Q5_K.bytes_per_block()
            ),
            (256, 176)
        );
        assert_eq!(
            (
                GgmlType::Q6_K.block_size(),
                GgmlType::Q6_K.bytes_per_block()
            ),
            (256, 210)
        );
        assert_eq!(
            (
                GgmlType::Q4_1.block_size(),
                GgmlType::Q4_1.bytes_per_block()
            ),
            (32, 20)
        );
        assert_eq!(GgmlType::BF16.id(), 30);
        let info = GgufTensorInfo {
            name: "blk.0.attn_q.weight".into(),
            dims: vec![576, 192],
            dtype: GgmlType::Q4_1,
            offset: 0,
        };
        assert_eq!(info.shape_row_major(), [192, 576]);
        assert_eq!(info.n_elements(), 576 * 192);
        assert_eq!(info.n_bytes(), 576 * 192 / 32 * 20);
        let huge = GgufTensorInfo {
            dims: vec![u64::MAX, u64::MAX],
            ..info
        };
        assert_eq!(huge.n_elements(), u64::MAX); // saturates, no panic
    }
}
