//! Claimed instances: claim, read the payload, write the output, complete or fail.

use super::db::write_hex;
use super::error::hex65;
use super::handles::{
    borrowed, bytes, bytes_mut, c_str, handle_out, into_raw, null, opt_array, out, ptr_slice, read_into,
    struct_slice, take, try_mut, try_ref, write_opt, Castable,
};
use super::panic::{boundary, status};
use super::{batchdb, batchdb_error, batchdb_job, BATCHDB_DONE, BATCHDB_OK};
use crate::{Error, Job};
use std::ffi::c_char;
use std::io::{Read, Write};
use std::ptr::NonNull;

/// What a `batchdb_job *` points to: a job from `batchdb_claim`, or one lent to a run callback.
pub(crate) struct JobHandle {
    slot: Slot,
    key: [c_char; 65],
}

impl Castable for batchdb_job {
    type Rust = JobHandle;
}

enum Slot {
    Owned(Box<Job>),
    /// Lent by `batchdb_run` for one runner call; it cannot be consumed from C.
    Borrowed(NonNull<Job>),
}

impl JobHandle {
    /// A handle for the job that a run worker lends to the runner for one call.
    pub(crate) fn lend(job: &mut Job) -> JobHandle {
        JobHandle { key: hex65(&job.key()), slot: Slot::Borrowed(NonNull::from(job)) }
    }

    fn job(&mut self) -> &mut Job {
        match &mut self.slot {
            Slot::Owned(j) => j,
            Slot::Borrowed(p) => borrowed(*p),
        }
    }

    fn created(&self) -> i64 {
        match &self.slot {
            Slot::Owned(j) => j.created(),
            Slot::Borrowed(p) => borrowed(*p).created(),
        }
    }

    fn after(&self) -> &[(crate::Hash, i64, crate::Hash)] {
        match &self.slot {
            Slot::Owned(j) => j.after(),
            Slot::Borrowed(p) => borrowed(*p).after(),
        }
    }
}

/// Takes an owned job out of its handle, refusing (and leaving intact) a borrowed one.
fn consume(j: *mut batchdb_job) -> Result<Job, Error> {
    if let Slot::Borrowed(_) = try_ref(j, "j")?.slot {
        return Err(Error::misuse(
            "this job is lent to a batchdb_run callback: return 0 to complete it or non-zero to fail it",
        ));
    }
    match take(j).ok_or_else(|| null("j"))?.slot {
        Slot::Owned(job) => Ok(*job),
        Slot::Borrowed(_) => Err(Error::misuse("borrowed job")),
    }
}

/// Takes the next ready instance (highest priority first, then in the processing order) with
/// a lease that the library renews while the job handle lives; event start.
///
/// Returns `BATCHDB_OK` with a job in `*out` that the caller owns and must finish with
/// `batchdb_job_complete` or `batchdb_job_fail`; `BATCHDB_DONE` with `*out` set to NULL when
/// nothing is ready; `BATCHDB_ERR_INVALID` (NULL `db`/`out`); `BATCHDB_ERR_IO`,
/// `BATCHDB_ERR_BUSY`. Thread-safe; the job itself must be used by one thread at a time.
#[no_mangle]
pub extern "C" fn batchdb_claim(
    db: *mut batchdb,
    out: *mut *mut batchdb_job,
    err: *mut batchdb_error,
) -> i32 {
    batchdb_claim_from(db, std::ptr::null(), 0, out, err)
}

/// `batchdb_claim` from the `queues_len` queues named at `queues` only (NUL-terminated
/// names; NULL with 0 serves every queue). Paused queues and queues at their limit are
/// skipped.
///
/// Returns as `batchdb_claim`, and `BATCHDB_ERR_INVALID` for a NULL or malformed queue name.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_claim_from(
    db: *mut batchdb,
    queues: *const *const c_char,
    queues_len: usize,
    out: *mut *mut batchdb_job,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let out = handle_out(out)?;
        let h = try_ref(db, "db")?;
        let queues = super::db::queue_list(queues, queues_len)?;
        match h.db.claim_from(&queues)? {
            None => Ok(BATCHDB_DONE),
            Some(job) => {
                *out = into_raw(JobHandle { key: hex65(&job.key()), slot: Slot::Owned(Box::new(job)) });
                Ok(BATCHDB_OK)
            }
        }
    })
}

