//! `watch --keep-running`: the volume loop that never ends. Same triggers
//! as the one-shot wait (inotify on the directories, the poll interval, a
//! settling file's quiet time), each followed by a full scan by path on the
//! blocking pool; every scan is an observation for the [`Tracker`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};

use crate::report::Progress;
use crate::volume::watcher::Triggers;
use crate::volume::WatchConfig;
use crate::volume::{off_thread, Looker, Scanner};

use super::state::Tracker;

/// The least time a new version must stay the same before it is
/// notified: a kubelet swap is several events within microseconds, all
/// drained by one wake-up; this covers a writer's follow-up write.
const MIN_DEBOUNCE: Duration = Duration::from_millis(10);

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
        let Some(look) = off_thread(state).await else {
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
            let version = scan
                .files
                .iter()
                .map(|(name, hash)| (name.clone(), hash.unwrap_or_default()))
                .collect();
            if let Some(wait) = tracker.ready(version, debounce) {
                again = Some(again.map_or(wait, |a| a.min(wait)));
            }
        } else if scan
            .problems
            .iter()
            .all(|p| p.kind == crate::problem::Kind::Settling)
            && tracker.was_ready()
        {
            // A file rewritten in place is given its settle time before
            // it counts either way.
            tracker.saw(&scan.files);
        } else {
            tracker.saw(&scan.files);
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
