//! One full check of a [`Selection`] on disk: every file read by path, every
//! key looked up. Cheap enough to run after every event.
//!
//! Two rules keep a scan from passing on content that never existed whole:
//! - **One version.** In a volume written by the kubelet (Secret,
//!   `ConfigMap`, projected, CSI), `..data` is resolved once and every file
//!   behind it is read through the resolved `..<timestamp>` directory, so a
//!   swap in the middle of a scan cannot mix two versions ([`Version`]).
//! - **Settled.** A file in a format that can be cut short and still parse
//!   counts only once the gate has seen the same version of it (inode, size,
//!   change times) for `--settle-time` on its own monotonic clock
//!   ([`settle`]). A file's times are never compared with the wall clock.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::config::{Layout, Selection};
use crate::check::{self, describe_parse_error, Document, Format};
use crate::problem::{Kind, Problem};

use super::read::{read_capped, ReadError, Stamp};

/// How many times a scan is repeated when the kubelet swapped `..data`
/// while it ran and the result was not ready.
const VERSION_RETRIES: usize = 3;

/// The result of one scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Empty means ready.
    pub problems: Vec<Problem>,
    /// When a file is settling, how soon to look again even without an
    /// event: the end of its settle time.
    pub recheck_in: Option<Duration>,
    /// Each file of the selection with a hash of the bytes this scan read
    /// (from one version, like the check itself); `None` if unreadable.
    /// Tells one passing version from the next without keeping content.
    pub files: Vec<(String, Option<u64>)>,
}

impl Scan {
    pub(crate) fn one(problem: Problem) -> Self {
        Self {
            problems: vec![problem],
            ..Self::default()
        }
    }

    fn recheck_within(&mut self, wait: Duration) {
        self.recheck_in = Some(self.recheck_in.map_or(wait, |r| r.min(wait)));
    }
}

/// When the gate first saw a file's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub stamp: Stamp,
    pub since: Instant,
}

/// Whether a file that can be cut short has been quiet long enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Settled,
    /// Look again after this long; the file has been quiet for the rest.
    Wait {
        quiet_for: Duration,
        left: Duration,
    },
}

/// The settle rule. `previous` is the last sighting of this file, `stamp`
/// what this read saw (`None`: it changed during the read), `now` the
/// gate's monotonic clock. Returns the verdict and the sighting to keep.
#[must_use]
pub fn settle(
    previous: Option<Sighting>,
    stamp: Option<Stamp>,
    now: Instant,
    settle_time: Duration,
) -> (Settle, Option<Sighting>) {
    if settle_time.is_zero() {
        return (Settle::Settled, None);
    }
    let Some(stamp) = stamp else {
        let wait = Settle::Wait {
            quiet_for: Duration::ZERO,
            left: settle_time,
        };
        return (wait, None);
    };
    let sighting = match previous {
        Some(p) if p.stamp == stamp => p,
        _ => Sighting { stamp, since: now },
    };
    let quiet_for = now.saturating_duration_since(sighting.since);
    if quiet_for >= settle_time {
        (Settle::Settled, Some(sighting))
    } else {
        let left = settle_time.saturating_sub(quiet_for);
        (Settle::Wait { quiet_for, left }, Some(sighting))
    }
}

/// Checks a selection again and again, remembering what it saw of each
/// file so that [`settle`] can judge quiet time across scans.
#[derive(Debug, Default)]
pub struct Scanner {
    sightings: HashMap<PathBuf, Sighting>,
}

/// Checks every file of the selection once, with no memory of earlier
/// scans (so a file that must settle is reported as settling).
#[must_use]
pub fn scan(selection: &Selection) -> Scan {
    Scanner::default().scan(selection)
}

impl Scanner {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks every file of the selection. In a kubelet volume every file
    /// is read from one version of `..data`; if `..data` moved while the
    /// scan ran and it found problems, it is scanned again (bounded).
    pub fn scan(&mut self, selection: &Selection) -> Scan {
        let mut result = self.scan_once(selection);
        for _ in 0..VERSION_RETRIES {
            let Some(version) = result.1 else { break };
            if result.0.problems.is_empty() || Version::of(&selection.mount) == Some(version) {
                break;
            }
            result = self.scan_once(selection);
        }
        result.0
    }

