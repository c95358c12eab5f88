//! The server's [`Stats`] as Prometheus metrics: one gauge for the open
//! connections and one counter per [`Counted`] field, registered under the
//! names and HELP texts each caller gives (the gate's `--listen` port and
//! the injector's webhook export different sets, under different names),
//! and copied from the running server at each scrape.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Stats, StatsSnapshot};

/// A counter of [`StatsSnapshot`] that can be exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// [`StatsSnapshot::shed`].
    Shed,
    /// [`StatsSnapshot::refused`].
    Refused,
    /// [`StatsSnapshot::bodies_shed`].
    BodiesShed,
    /// [`StatsSnapshot::timed_out`].
    TimedOut,
    /// [`StatsSnapshot::rejected`].
    Rejected,
    /// [`StatsSnapshot::accept_errors`].
    AcceptErrors,
    /// [`StatsSnapshot::setup_failed`].
    SetupFailed,
}

impl Counted {
    const fn of(self, now: &StatsSnapshot) -> u64 {
        match self {
            Self::Shed => now.shed,
            Self::Refused => now.refused,
            Self::BodiesShed => now.bodies_shed,
            Self::TimedOut => now.timed_out,
            Self::Rejected => now.rejected,
            Self::AcceptErrors => now.accept_errors,
            Self::SetupFailed => now.setup_failed,
        }
    }
}

/// A metric's name (for a counter, without the `_total` that the
/// exposition adds) and its HELP text.
pub type Described = (&'static str, &'static str);

/// The server's metrics in one registry.
pub struct StatsMetrics {
    open: Gauge,
    /// [`StatsSnapshot::body_held`], for a server that takes bodies.
    body_held: Option<Gauge>,
    counters: Vec<(Counted, Counter)>,
    /// The server's counters, copied into the metrics at each scrape.
    stats: OnceLock<Arc<Stats>>,
}

impl StatsMetrics {
    /// Registers the open-connections gauge `open`, then each of
    /// `counters`, in this order. They read 0 until [`Self::attach`].
    pub fn register(
        registry: &mut Registry,
        open: Described,
        counters: &[(Counted, Described)],
    ) -> Self {
        let gauge = Gauge::default();
        registry.register(open.0, open.1, gauge.clone());
        let counters = counters
            .iter()
            .map(|&(counted, (name, help))| {
                let counter = Counter::default();
                registry.register(name, help, counter.clone());
                (counted, counter)
            })
            .collect();
        Self {
            open: gauge,
            body_held: None,
            counters,
            stats: OnceLock::new(),
        }
    }

    /// Registers a gauge of the body budget in use
    /// ([`StatsSnapshot::body_held`]), in bytes, after the others.
    #[must_use]
    pub fn with_body_held(mut self, registry: &mut Registry, described: Described) -> Self {
        let gauge = Gauge::default();
        registry.register(described.0, described.1, gauge.clone());
        self.body_held = Some(gauge);
        self
    }

    /// Exports this server's counters from now on (the first call wins).
    pub fn attach(&self, stats: Arc<Stats>) {
        let _ = self.stats.set(stats);
    }

    /// Copies the attached server's counters into the metrics: call it
    /// before encoding the registry.
    pub fn update(&self) {
        let Some(stats) = self.stats.get() else {
            return;
        };
        let now = stats.snapshot();
        self.open.set(i64::try_from(now.open).unwrap_or(i64::MAX));
        if let Some(held) = &self.body_held {
            held.set(i64::try_from(now.body_held).unwrap_or(i64::MAX));
        }
        for (counted, counter) in &self.counters {
            counter.inner().store(counted.of(&now), Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition (`OpenMetrics` flavour) of
    /// `registry`, which these metrics are registered in, brought up to
    /// date first.
    #[must_use]
    pub fn encode(&self, registry: &Registry) -> String {
        self.update();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use super::{Counted, StatsMetrics};
    use crate::serve::Stats;

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, registry);
        text
    }

    #[test]
    fn exports_the_chosen_counters_under_the_given_names() {
        let mut registry = Registry::default();
        let metrics = StatsMetrics::register(
            &mut registry,
            ("x_open", "Open now"),
            &[
                (Counted::Shed, ("x_shed", "Shed")),
                (Counted::SetupFailed, ("x_setup_failed", "Setups failed")),
            ],
        );
        metrics.update();
        let before = encode(&registry);
        assert!(before.contains("x_open 0\n"), "{before}");
        assert!(before.contains("x_shed_total 0\n"), "{before}");

        let stats = Arc::new(Stats::default());
        stats.open.store(3, Ordering::Relaxed);
        stats.shed.store(5, Ordering::Relaxed);
        stats.setup_failed.store(7, Ordering::Relaxed);
        stats.refused.store(11, Ordering::Relaxed);
        metrics.attach(Arc::clone(&stats));
        metrics.update();
        let text = encode(&registry);
        assert!(text.contains("# HELP x_open Open now.\n"), "{text}");
        assert!(text.contains("x_open 3\n"), "{text}");
        assert!(text.contains("x_shed_total 5\n"), "{text}");
        assert!(text.contains("x_setup_failed_total 7\n"), "{text}");
        assert!(!text.contains("11"), "refused was not asked for: {text}");
        let open = text.find("x_open").unwrap_or(usize::MAX);
        let shed = text.find("x_shed").unwrap_or(0);
        assert!(open < shed, "registered in the order given: {text}");
    }
}
