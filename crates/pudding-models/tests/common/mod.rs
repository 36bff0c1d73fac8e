//! What the real-model tests share: the fixtures written by the numpy references in
//! `scripts/reference/` (`*_reference.py`) and the comparisons against them.

#![allow(dead_code)] // each test binary uses its own subset

use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::{CpuBackend as B, LlamaLm};
use serde::Deserialize;

/// The reference's log-softmax at one position.
#[derive(Deserialize)]
pub struct Position {
    /// The eight most likely next tokens, best first.
    pub top_ids: Vec<u32>,
    /// Their log-probabilities.
    pub top_logprobs: Vec<f32>,
    /// Log-probabilities of the fixture's fixed random `probe_ids`.
    pub probe_logprobs: Vec<f32>,
    /// Log-probability of the prompt's next token (`None` at the last position).
    pub next_logprob: Option<f32>,
}

/// One prompt under one omission set.
#[derive(Deserialize)]
pub struct Case {
    pub prompt: String,
    /// What decoding the ids gives back (after the tokenizer's normalisation), when the
    /// fixture records it.
    #[serde(default)]
    pub decoded: Option<String>,
    /// The token ids the reference tokenizer produced (with BOS for models that add it).
    pub ids: Vec<u32>,
    pub skip: Vec<usize>,
    /// The position of `positions[0]` (long prompts record only their last positions).
    #[serde(default)]
    pub positions_from: usize,
    pub positions: Vec<Position>,
}

/// A greedy continuation computed without a cache.
#[derive(Deserialize)]
pub struct GreedyCase {
    pub ids: Vec<u32>,
    pub skip: Vec<usize>,
    pub greedy: Vec<u32>,
    /// The smallest top-1 / top-2 logit gap over the reference's greedy steps.
    #[serde(default)]
    pub min_logit_gap: Option<f32>,
}

/// A `*_reference.json` fixture.
#[derive(Deserialize)]
pub struct Reference {
    pub probe_ids: Vec<u32>,
    pub cases: Vec<Case>,
    #[serde(default)]
    pub greedy: Vec<GreedyCase>,
}

/// Parses a fixture.
pub fn parse(text: &str) -> Reference {
    serde_json::from_str(text).expect("a reference fixture")
}

/// Extra tolerance per unit of |log-probability|: f32 rounding in the logits and the
/// log-sum-exp grows with how far a token's logit is from the top (Gemma 3 with five
/// blocks skipped puts probe tokens at -30, where f32 strays by 1.5e-3).
const RELATIVE_SLACK: f32 = 5e-5;

/// Compares our log-softmax with the reference's at every recorded position (the top
/// tokens, the probe tokens and the next token) and fails beyond `tolerance` (plus
/// [`RELATIVE_SLACK`] times the log-probability's magnitude). Returns the largest
/// difference seen.
pub fn check_log_softmax(lm: &LlamaLm<B>, reference: &Reference, tolerance: f32) -> f32 {
    let n_blocks = lm.n_blocks();
    let v = lm.model().config().vocab_size;
    let mut worst = 0.0f32;
    for case in &reference.cases {
        let skip = OmissionSet::new(case.skip.iter().copied(), n_blocks).unwrap();
        let logp = lm.position_log_probs(&case.ids, &skip).unwrap();
        assert_eq!(logp.len(), case.ids.len() * v);
        for (offset, want) in case.positions.iter().enumerate() {
            let pos = case.positions_from + offset;
            let row = &logp[pos * v..(pos + 1) * v];
            let mut check = |id: u32, expected: f32| {
                let diff = (row[id as usize] - expected).abs();
                worst = worst.max(diff);
                assert!(
                    diff < tolerance + RELATIVE_SLACK * expected.abs(),
                    "prompt {:?} skip {:?} position {pos} token {id}: ours {} reference {expected}",
                    case.prompt,
                    case.skip,
                    row[id as usize]
                );
            };
            for (&id, &lp) in want.top_ids.iter().zip(&want.top_logprobs) {
                check(id, lp);
            }
            for (&id, &lp) in reference.probe_ids.iter().zip(&want.probe_logprobs) {
                check(id, lp);
            }
            if let Some(next) = want.next_logprob {
                check(case.ids[pos + 1], next);
            }
        }
    }
    worst
}

