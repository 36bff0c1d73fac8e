//! The HTTP side: routes, authentication, body limits, the OpenAI response shapes and
//! server-sent events. Handlers never touch the model: they check a request, queue it for
//! the engine thread and turn its [`Event`]s into responses.

use crate::engine::{Event, ModelInfo, Prompt, Request, Started};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::schema::{ChatRequest, CompletionRequest, Settings};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::ReceiverStream;

/// What every handler shares.
pub struct AppState {
    /// The engine's queue (bounded: a full queue answers 429).
    pub queue: SyncSender<Request>,
    /// Places in the queue.
    pub queue_size: usize,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The id clients send as `model`.
    pub model_id: String,
    /// The bearer token every `/v1` and `/metrics` request must carry, if set.
    pub api_key: Option<String>,
    /// The loaded model.
    pub info: ModelInfo,
    /// The most bytes of a request body.
    pub max_body_bytes: usize,
    /// Unix seconds the server started (the model's `created`).
    pub created: u64,
    /// Request counter for response ids.
    pub next_id: AtomicU64,
}

/// The router with every endpoint, the API key check, the body limit and the status
/// counter.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count_status))
        .with_state(state)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if matches!(self.status, 429 | 503) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

async fn count_status(
    State(state): State<Arc<AppState>>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.response(response.status().as_u16());
    response
}

/// Checks `Authorization: Bearer KEY` (constant-time) on everything but `/health`.
async fn authorize(
    State(state): State<Arc<AppState>>,
    request: HttpRequest,
    next: Next,
) -> Response {
    if let Some(key) = &state.api_key {
        if request.uri().path() != "/health" {
            let sent = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !bool::from(sent.as_bytes().ct_eq(key.as_bytes())) {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(request).await
}

async fn not_found(request: HttpRequest) -> ApiError {
    ApiError::not_found(
        "unknown_url",
        format!("no route {} {}", request.method(), request.uri().path()),
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_id,
            "object": "model",
            "created": state.created,
            "owned_by": "pudding",
            "pudding": {
                "blocks": state.info.n_blocks,
                "context_length": state.info.context_length,
                "routed": state.info.routed,
            },
        }],
    }))
}

/// The request body as `T`, or the OpenAI-style error for an oversized or malformed body.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid(None, e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(None, format!("the body is not a valid request: {e}")))
}

/// A 404 unless `model` is absent or the served model's id.
fn check_model(state: &AppState, model: &Option<String>) -> Result<(), ApiError> {
    match model {
        Some(m) if m != &state.model_id => Err(ApiError::not_found(
            "model_not_found",
            format!(
                "the model {m:?} does not exist here; this server serves {:?}",
                state.model_id
            ),
        )),
        _ => Ok(()),
    }
}

/// Which endpoint a response is shaped for.
#[derive(Clone, Copy)]
enum Endpoint {
    Chat,
    Completion,
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let checked = parse::<ChatRequest>(body, state.max_body_bytes).and_then(|r| {
        check_model(&state, &r.model)?;
        Ok((r.conversation()?, r.common.settings(draw_seed)?))
    });
    match checked {
        Ok((messages, settings)) => {
            generate(state, Endpoint::Chat, Prompt::Chat(messages), settings).await
        }
        Err(e) => e.into_response(),
    }
}

async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let checked = parse::<CompletionRequest>(body, state.max_body_bytes).and_then(|r| {
        check_model(&state, &r.model)?;
        Ok((r.text()?, r.common.settings(draw_seed)?))
    });
    match checked {
        Ok((text, settings)) => {
            generate(state, Endpoint::Completion, Prompt::Text(text), settings).await
        }
        Err(e) => e.into_response(),
    }
}

/// A seed for a sampled request that sets none.
fn draw_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The `pudding` object of a response: the blocks skipped and the router's choice.
fn pudding_field(started: &Started) -> Value {
    json!({
        "skip": started.skip.blocks(),
        "candidate": started.candidate,
        "router_seconds": started.router_seconds,
    })
}

/// What the response ids, `created` and `model` of one request are.
struct Envelope {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
}

impl Envelope {
    fn chunk(&self, text: Option<&str>, role: bool, finish: Option<&str>) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                })
            }
            Endpoint::Completion => json!({
                "id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}],
            }),
        }
    }

    fn usage_chunk(&self, usage: Value) -> Value {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        };
        json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "choices": [], "usage": usage,
        })
    }
}

fn usage(started: &Started, completion: usize) -> Value {
    let prompt = started.prompt_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": started.cached_tokens},
    })
}

