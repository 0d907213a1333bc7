//! The instruction-count regression check (issue 22): one workload that `benches/callgrind.sh`
//! runs under `valgrind --tool=callgrind` and compares with `benches/instructions.txt`.
//!
//!   batchdb-icount add|cycle [DIR]
//!
//! Opens a fresh SQLite file (durability normal, so that fsync does not dominate), warms up
//! (adds and claim+complete cycles, so that statements are prepared and pages cached), then
//! runs `MEASURED` operations of the chosen kind inside one function that callgrind is told to
//! count (`--collect-atstart=no --toggle-collect=*icount_measured_*`): the figure is the
//! instructions of that function and everything it calls, on this thread only (background
//! threads, such as the checkpointer and the lease heartbeat, are not counted), divided by
//! `MEASURED`. Payloads are fixed, so the file's pages are the same run after run;
//! the write-ahead log is the same too: just before counting, a connection of this program
//! truncates it (`wal_checkpoint(TRUNCATE)`) and then holds a read transaction open on the
//! emptied log, which keeps the background checkpointer from copying frames back and so the
//! log from restarting while the operations run. Without that, where the measured frames
//! landed in the log (how full its hash index was, whether it restarted) depended on when the
//! checkpointer thread ran, and the count of an add moved by 12% from run to run. (The
//! operations' cost is the same with an empty log as in use: a few pages per commit either way.)
//! `BATCHDB_ICOUNT_SEED=N` changes them (and with them every hash), to check that the figure
//! does not hang on particular hash values.

use batchdb::{Db, Durability, Options};
use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;

/// Operations counted; the figure is their average. Their frames (about 4 a commit) stay well
/// below the writer's auto-checkpoint backstop of 2,000 frames.
const MEASURED: u64 = 100;
/// Jobs added (one at a time) and cycled before counting starts.
const WARM_ADDS: u64 = 500;
const WARM_CYCLES: u64 = 100;

fn payload(seed: &str, i: u64) -> Vec<u8> {
    format!("icount job payload {seed} number {i:010}").into_bytes()
}

fn cycle(db: &Db, buf: &mut Vec<u8>) {
    let mut job = db.claim().expect("claim").expect("a ready job");
    buf.clear();
    job.read_to_end(buf).expect("read payload");
    black_box(job.complete().expect("complete"));
}

/// Counted by callgrind: `MEASURED` adds of new payloads.
#[inline(never)]
fn icount_measured_add(db: &Db, payloads: &[Vec<u8>]) {
    for p in payloads {
        black_box(db.add(&p[..]).expect("add"));
    }
}

/// Counted by callgrind: `MEASURED` claim + read + complete cycles.
#[inline(never)]
fn icount_measured_cycle(db: &Db, buf: &mut Vec<u8>) {
    for _ in 0..MEASURED {
        cycle(db, buf);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(String::as_str).unwrap_or("");
    if kind != "add" && kind != "cycle" {
        eprintln!("usage: batchdb-icount add|cycle [DIR]");
        std::process::exit(2);
    }
    let dir = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("batchdb-icount-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let db =
        Db::open(dir.join("icount.db"), Options { durability: Durability::Normal, ..Default::default() })
            .expect("open");

    let seed = std::env::var("BATCHDB_ICOUNT_SEED").unwrap_or_default();
    for i in 0..WARM_ADDS {
        db.add(&payload(&seed, i)[..]).expect("warm-up add");
    }
    let mut buf = Vec::new();
    for _ in 0..WARM_CYCLES {
        cycle(&db, &mut buf);
    }
    // Built before counting starts: only the library's work is counted.
    let payloads: Vec<Vec<u8>> = (0..MEASURED).map(|i| payload(&seed, WARM_ADDS + i)).collect();
    let pin = rusqlite::Connection::open(dir.join("icount.db")).expect("open a second connection");
    pin.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
    // The background checkpointer may be copying frames at this moment: try again shortly.
    let mut tries = 0;
    while pin
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))
        .expect("truncate the log")
        != 0
    {
        tries += 1;
        assert!(tries < 200, "the log could not be truncated");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    pin.execute_batch("BEGIN").expect("begin");
    let _: i64 = pin.query_row("SELECT count(*) FROM meta", [], |r| r.get(0)).expect("read");
    match kind {
        "add" => icount_measured_add(&db, &payloads),
        _ => icount_measured_cycle(&db, &mut buf),
    }
    pin.execute_batch("COMMIT").expect("end the read");
    drop(pin);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{kind} {MEASURED}");
}
