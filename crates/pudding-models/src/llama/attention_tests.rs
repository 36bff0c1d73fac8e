//! Attention chunking and mask building against the whole-matrix result.

use super::*;
use crate::testing::{load_tiny_llama, TinyLlamaSpec};
use crate::CpuBackend;

/// Attention in chunks of queries, with the mask held or built per chunk, gives the
/// whole-matrix result: without and with left padding, without and with a sliding
/// window, at every chunk size from one query to all of them.
#[test]
fn chunked_attention_and_a_built_per_chunk_mask_equal_the_whole_matrix() {
    let spec = TinyLlamaSpec::default();
    let (_dir, lm) = load_tiny_llama::<CpuBackend>(&spec).unwrap();
    let seq = 9;
    let reps = spec.n_heads / spec.n_kv_heads;
    for window in [None, Some(4)] {
        let model = match window {
            None => lm.model().clone(),
            Some(_) => lm.model().clone().map_blocks(|mut block| {
                block.attn.sliding = true;
                block
            }),
        };
        let rotary = Rotary {
            global: &model.rope,
            local: window.map(|w| (&model.rope, w)),
        };
        for left_pad in [vec![], vec![0, 3]] {
            let batch = left_pad.len().max(1);
            let tokens: Vec<i64> = (0..(batch * seq) as i64).map(|t| 3 + 5 * t % 250).collect();
            let tokens = Tensor::<CpuBackend, 1, Int>::from_data(
                TensorData::new(tokens, [batch * seq]),
                &model.device(),
            )
            .reshape([batch, seq]);
            let x = model.embed_tokens(tokens);
            let step = |dense_limit: usize, scores_limit: usize| {
                StepContext::new_within(
                    rotary.clone(),
                    reps,
                    seq,
                    0,
                    &left_pad,
                    &model.device(),
                    dense_limit,
                )
                .with_heads(spec.n_heads, spec.n_kv_heads)
                .with_scores_limit(scores_limit)
            };
            let run = |step: StepContext<CpuBackend>| {
                model
                    .run_blocks_in(&step, 0..spec.n_blocks, x.clone())
                    .unwrap()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
            };
            let whole = step(usize::MAX, usize::MAX);
            assert!(whole.global.mask.is_some() && whole.global.causal.is_none());
            let reference = run(whole);
            let per_query = batch * spec.n_kv_heads * reps * seq;
            for (dense_limit, queries) in
                [(usize::MAX, 1), (usize::MAX, 4), (0, 1), (0, 2), (0, seq)]
            {
                let chunked = step(dense_limit, per_query * queries);
                assert_eq!(chunked.global.causal.is_some(), dense_limit == 0);
                let got = run(chunked);
                let diff = reference
                    .iter()
                    .zip(&got)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                assert!(
                    diff <= 1e-5,
                    "window {window:?}, padding {left_pad:?}, dense limit {dense_limit}, \
                     {queries} queries a chunk: max |diff| {diff}"
                );
            }
        }
    }
}

/// A mask or rotary table over the repeat limit stays broadcast over the heads; the
/// blocks' output is the same either way (the same products and sums, only their
/// layout differs).
#[test]
fn a_mask_or_table_over_the_repeat_limit_stays_broadcast_with_the_same_output() {
    let spec = TinyLlamaSpec::default();
    let (_dir, lm) = load_tiny_llama::<CpuBackend>(&spec).unwrap();
    let model = lm.model();
    let (seq, offset) = (7, 0);
    // A step context with nothing repeated over the heads yet.
    let fresh_step = || {
        StepContext::new(
            model.rotary(),
            model.config.group_size(),
            seq,
            offset,
            &[],
            &model.device(),
        )
    };
    let step = fresh_step();
    let mask_dims = |s: &StepContext<CpuBackend>| s.global.mask.as_ref().map(|m| m.dims());
    let reps = spec.n_heads / spec.n_kv_heads;
    assert_eq!(mask_dims(&step), Some([1, 1, reps * seq, seq]));

    let (h, g) = (spec.n_heads, spec.n_kv_heads);
    let table_heads = |s: &StepContext<CpuBackend>| {
        let by_heads = &s.global.by_heads;
        let dims: Vec<[usize; 4]> = by_heads.iter().map(|(_, c, _)| c.dims()).collect();
        assert!(by_heads.iter().all(|(_, c, s)| c.dims() == s.dims()));
        dims
    };
    let head_dim = spec.hidden / spec.n_heads;
    let repeated = step.clone().with_heads_within(h, g, usize::MAX);
    assert_eq!(
        table_heads(&repeated),
        vec![[1, seq, h, head_dim], [1, seq, g, head_dim]]
    );
    assert_eq!(
        mask_dims(&repeated),
        Some([1, spec.n_kv_heads, reps * seq, seq])
    );
    // The limit is inclusive: exactly the repeated size repeats, one less does not.
    let needed = spec.n_kv_heads * reps * seq * seq;
    let at_limit = step.clone().with_heads_within(h, g, needed);
    assert_eq!(mask_dims(&at_limit), mask_dims(&repeated));
    let broadcast = step.with_heads_within(h, g, needed - 1);
    assert_eq!(mask_dims(&broadcast), Some([1, 1, reps * seq, seq]));
    // The tables' limit on its own: the key/value heads' tables fit, the queries' not.
    assert!(g < h);
    let tables_only_kv = fresh_step().with_heads_within(h, g, seq * g * head_dim);
    assert_eq!(table_heads(&tables_only_kv), vec![[1, seq, g, head_dim]]);
    let none = fresh_step();
    assert!(table_heads(&none).is_empty());

    let tokens: Vec<i64> = (0..seq as i64).map(|t| 3 + 5 * t).collect();
    let tokens =
        Tensor::<CpuBackend, 1, Int>::from_data(TensorData::new(tokens, [seq]), &model.device())
            .reshape([1, seq]);
    let x = model.embed_tokens(tokens);
    let run = |step: &StepContext<CpuBackend>| {
        model
            .run_blocks_in(step, 0..spec.n_blocks, x.clone())
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let a = run(&repeated);
    assert_eq!(a.len(), seq * spec.hidden);
    for (what, other) in [
        ("broadcast mask", &broadcast),
        ("only the key/value tables repeated", &tables_only_kv),
        ("nothing repeated", &none),
    ] {
        let b = run(other);
        let diff = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(diff <= 1e-6, "repeated vs {what}: max |diff| {diff}");
    }
}
