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
//! - [`Shard`]: one part of a job split over processes (Slurm arrays), by item position.
//! - [`memory::run_with_budget`]: untrusted work (chat templates) under a memory budget.
//!
//! ```
//! use pudding_core::{Candidate, CandidatePool, FingerprintBuilder, OmissionSet};
//!
//! // A 30-block model (SmolLM2-135M's depth): skip blocks 3, 7 and 19, or 10 to 13.
//! let skip = OmissionSet::parse("3,7,19", 30)?;
//! assert_eq!((skip.len(), skip.skips(7), skip.skips(8)), (3, true, false));
//! assert_eq!(OmissionSet::parse("10-13", 30)?.blocks(), &[10, 11, 12, 13]);
//! assert!(OmissionSet::parse("30", 30).is_err()); // no block 30: an error, never a clamp
//!
//! // A pool belongs to one model, by fingerprint; a router picks one of its candidates.
//! let model = FingerprintBuilder::new("llama", 30, 576, 49152, "{}").finish();
//! let candidates = vec![Candidate { set: skip, provenance: serde_json::Value::Null }];
//! let pool = CandidatePool::new(model.clone(), candidates)?;
//! pool.check_model(&model)?;
//! let other = FingerprintBuilder::new("llama", 30, 576, 49152, "{\"other\": 1}").finish();
//! assert!(pool.check_model(&other).is_err());
//! # Ok::<(), pudding_core::CoreError>(())
//! ```

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
pub mod shard;

pub use error::CoreError;
pub use fingerprint::{FingerprintBuilder, ModelFingerprint};
pub use generation::{FinishReason, Generation, GenerationConfig, Sampling};
pub use lm::{ContinuationScore, SkippableLm};
pub use omission::OmissionSet;
pub use pipeline::{PipelineError, Pudding};
pub use pool::{Candidate, CandidatePool};
pub use router::{RouteDecision, Router};
pub use shard::{Shard, ShardError};
