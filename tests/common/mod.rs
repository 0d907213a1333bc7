//! Helpers shared by the integration suites.
#![allow(dead_code)]

use batchdb::{Db, Options};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn temp_path() -> TempDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("test.db");
    TempDb { dir, path }
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

/// Peak resident set size of this process, in KiB.
pub fn peak_rss_kib() -> i64 {
    let mut ru = libc_rusage_zeroed();
    assert_eq!(rusage_self(&mut ru), 0);
    ru.ru_maxrss
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

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    let mut ru = libc_rusage_zeroed();
    assert_eq!(rusage_self(&mut ru), 0);
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Flips one byte of the `seq`th chunk of the blob `hash`, bypassing batchdb.
pub fn corrupt_chunk(path: &Path, hash: &batchdb::Hash, seq: i64, at: usize) {
    let c = rusqlite::Connection::open(path).expect("raw open");
    let (blob, mut data): (i64, Vec<u8>) = c
        .query_row(
            "SELECT c.blob, c.data FROM chunk c JOIN blob b ON b.id = c.blob WHERE b.hash = ?1 AND c.seq = ?2",
            rusqlite::params![hash.as_bytes().as_slice(), seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("find chunk");
    let i = at % data.len();
    data[i] ^= 0x5a;
    c.execute("UPDATE chunk SET data = ?1 WHERE blob = ?2 AND seq = ?3", rusqlite::params![data, blob, seq])
        .expect("corrupt");
}

/// The text after `marker` in a helper's output; libtest may print its own words before it
/// on the same line.
pub fn after_marker(output: &[u8], marker: &str) -> String {
    let text = String::from_utf8_lossy(output);
    let at = text.find(marker).unwrap_or_else(|| panic!("no {marker:?} in helper output: {text}"));
    text[at + marker.len()..].lines().next().unwrap_or("").to_string()
}