    fn scan_once(&mut self, selection: &Selection) -> (Scan, Option<Version>) {
        let mount = &selection.mount;
        if let Some(problem) = mount_problem(selection) {
            return (Scan::one(problem), None);
        }
        let version = Version::of(mount);
        let files = selection.files();
        let mut out = Scan::default();
        // Each file that parsed, with its document.
        let mut docs: Vec<(&Path, Document)> = Vec::new();
        // PEM files that parsed, for the checks that need the clock or pairs.
        let mut pem_files: Vec<(String, check::pem::Bundle)> = Vec::new();
        for spec in &files {
            let name = spec.name.display().to_string();
            let through_kubelet = version.as_ref().and_then(|v| v.resolve(mount, &spec.name));
            let path = through_kubelet
                .clone()
                .unwrap_or_else(|| mount.join(&spec.name));
            let read = read_capped(&path, selection.max_file_size);
            let hash = read.as_ref().ok().map(|c| content_hash(&c.bytes));
            out.files.push((name.clone(), hash));
            let contents = match read {
                Ok(contents) => contents,
                Err(err) => {
                    self.sightings.remove(&spec.name);
                    out.problems
                        .push(Problem::new(name, read_kind(&err), err.to_string()));
                    continue;
                }
            };
            let now = Instant::now();
            // A file the kubelet swapped in was complete before the swap.
            let describe_as = if through_kubelet.is_some() {
                "whole file"
            } else {
                "file"
            };
            // A PEM file is parsed once: its bundle goes to the TLS checks.
            let parsed = if spec.format == Format::Pem {
                check::parse_pem(&contents.bytes).map(|b| (Document::default(), Some(b)))
            } else {
                check::parse(spec.format, &contents.bytes).map(|d| (d, None))
            };
            let (doc, bundle) = match parsed {
                Ok(parsed) => parsed,
                Err(err) => {
                    out.problems.push(Problem::new(
                        name.clone(),
                        Kind::Invalid,
                        describe_parse_error(&err, contents.bytes.len(), describe_as),
                    ));
                    continue;
                }
            };
            // A YAML, env, raw or PEM file (or a JSON scalar) cut short by a
            // writer may still parse: wait until it has been quiet a while.
            // A JSON object or array cut short never parses.
            let json_container = matches!(
                contents.bytes.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'{' | b'[')
            );
            let can_be_cut_short = spec.format != Format::Json || !json_container;
            if can_be_cut_short && through_kubelet.is_none() {
                let previous = self.sightings.get(&spec.name).copied();
                let (verdict, keep) = settle(previous, contents.stamp, now, selection.settle);
                match keep {
                    Some(s) => self.sightings.insert(spec.name.clone(), s),
                    None => self.sightings.remove(&spec.name),
                };
                if let Settle::Wait { quiet_for, left } = verdict {
                    out.recheck_within(left);
                    out.problems.push(Problem::new(
                        name,
                        Kind::Settling,
                        format!(
                            "unchanged for {}ms of the {}ms settle time \
                             ({} can be cut short and still parse)",
                            quiet_for.as_millis(),
                            selection.settle.as_millis(),
                            spec.format
                        ),
                    ));
                    continue;
                }
            }
            if let Some(bundle) = bundle {
                pem_files.push((name, bundle));
            }
            docs.push((&spec.name, doc));
        }

        tls_checks(&pem_files, selection, &mut out);

        // Keys live inside documents only with --file; without it each key
        // was a file, checked above. Keys are judged only once every file
        // parsed, so a half-written file never reports a misleading "key
        // missing".
        if matches!(selection.layout, Layout::Files(_)) && out.problems.is_empty() {
            let refs: Vec<&Document> = docs.iter().map(|(_, d)| d).collect();
            let subject = files
                .iter()
                .filter(|f| f.format.has_keys())
                .map(|f| f.name.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            for key in check::missing_keys(&selection.keys, &refs) {
                out.problems
                    .push(Problem::key_missing(subject.clone(), key.as_str()));
            }
            // Schemas last: on the same documents, so the same version.
            if out.problems.is_empty() {
                schema_checks(&docs, selection, &mut out);
            }
        }
        (out, version)
    }
}

