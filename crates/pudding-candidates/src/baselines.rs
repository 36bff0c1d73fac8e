//! Static depth-pruning baselines, each giving one omission set for a model:
//!
//! - **SLEB**: [`crate::greedy_search`] with the perplexity loss on plain text.
//! - **ShortGPT (Block Influence)**: one shot; `BI_j = 1 - cos(h_in, h_out)` of block `j`,
//!   averaged over tokens; drop the k blocks with the lowest BI.
//! - **Shortened LLaMA (PPL)**: one shot; the perplexity with each block removed alone;
//!   drop the k blocks whose removal hurts least.
//! - **Shortened LLaMA (Taylor+)**: one shot; the first-order Taylor estimate of the loss
//!   change when a block's weights are zeroed, `sum |w * dL/dw|` over the block's weights
//!   with the gradient of the perplexity loss accumulated over the calibration text
//!   (needs an autodiff backend); drop the k blocks with the lowest score.

use crate::greedy::{SearchError, TrialEvaluator};
use crate::{CalibrationSample, GreedyConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use pudding_core::{Candidate, CandidatePool, ModelFingerprint, OmissionSet, Shard};
use pudding_models::{LlamaLm, LlamaModel};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A one-shot baseline's outcome: a score per block and the chosen set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockScores {
    /// Method name (`shortgpt_bi`, `shortened_llama_ppl`).
    pub method: String,
    /// One score per block (lower = more removable); protected blocks hold `None`.
    pub scores: Vec<Option<f64>>,
    /// The k most removable unprotected blocks.
    pub set: OmissionSet,
}

fn pick_lowest(
    method: &str,
    scores: Vec<Option<f64>>,
    k: usize,
) -> Result<BlockScores, SearchError> {
    let n = scores.len();
    if k == 0 {
        return Err(SearchError::Invalid(format!(
            "{method}: cannot omit 0 blocks: k must be at least 1"
        )));
    }
    if let Some((block, score)) = scores
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.filter(|s| !s.is_finite()).map(|s| (i, s)))
    {
        return Err(SearchError::Invalid(format!(
            "{method}: block {block} scored {score}: the model produced non-finite numbers \
             (try --dtype f32, or check the weights)"
        )));
    }
    let mut ranked: Vec<(usize, f64)> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    if k > ranked.len() {
        return Err(SearchError::Invalid(format!(
            "cannot omit {k} blocks: only {} are unprotected",
            ranked.len()
        )));
    }
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let set = OmissionSet::new(ranked[..k].iter().map(|r| r.0), n)?;
    Ok(BlockScores {
        method: method.to_string(),
        scores,
        set,
    })
}

fn unprotected(n_blocks: usize, config: &GreedyConfig) -> Vec<usize> {
    (config.protect_first..n_blocks.saturating_sub(config.protect_last)).collect()
}

/// ShortGPT's Block Influence on the dense model, averaged over every token of every
/// sample's correct choice (context + continuation).
pub fn shortgpt_block_influence<B: Backend>(
    lm: &LlamaLm<B>,
    samples: &[CalibrationSample],
    config: &GreedyConfig,
) -> Result<BlockScores, SearchError> {
    let rows = block_influence_rows(lm, samples)?;
    block_influence_from_rows(&rows, lm.model().config().n_blocks, config)
}

/// One calibration sample's share of ShortGPT's Block Influence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InfluenceRow {
    /// Tokens of the sample (context + correct continuation).
    pub tokens: usize,
    /// Per block: the sum over the sample's tokens of `1 - cos(h_in, h_out)`.
    pub sums: Vec<f64>,
}

/// Each sample's [`InfluenceRow`] on the dense model, in sample order: what
/// [`shortgpt_block_influence`] averages, and what a shard of it (`pudding baseline
/// --shard`) keeps so that the merged scores are the single run's to the last bit.
pub fn block_influence_rows<B: Backend>(
    lm: &LlamaLm<B>,
    samples: &[CalibrationSample],
) -> Result<Vec<InfluenceRow>, SearchError> {
    let model = lm.model();
    let n_blocks = model.config().n_blocks;
    let device = model.device();
    let mut rows = Vec::with_capacity(samples.len());
    for (i, sample) in samples.iter().enumerate() {
        crate::greedy::check_sample(sample, i)?;
        let r = &sample.choices[sample.gold];
        let ids: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
        lm.check_ids(&ids)?;
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let n = ids.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        let mut x = model.embed_tokens(tokens);
        let mut sums = Vec::with_capacity(n_blocks);
        for j in 0..n_blocks {
            let y = model.block_forward(j, x.clone(), 0)?;
            let dot = (x.clone() * y.clone()).sum_dim(2);
            let norms =
                (x.clone().powi_scalar(2).sum_dim(2) * y.clone().powi_scalar(2).sum_dim(2)).sqrt();
            let cos = (dot / norms.clamp_min(1e-12)).sum();
            let total = cos
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .map_err(|e| SearchError::Invalid(format!("backend read-back failed: {e:?}")))?[0];
            sums.push(n as f64 - total); // sum over tokens of (1 - cos)
            x = y;
        }
        rows.push(InfluenceRow { tokens: n, sums });
    }
    Ok(rows)
}

