//! The PostgreSQL backend: the same queue and blob store, kept on a server that many machines
//! share. Selected by opening a `postgres://` or `postgresql://` URL; built with the
//! `postgres` cargo feature.
//!
//! Connections: a small pool of synchronous clients, each with its prepared statements; every
//! [`Store`] method is one short transaction on one of them. Waiting workers are woken with
//! `LISTEN/NOTIFY`: every transaction that makes work claimable, or leaves the queue empty,
//! sends a notification on the schema's channel, and one thread per open database
//! ([`listener`]) waits for them on a dedicated connection and wakes the waiters, who
//! otherwise sleep without polling.
//!
//! Failures: a lost connection is an [`Error::Io`] that says so. A write is never retried
//! once its transaction has begun, so nothing is applied twice; only a `BEGIN` (or a
//! read) that failed on a pooled connection that had died while idle is tried again on a
//! fresh one. No message, log or stat shows the URL's password (see [`crate::redact`]).
//!
//! Times (`created`, leases, delays) come from the clients' clocks, as with SQLite: machines
//! that share a server should keep their clocks in sync (NTP).

mod conn;
mod listener;
pub(crate) mod schema;
mod tls;

pub(crate) use listener::Wake;

use schema::*;

use super::steps::{self, DueSchedule, Keyed, NewInstance, Steps, UpstreamState};
use super::{
    chunk_digest, fail, BlobEntry, BlobId, Chunk, ClaimOutcome, ClaimParams, Claimed, Completed, Expired,
    Finished, Gone, IdleFacts, ImportRow, Lineage, LineageResult, NewSchedule, Pos, Published, PushSpec,
    Pushed, QueueState, QueueStats, Register, ScheduleRow, Stats, Store, CHUNK_BATCH, DEFAULT_QUEUE_ID,
    GC_PAGE, REMOVED_FAILS, REMOVED_RESULTS, RUNNING, UPSTREAM,
};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::options::DEFAULT_QUEUE;
use crate::options::{Durability, Order};
use crate::row::Progress;
use crate::row::{FailRow, ListKind, PendingRow, ResultRow, Row};
use conn::{Conns, Target, Tx};
use listener::Listener;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) struct Postgres {
    conns: Conns,
    listener: Listener,
}

/// The hash in column `i` of a row of blob `id`; one that is not 32 bytes is damage naming
/// the blob. (PostgreSQL keeps each column's type, so only lengths and contents can be wrong.)
fn hash_of(row: &::postgres::Row, i: usize, id: BlobId) -> Result<Hash> {
    let bytes = row.get::<_, &[u8]>(i);
    Hash::from_bytes(bytes).map_err(|_| fail::damaged_hash(id, bytes))
}

/// The advisory-lock key of a hash: its first eight bytes.
fn hash_key(h: &Hash) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    i64::from_be_bytes(b)
}

impl Postgres {
    /// `wake` is called from the listener's thread whenever another process (or this one) may
    /// have changed the queue.
    pub fn open(url: &str, durability: Durability, lease: Duration, wake: Wake) -> Result<Postgres> {
        let mut target = Target::parse(url, durability)?;
        target.fit_to_lease(lease);
        let mut conn = target.connect(false)?;
        setup(&mut Tx { c: &mut conn, t: &target }).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(m),
            e => e.context(format!("cannot set up batchdb in {}", target.shown)),
        })?;
        let listener = Listener::new(&target, wake);
        Ok(Postgres { conns: Conns { target, pool: Mutex::new(vec![conn]) }, listener })
    }
}

/// Creates or migrates the schema, under an advisory lock that serializes clients doing the
/// same. A schema that holds other tables and no batchdb `meta`, or a newer version, is
/// refused and left unchanged.
fn setup(t: &mut Tx<'_>) -> Result<()> {
    let shown = t.t.shown.clone();
    let schema = t.t.schema.clone();
    let begin = t.t.begin();
    t.batch(begin)?;
    let run = |t: &mut Tx<'_>| -> Result<()> {
        t.exec(SETUP_LOCK, &[&SETUP_LOCK_KEY])?;
        let row = t.one(SCHEMA_HAS_META, &[&schema])?;
        let (has_meta, objects): (bool, i64) = (row.get(0), row.get(1));
        let version = if has_meta {
            t.one(VERSION, &[])?.get::<_, i64>(0)
        } else if objects > 0 {
            return Err(Error::invalid(format!(
                "{shown}: schema {schema} is not a batchdb database (it holds {objects} other \
                 table(s) and no batchdb meta table); name another with ?schema=NAME"
            )));
        } else {
            t.batch(&create_schema(&schema))?;
            0
        };
        if version > MIGRATIONS.len() as i64 {
            return Err(Error::invalid(format!(
                "{shown}: schema {schema} has schema version {version}, newer than this batchdb \
                 understands ({}); upgrade batchdb to open it",
                MIGRATIONS.len()
            )));
        }
        for (i, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            t.batch(script)?;
            t.exec(SET_VERSION, &[&(i as i64 + 1)])?;
        }
        Ok(())
    };
    match run(t) {
        Ok(()) => t.batch(COMMIT),
        Err(e) => {
            let _ = t.batch(ROLLBACK);
            Err(e)
        }
    }
}
/// The lock a publication of `b` takes on its hash: (shared, key). gc, and writers of staged
/// content, take turns on a hash until commit. Unstaged writers share the lock: many workers
/// completing with the same (say empty) output must not queue behind each other's commits.
fn hash_lock(b: &Finished) -> (bool, i64) {
    (b.stage.is_none(), hash_key(&b.hash))
}

