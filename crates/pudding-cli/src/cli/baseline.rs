//! `pudding baseline`.

use super::prelude::*;

/// The arguments of `pudding baseline` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct BaselineArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The static pruning method.
    #[arg(long, value_enum)]
    method: BaselineMethod,
    /// Blocks to omit (at least 1).
    #[arg(short = 'k', long, default_value_t = 6, value_parser = at_least_one)]
    k: usize,
    /// Calibration passages (BoolQ train passages).
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    calib: usize,
    /// Output pool (JSON).
    #[arg(long)]
    out: PathBuf,
}

/// `--method`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum BaselineMethod {
    /// SLEB: greedy block removal by perplexity on calibration text.
    Sleb,
    /// ShortGPT: the blocks whose output is closest to their input (Block Influence).
    Shortgpt,
    /// Shortened LLaMA, one-shot: each block's perplexity when removed alone.
    ShortenedPpl,
    /// Shortened LLaMA: the first-order Taylor importance of each block's weights.
    Taylor,
}

impl BaselineMethod {
    /// The name the baselines library and the reports use.
    pub(super) fn name(self) -> &'static str {
        match self {
            BaselineMethod::Sleb => "sleb",
            BaselineMethod::Shortgpt => "shortgpt",
            BaselineMethod::ShortenedPpl => "shortened-ppl",
            BaselineMethod::Taylor => "taylor",
        }
    }
}

/// Runs `pudding baseline`.
pub(super) fn run(args: BaselineArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { exact, decode, .. } = *ctx;
    let BaselineArgs {
        model: ModelArg { model },
        method,
        k,
        calib,
        out,
    } = args;
    let lm = load(model, exact, decode)?;
    pudding_cli::commands::baseline_command(&lm, method.name(), k, calib, &out).map_err(stage)?;
    Ok(())
}
