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
        eval_jobs: 2,
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
    // The oracle row recomputed here from the per-set files: per item, the pool candidate
    // with the highest gold log-likelihood, scored by the task's reported metric.
    let pool1 = pudding_core::CandidatePool::load(&out.path().join("pool-k1.json")).unwrap();
    let mut oracle_tasks = Vec::new();
    for task in [TaskName::ArcEasy, TaskName::BoolQ] {
        let reports: Vec<EvalReport> = pool1
            .candidates
            .iter()
            .map(|c| {
                pudding_core::io::read_json(
                    &out.path()
                        .join("eval/paper")
                        .join(format!("{}.json", set_label(&c.set))),
                )
                .unwrap()
            })
            .collect();
        let items = |c: usize| &reports[c].tasks[task.name()].items;
        assert_eq!(items(0).len(), 3);
        let mut correct = 0usize;
        for i in 0..3 {
            let gold_ll = |c: usize| items(c)[i].loglikelihoods[items(c)[i].gold];
            let best = (0..pool1.len()).fold(0, |b, c| if gold_ll(c) > gold_ll(b) { c } else { b });
            let item = &items(best)[i];
            let pred = match task.reported_metric() {
                pudding_eval::tasks::Metric::AccNorm => item.pred_norm,
                _ => item.pred,
            };
            correct += usize::from(pred == item.gold);
        }
        let acc = correct as f64 / 3.0;
        assert!((oracle.tasks[task.name()] - acc).abs() < 1e-12, "{task:?}");
        oracle_tasks.push(acc);
    }
    let mean_oracle = oracle_tasks.iter().sum::<f64>() / oracle_tasks.len() as f64;
    assert!((oracle.average - mean_oracle).abs() < 1e-12);
    // ... and equals the oracle evaluation run item by item (`OracleChooser`, which scores
    // every candidate itself).
    let oracle_file = out.path().join("oracle-arc-easy.json");
    let by_chooser = pudding_eval::runner::run_eval(
        &lm,
        &pudding_eval::runner::EvalConfig {
            tasks: vec![TaskName::ArcEasy],
            limit: Some(3),
            checkpoint_every: 50,
            jobs: 1,
            shard: None,
        },
        &mut pudding_eval::runner::OracleChooser {
            lm: &lm,
            pool: &pool1,
        },
        &oracle_file,
        &mut pudding_eval::tasks::load_task,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert!((by_chooser.tasks["arc_easy"].reported() - oracle_tasks[0]).abs() < 1e-12);
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

    // Everything exists now: a second run recomputes nothing (every pool, baseline, label,
    // router and evaluation file is byte-identical afterwards) and agrees.
    let inputs_before = snapshot(out.path());
    assert!(inputs_before.len() > 10, "{:?}", inputs_before.keys());
    let second = reproduce(&lm, &cfg).unwrap();
    let after = snapshot(out.path());
    let changed: Vec<&String> = after
        .keys()
        .chain(inputs_before.keys())
        .filter(|k| after.get(*k) != inputs_before.get(*k))
        .collect();
    for k in &changed {
        let (a, b) = (
            String::from_utf8_lossy(&inputs_before[*k]).to_string(),
            String::from_utf8_lossy(&after[*k]).to_string(),
        );
        for (x, y) in a.lines().zip(b.lines()) {
            if x != y {
                eprintln!("{k}: {x} -> {y}");
            }
        }
    }
    assert!(changed.is_empty(), "changed by the second run: {changed:?}");
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

/// Every file under `dir` except the report (tables, plots, `e2e.json`), by relative path.
fn snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let report = rel == "E2E.md" || rel == "e2e.json" || rel.ends_with(".svg");
            if !report {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A results file's text with each recorded `"seconds"` value set to 0: wall-clock times
/// are the only bytes in which two runs of the same evaluation differ.
fn without_seconds(text: &str) -> String {
    let key = "\"seconds\": ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        out.push_str(&rest[..at + key.len()]);
        out.push('0');
        rest = rest[at + key.len()..].trim_start_matches(|c: char| {
            c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')
        });
    }
    out.push_str(rest);
    out
}

#[test]
fn staged_and_sharded_reproduce_writes_what_one_process_writes() {
    use pudding_cli::reproduce::{merge_stage, run_stage, Stage};
    use pudding_core::Shard;
    let spec = TinyLlamaSpec {
        n_blocks: 6,
        context: 512,
        ..Default::default()
    };
    let (_model_dir, lm) = load_tiny_llama::<CpuBackend>(&spec).unwrap();
    let cfg = |out: &std::path::Path| ReproduceConfig {
        out: out.to_path_buf(),
        ks: vec![1],
        calib_tasks: vec![TaskName::ArcEasy, TaskName::Piqa],
        losses: "tl,tld".into(),
        calib: 2,
        baseline_calib: 2,
        baselines: vec!["shortgpt".into(), "shortened-ppl".into()],
        label_rows: 4,
        router_epochs: 2,
        router_encoder_layers: Some(1),
        eval_tasks: vec![TaskName::ArcEasy, TaskName::BoolQ],
        unseen_tasks: vec![TaskName::SciQ],
        eval_limit: Some(3),
        unseen_limit: Some(2),
        eval_jobs: 1,
        bench_repeats: 0,
        report_dir: None,
    };
    let one = tempfile::tempdir().unwrap();
    let staged = tempfile::tempdir().unwrap();
    reproduce(&lm, &cfg(one.path())).unwrap();

    // As the cluster driver chains them: 3 shards each of pools (4 searches) and baselines
    // (2 runs: one shard has none), a merge, labels and evaluation, a merge, the routers,
    // then the whole command, which finds every output and writes the report.
    let c = cfg(staged.path());
    let three = |stage: Stage| {
        for i in 0..3 {
            run_stage(&lm, &c, stage, Some(Shard::new(i, 3).unwrap())).unwrap();
        }
    };
    three(Stage::Pools);
    three(Stage::Baselines);
    merge_stage(&c).unwrap();
    three(Stage::Labels);
    three(Stage::Eval);
    merge_stage(&c).unwrap();
    assert!(run_stage(&lm, &c, Stage::Routers, Some(Shard::new(0, 2).unwrap())).is_err());
    run_stage(&lm, &c, Stage::Routers, None).unwrap();
    reproduce(&lm, &c).unwrap();

    let files = |dir: &std::path::Path| {
        let mut all = snapshot(dir);
        for name in [
            "E2E.md",
            "e2e.json",
            "accuracy-vs-k.svg",
            "omission-heatmap-k1.svg",
        ] {
            all.insert(name.into(), std::fs::read(dir.join(name)).unwrap());
        }
        all.retain(|name, _| !name.contains(".shard-"));
        all
    };
    let (a, b) = (files(one.path()), files(staged.path()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.contains_key("eval/paper/dense.json") && a.contains_key("labels-k1.jsonl"));
    for (name, bytes) in &a {
        let (x, y) = (
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&b[name]),
        );
        if name.starts_with("eval/") {
            assert_eq!(without_seconds(&x), without_seconds(&y), "{name}");
        } else {
            assert!(x == y, "{name} differs:\n{x}\n---\n{y}");
        }
    }

    // Out of order, a stage names the one to run first.
    let early = tempfile::tempdir().unwrap();
    let err = run_stage(&lm, &cfg(early.path()), Stage::Labels, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("run the pools stage"), "{err}");
}
