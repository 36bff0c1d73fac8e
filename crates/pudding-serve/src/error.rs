//! Errors: the server's own ([`ServeError`], before it serves) and the OpenAI-style error
//! body every failed request gets ([`ApiError`]).

use serde_json::json;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model, tokenizer or router could not be loaded on the engine thread.
    #[error("loading the model for serving: {0}")]
    Load(String),
    /// The listening socket could not be opened.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The HTTP server or the runtime failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// A setting that cannot work (e.g. a zero-length queue).
    #[error("{0}")]
    Config(String),
    /// The engine thread ended with a panic (a bug: every request error is handled).
    #[error("the engine thread panicked")]
    EnginePanicked,
}

/// An error answered to one request, as OpenAI's API words it:
/// `{"error": {"message", "type", "param", "code"}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// OpenAI's `type` (`invalid_request_error`, `not_found_error`, ...).
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<&'static str>,
    /// A machine-readable code (`context_length_exceeded`, `model_not_found`, ...).
    pub code: Option<&'static str>,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// 400: the request cannot be served as sent.
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            kind: "invalid_request_error",
            param,
            code: None,
            message: message.into(),
        }
    }

    /// This error with a machine-readable `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized() -> Self {
        Self {
            status: 401,
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
            message: "missing or incorrect API key (send `Authorization: Bearer KEY`)".into(),
        }
    }

    /// 404: no such model or route.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 404,
            kind: "not_found_error",
            param: None,
            code: Some(code),
            message: message.into(),
        }
    }

    /// 413: the body is over the server's limit.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: 413,
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
            message: format!("the request body is over this server's limit of {limit} bytes"),
        }
    }

    /// 429: the queue is full; retry later.
    pub fn overloaded(queue: usize) -> Self {
        Self {
            status: 429,
            kind: "server_overloaded",
            param: None,
            code: Some("queue_full"),
            message: format!("all {queue} places in the queue are taken; retry after a second"),
        }
    }

    /// 503: the server is shutting down.
    pub fn unavailable() -> Self {
        Self {
            status: 503,
            kind: "server_unavailable",
            param: None,
            code: Some("shutting_down"),
            message: "the server is shutting down and takes no new requests".into(),
        }
    }

    /// 500: the model failed on this request (the server goes on).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            kind: "server_error",
            param: None,
            code: None,
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}
