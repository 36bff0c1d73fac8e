//! Cross-checks `pudding_models::gguf` against an independent implementation: the fixture
//! `tests/fixtures/gguf_types.gguf` was written and quantised by the Python `gguf` package
//! (gguf-py), and `tests/fixtures/gguf_types.json` holds the values gguf-py's own
//! `gguf.quants.dequantize` produces for it. Regenerate both with
//! `scripts/reference/gguf_dequant_fixture.py`.

use std::path::PathBuf;

use pudding_models::gguf::{
    quantize, GgufError, GgufFile, GgufTensorInfo, GgufValue, GgufValueType, GgufWriter,
};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

fn load() -> (GgufFile, Value) {
    let dir = fixture_dir();
    let file = GgufFile::open(&dir.join("gguf_types.gguf")).expect("open gguf_types.gguf");
    let json = std::fs::read_to_string(dir.join("gguf_types.json")).expect("read gguf_types.json");
    (
        file,
        serde_json::from_str(&json).expect("parse gguf_types.json"),
    )
}

/// Compares a metadata value with the JSON description `{ "type": ..., "value": ... }`.
fn check_value(key: &str, got: &GgufValue, want_type: &str, want: &Value) {
    assert_eq!(got.type_name(), want_type, "type of `{key}`");
    match got {
        GgufValue::String(s) => assert_eq!(Some(s.as_str()), want.as_str(), "`{key}`"),
        GgufValue::Bool(b) => assert_eq!(Some(*b), want.as_bool(), "`{key}`"),
        GgufValue::F32(_) | GgufValue::F64(_) => {
            let w = want.as_f64().expect("number");
            if let GgufValue::F32(v) = got {
                assert_eq!(v.to_bits(), (w as f32).to_bits(), "`{key}`");
            } else {
                assert_eq!(got.as_f64(), Some(w), "`{key}`");
            }
        }
        GgufValue::Array(elem, items) => {
            let want_items = want.as_array().expect("array");
            assert_eq!(items.len(), want_items.len(), "length of `{key}`");
            for (g, w) in items.iter().zip(want_items) {
                let t = match elem {
                    GgufValueType::Array => g.type_name(),
                    t => t.name().to_string(),
                };
                check_value(key, g, &t, w);
            }
        }
        int => {
            if let Some(w) = want.as_i64() {
                assert_eq!(int.as_i64(), Some(w), "`{key}`");
            } else {
                assert_eq!(int.as_u64(), want.as_u64(), "`{key}`");
            }
        }
    }
}

#[test]
fn header_and_metadata_match_gguf_py() {
    let (file, json) = load();
    assert_eq!(u64::from(file.version()), json["version"].as_u64().unwrap());
    assert_eq!(file.alignment(), json["alignment"].as_u64().unwrap());
    let meta = json["metadata"].as_object().unwrap();
    for (key, desc) in meta {
        let got = file
            .get(key)
            .unwrap_or_else(|| panic!("metadata key `{key}` missing"));
        check_value(key, got, desc["type"].as_str().unwrap(), &desc["value"]);
    }
    // Typed getters on the same data.
    assert_eq!(file.get_str("general.architecture").unwrap(), "fixture");
    assert_eq!(file.get_u32("test.u32").unwrap(), 4_000_000_000);
    assert_eq!(file.get_u32("test.u8").unwrap(), 200);
    assert!(matches!(
        file.get_u32("test.i32"),
        Err(GgufError::WrongKeyType { .. })
    ));
    assert_eq!(file.get_f32("test.f64").unwrap(), 0.1f64 as f32);
    assert_eq!(
        file.get_str_array("test.str_array").unwrap(),
        ["a", "bb", "", "\u{fc}"]
    );
    assert_eq!(
        file.get_i32_array("test.i32_array").unwrap(),
        [1, -2, 3, i32::MAX]
    );
    assert_eq!(
        file.get_f32_array("test.f32_array").unwrap(),
        [0.5, -1.25, 3.0e-3]
    );
}

#[test]
fn dequantised_values_match_gguf_py() {
    let (file, json) = load();
    let tensors = json["tensors"].as_array().unwrap();
    assert_eq!(file.tensors().len(), tensors.len());
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let info = file.tensor(name).unwrap();
        assert_eq!(info.dtype.name(), t["type"].as_str().unwrap(), "{name}");
        let dims: Vec<u64> = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(info.dims, dims, "{name}: ggml dims");
        assert_eq!(info.shape_row_major(), shape, "{name}: row-major shape");
        let Some(want) = t.get("values").and_then(Value::as_array) else {
            // A type gguf-py can store but we do not dequantise (Q3_K).
            assert!(
                matches!(
                    file.dequantize(name),
                    Err(GgufError::UnsupportedTensorType { ref tensor, .. }) if tensor == name
                ),
                "{name}: expected UnsupportedTensorType"
            );
            continue;
        };
        let got = file.dequantize(name).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: element count");
        assert_eq!(got.len() as u64, info.n_elements(), "{name}");
        let mut max_diff = 0.0f32;
        let mut bit_exact = 0;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            // gguf-py's values are exact f32s; rounding the parsed f64 back to f32 undoes any
            // last-bit error of the JSON float parser.
            let w = w.as_f64().unwrap() as f32;
            let diff = (g - w).abs();
            max_diff = max_diff.max(diff);
            bit_exact += usize::from(g.to_bits() == w.to_bits());
            assert!(
                diff <= 1e-6,
                "{name}[{i}] (row {}, col {}): got {g}, gguf-py {w}",
                i / shape.last().copied().unwrap_or(1),
                i % shape.last().copied().unwrap_or(1)
            );
        }
        eprintln!(
            "{name}: {} values, max |diff| = {max_diff:e}, {bit_exact} bit-exact",
            got.len()
        );
    }
}

#[test]
fn raw_bytes_have_the_declared_size() {
    let (file, _) = load();
    for info in file.tensors() {
        let bytes = file.tensor_bytes(&info.name).unwrap();
        assert_eq!(bytes.len() as u64, info.n_bytes(), "{}", info.name);
        assert_eq!(
            (file.data_offset() + info.offset) % file.alignment(),
            0,
            "{}",
            info.name
        );
    }
}

/// Re-encodes gguf-py's float32 inputs with our quantisers (the ones `GgufWriter` uses) and
/// requires byte-identical output to what gguf-py stored.
#[test]
fn quantisers_match_gguf_py_bytes() {
    let (file, json) = load();
    let mut checked = 0;
    for t in json["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let Some(input) = t.get("input").and_then(Value::as_array) else {
            continue;
        };
        let info: &GgufTensorInfo = file.tensor(name).unwrap();
        if !info.dtype.can_quantize() {
            continue; // Q5_0 / Q5_1: gguf-py can quantise them, we only dequantise.
        }
        let input: Vec<f32> = input.iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let ours = quantize(info.dtype, &input).unwrap();
        assert_eq!(
            ours,
            file.tensor_bytes(name).unwrap(),
            "{name}: quantised bytes"
        );

        // And through the writer: same bytes again after a write/read round trip.
        let mut w = GgufWriter::new();
        w.add_tensor(name, &info.dims, &input, info.dtype).unwrap();
        let back = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        assert_eq!(
            back.tensor_bytes(name).unwrap(),
            file.tensor_bytes(name).unwrap()
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "F32, F16, BF16, Q8_0, Q4_0, Q4_1");
}
