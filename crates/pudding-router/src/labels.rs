//! Router training labels: for each training prompt, the vector over the pool's candidates
//! of the mean per-token log-likelihood of the correct answer (raw, not normalised),
//! computed with the shared scorer. Written as JSON lines: a header line naming the pool,
//! then one row per prompt, appended as they are computed so a run can resume.

use crate::RouterError;
use pudding_core::{CandidatePool, SkippableLm};
use pudding_eval::runner::gold_mean_loglikelihoods;
use pudding_eval::tasks::TaskItem;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufRead, Read, Write};
use std::path::Path;

/// What text the router reads for a training row or at inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterInput {
    /// The prompt alone: the context the LLM will see, without any answer (deployment).
    Prompt,
    /// The reference code's input: the prompt followed by the first answer choice.
    PromptAndFirstChoice,
}

impl RouterInput {
    /// The router text of a task item.
    pub fn text(self, item: &TaskItem) -> String {
        item.router_text(self == RouterInput::PromptAndFirstChoice)
    }
}

/// The first line of a labels file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelsHeader {
    /// [`CandidatePool::id`] of the pool the labels are for.
    pub pool_id: String,
    /// Number of candidates (label length).
    pub n_candidates: usize,
    /// Router input mode.
    pub input: RouterInput,
    /// For one shard of a sharded run (`pudding labels --shard I/N`): which shard, of a
    /// job over how many rows. `pudding merge` joins the shards into the file one process
    /// writes (which has no such field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<LabelsShard>,
}

/// The shard a labels file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelsShard {
    /// Which shard (`I/N`).
    pub shard: pudding_core::Shard,
    /// Rows of the whole job (all shards together).
    pub job_rows: usize,
}

/// One training row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelRow {
    /// lm-eval task name.
    pub task: String,
    /// Document id.
    pub doc_id: usize,
    /// The router's input text.
    pub text: String,
    /// Mean per-token log-likelihood of the correct answer under each candidate.
    pub label: Vec<f32>,
}

/// A labels file in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Labels {
    /// The header.
    pub header: LabelsHeader,
    /// The rows, in file order.
    pub rows: Vec<LabelRow>,
}

/// The label of one item: mean per-token log-likelihood of its gold continuation under
/// each candidate.
pub fn item_label<L: SkippableLm>(
    lm: &L,
    pool: &CandidatePool,
    item: &TaskItem,
) -> Result<Vec<f32>, RouterError> {
    Ok(gold_mean_loglikelihoods(lm, pool, item)?
        .into_iter()
        .map(|v| v as f32)
        .collect())
}

