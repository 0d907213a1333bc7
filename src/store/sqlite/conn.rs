//! Connections: opening and identifying the file, pragmas, bounded lock waits, the
//! group-committing writer, and the pool of readers.
//!
//! All writes of a process go through one connection. Callers queue their write as a closure;
//! one caller at a time leads: it runs every queued closure in one `BEGIN IMMEDIATE`
//! transaction (each under its own savepoint) and commits once, while the others wait for
//! their result on a condition variable, so concurrent callers share a commit and never
//! compete through SQLite's busy back-off. A caller whose write a leader committed returns
//! at once; it never queues behind the next leader's fsync. Between processes, lock waits go
//! through [`busy_wait`], which sleeps briefly and gives up after a bound.

use super::checkpoint::Checkpointer;
use super::counters::{self, Known, Tally};
use super::errors::{sql_err, SqlResult};
use super::schema::{
    APPLICATION_ID, IDENTIFY, MIGRATIONS, OP_BEGIN, OP_RELEASE, OP_ROLLBACK, SYNC_FULL, SYNC_NORMAL,
    TX_BEGIN, TX_COMMIT, TX_ROLLBACK,
};
use crate::error::{Error, Result};
use crate::options::Durability;
use crate::store::Access;
use crate::sync::{lock, panic_text};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// How many busy-handler rounds a lock wait may take: about 30 s of short sleeps.
const BUSY_ROUNDS: i32 = 6_000;
/// Readers kept open for reuse.
const READER_POOL: usize = 8;
/// Writes run together in one transaction, at most.
const MAX_BATCH: usize = 256;
/// The longest a leader waits for more writes (see [`Pending`]): a caller that stopped
/// writing costs at most this once, also where an fsync takes a second.
const MAX_GATHER: Duration = Duration::from_millis(5);

/// The busy handler: short, jittered sleeps, so that waiting processes take turns instead of
/// one sleeping for a long back-off while another commits again and again.
fn busy_wait(round: i32) -> bool {
    if round >= BUSY_ROUNDS {
        return false;
    }
    let base_us = 200 + (round.min(200) as u64) * 24; // 0.2 ms growing to 5 ms
    let jitter = crate::clock::jitter(base_us / 2);
    std::thread::sleep(Duration::from_micros(base_us / 2 + jitter));
    true
}

/// How the connections of a handle reach the file: writers always the usual way, readers
/// depending on whether they may write it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadMode {
    /// The usual way, through the write-ahead log and its shared-memory index. Used by every
    /// writer, and by a reader that may write the file: the `-wal`/`-shm` it may create get
    /// the database's permissions (SQLite copies them), so they are of use to the owner, and
    /// are removed when the last connection closes.
    Shared,
    /// Read-only connections of a user who may not write the file, while its `-wal` and
    /// `-shm` exist (a writer has it open): SQLite uses them as they are and creates nothing.
    ReadOnlyShared,
    /// A user who may not write the file, while no `-wal`/`-shm` exist (no process has it
    /// open): SQLite would create both, owned by this user, and in a shared sticky folder the
    /// owner could then neither use nor delete them. Read as immutable instead (no lock, no
    /// log, nothing created), and refuse to go on once the file changes (see [`Stamp`]).
    Immutable(Stamp),
}

/// What a file looked like when an immutable reader opened it. SQLite does not notice a
/// change to an immutable file, so a reader checks around each read that none happened: a
/// writer that opens the file creates its `-wal` at once, and a checkpoint rewrites the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    ctime: (i64, i64),
    wal: bool,
}

impl Stamp {
    fn of(path: &Path) -> Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m =
            std::fs::metadata(path).map_err(|e| Error::io(format!("cannot read {}: {e}", path.display())))?;
        Ok(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            ctime: (m.ctime(), m.ctime_nsec()),
            wal: side_file(path, "-wal").exists(),
        })
    }
}

