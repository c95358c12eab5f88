//! One full check of a [`Selection`] on disk: every file read by path, every
//! key looked up. Cheap enough to run after every event.

use crate::check::{self, describe_parse_error, Document, Problem};
use crate::config::{Layout, Selection};

use super::read::{read_capped, ReadError};

/// Checks every file of the selection. An empty result means ready.
#[must_use]
pub fn scan(selection: &Selection) -> Vec<Problem> {
    let mount = &selection.mount;
    match std::fs::metadata(mount) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return vec![Problem::new(
                mount.display().to_string(),
                "mount-not-dir",
                "is not a directory; --mount-path must name the directory the volume is mounted at",
            )]
        }
        Err(_) => {
            return vec![Problem::new(
                mount.display().to_string(),
                "mount-missing",
                format!(
                    "directory does not exist yet; waiting for {}",
                    wanted(selection)
                ),
            )]
        }
    }

    let files = selection.files();
    let mut problems = Vec::new();
    let mut docs: Vec<Document> = Vec::new();
    for spec in &files {
        let name = spec.name.display().to_string();
        let bytes = match read_capped(&mount.join(&spec.name), selection.max_file_size) {
            Ok(bytes) => bytes,
            Err(err) => {
                problems.push(Problem::new(name, read_class(&err), err.to_string()));
                continue;
            }
        };
        match check::parse(spec.format, &bytes) {
            Ok(doc) => docs.push(doc),
            Err(err) => problems.push(Problem::new(
                name,
                "invalid",
                describe_parse_error(&err, bytes.len()),
            )),
        }
    }

    // Keys live inside documents only with --file; without it each key was
    // a file, checked above. Keys are judged only once every file parsed,
    // so a half-written file never reports a misleading "key missing".
    if matches!(selection.layout, Layout::Files(_)) && problems.is_empty() {
        let refs: Vec<&Document> = docs.iter().collect();
        let subject = files
            .iter()
            .filter(|f| f.format.has_keys())
            .map(|f| f.name.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for key in check::missing_keys(&selection.keys, &refs) {
            problems.push(Problem::new(
                subject.clone(),
                "key-missing",
                format!("key {:?} missing", key.as_str()),
            ));
        }
    }
    problems
}

fn wanted(selection: &Selection) -> String {
    selection
        .files()
        .iter()
        .map(|f| f.name.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_class(err: &ReadError) -> &'static str {
    match err {
        ReadError::Missing => "missing",
        ReadError::DanglingSymlink => "dangling",
        ReadError::SymlinkLoop => "loop",
        ReadError::NotAFile(_) => "not-a-file",
        ReadError::PermissionDenied { .. } => "permission",
        ReadError::TooLarge { .. } => "too-large",
        ReadError::Io(_) => "io",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::scan;
    use crate::check::{Format, Key};
    use crate::config::{FileSpec, Layout, Selection};
    use std::path::PathBuf;

    fn selection(dir: &std::path::Path, files: &[&str], keys: &str) -> Selection {
        Selection {
            mount: dir.to_path_buf(),
            layout: if files.is_empty() {
                Layout::KeyPerFile
            } else {
                Layout::Files(
                    files
                        .iter()
                        .map(|f| FileSpec {
                            name: PathBuf::from(f),
                            format: Format::Auto.resolve(std::path::Path::new(f)),
                        })
                        .collect(),
                )
            },
            keys: Key::parse_list(keys).unwrap_or_default(),
            max_file_size: 1 << 20,
        }
    }

    fn shown(problems: &[crate::check::Problem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn scan_table() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("s.json"), br#"{"user":"u"}"#).unwrap();
        std::fs::write(d.join("torn.json"), br#"{"user":"u","pa"#).unwrap();
        std::fs::write(d.join("app.env"), b"PASSWORD=p\n").unwrap();
        std::fs::write(d.join("password"), b"p").unwrap();
        std::fs::write(d.join("blank"), b"").unwrap();

        let table: &[(&[&str], &str, &[&str])] = &[
            (&["s.json"], "user", &[]),
            (&["s.json"], "password", &["s.json: key \"password\" missing"]),
            (&["s.json", "app.env"], "user,PASSWORD", &[]),
            (
                &["torn.json"],
                "user",
                &["torn.json: JSON ends early at line 1 column 15 (file is 15 bytes; still being written?)"],
            ),
            (&["nope.yaml"], "", &["nope.yaml: missing"]),
            (&[], "password", &[]),
            (&[], "password,blank,absent", &["blank: empty (still being written?)", "absent: missing"]),
        ];
        for (files, keys, want) in table {
            let got = shown(&scan(&selection(d, files, keys)));
            assert_eq!(&got, want, "{files:?} {keys}");
        }
    }

    #[test]
    fn missing_mount_is_one_problem() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("not-yet");
        let got = shown(&scan(&selection(&gone, &["s.json"], "")));
        assert_eq!(got.len(), 1);
        assert!(
            got[0].ends_with("directory does not exist yet; waiting for s.json"),
            "{got:?}"
        );
    }
}
