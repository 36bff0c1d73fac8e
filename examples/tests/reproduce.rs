//! `pudding reproduce` end to end on a tiny random model with the real task data and the
//! real MiniLM router encoder: every step runs, the tables are consistent with the
//! per-set evaluations, and a second run resumes without recomputing.

use pudding_cli::reproduce::{reproduce, set_label, ReproduceConfig};
use pudding_eval::runner::EvalReport;
use pudding_eval::tasks::TaskName;
use pudding_models::testing::{load_tiny_llama, TinyLlamaSpec};
use pudding_models::CpuBackend;

#[test]
fn reproduce_runs_every_step_and_resumes() {
    let spec = TinyLlamaSpec {
        n_blocks: 6,
        context: 512,
        ..Default::default()
    };
    let (_model_dir, lm) = load_tiny_llama::<CpuBackend>(&spec).unwrap();
    let out = tempfile::tempdir().unwrap();
    let cfg = ReproduceConfig {
        out: out.path().to_path_buf(),
        ks: vec![1],
        calib_tasks: vec![TaskName::ArcEasy, TaskName::Piqa],
        losses: "tl,tld".into(),
        calib: 2,
        baseline_calib: 2,
        baselines: vec!["shortgpt".into(), "taylor".into()],
        label_rows: 5,
        router_epochs: 3,
        router_encoder_layers: Some(2),
        eval_tasks: vec![TaskName::ArcEasy, TaskName::BoolQ],
        unseen_tasks: vec![TaskName::SciQ],
        eval_limit: Some(3),
        unseen_limit: Some(2),
        bench_repeats: 0,
        report_dir: None,
    };
    let first = reproduce(&lm, &cfg).unwrap();
    for file in [
        "pool-k1.json",
        "baseline-shortgpt-k1.json",
        "baseline-taylor-k1.json",
        "labels-k1.jsonl",
        "router-k1/router.json",
        "eval/paper/dense.json",
        "eval/unseen/dense.json",
        "E2E.md",
        "e2e.json",
        "omission-heatmap-k1.svg",
        "accuracy-vs-k.svg",
    ] {
        assert!(out.path().join(file).exists(), "{file} missing");
    }
    // The router uses the first two encoder layers, as configured, and says so.
    let card: pudding_router::router::RouterCard =
        pudding_core::io::read_json(&out.path().join("router-k1/router.json")).unwrap();
    assert_eq!(card.encoder_layers, Some(2));
    let methods: Vec<&str> = first.methods.iter().map(|m| m.method.as_str()).collect();
    for m in [
        "Dense",
        "ShortGPT",
        "Shortened LLaMA (Taylor+)",
        "PuDDing (routed)",
        "Oracle",
    ] {
        assert!(methods.contains(&m), "{m} missing from {methods:?}");
    }
    // Dense accuracy equals the dense evaluation file's reported metric.
    let dense: EvalReport =
        pudding_core::io::read_json(&out.path().join("eval/paper/dense.json")).unwrap();
    let row = first.methods.iter().find(|m| m.method == "Dense").unwrap();
    for (task, r) in &dense.tasks {
        assert!((row.tasks[task] - r.reported()).abs() < 1e-12, "{task}");
    }
    // Router quality and the method rows come from the same per-item outcomes.
    let oracle = first.methods.iter().find(|m| m.method == "Oracle").unwrap();
    let routed = first
        .methods
        .iter()
        .find(|m| m.method == "PuDDing (routed)")
        .unwrap();
    let q = first.router.iter().find(|q| q.items == "paper").unwrap();
    assert!((0.0..=1.0).contains(&q.top1_agreement));
    assert!(q.regret >= 0.0);
    assert!((routed.average - q.routed).abs() < 1e-12);
    assert!((oracle.average - q.oracle).abs() < 1e-12);
    // The task-level row: on a calibration task, the candidate best on average in that
    // task's labels, scored as its own static evaluation scores it.
    let labels = pudding_router::labels::read_labels(&out.path().join("labels-k1.jsonl")).unwrap();
    let pool = pudding_core::CandidatePool::load(&out.path().join("pool-k1.json")).unwrap();
    let mut sum = vec![0.0f64; pool.len()];
    for row in labels.rows.iter().filter(|r| r.task == "arc_easy") {
        for (c, v) in row.label.iter().enumerate() {
            sum[c] += f64::from(*v);
        }
    }
    let pick = (0..sum.len())
        .max_by(|&a, &b| sum[a].total_cmp(&sum[b]))
        .unwrap();
    let picked: EvalReport = pudding_core::io::read_json(
        &out.path()
            .join("eval/paper")
            .join(format!("{}.json", set_label(&pool.candidates[pick].set))),
    )
    .unwrap();
    let task_row = first
        .methods
        .iter()
        .find(|m| m.method == "Task-level choice (labels)")
        .unwrap();
    assert!((task_row.tasks["arc_easy"] - picked.tasks["arc_easy"].reported()).abs() < 1e-12);
    let counts = &first.choices[0];
    for task in ["arc_easy", "boolq"] {
        assert_eq!(counts.counts[task].iter().sum::<usize>(), 3, "{task}");
    }
    assert_eq!(counts.counts["sciq"].iter().sum::<usize>(), 2);
    assert!(std::fs::read_to_string(out.path().join("E2E.md"))
        .unwrap()
        .contains("Router quality"));
    assert_eq!(set_label(&counts.candidates[0]).split('_').count(), 1);

    // Everything exists now: a second run recomputes nothing and agrees.
    let pool_before = std::fs::read(out.path().join("pool-k1.json")).unwrap();
    let second = reproduce(&lm, &cfg).unwrap();
    assert_eq!(
        std::fs::read(out.path().join("pool-k1.json")).unwrap(),
        pool_before
    );
    assert_eq!(first.methods, second.methods);
    assert_eq!(first.router, second.router);

    // A report directory takes the tables and plots; --out keeps its own.
    let report = out.path().join("report-arc-easy");
    let e2e_before = std::fs::read(out.path().join("E2E.md")).unwrap();
    let only_arc = ReproduceConfig {
        eval_tasks: vec![TaskName::ArcEasy],
        unseen_tasks: Vec::new(),
        report_dir: Some(report.clone()),
        ..cfg.clone()
    };
    let third = reproduce(&lm, &only_arc).unwrap();
    assert_eq!(
        std::fs::read(out.path().join("E2E.md")).unwrap(),
        e2e_before
    );
    let md = std::fs::read_to_string(report.join("E2E.md")).unwrap();
    assert!(
        md.contains("no unseen tasks") && !md.contains("boolq"),
        "{md}"
    );
    assert!(report.join("e2e.json").exists() && report.join("accuracy-vs-k.svg").exists());
    let dense = |r: &pudding_cli::reproduce::Reproduction| {
        r.methods
            .iter()
            .find(|m| m.method == "Dense")
            .unwrap()
            .tasks["arc_easy"]
    };
    assert_eq!(dense(&third), dense(&first));
}