/// `batchdb_claim` and the first `batchdb_job_read`s in one call, so that a binding that
/// crosses into C at a cost (Node's koffi, through a thread pool) claims a small job in one
/// crossing: up to `cap` bytes of the claimed payload go to `buf`, their count to `*n_out`.
/// When `*n_out < cap` the whole payload was read and verified against the key (the next
/// `batchdb_job_read` would give 0); otherwise read the rest with `batchdb_job_read`.
///
/// Returns `BATCHDB_OK` with the job in `*out` (owned, as from `batchdb_claim`); `BATCHDB_DONE`
/// with `*out` NULL and `*n_out` 0 when nothing is ready; `BATCHDB_ERR_INVALID` (NULL
/// `db`/`out`/`buf`/`n_out`, `cap` 0); `BATCHDB_ERR_CORRUPT` or `BATCHDB_ERR_IO` when the
/// payload cannot be read, with `*out` NULL: the instance is then released back to pending as
/// a job handle freed unfinished is. Thread-safe, like `batchdb_claim`.
#[no_mangle]
pub extern "C" fn batchdb_claim_read(
    db: *mut batchdb,
    buf: *mut u8,
    cap: usize,
    n_out: *mut usize,
    out_job: *mut *mut batchdb_job,
    err: *mut batchdb_error,
) -> i32 {
    batchdb_claim_read_from(db, std::ptr::null(), 0, buf, cap, n_out, out_job, err)
}

/// `batchdb_claim_read` from the `queues_len` queues named at `queues` only (NUL-terminated
/// names; NULL with 0 serves every queue), as `batchdb_claim_from` is to `batchdb_claim`.
///
/// Returns as `batchdb_claim_read`, and `BATCHDB_ERR_INVALID` for a NULL or malformed queue
/// name. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn batchdb_claim_read_from(
    db: *mut batchdb,
    queues: *const *const c_char,
    queues_len: usize,
    buf: *mut u8,
    cap: usize,
    n_out: *mut usize,
    out_job: *mut *mut batchdb_job,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let out_job = handle_out(out_job)?;
        let n_out = out(n_out, "n_out")?;
        *n_out = 0;
        let buf = bytes_mut(buf, cap, "buf")?;
        let h = try_ref(db, "db")?;
        let queues = super::db::queue_list(queues, queues_len)?;
        let Some(job) = h.db.claim_from(&queues)? else {
            return Ok(BATCHDB_DONE);
        };
        hand_out(job, buf, n_out, out_job)?;
        Ok(BATCHDB_OK)
    })
}

/// Reads the start of a claimed job's payload into `buf` (`*n_out` bytes) and gives the job
/// to C in `*out_job`. On an error the job is dropped, which hands it back to pending.
fn hand_out(
    mut job: Job,
    buf: &mut [u8],
    n_out: &mut usize,
    out_job: &mut *mut batchdb_job,
) -> Result<(), Error> {
    let mut n = 0;
    while n < buf.len() {
        match job.read(&mut buf[n..]).map_err(Error::from)? {
            0 => break,
            k => n += k,
        }
    }
    *n_out = n;
    *out_job = into_raw(JobHandle { key: hex65(&job.key()), slot: Slot::Owned(Box::new(job)) });
    Ok(())
}

/// Whether `j` is an owned job claimed through `db`, so that its complete may claim the next
/// job through `db` in the same transaction.
fn claims_through(db: *mut batchdb, j: *mut batchdb_job) -> bool {
    match (try_ref(db, "db"), try_ref(j, "j")) {
        (Ok(h), Ok(jh)) => matches!(&jh.slot, Slot::Owned(job) if job.claimed_by(&h.db)),
        _ => false,
    }
}

