//! Wall-clock latency benchmarks: prefill of N tokens and prompt + generation, dense vs
//! with an omission set, repeated, medians, ratios measured in the same run.

use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One measured workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// `prefill N` or `prompt P + generate G`.
    pub workload: String,
    /// Median seconds of the dense model.
    pub dense_secs: f64,
    /// Median seconds with the omission set.
    pub skipped_secs: f64,
    /// `skipped_secs / dense_secs`.
    pub ratio: f64,
    /// The ideal ratio (kept fraction of the per-token multiply-accumulates).
    pub ideal_ratio: f64,
    /// Every dense measurement (seconds).
    pub dense_runs: Vec<f64>,
    /// Every skipped measurement (seconds).
    pub skipped_runs: Vec<f64>,
}

/// A whole benchmark report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Backend name.
    pub backend: String,
    /// The omission set compared against dense.
    pub skip: OmissionSet,
    /// Repeats per workload (after one warm-up).
    pub repeats: usize,
    /// Measurements.
    pub rows: Vec<BenchRow>,
    /// Router latency against the dense 128-token prefill, when a router was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterLatency>,
}

/// How long routing takes (tokenise + encode + head) compared with the LLM's dense
/// prefill of a 128-token prompt, on the same machine in the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterLatency {
    /// Prompts routed.
    pub prompts: usize,
    /// Median seconds per routing decision.
    pub median_secs: f64,
    /// Every measurement (seconds).
    pub runs: Vec<f64>,
    /// Median seconds of the dense 128-token prefill.
    pub prefill_128_dense_secs: f64,
    /// `median_secs / prefill_128_dense_secs` (target: below 0.02).
    pub ratio: f64,
}

/// Routes every prompt `repeats` times (after one untimed warm-up) and returns the
/// seconds of each decision, as the router measures them.
pub fn router_latencies<R: pudding_core::Router>(
    router: &R,
    prompts: &[String],
    repeats: usize,
) -> Result<Vec<f64>, R::Error> {
    if let Some(p) = prompts.first() {
        router.route(p)?;
    }
    let mut runs = Vec::with_capacity(prompts.len() * repeats);
    for _ in 0..repeats {
        for p in prompts {
            runs.push(router.route(p)?.router_secs);
        }
    }
    Ok(runs)
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Prefill lengths in tokens.
    pub prefill_lengths: Vec<usize>,
    /// Prompt length for the generation workloads.
    pub prompt_len: usize,
    /// Generated tokens for the generation workloads.
    pub generate_lengths: Vec<usize>,
    /// Timed repeats per workload (one untimed warm-up first); at least 1, or every median
    /// is NaN.
    pub repeats: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            prefill_lengths: vec![128, 256, 512],
            prompt_len: 128,
            generate_lengths: vec![128, 256],
            repeats: 5,
        }
    }
}

/// Median of a non-empty list.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Deterministic pseudo-text token ids (avoids special tokens at the start of the vocab).
fn synthetic_prompt(len: usize, vocab_hint: u32) -> Vec<u32> {
    let modulus = u64::from(vocab_hint.saturating_sub(200).max(1));
    (0..len as u64)
        .map(|i| 100 + ((i * 7919) % modulus) as u32)
        .collect()
}

/// Runs the benchmark. `ideal_ratio(k)` gives the ideal cost ratio for k skipped blocks;
/// `vocab_hint` bounds the synthetic token ids.
pub fn run_bench<L: SkippableLm>(
    lm: &L,
    skip: &OmissionSet,
    config: &BenchConfig,
    backend: &str,
    vocab_hint: u32,
    ideal_ratio: f64,
) -> Result<BenchReport, L::Error> {
    let dense = OmissionSet::dense(lm.n_blocks()).expect("a model has at least one block");
    let mut rows = Vec::new();
    let mut measure = |workload: String,
                       run: &mut dyn FnMut(&OmissionSet) -> Result<(), L::Error>|
     -> Result<(), L::Error> {
        let mut times = [Vec::new(), Vec::new()];
        for (slot, set) in [&dense, skip].iter().enumerate() {
            run(set)?; // warm-up
            for _ in 0..config.repeats {
                let start = Instant::now();
                run(set)?;
                times[slot].push(start.elapsed().as_secs_f64());
            }
        }
        let (d, s) = (median(&times[0]), median(&times[1]));
        rows.push(BenchRow {
            workload,
            dense_secs: d,
            skipped_secs: s,
            ratio: s / d,
            ideal_ratio,
            dense_runs: times[0].clone(),
            skipped_runs: times[1].clone(),
        });
        Ok(())
    };
    for &n in &config.prefill_lengths {
        let ids = synthetic_prompt(n, vocab_hint);
        let gen = GenerationConfig {
            max_new_tokens: 1,
            ..Default::default()
        };
        measure(format!("prefill {n}"), &mut |set| {
            lm.generate(&ids, set, &gen).map(|_| ())
        })?;
    }
    for &g in &config.generate_lengths {
        let ids = synthetic_prompt(config.prompt_len, vocab_hint);
        let gen = GenerationConfig {
            max_new_tokens: g,
            ..Default::default()
        };
        measure(
            format!("prompt {} + generate {g}", config.prompt_len),
            &mut |set| lm.generate(&ids, set, &gen).map(|_| ()),
        )?;
    }
    Ok(BenchReport {
        backend: backend.to_string(),
        skip: skip.clone(),
        repeats: config.repeats,
        rows,
        router: None,
    })
}

/// The report as a Markdown table.
pub fn bench_markdown(report: &BenchReport) -> String {
    let mut out = format!(
        "backend: {}; skipped blocks: {} ({} of {}); median of {} runs\n\n| workload | dense (s) | skipped (s) | skipped/dense | ideal |\n|---|---|---|---|---|\n",
        report.backend,
        report.skip,
        report.skip.len(),
        report.skip.n_blocks(),
        report.repeats
    );
    for r in &report.rows {
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            r.workload, r.dense_secs, r.skipped_secs, r.ratio, r.ideal_ratio
        ));
    }
    if let Some(r) = &report.router {
        out.push_str(&format!(
            "\nrouter: median {:.2} ms per prompt over {} prompts = {:.2}% of the dense 128-token prefill ({:.1} ms)\n",
            1e3 * r.median_secs,
            r.prompts,
            100.0 * r.ratio,
            1e3 * r.prefill_128_dense_secs
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
