//! The Llama-family decoder with skippable blocks.
//!
//! Shapes: `b` batch, `s` new tokens, `t` cached + new tokens, `d` hidden size, `h` query
//! heads, `g` key/value heads, `r = h / g` query heads per key/value head, `e` head_dim,
//! `v` vocabulary.

use crate::cache::{first_held_slot, KvCache};
use crate::config::Activation;
use crate::linear::{Embedding, LinearWeight, WeightMode};
use crate::rope::{rotate_half, RotaryTables};
use crate::weights::{HostTensor, WeightSource};
use crate::{LlamaConfig, ModelError};
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{DType, FloatDType};
use pudding_core::OmissionSet;
use std::collections::HashSet;

/// A projection `y = x W + b`: `W` dense `[in, out]`, or `[out, in]` blocks as stored in the
/// GGUF file (see [`LinearWeight`]).
#[derive(Clone, Debug)]
pub struct Projection<B: Backend> {
    /// `[in_features, out_features]` when dense (the transpose of the HF `[out, in]`
    /// layout).
    pub weight: LinearWeight<B>,
    /// `[out_features]`, when the architecture has one.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Projection<B> {
    /// `x`: `[b, s, in]` -> `[b, s, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d_in] = x.dims();
        let d_out = self.weight.out_features();
        let y = self
            .weight
            .matmul(x.reshape([b * s, d_in]))
            .reshape([b, s, d_out]);
        self.add_bias(y)
    }

    fn add_bias(&self, y: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<3>(),
            None => y,
        }
    }

    /// Several projections of the same `x` (`[b, s, in]`), e.g. Q/K/V or gate/up: `[b, s,
    /// out_i]` each. Quantised weights run as one group (one activation quantisation, one
    /// dispatch over the threads).
    pub fn forward_each<const N: usize>(
        projections: [&Self; N],
        x: Tensor<B, 3>,
    ) -> [Tensor<B, 3>; N] {
        let [b, s, d_in] = x.dims();
        let weights = projections.map(|p| &p.weight);
        let ys = crate::linear::matmul_each(x.reshape([b * s, d_in]), &weights);
        let mut ys = ys.into_iter();
        projections.map(|p| {
            let y = ys.next().expect("one product per projection");
            p.add_bias(y.reshape([b, s, p.weight.out_features()]))
        })
    }
}

/// Runs `f` in f32 when `x` is half precision, returning the result in `x`'s dtype: sums
/// of squares and softmax normalisers lose too much in f16/bf16 (as llama.cpp and
/// transformers, norms and softmax run in f32 whatever the weights are stored in).
fn in_f32<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    match x.dtype() {
        DType::F16 => f(x.cast(FloatDType::F32)).cast(FloatDType::F16),
        DType::BF16 => f(x.cast(FloatDType::F32)).cast(FloatDType::BF16),
        _ => f(x),
    }
}

/// Root-mean-square layer norm over the last axis: `x / sqrt(mean(x^2) + eps) * weight`.
#[derive(Clone, Debug)]
pub struct RmsNorm<B: Backend> {
    /// `[d]` (the width of the last axis).
    pub weight: Tensor<B, 1>,
    /// Epsilon added to the mean square.
    pub eps: f32,
}

impl<B: Backend> RmsNorm<B> {
    /// `x`: `[..., d]` -> `[..., d]` (e.g. `[b, s, d]`, or `[b, s, heads, head_dim]` for
    /// per-head query/key norms).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        in_f32(x, |x| {
            let inv_rms = x
                .clone()
                .powi_scalar(2)
                .mean_dim(D - 1)
                .add_scalar(self.eps)
                .sqrt()
                .recip();
            x * inv_rms * self.weight.clone().cast(FloatDType::F32).unsqueeze::<D>()
        })
    }
}

/// GELU with the tanh approximation (`gelu_pytorch_tanh`):
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let inner = (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044_715))
        .mul_scalar((2.0 / std::f64::consts::PI).sqrt());
    x.mul(inner.tanh().add_scalar(1.0)).mul_scalar(0.5)
}

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
    /// [`LlamaModel::forward_segments_sets`]).
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
        let [b, s, _] = x.dims();
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
        let [q, k, v] = Projection::forward_each([&self.q, &self.k, &self.v], x);
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
        let out = out // [b, g, r*s, e]
            .reshape([b, h, s, e])
            .swap_dims(1, 2)
            .reshape([b, s, h * e]);
        self.o.forward(out)
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

