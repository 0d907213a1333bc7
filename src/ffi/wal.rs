//! A SQLite VFS that writes a transaction's write-ahead-log frames in one system call.
//!
//! SQLite appends each page of a commit to the `-wal` file as two `pwrite` calls, a 24-byte
//! frame header and the page. An add writes about six pages and a claim + complete about
//! ten, so at durability normal (no fsync per commit) those calls were most of the kernel's
//! share of an operation (measured: 33 µs of 63 µs an add, 58 µs of 113 µs a cycle). This
//! VFS wraps the platform's default one and changes one thing: the frames of the `-wal` are
//! gathered in memory while they arrive in order and written with one `pwrite` when the
//! commit frame (the one whose header carries the database size) is complete. Everything
//! else, and every other file, goes straight to the default VFS.
//!
//! What keeps the log the same as SQLite's own:
//! - Only the shape SQLite writes frames in is gathered: a 24-byte header, then a page, at
//!   the next offset. Any other write (the log header, a frame rewritten in place, a write
//!   out of order) writes out what is gathered first, then itself, so writes reach the file
//!   in SQLite's order.
//! - Anything that looks at the file (read, size, truncate, sync, file control, close)
//!   writes out what is gathered first. So does the main file's shared-memory barrier,
//!   which SQLite crosses before it publishes a commit to other connections: a commit is in
//!   the file before anyone can see it, whichever way it was detected.
//! - Frames gathered and not committed when the connection gives up the log's write lock
//!   are from a transaction that rolled back: they are dropped, never written later over
//!   frames another connection committed meanwhile.
//! - A frame header written below the transaction's highest write is SQLite rewriting
//!   checksums in place: it goes through.
//!
//! The log file finds its connection's main file by `sqlite3_filename_database`, which maps
//! the name SQLite passed to the log's `xOpen` back to the main file's. A log whose main
//! file is not found is not gathered (every write goes straight through).
//!
//! Unsafe code: SQLite calls these functions with the file objects it allocated
//! (`szOsFile` bytes, of which the first part is ours and the rest the default VFS's) and
//! serializes calls on one connection's files; each `unsafe` block says what it relies on.

use rusqlite::ffi;
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Mutex, OnceLock};

/// The VFS's registered name.
const NAME: &CStr = c"batchdb-wal";
/// SQLite's frame header, before each page in the log.
const FRAME_HEADER: usize = 24;
/// Gathered bytes are written out at this size even before a commit (a large transaction).
const FLUSH_AT: usize = 1 << 16;
/// The most one write call passes to the default VFS: SQLite's unix VFS writes at most
/// 128 KiB - 1 bytes a call (it masks the length with 0x1ffff, so a larger write comes out
/// short and reads as a full disk).
const MAX_WRITE: usize = 1 << 16;
/// The log's write lock, slot 0 of the shared-memory locks (`WAL_WRITE_LOCK` in `wal.c`).
const WAL_WRITE_LOCK: c_int = 0;

/// A main database file: the default VFS's file, and the log of the same connection.
#[repr(C)]
struct MainFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// The name SQLite opened it by, its key in [`MAINS`].
    name: usize,
    log: *mut LogFile,
}

/// A `-wal` file and the frames gathered for it.
#[repr(C)]
struct LogFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    main: *mut MainFile,
    gathered: Vec<u8>,
    /// The file offset of `gathered[0]`.
    at: i64,
    /// The last gathered write was a frame header: its page comes next.
    page_next: bool,
    /// That header was a commit frame's.
    commit: bool,
    /// The end of the highest write of this transaction: a write below it rewrites a frame
    /// in place (SQLite fixing its checksums), which goes through.
    high: i64,
}

/// Open main files by the address of the name SQLite passed to `xOpen` (unique while open:
/// each connection's pager owns its copy), so that a log's `xOpen` finds its main file.
static MAINS: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

