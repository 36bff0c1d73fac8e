//! Batch-1 decode steps on the host for models whose blocks are kept quantised.
//!
//! One decoded token costs a handful of matrix-vector products per block and a few hundred
//! tiny element-wise operations (norms, RoPE, one attention row per head, the gate's
//! activation). Run as Burn tensor operations, each of those is a dispatch, an allocation
//! and, for the quantised products, a copy between the host and a tensor: on these 2-core
//! machines that overhead was a third of a SmolLM2 decode step and kept the second core
//! idle between products. [`FusedDecoder`] runs the whole step as plain loops over `f32`
//! slices: the quantised products split their rows over rayon's pool, the attention splits
//! its heads, and the KV cache is a growing token-major buffer per block instead of a
//! tensor re-concatenated at every step.
//!
//! The arithmetic is the tensor path's ([`crate::LlamaModel::forward_last`] with a cache):
//! the same kernels and 8-bit activations, norms, softmax and rotations in `f32`, so the
//! logits agree to rounding (checked in this module's tests and on the real models).
//! Prefill stays on the tensor path (its products are matrix-matrix), and
//! [`FusedDecoder::continuing`] takes over its cache.
//!
//! Shapes: `d` hidden size, `h` query heads, `g` key/value heads, `r = h / g`, `e`
//! head_dim, `v` vocabulary, `t` cached slots.

use crate::cache::{first_held_slot, KvCache};
use crate::config::Activation;
use crate::linear::{Embedding, LinearWeight};
use crate::llama::{Block, LlamaModel, Projection, RmsNorm};
use crate::lm::host_values;
use crate::rope::{inverse_frequencies, local_inverse_frequencies};
use crate::team::{with_team, Team};
use crate::ModelError;
use burn::prelude::*;
use burn::tensor::DType;
use pudding_gguf::matmul::{Kernel, PreparedInput};
use pudding_gguf::{matmul_group, QuantizedMatrix};
use rayon::prelude::*;
use std::sync::Mutex;

/// Attention work (`h * t * e` multiply-adds) below which the heads run on one thread:
/// handing them to the pool costs more than it saves.
const PARALLEL_ATTENTION_MIN: usize = 1 << 15;

/// Incremental decoding of one sequence, one token per [`Self::step`], entirely on the
/// host. Borrows the model's weights (nothing is copied but the norms' and biases' small
/// vectors) and owns the KV cache of the kept blocks.
pub struct FusedDecoder<'a, B: Backend> {
    model: &'a LlamaModel<B>,
    /// The blocks the omission set keeps, in order.
    blocks: Vec<FusedBlock<'a>>,
    /// Final norm weight, `[d]`.
    final_norm: Vec<f32>,
    /// Inverse RoPE frequencies of the global blocks, `[e / 2]`.
    inv_freq: Vec<f64>,
    /// Inverse RoPE frequencies of the sliding-window blocks, `[e / 2]`, if any.
    local_inv_freq: Option<Vec<f64>>,
    /// Positions decoded so far (the prefill's included): the next token's position.
    len: usize,
}

