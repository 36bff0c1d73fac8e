//! `pudding logprobs`.

use super::prelude::*;

/// The arguments of `pudding logprobs` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct LogprobsArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Text to score (tokenised as a prompt: BOS first for models that add it, such as
    /// Gemma; nothing else added).
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    text: Option<String>,
    /// Token ids to score, comma-separated.
    #[arg(long)]
    ids: Option<String>,
    /// Blocks to skip.
    #[arg(long, default_value = "")]
    skip: String,
}

/// Runs `pudding logprobs`.
pub(super) fn run(args: LogprobsArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { exact, decode, .. } = *ctx;
    let LogprobsArgs {
        model: ModelArg { model },
        text,
        ids,
        skip,
    } = args;
    let lm = load(model, exact, decode)?;
    let skip = OmissionSet::parse(&skip, lm.n_blocks())?;
    let ids = match (text, ids) {
        (Some(t), _) => lm.encode_prompt(&t)?,
        (None, Some(i)) => parse_ids(&i)?,
        (None, None) => unreachable!("clap requires --text or --ids"),
    };
    let report = logprob_report(&lm, &ids, &skip)?;
    let json = serde_json::to_string(&report).map_err(stage)?;
    println!("{json}");
    Ok(())
}
