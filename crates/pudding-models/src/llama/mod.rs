//! The Llama-family decoder with skippable blocks.
//!
//! Shapes: `b` batch, `s` new tokens, `t` cached + new tokens, `d` hidden size, `h` query
//! heads, `g` key/value heads, `r = h / g` query heads per key/value head, `e` head_dim,
//! `v` vocabulary.

mod attention;
mod build;
mod layers;
mod params;
mod rows;

pub use attention::{
    Attention, Rotary, StepContext, ATTENTION_SCORES_LIMIT, MASK_DENSE_LIMIT, MASK_REPEAT_LIMIT,
};
pub use layers::{gelu_tanh, Block, Mlp, Projection, RmsNorm};

use crate::cache::KvCache;
use crate::linear::{Embedding, LinearWeight, WeightMode};
use crate::rope::RotaryTables;
use crate::{LlamaConfig, ModelError};
use burn::prelude::*;
use burn::tensor::FloatDType;
use pudding_core::OmissionSet;

/// A Llama-family decoder (Llama, SmolLM2, Mistral, Qwen2, Gemma 3) whose blocks can be
/// skipped.
#[derive(Clone, Debug)]
pub struct LlamaModel<B: Backend> {
    config: LlamaConfig,
    /// Token embeddings `[v, d]`.
    pub embed: Embedding<B>,
    /// The transformer blocks, in order; `None` for a block that is not resident
    /// (memory-constrained mode: only the blocks an omission set keeps are loaded).
    pub blocks: Vec<Option<Block<B>>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Untied output head `[d, v]`; `None` when tied to `embed`.
    pub lm_head: Option<LinearWeight<B>>,
    /// How the block-quantised checkpoint matrices were loaded (blocks made resident later
    /// load the same way).
    weight_mode: WeightMode,
    rope: RotaryTables<B>,
    /// The sliding-window blocks' tables, when the model has a window.
    rope_local: Option<RotaryTables<B>>,
}

impl<B: Backend> LlamaModel<B> {
    /// Indices of the blocks currently resident.
    pub fn resident_blocks(&self) -> Vec<usize> {
        (0..self.blocks.len())
            .filter(|&i| self.blocks[i].is_some())
            .collect()
    }

    /// Number of parameters resident now (embedding, head, norms and resident blocks).
    pub fn resident_params(&self) -> usize {
        let blocks: usize = self.blocks.iter().flatten().map(Block::param_count).sum();
        blocks
            + self.embed.param_count()
            + self.lm_head.as_ref().map_or(0, LinearWeight::param_count)
            + self.norm.weight.dims()[0]
    }

    /// Block `index`, or a typed error when it is not resident (or out of range).
    pub fn block(&self, index: usize) -> Result<&Block<B>, ModelError> {
        if index >= self.blocks.len() {
            return Err(pudding_core::CoreError::BlockOutOfRange {
                block: index,
                n_blocks: self.blocks.len(),
            }
            .into());
        }
        self.blocks[index]
            .as_ref()
            .ok_or(ModelError::BlockNotResident { block: index })
    }

    /// Replaces every resident block by `f(block)` (e.g. to track gradients).
    pub fn map_blocks(mut self, mut f: impl FnMut(Block<B>) -> Block<B>) -> Self {
        self.blocks = self.blocks.into_iter().map(|b| b.map(&mut f)).collect();
        self
    }

    /// A statically pruned copy holding only the blocks `skip` keeps (renumbered
    /// `0..L-k`): running it dense equals running `self` with `skip` omitted.
    pub fn pruned(&self, skip: &OmissionSet) -> Result<Self, ModelError> {
        skip.check_blocks(self.config.n_blocks)?;
        let mut pruned = self.clone();
        pruned.blocks = skip
            .kept()
            .map(|i| self.block(i).cloned().map(Some))
            .collect::<Result<_, _>>()?;
        pruned.config.n_blocks = pruned.blocks.len();
        Ok(pruned)
    }

    /// Errors unless `ids` is a non-empty sequence of in-vocabulary ids that fits the
    /// context window.
    pub fn check_ids(&self, ids: &[u32]) -> Result<(), ModelError> {
        let config = &self.config;
        if ids.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        if ids.len() > config.max_seq_len {
            return Err(ModelError::PromptTooLong {
                len: ids.len(),
                max: config.max_seq_len,
            });
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= config.vocab_size) {
            return Err(ModelError::TokenOutOfVocab {
                id,
                vocab: config.vocab_size,
            });
        }
        Ok(())
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> B::Device {
        self.norm.weight.device()
    }

    /// How the checkpoint's block-quantised matrices are held.
    pub fn weight_mode(&self) -> WeightMode {
        self.weight_mode
    }

    /// Bytes the resident weights take (stored sizes for the quantised ones; norms and
    /// biases not counted).
    pub fn weight_memory_bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .flatten()
            .flat_map(|b| b.projections())
            .map(|(_, p)| p.weight.memory_bytes())
            .sum();
        blocks
            + self.embed.memory_bytes()
            + self.lm_head.as_ref().map_or(0, LinearWeight::memory_bytes)
    }

