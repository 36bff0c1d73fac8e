//! AVX2 + FMA + F16C kernels (x86-64), and the integer kernel once more with AVX-VNNI dot
//! products. Every function here requires those features; callers check them at run time
//! ([`super::Kernel::detect`]).
//!
//! A weight sub-block of 32 is decoded to 32 bytes in one register, multiplied with the 32
//! activation bytes by `maddubs` (unsigned x signed pairs to i16) and `madd` (pairs to i32),
//! giving eight i32 lanes; lanes 0-3 hold values 0-15 and lanes 4-7 values 16-31, so Q6_K's
//! two scales per 32 are one per half.

use super::scalar::subs_per_block;
use super::{QuantizedActivations, QuantizedMatrix, ACT_BLOCK};
use crate::dequant::{k_scales, scale_min_k4};
use crate::GgmlType;
use std::arch::x86_64::*;

/// A decoded weight sub-block: 32 values in one register, the per-lane scale of the eight
/// i32 dot lanes, and the min.
struct Sub {
    w: __m256i,
    scale: __m256,
    min: f32,
}

/// The little-endian f16 at `b`, converted by the F16C instruction (the `half` crate's
/// portable conversion costs as much as the integer dot product it scales).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16_at(b: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*b, *b.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// The per-format decoding of a sub-block.
trait Format {
    /// Whether the decoded values are signed (`abs`/`sign` trick) or unsigned.
    const SIGNED: bool;
    /// Whether the format has a per-sub-block min.
    const HAS_MIN: bool;
    /// Sub-blocks of 32 per stored block.
    const SUBS: usize;
    /// Bytes per stored block.
    const BYTES: usize;
    /// Decodes sub-block `j` of the block at `block`.
    ///
    /// # Safety
    /// `block` points at a whole stored block; the CPU has AVX2.
    unsafe fn decode(block: *const u8, j: usize) -> Sub;
}

/// 16 bytes of nibbles -> 32 bytes: low nibbles first, then high nibbles.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn nibbles(qs: *const u8) -> __m256i {
    let t = _mm_loadu_si128(qs as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

struct Q4_0;
impl Format for Q4_0 {
    const SUBS: usize = 1;
    const BYTES: usize = 18;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, _: usize) -> Sub {
        let w = _mm256_sub_epi8(nibbles(block.add(2)), _mm256_set1_epi8(8));
        Sub {
            w,
            scale: _mm256_set1_ps(f16_at(block)),
            min: 0.0,
        }
    }
}

struct Q4_1;
impl Format for Q4_1 {
    const SUBS: usize = 1;
    const BYTES: usize = 20;
    const SIGNED: bool = false;
    const HAS_MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, _: usize) -> Sub {
        Sub {
            w: nibbles(block.add(4)),
            scale: _mm256_set1_ps(f16_at(block)),
            min: f16_at(block.add(2)),
        }
    }
}

struct Q8_0;
impl Format for Q8_0 {
    const SUBS: usize = 1;
    const BYTES: usize = 34;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, _: usize) -> Sub {
        Sub {
            w: _mm256_loadu_si256(block.add(2) as *const __m256i),
            scale: _mm256_set1_ps(f16_at(block)),
            min: 0.0,
        }
    }
}

/// The K-quants' 6-bit scale and min of sub-block `j`, times the super-block's `d`/`dmin`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn k_scale_min(block: *const u8, j: usize) -> (f32, f32) {
    let scales = k_scales(std::slice::from_raw_parts(block.add(4), 12));
    let (sc, m) = scale_min_k4(j, &scales);
    (
        f16_at(block) * f32::from(sc),
        -(f16_at(block.add(2)) * f32::from(m)),
    )
}

/// The 4-bit values of K-quant sub-block `j` from `qs`: sub-blocks `2c` and `2c + 1` are
/// the low and high nibbles of the same 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn k_nibbles(qs: *const u8, j: usize) -> __m256i {
    let q = _mm256_loadu_si256(qs.add(32 * (j / 2)) as *const __m256i);
    let q = if j.is_multiple_of(2) {
        q
    } else {
        _mm256_srli_epi16(q, 4)
    };
    _mm256_and_si256(q, _mm256_set1_epi8(0x0F))
}

