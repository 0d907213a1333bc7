//! The tables, their migrations, and every SQL statement of the SQLite backend.
//!
//! ```text
//!  blob ──< chunk            blob(id, hash NULL while staging, size, job, lease_until, data)
//!   │                        chunk(blob, seq, data, digest)
//!   ├──< instance            instance(created, job, state, priority, run_at,
//!   │                                 attempts, lease_until, start)
//!   ├──< result              result(job, created, blob, started, ended)
//!   │                        fail(created, job, message, started, ended, attempts)
//!   └──< schedule            schedule(name, spec, job, queue, priority, next_run, last_slot)
//!  queue ──< instance        queue(id, name, max_running, paused); instance.queue, 0 = default
//!  meta(name, value)         removed_results, removed_fails, db_id, copied_from, gc_mark
//!  counter (one row)         last_blob, last_created, and the kept totals: jobs, others
//!                            (published blobs not jobs), blob_bytes, results, fails
//!  loose(blob)               blobs a prune left without a result, for the next gc
//! ```
//!
//! Version 2 adds queues, schedules and progress: the ready index leads with the queue, so
//! that a claim probes each queue's best instance with a few index descents, however
//! many instances a paused or full queue holds; `instance_job` finds a job's live instances
//! for unique pushes; `result_ended` and `fail_ended` serve prune and per-minute counts.
//! Version 3 adds gc's mark and `loose` (see [`GC_WINDOW`]). Version 4 keeps the totals
//! `stats` reports (see `counters`). Version 5 moves them and the id counters from `meta` to
//! the one row of `counter`, which a write transaction updates once (see `counters`).
//!
//! Every row an `add` writes lands on as few pages as possible, because a commit's cost is
//! the pages it appends to the log: a job is a blob with `job = 1` (no table or hash index of
//! its own), a blob that fits in one chunk keeps its bytes inline in `data` (no chunk rows),
//! and blob ids come from the same `counter` row as `created` (no `sqlite_sequence`).
//! Ids are never reused, so a writer whose staging lease ran out can never write into a
//! newer blob's staging area.
//!
//! Queue rows are keyed by `created`, an integer unique in the file, so that inserts append;
//! results are clustered by (job, created), the order they are listed in, so that a
//! completion writes one row and no separate index entry for it.
//! Hashes are 32-byte blobs, indexed only where a lookup needs them. A large blob is written
//! under a staging row (`hash IS NULL`) and published by one small `UPDATE` that sets its
//! hash: chunk data is never copied or rewritten. Each chunk row carries the digest of its
//! bytes, seeded with its place (`store::chunk_digest`), written with it, so that a reader checks a chunk before
//! handing out any of it; inline bytes need none, being checked against the blob's hash.

/// `PRAGMA application_id` of a batchdb file: "BDB!".
pub(crate) const APPLICATION_ID: i32 = 0x4244_4221;

/// Each entry migrates from version `i` to `i + 1`; `user_version` is the count applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('last_created', 0), ('last_blob', 0);
CREATE TABLE blob (
    id          INTEGER PRIMARY KEY,
    hash        BLOB UNIQUE,
    size        INTEGER NOT NULL DEFAULT 0,
    job         INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,
    data        BLOB
);
CREATE TABLE chunk (
    blob   INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    data   BLOB NOT NULL,
    digest INTEGER NOT NULL,
    PRIMARY KEY (blob, seq)
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
    job     INTEGER NOT NULL,
    created INTEGER NOT NULL,
    blob    INTEGER NOT NULL,
    started INTEGER NOT NULL,
    ended   INTEGER NOT NULL,
    PRIMARY KEY (job, created)
) WITHOUT ROWID;
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
"#,
    r#"
