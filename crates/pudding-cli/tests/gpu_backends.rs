//! The GPU builds (`--features cuda` or `--features wgpu`) run as the user would run them:
//! the `pudding` binary, the quickstart and `gpu_bench`, built with the same features as
//! this test.
//!
//! On a machine without the GPU (CI, these 2-core machines) every binary must stop before
//! touching the backend with one line naming what is missing and the CPU alternative,
//! exit code 1, and no panic or backtrace. On a machine with the GPU the same binaries
//! must run: `gpu_bench` at SmolLM2's shape with tiny settings, and a device index that
//! does not exist is refused with exit code 1.
//!
//! ```text
//! cargo test -p pudding-cli --features cuda --test gpu_backends
//! cargo test -p pudding-cli --features wgpu --test gpu_backends
//! ```
//! (The test asks cargo for the quickstart and `gpu_bench` built with the same feature.)
#![cfg(any(feature = "cuda", feature = "wgpu"))]

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The examples these tests run.
const EXAMPLES: [&str; 2] = ["quickstart", "gpu_bench"];

/// The example `name` (one of [`EXAMPLES`]) built with this test's features and profile.
/// Cargo builds examples for `cargo test` as test harnesses, so this asks cargo for the
/// plain binaries, once for all tests (a quick build: the library is already built).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let feature = if cfg!(feature = "wgpu") {
            "wgpu"
        } else {
            "cuda"
        };
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "pudding-examples", "--features", feature]);
        for example in EXAMPLES {
            build.args(["--example", example]);
        }
        build.arg("--message-format=json");
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let output = build.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "cargo build --example {EXAMPLES:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|message| {
                let name = message["target"]["name"].as_str()?.to_string();
                let path = message["executable"].as_str()?;
                Some((name, PathBuf::from(path)))
            })
            .collect()
    });
    built
        .iter()
        .find(|(built_name, _)| built_name == name)
        .map(|(_, path)| path.clone())
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}

fn pudding() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pudding"))
}

/// Runs `program args`, with backtraces on so that a panic would show one, and an empty
/// cache so that nothing can be fetched before the backend check.
fn run(program: &PathBuf, args: &[&str]) -> Output {
    run_with_env(program, args, &[])
}

/// [`run`] with more environment variables.
fn run_with_env(program: &PathBuf, args: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let home = tempfile::tempdir().expect("a temporary PUDDING_HOME");
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "1")
        .env("PUDDING_HOME", home.path())
        .output()
        .expect("the binary starts")
}

/// Exit code 1 and exactly one line on stderr, `error: {expected}`, no panic.
fn assert_clean_error(output: &Output, expected: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what}: exit code 1 expected; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{what}: panicked:\n{stderr}"
    );
    assert_eq!(
        stderr.trim_end(),
        format!("error: {expected}"),
        "{what}: one line naming what is missing"
    );
}

/// The workloads a user starts first, each as its binary runs them.
fn first_commands() -> Vec<(PathBuf, Vec<&'static str>, &'static str)> {
    vec![
        (
            pudding(),
            vec!["generate", "--prompt", "Hi", "--max-tokens", "2"],
            "pudding generate",
        ),
        (
            pudding(),
            vec![
                "eval",
                "--tasks",
                "arc_easy",
                "--limit",
                "2",
                "--out",
                "/dev/null",
            ],
            "pudding eval",
        ),
        (example("quickstart"), vec![], "quickstart"),
        (
            example("gpu_bench"),
            vec!["--shape", "smollm2", "--repeats", "1"],
            "gpu_bench",
        ),
    ]
}

#[test]
fn every_binary_stops_with_one_clear_line_when_the_backend_cannot_start_here() {
    let Err(missing) = pudding_cli::backend::start(None) else {
        eprintln!(
            "{} starts on this machine: the no-GPU path is checked where no GPU is",
            pudding_cli::backend::NAME
        );
        return;
    };
    let expected = missing.to_string();
    assert!(
        expected.contains("the same command without `--features"),
        "the error names the CPU alternative: {expected}"
    );
    for (program, args, what) in first_commands() {
        assert_clean_error(&run(&program, &args), &expected, what);
    }
    // A device index cannot make a missing driver look like a missing device.
    let output = run(&pudding(), &["--device", "7", "generate", "--prompt", "Hi"]);
    assert_clean_error(&output, &expected, "pudding --device 7");
}

