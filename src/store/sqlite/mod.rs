//! The SQLite backend: one file holds the queue and the blobs.

mod checkpoint;
mod conn;
mod counters;
mod errors;
pub(crate) mod schema;

use conn::Conns;
use errors::SqlResult;
use schema::*;

use super::steps::{self, DueSchedule, Keyed, NewInstance, Steps, UpstreamState};
use super::Access;
use super::{
    best_candidate, chunk_digest, fail, BlobEntry, BlobId, Chunk, ClaimOutcome, ClaimParams, Claimed,
    Completed, Expired, Finished, Gone, IdleFacts, ImportRow, Lineage, LineageResult, NewSchedule, Pos,
    Published, PushSpec, Pushed, QueueState, QueueStats, Register, ScheduleRow, Stats, Store, CHUNK_BATCH,
    DEFAULT_QUEUE_ID, GC_PAGE, REMOVED_FAILS, REMOVED_RESULTS, RUNNING, UPSTREAM,
};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::options::DEFAULT_QUEUE;
use crate::options::{Durability, Order};
use crate::row::Progress;
use crate::row::{FailRow, ListKind, PendingRow, ResultRow, Row};
use rusqlite::types::{Type, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub(crate) struct Sqlite {
    conns: Conns,
}

impl Sqlite {
    pub fn open(path: &Path, durability: Durability, access: Access) -> Result<Sqlite> {
        Ok(Sqlite { conns: Conns::open(path, durability, access)? })
    }
}

// Decoding stored values. SQLite keeps a type per value, not per column, so one flipped bit in
// a record header turns a column's bytes into text or a number: every blob column is decoded
// by hand, and a value of the wrong kind is `Corrupt` naming the blob (through
// `conn::sql_err`, which keeps a batchdb error carried in a conversion failure).

/// Carries a batchdb error out of a row closure.
fn damage(i: usize, e: Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, Type::Null, Box::new(e))
}

fn kind_of(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "bytes",
    }
}

/// The hash in column `i` of the row of blob `id`.
fn hash_of(r: &rusqlite::Row<'_>, i: usize, id: BlobId) -> rusqlite::Result<Hash> {
    match r.get_ref(i)? {
        ValueRef::Blob(b) => Hash::from_bytes(b).map_err(|_| damage(i, fail::damaged_hash(id, b))),
        v => Err(damage(
            i,
            fail::damaged_blob(id, format_args!("its stored hash is {}, not 32 bytes", kind_of(v))),
        )),
    }
}

/// The hash in column `i` of a row whose column `id` holds the blob's id.
fn blob_hash(r: &rusqlite::Row<'_>, i: usize, id: usize) -> rusqlite::Result<Hash> {
    hash_of(r, i, r.get(id)?)
}

/// An integer column of blob `id`'s row, named `what` in messages.
fn blob_int(r: &rusqlite::Row<'_>, i: usize, id: BlobId, what: &str) -> rusqlite::Result<i64> {
    match r.get_ref(i)? {
        ValueRef::Integer(n) => Ok(n),
        v => Err(damage(i, fail::damaged_blob(id, format_args!("its {what} is stored as {}", kind_of(v))))),
    }
}

/// A blob's size: a non-negative integer.
fn blob_size(r: &rusqlite::Row<'_>, i: usize, id: BlobId) -> rusqlite::Result<u64> {
    let n = blob_int(r, i, id, "size")?;
    u64::try_from(n).map_err(|_| damage(i, fail::damaged_blob(id, format_args!("its stored size is {n}"))))
}

/// A row of [`CHUNK_GET`]: bytes, their digest (none inline), and whether they are inline.
/// Errors describe the chunk; the reader names the blob.
fn chunk_row(r: &rusqlite::Row<'_>, seq: i64) -> rusqlite::Result<Chunk> {
    let inline = r.get::<_, i64>(2)? == 1;
    let what = if inline { "its inline data".to_string() } else { format!("chunk {seq}") };
    let data = match r.get_ref(0)? {
        ValueRef::Blob(b) => b.to_vec(),
        v => return Err(damage(0, Error::corrupt(format!("{what} is stored as {}, not bytes", kind_of(v))))),
    };
    let digest = match (inline, r.get_ref(1)?) {
        (true, _) => None,
        (false, ValueRef::Integer(d)) => Some(d),
        (false, v) => {
            return Err(damage(
                1,
                Error::corrupt(format!("the digest of {what} is stored as {}", kind_of(v))),
            ))
        }
    };
    Ok(Chunk { data, digest })
}

/// The inline data of a claimed job (column `i`), as its first chunk: none when it has no
/// inline data, an error when the value is damaged.
fn inline_chunk(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Result<Chunk>>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Blob(b) => Some(Ok(Chunk { data: b.to_vec(), digest: None })),
        v => Some(Err(Error::corrupt(format!("its inline data is stored as {}, not bytes", kind_of(v))))),
    })
}

/// Publishes a finished blob inside the caller's transaction, registered as a job when `job`;
/// returns its id and, when the content already existed, the staging area that is now surplus.
///
/// An output is looked up first: a duplicate (say, the empty output of many jobs) is then
/// one lookup. A small job payload is inserted first, and looked up only when the insert
/// finds its content stored: a job is new content but for a repeated add, and a statement
/// fewer is a tenth of an add. Neither writes anything for a duplicate (an id taken and not
/// used is given back: ids are handed out from memory, see `counters`).
fn publish_blob(c: &Connection, b: &Finished, job: bool) -> Result<(BlobId, Option<BlobId>)> {
    if job && b.stage.is_none() {
        let id = counters::next_blob(c, 1)?;
        if insert_small(c, b, job, id)? {
            return Ok((id, None));
        }
        counters::give_back_blob(id);
    }
    publish_looked_up(c, b, job)
}

/// [`publish_blob`] that looks the content up first.
fn publish_looked_up(c: &Connection, b: &Finished, job: bool) -> Result<(BlobId, Option<BlobId>)> {
    let hash = b.hash.as_bytes().as_slice();
    let existing: Option<BlobId> =
        c.prepare_cached(BLOB_BY_HASH).sql()?.query_row([hash], |r| r.get(0)).optional().sql()?;
    if let Some(id) = existing {
        if job {
            mark_job(c, id)?;
        }
        if let Some(stage) = b.stage {
            // Cleared by the writer after this commit, or by gc: never in this transaction,
            // which would then hold the write lock for the whole duplicate's size.
            c.prepare_cached(STAGE_ABANDON).sql()?.execute([stage]).sql()?;
        }
        return Ok((id, b.stage));
    }
    let Some(stage) = b.stage else {
        let id = counters::next_blob(c, 1)?;
        insert_small(c, b, job, id)?;
        return Ok((id, None));
    };
    if !b.tail.is_empty() {
        c.prepare_cached(CHUNK_INSERT)
            .sql()?
            .execute(params![stage, b.next_seq, b.tail, chunk_digest(stage, b.next_seq, &b.tail)])
            .sql()?;
    }
    let n = c.prepare_cached(STAGE_PUBLISH).sql()?.execute(params![stage, hash, b.size as i64, job]).sql()?;
    if n != 1 {
        return Err(fail::publish_gone(&b.hash));
    }
    note_published(b, job);
    Ok((stage, None))
}

