//! # pudding-models
//!
//! Decoder LLMs whose transformer blocks can be skipped per request, on Burn:
//!
//! - [`LlamaModel`]: the Llama-family decoder (Llama, SmolLM2, Mistral, Qwen2 layouts, and
//!   Gemma 3's extra norms, GeGLU and sliding-window attention), generic over
//!   `B: Backend`; a skipped block is the identity and writes no KV entries.
//! - [`LlamaLm`]: model + tokenizer + fingerprint, implementing
//!   [`pudding_core::SkippableLm`] (log-probabilities, KV-cached generation).
//! - Loading from GGUF ([`gguf`], dequantisation included) or Hugging Face safetensors
//!   ([`weights`]); tokenizers from `tokenizer.json` or GGUF metadata ([`tokenizer`]).
//! - [`bert::BertEncoder`]: a BERT-family encoder with mean pooling (the router's
//!   prompt encoder).
//! - [`assets`]: fetching the real weights (SmolLM2, Qwen2.5-Coder, Gemma 3, MiniLM) into
//!   the cache.
//!
//! ```no_run
//! use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
//! use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
//! use pudding_models::{cpu_device, CpuBackend, LlamaLm, WeightMode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // SmolLM2-135M-Instruct's Q4_1 GGUF, fetched into $PUDDING_HOME on first use; its
//! // blocks stay quantised and run on the quantised CPU kernels.
//! let path = ensure_asset(&SMOLLM2_135M_INSTRUCT)?;
//! let lm = LlamaLm::<CpuBackend>::load_with(&path, &cpu_device(), WeightMode::Quantized)?;
//! let ids = lm.encode_prompt(&lm.chat_prompt("What is the capital of France?")?)?;
//! let config = GenerationConfig {
//!     max_new_tokens: 24,
//!     stop_tokens: lm.stop_tokens().to_vec(),
//!     ..Default::default()
//! };
//! for skip in ["none", "3,7,19"] {
//!     let skip = OmissionSet::parse(skip, lm.n_blocks())?;
//!     let answer = lm.generate(&ids, &skip, &config)?;
//!     println!("skipping {skip}: {} ({:.1} tok/s)", answer.text, answer.decode_tokens_per_sec());
//! }
//! # Ok(())
//! # }
//! ```

pub mod assets;
pub mod bert;
pub mod cache;
pub mod chat;
pub mod config;
pub mod error;
pub mod export;
pub mod fused_decode;
pub mod linear;
pub mod llama;
pub mod lm;
pub mod resident;
pub mod rope;
pub mod sampling;
pub mod team;
pub mod testing;
pub mod tokenizer;
pub mod weights;

/// GGUF files: the container, the block formats and the quantised kernels (the
/// framework-free `pudding-gguf` crate).
pub use pudding_gguf as gguf;

pub use cache::KvCache;
pub use config::LlamaConfig;
pub use error::ModelError;
pub use fused_decode::FusedDecoder;
pub use linear::WeightMode;
pub use llama::LlamaModel;
pub use lm::{
    generate_ids, generate_ids_with, host_values, BatchIds, Checkpoint, DecodePath, LlamaLm,
};
pub use resident::{ResidentLlamaLm, SwitchReport};
pub use tokenizer::TextTokenizer;

/// The default CPU backend: Burn's `flex` (gemm-based, SIMD, multi-threaded), `f32`.
pub type CpuBackend = burn::backend::Flex;

/// The default CPU device.
pub fn cpu_device() -> burn::backend::flex::FlexDevice {
    Default::default()
}

/// The unit tests check the chat templates' memory budget, which needs the counting allocator.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: pudding_core::memory::BudgetedAllocator = pudding_core::memory::BudgetedAllocator;
