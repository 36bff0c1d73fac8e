//! `pudding reproduce`: the paper's comparison end to end for one model, resumable.
//!
//! For each k: candidate pool -> static baselines -> router labels -> router; then every
//! distinct omission set (dense, each baseline, each pool candidate) is evaluated once
//! per item (all sets in one pass, sharing the blocks whose input they share), and
//! PuDDing and the oracle are read off those per-item results: PuDDing
//! takes the candidate the router picks for the item, the oracle the candidate under
//! which the correct answer is most likely (the router's training target). Scoring is
//! deterministic, so this equals running the routed and oracle evaluations separately,
//! at a fraction of the cost. Every step is skipped when its output exists and every
//! evaluation resumes from its partial file.

use crate::router_commands::load_router;
use burn::prelude::Backend;
use pudding_core::{CandidatePool, OmissionSet, SkippableLm};
use pudding_eval::bench::{median, run_bench, BenchConfig, BenchReport};
use pudding_eval::runner::{EvalReport, RoutedChooser, SetChooser};
use pudding_eval::scorer::tokenize_request;
use pudding_eval::tasks::{limit_items, load_task, TaskItem, TaskName};
use pudding_models::LlamaLm;
use serde::{Deserialize, Serialize};
mod stages;

pub use stages::{merge_stage, run_stage, Stage};
use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;

/// The static baselines, by command name, with the names used in tables.
pub const BASELINES: [(&str, &str); 4] = [
    ("sleb", "SLEB"),
    ("shortgpt", "ShortGPT"),
    ("shortened-ppl", "Shortened LLaMA (PPL)"),
    ("taylor", "Shortened LLaMA (Taylor+)"),
];

/// What to run.
#[derive(Clone, Debug)]
pub struct ReproduceConfig {
    /// Output directory (pools, baselines, labels, routers, evaluations, tables).
    pub out: PathBuf,
    /// Numbers of skipped blocks.
    pub ks: Vec<usize>,
    /// Tasks whose train rows build the candidates and the router labels.
    pub calib_tasks: Vec<TaskName>,
    /// Losses of the candidate search (`tl,tld`).
    pub losses: String,
    /// Calibration rows per task for the candidate search.
    pub calib: usize,
    /// Calibration passages for the static baselines.
    pub baseline_calib: usize,
    /// Baselines to run (command names of [`BASELINES`]).
    pub baselines: Vec<String>,
    /// Labelled train rows per calibration task for the router.
    pub label_rows: usize,
    /// Router training epochs.
    pub router_epochs: usize,
    /// Encoder layers the routers use (the first N; `None`: all).
    pub router_encoder_layers: Option<usize>,
    /// Evaluation tasks (the paper's six).
    pub eval_tasks: Vec<TaskName>,
    /// Tasks the router never saw in training.
    pub unseen_tasks: Vec<TaskName>,
    /// First N items of each evaluation task (None: the full split).
    pub eval_limit: Option<usize>,
    /// First N items of each unseen task.
    pub unseen_limit: Option<usize>,
    /// Groups of omission sets scored at once in the evaluations, each on one CPU thread
    /// (1: one pass on all threads; see `pudding_eval::parallel`).
    pub eval_jobs: usize,
    /// Timed repeats of the speed benchmark (0: no benchmark).
    pub bench_repeats: usize,
    /// Where the tables and plots go (`E2E.md`, `e2e.json`, the SVGs); `None`: `out`.
    /// Lets one `out` hold several reports, e.g. the full splits of the tasks finished so
    /// far beside the tables on the first N items.
    pub report_dir: Option<PathBuf>,
}

/// One method's accuracy (reported metric, 0..1) per task and on average.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    /// Method name.
    pub method: String,
    /// Skipped blocks (0 for dense).
    pub k: usize,
    /// The omission set, for static methods.
    pub set: Option<OmissionSet>,
    /// Reported metric per task.
    pub tasks: BTreeMap<String, f64>,
    /// Mean over the paper tasks.
    pub average: f64,
    /// Mean over the unseen tasks.
    pub unseen_average: Option<f64>,
}

