//! The one error type of batchdb.
//!
//! Every error has a kind, and every kind has exactly one C status code
//! ([`Error::code`] is the only place where that mapping lives). Messages name the object
//! involved, for example `job 3fa9… not found`.

use std::fmt;

/// The result type of every fallible batchdb operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The words in the message of every lost-connection error ([`Error::is_connection_lost`]),
/// for callers that see only a code and a message (C, Node): `BATCHDB_ERR_IO` with this in
/// the message.
pub const CONNECTION_LOST: &str = "connection to PostgreSQL lost";

/// What went wrong, and with which object.
///
/// The variants map 1:1 onto the `BATCHDB_ERR_*` codes of the C ABI; codes are never
/// renumbered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: a malformed hash, an option out of range, a file that is not a batchdb
    /// database, a newer schema. Nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// An unknown job, blob or instance.
    #[error("{0}")]
    NotFound(String),
    /// The operating system or SQLite could not read or write the file (disk full, no
    /// permission, lost connection). Nothing committed was lost.
    #[error("{0}")]
    Io(String),
    /// Stored data does not match its hash, or the file is damaged.
    #[error("{0}")]
    Corrupt(String),
    /// The database stayed locked by other processes for longer than the library's bounded
    /// wait, or a running instance was asked to change.
    #[error("{0}")]
    Busy(String),
    /// A callback asked to stop.
    #[error("{0}")]
    Aborted(String),
    /// A panic was caught at the C boundary or in a runner.
    #[error("{0}")]
    Panic(String),
    /// The API was used out of order, for example a handle used after it was consumed.
    #[error("{0}")]
    Misuse(String),
    /// A worker's lease was lost: the instance was expired and re-queued, claimed by another
    /// worker, or already finished. The late `complete`/`fail` changed nothing.
    #[error("{0}")]
    Stale(String),
}

impl Error {
    /// The `BATCHDB_ERR_*` status code of this error, as the C ABI returns it.
    pub fn code(&self) -> i32 {
        match self {
            Error::Invalid(_) => -1,
            Error::NotFound(_) => -2,
            Error::Io(_) => -3,
            Error::Corrupt(_) => -4,
            Error::Busy(_) => -5,
            Error::Aborted(_) => -6,
            Error::Panic(_) => -7,
            Error::Misuse(_) => -8,
            Error::Stale(_) => -9,
        }
    }

    /// Whether this is a lost connection to the server: it went away, restarted, reset the
    /// connection, or stopped answering, or cannot be reached again after that. Such an
    /// error is [`Error::Io`] (`BATCHDB_ERR_IO` in C) whose message holds
    /// [`CONNECTION_LOST`]. A run loop waits and tries again after it (see
    /// [`Outage`](crate::Outage)); a single write may or may not have happened.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::Io(m) if m.contains(CONNECTION_LOST))
    }

    /// The message without the kind, as it goes into `batchdb_error.message`.
    pub fn message(&self) -> &str {
        match self {
            Error::Invalid(m)
            | Error::NotFound(m)
            | Error::Io(m)
            | Error::Corrupt(m)
            | Error::Busy(m)
            | Error::Aborted(m)
            | Error::Panic(m)
            | Error::Misuse(m)
            | Error::Stale(m) => m,
        }
    }

    #[cold]
    pub(crate) fn invalid(msg: impl fmt::Display) -> Error {
        Error::Invalid(msg.to_string())
    }
    #[cold]
    pub(crate) fn not_found(msg: impl fmt::Display) -> Error {
        Error::NotFound(msg.to_string())
    }
    #[cold]
    pub(crate) fn io(msg: impl fmt::Display) -> Error {
        Error::Io(msg.to_string())
    }
    /// A lost connection (see [`Error::is_connection_lost`]) to the server at `shown` (a URL
    /// without its password), and why. Only a server backend loses connections.
    #[cold]
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn connection_lost(shown: impl fmt::Display, why: impl fmt::Display) -> Error {
        Error::Io(format!("{CONNECTION_LOST} ({shown}): {why}"))
    }
    #[cold]
    pub(crate) fn corrupt(msg: impl fmt::Display) -> Error {
        Error::Corrupt(msg.to_string())
    }
    #[cold]
    pub(crate) fn busy(msg: impl fmt::Display) -> Error {
        Error::Busy(msg.to_string())
    }
    #[cold]
    pub(crate) fn stale(msg: impl fmt::Display) -> Error {
        Error::Stale(msg.to_string())
    }
    #[cold]
    pub(crate) fn misuse(msg: impl fmt::Display) -> Error {
        Error::Misuse(msg.to_string())
    }
    #[cold]
    pub(crate) fn aborted(msg: impl fmt::Display) -> Error {
        Error::Aborted(msg.to_string())
    }

    /// Prefixes the message with what was being done, keeping the kind.
    pub(crate) fn context(self, what: impl fmt::Display) -> Error {
        let wrap = |m: String| format!("{what}: {m}");
        match self {
            Error::Invalid(m) => Error::Invalid(wrap(m)),
            Error::NotFound(m) => Error::NotFound(wrap(m)),
            Error::Io(m) => Error::Io(wrap(m)),
            Error::Corrupt(m) => Error::Corrupt(wrap(m)),
            Error::Busy(m) => Error::Busy(wrap(m)),
            Error::Aborted(m) => Error::Aborted(wrap(m)),
            Error::Panic(m) => Error::Panic(wrap(m)),
            Error::Misuse(m) => Error::Misuse(wrap(m)),
            Error::Stale(m) => Error::Stale(wrap(m)),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        // A batchdb error that travelled through an io::Read/Write impl keeps its kind.
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(err) = inner.downcast::<Error>() {
                    return *err;
                }
            }
            return Error::io("I/O error");
        }
        Error::Io(e.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e)
    }
}