    /// Embedding look-up (times the configured embedding scale, if any): `tokens` `[b, s]`
    /// -> `[b, s, d]`.
    pub fn embed_tokens(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let x = self.embed.lookup(tokens, self.norm.weight.dtype());
        match self.config.features.embedding_scale {
            Some(scale) => x.mul_scalar(scale),
            None => x,
        }
    }

    /// Runs block `index` on the residual stream `x` (`[b, s, d]`, positions
    /// `offset..offset+s`, no cache, no padding).
    pub fn block_forward(
        &self,
        index: usize,
        x: Tensor<B, 3>,
        offset: usize,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let seq = x.dims()[1];
        let max = self.config.max_seq_len;
        if offset.saturating_add(seq) > max {
            return Err(ModelError::PromptTooLong {
                len: offset.saturating_add(seq),
                max,
            });
        }
        let step = self.step_context(seq, offset, &[]);
        self.run_blocks_in(&step, [index], x)
    }

    /// The step context of a packed batch (see [`StepContext::custom`]): `positions` is
    /// `[batch * seq]`, `visible(row, query, key)` the attention pattern. An error unless
    /// there are `batch * seq` positions, each inside the context window.
    pub fn packed_step(
        &self,
        batch: usize,
        seq: usize,
        positions: &[usize],
        visible: impl Fn(usize, usize, usize) -> bool,
    ) -> Result<StepContext<B>, ModelError> {
        if Some(positions.len()) != batch.checked_mul(seq) {
            return Err(ModelError::Batch(format!(
                "{} positions for a {batch} x {seq} batch",
                positions.len()
            )));
        }
        let max = self.config.max_seq_len;
        if let Some(&p) = positions.iter().find(|&&p| p >= max) {
            return Err(ModelError::PromptTooLong { len: p + 1, max });
        }
        Ok(StepContext::custom(
            self.rotary(),
            self.config.group_size(),
            batch,
            seq,
            positions,
            visible,
            &self.device(),
        )
        .with_heads(self.config.n_heads, self.config.n_kv_heads))
    }

    /// Runs `blocks` in order on `x` (`[b, s, d]`) under a given step context (no cache).
    pub fn run_blocks_in(
        &self,
        step: &StepContext<B>,
        blocks: impl IntoIterator<Item = usize>,
        mut x: Tensor<B, 3>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        for index in blocks {
            x = self.block(index)?.forward(x, step, None);
        }
        Ok(x)
    }

