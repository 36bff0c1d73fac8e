//! `pudding merge`.

use super::prelude::*;

/// The arguments of `pudding merge` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct MergeArgs {
    /// The output the job would have written unsharded (the `--out` its shards were given;
    /// for step shards, the search's checkpoint).
    #[arg(long)]
    out: PathBuf,
    /// The shard outputs to join (default: every `OUT` tagged `shard-I-of-N` next to it).
    shards: Vec<PathBuf>,
}

/// Runs `pudding merge`.
pub(super) fn run(args: MergeArgs, _ctx: &Context) -> Result<(), CliError> {
    let MergeArgs { out, shards } = args;
    let shards = if shards.is_empty() {
        pudding_cli::sharding::find_shards(&out).map_err(stage)?
    } else {
        shards
    };
    let written = pudding_cli::sharding::merge_outputs(&out, &shards).map_err(stage)?;
    println!(
        "{} shard outputs -> {} ({} file{})",
        shards.len(),
        out.display(),
        written.len(),
        if written.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
