//! Volume mode: wait for secret files under a mounted directory.
//!
//! Triggers are inotify events on the directories (see [`watcher`]) and a
//! periodic re-check; each trigger runs a full [`scan`] by path. An event
//! is never taken as proof of readiness: only a scan that finds every file
//! parsed and every key present is.

pub mod read;
pub mod scan;
pub mod watcher;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::{interval, MissedTickBehavior};

use crate::config::{Selection, WatchConfig};
use crate::report::Progress;
use watcher::DirWatcher;

pub use scan::{scan, Scan};

/// The directories whose entries decide readiness: the mount itself and
/// the parent of every nested `--file`.
fn watch_targets(selection: &Selection) -> BTreeSet<PathBuf> {
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
pub async fn wait_ready(config: &WatchConfig, progress: &Progress) {
    let selection = Arc::new(config.selection.clone());
    let mut watcher = if config.poll_only {
        tracing::info!(every = ?config.poll_interval, "polling only (--poll-only)");
        None
    } else {
        match DirWatcher::new(watch_targets(&selection)) {
            Ok(w) => Some(w),
            Err(err) => {
                fall_back(&err, config, progress);
                None
            }
        }
    };
    let mut ticker = interval(config.poll_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.reset();

    loop {
        if let Some(w) = watcher.as_mut() {
            if let Err(err) = w.sync() {
                fall_back(&err, config, progress);
                watcher = None;
            }
        }
        let result = scan_off_thread(&selection).await;
        if result.problems.is_empty() {
            return;
        }
        progress.update(result.problems);
        // A settling file is looked at again when its quiet time is up, and
        // a certificate when it becomes valid or drops under --min-validity.
        let settled = async {
            match result.recheck_in {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };

        if let Some(w) = watcher.as_mut() {
            tokio::select! {
                error = w.next_batch() => {
                    if let Some(error) = error {
                        tracing::warn!(%error, "inotify reported an error; re-scanning everything");
                        progress.set_last_error(format!("inotify: {error}"));
                    }
                }
                _ = ticker.tick() => {}
                () = settled => {}
            }
        } else {
            tokio::select! {
                _ = ticker.tick() => {}
                () = settled => {}
            }
        }
    }
}

/// Runs a scan on the blocking pool, so a read stuck on a dead network
/// filesystem cannot stall the runtime: signals and the deadline still win.
async fn scan_off_thread(selection: &Arc<Selection>) -> Scan {
    let selection = Arc::clone(selection);
    match tokio::task::spawn_blocking(move || scan(&selection)).await {
        Ok(result) => result,
        Err(error) => Scan {
            problems: vec![crate::check::Problem::new(
                "scan",
                "internal",
                format!("the file check failed: {error}"),
            )],
            recheck_in: None,
        },
    }
}

fn fall_back(err: &watcher::WatchError, config: &WatchConfig, progress: &Progress) {
    let every = humantime::format_duration(config.poll_interval);
    tracing::warn!("{err}; falling back to polling every {every}");
    progress.set_last_error(format!("{err}; polled every {every} instead"));
}

#[cfg(test)]
mod tests {
    use super::watch_targets;
    use crate::check::Format;
    use crate::config::{FileSpec, Layout, Selection};
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
            key_format: Format::Auto,
            tls: crate::check::TlsPolicy::default(),
        };
        let got: Vec<PathBuf> = watch_targets(&sel).into_iter().collect();
        assert_eq!(got, [PathBuf::from("/m"), PathBuf::from("/m/sub")]);
    }
}
