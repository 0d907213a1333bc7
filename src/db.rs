//! The database handle: open, create, push, add, get, list, claim, retry, cancel, prune and
//! the maintenance entry points.

use crate::blob::{Reader, Writer};
use crate::check::CheckReport;
use crate::error::{Error, Result};
use crate::events::{Event, SubscriptionId};
use crate::hash::Hash;
use crate::list::Cursor;
use crate::options::{check_name, Options, PushOptions};
use crate::queue::Job;
use crate::row::{FailRow, JobRow, ListKind, ListRow, PendingRow, ResultRow, Row};
use crate::schedule::Spec;
use crate::shared::Shared;
use crate::store::{
    Access, Finished, GcReport, Lineage, NewSchedule, PushSpec, Pushed, QueueStats, ScheduleRow, Stats,
};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// An open batchdb database: a job queue and a blob store in one SQLite file.
///
/// `Db` is cheap to clone and safe to share between threads; clones use the same
/// connections. Many processes may open the same file.
///
/// ```
/// use std::io::Read;
/// # let dir = tempfile::tempdir().unwrap();
/// let db = batchdb::Db::open(dir.path().join("compute.db"), Default::default())?;
/// let (key, _created) = db.add(&b"sleep 5; date"[..])?;
/// assert_eq!(key.to_string(), "ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0");
///
/// let mut job = db.claim()?.expect("one pending instance");
/// let mut payload = String::new();
/// job.read_to_string(&mut payload)?;
/// std::io::Write::write_all(&mut job, payload.to_uppercase().as_bytes())?;
/// let hash = job.complete()?;
///
/// let mut out = String::new();
/// db.get(&hash)?.read_to_string(&mut out)?;
/// assert_eq!(out, "SLEEP 5; DATE");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<Shared>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("options", &self.inner.opts).finish()
    }
}

