//! `pudding route`.

use super::prelude::*;

/// The arguments of `pudding route` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct RouteArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The candidate pool (with --router; default: the embedded SmolLM2 pool for --k).
    #[arg(long, requires = "router")]
    pool: Option<PathBuf>,
    /// The router directory (with --pool).
    #[arg(long, requires = "pool")]
    router: Option<PathBuf>,
    /// Without --pool/--router: which embedded SmolLM2-135M-Instruct router, by the
    /// number of blocks its candidates skip (3 or 6).
    #[arg(short, long, default_value_t = 3, conflicts_with = "pool")]
    k: usize,
    #[command(flatten)]
    prompt: PromptArg,
    /// Maximum new tokens.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    max_tokens: usize,
}

/// Runs `pudding route`.
pub(super) fn run(args: RouteArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { fast, decode, .. } = *ctx;
    let RouteArgs {
        model: ModelArg { model },
        pool,
        router,
        k,
        prompt,
        max_tokens,
    } = args;
    let prompt = prompt.read()?;
    if pool.is_none() {
        pudding_router::default::check_embedded_k(k).map_err(stage)?;
    }
    let lm = load(model, fast, decode)?;
    let device = backend::device();
    let router = match pool.zip(router) {
        Some((pool, router)) => {
            pudding_cli::router_commands::load_router::<Backend>(&pool, &router, &device)
        }
        None => pudding_router::default::embedded_router::<Backend, _>(k, &lm, &device)
            .map_err(Into::into),
    }
    .map_err(stage)?;
    pudding_cli::router_commands::route_command(&lm, &router, &prompt, max_tokens)
        .map_err(stage)?;
    Ok(())
}