/// `batchdb_job_complete_with` that also claims the next job through the handle `j` was
/// claimed by, in the complete's transaction (`Job::complete_claim_or_retry`; the caller
/// checked `claims_through`). The next job, if one was claimed, is handed out as by
/// `batchdb_claim_read`; true then. An error there drops it, which hands it back to pending.
fn complete_then_claim(
    j: *mut batchdb_job,
    data: *const u8,
    len: usize,
    hash_out: *mut c_char,
    (buf, n_out, next_out): (&mut [u8], &mut usize, &mut *mut batchdb_job),
) -> Result<bool, Error> {
    let data = bytes(data, len, "data");
    let mut job = consume(j)?;
    job.write_all(data?).map_err(Error::from)?;
    let (hash, next) = job.complete_claim_or_retry(None, &mut |_| false)?;
    write_hex(hash_out, &hash);
    let Some(next) = next else { return Ok(false) };
    Ok(hand_out(next, buf, n_out, next_out).is_ok())
}

/// The job's key: 64 hex characters, NUL-terminated, owned by the job handle and valid as long
/// as it is (until it is consumed, or the run callback it was lent to returns). NULL for a
/// NULL job.
#[no_mangle]
pub extern "C" fn batchdb_job_key(j: *const batchdb_job) -> *const c_char {
    boundary(|_| std::ptr::null(), || try_ref(j, "j").map_or(std::ptr::null(), |h| h.key.as_ptr()))
}

/// The instance's `created`, epoch milliseconds; 0 for a NULL job.
#[no_mangle]
pub extern "C" fn batchdb_job_created(j: *const batchdb_job) -> i64 {
    boundary(|_| 0, || try_ref(j, "j").map_or(0, |h| h.created()))
}

/// How many upstream instances this instance waited for (its push's `after`): the inputs
/// that `batchdb_job_after` reads. 0 for a NULL job and for an instance pushed without
/// `after`. Works on owned and borrowed jobs.
#[no_mangle]
pub extern "C" fn batchdb_job_after_count(j: *const batchdb_job) -> usize {
    boundary(|_| 0, || try_ref(j, "j").map_or(0, |h| h.after().len()))
}

/// Upstream `i` (from 0, below `batchdb_job_after_count`) of this instance, in the order of its
/// push's `after`: its job's key to `key_out` and its result's output hash to `hash_out` (each
/// 64 hex characters and a NUL), its `created` to `created_out`; any of them may be NULL. The
/// output is the runner's input, readable with `batchdb_get` or `batchdb_reader_open`.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for a NULL `j` or `i` out of range (nothing
/// written). Works on owned and borrowed jobs; reads no file.
#[no_mangle]
pub extern "C" fn batchdb_job_after(
    j: *const batchdb_job,
    i: usize,
    key_out: *mut c_char,
    created_out: *mut i64,
    hash_out: *mut c_char,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(j, "j")?;
        let after = h.after();
        let (key, created, hash) = after.get(i).ok_or_else(|| {
            Error::invalid(format!("upstream index {i} is out of range (the job has {})", after.len()))
        })?;
        write_hex(key_out, key);
        write_opt(created_out, *created);
        write_hex(hash_out, hash);
        Ok(BATCHDB_OK)
    })
}

/// Reads up to `cap` bytes of the job's payload into `buf`; the count goes to `*n_out`, and 0
/// means the end (the payload has then been verified against the key).
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL `j`/`buf`/`n_out`, `cap` 0),
/// `BATCHDB_ERR_CORRUPT`, `BATCHDB_ERR_IO`. Works on owned and borrowed jobs.
#[no_mangle]
pub extern "C" fn batchdb_job_read(
    j: *mut batchdb_job,
    buf: *mut u8,
    cap: usize,
    n_out: *mut usize,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_mut(j, "j")?;
        read_into(h.job(), buf, cap, n_out)
    })
}

