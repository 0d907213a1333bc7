//! The child process of one instance: starting it, streaming the payload to its stdin and its
//! stdout into the output blob, reading its stderr for progress reports and the fail
//! message's tail, waiting for it without reaping it early, and describing how it ended.
//! The worker loop that claims instances and decides their outcome is `run.rs`; this module
//! knows nothing of claims, signals or the run's state.
//!
//! The payload is streamed to the child's stdin by one thread, its stdout into the result blob
//! by the worker, its stderr read by a third thread, which reports `batchdb-progress: F
//! MESSAGE` lines as the job's progress (at most one report per [`PROGRESS_EVERY`], the latest
//! one kept) and keeps the tail of the other lines (for the fail message). The three share the
//! [`Job`] behind a mutex, each taking it for one read, write or report at a time.

use batchdb::Job;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The prefix of a progress line on a command's stderr.
const PROGRESS_PREFIX: &[u8] = b"batchdb-progress:";
/// A progress line is at most this long (the library takes messages of up to 1000 bytes);
/// a longer line is ordinary stderr.
const PROGRESS_LINE_MAX: usize = 1100;
/// The least time between two progress reports of one instance: each is a commit, which wakes
/// the idle workers of every process. A report that comes sooner is held, and the latest held
/// one is sent when the time is up.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How much of a failing command's stderr its fail message keeps: the last lines, at most
/// this many of them and of bytes.
const TAIL_LINES: usize = 10;
const TAIL_BYTES: usize = 2048;
/// Copy buffer for payloads and outputs.
const BUF: usize = 64 * 1024;

/// Whether `program` names an executable file, directly or through `$PATH`; checked before
/// anything is claimed, so that a typo costs no instance an attempt.
pub(crate) fn program_exists(program: &OsStr) -> bool {
    let executable =
        |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if program.as_bytes().contains(&b'/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(program))))
}

pub(crate) fn kill_group(pgid: u32, sig: i32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 0 {
            // SAFETY: kill(2) has no memory-safety preconditions; the group is our child's,
            // still unreaped (see `Runner::reap`), so its id cannot have been recycled.
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }
}

/// Blocks until the child `pid` has exited, without reaping it.
pub(crate) fn wait_exited(pid: u32) -> io::Result<()> {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: siginfo_t is plain old data for which all-zero bytes are valid; waitid only
        // writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, exclusively borrowed siginfo_t for the whole call.
        let r = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(crate) struct Pumped {
    pub fed: Result<(), String>,
    pub stored: Result<(), String>,
    pub tail: String,
}

/// The job, shared by the threads that feed its payload, store its output and report its
/// progress.
type Shared = Mutex<Job>;

fn lock_job(job: &Shared) -> MutexGuard<'_, Job> {
    job.lock().unwrap_or_else(|e| e.into_inner())
}

/// Streams the payload into the child, its stdout into the output blob, and reads its stderr
/// (progress reports and the tail), on three threads. `Err` only when a thread could not be
/// started (the child is then killed).
pub(crate) fn pump<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    pid: u32,
    job: &'scope Shared,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
) -> Result<Pumped, String> {
    let spawn_failed = |e: io::Error| {
        kill_group(pid, libc::SIGKILL);
        format!("cannot start a thread: {e}")
    };
    let feeder = std::thread::Builder::new()
        .name("batchdb-feed".into())
        .spawn_scoped(s, move || feed(job, stdin, pid))
        .map_err(spawn_failed)?;
    let tailer = std::thread::Builder::new()
        .name("batchdb-stderr".into())
        .spawn_scoped(s, move || stderr.map(|e| watch_stderr(e, job)).unwrap_or_default())
        .map_err(spawn_failed)?;
    let stored = match stdout {
        Some(out) => store(out, job),
        None => Err("no pipe for its standard output".to_string()),
    };
    if stored.is_err() {
        kill_group(pid, libc::SIGKILL);
    }
    let fed = feeder.join().unwrap_or_else(|_| Err("the payload thread panicked".to_string()));
    let tail = tailer.join().unwrap_or_default();
    Ok(Pumped { fed, stored, tail })
}

/// Copies the payload to the child's stdin, then closes it. A child that stops reading its
/// input is not an error (its exit status decides); a payload that cannot be read is, and
/// kills the child.
fn feed(job: &Shared, stdin: Option<ChildStdin>, pid: u32) -> Result<(), String> {
    let Some(mut stdin) = stdin else { return Ok(()) };
    let mut buf = vec![0u8; BUF];
    loop {
        let read = lock_job(job).read(&mut buf);
        let n = match read {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                kill_group(pid, libc::SIGKILL);
                return Err(batchdb::Error::from(e).to_string());
            }
        };
        if stdin.write_all(&buf[..n]).is_err() {
            return Ok(());
        }
    }
}

/// Copies the child's stdout into the output blob, a buffer at a time.
fn store(mut stdout: ChildStdout, job: &Shared) -> Result<(), String> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading its standard output: {e}")),
        };
        lock_job(job).write_all(&buf[..n]).map_err(|e| batchdb::Error::from(e).to_string())?;
    }
}

