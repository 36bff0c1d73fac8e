//! KV-cached generation of token ids for a batch of prompts, through the fused or the
//! tensor decode path.

use crate::cache::KvCache;
use crate::linear::on_worker;
use crate::llama::LlamaModel;
use crate::sampling::Sampler;
use crate::ModelError;
use burn::prelude::*;
use pudding_core::{FinishReason, GenerationConfig, OmissionSet};
use std::time::Instant;

use super::host_values;

/// Token ids generated for a batch of prompts, with timings.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchIds {
    /// Generated ids per prompt (a final stop token included).
    pub ids: Vec<Vec<u32>>,
    /// Why each row ended.
    pub finish: Vec<FinishReason>,
    /// Seconds of the batched prefill (first tokens chosen).
    pub prefill_secs: f64,
    /// Seconds of every decode step after it.
    pub decode_secs: f64,
}

/// KV-cached generation for a batch of prompts under one omission set, on token ids.
///
/// Prompts are left-padded with `filler` to the longest, the padding masked out and every
/// row run at its own positions; rows that finish ride along (fed `filler`, ignored) until
/// the last one stops. Each row samples with its own generator seeded from `config`, so a
/// row's tokens equal those of the prompt generated alone. One difference: the context
/// limit applies to the padded width.
pub fn generate_ids<B: Backend>(
    model: &LlamaModel<B>,
    prompts: &[Vec<u32>],
    skip: &OmissionSet,
    config: &GenerationConfig,
    filler: u32,
) -> Result<BatchIds, ModelError> {
    generate_ids_with(model, prompts, skip, config, filler, DecodePath::Auto)
}

/// How the decode steps after the prefill run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodePath {
    /// [`FusedDecoder`](crate::FusedDecoder) when it can serve the request (one prompt, every kept
    /// block's projections block-quantised, `f32` activations), else the tensor path.
    #[default]
    Auto,
    /// Always Burn tensor operations ([`LlamaModel::forward_last`] with the cache), e.g. to
    /// compare the two.
    Tensor,
}

impl DecodePath {
    /// The name used on the command line (`auto` / `tensor`).
    pub fn name(self) -> &'static str {
        match self {
            DecodePath::Auto => "auto",
            DecodePath::Tensor => "tensor",
        }
    }
}

/// [`generate_ids`] with a chosen decode path.
pub fn generate_ids_with<B: Backend>(
    model: &LlamaModel<B>,
    prompts: &[Vec<u32>],
    skip: &OmissionSet,
    config: &GenerationConfig,
    filler: u32,
    path: DecodePath,
) -> Result<BatchIds, ModelError> {
    if prompts.is_empty() {
        return Err(ModelError::Batch("no prompts to generate from".into()));
    }
    for p in prompts {
        model.check_ids(p)?;
    }
    model.check_ids(&[filler])?;
    skip.check_blocks(model.config().n_blocks)?;
    let rows = prompts.len();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
    let filler = i64::from(filler);
    let mut padded = Vec::with_capacity(rows * width);
    for (p, &pad) in prompts.iter().zip(&pads) {
        padded.extend(std::iter::repeat_n(filler, pad));
        padded.extend(p.iter().map(|&t| i64::from(t)));
    }
    let device = model.device();
    let vocab = model.config().vocab_size;
    let max_len = model.config().max_seq_len;
    let mut samplers = prompts
        .iter()
        .map(|_| Sampler::new(&config.sampling))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cache = if pads.iter().all(|&p| p == 0) {
        KvCache::new(skip.clone())
    } else {
        KvCache::with_left_padding(skip.clone(), pads)
    };
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut finish: Vec<Option<FinishReason>> = vec![None; rows];

    let start = Instant::now();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(padded, [rows, width]), &device);
    let mut next: Vec<Option<u32>> = if config.max_new_tokens > 0 {
        let logits = host_values(model.forward_last(tokens, skip, Some(&mut cache))?)?;
        samplers
            .iter_mut()
            .zip(logits.chunks(vocab))
            .map(|(s, row)| s.sample(row).map(Some))
            .collect::<Result<_, _>>()?
    } else {
        finish.fill(Some(FinishReason::Length));
        vec![None; rows]
    };
    let prefill_secs = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut fused = match path {
        DecodePath::Auto if rows == 1 => crate::FusedDecoder::continuing(model, &cache)?,
        _ => None,
    };
    loop {
        for row in 0..rows {
            let Some(token) = next[row].take() else {
                continue;
            };
            ids[row].push(token);
            if config.stop_tokens.contains(&token) {
                finish[row] = Some(FinishReason::Stop);
            } else if ids[row].len() >= config.max_new_tokens {
                finish[row] = Some(FinishReason::Length);
            } else if fused.as_ref().map_or(cache.len(), |f| f.len()) + 1 > max_len {
                finish[row] = Some(FinishReason::ContextFull);
            }
        }
        if finish.iter().all(Option::is_some) {
            break;
        }
        if let Some(decoder) = fused.as_mut() {
            let token = ids[0]
                .last()
                .copied()
                .expect("an unfinished row has a token");
            let logits = on_worker(|| decoder.step(token))?;
            next[0] = Some(samplers[0].sample(&logits)?);
            continue;
        }
        let step: Vec<i64> = (0..rows)
            .map(|row| match (finish[row], ids[row].last()) {
                (None, Some(&t)) => i64::from(t),
                _ => filler,
            })
            .collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(step, [rows, 1]), &device);
        let logits = host_values(model.forward_last(tokens, skip, Some(&mut cache))?)?;
        for (row, logits) in logits.chunks(vocab).enumerate() {
            if finish[row].is_none() {
                next[row] = Some(samplers[row].sample(logits)?);
            }
        }
    }
    let decode_secs = start.elapsed().as_secs_f64();
    Ok(BatchIds {
        ids,
        finish: finish
            .into_iter()
            .map(|f| f.unwrap_or(FinishReason::Length))
            .collect(),
        prefill_secs,
        decode_secs,
    })
}
