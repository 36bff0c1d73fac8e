//! Reference quantisers (`quantize_row_*_ref`) for the formats test models are written in.

use crate::{GgmlType, GgufError};
use half::{bf16, f16};

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

pub(crate) fn quant_blocks<const B: usize>(
    data: &[f32],
    out: &mut Vec<u8>,
    f: fn(&[f32; 32]) -> [u8; B],
) {
    for x in data.as_chunks::<32>().0 {
        out.extend_from_slice(&f(x));
    }
}

pub(crate) fn quant_q8_0(x: &[f32; 32]) -> [u8; 34] {
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

pub(crate) fn quant_q4_0(x: &[f32; 32]) -> [u8; 18] {
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

pub(crate) fn quant_q4_1(x: &[f32; 32]) -> [u8; 20] {
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
