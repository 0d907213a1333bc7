//! The baselines: raw SQLite through rusqlite, with batchdb's pragmas (WAL, the row's
//! `synchronous`), doing the least work that does the same job.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::Path;

pub fn open(path: &Path, full: bool) -> Connection {
    let c = Connection::open(path).expect("open baseline");
    c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)).expect("wal");
    c.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA journal_size_limit = 67108864; PRAGMA wal_autocheckpoint = 2000; \
         PRAGMA cache_size = -16384;",
        if full { "FULL" } else { "NORMAL" }
    ))
    .expect("pragmas");
    c.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
    c
}

/// P1–P3: a job table keyed by the payload's hash.
pub fn jobs_schema(c: &Connection) {
    c.execute_batch("CREATE TABLE IF NOT EXISTS job (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        .expect("schema");
}

/// One single-row INSERT transaction.
pub fn insert_one(c: &Connection, payload: &[u8]) {
    c.execute_batch("BEGIN IMMEDIATE").expect("begin");
    c.prepare_cached("INSERT INTO job (payload) VALUES (?1)").unwrap().execute([payload]).expect("insert");
    c.execute_batch("COMMIT").expect("commit");
}

/// Many single-row INSERTs in one transaction.
pub fn insert_many(c: &Connection, payloads: &[Vec<u8>]) {
    c.execute_batch("BEGIN IMMEDIATE").expect("begin");
    {
        let mut st = c.prepare_cached("INSERT INTO job (payload) VALUES (?1)").unwrap();
        for p in payloads {
            st.execute([p]).expect("insert");
        }
    }
    c.execute_batch("COMMIT").expect("commit");
}

/// P2c, P3c: the layouts of a minimal content-addressed enqueue (issue 22). Each stores a
/// payload under its SHA-256 (unique) once, and queues an instance row for it every time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ca {
    /// `blob (hash PRIMARY KEY, payload) WITHOUT ROWID` and `inst (id, hash)`: two B-trees,
    /// the blob's row stored in hash order.
    WithoutRowid,
    /// `blob (id INTEGER PRIMARY KEY, hash UNIQUE, payload)` and `inst (id, blob)`: three
    /// B-trees (the blob rows appended in id order, a unique index of the hashes).
    RowidUnique,
}

impl Ca {
    pub const ALL: [Ca; 2] = [Ca::WithoutRowid, Ca::RowidUnique];

    pub fn name(self) -> &'static str {
        match self {
            Ca::WithoutRowid => "WITHOUT ROWID blob keyed by hash + instance row",
            Ca::RowidUnique => "rowid blob + unique hash index + instance row",
        }
    }

    pub fn schema(self, c: &Connection) {
        c.execute_batch(match self {
            Ca::WithoutRowid => {
                "CREATE TABLE IF NOT EXISTS blob (hash BLOB PRIMARY KEY, payload BLOB NOT NULL) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS inst (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);"
            }
            Ca::RowidUnique => {
                "CREATE TABLE IF NOT EXISTS blob (id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, \
                     payload BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS inst (id INTEGER PRIMARY KEY, blob INTEGER NOT NULL);"
            }
        })
        .expect("schema");
    }

    /// Stores `payload` under its SHA-256 unless it is there, and queues an instance of it
    /// (inside the caller's transaction).
    fn enqueue(self, c: &Connection, payload: &[u8]) {
        let hash: [u8; 32] = Sha256::digest(payload).into();
        match self {
            Ca::WithoutRowid => {
                c.prepare_cached(
                    "INSERT INTO blob (hash, payload) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
                )
                .unwrap()
                .execute(params![&hash[..], payload])
                .expect("insert blob");
                c.prepare_cached("INSERT INTO inst (hash) VALUES (?1)")
                    .unwrap()
                    .execute([&hash[..]])
                    .expect("insert instance");
            }
            Ca::RowidUnique => {
                let id: i64 = match c
                    .prepare_cached(
                        "INSERT INTO blob (hash, payload) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING RETURNING id",
                    )
                    .unwrap()
                    .query_row(params![&hash[..], payload], |r| r.get(0))
                    .optional()
                    .expect("insert blob")
                {
                    Some(id) => id,
                    None => c
                        .prepare_cached("SELECT id FROM blob WHERE hash = ?1")
                        .unwrap()
                        .query_row([&hash[..]], |r| r.get(0))
                        .expect("find blob"),
                };
                c.prepare_cached("INSERT INTO inst (blob) VALUES (?1)")
                    .unwrap()
                    .execute([id])
                    .expect("insert instance");
            }
        }
    }

    /// One content-addressed enqueue in its own transaction (P2c).
    pub fn add_one(self, c: &Connection, payload: &[u8]) {
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        self.enqueue(c, payload);
        c.execute_batch("COMMIT").expect("commit");
    }

    /// Many content-addressed enqueues in one transaction (P3c).
    pub fn add_many(self, c: &Connection, payloads: &[Vec<u8>]) {
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for p in payloads {
            self.enqueue(c, p);
        }
        c.execute_batch("COMMIT").expect("commit");
    }
}