/// A blob was published: a job or another blob more, and its bytes.
fn note_published(b: &Finished, job: bool) {
    counters::note(|t| {
        t.jobs += job as i64;
        t.others += !job as i64;
        t.blob_bytes += b.size as i64;
    });
}

/// Registers an existing blob as a job (a no-op when it is one).
fn mark_job(c: &Connection, id: BlobId) -> Result<()> {
    let n = c.prepare_cached(JOB_MARK).sql()?.execute([id]).sql()?;
    counters::note(|t| {
        t.jobs += n as i64;
        t.others -= n as i64;
    });
    Ok(())
}

/// Inserts a fail row.
#[allow(clippy::too_many_arguments)]
fn fail_insert(
    c: &Connection,
    created: i64,
    job: BlobId,
    message: &str,
    start: Option<i64>,
    end: i64,
    attempts: i64,
    queue: i64,
) -> Result<()> {
    c.prepare_cached(FAIL_INSERT)
        .sql()?
        .execute(params![created, job, message, start, end, attempts, queue])
        .sql()?;
    counters::note(|t| t.fails += 1);
    Ok(())
}

/// Inserts an unstaged blob under `id` with its bytes inline; false when its content is
/// stored already (nothing was written).
fn insert_small(c: &Connection, b: &Finished, job: bool, id: BlobId) -> Result<bool> {
    let data = (!b.tail.is_empty()).then_some(&b.tail);
    let n = c
        .prepare_cached(BLOB_INSERT_NEW)
        .sql()?
        .execute(params![id, b.hash.as_bytes().as_slice(), b.size as i64, job, data])
        .sql()?;
    if n == 1 {
        note_published(b, job);
    }
    Ok(n == 1)
}

/// Takes `n` consecutive `created` values; returns the first.
fn next_created(c: &Connection, n: i64) -> Result<i64> {
    counters::next_created(c, now_ms(), n)
}

/// The id of queue `name`, its row created when missing.
fn queue_id(c: &Connection, name: &str) -> Result<i64> {
    if name == DEFAULT_QUEUE {
        return Ok(DEFAULT_QUEUE_ID);
    }
    if let Some(id) = c.prepare_cached(QUEUE_ID).sql()?.query_row([name], |r| r.get(0)).optional().sql()? {
        return Ok(id);
    }
    c.prepare_cached(QUEUE_INSERT).sql()?.query_row([name], |r| r.get(0)).sql()
}

/// For a unique push: the live instance of `job` in `queue`, if any.
fn live_instance(c: &Connection, job: BlobId, queue: i64) -> Result<Option<i64>> {
    c.prepare_cached(LIVE_INSTANCE).sql()?.query_row([job, queue], |r| r.get(0)).sql()
}

/// The statements of the write procedures both backends share ([`steps`]), on a connection
/// inside its transaction.
struct Tx<'c>(&'c Connection);

