//! Where the shards of a sharded job write (`--shard I/N`), and `pudding merge`, which
//! joins them into what one process writes.
//!
//! A shard of a job whose output is `OUT` writes `OUT` with the tag `shard-I-of-N` before
//! its extension: `eval/dense.json` -> `eval/dense.shard-0-of-4.json`, and a results
//! directory `eval/pool` -> `eval/pool.shard-0-of-4/`. The shards of one job are found
//! again from `OUT` alone, so a Slurm array's merge step needs only the job's `--out`.

use pudding_candidates::baselines::{merge_baseline_shards, BaselineShard};
use pudding_candidates::greedy::{merge_phase_shards, PhaseShard};
use pudding_candidates::pool::{merge_pool_shards, PoolShard};
use pudding_core::{io, CoreError, Shard};
use pudding_eval::merge::merge_shards;
use pudding_eval::runner::{EvalError, EvalReport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why shard outputs could not be found or joined.
#[derive(Debug, thiserror::Error)]
pub enum ShardMergeError {
    /// No shard output of the job was found next to its output path.
    #[error(
        "no shard outputs of {out} found (expected files or directories named like {example})"
    )]
    NoShards {
        /// The job's output.
        out: PathBuf,
        /// What the first shard's output would be called.
        example: PathBuf,
    },
    /// A shard directory lacks a results file that another has, or holds one the others lack.
    #[error("{dir} has no {file}, which other shards of the job have: that shard did not finish")]
    MissingFile {
        /// The shard directory.
        dir: PathBuf,
        /// The file missing from it.
        file: String,
    },
    /// Shard outputs of both kinds (files and directories) were given.
    #[error("shard outputs must be all results files or all results directories: {0} differs")]
    MixedKinds(PathBuf),
    /// Reading or writing failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The candidate-pool shards cannot be joined or the pool not written.
    #[error("{context}: {reason}")]
    Pool {
        /// Which output was being merged.
        context: String,
        /// Why.
        reason: String,
    },
    /// The labels shards cannot be joined.
    #[error("{context}: {source}")]
    Labels {
        /// Which output was being merged.
        context: String,
        /// Why.
        #[source]
        source: Box<pudding_router::RouterError>,
    },
    /// The shards' contents cannot be joined.
    #[error("{context}: {source}")]
    Eval {
        /// Which output was being merged.
        context: String,
        /// Why.
        #[source]
        source: Box<EvalError>,
    },
}

/// The output of `shard` for a job writing `out`: the tag goes before the `.json` or
/// `.jsonl` extension of a file name (`dense.json` -> `dense.shard-0-of-4.json`) and after
/// any other name
/// (a results directory `pool` -> `pool.shard-0-of-4`).
pub fn shard_path(out: &Path, shard: Shard) -> PathBuf {
    let name = out.file_name().map_or_else(
        || std::ffi::OsString::from("out"),
        std::ffi::OsStr::to_os_string,
    );
    let name = name.to_string_lossy();
    let tagged = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && (ext == "json" || ext == "jsonl") => {
            format!("{stem}.{}.{ext}", shard.tag())
        }
        _ => format!("{name}.{}", shard.tag()),
    };
    out.with_file_name(tagged)
}

/// The shard outputs of the job writing `out` that exist, found by name (any `N`; the
/// merge checks that they form one complete split).
pub fn find_shards(out: &Path) -> Result<Vec<PathBuf>, ShardMergeError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = shard_path(out, Shard { index: 0, count: 1 });
    let probe_name = probe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The name before and after the `shard-0-of-1` tag.
    let (prefix, suffix) = probe_name
        .split_once("shard-0-of-1")
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .unwrap_or_default();
    let mut found = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|source| CoreError::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| CoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(tag) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
        else {
            continue;
        };
        if let Some(shard) = Shard::from_tag(tag) {
            found.push((shard, entry.path()));
        }
    }
    if found.is_empty() {
        return Err(ShardMergeError::NoShards {
            out: out.to_path_buf(),
            example: shard_path(out, Shard { index: 0, count: 2 }),
        });
    }
    found.sort_by_key(|(s, _)| (s.count, s.index));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Joins the shard outputs `inputs` of one `pudding eval` or `pudding labels` into `out`,
