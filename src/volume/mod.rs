//! Volume mode: wait for secret files under a mounted directory.
//!
//! Triggers are inotify events on the directories (see [`watcher`]) and a
//! periodic re-check; each trigger runs a full [`scan`] by path. An event
//! is never taken as proof of readiness: only a scan that finds every file
//! parsed and every key present is.

pub mod config;
pub mod read;
pub mod scan;
pub mod watcher;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use tokio::time::{interval, Interval, MissedTickBehavior};

use crate::problem::{Kind, Problem};
use crate::report::Progress;
use watcher::{DirWatcher, Triggers};

pub use config::{FileSpec, KeyFormat, Layout, SchemaRule, Selection, WatchConfig};
pub use scan::{scan, Scan, Scanner};

/// The directories whose entries decide readiness: the mount itself and
/// the parent of every nested `--file`.
pub(crate) fn watch_targets(selection: &Selection) -> BTreeSet<PathBuf> {
    let mut targets = BTreeSet::from([selection.mount.clone()]);
    for file in selection.files() {
        if let Some(parent) = file.name.parent().filter(|p| !p.as_os_str().is_empty()) {
            targets.insert(selection.mount.join(parent));
        }
    }
    targets
}

/// Returns once every secret of the selection is ready. Never returns
/// otherwise: the caller races it against the deadline and signals.
///
/// Every filesystem call (setting up and moving inotify watches, the scan
/// itself) runs on the blocking pool, so a mount whose `stat` never returns
/// cannot hold the runtime thread: the deadline and signals still win.
pub async fn wait_ready(config: &WatchConfig, progress: &Progress) {
    let selection = Arc::new(config.selection.clone());
    let mut state = Looker {
        selection: Arc::clone(&selection),
        scanner: Scanner::new(),
        watcher: None,
        setup: !config.poll_only,
        close_when_ready: true,
    };
    if config.poll_only {
        tracing::info!(every = ?config.poll_interval, "polling only (--poll-only)");
    }
    let mut wakeups = Wakeups::new(config.poll_interval);

    loop {
        let Some(look) = off_thread(state).await else {
            progress.set_last_error("the file check failed unexpectedly; retrying");
            return std::future::pending().await;
        };
        state = look.state;
        wakeups.after_look(look.started, look.watch_error, config, progress);
        let result = look.scan;
        if result.problems.is_empty() {
            // The look that found it ready has already closed inotify
            // (`close_when_ready`).
            drop(wakeups);
            return;
        }
        progress.update(result.problems);
        // A settling file is looked at again when its quiet time is up, and
        // a certificate when it becomes valid or drops under --min-validity.
        if let Some(error) = wakeups.next(result.recheck_in).await {
            progress.set_last_error(format!("inotify: {error}"));
        }
    }
}

/// What wakes a volume loop for its next look: a batch of inotify events,
/// the poll interval, or the time a settling file or a certificate named.
/// Shared by the one-shot wait and `watch --keep-running`.
pub(crate) struct Wakeups {
    /// `None` before inotify starts, and for good after a fall back to
    /// polling.
    triggers: Option<Triggers>,
    ticker: Interval,
}