/// One kept block's weights, borrowed as stored, and its cache.
struct FusedBlock<'a> {
    attn_norm: Vec<f32>,
    post_attn_norm: Option<Vec<f32>>,
    mlp_norm: Vec<f32>,
    post_mlp_norm: Option<Vec<f32>>,
    /// Per-head query and key norms, `[e]` each (Gemma 3).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    /// `[h*e, d]`, `[g*e, d]`, `[g*e, d]`.
    qkv: [&'a QuantizedMatrix; 3],
    /// Biases of q, k and v (Qwen2).
    qkv_bias: [Option<Vec<f32>>; 3],
    /// `[d, h*e]`.
    o: &'a QuantizedMatrix,
    /// `[ffn, d]` each.
    gate_up: [&'a QuantizedMatrix; 2],
    /// `[d, ffn]`.
    down: &'a QuantizedMatrix,
    activation: Activation,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f32,
    eps: f32,
    /// The attention window (tokens), for a sliding-window block.
    window: Option<usize>,
    cache: HostKv,
}

/// A block's cached keys (RoPE applied) and values, token-major: row `i` is slot
/// `first + i`, `[g * e]` values.
struct HostKv {
    keys: Vec<f32>,
    values: Vec<f32>,
    first: usize,
}

impl<'a, B: Backend> FusedDecoder<'a, B> {
    /// A decoder that continues `cache` (filled by a prefill of one unpadded sequence) with
    /// `model`, or `None` when the model does not run here: a kept block holds a dense
    /// (not block-quantised) projection or a bias outside q/k/v, the model computes in a
    /// float type other than `f32`, the cache holds a batch or padding, or a kept block
    /// is not resident. The tensor path serves those.
    pub fn continuing(
        model: &'a LlamaModel<B>,
        cache: &KvCache<B>,
    ) -> Result<Option<Self>, ModelError> {
        let config = model.config();
        if model.norm.weight.dtype() != DType::F32 || !cache.left_pad().is_empty() {
            return Ok(None);
        }
        let mut blocks = Vec::new();
        for index in cache.skip().kept() {
            let Some(block) = model.blocks.get(index).and_then(Option::as_ref) else {
                return Ok(None);
            };
            let window = config
                .features
                .sliding_window
                .as_ref()
                .filter(|_| block.attn.sliding)
                .map(|w| w.size);
            let Some(mut fused) = FusedBlock::borrow(block, window, config.rms_norm_eps)? else {
                return Ok(None);
            };
            if let Some((keys, values)) = cache.block_entry(index) {
                let [batch, g, slots, e] = keys.dims();
                if batch != 1 {
                    return Ok(None);
                }
                let token_major = |t: Tensor<B, 4>| host_values(t.swap_dims(1, 2));
                fused.cache = HostKv {
                    keys: token_major(keys)?,
                    values: token_major(values)?,
                    first: cache.len() - slots,
                };
                debug_assert_eq!(fused.cache.keys.len(), slots * g * e);
            }
            blocks.push(fused);
        }
        Ok(Some(Self {
            model,
            blocks,
            final_norm: host_values(model.norm.weight.clone())?,
            inv_freq: inverse_frequencies(config),
            local_inv_freq: local_inverse_frequencies(config),
            len: cache.len(),
        }))
    }

    /// Positions held so far (the prompt's and every decoded token's).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before any position was decoded or prefilled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds `token` at position [`Self::len`] through the kept blocks, appends its keys and
    /// values, and returns the next token's logits, `[v]` (in `f32`, soft-capped when the
    /// model caps them). An error when the context is full or the id is out of the
    /// vocabulary.
    ///
    /// With more than one thread in rayon's pool, the step runs on a [`Team`] of all of
    /// them (one wake-up per step instead of one per product); when another team is
    /// running, on rayon's fork-join.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>, ModelError> {
        match with_team(|team| self.step_on(token, Some(team))) {
            Some(result) => result,
            None => self.step_on(token, None),
        }
    }

    fn step_on(&mut self, token: u32, team: Option<&Team>) -> Result<Vec<f32>, ModelError> {
        let config = self.model.config();
        let position = self.len;
        if position >= config.max_seq_len {
            return Err(ModelError::PromptTooLong {
                len: position + 1,
                max: config.max_seq_len,
            });
        }
        self.model.check_ids(&[token])?;
        let mut x = self.embed(token)?;
        let global = rotation(&self.inv_freq, position);
        let local = self
            .local_inv_freq
            .as_ref()
            .map(|inv| rotation(inv, position));
        for block in &mut self.blocks {
            let rope = match (&local, block.window) {
                (Some(local), Some(_)) => local,
                _ => &global,
            };
            block.forward(&mut x, position, rope, team)?;
        }
        self.len += 1;
        let x = rms_norm(&x, &self.final_norm, config.rms_norm_eps);
        let mut logits = self.head(x, team)?;
        if let Some(cap) = config.features.final_logit_softcap {
            logits.iter_mut().for_each(|l| *l = (*l / cap).tanh() * cap);
        }
        Ok(logits)
    }

    /// The token's embedding row, `[d]`, times the embedding scale.
    fn embed(&self, token: u32) -> Result<Vec<f32>, ModelError> {
        let mut row = match &self.model.embed {
            Embedding::Quantized(m) => m.dequantize_rows(&[token])?,
            Embedding::Dense(e) => {
                let index = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(vec![i64::from(token)], [1]),
                    &e.device(),
                );
                host_values(e.clone().select(0, index))?
            }
        };
        if let Some(scale) = self.model.config().features.embedding_scale {
            row.iter_mut().for_each(|v| *v *= scale);
        }
        Ok(row)
    }

    /// The output head: normalised `x` `[d]` -> logits `[v]`.
    fn head(&self, x: Vec<f32>, team: Option<&Team>) -> Result<Vec<f32>, ModelError> {
        let dense = |w: Tensor<B, 2>| {
            let d = x.len();
            let x = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [1, d]), &w.device());
            host_values(x.matmul(w))
        };
        match (&self.model.lm_head, &self.model.embed) {
            (Some(LinearWeight::Quantized(m)), _) | (None, Embedding::Quantized(m)) => {
                product(team, m, &x)
            }
            (Some(LinearWeight::Dense(w)), _) => dense(w.clone()),
            (None, Embedding::Dense(e)) => dense(e.clone().transpose()),
        }
    }
}

