//! One decode step of several independent sequences (continuous batching): each row has
//! its own KV cache, position and omission set, and each block runs once, on the rows whose
//! set keeps it, so sequences routed to different candidates share one batch.

use super::{LlamaModel, StepContext};
use crate::cache::KvCache;
use crate::linear::WeightMode;
use crate::ModelError;
use burn::prelude::*;

impl<B: Backend> LlamaModel<B> {
    /// Next-token logits of `n` sequences at once: `tokens[i]` is the newest token of
    /// sequence `i`, whose cache `caches[i]` (batch 1, unpadded, filled under that sequence's
    /// own omission set, e.g. by [`Self::forward_last`]) holds every earlier position.
    /// Returns logits `[n, v]` (row `i` equal to a one-token [`Self::forward_last`] of
    /// sequence `i` alone, up to float rounding) and advances every cache by one slot.
    ///
    /// Block `j` runs once on the rows whose set keeps it: their projections and MLP are
    /// one batched product; attention runs row by row against each row's cache.
    pub fn decode_rows(
        &self,
        tokens: &[u32],
        caches: &mut [&mut KvCache<B>],
    ) -> Result<Tensor<B, 2>, ModelError> {
        self.check_rows(tokens, caches)?;
        let steps: Vec<StepContext<B>> = caches
            .iter()
            .map(|cache| self.step_context(1, cache.len(), &[]))
            .collect();
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let n = tokens.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n, 1]), &self.device());
        let run = || self.decode_rows_here(self.embed_tokens(tokens), &steps, caches);
        let hidden = match self.weight_mode {
            WeightMode::Quantized => crate::linear::on_worker(run),
            WeightMode::Dequantized => run(),
        }?;
        Ok(self.head(hidden).reshape([n, self.config.vocab_size]))
    }

    /// Errors unless there is one cache per token, every token is in the vocabulary and
    /// every cache is a batch-1 unpadded cache whose set this model can run, with room for
    /// one more position.
    fn check_rows(&self, tokens: &[u32], caches: &[&mut KvCache<B>]) -> Result<(), ModelError> {
        if tokens.is_empty() || tokens.len() != caches.len() {
            return Err(ModelError::Batch(format!(
                "{} tokens for {} caches; a decode step takes one token per sequence",
                tokens.len(),
                caches.len()
            )));
        }
        for (&token, cache) in tokens.iter().zip(caches.iter()) {
            if token as usize >= self.config.vocab_size {
                return Err(ModelError::TokenOutOfVocab {
                    id: token,
                    vocab: self.config.vocab_size,
                });
            }
            if cache.left_pad().iter().any(|&p| p > 0) {
                return Err(ModelError::Cache(
                    "a row of a multi-sequence decode step needs its own unpadded cache".into(),
                ));
            }
            cache.check_batch(1)?;
            let set = cache.skip();
            set.check_blocks(self.config.n_blocks)?;
            for index in set.kept() {
                self.block(index)?;
            }
            if cache.len() + 1 > self.config.max_seq_len {
                return Err(ModelError::PromptTooLong {
                    len: cache.len() + 1,
                    max: self.config.max_seq_len,
                });
            }
        }
        Ok(())
    }

    /// The block loop of [`Self::decode_rows`] on the calling thread: `x` `[n, 1, d]` ->
    /// `[n, 1, d]`; the caches are advanced.
    fn decode_rows_here(
        &self,
        x: Tensor<B, 3>,
        steps: &[StepContext<B>],
        caches: &mut [&mut KvCache<B>],
    ) -> Result<Tensor<B, 3>, ModelError> {
        let n = caches.len();
        let mut rows: Vec<Tensor<B, 3>> = (0..n).map(|i| x.clone().narrow(0, i, 1)).collect();
        for index in 0..self.config.n_blocks {
            let running: Vec<usize> = (0..n).filter(|&i| !caches[i].skip().skips(index)).collect();
            if running.is_empty() {
                continue;
            }
            let block = self.block(index)?;
            let input = Tensor::cat(running.iter().map(|&i| rows[i].clone()).collect(), 0);
            let row_steps: Vec<&StepContext<B>> = running.iter().map(|&i| &steps[i]).collect();
            // The same rows as `running`, in the same order.
            let mut row_caches: Vec<&mut KvCache<B>> = caches
                .iter_mut()
                .filter(|cache| !cache.skip().skips(index))
                .map(|cache| &mut **cache)
                .collect();
            let output = block.forward_rows(input, &row_steps, &mut row_caches, index);
            for (j, &i) in running.iter().enumerate() {
                rows[i] = output.clone().narrow(0, j, 1);
            }
        }
        for cache in caches.iter_mut() {
            cache.advance(1);
        }
        Ok(Tensor::cat(rows, 0))
    }
}
