//! The keep-running state: ready or not, what the last passing version
//! was, and the metrics. [`Shared`] is read by the HTTP server; [`Tracker`]
//! is driven by the check loop, logs each flip once and decides when a
//! change has settled enough to notify.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::problem::Problem;
use crate::serve;
use crate::serve::metrics::{Counted, StatsMetrics};

use super::notify::Notifier;

type Labels = Vec<(&'static str, String)>;
type TimeGauge = Gauge<f64, AtomicU64>;

/// The metrics, registered once. Labels carry file names, notification
/// kinds and Safe outcome classes only: never a value.
pub struct Metrics {
    registry: Registry,
    ready: Gauge,
    last_change: Family<Labels, TimeGauge>,
    last_success: Family<Labels, TimeGauge>,
    checks: Counter,
    state_changes: Family<Labels, Counter>,
    notifications_sent: Family<Labels, Counter>,
    notifications_failed: Family<Labels, Counter>,
    notification_retries: Family<Labels, Counter>,
    safe_requests: Family<Labels, Counter>,
    resource_errors: Counter,
    /// The `--listen` server's counters, copied at each scrape.
    http: StatsMetrics,
    svid_expiry: TimeGauge,
    workload_api_reconnects: Counter,
}

/// The `--listen` server's metrics (see [`crate::serve::StatsSnapshot`]),
/// registered first.
fn register_http(registry: &mut Registry) -> StatsMetrics {
    StatsMetrics::register(
        registry,
        (
            "secret_gate_http_connections",
            "Connections open to the --listen port",
        ),
        &[
            (
                Counted::Shed,
                (
                    "secret_gate_http_connections_shed",
                    "Idle or incomplete connections closed at the --max-connections cap to make room for a new one",
                ),
            ),
            (
                Counted::Refused,
                (
                    "secret_gate_http_connections_refused",
                    "New connections closed at once: at the cap with every connection busy",
                ),
            ),
            (
                Counted::TimedOut,
                (
                    "secret_gate_http_timeouts",
                    "Connections closed for a timeout (idle, slow request head or body, slow response)",
                ),
            ),
            (
                Counted::Rejected,
                (
                    "secret_gate_http_requests_rejected",
                    "Malformed or oversized requests answered 400, 411, 413 or 431",
                ),
            ),
            (
                Counted::AcceptErrors,
                (
                    "secret_gate_http_accept_errors",
                    "Failed accepts on the --listen port (out of file descriptors, say)",
                ),
            ),
        ],
    )
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let ready = Gauge::default();
        let last_change = Family::<Labels, TimeGauge>::default();
        let last_success = Family::<Labels, TimeGauge>::default();
        let checks = Counter::default();
        let state_changes = Family::<Labels, Counter>::default();
        let notifications_sent = Family::<Labels, Counter>::default();
        let notifications_failed = Family::<Labels, Counter>::default();
        let notification_retries = Family::<Labels, Counter>::default();
        let safe_requests = Family::<Labels, Counter>::default();
        let resource_errors = Counter::default();
        let http = register_http(&mut registry);
        registry.register(
            "secret_gate_resource_errors",
            "Checks the gate could not complete for lack of its own resources (open files, memory); the last verdict stood",
            resource_errors.clone(),
        );
        let svid_expiry = TimeGauge::default();
        let workload_api_reconnects = Counter::default();
        registry.register(
            "secret_gate_ready",
            "1 when every required secret passes the check now, else 0",
            ready.clone(),
        );
        registry.register(
            "secret_gate_last_change_timestamp_seconds",
            "Unix time the gate last saw this file's content change",
            last_change.clone(),
        );
        registry.register(
            "secret_gate_last_success_timestamp_seconds",
            "Unix time of the last check that found this file passing",
            last_success.clone(),
        );
        registry.register("secret_gate_checks", "Checks run", checks.clone());
        registry.register(
            "secret_gate_state_changes",
            "Flips between ready and not ready, by the state entered",
            state_changes.clone(),
        );
        registry.register(
            "secret_gate_notifications_sent",
            "Change notifications delivered, by kind (url, signal)",
            notifications_sent.clone(),
        );
        registry.register(
            "secret_gate_notifications_failed",
            "Change notifications given up on, by kind (url, signal)",
            notifications_failed.clone(),
        );
        registry.register(
            "secret_gate_notification_retries",
            "Failed notification attempts that were retried, by kind",
            notification_retries.clone(),
        );
        registry.register(
            "secret_gate_safe_requests",
            "Requests to VSecM Safe, by outcome (200, 404, connect, timeout...)",
            safe_requests.clone(),
        );
        registry.register(
            "secret_gate_svid_expiry_timestamp_seconds",
            "Unix time this pod's current X.509 SVID expires (safe mode; 0 until the Workload API sent one)",
            svid_expiry.clone(),
        );
        registry.register(
            "secret_gate_workload_api_reconnects",
            "Reconnects to the SPIFFE Workload API after the first SVID (safe mode)",
            workload_api_reconnects.clone(),
        );
        // Zeroes rather than absent series, so rate() and alerts work from
        // the first scrape.
        for to in ["ready", "not_ready"] {
            let _ = state_changes.get_or_create(&vec![("to", to.to_owned())]);
        }
        for kind in ["url", "signal"] {
            for family in [
                &notifications_sent,
                &notifications_failed,
                &notification_retries,
            ] {
                let _ = family.get_or_create(&vec![("kind", kind.to_owned())]);
            }
        }
        Self {
            registry,
            ready,
            last_change,
            last_success,
            checks,
            state_changes,
            notifications_sent,
            notifications_failed,
            notification_retries,
            safe_requests,
            resource_errors,
            http,
            svid_expiry,
            workload_api_reconnects,
        }
    }

    /// Exports the `--listen` server's counters from now on.
    pub fn serve_stats(&self, stats: Arc<serve::Stats>) {
        self.http.attach(stats);
    }

    /// Counts one check the gate's own resources kept from completing.
    pub fn resource_error(&self) {
        self.resource_errors.inc();
    }

    /// The Prometheus text exposition (`OpenMetrics` flavour).
    #[must_use]
    pub fn encode(&self) -> String {
        self.http.encode(&self.registry)
    }

    pub fn notification(&self, kind: &'static str, sent: bool) {
        let family = if sent {
            &self.notifications_sent
        } else {
            &self.notifications_failed
        };
        family.get_or_create(&vec![("kind", kind.to_owned())]).inc();
    }

    pub fn retry(&self, kind: &'static str) {
        self.notification_retries
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// Records the SVID's expiry and the Workload API reconnects so far
    /// (a running total from the Safe client).
    pub fn workload_api(&self, svid_expiry: Option<SystemTime>, reconnects: u64) {
        if let Some(at) = svid_expiry {
            let secs = at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            self.svid_expiry.set(secs);
        }
        let counted = self.workload_api_reconnects.get();
        if reconnects > counted {
            self.workload_api_reconnects.inc_by(reconnects - counted);
        }
    }

    pub fn safe_request(&self, outcome: &str) {
        self.safe_requests
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }
}

/// What the server and the loop share.
pub struct Shared {
    alive: AtomicBool,
    ready: watch::Sender<bool>,
    pub metrics: Metrics,
}

impl Shared {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            alive: AtomicBool::new(true),
            ready: watch::Sender::new(false),
            metrics: Metrics::new(),
        })
    }

    #[must_use]
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub fn stopping(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }

    /// Resolves once the gate is ready (at once if it already is).
    pub async fn first_ready(&self) {
        let mut rx = self.ready.subscribe();
        if rx.wait_for(|ready| *ready).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One passing version: each file (or the Safe's secret) with a hash of
/// its content.
pub type Version = Vec<(String, u64)>;

/// The wall clock as Unix seconds, for the timestamp metrics.
fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Drives the state from the loop's observations.
pub struct Tracker {
    shared: Arc<Shared>,
    notifier: Option<Notifier>,
    ready: bool,
    /// The version notified last (or the first one seen ready).
    confirmed: Option<Version>,
    /// A passing version different from `confirmed`, and since when.
    candidate: Option<(Version, Instant)>,
    /// The last hash seen of each file, for the change timestamps.
    seen: BTreeMap<String, u64>,
    /// The problems last logged while not ready after having been ready.
    logged: Vec<crate::problem::Identity>,
    /// The gate's own resources ran out in the last check, and that was
    /// logged.
    starved: bool,
}

impl Tracker {
    #[must_use]
    pub fn new(shared: Arc<Shared>, notifier: Option<Notifier>) -> Self {
        Self {
            shared,
            notifier,
            ready: false,
            confirmed: None,
            candidate: None,
            seen: BTreeMap::new(),
            logged: Vec::new(),
            starved: false,
        }
    }

    /// A check could not complete because the gate ran out of its own
    /// resources (open files, memory; [`crate::problem::Kind::Resource`]):
    /// no verdict on the secret. The state stays as it was; the condition
    /// is logged once while it lasts and counted each time.
    pub fn starved(&mut self, problems: &[Problem]) {
        self.candidate = None;
        self.shared.metrics.resource_error();
        if !self.starved {
            self.starved = true;
            let what = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let state = if self.ready { "ready" } else { "not ready" };
            tracing::warn!(
                problems = %what,
                "the gate ran out of its own resources while checking (logged once; counted in secret_gate_resource_errors_total): staying {state} and retrying; raise the open-files limit or the memory limit, or lower --max-connections"
            );
        }
    }

    /// A check completed: ends a resource shortage, saying so once.
    fn fed(&mut self) {
        if self.starved {
            self.starved = false;
            tracing::info!("the gate's checks run again (its resources recovered)");
        }
    }

    #[must_use]
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// True once the first ready was seen.
    #[must_use]
    pub fn was_ready(&self) -> bool {
        self.confirmed.is_some()
    }

    /// Counts one check.
    pub fn checked(&self) {
        self.shared.metrics.checks.inc();
    }

    /// Records the content seen of each file, ready or not.
    pub fn saw(&mut self, files: &[(String, Option<u64>)]) {
        let now = now_unix();
        for (name, hash) in files {
            let Some(hash) = hash else { continue };
            if self.seen.get(name) != Some(hash) {
                self.seen.insert(name.clone(), *hash);
                self.shared
                    .metrics
                    .last_change
                    .get_or_create(&vec![("file", name.clone())])
                    .set(now);
            }
        }
    }

    /// A check passed on `version`. Returns how soon to look again when a
    /// change must first settle for `debounce` before it is notified.
    pub fn ready(&mut self, version: Version, debounce: Duration) -> Option<Duration> {
        self.fed();
        let now = now_unix();
        for (name, hash) in &version {
            self.shared
                .metrics
                .last_success
                .get_or_create(&vec![("file", name.clone())])
                .set(now);
            if self.seen.get(name) != Some(hash) {
                self.seen.insert(name.clone(), *hash);
                self.shared
                    .metrics
                    .last_change
                    .get_or_create(&vec![("file", name.clone())])
                    .set(now);
            }
        }
        if !self.ready {
            self.ready = true;
            self.logged.clear();
            self.shared.metrics.ready.set(1);
            self.shared
                .metrics
                .state_changes
                .get_or_create(&vec![("to", "ready".to_owned())])
                .inc();
            if self.confirmed.is_some() {
                tracing::info!(files = %names(&version), "ready again: the secret passes the check");
            }
            self.shared.ready.send_replace(true);
        }
        let Some(confirmed) = &self.confirmed else {
            self.confirmed = Some(version);
            return None;
        };
        if *confirmed == version {
            self.candidate = None;
            return None;
        }
        let since = match &self.candidate {
            Some((candidate, since)) if *candidate == version => *since,
            _ => {
                let now = Instant::now();
                self.candidate = Some((version.clone(), now));
                now
            }
        };
        let quiet = since.elapsed();
        if quiet < debounce {
            return Some(debounce.saturating_sub(quiet));
        }
        let changed = changed_names(confirmed, &version);
        tracing::info!(changed = %changed, "the secret changed and the new version passes the check");
        self.confirmed = Some(version);
        self.candidate = None;
        if let Some(notifier) = &self.notifier {
            notifier.changed();
        }
        None
    }

    /// A check failed with `problems`. Logs a flip, or a new set of
    /// problems while not ready, once.
    pub fn not_ready(&mut self, problems: &[Problem]) {
        self.fed();
        self.candidate = None;
        let identities: Vec<_> = problems.iter().map(Problem::identity).collect();
        let what = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if self.ready {
            self.ready = false;
            self.shared.metrics.ready.set(0);
            self.shared
                .metrics
                .state_changes
                .get_or_create(&vec![("to", "not_ready".to_owned())])
                .inc();
            self.shared.ready.send_replace(false);
            tracing::warn!(problems = %what, "not ready any more: the secret stopped passing the check");
            self.logged = identities;
        } else if self.was_ready() && self.logged != identities {
            tracing::warn!(problems = %what, "still not ready");
            self.logged = identities;
        }
    }
}

fn names(version: &Version) -> String {
    version
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files whose content differs between two versions, or that appear
/// in only one of them.
fn changed_names(old: &Version, new: &Version) -> String {
    let mut changed: Vec<&str> = new
        .iter()
        .filter(|entry| !old.contains(entry))
        .map(|(n, _)| n.as_str())
        .collect();
    for (name, _) in old {
        if new.iter().all(|(n, _)| n != name) {
            changed.push(name);
        }
    }
    changed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::{Shared, Tracker};
    use crate::problem::{Kind, Problem};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_change_is_confirmed_only_after_it_settles() {
        let mut t = Tracker::new(Shared::new(), None);
        let d = Duration::from_millis(200);
        let v1 = vec![("a".to_owned(), 1)];
        let v2 = vec![("a".to_owned(), 2)];
        assert_eq!(
            t.ready(v1.clone(), d),
            None,
            "the first version is the baseline"
        );
        assert!(t.shared().is_ready());
        assert_eq!(t.ready(v2.clone(), d), Some(d));
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(t.ready(v2.clone(), d), Some(Duration::from_millis(150)));
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(t.ready(v2.clone(), d), None);
        assert_eq!(t.confirmed, Some(v2));
        t.not_ready(&[Problem::new("a", Kind::Missing, "does not exist")]);
        assert!(!t.shared().is_ready());
        let text = t.shared().metrics.encode();
        assert!(text.contains("secret_gate_ready 0"), "{text}");
        assert!(
            text.contains(r#"secret_gate_state_changes_total{to="not_ready"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn running_out_of_resources_keeps_the_verdict_and_is_counted() {
        let mut t = Tracker::new(Shared::new(), None);
        let _ = t.ready(vec![("s.json".to_owned(), 1)], Duration::ZERO);
        let starved = [Problem::new(
            "s.json",
            Kind::Resource,
            "cannot be looked at: the gate is out of resources (Too many open files)",
        )];
        t.starved(&starved);
        t.starved(&starved);
        assert!(t.shared().is_ready(), "a resource error is no verdict");
        let text = t.shared().metrics.encode();
        assert!(
            text.contains("secret_gate_resource_errors_total 2"),
            "{text}"
        );
        assert!(
            text.contains(r#"secret_gate_state_changes_total{to="not_ready"} 0"#),
            "{text}"
        );
        t.not_ready(&[Problem::new("s.json", Kind::Missing, "missing")]);
        assert!(!t.shared().is_ready(), "a real problem still flips");
    }
}
