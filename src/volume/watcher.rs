//! inotify, through notify: watch directories (never the secret files
//! themselves), follow a mount path that does not exist yet down as it
//! appears, and turn events into "re-check now" triggers.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Room for bursts of events; when full, events are dropped, which is safe
/// because a pending trigger already guarantees a full re-scan after them.
const CHANNEL_CAPACITY: usize = 256;

/// How long [`DirWatcher::close`] waits between removing the watches and
/// closing the instance. Removing a directory's last watch frees the
/// kernel's per-inode mark list at once, and that waits out an SRCU grace
/// period on a kernel worker. Closing the instance flushes the mark reaper,
/// which waits out another. Started together, the second finds the first
/// in progress and is not expedited: it takes one to four scheduler ticks
/// (4-16 ms at 250 Hz), and the process cannot end before it does. Started
/// this long apart, both are expedited and over in well under a
/// millisecond. The gap leaves room for the first grace period on a loaded
/// machine; if it is not enough, the close waits as it would have anyway.
/// Figure 1 of `make bench` times the whole exit against `inotifywait`.
pub const CLOSE_GAP: Duration = Duration::from_micros(150);

/// What the notify callback tells the wait loop.
#[derive(Debug)]
pub enum Trigger {
    /// Something changed under a watched directory: re-check everything.
    Changed,
    /// The watcher reported an error (e.g. queue overflow): re-check
    /// everything, and keep the message for the diagnosis.
    Error(String),
}

/// Why inotify cannot serve and the gate falls back to polling.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify watch limit reached: raise fs.inotify.max_user_watches")]
    TooManyWatches,
    #[error("inotify instance limit reached: raise fs.inotify.max_user_instances")]
    TooManyInstances,
    #[error("inotify unavailable: {0}")]
    Other(String),
}

impl From<notify::Error> for WatchError {
    fn from(err: notify::Error) -> Self {
        match &err.kind {
            notify::ErrorKind::MaxFilesWatch => Self::TooManyWatches,
            notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                Self::TooManyWatches
            }
            notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => {
                Self::TooManyInstances
            }
            _ => Self::Other(err.to_string()),
        }
    }
}

/// The directories the gate cares about, watched at their nearest
/// existing ancestor until they exist. Its calls touch the filesystem, so
/// they run on the blocking pool; the events arrive through [`Triggers`].
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    /// Directories we want to see events for.
    targets: BTreeSet<PathBuf>,
    /// What is watched now: path -> (device, inode) when it was added, so a
    /// replaced directory (or a swapped symlink) is noticed and re-watched.
    watched: HashMap<PathBuf, (u64, u64)>,
}

impl DirWatcher {
    /// Starts an inotify instance for `targets` (directories that may not
    /// exist yet). Call [`Self::sync`] before the first check.
    pub fn new(targets: BTreeSet<PathBuf>) -> Result<(Self, Triggers), WatchError> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Never block here: this runs on notify's thread.
            let trigger = match res {
                Ok(event) if is_relevant(&event) => Trigger::Changed,
                Ok(_) => return,
                Err(err) => Trigger::Error(err.to_string()),
            };
            let _ = tx.try_send(trigger);
        })?;
        let watcher = Self {
            watcher,
            targets,
            watched: HashMap::new(),
        };
        Ok((watcher, Triggers { rx }))
    }

    /// Moves watches to where they belong now: down to a target once it
    /// exists, and onto a fresh inode if a directory was replaced. Call it
    /// before each check, so files that appeared before a watch was added
    /// are still seen by the check that follows.
    ///
    /// A directory created below a new watch before that watch existed
    /// sends no event, so after adding watches the plan is worked out again
    /// until nothing moves (bounded by the depth of the deepest target).
    pub fn sync(&mut self) -> Result<(), WatchError> {
        let rounds = self
            .targets
            .iter()
            .map(|t| t.components().count())
            .max()
            .unwrap_or(0)
            + 2;
        for _ in 0..rounds {
            if !self.sync_once()? {
                break;
            }
        }
        Ok(())
    }

    /// Ends the watch with the shortest wait for the kernel's teardown:
    /// removes every watch, waits [`CLOSE_GAP`], then closes the instance
    /// (on notify's thread, which it tells to stop). Blocks for about
    /// `CLOSE_GAP`; each removal is a round trip to notify's thread, with
    /// no filesystem call, since the watched paths are absolute.
    pub fn close(mut self) {
        for path in std::mem::take(&mut self.watched).into_keys() {
            let _ = self.watcher.unwatch(&path);
        }
        // The thread's default timer slack (50 µs) would stretch the gap
        // by a third. This is a blocking-pool thread of a process that
        // ends once the close is over.
        let _ = nix::sys::prctl::set_timerslack(1);
        std::thread::sleep(CLOSE_GAP);
    }

    /// One pass of [`Self::sync`]; true if it added a watch.
    fn sync_once(&mut self) -> Result<bool, WatchError> {
        let wanted: BTreeSet<PathBuf> = self
            .targets
            .iter()
            .filter_map(|t| nearest_existing_dir(t))
            .collect();
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(path, id)| !wanted.contains(*path) || dir_id(path) != Some(**id))
            .map(|(path, _)| path.clone())
            .collect();
        for path in stale {
            // The watch may already be gone with its inode; that is fine.
            let _ = self.watcher.unwatch(&path);
            self.watched.remove(&path);
        }
        let mut added = false;
        for path in wanted {
            if self.watched.contains_key(&path) {
                continue;
            }
            let Some(id) = dir_id(&path) else { continue };
            match self.watcher.watch(&path, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "watching directory");
                    self.watched.insert(path, id);
                    added = true;
                }
                // It vanished between the stat and the watch: next sync.
                Err(err) if matches!(err.kind, notify::ErrorKind::PathNotFound) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(added)
    }
}

/// The receiving end of a [`DirWatcher`]'s events.
pub struct Triggers {
    rx: mpsc::Receiver<Trigger>,
}

impl Triggers {
    /// Waits for the next trigger, then takes every other pending one too,
    /// so a burst of events costs one check. Returns the last error seen.
    pub async fn next_batch(&mut self) -> Option<String> {
        let mut error = None;
        match self.rx.recv().await {
            Some(Trigger::Error(e)) => error = Some(e),
            Some(Trigger::Changed) => {}
            // The watcher was dropped (it fell back to polling): never
            // wake up again.
            None => std::future::pending().await,
        }
        while let Ok(trigger) = self.rx.try_recv() {
            if let Trigger::Error(e) = trigger {
                error = Some(e);
            }
        }
        error
    }
}

/// Opens of the directory by our own scans, and reads, are noise; a
/// close after writing is the end of a write and counts.
fn is_relevant(event: &notify::Event) -> bool {
    if event.need_rescan() {
        return true;
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The deepest existing directory at or above `target`.
fn nearest_existing_dir(target: &Path) -> Option<PathBuf> {
    target
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.is_dir())
        .map(Path::to_path_buf)
        .or_else(|| Some(PathBuf::from(".")))
}

fn dir_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::nearest_existing_dir;

    #[test]
    fn nearest_existing_walks_up() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        assert_eq!(nearest_existing_dir(&deep).unwrap(), dir.path());
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        assert_eq!(nearest_existing_dir(&deep).unwrap(), dir.path().join("a/b"));
    }
}
