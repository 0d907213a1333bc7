//! The row model of the four listings: which table ([`ListKind`]), one typed row per table,
//! [`Row`] for any of them, and their JSON shape (the contract's). What a store returns and
//! what a [`Cursor`](crate::Cursor) yields; it knows nothing of either.

use crate::error::{Error, Result};
use crate::hash::Hash;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use std::str::FromStr;

/// Which table to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Jobs, by key.
    Job,
    /// Instances not yet finished, by `created`; running ones are included and marked.
    Pending,
    /// Results, by job key, then `created`.
    Result,
    /// Fail rows, by job key, then `created`.
    Fail,
}

impl FromStr for ListKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<ListKind> {
        match s {
            "job" => Ok(ListKind::Job),
            "pending" => Ok(ListKind::Pending),
            "result" => Ok(ListKind::Result),
            "fail" => Ok(ListKind::Fail),
            _ => {
                Err(Error::invalid(format!("unknown list kind {s:?}: expected job, pending, result or fail")))
            }
        }
    }
}

/// A job: `{"key": K, "running": [C, ...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// The job's key, the hash of its payload.
    pub key: Hash,
    /// `created` of each of its instances that a worker holds now.
    pub running: Vec<i64>,
}

/// What a running job last reported of its progress: `{"done": F, "message": M}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// How much is done, from 0 to 1.
    pub done: f64,
    /// A short description of the step it is at.
    pub message: String,
}

/// A pending instance: `{"job": K, "created": C, "running": false}`, plus `"priority"` and
/// `"run_at"` when its push set them (or a retry backoff set `run_at`), `"queue"` when it is
/// not the default queue, and `"progress"` while it runs and has reported some.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingRow {
    /// The job's key.
    pub job: Hash,
    /// The instance's push time in epoch milliseconds, unique in the file.
    pub created: i64,
    /// Whether a worker holds it now.
    pub running: bool,
    /// The push's priority, when not 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// When it may run, when it was delayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<i64>,
    /// Its queue, when not the default one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Its progress, while it runs and has reported some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The upstream instances it still waits for, while it waits for some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<(Hash, i64)>>,
    /// While it runs: when its current attempt started, epoch ms. Not part of the JSON row
    /// (the original's shape); the dashboard shows it.
    #[serde(skip)]
    pub start: Option<i64>,
    /// While it runs: when its lease ends unless renewed, epoch ms. Not part of the JSON row.
    #[serde(skip)]
    pub lease_until: Option<i64>,
}

/// A result: `{"key": [K, C], "value": {"hash": H, "start": S, "end": E, "created": C}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    /// The job's key.
    pub key: Hash,
    /// The instance's `created`.
    pub created: i64,
    /// The hash of the output blob.
    pub hash: Hash,
    /// When the successful attempt started, epoch ms.
    pub start: i64,
    /// When it completed, epoch ms.
    pub end: i64,
}

/// A failure: `{"key": [K, C], "value": {"message": M, "start": S, "end": E, "attempts": N}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailRow {
    /// The job's key.
    pub key: Hash,
    /// The instance's `created`.
    pub created: i64,
    /// What went wrong.
    pub message: String,
    /// When the last attempt started, epoch ms.
    pub start: i64,
    /// When it failed, epoch ms.
    pub end: i64,
    /// How many times the instance was started.
    pub attempts: u32,
}

impl Serialize for ResultRow {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Value {
            hash: Hash,
            start: i64,
            end: i64,
            created: i64,
        }
        let mut st = s.serialize_struct("ResultRow", 2)?;
        st.serialize_field("key", &(self.key, self.created))?;
        st.serialize_field(
            "value",
            &Value { hash: self.hash, start: self.start, end: self.end, created: self.created },
        )?;
        st.end()
    }
}

impl Serialize for FailRow {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Value<'a> {
            message: &'a str,
            start: i64,
            end: i64,
            attempts: u32,
        }
        let mut st = s.serialize_struct("FailRow", 2)?;
        st.serialize_field("key", &(self.key, self.created))?;
        st.serialize_field(
            "value",
            &Value { message: &self.message, start: self.start, end: self.end, attempts: self.attempts },
        )?;
        st.end()
    }
}

/// A row of any kind; serializes to that kind's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Row {
    /// From [`ListKind::Job`].
    Job(JobRow),
    /// From [`ListKind::Pending`].
    Pending(PendingRow),
    /// From [`ListKind::Result`].
    Result(ResultRow),
    /// From [`ListKind::Fail`].
    Fail(FailRow),
}

impl Row {
    /// The row as one line of JSON, in the shape of the contract.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A row type a [`Cursor`](crate::Cursor) can yield.
pub trait ListRow: Sized + sealed::Sealed {
    #[doc(hidden)]
    const KIND: Option<ListKind>;
    #[doc(hidden)]
    fn from_row(row: Row) -> Option<Self>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Row {}
    impl Sealed for super::JobRow {}
    impl Sealed for super::PendingRow {}
    impl Sealed for super::ResultRow {}
    impl Sealed for super::FailRow {}
}

impl ListRow for Row {
    const KIND: Option<ListKind> = None;
    fn from_row(row: Row) -> Option<Self> {
        Some(row)
    }
}

macro_rules! typed_row {
    ($t:ident, $kind:ident) => {
        impl ListRow for $t {
            const KIND: Option<ListKind> = Some(ListKind::$kind);
            fn from_row(row: Row) -> Option<Self> {
                match row {
                    Row::$kind(r) => Some(r),
                    _ => None,
                }
            }
        }
    };
}
typed_row!(JobRow, Job);
typed_row!(PendingRow, Pending);
typed_row!(ResultRow, Result);
typed_row!(FailRow, Fail);
