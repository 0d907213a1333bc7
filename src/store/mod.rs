//! The storage boundary.
//!
//! The core (blobs, queue, lists, run loop, events) speaks to storage only through [`Store`].
//! Each method is one short transaction with the semantics the contract needs; hashing,
//! heartbeats, waiting and events stay above it. A server-backed backend implements this
//! trait and nothing else changes.

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod steps;

use crate::error::Result;
use crate::hash::Hash;
use crate::location::is_postgres_url;
use crate::options::{Durability, Order, DEFAULT_QUEUE};
use crate::row::{ListKind, Row};
use std::path::Path;
use std::sync::Arc;

/// How a database is opened. PostgreSQL opens every way alike: the server, not batchdb,
/// creates databases, and its own permissions decide what a role may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read and write; a missing or empty file becomes a new database.
    Create,
    /// Read and write an existing database; a missing file is `NotFound`, never created.
    Existing,
    /// Read only: nothing is created, migrated or written, and a user who may not write the
    /// file leaves no file of its own behind (see the SQLite backend's read modes).
    ReadOnly,
}

/// How a store that learns of changes itself (see [`Store::wakes_waiters`]) wakes the
/// process's waiting workers.
pub(crate) type WakeFn = Arc<dyn Fn() + Send + Sync>;

/// Opens the backend that `path` names: a `postgres://` (or `postgresql://`) URL selects the
/// PostgreSQL backend; anything else is an SQLite file. The one place that names a backend.
/// A PostgreSQL key=value connection string is refused rather than taken for a file name
/// (the file would be named after the password).
pub(crate) fn open(
    path: &Path,
    durability: Durability,
    lease: std::time::Duration,
    access: Access,
    wake: WakeFn,
) -> Result<Arc<dyn Store>> {
    if let Some(url) = path.to_str().filter(|p| is_postgres_url(p)) {
        #[cfg(feature = "postgres")]
        {
            let _ = access;
            return Ok(Arc::new(postgres::Postgres::open(url, durability, lease, wake)?));
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (wake, access, lease);
            return Err(crate::error::Error::invalid(format!(
                "{}: this batchdb was built without the postgres feature (build it with --features postgres)",
                crate::location::redact(url)
            )));
        }
    }
    if let Some(conninfo) = path.to_str().filter(|p| crate::location::is_keyword_conninfo(p)) {
        return Err(crate::error::Error::invalid(format!(
            "{}: a PostgreSQL key=value connection string; batchdb takes a postgres:// URL \
             (for a file of this name, write ./ before it)",
            crate::location::redact(conninfo)
        )));
    }
    let _ = wake; // a file's waiters look for changes themselves
    Ok(Arc::new(sqlite::Sqlite::open(path, durability, access)?))
}

/// The row id of a published or staging blob.
pub(crate) type BlobId = i64;

/// A blob whose writer has finished: its leading chunks (if any) sit in a staging area, and
/// `tail` holds the bytes after them.
#[derive(Clone)]
pub(crate) struct Finished {
    pub stage: Option<BlobId>,
    pub next_seq: i64,
    pub tail: Vec<u8>,
    pub hash: Hash,
    pub size: u64,
}

