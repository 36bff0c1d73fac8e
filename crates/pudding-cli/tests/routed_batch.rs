//! The `Pudding` pipeline on the real model with the embedded default router: several
//! prompts routed once each, grouped by omission set and generated as batches, give the
//! same decisions and tokens as routing and generating each prompt alone.

use pudding_cli::router_commands::load_encoder;
use pudding_core::{CandidatePool, GenerationConfig, Pudding, SkippableLm};
use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use pudding_models::bert::BertEncoder;
use pudding_models::{cpu_device, CpuBackend as B, LlamaLm};
use pudding_router::router::PuddingRouter;
use pudding_router::RouterError;

/// The shipped router-k3 card.
const K3_CARD: &str = include_str!("../../pudding-router/default/router-k3/router.json");

/// The embedded k = 3 pool with its shipped head, under `card` (the shipped
/// [`K3_CARD`] or an edited copy) and on `encoder`.
fn embedded_k3_router(
    card: &str,
    encoder: BertEncoder<B>,
) -> Result<PuddingRouter<B>, RouterError> {
    let pool: CandidatePool =
        serde_json::from_str(include_str!("../../pudding-router/default/pool-k3.json")).unwrap();
    PuddingRouter::from_bytes(
        card,
        include_bytes!("../../pudding-router/default/router-k3/head.safetensors"),
        pool,
        encoder,
        &cpu_device(),
    )
}

#[test]
fn grouped_batched_generation_equals_one_by_one() {
    let device = cpu_device();
    let lm = LlamaLm::<B>::load(&ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap(), &device).unwrap();
    let router = embedded_k3_router(K3_CARD, load_encoder::<B>(&device).unwrap()).unwrap();
    let pipeline = Pudding::new(&lm, &router).unwrap();
    let questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "Which gas do plants take in from the air?",
        "How many legs does a spider have?",
        "What is 2 + 2?",
    ];
    let requests: Vec<(String, Vec<u32>)> = questions
        .iter()
        .map(|q| {
            (
                q.to_string(),
                lm.encode(&lm.chat_prompt(q).unwrap()).unwrap(),
            )
        })
        .collect();
    let config = GenerationConfig {
        max_new_tokens: 12,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    let batched = pipeline.generate_many(&requests, &config).unwrap();
    assert_eq!(batched.len(), requests.len());
    let mut sets = std::collections::BTreeSet::new();
    for ((text, ids), (decision, generation)) in requests.iter().zip(&batched) {
        let (alone_decision, alone) = pipeline.generate(text, ids, &config).unwrap();
        assert_eq!(decision.candidate, alone_decision.candidate, "{text}");
        assert_eq!(generation.ids, alone.ids, "{text}");
        assert_eq!(generation.prompt_ids, *ids);
        sets.insert(decision.set.to_string());
    }
    eprintln!(
        "{} distinct omission sets among {} prompts",
        sets.len(),
        requests.len()
    );
}

/// The embedded router was trained on the encoder's first three layers: its card says so,
/// loading it truncates the stock encoder, and an encoder with fewer layers is refused.
#[test]
fn embedded_router_uses_three_encoder_layers_and_refuses_fewer() {
    let device = cpu_device();
    let load = |encoder| embedded_k3_router(K3_CARD, encoder);
    let stock = load_encoder::<B>(&device).unwrap();
    let too_small = stock.clone().truncate_layers(2).unwrap();
    let router = load(stock).unwrap();
    assert_eq!(router.card().encoder_layers, Some(3));
    let err = load(too_small)
        .err()
        .expect("a 2-layer encoder must be refused");
    assert!(matches!(err, RouterError::Mismatch(_)), "{err}");
}

