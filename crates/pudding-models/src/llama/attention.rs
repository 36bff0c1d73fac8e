//! Grouped-query self-attention and what one forward call shares across blocks: the
//! rotary tables and the causal (padding, sliding-window) masks, held or built per chunk
//! of queries.

use super::layers::{in_f32, Projection, RmsNorm};
use crate::cache::{first_held_slot, KvCache};
use crate::rope::{rotate_half, RotaryTables};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::FloatDType;

/// Grouped-query self-attention.
#[derive(Clone, Debug)]
pub struct Attention<B: Backend> {
    /// `[d, h*e]`.
    pub q: Projection<B>,
    /// `[d, g*e]`.
    pub k: Projection<B>,
    /// `[d, g*e]`.
    pub v: Projection<B>,
    /// `[h*e, d]`.
    pub o: Projection<B>,
    /// Per-head query norm (`[e]`), applied before RoPE (Gemma 3).
    pub q_norm: Option<RmsNorm<B>>,
    /// Per-head key norm (`[e]`), applied before RoPE (Gemma 3).
    pub k_norm: Option<RmsNorm<B>>,
    pub(crate) n_heads: usize,
    pub(crate) n_kv_heads: usize,
    pub(crate) head_dim: usize,
    /// The factor on attention scores.
    pub(crate) scale: f64,
    /// Attends through the sliding window (with the local RoPE tables).
    pub(crate) sliding: bool,
}

/// What every block of one forward call shares: the rotary tables of the new tokens'
/// positions and the additive attention mask, for the global blocks and (when the model
/// has a sliding window) for the windowed ones. Built once per call, not once per block.
#[derive(Clone, Debug)]
pub struct StepContext<B: Backend> {
    global: StepTables<B>,
    /// The sliding-window blocks' tables and mask; `None` without a window.
    local: Option<StepTables<B>>,
    /// The most attention scores one block computes at once (see
    /// [`ATTENTION_SCORES_LIMIT`]): past it, the queries run in chunks.
    scores_limit: usize,
}

/// Rotary tables and attention mask of one kind of block.
#[derive(Clone, Debug)]
struct StepTables<B: Backend> {
    /// `[1 or b, 1, s, e]`.
    cos: Tensor<B, 4>,
    /// `[1 or b, 1, s, e]`.
    sin: Tensor<B, 4>,
    /// `(n, cos, sin)` with the tables repeated over `n` heads, seq-major: `[1 or b, s, n,
    /// e]` for the query heads and for the key/value heads (see [`StepContext::with_heads`]).
    by_heads: Vec<(usize, Tensor<B, 4>, Tensor<B, 4>)>,
    /// Additive mask `[1 or b, 1 or g, r*s, t]` (query row `(rep, i)` is row `rep * s + i`; the
    /// `t` columns are the key slots the attention holds, see `keep`), or `None` when every
    /// query may see every key (one new token, no padding, within the window), or when the
    /// mask is too large to hold and `causal` builds its rows per chunk of queries.
    mask: Option<Tensor<B, 4>>,
    /// The causal (padding, window) mask of a long prompt, described instead of held: its
    /// rows are built for each chunk of queries (see [`MASK_DENSE_LIMIT`]).
    causal: Option<CausalRows>,
    /// For the sliding-window blocks, the window: their KV cache keeps only the last
    /// `keep` slots (older keys are out of every later query's window), so a step at
    /// `offset` attends to slots `offset.saturating_sub(keep)..offset + s`. `None`: the
    /// cache keeps every slot.
    keep: Option<usize>,
}

/// The rotary tables of a model: one set for the global blocks, and one for the
/// sliding-window blocks with the window size, when it has a window.
#[derive(Clone, Debug)]
pub struct Rotary<'a, B: Backend> {
    /// Tables of the global blocks.
    pub global: &'a RotaryTables<B>,
    /// Tables of the windowed blocks and the window (tokens).
    pub local: Option<(&'a RotaryTables<B>, usize)>,
}

impl<B: Backend> StepContext<B> {
    /// `s` new tokens at slots `offset..offset + s` of every row. `left_pad[i]` (empty: no
    /// padding) is the number of padding slots at the start of row `i`: row `i`'s token at
    /// slot `j` has position `j - left_pad[i]`, and no real query sees a padding key.
    /// `reps` is the number of query heads per key/value head; the attention mask,
    /// when one is needed, is `[1 or b, 1, reps * s, offset + s]` (grouped queries stacked
    /// along the query axis).
    /// With a sliding window, the windowed blocks' query at slot `p` also loses every key
    /// at a slot before `p - window + 1`, and their cache holds only the last `window`
    /// slots (their mask has `min(offset, window) + s` columns).
    pub fn new(
        rope: Rotary<'_, B>,
        reps: usize,
        seq: usize,
        offset: usize,
        left_pad: &[usize],
        device: &B::Device,
    ) -> Self {
        Self::new_within(rope, reps, seq, offset, left_pad, device, MASK_DENSE_LIMIT)
    }

