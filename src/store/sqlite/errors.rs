//! SQLite's errors as batchdb's: what a failed statement means to the caller (a lock held too
//! long, a full disk, damage, a file that is no database), named with SQLite's own message.

use crate::error::{Error, Result};
use rusqlite::ErrorCode;

pub(crate) fn sql_err(e: rusqlite::Error) -> Error {
    // A stored value of the wrong kind is damage (the schema fixes every column's type). Row
    // decoders that can name the blob carry a batchdb error out of the row closure.
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => {
            return match inner.downcast::<Error>() {
                Ok(err) => *err,
                Err(other) => Error::corrupt(format!("a stored row is damaged: {other}")),
            };
        }
        rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::IntegralValueOutOfRange(..) => {
            return Error::corrupt(format!("a stored row is damaged: {e}"));
        }
        _ => {}
    }
    let msg = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::busy(format!(
            "the database stayed locked by another process for longer than the bounded wait ({msg})"
        )),
        Some(ErrorCode::DiskFull) => Error::io(format!("disk full: {msg}")),
        // SQLite reports a failed write as SQLITE_FULL only for ENOSPC: a file size limit
        // (EFBIG) or a quota (EDQUOT) arrives as a bare "disk I/O error". The failed call's
        // errno is still this thread's last one, so name the cause.
        Some(ErrorCode::SystemIoFailure) => {
            let os = std::io::Error::last_os_error();
            match os.raw_os_error() {
                Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT) => {
                    Error::io(format!("disk full or file too large: {msg} ({os})"))
                }
                _ => Error::io(msg),
            }
        }
        Some(ErrorCode::NotADatabase) => Error::invalid(format!("not a batchdb database: {msg}")),
        Some(ErrorCode::DatabaseCorrupt) => Error::corrupt(format!("database file is damaged: {msg}")),
        Some(ErrorCode::TooBig) => Error::invalid(format!("value too large: {msg}")),
        _ => Error::io(msg),
    }
}

pub(crate) trait SqlResult<T> {
    fn sql(self) -> Result<T>;
}

impl<T> SqlResult<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T> {
        self.map_err(sql_err)
    }
}
