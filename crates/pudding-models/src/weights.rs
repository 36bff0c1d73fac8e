//! Weight sources: HF-named `f32` tensors read from GGUF or safetensors checkpoints.
//!
//! The model builder asks for tensors by their Hugging Face names
//! (`model.layers.3.self_attn.q_proj.weight`, ...); each source maps those names to its
//! own format, converts the storage type to `f32` and, for GGUF, undoes llama.cpp's
//! query/key row permutation so that every source yields the HF layout.

use crate::gguf::matmul::{self, QuantizedMatrix};
use crate::gguf::{GgmlType, GgufFile};
use crate::{LlamaConfig, ModelError};
use memmap2::Mmap;
use pudding_core::{FingerprintBuilder, ModelFingerprint};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A dense `f32` tensor in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Row-major shape (e.g. `[out_features, in_features]` for a projection).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// Something that hands out model weights by Hugging Face tensor name.
pub trait WeightSource {
    /// The tensor `name` (HF naming) as row-major `f32`, in the HF layout.
    fn tensor(&self, name: &str) -> Result<HostTensor, ModelError>;
    /// Whether the checkpoint has a tensor of that HF name.
    fn contains(&self, name: &str) -> bool;
    /// A fingerprint over the configuration and all stored tensors (raw bytes).
    fn fingerprint(&self, config: &LlamaConfig) -> ModelFingerprint;
    /// Every stored tensor of block `block`, by HF name (`model.layers.{block}.*`); a
    /// stored tensor with no HF name this loader knows comes back under its stored name.
    /// The model builder refuses a block holding a tensor it did not read: ignoring one
    /// (a bias, an extra norm of an unsupported variant) would give wrong logits silently.
    fn block_tensor_names(&self, block: usize) -> Vec<String>;
    /// The stored names (the checkpoint's own naming) that start with `prefix`.
    fn stored_names_with_prefix(&self, prefix: &str) -> Vec<String>;
    /// The matrix `name` (HF naming, `[out, in]` in the HF row order) as stored, without
    /// an `f32` copy, when the source keeps it so: GGUF block-quantised and half-precision
    /// matrices. `None` when it is stored otherwise (read it with [`Self::tensor`]).
    fn quantized(&self, name: &str) -> Result<Option<QuantizedMatrix>, ModelError> {
        let _ = name;
        Ok(None)
    }
}

/// Per-block tensors that checkpoints may carry and no model reads: the rotary inverse
/// frequencies older transformers versions saved as a buffer (recomputed from the
/// config), and llama.cpp's equivalent in old GGUF conversions.
pub fn is_unread_buffer(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq") || name.ends_with("attn_rot_embd")
}

/// One per-block tensor's name in each layout: the Hugging Face name after
/// `model.layers.{i}.`, and llama.cpp's after `blk.{i}.`, which differs for Gemma's
/// sandwich norms (`None`: no such tensor in that naming).
struct BlockTensorName {
    hf: &'static str,
    gguf: Option<&'static str>,
    gguf_sandwich: Option<&'static str>,
}

/// Every per-block tensor [`hf_to_gguf_name_for`] maps (the one table both directions of
/// the name mapping read).
const BLOCK_TENSOR_NAMES: [BlockTensorName; 16] = {
    const fn same(hf: &'static str, gguf: &'static str) -> BlockTensorName {
        BlockTensorName {
            hf,
            gguf: Some(gguf),
            gguf_sandwich: Some(gguf),
        }
    }
    const fn norm(
        hf: &'static str,
        gguf: Option<&'static str>,
        gguf_sandwich: &'static str,
    ) -> BlockTensorName {
        BlockTensorName {
            hf,
            gguf,
            gguf_sandwich: Some(gguf_sandwich),
        }
    }
    [
        same("input_layernorm.weight", "attn_norm.weight"),
        norm(
            "post_attention_layernorm.weight",
            Some("ffn_norm.weight"),
            "post_attention_norm.weight",
        ),
        norm("pre_feedforward_layernorm.weight", None, "ffn_norm.weight"),
        norm(
            "post_feedforward_layernorm.weight",
            None,
            "post_ffw_norm.weight",
        ),
        same("self_attn.q_norm.weight", "attn_q_norm.weight"),
        same("self_attn.k_norm.weight", "attn_k_norm.weight"),
        same("self_attn.q_proj.weight", "attn_q.weight"),
        same("self_attn.k_proj.weight", "attn_k.weight"),
        same("self_attn.v_proj.weight", "attn_v.weight"),
        same("self_attn.o_proj.weight", "attn_output.weight"),
        same("self_attn.q_proj.bias", "attn_q.bias"),
        same("self_attn.k_proj.bias", "attn_k.bias"),
        same("self_attn.v_proj.bias", "attn_v.bias"),
        same("mlp.gate_proj.weight", "ffn_gate.weight"),
        same("mlp.up_proj.weight", "ffn_up.weight"),
        same("mlp.down_proj.weight", "ffn_down.weight"),
    ]
};

