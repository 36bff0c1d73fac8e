//! [`Checkpoint`]: a GGUF file or a Hugging Face directory opened (configuration, tokenizer,
//! special tokens, chat template, memory-mapped weights) before anything reaches a backend.

use super::LlamaLm;
use crate::config::hf_text_config;
use crate::gguf::GgufFile;
use crate::linear::WeightMode;
use crate::llama::LlamaModel;
use crate::tokenizer::TextTokenizer;
use crate::weights::{
    GgufWeights, LanguageModelOf, SafetensorsWeights, UnitOffsetNorms, WeightSource,
};
use crate::{LlamaConfig, ModelError};
use burn::prelude::*;
use std::path::Path;

/// An opened checkpoint: configuration, tokenizer, special tokens and a handle on the
/// weights (memory-mapped; nothing is copied to the backend yet).
pub struct Checkpoint {
    /// Hyper-parameters.
    pub config: LlamaConfig,
    /// The tokenizer shipped with the checkpoint.
    pub tokenizer: TextTokenizer,
    /// End-of-sequence ids named by the checkpoint.
    pub stop_tokens: Vec<u32>,
    /// Beginning-of-sequence id, if any.
    pub bos_token: Option<u32>,
    /// Every sequence starts with `bos_token` (GGUF `tokenizer.ggml.add_bos_token`; by
    /// default on for SentencePiece vocabularies, as in llama.cpp; Hugging Face
    /// `tokenizer_config.json` `add_bos_token`, by default on for Gemma only). Scoring puts
    /// BOS first only for Gemma, as lm-evaluation-harness does.
    pub add_bos: bool,
    /// The chat template (Jinja, Hugging Face conventions), if the checkpoint has one:
    /// GGUF `tokenizer.chat_template`, or `chat_template` in `tokenizer_config.json`.
    pub chat_template: Option<String>,
    /// The weights, by Hugging Face name.
    pub weights: Box<dyn WeightSource>,
    /// How block-quantised GGUF matrices are held once loaded (default:
    /// [`WeightMode::Dequantized`], exact scoring; see [`Self::with_weight_mode`]).
    pub weight_mode: WeightMode,
}

