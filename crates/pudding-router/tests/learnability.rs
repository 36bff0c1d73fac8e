//! The learnability bound against the numpy reference
//! (`scripts/reference/learnability_reference.py`, which wrote the fixture): the same
//! picks per row for every predictor and the same held-out scores; bad input is refused.

use pudding_router::learnability::{learnability, LearnabilityConfig};
use serde_json::Value;

#[test]
fn predictors_match_the_numpy_reference() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/learnability_reference.json"
    ))
    .unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    let rows = |key: &str| -> Vec<Vec<f32>> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    };
    let tasks: Vec<String> = r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let config = LearnabilityConfig {
        folds: r["folds"].as_u64().unwrap() as usize,
        neighbours: r["neighbours"].as_u64().unwrap() as usize,
        ridge: r["ridge"].as_f64().unwrap(),
    };
    let (embeddings, labels) = (rows("embeddings"), rows("labels"));
    let got = learnability(&embeddings, &tasks, &labels, &config).unwrap();
    for (p, (ours, theirs)) in got
        .picks
        .iter()
        .zip(r["picks"].as_array().unwrap())
        .enumerate()
    {
        let theirs: Vec<usize> = theirs
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(ours, &theirs, "{}", got.predictors[p].predictor);
    }
    for (ours, theirs) in got.predictors.iter().zip(r["scores"].as_array().unwrap()) {
        let close = |a: f64, key: &str| {
            let b = theirs[key].as_f64().unwrap();
            assert!((a - b).abs() < 1e-9, "{} {key}: {a} vs {b}", ours.predictor);
        };
        close(ours.mean_label, "mean_label");
        close(ours.top1_agreement, "top1_agreement");
        close(ours.regret, "regret");
        close(ours.recovered.unwrap(), "recovered");
    }
    // The synthetic prompts carry signal: the probes beat the best single candidate, and
    // the oracle recovers all of its own gain.
    assert_eq!(got.predictors[4].recovered, Some(1.0));
    assert!(got.predictors[3].recovered.unwrap() > 0.0);

    // Bad input is an error, never a panic.
    let bad = |e: &[Vec<f32>], t: &[String], l: &[Vec<f32>], c: &LearnabilityConfig| {
        learnability(e, t, l, c).unwrap_err().to_string()
    };
    assert!(bad(&embeddings[1..], &tasks, &labels, &config).contains("embeddings"));
    let one_fold = LearnabilityConfig {
        folds: 1,
        ..config.clone()
    };
    assert!(bad(&embeddings, &tasks, &labels, &one_fold).contains("folds"));
    let mut nan = labels.clone();
    nan[3][1] = f32::NAN;
    assert!(bad(&embeddings, &tasks, &nan, &config).contains("finite"));
    let no_neighbours = LearnabilityConfig {
        neighbours: 0,
        ..config
    };
    assert!(bad(&embeddings, &tasks, &labels, &no_neighbours).contains("neighbours"));
}
