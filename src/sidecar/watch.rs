//! `watch --keep-running`: the volume loop that never ends. Same triggers
//! as the one-shot wait (inotify on the directories, the poll interval, a
//! settling file's quiet time), each followed by a full scan by path on the
//! blocking pool; every scan is an observation for the [`Tracker`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};

use crate::config::{Selection, WatchConfig};
use crate::report::Progress;
use crate::volume::read::read_capped;
use crate::volume::watcher::{DirWatcher, Triggers, WatchError};
use crate::volume::{Scan, Scanner};

use super::state::{content_hash, Tracker};

/// The least time a new version must stay the same before it is
/// notified: a kubelet swap is several events within microseconds, all
/// drained by one wake-up; this covers a writer's follow-up write.
const MIN_DEBOUNCE: Duration = Duration::from_millis(10);

fn watch_targets(selection: &Selection) -> BTreeSet<PathBuf> {
    let mut targets = BTreeSet::from([selection.mount.clone()]);
    for file in selection.files() {
        if let Some(parent) = file.name.parent().filter(|p| !p.as_os_str().is_empty()) {
            targets.insert(selection.mount.join(parent));
        }
    }
    targets
}

struct Looker {
    selection: Arc<Selection>,
    scanner: Scanner,
    watcher: Option<DirWatcher>,
    setup: bool,
}

struct Look {
    state: Looker,
    scan: Scan,
    /// Each file with a hash of what was read, `None` if unreadable.
    files: Vec<(String, Option<u64>)>,
    started: Option<Triggers>,
    watch_error: Option<WatchError>,
}

/// Moves the watches, scans, and hashes each file, on the blocking pool.
async fn look(mut state: Looker) -> Option<Look> {
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
        let files = state
            .selection
            .files()
            .iter()
            .map(|f| {
                let path = state.selection.mount.join(&f.name);
                let hash = read_capped(&path, state.selection.max_file_size)
                    .ok()
                    .map(|c| content_hash(&c.bytes));
                (f.name.display().to_string(), hash)
            })
            .collect();
        Look {
            state,
            scan,
            files,
            started,
            watch_error,
        }
    })
    .await
    .ok()
}

/// Checks forever. Before the first ready, problems go to `progress` (the
/// diagnosis if the deadline passes); after it, flips go to the tracker.
pub async fn keep_watching(config: &WatchConfig, tracker: &mut Tracker, progress: &Progress) {
    let selection = Arc::new(config.selection.clone());
    let debounce = selection.settle.max(MIN_DEBOUNCE);
    let mut state = Looker {
        selection,
        scanner: Scanner::new(),
        watcher: None,
        setup: !config.poll_only,
    };
    let mut triggers: Option<Triggers> = None;
    let mut ticker = interval(config.poll_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.reset();
    loop {
        let Some(look) = look(state).await else {
            progress.set_last_error("the file check failed unexpectedly");
            tracing::error!("the file check failed unexpectedly; stopping checks");
            return std::future::pending().await;
        };
        state = look.state;
        if let Some(t) = look.started {
            triggers = Some(t);
        }
        if let Some(err) = look.watch_error {
            let every = humantime::format_duration(config.poll_interval);
            tracing::warn!("{err}; falling back to polling every {every}");
            progress.set_last_error(format!("{err}; polled every {every} instead"));
            triggers = None;
        }
        tracker.checked();
        let scan = look.scan;
        let mut again = scan.recheck_in;
        if scan.problems.is_empty() {
            let version = look
                .files
                .iter()
                .map(|(name, hash)| (name.clone(), hash.unwrap_or_default()))
                .collect();
            if let Some(wait) = tracker.ready(version, debounce) {
                again = Some(again.map_or(wait, |a| a.min(wait)));
            }
        } else if scan.problems.iter().all(|p| p.class == "settling") && tracker.was_ready() {
            // A file rewritten in place is given its settle time before
            // it counts either way.
            tracker.saw(&look.files);
        } else {
            tracker.saw(&look.files);
            if tracker.was_ready() {
                tracker.not_ready(&scan.problems);
            } else {
                progress.update(scan.problems);
            }
        }
        let soon = async {
            match again {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        if let Some(t) = triggers.as_mut() {
            tokio::select! {
                error = t.next_batch() => {
                    if let Some(error) = error {
                        tracing::warn!(%error, "inotify reported an error; re-scanning everything");
                    }
                }
                _ = ticker.tick() => {}
                () = soon => {}
            }
        } else {
            tokio::select! {
                _ = ticker.tick() => {}
                () = soon => {}
            }
        }
    }
}