impl Db {
    /// Opens the database at `path`, creating it when the file is missing or empty.
    ///
    /// A file that is not SQLite, an SQLite file that is not batchdb, and a batchdb file of a
    /// newer schema are refused with [`Error::Invalid`], and left unchanged. `path` is a file
    /// name, never an SQLite URI: `file:x.db?mode=ro` is the file of that very name.
    ///
    /// A `postgres://` or `postgresql://` URL instead of a path keeps the database on a
    /// PostgreSQL server (with the `postgres` cargo feature), in the schema `batchdb` or the
    /// one named by a `?schema=NAME` parameter; everything else works the same.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        Db::open_as(path.as_ref(), opts, Access::Create)
    }

    /// Opens an existing database to read and write it, as [`open`](Db::open) does, but
    /// never creates one: a missing file is [`Error::NotFound`] and stays missing. An empty
    /// file still becomes a new database. A file this user may not write is
    /// [`Error::Io`], refused before SQLite creates anything beside it.
    ///
    /// On PostgreSQL this is [`open`](Db::open): the server, not batchdb, creates databases,
    /// and batchdb's schema is created in it on first open.
    pub fn open_existing(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        Db::open_as(path.as_ref(), opts, Access::Existing)
    }

    /// Opens an existing database to read it only: lists, [`get`](Db::get),
    /// [`check`](Db::check) and [`stats`](Db::stats) work; every change is
    /// [`Error::Misuse`]. Nothing is created, migrated or written: a missing file is
    /// [`Error::NotFound`], an empty one too, and a file of an older schema is
    /// [`Error::Invalid`] (a handle that writes upgrades it).
    ///
    /// A user who may not write the file creates no file beside it either (SQLite's `-wal`
    /// and `-shm` would otherwise be created owned by that user, and in a shared sticky folder
    /// the database's owner could then neither use nor delete them). While a writer has the
    /// database open, its `-wal` and `-shm` are read as they are; while none has, the file is
    /// read as immutable, and a read that finds the file changed meanwhile (a writer opened
    /// it) fails with [`Error::Busy`]: run it again.
    ///
    /// On PostgreSQL this is [`open`](Db::open) (which creates batchdb's schema on first
    /// open); the server's own permissions decide what a role may change.
    pub fn open_read_only(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        Db::open_as(path.as_ref(), opts, Access::ReadOnly)
    }

    fn open_as(path: &Path, opts: Options, access: Access) -> Result<Db> {
        Ok(Db { inner: Arc::new(Shared::open(path, opts, access)?) })
    }

    /// The options this handle was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// A streaming writer for a payload, finished by [`Writer::create`] or [`Writer::add`].
    pub fn writer(&self) -> Writer {
        Writer::new(self.inner.clone())
    }

    fn write_all(&self, mut payload: impl Read) -> Result<Writer> {
        let mut w = self.writer();
        std::io::copy(&mut payload, &mut w).map_err(|e| {
            let what = if w.has_failed() { "storing the payload" } else { "reading the payload" };
            Error::from(e).context(what)
        })?;
        Ok(w)
    }

    /// Stores `payload` and registers it as a job; returns its key, the payload's hash.
    /// Creating the same payload again gives the same key and one job. Event `create`.
    pub fn create(&self, payload: impl Read) -> Result<Hash> {
        self.write_all(payload)?.create()
    }

    /// [`create`](Db::create) and [`push`](Db::push) in one transaction; returns the key and
    /// the instance's `created`. Events `create`, `push`.
    pub fn add(&self, payload: impl Read) -> Result<(Hash, i64)> {
        self.write_all(payload)?.add()
    }

    /// [`add`](Db::add) with push options: a priority, a delay, a queue, or `unique` (when
    /// the returned [`Pushed::new`] is false, a live instance was found and nothing queued).
    pub fn add_with(&self, payload: impl Read, opts: &PushOptions) -> Result<(Hash, Pushed)> {
        // Refuse bad options before a byte of the payload is read or stored.
        opts.validate()?;
        self.write_all(payload)?.add_with(opts)
    }

    /// Adds many small payloads in ONE write transaction (one fsync at durability `full`):
    /// each is stored, registered as a job and pushed, as [`add`](Db::add) would, and the
    /// keys and `created` values are returned in the payloads' order. Equal payloads give one
    /// job and one instance each. Events `create` then `push` for every payload, in order,
    /// after the commit.
    ///
    /// Every payload must fit in one chunk ([`Options::chunk_size`], 256 KiB by default);
    /// a larger one is [`Error::Invalid`] and nothing is added: stream it with
    /// [`add`](Db::add) instead. The whole batch holds the write lock while it commits, so
    /// keep batches to thousands of payloads, not millions.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = batchdb::Db::open(dir.path().join("q.db"), Default::default())?;
    /// let added = db.add_batch(["a", "b", "a"])?;
    /// assert_eq!(added.len(), 3);
    /// assert_eq!(added[0].0, added[2].0); // same payload, same job
    /// assert!(added[0].1 < added[1].1 && added[1].1 < added[2].1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_batch<I>(&self, payloads: I) -> Result<Vec<(Hash, i64)>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let added = self.add_batch_with(payloads, &PushOptions::default())?;
        Ok(added.into_iter().map(|(k, p)| (k, p.created)).collect())
    }

    /// [`add_batch`](Db::add_batch) with push options for every payload (say, a queue).
    pub fn add_batch_with<I>(&self, payloads: I, opts: &PushOptions) -> Result<Vec<(Hash, Pushed)>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let spec = PushSpec::from_options(opts)?;
        let chunk = self.inner.opts.chunk_size;
        let mut blobs = Vec::new();
        for (i, p) in payloads.into_iter().enumerate() {
            let bytes = p.as_ref();
            if bytes.len() > chunk {
                return Err(Error::invalid(format!(
                    "payload {i} of the batch is {} bytes, more than the chunk size {chunk}; \
                     add it on its own with add()",
                    bytes.len()
                )));
            }
            let hash = Hash::of(bytes);
            blobs.push(Finished {
                stage: None,
                next_seq: 0,
                tail: bytes.to_vec(),
                hash,
                size: bytes.len() as u64,
            });
        }
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Hash> = blobs.iter().map(|b| b.hash).collect();
        let created = self.inner.store.publish_many(blobs, spec)?;
        let added: Vec<(Hash, Pushed)> = keys.into_iter().zip(created).collect();
        for (key, p) in &added {
            self.inner.events.emit(Event::Create { key: *key });
            self.inner.pushed(*key, p);
        }
        self.inner.wake_workers();
        Ok(added)
    }

    /// Queues an instance of the job `key`; returns its `created`, epoch milliseconds that
    /// are unique in the file and increase in push order. An unknown key is
    /// [`Error::NotFound`]. Event `push`.
    pub fn push(&self, key: &Hash) -> Result<i64> {
        self.push_with(key, &PushOptions::default()).map(|p| p.created)
    }

    /// [`push`](Db::push) with a priority (higher runs first), a delay (not claimed before
    /// `created + delay`), a queue, or `unique`: when an instance of the job is pending,
    /// waiting or running in that queue, nothing is queued and that instance comes back with
    /// [`Pushed::new`] false.
    pub fn push_with(&self, key: &Hash, opts: &PushOptions) -> Result<Pushed> {
        let spec = PushSpec::from_options(opts)?;
        let pushed = self.inner.store.push(key, spec)?;
        self.inner.pushed(*key, &pushed);
        Ok(pushed)
    }

    /// Sets the most instances of `queue` that may run at once, counting every process and
    /// handle on the database; 0 removes the limit. Stored in the database: every claim from
    /// then on, in any process, keeps to it.
    pub fn limit(&self, queue: &str, n: u32) -> Result<()> {
        check_name("queue", queue)?;
        self.inner.store.set_limit(queue, (n > 0).then_some(n))?;
        // A raised limit may make instances claimable.
        self.inner.wake_workers();
        Ok(())
    }

    /// Pauses `queue`: no claim in any process takes its instances until
    /// [`resume`](Db::resume); running ones finish. Pushes into it still queue.
    pub fn pause(&self, queue: &str) -> Result<()> {
        check_name("queue", queue)?;
        self.inner.store.set_paused(queue, true)
    }

    /// Resumes a paused queue.
    pub fn resume(&self, queue: &str) -> Result<()> {
        check_name("queue", queue)?;
        self.inner.store.set_paused(queue, false)?;
        self.inner.wake_workers();
        Ok(())
    }

    /// Every queue that has been pushed into or configured, with its counts and settings,
    /// by name.
    pub fn queues(&self) -> Result<Vec<QueueStats>> {
        self.inner.store.queues()
    }

    /// Creates or replaces the schedule `name`: the payload is stored as a job, and each slot
    /// of `spec` (`every DURATION`, or a 5-field cron expression in UTC) pushes one instance
    /// of it with `opts` (its queue and priority), whatever the number of processes running.
    /// The first slot is the first at or after now. Slots are pushed by the claims of
    /// whatever runs or waiting handles are active; after a time with none, one instance is
    /// pushed for the latest missed slot only.
    pub fn schedule(
        &self,
        name: &str,
        spec: &str,
        payload: impl Read,
        opts: &PushOptions,
    ) -> Result<ScheduleRow> {
        check_name("schedule", name)?;
        let parsed = Spec::parse(spec)?;
        opts.validate()?;
        if !opts.delay.is_zero() || opts.unique || opts.memo || !opts.after.is_empty() {
            return Err(Error::invalid(format!(
                "schedule {name:?}: a schedule pushes with a queue and a priority only \
                 (delay, unique, memo and after do not apply)"
            )));
        }
        let job = self.create(payload)?;
        let next_run = parsed.next_at_or_after(crate::clock::now_ms())?;
        let queue = opts.queue_name().to_string();
        self.inner.store.schedule_put(NewSchedule {
            name: name.to_string(),
            spec: spec.trim().to_string(),
            job,
            queue: queue.clone(),
            priority: opts.priority,
            next_run,
        })?;
        // Waiting workers recompute when to wake.
        self.inner.wake_workers();
        Ok(ScheduleRow {
            name: name.to_string(),
            spec: spec.trim().to_string(),
            queue,
            job,
            next_run,
            priority: opts.priority,
        })
    }

    /// The schedules, by name.
    pub fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.inner.store.schedules()
    }

    /// Removes the schedule `name`; an unknown name is [`Error::NotFound`]. Instances it
    /// already pushed stay.
    pub fn unschedule(&self, name: &str) -> Result<()> {
        check_name("schedule", name)?;
        self.inner.store.schedule_remove(name)
    }

    /// Results and fail rows that ended at or after `since_ms`, counted per minute:
    /// `(minute start, results, fails)`, oldest first. Rows pruned since are not counted.
    pub fn completions(&self, since_ms: i64) -> Result<Vec<(i64, u64, u64)>> {
        self.inner.store.completions(since_ms)
    }

    /// Reads a job payload or a result by its hash, verified against the hash.
    pub fn get(&self, hash: &Hash) -> Result<Reader> {
        Reader::open(self.inner.clone(), hash)
    }

    /// Lists rows of any kind.
    pub fn list(&self, kind: ListKind) -> Cursor<Row> {
        Cursor::new(self.inner.clone(), kind)
    }

    fn typed<T: ListRow>(&self) -> Cursor<T> {
        Cursor::new(self.inner.clone(), T::KIND.unwrap_or(ListKind::Job))
    }

    /// Jobs, by key.
    pub fn jobs(&self) -> Cursor<JobRow> {
        self.typed()
    }

    /// Pending and running instances, by `created`.
    pub fn pending(&self) -> Cursor<PendingRow> {
        self.typed()
    }

    /// Results, by job key, then `created`.
    pub fn results(&self) -> Cursor<ResultRow> {
        self.typed()
    }

    /// Fail rows, by job key, then `created`.
    pub fn failures(&self) -> Cursor<FailRow> {
        self.typed()
    }

    /// Takes the next ready instance (highest priority first, then in the processing order)
    /// with a lease that this handle renews while the [`Job`] lives; `None` when nothing is
    /// ready. Expired leases are handled here too. Event `start`.
    pub fn claim(&self) -> Result<Option<Job>> {
        self.claim_served(None)
    }

    /// [`claim`](Db::claim) from the named queues only (none named: every queue).
    pub fn claim_from<S: AsRef<str>>(&self, queues: &[S]) -> Result<Option<Job>> {
        self.claim_served(served(queues)?)
    }

    pub(crate) fn claim_served(&self, queues: Option<Arc<[String]>>) -> Result<Option<Job>> {
        let out = self.inner.store.claim(&self.inner.claim_params(queues))?;
        Ok(Job::from_claim(&self.inner, out))
    }

    /// Makes every [`run`](Db::run) of this handle, in any thread, return once its running
    /// jobs are finished.
    pub fn stop(&self) {
        self.inner.stop_runs();
    }

    /// Re-queues a failed instance as a new instance and removes its fail row; returns the
    /// new `created`. Event `push`.
    pub fn retry(&self, key: &Hash, created: i64) -> Result<i64> {
        let new = self.inner.store.retry(key, created)?;
        self.inner.events.emit(Event::Push { key: *key, created: new });
        self.inner.wake_workers();
        Ok(new)
    }

    /// Removes a pending instance that is not running. Unknown: [`Error::NotFound`]; running:
    /// [`Error::Busy`]. The job and its payload stay.
    ///
    /// Instances waiting for it become fail rows (`upstream K C cancelled`), and theirs in
    /// turn (`upstream K C failed`): events `fail`.
    pub fn cancel(&self, key: &Hash, created: i64) -> Result<()> {
        let dependents = self.inner.store.cancel(key, created)?;
        self.inner.failed(dependents);
        Ok(())
    }

    /// Writes a consistent copy of the whole database, as of one instant, to the new file
    /// `dest`, while other handles and processes keep working; the copy opens as a batchdb
    /// database and passes [`check`](Db::check). A database on PostgreSQL is copied into the
    /// new file with [`copy_to`](Db::copy_to), table by table: each listing is consistent,
    /// not the whole (use `pg_dump` for a snapshot of a busy server). An existing `dest` is refused
    /// ([`Error::Invalid`]) and left alone; the copy appears at `dest` only when complete.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<()> {
        let dest = dest.as_ref();
        let shown = crate::redact(&dest.to_string_lossy());
        if dest.symlink_metadata().is_ok() {
            return Err(Error::invalid(format!("backup destination {shown} exists; name a new file")));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| Error::invalid(format!("backup destination {shown} is not a file name")))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".backup-{}", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let native = self.inner.store.backup(&tmp).and_then(|done| {
            if done {
                return Ok(());
            }
            // A server: a copy into a new file, through each table's listing in turn.
            let file =
                Db::open(&tmp, Options { durability: crate::Durability::Normal, ..Options::default() })?;
            self.copy_to(&file)?;
            drop(file);
            Ok(())
        });
        let done = native.and_then(|()| {
            // A hard link never replaces an existing file: a DEST that appeared meanwhile wins.
            std::fs::hard_link(&tmp, dest).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::invalid(format!("backup destination {shown} exists; name a new file"))
                } else {
                    Error::io(format!("writing the backup {shown}: {e}"))
                }
            })
        });
        let _ = std::fs::remove_file(&tmp);
        done.map_err(|e| e.context(format!("backing up to {shown}")))
    }

    /// Copies this database into `target` (a file or a server, opened as any database is):
    /// every job, blob, instance, result and fail row, queue setting and schedule, keeping
    /// keys and `created` values. Blobs the target holds (by hash) are not sent again, and
    /// a second copy changes nothing; a copy that was interrupted is finished by running it
    /// again. Instances that moved on in the source since the last copy move on in the target
    /// too (a result or fail row replaces the pending instance; one cancelled in the source
    /// is removed). The target must be empty or an earlier copy (or a backup) of this
    /// database; anything else is refused with [`Error::Invalid`] before a byte is written.
    pub fn copy_to(&self, target: &Db) -> Result<crate::CopyReport> {
        crate::copy::copy(&self.inner, &target.inner)
    }

    /// Where the blob `hash` came from: whether it is a job's payload, and which result rows
    /// have it as output, each with the upstream instances it waited for. A hash the database
    /// does not hold is [`Error::NotFound`].
    pub fn why(&self, hash: &Hash) -> Result<Lineage> {
        self.inner
            .store
            .why(hash)?
            .ok_or_else(|| Error::not_found(format!("blob {} not found", hash.short())))
    }

    /// Removes the result and fail rows that ended before `older_than_ms` (epoch ms);
    /// returns how many. A following [`gc`](Db::gc) reclaims their blobs.
    pub fn prune(&self, older_than_ms: i64) -> Result<u64> {
        self.inner.store.prune(older_than_ms)
    }

    /// Checks the whole file: SQLite's integrity check, every listing read to its end and the
    /// counts taken, every blob re-hashed against its address (and each chunk against its
    /// digest), chunks that belong to no blob, and rows that refer to missing ones. Every
    /// damaged blob is reported, whatever the damage, and the check goes on; problems are
    /// reported, not repaired. An I/O error ends the check.
    pub fn check(&self) -> Result<CheckReport> {
        crate::check::check(&self.inner)
    }

    /// Removes blobs that no job or result references, and the leftovers of interrupted
    /// writes whose lease ran out. A blob still being written is kept.
    pub fn gc(&self) -> Result<GcReport> {
        crate::gc::gc(&*self.inner.store)
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Result<Stats> {
        self.inner.store.stats()
    }

    /// Calls `f` with every event of this handle, on the thread that made the change, after
    /// it was committed.
    pub fn subscribe(&self, f: impl Fn(&Event) + Send + Sync + 'static) -> SubscriptionId {
        self.inner.events.subscribe(Arc::new(f))
    }

    /// Ends a subscription; false if it was not active.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner.events.unsubscribe(id)
    }
}

/// The served-queue set of a claim or run: None when no queue is named (every queue is
/// served); each name checked.
pub(crate) fn served<S: AsRef<str>>(queues: &[S]) -> Result<Option<Arc<[String]>>> {
    if queues.is_empty() {
        return Ok(None);
    }
    let mut names = Vec::with_capacity(queues.len());
    for q in queues {
        check_name("queue", q.as_ref())?;
        names.push(q.as_ref().to_string());
    }
    Ok(Some(names.into()))
}
