//! `pudding train-router`.

use super::prelude::*;

/// The arguments of `pudding train-router` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct TrainRouterArgs {
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
    #[arg(long, value_enum, default_value = "head")]
    mode: TrainMode,
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
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum TrainMode {
    /// An MLP head on the frozen encoder.
    Head,
    /// Encoder and head fine-tuned together (the paper's setting).
    Full,
}

/// Runs `pudding train-router`.
pub(super) fn run(args: TrainRouterArgs, _ctx: &Context) -> Result<(), CliError> {
    let TrainRouterArgs {
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
    } = args;
    let full_only = [
        ("--lr", lr.is_some()),
        ("--warmup-steps", warmup_steps.is_some()),
        ("--batch-size", batch_size.is_some()),
        ("--max-tokens", max_tokens.is_some()),
    ];
    let result = match mode {
        TrainMode::Head if full_only.iter().any(|(_, given)| *given) => {
            let given: Vec<&str> = full_only
                .iter()
                .filter(|(_, given)| *given)
                .map(|(flag, _)| *flag)
                .collect();
            Err(format!("{} apply to --mode full only", given.join(", ")).into())
        }
        TrainMode::Head => pudding_cli::router_commands::train_router_command(
            &pool,
            &labels,
            &out,
            &pudding_router::config::TrainConfig {
                epochs: epochs.unwrap_or(200),
                seed,
                center_labels,
                ..Default::default()
            },
            encoder_layers,
        ),
        TrainMode::Full if center_labels => {
            Err("--center-labels applies to --mode head only".into())
        }
        TrainMode::Full => {
            let d = pudding_router::config::FinetuneConfig::default();
            let config = pudding_router::config::FinetuneConfig {
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
    };
    result.map_err(stage)?;
    Ok(())
}
