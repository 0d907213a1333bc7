//! `batchdb run -- CMD [ARGS...]`: the queue run with a child process per instance.
//!
//! The loop is driven here with [`Db::claim`] on our own worker threads rather than with
//! [`Db::run`], because an interrupted instance must go back to pending, and inside `Db::run`
//! every runner error is a fail row. This module is the worker loop: claims, waits, signals
//! and each instance's outcome. The child process itself (its streams, its progress lines,
//! its reaping) is [`crate::child`]. The rules:
//!
//! * Each instance's CMD runs in its own process group, fed and drained by [`crate::child`].
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

use crate::child::{describe_exit, kill_group, program_exists, pump, signal_name, wait_exited};
use crate::cli::{Cli, OrderArg, RunArgs};
use crate::progress::{Counts, Progress};
use crate::{open, Access, CliError, CliResult};
use batchdb::{Backoff, Db, Event, Job, Options, Order, Outage};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The longest an idle worker sleeps in `Db::wait_for_work_from` before it looks again. The
/// library wakes it sooner for pushes, finishes, due delays and schedule slots, other
/// processes' commits and `Db::stop` (which signals and fatal errors call), so this is only a
/// safety net.
const POLL: Duration = Duration::from_secs(1);
/// How long interrupted children get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

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
        outage: Outage::new(),
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
    /// The run's outages, reported once each on stderr (see [`batchdb::Outage`]).
    outage: Outage,
}

enum Outcome {
    Completed,
    Failed,
    Released,
    Lost,
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
        let mut backoff = Backoff::new();
        loop {
            backoff.begin();
            let seen = {
                let st = self.lock();
                if st.stopping {
                    return;
                }
                st.generation
            };
            let claimed = db.claim_from(&self.queues);
            if !matches!(&claimed, Err(e) if e.is_connection_lost()) {
                self.reached(&mut backoff);
            }
            match claimed {
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
                            Err(e) if e.is_connection_lost() => {
                                if !self.again(&e, &mut backoff) {
                                    return;
                                }
                                continue;
                            }
                            Err(e) => return self.fatal(e.to_string()),
                        }
                    }
                    if self.lock().generation != seen {
                        continue;
                    }
                    match db.wait_for_work_from(&self.queues, POLL) {
                        Ok(_) => {}
                        Err(e) if e.is_connection_lost() => {
                            if !self.again(&e, &mut backoff) {
                                return;
                            }
                        }
                        Err(e) => return self.fatal(e.to_string()),
                    }
                }
                Err(batchdb::Error::Busy(_)) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) if e.is_connection_lost() => {
                    if !self.again(&e, &mut backoff) {
                        return;
                    }
                }
                Err(e) => return self.fatal(e.to_string()),
            }
        }
    }

    /// After a lost connection: says so on stderr once per outage, then waits the back-off's
    /// next pause unless the run is stopping. `false` when it is (the caller gives up).
    fn again(&self, e: &batchdb::Error, backoff: &mut Backoff) -> bool {
        if self.outage.lost(e, backoff.attempt()) {
            eprintln!("batchdb: lost the connection to the server ({}); retrying", e.message());
        }
        let pause = backoff.next_pause();
        let st = self.lock();
        if st.stopping {
            return false;
        }
        // A signal or a fatal error wakes this wait at once.
        let (st, _) =
            self.wake.wait_timeout_while(st, pause, |st| !st.stopping).unwrap_or_else(|p| p.into_inner());
        !st.stopping
    }

    /// A call reached the server: ends the outage under way, if any, with a line on stderr.
    fn reached(&self, backoff: &mut Backoff) {
        if let Some(down) = self.outage.back(backoff.attempt()) {
            eprintln!("batchdb: the connection to the server is back (lost for {:.1} s)", down.as_secs_f64());
        }
        backoff.reset();
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
            // The payload or output could not be moved because the server went away: that
            // says nothing about the job and must not make a fail row. Its lease re-queues it.
            (Err(_), _, _) | (_, Err(_), _) if job.lost_connection() => {
                job.abandon();
                return Ok(Outcome::Lost);
            }
            (_, Err(m), _) => format!("storing the output of {}: {m}", self.name),
            (Err(m), Ok(()), _) => format!("reading the payload: {m}"),
            (Ok(()), Ok(()), Err(e)) => format!("waiting for {}: {e}", self.name),
            (Ok(()), Ok(()), Ok(st)) if st.success() => {
                // Sent again after a lost connection; fenced by the lease, so never twice.
                let mut backoff = Backoff::new();
                return match job.complete_or_retry(&mut |e| self.again(e, &mut backoff)) {
                    Ok(_) => Ok(Outcome::Completed),
                    Err(batchdb::Error::Stale(_)) => Ok(Outcome::Lost),
                    // Stopped before the server was back, or the output was lost with the
                    // connection: the lease re-queues the instance.
                    Err(e) if e.is_connection_lost() => Ok(Outcome::Lost),
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
        let mut backoff = Backoff::new();
        match job.fail_or_retry(&message, &mut |e| self.again(e, &mut backoff)) {
            Ok(()) => Ok(Outcome::Failed),
            Err(batchdb::Error::Stale(_)) => Ok(Outcome::Lost),
            Err(e) if e.is_connection_lost() => Ok(Outcome::Lost),
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
