//! `pudding reproduce`.

use super::prelude::*;

/// The arguments of `pudding reproduce` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct ReproduceArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Output directory.
    #[arg(long, default_value = "results/smollm2")]
    out: PathBuf,
    /// Numbers of skipped blocks, comma-separated.
    #[arg(short = 'k', long, default_value = "3,6")]
    k: String,
    /// Tasks for the candidate search and the router labels.
    #[arg(
        long,
        default_value = "arc_challenge,arc_easy,hellaswag,piqa,winogrande"
    )]
    calib_tasks: String,
    /// Losses of the candidate search.
    #[arg(long, default_value = "tl,tld")]
    losses: String,
    /// Calibration rows per task for the candidate search.
    #[arg(long, default_value_t = 128, value_parser = at_least_one)]
    calib: usize,
    /// Calibration passages of the static baselines.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    baseline_calib: usize,
    /// Static baselines to compare.
    #[arg(long, default_value = "sleb,shortgpt,shortened-ppl,taylor")]
    baselines: String,
    /// Labelled train rows per calibration task for the router.
    #[arg(long, default_value_t = 200, value_parser = at_least_one)]
    label_rows: usize,
    /// Router training epochs.
    #[arg(long, default_value_t = 200, value_parser = at_least_one)]
    router_epochs: usize,
    /// Routers use only the first N encoder layers (default: all).
    #[arg(long)]
    encoder_layers: Option<usize>,
    /// Evaluation tasks (`paper` = the six of the paper).
    #[arg(long, default_value = "paper")]
    tasks: String,
    /// Tasks the router never saw (empty: none).
    #[arg(long, default_value = "openbookqa,sciq,commonsense_qa,social_iqa,mmlu")]
    unseen: String,
    /// N items of each evaluation task (the first N; MMLU: its subjects in turn;
    /// default: full splits).
    #[arg(long, value_parser = at_least_one)]
    limit: Option<usize>,
    /// N items of each unseen task, chosen the same way (default: full splits).
    #[arg(long, value_parser = at_least_one)]
    unseen_limit: Option<usize>,
    #[arg(long, default_value_t = 1, value_parser = job_count, help = JOBS_HELP)]
    jobs: usize,
    /// Timed repeats of the speed benchmark (0: skip it).
    #[arg(long, default_value_t = 3)]
    bench_repeats: usize,
    /// Write the tables and plots (E2E.md, e2e.json, SVGs) here instead of --out, e.g.
    /// a report on the full splits of some tasks beside the committed one.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Run only this stage (for a cluster: scripts/slurm/reproduce.sh chains them); without
    /// it, every stage runs and the report is written.
    #[arg(long, value_enum)]
    stage: Option<pudding_cli::reproduce::Stage>,
    /// With --stage pools, baselines, labels or eval: run only shard I of N (0-based) of
    /// it (the searches, the baseline runs, the labelled rows, the evaluated items, each by
    /// position); `--stage merge` then joins the shards.
    #[arg(long, value_name = "I/N", requires = "stage")]
    shard: Option<pudding_core::Shard>,
}

/// Runs `pudding reproduce`.
pub(super) fn run(args: ReproduceArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { exact, decode, .. } = *ctx;
    let ReproduceArgs {
        model: ModelArg { model },
        out,
        k,
        calib_tasks,
        losses,
        calib,
        baseline_calib,
        baselines,
        label_rows,
        router_epochs,
        encoder_layers,
        tasks,
        unseen,
        limit,
        unseen_limit,
        jobs,
        bench_repeats,
        report,
        stage: stage_arg,
        shard,
    } = args;
    let bad = CliError::Usage;
    let parse = |t: &str| {
        if t.trim().is_empty() {
            Ok(Vec::new())
        } else {
            pudding_cli::commands::parse_tasks(t).map_err(bad)
        }
    };
    let ks = k
        .split(',')
        .map(|v| at_least_one(v.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("-k: {e}")))?;
    let config = pudding_cli::reproduce::ReproduceConfig {
        out,
        ks,
        calib_tasks: parse(&calib_tasks)?,
        losses,
        calib,
        baseline_calib,
        baselines: baselines
            .split(',')
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect(),
        label_rows,
        router_epochs,
        router_encoder_layers: encoder_layers,
        eval_tasks: parse(&tasks)?,
        unseen_tasks: parse(&unseen)?,
        eval_limit: limit,
        unseen_limit,
        eval_jobs: jobs,
        bench_repeats,
        report_dir: report,
    };
    use pudding_cli::reproduce::Stage;
    if let (Some(which @ (Stage::Merge | Stage::Routers)), Some(_)) = (stage_arg, shard) {
        return Err(bad(format!(
            "the {which:?} stage is not sharded: run it without --shard"
        )));
    }
    match stage_arg {
        // The merge reads and writes files only: no model to load.
        Some(Stage::Merge) => pudding_cli::reproduce::merge_stage(&config).map_err(stage)?,
        Some(which) => {
            let lm = load(model, exact, decode)?;
            pudding_cli::reproduce::run_stage(&lm, &config, which, shard).map_err(stage)?
        }
        None => {
            let lm = load(model, exact, decode)?;
            pudding_cli::reproduce::reproduce(&lm, &config)
                .map_err(stage)
                .map(drop)?
        }
    }
    Ok(())
}
