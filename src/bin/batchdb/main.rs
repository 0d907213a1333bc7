//! `batchdb`: the command-line interface to a batchdb database (contract sections 7, 8 and 9).
//!
//! Every error ends as one line on standard error, `batchdb: <message>`, and a non-zero exit
//! status: 1 for errors, 2 for a command line clap refuses, 128 + N for a `run` stopped by
//! signal N, and 3 ([`EXIT_DONE_UNREPORTED`]) for a change that was committed but whose
//! output could not be written.

mod child;
mod cli;
mod progress;
mod run;
mod ui;

use batchdb::{Db, Hash, ListKind, Options, PushOptions};
use clap::error::ErrorKind;
use clap::Parser;
use cli::{Cli, Command, ListKindArg, PushArgs, ScheduleCommand};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Printed as `batchdb: <message>`, exit status 1.
    Msg(String),
    /// Standard output was closed by its reader (`batchdb list job | head -1`): stop quietly,
    /// as a program killed by SIGPIPE would.
    BrokenPipe,
    /// The command's change is committed, but its output could not be written: printed as
    /// `batchdb: <message>`, exit status [`EXIT_DONE_UNREPORTED`].
    DoneUnreported(String),
}

/// The exit status of a command whose change was committed but whose output (the new KEY,
/// CREATED, ...) could not be written: not a plain failure, since running the command again
/// would, for `add` or `push`, queue one more instance.
pub const EXIT_DONE_UNREPORTED: i32 = 3;

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Msg(m) => f.write_str(m),
            CliError::BrokenPipe => f.write_str("standard output was closed"),
            CliError::DoneUnreported(m) => f.write_str(m),
        }
    }
}

impl From<batchdb::Error> for CliError {
    fn from(e: batchdb::Error) -> Self {
        CliError::Msg(e.to_string())
    }
}

impl From<String> for CliError {
    fn from(m: String) -> Self {
        CliError::Msg(m)
    }
}

/// An error writing to standard output.
pub fn stdout_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::BrokenPipe
    } else {
        CliError::Msg(format!("writing to standard output: {e}"))
    }
}

type CliResult<T = ()> = Result<T, CliError>;

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("batchdb: internal error: {}{at}", what.replace('\n', " "));
    }));

    // An empty $BATCHDB_PATH means unset (still single-threaded here).
    if std::env::var_os("BATCHDB_PATH").is_some_and(|v| v.is_empty()) {
        std::env::remove_var("BATCHDB_PATH");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(usage_error(e)),
    };
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(CliError::BrokenPipe) => 141,
        Err(CliError::Msg(m)) => {
            eprintln!("batchdb: {}", one_line(&m));
            1
        }
        Err(CliError::DoneUnreported(m)) => {
            eprintln!("batchdb: {}", one_line(&m));
            EXIT_DONE_UNREPORTED
        }
    };
    std::process::exit(code);
}

/// Shows help and version as clap does; turns any other command-line error into one line.
fn usage_error(e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            e.exit_code()
        }
        _ => {
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim_start().starts_with("Usage:") && !l.starts_with("For more"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("batchdb: {message} (see 'batchdb --help')");
            2
        }
    }
}

/// Messages may hold newlines (a fail message's stderr lines); errors stay on one line.
fn one_line(m: &str) -> String {
    m.trim_end().replace('\n', " | ")
}

/// How a command opens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `add`, `create`, `run`: a missing file becomes a new database.
    Create,
    /// Commands that change rows which must exist already: a missing file is an error.
    Existing,
    /// `list`, `get`, `check`, `stats`: nothing is created or written.
    ReadOnly,
}

pub fn open(cli: &Cli, opts: Options, access: Access) -> CliResult<Db> {
    let opened = match access {
        Access::Create => Db::open(&cli.db, opts),
        Access::Existing => Db::open_existing(&cli.db, opts),
        Access::ReadOnly => Db::open_read_only(&cli.db, opts),
    };
    let shown = batchdb::redact(&cli.db.to_string_lossy());
    opened.map_err(|e| match e {
        batchdb::Error::Io(m) if !m.contains(&shown) => CliError::Msg(format!("{shown}: {m}")),
        e => e.into(),
    })
}