/// ShortGPT's choice from the samples' [`InfluenceRow`]s (in sample order): per block, the
/// rows' sums added in order over the total tokens.
pub fn block_influence_from_rows(
    rows: &[InfluenceRow],
    n_blocks: usize,
    config: &GreedyConfig,
) -> Result<BlockScores, SearchError> {
    if rows.is_empty() {
        return Err(SearchError::Invalid(
            "ShortGPT's Block Influence needs at least one calibration sample".into(),
        ));
    }
    if let Some(row) = rows.iter().find(|r| r.sums.len() != n_blocks) {
        return Err(SearchError::Invalid(format!(
            "a Block Influence row has {} blocks, the model {n_blocks}",
            row.sums.len()
        )));
    }
    let mut sums = vec![0.0f64; n_blocks];
    let mut tokens_seen = 0usize;
    for row in rows {
        for (sum, value) in sums.iter_mut().zip(&row.sums) {
            *sum += value;
        }
        tokens_seen += row.tokens;
    }
    let keep = unprotected(n_blocks, config);
    let scores = (0..n_blocks)
        .map(|j| keep.contains(&j).then(|| sums[j] / tokens_seen as f64))
        .collect();
    pick_lowest("shortgpt_bi", scores, config.k)
}

/// Shortened LLaMA's PPL criterion: the loss (use the perplexity loss) with each
/// unprotected block removed alone.
pub fn shortened_llama_ppl(
    evaluator: &mut dyn TrialEvaluator,
    n_blocks: usize,
    config: &GreedyConfig,
) -> Result<BlockScores, SearchError> {
    let whole = Shard { index: 0, count: 1 };
    let trials = removal_losses(evaluator, n_blocks, config, whole)?;
    shortened_llama_ppl_from_losses(&trials, n_blocks, config)
}

/// `shard`'s share (by position) of the unprotected blocks, each with the loss of the
/// model without it: what [`shortened_llama_ppl`] ranks. Each block's loss is computed
/// alone, so the shards' losses are the single run's.
pub fn removal_losses(
    evaluator: &mut dyn TrialEvaluator,
    n_blocks: usize,
    config: &GreedyConfig,
    shard: Shard,
) -> Result<Vec<(usize, f64)>, SearchError> {
    let blocks = shard.select(unprotected(n_blocks, config));
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let losses = evaluator.phase(&OmissionSet::dense(n_blocks)?, &blocks)?;
    if losses.len() != blocks.len() {
        return Err(SearchError::Invalid(format!(
            "the evaluator returned {} losses for {} blocks",
            losses.len(),
            blocks.len()
        )));
    }
    Ok(blocks.into_iter().zip(losses).collect())
}

/// The PPL criterion's choice from every unprotected block's removal loss, in block order.
pub fn shortened_llama_ppl_from_losses(
    trials: &[(usize, f64)],
    n_blocks: usize,
    config: &GreedyConfig,
) -> Result<BlockScores, SearchError> {
    let blocks = unprotected(n_blocks, config);
    let tried: Vec<usize> = trials.iter().map(|t| t.0).collect();
    if tried != blocks {
        return Err(SearchError::Invalid(format!(
            "the removal losses cover blocks {tried:?}, the criterion needs {blocks:?}"
        )));
    }
    let mut scores = vec![None; n_blocks];
    for &(b, l) in trials {
        scores[b] = Some(l);
    }
    pick_lowest("shortened_llama_ppl", scores, config.k)
}

