//! [`LlamaLm`]: a loaded model with its tokenizer, implementing
//! [`pudding_core::SkippableLm`] (scoring and KV-cached generation under an omission set).

use crate::cache::KvCache;
use crate::config::hf_text_config;
use crate::gguf::GgufFile;
use crate::linear::{on_worker, WeightMode};
use crate::llama::LlamaModel;
use crate::sampling::Sampler;
use crate::tokenizer::TextTokenizer;
use crate::weights::{
    GgufWeights, LanguageModelOf, SafetensorsWeights, UnitOffsetNorms, WeightSource,
};
use crate::{LlamaConfig, ModelError};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use pudding_core::{
    ContinuationScore, FinishReason, Generation, GenerationConfig, ModelFingerprint, OmissionSet,
    SkippableLm,
};
use std::path::Path;
use std::time::Instant;

/// The most logits (`positions * vocab`) one head pass of [`SkippableLm::token_logprobs`]
/// computes at once: 32M, 128 MB in f32.
const LOGITS_CHUNK_ELEMENTS: usize = 1 << 25;

/// A Llama-family model ready to score and generate, with its tokenizer and fingerprint.
#[derive(Clone, Debug)]
pub struct LlamaLm<B: Backend> {
    model: LlamaModel<B>,
    tokenizer: TextTokenizer,
    fingerprint: ModelFingerprint,
    stop_tokens: Vec<u32>,
    bos_token: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    decode_path: DecodePath,
}

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

/// Reads a tensor's values as `f32` on the host (any backend float type), with a typed
/// error if the backend cannot read it back: all `dims.product()` values, row-major.
pub fn host_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ModelError> {
    let data = t
        .try_into_data()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    data.convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))
}

/// Reads an integer tensor's values as `i64` on the host.
pub(crate) fn host_ints<B: Backend, const D: usize>(
    t: Tensor<B, D, Int>,
) -> Result<Vec<i64>, ModelError> {
    let data = t
        .try_into_data()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    data.convert::<i64>()
        .to_vec::<i64>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))
}

