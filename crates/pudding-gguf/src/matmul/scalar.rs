//! Portable kernels, and the per-format decoding of one sub-block of 32 weights that they
//! (and the tests of the SIMD kernels) use.

use super::{QuantizedActivations, QuantizedMatrix, ACT_BLOCK};
use crate::dequant::{k_scales, scale_min_k4};
use crate::GgmlType;
use half::f16;

/// One sub-block of 32 weights as integers: value `i` is `scale[i / 16] * q[i] + min`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SubBlock {
    /// The integer values (signed for the formats without a min, else unsigned).
    pub q: [i32; 32],
    /// The scale of values 0..16 and of values 16..32 (equal except in Q6_K).
    pub scale: [f32; 2],
    /// The offset of every value (zero for the symmetric formats).
    pub min: f32,
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Sub-blocks of 32 per block of `dtype`.
pub(crate) fn subs_per_block(dtype: GgmlType) -> usize {
    dtype.block_size() / ACT_BLOCK
}

/// Decodes sub-block `j` (`0..subs_per_block`) of one stored `block` of `dtype`.
pub(crate) fn decode_sub(dtype: GgmlType, block: &[u8], j: usize) -> SubBlock {
    let mut q = [0i32; 32];
    match dtype {
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (d, m, qs) = if dtype == GgmlType::Q4_0 {
                (f16_at(block, 0), 0.0, &block[2..18])
            } else {
                (f16_at(block, 0), f16_at(block, 2), &block[4..20])
            };
            let offset = if dtype == GgmlType::Q4_0 { 8 } else { 0 };
            for i in 0..16 {
                q[i] = i32::from(qs[i] & 0x0F) - offset;
                q[i + 16] = i32::from(qs[i] >> 4) - offset;
            }
            SubBlock {
                q,
                scale: [d, d],
                min: m,
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let (d, m, qh, qs) = if dtype == GgmlType::Q5_0 {
                (f16_at(block, 0), 0.0, &block[2..6], &block[6..22])
            } else {
                (
                    f16_at(block, 0),
                    f16_at(block, 2),
                    &block[4..8],
                    &block[8..24],
                )
            };
            let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
            let offset = if dtype == GgmlType::Q5_0 { 16 } else { 0 };
            for i in 0..16 {
                let lo = ((qh >> i) & 1) << 4;
                let hi = ((qh >> (i + 16)) & 1) << 4;
                q[i] = (u32::from(qs[i] & 0x0F) | lo) as i32 - offset;
                q[i + 16] = (u32::from(qs[i] >> 4) | hi) as i32 - offset;
            }
            SubBlock {
                q,
                scale: [d, d],
                min: m,
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(block, 0);
            for (v, &b) in q.iter_mut().zip(&block[2..34]) {
                *v = i32::from(b as i8);
            }
            SubBlock {
                q,
                scale: [d, d],
                min: 0.0,
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let d = f16_at(block, 0);
            let dmin = f16_at(block, 2);
            let scales = k_scales(&block[4..16]);
            let (sc, m) = scale_min_k4(j, &scales);
            let chunk = j / 2;
            let (qh, qs) = if dtype == GgmlType::Q4_K {
                (None, &block[16 + 32 * chunk..48 + 32 * chunk])
            } else {
                (
                    Some(&block[16..48]),
                    &block[48 + 32 * chunk..80 + 32 * chunk],
                )
            };
            for l in 0..32 {
                let nibble = if j.is_multiple_of(2) {
                    qs[l] & 0x0F
                } else {
                    qs[l] >> 4
                };
                let high = qh.map_or(0, |h| ((h[l] >> j) & 1) << 4);
                q[l] = i32::from(nibble | high);
            }
            let s = d * f32::from(sc);
            SubBlock {
                q,
                scale: [s, s],
                min: -(dmin * f32::from(m)),
            }
        }
        GgmlType::Q6_K => {
            let d = f16_at(block, 208);
            let (half, k) = (j / 4, j % 4);
            let ql = &block[64 * half..64 * half + 64];
            let qh = &block[128 + 32 * half..160 + 32 * half];
            let sc = &block[192 + 8 * half..200 + 8 * half];
            for l in 0..32 {
                let low = match k {
                    0 => ql[l] & 0x0F,
                    1 => ql[l + 32] & 0x0F,
                    2 => ql[l] >> 4,
                    _ => ql[l + 32] >> 4,
                };
                let high = (qh[l] >> (2 * k)) & 3;
                q[l] = i32::from(low | (high << 4)) - 32;
            }
            SubBlock {
                q,
                scale: [
                    d * f32::from(sc[2 * k] as i8),
                    d * f32::from(sc[2 * k + 1] as i8),
                ],
                min: 0.0,
            }
        }
        other => unreachable!("no integer kernel for {other}"),
    }
}

/// Output rows `rows` of `m` against quantised activations `a`, into `out`
/// (`[rows.len(), n]`).
pub(crate) fn int_rows(
    m: &QuantizedMatrix,
    rows: std::ops::Range<usize>,
    a: &QuantizedActivations,
    out: &mut [f32],
) {
    let n = a.n();
    let subs = subs_per_block(m.dtype);
    let block_bytes = m.dtype.bytes_per_block();
    let act_blocks = a.blocks_per_row();
    for (o, r) in out.chunks_exact_mut(n).zip(rows) {
        o.fill(0.0);
        for (b, block) in m.row(r).chunks_exact(block_bytes).enumerate() {
            for j in 0..subs {
                let sub = decode_sub(m.dtype, block, j);
                let ab = b * subs + j;
                for (t, y) in o.iter_mut().enumerate() {
                    let qa = &a.q[(t * act_blocks + ab) * ACT_BLOCK..][..ACT_BLOCK];
                    let (mut lo, mut hi) = (0i32, 0i32);
                    for i in 0..16 {
                        lo += sub.q[i] * i32::from(qa[i]);
                        hi += sub.q[i + 16] * i32::from(qa[i + 16]);
                    }
                    let da = a.d[t * act_blocks + ab];
                    *y += da * (sub.scale[0] * lo as f32 + sub.scale[1] * hi as f32)
                        + sub.min * a.s[t * act_blocks + ab];
                }
            }
        }
    }
}

/// Output rows `rows` of a float-format `m` against `f32` activations `x` (`[n, cols]`),
/// into `out` (`[rows.len(), n]`).
pub(crate) fn float_rows(
    m: &QuantizedMatrix,
    rows: std::ops::Range<usize>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let mut w = vec![0.0f32; m.cols];
    for (o, r) in out.chunks_exact_mut(n).zip(rows) {
        crate::dequantize_into(m.dtype, m.row(r), &mut w).expect("row length checked");
        for (t, y) in o.iter_mut().enumerate() {
            let xr = &x[t * m.cols..(t + 1) * m.cols];
            *y = w.iter().zip(xr).map(|(a, b)| a * b).sum();
        }
    }
}
