//! Opening and closing, creating and pushing jobs, and maintenance.

use super::error::{flag, hash_arg, hash_field, hex65};
use super::events::{batchdb_event_fn, Subscriptions};
use super::handles::{
    bytes, c_str, handle_out, into_raw, null, opt_array, opt_ref, struct_slice, take, try_ref, write_opt,
    Castable,
};
use super::panic::{boundary, status};
use super::{batchdb, batchdb_error, batchdb_options, batchdb_push_options, BATCHDB_OK};
use crate::{Db, Durability, Error, Options, Order, PushOptions, Pushed};
use std::ffi::{c_char, c_void, CStr};
use std::time::Duration;

/// What a `batchdb *` points to.
pub(crate) struct DbHandle {
    pub db: Db,
    /// Subscriptions made through this handle, ended by `batchdb_close`.
    pub subs: Subscriptions,
}

impl Castable for batchdb {
    type Rust = DbHandle;
}

fn options(o: Option<&batchdb_options>) -> Result<Options, Error> {
    let mut opts = Options::default();
    let Some(o) = o else { return Ok(opts) };
    if o.chunk_size != 0 {
        opts.chunk_size = o.chunk_size as usize;
    }
    opts.durability = match o.durability {
        0 => Durability::Full,
        1 => Durability::Normal,
        d => return Err(Error::invalid(format!("durability {d} is out of range (0 or 1)"))),
    };
    if o.lease_ms != 0 {
        opts.lease = Duration::from_millis(u64::from(o.lease_ms));
    }
    if o.max_attempts != 0 {
        opts.max_attempts = o.max_attempts;
    }
    opts.retry_errors = flag(o.retry_errors, "retry_errors")?;
    opts.order = match o.order {
        0 => Order::NewestFirst,
        1 => Order::OldestFirst,
        v => return Err(Error::invalid(format!("order {v} is out of range (0 or 1)"))),
    };
    Ok(opts)
}

pub(crate) fn push_options(o: Option<&batchdb_push_options>) -> Result<PushOptions, Error> {
    let Some(o) = o else { return Ok(PushOptions::default()) };
    let delay = u64::try_from(o.delay_ms)
        .map_err(|_| Error::invalid(format!("delay_ms {} is negative", o.delay_ms)))?;
    let opts = PushOptions {
        priority: o.priority,
        delay: Duration::from_millis(delay),
        queue: name_arg(c_str(o.queue), "queue")?.filter(|q| !q.is_empty()).map(str::to_string),
        unique: flag(o.unique, "unique")?,
        memo: flag(o.memo, "memo")?,
        after: struct_slice(o.after, o.after_len, "after")?
            .iter()
            .enumerate()
            .map(|(i, up)| hash_field(&up.key, &format!("after[{i}].key")).map(|key| (key, up.created)))
            .collect::<Result<_, _>>()?,
    };
    opts.validate()?;
    Ok(opts)
}

/// The `cached_out` of optional push options (NULL when there are none).
pub(crate) fn cached_out(o: *const batchdb_push_options) -> *mut c_char {
    opt_ref(o).map_or(std::ptr::null_mut(), |o| o.cached_out)
}

/// Writes a push's outputs: `created` to `created_out`, and to `cached` (a `cached_out`) the
/// reused result's hash of a memo hit, else "". Either pointer may be NULL.
pub(crate) fn write_pushed(created_out: *mut i64, cached: *mut c_char, pushed: &Pushed) {
    write_opt(created_out, pushed.created);
    match &pushed.cached {
        Some(hash) => write_hex(cached, hash),
        None => clear_hex(cached),
    }
}

/// Writes "" to a caller's `char[65]` (when not NULL).
pub(crate) fn clear_hex(dst: *mut c_char) {
    if let Some(dst) = opt_array(dst, 65) {
        dst[0] = 0;
    }
}

/// An optional NUL-terminated UTF-8 name (a queue's, a schedule's).
pub(crate) fn name_arg<'a>(s: Option<&'a CStr>, what: &str) -> Result<Option<&'a str>, Error> {
    s.map(|s| s.to_str().map_err(|_| Error::invalid(format!("{what} is not UTF-8")))).transpose()
}