/// How well the router does against the oracle for one k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterQuality {
    /// Skipped blocks.
    pub k: usize,
    /// Which items: `paper` or `unseen`.
    pub items: String,
    /// Fraction of items where the router picks the oracle's candidate.
    pub top1_agreement: f64,
    /// Mean (oracle's minus the chosen candidate's) per-token log-likelihood of the
    /// correct answer.
    pub regret: f64,
    /// Average accuracy of the best single candidate of the pool.
    pub best_single: f64,
    /// Index of that candidate.
    pub best_single_candidate: usize,
    /// Average accuracy of PuDDing (routed).
    pub routed: f64,
    /// Average accuracy of the oracle.
    pub oracle: f64,
    /// `(routed - best_single) / (oracle - best_single)`, when the oracle gains.
    pub recovered: Option<f64>,
}

/// Per task, how many items the router sent to each candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChoiceCounts {
    /// Skipped blocks.
    pub k: usize,
    /// Candidate sets, by index.
    pub candidates: Vec<OmissionSet>,
    /// Task -> count per candidate.
    pub counts: BTreeMap<String, Vec<usize>>,
}

/// Routed vs dense latency, router time included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutedSpeed {
    /// Skipped blocks.
    pub k: usize,
    /// Dense vs the most chosen candidate.
    pub bench: BenchReport,
    /// Median router time per prompt (seconds), measured on the evaluation items.
    pub router_secs: f64,
}

/// Everything the tables are made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reproduction {
    /// Items per paper task actually evaluated.
    pub eval_items: BTreeMap<String, usize>,
    /// Accuracy rows.
    pub methods: Vec<MethodRow>,
    /// Router quality per k.
    pub router: Vec<RouterQuality>,
    /// Candidate choice counts per k.
    pub choices: Vec<ChoiceCounts>,
    /// Block omission frequency of the routed sets: k -> task -> per block fraction.
    pub omission_frequency: BTreeMap<usize, BTreeMap<String, Vec<f64>>>,
    /// Speed per k.
    pub speed: Vec<RoutedSpeed>,
}

/// A file-name label for an omission set: `dense` or `skip-3_7_19`.
pub fn set_label(set: &OmissionSet) -> String {
    if set.is_empty() {
        "dense".into()
    } else {
        let parts: Vec<String> = set.blocks().iter().map(|b| b.to_string()).collect();
        format!("skip-{}", parts.join("_"))
    }
}

fn task_list(tasks: &[TaskName]) -> String {
    tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(",")
}

fn step(what: &str) {
    eprintln!("== {what}");
}

/// Per-item outcome needed by the analysis.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    correct: bool,
    gold_loglikelihood: f64,
}

/// Per task, per doc id, the outcome under one set.
type Outcomes = BTreeMap<String, BTreeMap<usize, Outcome>>;

