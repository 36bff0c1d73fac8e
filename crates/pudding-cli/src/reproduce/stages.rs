//! `reproduce`'s stages, each runnable alone and sharded (`pudding reproduce --stage S
//! --shard I/N`), so that a cluster runs them as chained arrays
//! (`scripts/slurm/reproduce.sh`): pools and baselines, a merge, labels and the
//! evaluation, a merge, the routers, and a last unsharded `reproduce` that finds every
//! output in place and writes the report.
//!
//! Every stage skips an output that exists, and `reproduce` without `--stage` runs them
//! all in one process, so the files are the same either way.

use super::{set_label, ReproduceConfig};
use crate::commands::{
    baseline_command, candidates_command, run_eval_sets_command, search_job, ItemSelection,
};
use crate::router_commands::{labels_command, train_router_command};
use crate::sharding::{find_shards, merge_outputs, shard_path, ShardMergeError};
use burn::prelude::Backend;
use pudding_core::{CandidatePool, OmissionSet, Shard, SkippableLm};
use pudding_eval::runner::EvalReport;
use pudding_models::LlamaLm;
use std::error::Error;
use std::path::PathBuf;

/// A baseline run, `(k, baseline name)`, with the omission set it chose.
pub(super) type BaselineSet = ((usize, String), OmissionSet);

/// An evaluation group's name with each omission set and its report.
pub(super) type GroupReports = (&'static str, Vec<(OmissionSet, EvalReport)>);

/// A stage of `pudding reproduce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The candidate pools (`--shard`: the (task, loss) searches of each k, by position;
    /// with more shards than searches the extra shards have nothing to do).
    Pools,
    /// The static baselines (`--shard`: the (k, baseline) runs, by position).
    Baselines,
    /// Merges the shard outputs present (pools, labels, evaluation directories) into the
    /// files one process writes.
    Merge,
    /// The router labels (needs the pools; `--shard`: the labelled rows).
    Labels,
    /// The routers (needs the labels; not sharded).
    Routers,
    /// Every distinct omission set on the evaluation tasks (needs the pools and baselines;
    /// `--shard`: the items).
    Eval,
}

/// Runs one stage, or `shard`'s share of it. [`Stage::Merge`] and [`Stage::Routers`] take
/// no shard.
pub fn run_stage<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
    stage: Stage,
    shard: Option<Shard>,
) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(cfg.out.join("eval"))?;
    match stage {
        Stage::Pools => pools(lm, cfg, shard).map(drop),
        Stage::Baselines => baselines(lm, cfg, shard).map(drop),
        Stage::Labels => labels(lm, cfg, shard),
        Stage::Eval => evaluate(lm, cfg, shard).map(drop),
        Stage::Routers | Stage::Merge if shard.is_some() => {
            Err(format!("the {stage:?} stage is not sharded: run it as one task").into())
        }
        Stage::Routers => routers(lm, cfg),
        Stage::Merge => merge_stage(cfg),
    }
}

/// `pool-k<k>.json` of `cfg.out`.
fn pool_path(cfg: &ReproduceConfig, k: usize) -> PathBuf {
    cfg.out.join(format!("pool-k{k}.json"))
}

/// `labels-k<k>.jsonl` of `cfg.out`.
fn labels_path(cfg: &ReproduceConfig, k: usize) -> PathBuf {
    cfg.out.join(format!("labels-k{k}.jsonl"))
}

/// `router-k<k>` of `cfg.out`.
pub(super) fn router_dir(cfg: &ReproduceConfig, k: usize) -> PathBuf {
    cfg.out.join(format!("router-k{k}"))
}

/// `baseline-<name>-k<k>.json` of `cfg.out`.
fn baseline_path(cfg: &ReproduceConfig, name: &str, k: usize) -> PathBuf {
    cfg.out.join(format!("baseline-{name}-k{k}.json"))
}

/// The pool of `k`, checked to be this model's; a missing pool names the stage to run.
fn load_pool<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
    k: usize,
) -> Result<CandidatePool, Box<dyn Error>> {
    let path = pool_path(cfg, k);
    if !path.exists() {
        return Err(format!(
            "{} is missing: run the pools stage (and the merge stage, if it was sharded) first",
            path.display()
        )
        .into());
    }
    let pool = CandidatePool::load(&path)?;
    pool.check_model(lm.fingerprint())?;
    Ok(pool)
}

