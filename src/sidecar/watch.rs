//! `watch --keep-running`: the volume loop that never ends. The same looks
//! and wake-ups as the one-shot wait ([`Wakeups`]: inotify on the
//! directories, the poll interval, a settling file's quiet time), each
//! look a full scan by path on the blocking pool; every scan is an
//! observation for the [`Tracker`].

use std::sync::Arc;
use std::time::Duration;

use crate::problem::Kind;
use crate::report::Progress;
use crate::volume::{off_thread, Looker, Scanner, Wakeups, WatchConfig};

use super::state::Tracker;

/// The least time a new version must stay the same before it is
/// notified: a kubelet swap is several events within microseconds, all
/// drained by one wake-up; this covers a writer's follow-up write.
const MIN_DEBOUNCE: Duration = Duration::from_millis(10);

/// How soon to look again after a check the gate's own resources (open
/// files, memory) kept from completing.
const RESOURCE_RETRY: Duration = Duration::from_millis(250);

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
        close_when_ready: false,
    };
    let mut wakeups = Wakeups::new(config.poll_interval);
    loop {
        let Some(look) = off_thread(state).await else {
            progress.set_last_error("the file check failed unexpectedly");
            tracing::error!("the file check failed unexpectedly; stopping checks");
            // Ends the run (the caller says the loop stopped), so /livez
            // stops answering and the kubelet restarts the sidecar.
            return;
        };
        state = look.state;
        wakeups.after_look(look.started, look.watch_error, config, progress);
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
            .all(|p| matches!(p.kind, Kind::Resource | Kind::Settling))
            && scan.problems.iter().any(|p| p.kind == Kind::Resource)
            && tracker.was_ready()
        {
            // The gate's own resources ran out (open files, memory): not a
            // verdict on the secret. Keep the state and look again soon.
            tracker.starved(&scan.problems);
            again = Some(again.map_or(RESOURCE_RETRY, |a| a.min(RESOURCE_RETRY)));
        } else if scan.problems.iter().all(|p| p.kind == Kind::Settling) && tracker.was_ready() {
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
        // An inotify error is logged by `next`; every file is looked at
        // again anyway.
        let _ = wakeups.next(again).await;
    }
}
