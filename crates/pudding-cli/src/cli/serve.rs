//! `pudding serve`.

use super::prelude::*;
use pudding_core::Router as _;
use pudding_serve::{BatchPolicy, EngineConfig, EngineParts, RouteFn, ServerConfig};
use std::net::{IpAddr, SocketAddr};

/// The arguments of `pudding serve` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    choice: RouterChoice,
    /// Serve without a router: `"skip": "auto"` runs dense (for models without an
    /// embedded router; requests may still pin their blocks).
    #[arg(long, conflicts_with_all = ["pool", "router"])]
    no_router: bool,
    /// Address to listen on (loopback by default; 0.0.0.0 exposes the server to the
    /// network).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the bound address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health (also read from
    /// PUDDING_API_KEY).
    #[arg(long, env = "PUDDING_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The model id clients send and /v1/models lists (default: the model file's name).
    #[arg(long)]
    model_id: Option<String>,
    /// The most sequences decoding at once.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    max_running: usize,
    /// Requests that may wait for a place in the batch; past it, 429 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    queue: usize,
    /// The most bytes of a request body; past it, 413.
    #[arg(long, default_value_t = 1 << 20, value_parser = at_least_one)]
    max_body_bytes: usize,
    /// max_tokens of a request that sets none (capped by the context left).
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    default_max_tokens: usize,
    /// Recent prompt caches kept for reuse (default 0: none): a prompt under the same
    /// omission set continues from the longest prefix it shares with one (the chat
    /// template's system turn, a conversation's earlier turns). Faster, but not
    /// bit-identical to a whole prefill (greedy output can differ from `pudding generate`
    /// at near-ties), so it is off unless asked for.
    #[arg(long, default_value_t = 0)]
    prompt_cache: usize,
    /// How decode steps group sequences: `mixed` runs every sequence in one step whatever
    /// blocks it skips; `per-set` runs one step per omission set (to compare).
    #[arg(long, value_enum, default_value = "mixed")]
    batching: BatchingArg,
}

/// `--batching`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BatchingArg {
    /// One decode step for all sequences.
    Mixed,
    /// One decode step per omission set.
    PerSet,
}

/// Runs `pudding serve`.
pub(super) fn run(args: ServeArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { fast, decode, .. } = *ctx;
    let ServeArgs {
        model: ModelArg { model },
        choice: RouterChoice { pool, router, k },
        no_router,
        host,
        port,
        api_key,
        model_id,
        max_running,
        queue,
        max_body_bytes,
        default_max_tokens,
        prompt_cache,
        batching,
    } = args;
    if pool.is_none() && !no_router {
        pudding_router::default::check_embedded_k(k).map_err(stage)?;
    }
    if api_key.as_deref() == Some("") {
        return Err(CliError::Usage("--api-key must not be empty".into()));
    }
    let path = resolve_model(model)?;
    let model_id = model_id.unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(|| "pudding".into(), |s| s.to_string_lossy().into_owned())
    });
    let build = move || -> Result<EngineParts<Backend>, String> {
        let lm = load(Some(path), fast, decode).map_err(|e| e.to_string())?;
        let device = backend::device();
        let router: Option<RouteFn> = if no_router {
            None
        } else {
            let router = match pool.zip(router) {
                Some((pool, router)) => {
                    pudding_cli::router_commands::load_router_for::<Backend, _>(
                        &lm, &pool, &router, &device,
                    )
                    .map_err(|e| e.to_string())?
                }
                None => pudding_router::default::embedded_router::<Backend, _>(k, &lm, &device)
                    .map_err(|e| e.to_string())?,
            };
            Some(Box::new(move |prompt: &str| {
                router.route(prompt).map_err(|e| e.to_string())
            }))
        };
        Ok(EngineParts { lm, router })
    };
    let config = ServerConfig {
        addr: SocketAddr::new(host, port),
        model_id,
        api_key,
        queue,
        max_body_bytes,
        engine: EngineConfig {
            max_running,
            policy: match batching {
                BatchingArg::Mixed => BatchPolicy::MixedSets,
                BatchingArg::PerSet => BatchPolicy::PerSet,
            },
            default_max_tokens,
            prompt_cache_entries: prompt_cache,
        },
    };
    pudding_serve::run_server(build, config, |addr| {
        eprintln!(
            "[{}] serving on http://{addr} (OpenAI API under /v1)",
            backend::NAME
        );
    })
    .map_err(stage)
}