CREATE TABLE queue (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    max_running INTEGER,
    paused      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO queue (id, name) VALUES (0, 'default');
ALTER TABLE instance ADD COLUMN queue INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instance ADD COLUMN progress REAL;
ALTER TABLE instance ADD COLUMN note TEXT;
DROP INDEX instance_ready;
CREATE INDEX instance_ready ON instance (queue, priority, created) WHERE state = 0;
CREATE INDEX instance_job ON instance (job, queue);
CREATE INDEX result_ended ON result (ended);
CREATE INDEX fail_ended ON fail (ended);
CREATE TABLE schedule (
    name      TEXT PRIMARY KEY,
    spec      TEXT NOT NULL,
    job       INTEGER NOT NULL,
    queue     INTEGER NOT NULL,
    priority  INTEGER NOT NULL DEFAULT 0,
    next_run  INTEGER NOT NULL,
    last_slot INTEGER
) WITHOUT ROWID;
CREATE INDEX schedule_due ON schedule (next_run);
INSERT INTO meta (name, value) VALUES ('removed_results', 0), ('removed_fails', 0);
ALTER TABLE fail ADD COLUMN queue INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instance ADD COLUMN waiting_on INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instance ADD COLUMN deps INTEGER NOT NULL DEFAULT 0;
CREATE TABLE edge (
    created    INTEGER NOT NULL,
    up_job     INTEGER NOT NULL,
    up_created INTEGER NOT NULL,
    PRIMARY KEY (created, up_created)
) WITHOUT ROWID;
CREATE INDEX edge_up ON edge (up_created);
INSERT INTO meta (name, value) VALUES ('db_id', abs(random() % 9007199254740991)), ('copied_from', 0);
"#,
    // gc in time proportional to what it may remove, not to the file: published blobs are
    // looked at only when new since the last gc (`gc_mark`) or left without a result by a
    // prune (`loose`). (Staging areas, `hash IS NULL`, are found by the hash index already.)
    r#"
CREATE TABLE loose (blob INTEGER PRIMARY KEY);
INSERT INTO meta (name, value) VALUES ('gc_mark', 0);
"#,
    // `stats` in constant time in the history: its totals, kept (see `counters`), counted once
    // here from what the file holds; and the waiting instances by queue, indexed (only
    // delayed, backing-off and upstream-waiting rows enter it).
    r#"
INSERT INTO meta (name, value)
    SELECT 'total_jobs', coalesce(sum(job = 1), 0) FROM blob
    UNION ALL SELECT 'total_others', count(hash) - coalesce(sum(job = 1), 0) FROM blob
    UNION ALL SELECT 'total_blob_bytes', coalesce(sum(iif(hash IS NOT NULL, size, 0)), 0) FROM blob
    UNION ALL SELECT 'total_results', count(*) FROM result
    UNION ALL SELECT 'total_fails', count(*) FROM fail;
CREATE INDEX instance_held ON instance (queue) WHERE state IN (2, 3);
"#,
    // The id counters and the totals in one row, written once a transaction.
    r#"
CREATE TABLE counter (
    one          INTEGER PRIMARY KEY CHECK (one = 0),
    last_blob    INTEGER NOT NULL,
    last_created INTEGER NOT NULL,
    jobs         INTEGER NOT NULL,
    others       INTEGER NOT NULL,
    blob_bytes   INTEGER NOT NULL,
    results      INTEGER NOT NULL,
    fails        INTEGER NOT NULL
);
INSERT INTO counter SELECT 0,
    (SELECT value FROM meta WHERE name = 'last_blob'), (SELECT value FROM meta WHERE name = 'last_created'),
    (SELECT value FROM meta WHERE name = 'total_jobs'), (SELECT value FROM meta WHERE name = 'total_others'),
    (SELECT value FROM meta WHERE name = 'total_blob_bytes'), (SELECT value FROM meta WHERE name = 'total_results'),
    (SELECT value FROM meta WHERE name = 'total_fails');
DELETE FROM meta WHERE name IN ('last_blob', 'last_created', 'total_jobs', 'total_others',
    'total_blob_bytes', 'total_results', 'total_fails');
"#,
];

// Transactions of the writer: prepared once, since every write runs them.
pub(crate) const TX_BEGIN: &str = "BEGIN IMMEDIATE";
pub(crate) const TX_COMMIT: &str = "COMMIT";
pub(crate) const TX_ROLLBACK: &str = "ROLLBACK";
pub(crate) const OP_BEGIN: &str = "SAVEPOINT op";
pub(crate) const OP_RELEASE: &str = "RELEASE op";
pub(crate) const OP_ROLLBACK: &str = "ROLLBACK TO op";
pub(crate) const SYNC_FULL: &str = "PRAGMA synchronous = FULL";
pub(crate) const SYNC_NORMAL: &str = "PRAGMA synchronous = NORMAL";

// Identity.
pub(crate) const IDENTIFY: &str = "SELECT (SELECT application_id FROM pragma_application_id), \
     (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)";

