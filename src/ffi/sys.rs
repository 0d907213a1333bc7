//! Operating-system calls the core needs and std does not offer. They sit here because
//! unsafe code lives only under `src/ffi`; they are not part of the C ABI.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether this process may write the file `path`, by its effective ids, ACLs and mount
/// flags, asked without opening the file: closing any descriptor of a file drops every POSIX
/// lock this process holds on it, SQLite's locks of other open handles included.
pub(crate) fn may_write(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call, which only reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}