/// written atomically: labels files (`.jsonl`) into one labels file, results files into
/// one file, results directories (several sets) file by file into a directory. Returns
/// the files written.
pub fn merge_outputs(out: &Path, inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ShardMergeError> {
    let is_labels = |p: &Path| p.extension().is_some_and(|e| e == "jsonl");
    if inputs.first().is_some_and(|p| is_labels(p)) {
        if let Some(other) = inputs.iter().find(|p| !is_labels(p)) {
            return Err(ShardMergeError::MixedKinds(other.clone()));
        }
        pudding_router::labels::merge_labels_shards(inputs, out).map_err(|source| {
            ShardMergeError::Labels {
                context: format!("merging into {}", out.display()),
                source: Box::new(source),
            }
        })?;
        return Ok(vec![out.to_path_buf()]);
    }
    merge_eval_outputs(out, inputs)
}

/// The results-file part of [`merge_outputs`].
fn merge_eval_outputs(out: &Path, inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ShardMergeError> {
    let Some(first) = inputs.first() else {
        return Err(ShardMergeError::NoShards {
            out: out.to_path_buf(),
            example: shard_path(out, Shard { index: 0, count: 2 }),
        });
    };
    if !first.is_dir() {
        if let Some(dir) = inputs.iter().find(|p| p.is_dir()) {
            return Err(ShardMergeError::MixedKinds(dir.clone()));
        }
        merge_files(out, inputs)?;
        return Ok(vec![out.to_path_buf()]);
    }
    if let Some(file) = inputs.iter().find(|p| !p.is_dir()) {
        return Err(ShardMergeError::MixedKinds(file.clone()));
    }
    // File name -> that file in every shard directory.
    let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for dir in inputs {
        for name in json_files(dir)? {
            by_name
                .entry(name.clone())
                .or_default()
                .push(dir.join(&name));
        }
    }
    for (name, paths) in &by_name {
        if paths.len() != inputs.len() {
            let dir = inputs
                .iter()
                .find(|d| !paths.contains(&d.join(name)))
                .expect("a directory lacks the file");
            return Err(ShardMergeError::MissingFile {
                dir: dir.clone(),
                file: name.clone(),
            });
        }
    }
    std::fs::create_dir_all(out).map_err(|source| CoreError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, paths) in &by_name {
        let target = out.join(name);
        merge_files(&target, paths)?;
        written.push(target);
    }
    Ok(written)
}

/// The `.json` file names in `dir`, sorted.
fn json_files(dir: &Path) -> Result<Vec<String>, CoreError> {
    let io_err = |source| CoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// What a shard file holds, told apart by its fields.
enum ShardFileKind {
    /// A candidate-pool shard (`pudding candidates --shard`).
    Pool,
    /// A share of one greedy phase's trials (`--step-shard`).
    Phase,
    /// A one-shot baseline's statistics (`pudding baseline --shard`).
    Baseline,
    /// Evaluation results (`pudding eval --shard`).
    Eval,
}

fn shard_file_kind(value: &serde_json::Value) -> ShardFileKind {
    let has = |key: &str| value.get(key).is_some();
    if has("job") && has("pool") {
        ShardFileKind::Pool
    } else if has("trials") && has("steps") {
        ShardFileKind::Phase
    } else if has("statistics") {
        ShardFileKind::Baseline
    } else {
        ShardFileKind::Eval
    }
}

/// Wraps a merge's error with what was being done to `out`.
fn merge_error<E: std::fmt::Display>(what: &str, out: &Path) -> impl FnOnce(E) -> ShardMergeError {
    let context = format!("{what} {}", out.display());
    move |e| ShardMergeError::Pool {
        context,
        reason: e.to_string(),
    }
}

/// Merges shard results files (or candidate-pool shards, with the pool's report and plot;
/// or a baseline's statistics into its pool; or one greedy phase's trials into the search's
/// checkpoint) into `out`.
fn merge_files(out: &Path, inputs: &[PathBuf]) -> Result<(), ShardMergeError> {
    let values: Vec<serde_json::Value> = inputs
        .iter()
        .map(|p| io::read_json(p))
        .collect::<Result<_, _>>()?;
    match shard_file_kind(&values[0]) {
        ShardFileKind::Pool => {
            let shards: Vec<PoolShard> = typed(values, inputs)?;
            let pool = merge_pool_shards(&shards).map_err(merge_error("merging into", out))?;
            crate::commands::save_pool_with_report(&pool, out)
                .map_err(merge_error("writing", out))?;
        }
        ShardFileKind::Baseline => {
            let shards: Vec<BaselineShard> = typed(values, inputs)?;
            let pool = merge_baseline_shards(&shards).map_err(merge_error("merging into", out))?;
            pool.save(out)?;
        }
        ShardFileKind::Phase => {
            let shards: Vec<PhaseShard> = typed(values, inputs)?;
            let merged = merge_phase_shards(&shards, out)
                .map_err(merge_error("merging a greedy phase into", out))?;
            println!(
                "phase {}/{}: block {} goes (loss {:.4})",
                merged.phase, merged.phases, merged.step.block, merged.step.loss
            );
            if merged.phase == merged.phases {
                println!(
                    "the search is complete: run its command once more without \
                     --step-shard to write its output from this checkpoint"
                );
            }
        }
        ShardFileKind::Eval => {
            let reports: Vec<EvalReport> = typed(values, inputs)?;
            let merged = merge_shards(&reports).map_err(|source| ShardMergeError::Eval {
                context: format!("merging into {}", out.display()),
                source: Box::new(source),
            })?;
            io::write_json_atomic(out, &merged)?;
        }
    }
    Ok(())
}

/// The shard files' JSON values as `T`, naming the file that is not one.
fn typed<T: serde::de::DeserializeOwned>(
    values: Vec<serde_json::Value>,
    inputs: &[PathBuf],
) -> Result<Vec<T>, ShardMergeError> {
    values
        .into_iter()
        .zip(inputs)
        .map(|(v, path)| {
            serde_json::from_value(v).map_err(|e| {
                ShardMergeError::Core(CoreError::Json {
                    path: path.clone(),
                    source: e,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_paths_tag_files_before_the_extension_and_directories_at_the_end() {
        let s = Shard::new(1, 4).unwrap();
        assert_eq!(
            shard_path(Path::new("eval/dense.json"), s),
            Path::new("eval/dense.shard-1-of-4.json")
        );
        assert_eq!(
            shard_path(Path::new("eval/pool"), s),
            Path::new("eval/pool.shard-1-of-4")
        );
        assert_eq!(
            shard_path(Path::new("labels.jsonl"), s),
            Path::new("labels.shard-1-of-4.jsonl")
        );
    }

    #[test]
    fn shards_are_found_by_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dense.json");
        for name in [
            "dense.shard-0-of-2.json",
            "dense.shard-1-of-2.json",
            "dense.shard-01-of-2.json", // not a tag this job writes
            "dense.shard-2-of-2.json",  // index out of range
            "other.shard-0-of-2.json",
            "dense.json",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let found = find_shards(&out).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["dense.shard-0-of-2.json", "dense.shard-1-of-2.json"]
        );
        assert!(matches!(
            find_shards(&dir.path().join("none.json")),
            Err(ShardMergeError::NoShards { .. })
        ));
    }
}
