//! What the dashboard shows, gathered from the library's read paths only (short read
//! transactions through listing cursors and `stats`), so that an open dashboard never holds a
//! lock that a worker waits for.
//!
//! Everything the page and `/metrics` read comes from here: counts and per-minute completions
//! from the core's counters and indexes (`stats`, `completions`), the lists from the first
//! pages of the listing cursors.

use batchdb::{Db, FailRow, Hash, PendingRow, Progress, ScheduleRow, DEFAULT_QUEUE};
use serde::Serialize;
use std::io::Read;

/// How many rows one overview reads from each listing at most. The listings are ordered by
/// `created` or by key, not by time of completion, so a full answer needs a full pass; past
/// this bound the overview says it is partial instead of holding the server for seconds.
pub const SCAN_LIMIT: usize = 50_000;

/// How many failures, pending and running rows the overview lists.
const SHOWN: usize = 25;

/// Bytes of a payload shown on a job's page.
const PREVIEW: usize = 4096;

/// Unfinished instances of one queue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueCounts {
    /// The queue's name.
    pub name: String,
    /// Ready to be claimed now.
    pub pending: u64,
    /// Delayed or backing off: not claimable yet.
    pub waiting: u64,
    /// Held by a worker.
    pub running: u64,
    /// The `created` of the oldest ready instance.
    pub oldest_pending: Option<i64>,
    /// The concurrency limit, when one is set.
    pub limit: Option<u32>,
    /// Whether claims skip this queue.
    pub paused: bool,
}

/// The numbers `/metrics` exports and the page's counters show.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Per queue.
    pub queues: Vec<QueueCounts>,
    /// Result rows ever written, also those pruned since.
    pub results_total: u64,
    /// Fail rows ever written, also those pruned or retried since.
    pub fails_total: u64,
    /// Result rows now.
    pub results: u64,
    /// Fail rows now: the failures not retried or pruned yet.
    pub fails: u64,
    /// Job rows.
    pub jobs: u64,
    /// Published blobs and their bytes.
    pub blobs: u64,
    /// Their total size.
    pub blob_bytes: u64,
    /// The database's size on disk (file and write-ahead log).
    pub database_bytes: u64,
}

/// A running instance.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    /// The job's key.
    pub key: Hash,
    /// The instance.
    pub created: i64,
    /// Its queue.
    pub queue: String,
    /// What it reported of its progress, if anything.
    pub progress: Option<Progress>,
    /// When its current attempt started, epoch ms.
    pub start: Option<i64>,
    /// When its lease ends unless the worker renews it, epoch ms.
    pub lease_until: Option<i64>,
}

/// A pending (ready or waiting) instance, which Cancel applies to.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    /// The job's key.
    pub key: Hash,
    /// The instance.
    pub created: i64,
    /// Its queue.
    pub queue: String,
    /// When it may run, if delayed.
    pub run_at: Option<i64>,
    /// Its priority, when not 0.
    pub priority: Option<i32>,
    /// The instances it waits for, `[key, created]`, while it waits.
    pub after: Option<Vec<(Hash, i64)>>,
}

/// A fail row.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The job's key.
    pub key: Hash,
    /// The instance.
    pub created: i64,
    /// What went wrong.
    pub message: String,
    /// When the last attempt started and ended.
    pub start: i64,
    /// When it failed.
    pub end: i64,
    /// How often it was started.
    pub attempts: u32,
}

impl From<FailRow> for Failure {
    fn from(f: FailRow) -> Failure {
        Failure {
            key: f.key,
            created: f.created,
            message: f.message,
            start: f.start,
            end: f.end,
            attempts: f.attempts,
        }
    }
}

/// Results and fails that ended in one minute.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Minute {
    /// The minute's start, epoch ms.
    pub minute: i64,
    /// Results in it.
    pub results: u64,
    /// Fails in it.
    pub fails: u64,
}

