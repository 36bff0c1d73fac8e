//! `pudding labels`, `pudding train-router` and `pudding route`.

use crate::backend::{self, Backend};
use crate::commands::{parse_tasks, speed_line};
use burn::backend::Autodiff;
use burn::prelude::Backend as BackendTrait;
use pudding_core::{CandidatePool, GenerationConfig, Pudding, SkippableLm};
use pudding_eval::tasks::{load_task, Split};
use pudding_models::assets::ensure_minilm;
use pudding_models::bert::BertEncoder;
use pudding_models::LlamaLm;
use pudding_router::config::TrainConfig;
use pudding_router::labels::{generate_labels_shard, read_labels, Labels, RouterInput};
use pudding_router::router::{PuddingRouter, RouterCard};
use pudding_router::train::train_head;
use pudding_router::RouterError;
use std::error::Error;
use std::path::Path;

/// Tokens of router input kept.
pub const ROUTER_MAX_TOKENS: usize = 256;

/// The stock router encoder, as router cards name it.
pub const STOCK_ENCODER: &str = "all-MiniLM-L6-v2";

/// Loads the default router encoder (fetched on first use).
pub fn load_encoder<B: BackendTrait>(device: &B::Device) -> Result<BertEncoder<B>, Box<dyn Error>> {
    Ok(BertEncoder::load(&ensure_minilm()?, device)?)
}

/// `pudding labels`: labels `rows` train rows of each task after the first `offset`
/// (`(rows, offset)`), or only `shard`'s share of them (into `out` tagged with the shard,
/// see [`crate::sharding::shard_path`]).
pub fn labels_command<B: BackendTrait>(
    lm: &LlamaLm<B>,
    pool: &Path,
    tasks: &str,
    (rows, offset): (usize, usize),
    input: &str,
    shard: Option<pudding_core::Shard>,
    out: &Path,
) -> Result<(), Box<dyn Error>> {
    let out = &match shard {
        Some(shard) => crate::sharding::shard_path(out, shard),
        None => out.to_path_buf(),
    };
    let pool = CandidatePool::load(pool)?;
    let input: RouterInput = serde_json::from_value(serde_json::Value::String(input.to_string()))
        .map_err(|_| {
        format!("unknown router input {input:?}; use prompt or prompt_and_first_choice")
    })?;
    let mut items = Vec::new();
    for task in parse_tasks(tasks)? {
        let all = load_task(task, Split::Train)?;
        // Fewer rows than asked for would train a router on less than the user thinks.
        if offset.saturating_add(rows) > all.len() {
            return Err(format!(
                "{} has {} train rows; --offset {offset} + --rows {rows} goes past them",
                task.name(),
                all.len()
            )
            .into());
        }
        items.extend(all.into_iter().skip(offset).take(rows));
    }
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "labels [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let labels = generate_labels_shard(lm, &pool, &items, shard, input, out, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    println!("{} labelled rows -> {}", labels.rows.len(), out.display());
    Ok(())
}

/// Loads a pool and a labels file, checking the labels were made for that pool.
fn load_pool_and_labels(
    pool: &Path,
    labels: &Path,
) -> Result<(CandidatePool, Labels), Box<dyn Error>> {
    let pool = CandidatePool::load(pool)?;
    let labels = read_labels(labels)?;
    if let Some(info) = labels.header.shard {
        return Err(format!(
            "the labels file holds only shard {} of the rows; join the shards with \
             `pudding merge` first",
            info.shard
        )
        .into());
    }
    if labels.header.pool_id != pool.id() {
        return Err("the labels file was made for another pool".into());
    }
    if labels.header.n_candidates != pool.len() {
        return Err(format!(
            "the labels file has {} values per row but the pool has {} candidates",
            labels.header.n_candidates,
            pool.len()
        )
        .into());
    }
    Ok((pool, labels))
}

/// Each labelled row's router input embedded by `encoder` (`[rows][d]`), 16 at a time.
fn embed_rows<B: BackendTrait>(
    encoder: &BertEncoder<B>,
    rows: &[pudding_router::labels::LabelRow],
) -> Result<Vec<Vec<f32>>, Box<dyn Error>> {
    let d = encoder.config().hidden_size;
    let mut inputs = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(16) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let e = pudding_models::host_values(encoder.embed(&texts, ROUTER_MAX_TOKENS)?)?;
        inputs.extend(e.chunks(d).map(|c| c.to_vec()));
    }
    Ok(inputs)
}

