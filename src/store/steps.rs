//! The procedures that take several statements, written once for both backends: a push (memo,
//! unique, upstreams), a retry, the due schedules' pushes, the cascade that fails the
//! dependents of an instance that ended without a result, the rows a copy brings, and the
//! keyset pages of the listings.
//!
//! Each backend implements [`Steps`] on its transaction: one method a statement (or a small
//! fixed group of them), with its own SQL and parameter types and no decisions. The decisions
//! (which statement runs, in which order, with what message) are the functions below, so a
//! rule changed here changes on SQLite and on PostgreSQL alike. Every function runs inside the
//! caller's one transaction.

use super::{
    fail, initial_state, upstream_gone, BlobId, Expired, Gone, ImportRow, NewSchedule, Pos, PushSpec, Pushed,
};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::row::{ListKind, PendingRow, Row};

/// The listings paged by (job key, created): first the rest of the current job's rows, then
/// the rows of the jobs after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keyed {
    Results,
    Fails,
}

/// A schedule whose next run is due (see [`Steps::schedules_due`]).
pub(crate) struct DueSchedule {
    pub name: String,
    pub spec: String,
    pub job: BlobId,
    pub key: Hash,
    pub queue: i64,
    pub priority: i32,
    pub next_run: i64,
}

/// Where an upstream named by a push stands (see [`Steps::upstream_state`]).
pub(crate) struct UpstreamState {
    /// The upstream's job.
    pub job: BlobId,
    /// It is still pending or running.
    pub live: bool,
    /// It has a result.
    pub done: bool,
    /// It has a fail row.
    pub failed: bool,
}

/// The new instance row of [`Steps::instance_insert`].
pub(crate) struct NewInstance {
    pub created: i64,
    pub job: BlobId,
    pub state: i64,
    pub priority: i64,
    pub run_at: Option<i64>,
    pub queue: i64,
    /// Upstreams without a result yet.
    pub waiting_on: i64,
    /// Upstreams in all.
    pub deps: i64,
}

/// The statements the procedures below need, inside one open transaction of a backend (a
/// write transaction for all but the listings).
pub(crate) trait Steps {
    /// Whether a push takes its `created` before it looks for a live instance or a result.
    /// On PostgreSQL taking it locks the counter's row until commit, which serializes pushes,
    /// so a unique push sees every push committed before it; SQLite has one writer anyway, and
    /// takes it only when an instance is really added, so that a memo hit writes nothing.
    const CREATED_FIRST: bool;

