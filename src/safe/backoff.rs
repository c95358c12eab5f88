//! Exponential back-off with "equal" jitter, capped.
//!
//! The n-th retry in a row waits a uniformly random time in
//! `[c/2, c]` with `c = min(cap, base * 2^n)`. Random spread keeps a fleet
//! of pods that failed together from retrying in lockstep; the floor of
//! half the ceiling keeps a failing fleet from retrying sooner than its
//! steady pace (a full-jitter floor near zero made a booting Safe see more
//! requests, and notice-late draws longer, in figure 6b of the benchmarks).

use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    retries: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self::with_rng(base, cap, fastrand::Rng::new())
    }

    /// A back-off with a seeded random source, for tests.
    #[must_use]
    pub fn with_rng(base: Duration, cap: Duration, rng: fastrand::Rng) -> Self {
        Self {
            base,
            cap: cap.max(base),
            retries: 0,
            rng,
        }
    }

    /// The upper bound of the next delay, before jitter.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.retries.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Starts over after a run of failures has ended.
    pub fn reset(&mut self) {
        self.retries = 0;
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        let floor = ceiling / 2;
        self.retries = self.retries.saturating_add(1);
        let span = ceiling.saturating_sub(floor);
        let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        floor + Duration::from_nanos(self.rng.u64(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    const BASE: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(10);

    #[test]
    fn ceiling_doubles_then_caps() {
        let mut b = Backoff::with_rng(BASE, CAP, fastrand::Rng::with_seed(1));
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), CAP, "no overflow after many retries");
    }

    #[test]
    fn delays_stay_within_floor_and_ceiling_and_spread() {
        let mut b = Backoff::with_rng(BASE, CAP, fastrand::Rng::with_seed(7));
        let mut late = Vec::new();
        for n in 0..50 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "retry {n}: {d:?} > {ceiling:?}"
            );
            if n >= 10 {
                late.push(d);
            }
        }
        late.sort();
        late.dedup();
        assert!(late.len() > 30, "jitter should spread delays: {late:?}");
    }

    /// Drives real sleeps under paused tokio time: the virtual clock shows
    /// the schedule a gate would follow, with no wall-clock wait.
    #[tokio::test(start_paused = true)]
    async fn schedule_under_paused_time() {
        let start = tokio::time::Instant::now();
        let mut b = Backoff::with_rng(BASE, CAP, fastrand::Rng::with_seed(3));
        let mut attempts = vec![Duration::ZERO];
        for _ in 0..20 {
            tokio::time::sleep(b.next_delay()).await;
            attempts.push(start.elapsed());
        }
        let gaps: Vec<Duration> = attempts
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        assert!(gaps.iter().all(|g| *g <= CAP), "{gaps:?}");
        // 20 retries cost at most the sum of their ceilings...
        let most: Duration = [500, 1000, 2000, 4000, 8000]
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .sum::<Duration>()
            + CAP * 15;
        assert!(attempts[20] <= most);
        // ...and, jittered, far fewer than a fixed ticker at the base interval.
        assert!(attempts[20] > BASE * 20, "{:?}", attempts[20]);
    }

    #[test]
    fn two_gates_do_not_move_in_lockstep() {
        let mut a = Backoff::with_rng(BASE, CAP, fastrand::Rng::with_seed(11));
        let mut b = Backoff::with_rng(BASE, CAP, fastrand::Rng::with_seed(12));
        let same = (0..20).filter(|_| a.next_delay() == b.next_delay()).count();
        assert_eq!(same, 0);
    }
}
