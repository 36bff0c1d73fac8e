//! Shortened LLaMA's Taylor+ criterion: the autodiff gradients behind it are checked
//! against central finite differences of the loss (an independent computation that needs
//! no autodiff), on a tiny random model.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use pudding_candidates::baselines::{shortened_llama_taylor, taylor_importance};
use pudding_candidates::GreedyConfig;
use pudding_core::{OmissionSet, SkippableLm};
use pudding_models::testing::{load_tiny_llama, TinyLlamaSpec};
use pudding_models::{host_values, CpuBackend as B, LlamaModel};

type A = Autodiff<B>;

/// Summed next-token NLL of `ids` under the dense model (plain backend, f32).
fn loss(model: &LlamaModel<B>, ids: &[u32]) -> f64 {
    let n = ids.len();
    let input: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    let logits = model
        .forward(
            Tensor::from_data(TensorData::new(input.clone(), [1, n]), &Default::default()),
            &OmissionSet::dense(model.config().n_blocks).unwrap(),
            None,
        )
        .unwrap();
    let logp = host_values(log_softmax(logits, 2)).unwrap();
    let v = model.config().vocab_size;
    (0..n - 1)
        .map(|i| -(logp[i * v + ids[i + 1] as usize] as f64))
        .sum()
}

#[test]
fn taylor_scores_match_finite_difference_gradients() {
    let (_dir, lm) = load_tiny_llama::<B>(&TinyLlamaSpec::default()).unwrap();
    let texts = vec![
        lm.encode("the cat sat on the mat").unwrap(),
        lm.encode("hello there, a dog").unwrap(),
    ];
    let model = lm.model().clone();
    let tracked = model
        .clone()
        .into_autodiff::<A>()
        .map_blocks(|b| b.map_params(&mut |t| t.require_grad(), &mut |t| t.require_grad()));
    let block = 1;
    let scores = taylor_importance(&tracked, &texts, &[block]).unwrap();
    let (name, autodiff_score) = scores[0]
        .iter()
        .find(|(n, _)| *n == "input_layernorm.weight")
        .copied()
        .unwrap();
    assert_eq!(name, "input_layernorm.weight");

    // sum_i |w_i * dL/dw_i| with dL/dw_i from central differences, L summed over texts.
    let weights = host_values(model.block(block).unwrap().attn_norm.weight.clone()).unwrap();
    let eps = 1e-2f32;
    let mut reference = 0.0f64;
    for (i, &w) in weights.iter().enumerate() {
        let shifted = |delta: f32| {
            let mut m = model.clone();
            let mut values = weights.clone();
            values[i] = w + delta;
            let b = m.blocks[block].as_mut().unwrap();
            b.attn_norm.weight = Tensor::from_data(
                TensorData::new(values, [weights.len()]),
                &Default::default(),
            );
            texts.iter().map(|t| loss(&m, t)).sum::<f64>()
        };
        let grad = (shifted(eps) - shifted(-eps)) / (2.0 * eps as f64);
        reference += (w as f64 * grad).abs();
    }
    let rel = (autodiff_score - reference).abs() / reference;
    assert!(
        rel < 2e-2,
        "autodiff {autodiff_score} vs finite differences {reference}"
    );
}

#[test]
fn taylor_baseline_picks_k_unprotected_blocks() {
    let spec = TinyLlamaSpec {
        n_blocks: 6,
        ..Default::default()
    };
    let (_dir, lm) = load_tiny_llama::<B>(&spec).unwrap();
    let texts = vec![lm.encode("the cat sat on the mat").unwrap()];
    let tracked = lm
        .model()
        .clone()
        .into_autodiff::<A>()
        .map_blocks(|b| b.map_params(&mut |t| t.require_grad(), &mut |t| t.require_grad()));
    let config = GreedyConfig {
        k: 2,
        ..Default::default()
    };
    let r = shortened_llama_taylor(&tracked, &texts, &config).unwrap();
    assert_eq!(r.set.len(), 2);
    assert!(r.scores[0].is_none() && r.scores[5].is_none());
    assert!(r.scores[1..5].iter().all(|s| s.unwrap() > 0.0));
    assert!(r.set.blocks().iter().all(|&b| (1..5).contains(&b)));
    // Without tracked gradients there is nothing to score: a typed error, not zeros.
    let untracked = lm.model().clone().into_autodiff::<A>();
    assert!(shortened_llama_taylor(&untracked, &texts, &config).is_err());
    let short = vec![vec![5u32]];
    assert!(shortened_llama_taylor(&tracked, &short, &config).is_err());
}