/// Gated feed-forward: `down(act(gate(x)) * up(x))` (SwiGLU with SiLU, GeGLU with GELU).
#[derive(Clone, Debug)]
pub struct Mlp<B: Backend> {
    /// `[d, ffn]`.
    pub gate: Projection<B>,
    /// `[d, ffn]`.
    pub up: Projection<B>,
    /// `[ffn, d]`.
    pub down: Projection<B>,
    /// The gate's activation.
    pub activation: Activation,
}

impl<B: Backend> Mlp<B> {
    /// `x`: `[b, s, d]` -> `[b, s, d]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [gate, up] = Projection::forward_each([&self.gate, &self.up], x);
        let gate = match self.activation {
            Activation::Silu => silu(gate),
            Activation::GeluTanh => gelu_tanh(gate),
        };
        self.down.forward(gate * up)
    }
}

/// One pre-norm transformer block (with Gemma's extra norms on the two branch outputs
/// when it has them).
#[derive(Clone, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub attn_norm: RmsNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm of the attention output before the residual add (Gemma).
    pub post_attn_norm: Option<RmsNorm<B>>,
    /// Norm before the MLP.
    pub mlp_norm: RmsNorm<B>,
    /// Feed-forward.
    pub mlp: Mlp<B>,
    /// Norm of the MLP output before the residual add (Gemma).
    pub post_mlp_norm: Option<RmsNorm<B>>,
}

impl<B: Backend> Block<B> {
    /// `x`: `[b, s, d]` residual stream of the new tokens described by `step` ->
    /// `[b, s, d]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        step: &StepContext<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let post = |y: Tensor<B, 3>, norm: &Option<RmsNorm<B>>| match norm {
            Some(n) => n.forward(y),
            None => y,
        };
        let a = self
            .attn
            .forward(self.attn_norm.forward(x.clone()), step, cache);
        let x = x + post(a, &self.post_attn_norm);
        let m = self.mlp.forward(self.mlp_norm.forward(x.clone()));
        x + post(m, &self.post_mlp_norm)
    }
}

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

fn to_device<B: Backend, const D: usize>(
    t: HostTensor,
    name: &str,
    expected: [usize; D],
    device: &B::Device,
) -> Result<Tensor<B, D>, ModelError> {
    if t.shape != expected {
        return Err(ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            actual: t.shape,
        });
    }
    if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::NonFiniteWeight {
            name: name.to_string(),
            index,
            value: t.data[index],
        });
    }
    Ok(Tensor::from_data(TensorData::new(t.data, expected), device))
}

/// Where the weights of a model come from while it is built.
trait ParamSource<B: Backend> {
    fn matrix(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError>;
    /// A projection weight: dense `[in, out]` unless the source keeps it as stored.
    fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<LinearWeight<B>, ModelError> {
        Ok(LinearWeight::Dense(self.matrix(name, out, inp)?))
    }
    /// The `[v, d]` token embedding table.
    fn embedding(&mut self, name: &str, v: usize, d: usize) -> Result<Embedding<B>, ModelError> {
        // `matrix` transposes to `[in, out]`; undo it for a look-up table.
        Ok(Embedding::Dense(self.matrix(name, v, d)?.transpose()))
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError>;
    fn has(&self, name: &str) -> bool;
    /// Errors if the source holds tensors of a block past the `n_blocks` the configuration
    /// declares (those of block `n_blocks`, the first one past).
    fn check_no_block_past(&self, _n_blocks: usize) -> Result<(), ModelError> {
        Ok(())
    }
    /// Called when block `block` is built: a checkpoint refuses a block holding a tensor
    /// that was not read.
    fn finish_block(&mut self, _block: usize) -> Result<(), ModelError> {
        Ok(())
    }
}

struct FromCheckpoint<'a, B: Backend> {
    source: &'a dyn WeightSource,
    device: &'a B::Device,
    /// HF names read since the last [`ParamSource::finish_block`].
    read: HashSet<String>,
    architecture: &'a str,
    mode: WeightMode,
}

impl<'a, B: Backend> FromCheckpoint<'a, B> {
    fn new(
        source: &'a dyn WeightSource,
        device: &'a B::Device,
        architecture: &'a str,
        mode: WeightMode,
    ) -> Self {
        Self {
            source,
            device,
            read: HashSet::new(),
            architecture,
            mode,
        }
    }