/// The stored names in a sorted map that start with `prefix`.
fn names_with_prefix<V>(map: &BTreeMap<String, V>, prefix: &str) -> Vec<String> {
    map.range(prefix.to_string()..)
        .take_while(|(name, _)| name.starts_with(prefix))
        .map(|(name, _)| name.clone())
        .collect()
}

fn fingerprint_builder(config: &LlamaConfig) -> FingerprintBuilder {
    let config_json = serde_json::to_string(config).unwrap_or_default();
    FingerprintBuilder::new(
        &config.architecture,
        config.n_blocks,
        config.hidden_size,
        config.vocab_size,
        &config_json,
    )
}

/// Maps a HF tensor name to its llama.cpp GGUF name (Llama / Qwen2 naming).
pub fn hf_to_gguf_name(name: &str) -> Option<String> {
    hf_to_gguf_name_for(name, false)
}

/// Maps a HF tensor name to its llama.cpp GGUF name. With `sandwich_norms` (Gemma),
/// `post_attention_layernorm` is the norm of the attention output (`post_attention_norm`)
/// and `pre_feedforward_layernorm` the norm before the MLP (`ffn_norm`); without, the
/// Llama name `post_attention_layernorm` is the norm before the MLP.
pub fn hf_to_gguf_name_for(name: &str, sandwich_norms: bool) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (index, tail) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    let names = BLOCK_TENSOR_NAMES.iter().find(|n| n.hf == tail)?;
    let gguf_tail = if sandwich_norms {
        names.gguf_sandwich
    } else {
        names.gguf
    }?;
    Some(format!("blk.{index}.{gguf_tail}"))
}

/// Moves query/key projection rows between the HF rotate-half layout and llama.cpp's
/// interleaved layout. Within each head of `head_dim` rows, HF row `half * head_dim/2 + i`
/// is GGUF row `2*i + half`. `data` is row-major `[n_heads * head_dim, cols]` (`cols = 1`
/// for a bias).
fn move_rotary_rows(
    data: &[f32],
    n_heads: usize,
    head_dim: usize,
    cols: usize,
    to_gguf: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    for hf_row in 0..n_heads * head_dim {
        let gguf_row = gguf_rotary_row(hf_row, head_dim);
        let (from, to) = if to_gguf {
            (hf_row, gguf_row)
        } else {
            (gguf_row, hf_row)
        };
        out[to * cols..(to + 1) * cols].copy_from_slice(&data[from * cols..(from + 1) * cols]);
    }
    out
}

/// The GGUF row holding HF query/key row `hf_row` (heads of `head_dim` rows; see
/// [`unpermute_rotary_rows`]).
fn gguf_rotary_row(hf_row: usize, head_dim: usize) -> usize {
    let (head, within) = (hf_row / head_dim, hf_row % head_dim);
    let (part, i) = (within / (head_dim / 2), within % (head_dim / 2));
    head * head_dim + 2 * i + part
}

/// Undoes llama.cpp's `permute` of query/key projection rows (GGUF -> HF layout). `data`
/// is row-major `[n_heads * head_dim, cols]` (a bias: `cols = 1`); so is the result.
pub fn unpermute_rotary_rows(
    data: &[f32],
    n_heads: usize,
    head_dim: usize,
    cols: usize,
) -> Vec<f32> {
    move_rotary_rows(data, n_heads, head_dim, cols, false)
}