/// The candidate pool of each k (or `shard`'s searches of each); the whole stage returns
/// the pools by k.
pub(super) fn pools<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
    shard: Option<Shard>,
) -> Result<Vec<(usize, CandidatePool)>, Box<dyn Error>> {
    let mut pools = Vec::new();
    for &k in &cfg.ks {
        let path = pool_path(cfg, k);
        let job = search_job(
            &super::task_list(&cfg.calib_tasks),
            &cfg.losses,
            k,
            cfg.calib,
        )?;
        let checkpoints = cfg.out.join("checkpoints");
        match shard {
            _ if path.exists() => {}
            None => {
                super::step(&format!("candidate pool, k = {k}"));
                candidates_command(lm, &job, None, &path, Some(&checkpoints))?;
            }
            Some(shard) => {
                // N shards over S < N searches: shards S.. have nothing to do, and the
                // first S run as shards of S, which the merge stage finds.
                let count = shard.count.min(job.searches());
                if shard.index < count {
                    super::step(&format!("candidate pool, k = {k}, shard {shard}"));
                    let shard = Shard::new(shard.index, count)?;
                    candidates_command(lm, &job, Some(shard), &path, Some(&checkpoints))?;
                }
            }
        }
        if shard.is_none() {
            pools.push((k, load_pool(lm, cfg, k)?));
        }
    }
    Ok(pools)
}

/// Every (k, baseline) run (or `shard`'s share, by position in k-major order); the whole
/// stage returns each run's omission set.
pub(super) fn baselines<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
    shard: Option<Shard>,
) -> Result<Vec<BaselineSet>, Box<dyn Error>> {
    let runs: Vec<(usize, &String)> = cfg
        .ks
        .iter()
        .flat_map(|&k| cfg.baselines.iter().map(move |name| (k, name)))
        .collect();
    let mine = match shard {
        Some(shard) => shard.select(runs.clone()),
        None => runs.clone(),
    };
    for &(k, name) in &mine {
        let path = baseline_path(cfg, name, k);
        if !path.exists() {
            super::step(&format!("baseline {name}, k = {k}"));
            baseline_command(lm, name, k, cfg.baseline_calib, &path)?;
        }
    }
    let mut sets = Vec::new();
    if shard.is_none() {
        for (k, name) in runs {
            let b = CandidatePool::load(&baseline_path(cfg, name, k))?;
            b.check_model(lm.fingerprint())?;
            sets.push(((k, name.clone()), b.candidates[0].set.clone()));
        }
    }
    Ok(sets)
}

/// The router labels of each k whose router is not trained yet (or `shard`'s rows).
fn labels<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
    shard: Option<Shard>,
) -> Result<(), Box<dyn Error>> {
    for &k in &cfg.ks {
        let labels = labels_path(cfg, k);
        if router_dir(cfg, k).join("router.json").exists() || (shard.is_some() && labels.exists()) {
            continue;
        }
        load_pool(lm, cfg, k)?;
        super::step(&format!("router labels, k = {k}"));
        labels_command(
            lm,
            &pool_path(cfg, k),
            &super::task_list(&cfg.calib_tasks),
            (cfg.label_rows, cfg.calib),
            "prompt",
            shard,
            &labels,
        )?;
    }
    Ok(())
}

/// The router of each k that has none yet, trained on its labels.
fn routers<B: Backend>(lm: &LlamaLm<B>, cfg: &ReproduceConfig) -> Result<(), Box<dyn Error>> {
    for &k in &cfg.ks {
        let dir = router_dir(cfg, k);
        if dir.join("router.json").exists() {
            continue;
        }
        let labels = labels_path(cfg, k);
        if !labels.exists() {
            return Err(format!(
                "{} is missing: run the labels stage (and the merge stage, if it was sharded) \
                 first",
                labels.display()
            )
            .into());
        }
        load_pool(lm, cfg, k)?;
        super::step(&format!("router training, k = {k}"));
        train_router_command(
            &pool_path(cfg, k),
            &labels,
            &dir,
            &pudding_router::config::TrainConfig {
                epochs: cfg.router_epochs,
                seed: 42,
                ..Default::default()
            },
            cfg.router_encoder_layers,
        )?;
    }
    Ok(())
}