/// The digest stored with chunk `seq` of blob `blob`: XXH3-64 of its bytes, seeded with the
/// chunk's place (see `blob`'s module docs for why not SHA-256), as the signed integer both
/// backends store. The seed binds the bytes to where they belong: a damaged chunk index that
/// hands out another blob's chunk, or the same blob's chunk at another position, fails the
/// check even though those bytes are intact.
pub(crate) fn chunk_digest(blob: BlobId, seq: i64, data: &[u8]) -> i64 {
    let seed = (blob as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq as u64;
    xxhash_rust::xxh3::xxh3_64_with_seed(data, seed) as i64
}

/// One stored chunk of a blob, as read.
pub(crate) struct Chunk {
    pub data: Vec<u8>,
    /// The digest stored with a chunk row; `None` for a small blob's inline bytes, which are
    /// its only chunk and are checked against the blob's hash instead.
    pub digest: Option<i64>,
}

/// What to record with a finished blob, in the same transaction as its publication.
pub(crate) enum Register {
    /// Register the blob as a job, and optionally push an instance of it.
    Job { push: Option<PushSpec> },
    /// Publish the blob only (an output a copy brings over before its result row).
    Blob,
}

/// A row that `copy` brings into a target database: applied idempotently, keeping the
/// source's `created` values, so that a copy can be killed and run again and a second copy
/// changes nothing.
#[derive(Clone, Debug)]
pub(crate) enum ImportRow {
    /// Registers a stored blob as a job.
    Job(Hash),
    Queue {
        name: String,
        limit: Option<u32>,
        paused: bool,
    },
    Schedule(NewSchedule),
    /// A pending instance (a running one in the source arrives ready), unless the target has
    /// that instance, or its result or fail row, already.
    Pending {
        key: Hash,
        created: i64,
        queue: String,
        priority: i32,
        run_at: Option<i64>,
        after: Vec<(Hash, i64)>,
    },
    /// A result; the target's instance of it, if any, is done with (and its dependents
    /// released).
    Result {
        key: Hash,
        created: i64,
        hash: Hash,
        start: i64,
        end: i64,
        after: Vec<(Hash, i64)>,
    },
    Fail {
        key: Hash,
        created: i64,
        message: String,
        start: i64,
        end: i64,
        attempts: u32,
        after: Vec<(Hash, i64)>,
    },
    /// An instance the source no longer has (cancelled there).
    Drop(i64),
}

/// How to push an instance: the checked form of [`PushOptions`](crate::PushOptions).
#[derive(Clone, Debug)]
pub(crate) struct PushSpec {
    pub priority: i32,
    pub delay_ms: i64,
    /// A checked queue name.
    pub queue: String,
    /// Push nothing when an instance of the job is live in the queue (see [`Pushed`]).
    pub unique: bool,
    /// As `unique`, and return the job's newest result instead when it has one.
    pub memo: bool,
    /// Upstream instances this one waits for.
    pub after: Vec<(Hash, i64)>,
}

impl PushSpec {
    /// Checks push options (see [`PushOptions::validate`](crate::PushOptions::validate)).
    pub fn from_options(o: &crate::options::PushOptions) -> Result<PushSpec> {
        o.validate()?;
        Ok(PushSpec {
            priority: o.priority,
            delay_ms: o.delay_ms()?,
            queue: o.queue_name().to_string(),
            unique: o.unique,
            memo: o.memo,
            after: o.after.clone(),
        })
    }

    /// A plain push into the default queue.
    pub fn plain() -> PushSpec {
        PushSpec {
            priority: 0,
            delay_ms: 0,
            queue: DEFAULT_QUEUE.to_string(),
            unique: false,
            memo: false,
            after: Vec::new(),
        }
    }
}

/// The instance a push returns: a new one, or, for a unique or memo push, the live one it
/// found, or, for a memo push, the result it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The instance's `created` (for a cached result, the result's).
    pub created: i64,
    /// True when this push queued it; false when a unique or memo push found it live already
    /// (pending, waiting or running in the same queue), or a memo push found a result, and
    /// queued nothing.
    pub new: bool,
    /// A memo push that found a result of the job: the output's hash (of its newest result).
    pub cached: Option<Hash>,
    /// The new instance became a fail row at once, because an upstream it was to wait for is
    /// a fail row already: the fail row's message (`upstream K C failed`).
    pub failed: Option<String>,
}

impl Pushed {
    /// A new instance.
    pub(crate) fn queued(created: i64) -> Pushed {
        Pushed { created, new: true, cached: None, failed: None }
    }

    /// A live instance found by a unique or memo push.
    pub(crate) fn joined(created: i64) -> Pushed {
        Pushed { created, new: false, cached: None, failed: None }
    }
}

/// Lineage of a blob (see [`Db::why`](crate::Db::why)).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Lineage {
    /// The blob is the payload of a job (its key is the blob's hash).
    pub job: bool,
    /// The result rows whose output it is.
    pub results: Vec<LineageResult>,
}