/// `X-wal` or `X-shm` beside the database `X`.
fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// The path SQLite is given. This SQLite is built to read any name starting with `file:` as a
/// URI (`file:x.db?mode=ro`), but a database location is a path: a relative one gets a
/// leading `./`, which SQLite takes as a plain name. Absolute paths never start with `file:`.
pub(crate) fn plain_path(path: &Path) -> PathBuf {
    if path.as_os_str().as_encoded_bytes().starts_with(b"file:") {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    }
}

/// `file:` URI for SQLite: the absolute path, percent-encoded, and the parameters.
fn uri(path: &Path, params: &str) -> Result<String> {
    let abs =
        std::fs::canonicalize(path).map_err(|e| Error::io(format!("cannot open {}: {e}", path.display())))?;
    let mut out = String::from("file:");
    for &b in abs.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('?');
    out.push_str(params);
    Ok(out)
}

fn open_conn(path: &Path, access: Access, mode: &ReadMode) -> Result<Connection> {
    if path.is_dir() {
        return Err(Error::io(format!("cannot open {}: it is a directory", path.display())));
    }
    let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // Through the VFS that writes a commit's log frames in one call (`ffi::wal`).
    let open = |target: &dyn AsRef<Path>, flags| match crate::ffi::wal::vfs_name() {
        Some(vfs) => Connection::open_with_flags_and_vfs(target, flags, vfs),
        None => Connection::open_with_flags(target, flags),
    };
    let opened = match (access, mode) {
        (Access::Create, _) => open(&path, rw | OpenFlags::SQLITE_OPEN_CREATE),
        (Access::Existing, _) => open(&path, rw),
        (Access::ReadOnly, ReadMode::Immutable(_)) => {
            open(&uri(path, "immutable=1")?, ro | OpenFlags::SQLITE_OPEN_URI)
        }
        (Access::ReadOnly, ReadMode::ReadOnlyShared) => {
            // Never create the -shm, should the writer close (and delete it) meanwhile.
            open(&uri(path, "readonly_shm=1")?, ro | OpenFlags::SQLITE_OPEN_URI)
        }
        // A reader that may write the file opens it as writers do (`query_only` keeps it from
        // writing): the last connection to close then removes the -wal and -shm, which a
        // read-only connection cannot.
        (Access::ReadOnly, ReadMode::Shared) => open(&path, rw),
    };
    let conn = opened.map_err(|e| sql_err(e).context(format!("cannot open {}", path.display())))?;
    conn.busy_handler(Some(busy_wait)).sql()?;
    conn.set_prepared_statement_cache_capacity(96);
    Ok(conn)
}

/// Checks, before SQLite sees the file, what only the caller's access can tell: whether the
/// database must exist, and whether this user may use it the way it asks. Picks the read
/// mode of a read-only handle.
fn precheck(path: &Path, access: Access) -> Result<ReadMode> {
    let who = path.display();
    if path.is_dir() {
        return Err(Error::io(format!("cannot open {who}: it is a directory")));
    }
    let exists = match std::fs::metadata(path) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(format!("cannot open {who}: {e}"))),
    };
    if !exists {
        return match access {
            Access::Create => Ok(ReadMode::Shared),
            _ => Err(Error::not_found(format!("{who}: no such database file"))),
        };
    }
    if may_write(path) {
        return Ok(ReadMode::Shared);
    }
    if access != Access::ReadOnly {
        // SQLite would fall back to reading, and create -wal/-shm owned by this user on the
        // way: refuse before it does.
        return Err(Error::io(format!(
            "cannot write {who}: permission denied (commands that only read it still work)"
        )));
    }
    let (wal, shm) = (side_file(path, "-wal").exists(), side_file(path, "-shm").exists());
    match (wal, shm) {
        (true, true) => Ok(ReadMode::ReadOnlyShared),
        (false, false) => Ok(ReadMode::Immutable(Stamp::of(path)?)),
        _ => Err(Error::io(format!(
            "cannot read {who} without write permission: its {} is missing, and reading would \
             create it owned by this user; let its owner open the database once",
            if wal { "-shm" } else { "-wal" }
        ))),
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<()> {
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA journal_size_limit = 67108864; PRAGMA wal_autocheckpoint = 2000; \
         PRAGMA cache_size = -16384;",
    )
    .sql()?;
    set_sync(conn, durability)
}

