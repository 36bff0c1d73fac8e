//! ggml tensor storage types: ids, block sizes, byte sizes.

use crate::QK_K;
use std::fmt;

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

    /// Whether [`dequantize_into`](crate::dequantize_into) / [`GgufFile::dequantize`](crate::GgufFile::dequantize) support this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K
        )
    }

    /// Whether [`quantize`](crate::quantize()) / [`GgufWriter::add_tensor`](crate::GgufWriter::add_tensor) can produce this type.
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
