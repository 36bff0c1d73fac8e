//! # pudding-router
//!
//! The PuDDing router (the paper's router): it reads a prompt and predicts, for each
//! candidate omission set of a pool, the mean per-token log-likelihood the LLM would give
//! the correct answer with those blocks skipped; routing picks the argmax.
//!
//! - [`labels`]: training labels computed with the shared scorer (resumable JSON lines).
//! - [`config`]: the training settings and metrics a router card records.
//! - [`fit`]: the split, shuffle, schedule and routing metrics the trainers share.
//! - [`head`]: the MLP head on top of a frozen BERT encoder, saved as safetensors.
//! - [`train`]: the head trained with burn-train's `Learner`: AdamW on MSE with warm-up +
//!   linear decay, weight decay, gradient clipping, a seeded 80/20 split, per-epoch metrics
//!   (MSE, top-1 agreement, regret), best-epoch checkpoint, early stopping.
//! - [`learner`]: the burn-train pieces that training uses (batcher, steps, schedule,
//!   routing metrics, epoch log, best-epoch strategy).
//! - [`finetune`]: the paper's full fine-tuning of encoder + head (per-epoch checkpoints).
//! - [`router`]: [`router::PuddingRouter`], implementing [`pudding_core::Router`].
//! - [`default`]: the embedded k = 3 and k = 6 routers for SmolLM2-135M-Instruct.
//!
//! Training ([`train`], [`learner`], [`finetune`]) is behind the default `train` feature
//! (it brings in burn-train); `default-features = false` keeps routing with trained
//! routers, labels and the card types.
//!
//! Load the model, route a prompt with the embedded default router ([`default`]), and
//! generate with the chosen candidate's blocks skipped:
//!
//! ```no_run
//! use pudding_core::{GenerationConfig, Pudding, SkippableLm};
//! use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
//! use pudding_models::{cpu_device, CpuBackend, LlamaLm};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = cpu_device();
//! let path = ensure_asset(&SMOLLM2_135M_INSTRUCT)?; // fetched into $PUDDING_HOME once
//! let lm = LlamaLm::<CpuBackend>::load(&path, &device)?;
//! let router = pudding_router::default::embedded_router::<CpuBackend, _>(3, &lm, &device)?;
//! let pudding = Pudding::new(&lm, &router)?;
//!
//! let prompt = "Why is the sky blue?";
//! let ids = lm.encode_prompt(&lm.chat_prompt(prompt)?)?;
//! let config = GenerationConfig {
//!     max_new_tokens: 32,
//!     stop_tokens: lm.stop_tokens().to_vec(),
//!     ..Default::default()
//! };
//! let (decision, generation) = pudding.generate(prompt, &ids, &config)?;
//! println!("skipped blocks {}: {}", decision.set, generation.text);
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod default;
pub mod error;
#[cfg(feature = "train")]
pub mod finetune;
pub mod fit;
pub mod head;
pub mod labels;
pub mod learnability;
#[cfg(feature = "train")]
pub mod learner;
pub mod router;
#[cfg(feature = "train")]
pub mod train;

pub use error::RouterError;
