//! Unit-level checks on tiny random Llama checkpoints written in the real formats:
//! shapes, causal masking, grouped-query attention, block skipping, KV cache, loaders.

mod common;
use burn::prelude::*;
use common::max_abs_diff;
use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::gguf::GgmlType;
use pudding_models::linear::LinearWeight;
use pudding_models::llama::Projection;
use pudding_models::testing::{
    load_tiny_llama, write_tiny_llama_gguf, write_tiny_llama_hf, TinyLlamaSpec,
};
use pudding_models::{CpuBackend as B, LlamaLm, LlamaModel};
use std::path::Path;

fn load(path: &Path) -> LlamaLm<B> {
    LlamaLm::<B>::load(path, &Default::default()).unwrap()
}

/// The default tiny Llama written as a Hugging Face directory `hf` inside a fresh
/// temporary directory (keep the guard alive while the directory is used).
fn tiny_hf_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    write_tiny_llama_hf(&TinyLlamaSpec::default(), &hf).unwrap();
    (dir, hf)
}

fn tiny(spec: &TinyLlamaSpec) -> (tempfile::TempDir, LlamaLm<B>) {
    load_tiny_llama::<B>(spec).unwrap()
}

fn ids_tensor(ids: &[[i64; 6]]) -> Tensor<B, 2, Int> {
    let flat: Vec<i64> = ids.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [ids.len(), 6]), &Default::default())
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn logits_have_batch_seq_vocab_shape_and_batches_are_independent() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let model = lm.model();
    let dense = OmissionSet::dense(4).unwrap();
    let rows = [[3i64, 70, 80, 90, 100, 5], [7, 8, 9, 10, 11, 12]];
    let logits = model.forward(ids_tensor(&rows), &dense, None).unwrap();
    let v = model.config().vocab_size;
    assert_eq!(logits.dims(), [2, 6, v]);
    let batched = values(logits);
    for (i, row) in rows.iter().enumerate() {
        let single = values(model.forward(ids_tensor(&[*row]), &dense, None).unwrap());
        let part = &batched[i * 6 * v..(i + 1) * 6 * v];
        assert!(max_abs_diff(part, &single) < 1e-4);
    }
}

#[test]
fn attention_is_causal() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let skip = OmissionSet::parse("1", 4).unwrap();
    let a = lm.position_log_probs(&[5, 6, 7, 8, 9, 10], &skip).unwrap();
    let b = lm
        .position_log_probs(&[5, 6, 7, 8, 200, 201], &skip)
        .unwrap();
    let v = lm.model().config().vocab_size;
    // Positions 0..4 cannot see tokens 4 and 5.
    assert!(max_abs_diff(&a[..4 * v], &b[..4 * v]) < 1e-5);
    assert!(max_abs_diff(&a[4 * v..], &b[4 * v..]) > 1e-3);
}

/// A GQA model equals the multi-head model whose key/value heads are repeated.
#[test]
fn grouped_query_attention_equals_repeated_heads() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let gqa = lm.model();
    let mut config = gqa.config().clone();
    let (g, e, r) = (config.n_kv_heads, config.head_dim, config.group_size());
    config.n_kv_heads = config.n_heads;
    // Rebuild with the same weights but every k/v head repeated r times (as [in, out]).
    let device = Default::default();
    let mut mha = LlamaModel::<B>::random(&config, 1, &device).unwrap();
    mha.embed = gqa.embed.clone();
    mha.norm = gqa.norm.clone();
    for (dst, src) in mha
        .blocks
        .iter_mut()
        .flatten()
        .zip(gqa.blocks.iter().flatten())
    {
        let repeat = |w: &Tensor<B, 2>| {
            let d = w.dims()[0];
            w.clone()
                .reshape([d, g, 1, e])
                .repeat_dim(2, r)
                .reshape([d, g * r * e])
        };
        dst.attn.q = src.attn.q.clone();
        dst.attn.k = Projection {
            weight: LinearWeight::Dense(repeat(src.attn.k.weight.as_dense().unwrap())),
            bias: None,
        };
        dst.attn.v = Projection {
            weight: LinearWeight::Dense(repeat(src.attn.v.weight.as_dense().unwrap())),
            bias: None,
        };
        dst.attn.o = src.attn.o.clone();
        dst.attn_norm = src.attn_norm.clone();
        dst.mlp_norm = src.mlp_norm.clone();
        dst.mlp = src.mlp.clone();
    }
    let dense = OmissionSet::dense(4).unwrap();
    let rows = [[1i64, 2, 3, 4, 5, 6]];
    let a = values(gqa.forward(ids_tensor(&rows), &dense, None).unwrap());
    let b = values(mha.forward(ids_tensor(&rows), &dense, None).unwrap());
    assert!(max_abs_diff(&a, &b) < 1e-4);
}

