//! `pudding baseline`.

use super::prelude::*;
use pudding_cli::shard_commands;

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
    /// Compute only shard I of N (0-based) of the calibration statistics of shortgpt (the
    /// passages, by position) or shortened-ppl (the unprotected blocks, by position), into
    /// `--out` tagged `shard-I-of-N`; `pudding merge --out OUT` writes the pool one
    /// process writes. (SLEB: use --step-shard; Taylor+ is not sharded.)
    #[arg(long, value_name = "I/N", conflicts_with = "step_shard")]
    shard: Option<pudding_core::Shard>,
    /// SLEB only: score shard I of N (0-based) of the trials of the search's next phase,
    /// resuming from its checkpoint (`--out` with the extension `sleb-checkpoint.json`),
    /// into that checkpoint tagged `shard-I-of-N`. `pudding merge --out CHECKPOINT` adds
    /// the phase to the checkpoint; after k rounds, run without the flag to write `--out`.
    #[arg(long, value_name = "I/N")]
    step_shard: Option<pudding_core::Shard>,
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
        shard,
        step_shard,
    } = args;
    if step_shard.is_some() && !matches!(method, BaselineMethod::Sleb) {
        return Err(CliError::Usage(format!(
            "--step-shard spreads the phases of a greedy search: only --method sleb has them \
             (shard {} with --shard)",
            method.name()
        )));
    }
    let lm = load(model, exact, decode)?;
    let method = method.name();
    match (shard, step_shard) {
        (Some(shard), _) => {
            shard_commands::baseline_shard_command(&lm, method, k, calib, &out, shard).map(drop)
        }
        (None, Some(shard)) => {
            shard_commands::sleb_step_shard_command(&lm, k, calib, &out, shard).map(drop)
        }
        (None, None) => {
            pudding_cli::commands::baseline_command(&lm, method, k, calib, &out).map(drop)
        }
    }
    .map_err(stage)?;
    Ok(())
}