impl Steps for Tx<'_> {
    const CREATED_FIRST: bool = false;

    fn next_created(&mut self) -> Result<i64> {
        next_created(self.0, 1)
    }

    fn queue_id(&mut self, name: &str) -> Result<i64> {
        queue_id(self.0, name)
    }

    fn live_instance(&mut self, job: BlobId, queue: i64) -> Result<Option<i64>> {
        live_instance(self.0, job, queue)
    }

    fn newest_result(&mut self, job: BlobId) -> Result<Option<(i64, Hash)>> {
        self.0
            .prepare_cached(NEWEST_RESULT)
            .sql()?
            .query_row([job], |r| Ok((r.get(0)?, hash_of(r, 1, r.get(2)?)?)))
            .optional()
            .sql()
    }

    fn upstream_state(&mut self, key: &Hash, created: i64) -> Result<Option<UpstreamState>> {
        self.0
            .prepare_cached(UPSTREAM_STATE)
            .sql()?
            .query_row(params![key.as_bytes().as_slice(), created], |r| {
                Ok(UpstreamState {
                    job: r.get(0)?,
                    live: r.get::<_, Option<i64>>(1)?.is_some(),
                    done: r.get(2)?,
                    failed: r.get(3)?,
                })
            })
            .optional()
            .sql()
    }

    fn edge_insert(&mut self, created: i64, up_job: BlobId, up_created: i64) -> Result<()> {
        self.0.prepare_cached(EDGE_INSERT).sql()?.execute(params![created, up_job, up_created]).sql()?;
        Ok(())
    }

    fn instance_insert(&mut self, i: &NewInstance) -> Result<()> {
        self.0
            .prepare_cached(INSTANCE_INSERT)
            .sql()?
            .execute(params![i.created, i.job, i.state, i.priority, i.run_at, i.queue, i.waiting_on, i.deps])
            .sql()?;
        Ok(())
    }

    fn instance_delete(&mut self, created: i64) -> Result<()> {
        self.0.prepare_cached(INSTANCE_DELETE).sql()?.execute([created]).sql()?;
        Ok(())
    }

    fn fail_insert(&mut self, created: i64, job: BlobId, message: &str, end: i64, queue: i64) -> Result<()> {
        fail_insert(self.0, created, job, message, None, end, 0, queue)
    }

    fn dependents(&mut self, up: i64) -> Result<Vec<(i64, BlobId, i64, Hash)>> {
        self.0
            .prepare_cached(DEPENDENTS)
            .sql()?
            .query_map([up], |r| {
                let job = r.get(1)?;
                Ok((r.get(0)?, job, r.get(2)?, hash_of(r, 3, job)?))
            })
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()
    }

    fn blob_by_hash(&mut self, hash: &Hash) -> Result<Option<BlobId>> {
        self.0
            .prepare_cached(BLOB_BY_HASH)
            .sql()?
            .query_row([hash.as_bytes().as_slice()], |r| r.get(0))
            .optional()
            .sql()
    }

    fn job_by_hash(&mut self, key: &Hash) -> Result<BlobId> {
        job_by_hash(self.0, key)
    }

    fn mark_job(&mut self, id: BlobId, _key: &Hash) -> Result<()> {
        mark_job(self.0, id)
    }

    fn set_queue(&mut self, name: &str, limit: Option<u32>, paused: bool) -> Result<()> {
        self.0.prepare_cached(QUEUE_SET_LIMIT).sql()?.execute(params![name, limit]).sql()?;
        self.0.prepare_cached(QUEUE_SET_PAUSED).sql()?.execute(params![name, paused]).sql()?;
        Ok(())
    }

    fn schedule_put(&mut self, s: &NewSchedule, job: BlobId, queue: i64) -> Result<()> {
        self.0
            .prepare_cached(SCHEDULE_PUT)
            .sql()?
            .execute(params![s.name, s.spec, job, queue, s.priority, s.next_run])
            .sql()?;
        Ok(())
    }

    fn known_instance(&mut self, job: BlobId, created: i64) -> Result<bool> {
        self.0.prepare_cached(KNOWN_INSTANCE).sql()?.query_row([job, created], |r| r.get(0)).sql()
    }

    fn upstreams_left(&mut self, created: i64) -> Result<i64> {
        self.0.prepare_cached(UPSTREAMS_LEFT).sql()?.query_row([created], |r| r.get(0)).sql()
    }

    fn created_at_least(&mut self, created: i64) -> Result<()> {
        counters::created_at_least(self.0, created)
    }

    fn result_import(
        &mut self,
        created: i64,
        job: BlobId,
        blob: BlobId,
        start: i64,
        end: i64,
    ) -> Result<bool> {
        let n = self
            .0
            .prepare_cached(RESULT_IMPORT)
            .sql()?
            .execute(params![created, job, blob, start, end])
            .sql()?;
        counters::note(|t| t.results += n as i64);
        Ok(n == 1)
    }

    fn fail_import(
        &mut self,
        created: i64,
        job: BlobId,
        message: &str,
        start: i64,
        end: i64,
        attempts: u32,
    ) -> Result<bool> {
        let n = self
            .0
            .prepare_cached(FAIL_IMPORT)
            .sql()?
            .execute(params![created, job, message, start, end, attempts])
            .sql()?;
        counters::note(|t| t.fails += n as i64);
        Ok(n == 1)
    }

    fn release_dependents(&mut self, created: i64, now: i64) -> Result<()> {
        self.0.prepare_cached(RELEASE_DEPENDENTS).sql()?.execute([created, now]).sql()?;
        Ok(())
    }

    fn fail_of(&mut self, key: &Hash, created: i64) -> Result<Option<(BlobId, i64)>> {
        self.0
            .prepare_cached(FAIL_OF)
            .sql()?
            .query_row(params![created, key.as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .sql()
    }

    fn fail_remove(&mut self, created: i64) -> Result<()> {
        let n = self.0.prepare_cached(FAIL_DELETE).sql()?.execute([created]).sql()?;
        counters::note(|t| t.fails -= n as i64);
        self.0.prepare_cached(COUNT_REMOVED).sql()?.execute(params![REMOVED_FAILS, 1]).sql()?;
        Ok(())
    }

    fn schedules_due(&mut self, now: i64) -> Result<Vec<DueSchedule>> {
        self.0
            .prepare_cached(SCHEDULES_DUE)
            .sql()?
            .query_map([now], |r| {
                let job = r.get(2)?;
                Ok(DueSchedule {
                    name: r.get(0)?,
                    spec: r.get(1)?,
                    job,
                    queue: r.get(3)?,
                    priority: r.get(4)?,
                    next_run: r.get(5)?,
                    key: hash_of(r, 6, job)?,
                })
            })
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()
    }

    fn schedule_advance(&mut self, name: &str, next: i64, slot: i64) -> Result<()> {
        self.0.prepare_cached(SCHEDULE_ADVANCE).sql()?.execute(params![name, next, slot]).sql()?;
        Ok(())
    }

    fn job_page(&mut self, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>> {
        let c = self.0;
        let start: Vec<u8> = after.hash.map(|h| h.as_bytes().to_vec()).unwrap_or_default();
        let jobs: Vec<(Hash, BlobId)> = c
            .prepare_cached(LIST_JOBS)
            .sql()?
            .query_map(params![start, limit as i64], |r| Ok((blob_hash(r, 0, 1)?, r.get(1)?)))
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        let mut running: HashMap<BlobId, Vec<i64>> = HashMap::new();
        if !jobs.is_empty() {
            let mut stmt = c.prepare_cached(RUNNING_INSTANCES).sql()?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, BlobId>(0)?, r.get::<_, i64>(1)?))).sql()? {
                let (job, created) = row.sql()?;
                running.entry(job).or_default().push(created);
            }
        }
        Ok(super::job_rows(jobs, running))
    }

    fn pending_page(&mut self, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>> {
        self.0
            .prepare_cached(LIST_PENDING)
            .sql()?
            .query_map(params![after.created, limit as i64], |r| {
                let created: i64 = r.get(0)?;
                let priority: i32 = r.get(3)?;
                let state = r.get::<_, i64>(2)?;
                let running = state == RUNNING;
                let queue: Option<String> = r.get(6)?;
                let done: Option<f64> = r.get(7)?;
                Ok((
                    Row::Pending(PendingRow {
                        job: blob_hash(r, 1, 5)?,
                        created,
                        running,
                        priority: (priority != 0).then_some(priority),
                        run_at: r.get(4)?,
                        queue: queue.filter(|q| q != DEFAULT_QUEUE),
                        progress: done
                            .filter(|_| running)
                            .map(|done| {
                                Ok::<_, rusqlite::Error>(Progress {
                                    done,
                                    message: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                                })
                            })
                            .transpose()?,
                        after: (state == UPSTREAM).then(Vec::new),
                        start: if running { r.get(9)? } else { None },
                        lease_until: if running { r.get(10)? } else { None },
                    }),
                    Pos { hash: None, job: 0, created },
                ))
            })
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()
    }

    fn waiting_on(&mut self, created: i64) -> Result<Vec<(Hash, i64)>> {
        edges(self.0, WAITING_ON, created)
    }

    fn keyed_of_job(
        &mut self,
        kind: Keyed,
        key: Hash,
        job: BlobId,
        created: i64,
        limit: usize,
    ) -> Result<Vec<(Row, Pos)>> {
        let sql = match kind {
            Keyed::Results => LIST_RESULTS_OF_JOB,
            Keyed::Fails => LIST_FAILS_OF_JOB,
        };
        let mut stmt = self.0.prepare_cached(sql).sql()?;
        let rows = stmt
            .query_map(params![job, created, limit as i64], |r| {
                let created = r.get(0)?;
                Ok((keyed_row(kind, key, created, r, 1)?, Pos { hash: Some(key), job, created }))
            })
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        Ok(rows)
    }

    fn keyed_after_job(&mut self, kind: Keyed, start: &[u8], limit: usize) -> Result<Vec<(Row, Pos)>> {
        let sql = match kind {
            Keyed::Results => LIST_RESULTS_AFTER_JOB,
            Keyed::Fails => LIST_FAILS_AFTER_JOB,
        };
        let mut stmt = self.0.prepare_cached(sql).sql()?;
        let rows = stmt
            .query_map(params![start, limit as i64], |r| {
                let key = blob_hash(r, 0, 1)?;
                let created = r.get(2)?;
                Ok((keyed_row(kind, key, created, r, 3)?, Pos { hash: Some(key), job: r.get(1)?, created }))
            })
            .sql()?
            .collect::<rusqlite::Result<_>>()
            .sql()?;
        Ok(rows)
    }
}