/// The page's main view.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// When it was gathered, epoch ms.
    pub now: i64,
    /// Counts by state and queue.
    pub counts: Counts,
    /// The oldest ready instance's `created`, over all queues.
    pub oldest_pending: Option<i64>,
    /// Running instances, oldest first.
    pub running: Vec<Running>,
    /// The oldest pending instances.
    pub pending: Vec<Pending>,
    /// The most recent failures, newest first.
    pub failures: Vec<Failure>,
    /// The recurring schedules, by name.
    pub schedules: Vec<ScheduleRow>,
    /// Completions per minute over the last hour, oldest minute first (60 entries).
    pub completions: Vec<Minute>,
    /// True when a listing was longer than [`SCAN_LIMIT`] and the running, pending or
    /// failure lists (not the counts or the chart) were taken from its first rows only.
    pub partial: bool,
}

/// One job's page.
#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    /// The key.
    pub key: Hash,
    /// The payload's size in bytes.
    pub size: u64,
    /// Its first bytes, as text (lossy), for a preview.
    pub preview: String,
    /// Whether the preview holds the whole payload.
    pub preview_complete: bool,
    /// Its unfinished instances.
    pub instances: Vec<Pending>,
    /// Which of them run now.
    pub running: Vec<i64>,
    /// Its results.
    pub results: Vec<JobResult>,
    /// Its fail rows.
    pub failures: Vec<Failure>,
    /// Lineage: the result rows whose output is this payload (it was made by those
    /// instances), each with the instances that one waited for.
    pub made_by: Vec<Made>,
}

/// A result row that produced a blob, from [`Db::why`].
#[derive(Debug, Clone, Serialize)]
pub struct Made {
    /// The job's key.
    pub key: Hash,
    /// The instance.
    pub created: i64,
    /// The instances it waited for, `[key, created]`.
    pub after: Vec<(Hash, i64)>,
}

/// A result of a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    /// The instance.
    pub created: i64,
    /// The output's hash, downloadable at `/blob/HASH`.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// When the attempt started.
    pub start: i64,
    /// When it ended.
    pub end: i64,
    /// Lineage: the instances it waited for, `[key, created]`.
    pub after: Vec<(Hash, i64)>,
}

fn queue_of(row: &PendingRow) -> String {
    row.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.to_string())
}

/// The counts, from `stats`: counted through the core's indexes and counters, one short read
/// transaction, no listing read.
pub fn counts(db: &Db) -> batchdb::Result<Counts> {
    let s = db.stats()?;
    let mut queues: Vec<QueueCounts> = s
        .queues
        .into_iter()
        .map(|(name, q)| QueueCounts {
            name,
            pending: q.pending,
            waiting: q.waiting,
            running: q.running,
            oldest_pending: q.oldest_ready,
            limit: q.limit,
            paused: q.paused,
        })
        .collect();
    // Every database has the default queue; metrics always carry its series.
    if !queues.iter().any(|q| q.name == DEFAULT_QUEUE) {
        queues.insert(0, QueueCounts { name: DEFAULT_QUEUE.to_string(), ..Default::default() });
    }
    Ok(Counts {
        queues,
        results_total: s.results_total,
        fails_total: s.fails_total,
        results: s.results,
        fails: s.fails,
        jobs: s.jobs,
        blobs: s.blobs,
        blob_bytes: s.blob_bytes,
        database_bytes: s.file_bytes + s.wal_bytes,
    })
}

