//! The logic behind each `pudding` subcommand, callable from tests and examples.

use burn::prelude::Backend;
use pudding_candidates::baselines::{
    baseline_pool, shortened_llama_ppl, shortened_llama_taylor, shortgpt_block_influence,
};
use pudding_candidates::calibration::samples_from_texts;
use pudding_candidates::greedy::PrefixCacheEvaluator;
use pudding_candidates::pool::{
    calibration_texts, provenance, run_searches, sleb, PoolShard, SearchJob,
};
use pudding_candidates::report::{pool_markdown, pool_svg};
use pudding_candidates::{GreedyConfig, LossKind};
use pudding_core::{Candidate, CandidatePool};
use pudding_core::{Generation, GenerationConfig, OmissionSet, SkippableLm};
use pudding_eval::runner::{
    run_eval, run_eval_sets, EvalConfig, EvalReport, SetChooser, StaticChooser,
};
use pudding_eval::tasks::{load_task, TaskName};
use pudding_models::{LlamaLm, ModelError};
use serde::Serialize;

/// One token of a `logprobs` report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// Token id.
    pub id: u32,
    /// The token's text.
    pub piece: String,
    /// `log p(token | tokens before)`; `None` for the first token.
    pub logprob: Option<f32>,
}

/// The JSON printed by `pudding logprobs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogprobReport {
    /// Skipped blocks.
    pub skip: Vec<usize>,
    /// Every input token with its log-probability.
    pub tokens: Vec<TokenLogprob>,
}

/// Scores `ids` under `skip`: one entry per token, the first without a log-probability.
pub fn logprob_report<B: Backend>(
    lm: &LlamaLm<B>,
    ids: &[u32],
    skip: &OmissionSet,
) -> Result<LogprobReport, ModelError> {
    let logprobs = lm.token_logprobs(ids, skip)?;
    let tokens = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            Ok(TokenLogprob {
                id,
                piece: lm.tokenizer().piece(id)?,
                logprob: if i == 0 { None } else { Some(logprobs[i - 1]) },
            })
        })
        .collect::<Result<_, ModelError>>()?;
    Ok(LogprobReport {
        skip: skip.blocks().to_vec(),
        tokens,
    })
}

/// Parses `"12,7,9"` into token ids.
pub fn parse_ids(text: &str) -> Result<Vec<u32>, ModelError> {
    text.split(',')
        .map(|s| {
            s.trim().parse::<u32>().map_err(|_| {
                ModelError::Generation(format!(
                    "{:?} is not a token id; expected comma-separated non-negative integers",
                    s.trim()
                ))
            })
        })
        .collect()
}

/// Generates from a text prompt (optionally wrapped in the chat template).
pub fn generate_text<B: Backend>(
    lm: &LlamaLm<B>,
    prompt: &str,
    chat: bool,
    skip: &OmissionSet,
    config: &GenerationConfig,
) -> Result<Generation, ModelError> {
    let text = if chat {
        lm.chat_prompt(prompt)?
    } else {
        prompt.to_string()
    };
    let ids = lm.encode_prompt(&text)?;
    lm.generate(&ids, skip, config)
}

/// One line of speed figures for a generation.
pub fn speed_line(g: &Generation) -> String {
    format!(
        "prefill {} tokens at {:.1} tok/s, decode {} tokens at {:.1} tok/s",
        g.prompt_ids.len(),
        g.prefill_tokens_per_sec(),
        g.ids.len().saturating_sub(1),
        g.decode_tokens_per_sec()
    )
}

/// Parses a task list: lm-eval names separated by commas, or `paper` for the six tasks of
/// the paper's table.
pub fn parse_tasks(text: &str) -> Result<Vec<TaskName>, String> {
    if text.trim() == "paper" {
        return Ok(TaskName::PAPER.to_vec());
    }
    text.split(',')
        .map(|t| t.trim().parse::<TaskName>().map_err(|e| e.to_string()))
        .collect()
}

/// Evaluation progress: a bar (task name, items done, items/s, eta) on a terminal; when
/// stderr is not a terminal (a job in the background, a log file), a plain line every
/// 60 seconds and at the end of each task instead.
struct EvalProgress {
    bar: indicatif::ProgressBar,
    /// Task, items done when it started here, when it started.
    task: Option<(TaskName, usize, std::time::Instant)>,
    last_line: std::time::Instant,
}

