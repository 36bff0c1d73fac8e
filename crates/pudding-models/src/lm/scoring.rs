//! Scoring many continuations of one context in packs that share its KV cache, and the
//! uncached greedy reference.

use super::{host_ints, host_values, LlamaLm};
use crate::cache::KvCache;
use crate::ModelError;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use pudding_core::{ContinuationScore, OmissionSet};

impl<B: Backend> LlamaLm<B> {
    /// [`SkippableLm::continuation_logprobs_sets`](pudding_core::SkippableLm::continuation_logprobs_sets) with packs of at most `pack_tokens`
    /// continuation tokens: the context runs once per distinct block input
    /// ([`LlamaModel::forward_hidden_sets`](crate::LlamaModel::forward_hidden_sets)), then the continuations' input tokens (all but
    /// their last) run packed one after another in rows of at most `pack_tokens` (a longer
    /// continuation alone), with no padding, on top of each set's context state
    /// ([`LlamaModel::forward_segments_sets`](crate::LlamaModel::forward_segments_sets)). Returns one score per continuation per
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

/// The most continuation tokens [`SkippableLm::continuation_logprobs_sets`](pudding_core::SkippableLm::continuation_logprobs_sets) runs packed in
/// one row. A pack's attention grows with the square of its length, so many long
/// continuations run as several packs (each after the same cached context); a
/// multiple-choice item's few short ones fit in one.
pub(super) const PACK_TOKENS: usize = 512;

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
