//! `pudding candidates`.

use super::prelude::*;

/// The arguments of `pudding candidates` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct CandidatesArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Calibration tasks (lm-eval names, comma-separated).
    #[arg(
        long,
        default_value = "arc_challenge,arc_easy,hellaswag,piqa,winogrande"
    )]
    tasks: String,
    /// Losses (tl, tld), comma-separated.
    #[arg(long, default_value = "tl,tld")]
    losses: String,
    /// Blocks to omit (at least 1).
    #[arg(short = 'k', long, default_value_t = 6, value_parser = at_least_one)]
    k: usize,
    /// Calibration rows per task (the first N train rows).
    #[arg(long, default_value_t = 128, value_parser = at_least_one)]
    calib: usize,
    /// Output pool (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Directory for per-search checkpoints (resume after an interruption).
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// Run only shard I of N (0-based) of the (task, loss) searches, by position (tasks in
    /// order, each with every loss; N at most the number of searches). Writes `--out`
    /// tagged `shard-I-of-N` (`pool.json` -> `pool.shard-0-of-4.json`); `pudding merge
    /// --out OUT` joins the shards into the pool, report and plot one process writes.
    #[arg(long, value_name = "I/N", conflicts_with = "step_shard")]
    shard: Option<pudding_core::Shard>,
    /// For a job of one search (one task, one loss): score only shard I of N (0-based) of
    /// the trials of the search's next greedy phase, resuming from its checkpoint in
    /// `--checkpoints` (required), into that checkpoint tagged `shard-I-of-N`. `pudding
    /// merge --out CHECKPOINT` adds the phase; after k rounds, run without the flag to
    /// write `--out`.
    #[arg(long, value_name = "I/N", requires = "checkpoints")]
    step_shard: Option<pudding_core::Shard>,
}

/// Runs `pudding candidates`.
pub(super) fn run(args: CandidatesArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { exact, decode, .. } = *ctx;
    let CandidatesArgs {
        model: ModelArg { model },
        tasks,
        losses,
        k,
        calib,
        out,
        checkpoints,
        shard,
        step_shard,
    } = args;
    let job = pudding_cli::commands::search_job(&tasks, &losses, k, calib).map_err(stage)?;
    if step_shard.is_some() && job.searches() != 1 {
        return Err(CliError::Usage(format!(
            "--step-shard spreads the trials of one search, but --tasks and --losses make {}: \
             give one task and one loss, or split the searches with --shard",
            job.searches()
        )));
    }
    let lm = load(model, exact, decode)?;
    match (step_shard, checkpoints.as_deref()) {
        (Some(shard), Some(dir)) => {
            pudding_cli::shard_commands::candidates_step_shard_command(&lm, &job, dir, shard)
                .map(drop)
        }
        _ => pudding_cli::commands::candidates_command(
            &lm,
            &job,
            shard,
            &out,
            checkpoints.as_deref(),
        )
        .map(drop),
    }
    .map_err(stage)?;
    Ok(())
}