impl Lineage {
    /// The lineage as the contract's JSON lines: `{"job": K}` when the blob is a job's
    /// payload (K is its hash), then `{"result": [K, C], "after": [[K2, C2], ...]}` for each
    /// result row that produced it (`after` always present, maybe empty).
    pub fn json_lines(&self, hash: &Hash) -> Vec<String> {
        // Structs, not json!: the contract's key order ("result" before "after").
        #[derive(serde::Serialize)]
        struct JobLine<'a> {
            job: &'a Hash,
        }
        #[derive(serde::Serialize)]
        struct ResultLine<'a> {
            result: (&'a Hash, i64),
            after: &'a [(Hash, i64)],
        }
        let mut out = Vec::new();
        if self.job {
            out.extend(serde_json::to_string(&JobLine { job: hash }).ok());
        }
        for r in &self.results {
            out.extend(
                serde_json::to_string(&ResultLine { result: (&r.key, r.created), after: &r.after }).ok(),
            );
        }
        out
    }
}

/// A result row whose output is the blob asked about (see [`Lineage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageResult {
    /// The job's key.
    pub key: Hash,
    /// The instance's `created`.
    pub created: i64,
    /// The upstream instances it waited for, `(key, created)`; empty when none.
    pub after: Vec<(Hash, i64)>,
}

/// How an upstream ended without a result, as its dependents' fail messages say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gone {
    Failed,
    Cancelled,
}

/// The message of a dependent whose upstream ended without a result.
pub(crate) fn upstream_gone(key: &Hash, created: i64, how: Gone) -> String {
    let how = match how {
        Gone::Failed => "failed",
        Gone::Cancelled => "cancelled",
    };
    format!("upstream {key} {created} {how}")
}

/// The `meta` counters of rows removed by prune and retry, which keep `results_total` and
/// `fails_total` from going down.
pub(crate) const REMOVED_RESULTS: &str = "removed_results";
pub(crate) const REMOVED_FAILS: &str = "removed_fails";

/// The id of the default queue's row, which every database has.
pub(crate) const DEFAULT_QUEUE_ID: i64 = 0;

/// A queue as a claim sees it: its settings, how many of its instances run now (counted only
/// when it has a limit), and whether one is ready.
#[derive(Clone, Debug)]
pub(crate) struct QueueState {
    /// The queue row's id (PostgreSQL's claim names the claimable queues by it).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub id: i64,
    pub name: String,
    pub limit: Option<i64>,
    pub paused: bool,
    pub running: i64,
    pub ready: bool,
}

impl QueueState {
    /// Whether a claim serving `served` (None: every queue) may take this queue's instances
    /// now: served, not paused, and below its limit. The one place that rule is written.
    pub fn claimable(&self, served: Option<&[String]>) -> bool {
        served.is_none_or(|s| s.contains(&self.name))
            && !self.paused
            && self.limit.is_none_or(|l| self.running < l)
    }
}

/// The best of the candidates each claimable queue offers (`(created, priority)`): highest
/// priority first, then newest or oldest per the order.
pub(crate) fn best_candidate(cands: impl IntoIterator<Item = (i64, i64)>, order: Order) -> Option<i64> {
    cands
        .into_iter()
        .max_by_key(|&(created, priority)| {
            (priority, if order == Order::NewestFirst { created } else { -created })
        })
        .map(|(created, _)| created)
}

/// A queue as `stats` and [`Db::queues`](crate::Db::queues) show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// The queue's name.
    #[serde(skip)]
    pub name: String,
    /// Instances ready to claim now (not running, not waiting for a delay or backoff).
    pub pending: u64,
    /// Instances held by a worker.
    pub running: u64,
    /// Instances waiting for their delay or backoff to end, or for an upstream.
    pub waiting: u64,
    /// The most instances that may run at once, in every process together; `None`: no limit.
    pub limit: Option<u32>,
    /// Whether claims skip the queue.
    pub paused: bool,
    /// The `created` of the oldest ready instance.
    #[serde(skip)]
    pub oldest_ready: Option<i64>,
}

/// A recurring schedule, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleRow {
    /// The schedule's name.
    pub name: String,
    /// `every DURATION` or a 5-field cron expression (UTC), as given.
    pub spec: String,
    /// The queue its instances are pushed into.
    pub queue: String,
    /// The key of the job it pushes.
    pub job: Hash,
    /// The next slot, epoch ms.
    pub next_run: i64,
    /// The priority of the instances it pushes.
    #[serde(skip)]
    pub priority: i32,
}

