//! Pools and baselines on a tiny random model with the real task data: formats,
//! fingerprints, duplicate merging, protected blocks.

use pudding_candidates::baselines::{shortened_llama_ppl, shortgpt_block_influence};
use pudding_candidates::calibration::samples_from_texts;
use pudding_candidates::greedy::{PrefixCacheEvaluator, ScorerEvaluator};
use pudding_candidates::pool::{build_pool, calibration_texts, sleb};
use pudding_candidates::{GreedyConfig, LossKind};
use pudding_core::{CandidatePool, SkippableLm};
use pudding_eval::tasks::TaskName;
use pudding_models::testing::{load_tiny_llama, TinyLlamaSpec};
use pudding_models::{CpuBackend as B, LlamaLm};

fn tiny() -> (tempfile::TempDir, LlamaLm<B>) {
    let spec = TinyLlamaSpec {
        n_blocks: 6,
        ..Default::default()
    };
    load_tiny_llama::<B>(&spec).unwrap()
}

#[test]
fn pool_has_one_candidate_per_distinct_search_result() {
    let (dir, lm) = tiny();
    let config = GreedyConfig {
        k: 2,
        ..Default::default()
    };
    let tasks = [TaskName::ArcEasy, TaskName::Piqa];
    let losses = [LossKind::Tl, LossKind::Tld];
    let pool = build_pool(
        &lm,
        &tasks,
        &losses,
        &config,
        3,
        Some(dir.path()),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert!(!pool.is_empty() && pool.len() <= 4);
    let sources: usize = pool
        .candidates
        .iter()
        .map(|c| c.provenance["sources"].as_array().unwrap().len())
        .sum();
    assert_eq!(sources, 4, "every search is recorded once");
    for c in &pool.candidates {
        assert_eq!(c.set.len(), 2);
        assert!(!c.set.skips(0) && !c.set.skips(5));
    }
    pool.check_model(lm.fingerprint()).unwrap();
    let path = dir.path().join("pool.json");
    pool.save(&path).unwrap();
    assert_eq!(CandidatePool::load(&path).unwrap(), pool);
    // Checkpoints were written, one per search.
    assert!(dir.path().join("arc_easy-tld-k2.json").exists());
}

#[test]
fn baselines_choose_unprotected_blocks() {
    let (_d, lm) = tiny();
    let texts = calibration_texts(3).unwrap();
    assert!(texts
        .iter()
        .all(|t| !t.contains("\nQuestion:") && !t.is_empty()));
    let config = GreedyConfig {
        k: 2,
        ..Default::default()
    };
    let samples = samples_from_texts(&lm, &texts, 128).unwrap();
    let bi = shortgpt_block_influence(&lm, &samples, &config).unwrap();
    assert_eq!(bi.set.len(), 2);
    assert!(bi.scores[0].is_none() && bi.scores[5].is_none());
    assert!(bi.scores[1..5]
        .iter()
        .all(|s| s.is_some_and(|v| (0.0..=2.0).contains(&v))));
    let mut fast = PrefixCacheEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Perplexity,
    };
    let ppl = shortened_llama_ppl(&mut fast, 6, &config).unwrap();
    let mut plain = ScorerEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Perplexity,
    };
    let ppl_plain = shortened_llama_ppl(&mut plain, 6, &config).unwrap();
    assert_eq!(ppl.set, ppl_plain.set);
    let s = sleb(&lm, &texts, 128, &config, None, &mut |_, _| {}).unwrap();
    // SLEB's first removal is the block whose lone removal hurts least.
    let best_single = ppl
        .scores
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0;
    assert_eq!(s.order[0], best_single);
}

#[test]
fn merging_pools_dedups_sets_and_keeps_every_source() {
    use pudding_candidates::pool::merge_pools;
    use pudding_core::{Candidate, OmissionSet};
    let (_dir, lm) = tiny();
    let fp = lm.fingerprint().clone();
    let cand = |blocks: &str, task: &str| Candidate {
        set: OmissionSet::parse(blocks, 6).unwrap(),
        provenance: serde_json::json!({"sources": [{"task": task}]}),
    };
    let a = CandidatePool::new(
        fp.clone(),
        vec![cand("1,2", "arc_easy"), cand("3,4", "piqa")],
    )
    .unwrap();
    let b = CandidatePool::new(
        fp.clone(),
        vec![cand("3,4", "hellaswag"), cand("2,4", "piqa")],
    )
    .unwrap();
    let merged = merge_pools(&[a.clone(), b]).unwrap();
    let sets: Vec<String> = merged
        .candidates
        .iter()
        .map(|c| c.set.to_string())
        .collect();
    assert_eq!(sets, ["1,2", "3,4", "2,4"]);
    assert_eq!(
        merged.candidates[1].provenance["sources"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_other_dir, other) = load_tiny_llama::<B>(&TinyLlamaSpec {
        n_blocks: 6,
        seed: 99,
        ..Default::default()
    })
    .unwrap();
    let foreign =
        CandidatePool::new(other.fingerprint().clone(), vec![cand("1,2", "boolq")]).unwrap();
    assert!(merge_pools(&[a, foreign]).is_err());
    assert!(merge_pools(&[]).is_err());
}
