//! Gemma 3's block features on a tiny random model: the sliding window (plain, cached,
//! left-padded and packed forwards), and that GeGLU, QK-norm, the sandwich norms, the
//! embedding scale and the soft-cap each change the output.

mod common;
use burn::prelude::*;
use common::max_abs_diff;
use pudding_core::{GenerationConfig, OmissionSet};
use pudding_models::config::{Activation, SlidingWindow};
use pudding_models::{generate_ids, CpuBackend as B, KvCache, LlamaConfig, LlamaModel, ModelError};

const WINDOW: usize = 3;
const SEQ: usize = 9;

/// A 4-block Gemma-3-like shape: blocks 0 and 2 windowed (3 tokens), 1 and 3 global.
fn gemma_like() -> LlamaConfig {
    let mut c = LlamaConfig::smollm2_135m_shape(64);
    c.architecture = "gemma3".into();
    c.n_blocks = 4;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.vocab_size = 50;
    c.features.activation = Activation::GeluTanh;
    c.features.embedding_scale = Some((32f32).sqrt());
    c.features.qk_norm = true;
    c.features.sandwich_norms = true;
    c.features.attention_scale = Some(0.3);
    c.features.sliding_window = Some(SlidingWindow {
        size: WINDOW,
        global_every: 2,
        local_rope_theta: 10_000.0,
        global_blocks: None,
    });
    c
}

fn model(c: &LlamaConfig) -> LlamaModel<B> {
    LlamaModel::random(c, 11, &Default::default()).unwrap()
}

fn ids() -> Vec<u32> {
    (0..SEQ as u32).map(|i| (i * 7 + 3) % 50).collect()
}

fn tokens(ids: &[u32]) -> Tensor<B, 2, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), &Default::default())
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn logits(m: &LlamaModel<B>, ids: &[u32]) -> Vec<f32> {
    values(
        m.forward(tokens(ids), &OmissionSet::dense(4).unwrap(), None)
            .unwrap(),
    )
}

#[test]
fn block_kinds_follow_the_pattern() {
    let c = gemma_like();
    let kinds: Vec<bool> = (0..4).map(|i| c.is_sliding(i)).collect();
    assert_eq!(kinds, [true, false, true, false]);
    assert!((c.score_scale() - 0.3).abs() < 1e-6);
    let mut plain = c.clone();
    plain.features.attention_scale = None;
    assert!((plain.score_scale() - 0.25).abs() < 1e-12);
}

/// Positions before the window fills see every earlier token either way; later ones lose
/// the oldest keys in the windowed blocks.
#[test]
fn the_window_hides_only_keys_older_than_it() {
    let c = gemma_like();
    let mut wide = c.clone();
    wide.features.sliding_window.as_mut().unwrap().size = 1000;
    let (narrow, wide) = (logits(&model(&c), &ids()), logits(&model(&wide), &ids()));
    let v = c.vocab_size;
    for pos in 0..SEQ {
        let d = max_abs_diff(
            &narrow[pos * v..(pos + 1) * v],
            &wide[pos * v..(pos + 1) * v],
        );
        if pos < WINDOW {
            assert!(d < 1e-5, "position {pos}: {d}");
        } else {
            assert!(d > 1e-3, "position {pos} ignores the window: {d}");
        }
    }
}

/// Decoding with a cache, one token or several at a time (the window slides past the
/// prefill and past the middle of a chunk), equals the full forward, dense and with blocks
/// skipped; the windowed blocks' cache holds only the window.
#[test]
fn cached_decoding_past_the_window_equals_the_full_forward() {
    let c = gemma_like();
    let m = model(&c);
    let ids = ids();
    let v = c.vocab_size;
    for chunks in [&[2, 1, 1, 1, 1, 1, 1, 1][..], &[2, 3, 1, 2, 1], &[1, 4, 4]] {
        assert_eq!(chunks.iter().sum::<usize>(), SEQ);
        for skip in ["", "1", "0,2"] {
            let skip = OmissionSet::parse(skip, 4).unwrap();
            let full = values(m.forward(tokens(&ids), &skip, None).unwrap());
            let mut cache = KvCache::new(skip.clone());
            let mut pos = 0;
            for &n in chunks {
                let step = values(
                    m.forward(tokens(&ids[pos..pos + n]), &skip, Some(&mut cache))
                        .unwrap(),
                );
                pos += n;
                let d = max_abs_diff(&step, &full[(pos - n) * v..pos * v]);
                assert!(d < 1e-4, "chunks {chunks:?} skip {skip} up to {pos}: {d}");
                for block in 0..4 {
                    let expected = if skip.skips(block) {
                        None
                    } else if c.is_sliding(block) {
                        Some(pos.min(WINDOW))
                    } else {
                        Some(pos)
                    };
                    assert_eq!(cache.block_slots(block), expected, "block {block} at {pos}");
                }
            }
        }
    }
}

