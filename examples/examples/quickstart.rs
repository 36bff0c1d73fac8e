//! The main job: fetch the default model if needed, route a prompt with the embedded
//! default PuDDing router (a pool of candidate omission sets for SmolLM2-135M-Instruct
//! and a router head on all-MiniLM-L6-v2), then answer it with the dense model and with
//! the routed blocks skipped, printing the chosen candidate and the speed against dense.
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart -- --prompt "Why is the sky blue?"
//! cargo run --release --example quickstart -- --k 6     # the k = 6 router (6 of 30 blocks)
//! cargo run --release --example quickstart -- --skip 3,12,16,17,18,26   # a fixed set instead
//! cargo run --release --example quickstart -- --weights dequantized  # f32 weights
//! cargo run --release --example quickstart --features cuda -- --dtype bf16  # NVIDIA GPU
//! ```
//!
//! On the CPU the GGUF's quantised blocks are kept as stored and run by the quantised
//! kernels (`--weights quantized`, the default there); GPU backends load them dequantised.

use pudding_cli::backend::{self, Backend};
use pudding_cli::commands::{generate_text, speed_line};
use pudding_cli::resolve_model;
use pudding_core::{GenerationConfig, OmissionSet, Pudding, SkippableLm};
use pudding_models::{LlamaLm, WeightMode};
use pudding_router::default::embedded_router;
use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    prompt: String,
    skip: Option<String>,
    max_tokens: usize,
    model: Option<PathBuf>,
    dtype: String,
    k: usize,
    weights: Option<WeightMode>,
    device: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        prompt: "What is the capital of France? Answer in one sentence.".into(),
        skip: None,
        max_tokens: 48,
        model: None,
        dtype: "f32".into(),
        k: 3,
        weights: None,
        device: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--prompt" => args.prompt = value()?,
            "--skip" => args.skip = Some(value()?),
            "--max-tokens" => {
                args.max_tokens = value()?
                    .parse()
                    .map_err(|_| "--max-tokens takes a number")?
            }
            "--model" => args.model = Some(PathBuf::from(value()?)),
            "--dtype" => args.dtype = value()?,
            "--device" => {
                args.device = Some(value()?.parse().map_err(|_| "--device takes an index")?)
            }
            "--k" => args.k = value()?.parse().map_err(|_| "--k takes 3 or 6")?,
            "--weights" => {
                args.weights = Some(match value()?.as_str() {
                    "quantized" => WeightMode::Quantized,
                    "dequantized" => WeightMode::Dequantized,
                    _ => return Err("--weights takes quantized or dequantized".into()),
                })
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; use --prompt, --skip, --k, --max-tokens, --model, --dtype, --weights, --device"
                ))
            }
        }
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    // First: a GPU build on a machine without the GPU stops here with what is missing.
    let device = backend::start(args.device)?;
    backend::set_float_dtype(&args.dtype)?;
    let path = resolve_model(args.model)?;
    println!("model: {} (backend: {})", path.display(), backend::NAME);
    let weights = args
        .weights
        .unwrap_or(if backend::NAME.starts_with("flex") {
            WeightMode::Quantized
        } else {
            WeightMode::Dequantized
        });
    let lm = LlamaLm::<Backend>::load_with(&path, &device, weights)?;
    println!("weights: {}", weights.name());
    let dense = OmissionSet::dense(lm.n_blocks())?;
    let config = GenerationConfig {
        max_new_tokens: args.max_tokens,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    println!("prompt: {}\n", args.prompt);

    // The omission set: a fixed one from --skip, else the embedded router's choice.
    let (skip, how) = match &args.skip {
        Some(s) => (
            OmissionSet::parse(s, lm.n_blocks())?,
            "given with --skip".to_string(),
        ),
        None => {
            let router = embedded_router::<Backend, _>(args.k, &lm, &device)?;
            let pipeline = Pudding::new(&lm, &router)?;
            // Warm the router once so the reported time is the steady state.
            pipeline.route(&args.prompt)?;
            let decision = pipeline.route(&args.prompt)?;
            let how = format!(
                "routed: candidate {} of {}, predicted scores {:?}, router {:.1} ms",
                decision.candidate,
                router.card().n_candidates,
                decision
                    .scores
                    .iter()
                    .map(|s| (s * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>(),
                decision.router_secs * 1e3
            );
            (decision.set, how)
        }
    };

    // Warm-up so the first timed run does not pay one-off allocation costs.
    let warm = GenerationConfig {
        max_new_tokens: 2,
        ..config.clone()
    };
    let _ = generate_text(&lm, &args.prompt, true, &dense, &warm)?;
    let d = generate_text(&lm, &args.prompt, true, &dense, &config)?;
    println!(
        "dense ({} blocks):\n  {}\n  [{}]\n",
        lm.n_blocks(),
        d.text.trim(),
        speed_line(&d)
    );
    let s = generate_text(&lm, &args.prompt, true, &skip, &config)?;
    println!(
        "skipping blocks {} ({} of {}; {how}):\n  {}\n  [{}]\n",
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
        1.0 / lm.model().config().ideal_ratio(skip.len())?,
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().map_err(|e| e.into()).and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
