//! Router training, saving/loading, labels with resume, and mismatch errors.

use burn::backend::Autodiff;
use pudding_core::{Candidate, CandidatePool, OmissionSet, SkippableLm};
use pudding_eval::tasks::{load_task, Split, TaskName};
use pudding_models::sampling::SplitMix64;
use pudding_models::testing::{write_tiny_llama_gguf, TinyLlamaSpec};
use pudding_models::{CpuBackend as B, LlamaLm};
use pudding_router::config::TrainConfig;
use pudding_router::fit::route_metrics;
use pudding_router::head::RouterHead;
use pudding_router::labels::{generate_labels, read_labels, RouterInput};
use pudding_router::train::train_head;

/// The head's predictions (row-major `[rows, m]`) for `inputs[rows]`.
fn predict(head: &RouterHead<B>, inputs: &[Vec<f32>], rows: &[usize]) -> Vec<f32> {
    let d = inputs[0].len();
    let x = burn::tensor::Tensor::<B, 2>::from_data(
        burn::tensor::TensorData::new(
            rows.iter()
                .flat_map(|&i| inputs[i].clone())
                .collect::<Vec<f32>>(),
            [rows.len(), d],
        ),
        &Default::default(),
    );
    head.forward(x).into_data().to_vec::<f32>().unwrap()
}

/// Unusable settings are refused before training, not clamped.
#[test]
fn unusable_training_settings_are_errors() {
    let inputs = vec![vec![0.0f32; 4]; 10];
    let labels = vec![vec![0.0f32; 2]; 10];
    let bad = [
        TrainConfig {
            batch_size: 0,
            ..Default::default()
        },
        TrainConfig {
            val_fraction: 1.5,
            ..Default::default()
        },
        TrainConfig {
            val_fraction: f64::NAN,
            ..Default::default()
        },
        TrainConfig {
            lr: -1.0,
            ..Default::default()
        },
        TrainConfig {
            grad_clip: 0.0,
            ..Default::default()
        },
        TrainConfig {
            hidden: 0,
            ..Default::default()
        },
        TrainConfig {
            warmup_fraction: 1.0,
            ..Default::default()
        },
    ];
    for config in bad {
        assert!(config.validate().is_err(), "{config:?}");
        let err =
            train_head::<Autodiff<B>>(&inputs, &labels, &config, &Default::default(), &mut |_| {})
                .err()
                .expect("refused");
        assert!(
            matches!(err, pudding_router::RouterError::Invalid(_)),
            "{err}"
        );
    }
    assert!(TrainConfig::default().validate().is_ok());
}

/// Too few rows to split, and a head file holding NaN, are typed errors.
#[test]
fn unsplittable_rows_and_non_finite_head_weights_are_errors() {
    for n in [0, 1] {
        assert!(matches!(
            pudding_router::fit::split_rows(n, 0.2, 7),
            Err(pudding_router::RouterError::Invalid(_))
        ));
    }
    let (val, train) = pudding_router::fit::split_rows(2, 0.2, 7).unwrap();
    assert_eq!((val.len(), train.len()), (1, 1));

    let (d_in, hidden, m) = (2usize, 3usize, 2usize);
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let mut hidden_weight = vec![0.1f32; d_in * hidden];
    hidden_weight[4] = f32::NAN;
    let tensors = [
        ("hidden.weight", vec![d_in, hidden], bytes(&hidden_weight)),
        ("hidden.bias", vec![hidden], bytes(&[0.0; 3])),
        ("out.weight", vec![hidden, m], bytes(&[0.2; 6])),
        ("out.bias", vec![m], bytes(&[0.0; 2])),
    ];
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let file = safetensors::serialize(views, None).unwrap();
    let Err(err) = RouterHead::<B>::from_bytes(
        &file,
        std::path::Path::new("head.safetensors"),
        d_in,
        m,
        &Default::default(),
    ) else {
        panic!("a head holding NaN loaded");
    };
    assert!(
        matches!(err, pudding_router::RouterError::Malformed { .. })
            && err.to_string().contains("non-finite"),
        "{err}"
    );
}