impl Checkpoint {
    /// Opens a `.gguf` file or a Hugging Face directory.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        if path.is_dir() {
            Self::open_hf_dir(path)
        } else {
            Self::open_gguf(path)
        }
    }

    /// Opens a GGUF file (tokenizer rebuilt from its metadata).
    pub fn open_gguf(path: &Path) -> Result<Self, ModelError> {
        Self::from_gguf_file(GgufFile::open(path)?)
    }

    /// A checkpoint from an already opened GGUF file (e.g. one read from memory with
    /// [`GgufFile::from_bytes`]): configuration, tokenizer and special tokens from its
    /// metadata, weights read from it on demand.
    pub fn from_gguf_file(file: GgufFile) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_gguf(&file)?;
        let tokenizer = TextTokenizer::from_gguf(&file)?;
        check_tokenizer_fits(&tokenizer, &config)?;
        let special = |key: &str| {
            GgufFile::optional(file.get_u32(key))?
                .map(|id| special_token(key, u64::from(id), config.vocab_size))
                .transpose()
        };
        // End of sequence, and the end-of-turn / end-of-message tokens llama.cpp also stops
        // at (named by the GGUF, or Gemma's `<end_of_turn>` found in the vocabulary).
        let mut stop_tokens: Vec<u32> = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(id) = special(key)? {
                if !stop_tokens.contains(&id) {
                    stop_tokens.push(id);
                }
            }
        }
        add_end_of_turn(&tokenizer, &mut stop_tokens);
        let bos_token = special("tokenizer.ggml.bos_token_id")?;
        let sentencepiece = file.get_str("tokenizer.ggml.model")? == "llama";
        let add_bos = GgufFile::optional(file.get_bool("tokenizer.ggml.add_bos_token"))?
            .unwrap_or(sentencepiece);
        if add_bos && bos_token.is_none() {
            return Err(ModelError::Config(
                "tokenizer.ggml.add_bos_token is set but there is no bos_token_id".into(),
            ));
        }
        let chat_template =
            GgufFile::optional(file.get_str("tokenizer.chat_template"))?.map(str::to_string);
        let weights = Box::new(GgufWeights::new(file, &config));
        Ok(Self {
            config,
            tokenizer,
            stop_tokens,
            bos_token,
            add_bos,
            chat_template,
            weights,
            weight_mode: WeightMode::default(),
        })
    }

    /// Opens a Hugging Face checkpoint directory.
    pub fn open_hf_dir(dir: &Path) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| ModelError::Io {
            path: config_path.clone(),
            source,
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        let text_config = hf_text_config(&value)?;
        let config = LlamaConfig::from_hf_text_config(&text_config)?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        check_tokenizer_fits(&tokenizer, &config)?;
        // A special-token id from the top level, else from the text model's configuration
        // (a multimodal Gemma 3 keeps `bos_token_id` there, or leaves it to the default).
        let lookup = |key: &str| {
            [&value, &text_config]
                .into_iter()
                .filter_map(|v| v.get(key))
                .find(|v| !v.is_null())
        };
        let vocab = config.vocab_size;
        let id = |key: &str, v: &serde_json::Value| match v.as_u64() {
            Some(n) => special_token(key, n, vocab),
            None => Err(ModelError::Config(format!(
                "config.json {key}: {v} is not a token id"
            ))),
        };
        let mut stop_tokens = Vec::new();
        match lookup("eos_token_id") {
            None => {}
            Some(serde_json::Value::Array(a)) => {
                for v in a {
                    stop_tokens.push(id("eos_token_id", v)?);
                }
            }
            Some(v) => stop_tokens.push(id("eos_token_id", v)?),
        }
        let bos_token = match lookup("bos_token_id") {
            None => None,
            Some(v) => Some(id("bos_token_id", v)?),
        };
        let gemma = config.architecture == "gemma3";
        if gemma {
            add_end_of_turn(&tokenizer, &mut stop_tokens);
        }
        let tokenizer_config = read_hf_tokenizer_config(dir)?;
        // Gemma's tokenizer puts BOS first by default; other families only when their
        // tokenizer_config.json says so.
        let add_bos = tokenizer_config.add_bos_token.unwrap_or(gemma);
        if add_bos && bos_token.is_none() {
            return Err(ModelError::Config(
                "the tokenizer adds BOS (add_bos_token) but config.json has no bos_token_id".into(),
            ));
        }
        let safetensors = SafetensorsWeights::open_dir(dir)?;
        let weights: Box<dyn WeightSource> = match LanguageModelOf::detect(safetensors) {
            // A multimodal checkpoint (only Gemma 3's is supported by the config).
            Ok(language_model) if gemma => Box::new(UnitOffsetNorms::new(language_model)),
            Ok(_) => {
                return Err(ModelError::Config(format!(
                    "{}: the weights are a multimodal checkpoint's language model, but \
                     config.json describes a text-only {} model",
                    dir.display(),
                    config.architecture
                )))
            }
            Err(text_only) if gemma => Box::new(UnitOffsetNorms::new(text_only)),
            Err(text_only) => Box::new(text_only),
        };
        Ok(Self {
            config,
            tokenizer,
            stop_tokens,
            bos_token,
            add_bos,
            chat_template: tokenizer_config.chat_template,
            weights,
            weight_mode: WeightMode::default(),
        })
    }

    /// The same checkpoint, loaded with its block-quantised matrices held as `mode` says
    /// ([`WeightMode::Quantized`]: as stored, multiplied by the quantised CPU kernels).
    pub fn with_weight_mode(mut self, mode: WeightMode) -> Self {
        self.weight_mode = mode;
        self
    }

    /// Copies every weight to `device` (or, with [`WeightMode::Quantized`], keeps the
    /// quantised matrices as stored) and returns the ready model.
    pub fn into_lm<B: Backend>(self, device: &B::Device) -> Result<LlamaLm<B>, ModelError> {
        let model = LlamaModel::from_weights_with(
            &self.config,
            self.weights.as_ref(),
            device,
            self.weight_mode,
        )?;
        let lm = LlamaLm::assemble(
            model,
            &self.config,
            self.weights.as_ref(),
            self.tokenizer,
            self.stop_tokens,
        );
        let lm = lm
            .with_bos_token(self.bos_token)?
            .with_add_bos(self.add_bos)?
            .with_chat_template(self.chat_template)?;
        if lm.bos_token.is_none() && lm.stop_tokens.is_empty() {
            // Scoring an empty context and the perplexity calibrations start from the
            // BOS (else EOS) token, as lm-evaluation-harness does; guessing an id instead
            // would change every such score silently.
            return Err(ModelError::Config(
                "the checkpoint names neither a BOS nor an EOS token (bos_token_id / \
                 eos_token_id, or tokenizer.ggml.bos_token_id / eos_token_id)"
                    .into(),
            ));
        }
        Ok(lm)
    }
}

