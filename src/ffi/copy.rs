//! Backup and copy (issue 20): a consistent copy into a new file, and a copy of everything
//! into another open database.

use super::db::path_arg;
use super::handles::{c_str, try_ref, write_opt};
use super::panic::status;
use super::{batchdb, batchdb_error, BATCHDB_OK};
use std::ffi::c_char;

/// What `batchdb_copy` did.
#[repr(C)]
pub struct batchdb_copy_report {
    /// Blobs the target did not hold, sent.
    pub blobs_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Rows applied (the target keeps the ones it had).
    pub rows: u64,
}

/// Writes a consistent copy of the whole database, as of one instant, to the new file `dest`
/// (NUL-terminated path), while other handles and processes keep working. The copy is written
/// beside `dest` and linked into place when complete. A database on PostgreSQL is copied into
/// the new file table by table (see `batchdb_copy`).
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL arguments or an existing `dest` (left
/// alone); `BATCHDB_ERR_IO` when the file cannot be written. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_backup(db: *mut batchdb, dest: *const c_char, err: *mut batchdb_error) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let dest = path_arg(c_str(dest))?;
        h.db.backup(&dest)?;
        Ok(BATCHDB_OK)
    })
}

/// Copies every job, blob, instance, result and fail row, queue setting and schedule of `db`
/// into the open database `target` (a file or a server), keeping keys and `created` values.
/// Blobs the target holds are not sent again; a second copy changes nothing, and an
/// interrupted one is finished by calling this again. `target` must be empty or an earlier
/// copy (or a backup) of `db`. What was sent goes to `report_out` (may be NULL).
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` for NULL handles or a target that is neither
/// empty nor an earlier copy (nothing is written); `BATCHDB_ERR_IO`, `BATCHDB_ERR_CORRUPT`
/// (a source blob found damaged: the copy stops before sending it), `BATCHDB_ERR_BUSY`.
/// Thread-safe; both handles stay usable by other threads meanwhile.
#[no_mangle]
pub extern "C" fn batchdb_copy(
    db: *mut batchdb,
    target: *mut batchdb,
    report_out: *mut batchdb_copy_report,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let src = try_ref(db, "db")?;
        let dst = try_ref(target, "target")?;
        let r = src.db.copy_to(&dst.db)?;
        write_opt(
            report_out,
            batchdb_copy_report { blobs_sent: r.blobs_sent, bytes_sent: r.bytes_sent, rows: r.rows },
        );
        Ok(BATCHDB_OK)
    })
}
