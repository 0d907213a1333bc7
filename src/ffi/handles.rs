//! Every cast between C pointers and Rust values, and so every raw dereference of the C ABI.
//!
//! Each opaque C type names the Rust value behind it through [`Castable`], implemented
//! beside the handle. Handles are boxed
//! with [`into_raw`], borrowed with [`try_ref`]/[`try_mut`] and taken back with [`take`]. The
//! other helpers read C strings and buffers and write out-parameters. Each function trusts
//! the caller's side of the header's contract (a non-NULL pointer is valid, aligned and
//! not used concurrently where the header says so), checks NULL itself, and says so in its
//! `SAFETY` comment.

use super::batchdb_error;
use crate::Error;
use std::ffi::{c_char, c_void, CStr};

/// An opaque C type and the Rust value a pointer to it really points to. Each handle's
/// module implements it beside the handle, so that this module needs none of them.
pub(crate) trait Castable {
    type Rust;
}

/// An `Error::Invalid` naming the NULL argument.
#[cold]
pub(crate) fn null(what: &str) -> Error {
    Error::invalid(format!("{what} is NULL"))
}

/// Boxes `value` and hands its ownership to C.
pub(crate) fn into_raw<C: Castable>(value: C::Rust) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// A C pointer to a Rust value that lives elsewhere (on a Rust stack frame), for handles that
/// C only borrows. Never passed to [`take`].
pub(crate) fn borrow_raw<C: Castable>(value: &mut C::Rust) -> *mut C {
    (value as *mut C::Rust).cast()
}

/// Shared access to the value behind a handle; NULL is `BATCHDB_ERR_INVALID`.
pub(crate) fn try_ref<'a, C: Castable>(ptr: *const C, what: &str) -> Result<&'a C::Rust, Error> {
    // SAFETY: a non-NULL handle came from `into_raw` or `borrow_raw` for this same C type and
    // was not consumed yet (the header's contract), so it points to a live `C::Rust`.
    unsafe { ptr.cast::<C::Rust>().as_ref() }.ok_or_else(|| null(what))
}

/// Exclusive access to the value behind a handle; NULL is `BATCHDB_ERR_INVALID`.
pub(crate) fn try_mut<'a, C: Castable>(ptr: *mut C, what: &str) -> Result<&'a mut C::Rust, Error> {
    // SAFETY: as in `try_ref`; the header also requires that writers, readers, cursors and
    // jobs are used by one thread at a time, so this reference is the only one.
    unsafe { ptr.cast::<C::Rust>().as_mut() }.ok_or_else(|| null(what))
}

/// Takes back ownership of a handle boxed by [`into_raw`]; None for NULL.
pub(crate) fn take<C: Castable>(ptr: *mut C) -> Option<Box<C::Rust>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL handles passed to consuming functions came from `into_raw` (borrowed
    // job handles are refused before this is called), and C promises not to use them again.
    Some(unsafe { Box::from_raw(ptr.cast::<C::Rust>()) })
}

/// A NUL-terminated C string, or None for NULL.
pub(crate) fn c_str<'a>(ptr: *const c_char) -> Option<&'a CStr> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-NULL string argument is NUL-terminated and outlives the call (header).
    Some(unsafe { CStr::from_ptr(ptr) })
}

/// `len` bytes at `data`. NULL is fine when `len` is 0; otherwise it is invalid.
pub(crate) fn bytes<'a>(data: *const u8, len: usize, what: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(null(what));
    }
    // SAFETY: the caller passes `len` readable bytes at `data` for the duration of the call.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// `len` pointers at `ptrs` (an array of C strings, say). NULL with `len` > 0 is invalid.
pub(crate) fn ptr_slice<'a, T>(
    ptrs: *const *const T,
    len: usize,
    what: &str,
) -> Result<&'a [*const T], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptrs.is_null() {
        return Err(null(what));
    }
    // SAFETY: the caller passes `len` readable pointers at `ptrs` for the duration of the call.
    Ok(unsafe { std::slice::from_raw_parts(ptrs, len) })
}