/// Queues the request, waits until the engine admits it, then answers in one JSON body
/// or as server-sent events.
async fn generate(
    state: Arc<AppState>,
    endpoint: Endpoint,
    prompt: Prompt,
    settings: Settings,
) -> Response {
    let (events, mut receiver) = unbounded_channel();
    let request = Request {
        prompt,
        skip: settings.skip.clone(),
        max_tokens: settings.max_tokens,
        sampling: settings.sampling.clone(),
        stop: settings.stop.clone(),
        events,
        arrived: Instant::now(),
    };
    // Counted before it is sent: the engine may take it (and count it out) at once.
    state.metrics.queued();
    if let Err(refused) = state.queue.try_send(request) {
        state.metrics.dequeued();
        return match refused {
            TrySendError::Full(_) => ApiError::overloaded(state.queue_size),
            TrySendError::Disconnected(_) => ApiError::unavailable(),
        }
        .into_response();
    }
    let started = match receiver.recv().await {
        Some(Event::Started(s)) => s,
        Some(Event::Failed(e)) => return e.into_response(),
        _ => return ApiError::unavailable().into_response(),
    };
    let number = state.next_id.fetch_add(1, Ordering::Relaxed);
    let envelope = Envelope {
        id: match endpoint {
            Endpoint::Chat => format!("chatcmpl-{}-{number}", state.created),
            Endpoint::Completion => format!("cmpl-{}-{number}", state.created),
        },
        created: unix_now(),
        model: state.model_id.clone(),
        endpoint,
    };
    if settings.stream {
        stream(envelope, started, receiver, settings.include_usage)
    } else {
        whole(envelope, started, receiver).await
    }
}

/// The whole answer in one body.
async fn whole(
    envelope: Envelope,
    started: Started,
    mut receiver: UnboundedReceiver<Event>,
) -> Response {
    let mut text = String::new();
    let (reason, completion_tokens) = loop {
        match receiver.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Finished {
                reason,
                completion_tokens,
            }) => break (reason, completion_tokens),
            Some(Event::Failed(e)) => return e.into_response(),
            Some(Event::Started(_)) | None => {
                return ApiError::internal("the engine stopped before the answer ended")
                    .into_response()
            }
        }
    };
    let choice = match envelope.endpoint {
        Endpoint::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": reason.name(),
        }),
        Endpoint::Completion => json!({
            "index": 0, "text": text, "logprobs": null, "finish_reason": reason.name(),
        }),
    };
    let object = match envelope.endpoint {
        Endpoint::Chat => "chat.completion",
        Endpoint::Completion => "text_completion",
    };
    Json(json!({
        "id": envelope.id,
        "object": object,
        "created": envelope.created,
        "model": envelope.model,
        "choices": [choice],
        "usage": usage(&started, completion_tokens),
        "pudding": pudding_field(&started),
    }))
    .into_response()
}

/// Server-sent events: a first chunk (the role, and the `pudding` object), one chunk per
/// piece of text, a last chunk with the finish reason, the usage chunk when asked for,
/// then `data: [DONE]`. A client that goes away closes the stream, which cancels the
/// sequence.
fn stream(
    envelope: Envelope,
    started: Started,
    mut receiver: UnboundedReceiver<Event>,
    include_usage: bool,
) -> Response {
    let (out, events) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let data = |v: Value| Ok(SseEvent::default().data(v.to_string()));
        let mut first = envelope.chunk(
            match envelope.endpoint {
                Endpoint::Chat => Some(""),
                Endpoint::Completion => None,
            },
            true,
            None,
        );
        first["pudding"] = pudding_field(&started);
        if out.send(data(first)).await.is_err() {
            return;
        }
        loop {
            let event = tokio::select! {
                event = receiver.recv() => event,
                _ = out.closed() => return,
            };
            let message = match event {
                Some(Event::Text(t)) => data(envelope.chunk(Some(&t), false, None)),
                Some(Event::Finished {
                    reason,
                    completion_tokens,
                }) => {
                    if out
                        .send(data(envelope.chunk(None, false, Some(reason.name()))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if include_usage {
                        let chunk = envelope.usage_chunk(usage(&started, completion_tokens));
                        if out.send(data(chunk)).await.is_err() {
                            return;
                        }
                    }
                    break;
                }
                Some(Event::Failed(e)) => {
                    let _ = out.send(data(e.body())).await;
                    break;
                }
                Some(Event::Started(_)) | None => break,
            };
            if out.send(message).await.is_err() {
                return;
            }
        }
        let _ = out.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    Sse::new(ReceiverStream::new(events))
        .keep_alive(KeepAlive::default())
        .into_response()
}