/// The bytes of the file object before the default VFS's part.
fn ours() -> usize {
    std::mem::size_of::<MainFile>().max(std::mem::size_of::<LogFile>()).next_multiple_of(16)
}

/// The VFS's name for `open_with_flags_and_vfs`, registering it on first use; `None` when
/// SQLite has no default VFS to wrap (connections then use the default, unchanged).
pub(crate) fn vfs_name() -> Option<&'static str> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // rusqlite configures SQLite's threading before the first connection and panics if
        // SQLite was initialized before it; one connection first lets it.
        drop(rusqlite::Connection::open_in_memory());
        register()
    });
    // `NAME` is ASCII.
    ok.then(|| NAME.to_str().unwrap_or_default())
}

fn register() -> bool {
    // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, a static object SQLite keeps
    // for the process, or NULL.
    let default = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if default.is_null() {
        return false;
    }
    // SAFETY: `default` is a valid `sqlite3_vfs`; copying it copies plain fields and
    // function pointers, which stay valid for the process.
    let mut vfs: ffi::sqlite3_vfs = unsafe { ptr::read(default) };
    // SAFETY: as above, `default` is valid.
    let size = unsafe { (*default).szOsFile } as usize + ours();
    vfs.szOsFile = size as c_int;
    vfs.zName = NAME.as_ptr();
    vfs.pNext = ptr::null_mut();
    // The default VFS's methods that take a `sqlite3_vfs *` read `pAppData` (its file
    // finder) and `mxPathname` from it, which the copy keeps; `xOpen` alone is ours, and
    // calls the default's with the default's own object (kept in `DEFAULT`).
    vfs.xOpen = Some(x_open);
    DEFAULT.set(default as usize).ok();
    let vfs = Box::leak(Box::new(vfs));
    // SAFETY: `vfs` lives for the process (leaked) as SQLite requires of a registered VFS.
    unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
}

/// The default VFS, as an address (set once, before registration).
static DEFAULT: OnceLock<usize> = OnceLock::new();

/// Runs a callback's body; a panic (none is expected) becomes an I/O error for SQLite
/// instead of unwinding into C.
fn guard(body: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(ffi::SQLITE_IOERR)
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(|| {
        let Some(&default) = DEFAULT.get() else { return ffi::SQLITE_ERROR };
        let default = default as *mut ffi::sqlite3_vfs;
        let main = flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null();
        let log = flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null();
        // SAFETY: `file` has `szOsFile` bytes, of which the default's part starts at
        // `ours()`; SQLite aligns it to 8, and `ours()` is a multiple of 16.
        let inner = unsafe { file.cast::<u8>().add(ours()).cast::<ffi::sqlite3_file>() };
        if !main && !log {
            // Journals, temporary files: the default's file object, at the start.
            // SAFETY: `default` is the default VFS; `file` is as SQLite gave it to us.
            return unsafe { ((*default).xOpen.expect("xOpen"))(default, name, file, flags, out_flags) };
        }
        // SAFETY: as above, with the default's part of the object.
        let rc = unsafe { ((*default).xOpen.expect("xOpen"))(default, name, inner, flags, out_flags) };
        if rc != ffi::SQLITE_OK {
            // SQLite calls no method of a file whose open failed and whose pMethods is NULL.
            // SAFETY: `file` is writable for `szOsFile` bytes.
            unsafe { (*file).pMethods = ptr::null() };
            return rc;
        }
        // SAFETY: the default's open succeeded, so its pMethods is set.
        let version = unsafe { (*(*inner).pMethods).iVersion };
        if main {
            // SAFETY: `file` is ours to initialize; `MainFile` fits in `ours()` bytes.
            unsafe {
                ptr::write(
                    file.cast::<MainFile>(),
                    MainFile {
                        base: ffi::sqlite3_file { pMethods: main_methods(version) },
                        inner,
                        name: name as usize,
                        log: ptr::null_mut(),
                    },
                )
            };
            mains(|m| m.insert(name as usize, file as usize));
        } else {
            // SAFETY: `name` is a log name SQLite passed to xOpen, which this maps back to
            // its database's name (the pointer the main file was opened with).
            let db_name = unsafe { ffi::sqlite3_filename_database(name) } as usize;
            let main = mains(|m| m.get(&db_name).copied()).unwrap_or(0) as *mut MainFile;
            // SAFETY: `file` is ours to initialize; `LogFile` fits in `ours()` bytes.
            unsafe {
                ptr::write(
                    file.cast::<LogFile>(),
                    LogFile {
                        base: ffi::sqlite3_file { pMethods: &LOG_METHODS },
                        inner,
                        main,
                        gathered: Vec::new(),
                        at: 0,
                        page_next: false,
                        commit: false,
                        high: 0,
                    },
                )
            };
            if !main.is_null() {
                // SAFETY: a main file in `MAINS` is open (removed at its close), and its
                // connection is the one opening this log, so nothing else touches it now.
                unsafe { (*main).log = file.cast() };
            }
        }
        ffi::SQLITE_OK
    })
}

