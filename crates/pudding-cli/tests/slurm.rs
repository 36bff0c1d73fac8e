//! Sharded jobs on a real one-node Slurm cluster (Debian's slurmctld and slurmd, installed
//! by `scripts/slurm/local-cluster.sh install` when missing, started in a temporary
//! directory and stopped by PID at the end, also when the test fails): the real `pudding`
//! binary runs as arrays (eval, labels, candidates) through `scripts/slurm/submit.sh`, and
//! one greedy search phase by phase through `scripts/slurm/search.sh`, and `pudding
//! reproduce` as chained arrays of its stages through `scripts/slurm/reproduce.sh`, on
//! real SmolLM2 and real task data, and the merged outputs are compared byte for byte with
//! one process's.

use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm")
}

/// A running one-node cluster; stopped when dropped (after a panic too).
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        let install = Command::new(scripts().join("local-cluster.sh"))
            .arg("install")
            .status()
            .expect("run local-cluster.sh");
        assert!(install.success(), "Slurm is not installed and could not be");
        let dir = tempfile::tempdir().unwrap();
        let cluster = Self { dir };
        let start = Command::new(scripts().join("local-cluster.sh"))
            .arg("start")
            .arg(cluster.dir.path())
            .output()
            .unwrap();
        assert!(
            start.status.success(),
            "the cluster did not start: {}",
            String::from_utf8_lossy(&start.stderr)
        );
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A command with this cluster's configuration and the binary under test.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, workdir: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", self.conf())
            .env("PUDDING_BIN", env!("CARGO_BIN_EXE_pudding"))
            .current_dir(workdir);
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(scripts().join("local-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn pudding(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pudding {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A results file's text with every recorded time set to 0 (the only bytes that differ
/// between two runs of the same evaluation).
fn without_times(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let key = "\"seconds\": ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
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

fn json_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// Every file under `dir` but the shard outputs, by path relative to `dir`.
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.contains(".shard-") {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(rel, path);
            }
        }
    }
    out
}