    /// The stored matrix `name` (`[out, inp]`), when quantised weights are asked for and the
    /// source keeps this one as stored.
    fn stored(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<Option<pudding_gguf::QuantizedMatrix>, ModelError> {
        if self.mode != WeightMode::Quantized {
            return Ok(None);
        }
        let Some(m) = self.source.quantized(name)? else {
            return Ok(None);
        };
        if (m.rows(), m.cols()) != (out, inp) {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: vec![out, inp],
                actual: vec![m.rows(), m.cols()],
            });
        }
        self.read.insert(name.to_string());
        Ok(Some(m))
    }
}

impl<B: Backend> ParamSource<B> for FromCheckpoint<'_, B> {
    /// HF `[out, in]` -> `[in, out]`.
    fn matrix(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError> {
        let t = self.source.tensor(name)?;
        self.read.insert(name.to_string());
        Ok(to_device::<B, 2>(t, name, [out, inp], self.device)?.transpose())
    }
    fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<LinearWeight<B>, ModelError> {
        match self.stored(name, out, inp)? {
            Some(m) => Ok(LinearWeight::Quantized(m)),
            None => Ok(LinearWeight::Dense(self.matrix(name, out, inp)?)),
        }
    }
    fn embedding(&mut self, name: &str, v: usize, d: usize) -> Result<Embedding<B>, ModelError> {
        match self.stored(name, v, d)? {
            Some(m) => Ok(Embedding::Quantized(m)),
            None => Ok(Embedding::Dense(self.matrix(name, v, d)?.transpose())),
        }
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError> {
        let t = self.source.tensor(name)?;
        self.read.insert(name.to_string());
        to_device::<B, 1>(t, name, [len], self.device)
    }
    fn has(&self, name: &str) -> bool {
        self.source.contains(name)
    }
    fn check_no_block_past(&self, n_blocks: usize) -> Result<(), ModelError> {
        match self.source.block_tensor_names(n_blocks).into_iter().next() {
            Some(name) => Err(ModelError::BlockPastCount {
                name,
                block: n_blocks,
                n_blocks,
            }),
            None => Ok(()),
        }
    }
    fn finish_block(&mut self, block: usize) -> Result<(), ModelError> {
        let read = std::mem::take(&mut self.read);
        let unread = self
            .source
            .block_tensor_names(block)
            .into_iter()
            .find(|name| !read.contains(name) && !crate::weights::is_unread_buffer(name));
        match unread {
            Some(name) => Err(ModelError::UnreadTensor {
                name,
                arch: self.architecture.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// Random weights from the model's own seeded generator, not the backend's global one
/// (`Backend::seed` is process-wide, so models built on several threads at once would
/// interleave its draws and differ from run to run).
struct Random<'a, B: Backend> {
    device: &'a B::Device,
    bias: bool,
    rng: crate::sampling::SplitMix64,
}

impl<B: Backend> Random<'_, B> {
    /// `n` draws from a normal distribution (Box-Muller).
    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = self.rng.next_f64().max(1e-12);
                let u2 = self.rng.next_f64();
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
            })
            .collect()
    }

    fn tensor<const D: usize>(&self, data: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(data, shape), self.device)
    }
}

impl<B: Backend> ParamSource<B> for Random<'_, B> {
    /// Drawn in the checkpoint layout `[out, in]` and transposed, like
    /// [`FromCheckpoint::matrix`]: the same memory layout as a loaded model, so benchmarks
    /// on random weights run the same kernels (a contiguous `[in, out]` matrix makes the
    /// CPU's matrix-vector products several times slower).
    fn matrix(&mut self, _: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>, ModelError> {
        let data = self.normal(out * inp, 1.0 / (inp as f64).sqrt());
        Ok(self.tensor(data, [out, inp]).transpose())
    }
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>, ModelError> {
        let data = if name.ends_with("bias") {
            self.normal(len, 0.02)
        } else {
            (0..len)
                .map(|_| (0.8 + 0.4 * self.rng.next_f64()) as f32)
                .collect()
        };
        Ok(self.tensor(data, [len]))
    }
    fn has(&self, name: &str) -> bool {
        self.bias || !name.ends_with("bias")
    }
}