// Blobs.
/// The id counters, read by a write transaction that takes an id (see `counters`).
pub(crate) const COUNTERS_READ: &str = "SELECT last_blob, last_created FROM counter WHERE one = 0";
/// The columns of `counter` a transaction writes, and whether its value is added (a total)
/// rather than set (an id).
pub(crate) const COUNTER_COLUMNS: [(&str, bool); 7] = [
    ("last_blob", false),
    ("last_created", false),
    ("jobs", true),
    ("others", true),
    ("blob_bytes", true),
    ("results", true),
    ("fails", true),
];
/// A write transaction's change to the counters, just before its commit: sets only the
/// columns of `mask` (bit i for [`COUNTER_COLUMNS`]`[i]`; a last id is set, a total added
/// to), each from the next parameter. By the row's key, so that SQLite updates it in one
/// pass instead of collecting the rows to change first.
pub(crate) fn counters_update(mask: usize) -> String {
    let sets: Vec<String> = COUNTER_COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, (name, adds))| if *adds { format!("{name} = {name} + ?") } else { format!("{name} = ?") })
        .collect();
    format!("UPDATE counter SET {} WHERE one = 0", sets.join(", "))
}
pub(crate) const STAGE_BEGIN: &str =
    "INSERT INTO blob (id, hash, size, lease_until) VALUES (?1, NULL, 0, ?2)";
pub(crate) const STAGE_RENEW: &str = "UPDATE blob SET lease_until = ?2 WHERE id = ?1 AND hash IS NULL";
pub(crate) const CHUNK_INSERT: &str = "INSERT INTO chunk (blob, seq, data, digest) VALUES (?1, ?2, ?3, ?4)";
pub(crate) const CHUNK_DELETE_SOME: &str =
    "DELETE FROM chunk WHERE rowid IN (SELECT rowid FROM chunk WHERE blob = ?1 LIMIT ?2) \
     RETURNING length(data)";
pub(crate) const STAGE_DELETE: &str = "DELETE FROM blob WHERE id = ?1 AND hash IS NULL";
pub(crate) const STAGE_ABANDON: &str = "UPDATE blob SET lease_until = 0 WHERE id = ?1 AND hash IS NULL";
/// The id is found through the hash index, the row then read by id, so that `hash` comes
/// from the table and not from the index entry (SQLite reads an indexed column from the
/// index): a damaged index that leads to another row is then seen for what it is.
pub(crate) const BLOB_BY_HASH: &str =
    "SELECT id, size, hash FROM blob WHERE id = (SELECT id FROM blob WHERE hash = ?1)";
/// A blob that fits in one chunk, its bytes inline (NULL when empty), unless its content is
/// stored already.
pub(crate) const BLOB_INSERT_NEW: &str = "INSERT INTO blob (id, hash, size, job, data) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (hash) DO NOTHING";
pub(crate) const STAGE_PUBLISH: &str =
    "UPDATE blob SET hash = ?2, size = ?3, job = ?4, lease_until = NULL WHERE id = ?1 AND hash IS NULL";
/// Chunk 0 of a small blob is its inline data (marked by the third column, with no digest).
pub(crate) const CHUNK_GET: &str =
    "SELECT data, NULL, 1 FROM blob WHERE id = ?1 AND ?2 = 0 AND data IS NOT NULL \
     UNION ALL SELECT data, digest, 0 FROM chunk WHERE blob = ?1 AND seq = ?2 LIMIT 1";

// Jobs and instances.
/// Registers an existing blob as a job; a no-op (and no page written) when it is one.
pub(crate) const JOB_MARK: &str = "UPDATE blob SET job = 1 WHERE id = ?1 AND job = 0";
pub(crate) const JOB_BY_HASH: &str = "SELECT id FROM blob WHERE hash = ?1 AND job = 1";
pub(crate) const JOB_HASH: &str = "SELECT hash FROM blob WHERE id = ?1";
pub(crate) const CLAIMED_JOB: &str = "SELECT hash, size, data FROM blob WHERE id = ?1";
pub(crate) const INSTANCE_INSERT: &str = "INSERT INTO instance \
     (created, job, state, priority, run_at, queue, waiting_on, deps) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

// Memoized runs, dependencies and lineage.
/// A job's newest result: its `created` and output hash (for memo pushes).
pub(crate) const NEWEST_RESULT: &str = "SELECT r.created, b.hash, r.blob FROM result r \
     JOIN blob b ON b.id = r.blob WHERE r.job = ?1 ORDER BY r.created DESC LIMIT 1";
