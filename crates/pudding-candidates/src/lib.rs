//! # pudding-candidates
//!
//! Building candidate omission sets (PuDDing's candidate search):
//!
//! - [`calibration`]: calibration samples (tokenised with the shared scorer's rule) from
//!   task items or plain text.
//! - [`losses`]: the task-likelihood loss `tl`, the likelihood difference `tld`, and a
//!   perplexity loss, all computed through the shared scorer.
//! - [`greedy`]: the SLEB-style iterative greedy search, with a checkpoint per phase, and
//!   two interchangeable trial evaluators: the plain one (shared scorer) and a fast one
//!   that reuses every hidden state before the trial block.
//! - [`pool`]: one search per (task, loss) into a [`pudding_core::CandidatePool`], SLEB,
//!   and the generic calibration text.
//! - [`report`]: Markdown table and SVG grid of a pool.
//! - [`baselines`]: ShortGPT block influence and Shortened LLaMA's PPL criterion (SLEB is
//!   the greedy search with the perplexity loss).

pub mod baselines;
pub mod calibration;
pub mod greedy;
pub mod losses;
pub mod pool;
pub mod report;

pub use calibration::CalibrationSample;
pub use greedy::{greedy_search, GreedyConfig, GreedyResult, GreedyStep, SearchError};
pub use losses::LossKind;