#[test]
fn skipping_all_but_one_block_equals_the_one_block_model() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let model = lm.model();
    let skip = OmissionSet::parse("0,1,3", 4).unwrap();
    let single = model.pruned(&skip).unwrap();
    assert_eq!(single.config().n_blocks, 1);
    let rows = [[9i64, 8, 7, 6, 5, 4]];
    let a = values(model.forward(ids_tensor(&rows), &skip, None).unwrap());
    let one = OmissionSet::dense(1).unwrap();
    let b = values(single.forward(ids_tensor(&rows), &one, None).unwrap());
    assert!(max_abs_diff(&a, &b) < 1e-6);
    // And skipping really changes the output.
    let dense = OmissionSet::dense(4).unwrap();
    let c = values(model.forward(ids_tensor(&rows), &dense, None).unwrap());
    assert!(max_abs_diff(&a, &c) > 1e-2);
}

#[test]
fn kv_cached_generation_equals_full_recomputation() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let prompt = lm.encode("the cat in the hat").unwrap();
    for skip in ["", "2", "0,3"] {
        let skip = OmissionSet::parse(skip, 4).unwrap();
        let config = GenerationConfig {
            max_new_tokens: 20,
            ..Default::default()
        };
        let cached = lm.generate(&prompt, &skip, &config).unwrap();
        let uncached = lm.greedy_uncached(&prompt, &skip, 20).unwrap();
        assert_eq!(cached.ids, uncached, "skip {skip}");
    }
}

#[test]
fn cache_writes_no_entries_for_skipped_blocks_and_rejects_another_set() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let skip = OmissionSet::parse("1,2", 4).unwrap();
    let mut cache = pudding_models::KvCache::<B>::new(skip.clone());
    let rows = [[1i64, 2, 3, 4, 5, 6]];
    lm.model()
        .forward(ids_tensor(&rows), &skip, Some(&mut cache))
        .unwrap();
    assert_eq!(cache.len(), 6);
    assert_eq!(cache.filled_blocks(), 2);
    let other = OmissionSet::parse("1", 4).unwrap();
    let err = lm
        .model()
        .forward(ids_tensor(&rows), &other, Some(&mut cache))
        .unwrap_err();
    assert!(err.to_string().contains("one omission set must hold"));
}

/// The GGUF loader (q/k rows permuted by llama.cpp's convention, undone on load) and the
/// safetensors loader (HF layout) give the same model.
#[test]
fn gguf_and_safetensors_loaders_agree() {
    let spec = TinyLlamaSpec::default();
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama_gguf(&spec, &dir.path().join("m.gguf")).unwrap();
    write_tiny_llama_hf(&spec, &dir.path().join("hf")).unwrap();
    let from_gguf = load(&dir.path().join("m.gguf"));
    let from_hf = load(&dir.path().join("hf"));
    let ids = from_hf.encode("the quick brown fox 123").unwrap();
    assert_eq!(ids, from_gguf.encode("the quick brown fox 123").unwrap());
    let skip = OmissionSet::parse("2", 4).unwrap();
    let a = from_gguf.position_log_probs(&ids, &skip).unwrap();
    let b = from_hf.position_log_probs(&ids, &skip).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-4);
}

/// Quantised storage stays close to the F32 model (Q8_0 closely, Q4_1 loosely).
#[test]
fn quantised_tiny_models_track_f32() {
    let ids: Vec<u32> = (10..30).collect();
    let dense = OmissionSet::dense(4).unwrap();
    let reference = tiny(&TinyLlamaSpec::default()).1;
    let want = reference.token_logprobs(&ids, &dense).unwrap();
    for (dtype, tol) in [(GgmlType::Q8_0, 0.05), (GgmlType::Q4_1, 0.6)] {
        let spec = TinyLlamaSpec {
            matrix_type: dtype,
            ..Default::default()
        };
        let got = tiny(&spec).1.token_logprobs(&ids, &dense).unwrap();
        let diff = max_abs_diff(&want, &got);
        assert!(diff < tol && diff > 0.0, "{dtype:?}: {diff}");
    }
}

