//! `pudding labels`.

use super::prelude::*;

/// The arguments of `pudding labels` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct LabelsArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The candidate pool.
    #[arg(long)]
    pool: PathBuf,
    /// Tasks whose train rows are labelled.
    #[arg(
        long,
        default_value = "arc_challenge,arc_easy,hellaswag,piqa,winogrande"
    )]
    tasks: String,
    /// Rows per task (the first N train rows after the calibration rows).
    #[arg(long, default_value_t = 200, value_parser = at_least_one)]
    rows: usize,
    /// Skip the first N train rows of each task (the candidate search's calibration rows).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// What the router reads: the prompt, or the prompt and the first answer choice.
    #[arg(long, value_enum, default_value = "prompt")]
    input: RouterInputArg,
    /// Output labels file (appended to and resumed).
    #[arg(long)]
    out: PathBuf,
    /// Label only shard I of N (0-based) of the rows, by position over all tasks' rows
    /// (e.g. `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`). Writes `--out`
    /// tagged `shard-I-of-N` (`labels.jsonl` -> `labels.shard-0-of-4.jsonl`);
    /// `pudding merge --out OUT` joins the shards into what one process writes.
    #[arg(long, value_name = "I/N")]
    shard: Option<pudding_core::Shard>,
}

/// `--input`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum RouterInputArg {
    /// The prompt alone (what a router sees when it serves requests).
    Prompt,
    /// The prompt and the first answer choice (the paper's code's input).
    #[value(name = "prompt_and_first_choice")]
    PromptAndFirstChoice,
}

impl RouterInputArg {
    /// The name labels files and router cards store.
    fn name(self) -> &'static str {
        match self {
            RouterInputArg::Prompt => "prompt",
            RouterInputArg::PromptAndFirstChoice => "prompt_and_first_choice",
        }
    }
}

/// Runs `pudding labels`.
pub(super) fn run(args: LabelsArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { exact, decode, .. } = *ctx;
    let LabelsArgs {
        model: ModelArg { model },
        pool,
        tasks,
        rows,
        offset,
        input,
        out,
        shard,
    } = args;
    let lm = load(model, exact, decode)?;
    pudding_cli::router_commands::labels_command(
        &lm,
        &pool,
        &tasks,
        (rows, offset),
        input.name(),
        shard,
        &out,
    )
    .map_err(stage)?;
    Ok(())
}