/// The last lines of a command's stderr: at most TAIL_LINES and TAIL_BYTES.
#[derive(Default)]
struct Tail {
    ring: VecDeque<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.ring.extend(bytes);
        if self.ring.len() > TAIL_BYTES {
            self.cut = true;
            self.ring.drain(..self.ring.len() - TAIL_BYTES);
        }
    }

    fn finish(self) -> String {
        let bytes: Vec<u8> = self.ring.into();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.trim_end().lines().collect();
        let skip = lines.len().saturating_sub(TAIL_LINES);
        let kept = lines[skip..].join("\n");
        if self.cut || skip > 0 {
            format!("…{kept}")
        } else {
            kept
        }
    }
}

/// Sends a job's progress reports, at most one per [`PROGRESS_EVERY`].
struct Reporter<'a> {
    job: &'a Shared,
    last: Option<Instant>,
    held: Option<(f64, String)>,
}

impl Reporter<'_> {
    fn report(&mut self, done: f64, message: String) {
        if self.last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            self.held = Some((done, message));
        } else {
            self.send(done, &message);
        }
    }

    /// How long a held report may still wait.
    fn wait(&self) -> Option<Duration> {
        self.held.as_ref()?;
        Some(self.last.map_or(Duration::ZERO, |t| PROGRESS_EVERY.saturating_sub(t.elapsed())))
    }

    fn flush(&mut self) {
        if let Some((done, message)) = self.held.take() {
            self.send(done, &message);
        }
    }

    fn send(&mut self, done: f64, message: &str) {
        self.last = Some(Instant::now());
        // Best effort: a worker that lost its lease (Stale) learns it when it finishes.
        let _ = lock_job(self.job).progress(done, message);
    }
}

/// Reads the child's stderr to its end: progress lines are reported, the other lines' tail
/// is returned (for the fail message).
fn watch_stderr(mut stderr: ChildStderr, job: &Shared) -> String {
    let fd = stderr.as_raw_fd();
    let mut tail = Tail::default();
    let mut reporter = Reporter { job, last: None, held: None };
    // The current line while it may still be a progress line; a longer one goes to the tail
    // as it comes (`overlong`) until its end.
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    let mut buf = [0u8; 8192];
    loop {
        if let Some(wait) = reporter.wait() {
            if !readable(fd, wait) {
                reporter.flush();
                continue;
            }
        }
        let n = match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
            let ends = piece.ends_with(b"\n");
            if overlong {
                tail.push(piece);
                overlong = !ends;
                continue;
            }
            line.extend_from_slice(piece);
            if ends {
                match parse_progress(&line) {
                    Some((done, message)) => reporter.report(done, message),
                    None => tail.push(&line),
                }
                line.clear();
            } else if line.len() > PROGRESS_LINE_MAX {
                tail.push(&line);
                line.clear();
                overlong = true;
            }
        }
    }
    // A last line without a newline is a line too.
    match parse_progress(&line) {
        Some((done, message)) => reporter.report(done, message),
        None => tail.push(&line),
    }
    reporter.flush();
    tail.finish()
}

/// Whether `fd` has data (or its end) to read within `wait`; true also when poll fails, so
/// that the caller reads and learns the error.
fn readable(fd: std::os::fd::RawFd, wait: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(wait.as_millis() + 1).unwrap_or(libc::c_int::MAX);
    // SAFETY: `p` is one valid, exclusively borrowed pollfd for the whole call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r != 0
}

/// A `batchdb-progress: F MESSAGE` line (F from 0 to 1, MESSAGE at most 1000 bytes of UTF-8,
/// possibly empty): the fraction and the message. Anything else is `None`, ordinary stderr.
fn parse_progress(line: &[u8]) -> Option<(f64, String)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = std::str::from_utf8(line.strip_prefix(PROGRESS_PREFIX)?).ok()?;
    let blank = |c: char| c == ' ' || c == '\t';
    if !rest.starts_with(blank) {
        return None;
    }
    let rest = rest.trim_start_matches(blank);
    let (number, message) = match rest.find(blank) {
        Some(i) => (&rest[..i], rest[i..].trim_matches(blank)),
        None => (rest, ""),
    };
    let done: f64 = number.parse().ok()?;
    if !(0.0..=1.0).contains(&done) || message.len() > 1000 {
        return None;
    }
    Some((done, message.to_string()))
}

/// The fail message of a command that did not exit 0.
pub(crate) fn describe_exit(name: &str, status: ExitStatus, tail: &str) -> String {
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("{name} exited with status {code}"),
        (None, Some(sig)) => format!("{name} was killed by signal {sig} ({})", signal_name(sig)),
        (None, None) => format!("{name} ended with {status}"),
    };
    if tail.is_empty() {
        how
    } else {
        format!("{how}; last lines of stderr:\n{tail}")
    }
}

pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}