/// `pudding learnability`: how much of the oracle's gain a router could get from the
/// prompt at best, on a labels file's rows ([`pudding_router::learnability`]): the rows'
/// inputs embedded by the stock encoder (its first `encoder_layers`), cross-validated.
/// Prints a Markdown table; writes the scores and per-row picks to `out` when given.
pub fn learnability_command(
    labels: &Path,
    encoder_layers: Option<usize>,
    config: &pudding_router::learnability::LearnabilityConfig,
    out: Option<&Path>,
) -> Result<pudding_router::learnability::Learnability, Box<dyn Error>> {
    config.check()?;
    let labels = pudding_router::labels::read_labels(labels)?;
    if labels.header.shard.is_some() {
        return Err(
            "this is one shard of a labels file: merge the shards first (pudding merge)".into(),
        );
    }
    let device = backend::device();
    let mut encoder = load_encoder::<Backend>(&device)?;
    if let Some(n) = encoder_layers {
        encoder = encoder.truncate_layers(n)?;
    }
    let embeddings = embed_rows(&encoder, &labels.rows)?;
    let tasks: Vec<String> = labels.rows.iter().map(|r| r.task.clone()).collect();
    let targets: Vec<Vec<f32>> = labels.rows.iter().map(|r| r.label.clone()).collect();
    let report = pudding_router::learnability::learnability(&embeddings, &tasks, &targets, config)?;
    println!(
        "{} rows, {} candidates, {} folds (row i in fold i mod {}), {} neighbours, ridge {}",
        report.rows, report.candidates, config.folds, config.folds, config.neighbours, config.ridge
    );
    println!("\n| predictor | mean label | top-1 agreement | regret | oracle gain recovered |");
    println!("|---|---|---|---|---|");
    for p in &report.predictors {
        println!(
            "| {} | {:.4} | {:.1} % | {:.4} | {} |",
            p.predictor,
            p.mean_label,
            100.0 * p.top1_agreement,
            p.regret,
            p.recovered
                .map_or_else(|| "n/a".to_string(), |r| format!("{:.1} %", 100.0 * r))
        );
    }
    if let Some(out) = out {
        pudding_core::io::write_json_atomic(out, &report)?;
    }
    Ok(report)
}

/// `pudding train-router`: embeds every labelled prompt with the frozen encoder, trains
/// the head with `config`, writes the router directory.
pub fn train_router_command(
    pool: &Path,
    labels: &Path,
    out: &Path,
    config: &TrainConfig,
    encoder_layers: Option<usize>,
) -> Result<(), Box<dyn Error>> {
    let (pool, labels) = load_pool_and_labels(pool, labels)?;
    let device = backend::device();
    let mut encoder = load_encoder::<Backend>(&device)?;
    if let Some(n) = encoder_layers {
        encoder = encoder.truncate_layers(n)?;
    }
    let start = std::time::Instant::now();
    let inputs = embed_rows(&encoder, &labels.rows)?;
    let embed_secs = start.elapsed().as_secs_f64();
    let targets: Vec<Vec<f32>> = labels.rows.iter().map(|r| r.label.clone()).collect();
    let start = std::time::Instant::now();
    let outcome = train_head::<Autodiff<Backend>>(&inputs, &targets, config, &device, &mut |m| {
        if m.epoch % 10 == 0 || m.epoch == 1 {
            eprintln!(
                "epoch {:>3}: train mse {:.4}  val mse {:.4}  top-1 {:.3}  regret {:.4}",
                m.epoch, m.train_mse, m.val_mse, m.val_top1, m.val_regret
            );
        }
    })?;
    let n_val = outcome.val_rows.len();
    let card = RouterCard {
        encoder: STOCK_ENCODER.into(),
        max_tokens: ROUTER_MAX_TOKENS,
        input: labels.header.input,
        model: pool.fingerprint.clone(),
        pool_id: pool.id(),
        n_candidates: pool.len(),
        train: Some(config.clone()),
        finetune: None,
        encoder_dir: None,
        encoder_layers,
        metrics: outcome.best.clone(),
        rows: (labels.rows.len() - n_val, n_val),
    };
    let router = PuddingRouter::new(encoder, outcome.head, pool, card)?;
    router.save(out)?;
    println!(
        "router -> {} (embedding {:.1} s, training {:.1} s, best epoch {}: val mse {:.4}, top-1 {:.3}, regret {:.4})",
        out.display(),
        embed_secs,
        start.elapsed().as_secs_f64(),
        outcome.best.epoch,
        outcome.best.val_mse,
        outcome.best.val_top1,
        outcome.best.val_regret
    );
    Ok(())
}

