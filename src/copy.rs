//! Copying one database into another (a file into a server, a server into a file, a file
//! into a file): every job, blob, instance, result and fail row, queue setting and schedule,
//! with the source's keys and `created` values.
//!
//! Written once above the storage boundary: it reads the source through its listings (pages,
//! no long transaction) and applies rows to the target through [`Store::import`] in batches,
//! each idempotent, so a copy that was killed can simply run again and converge, and a second
//! copy adds nothing. A blob the target holds (by hash) is not sent again; one it lacks is
//! streamed chunk by chunk, verified as any read is, so memory stays constant.

use crate::blob::{Reader, Writer};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::list::Cursor;
use crate::row::{FailRow, JobRow, ListKind, PendingRow, ResultRow};
use crate::shared::Shared;
use crate::store::{ImportRow, NewSchedule, Store};
use std::sync::Arc;

/// What a [`Db::copy_to`](crate::Db::copy_to) did.
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
    src: &'a Arc<Shared>,
    dst: &'a Arc<Shared>,
    batch: Vec<ImportRow>,
    report: CopyReport,
}

impl Copier<'_> {
    fn store(&self) -> &dyn Store {
        &*self.dst.store
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
        let mut reader = Reader::open(self.src.clone(), hash)?;
        let mut writer = Writer::new(self.dst.clone());
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
fn is_empty(db: &Shared) -> Result<bool> {
    let s = db.store.stats()?;
    Ok(s.jobs == 0
        && s.blobs == 0
        && s.pending == 0
        && s.running == 0
        && s.results == 0
        && s.fails == 0
        && db.store.schedules()?.is_empty())
}

/// A listing of `db`, rows of type `T`.
fn rows<T: crate::row::ListRow>(db: &Arc<Shared>, kind: ListKind) -> Cursor<T> {
    Cursor::new(db.clone(), kind)
}

pub(crate) fn copy(src: &Arc<Shared>, dst: &Arc<Shared>) -> Result<CopyReport> {
    let (source, _) = src.store.identity()?;
    let (target, copied_from) = dst.store.identity()?;
    // A backup carries its source's id: it is an earlier copy too.
    let earlier = copied_from == Some(source) || target == source;
    if !earlier {
        if !is_empty(dst)? {
            return Err(Error::invalid(
                "the target database is neither empty nor an earlier copy of this one; nothing was copied",
            ));
        }
        dst.store.set_copied_from(source)?;
    }
    let mut c = Copier { src, dst, batch: Vec::new(), report: CopyReport::default() };
    for q in src.store.queues()? {
        c.add(ImportRow::Queue { name: q.name, limit: q.limit, paused: q.paused })?;
    }
    for job in rows::<JobRow>(src, ListKind::Job) {
        c.blob(&job?.key, true)?;
    }
    c.flush()?;
    // Results and fail rows before pending instances: an instance that moved on in the
    // source moves on in the target before anything could claim it there.
    for r in rows::<ResultRow>(src, ListKind::Result) {
        let r = r?;
        c.blob(&r.hash, false)?;
        let after = src.store.edges(r.created)?;
        c.add(ImportRow::Result {
            key: r.key,
            created: r.created,
            hash: r.hash,
            start: r.start,
            end: r.end,
            after,
        })?;
    }
    for f in rows::<FailRow>(src, ListKind::Fail) {
        let f = f?;
        let after = src.store.edges(f.created)?;
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
    let mut theirs = rows::<PendingRow>(dst, ListKind::Pending).peekable();
    for p in rows::<PendingRow>(src, ListKind::Pending) {
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
        let after = src.store.edges(created)?;
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
    for s in src.store.schedules()? {
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
    dst.wake_workers();
    Ok(c.report)
}
