//! Memory-constrained mode (described in the paper): only the blocks the current omission set
//! keeps are resident on the device; the others stay in the memory-mapped checkpoint, and
//! switching to another set loads just the blocks it needs that are not resident yet.

use crate::linear::WeightMode;
use crate::llama::LlamaModel;
use crate::lm::{Checkpoint, LlamaLm};
use crate::ModelError;
use burn::prelude::*;
use pudding_core::OmissionSet;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// What a switch of omission set did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SwitchReport {
    /// Blocks copied from the checkpoint to the device.
    pub loaded: Vec<usize>,
    /// Blocks dropped from the device.
    pub evicted: Vec<usize>,
    /// Wall-clock seconds of the switch (reading, dequantising and uploading).
    pub switch_secs: f64,
    /// Parameters resident after the switch (embedding, head, norms, kept blocks).
    pub resident_params: usize,
    /// Bytes those parameters take at the backend's float width.
    pub resident_bytes: usize,
    /// Bytes the whole model would take with every block resident.
    pub full_bytes: usize,
}

/// A model whose blocks are resident only while the current omission set keeps them.
///
/// Scoring and generation go through [`Self::lm`] with [`Self::current`] (or any set that
/// skips at least the non-resident blocks); a set that needs a non-resident block gives
/// [`ModelError::BlockNotResident`] until [`Self::switch_to`] is called.
pub struct ResidentLlamaLm<B: Backend> {
    lm: LlamaLm<B>,
    checkpoint: Checkpoint,
    current: OmissionSet,
    full_params: usize,
}

impl<B: Backend> ResidentLlamaLm<B> {
    /// Opens a `.gguf` file or Hugging Face directory with only the blocks `skip` keeps
    /// resident, block-quantised GGUF matrices held as `mode` says.
    pub fn open(
        path: &Path,
        skip: &OmissionSet,
        device: &B::Device,
        mode: WeightMode,
    ) -> Result<(Self, SwitchReport), ModelError> {
        let start = Instant::now();
        let checkpoint = Checkpoint::open(path)?.with_weight_mode(mode);
        let config = checkpoint.config.clone();
        skip.check_blocks(config.n_blocks)?;
        let model = LlamaModel::<B>::from_weights_resident(
            &config,
            checkpoint.weights.as_ref(),
            skip,
            device,
            mode,
        )?;
        let lm = LlamaLm::assemble(
            model,
            &config,
            checkpoint.weights.as_ref(),
            checkpoint.tokenizer.clone(),
            checkpoint.stop_tokens.clone(),
        )
        .with_bos_token(checkpoint.bos_token)?
        .with_add_bos(checkpoint.add_bos)?
        .with_chat_template(checkpoint.chat_template.clone())?;
        let full_params = full_param_count(&config);
        let this = Self {
            lm,
            checkpoint,
            current: skip.clone(),
            full_params,
        };
        let report = this.report(skip.kept().collect(), Vec::new(), start);
        Ok((this, report))
    }

    /// Makes exactly the blocks `skip` keeps resident: loads the missing ones from the
    /// checkpoint and drops the ones `skip` omits.
    pub fn switch_to(&mut self, skip: &OmissionSet) -> Result<SwitchReport, ModelError> {
        let start = Instant::now();
        let before = self.lm.model().resident_blocks();
        let loaded =
            self.lm
                .model_mut()
                .make_resident(self.checkpoint.weights.as_ref(), skip, true)?;
        let evicted = before.into_iter().filter(|&b| skip.skips(b)).collect();
        self.current = skip.clone();
        Ok(self.report(loaded, evicted, start))
    }

    /// The model (blocks outside [`Self::current`]'s kept set are absent).
    pub fn lm(&self) -> &LlamaLm<B> {
        &self.lm
    }

    /// The omission set whose kept blocks are resident.
    pub fn current(&self) -> &OmissionSet {
        &self.current
    }

    /// Bytes of the resident weight matrices (their stored size when quantised).
    pub fn resident_bytes(&self) -> usize {
        self.lm.model().weight_memory_bytes()
    }

    /// Bytes per parameter of the resident weights (fractional for block formats).
    fn bytes_per_param(&self) -> f64 {
        let model = self.lm.model();
        model.weight_memory_bytes() as f64 / model.resident_params().max(1) as f64
    }

    fn report(&self, loaded: Vec<usize>, evicted: Vec<usize>, start: Instant) -> SwitchReport {
        let resident_params = self.lm.model().resident_params();
        SwitchReport {
            loaded,
            evicted,
            switch_secs: start.elapsed().as_secs_f64(),
            resident_params,
            resident_bytes: self.resident_bytes(),
            full_bytes: (self.full_params as f64 * self.bytes_per_param()).round() as usize,
        }
    }
}

/// Parameters of the whole model of `c` (every block resident).
pub fn full_param_count(c: &crate::LlamaConfig) -> usize {
    let (d, e, f) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (qd, kvd) = (c.n_heads * e, c.n_kv_heads * e);
    let bias = if c.attention_bias { qd + 2 * kvd } else { 0 };
    let norms = if c.features.sandwich_norms {
        4 * d
    } else {
        2 * d
    } + if c.features.qk_norm { 2 * e } else { 0 };
    let block = d * qd + 2 * d * kvd + qd * d + 3 * d * f + norms + bias;
    let head = if c.tie_word_embeddings {
        0
    } else {
        c.vocab_size * d
    };
    c.n_blocks * block + c.vocab_size * d + head + d
}