/// llama.cpp's `permute` of query/key projection rows (HF -> GGUF layout), used to write
/// GGUF files. `data` is row-major `[n_heads * head_dim, cols]`; so is the result.
pub fn permute_rotary_rows(data: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    move_rotary_rows(data, n_heads, head_dim, cols, true)
}

/// Weights from a llama.cpp GGUF file (memory-mapped; dequantised per tensor on request).
pub struct GgufWeights {
    file: GgufFile,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    /// llama.cpp permutes q/k rows only for the `llama` architecture (not for qwen2 or
    /// gemma3).
    permuted_rotary: bool,
    /// Gemma's norm names (see [`hf_to_gguf_name_for`]).
    sandwich_norms: bool,
    architecture: String,
}

impl GgufWeights {
    /// Wraps an opened GGUF file for a model of `config`.
    pub fn new(file: GgufFile, config: &LlamaConfig) -> Self {
        Self {
            file,
            n_heads: config.n_heads,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            permuted_rotary: config.architecture == "llama",
            sandwich_norms: config.features.sandwich_norms,
            architecture: config.architecture.clone(),
        }
    }

    /// The underlying file (metadata, tensor index).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    fn gguf_name(&self, hf_name: &str) -> Option<String> {
        hf_to_gguf_name_for(hf_name, self.sandwich_norms)
    }

    /// The head count of a query/key weight or bias whose rows llama.cpp permuted (`None`
    /// for every other tensor, and for architectures it does not permute), checked against
    /// the tensor's row count `rows`.
    fn permuted_heads(
        &self,
        gguf_name: &str,
        shape: &[usize],
    ) -> Result<Option<usize>, ModelError> {
        let is = |part: &str| {
            gguf_name.ends_with(&format!("{part}.weight"))
                || gguf_name.ends_with(&format!("{part}.bias"))
        };
        let heads = if !self.permuted_rotary {
            return Ok(None);
        } else if is("attn_q") {
            self.n_heads
        } else if is("attn_k") {
            self.n_kv_heads
        } else {
            return Ok(None);
        };
        if shape.first().copied().unwrap_or(0) != heads * self.head_dim {
            return Err(ModelError::ShapeMismatch {
                name: gguf_name.to_string(),
                expected: vec![heads * self.head_dim],
                actual: shape.to_vec(),
            });
        }
        Ok(Some(heads))
    }
}

impl WeightSource for GgufWeights {
    fn quantized(&self, name: &str) -> Result<Option<QuantizedMatrix>, ModelError> {
        let Some(gguf_name) = self.gguf_name(name) else {
            return Ok(None);
        };
        let Ok(info) = self.file.tensor(&gguf_name) else {
            return Ok(None);
        };
        let shape = info.shape_row_major();
        // F32 matrices gain nothing from staying as stored; other types without a kernel
        // load dequantised.
        if shape.len() != 2 || info.dtype == GgmlType::F32 || !matmul::has_kernel(info.dtype) {
            return Ok(None);
        }
        let (rows, cols) = (shape[0], shape[1]);
        let bytes = self.file.tensor_bytes_shared(&gguf_name)?;
        let matrix = QuantizedMatrix::new(&gguf_name, info.dtype, rows, cols, bytes)?;
        if self.permuted_heads(&gguf_name, &shape)?.is_none() {
            return Ok(Some(matrix));
        }
        // Output row `hf` reads the GGUF row llama.cpp's permute moved it to.
        let order = (0..rows)
            .map(|hf_row| gguf_rotary_row(hf_row, self.head_dim) as u32)
            .collect();
        Ok(Some(matrix.with_row_order(order)?))
    }

