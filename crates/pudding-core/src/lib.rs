//! # pudding-core
//!
//! The vocabulary shared by every pudding crate, free of any tensor framework:
//!
//! - [`OmissionSet`]: a validated set of transformer blocks to skip for one request.
//! - [`ModelFingerprint`]: which model an artifact (pool, router, results) was made for.
//! - [`CandidatePool`]: the ordered candidate omission sets a router chooses between.
//! - [`SkippableLm`]: a language model that scores and generates under an omission set.
//! - [`Router`] and [`RouteDecision`]: prompt -> candidate index, with per-candidate scores.
//! - [`Pudding`]: route once per prompt, then generate with the chosen set.
//! - [`io::write_atomic`]: every file pudding writes goes through a temp file and a rename.
//! - [`memory::run_with_budget`]: untrusted work (chat templates) under a memory budget.

pub mod error;
pub mod fingerprint;
pub mod generation;
pub mod io;
pub mod lm;
pub mod memory;
pub mod omission;
pub mod pipeline;
pub mod pool;
pub mod router;

pub use error::CoreError;
pub use fingerprint::{FingerprintBuilder, ModelFingerprint};
pub use generation::{FinishReason, Generation, GenerationConfig, Sampling};
pub use lm::{ContinuationScore, SkippableLm};
pub use omission::OmissionSet;
pub use pipeline::{PipelineError, Pudding};
pub use pool::{Candidate, CandidatePool};
pub use router::{RouteDecision, Router};