fn set_sync(conn: &Connection, durability: Durability) -> Result<()> {
    exec(
        conn,
        match durability {
            Durability::Full => SYNC_FULL,
            Durability::Normal => SYNC_NORMAL,
        },
    )
}

/// Runs one statement without results through the statement cache.
fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql).sql()?.execute([]).sql().map(|_| ())
}

/// Checks that `conn` is an empty file or a batchdb database this version can read, before
/// anything is written to it.
fn identify(conn: &Connection, path: &Path) -> Result<bool> {
    let who = path.display();
    let (app_id, version, objects): (i32, i64, i64) = conn
        .query_row(IDENTIFY, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => {
                Error::invalid(format!("{who} is not a batchdb database (not an SQLite file)"))
            }
            _ => sql_err(e).context(format!("cannot read {who}")),
        })?;
    if app_id == 0 && objects == 0 {
        return Ok(true);
    }
    if app_id != APPLICATION_ID {
        return Err(Error::invalid(format!(
            "{who} is not a batchdb database (an SQLite file with application_id {app_id:#x})"
        )));
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(Error::invalid(format!(
            "{who} has schema version {version}, newer than this batchdb understands ({}); \
             upgrade batchdb to open it",
            MIGRATIONS.len()
        )));
    }
    Ok(false)
}

fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(TX_BEGIN).sql()?;
    let run = || -> Result<()> {
        // Re-read inside the lock: another process may have migrated meanwhile.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).sql()?;
        for (i, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(script).sql()?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1)).sql()?;
        }
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}")).sql()
    };
    match run() {
        Ok(()) => conn.execute_batch(TX_COMMIT).sql(),
        Err(e) => {
            let _ = conn.execute_batch(TX_ROLLBACK);
            Err(e)
        }
    }
}

type Output = Box<dyn Any + Send>;
type Slot = Arc<Mutex<Option<Result<Output>>>>;
type WriteFn = Box<dyn FnOnce(&Connection) -> Result<Output> + Send>;

struct Queued {
    f: WriteFn,
    durable: bool,
    slot: Slot,
    /// The caller's thread, to tell who of the last batch has come back (see [`Pending`]).
    thread: ThreadId,
    /// This write and the caller's write before it are durable: a caller that writes so is
    /// expected back with another at once (see [`Pending`]).
    steady: bool,
}

thread_local! {
    /// This thread's id, and whether its last write was durable (see [`Queued::steady`]).
    static CALLER: (ThreadId, std::cell::Cell<bool>) =
        (std::thread::current().id(), std::cell::Cell::new(false));
}

/// The queue of writes and what the next leader needs to know of the last batch.
///
/// A leader that started at once when its write arrived would, on a machine with fewer cores
/// than writing threads, commit small batches: the callers of the batch before are still
/// being woken and preparing their next write. So a new leader first waits for those callers
/// to queue again, as PostgreSQL's `commit_delay` waits for siblings before flushing. It
/// waits only after a commit that was fsynced, at most half as long as that commit took (and
/// 5 ms), and only for callers that write durably again and again (adds from many threads);
/// one thread writing alone never waits. A worker that claims after its completion is not
/// waited for: its claim needs no fsync and would be held back by the one it joined (P4 with
/// 2 workers at durability full lost a quarter when it was).
#[derive(Default)]
struct Pending {
    queue: Vec<Queued>,
    /// A caller is running a batch.
    leading: bool,
    /// The threads of the last batch's steady writes (see [`Queued::steady`]).
    last_threads: Vec<ThreadId>,
    /// How long the last batch's commit took, when it was fsynced; zero otherwise.
    last_commit: Duration,
    /// The leader waits on `arrived` for more writes.
    gathering: bool,
}

impl Pending {
    /// How many writes the leader waits for: those queued, and one for each caller of the
    /// last batch that has not queued again yet.
    fn expected(&self) -> usize {
        let back = self.last_threads.iter().filter(|t| !self.queue.iter().any(|q| q.thread == **t)).count();
        (self.queue.len() + back).min(MAX_BATCH)
    }
}