/// A router trained on the prompt followed by the first answer choice reads that text for
/// a task item, and the pipeline refuses it for a bare prompt instead of routing on input
/// it was not trained on.
#[test]
fn a_router_trained_on_prompt_and_first_choice_reads_it_and_refuses_bare_prompts() {
    use pudding_core::{CoreError, PipelineError, Router};
    use pudding_eval::runner::{RoutedChooser, SetChooser};
    use pudding_eval::tasks::{load_task, Split, TaskName};

    let device = cpu_device();
    let lm = LlamaLm::<B>::load(&ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap(), &device).unwrap();
    let encoder = load_encoder::<B>(&device).unwrap();
    assert_eq!(K3_CARD.matches("\"input\": \"prompt\"").count(), 1);
    let card = K3_CARD.replace(
        "\"input\": \"prompt\"",
        "\"input\": \"prompt_and_first_choice\"",
    );
    let router = embedded_k3_router(&card, encoder.clone()).unwrap();
    assert!(router.reads_first_choice());
    // Its results file is labelled apart from the shipped router's, though the pool is one.
    let shipped = embedded_k3_router(K3_CARD, encoder.clone()).unwrap();
    assert_ne!(
        RoutedChooser(&router).label(),
        RoutedChooser(&shipped).label()
    );
    assert!(RoutedChooser(&shipped)
        .label()
        .starts_with(&format!("routed {}", &shipped.pool().id()[..12])));
    // A card that keeps too few input tokens for any text is refused.
    let max_tokens = format!("\"max_tokens\": {}", router.card().max_tokens);
    assert_eq!(card.matches(&max_tokens).count(), 1);
    let starved = embedded_k3_router(
        &card.replace(&max_tokens, "\"max_tokens\": 2"),
        encoder.clone(),
    );
    assert!(matches!(starved.err(), Some(RouterError::Invalid(_))));
    // So is one that keeps more than the encoder has positions (MiniLM: 512).
    let overlong = embedded_k3_router(&card.replace(&max_tokens, "\"max_tokens\": 513"), encoder);
    assert!(
        matches!(&overlong.err(), Some(RouterError::Invalid(m)) if m.contains("512 positions"))
    );
    assert!(matches!(
        Pudding::new(&lm, &router),
        Err(PipelineError::Core(CoreError::RouterNeedsAnswerChoice))
    ));
    let items = load_task(TaskName::ArcEasy, Split::Validation).unwrap();
    let mut chooser = RoutedChooser(&router);
    // Items on which the two texts route differently tell which one the chooser read.
    let mut telling = 0;
    for item in &items[..40] {
        let text = item.router_text(true);
        assert!(text.starts_with(&item.prompt) && text.len() > item.prompt.len());
        let choice = chooser.choose(item).unwrap();
        let expected = router.route(&text).unwrap();
        assert_eq!(choice.candidate, Some(expected.candidate));
        assert_eq!(choice.set, expected.set);
        if router.route(&item.prompt).unwrap().candidate != expected.candidate {
            telling += 1;
        }
    }
    assert!(telling > 0, "no item routes differently on the two texts");
}

/// Counts the float parameters of a module.
struct CountParams(usize);

impl burn::module::ModuleVisitor<B> for CountParams {
    fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<burn::tensor::Tensor<B, D>>) {
        self.0 += 1;
    }
}

/// Adds a small offset to the float parameter at position `target` in visiting order,
/// leaving the others as they are.
struct NudgeParam {
    target: usize,
    seen: usize,
}

impl burn::module::ModuleMapper<B> for NudgeParam {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<B, D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<B, D>> {
        self.seen += 1;
        if self.seen - 1 == self.target {
            param.map(|t| t.add_scalar(1e-3))
        } else {
            param
        }
    }
}

/// A routed results file is labelled by the router's weights as well as its card: the
/// same card with one head weight changed, or on an encoder with one weight changed, is
/// another router, while the same router saved and loaded back is the same one.
#[test]
fn router_identity_follows_the_weights_not_only_the_card() {
    use pudding_core::Router;
    let device = cpu_device();
    let pool: CandidatePool =
        serde_json::from_str(include_str!("../../pudding-router/default/pool-k3.json")).unwrap();
    let encoder = load_encoder::<B>(&device).unwrap();
    let shipped = embedded_k3_router(K3_CARD, encoder.clone()).unwrap();
    assert_eq!(
        shipped.identity(),
        embedded_k3_router(K3_CARD, encoder.clone())
            .unwrap()
            .identity()
    );
    let dir = tempfile::tempdir().unwrap();
    shipped.save(dir.path()).unwrap();
    let reloaded = PuddingRouter::load(dir.path(), pool.clone(), encoder.clone(), &device).unwrap();
    assert_eq!(reloaded.identity(), shipped.identity());

    // The last four bytes are the last value of the head's data section: flip its lowest
    // mantissa bit.
    let mut head =
        include_bytes!("../../pudding-router/default/router-k3/head.safetensors").to_vec();
    let last = head.len() - 4;
    head[last] ^= 1;
    let other_head =
        PuddingRouter::from_bytes(K3_CARD, &head, pool, encoder.clone(), &device).unwrap();
    assert_ne!(other_head.identity(), shipped.identity());

    // The router keeps the stock encoder's first three layers: nudge the third's last
    // LayerNorm bias (the last parameter of a 3-layer encoder).
    let three = encoder.clone().truncate_layers(3).unwrap();
    let mut count = CountParams(0);
    burn::module::Module::visit(&three, &mut count);
    let nudged = burn::module::Module::map(
        encoder,
        &mut NudgeParam {
            target: count.0 - 1,
            seen: 0,
        },
    );
    let other_encoder = embedded_k3_router(K3_CARD, nudged).unwrap();
    assert_ne!(other_encoder.identity(), shipped.identity());
}
