//! `pudding route`.

use super::prelude::*;

/// The arguments of `pudding route` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct RouteArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    choice: RouterChoice,
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
        choice: RouterChoice { pool, router, k },
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