    /// [`Self::new`] holding masks of at most `dense_limit` elements (larger ones are built
    /// per chunk of queries).
    fn new_within(
        rope: Rotary<'_, B>,
        reps: usize,
        seq: usize,
        offset: usize,
        left_pad: &[usize],
        device: &B::Device,
        dense_limit: usize,
    ) -> Self {
        let tables = |rope: &RotaryTables<B>, window: Option<usize>| {
            StepTables::new(
                rope,
                window,
                reps,
                seq,
                offset,
                left_pad,
                device,
                dense_limit,
            )
        };
        Self {
            global: tables(rope.global, None),
            local: rope
                .local
                .map(|(local, window)| tables(local, Some(window))),
            scores_limit: ATTENTION_SCORES_LIMIT,
        }
    }

    /// The same context computing at most `limit` attention scores at once (tests).
    #[cfg(test)]
    fn with_scores_limit(mut self, limit: usize) -> Self {
        self.scores_limit = limit.max(1);
        self
    }

    /// Repeats the attention masks over the `kv_heads` key/value heads (`[1 or b, 1, r*s,
    /// t]` -> `[1 or b, kv_heads, r*s, t]`) and the rotary tables over the `heads` query
    /// heads and the key/value heads (`[1 or b, s, heads or kv_heads, e]`), once for all
    /// blocks, so that adding a mask to the scores `[b, kv_heads, r*s, t]` and rotating
    /// the queries and keys are plain element-wise products rather than broadcasts (on the
    /// CPU backend the broadcast mask add took about a fifth of a 512-token prefill, and
    /// the broadcast RoPE about a tenth of the HellaSwag evaluation). A mask or table larger
    /// than [`MASK_REPEAT_LIMIT`] elements after the repeat stays broadcast, to bound
    /// memory on long prompts; the values are the same either way.
    pub fn with_heads(self, heads: usize, kv_heads: usize) -> Self {
        self.with_heads_within(heads, kv_heads, MASK_REPEAT_LIMIT)
    }

    /// [`Self::with_heads`] with another element limit than [`MASK_REPEAT_LIMIT`].
    fn with_heads_within(mut self, heads: usize, kv_heads: usize, limit: usize) -> Self {
        self.global = self.global.with_heads(heads, kv_heads, limit);
        self.local = self.local.map(|l| l.with_heads(heads, kv_heads, limit));
        self
    }

    /// The tables and mask of a global (`sliding == false`) or windowed block.
    fn tables(&self, sliding: bool) -> &StepTables<B> {
        match (&self.local, sliding) {
            (Some(local), true) => local,
            _ => &self.global,
        }
    }
}

/// The most elements an attention mask or a rotary table may have once repeated over the
/// heads ([`StepContext::with_heads`]): 32M, 128 MB in f32.
pub const MASK_REPEAT_LIMIT: usize = 1 << 25;

/// The most elements a causal attention mask is held with (`rows * reps * s * t`): 32M,
/// 128 MB in f32. A longer prompt's mask is described and built per chunk of queries
/// (SmolLM2 reaches it at about 3,300 tokens, where the whole mask would be 3 * s * t).
pub const MASK_DENSE_LIMIT: usize = 1 << 25;

/// The most attention scores (`b * kv_heads * reps * queries * keys`) one block computes at
/// once: 32M, 128 MB in f32 (and as much again for the probabilities). Past it the queries
/// run in chunks, so a long prompt's attention takes memory linear in its length instead
/// of `heads * s * t` (Qwen2.5-Coder at 30,000 tokens: 50 GB).
pub const ATTENTION_SCORES_LIMIT: usize = 1 << 25;

/// The causal mask of a step described rather than held: every row `b` (one, without
/// padding) has its queries at slots `offset..offset + seq` after `left_pad[b]` padding
/// slots, over the key slots `first_key..offset + seq` (with a window, only its last
/// `window` keys).
#[derive(Clone, Debug)]
struct CausalRows {
    reps: usize,
    seq: usize,
    offset: usize,
    /// One entry per batch row, or `[0]` for an unpadded batch (the mask broadcasts).
    left_pad: Vec<usize>,
    window: Option<usize>,
    first_key: usize,
}