/// A required name.
fn required_name<'a>(s: *const c_char, what: &str) -> Result<&'a str, Error> {
    name_arg(c_str(s), what)?.ok_or_else(|| null(what))
}

/// `n` NUL-terminated queue names at `queues` (NULL with 0: none).
pub(crate) fn queue_list(queues: *const *const c_char, n: usize) -> Result<Vec<String>, Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let ptrs = super::handles::ptr_slice(queues, n, "queues")?;
    ptrs.iter().map(|&p| required_name(p, "queue name").map(str::to_string)).collect()
}

pub(crate) fn path_arg(path: Option<&CStr>) -> Result<std::path::PathBuf, Error> {
    let path = path.ok_or_else(|| null("path"))?;
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(path.to_bytes()).into())
    }
    #[cfg(not(unix))]
    {
        Ok(path.to_str().map_err(|_| Error::invalid("path is not UTF-8"))?.into())
    }
}

/// Opens the database at `path`, creating it when the file is missing or empty.
///
/// `opts` may be NULL for the defaults; zero fields take their defaults too. On success
/// `*out` receives a new handle that the caller owns and must release with `batchdb_close`.
/// On failure `*out` is set to NULL.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL `path`/`out`, an option out of range,
/// or a file that is not a batchdb database or has a newer schema (the file is left
/// unchanged); `BATCHDB_ERR_IO` when the file cannot be opened or created.
///
/// Thread-safe. The handle may be used from many threads at once; many processes may open
/// the same file.
#[no_mangle]
pub extern "C" fn batchdb_open(
    path: *const c_char,
    opts: *const batchdb_options,
    out: *mut *mut batchdb,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let out = handle_out(out)?;
        let path = path_arg(c_str(path))?;
        let db = Db::open(&path, options(opt_ref(opts))?)
            .map_err(|e| e.context(format!("opening {}", crate::redact(&path.to_string_lossy()))))?;
        *out = into_raw(DbHandle { db, subs: Subscriptions::default() });
        Ok(BATCHDB_OK)
    })
}

/// Releases a handle from `batchdb_open`. NULL does nothing.
///
/// Every subscription made through this handle ends first: once this returns, no event
/// callback of it runs or will run (so it must not be called from inside one). Writers,
/// readers, cursors and jobs opened from the handle keep the database open internally and stay
/// memory-safe, but finish or free them before closing anyway: a held job is only released
/// (back to pending) when it is freed.
///
/// No other call may be using `db` while it is closed, and `db` must not be used afterwards.
/// To end a `batchdb_run` in another thread, call `batchdb_stop` and wait for it to return
/// first.
#[no_mangle]
pub extern "C" fn batchdb_close(db: *mut batchdb) {
    boundary(
        |_| (),
        || {
            if let Some(handle) = take(db) {
                handle.subs.end_all(&handle.db);
            }
        },
    )
}

/// Writes a key or hash, NUL-terminated, to a caller's `char[65]` (when not NULL).
pub(crate) fn write_hex(dst: *mut c_char, h: &crate::Hash) {
    if let Some(dst) = opt_array(dst, 65) {
        dst.copy_from_slice(&hex65(h));
    }
}

/// Writes an add's outputs: the key to `key_out` and `created` to `created_out`, either of
/// which may be NULL.
pub(crate) fn write_added(
    key_out: *mut c_char,
    created_out: *mut i64,
    (key, created): (crate::Hash, i64),
) -> i32 {
    write_hex(key_out, &key);
    write_opt(created_out, created);
    BATCHDB_OK
}

