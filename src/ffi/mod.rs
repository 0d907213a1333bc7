//! The C ABI: `include/batchdb.h`, `libbatchdb.so` and `libbatchdb.a`.
//!
//! Every export runs inside the panic boundary of [`panic`], takes only C types (integers,
//! pointers, `#[repr(C)]` structs), reports failures through [`error`], and reaches its
//! handles only through the casts in [`handles`]. The header is generated from this module
//! by cbindgen in `tests/header.rs`, which fails when the committed header is stale
//! (`BATCHDB_BLESS=1 cargo test --test header` rewrites it); the `///` comments here are its
//! manual, and the list below opens it.
//!
//! Conventions for every function below:
//!
//! - A fallible function returns a status code: `BATCHDB_OK` (0), `BATCHDB_DONE` (1, not an
//!   error), or a negative `BATCHDB_ERR_*` code.
//! - It takes `batchdb_error *err` last. `err` may be NULL; on failure it is filled with the
//!   code and a NUL-terminated UTF-8 message; on success it is left untouched.
//! - No Rust panic crosses this boundary: it is reported as `BATCHDB_ERR_PANIC`.
//! - NULL where a handle or required pointer is expected is `BATCHDB_ERR_INVALID` and changes
//!   nothing. Optional out-parameters (`key_out`, `created_out`, ...) may be NULL. Free, close
//!   and abort functions accept NULL and do nothing.
//! - Kinds, orders and flags are `int32_t`; a value out of range is `BATCHDB_ERR_INVALID`.
//! - A `batchdb *` may be used from many threads at once. Writers, readers, cursors and jobs
//!   may move between threads but must be used by one thread at a time.
//! - Keys and hashes are 64 lowercase hex characters; outputs go to caller-owned `char[65]`.
//!
//! Link with `-lbatchdb` (see `batchdb.pc`: `pkg-config --cflags --libs batchdb`).
#![allow(non_camel_case_types)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The header lists the functions in the order of these modules.
mod db;

mod blob;

mod list;

mod job;

mod run;

mod events;

mod copy;

mod error;
mod handles;
mod panic;
pub(crate) mod wal;

pub use blob::*;
pub use copy::*;
pub use db::*;
pub use events::*;
pub use job::*;
pub use list::*;
pub use run::*;

use std::ffi::c_char;

/// Success.
pub const BATCHDB_OK: i32 = 0;
/// A cursor is exhausted, or a claim found nothing ready. Not an error.
pub const BATCHDB_DONE: i32 = 1;
/// Bad input: NULL handle or pointer, malformed hash, option or kind out of range, a file that
/// is not a batchdb database. Nothing was changed.
pub const BATCHDB_ERR_INVALID: i32 = -1;
/// Unknown job, blob or instance.
pub const BATCHDB_ERR_NOT_FOUND: i32 = -2;
/// The operating system or SQLite could not read or write the file.
pub const BATCHDB_ERR_IO: i32 = -3;
/// Stored data does not match its hash, or the file is damaged.
pub const BATCHDB_ERR_CORRUPT: i32 = -4;
/// The file stayed locked for longer than the library's bounded wait, or a running instance
/// was asked to change (`batchdb_cancel`).
pub const BATCHDB_ERR_BUSY: i32 = -5;
/// A callback said stop.
pub const BATCHDB_ERR_ABORTED: i32 = -6;
/// A panic inside the library was caught at the boundary.
pub const BATCHDB_ERR_PANIC: i32 = -7;
/// The API was used out of order, e.g. `batchdb_job_complete` on the job borrowed by a
/// `batchdb_run` callback.
pub const BATCHDB_ERR_MISUSE: i32 = -8;
/// Extension to the contract: a late `batchdb_job_complete`/`batchdb_job_fail` of a worker that
/// lost its lease (the instance expired and was re-queued, taken by another worker, or already
/// finished). It changed nothing.
pub const BATCHDB_ERR_STALE: i32 = -9;

