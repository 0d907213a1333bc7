//! Claimed jobs: the lease, its heartbeat, and the fence on `complete` and `fail`.
//!
//! A claim marks the instance running until `now + lease` and bumps its attempt number,
//! which is the fencing token: `complete` and `fail` change the instance only while it is
//! still running under the same attempt. While a [`Job`] lives, the heartbeat thread renews
//! its lease every lease/3, so a slow but living worker is never rescued; a dead one stops
//! renewing, and the next claim after the lease runs out re-queues the instance (or fails it
//! after the last attempt).

use crate::blob::{Reader, Writer};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::hash::Hash;
use crate::shared::Shared;
use crate::store::{ClaimOutcome, ClaimParams, Claimed};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Backoff of a re-queued runner error: 1 s doubling per attempt, at most an hour.
fn backoff_ms(attempt: u32) -> i64 {
    1000i64.saturating_mul(1i64 << attempt.saturating_sub(1).min(12)).min(3_600_000)
}

/// An instance claimed by this process: read its payload, write its output, then
/// [`complete`](Job::complete) or [`fail`](Job::fail).
///
/// Dropping a job without either releases it: it goes back to pending at once while
/// attempts remain, and becomes a fail row after the last one.
pub struct Job {
    inner: Arc<Shared>,
    key: Hash,
    created: i64,
    attempt: u32,
    after: Vec<(Hash, i64, Hash)>,
    payload: Reader,
    output: Writer,
    finished: bool,
}

impl Job {
    /// The job a claim took, if any, with the claim's events: `fail` for the instances whose
    /// last lease ran out, `push` for the schedules it fired, `start` for the job.
    pub(crate) fn from_claim(inner: &Arc<Shared>, out: ClaimOutcome) -> Option<Job> {
        inner.failed(out.expired);
        for (key, created) in out.fired {
            inner.events.emit(Event::Push { key, created });
        }
        let c = out.claimed?;
        inner.events.emit(Event::Start { key: c.key, created: c.created });
        Some(Job::new(inner.clone(), c))
    }

    /// Whether this job was claimed through `db` or a clone of it (whose claim it may make).
    pub(crate) fn claimed_by(&self, db: &crate::Db) -> bool {
        Arc::ptr_eq(&self.inner, &db.inner)
    }

    pub(crate) fn new(inner: Arc<Shared>, claimed: Claimed) -> Job {
        let Claimed { key, payload, size, created, attempt, after, first_chunk } = claimed;
        inner.live_job(created, attempt, true);
        let mut reader = Reader::at(inner.clone(), key, payload, size);
        if let Some(chunk) = first_chunk {
            reader.prefetched(chunk);
        }
        Job {
            payload: reader,
            output: Writer::new(inner.clone()),
            inner,
            key,
            created,
            attempt,
            after,
            finished: false,
        }
    }

    /// The job's key (the hash of its payload).
    pub fn key(&self) -> Hash {
        self.key
    }

    /// The instance's `created`, epoch milliseconds.
    pub fn created(&self) -> i64 {
        self.created
    }

