//! The state directory: registrations, faults, the request log and the files
//! `serve` hands out.
//!
//! Everything lives in plain files so that tests and scripts can change a
//! running fake without restarting it; the Safe re-reads them on every
//! request. Layout under the state directory:
//!
//! | path | written by | content |
//! |---|---|---|
//! | `secrets/<workload>` | `register` | the raw secret value |
//! | `faults.json` | `fault` | the injected faults, see [`Faults`] |
//! | `requests.log` | the Safe | one `<unix µs> <status>` line per request |
//! | `env` | `serve` | `export` lines for the client, see [`crate`] |
//! | `bundle.pem` | `serve` | the CA the Workload API hands out |
//! | `agent.sock` | `serve` | the Workload API socket (default place) |
//! | `agent.stopped` | `agent --stop` | present while the Workload API is to be down |
//! | `agent.log` | `serve` | one `<unix µs> started <inode>` or `<unix µs> stopped` line per change |
//!
//! Writers replace files atomically (temp file, fsync, rename, fsync of the
//! directory), so a reader never sees half a value.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A failure to read or change the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The workload name cannot be a SPIFFE ID path segment.
    #[error(
        "workload name {name:?} is not valid: {reason} (use letters, digits, '.', '-' and '_', \
         as in the `workload/<name>` segment of a SPIFFE ID)"
    )]
    InvalidWorkloadName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file could not be replaced atomically.
    #[error(transparent)]
    Write(secret_gate::safe::output::OutputError),
    /// No running fake acted on `agent --stop`/`--start` in time.
    #[error("no fake-safe serve acted on the request within {wait:?} ({path} did not say so): is `fake-safe serve` running with this --state-dir?")]
    AgentNotAcknowledged {
        /// `agent.log`.
        path: PathBuf,
        /// How long the command waited.
        wait: Duration,
    },
    /// A fault status that is not a final HTTP status.
    #[error("fault status {0} is not an HTTP status the Safe can answer with: use 200..=599")]
    InvalidFaultStatus(u16),
    /// `faults.json` is not what [`set_faults`] writes.
    #[error("{path} is not a valid faults file (fix or delete it, or run `fake-safe fault --clear`): {source}")]
    BadFaults {
        /// The faults file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl StateError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Faults the Safe injects into every answer, until cleared.
///
/// They apply in this order: `delay` first; then `status`, which wins over
/// everything else; then `oversize`. The route check (400 for anything but
/// `GET /workload/v1/secrets`) comes after the delay and before the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Answer with this HTTP status instead: 503 with body `NOK!` (VSecM's
    /// "backing store not ready"), any other status with an empty body.
    pub status: Option<u16>,
    /// Sleep this long before answering.
    pub delay: Option<Duration>,
    /// Answer 200 with a body of exactly this many bytes: a JSON object whose
    /// `data` is padding (plain padding below 11 bytes, the smallest such
    /// object).
    pub oversize: Option<usize>,
}

impl Faults {
    /// True when no fault is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The on-disk form of [`Faults`]: `{"status":503,"delay_ms":250,"oversize_bytes":1048576}`,
/// every field optional.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oversize_bytes: Option<usize>,
}

/// A registered secret as the Safe serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// The raw value.
    pub value: String,
    /// When it was registered (the file's modification time).
    pub registered: SystemTime,
}