struct Q4K;
impl Format for Q4K {
    const SUBS: usize = 8;
    const BYTES: usize = 144;
    const SIGNED: bool = false;
    const HAS_MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, j: usize) -> Sub {
        let (s, min) = k_scale_min(block, j);
        Sub {
            w: k_nibbles(block.add(16), j),
            scale: _mm256_set1_ps(s),
            min,
        }
    }
}

struct Q5K;
impl Format for Q5K {
    const SUBS: usize = 8;
    const BYTES: usize = 176;
    const SIGNED: bool = false;
    const HAS_MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, j: usize) -> Sub {
        let low = k_nibbles(block.add(48), j);
        let qh = _mm256_loadu_si256(block.add(16) as *const __m256i);
        let bit = _mm256_set1_epi8((1u8 << j) as i8);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        let high = _mm256_and_si256(set, _mm256_set1_epi8(16));
        let (s, min) = k_scale_min(block, j);
        Sub {
            w: _mm256_or_si256(low, high),
            scale: _mm256_set1_ps(s),
            min,
        }
    }
}

struct Q6K;
impl Format for Q6K {
    const SUBS: usize = 8;
    const BYTES: usize = 210;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, j: usize) -> Sub {
        let (half, k) = (j / 4, j % 4);
        let ql = _mm256_loadu_si256(block.add(64 * half + 32 * (k & 1)) as *const __m256i);
        let ql = if k < 2 { ql } else { _mm256_srli_epi16(ql, 4) };
        let low = _mm256_and_si256(ql, _mm256_set1_epi8(0x0F));
        let qh = _mm256_loadu_si256(block.add(128 + 32 * half) as *const __m256i);
        let high = _mm256_and_si256(
            _mm256_srl_epi16(qh, _mm_cvtsi32_si128((2 * k) as i32)),
            _mm256_set1_epi8(3),
        );
        let high = _mm256_slli_epi16(high, 4);
        let w = _mm256_sub_epi8(_mm256_or_si256(low, high), _mm256_set1_epi8(32));
        let d = f16_at(block.add(208));
        let sc = block.add(192 + 8 * half + 2 * k);
        let lo = d * f32::from(*sc as i8);
        let hi = d * f32::from(*sc.add(1) as i8);
        Sub {
            w,
            scale: _mm256_set_m128(_mm_set1_ps(hi), _mm_set1_ps(lo)),
            min: 0.0,
        }
    }
}

/// 32 bits (little endian at `p`) -> 32 bytes, 16 where the bit is set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn fifth_bits(p: *const u8) -> __m256i {
    let bits = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    // Byte i takes bit-byte i / 8, then keeps bit i % 8 of it.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    _mm256_and_si256(set, _mm256_set1_epi8(16))
}

struct Q5_0;
impl Format for Q5_0 {
    const SUBS: usize = 1;
    const BYTES: usize = 22;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, _: usize) -> Sub {
        let q = _mm256_or_si256(nibbles(block.add(6)), fifth_bits(block.add(2)));
        Sub {
            w: _mm256_sub_epi8(q, _mm256_set1_epi8(16)),
            scale: _mm256_set1_ps(f16_at(block)),
            min: 0.0,
        }
    }
}

struct Q5_1;
impl Format for Q5_1 {
    const SUBS: usize = 1;
    const BYTES: usize = 24;
    const SIGNED: bool = false;
    const HAS_MIN: bool = true;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn decode(block: *const u8, _: usize) -> Sub {
        Sub {
            w: _mm256_or_si256(nibbles(block.add(8)), fifth_bits(block.add(4))),
            scale: _mm256_set1_ps(f16_at(block)),
            min: f16_at(block.add(2)),
        }
    }
}

