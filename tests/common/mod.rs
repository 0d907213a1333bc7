//! Helpers shared by the integration suites.
#![allow(dead_code)]

use batchdb::{Db, Options};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A fresh, empty database for one test: a file in a temporary folder by default, or, when
/// `BATCHDB_TEST_PG` holds a PostgreSQL URL (and the suite is built with `--features
/// postgres`), a fresh schema on that server, dropped at the end. `path` is what
/// `Db::open` takes either way, so the same test body runs on both backends.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub pg_schema: Option<String>,
}

/// The PostgreSQL server the suite runs against, if any.
pub fn pg_url() -> Option<String> {
    let url = std::env::var("BATCHDB_TEST_PG").ok().filter(|u| !u.is_empty())?;
    if !cfg!(feature = "postgres") {
        panic!("BATCHDB_TEST_PG is set, but the tests were built without --features postgres");
    }
    Some(url)
}

/// Whether this run tests the PostgreSQL backend.
pub fn on_pg() -> bool {
    pg_url().is_some()
}

/// Skips (returns true and says so) a test that only makes sense on an SQLite file.
pub fn sqlite_only(what: &str) -> bool {
    if on_pg() {
        println!("skipped on PostgreSQL: {what}");
        return true;
    }
    false
}

pub fn temp_path() -> TempDb {
    let dir = tempfile::tempdir().expect("tempdir");
    match pg_url() {
        None => {
            let path = dir.path().join("test.db");
            TempDb { dir, path, pg_schema: None }
        }
        Some(url) => {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            let schema =
                format!("t_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos % 100_000);
            let sep = if url.contains('?') { '&' } else { '?' };
            let path = PathBuf::from(format!("{url}{sep}schema={schema}"));
            TempDb { dir, path, pg_schema: Some(schema) }
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Some(schema) = &self.pg_schema {
            if helper_role().is_none() {
                let _ = pg::exec(
                    &pg_url().unwrap_or_default(),
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                );
            }
        }
    }
}

/// Raw access to a test database, bypassing batchdb: SQL on the file, or on the schema.
pub fn raw_count(path: &Path, sql: &str) -> i64 {
    match path.to_str().filter(|p| p.starts_with("postgres")) {
        Some(url) => pg::count(url, sql),
        None => {
            let c = rusqlite::Connection::open(path).expect("raw open");
            c.query_row(sql, [], |r| r.get(0)).expect("raw count")
        }
    }
}

/// Adds a chunk row whose blob does not exist.
pub fn insert_orphan_chunk(path: &Path) {
    match path.to_str().filter(|p| p.starts_with("postgres")) {
        Some(url) => {
            pg::exec(url, "INSERT INTO chunk (blob, seq, data, digest) VALUES (99999, 0, '\\x00'::bytea, 0)")
                .unwrap();
        }
        None => {
            let raw = rusqlite::Connection::open(path).unwrap();
            raw.execute("INSERT INTO chunk (blob, seq, data, digest) VALUES (99999, 0, x'00', 0)", [])
                .unwrap();
        }
    }
}

#[cfg(feature = "postgres")]
pub mod pg {
    //! A raw client for the test server. A URL's `schema` parameter becomes the search path.

    fn connect(url: &str) -> Result<(postgres::Client, Option<String>), postgres::Error> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix("schema=") {
                Some(s) => {
                    schema = Some(s.to_string());
                    false
                }
                None => !kv.is_empty(),
            })
            .collect();
        let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
        if let Some(s) = &schema {
            c.batch_execute(&format!("SET search_path TO {s}"))?;
        }
        Ok((c, schema))
    }

    pub fn exec(url: &str, sql: &str) -> Result<(), postgres::Error> {
        connect(url)?.0.batch_execute(sql)
    }

    pub fn count(url: &str, sql: &str) -> i64 {
        connect(url).expect("raw connect").0.query_one(sql, &[]).expect("raw count").get(0)
    }

    pub fn client(url: &str) -> postgres::Client {
        connect(url).expect("raw connect").0
    }

    /// Flips one byte of the `seq`th chunk of the blob `hash`.
    pub fn corrupt_chunk(url: &str, hash: &batchdb::Hash, seq: i64, at: usize) {
        let mut c = client(url);
        let hash: &[u8] = hash.as_bytes().as_slice();
        let row = c
            .query_one(
                "SELECT c.blob, c.data FROM chunk c JOIN blob b ON b.id = c.blob WHERE b.hash = $1 AND c.seq = $2",
                &[&hash, &seq],
            )
            .expect("find chunk");
        let (blob, mut data): (i64, Vec<u8>) = (row.get(0), row.get(1));
        let i = at % data.len();
        data[i] ^= 0x5a;
        c.execute("UPDATE chunk SET data = $1 WHERE blob = $2 AND seq = $3", &[&data, &blob, &seq])
            .expect("corrupt");
    }
}

#[cfg(not(feature = "postgres"))]
pub mod pg {
    pub fn exec(_url: &str, _sql: &str) -> Result<(), String> {
        Err("built without the postgres feature".into())
    }
    pub fn count(_url: &str, _sql: &str) -> i64 {
        panic!("built without the postgres feature")
    }
    pub fn corrupt_chunk(_url: &str, _hash: &batchdb::Hash, _seq: i64, _at: usize) {
        panic!("built without the postgres feature")
    }
}