impl<B: Backend> LlamaLm<B> {
    /// Loads a model from a `.gguf` file or from a Hugging Face directory (config.json,
    /// `*.safetensors` (+ index), tokenizer.json).
    ///
    /// GGUF matrices are dequantised ([`WeightMode::Dequantized`]); [`Self::load_with`]
    /// keeps them as stored.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        Checkpoint::open(path)?.into_lm(device)
    }

    /// [`Self::load`] with the block-quantised GGUF matrices held as `mode` says.
    pub fn load_with(
        path: &Path,
        device: &B::Device,
        mode: WeightMode,
    ) -> Result<Self, ModelError> {
        Checkpoint::open(path)?
            .with_weight_mode(mode)
            .into_lm(device)
    }

    /// Loads a GGUF file (weights dequantised to the backend's float type, tokenizer from
    /// the metadata).
    pub fn load_gguf(path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        Checkpoint::open_gguf(path)?.into_lm(device)
    }

    /// Loads a Hugging Face checkpoint directory.
    pub fn load_hf_dir(dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        Checkpoint::open_hf_dir(dir)?.into_lm(device)
    }

    /// Assembles a model from a configuration, a weight source and a tokenizer.
    pub fn from_parts(
        config: &LlamaConfig,
        weights: &dyn WeightSource,
        tokenizer: TextTokenizer,
        stop_tokens: Vec<u32>,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let model = LlamaModel::from_weights(config, weights, device)?;
        Ok(Self::assemble(
            model,
            config,
            weights,
            tokenizer,
            stop_tokens,
        ))
    }

    /// Wraps a model built from `weights` with its tokenizer, fingerprint and stop tokens.
    pub(crate) fn assemble(
        model: LlamaModel<B>,
        config: &LlamaConfig,
        weights: &dyn WeightSource,
        tokenizer: TextTokenizer,
        mut stop_tokens: Vec<u32>,
    ) -> Self {
        let fingerprint = weights.fingerprint(config);
        // Chat models end a turn with these even when the file names another EOS.
        for end in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_to_id(end) {
                if !stop_tokens.contains(&id) {
                    stop_tokens.push(id);
                }
            }
        }
        Self::new(model, tokenizer, fingerprint, stop_tokens)
    }

    /// Mutable access to the model (crate-internal: residency changes).
    pub(crate) fn model_mut(&mut self) -> &mut LlamaModel<B> {
        &mut self.model
    }

    /// Wraps an already-built model.
    pub fn new(
        model: LlamaModel<B>,
        tokenizer: TextTokenizer,
        fingerprint: ModelFingerprint,
        stop_tokens: Vec<u32>,
    ) -> Self {
        Self {
            model,
            tokenizer,
            fingerprint,
            stop_tokens,
            bos_token: None,
            add_bos: false,
            chat_template: None,
            decode_path: DecodePath::Auto,
        }
    }

    /// Sets how generation's decode steps run ([`DecodePath::Auto`] unless set).
    pub fn with_decode_path(mut self, path: DecodePath) -> Self {
        self.decode_path = path;
        self
    }

    /// How generation's decode steps run.
    pub fn decode_path(&self) -> DecodePath {
        self.decode_path
    }

    /// Sets the chat template used by [`Self::chat_prompt`]; an error if it is not valid
    /// Jinja.
    pub fn with_chat_template(mut self, template: Option<String>) -> Result<Self, ModelError> {
        if let Some(t) = &template {
            crate::chat::check_template(t)?;
        }
        self.chat_template = template;
        Ok(self)
    }

    /// The chat template, if the checkpoint has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Sets the beginning-of-sequence token (used as the prefix of empty contexts); an
    /// error if it is not an id of the model's vocabulary.
    pub fn with_bos_token(mut self, bos: Option<u32>) -> Result<Self, ModelError> {
        if let Some(id) = bos {
            self.model.check_ids(&[id])?;
        } else if self.add_bos {
            return Err(ModelError::Config(
                "prompts start with BOS (with_add_bos) but no BOS token was given".into(),
            ));
        }
        self.bos_token = bos;
        Ok(self)
    }

    /// Whether every sequence starts with the BOS token (see [`SkippableLm::adds_bos`]);
    /// an error when turned on without a BOS token.
    pub fn with_add_bos(mut self, add_bos: bool) -> Result<Self, ModelError> {
        if add_bos && self.bos_token.is_none() {
            return Err(ModelError::Config(
                "cannot start sequences with BOS: the model has no BOS token".into(),
            ));
        }
        self.add_bos = add_bos;
        Ok(self)
    }

    /// The decoder.
    pub fn model(&self) -> &LlamaModel<B> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Token ids that end a generation by default (EOS, end-of-turn).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    /// Wraps one user message for generation: the checkpoint's own chat template when it
    /// has one (rendered as Hugging Face does, with `add_generation_prompt`, so default
    /// system turns are included); otherwise the ChatML turn format
    /// (`<|im_start|>user ... <|im_end|>` then the assistant header) when the vocabulary
    /// has those tokens, else the text unchanged.
    pub fn chat_prompt(&self, user: &str) -> Result<String, ModelError> {
        if let Some(template) = &self.chat_template {
            let token = |id: Option<u32>| {
                id.and_then(|i| self.tokenizer.id_to_token(i))
                    .unwrap_or_default()
            };
            let eos = token(self.stop_tokens.first().copied());
            return crate::chat::render_user_turn(template, user, &token(self.bos_token), &eos);
        }
        Ok(if self.tokenizer.token_to_id("<|im_start|>").is_some() {
            format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
        } else {
            user.to_string()
        })
    }

    /// Checks ids are non-empty, in the vocabulary and fit the context.
    pub fn check_ids(&self, ids: &[u32]) -> Result<(), ModelError> {
        self.model.check_ids(ids)
    }

    fn tokens_tensor(&self, ids: &[u32]) -> Tensor<B, 2, Int> {
        let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Tensor::from_data(TensorData::new(data, [1, ids.len()]), &self.model.device())
    }

    /// Log-softmax over the vocabulary at every position: `ids` of length T ->
    /// `[T, v]` row-major (row `i` is the distribution of the token after `ids[..=i]`).
    pub fn position_log_probs(
        &self,
        ids: &[u32],
        skip: &OmissionSet,
    ) -> Result<Vec<f32>, ModelError> {
        self.check_ids(ids)?;
        let logits = self.model.forward(self.tokens_tensor(ids), skip, None)?;
        let logprobs = host_values(log_softmax(logits, 2))?;
        crate::sampling::check_finite("log-probabilities", &logprobs)?;
        Ok(logprobs)
    }
}

