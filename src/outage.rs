//! How a run loop rides out a lost connection to the server: the one policy that
//! [`Db::run`](crate::Db::run) (and through it C `batchdb_run` and Go), the CLI's worker loop
//! and Node's loop follow.
//!
//! A claim, wait, complete or fail that fails with [`Error::is_connection_lost`] is not the
//! end of a run: the server restarts, a link flaps. The worker pauses ([`Backoff`]: 100 ms
//! doubling to 5 s, with jitter so that a fleet of workers does not reconnect in one burst)
//! and tries again, for as long as the run is not stopped. An outage is reported once when it
//! begins and once when it ends ([`Outage`]), not once per failed attempt of every worker:
//! a call counts for the outage only by when it began ([`Backoff::attempt`]), so a call that
//! reached the server just before the outage does not end it, and one that failed in it does
//! not begin another once it has ended.
//!
//! A finished instance whose complete or fail could not be sent is sent again after the
//! connection is back: both are fenced by the lease, so a retry of one that did commit, or of
//! one whose lease ran out meanwhile, changes nothing ([`Error::Stale`]). A lost connection
//! never turns an instance into a fail row.

use crate::clock::jitter;
use crate::error::Error;
use crate::sync::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first pause after a lost connection.
const FIRST: Duration = Duration::from_millis(100);
/// The longest pause: a server back from a restart is found within about this long.
const MAX: Duration = Duration::from_secs(5);

/// The pauses between attempts to reach the server again: 100 ms doubling to 5 s, each drawn
/// from the upper half of its step so that workers that lost the connection together spread
/// out.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    step: Duration,
    attempt: Instant,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { step: FIRST, attempt: Instant::now() }
    }
}

impl Backoff {
    /// A back-off at its first step.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// The next pause, and doubles the step (up to 5 s). The next attempt begins when the
    /// pause ends.
    pub fn next_pause(&mut self) -> Duration {
        let ms = self.step.as_millis() as u64;
        self.step = (self.step * 2).min(MAX);
        let pause = Duration::from_millis(ms / 2 + jitter(ms / 2));
        self.attempt = Instant::now() + pause;
        pause
    }

    /// Notes that a new attempt (a worker's next turn) begins now.
    pub fn begin(&mut self) {
        self.attempt = Instant::now();
    }

    /// When the current attempt began: what [`Outage::lost`] and [`Outage::back`] judge a
    /// call by.
    pub fn attempt(&self) -> Instant {
        self.attempt
    }

    /// Back to the first step, once the server answered again.
    pub fn reset(&mut self) {
        self.step = FIRST;
    }
}

/// One run's outages, shared by its workers, so that each is reported once: [`lost`]
/// returns the report of a new outage, [`back`] that of its end.
///
/// [`lost`]: Outage::lost
/// [`back`]: Outage::back
#[derive(Debug, Default)]
pub struct Outage {
    /// A cheap look for the common case (no outage) on every successful turn.
    down: AtomicBool,
    times: Mutex<Times>,
}

#[derive(Debug, Default)]
struct Times {
    /// When the outage under way began.
    since: Option<Instant>,
    /// When the last one ended.
    ended: Option<Instant>,
}

impl Outage {
    /// No outage yet.
    pub fn new() -> Outage {
        Outage::default()
    }

    /// Notes that `e` happened to a call begun at `began`. Returns `true` when it is a lost
    /// connection that begins an outage (the caller reports it), `false` when it is not a lost
    /// connection, the outage was already reported, or the call began before the last outage
    /// ended (it failed in that one).
    pub fn lost(&self, e: &Error, began: Instant) -> bool {
        if !e.is_connection_lost() {
            return false;
        }
        let mut t = lock(&self.times);
        if t.since.is_some() || t.ended.is_some_and(|end| began < end) {
            return false;
        }
        t.since = Some(Instant::now());
        self.down.store(true, Ordering::SeqCst);
        true
    }

    /// Notes that a call begun at `began` reached the server. Returns how long the outage
    /// lasted when this ends one (the caller reports it), `None` otherwise: also when the
    /// call began before the outage did (it reached the server before it went away).
    pub fn back(&self, began: Instant) -> Option<Duration> {
        if !self.down.load(Ordering::SeqCst) {
            return None;
        }
        let mut t = lock(&self.times);
        let since = t.since.filter(|&since| began >= since)?;
        t.since = None;
        t.ended = Some(Instant::now());
        self.down.store(false, Ordering::SeqCst);
        Some(since.elapsed())
    }

    /// Whether an outage is under way.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_pause();
        assert!(first >= Duration::from_millis(50) && first <= FIRST, "{first:?}");
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = b.next_pause();
        }
        assert!(last >= MAX / 2 && last <= MAX, "{last:?}");
        b.reset();
        assert!(b.next_pause() <= FIRST);
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_once() {
        let o = Outage::new();
        let now = Instant::now;
        assert_eq!(o.back(now()), None);
        assert!(!o.lost(&Error::Io("disk full".into()), now()), "only a lost connection is an outage");
        let lost = Error::connection_lost("postgres://h/db", "connection refused");
        let before = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(o.lost(&lost, now()));
        assert!(!o.lost(&lost, now()), "the second worker's failure is the same outage");
        assert!(o.is_down());
        // A call that began before the outage and reached the server then does not end it.
        assert_eq!(o.back(before), None);
        assert!(o.is_down());
        let during = now();
        assert!(o.back(now()).is_some());
        assert_eq!(o.back(now()), None);
        // A call begun during the outage that failed after its end is not a new one.
        assert!(!o.lost(&lost, during));
        assert!(!o.is_down());
        std::thread::sleep(Duration::from_millis(2));
        assert!(o.lost(&lost, now()), "a new outage");
    }
}
