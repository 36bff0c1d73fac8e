//! Pruned copies of a checkpoint: the model with some blocks removed, written in the
//! input's format so that other engines (llama.cpp, transformers, vLLM) run it.
//!
//! - GGUF in, GGUF out: kept blocks renumbered `blk.0..`, tensors copied
//!   as stored (no re-quantisation), `<arch>.block_count` and every per-block metadata
//!   array cut to the kept blocks, Gemma 3's sliding-window pattern written per block, the
//!   tokenizer and chat template kept, and `general.pudding.*` keys naming what was removed
//!   from which model.
//! - Hugging Face directory in, directory out: safetensors (sharded as
//!   the input was), `config.json` with `num_hidden_layers`, `layer_types` and Qwen2's
//!   `max_window_layers` adjusted, every other top-level file (tokenizer, generation
//!   config) copied.
//!
//! Both refuse what would be wrong (an output that is the input, per-block metadata they
//! cannot adjust, a tensor of a block past the block count) and write atomically: a file
//! through a temporary file and a rename, a directory through a temporary directory.

use crate::config::LlamaConfig;
use crate::gguf::{GgufFile, GgufValue, GgufValueType, GgufWriter};
use crate::lm::Checkpoint;
use crate::weights::safetensors_shard_paths;
use crate::ModelError;
use pudding_core::{ModelFingerprint, OmissionSet};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// GGUF metadata key: the source model's block indices that the export removed (`u32`s).
pub const REMOVED_BLOCKS_KEY: &str = "general.pudding.removed_blocks";
/// GGUF metadata key: the source model's block count.
pub const SOURCE_BLOCK_COUNT_KEY: &str = "general.pudding.source_block_count";
/// GGUF metadata key: the source model's fingerprint ([`ModelFingerprint::short`]).
pub const SOURCE_MODEL_KEY: &str = "general.pudding.source_model";
/// GGUF metadata key: the source model's full fingerprint hash (hex SHA-256).
pub const SOURCE_HASH_KEY: &str = "general.pudding.source_hash";
/// `config.json` key of a Hugging Face export: what was removed from which model.
pub const HF_EXPORT_KEY: &str = "pudding_export";

/// Text-model block prefixes of Hugging Face checkpoints: text-only, and the language
/// model of a multimodal Gemma 3 in transformers' two layouts. A vision tower's layers
/// (`vision_tower....layers.N`) are not blocks of the decoder and are copied unchanged.
const HF_BLOCK_PREFIXES: [&str; 3] = [
    "model.layers.",
    "language_model.model.layers.",
    "model.language_model.layers.",
];

/// What an export wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportReport {
    /// The written file (GGUF) or directory (Hugging Face).
    pub out: PathBuf,
    /// The source model's identity.
    pub source: ModelFingerprint,
    /// Source block indices removed, increasing.
    pub removed: Vec<usize>,
    /// Blocks in the source model.
    pub n_blocks_in: usize,
    /// Blocks in the exported model.
    pub n_blocks_out: usize,
    /// Bytes of tensor data in the source (all tensors).
    pub tensor_bytes_in: u64,
    /// Bytes of tensor data in the export.
    pub tensor_bytes_out: u64,
    /// Bytes of the source's block tensors.
    pub block_bytes_in: u64,
    /// Bytes of the export's block tensors.
    pub block_bytes_out: u64,
    /// Size on disk of the source (the file, or the directory's top-level files).
    pub file_bytes_in: u64,
    /// Size on disk of the export.
    pub file_bytes_out: u64,
}

/// Writes `input` (a `.gguf` file or a Hugging Face directory) with the blocks of `removed`
/// taken out to `out`, in the input's format. `removed` must be a set for the input's
/// block count. Returns what was written. ([`ExportSource::open`] then
/// [`ExportSource::export`].)
pub fn export_pruned(
    input: &Path,
    removed: &OmissionSet,
    out: &Path,
) -> Result<ExportReport, ModelError> {
    ExportSource::open(input)?.export(removed, out)
}