/// `batchdb_options.durability`: a returned add, push or result survives power loss (default).
pub const BATCHDB_DURABILITY_FULL: i32 = 0;
/// `batchdb_options.durability`: survives a process crash, may be lost on power loss; faster.
pub const BATCHDB_DURABILITY_NORMAL: i32 = 1;
/// `batchdb_options.order`: the most recently pushed instance first (default).
pub const BATCHDB_ORDER_NEWEST: i32 = 0;
/// `batchdb_options.order`: the oldest instance first (FIFO).
pub const BATCHDB_ORDER_OLDEST: i32 = 1;

/// `batchdb_list` kind: jobs, by key.
pub const BATCHDB_LIST_JOB: i32 = 0;
/// `batchdb_list` kind: pending and running instances, by `created`.
pub const BATCHDB_LIST_PENDING: i32 = 1;
/// `batchdb_list` kind: results, by job key, then `created`.
pub const BATCHDB_LIST_RESULT: i32 = 2;
/// `batchdb_list` kind: fail rows, by job key, then `created`.
pub const BATCHDB_LIST_FAIL: i32 = 3;
/// `batchdb_list` kind: recurring schedules, by name. In each row `job` is the key of the
/// job it pushes, `created` the next slot (epoch ms), `message` the schedule's name, and
/// `json` `{"name", "spec", "queue", "job", "next_run"}`.
pub const BATCHDB_LIST_SCHEDULE: i32 = 4;

/// `batchdb_event.kind`: a job was created (also when its payload already existed).
pub const BATCHDB_EVENT_CREATE: i32 = 0;
/// `batchdb_event.kind`: an instance was queued.
pub const BATCHDB_EVENT_PUSH: i32 = 1;
/// `batchdb_event.kind`: a worker claimed an instance.
pub const BATCHDB_EVENT_START: i32 = 2;
/// `batchdb_event.kind`: an instance completed; `hash` is its output.
pub const BATCHDB_EVENT_RESULT: i32 = 3;
/// `batchdb_event.kind`: an instance failed for good; `message` says why.
pub const BATCHDB_EVENT_FAIL: i32 = 4;
/// `batchdb_event.kind`: a running instance reported progress; `done` is the fraction (0 to
/// 1) and `message` its text.
pub const BATCHDB_EVENT_PROGRESS: i32 = 5;
/// `batchdb_event.kind`: a `batchdb_run` lost its connection to the server and waits to try
/// again; `message` says what failed, `job` is empty. Once per outage.
pub const BATCHDB_EVENT_DISCONNECTED: i32 = 6;
/// `batchdb_event.kind`: the run reached the server again; `created` is how long the outage
/// lasted in milliseconds, `job` is empty.
pub const BATCHDB_EVENT_RECONNECTED: i32 = 7;

/// The error object, always the last argument of a fallible function (it may be NULL).
///
/// Filled on failure only: `code` is the status returned, `message` a NUL-terminated UTF-8
/// description (cut at a character boundary if longer than 511 bytes). It is the caller's
/// memory; the library keeps no thread-local error state.
#[repr(C)]
pub struct batchdb_error {
    /// The `BATCHDB_ERR_*` code, equal to the function's return value.
    pub code: i32,
    /// What went wrong, NUL-terminated UTF-8.
    pub message: [c_char; 512],
}

/// Options for `batchdb_open`. All zeros (or a NULL pointer) means the defaults.
#[repr(C)]
pub struct batchdb_options {
    /// Bytes per stored chunk, 1024 to 16777216. 0: 262144 (256 KiB).
    pub chunk_size: u32,
    /// `BATCHDB_DURABILITY_FULL` (0, default) or `BATCHDB_DURABILITY_NORMAL` (1).
    pub durability: i32,
    /// Lease of a claimed instance in milliseconds, 50 to 86400000; renewed while the job
    /// handle lives. 0: 30000.
    pub lease_ms: u32,
    /// How many times an instance may be started, 1 to 1000. 0: 3.
    pub max_attempts: u32,
    /// 1: re-queue an instance whose runner failed, with exponential backoff, while attempts
    /// remain. 0 (default): a runner failure is final.
    pub retry_errors: i32,
    /// `BATCHDB_ORDER_NEWEST` (0, default) or `BATCHDB_ORDER_OLDEST` (1).
    pub order: i32,
}

