//! Unit tests of the reader, the block formats and the writer.

use crate::dequant::*;
#[allow(unused_imports)]
use crate::quantize::*;
use crate::reader::*;
use crate::writer::*;
use crate::*;
use half::f16;
use std::fs;

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

/// A file whose metadata arrays hold more values than `MAX_METADATA_VALUES` is refused
/// before the values are parsed: a 17 MB `array<u8>` would otherwise cost 32 bytes per
/// element in memory (a 400 MB file asked for 8.6 GB).
#[test]
fn metadata_arrays_past_the_value_limit_are_refused() {
    let count = MAX_METADATA_VALUES + 1;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes()); // tensors
    bytes.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    let key = b"hostile.bytes";
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&GgufValueType::Array.id().to_le_bytes());
    bytes.extend_from_slice(&GgufValueType::U8.id().to_le_bytes());
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.resize(bytes.len() + count as usize, 7);
    match GgufFile::from_bytes(bytes) {
        Err(GgufError::LimitExceeded { what, limit }) => {
            assert!(what.contains("MAX_METADATA_VALUES"), "{what}");
            assert_eq!(limit, MAX_METADATA_VALUES);
        }
        other => panic!("{other:?}"),
    }
}

/// Tensors that overlap, or start off the alignment, are refused (llama.cpp refuses both):
/// overlapping data would alias two weights silently.
#[test]
fn overlapping_or_misaligned_tensor_data_is_refused() {
    // F32 `a` [16] (64 bytes) at 0 and `b` [8] (32 bytes): at 64 they are apart, at 0 or
    // 32 (both aligned) `b` lies inside `a`.
    let two = |second: u64| {
        Raw::new(2, 0)
            .tensor("a", &[16], 0, 0)
            .tensor("b", &[8], 0, second)
            .build(96)
    };
    assert!(GgufFile::from_bytes(two(64)).is_ok());
    for offset in [0, 32] {
        let err = parse(two(offset)).to_string();
        assert!(
            err.contains("overlap") && err.contains("`a`") && err.contains("`b`"),
            "{err}"
        );
    }
    // 8 is off the default alignment of 32.
    let err = parse(Raw::new(1, 0).tensor("w", &[8], 0, 8).build(64)).to_string();
    assert!(err.contains("`w`") && err.contains("alignment"), "{err}");
}