impl<B: Backend> LlamaLm<B> {
    /// [`SkippableLm::continuation_logprobs_sets`] with packs of at most `pack_tokens`
    /// continuation tokens: the context runs once per distinct block input
    /// ([`LlamaModel::forward_hidden_sets`]), then the continuations' input tokens (all but
    /// their last) run packed one after another in rows of at most `pack_tokens` (a longer
    /// continuation alone), with no padding, on top of each set's context state
    /// ([`LlamaModel::forward_segments_sets`]). Returns one score per continuation per
    /// set; the scores do not depend on `pack_tokens` beyond float rounding.
    pub fn continuation_logprobs_in_packs(
        &self,
        context: &[u32],
        continuations: &[Vec<u32>],
        sets: &[OmissionSet],
        pack_tokens: usize,
    ) -> Result<Vec<Vec<ContinuationScore>>, ModelError> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        self.check_ids(context)?;
        for cont in continuations {
            if cont.is_empty() {
                return Err(ModelError::Generation(
                    "a continuation to score must have at least one token".into(),
                ));
            }
            let mut all = context.to_vec();
            all.extend_from_slice(cont);
            self.check_ids(&all)?;
        }
        let device = self.model.device();
        let mut caches: Vec<KvCache<B>> = sets.iter().map(|s| KvCache::new(s.clone())).collect();
        let hidden =
            self.model
                .forward_hidden_sets(self.tokens_tensor(context), sets, Some(&mut caches))?;
        // Every continuation token but the last is an input, packed one continuation after
        // another; each predicts the token after it. Per set: those tokens' log-probs of
        // their targets and their argmax tokens, in continuation order.
        let n_rows = continuations.len();
        let mut rest_logprobs: Vec<Vec<f32>> = vec![Vec::new(); sets.len()];
        let mut rest_best: Vec<Vec<i64>> = vec![Vec::new(); sets.len()];
        let inputs_of = |c: &Vec<u32>| c.len() - 1;
        let lengths: Vec<usize> = continuations.iter().map(inputs_of).collect();
        for pack in pack_ranges(&lengths, pack_tokens) {
            let pack = &continuations[pack];
            let segments: Vec<usize> = pack.iter().map(inputs_of).filter(|&n| n > 0).collect();
            let inputs: Vec<i64> = pack
                .iter()
                .flat_map(|c| c[..c.len() - 1].iter().map(|&t| t as i64))
                .collect();
            let targets: Vec<i64> = pack
                .iter()
                .flat_map(|c| c[1..].iter().map(|&t| t as i64))
                .collect();
            let n = inputs.len();
            if n == 0 {
                continue;
            }
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(inputs, [1, n]), &device);
            let index =
                Tensor::<B, 3, Int>::from_data(TensorData::new(targets, [1, n, 1]), &device);
            let packed =
                self.model
                    .forward_segments_sets(tokens, &segments, sets, caches.clone())?;
            for (set, hidden) in packed.into_iter().enumerate() {
                let logp = log_softmax(self.model.head(hidden), 2); // [1, n, v]
                rest_best[set].extend(host_ints(logp.clone().argmax(2))?);
                rest_logprobs[set].extend(host_values(logp.gather(2, index.clone()))?);
            }
        }
        let mut out = Vec::with_capacity(sets.len());
        for ((context_hidden, rest_logprobs), rest_best) in
            hidden.into_iter().zip(rest_logprobs).zip(rest_best)
        {
            let s = context_hidden.dims()[1];
            let last = self.model.head(context_hidden.narrow(1, s - 1, 1));
            let first = host_values(log_softmax(
                last.reshape([1, self.model.config().vocab_size]),
                1,
            ))?;
            let first_argmax = crate::sampling::argmax(&first);
            let mut start = 0;
            let mut scores = Vec::with_capacity(n_rows);
            for cont in continuations {
                let n = cont.len() - 1;
                let mut logprobs = vec![first[cont[0] as usize]];
                let mut is_greedy = first_argmax == cont[0];
                if n > 0 {
                    let span = start..start + n;
                    start += n;
                    logprobs.extend_from_slice(&rest_logprobs[span.clone()]);
                    is_greedy &= rest_best[span]
                        .iter()
                        .zip(&cont[1..])
                        .all(|(&b, &t)| b == t as i64);
                }
                scores.push(ContinuationScore {
                    logprobs,
                    is_greedy,
                });
            }
            out.push(scores);
        }
        Ok(out)
    }

    /// Greedy decoding without a KV cache: every step recomputes the whole sequence. Slow;
    /// the reference the cached path is tested against.
    pub fn greedy_uncached(
        &self,
        prompt_ids: &[u32],
        skip: &OmissionSet,
        max_new_tokens: usize,
    ) -> Result<Vec<u32>, ModelError> {
        let mut ids = prompt_ids.to_vec();
        for _ in 0..max_new_tokens {
            self.check_ids(&ids)?;
            let logits = self
                .model
                .forward_last(self.tokens_tensor(&ids), skip, None)?;
            ids.push(crate::sampling::argmax(&host_values(logits)?));
        }
        Ok(ids[prompt_ids.len()..].to_vec())
    }
}

