//! Per-task prompt construction: lm-evaluation-harness 0.4 zero-shot templates applied to one
//! document (an OLMES request `doc` or a Hugging Face row).

use serde_json::{Map, Value};

use super::error::{DataError, RowLocation};
use super::text::{hellaswag_preprocess, hellaswag_query, py_lstrip, py_strip, winogrande_split};
use super::{DataForm, TaskName};

/// The lm-eval view of one document, before it is wrapped into a `TaskItem`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Built {
    pub contexts: Vec<String>,
    pub continuations: Vec<String>,
    pub choices: Vec<String>,
    pub gold: usize,
    pub prompt: String,
}

/// Typed field access on one document, with errors that carry the row location.
pub(crate) struct Row<'a> {
    pub doc: &'a Map<String, Value>,
    pub loc: &'a RowLocation,
    /// Prefix for field names in errors (`"doc."` for OLMES request lines).
    pub prefix: &'static str,
}

impl<'a> Row<'a> {
    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn missing(&self, field: &str) -> DataError {
        DataError::MissingField {
            location: self.loc.clone(),
            field: self.name(field),
        }
    }

    pub(crate) fn bad(&self, field: &str, problem: impl Into<String>) -> DataError {
        DataError::BadField {
            location: self.loc.clone(),
            field: self.name(field),
            problem: problem.into(),
        }
    }

    fn get(&self, field: &str) -> Result<&'a Value, DataError> {
        match self.doc.get(field) {
            None | Some(Value::Null) => Err(self.missing(field)),
            Some(v) => Ok(v),
        }
    }

    fn str(&self, field: &str) -> Result<&'a str, DataError> {
        self.get(field)?
            .as_str()
            .ok_or_else(|| self.bad(field, "is not a string"))
    }

    fn str_list_value(&self, field: &str, v: &'a Value) -> Result<Vec<String>, DataError> {
        let arr = v
            .as_array()
            .ok_or_else(|| self.bad(field, "is not a list"))?;
        arr.iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.bad(field, "has a non-string element"))
            })
            .collect()
    }

    fn str_list(&self, field: &str) -> Result<Vec<String>, DataError> {
        self.str_list_value(field, self.get(field)?)
    }

    /// `outer.inner` where `outer` is an object (a HF `Sequence` of a dict).
    fn nested_str_list(&self, outer: &str, inner: &str) -> Result<Vec<String>, DataError> {
        let obj = self
            .get(outer)?
            .as_object()
            .ok_or_else(|| self.bad(outer, "is not an object"))?;
        let path = format!("{outer}.{inner}");
        match obj.get(inner) {
            None | Some(Value::Null) => Err(self.missing(&path)),
            Some(v) => self.str_list_value(&path, v),
        }
    }

    /// An integer given as a JSON integer or a decimal string (Python `int(x)`).
    fn int_like(&self, field: &str) -> Result<i64, DataError> {
        match self.get(field)? {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| self.bad(field, format!("is not an integer: {n}"))),
            Value::String(s) => py_strip(s)
                .parse::<i64>()
                .map_err(|_| self.bad(field, format!("is not an integer: {s:?}"))),
            other => Err(self.bad(field, format!("is not an integer: {other}"))),
        }
    }

    fn gold(&self, gold: i64, num_choices: usize) -> Result<usize, DataError> {
        usize::try_from(gold)
            .ok()
            .filter(|&g| g < num_choices)
            .ok_or_else(|| DataError::GoldOutOfRange {
                location: self.loc.clone(),
                gold,
                num_choices,
            })
    }

    /// Strips a fixed OLMES template (`prefix{x}suffix`) from a field, returning `x`.
    fn untemplate(&self, field: &str, prefix: &str, suffix: &str) -> Result<&'a str, DataError> {
        let s = self.str(field)?;
        s.strip_prefix(prefix)
            .and_then(|x| x.strip_suffix(suffix))
            .ok_or_else(|| self.bad(field, format!("does not match {prefix:?}...{suffix:?}")))
    }
}

/// One shared context, continuation `" " + choice` per choice (lm-eval's default
/// `target_delimiter`).
fn shared(context: String, choices: Vec<String>, gold: usize) -> Built {
    Built {
        continuations: choices.iter().map(|c| format!(" {c}")).collect(),
        prompt: context.clone(),
        contexts: vec![context],
        choices,
        gold,
    }
}

const LETTERS: [&str; 5] = ["A", "B", "C", "D", "E"];