/// A left-padded batch generates what each prompt generates alone (padding shifts slots,
/// not positions, and the window counts positions).
#[test]
fn left_padded_batches_equal_one_by_one_generation() {
    let c = gemma_like();
    let m = model(&c);
    let prompts = vec![ids(), ids()[4..].to_vec(), vec![5, 6]];
    let skip = OmissionSet::parse("2", 4).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 6,
        ..Default::default()
    };
    let batch = generate_ids(&m, &prompts, &skip, &config, 0).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let alone = generate_ids(&m, std::slice::from_ref(p), &skip, &config, 0).unwrap();
        assert_eq!(batch.ids[i], alone.ids[0], "prompt {i}");
    }
}

/// The packed step context (the candidate search's layout) applies the window by position.
#[test]
fn packed_forward_equals_the_plain_forward() {
    let c = gemma_like();
    let m = model(&c);
    let ids = ids();
    let positions: Vec<usize> = (0..SEQ).collect();
    let step = m.packed_step(1, SEQ, &positions, |_, i, j| j <= i).unwrap();
    let packed = m.run_blocks_in(&step, 0..4, m.embed_tokens(tokens(&ids)));
    let plain = m
        .forward_hidden(tokens(&ids), &OmissionSet::dense(4).unwrap(), None)
        .unwrap();
    assert!(max_abs_diff(&values(packed.unwrap()), &values(plain)) < 1e-5);
}

/// Continuations packed in one row after a cached context (the scorer's layout) equal
/// each continuation run alone after the same cache, with the context and the segments
/// longer than the window, under two sets at once.
#[test]
fn packed_segments_after_a_cache_equal_each_segment_alone() {
    let c = gemma_like();
    let m = model(&c);
    let context = ids();
    let segments: Vec<Vec<u32>> = vec![vec![4, 8, 15, 16, 23], vec![42], vec![7, 7, 9, 1]];
    let sets = [
        OmissionSet::dense(4).unwrap(),
        OmissionSet::parse("1", 4).unwrap(),
    ];
    let filled = || {
        let mut caches: Vec<KvCache<B>> = sets.iter().map(|s| KvCache::new(s.clone())).collect();
        m.forward_hidden_sets(tokens(&context), &sets, Some(&mut caches))
            .unwrap();
        caches
    };
    let packed_ids: Vec<u32> = segments.iter().flatten().copied().collect();
    let lengths: Vec<usize> = segments.iter().map(Vec::len).collect();
    let packed = m
        .forward_segments_sets(tokens(&packed_ids), &lengths, &sets, filled())
        .unwrap();
    let d = c.hidden_size;
    for (set_index, packed) in packed.into_iter().enumerate() {
        let packed = values(packed);
        let mut start = 0;
        for segment in &segments {
            let mut caches = filled();
            let alone = m
                .forward_hidden_sets(tokens(segment), &sets, Some(&mut caches))
                .unwrap();
            let alone = values(alone[set_index].clone());
            let got = &packed[start * d..(start + segment.len()) * d];
            let diff = max_abs_diff(got, &alone);
            assert!(diff < 1e-5, "set {set_index} segment {segment:?}: {diff}");
            start += segment.len();
        }
    }
    // A segment of no tokens, lengths that do not add up, or a padded batch are refused.
    for lengths in [vec![5, 0, 5], vec![5, 1, 3]] {
        assert!(m
            .forward_segments_sets(tokens(&packed_ids), &lengths, &sets, filled())
            .is_err());
    }
    let one_cache = filled().into_iter().take(1).collect();
    assert!(m
        .forward_segments_sets(tokens(&packed_ids), &lengths, &sets, one_cache)
        .is_err());
    // Caches at different lengths, swapped between the sets, or left-padded; a set past
    // the model's blocks.
    let mut uneven = filled();
    uneven[1] = KvCache::new(sets[1].clone());
    let mut swapped = filled();
    swapped.swap(0, 1);
    let padded: Vec<KvCache<B>> = sets
        .iter()
        .map(|s| KvCache::with_left_padding(s.clone(), vec![1]))
        .collect();
    for caches in [uneven, swapped, padded] {
        let err = m
            .forward_segments_sets(tokens(&packed_ids), &lengths, &sets, caches)
            .unwrap_err();
        assert!(matches!(err, ModelError::Cache(_)), "{err}");
    }
    let too_deep = [
        OmissionSet::dense(4).unwrap(),
        OmissionSet::dense(5).unwrap(),
    ];
    assert!(m
        .forward_segments_sets(tokens(&packed_ids), &lengths, &too_deep, filled())
        .is_err());
}

