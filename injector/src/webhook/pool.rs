//! The threads reviews run on: at most a few, and the one that finished
//! last takes the next review.
//!
//! tokio's blocking pool wakes its idle threads in turn, so at a low rate
//! (one review at a time, a few milliseconds apart) each review ran on
//! the thread that had been idle longest: the coldest stack, caches and
//! malloc arena, after a burst had left several threads alive. Here idle
//! threads wait on a stack, and the top one, the warmest, is woken
//! first; the ones below it are left idle and end after
//! [`KEEP_ALIVE`], so the pool shrinks back to what the rate needs.
//! Under load it is the same as tokio's: up to `max` threads run
//! reviews, and the rest wait in order.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a thread waits idle for a review before it ends (tokio's
/// blocking pool waits as long).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs jobs on at most `max` threads, the most recently idle first.
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    max: usize,
    keep_alive: Duration,
}

#[derive(Default)]
struct State {
    /// Idle threads, the one idle longest at the bottom.
    idle: Vec<Arc<Slot>>,
    /// Threads alive: running a job or idle.
    threads: usize,
    /// Jobs waiting for a thread, when all `max` are busy.
    queue: VecDeque<Job>,
}

/// Where an idle thread waits for its next job.
#[derive(Default)]
struct Slot {
    job: Mutex<Option<Job>>,
    given: Condvar,
}

/// A poisoned lock only means a job panicked while another thread held
/// it; the pool's own state is always left consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Slot {
    fn give(&self, job: Job) {
        *lock(&self.job) = Some(job);
        self.given.notify_one();
    }

    /// The job given to this slot, once it is given.
    fn wait(&self) -> Job {
        let mut job = lock(&self.job);
        loop {
            if let Some(job) = job.take() {
                return job;
            }
            job = self.given.wait(job).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The job given to this slot within `timeout`, if one is.
    fn wait_for(&self, timeout: Duration) -> Option<Job> {
        let (mut job, _) = self
            .given
            .wait_timeout_while(lock(&self.job), timeout, |job| job.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        job.take()
    }
}

impl Pool {
    /// A pool of at most `max` threads (at least one), none started yet.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self::with_keep_alive(max, KEEP_ALIVE)
    }

    fn with_keep_alive(max: usize, keep_alive: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                max: max.max(1),
                keep_alive,
            }),
        }
    }

    /// Runs `job` on the most recently idle thread, else on a new one,
    /// else after the jobs already waiting. A job that panics ends
    /// there; its thread goes on. If no thread can be started and none
    /// is alive to take it later, the job is dropped unrun: whoever waits
    /// on its result sees it gone.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let mut state = lock(&self.shared.state);
        if let Some(slot) = state.idle.pop() {
            drop(state);
            slot.give(job);
            return;
        }
        if state.threads >= self.shared.max {
            state.queue.push_back(job);
            return;
        }
        state.threads += 1;
        drop(state);
        let shared = Arc::clone(&self.shared);
        // The job moves into the thread only once it has started: a
        // failed spawn hands it back (through `first`), to wait for a
        // thread that is alive.
        let first = Arc::new(Mutex::new(Some(job)));
        let handed = Arc::clone(&first);
        let spawned = std::thread::Builder::new()
            .name("review".to_owned())
            .spawn(move || {
                if let Some(job) = lock(&handed).take() {
                    work(&shared, job);
                }
            });
        if let Err(error) = spawned {
            let mut state = lock(&self.shared.state);
            state.threads -= 1;
            let Some(job) = lock(&first).take() else {
                return;
            };
            // A thread may have gone idle meanwhile; else one that is
            // busy takes the job when it is done; else there is none.
            if let Some(slot) = state.idle.pop() {
                drop(state);
                slot.give(job);
            } else if state.threads > 0 {
                state.queue.push_back(job);
            } else {
                drop(state);
                drop(job);
            }
            tracing::warn!(
                "cannot start a thread for a review ({error}); it waits for a busy one, or fails"
            );
        }
    }

    /// Threads alive now, busy or idle.
    #[cfg(test)]
    fn threads(&self) -> usize {
        lock(&self.shared.state).threads
    }
}

