//! Filling `batchdb_error`, and the small conversions from C values that fail with
//! `BATCHDB_ERR_INVALID`.

use super::batchdb_error;
use super::handles::{error_mut, null};
use crate::{Error, Hash};
use std::ffi::{c_char, CStr, CString};

const MESSAGE_CAP: usize = 512;

/// The longest prefix of `msg` that fits in `cap - 1` bytes without splitting a character.
pub(crate) fn truncate_utf8(msg: &str, cap: usize) -> &str {
    let mut end = msg.len().min(cap.saturating_sub(1));
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    &msg[..end]
}

/// Fills `err` (when not NULL) with `code` and `msg`, always NUL-terminated, never splitting a
/// UTF-8 character. Interior NUL bytes end the C string early; that is all they can do.
pub(crate) fn fill(err: *mut batchdb_error, code: i32, msg: &str) {
    let Some(err) = error_mut(err) else { return };
    let text = truncate_utf8(msg, MESSAGE_CAP);
    err.code = code;
    for (dst, &src) in err.message.iter_mut().zip(text.as_bytes()) {
        *dst = src as c_char;
    }
    err.message[text.len()] = 0;
}

/// Parses a NUL-terminated hex hash from C.
pub(crate) fn hash_arg(s: Option<&CStr>, what: &str) -> Result<Hash, Error> {
    let s = s.ok_or_else(|| null(what))?;
    let s = s.to_str().map_err(|_| Error::invalid(format!("{what} is not UTF-8")))?;
    s.parse()
}

/// Parses a hex hash held in a fixed `char[65]` field (a `batchdb_instance`'s key): it must be
/// NUL-terminated within the field.
pub(crate) fn hash_field(field: &[c_char; 65], what: &str) -> Result<Hash, Error> {
    let len = field
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| Error::invalid(format!("{what} is not NUL-terminated within its 65 bytes")))?;
    let bytes: Vec<u8> = field[..len].iter().map(|&c| c as u8).collect();
    let s = std::str::from_utf8(&bytes).map_err(|_| Error::invalid(format!("{what} is not UTF-8")))?;
    s.parse().map_err(|e: Error| e.context(what))
}

/// A C copy of `s`; interior NUL bytes (which C cannot carry) are dropped.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.retain(|&b| b != 0);
        CString::new(bytes).unwrap_or_default()
    })
}

/// The 64 hex characters and the NUL of a `char[65]`.
pub(crate) fn hex65(h: &Hash) -> [c_char; 65] {
    let mut out = [0 as c_char; 65];
    for (dst, src) in out.iter_mut().zip(h.to_string().bytes()) {
        *dst = src as c_char;
    }
    out
}

/// 0 is false, 1 is true, anything else is invalid.
pub(crate) fn flag(v: i32, what: &str) -> Result<bool, Error> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::invalid(format!("{what} {v} is out of range (0 or 1)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        let s = "é".repeat(300); // 600 bytes
        let t = truncate_utf8(&s, MESSAGE_CAP);
        assert_eq!(t.len(), 510);
        let mut err = batchdb_error { code: 0, message: [1; 512] };
        fill(&mut err, -1, &s);
        assert_eq!(err.message[510], 0);
        let bytes: Vec<u8> = err.message[..510].iter().map(|&c| c as u8).collect();
        assert!(std::str::from_utf8(&bytes).is_ok());
    }

    #[test]
    fn short_messages_fit() {
        let mut err = batchdb_error { code: 0, message: [1; 512] };
        fill(&mut err, -2, "nope");
        assert_eq!(err.code, -2);
        assert_eq!(err.message[4], 0);
    }
}