struct WriterConn {
    conn: Connection,
    synced_full: bool,
    /// The ids this connection last committed, while no other connection has written since
    /// (see `counters`).
    known: Option<Known>,
}

/// The connections of one open database.
pub(crate) struct Conns {
    /// First, so that it stops before the connections close. None when read-only.
    checkpointer: Option<Checkpointer>,
    /// The path as SQLite gets it (see [`plain_path`]), also the one messages show.
    pub path: PathBuf,
    access: Access,
    mode: ReadMode,
    durability: Durability,
    writer: Mutex<WriterConn>,
    pending: Mutex<Pending>,
    /// Signalled when a leader finishes a batch.
    led: Condvar,
    /// Signalled when a write is queued while the leader gathers (see [`Pending`]).
    arrived: Condvar,
    /// The longest a leader gathers: [`MAX_GATHER`], longer in a test.
    max_gather: Duration,
    readers: Mutex<Vec<Connection>>,
}

impl Conns {
    pub fn open(path: &Path, durability: Durability, access: Access) -> Result<Conns> {
        let path = &plain_path(path);
        let mode = precheck(path, access)?;
        Self::open_in(path, durability, access, mode)
    }

    fn open_in(path: &Path, durability: Durability, access: Access, mode: ReadMode) -> Result<Conns> {
        let conn = open_conn(path, access, &mode)?;
        let fresh = identify(&conn, path)?;
        if access == Access::ReadOnly {
            Self::check_readable(&conn, path, fresh)?;
            conn.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;").sql()?;
            let conns = Conns {
                checkpointer: None,
                path: path.to_path_buf(),
                access,
                mode,
                durability,
                writer: Mutex::new(WriterConn { conn, synced_full: false, known: None }),
                pending: Mutex::new(Pending::default()),
                led: Condvar::new(),
                arrived: Condvar::new(),
                max_gather: MAX_GATHER,
                readers: Mutex::new(Vec::new()),
            };
            conns.unchanged()?;
            return Ok(conns);
        }
        let mode_name: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .sql()
            .map_err(|e| e.context(format!("cannot open {}", path.display())))?;
        if !mode_name.eq_ignore_ascii_case("wal") {
            return Err(Error::io(format!(
                "cannot put {} in WAL mode (got {mode_name}); is it on a network file system?",
                path.display()
            )));
        }
        if fresh
            || conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).sql()?
                < MIGRATIONS.len() as i64
        {
            migrate(&conn).map_err(|e| e.context(format!("cannot set up {}", path.display())))?;
        }
        configure(&conn, durability)?;
        Ok(Conns {
            checkpointer: Some(Checkpointer::start(path)),
            path: path.to_path_buf(),
            access,
            mode,
            durability,
            writer: Mutex::new(WriterConn { conn, synced_full: durability == Durability::Full, known: None }),
            pending: Mutex::new(Pending::default()),
            led: Condvar::new(),
            arrived: Condvar::new(),
            max_gather: MAX_GATHER,
            readers: Mutex::new(Vec::new()),
        })
    }

    /// A read-only handle cannot create the tables or migrate them: the file must be a
    /// batchdb database of this version already.
    fn check_readable(conn: &Connection, path: &Path, fresh: bool) -> Result<()> {
        let who = path.display();
        if fresh {
            return Err(Error::not_found(format!(
                "{who} is empty: no batchdb database yet (a command that writes creates one)"
            )));
        }
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).sql()?;
        if version < MIGRATIONS.len() as i64 {
            return Err(Error::invalid(format!(
                "{who} has schema version {version}, older than this batchdb's ({}); a command \
                 that writes upgrades it, one that only reads cannot",
                MIGRATIONS.len()
            )));
        }
        Ok(())
    }

    /// For an immutable reader: fails once the file is no longer what it was when opened,
    /// since SQLite would then read a mix of old and new pages without noticing.
    fn unchanged(&self) -> Result<()> {
        if let ReadMode::Immutable(stamp) = &self.mode {
            if Stamp::of(&self.path)? != *stamp {
                return Err(Error::busy(format!(
                    "{} changed while it was being read without write permission (a writer \
                     opened it); run the command again",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }

    fn read_only_error(&self) -> Error {
        Error::misuse(format!("{} was opened read-only", self.path.display()))
    }

    /// Runs `f` in a write transaction, possibly together with other callers' writes, and
    /// returns once it is committed. `durable` writes are fsynced at durability `full`; the
    /// others (claims, lease renewals, staged chunks) are made durable by the next durable
    /// commit, since the log is append-only.
    pub fn write<T, F>(&self, durable: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        if self.access == Access::ReadOnly {
            return Err(self.read_only_error());
        }
        let slot: Slot = Arc::new(Mutex::new(None));
        let f: WriteFn = Box::new(move |c| f(c).map(|v| Box::new(v) as Output));
        let (thread, steady) = CALLER.with(|(id, last)| (*id, last.replace(durable) && durable));
        let mut p = lock(&self.pending);
        p.queue.push(Queued { f, durable, slot: slot.clone(), thread, steady });
        if p.gathering {
            self.arrived.notify_one();
        }
        loop {
            // The leader fills slots before it takes `pending` again to signal, so a slot
            // seen empty here is filled only after this thread waits.
            if let Some(out) = lock(&slot).take() {
                return out.map(|b| *b.downcast::<T>().expect("write output type"));
            }
            if p.leading {
                p = self.led.wait(p).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            p.leading = true;
            p = self.gather(p);
            let n = p.queue.len().min(MAX_BATCH);
            let batch: Vec<Queued> = p.queue.drain(..n).collect();
            drop(p);
            let mut lead = Lead {
                conns: self,
                threads: steady_threads(&batch),
                slots: batch.iter().map(|q| q.slot.clone()).collect(),
                commit: None,
            };
            lead.commit = Some(self.run_batch(&mut lock(&self.writer), batch));
            drop(lead);
            p = lock(&self.pending);
        }
    }

    /// The leader's wait for the callers of the last batch to queue again (see [`Pending`]).
    fn gather<'p>(&self, mut p: MutexGuard<'p, Pending>) -> MutexGuard<'p, Pending> {
        let want = p.expected();
        if want <= p.queue.len() {
            return p;
        }
        let deadline = Instant::now() + (p.last_commit / 2).min(self.max_gather);
        p.gathering = true;
        while p.queue.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = self.arrived.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        p.gathering = false;
        p
    }

    /// Runs one batch and returns how long its commit took when it was fsynced, else zero.
    fn run_batch(&self, w: &mut WriterConn, batch: Vec<Queued>) -> Duration {
        let durable = self.durability == Durability::Full && batch.iter().any(|q| q.durable);
        if durable != w.synced_full {
            let level = if durable { Durability::Full } else { Durability::Normal };
            if let Err(e) = set_sync(&w.conn, level) {
                finish(batch.into_iter().map(|q| (q.slot, Err(e.clone()))));
                return Duration::ZERO;
            }
            w.synced_full = durable;
        }
        let conn = &w.conn;
        if let Err(e) = exec(conn, TX_BEGIN) {
            finish(batch.into_iter().map(|q| (q.slot, Err(e.clone()))));
            return Duration::ZERO;
        }
        let single = batch.len() == 1;
        let mut done = Vec::with_capacity(batch.len());
        // The kept totals' change of the operations that stay in the transaction.
        let mut change = Tally::default();
        let ids = OpenIds::new(w.known.take());
        for q in batch {
            counters::take();
            let mark = counters::mark();
            if !single {
                if let Err(e) = exec(conn, OP_BEGIN) {
                    done.push((q.slot, Err(e)));
                    continue;
                }
            }
            let out = catch_unwind(AssertUnwindSafe(|| (q.f)(conn))).unwrap_or_else(|p| {
                Err(Error::Panic(format!("internal error in a write: {}", panic_text(&p))))
            });
            let noted = counters::take();
            if out.is_err() {
                counters::restore(mark);
            }
            if !single {
                let undo = if out.is_ok() { Ok(()) } else { exec(conn, OP_ROLLBACK) };
                if let Err(e) = undo.and_then(|()| exec(conn, OP_RELEASE)) {
                    done.push((q.slot, Err(e)));
                    continue;
                }
            }
            if out.is_ok() {
                change.add(noted);
            }
            done.push((q.slot, out));
        }
        let all_failed_single = single && done[0].1.is_err();
        let started = Instant::now();
        let commit = if all_failed_single {
            exec(conn, TX_ROLLBACK)
        } else {
            counters::write(conn, change).and_then(|()| exec(conn, TX_COMMIT))
        };
        let known = ids.close();
        match commit {
            Ok(()) => {
                // Also after a rollback of the one operation: the file's ids are then those
                // the transaction began with.
                w.known = known;
                if let Some(c) = &self.checkpointer {
                    c.committed();
                }
                finish(done)
            }
            Err(e) => {
                let _ = exec(conn, TX_ROLLBACK);
                finish(done.into_iter().map(|(s, out)| match out {
                    Ok(_) => (s, Err(e.clone())),
                    Err(err) => (s, Err(err)),
                }))
            }
        }
        // Only an fsync is worth waiting for: at durability normal a commit costs about what a
        // wait for another thread's write would (P4 with 2 workers lost a quarter when it did).
        if durable {
            started.elapsed()
        } else {
            Duration::ZERO
        }
    }

    /// Runs `f` on a reader connection. `f` opens a transaction itself when it needs more
    /// than one statement to see one snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.unchanged()?;
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let access =
                    if self.access == Access::ReadOnly { Access::ReadOnly } else { Access::Existing };
                let c = open_conn(&self.path, access, &self.mode)?;
                c.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;").sql()?;
                c
            }
        };
        let out = f(&conn);
        let out = match (out, self.unchanged()) {
            (Ok(_), Err(e)) => Err(e),
            (out, _) => out,
        };
        if conn.is_autocommit() {
            let mut pool = lock(&self.readers);
            if pool.len() < READER_POOL {
                pool.push(conn);
            }
        }
        out
    }

    /// Runs `f` directly on the writer connection, outside any transaction.
    /// On a read-only handle the "writer" is one more read-only connection.
    pub fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.unchanged()?;
        let w = lock(&self.writer);
        let out = f(&w.conn);
        match (out, self.unchanged()) {
            (Ok(_), Err(e)) => Err(e),
            (out, _) => out,
        }
    }
}

