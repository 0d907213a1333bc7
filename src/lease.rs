//! Lease machinery: what this process holds, and the heartbeat thread that keeps it leased.
//!
//! Every claimed instance and every blob being written holds a lease in the store until
//! `now + lease`. While this process holds them, the heartbeat renews them every lease/3, so
//! that a slow but living holder is never taken over; a dead process stops renewing.

use crate::error::{Error, Result};
use crate::store::{BlobId, Store};
use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What this process holds and must keep leased.
#[derive(Default)]
pub(crate) struct Live {
    pub jobs: HashMap<i64, u32>,
    pub stages: HashSet<BlobId>,
}

/// The background thread that renews leases. It holds only the store and the live set, never
/// the database handle, so the handle's drop can stop and join it.
pub(crate) struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(store: Arc<dyn Store>, live: Arc<Mutex<Live>>, lease: Duration) -> Result<Heartbeat> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let lease_ms = lease.as_millis() as i64;
        let period = lease / 3;
        let thread = std::thread::Builder::new()
            .name("batchdb-heartbeat".into())
            .spawn(move || loop {
                {
                    let (m, cv) = &*flag;
                    let guard = lock(m);
                    let (guard, _) = cv
                        .wait_timeout_while(guard, period, |stopped| !*stopped)
                        .unwrap_or_else(|e| e.into_inner());
                    if *guard {
                        return;
                    }
                }
                let (jobs, stages) = {
                    let l = lock(&live);
                    (
                        l.jobs.iter().map(|(c, a)| (*c, *a)).collect::<Vec<_>>(),
                        l.stages.iter().copied().collect::<Vec<_>>(),
                    )
                };
                if !jobs.is_empty() || !stages.is_empty() {
                    // A failed renewal is retried next period; if the lease runs out, fencing
                    // keeps the outcome correct.
                    let _ = store.renew(jobs, stages, lease_ms);
                }
            })
            .map_err(|e| Error::io(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Heartbeat { stop, thread: Some(thread) })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