/// Where an upstream `(key ?1, created ?2)` stands: its job's id, its instance's state (NULL
/// when none), and whether it has a result or a fail row.
pub(crate) const UPSTREAM_STATE: &str = "SELECT j.id, \
     (SELECT state FROM instance WHERE created = ?2 AND job = j.id), \
     EXISTS (SELECT 1 FROM result WHERE job = j.id AND created = ?2), \
     EXISTS (SELECT 1 FROM fail WHERE created = ?2 AND job = j.id) \
     FROM blob j WHERE j.hash = ?1 AND j.job = 1";
pub(crate) const EDGE_INSERT: &str =
    "INSERT INTO edge (created, up_job, up_created) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

// Copies between databases.
pub(crate) const IDENTITY: &str = "SELECT (SELECT value FROM meta WHERE name = 'db_id'), \
     (SELECT value FROM meta WHERE name = 'copied_from')";
pub(crate) const SET_COPIED_FROM: &str = "UPDATE meta SET value = ?1 WHERE name = 'copied_from'";
/// Whether the target knows instance ?2 of job ?1 already: pending, a result or a fail row.
pub(crate) const KNOWN_INSTANCE: &str = "SELECT EXISTS (SELECT 1 FROM instance WHERE created = ?2) \
     OR EXISTS (SELECT 1 FROM result WHERE job = ?1 AND created = ?2) \
     OR EXISTS (SELECT 1 FROM fail WHERE created = ?2)";
/// How many upstreams of ?1 have no result in this database yet.
pub(crate) const UPSTREAMS_LEFT: &str = "SELECT count(*) FROM edge e WHERE e.created = ?1 \
     AND NOT EXISTS (SELECT 1 FROM result r WHERE r.job = e.up_job AND r.created = e.up_created)";
pub(crate) const RESULT_IMPORT: &str = "INSERT INTO result (created, job, blob, started, ended) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
pub(crate) const FAIL_IMPORT: &str =
    "INSERT INTO fail (created, job, message, started, ended, attempts, queue) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0) ON CONFLICT DO NOTHING";
/// After instance ?1 completed: each dependent waits for one upstream fewer, and the last one
/// makes it ready (or waiting, if its delay has not passed by ?2), in the completion's
/// transaction.
pub(crate) const RELEASE_DEPENDENTS: &str = "UPDATE instance SET waiting_on = waiting_on - 1, \
     state = CASE WHEN waiting_on > 1 THEN 3 WHEN run_at > ?2 THEN 2 ELSE 0 END \
     WHERE state = 3 AND created IN (SELECT created FROM edge WHERE up_created = ?1)";
/// The dependents of ?1 still waiting for it.
pub(crate) const DEPENDENTS: &str = "SELECT i.created, i.job, i.queue, j.hash FROM edge e \
     JOIN instance i ON i.created = e.created JOIN blob j ON j.id = i.job \
     WHERE e.up_created = ?1 AND i.state = 3";
/// The upstreams of ?1 with their results' hashes: the inputs a runner gets.
pub(crate) const UPSTREAM_RESULTS: &str =
    "SELECT j.hash, e.up_created, b.hash, e.up_job, r.blob FROM edge e \
     JOIN blob j ON j.id = e.up_job JOIN result r ON r.job = e.up_job AND r.created = e.up_created \
     JOIN blob b ON b.id = r.blob WHERE e.created = ?1 ORDER BY e.up_created";
/// The upstreams of ?1 (lineage), and those still without a result (a waiting pending row).
pub(crate) const EDGES_OF: &str = "SELECT j.hash, e.up_created, e.up_job FROM edge e \
     JOIN blob j ON j.id = e.up_job WHERE e.created = ?1 ORDER BY e.up_created";
pub(crate) const WAITING_ON: &str = "SELECT j.hash, e.up_created, e.up_job FROM edge e \
     JOIN blob j ON j.id = e.up_job WHERE e.created = ?1 \
     AND NOT EXISTS (SELECT 1 FROM result WHERE job = e.up_job AND created = e.up_created) \
     ORDER BY e.up_created";
pub(crate) const BLOB_JOB_FLAG: &str =
    "SELECT id, job, hash FROM blob WHERE id = (SELECT id FROM blob WHERE hash = ?1)";
