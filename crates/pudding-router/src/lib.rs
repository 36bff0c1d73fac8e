//! # pudding-router
//!
//! The PuDDing router (the paper's router): it reads a prompt and predicts, for each
//! candidate omission set of a pool, the mean per-token log-likelihood the LLM would give
//! the correct answer with those blocks skipped; routing picks the argmax.
//!
//! - [`labels`]: training labels computed with the shared scorer (resumable JSON lines).
//! - [`head`]: the MLP head on top of a frozen BERT encoder, saved as safetensors.
//! - [`train`]: the head trained with burn-train's `Learner`: AdamW on MSE with warm-up +
//!   linear decay, weight decay, gradient clipping, a seeded 80/20 split, per-epoch metrics
//!   (MSE, top-1 agreement, regret), best-epoch checkpoint, early stopping.
//! - [`learner`]: the burn-train pieces that training uses (batcher, steps, schedule,
//!   routing metrics, epoch log, best-epoch strategy).
//! - [`finetune`]: the paper's full fine-tuning of encoder + head (per-epoch checkpoints).
//! - [`router`]: [`router::PuddingRouter`], implementing [`pudding_core::Router`].

pub mod error;
pub mod finetune;
pub mod head;
pub mod labels;
pub mod learner;
pub mod router;
pub mod train;

pub use error::RouterError;
