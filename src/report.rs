//! What the gate tells people: progress logs while it waits, and the
//! diagnosis written to the termination log when it gives up.
//!
//! Everything here names files, keys and conditions, never values: the
//! types it handles ([`Problem`]) do not carry secret content.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::problem::{Identity, Problem};

/// The kubelet keeps at most this much of a termination message.
pub const TERMINATION_LOG_LIMIT: usize = 4096;

/// How often to repeat "still waiting" when nothing changes.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// The latest state of the wait, shared between the source that updates it
/// and the code that reports it when the wait ends.
#[derive(Debug, Default)]
pub struct Progress {
    inner: RefCell<State>,
}

#[derive(Debug, Default)]
struct State {
    problems: Vec<Problem>,
    identities: BTreeSet<Identity>,
    last_error: Option<String>,
    last_log: Option<Instant>,
    checks: u64,
    in_flight: Option<InFlight>,
}

/// What the source is waiting for right now (a request, a connection),
/// so a deadline that cuts it short can say so.
#[derive(Debug)]
struct InFlight {
    /// What is awaited, e.g. "the Workload API at unix:///…".
    what: String,
    /// What has not arrived yet, e.g. "no SVID".
    pending: String,
    since: Instant,
}

impl Progress {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the result of one check, and logs at info level when the set
    /// of problems changed, or every 30 s while it does not.
    pub fn update(&self, problems: Vec<Problem>) {
        self.store(problems, true);
    }

    /// Records the result of one check whose conditions the caller already
    /// logged; only the 30 s "still waiting" reminder is logged here.
    pub fn record(&self, problems: Vec<Problem>) {
        self.store(problems, false);
    }

    fn store(&self, problems: Vec<Problem>, log_changes: bool) {
        let mut s = self.inner.borrow_mut();
        s.checks += 1;
        let identities: BTreeSet<Identity> = problems.iter().map(Problem::identity).collect();
        let now = Instant::now();
        let changed = s.last_log.is_none() || identities != s.identities;
        let due = s
            .last_log
            .is_some_and(|t| now.duration_since(t) >= HEARTBEAT);
        if !problems.is_empty() && ((changed && log_changes) || due) {
            let waiting_for = join(&problems);
            tracing::info!(waiting_for = %waiting_for, checks = s.checks, "not ready yet");
            s.last_log = Some(now);
        } else if !problems.is_empty() {
            if s.last_log.is_none() {
                s.last_log = Some(now);
            }
            tracing::debug!(waiting_for = %join(&problems), "still not ready");
        }
        s.identities = identities;
        s.problems = problems;
    }

    /// How many checks have been recorded.
    #[must_use]
    pub fn checks(&self) -> u64 {
        self.inner.borrow().checks
    }

    /// Records an error that is not itself a missing secret (a watcher
    /// error, a failed request), for the diagnosis. Logged by the caller.
    pub fn set_last_error(&self, error: impl Into<String>) {
        self.inner.borrow_mut().last_error = Some(error.into());
    }

    /// Says what the source is about to wait for: `what` (e.g. "the
    /// Workload API at unix:///…") and what has not arrived yet (e.g. "no
    /// SVID"). If the deadline passes before [`Self::clear_in_flight`], the
    /// diagnosis reads "still waiting for {what}: {pending} after {time}".
    /// Calling it again with the same `what` keeps the start time.
    pub fn set_in_flight(&self, what: impl Into<String>, pending: impl Into<String>) {
        let what = what.into();
        let mut s = self.inner.borrow_mut();
        let since = match &s.in_flight {
            Some(f) if f.what == what => f.since,
            _ => Instant::now(),
        };
        s.in_flight = Some(InFlight {
            what,
            pending: pending.into(),
            since,
        });
    }

    /// The wait named by [`Self::set_in_flight`] is over.
    pub fn clear_in_flight(&self) {
        self.inner.borrow_mut().in_flight = None;
    }

    /// The diagnosis for the termination log: a headline, what an attempt
    /// cut short by the deadline was waiting for, the last error seen, and
    /// what is still missing or invalid.
    #[must_use]
    pub fn diagnosis(&self, headline: &str) -> String {
        let s = self.inner.borrow();
        let mut text = format!("secret-gate: {headline}\n");
        if let Some(f) = &s.in_flight {
            let _ = writeln!(
                text,
                "still waiting for {}: {} after {}",
                f.what,
                f.pending,
                rounded(f.since.elapsed())
            );
        }
        // The last error goes before the list, so the 4 KiB cut of the
        // termination log drops problems, not the error.
        let repeated = |err: &String| {
            s.problems
                .iter()
                .any(|p| p.to_string().ends_with(err.as_str()))
        };
        if let Some(err) = s.last_error.as_ref().filter(|e| !repeated(e)) {
            let _ = writeln!(text, "last error: {err}");
        }
        for problem in &s.problems {
            let _ = writeln!(text, "- {problem}");
        }
        text
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `/dev/termination-log` when it exists and can be written without
/// waiting (see [`open_termination_log`]).
#[must_use]
pub fn default_termination_log() -> Option<std::path::PathBuf> {
    let path = Path::new("/dev/termination-log");
    open_termination_log(path, false)
        .ok()
        .map(|_| path.to_path_buf())
}

/// A duration rounded to milliseconds, for people.
#[must_use]
pub fn rounded(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// Says why the gate stops with a non-zero code: the diagnosis as one
/// error line on stderr, and whole in the termination log (if any).
pub fn report_stop(termination_log: Option<&Path>, diagnosis: &str) {
    tracing::error!("{}", diagnosis.trim_end().replace('\n', " | "));
    if let Some(path) = termination_log {
        write_termination_log(path, diagnosis);
    }
}

/// Writes `text` to the termination log, cut to the kubelet's limit.
/// Failure is logged, never fatal: the exit code stands.
pub fn write_termination_log(path: &Path, text: &str) {
    let short = shorten_long_words(text, LONG_WORD);
    let text = truncate(&short, TERMINATION_LOG_LIMIT);
    let result = open_termination_log(path, true).and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), %error, "could not write the termination log");
    }
}