/// A schedule to store (see [`Store::schedule_put`]).
#[derive(Clone, Debug)]
pub(crate) struct NewSchedule {
    pub name: String,
    pub spec: String,
    pub job: Hash,
    pub queue: String,
    pub priority: i32,
    pub next_run: i64,
}

/// The outcome of publishing a job payload.
pub(crate) struct Published {
    pub created: Option<Pushed>,
    /// The blob already existed: the staged copy was dropped and must be cleared.
    pub duplicate_stage: Option<BlobId>,
}

/// A claimed instance.
pub(crate) struct Claimed {
    pub key: Hash,
    pub payload: BlobId,
    pub size: u64,
    pub created: i64,
    pub attempt: u32,
    /// The upstream instances it waited for, with their results' hashes.
    pub after: Vec<(Hash, i64, Hash)>,
    /// The payload's first chunk, when the claim read it at no extra cost (a small payload
    /// kept inline): the worker then reads its input without another transaction. An error
    /// when the stored chunk is damaged: the worker's read of its payload then fails with it.
    pub first_chunk: Option<Result<Chunk>>,
}

/// Instances whose last lease ran out during a claim, now fail rows.
pub(crate) struct Expired {
    pub key: Hash,
    pub created: i64,
    pub message: String,
}

#[derive(Clone)]
pub(crate) struct ClaimParams {
    pub lease_ms: i64,
    pub max_attempts: u32,
    pub order: Order,
    /// The queues served; None: every queue.
    pub queues: Option<Arc<[String]>>,
}

/// What a complete did: its end time (epoch ms), and the staging area made surplus when the
/// output's content was stored already (for the writer to clear).
pub(crate) type Completed = (i64, Option<BlobId>);

/// What a claim did: the instance it took, the instances whose last lease had run out (now
/// fail rows), and the instances it pushed for schedules that fell due.
pub(crate) struct ClaimOutcome {
    pub claimed: Option<Claimed>,
    pub expired: Vec<Expired>,
    pub fired: Vec<(Hash, i64)>,
}

/// What a worker that found nothing to claim needs to decide how long to sleep.
pub(crate) struct Idle {
    /// Anything that keeps an `until_empty` run going: an instance running, waiting for its
    /// delay, or ready in a served queue that is not paused.
    pub any: bool,
    /// An instance is claimable now by this claimer.
    pub ready: bool,
    /// The earliest instant at which something may become claimable (a delay or backoff
    /// ends, a lease runs out, a schedule falls due).
    pub next_due: Option<i64>,
}

/// The facts the backends' `IDLE` query gathers, before [`Idle::new`] weighs them.
pub(crate) struct IdleFacts {
    pub queues: Vec<QueueState>,
    pub running: bool,
    /// The earliest `run_at` of a waiting instance in a queue that is not paused.
    pub earliest_wait: Option<i64>,
    /// The earliest lease end of a running instance (claimable the millisecond after).
    pub earliest_lease: Option<i64>,
    /// The earliest `next_run` of a schedule.
    pub next_schedule: Option<i64>,
}

impl Idle {
    /// Weighs the facts for a claimer serving `served` (None: every queue).
    pub fn new(f: IdleFacts, served: Option<&[String]>) -> Idle {
        let ready = f.queues.iter().any(|q| q.ready && q.claimable(served));
        let live_ready =
            f.queues.iter().any(|q| q.ready && !q.paused && served.is_none_or(|s| s.contains(&q.name)));
        let next_due =
            [f.earliest_wait, f.earliest_lease.map(|l| l + 1), f.next_schedule].into_iter().flatten().min();
        Idle { any: f.running || f.earliest_wait.is_some() || live_ready, ready, next_due }
    }
}

/// A position in a listing: the key of the last row returned.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pos {
    pub hash: Option<Hash>,
    pub job: BlobId,
    pub created: i64,
}

/// A published blob, for `check`: its hash and size, or why its row cannot be read.
pub(crate) struct BlobEntry {
    pub id: BlobId,
    pub row: Result<(Hash, u64)>,
}