/// Cached greedy generation equals uncached greedy generation and the reference's tokens.
/// Greedy tokens are an argmax comparison: fair only where the reference's top two logits
/// are further apart than our f32 forward strays from float64, so a case whose recorded
/// margin is below `min_gap` fails the test instead of passing by luck.
pub fn check_greedy(lm: &LlamaLm<B>, cases: &[GreedyCase], min_gap: f32) {
    assert!(!cases.is_empty(), "no greedy cases");
    for case in cases {
        if let Some(gap) = case.min_logit_gap {
            assert!(gap > min_gap, "greedy reference too close to a tie: {gap}");
        }
        let skip = OmissionSet::new(case.skip.iter().copied(), lm.n_blocks()).unwrap();
        let n = case.greedy.len();
        let config = GenerationConfig {
            max_new_tokens: n,
            ..Default::default()
        };
        let cached = lm.generate(&case.ids, &skip, &config).unwrap();
        let uncached = lm.greedy_uncached(&case.ids, &skip, n).unwrap();
        assert_eq!(cached.ids, uncached, "skip {:?}", case.skip);
        assert_eq!(cached.ids, case.greedy, "skip {:?}", case.skip);
    }
}

/// The Python of a venv under `$PUDDING_HOME/venvs/<name>` with `packages` installed from
/// PyPI (made on first use, reused after), for the independent readers in
/// `scripts/reference/`.
pub fn python_venv(name: &str, packages: &[&str]) -> std::path::PathBuf {
    let dir = pudding_models::assets::pudding_home()
        .join("venvs")
        .join(name);
    let python = dir.join("bin").join("python");
    let ready = dir.join(".installed");
    if !ready.exists() {
        let status = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 -m venv");
        assert!(status.success(), "python3 -m venv {}", dir.display());
        let status = std::process::Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages)
            .status()
            .expect("pip install");
        assert!(status.success(), "pip install {packages:?}");
        std::fs::write(&ready, packages.join("\n")).unwrap();
    }
    python
}

/// The largest `|a[i] - b[i]|` (the slices must have one length).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// How far the fused host decode steps are from the tensor path's.
#[derive(Debug, Default)]
pub struct FusedAgreement {
    /// Steps compared.
    pub steps: usize,
    /// Steps where both chose the same next token.
    pub top1_same: usize,
    /// Steps where they differed although the tensor path's top two were more than
    /// 0.5 nats apart.
    pub clear_disagreements: usize,
    /// Mean and largest |d log p| over the tensor path's eight most likely tokens.
    pub mean_abs: f32,
    /// Largest |d log p| over those tokens.
    pub max_abs: f32,
}

/// Feeds `steps` one at a time after `prompt` under `skip`, on the tensor path
/// (`forward_last` with a cache) and on the fused host path (`FusedDecoder`), `lm` loaded
/// quantised, and compares their next-token log-probabilities. The two compute the same
/// products, but the 8-bit activations turn last-bit float differences into whole
/// quantisation steps, which add up over the blocks: the paths differ by about as much as
/// each differs from the f32 path (measured on SmolLM2), so the comparison is in log-probs,
/// not bits (the tiny models' unit tests check the arithmetic to 1e-4).
pub fn fused_against_tensor_steps(
    lm: &LlamaLm<B>,
    prompt: &[u32],
    steps: &[u32],
    skip: &OmissionSet,
) -> FusedAgreement {
    use burn::prelude::*;
    use pudding_models::{host_values, FusedDecoder, KvCache};
    let model = lm.model();
    let tokens = |ids: &[u32]| {
        let data: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        Tensor::<B, 2, Int>::from_data(TensorData::new(data, [1, ids.len()]), &Default::default())
    };
    let log_softmax = |v: &[f32]| {
        let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let log_sum = v.iter().map(|x| ((x - max) as f64).exp()).sum::<f64>().ln() as f32 + max;
        v.iter().map(|x| x - log_sum).collect::<Vec<f32>>()
    };
    let mut cache = KvCache::new(skip.clone());
    model
        .forward_last(tokens(prompt), skip, Some(&mut cache))
        .unwrap();
    let mut fused = FusedDecoder::continuing(model, &cache)
        .unwrap()
        .expect("every kept block of a quantised GGUF runs fused");
    let mut a = FusedAgreement::default();
    let mut sum = 0.0f64;
    for &token in steps {
        let want = log_softmax(
            &host_values(
                model
                    .forward_last(tokens(&[token]), skip, Some(&mut cache))
                    .unwrap(),
            )
            .unwrap(),
        );
        let got = log_softmax(&fused.step(token).unwrap());
        let mut order: Vec<usize> = (0..want.len()).collect();
        order.sort_by(|&i, &j| want[j].total_cmp(&want[i]));
        let fused_best = pudding_models::sampling::argmax(&got) as usize;
        a.steps += 1;
        if fused_best == order[0] {
            a.top1_same += 1;
        } else if want[order[0]] - want[order[1]] > 0.5 {
            a.clear_disagreements += 1;
        }
        for &i in &order[..8] {
            let d = (want[i] - got[i]).abs();
            sum += f64::from(d);
            a.max_abs = a.max_abs.max(d);
        }
    }
    a.mean_abs = (sum / (8 * a.steps.max(1)) as f64) as f32;
    a
}
