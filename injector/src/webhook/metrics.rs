//! The webhook's Prometheus metrics (`GET /metrics`), written with
//! `prometheus-client` like the gate's:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `secret_gate_injector_reviews_total{outcome}` | counter | reviews answered: `injected`, `skipped` (not opted in, already injected, not a CREATE, a protected namespace), `denied` (a gate configuration the gate would refuse), `error` (not a Pod review), `invalid` (HTTP 400: not an `AdmissionReview`), `timeout` |
//! | `secret_gate_injector_review_duration_seconds` | histogram | time from a complete request to its answer |
//! | `secret_gate_injector_certificate_not_after_seconds` | gauge | the served certificate's `notAfter` (Unix seconds): alert well before it |
//! | `secret_gate_injector_certificate_reloads_total` | counter | rotated certificates loaded |
//! | `secret_gate_injector_certificate_reload_rejections_total` | counter | changed files whose pair failed the checks (the old pair stayed) |
//! | `secret_gate_injector_http_*` | | the server's connections, sheds, timeouts and refused requests |
//! | `secret_gate_injector_http_body_budget_held_bytes` | gauge | request bodies held now against the body budget: bodies being read, and complete ones not yet freed (a review that overran `--review-timeout` keeps its body until it ends) |

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use secret_gate::serve;
use secret_gate::serve::metrics::{Counted, StatsMetrics};

/// The content type of the exposition `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a review ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Skipped,
    Denied,
    Error,
    Invalid,
    Timeout,
}

impl Outcome {
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::Skipped => "skipped",
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Invalid => "invalid",
            Self::Timeout => "timeout",
        }
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// Every metric the webhook exports.
pub struct Metrics {
    registry: Registry,
    reviews: Family<Labels, Counter>,
    duration: Histogram,
    not_after: Gauge,
    reloads: Counter,
    rejections: Counter,
    /// The server's counters, copied at each scrape.
    http: StatsMetrics,
}

/// The server's metrics (see [`secret_gate::serve::StatsSnapshot`]),
/// registered after the webhook's own.
fn register_http(registry: &mut Registry) -> StatsMetrics {
    StatsMetrics::register(
        registry,
        (
            "secret_gate_injector_http_connections",
            "Connections open to the webhook",
        ),
        &[
            (
                Counted::Shed,
                (
                    "secret_gate_injector_http_connections_shed",
                    "Idle or incomplete connections closed at --max-connections to make room for a new one",
                ),
            ),
            (
                Counted::Refused,
                (
                    "secret_gate_injector_http_connections_refused",
                    "New connections closed at once: at the cap with every connection busy",
                ),
            ),
            (
                Counted::BodiesShed,
                (
                    "secret_gate_injector_http_bodies_shed",
                    "Connections closed because their request bodies were still incomplete after the grace period while another body waited for the memory budget",
                ),
            ),
            (
                Counted::TimedOut,
                (
                    "secret_gate_injector_http_timeouts",
                    "Connections closed for a timeout (idle, slow request head or body, slow answer)",
                ),
            ),
            (
                Counted::Rejected,
                (
                    "secret_gate_injector_http_requests_rejected",
                    "Malformed or oversized requests answered 400, 411, 413 or 431 by the server, and bodies refused 503 when the body memory budget was full",
                ),
            ),
            (
                Counted::SetupFailed,
                (
                    "secret_gate_injector_tls_handshakes_failed",
                    "TLS handshakes that failed or timed out (a client that does not trust the CA, say)",
                ),
            ),
        ],
    )
    .with_body_held(
        registry,
        (
            "secret_gate_injector_http_body_budget_held_bytes",
            "Request-body bytes held now against the body budget: bodies being read, and complete bodies not yet freed",
        ),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reviews = Family::<Labels, Counter>::default();
        // 0.25 ms to about 4 s.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_25, 2.0, 15,
        ));
        let not_after = Gauge::default();
        let reloads = Counter::default();
        let rejections = Counter::default();
        registry.register(
            "secret_gate_injector_reviews",
            "Admission reviews answered, by outcome",
            reviews.clone(),
        );
        registry.register(
            "secret_gate_injector_review_duration_seconds",
            "Time from a complete review request to its answer",
            duration.clone(),
        );
        registry.register(
            "secret_gate_injector_certificate_not_after_seconds",
            "notAfter of the serving certificate, in Unix seconds",
            not_after.clone(),
        );
        registry.register(
            "secret_gate_injector_certificate_reloads",
            "Rotated serving certificates loaded",
            reloads.clone(),
        );
        registry.register(
            "secret_gate_injector_certificate_reload_rejections",
            "Changed certificate files whose pair failed the checks; the previous pair stayed",
            rejections.clone(),
        );
        let http = register_http(&mut registry);
        Self {
            registry,
            reviews,
            duration,
            not_after,
            reloads,
            rejections,
            http,
        }
    }

    /// Exports the server's counters from now on.
    pub fn serve_stats(&self, stats: Arc<serve::Stats>) {
        self.http.attach(stats);
    }

    /// Counts one review and its duration.
    pub fn review(&self, outcome: Outcome, took: Duration) {
        self.reviews
            .get_or_create(&vec![("outcome", outcome.label())])
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Records the pair now served; `reload` when it replaced another.
    pub fn certificate_loaded(&self, not_after: i64, reload: bool) {
        self.not_after.set(not_after);
        if reload {
            self.reloads.inc();
        }
    }

    /// Counts a changed pair that failed the checks.
    pub fn reload_rejected(&self) {
        self.rejections.inc();
    }

    /// The Prometheus text exposition (`OpenMetrics` flavour).
    #[must_use]
    pub fn encode(&self) -> String {
        self.http.encode(&self.registry)
    }
}
