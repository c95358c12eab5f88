//! One full check of a [`Selection`] on disk: every file read by path, every
//! key looked up. Cheap enough to run after every event.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::check::{self, describe_parse_error, Document, Format, Problem};
use crate::config::{Layout, Selection};

use super::read::{read_capped, ReadError};

/// The result of one scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Empty means ready.
    pub problems: Vec<Problem>,
    /// When a file is settling, how soon to look again even without an
    /// event: the end of its settle time.
    pub recheck_in: Option<Duration>,
}

/// Checks every file of the selection.
#[must_use]
pub fn scan(selection: &Selection) -> Scan {
    let mount = &selection.mount;
    match std::fs::metadata(mount) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Scan {
                problems: vec![Problem::new(
                mount.display().to_string(),
                "mount-not-dir",
                "is not a directory; --mount-path must name the directory the volume is mounted at",
            )],
                recheck_in: None,
            }
        }
        Err(_) => {
            return Scan {
                problems: vec![Problem::new(
                    mount.display().to_string(),
                    "mount-missing",
                    format!(
                        "directory does not exist yet; waiting for {}",
                        selection.file_names().join(", ")
                    ),
                )],
                recheck_in: None,
            }
        }
    }

    let files = selection.files();
    let mut out = Scan::default();
    let mut docs: Vec<Document> = Vec::new();
    // PEM files that parsed, for the checks that need the clock or pairs.
    let mut pem_files: Vec<(String, Vec<u8>)> = Vec::new();
    let now = SystemTime::now();
    for spec in &files {
        let name = spec.name.display().to_string();
        let contents = match read_capped(&mount.join(&spec.name), selection.max_file_size) {
            Ok(contents) => contents,
            Err(err) => {
                out.problems
                    .push(Problem::new(name, read_class(&err), err.to_string()));
                continue;
            }
        };
        let doc = match check::parse(spec.format, &contents.bytes) {
            Ok(doc) => doc,
            Err(err) => {
                out.problems.push(Problem::new(
                    name,
                    "invalid",
                    describe_parse_error(&err, contents.bytes.len(), "file"),
                ));
                continue;
            }
        };
        // A YAML, env or raw file (or a JSON scalar) cut short by a writer
        // may still parse: wait until it has been quiet for a while.
        let age = contents.modified.and_then(|m| now.duration_since(m).ok());
        let can_be_cut_short = spec.format != Format::Json || doc.roots.is_empty();
        if let Some(age) = age.filter(|a| *a < selection.settle) {
            if can_be_cut_short && !swapped_in_by_kubelet(mount, &spec.name) {
                let left = selection.settle.saturating_sub(age);
                out.recheck_in = Some(out.recheck_in.map_or(left, |r| r.min(left)));
                out.problems.push(Problem::new(
                    name,
                    "settling",
                    format!(
                        "changed {}ms ago; waiting until it has been unchanged for {}ms \
                         ({} can be cut short and still parse)",
                        age.as_millis(),
                        selection.settle.as_millis(),
                        spec.format
                    ),
                ));
                continue;
            }
        }
        if spec.format == Format::Pem {
            pem_files.push((name, contents.bytes));
        }
        docs.push(doc);
    }

    tls_checks(&pem_files, selection, &mut out);

    // Keys live inside documents only with --file; without it each key was
    // a file, checked above. Keys are judged only once every file parsed,
    // so a half-written file never reports a misleading "key missing".
    if matches!(selection.layout, Layout::Files(_)) && out.problems.is_empty() {
        let refs: Vec<&Document> = docs.iter().collect();
        let subject = files
            .iter()
            .filter(|f| f.format.has_keys())
            .map(|f| f.name.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for key in check::missing_keys(&selection.keys, &refs) {
            out.problems
                .push(Problem::key_missing(subject.clone(), key));
        }
    }
    out
}

/// Validity, `--min-validity`, key pairs and `--ca-file` on the PEM files
/// that parsed; also when to look again because a certificate becomes
/// valid or drops under `--min-validity` by itself.
fn tls_checks(pem_files: &[(String, Vec<u8>)], selection: &Selection, out: &mut Scan) {
    let files: Vec<(&str, &[u8])> = pem_files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let tls = check::tls::check(&files, &selection.tls, SystemTime::now());
    out.problems.extend(tls.problems);
    if let Some(next) = tls.next_change {
        out.recheck_in = Some(out.recheck_in.map_or(next, |r| r.min(next)));
    }
}

/// True when `name`'s first component is one of the kubelet's visible
/// links into `..data/` (Secret, `ConfigMap`, projected and CSI volumes):
/// such files are written completely before the atomic swap.
fn swapped_in_by_kubelet(mount: &Path, name: &Path) -> bool {
    let Some(first) = name.components().next() else {
        return false;
    };
    std::fs::read_link(mount.join(first)).is_ok_and(|target| target.starts_with("..data"))
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
            settle: std::time::Duration::ZERO,
            key_format: Format::Auto,
            tls: crate::check::TlsPolicy::default(),
        }
    }

    fn shown(scan: &super::Scan) -> Vec<String> {
        scan.problems.iter().map(ToString::to_string).collect()
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

#[cfg(test)]
mod settle_tests {
    #![allow(clippy::unwrap_used)]
    use super::scan;
    use crate::check::{Format, Key};
    use crate::config::{FileSpec, Layout, Selection};
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    fn selection(dir: &std::path::Path, file: &str, format: Format) -> Selection {
        Selection {
            mount: dir.to_path_buf(),
            layout: Layout::Files(vec![FileSpec {
                name: file.into(),
                format,
            }]),
            keys: Key::parse_list("A").unwrap(),
            max_file_size: 1 << 20,
            settle: Duration::from_secs(3600),
            key_format: Format::Auto,
            tls: crate::check::TlsPolicy::default(),
        }
    }

    #[test]
    fn fresh_files_that_can_be_cut_short_settle_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("app.env"), "A=hun").unwrap();
        let s = scan(&selection(d, "app.env", Format::Env));
        assert_eq!(s.problems.len(), 1);
        assert_eq!(s.problems[0].class, "settling");
        assert!(s.recheck_in.unwrap() <= Duration::from_secs(3600));

        // A JSON object cannot be cut short and still parse: no wait.
        std::fs::write(d.join("s.json"), r#"{"A":"x"}"#).unwrap();
        assert!(scan(&selection(d, "s.json", Format::Json))
            .problems
            .is_empty());
        // A JSON scalar can.
        std::fs::write(d.join("n.json"), "12").unwrap();
        let mut sel = selection(d, "n.json", Format::Json);
        sel.keys.clear();
        assert_eq!(scan(&sel).problems[0].class, "settling");
    }

    #[test]
    fn kubelet_links_are_complete_by_construction() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_11_23")).unwrap();
        std::fs::write(d.join("..2026_11_23/app.env"), "A=x").unwrap();
        symlink("..2026_11_23", d.join("..data")).unwrap();
        symlink("..data/app.env", d.join("app.env")).unwrap();
        assert!(scan(&selection(d, "app.env", Format::Env))
            .problems
            .is_empty());
    }
}
