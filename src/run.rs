//! The one place that decides when to stop: ready, deadline or signal.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use clap::Parser;

use crate::cli::{self, Cli};
use crate::config::{Config, Mode};
use crate::exit::ExitCode;
use crate::report::{write_termination_log, Progress};
use crate::{logging, safe, volume};

/// A signal that stops the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Terminate,
    Interrupt,
}

impl Stop {
    const fn exit_code(self) -> ExitCode {
        match self {
            Self::Terminate => ExitCode::Terminated,
            Self::Interrupt => ExitCode::Interrupted,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }
}

/// SIGTERM and SIGINT handlers, installed before any waiting starts so no
/// signal is lost.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT.
    pub async fn recv(mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Terminate,
            _ = self.int.recv() => Stop::Interrupt,
        }
    }
}

/// The whole program: parse the command line, then [`run_cli`]. An
/// argument error is also written to the termination log, since a bad
/// value in a manifest is the likeliest reason an init container fails.
#[must_use]
pub fn main_entry() -> ExitCode {
    let warnings = cli::drop_vsecm_env_values_vsecm_ignores();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            if !err.use_stderr() {
                return ExitCode::Ready; // --help, --version
            }
            if let Some(path) = termination_log_from_raw_args() {
                let rendered = err.render().to_string();
                let text = rendered.trim_start_matches("error: ").trim_end();
                let text = text
                    .trim_end_matches("For more information, try '--help'.")
                    .trim_end();
                write_termination_log(
                    &path,
                    &format!("secret-gate: configuration error: {text}\n"),
                );
            }
            return ExitCode::Usage;
        }
    };
    run_cli(&cli, &warnings)
}

/// `--termination-log` (or its variable, or the default) when the command
/// line itself could not be parsed.
fn termination_log_from_raw_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    let from_args = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--termination-log=")
            .map(ToOwned::to_owned)
            .or_else(|| {
                (a == "--termination-log")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    });
    from_args
        .or_else(|| std::env::var("SECRET_GATE_TERMINATION_LOG").ok())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(crate::config::default_termination_log)
}

/// Runs the parsed command line to an exit code. `warnings` are logged
/// once logging is up.
#[must_use]
pub fn run_cli(cli: &Cli, warnings: &[String]) -> ExitCode {
    if let Err(msg) = logging::init(&crate::config::LogConfig::from_cli(cli)) {
        // Logging is not up: say it on stderr.
        eprintln!("secret-gate: error: {msg}");
        return usage_error(cli, &msg);
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!("{err}");
            return usage_error(cli, &err.to_string());
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::NotReady;
        }
    };
    let code = runtime.block_on(async {
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(%error, "cannot install signal handlers");
                return ExitCode::NotReady;
            }
        };
        run(&config, signals.recv()).await
    });
    // Do not wait on a blocking task (a DNS lookup, say) on the way out:
    // a signal must end the gate promptly.
    runtime.shutdown_timeout(Duration::from_millis(50));
    code
}

/// Writes a configuration error (already reported on stderr) to the
/// termination log.
fn usage_error(cli: &Cli, msg: &str) -> ExitCode {
    if let Some(path) = Config::termination_log_of(cli) {
        write_termination_log(&path, &format!("secret-gate: configuration error: {msg}\n"));
    }
    ExitCode::Usage
}

/// Waits until ready, the deadline, or `shutdown`, whichever comes first.
pub async fn run(config: &Config, shutdown: impl Future<Output = Stop>) -> ExitCode {
    let progress = Progress::new();
    let started = Instant::now();
    let (mode, timeout) = match &config.mode {
        Mode::Check(selection) => return check_once(config, selection).await,
        Mode::Watch(c) => {
            tracing::info!(
                mount = %c.selection.mount.display(),
                files = %file_list(&c.selection),
                keys = c.selection.keys.len(),
                timeout = %show_timeout(c.timeout),
                "secret-gate watch: waiting for secrets"
            );
            ("watch", c.timeout)
        }
        Mode::Safe(c) => {
            tracing::info!(
                url = %c.secrets_url,
                socket = %c.endpoint_socket,
                keys = c.keys.len(),
                timeout = %show_timeout(c.timeout),
                "secret-gate safe: waiting for the Safe"
            );
            ("safe", c.timeout)
        }
    };
    let wait = async {
        match &config.mode {
            Mode::Watch(c) => volume::wait_ready(c, &progress).await,
            Mode::Safe(c) => safe::wait_ready(c, &progress).await,
            Mode::Check(_) => {}
        }
    };
    let deadline = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown);

    let (code, headline) = tokio::select! {
        biased;
        stop = &mut shutdown => {
            let elapsed = rounded(started.elapsed());
            (stop.exit_code(), format!("stopped by {} after {elapsed} while not ready", stop.name()))
        }
        () = deadline => {
            let limit = timeout.map(rounded).unwrap_or_default();
            (ExitCode::NotReady, format!("not ready after {limit} (--timeout)"))
        }
        () = wait => (ExitCode::Ready, String::new()),
    };

    if code == ExitCode::Ready {
        tracing::info!(elapsed = %rounded(started.elapsed()), "ready");
        if let Mode::Safe(c) = &config.mode {
            if !c.wait_before_exit.is_zero() {
                tokio::select! {
                    stop = &mut shutdown => return stop.exit_code(),
                    () = tokio::time::sleep(c.wait_before_exit) => {}
                }
            }
        }
        return ExitCode::Ready;
    }
    let diagnosis = progress.diagnosis(&format!("{mode}: {headline}"));
    tracing::error!("{}", diagnosis.trim_end().replace('\n', " | "));
    if let Some(path) = &config.termination_log {
        write_termination_log(path, &diagnosis);
    }
    code
}

/// One check. A file that is only settling (written moments ago, in a
/// format that can be cut short) is looked at again once its settle time
/// is up, so `check` right after a complete write still says ready.
async fn check_once(config: &Config, selection: &crate::config::Selection) -> ExitCode {
    let mut result = volume::scan(selection);
    for _ in 0..3 {
        // Only a settle wait; not a certificate that becomes valid later.
        let Some(wait) = result.recheck_in.filter(|w| *w <= selection.settle) else {
            break;
        };
        tokio::time::sleep(wait).await;
        result = volume::scan(selection);
    }
    if result.problems.is_empty() {
        tracing::info!(mount = %selection.mount.display(), "ready");
        return ExitCode::Ready;
    }
    let progress = Progress::new();
    progress.update(result.problems);
    let diagnosis = progress.diagnosis("check: not ready");
    if let Some(path) = &config.termination_log {
        write_termination_log(path, &diagnosis);
    }
    ExitCode::NotReady
}

fn file_list(selection: &crate::config::Selection) -> String {
    selection
        .files()
        .iter()
        .map(|f| format!("{} ({})", f.name.display(), f.format))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_timeout(timeout: Option<Duration>) -> String {
    timeout.map_or_else(|| "none".to_owned(), rounded)
}

/// A duration rounded to milliseconds, for people.
fn rounded(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}
