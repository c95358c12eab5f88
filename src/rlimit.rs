//! The open-files limit. At start the gate raises its soft
//! `RLIMIT_NOFILE` to the hard limit, as Go programs do since Go 1.19, so
//! that connections to the probe port cannot use up the descriptors the
//! check needs; an exec'd command gets the original soft limit back.

use std::sync::OnceLock;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept back from `--max-connections` for the gate's own use:
/// the listener, the files it reads, inotify, the Safe and notification
/// connections, the log.
pub const RESERVED_FDS: u64 = 64;

/// The soft limit the gate started with, when it raised it.
static ORIGINAL_SOFT: OnceLock<u64> = OnceLock::new();

/// Raises the soft open-files limit to the hard limit, and logs both the
/// old and the new value.
pub fn raise_nofile() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                let _ = ORIGINAL_SOFT.set(soft);
                tracing::info!(
                    soft = soft,
                    hard = hard,
                    "raised the open-files soft limit (RLIMIT_NOFILE) from {soft} to the hard limit {hard}"
                );
            }
            Err(error) => tracing::warn!(
                %error,
                soft,
                hard,
                "cannot raise the open-files soft limit (RLIMIT_NOFILE) to the hard limit; keeping {soft}"
            ),
        },
        Ok((soft, hard)) => tracing::debug!(
            soft,
            hard,
            "the open-files soft limit (RLIMIT_NOFILE) is already the hard limit"
        ),
        Err(error) => tracing::warn!(%error, "cannot read the open-files limit (RLIMIT_NOFILE)"),
    }
}

/// Puts back the soft limit the gate started with, for a command it execs.
pub fn restore_nofile() {
    if let (Some(&soft), Ok((_, hard))) = (ORIGINAL_SOFT.get(), getrlimit(Resource::RLIMIT_NOFILE))
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
    }
}

/// `--max-connections`, lowered (with a warning) when the open-files limit
/// could not hold that many connections plus [`RESERVED_FDS`].
#[must_use]
pub fn connection_cap(wanted: usize) -> usize {
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_files = soft,
            "--max-connections {wanted} does not fit the open-files limit {soft}: serving at most {room} connections; raise the hard limit (ulimit -Hn) or lower --max-connections"
        );
        room
    } else {
        wanted
    }
}
