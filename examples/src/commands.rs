//! The logic behind each `pudding` subcommand, callable from tests and examples.

use burn::prelude::Backend;
use pudding_core::{Generation, GenerationConfig, OmissionSet, SkippableLm};
use pudding_eval::runner::{run_eval, EvalConfig, EvalReport};
use pudding_eval::tasks::{load_task, TaskName};
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

/// Parses a task list: lm-eval names separated by commas, or `paper` for the six tasks of
/// the paper's table.
pub fn parse_tasks(text: &str) -> Result<Vec<TaskName>, String> {
    if text.trim() == "paper" {
        return Ok(TaskName::PAPER.to_vec());
    }
    text.split(',')
        .map(|t| t.trim().parse::<TaskName>().map_err(|e| e.to_string()))
        .collect()
}

/// Runs `pudding eval` with a progress bar (items/s), resuming from `out` if present.
pub fn run_eval_command<B: Backend>(
    lm: &LlamaLm<B>,
    skip: &OmissionSet,
    tasks: &str,
    limit: Option<usize>,
    out: &std::path::Path,
) -> Result<EvalReport, Box<dyn std::error::Error>> {
    let tasks = parse_tasks(tasks)?;
    let method = if skip.is_empty() {
        "dense".to_string()
    } else {
        format!("skip {skip}")
    };
    let config = EvalConfig {
        tasks,
        limit,
        skip: skip.clone(),
        method,
        checkpoint_every: 50,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |task: TaskName, done: usize, total: usize| {
        if bar.prefix() != task.name() {
            bar.set_prefix(task.name());
            bar.set_length(total as u64);
            bar.reset();
        }
        bar.set_position(done as u64);
    };
    let report = run_eval(lm, &config, out, &mut load_task, &mut progress)?;
    bar.finish_and_clear();
    Ok(report)
}
