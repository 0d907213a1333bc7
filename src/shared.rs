//! What every clone of a [`Db`](crate::Db) shares: the store, the options, the event
//! subscribers, the leases this process holds, and the wake-up that waiting workers sleep on.
//! Blobs, jobs and cursors keep an `Arc` of it, so each stays usable while it lives.

use crate::error::Result;
use crate::events::Event;
use crate::events::Events;
use crate::hash::Hash;
use crate::lease::{Heartbeat, Live};
use crate::options::Options;
use crate::store::{Access, ClaimParams, Expired, Pushed, Store};
use crate::sync::lock;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A generation that moves on every wake-up, with the condition variable that waiters sleep on.
/// Shared with the PostgreSQL listener's thread, which must not keep the whole database alive.
#[derive(Default)]
pub(crate) struct Wake {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Wake {
    pub fn bump(&self) {
        *lock(&self.generation) += 1;
        self.cv.notify_all();
    }
}

pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub opts: Options,
    pub events: Events,
    live: Arc<Mutex<Live>>,
    wake: Arc<Wake>,
    stop_epoch: AtomicU64,
    _heartbeat: Option<Heartbeat>,
}

impl Shared {
    /// Opens the store that `path` names, and starts the heartbeat when the options want one.
    pub fn open(path: &Path, opts: Options, access: Access) -> Result<Shared> {
        opts.validate()?;
        let wake = Arc::new(Wake::default());
        let store = {
            let wake = wake.clone();
            crate::store::open(path, opts.durability, opts.lease, access, Arc::new(move || wake.bump()))?
        };
        let live = Arc::new(Mutex::new(Live::default()));
        // A read-only handle never holds a job, so there is no lease to renew.
        let heartbeat = if opts.heartbeat && access != Access::ReadOnly {
            Some(Heartbeat::start(store.clone(), live.clone(), opts.lease)?)
        } else {
            None
        };
        Ok(Shared {
            store,
            opts,
            events: Events::default(),
            live,
            wake,
            stop_epoch: AtomicU64::new(0),
            _heartbeat: heartbeat,
        })
    }

    /// Makes every run of this handle return once its running jobs are finished.
    pub fn stop_runs(&self) {
        self.stop_epoch.fetch_add(1, Ordering::SeqCst);
        self.wake_workers();
    }

    pub fn live_job(&self, created: i64, attempt: u32, held: bool) {
        let mut live = lock(&self.live);
        if held {
            live.jobs.insert(created, attempt);
        } else {
            live.jobs.remove(&created);
        }
    }

    pub fn live_stage(&self, stage: i64, held: bool) {
        let mut live = lock(&self.live);
        if held {
            live.stages.insert(stage);
        } else {
            live.stages.remove(&stage);
        }
    }

    /// Announces a push: event `push` for a new instance, `fail` when it became a fail row at
    /// once (a failed upstream), and wakes the workers.
    pub fn pushed(&self, key: Hash, p: &Pushed) {
        if p.new {
            self.events.emit(Event::Push { key, created: p.created });
        }
        if let Some(message) = &p.failed {
            self.events.emit(Event::Fail { key, created: p.created, message: message.clone() });
        } else if p.new {
            self.wake_workers();
        }
    }

    /// Announces fail rows a change made (expired leases, dependents of a failed upstream).
    pub fn failed(&self, rows: Vec<Expired>) {
        for e in rows {
            self.events.emit(Event::Fail { key: e.key, created: e.created, message: e.message });
        }
    }

    /// A claim's parameters, from the options, for the `queues` served (None: every queue).
    pub fn claim_params(&self, queues: Option<Arc<[String]>>) -> ClaimParams {
        ClaimParams {
            lease_ms: self.opts.lease_ms(),
            max_attempts: self.opts.max_attempts,
            order: self.opts.order,
            queues,
        }
    }

    /// Wakes every worker of this process waiting for work.
    pub fn wake_workers(&self) {
        self.wake.bump();
    }

    pub fn wake_generation(&self) -> u64 {
        *lock(&self.wake.generation)
    }

    /// Waits until the wake generation moves past `seen`, or `timeout`; true if it moved.
    pub fn wait_wake(&self, seen: u64, timeout: Duration) -> bool {
        let guard = lock(&self.wake.generation);
        let (guard, _) = self
            .wake
            .cv
            .wait_timeout_while(guard, timeout, |g| *g == seen)
            .unwrap_or_else(|e| e.into_inner());
        *guard != seen
    }

    pub fn stop_epoch(&self) -> u64 {
        self.stop_epoch.load(Ordering::SeqCst)
    }
}
