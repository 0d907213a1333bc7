//! `batchdb run -- CMD [ARGS...]`: the queue run with a child process per instance.
//!
//! The loop is driven here with [`Db::claim`] on our own worker threads rather than with
//! [`Db::run`], because an interrupted instance must go back to pending, and inside `Db::run`
//! every runner error is a fail row. The rules:
//!
//! * Each instance's CMD runs in its own process group, the payload streamed to its stdin by
//!   one thread, its stdout streamed into the result blob by the worker, its stderr read by a
//!   third thread, which reports `batchdb-progress: F MESSAGE` lines as the job's progress
//!   (at most one report per [`PROGRESS_EVERY`], the latest one kept) and keeps the tail of
//!   the other lines (for the fail message). The three share the [`Job`] behind a mutex,
//!   each taking it for one read, write or report at a time.
//! * Exit status 0 completes the instance; anything else fails it with the status (or signal)
//!   and the last lines of stderr.
//! * SIGINT, SIGTERM or SIGHUP stop the run: nothing new is claimed, every running child's
//!   process group gets SIGTERM (SIGKILL after [`GRACE`] or at a second signal). An instance
//!   whose child then ends unsuccessfully is released, not failed: the [`Job`] is dropped, which
//!   puts it back to pending while attempts remain (the interrupted start counts as an attempt;
//!   after the last one it is a fail row). A child that still exits 0 completes its instance.
//!   The run exits with 128 + the signal's number.
//! * A child is reaped only after it is taken out of the signal list (`waitid` with
//!   `WNOWAIT` first), so a signal never goes to a recycled process id.
//! * `--queue` (repeatable) narrows the claims and the waits to those queues. An idle worker
//!   sleeps in [`Db::wait_for_work_from`] for the same queues, which wakes for this process's
//!   pushes and finishes, other processes' commits, due delays, lease ends and schedule slots,
//!   and does not count a paused or full queue's ready instances as work, so that it never
//!   spins on them. `--until-empty` ends once nothing is ready, running, delayed or waiting in
//!   a served queue that is not paused.

use crate::cli::{Cli, OrderArg, RunArgs};
use crate::progress::{Counts, Progress};
use crate::{open, Access, CliError, CliResult};
use batchdb::{Db, Event, Job, Options, Order};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest an idle worker sleeps in `Db::wait_for_work_from` before it looks again. The
/// library wakes it sooner for pushes, finishes, due delays and schedule slots, other
/// processes' commits and `Db::stop` (which signals and fatal errors call), so this is only a
/// safety net.
const POLL: Duration = Duration::from_secs(1);
/// The prefix of a progress line on a command's stderr.
const PROGRESS_PREFIX: &[u8] = b"batchdb-progress:";
/// A progress line is at most this long (the library takes messages of up to 1000 bytes);
/// a longer line is ordinary stderr.
const PROGRESS_LINE_MAX: usize = 1100;
/// The least time between two progress reports of one instance: each is a commit, which wakes
/// the idle workers of every process. A report that comes sooner is held, and the latest held
/// one is sent when the time is up.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How long interrupted children get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);
/// How much of a failing command's stderr its fail message keeps: the last lines, at most
/// this many of them and of bytes.
const TAIL_LINES: usize = 10;
const TAIL_BYTES: usize = 2048;
/// Copy buffer for payloads and outputs.
const BUF: usize = 64 * 1024;