/// The same quantised file loaded both ways: kept as stored (`WeightMode::Quantized`, the
/// quantised kernels, q/k rows read in llama.cpp's permuted order) and dequantised to f32.
/// The weights are the same values, so only the 8-bit activations separate them (nothing at
/// all for F16, which multiplies f32 activations); skipping, the KV cache and residency
/// behave the same on both.
#[test]
fn quantised_weights_kept_as_stored_match_their_dequantised_values() {
    use pudding_models::{ResidentLlamaLm, WeightMode};
    let ids: Vec<u32> = (10..30).collect();
    let dir = tempfile::tempdir().unwrap();
    for (dtype, tol) in [
        (GgmlType::Q8_0, 0.05),
        (GgmlType::Q4_1, 0.05),
        (GgmlType::F16, 1e-4),
    ] {
        let spec = TinyLlamaSpec {
            matrix_type: dtype,
            ..Default::default()
        };
        let path = dir.path().join(format!("tiny-{dtype}.gguf"));
        write_tiny_llama_gguf(&spec, &path).unwrap();
        let exact = LlamaLm::<B>::load(&path, &Default::default()).unwrap();
        let kept =
            LlamaLm::<B>::load_with(&path, &Default::default(), WeightMode::Quantized).unwrap();
        assert_eq!(kept.model().weight_mode(), WeightMode::Quantized);
        assert!(matches!(
            kept.model().block(0).unwrap().attn.q.weight,
            LinearWeight::Quantized(_)
        ));
        assert!(kept.model().weight_memory_bytes() < exact.model().weight_memory_bytes());
        for skip in ["", "1,2"] {
            let skip = OmissionSet::parse(skip, 4).unwrap();
            let want = exact.token_logprobs(&ids, &skip).unwrap();
            let got = kept.token_logprobs(&ids, &skip).unwrap();
            let diff = max_abs_diff(&want, &got);
            assert!(diff < tol, "{dtype:?} skip {skip}: {diff}");
            let config = GenerationConfig {
                max_new_tokens: 8,
                ..Default::default()
            };
            let cached = kept.generate(&ids, &skip, &config).unwrap();
            let uncached = kept.greedy_uncached(&ids, &skip, 8).unwrap();
            assert_eq!(cached.ids, uncached, "{dtype:?} skip {skip}");
        }
        // Memory-constrained mode loads the kept blocks as stored too.
        let skip = OmissionSet::parse("1,2", 4).unwrap();
        let (resident, _) =
            ResidentLlamaLm::<B>::open(&path, &skip, &Default::default(), WeightMode::Quantized)
                .unwrap();
        assert_eq!(
            resident.lm().token_logprobs(&ids, &skip).unwrap(),
            kept.token_logprobs(&ids, &skip).unwrap()
        );
    }
}

/// Scoring several continuations on a shared context (packed in one row after the cached
/// context) equals scoring each concatenation from scratch, and `is_greedy` matches the argmax.
#[test]
fn batched_continuations_equal_scoring_from_scratch() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let context = vec![5u32, 60, 61, 62, 63];
    let continuations = vec![
        vec![70u32],
        vec![71, 72, 73, 74],
        vec![80, 81],
        vec![9, 9, 9],
    ];
    for skip in ["", "1,2"] {
        let skip = OmissionSet::parse(skip, 4).unwrap();
        let scores = lm
            .continuation_logprobs(&context, &continuations, &skip)
            .unwrap();
        for (cont, score) in continuations.iter().zip(&scores) {
            let mut all = context.clone();
            all.extend_from_slice(cont);
            let full = lm.token_logprobs(&all, &skip).unwrap();
            let want = &full[context.len() - 1..];
            assert!(max_abs_diff(&score.logprobs, want) < 1e-4);
            // Greedy means every continuation token is the argmax of its position's
            // distribution (lm-evaluation-harness's `is_greedy`), in both directions.
            let dists = lm.position_log_probs(&all, &skip).unwrap();
            let v = dists.len() / all.len();
            let argmax = |row: usize| {
                let d = &dists[row * v..(row + 1) * v];
                (0..v).fold(0, |b, i| if d[i] > d[b] { i } else { b }) as u32
            };
            let greedy = (0..cont.len()).all(|j| argmax(context.len() - 1 + j) == cont[j]);
            assert_eq!(score.is_greedy, greedy, "{cont:?}");
        }
    }
    // A continuation made of the greedy tokens is reported greedy.
    let dense = OmissionSet::dense(4).unwrap();
    let greedy = lm.greedy_uncached(&context, &dense, 3).unwrap();
    let scores = lm
        .continuation_logprobs(&context, &[greedy, vec![1, 2]], &dense)
        .unwrap();
    assert!(scores[0].is_greedy);
    assert!(lm
        .continuation_logprobs(&context, &[vec![]], &dense)
        .is_err());
}