/// Paths inside a state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    pub fn faults_path(&self) -> PathBuf {
        self.root.join("faults.json")
    }

    pub fn requests_log_path(&self) -> PathBuf {
        self.root.join("requests.log")
    }

    pub fn env_path(&self) -> PathBuf {
        self.root.join("env")
    }

    pub fn bundle_path(&self) -> PathBuf {
        self.root.join("bundle.pem")
    }

    pub fn agent_stopped_path(&self) -> PathBuf {
        self.root.join("agent.stopped")
    }

    pub fn agent_log_path(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    /// Whether `agent --stop` asked for the Workload API to be down.
    pub fn agent_wanted_down(&self) -> bool {
        fs::symlink_metadata(self.agent_stopped_path()).is_ok()
    }

    /// Appends `<unix time in µs> <event>` to `agent.log`.
    pub fn log_agent(&self, at: SystemTime, event: &str) -> Result<(), StateError> {
        append_line(&self.agent_log_path(), at, event)
    }

    pub fn default_socket_path(&self) -> PathBuf {
        self.root.join("agent.sock")
    }

    /// The file holding `workload`'s secret, after checking the name.
    pub fn secret_path(&self, workload: &str) -> Result<PathBuf, StateError> {
        check_workload_name(workload)?;
        Ok(self.secrets_dir().join(workload))
    }

    /// Creates the directory and its `secrets/` subdirectory (mode 0700).
    pub fn create(&self) -> Result<(), StateError> {
        let secrets = self.secrets_dir();
        fs::create_dir_all(&secrets).map_err(|e| StateError::io("cannot create", &secrets, e))?;
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700))
            .map_err(|e| StateError::io("cannot set the mode of", &secrets, e))
    }

    /// The workload's registration, or `None` when there is none.
    pub fn read_registration(&self, workload: &str) -> Result<Option<Registration>, StateError> {
        let path = self.secret_path(workload)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("cannot read", &path, e)),
        };
        let registered = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| StateError::io("cannot stat", &path, e))?;
        let value = match String::from_utf8(bytes) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(workload = %workload, path = %path.display(), "registered value is not UTF-8; serving it lossily");
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        Ok(Some(Registration { value, registered }))
    }

    /// The current faults; none when `faults.json` does not exist.
    pub fn read_faults(&self) -> Result<Faults, StateError> {
        let path = self.faults_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Faults::default()),
            Err(e) => return Err(StateError::io("cannot read", &path, e)),
        };
        let file: FaultsFile = serde_json::from_slice(&bytes)
            .map_err(|source| StateError::BadFaults { path, source })?;
        Ok(Faults {
            status: file.status,
            delay: file.delay_ms.map(Duration::from_millis),
            oversize: file.oversize_bytes,
        })
    }

    /// Appends `<unix time in µs> <status>` to `requests.log` in one write,
    /// so concurrent appends never interleave.
    pub fn log_request(&self, at: SystemTime, status: u16) -> Result<(), StateError> {
        append_line(&self.requests_log_path(), at, &status.to_string())
    }
}

/// Appends `<unix time in µs> <what>` to `path` in one write, so
/// concurrent appends never interleave.
fn append_line(path: &Path, at: SystemTime, what: &str) -> Result<(), StateError> {
    let micros = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let line = format!("{micros} {what}\n");
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| StateError::io("cannot append to", path, e))
}

/// Asks a running fake to stop its Workload API (`running == false`) or
/// start it again, and waits up to `wait` until it has: returns the line
/// it logged in `agent.log` (`<unix µs> started <inode>` or
/// `<unix µs> stopped`).
pub fn set_agent(state_dir: &Path, running: bool, wait: Duration) -> Result<String, StateError> {
    let state = StateDir::new(state_dir);
    let marker = state.agent_stopped_path();
    if running {
        remove_if_exists(&marker)?;
    } else {
        write_atomic(&marker, b"", 0o644)?;
    }
    let acknowledged = if running { " started " } else { " stopped" };
    let log = state.agent_log_path();
    let deadline = std::time::Instant::now() + wait;
    loop {
        let last = fs::read_to_string(&log)
            .ok()
            .and_then(|text| text.lines().last().map(str::to_owned));
        if let Some(line) = last.filter(|l| l.contains(acknowledged)) {
            return Ok(line);
        }
        if std::time::Instant::now() >= deadline {
            return Err(StateError::AgentNotAcknowledged { path: log, wait });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks that `name` can be both a file name and a SPIFFE ID path segment.
pub(crate) fn check_workload_name(name: &str) -> Result<(), StateError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        Some("it has a character outside [A-Za-z0-9._-]")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StateError::InvalidWorkloadName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Replaces `path` atomically with `contents` and the given mode, as
/// secret-gate writes its output: a temp file in the same directory, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), StateError> {
    secret_gate::safe::output::write_atomic(path, contents, mode).map_err(StateError::Write)
}

/// Removes `path`; true if it existed.
fn remove_if_exists(path: &Path) -> Result<bool, StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StateError::io("cannot remove", path, e)),
    }
}

