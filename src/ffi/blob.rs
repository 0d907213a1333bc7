//! Streaming writers and verifying readers.

use super::db::{cached_out, clear_hex, push_options, write_added, write_hex, write_pushed, DbHandle};
use super::error::hash_arg;
use super::handles::{
    bytes, c_str, handle_out, into_raw, null, opt_ref, read_into, take, try_mut, try_ref, Castable,
};
use super::panic::{boundary, status};
use super::{batchdb, batchdb_error, batchdb_push_options, batchdb_reader, batchdb_writer, BATCHDB_OK};
use crate::{Error, Reader, Writer};
use std::ffi::{c_char, c_void};
use std::io::{Read, Write};

/// What a `batchdb_writer *` points to.
pub(crate) struct WriterHandle {
    writer: Writer,
}

impl Castable for batchdb_writer {
    type Rust = WriterHandle;
}

impl Castable for batchdb_reader {
    type Rust = ReaderHandle;
}

/// What a `batchdb_reader *` points to.
pub(crate) struct ReaderHandle {
    reader: Reader,
}

/// Receives one chunk of a blob from `batchdb_get`. `data` holds `len` bytes and is valid only
/// during the call. Return 0 to continue; any other value stops the read, and `batchdb_get`
/// returns `BATCHDB_ERR_ABORTED`.
pub type batchdb_chunk_fn = Option<extern "C" fn(userdata: *mut c_void, data: *const u8, len: usize) -> i32>;

/// Starts a streaming payload write. On success `*out` receives a writer that the caller owns
/// and must finish with `batchdb_writer_create`, `batchdb_writer_add` or
/// `batchdb_writer_abort`. Only one chunk is buffered in memory, whatever the size written.
/// On failure `*out` is set to NULL.
///
/// Returns `BATCHDB_OK` or `BATCHDB_ERR_INVALID` (NULL `db` or `out`). Thread-safe; the writer
/// itself must be used by one thread at a time.
#[no_mangle]
pub extern "C" fn batchdb_writer_open(
    db: *mut batchdb,
    out: *mut *mut batchdb_writer,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let out = handle_out(out)?;
        let h: &DbHandle = try_ref(db, "db")?;
        *out = into_raw(WriterHandle { writer: h.db.writer() });
        Ok(BATCHDB_OK)
    })
}

/// Appends `len` bytes at `data` to the payload (copied; `data` may be NULL when `len` is 0).
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL `w`, NULL `data` with `len` > 0),
/// `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`. After an error the writer can only be finished with
/// an error or aborted.
#[no_mangle]
pub extern "C" fn batchdb_writer_write(
    w: *mut batchdb_writer,
    data: *const u8,
    len: usize,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_mut(w, "w")?;
        let data = bytes(data, len, "data")?;
        h.writer.write_all(data).map_err(Error::from)?;
        Ok(BATCHDB_OK)
    })
}

/// Finishes the payload and registers it as a job (event create); the key goes to `key_out`
/// (64 hex characters and a NUL; may be NULL).
///
/// Consumes `w`: it is freed whether or not this succeeds, and must not be used again.
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL `w`), `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`.
#[no_mangle]
pub extern "C" fn batchdb_writer_create(
    w: *mut batchdb_writer,
    key_out: *mut c_char,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = take(w).ok_or_else(|| null("w"))?;
        let key = h.writer.create()?;
        write_hex(key_out, &key);
        Ok(BATCHDB_OK)
    })
}

/// Finishes the payload, registers the job and queues an instance in one transaction (events
/// create, push). The key goes to `key_out` and the instance's `created` to `created_out`;
/// either may be NULL.
///
/// Consumes `w`: it is freed whether or not this succeeds. Returns `BATCHDB_OK`,
/// `BATCHDB_ERR_INVALID` (NULL `w`), `BATCHDB_ERR_IO`, `BATCHDB_ERR_BUSY`.
#[no_mangle]
pub extern "C" fn batchdb_writer_add(
    w: *mut batchdb_writer,
    key_out: *mut c_char,
    created_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = take(w).ok_or_else(|| null("w"))?;
        Ok(write_added(key_out, created_out, h.writer.add()?))
    })
}

