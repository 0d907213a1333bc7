//! Cursors over jobs, pending instances, results and failures.

use super::error::{c_string, hex65};
use super::handles::{handle_out, into_raw, out, take, try_mut, try_ref, Castable};
use super::panic::{boundary, status};
use super::{batchdb, batchdb_cursor, batchdb_error, BATCHDB_DONE, BATCHDB_OK};
use super::{
    BATCHDB_LIST_FAIL, BATCHDB_LIST_JOB, BATCHDB_LIST_PENDING, BATCHDB_LIST_RESULT, BATCHDB_LIST_SCHEDULE,
};
use crate::{Cursor, Error, Hash, Lineage, ListKind, Row, ScheduleRow};
use std::ffi::{c_char, CString};

/// One listed row. Fields that do not apply to the row's kind are zero (or NULL).
///
/// `message` and `json` point into the cursor: they stay valid until the next
/// `batchdb_cursor_next` or `batchdb_cursor_free` on that cursor. Copy them to keep them.
#[repr(C)]
pub struct batchdb_row {
    /// `BATCHDB_LIST_*`: which kind of row this is.
    pub kind: i32,
    /// The job's key, 64 hex characters and a NUL (all kinds).
    pub job: [c_char; 65],
    /// The instance's `created`, epoch milliseconds (pending, result, fail; 0 for job rows).
    pub created: i64,
    /// Pending rows: 1 when a worker holds the instance, else 0. Job rows: how many of the
    /// job's instances are running.
    pub running: i32,
    /// Result rows: the output's hash, 64 hex characters and a NUL.
    pub hash: [c_char; 65],
    /// Result and fail rows: when the (last) attempt started, epoch ms.
    pub start: i64,
    /// Result and fail rows: when it ended, epoch ms.
    pub end: i64,
    /// Fail rows: how many times the instance was started.
    pub attempts: u32,
    /// Fail rows: the failure message; pending rows: the progress message while it runs and
    /// has reported some; schedule rows: the schedule's name. NUL-terminated, NULL otherwise.
    /// Owned by the cursor, valid until the next call on it.
    pub message: *const c_char,
    /// The row as one line of JSON, in the shape of the contract (for pending rows it also
    /// carries "priority" and "run_at" when a push set them). Owned by the cursor, valid until
    /// the next call on it.
    pub json: *const c_char,
    /// Pending and schedule rows: the queue's name, NUL-terminated ("default" when none was
    /// named); NULL for other kinds. Owned by the cursor, valid until the next call on it.
    pub queue: *const c_char,
    /// Pending rows: the progress fraction (0 to 1) a running instance last reported; -1 when
    /// it reported none or is not running, and for other kinds.
    pub progress: f64,
}

impl CursorHandle {
    fn new(source: Source) -> CursorHandle {
        CursorHandle { source, done: false, message: None, queue: None, json: CString::default() }
    }
}

/// What a `batchdb_cursor *` points to.
pub(crate) struct CursorHandle {
    source: Source,
    done: bool,
    message: Option<CString>,
    queue: Option<CString>,
    json: CString,
}

/// Where a cursor's rows come from: a paged listing, the schedules (few; read at once), or
/// the lines of a blob's lineage (`batchdb_why`, read at once).
enum Source {
    Rows(Cursor<Row>),
    Schedules(std::vec::IntoIter<ScheduleRow>),
    Lineage(std::vec::IntoIter<LineageLine>),
}

/// One row of `batchdb_why`: its kind, the job's key, the instance's `created` (0 for the job
/// line), the blob's hash for result lines, and the JSON line.
struct LineageLine {
    kind: i32,
    job: Hash,
    created: i64,
    hash: Option<Hash>,
    json: String,
}

/// A cursor over the lineage of the blob `hash`, as `Lineage::json_lines` writes it: the job
/// line first (when the blob is a payload), then one line per result row.
pub(crate) fn lineage_cursor(hash: &Hash, lineage: &Lineage) -> *mut batchdb_cursor {
    let mut rows = Vec::new();
    if lineage.job {
        rows.push((BATCHDB_LIST_JOB, *hash, 0, None));
    }
    for r in &lineage.results {
        rows.push((BATCHDB_LIST_RESULT, r.key, r.created, Some(*hash)));
    }
    let lines = lineage.json_lines(hash);
    debug_assert_eq!(lines.len(), rows.len());
    let lines: Vec<LineageLine> = rows
        .into_iter()
        .zip(lines)
        .map(|((kind, job, created, hash), json)| LineageLine { kind, job, created, hash, json })
        .collect();
    into_raw(CursorHandle::new(Source::Lineage(lines.into_iter())))
}

impl Castable for batchdb_cursor {
    type Rust = CursorHandle;
}