/// Takes the lock [`publish_blob`] needs, where the transaction's `BEGIN` did not
/// ([`Conns::write_locked`]).
fn lock_hash(t: &mut Tx<'_>, b: &Finished) -> Result<()> {
    let (shared, key) = hash_lock(b);
    t.exec(if shared { HASH_LOCK_SHARED } else { HASH_LOCK }, &[&key]).map(|_| ())
}

/// Publishes `b` (its hash's lock held: [`hash_lock`]): its blob id, and the staging area
/// to clear when the content was there already.
fn publish_blob(t: &mut Tx<'_>, b: &Finished) -> Result<(BlobId, Option<BlobId>)> {
    let hash: &[u8] = b.hash.as_bytes().as_slice();
    let size = b.size as i64;
    let Some(stage) = b.stage else {
        let (id, new): (BlobId, bool) = match t.opt(BLOB_FIND_OR_INSERT, &[&hash, &size])? {
            Some(row) => (row.get(0), row.get(1)),
            // Another writer committed the same content meanwhile (the insert waited for it).
            None => (t.one(BLOB_BY_HASH, &[&hash])?.get(0), false),
        };
        if new && !b.tail.is_empty() {
            t.exec(CHUNK_INSERT, &[&id, &0i64, &b.tail, &chunk_digest(id, 0, &b.tail)])?;
        }
        return Ok((id, None));
    };
    if let Some(row) = t.opt(BLOB_BY_HASH, &[&hash])? {
        t.exec(STAGE_ABANDON, &[&stage])?;
        return Ok((row.get(0), Some(stage)));
    }
    if !b.tail.is_empty() {
        t.exec(CHUNK_INSERT, &[&stage, &b.next_seq, &b.tail, &chunk_digest(stage, b.next_seq, &b.tail)])?;
    }
    if t.exec(STAGE_PUBLISH, &[&stage, &hash, &size])? != 1 {
        return Err(fail::publish_gone(&b.hash));
    }
    Ok((stage, None))
}

/// The instance a claim took, from the columns of [`CLAIM_NEWEST`] starting at `at`, with
/// the results of the upstreams it waited for.
fn claimed(t: &mut Tx<'_>, row: &::postgres::Row, at: usize) -> Result<Claimed> {
    let created: i64 = row.get(at);
    let job: BlobId = row.get(at + 1);
    let after = if row.get::<_, i64>(at + 7) == 0 {
        Vec::new()
    } else {
        t.query(UPSTREAM_RESULTS, &[&created])?
            .iter()
            .map(|r| Ok((hash_of(r, 0, r.get(3))?, r.get(1), hash_of(r, 2, r.get(4))?)))
            .collect::<Result<_>>()?
    };
    Ok(Claimed {
        created,
        payload: job,
        attempt: row.get::<_, i64>(at + 2) as u32,
        key: hash_of(row, at + 3, job)?,
        size: row.get::<_, i64>(at + 4) as u64,
        after,
        first_chunk: row
            .get::<_, Option<Vec<u8>>>(at + 5)
            .map(|data| Ok(Chunk { data, digest: Some(row.get(at + 6)) })),
    })
}

/// The id of queue `name`, its row created when missing.
fn queue_id(t: &mut Tx<'_>, name: &str) -> Result<i64> {
    if name == DEFAULT_QUEUE {
        return Ok(DEFAULT_QUEUE_ID);
    }
    if let Some(r) = t.opt(QUEUE_ID, &[&name])? {
        return Ok(r.get(0));
    }
    Ok(t.one(QUEUE_INSERT, &[&name])?.get(0))
}