/// The most continuation tokens [`SkippableLm::continuation_logprobs_sets`] runs packed in
/// one row. A pack's attention grows with the square of its length, so many long
/// continuations run as several packs (each after the same cached context); a
/// multiple-choice item's few short ones fit in one.
const PACK_TOKENS: usize = 512;

/// Splits items of `lengths` tokens, in order, into contiguous runs of at most `cap`
/// tokens each (an item longer than `cap` runs alone). Every index is in exactly one run.
fn pack_ranges(lengths: &[usize], cap: usize) -> Vec<std::ops::Range<usize>> {
    let mut packs = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, &len) in lengths.iter().enumerate() {
        if i > start && tokens + len > cap {
            packs.push(start..i);
            (start, tokens) = (i, 0);
        }
        tokens += len;
    }
    if start < lengths.len() {
        packs.push(start..lengths.len());
    }
    packs
}

impl<B: Backend> SkippableLm for LlamaLm<B> {
    type Error = ModelError;

    fn fingerprint(&self) -> &ModelFingerprint {
        &self.fingerprint
    }

    fn n_blocks(&self) -> usize {
        self.model.config().n_blocks
    }

    fn context_length(&self) -> usize {
        self.model.config().max_seq_len
    }

    fn prefix_token(&self) -> u32 {
        self.bos_token
            .or_else(|| self.stop_tokens.first().copied())
            .unwrap_or(0)
    }

    fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// lm-evaluation-harness's rule: BOS before every scored context for Gemma models only.
    fn scores_with_bos(&self) -> bool {
        self.add_bos && self.model.config().architecture.starts_with("gemma")
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tokenizer.encode(text)
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer.decode(ids)
    }

    fn token_logprobs(&self, ids: &[u32], skip: &OmissionSet) -> Result<Vec<f32>, ModelError> {
        self.check_ids(ids)?;
        let t = ids.len();
        if t == 1 {
            return Ok(Vec::new());
        }
        // The logits of a few positions at a time: a long prompt's `[t, vocab]` would not
        // fit in memory (Qwen2.5-Coder at 30,000 tokens: 18 GB).
        let hidden = self
            .model
            .forward_hidden(self.tokens_tensor(ids), skip, None)?; // [1, t, d]
        let rows = (LOGITS_CHUNK_ELEMENTS / self.model.config().vocab_size.max(1)).max(1);
        let mut logprobs = Vec::with_capacity(t - 1);
        for start in (0..t - 1).step_by(rows) {
            let n = rows.min(t - 1 - start);
            let logp = log_softmax(self.model.head(hidden.clone().narrow(1, start, n)), 2); // [1, n, v]
            let next: Vec<i64> = ids[start + 1..start + 1 + n]
                .iter()
                .map(|&i| i as i64)
                .collect();
            let index = Tensor::<B, 3, Int>::from_data(
                TensorData::new(next, [1, n, 1]),
                &self.model.device(),
            );
            logprobs.extend(host_values(logp.gather(2, index))?);
        }
        crate::sampling::check_finite("log-probabilities", &logprobs)?;
        Ok(logprobs)
    }

