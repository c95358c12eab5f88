//! After the gate: `--keep-running` (a native sidecar that keeps checking,
//! serves probes and metrics, and notifies the app of a passing change)
//! and `-- CMD` (exec the app once ready, see [`crate::exec`]).
//!
//! - [`Options::from_cli`] validates the flags of both.
//! - [`run`] is the keep-running counterpart of [`crate::run::run`]: the
//!   first ready is raced against `--timeout` and SIGTERM/SIGINT exactly as
//!   in the one-shot gate; after it, only a signal ends the run.
//! - [`state`] holds ready/not-ready and the metrics; [`server`] serves
//!   them; [`notify`] delivers change notifications; [`watch`] and
//!   [`safe`] are the two never-ending check loops; [`versioned`] writes
//!   `--output-dir` the kubelet's way.

pub mod notify;
pub mod safe;
pub mod server;
pub mod state;
pub mod versioned;
pub mod watch;

use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::{AfterArgs, Cli, Command, OnDelete};
use crate::config::{Config, Mode, Output};
use crate::exit::ExitCode;
use crate::report::{report_stop, write_termination_log, Progress};
use crate::run::{note_unfinished_first_look, rounded, Stop};

use notify::{Notifier, Targets};
use state::{Shared, Tracker};

/// What happens after the first ready.
#[derive(Debug, Default)]
pub struct Options {
    /// `--keep-running` and its flags.
    pub keep_running: Option<KeepRunning>,
    /// `-- CMD [ARGS...]`.
    pub exec: Option<Vec<OsString>>,
}

/// The validated `--keep-running` configuration.
#[derive(Debug)]
pub struct KeepRunning {
    pub listen: Option<SocketAddr>,
    pub targets: Targets,
    /// Safe mode: the poll interval once ready.
    pub sync_interval: Duration,
    pub on_delete: OnDelete,
    /// Safe mode: `VSECM_SIDECAR_SECRETS_PATH` when neither `--output` nor
    /// `--output-dir` is given.
    pub fallback_output: Option<Output>,
}

impl Options {
    /// Validates the after-ready flags; the error is a usage error (exit 2).
    pub fn from_cli(cli: &Cli) -> Result<Self, String> {
        let (after, safe) = match &cli.command {
            Command::Watch(a) => (&a.after, None),
            Command::Safe(a) => (&a.after, Some(a)),
            Command::Check(_) => return Ok(Self::default()),
        };
        let exec = (!after.command.is_empty()).then(|| after.command.clone());
        if !after.keep_running {
            let stray = [
                (after.listen.is_some(), "--listen"),
                (!after.on_change_url.is_empty(), "--on-change-url"),
                (after.on_change_signal.is_some(), "--on-change-signal"),
            ];
            if let Some((_, flag)) = stray.iter().find(|(set, _)| *set) {
                return Err(format!(
                    "{flag} needs --keep-running (SECRET_GATE_KEEP_RUNNING=true): without it the gate exits once ready"
                ));
            }
            return Ok(Self {
                keep_running: None,
                exec,
            });
        }
        if exec.is_some() {
            return Err(
                "--keep-running and `-- CMD` cannot be combined: exec replaces the gate, so nothing \
                 would keep running; run the gate as a native sidecar, or exec the app without --keep-running"
                    .to_owned(),
            );
        }
        let keep = keep_running(after, safe)?;
        Ok(Self {
            keep_running: Some(keep),
            exec: None,
        })
    }
}

fn keep_running(
    after: &AfterArgs,
    safe: Option<&crate::cli::SafeArgs>,
) -> Result<KeepRunning, String> {
    let listen = after.listen.as_deref().map(parse_listen).transpose()?;
    let mut urls = Vec::new();
    for text in after
        .on_change_url
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
    {
        urls.push(parse_url(text)?);
    }
    let signal = match (&after.on_change_signal, &after.signal_process) {
        (Some(sig), Some(name)) => {
            let signal =
                notify::parse_signal(sig).map_err(|e| format!("--on-change-signal: {e}"))?;
            if name.trim().is_empty() {
                return Err("--signal-process is empty: give the app's process name".to_owned());
            }
            Some((signal, name.trim().to_owned()))
        }
        _ => None,
    };
    if after.on_change_timeout.is_zero() {
        return Err("--on-change-timeout must be more than 0".to_owned());
    }
    let (sync_interval, on_delete, fallback_output) = match safe {
        Some(a) => {
            if a.sync_interval.is_zero() {
                return Err(
                    "VSECM_SIDECAR_POLL_INTERVAL / --sync-interval must be more than 0".to_owned(),
                );
            }
            let fallback = match (&a.output, &a.output_dir) {
                (None, None) => std::env::var_os("VSECM_SIDECAR_SECRETS_PATH")
                    .filter(|v| !v.is_empty())
                    .map(|path| Output::File {
                        path: PathBuf::from(path),
                        mode: a.file_mode,
                    }),
                _ => None,
            };
            (a.sync_interval, a.on_delete, fallback)
        }
        None => (Duration::from_secs(20), OnDelete::Keep, None),
    };
    Ok(KeepRunning {
        listen,
        targets: Targets {
            urls,
            signal,
            attempt_timeout: after.on_change_timeout,
            retries: after.on_change_retries,
            retry_base: Duration::from_millis(250),
        },
        sync_interval,
        on_delete,
        fallback_output,
    })
}