#[test]
fn where_the_backend_starts_the_binaries_run_and_a_missing_device_index_is_refused() {
    if pudding_cli::backend::start(None).is_err() {
        eprintln!("no GPU here: the binaries' error is checked by the other test");
        return;
    }
    let output = run(
        &example("gpu_bench"),
        &[
            "--shape",
            "smollm2",
            "--prefill",
            "32",
            "--prompt",
            "16",
            "--generate",
            "4",
            "--batch",
            "2",
            "--batch-generate",
            "2",
            "--repeats",
            "1",
        ],
    );
    assert!(
        output.status.success(),
        "gpu_bench on the GPU:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run(
        &pudding(),
        &["--device", "4096", "generate", "--prompt", "Hi"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("4096 does not exist") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// The driver-present failures, which this machine cannot show for real: a stand-in
/// `libcuda.so.1` (compiled here with `cc`) exports the two functions the check calls and
/// answers as a driver would in each situation; `libnvrtc.so` is present or not.
#[cfg(all(feature = "cuda", not(feature = "wgpu")))]
mod driver_answers {
    use super::*;
    use std::path::Path;

    const STAND_IN_DRIVER: &str = r#"
#include <stdlib.h>
/* cuInit returns PUDDING_CU_INIT (a CUresult); cuDeviceGetCount reports PUDDING_CU_COUNT. */
int cuInit(unsigned int flags) { (void)flags; const char *v = getenv("PUDDING_CU_INIT"); return v ? atoi(v) : 0; }
int cuDeviceGetCount(int *count) { const char *v = getenv("PUDDING_CU_COUNT"); *count = v ? atoi(v) : 0; return 0; }
"#;

    /// A folder with `libcuda.so.1` (and `libnvrtc.so` when `with_nvrtc`).
    fn libraries(with_nvrtc: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let source = dir.path().join("driver.c");
        std::fs::write(&source, STAND_IN_DRIVER).expect("write the C source");
        let compile = |out: &Path| {
            let status = Command::new("cc")
                .args(["-shared", "-fPIC", "-o"])
                .arg(out)
                .arg(&source)
                .status()
                .expect("cc (the C compiler Rust links with) runs");
            assert!(status.success(), "cc failed");
        };
        compile(&dir.path().join("libcuda.so.1"));
        if with_nvrtc {
            compile(&dir.path().join("libnvrtc.so"));
        }
        dir
    }

    fn run_with(dir: &Path, init: i32, count: i32, args: &[&str]) -> Output {
        let (init, count) = (init.to_string(), count.to_string());
        run_with_env(
            &pudding(),
            args,
            &[
                ("LD_LIBRARY_PATH", dir.as_os_str()),
                ("PUDDING_CU_INIT", OsStr::new(&init)),
                ("PUDDING_CU_COUNT", OsStr::new(&count)),
            ],
        )
    }

    const GENERATE: &[&str] = &["generate", "--prompt", "Hi"];

    #[test]
    fn a_driver_without_the_cuda_toolkit_compiler_is_named() {
        let dir = libraries(false);
        let output = run_with(dir.path(), 0, 1, GENERATE);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: this binary was built with `--features cuda`, but the CUDA runtime compiler library (libnvrtc")
                && stderr.contains("libnvrtc.so")
                && stderr.trim_end().lines().count() == 1,
            "{stderr}"
        );
    }

    #[test]
    fn no_device_a_failing_driver_and_a_missing_index_are_one_line_each() {
        let dir = libraries(true);
        let cases: [(i32, i32, &[&str], &str); 4] = [
            (
                100, // CUDA_ERROR_NO_DEVICE
                0,
                GENERATE,
                "the NVIDIA driver reports no CUDA device on this machine; use the CPU build (the same command without `--features cuda`)",
            ),
            (
                0,
                0,
                GENERATE,
                "the NVIDIA driver reports no CUDA device on this machine; use the CPU build (the same command without `--features cuda`)",
            ),
            (
                803, // CUDA_ERROR_SYSTEM_DRIVER_MISMATCH
                1,
                GENERATE,
                "the NVIDIA driver is installed but failed to initialise (CUDA_ERROR_SYSTEM_DRIVER_MISMATCH); check `nvidia-smi`, or use the CPU build (the same command without `--features cuda`)",
            ),
            (
                0,
                2,
                &["--device", "2", "generate", "--prompt", "Hi"],
                "CUDA device 2 does not exist: this machine has 2 (indices 0-1)",
            ),
        ];
        for (init, count, args, expected) in cases {
            let output = run_with(dir.path(), init, count, args);
            assert_clean_error(
                &output,
                expected,
                &format!("cuInit {init}, {count} devices"),
            );
        }
    }
}
