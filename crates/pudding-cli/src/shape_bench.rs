//! The download-free benchmark behind `--example gpu_bench`: a Llama-family model with
//! random weights of a real shape (Llama-3.1-8B or SmolLM2-135M), measured dense vs with
//! blocks skipped (prefill, prompt + generate), and batched vs one-by-one generation, on
//! whichever backend the binary was built for.

use burn::prelude::*;
use pudding_core::{GenerationConfig, OmissionSet};
use pudding_eval::bench::{median, BenchReport, BenchRow, IdealCost};
use pudding_models::{generate_ids, host_values, LlamaConfig, LlamaModel, ModelError};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct ShapeBenchConfig {
    /// Prefill lengths in tokens.
    pub prefill_lengths: Vec<usize>,
    /// Prompt length of the generation workload.
    pub prompt_len: usize,
    /// Tokens generated after the prompt.
    pub generate: usize,
    /// Prompts of the batched-generation workload (0: skip it).
    pub batch: usize,
    /// Tokens generated per prompt in the batched workload.
    pub batch_generate: usize,
    /// Timed repeats per workload (after one untimed warm-up).
    pub repeats: usize,
}

impl Default for ShapeBenchConfig {
    fn default() -> Self {
        Self {
            prefill_lengths: vec![128, 256, 512],
            prompt_len: 128,
            generate: 128,
            batch: 8,
            batch_generate: 32,
            repeats: 5,
        }
    }
}

/// Batched vs one-by-one generation of the same prompts under one omission set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchRow {
    /// The omission set every prompt was routed to.
    pub skip: OmissionSet,
    /// Number of prompts.
    pub prompts: usize,
    /// Their lengths in tokens (different, so padding is exercised).
    pub prompt_lens: Vec<usize>,
    /// Tokens generated per prompt.
    pub generate: usize,
    /// Median seconds generating the prompts one after another.
    pub one_by_one_secs: f64,
    /// Median seconds generating them as one batch.
    pub batched_secs: f64,
    /// Generated tokens per second, one by one.
    pub one_by_one_tokens_per_sec: f64,
    /// Generated tokens per second, batched.
    pub batched_tokens_per_sec: f64,
    /// `one_by_one_secs / batched_secs`.
    pub speedup: f64,
}

/// The whole report: the dense-vs-skipped table plus the batching rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeBenchReport {
    /// Which shape (`llama3.1-8b`, `smollm2-135m`).
    pub shape: String,
    /// Float type of the weights and activations.
    pub dtype: String,
    /// Parameter count of the random model.
    pub params: usize,
    /// Dense vs skipped.
    pub latency: BenchReport,
    /// Batched vs one-by-one, dense and skipped.
    pub batching: Vec<BatchRow>,
}

/// Deterministic pseudo-random token ids in `[100, vocab)`.
pub fn synthetic_ids(len: usize, seed: u64, vocab: usize) -> Vec<u32> {
    let span = (vocab.saturating_sub(100)).max(1) as u64;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (100 + state % span) as u32
        })
        .collect()
}

/// `k` blocks spread evenly over the second quarter to the second-to-last block, the
/// region static depth-pruning methods usually remove (any set of k blocks costs the same).
pub fn spread_skip(n_blocks: usize, k: usize) -> Result<OmissionSet, ModelError> {
    let (lo, hi) = (n_blocks / 4, n_blocks.saturating_sub(1));
    if k > hi.saturating_sub(lo) {
        return Err(ModelError::Config(format!(
            "cannot spread {k} skipped blocks over blocks {lo}..{hi} of {n_blocks}"
        )));
    }
    let blocks = (0..k).map(|i| lo + i * (hi - lo) / k.max(1));
    Ok(OmissionSet::new(blocks, n_blocks)?)
}

