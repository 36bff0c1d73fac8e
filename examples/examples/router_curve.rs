//! Router learning curve: how routing quality on a fixed held-out part of a labels file
//! grows with the number of training rows, with raw and with row-centred labels
//! (`TrainConfig::center_labels`), against the constant router that always picks the
//! candidate best on average in the training rows, and the task-aware constant router that
//! picks, per task, the candidate best on average in that task's training rows.
//!
//! ```text
//! cargo run --release --example router_curve -- results/smollm2/labels-k3.jsonl 3 150,300,600,1200
//! ```
//!
//! Arguments: labels file, features (`N`: MiniLM's first N layers, 6 = all; `llm:N`: the
//! LLM's own residual stream after its first N blocks, mean-pooled), training sizes.
//! 20 % of the rows (seeded) are held out; each size trains a head (`train_head`, the
//! defaults of `pudding train-router`) on the first rows of the seeded remainder.

use burn::backend::Autodiff;
use burn::prelude::*;
use pudding_cli::backend::{self, Backend};
use pudding_cli::resolve_model;
use pudding_cli::router_commands::{load_encoder, ROUTER_MAX_TOKENS};
use pudding_core::SkippableLm;
use pudding_models::LlamaLm;
use pudding_router::config::TrainConfig;
use pudding_router::fit::{centered, route_metrics, split_rows};
use pudding_router::labels::read_labels;
use pudding_router::train::train_head;
use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    backend::start(None)?;
    let mut args = std::env::args().skip(1);
    let labels_path = args
        .next()
        .unwrap_or_else(|| "results/smollm2/labels-k3.jsonl".into());
    // `N`: MiniLM's first N layers; `llm:N`: the routed LLM's own residual stream after
    // its first N blocks (final norm applied, mean over tokens), which the routed model
    // computes anyway when no candidate skips those blocks.
    let features = args.next().unwrap_or_else(|| "3".into());
    let sizes: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "150,300,600,1200".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let labels = read_labels(labels_path.as_ref())?;
    let device = backend::device();
    let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(labels.rows.len());
    let d = if let Some(blocks) = features.strip_prefix("llm:") {
        let blocks: usize = blocks.parse()?;
        let lm = LlamaLm::<Backend>::load(&resolve_model(None)?, &device)?;
        let model = lm.model();
        for row in &labels.rows {
            let mut ids = lm.encode_prompt(&row.text)?;
            if ids.is_empty() {
                ids.push(lm.prefix_token());
            }
            let ids = &ids[ids.len().saturating_sub(ROUTER_MAX_TOKENS)..];
            let tokens = Tensor::<Backend, 2, Int>::from_data(
                TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, ids.len()]),
                &device,
            );
            let mut x = model.embed_tokens(tokens);
            for b in 0..blocks {
                x = model.block_forward(b, x, 0)?;
            }
            let pooled = model.norm.forward(x).mean_dim(1);
            inputs.push(pudding_models::host_values(pooled)?);
        }
        model.config().hidden_size
    } else {
        let layers: usize = features.parse()?;
        let encoder = load_encoder::<Backend>(&device)?.truncate_layers(layers)?;
        let d = encoder.config().hidden_size;
        for chunk in labels.rows.chunks(16) {
            let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
            let e = pudding_models::host_values(encoder.embed(&texts, ROUTER_MAX_TOKENS)?)?;
            inputs.extend(e.chunks(d).map(|c| c.to_vec()));
        }
        d
    };
    let m = labels.header.n_candidates;
    let (held_out, train) = split_rows(labels.rows.len(), 0.2, 7)?;
    let flat = |rows: &[usize]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&i| labels.rows[i].label.iter().copied())
            .collect()
    };
    let test_labels = flat(&held_out);
    println!(
        "{labels_path}: {} rows, {m} candidates, {} held out, features {features}\n",
        labels.rows.len(),
        held_out.len()
    );
    println!("| router | training rows | held-out MSE | top-1 | regret |\n|---|---|---|---|---|");
    for &size in &sizes {
        if size > train.len() {
            eprintln!("skipping {size}: only {} training rows", train.len());
            continue;
        }
        let rows = &train[..size];
        // The constant router: the candidate best on average over these rows.
        let mut mean = vec![0.0f32; m];
        for &i in rows {
            for (a, v) in mean.iter_mut().zip(&labels.rows[i].label) {
                *a += v / size as f32;
            }
        }
        let constant: Vec<f32> = held_out.iter().flat_map(|_| mean.clone()).collect();
        let (mse, top1, regret) = route_metrics(&constant, &test_labels, m);
        println!("| constant (best on average) | {size} | {mse:.4} | {top1:.3} | {regret:.4} |");
        // The task-aware constant: per task, the candidate best on average (it knows the
        // task name, which the router has to infer from the prompt).
        let mut by_task: BTreeMap<&str, (Vec<f32>, usize)> = BTreeMap::new();
        for &i in rows {
            let row = &labels.rows[i];
            let entry = by_task
                .entry(row.task.as_str())
                .or_insert_with(|| (vec![0.0; m], 0));
            entry
                .0
                .iter_mut()
                .zip(&row.label)
                .for_each(|(a, v)| *a += v);
            entry.1 += 1;
        }
        let per_task: Vec<f32> = held_out
            .iter()
            .flat_map(|&i| match by_task.get(labels.rows[i].task.as_str()) {
                Some((sum, n)) => sum.iter().map(|v| v / *n as f32).collect(),
                None => mean.clone(),
            })
            .collect();
        let (mse, top1, regret) = route_metrics(&per_task, &test_labels, m);
        println!("| constant per task (best on average in its task) | {size} | {mse:.4} | {top1:.3} | {regret:.4} |");
        let x: Vec<Vec<f32>> = rows.iter().map(|&i| inputs[i].clone()).collect();
        let y: Vec<Vec<f32>> = rows.iter().map(|&i| labels.rows[i].label.clone()).collect();
        for center_labels in [false, true] {
            let config = TrainConfig {
                center_labels,
                ..Default::default()
            };
            let outcome = train_head::<Autodiff<Backend>>(&x, &y, &config, &device, &mut |_| {})?;
            let test_x: Vec<f32> = held_out
                .iter()
                .flat_map(|&i| inputs[i].iter().copied())
                .collect();
            let test_x = Tensor::<Backend, 2>::from_data(
                TensorData::new(test_x, [held_out.len(), d]),
                &device,
            );
            let pred = pudding_models::host_values(outcome.head.forward(test_x))?;
            // MSE against the labels the head was trained on (centred or raw).
            let reference: Vec<f32> = if center_labels {
                test_labels.chunks(m).flat_map(centered).collect()
            } else {
                test_labels.clone()
            };
            let (mse, _, _) = route_metrics(&pred, &reference, m);
            let (_, top1, regret) = route_metrics(&pred, &test_labels, m);
            println!(
                "| trained head{} (best epoch {}) | {size} | {mse:.4} | {top1:.3} | {regret:.4} |",
                if center_labels {
                    ", centred labels"
                } else {
                    ""
                },
                outcome.best.epoch
            );
        }
    }
    Ok(())
}
