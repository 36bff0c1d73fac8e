//! The OpenAI request bodies this server reads, and their checks. Fields it does not use
//! (`user`, `logprobs`, `presence_penalty`, ...) are accepted and ignored, as OpenAI-style
//! servers do; fields it cannot honour (`n` other than 1) are refused.

use crate::engine::SkipChoice;
use crate::error::ApiError;
use pudding_core::Sampling;
use pudding_models::chat::ChatMessage;
use serde::Deserialize;

/// The most stop strings a request may carry (OpenAI's limit).
pub const MAX_STOP_STRINGS: usize = 4;

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The served model's id (optional here; another id is a 404).
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<MessageIn>,
    /// The shared generation fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The served model's id (optional here; another id is a 404).
    pub model: Option<String>,
    /// The text to continue: a string, or a list of exactly one string.
    pub prompt: PromptIn,
    /// The shared generation fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

/// The fields both endpoints share.
#[derive(Debug, Deserialize, Default)]
pub struct CommonFields {
    /// The most tokens to generate.
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` (chat).
    pub max_completion_tokens: Option<u64>,
    /// 0 means greedy; OpenAI's default is 1.
    pub temperature: Option<f32>,
    /// Nucleus mass, in (0, 1]; default 1.
    pub top_p: Option<f32>,
    /// Seed of the sampler (default: drawn per request).
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<StopIn>,
    /// Choices per request; only 1 is served.
    pub n: Option<u64>,
    /// Send server-sent events as tokens come.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a final chunk with the token counts.
    pub stream_options: Option<StreamOptions>,
    /// This server's extension: which blocks to skip.
    pub pudding: Option<PuddingIn>,
}

/// `stream_options`.
#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    /// Send a usage chunk before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// A chat message as sent: `content` a string or a list of text parts.
#[derive(Debug, Deserialize)]
pub struct MessageIn {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The text.
    pub content: ContentIn,
}

/// Message content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ContentIn {
    /// Plain text.
    Text(String),
    /// Parts; only `{"type": "text", "text": ...}` parts are served.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// The part's type (`text`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    pub text: Option<String>,
}

/// `prompt` of a completion.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptIn {
    /// One prompt.
    Text(String),
    /// A list (only of one string here).
    List(Vec<serde_json::Value>),
}

/// `stop`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopIn {
    /// One stop string.
    One(String),
    /// Up to four.
    Many(Vec<String>),
}

/// The `pudding` extension object.
#[derive(Debug, Deserialize)]
pub struct PuddingIn {
    /// `"auto"` (the router), `"dense"`, or a list of block indices.
    pub skip: Option<SkipIn>,
}

/// `pudding.skip`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SkipIn {
    /// `auto` or `dense`.
    Word(String),
    /// Block indices.
    Blocks(Vec<usize>),
}

/// The checked generation settings of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `max_tokens` (or `max_completion_tokens`).
    pub max_tokens: Option<usize>,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Streamed?
    pub stream: bool,
    /// A usage chunk at the end of the stream?
    pub include_usage: bool,
    /// Which blocks to skip.
    pub skip: SkipChoice,
}

impl CommonFields {
    /// Checks the fields; `draw_seed` gives a seed when the request has none.
    pub fn settings(&self, draw_seed: impl FnOnce() -> u64) -> Result<Settings, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid(
                    Some("n"),
                    format!("n = {n}: this server returns one choice per request (n = 1)"),
                ));
            }
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(0) => {
                return Err(ApiError::invalid(
                    Some("max_tokens"),
                    "max_tokens must be at least 1",
                ))
            }
            Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
            None => None,
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
            return Err(ApiError::invalid(
                Some("temperature"),
                format!("temperature {temperature} is not in [0, 2]"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                Some("top_p"),
                format!("top_p {top_p} is not in (0, 1]"),
            ));
        }
        let sampling = if temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::TopP {
                temperature,
                top_p,
                seed: self.seed.unwrap_or_else(draw_seed),
            }
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopIn::One(s)) => vec![s.clone()],
            Some(StopIn::Many(list)) => list.clone(),
        };
        if stop.len() > MAX_STOP_STRINGS {
            return Err(ApiError::invalid(
                Some("stop"),
                format!("{} stop strings; at most {MAX_STOP_STRINGS}", stop.len()),
            ));
        }
        let skip = match self.pudding.as_ref().and_then(|p| p.skip.as_ref()) {
            None => SkipChoice::Auto,
            Some(SkipIn::Word(w)) if w == "auto" => SkipChoice::Auto,
            Some(SkipIn::Word(w)) if w == "dense" => SkipChoice::Dense,
            Some(SkipIn::Word(w)) => {
                return Err(ApiError::invalid(
                    Some("pudding.skip"),
                    format!(
                    "pudding.skip {w:?}: expected \"auto\", \"dense\" or a list of block indices"
                ),
                ))
            }
            Some(SkipIn::Blocks(blocks)) => SkipChoice::Blocks(blocks.clone()),
        };
        Ok(Settings {
            max_tokens,
            sampling,
            stop,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            skip,
        })
    }
}

impl ChatRequest {
    /// The conversation as the chat template takes it.
    pub fn conversation(&self) -> Result<Vec<ChatMessage>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                Some("messages"),
                "messages is empty; send at least one message",
            ));
        }
        self.messages
            .iter()
            .map(|m| {
                let content = match &m.content {
                    ContentIn::Text(t) => t.clone(),
                    ContentIn::Parts(parts) => {
                        let mut text = String::new();
                        for part in parts {
                            match (part.kind.as_str(), &part.text) {
                                ("text", Some(t)) => text.push_str(t),
                                (kind, _) => {
                                    return Err(ApiError::invalid(
                                        Some("messages"),
                                        format!(
                                        "content part of type {kind:?}: only text parts are served"
                                    ),
                                    ))
                                }
                            }
                        }
                        text
                    }
                };
                Ok(ChatMessage::new(m.role.clone(), content))
            })
            .collect()
    }
}

impl CompletionRequest {
    /// The one prompt.
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.prompt {
            PromptIn::Text(t) => Ok(t.clone()),
            PromptIn::List(list) => match list.as_slice() {
                [serde_json::Value::String(t)] => Ok(t.clone()),
                _ => Err(ApiError::invalid(
                    Some("prompt"),
                    "prompt must be a string or a list of one string (token-id prompts and batches are not served)",
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> CommonFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_openai_s_and_zero_temperature_is_greedy() {
        let s = fields("{}").settings(|| 7).unwrap();
        assert_eq!(
            s.sampling,
            Sampling::TopP {
                temperature: 1.0,
                top_p: 1.0,
                seed: 7
            }
        );
        assert_eq!(s.skip, SkipChoice::Auto);
        let s = fields(r#"{"temperature": 0, "stop": "\n", "pudding": {"skip": [3, 7]}}"#)
            .settings(|| 7)
            .unwrap();
        assert_eq!(s.sampling, Sampling::Greedy);
        assert_eq!(s.stop, ["\n"]);
        assert_eq!(s.skip, SkipChoice::Blocks(vec![3, 7]));
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        for (json, param) in [
            (r#"{"n": 2}"#, "n"),
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"temperature": 3}"#, "temperature"),
            (r#"{"top_p": 0}"#, "top_p"),
            (r#"{"stop": ["a","b","c","d","e"]}"#, "stop"),
            (r#"{"pudding": {"skip": "fastest"}}"#, "pudding.skip"),
        ] {
            let e = fields(json).settings(|| 0).unwrap_err();
            assert_eq!((e.status, e.param), (400, Some(param)), "{json}");
        }
    }

    #[test]
    fn messages_take_text_parts_only() {
        let r: ChatRequest = serde_json::from_str(
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.conversation().unwrap(), [ChatMessage::new("user", "Hi")]);
        let r: ChatRequest = serde_json::from_str(
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
        )
        .unwrap();
        assert!(r.conversation().is_err());
        let r: ChatRequest = serde_json::from_str(r#"{"messages": []}"#).unwrap();
        assert!(r.conversation().is_err());
        let r: CompletionRequest = serde_json::from_str(r#"{"prompt": [1, 2]}"#).unwrap();
        assert!(r.text().is_err());
    }
}
