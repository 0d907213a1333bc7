//! The tables, their migrations, and every SQL statement of the SQLite backend.
//!
//! ```text
//!  blob ──< chunk            blob(id, hash NULL while staging, size, lease_until)
//!   │                        chunk(blob, seq, data)
//!   ├── job                  job(blob, hash)                 one per distinct payload
//!   │    └──< instance       instance(created, job, state, priority, run_at,
//!   │                                 attempts, lease_until, start)
//!   ├──< result              result(created, job, blob, started, ended)
//!   │                        fail(created, job, message, started, ended, attempts)
//!  meta(name, value)         last_created
//! ```
//!
//! Queue rows are keyed by `created`, an integer unique in the file, so that inserts append.
//! Hashes are 32-byte blobs, indexed only where a lookup needs them. A blob is written under a
//! staging row (`hash IS NULL`) and published by one small `UPDATE` that sets its hash: chunk
//! data is never copied or rewritten.

/// `PRAGMA application_id` of a batchdb file: "BDB!".
pub(crate) const APPLICATION_ID: i32 = 0x4244_4221;

/// Each entry migrates from version `i` to `i + 1`; `user_version` is the count applied.
pub(crate) const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('last_created', 0);
CREATE TABLE blob (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        BLOB UNIQUE,
    size        INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER
);
CREATE TABLE chunk (
    blob INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (blob, seq)
);
CREATE TABLE job (
    blob INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE
);
CREATE TABLE instance (
    created     INTEGER PRIMARY KEY,
    job         INTEGER NOT NULL,
    state       INTEGER NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    run_at      INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,
    start       INTEGER
);
CREATE INDEX instance_ready ON instance (priority, created) WHERE state = 0;
CREATE INDEX instance_running ON instance (lease_until) WHERE state = 1;
CREATE INDEX instance_waiting ON instance (run_at) WHERE state = 2;
CREATE TABLE result (
    created INTEGER PRIMARY KEY,
    job     INTEGER NOT NULL,
    blob    INTEGER NOT NULL,
    started INTEGER NOT NULL,
    ended   INTEGER NOT NULL
);
CREATE INDEX result_job ON result (job, created);
CREATE INDEX result_blob ON result (blob);
CREATE TABLE fail (
    created  INTEGER PRIMARY KEY,
    job      INTEGER NOT NULL,
    message  TEXT NOT NULL,
    started  INTEGER,
    ended    INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX fail_job ON fail (job, created);
"#];

/// Instance states.
pub(crate) const READY: i64 = 0;
pub(crate) const RUNNING: i64 = 1;
pub(crate) const WAITING: i64 = 2;

// Identity.
pub(crate) const IDENTIFY: &str = "SELECT (SELECT application_id FROM pragma_application_id), \
     (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)";

// Blobs.
pub(crate) const STAGE_BEGIN: &str = "INSERT INTO blob (hash, size, lease_until) VALUES (NULL, 0, ?1)";
pub(crate) const STAGE_RENEW: &str = "UPDATE blob SET lease_until = ?2 WHERE id = ?1 AND hash IS NULL";
pub(crate) const CHUNK_INSERT: &str = "INSERT INTO chunk (blob, seq, data) VALUES (?1, ?2, ?3)";
pub(crate) const CHUNK_DELETE_SOME: &str =
    "DELETE FROM chunk WHERE rowid IN (SELECT rowid FROM chunk WHERE blob = ?1 LIMIT 32) \
     RETURNING length(data)";
pub(crate) const STAGE_DELETE: &str = "DELETE FROM blob WHERE id = ?1 AND hash IS NULL";
pub(crate) const STAGE_ABANDON: &str = "UPDATE blob SET lease_until = 0 WHERE id = ?1 AND hash IS NULL";
pub(crate) const BLOB_BY_HASH: &str = "SELECT id, size FROM blob WHERE hash = ?1";
pub(crate) const BLOB_INSERT: &str = "INSERT INTO blob (hash, size) VALUES (?1, ?2)";
pub(crate) const STAGE_PUBLISH: &str =
    "UPDATE blob SET hash = ?2, size = ?3, lease_until = NULL WHERE id = ?1 AND hash IS NULL";
pub(crate) const CHUNK_GET: &str = "SELECT data FROM chunk WHERE blob = ?1 AND seq = ?2";

// Jobs and instances.
pub(crate) const JOB_INSERT: &str = "INSERT OR IGNORE INTO job (blob, hash) VALUES (?1, ?2)";
pub(crate) const JOB_BY_HASH: &str = "SELECT blob FROM job WHERE hash = ?1";
pub(crate) const JOB_HASH: &str = "SELECT hash FROM job WHERE blob = ?1";
pub(crate) const CLAIMED_JOB: &str =
    "SELECT j.hash, b.size FROM job j JOIN blob b ON b.id = j.blob WHERE j.blob = ?1";
pub(crate) const NEXT_CREATED: &str =
    "UPDATE meta SET value = max(value + 1, ?1) WHERE name = 'last_created' RETURNING value";
pub(crate) const INSTANCE_INSERT: &str =
    "INSERT INTO instance (created, job, state, priority, run_at) VALUES (?1, ?2, ?3, ?4, ?5)";

// Claim: expire, promote, take.
pub(crate) const EXPIRED: &str =
    "SELECT created, attempts, job, start FROM instance WHERE state = 1 AND lease_until < ?1";
pub(crate) const REQUEUE_NOW: &str = "UPDATE instance SET state = 0, lease_until = NULL WHERE created = ?1";
pub(crate) const PROMOTE: &str = "UPDATE instance SET state = 0 WHERE state = 2 AND run_at <= ?1";
pub(crate) const CLAIM_NEWEST: &str = "UPDATE instance \
     SET state = 1, attempts = attempts + 1, lease_until = ?1 + ?2, start = ?1 \
     WHERE created = (SELECT created FROM instance WHERE state = 0 \
         AND priority = (SELECT max(priority) FROM instance WHERE state = 0) \
         ORDER BY created DESC LIMIT 1) \
     RETURNING created, job, attempts";
pub(crate) const CLAIM_OLDEST: &str = "UPDATE instance \
     SET state = 1, attempts = attempts + 1, lease_until = ?1 + ?2, start = ?1 \
     WHERE created = (SELECT created FROM instance WHERE state = 0 \
         AND priority = (SELECT max(priority) FROM instance WHERE state = 0) \
         ORDER BY created ASC LIMIT 1) \
     RETURNING created, job, attempts";
pub(crate) const RENEW: &str = "UPDATE instance SET lease_until = ?3 \
     WHERE created = ?1 AND attempts = ?2 AND state = 1";
pub(crate) const FENCE: &str =
    "SELECT job, start FROM instance WHERE created = ?1 AND attempts = ?2 AND state = 1";
pub(crate) const INSTANCE_DELETE: &str = "DELETE FROM instance WHERE created = ?1";
pub(crate) const REQUEUE_AT: &str =
    "UPDATE instance SET state = 2, run_at = ?2, lease_until = NULL WHERE created = ?1";
pub(crate) const RESULT_INSERT: &str =
    "INSERT INTO result (created, job, blob, started, ended) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(crate) const FAIL_INSERT: &str = "INSERT INTO fail (created, job, message, started, ended, attempts) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
pub(crate) const FAIL_OF: &str = "SELECT f.job FROM fail f JOIN job j ON j.blob = f.job \
     WHERE f.created = ?1 AND j.hash = ?2";
pub(crate) const FAIL_DELETE: &str = "DELETE FROM fail WHERE created = ?1";
pub(crate) const INSTANCE_OF: &str = "SELECT i.state FROM instance i JOIN job j ON j.blob = i.job \
     WHERE i.created = ?1 AND j.hash = ?2";
pub(crate) const PRUNE_RESULTS: &str = "DELETE FROM result WHERE ended < ?1";
pub(crate) const PRUNE_FAILS: &str = "DELETE FROM fail WHERE ended < ?1";
pub(crate) const IDLE: &str = "SELECT EXISTS (SELECT 1 FROM instance), \
     EXISTS (SELECT 1 FROM instance WHERE state = 0), \
     (SELECT min(run_at) FROM instance WHERE state = 2), \
     (SELECT min(lease_until) FROM instance WHERE state = 1)";

// Listing, by keyset pagination.
pub(crate) const LIST_JOBS: &str = "SELECT hash, blob FROM job WHERE hash > ?1 ORDER BY hash LIMIT ?2";
pub(crate) const RUNNING_INSTANCES: &str = "SELECT job, created FROM instance WHERE state = 1";
pub(crate) const LIST_PENDING: &str = "SELECT i.created, j.hash, i.state, i.priority, i.run_at \
     FROM instance i JOIN job j ON j.blob = i.job \
     WHERE i.created > ?1 ORDER BY i.created LIMIT ?2";
pub(crate) const LIST_RESULTS_OF_JOB: &str = "SELECT r.created, b.hash, r.started, r.ended \
     FROM result r JOIN blob b ON b.id = r.blob \
     WHERE r.job = ?1 AND r.created > ?2 ORDER BY r.created LIMIT ?3";
pub(crate) const LIST_RESULTS_AFTER_JOB: &str =
    "SELECT j.hash, j.blob, r.created, b.hash, r.started, r.ended \
     FROM job j JOIN result r ON r.job = j.blob JOIN blob b ON b.id = r.blob \
     WHERE j.hash > ?1 ORDER BY j.hash, r.created LIMIT ?2";
pub(crate) const LIST_FAILS_OF_JOB: &str = "SELECT created, message, started, ended, attempts \
     FROM fail WHERE job = ?1 AND created > ?2 ORDER BY created LIMIT ?3";
pub(crate) const LIST_FAILS_AFTER_JOB: &str =
    "SELECT j.hash, j.blob, f.created, f.message, f.started, f.ended, f.attempts \
     FROM job j JOIN fail f ON f.job = j.blob \
     WHERE j.hash > ?1 ORDER BY j.hash, f.created LIMIT ?2";

// Maintenance.
pub(crate) const STAGE_EXPIRE_IF_STALE: &str =
    "UPDATE blob SET lease_until = 0 WHERE id = ?1 AND hash IS NULL AND lease_until < ?2";
pub(crate) const INTEGRITY_CHECK: &str = "PRAGMA integrity_check";
pub(crate) const DATA_VERSION: &str = "PRAGMA data_version";
pub(crate) const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
pub(crate) const STALE_STAGES: &str = "SELECT id FROM blob WHERE hash IS NULL AND lease_until < ?1 LIMIT 256";
pub(crate) const UNREFERENCED_BLOBS: &str = "SELECT b.id FROM blob b \
     WHERE b.id > ?1 AND b.hash IS NOT NULL \
       AND NOT EXISTS (SELECT 1 FROM job WHERE blob = b.id) \
       AND NOT EXISTS (SELECT 1 FROM result WHERE blob = b.id) \
     ORDER BY b.id LIMIT 256";
/// Turns an unreferenced blob back into an abandoned staging area, whose chunks and row gc
/// then removes: a crash part way leaves a leftover that the next gc removes, never chunks
/// without a blob.
pub(crate) const BLOB_UNPUBLISH_UNREFERENCED: &str = "UPDATE blob SET hash = NULL, lease_until = 0 \
     WHERE id = ?1 AND hash IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM job WHERE blob = ?1) \
     AND NOT EXISTS (SELECT 1 FROM result WHERE blob = ?1)";
pub(crate) const ORPHAN_CHUNK_OWNERS: &str = "SELECT c.blob, count(*) FROM chunk c \
     LEFT JOIN blob b ON b.id = c.blob WHERE b.id IS NULL GROUP BY c.blob";
pub(crate) const DANGLING: &str = "\
     SELECT 'job ' || hex(hash) || ' has no payload blob' FROM job \
       WHERE NOT EXISTS (SELECT 1 FROM blob WHERE id = job.blob AND hash IS NOT NULL) \
     UNION ALL SELECT 'instance ' || created || ' refers to a missing job' FROM instance \
       WHERE NOT EXISTS (SELECT 1 FROM job WHERE blob = instance.job) \
     UNION ALL SELECT 'result ' || created || ' refers to a missing job' FROM result \
       WHERE NOT EXISTS (SELECT 1 FROM job WHERE blob = result.job) \
     UNION ALL SELECT 'result ' || created || ' refers to a missing output blob' FROM result \
       WHERE NOT EXISTS (SELECT 1 FROM blob WHERE id = result.blob AND hash IS NOT NULL) \
     UNION ALL SELECT 'fail ' || created || ' refers to a missing job' FROM fail \
       WHERE NOT EXISTS (SELECT 1 FROM job WHERE blob = fail.job)";
pub(crate) const BLOBS_AFTER: &str =
    "SELECT id, hash, size FROM blob WHERE id > ?1 AND hash IS NOT NULL ORDER BY id LIMIT ?2";
pub(crate) const STATS: &str = "SELECT (SELECT count(*) FROM job), \
     (SELECT count(*) FROM instance WHERE state <> 1), \
     (SELECT count(*) FROM instance WHERE state = 1), \
     (SELECT count(*) FROM result), (SELECT count(*) FROM fail), \
     (SELECT count(*) FROM blob WHERE hash IS NOT NULL), \
     (SELECT coalesce(sum(size), 0) FROM blob WHERE hash IS NOT NULL)";
