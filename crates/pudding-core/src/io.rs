//! Atomic file writing: a reader never sees a half-written artifact.

use crate::CoreError;
use std::io::Write;
use std::path::Path;

/// Creates the directory `path` is to be written in (`.` for a bare file name), and
/// returns it.
fn create_parent_dir(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes `bytes` to `path` atomically: the data go to a temporary file in the same
/// directory, are flushed to disk, and the file is renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    let io_err = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = create_parent_dir(path).map_err(io_err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    // Temp files are created private (0600); artifacts are ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err)?;
    }
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// Checks, before a long job starts, that [`write_atomic`] will be able to write `path`:
/// its directory can be created and written (a temporary file is made there and
/// removed), and `path` is not a directory. Nothing is left behind.
pub fn check_writable(path: &Path) -> Result<(), CoreError> {
    let io_err = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(io_err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "the output is a directory, not a file",
        )));
    }
    let dir = create_parent_dir(path).map_err(io_err)?;
    tempfile::NamedTempFile::new_in(&dir).map_err(io_err)?;
    Ok(())
}

/// Serialises `value` as pretty JSON and writes it atomically to `path`.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), CoreError> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| CoreError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &text)
}

/// Reads and parses a JSON file, with the path in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CoreError> {
    let bytes = std::fs::read(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| CoreError::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        // A writable place passes and leaves nothing; a directory, or a file's place under
        // a regular file, fails.
        check_writable(&dir.path().join("sub/out.json")).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            0
        );
        assert!(check_writable(dir.path()).is_err());
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(check_writable(&dir.path().join("file/out.json")).is_err());
        let path = dir.path().join("sub/out.json");
        write_atomic(&path, b"first version, long").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // No temp files are left behind.
        let n = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(n, 1);
    }
}
