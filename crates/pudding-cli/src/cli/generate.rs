//! `pudding generate`.

use super::prelude::*;

/// The arguments of `pudding generate` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct GenerateArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    prompt: PromptArg,
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
}

/// Runs `pudding generate`.
pub(super) fn run(args: GenerateArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { fast, decode, .. } = *ctx;
    let GenerateArgs {
        model: ModelArg { model },
        prompt,
        skip,
        max_tokens,
        temperature,
        top_p,
        seed,
        raw,
    } = args;
    let prompt = prompt.read()?;
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
    Ok(())
}