pub(crate) const RESULTS_WITH_BLOB: &str = "SELECT j.hash, r.created, r.job FROM result r \
     JOIN blob j ON j.id = r.job WHERE r.blob = ?1 ORDER BY j.hash, r.created";
/// The newest live instance of a job in a queue, for unique pushes.
pub(crate) const LIVE_INSTANCE: &str = "SELECT max(created) FROM instance WHERE job = ?1 AND queue = ?2";

// Queues.
pub(crate) const QUEUE_ID: &str = "SELECT id FROM queue WHERE name = ?1";
pub(crate) const QUEUE_INSERT: &str = "INSERT INTO queue (name) VALUES (?1) RETURNING id";
pub(crate) const QUEUE_SET_LIMIT: &str = "INSERT INTO queue (name, max_running) VALUES (?1, ?2) \
     ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running";
pub(crate) const QUEUE_SET_PAUSED: &str = "INSERT INTO queue (name, paused) VALUES (?1, ?2) \
     ON CONFLICT (name) DO UPDATE SET paused = excluded.paused";
/// Each queue's settings, its running count when it has a limit, and whether it has a ready
/// instance: what an idle worker decides by (`store::QueueState`).
pub(crate) const QUEUE_STATES: &str = "SELECT q.id, q.name, q.max_running, q.paused, \
     CASE WHEN q.max_running IS NULL THEN 0 \
          ELSE (SELECT count(*) FROM instance WHERE state = 1 AND queue = q.id) END, \
     EXISTS (SELECT 1 FROM instance WHERE state = 0 AND queue = q.id) \
     FROM queue q ORDER BY q.id";
/// Each queue's settings and counts, each count from an index: the ready ones from
/// `instance_ready`, the running ones from `instance_running`, the waiting ones from
/// `instance_held`. The oldest ready instance is found by [`READY_AFTER_PRIORITY`].
pub(crate) const QUEUE_STATS: &str = "SELECT q.id, q.name, q.max_running, q.paused, \
     (SELECT count(*) FROM instance WHERE state = 0 AND queue = q.id), \
     (SELECT count(*) FROM instance WHERE state = 1 AND queue = q.id), \
     (SELECT count(*) FROM instance WHERE state IN (2, 3) AND queue = q.id) \
     FROM queue q ORDER BY q.name";
/// The ready instance of queue ?1 with the lowest priority above ?2, the oldest of that
/// priority: one index descent. Walking the priorities with it finds the oldest ready
/// instance in a descent per distinct priority, where `min(created)` read every ready entry.
pub(crate) const READY_AFTER_PRIORITY: &str = "SELECT priority, created FROM instance \
     WHERE state = 0 AND queue = ?1 AND priority > ?2 ORDER BY priority, created LIMIT 1";

// Schedules.
pub(crate) const SCHEDULE_PUT: &str = "INSERT INTO schedule (name, spec, job, queue, priority, next_run) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
     job = excluded.job, queue = excluded.queue, priority = excluded.priority, \
     next_run = excluded.next_run, last_slot = NULL";
pub(crate) const SCHEDULE_DELETE: &str = "DELETE FROM schedule WHERE name = ?1";
pub(crate) const SCHEDULE_LIST: &str =
    "SELECT s.name, s.spec, q.name, j.hash, s.next_run, s.job, s.priority \
     FROM schedule s JOIN blob j ON j.id = s.job JOIN queue q ON q.id = s.queue ORDER BY s.name";
pub(crate) const SCHEDULES_DUE: &str =
    "SELECT s.name, s.spec, s.job, s.queue, s.priority, s.next_run, j.hash \
     FROM schedule s JOIN blob j ON j.id = s.job WHERE s.next_run <= ?1";
pub(crate) const SCHEDULE_ADVANCE: &str = "UPDATE schedule SET next_run = ?2, last_slot = ?3 WHERE name = ?1";

// Claim: expire, promote, take.
pub(crate) const EXPIRED: &str =
    "SELECT created, attempts, job, start, queue FROM instance WHERE state = 1 AND lease_until < ?1";
