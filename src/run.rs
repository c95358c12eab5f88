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
use crate::report::{report_stop, write_termination_log, Progress};
use crate::{logging, safe, volume};

/// A signal that stops the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Terminate,
    Interrupt,
}

impl Stop {
    #[must_use]
    pub const fn exit_code(self) -> ExitCode {
        match self {
            Self::Terminate => ExitCode::Terminated,
            Self::Interrupt => ExitCode::Interrupted,
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
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
                let text = usage_error_text(&err);
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
/// line itself could not be parsed. Arguments need not be UTF-8.
fn termination_log_from_raw_args() -> Option<PathBuf> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        use std::os::unix::ffi::OsStrExt;
        let bytes = arg.as_bytes();
        if let Some(value) = bytes.strip_prefix(b"--termination-log=") {
            return Some(PathBuf::from(std::ffi::OsStr::from_bytes(value)));
        }
        (bytes == b"--termination-log")
            .then(|| args.get(i + 1).map(PathBuf::from))
            .flatten()
    });
    from_args
        .or_else(|| std::env::var_os("SECRET_GATE_TERMINATION_LOG").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(crate::config::default_termination_log)
}

/// The text of a clap error for the termination log: one or two lines, not
/// a usage dump.
fn usage_error_text(err: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return "a subcommand is missing: use `secret-gate watch`, `secret-gate check` or \
                `secret-gate safe` (see --help)"
            .to_owned();
    }
    let rendered = err.render().to_string();
    let text = rendered.trim_start_matches("error: ").trim_end();
    text.trim_end_matches("For more information, try '--help'.")
        .trim_end()
        .to_owned()
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
    let after = match crate::sidecar::Options::from_cli(cli) {
        Ok(after) => after,
        Err(err) => {
            tracing::error!("{err}");
            return usage_error(cli, &err);
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
        if let Some(keep) = &after.keep_running {
            return crate::sidecar::run(&config, keep, signals.recv()).await;
        }
        run(&config, signals.recv()).await
    });
    // Do not wait on a blocking task (a DNS lookup, say) on the way out:
    // a signal must end the gate promptly.
    runtime.shutdown_timeout(Duration::from_millis(50));
    // Exec mode: become the command, with the runtime gone.
    match (&after.exec, code) {
        (Some(command), ExitCode::Ready) => {
            crate::exec::replace_process(command, config.termination_log.as_deref())
        }
        _ => code,
    }
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
        Mode::Check(selection) => return check_once(config, selection, shutdown).await,
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
                    stop = &mut shutdown => {
                        let wait = rounded(c.wait_before_exit);
                        let diagnosis = format!(
                            "secret-gate: {mode}: stopped by {} while waiting {wait} before exit \
                             (--wait-before-exit); the secret was ready\n",
                            stop.name()
                        );
                        report_stop(config.termination_log.as_deref(), &diagnosis);
                        return stop.exit_code();
                    }
                    () = tokio::time::sleep(c.wait_before_exit) => {}
                }
            }
        }
        return ExitCode::Ready;
    }
    note_unfinished_first_look(config, &progress);
    let diagnosis = progress.diagnosis(&format!("{mode}: {headline}"));
    report_stop(config.termination_log.as_deref(), &diagnosis);
    code
}

/// If a volume was never looked at to the end (a `stat` or read that does
/// not return), says so: otherwise the diagnosis would list nothing.
pub(crate) fn note_unfinished_first_look(config: &Config, progress: &Progress) {
    if let (Mode::Watch(c), 0) = (&config.mode, progress.checks()) {
        progress.set_last_error(format!(
            "the first look at {} had not finished; a filesystem call may be stuck \
             (a dead network or FUSE mount?)",
            c.selection.mount.display()
        ));
    }
}