/// A checkpoint opened for export: its configuration, tokenizer and fingerprint (hashed
/// once), so that a caller choosing the blocks (e.g. from a pool, checked against the
/// fingerprint) does not open and hash the model a second time.
pub struct ExportSource {
    path: PathBuf,
    checkpoint: Checkpoint,
    fingerprint: ModelFingerprint,
}

impl ExportSource {
    /// Opens the `.gguf` file or Hugging Face directory at `path` and fingerprints it.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let checkpoint = Checkpoint::open(path)?;
        let fingerprint = checkpoint.weights.fingerprint(&checkpoint.config);
        Ok(Self {
            path: path.to_path_buf(),
            checkpoint,
            fingerprint,
        })
    }

    /// The opened checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The source model's identity.
    pub fn fingerprint(&self) -> &ModelFingerprint {
        &self.fingerprint
    }

    /// Writes the model without `removed`'s blocks to `out`, in the source's format (see
    /// the module docs).
    pub fn export(&self, removed: &OmissionSet, out: &Path) -> Result<ExportReport, ModelError> {
        self.check(removed, out)?;
        if self.path.is_dir() {
            export_hf_dir(self, removed, out)
        } else {
            export_gguf(self, removed, out)
        }
    }

    fn config(&self) -> &LlamaConfig {
        &self.checkpoint.config
    }

    /// Checks `removed` against the source and refuses an output that is the input.
    fn check(&self, removed: &OmissionSet, out: &Path) -> Result<(), ModelError> {
        refuse_same_path(&self.path, out)?;
        let n_blocks = self.config().n_blocks;
        if removed.n_blocks() != n_blocks {
            return Err(export_error(format!(
                "the omission set is for a {}-block model; {} has {n_blocks} blocks",
                removed.n_blocks(),
                self.path.display(),
            )));
        }
        if removed.len() >= n_blocks {
            return Err(export_error("removing every block leaves no model".into()));
        }
        Ok(())
    }
}

fn export_error(reason: String) -> ModelError {
    ModelError::Export(reason)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory `out` lies in (`.` for a bare name) and its file name.
fn parent_and_name(out: &Path) -> Result<(&Path, &std::ffi::OsStr), ModelError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| export_error(format!("{} has no file name", out.display())))?;
    Ok((parent, name))
}

/// Errors when `out` names the input (or, for a directory, lies inside it).
fn refuse_same_path(input: &Path, out: &Path) -> Result<(), ModelError> {
    let input = input.canonicalize().map_err(io_error(input))?;
    let resolved_out = match out.canonicalize() {
        Ok(p) => p,
        // Not there yet: resolve its parent (which must exist) and append the name.
        Err(_) => {
            let (parent, name) = parent_and_name(out)?;
            parent.canonicalize().map_err(io_error(parent))?.join(name)
        }
    };
    if resolved_out == input || (input.is_dir() && resolved_out.starts_with(&input)) {
        return Err(export_error(format!(
            "the output {} would overwrite the input {}",
            out.display(),
            input.display()
        )));
    }
    Ok(())
}

/// The kept source blocks, in order; entry `j` is the source index of exported block `j`.
fn kept_blocks(removed: &OmissionSet) -> Vec<usize> {
    removed.kept().collect()
}

/// The new index of source block `block`, `None` when it is removed.
fn renumber(kept: &[usize], block: usize) -> Option<usize> {
    kept.binary_search(&block).ok()
}

/// Splits a GGUF tensor name `blk.N.rest` into `(N, rest)`.
fn gguf_block_of(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blk.")?;
    let (index, tail) = rest.split_once('.')?;
    Some((index.parse().ok()?, tail))
}

