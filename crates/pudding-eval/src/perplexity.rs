//! Perplexity of a text as llama.cpp's `llama-perplexity` computes it, so the two can be
//! compared on the same file (e.g. a model exported by `pudding export` run in llama.cpp
//! against the source model with those blocks skipped in pudding).
//!
//! The protocol: the whole text is tokenised once (BOS first when the model adds it); the
//! tokens are cut into `n_ctx`-token chunks (a trailing partial chunk is dropped); each
//! chunk runs on its own, its first token replaced by BOS when the model adds it, and only
//! the second half of each chunk is scored: the log-likelihoods of tokens
//! `n_ctx/2 + 1 ..= n_ctx - 1` of the chunk. Perplexity is `exp(mean NLL)`.

use pudding_core::{OmissionSet, SkippableLm};
use serde::{Deserialize, Serialize};

/// Why perplexity could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    /// The text is too short for one chunk.
    #[error(
        "the text tokenises to {tokens} tokens; a context of {n_ctx} needs at least {} \
         (two chunks, as llama-perplexity requires)",
        2 * n_ctx
    )]
    TooShort {
        /// Tokens in the text.
        tokens: usize,
        /// The chunk size asked for.
        n_ctx: usize,
    },
    /// The chunk size is below 4 or above the model's context.
    #[error("a context of {n_ctx} tokens is outside 4..={max} for this model")]
    BadContext {
        /// The chunk size asked for.
        n_ctx: usize,
        /// The model's context length.
        max: usize,
    },
    /// The model failed (tokenising or scoring).
    #[error("the model failed: {0}")]
    Model(String),
    /// A log-likelihood came out NaN or infinite (activations overflowed).
    #[error("chunk {chunk}: a log-likelihood is not finite")]
    NonFinite {
        /// 0-based chunk index.
        chunk: usize,
    },
}

/// The outcome of [`perplexity`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerplexityReport {
    /// `exp(mean negative log-likelihood)` over every scored token.
    pub perplexity: f64,
    /// Mean negative log-likelihood (nats per token).
    pub mean_nll: f64,
    /// Tokens scored (`chunks * (n_ctx - n_ctx/2 - 1)`).
    pub scored_tokens: usize,
    /// Chunks run.
    pub chunks: usize,
    /// Tokens per chunk.
    pub n_ctx: usize,
    /// Tokens in the whole text.
    pub text_tokens: usize,
    /// Perplexity after each chunk (running, as llama-perplexity prints it).
    pub running: Vec<f64>,
}

/// Perplexity of `text` under `lm` with `skip` omitted, by llama-perplexity's protocol
/// (see the module docs), over at most `max_chunks` chunks (all when `None`).
/// `on_chunk(i, n, running)` is called after each chunk (progress).
pub fn perplexity<L: SkippableLm>(
    lm: &L,
    text: &str,
    n_ctx: usize,
    max_chunks: Option<usize>,
    skip: &OmissionSet,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<PerplexityReport, PerplexityError> {
    let model_error = |e: L::Error| PerplexityError::Model(e.to_string());
    if n_ctx < 4 || n_ctx > lm.context_length() {
        return Err(PerplexityError::BadContext {
            n_ctx,
            max: lm.context_length(),
        });
    }
    let tokens = lm.encode_prompt(text).map_err(model_error)?;
    if tokens.len() < 2 * n_ctx {
        return Err(PerplexityError::TooShort {
            tokens: tokens.len(),
            n_ctx,
        });
    }
    let available = tokens.len() / n_ctx;
    let chunks = max_chunks.map_or(available, |m| m.clamp(1, available));
    let first = n_ctx / 2;
    let bos = lm.adds_bos().then(|| lm.prefix_token());
    let mut nll = 0f64;
    let mut count = 0usize;
    let mut running = Vec::with_capacity(chunks);
    for chunk in 0..chunks {
        let mut ids = tokens[chunk * n_ctx..(chunk + 1) * n_ctx].to_vec();
        if let Some(bos) = bos {
            ids[0] = bos;
        }
        // Entry i is log p(ids[i + 1] | ids[..=i]); llama.cpp scores the logits of
        // positions first..n_ctx-2, i.e. entries first..n_ctx-2.
        let logprobs = lm.token_logprobs(&ids, skip).map_err(model_error)?;
        for &lp in &logprobs[first..n_ctx - 1] {
            if !lp.is_finite() {
                return Err(PerplexityError::NonFinite { chunk });
            }
            nll -= f64::from(lp);
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        on_chunk(chunk, chunks, ppl);
    }
    let mean_nll = nll / count as f64;
    Ok(PerplexityReport {
        perplexity: mean_nll.exp(),
        mean_nll,
        scored_tokens: count,
        chunks,
        n_ctx,
        text_tokens: tokens.len(),
        running,
    })
}