fn timed<F: FnMut() -> Result<(), ModelError>>(
    repeats: usize,
    mut run: F,
) -> Result<Vec<f64>, ModelError> {
    run()?; // warm-up: kernels compiled, caches filled
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// Runs every workload on `model` (dense and skipping `skip`); `backend` and `dtype`
/// only label the report.
pub fn run_shape_bench<B: Backend>(
    model: &LlamaModel<B>,
    shape: &str,
    dtype: &str,
    skip: &OmissionSet,
    cfg: &ShapeBenchConfig,
    backend: &str,
) -> Result<ShapeBenchReport, ModelError> {
    let c = model.config();
    let dense = OmissionSet::dense(c.n_blocks)?;
    skip.check_blocks(c.n_blocks)?;
    let cost = IdealCost::of(c);
    let k = skip.len();
    let device = model.device();
    let mut rows = Vec::new();
    let mut row = |workload: String, ideal: f64, d: Vec<f64>, s: Vec<f64>| {
        let (dm, sm) = (median(&d), median(&s));
        rows.push(BenchRow {
            workload,
            dense_secs: dm,
            skipped_secs: sm,
            ratio: sm / dm,
            ideal_ratio: ideal,
            dense_runs: d,
            skipped_runs: s,
        });
    };
    for &n in &cfg.prefill_lengths {
        let ids: Vec<i64> = synthetic_ids(n, n as u64, c.vocab_size)
            .into_iter()
            .map(i64::from)
            .collect();
        let prefill = |set: &OmissionSet| {
            let tokens =
                Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [1, n]), &device);
            // Reading the logits back waits for the device to finish.
            host_values(model.forward_last(tokens, set, None)?).map(|_| ())
        };
        let d = timed(cfg.repeats, || prefill(&dense))?;
        let s = timed(cfg.repeats, || prefill(skip))?;
        row(format!("prefill {n}"), cost.ratio(k, n, 1), d, s);
    }
    let greedy = |n: usize| GenerationConfig {
        max_new_tokens: n,
        ..Default::default()
    };
    if cfg.generate > 0 {
        let prompt = vec![synthetic_ids(cfg.prompt_len, 1, c.vocab_size)];
        let gen = greedy(cfg.generate);
        let run = |set: &OmissionSet| generate_ids(model, &prompt, set, &gen, 0).map(|_| ());
        let d = timed(cfg.repeats, || run(&dense))?;
        let s = timed(cfg.repeats, || run(skip))?;
        row(
            format!("prompt {} + generate {}", cfg.prompt_len, cfg.generate),
            cost.ratio(k, cfg.prompt_len + cfg.generate - 1, cfg.generate),
            d,
            s,
        );
    }
    let mut batching = Vec::new();
    if cfg.batch > 1 {
        let prompts: Vec<Vec<u32>> = (0..cfg.batch)
            .map(|i| {
                let len = cfg.prompt_len.saturating_sub(8 * i).max(1);
                synthetic_ids(len, 100 + i as u64, c.vocab_size)
            })
            .collect();
        let gen = greedy(cfg.batch_generate);
        for set in [&dense, skip] {
            let single = timed(cfg.repeats, || {
                for p in &prompts {
                    generate_ids(model, std::slice::from_ref(p), set, &gen, 0)?;
                }
                Ok(())
            })?;
            let batched = timed(cfg.repeats, || {
                generate_ids(model, &prompts, set, &gen, 0).map(|_| ())
            })?;
            let (one, all) = (median(&single), median(&batched));
            let tokens = (cfg.batch * cfg.batch_generate) as f64;
            batching.push(BatchRow {
                skip: set.clone(),
                prompts: cfg.batch,
                prompt_lens: prompts.iter().map(Vec::len).collect(),
                generate: cfg.batch_generate,
                one_by_one_secs: one,
                batched_secs: all,
                one_by_one_tokens_per_sec: tokens / one,
                batched_tokens_per_sec: tokens / all,
                speedup: one / all,
            });
        }
    }
    Ok(ShapeBenchReport {
        shape: shape.to_string(),
        dtype: dtype.to_string(),
        params: model.resident_params(),
        latency: BenchReport {
            backend: backend.to_string(),
            skip: skip.clone(),
            repeats: cfg.repeats,
            rows,
            router: None,
        },
        batching,
    })
}

/// The report as Markdown: the latency table, then the batching table.
pub fn shape_bench_markdown(report: &ShapeBenchReport) -> String {
    let mut out = format!(
        "shape: {} ({:.2} B parameters, random weights), dtype: {}\n\n",
        report.shape,
        report.params as f64 / 1e9,
        report.dtype
    );
    out.push_str(&pudding_eval::bench::bench_markdown(&report.latency));
    if !report.batching.is_empty() {
        out.push_str("\n| skipped blocks | prompts | generate | one-by-one (s) | batched (s) | tok/s one-by-one | tok/s batched | speed-up |\n|---|---|---|---|---|---|---|---|\n");
        for b in &report.batching {
            let skip = if b.skip.is_empty() {
                "none (dense)".to_string()
            } else {
                b.skip.to_string()
            };
            out.push_str(&format!(
                "| {} | {} | {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.2}x |\n",
                skip,
                b.prompts,
                b.generate,
                b.one_by_one_secs,
                b.batched_secs,
                b.one_by_one_tokens_per_sec,
                b.batched_tokens_per_sec,
                b.speedup
            ));
        }
    }
    out
}

/// Builds the random model of `config` on `device` (in the device's default float type).
pub fn random_model<B: Backend>(
    config: &LlamaConfig,
    device: &B::Device,
) -> Result<LlamaModel<B>, ModelError> {
    LlamaModel::random(config, 2025, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pudding_models::CpuBackend;

    #[test]
    fn spread_skip_picks_k_distinct_middle_blocks() {
        let s = spread_skip(32, 7).unwrap();
        assert_eq!(s.len(), 7);
        assert!(s.blocks().iter().all(|&b| (8..31).contains(&b)));
        assert!(spread_skip(4, 4).is_err());
    }

    #[test]
    fn runs_on_the_cpu_at_a_small_shape() {
        let mut config = LlamaConfig::smollm2_135m_shape(256);
        config.n_blocks = 8;
        config.vocab_size = 1024;
        let device = pudding_models::cpu_device();
        let model = random_model::<CpuBackend>(&config, &device).unwrap();
        let skip = spread_skip(8, 2).unwrap();
        let cfg = ShapeBenchConfig {
            prefill_lengths: vec![16],
            prompt_len: 24,
            generate: 4,
            batch: 3,
            batch_generate: 3,
            repeats: 1,
        };
        let report = run_shape_bench(&model, "test", "f32", &skip, &cfg, "flex").unwrap();
        assert_eq!(report.latency.rows.len(), 2);
        assert_eq!(report.batching.len(), 2);
        assert_eq!(report.batching[0].prompt_lens, vec![24, 16, 8]);
        let md = shape_bench_markdown(&report);
        assert!(md.contains("prefill 16") && md.contains("speed-up"), "{md}");
    }
}
