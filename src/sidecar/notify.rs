//! Telling the app that the secret changed: an HTTP POST (configmap-reload's
//! contract: success on 2xx, jittered bounded retries, each attempt with
//! its own timeout) and/or a signal to processes found by name in a shared
//! process namespace.
//!
//! The loop only bumps a generation number; one task delivers. Changes
//! that arrive while a delivery runs are folded into one more delivery.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::state::Shared;
use crate::safe::backoff::Backoff;

/// The longest wait between two POSTs of one notification.
const RETRY_CAP: Duration = Duration::from_secs(30);

/// Where to deliver change notifications.
#[derive(Debug, Clone)]
pub struct Targets {
    pub urls: Vec<http::Uri>,
    /// The signal and the process name it goes to.
    pub signal: Option<(Signal, String)>,
    pub attempt_timeout: Duration,
    pub retries: u32,
    /// The first retry waits up to this long; later ones double, capped.
    pub retry_base: Duration,
}

/// The loop's handle: each call of [`Notifier::changed`] asks for one
/// delivery.
pub struct Notifier {
    generation: watch::Sender<u64>,
}

impl Notifier {
    /// Starts the delivery task, or returns `None` when there is nowhere
    /// to deliver.
    #[must_use]
    pub fn start(targets: Targets, shared: Arc<Shared>) -> Option<Self> {
        if targets.urls.is_empty() && targets.signal.is_none() {
            return None;
        }
        let (tx, mut rx) = watch::channel(0u64);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                rx.borrow_and_update();
                deliver(&targets, &shared).await;
            }
        });
        Some(Self { generation: tx })
    }

    pub fn changed(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }
}

async fn deliver(targets: &Targets, shared: &Shared) {
    for url in &targets.urls {
        let sent = post_with_retries(url, targets, shared).await;
        shared.metrics.notification("url", sent);
    }
    if let Some((signal, name)) = &targets.signal {
        let (signal, name) = (*signal, name.clone());
        let report = tokio::task::spawn_blocking(move || signal_processes(&name, signal))
            .await
            .unwrap_or_else(|_| SignalReport::failed("the process scan failed unexpectedly"));
        shared.metrics.notification("signal", report.ok);
        if report.ok {
            tracing::info!("{}", report.text);
        } else {
            tracing::warn!("{}", report.text);
        }
    }
}

/// POSTs to `url` until a 2xx answer or the retries run out.
async fn post_with_retries(url: &http::Uri, targets: &Targets, shared: &Shared) -> bool {
    let mut backoff = Backoff::new(targets.retry_base, RETRY_CAP);
    let attempts = targets.retries.saturating_add(1);
    for attempt in 1..=attempts {
        let result = tokio::time::timeout(targets.attempt_timeout, post(url)).await;
        let error = match result {
            Ok(Ok(status)) if (200..300).contains(&status) => {
                tracing::info!(url = %shown(url), status, "notified the app of the change");
                return true;
            }
            Ok(Ok(status)) => format!("answered HTTP {status}"),
            Ok(Err(e)) => e,
            Err(_) => format!(
                "no answer within {} (--on-change-timeout)",
                humantime::format_duration(targets.attempt_timeout)
            ),
        };
        if attempt == attempts {
            tracing::warn!(url = %shown(url), attempts, "could not notify the app of the change: {error}; giving up until the next change");
            return false;
        }
        shared.metrics.retry("url");
        let delay = backoff.next_delay();
        tracing::warn!(url = %shown(url), attempt, "could not notify the app of the change: {error}; retrying in {}", humantime::format_duration(delay));
        tokio::time::sleep(delay).await;
    }
    false
}

/// The URL for logs: scheme, host and path, without a query (which may
/// carry a token).
fn shown(url: &http::Uri) -> String {
    let authority = url.authority().map_or("", http::uri::Authority::as_str);
    format!(
        "{}://{authority}{}",
        url.scheme_str().unwrap_or("http"),
        url.path()
    )
}

/// One POST with an empty body; the status, or why there was none.
async fn post(url: &http::Uri) -> Result<u16, String> {
    let (host, port) = crate::http1::host_port(url, 80);
    let tcp = crate::http1::connect(&host, port)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let path = url
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    crate::http1::exchange(tcp, http::Method::POST, url, path, |response| async move {
        let status = response.status().as_u16();
        // Drain a small answer so the connection ends cleanly.
        let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        status
    })
    .await
    .map_err(|e| e.to_string())
}

/// What sending a signal did, for the log.
struct SignalReport {
    ok: bool,
    text: String,
}

impl SignalReport {
    fn failed(text: &str) -> Self {
        Self {
            ok: false,
            text: text.to_owned(),
        }
    }
}

/// The kernel keeps at most 15 bytes of a process name in `comm`.
const COMM_LEN: usize = 15;

/// Sends `signal` to every process (other than this one) whose
/// `/proc/PID/comm` is `name`. Blocking: runs on the blocking pool.
fn signal_processes(name: &str, signal: Signal) -> SignalReport {
    let wanted = name.as_bytes().get(..COMM_LEN).unwrap_or(name.as_bytes());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return SignalReport::failed("cannot read /proc to find processes to signal");
    };
    let (mut sent, mut denied, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).ok() == Some(me) {
            continue;
        }
        let Ok(comm) = std::fs::read(entry.path().join("comm")) else {
            continue;
        };
        if comm.strip_suffix(b"\n").unwrap_or(&comm) != wanted {
            continue;
        }
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
            Ok(()) => sent.push(pid),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(nix::errno::Errno::EPERM) => denied.push(pid),
            Err(e) => other.push(format!("{pid}: {e}")),
        }
    }
    let signal_name = signal.as_str();
    let mut problems = Vec::new();
    if !denied.is_empty() {
        problems.push(format!(
            "permission denied sending {signal_name} to PID {} ({name}): the gate must run as the same user as the app (restricted pods cannot add CAP_KILL)",
            join(&denied)
        ));
    }
    if !other.is_empty() {
        problems.push(format!(
            "could not send {signal_name}: {}",
            other.join(", ")
        ));
    }
    if sent.is_empty() && denied.is_empty() && other.is_empty() {
        problems.push(format!(
            "no process named {name:?} found to send {signal_name} to (is shareProcessNamespace: true set on the pod, and --signal-process the name in /proc/PID/comm?)"
        ));
    }
    if problems.is_empty() {
        SignalReport {
            ok: true,
            text: format!("sent {signal_name} to PID {} ({name})", join(&sent)),
        }
    } else {
        SignalReport {
            ok: false,
            text: problems.join("; "),
        }
    }
}

fn join(pids: &[i32]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `SIGHUP`, `HUP`, `hup` or a number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{t} is not a signal number"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("{t:?} is not a signal name: write e.g. SIGHUP or SIGUSR1"))
}

#[cfg(test)]
mod tests {
    use super::{parse_signal, shown, Backoff, RETRY_CAP};
    use nix::sys::signal::Signal;
    use std::time::Duration;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGHUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("1").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn urls_are_logged_without_their_query() {
        let url = "http://127.0.0.1:9090/-/reload?token=CANARY"
            .parse()
            .unwrap();
        assert_eq!(shown(&url), "http://127.0.0.1:9090/-/reload");
    }

    #[test]
    fn retry_delays_grow_with_jitter_and_a_cap() {
        let base = Duration::from_millis(200);
        let mut backoff = Backoff::with_rng(base, RETRY_CAP, fastrand::Rng::with_seed(1));
        for attempt in 1..20 {
            let d = backoff.next_delay();
            let ceiling = base
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(30));
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
    }
}
