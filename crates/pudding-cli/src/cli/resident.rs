//! `pudding resident`.

use super::prelude::*;

/// The arguments of `pudding resident` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct ResidentArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The omission set to open with.
    #[arg(long)]
    skip: String,
    /// Omission sets to switch to, in order (`;`-separated, e.g. "3,7,19;10-15").
    #[arg(long, default_value = "")]
    switch_to: String,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `pudding resident`.
pub(super) fn run(args: ResidentArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { fast, .. } = *ctx;
    let ResidentArgs {
        model: ModelArg { model },
        skip,
        switch_to,
        out,
    } = args;
    let path = resolve_model(model)?;
    let n_blocks = pudding_models::Checkpoint::open(&path)?.config.n_blocks;
    let first = OmissionSet::parse(&skip, n_blocks)?;
    let (mut resident, report) =
        pudding_models::ResidentLlamaLm::<Backend>::open(&path, &first, &backend::device(), fast)?;
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
    Ok(())
}