/// Writes a GGUF file with `removed`'s blocks taken out (see the module docs).
fn export_gguf(
    source: &ExportSource,
    removed: &OmissionSet,
    out: &Path,
) -> Result<ExportReport, ModelError> {
    let config = source.config();
    let input = source.path.as_path();
    let file = GgufFile::open(input)?;
    let arch = config.architecture.clone();
    let n_blocks = config.n_blocks;
    let kept = kept_blocks(removed);
    let block_count_key = format!("{arch}.block_count");
    let window_pattern_key = format!("{arch}.attention.sliding_window_pattern");

    let mut writer = GgufWriter::new();
    for (key, value) in file.metadata() {
        if key.starts_with("general.pudding.") {
            continue; // a previous export's note; this export writes its own.
        }
        let value = if *key == block_count_key {
            GgufValue::U32(kept.len() as u32)
        } else if key.starts_with(&format!("{arch}.")) {
            match value.as_array() {
                Some(items) if items.len() == n_blocks => GgufValue::Array(
                    value.array_element_type().unwrap_or(GgufValueType::U32),
                    kept.iter().map(|&b| items[b].clone()).collect(),
                ),
                Some(items) => {
                    return Err(export_error(format!(
                        "metadata {key} is an array of {} values for {n_blocks} blocks: \
                         pudding cannot tell how removing blocks changes it",
                        items.len()
                    )))
                }
                None => value.clone(),
            }
        } else {
            value.clone()
        };
        writer.add(key, value);
    }
    if config.features.sliding_window.is_some() {
        // llama.cpp derives the pattern from the block index unless it is stored; the kept
        // blocks no longer follow the period, so the export stores one flag per block.
        let flags: Vec<GgufValue> = kept
            .iter()
            .map(|&b| GgufValue::Bool(config.is_sliding(b)))
            .collect();
        writer.add(
            &window_pattern_key,
            GgufValue::Array(GgufValueType::Bool, flags),
        );
    }
    let removed_values: Vec<GgufValue> = removed
        .blocks()
        .iter()
        .map(|&b| GgufValue::U32(b as u32))
        .collect();
    writer
        .add(
            REMOVED_BLOCKS_KEY,
            GgufValue::Array(GgufValueType::U32, removed_values),
        )
        .add_u32(SOURCE_BLOCK_COUNT_KEY, n_blocks as u32)
        .add_string(SOURCE_MODEL_KEY, &source.fingerprint.short())
        .add_string(SOURCE_HASH_KEY, &source.fingerprint.hash);

    let mut sizes = TensorSizes::default();
    for info in file.tensors() {
        let bytes = info.n_bytes();
        let block = gguf_block_of(&info.name);
        sizes.count_in(bytes, block.is_some());
        let name = match block {
            Some((b, _)) if b >= n_blocks => {
                return Err(export_error(format!(
                    "tensor {} belongs to block {b}, past the model's {n_blocks} blocks",
                    info.name
                )))
            }
            Some((b, tail)) => match renumber(&kept, b) {
                Some(new) => format!("blk.{new}.{tail}"),
                None => continue,
            },
            None => info.name.clone(),
        };
        sizes.count_out(bytes, block.is_some());
        writer.add_tensor_bytes(
            &name,
            &info.dims,
            info.dtype,
            file.tensor_bytes_shared(&info.name)?,
        )?;
    }
    writer.write_to(out)?;
    sizes.report(source, removed, out)
}

/// Tensor bytes counted on the way through an export.
#[derive(Default)]
struct TensorSizes {
    all_in: u64,
    all_out: u64,
    blocks_in: u64,
    blocks_out: u64,
}

impl TensorSizes {
    fn count_in(&mut self, bytes: u64, in_block: bool) {
        self.all_in += bytes;
        if in_block {
            self.blocks_in += bytes;
        }
    }

    fn count_out(&mut self, bytes: u64, in_block: bool) {
        self.all_out += bytes;
        if in_block {
            self.blocks_out += bytes;
        }
    }

