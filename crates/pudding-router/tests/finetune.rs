//! Full fine-tuning on the real all-MiniLM-L6-v2: the loss goes down on a learnable toy
//! labelling, every epoch is checkpointed, and the saved encoder reloads as a BERT
//! directory that differs from (but stays close to) the stock encoder.

use burn::backend::Autodiff;
use pudding_models::assets::ensure_minilm;
use pudding_models::bert::BertEncoder;
use pudding_models::{cpu_device, CpuBackend as B};
use pudding_router::config::FinetuneConfig;
use pudding_router::finetune::finetune;

#[test]
fn finetuning_lowers_the_loss_and_checkpoints_every_epoch() {
    let device = cpu_device();
    let dir = ensure_minilm().unwrap();
    let encoder = BertEncoder::<Autodiff<B>>::load(&dir, &device).unwrap();
    let animals = ["cat", "dog", "horse", "cow", "sheep", "goat"];
    let tools = ["hammer", "saw", "drill", "wrench", "chisel", "pliers"];
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (a, t) in animals.iter().zip(&tools) {
        texts.push(format!("Question: what sound does a {a} make?"));
        labels.push(vec![-0.5, -2.0]);
        texts.push(format!("Question: how do I use a {t}?"));
        labels.push(vec![-2.0, -0.5]);
    }
    let config = FinetuneConfig {
        hidden: 16,
        lr: 3e-4,
        epochs: 4,
        batch_size: 4,
        warmup_steps: 1,
        patience: 10,
        max_tokens: 16,
        ..Default::default()
    };
    let out = tempfile::tempdir().unwrap();
    let outcome = finetune::<Autodiff<B>>(
        encoder,
        &texts,
        &labels,
        &config,
        out.path(),
        &device,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(outcome.history.len(), 4);
    let first = outcome.history[0].train_mse;
    let last = outcome.history[3].train_mse;
    assert!(last < first, "train MSE {first} -> {last}");
    for epoch in 1..=4 {
        let e = out.path().join(format!("epoch-{epoch:03}"));
        assert!(e.join("encoder/model.safetensors").exists());
        assert!(e.join("head.safetensors").exists());
        assert!(e.join("metrics.json").exists());
    }
    let tuned = BertEncoder::<B>::load(&outcome.encoder_dir, &device).unwrap();
    let stock = BertEncoder::<B>::load(&dir, &device).unwrap();
    let a = tuned.embed_one("what sound does a cat make", 16).unwrap();
    let b = stock.embed_one("what sound does a cat make", 16).unwrap();
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cos = dot / (norm(&a) * norm(&b));
    assert!(a != b, "fine-tuning changed nothing");
    eprintln!("cosine to the stock embedding after fine-tuning: {cos}");
    assert!(cos > 0.0, "cosine to the stock embedding {cos}");

    // Saving and reloading is exact.
    let copy = tempfile::tempdir().unwrap();
    stock.save_dir(copy.path()).unwrap();
    let reloaded = BertEncoder::<B>::load(copy.path(), &device).unwrap();
    assert_eq!(
        reloaded
            .embed_one("what sound does a cat make", 16)
            .unwrap(),
        b
    );
}

/// More input tokens than the encoder has positions is refused before any training.
#[test]
fn max_tokens_past_the_encoders_positions_is_refused() {
    let device = cpu_device();
    let encoder = BertEncoder::<Autodiff<B>>::load(&ensure_minilm().unwrap(), &device).unwrap();
    let texts = vec!["a cat".to_string(), "a saw".to_string()];
    let labels = vec![vec![0.0, -1.0], vec![-1.0, 0.0]];
    let config = FinetuneConfig {
        max_tokens: 513,
        ..Default::default()
    };
    let out = tempfile::tempdir().unwrap();
    let err = finetune::<Autodiff<B>>(
        encoder,
        &texts,
        &labels,
        &config,
        out.path(),
        &device,
        &mut |_| {},
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, pudding_router::RouterError::Invalid(m) if m.contains("512 positions")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
