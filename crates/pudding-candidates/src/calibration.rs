//! Calibration samples: each a set of tokenised (context, continuation) choices and the
//! index of the correct one.

use pudding_core::SkippableLm;
use pudding_eval::scorer::{tokenize_request, ScoreError, TokenizedRequest};
use pudding_eval::tasks::TaskItem;

/// One calibration example: its choices tokenised as the harness does, and the gold index.
/// A plain-text sample (for perplexity) has one choice: the text after the prefix token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalibrationSample {
    /// Tokenised choices (context + continuation each).
    pub choices: Vec<TokenizedRequest>,
    /// Index of the correct choice.
    pub gold: usize,
}

impl CalibrationSample {
    /// Why the sample cannot be scored, if its gold index names none of its choices.
    pub fn gold_error(&self) -> Option<String> {
        (self.gold >= self.choices.len()).then(|| {
            format!(
                "gold choice {} of {} choices",
                self.gold,
                self.choices.len()
            )
        })
    }
}

/// Tokenises the first `n` items (the reference code takes the first 128 train rows).
pub fn samples_from_items<L: SkippableLm>(
    lm: &L,
    items: &[TaskItem],
    n: usize,
) -> Result<Vec<CalibrationSample>, ScoreError> {
    items
        .iter()
        .take(n)
        .map(|item| {
            let choices = item
                .requests()
                .iter()
                .enumerate()
                .map(|(i, r)| tokenize_request(lm, i, r))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(CalibrationSample {
                choices,
                gold: item.gold,
            })
        })
        .collect()
}

/// Plain-text samples for the perplexity loss: each text is one continuation of the
/// model's prefix token, scored over all its tokens, cut to its first `max_tokens` tokens
/// (and always to what fits the context window).
pub fn samples_from_texts<L: SkippableLm>(
    lm: &L,
    texts: &[String],
    max_tokens: usize,
) -> Result<Vec<CalibrationSample>, ScoreError> {
    let limit = max_tokens.min(lm.context_length().saturating_sub(1)).max(1);
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let mut ids = lm
                .encode(text)
                .map_err(|e| ScoreError::Model(e.to_string()))?;
            if ids.is_empty() {
                return Err(ScoreError::BadRequest {
                    index,
                    reason: "the calibration text is empty".into(),
                });
            }
            ids.truncate(limit);
            Ok(CalibrationSample {
                choices: vec![TokenizedRequest {
                    context: vec![lm.prefix_token()],
                    continuation: ids,
                }],
                gold: 0,
            })
        })
        .collect()
}
