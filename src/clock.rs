//! Wall-clock milliseconds and cheap jitter.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

thread_local! {
    static SEED: Cell<u64> = Cell::new({
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let id = std::thread::current().id();
        let h = format!("{id:?}").bytes().fold(t, |a, b| a.rotate_left(5) ^ b as u64);
        h | 1
    });
}

/// A pseudo-random number in `0..=max`, to spread out retries. Not for anything secret.
pub(crate) fn jitter(max: u64) -> u64 {
    SEED.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        if max == 0 {
            0
        } else {
            x % (max + 1)
        }
    })
}