/// `check`: one look, raced against SIGTERM/SIGINT like `watch`.
async fn check_once(
    config: &Config,
    selection: &crate::config::Selection,
    shutdown: impl Future<Output = Stop>,
) -> ExitCode {
    let started = Instant::now();
    let (result, stopped) = tokio::select! {
        biased;
        stop = shutdown => (None, Some(stop)),
        result = volume::check_once(selection) => (Some(result), None),
    };
    let progress = Progress::new();
    let (code, headline) = match (result, stopped) {
        (Some(result), _) if result.problems.is_empty() => {
            tracing::info!(mount = %selection.mount.display(), "ready");
            return ExitCode::Ready;
        }
        (Some(result), _) => {
            progress.record(result.problems);
            (ExitCode::NotReady, "check: not ready".to_owned())
        }
        (None, stop) => {
            let stop = stop.unwrap_or(Stop::Terminate);
            let elapsed = rounded(started.elapsed());
            (
                stop.exit_code(),
                format!(
                    "check: stopped by {} after {elapsed} while checking",
                    stop.name()
                ),
            )
        }
    };
    let diagnosis = progress.diagnosis(&headline);
    report_stop(config.termination_log.as_deref(), &diagnosis);
    code
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
pub(crate) fn rounded(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    //! The one `select!`, driven under paused time: ready, deadline and
    //! signal, for `watch` and `check`.
    use super::{run, Stop};
    use crate::check::{Format, Key};
    use crate::config::{Config, FileSpec, Layout, Mode, Selection, WatchConfig};
    use crate::exit::ExitCode;
    use std::path::Path;
    use std::time::Duration;

    fn selection(mount: &Path, settle: Duration) -> Selection {
        Selection {
            mount: mount.to_path_buf(),
            layout: Layout::Files(vec![FileSpec {
                name: "app.env".into(),
                format: Format::Env,
            }]),
            keys: Key::parse_list("A").unwrap(),
            max_file_size: 1 << 20,
            settle,
            key_format: Format::Auto,
            tls: crate::check::TlsPolicy::default(),
        }
    }

    fn watch(mount: &Path, settle: Duration) -> Config {
        Config {
            mode: Mode::Watch(WatchConfig {
                selection: selection(mount, settle),
                timeout: Some(Duration::from_secs(5)),
                poll_interval: Duration::from_secs(1),
                poll_only: true,
            }),
            termination_log: None,
        }
    }

    fn check(mount: &Path, settle: Duration) -> Config {
        Config {
            mode: Mode::Check(selection(mount, settle)),
            termination_log: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ready_deadline_and_signal() {
        let dir = tempfile::tempdir().unwrap();
        let never = std::future::pending::<Stop>;
        // Not there: the deadline ends the wait.
        assert_eq!(
            run(&watch(dir.path(), Duration::ZERO), never()).await,
            ExitCode::NotReady
        );
        // A signal ends it first.
        let term = async { Stop::Terminate };
        assert_eq!(
            run(&watch(dir.path(), Duration::ZERO), term).await,
            ExitCode::Terminated
        );
        // There: ready, for both subcommands.
        std::fs::write(dir.path().join("app.env"), "A=x").unwrap();
        assert_eq!(
            run(&watch(dir.path(), Duration::ZERO), never()).await,
            ExitCode::Ready
        );
        assert_eq!(
            run(&check(dir.path(), Duration::ZERO), never()).await,
            ExitCode::Ready
        );
    }

    #[tokio::test(start_paused = true)]
    async fn check_returns_once_ready_even_when_a_certificate_changes_later() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["gate.test".to_owned()]).unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).unwrap();
        let settle = Duration::from_secs(3600);
        let mut sel = selection(dir.path(), settle);
        sel.layout = Layout::KeyPerFile;
        sel.keys = Key::parse_list("tls.crt").unwrap();
        sel.key_format = Format::Auto;
        let config = Config {
            mode: Mode::Check(sel),
            termination_log: None,
        };
        let started = tokio::time::Instant::now();
        let code = run(&config, std::future::pending::<Stop>()).await;
        assert_eq!(code, ExitCode::Ready);
        // One settle wait, not one per round until the certificate expires.
        assert!(started.elapsed() < settle * 2, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn check_gives_way_to_a_signal_while_a_file_settles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.env"), "A=x").unwrap();
        let interrupt = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Stop::Interrupt
        };
        let started = tokio::time::Instant::now();
        let code = run(&check(dir.path(), Duration::from_secs(3600)), interrupt).await;
        assert_eq!(code, ExitCode::Interrupted);
        assert!(started.elapsed() < Duration::from_secs(3600));
    }
}