/// Builds block `i` of `c` from `src`.
fn build_block<B: Backend>(
    c: &LlamaConfig,
    src: &mut dyn ParamSource<B>,
    i: usize,
) -> Result<Block<B>, ModelError> {
    let (d, e) = (c.hidden_size, c.head_dim);
    let (qd, kvd) = (c.n_heads * e, c.n_kv_heads * e);
    let p = |part: &str| format!("model.layers.{i}.{part}");
    let proj = |src: &mut dyn ParamSource<B>, name: String, out: usize, inp: usize| {
        let bias_name = name.replace(".weight", ".bias");
        let weight = src.linear(&name, out, inp)?;
        let bias = if name.contains("self_attn.")
            && !name.contains("o_proj")
            && c.attention_bias
            && src.has(&bias_name)
        {
            Some(src.vector(&bias_name, out)?)
        } else {
            None
        };
        Ok::<_, ModelError>(Projection { weight, bias })
    };
    let norm = |src: &mut dyn ParamSource<B>, part: &str, len: usize| {
        Ok::<_, ModelError>(RmsNorm {
            weight: src.vector(&p(part), len)?,
            eps: c.rms_norm_eps,
        })
    };
    let (q_norm, k_norm) = if c.features.qk_norm {
        (
            Some(norm(src, "self_attn.q_norm.weight", e)?),
            Some(norm(src, "self_attn.k_norm.weight", e)?),
        )
    } else {
        (None, None)
    };
    let attn = Attention {
        q: proj(src, p("self_attn.q_proj.weight"), qd, d)?,
        k: proj(src, p("self_attn.k_proj.weight"), kvd, d)?,
        v: proj(src, p("self_attn.v_proj.weight"), kvd, d)?,
        o: proj(src, p("self_attn.o_proj.weight"), d, qd)?,
        q_norm,
        k_norm,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: e,
        scale: c.score_scale(),
        sliding: c.is_sliding(i),
    };
    let mlp = Mlp {
        gate: proj(src, p("mlp.gate_proj.weight"), c.intermediate_size, d)?,
        up: proj(src, p("mlp.up_proj.weight"), c.intermediate_size, d)?,
        down: proj(src, p("mlp.down_proj.weight"), d, c.intermediate_size)?,
        activation: c.features.activation,
    };
    let names = BlockNormNames::of(c.features.sandwich_norms);
    let block = Block {
        attn_norm: norm(src, names.attn, d)?,
        attn,
        post_attn_norm: names.post_attn.map(|n| norm(src, n, d)).transpose()?,
        mlp_norm: norm(src, names.mlp, d)?,
        mlp,
        post_mlp_norm: names.post_mlp.map(|n| norm(src, n, d)).transpose()?,
    };
    src.finish_block(i)?;
    Ok(block)
}

/// The HF names (after `model.layers.{i}.`) of a block's norms. Gemma's
/// `post_attention_layernorm` normalises the attention output; in Llama the same name is
/// the norm before the MLP, which Gemma calls `pre_feedforward_layernorm`.
struct BlockNormNames {
    attn: &'static str,
    post_attn: Option<&'static str>,
    mlp: &'static str,
    post_mlp: Option<&'static str>,
}

impl BlockNormNames {
    fn of(sandwich_norms: bool) -> Self {
        if sandwich_norms {
            Self {
                attn: "input_layernorm.weight",
                post_attn: Some("post_attention_layernorm.weight"),
                mlp: "pre_feedforward_layernorm.weight",
                post_mlp: Some("post_feedforward_layernorm.weight"),
            }
        } else {
            Self {
                attn: "input_layernorm.weight",
                post_attn: None,
                mlp: "post_attention_layernorm.weight",
                post_mlp: None,
            }
        }
    }
}

impl<B: Backend> Block<B> {
    /// Number of parameters of this block.
    pub fn param_count(&self) -> usize {
        self.projections()
            .iter()
            .map(|(_, p)| p.weight.param_count() + p.bias.as_ref().map_or(0, |b| b.dims()[0]))
            .sum::<usize>()
            + self
                .norms()
                .iter()
                .map(|(_, n)| n.weight.dims()[0])
                .sum::<usize>()
    }