pub fn run(cli: &Cli, args: &RunArgs) -> CliResult<i32> {
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(CliError::Msg(
            "run needs a command: batchdb run [OPTIONS] -- CMD [ARGS...] (for example: batchdb run -- bash)"
                .into(),
        ));
    };
    if !program_exists(program) {
        return Err(CliError::Msg(format!("command not found: {}", program.to_string_lossy())));
    }
    let defaults = Options::default();
    let opts = Options {
        lease: args.lease_ms.map_or(defaults.lease, Duration::from_millis),
        max_attempts: args.max_attempts.unwrap_or(defaults.max_attempts),
        retry_errors: args.retry_errors,
        order: match args.order {
            OrderArg::Newest => Order::NewestFirst,
            OrderArg::Oldest => Order::OldestFirst,
        },
        ..defaults
    };
    let max_attempts = opts.max_attempts;
    for q in &args.queues {
        crate::check_queue(q)?;
    }
    let db = open(cli, opts, Access::Create)?;

    let runner = Arc::new(Runner {
        program: program.clone(),
        args: program_args.to_vec(),
        name: program.to_string_lossy().into_owned(),
        until_empty: args.until_empty,
        queues: args.queues.clone(),
        max_attempts,
        db: db.clone(),
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        released: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });

    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| CliError::Msg(format!("cannot install signal handlers: {e}")))?;
    let signal_handle = signals.handle();
    let signal_thread = {
        let r = runner.clone();
        std::thread::Builder::new()
            .name("batchdb-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    r.on_signal(sig);
                }
            })
            .map_err(|e| CliError::Msg(format!("cannot start the signal thread: {e}")))?
    };

    let counts = Arc::new(Counts::default());
    let subscription = {
        let (c, r) = (counts.clone(), runner.clone());
        db.subscribe(move |ev| match ev {
            Event::Result { .. } => {
                c.done.fetch_add(1, Ordering::Relaxed);
                r.notify();
            }
            Event::Fail { .. } => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                r.notify();
            }
            Event::Push { .. } => r.notify(),
            _ => {}
        })
    };
    let progress = Progress::start(&db, counts.clone());

    std::thread::scope(|s| {
        for i in 0..args.workers {
            let (r, db) = (&runner, &db);
            let spawned =
                std::thread::Builder::new().name(format!("batchdb-run-{i}")).spawn_scoped(s, move || {
                    if let Err(p) = catch_unwind(AssertUnwindSafe(|| r.worker(db))) {
                        let what = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        r.fatal(format!("internal error in a worker: {what}"));
                    }
                });
            if let Err(e) = spawned {
                runner.fatal(format!("cannot start a worker thread: {e}"));
                break;
            }
        }
    });

    runner.finish();
    signal_handle.close();
    let _ = signal_thread.join();
    db.unsubscribe(subscription);
    progress.finish();

    let state = runner.lock();
    let mut summary = format!(
        "run: {} completed, {} failed",
        counts.done.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed)
    );
    let released = runner.released.load(Ordering::Relaxed);
    if released > 0 {
        summary.push_str(&format!(", {released} interrupted and back to pending"));
    }
    let lost = runner.lost.load(Ordering::Relaxed);
    if lost > 0 {
        summary.push_str(&format!(", {lost} lost their lease"));
    }
    if let Some(sig) = state.signal {
        summary.push_str(&format!(" (stopped by {})", signal_name(sig)));
    }
    if let Some(m) = &state.fatal {
        // Errors stay on one line: the counts go into it.
        return Err(CliError::Msg(format!("{m} ({summary})")));
    }
    eprintln!("{summary}");
    Ok(state.signal.map_or(0, |sig| 128 + sig))
}

