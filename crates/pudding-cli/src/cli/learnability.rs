//! `pudding learnability`.

use super::prelude::*;
use pudding_router::learnability::LearnabilityConfig;

/// The arguments of `pudding learnability` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct LearnabilityArgs {
    /// The labels file (`pudding labels`; merged, if it was sharded).
    #[arg(long)]
    labels: PathBuf,
    /// Embed with the first N layers of the encoder (default: all six), as a router
    /// trained with `--encoder-layers N` does.
    #[arg(long, value_parser = at_least_one)]
    encoder_layers: Option<usize>,
    /// Cross-validation folds: row i is held out in fold i mod N (at least 2).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Neighbours of the nearest-neighbours predictor.
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
    neighbours: usize,
    /// L2 penalty of the ridge probe (above 0).
    #[arg(long, default_value_t = 1.0)]
    ridge: f64,
    /// Also write the scores and every row's picks here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `pudding learnability`.
pub(super) fn run(args: LearnabilityArgs, _ctx: &Context) -> Result<(), CliError> {
    let LearnabilityArgs {
        labels,
        encoder_layers,
        folds,
        neighbours,
        ridge,
        out,
    } = args;
    let config = LearnabilityConfig {
        folds,
        neighbours,
        ridge,
    };
    pudding_cli::router_commands::learnability_command(
        &labels,
        encoder_layers,
        &config,
        out.as_deref(),
    )
    .map_err(stage)?;
    Ok(())
}
