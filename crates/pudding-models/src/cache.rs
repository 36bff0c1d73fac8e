//! Per-block key/value cache for incremental decoding.

use crate::ModelError;
use burn::prelude::*;
use pudding_core::OmissionSet;

/// The first of `slots` key slots that a block attending through `window` (`None`:
/// globally) still needs: no later query sees a key more than `window` slots back. This one
/// rule both trims a sliding-window block's cache ([`KvCache::append`]) and sets the first
/// column of its attention mask, so the two always agree. `window` is never zero (the
/// config refuses it).
pub(crate) fn first_held_slot(slots: usize, window: Option<usize>) -> usize {
    debug_assert_ne!(window, Some(0), "a zero-token attention window");
    window.map_or(0, |w| slots.saturating_sub(w))
}

/// Keys and values of every earlier position, per block.
///
/// Entry `i` is `None` for a skipped block (a skipped block writes nothing), else
/// `(keys, values)`, each `[batch, n_kv_heads, len, head_dim]` with RoPE already applied to
/// the keys (for a sliding-window block only the last `window` slots, `[.., min(len,
/// window), ..]`). The cache remembers the omission set it was filled under: one set holds for a
/// whole request, and using the cache with another set is an error.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    blocks: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    skip: OmissionSet,
    len: usize,
    /// Padding slots at the start of each batch row (empty: no padding, any batch size).
    left_pad: Vec<usize>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a request that skips `skip`.
    pub fn new(skip: OmissionSet) -> Self {
        Self {
            blocks: vec![None; skip.n_blocks()],
            skip,
            len: 0,
            left_pad: Vec::new(),
        }
    }

    /// An empty cache for a batch of left-padded prompts: row `i` starts with
    /// `left_pad[i]` padding slots that no real token attends to, and its first real token
    /// gets position 0 (batched generation of prompts of different lengths).
    pub fn with_left_padding(skip: OmissionSet, left_pad: Vec<usize>) -> Self {
        Self {
            left_pad,
            ..Self::new(skip)
        }
    }

    /// Padding slots at the start of each row (empty when the batch is not padded).
    pub fn left_pad(&self) -> &[usize] {
        &self.left_pad
    }

    /// Errors unless a batch of `rows` rows fits this cache's padding layout.
    pub fn check_batch(&self, rows: usize) -> Result<(), ModelError> {
        if !self.left_pad.is_empty() && self.left_pad.len() != rows {
            return Err(ModelError::Cache(format!(
                "the cache was made for a padded batch of {} rows but the input has {rows}",
                self.left_pad.len()
            )));
        }
        Ok(())
    }

    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The omission set the cache was filled under.
    pub fn skip(&self) -> &OmissionSet {
        &self.skip
    }

    /// Errors unless this cache belongs to a request under `skip`.
    pub fn check_skip(&self, skip: &OmissionSet) -> Result<(), ModelError> {
        if &self.skip != skip {
            return Err(ModelError::Cache(format!(
                "the cache was filled skipping blocks [{}] but this call skips [{}]; one omission set must hold for a whole request",
                self.skip, skip
            )));
        }
        Ok(())
    }

    /// Appends `keys`/`values` (`[batch, n_kv_heads, new, head_dim]`) for `block` and
    /// returns the cached keys and values including them. With `keep` (a sliding-window
    /// block's window), only the last `keep` slots are kept for later steps: no later
    /// query can see an older key. The returned tensors still hold every slot this step
    /// needs.
    pub(crate) fn append(
        &mut self,
        block: usize,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        keep: Option<usize>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let merged = match self.blocks[block].take() {
            None => (keys, values),
            Some((k, v)) => (
                Tensor::cat(vec![k, keys], 2),
                Tensor::cat(vec![v, values], 2),
            ),
        };
        let slots = merged.0.dims()[2];
        let first = first_held_slot(slots, keep);
        self.blocks[block] = Some(if first > 0 {
            (
                merged.0.clone().narrow(2, first, slots - first),
                merged.1.clone().narrow(2, first, slots - first),
            )
        } else {
            merged.clone()
        });
        merged
    }

    /// Key slots held for `block` (`None` before its first forward or when skipped): the
    /// cache length, or at most the window for a sliding-window block.
    pub fn block_slots(&self, block: usize) -> Option<usize> {
        self.blocks.get(block)?.as_ref().map(|(k, _)| k.dims()[2])
    }

    /// Block `block`'s keys and values (`None` before the first forward or when skipped).
    pub(crate) fn block_entry(&self, block: usize) -> Option<(Tensor<B, 4>, Tensor<B, 4>)> {
        self.blocks[block].clone()
    }

    /// Replaces block `block`'s keys and values (used when several requests share the
    /// same block input, so one computed entry serves all of them).
    pub(crate) fn set_block_entry(
        &mut self,
        block: usize,
        entry: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    ) {
        self.blocks[block] = entry;
    }

    /// Records that `new` positions were added by a forward pass.
    pub(crate) fn advance(&mut self, new: usize) {
        self.len += new;
    }

    /// The same cache repeated `n` times along the batch dimension (to run several
    /// continuations of one prompt as one batch). Requires batch size 1.
    pub fn repeat_batch(&self, n: usize) -> Self {
        Self {
            blocks: self
                .blocks
                .iter()
                .map(|b| {
                    b.as_ref()
                        .map(|(k, v)| (k.clone().repeat_dim(0, n), v.clone().repeat_dim(0, n)))
                })
                .collect(),
            skip: self.skip.clone(),
            len: self.len,
            left_pad: self.left_pad.repeat(n),
        }
    }

    /// The first `len` positions of this cache as a new cache (e.g. a prompt prefix that a
    /// later prompt shares: it continues from there instead of prefilling them again).
    /// An error for a padded or batched cache, for `len` past the cache, and when a
    /// sliding-window block has already dropped slots before `len` (its window is full).
    pub fn truncated(&self, len: usize) -> Result<Self, ModelError> {
        if !self.left_pad.is_empty() {
            return Err(ModelError::Cache(
                "a padded batch's cache cannot be truncated".into(),
            ));
        }
        if len > self.len {
            return Err(ModelError::Cache(format!(
                "cannot keep {len} positions of a cache holding {}",
                self.len
            )));
        }
        let blocks = self
            .blocks
            .iter()
            .map(|entry| match entry {
                None => Ok(None),
                Some((k, v)) => {
                    let [batch, _, slots, _] = k.dims();
                    if batch != 1 || slots != self.len {
                        return Err(ModelError::Cache(format!(
                            "a block holds {slots} of {} slots for {batch} rows; only a full \
                             single-sequence cache can be truncated",
                            self.len
                        )));
                    }
                    Ok(Some((
                        k.clone().narrow(2, 0, len),
                        v.clone().narrow(2, 0, len),
                    )))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            blocks,
            skip: self.skip.clone(),
            len,
            left_pad: Vec::new(),
        })
    }

    /// Number of blocks holding entries (= blocks kept by the omission set, once filled).
    pub fn filled_blocks(&self) -> usize {
        self.blocks.iter().filter(|b| b.is_some()).count()
    }
}