/// `--schema` on the documents that parsed and carry their keys. A
/// violation names the file, the JSON Pointer and the rule, never the
/// value.
fn schema_checks(docs: &[(&Path, Document)], selection: &Selection, out: &mut Scan) {
    for (name, doc) in docs {
        let Some(tree) = doc.tree() else { continue };
        let shown = name.display().to_string();
        for schema in selection.schemas_for(name) {
            out.problems.extend(schema.problems(&shown, tree));
        }
    }
}

/// Validity, `--min-validity`, key pairs and `--ca-file` on the PEM files
/// that parsed; also when to look again because a certificate becomes
/// valid or drops under `--min-validity` by itself.
fn tls_checks(pem_files: &[(String, check::pem::Bundle)], selection: &Selection, out: &mut Scan) {
    let tls = check::tls::check_bundles(pem_files, &selection.tls, std::time::SystemTime::now());
    out.problems.extend(tls.problems);
    if let Some(next) = tls.next_change {
        out.recheck_within(next);
    }
}

/// A hash of some bytes, to tell versions apart (not a secret-safe digest:
/// it never leaves the process).
#[must_use]
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Why the mount directory itself cannot be scanned, if it cannot.
fn mount_problem(selection: &Selection) -> Option<Problem> {
    let mount = &selection.mount;
    let shown = mount.display().to_string();
    let err =
        match std::fs::metadata(mount) {
            Ok(meta) if meta.is_dir() => return None,
            Ok(_) => return Some(Problem::new(
                shown,
                Kind::MountNotDir,
                "is not a directory; --mount-path must name the directory the volume is mounted at",
            )),
            Err(err) => err,
        };
    let (class, what) = match err.raw_os_error() {
        Some(libc::ENOENT) => (
            Kind::MountMissing,
            format!(
                "directory does not exist yet; waiting for {}",
                selection.file_names().join(", ")
            ),
        ),
        Some(libc::EACCES) => (
            Kind::MountPermission,
            "cannot be reached: permission denied on it or a parent directory \
             (the gate needs search permission on every directory of the path)"
                .to_owned(),
        ),
        Some(libc::ENAMETOOLONG) => (
            Kind::MountInvalid,
            "path, or a name in it, is too long for this system; use a shorter --mount-path"
                .to_owned(),
        ),
        Some(libc::ENOTDIR) => (
            Kind::MountInvalid,
            "a parent of this path is not a directory; check --mount-path".to_owned(),
        ),
        Some(libc::ELOOP) => (
            Kind::MountInvalid,
            "path has a symlink loop; check --mount-path".to_owned(),
        ),
        _ if crate::problem::is_resource_error(&err) => (
            Kind::Resource,
            format!(
                "cannot be looked at: the gate is out of resources ({}); this says nothing about the mount",
                io_reason(&err)
            ),
        ),
        _ => (
            Kind::MountIo,
            format!("cannot be read: {}", io_reason(&err)),
        ),
    };
    Some(Problem::new(shown, class, what))
}

/// An I/O error's reason without the "(os error N)" noise.
fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

/// One version of a kubelet-written volume: the `..<timestamp>` directory
/// that `..data` pointed at when the scan began.
///
/// The layout is recognised exactly: `..data` is a symlink whose target is
/// a single name starting with `..`, and that name is a real directory in
/// the same mount. A plain directory named `..data` is not a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(OsString);

