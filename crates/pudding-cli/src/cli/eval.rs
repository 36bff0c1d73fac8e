//! `pudding eval`.

use super::prelude::*;
use pudding_cli::commands::ItemSelection;

/// The arguments of `pudding eval` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct EvalArgs {
    #[command(flatten)]
    model: ModelArg,
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
    /// Score only shard I of N (0-based) of each task's items, by position (e.g. a Slurm
    /// array task: `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`); every set
    /// of an item stays in its shard. Writes `--out` tagged `shard-I-of-N`
    /// (`dense.json` -> `dense.shard-0-of-4.json`, a directory `d` -> `d.shard-0-of-4`);
    /// `pudding merge --out OUT` joins the shards into what one process writes.
    #[arg(long, value_name = "I/N")]
    shard: Option<pudding_core::Shard>,
}

/// Runs `pudding eval`.
pub(super) fn run(args: EvalArgs, ctx: &Context) -> Result<(), CliError> {
    let Context { exact, decode, .. } = *ctx;
    let EvalArgs {
        model: ModelArg { model },
        skip,
        pool,
        router,
        oracle,
        tasks,
        limit,
        out,
        table,
        jobs,
        shard,
    } = args;
    let out = match shard {
        Some(shard) => pudding_cli::sharding::shard_path(&out, shard),
        None => out,
    };
    let items = ItemSelection {
        tasks: &tasks,
        limit,
        shard,
    };
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
        let reports =
            pudding_cli::commands::run_eval_sets_command(&lm, &static_sets, items, jobs, &paths)
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
            pudding_cli::commands::run_eval_command(&lm, &mut chooser, items, &out)
        }
        (Some(pool_path), None) => {
            let pool = pudding_core::CandidatePool::load(&pool_path)?;
            pool.check_model(lm.fingerprint())?;
            if oracle {
                let mut chooser = OracleChooser {
                    lm: &lm,
                    pool: &pool,
                };
                pudding_cli::commands::run_eval_command(&lm, &mut chooser, items, &out)
            } else {
                // One candidate (several were evaluated above).
                pudding_cli::commands::run_static_eval_command(
                    &lm,
                    pool.candidates[0].set.clone(),
                    items,
                    jobs,
                    &out,
                )
            }
        }
        _ => pudding_cli::commands::run_static_eval_command(
            &lm,
            OmissionSet::parse(&skip, lm.n_blocks())?,
            items,
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
    Ok(())
}
