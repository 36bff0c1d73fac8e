//! The tokenizer rebuilt from GGUF metadata (byte-level BPE merges, SentencePiece scores),
//! structure-aware: arbitrary vocabularies, merges, scores and token types, written as a
//! GGUF, read back, then used to encode and decode arbitrary text.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pudding_models::gguf::{GgufFile, GgufWriter};
use pudding_models::TextTokenizer;

#[derive(Arbitrary, Debug)]
struct Vocabulary {
    /// SentencePiece ("llama") rather than byte-level BPE ("gpt2"); or an unknown model.
    model: Model,
    pre: Option<String>,
    tokens: Vec<String>,
    /// Adds the 256 byte tokens (`Ġ`-style characters, or `<0xNN>` for SentencePiece).
    byte_tokens: bool,
    /// Merges as pairs of token indices (made into "a b"), and as raw strings.
    merge_pairs: Vec<(u16, u16)>,
    raw_merges: Vec<String>,
    /// Adds each merge's result to the vocabulary.
    merged_tokens: bool,
    scores: Option<Vec<f32>>,
    types: Option<Vec<i32>>,
    add_space_prefix: Option<bool>,
    unknown_token_id: Option<u32>,
    text: String,
    ids: Vec<u32>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Model {
    BytePairs,
    SentencePiece,
    Other,
}

fn byte_level_chars() -> Vec<String> {
    // GPT-2's printable mapping: bytes that print as themselves, the rest shifted past 255.
    let mut shifted = 256u32;
    (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
            let c = if printable {
                b
            } else {
                shifted += 1;
                shifted - 1
            };
            char::from_u32(c).unwrap_or('?').to_string()
        })
        .collect()
}

fuzz_target!(|v: Vocabulary| {
    let mut tokens = v.tokens.clone();
    if v.byte_tokens {
        match v.model {
            Model::SentencePiece => tokens.extend((0..256).map(|b| format!("<0x{b:02X}>"))),
            _ => tokens.extend(byte_level_chars()),
        }
    }
    let mut merges = v.raw_merges.clone();
    for &(a, b) in &v.merge_pairs {
        if tokens.is_empty() {
            break;
        }
        let (a, b) = (
            tokens[a as usize % tokens.len()].clone(),
            tokens[b as usize % tokens.len()].clone(),
        );
        if v.merged_tokens {
            tokens.push(format!("{a}{b}"));
        }
        merges.push(format!("{a} {b}"));
    }
    let mut w = GgufWriter::new();
    let model = match v.model {
        Model::BytePairs => "gpt2",
        Model::SentencePiece => "llama",
        Model::Other => "bert",
    };
    w.add_string("tokenizer.ggml.model", model)
        .add_str_array("tokenizer.ggml.tokens", &tokens)
        .add_str_array("tokenizer.ggml.merges", &merges);
    if let Some(pre) = &v.pre {
        w.add_string("tokenizer.ggml.pre", pre);
    }
    let n = tokens.len();
    let scores = v
        .scores
        .clone()
        .unwrap_or_else(|| (0..n).map(|i| -(i as f32)).collect());
    w.add_f32_array("tokenizer.ggml.scores", &scores);
    let types = v.types.clone().unwrap_or_else(|| vec![1; n]);
    w.add_i32_array("tokenizer.ggml.token_type", &types);
    if let Some(flag) = v.add_space_prefix {
        w.add_bool("tokenizer.ggml.add_space_prefix", flag);
    }
    if let Some(id) = v.unknown_token_id {
        w.add_u32("tokenizer.ggml.unknown_token_id", id);
    }
    let Ok(bytes) = w.to_bytes() else {
        return;
    };
    let file = GgufFile::from_bytes(bytes).expect("the writer's own output reads back");
    let Ok(tokenizer) = TextTokenizer::from_gguf(&file) else {
        return;
    };
    let _ = tokenizer.vocab_size();
    if let Ok(ids) = tokenizer.encode(&v.text) {
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()));
        let _ = tokenizer.decode(&ids);
    }
    let _ = tokenizer.encode_with_special_tokens(&v.text);
    let _ = tokenizer.decode(&v.ids);
    for &id in v.ids.iter().take(8) {
        let _ = tokenizer.piece(id);
        let _ = tokenizer.id_to_token(id);
    }
});
