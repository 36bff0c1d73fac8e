//! `pudding bench`.

use super::prelude::*;

/// The arguments of `pudding bench` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct BenchArgs {
    #[command(flatten)]
    model: ModelArg,
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
}

/// Runs `pudding bench`.
pub(super) fn run(args: BenchArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { fast, decode, .. } = *ctx;
    let BenchArgs {
        model: ModelArg { model },
        skip,
        repeats,
        prefill,
        generate,
        pool,
        router,
        out,
    } = args;
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
    Ok(())
}