/// Ends a caller's turn as leader, also when a batch unwinds, so that the others never wait
/// for a leader that is gone: answers any write of an unwound batch left without a result
/// (its caller would otherwise lead empty batches for ever), and leaves what the next leader
/// needs to know (see [`Pending`]).
struct Lead<'a> {
    conns: &'a Conns,
    threads: Vec<ThreadId>,
    /// The result slots of the batch's writes.
    slots: Vec<Slot>,
    /// How long the commit took; None when the batch unwound.
    commit: Option<Duration>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if self.commit.is_none() {
            for slot in &self.slots {
                lock(slot).get_or_insert_with(|| {
                    Err(Error::Panic("internal error: a batch of writes unwound before its commit".into()))
                });
            }
        }
        let mut p = lock(&self.conns.pending);
        p.leading = false;
        p.last_threads = std::mem::take(&mut self.threads);
        p.last_commit = self.commit.unwrap_or_default();
        drop(p);
        self.conns.led.notify_all();
    }
}

/// The threads of a batch's steady writes.
fn steady_threads(batch: &[Queued]) -> Vec<ThreadId> {
    batch.iter().filter(|q| q.steady).map(|q| q.thread).collect()
}

/// The ids of the write transaction a thread leads, closed when it ends, also when it
/// unwinds (see `counters`).
struct OpenIds;