    fn continuation_logprobs(
        &self,
        context: &[u32],
        continuations: &[Vec<u32>],
        skip: &OmissionSet,
    ) -> Result<Vec<ContinuationScore>, ModelError> {
        let mut per_set =
            self.continuation_logprobs_sets(context, continuations, std::slice::from_ref(skip))?;
        per_set
            .pop()
            .ok_or_else(|| ModelError::Generation("no scores returned".into()))
    }

    /// The context runs once per distinct block input ([`LlamaModel::forward_hidden_sets`]),
    /// then the continuations run packed in rows of at most 512 tokens, with no padding, on
    /// top of each set's context state (see [`LlamaLm::continuation_logprobs_in_packs`]).
    fn continuation_logprobs_sets(
        &self,
        context: &[u32],
        continuations: &[Vec<u32>],
        sets: &[OmissionSet],
    ) -> Result<Vec<Vec<ContinuationScore>>, ModelError> {
        self.continuation_logprobs_in_packs(context, continuations, sets, PACK_TOKENS)
    }

    fn generate(
        &self,
        prompt_ids: &[u32],
        skip: &OmissionSet,
        config: &GenerationConfig,
    ) -> Result<Generation, ModelError> {
        let mut out =
            self.generate_batch(std::slice::from_ref(&prompt_ids.to_vec()), skip, config)?;
        out.pop()
            .ok_or_else(|| ModelError::Generation("no generation returned".into()))
    }

    /// One batch for all prompts (see [`generate_ids`]); every row gets the batch's
    /// prefill and decode times.
    fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        skip: &OmissionSet,
        config: &GenerationConfig,
    ) -> Result<Vec<Generation>, ModelError> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = generate_ids_with(
            &self.model,
            prompts,
            skip,
            config,
            self.prefix_token(),
            self.decode_path,
        )?;
        prompts
            .iter()
            .zip(batch.ids)
            .zip(batch.finish)
            .map(|((prompt, ids), finish)| {
                let text_ids: &[u32] = match (finish, ids.last()) {
                    (FinishReason::Stop, Some(_)) => &ids[..ids.len() - 1],
                    _ => &ids,
                };
                Ok(Generation {
                    prompt_ids: prompt.clone(),
                    text: self.tokenizer.decode(text_ids)?,
                    ids,
                    finish,
                    prefill_secs: batch.prefill_secs,
                    decode_secs: batch.decode_secs,
                })
            })
            .collect()
    }
}

/// Token ids generated for a batch of prompts, with timings.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchIds {
    /// Generated ids per prompt (a final stop token included).
    pub ids: Vec<Vec<u32>>,
    /// Why each row ended.
    pub finish: Vec<FinishReason>,
    /// Seconds of the batched prefill (first tokens chosen).
    pub prefill_secs: f64,
    /// Seconds of every decode step after it.
    pub decode_secs: f64,
}

/// KV-cached generation for a batch of prompts under one omission set, on token ids.
///
/// Prompts are left-padded with `filler` to the longest, the padding masked out and every
/// row run at its own positions; rows that finish ride along (fed `filler`, ignored) until
/// the last one stops. Each row samples with its own generator seeded from `config`, so a
/// row's tokens equal those of the prompt generated alone. One difference: the context
/// limit applies to the padded width.
pub fn generate_ids<B: Backend>(
    model: &LlamaModel<B>,
    prompts: &[Vec<u32>],
    skip: &OmissionSet,
    config: &GenerationConfig,
    filler: u32,
) -> Result<BatchIds, ModelError> {
    generate_ids_with(model, prompts, skip, config, filler, DecodePath::Auto)
}

/// How the decode steps after the prefill run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodePath {
    /// [`FusedDecoder`](crate::FusedDecoder) when it can serve the request (one prompt, every kept
    /// block's projections block-quantised, `f32` activations), else the tensor path.
    #[default]
    Auto,
    /// Always Burn tensor operations ([`LlamaModel::forward_last`] with the cache), e.g. to
    /// compare the two.
    Tensor,
}

impl DecodePath {
    /// The name used on the command line (`auto` / `tensor`).
    pub fn name(self) -> &'static str {
        match self {
            DecodePath::Auto => "auto",
            DecodePath::Tensor => "tensor",
        }
    }
}