/// Stores `len` bytes at `data` as a job payload and registers the job (event create).
///
/// `data` may be NULL when `len` is 0 (an empty payload). On success the key (64 lowercase
/// hex characters and a NUL) is written to `key_out`, which may be NULL when not wanted. The
/// same payload always gives the same key and one job. The bytes are copied; the caller keeps
/// ownership of `data`.
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL `db`, NULL `data` with `len` > 0),
/// `BATCHDB_ERR_IO` or `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_create(
    db: *mut batchdb,
    data: *const u8,
    len: usize,
    key_out: *mut c_char,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let payload = bytes(data, len, "data")?;
        let key = h.db.create(payload)?;
        write_hex(key_out, &key);
        Ok(BATCHDB_OK)
    })
}

/// `batchdb_create` and `batchdb_push` in one transaction (events create, push).
///
/// On success the key goes to `key_out` and the new instance's `created` (epoch milliseconds,
/// unique in the file) to `created_out`; either may be NULL when not wanted. `data` may be
/// NULL when `len` is 0. The bytes are copied.
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID`, `BATCHDB_ERR_IO` or `BATCHDB_ERR_BUSY`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_add(
    db: *mut batchdb,
    data: *const u8,
    len: usize,
    key_out: *mut c_char,
    created_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    batchdb_add_with(db, data, len, std::ptr::null(), key_out, created_out, err)
}

/// `batchdb_add` with push options: a priority, a delay, a queue, `unique`, `memo` and
/// upstreams (`after`). `opts` may be NULL for the defaults (as `batchdb_add`).
///
/// `created_out` gets the new instance's `created`; for a `unique` or `memo` push that found
/// a live instance, that instance's; for a memo push that found a result, the newest result's
/// (and `opts->cached_out` its output hash). A push with an upstream that is a fail row already
/// succeeds: the new instance is a fail row at once (`upstream K C failed`; event fail).
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for a bad option (negative `delay_ms`, a
/// malformed queue name, `unique`/`memo` not 0 or 1, NULL `after` with `after_len` > 0, a
/// malformed upstream key), checked before the payload is stored; `BATCHDB_ERR_NOT_FOUND` for
/// an unknown upstream instance (no job or instance is added); `BATCHDB_ERR_IO`,
/// `BATCHDB_ERR_BUSY`. Ownership as `batchdb_add`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_add_with(
    db: *mut batchdb,
    data: *const u8,
    len: usize,
    opts: *const batchdb_push_options,
    key_out: *mut c_char,
    created_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let cached = cached_out(opts);
        clear_hex(cached);
        let h = try_ref(db, "db")?;
        let payload = bytes(data, len, "data")?;
        let opts = push_options(opt_ref(opts))?;
        let (key, pushed) = h.db.add_with(payload, &opts)?;
        write_pushed(created_out, cached, &pushed);
        write_hex(key_out, &key);
        Ok(BATCHDB_OK)
    })
}

/// Queues a new instance of the job `key` (64 hex characters, NUL-terminated); event push.
///
/// On success its `created` goes to `created_out` (may be NULL).
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL `db`/`key` or a malformed key;
/// `BATCHDB_ERR_NOT_FOUND` for an unknown job; `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_push(
    db: *mut batchdb,
    key: *const c_char,
    created_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    batchdb_push_with(db, key, std::ptr::null(), created_out, err)
}

/// `batchdb_push` with push options: a priority (higher runs first), a delay (not claimed
/// before `created + delay_ms`), a queue, `unique`, `memo` and upstreams (`after`). `opts` may
/// be NULL for the defaults.
///
/// `created_out` gets the new instance's `created`; for a `unique` or `memo` push that found
/// a live instance, that instance's; for a memo push that found a result, the newest result's
/// (and `opts->cached_out` its output hash; "" otherwise). A push with an upstream that is a
/// fail row already succeeds: the new instance is a fail row at once (`upstream K C failed`;
/// event fail).
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL `db`/`key`, a malformed key or a bad
/// option (see `batchdb_add_with`); `BATCHDB_ERR_NOT_FOUND` for an unknown job or upstream
/// instance (nothing queued); `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_push_with(
    db: *mut batchdb,
    key: *const c_char,
    opts: *const batchdb_push_options,
    created_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let cached = cached_out(opts);
        clear_hex(cached);
        let h = try_ref(db, "db")?;
        let key = hash_arg(c_str(key), "key")?;
        let opts = push_options(opt_ref(opts))?;
        let pushed = h.db.push_with(&key, &opts)?;
        write_pushed(created_out, cached, &pushed);
        Ok(BATCHDB_OK)
    })
}

