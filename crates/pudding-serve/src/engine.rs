//! The engine: one thread that owns the model and the router and runs every request in
//! one continuous batch.
//!
//! Between two decode steps it admits waiting requests (up to `max_running`): each is
//! rendered, tokenised, routed, prefilled alone and joins the batch with its first token.
//! A decode step then runs every running sequence, whatever blocks it skips, through
//! [`LlamaModel::decode_rows`](pudding_models::LlamaModel::decode_rows): each block runs
//! once on the rows that keep it. A sequence leaves the batch when it finishes or its
//! client goes away, and its KV cache is freed with it.

use crate::error::{ApiError, ServeError};
use crate::metrics::Metrics;
use crate::text::TextStream;
use burn::prelude::Backend;
use pudding_core::{OmissionSet, RouteDecision, Sampling, SkippableLm};
use pudding_models::chat::ChatMessage;
use pudding_models::lm::host_values;
use pudding_models::sampling::Sampler;
use pudding_models::{KvCache, LlamaLm, ModelError};
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// Which blocks a request skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipChoice {
    /// The router's choice for the prompt (dense when the server has no router).
    Auto,
    /// No block skipped.
    Dense,
    /// These blocks (validated against the model by the engine).
    Blocks(Vec<usize>),
}

/// What the model continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template; the router reads the
    /// last user message.
    Chat(Vec<ChatMessage>),
    /// Raw text, as sent (the router reads it whole).
    Text(String),
}

/// One request handed to the engine.
#[derive(Debug)]
pub struct Request {
    /// What to continue.
    pub prompt: Prompt,
    /// Which blocks to skip.
    pub skip: SkipChoice,
    /// The most tokens to generate (`None`: the server's default, within the context).
    pub max_tokens: Option<usize>,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// Strings that end the text (not included in it).
    pub stop: Vec<String>,
    /// Where the engine reports progress; a closed channel cancels the request.
    pub events: UnboundedSender<Event>,
    /// When the request arrived (for the time to first token).
    pub arrived: Instant,
}

/// Why a sequence ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
}

impl Finish {
    /// `stop` or `length`.
    pub fn name(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// How the request was set up, sent before any text.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// Prompt tokens (after the chat template and BOS).
    pub prompt_tokens: usize,
    /// The blocks the sequence skips.
    pub skip: OmissionSet,
    /// The router's candidate index, when the router chose.
    pub candidate: Option<usize>,
    /// The router's seconds, when the router chose.
    pub router_seconds: Option<f64>,
    /// Prompt tokens taken from a cached prompt instead of prefilled.
    pub cached_tokens: usize,
}

/// What the engine reports about one request, in order: `Started`, `Text`*, then
/// `Finished`; or `Failed` alone (before `Started`: the request was refused) or after
/// some text (the model failed).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The sequence was admitted and prefilled.
    Started(Started),
    /// New text (never empty).
    Text(String),
    /// The sequence ended.
    Finished {
        /// Why.
        reason: Finish,
        /// Tokens generated (a final stop token included).
        completion_tokens: usize,
    },
    /// The request failed.
    Failed(ApiError),
}

/// How a decode step groups the running sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchPolicy {
    /// One step for all sequences, whatever blocks each skips (each block runs on the rows
    /// that keep it).
    #[default]
    MixedSets,
    /// One step per distinct omission set (what a server without per-row sets must do;
    /// kept to measure the difference).
    PerSet,
}

/// The engine's limits and defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The most sequences in the running batch.
    pub max_running: usize,
    /// How decode steps group sequences.
    pub policy: BatchPolicy,
    /// `max_tokens` of a request that sets none (capped by the context left).
    pub default_max_tokens: usize,
    /// Prompt caches kept for reuse (0, the default: none): a new prompt under the same
    /// omission set continues from the longest prefix it shares with one of them (the chat
    /// template's system turn, earlier turns of a conversation) instead of prefilling it
    /// again. Faster, but the rest of the prompt then runs as a separate, shorter forward,
    /// whose float rounding differs from a whole prefill: greedy output can differ from
    /// `pudding generate` where two tokens are nearly tied.
    pub prompt_cache_entries: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_running: 16,
            policy: BatchPolicy::MixedSets,
            default_max_tokens: 256,
            prompt_cache_entries: 0,
        }
    }
}

/// A router as the engine calls it: prompt -> decision, or a message.
pub type RouteFn = Box<dyn Fn(&str) -> Result<RouteDecision, String>>;

/// What the engine thread builds before serving: the model and, optionally, a router.
pub struct EngineParts<B: Backend> {
    /// The model.
    pub lm: LlamaLm<B>,
    /// The router for `skip: auto` (none: auto means dense).
    pub router: Option<RouteFn>,
}

