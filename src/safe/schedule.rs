//! When to ask the Safe again: VSecM's ticker pace, spread over the fleet,
//! while the Safe answers but has nothing for us yet; exponential back-off
//! only while something is broken; and the Safe's own `Retry-After`.
//!
//! - **Answered** (not yet: 404, empty `data`, keys missing, a secret that
//!   does not parse; or booting: 503 without `Retry-After`, VSecM's
//!   "backing store not ready"): after the immediate first request, the
//!   first wait is uniform in `[interval, 2 × interval)` and every later one
//!   uniform in `[0.9 × interval, interval]`. VSecM's ticker asks first one
//!   interval after start, then every interval; so, apart from the
//!   immediate first request (which figure 2 owes its 8 ms to), the fleet
//!   asks about as often as the ticker does (a jittered tick comes up to a
//!   tenth early, so over a few ticks a pod may fit in one more), never in
//!   step: the first wait spreads pods that started together evenly over
//!   an interval and the jitter keeps them from drifting back into step.
//!   The gap never exceeds the interval after the first, so a secret (or a
//!   Safe that finishes booting) is noticed at most one interval later, and
//!   a little under half of one on average (the mean gap is 0.95
//!   intervals), where the ticker's expected wait is half an interval.
//!   Backing off here would leave a fleet waiting up to `--max-backoff`
//!   after the Safe is ready; asking sooner than the ticker in the first
//!   interval would cost the Safe one more request per pod. Figures 6 and
//!   6b of docs/benchmarks.md measure both against a model of the ticker.
//! - **Broken** (connect, TLS and Workload API errors, timeouts, other 5xx, 400,
//!   a malformed answer): exponential back-off from the interval, each wait
//!   uniform in the upper half of its ceiling, capped by `--max-backoff`
//!   ([`Backoff`]).
//! - **Retry-After** on 503 or 429: wait at least what the Safe asked, plus
//!   up to a tenth of the interval (a fleet told the same date does not
//!   return at one instant), never more than `--max-backoff`.
//!
//! - **Our SVID expired** (the Safe refused the client certificate the
//!   Workload API stopped renewing): nothing is wrong with the Safe, so
//!   the back-off neither grows nor starts over; the next attempt is at
//!   the steady pace, uniform in `[0.9 × interval, interval]`, or as soon
//!   as the Workload API sends a new SVID, whichever comes first (the
//!   caller races the wait against `SafeClient::renewed_svid`).
//!
//! A not-yet answer ends a run of failures: the back-off starts over.

use std::time::Duration;

use super::backoff::Backoff;

/// What the last attempt says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The Safe answered normally but has nothing (complete) for us yet.
    NotYet,
    /// The Safe answered 503 without `Retry-After`: it is booting. Paced
    /// like [`Pace::NotYet`], but not a "not yet" for readiness.
    Booting,
    /// Something failed: back off.
    Broken,
    /// The Safe asked to be left alone this long (503/429 `Retry-After`).
    RetryAfter(Duration),
    /// The Safe refused our expired SVID: wait for a new one, at most the
    /// steady pace, and leave the back-off as it is.
    AwaitSvid,
}

/// The delays between attempts; see the module documentation.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    cap: Duration,
    backoff: Backoff,
    /// Whether a wait has been drawn yet (the first spreads the fleet).
    spread: bool,
    rng: fastrand::Rng,
}

impl Schedule {
    /// `interval`: `VSECM_INIT_CONTAINER_POLL_INTERVAL`; `cap`: `--max-backoff`.
    #[must_use]
    pub fn new(interval: Duration, cap: Duration) -> Self {
        Self::with_rng(interval, cap, fastrand::Rng::new())
    }

    /// A schedule with a seeded random source, for tests.
    #[must_use]
    pub fn with_rng(interval: Duration, cap: Duration, mut rng: fastrand::Rng) -> Self {
        let backoff = Backoff::with_rng(interval, cap, fastrand::Rng::with_seed(rng.u64(..)));
        Self {
            interval,
            cap: cap.max(interval),
            backoff,
            spread: false,
            rng,
        }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self, pace: Pace) -> Duration {
        let first = !self.spread;
        self.spread = true;
        match pace {
            Pace::NotYet | Pace::Booting => {
                self.backoff.reset();
                if first {
                    self.uniform(self.interval, self.interval * 2)
                } else {
                    self.uniform(
                        self.interval.saturating_sub(self.interval / 10),
                        self.interval,
                    )
                }
            }
            Pace::Broken => self.backoff.next_delay(),
            Pace::AwaitSvid => self.uniform(
                self.interval.saturating_sub(self.interval / 10),
                self.interval,
            ),
            Pace::RetryAfter(asked) => {
                // Count it as a failure, so the back-off goes on growing if
                // the Safe stops sending Retry-After.
                let _ = self.backoff.next_delay();
                let asked = asked.min(self.cap);
                let extra = self.uniform(Duration::ZERO, self.interval / 10);
                (asked + extra).min(self.cap)
            }
        }
    }

