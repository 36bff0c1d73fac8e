//! Batched generation with left padding, and the memory-constrained (resident blocks)
//! mode, on tiny random checkpoints.

use burn::prelude::*;
use pudding_core::{GenerationConfig, OmissionSet, Sampling, SkippableLm};
use pudding_models::testing::{load_tiny_llama, write_tiny_llama_gguf, TinyLlamaSpec};
use pudding_models::{
    host_values, CpuBackend as B, KvCache, ModelError, ResidentLlamaLm, WeightMode,
};

fn set(text: &str) -> OmissionSet {
    OmissionSet::parse(text, 4).unwrap()
}

#[test]
fn padded_prefill_rows_equal_each_prompt_alone() {
    let (_d, lm) = load_tiny_llama::<B>(&TinyLlamaSpec::default()).unwrap();
    let model = lm.model();
    let prompts: [&[i64]; 3] = [&[5, 9, 40, 41, 42, 43, 44], &[7, 8], &[100, 101, 102, 103]];
    let width = 7;
    for skip in [set(""), set("1,2")] {
        let pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
        let mut flat = Vec::new();
        for p in prompts {
            flat.extend(std::iter::repeat_n(0i64, width - p.len()));
            flat.extend_from_slice(p);
        }
        let tokens = Tensor::<B, 2, Int>::from_data(
            TensorData::new(flat, [prompts.len(), width]),
            &Default::default(),
        );
        let mut cache = KvCache::with_left_padding(skip.clone(), pads);
        let batch =
            host_values(model.forward_last(tokens, &skip, Some(&mut cache)).unwrap()).unwrap();
        // One more decode step through the padded cache.
        let step = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![3i64, 4, 5], [3, 1]),
            &Default::default(),
        );
        let next = host_values(model.forward_last(step, &skip, Some(&mut cache)).unwrap()).unwrap();
        let v = model.config().vocab_size;
        for (row, p) in prompts.iter().enumerate() {
            let alone = |ids: Vec<i64>| {
                let n = ids.len();
                let t = Tensor::<B, 2, Int>::from_data(
                    TensorData::new(ids, [1, n]),
                    &Default::default(),
                );
                host_values(model.forward_last(t, &skip, None).unwrap()).unwrap()
            };
            let single = alone(p.to_vec());
            let mut extended = p.to_vec();
            extended.push([3i64, 4, 5][row]);
            let single_next = alone(extended);
            for (a, b) in [(&batch, &single), (&next, &single_next)] {
                let diff = a[row * v..(row + 1) * v]
                    .iter()
                    .zip(b.iter())
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(diff < 1e-4, "row {row} skip {skip}: {diff}");
            }
        }
    }
}

#[test]
fn batched_generation_equals_one_by_one() {
    let (_d, lm) = load_tiny_llama::<B>(&TinyLlamaSpec::default()).unwrap();
    let prompts: Vec<Vec<u32>> = ["the cat in the hat sat", "a", "hello there"]
        .iter()
        .map(|t| lm.encode(t).unwrap())
        .collect();
    for sampling in [
        Sampling::Greedy,
        Sampling::TopP {
            temperature: 0.8,
            top_p: 0.9,
            seed: 11,
        },
    ] {
        for skip in [set(""), set("0,3")] {
            let config = GenerationConfig {
                max_new_tokens: 12,
                sampling: sampling.clone(),
                stop_tokens: vec![lm.encode("hat").unwrap()[0]],
            };
            let batch = lm.generate_batch(&prompts, &skip, &config).unwrap();
            assert_eq!(batch.len(), prompts.len());
            for (p, g) in prompts.iter().zip(&batch) {
                let alone = lm.generate(p, &skip, &config).unwrap();
                assert_eq!(g.ids, alone.ids, "{sampling:?} skip {skip}");
                assert_eq!(g.finish, alone.finish);
                assert_eq!(g.text, alone.text);
            }
        }
    }
    let empty = lm
        .generate_batch(
            &[vec![1, 2], vec![]],
            &set(""),
            &GenerationConfig::default(),
        )
        .unwrap_err();
    assert!(matches!(empty, ModelError::EmptyPrompt), "{empty}");
}

#[test]
fn resident_mode_loads_only_kept_blocks_and_matches_the_full_model() {
    let spec = TinyLlamaSpec::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama_gguf(&spec, &path).unwrap();
    let (full_dir, full) = load_tiny_llama::<B>(&spec).unwrap();
    let ids = full.encode("the cat in the hat").unwrap();

    let (mut resident, report) = ResidentLlamaLm::<B>::open(
        &path,
        &set("1,2"),
        &Default::default(),
        WeightMode::Dequantized,
    )
    .unwrap();
    assert_eq!(report.loaded, vec![0, 3]);
    assert_eq!(resident.lm().model().resident_blocks(), vec![0, 3]);
    assert!(report.resident_bytes < report.full_bytes);
    assert_eq!(resident.resident_bytes(), report.resident_bytes);
    assert_eq!(
        resident.lm().fingerprint().n_blocks,
        full.fingerprint().n_blocks
    );
    let a = resident.lm().token_logprobs(&ids, &set("1,2")).unwrap();
    let b = full.token_logprobs(&ids, &set("1,2")).unwrap();
    assert_eq!(a, b);
    let err = resident.lm().token_logprobs(&ids, &set("")).unwrap_err();
    assert!(
        matches!(err, ModelError::BlockNotResident { block: 1 }),
        "{err}"
    );

    let report = resident.switch_to(&set("0")).unwrap();
    assert_eq!(report.loaded, vec![1, 2]);
    assert_eq!(report.evicted, vec![0]);
    assert_eq!(resident.lm().model().resident_blocks(), vec![1, 2, 3]);
    let a = resident.lm().token_logprobs(&ids, &set("0")).unwrap();
    let b = full.token_logprobs(&ids, &set("0")).unwrap();
    assert_eq!(a, b);
    // Switching to the dense model makes every block resident: the full size.
    let report = resident.switch_to(&set("")).unwrap();
    assert_eq!(report.loaded, vec![0]);
    assert_eq!(report.resident_bytes, report.full_bytes);
    let err = resident
        .switch_to(&OmissionSet::parse("1", 5).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("block"), "{err}");
    drop(full_dir);
}
