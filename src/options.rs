//! Options for opening a database, pushing an instance and running the queue.

use crate::error::{Error, Result};
use std::time::Duration;

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A returned add, push or result survives power loss (`synchronous=FULL`).
    #[default]
    Full,
    /// A returned write survives a crash of the process, and may be lost on power loss
    /// (`synchronous=NORMAL`). Several times faster.
    Normal,
}

/// Which pending instance a claim takes first, among those of the highest priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The most recently pushed first, as the original batchdb does.
    #[default]
    NewestFirst,
    /// The oldest first (FIFO).
    OldestFirst,
}

/// Options for [`Db::open`](crate::Db::open). `Options::default()` gives the defaults of the
/// contract.
///
/// ```
/// use std::time::Duration;
/// let opts = batchdb::Options {
///     lease: Duration::from_secs(5),
///     order: batchdb::Order::OldestFirst,
///     ..Default::default()
/// };
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Bytes per stored chunk; also the most a blob read or write buffers. Default 256 KiB,
    /// between 1 KiB and 16 MiB.
    pub chunk_size: usize,
    /// Default [`Durability::Full`].
    pub durability: Durability,
    /// How long a claim holds an instance before another worker may take it over. The
    /// library renews it while the job handle lives. Default 30 s, between 50 ms and 1 day.
    pub lease: Duration,
    /// How many times an instance may be started. Default 3, between 1 and 1000.
    pub max_attempts: u32,
    /// Re-queue an instance whose runner failed, with exponential backoff (1 s, 2 s, 4 s, …),
    /// while attempts remain. Default off: a runner error is final, as in the original.
    pub retry_errors: bool,
    /// Default [`Order::NewestFirst`].
    pub order: Order,
    /// Renew the leases of held jobs in the background. Only tests that simulate a hung
    /// worker turn this off.
    pub heartbeat: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_size: 256 * 1024,
            durability: Durability::Full,
            lease: Duration::from_secs(30),
            max_attempts: 3,
            retry_errors: false,
            order: Order::NewestFirst,
            heartbeat: true,
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(1024..=16 << 20).contains(&self.chunk_size) {
            return Err(Error::invalid(format!(
                "chunk size {} is out of range (1 KiB to 16 MiB)",
                self.chunk_size
            )));
        }
        if self.lease < Duration::from_millis(50) || self.lease > Duration::from_secs(86_400) {
            return Err(Error::invalid(format!("lease {:?} is out of range (50 ms to 1 day)", self.lease)));
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return Err(Error::invalid(format!(
                "max attempts {} is out of range (1 to 1000)",
                self.max_attempts
            )));
        }
        Ok(())
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

/// The queue of a push that names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Checks a queue or schedule name: 1 to 64 characters of `[A-Za-z0-9_.-]`. `what` names the
/// kind in the message ("queue", "schedule").
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        return Ok(());
    }
    let shown: String = name.chars().take(80).collect();
    Err(Error::invalid(format!(
        "{what} name {shown:?} is invalid: expected 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"
    )))
}

/// Options for one push: [`Db::push_with`](crate::Db::push_with) and
/// [`Db::add_with`](crate::Db::add_with). The defaults push as [`Db::push`](crate::Db::push)
/// does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushOptions {
    /// Higher runs first. Default 0.
    pub priority: i32,
    /// The instance is not claimed before `created + delay`. Default zero.
    pub delay: Duration,
    /// The queue to push into: 1 to 64 characters of `[A-Za-z0-9_.-]`. `None` (or
    /// `"default"`) is the queue named [`DEFAULT_QUEUE`].
    pub queue: Option<String>,
    /// When an instance of the same job is already pending, waiting or running in the queue,
    /// push nothing and return that instance's `created`.
    pub unique: bool,
    /// Memoized: when the job already has a result, push nothing and return it (its newest
    /// result's `created` and hash); otherwise as `unique`.
    pub memo: bool,
    /// Upstream instances `(key, created)`: the new instance waits, unclaimed, until each has
    /// a result, and becomes a fail row when one ends without (`upstream K C failed`). Each
    /// must exist (pending, running, or a result or fail row).
    pub after: Vec<(crate::Hash, i64)>,
}

impl PushOptions {
    /// Checks the options without pushing anything: a delay longer than a century, a
    /// malformed queue name or an upstream listed twice in `after` is [`Error::Invalid`]. [`Db::add_with`](crate::Db::add_with)
    /// checks them before it reads the payload; call this to refuse a push before anything
    /// else is done.
    pub fn validate(&self) -> Result<()> {
        if let Some(q) = &self.queue {
            check_name("queue", q)?;
        }
        // An instance waits for an upstream once: a repeated one would be a second edge.
        let mut seen = std::collections::HashSet::with_capacity(self.after.len());
        if let Some(up) = self.after.iter().find(|up| !seen.insert(*up)) {
            return Err(Error::invalid(format!("after lists the upstream {} {} twice", up.0, up.1)));
        }
        self.delay_ms().map(|_| ())
    }

    /// The queue's name, the default one when none was given.
    pub fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or(DEFAULT_QUEUE)
    }

    pub(crate) fn delay_ms(&self) -> Result<i64> {
        let ms = self.delay.as_millis();
        // A century is far beyond any real schedule, and keeps created + delay in range.
        if ms > 100 * 365 * 86_400_000 {
            return Err(Error::invalid(format!(
                "delay {:?} is out of range (at most 100 years, 36500d)",
                self.delay
            )));
        }
        Ok(ms as i64)
    }
}

/// Options for [`Db::run`](crate::Db::run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Worker threads. Default 1, at most 1024.
    pub workers: usize,
    /// Return once nothing is ready, running, delayed or waiting in the served queues
    /// (paused queues do not count), instead of waiting for new work.
    pub until_empty: bool,
    /// The queues to serve; empty (the default) serves every queue.
    pub queues: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { workers: 1, until_empty: false, queues: Vec::new() }
    }
}
