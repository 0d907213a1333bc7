//! The counters of a write transaction: the totals `stats` reports for the history tables
//! (jobs, published blobs and their bytes, result and fail rows), and the two id counters
//! (the last blob id and the last `created` value handed out). All live in one row, `counter`,
//! written once, just before `COMMIT` (`conn::Conns::run_batch`), with one `UPDATE`.
//!
//! Totals: kept so that `stats` reads them instead of counting millions of rows. Not
//! triggers: a trigger runs a sub-program and an `UPDATE` for every row it counts (measured:
//! +24% instructions an add). Each statement that changes a total notes its change here, in
//! the writer thread, and the writer adds the whole transaction's change at its end. An
//! operation rolled back to its savepoint has its notes dropped with it. `check` compares the
//! kept totals with the tables, so a statement that forgot to note its change is found by
//! every test that checks a file.
//!
//! Ids: a transaction reads the counters at its first id (or not at all, see below), hands
//! ids out from memory, and writes the last ones back with the totals. Taking an id was an
//! `UPDATE` and a `SELECT` of its own, two of the six statements of an `add` against the
//! file's counters and a fifth of its instructions. The writer remembers the ids it
//! committed with the file's `PRAGMA data_version`, which changes only when another
//! connection (another process, or another handle) commits: while it is unchanged, the
//! remembered ids are the file's and nothing is read. A failed operation's ids are handed
//! out again (its savepoint is rolled back), so ids stay without gaps, as before.

use super::errors::SqlResult;
use super::schema::{counters_update, COUNTERS_READ, COUNTER_COLUMNS, DATA_VERSION};
use crate::error::{Error, Result};
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use std::cell::Cell;
use std::sync::OnceLock;

/// A change to the kept totals. Published blobs are counted as jobs and others (a job is
/// always published), so that a new job changes two totals, not three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub jobs: i64,
    pub others: i64,
    pub blob_bytes: i64,
    pub results: i64,
    pub fails: i64,
}

impl Tally {
    pub fn add(&mut self, o: Tally) {
        self.jobs += o.jobs;
        self.others += o.others;
        self.blob_bytes += o.blob_bytes;
        self.results += o.results;
        self.fails += o.fails;
    }
}

/// The last blob id and the last `created` value handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub last_blob: i64,
    pub last_created: i64,
}

/// Ids the writer committed, and the file's `data_version` they belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    ids: Ids,
    version: i64,
}

/// The ids of the write transaction this thread leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdState {
    /// No write transaction (taking an id is then an internal error).
    Closed,
    /// None taken yet; the writer's remembered ids, if any.
    Unread(Option<Known>),
    /// Taken: what the file held at the transaction's start, and the ids now.
    Read { at_start: Known, now: Ids },
}

thread_local! {
    /// The running operation's change. Write closures run on the thread that leads the
    /// batch, one at a time, so a thread-local is the operation's.
    static OP: Cell<Tally> = const { Cell::new(Tally { jobs: 0, others: 0, blob_bytes: 0, results: 0, fails: 0 }) };
    /// The transaction's ids: the batch's leader opens and closes them around it.
    static IDS: Cell<IdState> = const { Cell::new(IdState::Closed) };
}

/// Notes a change made by the running write operation.
pub(crate) fn note(f: impl FnOnce(&mut Tally)) {
    OP.with(|c| {
        let mut t = c.get();
        f(&mut t);
        c.set(t);
    })
}

/// Takes what the running operation noted, leaving nothing.
pub(crate) fn take() -> Tally {
    OP.with(|c| c.replace(Tally::default()))
}

/// Opens the ids of a write transaction on this thread, with what the writer remembers.
pub(crate) fn open(known: Option<Known>) {
    IDS.with(|c| c.set(IdState::Unread(known)));
}

/// Where the ids stand, to go back to when an operation is rolled back to its savepoint.
pub(crate) fn mark() -> IdState {
    IDS.with(|c| c.get())
}

/// Goes back to a [`mark`].
pub(crate) fn restore(m: IdState) {
    IDS.with(|c| c.set(m));
}

/// Closes the transaction's ids; what the writer may remember once it has committed.
pub(crate) fn close() -> Option<Known> {
    match IDS.with(|c| c.replace(IdState::Closed)) {
        IdState::Closed => None,
        IdState::Unread(known) => known,
        IdState::Read { at_start, now } => Some(Known { ids: now, version: at_start.version }),
    }
}

