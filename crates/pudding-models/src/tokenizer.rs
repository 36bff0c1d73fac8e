//! Tokenizers: a Hugging Face `tokenizer.json`, or a byte-level BPE rebuilt from GGUF
//! metadata (`tokenizer.ggml.*`), both run by the `tokenizers` crate.

use crate::gguf::GgufFile;
use crate::ModelError;
use serde_json::{json, Value};
use std::path::Path;

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The Llama 3 pre-tokeniser split pattern (numbers in runs of up to three digits).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Qwen2 pre-tokeniser split pattern: Llama 3's, but every digit on its own.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A text <-> token-id codec. Special tokens written in the text (e.g. `<|im_start|>`)
/// map to their ids; no BOS/EOS is added.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer(vocab={})", self.vocab_size())
    }
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json`. Padding and truncation configured in the file
    /// are switched off: pudding decides lengths itself.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(tok_err)?;
        Ok(Self { inner })
    }

    /// Rebuilds the tokenizer stored in GGUF metadata. Supports byte-level BPE
    /// (`tokenizer.ggml.model = gpt2`) with the pre-tokenisers `smollm`, `gpt2`/`default`,
    /// `llama-bpe` and `qwen2`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let model = file.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(ModelError::Tokenizer(format!(
                "GGUF tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\"); use the model's tokenizer.json instead"
            )));
        }
        let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
        let merges = file.get_str_array("tokenizer.ggml.merges")?;
        let types = file
            .get_i32_array("tokenizer.ggml.token_type")
            .unwrap_or_default();
        let pre = file.get_str("tokenizer.ggml.pre").unwrap_or("default");
        // A regex split then byte mapping (Llama 3, Qwen2).
        let split = |pattern: &str| {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
            ]})
        };
        let mut normalizer = Value::Null;
        let pre_tokenizer = match pre {
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ]}),
            "gpt2" | "default" => json!(
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ),
            "llama-bpe" | "llama3" => split(LLAMA3_SPLIT),
            "qwen2" => {
                // Qwen2's tokenizer.json composes Unicode (NFC) before splitting.
                normalizer = json!({"type": "NFC"});
                split(QWEN2_SPLIT)
            }
            other => {
                return Err(ModelError::Tokenizer(format!(
                    "GGUF pre-tokenizer {other:?} is not supported (smollm, gpt2, llama-bpe, qwen2)"
                )))
            }
        };
        let vocab: serde_json::Map<String, Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();
        if vocab.len() != tokens.len() {
            return Err(ModelError::Tokenizer(
                "tokenizer.ggml.tokens holds duplicate tokens".into(),
            ));
        }
        let added: Vec<Value> = types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .filter_map(|(i, &t)| {
                tokens.get(i).map(|content| {
                    json!({"id": i, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": t == TOKEN_TYPE_CONTROL})
                })
            })
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let inner: tokenizers::Tokenizer = spec.to_string().parse().map_err(tok_err)?;
        Ok(Self { inner })
    }

    /// Token ids of `text` (special-token strings become their ids; nothing is added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` with the tokenizer's post-processing (e.g. BERT's `[CLS]` ...
    /// `[SEP]`).
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.inner.encode(text, true).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids` (special tokens kept as their strings).
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// The string of one token id (byte-level pieces decoded to text where possible).
    pub fn piece(&self, id: u32) -> Result<String, ModelError> {
        self.decode(&[id])
    }

    /// The token string of `id`, if the vocabulary has it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let text = self.inner.to_string(true).map_err(tok_err)?;
        pudding_core::io::write_atomic(path, text.as_bytes())?;
        Ok(())
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

#[cfg(test)]
mod split_pattern_tests {
    use super::*;
    use crate::gguf::GgufWriter;
    use crate::testing::tiny_vocab;

    /// A tiny byte-level BPE whose merges join the digits "1", "2" into "12", stored as a
    /// GGUF with pre-tokenizer `pre`.
    fn digit_merging_tokenizer(pre: &str) -> (TextTokenizer, Vec<String>) {
        let (mut tokens, mut types, mut merges) = tiny_vocab();
        merges.push("1 2".into());
        tokens.push("12".into());
        types.push(1);
        let mut w = GgufWriter::new();
        w.add_string("tokenizer.ggml.model", "gpt2")
            .add_string("tokenizer.ggml.pre", pre)
            .add_str_array("tokenizer.ggml.tokens", &tokens)
            .add_i32_array("tokenizer.ggml.token_type", &types)
            .add_str_array("tokenizer.ggml.merges", &merges);
        let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        (TextTokenizer::from_gguf(&file).unwrap(), tokens)
    }

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let (tok, tokens) = digit_merging_tokenizer(pre);
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "{pre}");
        ids.iter().map(|&i| tokens[i as usize].clone()).collect()
    }

    /// Llama 3 pre-tokenises numbers in runs of up to three digits, so "12" can merge;
    /// Qwen2 splits every digit, so it cannot. Qwen2 also composes Unicode (NFC) first.
    #[test]
    fn llama3_and_qwen2_split_numbers_differently() {
        assert_eq!(pieces("llama-bpe", "123"), ["12", "3"]);
        assert_eq!(pieces("qwen2", "123"), ["1", "2", "3"]);
        let (qwen, _) = digit_merging_tokenizer("qwen2");
        let (llama, _) = digit_merging_tokenizer("llama-bpe");
        let composed = "caf\u{e9}";
        let decomposed = "cafe\u{301}";
        assert_eq!(
            qwen.encode(decomposed).unwrap(),
            qwen.encode(composed).unwrap()
        );
        assert_ne!(
            llama.encode(decomposed).unwrap(),
            llama.encode(composed).unwrap()
        );
    }
}
