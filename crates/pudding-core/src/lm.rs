//! [`SkippableLm`]: the language-model interface the rest of pudding programs against.

use crate::{Generation, GenerationConfig, ModelFingerprint, OmissionSet};
use serde::{Deserialize, Serialize};

/// Scores of one continuation after a context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContinuationScore {
    /// `log p(token_i | context, tokens before i)` for each continuation token.
    pub logprobs: Vec<f32>,
    /// Whether every continuation token was the most likely one (greedy).
    pub is_greedy: bool,
}

impl ContinuationScore {
    /// The summed log-likelihood of the continuation (in f64, as lm-evaluation-harness sums).
    pub fn loglikelihood(&self) -> f64 {
        self.logprobs.iter().map(|&v| v as f64).sum()
    }
}

/// A decoder language model that can run with any [`OmissionSet`] of its blocks skipped.
///
/// Implementations validate their input: an omission set for another block count, an
/// empty or over-long input, or an out-of-vocabulary id is an `Err`, never a panic.
pub trait SkippableLm {
    /// The implementation's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Identity of the loaded weights.
    fn fingerprint(&self) -> &ModelFingerprint;

    /// Number of transformer blocks (L).
    fn n_blocks(&self) -> usize;

    /// Maximum number of tokens in one sequence.
    fn context_length(&self) -> usize;

    /// The token put before an empty context when scoring (BOS, else end-of-text), as
    /// lm-evaluation-harness does.
    fn prefix_token(&self) -> u32;

    /// Whether prompts start with the BOS token ([`Self::prefix_token`]), as the model
    /// expects (GGUF `tokenizer.ggml.add_bos_token`, as llama.cpp reads it):
    /// [`Self::encode_prompt`] puts it before every prompt.
    fn adds_bos(&self) -> bool {
        false
    }

    /// Whether scoring puts the BOS token before every context. lm-evaluation-harness does
    /// so only for Gemma models (its `add_bos_token` is off by default and forced on for
    /// `gemma*` model types), whatever the tokenizer would add; scoring follows it.
    fn scores_with_bos(&self) -> bool {
        false
    }

    /// Tokenises text (no special tokens are added).
    fn encode(&self, text: &str) -> Result<Vec<u32>, Self::Error>;

    /// Token ids of a prompt to generate from or score as a whole: [`Self::encode`],
    /// preceded by the BOS token when [`Self::adds_bos`] and the text does not already
    /// start with it (e.g. through a chat template).
    fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, Self::Error> {
        let mut ids = self.encode(text)?;
        if self.adds_bos() && ids.first() != Some(&self.prefix_token()) {
            ids.insert(0, self.prefix_token());
        }
        Ok(ids)
    }

    /// Turns ids back into text.
    fn decode(&self, ids: &[u32]) -> Result<String, Self::Error>;

    /// For `ids` of length T, returns T-1 values: entry `i` is
    /// `log p(ids[i+1] | ids[..=i])` under the model with `skip` omitted.
    fn token_logprobs(&self, ids: &[u32], skip: &OmissionSet) -> Result<Vec<f32>, Self::Error>;

    /// Scores several continuations of one shared context: the context is computed once
    /// and its state reused for every continuation. Both must be non-empty and
    /// `context.len() + continuation.len()` must fit the context window.
    fn continuation_logprobs(
        &self,
        context: &[u32],
        continuations: &[Vec<u32>],
        skip: &OmissionSet,
    ) -> Result<Vec<ContinuationScore>, Self::Error>;

    /// [`Self::continuation_logprobs`] under each of `sets`: entry `i` holds the scores
    /// under `sets[i]`. Implementations may share work between the sets (a block whose
    /// input is the same under several sets runs once); the default scores set by set.
    fn continuation_logprobs_sets(
        &self,
        context: &[u32],
        continuations: &[Vec<u32>],
        sets: &[OmissionSet],
    ) -> Result<Vec<Vec<ContinuationScore>>, Self::Error> {
        sets.iter()
            .map(|set| self.continuation_logprobs(context, continuations, set))
            .collect()
    }

    /// Generates a continuation of `prompt_ids` with a KV cache, `skip` omitted for the
    /// prefill and every decode step.
    fn generate(
        &self,
        prompt_ids: &[u32],
        skip: &OmissionSet,
        config: &GenerationConfig,
    ) -> Result<Generation, Self::Error>;

    /// Generates for several prompts that share one omission set, as one batch where the
    /// model supports it. The result is in prompt order and equals what [`Self::generate`]
    /// gives for each prompt alone (each row samples with its own generator seeded from
    /// `config`). The default runs the prompts one by one.
    fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        skip: &OmissionSet,
        config: &GenerationConfig,
    ) -> Result<Vec<Generation>, Self::Error> {
        prompts
            .iter()
            .map(|p| self.generate(p, skip, config))
            .collect()
    }
}
