//! `pudding merge-pools`.

use super::prelude::*;

/// The arguments of `pudding merge-pools` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct MergePoolsArgs {
    /// Output pool (JSON; a Markdown report and an SVG plot are written next to it).
    #[arg(long)]
    out: PathBuf,
    /// The pools to merge, in order.
    pools: Vec<PathBuf>,
}

/// Runs `pudding merge-pools`.
pub(super) fn run(args: MergePoolsArgs, _ctx: &Context) -> Result<(), CliError> {
    let MergePoolsArgs { out, pools } = args;
    let pools = pools
        .iter()
        .map(|p| pudding_core::CandidatePool::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = pudding_candidates::pool::merge_pools(&pools).map_err(stage)?;
    merged.save(&out)?;
    pudding_core::io::write_atomic(
        &out.with_extension("md"),
        pudding_candidates::report::pool_markdown(&merged).as_bytes(),
    )?;
    pudding_core::io::write_atomic(
        &out.with_extension("svg"),
        pudding_candidates::report::pool_svg(&merged)
            .map_err(stage)?
            .as_bytes(),
    )?;
    println!("{} candidates -> {}", merged.len(), out.display());
    for (i, c) in merged.candidates.iter().enumerate() {
        println!("  {i}: skip {}", c.set);
    }
    Ok(())
}