/// The transaction's ids, read from the file at the first one taken unless the writer's
/// remembered ids are still the file's.
fn ids(c: &Connection) -> Result<(Known, Ids)> {
    match IDS.with(|c| c.get()) {
        IdState::Closed => {
            Err(Error::Panic("internal error: an id taken outside a write transaction".into()))
        }
        IdState::Read { at_start, now } => Ok((at_start, now)),
        IdState::Unread(known) => {
            let version: i64 = c.prepare_cached(DATA_VERSION).sql()?.query_row([], |r| r.get(0)).sql()?;
            let at_start = match known {
                Some(k) if k.version == version => k,
                _ => {
                    let ids = c
                        .prepare_cached(COUNTERS_READ)
                        .sql()?
                        .query_row([], |r| Ok(Ids { last_blob: r.get(0)?, last_created: r.get(1)? }))
                        .optional()
                        .sql()?
                        .ok_or_else(missing)?;
                    Known { ids, version }
                }
            };
            Ok((at_start, at_start.ids))
        }
    }
}

fn set(at_start: Known, now: Ids) {
    IDS.with(|c| c.set(IdState::Read { at_start, now }));
}

/// Takes `n` new blob ids; returns the first.
pub(crate) fn next_blob(c: &Connection, n: i64) -> Result<i64> {
    let (at_start, mut now) = ids(c)?;
    let first = now.last_blob + 1;
    now.last_blob += n;
    set(at_start, now);
    Ok(first)
}

/// Gives back blob id `id`, taken and not used, when it is the last one taken.
pub(crate) fn give_back_blob(id: i64) {
    if let IdState::Read { at_start, mut now } = IDS.with(|c| c.get()) {
        if now.last_blob == id {
            now.last_blob -= 1;
            set(at_start, now);
        }
    }
}

/// Takes `n` consecutive `created` values, none below `now_ms`; returns the first.
pub(crate) fn next_created(c: &Connection, now_ms: i64, n: i64) -> Result<i64> {
    let (at_start, mut now) = ids(c)?;
    let first = (now.last_created + 1).max(now_ms);
    now.last_created = first + n - 1;
    set(at_start, now);
    Ok(first)
}

/// Keeps `created` past `v` (an imported value).
pub(crate) fn created_at_least(c: &Connection, v: i64) -> Result<()> {
    let (at_start, mut now) = ids(c)?;
    now.last_created = now.last_created.max(v);
    set(at_start, now);
    Ok(())
}

/// Writes the transaction's change to the counters, just before its commit: the last ids,
/// where any was taken, and the totals' change. Nothing when neither changed. The statement
/// sets only the columns that changed: a completion changes one total, and an `UPDATE` of
/// every column costs it half as much again as one of its own.
pub(crate) fn write(c: &Connection, change: Tally) -> Result<()> {
    let (last_blob, last_created) = match IDS.with(|c| c.get()) {
        IdState::Read { at_start, now } => (
            Some(now.last_blob).filter(|&v| v != at_start.ids.last_blob),
            Some(now.last_created).filter(|&v| v != at_start.ids.last_created),
        ),
        _ => (None, None),
    };
    let values = [
        last_blob,
        last_created,
        Some(change.jobs).filter(|&v| v != 0),
        Some(change.others).filter(|&v| v != 0),
        Some(change.blob_bytes).filter(|&v| v != 0),
        Some(change.results).filter(|&v| v != 0),
        Some(change.fails).filter(|&v| v != 0),
    ];
    let mask = values.iter().enumerate().fold(0, |m, (i, v)| m | ((v.is_some() as usize) << i));
    if mask == 0 {
        return Ok(());
    }
    let sql = UPDATES[mask].get_or_init(|| counters_update(mask));
    let n = c.prepare_cached(sql).sql()?.execute(params_from_iter(values.iter().flatten())).sql()?;
    if n != 1 {
        return Err(missing());
    }
    Ok(())
}

/// [`counters_update`] of each mask, built at its first use.
static UPDATES: [OnceLock<String>; 1 << COUNTER_COLUMNS.len()] =
    [const { OnceLock::new() }; 1 << COUNTER_COLUMNS.len()];

/// What `check` reports, and a write that needs the row fails with, when the row is gone.
pub(crate) const MISSING: &str = "the counter row (ids and kept totals) is missing";

fn missing() -> Error {
    Error::corrupt(format!("database file is damaged: {MISSING}"))
}