/// Continuations split over several packed rows (down to one continuation per row) score
/// as they do in one row, under two sets at once.
#[test]
fn continuations_in_several_packs_score_as_in_one() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let context = vec![5u32, 60, 61, 62, 63];
    let continuations = vec![
        vec![70u32, 71, 72],
        vec![71],
        vec![80, 81, 82, 83, 84],
        vec![9, 9],
    ];
    let sets = [
        OmissionSet::dense(4).unwrap(),
        OmissionSet::parse("2", 4).unwrap(),
    ];
    let one = lm
        .continuation_logprobs_in_packs(&context, &continuations, &sets, 512)
        .unwrap();
    for cap in [0, 2, 4, 6] {
        let split = lm
            .continuation_logprobs_in_packs(&context, &continuations, &sets, cap)
            .unwrap();
        for (a, b) in one.iter().flatten().zip(split.iter().flatten()) {
            assert!(max_abs_diff(&a.logprobs, &b.logprobs) < 1e-5, "cap {cap}");
            assert_eq!(a.is_greedy, b.is_greedy, "cap {cap}");
        }
    }
}

/// Running several omission sets in one pass (blocks shared where the sets agree on every
/// earlier block) gives each set exactly what its own pass gives, with and without caches,
/// and the scores of every continuation equal scoring it from scratch under its set.
#[test]
fn multi_set_forward_equals_one_pass_per_set() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let model = lm.model();
    let sets: Vec<OmissionSet> = ["", "1", "1,2", "2", "0,3", "3", "1"]
        .iter()
        .map(|s| OmissionSet::parse(s, 4).unwrap())
        .collect();
    let prompt = [[3i64, 70, 80, 90, 100, 5]];
    let next = [[7i64, 8, 9, 10, 11, 12]];

    let shared = model
        .forward_hidden_sets(ids_tensor(&prompt), &sets, None)
        .unwrap();
    let mut caches: Vec<pudding_models::KvCache<B>> = sets
        .iter()
        .map(|s| pudding_models::KvCache::new(s.clone()))
        .collect();
    model
        .forward_hidden_sets(ids_tensor(&prompt), &sets, Some(&mut caches))
        .unwrap();
    let cached = model
        .forward_hidden_sets(ids_tensor(&next), &sets, Some(&mut caches))
        .unwrap();
    for (i, set) in sets.iter().enumerate() {
        let alone = model
            .forward_hidden(ids_tensor(&prompt), set, None)
            .unwrap();
        assert!(max_abs_diff(&values(shared[i].clone()), &values(alone)) < 1e-6);
        let mut cache = pudding_models::KvCache::new(set.clone());
        model
            .forward_hidden(ids_tensor(&prompt), set, Some(&mut cache))
            .unwrap();
        let step = model
            .forward_hidden(ids_tensor(&next), set, Some(&mut cache))
            .unwrap();
        assert!(max_abs_diff(&values(cached[i].clone()), &values(step)) < 1e-6);
        assert_eq!(caches[i].len(), 12);
        assert_eq!(caches[i].filled_blocks(), 4 - set.len());
    }

    let context = vec![5u32, 60, 61, 62];
    let continuations = vec![vec![70u32], vec![71, 72, 73], vec![9, 9]];
    let per_set = lm
        .continuation_logprobs_sets(&context, &continuations, &sets)
        .unwrap();
    assert_eq!(per_set.len(), sets.len());
    for (set, scores) in sets.iter().zip(&per_set) {
        for (cont, score) in continuations.iter().zip(scores) {
            let mut all = context.clone();
            all.extend_from_slice(cont);
            let full = lm.token_logprobs(&all, set).unwrap();
            assert!(max_abs_diff(&score.logprobs, &full[context.len() - 1..]) < 1e-4);
        }
    }
}