/// What the HTTP side needs to know of the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Transformer blocks.
    pub n_blocks: usize,
    /// Context window (tokens).
    pub context_length: usize,
    /// Whether `skip: auto` runs a router.
    pub routed: bool,
}

/// Builds the model and router on a new thread (so neither needs to be `Send`), then runs
/// the engine there until `queue` is closed and every admitted sequence has ended.
/// Returns once the model is loaded (or failed to load).
pub fn spawn_engine<B, F>(
    build: F,
    config: EngineConfig,
    metrics: Arc<Metrics>,
    queue: Receiver<Request>,
) -> Result<(JoinHandle<()>, ModelInfo), ServeError>
where
    B: Backend,
    F: FnOnce() -> Result<EngineParts<B>, String> + Send + 'static,
{
    if config.max_running == 0 {
        return Err(ServeError::Config("max_running must be at least 1".into()));
    }
    let (ready, loaded) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("pudding-engine".into())
        .spawn(move || {
            let parts = match build() {
                Ok(parts) => parts,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let info = ModelInfo {
                n_blocks: parts.lm.n_blocks(),
                context_length: parts.lm.context_length(),
                routed: parts.router.is_some(),
            };
            if ready.send(Ok(info)).is_err() {
                return;
            }
            Engine {
                lm: parts.lm,
                router: parts.router,
                prompts: PromptCache::new(config.prompt_cache_entries),
                config,
                metrics,
                running: Vec::new(),
            }
            .run(queue);
        })?;
    match loaded.recv() {
        Ok(Ok(info)) => Ok((handle, info)),
        Ok(Err(e)) => Err(ServeError::Load(e)),
        Err(_) => Err(ServeError::EnginePanicked),
    }
}

/// One running sequence.
struct Sequence<B: Backend> {
    events: UnboundedSender<Event>,
    cache: KvCache<B>,
    sampler: Sampler,
    /// Generated ids (a final stop token included).
    ids: Vec<u32>,
    text: TextStream,
    max_tokens: usize,
    arrived: Instant,
    last_token: Option<Instant>,
}

/// Caches of recent prompts, most recently used last.
struct PromptCache<B: Backend> {
    entries: std::collections::VecDeque<(Vec<u32>, KvCache<B>)>,
    capacity: usize,
}

impl<B: Backend> PromptCache<B> {
    fn new(capacity: usize) -> Self {
        Self {
            entries: std::collections::VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// A cache for `ids` under `skip` holding the longest prefix of `ids` (at most all
    /// but its last token) that a cached prompt under the same set shares, and that
    /// prefix's length; an empty cache and 0 when none does.
    fn lookup(&mut self, skip: &OmissionSet, ids: &[u32]) -> (KvCache<B>, usize) {
        let shared = |cached: &[u32]| {
            cached
                .iter()
                .zip(ids)
                .take_while(|(a, b)| a == b)
                .count()
                .min(ids.len() - 1)
        };
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (_, cache))| cache.skip() == skip)
            .map(|(i, (cached, _))| (i, shared(cached)))
            .max_by_key(|&(i, n)| (n, i));
        if let Some((i, n)) = best.filter(|&(_, n)| n > 0) {
            if let Ok(cache) = self.entries[i].1.truncated(n) {
                let entry = self.entries.remove(i).expect("an index found above");
                self.entries.push_back(entry);
                return (cache, n);
            }
        }
        (KvCache::new(skip.clone()), 0)
    }

    /// Keeps the cache of a prefilled prompt (the oldest entry makes room).
    fn insert(&mut self, ids: Vec<u32>, cache: KvCache<B>) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((ids, cache));
    }
}

struct Engine<B: Backend> {
    lm: LlamaLm<B>,
    router: Option<RouteFn>,
    prompts: PromptCache<B>,
    config: EngineConfig,
    metrics: Arc<Metrics>,
    running: Vec<Sequence<B>>,
}