/// Extension to the contract: `batchdb_writer_add` with push options (priority, delay, queue,
/// `unique`, `memo`, `after`), as `batchdb_add_with` is to `batchdb_add`, so that a streamed
/// payload can be added with push options in one transaction. `opts` may be NULL for the
/// defaults. `created_out` and `opts->cached_out` are written as by `batchdb_add_with` (a memo
/// hit: the newest result's `created` and output hash).
///
/// Consumes `w`: it is freed whether or not this succeeds (also when `opts` is invalid).
/// Returns the codes of `batchdb_add_with`.
#[no_mangle]
pub extern "C" fn batchdb_writer_add_with(
    w: *mut batchdb_writer,
    opts: *const batchdb_push_options,
    key_out: *mut c_char,
    created_out: *mut i64,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let cached = cached_out(opts);
        clear_hex(cached);
        let h = take(w).ok_or_else(|| null("w"))?;
        let opts = push_options(opt_ref(opts))?;
        let (key, pushed) = h.writer.add_with(&opts)?;
        write_pushed(created_out, cached, &pushed);
        write_hex(key_out, &key);
        Ok(BATCHDB_OK)
    })
}

/// Discards what was written and frees `w` (consumes it). NULL does nothing.
#[no_mangle]
pub extern "C" fn batchdb_writer_abort(w: *mut batchdb_writer) {
    boundary(
        |_| (),
        || {
            if let Some(h) = take(w) {
                h.writer.abort();
            }
        },
    )
}

/// Streams the blob `hash` (a job payload or a result) to `cb`, one stored chunk per call,
/// with `userdata` passed through. The content is verified against the hash before the last
/// chunk is delivered.
///
/// Returns `BATCHDB_OK` when every byte was delivered and verified; `BATCHDB_ERR_INVALID`
/// (NULL `db`/`hash`/`cb`, malformed hash); `BATCHDB_ERR_NOT_FOUND` (no such blob);
/// `BATCHDB_ERR_CORRUPT` (content does not match the hash); `BATCHDB_ERR_ABORTED` when `cb`
/// returned non-zero (no further calls are made); `BATCHDB_ERR_IO`. `cb` runs on the calling
/// thread. Thread-safe.
#[no_mangle]
pub extern "C" fn batchdb_get(
    db: *mut batchdb,
    hash: *const c_char,
    cb: batchdb_chunk_fn,
    userdata: *mut c_void,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_ref(db, "db")?;
        let hash = hash_arg(c_str(hash), "hash")?;
        let cb = cb.ok_or_else(|| null("cb"))?;
        let mut reader = h.db.get(&hash)?;
        let mut buf = vec![0u8; h.db.options().chunk_size];
        loop {
            let n = reader.read(&mut buf).map_err(Error::from)?;
            if n == 0 {
                return Ok(BATCHDB_OK);
            }
            let rc = cb(userdata, buf.as_ptr(), n);
            if rc != 0 {
                return Err(Error::aborted(format!("the chunk callback returned {rc}")));
            }
        }
    })
}

/// Opens the blob `hash` for reading with `batchdb_reader_read`. On success `*out` receives a
/// reader that the caller owns and must release with `batchdb_reader_close`; on failure it is
/// set to NULL.
///
/// Returns `BATCHDB_OK`, `BATCHDB_ERR_INVALID` (NULL, malformed hash), `BATCHDB_ERR_NOT_FOUND`,
/// `BATCHDB_ERR_IO`. Thread-safe; the reader itself must be used by one thread at a time.
#[no_mangle]
pub extern "C" fn batchdb_reader_open(
    db: *mut batchdb,
    hash: *const c_char,
    out: *mut *mut batchdb_reader,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let out = handle_out(out)?;
        let h = try_ref(db, "db")?;
        let hash = hash_arg(c_str(hash), "hash")?;
        *out = into_raw(ReaderHandle { reader: h.db.get(&hash)? });
        Ok(BATCHDB_OK)
    })
}

/// Reads up to `cap` bytes into `buf`; the count goes to `*n_out`. `*n_out == 0` means the end
/// of the blob, and then the whole content has been verified against its hash.
///
/// Returns `BATCHDB_OK`; `BATCHDB_ERR_INVALID` (NULL `r`/`buf`/`n_out`, `cap` 0);
/// `BATCHDB_ERR_CORRUPT` when the content does not match its hash (reported before the last
/// bytes are handed out, and again on every later call); `BATCHDB_ERR_IO`.
#[no_mangle]
pub extern "C" fn batchdb_reader_read(
    r: *mut batchdb_reader,
    buf: *mut u8,
    cap: usize,
    n_out: *mut usize,
    err: *mut batchdb_error,
) -> i32 {
    status(err, || {
        let h = try_mut(r, "r")?;
        read_into(&mut h.reader, buf, cap, n_out)
    })
}

/// Releases a reader (consumes it). NULL does nothing.
#[no_mangle]
pub extern "C" fn batchdb_reader_close(r: *mut batchdb_reader) {
    boundary(|_| (), || drop(take(r)))
}