/// Options for `batchdb_push_with` and `batchdb_add_with`. All zeros (or NULL) means the
/// defaults.
#[repr(C)]
pub struct batchdb_push_options {
    /// Higher runs first. Default 0.
    pub priority: i32,
    /// The instance is not claimed before `created + delay_ms`. Must not be negative.
    /// Default 0.
    pub delay_ms: i64,
    /// The queue, NUL-terminated: 1 to 64 characters of `[A-Za-z0-9_.-]`. NULL or "" is
    /// the queue "default". Read during the call only.
    pub queue: *const c_char,
    /// 1: when an instance of the job is already pending, waiting or running in the queue,
    /// queue nothing and return that instance's `created`. 0 (default): always queue.
    pub unique: i32,
    /// 1: memoized. When the job already has a result, queue nothing: `created_out` gets the
    /// `created` of its newest result and `cached_out` that result's output hash. Otherwise as
    /// `unique` (a live instance in the queue is joined: its `created`, `cached_out` ""). 0
    /// (default): not memoized.
    pub memo: i32,
    /// Upstream instances, `after_len` of them (NULL with 0: none; NULL with more is
    /// `BATCHDB_ERR_INVALID`). The new instance waits, unclaimed, until each has a result; its
    /// pending row shows `"after": [[K, C], ...]` meanwhile. Each must exist (pending, running,
    /// or a result or fail row): an unknown one is `BATCHDB_ERR_NOT_FOUND` and nothing is
    /// queued; a malformed key, or an instance listed twice, is `BATCHDB_ERR_INVALID`. When
    /// one ends as a fail row (or is cancelled) the new instance becomes a fail row too
    /// (`upstream K C failed` / `upstream K C cancelled`). An upstream that is a fail row already does not make the push
    /// fail: it succeeds, and the new instance is a fail row at once. Read during the call only.
    pub after: *const batchdb_instance,
    /// How many instances `after` holds.
    pub after_len: usize,
    /// Optional output, a caller's `char[65]` (NULL: not wanted): on success of a memo push
    /// that reused a result, that result's output hash (64 hex characters and a NUL); "" in
    /// every other case, also when the call fails. Not written by `batchdb_schedule`.
    pub cached_out: *mut c_char,
}

/// An instance, `(key, created)`: an upstream in `batchdb_push_options.after`.
#[repr(C)]
pub struct batchdb_instance {
    /// The job's key: 64 hex characters and a NUL.
    pub key: [c_char; 65],
    /// The instance's `created`, epoch milliseconds.
    pub created: i64,
}

/// Options for `batchdb_run`. NULL means one worker, waiting for work until `batchdb_stop`.
#[repr(C)]
pub struct batchdb_run_options {
    /// Worker threads, at most 1024. 0: 1.
    pub workers: u32,
    /// 1: return once nothing is pending, waiting or running in the served queues (paused
    /// queues do not count). 0: wait for new work (also from other processes) until
    /// `batchdb_stop`.
    pub until_empty: i32,
    /// The queues to serve: `queues_len` NUL-terminated names. NULL (or `queues_len` 0)
    /// serves every queue. Read when the run starts
    /// (the names are copied).
    pub queues: *const *const c_char,
    /// How many names `queues` holds.
    pub queues_len: usize,
}

/// A database handle, from `batchdb_open`, released by `batchdb_close`. Thread-safe.
pub struct batchdb {
    _private: [u8; 0],
}

/// A streaming payload writer, from `batchdb_writer_open`; consumed by
/// `batchdb_writer_create`, `batchdb_writer_add` or `batchdb_writer_abort`.
pub struct batchdb_writer {
    _private: [u8; 0],
}

/// A streaming, verifying blob reader, from `batchdb_reader_open`; released by
/// `batchdb_reader_close`.
pub struct batchdb_reader {
    _private: [u8; 0],
}

/// A listing cursor, from `batchdb_list` or `batchdb_why`; released by `batchdb_cursor_free`.
pub struct batchdb_cursor {
    _private: [u8; 0],
}

/// A claimed instance, from `batchdb_claim` (owned) or passed to a `batchdb_run_fn`
/// (borrowed). An owned job is consumed by `batchdb_job_complete` or `batchdb_job_fail`.
pub struct batchdb_job {
    _private: [u8; 0],
}