/// `ADDR:PORT`, `[v6]:PORT`, or `:PORT` for every IPv4 address.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    let full = if t.starts_with(':') {
        format!("0.0.0.0{t}")
    } else {
        t.to_owned()
    };
    full.parse().map_err(|_| {
        format!("--listen {t:?} is not ADDR:PORT: write e.g. 0.0.0.0:8080 (the pod IP, for kubelet probes) or 127.0.0.1:8080")
    })
}

fn parse_url(text: &str) -> Result<http::Uri, String> {
    let bad = |why: &str| {
        format!("--on-change-url {text:?} {why}: write e.g. http://127.0.0.1:9090/-/reload")
    };
    // Credentials would reach every notification's log line: refuse them,
    // without echoing the URL.
    let authority = text.split("://").nth(1).unwrap_or(text).split('/').next();
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(
            "--on-change-url must not carry credentials (user:password@host): \
                    they would be logged; put the app's reload endpoint on the pod's loopback"
                .to_owned(),
        );
    }
    let uri: http::Uri = text.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "must be http:// (the app in the same pod, as with configmap-reload)",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(uri)
}

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
    let (mode, timeout) = match &config.mode {
        Mode::Watch(c) => ("watch", c.timeout),
        Mode::Safe(c) => ("safe", c.timeout),
        Mode::Check(_) => return ExitCode::Usage,
    };
    if let Some(addr) = opts.listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                // The bound address: with port 0, the one the system chose.
                let bound = listener.local_addr().unwrap_or(addr);
                tracing::info!(addr = %bound, "serving /readyz, /livez and /metrics");
                server::spawn(listener, shared.clone());
            }
            Err(error) => {
                let text = format!("secret-gate: configuration error: cannot listen on {addr} (--listen): {error}\n");
                tracing::error!("{}", text.trim_end());
                if let Some(path) = &config.termination_log {
                    write_termination_log(path, &text);
                }
                return ExitCode::Usage;
            }
        }
    }
    let notifier = Notifier::start(opts.targets.clone(), shared.clone());
    let progress = Progress::new();
    let mut tracker = Tracker::new(shared.clone(), notifier);
    tracing::info!(
        timeout = %timeout.map_or_else(|| "none".to_owned(), rounded),
        "secret-gate {mode}: waiting for secrets, then keeping running (--keep-running)"
    );
    let looping = async {
        match &config.mode {
            Mode::Watch(c) => watch::keep_watching(c, &mut tracker, &progress).await,
            Mode::Safe(c) => safe::keep_syncing(c, opts, &mut tracker, &progress).await,
            Mode::Check(_) => {}
        }
    };
    let deadline = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown, looping);
    let headline = tokio::select! {
        biased;
        stop = &mut shutdown => {
            return stopped(config, mode, stop, started, false, &shared);
        }
        () = deadline => {
            let limit = timeout.map(rounded).unwrap_or_default();
            format!("{mode}: not ready after {limit} (--timeout)")
        }
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
    tracing::info!(elapsed = ?started.elapsed(), "ready; keeping running until SIGTERM");
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

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn webhook_urls() {
        assert!(parse_url("http://127.0.0.1:9090/-/reload").is_ok());
        for bad in ["https://app/-/reload", "http:///x", "not a url"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let err = parse_url("http://admin:s3cr3t@app:9090/-/reload").unwrap_err();
        assert!(
            err.contains("credentials") && !err.contains("s3cr3t"),
            "{err}"
        );
    }
}