/// What `gc` removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    /// Published blobs that no job or result referenced.
    pub blobs_removed: u64,
    /// Staging areas of interrupted writes whose lease had run out.
    pub stages_removed: u64,
    /// Chunk rows removed, of both kinds, and orphans.
    pub chunks_removed: u64,
    /// Bytes of blob data removed: chunk rows, and the bytes small blobs keep inline.
    pub bytes_removed: u64,
}

/// Counts and sizes, as `batchdb stats` prints them.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Result rows ever recorded, including those pruned since: a counter that never goes
    /// down.
    pub results_total: u64,
    /// Fail rows ever recorded, including those pruned or retried since.
    pub fails_total: u64,
    /// Every queue that has been pushed into or configured, by name.
    pub queues: std::collections::BTreeMap<String, QueueStats>,
    /// Job rows.
    pub jobs: u64,
    /// Instances not running: ready, delayed or backing off.
    pub pending: u64,
    /// Instances held by a worker.
    pub running: u64,
    /// Result rows.
    pub results: u64,
    /// Fail rows.
    pub fails: u64,
    /// Published blobs.
    pub blobs: u64,
    /// Their total size in bytes.
    pub blob_bytes: u64,
    /// The database file's size in bytes.
    pub file_bytes: u64,
    /// The write-ahead log's size in bytes.
    pub wal_bytes: u64,
}

/// The errors both backends report, worded once so that a message never depends on where the
/// queue lives.
pub(crate) mod fail {
    /// `check`'s line for chunks whose blob row is missing.
    pub(crate) fn orphan_chunks(n: i64, owner: i64) -> String {
        format!("{n} orphan chunk(s) of missing blob {owner} (gc removes them)")
    }

    /// The kept totals behind `stats` (jobs, blobs, blob bytes, results, fails) against a
    /// count of the tables.
    pub(crate) fn totals_differ(kept: &[i64], counted: &[i64]) -> String {
        let names = ["jobs", "blobs", "blob bytes", "results", "fails"];
        let diffs: Vec<String> = names
            .iter()
            .zip(kept.iter().zip(counted))
            .filter(|(_, (k, c))| k != c)
            .map(|(n, (k, c))| format!("{n} {k} kept, {c} counted"))
            .collect();
        format!("the totals stats reports differ from the tables: {}", diffs.join(", "))
    }

    use crate::error::Error;
    use crate::hash::Hash;

    pub fn schedule_not_found(name: &str) -> Error {
        Error::not_found(format!("schedule {name:?} not found"))
    }

    pub fn job_not_found(key: &Hash) -> Error {
        Error::not_found(format!("job {} not found", key.short()))
    }

    pub fn no_failed_instance(key: &Hash, created: i64) -> Error {
        Error::not_found(format!("no failed instance {} of job {}", created, key.short()))
    }

    pub fn no_upstream(key: &Hash, created: i64) -> Error {
        Error::not_found(format!("upstream instance {created} of job {} not found", key.short()))
    }

    pub fn no_pending_instance(key: &Hash, created: i64) -> Error {
        Error::not_found(format!("no pending instance {} of job {}", created, key.short()))
    }

    pub fn instance_running(key: &Hash, created: i64) -> Error {
        Error::busy(format!("instance {} of job {} is running and cannot be cancelled", created, key.short()))
    }

    /// The fence failed: `(created, attempt)` no longer holds the lease.
    pub fn not_held(created: i64, attempt: u32) -> Error {
        Error::stale(format!(
            "instance {created} is no longer held by attempt {attempt}: its lease ran out and it was \
             re-queued, taken by another worker, or already finished"
        ))
    }

    pub fn stage_gone(stage: super::BlobId) -> Error {
        Error::stale(format!(
            "blob write {stage} was abandoned (its staging lease ran out and gc removed it)"
        ))
    }

    /// A stored row of blob `id` that cannot be decoded: damage, whatever the column.
    pub fn damaged_blob(id: super::BlobId, what: impl std::fmt::Display) -> Error {
        Error::corrupt(format!("blob {id} is corrupt: {what}"))
    }

