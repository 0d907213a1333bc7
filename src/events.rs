//! In-process events: create, push, start, result, progress and fail, and a run's lost and
//! regained connection.
//!
//! Subscribers are called on the thread that made the change, right after it committed.

use crate::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Something that happened to the queue, after it was committed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A job was created (also when its payload already existed).
    Create {
        /// The job's key.
        key: Hash,
    },
    /// An instance was queued.
    Push {
        /// The job's key.
        key: Hash,
        /// The new instance's `created`.
        created: i64,
    },
    /// A worker claimed an instance.
    Start {
        /// The job's key.
        key: Hash,
        /// The instance's `created`.
        created: i64,
    },
    /// An instance completed.
    Result {
        /// The job's key.
        key: Hash,
        /// The instance's `created`.
        created: i64,
        /// The hash of its output.
        hash: Hash,
    },
    /// A running instance reported its progress.
    Progress {
        /// The job's key.
        key: Hash,
        /// The instance's `created`.
        created: i64,
        /// How much is done, from 0 to 1.
        done: f64,
        /// A short description of the step.
        message: String,
    },
    /// An instance failed for good.
    Fail {
        /// The job's key.
        key: Hash,
        /// The instance's `created`.
        created: i64,
        /// The fail row's message.
        message: String,
    },
    /// A run lost its connection to the server (it went away, restarted, or stopped
    /// answering); its workers wait and try again until it is back. Once per outage, on the
    /// worker thread that noticed first. Only a run ([`Db::run`](crate::Db::run)) emits it.
    Disconnected {
        /// What failed, without secrets.
        message: String,
    },
    /// The run reached the server again after a [`Disconnected`](Event::Disconnected).
    Reconnected {
        /// How long the outage lasted, from the first failure noticed, in milliseconds.
        outage_ms: u64,
    },
}

/// Identifies a subscription, for [`Db::unsubscribe`](crate::Db::unsubscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Events {
    subs: RwLock<Vec<(u64, Subscriber)>>,
    next: AtomicU64,
}

impl Events {
    pub fn subscribe(&self, f: Subscriber) -> SubscriptionId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.subs.write().unwrap_or_else(|e| e.into_inner()).push((id, f));
        SubscriptionId(id)
    }

    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        let before = subs.len();
        subs.retain(|(i, _)| *i != id.0);
        subs.len() != before
    }

    pub fn emit(&self, ev: Event) {
        let subs: Vec<Subscriber> =
            self.subs.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, f)| f.clone()).collect();
        for f in subs {
            // A subscriber's panic must not undo or skip a change that is already committed.
            let _ = catch_unwind(AssertUnwindSafe(|| f(&ev)));
        }
    }
}