/// Opens a termination log for writing without ever waiting: the open is
/// non-blocking (a FIFO with no reader fails at once instead of hanging),
/// and only a regular file or a character device is written to. With
/// `write_now`, a missing file is created and a regular file truncated;
/// without it the path is only probed. `/dev/stderr` and `/dev/stdout` are
/// the gate's own descriptors 2 and 1, written as they are (a pipe too,
/// and appended to, never truncated), not reopened by name.
pub fn open_termination_log(path: &Path, write_now: bool) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    if path == Path::new("/dev/stderr") {
        return Ok(std::io::stderr().as_fd().try_clone_to_owned()?.into());
    }
    if path == Path::new("/dev/stdout") {
        return Ok(std::io::stdout().as_fd().try_clone_to_owned()?.into());
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(write_now)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| not_a_log_file(path).unwrap_or(error))?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        // Truncate only once we know it is a regular file.
        if write_now {
            file.set_len(0)?;
        }
        Ok(file)
    } else if kind.is_char_device() {
        Ok(file)
    } else {
        Err(not_a_log_file(path).unwrap_or_else(|| std::io::Error::other(NOT_A_LOG_FILE)))
    }
}

const NOT_A_LOG_FILE: &str = "not a regular file or character device; not written \
     (the gate never waits on one): point --termination-log at a regular file";

/// The error for a path that is there but is neither a regular file nor
/// a character device (a FIFO, a directory, a socket), naming what it is;
/// `None` for any other path. Opening one fails with an errno that does
/// not say what to do (ENXIO for a FIFO, EISDIR for a directory).
fn not_a_log_file(path: &Path) -> Option<std::io::Error> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path).ok()?.file_type();
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        return None;
    };
    Some(std::io::Error::other(format!(
        "is {what}, {NOT_A_LOG_FILE}"
    )))
}

/// Words (paths, names) longer than this are shortened in the termination
/// log, so that a long mount path cannot push the reason out of the
/// kubelet's 4,096 bytes.
pub const LONG_WORD: usize = 120;

/// Replaces every space-separated word longer than `max` bytes with its
/// two ends joined by `…` (a path keeps its root and its file name), so
/// each line keeps its reason. Only the termination log is shortened:
/// stderr keeps the full text.
#[must_use]
pub fn shorten_long_words(text: &str, max: usize) -> String {
    let keep = max.saturating_sub(3) / 2;
    let mut out = String::with_capacity(text.len().min(TERMINATION_LOG_LIMIT * 2));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (j, word) in line.split(' ').enumerate() {
            if j > 0 {
                out.push(' ');
            }
            if word.len() <= max {
                out.push_str(word);
                continue;
            }
            let mut head = keep;
            while !word.is_char_boundary(head) {
                head -= 1;
            }
            let mut tail = word.len() - keep;
            while !word.is_char_boundary(tail) {
                tail += 1;
            }
            out.push_str(&word[..head]);
            out.push('…');
            out.push_str(&word[tail..]);
        }
    }
    out
}

/// Cuts `text` to at most `limit` bytes, on a character boundary.
#[must_use]
pub fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::{shorten_long_words, truncate, Progress};
    use crate::problem::{Kind, Problem};

    #[test]
    fn long_words_keep_both_ends_and_short_ones_stay() {
        let long = format!("/var/{}/app.json", "x".repeat(300));
        let text =
            format!("secret-gate: stop\n- {long}: is too long; use a shorter --mount-path\n");
        let short = shorten_long_words(&text, 40);
        let want = format!(
            "secret-gate: stop\n- /var/{}…{}/app.json: is too long; use a shorter --mount-path\n",
            "x".repeat(13),
            "x".repeat(8)
        );
        assert_eq!(short, want);
        assert_eq!(shorten_long_words("a bé c", 40), "a bé c");
        // Multi-byte characters are never split.
        let wide = "é".repeat(100);
        let short = shorten_long_words(&wide, 41);
        assert!(short.contains('…') && short.len() <= 44, "{short}");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn diagnosis_lists_problems_and_last_error() {
        let p = Progress::new();
        p.update(vec![Problem::new(
            "s.json",
            Kind::KeyMissing,
            "key \"password\" missing",
        )]);
        p.set_last_error("Safe answered 503");
        let text = p.diagnosis("not ready after 1s");
        assert_eq!(
            text,
            "secret-gate: not ready after 1s\nlast error: Safe answered 503\n- s.json: key \"password\" missing\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_cut_short_says_what_it_was_waiting_for() {
        let p = Progress::new();
        p.set_in_flight("the Workload API at unix:///x.sock", "no SVID");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(
            p.diagnosis("safe: not ready after 2s (--timeout)"),
            "secret-gate: safe: not ready after 2s (--timeout)\n\
             still waiting for the Workload API at unix:///x.sock: no SVID after 2s\n"
        );
        p.set_in_flight("the Workload API at unix:///x.sock", "no answer");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(p.diagnosis("h").contains(": no answer after 2s 500ms\n"));
        p.clear_in_flight();
        assert_eq!(p.diagnosis("h"), "secret-gate: h\n");
    }
}
