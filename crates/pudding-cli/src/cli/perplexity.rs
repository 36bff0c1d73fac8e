//! `pudding perplexity`.

use super::prelude::*;

/// The arguments of `pudding perplexity` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The text file.
    #[arg(long)]
    file: PathBuf,
    /// Tokens per chunk (llama-perplexity's -c).
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// At most this many chunks (llama-perplexity's --chunks; default: all).
    #[arg(long, value_parser = at_least_one)]
    chunks: Option<usize>,
    /// Blocks to skip.
    #[arg(long, default_value = "")]
    skip: String,
}

/// Runs `pudding perplexity`.
pub(super) fn run(args: PerplexityArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { exact, decode, .. } = *ctx;
    let PerplexityArgs {
        model: ModelArg { model },
        file,
        ctx,
        chunks,
        skip,
    } = args;
    let text = std::fs::read_to_string(&file).map_err(|source| ModelError::Io {
        path: file.clone(),
        source,
    })?;
    let lm = load(model, exact, decode)?;
    let skip = OmissionSet::parse(&skip, lm.n_blocks())?;
    let report =
        pudding_eval::perplexity::perplexity(&lm, &text, ctx, chunks, &skip, |i, n, ppl| {
            eprintln!("[{}/{n}] {ppl:.4}", i + 1)
        })
        .map_err(stage)?;
    let json = serde_json::to_string(&report).map_err(stage)?;
    println!("{json}");
    Ok(())
}
