//! Copying one database into another (a file into a server, a server into a file, a file
//! into a file): every job, blob, instance, result and fail row, queue setting and schedule,
//! with the source's keys and `created` values.
//!
//! Written once above the storage boundary: it reads the source through its listings (pages,
//! no long transaction) and applies rows to the target through [`Store::import`] in batches,
//! each idempotent, so a copy that was killed can simply run again and converge, and a second
//! copy adds nothing. A blob the target holds (by hash) is not sent again; one it lacks is
//! streamed chunk by chunk, verified as any read is, so memory stays constant.

use crate::db::Db;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::row::PendingRow;
use crate::store::{ImportRow, NewSchedule, Store};

/// What a [`Db::copy_to`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    /// Blobs the target did not hold, sent.
    pub blobs_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Rows applied (the target keeps the ones it had).
    pub rows: u64,
}

/// Rows applied per target transaction.
const BATCH: usize = 256;

struct Copier<'a> {
    src: &'a Db,
    dst: &'a Db,
    batch: Vec<ImportRow>,
    report: CopyReport,
}

impl Copier<'_> {
    fn store(&self) -> &dyn Store {
        &*self.dst.inner.store
    }

    fn add(&mut self, row: ImportRow) -> Result<()> {
        self.batch.push(row);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.batch.is_empty() {
            self.report.rows += self.batch.len() as u64;
            let rows = std::mem::take(&mut self.batch);
            self.store().import(rows)?;
        }
        Ok(())
    }

    /// Sends the blob `hash` unless the target holds it; as a job's payload when `job`.
    fn blob(&mut self, hash: &Hash, job: bool) -> Result<()> {
        if self.store().blob(hash)?.is_some() {
            if job {
                self.add(ImportRow::Job(*hash))?;
            }
            return Ok(());
        }
        let mut reader = self.src.get(hash)?;
        let mut writer = self.dst.writer();
        let n = std::io::copy(&mut reader, &mut writer)
            .map_err(|e| Error::from(e).context(format!("copying blob {}", hash.short())))?;
        let stored = if job { writer.create()? } else { writer.store_blob()? };
        debug_assert_eq!(stored, *hash);
        self.report.blobs_sent += 1;
        self.report.bytes_sent += n;
        Ok(())
    }
}

/// Whether `db` holds nothing a copy could clash with.
fn is_empty(db: &Db) -> Result<bool> {
    let s = db.stats()?;
    Ok(s.jobs == 0
        && s.blobs == 0
        && s.pending == 0
        && s.running == 0
        && s.results == 0
        && s.fails == 0
        && db.schedules()?.is_empty())
}

pub(crate) fn copy(src: &Db, dst: &Db) -> Result<CopyReport> {
    let (source, _) = src.inner.store.identity()?;
    let (target, copied_from) = dst.inner.store.identity()?;
    // A backup carries its source's id: it is an earlier copy too.
    let earlier = copied_from == Some(source) || target == source;
    if !earlier {
        if !is_empty(dst)? {
            return Err(Error::invalid(
                "the target database is neither empty nor an earlier copy of this one; nothing was copied",
            ));
        }
        dst.inner.store.set_copied_from(source)?;
    }
    let mut c = Copier { src, dst, batch: Vec::new(), report: CopyReport::default() };
    for q in src.queues()? {
        c.add(ImportRow::Queue { name: q.name, limit: q.limit, paused: q.paused })?;
    }
    for job in src.jobs() {
        c.blob(&job?.key, true)?;
    }
    c.flush()?;
    // Results and fail rows before pending instances: an instance that moved on in the
    // source moves on in the target before anything could claim it there.
    for r in src.results() {
        let r = r?;
        c.blob(&r.hash, false)?;
        let after = src.inner.store.edges(r.created)?;
        c.add(ImportRow::Result {
            key: r.key,
            created: r.created,
            hash: r.hash,
            start: r.start,
            end: r.end,
            after,
        })?;
    }
    for f in src.failures() {
        let f = f?;
        let after = src.inner.store.edges(f.created)?;
        c.add(ImportRow::Fail {
            key: f.key,
            created: f.created,
            message: f.message,
            start: f.start,
            end: f.end,
            attempts: f.attempts,
            after,
        })?;
    }
    c.flush()?;
    // Pending instances, walked beside the target's (both by `created`): a target instance
    // the source no longer has was cancelled there.
    let mut theirs = dst.pending().peekable();
    for p in src.pending() {
        let PendingRow { job, created, priority, run_at, queue, .. } = p?;
        while let Some(Ok(t)) = theirs.peek() {
            if t.created >= created {
                break;
            }
            let gone = t.created;
            c.add(ImportRow::Drop(gone))?;
            theirs.next();
        }
        if let Some(Err(_)) = theirs.peek() {
            return Err(theirs
                .next()
                .and_then(|r| r.err())
                .unwrap_or_else(|| Error::io("listing the target")));
        }
        if theirs.peek().is_some_and(|t| t.as_ref().is_ok_and(|t| t.created == created)) {
            theirs.next();
        }
        let after = src.inner.store.edges(created)?;
        c.add(ImportRow::Pending {
            key: job,
            created,
            queue: queue.unwrap_or_else(|| crate::options::DEFAULT_QUEUE.to_string()),
            priority: priority.unwrap_or(0),
            run_at,
            after,
        })?;
    }
    for t in theirs {
        c.add(ImportRow::Drop(t?.created))?;
    }
    for s in src.schedules()? {
        c.add(ImportRow::Schedule(NewSchedule {
            name: s.name,
            spec: s.spec,
            job: s.job,
            queue: s.queue,
            priority: s.priority,
            next_run: s.next_run,
        }))?;
    }
    c.flush()?;
    dst.inner.wake_workers();
    Ok(c.report)
}
