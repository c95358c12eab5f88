//! `--keep-running`: the counterpart of [`super::run`] for a gate that
//! stays as a native sidecar. The first ready is raced against
//! `--timeout` and SIGTERM/SIGINT exactly as in the one-shot gate, with
//! the same diagnosis; after it, only a signal ends the run.

use std::future::Future;

use tokio::time::Instant;

use crate::config::{Config, Mode};
use crate::exit::ExitCode;
use crate::report::{report_stop, rounded, write_termination_log, Progress};
use crate::sidecar::notify::Notifier;
use crate::sidecar::state::{Shared, Tracker};
use crate::sidecar::{safe, server, watch, KeepRunning};
use crate::signals::Stop;

use super::{deadline, not_ready_after, note_unfinished_first_look, show_timeout};

/// Keeps running until a signal: the first ready raced against the
/// deadline (with the one-shot gate's diagnosis if it passes), then the
/// check loop with probes and notifications.
pub async fn run(
    config: &Config,
    opts: &KeepRunning,
    shutdown: impl Future<Output = Stop>,
) -> ExitCode {
    let started = Instant::now();
    let shared = Shared::new();
    let (mode, timeout) = (config.mode.name(), config.mode.timeout());
    if let Some(addr) = opts.listen {
        match crate::serve::bind(addr) {
            Ok(listener) => {
                // The bound address: with port 0, the one the system chose.
                let bound = listener.local_addr().unwrap_or(addr);
                let max_connections = crate::rlimit::connection_cap(opts.max_connections);
                tracing::info!(addr = %bound, max_connections, "serving /readyz, /livez and /metrics");
                server::spawn(listener, &shared, max_connections);
            }
            Err(error) => {
                let text = format!("secret-gate: configuration error: cannot listen on {addr} (--listen): {error}\n");
                report_stop(config.termination_log.as_deref(), &text);
                return ExitCode::Usage;
            }
        }
    }
    let notifier = Notifier::start(opts.targets.clone(), shared.clone());
    let progress = Progress::new();
    let mut tracker = Tracker::new(shared.clone(), notifier);
    tracing::info!(
        timeout = %show_timeout(timeout),
        "secret-gate {mode}: waiting for secrets, then keeping running (--keep-running)"
    );
    let looping = async {
        match &config.mode {
            Mode::Watch(c) => watch::keep_watching(c, &mut tracker, &progress).await,
            Mode::Safe(c) => safe::keep_syncing(c, opts, &mut tracker, &progress).await,
            // Refused by config: `check` has no --keep-running.
            Mode::Check(_) => {}
        }
    };
    tokio::pin!(shutdown, looping);
    let headline = tokio::select! {
        biased;
        stop = &mut shutdown => {
            return stopped(config, mode, stop, started, false, &shared);
        }
        () = deadline(timeout) => format!("{mode}: {}", not_ready_after(timeout)),
        () = shared.first_ready() => String::new(),
        () = &mut looping => format!("{mode}: the check loop stopped unexpectedly"),
    };
    if !headline.is_empty() {
        note_unfinished_first_look(config, &progress);
        report_stop(
            config.termination_log.as_deref(),
            &progress.diagnosis(&headline),
        );
        return ExitCode::NotReady;
    }
    tracing::info!(elapsed = %rounded(started.elapsed()), "ready; keeping running until SIGTERM");
    tokio::select! {
        biased;
        stop = &mut shutdown => stopped(config, mode, stop, started, true, &shared),
        () = &mut looping => {
            tracing::error!("the check loop stopped unexpectedly");
            ExitCode::NotReady
        }
    }
}

fn stopped(
    config: &Config,
    mode: &str,
    stop: Stop,
    started: Instant,
    was_ready: bool,
    shared: &Shared,
) -> ExitCode {
    shared.stopping();
    let state = match (was_ready, shared.is_ready()) {
        (false, _) => "before the first ready",
        (true, true) => "while ready",
        (true, false) => "while not ready",
    };
    let elapsed = rounded(started.elapsed());
    let text = format!(
        "secret-gate: {mode}: stopped by {} after {elapsed} {state} (--keep-running)\n",
        stop.name()
    );
    tracing::info!("{}", text.trim_end());
    if let Some(path) = &config.termination_log {
        write_termination_log(path, &text);
    }
    stop.exit_code()
}