/// Reports the job's progress: `done` from 0 to 1 and a short NUL-terminated UTF-8
/// `message` (at most 1000 bytes; NULL is ""). While the instance runs its pending row shows
/// it (`"progress": {"done", "message"}`), and a progress event fires.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL `j`, `done` outside 0 to 1 or NaN, a
/// message too long or not UTF-8); `BATCHDB_ERR_STALE` when this worker lost its lease;
/// `BATCHDB_ERR_IO`. Works on owned and borrowed jobs.
#[no_mangle]
pub extern "C" fn batchdb_job_progress(
    j: *mut batchdb_job,
    done: f64,
    message: *const c_char,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_mut(j, "j")?;
        let message = super::db::name_arg(c_str(message), "message")?.unwrap_or("");
        h.job().progress(done, message)?;
        Ok(BATCHDB_OK)
    })
}

/// Appends `len` bytes at `data` to the job's output (copied; `data` may be NULL when `len`
/// is 0). The output becomes the result when the job completes.
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL `j`, NULL `data` with `len` > 0),
/// `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`. Works on owned and borrowed jobs.
#[no_mangle]
pub extern "C" fn batchdb_job_write(
    j: *mut batchdb_job,
    data: *const u8,
    len: usize,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_mut(j, "j")?;
        let data = bytes(data, len, "data")?;
        h.job().write_all(data).map_err(Error::from)?;
        Ok(BATCHDB_OK)
    })
}

/// Records the output written so far as the instance's result and removes the instance from
/// the queue, in one transaction (event result). The output's hash goes to `hash_out` (64 hex
/// characters and a NUL; may be NULL).
///
/// Consumes `j`: it is freed whether or not this succeeds, and must not be used again.
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL `j`); `BATCHDB_ERR_STALE` when this worker
/// lost its lease (nothing changed); `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`. On a job lent to a
/// `batchdb_run` callback it returns `BATCHDB_ERR_MISUSE` and neither frees nor changes it.
#[no_mangle]
pub extern "C" fn batchdb_job_complete(
    j: *mut batchdb_job,
    hash_out: *mut c_char,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let hash = consume(j)?.complete()?;
        write_hex(hash_out, &hash);
        Ok(BATCHDB_OK)
    })
}

/// `batchdb_job_write` of `len` bytes at `data` (NULL when `len` is 0), then
/// `batchdb_job_complete`, in one call: a binding that crosses into C at a cost completes a job
/// with a small output in one crossing.
///
/// Consumes `j` like `batchdb_job_complete`, also when the write fails or `data` is NULL with
/// `len` > 0 (`BATCHDB_ERR_INVALID`): the instance then goes back to pending, as a job freed
/// unfinished does. Returns what `batchdb_job_write` and `batchdb_job_complete` return;
/// `BATCHDB_ERR_MISUSE`, changing nothing, on a job lent to a `batchdb_run` callback.
#[no_mangle]
pub extern "C" fn batchdb_job_complete_with(
    j: *mut batchdb_job,
    data: *const u8,
    len: usize,
    hash_out: *mut c_char,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let data = bytes(data, len, "data");
        let mut job = consume(j)?;
        job.write_all(data?).map_err(Error::from)?;
        let hash = job.complete()?;
        write_hex(hash_out, &hash);
        Ok(BATCHDB_OK)
    })
}