impl<'a> FusedBlock<'a> {
    /// `block`'s weights when every projection is block-quantised and only q/k/v carry
    /// biases; `None` otherwise. The cache starts empty.
    fn borrow<B: Backend>(
        block: &'a Block<B>,
        window: Option<usize>,
        eps: f32,
    ) -> Result<Option<Self>, ModelError> {
        let quantized = |p: &'a Projection<B>| match &p.weight {
            LinearWeight::Quantized(m) => Some(m),
            LinearWeight::Dense(_) => None,
        };
        let attn = &block.attn;
        let mlp = &block.mlp;
        let (Some(q), Some(k), Some(v), Some(o), Some(gate), Some(up), Some(down)) = (
            quantized(&attn.q),
            quantized(&attn.k),
            quantized(&attn.v),
            quantized(&attn.o),
            quantized(&mlp.gate),
            quantized(&mlp.up),
            quantized(&mlp.down),
        ) else {
            return Ok(None);
        };
        if [&attn.o, &mlp.gate, &mlp.up, &mlp.down]
            .iter()
            .any(|p| p.bias.is_some())
        {
            return Ok(None);
        }
        let vector = |t: &Tensor<B, 1>| host_values(t.clone());
        let norm = |n: &RmsNorm<B>| vector(&n.weight);
        let optional_norm = |n: &Option<RmsNorm<B>>| n.as_ref().map(norm).transpose();
        let bias = |p: &Projection<B>| p.bias.as_ref().map(vector).transpose();
        Ok(Some(Self {
            attn_norm: norm(&block.attn_norm)?,
            post_attn_norm: optional_norm(&block.post_attn_norm)?,
            mlp_norm: norm(&block.mlp_norm)?,
            post_mlp_norm: optional_norm(&block.post_mlp_norm)?,
            q_norm: optional_norm(&attn.q_norm)?,
            k_norm: optional_norm(&attn.k_norm)?,
            qkv: [q, k, v],
            qkv_bias: [bias(&attn.q)?, bias(&attn.k)?, bias(&attn.v)?],
            o,
            gate_up: [gate, up],
            down,
            activation: mlp.activation,
            heads: attn.n_heads,
            kv_heads: attn.n_kv_heads,
            head_dim: attn.head_dim,
            scale: attn.scale as f32,
            eps,
            window,
            cache: HostKv {
                keys: Vec::new(),
                values: Vec::new(),
                first: 0,
            },
        }))
    }

    /// The block on the residual stream `x` (`[d]`, updated in place) of the token at
    /// `position`, whose rotation is `rope` (`(cos, sin)`, `[e]` each).
    fn forward(
        &mut self,
        x: &mut [f32],
        position: usize,
        rope: &(Vec<f32>, Vec<f32>),
        team: Option<&Team>,
    ) -> Result<(), ModelError> {
        let e = self.head_dim;
        let normed = rms_norm(x, &self.attn_norm, self.eps);
        let mut qkv = products(team, &self.qkv, &normed)?;
        for (y, bias) in qkv.iter_mut().zip(&self.qkv_bias) {
            if let Some(bias) = bias {
                y.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
            }
        }
        let (v, rest) = qkv.split_last_mut().expect("three products");
        let (k, q) = rest.split_last_mut().expect("three products");
        let q = &mut q[0];
        for (t, norm) in [(&mut *q, &self.q_norm), (&mut *k, &self.k_norm)] {
            for head in t.chunks_exact_mut(e) {
                if let Some(norm) = norm {
                    let normed = rms_norm(head, norm, self.eps);
                    head.copy_from_slice(&normed);
                }
                rotate_half(head, &rope.0, &rope.1);
            }
        }
        self.cache.keys.extend_from_slice(k);
        self.cache.values.extend_from_slice(v);
        let attended = self.attend(q, position, team);
        let a = product(team, self.o, &attended)?;
        add_branch(x, a, &self.post_attn_norm, self.eps);

        let normed = rms_norm(x, &self.mlp_norm, self.eps);
        let mut gate_up = products(team, &self.gate_up, &normed)?;
        let up = gate_up.pop().expect("two products");
        let mut hidden = gate_up.pop().expect("two products");
        let activation = self.activation;
        hidden.iter_mut().zip(&up).for_each(|(g, u)| {
            *g = match activation {
                Activation::Silu => silu(*g),
                Activation::GeluTanh => gelu_tanh(*g),
            } * u
        });
        let m = product(team, self.down, &hidden)?;
        add_branch(x, m, &self.post_mlp_norm, self.eps);
        self.trim(position + 1);
        Ok(())
    }

    /// Softmax attention of the query heads `q` (`[h*e]`, rotated) at `position` over the
    /// cached keys it may see (all of them, or the last `window`): `[h*e]`.
    fn attend(&self, q: &[f32], position: usize, team: Option<&Team>) -> Vec<f32> {
        let (e, g) = (self.head_dim, self.kv_heads);
        let r = self.heads / g;
        let row = g * e;
        let first = first_held_slot(position + 1, self.window).max(self.cache.first);
        let skip_rows = first - self.cache.first;
        let keys = &self.cache.keys[skip_rows * row..];
        let values = &self.cache.values[skip_rows * row..];
        let slots = keys.len() / row;
        let scale = self.scale;
        let head = |h: usize, out: &mut [f32]| {
            let kv = h / r;
            let qh = &q[h * e..(h + 1) * e];
            let mut scores: Vec<f32> = keys
                .chunks_exact(row)
                .map(|k| dot(qh, &k[kv * e..(kv + 1) * e]) * scale)
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let mut sum = 0.0f32;
            scores.iter_mut().for_each(|s| {
                *s = (*s - max).exp();
                sum += *s;
            });
            out.fill(0.0);
            for (p, v) in scores.iter().zip(values.chunks_exact(row)) {
                let w = p / sum;
                out.iter_mut()
                    .zip(&v[kv * e..(kv + 1) * e])
                    .for_each(|(o, v)| *o += w * v);
            }
        };
        let mut out = vec![0.0f32; self.heads * e];
        let parallel = self.heads * slots * e >= PARALLEL_ATTENTION_MIN;
        if let (Some(team), true) = (team, parallel) {
            let shared = SharedOut(out.as_mut_ptr());
            team.run(self.heads, &|h| {
                // SAFETY: share `h` writes only head `h`'s `e` values of `out`, which
                // outlives the job.
                let slice = unsafe { std::slice::from_raw_parts_mut(shared.at(h * e), e) };
                head(h, slice);
            });
        } else if rayon::current_num_threads() > 1 && parallel {
            out.par_chunks_exact_mut(e)
                .enumerate()
                .for_each(|(h, out)| head(h, out));
        } else {
            out.chunks_exact_mut(e)
                .enumerate()
                .for_each(|(h, out)| head(h, out));
        }
        out
    }

    /// Drops the slots no later query of a sliding-window block can see, once they make up
    /// as many as the window (so the copy is paid once per `window` tokens).
    fn trim(&mut self, slots: usize) {
        let Some(window) = self.window else {
            return;
        };
        let first = first_held_slot(slots, Some(window));
        let stale = first.saturating_sub(self.cache.first);
        if stale >= window {
            let row = self.kv_heads * self.head_dim;
            self.cache.keys.drain(..stale * row);
            self.cache.values.drain(..stale * row);
            self.cache.first = first;
        }
    }
}