    /// A stored hash that is not 32 bytes, named by the bytes it has.
    pub fn damaged_hash(id: super::BlobId, bytes: &[u8]) -> Error {
        damaged_blob(
            id,
            format!("its stored hash has {} bytes, not 32 ({})", bytes.len(), hex::encode(bytes)),
        )
    }

    /// The row a lookup by `hash` found, checked: its own stored hash must be the one looked
    /// up. A damaged index can point at another blob's row, whose chunks all verify.
    pub fn found_other(hash: &Hash, id: super::BlobId, stored: &[u8]) -> Result<(), Error> {
        if stored == hash.as_bytes().as_slice() {
            return Ok(());
        }
        Err(Error::corrupt(format!(
            "blob {} is corrupt: its index entry leads to row {id}, which holds blob {}",
            hash.short(),
            hex::encode(&stored[..stored.len().min(6)]),
        )))
    }

    /// The fail row's message of an instance whose lease ran out once too often.
    pub fn lease_expired(attempts: i64) -> String {
        format!("lease expired after {attempts} attempts")
    }

    pub fn publish_gone(hash: &Hash) -> Error {
        Error::stale(format!(
            "blob {} was abandoned while being written (its staging lease ran out and gc removed it)",
            hash.short()
        ))
    }
}

/// An instance's `state` column, in both backends (the SQL's partial indexes spell the same
/// numbers): ready to claim, claimed under a lease, waiting for its `run_at`, waiting for
/// upstream instances (`waiting_on` of them still without a result).
pub(crate) const READY: i64 = 0;
pub(crate) const RUNNING: i64 = 1;
pub(crate) const WAITING: i64 = 2;
pub(crate) const UPSTREAM: i64 = 3;

/// The state a new or copied instance starts in: waiting for upstreams while some have no
/// result, else waiting for its `run_at` while that is ahead, else ready. Both backends' pushes
/// and imports decide by it.
pub(crate) fn initial_state(upstreams_left: i64, run_at: Option<i64>, now: i64) -> i64 {
    if upstreams_left > 0 {
        UPSTREAM
    } else if run_at.is_some_and(|t| t > now) {
        WAITING
    } else {
        READY
    }
}

/// Chunks a maintenance transaction deletes at most, so that gc and aborted writes never
/// hold the write lock for long.
pub(crate) const CHUNK_BATCH: i64 = 32;

/// Rows a maintenance read returns at most (stale stages, unreferenced blobs).
pub(crate) const GC_PAGE: i64 = 256;

pub(crate) trait Store: Send + Sync {
    // Blobs.
    fn stage_begin(&self, lease_ms: i64) -> Result<BlobId>;
    /// Appends a chunk with its digest and renews the staging lease; returns the buffer for
    /// reuse.
    fn stage_write(
        &self,
        stage: BlobId,
        seq: i64,
        data: Vec<u8>,
        digest: i64,
        lease_ms: i64,
    ) -> Result<Vec<u8>>;
    /// Marks a staging area abandoned (its writer gave up), so that nothing renews it.
    fn stage_abandon(&self, stage: BlobId) -> Result<()>;
    /// Deletes a staging area's row (its chunks are cleared first).
    fn stage_delete(&self, stage: BlobId) -> Result<()>;
    fn publish(&self, blob: Finished, register: Register) -> Result<Published>;
    /// Publishes many unstaged blobs (`stage: None`) as jobs in one durable transaction,
    /// pushing an instance of each with `push`; returns each instance's `created`, in order.
    fn publish_many(&self, blobs: Vec<Finished>, push: PushSpec) -> Result<Vec<Pushed>>;
    /// The published blob stored under `hash`: its id and size. A row found whose own stored
    /// hash is another (the hash index is damaged) is [`Error::Corrupt`](crate::Error::Corrupt),
    /// never another blob's bytes: see [`fail::found_other`].
    fn blob(&self, hash: &Hash) -> Result<Option<(BlobId, u64)>>;
    /// Chunk `seq` of a blob, unverified. A row whose columns cannot be decoded is
    /// [`Error::Corrupt`](crate::Error::Corrupt).
    fn chunk(&self, blob: BlobId, seq: i64) -> Result<Option<Chunk>>;

