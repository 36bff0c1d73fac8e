//! [`LlamaLm`]: a loaded model with its tokenizer, implementing
//! [`pudding_core::SkippableLm`] (scoring and KV-cached generation under an omission set).

mod checkpoint;
mod generate;
mod scoring;

use scoring::PACK_TOKENS;

pub use checkpoint::Checkpoint;
pub use generate::{generate_ids, generate_ids_with, BatchIds, DecodePath};

use crate::linear::WeightMode;
use crate::llama::LlamaModel;
use crate::tokenizer::TextTokenizer;
use crate::weights::WeightSource;
use crate::{LlamaConfig, ModelError};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use pudding_core::{
    ContinuationScore, FinishReason, Generation, GenerationConfig, ModelFingerprint, OmissionSet,
    SkippableLm,
};
use std::path::Path;

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
        self.conversation_prompt(&[crate::chat::ChatMessage::new("user", user)])
    }

    /// [`Self::chat_prompt`] for a whole conversation (e.g. a system message, earlier turns
    /// and the last user message). Without a template and without ChatML tokens, the
    /// messages' texts joined by blank lines.
    pub fn conversation_prompt(
        &self,
        messages: &[crate::chat::ChatMessage],
    ) -> Result<String, ModelError> {
        if let Some(template) = &self.chat_template {
            let token = |id: Option<u32>| {
                id.and_then(|i| self.tokenizer.id_to_token(i))
                    .unwrap_or_default()
            };
            let eos = token(self.stop_tokens.first().copied());
            return crate::chat::render_conversation(
                template,
                messages,
                &token(self.bos_token),
                &eos,
            );
        }
        Ok(if self.tokenizer.token_to_id("<|im_start|>").is_some() {
            let mut text = String::new();
            for m in messages {
                text.push_str(&format!(
                    "<|im_start|>{}\n{}<|im_end|>\n",
                    m.role, m.content
                ));
            }
            text + "<|im_start|>assistant\n"
        } else {
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
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