/// `batchdb_job_complete_with`, then `batchdb_claim_read` on `db`, in one call: a worker loop
/// in a binding that crosses into C at a cost finishes one small job and takes the next in a
/// single crossing. When `j` was claimed through `db`, the claim is made in the complete's
/// transaction: on a file one commit, not two.
///
/// The complete is what counts: on its failure this returns its error (`j` is consumed all the
/// same, as by `batchdb_job_complete_with`) and claims nothing. Once it succeeded this returns
/// `BATCHDB_OK`, and `*next_out` holds the next job (the start of whose payload is in `buf`,
/// `*n_out` bytes, as from `batchdb_claim_read`) or NULL when none was claimed: nothing was
/// ready, or the claim failed, which the caller sees again on its next `batchdb_claim`.
/// `BATCHDB_ERR_INVALID`, changing nothing, for a NULL `db`/`buf`/`n_out`/`next_out` or `cap` 0.
#[no_mangle]
pub extern "C" fn batchdb_job_complete_claim(
    db: *mut batchdb,
    j: *mut batchdb_job,
    data: *const u8,
    len: usize,
    hash_out: *mut c_char,
    buf: *mut u8,
    cap: usize,
    n_out: *mut usize,
    next_out: *mut *mut batchdb_job,
    err: *mut batchdb_error,
) -> i32 {
    let rc = status(err, || {
        handle_out(next_out)?;
        *out(n_out, "n_out")? = 0;
        bytes_mut(buf, cap, "buf")?;
        try_ref(db, "db")?;
        Ok(BATCHDB_OK)
    });
    if rc != BATCHDB_OK {
        return rc;
    }
    if claims_through(db, j) {
        return status(err, || {
            let outs = (bytes_mut(buf, cap, "buf")?, out(n_out, "n_out")?, handle_out(next_out)?);
            complete_then_claim(j, data, len, hash_out, outs).map(|_| BATCHDB_OK)
        });
    }
    let rc = batchdb_job_complete_with(j, data, len, hash_out, err);
    if rc != BATCHDB_OK {
        return rc;
    }
    // The claim's own errors are not this call's: the result is recorded either way.
    let _ = batchdb_claim_read(db, buf, cap, n_out, next_out, std::ptr::null_mut());
    BATCHDB_OK
}