/// Per-parameter Taylor scores `sum |w * dL/dw|` of `blocks`, where L is the summed
/// next-token negative log-likelihood of every text in `texts` (token ids, at least two
/// each) under the dense model, gradients accumulated over the texts. `model`'s
/// parameters must require gradients. Returns, per requested block, `(parameter name,
/// score)` in [`pudding_models::llama::Block::params`] order.
pub fn taylor_importance<A: AutodiffBackend>(
    model: &LlamaModel<A>,
    texts: &[Vec<u32>],
    blocks: &[usize],
) -> Result<Vec<Vec<(&'static str, f64)>>, SearchError> {
    type Grads<I> = (Vec<Tensor<I, 2>>, Vec<Tensor<I, 1>>);
    if texts.is_empty() {
        return Err(SearchError::Invalid(
            "the Taylor criterion needs at least one calibration text".into(),
        ));
    }
    let n_blocks = model.config().n_blocks;
    let dense = OmissionSet::dense(n_blocks)?;
    let device = model.device();
    let mut sums: Vec<Option<Grads<A::InnerBackend>>> = vec![None; blocks.len()];
    for ids in texts {
        model.check_ids(ids)?;
        let n = ids.len();
        if n < 2 {
            return Err(SearchError::Invalid(
                "a Taylor calibration text needs at least two tokens".into(),
            ));
        }
        let input: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        let target: Vec<i64> = input[1..].to_vec();
        let tokens = Tensor::<A, 2, Int>::from_data(TensorData::new(input, [1, n]), &device);
        let target =
            Tensor::<A, 3, Int>::from_data(TensorData::new(target, [1, n - 1, 1]), &device);
        let logits = model.forward(tokens, &dense, None)?;
        let nll = log_softmax(logits.narrow(1, 0, n - 1), 2)
            .gather(2, target)
            .sum()
            .neg();
        let grads = nll.backward();
        for (slot, &b) in blocks.iter().enumerate() {
            let (matrices, vectors) = model.block(b)?.params();
            let missing = |name: &str| {
                SearchError::Invalid(format!(
                    "no gradient for block {b} {name}: the parameters must require gradients"
                ))
            };
            let g2 = matrices
                .iter()
                .map(|(name, w)| w.grad(&grads).ok_or_else(|| missing(name)))
                .collect::<Result<Vec<_>, _>>()?;
            let g1 = vectors
                .iter()
                .map(|(name, w)| w.grad(&grads).ok_or_else(|| missing(name)))
                .collect::<Result<Vec<_>, _>>()?;
            sums[slot] = Some(match sums[slot].take() {
                None => (g2, g1),
                Some((s2, s1)) => (
                    s2.into_iter().zip(g2).map(|(a, b)| a + b).collect(),
                    s1.into_iter().zip(g1).map(|(a, b)| a + b).collect(),
                ),
            });
        }
    }
    let read = |t: Tensor<A::InnerBackend, 1>| -> Result<f64, SearchError> {
        Ok(pudding_models::host_values(t)?[0] as f64)
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (slot, &b) in blocks.iter().enumerate() {
        let (matrices, vectors) = model.block(b)?.params();
        let mut scores = Vec::new();
        if let Some((g2, g1)) = sums[slot].take() {
            for ((name, w), g) in matrices.into_iter().zip(g2) {
                scores.push((name, read((w.inner() * g).abs().sum())?));
            }
            for ((name, w), g) in vectors.into_iter().zip(g1) {
                scores.push((name, read((w.inner() * g).abs().sum())?));
            }
        }
        out.push(scores);
    }
    Ok(out)
}

/// Shortened LLaMA's Taylor+ criterion: a block's score is the sum of its parameters'
/// [`taylor_importance`]; the k unprotected blocks with the lowest scores are dropped.
pub fn shortened_llama_taylor<A: AutodiffBackend>(
    model: &LlamaModel<A>,
    texts: &[Vec<u32>],
    config: &GreedyConfig,
) -> Result<BlockScores, SearchError> {
    let n_blocks = model.config().n_blocks;
    let blocks = unprotected(n_blocks, config);
    let per_param = taylor_importance(model, texts, &blocks)?;
    let mut scores = vec![None; n_blocks];
    for (b, params) in blocks.into_iter().zip(per_param) {
        scores[b] = Some(params.iter().map(|(_, s)| s).sum());
    }
    pick_lowest("shortened_llama_taylor", scores, config.k)
}

/// A one-shot baseline's choice as the one-candidate pool `pudding baseline` writes: the
/// set, with the method, the calibration size and every block's score as provenance.
pub fn baseline_pool(
    fingerprint: &ModelFingerprint,
    scores: BlockScores,
    calib: usize,
) -> Result<CandidatePool, SearchError> {
    let provenance = json!({"method": scores.method, "calib": calib, "scores": scores.scores});
    Ok(CandidatePool::new(
        fingerprint.clone(),
        vec![Candidate {
            set: scores.set,
            provenance,
        }],
    )?)
}

/// One shard of a one-shot baseline's calibration statistics (`pudding baseline --shard
/// I/N`); [`merge_baseline_shards`] joins the N shards into the pool one process writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineShard {
    /// Which shard.
    pub shard: Shard,
    /// The method, as `pudding baseline --method` names it (`shortgpt`, `shortened-ppl`).
    pub method: String,
    /// Blocks to omit.
    pub k: usize,
    /// Calibration passages of the whole run.
    pub calib: usize,
    /// The model the statistics are of.
    pub fingerprint: ModelFingerprint,
    /// This shard's statistics.
    pub statistics: BaselineStatistics,
}

