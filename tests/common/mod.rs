//! Shared helpers for the integration tests.
//!
//! - [`Gate`] runs the real `secret-gate` binary (or any other program a
//!   test needs) with arguments and environment, captures stdout and
//!   stderr while it runs ([`Running`]), waits for it with a bounded limit
//!   and kills it when dropped, so no test can hang or leak a process. It
//!   lives in `bounded.rs` and is the only way the tests start processes,
//!   the fake Safe (`fake.rs`) included.
//! - [`assert_log_has`] and [`assert_log_contains`] check the termination
//!   log and show it, with the run, when they fail.
//! - [`CANARY`] is the one secret value every leak test plants, and
//!   [`assert_no_canary`] the one check that it did not leak.
//! - [`Fixture`] is a temp directory with a mount path and a termination
//!   log path in it.
//! - [`AtomicWriter`] fills a directory the way the kubelet fills Secret,
//!   `ConfigMap` and projected volumes: a timestamped `..<ts>/` directory,
//!   a `..data` symlink swapped in by `rename`, and visible
//!   `name -> ..data/name` links.
//! - [`TornWriter`] writes a file the way a sidecar without `rename` does:
//!   truncate, then write in pieces.
//!
//! Every wait here is bounded. Nothing asserts speed: the limits only turn
//! a hang into a failure that shows what the gate printed.
#![allow(dead_code)] // each test crate uses a part of these helpers

// `bounded.rs` is declared by each test crate at its root (`fake.rs` uses
// it too, and a file must be one module per crate).
#[allow(unused_imports)] // each test crate uses a part of these
pub use crate::bounded::{is_root, Finished, Gate, Running, HANG_LIMIT, NOBODY};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_secret-gate");

/// Generous `--timeout` for runs that should become ready: an upper bound
/// so nothing waits forever, not a speed requirement.
pub const READY_TIMEOUT: &str = "20s";

/// Sleeps for `ms` milliseconds: the pauses between a writer's steps.
pub fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes a FIFO at `path` with mkfifo(1): the crate denies unsafe code,
/// so no `libc::mkfifo`.
pub fn mkfifo(path: &Path) {
    Gate::program("mkfifo").arg(path).run().assert_code(0);
}

/// A free loopback port: bind to port 0, note it, release it.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(|e| panic!("no free loopback port: {e}"), |a| a.port())
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A temp directory holding a mount path (`<root>/mount`) and a
/// termination log path (`<root>/out/termination-log`).
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub mount: PathBuf,
    pub log: PathBuf,
}

impl Fixture {
    /// A fixture whose mount directory exists and is empty.
    #[must_use]
    pub fn new() -> Self {
        let fixture = Self::without_mount();
        std::fs::create_dir(&fixture.mount).unwrap_or_else(|e| panic!("mkdir mount: {e}"));
        fixture
    }

    /// A fixture whose mount directory does not exist yet.
    #[must_use]
    pub fn without_mount() -> Self {
        let root = tempfile::Builder::new()
            .prefix("secret-gate-test.")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let out = root.path().join("out");
        std::fs::create_dir(&out).unwrap_or_else(|e| panic!("mkdir out: {e}"));
        Self {
            mount: root.path().join("mount"),
            log: out.join("termination-log"),
            root,
        }
    }

    /// `name` under the mount.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }

    /// Writes `name` under the mount in place (create or truncate, write).
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Replaces `name` under the mount atomically: a temp file beside it,
    /// then `rename`.
    pub fn replace(&self, name: &str, bytes: impl AsRef<[u8]>) {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
    }

    /// The termination log as written by the gate; empty if it was not.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `secret-gate <subcommand> --mount-path <mount> --termination-log <log>`.
    #[must_use]
    pub fn gate(&self, subcommand: &str) -> Gate {
        Gate::new(subcommand)
            .arg("--mount-path")
            .arg(&self.mount)
            .arg("--termination-log")
            .arg(&self.log)
    }

    /// `secret-gate watch` on this fixture.
    #[must_use]
    pub fn watch(&self) -> Gate {
        self.gate("watch")
    }

    /// `secret-gate check` on this fixture.
    #[must_use]
    pub fn check(&self) -> Gate {
        self.gate("check")
    }