    /// A new, unique `created`.
    fn next_created(&mut self) -> Result<i64>;
    /// The id of queue `name`, its row created when missing.
    fn queue_id(&mut self, name: &str) -> Result<i64>;
    /// The live (pending or running) instance of `job` in `queue`, if any.
    fn live_instance(&mut self, job: BlobId, queue: i64) -> Result<Option<i64>>;
    /// The newest result of `job`: its `created` and the output's hash.
    fn newest_result(&mut self, job: BlobId) -> Result<Option<(i64, Hash)>>;
    /// Upstream `(key, created)`, if this database knows that instance.
    fn upstream_state(&mut self, key: &Hash, created: i64) -> Result<Option<UpstreamState>>;
    fn edge_insert(&mut self, created: i64, up_job: BlobId, up_created: i64) -> Result<()>;
    /// Adds an instance row, and wakes the waiters where the backend must say so.
    fn instance_insert(&mut self, row: &NewInstance) -> Result<()>;
    fn instance_delete(&mut self, created: i64) -> Result<()>;
    /// A fail row of an instance that never started (attempts 0), ended at `end`.
    fn fail_insert(&mut self, created: i64, job: BlobId, message: &str, end: i64, queue: i64) -> Result<()>;
    /// The instances waiting for instance `up`: their `created`, job, queue and job's key.
    fn dependents(&mut self, up: i64) -> Result<Vec<(i64, BlobId, i64, Hash)>>;
    /// The id of the stored blob `hash`, whether or not it is a job.
    fn blob_by_hash(&mut self, hash: &Hash) -> Result<Option<BlobId>>;
    /// The job `key`: `NotFound` when it is not one.
    fn job_by_hash(&mut self, key: &Hash) -> Result<BlobId>;
    /// Makes the stored blob `id` (whose hash is `key`) a job.
    fn mark_job(&mut self, id: BlobId, key: &Hash) -> Result<()>;
    fn set_queue(&mut self, name: &str, limit: Option<u32>, paused: bool) -> Result<()>;
    fn schedule_put(&mut self, s: &NewSchedule, job: BlobId, queue: i64) -> Result<()>;
    /// Whether instance `created` of `job` is here, as an instance, a result or a fail row.
    fn known_instance(&mut self, job: BlobId, created: i64) -> Result<bool>;
    /// How many upstreams of `created` have no result here yet.
    fn upstreams_left(&mut self, created: i64) -> Result<i64>;
    /// Raises the `created` counter to at least `created`.
    fn created_at_least(&mut self, created: i64) -> Result<()>;
    /// Adds a result row unless there is one; true when it was added.
    fn result_import(
        &mut self,
        created: i64,
        job: BlobId,
        blob: BlobId,
        start: i64,
        end: i64,
    ) -> Result<bool>;
    /// Adds a fail row unless there is one; true when it was added.
    fn fail_import(
        &mut self,
        created: i64,
        job: BlobId,
        message: &str,
        start: i64,
        end: i64,
        attempts: u32,
    ) -> Result<bool>;
    /// Counts one upstream down for every instance waiting for `created`, which has a result.
    fn release_dependents(&mut self, created: i64, now: i64) -> Result<()>;
    /// The fail row `(key, created)`: its job and queue.
    fn fail_of(&mut self, key: &Hash, created: i64) -> Result<Option<(BlobId, i64)>>;
    /// Removes fail row `created`, counted in the removed fails.
    fn fail_remove(&mut self, created: i64) -> Result<()>;
    /// The schedules whose next run is at `now` or before, locked where others could fire them.
    fn schedules_due(&mut self, now: i64) -> Result<Vec<DueSchedule>>;
    /// Records that schedule `name` pushed its `slot` and next runs at `next`.
    fn schedule_advance(&mut self, name: &str, next: i64, slot: i64) -> Result<()>;
    /// A page of jobs after `after.hash`, with their running instances.
    fn job_page(&mut self, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>>;
    /// A page of pending instances after `after.created`; a waiting row's `after` is left empty.
    fn pending_page(&mut self, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>>;
    /// The upstreams `(key, created)` instance `created` waits for.
    fn waiting_on(&mut self, created: i64) -> Result<Vec<(Hash, i64)>>;
    /// Up to `limit` rows of `kind` of job `key` (id `job`) after `created`.
    fn keyed_of_job(
        &mut self,
        kind: Keyed,
        key: Hash,
        job: BlobId,
        created: i64,
        limit: usize,
    ) -> Result<Vec<(Row, Pos)>>;
    /// Up to `limit` rows of `kind` of the jobs whose key sorts after `start` (empty: all).
    fn keyed_after_job(&mut self, kind: Keyed, start: &[u8], limit: usize) -> Result<Vec<(Row, Pos)>>;
}

/// Pushes an instance of `job` per `spec`: a memo push returns the job's newest result, a
/// unique or memo push a live instance of it in the queue, if there is one; upstreams are
/// resolved (an unknown one is `NotFound`, and nothing is written), and a push whose upstream
/// already failed becomes a fail row at once.
pub(crate) fn push<S: Steps>(s: &mut S, job: BlobId, spec: &PushSpec) -> Result<Pushed> {
    let queue = s.queue_id(&spec.queue)?;
    let early = if S::CREATED_FIRST { Some(s.next_created()?) } else { None };
    // Live instance first, then results: on PostgreSQL an instance that completes between the
    // two looks is then seen by one of them.
    let live = if spec.unique || spec.memo { s.live_instance(job, queue)? } else { None };
    if spec.memo {
        if let Some((created, hash)) = s.newest_result(job)? {
            return Ok(Pushed { cached: Some(hash), ..Pushed::joined(created) });
        }
    }
    if let Some(existing) = live {
        return Ok(Pushed::joined(existing));
    }
    let mut ups = Vec::with_capacity(spec.after.len());
    let (mut waiting_on, mut failed) = (0i64, None);
    for (key, up) in &spec.after {
        match s.upstream_state(key, *up)? {
            Some(st) if st.live => {
                waiting_on += 1;
                ups.push((st.job, *up));
            }
            Some(st) if st.done => ups.push((st.job, *up)),
            Some(st) if st.failed => {
                failed.get_or_insert_with(|| upstream_gone(key, *up, Gone::Failed));
                ups.push((st.job, *up));
            }
            _ => return Err(fail::no_upstream(key, *up)),
        }
    }
    let created = match early {
        Some(created) => created,
        None => s.next_created()?,
    };
    for (up_job, up) in &ups {
        s.edge_insert(created, *up_job, *up)?;
    }
    if let Some(message) = failed {
        s.fail_insert(created, job, &message, now_ms(), queue)?;
        return Ok(Pushed { failed: Some(message), ..Pushed::queued(created) });
    }
    insert_as(s, job, spec, queue, created, waiting_on, ups.len() as i64)?;
    Ok(Pushed::queued(created))
}

/// Adds instance `created` of `job` in `queue`, waiting for `waiting_on` of its `deps`
/// upstreams, delayed and prioritized per `spec`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_as<S: Steps>(
    s: &mut S,
    job: BlobId,
    spec: &PushSpec,
    queue: i64,
    created: i64,
    waiting_on: i64,
    deps: i64,
) -> Result<()> {
    let run_at = (spec.delay_ms > 0).then(|| created + spec.delay_ms);
    // A delay runs from `created`, which is now or later: a delayed push starts waiting.
    s.instance_insert(&NewInstance {
        created,
        job,
        state: initial_state(waiting_on, run_at, created),
        priority: i64::from(spec.priority),
        run_at,
        queue,
        waiting_on,
        deps,
    })
}

/// Turns the instances waiting for `(key, created)`, which ended without a result (`how`),
/// into fail rows, and theirs in turn; returns them, for events.
pub(crate) fn fail_dependents<S: Steps>(
    s: &mut S,
    key: Hash,
    created: i64,
    how: Gone,
    now: i64,
) -> Result<Vec<Expired>> {
    let mut out = Vec::new();
    let mut work = vec![(key, created, how)];
    while let Some((up_key, up, how)) = work.pop() {
        for (dc, djob, dq, dkey) in s.dependents(up)? {
            let message = upstream_gone(&up_key, up, how);
            s.fail_insert(dc, djob, &message, now, dq)?;
            s.instance_delete(dc)?;
            out.push(Expired { key: dkey, created: dc, message });
            work.push((dkey, dc, Gone::Failed));
        }
    }
    Ok(out)
}

/// Records the upstreams of `created` (kept if present) and returns how many have no result.
fn import_edges<S: Steps>(s: &mut S, created: i64, after: &[(Hash, i64)]) -> Result<i64> {
    for (key, up) in after {
        let up_job = s.job_by_hash(key)?;
        s.edge_insert(created, up_job, *up)?;
    }
    if after.is_empty() {
        return Ok(0);
    }
    s.upstreams_left(created)
}

/// Applies one row a copy brings (see [`ImportRow`]); rows the target has are left alone.
pub(crate) fn import_row<S: Steps>(s: &mut S, row: ImportRow) -> Result<()> {
    let now = now_ms();
    match row {
        ImportRow::Job(key) => {
            let id = s.blob_by_hash(&key)?.ok_or_else(|| fail::job_not_found(&key))?;
            s.mark_job(id, &key)?;
        }
        ImportRow::Queue { name, limit, paused } => s.set_queue(&name, limit, paused)?,
        ImportRow::Schedule(sched) => {
            let job = s.job_by_hash(&sched.job)?;
            let queue = s.queue_id(&sched.queue)?;
            s.schedule_put(&sched, job, queue)?;
        }
        ImportRow::Pending { key, created, queue, priority, run_at, after } => {
            let job = s.job_by_hash(&key)?;
            if !s.known_instance(job, created)? {
                let waiting_on = import_edges(s, created, &after)?;
                let queue = s.queue_id(&queue)?;
                s.instance_insert(&NewInstance {
                    created,
                    job,
                    state: initial_state(waiting_on, run_at, now),
                    priority: i64::from(priority),
                    run_at,
                    queue,
                    waiting_on,
                    deps: after.len() as i64,
                })?;
            }
            s.created_at_least(created)?;
        }
        ImportRow::Result { key, created, hash, start, end, after } => {
            let job = s.job_by_hash(&key)?;
            let blob = s
                .blob_by_hash(&hash)?
                .ok_or_else(|| Error::not_found(format!("blob {} not found", hash.short())))?;
            import_edges(s, created, &after)?;
            if s.result_import(created, job, blob, start, end)? {
                s.instance_delete(created)?;
                s.release_dependents(created, now)?;
            }
            s.created_at_least(created)?;
        }
        ImportRow::Fail { key, created, message, start, end, attempts, after } => {
            let job = s.job_by_hash(&key)?;
            import_edges(s, created, &after)?;
            if s.fail_import(created, job, &message, start, end, attempts)? {
                s.instance_delete(created)?;
            }
            s.created_at_least(created)?;
        }
        ImportRow::Drop(created) => s.instance_delete(created)?,
    }
    Ok(())
}

/// Re-pushes the failed instance `(key, created)` into its queue as a new instance and
/// removes its fail row; returns the new `created`.
pub(crate) fn retry<S: Steps>(s: &mut S, key: &Hash, created: i64) -> Result<i64> {
    let (job, queue) = s.fail_of(key, created)?.ok_or_else(|| fail::no_failed_instance(key, created))?;
    s.fail_remove(created)?;
    let new = s.next_created()?;
    insert_as(s, job, &PushSpec::plain(), queue, new, 0, 0)?;
    Ok(new)
}

/// Pushes one instance for each schedule that fell due (after downtime only the latest missed
/// slot), recording its slot in the same transaction: whichever process gets here first for a
/// slot pushes it, and the others find the schedule advanced (on PostgreSQL one another
/// claimer is firing is skipped, see `SCHEDULES_DUE`). Returns the instances pushed.
pub(crate) fn fire_schedules<S: Steps>(s: &mut S, now: i64) -> Result<Vec<(Hash, i64)>> {
    let mut fired = Vec::new();
    for d in s.schedules_due(now)? {
        // A spec that no longer parses (damage) is skipped, never a claim's failure; `check`
        // names it.
        let Ok((slot, next)) = crate::schedule::due(&d.spec, d.next_run, now) else { continue };
        let created = s.next_created()?;
        let push = PushSpec { priority: d.priority, ..PushSpec::plain() };
        insert_as(s, d.job, &push, d.queue, created, 0, 0)?;
        s.schedule_advance(&d.name, next, slot)?;
        fired.push((d.key, created));
    }
    Ok(fired)
}

/// One page of a listing after `after`.
pub(crate) fn list<S: Steps>(
    s: &mut S,
    kind: ListKind,
    after: &Pos,
    limit: usize,
) -> Result<Vec<(Row, Pos)>> {
    match kind {
        ListKind::Job => s.job_page(after, limit),
        ListKind::Pending => {
            let mut rows = s.pending_page(after, limit)?;
            // Rows that wait for upstreams show which (a few rows of a page, each one probe).
            for (row, _) in &mut rows {
                if let Row::Pending(PendingRow { created, after: Some(after), .. }) = row {
                    *after = s.waiting_on(*created)?;
                }
            }
            Ok(rows)
        }
        ListKind::Result => keyed_page(s, Keyed::Results, after, limit),
        ListKind::Fail => keyed_page(s, Keyed::Fails, after, limit),
    }
}

/// Results and fails are listed by (job key, created): first the rest of the current job's
/// rows, then the rows of the jobs after it.
fn keyed_page<S: Steps>(s: &mut S, kind: Keyed, after: &Pos, limit: usize) -> Result<Vec<(Row, Pos)>> {
    let mut out = match after.hash {
        Some(key) => s.keyed_of_job(kind, key, after.job, after.created, limit)?,
        None => Vec::new(),
    };
    if out.len() < limit {
        let start: &[u8] = after.hash.as_ref().map_or(&[], |h| h.as_bytes().as_slice());
        out.extend(s.keyed_after_job(kind, start, limit - out.len())?);
    }
    Ok(out)
}
