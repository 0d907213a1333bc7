//! # batchdb
//!
//! An embedded job queue and content-addressed blob store in one SQLite file.
//!
//! A job's key is the SHA-256 of its payload. Pushing a job queues an instance, identified by
//! `(key, created)`. A runner turns the payload into output, stored as a blob addressed by
//! its hash. Jobs, pending instances, results and failures can be listed. Claims hold leases
//! that a heartbeat renews; attempts are fenced, so a worker that lost its lease can never
//! overwrite a result; every blob read is verified against its hash.
//!
//! ```
//! use std::io::{Read, Write};
//! # let dir = tempfile::tempdir().unwrap();
//! let db = batchdb::Db::open(dir.path().join("batchdb.db"), Default::default())?;
//! db.add(&b"sleep 5; date"[..])?;
//! db.add(&b"sleep 5; date"[..])?; // same job, second instance
//!
//! db.run(batchdb::RunOptions { workers: 2, until_empty: true, ..Default::default() }, |job| {
//!     let mut script = String::new();
//!     job.read_to_string(&mut script)?;
//!     write!(job, "ran: {script}")
//! })?;
//!
//! for row in db.results() {
//!     let row = row?;
//!     let mut out = String::new();
//!     db.get(&row.hash)?.read_to_string(&mut out)?;
//!     println!("{} {} {out}", row.key, row.created);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod blob;
mod check;
mod clock;
mod copy;
mod db;
mod duration;
mod error;
mod events;
#[allow(unsafe_code)]
pub mod ffi;
mod gc;
mod hash;
mod lease;
mod list;
mod location;
mod options;
mod outage;
mod queue;
mod row;
mod run;
mod schedule;
mod shared;
mod store;
mod sync;

pub use blob::{Reader, Writer};
pub use check::CheckReport;
pub use copy::CopyReport;
pub use db::Db;
pub use duration::parse_duration;
pub use error::{Error, Result, CONNECTION_LOST};
pub use events::{Event, SubscriptionId};
pub use hash::Hash;
pub use list::Cursor;
pub use location::redact;
pub use options::{Durability, Options, Order, PushOptions, RunOptions, DEFAULT_QUEUE};
pub use outage::{Backoff, Outage};
pub use queue::Job;
pub use row::{FailRow, JobRow, ListKind, ListRow, PendingRow, Progress, ResultRow, Row};
pub use run::RunReport;
pub use schedule::check_schedule;
pub use store::{GcReport, Lineage, LineageResult, Pushed, QueueStats, ScheduleRow, Stats};