    /// The report of an export of `source` without `removed`, written to `out`.
    fn report(
        self,
        source: &ExportSource,
        removed: &OmissionSet,
        out: &Path,
    ) -> Result<ExportReport, ModelError> {
        Ok(ExportReport {
            out: out.to_path_buf(),
            source: source.fingerprint.clone(),
            removed: removed.blocks().to_vec(),
            n_blocks_in: removed.n_blocks(),
            n_blocks_out: removed.n_blocks() - removed.len(),
            tensor_bytes_in: self.all_in,
            tensor_bytes_out: self.all_out,
            block_bytes_in: self.blocks_in,
            block_bytes_out: self.blocks_out,
            file_bytes_in: file_size(&source.path)?,
            file_bytes_out: file_size(out)?,
        })
    }
}

/// A file's size, or the summed sizes of a directory's top-level files.
fn file_size(path: &Path) -> Result<u64, ModelError> {
    let meta = std::fs::metadata(path).map_err(io_error(path))?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).map_err(io_error(path))? {
        let meta = entry
            .map_err(io_error(path))?
            .metadata()
            .map_err(io_error(path))?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Splits a Hugging Face tensor name of a decoder block into (prefix, block, rest).
fn hf_block_of(name: &str) -> Option<(&'static str, usize, &str)> {
    HF_BLOCK_PREFIXES.iter().find_map(|&prefix| {
        let rest = name.strip_prefix(prefix)?;
        let (index, tail) = rest.split_once('.')?;
        Some((prefix, index.parse().ok()?, tail))
    })
}

/// Adjusts the decoder's configuration (`config.json`, or its `text_config`) to the kept
/// blocks.
fn prune_hf_config(
    text: &mut serde_json::Map<String, serde_json::Value>,
    config: &LlamaConfig,
    kept: &[usize],
) -> Result<(), ModelError> {
    let n_blocks = config.n_blocks;
    text.insert("num_hidden_layers".into(), kept.len().into());
    match text.get("layer_types") {
        Some(serde_json::Value::Array(types)) if types.len() == n_blocks => {
            let pruned: Vec<serde_json::Value> = kept.iter().map(|&b| types[b].clone()).collect();
            text.insert("layer_types".into(), pruned.into());
        }
        Some(serde_json::Value::Null) | None => {}
        Some(other) => {
            return Err(export_error(format!(
                "config.json layer_types ({other}) does not list {n_blocks} layers"
            )))
        }
    }
    if config.features.sliding_window.is_some() {
        // The kept blocks no longer follow the period of `sliding_window_pattern`, so each
        // block's kind is written out (transformers reads `layer_types` first).
        let types: Vec<serde_json::Value> = kept
            .iter()
            .map(|&b| {
                if config.is_sliding(b) {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
                .into()
            })
            .collect();
        text.insert("layer_types".into(), types.into());
    }
    // Qwen2: blocks below `max_window_layers` attend globally; count the kept ones.
    if let Some(value) = text.get("max_window_layers") {
        let limit = value.as_u64().ok_or_else(|| {
            export_error(format!(
                "config.json max_window_layers ({value}) is not a count"
            ))
        })? as usize;
        let below = kept.iter().filter(|&&b| b < limit).count();
        text.insert("max_window_layers".into(), below.into());
    }
    Ok(())
}

/// Writes a Hugging Face directory with `removed`'s blocks taken out (see the module
/// docs). `out` must not exist, or be an empty directory.
fn export_hf_dir(
    source: &ExportSource,
    removed: &OmissionSet,
    out: &Path,
) -> Result<ExportReport, ModelError> {
    let config = source.config();
    let input = source.path.as_path();
    if out.exists() {
        let empty_dir = out.is_dir()
            && std::fs::read_dir(out)
                .map_err(io_error(out))?
                .next()
                .is_none();
        if !empty_dir {
            return Err(export_error(format!(
                "{} exists; a Hugging Face export writes a new directory",
                out.display()
            )));
        }
    }
    let kept = kept_blocks(removed);
    let config_path = input.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(io_error(&config_path))?;
    let mut config_json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
    {
        let root = config_json
            .as_object_mut()
            .ok_or_else(|| ModelError::Config("config.json is not an object".into()))?;
        let text_config = match root.get("text_config") {
            Some(serde_json::Value::Object(_)) => root
                .get_mut("text_config")
                .and_then(serde_json::Value::as_object_mut)
                .expect("checked just above"),
            _ => root,
        };
        prune_hf_config(text_config, config, &kept)?;
    }
    config_json[HF_EXPORT_KEY] = serde_json::json!({
        "removed_blocks": removed.blocks(),
        "source_num_hidden_layers": config.n_blocks,
        "source_model": source.fingerprint.short(),
        "source_hash": source.fingerprint.hash,
    });

    let staging = TempDir::beside(out)?;
    let mut sizes = TensorSizes::default();
    write_pruned_safetensors(input, &kept, config.n_blocks, staging.path(), &mut sizes)?;
    let config_text = serde_json::to_string_pretty(&config_json)
        .map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
    let staged_config = staging.path().join("config.json");
    std::fs::write(&staged_config, config_text + "\n").map_err(io_error(&staged_config))?;
    copy_other_files(input, staging.path())?;
    staging.publish(out)?;
    sizes.report(source, removed, out)
}

/// One output tensor: its name and the input view its bytes come from.
type OutTensor<'a> = (String, TensorView<'a>);

/// Copies every tensor of the input's shards into `dir`, blocks renumbered and removed
/// blocks left out: one `model.safetensors` for a single-file input, else shards of at
/// most the largest input shard's size with a `model.safetensors.index.json`.
fn write_pruned_safetensors(
    input: &Path,
    kept: &[usize],
    n_blocks: usize,
    dir: &Path,
    sizes: &mut TensorSizes,
) -> Result<(), ModelError> {
    let shard_paths = safetensors_shard_paths(input)?;
    let mut maps = Vec::with_capacity(shard_paths.len());
    for path in &shard_paths {
        let file = std::fs::File::open(path).map_err(io_error(path))?;
        // SAFETY: read-only map of a checkpoint file that pudding never writes.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error(path))?;
        maps.push(map);
    }
    let mut metadata: Option<HashMap<String, String>> = None;
    let mut tensors: Vec<OutTensor<'_>> = Vec::new();
    let mut largest_shard = 0u64;
    for (path, map) in shard_paths.iter().zip(&maps) {
        let bad = |reason: String| ModelError::Safetensors {
            path: path.clone(),
            reason,
        };
        let (_, header) = SafeTensors::read_metadata(map).map_err(|e| bad(e.to_string()))?;
        if metadata.is_none() {
            metadata = header.metadata().clone();
        }
        let parsed = SafeTensors::deserialize(map).map_err(|e| bad(e.to_string()))?;
        // File order (by data offset), so shards fill as the input's did.
        let mut shard_tensors = Vec::new();
        for name in header.offset_keys() {
            let view = parsed.tensor(&name).map_err(|e| bad(e.to_string()))?;
            shard_tensors.push((name, view));
        }
        largest_shard = largest_shard.max(map.len() as u64);
        for (name, view) in shard_tensors {
            let bytes = view.data().len() as u64;
            let block = hf_block_of(&name);
            sizes.count_in(bytes, block.is_some());
            let new_name = match block {
                Some((_, b, _)) if b >= n_blocks => {
                    return Err(bad(format!(
                        "tensor {name} belongs to block {b}, past the model's {n_blocks} blocks"
                    )))
                }
                Some((prefix, b, tail)) => match renumber(kept, b) {
                    Some(new) => format!("{prefix}{new}.{tail}"),
                    None => continue,
                },
                None => name.clone(),
            };
            sizes.count_out(bytes, block.is_some());
            tensors.push((new_name, view));
        }
    }
    if shard_paths.len() <= 1 {
        let path = dir.join("model.safetensors");
        return safetensors::serialize_to_file(tensors, metadata, &path).map_err(|e| {
            ModelError::Safetensors {
                path,
                reason: e.to_string(),
            }
        });
    }
    let mut shards: Vec<Vec<OutTensor<'_>>> = vec![Vec::new()];
    let mut shard_bytes = 0u64;
    for tensor in tensors {
        let bytes = tensor.1.data().len() as u64;
        if shard_bytes > 0 && shard_bytes + bytes > largest_shard {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shard_bytes += bytes;
        shards.last_mut().expect("never empty").push(tensor);
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total_size = 0u64;
    for (i, shard) in shards.into_iter().enumerate() {
        let file_name = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        for (name, view) in &shard {
            weight_map.insert(name.clone(), file_name.clone().into());
            total_size += view.data().len() as u64;
        }
        let path = dir.join(&file_name);
        safetensors::serialize_to_file(shard, metadata.clone(), &path).map_err(|e| {
            ModelError::Safetensors {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
    }
    let index = serde_json::json!({
        "metadata": { "total_size": total_size },
        "weight_map": weight_map,
    });
    let index_path = dir.join("model.safetensors.index.json");
    std::fs::write(&index_path, format!("{index:#}\n")).map_err(io_error(&index_path))
}

/// Copies the input directory's other top-level files (tokenizer, tokenizer and generation
/// configs, chat template) into `dir`; the weights and `config.json` are written anew.
fn copy_other_files(input: &Path, dir: &Path) -> Result<(), ModelError> {
    for entry in std::fs::read_dir(input).map_err(io_error(input))? {
        let entry = entry.map_err(io_error(input))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let weights = name.ends_with(".safetensors") || name == "model.safetensors.index.json";
        if weights || name == "config.json" || name.starts_with('.') || !path.is_file() {
            continue;
        }
        let target = dir.join(entry.file_name());
        std::fs::copy(&path, &target).map_err(io_error(&path))?;
    }
    Ok(())
}

/// A directory written beside its final place and renamed into it when complete; removed
/// if dropped before [`TempDir::publish`].
struct TempDir {
    path: Option<PathBuf>,
}

impl TempDir {
    fn beside(out: &Path) -> Result<TempDir, ModelError> {
        let (parent, name) = parent_and_name(out)?;
        let path = parent.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
        }
        std::fs::create_dir(&path).map_err(io_error(&path))?;
        Ok(TempDir { path: Some(path) })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().expect("present until published")
    }

    fn publish(mut self, out: &Path) -> Result<(), ModelError> {
        let path = self.path.take().expect("present until published");
        // An empty directory at `out` (checked by the caller) gives way to the new one.
        if out.is_dir() {
            std::fs::remove_dir(out).map_err(io_error(out))?;
        }
        std::fs::rename(&path, out).map_err(|source| {
            let _ = std::fs::remove_dir_all(&path);
            ModelError::Io {
                path: out.to_path_buf(),
                source,
            }
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_split_and_renumber() {
        assert_eq!(
            gguf_block_of("blk.12.attn_q.weight"),
            Some((12, "attn_q.weight"))
        );
        assert_eq!(gguf_block_of("token_embd.weight"), None);
        assert_eq!(gguf_block_of("blk.x.attn_q.weight"), None);
        assert_eq!(
            hf_block_of("model.language_model.layers.3.mlp.up_proj.weight"),
            Some(("model.language_model.layers.", 3, "mlp.up_proj.weight"))
        );
        assert_eq!(
            hf_block_of("vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight"),
            None
        );
        let kept = [0, 2, 5];
        assert_eq!(renumber(&kept, 5), Some(2));
        assert_eq!(renumber(&kept, 1), None);
    }

    #[test]
    fn qwen2_window_layers_count_the_kept_blocks() {
        let mut text = serde_json::json!({"max_window_layers": 3, "num_hidden_layers": 6})
            .as_object()
            .unwrap()
            .clone();
        let config = LlamaConfig {
            n_blocks: 6,
            ..LlamaConfig::smollm2_135m_shape(64)
        };
        prune_hf_config(&mut text, &config, &[0, 2, 4, 5]).unwrap();
        assert_eq!(text["max_window_layers"], 2);
        assert_eq!(text["num_hidden_layers"], 4);
    }
}