pub(crate) const REQUEUE_NOW: &str = "UPDATE instance SET state = 0, lease_until = NULL WHERE created = ?1";
/// Makes the delayed instances that are due ready. Run only when [`PROMOTE_DUE`] finds one:
/// SQLite runs this update in two passes, collecting the rows in a temporary B-tree first,
/// which costs a claim more than the update itself when nothing is due.
pub(crate) const PROMOTE: &str = "UPDATE instance SET state = 0 WHERE state = 2 AND run_at <= ?1";
/// Whether a delayed instance is due: one descent of `instance_waiting`.
pub(crate) const PROMOTE_DUE: &str =
    "SELECT EXISTS (SELECT 1 FROM instance WHERE state = 2 AND run_at <= ?1)";
/// Each queue's settings, its running count when it has a limit, its top ready priority and
/// its best ready instance at that priority (newest or oldest): what a claim decides by, in
/// one statement, three descents of `instance_ready` a queue.
macro_rules! queue_picks {
    ($order:literal) => {
        concat!(
            "SELECT q.id, q.name, q.max_running, q.paused, \
             CASE WHEN q.max_running IS NULL THEN 0 \
                  ELSE (SELECT count(*) FROM instance WHERE state = 1 AND queue = q.id) END, \
             (SELECT max(priority) FROM instance WHERE state = 0 AND queue = q.id), \
             (SELECT created FROM instance WHERE state = 0 AND queue = q.id \
                 AND priority = (SELECT max(priority) FROM instance WHERE state = 0 AND queue = q.id) \
                 ORDER BY created ",
            $order,
            " LIMIT 1) FROM queue q ORDER BY q.id"
        )
    };
}
pub(crate) const QUEUE_PICKS_NEWEST: &str = queue_picks!("DESC");
pub(crate) const QUEUE_PICKS_OLDEST: &str = queue_picks!("ASC");
/// Takes a ready instance; when it changed a row, [`TAKEN`] reads it back. Not `RETURNING`:
/// SQLite collects a `RETURNING` statement's rows in an ephemeral table, whose setup and
/// teardown cost more than a second statement.
pub(crate) const TAKE: &str = "UPDATE instance \
     SET state = 1, attempts = attempts + 1, lease_until = ?1 + ?2, start = ?1, progress = NULL, note = NULL \
     WHERE created = ?3 AND state = 0";
pub(crate) const TAKEN: &str = "SELECT created, job, attempts, deps FROM instance WHERE created = ?1";
pub(crate) const PROGRESS: &str = "UPDATE instance SET progress = ?3, note = ?4 \
     WHERE created = ?1 AND attempts = ?2 AND state = 1";
pub(crate) const RENEW: &str = "UPDATE instance SET lease_until = ?3 \
     WHERE created = ?1 AND attempts = ?2 AND state = 1";
/// The fence, and whether the instance has dependents (so that a completion runs
/// [`RELEASE_DEPENDENTS`], a two-pass update, only when one may be waiting for it).
pub(crate) const FENCE: &str = "SELECT job, start, queue, EXISTS (SELECT 1 FROM edge WHERE up_created = ?1) \
     FROM instance WHERE created = ?1 AND attempts = ?2 AND state = 1";
pub(crate) const INSTANCE_DELETE: &str = "DELETE FROM instance WHERE created = ?1";
pub(crate) const REQUEUE_AT: &str =
    "UPDATE instance SET state = 2, run_at = ?2, lease_until = NULL WHERE created = ?1";
pub(crate) const RESULT_INSERT: &str =
    "INSERT INTO result (created, job, blob, started, ended) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(crate) const FAIL_INSERT: &str =
    "INSERT INTO fail (created, job, message, started, ended, attempts, queue) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
pub(crate) const FAIL_OF: &str = "SELECT f.job, f.queue FROM fail f JOIN blob j ON j.id = f.job \
     WHERE f.created = ?1 AND j.hash = ?2";
pub(crate) const FAIL_DELETE: &str = "DELETE FROM fail WHERE created = ?1";
pub(crate) const INSTANCE_OF: &str = "SELECT i.state FROM instance i JOIN blob j ON j.id = i.job \
     WHERE i.created = ?1 AND j.hash = ?2";
pub(crate) const PRUNE_RESULTS: &str = "DELETE FROM result WHERE ended < ?1";
pub(crate) const PRUNE_FAILS: &str = "DELETE FROM fail WHERE ended < ?1";
/// Keeps `results_total` and `fails_total` counting rows that prune or retry removed.
pub(crate) const COUNT_REMOVED: &str = "UPDATE meta SET value = value + ?2 WHERE name = ?1";
pub(crate) const IDLE: &str = "SELECT EXISTS (SELECT 1 FROM instance WHERE state IN (1, 3)), \
     (SELECT run_at FROM instance i WHERE state = 2 \
        AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.id = i.queue AND q.paused = 1) \
        ORDER BY run_at LIMIT 1), \
     (SELECT min(lease_until) FROM instance WHERE state = 1), \
     (SELECT min(next_run) FROM schedule)";