impl Wakeups {
    pub(crate) fn new(poll_interval: Duration) -> Self {
        let mut ticker = interval(poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.reset();
        Self {
            triggers: None,
            ticker,
        }
    }

    /// Takes in what a look did to inotify: the watches it started, or the
    /// error that makes the loop fall back to polling (logged and kept for
    /// the diagnosis).
    pub(crate) fn after_look(
        &mut self,
        started: Option<Triggers>,
        watch_error: Option<watcher::WatchError>,
        config: &WatchConfig,
        progress: &Progress,
    ) {
        if let Some(t) = started {
            self.triggers = Some(t);
        }
        if let Some(err) = watch_error {
            let every = humantime::format_duration(config.poll_interval);
            tracing::warn!("{err}; falling back to polling every {every}");
            progress.set_last_error(format!("{err}; polled every {every} instead"));
            self.triggers = None;
        }
    }

    /// Waits for the next wake-up: inotify, the ticker, or `recheck_in`.
    /// Returns the error inotify reported with its events, if any (logged
    /// here; every file is looked at again anyway).
    pub(crate) async fn next(&mut self, recheck_in: Option<Duration>) -> Option<String> {
        let soon = async {
            match recheck_in {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let inotify = async {
            match self.triggers.as_mut() {
                Some(t) => t.next_batch().await,
                None => std::future::pending().await,
            }
        };
        let error = tokio::select! {
            error = inotify => error,
            _ = self.ticker.tick() => None,
            () = soon => None,
        };
        if let Some(error) = &error {
            tracing::warn!(%error, "inotify reported an error; re-scanning everything");
        }
        error
    }
}

/// What the blocking pool works on between two looks.
pub(crate) struct Looker {
    pub selection: Arc<Selection>,
    pub scanner: Scanner,
    pub watcher: Option<DirWatcher>,
    /// inotify is wanted but not started yet.
    pub setup: bool,
    /// Close inotify in the look that finds everything ready, on the
    /// blocking pool: a one-shot wait is over then.
    pub close_when_ready: bool,
}

/// One look: the state handed back, the scan, and what happened to inotify.
pub(crate) struct Look {
    pub state: Looker,
    pub scan: Scan,
    pub started: Option<Triggers>,
    pub watch_error: Option<watcher::WatchError>,
}

/// Starts or moves the watches, then scans, on the blocking pool. `None`
/// only if that task panicked.
pub(crate) async fn off_thread(mut state: Looker) -> Option<Look> {
    tokio::task::spawn_blocking(move || {
        let mut started = None;
        let mut watch_error = None;
        if std::mem::take(&mut state.setup) {
            match DirWatcher::new(watch_targets(&state.selection)) {
                Ok((w, t)) => {
                    state.watcher = Some(w);
                    started = Some(t);
                }
                Err(err) => watch_error = Some(err),
            }
        }
        if let Some(w) = state.watcher.as_mut() {
            if let Err(err) = w.sync() {
                state.watcher = None;
                watch_error = Some(err);
            }
        }
        let scan = state.scanner.scan(&state.selection);
        if state.close_when_ready && scan.problems.is_empty() {
            // Closed here, at once, so that the kernel's teardown of the
            // instance overlaps logging and leaving the runtime instead
            // of following them. The process cannot end before that
            // teardown has, as `inotifywait`'s cannot:
            // [`DirWatcher::close`] says how it is kept short.
            if let Some(watcher) = state.watcher.take() {
                watcher.close();
            }
        }
        Look {
            state,
            scan,
            started,
            watch_error,
        }
    })
    .await
    .ok()
}

/// `check`: [`check_once`], its problems recorded in `progress`. Returns
/// whether the secrets are ready.
pub async fn check(selection: &Selection, progress: &Progress) -> bool {
    let result = check_once(selection).await;
    let ready = result.problems.is_empty();
    if !ready {
        progress.record(result.problems);
    }
    ready
}

/// One scan, on the blocking pool. A file that is only settling
/// (written moments ago, in a format that can be cut short) is looked at
/// again once its settle time is up, so `check` right after a complete
/// write still says ready. The caller races it against signals.
pub async fn check_once(selection: &Selection) -> Scan {
    let selection = Arc::new(selection.clone());
    let mut scanner = Scanner::new();
    // The settle wait is bounded: at most a few rounds of --settle-time.
    for round in 0..5 {
        let sel = Arc::clone(&selection);
        let Ok((back, result)) = tokio::task::spawn_blocking(move || {
            let result = scanner.scan(&sel);
            (scanner, result)
        })
        .await
        else {
            // Never ready on a check that did not run to the end.
            return Scan::one(Problem::new(
                "scan",
                Kind::Internal,
                "the file check failed unexpectedly",
            ));
        };
        scanner = back;
        let only_settling = result.problems.iter().all(|p| p.kind == Kind::Settling);
        if !only_settling {
            // Not ready whatever the settling files turn out to be: report
            // what needs fixing, not files that only need a moment.
            let problems = result.problems.into_iter();
            return Scan {
                problems: problems.filter(|p| p.kind != Kind::Settling).collect(),
                ..Scan::default()
            };
        }
        match result.recheck_in {
            // Only a settle wait: never until a certificate becomes valid.
            Some(wait) if !result.problems.is_empty() && round < 4 => {
                tokio::time::sleep(wait.min(selection.settle)).await;
            }
            _ => return result,
        }
    }
    unreachable!("the last round returns")
}

#[cfg(test)]
mod tests {
    use super::watch_targets;
    use crate::check::Format;
    use crate::volume::{FileSpec, Layout, Selection};
    use std::path::PathBuf;

    #[test]
    fn targets_include_nested_parents() {
        let sel = Selection {
            mount: PathBuf::from("/m"),
            layout: Layout::Files(vec![
                FileSpec {
                    name: "a.json".into(),
                    format: Format::Json,
                },
                FileSpec {
                    name: "sub/b.json".into(),
                    format: Format::Json,
                },
            ]),
            keys: vec![],
            max_file_size: 1,
            settle: std::time::Duration::ZERO,
            tls: crate::check::TlsPolicy::default(),
            schemas: Vec::new(),
        };
        let got: Vec<PathBuf> = watch_targets(&sel).into_iter().collect();
        assert_eq!(got, [PathBuf::from("/m"), PathBuf::from("/m/sub")]);
    }
}
