//! The one place that decides when to stop: ready, deadline or signal.
//! [`run`] races them for `watch`, `check` and `safe`;
//! [`keep_running::run`] is its counterpart for `--keep-running`.

pub mod keep_running;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, Mode};
use crate::exit::ExitCode;
use crate::report::{report_stop, rounded, Progress};
use crate::signals::Stop;
use crate::{safe, volume};

/// Waits until ready, the deadline, or `shutdown`, whichever comes first,
/// and says why it stopped.
pub async fn run(config: &Config, shutdown: impl Future<Output = Stop>) -> ExitCode {
    let progress = Progress::new();
    let started = Instant::now();
    let mode = config.mode.name();
    let timeout = config.mode.timeout();
    announce(&config.mode);
    // Whether the secrets are ready. `watch` and `safe` return only once
    // they are; `check` looks once (waiting out a settle time at most).
    let wait = async {
        match &config.mode {
            Mode::Watch(c) => volume::wait_ready(c, &progress).await,
            Mode::Safe(c) => safe::wait_ready(c, &progress).await,
            Mode::Check(selection) => return volume::check(selection, &progress).await,
        }
        true
    };
    tokio::pin!(shutdown);

    let (code, headline) = tokio::select! {
        biased;
        stop = &mut shutdown => {
            let elapsed = rounded(started.elapsed());
            let during = if matches!(config.mode, Mode::Check(_)) { "checking" } else { "not ready" };
            (stop.exit_code(), format!("stopped by {} after {elapsed} while {during}", stop.name()))
        }
        () = deadline(timeout) => (ExitCode::NotReady, not_ready_after(timeout)),
        ready = wait => if ready {
            (ExitCode::Ready, String::new())
        } else {
            (ExitCode::NotReady, "not ready".to_owned())
        },
    };

    if code == ExitCode::Ready {
        if let Mode::Check(selection) = &config.mode {
            tracing::info!(mount = %selection.mount.display(), "ready");
        } else {
            tracing::info!(elapsed = %rounded(started.elapsed()), "ready");
        }
        if let Mode::Safe(c) = &config.mode {
            return linger(config, c.wait_before_exit, &mut shutdown).await;
        }
        return ExitCode::Ready;
    }
    note_unfinished_first_look(config, &progress);
    let diagnosis = progress.diagnosis(&format!("{mode}: {headline}"));
    report_stop(config.termination_log.as_deref(), &diagnosis);
    code
}

/// `--wait-before-exit` (VSecM's `VSECM_INIT_CONTAINER_WAIT_BEFORE_EXIT`):
/// stay this long after ready, unless a signal comes first.
async fn linger(
    config: &Config,
    wait: Duration,
    shutdown: &mut (impl Future<Output = Stop> + Unpin),
) -> ExitCode {
    if wait.is_zero() {
        return ExitCode::Ready;
    }
    tokio::select! {
        stop = shutdown => {
            let diagnosis = format!(
                "secret-gate: {}: stopped by {} while waiting {} before exit \
                 (--wait-before-exit); the secret was ready\n",
                config.mode.name(),
                stop.name(),
                rounded(wait),
            );
            report_stop(config.termination_log.as_deref(), &diagnosis);
            stop.exit_code()
        }
        () = tokio::time::sleep(wait) => ExitCode::Ready,
    }
}

/// Logs what the gate waits for.
fn announce(mode: &Mode) {
    match mode {
        Mode::Watch(c) => tracing::info!(
            mount = %c.selection.mount.display(),
            files = %file_list(&c.selection),
            keys = c.selection.keys.len(),
            timeout = %show_timeout(c.timeout),
            "secret-gate watch: waiting for secrets"
        ),
        Mode::Safe(c) => tracing::info!(
            url = %c.secrets_url,
            socket = %c.endpoint_socket,
            keys = c.keys.len(),
            timeout = %show_timeout(c.timeout),
            "secret-gate safe: waiting for the Safe"
        ),
        Mode::Check(_) => {}
    }
}

/// If a volume was never looked at to the end (a `stat` or read that does
/// not return), says so: otherwise the diagnosis would list nothing.
pub(crate) fn note_unfinished_first_look(config: &Config, progress: &Progress) {
    if let (Mode::Watch(c), 0) = (&config.mode, progress.checks()) {
        let reading = volume::read::reading_now()
            .map(|p| format!(" (it was reading {}, which has not returned)", p.display()))
            .unwrap_or_default();
        progress.set_last_error(format!(
            "the first look at {} had not finished{reading}; a filesystem call may be stuck \
             (a dead network or FUSE mount?)",
            c.selection.mount.display()
        ));
    }
}

fn file_list(selection: &volume::Selection) -> String {
    selection
        .files()
        .iter()
        .map(|f| format!("{} ({})", f.name.display(), f.format))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves when `--timeout` has passed; never without one.
pub(crate) async fn deadline(timeout: Option<Duration>) {
    match timeout {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The headline of a `--timeout` that passed.
pub(crate) fn not_ready_after(timeout: Option<Duration>) -> String {
    let limit = timeout.map(rounded).unwrap_or_default();
    format!("not ready after {limit} (--timeout)")
}

pub(crate) fn show_timeout(timeout: Option<Duration>) -> String {
    timeout.map_or_else(|| "none".to_owned(), rounded)
}

#[cfg(test)]
mod tests {
    //! The one `select!`, driven under paused time: ready, deadline and
    //! signal, for `watch` and `check`.
    use super::run;
    use crate::check::{Format, Key};
    use crate::config::{Config, Mode};
    use crate::exit::ExitCode;
    use crate::sidecar::After;
    use crate::signals::Stop;
    use crate::volume::{FileSpec, KeyFormat, Layout, Selection, WatchConfig};
    use std::path::Path;
    use std::time::Duration;

    /// A read that never returns (a dead NFS server) is named in the
    /// diagnosis, with the mount.
    #[test]
    fn an_unfinished_first_look_names_the_file_it_was_reading() {
        let cli = crate::cli::parse_from([
            "secret-gate",
            "watch",
            "--mount-path",
            "/mnt/secrets",
            "--required-keys",
            "password",
        ])
        .unwrap();
        let config = Config::from_cli(&cli, None).unwrap();
        let progress = crate::report::Progress::new();
        {
            let _reading = crate::volume::read::Reading::start(Path::new("/mnt/secrets/password"));
            super::note_unfinished_first_look(&config, &progress);
        }
        let text = progress.diagnosis("watch: not ready after 1s (--timeout)");
        assert!(
            text.contains(
                "the first look at /mnt/secrets had not finished (it was reading \
                 /mnt/secrets/password, which has not returned)"
            ),
            "{text}"
        );
        assert_eq!(crate::volume::read::reading_now(), None);
    }

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
            tls: crate::check::TlsPolicy::default(),
            schemas: Vec::new(),
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
            after: After::default(),
            termination_log: None,
        }
    }

    fn check(mount: &Path, settle: Duration) -> Config {
        Config {
            mode: Mode::Check(selection(mount, settle)),
            after: After::default(),
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
        sel.layout = Layout::KeyPerFile(KeyFormat::ByExtension);
        sel.keys = Key::parse_list("tls.crt").unwrap();
        let config = Config {
            mode: Mode::Check(sel),
            after: After::default(),
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
