//! The run loop, with a C function as the runner.

use super::error::flag;
use super::handles::{borrow_raw, null, opt_ref, try_ref, UserData};
use super::job::JobHandle;
use super::panic::status;
use super::{batchdb, batchdb_error, batchdb_job, batchdb_run_options, BATCHDB_OK};
use crate::RunOptions;
use std::ffi::c_void;

/// Runs one claimed instance for `batchdb_run`, on a worker thread.
///
/// `job` is borrowed: valid only during this call. The runner may read its payload with
/// `batchdb_job_read`, write output with `batchdb_job_write`, and ask `batchdb_job_key` and
/// `batchdb_job_created`; `batchdb_job_complete`/`batchdb_job_fail` on it return
/// `BATCHDB_ERR_MISUSE` and do nothing. `fail_out` is zeroed before the call.
///
/// Return 0 to complete the instance with the output written. Return non-zero to fail it with
/// `fail_out->message` (NUL-terminated UTF-8) as the fail row's message; when that message is
/// empty it is "runner returned N". `userdata` is passed through unchanged.
pub type batchdb_run_fn =
    Option<extern "C" fn(userdata: *mut c_void, job: *mut batchdb_job, fail_out: *mut batchdb_error) -> i32>;

fn message_of(fail: &batchdb_error, rc: i32) -> String {
    let bytes: Vec<u8> = fail.message.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    if bytes.is_empty() {
        format!("runner returned {rc}")
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Processes the queue on worker threads: each claims an instance, calls `fn` with it, and
/// completes the instance when `fn` returns 0 or fails it when `fn` returns non-zero. The loop
/// goes on either way. `fn` is called concurrently from up to `workers` threads, never from
/// the calling thread; `userdata` must be safe to use from them.
///
/// `opts` may be NULL: one worker, waiting for new work until stopped. `workers` 0 means 1.
/// With `until_empty` 1 it returns once nothing is pending, waiting or running; with 0 it
/// waits for new work, also from other processes, until `batchdb_stop` is called.
///
/// Returns `BATCHDB_OK` when the run ended (empty, or stopped); `BATCHDB_ERR_INVALID` (NULL
/// `db`/`fn`, `workers` above 1024, `until_empty` not 0 or 1); `BATCHDB_ERR_IO` or
/// `BATCHDB_ERR_CORRUPT` when the queue itself could not be read or written. A lost connection
/// to a server is not such an error: the workers wait and try again until it is back or the run
/// is stopped, and subscribers get `BATCHDB_EVENT_DISCONNECTED` and `BATCHDB_EVENT_RECONNECTED`;
/// an instance finished meanwhile is completed or failed once the server is back (fenced: never
/// twice), and a lost connection never makes a fail row. Blocks the calling thread until then.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_run(
    db: *mut batchdb,
    opts: *const batchdb_run_options,
    r#fn: batchdb_run_fn,
    userdata: *mut c_void,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let runner = r#fn.ok_or_else(|| null("fn"))?;
        let opts = match opt_ref(opts) {
            None => RunOptions { workers: 1, until_empty: false, ..Default::default() },
            Some(o) => RunOptions {
                workers: (o.workers as usize).max(1),
                until_empty: flag(o.until_empty, "until_empty")?,
                queues: super::db::queue_list(o.queues, o.queues_len)?,
            },
        };
        let db = h.db.clone();
        let userdata = UserData(userdata);
        db.run(opts, |job| {
            let mut handle = JobHandle::lend(job);
            let mut fail = batchdb_error { code: 0, message: [0; 512] };
            let rc = runner(userdata.get(), borrow_raw(&mut handle), &mut fail);
            if rc == 0 {
                Ok(())
            } else {
                Err(message_of(&fail, rc))
            }
        })?;
        Ok(BATCHDB_OK)
    })
}

/// Blocks until something may be claimable, for callers that drive `batchdb_claim`
/// themselves (bindings whose event loop must not run `batchdb_run`): an instance is ready,
/// this handle pushed or finished something, a delay, backoff or lease runs out, another
/// process committed, or `batchdb_stop` was called.
///
/// Returns `BATCHDB_OK` when work may be available (a following claim can still find
/// nothing: another worker may take it first), `BATCHDB_DONE` when `timeout_ms` passed
/// first, `BATCHDB_ERR_INVALID` for a NULL `db`, `BATCHDB_ERR_IO` when the file could not be
/// read. An idle wait polls the file about ten times a second and costs well under 1% of a
/// core. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_wait(db: *mut batchdb, timeout_ms: u32, err: *mut batchdb_error) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let woke = h.db.wait_for_work(std::time::Duration::from_millis(u64::from(timeout_ms)))?;
        Ok(if woke { BATCHDB_OK } else { super::BATCHDB_DONE })
    })
}

/// `batchdb_wait` for a claimer of the `queues_len` queues named at `queues` only
/// (NUL-terminated names; NULL with 0: every queue, as `batchdb_wait`), as `batchdb_claim_from`
/// takes them: work that is ready in other queues does not wake it, so a binding that claims
/// from some queues only can wait without spinning.
///
/// Returns as `batchdb_wait`, and `BATCHDB_ERR_INVALID` for a NULL or malformed queue name (or
/// NULL `queues` with `queues_len` > 0). Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_wait_from(
    db: *mut batchdb,
    queues: *const *const std::ffi::c_char,
    queues_len: usize,
    timeout_ms: u32,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let queues = super::db::queue_list(queues, queues_len)?;
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
        let woke = h.db.wait_for_work_from(&queues, timeout)?;
        Ok(if woke { BATCHDB_OK } else { super::BATCHDB_DONE })
    })
}

/// Whether a run serving the `queues_len` queues named at `queues` (NULL with 0: every queue)
/// with `until_empty` would end now: nothing is ready in a served queue that is not paused,
/// and nothing is running, delayed, backing off or waiting for an upstream. The rule
/// `batchdb_run` itself ends by, for bindings that drive `batchdb_claim_from` themselves.
/// `*idle_out` receives 1 (idle) or 0.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL `db`/`idle_out` or a malformed queue
/// name; `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_is_idle(
    db: *mut batchdb,
    queues: *const *const std::ffi::c_char,
    queues_len: usize,
    idle_out: *mut i32,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let out = super::handles::out(idle_out, "idle_out")?;
        let queues = super::db::queue_list(queues, queues_len)?;
        *out = i32::from(h.db.is_idle(&queues)?);
        Ok(BATCHDB_OK)
    })
}
