//! Wall-clock latency benchmarks: prefill of N tokens and prompt + generation, dense vs
//! with an omission set, repeated, medians, ratios measured in the same run.

use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
pub use pudding_models::config::IdealCost;
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
    /// The ideal ratio: the skipped model's share of this workload's multiply-accumulates
    /// (block projections and MLPs for every position, the output head where it runs).
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

/// Why a benchmark did not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError<E: std::error::Error + 'static> {
    /// The settings cannot give a meaningful measurement (no repeats, an empty or
    /// too-long workload, a set made for another depth, an empty vocabulary).
    #[error("invalid benchmark settings: {0}")]
    Config(String),
    /// The model failed while running a workload.
    #[error(transparent)]
    Model(#[from] E),
    /// A workload did not do what it is named for (a generation stopped early).
    #[error("benchmark workload went wrong: {0}")]
    Workload(String),
}

/// Deterministic pseudo-text token ids, all below `vocab` (`vocab >= 1`), away from the
/// special tokens at the start of the vocabulary where it is large enough.
pub fn synthetic_prompt(len: usize, vocab: u32) -> Vec<u32> {
    let low = 100.min(vocab / 4);
    let modulus = u64::from((vocab - 2 * low).max(1));
    (0..len as u64)
        .map(|i| low + ((i * 7919) % modulus) as u32)
        .collect()
}

/// One timed workload: runs it once under the given omission set.
type Workload<'a, E> = dyn FnMut(&OmissionSet) -> Result<(), BenchError<E>> + 'a;

/// Checks that every workload of `config` can run as asked on a model of `n_blocks`
/// blocks and `context` positions: at least one repeat, non-empty prompts, a prompt plus
/// its generated tokens inside the context window (a generation cut short by the window
/// would time fewer tokens than its name says).
fn check_config(
    config: &BenchConfig,
    skip: &OmissionSet,
    n_blocks: usize,
    context: usize,
    vocab: u32,
) -> Result<(), String> {
    if config.repeats == 0 {
        return Err("repeats must be at least 1".into());
    }
    if vocab == 0 {
        return Err("the vocabulary is empty".into());
    }
    if skip.n_blocks() != n_blocks {
        return Err(format!(
            "the omission set is for {} blocks, the model has {n_blocks}",
            skip.n_blocks()
        ));
    }
    for &n in &config.prefill_lengths {
        if n == 0 || n > context {
            return Err(format!(
                "prefill length {n} is outside 1..={context} (the context window)"
            ));
        }
    }
    for &g in &config.generate_lengths {
        if config.prompt_len == 0 || g == 0 || g > context.saturating_sub(config.prompt_len) {
            return Err(format!(
                "prompt {} + generate {g} needs 1 to {context} positions and at least one of each",
                config.prompt_len
            ));
        }
    }
    Ok(())
}