/// `len` C structs at `items` (push options' upstream instances, say). NULL with `len` > 0 is
/// invalid.
pub(crate) fn struct_slice<'a, T>(items: *const T, len: usize, what: &str) -> Result<&'a [T], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if items.is_null() {
        return Err(Error::invalid(format!("{what} is NULL but its length is {len}")));
    }
    // SAFETY: the caller passes `len` initialized, readable `T`s at `items` for the duration of
    // the call (header).
    Ok(unsafe { std::slice::from_raw_parts(items, len) })
}

/// A writable buffer of `cap` bytes; NULL or a zero capacity is invalid.
pub(crate) fn bytes_mut<'a>(buf: *mut u8, cap: usize, what: &str) -> Result<&'a mut [u8], Error> {
    if buf.is_null() {
        return Err(null(what));
    }
    if cap == 0 {
        return Err(Error::invalid(format!("{what} has capacity 0")));
    }
    // SAFETY: the caller passes `cap` writable bytes at `buf`, not aliased during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf, cap) })
}

/// A required out-parameter; NULL is invalid.
pub(crate) fn out<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: a non-NULL out-parameter points to writable memory for a `T` (header).
    unsafe { ptr.as_mut() }.ok_or_else(|| null(what))
}

/// A required out-parameter for a new handle, set to NULL at once so that the caller never
/// sees a stale pointer when the call fails.
pub(crate) fn handle_out<'a, T>(ptr: *mut *mut T) -> Result<&'a mut *mut T, Error> {
    let out = out(ptr, "out")?;
    *out = std::ptr::null_mut();
    Ok(out)
}

/// Writes `value` to an optional out-parameter; NULL means the caller does not want it.
pub(crate) fn write_opt<T>(ptr: *mut T, value: T) {
    // SAFETY: as in `out`.
    if let Some(o) = unsafe { ptr.as_mut() } {
        *o = value;
    }
}

/// An optional input struct (options): None for NULL, meaning the defaults.
pub(crate) fn opt_ref<'a, T>(ptr: *const T) -> Option<&'a T> {
    // SAFETY: a non-NULL options pointer points to an initialized `T` for the call (header).
    unsafe { ptr.as_ref() }
}

/// The caller's error object, when it passed one.
pub(crate) fn error_mut<'a>(ptr: *mut batchdb_error) -> Option<&'a mut batchdb_error> {
    // SAFETY: a non-NULL `err` points to a writable `batchdb_error` owned by the caller.
    unsafe { ptr.as_mut() }
}

/// An optional out-array of `len` elements, such as a `char key_out[65]`: None for NULL.
pub(crate) fn opt_array<'a, T>(ptr: *mut T, len: usize) -> Option<&'a mut [T]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-NULL out-array has room for `len` elements (the header gives the size).
    Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// The job behind a borrowed job handle.
pub(crate) fn borrowed<'a, T>(ptr: std::ptr::NonNull<T>) -> &'a mut T {
    // SAFETY: borrowed job handles are made by `batchdb_run` from the `&mut Job` its worker
    // lends to the runner, and live on that worker's stack only for the runner's call, so the
    // job outlives every use; the handle's `&mut` access makes this the only reference.
    unsafe { &mut *ptr.as_ptr() }
}

/// The caller's `userdata`, handed to callbacks (runners, event subscribers) on other threads.
pub(crate) struct UserData(pub *mut c_void);

// SAFETY: the header makes the caller responsible for `userdata` being usable from any
// thread; the library only passes the pointer along and never dereferences it.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

impl UserData {
    /// A method, not a field access, so that closures capture the whole `Sync` wrapper.
    pub fn get(&self) -> *mut c_void {
        self.0
    }
}

/// Reads up to `cap` bytes from `source` into the caller's `buf`, the count into `*n_out`
/// (set to 0 first, so that it is defined on every error).
pub(crate) fn read_into(
    source: &mut impl std::io::Read,
    buf: *mut u8,
    cap: usize,
    n_out: *mut usize,
) -> Result<i32, Error> {
    let n_out = out(n_out, "n_out")?;
    *n_out = 0;
    let buf = bytes_mut(buf, cap, "buf")?;
    *n_out = source.read(buf).map_err(Error::from)?;
    Ok(super::BATCHDB_OK)
}
