//! The main job: fetch the default model if needed, then answer one prompt with the dense
//! model and with a set of blocks skipped, printing both answers and their speed.
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart -- --prompt "Why is the sky blue?" --skip 3,12,16,17,18,26
//! ```

use pudding_cli::backend::{self, Backend};
use pudding_cli::commands::{generate_text, speed_line};
use pudding_cli::resolve_model;
use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::{LlamaLm, ModelError};
use std::path::PathBuf;
use std::process::ExitCode;

/// Blocks skipped when `--skip` is not given: the first three blocks an SLEB-style greedy
/// search removes from SmolLM2-135M-Instruct (mean token NLL on short calibration texts;
/// see docs/benchmarks.md). Six (`3,12,16,17,18,26`) already damages answers visibly.
const DEFAULT_SKIP: &str = "12,16,17";

struct Args {
    prompt: String,
    skip: String,
    max_tokens: usize,
    model: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        prompt: "What is the capital of France? Answer in one sentence.".into(),
        skip: DEFAULT_SKIP.into(),
        max_tokens: 48,
        model: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--prompt" => args.prompt = value()?,
            "--skip" => args.skip = value()?,
            "--max-tokens" => {
                args.max_tokens = value()?
                    .parse()
                    .map_err(|_| "--max-tokens takes a number")?
            }
            "--model" => args.model = Some(PathBuf::from(value()?)),
            other => {
                return Err(format!(
                    "unknown argument {other}; use --prompt, --skip, --max-tokens, --model"
                ))
            }
        }
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), ModelError> {
    let path = resolve_model(args.model)?;
    println!("model: {} (backend: {})", path.display(), backend::NAME);
    let lm = LlamaLm::<Backend>::load(&path, &backend::device())?;
    let skip = OmissionSet::parse(&args.skip, lm.n_blocks())?;
    let dense = OmissionSet::dense(lm.n_blocks())?;
    let config = GenerationConfig {
        max_new_tokens: args.max_tokens,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    println!("prompt: {}\n", args.prompt);
    // Warm-up so the first timed run does not pay one-off allocation costs.
    let _ = generate_text(
        &lm,
        &args.prompt,
        true,
        &dense,
        &GenerationConfig {
            max_new_tokens: 2,
            ..config.clone()
        },
    )?;
    let d = generate_text(&lm, &args.prompt, true, &dense, &config)?;
    println!(
        "dense ({} blocks):\n  {}\n  [{}]\n",
        lm.n_blocks(),
        d.text.trim(),
        speed_line(&d)
    );
    let s = generate_text(&lm, &args.prompt, true, &skip, &config)?;
    println!(
        "skipping blocks {} ({} of {}):\n  {}\n  [{}]\n",
        skip,
        skip.len(),
        lm.n_blocks(),
        s.text.trim(),
        speed_line(&s)
    );
    println!(
        "speed-up vs dense: prefill {:.2}x, decode {:.2}x (ideal for the block stack alone {:.2}x, with the output head {:.2}x)",
        s.prefill_tokens_per_sec() / d.prefill_tokens_per_sec(),
        s.decode_tokens_per_sec() / d.decode_tokens_per_sec(),
        1.0 / skip.kept_fraction(),
        1.0 / lm.model().config().ideal_ratio(skip.len()),
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args()
        .map_err(|e| eprintln!("error: {e}"))
        .and_then(|a| run(a).map_err(|e| eprintln!("error: {e}")));
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