pub(crate) const COMPLETIONS: &str = "SELECT m, sum(r), sum(f) FROM ( \
     SELECT ended / 60000 * 60000 AS m, 1 AS r, 0 AS f FROM result WHERE ended >= ?1 \
     UNION ALL SELECT ended / 60000 * 60000, 0, 1 FROM fail WHERE ended >= ?1) GROUP BY m ORDER BY m";

// Listing, by keyset pagination.
pub(crate) const LIST_JOBS: &str =
    "SELECT hash, id FROM blob WHERE hash > ?1 AND job = 1 ORDER BY hash LIMIT ?2";
pub(crate) const RUNNING_INSTANCES: &str = "SELECT job, created FROM instance WHERE state = 1";
pub(crate) const LIST_PENDING: &str = "SELECT i.created, j.hash, i.state, i.priority, i.run_at, i.job, \
     q.name, i.progress, i.note, i.start, i.lease_until \
     FROM instance i JOIN blob j ON j.id = i.job LEFT JOIN queue q ON q.id = i.queue \
     WHERE i.created > ?1 ORDER BY i.created LIMIT ?2";
pub(crate) const LIST_RESULTS_OF_JOB: &str = "SELECT r.created, b.hash, r.started, r.ended, r.blob \
     FROM result r JOIN blob b ON b.id = r.blob \
     WHERE r.job = ?1 AND r.created > ?2 ORDER BY r.created LIMIT ?3";
/// `CROSS JOIN` fixes the order SQLite would not choose by itself (it has no statistics):
/// walk the jobs from the cursor's key by the hash index, each one's rows by its primary key,
/// and stop after a page. Left to the planner it scanned every result and sorted them, a page
/// costing O(results): 69 ms against 0.8 ms at 200,000 results.
pub(crate) const LIST_RESULTS_AFTER_JOB: &str =
    "SELECT j.hash, j.id, r.created, b.hash, r.started, r.ended, r.blob \
     FROM blob j CROSS JOIN result r ON r.job = j.id JOIN blob b ON b.id = r.blob \
     WHERE j.hash > ?1 ORDER BY j.hash, r.created LIMIT ?2";
pub(crate) const LIST_FAILS_OF_JOB: &str = "SELECT created, message, started, ended, attempts \
     FROM fail WHERE job = ?1 AND created > ?2 ORDER BY created LIMIT ?3";
/// In the same order as [`LIST_RESULTS_AFTER_JOB`], for the same reason.
pub(crate) const LIST_FAILS_AFTER_JOB: &str =
    "SELECT j.hash, j.id, f.created, f.message, f.started, f.ended, f.attempts \
     FROM blob j CROSS JOIN fail f ON f.job = j.id \
     WHERE j.hash > ?1 ORDER BY j.hash, f.created LIMIT ?2";

// Maintenance.
pub(crate) const STAGE_EXPIRE_IF_STALE: &str =
    "UPDATE blob SET lease_until = 0 WHERE id = ?1 AND hash IS NULL AND lease_until < ?2";
pub(crate) const INTEGRITY_CHECK: &str = "PRAGMA integrity_check";
pub(crate) const DATA_VERSION: &str = "PRAGMA data_version";
pub(crate) const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
/// By the hash index (which holds the NULLs too): a page of expired stages costs what it finds.
pub(crate) const STALE_STAGES: &str = "SELECT id FROM blob WHERE hash IS NULL AND lease_until < ?1 LIMIT ?2";
/// What gc needs to look at only part of the blobs: the mark the last gc reached (every
/// published blob at or below it was looked at, or is in `loose`), and how far this one may
/// move it: the last blob id handed out, but below any staging area still open (its id is
/// older than its publication).
pub(crate) const GC_WINDOW: &str = "SELECT (SELECT value FROM meta WHERE name = 'gc_mark'), \
     min((SELECT last_blob FROM counter), \
         coalesce((SELECT min(id) FROM blob WHERE hash IS NULL), 9223372036854775807) - 1)";
