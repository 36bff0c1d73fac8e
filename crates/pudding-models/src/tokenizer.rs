//! Tokenizers: a Hugging Face `tokenizer.json`, or one rebuilt from GGUF metadata
//! (`tokenizer.ggml.*`: byte-level BPE, or SentencePiece BPE with byte fallback), all run
//! by the `tokenizers` crate.

use crate::gguf::GgufFile;
use crate::ModelError;
use serde_json::{json, Value};
use std::path::Path;

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_NORMAL: i32 = 1;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;
const TOKEN_TYPE_BYTE: i32 = 6;

/// SentencePiece's whitespace marker.
const SPM_SPACE: &str = "\u{2581}";

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
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid =
            |e: &dyn std::fmt::Display| ModelError::Tokenizer(format!("{}: {e}", path.display()));
        // `tokenizers` panics on some malformed JSON inside a `decoder` object (it unwraps
        // that part's parse) and on some BPE merges (see `check_merges`): check the
        // document's syntax and the merges first, so such a file is an error (found by the
        // `hf_checkpoint` and `gguf_tokenizer` fuzz targets).
        #[derive(serde::Deserialize)]
        struct Document {
            #[serde(default)]
            model: Value,
        }
        let document: Document = serde_json::from_str(&text).map_err(|e| invalid(&e))?;
        check_json_merges(&document.model)?;
        drop(document);
        let mut inner: tokenizers::Tokenizer = text.parse().map_err(|e| invalid(&e))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(tok_err)?;
        Ok(Self { inner })
    }

    /// Rebuilds the tokenizer stored in GGUF metadata. Supports byte-level BPE
    /// (`tokenizer.ggml.model = gpt2`) with the pre-tokenisers `smollm`, `gpt2`/`default`,
    /// `llama-bpe` and `qwen2`, and SentencePiece BPE (`llama`, e.g. Gemma 3) without a
    /// space prefix.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        match file.get_str("tokenizer.ggml.model")? {
            "gpt2" => Self::from_gguf_byte_level(file),
            "llama" => Self::from_gguf_sentencepiece(file),
            model => Err(ModelError::Tokenizer(format!(
                "GGUF tokenizer model {model:?} is not supported (byte-level BPE \"gpt2\", \
                 SentencePiece \"llama\"); use the model's tokenizer.json instead"
            ))),
        }
    }

    /// Byte-level BPE (GPT-2 style) from `tokenizer.ggml.tokens` / `merges`.
    fn from_gguf_byte_level(file: &GgufFile) -> Result<Self, ModelError> {
        let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
        let merges = file.get_str_array("tokenizer.ggml.merges")?;
        // Both keys may be absent (no special tokens; the GPT-2 pre-tokenizer), but a key of
        // the wrong type or a token-type list of another length is a corrupt file.
        let types = GgufFile::optional(file.get_i32_array("tokenizer.ggml.token_type"))?
            .unwrap_or_default();
        if !types.is_empty() && types.len() != tokens.len() {
            return Err(ModelError::Tokenizer(format!(
                "{} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let pre = GgufFile::optional(file.get_str("tokenizer.ggml.pre"))?.unwrap_or("default");
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
        // The model is built directly, not parsed from a JSON document (see `gguf_vocab`).
        let vocab = gguf_vocab(&tokens)?;
        let merges = merges
            .iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(ModelError::Tokenizer(format!(
                    "merge {m:?} is not two tokens separated by a space"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_merges(
            merges.iter().map(|(a, b)| (a.as_str(), b.as_str())),
            |t| vocab.contains_key(t),
            "",
        )?;
        let bpe = tokenizers::models::bpe::BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        if !normalizer.is_null() {
            let normalizer: tokenizers::NormalizerWrapper =
                serde_json::from_value(normalizer).map_err(tok_err)?;
            inner.with_normalizer(Some(normalizer)).map_err(tok_err)?;
        }
        let pre_tokenizer: tokenizers::PreTokenizerWrapper =
            serde_json::from_value(pre_tokenizer).map_err(tok_err)?;
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        let decoder: tokenizers::DecoderWrapper = serde_json::from_value(json!(
            {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}
        ))
        .map_err(tok_err)?;
        inner.with_decoder(Some(decoder));
        inner
            .add_tokens(added_tokens(&tokens, &types))
            .map_err(tok_err)?;
        Ok(Self { inner })
    }

    /// SentencePiece BPE (`tokenizer.ggml.model = llama`) from `tokens` / `scores` /
    /// `token_type`, as llama.cpp runs it: control and user-defined tokens are cut out of
    /// the raw text first; each remaining piece has its spaces replaced by `▁` and is
    /// merged pair by pair, always the adjacent pair whose concatenation is the vocabulary
    /// entry with the highest score; characters left outside the vocabulary become their
    /// UTF-8 byte tokens `<0xXX>`. The merge order is expressed as BPE merges ranked by
    /// that score (how Hugging Face converts SentencePiece models). With a space prefix
    /// (`add_space_prefix`, llama.cpp's default for SentencePiece: Llama 2, Mistral,
    /// TinyLlama), every raw fragment (the start of the text and whatever follows a control
    /// or user-defined token) gets one space in front, as llama.cpp does and as Hugging
    /// Face's `Prepend("▁")` normalizer does per fragment; decoding drops the first space
    /// of the text again (HF's `Strip` decoder).
    fn from_gguf_sentencepiece(file: &GgufFile) -> Result<Self, ModelError> {
        let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
        let scores = file.get_f32_array("tokenizer.ggml.scores")?;
        let types = file.get_i32_array("tokenizer.ggml.token_type")?;
        if scores.len() != tokens.len() || types.len() != tokens.len() {
            return Err(ModelError::Tokenizer(format!(
                "{} tokens but {} scores and {} token types",
                tokens.len(),
                scores.len(),
                types.len()
            )));
        }
        let space_prefix =
            GgufFile::optional(file.get_bool("tokenizer.ggml.add_space_prefix"))?.unwrap_or(true);
        let vocab = gguf_vocab(&tokens)?;
        // Every split of a mergeable piece into two vocabulary pieces is a merge, ranked by
        // the piece's score (highest first; ties by piece, then left, then right id).
        let index = PieceIndex::new(&tokens);
        let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
        for (id, piece) in tokens.iter().enumerate() {
            if matches!(types[id], TOKEN_TYPE_CONTROL | TOKEN_TYPE_BYTE) {
                continue;
            }
            for (l, r) in index.cuts(piece) {
                merges.push((scores[id], id, l, r));
            }
        }
        if let Some(bad) = merges.iter().find(|m| !m.0.is_finite()) {
            return Err(ModelError::Tokenizer(format!(
                "token {} has a non-finite score {}",
                bad.1, bad.0
            )));
        }
        // llama.cpp breaks a tie between two mergeable pieces by position, BPE ranks by
        // piece id: they agree only when normal pieces' scores are distinct (user-defined
        // pieces are cut out of the text before merging, so their ties never matter).
        let mut by_score: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for &(score, id, _, _) in &merges {
            if types[id] != TOKEN_TYPE_NORMAL {
                continue;
            }
            if let Some(&other) = by_score.get(&score.to_bits()).filter(|&&o| o != id) {
                return Err(ModelError::Tokenizer(format!(
                    "SentencePiece pieces {other} and {id} share the score {score}; their merge \
                     order would depend on the tokenizer implementation"
                )));
            }
            by_score.insert(score.to_bits(), id);
        }
        merges.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        // Built directly rather than through tokenizer.json: the vocabulary (262k pieces
        // for Gemma) and its merges (515k) would otherwise be written and parsed as JSON.
        let merges: tokenizers::models::bpe::Merges = merges
            .iter()
            .map(|&(_, _, l, r)| (tokens[l].to_string(), tokens[r].to_string()))
            .collect();
        let unk = match GgufFile::optional(file.get_u32("tokenizer.ggml.unknown_token_id"))? {
            Some(id) => Some(*tokens.get(id as usize).ok_or_else(|| {
                ModelError::Tokenizer(format!(
                    "tokenizer.ggml.unknown_token_id {id} is outside the {} tokens",
                    tokens.len()
                ))
            })?),
            None => None,
        };
        let mut bpe = tokenizers::models::bpe::BPE::builder()
            .vocab_and_merges(vocab, merges)
            .fuse_unk(true)
            .byte_fallback(true);
        if let Some(unk) = unk {
            bpe = bpe.unk_token(unk.to_string());
        }
        let bpe = bpe.build().map_err(tok_err)?;
        use tokenizers::{decoders, normalizers, DecoderWrapper, NormalizerWrapper};
        let escape_spaces = normalizers::Replace::new(" ", SPM_SPACE).map_err(tok_err)?;
        let normalizer: NormalizerWrapper = if space_prefix {
            normalizers::Sequence::new(vec![
                normalizers::Prepend::new(SPM_SPACE.to_string()).into(),
                escape_spaces.into(),
            ])
            .into()
        } else {
            escape_spaces.into()
        };
        let mut steps: Vec<DecoderWrapper> = vec![
            normalizers::Replace::new(SPM_SPACE, " ")
                .map_err(tok_err)?
                .into(),
            decoders::byte_fallback::ByteFallback::default().into(),
            decoders::fuse::Fuse::default().into(),
        ];
        if space_prefix {
            steps.push(decoders::strip::Strip::new(' ', 1, 0).into());
        }
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_normalizer(Some(normalizer)).map_err(tok_err)?;
        inner.with_decoder(Some(decoders::sequence::Sequence::new(steps)));
        inner
            .add_tokens(added_tokens(&tokens, &types))
            .map_err(tok_err)?;
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

    /// Size of the base vocabulary, without the tokens added on top of it (a multimodal
    /// tokenizer may add e.g. an image token past the text model's embedding rows).
    pub fn base_vocab_size(&self) -> usize {
        self.inner.get_vocab_size(false)
    }
}

/// Checks BPE merges before `tokenizers` builds a model from them: each merge's two parts
/// and its result (the second part after the `prefix` of continuing subwords) must be
/// vocabulary tokens. `tokenizers` checks that only after copying the parts into a buffer
/// as long as the longest token, and panics (or, past a non-boundary prefix, builds invalid
/// UTF-8) when a merge makes a longer one.
fn check_merges<'a>(
    merges: impl Iterator<Item = (&'a str, &'a str)>,
    in_vocab: impl Fn(&str) -> bool,
    prefix: &str,
) -> Result<(), ModelError> {
    for (i, (a, b)) in merges.enumerate() {
        let merged = b.strip_prefix(prefix).map(|rest| format!("{a}{rest}"));
        let fine = in_vocab(a) && in_vocab(b) && merged.as_deref().is_some_and(&in_vocab);
        if !fine {
            return Err(ModelError::Tokenizer(format!(
                "BPE merge {i} ({a:?} {b:?}) does not join two vocabulary tokens into a third"
            )));
        }
    }
    Ok(())
}

/// [`check_merges`] on a `tokenizer.json` model that has merges (as `"a b"` strings or
/// `[a, b]` pairs) and a token-to-id vocabulary; other shapes are left to `tokenizers`.
fn check_json_merges(model: &Value) -> Result<(), ModelError> {
    let (Some(merges), Some(vocab)) = (
        model.get("merges").and_then(Value::as_array),
        model.get("vocab").and_then(Value::as_object),
    ) else {
        return Ok(());
    };
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .unwrap_or("");
    let pairs = merges.iter().filter_map(|m| match m {
        Value::String(m) => m.split_once(' '),
        Value::Array(pair) => match pair.as_slice() {
            [Value::String(a), Value::String(b)] => Some((a.as_str(), b.as_str())),
            _ => None,
        },
        _ => None,
    });
    check_merges(pairs, |t| vocab.contains_key(t), prefix)
}

/// `{token: id}` of a GGUF vocabulary, built directly (as a JSON document to parse, a
/// 49k-entry vocabulary took ~25 MB of transient heap that the allocator kept); an error
/// if a token appears twice.
fn gguf_vocab(tokens: &[&str]) -> Result<tokenizers::models::bpe::Vocab, ModelError> {
    let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        if vocab.insert(token.to_string(), id as u32).is_some() {
            return Err(ModelError::Tokenizer(
                "tokenizer.ggml.tokens holds duplicate tokens".into(),
            ));
        }
    }
    Ok(vocab)
}

/// Control and user-defined tokens as `tokenizers` added tokens (control ones special):
/// matched as whole strings in the raw text before anything else, as llama.cpp does.
fn added_tokens(tokens: &[&str], types: &[i32]) -> Vec<tokenizers::AddedToken> {
    types
        .iter()
        .zip(tokens)
        .filter(|(&t, _)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
        .map(|(&t, content)| {
            tokenizers::AddedToken::from(content.to_string(), t == TOKEN_TYPE_CONTROL)
                .normalized(false)
        })
        .collect()
}

/// The Mersenne prime 2^61 - 1, the modulus of [`PieceIndex`]'s hashes.
const MERSENNE_61: u64 = (1 << 61) - 1;

fn mul_mod_61(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    let folded = (product as u64 & MERSENNE_61) + (product >> 61) as u64;
    if folded >= MERSENNE_61 {
        folded - MERSENNE_61
    } else {
        folded
    }
}

fn add_mod_61(a: u64, b: u64) -> u64 {
    let sum = a + b;
    if sum >= MERSENNE_61 {
        sum - MERSENNE_61
    } else {
        sum
    }
}

/// Vocabulary pieces by polynomial hash (modulo 2^61 - 1, with a base drawn per process),
/// to find every cut of a piece into two vocabulary pieces in one pass over its bytes:
/// the hash of every prefix and suffix comes from the prefix hashes, and only hash hits
/// are compared as strings. Hashing each prefix and suffix on its own made a piece of
/// length L cost L^2 (a hostile 300k-character piece took 20 s).
struct PieceIndex<'a> {
    tokens: &'a [&'a str],
    base: u64,
    by_hash: std::collections::HashMap<u64, Vec<usize>>,
}

impl<'a> PieceIndex<'a> {
    fn new(tokens: &'a [&'a str]) -> Self {
        use std::hash::BuildHasher;
        // A base an input cannot anticipate, so colliding pieces cannot be prepared.
        let random = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        let base = 256 + random % (MERSENNE_61 - 512);
        let mut by_hash: std::collections::HashMap<u64, Vec<usize>> =
            std::collections::HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            let hash = *Self::prefix_hashes(token.as_bytes(), base)
                .last()
                .expect("at least the empty prefix");
            by_hash.entry(hash).or_default().push(id);
        }
        Self {
            tokens,
            base,
            by_hash,
        }
    }

    /// `h[i]` is the hash of `bytes[..i]`, for `i` in `0..=len`.
    fn prefix_hashes(bytes: &[u8], base: u64) -> Vec<u64> {
        let mut hashes = Vec::with_capacity(bytes.len() + 1);
        let mut h = 0;
        hashes.push(h);
        for &b in bytes {
            h = add_mod_61(mul_mod_61(h, base), u64::from(b) + 1);
            hashes.push(h);
        }
        hashes
    }

    /// The id of piece `text`, whose hash is `hash`.
    fn find(&self, hash: u64, text: &str) -> Option<usize> {
        self.by_hash
            .get(&hash)?
            .iter()
            .copied()
            .find(|&id| self.tokens[id] == text)
    }

    /// Every `(left, right)` pair of piece ids whose concatenation is `piece`, cut at a
    /// character boundary, in cut order.
    fn cuts(&self, piece: &str) -> Vec<(usize, usize)> {
        let bytes = piece.as_bytes();
        let prefix = Self::prefix_hashes(bytes, self.base);
        // base^k for the suffix hashes: h(s[c..]) = h(s) - h(s[..c]) * base^(len - c).
        let mut powers = Vec::with_capacity(bytes.len() + 1);
        let mut p = 1;
        for _ in 0..=bytes.len() {
            powers.push(p);
            p = mul_mod_61(p, self.base);
        }
        let whole = prefix[bytes.len()];
        let mut cuts = Vec::new();
        for (cut, _) in piece.char_indices().skip(1) {
            let shifted = mul_mod_61(prefix[cut], powers[bytes.len() - cut]);
            let suffix = add_mod_61(whole, MERSENNE_61 - shifted);
            if let Some(left) = self.find(prefix[cut], &piece[..cut]) {
                if let Some(right) = self.find(suffix, &piece[cut..]) {
                    cuts.push((left, right));
                }
            }
        }
        cuts
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

#[cfg(test)]
mod byte_level_metadata_tests {
    use super::*;
    use crate::gguf::GgufWriter;
    use crate::testing::tiny_vocab;

    /// Token types and the pre-tokenizer name may be absent, but a key of the wrong type
    /// or a token-type list of another length is refused, not skipped (skipping would
    /// leave the control tokens unregistered and split them into ordinary pieces).
    #[test]
    fn malformed_byte_level_metadata_is_refused() {
        let (tokens, types, merges) = tiny_vocab();
        let build = |edit: &dyn Fn(&mut GgufWriter)| {
            let mut w = GgufWriter::new();
            w.add_string("tokenizer.ggml.model", "gpt2")
                .add_str_array("tokenizer.ggml.tokens", &tokens)
                .add_str_array("tokenizer.ggml.merges", &merges);
            edit(&mut w);
            TextTokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap())
        };
        assert!(build(&|_| {}).is_ok());
        assert!(build(&|w| {
            w.add_i32_array("tokenizer.ggml.token_type", &types);
        })
        .is_ok());
        let floats: Vec<f32> = types.iter().map(|&t| t as f32).collect();
        assert!(build(&|w| {
            w.add_f32_array("tokenizer.ggml.token_type", &floats);
        })
        .is_err());
        assert!(build(&|w| {
            w.add_i32_array("tokenizer.ggml.token_type", &types[1..]);
        })
        .is_err());
        assert!(build(&|w| {
            w.add_u32("tokenizer.ggml.pre", 3);
        })
        .is_err());
    }
}

#[cfg(test)]
mod sentencepiece_tests {
    use super::*;
    use crate::gguf::GgufWriter;

    /// A tiny SentencePiece vocabulary: specials, the 256 byte tokens, single characters,
    /// the pieces `ab` and `bc` with the given scores, `▁a`, and `\n` as user-defined.
    fn spm(
        ab: f32,
        bc: f32,
        space_prefix: bool,
    ) -> Result<(TextTokenizer, Vec<String>), ModelError> {
        spm_with_unknown(ab, bc, space_prefix, 3)
    }

    /// [`spm`] with `tokenizer.ggml.unknown_token_id` set to `unk` (3 is `<unk>`).
    fn spm_with_unknown(
        ab: f32,
        bc: f32,
        space_prefix: bool,
        unk: u32,
    ) -> Result<(TextTokenizer, Vec<String>), ModelError> {
        let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>"]
            .map(String::from)
            .into();
        let mut types = vec![3, 3, 3, 2];
        let mut scores = vec![0.0f32; 4];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(TOKEN_TYPE_BYTE);
            scores.push(0.0);
        }
        for (piece, score) in [
            ("\u{2581}", -1.0),
            ("a", -2.0),
            ("b", -3.0),
            ("c", -4.0),
            ("ab", ab),
            ("bc", bc),
            ("\u{2581}a", -5.0),
        ] {
            tokens.push(piece.into());
            types.push(TOKEN_TYPE_NORMAL);
            scores.push(score);
        }
        tokens.push("\n".into());
        types.push(TOKEN_TYPE_USER_DEFINED);
        scores.push(-1000.0);
        let mut w = GgufWriter::new();
        w.add_string("tokenizer.ggml.model", "llama")
            .add_str_array("tokenizer.ggml.tokens", &tokens)
            .add_f32_array("tokenizer.ggml.scores", &scores)
            .add_i32_array("tokenizer.ggml.token_type", &types)
            .add_u32("tokenizer.ggml.unknown_token_id", unk)
            .add_bool("tokenizer.ggml.add_space_prefix", space_prefix);
        let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        Ok((TextTokenizer::from_gguf(&file)?, tokens))
    }

    fn pieces(tok: &TextTokenizer, tokens: &[String], text: &str) -> Vec<String> {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
        ids.iter().map(|&i| tokens[i as usize].clone()).collect()
    }

    /// The adjacent pair whose merge has the highest score goes first, as in llama.cpp.
    #[test]
    fn the_highest_scoring_merge_wins() {
        let (tok, tokens) = spm(-0.5, -0.7, false).unwrap();
        assert_eq!(pieces(&tok, &tokens, "abc"), ["ab", "c"]);
        let (tok, tokens) = spm(-0.7, -0.5, false).unwrap();
        assert_eq!(pieces(&tok, &tokens, "abc"), ["a", "bc"]);
    }

    /// Spaces become `▁` (no prefix is added), unknown characters their UTF-8 bytes, and
    /// user-defined tokens are cut out of the raw text first.
    #[test]
    fn spaces_bytes_and_user_defined_tokens() {
        let (tok, tokens) = spm(-0.5, -0.7, false).unwrap();
        assert_eq!(pieces(&tok, &tokens, "a a"), ["a", "\u{2581}a"]);
        assert_eq!(pieces(&tok, &tokens, "\u{e9}"), ["<0xC3>", "<0xA9>"]);
        assert_eq!(pieces(&tok, &tokens, "ab\nc"), ["ab", "\n", "c"]);
    }

    /// An unknown-token id past the vocabulary is a typed error, not a panic or a
    /// tokenizer without an unknown token.
    #[test]
    fn an_unknown_token_id_outside_the_vocabulary_is_refused() {
        let (_, tokens) = spm(-0.5, -0.7, false).unwrap();
        let past = tokens.len() as u32;
        assert!(spm_with_unknown(-0.5, -0.7, false, past - 1).is_ok());
        assert!(matches!(
            spm_with_unknown(-0.5, -0.7, false, past),
            Err(ModelError::Tokenizer(m)) if m.contains("unknown_token_id") && m.contains("outside")
        ));
    }

    #[test]
    fn tied_scores_are_refused() {
        assert!(matches!(
            spm(-0.5, -0.5, false),
            Err(ModelError::Tokenizer(m)) if m.contains("share the score")
        ));
    }

    /// With `add_space_prefix`, the text and every fragment after a user-defined or control
    /// token start with one `▁`; decoding drops only the text's first space.
    #[test]
    fn a_space_prefix_goes_before_every_raw_fragment() {
        let (tok, tokens) = spm(-0.5, -0.7, true).unwrap();
        assert_eq!(pieces(&tok, &tokens, "a a"), ["\u{2581}a", "\u{2581}a"]);
        assert_eq!(pieces(&tok, &tokens, "abc"), ["\u{2581}", "ab", "c"]);
        let ids = tok.encode("a\na").unwrap();
        let got: Vec<&str> = ids.iter().map(|&i| tokens[i as usize].as_str()).collect();
        assert_eq!(got, ["\u{2581}a", "\n", "\u{2581}a"]);
        assert_eq!(tok.decode(&ids).unwrap(), "a\n a");
        assert!(tok.encode("").unwrap().is_empty());
    }

    /// Every cut of a piece into two vocabulary pieces is found, as the direct search over
    /// every prefix and suffix finds them, multi-byte characters included.
    #[test]
    fn piece_cuts_equal_the_direct_search() {
        let tokens = [
            "a",
            "b",
            "ab",
            "ba",
            "aba",
            "bab",
            "\u{2581}",
            "\u{2581}a",
            "é",
            "aé",
            "éa",
            "aéa",
        ];
        let index = PieceIndex::new(&tokens);
        let ids: std::collections::HashMap<&str, usize> =
            tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        for piece in tokens.iter().chain(&["abab", "xab", "\u{2581}aba"]) {
            let direct: Vec<(usize, usize)> = piece
                .char_indices()
                .skip(1)
                .filter_map(|(cut, _)| Some((*ids.get(&piece[..cut])?, *ids.get(&piece[cut..])?)))
                .collect();
            assert_eq!(index.cuts(piece), direct, "{piece:?}");
        }
    }

    /// A million-character piece costs one pass over its bytes (it used to take minutes).
    #[test]
    fn a_very_long_piece_is_indexed_in_linear_time() {
        let long = "ab".repeat(500_000);
        let tokens = ["a", "b", "ab", long.as_str()];
        let index = PieceIndex::new(&tokens);
        assert!(index.cuts(&long).is_empty());
        assert_eq!(index.cuts("ab"), [(0, 1)]);
    }
}
