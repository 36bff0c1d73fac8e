//! `pudding export`: which omission set to take out (given, a pool's candidate, or the
//! candidate a labels file prefers for a task), then [`pudding_models::export`].

use pudding_core::{CandidatePool, OmissionSet};
use pudding_models::export::{ExportReport, ExportSource};
use pudding_models::ModelError;
use pudding_router::labels::read_labels;
use std::path::{Path, PathBuf};

/// How the command names the blocks to remove.
#[derive(Clone, Debug)]
pub enum ExportSelection {
    /// Blocks given on the command line (`"3,7,19"`, `"10-15"`).
    Skip(String),
    /// Candidate `index` of a pool.
    Candidate {
        /// The pool file.
        pool: PathBuf,
        /// 0-based index into the pool.
        index: usize,
    },
    /// The candidate whose mean label (gold-answer log-likelihood) over `task`'s rows of a
    /// labels file is highest: what the router's training data prefer for that task.
    Task {
        /// The pool file.
        pool: PathBuf,
        /// The labels file made for that pool (`pudding labels`).
        labels: PathBuf,
        /// lm-eval task name, e.g. `arc_easy`.
        task: String,
    },
}

/// Why the selection could not be turned into an omission set.
#[derive(Debug, thiserror::Error)]
pub enum ExportCommandError {
    /// The model, the set, or the export itself.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The pool or labels file.
    #[error(transparent)]
    Router(#[from] pudding_router::RouterError),
    /// A pool or labels file that does not fit this model or each other.
    #[error("{0}")]
    Selection(String),
}

impl From<pudding_core::CoreError> for ExportCommandError {
    fn from(e: pudding_core::CoreError) -> Self {
        ExportCommandError::Model(e.into())
    }
}

/// Resolves `selection` against the checkpoint at `model` and writes the pruned copy to
/// `out`; returns the set removed and what was written.
pub fn export_command(
    model: &Path,
    selection: &ExportSelection,
    out: &Path,
) -> Result<(OmissionSet, ExportReport), ExportCommandError> {
    // Opened and fingerprinted once: for the pool checks and for the export.
    let source = ExportSource::open(model)?;
    let n_blocks = source.checkpoint().config.n_blocks;
    let set = match selection {
        ExportSelection::Skip(text) => OmissionSet::parse(text, n_blocks)?,
        ExportSelection::Candidate { pool, index } => {
            let pool = load_pool_for(pool, &source)?;
            pool.candidates
                .get(*index)
                .map(|c| c.set.clone())
                .ok_or_else(|| {
                    ExportCommandError::Selection(format!(
                        "candidate {index} is out of range: the pool has {} candidates",
                        pool.len()
                    ))
                })?
        }
        ExportSelection::Task { pool, labels, task } => {
            let pool = load_pool_for(pool, &source)?;
            let index = preferred_candidate(&pool, labels, task)?;
            pool.candidates[index].set.clone()
        }
    };
    let report = source.export(&set, out)?;
    Ok((set, report))
}

fn load_pool_for(path: &Path, source: &ExportSource) -> Result<CandidatePool, ExportCommandError> {
    let pool = CandidatePool::load(path)?;
    pool.check_model(source.fingerprint())?;
    Ok(pool)
}

/// The index of the candidate with the highest mean label over `task`'s rows.
fn preferred_candidate(
    pool: &CandidatePool,
    labels: &Path,
    task: &str,
) -> Result<usize, ExportCommandError> {
    let labels_file = read_labels(labels)?;
    if labels_file.header.pool_id != pool.id() || labels_file.header.n_candidates != pool.len() {
        return Err(ExportCommandError::Selection(format!(
            "{} was labelled for another pool (pool id {}), not this one ({})",
            labels.display(),
            labels_file.header.pool_id,
            pool.id()
        )));
    }
    let rows: Vec<_> = labels_file.rows.iter().filter(|r| r.task == task).collect();
    if rows.is_empty() {
        let mut tasks: Vec<&str> = labels_file.rows.iter().map(|r| r.task.as_str()).collect();
        tasks.sort_unstable();
        tasks.dedup();
        return Err(ExportCommandError::Selection(format!(
            "{} has no rows of task {task:?} (it has: {})",
            labels.display(),
            tasks.join(", ")
        )));
    }
    let mut sums = vec![0f64; pool.len()];
    for row in &rows {
        for (sum, &v) in sums.iter_mut().zip(&row.label) {
            *sum += f64::from(v);
        }
    }
    // Ties go to the lower index (the pool's order), deterministically.
    let best = (0..sums.len()).fold(0, |best, i| if sums[i] > sums[best] { i } else { best });
    Ok(best)
}

/// The report as the command prints it.
pub fn describe(set: &OmissionSet, report: &ExportReport) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "wrote {}\n  source: {} ({} blocks)\n  removed blocks: {} -> {} blocks\n  \
         file: {:.1} MiB -> {:.1} MiB ({:.1} % smaller)\n  \
         block tensors: {:.1} MiB -> {:.1} MiB ({:.1} % smaller)",
        report.out.display(),
        report.source,
        report.n_blocks_in,
        set,
        report.n_blocks_out,
        mib(report.file_bytes_in),
        mib(report.file_bytes_out),
        percent_smaller(report.file_bytes_in, report.file_bytes_out),
        mib(report.block_bytes_in),
        mib(report.block_bytes_out),
        percent_smaller(report.block_bytes_in, report.block_bytes_out),
    )
}

fn percent_smaller(before: u64, after: u64) -> f64 {
    if before == 0 {
        0.0
    } else {
        100.0 * (1.0 - after as f64 / before as f64)
    }
}