/// Sets the most instances of `queue` that may run at once, counting every process and
/// handle on the database (the limit is stored in it); `n` = 0 removes the limit.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL `db`/`queue`, a malformed queue name
/// or `n` below 0 or above 4294967295 (nothing changed); `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_limit(
    db: *mut batchdb,
    queue: *const c_char,
    n: i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let queue = required_name(queue, "queue")?;
        let n = u32::try_from(n).map_err(|_| {
            Error::invalid(format!("limit {n} for queue {queue:?} is out of range (0 to 4294967295)"))
        })?;
        h.db.limit(queue, n)?;
        Ok(BATCHDB_OK)
    })
}

/// Pauses `queue`: no claim in any process takes its instances until `batchdb_resume`;
/// running ones finish, and pushes still queue. Stored in the database.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL, malformed name); `BATCHDB_ERR_IO`,
/// `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_pause(db: *mut batchdb, queue: *const c_char, err: *mut batchdb_error) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        h.db.pause(required_name(queue, "queue")?)?;
        Ok(BATCHDB_OK)
    })
}

/// Resumes a paused queue (a queue that is not paused stays so). Codes as `batchdb_pause`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_resume(db: *mut batchdb, queue: *const c_char, err: *mut batchdb_error) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        h.db.resume(required_name(queue, "queue")?)?;
        Ok(BATCHDB_OK)
    })
}

/// Creates or replaces the recurring schedule `name`: `len` bytes at `data` are stored as a
/// job, and each slot of `spec` pushes one instance of it with `opts`' queue and priority
/// (`opts` may be NULL; a delay, `unique`, `memo` or `after` in it is `BATCHDB_ERR_INVALID`,
/// and `cached_out` is not written), however many processes run. `spec` is `every DURATION` (`500ms`,
/// `30s`, `15m`, `2h`, `7d`: slots are the multiples of it since the Unix epoch) or a 5-field
/// cron expression in UTC. The job's key goes to `key_out` and the first slot (epoch ms) to
/// `next_run_out`; either may be NULL.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL arguments, a malformed name, spec or
/// queue (nothing stored); `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn batchdb_schedule(
    db: *mut batchdb,
    name: *const c_char,
    spec: *const c_char,
    data: *const u8,
    len: usize,
    opts: *const batchdb_push_options,
    key_out: *mut c_char,
    next_run_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let name = required_name(name, "name")?;
        let spec = required_name(spec, "spec")?;
        let payload = bytes(data, len, "data")?;
        let opts = push_options(opt_ref(opts))?;
        let row = h.db.schedule(name, spec, payload, &opts)?;
        write_hex(key_out, &row.job);
        write_opt(next_run_out, row.next_run);
        Ok(BATCHDB_OK)
    })
}

/// Removes the schedule `name`; instances it already pushed stay.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL, malformed name);
/// `BATCHDB_ERR_NOT_FOUND` for an unknown schedule; `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_unschedule(db: *mut batchdb, name: *const c_char, err: *mut batchdb_error) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        h.db.unschedule(required_name(name, "name")?)?;
        Ok(BATCHDB_OK)
    })
}