impl Version {
    /// The version `mount/..data` points at now, if the mount is a kubelet
    /// volume.
    #[must_use]
    pub fn of(mount: &Path) -> Option<Self> {
        let target = std::fs::read_link(mount.join("..data")).ok()?;
        let mut components = target.components();
        let (Some(Component::Normal(name)), None) = (components.next(), components.next()) else {
            return None;
        };
        let text = name.to_str()?;
        if !text.starts_with("..") || text == "..data" || text == "..data_tmp" || text.len() < 3 {
            return None;
        }
        let meta = std::fs::symlink_metadata(mount.join(name)).ok()?;
        meta.is_dir().then(|| Self(name.to_owned()))
    }

    /// Where `name` (relative to the mount) really lives in this version,
    /// when its first component is one of the kubelet's visible links
    /// `first -> ..data/first`. `None` for files outside the layout.
    #[must_use]
    pub fn resolve(&self, mount: &Path, name: &Path) -> Option<PathBuf> {
        let mut parts = name.components();
        let Some(Component::Normal(first)) = parts.next() else {
            return None;
        };
        let link = std::fs::read_link(mount.join(first)).ok()?;
        let mut target = link.components();
        let points_into_data = target.next() == Some(Component::Normal("..data".as_ref()))
            && target.next() == Some(Component::Normal(first))
            && target.next().is_none();
        if !points_into_data {
            return None;
        }
        let mut real = mount.join(&self.0).join(first);
        // Joining an empty rest would add a trailing `/`.
        if !parts.as_path().as_os_str().is_empty() {
            real.push(parts.as_path());
        }
        Some(real)
    }
}

const fn read_kind(err: &ReadError) -> Kind {
    match err {
        ReadError::Missing => Kind::Missing,
        ReadError::DanglingSymlink => Kind::Dangling,
        ReadError::SymlinkLoop => Kind::SymlinkLoop,
        ReadError::NotAFile(_) => Kind::NotAFile,
        ReadError::PermissionDenied { .. } => Kind::Permission,
        ReadError::TooLarge { .. } => Kind::TooLarge,
        ReadError::Io(_) => Kind::Io,
        ReadError::Resource(_) => Kind::Resource,
    }
}

#[cfg(test)]
mod tests {
    use super::scan;
    use crate::check::{Format, Key};
    use crate::volume::{FileSpec, KeyFormat, Layout, Selection};
    use std::path::PathBuf;

