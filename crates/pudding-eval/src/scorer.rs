//! The shared scorer: (context, continuation) requests -> summed log-likelihoods, with
//! lm-evaluation-harness 0.4's tokenisation rule, and each distinct context computed once
//! and reused for all its continuations. The harness, the candidate search and the router
//! labels all score through [`score_requests`].

use crate::tasks::Request;
use pudding_core::{ContinuationScore, OmissionSet, SkippableLm};
use std::collections::HashMap;

/// Errors of scoring.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The language model failed (bad input, backend error, ...).
    #[error("model error while scoring: {0}")]
    Model(String),
    /// The continuation is empty or cannot fit the context window.
    #[error("request {index}: {reason}")]
    BadRequest {
        /// Index of the request in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The model returned a NaN or infinite log-likelihood (an f16 overflow, weights
    /// holding NaN): comparing it would pick an answer silently, and results files cannot
    /// store it.
    #[error(
        "request {index}: the model returned a log-likelihood of {value}; its numbers \
         overflowed or the weights hold NaN (try --dtype f32, or check the weights)"
    )]
    NonFinite {
        /// Index of the request in the batch.
        index: usize,
        /// The log-likelihood.
        value: f64,
    },
    /// The scoring threads could not be set up or one of them failed.
    #[error("scoring threads: {0}")]
    Threads(String),
}

/// A request tokenised the way lm-evaluation-harness does it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedRequest {
    /// Context tokens (never empty: an empty context becomes the model's prefix token).
    pub context: Vec<u32>,
    /// Continuation tokens (never empty).
    pub continuation: Vec<u32>,
}

/// lm-evaluation-harness's rule: trailing whitespace of the context moves to the front of
/// the continuation; context + continuation are tokenised together and split at the
/// length of the context's own tokenisation (so a merge across the boundary lands in the
/// continuation). A model that [`SkippableLm::scores_with_bos`] (Gemma) gets its BOS token
/// before every context, as lm-evaluation-harness's `add_bos_token` does. If the whole
/// does not fit `max_len`, the oldest context tokens are dropped (at least one context
/// token is kept).
pub fn tokenize_request<L: SkippableLm>(
    lm: &L,
    index: usize,
    request: &Request,
) -> Result<TokenizedRequest, ScoreError> {
    let model_err = |e: L::Error| ScoreError::Model(e.to_string());
    let bad = |reason: String| ScoreError::BadRequest { index, reason };
    let trimmed = request.context.trim_end();
    let (context, continuation) = if trimmed.len() < request.context.len() {
        let spaces = &request.context[trimmed.len()..];
        (
            trimmed.to_string(),
            format!("{spaces}{}", request.continuation),
        )
    } else {
        (request.context.clone(), request.continuation.clone())
    };
    if continuation.is_empty() {
        return Err(bad("the continuation is empty".into()));
    }
    let (mut ctx, cont) = if context.is_empty() {
        let cont = lm.encode(&continuation).map_err(model_err)?;
        (vec![lm.prefix_token()], cont)
    } else {
        let whole = lm
            .encode(&format!("{context}{continuation}"))
            .map_err(model_err)?;
        let n_ctx = lm
            .encode(&context)
            .map_err(model_err)?
            .len()
            .min(whole.len());
        let mut ctx = Vec::with_capacity(n_ctx + 1);
        if lm.scores_with_bos() {
            ctx.push(lm.prefix_token());
        }
        ctx.extend_from_slice(&whole[..n_ctx]);
        (ctx, whole[n_ctx..].to_vec())
    };
    if cont.is_empty() {
        return Err(bad("the continuation has no tokens of its own".into()));
    }
    if ctx.is_empty() {
        ctx.push(lm.prefix_token());
    }
    let max_len = lm.context_length();
    if cont.len() >= max_len {
        return Err(bad(format!(
            "the continuation has {} tokens but the model's context holds {max_len}",
            cont.len()
        )));
    }
    if ctx.len() + cont.len() > max_len {
        let keep = max_len - cont.len();
        ctx.drain(..ctx.len() - keep);
    }
    Ok(TokenizedRequest {
        context: ctx,
        continuation: cont,
    })
}

/// Scores every request under `skip`. Requests whose tokenised contexts are identical are
/// grouped: the context runs once and its KV state is reused for each continuation.
/// Results come back in request order.
pub fn score_requests<L: SkippableLm>(
    lm: &L,
    requests: &[Request],
    skip: &OmissionSet,
) -> Result<Vec<ContinuationScore>, ScoreError> {
    let mut per_set = score_requests_sets(lm, requests, std::slice::from_ref(skip))?;
    Ok(per_set.pop().unwrap_or_default())
}

/// [`score_requests`] on already-tokenised requests.
pub fn score_tokenized<L: SkippableLm>(
    lm: &L,
    requests: &[TokenizedRequest],
    skip: &OmissionSet,
) -> Result<Vec<ContinuationScore>, ScoreError> {
    let mut per_set = score_tokenized_sets(lm, requests, std::slice::from_ref(skip))?;
    Ok(per_set.pop().unwrap_or_default())
}