impl<B: Backend> Engine<B> {
    fn run(mut self, queue: Receiver<Request>) {
        let mut open = true;
        loop {
            if self.running.is_empty() {
                if !open {
                    break;
                }
                match queue.recv() {
                    Ok(request) => self.admit(request),
                    Err(_) => break,
                }
            }
            while open && self.running.len() < self.config.max_running {
                match queue.try_recv() {
                    Ok(request) => self.admit(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            self.drop_cancelled();
            self.metrics.set_running(self.running.len());
            if !self.running.is_empty() {
                self.decode_step();
            }
        }
        self.metrics.set_running(0);
    }

    /// Removes the sequences whose client went away (their caches are freed here).
    fn drop_cancelled(&mut self) {
        let before = self.running.len();
        self.running.retain(|s| !s.events.is_closed());
        for _ in self.running.len()..before {
            self.metrics.cancelled();
        }
    }

    /// Renders, tokenises, routes and prefills one request; on success it joins the batch.
    fn admit(&mut self, request: Request) {
        self.metrics.dequeued();
        if request.events.is_closed() {
            self.metrics.cancelled();
            return;
        }
        let events = request.events.clone();
        match self.prefill(request) {
            Ok(Some(sequence)) => self.running.push(sequence),
            Ok(None) => {}
            Err(e) => {
                let _ = events.send(Event::Failed(e));
            }
        }
    }

    /// The admitted sequence, or `None` when it already ended with its first token.
    fn prefill(&mut self, request: Request) -> Result<Option<Sequence<B>>, ApiError> {
        let (text, route_text) = match &request.prompt {
            Prompt::Chat(messages) => {
                let text = self
                    .lm
                    .conversation_prompt(messages)
                    .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
                let last_user = messages
                    .iter()
                    .rev()
                    .find(|m| m.role == "user")
                    .or(messages.last())
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                (text, last_user)
            }
            Prompt::Text(text) => (text.clone(), text.clone()),
        };
        let ids = self
            .lm
            .encode_prompt(&text)
            .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
        if ids.is_empty() {
            return Err(ApiError::invalid(Some("prompt"), "the prompt is empty"));
        }
        let context = self.lm.context_length();
        let room = context.saturating_sub(ids.len());
        if room == 0 {
            return Err(ApiError::invalid(
                Some("messages"),
                format!(
                    "this model's maximum context length is {context} tokens; the prompt has {}",
                    ids.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let max_tokens = match request.max_tokens {
            Some(m) if m > room => {
                return Err(ApiError::invalid(
                    Some("max_tokens"),
                    format!(
                        "this model's maximum context length is {context} tokens; the prompt has {} and max_tokens asks for {m} more",
                        ids.len()
                    ),
                )
                .with_code("context_length_exceeded"))
            }
            Some(m) => m,
            None => self.config.default_max_tokens.min(room),
        };
        let n_blocks = self.lm.n_blocks();
        let (skip, candidate, router_seconds) = match (&request.skip, &self.router) {
            (SkipChoice::Auto, Some(router)) => {
                let decision = router(&route_text).map_err(ApiError::internal)?;
                (
                    decision.set,
                    Some(decision.candidate),
                    Some(decision.router_secs),
                )
            }
            (SkipChoice::Auto, None) | (SkipChoice::Dense, _) => (dense(n_blocks)?, None, None),
            (SkipChoice::Blocks(blocks), _) => {
                let set = OmissionSet::new(blocks.iter().copied(), n_blocks).map_err(|e| {
                    ApiError::invalid(Some("pudding.skip"), format!("pudding.skip: {e}"))
                })?;
                (set, None, None)
            }
        };
        let mut sampler = Sampler::new(&request.sampling)
            .map_err(|e| ApiError::invalid(Some("temperature"), e.to_string()))?;
        let (mut cache, cached_tokens) = self.prompts.lookup(&skip, &ids);
        let logits = self
            .first_logits(&ids[cached_tokens..], &skip, &mut cache)
            .map_err(|e| ApiError::internal(format!("prefill failed: {e}")))?;
        self.prompts.insert(ids.clone(), cache.clone());
        let first = sampler
            .sample(&logits)
            .map_err(|e| ApiError::internal(format!("sampling failed: {e}")))?;
        self.metrics
            .started(&set_label(&skip), ids.len(), router_seconds);
        let _ = request.events.send(Event::Started(Started {
            prompt_tokens: ids.len(),
            skip,
            candidate,
            router_seconds,
            cached_tokens,
        }));
        let mut sequence = Sequence {
            events: request.events,
            cache,
            sampler,
            ids: Vec::new(),
            text: TextStream::new(request.stop),
            max_tokens,
            arrived: request.arrived,
            last_token: None,
        };
        Ok(match self.accept(&mut sequence, first) {
            Some(_) => None,
            None => Some(sequence),
        })
    }

    /// The prompt's forward pass into `cache`: the next-token logits `[v]`.
    fn first_logits(
        &self,
        ids: &[u32],
        skip: &OmissionSet,
        cache: &mut KvCache<B>,
    ) -> Result<Vec<f32>, ModelError> {
        let model = self.lm.model();
        let data: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let tokens = burn::tensor::Tensor::<B, 2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(data, [1, ids.len()]),
            &model.device(),
        );
        host_values(model.forward_last(tokens, skip, Some(cache))?)
    }

    /// One decode step of the running sequences; the finished ones leave the batch.
    fn decode_step(&mut self) {
        let groups: Vec<Vec<usize>> = match self.config.policy {
            BatchPolicy::MixedSets => vec![(0..self.running.len()).collect()],
            BatchPolicy::PerSet => {
                let mut by_set: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
                for (i, s) in self.running.iter().enumerate() {
                    by_set
                        .entry(s.cache.skip().blocks().to_vec())
                        .or_default()
                        .push(i);
                }
                by_set.into_values().collect()
            }
        };
        let mut ended = vec![false; self.running.len()];
        for group in groups {
            self.metrics.decode_step(group.len());
            match self.step_rows(&group) {
                Ok(logits) => {
                    let vocab = logits.len() / group.len();
                    for (j, &i) in group.iter().enumerate() {
                        let row = &logits[j * vocab..(j + 1) * vocab];
                        let sequence = &mut self.running[i];
                        match sequence.sampler.sample(row) {
                            Ok(token) => {
                                ended[i] =
                                    Self::accept_in(&self.lm, &self.metrics, sequence, token)
                                        .is_some();
                            }
                            Err(e) => {
                                let _ = sequence.events.send(Event::Failed(ApiError::internal(
                                    format!("sampling failed: {e}"),
                                )));
                                ended[i] = true;
                            }
                        }
                    }
                }
                Err(e) => {
                    for &i in &group {
                        let _ = self.running[i]
                            .events
                            .send(Event::Failed(ApiError::internal(format!(
                                "decode step failed: {e}"
                            ))));
                        ended[i] = true;
                    }
                }
            }
        }
        let mut index = 0;
        self.running.retain(|_| {
            index += 1;
            !ended[index - 1]
        });
    }

    /// Runs one decode step of the sequences `rows`: logits `[rows.len() * v]`.
    fn step_rows(&mut self, rows: &[usize]) -> Result<Vec<f32>, ModelError> {
        let tokens: Vec<u32> = rows
            .iter()
            .map(|&i| {
                *self.running[i]
                    .ids
                    .last()
                    .expect("a running sequence has a token")
            })
            .collect();
        let mut caches: Vec<&mut KvCache<B>> = self
            .running
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| rows.contains(i))
            .map(|(_, s)| &mut s.cache)
            .collect();
        host_values(self.lm.model().decode_rows(&tokens, &mut caches)?)
    }

    fn accept(&self, sequence: &mut Sequence<B>, token: u32) -> Option<Finish> {
        Self::accept_in(&self.lm, &self.metrics, sequence, token)
    }

    /// Takes a sampled token into `sequence`: sends its text and, when the sequence ends,
    /// the reason. Returns the reason it ended, if it did.
    fn accept_in(
        lm: &LlamaLm<B>,
        metrics: &Metrics,
        sequence: &mut Sequence<B>,
        token: u32,
    ) -> Option<Finish> {
        let now = Instant::now();
        let first = sequence
            .last_token
            .is_none()
            .then(|| now.duration_since(sequence.arrived).as_secs_f64());
        let gap = sequence
            .last_token
            .map(|t| now.duration_since(t).as_secs_f64());
        metrics.token(first, gap);
        sequence.last_token = Some(now);
        sequence.ids.push(token);
        let stop_token = lm.stop_tokens().contains(&token);
        let text_ids = if stop_token {
            &sequence.ids[..sequence.ids.len() - 1]
        } else {
            &sequence.ids[..]
        };
        let decoded = match lm.tokenizer().decode(text_ids) {
            Ok(text) => text,
            Err(e) => {
                let _ = sequence
                    .events
                    .send(Event::Failed(ApiError::internal(format!(
                        "decoding the output failed: {e}"
                    ))));
                return Some(Finish::Stop);
            }
        };
        let (piece, stopped) = sequence.text.advance(&decoded);
        let finish = if stopped || stop_token {
            Some(Finish::Stop)
        } else if sequence.ids.len() >= sequence.max_tokens
            || sequence.cache.len() + 1 > lm.context_length()
        {
            Some(Finish::Length)
        } else {
            None
        };
        let piece = match finish {
            Some(Finish::Length) | Some(Finish::Stop) if !stopped => {
                piece + &sequence.text.finish(&decoded)
            }
            _ => piece,
        };
        if !piece.is_empty() {
            let _ = sequence.events.send(Event::Text(piece));
        }
        if let Some(reason) = finish {
            let _ = sequence.events.send(Event::Finished {
                reason,
                completion_tokens: sequence.ids.len(),
            });
        }
        finish
    }
}

fn dense(n_blocks: usize) -> Result<OmissionSet, ApiError> {
    OmissionSet::dense(n_blocks).map_err(|e| ApiError::internal(e.to_string()))
}

/// The label of a set in metrics: its blocks (`3,7,19`) or `dense`.
pub fn set_label(set: &OmissionSet) -> String {
    if set.is_empty() {
        "dense".into()
    } else {
        set.blocks()
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}