    /// Opens the fixture to an unprivileged gate: the root and mount
    /// directories world-readable, the termination log's directory
    /// world-writable.
    pub fn open_to_others(&self) {
        chmod(self.root.path(), 0o755);
        if self.mount.is_dir() {
            chmod(&self.mount, 0o755);
        }
        if let Some(out) = self.log.parent() {
            chmod(out, 0o777);
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// `secret-gate <subcommand>`, with no `SECRET_GATE_*`, `VSECM_*` or
    /// `SPIFFE_*` variables inherited from the test's environment.
    #[must_use]
    pub fn new(subcommand: &str) -> Self {
        Self::binary().arg(subcommand)
    }

    /// `secret-gate` with no arguments yet, for runs that give the
    /// subcommand themselves (or none); environment as for [`Gate::new`].
    #[must_use]
    pub fn binary() -> Self {
        Self::binary_at(Path::new(BIN))
    }

    /// Another build of `secret-gate` (the static one), run as
    /// [`Gate::binary`] runs the one under test.
    #[must_use]
    pub fn binary_at(bin: &Path) -> Self {
        let mut gate = Self::program(bin).shown_as("secret-gate");
        for (name, _) in std::env::vars_os() {
            let inherited = name.to_str().is_some_and(|n| {
                ["SECRET_GATE_", "VSECM_", "SPIFFE_"]
                    .iter()
                    .any(|p| n.starts_with(p))
            });
            if inherited {
                gate = gate.env_remove(&name);
            }
        }
        gate
    }
}

/// True if `log` has exactly `line` as one of its lines.
#[must_use]
pub fn has_line(log: &str, line: &str) -> bool {
    log.lines().any(|l| l == line)
}

/// Panics, showing the termination log and the run, unless the log has
/// exactly `line` as one of its lines.
pub fn assert_log_has(fx: &Fixture, line: &str, run: &Finished) {
    let log = fx.log();
    assert!(
        has_line(&log, line),
        "termination log lacks the line {line:?}\n--- log ---\n{log}\n{}",
        run.dump()
    );
}

/// Panics, showing the termination log and the run, unless the log
/// contains `needle`.
pub fn assert_log_contains(fx: &Fixture, needle: &str, run: &Finished) {
    let log = fx.log();
    assert!(
        log.contains(needle),
        "termination log lacks {needle:?}\n--- log ---\n{log}\n{}",
        run.dump()
    );
}

/// Panics, showing the termination log and the run, if the log contains
/// `needle`.
pub fn assert_log_lacks(fx: &Fixture, needle: &str, run: &Finished) {
    let log = fx.log();
    assert!(
        !log.contains(needle),
        "termination log shows {needle:?}\n--- log ---\n{log}\n{}",
        run.dump()
    );
}

/// The secret value every leak test plants, in files, in the fake Safe and
/// in URLs. One word of letters and digits, so that every format reads it
/// as a single token (a JSON bare word, a YAML plain scalar, a part of an
/// env name).
pub const CANARY: &str = "CANARY7f3Q9zXk2VpL";

/// Panics, naming `what` (stdout, a log, a metrics page) and showing
/// `context`, if `text` holds the canary or its `CANARY` stem: a value cut
/// short or quoted in pieces is a leak too.
pub fn assert_no_canary(text: &str, what: &str, context: &str) {
    let stem = &CANARY[..6];
    assert!(
        !text.contains(stem),
        "{what} leaks the canary\n--- {what} ---\n{text}\n{context}"
    );
}

/// Writes a directory the way the kubelet's `AtomicWriter` does for
/// Secret, `ConfigMap`, projected and downward-API volumes:
///
/// 1. the payload goes into a new `..<timestamp>/` directory;
/// 2. a symlink `..data_tmp` is pointed at it;
/// 3. `..data_tmp` is renamed over `..data` (the atomic swap);
/// 4. visible `name -> ..data/name` links are added, and those no longer
///    in the payload removed;
/// 5. the old timestamped directory is deleted.
pub struct AtomicWriter {
    dir: PathBuf,
    generation: u32,
    visible: Vec<String>,
}

impl AtomicWriter {
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            generation: 0,
            visible: Vec::new(),
        }
    }

    /// One update: `payload` is the whole new content of the volume.
    pub fn write(&mut self, payload: &[(&str, &[u8])]) {
        let fail = |what: &str, path: &Path, e: std::io::Error| -> ! {
            panic!("AtomicWriter: {what} {}: {e}", path.display())
        };
        std::fs::create_dir_all(&self.dir).unwrap_or_else(|e| fail("mkdir", &self.dir, e));
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).ok();

        // 1. The new timestamped directory, in the kubelet's name format.
        self.generation += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let ts_name = format!("..2026_11_23_01_50_00.{nanos:09}{}", self.generation);
        let ts_dir = self.dir.join(&ts_name);
        std::fs::create_dir(&ts_dir).unwrap_or_else(|e| fail("mkdir", &ts_dir, e));
        for (name, bytes) in payload {
            let path = ts_dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| fail("mkdir", parent, e));
            }
            std::fs::write(&path, bytes).unwrap_or_else(|e| fail("write", &path, e));
            chmod(&path, 0o644);
        }

        // 2. and 3. `..data_tmp` -> the new directory, renamed over `..data`.
        let tmp = self.dir.join("..data_tmp");
        symlink(&ts_name, &tmp).unwrap_or_else(|e| fail("symlink", &tmp, e));
        std::fs::rename(&tmp, &data).unwrap_or_else(|e| fail("rename", &data, e));

        // 4. Visible links, one per top-level entry of the payload.
        let mut visible: Vec<String> = payload.iter().map(|(name, _)| top_level(name)).collect();
        visible.dedup();
        for name in &visible {
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), &link)
                    .unwrap_or_else(|e| fail("symlink", &link, e));
            }
        }
        for gone in self.visible.iter().filter(|n| !visible.contains(n)) {
            let link = self.dir.join(gone);
            std::fs::remove_file(&link).unwrap_or_else(|e| fail("unlink", &link, e));
        }
        self.visible = visible;

        // 5. The old timestamped directory.
        if let Some(old) = old {
            let old = self.dir.join(old);
            std::fs::remove_dir_all(&old).unwrap_or_else(|e| fail("rm -r", &old, e));
        }
    }
}

fn top_level(name: &str) -> String {
    match Path::new(name).components().next() {
        Some(Component::Normal(first)) => first.to_string_lossy().into_owned(),
        _ => panic!("AtomicWriter: bad payload name {name:?}"),
    }
}

/// Writes a file the way a sidecar that does not use `rename` does (`VSecM`
/// Sidecar, spiffe-helper): truncate it, then write the new content in
/// pieces, each visible to readers as soon as it is written.
pub struct TornWriter {
    file: File,
    path: PathBuf,
}

impl TornWriter {
    /// Creates or truncates `path`: readers now see an empty file.
    #[must_use]
    pub fn truncate(path: &Path) -> Self {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Self {
            file,
            path: path.to_path_buf(),
        }
    }

    /// Appends one piece; it reaches the file at once (no user-space buffer).
    pub fn piece(&mut self, bytes: &[u8]) {
        self.file
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
    }
}