/// Labels that are a fixed linear function of the inputs: a head must learn to route.
#[test]
fn head_learns_a_learnable_routing_problem() {
    let mut rng = SplitMix64::new(3);
    let (n, d, m) = (300, 16, 4);
    let w: Vec<f32> = (0..d * m).map(|_| rng.next_f64() as f32 - 0.5).collect();
    let inputs: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..d).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect())
        .collect();
    let labels: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| {
            (0..m)
                .map(|j| (0..d).map(|i| x[i] * w[i * m + j]).sum::<f32>() - 2.0)
                .collect()
        })
        .collect();
    let config = TrainConfig {
        hidden: 32,
        epochs: 60,
        lr: 3e-3,
        ..Default::default()
    };
    let outcome =
        train_head::<Autodiff<B>>(&inputs, &labels, &config, &Default::default(), &mut |_| {})
            .unwrap();
    let first = &outcome.history[0];
    assert!(
        outcome.best.val_mse < first.val_mse / 4.0,
        "{:?}",
        outcome.best
    );
    assert!(outcome.best.val_top1 > 0.6, "{:?}", outcome.best);
    assert_eq!(outcome.val_rows.len(), 60);
    // Save / load gives the same predictions; wrong shapes are a typed error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("head.safetensors");
    outcome.head.save(&path).unwrap();
    let loaded = RouterHead::<B>::load(&path, d, m, &Default::default()).unwrap();
    let x = burn::tensor::Tensor::<B, 2>::from_data(
        burn::tensor::TensorData::new(inputs[0].clone(), [1, d]),
        &Default::default(),
    );
    let a = outcome
        .head
        .forward(x.clone())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let b = loaded.forward(x).into_data().to_vec::<f32>().unwrap();
    assert_eq!(a, b);
    assert!(RouterHead::<B>::load(&path, d, m + 1, &Default::default()).is_err());
    std::fs::write(&path, b"garbage").unwrap();
    assert!(RouterHead::<B>::load(&path, d, m, &Default::default()).is_err());
}

/// With `center_labels`, a per-row offset unrelated to the input (a prompt's overall
/// difficulty) is removed before training: the head learns the differences between
/// candidates, its predictions are centred, and it routes as well as on offset-free labels.
#[test]
fn centred_labels_ignore_each_rows_offset() {
    assert_eq!(
        pudding_router::fit::centered(&[1.0, 2.0, 6.0]),
        vec![-2.0, -1.0, 3.0]
    );
    let mut rng = SplitMix64::new(5);
    let (n, d, m) = (300, 16, 4);
    let w: Vec<f32> = (0..d * m).map(|_| rng.next_f64() as f32 - 0.5).collect();
    let inputs: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..d).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect())
        .collect();
    let labels: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| {
            let offset = rng.next_f64() as f32 * -8.0;
            (0..m)
                .map(|j| (0..d).map(|i| x[i] * w[i * m + j]).sum::<f32>() + offset)
                .collect()
        })
        .collect();
    let config = TrainConfig {
        hidden: 32,
        epochs: 60,
        lr: 3e-3,
        center_labels: true,
        ..Default::default()
    };
    let outcome =
        train_head::<Autodiff<B>>(&inputs, &labels, &config, &Default::default(), &mut |_| {})
            .unwrap();
    assert!(outcome.best.val_top1 > 0.6, "{:?}", outcome.best);
    let rows = &outcome.val_rows;
    let pred = predict(&outcome.head, &inputs, rows);
    for p in pred.chunks(m) {
        let mean = p.iter().sum::<f32>() / m as f32;
        assert!(mean.abs() < 0.5, "prediction {p:?} is not centred");
    }
}

/// burn-train's loop with our best-epoch strategy: the head returned is the best epoch's
/// (its validation metrics, recomputed here from its predictions, are the logged ones),
/// the best epoch is the lowest validation MSE of the history, and training stops
/// `patience` epochs after it when the labels are noise.
#[test]
fn training_keeps_the_best_epoch_and_stops_early() {
    let mut rng = SplitMix64::new(11);
    let (n, d, m) = (80, 8, 3);
    let inputs: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..d).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect())
        .collect();
    // Labels unrelated to the inputs: validation MSE bottoms out early, then overfits.
    let labels: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..m).map(|_| rng.next_f64() as f32 * 4.0 - 6.0).collect())
        .collect();
    let config = TrainConfig {
        hidden: 64,
        epochs: 300,
        lr: 1e-2,
        patience: 5,
        batch_size: 16,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let outcome =
        train_head::<Autodiff<B>>(&inputs, &labels, &config, &Default::default(), &mut |e| {
            seen.push(e.epoch)
        })
        .unwrap();
    let epochs: Vec<usize> = outcome.history.iter().map(|e| e.epoch).collect();
    assert_eq!(seen, epochs);
    assert_eq!(epochs, (1..=epochs.len()).collect::<Vec<_>>());
    assert!(
        epochs.len() < config.epochs,
        "no early stop: {} epochs",
        epochs.len()
    );
    let lowest = outcome
        .history
        .iter()
        .min_by(|a, b| a.val_mse.total_cmp(&b.val_mse))
        .unwrap();
    assert_eq!(outcome.best, *lowest);
    assert_eq!(epochs.len(), outcome.best.epoch + config.patience);
    // The returned weights are that epoch's: recompute its validation metrics.
    let rows = &outcome.val_rows;
    let pred = predict(&outcome.head, &inputs, rows);
    let y: Vec<f32> = rows.iter().flat_map(|&i| labels[i].clone()).collect();
    let (mse, top1, regret) = route_metrics(&pred, &y, m);
    assert!(
        (mse - outcome.best.val_mse).abs() < 1e-4,
        "{mse} vs {:?}",
        outcome.best
    );
    assert!((top1 - outcome.best.val_top1).abs() < 1e-9);
    assert!((regret - outcome.best.val_regret).abs() < 1e-4);
}