/// Adds Gemma's `<end_of_turn>` to `stop_tokens` when the vocabulary has it (llama.cpp
/// stops there too).
fn add_end_of_turn(tokenizer: &TextTokenizer, stop_tokens: &mut Vec<u32>) {
    if let Some(id) = tokenizer.token_to_id("<end_of_turn>") {
        if !stop_tokens.contains(&id) {
            stop_tokens.push(id);
        }
    }
}

/// What pudding reads from a Hugging Face directory's `tokenizer_config.json` (both `None`
/// when the file is absent).
#[derive(Default)]
struct HfTokenizerConfig {
    /// `chat_template`, when it is a single template string (a list of named templates is
    /// not supported and is an error).
    chat_template: Option<String>,
    /// `add_bos_token`: whether encoding a text puts BOS first.
    add_bos_token: Option<bool>,
}

fn read_hf_tokenizer_config(dir: &Path) -> Result<HfTokenizerConfig, ModelError> {
    let path = dir.join("tokenizer_config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(HfTokenizerConfig::default())
        }
        Err(source) => return Err(ModelError::Io { path, source }),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
    let chat_template = match value.get("chat_template") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(t)) => Some(t.clone()),
        Some(other) => {
            return Err(ModelError::Config(format!(
                "{}: chat_template is not a string ({}); named template lists are not supported",
                path.display(),
                match other {
                    serde_json::Value::Array(_) => "a list",
                    _ => "another type",
                }
            )))
        }
    };
    let add_bos_token = match value.get("add_bos_token") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(ModelError::Config(format!(
                "{}: add_bos_token is {other}, not true or false",
                path.display()
            )))
        }
    };
    Ok(HfTokenizerConfig {
        chat_template,
        add_bos_token,
    })
}

/// Refuses a tokenizer whose base vocabulary is larger than the model's embedding table: it
/// belongs to another model, and its ids past the table would only fail mid-run.
fn check_tokenizer_fits(tokenizer: &TextTokenizer, config: &LlamaConfig) -> Result<(), ModelError> {
    let tokens = tokenizer.base_vocab_size();
    if tokens > config.vocab_size {
        return Err(ModelError::Config(format!(
            "the tokenizer has {tokens} tokens but the model embeds only {}: the tokenizer \
             and the weights belong to different models",
            config.vocab_size
        )));
    }
    Ok(())
}

/// A special token id read from a checkpoint's metadata (`key`), checked to be a
/// vocabulary entry.
fn special_token(key: &str, id: u64, vocab_size: usize) -> Result<u32, ModelError> {
    match u32::try_from(id) {
        Ok(id) if (id as usize) < vocab_size => Ok(id),
        _ => Err(ModelError::Config(format!(
            "{key} = {id} is not an id of the {vocab_size}-token vocabulary"
        ))),
    }
}