/// Loads a pool + router directory for `lm` (errors if they were made for another model).
pub fn load_router<B: BackendTrait>(
    pool: &Path,
    router: &Path,
    device: &B::Device,
) -> Result<PuddingRouter<B>, Box<dyn Error>> {
    let pool = CandidatePool::load(pool)?;
    let card = PuddingRouter::<B>::read_card(router)?;
    let encoder = match &card.encoder_dir {
        Some(sub) => BertEncoder::load(&router.join(sub), device)?,
        None if card.encoder == STOCK_ENCODER => load_encoder::<B>(device)?,
        None => {
            return Err(RouterError::Mismatch(format!(
                "the router was trained on encoder {:?} and its directory holds no encoder; \
                 only the stock {STOCK_ENCODER} can be loaded in its place",
                card.encoder
            ))
            .into())
        }
    };
    Ok(PuddingRouter::load_with_card(
        router, card, pool, encoder, device,
    )?)
}

/// [`load_router`], then checks that the pool and router were made for `lm` (the model's
/// fingerprint), so that a router of another model fails before any work is done.
pub fn load_router_for<B: BackendTrait, L: SkippableLm>(
    lm: &L,
    pool: &Path,
    router: &Path,
    device: &B::Device,
) -> Result<PuddingRouter<B>, Box<dyn Error>> {
    let router = load_router::<B>(pool, router, device)?;
    router
        .card()
        .model
        .check_matches(lm.fingerprint(), "router")?;
    Ok(router)
}

/// `pudding train-router --mode full`: fine-tunes the encoder and the head together
/// (the paper's setting; `config` carries its defaults), checkpointing every epoch under
/// `out/checkpoints/`, and writes the router directory with the fine-tuned encoder in
/// `out/encoder/`.
pub fn finetune_router_command(
    pool: &Path,
    labels: &Path,
    out: &Path,
    config: &pudding_router::config::FinetuneConfig,
    encoder_layers: Option<usize>,
) -> Result<(), Box<dyn Error>> {
    let (pool, labels) = load_pool_and_labels(pool, labels)?;
    let device = backend::device();
    let mut encoder = BertEncoder::<Autodiff<Backend>>::load(&ensure_minilm()?, &device)?;
    if let Some(n) = encoder_layers {
        encoder = encoder.truncate_layers(n)?;
    }
    let texts: Vec<String> = labels.rows.iter().map(|r| r.text.clone()).collect();
    let targets: Vec<Vec<f32>> = labels.rows.iter().map(|r| r.label.clone()).collect();
    let start = std::time::Instant::now();
    let outcome = pudding_router::finetune::finetune::<Autodiff<Backend>>(
        encoder,
        &texts,
        &targets,
        config,
        &out.join("checkpoints"),
        &device,
        &mut |m| {
            eprintln!(
                "epoch {:>3}: train mse {:.4}  val mse {:.4}  top-1 {:.3}  regret {:.4}  ({:.0} s)",
                m.epoch,
                m.train_mse,
                m.val_mse,
                m.val_top1,
                m.val_regret,
                start.elapsed().as_secs_f64()
            )
        },
    )?;
    let n_val = outcome.val_rows.len();
    let card = RouterCard {
        encoder: format!("{STOCK_ENCODER} (fine-tuned)"),
        max_tokens: config.max_tokens,
        input: labels.header.input,
        model: pool.fingerprint.clone(),
        pool_id: pool.id(),
        n_candidates: pool.len(),
        train: None,
        finetune: Some(config.clone()),
        encoder_dir: Some("encoder".into()),
        encoder_layers,
        metrics: outcome.best.clone(),
        rows: (labels.rows.len() - n_val, n_val),
    };
    let encoder = BertEncoder::<Backend>::load(&outcome.encoder_dir, &device)?;
    let router = PuddingRouter::new(encoder, outcome.head, pool, card)?;
    router.save(out)?;
    println!(
        "fine-tuned router -> {} ({:.0} s, best epoch {}: val mse {:.4}, top-1 {:.3}, regret {:.4})",
        out.display(),
        start.elapsed().as_secs_f64(),
        outcome.best.epoch,
        outcome.best.val_mse,
        outcome.best.val_top1,
        outcome.best.val_regret
    );
    Ok(())
}

/// `pudding route`: routes `prompt` with `router` (once), then generates with the chosen
/// candidate's blocks skipped, printing the text and, on stderr, the decision and speed.
pub fn route_command(
    lm: &LlamaLm<Backend>,
    router: &PuddingRouter<Backend>,
    prompt: &str,
    max_tokens: usize,
) -> Result<(), Box<dyn Error>> {
    let pipeline = Pudding::new(lm, router)?;
    let ids = lm.encode_prompt(&lm.chat_prompt(prompt)?)?;
    let config = GenerationConfig {
        max_new_tokens: max_tokens,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    let (decision, g) = pipeline.generate(prompt, &ids, &config)?;
    println!("{}", g.text);
    eprintln!(
        "[routed to candidate {} (skip {}) in {:.1} ms; scores {:?}; {}]",
        decision.candidate,
        decision.set,
        decision.router_secs * 1e3,
        decision.scores,
        speed_line(&g)
    );
    Ok(())
}
