//! `pudding export`.

use super::prelude::*;

/// The arguments of `pudding export` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct ExportArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Blocks to remove, e.g. "3,7,19" or "10-15".
    #[arg(long, required_unless_present = "pool", conflicts_with = "pool")]
    skip: Option<String>,
    /// A candidate pool made for this model.
    #[arg(long)]
    pool: Option<PathBuf>,
    /// With --pool: the candidate to export (0-based).
    #[arg(long, requires = "pool", conflicts_with = "task", required_unless_present_any = ["task", "skip"])]
    candidate: Option<usize>,
    /// With --pool and --labels: export the candidate whose mean label over this
    /// task's rows is highest.
    #[arg(long, requires_all = ["pool", "labels"])]
    task: Option<String>,
    /// With --task: the labels file made for the pool (`pudding labels`).
    #[arg(long, requires = "task")]
    labels: Option<PathBuf>,
    /// The output: a .gguf file (replaced atomically) or a new directory.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `pudding export`.
pub(super) fn run(args: ExportArgs, _ctx: &Context) -> Result<(), CliError> {
    let ExportArgs {
        model: ModelArg { model },
        skip,
        pool,
        candidate,
        task,
        labels,
        out,
    } = args;
    use pudding_cli::export_command::{describe, export_command, ExportSelection};
    let selection = match (skip, pool, candidate, task, labels) {
        (Some(skip), _, _, _, _) => ExportSelection::Skip(skip),
        (None, Some(pool), Some(index), _, _) => ExportSelection::Candidate { pool, index },
        (None, Some(pool), None, Some(task), Some(labels)) => {
            ExportSelection::Task { pool, labels, task }
        }
        _ => {
            return Err(CliError::Usage(
                "give --skip, or --pool with --candidate, or --pool with --labels and --task"
                    .into(),
            ))
        }
    };
    let path = resolve_model(model)?;
    let (set, report) = export_command(&path, &selection, &out).map_err(stage)?;
    println!("{}", describe(&set, &report));
    Ok(())
}
