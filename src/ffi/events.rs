//! Event subscriptions with a C callback.

use super::db::DbHandle;
use super::error::{c_string, null};
use super::handles::{try_ref, UserData};
use super::panic::status;
use super::BATCHDB_EVENT_START;
use super::{batchdb, batchdb_error, BATCHDB_OK};
use super::{BATCHDB_EVENT_CREATE, BATCHDB_EVENT_FAIL, BATCHDB_EVENT_PUSH, BATCHDB_EVENT_RESULT};
use crate::sync::lock;
use crate::{Error, Event, SubscriptionId};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Condvar, Mutex};

/// One event, as passed to a `batchdb_event_fn`. Every pointer in it (and the event itself)
/// is valid only during the callback; copy what you need.
#[repr(C)]
pub struct batchdb_event {
    /// `BATCHDB_EVENT_*`.
    pub kind: i32,
    /// The job's key, 64 hex characters, NUL-terminated (every kind).
    pub job: *const c_char,
    /// The instance's `created` (push, start, result, fail; 0 for create).
    pub created: i64,
    /// Result events: the output's hash; NULL for other kinds.
    pub hash: *const c_char,
    /// Fail events: the fail row's message; NULL for other kinds.
    pub message: *const c_char,
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
pub(crate) struct Subscription {
    id: SubscriptionId,
    callback: usize,
    userdata: usize,
    gate: Arc<Gate>,
}

fn deliver(f: extern "C" fn(*mut c_void, *const batchdb_event), userdata: *mut c_void, ev: &Event) {
    let (kind, key, created, hash, message): (i32, _, i64, Option<CString>, Option<CString>) = match ev {
        Event::Create { key } => (BATCHDB_EVENT_CREATE, key, 0, None, None),
        Event::Push { key, created } => (BATCHDB_EVENT_PUSH, key, *created, None, None),
        Event::Start { key, created } => (BATCHDB_EVENT_START, key, *created, None, None),
        Event::Result { key, created, hash } => {
            (BATCHDB_EVENT_RESULT, key, *created, Some(c_string(&hash.to_string())), None)
        }
        Event::Fail { key, created, message } => {
            (BATCHDB_EVENT_FAIL, key, *created, None, Some(c_string(message)))
        }
    };
    let job = c_string(&key.to_string());
    let c_ev = batchdb_event {
        kind,
        job: job.as_ptr(),
        created,
        hash: hash.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
        message: message.as_ref().map_or(std::ptr::null(), |m| m.as_ptr()),
    };
    IN_CALLBACK.with(|n| n.set(n.get() + 1));
    f(userdata, &c_ev);
    IN_CALLBACK.with(|n| n.set(n.get() - 1));
}

/// Calls `fn(userdata, ev)` for every event of this database handle: create, push, start,
/// result and fail (a failure that is re-queued by `retry_errors` is not a fail event).
/// Events of other handles or processes are not seen.
///
/// The subscription lasts until `batchdb_unsubscribe` with the same `fn` and `userdata`, or
/// `batchdb_close`. `userdata` must stay valid and be usable from any thread until then.
///
/// Returns `BATCHDB_OK` or `BATCHDB_ERR_INVALID` (NULL `db`/`fn`). Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_subscribe(
    db: *mut batchdb,
    r#fn: batchdb_event_fn,
    userdata: *mut c_void,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h: &DbHandle = try_ref(db, "db")?;
        let callback = r#fn.ok_or_else(|| null("fn"))?;
        let gate = Arc::new(Gate::default());
        let (g, ud) = (gate.clone(), UserData(userdata));
        let id = h.db.subscribe(move |ev| {
            if g.enter() {
                deliver(callback, ud.get(), ev);
                g.leave();
            }
        });
        lock(&h.subs).push(Subscription {
            id,
            callback: callback as usize,
            userdata: userdata as usize,
            gate,
        });
        Ok(BATCHDB_OK)
    })
}

/// Extension to the contract: ends every subscription of this handle made with this `fn` and
/// `userdata`. When it returns, no callback of theirs is running or will run, so `userdata` may
/// be freed.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL `db`/`fn`); `BATCHDB_ERR_NOT_FOUND` when
/// there is no such subscription; `BATCHDB_ERR_MISUSE` when called from inside an event
/// callback (it would wait for itself). Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_unsubscribe(
    db: *mut batchdb,
    r#fn: batchdb_event_fn,
    userdata: *mut c_void,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h: &DbHandle = try_ref(db, "db")?;
        let callback = r#fn.ok_or_else(|| null("fn"))? as usize;
        if IN_CALLBACK.with(Cell::get) > 0 {
            return Err(Error::misuse("batchdb_unsubscribe called from an event callback"));
        }
        let ended: Vec<Subscription> = {
            let mut subs = lock(&h.subs);
            let (ended, kept) = std::mem::take(&mut *subs)
                .into_iter()
                .partition(|s| s.callback == callback && s.userdata == userdata as usize);
            *subs = kept;
            ended
        };
        if ended.is_empty() {
            return Err(Error::NotFound("no subscription with this callback and userdata".into()));
        }
        for s in ended {
            end(h, s);
        }
        Ok(BATCHDB_OK)
    })
}

fn end(h: &DbHandle, s: Subscription) {
    h.db.unsubscribe(s.id);
    s.gate.close();
}

/// Ends every subscription made through `h` (for `batchdb_close`).
pub(crate) fn unsubscribe_all(h: &DbHandle) {
    let subs = std::mem::take(&mut *lock(&h.subs));
    for s in subs {
        end(h, s);
    }
}
