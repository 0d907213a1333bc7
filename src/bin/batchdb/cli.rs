//! The command line, as clap parses it. Names, arguments and output formats follow sections 7
//! and 8 of the interface contract.

use batchdb::parse_duration;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const MAIN_AFTER_HELP: &str = "\
Examples:
  batchdb add 'sleep 1; date'               queue a shell job (prints KEY CREATED)
  batchdb run --until-empty -- bash         run every pending job with bash, then exit
  batchdb list result                       one JSON object a line
  batchdb get HASH                          a result's bytes (or a job's payload)
  batchdb limit mail 2                      at most 2 of queue mail run at once, all processes
  batchdb schedule add tick --every 1m date a recurring job, pushed by the active runs

The database is one SQLite file: --db PATH, else $BATCHDB_PATH, else ./batchdb.db.
Only add, create, run, schedule add, limit, pause and resume create it; the other commands
need an existing database.

Exit status: 0 done; 1 error; 2 a command line refused; 3 done (the change is committed)
but its output could not be written; 128+N run stopped by signal N.";

/// An embedded job queue and content-addressed blob store in one SQLite file.
#[derive(Debug, Parser)]
#[command(name = "batchdb", version, after_help = MAIN_AFTER_HELP, arg_required_else_help = true)]
pub struct Cli {
    /// The database file (which commands create it when missing: see below), or a
    /// postgres:// URL.
    // hide_env_values: help must never print $BATCHDB_PATH, which may hold a password.
    #[arg(
        long,
        global = true,
        env = "BATCHDB_PATH",
        hide_env_values = true,
        default_value = "./batchdb.db",
        value_name = "PATH"
    )]
    pub db: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a payload as a job and queue an instance of it; prints "KEY CREATED".
    #[command(
        long_about = "Store a payload as a job and queue an instance of it, in one transaction.\n\n\
                      The payload is the WORDS joined by single spaces, or standard input (streamed, \
                      any size) when there are none. The job's KEY is the SHA-256 of the payload: \
                      adding the same payload again queues another instance of the same job. \
                      Prints \"KEY CREATED\", CREATED being the instance's push time in epoch \
                      milliseconds, unique in the file.",
        after_help = "Examples:\n  \
                      batchdb add 'sleep 5; date'\n  \
                      batchdb add --priority 10 --delay 15m echo later\n  \
                      batchdb add --queue mail --unique ./send-digest.sh\n  \
                      batchdb add < script.sh"
    )]
    Add {
        #[command(flatten)]
        push: PushArgs,
        /// The payload; read from standard input when none are given.
        #[arg(value_name = "WORDS", trailing_var_arg = true)]
        words: Vec<OsString>,
    },

    /// Store a payload as a job without queueing it; prints KEY.
    #[command(
        long_about = "Store a payload as a job without queueing an instance; prints its KEY, the \
                      SHA-256 of the payload.\n\n\
                      The payload is the WORDS joined by single spaces, or standard input (streamed, \
                      any size) when there are none. Queue it later with `batchdb push KEY`.",
        after_help = "Examples:\n  \
                      batchdb create 'sleep 5; date'\n  \
                      key=$(batchdb create < big-input.bin)"
    )]
    Create {
        /// The payload; read from standard input when none are given.
        #[arg(value_name = "WORDS", trailing_var_arg = true)]
        words: Vec<OsString>,
    },

    /// Queue an instance of an existing job; prints CREATED.
    #[command(
        long_about = "Queue an instance of the job KEY; prints the instance's CREATED (epoch \
                      milliseconds, unique in the file). An unknown KEY is an error. With --unique, \
                      when an instance of the job is already pending, waiting or running in the \
                      queue, nothing is queued and that instance's CREATED is printed.",
        after_help = "Examples:\n  \
                      batchdb push ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0\n  \
                      batchdb push --priority -1 --delay 30s KEY\n  \
                      batchdb push --queue reports --unique KEY"
    )]
    Push {
        #[command(flatten)]
        push: PushArgs,
        /// The job's key (64 hex characters).
        #[arg(value_name = "KEY")]
        key: String,
    },

    /// Print jobs, pending instances, results or failures, one JSON object a line.
    #[command(
        long_about = "Print one table, one JSON object a line:\n\n  \
                      job:     {\"key\": K, \"running\": [C, ...]}                       by key\n  \
                      pending: {\"job\": K, \"created\": C, \"running\": false}            by created\n  \
                      result:  {\"key\": [K, C], \"value\": {\"hash\": H, \"start\": S, \"end\": E, \"created\": C}}\n  \
                      fail:    {\"key\": [K, C], \"value\": {\"message\": M, \"start\": S, \"end\": E, \"attempts\": N}}\n\n\
                      Pending rows also carry \"priority\" and \"run_at\" when their push set them, \
                      \"queue\" when it is not \"default\", and \"progress\": {\"done\": F, \
                      \"message\": M} while a running command has reported some.",
        after_help = "Examples:\n  \
                      batchdb list pending\n  \
                      batchdb list result | jq -r '.value.hash'"
    )]
    List {
        /// Which table.
        #[arg(value_enum)]
        kind: ListKindArg,
    },

    /// Write a job payload or a result, by its hash, to standard output.
    #[command(
        long_about = "Write the blob HASH (a job payload or a result) to standard output, streamed. \
                      The bytes are verified against the hash as they are read: a mismatch ends with \
                      an error and a non-zero exit status.",
        after_help = "Examples:\n  \
                      batchdb get $(batchdb list result | head -1 | jq -r .value.hash)\n  \
                      batchdb get KEY > payload.bin"
    )]
    Get {
        /// The blob's hash (64 hex characters).
        #[arg(value_name = "HASH")]
        hash: String,
    },

    /// Run the queue: each instance's payload goes to CMD's stdin, CMD's stdout is the result.
    #[command(
        override_usage = "batchdb run [OPTIONS] -- CMD [ARGS]...",
        long_about = "Run the queue with CMD as the runner. For each instance, CMD is started with \
                      ARGS (in its own process group), the payload on its standard input, and \
                      BATCHDB_KEY, BATCHDB_CREATED and BATCHDB_ATTEMPT in its environment. Its \
                      standard output, streamed, is the result. Exit status 0 completes the \
                      instance; any other status (or a signal) fails it with a message holding the \
                      status and the last lines of CMD's standard error.\n\n\
                      A line `batchdb-progress: F MESSAGE` on CMD's standard error (F from 0 to 1) \
                      reports the instance's progress: its pending row shows it while it runs. Such \
                      lines are not part of a fail message; a malformed one is ordinary stderr.\n\n\
                      With --queue (repeatable), only those queues are served; otherwise every \
                      queue. Paused queues and queues at their limit are skipped.\n\n\
                      Without --until-empty, run waits for new jobs, also those added by other \
                      processes, and pushes the instances of schedules as they fall due, until it \
                      is stopped. With --until-empty it exits once nothing is ready, running or \
                      delayed in the served queues (paused queues do not count). Ctrl-C, SIGTERM or SIGHUP stop it: no new \
                      instance is started, the running children get SIGTERM (SIGKILL after 10 s, or \
                      at a second signal), the instances they were running go back to pending (a \
                      fail row if that was their last attempt), and run exits with status 128 + \
                      the signal's number.\n\n\
                      When standard error is a terminal a progress line shows what was done; \
                      otherwise run prints one summary line at the end.",
        after_help = "Examples:\n  \
                      batchdb run --until-empty -- bash\n  \
                      batchdb run --workers 4 --order oldest -- sh -c 'gzip -9'\n  \
                      batchdb run --queue mail --queue reports -- bash\n  \
                      batchdb run --lease-ms 60000 --max-attempts 5 --retry-errors -- ./worker.py"
    )]
    Run(RunArgs),

    /// Set the most instances of queue Q running at once, in every process together.
    #[command(
        long_about = "Set the most instances of queue Q that may run at once, counting every \
                      process on the database; N = 0 removes the limit. The limit is stored in the \
                      database: every `run`, started before or after, keeps to it from its next \
                      claim. A queue name is 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'.",
        after_help = "Examples:\n  batchdb limit mail 2\n  batchdb limit mail 0      remove the limit"
    )]
    Limit {
        /// The queue.
        #[arg(value_name = "Q")]
        queue: String,
        /// At most this many running at once; 0 removes the limit.
        #[arg(value_name = "N", allow_hyphen_values = true)]
        n: String,
    },

    /// Pause queue Q: no process starts its instances until `batchdb resume Q`.
    #[command(
        long_about = "Pause queue Q: no `run`, in any process, starts its instances until \
                      `batchdb resume Q`; running ones finish. Pushes into it still queue, and \
                      schedules still push into it. Stored in the database.",
        after_help = "Example:\n  batchdb pause mail && batchdb stats --json | jq .queues.mail"
    )]
    Pause {
        /// The queue.
        #[arg(value_name = "Q")]
        queue: String,
    },

    /// Resume a paused queue.
    #[command(
        long_about = "Resume queue Q: waiting runs start its instances again.",
        after_help = "Example:\n  batchdb resume mail"
    )]
    Resume {
        /// The queue.
        #[arg(value_name = "Q")]
        queue: String,
    },

    /// Recurring schedules: add, list, rm.
    #[command(
        subcommand,
        long_about = "Recurring schedules: each slot of a schedule pushes one instance of its job, \
                      however many processes run. `schedule add` creates or replaces one, \
                      `schedule list` prints them, `schedule rm` removes one.",
        after_help = "Examples:\n  \
                      batchdb schedule add tick --every 30s date\n  \
                      batchdb schedule list\n  \
                      batchdb schedule rm tick"
    )]
    Schedule(ScheduleCommand),

    /// Re-queue a failed instance as a new one; prints the new CREATED.
    #[command(
        long_about = "Re-queue the failed instance (KEY, CREATED) as a new instance and remove its \
                      fail row; prints the new instance's CREATED.",
        after_help = "Example:\n  batchdb retry KEY 1700000000123"
    )]
    Retry {
        /// The job's key.
        #[arg(value_name = "KEY")]
        key: String,
        /// The failed instance's created.
        #[arg(value_name = "CREATED")]
        created: i64,
    },

    /// Remove a pending instance that is not running.
    #[command(
        long_about = "Remove the pending instance (KEY, CREATED). An unknown instance is an error, \
                      and so is one that a worker is running. The job and its payload stay.",
        after_help = "Example:\n  batchdb cancel KEY 1700000000123"
    )]
    Cancel {
        /// The job's key.
        #[arg(value_name = "KEY")]
        key: String,
        /// The pending instance's created.
        #[arg(value_name = "CREATED")]
        created: i64,
    },

    /// Remove result and fail rows that ended longer ago than DURATION; prints how many.
    #[command(
        long_about = "Remove the result and fail rows whose end is older than DURATION before now, \
                      and print how many were removed. Run `batchdb gc` afterwards to reclaim their \
                      blobs. A DURATION is a whole number and a unit: 500ms, 30s, 15m, 2h, 7d.",
        after_help = "Examples:\n  batchdb prune --older-than 7d\n  batchdb prune --older-than 0s && batchdb gc"
    )]
    Prune {
        /// Age of the rows to remove, like 500ms, 30s, 15m, 2h or 7d.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Duration,
    },

    /// Remove blobs that nothing references, and leftovers of interrupted writes.
    #[command(
        long_about = "Remove the blobs that no job or result references, and the leftovers of \
                      interrupted writes; prints what was removed.",
        after_help = "Example:\n  batchdb prune --older-than 30d && batchdb gc"
    )]
    Gc,

    /// Where a blob came from: its job, and the results that produced it with their inputs.
    #[command(
        long_about = "Print the lineage of the blob HASH, one JSON object a line: {\"job\": K} when \
                      it is a job's payload, and {\"result\": [K, C], \"after\": [[K2, C2], ...]} for each \
                      result row whose output it is, with the instances that result waited for. A hash \
                      the database does not hold is an error.",
        after_help = "Example:\n  batchdb why $(batchdb list result | head -1 | jq -r .value.hash)"
    )]
    Why {
        /// The blob's hash (64 hex characters).
        hash: String,
    },

    /// Write a consistent copy of the whole database to a new file DEST.
    #[command(
        long_about = "Write a consistent copy of the whole database, as of one instant, to the new \
                      file DEST, while other processes keep working. An existing DEST is refused.",
        after_help = "Example:\n  batchdb backup /backups/batchdb-$(date +%F).db"
    )]
    Backup {
        /// The new file.
        dest: std::path::PathBuf,
    },

    /// Copy everything into another database (a file or a postgres:// URL).
    #[command(
        long_about = "Copy every job, blob, instance, result and fail row, queue setting and \
                      schedule into the database DB (a file, created when missing, or a postgres:// \
                      URL), keeping keys and CREATED values. Blobs DB holds already are not sent \
                      again; a second copy changes nothing, and an interrupted one is finished by \
                      running it again. DB must be empty or an earlier copy of this database. Prints \
                      what was sent.",
        after_help = "Example:\n  batchdb copy --to postgres://batchdb@db.internal/jobs"
    )]
    Copy {
        /// The target database.
        #[arg(long = "to", value_name = "DB")]
        to: std::path::PathBuf,
    },

    /// Verify the whole file; exits non-zero when it finds a problem.
    #[command(
        long_about = "Verify the whole file: SQLite's integrity check, every blob re-hashed, no \
                      orphan chunk, no dangling reference. Prints each problem on its own line and \
                      exits with status 1 when there is any; prints a one-line summary otherwise.",
        after_help = "Example:\n  batchdb check || echo damaged"
    )]
    Check,

    /// Serve the dashboard and Prometheus /metrics over HTTP.
    #[command(
        long_about = "Serve a web dashboard of the database (counts by state, completions per minute, \
                      running instances, failures with Retry, pending instances with Cancel, job \
                      pages with downloads), its JSON API under /api/, Prometheus metrics at \
                      /metrics and verified blob downloads at /blob/HASH.\n\n\
                      It listens on loopback by default; any other address requires --token-file, \
                      whose content (trimmed) every request must then present as \
                      `Authorization: Bearer TOKEN`, or through the login page's cookie. The first \
                      line on standard output says where it serves.",
        after_help = "Examples:\n  \
                      batchdb ui                                     http://127.0.0.1:8977/\n  \
                      batchdb ui --read-only --listen 127.0.0.1:9000\n  \
                      batchdb ui --listen 0.0.0.0:8977 --token-file /etc/batchdb/token"
    )]
    Ui(UiArgs),

    /// Print counts of jobs, instances, results, fails and blobs, and the file's size.
    #[command(
        long_about = "Print counts and sizes, one \"name: value\" a line: jobs, pending, running, \
                      results, fails, blobs, blob_bytes, file_bytes, wal_bytes, results_total and \
                      fails_total (ever recorded, pruned rows included), then a line per queue: \
                      \"queue Q: pending P, running R, waiting W, limit L|none, paused yes|no\" \
                      (pending counts ready instances only; waiting, those delayed or backing off). \
                      With --json, one JSON object, the queues under \"queues\": {Q: {\"pending\", \
                      \"running\", \"waiting\", \"limit\", \"paused\"}}.",
        after_help = "Examples:\n  batchdb stats\n  batchdb stats --json | jq .queues"
    )]
    Stats {
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// `--priority`, `--delay`, `--queue` and `--unique`, for `add` and `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Higher runs first; default 0.
    #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = 0)]
    pub priority: i32,
    /// Do not run before this long after the push, like 500ms, 30s, 15m, 2h or 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// The queue to push into (1 to 64 of A-Z a-z 0-9 _ . -); default "default".
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Queue nothing when an instance of the job is pending, waiting or running in the queue
    /// already; print that instance's CREATED instead.
    #[arg(long)]
    pub unique: bool,
    /// Memoized: when the job has a result already, queue nothing and print "CREATED cached
    /// HASH" (its newest result); when an instance is live, join it as --unique does.
    #[arg(long)]
    pub memo: bool,
    /// Wait for the instance KEY:CREATED to have a result before running (repeatable); the
    /// command gets the upstream results in $BATCHDB_AFTER as "KEY:CREATED:HASH ...".
    #[arg(long, value_name = "KEY:CREATED")]
    pub after: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create or replace a recurring schedule; prints "KEY NEXT_RUN".
    #[command(
        override_usage = "batchdb schedule add NAME (--every DURATION | --cron 'M H DOM MON DOW') \
                          [--queue Q] [--priority N] [WORDS...]",
        long_about = "Create or replace the schedule NAME: the payload (the WORDS joined by single \
                      spaces, or standard input when there are none) is stored as a job, and each \
                      slot pushes one instance of it into the queue, however many processes run. \
                      --every DURATION slots are the multiples of DURATION since the Unix epoch (the \
                      spec is stored as \"every DURATION\"); --cron takes a 5-field cron expression \
                      in UTC. Slots are pushed by the `run`s that are active; after a time with none, \
                      one instance is pushed for the latest missed slot only.\n\n\
                      Prints \"KEY NEXT_RUN\": the job's key and the first slot, in epoch \
                      milliseconds. A schedule name is 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' \
                      and '-'.",
        after_help = "Examples:\n  \
                      batchdb schedule add tick --every 30s date\n  \
                      batchdb schedule add nightly --cron '0 3 * * *' --queue reports ./report.sh\n  \
                      batchdb schedule add backup --cron '*/15 * * * 1-5' < backup.sh"
    )]
    #[command(group(ArgGroup::new("spec").required(true).args(["every", "cron"])))]
    Add {
        /// The schedule's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// A slot every DURATION (500ms, 30s, 15m, 2h, 7d), at its multiples since the epoch.
        #[arg(long, value_name = "DURATION")]
        every: Option<String>,
        /// A 5-field cron expression, in UTC: minute, hour, day of month, month, day of week.
        #[arg(long, value_name = "'M H DOM MON DOW'")]
        cron: Option<String>,
        /// The queue its instances go to; default "default".
        #[arg(long, value_name = "Q")]
        queue: Option<String>,
        /// Its instances' priority; default 0.
        #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = 0)]
        priority: i32,
        /// The payload; read from standard input when none are given.
        #[arg(value_name = "WORDS", trailing_var_arg = true)]
        words: Vec<OsString>,
    },

    /// Print the schedules, one JSON object a line.
    #[command(
        long_about = "Print the schedules by name, one JSON object a line: \
                      {\"name\": N, \"spec\": S, \"queue\": Q, \"job\": KEY, \"next_run\": T}, \
                      T being the next slot in epoch milliseconds.",
        after_help = "Example:\n  batchdb schedule list | jq -r .name"
    )]
    List,

    /// Remove a schedule; the instances it pushed stay.
    #[command(
        long_about = "Remove the schedule NAME; an unknown name is an error. The instances it \
                      already pushed stay queued, and its job stays.",
        after_help = "Example:\n  batchdb schedule rm tick"
    )]
    Rm {
        /// The schedule's name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker processes run at once.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    /// Exit once nothing is pending or running, instead of waiting for new jobs.
    #[arg(long)]
    pub until_empty: bool,
    /// Which pending instance runs first, among those of the highest priority.
    #[arg(long, value_enum, default_value_t = OrderArg::Newest)]
    pub order: OrderArg,
    /// How long a claim lasts without renewal (renewed while CMD runs); default 30000.
    #[arg(long, value_name = "MS")]
    pub lease_ms: Option<u64>,
    /// How many times an instance may be started; default 3.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Re-queue an instance whose command failed (backoff 1 s, 2 s, 4 s, ...) while attempts remain.
    #[arg(long)]
    pub retry_errors: bool,
    /// Serve only this queue; repeat for several. Default: every queue.
    #[arg(long = "queue", value_name = "Q")]
    pub queues: Vec<String>,
    /// The runner and its arguments, after `--`.
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

/// `batchdb ui`'s options (contract section 11).
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Where to listen; an address other than loopback requires --token-file.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8977")]
    pub listen: String,
    /// Refuse every change (retry, cancel, pause, resume) with 403, and open the database read-only.
    #[arg(long)]
    pub read_only: bool,
    /// A file whose content, trimmed, is the token every request must present.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListKindArg {
    Job,
    Pending,
    Result,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    /// Most recently pushed first, as the original batchdb.
    Newest,
    /// Oldest first (FIFO).
    Oldest,
}