/// The evaluation groups: (name, tasks, item limit).
pub(super) fn groups(
    cfg: &ReproduceConfig,
) -> [(
    &'static str,
    &[pudding_eval::tasks::TaskName],
    Option<usize>,
); 2] {
    [
        ("paper", &cfg.eval_tasks, cfg.eval_limit),
        ("unseen", &cfg.unseen_tasks, cfg.unseen_limit),
    ]
}

/// Every distinct omission set the tables need (dense, each baseline, each pool
/// candidate), ordered by size, then blocks.
fn eval_sets<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
) -> Result<Vec<OmissionSet>, Box<dyn Error>> {
    let mut sets = vec![OmissionSet::dense(lm.n_blocks())?];
    for &k in &cfg.ks {
        for name in &cfg.baselines {
            let path = baseline_path(cfg, name, k);
            if !path.exists() {
                return Err(format!(
                    "{} is missing: run the baselines stage first",
                    path.display()
                )
                .into());
            }
            let b = CandidatePool::load(&path)?;
            b.check_model(lm.fingerprint())?;
            sets.push(b.candidates[0].set.clone());
        }
        sets.extend(load_pool(lm, cfg, k)?.candidates.into_iter().map(|c| c.set));
    }
    sets.sort_by_key(|s| (s.len(), s.blocks().to_vec()));
    sets.dedup();
    Ok(sets)
}

/// Evaluates every distinct omission set once per group in one pass (or `shard`'s items,
/// into `eval/<group>` tagged with the shard); the whole stage returns, per group, each
/// set with its report.
pub(super) fn evaluate<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
    shard: Option<Shard>,
) -> Result<Vec<GroupReports>, Box<dyn Error>> {
    let sets = eval_sets(lm, cfg)?;
    let mut out = Vec::new();
    for (group, tasks, limit) in groups(cfg) {
        if tasks.is_empty() {
            continue;
        }
        let dir = cfg.out.join("eval").join(group);
        let dir = match shard {
            Some(shard) => shard_path(&dir, shard),
            None => dir,
        };
        std::fs::create_dir_all(&dir)?;
        let paths: Vec<PathBuf> = sets
            .iter()
            .map(|set| dir.join(format!("{}.json", set_label(set))))
            .collect();
        super::step(&format!(
            "evaluate {} omission sets in one pass on the {group} tasks",
            sets.len()
        ));
        let items = ItemSelection {
            tasks: &super::task_list(tasks),
            limit,
            shard,
        };
        let reports = run_eval_sets_command(lm, &sets, items, cfg.eval_jobs, &paths)?;
        out.push((group, sets.iter().cloned().zip(reports).collect()));
    }
    Ok(out)
}

/// The merge stage, which needs no model: joins the shard outputs present, a pool or
/// labels file that does not exist yet from its shards, and each evaluation group's
/// directory from its shard directories.
pub fn merge_stage(cfg: &ReproduceConfig) -> Result<(), Box<dyn Error>> {
    let mut targets = Vec::new();
    for &k in &cfg.ks {
        targets.push(pool_path(cfg, k));
        targets.push(labels_path(cfg, k));
    }
    for (group, _, _) in groups(cfg) {
        targets.push(cfg.out.join("eval").join(group));
    }
    for out in targets {
        // An evaluation directory exists before its merge (the shards' parent makes it);
        // a pool or labels file that exists is complete.
        if out.is_file() {
            continue;
        }
        let shards = match find_shards(&out) {
            Ok(shards) => shards,
            Err(ShardMergeError::NoShards { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let written = merge_outputs(&out, &shards)?;
        println!(
            "{} shard outputs -> {} ({} files)",
            shards.len(),
            out.display(),
            written.len()
        );
    }
    Ok(())
}
