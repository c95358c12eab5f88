//! The validated configuration. Built once from the parsed command line
//! ([`Config::from_cli`]); every check that can fail before the gate starts
//! waiting happens here, and fails with exit code 2 and a message saying
//! what to change.
//!
//! It reads [`crate::cli`]'s types and assembles the types each part owns:
//! [`crate::volume::WatchConfig`] and [`crate::volume::Selection`],
//! [`crate::safe::SafeConfig`], and [`crate::sidecar::After`]. Nothing past
//! this module sees a command-line type.

mod after;
mod safe;
mod volume;

use std::path::PathBuf;
use std::time::Duration;

use crate::check::Key;
use crate::cli::{Cli, Command};
use crate::safe::SafeConfig;
use crate::sidecar::After;
use crate::volume::{Selection, WatchConfig};

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// What happens after the first ready: exit, exec, or keep running.
    pub after: After,
    /// Where the diagnosis is written on a non-zero exit, if anywhere.
    pub termination_log: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Mode {
    Watch(WatchConfig),
    Check(Selection),
    Safe(Box<SafeConfig>),
}

impl Mode {
    /// The subcommand, for messages.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Watch(_) => "watch",
            Self::Check(_) => "check",
            Self::Safe(_) => "safe",
        }
    }

    /// `--timeout`, if any (`check` has none).
    #[must_use]
    pub const fn timeout(&self) -> Option<Duration> {
        match self {
            Self::Watch(c) => c.timeout,
            Self::Safe(c) => c.timeout,
            Self::Check(_) => None,
        }
    }
}

/// A configuration error: printed, written to the termination log, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Config {
    /// Validates the command line. `termination_log` is where the
    /// diagnosis goes, worked out by the caller (see
    /// [`crate::entry`]), so that even this function's errors reach it.
    pub fn from_cli(cli: &Cli, termination_log: Option<PathBuf>) -> Result<Self, ConfigError> {
        let (mode, after) = match &cli.command {
            Command::Watch(a) => {
                if a.poll_interval < Duration::from_millis(10) {
                    return Err(bad("--poll-interval must be at least 10ms"));
                }
                let mode = Mode::Watch(WatchConfig {
                    selection: volume::selection(&a.selection)?,
                    timeout: nonzero(a.timeout),
                    poll_interval: a.poll_interval,
                    poll_only: a.poll_only,
                });
                (mode, after::after(&a.after, None)?)
            }
            Command::Check(a) => (
                Mode::Check(volume::selection(&a.selection)?),
                After::default(),
            ),
            Command::Safe(a) => (
                Mode::Safe(Box::new(safe::safe(a)?)),
                after::after(&a.after, Some(a))?,
            ),
        };
        Ok(Self {
            mode,
            after,
            termination_log,
        })
    }
}

/// The largest `--max-backoff` accepted.
pub const MAX_BACKOFF_LIMIT: Duration = Duration::from_secs(30);

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The entries of a repeatable flag, trimmed, without empty ones (a
/// comma-separated variable may end in a comma).
fn entries(list: &[String]) -> Vec<&str> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `--required-keys`, parsed, without repeats.
fn keys(text: Option<&str>) -> Result<Vec<Key>, ConfigError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let mut keys = Key::parse_list(text).map_err(|e| bad(format!("--required-keys: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.as_str().to_owned()));
    Ok(keys)
}
