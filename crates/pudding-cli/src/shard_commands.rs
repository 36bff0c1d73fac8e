//! The shards of jobs that do not split into items: a one-shot baseline's calibration
//! statistics (`pudding baseline --shard I/N`) and the trials of one greedy phase
//! (`--step-shard I/N` on `pudding candidates` and on SLEB). Each writes a shard file next
//! to the job's output; `pudding merge` ([`crate::sharding`]) joins them.

use crate::commands::CALIBRATION_TEXT_TOKENS;
use crate::sharding::shard_path;
use burn::prelude::Backend;
use pudding_candidates::baselines::{
    block_influence_rows, removal_losses, BaselineShard, BaselineStatistics,
};
use pudding_candidates::calibration::samples_from_texts;
use pudding_candidates::greedy::{PhaseShard, PrefixCacheEvaluator};
use pudding_candidates::pool::{
    calibration_texts, search_checkpoint, search_phase_shard, sleb_phase_shard, SearchJob,
};
use pudding_candidates::{GreedyConfig, LossKind};
use pudding_core::{io, Shard, SkippableLm};
use pudding_models::LlamaLm;
use std::error::Error;
use std::path::{Path, PathBuf};

/// Where `pudding baseline --method sleb --out OUT` keeps its search's checkpoint
/// (`OUT` with the extension `sleb-checkpoint.json`); its step shards and `pudding merge`
/// use it too.
pub fn sleb_checkpoint(out: &Path) -> PathBuf {
    out.with_extension("sleb-checkpoint.json")
}

/// `pudding baseline --shard I/N`: `shard`'s share of a one-shot baseline's calibration
/// statistics, written to `out` tagged with the shard. ShortGPT splits the calibration
/// passages, Shortened LLaMA (PPL) the unprotected blocks, both by position. SLEB is a
/// greedy search (its phases are spread with `--step-shard`) and Taylor+'s statistic is a
/// gradient as large as the model, so neither is sharded here.
pub fn baseline_shard_command<B: Backend>(
    lm: &LlamaLm<B>,
    method: &str,
    k: usize,
    calib: usize,
    out: &Path,
    shard: Shard,
) -> Result<BaselineShard, Box<dyn Error>> {
    let config = GreedyConfig {
        k,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let statistics = match method {
        "shortgpt" => {
            let texts = shard.select(calibration_texts(calib)?);
            let samples = samples_from_texts(lm, &texts, CALIBRATION_TEXT_TOKENS)?;
            BaselineStatistics::BlockInfluence(block_influence_rows(lm, &samples)?)
        }
        "shortened-ppl" => {
            let texts = calibration_texts(calib)?;
            let samples = samples_from_texts(lm, &texts, CALIBRATION_TEXT_TOKENS)?;
            let mut evaluator = PrefixCacheEvaluator {
                lm,
                samples: &samples,
                kind: LossKind::Perplexity,
            };
            BaselineStatistics::RemovalLosses(removal_losses(
                &mut evaluator,
                lm.n_blocks(),
                &config,
                shard,
            )?)
        }
        "sleb" => {
            return Err(
                "SLEB is a greedy search: spread the trials of each of its phases \
                        with --step-shard I/N (one round of shards and a merge per phase)"
                    .into(),
            )
        }
        "taylor" => {
            return Err(
                "the Taylor+ statistic is a gradient as large as the model, summed \
                        over every passage: it is not sharded; run it in one process"
                    .into(),
            )
        }
        other => {
            return Err(format!(
                "unknown baseline {other:?}; use sleb, shortgpt, shortened-ppl or taylor"
            )
            .into())
        }
    };
    let part = BaselineShard {
        shard,
        method: method.to_string(),
        k,
        calib,
        fingerprint: lm.fingerprint().clone(),
        statistics,
    };
    let path = shard_path(out, shard);
    io::write_json_atomic(&path, &part)?;
    println!(
        "{method} shard {shard}: statistics in {:.0} s -> {}",
        start.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(part)
}

/// `pudding baseline --method sleb --step-shard I/N`: `shard`'s share of the trials of the
/// SLEB search's next phase, resuming from [`sleb_checkpoint`] of `out`; written next to
/// that checkpoint, tagged with the shard.
pub fn sleb_step_shard_command<B: Backend>(
    lm: &LlamaLm<B>,
    k: usize,
    calib: usize,
    out: &Path,
    shard: Shard,
) -> Result<PhaseShard, Box<dyn Error>> {
    let config = GreedyConfig {
        k,
        ..Default::default()
    };
    let texts = calibration_texts(calib)?;
    let checkpoint = sleb_checkpoint(out);
    let start = std::time::Instant::now();
    let part = sleb_phase_shard(
        lm,
        &texts,
        CALIBRATION_TEXT_TOKENS,
        &config,
        &checkpoint,
        shard,
    )?;
    write_phase_shard(&part, &checkpoint, start)?;
    Ok(part)
}

/// `pudding candidates --step-shard I/N`: `shard`'s share of the trials of the next phase
/// of the one search of `job`, resuming from its checkpoint in `checkpoints`; written next
/// to that checkpoint, tagged with the shard.
pub fn candidates_step_shard_command<B: Backend>(
    lm: &LlamaLm<B>,
    job: &SearchJob,
    checkpoints: &Path,
    shard: Shard,
) -> Result<PhaseShard, Box<dyn Error>> {
    std::fs::create_dir_all(checkpoints)?;
    let checkpoint = search_checkpoint(job, checkpoints)?;
    let start = std::time::Instant::now();
    let part = search_phase_shard(lm, job, checkpoints, shard)?;
    write_phase_shard(&part, &checkpoint, start)?;
    Ok(part)
}

/// Writes a phase shard next to the search's `checkpoint` and says how to merge it.
fn write_phase_shard(
    part: &PhaseShard,
    checkpoint: &Path,
    start: std::time::Instant,
) -> Result<(), Box<dyn Error>> {
    let path = shard_path(checkpoint, part.shard);
    io::write_json_atomic(&path, part)?;
    let blocks: Vec<usize> = part.trials.iter().map(|t| t.0).collect();
    println!(
        "phase {}/{} shard {}: tried blocks {blocks:?} in {:.0} s -> {}; once all {} shards \
         are done: pudding merge --out {}",
        part.phase(),
        part.config.k,
        part.shard,
        start.elapsed().as_secs_f64(),
        path.display(),
        part.shard.count,
        checkpoint.display()
    );
    Ok(())
}