/// An output buffer the shares of a team job write into, each its own disjoint range.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: every job using it writes disjoint ranges, and the buffer outlives the job
// (`Team::run` returns only when every share has finished).
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

impl SharedOut {
    /// The pointer `offset` values in. Taking it through a method makes closures capture
    /// the whole (`Sync`) wrapper, not its raw pointer field.
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// `x W_i^T` for each matrix of `mats` (the same input width), `x` one row: `[rows_i]`
/// each. On a team, the rows are shared out in runs of a few dozen and every thread claims
/// runs until none is left; without one, `pudding-gguf`'s rayon fork-join.
fn products(
    team: Option<&Team>,
    mats: &[&QuantizedMatrix],
    x: &[f32],
) -> Result<Vec<Vec<f32>>, ModelError> {
    let Some(team) = team else {
        return Ok(matmul_group(mats, x)?);
    };
    let input = PreparedInput::new(x, mats)?;
    let kernel = Kernel::detect();
    let total: usize = mats.iter().map(|m| m.rows()).sum();
    // About eight runs per thread: enough to even out the threads' speeds, few enough that
    // claiming them costs nothing.
    let run = total.div_ceil(team.threads() * 8).max(16);
    let shares: Vec<(usize, std::ops::Range<usize>)> = mats
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            (0..m.rows())
                .step_by(run)
                .map(move |start| (i, start..(start + run).min(m.rows())))
        })
        .collect();
    let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![0.0f32; m.rows()]).collect();
    let targets: Vec<SharedOut> = outs.iter_mut().map(|o| SharedOut(o.as_mut_ptr())).collect();
    let error = Mutex::new(None);
    team.run(shares.len(), &|share| {
        let (i, rows) = shares[share].clone();
        // SAFETY: the shares of matrix `i` are disjoint row ranges of its output, which
        // outlives the job.
        let out = unsafe { std::slice::from_raw_parts_mut(targets[i].at(rows.start), rows.len()) };
        if let Err(e) = mats[i].rows_into(&input, rows, kernel, out) {
            *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
    });
    match error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e.into()),
        None => Ok(outs),
    }
}

