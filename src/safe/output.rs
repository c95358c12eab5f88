//! Writing fetched secrets into the volume, atomically: a temp file in the
//! same directory, fsync, rename over the target, fsync the directory. A
//! reader sees the old file or the new one, never half of one.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::check::Document;

/// Why writing the output failed. Names paths and keys, never values.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing one key's file failed. The key (the file's name) is not
    /// shown: in a YAML secret a "key" may be content.
    #[error("cannot write the file for top-level key {index} of {total} in {dir}: {source}")]
    KeyIo {
        index: usize,
        total: usize,
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The key itself is not shown: in a YAML secret a "key" may be content.
    #[error("top-level key {0} of {1} of the secret cannot be a file name in --output-dir ({2}); this secret can never be written there: change it, or use --output")]
    BadName(usize, usize, &'static str),
    #[error("--output-dir needs a JSON or YAML object with top-level keys; the secret has none, so it can never be written there: use --output")]
    NoKeys,
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), OutputError> {
    // Name the target, never the random temp file (tempfile's errors carry
    // its path), so repeated failures read the same.
    let io = |source: std::io::Error| OutputError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from(source.kind()),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".secret-gate-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// The files `--output-dir` writes: one per top-level key. A string value
/// is written as it is; any other value as JSON text.
pub fn files_for_dir(doc: &Document) -> Result<Vec<(String, Vec<u8>)>, OutputError> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let total = doc
        .roots
        .iter()
        .filter_map(Value::as_object)
        .flat_map(serde_json::Map::keys)
        .filter(|k| seen.insert(k.as_str()))
        .count();
    for root in &doc.roots {
        let Value::Object(map) = root else { continue };
        for (key, value) in map {
            if files.iter().any(|(k, _)| k == key) {
                continue;
            }
            let why = if key.is_empty() {
                Some("it is empty")
            } else if key.contains(['/', '\0']) {
                Some("it contains `/` or NUL")
            } else if key.starts_with("..") || key == "." {
                Some("it is `.` or starts with `..`, which the kubelet-style layout uses")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(OutputError::BadName(files.len() + 1, total, why));
            }
            let bytes = match value {
                Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            };
            files.push((key.clone(), bytes));
        }
    }
    if files.is_empty() {
        return Err(OutputError::NoKeys);
    }
    Ok(files)
}

/// Writes every file of [`files_for_dir`] into `dir` (created if missing).
/// Returns how many it wrote.
pub fn write_dir(dir: &Path, doc: &Document, mode: u32) -> Result<usize, OutputError> {
    let files = files_for_dir(doc)?;
    std::fs::create_dir_all(dir).map_err(|source| OutputError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let total = files.len();
    for (i, (name, bytes)) in files.iter().enumerate() {
        // Name the key by position: its name may be content.
        write_atomic(&dir.join(name), bytes, mode).map_err(|e| key_io(i, total, dir, e))?;
    }
    Ok(total)
}

/// The error for key `i` (from 0) of `total` in `dir`, by position: its
/// name may be content, and an I/O error's path would carry it.
#[must_use]
pub fn key_io(i: usize, total: usize, dir: &Path, error: OutputError) -> OutputError {
    let source = match error {
        OutputError::Io { source, .. } | OutputError::KeyIo { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    };
    OutputError::KeyIo {
        index: i + 1,
        total,
        dir: dir.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{files_for_dir, write_atomic, write_dir, OutputError};
    use crate::check::{parse, Format};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new", 0o440).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o440);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret.json"]);
    }

    #[test]
    fn dir_files_table() {
        let doc = parse(Format::Json, br#"{"user":"u","port":5432,"db":{"a":1}}"#).unwrap();
        let files = files_for_dir(&doc).unwrap();
        let got: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("db", &br#"{"a":1}"#[..]),
                ("port", b"5432"),
                ("user", b"u")
            ]
        );

        for bad in [
            r#"{"../x":"v"}"#,
            r#"{"a/b":"v"}"#,
            r#"{"":"v"}"#,
            r#"{"..data":"v"}"#,
            r#"{"..2026_11_30":"v"}"#,
        ] {
            let doc = parse(Format::Json, bad.as_bytes()).unwrap();
            assert!(
                matches!(files_for_dir(&doc), Err(OutputError::BadName(1, 1 | 2, _))),
                "{bad}"
            );
        }
        let doc = parse(Format::Json, br#"{"ok":"v","../x":"v","z":1}"#).unwrap();
        let err = files_for_dir(&doc).unwrap_err().to_string();
        assert!(err.starts_with("top-level key 1 of 3 "), "{err}");
        assert!(!err.contains("../x"), "{err}");

        let doc = parse(Format::Json, br#""plain""#).unwrap();
        assert!(matches!(files_for_dir(&doc), Err(OutputError::NoKeys)));
    }

    #[test]
    fn a_write_error_names_the_key_by_position_never_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let long = "k".repeat(300); // longer than NAME_MAX
        let text = format!(r#"{{"a":"1","{long}":"2"}}"#);
        let doc = parse(Format::Json, text.as_bytes()).unwrap();
        let err = write_dir(dir.path(), &doc, 0o440).unwrap_err().to_string();
        assert!(err.contains("top-level key 2 of 2"), "{err}");
        assert!(!err.contains("kkkk"), "{err}");
    }
}