pub fn open(path: &Path) -> Db {
    Db::open(path, Options::default()).expect("open")
}

pub fn open_with(path: &Path, f: impl FnOnce(&mut Options)) -> Db {
    let mut o = Options::default();
    f(&mut o);
    Db::open(path, o).expect("open")
}

pub fn fast(o: &mut Options) {
    o.durability = batchdb::Durability::Normal;
}

/// Re-runs this test binary as a child process that executes only the test `name`, with
/// `BATCHDB_HELPER` set so that the test body takes its helper branch.
pub fn spawn_helper(name: &str, role: &str, args: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("BATCHDB_HELPER", role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in args {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn helper")
}

pub fn helper_role() -> Option<String> {
    std::env::var("BATCHDB_HELPER").ok()
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("helper needs {name}"))
}

/// Polls `f` until it is true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

/// Deterministic pseudo-random bytes, generated a block at a time.
pub struct Pattern {
    state: u64,
    left: u64,
}

impl Pattern {
    pub fn new(seed: u64, len: u64) -> Pattern {
        Pattern { state: seed | 1, left: len }
    }
}

impl std::io::Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Peak resident set size of this process since it started its program, in KiB: `VmHWM`
/// of /proc/self/status. Not getrusage's `ru_maxrss`: Linux carries that over exec from the
/// process that spawned this one (with posix_spawn, the parent's whole address space), so a
/// helper spawned while other tests of the parent held memory reported their peak, not its
/// own; the 256 MiB round trip failed its 64 MiB bound that way once in a loaded full run.
pub fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[allow(unsafe_code)]
fn libc_rusage_zeroed() -> libc::rusage {
    // SAFETY: libc::rusage is a C struct of integers, for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

#[allow(unsafe_code)]
fn rusage_self(ru: &mut libc::rusage) -> i32 {
    // SAFETY: `ru` is a valid, exclusively borrowed rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, ru) }
}

/// What this process has used so far: CPU time (user + system; some kernels count it in
/// scheduler ticks of 4 ms) and voluntary context switches over all its threads (each one a
/// thread going to sleep, so each sleep-and-wake of a waiter counts once).
pub struct Usage {
    pub cpu: Duration,
    pub sleeps: u64,
}

pub fn usage() -> Usage {
    let mut ru = libc_rusage_zeroed();
    assert_eq!(rusage_self(&mut ru), 0);
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Usage { cpu: tv(ru.ru_utime) + tv(ru.ru_stime), sleeps: ru.ru_nvcsw as u64 }
}

/// Flips one byte of the `seq`th chunk of the blob `hash`, bypassing batchdb.
pub fn corrupt_chunk(path: &Path, hash: &batchdb::Hash, seq: i64, at: usize) {
    if let Some(url) = path.to_str().filter(|p| p.starts_with("postgres")) {
        return pg::corrupt_chunk(url, hash, seq, at);
    }
    let c = rusqlite::Connection::open(path).expect("raw open");
    let (blob, mut data, inline) = sqlite_piece(&c, hash, seq);
    let i = at % data.len();
    data[i] ^= 0x5a;
    set_sqlite_piece(&c, blob, seq, inline, &data);
}

/// The stored bytes of chunk `seq` of a blob in a file: (blob id, bytes, kept inline in the
/// blob row). A blob that fits in one chunk keeps its bytes inline.
pub fn sqlite_piece(c: &rusqlite::Connection, hash: &batchdb::Hash, seq: i64) -> (i64, Vec<u8>, bool) {
    c.query_row(
        "SELECT c.blob, c.data, 0 FROM chunk c JOIN blob b ON b.id = c.blob WHERE b.hash = ?1 AND c.seq = ?2 \
         UNION ALL SELECT id, data, 1 FROM blob WHERE hash = ?1 AND ?2 = 0 AND data IS NOT NULL",
        rusqlite::params![hash.as_bytes().as_slice(), seq],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .expect("find chunk")
}

/// Overwrites the stored bytes of chunk `seq` of blob `blob`, bypassing batchdb.
pub fn set_sqlite_piece(c: &rusqlite::Connection, blob: i64, seq: i64, inline: bool, data: &[u8]) {
    let n = if inline {
        c.execute("UPDATE blob SET data = ?1 WHERE id = ?2", rusqlite::params![data, blob])
    } else {
        c.execute(
            "UPDATE chunk SET data = ?1 WHERE blob = ?2 AND seq = ?3",
            rusqlite::params![data, blob, seq],
        )
    };
    assert_eq!(n.expect("corrupt"), 1);
}

/// The text after `marker` in a helper's output; libtest may print its own words before it
/// on the same line.
pub fn after_marker(output: &[u8], marker: &str) -> String {
    let text = String::from_utf8_lossy(output);
    let at = text.find(marker).unwrap_or_else(|| panic!("no {marker:?} in helper output: {text}"));
    text[at + marker.len()..].lines().next().unwrap_or("").to_string()
}

/// Milliseconds since the Unix epoch: the clock the library stamps rows with.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