impl CausalRows {
    /// The mask rows of queries `queries` for every rep: `[1 or b, 1, reps * c, t]`.
    fn rows<B: Backend>(
        &self,
        queries: std::ops::Range<usize>,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let keys = self.offset + self.seq - self.first_key;
        let c = queries.len();
        let mask: Vec<f32> = self
            .left_pad
            .iter()
            .flat_map(|&pad| {
                mask_rows(
                    self.reps,
                    queries.clone(),
                    self.seq,
                    self.offset,
                    pad,
                    self.window,
                    self.first_key,
                )
            })
            .collect();
        Tensor::from_data(
            TensorData::new(mask, [self.left_pad.len(), 1, self.reps * c, keys]),
            device,
        )
    }
}

impl<B: Backend> StepTables<B> {
    /// Repeats the mask over `kv_heads`, and the rotary tables over `heads` and over
    /// `kv_heads`, each when the result has at most `limit` elements.
    fn with_heads(mut self, heads: usize, kv_heads: usize, limit: usize) -> Self {
        let mut counts = vec![heads, kv_heads];
        counts.dedup();
        for n in counts {
            let [rows, _, seq, dim] = self.cos.dims();
            let elements = [rows, seq, n, dim]
                .iter()
                .fold(1usize, |a, &x| a.saturating_mul(x));
            if n > 1 && elements <= limit {
                let (cos, sin) = self.seq_major();
                let expand = |t: &Tensor<B, 4>| crate::rope::expand_over_heads(t, n);
                self.by_heads.push((n, expand(&cos), expand(&sin)));
            }
        }
        if let Some(mask) = self.mask.take() {
            let [_, heads, _, _] = mask.dims();
            let repeated = mask.shape().num_elements().saturating_mul(kv_heads);
            self.mask = Some(if heads == 1 && kv_heads > 1 && repeated <= limit {
                mask.repeat_dim(1, kv_heads)
            } else {
                mask
            });
        }
        self
    }

    /// The rotary tables seq-major, `[1 or b, s, 1, e]` (a reshape: the head axis is 1).
    fn seq_major(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let view = |t: &Tensor<B, 4>| {
            let [rows, _, seq, dim] = t.dims();
            t.clone().reshape([rows, seq, 1, dim])
        };
        (view(&self.cos), view(&self.sin))
    }