    fn selection(dir: &std::path::Path, files: &[&str], keys: &str) -> Selection {
        Selection {
            mount: dir.to_path_buf(),
            layout: if files.is_empty() {
                Layout::KeyPerFile(KeyFormat::ByExtension)
            } else {
                Layout::Files(
                    files
                        .iter()
                        .map(|f| FileSpec {
                            name: PathBuf::from(f),
                            format: Format::by_extension(std::path::Path::new(f)),
                        })
                        .collect(),
                )
            },
            keys: Key::parse_list(keys).unwrap_or_default(),
            max_file_size: 1 << 20,
            settle: std::time::Duration::ZERO,
            tls: crate::check::TlsPolicy::default(),
            schemas: Vec::new(),
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

    #[test]
    fn mount_errors_are_named_for_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let long = dir.path().join("x".repeat(300));
        let table = [
            (dir.path().join("file"), "is not a directory"),
            (
                dir.path().join("file/below"),
                "a parent of this path is not a directory",
            ),
            (long, "is too long for this system"),
        ];
        for (mount, want) in table {
            let got = shown(&scan(&selection(&mount, &["s.json"], "")));
            assert!(got[0].contains(want), "{}: {got:?}", mount.display());
        }
    }
}

#[cfg(test)]
mod settle_tests {
    use super::{scan, settle, Scanner, Settle, Sighting};
    use crate::check::{Format, Key};
    use crate::problem::Kind;
    use crate::volume::read::read_capped;
    use crate::volume::{FileSpec, KeyFormat, Layout, Selection};
    use std::os::unix::fs::symlink;
    use std::time::Duration;
    use tokio::time::Instant;

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
            tls: crate::check::TlsPolicy::default(),
            schemas: Vec::new(),
        }
    }

    #[test]
    fn the_settle_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let a = read_capped(&path, 100).unwrap().stamp.unwrap();
        std::fs::write(dir.path().join("g"), "other").unwrap();
        let b = read_capped(&dir.path().join("g"), 100)
            .unwrap()
            .stamp
            .unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let seen = |since| Some(Sighting { stamp: a, since });
        let wait = |quiet, left| Settle::Wait {
            quiet_for: ms(quiet),
            left: ms(left),
        };
        // (previous, stamp now, now, settle time) -> verdict
        let table = [
            // No settle time: always settled, nothing kept.
            (None, Some(a), t0, ms(0), Settle::Settled),
            // First sighting: the whole settle time is left.
            (None, Some(a), t0, ms(250), wait(0, 250)),
            // Changed during the read: never settled.
            (seen(t0), None, t0 + ms(900), ms(250), wait(0, 250)),
            // Same version, quiet for part of the time.
            (seen(t0), Some(a), t0 + ms(100), ms(250), wait(100, 150)),
            // Same version, quiet long enough.
            (seen(t0), Some(a), t0 + ms(250), ms(250), Settle::Settled),
            // Another version: the clock starts again.
            (seen(t0), Some(b), t0 + ms(900), ms(250), wait(0, 250)),
        ];
        for (i, (previous, stamp, now, time, want)) in table.into_iter().enumerate() {
            assert_eq!(settle(previous, stamp, now, time).0, want, "row {i}");
        }
    }

    #[test]
    fn fresh_files_that_can_be_cut_short_settle_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("app.env"), "A=hun").unwrap();
        let s = scan(&selection(d, "app.env", Format::Env));
        assert_eq!(s.problems.len(), 1);
        assert_eq!(s.problems[0].kind, Kind::Settling);
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
        assert_eq!(scan(&sel).problems[0].kind, Kind::Settling);
    }

    #[test]
    fn a_file_counts_once_quiet_for_the_settle_time_across_scans() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("app.env"), "A=x").unwrap();
        let mut sel = selection(d, "app.env", Format::Env);
        sel.settle = Duration::from_millis(30);
        let mut scanner = Scanner::new();
        let first = scanner.scan(&sel);
        assert_eq!(first.problems[0].kind, Kind::Settling);
        std::thread::sleep(first.recheck_in.unwrap());
        assert!(scanner.scan(&sel).problems.is_empty());
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

    #[test]
    fn a_file_the_kubelet_swapped_in_is_never_still_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_11_23")).unwrap();
        std::fs::write(d.join("..2026_11_23/s.json"), r#"{"A":"#).unwrap();
        symlink("..2026_11_23", d.join("..data")).unwrap();
        symlink("..data/s.json", d.join("s.json")).unwrap();
        let got = scan(&selection(d, "s.json", Format::Json)).problems;
        assert_eq!(
            got[0].to_string(),
            "s.json: JSON ends early at line 1 column 5 (file is 5 bytes)"
        );
    }

    #[test]
    fn a_look_alike_data_directory_is_not_the_kubelet() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..data")).unwrap();
        std::fs::write(d.join("..data/app.env"), "A=hun").unwrap();
        symlink("..data/app.env", d.join("app.env")).unwrap();
        let s = scan(&selection(d, "app.env", Format::Env));
        assert_eq!(s.problems[0].kind, Kind::Settling, "{:?}", s.problems);
    }

    #[test]
    fn every_file_is_read_from_the_version_data_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // ..data points at a version holding only `username`, while a
        // stale visible link `password` is left from another version.
        std::fs::create_dir(d.join("..v1")).unwrap();
        std::fs::create_dir(d.join("..v2")).unwrap();
        std::fs::write(d.join("..v1/username"), "u").unwrap();
        std::fs::write(d.join("..v2/password"), "p").unwrap();
        symlink("..v1", d.join("..data")).unwrap();
        symlink("..data/username", d.join("username")).unwrap();
        symlink("..data/password", d.join("password")).unwrap();
        let mut sel = selection(d, "x", Format::Raw);
        sel.layout = Layout::KeyPerFile(KeyFormat::ByExtension);
        sel.keys = Key::parse_list("username,password").unwrap();
        let got: Vec<String> = scan(&sel)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["password: missing"]);
    }
}