/// Eight i32 lanes of `w . a` over 32 bytes (`w` signed or unsigned, `a` signed).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot32(signed: bool, w: __m256i, a: __m256i) -> __m256i {
    let pairs = if signed {
        _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    } else {
        _mm256_maddubs_epi16(w, a)
    };
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// [`dot32`] with AVX-VNNI: one `vpdpbusd` (unsigned x signed bytes, four products summed
/// into each i32 lane) in place of `maddubs` + `madd`. The sums are the same: `maddubs`
/// never saturates here (weights are at most 128 in magnitude after the sign trick, so a
/// pair stays within 2 * 128 * 127).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
unsafe fn dot32_vnni(signed: bool, w: __m256i, a: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    if signed {
        _mm256_dpbusd_avx_epi32(zero, _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    } else {
        _mm256_dpbusd_avx_epi32(zero, w, a)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Bytes ahead of the current block that are prefetched.
const PREFETCH_AHEAD: usize = 512;

/// Activation rows multiplied together per weight row (the decoded weights are reused):
/// eight, then four, then one at a time. Eight was 10-30 % faster than four on 128-row
/// products (more rows per decoded sub-block); more would not fit the 16 vector registers.
const TILE: usize = 8;

/// The integer kernel, compiled once per instruction set: the entry point `$int_rows`
/// (dispatching on the format) and its loops, where `$dot` multiplies a decoded sub-block
/// with 32 activation bytes and every function the loops call inlines into them (the
/// decoders need a subset of `$features`).
macro_rules! integer_kernel {
    ($(#[$doc:meta])* $features:literal, $int_rows:ident, $rows_of:ident, $tile_of:ident, $dot:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $int_rows(
            m: &QuantizedMatrix,
            rows: std::ops::Range<usize>,
            a: &QuantizedActivations,
            out: &mut [f32],
        ) {
            match m.dtype {
                GgmlType::Q4_0 => $rows_of::<Q4_0>(m, rows, a, out),
                GgmlType::Q4_1 => $rows_of::<Q4_1>(m, rows, a, out),
                GgmlType::Q8_0 => $rows_of::<Q8_0>(m, rows, a, out),
                GgmlType::Q4_K => $rows_of::<Q4K>(m, rows, a, out),
                GgmlType::Q5_K => $rows_of::<Q5K>(m, rows, a, out),
                GgmlType::Q6_K => $rows_of::<Q6K>(m, rows, a, out),
                GgmlType::Q5_0 => $rows_of::<Q5_0>(m, rows, a, out),
                GgmlType::Q5_1 => $rows_of::<Q5_1>(m, rows, a, out),
                other => unreachable!("no integer kernel for {other}"),
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn $rows_of<F: Format>(
            m: &QuantizedMatrix,
            rows: std::ops::Range<usize>,
            a: &QuantizedActivations,
            out: &mut [f32],
        ) {
            let n = a.n();
            let mut t0 = 0;
            while t0 + TILE <= n {
                $tile_of::<F, TILE>(m, rows.clone(), a, t0, out);
                t0 += TILE;
            }
            while t0 + TILE / 2 <= n {
                $tile_of::<F, { TILE / 2 }>(m, rows.clone(), a, t0, out);
                t0 += TILE / 2;
            }
            for t0 in t0..n {
                $tile_of::<F, 1>(m, rows.clone(), a, t0, out);
            }
        }

        /// Activation rows `t0..t0 + TN` against weight rows `rows`; `TN` is a constant so the
        /// accumulators stay in registers. Below eight rows, sub-blocks alternate between two
        /// sets of accumulators: with one, every sub-block waits for the previous one's add (a
        /// 4-cycle chain that is longer than the sub-block's own work).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn $tile_of<F: Format, const TN: usize>(
            m: &QuantizedMatrix,
            rows: std::ops::Range<usize>,
            a: &QuantizedActivations,
            t0: usize,
            out: &mut [f32],
        ) {
            let n = a.n();
            debug_assert_eq!(
                (F::SUBS, F::BYTES),
                (subs_per_block(m.dtype), m.dtype.bytes_per_block())
            );
            let total = m.cols / ACT_BLOCK;
            let act_blocks = a.blocks_per_row();
            let qa_base = a.q.as_ptr().add(t0 * act_blocks * ACT_BLOCK);
            let d_base = a.d.as_ptr().add(t0 * act_blocks);
            let s_base = a.s.as_ptr().add(t0 * act_blocks);
            for (ri, r) in rows.enumerate() {
                let row = m.row(r).as_ptr();
                let mut acc = [[_mm256_setzero_ps(); TN]; 2];
                let mut min_acc = [[0.0f32; TN]; 2];
                // Sub-block `j` of block `u / SUBS` is the `u`-th sub-block of the row.
                let mut step = |u: usize, j: usize, lane: usize| {
                    // A tile of 8 rows has enough independent sums to hide the adds'
                    // latency on its own (and 16 accumulators would not fit the registers).
                    let lane = if TN >= 8 { 0 } else { lane };
                    let block = row.add(u / F::SUBS * F::BYTES);
                    if j == 0 {
                        // Streams from memory: ask for the bytes a few blocks ahead.
                        _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(PREFETCH_AHEAD) as *const i8);
                    }
                    let sub = F::decode(block, j);
                    for t in 0..TN {
                        let at = t * act_blocks + u;
                        let qa = _mm256_loadu_si256(qa_base.add(at * ACT_BLOCK) as *const __m256i);
                        let dot = _mm256_cvtepi32_ps($dot(F::SIGNED, sub.w, qa));
                        let scale = _mm256_mul_ps(sub.scale, _mm256_set1_ps(*d_base.add(at)));
                        acc[lane][t] = _mm256_fmadd_ps(dot, scale, acc[lane][t]);
                        if F::HAS_MIN {
                            min_acc[lane][t] += sub.min * *s_base.add(at);
                        }
                    }
                };
                if F::SUBS == 1 {
                    let mut u = 0;
                    while u + 1 < total {
                        step(u, 0, 0);
                        step(u + 1, 0, 1);
                        u += 2;
                    }
                    if u < total {
                        step(u, 0, 0);
                    }
                } else {
                    // K-quants: the sub-block index is a constant of the unrolled inner loop.
                    for first in (0..total).step_by(F::SUBS) {
                        for j in (0..F::SUBS).step_by(2) {
                            step(first + j, j, 0);
                            step(first + j + 1, j + 1, 1);
                        }
                    }
                }
                for t in 0..TN {
                    let sum = _mm256_add_ps(acc[0][t], acc[1][t]);
                    out[ri * n + t0 + t] = hsum(sum) + min_acc[0][t] + min_acc[1][t];
                }
            }
        }
    };
}

integer_kernel!(
    /// Output rows `rows` of an integer-format `m` against `a`, into `out` (`[rows.len(),
    /// n]`).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    "avx2,fma,f16c",
    int_rows,
    rows_of,
    tile_of,
    dot32
);
integer_kernel!(
    /// [`int_rows`] with AVX-VNNI dot products.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA, F16C and AVX-VNNI.
    "avx2,fma,f16c,avxvnni",
    int_rows_vnni,
    rows_of_vnni,
    tile_of_vnni,
    dot32_vnni
);

/// Eight stored float values at `p` as `f32`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load8(dtype: GgmlType, p: *const u8) -> __m256 {
    match dtype {
        GgmlType::F32 => _mm256_loadu_ps(p as *const f32),
        GgmlType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
        _ => {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_rows_of<const TYPE: u32>(
    m: &QuantizedMatrix,
    rows: std::ops::Range<usize>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let dtype = GgmlType::from_id(TYPE).expect("known type");
    let width = dtype.bytes_per_block();
    let cols = m.cols;
    let vec_cols = cols / 8 * 8;
    for t0 in (0..n).step_by(TILE) {
        let tn = TILE.min(n - t0);
        for (ri, r) in rows.clone().enumerate() {
            let row = m.row(r).as_ptr();
            let mut acc = [_mm256_setzero_ps(); TILE];
            for c in (0..vec_cols).step_by(8) {
                let w = load8(dtype, row.add(c * width));
                for (t, acc) in acc.iter_mut().enumerate().take(tn) {
                    let xv = _mm256_loadu_ps(x.as_ptr().add((t0 + t) * cols + c));
                    *acc = _mm256_fmadd_ps(w, xv, *acc);
                }
            }
            for t in 0..tn {
                let mut y = hsum(acc[t]);
                if vec_cols < cols {
                    let mut tail = vec![0.0f32; cols - vec_cols];
                    crate::dequantize_into(dtype, &m.row(r)[vec_cols * width..], &mut tail)
                        .expect("row length checked");
                    let xr = &x[(t0 + t) * cols + vec_cols..(t0 + t + 1) * cols];
                    y += tail.iter().zip(xr).map(|(a, b)| a * b).sum::<f32>();
                }
                out[ri * n + t0 + t] = y;
            }
        }
    }
}

/// Output rows `rows` of a float-format `m` against `x` (`[n, cols]`), into `out`
/// (`[rows.len(), n]`).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn float_rows(
    m: &QuantizedMatrix,
    rows: std::ops::Range<usize>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) {
    match m.dtype {
        GgmlType::F32 => float_rows_of::<0>(m, rows, x, n, out),
        GgmlType::F16 => float_rows_of::<1>(m, rows, x, n, out),
        GgmlType::BF16 => float_rows_of::<30>(m, rows, x, n, out),
        other => unreachable!("no float kernel for {other}"),
    }
}
