//! The logic behind each `pudding` subcommand, callable from tests and examples.

use burn::prelude::Backend;
use pudding_core::{Generation, GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::{LlamaLm, ModelError};
use serde::Serialize;

/// One token of a `logprobs` report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// Token id.
    pub id: u32,
    /// The token's text.
    pub piece: String,
    /// `log p(token | tokens before)`; `None` for the first token.
    pub logprob: Option<f32>,
}

/// The JSON printed by `pudding logprobs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogprobReport {
    /// Skipped blocks.
    pub skip: Vec<usize>,
    /// Every input token with its log-probability.
    pub tokens: Vec<TokenLogprob>,
}

/// Scores `ids` under `skip`: one entry per token, the first without a log-probability.
pub fn logprob_report<B: Backend>(
    lm: &LlamaLm<B>,
    ids: &[u32],
    skip: &OmissionSet,
) -> Result<LogprobReport, ModelError> {
    let logprobs = lm.token_logprobs(ids, skip)?;
    let tokens = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            Ok(TokenLogprob {
                id,
                piece: lm.tokenizer().piece(id)?,
                logprob: if i == 0 { None } else { Some(logprobs[i - 1]) },
            })
        })
        .collect::<Result<_, ModelError>>()?;
    Ok(LogprobReport {
        skip: skip.blocks().to_vec(),
        tokens,
    })
}

/// Parses `"12,7,9"` into token ids.
pub fn parse_ids(text: &str) -> Result<Vec<u32>, ModelError> {
    text.split(',')
        .map(|s| {
            s.trim().parse::<u32>().map_err(|_| {
                ModelError::Generation(format!(
                    "{:?} is not a token id; expected comma-separated non-negative integers",
                    s.trim()
                ))
            })
        })
        .collect()
}

/// Generates from a text prompt (optionally wrapped in the chat template).
pub fn generate_text<B: Backend>(
    lm: &LlamaLm<B>,
    prompt: &str,
    chat: bool,
    skip: &OmissionSet,
    config: &GenerationConfig,
) -> Result<Generation, ModelError> {
    let text = if chat {
        lm.chat_prompt(prompt)
    } else {
        prompt.to_string()
    };
    let ids = lm.encode(&text)?;
    lm.generate(&ids, skip, config)
}

/// One line of speed figures for a generation.
pub fn speed_line(g: &Generation) -> String {
    format!(
        "prefill {} tokens at {:.1} tok/s, decode {} tokens at {:.1} tok/s",
        g.prompt_ids.len(),
        g.prefill_tokens_per_sec(),
        g.ids.len().saturating_sub(1),
        g.decode_tokens_per_sec()
    )
}