    /// The rotary tables for `heads` heads in the `[b, s, heads, e]` layout: repeated over
    /// the heads when [`Self::with_heads`] made them, else `[1 or b, s, 1, e]` to broadcast.
    fn rope_for(&self, heads: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
        match self.by_heads.iter().find(|(n, _, _)| *n == heads) {
            Some((_, cos, sin)) => (cos.clone(), sin.clone()),
            None => self.seq_major(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        rope: &RotaryTables<B>,
        window: Option<usize>,
        reps: usize,
        seq: usize,
        offset: usize,
        left_pad: &[usize],
        device: &B::Device,
        dense_limit: usize,
    ) -> Self {
        let total = offset + seq;
        // The first key slot the attention holds: the cache's own trimming rule.
        let first_key = first_held_slot(offset, window);
        let keys = total - first_key;
        let padded = left_pad.iter().any(|&p| p != 0);
        let (cos, sin) = if padded {
            let positions: Vec<usize> = left_pad
                .iter()
                .flat_map(|&pad| (offset..total).map(move |slot| slot.saturating_sub(pad)))
                .collect();
            rope.at_positions(&positions, left_pad.len(), seq)
        } else {
            rope.window(offset, seq)
        };
        let sees_all = !padded && seq == 1 && window.is_none_or(|w| keys <= w);
        let causal = (!sees_all).then(|| CausalRows {
            reps,
            seq,
            offset,
            left_pad: if padded { left_pad.to_vec() } else { vec![0] },
            window,
            first_key,
        });
        let elements = [
            causal.as_ref().map_or(0, |c| c.left_pad.len()),
            reps,
            seq,
            keys,
        ]
        .iter()
        .fold(1usize, |a, &x| a.saturating_mul(x));
        let (mask, causal) = match causal {
            Some(causal) if elements <= dense_limit => {
                (Some(causal.rows::<B>(0..seq, device)), None)
            }
            causal => (None, causal),
        };
        Self {
            cos,
            sin,
            by_heads: Vec::new(),
            mask,
            causal,
            keep: window,
        }
    }

    /// Tables for `segments` packed one after another in one row after `offset` cached
    /// slots: token `j` of each segment sits at position `offset + j` and sees the cached
    /// slots the attention holds (those within the window, with one) and its own
    /// segment's tokens up to itself. The mask is `[1, 1, reps * n, held + n]`, `n` the
    /// segments' total and `held` the cached slots held (`offset`, or at most the window).
    fn segments_after_cache(
        rope: &RotaryTables<B>,
        window: Option<usize>,
        reps: usize,
        offset: usize,
        segments: &[usize],
        device: &B::Device,
    ) -> Self {
        let first_key = first_held_slot(offset, window);
        let held = offset - first_key;
        // (segment, position) of every packed token.
        let tokens: Vec<(usize, usize)> = segments
            .iter()
            .enumerate()
            .flat_map(|(segment, &len)| (offset..offset + len).map(move |p| (segment, p)))
            .collect();
        let n = tokens.len();
        let within = |query: usize, key: usize| window.is_none_or(|w| query - key < w);
        let mut mask = Vec::with_capacity(reps * n * (held + n));
        for _ in 0..reps {
            for &(segment, position) in &tokens {
                mask.extend((first_key..offset).map(|slot| {
                    if within(position, slot) {
                        0.0f32
                    } else {
                        f32::NEG_INFINITY
                    }
                }));
                mask.extend(tokens.iter().map(|&(key_segment, key)| {
                    if key_segment == segment && key <= position && within(position, key) {
                        0.0f32
                    } else {
                        f32::NEG_INFINITY
                    }
                }));
            }
        }
        let positions: Vec<usize> = tokens.iter().map(|&(_, p)| p).collect();
        let (cos, sin) = rope.at_positions(&positions, 1, n);
        let mask = Tensor::from_data(TensorData::new(mask, [1, 1, reps * n, held + n]), device);
        Self {
            cos,
            sin,
            by_heads: Vec::new(),
            mask: Some(mask),
            causal: None,
            keep: window,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn custom(
        rope: &RotaryTables<B>,
        reps: usize,
        batch: usize,
        seq: usize,
        positions: &[usize],
        visible: impl Fn(usize, usize, usize) -> bool,
        device: &B::Device,
    ) -> Self {
        let (cos, sin) = rope.at_positions(positions, batch, seq);
        let mut mask = Vec::with_capacity(batch * reps * seq * seq);
        for row in 0..batch {
            for _ in 0..reps {
                for i in 0..seq {
                    mask.extend((0..seq).map(|j| {
                        if visible(row, i, j) {
                            0.0f32
                        } else {
                            f32::NEG_INFINITY
                        }
                    }));
                }
            }
        }
        let mask = Tensor::from_data(TensorData::new(mask, [batch, 1, reps * seq, seq]), device);
        Self {
            cos,
            sin,
            by_heads: Vec::new(),
            mask: Some(mask),
            causal: None,
            keep: None,
        }
    }
}

impl<B: Backend> StepContext<B> {
    /// `segments` (token counts, each at least 1) packed one after another in one row,
    /// each continuing the `offset` cached slots on its own: token `j` of a segment sits at
    /// position `offset + j` and attends to the cached slots and to its own segment's
    /// tokens up to itself, never to another segment (see
    /// [`LlamaModel::forward_segments_sets`](super::LlamaModel::forward_segments_sets)).
    pub fn segments_after_cache(
        rope: Rotary<'_, B>,
        reps: usize,
        offset: usize,
        segments: &[usize],
        device: &B::Device,
    ) -> Self {
        let tables = |rope: &RotaryTables<B>, window: Option<usize>| {
            StepTables::segments_after_cache(rope, window, reps, offset, segments, device)
        };
        Self {
            global: tables(rope.global, None),
            local: rope
                .local
                .map(|(local, window)| tables(local, Some(window))),
            scores_limit: ATTENTION_SCORES_LIMIT,
        }
    }

    /// A custom layout for a forward without a cache (packed sequences): token `i` of row
    /// `r` sits at rotary position `positions[r * seq + i]`, and query `i` may attend key `j`
    /// of its row iff `visible(r, i, j)`. Every query must see at least one key (itself,
    /// normally), or its softmax is undefined. `reps` is the number of query heads per
    /// key/value head; the mask is `[batch, 1, reps * seq, seq]`. With a sliding window, the
    /// windowed blocks also hide keys whose position is `window` or more before the
    /// query's.
    pub fn custom(
        rope: Rotary<'_, B>,
        reps: usize,
        batch: usize,
        seq: usize,
        positions: &[usize],
        visible: impl Fn(usize, usize, usize) -> bool,
        device: &B::Device,
    ) -> Self {
        let global = StepTables::custom(rope.global, reps, batch, seq, positions, &visible, device);
        let local = rope.local.map(|(local, window)| {
            let in_window = |row: usize, i: usize, j: usize| {
                let (pi, pj) = (positions[row * seq + i], positions[row * seq + j]);
                visible(row, i, j) && pi.saturating_sub(pj) < window
            };
            StepTables::custom(local, reps, batch, seq, positions, in_window, device)
        });
        Self {
            global,
            local,
            scores_limit: ATTENTION_SCORES_LIMIT,
        }
    }
}

/// Mask rows of one batch row: query `(rep, i)` at slot `offset + i` sees keys `pad..=slot`
/// (with a window, only the last `window` of them). A padding query (slot < pad) sees only
/// itself, so its softmax stays finite; nothing real ever reads it. The rows are the
/// queries `queries` (of `seq`) for every rep, rep-major; the columns are key slots
/// `first_key..offset + seq` (the slots the attention holds).
fn mask_rows(
    reps: usize,
    queries: std::ops::Range<usize>,
    seq: usize,
    offset: usize,
    pad: usize,
    window: Option<usize>,
    first_key: usize,
) -> Vec<f32> {
    let total = offset + seq;
    let mut mask = Vec::with_capacity(reps * queries.len() * (total - first_key));
    for i in queries {
        let slot = offset + i;
        let mut first = if slot < pad { slot } else { pad };
        if let Some(w) = window {
            first = first.max((slot + 1).saturating_sub(w));
        }
        let (first, last) = (first.max(first_key), slot + 1);
        mask.extend(std::iter::repeat_n(f32::NEG_INFINITY, first - first_key));
        mask.extend(std::iter::repeat_n(0.0f32, last - first));
        mask.extend(std::iter::repeat_n(f32::NEG_INFINITY, total - last));
    }
    // Every rep's rows are the first rep's.
    let one_rep = mask.len();
    for _ in 1..reps {
        mask.extend_from_within(..one_rep);
    }
    mask
}

impl<B: Backend> Attention<B> {
    /// `x`: `[b, s, d]` (already normalised) for the new tokens described by `step`;
    /// returns `[b, s, d]`. With a cache, this block's keys/values are appended and
    /// attention spans every cached slot (a windowed block's cache keeps only its window).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        step: &StepContext<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [q, k, v] = Projection::forward_each([&self.q, &self.k, &self.v], x);
        self.o.forward(self.attend_projected(q, k, v, step, cache))
    }

    /// One decode step of several sequences at once, each at its own position with its own
    /// cache: `x` `[n, 1, d]` (already normalised), row `i` the new token of the sequence
    /// whose step context is `steps[i]` (one new token after its cached slots) and whose
    /// cache is `caches[i]` (this block's entry is appended). Returns `[n, 1, d]`. The
    /// projections run once for all rows; only the attention itself runs row by row.
    pub fn forward_rows(
        &self,
        x: Tensor<B, 3>,
        steps: &[&StepContext<B>],
        caches: &mut [&mut KvCache<B>],
        block: usize,
    ) -> Tensor<B, 3> {
        let n = x.dims()[0];
        debug_assert_eq!(steps.len(), n);
        debug_assert_eq!(caches.len(), n);
        let [q, k, v] = Projection::forward_each([&self.q, &self.k, &self.v], x);
        let rows: Vec<Tensor<B, 3>> = (0..n)
            .map(|i| {
                let row = |t: &Tensor<B, 3>| t.clone().narrow(0, i, 1);
                self.attend_projected(
                    row(&q),
                    row(&k),
                    row(&v),
                    steps[i],
                    Some((&mut *caches[i], block)),
                )
            })
            .collect();
        self.o.forward(Tensor::cat(rows, 0))
    }

    /// Attention on projected queries, keys and values (`[b, s, h*e]`, `[b, s, g*e]`,
    /// `[b, s, g*e]`): q/k norms, RoPE, the cache, softmax attention. Returns the heads'
    /// outputs `[b, s, h*e]`, before the output projection.
    fn attend_projected(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        step: &StepContext<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = q.dims();
        let (h, g, e) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let r = h / g;
        let scores_limit = step.scores_limit;
        let step = step.tables(self.sliding);
        // The q/k norms and RoPE act on the last axis, so they run while the heads are
        // still `[b, s, n, e]` (contiguous): on the `[b, n, s, e]` view every element-wise
        // op walks strides, which cost about a tenth of a CPU forward.
        let heads = |t: Tensor<B, 3>, n: usize| t.reshape([b, s, n, e]);
        let (q_cos, q_sin) = step.rope_for(h); // [1 or b, s, h or 1, e]
        let (k_cos, k_sin) = step.rope_for(g); // [1 or b, s, g or 1, e]
        let norm = |t: Tensor<B, 4>, n: &Option<RmsNorm<B>>| match n {
            Some(n) => n.forward(t),
            None => t,
        };
        let q = norm(heads(q, h), &self.q_norm);
        let k = norm(heads(k, g), &self.k_norm);
        let q = rotate_half(q, &q_cos, &q_sin).swap_dims(1, 2);
        let k = rotate_half(k, &k_cos, &k_sin).swap_dims(1, 2);
        let v = heads(v, g).swap_dims(1, 2);
        let (k, v) = match cache {
            Some((cache, block)) => cache.append(block, k, v, step.keep),
            None => (k, v),
        };
        // Group the r query heads that share a key/value head into one matrix of r*s rows,
        // so keys and values are used as they are, without repeating them r times.
        let keys = k.dims()[2];
        let per_query = (b * g * r).saturating_mul(keys).max(1);
        let chunk = (scores_limit / per_query).max(1);
        let out = if chunk >= s && step.causal.is_none() {
            self.attend(q.reshape([b, g, r * s, e]), &k, &v, step.mask.clone())
        } else {
            // A long prompt: the queries in chunks, each against every key, so the scores
            // never exceed the limit (the sums are the same, row by row).
            let q = q.reshape([b, g, r, s, e]);
            let device = q.device();
            let chunks: Vec<Tensor<B, 5>> = (0..s)
                .step_by(chunk)
                .map(|start| {
                    let c = chunk.min(s - start);
                    let mask = match (&step.mask, &step.causal) {
                        (Some(mask), _) => {
                            let [mb, mh, _, t] = mask.dims();
                            Some(
                                mask.clone()
                                    .reshape([mb, mh, r, s, t])
                                    .narrow(3, start, c)
                                    .reshape([mb, mh, r * c, t]),
                            )
                        }
                        (None, Some(causal)) => Some(causal.rows::<B>(start..start + c, &device)),
                        (None, None) => None,
                    };
                    let qc = q.clone().narrow(3, start, c).reshape([b, g, r * c, e]);
                    self.attend(qc, &k, &v, mask).reshape([b, g, r, c, e])
                })
                .collect();
            Tensor::cat(chunks, 3).reshape([b, g, r * s, e])
        };
        out // [b, g, r*s, e]
            .reshape([b, h, s, e])
            .swap_dims(1, 2)
            .reshape([b, s, h * e])
    }

    /// Softmax attention of grouped queries `q` `[b, g, rows, e]` over keys and values
    /// `[b, g, t, e]`, with an additive `mask` `[1 or b, 1 or g, rows, t]`: `[b, g, rows, e]`.
    fn attend(
        &self,
        q: Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        mask: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let scores = q.matmul(k.clone().swap_dims(2, 3)).mul_scalar(self.scale); // [b, g, rows, t]
        let probs = in_f32(scores, |scores| {
            let scores = match mask {
                Some(mask) => add_mask(scores, mask.cast(FloatDType::F32)),
                None => scores,
            };
            softmax(scores, 3)
        });
        probs.matmul(v.clone())
    }
}

/// `scores` `[b, g, r*s, t]` plus the additive `mask` `[1 or b, 1 or g, r*s, t]`. A mask
/// with all `g` heads is added on flat rows (`[b, g*r*s*t]` plus `[1 or b, g*r*s*t]`), which
/// burn-flex runs as one contiguous or shared-row add instead of a strided broadcast.
fn add_mask<B: Backend>(scores: Tensor<B, 4>, mask: Tensor<B, 4>) -> Tensor<B, 4> {
    let dims = scores.dims();
    let mask_dims = mask.dims();
    if mask_dims[1..] != dims[1..] {
        return scores + mask;
    }
    let row = dims[1] * dims[2] * dims[3];
    let sum = scores.reshape([dims[0], row]) + mask.reshape([mask_dims[0], row]);
    sum.reshape(dims)
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
