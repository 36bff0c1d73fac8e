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
//!
//! ```no_run
//! use pudding_candidates::pool::build_pool;
//! use pudding_candidates::{GreedyConfig, LossKind};
//! use pudding_eval::tasks::TaskName;
//! use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
//! use pudding_models::{cpu_device, CpuBackend, LlamaLm};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lm = LlamaLm::<CpuBackend>::load(&ensure_asset(&SMOLLM2_135M_INSTRUCT)?, &cpu_device())?;
//! // One greedy search per (task, loss) on the first 8 train rows of each task, 3 blocks
//! // each; a search resumes from its checkpoint after an interruption.
//! let pool = build_pool(
//!     &lm,
//!     &[TaskName::ArcEasy, TaskName::Piqa],
//!     &[LossKind::Tl, LossKind::Tld],
//!     &GreedyConfig { k: 3, ..Default::default() },
//!     8,
//!     Some(Path::new("search-checkpoints")),
//!     &mut |run, phase, phases| eprintln!("{run}: phase {phase}/{phases}"),
//! )?;
//! pool.save(Path::new("pool-k3.json"))?; // the candidates a router chooses between
//! # Ok(())
//! # }
//! ```

pub mod baselines;
pub mod calibration;
pub mod greedy;
pub mod losses;
pub mod pool;
pub mod report;

pub use calibration::CalibrationSample;
pub use greedy::{greedy_search, GreedyConfig, GreedyResult, GreedyStep, SearchError};
pub use losses::LossKind;