impl EvalProgress {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self {
            bar,
            task: None,
            last_line: std::time::Instant::now(),
        }
    }

    /// `done` of `total` items of `task` are scored (the bar restarts when the task changes).
    fn update(&mut self, task: TaskName, done: usize, total: usize) {
        let now = std::time::Instant::now();
        let (first, start) = match self.task {
            Some((t, first, start)) if t == task => (first, start),
            _ => {
                self.task = Some((task, done, now));
                self.bar.set_prefix(task.name());
                self.bar.set_length(total as u64);
                self.bar.reset();
                (done, now)
            }
        };
        self.bar.set_position(done as u64);
        if !self.bar.is_hidden() {
            return;
        }
        let finished = done == total;
        if !finished && now.duration_since(self.last_line).as_secs() < 60 {
            return;
        }
        self.last_line = now;
        if finished && done <= first {
            eprintln!(
                "{}: {done}/{total} items (already in the results file)",
                task.name()
            );
            return;
        }
        let secs = now.duration_since(start).as_secs_f64();
        let rate = done.saturating_sub(first) as f64 / secs.max(1e-9);
        let eta = if rate > 0.0 {
            format!(", eta {:.0} min", (total - done) as f64 / rate / 60.0)
        } else {
            String::new()
        };
        eprintln!(
            "{}: {done}/{total} items ({rate:.2} items/s{eta})",
            task.name()
        );
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Which items an evaluation scores: the tasks (comma-separated lm-eval names or
/// `paper`), the first `limit` items of each, and of those only `shard`'s share.
#[derive(Clone, Copy, Debug)]
pub struct ItemSelection<'a> {
    /// Comma-separated task names, or `paper`.
    pub tasks: &'a str,
    /// Only the first N items of each task.
    pub limit: Option<usize>,
    /// Only this shard of them (`--shard I/N`).
    pub shard: Option<pudding_core::Shard>,
}

impl<'a> ItemSelection<'a> {
    /// All items (up to `limit`) of `tasks`, unsharded.
    pub fn new(tasks: &'a str, limit: Option<usize>) -> Self {
        Self {
            tasks,
            limit,
            shard: None,
        }
    }
}

fn eval_config(
    items: ItemSelection<'_>,
    jobs: usize,
) -> Result<EvalConfig, Box<dyn std::error::Error>> {
    Ok(EvalConfig {
        tasks: parse_tasks(items.tasks)?,
        limit: items.limit,
        checkpoint_every: 50,
        jobs,
        shard: items.shard,
    })
}

/// Runs `pudding eval` with a progress bar (items/s), resuming from `out` if present.
/// `chooser` picks each item's omission set (static, routed or oracle).
pub fn run_eval_command<B: Backend>(
    lm: &LlamaLm<B>,
    chooser: &mut dyn SetChooser,
    items: ItemSelection<'_>,
    out: &std::path::Path,
) -> Result<EvalReport, Box<dyn std::error::Error>> {
    let config = eval_config(items, 1)?;
    let mut bar = EvalProgress::new();
    let mut progress = |task, done, total| bar.update(task, done, total);
    let report = run_eval(lm, &config, chooser, out, &mut load_task, &mut progress)?;
    bar.finish();
    Ok(report)
}

/// Evaluates one fixed omission set into the resumable results file `out`; `jobs` > 1
/// scores that many items at once, each on one CPU thread (through
/// [`run_eval_sets_command`], which writes the same file).
pub fn run_static_eval_command<B: Backend>(
    lm: &LlamaLm<B>,
    set: OmissionSet,
    items: ItemSelection<'_>,
    jobs: usize,
    out: &std::path::Path,
) -> Result<EvalReport, Box<dyn std::error::Error>> {
    if jobs < 2 {
        return run_eval_command(lm, &mut StaticChooser(set), items, out);
    }
    run_eval_sets_command(lm, &[set], items, jobs, &[out.to_path_buf()])?
        .pop()
        .ok_or_else(|| "the evaluation returned no report".into())
}

/// Evaluates several fixed omission sets in one pass (`run_eval_sets`): `outs[i]` is the
/// resumable results file of `sets[i]`; `jobs` > 1 scores that many items at once, each
/// in one pass over the sets on one CPU thread (`pudding_eval::parallel`).
pub fn run_eval_sets_command<B: Backend>(
    lm: &LlamaLm<B>,
    sets: &[OmissionSet],
    items: ItemSelection<'_>,
    jobs: usize,
    outs: &[std::path::PathBuf],
) -> Result<Vec<EvalReport>, Box<dyn std::error::Error>> {
    let config = eval_config(items, jobs)?;
    let mut bar = EvalProgress::new();
    let mut progress = |task, done, total| bar.update(task, done, total);
    let reports = run_eval_sets(lm, &config, sets, outs, &mut load_task, &mut progress)?;
    bar.finish();
    Ok(reports)
}

fn phase_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>24} phase {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The search job of `pudding candidates`: every loss of `losses` (comma-separated, `tl`,
/// `tld`) on each task of `tasks` (comma-separated lm-eval names), at `k` on `calib` rows.
pub fn search_job(
    tasks: &str,
    losses: &str,
    k: usize,
    calib: usize,
) -> Result<SearchJob, Box<dyn std::error::Error>> {
    let tasks = parse_tasks(tasks)?;
    let losses = losses
        .split(',')
        .map(|l| l.parse::<LossKind>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SearchJob::new(&tasks, &losses, k, calib))
}

/// `pudding candidates`: runs `job`'s greedy searches, or only `shard`'s share of them (by
/// position in the job's order), with a progress bar. The whole job writes its pool to
/// `out` with the report and plot ([`save_pool_with_report`]); a shard writes its part to
/// `out` tagged with the shard ([`crate::sharding::shard_path`]) for `pudding merge`.
pub fn candidates_command<B: Backend>(
    lm: &LlamaLm<B>,
    job: &SearchJob,
    shard: Option<pudding_core::Shard>,
    out: &std::path::Path,
    checkpoints: Option<&std::path::Path>,
) -> Result<PoolShard, Box<dyn std::error::Error>> {
    let config = GreedyConfig {
        k: job.k,
        ..Default::default()
    };
    let bar = phase_bar();
    let start = std::time::Instant::now();
    let part = run_searches(lm, job, shard, &config, checkpoints, &mut |label, p, n| {
        bar.set_prefix(label.to_string());
        bar.set_length(n as u64);
        bar.set_position(p as u64 - 1);
    })?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    match shard {
        Some(shard) => {
            let path = crate::sharding::shard_path(out, shard);
            pudding_core::io::write_json_atomic(&path, &part)?;
            println!(
                "shard {shard}: {} candidates from {} of {} searches in {secs:.0} s -> {}",
                part.pool.len(),
                part.searches,
                job.searches(),
                path.display()
            );
        }
        None => {
            save_pool_with_report(&part.pool, out)?;
            println!(
                "{} candidates from {} searches in {secs:.0} s -> {}",
                part.pool.len(),
                job.searches(),
                out.display()
            );
            for (i, c) in part.pool.candidates.iter().enumerate() {
                println!("  {i}: skip {}", c.set);
            }
        }
    }
    Ok(part)
}

/// Writes `pool` to `out` with its Markdown report and SVG plot beside it (`out` with the
/// extensions `md` and `svg`), each atomically.
pub fn save_pool_with_report(
    pool: &CandidatePool,
    out: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    pool.save(out)?;
    pudding_core::io::write_atomic(&out.with_extension("md"), pool_markdown(pool).as_bytes())?;
    pudding_core::io::write_atomic(&out.with_extension("svg"), pool_svg(pool)?.as_bytes())?;
    Ok(())
}

/// Tokens kept of each calibration passage for the perplexity-based baselines.
pub const CALIBRATION_TEXT_TOKENS: usize = 128;

/// `pudding baseline`: one static baseline's omission set as a one-candidate pool.
pub fn baseline_command<B: Backend>(
    lm: &LlamaLm<B>,
    method: &str,
    k: usize,
    calib: usize,
    out: &std::path::Path,
) -> Result<CandidatePool, Box<dyn std::error::Error>> {
    let config = GreedyConfig {
        k,
        ..Default::default()
    };
    let texts = calibration_texts(calib)?;
    let start = std::time::Instant::now();
    let pool = match method {
        "sleb" => {
            let bar = phase_bar();
            bar.set_prefix("sleb");
            // Resumable: each finished phase is kept next to the output.
            let checkpoint = crate::shard_commands::sleb_checkpoint(out);
            let r = sleb(
                lm,
                &texts,
                CALIBRATION_TEXT_TOKENS,
                &config,
                Some(&checkpoint),
                &mut |p, n| {
                    bar.set_length(n as u64);
                    bar.set_position(p as u64 - 1);
                },
            )?;
            bar.finish_and_clear();
            let provenance = provenance("sleb", None, LossKind::Perplexity, calib, &r);
            CandidatePool::new(
                lm.fingerprint().clone(),
                vec![Candidate {
                    set: r.set,
                    provenance,
                }],
            )?
        }
        "shortgpt" => {
            let samples = samples_from_texts(lm, &texts, CALIBRATION_TEXT_TOKENS)?;
            let r = shortgpt_block_influence(lm, &samples, &config)?;
            baseline_pool(lm.fingerprint(), r, calib)?
        }
        "shortened-ppl" => {
            let samples = samples_from_texts(lm, &texts, CALIBRATION_TEXT_TOKENS)?;
            let mut evaluator = PrefixCacheEvaluator {
                lm,
                samples: &samples,
                kind: LossKind::Perplexity,
            };
            let r = shortened_llama_ppl(&mut evaluator, lm.n_blocks(), &config)?;
            baseline_pool(lm.fingerprint(), r, calib)?
        }
        "taylor" => {
            // Each text as the model reads it: the prefix token, then the passage.
            let texts: Vec<Vec<u32>> = samples_from_texts(lm, &texts, CALIBRATION_TEXT_TOKENS)?
                .into_iter()
                .map(|s| {
                    let r = &s.choices[s.gold];
                    r.context.iter().chain(&r.continuation).copied().collect()
                })
                .collect();
            let tracked = lm
                .model()
                .clone()
                .into_autodiff::<burn::backend::Autodiff<B>>()
                .map_blocks(|b| b.map_params(&mut |t| t.require_grad(), &mut |t| t.require_grad()));
            let r = shortened_llama_taylor(&tracked, &texts, &config)?;
            baseline_pool(lm.fingerprint(), r, calib)?
        }
        other => {
            return Err(format!(
                "unknown baseline {other:?}; use sleb, shortgpt, shortened-ppl or taylor"
            )
            .into())
        }
    };
    pool.save(out)?;
    println!(
        "{method}: skip {} ({:.0} s) -> {}",
        pool.candidates[0].set,
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(pool)
}