/// Runs the benchmark: every workload dense and with `skip`, one untimed warm-up then
/// `config.repeats` timed runs each, in one process so the ratios share the machine's
/// state. Each row reports beside the measured ratio the workload's ideal one from `cost`
/// (for the model being measured); `vocab` bounds the synthetic token ids.
pub fn run_bench<L: SkippableLm>(
    lm: &L,
    skip: &OmissionSet,
    config: &BenchConfig,
    backend: &str,
    vocab: u32,
    cost: &IdealCost,
) -> Result<BenchReport, BenchError<L::Error>> {
    check_config(config, skip, lm.n_blocks(), lm.context_length(), vocab)
        .map_err(BenchError::Config)?;
    if cost.n_blocks != lm.n_blocks() {
        return Err(BenchError::Config(format!(
            "the ideal costs are for {} blocks, the model has {}",
            cost.n_blocks,
            lm.n_blocks()
        )));
    }
    let k = skip.len();
    let dense = OmissionSet::dense(lm.n_blocks()).map_err(|e| BenchError::Config(e.to_string()))?;
    let mut rows = Vec::new();
    let mut measure = |workload: String,
                       ideal_ratio: f64,
                       run: &mut Workload<'_, L::Error>|
     -> Result<(), BenchError<L::Error>> {
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
    // Runs one generation and checks it produced exactly the tokens the workload names
    // (no stop tokens are set, and the window was checked, so anything else is a bug).
    let generate = |ids: &[u32], set: &OmissionSet, new_tokens: usize| {
        let gen = GenerationConfig {
            max_new_tokens: new_tokens,
            ..Default::default()
        };
        let out = lm.generate(ids, set, &gen)?;
        if out.ids.len() != new_tokens {
            return Err(BenchError::Workload(format!(
                "asked for {new_tokens} tokens, the model generated {} ({:?})",
                out.ids.len(),
                out.finish
            )));
        }
        Ok(())
    };
    for &n in &config.prefill_lengths {
        let ids = synthetic_prompt(n, vocab);
        measure(format!("prefill {n}"), cost.ratio(k, n, 1), &mut |set| {
            generate(&ids, set, 1)
        })?;
    }
    for &g in &config.generate_lengths {
        let ids = synthetic_prompt(config.prompt_len, vocab);
        measure(
            format!("prompt {} + generate {g}", config.prompt_len),
            cost.ratio(k, config.prompt_len + g - 1, g),
            &mut |set| generate(&ids, set, g),
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
    use super::*;
    use pudding_models::testing::{load_tiny_llama, TinyLlamaSpec};
    use pudding_models::{CpuBackend, LlamaConfig, LlamaLm};

    /// A tiny random 4-block model (its files live in the returned directory).
    fn tiny() -> (tempfile::TempDir, LlamaLm<CpuBackend>) {
        let spec = TinyLlamaSpec {
            n_blocks: 4,
            ..Default::default()
        };
        load_tiny_llama::<CpuBackend>(&spec).unwrap()
    }

    /// Every workload runs dense and skipped, `repeats` timed runs each; the medians and
    /// ratios are those of the recorded runs; synthetic prompts stay inside the vocabulary.
    #[test]
    fn bench_times_every_workload_both_ways() {
        let (_dir, lm) = tiny();
        let vocab = lm.model().config().vocab_size as u32;
        let skip = OmissionSet::parse("1,2", 4).unwrap();
        let config = BenchConfig {
            prefill_lengths: vec![5, 9],
            prompt_len: 4,
            generate_lengths: vec![3],
            repeats: 3,
        };
        // Blocks only: every workload's ideal is the kept fraction, 2 of 4.
        let blocks_only = IdealCost {
            n_blocks: 4,
            block_macs: 1.0,
            head_macs: 0.0,
        };
        let report = run_bench(&lm, &skip, &config, "cpu", vocab, &blocks_only).unwrap();
        let names: Vec<&str> = report.rows.iter().map(|r| r.workload.as_str()).collect();
        assert_eq!(names, ["prefill 5", "prefill 9", "prompt 4 + generate 3"]);
        assert_eq!((report.repeats, &report.skip), (3, &skip));
        for row in &report.rows {
            assert_eq!((row.dense_runs.len(), row.skipped_runs.len()), (3, 3));
            assert!(row
                .dense_runs
                .iter()
                .chain(&row.skipped_runs)
                .all(|&t| t > 0.0));
            assert_eq!(row.dense_secs, median(&row.dense_runs));
            assert_eq!(row.skipped_secs, median(&row.skipped_runs));
            assert_eq!(row.ratio, row.skipped_secs / row.dense_secs);
            assert_eq!(row.ideal_ratio, 0.5);
        }
        let table = bench_markdown(&report);
        assert_eq!(
            table.lines().filter(|l| l.starts_with("| prefill")).count(),
            2
        );
        assert!(table.contains("skipped blocks: 1,2 (2 of 4)"), "{table}");

        for v in [1, 7, vocab, 49_152] {
            let ids = synthetic_prompt(300, v);
            assert!(ids.iter().all(|&i| i < v), "vocab {v}");
        }
        assert!(synthetic_prompt(50, 49_152).iter().all(|&i| i >= 100));
    }

    /// Ideal ratios per workload: the head's cost counts once for a prefill and once per
    /// generated token, so a prefill's ideal is nearer the kept fraction of the blocks.
    #[test]
    fn ideal_ratios_count_the_head_where_it_runs() {
        // 4 blocks of cost 1, a head of cost 2, 1 block skipped.
        let cost = IdealCost {
            n_blocks: 4,
            block_macs: 1.0,
            head_macs: 2.0,
        };
        // One decoded token: (3 + 2) / (4 + 2).
        assert_eq!(cost.ratio(1, 1, 1), 5.0 / 6.0);
        // Prefill of 10 tokens: (30 + 2) / (40 + 2).
        assert_eq!(cost.ratio(1, 10, 1), 32.0 / 42.0);
        // Prompt 4 + generate 3: 6 positions, 3 heads: (18 + 6) / (24 + 6).
        assert_eq!(cost.ratio(1, 6, 3), 24.0 / 30.0);
        assert_eq!(cost.ratio(0, 6, 3), 1.0);
        // SmolLM2's per-token figure: the head costs exactly 8 blocks, 32/38 at k = 6.
        let smollm2 = LlamaConfig::from_hf_json(
            r#"{"model_type":"llama","num_hidden_layers":30,"hidden_size":576,
            "intermediate_size":1536,"num_attention_heads":9,"num_key_value_heads":3,
            "vocab_size":49152,"rope_theta":100000.0,"rms_norm_eps":1e-5,
            "max_position_embeddings":8192,"tie_word_embeddings":true}"#,
        )
        .unwrap();
        let c = IdealCost::of(&smollm2);
        assert_eq!(c.ratio(6, 1, 1), smollm2.ideal_ratio(6).unwrap());
        assert!((c.ratio(6, 1, 1) - 32.0 / 38.0).abs() < 1e-12);
        assert!((c.ratio(6, 512, 1) - (24.0 * 512.0 + 8.0) / (30.0 * 512.0 + 8.0)).abs() < 1e-12);
    }

    #[test]
    fn settings_that_cannot_measure_are_errors() {
        let (_dir, lm) = tiny();
        let vocab = lm.model().config().vocab_size as u32;
        let context = lm.context_length();
        let skip = OmissionSet::parse("1", 4).unwrap();
        let cost = IdealCost::of(lm.model().config());
        let ok = BenchConfig {
            prefill_lengths: vec![4],
            prompt_len: 4,
            generate_lengths: vec![2],
            repeats: 1,
        };
        let bad = [
            BenchConfig {
                repeats: 0,
                ..ok.clone()
            },
            BenchConfig {
                prefill_lengths: vec![0],
                ..ok.clone()
            },
            BenchConfig {
                prefill_lengths: vec![context + 1],
                ..ok.clone()
            },
            BenchConfig {
                prompt_len: context,
                ..ok.clone()
            },
            BenchConfig {
                generate_lengths: vec![0],
                ..ok.clone()
            },
        ];
        for config in &bad {
            let err = run_bench(&lm, &skip, config, "cpu", vocab, &cost).unwrap_err();
            assert!(matches!(err, BenchError::Config(_)), "{config:?}: {err}");
        }
        let other_depth = OmissionSet::parse("1", 6).unwrap();
        assert!(matches!(
            run_bench(&lm, &other_depth, &ok, "cpu", vocab, &cost),
            Err(BenchError::Config(_))
        ));
        assert!(matches!(
            run_bench(&lm, &skip, &ok, "cpu", 0, &cost),
            Err(BenchError::Config(_))
        ));
        let six_blocks = IdealCost {
            n_blocks: 6,
            ..cost
        };
        assert!(matches!(
            run_bench(&lm, &skip, &ok, "cpu", vocab, &six_blocks),
            Err(BenchError::Config(_))
        ));
        run_bench(&lm, &skip, &ok, "cpu", vocab, &cost).unwrap();
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