/// Whether `program` names an executable file, directly or through `$PATH`; checked before
/// anything is claimed, so that a typo costs no instance an attempt.
fn program_exists(program: &OsStr) -> bool {
    let executable =
        |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if program.as_bytes().contains(&b'/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(program))))
}

#[derive(Default)]
struct State {
    /// Bumped by anything that may let an idle worker claim (or finish).
    generation: u64,
    /// No new claims: a signal came, or a worker hit an error that ends the run.
    stopping: bool,
    /// The first signal received.
    signal: Option<i32>,
    signals_seen: u32,
    /// The workers are done.
    finished: bool,
    /// Process groups (= pids) of the running children.
    children: HashSet<u32>,
    /// The error that ends the run, if any.
    fatal: Option<String>,
}

struct Runner {
    program: OsString,
    args: Vec<OsString>,
    name: String,
    until_empty: bool,
    /// The queues served; empty: every queue.
    queues: Vec<String>,
    max_attempts: u32,
    /// To wake workers sleeping in the library.
    db: Db,
    state: Mutex<State>,
    wake: Condvar,
    released: AtomicU64,
    lost: AtomicU64,
}

enum Outcome {
    Completed,
    Failed,
    Released,
    Lost,
}

fn kill_group(pgid: u32, sig: i32) {
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

impl Runner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.lock().generation += 1;
        self.wake.notify_all();
    }

    fn on_signal(self: &Arc<Self>, sig: i32) {
        let mut st = self.lock();
        st.signals_seen += 1;
        if st.signals_seen == 1 {
            st.signal = Some(sig);
            st.stopping = true;
            for &pid in &st.children {
                kill_group(pid, SIGTERM);
            }
            st.generation += 1;
            drop(st);
            self.wake.notify_all();
            self.db.stop();
            // Children that ignore SIGTERM get SIGKILL after the grace period.
            let r = self.clone();
            let _ = std::thread::Builder::new().name("batchdb-grace".into()).spawn(move || {
                let st = r.lock();
                let (st, _) =
                    r.wake.wait_timeout_while(st, GRACE, |s| !s.finished).unwrap_or_else(|e| e.into_inner());
                if !st.finished {
                    for &pid in &st.children {
                        kill_group(pid, libc::SIGKILL);
                    }
                }
            });
        } else {
            for &pid in &st.children {
                kill_group(pid, libc::SIGKILL);
            }
        }
    }

    fn fatal(&self, message: String) {
        let mut st = self.lock();
        st.fatal.get_or_insert(message);
        st.stopping = true;
        st.generation += 1;
        drop(st);
        self.wake.notify_all();
        self.db.stop();
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.wake.notify_all();
    }

    /// Adds a started child to the signal list; signals it at once if the run is already
    /// being interrupted.
    fn register(&self, pid: u32) {
        let mut st = self.lock();
        st.children.insert(pid);
        if st.signal.is_some() {
            kill_group(pid, if st.signals_seen > 1 { libc::SIGKILL } else { SIGTERM });
        }
    }

    fn interrupted(&self) -> bool {
        self.lock().signal.is_some()
    }

    fn worker(&self, db: &Db) {
        loop {
            let seen = {
                let st = self.lock();
                if st.stopping {
                    return;
                }
                st.generation
            };
            match db.claim_from(&self.queues) {
                Ok(Some(job)) => match self.execute(job) {
                    Ok(Outcome::Released) => {
                        self.released.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Outcome::Lost) => {
                        self.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Outcome::Completed | Outcome::Failed) => {}
                    Err(m) => return self.fatal(m),
                },
                Ok(None) => {
                    if self.until_empty {
                        match self.anything_left(db) {
                            Ok(false) => {
                                // Let the other workers see it too.
                                self.notify();
                                return;
                            }
                            Ok(true) | Err(batchdb::Error::Busy(_)) => {}
                            Err(e) => return self.fatal(e.to_string()),
                        }
                    }
                    if self.lock().generation != seen {
                        continue;
                    }
                    if let Err(e) = db.wait_for_work_from(&self.queues, POLL) {
                        return self.fatal(e.to_string());
                    }
                }
                Err(batchdb::Error::Busy(_)) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return self.fatal(e.to_string()),
            }
        }
    }

    /// Whether an `--until-empty` run must go on: the library's rule ([`Db::is_idle`]), the
    /// one its own run loop ends by.
    fn anything_left(&self, db: &Db) -> batchdb::Result<bool> {
        Ok(!db.is_idle(&self.queues)?)
    }

    /// Runs one claimed instance to its outcome. An `Err` ends the whole run.
    fn execute(&self, job: Job) -> Result<Outcome, String> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("BATCHDB_KEY", job.key().to_string())
            .env("BATCHDB_CREATED", job.created().to_string())
            .env("BATCHDB_ATTEMPT", job.attempt().to_string())
            .env(
                "BATCHDB_AFTER",
                job.after().iter().map(|(k, c, h)| format!("{k}:{c}:{h}")).collect::<Vec<_>>().join(" "),
            )
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                // Not the instance's fault: give it back (dropping releases it) and stop.
                drop(job);
                return Err(format!("cannot start {}: {e}", self.name));
            }
        };
        let pid = child.id();
        self.register(pid);
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let shared = Mutex::new(job);
        let io = std::thread::scope(|s| pump(s, pid, &shared, stdin, stdout, stderr));
        let job = shared.into_inner().unwrap_or_else(|e| e.into_inner());
        let status = self.reap(&mut child, pid);

        let io = match io {
            Ok(io) => io,
            Err(m) => {
                drop(job);
                return Err(m);
            }
        };
        let message = match (io.fed, io.stored, status) {
            (_, Err(m), _) => format!("storing the output of {}: {m}", self.name),
            (Err(m), Ok(()), _) => format!("reading the payload: {m}"),
            (Ok(()), Ok(()), Err(e)) => format!("waiting for {}: {e}", self.name),
            (Ok(()), Ok(()), Ok(st)) if st.success() => {
                return match job.complete() {
                    Ok(_) => Ok(Outcome::Completed),
                    Err(batchdb::Error::Stale(_)) => Ok(Outcome::Lost),
                    Err(e) => Err(e.to_string()),
                };
            }
            (Ok(()), Ok(()), Ok(_)) if self.interrupted() => {
                let requeued = job.attempt() < self.max_attempts;
                drop(job);
                return Ok(if requeued { Outcome::Released } else { Outcome::Failed });
            }
            (Ok(()), Ok(()), Ok(st)) => describe_exit(&self.name, st, &io.tail),
        };
        match job.fail(&message) {
            Ok(()) => Ok(Outcome::Failed),
            Err(batchdb::Error::Stale(_)) => Ok(Outcome::Lost),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits for the child to exit, takes it off the signal list, then reaps it.
    fn reap(&self, child: &mut Child, pid: u32) -> io::Result<ExitStatus> {
        let waited = wait_exited(pid);
        self.lock().children.remove(&pid);
        if let Err(e) = waited {
            // The child may still run: make sure it ends before waiting for it.
            kill_group(pid, libc::SIGKILL);
            let _ = child.wait();
            return Err(e);
        }
        child.wait()
    }
}

/// Blocks until the child `pid` has exited, without reaping it.
fn wait_exited(pid: u32) -> io::Result<()> {
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

struct Pumped {
    fed: Result<(), String>,
    stored: Result<(), String>,
    tail: String,
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
fn pump<'scope>(
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
fn describe_exit(name: &str, status: ExitStatus, tail: &str) -> String {
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

fn signal_name(sig: i32) -> String {
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