/// [`products`] of one matrix: `[rows]`.
fn product(team: Option<&Team>, m: &QuantizedMatrix, x: &[f32]) -> Result<Vec<f32>, ModelError> {
    Ok(products(team, &[m], x)?
        .pop()
        .expect("one product per matrix"))
}

/// Adds a branch's output (attention or MLP, `[d]`) to the residual stream `x`, through
/// its post-norm when the block has one (Gemma's sandwich norms).
fn add_branch(x: &mut [f32], branch: Vec<f32>, post_norm: &Option<Vec<f32>>, eps: f32) {
    let branch = match post_norm {
        Some(norm) => rms_norm(&branch, norm, eps),
        None => branch,
    };
    x.iter_mut().zip(&branch).for_each(|(x, b)| *x += b);
}

/// `(cos, sin)` of every rotate-half column at `position`, `[e]` each (angles in `f64`, as
/// the tensor path's tables).
fn rotation(inv_freq: &[f64], position: usize) -> (Vec<f32>, Vec<f32>) {
    let angles = || {
        inv_freq
            .iter()
            .chain(inv_freq)
            .map(move |f| position as f64 * f)
    };
    (
        angles().map(|a| a.cos() as f32).collect(),
        angles().map(|a| a.sin() as f32).collect(),
    )
}

/// Rotate-half RoPE of one head in place: halves `(a, b)` become `(a cos - b sin, b cos + a
/// sin)`.
fn rotate_half(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = head.len() / 2;
    let (a, b) = head.split_at_mut(half);
    for j in 0..half {
        let (x, y) = (a[j], b[j]);
        a[j] = x * cos[j] - y * sin[j];
        b[j] = y * cos[j + half] + x * sin[j + half];
    }
}