    /// The seven projections with their HF weight names, in a fixed order.
    pub fn projections(&self) -> [(&'static str, &Projection<B>); 7] {
        [
            ("self_attn.q_proj.weight", &self.attn.q),
            ("self_attn.k_proj.weight", &self.attn.k),
            ("self_attn.v_proj.weight", &self.attn.v),
            ("self_attn.o_proj.weight", &self.attn.o),
            ("mlp.gate_proj.weight", &self.mlp.gate),
            ("mlp.up_proj.weight", &self.mlp.up),
            ("mlp.down_proj.weight", &self.mlp.down),
        ]
    }

    /// Every norm of the block with its HF name suffix, in a fixed order.
    fn norms(&self) -> Vec<(&'static str, &RmsNorm<B>)> {
        let names = BlockNormNames::of(self.post_attn_norm.is_some());
        let mut norms = vec![(names.attn, &self.attn_norm), (names.mlp, &self.mlp_norm)];
        for (name, norm) in [
            (names.post_attn, &self.post_attn_norm),
            (names.post_mlp, &self.post_mlp_norm),
            (Some("self_attn.q_norm.weight"), &self.attn.q_norm),
            (Some("self_attn.k_norm.weight"), &self.attn.k_norm),
        ] {
            if let (Some(name), Some(norm)) = (name, norm) {
                norms.push((name, norm));
            }
        }
        norms
    }

    /// Every parameter of the block, matrices and vectors apart, as `(HF name suffix,
    /// tensor)` in a fixed order (a quantised matrix is dequantised into a new tensor, so
    /// gradients need a model loaded with [`WeightMode::Dequantized`]). Matrices are in this
    /// crate's `[in, out]` layout (the
    /// transpose of the Hugging Face tensor of that name), e.g. `q_proj` is
    /// `[d, n_heads * head_dim]`; vectors are `[out]` biases, `[d]` norm weights or
    /// `[head_dim]` query/key norm weights. The
    /// tensors are clones of the block's own (the same autodiff nodes), so gradients can be
    /// read for them.
    #[allow(clippy::type_complexity)]
    pub fn params(
        &self,
    ) -> (
        Vec<(&'static str, Tensor<B, 2>)>,
        Vec<(&'static str, Tensor<B, 1>)>,
    ) {
        let device = self.attn_norm.weight.device();
        let matrices = self
            .projections()
            .into_iter()
            .map(|(name, p)| (name, p.weight.to_dense(&device)))
            .collect();
        let mut vectors: Vec<(&'static str, Tensor<B, 1>)> = self
            .norms()
            .into_iter()
            .map(|(name, n)| (name, n.weight.clone()))
            .collect();
        for (name, p) in [
            ("self_attn.q_proj.bias", &self.attn.q),
            ("self_attn.k_proj.bias", &self.attn.k),
            ("self_attn.v_proj.bias", &self.attn.v),
        ] {
            if let Some(b) = &p.bias {
                vectors.push((name, b.clone()));
            }
        }
        (matrices, vectors)
    }

    /// Applies `f2` to every matrix (`[in, out]`) and `f1` to every vector (`[out]` or
    /// `[d]`) of the block, e.g. to mark them as requiring gradients. Both must return a
    /// tensor of the shape they were given. Quantised matrices are dequantised first (the
    /// result is dense).
    pub fn map_params(
        self,
        f2: &mut impl FnMut(Tensor<B, 2>) -> Tensor<B, 2>,
        f1: &mut impl FnMut(Tensor<B, 1>) -> Tensor<B, 1>,
    ) -> Self {
        let device = self.attn_norm.weight.device();
        let mut proj = |p: Projection<B>| Projection {
            weight: LinearWeight::Dense(f2(p.weight.to_dense(&device))),
            bias: p.bias.map(&mut *f1),
        };
        let (q, k, v, o) = (
            proj(self.attn.q),
            proj(self.attn.k),
            proj(self.attn.v),
            proj(self.attn.o),
        );
        let (gate, up, down) = (proj(self.mlp.gate), proj(self.mlp.up), proj(self.mlp.down));
        let mut norm = |n: RmsNorm<B>| RmsNorm {
            weight: f1(n.weight),
            eps: n.eps,
        };
        Block {
            attn_norm: norm(self.attn_norm),
            attn: Attention {
                q,
                k,
                v,
                o,
                q_norm: self.attn.q_norm.map(&mut norm),
                k_norm: self.attn.k_norm.map(&mut norm),
                ..self.attn
            },
            post_attn_norm: self.post_attn_norm.map(&mut norm),
            mlp_norm: norm(self.mlp_norm),
            mlp: Mlp {
                gate,
                up,
                down,
                activation: self.mlp.activation,
            },
            post_mlp_norm: self.post_mlp_norm.map(&mut norm),
        }
    }
}

impl<B: Backend> LlamaModel<B> {
    /// Builds the model from a checkpoint (weights by HF name, already in HF layout).
    pub fn from_weights(
        config: &LlamaConfig,
        source: &dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Self::from_weights_with(config, source, device, WeightMode::Dequantized)
    }

    /// Builds the model from a checkpoint, holding its block-quantised matrices as `mode`
    /// says.
    pub fn from_weights_with(
        config: &LlamaConfig,
        source: &dyn WeightSource,
        device: &B::Device,
        mode: WeightMode,
    ) -> Result<Self, ModelError> {
        let all = OmissionSet::dense(config.n_blocks)?;
        Self::build(
            config,
            &mut FromCheckpoint::new(source, device, &config.architecture, mode),
            &all,
            device,
            mode,
        )
    }

    /// Memory-constrained mode: builds the model with only the blocks `skip` keeps
    /// resident (the embedding, final norm and head always are). The others stay in the
    /// checkpoint until [`Self::make_resident`] loads them.
    pub fn from_weights_resident(
        config: &LlamaConfig,
        source: &dyn WeightSource,
        skip: &OmissionSet,
        device: &B::Device,
        mode: WeightMode,
    ) -> Result<Self, ModelError> {
        skip.check_blocks(config.n_blocks)?;
        Self::build(
            config,
            &mut FromCheckpoint::new(source, device, &config.architecture, mode),
            skip,
            device,
            mode,
        )
    }

    /// A model with random weights of `config`'s shape (tests, benchmarks of large shapes
    /// without downloads). The same `seed` gives the same weights on any thread (the draws
    /// come from the model's own generator, not the backend's process-wide one).
    pub fn random(config: &LlamaConfig, seed: u64, device: &B::Device) -> Result<Self, ModelError> {
        let mut source = Random {
            device,
            bias: config.attention_bias,
            rng: crate::sampling::SplitMix64::new(seed),
        };
        let all = OmissionSet::dense(config.n_blocks)?;
        Self::build(config, &mut source, &all, device, WeightMode::Dequantized)
    }

    fn build(
        config: &LlamaConfig,
        src: &mut dyn ParamSource<B>,
        skip: &OmissionSet,
        device: &B::Device,
        weight_mode: WeightMode,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let c = config;
        let d = c.hidden_size;
        let embed = src.embedding("model.embed_tokens.weight", c.vocab_size, d)?;
        if embed.dtype() == DType::F16 && c.architecture.starts_with("gemma") {
            // Gemma's residual stream grows past f16's 65504 (transformers refuses it too).
            return Err(ModelError::Config(
                "Gemma models overflow f16 activations; use bf16 or f32".into(),
            ));
        }
        let mut blocks = Vec::with_capacity(c.n_blocks);
        for i in 0..c.n_blocks {
            blocks.push(if skip.skips(i) {
                None
            } else {
                Some(build_block(c, src, i)?)
            });
        }
        src.check_no_block_past(c.n_blocks)?;
        let norm = RmsNorm {
            weight: src.vector("model.norm.weight", d)?,
            eps: c.rms_norm_eps,
        };
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(src.linear("lm_head.weight", c.vocab_size, d)?)
        };
        Ok(Self {
            config: config.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            weight_mode,
            rope: RotaryTables::new(config, device),
            rope_local: RotaryTables::local(config, device),
        })
    }

    /// Loads from `source` every block `skip` keeps that is not resident yet and, when
    /// `evict` is true, drops the resident blocks `skip` omits. Returns the blocks loaded.
    pub fn make_resident(
        &mut self,
        source: &dyn WeightSource,
        skip: &OmissionSet,
        evict: bool,
    ) -> Result<Vec<usize>, ModelError> {
        skip.check_blocks(self.config.n_blocks)?;
        let device = self.device();
        let mut src =
            FromCheckpoint::new(source, &device, &self.config.architecture, self.weight_mode);
        let mut loaded = Vec::new();
        for i in 0..self.config.n_blocks {
            if skip.skips(i) {
                if evict {
                    self.blocks[i] = None;
                }
            } else if self.blocks[i].is_none() {
                self.blocks[i] = Some(build_block(&self.config, &mut src, i)?);
                loaded.push(i);
            }
        }
        Ok(loaded)
    }

    /// The same model on the autodiff backend `A` (weights copied as leaves that do not
    /// require gradients yet; see [`Self::map_blocks`] and [`Block::map_params`]).
    pub fn into_autodiff<A>(self) -> LlamaModel<A>
    where
        A: burn::tensor::backend::AutodiffBackend<InnerBackend = B>,
    {
        let device = self.device();
        let t2 = |t: Tensor<B, 2>| Tensor::<A, 2>::from_inner(t);
        let t1 = |t: Tensor<B, 1>| Tensor::<A, 1>::from_inner(t);
        let proj = |p: Projection<B>| Projection {
            weight: LinearWeight::Dense(t2(p.weight.to_dense(&device))),
            bias: p.bias.map(t1),
        };
        let norm = |n: RmsNorm<B>| RmsNorm {
            weight: t1(n.weight),
            eps: n.eps,
        };
        let blocks = self
            .blocks
            .into_iter()
            .map(|b| {
                b.map(|b| Block {
                    attn_norm: norm(b.attn_norm),
                    attn: Attention {
                        q: proj(b.attn.q),
                        k: proj(b.attn.k),
                        v: proj(b.attn.v),
                        o: proj(b.attn.o),
                        q_norm: b.attn.q_norm.map(norm),
                        k_norm: b.attn.k_norm.map(norm),
                        n_heads: b.attn.n_heads,
                        n_kv_heads: b.attn.n_kv_heads,
                        head_dim: b.attn.head_dim,
                        scale: b.attn.scale,
                        sliding: b.attn.sliding,
                    },
                    post_attn_norm: b.post_attn_norm.map(norm),
                    mlp_norm: norm(b.mlp_norm),
                    mlp: Mlp {
                        gate: proj(b.mlp.gate),
                        up: proj(b.mlp.up),
                        down: proj(b.mlp.down),
                        activation: b.mlp.activation,
                    },
                    post_mlp_norm: b.post_mlp_norm.map(norm),
                })
            })
            .collect();
        let final_norm = norm(self.norm);
        let autodiff_device = final_norm.weight.device();
        LlamaModel {
            config: self.config,
            embed: Embedding::Dense(t2(self.embed.to_dense(&device))),
            blocks,
            norm: final_norm,
            lm_head: self
                .lm_head
                .map(|h| LinearWeight::Dense(t2(h.to_dense(&device)))),
            weight_mode: WeightMode::Dequantized,
            rope: self.rope.into_autodiff(&autodiff_device),
            rope_local: self.rope_local.map(|r| r.into_autodiff(&autodiff_device)),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{load_tiny_llama, TinyLlamaSpec};
    use crate::CpuBackend;

    /// Attention in chunks of queries, with the mask held or built per chunk, gives the
    /// whole-matrix result: without and with left padding, without and with a sliding
    /// window, at every chunk size from one query to all of them.
    #[test]
    fn chunked_attention_and_a_built_per_chunk_mask_equal_the_whole_matrix() {
        let spec = TinyLlamaSpec::default();
        let (_dir, lm) = load_tiny_llama::<CpuBackend>(&spec).unwrap();
        let seq = 9;
        let reps = spec.n_heads / spec.n_kv_heads;
        for window in [None, Some(4)] {
            let model = match window {
                None => lm.model().clone(),
                Some(_) => lm.model().clone().map_blocks(|mut block| {
                    block.attn.sliding = true;
                    block
                }),
            };
            let rotary = Rotary {
                global: &model.rope,
                local: window.map(|w| (&model.rope, w)),
            };
            for left_pad in [vec![], vec![0, 3]] {
                let batch = left_pad.len().max(1);
                let tokens: Vec<i64> = (0..(batch * seq) as i64).map(|t| 3 + 5 * t % 250).collect();
                let tokens = Tensor::<CpuBackend, 1, Int>::from_data(
                    TensorData::new(tokens, [batch * seq]),
                    &model.device(),
                )
                .reshape([batch, seq]);
                let x = model.embed_tokens(tokens);
                let step = |dense_limit: usize, scores_limit: usize| {
                    StepContext::new_within(
                        rotary.clone(),
                        reps,
                        seq,
                        0,
                        &left_pad,
                        &model.device(),
                        dense_limit,
                    )
                    .with_heads(spec.n_heads, spec.n_kv_heads)
                    .with_scores_limit(scores_limit)
                };
                let run = |step: StepContext<CpuBackend>| {
                    model
                        .run_blocks_in(&step, 0..spec.n_blocks, x.clone())
                        .unwrap()
                        .into_data()
                        .to_vec::<f32>()
                        .unwrap()
                };
                let whole = step(usize::MAX, usize::MAX);
                assert!(whole.global.mask.is_some() && whole.global.causal.is_none());
                let reference = run(whole);
                let per_query = batch * spec.n_kv_heads * reps * seq;
                for (dense_limit, queries) in
                    [(usize::MAX, 1), (usize::MAX, 4), (0, 1), (0, 2), (0, seq)]
                {
                    let chunked = step(dense_limit, per_query * queries);
                    assert_eq!(chunked.global.causal.is_some(), dense_limit == 0);
                    let got = run(chunked);
                    let diff = reference
                        .iter()
                        .zip(&got)
                        .map(|(p, q)| (p - q).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        diff <= 1e-5,
                        "window {window:?}, padding {left_pad:?}, dense limit {dense_limit}, \
                         {queries} queries a chunk: max |diff| {diff}"
                    );
                }
            }
        }
    }

    /// A mask or rotary table over the repeat limit stays broadcast over the heads; the
    /// blocks' output is the same either way (the same products and sums, only their
    /// layout differs).
    #[test]
    fn a_mask_or_table_over_the_repeat_limit_stays_broadcast_with_the_same_output() {
        let spec = TinyLlamaSpec::default();
        let (_dir, lm) = load_tiny_llama::<CpuBackend>(&spec).unwrap();
        let model = lm.model();
        let (seq, offset) = (7, 0);
        // A step context with nothing repeated over the heads yet.
        let fresh_step = || {
            StepContext::new(
                model.rotary(),
                model.config.group_size(),
                seq,
                offset,
                &[],
                &model.device(),
            )
        };
        let step = fresh_step();
        let mask_dims = |s: &StepContext<CpuBackend>| s.global.mask.as_ref().map(|m| m.dims());
        let reps = spec.n_heads / spec.n_kv_heads;
        assert_eq!(mask_dims(&step), Some([1, 1, reps * seq, seq]));

        let (h, g) = (spec.n_heads, spec.n_kv_heads);
        let table_heads = |s: &StepContext<CpuBackend>| {
            let by_heads = &s.global.by_heads;
            let dims: Vec<[usize; 4]> = by_heads.iter().map(|(_, c, _)| c.dims()).collect();
            assert!(by_heads.iter().all(|(_, c, s)| c.dims() == s.dims()));
            dims
        };
        let head_dim = spec.hidden / spec.n_heads;
        let repeated = step.clone().with_heads_within(h, g, usize::MAX);
        assert_eq!(
            table_heads(&repeated),
            vec![[1, seq, h, head_dim], [1, seq, g, head_dim]]
        );
        assert_eq!(
            mask_dims(&repeated),
            Some([1, spec.n_kv_heads, reps * seq, seq])
        );
        // The limit is inclusive: exactly the repeated size repeats, one less does not.
        let needed = spec.n_kv_heads * reps * seq * seq;
        let at_limit = step.clone().with_heads_within(h, g, needed);
        assert_eq!(mask_dims(&at_limit), mask_dims(&repeated));
        let broadcast = step.with_heads_within(h, g, needed - 1);
        assert_eq!(mask_dims(&broadcast), Some([1, 1, reps * seq, seq]));
        // The tables' limit on its own: the key/value heads' tables fit, the queries' not.
        assert!(g < h);
        let tables_only_kv = fresh_step().with_heads_within(h, g, seq * g * head_dim);
        assert_eq!(table_heads(&tables_only_kv), vec![[1, seq, g, head_dim]]);
        let none = fresh_step();
        assert!(table_heads(&none).is_empty());

        let tokens: Vec<i64> = (0..seq as i64).map(|t| 3 + 5 * t).collect();
        let tokens = Tensor::<CpuBackend, 1, Int>::from_data(
            TensorData::new(tokens, [seq]),
            &model.device(),
        )
        .reshape([1, seq]);
        let x = model.embed_tokens(tokens);
        let run = |step: &StepContext<CpuBackend>| {
            model
                .run_blocks_in(step, 0..spec.n_blocks, x.clone())
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        let a = run(&repeated);
        assert_eq!(a.len(), seq * spec.hidden);
        for (what, other) in [
            ("broadcast mask", &broadcast),
            ("only the key/value tables repeated", &tables_only_kv),
            ("nothing repeated", &none),
        ] {
            let b = run(other);
            let diff = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(diff <= 1e-6, "repeated vs {what}: max |diff| {diff}");
        }
    }
}