    /// The upstream instances this one waited for (its push's `after`), each as `(key,
    /// created, result hash)`: the runner's inputs, readable with [`Db::get`](crate::Db::get).
    pub fn after(&self) -> &[(Hash, i64, Hash)] {
        &self.after
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Reports progress: `done` from 0 to 1 and a short message (at most 1000 bytes). The
    /// instance's pending row shows it while it runs, and a `progress` event fires. Fails with
    /// [`Error::Invalid`](crate::Error::Invalid) for a fraction out of range, and with
    /// [`Error::Stale`](crate::Error::Stale) when this worker lost its lease.
    pub fn progress(&self, done: f64, message: &str) -> Result<()> {
        if !(0.0..=1.0).contains(&done) {
            return Err(crate::Error::invalid(format!("progress {done} is out of range (0 to 1)")));
        }
        if message.len() > 1000 {
            return Err(crate::Error::invalid(format!(
                "progress message of {} bytes is too long (at most 1000)",
                message.len()
            )));
        }
        self.inner.store.progress(self.created, self.attempt, done, message)?;
        self.inner.events.emit(Event::Progress {
            key: self.key,
            created: self.created,
            done,
            message: message.to_string(),
        });
        Ok(())
    }

    /// The payload reader and the output writer at once, so that one thread can feed the
    /// payload to a process while another collects its output.
    pub fn io(&mut self) -> (&mut Reader, &mut Writer) {
        (&mut self.payload, &mut self.output)
    }

    /// Records the output written so far as the instance's result, and removes it from the
    /// queue, in one transaction. Event `result`.
    ///
    /// Fails with [`Error::Stale`] and changes nothing when this worker lost its lease.
    pub fn complete(self) -> Result<Hash> {
        self.complete_or_retry(&mut |_| false)
    }

    /// [`complete`](Job::complete) for a run loop: when the connection is lost
    /// ([`Error::is_connection_lost`]), `again` is asked (it reports the outage and waits, see
    /// [`Outage`](crate::Outage)) whether to send the complete again, and it is sent again as
    /// long as it says so. The complete is fenced by the lease, so a retry of one
    /// that did commit, or whose lease ran out meanwhile, is [`Error::Stale`] and changes
    /// nothing: the result is never recorded twice.
    pub fn complete_or_retry(self, again: &mut dyn FnMut(&Error) -> bool) -> Result<Hash> {
        self.finish_done(None, again).map(|(hash, _)| hash)
    }

    /// [`complete_or_retry`](Job::complete_or_retry), then a claim of the next instance from
    /// the `queues` served (None: every queue), in one transaction where the backend can (on
    /// a file: one commit where a complete and a claim take two, and the pages both change
    /// written once). For a worker loop, which takes its next job right after a complete.
    ///
    /// The complete's outcome is what counts: on its error nothing is claimed. The claim is
    /// `None` when nothing was ready, and also when it failed: the worker's next
    /// [`Db::claim`](crate::Db::claim) then reports that error.
    pub(crate) fn complete_claim_or_retry(
        self,
        queues: Option<Arc<[String]>>,
        again: &mut dyn FnMut(&Error) -> bool,
    ) -> Result<(Hash, Option<Job>)> {
        let params = self.inner.claim_params(queues);
        self.finish_done(Some(params), again)
    }

    /// Records the result, and claims with `next` when given (see above).
    fn finish_done(
        mut self,
        next: Option<ClaimParams>,
        again: &mut dyn FnMut(&Error) -> bool,
    ) -> Result<(Hash, Option<Job>)> {
        self.finished = true;
        self.inner.live_job(self.created, self.attempt, false);
        // Shared, not copied: a complete sent again after a lost connection needs the output
        // again, and the first attempt must not pay for a copy of it.
        let out = Arc::new(self.output.finish()?);
        let hash = out.hash;
        let (created, attempt, store) = (self.created, self.attempt, &self.inner.store);
        let (surplus, claimed) = loop {
            let sent = match &next {
                None => store.complete(created, attempt, out.clone()).map(|done| (done, None)),
                Some(p) => store.complete_claim(created, attempt, out.clone(), p),
            };
            match sent {
                Ok(((_, surplus), claimed)) => break (surplus, claimed),
                Err(e) if e.is_connection_lost() && again(&e) => {}
                Err(e) => return Err(e),
            }
        };
        self.output.published(surplus);
        self.inner.events.emit(Event::Result { key: self.key, created: self.created, hash });
        self.inner.wake_workers();
        Ok((hash, claimed.and_then(|out| Job::from_claim(&self.inner, out))))
    }

    /// Fails the instance with `message`: a fail row (event `fail`), or, with `retry_errors`
    /// and attempts left, back to pending after a backoff.
    ///
    /// Fails with [`Error::Stale`] and changes nothing when this worker lost its lease.
    pub fn fail(self, message: &str) -> Result<()> {
        self.fail_or_retry(message, &mut |_| false)
    }

    /// [`fail`](Job::fail) for a run loop, sent again after a lost connection as long as
    /// `again` says so (see [`complete_or_retry`](Job::complete_or_retry)); fenced the same way.
    pub fn fail_or_retry(mut self, message: &str, again: &mut dyn FnMut(&Error) -> bool) -> Result<()> {
        let retry = self.inner.opts.retry_errors && self.attempt < self.inner.opts.max_attempts;
        let at = retry.then(|| now_ms() + backoff_ms(self.attempt));
        self.finish_failed(message, at, again)
    }

    /// Whether reading the payload or storing the output failed because the connection to the
    /// server was lost: then a runner's error says nothing about the job.
    pub fn lost_connection(&self) -> bool {
        self.payload.lost_connection() || self.output.lost_connection()
    }

    /// Leaves the instance to its lease, without a word to the server (which cannot be
    /// reached): when the lease runs out, a claim re-queues it, as after a dead worker.
    pub fn abandon(mut self) {
        self.finished = true;
        self.inner.live_job(self.created, self.attempt, false);
    }

    fn finish_failed(
        &mut self,
        message: &str,
        requeue_at: Option<i64>,
        again: &mut dyn FnMut(&Error) -> bool,
    ) -> Result<()> {
        self.finished = true;
        self.inner.live_job(self.created, self.attempt, false);
        let (_, dependents) = loop {
            match self.inner.store.fail(self.created, self.attempt, message, requeue_at) {
                Ok(done) => break done,
                Err(e) if e.is_connection_lost() && again(&e) => {}
                Err(e) => return Err(e),
            }
        };
        if requeue_at.is_none() {
            self.inner.events.emit(Event::Fail {
                key: self.key,
                created: self.created,
                message: message.to_string(),
            });
        }
        self.inner.failed(dependents);
        self.inner.wake_workers();
        Ok(())
    }
}

impl Read for Job {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.payload.read(buf)
    }
}

impl Write for Job {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.output.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let requeue = (self.attempt < self.inner.opts.max_attempts).then(now_ms);
        let message = format!("released unfinished after {} attempts", self.attempt);
        // Best effort: if this fails, the lease runs out and a claim does the same.
        let _ = self.finish_failed(&message, requeue, &mut |_| false);
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("key", &self.key)
            .field("created", &self.created)
            .field("attempt", &self.attempt)
            .finish()
    }
}