fn mains<T>(f: impl FnOnce(&mut HashMap<usize, usize>) -> T) -> T {
    let mut guard = MAINS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// The inner file and its methods.
///
/// # Safety
/// `file` is one of ours (a `MainFile` or a `LogFile`, both with `inner` second), open.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the contract, `file` starts with `base` then `inner`; the inner file is
    // open, so its methods are set and static in the default VFS.
    unsafe {
        let inner = (*file.cast::<LogFile>()).inner;
        (inner, &*(*inner).pMethods)
    }
}

impl LogFile {
    /// Writes out what is gathered. Called before anything that must see the file as SQLite
    /// wrote it.
    fn flush(&mut self) -> c_int {
        if self.gathered.is_empty() {
            return ffi::SQLITE_OK;
        }
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.at;
        for piece in self.gathered.chunks(MAX_WRITE) {
            // SAFETY: `inner` is this log's open default file; the buffer is ours for the call.
            rc = unsafe {
                let m = &*(*self.inner).pMethods;
                (m.xWrite.expect("xWrite"))(self.inner, piece.as_ptr().cast(), piece.len() as c_int, at)
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += piece.len() as i64;
        }
        self.forget();
        rc
    }

    fn forget(&mut self) {
        self.gathered.clear();
        self.page_next = false;
        self.commit = false;
    }

    /// The connection gave up the write lock: what is still gathered is a rolled-back
    /// transaction's, and the next transaction starts afresh.
    fn end_transaction(&mut self) {
        self.forget();
        self.high = 0;
    }

    /// Gathers the write if it is the next part of a frame; `None` when it must go through.
    fn gather(&mut self, bytes: &[u8], offset: i64) -> Option<c_int> {
        let next = self.gathered.is_empty() || offset == self.at + self.gathered.len() as i64;
        let header = bytes.len() == FRAME_HEADER && !self.page_next;
        let page = self.page_next && bytes.len() > FRAME_HEADER;
        if self.main.is_null() || !next || !(header || page) || offset < self.high {
            return None;
        }
        self.high = offset + bytes.len() as i64;
        if self.gathered.is_empty() {
            self.at = offset;
        }
        self.gathered.extend_from_slice(bytes);
        if header {
            self.page_next = true;
            // Bytes 4-7 of a frame header: the database's size in pages after a commit,
            // zero in every other frame (the file format's definition).
            self.commit = bytes[4..8] != [0, 0, 0, 0];
            return Some(ffi::SQLITE_OK);
        }
        self.page_next = false;
        if self.commit || self.gathered.len() >= FLUSH_AT {
            return Some(self.flush());
        }
        Some(ffi::SQLITE_OK)
    }
}

/// The log file behind `file`.
///
/// # Safety
/// `file` is a `LogFile` opened by [`x_open`] and not closed; SQLite serializes the calls on
/// it, so the reference is the only one while the callback runs.
unsafe fn log<'a>(file: *mut ffi::sqlite3_file) -> &'a mut LogFile {
    // SAFETY: per the contract.
    unsafe { &mut *file.cast::<LogFile>() }
}

unsafe extern "C" fn log_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    n: c_int,
    offset: i64,
) -> c_int {
    guard(|| {
        // SAFETY: SQLite passes `n` readable bytes at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), n.max(0) as usize) };
        // SAFETY: SQLite calls this method only on files opened with `LOG_METHODS`.
        let log = unsafe { log(file) };
        if let Some(rc) = log.gather(bytes, offset) {
            return rc;
        }
        let rc = log.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        // The log's header, written first after a restart, starts the file afresh.
        log.high = if offset == 0 { n as i64 } else { log.high.max(offset + n as i64) };
        // SAFETY: `file` is an open log; the arguments are SQLite's, passed on.
        unsafe {
            let (inner, m) = inner(file);
            (m.xWrite.expect("xWrite"))(inner, data, n, offset)
        }
    })
}

