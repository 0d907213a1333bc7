//! The panic boundary: every export runs its body through [`boundary`], so that no Rust
//! panic unwinds into C.

use super::error::fill;
use super::{batchdb_error, BATCHDB_ERR_PANIC};
use crate::Error;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn panic_message(p: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown payload".to_string()
    };
    format!("panic in batchdb: {text}")
}

/// Runs `body`; a panic becomes `on_panic(message)`. The one place where `catch_unwind` is
/// used at the C boundary.
pub(crate) fn boundary<T>(on_panic: impl FnOnce(String) -> T, body: impl FnOnce() -> T) -> T {
    // AssertUnwindSafe: after a panic nothing of the body's state is used again; the
    // handles it touched stay valid Rust values, at worst with a half-done operation that
    // the core already treats as failed.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(p) => on_panic(panic_message(p.as_ref())),
    }
}

/// The boundary for functions that return a status code: an error or a panic fills `err`
/// and returns its code.
pub(crate) fn status(err: *mut batchdb_error, body: impl FnOnce() -> Result<i32, Error>) -> i32 {
    boundary(
        |msg| {
            fill(err, BATCHDB_ERR_PANIC, &msg);
            BATCHDB_ERR_PANIC
        },
        || match body() {
            Ok(code) => code,
            Err(e) => {
                fill(err, e.code(), e.message());
                e.code()
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_err_panic_with_its_message() {
        let mut err = batchdb_error { code: 0, message: [0; 512] };
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let rc = status(&mut err, || panic!("boom {}", 42));
        std::panic::set_hook(hook);
        assert_eq!(rc, BATCHDB_ERR_PANIC);
        assert_eq!(err.code, BATCHDB_ERR_PANIC);
        let msg: Vec<u8> = err.message.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        assert_eq!(String::from_utf8(msg).unwrap(), "panic in batchdb: boom 42");
    }

    #[test]
    fn an_error_keeps_its_code() {
        let rc = status(std::ptr::null_mut(), || Err(Error::NotFound("x".into())));
        assert_eq!(rc, -2);
    }
}
