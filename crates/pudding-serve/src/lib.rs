//! An OpenAI-compatible HTTP server for PuDDing.
//!
//! Every request is routed (the router picks the blocks to skip for its prompt, or the
//! request pins them in the `pudding` extension field), and requests routed to different
//! candidates decode together in one continuous batch: between two decode steps new
//! requests join, and in each step every block runs once on the rows whose omission set
//! keeps it ([`LlamaModel::decode_rows`](pudding_models::LlamaModel::decode_rows)).
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (JSON or server-sent
//! events with `stream: true`), `GET /v1/models`, `GET /health`, `GET /metrics`
//! (Prometheus text). The listener binds to loopback unless told otherwise; with an API
//! key every route but `/health` needs `Authorization: Bearer KEY`. The queue, the running
//! batch and request bodies are bounded: a full queue answers 429 with `Retry-After`.
//!
//! Modules: [`engine`] (the model thread and its scheduling), [`http`] (routes and response
//! shapes), [`schema`] (request bodies and their checks), [`text`] (incremental
//! detokenisation and stop strings), [`metrics`], [`error`].

pub mod engine;
pub mod error;
pub mod http;
pub mod metrics;
pub mod schema;
pub mod text;

pub use engine::{BatchPolicy, EngineConfig, EngineParts, RouteFn};
pub use error::{ApiError, ServeError};

use burn::prelude::Backend;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Where and how the server listens.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind (loopback by default: `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// The id clients send as `model` and `/v1/models` lists.
    pub model_id: String,
    /// Bearer token required on every route but `/health`.
    pub api_key: Option<String>,
    /// Requests that may wait for a place in the batch; past it, 429.
    pub queue: usize,
    /// The most bytes of a request body; past it, 413.
    pub max_body_bytes: usize,
    /// The engine's limits.
    pub engine: EngineConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            model_id: "pudding".into(),
            api_key: None,
            queue: 64,
            max_body_bytes: 1 << 20,
            engine: EngineConfig::default(),
        }
    }
}

/// Loads the model with `build` on the engine thread, binds `config.addr`, calls `ready`
/// with the bound address, then serves until SIGTERM or Ctrl-C: it stops accepting, lets
/// the running requests finish, and returns.
pub fn run_server<B, F>(
    build: F,
    config: ServerConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError>
where
    B: Backend,
    F: FnOnce() -> Result<EngineParts<B>, String> + Send + 'static,
{
    if config.queue == 0 {
        return Err(ServeError::Config(
            "the queue must hold at least 1 request".into(),
        ));
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let (queue, requests) = std::sync::mpsc::sync_channel(config.queue);
    let (engine, info) =
        engine::spawn_engine(build, config.engine.clone(), metrics.clone(), requests)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr.to_string(),
                source,
            })?;
        ready(listener.local_addr()?);
        let state = Arc::new(http::AppState {
            queue,
            queue_size: config.queue,
            metrics,
            model_id: config.model_id,
            api_key: config.api_key,
            info,
            max_body_bytes: config.max_body_bytes,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            next_id: AtomicU64::new(0),
        });
        axum::serve(listener, http::app(state))
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok::<(), ServeError>(())
    });
    // The queue's sender is gone with the app: the engine finishes what runs and stops.
    drop(runtime);
    let joined = engine.join();
    served?;
    joined.map_err(|_| ServeError::EnginePanicked)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