    fn tensor(&self, name: &str) -> Result<HostTensor, ModelError> {
        let arch = self.architecture.as_str();
        let gguf_name = self
            .gguf_name(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                arch: arch.to_string(),
            })?;
        let info = self
            .file
            .tensor(&gguf_name)
            .map_err(|_| ModelError::MissingTensor {
                name: gguf_name.clone(),
                arch: arch.to_string(),
            })?;
        let shape = info.shape_row_major();
        let mut data = self.file.dequantize(&gguf_name)?;
        if let Some(heads) = self.permuted_heads(&gguf_name, &shape)? {
            let cols = data.len() / shape[0].max(1);
            data = unpermute_rotary_rows(&data, heads, self.head_dim, cols);
        }
        Ok(HostTensor { shape, data })
    }

    fn contains(&self, name: &str) -> bool {
        self.gguf_name(name)
            .is_some_and(|g| self.file.tensor(&g).is_ok())
    }

    fn block_tensor_names(&self, block: usize) -> Vec<String> {
        let hf_of: BTreeMap<String, String> = BLOCK_TENSOR_NAMES
            .iter()
            .map(|names| format!("model.layers.{block}.{}", names.hf))
            .filter_map(|hf| self.gguf_name(&hf).map(|gguf| (gguf, hf)))
            .collect();
        let prefix = format!("blk.{block}.");
        self.file
            .tensors()
            .iter()
            .filter(|t| t.name.starts_with(&prefix))
            .map(|t| {
                hf_of
                    .get(&t.name)
                    .cloned()
                    .unwrap_or_else(|| t.name.clone())
            })
            .collect()
    }

    fn stored_names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.file
            .tensors()
            .iter()
            .filter(|t| t.name.starts_with(prefix))
            .map(|t| t.name.clone())
            .collect()
    }

    fn fingerprint(&self, config: &LlamaConfig) -> ModelFingerprint {
        let mut builder = fingerprint_builder(config);
        let mut infos: Vec<_> = self.file.tensors().iter().collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        for info in infos {
            let bytes = self.file.tensor_bytes(&info.name).unwrap_or(&[]);
            builder.add_tensor(
                &info.name,
                &info.shape_row_major(),
                &format!("{:?}", info.dtype),
                bytes,
            );
        }
        builder.finish()
    }
}

/// The `*.safetensors` files of a Hugging Face directory: the shards named by
/// `model.safetensors.index.json` when there is one, else every `*.safetensors` file; sorted
/// and deduplicated.
pub(crate) fn safetensors_shard_paths(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index_path = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index_path.exists() {
        let text = std::fs::read_to_string(&index_path).map_err(|source| ModelError::Io {
            path: index_path.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Safetensors {
                path: index_path.clone(),
                reason: e.to_string(),
            })?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::Safetensors {
                path: index_path.clone(),
                reason: "no weight_map object".into(),
            })?;
        let mut names: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| ModelError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        found.sort();
        found
    };
    Ok(files)
}

/// Weights from one or several Hugging Face `*.safetensors` files (memory-mapped).
pub struct SafetensorsWeights {
    /// (path, mmap) of each shard.
    shards: Vec<(PathBuf, Mmap)>,
    /// HF tensor name -> where it is. Each header is parsed once, at open: reading a
    /// tensor then costs no parsing (a file of many small tensors loads in linear time).
    index: BTreeMap<String, StoredTensor>,
}