/// The statements of the write procedures both backends share ([`steps`]).
impl Steps for Tx<'_> {
    /// Taking `created` locks its row on `meta` until commit, which serializes pushes: a
    /// unique push's look for a live instance then sees every push committed before it.
    const CREATED_FIRST: bool = true;

    fn next_created(&mut self) -> Result<i64> {
        Ok(self.one(NEXT_CREATED, &[&now_ms()])?.get(0))
    }

    fn queue_id(&mut self, name: &str) -> Result<i64> {
        queue_id(self, name)
    }

    fn live_instance(&mut self, job: BlobId, queue: i64) -> Result<Option<i64>> {
        Ok(self.one(LIVE_INSTANCE, &[&job, &queue])?.get(0))
    }

    fn newest_result(&mut self, job: BlobId) -> Result<Option<(i64, Hash)>> {
        match self.opt(NEWEST_RESULT, &[&job])? {
            Some(r) => Ok(Some((r.get(0), hash_of(&r, 1, r.get(2))?))),
            None => Ok(None),
        }
    }

    fn upstream_state(&mut self, key: &Hash, created: i64) -> Result<Option<UpstreamState>> {
        let bytes: &[u8] = key.as_bytes().as_slice();
        Ok(self.opt(UPSTREAM_STATE, &[&bytes, &created])?.map(|r| UpstreamState {
            job: r.get(0),
            live: r.get::<_, Option<i64>>(1).is_some(),
            done: r.get(2),
            failed: r.get(3),
        }))
    }

    fn edge_insert(&mut self, created: i64, up_job: BlobId, up_created: i64) -> Result<()> {
        self.exec(EDGE_INSERT, &[&created, &up_job, &up_created]).map(drop)
    }

    fn instance_insert(&mut self, i: &NewInstance) -> Result<()> {
        self.exec(
            INSTANCE_INSERT,
            &[&i.created, &i.job, &i.state, &i.priority, &i.run_at, &i.queue, &i.waiting_on, &i.deps],
        )?;
        // Waiters of other clients learn of it at commit.
        self.notify()
    }

    fn instance_delete(&mut self, created: i64) -> Result<()> {
        self.exec(INSTANCE_DELETE, &[&created]).map(drop)
    }

    fn fail_insert(&mut self, created: i64, job: BlobId, message: &str, end: i64, queue: i64) -> Result<()> {
        self.exec(FAIL_INSERT, &[&created, &job, &message, &None::<i64>, &end, &0i64, &queue]).map(drop)
    }

    fn dependents(&mut self, up: i64) -> Result<Vec<(i64, BlobId, i64, Hash)>> {
        self.query(DEPENDENTS, &[&up])?
            .iter()
            .map(|r| {
                let job: BlobId = r.get(1);
                Ok((r.get(0), job, r.get(2), hash_of(r, 3, job)?))
            })
            .collect()
    }

    fn blob_by_hash(&mut self, hash: &Hash) -> Result<Option<BlobId>> {
        let bytes: &[u8] = hash.as_bytes().as_slice();
        Ok(self.opt(BLOB_BY_HASH, &[&bytes])?.map(|r| r.get(0)))
    }

    fn job_by_hash(&mut self, key: &Hash) -> Result<BlobId> {
        job_by_hash(self, key)
    }

    fn mark_job(&mut self, id: BlobId, key: &Hash) -> Result<()> {
        let bytes: &[u8] = key.as_bytes().as_slice();
        self.exec(JOB_INSERT, &[&id, &bytes]).map(drop)
    }

    fn set_queue(&mut self, name: &str, limit: Option<u32>, paused: bool) -> Result<()> {
        let limit = limit.map(i64::from);
        self.exec(QUEUE_SET_LIMIT, &[&name, &limit])?;
        self.exec(QUEUE_SET_PAUSED, &[&name, &paused]).map(drop)
    }

    fn schedule_put(&mut self, s: &NewSchedule, job: BlobId, queue: i64) -> Result<()> {
        self.exec(SCHEDULE_PUT, &[&s.name, &s.spec, &job, &queue, &(s.priority as i64), &s.next_run])
            .map(drop)
    }

    fn known_instance(&mut self, _job: BlobId, created: i64) -> Result<bool> {
        Ok(self.one(KNOWN_INSTANCE, &[&created])?.get(0))
    }

    fn upstreams_left(&mut self, created: i64) -> Result<i64> {
        Ok(self.one(UPSTREAMS_LEFT, &[&created])?.get(0))
    }

    fn created_at_least(&mut self, created: i64) -> Result<()> {
        self.exec(CREATED_AT_LEAST, &[&created]).map(drop)
    }

    fn result_import(
        &mut self,
        created: i64,
        job: BlobId,
        blob: BlobId,
        start: i64,
        end: i64,
    ) -> Result<bool> {
        Ok(self.exec(RESULT_IMPORT, &[&created, &job, &blob, &start, &end])? == 1)
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
        Ok(self.exec(FAIL_IMPORT, &[&created, &job, &message, &start, &end, &(attempts as i64)])? == 1)
    }

    fn release_dependents(&mut self, created: i64, now: i64) -> Result<()> {
        self.exec(RELEASE_DEPENDENTS, &[&created, &now]).map(drop)
    }

    fn fail_of(&mut self, key: &Hash, created: i64) -> Result<Option<(BlobId, i64)>> {
        let hash: &[u8] = key.as_bytes().as_slice();
        Ok(self.opt(FAIL_OF, &[&created, &hash])?.map(|r| (r.get(0), r.get(1))))
    }

    fn fail_remove(&mut self, created: i64) -> Result<()> {
        self.exec(FAIL_DELETE, &[&created])?;
        self.exec(COUNT_REMOVED, &[&REMOVED_FAILS, &1i64]).map(drop)
    }

    fn schedules_due(&mut self, now: i64) -> Result<Vec<DueSchedule>> {
        self.query(SCHEDULES_DUE, &[&now])?
            .iter()
            .map(|r| {
                let job: BlobId = r.get(2);
                Ok(DueSchedule {
                    name: r.get(0),
                    spec: r.get(1),
                    job,
                    queue: r.get(3),
                    priority: r.get::<_, i64>(4) as i32,
                    next_run: r.get(5),
                    key: hash_of(r, 6, job)?,
                })
            })
            .collect()
    }

    fn schedule_advance(&mut self, name: &str, next: i64, slot: i64) -> Result<()> {
        self.exec(SCHEDULE_ADVANCE, &[&name, &next, &slot]).map(drop)
    }

    fn job_page(&mut self, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>> {
        let start: &[u8] = after.hash.as_ref().map_or(&[], |h| h.as_bytes().as_slice());
        let jobs: Vec<(Hash, BlobId)> = self
            .query(LIST_JOBS, &[&start, &(limit as i64)])?
            .iter()
            .map(|r| Ok((hash_of(r, 0, r.get(1))?, r.get(1))))
            .collect::<Result<_>>()?;
        let mut running: HashMap<BlobId, Vec<i64>> = HashMap::new();
        if !jobs.is_empty() {
            for r in self.query(RUNNING_INSTANCES, &[])? {
                running.entry(r.get(0)).or_default().push(r.get(1));
            }
        }
        Ok(super::job_rows(jobs, running))
    }

    fn pending_page(&mut self, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>> {
        self.query(LIST_PENDING, &[&after.created, &(limit as i64)])?
            .iter()
            .map(|r| {
                let created: i64 = r.get(0);
                let priority = r.get::<_, i64>(3) as i32;
                let state = r.get::<_, i64>(2);
                let running = state == RUNNING;
                let queue: Option<String> = r.get(6);
                let done: Option<f64> = r.get(7);
                Ok((
                    Row::Pending(PendingRow {
                        job: hash_of(r, 1, r.get(5))?,
                        created,
                        running,
                        priority: (priority != 0).then_some(priority),
                        run_at: r.get(4),
                        queue: queue.filter(|q| q != DEFAULT_QUEUE),
                        progress: done.filter(|_| running).map(|done| Progress {
                            done,
                            message: r.get::<_, Option<String>>(8).unwrap_or_default(),
                        }),
                        after: (state == UPSTREAM).then(Vec::new),
                        start: if running { r.get(9) } else { None },
                        lease_until: if running { r.get(10) } else { None },
                    }),
                    Pos { hash: None, job: 0, created },
                ))
            })
            .collect()
    }

    fn waiting_on(&mut self, created: i64) -> Result<Vec<(Hash, i64)>> {
        edges(self, WAITING_ON, created)
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
        self.query(sql, &[&job, &created, &(limit as i64)])?
            .iter()
            .map(|r| {
                let created = r.get(0);
                Ok((keyed_row(kind, key, created, r, 1)?, Pos { hash: Some(key), job, created }))
            })
            .collect()
    }

    fn keyed_after_job(&mut self, kind: Keyed, start: &[u8], limit: usize) -> Result<Vec<(Row, Pos)>> {
        let sql = match kind {
            Keyed::Results => LIST_RESULTS_AFTER_JOB,
            Keyed::Fails => LIST_FAILS_AFTER_JOB,
        };
        self.query(sql, &[&start, &(limit as i64)])?
            .iter()
            .map(|r| {
                let key = hash_of(r, 0, r.get(1))?;
                let created = r.get(2);
                Ok((keyed_row(kind, key, created, r, 3)?, Pos { hash: Some(key), job: r.get(1), created }))
            })
            .collect()
    }
}

/// A result or fail row from the columns of a `LIST_*` statement, starting at column `at`:
/// a result's (hash, start, end, blob id), a fail's (message, start, end, attempts).
fn keyed_row(kind: Keyed, key: Hash, created: i64, r: &::postgres::Row, at: usize) -> Result<Row> {
    Ok(match kind {
        Keyed::Results => Row::Result(ResultRow {
            key,
            created,
            hash: hash_of(r, at, r.get(at + 3))?,
            start: r.get(at + 1),
            end: r.get(at + 2),
        }),
        Keyed::Fails => Row::Fail(FailRow {
            key,
            created,
            message: r.get(at),
            start: r.get::<_, Option<i64>>(at + 1).unwrap_or(0),
            end: r.get(at + 2),
            attempts: r.get::<_, i64>(at + 3) as u32,
        }),
    })
}

/// The upstreams `(key, created)` listed by `sql` for instance `created`.
fn edges(t: &mut Tx<'_>, sql: &'static str, created: i64) -> Result<Vec<(Hash, i64)>> {
    t.query(sql, &[&created])?.iter().map(|r| Ok((hash_of(r, 0, r.get(2))?, r.get(1)))).collect()
}

fn queue_states(t: &mut Tx<'_>) -> Result<Vec<QueueState>> {
    Ok(t.query(QUEUE_STATES, &[])?.iter().map(|r| queue_state(r, 0)).collect())
}

/// A queue's state from the columns of [`QUEUE_STATES`], starting at column `at`.
fn queue_state(r: &::postgres::Row, at: usize) -> QueueState {
    QueueState {
        id: r.get(at),
        name: r.get(at + 1),
        limit: r.get(at + 2),
        paused: r.get(at + 3),
        running: r.get(at + 4),
        ready: r.get(at + 5),
    }
}

fn job_by_hash(t: &mut Tx<'_>, key: &Hash) -> Result<BlobId> {
    let hash: &[u8] = key.as_bytes().as_slice();
    t.opt(JOB_BY_HASH, &[&hash])?.map(|r| r.get(0)).ok_or_else(|| fail::job_not_found(key))
}

/// The fence: the instance must still be running under this attempt. Locks its row. Its job,
/// start and queue.
fn fence(t: &mut Tx<'_>, created: i64, attempt: u32) -> Result<(BlobId, i64, i64)> {
    t.opt(FENCE, &[&created, &(attempt as i64)])?
        .map(|r| (r.get(0), r.get::<_, Option<i64>>(1).unwrap_or(0), r.get(2)))
        .ok_or_else(|| fail::not_held(created, attempt))
}

impl Store for Postgres {
    fn stage_begin(&self, lease_ms: i64) -> Result<BlobId> {
        self.conns.write_lazy(|t| Ok(t.one(STAGE_BEGIN, &[&(now_ms() + lease_ms)])?.get(0)))
    }

    fn stage_write(
        &self,
        stage: BlobId,
        seq: i64,
        data: Vec<u8>,
        digest: i64,
        lease_ms: i64,
    ) -> Result<Vec<u8>> {
        self.conns.write_lazy(|t| {
            if t.exec(STAGE_RENEW, &[&stage, &(now_ms() + lease_ms)])? != 1 {
                return Err(fail::stage_gone(stage));
            }
            t.exec(CHUNK_INSERT, &[&stage, &seq, &data, &digest])?;
            Ok(())
        })?;
        Ok(data)
    }

    fn stage_abandon(&self, stage: BlobId) -> Result<()> {
        self.conns.write(|t| t.exec(STAGE_ABANDON, &[&stage]))?;
        Ok(())
    }

    fn stage_delete(&self, stage: BlobId) -> Result<()> {
        self.conns.write(|t| t.exec(STAGE_DELETE, &[&stage]))?;
        Ok(())
    }

    fn publish(&self, blob: Finished, register: Register) -> Result<Published> {
        let (shared, key) = hash_lock(&blob);
        self.conns.write_locked(shared, key, |t| {
            let (id, duplicate_stage) = publish_blob(t, &blob)?;
            let push = match register {
                Register::Job { push } => {
                    let hash: &[u8] = blob.hash.as_bytes().as_slice();
                    t.exec(JOB_INSERT, &[&id, &hash])?;
                    push
                }
                Register::Blob => None,
            };
            let created = match push {
                Some(spec) => Some(steps::push(t, id, &spec)?),
                None => None,
            };
            Ok(Published { created, duplicate_stage })
        })
    }

    fn publish_many(&self, blobs: Vec<Finished>, push: PushSpec) -> Result<Vec<Pushed>> {
        self.conns.write(|t| {
            let mut created = Vec::with_capacity(blobs.len());
            for blob in &blobs {
                debug_assert!(blob.stage.is_none(), "publish_many takes unstaged blobs only");
                lock_hash(t, blob)?;
                let (id, _) = publish_blob(t, blob)?;
                let hash: &[u8] = blob.hash.as_bytes().as_slice();
                t.exec(JOB_INSERT, &[&id, &hash])?;
                created.push(steps::push(t, id, &push)?);
            }
            Ok(created)
        })
    }

    fn blob(&self, hash: &Hash) -> Result<Option<(BlobId, u64)>> {
        let bytes: &[u8] = hash.as_bytes().as_slice();
        let found = self.conns.read(|t| {
            Ok(t.opt(BLOB_BY_HASH, &[&bytes])?
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get::<_, Vec<u8>>(2))))
        })?;
        found.map(|(id, size, stored)| fail::found_other(hash, id, &stored).map(|()| (id, size))).transpose()
    }

    fn chunk(&self, blob: BlobId, seq: i64) -> Result<Option<Chunk>> {
        self.conns.read(|t| {
            Ok(t.opt(CHUNK_GET, &[&blob, &seq])?.map(|r| Chunk { data: r.get(0), digest: Some(r.get(1)) }))
        })
    }

    fn push(&self, key: &Hash, spec: PushSpec) -> Result<Pushed> {
        self.conns.write(|t| {
            let job = job_by_hash(t, key)?;
            steps::push(t, job, &spec)
        })
    }

    fn claim(&self, p: &ClaimParams) -> Result<ClaimOutcome> {
        let (lease_ms, max_attempts, order) = (p.lease_ms, p.max_attempts as i64, p.order);
        let served = p.queues.as_deref();
        // Most claims need nothing but the claim itself: one statement, one round trip.
        let fast = match order {
            Order::NewestFirst => CLAIM_FAST_NEWEST,
            Order::OldestFirst => CLAIM_FAST_OLDEST,
        };
        let quick = self.conns.lazy_statement(|t| {
            let row = t.one(fast, &[&now_ms(), &lease_ms, &served])?;
            if row.get::<_, bool>(0) {
                return Ok(None);
            }
            let claimed = match row.get::<_, Option<i64>>(1) {
                Some(_) => Some(claimed(t, &row, 1)?),
                None => None,
            };
            Ok(Some(ClaimOutcome { claimed, expired: Vec::new(), fired: Vec::new() }))
        })?;
        if let Some(outcome) = quick {
            return Ok(outcome);
        }
        self.conns.write_lazy(|t| {
            let now = now_ms();
            let mut expired = Vec::new();
            type Stale = (i64, i64, BlobId, Option<i64>, i64);
            let stale: Vec<Stale> = t
                .query(EXPIRED, &[&now])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                .collect();
            let mut changed = false;
            for (created, attempts, job, start, queue) in stale {
                if attempts >= max_attempts {
                    let message = fail::lease_expired(attempts);
                    t.exec(FAIL_INSERT, &[&created, &job, &message, &start, &now, &attempts, &queue])?;
                    t.exec(INSTANCE_DELETE, &[&created])?;
                    let key = hash_of(&t.one(JOB_HASH, &[&job])?, 0, job)?;
                    expired.push(Expired { key, created, message });
                    expired.extend(steps::fail_dependents(t, key, created, Gone::Failed, now)?);
                } else {
                    t.exec(REQUEUE_NOW, &[&created])?;
                    changed = true;
                }
            }
            let rows = t.query(PROMOTE_AND_STATES, &[&now])?;
            let promoted = rows.first().is_some_and(|r| r.get::<_, i64>(0) > 0);
            let due = rows.first().is_some_and(|r| r.get::<_, bool>(1));
            let fired = if due { steps::fire_schedules(t, now)? } else { Vec::new() };
            changed |= promoted || !fired.is_empty();
            // The statement's snapshot predates its own promotions (and the schedules' pushes).
            let mut states = if promoted || !fired.is_empty() {
                queue_states(t)?
            } else {
                rows.iter().map(|r| queue_state(r, 2)).collect()
            };
            // Limited queues: lock their rows, then count their running instances afresh, so
            // that this count and this claim commit together whatever other clients do.
            let limited: Vec<i64> = states
                .iter()
                .filter(|q| q.ready && q.limit.is_some() && q.claimable(served))
                .map(|q| q.id)
                .collect();
            if !limited.is_empty() {
                t.query(QUEUE_LOCK, &[&limited])?;
                let counts: HashMap<i64, i64> =
                    t.query(QUEUE_RUNNING, &[&limited])?.iter().map(|r| (r.get(0), r.get(1))).collect();
                for q in states.iter_mut().filter(|q| limited.contains(&q.id)) {
                    q.running = counts.get(&q.id).copied().unwrap_or(0);
                }
            }
            let ids: Vec<i64> =
                states.iter().filter(|q| q.ready && q.claimable(served)).map(|q| q.id).collect();
            let sql = match order {
                Order::NewestFirst => CLAIM_NEWEST,
                Order::OldestFirst => CLAIM_OLDEST,
            };
            let row = if ids.is_empty() { None } else { t.opt(sql, &[&now, &lease_ms, &ids])? };
            let claimed = match row {
                Some(row) => Some(claimed(t, &row, 0)?),
                None => None,
            };
            if changed {
                // Work became claimable: a lease ran out, or a delay ended.
                t.notify()?;
            } else if !expired.is_empty() {
                t.notify_if_drained()?;
            }
            Ok(ClaimOutcome { claimed, expired, fired })
        })
    }

    fn progress(&self, created: i64, attempt: u32, done: f64, message: &str) -> Result<()> {
        let n =
            self.conns.write_lazy(|t| t.exec(PROGRESS, &[&created, &(attempt as i64), &done, &message]))?;
        if n == 0 {
            return Err(fail::not_held(created, attempt));
        }
        Ok(())
    }

    fn set_limit(&self, queue: &str, limit: Option<u32>) -> Result<()> {
        let limit = limit.map(i64::from);
        self.conns.write(|t| {
            t.exec(QUEUE_SET_LIMIT, &[&queue, &limit])?;
            t.notify()
        })
    }

    fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        self.conns.write(|t| {
            t.exec(QUEUE_SET_PAUSED, &[&queue, &paused])?;
            t.notify()
        })
    }

    fn queues(&self) -> Result<Vec<QueueStats>> {
        self.conns.read(|t| {
            Ok(t.query(QUEUE_STATS, &[])?
                .iter()
                .map(|r| {
                    let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
                    QueueStats {
                        name: r.get(0),
                        limit: r.get::<_, Option<i64>>(1).map(|l| l.clamp(0, u32::MAX as i64) as u32),
                        paused: r.get(2),
                        pending: n(3),
                        running: n(4),
                        waiting: n(5),
                        oldest_ready: r.get(6),
                    }
                })
                .collect())
        })
    }

    fn schedule_put(&self, s: NewSchedule) -> Result<()> {
        self.conns.write(|t| {
            let job = job_by_hash(t, &s.job)?;
            let queue = queue_id(t, &s.queue)?;
            t.exec(SCHEDULE_PUT, &[&s.name, &s.spec, &job, &queue, &(s.priority as i64), &s.next_run])?;
            t.notify()
        })
    }

    fn schedule_remove(&self, name: &str) -> Result<()> {
        self.conns.write(|t| match t.exec(SCHEDULE_DELETE, &[&name])? {
            0 => Err(fail::schedule_not_found(name)),
            _ => Ok(()),
        })
    }

    fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.conns.read(|t| {
            t.query(SCHEDULE_LIST, &[])?
                .iter()
                .map(|r| {
                    Ok(ScheduleRow {
                        name: r.get(0),
                        spec: r.get(1),
                        queue: r.get(2),
                        job: hash_of(r, 3, r.get(5))?,
                        next_run: r.get(4),
                        priority: r.get::<_, i64>(6) as i32,
                    })
                })
                .collect()
        })
    }

    fn completions(&self, since: i64) -> Result<Vec<(i64, u64, u64)>> {
        self.conns.read(|t| {
            Ok(t.query(COMPLETIONS, &[&since])?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64, r.get::<_, i64>(2).max(0) as u64))
                .collect())
        })
    }

    fn renew(&self, jobs: Vec<(i64, u32)>, stages: Vec<BlobId>, lease_ms: i64) -> Result<()> {
        self.conns.write_lazy(|t| {
            let until = now_ms() + lease_ms;
            for (created, attempt) in &jobs {
                t.exec(RENEW, &[created, &(*attempt as i64), &until])?;
            }
            for stage in &stages {
                t.exec(STAGE_RENEW, &[stage, &until])?;
            }
            Ok(())
        })
    }

    fn complete(&self, created: i64, attempt: u32, output: Arc<Finished>) -> Result<Completed> {
        let (shared, key) = hash_lock(&output);
        self.conns.write_locked(shared, key, |t| {
            let (blob, surplus) = publish_blob(t, &output)?;
            let end = now_ms();
            let channel = t.t.channel.clone();
            if t.opt(COMPLETE, &[&created, &(attempt as i64), &blob, &end, &channel])?.is_none() {
                // Rolled back with the output's publication.
                return Err(fail::not_held(created, attempt));
            }
            Ok((end, surplus))
        })
    }

    fn fail(
        &self,
        created: i64,
        attempt: u32,
        message: &str,
        requeue_at: Option<i64>,
    ) -> Result<(i64, Vec<Expired>)> {
        self.conns.write(|t| {
            let (job, start, queue) = fence(t, created, attempt)?;
            let end = now_ms();
            match requeue_at {
                Some(at) => {
                    t.exec(REQUEUE_AT, &[&created, &at])?;
                    t.notify()?;
                    Ok((end, Vec::new()))
                }
                None => {
                    t.exec(
                        FAIL_INSERT,
                        &[&created, &job, &message, &start, &end, &(attempt as i64), &queue],
                    )?;
                    t.exec(INSTANCE_DELETE, &[&created])?;
                    let key = hash_of(&t.one(JOB_HASH, &[&job])?, 0, job)?;
                    let dependents = steps::fail_dependents(t, key, created, Gone::Failed, end)?;
                    t.notify_if_drained()?;
                    let channel = t.t.channel.clone();
                    t.query(NOTIFY_IF_LIMITED, &[&channel, &queue])?;
                    Ok((end, dependents))
                }
            }
        })
    }

    fn retry(&self, key: &Hash, created: i64) -> Result<i64> {
        self.conns.write(|t| steps::retry(t, key, created))
    }

    fn cancel(&self, key: &Hash, created: i64) -> Result<Vec<Expired>> {
        let hash: &[u8] = key.as_bytes().as_slice();
        self.conns.write(|t| {
            let state: i64 = t
                .opt(INSTANCE_OF, &[&created, &hash])?
                .map(|r| r.get(0))
                .ok_or_else(|| fail::no_pending_instance(key, created))?;
            if state == RUNNING {
                return Err(fail::instance_running(key, created));
            }
            t.exec(INSTANCE_DELETE, &[&created])?;
            let dependents = steps::fail_dependents(t, *key, created, Gone::Cancelled, now_ms())?;
            t.notify_if_drained()?;
            Ok(dependents)
        })
    }

    /// A server has no file to copy: `Db::backup` copies row by row into a new file.
    fn backup(&self, _tmp: &Path) -> Result<bool> {
        Ok(false)
    }

    fn identity(&self) -> Result<(i64, Option<i64>)> {
        self.conns.read(|t| {
            let r = t.one(IDENTITY, &[])?;
            Ok((r.get(0), Some(r.get::<_, i64>(1)).filter(|v| *v != 0)))
        })
    }

    fn set_copied_from(&self, source: i64) -> Result<()> {
        self.conns.write(|t| t.exec(SET_COPIED_FROM, &[&source]).map(|_| ()))
    }

    fn import(&self, rows: Vec<ImportRow>) -> Result<()> {
        self.conns.write(|t| {
            for row in rows.iter().cloned() {
                steps::import_row(t, row)?;
            }
            t.notify()
        })
    }

    fn edges(&self, created: i64) -> Result<Vec<(Hash, i64)>> {
        self.conns.read(|t| edges(t, EDGES_OF, created))
    }

    fn why(&self, hash: &Hash) -> Result<Option<Lineage>> {
        let bytes: &[u8] = hash.as_bytes().as_slice();
        self.conns.tx(BEGIN_SNAPSHOT, |t| {
            let Some(r) = t.opt(BLOB_JOB_FLAG, &[&bytes])? else { return Ok(None) };
            let (id, job): (BlobId, bool) = (r.get(0), r.get(1));
            let rows: Vec<(Hash, i64)> = t
                .query(RESULTS_WITH_BLOB, &[&id])?
                .iter()
                .map(|r| Ok((hash_of(r, 0, r.get(2))?, r.get(1))))
                .collect::<Result<_>>()?;
            let mut results = Vec::with_capacity(rows.len());
            for (key, created) in rows {
                results.push(LineageResult { key, created, after: edges(t, EDGES_OF, created)? });
            }
            Ok(Some(Lineage { job, results }))
        })
    }

    fn prune(&self, older_than_ms: i64) -> Result<u64> {
        self.conns.write(|t| {
            let results = t.exec(PRUNE_RESULTS, &[&older_than_ms])?;
            let fails = t.exec(PRUNE_FAILS, &[&older_than_ms])?;
            t.exec(COUNT_REMOVED, &[&REMOVED_RESULTS, &(results as i64)])?;
            t.exec(COUNT_REMOVED, &[&REMOVED_FAILS, &(fails as i64)])?;
            Ok(results + fails)
        })
    }

    fn idle(&self) -> Result<IdleFacts> {
        self.conns.read(|t| {
            let queues = queue_states(t)?;
            let r = t.one(IDLE, &[])?;
            Ok(IdleFacts {
                queues,
                running: r.get(0),
                earliest_wait: r.get(1),
                earliest_lease: r.get(2),
                next_schedule: r.get(3),
            })
        })
    }

    /// The count kept by the listener, without I/O; the first call starts the listener.
    fn change_counter(&self) -> Result<i64> {
        self.listener.count()
    }

    fn wakes_waiters(&self) -> bool {
        self.listener.listening()
    }

    fn list(&self, kind: ListKind, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>> {
        self.conns.tx(BEGIN_SNAPSHOT, |t| steps::list(t, kind, after, limit))
    }

    fn stale_stages(&self, now: i64) -> Result<Vec<BlobId>> {
        self.conns.read(|t| Ok(t.query(STALE_STAGES, &[&now, &GC_PAGE])?.iter().map(|r| r.get(0)).collect()))
    }

    fn stage_expire_if_stale(&self, stage: BlobId, now: i64) -> Result<bool> {
        Ok(self.conns.write(|t| t.exec(STAGE_EXPIRE_IF_STALE, &[&stage, &now]))? == 1)
    }

    fn chunks_delete_some(&self, blob: BlobId) -> Result<(u64, u64)> {
        let sizes: Vec<i64> = self.conns.write(|t| {
            Ok(t.query(CHUNK_DELETE_SOME, &[&blob, &CHUNK_BATCH])?
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect())
        })?;
        Ok((sizes.len() as u64, sizes.iter().sum::<i64>() as u64))
    }

    fn unreferenced_blobs(&self, after: BlobId) -> Result<Vec<(BlobId, Hash)>> {
        self.conns.read(|t| {
            t.query(UNREFERENCED_BLOBS, &[&after, &GC_PAGE])?
                .iter()
                .map(|r| Ok((r.get(0), hash_of(r, 1, r.get(0))?)))
                .collect()
        })
    }

    /// Under the hash's lock, a writer publishing the same content either already committed
    /// its reference (the update sees it) or finds no blob afterwards and writes it anew.
    fn blob_unpublish_unreferenced(&self, blob: BlobId, hash: &Hash) -> Result<Option<u64>> {
        let done = self.conns.write(|t| {
            t.exec(HASH_LOCK, &[&hash_key(hash)])?;
            t.exec(BLOB_UNPUBLISH_UNREFERENCED, &[&blob])
        })?;
        // Chunks only: PostgreSQL keeps no bytes inline in the blob row.
        Ok((done == 1).then_some(0))
    }

    fn orphan_chunk_owners(&self) -> Result<Vec<BlobId>> {
        self.conns.read(|t| Ok(t.query(ORPHAN_CHUNK_OWNERS, &[])?.iter().map(|r| r.get(0)).collect()))
    }

    /// PostgreSQL checks its own pages; this reports orphan chunks and dangling references.
    fn check_structure(&self) -> Result<Vec<String>> {
        self.conns.tx(BEGIN_SNAPSHOT, |t| {
            let mut problems = Vec::new();
            for r in t.query(ORPHAN_CHUNK_OWNERS, &[])? {
                let (owner, n): (i64, i64) = (r.get(0), r.get(1));
                problems.push(fail::orphan_chunks(n, owner));
            }
            for r in t.query(DANGLING, &[])? {
                problems.push(r.get::<_, String>(0).to_lowercase());
            }
            let r = t.one(TALLY_CHECK, &[])?;
            let totals: Vec<i64> = (0..10).map(|i| r.get::<_, i64>(i)).collect();
            let (kept, counted) = totals.split_at(5);
            if kept != counted {
                problems.push(fail::totals_differ(kept, counted));
            }
            Ok(problems)
        })
    }

    fn blobs_after(&self, after: BlobId, limit: usize) -> Result<Vec<BlobEntry>> {
        self.conns.read(|t| {
            Ok(t.query(BLOBS_AFTER, &[&after, &(limit as i64)])?
                .iter()
                .map(|r| {
                    // A damaged row is reported by check, which goes on with the next.
                    let id = r.get(0);
                    let row = hash_of(r, 1, id).map(|h| (h, r.get::<_, i64>(2) as u64));
                    BlobEntry { id, row }
                })
                .collect())
        })
    }

    /// `file_bytes` is the size of the schema's tables with their indexes and TOAST data;
    /// `wal_bytes` is 0: the server's write-ahead log is shared and managed by the server.
    fn stats(&self) -> Result<Stats> {
        let (mut s, tally_rows) = self.conns.read(|t| {
            let r = t.one(STATS, &[])?;
            let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
            let s = Stats {
                results_total: n(3) + n(8),
                fails_total: n(4) + n(9),
                queues: Default::default(),
                jobs: n(0),
                pending: n(1),
                running: n(2),
                results: n(3),
                fails: n(4),
                blobs: n(5),
                blob_bytes: n(6),
                file_bytes: n(7),
                wal_bytes: 0,
            };
            Ok((s, n(10)))
        })?;
        s.queues = self.queues()?.into_iter().map(|q| (q.name.clone(), q)).collect();
        if tally_rows > TALLY_FOLD_AT {
            // The next stats sums one row. A fold that fails (a read-only role, say) changes
            // nothing and costs only that: this stats is already counted.
            let _ = self.conns.lazy_statement(|t| t.exec(TALLY_FOLD, &[]));
        }
        Ok(s)
    }
}

/// How many rows of changes `stats` sums before it folds them into one: a few thousand
/// rows are summed in about a millisecond.
const TALLY_FOLD_AT: u64 = 4096;