/// Many `batchdb_job_complete_with`s, then up to `want` `batchdb_claim_read`s, in one call: a
/// worker loop in a binding that crosses into C at a cost (Node's koffi, through a thread pool)
/// completes the small jobs it finished while the previous call ran and takes the next ones in
/// a single crossing.
///
/// Completes: `done[i]` (`done_len` job handles, each given once) with the `lens[i]` bytes that
/// follow the previous ones in `data` (the outputs' last bytes, one after the other; `data` may
/// be NULL when they add up to 0), one transaction each, in that order. Every handle is
/// consumed as by `batchdb_job_complete_with`, also when its complete fails; its status goes to
/// `status_out[i]` (`BATCHDB_OK`, or what `batchdb_job_complete_with` returns, e.g.
/// `BATCHDB_ERR_STALE` when this worker lost the lease; `BATCHDB_ERR_MISUSE`, changing nothing,
/// for a job lent to a `batchdb_run` callback) and, on success, its output's hash to
/// `hashes_out + 65 * i` (64 hex characters and a NUL; `hashes_out` may be NULL).
///
/// Claims, after the completes: one at a time, in the processing order, until `want` are
/// claimed or one finds nothing (or fails, which the caller sees again on its next claim).
/// The first is made in the last complete's transaction when that job was claimed through
/// `db` (on a file one commit, not two).
/// Their count goes to `*claimed_out`; claim `k` (from 0) goes to `jobs_out[k]` (owned, as from
/// `batchdb_claim`; the unused entries are set to NULL), the start of its payload to
/// `buf + k * cap` (`n_out[k]` bytes, as from `batchdb_claim_read`: fewer than `cap` means the
/// whole payload). With `want` 0, `buf`, `n_out` and `jobs_out` may be NULL.
///
/// Returns `BATCHDB_OK` once the arguments are valid (the completes' outcomes are in
/// `status_out`); `BATCHDB_ERR_INVALID`, consuming and changing nothing, for a NULL `db` or
/// `claimed_out`, a NULL `done`/`lens`/`status_out` with `done_len` > 0, NULL `data` with bytes
/// to take from it, a NULL `buf`/`n_out`/`jobs_out` or a `cap` of 0 with `want` > 0, or sizes
/// that overflow. Thread-safe like `batchdb_claim`; each job is used by this thread only.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn batchdb_jobs_complete_claim(
    db: *mut batchdb,
    done: *const *mut batchdb_job,
    done_len: usize,
    data: *const u8,
    lens: *const usize,
    hashes_out: *mut c_char,
    status_out: *mut i32,
    want: usize,
    buf: *mut u8,
    cap: usize,
    n_out: *mut usize,
    jobs_out: *mut *mut batchdb_job,
    claimed_out: *mut usize,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let claimed_out = out(claimed_out, "claimed_out")?;
        *claimed_out = 0;
        try_ref(db, "db")?;
        let done = ptr_slice(done.cast::<*const batchdb_job>(), done_len, "done")?;
        let lens = struct_slice(lens, done_len, "lens")?;
        let total = lens
            .iter()
            .try_fold(0usize, |a, &n| a.checked_add(n))
            .ok_or_else(|| Error::invalid("the lengths in lens overflow"))?;
        let data = bytes(data, total, "data")?;
        let statuses = match opt_array(status_out, done_len) {
            Some(s) => s,
            None if done_len == 0 => &mut [],
            None => return Err(null("status_out")),
        };
        let mut hashes = opt_array(
            hashes_out,
            done_len.checked_mul(65).ok_or_else(|| Error::invalid("done_len overflows"))?,
        );
        let (heads, counts, jobs): (&mut [u8], &mut [usize], &mut [*mut batchdb_job]) = if want == 0 {
            (&mut [], &mut [], &mut [])
        } else {
            let size = want.checked_mul(cap).ok_or_else(|| Error::invalid("want * cap overflows"))?;
            if cap == 0 {
                return Err(Error::invalid("buf has capacity 0"));
            }
            let heads = bytes_mut(buf, size, "buf")?;
            let counts = opt_array(n_out, want).ok_or_else(|| null("n_out"))?;
            let jobs = opt_array(jobs_out, want).ok_or_else(|| null("jobs_out"))?;
            (heads, counts, jobs)
        };
        counts.fill(0);
        jobs.fill(std::ptr::null_mut());
        let mut at = 0;
        let mut claiming = true;
        for (i, (&j, &len)) in done.iter().zip(lens).enumerate() {
            let hash = match hashes.as_deref_mut() {
                Some(h) => h[65 * i..].as_mut_ptr(),
                None => std::ptr::null_mut(),
            };
            let piece = &data[at..at + len];
            at += len;
            let j = j.cast_mut();
            // The last complete claims the first job in its own transaction.
            if i + 1 == done_len && want > 0 && claims_through(db, j) {
                let outs = (&mut heads[..cap], &mut counts[0], &mut jobs[0]);
                let mut claimed = true;
                statuses[i] = status(std::ptr::null_mut(), || {
                    claimed = complete_then_claim(j, piece.as_ptr(), len, hash, outs)?;
                    Ok(BATCHDB_OK)
                });
                if statuses[i] == BATCHDB_OK {
                    *claimed_out = claimed as usize;
                    // Nothing was ready (or the claim failed): claiming again now would find
                    // the same.
                    claiming = claimed;
                }
                continue;
            }
            statuses[i] = batchdb_job_complete_with(j, piece.as_ptr(), len, hash, std::ptr::null_mut());
        }
        for k in *claimed_out..if claiming { want } else { 0 } {
            let rc = batchdb_claim_read(
                db,
                heads[k * cap..].as_mut_ptr(),
                cap,
                &mut counts[k],
                &mut jobs[k],
                std::ptr::null_mut(),
            );
            if rc != BATCHDB_OK {
                break;
            }
            *claimed_out += 1;
        }
        Ok(BATCHDB_OK)
    })
}

/// Fails the instance with `message` (NUL-terminated; invalid UTF-8 is replaced): a fail row
/// and event fail, or, with `retry_errors` and attempts left, back to pending after a backoff.
///
/// Consumes `j`: it is freed whether or not this succeeds (with a NULL `message` the job is
/// released back to pending and `BATCHDB_ERR_INVALID` returned). Returns `BATCHDB_OK`;
/// `BATCHDB_ERR_INVALID` (NULL `j`/`message`); `BATCHDB_ERR_STALE` when this worker lost its
/// lease; `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`. On a job lent to a `batchdb_run` callback it
/// returns `BATCHDB_ERR_MISUSE` and neither frees nor changes it.
#[no_mangle]
pub extern "C" fn batchdb_job_fail(
    j: *mut batchdb_job,
    message: *const c_char,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let job = consume(j)?;
        let message = c_str(message).ok_or_else(|| null("message"))?;
        job.fail(&message.to_string_lossy())?;
        Ok(BATCHDB_OK)
    })
}