/// Scores every request under each of `sets` in one pass: entry `i` holds the scores
/// under `sets[i]`, in request order. Besides each distinct context running once, a block
/// whose input is the same under several sets runs once for all of them (see
/// [`SkippableLm::continuation_logprobs_sets`]); the scores equal [`score_requests`] set by
/// set.
pub fn score_requests_sets<L: SkippableLm>(
    lm: &L,
    requests: &[Request],
    sets: &[OmissionSet],
) -> Result<Vec<Vec<ContinuationScore>>, ScoreError> {
    score_tokenized_sets(lm, &tokenize_requests(lm, requests)?, sets)
}

/// [`tokenize_request`] on each request, in order.
pub fn tokenize_requests<L: SkippableLm>(
    lm: &L,
    requests: &[Request],
) -> Result<Vec<TokenizedRequest>, ScoreError> {
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| tokenize_request(lm, i, r))
        .collect()
}

/// [`score_requests_sets`] on already-tokenised requests.
pub fn score_tokenized_sets<L: SkippableLm>(
    lm: &L,
    requests: &[TokenizedRequest],
    sets: &[OmissionSet],
) -> Result<Vec<Vec<ContinuationScore>>, ScoreError> {
    if sets.is_empty() {
        return Ok(Vec::new());
    }
    let mut groups: Vec<(&[u32], Vec<usize>)> = Vec::new();
    let mut by_context: HashMap<&[u32], usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        let g = *by_context.entry(&r.context).or_insert_with(|| {
            groups.push((&r.context, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let mut out: Vec<Vec<Option<ContinuationScore>>> = vec![vec![None; requests.len()]; sets.len()];
    for (context, members) in groups {
        let continuations: Vec<Vec<u32>> = members
            .iter()
            .map(|&i| requests[i].continuation.clone())
            .collect();
        let per_set = lm
            .continuation_logprobs_sets(context, &continuations, sets)
            .map_err(|e| ScoreError::Model(e.to_string()))?;
        if per_set.len() != sets.len() {
            return Err(ScoreError::Model(format!(
                "the model returned scores for {} sets, not {}",
                per_set.len(),
                sets.len()
            )));
        }
        for (set_out, scores) in out.iter_mut().zip(per_set) {
            for (&i, s) in members.iter().zip(scores) {
                let value = s.loglikelihood();
                if !value.is_finite() {
                    return Err(ScoreError::NonFinite { index: i, value });
                }
                set_out[i] = Some(s);
            }
        }
    }
    out.into_iter()
        .map(|set_out| {
            set_out
                .into_iter()
                .map(|s| {
                    s.ok_or_else(|| {
                        ScoreError::Model("the model returned too few continuation scores".into())
                    })
                })
                .collect()
        })
        .collect()
}

/// Scores each request independently from scratch (no shared context, one full forward
/// per request). Slower; used to measure the benefit of context sharing and to test it.
pub fn score_requests_unshared<L: SkippableLm>(
    lm: &L,
    requests: &[Request],
    skip: &OmissionSet,
) -> Result<Vec<ContinuationScore>, ScoreError> {
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let t = tokenize_request(lm, i, r)?;
            let mut ids = t.context.clone();
            ids.extend_from_slice(&t.continuation);
            let all = lm
                .token_logprobs(&ids, skip)
                .map_err(|e| ScoreError::Model(e.to_string()))?;
            let logprobs = all[t.context.len() - 1..].to_vec();
            Ok(ContinuationScore {
                logprobs,
                // Greedy-ness needs the full distribution; this path is for likelihoods.
                is_greedy: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pudding_models::testing::{tiny_llama_gguf_edited, TinyLlamaSpec};

    /// A finite but huge final-norm scale makes the logits overflow to ±inf, so the
    /// log-softmax gives NaN: the scorer must refuse it rather than hand numpy-style
    /// argmax a NaN to pick.
    #[test]
    fn an_overflowing_model_gives_a_typed_error_not_a_nan_score() {
        let w = tiny_llama_gguf_edited(&TinyLlamaSpec::default(), |name, data| {
            if name == "output_norm.weight" {
                data.iter_mut().for_each(|v| *v = 3e38);
            }
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overflow.gguf");
        w.write_to(&path).unwrap();
        let lm =
            pudding_models::LlamaLm::<pudding_models::CpuBackend>::load(&path, &Default::default())
                .unwrap();
        let requests = vec![Request {
            context: "the cat sat on".into(),
            continuation: " the mat".into(),
        }];
        let dense = OmissionSet::parse("", 4).unwrap();
        let err = score_requests(&lm, &requests, &dense).unwrap_err();
        assert!(
            matches!(err, ScoreError::NonFinite { index: 0, value } if !value.is_finite()),
            "{err}"
        );
    }
}