/// A result or fail row from the columns of a `LIST_*` statement, starting at column `at`:
/// a result's (hash, start, end, blob id), a fail's (message, start, end, attempts).
fn keyed_row(
    kind: Keyed,
    key: Hash,
    created: i64,
    r: &rusqlite::Row<'_>,
    at: usize,
) -> rusqlite::Result<Row> {
    Ok(match kind {
        Keyed::Results => Row::Result(ResultRow {
            key,
            created,
            hash: blob_hash(r, at, at + 3)?,
            start: r.get(at + 1)?,
            end: r.get(at + 2)?,
        }),
        Keyed::Fails => Row::Fail(FailRow {
            key,
            created,
            message: r.get(at)?,
            start: r.get::<_, Option<i64>>(at + 1)?.unwrap_or(0),
            end: r.get(at + 2)?,
            attempts: r.get(at + 3)?,
        }),
    })
}

/// The upstreams `(key, created)` listed by `sql` for instance `created`.
fn edges(c: &Connection, sql: &str, created: i64) -> Result<Vec<(Hash, i64)>> {
    c.prepare_cached(sql)
        .sql()?
        .query_map([created], |r| Ok((hash_of(r, 0, r.get(2)?)?, r.get(1)?)))
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()
}

fn queue_states(c: &Connection, sql: &str) -> Result<Vec<QueueState>> {
    c.prepare_cached(sql)
        .sql()?
        .query_map([], |r| {
            Ok(QueueState {
                id: r.get(0)?,
                name: r.get(1)?,
                limit: r.get(2)?,
                paused: r.get::<_, i64>(3)? != 0,
                running: r.get(4)?,
                ready: r.get(5)?,
            })
        })
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()
}

fn job_by_hash(c: &Connection, key: &Hash) -> Result<BlobId> {
    c.prepare_cached(JOB_BY_HASH)
        .sql()?
        .query_row([key.as_bytes().as_slice()], |r| r.get(0))
        .optional()
        .sql()?
        .ok_or_else(|| fail::job_not_found(key))
}

fn job_hash(c: &Connection, job: BlobId) -> Result<Hash> {
    c.prepare_cached(JOB_HASH).sql()?.query_row([job], |r| hash_of(r, 0, job)).sql()
}

impl Sqlite {
    fn file_size(&self, suffix: &str) -> u64 {
        let mut p = self.conns.path.clone().into_os_string();
        p.push(suffix);
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }
}

impl Store for Sqlite {
    fn stage_begin(&self, lease_ms: i64) -> Result<BlobId> {
        self.conns.write(false, move |c| {
            let id = counters::next_blob(c, 1)?;
            c.prepare_cached(STAGE_BEGIN).sql()?.execute([id, now_ms() + lease_ms]).sql()?;
            Ok(id)
        })
    }

    fn stage_write(
        &self,
        stage: BlobId,
        seq: i64,
        data: Vec<u8>,
        digest: i64,
        lease_ms: i64,
    ) -> Result<Vec<u8>> {
        self.conns.write(false, move |c| {
            let alive = c.prepare_cached(STAGE_RENEW).sql()?.execute([stage, now_ms() + lease_ms]).sql()?;
            if alive != 1 {
                return Err(fail::stage_gone(stage));
            }
            c.prepare_cached(CHUNK_INSERT).sql()?.execute(params![stage, seq, data, digest]).sql()?;
            Ok(data)
        })
    }

    fn stage_abandon(&self, stage: BlobId) -> Result<()> {
        self.conns.write(false, move |c| c.prepare_cached(STAGE_ABANDON).sql()?.execute([stage]).sql())?;
        Ok(())
    }

    fn stage_delete(&self, stage: BlobId) -> Result<()> {
        self.conns.write(false, move |c| c.prepare_cached(STAGE_DELETE).sql()?.execute([stage]).sql())?;
        Ok(())
    }

    fn publish(&self, blob: Finished, register: Register) -> Result<Published> {
        self.conns.write(true, move |c| {
            let (job, push) = match register {
                Register::Job { push } => (true, push),
                Register::Blob => (false, None),
            };
            let (id, duplicate_stage) = publish_blob(c, &blob, job)?;
            let created = match push {
                Some(spec) => Some(steps::push(&mut Tx(c), id, &spec)?),
                None => None,
            };
            Ok(Published { created, duplicate_stage })
        })
    }

    fn publish_many(&self, blobs: Vec<Finished>, push: PushSpec) -> Result<Vec<Pushed>> {
        self.conns.write(true, move |c| {
            // Ids and `created` values for the whole batch in one update each (a unique
            // push that finds a live instance leaves its value unused).
            let n = blobs.len() as i64;
            let queue = queue_id(c, &push.queue)?;
            let (first_id, first_created) = (counters::next_blob(c, n)?, next_created(c, n)?);
            let mut created = Vec::with_capacity(blobs.len());
            for (i, blob) in (0..).zip(&blobs) {
                debug_assert!(blob.stage.is_none(), "publish_many takes unstaged blobs only");
                // New content is the common case in a batch: one statement each, and the
                // lookup only for a duplicate (whose preallocated id then goes unused).
                let id = if insert_small(c, blob, true, first_id + i)? {
                    first_id + i
                } else {
                    publish_looked_up(c, blob, true)?.0
                };
                // Memo and upstreams take the full path (their preallocated value goes unused).
                if push.memo || !push.after.is_empty() {
                    created.push(steps::push(&mut Tx(c), id, &push)?);
                    continue;
                }
                let live = if push.unique { live_instance(c, id, queue)? } else { None };
                created.push(match live {
                    Some(existing) => Pushed::joined(existing),
                    None => {
                        steps::insert_as(&mut Tx(c), id, &push, queue, first_created + i, 0, 0)?;
                        Pushed::queued(first_created + i)
                    }
                });
            }
            Ok(created)
        })
    }

