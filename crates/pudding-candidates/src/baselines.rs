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
use pudding_core::OmissionSet;
use pudding_models::{LlamaLm, LlamaModel};
use serde::{Deserialize, Serialize};

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
    if samples.is_empty() {
        return Err(SearchError::Invalid(
            "ShortGPT's Block Influence needs at least one calibration sample".into(),
        ));
    }
    let model = lm.model();
    let n_blocks = model.config().n_blocks;
    let device = model.device();
    let mut sums = vec![0.0f64; n_blocks];
    let mut tokens_seen = 0usize;
    for (i, sample) in samples.iter().enumerate() {
        crate::greedy::check_sample(sample, i)?;
        let r = &sample.choices[sample.gold];
        let ids: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
        lm.check_ids(&ids)?;
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let n = ids.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        let mut x = model.embed_tokens(tokens);
        for (j, sum) in sums.iter_mut().enumerate() {
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
            *sum += n as f64 - total; // sum over tokens of (1 - cos)
            x = y;
        }
        tokens_seen += n;
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
    let blocks = unprotected(n_blocks, config);
    let losses = evaluator.phase(&OmissionSet::dense(n_blocks)?, &blocks)?;
    let mut scores = vec![None; n_blocks];
    for (b, l) in blocks.into_iter().zip(losses) {
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