/// `x / sqrt(mean(x^2) + eps) * weight`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (mean_square + eps).sqrt();
    x.iter().zip(weight).map(|(v, w)| v * inv * w).collect()
}

/// `sum(a * b)` in eight independent lanes, which the compiler turns into SIMD (a single
/// running sum is one dependent addition after another; the attention's query-key
/// products were a third of a decode step that way).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (`gelu_pytorch_tanh`).
fn gelu_tanh(x: f32) -> f32 {
    let inner = (2.0 / std::f32::consts::PI).sqrt() * (x + 0.044_715 * x * x * x);
    0.5 * x * (1.0 + inner.tanh())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SlidingWindow;
    use crate::gguf::GgmlType;
    use crate::testing::{load_tiny_llama, TinyLlamaSpec};
    use crate::{CpuBackend, LlamaConfig, LlamaLm, WeightMode};
    use pudding_core::{GenerationConfig, OmissionSet};

    type B = CpuBackend;

    /// `model` with every block projection quantised to `dtype` (kept as stored).
    fn quantized(model: LlamaModel<B>, dtype: GgmlType) -> LlamaModel<B> {
        let quantize = |p: &mut Projection<B>| {
            let w = p.weight.to_dense(&Default::default()).transpose(); // [out, in]
            let [rows, cols] = w.dims();
            let values = host_values(w).unwrap();
            let m = QuantizedMatrix::quantize_f32("w", dtype, rows, cols, &values).unwrap();
            p.weight = LinearWeight::Quantized(m);
        };
        model.map_blocks(|mut block| {
            for p in [
                &mut block.attn.q,
                &mut block.attn.k,
                &mut block.attn.v,
                &mut block.attn.o,
                &mut block.mlp.gate,
                &mut block.mlp.up,
                &mut block.mlp.down,
            ] {
                quantize(p);
            }
            block
        })
    }

    fn tokens(ids: &[u32]) -> Tensor<B, 2, Int> {
        let data: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        Tensor::from_data(TensorData::new(data, [1, ids.len()]), &Default::default())
    }

    /// Logits after each of `steps` fed one at a time after `prompt`, on the tensor path
    /// and on the fused path: the largest difference.
    fn compare(model: &LlamaModel<B>, skip: &OmissionSet, prompt: &[u32], steps: &[u32]) -> f32 {
        let mut cache = KvCache::new(skip.clone());
        model
            .forward_last(tokens(prompt), skip, Some(&mut cache))
            .unwrap();
        let mut fused = FusedDecoder::continuing(model, &cache)
            .unwrap()
            .expect("every kept block is quantised");
        assert_eq!(fused.len(), prompt.len());
        let mut worst = 0.0f32;
        for &token in steps {
            let want = host_values(
                model
                    .forward_last(tokens(&[token]), skip, Some(&mut cache))
                    .unwrap(),
            )
            .unwrap();
            let got = fused.step(token).unwrap();
            assert_eq!(want.len(), got.len());
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            worst = worst.max(diff / scale);
        }
        assert_eq!(fused.len(), prompt.len() + steps.len());
        worst
    }

    /// A Gemma-3-like (GeGLU, QK-norm, sandwich norms, embedding scale, a 3-token window on
    /// blocks 0 and 2) or Qwen2-like (q/k/v biases) random model.
    fn random(gemma: bool) -> LlamaConfig {
        let mut c = LlamaConfig::smollm2_135m_shape(64);
        c.n_blocks = 4;
        c.hidden_size = 64;
        c.intermediate_size = 96;
        c.n_heads = 4;
        c.n_kv_heads = 2;
        c.head_dim = 16;
        c.vocab_size = 50;
        if gemma {
            c.architecture = "gemma3".into();
            c.features.activation = Activation::GeluTanh;
            c.features.embedding_scale = Some(8.0);
            c.features.qk_norm = true;
            c.features.sandwich_norms = true;
            c.features.attention_scale = Some(0.3);
            c.features.final_logit_softcap = Some(5.0);
            c.features.sliding_window = Some(SlidingWindow {
                size: 3,
                global_every: 2,
                local_rope_theta: 10_000.0,
                global_blocks: None,
            });
        } else {
            c.architecture = "qwen2".into();
            c.attention_bias = true;
        }
        c
    }

    #[test]
    fn fused_steps_give_the_tensor_paths_logits() {
        for gemma in [false, true] {
            let config = random(gemma);
            let model = quantized(
                LlamaModel::random(&config, 3, &Default::default()).unwrap(),
                GgmlType::Q8_0,
            );
            // One thread (no team), and three (a team, unless another test holds it).
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                for skip in ["", "1", "0,3"] {
                    let skip = OmissionSet::parse(skip, 4).unwrap();
                    // Past the window several times over, so the windowed caches are trimmed.
                    let steps = [5, 6, 8, 10, 11, 12, 13, 3];
                    let diff = pool.install(|| compare(&model, &skip, &[1, 7, 9, 4, 2], &steps));
                    assert!(
                        diff < 1e-4,
                        "gemma {gemma} skip {skip} threads {threads}: {diff}"
                    );
                }
            }
        }
    }

    #[test]
    fn fused_steps_on_a_quantised_gguf_give_the_tensor_paths_logits() {
        for dtype in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let spec = TinyLlamaSpec {
                matrix_type: dtype,
                ..Default::default()
            };
            let (dir, _) = load_tiny_llama::<B>(&spec).unwrap();
            let lm = LlamaLm::<B>::load_with(
                &dir.path().join("tiny.gguf"),
                &Default::default(),
                WeightMode::Quantized,
            )
            .unwrap();
            let model = lm.model();
            assert!(matches!(model.embed, Embedding::Quantized(_)));
            let skip = OmissionSet::parse("2", 4).unwrap();
            let diff = compare(
                model,
                &skip,
                &(10..30).collect::<Vec<_>>(),
                &[40, 41, 42, 43],
            );
            assert!(diff < 1e-4, "{dtype:?}: {diff}");
            // Generation takes the fused path by default, with the same tokens.
            let config = GenerationConfig {
                max_new_tokens: 12,
                ..Default::default()
            };
            let prompt = vec![(5..25).collect::<Vec<u32>>()];
            let fused = crate::generate_ids_with(
                model,
                &prompt,
                &skip,
                &config,
                0,
                crate::DecodePath::Auto,
            )
            .unwrap();
            let tensor = crate::generate_ids_with(
                model,
                &prompt,
                &skip,
                &config,
                0,
                crate::DecodePath::Tensor,
            )
            .unwrap();
            assert_eq!(fused.ids, tensor.ids);
            assert_eq!(fused.finish, tensor.finish);
        }
    }

    #[test]
    fn dense_blocks_and_padded_batches_stay_on_the_tensor_path() {
        let config = random(false);
        let dense = LlamaModel::<B>::random(&config, 3, &Default::default()).unwrap();
        let skip = OmissionSet::dense(4).unwrap();
        let cache = KvCache::new(skip.clone());
        assert!(FusedDecoder::continuing(&dense, &cache).unwrap().is_none());
        let model = quantized(dense, GgmlType::Q8_0);
        assert!(FusedDecoder::continuing(&model, &cache).unwrap().is_some());
        let padded = KvCache::with_left_padding(skip, vec![0, 2]);
        assert!(FusedDecoder::continuing(&model, &padded).unwrap().is_none());
    }

    #[test]
    fn a_full_context_is_an_error() {
        let mut config = random(false);
        config.max_seq_len = 6;
        let model = quantized(
            LlamaModel::random(&config, 3, &Default::default()).unwrap(),
            GgmlType::Q8_0,
        );
        let skip = OmissionSet::dense(4).unwrap();
        let mut cache = KvCache::new(skip.clone());
        model
            .forward_last(tokens(&[1, 2, 3, 4, 5]), &skip, Some(&mut cache))
            .unwrap();
        let mut fused = FusedDecoder::continuing(&model, &cache).unwrap().unwrap();
        assert!(matches!(
            fused.step(999),
            Err(ModelError::TokenOutOfVocab { .. })
        ));
        assert_eq!(fused.len(), 5);
        fused.step(6).unwrap();
        assert!(matches!(
            fused.step(7),
            Err(ModelError::PromptTooLong { len: 7, max: 6 })
        ));
    }
}