    /// The rotary tables of the global and (if any) sliding-window blocks.
    fn rotary(&self) -> Rotary<'_, B> {
        Rotary {
            global: &self.rope,
            local: self
                .rope_local
                .as_ref()
                .zip(self.config.features.sliding_window.as_ref().map(|w| w.size)),
        }
    }

    fn step_context(&self, seq: usize, offset: usize, left_pad: &[usize]) -> StepContext<B> {
        StepContext::new(
            self.rotary(),
            self.config.group_size(),
            seq,
            offset,
            left_pad,
            &self.device(),
        )
        .with_heads(self.config.n_heads, self.config.n_kv_heads)
    }

    /// Final norm and output head: `[b, s, d]` -> logits `[b, s, v]`, always in f32 (so
    /// log-softmax and sampling are exact whatever the weights' precision).
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.norm.forward(hidden);
        let [b, s, d] = x.dims();
        let x = x.reshape([b * s, d]);
        let logits = match &self.lm_head {
            Some(w) => w.matmul(x),
            None => self.embed.logits(x),
        }
        .reshape([b, s, self.config.vocab_size])
        .cast(FloatDType::F32);
        match self.config.features.final_logit_softcap {
            Some(cap) => logits.div_scalar(cap).tanh().mul_scalar(cap),
            None => logits,
        }
    }

    /// The residual stream after every kept block: `tokens` `[b, s]` -> `[b, s, d]`
    /// (before the final norm). Skipped blocks are the identity and, with a cache, write
    /// no entries. With a cache the new tokens sit at slots `cache.len()..`, and a cache
    /// made with [`KvCache::with_left_padding`] masks each row's padding slots.
    pub fn forward_hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        skip: &OmissionSet,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.forward_hidden_sets(
            tokens,
            std::slice::from_ref(skip),
            cache.map(std::slice::from_mut),
        )?
        .pop()
        .ok_or_else(|| ModelError::Batch("no hidden state returned".into()))
    }

    /// The residual stream under each of several omission sets at once: `tokens` `[b, s]`
    /// -> one `[b, s, d]` per set, in the order of `sets` (each equal to
    /// [`Self::forward_hidden`] under that set).
    ///
    /// Sets that skip the same blocks before block `i` give block `i` the same input, so
    /// block `i` runs once for all of them: the sets form a prefix tree over the blocks and
    /// each node is computed once (for the 18 sets of the SmolLM2 comparison, k = 3 and 6
    /// with baselines, 275 block passes instead of 462). With `caches` (one per set, each
    /// made for its set, all at the same length and padding), every cache receives its
    /// set's entries; an entry computed once is shared by the caches of all its sets.
    pub fn forward_hidden_sets(
        &self,
        tokens: Tensor<B, 2, Int>,
        sets: &[OmissionSet],
        mut caches: Option<&mut [KvCache<B>]>,
    ) -> Result<Vec<Tensor<B, 3>>, ModelError> {
        self.check_sets_runnable(sets)?;
        let [b, s] = tokens.dims();
        let (offset, left_pad) = match caches.as_deref() {
            Some(caches) => Self::check_caches_for_sets(caches, sets, b)?,
            None => (0, Vec::new()),
        };
        if s == 0 {
            return Err(ModelError::EmptyPrompt);
        }
        if offset + s > self.config.max_seq_len {
            return Err(ModelError::PromptTooLong {
                len: offset + s,
                max: self.config.max_seq_len,
            });
        }
        let step = self.step_context(s, offset, &left_pad);
        let out = self.run_sets(
            self.embed_tokens(tokens),
            sets,
            &step,
            caches.as_deref_mut(),
        )?;
        if let Some(caches) = caches {
            for cache in caches.iter_mut() {
                cache.advance(s);
            }
        }
        Ok(out)
    }

    /// Segments packed in one row after cached context, under several omission sets at
    /// once: `tokens` `[1, n]` holds `segments` (token counts, each at least 1, summing to
    /// `n`) one after another, and each segment continues the sequence the caches hold
    /// (one cache per set, all at the same length `offset`, unpadded, batch 1) on its own:
    /// its token `j` sits at position `offset + j` and attends to the cached slots and to
    /// its own earlier tokens only. Returns one `[1, n, d]` per set, in the order of
    /// `sets`; row `i` equals what [`Self::forward_hidden_sets`] gives for that token with
    /// the segment alone after the cache (up to float rounding). This scores several
    /// continuations of one context with no padding. The caches are consumed: they end up
    /// holding the packed keys, which no later step could use.
    pub fn forward_segments_sets(
        &self,
        tokens: Tensor<B, 2, Int>,
        segments: &[usize],
        sets: &[OmissionSet],
        mut caches: Vec<KvCache<B>>,
    ) -> Result<Vec<Tensor<B, 3>>, ModelError> {
        self.check_sets_runnable(sets)?;
        let [b, n] = tokens.dims();
        if b != 1 || segments.iter().sum::<usize>() != n || segments.contains(&0) {
            return Err(ModelError::Batch(format!(
                "segments {segments:?} do not pack a [{b}, {n}] row (one row, every segment \
                 at least one token)"
            )));
        }
        let (offset, left_pad) = Self::check_caches_for_sets(&caches, sets, 1)?;
        if left_pad.iter().any(|&p| p > 0) {
            return Err(ModelError::Cache(
                "packed segments need unpadded caches".into(),
            ));
        }
        let longest = segments.iter().copied().max().unwrap_or(0);
        if offset + longest > self.config.max_seq_len {
            return Err(ModelError::PromptTooLong {
                len: offset + longest,
                max: self.config.max_seq_len,
            });
        }
        let step = StepContext::segments_after_cache(
            self.rotary(),
            self.config.group_size(),
            offset,
            segments,
            &self.device(),
        )
        .with_heads(self.config.n_heads, self.config.n_kv_heads);
        self.run_sets(self.embed_tokens(tokens), sets, &step, Some(&mut caches))
    }

    /// Checks that there is at least one set, that each is valid for this model and that
    /// every block it runs is resident (before any cache changes).
    fn check_sets_runnable(&self, sets: &[OmissionSet]) -> Result<(), ModelError> {
        if sets.is_empty() {
            return Err(ModelError::Batch("no omission set to run".into()));
        }
        for set in sets {
            set.check_blocks(self.config.n_blocks)?;
            for index in set.kept() {
                self.block(index)?;
            }
        }
        Ok(())
    }

    /// Checks the caches of a multi-set forward: one per set, each made for its set and
    /// for `batch` rows, all at the same length and left padding. Returns that length
    /// and padding (one count per row).
    fn check_caches_for_sets(
        caches: &[KvCache<B>],
        sets: &[OmissionSet],
        batch: usize,
    ) -> Result<(usize, Vec<usize>), ModelError> {
        if caches.len() != sets.len() {
            return Err(ModelError::Cache(format!(
                "{} caches for {} omission sets; pass one cache per set",
                caches.len(),
                sets.len()
            )));
        }
        for (cache, set) in caches.iter().zip(sets) {
            cache.check_skip(set)?;
            cache.check_batch(batch)?;
            if cache.len() != caches[0].len() || cache.left_pad() != caches[0].left_pad() {
                return Err(ModelError::Cache(
                    "the caches of a multi-set forward must hold the same positions and padding"
                        .into(),
                ));
            }
        }
        Ok((caches[0].len(), caches[0].left_pad().to_vec()))
    }

    /// The block loop of [`Self::forward_hidden_sets`] (inputs already checked): `x` `[b,
    /// s, d]` -> one `[b, s, d]` per set. Caches receive entries but are not advanced.
    fn run_sets(
        &self,
        x: Tensor<B, 3>,
        sets: &[OmissionSet],
        step: &StepContext<B>,
        caches: Option<&mut [KvCache<B>]>,
    ) -> Result<Vec<Tensor<B, 3>>, ModelError> {
        match self.weight_mode {
            WeightMode::Quantized => {
                crate::linear::on_worker(|| self.run_sets_here(x, sets, step, caches))
            }
            WeightMode::Dequantized => self.run_sets_here(x, sets, step, caches),
        }
    }

    /// [`Self::run_sets`] on the calling thread.
    fn run_sets_here(
        &self,
        x: Tensor<B, 3>,
        sets: &[OmissionSet],
        step: &StepContext<B>,
        mut caches: Option<&mut [KvCache<B>]>,
    ) -> Result<Vec<Tensor<B, 3>>, ModelError> {
        // Each group: the sets (indices) that agree on every block so far, and their
        // shared residual stream.
        let mut groups: Vec<(Vec<usize>, Tensor<B, 3>)> = vec![((0..sets.len()).collect(), x)];
        for index in 0..self.config.n_blocks {
            let mut next = Vec::with_capacity(groups.len() + 1);
            for (members, x) in groups {
                let (skipping, running): (Vec<usize>, Vec<usize>) =
                    members.into_iter().partition(|&m| sets[m].skips(index));
                let Some(&first) = running.first() else {
                    next.push((skipping, x));
                    continue;
                };
                // Keep the input only when some sets skip this block (a single set never
                // holds an extra reference to it).
                let skipped_input = (!skipping.is_empty()).then(|| x.clone());
                let block = self.block(index)?;
                let y = match caches.as_deref_mut() {
                    Some(ref mut caches) => {
                        let y = block.forward(x, step, Some((&mut caches[first], index)));
                        let entry = caches[first].block_entry(index);
                        for &m in &running[1..] {
                            caches[m].set_block_entry(index, entry.clone());
                        }
                        y
                    }
                    None => block.forward(x, step, None),
                };
                next.push((running, y));
                if let Some(x) = skipped_input {
                    next.push((skipping, x));
                }
            }
            groups = next;
        }
        let mut out: Vec<Option<Tensor<B, 3>>> = vec![None; sets.len()];
        for (members, x) in groups {
            for m in members {
                out[m] = Some(x.clone());
            }
        }
        Ok(out
            .into_iter()
            .map(|x| x.expect("every set ends in one group"))
            .collect())
    }

    /// Logits for every position: `tokens` `[b, s]` -> `[b, s, v]`.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        skip: &OmissionSet,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        Ok(self.head(self.forward_hidden(tokens, skip, cache)?))
    }

    /// Logits of the last position only (what generation needs): `[b, s]` -> `[b, v]`.
    pub fn forward_last(
        &self,
        tokens: Tensor<B, 2, Int>,
        skip: &OmissionSet,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 2>, ModelError> {
        let hidden = self.forward_hidden(tokens, skip, cache)?;
        let [b, s, _] = hidden.dims();
        let last = hidden.narrow(1, s - 1, 1);
        Ok(self.head(last).reshape([b, self.config.vocab_size]))
    }
}