fn outcomes(report: &EvalReport) -> Outcomes {
    report
        .tasks
        .iter()
        .map(|(task, r)| {
            let norm = r.metric == "acc_norm";
            let items = r
                .items
                .iter()
                .map(|i| {
                    let pred = if norm { i.pred_norm } else { i.pred };
                    (
                        i.doc_id,
                        Outcome {
                            correct: pred == i.gold,
                            gold_loglikelihood: i.loglikelihoods[i.gold],
                        },
                    )
                })
                .collect();
            (task.clone(), items)
        })
        .collect()
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The evaluation items of a task (all, or `limit` of them as [`limit_items`] picks).
fn items(task: TaskName, limit: Option<usize>) -> Result<Vec<TaskItem>, Box<dyn Error>> {
    let items = load_task(task, task.default_eval_split())?;
    Ok(match limit {
        Some(limit) => limit_items(items, limit),
        None => items,
    })
}

/// The task-level choice of a labels file: per calibration task, the candidate with the
/// best mean label over that task's rows, and the best over all rows (for other tasks).
struct TaskChoice {
    per_task: BTreeMap<String, usize>,
    overall: usize,
}

fn task_choice(path: &std::path::Path, pool: &CandidatePool) -> Result<TaskChoice, Box<dyn Error>> {
    let n_candidates = pool.len();
    let labels = pudding_router::labels::read_labels(path)?;
    // A labels file left from another pool would make this row silently wrong.
    if labels.header.pool_id != pool.id() {
        return Err(format!(
            "{} was made for another candidate pool than {}",
            path.display(),
            pool.id()
        )
        .into());
    }
    if labels.header.n_candidates != n_candidates {
        return Err(format!(
            "labels file has {} candidates, the pool {n_candidates}",
            labels.header.n_candidates
        )
        .into());
    }
    let best = |sum: &[f64]| {
        (0..sum.len())
            .max_by(|&a, &b| sum[a].total_cmp(&sum[b]))
            .unwrap_or(0)
    };
    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut overall = vec![0.0f64; n_candidates];
    for row in &labels.rows {
        let sum = sums
            .entry(row.task.clone())
            .or_insert_with(|| vec![0.0; n_candidates]);
        for (c, &v) in row.label.iter().enumerate() {
            sum[c] += f64::from(v);
            overall[c] += f64::from(v);
        }
    }
    Ok(TaskChoice {
        per_task: sums.iter().map(|(t, s)| (t.clone(), best(s))).collect(),
        overall: best(&overall),
    })
}

/// Runs (or resumes) everything and writes `E2E.md`, `e2e.json` and the plots to
/// `report_dir` (default: `out`).
pub fn reproduce<B: Backend>(
    lm: &LlamaLm<B>,
    cfg: &ReproduceConfig,
) -> Result<Reproduction, Box<dyn Error>> {
    // Checked before any search: a misspelt name would otherwise fail hours in.
    if let Some(name) = cfg
        .baselines
        .iter()
        .find(|name| !BASELINES.iter().any(|(known, _)| known == name))
    {
        return Err(format!(
            "unknown baseline {name:?}; use sleb, shortgpt, shortened-ppl or taylor"
        )
        .into());
    }
    let out = &cfg.out;
    std::fs::create_dir_all(out.join("eval"))?;
    let pools: BTreeMap<usize, CandidatePool> = stages::pools(lm, cfg, None)?.into_iter().collect();
    let baselines: BTreeMap<(usize, String), OmissionSet> =
        stages::baselines(lm, cfg, None)?.into_iter().collect();
    stages::run_stage(lm, cfg, Stage::Labels, None)?;
    stages::run_stage(lm, cfg, Stage::Routers, None)?;
    let groups = stages::groups(cfg);
    let mut results: BTreeMap<(&str, String), Outcomes> = BTreeMap::new();
    for (group, reports) in stages::evaluate(lm, cfg, None)? {
        for (set, report) in &reports {
            results.insert((group, set_label(set)), outcomes(report));
        }
    }

    let mut analysis = Reproduction {
        eval_items: BTreeMap::new(),
        methods: Vec::new(),
        router: Vec::new(),
        choices: Vec::new(),
        omission_frequency: BTreeMap::new(),
        speed: Vec::new(),
    };
    // Each task's evaluation items (the first `limit`), loaded once: they fix the doc ids
    // every set is read on (so files holding more items, from a run with a larger limit,
    // are read consistently) and they are what the router reads.
    let mut task_items: BTreeMap<String, Vec<TaskItem>> = BTreeMap::new();
    for (_, tasks, limit) in groups {
        for &task in tasks.iter() {
            task_items.insert(task.name().to_string(), items(task, limit)?);
        }
    }
    for &task in &cfg.eval_tasks {
        let n = task_items.get(task.name()).map_or(0, Vec::len);
        analysis.eval_items.insert(task.name().to_string(), n);
    }
    let scored: BTreeMap<&str, Vec<usize>> = task_items
        .iter()
        .map(|(name, items)| (name.as_str(), items.iter().map(|i| i.doc_id).collect()))
        .collect();
    let static_row = |method: String, k: usize, set: &OmissionSet| -> MethodRow {
        let label = set_label(set);
        let mut tasks = BTreeMap::new();
        let mut averages = Vec::new();
        for (group, names, _) in groups {
            let Some(o) = results.get(&(group, label.clone())) else {
                averages.push(None);
                continue;
            };
            let per_task: Vec<f64> = names
                .iter()
                .filter_map(|task| {
                    let items = o.get(task.name())?;
                    let ids = scored.get(task.name())?;
                    let acc = mean(
                        ids.iter()
                            .filter_map(|id| items.get(id))
                            .map(|i| f64::from(u8::from(i.correct))),
                    );
                    tasks.insert(task.name().to_string(), acc);
                    Some(acc)
                })
                .collect();
            averages.push(Some(mean(per_task)));
        }
        MethodRow {
            method,
            k,
            set: Some(set.clone()),
            tasks,
            average: averages[0].unwrap_or(f64::NAN),
            unseen_average: averages.get(1).copied().flatten(),
        }
    };
    analysis.methods.push(static_row(
        "Dense".into(),
        0,
        &OmissionSet::dense(lm.n_blocks())?,
    ));
    for ((k, name), set) in &baselines {
        let display = BASELINES
            .iter()
            .find(|(n, _)| n == name)
            .map_or(name.as_str(), |(_, d)| d);
        analysis
            .methods
            .push(static_row(display.to_string(), *k, set));
    }

    for (&k, pool) in &pools {
        let router = load_router::<B>(
            &out.join(format!("pool-k{k}.json")),
            &out.join(format!("router-k{k}")),
            &lm.model().device(),
        )?;
        let mut chooser = RoutedChooser(&router);
        let mut routed_row = MethodRow {
            method: "PuDDing (routed)".into(),
            k,
            set: None,
            tasks: BTreeMap::new(),
            average: f64::NAN,
            unseen_average: None,
        };
        let mut oracle_row = MethodRow {
            method: "Oracle".into(),
            ..routed_row.clone()
        };
        // The task-level baseline: per task, the candidate best on average in the router's
        // labels for that task (a router that only recognises the task).
        let by_task = task_choice(&out.join(format!("labels-k{k}.jsonl")), pool)?;
        let mut task_row = MethodRow {
            method: "Task-level choice (labels)".into(),
            ..routed_row.clone()
        };
        let mut counts = ChoiceCounts {
            k,
            candidates: pool.candidates.iter().map(|c| c.set.clone()).collect(),
            counts: BTreeMap::new(),
        };
        let mut frequency = BTreeMap::new();
        let mut router_secs = Vec::new();
        for (group, tasks, _) in groups {
            let per_candidate: Vec<&Outcomes> = pool
                .candidates
                .iter()
                .filter_map(|c| results.get(&(group, set_label(&c.set))))
                .collect();
            if tasks.is_empty() || per_candidate.len() != pool.len() {
                continue;
            }
            let (mut routed_avg, mut oracle_avg, mut task_avg) =
                (Vec::new(), Vec::new(), Vec::new());
            let mut single_avg = vec![Vec::new(); pool.len()];
            let (mut agree, mut regret, mut n_items) = (0usize, 0.0f64, 0usize);
            for &task in tasks.iter() {
                let name = task.name().to_string();
                let (mut routed_ok, mut oracle_ok, mut task_ok) =
                    (Vec::new(), Vec::new(), Vec::new());
                let task_pick = by_task
                    .per_task
                    .get(&name)
                    .copied()
                    .unwrap_or(by_task.overall);
                let mut single_ok = vec![Vec::new(); pool.len()];
                let mut task_counts = vec![0usize; pool.len()];
                let mut omitted = vec![0usize; lm.n_blocks()];
                for item in task_items.get(&name).into_iter().flatten() {
                    let looked_up: Option<Vec<Outcome>> = per_candidate
                        .iter()
                        .map(|o| o.get(&name).and_then(|t| t.get(&item.doc_id)).copied())
                        .collect();
                    let Some(outcome) = looked_up else {
                        continue; // not evaluated (yet) under every candidate
                    };
                    let choice = chooser.choose(item)?;
                    let chosen = choice.candidate.unwrap_or(0);
                    router_secs.extend(choice.secs);
                    let mut oracle = 0;
                    for (c, o) in outcome.iter().enumerate() {
                        if o.gold_loglikelihood > outcome[oracle].gold_loglikelihood {
                            oracle = c;
                        }
                        single_ok[c].push(f64::from(u8::from(o.correct)));
                    }
                    let gold = &item.requests()[item.gold];
                    let gold_tokens = tokenize_request(lm, 0, gold)?.continuation.len().max(1);
                    regret += (outcome[oracle].gold_loglikelihood
                        - outcome[chosen].gold_loglikelihood)
                        / gold_tokens as f64;
                    agree += usize::from(chosen == oracle);
                    n_items += 1;
                    routed_ok.push(f64::from(u8::from(outcome[chosen].correct)));
                    oracle_ok.push(f64::from(u8::from(outcome[oracle].correct)));
                    task_ok.push(f64::from(u8::from(outcome[task_pick].correct)));
                    task_counts[chosen] += 1;
                    for &b in pool.candidates[chosen].set.blocks() {
                        omitted[b] += 1;
                    }
                }
                if routed_ok.is_empty() {
                    continue;
                }
                let n = routed_ok.len() as f64;
                routed_row.tasks.insert(name.clone(), mean(routed_ok));
                oracle_row.tasks.insert(name.clone(), mean(oracle_ok));
                task_row.tasks.insert(name.clone(), mean(task_ok));
                routed_avg.push(routed_row.tasks[&name]);
                oracle_avg.push(oracle_row.tasks[&name]);
                task_avg.push(task_row.tasks[&name]);
                for (c, ok) in single_ok.into_iter().enumerate() {
                    single_avg[c].push(mean(ok));
                }
                frequency.insert(
                    name.clone(),
                    omitted.iter().map(|&o| o as f64 / n).collect::<Vec<_>>(),
                );
                counts.counts.insert(name, task_counts);
            }
            if n_items == 0 {
                continue;
            }
            let (routed, oracle) = (mean(routed_avg), mean(oracle_avg));
            let singles: Vec<f64> = single_avg.into_iter().map(mean).collect();
            let best = (0..singles.len())
                .max_by(|&a, &b| singles[a].total_cmp(&singles[b]))
                .unwrap_or(0);
            let gain = oracle - singles[best];
            analysis.router.push(RouterQuality {
                k,
                items: group.to_string(),
                top1_agreement: agree as f64 / n_items as f64,
                regret: regret / n_items as f64,
                best_single: singles[best],
                best_single_candidate: best,
                routed,
                oracle,
                recovered: (gain > 1e-12).then(|| (routed - singles[best]) / gain),
            });
            let task_level = mean(task_avg);
            if group == "paper" {
                routed_row.average = routed;
                oracle_row.average = oracle;
                task_row.average = task_level;
            } else {
                routed_row.unseen_average = Some(routed);
                oracle_row.unseen_average = Some(oracle);
                task_row.unseen_average = Some(task_level);
            }
        }
        analysis.methods.push(routed_row);
        analysis.methods.push(task_row);
        analysis.methods.push(oracle_row);
        analysis.omission_frequency.insert(k, frequency);
        if cfg.bench_repeats > 0 {
            let total: Vec<usize> = (0..pool.len())
                .map(|c| counts.counts.values().map(|v| v[c]).sum())
                .collect();
            let most = (0..pool.len()).max_by_key(|&c| total[c]).unwrap_or(0);
            let set = &pool.candidates[most].set;
            step(&format!("speed, k = {k} (skipping {set})"));
            let config = BenchConfig {
                prefill_lengths: vec![128, 512],
                prompt_len: 128,
                generate_lengths: vec![128],
                repeats: cfg.bench_repeats,
            };
            let c = lm.model().config();
            let bench = run_bench(
                lm,
                set,
                &config,
                crate::backend::NAME,
                c.vocab_size as u32,
                &pudding_eval::bench::IdealCost::of(c),
            )?;
            analysis.speed.push(RoutedSpeed {
                k,
                bench,
                router_secs: median(&router_secs),
            });
        }
        analysis.choices.push(counts);
    }

    let report = cfg.report_dir.as_ref().unwrap_or(out);
    std::fs::create_dir_all(report)?;
    pudding_core::io::write_json_atomic(&report.join("e2e.json"), &analysis)?;
    pudding_core::io::write_atomic(
        &report.join("E2E.md"),
        crate::e2e_report::markdown(&analysis, cfg).as_bytes(),
    )?;
    for (k, freq) in &analysis.omission_frequency {
        pudding_core::io::write_atomic(
            &report.join(format!("omission-heatmap-k{k}.svg")),
            crate::e2e_report::heatmap_svg(*k, freq)?.as_bytes(),
        )?;
    }
    pudding_core::io::write_atomic(
        &report.join("accuracy-vs-k.svg"),
        crate::e2e_report::accuracy_svg(&analysis.methods)?.as_bytes(),
    )?;
    eprintln!("tables -> {}", report.join("E2E.md").display());
    Ok(analysis)
}
