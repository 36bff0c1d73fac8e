//! Download-free speed benchmark on a model with random weights of a real shape.
//!
//! ```text
//! cargo run --release --example gpu_bench --features cuda -- --shape llama3.1-8b --dtype bf16
//! cargo run --release --example gpu_bench -- --shape smollm2 --repeats 3      # CPU
//! ```
//!
//! Measures prefill 128/256/512 and prompt 128 + generate 128, dense vs 7 blocks skipped
//! (medians over repeats, ratio to the ideal), and batched vs one-by-one generation; writes
//! JSON + Markdown. The model needs about 16 GB (bf16) at the Llama-3.1-8B shape.

use clap::Parser;
use pudding_cli::backend::{self, Backend};
use pudding_cli::shape_bench::{
    random_model, run_shape_bench, shape_bench_markdown, spread_skip, ShapeBenchConfig,
};
use pudding_core::io::write_atomic;
use pudding_core::OmissionSet;
use pudding_models::LlamaConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Speed benchmark on a random-weight model of a real shape")]
struct Args {
    /// `llama3.1-8b` or `smollm2`.
    #[arg(long, default_value = "llama3.1-8b")]
    shape: String,
    /// `f32`, `f16` or `bf16` (half precision needs a GPU backend that supports it).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Number of blocks skipped (spread over the middle-to-late blocks) ...
    #[arg(long, default_value_t = 7)]
    skip_count: usize,
    /// ... or the exact blocks to skip, e.g. "10-16".
    #[arg(long)]
    skip: Option<String>,
    /// Prefill lengths, comma-separated.
    #[arg(long, default_value = "128,256,512")]
    prefill: String,
    /// Prompt length of the generation workloads.
    #[arg(long, default_value_t = 128)]
    prompt: usize,
    /// Tokens generated after the prompt (0: skip the workload).
    #[arg(long, default_value_t = 128)]
    generate: usize,
    /// Prompts generated as one batch vs one by one (0 or 1: skip the workload).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens generated per prompt in the batched workload.
    #[arg(long, default_value_t = 32)]
    batch_generate: usize,
    /// Timed repeats per workload (after a warm-up).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// The GPU: the CUDA device index (`--features cuda`) or the n-th discrete GPU
    /// (`--features wgpu`); default: the backend's default device.
    #[arg(long, value_name = "INDEX")]
    device: Option<usize>,
    /// Write the JSON report here (and the Markdown next to it, `.md`).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let prefill: Vec<usize> = args
        .prefill
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let longest = prefill
        .iter()
        .copied()
        .chain([args.prompt + args.generate.max(args.batch_generate)])
        .max()
        .unwrap_or(1024);
    let context = longest.next_power_of_two().max(1024);
    let config = match args.shape.as_str() {
        "llama3.1-8b" | "llama-3.1-8b" => LlamaConfig::llama31_8b_shape(context),
        "smollm2" | "smollm2-135m" => LlamaConfig::smollm2_135m_shape(context),
        other => return Err(format!("unknown shape {other:?}: llama3.1-8b or smollm2").into()),
    };
    let device = backend::start(args.device)?;
    backend::set_float_dtype(&args.dtype)?;
    let skip = match &args.skip {
        Some(text) => OmissionSet::parse(text, config.n_blocks)?,
        None => spread_skip(config.n_blocks, args.skip_count)?,
    };
    eprintln!(
        "building a random {} model ({}, {}) ...",
        args.shape,
        args.dtype,
        backend::NAME
    );
    let model = random_model::<Backend>(&config, &device)?;
    let cfg = ShapeBenchConfig {
        prefill_lengths: prefill,
        prompt_len: args.prompt,
        generate: args.generate,
        batch: args.batch,
        batch_generate: args.batch_generate,
        repeats: args.repeats,
    };
    let report = run_shape_bench(&model, &args.shape, &args.dtype, &skip, &cfg, backend::NAME)?;
    let markdown = shape_bench_markdown(&report);
    println!("{markdown}");
    if let Some(out) = args.out {
        write_atomic(&out, serde_json::to_string_pretty(&report)?.as_bytes())?;
        write_atomic(&out.with_extension("md"), markdown.as_bytes())?;
        eprintln!("wrote {} (+ .md)", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