/// Lists rows of `kind` (`BATCHDB_LIST_JOB`, `_PENDING`, `_RESULT` or `_FAIL`). On success
/// `*out` receives a cursor that the caller owns and must release with `batchdb_cursor_free`;
/// on failure it is set to NULL. The cursor reads a page at a time, holding no transaction
/// between calls; a row present for the whole iteration is seen exactly once.
///
/// Returns `BATCHDB_OK`, or `BATCHDB_ERR_INVALID` (NULL `db`/`out`, unknown kind).
/// Thread-safe; the cursor itself must be used by one thread at a time.
#[no_mangle]
pub extern "C" fn batchdb_list(
    db: *mut batchdb,
    kind: i32,
    out: *mut *mut batchdb_cursor,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let out = handle_out(out)?;
        let h = try_ref(db, "db")?;
        let kind = match kind {
            BATCHDB_LIST_JOB => ListKind::Job,
            BATCHDB_LIST_PENDING => ListKind::Pending,
            BATCHDB_LIST_RESULT => ListKind::Result,
            BATCHDB_LIST_FAIL => ListKind::Fail,
            BATCHDB_LIST_SCHEDULE => {
                *out = into_raw(CursorHandle::new(Source::Schedules(h.db.schedules()?.into_iter())));
                return Ok(BATCHDB_OK);
            }
            k => return Err(Error::invalid(format!("list kind {k} is out of range (0 to 4)"))),
        };
        *out = into_raw(CursorHandle::new(Source::Rows(h.db.list(kind))));
        Ok(BATCHDB_OK)
    })
}

/// Fetches the next row into `*row`.
///
/// Returns `BATCHDB_OK` with `*row` filled; `BATCHDB_DONE` when there are no more rows (from
/// then on, always `BATCHDB_DONE`); `BATCHDB_ERR_INVALID` (NULL `c`/`row`);
/// `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`, `BATCHDB_ERR_CORRUPT` (after which the cursor is
/// done). Strings of the previous row become invalid.
#[no_mangle]
pub extern "C" fn batchdb_cursor_next(
    c: *mut batchdb_cursor,
    row: *mut batchdb_row,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_mut(c, "c")?;
        let row = out(row, "row")?;
        if h.done {
            return Ok(BATCHDB_DONE);
        }
        let next = match &mut h.source {
            Source::Rows(cursor) => cursor.next(),
            Source::Lineage(lines) => {
                let Some(l) = lines.next() else {
                    h.done = true;
                    return Ok(BATCHDB_DONE);
                };
                h.json = c_string(&l.json);
                h.message = None;
                h.queue = None;
                *row = batchdb_row {
                    kind: l.kind,
                    job: hex65(&l.job),
                    created: l.created,
                    running: 0,
                    hash: l.hash.as_ref().map_or([0; 65], hex65),
                    start: 0,
                    end: 0,
                    attempts: 0,
                    message: std::ptr::null(),
                    json: h.json.as_ptr(),
                    queue: std::ptr::null(),
                    progress: -1.0,
                };
                return Ok(BATCHDB_OK);
            }
            Source::Schedules(rows) => {
                let Some(s) = rows.next() else {
                    h.done = true;
                    return Ok(BATCHDB_DONE);
                };
                h.json = c_string(&serde_json::to_string(&s).unwrap_or_default());
                let message = h.message.insert(c_string(&s.name));
                let queue = h.queue.insert(c_string(&s.queue));
                *row = batchdb_row {
                    kind: BATCHDB_LIST_SCHEDULE,
                    job: hex65(&s.job),
                    created: s.next_run,
                    running: 0,
                    hash: [0; 65],
                    start: 0,
                    end: 0,
                    attempts: 0,
                    message: message.as_ptr(),
                    json: h.json.as_ptr(),
                    queue: queue.as_ptr(),
                    progress: -1.0,
                };
                return Ok(BATCHDB_OK);
            }
        };
        let next = match next {
            None => {
                h.done = true;
                return Ok(BATCHDB_DONE);
            }
            Some(Err(e)) => {
                h.done = true;
                return Err(e);
            }
            Some(Ok(r)) => r,
        };
        h.json = c_string(&next.to_json());
        h.message = None;
        h.queue = None;
        let mut filled = batchdb_row {
            kind: 0,
            job: [0; 65],
            created: 0,
            running: 0,
            hash: [0; 65],
            start: 0,
            end: 0,
            attempts: 0,
            message: std::ptr::null(),
            json: h.json.as_ptr(),
            queue: std::ptr::null(),
            progress: -1.0,
        };
        match &next {
            Row::Job(j) => {
                filled.kind = BATCHDB_LIST_JOB;
                filled.job = hex65(&j.key);
                filled.running = i32::try_from(j.running.len()).unwrap_or(i32::MAX);
            }
            Row::Pending(p) => {
                filled.kind = BATCHDB_LIST_PENDING;
                filled.job = hex65(&p.job);
                filled.created = p.created;
                filled.running = i32::from(p.running);
                let queue = h.queue.insert(c_string(p.queue.as_deref().unwrap_or(crate::DEFAULT_QUEUE)));
                filled.queue = queue.as_ptr();
                if let Some(progress) = &p.progress {
                    filled.progress = progress.done;
                    let message = h.message.insert(c_string(&progress.message));
                    filled.message = message.as_ptr();
                }
            }
            Row::Result(r) => {
                filled.kind = BATCHDB_LIST_RESULT;
                filled.job = hex65(&r.key);
                filled.created = r.created;
                filled.hash = hex65(&r.hash);
                filled.start = r.start;
                filled.end = r.end;
            }
            Row::Fail(f) => {
                filled.kind = BATCHDB_LIST_FAIL;
                filled.job = hex65(&f.key);
                filled.created = f.created;
                filled.start = f.start;
                filled.end = f.end;
                filled.attempts = f.attempts;
                let message = h.message.insert(c_string(&f.message));
                filled.message = message.as_ptr();
            }
        }
        *row = filled;
        Ok(BATCHDB_OK)
    })
}

/// Releases a cursor and the strings of its last row. NULL does nothing.
#[no_mangle]
pub extern "C" fn batchdb_cursor_free(c: *mut batchdb_cursor) {
    boundary(|_| (), || drop(take(c)))
}
