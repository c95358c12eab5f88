//! After the gate: `--keep-running` (a native sidecar that keeps checking,
//! serves probes and metrics, and notifies the app of a passing change)
//! and `-- CMD` (exec the app once ready, see [`crate::exec`]).
//!
//! - [`After`] holds what to do after the first ready, validated by
//!   [`crate::config`].
//! - [`crate::run::keep_running`] runs it: the first ready is raced
//!   against `--timeout` and SIGTERM/SIGINT exactly as in the one-shot
//!   gate; after it, only a signal ends the run.
//! - [`state`] holds ready/not-ready and the metrics; [`server`] serves
//!   them; [`notify`] delivers change notifications; [`watch`] and
//!   [`safe`] are the two never-ending check loops; [`versioned`] writes
//!   `--output-dir` the kubelet's way.

pub mod notify;
pub mod safe;
pub mod server;
pub mod state;
pub mod versioned;
pub mod watch;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use crate::safe::Output;

use notify::Targets;

/// What happens after the first ready: exit (the default), exec a
/// command, or keep running.
#[derive(Debug, Default)]
pub struct After {
    /// `--keep-running` and its flags.
    pub keep_running: Option<KeepRunning>,
    /// `-- CMD [ARGS...]`.
    pub exec: Option<Vec<OsString>>,
}

/// `--on-delete`: what `safe --keep-running` does when the secret is
/// deleted in the Safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// Keep the last good files; turn not-ready.
    Keep,
    /// Remove the files written; turn not-ready.
    Remove,
}

/// The validated `--keep-running` configuration.
#[derive(Debug)]
pub struct KeepRunning {
    pub listen: Option<SocketAddr>,
    /// `--max-connections`: the cap on open connections to `listen`.
    pub max_connections: usize,
    pub targets: Targets,
    /// Safe mode: the poll interval once ready.
    pub sync_interval: Duration,
    pub on_delete: OnDelete,
    /// Safe mode: `VSECM_SIDECAR_SECRETS_PATH` when neither `--output` nor
    /// `--output-dir` is given.
    pub fallback_output: Option<Output>,
}
