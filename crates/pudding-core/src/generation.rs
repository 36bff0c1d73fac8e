//! Generation settings and results shared by every language model.

use serde::{Deserialize, Serialize};

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Sampling {
    /// Always the most likely token (ties: the lowest id).
    Greedy,
    /// Temperature, then nucleus (top-p) sampling with a seeded generator.
    TopP {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Keep the smallest set of tokens whose probability sum reaches `top_p` (0 < p <= 1).
        top_p: f32,
        /// Seed of the random generator: the same seed gives the same tokens.
        seed: u64,
    },
}

/// Settings for one generation request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// Token choice rule.
    pub sampling: Sampling,
    /// Generation stops after emitting any of these ids (the stop token is included in
    /// the output ids but not in the text).
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: Sampling::Greedy,
            stop_tokens: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    /// A stop token was produced.
    Stop,
    /// `max_new_tokens` were produced.
    Length,
    /// The model's context window is full.
    ContextFull,
}

/// The result of one generation request, with timings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids (including a final stop token, if any).
    pub ids: Vec<u32>,
    /// Generated text (stop token excluded).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Wall-clock seconds of the prefill (prompt forward, first token chosen).
    pub prefill_secs: f64,
    /// Wall-clock seconds of the incremental decode steps after the first token.
    pub decode_secs: f64,
}

impl Generation {
    /// Prompt tokens processed per second of prefill.
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        self.prompt_ids.len() as f64 / self.prefill_secs.max(1e-12)
    }

    /// Tokens generated per second of decode (the first token comes from prefill).
    pub fn decode_tokens_per_sec(&self) -> f64 {
        self.ids.len().saturating_sub(1) as f64 / self.decode_secs.max(1e-12)
    }
}