    // Queue.
    fn push(&self, key: &Hash, spec: PushSpec) -> Result<Pushed>;
    /// Expires run-out leases, pushes the instances of schedules that fell due (the slot
    /// recorded in the same transaction, see [`crate::schedule::due`]), and takes the best
    /// ready instance of the claimable queues ([`QueueState::claimable`]), all in one
    /// transaction, so that a queue's limit holds whatever other processes claim.
    fn claim(&self, params: &ClaimParams) -> Result<ClaimOutcome>;
    /// Records a running instance's progress, if `(created, attempt)` still holds it.
    fn progress(&self, created: i64, attempt: u32, done: f64, message: &str) -> Result<()>;
    /// Sets (Some) or removes (None) a queue's limit, creating the queue's row if need be.
    fn set_limit(&self, queue: &str, limit: Option<u32>) -> Result<()>;
    /// Pauses or resumes a queue, creating its row if need be.
    fn set_paused(&self, queue: &str, paused: bool) -> Result<()>;
    /// Every queue's counts and settings, by name.
    fn queues(&self) -> Result<Vec<QueueStats>>;
    /// Creates or replaces a schedule; the job must exist.
    fn schedule_put(&self, s: NewSchedule) -> Result<()>;
    /// Removes a schedule; an unknown name is [`Error::NotFound`](crate::Error::NotFound).
    fn schedule_remove(&self, name: &str) -> Result<()>;
    fn schedules(&self) -> Result<Vec<ScheduleRow>>;
    /// Results and fails that ended at or after `since`, counted per minute:
    /// `(minute start, results, fails)`, by minute.
    fn completions(&self, since: i64) -> Result<Vec<(i64, u64, u64)>>;
    fn renew(&self, jobs: Vec<(i64, u32)>, stages: Vec<BlobId>, lease_ms: i64) -> Result<()>;
    /// Records the result if `(created, attempt)` still holds the lease; returns the end time.
    fn complete(&self, created: i64, attempt: u32, output: Arc<Finished>) -> Result<Completed>;
    /// [`complete`](Store::complete), then [`claim`](Store::claim) with `next` for the worker's
    /// next instance. The complete's outcome is what counts: its error is returned, and the
    /// claim is `None` when it did not run or failed (the worker sees a claim's error again
    /// on its next claim). A backend may run both in one transaction; this one runs two.
    fn complete_claim(
        &self,
        created: i64,
        attempt: u32,
        output: Arc<Finished>,
        next: &ClaimParams,
    ) -> Result<(Completed, Option<ClaimOutcome>)> {
        let done = self.complete(created, attempt, output)?;
        Ok((done, self.claim(next).ok()))
    }
    /// Records a fail row, or re-queues at `requeue_at` (epoch ms), if still fenced. Returns
    /// the end time and the dependents that became fail rows with it, transitively.
    fn fail(
        &self,
        created: i64,
        attempt: u32,
        message: &str,
        requeue_at: Option<i64>,
    ) -> Result<(i64, Vec<Expired>)>;
    fn retry(&self, key: &Hash, created: i64) -> Result<i64>;
    /// Removes a pending instance; returns its dependents, now fail rows.
    fn cancel(&self, key: &Hash, created: i64) -> Result<Vec<Expired>>;
    /// Writes a consistent copy of the whole database, as of one instant, to the new file
    /// `tmp` (which the caller then moves into place); false when the engine has no such
    /// copy of its own (the caller then copies row by row into a new file).
    fn backup(&self, tmp: &Path) -> Result<bool>;
    /// This database's random id, and the id of the database it is a copy of, if any.
    fn identity(&self) -> Result<(i64, Option<i64>)>;
    /// Records that this database is a copy of `source`.
    fn set_copied_from(&self, source: i64) -> Result<()>;
    /// Applies rows a copy brings, in one transaction (see [`ImportRow`]).
    fn import(&self, rows: Vec<ImportRow>) -> Result<()>;
    /// The upstreams `(key, created)` instance `created` was pushed with.
    fn edges(&self, created: i64) -> Result<Vec<(Hash, i64)>>;
    /// Where a blob came from; None when the database holds no such blob.
    fn why(&self, hash: &Hash) -> Result<Option<Lineage>>;
    fn prune(&self, older_than_ms: i64) -> Result<u64>;
    fn idle(&self) -> Result<IdleFacts>;
    /// A number that changes whenever another process commits.
    fn change_counter(&self) -> Result<i64>;
    /// True while the store itself wakes the database's waiters on every commit of another
    /// process (PostgreSQL's listener): they may then sleep until woken or due. Otherwise they
    /// poll [`change_counter`](Store::change_counter).
    fn wakes_waiters(&self) -> bool {
        false
    }