pub(crate) const SET_GC_MARK: &str = "UPDATE meta SET value = max(value, ?1) WHERE name = 'gc_mark'";
/// Blobs whose results a prune removed: gc looks at each once.
pub(crate) const LOOSE_FROM_PRUNE: &str =
    "INSERT OR IGNORE INTO loose (blob) SELECT blob FROM result WHERE ended < ?1";
/// A page of `loose`, with each blob's hash while it is published.
pub(crate) const LOOSE_PAGE: &str = "SELECT l.blob, b.hash FROM loose l LEFT JOIN blob b ON b.id = l.blob \
     WHERE l.blob > ?1 ORDER BY l.blob LIMIT ?2";
pub(crate) const LOOSE_FORGET: &str = "DELETE FROM loose WHERE blob = ?1";
pub(crate) const UNREFERENCED_BLOBS: &str = "SELECT b.id, b.hash FROM blob b \
     WHERE b.id > ?1 AND b.hash IS NOT NULL AND b.job = 0 \
       AND NOT EXISTS (SELECT 1 FROM result WHERE blob = b.id) \
     ORDER BY b.id LIMIT ?2";
/// Turns an unreferenced blob back into an abandoned staging area, whose chunks and row gc
/// then removes: a crash part way leaves a leftover that the next gc removes, never chunks
/// without a blob.
pub(crate) const BLOB_UNPUBLISH_UNREFERENCED: &str = "UPDATE blob SET hash = NULL, lease_until = 0 \
     WHERE id = ?1 AND hash IS NOT NULL AND job = 0 \
     AND NOT EXISTS (SELECT 1 FROM result WHERE blob = ?1) \
     RETURNING coalesce(length(data), 0), size";
pub(crate) const ORPHAN_CHUNK_OWNERS: &str = "SELECT c.blob, count(*) FROM chunk c \
     LEFT JOIN blob b ON b.id = c.blob WHERE b.id IS NULL GROUP BY c.blob";
pub(crate) const DANGLING: &str = "\
     SELECT 'instance ' || created || ' refers to a missing job' FROM instance \
       WHERE NOT EXISTS (SELECT 1 FROM blob WHERE id = instance.job AND job = 1) \
     UNION ALL SELECT 'result ' || created || ' refers to a missing job' FROM result \
       WHERE NOT EXISTS (SELECT 1 FROM blob WHERE id = result.job AND job = 1) \
     UNION ALL SELECT 'result ' || created || ' refers to a missing output blob' FROM result \
       WHERE NOT EXISTS (SELECT 1 FROM blob WHERE id = result.blob AND hash IS NOT NULL) \
     UNION ALL SELECT 'fail ' || created || ' refers to a missing job' FROM fail \
       WHERE NOT EXISTS (SELECT 1 FROM blob WHERE id = fail.job AND job = 1) \
     UNION ALL SELECT 'blob ' || id || ' has both inline data and chunks' FROM blob \
       WHERE data IS NOT NULL AND EXISTS (SELECT 1 FROM chunk WHERE chunk.blob = blob.id)";
pub(crate) const BLOBS_AFTER: &str =
    "SELECT id, hash, size FROM blob WHERE id > ?1 AND hash IS NOT NULL ORDER BY id LIMIT ?2";
/// The history tables' totals, kept in `counter` (see `counters`). The live instances are
/// counted by queue ([`QUEUE_STATS`]).
/// A missing row reads as NULLs, reported as damage.
pub(crate) const STATS: &str = "SELECT k.jobs, k.results, k.fails, k.jobs + k.others, k.blob_bytes, \
     (SELECT value FROM meta WHERE name = 'removed_results'), \
     (SELECT value FROM meta WHERE name = 'removed_fails') FROM (SELECT 1) LEFT JOIN counter k";
/// The kept totals beside a count of the tables (for `check`): jobs, blobs, blob bytes,
/// results and fails, kept then counted.
pub(crate) const TALLY_CHECK: &str = "SELECT \
     k.jobs, k.jobs + k.others, k.blob_bytes, k.results, k.fails, \
     b.jobs, b.blobs, b.bytes, (SELECT count(*) FROM result), (SELECT count(*) FROM fail) \
     FROM (SELECT coalesce(sum(job = 1), 0) AS jobs, count(hash) AS blobs, \
         coalesce(sum(iif(hash IS NOT NULL, size, 0)), 0) AS bytes FROM blob) b LEFT JOIN counter k";