/// Builds the lm-eval zero-shot requests of one document.
pub(crate) fn build(task: TaskName, form: DataForm, row: &Row<'_>) -> Result<Built, DataError> {
    use DataForm::{HfArrow, OlmesRequests};
    match (task, form) {
        // arc_easy / arc_challenge: "Question: {{question}}\nAnswer:", choices.text,
        // target choices.label.index(answerKey).
        (TaskName::ArcEasy | TaskName::ArcChallenge, OlmesRequests) => {
            let question = row.untemplate("query", "Question: ", "\nAnswer:")?;
            let choices = row.str_list("choices")?;
            let gold = row.gold(row.int_like("gold")?, choices.len())?;
            Ok(shared(
                format!("Question: {question}\nAnswer:"),
                choices,
                gold,
            ))
        }
        (TaskName::ArcEasy | TaskName::ArcChallenge, HfArrow) => {
            let question = row.str("question")?;
            let choices = row.nested_str_list("choices", "text")?;
            let gold = label_index(row, "answerKey", row.str("answerKey")?, &choices)?;
            Ok(shared(
                format!("Question: {question}\nAnswer:"),
                choices,
                gold,
            ))
        }
        // openbookqa: context question_stem, choices.text,
        // target choices.label.index(answerKey.lstrip()).
        (TaskName::OpenBookQa, OlmesRequests) => {
            let stem = row.untemplate("query", "Question: ", "\nAnswer:")?;
            let choices = row.str_list("choices")?;
            let gold = row.gold(row.int_like("gold")?, choices.len())?;
            Ok(shared(stem.to_string(), choices, gold))
        }
        (TaskName::OpenBookQa, HfArrow) => {
            let stem = row.str("question_stem")?;
            let choices = row.nested_str_list("choices", "text")?;
            let key = py_lstrip(row.str("answerKey")?);
            let gold = label_index(row, "answerKey", key, &choices)?;
            Ok(shared(stem.to_string(), choices, gold))
        }
        // commonsense_qa: "Question: {{ question.strip() }}\nA. {{choices['text'][0]}}\n...
        // E. {{choices['text'][4]}}\nAnswer:", choices ['A'..'E'], target answerKey.
        (TaskName::CommonsenseQa, OlmesRequests) => {
            let question = row.untemplate("query", "Question: ", "\nAnswer:")?;
            let texts = row.str_list("choices")?;
            let gold = row.gold(row.int_like("gold")?, texts.len())?;
            csqa(row, question, &texts, gold)
        }
        (TaskName::CommonsenseQa, HfArrow) => {
            let question = row.str("question")?;
            let texts = row.nested_str_list("choices", "text")?;
            let key = row.str("answerKey")?;
            let gold = LETTERS
                .iter()
                .position(|l| *l == key)
                .ok_or_else(|| row.bad("answerKey", format!("{key:?} is not one of A-E")))?;
            csqa(row, question, &texts, gold)
        }
        // hellaswag: utils.process_docs (query/choices preprocessed), target int(label).
        (TaskName::HellaSwag, OlmesRequests) => {
            // OLMES applies the same preprocess() to the same raw fields; re-applying it would
            // not be a no-op (the double-space pass is not idempotent), so take them as is.
            let choices = row.str_list("choices")?;
            let gold = row.gold(row.int_like("gold")?, choices.len())?;
            Ok(shared(row.str("query")?.to_string(), choices, gold))
        }
        (TaskName::HellaSwag, HfArrow) => {
            let query = hellaswag_query(
                row.str("activity_label")?,
                row.str("ctx_a")?,
                row.str("ctx_b")?,
            );
            let choices: Vec<String> = row
                .str_list("endings")?
                .iter()
                .map(|e| hellaswag_preprocess(e))
                .collect();
            let gold = row.gold(row.int_like("label")?, choices.len())?;
            Ok(shared(query, choices, gold))
        }
        // piqa: "Question: {{goal}}\nAnswer:", [sol1, sol2], target label.
        (TaskName::Piqa, _) => {
            let choices = vec![row.str("sol1")?.to_string(), row.str("sol2")?.to_string()];
            let gold = row.gold(row.int_like("label")?, 2)?;
            Ok(shared(
                format!("Question: {}\nAnswer:", row.str("goal")?),
                choices,
                gold,
            ))
        }
        // social_iqa: "Q: {{context}} {{question}}\nA:", [answerA, answerB, answerC],
        // target (label|int) - 1.
        (TaskName::SocialIqa, _) => {
            let choices = ["answerA", "answerB", "answerC"]
                .iter()
                .map(|f| row.str(f).map(str::to_string))
                .collect::<Result<Vec<_>, _>>()?;
            let gold = row.gold(row.int_like("label")?.saturating_sub(1), 3)?;
            let context = format!("Q: {} {}\nA:", row.str("context")?, row.str("question")?);
            Ok(shared(context, choices, gold))
        }
        // sciq: "{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:",
        // [distractor1, distractor2, distractor3, correct_answer], target 3.
        (TaskName::SciQ, _) => {
            let choices = [
                "distractor1",
                "distractor2",
                "distractor3",
                "correct_answer",
            ]
            .iter()
            .map(|f| row.str(f).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
            let context = format!(
                "{}\nQuestion: {}\nAnswer:",
                py_lstrip(row.str("support")?),
                row.str("question")?
            );
            Ok(shared(context, choices, 3))
        }
        // winogrande (partial evaluation): one context per option, the same continuation.
        (TaskName::WinoGrande, _) => {
            let sentence = row.str("sentence")?;
            let (prefix, target) =
                winogrande_split(sentence).ok_or_else(|| DataError::NoBlank {
                    location: row.loc.clone(),
                    sentence: sentence.to_string(),
                })?;
            let contexts: Vec<String> = [row.str("option1")?, row.str("option2")?]
                .iter()
                .map(|opt| format!("{prefix}{opt}"))
                .collect();
            let gold = match row.str("answer")? {
                "1" => 0,
                "2" => 1,
                other => {
                    return Err(row.bad("answer", format!("is {other:?}, expected \"1\" or \"2\"")))
                }
            };
            Ok(Built {
                continuations: vec![format!(" {target}"); 2],
                // lm-eval's doc_to_choice for WinoGrande returns the partial contexts.
                choices: contexts.clone(),
                contexts,
                gold,
                prompt: sentence.to_string(),
            })
        }
        // boolq (SuperGLUE): "{{passage}}\nQuestion: {{question}}?\nAnswer:", ['no', 'yes'],
        // target label. OLMES `doc.query` is exactly that context; its choices are
        // ["yes", "no"] with `gold` indexing them.
        (TaskName::BoolQ, OlmesRequests) => {
            let query = row.str("query")?;
            let body = query
                .strip_suffix("?\nAnswer:")
                .ok_or_else(|| row.bad("query", "does not end with \"?\\nAnswer:\""))?;
            let (passage, question) = body
                .rsplit_once("\nQuestion: ")
                .ok_or_else(|| row.bad("query", "has no \"\\nQuestion: \""))?;
            let olmes_choices = row.str_list("choices")?;
            let olmes_gold = row.gold(row.int_like("gold")?, olmes_choices.len())?;
            let gold = match olmes_choices[olmes_gold].as_str() {
                "no" => 0,
                "yes" => 1,
                other => {
                    return Err(row.bad("choices", format!("gold choice {other:?} is not yes/no")))
                }
            };
            let context = format!("{passage}\nQuestion: {question}?\nAnswer:");
            Ok(shared(context, vec!["no".into(), "yes".into()], gold))
        }
        // mmlu (default): description "The following are multiple choice questions (with
        // answers) about {subject}.\n\n" + "{{question.strip()}}\nA. ..\nD. ..\nAnswer:",
        // choices ["A".."D"], target answer.
        (TaskName::Mmlu, HfArrow) => {
            let question = py_strip(row.str("question")?);
            let subject = row.str("subject")?;
            let texts = row.str_list("choices")?;
            if texts.len() != 4 {
                return Err(row.bad(
                    "choices",
                    format!("has {} entries, expected 4", texts.len()),
                ));
            }
            let gold = row.gold(row.int_like("answer")?, 4)?;
            let context = format!(
                "The following are multiple choice questions (with answers) about {}.\n\n\
                 {question}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
                subject.replace('_', " "),
                texts[0],
                texts[1],
                texts[2],
                texts[3]
            );
            let choices = LETTERS[..4].iter().map(|s| s.to_string()).collect();
            Ok(shared(context, choices, gold))
        }
        (TaskName::BoolQ, HfArrow) | (TaskName::Mmlu, OlmesRequests) => {
            unreachable!("form availability is checked before building")
        }
    }
}

fn label_index(
    row: &Row<'_>,
    field: &str,
    key: &str,
    texts: &[String],
) -> Result<usize, DataError> {
    let labels = row.nested_str_list("choices", "label")?;
    if labels.len() != texts.len() {
        return Err(row.bad("choices", "has different numbers of texts and labels"));
    }
    labels
        .iter()
        .position(|l| l == key)
        .ok_or_else(|| row.bad(field, format!("{key:?} is not among the labels {labels:?}")))
}

fn csqa(row: &Row<'_>, question: &str, texts: &[String], gold: usize) -> Result<Built, DataError> {
    if texts.len() != 5 {
        return Err(row.bad(
            "choices",
            format!("has {} entries, expected 5", texts.len()),
        ));
    }
    let context = format!(
        "Question: {}\nA. {}\nB. {}\nC. {}\nD. {}\nE. {}\nAnswer:",
        py_strip(question),
        texts[0],
        texts[1],
        texts[2],
        texts[3],
        texts[4]
    );
    Ok(shared(
        context,
        LETTERS.iter().map(|s| s.to_string()).collect(),
        gold,
    ))
}