#[test]
fn labels_resume_and_reject_another_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama_gguf(&TinyLlamaSpec::default(), &path).unwrap();
    let lm = LlamaLm::<B>::load(&path, &Default::default()).unwrap();
    let pool = CandidatePool::new(
        lm.fingerprint().clone(),
        ["1", "2", "1,2"]
            .iter()
            .map(|s| Candidate {
                set: OmissionSet::parse(s, 4).unwrap(),
                provenance: serde_json::Value::Null,
            })
            .collect(),
    )
    .unwrap();
    let items = load_task(TaskName::ArcEasy, Split::Train).unwrap();
    let out = dir.path().join("labels.jsonl");
    generate_labels(
        &lm,
        &pool,
        &items[..3],
        RouterInput::Prompt,
        &out,
        &mut |_, _| {},
    )
    .unwrap();
    // Simulate an interrupted append, then resume to 5 rows: only 2 new rows computed.
    let mut text = std::fs::read_to_string(&out).unwrap();
    text.push_str("{\"task\":\"arc_e");
    std::fs::write(&out, text).unwrap();
    let mut calls = 0;
    let labels = generate_labels(
        &lm,
        &pool,
        &items[..5],
        RouterInput::Prompt,
        &out,
        &mut |_, _| calls += 1,
    )
    .unwrap();
    assert_eq!(labels.rows.len(), 5);
    assert_eq!(calls, 3, "one initial progress call + two new rows");
    assert!(labels
        .rows
        .iter()
        .all(|r| r.label.len() == 3 && r.label.iter().all(|v| *v < 0.0)));
    assert_eq!(labels.rows[0].text, items[0].prompt);
    assert_eq!(read_labels(&out).unwrap(), labels);
    // A last line that ends in a newline but is not a row (a crash before the data reached
    // the disk can leave zeros or stale bytes) is also recomputed, not an error forever.
    let mut text = std::fs::read_to_string(&out).unwrap();
    let before = text.clone();
    text.push_str("\0\0\0{\"task\": 12}\n");
    std::fs::write(&out, text).unwrap();
    let again = generate_labels(
        &lm,
        &pool,
        &items[..5],
        RouterInput::Prompt,
        &out,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(again, labels);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), before);
    // Another pool (different sets) refuses this labels file.
    let other = CandidatePool::new(
        lm.fingerprint().clone(),
        vec![Candidate {
            set: OmissionSet::parse("3", 4).unwrap(),
            provenance: serde_json::Value::Null,
        }],
    )
    .unwrap();
    assert!(generate_labels(
        &lm,
        &other,
        &items[..5],
        RouterInput::Prompt,
        &out,
        &mut |_, _| {}
    )
    .is_err());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        before,
        "left untouched"
    );

    // A file that is not a labels file (text, or the pool itself given as --out) is
    // refused before anything is cut from it, however often the command is run.
    let pool_path = dir.path().join("pool.json");
    pool.save(&pool_path).unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(
        &notes,
        "first line\nsecond line\nthird line without newline",
    )
    .unwrap();
    for path in [&pool_path, &notes] {
        let before = std::fs::read(path).unwrap();
        for _ in 0..2 {
            let err = generate_labels(
                &lm,
                &pool,
                &items[..1],
                RouterInput::Prompt,
                path,
                &mut |_, _| {},
            )
            .unwrap_err();
            assert!(err.to_string().contains("not a labels file"), "{err}");
        }
        assert_eq!(std::fs::read(path).unwrap(), before, "{}", path.display());
    }
    CandidatePool::load(&pool_path).unwrap();
}