#[test]
fn multi_set_forward_rejects_bad_requests() {
    let (_d, lm) = tiny(&TinyLlamaSpec::default());
    let model = lm.model();
    let rows = [[1i64, 2, 3, 4, 5, 6]];
    assert!(model
        .forward_hidden_sets(ids_tensor(&rows), &[], None)
        .is_err());
    let a = OmissionSet::parse("1", 4).unwrap();
    let b = OmissionSet::parse("2", 4).unwrap();
    let wrong_model = OmissionSet::parse("1", 5).unwrap();
    assert!(model
        .forward_hidden_sets(ids_tensor(&rows), &[a.clone(), wrong_model], None)
        .is_err());
    // One cache per set, each made for its own set.
    let mut one = vec![pudding_models::KvCache::<B>::new(a.clone())];
    let err = model
        .forward_hidden_sets(ids_tensor(&rows), &[a.clone(), b.clone()], Some(&mut one))
        .unwrap_err();
    assert!(err.to_string().contains("one cache per set"));
    let mut swapped = vec![
        pudding_models::KvCache::<B>::new(b.clone()),
        pudding_models::KvCache::<B>::new(a.clone()),
    ];
    let err = model
        .forward_hidden_sets(ids_tensor(&rows), &[a, b], Some(&mut swapped))
        .unwrap_err();
    assert!(err.to_string().contains("one omission set must hold"));
}

#[test]
fn block_and_packed_inputs_past_the_context_are_errors() {
    let spec = TinyLlamaSpec::default();
    let (_d, lm) = tiny(&spec);
    let model = lm.model();
    let max = model.config().max_seq_len;
    let x = model.embed_tokens(ids_tensor(&[[1, 2, 3, 4, 5, 6]]));
    assert!(model.block_forward(0, x.clone(), 0).is_ok());
    assert!(matches!(
        model.block_forward(0, x, max - 5),
        Err(pudding_models::ModelError::PromptTooLong { .. })
    ));
    let visible = |_: usize, q: usize, k: usize| k <= q;
    assert!(model.packed_step(1, 3, &[0, 1, 2], visible).is_ok());
    assert!(matches!(
        model.packed_step(1, 3, &[0, 1], visible),
        Err(pudding_models::ModelError::Batch(_))
    ));
    assert!(matches!(
        model.packed_step(1, 2, &[0, max], visible),
        Err(pudding_models::ModelError::PromptTooLong { .. })
    ));
    assert!(matches!(
        lm.with_bos_token(Some(1 << 30)),
        Err(pudding_models::ModelError::TokenOutOfVocab { .. })
    ));
}

/// llama.cpp's Llama-3 `rope_freqs` factors, written out the way its converter computes
/// them (a divisor per frequency), independently of pudding's own frequency scaling.
fn llama_cpp_rope_factors(head_dim: usize, theta: f64, factor: f64, old_ctx: f64) -> Vec<f32> {
    let (low, high) = (1.0, 4.0);
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let divisor = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            divisor as f32
        })
        .collect()
}

