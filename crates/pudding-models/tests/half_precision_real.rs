//! Half precision: SmolLM2 run entirely in bf16 (weights and activations, set as the CPU
//! device's default float type, as on a GPU) against the float64 numpy reference of
//! `fixtures/smollm2_reference.json`. One test per binary: the device's default dtype can
//! be set only once per process.

use burn::tensor::backend::set_default_float_dtype;
use burn::tensor::{DType, FloatDType};
use pudding_core::OmissionSet;
use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use pudding_models::{cpu_device, CpuBackend as B, LlamaLm};
use serde::Deserialize;

#[derive(Deserialize)]
struct Position {
    top_ids: Vec<u32>,
    top_logprobs: Vec<f32>,
}

#[derive(Deserialize)]
struct Case {
    ids: Vec<u32>,
    skip: Vec<usize>,
    positions: Vec<Position>,
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[test]
fn bf16_model_tracks_the_float64_reference() {
    let device = cpu_device();
    set_default_float_dtype::<B>(&device, FloatDType::BF16).unwrap();
    let path = ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap();
    let lm = LlamaLm::<B>::load(&path, &device).unwrap();
    assert_eq!(lm.model().embed.dtype(), DType::BF16);
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/smollm2_reference.json")).unwrap();
    let v = lm.model().config().vocab_size;
    let (mut agree, mut total, mut sum_diff, mut n_diff) = (0, 0, 0.0f64, 0);
    for case in reference.cases.iter().filter(|c| c.skip.len() < 10) {
        let skip = OmissionSet::new(case.skip.iter().copied(), 30).unwrap();
        let logp = lm.position_log_probs(&case.ids, &skip).unwrap();
        for (pos, want) in case.positions.iter().enumerate() {
            let row = &logp[pos * v..(pos + 1) * v];
            let ours_top = (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            agree += usize::from(ours_top as u32 == want.top_ids[0]);
            total += 1;
            for (&id, &lp) in want.top_ids.iter().zip(&want.top_logprobs) {
                sum_diff += f64::from((row[id as usize] - lp).abs());
                n_diff += 1;
            }
        }
    }
    let agreement = agree as f64 / total as f64;
    let mean_diff = sum_diff / n_diff as f64;
    eprintln!(
        "bf16: top-1 agreement {agreement:.3} over {total} positions, mean |diff| {mean_diff:.4}"
    );
    assert!(agreement >= 0.85, "top-1 agreement {agreement}");
    assert!(mean_diff < 0.22, "mean |log p diff| {mean_diff}");
}
