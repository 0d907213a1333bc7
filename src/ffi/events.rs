//! Event subscriptions with a C callback: the bridge from the library's events to a
//! `batchdb_event_fn`, and the subscriptions of one handle. The exports that take a handle
//! (`batchdb_subscribe`, `batchdb_unsubscribe`) are in `db.rs`, beside the handle.

use super::error::c_string;
use super::handles::UserData;
use super::{BATCHDB_EVENT_CREATE, BATCHDB_EVENT_FAIL, BATCHDB_EVENT_PUSH, BATCHDB_EVENT_RESULT};
use super::{
    BATCHDB_EVENT_DISCONNECTED, BATCHDB_EVENT_PROGRESS, BATCHDB_EVENT_RECONNECTED, BATCHDB_EVENT_START,
};
use crate::sync::lock;
use crate::{Db, Error, Event, SubscriptionId};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Condvar, Mutex};

/// One event, as passed to a `batchdb_event_fn`. Every pointer in it (and the event itself)
/// is valid only during the callback; copy what you need.
#[repr(C)]
pub struct batchdb_event {
    /// `BATCHDB_EVENT_*`.
    pub kind: i32,
    /// The job's key, 64 hex characters, NUL-terminated; empty for the connection kinds
    /// (disconnected, reconnected).
    pub job: *const c_char,
    /// The instance's `created` (push, start, result, fail; 0 for create); reconnected
    /// events: the outage's length in milliseconds.
    pub created: i64,
    /// Result events: the output's hash; NULL for other kinds.
    pub hash: *const c_char,
    /// Fail events: the fail row's message; progress events: the progress text;
    /// disconnected events: what failed; NULL for other kinds.
    pub message: *const c_char,
    /// Progress events: how much is done, 0 to 1; 0 for other kinds.
    pub done: f64,
}

/// Receives the events of a subscription. Called on whatever thread made the change (any
/// thread calling into the library, or a `batchdb_run` worker), right after it was committed,
/// possibly from several threads at once. `ev` and its strings are valid only during the
/// call. The callback may call into the library, except `batchdb_close` and
/// `batchdb_unsubscribe`.
pub type batchdb_event_fn = Option<extern "C" fn(userdata: *mut c_void, ev: *const batchdb_event)>;

thread_local! {
    /// How many event callbacks are running on this thread (to refuse waiting on oneself).
    static IN_CALLBACK: Cell<usize> = const { Cell::new(0) };
}

/// Lets an unsubscription wait for callbacks in flight, so that none runs after it returns.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, usize)>,
    idle: Condvar,
}

impl Gate {
    fn enter(&self) -> bool {
        let mut s = lock(&self.state);
        if s.0 {
            return false;
        }
        s.1 += 1;
        true
    }

    fn leave(&self) {
        let mut s = lock(&self.state);
        s.1 -= 1;
        if s.1 == 0 {
            self.idle.notify_all();
        }
    }

    /// Closes the gate and waits until no callback runs (unless called from one).
    fn close(&self) {
        let mut s = lock(&self.state);
        s.0 = true;
        if IN_CALLBACK.with(Cell::get) > 0 {
            return;
        }
        while s.1 > 0 {
            s = self.idle.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A subscription made through a handle.
struct Subscription {
    id: SubscriptionId,
    callback: usize,
    userdata: usize,
    gate: Arc<Gate>,
}

fn deliver(f: extern "C" fn(*mut c_void, *const batchdb_event), userdata: *mut c_void, ev: &Event) {
    let mut done = 0.0;
    let (kind, key, created, hash, message): (i32, _, i64, Option<CString>, Option<CString>) = match ev {
        Event::Create { key } => (BATCHDB_EVENT_CREATE, Some(key), 0, None, None),
        Event::Push { key, created } => (BATCHDB_EVENT_PUSH, Some(key), *created, None, None),
        Event::Start { key, created } => (BATCHDB_EVENT_START, Some(key), *created, None, None),
        Event::Result { key, created, hash } => {
            (BATCHDB_EVENT_RESULT, Some(key), *created, Some(c_string(&hash.to_string())), None)
        }
        Event::Fail { key, created, message } => {
            (BATCHDB_EVENT_FAIL, Some(key), *created, None, Some(c_string(message)))
        }
        Event::Progress { key, created, done: d, message } => {
            done = *d;
            (BATCHDB_EVENT_PROGRESS, Some(key), *created, None, Some(c_string(message)))
        }
        Event::Disconnected { message } => {
            (BATCHDB_EVENT_DISCONNECTED, None, 0, None, Some(c_string(message)))
        }
        Event::Reconnected { outage_ms } => {
            (BATCHDB_EVENT_RECONNECTED, None, i64::try_from(*outage_ms).unwrap_or(i64::MAX), None, None)
        }
    };
    let job = c_string(&key.map(ToString::to_string).unwrap_or_default());
    let c_ev = batchdb_event {
        kind,
        job: job.as_ptr(),
        created,
        hash: hash.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
        message: message.as_ref().map_or(std::ptr::null(), |m| m.as_ptr()),
        done,
    };
    IN_CALLBACK.with(|n| n.set(n.get() + 1));
    f(userdata, &c_ev);
    IN_CALLBACK.with(|n| n.set(n.get() - 1));
}

/// The subscriptions made through one database handle.
#[derive(Default)]
pub(crate) struct Subscriptions(Mutex<Vec<Subscription>>);

impl Subscriptions {
    /// Subscribes `callback` with `userdata` to the events of `db`.
    pub fn add(
        &self,
        db: &Db,
        callback: extern "C" fn(*mut c_void, *const batchdb_event),
        userdata: *mut c_void,
    ) {
        let gate = Arc::new(Gate::default());
        let (g, ud) = (gate.clone(), UserData(userdata));
        let id = db.subscribe(move |ev| {
            if g.enter() {
                deliver(callback, ud.get(), ev);
                g.leave();
            }
        });
        lock(&self.0).push(Subscription {
            id,
            callback: callback as usize,
            userdata: userdata as usize,
            gate,
        });
    }

    /// Ends every subscription of `callback` with `userdata`, waiting for their callbacks in
    /// flight; NotFound when there is none, Misuse from inside a callback.
    pub fn remove(
        &self,
        db: &Db,
        callback: extern "C" fn(*mut c_void, *const batchdb_event),
        userdata: *mut c_void,
    ) -> Result<(), Error> {
        if IN_CALLBACK.with(Cell::get) > 0 {
            return Err(Error::misuse("batchdb_unsubscribe called from an event callback"));
        }
        let ended: Vec<Subscription> = {
            let mut subs = lock(&self.0);
            let (ended, kept) = std::mem::take(&mut *subs)
                .into_iter()
                .partition(|s| s.callback == callback as usize && s.userdata == userdata as usize);
            *subs = kept;
            ended
        };
        if ended.is_empty() {
            return Err(Error::NotFound("no subscription with this callback and userdata".into()));
        }
        for s in ended {
            end(db, s);
        }
        Ok(())
    }

    /// Ends every subscription (for `batchdb_close`).
    pub fn end_all(&self, db: &Db) {
        let subs = std::mem::take(&mut *lock(&self.0));
        for s in subs {
            end(db, s);
        }
    }
}

fn end(db: &Db, s: Subscription) {
    db.unsubscribe(s.id);
    s.gate.close();
}