/// Each Gemma feature is wired in: turning it off changes the logits.
#[test]
fn every_gemma_feature_changes_the_output() {
    let c = gemma_like();
    let base = logits(&model(&c), &ids());
    let variants: Vec<(&str, LlamaConfig)> = vec![
        ("silu", {
            let mut v = c.clone();
            v.features.activation = Activation::Silu;
            v
        }),
        ("no embedding scale", {
            let mut v = c.clone();
            v.features.embedding_scale = None;
            v
        }),
        ("soft-cap", {
            let mut v = c.clone();
            v.features.final_logit_softcap = Some(0.5);
            v
        }),
        ("attention scale", {
            let mut v = c.clone();
            v.features.attention_scale = None;
            v
        }),
    ];
    for (name, v) in variants {
        let d = max_abs_diff(&base, &logits(&model(&v), &ids()));
        assert!(d > 1e-4, "{name} changes nothing: {d}");
    }
    // Capped logits stay inside (-cap, cap).
    let mut capped = c.clone();
    capped.features.final_logit_softcap = Some(0.5);
    assert!(logits(&model(&capped), &ids())
        .iter()
        .all(|x| x.abs() < 0.5));
    // QK-norm and the sandwich norms add parameters (and so draw other random weights);
    // check they exist instead.
    let m = model(&c);
    let block = m.block(0).unwrap();
    assert!(block.attn.q_norm.is_some() && block.attn.k_norm.is_some());
    assert!(block.post_attn_norm.is_some() && block.post_mlp_norm.is_some());
    let (_, vectors) = block.params();
    let names: Vec<&str> = vectors.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "input_layernorm.weight",
            "pre_feedforward_layernorm.weight",
            "post_attention_layernorm.weight",
            "post_feedforward_layernorm.weight",
            "self_attn.q_norm.weight",
            "self_attn.k_norm.weight"
        ]
    );
}

#[test]
fn bad_gemma_settings_are_config_errors() {
    for edit in [
        |c: &mut LlamaConfig| c.features.sliding_window.as_mut().unwrap().size = 0,
        |c: &mut LlamaConfig| c.features.sliding_window.as_mut().unwrap().global_every = 0,
        |c: &mut LlamaConfig| c.features.embedding_scale = Some(f32::NAN),
        |c: &mut LlamaConfig| c.features.final_logit_softcap = Some(-1.0),
        |c: &mut LlamaConfig| c.features.attention_scale = Some(0.0),
    ] {
        let mut c = gemma_like();
        edit(&mut c);
        assert!(matches!(
            c.validate(),
            Err(pudding_models::ModelError::Config(_))
        ));
    }
}

