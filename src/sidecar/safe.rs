//! `safe --keep-running`: a drop-in for VSecM Sidecar. Until ready, and
//! whenever the Safe fails or has nothing for us, it is paced exactly as
//! the one-shot mode ([`Schedule`]: a steady spread pace for "not yet",
//! back-off for failures, `Retry-After`); once a secret passes, it polls at
//! a steady, jittered interval (`VSECM_SIDECAR_POLL_INTERVAL`). It writes
//! the secret only when it changed and passes the check: `--output`
//! atomically (temp file, fsync, rename), `--output-dir` as one
//! kubelet-style version ([`super::versioned`]).
//!
//! - A secret that fails the check turns the gate not-ready; the files
//!   keep the last good version.
//! - 404 after the secret was served (deleted in the Safe): not-ready, and
//!   the last good files are kept (`--on-delete remove` removes them). An
//!   emptied secret also turns it not-ready.
//! - Other errors (the Safe unreachable, a TLS failure) change nothing but
//!   the pace: the files on disk are still the last good version.
//! - A refusal of our expired SVID (the SPIRE agent down longer than the
//!   SVID's life) keeps the state and does not grow the back-off; the
//!   next SVID from the Workload API wakes the loop at once.

use std::collections::HashSet;
use std::time::Duration;

use crate::check::Document;
use crate::problem::{Identity, Kind, Problem};
use crate::report::Progress;
use crate::safe::client::{Failure, SafeClient};
use crate::safe::schedule::{Pace, Schedule};
use crate::safe::{check_secret, note_problems, output, pause, Output, SafeConfig};

use super::state::Tracker;
use super::versioned;
use super::{KeepRunning, OnDelete};
use crate::volume::scan::content_hash;

/// Polls forever; see the module docs.
pub async fn keep_syncing(
    config: &SafeConfig,
    opts: &KeepRunning,
    tracker: &mut Tracker,
    progress: &Progress,
) {
    let output = config
        .output
        .clone()
        .or_else(|| opts.fallback_output.clone());
    let label = match &output {
        Some(Output::File { path, .. } | Output::Dir { path, .. }) => path.display().to_string(),
        None => "Safe".to_owned(),
    };
    let mut client = SafeClient::new(config);
    let mut schedule = Schedule::new(config.poll_interval, config.max_backoff);
    let mut rng = fastrand::Rng::new();
    let mut written: Option<u64> = None;
    let mut seen: HashSet<Identity> = HashSet::new();
    loop {
        let attempt = client.attempt_reporting(progress).await;
        tracker.checked();
        tracker
            .shared()
            .metrics
            .workload_api(client.svid_expiry(), client.workload_api_reconnects());
        // `None`: ready with this secret, poll at the sync interval.
        let pace = match attempt {
            Ok(secret) => {
                tracker.shared().metrics.safe_request("200");
                let data = secret.expose();
                match check_secret(config, output.as_ref(), data) {
                    Ok(doc) => {
                        let hash = content_hash(data.as_bytes());
                        let result = if written == Some(hash) {
                            Ok(())
                        } else {
                            write(output.as_ref(), data, &doc).await
                        };
                        match result {
                            Ok(()) => {
                                written = Some(hash);
                                seen.clear();
                                tracker.ready(vec![(label.clone(), hash)], Duration::ZERO);
                                None
                            }
                            Err(problem) => {
                                report(tracker, progress, &mut seen, vec![problem], false);
                                Some(Pace::Broken)
                            }
                        }
                    }
                    Err(problems) => {
                        report(tracker, progress, &mut seen, problems, true);
                        Some(Pace::NotYet)
                    }
                }
            }
            Err(failure) => {
                tracker
                    .shared()
                    .metrics
                    .safe_request(failure.kind().label());
                let problem = Problem::new("Safe", Kind::Safe(failure.kind()), failure.to_string());
                if tracker.was_ready() && failure == Failure::NotRegistered {
                    let removed = match written.take() {
                        Some(_) => deleted(output.as_ref(), opts.on_delete, &label).await,
                        None => false,
                    };
                    let what = if removed {
                        "the secret was deleted in the Safe (404); the files were removed (--on-delete remove)"
                    } else {
                        match opts.on_delete {
                            OnDelete::Keep => "the secret was deleted in the Safe (404); the last good files are kept (--on-delete keep)",
                            OnDelete::Remove => "the secret was deleted in the Safe (404); the files written could not all be removed (--on-delete remove)",
                        }
                    };
                    tracker.not_ready(&[Problem::new("Safe", Kind::Deleted, what)]);
                } else if tracker.was_ready() && failure.pace() == Pace::NotYet {
                    // Emptied in the Safe: not ready, the last good files stay.
                    tracker.not_ready(&[problem]);
                } else if tracker.was_ready() {
                    // Nothing on disk changed: keep the state, say it once.
                    if seen.insert(problem.identity()) {
                        tracing::warn!("{problem}; the last good files stay; will retry");
                    }
                } else {
                    report(
                        tracker,
                        progress,
                        &mut seen,
                        vec![problem],
                        failure.is_not_yet(),
                    );
                }
                Some(failure.pace())
            }
        };
        let delay = if let Some(pace) = pace {
            schedule.next_delay(pace)
        } else {
            schedule.steady();
            jittered(opts.sync_interval, &mut rng)
        };
        pause(&mut client, pace, delay).await;
    }
}