/// Defines a log method that writes out what is gathered, then calls the default's.
macro_rules! flushing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            guard(|| {
                // SAFETY: SQLite calls this method only on files opened with `LOG_METHODS`.
                let rc = unsafe { log(file) }.flush();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                // SAFETY: `file` is an open log; the arguments are SQLite's, passed on.
                unsafe {
                    let (inner, m) = inner(file);
                    (m.$method.expect(stringify!($method)))(inner, $($arg),*)
                }
            })
        }
    };
}
flushing!(log_read, xRead, (data: *mut c_void, n: c_int, offset: i64));
flushing!(log_truncate, xTruncate, (size: i64));
flushing!(log_sync, xSync, (flags: c_int));
flushing!(log_file_size, xFileSize, (size: *mut i64));
flushing!(log_file_control, xFileControl, (op: c_int, arg: *mut c_void));

/// Defines a method that calls the default's unchanged (for both kinds of file).
macro_rules! passing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            // SAFETY: `file` is one of ours, open; the arguments are SQLite's, passed on.
            let (inner, m) = unsafe { inner(file) };
            match m.$method {
                // SAFETY: as above.
                Some(f) => unsafe { f(inner, $($arg),*) },
                None => $missing,
            }
        }
    };
}
passing!(pass_lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_check_reserved, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_file_control, xFileControl, (op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
passing!(pass_sector_size, xSectorSize, () -> c_int, 4096);
passing!(pass_device, xDeviceCharacteristics, () -> c_int, 0);
passing!(pass_read, xRead, (data: *mut c_void, n: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_write, xWrite, (data: *const c_void, n: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_truncate, xTruncate, (size: i64) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_sync, xSync, (flags: c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_file_size, xFileSize, (size: *mut i64) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_shm_map, xShmMap, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int,
    ffi::SQLITE_IOERR);
passing!(pass_shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_fetch, xFetch, (offset: i64, n: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR);
passing!(pass_unfetch, xUnfetch, (offset: i64, p: *mut c_void) -> c_int, ffi::SQLITE_IOERR);

unsafe extern "C" fn log_close(file: *mut ffi::sqlite3_file) -> c_int {
    guard(|| {
        // SAFETY: SQLite calls this method only on files opened with `LOG_METHODS`, once.
        let log = unsafe { log(file) };
        let flushed = log.flush();
        if !log.main.is_null() {
            // SAFETY: SQLite closes a connection's log before its main file.
            unsafe { (*log.main).log = ptr::null_mut() };
        }
        // SAFETY: `file` is an open log; after this it is not used again.
        let closed = unsafe {
            let (inner, m) = inner(file);
            let rc = (m.xClose.expect("xClose"))(inner);
            ptr::drop_in_place(file.cast::<LogFile>());
            rc
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    })
}

/// The main file behind `file`.
///
/// # Safety
/// `file` is a `MainFile` opened by [`x_open`] and not closed; SQLite serializes the calls
/// on one connection's files.
unsafe fn main_file<'a>(file: *mut ffi::sqlite3_file) -> &'a mut MainFile {
    // SAFETY: per the contract.
    unsafe { &mut *file.cast::<MainFile>() }
}

unsafe extern "C" fn main_close(file: *mut ffi::sqlite3_file) -> c_int {
    guard(|| {
        // SAFETY: SQLite calls this method only on main files we opened, once.
        let name = unsafe { main_file(file) }.name;
        mains(|m| m.remove(&name));
        // SAFETY: `file` is an open main file; after this it is not used again.
        unsafe {
            let (inner, m) = inner(file);
            let rc = (m.xClose.expect("xClose"))(inner);
            ptr::drop_in_place(file.cast::<MainFile>());
            rc
        }
    })
}

/// The log of the main file `file`, if it is open and gathered.
///
/// # Safety
/// As for [`main_file`]; the log is the same connection's, so not in use elsewhere.
unsafe fn log_of<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a mut LogFile> {
    // SAFETY: per the contract; `log` is cleared when the log closes.
    unsafe { main_file(file).log.as_mut() }
}

unsafe extern "C" fn main_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    guard(|| {
        let releases_write = flags == ffi::SQLITE_SHM_UNLOCK | ffi::SQLITE_SHM_EXCLUSIVE
            && offset <= WAL_WRITE_LOCK
            && WAL_WRITE_LOCK < offset + n;
        if releases_write {
            // Frames still gathered when the write lock goes are a rolled-back
            // transaction's: the next writer may put its commit where they would land.
            // SAFETY: SQLite calls this method only on main files we opened.
            if let Some(log) = unsafe { log_of(file) } {
                log.end_transaction();
            }
        }
        // SAFETY: `file` is an open main file; the arguments are SQLite's, passed on.
        unsafe {
            let (inner, m) = inner(file);
            match m.xShmLock {
                Some(f) => f(inner, offset, n, flags),
                None => ffi::SQLITE_IOERR,
            }
        }
    })
}

unsafe extern "C" fn main_shm_barrier(file: *mut ffi::sqlite3_file) {
    // A commit is published to other connections after this barrier: its frames are in the
    // file by then even if the commit frame were not recognized.
    // SAFETY: SQLite calls this method only on main files we opened.
    if let Some(log) = unsafe { log_of(file) } {
        // An error here has no caller to go to; the commit frame's write, which normally
        // writes the frames, reported any error already.
        let _ = catch_unwind(AssertUnwindSafe(|| log.flush()));
    }
    // SAFETY: `file` is an open main file.
    unsafe {
        let (inner, m) = inner(file);
        if let Some(f) = m.xShmBarrier {
            f(inner);
        }
    }
}

static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(log_close),
    xRead: Some(log_read),
    xWrite: Some(log_write),
    xTruncate: Some(log_truncate),
    xSync: Some(log_sync),
    xFileSize: Some(log_file_size),
    xLock: Some(pass_lock),
    xUnlock: Some(pass_unlock),
    xCheckReservedLock: Some(pass_check_reserved),
    xFileControl: Some(log_file_control),
    xSectorSize: Some(pass_sector_size),
    xDeviceCharacteristics: Some(pass_device),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The main file's methods, of the default's version: shared memory (version 2) and
/// memory-mapped reads (version 3) only where the default has them.
fn main_methods(version: c_int) -> &'static ffi::sqlite3_io_methods {
    static BY_VERSION: OnceLock<[ffi::sqlite3_io_methods; 4]> = OnceLock::new();
    let all = BY_VERSION.get_or_init(|| {
        [0, 1, 2, 3].map(|v| ffi::sqlite3_io_methods {
            iVersion: v.max(1),
            xClose: Some(main_close),
            xRead: Some(pass_read),
            xWrite: Some(pass_write),
            xTruncate: Some(pass_truncate),
            xSync: Some(pass_sync),
            xFileSize: Some(pass_file_size),
            xLock: Some(pass_lock),
            xUnlock: Some(pass_unlock),
            xCheckReservedLock: Some(pass_check_reserved),
            xFileControl: Some(pass_file_control),
            xSectorSize: Some(pass_sector_size),
            xDeviceCharacteristics: Some(pass_device),
            xShmMap: (v >= 2).then_some(pass_shm_map as _),
            xShmLock: (v >= 2).then_some(main_shm_lock as _),
            xShmBarrier: (v >= 2).then_some(main_shm_barrier as _),
            xShmUnmap: (v >= 2).then_some(pass_shm_unmap as _),
            xFetch: (v >= 3).then_some(pass_fetch as _),
            xUnfetch: (v >= 3).then_some(pass_unfetch as _),
        })
    });
    &all[version.clamp(1, 3) as usize]
}

#[cfg(test)]
mod tests {
    use super::vfs_name;
    use rusqlite::{Connection, OpenFlags};
    use std::path::Path;

    fn open(path: &Path, ours: bool) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let c = if ours {
            Connection::open_with_flags_and_vfs(path, flags, vfs_name().expect("the VFS registers")).unwrap()
        } else {
            Connection::open_with_flags(path, flags).unwrap()
        };
        c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL").unwrap();
        c
    }

    /// Each commit through the VFS is in the log when the commit returns: another
    /// connection, on the default VFS, reads every row at once, and after a close the file
    /// holds them all.
    #[test]
    fn a_commit_is_in_the_log_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let ours = open(&path, true);
        ours.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, v BLOB)").unwrap();
        let other = open(&path, false);
        for n in 1..=300i64 {
            ours.execute("INSERT INTO t VALUES (?1, randomblob(?1 * 10))", [n]).unwrap();
            let (count, bytes): (i64, i64) = other
                .query_row("SELECT count(*), sum(length(v)) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            assert_eq!((count, bytes), (n, 5 * n * (n + 1)), "after commit {n}");
        }
        drop(ours);
        drop(other);
        let c = open(&path, false);
        assert_eq!(c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).unwrap(), "ok");
        assert_eq!(c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap(), 300);
    }

    /// A transaction that spills frames to the log and rolls back leaves nothing gathered to
    /// be written later: another connection's commit at the same place in the log stays
    /// intact after the first connection reads and closes.
    #[test]
    fn a_rolled_back_transaction_never_lands_over_a_later_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let ours = open(&path, true);
        ours.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, v BLOB); PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        // A page cache of 10 pages: the transaction below spills its pages to the log.
        ours.execute_batch("PRAGMA cache_size = 10").unwrap();
        ours.execute_batch(
            "BEGIN; WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) \
             INSERT INTO t SELECT n, zeroblob(3000) FROM s",
        )
        .unwrap();
        ours.execute_batch("ROLLBACK").unwrap();
        let other = open(&path, false);
        other
            .execute_batch(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) \
                 INSERT INTO t SELECT n, randomblob(3000) FROM s",
            )
            .unwrap();
        let sum = |c: &Connection| -> (i64, i64) {
            c.query_row(
                "SELECT count(*), sum(length(v) - length(replace(hex(v), '00', ''))) FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        let expected = sum(&other);
        assert_eq!(expected.0, 100);
        // Reads through the first connection, then closes it: anything still gathered
        // would be written now.
        assert_eq!(sum(&ours), expected);
        drop(ours);
        assert_eq!(sum(&other), expected);
        drop(other);
        let c = open(&path, false);
        assert_eq!(c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).unwrap(), "ok");
        assert_eq!(sum(&c), expected);
    }
}