/// One thread's life: its first job, then whatever is queued, then idle
/// on the stack until a job comes or [`Shared::keep_alive`] passes.
fn work(shared: &Shared, first: Job) {
    let slot = Arc::new(Slot::default());
    let mut job = first;
    loop {
        // tokio's blocking pool catches a panic too; the panic hook has
        // already reported it, and the job's result sender is dropped.
        let _ = catch_unwind(AssertUnwindSafe(job));
        let mut state = lock(&shared.state);
        if let Some(next) = state.queue.pop_front() {
            job = next;
            continue;
        }
        state.idle.push(Arc::clone(&slot));
        drop(state);
        if let Some(next) = slot.wait_for(shared.keep_alive) {
            job = next;
            continue;
        }
        let mut state = lock(&shared.state);
        if let Some(at) = state.idle.iter().position(|s| Arc::ptr_eq(s, &slot)) {
            state.idle.remove(at);
            state.threads -= 1;
            return;
        }
        // Taken off the stack while the wait ended: its job is on the way.
        drop(state);
        job = slot.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn name() -> String {
        std::thread::current().name().unwrap_or_default().to_owned()
            + &format!("{:?}", std::thread::current().id())
    }

    #[test]
    fn one_job_at_a_time_runs_on_the_same_thread() {
        let pool = Pool::new(4);
        let (tx, rx) = mpsc::channel();
        let mut seen = Vec::new();
        for _ in 0..20 {
            let tx = tx.clone();
            pool.run(move || tx.send(name()).unwrap());
            seen.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
            // Let the thread go back to the stack before the next job.
            let until = Instant::now() + Duration::from_secs(10);
            while super::lock(&pool.shared.state).idle.is_empty() && Instant::now() < until {
                std::thread::yield_now();
            }
        }
        assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn the_warmest_idle_thread_takes_the_next_job_and_the_rest_end_after_keep_alive() {
        // Long enough that no thread ends while the test is still setting
        // up, even on a loaded machine; short enough to wait for below.
        let pool = Pool::with_keep_alive(3, Duration::from_secs(1));
        let (tx, rx) = mpsc::channel();
        // Three jobs at once: three threads, each held until released.
        let mut releases = Vec::new();
        for _ in 0..3 {
            let tx = tx.clone();
            let (release, held) = mpsc::channel::<()>();
            releases.push(release);
            pool.run(move || {
                tx.send(name()).unwrap();
                let _ = held.recv_timeout(Duration::from_secs(10));
                tx.send(name()).unwrap();
            });
        }
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(pool.threads(), 3);
        // Released one by one, each back on the stack before the next.
        let mut finished = Vec::new();
        for (n, release) in releases.into_iter().enumerate() {
            release.send(()).unwrap();
            finished.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
            let until = Instant::now() + Duration::from_secs(10);
            while super::lock(&pool.shared.state).idle.len() <= n && Instant::now() < until {
                std::thread::yield_now();
            }
        }
        let tx2 = tx.clone();
        pool.run(move || tx2.send(name()).unwrap());
        let next = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(&next, finished.last().unwrap(), "{finished:?}");
        // Past keep-alive with no work, the pool empties.
        let until = Instant::now() + Duration::from_secs(10);
        while pool.threads() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.threads(), 0);
    }

    #[test]
    fn past_max_jobs_wait_in_order_and_a_panic_does_not_cost_a_thread() {
        let pool = Pool::new(1);
        let (tx, rx) = mpsc::channel();
        pool.run(|| panic!("a review that panics"));
        for n in 0..5 {
            let tx = tx.clone();
            pool.run(move || tx.send(n).unwrap());
        }
        let order: Vec<i32> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        assert_eq!(pool.threads(), 1);
    }
}