    fn blob(&self, hash: &Hash) -> Result<Option<(BlobId, u64)>> {
        self.conns
            .read(|c| {
                c.prepare_cached(BLOB_BY_HASH)
                    .sql()?
                    .query_row([hash.as_bytes().as_slice()], |r| {
                        let id = r.get(0)?;
                        let stored = match r.get_ref(2)? {
                            ValueRef::Blob(b) => b.to_vec(),
                            v => {
                                return Err(damage(
                                    2,
                                    fail::damaged_blob(
                                        id,
                                        format_args!("its hash is stored as {}", kind_of(v)),
                                    ),
                                ))
                            }
                        };
                        Ok((id, blob_size(r, 1, id)?, stored))
                    })
                    .optional()
                    .sql()
            })?
            .map(|(id, size, stored)| fail::found_other(hash, id, &stored).map(|()| (id, size)))
            .transpose()
    }

    fn chunk(&self, blob: BlobId, seq: i64) -> Result<Option<Chunk>> {
        self.conns.read(|c| {
            c.prepare_cached(CHUNK_GET)
                .sql()?
                .query_row(params![blob, seq], |r| chunk_row(r, seq))
                .optional()
                .sql()
        })
    }

    fn push(&self, key: &Hash, spec: PushSpec) -> Result<Pushed> {
        let key = *key;
        self.conns.write(true, move |c| {
            let job = job_by_hash(c, &key)?;
            steps::push(&mut Tx(c), job, &spec)
        })
    }

    fn claim(&self, p: &ClaimParams) -> Result<ClaimOutcome> {
        let p = p.clone();
        self.conns.write(false, move |c| claim_in(c, &p))
    }

    fn progress(&self, created: i64, attempt: u32, done: f64, message: &str) -> Result<()> {
        let message = message.to_string();
        let n = self.conns.write(false, move |c| {
            c.prepare_cached(PROGRESS).sql()?.execute(params![created, attempt, done, message]).sql()
        })?;
        if n == 0 {
            return Err(fail::not_held(created, attempt));
        }
        Ok(())
    }

    fn set_limit(&self, queue: &str, limit: Option<u32>) -> Result<()> {
        let queue = queue.to_string();
        self.conns.write(true, move |c| {
            c.prepare_cached(QUEUE_SET_LIMIT).sql()?.execute(params![queue, limit]).sql().map(|_| ())
        })
    }

    fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        let queue = queue.to_string();
        self.conns.write(true, move |c| {
            c.prepare_cached(QUEUE_SET_PAUSED).sql()?.execute(params![queue, paused]).sql().map(|_| ())
        })
    }

    fn queues(&self) -> Result<Vec<QueueStats>> {
        self.conns.read(queue_stats)
    }

    fn schedule_put(&self, s: NewSchedule) -> Result<()> {
        self.conns.write(true, move |c| {
            let job = job_by_hash(c, &s.job)?;
            let queue = queue_id(c, &s.queue)?;
            c.prepare_cached(SCHEDULE_PUT)
                .sql()?
                .execute(params![s.name, s.spec, job, queue, s.priority, s.next_run])
                .sql()
                .map(|_| ())
        })
    }

    fn schedule_remove(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.conns.write(true, move |c| {
            match c.prepare_cached(SCHEDULE_DELETE).sql()?.execute([&name]).sql()? {
                0 => Err(fail::schedule_not_found(&name)),
                _ => Ok(()),
            }
        })
    }

    fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.conns.read(|c| {
            c.prepare_cached(SCHEDULE_LIST)
                .sql()?
                .query_map([], |r| {
                    Ok(ScheduleRow {
                        name: r.get(0)?,
                        spec: r.get(1)?,
                        queue: r.get(2)?,
                        job: blob_hash(r, 3, 5)?,
                        next_run: r.get(4)?,
                        priority: r.get(6)?,
                    })
                })
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()
        })
    }

    fn completions(&self, since: i64) -> Result<Vec<(i64, u64, u64)>> {
        self.conns.read(|c| {
            c.prepare_cached(COMPLETIONS)
                .sql()?
                .query_map([since], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64, r.get::<_, i64>(2)?.max(0) as u64))
                })
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()
        })
    }

    fn renew(&self, jobs: Vec<(i64, u32)>, stages: Vec<BlobId>, lease_ms: i64) -> Result<()> {
        self.conns.write(false, move |c| {
            let until = now_ms() + lease_ms;
            for (created, attempt) in jobs {
                c.prepare_cached(RENEW).sql()?.execute(params![created, attempt, until]).sql()?;
            }
            for stage in stages {
                c.prepare_cached(STAGE_RENEW).sql()?.execute([stage, until]).sql()?;
            }
            Ok(())
        })
    }

    fn complete(&self, created: i64, attempt: u32, output: Arc<Finished>) -> Result<Completed> {
        self.conns.write(true, move |c| complete_in(c, created, attempt, &output))
    }

    /// One transaction: a commit, and the pages the completed and the claimed instance share
    /// (their table and lease-index leaves), written once for both.
    fn complete_claim(
        &self,
        created: i64,
        attempt: u32,
        output: Arc<Finished>,
        next: &ClaimParams,
    ) -> Result<(Completed, Option<ClaimOutcome>)> {
        let next = next.clone();
        let both = self.conns.write(true, {
            let output = output.clone();
            move |c| Ok((complete_in(c, created, attempt, &output)?, claim_in(c, &next)?))
        });
        match both {
            Ok((done, claimed)) => Ok((done, Some(claimed))),
            // Nothing was written: the complete alone, whose outcome is the one that counts;
            // a claim that fails again shows its error on the worker's next claim.
            Err(e) if !matches!(e, Error::Stale(_)) => Ok((self.complete(created, attempt, output)?, None)),
            Err(e) => Err(e),
        }
    }

    fn fail(
        &self,
        created: i64,
        attempt: u32,
        message: &str,
        requeue_at: Option<i64>,
    ) -> Result<(i64, Vec<Expired>)> {
        let message = message.to_string();
        self.conns.write(true, move |c| {
            let (job, start, queue, _) = fence(c, created, attempt)?;
            let end = now_ms();
            match requeue_at {
                Some(at) => {
                    c.prepare_cached(REQUEUE_AT).sql()?.execute([created, at]).sql()?;
                    Ok((end, Vec::new()))
                }
                None => {
                    fail_insert(c, created, job, &message, Some(start), end, attempt.into(), queue)?;
                    c.prepare_cached(INSTANCE_DELETE).sql()?.execute([created]).sql()?;
                    let key = job_hash(c, job)?;
                    Ok((end, steps::fail_dependents(&mut Tx(c), key, created, Gone::Failed, end)?))
                }
            }
        })
    }

    fn retry(&self, key: &Hash, created: i64) -> Result<i64> {
        let key = *key;
        self.conns.write(true, move |c| steps::retry(&mut Tx(c), &key, created))
    }

    fn cancel(&self, key: &Hash, created: i64) -> Result<Vec<Expired>> {
        let key = *key;
        self.conns.write(true, move |c| {
            let state: i64 = c
                .prepare_cached(INSTANCE_OF)
                .sql()?
                .query_row(params![created, key.as_bytes().as_slice()], |r| r.get(0))
                .optional()
                .sql()?
                .ok_or_else(|| fail::no_pending_instance(&key, created))?;
            if state == RUNNING {
                return Err(fail::instance_running(&key, created));
            }
            c.prepare_cached(INSTANCE_DELETE).sql()?.execute([created]).sql()?;
            steps::fail_dependents(&mut Tx(c), key, created, Gone::Cancelled, now_ms())
        })
    }

    /// SQLite's online backup, in one step: the pages are copied under one read transaction,
    /// so the copy is the database as of that instant, while writers (of this or any
    /// process) go on in the write-ahead log.
    fn backup(&self, tmp: &Path) -> Result<bool> {
        let mut dst = Connection::open(tmp).sql()?;
        self.conns.read(|c| {
            let b = rusqlite::backup::Backup::new(c, &mut dst).sql()?;
            match b.step(-1).sql()? {
                rusqlite::backup::StepResult::Done => Ok(()),
                other => Err(Error::busy(format!("the backup did not complete in one step ({other:?})"))),
            }
        })?;
        dst.close().map_err(|(_, e)| e).sql()?;
        Ok(true)
    }

    fn identity(&self) -> Result<(i64, Option<i64>)> {
        self.conns.read(|c| {
            c.prepare_cached(IDENTITY)
                .sql()?
                .query_row([], |r| Ok((r.get(0)?, r.get::<_, i64>(1).map(|v| (v != 0).then_some(v))?)))
                .sql()
        })
    }

    fn set_copied_from(&self, source: i64) -> Result<()> {
        self.conns.write(true, move |c| {
            c.prepare_cached(SET_COPIED_FROM).sql()?.execute([source]).sql().map(|_| ())
        })
    }

    fn import(&self, rows: Vec<ImportRow>) -> Result<()> {
        self.conns.write(true, move |c| {
            for row in rows {
                steps::import_row(&mut Tx(c), row)?;
            }
            Ok(())
        })
    }

    fn edges(&self, created: i64) -> Result<Vec<(Hash, i64)>> {
        self.conns.read(|c| edges(c, EDGES_OF, created))
    }

    fn why(&self, hash: &Hash) -> Result<Option<Lineage>> {
        self.conns.read(|c| {
            let found: Option<(BlobId, i64)> = c
                .prepare_cached(BLOB_JOB_FLAG)
                .sql()?
                .query_row([hash.as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .sql()?;
            let Some((id, job)) = found else { return Ok(None) };
            let rows: Vec<(Hash, i64)> = c
                .prepare_cached(RESULTS_WITH_BLOB)
                .sql()?
                .query_map([id], |r| Ok((hash_of(r, 0, r.get(2)?)?, r.get(1)?)))
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()?;
            let mut results = Vec::with_capacity(rows.len());
            for (key, created) in rows {
                results.push(LineageResult { key, created, after: edges(c, EDGES_OF, created)? });
            }
            Ok(Some(Lineage { job: job == 1, results }))
        })
    }

    fn prune(&self, older_than_ms: i64) -> Result<u64> {
        self.conns.write(true, move |c| {
            c.prepare_cached(LOOSE_FROM_PRUNE).sql()?.execute([older_than_ms]).sql()?;
            let a = c.prepare_cached(PRUNE_RESULTS).sql()?.execute([older_than_ms]).sql()?;
            let b = c.prepare_cached(PRUNE_FAILS).sql()?.execute([older_than_ms]).sql()?;
            counters::note(|t| {
                t.results -= a as i64;
                t.fails -= b as i64;
            });
            c.prepare_cached(COUNT_REMOVED).sql()?.execute(params![REMOVED_RESULTS, a as i64]).sql()?;
            c.prepare_cached(COUNT_REMOVED).sql()?.execute(params![REMOVED_FAILS, b as i64]).sql()?;
            Ok((a + b) as u64)
        })
    }

    fn idle(&self) -> Result<IdleFacts> {
        self.conns.read(|c| {
            let queues = queue_states(c, QUEUE_STATES)?;
            c.prepare_cached(IDLE)
                .sql()?
                .query_row([], |r| {
                    Ok(IdleFacts {
                        queues,
                        running: r.get(0)?,
                        earliest_wait: r.get(1)?,
                        earliest_lease: r.get(2)?,
                        next_schedule: r.get(3)?,
                    })
                })
                .sql()
        })
    }

    fn change_counter(&self) -> Result<i64> {
        self.conns.with_writer(|c| c.query_row(DATA_VERSION, [], |r| r.get(0)).sql())
    }

    fn list(&self, kind: ListKind, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>> {
        self.conns.read(|c| {
            // One read transaction, so that a page is one snapshot.
            let tx = c.unchecked_transaction().sql()?;
            let rows = steps::list(&mut Tx(c), kind, after, limit);
            drop(tx);
            rows
        })
    }

    fn stale_stages(&self, now: i64) -> Result<Vec<BlobId>> {
        self.conns.read(|c| {
            c.prepare_cached(STALE_STAGES)
                .sql()?
                .query_map(params![now, GC_PAGE], |r| r.get(0))
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()
        })
    }

    fn stage_expire_if_stale(&self, stage: BlobId, now: i64) -> Result<bool> {
        let n = self.conns.write(false, move |c| {
            c.prepare_cached(STAGE_EXPIRE_IF_STALE).sql()?.execute(params![stage, now]).sql()
        })?;
        Ok(n == 1)
    }

    fn chunks_delete_some(&self, blob: BlobId) -> Result<(u64, u64)> {
        self.conns.write(false, move |c| {
            let mut stmt = c.prepare_cached(CHUNK_DELETE_SOME).sql()?;
            let sizes: Vec<i64> = stmt
                .query_map(params![blob, CHUNK_BATCH], |r| r.get(0))
                .sql()?
                .collect::<Result<_, _>>()
                .sql()?;
            Ok((sizes.len() as u64, sizes.iter().sum::<i64>() as u64))
        })
    }

    fn unreferenced_blobs(&self, after: BlobId) -> Result<Vec<(BlobId, Hash)>> {
        self.conns.read(|c| {
            c.prepare_cached(UNREFERENCED_BLOBS)
                .sql()?
                .query_map(params![after, GC_PAGE], |r| {
                    let id = r.get(0)?;
                    Ok((id, hash_of(r, 1, id)?))
                })
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()
        })
    }

    /// No lock beyond the write transaction: SQLite has one writer at a time, so a writer
    /// publishing the same content either committed its reference (which the update sees)
    /// or finds no blob afterwards and writes it anew.
    ///
    /// The blob leaves `loose` in the same transaction: a prune that removes its last result
    /// later puts it back.
    fn blob_unpublish_unreferenced(&self, blob: BlobId, _hash: &Hash) -> Result<Option<u64>> {
        let inline: Option<i64> = self.conns.write(false, move |c| {
            let unpublished: Option<(i64, i64)> = c
                .prepare_cached(BLOB_UNPUBLISH_UNREFERENCED)
                .sql()?
                .query_row([blob], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .sql()?;
            c.prepare_cached(LOOSE_FORGET).sql()?.execute([blob]).sql()?;
            Ok(unpublished.map(|(inline, size)| {
                counters::note(|t| {
                    t.others -= 1;
                    t.blob_bytes -= size;
                });
                inline
            }))
        })?;
        Ok(inline.map(|n| n as u64))
    }

    fn gc_window(&self) -> Result<Option<(BlobId, BlobId)>> {
        self.conns.read(|c| {
            c.prepare_cached(GC_WINDOW).sql()?.query_row([], |r| Ok(Some((r.get(0)?, r.get(1)?)))).sql()
        })
    }

    fn set_gc_mark(&self, top: BlobId) -> Result<()> {
        self.conns
            .write(false, move |c| c.prepare_cached(SET_GC_MARK).sql()?.execute([top]).sql().map(|_| ()))
    }

    fn loose_blobs(&self, after: BlobId) -> Result<Vec<(BlobId, Option<Hash>)>> {
        self.conns.read(|c| {
            c.prepare_cached(LOOSE_PAGE)
                .sql()?
                .query_map(params![after, GC_PAGE], |r| {
                    let id = r.get(0)?;
                    let hash = match r.get_ref(1)? {
                        ValueRef::Null => None,
                        _ => Some(hash_of(r, 1, id)?),
                    };
                    Ok((id, hash))
                })
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()
        })
    }

    fn loose_forget(&self, blob: BlobId) -> Result<()> {
        self.conns
            .write(false, move |c| c.prepare_cached(LOOSE_FORGET).sql()?.execute([blob]).sql().map(|_| ()))
    }

    fn orphan_chunk_owners(&self) -> Result<Vec<BlobId>> {
        self.conns.read(|c| {
            c.prepare_cached(ORPHAN_CHUNK_OWNERS)
                .sql()?
                .query_map([], |r| r.get(0))
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()
        })
    }

    fn after_gc(&self) -> Result<()> {
        self.conns.with_writer(|c| c.execute_batch(CHECKPOINT).sql())
    }

    fn check_structure(&self) -> Result<Vec<String>> {
        self.conns.read(|c| {
            let mut problems = Vec::new();
            let mut stmt = c.prepare(INTEGRITY_CHECK).sql()?;
            for line in stmt.query_map([], |r| r.get::<_, String>(0)).sql()? {
                let line = line.sql()?;
                if line != "ok" {
                    problems.push(format!("sqlite integrity check: {line}"));
                }
            }
            let orphans: Vec<(BlobId, i64)> = c
                .prepare_cached(ORPHAN_CHUNK_OWNERS)
                .sql()?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()?;
            for (owner, n) in orphans {
                problems.push(fail::orphan_chunks(n, owner));
            }
            let mut stmt = c.prepare_cached(DANGLING).sql()?;
            for line in stmt.query_map([], |r| r.get::<_, String>(0)).sql()? {
                problems.push(line.sql()?.to_lowercase());
            }
            // The kept totals are NULL when the counter row is gone.
            let totals: Option<[i64; 10]> = c
                .prepare_cached(TALLY_CHECK)
                .sql()?
                .query_row([], |r| {
                    let mut v = [0i64; 10];
                    for (i, x) in v.iter_mut().enumerate() {
                        match r.get::<_, Option<i64>>(i)? {
                            Some(n) => *x = n,
                            None => return Ok(None),
                        }
                    }
                    Ok(Some(v))
                })
                .sql()?;
            match totals {
                None => problems.push(counters::MISSING.to_string()),
                Some(t) if t[..5] != t[5..] => problems.push(fail::totals_differ(&t[..5], &t[5..])),
                Some(_) => {}
            }
            Ok(problems)
        })
    }

    fn blobs_after(&self, after: BlobId, limit: usize) -> Result<Vec<BlobEntry>> {
        self.conns.read(|c| {
            c.prepare_cached(BLOBS_AFTER)
                .sql()?
                .query_map(params![after, limit as i64], |r| {
                    // A damaged row is reported by check, which goes on with the next.
                    let id = r.get(0)?;
                    let row = (|| Ok((hash_of(r, 1, id)?, blob_size(r, 2, id)?)))().sql();
                    Ok(BlobEntry { id, row })
                })
                .sql()?
                .collect::<rusqlite::Result<_>>()
                .sql()
        })
    }

    fn stats(&self) -> Result<Stats> {
        let (mut s, queues) = self.conns.read(|c| {
            // One read transaction: the totals and the queues' counts are one moment's.
            let tx = c.unchecked_transaction().sql()?;
            let s = tx
                .prepare_cached(STATS)
                .sql()?
                .query_row([], |r| {
                    let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                    Ok(Stats {
                        results_total: n(1)? + n(5)?,
                        fails_total: n(2)? + n(6)?,
                        queues: Default::default(),
                        jobs: n(0)?,
                        pending: 0,
                        running: 0,
                        results: n(1)?,
                        fails: n(2)?,
                        blobs: n(3)?,
                        blob_bytes: n(4)?,
                        file_bytes: 0,
                        wal_bytes: 0,
                    })
                })
                .sql()?;
            let queues = queue_stats(&tx)?;
            tx.commit().sql()?;
            Ok((s, queues))
        })?;
        // Every instance is in a queue.
        s.pending = queues.iter().map(|q| q.pending + q.waiting).sum();
        s.running = queues.iter().map(|q| q.running).sum();
        s.file_bytes = self.file_size("");
        s.wal_bytes = self.file_size("-wal");
        s.queues = queues.into_iter().map(|q| (q.name.clone(), q)).collect();
        Ok(s)
    }
}

/// Each queue's settings and counts, and its oldest ready instance.
fn queue_stats(c: &Connection) -> Result<Vec<QueueStats>> {
    let rows: Vec<(i64, QueueStats)> = c
        .prepare_cached(QUEUE_STATS)
        .sql()?
        .query_map([], |r| {
            let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok((
                r.get(0)?,
                QueueStats {
                    name: r.get(1)?,
                    limit: r.get::<_, Option<i64>>(2)?.map(|l| l.clamp(0, u32::MAX as i64) as u32),
                    paused: r.get::<_, i64>(3)? != 0,
                    pending: n(4)?,
                    running: n(5)?,
                    waiting: n(6)?,
                    oldest_ready: None,
                },
            ))
        })
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()?;
    let mut next = c.prepare_cached(READY_AFTER_PRIORITY).sql()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, mut q) in rows {
        let mut after = i64::MIN;
        while q.pending > 0 {
            let Some((priority, created)) = next
                .query_row([id, after], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .optional()
                .sql()?
            else {
                break;
            };
            q.oldest_ready = Some(q.oldest_ready.map_or(created, |o: i64| o.min(created)));
            after = priority;
        }
        out.push(q);
    }
    Ok(out)
}

/// The claim ([`Store::claim`]) inside the caller's write transaction.
fn claim_in(c: &Connection, p: &ClaimParams) -> Result<ClaimOutcome> {
    let (lease_ms, max_attempts, order) = (p.lease_ms, p.max_attempts as i64, p.order);
    let served = &p.queues;
    let now = now_ms();
    let mut expired = Vec::new();
    type Stale = (i64, i64, BlobId, Option<i64>, i64);
    let stale: Vec<Stale> = c
        .prepare_cached(EXPIRED)
        .sql()?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .sql()?
        .collect::<rusqlite::Result<_>>()
        .sql()?;
    for (created, attempts, job, start, queue) in stale {
        if attempts >= max_attempts {
            let message = fail::lease_expired(attempts);
            fail_insert(c, created, job, &message, start, now, attempts, queue)?;
            c.prepare_cached(INSTANCE_DELETE).sql()?.execute([created]).sql()?;
            let key = job_hash(c, job)?;
            expired.push(Expired { key, created, message });
            expired.extend(steps::fail_dependents(&mut Tx(c), key, created, Gone::Failed, now)?);
        } else {
            c.prepare_cached(REQUEUE_NOW).sql()?.execute([created]).sql()?;
        }
    }
    if c.prepare_cached(PROMOTE_DUE).sql()?.query_row([now], |r| r.get::<_, bool>(0)).sql()? {
        c.prepare_cached(PROMOTE).sql()?.execute([now]).sql()?;
    }
    let fired = steps::fire_schedules(&mut Tx(c), now)?;
    // Every queue's settings and best ready instance in one statement; the claimable
    // ones' candidates compete (`best_candidate`).
    let sql = if order == Order::NewestFirst { QUEUE_PICKS_NEWEST } else { QUEUE_PICKS_OLDEST };
    let mut cands = Vec::new();
    let mut stmt = c.prepare_cached(sql).sql()?;
    let mut rows = stmt.query([]).sql()?;
    while let Some(r) = rows.next().sql()? {
        let q = QueueState {
            id: r.get(0).sql()?,
            name: r.get(1).sql()?,
            limit: r.get(2).sql()?,
            paused: r.get::<_, i64>(3).sql()? != 0,
            running: r.get(4).sql()?,
            ready: true,
        };
        let pick: Option<i64> = r.get(6).sql()?;
        if let (Some(created), true) = (pick, q.claimable(served.as_deref())) {
            cands.push((created, r.get::<_, i64>(5).sql()?));
        }
    }
    drop(rows);
    drop(stmt);
    let taken: Option<(i64, BlobId, i64, i64)> = match best_candidate(cands, order) {
        None => None,
        // In this write transaction: the row read back is the one the update took.
        Some(best) if c.prepare_cached(TAKE).sql()?.execute([now, lease_ms, best]).sql()? == 1 => Some(
            c.prepare_cached(TAKEN)
                .sql()?
                .query_row([best], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .sql()?,
        ),
        Some(_) => None,
    };
    let claimed = match taken {
        Some((created, job, attempt, deps)) => {
            let after = if deps == 0 {
                Vec::new()
            } else {
                c.prepare_cached(UPSTREAM_RESULTS)
                    .sql()?
                    .query_map([created], |r| {
                        Ok((hash_of(r, 0, r.get(3)?)?, r.get(1)?, hash_of(r, 2, r.get(4)?)?))
                    })
                    .sql()?
                    .collect::<rusqlite::Result<_>>()
                    .sql()?
            };
            let (key, size, first_chunk) = c
                .prepare_cached(CLAIMED_JOB)
                .sql()?
                .query_row([job], |r| Ok((hash_of(r, 0, job)?, blob_size(r, 1, job)?, inline_chunk(r, 2)?)))
                .sql()?;
            Some(Claimed { key, payload: job, size, created, attempt: attempt as u32, after, first_chunk })
        }
        None => None,
    };
    Ok(ClaimOutcome { claimed, expired, fired })
}

/// The complete ([`Store::complete`]) inside the caller's write transaction.
fn complete_in(
    c: &Connection,
    created: i64,
    attempt: u32,
    output: &Finished,
) -> Result<(i64, Option<BlobId>)> {
    let (job, start, _, dependents) = fence(c, created, attempt)?;
    let (blob, surplus) = publish_blob(c, output, false)?;
    let end = now_ms();
    c.prepare_cached(RESULT_INSERT).sql()?.execute(params![created, job, blob, start, end]).sql()?;
    counters::note(|t| t.results += 1);
    c.prepare_cached(INSTANCE_DELETE).sql()?.execute([created]).sql()?;
    if dependents {
        c.prepare_cached(RELEASE_DEPENDENTS).sql()?.execute([created, end]).sql()?;
    }
    Ok((end, surplus))
}

/// The fence: the instance must still be running under this attempt. Its job, start and
/// queue, and whether other instances depend on it.
fn fence(c: &Connection, created: i64, attempt: u32) -> Result<(BlobId, i64, i64, bool)> {
    c.prepare_cached(FENCE)
        .sql()?
        .query_row(params![created, attempt], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get(2)?, r.get(3)?))
        })
        .optional()
        .sql()?
        .ok_or_else(|| fail::not_held(created, attempt))
}
