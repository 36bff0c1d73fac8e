//! Dequantisation of the ggml block formats to `f32` (bit-exact with ggml's reference
//! `dequantize_row_*`).

use crate::{GgmlType, GgufError};
use half::f16;

/// Dequantises raw ggml data of type `dtype` into `out` (storage order).
///
/// `out.len()` must be a multiple of the block size and `data.len()` must be exactly
/// `out.len() / block_size * bytes_per_block`; otherwise [`GgufError::InvalidInput`].
/// Unsupported types give [`GgufError::UnsupportedTensorType`].
pub fn dequantize_into(dtype: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    dequantize_impl("<raw data>", dtype, data, out)
}

pub(crate) fn dequantize_impl(
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
pub(crate) fn blocks<const B: usize, const E: usize>(
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
pub(crate) fn f16_at(lo: u8, hi: u8) -> f32 {
    f16::from_le_bytes([lo, hi]).to_f32()
}

#[inline(always)]
pub(crate) fn dequant_q8_0(b: &[u8; 34], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    for (o, &q) in o.iter_mut().zip(&b[2..]) {
        *o = f32::from(q as i8) * d;
    }
}

#[inline(always)]
pub(crate) fn dequant_q4_0(b: &[u8; 18], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    let (lo, hi) = o.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[2..]) {
        *l = (i32::from(q & 0x0F) - 8) as f32 * d;
        *h = (i32::from(q >> 4) - 8) as f32 * d;
    }
}

#[inline(always)]
pub(crate) fn dequant_q4_1(b: &[u8; 20], o: &mut [f32; 32]) {
    let d = f16_at(b[0], b[1]);
    let m = f16_at(b[2], b[3]);
    let (lo, hi) = o.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[4..]) {
        *l = f32::from(q & 0x0F) * d + m;
        *h = f32::from(q >> 4) * d + m;
    }
}

#[inline(always)]
pub(crate) fn dequant_q5_0(b: &[u8; 22], o: &mut [f32; 32]) {
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
pub(crate) fn dequant_q5_1(b: &[u8; 24], o: &mut [f32; 32]) {
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
pub(crate) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

pub(crate) fn k_scales(b: &[u8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (d, v) in s.iter_mut().zip(b) {
        *d = *v;
    }
    s
}

/// Q4_K super-block: `f16 d | f16 dmin | scales[12] | qs[128]`.
#[inline(always)]
pub(crate) fn dequant_q4_k(b: &[u8; 144], o: &mut [f32; 256]) {
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
pub(crate) fn dequant_q5_k(b: &[u8; 176], o: &mut [f32; 256]) {
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
pub(crate) fn dequant_q6_k(b: &[u8; 210], o: &mut [f32; 256]) {
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
