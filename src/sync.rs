//! Small helpers for threads that every layer uses: a poison-tolerant lock and the text of a
//! caught panic. They live apart so that no layer borrows them from a backend.

use std::any::Any;
use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking over the data when another thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our locks leaves the data consistent (every critical
    // section is a whole SQL statement or a Vec push), so poisoning is not fatal.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The message of a caught panic, for errors that report it.
pub(crate) fn panic_text(p: &Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}
