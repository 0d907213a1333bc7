//! The run loop: N worker threads that claim, run and complete or fail, and wait without
//! spinning when there is nothing to do.

use crate::clock::{jitter, now_ms};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::options::RunOptions;
use crate::outage::{Backoff, Outage};
use crate::queue::Job;
use crate::store::Idle;
use crate::sync::panic_text;
use std::cell::Cell;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// How often a waiting worker looks for commits of other processes. A look is one
/// `PRAGMA data_version`: an idle run stays far below 1% of a core.
const POLL: Duration = Duration::from_millis(100);
/// The longest single sleep of a waiter whose store wakes it on every commit elsewhere
/// (PostgreSQL). The condition variable needs some bound; at one look at a counter a minute it
/// costs nothing.
const WOKEN_MAX_SLEEP: Duration = Duration::from_secs(60);

/// What a [`Db::run`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Instances completed.
    pub completed: u64,
    /// Instances whose runner returned an error or panicked.
    pub failed: u64,
    /// Instances whose lease was lost before they finished (their outcome was dropped).
    pub lost: u64,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
}

impl Db {
    /// Runs the queue on `opts.workers` threads: each claims an instance, calls `runner`
    /// with the [`Job`] (read its payload, write its output), and completes it when the
    /// runner returns `Ok`, or fails it with the error's text when it returns `Err` or
    /// panics. The loop goes on either way.
    ///
    /// With `until_empty` it returns once nothing is pending, waiting or running. Without
    /// it, it waits for new work, also work pushed by other processes, until
    /// [`stop`](Db::stop).
    ///
    /// On a server, a lost connection ([`Error::is_connection_lost`]) does not end the run:
    /// its workers wait and try again (see [`Outage`]) until the server is back or the run is
    /// stopped, emitting [`Event::Disconnected`] once when the outage begins and
    /// [`Event::Reconnected`] when it ends. An instance finished during the outage has its
    /// complete or fail sent again (fenced by the lease: never recorded twice); a lost
    /// connection never makes a fail row.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = batchdb::Db::open(dir.path().join("q.db"), Default::default())?;
    /// db.add(&b"hello"[..])?;
    /// let report = db.run(batchdb::RunOptions { workers: 2, until_empty: true, ..Default::default() }, |job| {
    ///     let mut input = Vec::new();
    ///     job.read_to_end(&mut input)?;
    ///     job.write_all(&input.to_ascii_uppercase())
    /// })?;
    /// assert_eq!(report.completed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run<F, E>(&self, opts: RunOptions, runner: F) -> Result<RunReport>
    where
        F: Fn(&mut Job) -> std::result::Result<(), E> + Sync,
        E: Display,
    {
        if !(1..=1024).contains(&opts.workers) {
            return Err(Error::invalid(format!("workers {} is out of range (1 to 1024)", opts.workers)));
        }
        let served = crate::db::served(&opts.queues)?;
        let until_empty = opts.until_empty;
        let epoch = self.inner.stop_epoch();
        let halt = AtomicBool::new(false);
        let counters = Counters::default();
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let outage = Outage::new();
        std::thread::scope(|s| {
            for i in 0..opts.workers {
                let (halt, counters, first_error, runner, served, outage) =
                    (&halt, &counters, &first_error, &runner, &served, &outage);
                let spawned = std::thread::Builder::new().name(format!("batchdb-worker-{i}")).spawn_scoped(
                    s,
                    move || {
                        if let Err(e) =
                            self.worker(until_empty, served, runner, epoch, halt, counters, outage)
                        {
                            halt.store(true, Ordering::SeqCst);
                            self.inner.wake_workers();
                            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        }
                    },
                );
                if let Err(e) = spawned {
                    halt.store(true, Ordering::SeqCst);
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(Error::io(format!("cannot start a worker thread: {e}")));
                    break;
                }
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(RunReport {
            completed: counters.completed.into_inner(),
            failed: counters.failed.into_inner(),
            lost: counters.lost.into_inner(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn worker<F, E>(
        &self,
        until_empty: bool,
        served: &Option<Arc<[String]>>,
        runner: &F,
        epoch: u64,
        halt: &AtomicBool,
        n: &Counters,
        outage: &Outage,
    ) -> Result<()>
    where
        F: Fn(&mut Job) -> std::result::Result<(), E> + Sync,
        E: Display,
    {
        let inner = &self.inner;
        let stopped = || halt.load(Ordering::SeqCst) || inner.stop_epoch() != epoch;
        let backoff = Cell::new(Backoff::new());
        // A lost connection, wherever in the turn: report the outage once, wait, go on while
        // the run is not stopped (see `crate::outage`).
        let mut again = |e: &Error| {
            self.note_lost(outage, e, backoff.get().attempt());
            let mut b = backoff.get();
            let pause = b.next_pause();
            backoff.set(b);
            self.back_off(pause, &stopped)
        };
        let mut version = None;
        // The next job, claimed in the transaction that completed the last one. A stop does
        // not hand it back (that would cost it an attempt): it runs first, and the complete
        // after a stop claims nothing more.
        let mut ahead = None;
        loop {
            if stopped() && ahead.is_none() {
                return Ok(());
            }
            let mut b = backoff.get();
            b.begin();
            backoff.set(b);
            let turn = Turn { until_empty, served, runner, n, stopped: &stopped };
            match self.turn(&turn, &mut ahead, &mut version, &mut again) {
                Ok(Step::Again) => {}
                Ok(Step::Done) => return Ok(()),
                Err(e) if e.is_connection_lost() => {
                    version = None;
                    if !again(&e) {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            if let Some(down) = outage.back(backoff.get().attempt()) {
                inner.events.emit(Event::Reconnected { outage_ms: down.as_millis() as u64 });
            }
            backoff.set(Backoff::new());
        }
    }

    /// One claim and what follows it: the run of the instance, or a wait for work.
    fn turn<F, E>(
        &self,
        t: &Turn<'_, F>,
        ahead: &mut Option<Job>,
        version: &mut Option<i64>,
        again: &mut dyn FnMut(&Error) -> bool,
    ) -> Result<Step>
    where
        F: Fn(&mut Job) -> std::result::Result<(), E> + Sync,
        E: Display,
    {
        let &Turn { until_empty, served, runner, n, stopped } = t;
        let inner = &self.inner;
        let mut v = match *version {
            Some(v) => v,
            None => inner.store.change_counter()?,
        };
        *version = Some(v);
        let seen = inner.wake_generation();
        let claimed = match ahead.take() {
            Some(job) => Some(job),
            None => match self.claim_served(served.clone()) {
                Ok(c) => c,
                Err(Error::Busy(_)) => {
                    std::thread::sleep(Duration::from_millis(1 + jitter(20)));
                    return Ok(Step::Again);
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(job) = claimed {
            let (outcome, next) = execute(job, runner, served, stopped, again)?;
            let counter = match outcome {
                Outcome::Completed => &n.completed,
                Outcome::Failed => &n.failed,
                Outcome::Lost => &n.lost,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            *ahead = next;
            return Ok(Step::Again);
        }
        let idle = Idle::new(inner.store.idle()?, served.as_deref());
        if until_empty && !idle.any {
            inner.wake_workers();
            return Ok(Step::Done);
        }
        self.sleep_until_work(seen, &mut v, idle.next_due, None)?;
        *version = Some(v);
        Ok(Step::Again)
    }

    /// Reports a lost connection as an [`Event::Disconnected`], once per outage.
    fn note_lost(&self, outage: &Outage, e: &Error, began: std::time::Instant) {
        if outage.lost(e, began) {
            self.inner.events.emit(Event::Disconnected { message: e.message().to_string() });
        }
    }

    /// Sleeps for `d` unless the run is stopped first; `false` when it is.
    fn back_off(&self, d: Duration, stopped: &dyn Fn() -> bool) -> bool {
        let end = std::time::Instant::now() + d;
        loop {
            if stopped() {
                return false;
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            // A stop wakes the workers, so this returns at once then.
            let seen = self.inner.wake_generation();
            self.inner.wait_wake(seen, left);
        }
    }

    /// Blocks until something may be claimable: an instance is ready, this process pushed or
    /// finished something, a delay, backoff or lease runs out, another process committed, or
    /// [`stop`](Db::stop) was called. Returns `true` then, and `false` when `timeout` passed
    /// first. Lets a caller that drives [`claim`](Db::claim) itself wait without polling.
    pub fn wait_for_work(&self, timeout: Duration) -> Result<bool> {
        self.wait_served(None, timeout)
    }

    /// [`wait_for_work`](Db::wait_for_work) for a claimer of the named queues only (none
    /// named: every queue), as [`claim_from`](Db::claim_from) takes them.
    pub fn wait_for_work_from<S: AsRef<str>>(&self, queues: &[S], timeout: Duration) -> Result<bool> {
        self.wait_served(crate::db::served(queues)?, timeout)
    }

    fn wait_served(&self, served: Option<Arc<[String]>>, timeout: Duration) -> Result<bool> {
        let inner = &self.inner;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // Read both wake-up signals before looking at the queue, so that nothing that
            // lands after the look is missed.
            let seen = inner.wake_generation();
            let mut version = inner.store.change_counter()?;
            let idle = Idle::new(inner.store.idle()?, served.as_deref());
            // Ready for these queues, or something falls due that only a claim moves on (a
            // delay ends, a lease runs out, a schedule's slot comes).
            if idle.ready || idle.next_due.is_some_and(|t| t <= now_ms()) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !self.sleep_until_work(seen, &mut version, idle.next_due, Some(left))? {
                return Ok(false);
            }
            // Woken: by work for these queues, or by a change elsewhere (another queue's push
            // notifies every waiter on a server). Look again rather than report work that
            // is not there.
        }
    }

    /// Whether a run serving `queues` (none named: every queue) with `until_empty` would
    /// return now: nothing is ready in a served queue that is not paused, and nothing is
    /// running, delayed, backing off or waiting for an upstream. What callers that drive
    /// [`claim_from`](Db::claim_from) themselves (the CLI, the bindings) ask, so that every
    /// run loop ends by the same rule.
    pub fn is_idle<S: AsRef<str>>(&self, queues: &[S]) -> Result<bool> {
        let served = crate::db::served(queues)?;
        Ok(!Idle::new(self.inner.store.idle()?, served.as_deref()).any)
    }

    /// Sleeps until woken (true), `next_due` passes (true), another process commits (true),
    /// or `limit` passes (false).
    fn sleep_until_work(
        &self,
        seen: u64,
        version: &mut i64,
        next_due: Option<i64>,
        limit: Option<Duration>,
    ) -> Result<bool> {
        let inner = &self.inner;
        let due = next_due.map(|t| Duration::from_millis((t - now_ms()).max(0) as u64));
        let mut slept = Duration::ZERO;
        loop {
            if due.is_some_and(|d| slept >= d) {
                return Ok(true);
            }
            if limit.is_some_and(|l| slept >= l) {
                return Ok(false);
            }
            // Read before sleeping: a store that stops waking waiters (its connection was lost)
            // wakes them once as it stops, and that moves the generation past `seen`.
            let cap = if inner.store.wakes_waiters() { WOKEN_MAX_SLEEP } else { POLL };
            let step =
                [due, limit].into_iter().flatten().map(|d| d.saturating_sub(slept)).fold(cap, Duration::min);
            if inner.wait_wake(seen, step) {
                return Ok(true);
            }
            slept += step;
            let v = inner.store.change_counter()?;
            if v != *version {
                *version = v;
                return Ok(true);
            }
        }
    }
}

/// What a worker's turn ended with.
enum Step {
    Again,
    Done,
}

/// What a worker's turns share.
struct Turn<'a, F> {
    until_empty: bool,
    served: &'a Option<Arc<[String]>>,
    runner: &'a F,
    n: &'a Counters,
    stopped: &'a dyn Fn() -> bool,
}

enum Outcome {
    Completed,
    Failed,
    Lost,
}

/// Runs `job`, then completes or fails it. A complete claims the worker's next job from
/// `served` in its own transaction, unless the run was `stopped` meanwhile.
fn execute<F, E>(
    mut job: Job,
    runner: &F,
    served: &Option<Arc<[String]>>,
    stopped: &dyn Fn() -> bool,
    again: &mut dyn FnMut(&Error) -> bool,
) -> Result<(Outcome, Option<Job>)>
where
    F: Fn(&mut Job) -> std::result::Result<(), E>,
    E: Display,
{
    let ran = catch_unwind(AssertUnwindSafe(|| runner(&mut job)));
    let done = match ran {
        Ok(Ok(())) if stopped() => job.complete_or_retry(again).map(|_| (Outcome::Completed, None)),
        Ok(Ok(())) => {
            job.complete_claim_or_retry(served.clone(), again).map(|(_, next)| (Outcome::Completed, next))
        }
        // The runner failed because its payload or output could not be moved: that says
        // nothing about the job, and must not become a fail row. Its lease re-queues it.
        Ok(Err(_)) if job.lost_connection() => {
            job.abandon();
            Ok((Outcome::Lost, None))
        }
        Ok(Err(e)) => job.fail_or_retry(&e.to_string(), again).map(|_| (Outcome::Failed, None)),
        Err(p) => job
            .fail_or_retry(&format!("runner panicked: {}", panic_text(&p)), again)
            .map(|_| (Outcome::Failed, None)),
    };
    match done {
        Err(Error::Stale(_)) => Ok((Outcome::Lost, None)),
        // The output could not be stored, or the run was stopped before the server was back:
        // the instance is left to its lease. The outage is reported and waited out as any.
        Err(e) if e.is_connection_lost() => {
            again(&e);
            Ok((Outcome::Lost, None))
        }
        other => other,
    }
}