/// Where the blob `hash` (64 hex characters, NUL-terminated) came from, as a cursor over the
/// lines of the contract's lineage (`batchdb why`). On success `*out` receives a cursor that
/// the caller owns and must release with `batchdb_cursor_free`; on failure it is set to NULL.
///
/// Read it with `batchdb_cursor_next`: first, when the blob is a job's payload, a row of kind
/// `BATCHDB_LIST_JOB` with `job` = the hash and `json` `{"job": K}`; then one row of kind
/// `BATCHDB_LIST_RESULT` per result row whose output it is, with `job` = K, `created` = C,
/// `hash` = the blob's hash and `json` `{"result": [K, C], "after": [[K2, C2], ...]}` (the
/// upstream instances it waited for; `after` is always present, maybe empty). Other fields
/// are zero or NULL. The lineage is read when this is called: the rows are a snapshot.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL `db`/`hash`/`out` or a malformed
/// hash; `BATCHDB_ERR_NOT_FOUND` when the database does not hold the blob; `BATCHDB_ERR_IO`,
/// `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_why(
    db: *mut batchdb,
    hash: *const c_char,
    out: *mut *mut super::batchdb_cursor,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let out = handle_out(out)?;
        let h = try_ref(db, "db")?;
        let hash = hash_arg(c_str(hash), "hash")?;
        let lineage = h.db.why(&hash)?;
        *out = super::list::lineage_cursor(&hash, &lineage);
        Ok(BATCHDB_OK)
    })
}

/// Re-queues the failed instance `(key, created)` as a new instance and removes its fail
/// row; event push. The new `created` goes to `created_out` (may be NULL).
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL, malformed key);
/// `BATCHDB_ERR_NOT_FOUND` when there is no such fail row; `BATCHDB_ERR_IO`,
/// `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_retry(
    db: *mut batchdb,
    key: *const c_char,
    created: i64,
    created_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let key = hash_arg(c_str(key), "key")?;
        let new = h.db.retry(&key, created)?;
        write_opt(created_out, new);
        Ok(BATCHDB_OK)
    })
}

/// Removes the pending instance `(key, created)`, which must not be running. The job and its
/// payload stay.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL, malformed key);
/// `BATCHDB_ERR_NOT_FOUND` for an unknown instance; `BATCHDB_ERR_BUSY` when it is running;
/// `BATCHDB_ERR_IO`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_cancel(
    db: *mut batchdb,
    key: *const c_char,
    created: i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let key = hash_arg(c_str(key), "key")?;
        h.db.cancel(&key, created)?;
        Ok(BATCHDB_OK)
    })
}

/// Removes the result and fail rows whose `end` is before `older_than_ms` (epoch
/// milliseconds); how many goes to `rows_removed` (may be NULL). A following `batchdb_gc`
/// reclaims their blobs.
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL `db`), `BATCHDB_ERR_IO`,
/// `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_prune(
    db: *mut batchdb,
    older_than_ms: i64,
    rows_removed: *mut u64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let n = h.db.prune(older_than_ms)?;
        write_opt(rows_removed, n);
        Ok(BATCHDB_OK)
    })
}

/// Removes blobs that no job or result references, and leftovers of interrupted writes;
/// the number of blobs removed goes to `blobs_removed` (may be NULL). Blobs being written
/// are kept.
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL `db`), `BATCHDB_ERR_IO`,
/// `BATCHDB_ERR_BUSY`. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_gc(db: *mut batchdb, blobs_removed: *mut u64, err: *mut batchdb_error) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let report = h.db.gc()?;
        write_opt(blobs_removed, report.blobs_removed);
        Ok(BATCHDB_OK)
    })
}

/// Makes every `batchdb_run` on this database handle, in any thread, return `BATCHDB_OK`
/// once its workers have finished the jobs they hold. Runs started after this call are not
/// affected. NULL does nothing. Thread-safe; may be called from a run callback.
#[no_mangle]
pub extern "C" fn batchdb_stop(db: *mut batchdb) {
    boundary(
        |_| (),
        || {
            if let Ok(h) = try_ref(db, "db") {
                h.db.stop();
            }
        },
    )
}

/// The library's version, e.g. "0.1.0": a static NUL-terminated string that the caller must
/// not free. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    boundary(|_| std::ptr::null(), || VERSION.as_ptr().cast())
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
        h.subs.add(&h.db, r#fn.ok_or_else(|| null("fn"))?, userdata);
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
        h.subs.remove(&h.db, r#fn.ok_or_else(|| null("fn"))?, userdata)?;
        Ok(BATCHDB_OK)
    })
}
