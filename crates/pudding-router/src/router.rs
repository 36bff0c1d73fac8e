//! [`PuddingRouter`]: encoder + head + pool, saved as a directory (`head.safetensors` +
//! `router.json`) and loaded back with checks that it belongs to the pool and model.

use crate::config::{EpochMetrics, FinetuneConfig, TrainConfig};
use crate::head::RouterHead;
use crate::labels::RouterInput;
use crate::RouterError;
use burn::prelude::*;
use pudding_core::{io, CandidatePool, ModelFingerprint, Router};
use pudding_models::bert::BertEncoder;
use pudding_models::host_values;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The JSON card stored next to the router weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterCard {
    /// Encoder name (e.g. `all-MiniLM-L6-v2`).
    pub encoder: String,
    /// Tokens of router input kept (longer prompts are cut).
    pub max_tokens: usize,
    /// Input mode the head was trained on.
    pub input: RouterInput,
    /// The LLM the pool was built for.
    pub model: ModelFingerprint,
    /// [`CandidatePool::id`] of the pool.
    pub pool_id: String,
    /// Candidates (output width).
    pub n_candidates: usize,
    /// Training settings of the frozen-encoder head (absent for a full fine-tune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainConfig>,
    /// Settings of a full fine-tune (encoder + head), when the router was made that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
    /// Subdirectory of the router directory holding the fine-tuned encoder (a Hugging
    /// Face BERT directory); `None`: the stock encoder named by `encoder`, frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_dir: Option<String>,
    /// Encoder layers used (the first N of `encoder`); `None`: all of them. A router
    /// whose card says N truncates the stock encoder to N layers when it is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_layers: Option<usize>,
    /// The kept epoch's validation metrics.
    pub metrics: EpochMetrics,
    /// Training and validation rows.
    pub rows: (usize, usize),
}

/// A trained router for one pool.
pub struct PuddingRouter<B: Backend> {
    encoder: BertEncoder<B>,
    head: RouterHead<B>,
    pool: CandidatePool,
    card: RouterCard,
    /// [`weights_digest`] of `head` and `encoder`, taken once when the router is built.
    weights_digest: [u8; 32],
}

/// SHA-256 over every parameter of the head (`hidden.weight` `[d_in, hidden]`,
/// `hidden.bias`, `out.weight` `[hidden, m]`, `out.bias`) and of the encoder (in
/// [`BertEncoder::params`] order, after any truncation): each tensor's name, shape and
/// little-endian f32 values. Two routers with the same card but other weights (another
/// training run, a fine-tuned or swapped encoder) get different digests.
fn weights_digest<B: Backend>(
    head: &RouterHead<B>,
    encoder: &BertEncoder<B>,
) -> Result<[u8; 32], RouterError> {
    use pudding_models::bert::BertParam;
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut add = |name: &str, dims: &[usize], values: Vec<f32>| {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((dims.len() as u64).to_le_bytes());
        for &d in dims {
            hasher.update((d as u64).to_le_bytes());
        }
        for v in values {
            hasher.update(v.to_le_bytes());
        }
    };
    for (name, linear) in [("hidden", &head.hidden), ("out", &head.out)] {
        let weight = linear.weight.val();
        let dims = weight.dims();
        add(&format!("head.{name}.weight"), &dims, host_values(weight)?);
        if let Some(bias) = &linear.bias {
            let bias = bias.val();
            let dims = bias.dims();
            add(&format!("head.{name}.bias"), &dims, host_values(bias)?);
        }
    }
    for (name, param) in encoder.params() {
        match param {
            BertParam::Matrix(t) => {
                let dims = t.dims();
                add(&name, &dims, host_values(t)?);
            }
            BertParam::Vector(t) => {
                let dims = t.dims();
                add(&name, &dims, host_values(t)?);
            }
        }
    }
    Ok(hasher.finalize().into())
}

impl<B: Backend> PuddingRouter<B> {
    /// Assembles a router (checks the card matches the pool; truncates the encoder to the
    /// card's `encoder_layers`, and errors if the encoder has fewer).
    pub fn new(
        mut encoder: BertEncoder<B>,
        head: RouterHead<B>,
        pool: CandidatePool,
        card: RouterCard,
    ) -> Result<Self, RouterError> {
        if card.pool_id != pool.id() || card.n_candidates != pool.len() {
            return Err(RouterError::Mismatch(format!(
                "the router was trained for pool {} ({} candidates), not this pool {} ({})",
                card.pool_id.chars().take(12).collect::<String>(),
                card.n_candidates,
                pool.id().chars().take(12).collect::<String>(),
                pool.len()
            )));
        }
        let d_in = encoder.config().hidden_size;
        if head.input_width() != d_in || head.n_outputs() != card.n_candidates {
            return Err(RouterError::Mismatch(format!(
                "the router head maps {} inputs to {} scores, but the encoder gives {d_in} \
                 and the card names {} candidates",
                head.input_width(),
                head.n_outputs(),
                card.n_candidates
            )));
        }
        if card.max_tokens < 3 {
            // [CLS] and [SEP] alone: every prompt would be routed the same way.
            return Err(RouterError::Invalid(format!(
                "the router card keeps {} input tokens, which leaves no room for text between \
                 [CLS] and [SEP]",
                card.max_tokens
            )));
        }
        let positions = encoder.config().max_position_embeddings;
        if card.max_tokens > positions {
            // The encoder would cut the input at its position table, unlike the card says.
            return Err(RouterError::Invalid(format!(
                "the router card keeps {} input tokens but the encoder has only {positions} \
                 positions",
                card.max_tokens
            )));
        }
        if let Some(n) = card.encoder_layers {
            let have = encoder.config().num_hidden_layers;
            if have < n {
                return Err(RouterError::Mismatch(format!(
                    "the router was trained on {n} encoder layers but the encoder has {have}"
                )));
            }
            if have > n {
                encoder = encoder.truncate_layers(n)?;
            }
        }
        let weights_digest = weights_digest(&head, &encoder)?;
        Ok(Self {
            encoder,
            head,
            pool,
            card,
            weights_digest,
        })
    }