/// Reads only the first line of a labels file, its header; errors when the file does not
/// start with one.
pub fn read_labels_header(path: &Path) -> Result<LabelsHeader, RouterError> {
    let file = std::fs::File::open(path).map_err(|source| pudding_core::CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let malformed = |reason: String| RouterError::Malformed {
        what: "labels file",
        path: path.display().to_string(),
        line: 1,
        reason: format!("{reason} (not a labels file: its first line must be the header)"),
    };
    // A header is a short line; a file whose first line runs on is not a labels file.
    let mut first = String::new();
    std::io::BufReader::new(file)
        .take(MAX_HEADER_BYTES)
        .read_line(&mut first)
        .map_err(|e| malformed(e.to_string()))?;
    serde_json::from_str(first.trim_end()).map_err(|e| malformed(e.to_string()))
}

/// The longest first line [`read_labels_header`] reads.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Reads a labels file (header + rows), with the line of any malformed row.
pub fn read_labels(path: &Path) -> Result<Labels, RouterError> {
    let file = std::fs::File::open(path).map_err(|source| pudding_core::CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let malformed = |line: usize, reason: String| RouterError::Malformed {
        what: "labels file",
        path: path.display().to_string(),
        line,
        reason,
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let header_text = lines
        .next()
        .ok_or_else(|| malformed(1, "empty file".into()))?
        .map_err(|e| malformed(1, e.to_string()))?;
    let header: LabelsHeader =
        serde_json::from_str(&header_text).map_err(|e| malformed(1, e.to_string()))?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| malformed(i + 2, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: LabelRow =
            serde_json::from_str(&line).map_err(|e| malformed(i + 2, e.to_string()))?;
        if row.label.len() != header.n_candidates || row.label.iter().any(|v| !v.is_finite()) {
            return Err(malformed(
                i + 2,
                format!("label must hold {} finite values", header.n_candidates),
            ));
        }
        rows.push(row);
    }
    Ok(Labels { header, rows })
}

/// Computes labels for `items` (tagged with their task name) into `out`, appending to an
/// existing file for the same pool and skipping rows already present. `progress(done,
/// total)` is called after each row.
pub fn generate_labels<L: SkippableLm>(
    lm: &L,
    pool: &CandidatePool,
    items: &[TaskItem],
    input: RouterInput,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Labels, RouterError> {
    generate_labels_shard(lm, pool, items, None, input, out, progress)
}

/// [`generate_labels`] for `shard` of `items` (by position, [`pudding_core::Shard`]):
/// `out` holds that shard's rows, its header records the shard, and
/// [`merge_labels_shards`] joins the shards into the file one process writes.
pub fn generate_labels_shard<L: SkippableLm>(
    lm: &L,
    pool: &CandidatePool,
    items: &[TaskItem],
    shard: Option<pudding_core::Shard>,
    input: RouterInput,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Labels, RouterError> {
    pool.check_model(lm.fingerprint())?;
    let header = LabelsHeader {
        pool_id: pool.id(),
        n_candidates: pool.len(),
        input,
        shard: shard.map(|shard| LabelsShard {
            shard,
            job_rows: items.len(),
        }),
    };
    let items = match shard {
        Some(shard) => &items[shard.range(items.len())],
        None => items,
    };
    let mut done: HashSet<(String, usize)> = HashSet::new();
    if out.exists() {
        // The header is checked before anything is cut: a file that is not a labels file
        // for this pool (a text file, the pool itself given as --out) is left untouched.
        if read_labels_header(out)? != header {
            return Err(RouterError::Mismatch(format!(
                "labels file {} was made for another pool or input mode",
                out.display()
            )));
        }
        drop_partial_last_line(out)?;
        let existing = read_labels(out)?;
        done.extend(existing.rows.iter().map(|r| (r.task.clone(), r.doc_id)));
    } else {
        let line =
            serde_json::to_string(&header).map_err(|e| RouterError::Invalid(e.to_string()))?;
        pudding_core::io::write_atomic(out, format!("{line}\n").as_bytes())?;
    }
    let io_err = |source| pudding_core::CoreError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(out)
        .map_err(io_err)?;
    let total = items.len();
    let mut count = done.len().min(total);
    progress(count, total);
    for item in items {
        let key = (item.task.name().to_string(), item.doc_id);
        if done.contains(&key) {
            continue;
        }
        let row = LabelRow {
            task: key.0.clone(),
            doc_id: item.doc_id,
            text: input.text(item),
            label: item_label(lm, pool, item)?,
        };
        // JSON has no NaN: such a row would be written as null and refused on every resume.
        if let Some(v) = row.label.iter().find(|v| !v.is_finite()) {
            return Err(RouterError::Invalid(format!(
                "{} item {}: label value {v} is not finite",
                row.task, row.doc_id
            )));
        }
        // One complete line per row, synced to disk: an interrupted run loses at most the
        // row being written, which the next run recomputes.
        let line = serde_json::to_string(&row).map_err(|e| RouterError::Invalid(e.to_string()))?;
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        done.insert(key);
        count += 1;
        progress(count, total);
    }
    read_labels(out)
}

/// Joins the labels files of every shard of one `pudding labels` run (any order) into
/// `out`, written atomically: the header without its shard, then each shard's rows in
/// shard order, their lines as the shards wrote them, which is the file one process
/// writes. Refuses shards of another pool, input or shard count, a missing or repeated
/// shard, an unfinished shard and a row in two shards. Returns the rows written.
pub fn merge_labels_shards(
    shards: &[std::path::PathBuf],
    out: &Path,
) -> Result<usize, RouterError> {
    let bad = |m: String| {
        Err(RouterError::Mismatch(format!(
            "cannot merge the labels shards: {m}"
        )))
    };
    let mut parts = Vec::with_capacity(shards.len());
    for path in shards {
        let labels = read_labels(path)?;
        let Some(info) = labels.header.shard else {
            return bad(format!("{} holds a whole run, not a shard", path.display()));
        };
        parts.push((info, path, labels));
    }
    let Some((first, _, first_labels)) = parts.first() else {
        return bad("no shard files given".into());
    };
    let (first, whole) = (
        *first,
        LabelsHeader {
            shard: None,
            ..first_labels.header.clone()
        },
    );
    for (info, path, labels) in &parts {
        if (LabelsHeader {
            shard: None,
            ..labels.header.clone()
        }) != whole
        {
            return bad(format!(
                "{} was made for another pool or input mode",
                path.display()
            ));
        }
        if info.shard.count != first.shard.count || info.job_rows != first.job_rows {
            return bad(format!(
                "{} is shard {} of a {}-row job, another is shard {} of a {}-row job",
                path.display(),
                info.shard,
                info.job_rows,
                first.shard,
                first.job_rows
            ));
        }
    }
    let indices: Vec<pudding_core::Shard> = parts.iter().map(|(info, _, _)| info.shard).collect();
    if let Err(e) = pudding_core::Shard::check_complete(&indices) {
        return bad(e.to_string());
    }
    parts.sort_by_key(|(info, _, _)| info.shard.index);
    let mut seen = HashSet::new();
    let mut text =
        serde_json::to_string(&whole).map_err(|e| RouterError::Invalid(e.to_string()))?;
    text.push('\n');
    let mut rows = 0;
    for (info, path, labels) in &parts {
        let want = info.shard.len_of(info.job_rows);
        if labels.rows.len() != want {
            return bad(format!(
                "{} holds {} of its {want} rows: that shard did not finish; rerun it",
                path.display(),
                labels.rows.len()
            ));
        }
        for row in &labels.rows {
            if !seen.insert((row.task.clone(), row.doc_id)) {
                return bad(format!(
                    "{} document {} is in two shards",
                    row.task, row.doc_id
                ));
            }
        }
        // The rows' lines as written (read_labels accepted every one of them).
        let body = std::fs::read_to_string(path).map_err(|source| pudding_core::CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        for line in body.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            text.push_str(line);
            text.push('\n');
        }
        rows += labels.rows.len();
    }
    pudding_core::io::write_atomic(out, text.as_bytes())?;
    Ok(rows)
}

/// An interrupted append can leave a last line without its newline, or (after a crash
/// before the data reached the disk) a last line that is not a row: cut it off so the row
/// is recomputed. Only the last line is treated so; damage earlier is reported by
/// [`read_labels`].
fn drop_partial_last_line(path: &Path) -> Result<(), RouterError> {
    let io_err = |source| pudding_core::CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io_err)?;
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let last = &body[start..];
    let complete = bytes.ends_with(b"\n");
    let is_row = start > 0
        && serde_json::from_slice::<LabelRow>(last)
            .is_ok_and(|row| row.label.iter().all(|v| v.is_finite()));
    // The header line (start == 0) is written atomically and never cut.
    if start == 0 || (complete && is_row) || last.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    pudding_core::io::write_atomic(path, &bytes[..start])?;
    Ok(())
}