#[test]
fn sharded_eval_labels_and_candidates_on_a_slurm_array_merge_into_one_process_output() {
    let model = ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap();
    let model = model.to_str().unwrap();
    let pool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pudding-router/default/pool-k3.json");
    let pool = pool.to_str().unwrap();
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let eval_args = [
        "eval",
        "--model",
        model,
        "--skip",
        ";3,7,19",
        "--tasks",
        "arc_easy,piqa",
        "--limit",
        "6",
    ];
    let labels_args = [
        "labels",
        "--model",
        model,
        "--pool",
        pool,
        "--tasks",
        "arc_easy,piqa",
        "--rows",
        "3",
    ];
    let candidates_args = [
        "candidates",
        "--model",
        model,
        "--tasks",
        "arc_easy,piqa",
        "--losses",
        "tl,tld",
        "-k",
        "1",
        "--calib",
        "2",
    ];
    let submit_n = |shards: &str, out: &str, args: &[&str]| {
        cluster
            .command(scripts().join("submit.sh"), work.path())
            .args(["--shards", shards, "--out", out, "--wait", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    let submit = |out: &str, args: &[&str]| submit_n("4", out, args);

    // Two omission sets in one pass (a results directory), a labels file, and a pool's
    // four (task, loss) searches in three shards, each as an array with its merge job
    // chained after it.
    for (shards, out, args) in [
        ("4", w("eval"), &eval_args[..]),
        ("4", w("labels.jsonl"), &labels_args[..]),
        ("3", w("pool.json"), &candidates_args[..]),
    ] {
        let run = submit_n(shards, &out, args);
        assert!(
            run.status.success(),
            "submit.sh failed: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    for i in 0..4 {
        assert!(work.path().join(format!("eval.shard-{i}-of-4")).is_dir());
        assert!(work
            .path()
            .join(format!("labels.shard-{i}-of-4.jsonl"))
            .is_file());
    }
    // The same jobs in one process.
    pudding(&[&eval_args[..], &["--out", &w("single")]].concat());
    pudding(&[&labels_args[..], &["--out", &w("single.jsonl")]].concat());
    let names = json_names(&work.path().join("single"));
    assert_eq!(names, ["dense.json", "skip-3_7_19.json"]);
    assert_eq!(json_names(&work.path().join("eval")), names);
    for name in &names {
        assert_eq!(
            without_times(&work.path().join("eval").join(name)),
            without_times(&work.path().join("single").join(name)),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(w("labels.jsonl")).unwrap(),
        std::fs::read(w("single.jsonl")).unwrap()
    );
    pudding(&[&candidates_args[..], &["--out", &w("single-pool.json")]].concat());
    for ext in ["json", "md", "svg"] {
        assert_eq!(
            std::fs::read(w(&format!("pool.{ext}"))).unwrap(),
            std::fs::read(w(&format!("single-pool.{ext}"))).unwrap(),
            "pool.{ext}"
        );
    }
    // One search spread over three workers: per phase an array scores a third of the
    // trials and a merge job adds the phase to the checkpoint; the last job writes the
    // pool. Checkpoint and pool equal one process's, byte for byte.
    let search_args = |checkpoints: &str, out: &str| {
        [
            "candidates",
            "--model",
            model,
            "--tasks",
            "arc_easy",
            "--losses",
            "tl",
            "-k",
            "2",
            "--calib",
            "2",
            "--checkpoints",
            checkpoints,
            "--out",
            out,
        ]
        .map(String::from)
    };
    let ckpt = w("ckpt");
    let spread = cluster
        .command(scripts().join("search.sh"), work.path())
        .args(["--shards", "3", "--rounds", "2", "--wait", "--checkpoint"])
        .arg(Path::new(&ckpt).join("arc_easy-tl-k2.json"))
        .arg("--")
        .args(search_args(&ckpt, &w("search.json")))
        .output()
        .unwrap();
    assert!(
        spread.status.success(),
        "search.sh failed: {}{}",
        String::from_utf8_lossy(&spread.stdout),
        String::from_utf8_lossy(&spread.stderr)
    );
    let single_args = search_args(&w("ckpt-single"), &w("search-single.json"));
    let single_args: Vec<&str> = single_args.iter().map(String::as_str).collect();
    pudding(&single_args);
    assert_eq!(
        std::fs::read(Path::new(&ckpt).join("arc_easy-tl-k2.json")).unwrap(),
        std::fs::read(work.path().join("ckpt-single/arc_easy-tl-k2.json")).unwrap(),
        "checkpoint"
    );
    for ext in ["json", "md", "svg"] {
        assert_eq!(
            std::fs::read(w(&format!("search.{ext}"))).unwrap(),
            std::fs::read(w(&format!("search-single.{ext}"))).unwrap(),
            "search.{ext}"
        );
    }

    // `pudding reproduce` as chained arrays of its stages (3 shards each) equals one
    // process's run: every pool, baseline, label, router, evaluation and report file.
    let reproduce_args = |out: &str| {
        [
            "reproduce",
            "--model",
            model,
            "--out",
            out,
            "-k",
            "1",
            "--calib-tasks",
            "arc_easy,piqa",
            "--losses",
            "tl",
            "--calib",
            "2",
            "--baselines",
            "shortgpt",
            "--baseline-calib",
            "2",
            "--label-rows",
            "3",
            "--router-epochs",
            "2",
            "--encoder-layers",
            "1",
            "--tasks",
            "arc_easy",
            "--unseen",
            "piqa",
            "--limit",
            "4",
            "--unseen-limit",
            "2",
            "--bench-repeats",
            "0",
        ]
        .map(String::from)
    };
    let staged = cluster
        .command(scripts().join("reproduce.sh"), work.path())
        .args(["--shards", "3", "--wait", "--"])
        .args(&reproduce_args(&w("repro"))[1..])
        .output()
        .unwrap();
    assert!(
        staged.status.success(),
        "reproduce.sh failed: {}{}",
        String::from_utf8_lossy(&staged.stdout),
        String::from_utf8_lossy(&staged.stderr)
    );
    let single_args = reproduce_args(&w("repro-single"));
    pudding(&single_args.iter().map(String::as_str).collect::<Vec<_>>());
    let (a, b) = (
        files_under(&work.path().join("repro-single")),
        files_under(&work.path().join("repro")),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.contains_key("E2E.md") && a.contains_key("router-k1/router.json"));
    for (name, path) in &a {
        if name.starts_with("eval/") {
            assert_eq!(without_times(path), without_times(&b[name]), "{name}");
        } else {
            assert!(
                std::fs::read(path).unwrap() == std::fs::read(&b[name]).unwrap(),
                "{name} differs"
            );
        }
    }

    // Four searches cannot be split five ways: shard 0/5 would run none.
    let too_many = Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args(candidates_args)
        .args(["--out", &w("p5.json"), "--shard", "0/5"])
        .output()
        .unwrap();
    assert!(!too_many.status.success());
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("at most 4 shards"));

    // A requeued task (shard 1 alone, as `--array=1` with the job's shard count) resumes
    // its complete output: nothing is scored again, the file is unchanged, and the merge
    // gives the same result.
    let shard1 = work.path().join("eval.shard-1-of-4").join("dense.json");
    let before = std::fs::read(&shard1).unwrap();
    let rerun = cluster
        .command("sbatch", work.path())
        .env("PUDDING_SHARDS", "4")
        .args(["--wait", "--array=1"])
        .arg(scripts().join("shard.sbatch"))
        .args(eval_args)
        .args(["--out", &w("eval")])
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{rerun:?}");
    assert_eq!(std::fs::read(&shard1).unwrap(), before);
    pudding(&["merge", "--out", &w("eval")]);
    for name in &names {
        assert_eq!(
            without_times(&work.path().join("eval").join(name)),
            without_times(&work.path().join("single").join(name))
        );
    }

    // A failing task (its output is a corrupt file) fails the array: the merge job is
    // cancelled, submit.sh exits non-zero, and a merge by hand names the bad shard.
    std::fs::write(w("bad.shard-2-of-4.json"), "not a results file").unwrap();
    let failed = submit(
        &w("bad.json"),
        &[
            "eval", "--model", model, "--tasks", "arc_easy", "--limit", "4",
        ],
    );
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("a shard of array"), "{stderr}");
    assert!(!work.path().join("bad.json").exists());
    let log = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_2.out"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|t| t.contains("bad.shard-2-of-4.json"));
    assert!(log.is_some(), "no task log names the corrupt shard file");
    let merge = Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args(["merge", "--out", &w("bad.json")])
        .output()
        .unwrap();
    assert!(!merge.status.success());
    assert!(String::from_utf8_lossy(&merge.stderr).contains("bad.shard-2-of-4.json"));
}