/// RoPE scaling read from GGUF (Llama 3's `rope_freqs` tensor, linear `rope.scaling.*`
/// keys) gives the same model as the Hugging Face `rope_scaling` it was converted from,
/// and a different one from plain RoPE.
#[test]
fn gguf_rope_scaling_equals_the_hf_rope_scaling() {
    let spec = TinyLlamaSpec::default();
    let head_dim = spec.hidden / spec.n_heads;
    let dir = tempfile::tempdir().unwrap();
    let plain = load(&{
        let p = dir.path().join("plain.gguf");
        write_tiny_llama_gguf(&spec, &p).unwrap();
        p
    });
    let ids: Vec<u32> = (5..60).collect();
    let dense = OmissionSet::dense(spec.n_blocks).unwrap();
    let plain_lp = plain.position_log_probs(&ids, &dense).unwrap();

    let cases = [
        (
            serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
            "llama3",
        ),
        (
            serde_json::json!({"type": "linear", "factor": 4.0}),
            "linear",
        ),
    ];
    for (hf_scaling, kind) in cases {
        let hf = dir.path().join(format!("hf-{kind}"));
        write_tiny_llama_hf(&spec, &hf).unwrap();
        let config_path = hf.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config["rope_scaling"] = hf_scaling;
        std::fs::write(&config_path, config.to_string()).unwrap();

        let mut w = pudding_models::testing::tiny_llama_gguf(&spec).unwrap();
        if kind == "llama3" {
            let factors = llama_cpp_rope_factors(head_dim, 10_000.0, 8.0, 64.0);
            assert!(factors.contains(&1.0) && factors.contains(&8.0));
            w.add_tensor(
                "rope_freqs.weight",
                &[factors.len() as u64],
                &factors,
                GgmlType::F32,
            )
            .unwrap();
        } else {
            w.add_string("llama.rope.scaling.type", "linear");
            w.add_f32("llama.rope.scaling.factor", 4.0);
        }
        let gguf = dir.path().join(format!("{kind}.gguf"));
        w.write_to(&gguf).unwrap();

        let a = load(&gguf).position_log_probs(&ids, &dense).unwrap();
        let b = load(&hf).position_log_probs(&ids, &dense).unwrap();
        assert!(max_abs_diff(&a, &b) < 1e-4, "{kind}: GGUF vs HF");
        assert!(max_abs_diff(&a, &plain_lp) > 1e-3, "{kind}: no effect");
    }

    // Factors of the wrong length are a config error.
    let mut w = pudding_models::testing::tiny_llama_gguf(&spec).unwrap();
    w.add_tensor("rope_freqs.weight", &[3], &[1.0, 2.0, 3.0], GgmlType::F32)
        .unwrap();
    let bad = dir.path().join("bad.gguf");
    w.write_to(&bad).unwrap();
    assert!(matches!(
        LlamaLm::<B>::load(&bad, &Default::default()),
        Err(pudding_models::ModelError::Config(_))
    ));
}

/// A Hugging Face directory's `tokenizer_config.json` chat template is the one
/// `chat_prompt` renders; without it the ChatML turn is used; a list of named templates
/// or a template that is not Jinja is a load error.
#[test]
fn chat_template_from_tokenizer_config() {
    let (_dir, hf) = tiny_hf_dir();
    assert_eq!(
        load(&hf).chat_prompt("hi").unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    let config = hf.join("tokenizer_config.json");
    let template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}";
    std::fs::write(
        &config,
        serde_json::json!({ "chat_template": template }).to_string(),
    )
    .unwrap();
    let lm = load(&hf);
    assert_eq!(lm.chat_template(), Some(template));
    assert_eq!(lm.chat_prompt("hi").unwrap(), "<user>hi<bot>");
    for bad in [
        serde_json::json!({ "chat_template": [{"name": "default", "template": template}] }),
        serde_json::json!({ "chat_template": "{% for %}" }),
    ] {
        std::fs::write(&config, bad.to_string()).unwrap();
        assert!(
            LlamaLm::<B>::load(&hf, &Default::default()).is_err(),
            "{bad}"
        );
    }
}

/// `tokenizer_config.json`'s `add_bos_token` decides whether prompts start with BOS (off
/// when absent for Llama-family directories); it needs `bos_token_id` in `config.json`,
/// and a value that is not a boolean is a load error.
#[test]
fn add_bos_token_from_tokenizer_config() {
    let (_dir, hf) = tiny_hf_dir();
    assert!(!load(&hf).adds_bos());
    let tokenizer_config = hf.join("tokenizer_config.json");
    std::fs::write(&tokenizer_config, r#"{"add_bos_token": true}"#).unwrap();
    let err = LlamaLm::<B>::load(&hf, &Default::default()).err().unwrap();
    assert!(err.to_string().contains("bos_token_id"), "{err}");
    let config_path = hf.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["bos_token_id"] = serde_json::json!(1);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let lm = load(&hf);
    assert!(lm.adds_bos() && !lm.scores_with_bos());
    let ids = lm.encode_prompt("ab").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids[1..], lm.encode("ab").unwrap()[..]);
    std::fs::write(&tokenizer_config, r#"{"add_bos_token": false}"#).unwrap();
    assert!(!load(&hf).adds_bos());
    std::fs::write(&tokenizer_config, r#"{"add_bos_token": "yes"}"#).unwrap();
    let err = LlamaLm::<B>::load(&hf, &Default::default()).err().unwrap();
    assert!(err.to_string().contains("add_bos_token"), "{err}");
}