/// `interval` ± 10 %, so a fleet of pods does not poll in step.
fn jittered(interval: Duration, rng: &mut fastrand::Rng) -> Duration {
    let tenth = u64::try_from((interval / 10).as_millis()).unwrap_or(0);
    let low = interval.saturating_sub(Duration::from_millis(tenth));
    low + Duration::from_millis(rng.u64(0..=tenth.saturating_mul(2)))
}

/// Before the first ready, as the one-shot mode does; after it, a flip.
fn report(
    tracker: &mut Tracker,
    progress: &Progress,
    seen: &mut HashSet<Identity>,
    problems: Vec<Problem>,
    not_yet: bool,
) {
    if tracker.was_ready() {
        tracker.not_ready(&problems);
    } else {
        note_problems(progress, seen, problems, not_yet);
    }
}

/// Writes a passing secret, on the blocking pool.
async fn write(output: Option<&Output>, data: &str, doc: &Document) -> Result<(), Problem> {
    let problem = |e: output::OutputError| Problem::new("output", Kind::Output, e.to_string());
    let task = match output.cloned() {
        None => return Ok(()),
        Some(Output::File { path, mode }) => {
            let bytes = data.as_bytes().to_vec();
            tokio::task::spawn_blocking(move || {
                output::write_atomic(&path, &bytes, mode)?;
                tracing::info!(path = %path.display(), "wrote the secret");
                Ok(())
            })
        }
        Some(Output::Dir { path, mode }) => {
            let files = output::files_for_dir(doc).map_err(problem)?;
            tokio::task::spawn_blocking(move || {
                versioned::write_version(&path, &files, mode)?;
                // How many, not which: in a YAML secret a "key" may be content.
                tracing::info!(dir = %path.display(), files = files.len(), "wrote a new version, one file per key");
                Ok(())
            })
        }
    };
    match task.await {
        Ok(result) => result.map_err(problem),
        Err(_) => Err(Problem::new(
            "output",
            Kind::Output,
            "writing failed unexpectedly",
        )),
    }
}

/// The secret was deleted in the Safe: keep or remove the files. Returns
/// whether they were removed.
async fn deleted(output: Option<&Output>, on_delete: OnDelete, label: &str) -> bool {
    if on_delete == OnDelete::Keep {
        return false;
    }
    let output = output.cloned();
    let removed = tokio::task::spawn_blocking(move || match output {
        Some(Output::File { path, .. }) => match std::fs::remove_file(path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        },
        Some(Output::Dir { path, .. }) => versioned::remove_all(&path),
        None => true,
    })
    .await
    .unwrap_or(false);
    if removed {
        tracing::warn!(output = %label, "removed the files written (--on-delete remove)");
    } else {
        tracing::error!(output = %label, "could not remove all the files written (--on-delete remove)");
    }
    removed
}