impl OpenIds {
    fn new(known: Option<Known>) -> OpenIds {
        counters::open(known);
        OpenIds
    }

    /// What the writer may remember once the transaction has committed.
    fn close(self) -> Option<Known> {
        counters::close()
    }
}

impl Drop for OpenIds {
    fn drop(&mut self) {
        counters::close();
    }
}

fn finish(done: impl IntoIterator<Item = (Slot, Result<Output>)>) {
    for (slot, out) in done {
        *lock(&slot) = Some(out);
    }
}

/// Whether this process may write the file `path`, by its effective ids, ACLs and mount
/// flags, asked without opening the file: closing any descriptor of a file drops every POSIX
/// lock this process holds on it, SQLite's locks of other open handles included.
fn may_write(path: &Path) -> bool {
    use rustix::fs::{accessat, Access, AtFlags, CWD};
    accessat(CWD, path, Access::WRITE_OK, AtFlags::EACCESS).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(c: &Connection) -> Result<i64> {
        c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'extra'", [], |r| r.get(0)).sql()
    }

    /// An immutable reader (what a user without write permission gets while no process has
    /// the file open) refuses to read once a writer has opened and changed the file, instead
    /// of reading a mix of old and new pages.
    #[test]
    fn an_immutable_reader_refuses_a_file_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Conns::open(&path, Durability::Full, Access::Create).unwrap());
        assert!(!side_file(&path, "-wal").exists());

        let stamp = Stamp::of(&path).unwrap();
        let reader =
            Conns::open_in(&path, Durability::Full, Access::ReadOnly, ReadMode::Immutable(stamp)).unwrap();
        assert_eq!(reader.read(count).unwrap(), 0);
        assert!(matches!(reader.write(true, |_| Ok(())), Err(Error::Misuse(_))));
        assert!(!side_file(&path, "-wal").exists(), "the immutable reader created the -wal");

        let writer = Conns::open(&path, Durability::Full, Access::Existing).unwrap();
        writer.write(true, |c| c.execute_batch("CREATE TABLE extra (x)").sql()).unwrap();
        let err = reader.read(count).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        assert!(err.to_string().contains("changed while it was being read"), "{err}");
        drop(writer);
        // Even once the writer is gone and its -wal removed, the file is not what was opened.
        assert!(matches!(reader.read(count), Err(Error::Busy(_))));
    }

    /// In a batch of several writes (group commit), a write that fails is rolled back to its
    /// savepoint, and so is its change to the kept totals, while the others' changes count.
    #[test]
    fn a_failed_write_in_a_batch_leaves_the_totals_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conns = Conns::open(&dir.path().join("t.db"), Durability::Normal, Access::Create).unwrap();
        let kept_row = || -> (i64, i64, i64) {
            conns
                .read(|c| {
                    c.query_row("SELECT jobs, fails, last_blob FROM counter", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .sql()
                })
                .unwrap()
        };
        let queued = |f: WriteFn| Queued {
            f,
            durable: true,
            slot: Arc::new(Mutex::new(None)),
            thread: std::thread::current().id(),
            steady: true,
        };
        let failing = queued(Box::new(|c| {
            c.execute_batch("CREATE TABLE gone (x)").sql()?;
            counters::note(|t| t.jobs += 7);
            counters::next_blob(c, 5)?;
            Err(Error::invalid("this write fails after noting a change and taking ids"))
        }));
        let kept = queued(Box::new(|c| {
            counters::note(|t| t.fails += 1);
            Ok(Box::new(counters::next_blob(c, 1)?) as Output)
        }));
        let slots = [failing.slot.clone(), kept.slot.clone()];
        conns.run_batch(&mut lock(&conns.writer), vec![failing, kept]);
        assert!(matches!(lock(&slots[0]).take(), Some(Err(Error::Invalid(_)))));
        let id = lock(&slots[1]).take().unwrap().unwrap().downcast::<i64>().unwrap();
        assert_eq!(*id, 1, "the failed write's ids are handed out again");
        assert_eq!(kept_row(), (0, 1, 1));
        let gone: i64 = conns
            .read(|c| {
                c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'gone'", [], |r| r.get(0)).sql()
            })
            .unwrap();
        assert_eq!(gone, 0, "the failed write's table was rolled back");
    }

    /// A new leader waits for the callers of the last batch to queue again, so that writers
    /// on more threads than cores still share commits; one thread alone never waits.
    #[test]
    fn a_leader_gathers_the_writes_of_the_last_batchs_callers() {
        let dir = tempfile::tempdir().unwrap();
        let mut conns = Conns::open(&dir.path().join("t.db"), Durability::Normal, Access::Create).unwrap();
        conns.max_gather = Duration::from_secs(3600);
        let conns = Arc::new(conns);
        let me = std::thread::current().id();
        let noop = || -> WriteFn { Box::new(|_| Ok(Box::new(()) as Output)) };
        let queued = |thread| Queued {
            f: noop(),
            durable: true,
            slot: Arc::new(Mutex::new(None)),
            thread,
            steady: true,
        };
        // Alone: the only caller of the last batch has queued again.
        let mut p = lock(&conns.pending);
        p.last_threads = vec![me];
        p.last_commit = Duration::from_secs(3600);
        p.queue.push(queued(me));
        assert_eq!(p.expected(), 1);
        let p = conns.gather(p);
        assert_eq!(p.queue.len(), 1, "nothing to wait for");
        drop(p);
        // Another thread of the last batch comes back while this leader gathers.
        let (tx, rx) = std::sync::mpsc::channel();
        let other = {
            let conns = conns.clone();
            std::thread::spawn(move || {
                tx.send(std::thread::current().id()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                conns.write(true, |_| Ok(7)).unwrap()
            })
        };
        let other_id = rx.recv().unwrap();
        let mut p = lock(&conns.pending);
        p.leading = true;
        p.last_threads = vec![me, other_id];
        assert_eq!(p.expected(), 2);
        let mut p = conns.gather(p);
        assert_eq!(p.queue.len(), 2, "the other caller's write joined the batch");
        let batch: Vec<Queued> = p.queue.drain(..).collect();
        drop(p);
        let slots = batch.iter().map(|q| q.slot.clone()).collect();
        let mut lead = Lead { conns: &conns, threads: steady_threads(&batch), slots, commit: None };
        lead.commit = Some(conns.run_batch(&mut lock(&conns.writer), batch));
        drop(lead);
        assert_eq!(other.join().unwrap(), 7);
        // The other thread's write was its first: not one of a steady stream, not waited for.
        assert_eq!(lock(&conns.pending).last_threads, vec![me]);
    }

    /// A leader whose batch unwinds before its commit still answers that batch's callers, so
    /// that none of them waits (or leads empty batches) for ever.
    #[test]
    fn a_leader_that_unwinds_answers_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let conns =
            Arc::new(Conns::open(&dir.path().join("t.db"), Durability::Normal, Access::Create).unwrap());
        lock(&conns.pending).leading = true;
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let conns = conns.clone();
            std::thread::spawn(move || tx.send(conns.write(true, |_| Ok(1))).unwrap());
        }
        while lock(&conns.pending).queue.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let queued = lock(&conns.pending).queue.remove(0);
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let _lead =
                Lead { conns: &conns, threads: vec![], slots: vec![queued.slot.clone()], commit: None };
            panic!("a batch unwinds before it is committed");
        }));
        assert!(unwound.is_err());
        let got = rx.recv_timeout(Duration::from_secs(30)).expect("the caller got no answer");
        assert!(matches!(got, Err(Error::Panic(_))), "{got:?}");
        assert!(!lock(&conns.pending).leading);
    }

    #[test]
    fn a_file_uri_is_a_relative_path() {
        assert_eq!(plain_path(Path::new("file:x.db?mode=ro")), Path::new("./file:x.db?mode=ro"));
        assert_eq!(plain_path(Path::new("/tmp/file:x.db")), Path::new("/tmp/file:x.db"));
        assert_eq!(plain_path(Path::new("x.db")), Path::new("x.db"));
    }
}