    /// Writes `dir/head.safetensors` and `dir/router.json` (and, for a fine-tuned
    /// encoder, the encoder as `dir/<card.encoder_dir>/`). Each file is written atomically
    /// and `router.json` goes last, removed first: a save that stops part-way leaves no
    /// card, so the directory is never loaded with a head or encoder of another save.
    pub fn save(&self, dir: &Path) -> Result<(), RouterError> {
        let card = dir.join("router.json");
        if card.exists() {
            std::fs::remove_file(&card).map_err(|source| pudding_core::CoreError::Io {
                path: card.clone(),
                source,
            })?;
        }
        self.head.save(&dir.join("head.safetensors"))?;
        if let Some(sub) = &self.card.encoder_dir {
            self.encoder.save_dir(&dir.join(sub))?;
        }
        io::write_json_atomic(&card, &self.card)?;
        Ok(())
    }

    /// Loads a router directory for `pool`, with the encoder; errors when the router was
    /// trained for another pool.
    pub fn load(
        dir: &Path,
        pool: CandidatePool,
        encoder: BertEncoder<B>,
        device: &B::Device,
    ) -> Result<Self, RouterError> {
        let card = Self::read_card(dir)?;
        Self::load_with_card(dir, card, pool, encoder, device)
    }

    /// The card (`router.json`) of a router directory, e.g. to pick the encoder before
    /// [`Self::load_with_card`].
    pub fn read_card(dir: &Path) -> Result<RouterCard, RouterError> {
        Ok(io::read_json(&dir.join("router.json"))?)
    }

    /// [`Self::load`] with the directory's card already read (by [`Self::read_card`]).
    pub fn load_with_card(
        dir: &Path,
        card: RouterCard,
        pool: CandidatePool,
        encoder: BertEncoder<B>,
        device: &B::Device,
    ) -> Result<Self, RouterError> {
        let d_in = encoder.config().hidden_size;
        let head = RouterHead::load(
            &dir.join("head.safetensors"),
            d_in,
            card.n_candidates,
            device,
        )?;
        Self::new(encoder, head, pool, card)
    }

    /// Builds a router from in-memory artifacts (e.g. `include_bytes!` of a committed
    /// router): the card's JSON and the head's safetensors bytes.
    pub fn from_bytes(
        card_json: &str,
        head_safetensors: &[u8],
        pool: CandidatePool,
        encoder: BertEncoder<B>,
        device: &B::Device,
    ) -> Result<Self, RouterError> {
        let card: RouterCard =
            serde_json::from_str(card_json).map_err(|e| RouterError::Malformed {
                what: "router card",
                path: "(embedded)".into(),
                line: e.line(),
                reason: e.to_string(),
            })?;
        let d_in = encoder.config().hidden_size;
        let head = RouterHead::from_bytes(
            head_safetensors,
            Path::new("(embedded)"),
            d_in,
            card.n_candidates,
            device,
        )?;
        Self::new(encoder, head, pool, card)
    }

    /// The card.
    pub fn card(&self) -> &RouterCard {
        &self.card
    }
}

impl<B: Backend> Router for PuddingRouter<B> {
    type Error = RouterError;

    fn pool(&self) -> &CandidatePool {
        &self.pool
    }

    /// The pool's id and a hash of the router card (training settings, validation
    /// metrics, input mode, encoder layers) and of its weights (head and encoder), 12 hex
    /// digits each.
    fn identity(&self) -> String {
        use sha2::{Digest, Sha256};
        // A card of plain numbers and strings always serialises.
        let card = serde_json::to_vec(&self.card).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(&card);
        hasher.update(self.weights_digest);
        let hash: String = hasher
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        let pool: String = self.pool.id().chars().take(12).collect();
        format!("{pool} router {hash}")
    }

    fn reads_first_choice(&self) -> bool {
        self.card.input == RouterInput::PromptAndFirstChoice
    }

    fn scores(&self, prompt: &str) -> Result<Vec<f32>, RouterError> {
        let embedding = self.encoder.embed(&[prompt], self.card.max_tokens)?;
        Ok(pudding_models::host_values(self.head.forward(embedding))?)
    }
}