/// [`generate_ids`] with a chosen decode path.
pub fn generate_ids_with<B: Backend>(
    model: &LlamaModel<B>,
    prompts: &[Vec<u32>],
    skip: &OmissionSet,
    config: &GenerationConfig,
    filler: u32,
    path: DecodePath,
) -> Result<BatchIds, ModelError> {
    if prompts.is_empty() {
        return Err(ModelError::Batch("no prompts to generate from".into()));
    }
    for p in prompts {
        model.check_ids(p)?;
    }
    model.check_ids(&[filler])?;
    skip.check_blocks(model.config().n_blocks)?;
    let rows = prompts.len();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
    let filler = i64::from(filler);
    let mut padded = Vec::with_capacity(rows * width);
    for (p, &pad) in prompts.iter().zip(&pads) {
        padded.extend(std::iter::repeat_n(filler, pad));
        padded.extend(p.iter().map(|&t| i64::from(t)));
    }
    let device = model.device();
    let vocab = model.config().vocab_size;
    let max_len = model.config().max_seq_len;
    let mut samplers = prompts
        .iter()
        .map(|_| Sampler::new(&config.sampling))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cache = if pads.iter().all(|&p| p == 0) {
        KvCache::new(skip.clone())
    } else {
        KvCache::with_left_padding(skip.clone(), pads)
    };
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut finish: Vec<Option<FinishReason>> = vec![None; rows];

    let start = Instant::now();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(padded, [rows, width]), &device);
    let mut next: Vec<Option<u32>> = if config.max_new_tokens > 0 {
        let logits = host_values(model.forward_last(tokens, skip, Some(&mut cache))?)?;
        samplers
            .iter_mut()
            .zip(logits.chunks(vocab))
            .map(|(s, row)| s.sample(row).map(Some))
            .collect::<Result<_, _>>()?
    } else {
        finish.fill(Some(FinishReason::Length));
        vec![None; rows]
    };
    let prefill_secs = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut fused = match path {
        DecodePath::Auto if rows == 1 => crate::FusedDecoder::continuing(model, &cache)?,
        _ => None,
    };
    loop {
        for row in 0..rows {
            let Some(token) = next[row].take() else {
                continue;
            };
            ids[row].push(token);
            if config.stop_tokens.contains(&token) {
                finish[row] = Some(FinishReason::Stop);
            } else if ids[row].len() >= config.max_new_tokens {
                finish[row] = Some(FinishReason::Length);
            } else if fused.as_ref().map_or(cache.len(), |f| f.len()) + 1 > max_len {
                finish[row] = Some(FinishReason::ContextFull);
            }
        }
        if finish.iter().all(Option::is_some) {
            break;
        }
        if let Some(decoder) = fused.as_mut() {
            let token = ids[0]
                .last()
                .copied()
                .expect("an unfinished row has a token");
            let logits = on_worker(|| decoder.step(token))?;
            next[0] = Some(samplers[0].sample(&logits)?);
            continue;
        }
        let step: Vec<i64> = (0..rows)
            .map(|row| match (finish[row], ids[row].last()) {
                (None, Some(&t)) => i64::from(t),
                _ => filler,
            })
            .collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(step, [rows, 1]), &device);
        let logits = host_values(model.forward_last(tokens, skip, Some(&mut cache))?)?;
        for (row, logits) in logits.chunks(vocab).enumerate() {
            if finish[row].is_none() {
                next[row] = Some(samplers[row].sample(logits)?);
            }
        }
    }
    let decode_secs = start.elapsed().as_secs_f64();
    Ok(BatchIds {
        ids,
        finish: finish
            .into_iter()
            .map(|f| f.unwrap_or(FinishReason::Length))
            .collect(),
        prefill_secs,
        decode_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::pack_ranges;

    #[test]
    fn packs_are_contiguous_runs_within_the_cap() {
        assert_eq!(pack_ranges(&[3, 2, 4, 1], 5), [0..2, 2..4]);
        // An item over the cap runs alone; empty items join the current run.
        assert_eq!(pack_ranges(&[2, 9, 0, 3], 5), [0..1, 1..2, 2..4]);
        assert_eq!(pack_ranges(&[1, 1, 1], 0), [0..1, 1..2, 2..3]);
        assert!(pack_ranges(&[], 5).is_empty());
    }
}