/// Registers `value` as the secret of `workload` (what VSecM Sentinel's
/// `safe -w <workload> -s <value>` does), replacing any earlier value. The
/// registration time the Safe reports is the time of this call. Works
/// whether or not the fake is running.
pub fn register(state_dir: &Path, workload: &str, value: &str) -> Result<(), StateError> {
    let state = StateDir::new(state_dir);
    let path = state.secret_path(workload)?;
    state.create()?;
    write_atomic(&path, value.as_bytes(), 0o600)
}

/// Deletes the secret of `workload`, so the Safe answers 404 again. Returns
/// whether there was one.
pub fn delete_registration(state_dir: &Path, workload: &str) -> Result<bool, StateError> {
    let state = StateDir::new(state_dir);
    remove_if_exists(&state.secret_path(workload)?)
}

/// Replaces the injected faults with `faults` (an empty [`Faults`] clears
/// them). Works whether or not the fake is running.
pub fn set_faults(state_dir: &Path, faults: &Faults) -> Result<(), StateError> {
    let state = StateDir::new(state_dir);
    if let Some(status) = faults.status.filter(|s| !(200..=599).contains(s)) {
        return Err(StateError::InvalidFaultStatus(status));
    }
    if faults.is_empty() {
        return clear_faults(state_dir);
    }
    let file = FaultsFile {
        status: faults.status,
        delay_ms: faults
            .delay
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        oversize_bytes: faults.oversize,
    };
    let mut json = serde_json::to_vec(&file).map_err(|source| StateError::BadFaults {
        path: state.faults_path(),
        source,
    })?;
    json.push(b'\n');
    fs::create_dir_all(state_dir).map_err(|e| StateError::io("cannot create", state_dir, e))?;
    write_atomic(&state.faults_path(), &json, 0o644)
}

/// Removes every injected fault.
pub fn clear_faults(state_dir: &Path) -> Result<(), StateError> {
    remove_if_exists(&StateDir::new(state_dir).faults_path()).map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn workload_names() {
        let table = [
            ("example", true),
            ("my-app_2.v1", true),
            ("", false),
            (".", false),
            ("..", false),
            (".tmpAbc", false),
            ("a/b", false),
            ("a b", false),
            ("ünï", false),
        ];
        for (name, ok) in table {
            assert_eq!(check_workload_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn register_read_delete() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(state.read_registration("example").unwrap(), None);
        register(dir.path(), "example", "s3cr3t").unwrap();
        let reg = state.read_registration("example").unwrap().unwrap();
        assert_eq!(reg.value, "s3cr3t");
        register(dir.path(), "example", "again").unwrap();
        assert_eq!(
            state.read_registration("example").unwrap().unwrap().value,
            "again"
        );
        assert!(delete_registration(dir.path(), "example").unwrap());
        assert!(!delete_registration(dir.path(), "example").unwrap());
        assert_eq!(state.read_registration("example").unwrap(), None);
        assert!(register(dir.path(), "../x", "v").is_err());
    }

    #[test]
    fn faults_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(state.read_faults().unwrap().is_empty());
        let faults = Faults {
            status: Some(503),
            delay: Some(Duration::from_millis(250)),
            oversize: Some(4096),
        };
        set_faults(dir.path(), &faults).unwrap();
        assert_eq!(state.read_faults().unwrap(), faults);
        let text = fs::read_to_string(state.faults_path()).unwrap();
        assert_eq!(
            text,
            "{\"status\":503,\"delay_ms\":250,\"oversize_bytes\":4096}\n"
        );
        clear_faults(dir.path()).unwrap();
        assert!(state.read_faults().unwrap().is_empty());
        clear_faults(dir.path()).unwrap();
        fs::write(state.faults_path(), "{\"stauts\":503}").unwrap();
        assert!(matches!(
            state.read_faults(),
            Err(StateError::BadFaults { .. })
        ));
    }

    #[test]
    fn request_log_lines() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        state.log_request(at, 404).unwrap();
        state.log_request(at, 200).unwrap();
        let text = fs::read_to_string(state.requests_log_path()).unwrap();
        assert_eq!(text, "1700000000123456 404\n1700000000123456 200\n");
    }
}