/// The overview the page polls.
pub fn overview(db: &Db, counts: Counts, now: i64) -> batchdb::Result<Overview> {
    let oldest_pending = counts.queues.iter().filter_map(|q| q.oldest_pending).min();
    let mut partial = false;

    let mut running = Vec::new();
    let mut pending = Vec::new();
    for (i, row) in db.pending().enumerate() {
        if i >= SCAN_LIMIT {
            partial = true;
            break;
        }
        let row = row?;
        if row.running {
            if running.len() < SHOWN {
                let queue = queue_of(&row);
                running.push(Running {
                    key: row.job,
                    created: row.created,
                    queue,
                    progress: row.progress,
                    start: row.start,
                    lease_until: row.lease_until,
                });
            }
        } else if pending.len() < SHOWN {
            pending.push(pending_of(&row));
        }
        if running.len() >= SHOWN && pending.len() >= SHOWN {
            break;
        }
    }

    // Minute buckets of the last hour, the current minute last.
    let this_minute = now - now.rem_euclid(60_000);
    let first = this_minute - 59 * 60_000;
    let mut completions: Vec<Minute> =
        (0..60).map(|i| Minute { minute: first + i * 60_000, results: 0, fails: 0 }).collect();
    for (minute, results, fails) in db.completions(first)? {
        let i = (minute - first).div_euclid(60_000);
        if let Some(m) = usize::try_from(i).ok().and_then(|i| completions.get_mut(i)) {
            m.results += results;
            m.fails += fails;
        }
    }
    let mut failures: Vec<Failure> = Vec::new();
    for (i, row) in db.failures().enumerate() {
        if i >= SCAN_LIMIT {
            partial = true;
            break;
        }
        let row = row?;
        // Keep the SHOWN newest by end (then created) without holding every row.
        failures.push(row.into());
        if failures.len() > 4 * SHOWN {
            newest_first(&mut failures);
            failures.truncate(SHOWN);
        }
    }
    newest_first(&mut failures);
    failures.truncate(SHOWN);

    let schedules = db.schedules()?;
    Ok(Overview { now, counts, oldest_pending, running, pending, failures, schedules, completions, partial })
}

fn newest_first(f: &mut [Failure]) {
    f.sort_by_key(|x| std::cmp::Reverse((x.end, x.created)));
}

fn pending_of(row: &PendingRow) -> Pending {
    Pending {
        key: row.job,
        created: row.created,
        queue: queue_of(row),
        run_at: row.run_at,
        priority: row.priority,
        after: row.after.clone(),
    }
}

/// A job's page; [`batchdb::Error::NotFound`] when `key` is not a job.
pub fn job(db: &Db, key: &Hash) -> batchdb::Result<JobPage> {
    // `why` answers from the blob row whether it is a job's payload, and who made it.
    let lineage = db.why(key)?;
    if !lineage.job {
        return Err(batchdb::Error::NotFound(format!("job {key} not found")));
    }
    let made_by = lineage
        .results
        .into_iter()
        .map(|r| Made { key: r.key, created: r.created, after: r.after })
        .collect();
    let mut reader = db.get(key)?;
    let size = reader.size();
    let mut buf = Vec::with_capacity(PREVIEW.min(size as usize));
    (&mut reader).take(PREVIEW as u64).read_to_end(&mut buf).map_err(batchdb::Error::from)?;
    let preview_complete = buf.len() as u64 == size;
    let preview = String::from_utf8_lossy(&buf).into_owned();

    let mut instances = Vec::new();
    let mut running = Vec::new();
    for row in db.pending() {
        let row = row?;
        if row.job == *key {
            if row.running {
                running.push(row.created);
            }
            instances.push(pending_of(&row));
        }
    }

    let mut results = Vec::new();
    for row in db.results() {
        let row = row?;
        if row.key > *key {
            break;
        }
        if row.key == *key {
            let size = db.get(&row.hash).ok().map(|r| r.size());
            // The output's lineage holds this row, with what it waited for.
            let after = db
                .why(&row.hash)
                .ok()
                .and_then(|l| l.results.into_iter().find(|r| r.key == *key && r.created == row.created))
                .map(|r| r.after)
                .unwrap_or_default();
            results.push(JobResult {
                created: row.created,
                hash: row.hash,
                size,
                start: row.start,
                end: row.end,
                after,
            });
        }
    }
    let mut failures = Vec::new();
    for row in db.failures() {
        let row = row?;
        if row.key > *key {
            break;
        }
        if row.key == *key {
            failures.push(row.into());
        }
    }
    Ok(JobPage { key: *key, size, preview, preview_complete, instances, running, results, failures, made_by })
}