    /// The secret is there and the caller polls at its own steady pace
    /// (`--keep-running`): a later failure backs off from the start, and a
    /// later "not yet" is not spread again.
    pub fn steady(&mut self) {
        self.backoff.reset();
        self.spread = true;
    }

    /// Uniform in `[low, high]`.
    fn uniform(&mut self, low: Duration, high: Duration) -> Duration {
        let span = u64::try_from(high.saturating_sub(low).as_nanos()).unwrap_or(u64::MAX);
        low + Duration::from_nanos(self.rng.u64(0..=span))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Pace, Schedule};
    use std::time::Duration;

    const INTERVAL: Duration = Duration::from_secs(5);
    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn not_yet_keeps_a_steady_pace_within_one_interval() {
        let mut s = Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(1));
        let first = s.next_delay(Pace::NotYet);
        assert!(first >= INTERVAL && first < INTERVAL * 2, "{first:?}");
        for _ in 0..100 {
            let d = s.next_delay(Pace::NotYet);
            assert!(d >= INTERVAL * 9 / 10 && d <= INTERVAL, "{d:?}");
        }
    }

    #[test]
    fn a_fleet_spreads_evenly_over_the_interval() {
        // 1,000 pods that start together: their first waits fill each
        // tenth of the second interval about equally, and no two are equal.
        let mut buckets = [0usize; 10];
        let mut firsts = Vec::new();
        for seed in 0..1000 {
            let mut s = Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(seed));
            let d = s.next_delay(Pace::NotYet);
            firsts.push(d);
            let past = d.saturating_sub(INTERVAL);
            let tenth = usize::try_from(past.as_nanos() * 10 / INTERVAL.as_nanos()).unwrap();
            buckets[tenth.min(9)] += 1;
        }
        for n in buckets {
            assert!((60..=140).contains(&n), "{buckets:?}");
        }
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts.len(), 1000);
    }

    #[test]
    fn failures_back_off_and_a_not_yet_starts_over() {
        let mut s = Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(2));
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(s.backoff.ceiling());
            let d = s.next_delay(Pace::Broken);
            let ceiling = *ceilings.last().unwrap();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?}");
        }
        assert_eq!(
            ceilings.iter().map(Duration::as_secs).collect::<Vec<_>>(),
            [5, 10, 20, 30, 30, 30]
        );
        let d = s.next_delay(Pace::NotYet);
        assert!(d >= INTERVAL * 9 / 10 && d <= INTERVAL, "{d:?}");
        assert_eq!(s.backoff.ceiling(), INTERVAL, "back-off starts over");
    }

    #[test]
    fn an_expired_svid_neither_grows_nor_resets_the_back_off() {
        let mut s = Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(4));
        let _ = s.next_delay(Pace::Broken);
        let _ = s.next_delay(Pace::Broken);
        let ceiling = s.backoff.ceiling();
        assert_eq!(ceiling, INTERVAL * 4);
        for _ in 0..20 {
            let d = s.next_delay(Pace::AwaitSvid);
            assert!(d >= INTERVAL * 9 / 10 && d <= INTERVAL, "{d:?}");
            assert_eq!(s.backoff.ceiling(), ceiling);
        }
        let d = s.next_delay(Pace::Broken);
        assert!(
            d >= ceiling / 2 && d <= ceiling,
            "the back-off goes on: {d:?}"
        );
    }

    /// A name, a sequence of paces, and each wait's bounds in tenths.
    type Case = (&'static str, Vec<Pace>, Vec<(u32, u32)>);

    /// Table-driven: each sequence of answers and the bounds of every
    /// wait it draws, as multiples of tenths of the interval.
    #[test]
    fn each_answer_draws_a_wait_within_its_bounds() {
        use Pace::{Booting, Broken, NotYet};
        let tenth = INTERVAL / 10;
        let table: [Case; 5] = [
            (
                "a booting Safe is polled at the ticker's pace, spread first",
                vec![Booting, Booting, Booting, Booting],
                vec![(10, 20), (9, 10), (9, 10), (9, 10)],
            ),
            (
                "nothing registered yet: the same pace",
                vec![NotYet, NotYet, NotYet],
                vec![(10, 20), (9, 10), (9, 10)],
            ),
            (
                "a 503 after transport failures starts the back-off over",
                vec![Broken, Broken, Broken, Booting, Booting],
                vec![(5, 10), (10, 20), (20, 40), (9, 10), (9, 10)],
            ),
            (
                "transport failures after a 503 still back off",
                vec![Booting, Broken, Broken, Broken],
                vec![(10, 20), (5, 10), (10, 20), (20, 40)],
            ),
            (
                "booting then registered keeps one pace",
                vec![Booting, NotYet, Booting, NotYet],
                vec![(10, 20), (9, 10), (9, 10), (9, 10)],
            ),
        ];
        for (name, paces, bounds) in table {
            for seed in 0..50 {
                let mut s = Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(seed));
                for (i, (pace, (low, high))) in paces.iter().zip(&bounds).enumerate() {
                    let d = s.next_delay(*pace);
                    assert!(
                        d >= tenth * *low && d <= tenth * *high,
                        "{name}: wait {i} ({pace:?}) = {d:?}"
                    );
                }
            }
        }
    }

    /// Under tokio's paused clock: 1,000 schedules against a Safe that
    /// answers 503 for 10 s, as in figure 6b. Every pod asks at once, then
    /// at the steady pace; counted as the bench counts them.
    #[tokio::test(start_paused = true)]
    async fn a_booting_safe_costs_the_tickers_requests_plus_one_per_gate() {
        use tokio::time::Instant;
        let outage = Duration::from_secs(10);
        let pods = 1000u32;
        let start = Instant::now();
        let mut requests_in_outage = 0u32;
        let mut ready_after = Vec::new();
        for seed in 0..pods {
            let mut s =
                Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(u64::from(seed)));
            let mut at = Duration::ZERO;
            // Bounded: the outage is two intervals.
            for _ in 0..100 {
                if at >= outage {
                    ready_after.push(at.saturating_sub(outage));
                    break;
                }
                requests_in_outage += 1;
                at += s.next_delay(Pace::Booting);
            }
        }
        tokio::time::advance(outage).await;
        assert_eq!(start.elapsed(), outage);
        // VSecM's ticker: a request every interval, the first after one,
        // counted before the Safe is up (5 s, not 10 s).
        let ticker = pods * u32::try_from((outage.as_nanos() - 1) / INTERVAL.as_nanos()).unwrap();
        // One more request per pod (the immediate first one), and one more
        // again only for a pod whose first wait fell within a tenth of an
        // interval of the ticker's and whose next, jittered, came early:
        // about one pod in twenty here, where every pod starts at once.
        assert!(
            requests_in_outage <= ticker + pods + pods / 10,
            "{requests_in_outage} > {ticker} + {pods} + {}",
            pods / 10
        );
        let max = ready_after.iter().max().unwrap();
        let mean = ready_after.iter().sum::<Duration>() / pods;
        assert!(*max <= INTERVAL, "max {max:?}");
        // Spread phases and a mean gap of 0.95 intervals: just under half
        // an interval on average (2.49 s expected here, where the outage
        // ends exactly two intervals after every pod started), within
        // sampling error: the standard error of 1,000 draws is under 1 %
        // of the interval.
        assert!(mean <= INTERVAL / 2 + INTERVAL / 50, "mean {mean:?}");
    }

    /// Figure 6's setting: pods that started within 0.4 s, and a secret
    /// registered some 20 s later, at 50 phases over one interval. Against
    /// VSecM's ticker (first request one interval after start, then one
    /// every interval), the fleet costs at most one more request per pod,
    /// on average over the phases, and notices the secret under half an
    /// interval later on average.
    #[test]
    fn a_late_registration_costs_the_tickers_requests_plus_one_per_gate() {
        let pods = 200u64;
        let (mut gates, mut ticker) = (0u64, 0u64);
        let mut waits = Duration::ZERO;
        let mut rng = fastrand::Rng::with_seed(6);
        for phase in 0..50u32 {
            let registered = Duration::from_secs(20) + INTERVAL * phase / 50;
            for _ in 0..pods {
                let started = Duration::from_millis(rng.u64(0..400));
                let mut s =
                    Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(rng.u64(..)));
                let before = registered.saturating_sub(started);
                ticker += u64::try_from(before.as_nanos() / INTERVAL.as_nanos()).unwrap();
                // The immediate request, then the schedule; bounded: the
                // registration is at most six intervals away.
                let mut at = Duration::ZERO;
                for _ in 0..100 {
                    if at >= before {
                        waits += at.saturating_sub(before);
                        break;
                    }
                    gates += 1;
                    at += s.next_delay(Pace::NotYet);
                }
            }
        }
        let runs = 50 * pods;
        assert!(
            gates <= ticker + runs,
            "{gates} requests before registration > the ticker's {ticker} + {runs}"
        );
        let mean = waits / u32::try_from(runs).unwrap();
        assert!(
            mean <= INTERVAL / 2,
            "registration → next request, mean {mean:?}"
        );
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let mut s = Schedule::with_rng(INTERVAL, CAP, fastrand::Rng::with_seed(3));
        for asked in [1, 7, 29] {
            let asked = Duration::from_secs(asked);
            let d = s.next_delay(Pace::RetryAfter(asked));
            assert!(
                d >= asked && d <= asked + INTERVAL / 10 && d <= CAP,
                "{d:?}"
            );
        }
        assert_eq!(
            s.next_delay(Pace::RetryAfter(Duration::from_secs(3600))),
            CAP
        );
    }
}