/// A tensor's place in a shard, from the shard's validated header.
struct StoredTensor {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range in the shard file (header offsets plus the header's length).
    range: std::ops::Range<usize>,
}

impl SafetensorsWeights {
    /// Opens every `*.safetensors` file in `dir` (using `model.safetensors.index.json`
    /// when present to know the shards), validating each header.
    pub fn open_dir(dir: &Path) -> Result<Self, ModelError> {
        let files = safetensors_shard_paths(dir)?;
        if files.is_empty() {
            return Err(ModelError::Safetensors {
                path: dir.to_path_buf(),
                reason: "no *.safetensors file in the directory".into(),
            });
        }
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for path in files {
            let file = std::fs::File::open(&path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the file is opened read-only; pudding never writes to checkpoints.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            // `deserialize` validates the header against the file (offsets in bounds,
            // contiguous, sizes matching dtypes and shapes); the tensors' places are then
            // kept so that no later read parses the header again.
            SafeTensors::deserialize(&mmap).map_err(|e| ModelError::Safetensors {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&mmap).map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let stored = StoredTensor {
                    shard: shards.len(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    range: data_start + info.data_offsets.0..data_start + info.data_offsets.1,
                };
                if let Some(first) = index.insert(name.clone(), stored) {
                    let first: &(PathBuf, Mmap) = &shards[first.shard];
                    return Err(ModelError::Safetensors {
                        path: path.clone(),
                        reason: format!(
                            "tensor {name:?} is also in {}: which copy is meant is ambiguous",
                            first.0.display()
                        ),
                    });
                }
            }
            shards.push((path, mmap));
        }
        Ok(Self { shards, index })
    }

    /// Tensor `name`'s dtype, shape and stored bytes.
    fn view(&self, name: &str) -> Option<(Dtype, &[usize], &[u8])> {
        let stored = self.index.get(name)?;
        let (_, mmap) = &self.shards[stored.shard];
        Some((stored.dtype, &stored.shape, &mmap[stored.range.clone()]))
    }
}

fn convert_to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, ModelError> {
    let out = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(ModelError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    };
    Ok(out)
}

impl WeightSource for SafetensorsWeights {
    fn tensor(&self, name: &str) -> Result<HostTensor, ModelError> {
        let missing = || ModelError::MissingTensor {
            name: name.to_string(),
            arch: "llama-family".into(),
        };
        let (dtype, shape, bytes) = self.view(name).ok_or_else(missing)?;
        let data = convert_to_f32(name, dtype, bytes)?;
        Ok(HostTensor {
            shape: shape.to_vec(),
            data,
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn block_tensor_names(&self, block: usize) -> Vec<String> {
        self.stored_names_with_prefix(&format!("model.layers.{block}."))
    }

    fn stored_names_with_prefix(&self, prefix: &str) -> Vec<String> {
        names_with_prefix(&self.index, prefix)
    }

    fn fingerprint(&self, config: &LlamaConfig) -> ModelFingerprint {
        let mut builder = fingerprint_builder(config);
        for name in self.index.keys() {
            if let Some((dtype, shape, bytes)) = self.view(name) {
                builder.add_tensor(name, shape, &format!("{dtype:?}"), bytes);
            }
        }
        builder.finish()
    }
}

/// Where multimodal checkpoints keep their language model: (prefix standing for `model.`,
/// name of the output head). transformers 4.50-4.51 saved `language_model.model.*` and
/// `language_model.lm_head.weight`; from 4.52 on it saves `model.language_model.*` and
/// `lm_head.weight`.
const LANGUAGE_MODEL_LAYOUTS: [(&str, &str); 2] = [
    ("language_model.model.", "language_model.lm_head.weight"),
    ("model.language_model.", "lm_head.weight"),
];

/// The language model inside a multimodal checkpoint (Gemma 3 4B and up), served under the
/// text model's tensor names (`model.*`, `lm_head.weight`). The vision tower and the
/// projector are never read.
pub struct LanguageModelOf<W> {
    inner: W,
    /// The stored prefix that stands for `model.`.
    body: &'static str,
    /// The stored name of the output head (absent when the embeddings are tied).
    head: &'static str,
}

impl<W: WeightSource> LanguageModelOf<W> {
    /// Wraps `inner` when its embedding table is stored under one of the multimodal
    /// layouts; otherwise gives `inner` back unchanged (a text-only checkpoint).
    pub fn detect(inner: W) -> Result<Self, W> {
        let layout = LANGUAGE_MODEL_LAYOUTS
            .iter()
            .find(|(body, _)| inner.contains(&format!("{body}embed_tokens.weight")));
        match layout {
            Some(&(body, head)) => Ok(Self { inner, body, head }),
            None => Err(inner),
        }
    }

    /// The stored name of the text model's tensor `name` (`None`: not a text-model name).
    fn stored_name(&self, name: &str) -> Option<String> {
        match name.strip_prefix("model.") {
            Some(rest) => Some(format!("{}{rest}", self.body)),
            None => (name == "lm_head.weight").then(|| self.head.to_string()),
        }
    }
}

impl<W: WeightSource> WeightSource for LanguageModelOf<W> {
    fn quantized(&self, name: &str) -> Result<Option<QuantizedMatrix>, ModelError> {
        match self.stored_name(name) {
            Some(stored) => self.inner.quantized(&stored),
            None => Ok(None),
        }
    }

    fn tensor(&self, name: &str) -> Result<HostTensor, ModelError> {
        match self.stored_name(name) {
            Some(stored) => self.inner.tensor(&stored),
            None => Err(ModelError::MissingTensor {
                name: name.to_string(),
                arch: "the language model of a multimodal checkpoint".into(),
            }),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.stored_name(name)
            .is_some_and(|stored| self.inner.contains(&stored))
    }

    /// The inner source lists blocks under `model.layers.*`, not this layout's prefix, so
    /// the blocks are listed through the stored names.
    fn block_tensor_names(&self, block: usize) -> Vec<String> {
        let stored_prefix = format!("{}layers.{block}.", self.body);
        self.inner
            .stored_names_with_prefix(&stored_prefix)
            .into_iter()
            .map(|stored| match stored.strip_prefix(self.body) {
                Some(rest) => format!("model.{rest}"),
                None => stored,
            })
            .collect()
    }

    fn stored_names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.inner.stored_names_with_prefix(prefix)
    }

    /// The whole checkpoint's fingerprint (vision tower included, tensors under their
    /// stored names): the same language model saved text-only, or in the other layout,
    /// fingerprints differently, so a pool or router made on one is refused on the other.
    fn fingerprint(&self, config: &LlamaConfig) -> ModelFingerprint {
        self.inner.fingerprint(config)
    }
}

/// Hugging Face Gemma weights: Gemma's RMSNorm computes `x * (1 + w)` and its checkpoints
/// store `w`. This source adds the 1 to every norm weight (what llama.cpp's converter bakes
/// into a Gemma GGUF), so the model's plain `x * w` norm applies to either format.
pub struct UnitOffsetNorms<W> {
    inner: W,
}

impl<W: WeightSource> UnitOffsetNorms<W> {
    /// Wraps `inner`, a source of Gemma weights in the Hugging Face convention.
    pub fn new(inner: W) -> Self {
        Self { inner }
    }
}

/// Whether HF tensor `name` is an RMSNorm weight: a block norm (`*layernorm.weight`), a
/// per-head q/k norm or the final norm.
fn is_norm_weight(name: &str) -> bool {
    name == "model.norm.weight"
        || name.ends_with("layernorm.weight")
        || name.ends_with("self_attn.q_norm.weight")
        || name.ends_with("self_attn.k_norm.weight")
}

impl<W: WeightSource> WeightSource for UnitOffsetNorms<W> {
    fn quantized(&self, name: &str) -> Result<Option<QuantizedMatrix>, ModelError> {
        // Norm weights are vectors, never stored matrices: nothing to offset here.
        self.inner.quantized(name)
    }

    fn tensor(&self, name: &str) -> Result<HostTensor, ModelError> {
        let mut t = self.inner.tensor(name)?;
        if is_norm_weight(name) {
            t.data.iter_mut().for_each(|w| *w += 1.0);
        }
        Ok(t)
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }

    fn fingerprint(&self, config: &LlamaConfig) -> ModelFingerprint {
        self.inner.fingerprint(config)
    }

    fn block_tensor_names(&self, block: usize) -> Vec<String> {
        self.inner.block_tensor_names(block)
    }

    fn stored_names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.inner.stored_names_with_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory weight source: name -> one-element tensor holding `value`.
    struct Named(BTreeMap<String, f32>);

    impl WeightSource for Named {
        fn tensor(&self, name: &str) -> Result<HostTensor, ModelError> {
            let value = self.0.get(name).ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                arch: "test".into(),
            })?;
            Ok(HostTensor {
                shape: vec![1],
                data: vec![*value],
            })
        }

        fn contains(&self, name: &str) -> bool {
            self.0.contains_key(name)
        }

        fn fingerprint(&self, config: &LlamaConfig) -> ModelFingerprint {
            fingerprint_builder(config).finish()
        }

        fn block_tensor_names(&self, block: usize) -> Vec<String> {
            self.stored_names_with_prefix(&format!("model.layers.{block}."))
        }

        fn stored_names_with_prefix(&self, prefix: &str) -> Vec<String> {
            names_with_prefix(&self.0, prefix)
        }
    }

    fn named(names: &[&str]) -> Named {
        Named(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i as f32))
                .collect(),
        )
    }

    /// Both of transformers' multimodal layouts serve the text model's names, the untied
    /// output head included; a text-only checkpoint is given back unwrapped.
    #[test]
    fn multimodal_layouts_serve_the_text_model_names() {
        for (body, head) in LANGUAGE_MODEL_LAYOUTS {
            let stored = [
                format!("{body}embed_tokens.weight"),
                format!("{body}layers.3.self_attn.q_proj.weight"),
                format!("{body}norm.weight"),
                head.to_string(),
                "vision_tower.vision_model.post_layernorm.weight".to_string(),
            ];
            let stored: Vec<&str> = stored.iter().map(String::as_str).collect();
            let Ok(lm) = LanguageModelOf::detect(named(&stored)) else {
                panic!("{body}: not detected");
            };
            for (i, name) in [
                "model.embed_tokens.weight",
                "model.layers.3.self_attn.q_proj.weight",
                "model.norm.weight",
                "lm_head.weight",
            ]
            .into_iter()
            .enumerate()
            {
                assert!(lm.contains(name), "{body}: {name}");
                assert_eq!(lm.tensor(name).unwrap().data, [i as f32], "{body}: {name}");
            }
            assert!(!lm.contains("model.layers.4.self_attn.q_proj.weight"));
            assert!(!lm.contains("vision_tower.vision_model.post_layernorm.weight"));
        }
        let text_only = named(&["model.embed_tokens.weight", "lm_head.weight"]);
        assert!(LanguageModelOf::detect(text_only).is_err());
    }

    #[test]
    fn names_map_to_gguf() {
        assert_eq!(
            hf_to_gguf_name("model.layers.12.self_attn.k_proj.weight").as_deref(),
            Some("blk.12.attn_k.weight")
        );
        assert_eq!(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(hf_to_gguf_name("model.rotary.inv_freq"), None);
        // Gemma's four norms per block (llama.cpp's `gemma3` tensor names); a Llama has
        // only the first two.
        let gemma = |tail: &str, sandwich: bool| {
            hf_to_gguf_name_for(&format!("model.layers.3.{tail}"), sandwich)
        };
        let cases = [
            (
                "input_layernorm.weight",
                Some("attn_norm"),
                Some("attn_norm"),
            ),
            (
                "post_attention_layernorm.weight",
                Some("ffn_norm"),
                Some("post_attention_norm"),
            ),
            ("pre_feedforward_layernorm.weight", None, Some("ffn_norm")),
            (
                "post_feedforward_layernorm.weight",
                None,
                Some("post_ffw_norm"),
            ),
        ];
        for (tail, plain, sandwich) in cases {
            let want = |t: Option<&str>| t.map(|t| format!("blk.3.{t}.weight"));
            assert_eq!(gemma(tail, false), want(plain), "{tail}");
            assert_eq!(gemma(tail, true), want(sandwich), "{tail} (sandwich norms)");
        }
    }

    /// llama.cpp's converter: `w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2)`. Applying
    /// it and then [`unpermute_rotary_rows`] must give back the original rows.
    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, hd, cols) = (3, 8, 2);
        let hf: Vec<f32> = (0..heads * hd * cols).map(|v| v as f32).collect();
        let mut gguf = vec![0.0; hf.len()];
        for h in 0..heads {
            for two in 0..2 {
                for i in 0..hd / 2 {
                    let src = h * hd + two * (hd / 2) + i; // [h, two, i]
                    let dst = h * hd + i * 2 + two; // [h, i, two]
                    gguf[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        assert_eq!(unpermute_rotary_rows(&gguf, heads, hd, cols), hf);
    }
}