/// A continuous-batching decode step ([`LlamaModel::decode_rows`]): three sequences of
/// different lengths (one past the window), each under its own omission set, step together
/// for four tokens, and each row's logits equal that sequence decoded alone with its own
/// cache.
#[test]
fn decode_rows_under_different_sets_equal_each_sequence_alone() {
    let c = gemma_like();
    let m = model(&c);
    let prompts: [Vec<u32>; 3] = [ids(), vec![5, 9], vec![1, 2, 3, 4]];
    let sets = [
        OmissionSet::dense(4).unwrap(),
        OmissionSet::parse("1", 4).unwrap(),
        OmissionSet::parse("0,3", 4).unwrap(),
    ];
    let prefill = |i: usize| {
        let mut cache = KvCache::<B>::new(sets[i].clone());
        m.forward_last(tokens(&prompts[i]), &sets[i], Some(&mut cache))
            .unwrap();
        cache
    };
    let mut batched: Vec<KvCache<B>> = (0..3).map(prefill).collect();
    let mut alone: Vec<KvCache<B>> = (0..3).map(prefill).collect();
    for step in 0..4u32 {
        let next: Vec<u32> = (0..3).map(|i| (step * 11 + i * 5 + 7) % 50).collect();
        let mut refs: Vec<&mut KvCache<B>> = batched.iter_mut().collect();
        let rows = values(m.decode_rows(&next, &mut refs).unwrap());
        for i in 0..3 {
            let single = values(
                m.forward_last(tokens(&next[i..=i]), &sets[i], Some(&mut alone[i]))
                    .unwrap(),
            );
            let row = &rows[i * 50..(i + 1) * 50];
            assert!(
                max_abs_diff(row, &single) < 1e-4,
                "row {i} step {step}: {}",
                max_abs_diff(row, &single)
            );
            assert_eq!(batched[i].len(), alone[i].len());
        }
    }
}

/// A decode step refuses a token count that is not the cache count, a padded cache, an
/// out-of-vocabulary token and a cache at the end of the context, leaving the caches as
/// they were.
#[test]
fn decode_rows_refuses_bad_rows() {
    let c = gemma_like();
    let m = model(&c);
    let set = OmissionSet::dense(4).unwrap();
    let mut cache = KvCache::<B>::new(set.clone());
    m.forward_last(tokens(&ids()), &set, Some(&mut cache))
        .unwrap();
    let before = cache.len();
    let mut refs = vec![&mut cache];
    assert!(matches!(
        m.decode_rows(&[1, 2], &mut refs),
        Err(ModelError::Batch(_))
    ));
    assert!(matches!(
        m.decode_rows(&[50], &mut refs),
        Err(ModelError::TokenOutOfVocab { id: 50, .. })
    ));
    assert!(matches!(
        m.decode_rows(&[], &mut []),
        Err(ModelError::Batch(_))
    ));
    let mut padded = KvCache::<B>::with_left_padding(set.clone(), vec![2]);
    m.forward_last(tokens(&ids()), &set, Some(&mut padded))
        .unwrap();
    assert!(matches!(
        m.decode_rows(&[1], &mut [&mut padded]),
        Err(ModelError::Cache(_))
    ));
    assert_eq!(cache.len(), before);
    let mut short = c.clone();
    short.max_seq_len = SEQ;
    let full = model(&short);
    let mut cache = KvCache::<B>::new(set.clone());
    full.forward_last(tokens(&ids()), &set, Some(&mut cache))
        .unwrap();
    assert!(matches!(
        full.decode_rows(&[1], &mut [&mut cache]),
        Err(ModelError::PromptTooLong { len, max }) if len == SEQ + 1 && max == SEQ
    ));
}

/// A cache truncated to a shared prefix continues another prompt exactly as prefilling
/// that prompt whole (the server's prompt cache); a sliding-window cache whose window has
/// dropped slots refuses to be truncated.
#[test]
fn a_truncated_cache_continues_a_prompt_sharing_its_prefix() {
    let mut c = gemma_like();
    c.features.sliding_window = None;
    let m = model(&c);
    let set = OmissionSet::parse("2", 4).unwrap();
    let first: Vec<u32> = vec![3, 9, 27, 31, 44, 5, 6];
    let second: Vec<u32> = vec![3, 9, 27, 31, 12, 13];
    let mut cache = KvCache::<B>::new(set.clone());
    m.forward_last(tokens(&first), &set, Some(&mut cache))
        .unwrap();
    let mut shared = cache.truncated(4).unwrap();
    assert_eq!(shared.len(), 4);
    let continued = values(
        m.forward_last(tokens(&second[4..]), &set, Some(&mut shared))
            .unwrap(),
    );
    let whole = values(m.forward_last(tokens(&second), &set, None).unwrap());
    assert!(max_abs_diff(&continued, &whole) < 1e-4);
    assert!(matches!(cache.truncated(8), Err(ModelError::Cache(_))));

    let windowed = model(&gemma_like());
    let mut cache = KvCache::<B>::new(set.clone());
    windowed
        .forward_last(tokens(&ids()), &set, Some(&mut cache))
        .unwrap();
    assert!(matches!(cache.truncated(2), Err(ModelError::Cache(_))));
}