    // Listing.
    fn list(&self, kind: ListKind, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>>;

    // Maintenance: the steps of [`crate::gc`], each one short transaction.
    /// Staging areas whose lease ended before `now`, a page of them.
    fn stale_stages(&self, now: i64) -> Result<Vec<BlobId>>;
    /// Expires a staging area if its lease still ended before `now`; whether it did.
    fn stage_expire_if_stale(&self, stage: BlobId, now: i64) -> Result<bool>;
    /// Deletes up to [`CHUNK_BATCH`] chunks of a blob; the count and their bytes.
    fn chunks_delete_some(&self, blob: BlobId) -> Result<(u64, u64)>;
    /// Published blobs after `after` that no job or result references, a page of them by id.
    fn unreferenced_blobs(&self, after: BlobId) -> Result<Vec<(BlobId, Hash)>>;
    /// Turns an unreferenced blob back into an abandoned staging area, safely against a
    /// writer publishing the same content; its inline bytes, or None when it is referenced
    /// (or gone) by now.
    fn blob_unpublish_unreferenced(&self, blob: BlobId, hash: &Hash) -> Result<Option<u64>>;
    /// Where the store keeps gc's window (see [`crate::gc`]): `(mark, top)`, the blob id the
    /// last gc reached and the one this gc may move it to. None: every gc looks at every
    /// published blob (PostgreSQL, whose identity ids are not handed out in commit order, so
    /// that a blob with an id below a mark may still be published after it).
    fn gc_window(&self) -> Result<Option<(BlobId, BlobId)>> {
        Ok(None)
    }
    /// Moves the mark of [`gc_window`](Store::gc_window) up to `top` (never down).
    fn set_gc_mark(&self, _top: BlobId) -> Result<()> {
        Ok(())
    }
    /// A page, by id after `after`, of the blobs a prune left without a result, each with
    /// its hash while it is published. Looking at one with
    /// [`blob_unpublish_unreferenced`](Store::blob_unpublish_unreferenced) or
    /// [`loose_forget`](Store::loose_forget) takes it off the list.
    fn loose_blobs(&self, _after: BlobId) -> Result<Vec<(BlobId, Option<Hash>)>> {
        Ok(Vec::new())
    }
    /// Takes a blob that is no longer published off the list of [`loose_blobs`](Store::loose_blobs).
    fn loose_forget(&self, _blob: BlobId) -> Result<()> {
        Ok(())
    }
    /// Ids that chunks belong to but no blob row has.
    fn orphan_chunk_owners(&self) -> Result<Vec<BlobId>>;
    /// After a gc: give the space back where the engine needs a nudge (SQLite: a checkpoint).
    fn after_gc(&self) -> Result<()> {
        Ok(())
    }
    /// Structural problems: the engine's integrity check, orphan chunks, dangling references.
    fn check_structure(&self) -> Result<Vec<String>>;
    fn blobs_after(&self, after: BlobId, limit: usize) -> Result<Vec<BlobEntry>>;
    fn stats(&self) -> Result<Stats>;
}

/// Job rows of one listing page, each with the `created` of its running instances (sorted),
/// from the page's jobs and the running instances of the whole queue.
pub(crate) fn job_rows(
    jobs: Vec<(Hash, BlobId)>,
    mut running: std::collections::HashMap<BlobId, Vec<i64>>,
) -> Vec<(Row, Pos)> {
    jobs.into_iter()
        .map(|(key, blob)| {
            let mut run = running.remove(&blob).unwrap_or_default();
            run.sort_unstable();
            (
                Row::Job(crate::row::JobRow { key, running: run }),
                Pos { hash: Some(key), job: blob, created: 0 },
            )
        })
        .collect()
}