/// What a [`BaselineShard`] computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineStatistics {
    /// ShortGPT: one row per calibration passage of the shard's share (by position), in
    /// order.
    BlockInfluence(Vec<InfluenceRow>),
    /// Shortened LLaMA (PPL): the shard's share (by position) of the unprotected blocks,
    /// each with the loss of the model without it ([`removal_losses`]).
    RemovalLosses(Vec<(usize, f64)>),
}

/// Joins the [`BaselineShard`]s of one run (any order) into the pool one process writes
/// ([`baseline_pool`]): the rows or losses concatenated in shard order and ranked as
/// [`shortgpt_block_influence`] or [`shortened_llama_ppl`] rank them. Refuses a missing or
/// repeated shard, mixed shard counts, shards of another method, `k`, calibration or model,
/// and a shard whose statistics are not its share.
pub fn merge_baseline_shards(shards: &[BaselineShard]) -> Result<CandidatePool, SearchError> {
    let bad = |m: String| SearchError::Invalid(format!("cannot merge the baseline shards: {m}"));
    let parts = Shard::in_order(shards, |p| p.shard).map_err(|e| bad(e.to_string()))?;
    let first = parts[0];
    for p in &parts {
        if (&p.method, p.k, p.calib) != (&first.method, first.k, first.calib) {
            return Err(bad(format!(
                "shard {} is of another run ({} k = {} on {} passages, not {} k = {} on {})",
                p.shard, p.method, p.k, p.calib, first.method, first.k, first.calib
            )));
        }
        if p.fingerprint != first.fingerprint {
            return Err(bad(format!(
                "shard {} is of another model ({})",
                p.shard,
                p.fingerprint.short()
            )));
        }
    }
    let config = GreedyConfig {
        k: first.k,
        ..Default::default()
    };
    let n_blocks = first.fingerprint.n_blocks;
    let scores = match &first.statistics {
        BaselineStatistics::BlockInfluence(_) => {
            let mut rows = Vec::with_capacity(first.calib);
            for p in &parts {
                let BaselineStatistics::BlockInfluence(part) = &p.statistics else {
                    return Err(bad(format!("shard {} holds other statistics", p.shard)));
                };
                if part.len() != p.shard.len_of(p.calib) {
                    return Err(bad(format!(
                        "shard {} holds {} passages, its share is {}",
                        p.shard,
                        part.len(),
                        p.shard.len_of(p.calib)
                    )));
                }
                rows.extend(part.iter().cloned());
            }
            block_influence_from_rows(&rows, n_blocks, &config)?
        }
        BaselineStatistics::RemovalLosses(_) => {
            let mut trials = Vec::new();
            for p in &parts {
                let BaselineStatistics::RemovalLosses(part) = &p.statistics else {
                    return Err(bad(format!("shard {} holds other statistics", p.shard)));
                };
                trials.extend(part.iter().copied());
            }
            shortened_llama_ppl_from_losses(&trials, n_blocks, &config)?
        }
    };
    baseline_pool(&first.fingerprint, scores, first.calib)
}

#[cfg(test)]
mod tests {
    use super::pick_lowest;

    #[test]
    fn picks_the_k_lowest_unprotected_scores() {
        let s = vec![None, Some(0.5), Some(0.1), Some(0.3), None];
        let r = pick_lowest("x", s.clone(), 2).unwrap();
        assert_eq!(r.set.blocks(), &[2, 3]);
        assert!(pick_lowest("x", s, 4).is_err());
    }
}
