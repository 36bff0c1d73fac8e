//! Shards that are not item ranges, through the real `pudding` binary on the real SmolLM2
//! and BoolQ passages: a one-shot baseline's calibration statistics (`baseline --shard`)
//! and the trials of SLEB's greedy phases (`baseline --step-shard`), merged with `pudding
//! merge` into files equal byte for byte to one process's; and the requests that cannot be
//! sharded this way, refused with a message. (A `candidates` search spread phase by phase
//! runs on a real Slurm cluster in `slurm.rs`.)

use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args(args)
        .output()
        .expect("run pudding")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "pudding {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(args: &[&str], message: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pudding {args:?} succeeded");
    assert!(stderr.contains(message), "pudding {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn same_bytes(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{} differs from {}",
        a.display(),
        b.display()
    );
}

#[test]
fn baseline_statistics_and_sleb_phases_merge_into_one_process_pools() {
    let model = ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap();
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let baseline = |method: &'static str, calib: &'static str| {
        move |out: &str| -> Vec<String> {
            [
                "baseline", "--model", model, "--method", method, "-k", "2", "--calib", calib,
                "--out", out,
            ]
            .map(String::from)
            .to_vec()
        }
    };
    let strs = |v: &[String]| v.iter().map(String::clone).collect::<Vec<_>>();

    // ShortGPT: 6 passages in 4 shards; Shortened LLaMA (PPL): 28 blocks in 3 shards.
    for (args, shards) in [
        (baseline("shortgpt", "6"), 4),
        (baseline("shortened-ppl", "1"), 3),
    ] {
        let one = p("one.json");
        let sharded = p("sharded.json");
        let whole = strs(&args(&one));
        ok(&whole.iter().map(String::as_str).collect::<Vec<_>>());
        for i in 0..shards {
            let mut a = strs(&args(&sharded));
            a.extend(["--shard".into(), format!("{i}/{shards}")]);
            ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        }
        // A shard short, the merge names the missing one and writes nothing.
        let last = dir
            .path()
            .join(format!("sharded.shard-{}-of-{shards}.json", shards - 1));
        let aside = dir.path().join("aside.json");
        std::fs::rename(&last, &aside).unwrap();
        let inputs: Vec<String> = (0..shards - 1)
            .map(|i| p(&format!("sharded.shard-{i}-of-{shards}.json")))
            .collect();
        let mut merge = vec!["merge".to_string(), "--out".into(), sharded.clone()];
        merge.extend(inputs);
        refused(
            &merge.iter().map(String::as_str).collect::<Vec<_>>(),
            &format!("shard {}/{shards} is missing", shards - 1),
        );
        assert!(!Path::new(&sharded).exists());
        std::fs::rename(&aside, &last).unwrap();
        ok(&["merge", "--out", &sharded]);
        same_bytes(Path::new(&one), Path::new(&sharded));
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }

    // SLEB, k = 1 on one passage: one round of 2 step shards and a merge completes the
    // checkpoint; the command without the flag then writes the pool from it.
    let sleb = baseline("sleb", "1");
    let sleb = |out: &str| {
        let mut a = sleb(out);
        a[6] = "1".into(); // -k 1
        a
    };
    let one = p("sleb.json");
    ok(&strs(&sleb(&one))
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let sharded = p("spread.json");
    let checkpoint = p("spread.sleb-checkpoint.json");
    for i in 0..2 {
        let mut a = sleb(&sharded);
        a.extend(["--step-shard".into(), format!("{i}/2")]);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let merged = ok(&["merge", "--out", &checkpoint]);
    assert!(merged.contains("phase 1/1"), "{merged}");
    let mut again = sleb(&sharded);
    again.extend(["--step-shard".into(), "0/2".into()]);
    refused(
        &again.iter().map(String::as_str).collect::<Vec<_>>(),
        "is complete",
    );
    ok(&sleb(&sharded)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    same_bytes(Path::new(&one), Path::new(&sharded));
    same_bytes(
        Path::new(&p("sleb.sleb-checkpoint.json")),
        Path::new(&checkpoint),
    );

    // What cannot be sharded this way is refused before any work.
    let out = p("x.json");
    for (method, flag, message) in [
        ("taylor", "--shard", "not sharded"),
        ("sleb", "--shard", "--step-shard"),
        ("shortgpt", "--step-shard", "only --method sleb"),
    ] {
        refused(
            &[
                "baseline", "--model", model, "--method", method, "--out", &out, flag, "0/2",
            ],
            message,
        );
    }
    refused(
        &[
            "candidates",
            "--model",
            model,
            "--tasks",
            "arc_easy,piqa",
            "--losses",
            "tl",
            "--checkpoints",
            &p("ckpt"),
            "--out",
            &out,
            "--step-shard",
            "0/2",
        ],
        "one task and one loss",
    );
}
