//! `--output-dir` with `--keep-running`: every key changes as one version,
//! the way the kubelet writes Secret volumes.
//!
//! ```text
//! DIR/..2026_11_30_01_02_03.123456789.XXXXXX/   one directory per version
//! DIR/..data -> ..2026_11_30_01_02_03.123456789.XXXXXX
//! DIR/username -> ..data/username
//! DIR/password -> ..data/password
//! ```
//!
//! A new version is written in full (each file fsynced) under a fresh
//! `..<timestamp>` directory; `..data_tmp` is made to point at it and
//! renamed over `..data` in one `rename`. A reader that resolves `..data`
//! once (as secret-gate's own scan and the kubelet's readers do) sees the
//! old set of keys or the new one, never a mix. Keys no longer in the
//! secret lose their visible link; older version directories are removed.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::safe::output::{key_io, OutputError};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A version directory name: `..` then the UTC time, as the kubelet names
/// them (the random suffix is added by the caller).
fn version_prefix() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "..{y:04}_{m:02}_{d:02}_{:02}_{:02}_{:02}.{:09}.",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day),
/// Howard Hinnant's `civil_from_days`. The bench's report dates use it too.
#[must_use]
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes `files` as a new version of `dir` and switches to it. Blocking.
pub fn write_version(
    dir: &Path,
    files: &[(String, Vec<u8>)],
    mode: u32,
) -> Result<(), OutputError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let version = tempfile::Builder::new()
        .prefix(&version_prefix())
        .rand_bytes(6)
        .tempdir_in(dir)
        .map_err(|e| OutputError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::from(e.kind()),
        })?;
    std::fs::set_permissions(version.path(), Permissions::from_mode(0o755)).map_err(io_err(dir))?;
    // A key's file or link is named by position in errors: its name may be
    // content.
    let total = files.len();
    let key_err = |i: usize| {
        move |source| {
            key_io(
                i,
                total,
                dir,
                OutputError::Io {
                    path: dir.to_path_buf(),
                    source,
                },
            )
        }
    };
    for (i, (name, bytes)) in files.iter().enumerate() {
        let path = version.path().join(name);
        let mut file = File::create(&path).map_err(key_err(i))?;
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(key_err(i))?;
        file.write_all(bytes).map_err(key_err(i))?;
        file.sync_all().map_err(key_err(i))?;
    }
    File::open(version.path())
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    let version = version.keep();
    let name = version.file_name().map(PathBuf::from).unwrap_or_default();
    // Swap ..data in one rename.
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&name, &tmp).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(io_err(&dir.join(DATA)))?;
    // The visible names: one link per key, through ..data.
    for (i, (key, _)) in files.iter().enumerate() {
        let link = dir.join(key);
        let target = Path::new(DATA).join(key);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        let tmp = dir.join(format!("..{key}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        symlink(&target, &tmp).map_err(key_err(i))?;
        std::fs::rename(&tmp, &link).map_err(key_err(i))?;
    }
    remove_stale(dir, files, &name);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// Removes visible links of keys no longer there (only links into
/// `..data`, never other files) and every version directory but `keep`.
fn remove_stale(dir: &Path, files: &[(String, Vec<u8>)], keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let path = entry.path();
        if text.starts_with("..") {
            let is_version = text.len() > 2
                && text.as_bytes().get(2).is_some_and(u8::is_ascii_digit)
                && Path::new(&name) != keep;
            if is_version && entry.file_type().is_ok_and(|t| t.is_dir()) {
                if let Err(error) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), %error, "could not remove an old version");
                }
            }
            continue;
        }
        let ours = std::fs::read_link(&path).is_ok_and(|t| t.starts_with(DATA));
        if ours && files.iter().all(|(k, _)| k.as_str() != text) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Removes what [`write_version`] wrote (for `--on-delete remove`).
/// Returns whether everything went.
pub fn remove_all(dir: &Path) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
    };
    let mut all = true;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if std::fs::read_link(&path).is_ok_and(|t| t.starts_with(DATA)) || text == DATA {
            all &= std::fs::remove_file(&path).is_ok();
        } else if text.starts_with("..")
            && text.as_bytes().get(2).is_some_and(u8::is_ascii_digit)
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            all &= std::fs::remove_dir_all(&path).is_ok();
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::{civil_from_days, remove_all, write_version};

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_787), (2026, 11, 30));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn versions_switch_and_removed_keys_disappear() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("mine.txt"), "not ours").unwrap();
        let v1 = vec![
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"1".to_vec()),
        ];
        write_version(d, &v1, 0o440).unwrap();
        assert_eq!(std::fs::read(d.join("a")).unwrap(), b"1");
        let v2 = vec![("a".to_owned(), b"2".to_vec())];
        write_version(d, &v2, 0o440).unwrap();
        assert_eq!(std::fs::read(d.join("a")).unwrap(), b"2");
        let got = names(d);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.contains(&"..data".to_owned()) && got.contains(&"mine.txt".to_owned()));
        assert!(!got.contains(&"b".to_owned()));
        remove_all(d);
        assert_eq!(names(d), ["mine.txt"]);
    }
}