/// P4: a minimal hand-written queue.
pub fn queue_schema(c: &Connection) {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY, payload BLOB NOT NULL, \
             state INTEGER NOT NULL DEFAULT 0, lease_until INTEGER);
         CREATE INDEX IF NOT EXISTS pending_ready ON pending (id) WHERE state = 0;
         CREATE TABLE IF NOT EXISTS result (id INTEGER PRIMARY KEY, output BLOB NOT NULL);",
    )
    .expect("schema");
}

pub fn queue_fill(c: &Connection, n: usize) {
    c.execute_batch("BEGIN IMMEDIATE").expect("begin");
    {
        let mut st = c.prepare_cached("INSERT INTO pending (payload) VALUES (?1)").unwrap();
        for i in 0..n {
            st.execute([crate::payload(7, i as u64)]).expect("insert");
        }
    }
    c.execute_batch("COMMIT").expect("commit");
}

/// Claims the newest ready row (`UPDATE … RETURNING` in `BEGIN IMMEDIATE`), then records an
/// empty result and deletes it. False when nothing was ready.
pub fn queue_cycle(c: &Connection, busy: &mut u64) -> bool {
    let claimed: Option<(i64, Vec<u8>)> = loop {
        match claim(c) {
            Ok(v) => break v,
            Err(e) if is_busy(&e) => {
                *busy += 1;
                let _ = c.execute_batch("ROLLBACK");
            }
            Err(e) => panic!("baseline claim: {e}"),
        }
    };
    let Some((id, payload)) = claimed else { return false };
    std::hint::black_box(payload);
    loop {
        match complete(c, id) {
            Ok(()) => return true,
            Err(e) if is_busy(&e) => {
                *busy += 1;
                let _ = c.execute_batch("ROLLBACK");
            }
            Err(e) => panic!("baseline complete: {e}"),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn claim(c: &Connection) -> rusqlite::Result<Option<(i64, Vec<u8>)>> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    let r = c
        .prepare_cached(
            "UPDATE pending SET state = 1, lease_until = ?1 \
             WHERE id = (SELECT id FROM pending WHERE state = 0 ORDER BY id DESC LIMIT 1) \
             RETURNING id, payload",
        )?
        .query_row([now_ms() + 30_000], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    c.execute_batch("COMMIT")?;
    Ok(r)
}

fn complete(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    c.prepare_cached("INSERT INTO result (id, output) VALUES (?1, x'')")?.execute([id])?;
    c.prepare_cached("DELETE FROM pending WHERE id = ?1")?.execute([id])?;
    c.execute_batch("COMMIT")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// P5: raw chunk rows, one per transaction (as batchdb stages them), then one durable commit.
pub fn chunks_schema(c: &Connection) {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS chunk (blob INTEGER NOT NULL, seq INTEGER NOT NULL, \
         data BLOB NOT NULL, PRIMARY KEY (blob, seq))",
    )
    .expect("schema");
}

pub fn chunk_insert(c: &Connection, seq: i64, data: &[u8]) {
    c.execute_batch("BEGIN IMMEDIATE").expect("begin");
    c.prepare_cached("INSERT INTO chunk (blob, seq, data) VALUES (1, ?1, ?2)")
        .unwrap()
        .execute(params![seq, data])
        .expect("insert");
    c.execute_batch("COMMIT").expect("commit");
}

pub fn chunk_get(c: &Connection, seq: i64) -> Option<Vec<u8>> {
    c.prepare_cached("SELECT data FROM chunk WHERE blob = 1 AND seq = ?1")
        .unwrap()
        .query_row([seq], |r| r.get(0))
        .optional()
        .expect("select")
}