/// A command whose arguments were all checked, before the database is opened or standard
/// input read: a rejected command line touches nothing.
enum Checked<'a> {
    Add(&'a [OsString], PushOptions),
    Create(&'a [OsString]),
    Push(Hash, PushOptions),
    List(ListKind),
    Get(Hash),
    Retry(Hash, i64),
    Cancel(Hash, i64),
    Prune(&'a std::time::Duration),
    Gc,
    Check,
    Stats(bool),
    Limit(&'a str, u32),
    Pause(&'a str),
    Resume(&'a str),
    ScheduleAdd { name: &'a str, spec: String, words: &'a [OsString], opts: PushOptions },
    ScheduleList,
    ScheduleRm(&'a str),
    Why(Hash),
    Backup(&'a std::path::Path),
    Copy(&'a std::path::Path),
}

impl Checked<'_> {
    fn access(&self) -> Access {
        match self {
            // Settings and schedules may come before any job: they create the database too.
            Checked::Add(..)
            | Checked::Create(_)
            | Checked::Limit(..)
            | Checked::Pause(_)
            | Checked::Resume(_)
            | Checked::ScheduleAdd { .. } => Access::Create,
            Checked::Push(..)
            | Checked::Retry(..)
            | Checked::Cancel(..)
            | Checked::Prune(_)
            | Checked::Gc
            | Checked::ScheduleRm(_) => Access::Existing,
            Checked::List(_)
            | Checked::Get(_)
            | Checked::Check
            | Checked::Stats(_)
            | Checked::ScheduleList
            | Checked::Why(_)
            | Checked::Backup(_)
            | Checked::Copy(_) => Access::ReadOnly,
        }
    }
}

fn check_args(command: &Command) -> CliResult<Checked<'_>> {
    Ok(match command {
        Command::Ui(_) => unreachable!("ui checks its own arguments"),
        Command::Add { push, words } => Checked::Add(words, push_options(push)?),
        Command::Create { words } => Checked::Create(words),
        Command::Push { push, key } => Checked::Push(parse_hash(key)?, push_options(push)?),
        Command::List { kind } => Checked::List(match kind {
            ListKindArg::Job => ListKind::Job,
            ListKindArg::Pending => ListKind::Pending,
            ListKindArg::Result => ListKind::Result,
            ListKindArg::Fail => ListKind::Fail,
        }),
        Command::Get { hash } => Checked::Get(parse_hash(hash)?),
        Command::Retry { key, created } => Checked::Retry(parse_hash(key)?, *created),
        Command::Cancel { key, created } => Checked::Cancel(parse_hash(key)?, *created),
        Command::Prune { older_than } => Checked::Prune(older_than),
        Command::Gc => Checked::Gc,
        Command::Why { hash } => Checked::Why(parse_hash(hash)?),
        Command::Backup { dest } => Checked::Backup(dest),
        Command::Copy { to } => Checked::Copy(to),
        Command::Check => Checked::Check,
        Command::Stats { json } => Checked::Stats(*json),
        Command::Limit { queue, n } => Checked::Limit(check_queue(queue)?, parse_limit(n)?),
        Command::Pause { queue } => Checked::Pause(check_queue(queue)?),
        Command::Resume { queue } => Checked::Resume(check_queue(queue)?),
        Command::Schedule(ScheduleCommand::Add { name, every, cron, queue, priority, words }) => {
            let spec = match (every, cron) {
                (Some(d), None) => format!("every {d}"),
                (None, Some(c)) => c.trim().to_string(),
                _ => unreachable!("clap requires exactly one of --every and --cron"),
            };
            batchdb::check_schedule(name, &spec)?;
            let opts = PushOptions { priority: *priority, queue: queue.clone(), ..Default::default() };
            opts.validate()?;
            Checked::ScheduleAdd { name, spec, words, opts }
        }
        Command::Schedule(ScheduleCommand::List) => Checked::ScheduleList,
        // The library checks the name (an existing database is needed first anyway).
        Command::Schedule(ScheduleCommand::Rm { name }) => Checked::ScheduleRm(name),
        Command::Run(_) => unreachable!("run checks its own arguments"),
    })
}

/// Prints the report of a change that is committed already. When it cannot be printed the
/// change stays done: the message says so, and the exit status is [`EXIT_DONE_UNREPORTED`],
/// so that a script does not repeat it (a second `add` would queue a second instance).
fn report_done(what: &str, text: &str) -> CliResult {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| {
        CliError::DoneUnreported(format!(
            "{what} (it printed as \"{text}\"), but writing that to standard output failed: {e}"
        ))
    })
}

fn dispatch(cli: Cli) -> CliResult<i32> {
    if let Command::Run(args) = &cli.command {
        return run::run(&cli, args);
    }
    if let Command::Ui(args) = &cli.command {
        return ui::run(&cli, args);
    }
    let command = check_args(&cli.command)?;
    let db = open(&cli, Options::default(), command.access())?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match command {
        Checked::Add(words, opts) => {
            let (key, pushed) = with_payload(words, |r| db.add_with(r, &opts))?;
            drop(out);
            report_done(&format!("job {key} was queued"), &format!("{key} {}", pushed_text(&pushed)))?;
            return Ok(0);
        }
        Checked::Create(words) => {
            let key = with_payload(words, |r| db.create(r))?;
            drop(out);
            report_done(&format!("job {key} was stored"), &key.to_string())?;
            return Ok(0);
        }
        Checked::Push(key, opts) => {
            let pushed = db.push_with(&key, &opts)?;
            drop(out);
            report_done(&format!("an instance of job {key} was queued"), &pushed_text(&pushed))?;
            return Ok(0);
        }
        Checked::Why(hash) => {
            for line in db.why(&hash)?.json_lines(&hash) {
                writeln!(out, "{line}").map_err(stdout_error)?;
            }
        }
        Checked::Copy(to) => {
            let shown = batchdb::redact(&to.to_string_lossy());
            let target =
                Db::open(to, Options::default()).map_err(|e| CliError::Msg(format!("{shown}: {e}")))?;
            let r = db.copy_to(&target)?;
            writeln!(
                out,
                "copied to {shown}: {} blobs ({} bytes) sent, {} rows applied",
                r.blobs_sent, r.bytes_sent, r.rows
            )
            .map_err(stdout_error)?;
        }
        Checked::Backup(dest) => {
            db.backup(dest)?;
        }
        Checked::List(kind) => {
            for row in db.list(kind) {
                writeln!(out, "{}", row?.to_json()).map_err(stdout_error)?;
            }
        }
        Checked::Get(hash) => {
            let mut reader = db.get(&hash)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(batchdb::Error::from(e).into()),
                };
                out.write_all(&buf[..n]).map_err(stdout_error)?;
            }
        }
        Checked::Retry(key, created) => {
            let new = db.retry(&key, created)?;
            drop(out);
            report_done(&format!("failed instance {key} {created} was re-queued"), &new.to_string())?;
            return Ok(0);
        }
        Checked::Cancel(key, created) => {
            db.cancel(&key, created)?;
        }
        Checked::Prune(older_than) => {
            let cutoff = now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
            let n = db.prune(cutoff)?;
            drop(out);
            report_done("the rows were pruned", &format!("pruned {n} rows"))?;
            return Ok(0);
        }
        Checked::Gc => {
            let r = db.gc()?;
            drop(out);
            let text = format!(
                "removed {} blobs, {} interrupted writes, {} chunks, {} bytes",
                r.blobs_removed, r.stages_removed, r.chunks_removed, r.bytes_removed
            );
            report_done("gc ran", &text)?;
            return Ok(0);
        }
        Checked::Check => {
            let report = db.check()?;
            for p in &report.problems {
                writeln!(out, "{}", one_line(p)).map_err(stdout_error)?;
            }
            if !report.problems.is_empty() {
                out.flush().map_err(stdout_error)?;
                let n = report.problems.len();
                return Err(CliError::Msg(format!(
                    "check found {n} problem{} in {}",
                    if n == 1 { "" } else { "s" },
                    batchdb::redact(&cli.db.to_string_lossy())
                )));
            }
            writeln!(out, "ok: {} blobs, {} bytes verified", report.blobs_checked, report.bytes_checked)
                .map_err(stdout_error)?;
        }
        Checked::Stats(json) => {
            let s = db.stats()?;
            if json {
                let text = serde_json::to_string(&s).map_err(|e| CliError::Msg(e.to_string()))?;
                writeln!(out, "{text}").map_err(stdout_error)?;
            } else {
                let lines = [
                    ("jobs", s.jobs),
                    ("pending", s.pending),
                    ("running", s.running),
                    ("results", s.results),
                    ("fails", s.fails),
                    ("blobs", s.blobs),
                    ("blob_bytes", s.blob_bytes),
                    ("file_bytes", s.file_bytes),
                    ("wal_bytes", s.wal_bytes),
                    ("results_total", s.results_total),
                    ("fails_total", s.fails_total),
                ];
                for (name, value) in lines {
                    writeln!(out, "{name}: {value}").map_err(stdout_error)?;
                }
                for (name, q) in &s.queues {
                    let limit = q.limit.map_or_else(|| "none".to_string(), |l| l.to_string());
                    writeln!(
                        out,
                        "queue {name}: pending {}, running {}, waiting {}, limit {limit}, paused {}",
                        q.pending,
                        q.running,
                        q.waiting,
                        if q.paused { "yes" } else { "no" }
                    )
                    .map_err(stdout_error)?;
                }
            }
        }
        Checked::Limit(queue, n) => db.limit(queue, n)?,
        Checked::Pause(queue) => db.pause(queue)?,
        Checked::Resume(queue) => db.resume(queue)?,
        Checked::ScheduleAdd { name, spec, words, opts } => {
            let row = with_payload(words, |r| db.schedule(name, &spec, r, &opts))?;
            drop(out);
            report_done(&format!("schedule {name} was stored"), &format!("{} {}", row.job, row.next_run))?;
            return Ok(0);
        }
        Checked::ScheduleList => {
            for row in db.schedules()? {
                let text = serde_json::to_string(&row).map_err(|e| CliError::Msg(e.to_string()))?;
                writeln!(out, "{text}").map_err(stdout_error)?;
            }
        }
        Checked::ScheduleRm(name) => db.unschedule(name)?,
    }
    out.flush().map_err(stdout_error)?;
    Ok(0)
}

fn parse_hash(s: &str) -> CliResult<Hash> {
    Ok(s.parse::<Hash>()?)
}

fn push_options(p: &PushArgs) -> CliResult<PushOptions> {
    let opts = PushOptions {
        priority: p.priority,
        delay: p.delay.unwrap_or_default(),
        queue: p.queue.clone(),
        unique: p.unique,
        memo: p.memo,
        after: p.after.iter().map(|a| parse_instance(a)).collect::<CliResult<_>>()?,
    };
    opts.validate()?;
    Ok(opts)
}

/// `KEY:CREATED`, as `--after` takes it.
fn parse_instance(s: &str) -> CliResult<(Hash, i64)> {
    let bad =
        || CliError::Msg(format!("--after {s:?}: expected KEY:CREATED (a 64-hex key, a colon, a number)"));
    let (key, created) = s.split_once(':').ok_or_else(bad)?;
    let created: i64 = created.parse().map_err(|_| bad())?;
    Ok((key.parse::<Hash>().map_err(|e| CliError::Msg(format!("--after {s:?}: {e}")))?, created))
}

/// What a push prints after its key (for `add`) or alone (for `push`): `CREATED`, or
/// `CREATED cached HASH` when a memo push reused a result.
fn pushed_text(p: &batchdb::Pushed) -> String {
    match &p.cached {
        Some(hash) => format!("{} cached {hash}", p.created),
        None => p.created.to_string(),
    }
}

/// Checks a queue name as the library does (through the push options that carry one).
pub fn check_queue(queue: &str) -> CliResult<&str> {
    PushOptions { queue: Some(queue.to_string()), ..Default::default() }.validate()?;
    Ok(queue)
}

/// `limit`'s N: a whole number from 0 (no limit) up.
fn parse_limit(n: &str) -> CliResult<u32> {
    match n.parse::<u32>() {
        Ok(v) if n.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
        _ => Err(CliError::Msg(format!(
            "limit {n:?} is invalid: expected a whole number from 0 (no limit) to {}",
            u32::MAX
        ))),
    }
}

/// Calls `f` with the payload: the words joined by single spaces, or standard input,
/// streamed, when there are none.
fn with_payload<T>(words: &[OsString], f: impl FnOnce(&mut dyn Read) -> batchdb::Result<T>) -> CliResult<T> {
    if words.is_empty() {
        let stdin = io::stdin();
        let mut lock = stdin.lock();
        return Ok(f(&mut lock)?);
    }
    let mut payload = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            payload.push(b' ');
        }
        payload.extend_from_slice(w.as_bytes());
    }
    Ok(f(&mut payload.as_slice())?)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
