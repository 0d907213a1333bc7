//! The workloads, batchdb's side and the baseline's side of each.

use crate::{baseline, median, pair, payload, timed, Peers, Plan, Rounds, Row, Scratch};
use batchdb::{Db, Durability, Error, Options, PushOptions, RunOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn open(path: &Path, d: Durability) -> Db {
    Db::open(path, Options { durability: d, ..Default::default() }).expect("open batchdb")
}

fn dname(d: Durability) -> &'static str {
    match d {
        Durability::Full => "full",
        Durability::Normal => "normal",
    }
}

fn is_full(d: Durability) -> bool {
    d == Durability::Full
}

/// A tag that makes every measurement's payloads distinct.
pub(crate) fn tag() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// P1, P2: add, one thread.

fn batchdb_adds(plan: &Plan, s: &Scratch, d: Durability) -> f64 {
    let path = s.db();
    let db = open(&path, d);
    let t = tag();
    let rate = timed(plan.slice, |i| {
        db.add(&payload(t, i)[..]).expect("add");
    });
    drop(db);
    s.done(&path);
    rate
}

fn raw_adds(plan: &Plan, s: &Scratch, d: Durability) -> f64 {
    let path = s.db();
    let c = baseline::open(&path, is_full(d));
    baseline::jobs_schema(&c);
    let t = tag();
    let rate = timed(plan.slice, |i| baseline::insert_one(&c, &payload(t, i)));
    drop(c);
    s.done(&path);
    rate
}

pub fn p1_p2(plan: &Plan, s: &Scratch, d: Durability) -> Row {
    let (id, target) = if is_full(d) { ("P1", 0.8) } else { ("P2", 0.5) };
    let mut row = Row::new(
        id,
        &format!("add, small distinct payloads, durability {}, 1 thread", dname(d)),
        "jobs/s",
        "1 single-row INSERT txn per job",
        Some(target),
    );
    let rounds = pair(plan.reps, || batchdb_adds(plan, s, d), || raw_adds(plan, s, d));
    row.set(rounds);
    row
}

/// P2c, P3c (issue 22): batchdb against the content-addressed baseline in each of its layouts,
/// interleaved (batchdb, layout 1, layout 2, batchdb, …); the row's baseline is the layout with
/// the higher median, and the other layout's rounds go in `extra`.
fn against_ca(
    plan: &Plan,
    row: &mut Row,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut(baseline::Ca) -> f64,
) {
    let mut ours = Vec::new();
    let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); baseline::Ca::ALL.len()];
    for _ in 0..plan.reps.max(1) {
        ours.push(a());
        for (k, ca) in baseline::Ca::ALL.iter().enumerate() {
            theirs[k].push(b(*ca));
        }
    }
    let best =
        (0..theirs.len()).max_by(|&x, &y| median(&theirs[x]).total_cmp(&median(&theirs[y]))).unwrap_or(0);
    let layouts: Vec<Value> = baseline::Ca::ALL
        .iter()
        .zip(&theirs)
        .map(|(ca, v)| json!({"layout": ca.name(), "median": median(v), "rounds": v}))
        .collect();
    row.baseline_name =
        format!("raw SQL content-addressed enqueue, fastest layout: {}", baseline::Ca::ALL[best].name());
    for (ca, v) in baseline::Ca::ALL.iter().zip(&theirs) {
        row.notes.push(format!("layout {}: median {:.0} {}", ca.name(), median(v), row.unit));
    }
    row.extra = json!({"layouts": layouts});
    row.set(Rounds { batchdb: ours, baseline: std::mem::take(&mut theirs[best]) });
}

fn raw_ca_adds(plan: &Plan, s: &Scratch, d: Durability, ca: baseline::Ca) -> f64 {
    let path = s.db();
    let c = baseline::open(&path, is_full(d));
    ca.schema(&c);
    let t = tag();
    let rate = timed(plan.slice, |i| ca.add_one(&c, &payload(t, i)));
    drop(c);
    s.done(&path);
    rate
}

/// P2c: P2's adds against a hand-written content-addressed enqueue (SHA-256 of the payload, a
/// unique 32-byte key, the payload, an instance row), the same durability and payloads.
pub fn p2c(plan: &Plan, s: &Scratch) -> Row {
    let d = Durability::Normal;
    let mut row = Row::new(
        "P2c",
        "add, small distinct payloads, durability normal, 1 thread, vs content-addressed SQL",
        "jobs/s",
        "",
        Some(0.7),
    );
    against_ca(plan, &mut row, || batchdb_adds(plan, s, d), |ca| raw_ca_adds(plan, s, d, ca));
    row
}

// ---------------------------------------------------------------------------------------------
// P3: batch add.

/// P3's payloads: `batches` calls of 1,000, distinct.
fn batches_of_1000(batches: usize) -> Vec<Vec<Vec<u8>>> {
    let t = tag();
    (0..batches).map(|b| (0..1000).map(|i| payload(t, (b * 1000 + i) as u64)).collect()).collect()
}

fn batchdb_batches(s: &Scratch, batches: usize) -> f64 {
    let path = s.db();
    let db = open(&path, Durability::Full);
    let all = batches_of_1000(batches);
    let start = Instant::now();
    for b in &all {
        db.add_batch(b).expect("add_batch");
    }
    let rate = (batches * 1000) as f64 / start.elapsed().as_secs_f64();
    drop(db);
    s.done(&path);
    rate
}

/// P3c: P3's batches against the content-addressed enqueue, 1,000 per transaction, full.
pub fn p3c(plan: &Plan, s: &Scratch) -> Row {
    let mut row = Row::new(
        "P3c",
        &format!(
            "add_batch, 1,000 small payloads per call, durability full ({} jobs), vs content-addressed SQL",
            plan.batch_jobs
        ),
        "jobs/s",
        "",
        Some(0.7),
    );
    let batches = (plan.batch_jobs / 1000).max(1);
    against_ca(
        plan,
        &mut row,
        || batchdb_batches(s, batches),
        |ca| {
            let path = s.db();
            let c = baseline::open(&path, true);
            ca.schema(&c);
            let all = batches_of_1000(batches);
            let start = Instant::now();
            for b in &all {
                ca.add_many(&c, b);
            }
            let rate = (batches * 1000) as f64 / start.elapsed().as_secs_f64();
            drop(c);
            s.done(&path);
            rate
        },
    );
    row
}

pub fn p3(plan: &Plan, s: &Scratch) -> Row {
    let mut row = Row::new(
        "P3",
        "add_batch, 1,000 small payloads per call, durability full",
        "jobs/s",
        "1,000 INSERTs per txn",
        Some(0.5),
    );
    let batches = (plan.batch_jobs / 1000).max(1);
    let a = || batchdb_batches(s, batches);
    let b = || {
        let path = s.db();
        let c = baseline::open(&path, true);
        baseline::jobs_schema(&c);
        let all = batches_of_1000(batches);
        let start = Instant::now();
        for b in &all {
            baseline::insert_many(&c, b);
        }
        let rate = (batches * 1000) as f64 / start.elapsed().as_secs_f64();
        drop(c);
        s.done(&path);
        rate
    };
    let rounds = pair(plan.reps, a, b);
    row.set(rounds);
    row
}

// ---------------------------------------------------------------------------------------------
// P4: claim + complete with an empty output.

/// Queues `n` small jobs, 1,000 per transaction.
pub(crate) fn fill(db: &Db, n: usize) {
    let t = tag();
    let mut i = 0;
    while i < n {
        let k = (n - i).min(1000);
        let batch: Vec<Vec<u8>> = (i..i + k).map(|j| payload(t, j as u64)).collect();
        db.add_batch(&batch).expect("fill");
        i += k;
    }
}

/// A fresh file in the scratch folder at durability `d`, filled with `plan.queue` jobs.
fn filled(plan: &Plan, s: &Scratch, d: Durability) -> (std::path::PathBuf, Db) {
    let path = s.db();
    let db = open(&path, d);
    fill(&db, plan.queue);
    (path, db)
}

/// `workers` threads claim, read the payload and complete with an empty output until `slice`
/// passes or the queue is empty; returns (jobs/s, BUSY errors seen).
/// The plain cycle from Rust, 1 worker, on a fresh file filled with `n` jobs: what the mixed
/// cycle (P4m) and the bindings (P6) are compared with.
fn rust_cycle(plan: &Plan, s: &Scratch, d: Durability, n: usize) -> f64 {
    let path = s.db();
    let db = open(&path, d);
    fill(&db, n);
    let (rate, _) = batchdb_cycle(&db, 1, plan.slice);
    drop(db);
    s.done(&path);
    rate
}

pub(crate) fn batchdb_cycle(db: &Db, workers: usize, slice: Duration) -> (f64, u64) {
    let done = AtomicU64::new(0);
    let busy = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..workers {
            let (db, done, busy) = (db.clone(), &done, &busy);
            sc.spawn(move || {
                let mut buf = Vec::new();
                while start.elapsed() < slice {
                    let job = match db.claim() {
                        Ok(Some(j)) => j,
                        Ok(None) => break,
                        Err(Error::Busy(_)) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => panic!("claim: {e}"),
                    };
                    let mut job = job;
                    buf.clear();
                    job.read_to_end(&mut buf).expect("read payload");
                    match job.complete() {
                        Ok(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Busy(_)) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("complete: {e}"),
                    }
                }
            });
        }
    });
    (done.into_inner() as f64 / start.elapsed().as_secs_f64(), busy.into_inner())
}

fn raw_cycle(path: &Path, d: Durability, workers: usize, slice: Duration) -> (f64, u64) {
    let done = AtomicU64::new(0);
    let busy = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..workers {
            let (done, busy) = (&done, &busy);
            sc.spawn(move || {
                let c = baseline::open(path, is_full(d));
                let mut b = 0;
                while start.elapsed() < slice {
                    if !baseline::queue_cycle(&c, &mut b) {
                        break;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                busy.fetch_add(b, Ordering::Relaxed);
            });
        }
    });
    (done.into_inner() as f64 / start.elapsed().as_secs_f64(), busy.into_inner())
}

pub fn p4(plan: &Plan, s: &Scratch, d: Durability, workers: usize) -> Row {
    let mut row = Row::new(
        &format!("P4-{}{}", &dname(d)[..1], workers),
        &format!("claim + complete (empty output), durability {}, {} worker(s)", dname(d), workers),
        "jobs/s",
        "UPDATE…RETURNING claim txn + INSERT result/DELETE txn",
        Some(0.7),
    );
    let mut busy_batchdb = 0;
    let mut busy_raw = 0;
    let rounds = pair(
        plan.reps,
        || {
            let (path, db) = filled(plan, s, d);
            let (rate, busy) = batchdb_cycle(&db, workers, plan.slice);
            busy_batchdb += busy;
            drop(db);
            s.done(&path);
            rate
        },
        || {
            let path = s.db();
            {
                let c = baseline::open(&path, is_full(d));
                baseline::queue_schema(&c);
                baseline::queue_fill(&c, plan.queue);
            }
            let (rate, busy) = raw_cycle(&path, d, workers, plan.slice);
            busy_raw += busy;
            s.done(&path);
            rate
        },
    );
    row.set(rounds);
    row.extra = json!({"busy_surfaced": busy_batchdb, "baseline_busy_retries": busy_raw,
                       "conditions_met": busy_batchdb == 0});
    row.notes.push(format!("BUSY surfaced by batchdb: {busy_batchdb}"));
    row
}

/// The worker loop users run, `Db::run` (1 worker, durability normal, a runner that reads the
/// payload and writes nothing), against the hand-written queue of P4-n1: since session 9 the
/// loop claims each next job in the transaction that completes the last one.
pub fn p4r(plan: &Plan, s: &Scratch) -> Row {
    let mut row = Row::new(
        "P4r",
        "run(): claim + complete (empty output) by the run loop, durability normal, 1 worker",
        "jobs/s",
        "UPDATE…RETURNING claim txn + INSERT result/DELETE txn",
        Some(0.7),
    );
    let rounds = pair(
        plan.reps,
        || {
            let (path, db) = filled(plan, s, Durability::Normal);
            let start = Instant::now();
            // A stop after one slice (the queue holds more than a slice's worth).
            let (stopper, slice) = (db.clone(), plan.slice);
            let timer = std::thread::spawn(move || {
                std::thread::sleep(slice);
                stopper.stop();
            });
            let report = db
                .run(RunOptions { workers: 1, until_empty: true, ..Default::default() }, |job| {
                    std::io::copy(&mut job.io().0, &mut std::io::sink()).map(|_| ())
                })
                .expect("run");
            let rate = report.completed as f64 / start.elapsed().as_secs_f64();
            timer.join().expect("timer");
            drop(db);
            s.done(&path);
            rate
        },
        || {
            let path = s.db();
            {
                let c = baseline::open(&path, false);
                baseline::queue_schema(&c);
                baseline::queue_fill(&c, plan.queue);
            }
            let (rate, _) = raw_cycle(&path, Durability::Normal, 1, plan.slice);
            s.done(&path);
            rate
        },
    );
    row.set(rounds);
    row
}

/// Issue 19: the claim cycle over 10 named queues, two of them limited and one paused, against
/// the plain cycle (default queue only) with the same number of claimable instances.
pub fn p4q(plan: &Plan, s: &Scratch) -> Row {
    let mut row = Row::new(
        "P4q",
        "claim + complete over 10 queues (2 limited, 1 paused), normal, 1 worker",
        "jobs/s",
        "plain P4 cycle (same run, same claimable count)",
        Some(0.9),
    );
    let n = plan.queue / 2;
    let per = (n / 9).max(1);
    let rounds = pair(
        plan.reps,
        || {
            let path = s.db();
            let db = open(&path, Durability::Normal);
            db.limit("q0", 4).expect("limit");
            db.limit("q1", 4).expect("limit");
            db.pause("q2").expect("pause");
            let t = tag();
            for q in 0..10u64 {
                let opts = PushOptions { queue: Some(format!("q{q}")), ..Default::default() };
                // The paused queue holds as many as the others: they are skipped, not claimed.
                let batch: Vec<Vec<u8>> = (0..per as u64).map(|i| payload(t, q * 1_000_000 + i)).collect();
                for chunk in batch.chunks(1000) {
                    db.add_batch_with(chunk, &opts).expect("fill");
                }
            }
            let (rate, _) = batchdb_cycle(&db, 1, plan.slice);
            drop(db);
            s.done(&path);
            rate
        },
        || rust_cycle(plan, s, Durability::Normal, per * 9),
    );
    row.set(rounds);
    row
}

/// Issue 11: the claim cycle with mixed priorities and delays, against the plain cycle.
pub fn p4m(plan: &Plan, s: &Scratch, _p4_plain: Option<f64>) -> Row {
    let mut row = Row::new(
        "P4m",
        "claim + complete, mixed priorities (0–2) and 1/4 delayed 1 h, normal, 1 worker",
        "jobs/s",
        "plain P4 cycle (same run, same ready count)",
        Some(0.9),
    );
    let n = plan.queue / 2;
    let rounds = pair(
        plan.reps,
        || {
            let path = s.db();
            let db = open(&path, Durability::Normal);
            let t = tag();
            let total = n + n / 3;
            let next = AtomicU64::new(0);
            std::thread::scope(|sc| {
                for _ in 0..4 {
                    let (db, next) = (db.clone(), &next);
                    sc.spawn(move || loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total as u64 {
                            break;
                        }
                        let delay = if i % 4 == 0 { Duration::from_secs(3600) } else { Duration::ZERO };
                        let opts = PushOptions { priority: (i % 3) as i32, delay, ..Default::default() };
                        db.add_with(&payload(t, i)[..], &opts).expect("add_with");
                    });
                }
            });
            let (rate, _) = batchdb_cycle(&db, 1, plan.slice);
            drop(db);
            s.done(&path);
            rate
        },
        || rust_cycle(plan, s, Durability::Normal, n),
    );
    row.set(rounds);
    row
}

// ---------------------------------------------------------------------------------------------
// P5: a big blob, in child processes so that each peak RSS is its own.

/// The stream of P5: 1 MiB of pseudo-random bytes, with a counter in its first 8 bytes.
struct Stream {
    block: Vec<u8>,
    n: u64,
}

impl Stream {
    fn new() -> Stream {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let block = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Stream { block, n: 0 }
    }

    fn next(&mut self) -> &[u8] {
        self.n += 1;
        self.block[..8].copy_from_slice(&self.n.to_le_bytes());
        &self.block
    }
}

fn maxrss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

/// `--child KIND DIR BYTES`: one P5 side; prints JSON.
pub fn child(args: &[String]) -> i32 {
    let (kind, dir, size) = (&args[0], Path::new(&args[1]), args[2].parse::<u64>().expect("bytes"));
    let mib = size as f64 / (1 << 20) as f64;
    let mut stream = Stream::new();
    let blocks = size >> 20;
    let out = match kind.as_str() {
        "p5-batchdb" => {
            let db = open(&dir.join("big.db"), Durability::Full);
            let t = Instant::now();
            let mut w = db.writer();
            for _ in 0..blocks {
                w.write_all(stream.next()).expect("write");
            }
            let key = w.create().expect("create");
            let ingest = mib / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut r = db.get(&key).expect("get");
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0u64;
            loop {
                let n = r.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            assert_eq!(got, size);
            let read = mib / t.elapsed().as_secs_f64();
            json!({"ingest": ingest, "read": read, "maxrss_kib": maxrss_kib()})
        }
        "p5-raw" => {
            let c = baseline::open(&dir.join("raw.db"), false);
            baseline::chunks_schema(&c);
            let chunk = 256 << 10;
            let t = Instant::now();
            let mut seq = 0;
            for _ in 0..blocks {
                for part in stream.next().chunks(chunk) {
                    baseline::chunk_insert(&c, seq, part);
                    seq += 1;
                }
            }
            // The blob's durable publication: one small commit at synchronous FULL.
            c.execute_batch("PRAGMA synchronous = FULL").expect("sync");
            baseline::chunk_insert(&c, -1, b"");
            let ingest = mib / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut got = 0u64;
            for i in 0..seq {
                got += baseline::chunk_get(&c, i).expect("chunk").len() as u64;
            }
            assert_eq!(got, size);
            let read = mib / t.elapsed().as_secs_f64();
            json!({"ingest": ingest, "read": read, "maxrss_kib": maxrss_kib()})
        }
        "p5-sha" => {
            let t = Instant::now();
            let mut h = Sha256::new();
            for _ in 0..blocks {
                h.update(stream.next());
            }
            std::hint::black_box(h.finalize());
            let rate = mib / t.elapsed().as_secs_f64();
            json!({"sha256": rate, "maxrss_kib": maxrss_kib()})
        }
        k => {
            eprintln!("unknown child {k}");
            return 2;
        }
    };
    println!("{out}");
    0
}

fn run_child(s: &Scratch, kind: &str, size: u64) -> Value {
    let dir = s.dir();
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new(exe)
        .args(["--child", kind, dir.to_str().unwrap(), &size.to_string()])
        .output()
        .expect("spawn child");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "child {kind}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("child json")
}

pub fn p5(plan: &Plan, s: &Scratch) -> Vec<Row> {
    let size = plan.big;
    let label = if size >= 1 << 30 { format!("{} GiB", size >> 30) } else { format!("{} MiB", size >> 20) };
    let b = run_child(s, "p5-batchdb", size);
    let r = run_child(s, "p5-raw", size);
    let h = run_child(s, "p5-sha", size);
    let sha = h["sha256"].as_f64().unwrap();
    let rss_mib = b["maxrss_kib"].as_f64().unwrap() / 1024.0;
    let mut rows = Vec::new();
    for (phase, what) in
        [("ingest", "ingest (Writer, then create; durability full)"), ("read", "verified read")]
    {
        let raw = r[phase].as_f64().unwrap();
        let mut row = Row::new(
            &format!("P5-{phase}"),
            &format!("{label} blob {what}"),
            "MiB/s",
            &format!("min(sha256 {sha:.0}, raw chunk rows {raw:.0})"),
            Some(0.8),
        );
        row.batchdb = b[phase].as_f64();
        row.baseline = Some(sha.min(raw));
        row.extra = json!({"sha256_mib_s": sha, "raw_chunks_mib_s": raw, "batchdb_peak_rss_mib": rss_mib,
                           "raw_peak_rss_mib": r["maxrss_kib"].as_f64().unwrap() / 1024.0,
                           "conditions_met": rss_mib < 64.0});
        row.notes
            .push(format!("peak RSS of the batchdb child (ingest + read): {rss_mib:.1} MiB (target < 64)"));
        rows.push(row);
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// P6: the P4 cycle from C, Go and Node.

/// One binding's cycle program: how to start it, or why it was not built.
struct CycleProgram<'a> {
    lang: &'static str,
    /// The program and its leading arguments; `DB full|normal SECONDS` follow.
    command: Option<Vec<String>>,
    missing: String,
    workload: &'a str,
    target: f64,
}

/// Runs `command DB DURABILITY SECONDS` on a freshly filled database; jobs/s from its
/// `{"jobs": N, "seconds": S}`.
fn external_cycle(plan: &Plan, s: &Scratch, d: Durability, lang: &str, command: &[String]) -> f64 {
    let path = s.db();
    fill(&open(&path, d), plan.queue);
    let out = Command::new(&command[0])
        .args(&command[1..])
        .args([path.to_str().unwrap(), dname(d), &plan.slice.as_secs_f64().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("run {lang} cycle {}: {e}", command[0]));
    assert!(out.status.success(), "{lang} cycle: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{lang} cycle printed {:?}: {e}", String::from_utf8_lossy(&out.stdout)));
    s.done(&path);
    let jobs = v["jobs"].as_f64().expect("jobs");
    assert!(jobs > 0.0, "{lang} cycle completed no job");
    jobs / v["seconds"].as_f64().expect("seconds")
}

pub fn p6(plan: &Plan, s: &Scratch, peers: &Peers) -> Vec<Row> {
    let programs = [
        CycleProgram {
            lang: "C",
            command: peers.c_cycle.as_ref().map(|b| vec![b.display().to_string()]),
            missing: "C cycle program not built (benches/run.sh builds it)".into(),
            workload: "through the C ABI",
            target: 0.95,
        },
        CycleProgram {
            lang: "Go",
            command: peers.go_cycle.as_ref().map(|b| vec![b.display().to_string()]),
            missing: peers
                .go_status
                .clone()
                .unwrap_or_else(|| "Go cycle program not built (benches/run.sh builds it)".into()),
            workload: "through the Go binding (Claim, Read, Complete)",
            target: 0.8,
        },
        CycleProgram {
            lang: "Node",
            command: peers.node_cycle.as_ref().map(|js| vec!["node".into(), js.display().to_string()]),
            missing: peers
                .node_status
                .clone()
                .unwrap_or_else(|| "Node cycle program not set up (benches/run.sh does it)".into()),
            workload: "through the Node binding: run() with a trivial runner (it has no public claim), \
                       counting result events",
            target: 0.5,
        },
    ];
    let mut rows = Vec::new();
    for p in &programs {
        for d in [Durability::Normal, Durability::Full] {
            let mut row = Row::new(
                &format!("P6-{}-{}", p.lang, dname(d)),
                &format!("P4 cycle (1 worker, durability {}) {}", dname(d), p.workload),
                "jobs/s",
                "the same cycle from Rust",
                Some(p.target),
            );
            match &p.command {
                None => row.notes.push(format!("not measured: {}", p.missing)),
                Some(command) => {
                    let rounds = pair(
                        plan.reps,
                        || external_cycle(plan, s, d, p.lang, command),
                        || rust_cycle(plan, s, d, plan.queue),
                    );
                    row.set(rounds);
                    row.notes.push(format!(
                        "{} runs in a fresh process on a fresh fill of {} jobs, against an in-process Rust loop",
                        p.lang, plan.queue
                    ));
                }
            }
            rows.push(row);
        }
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// P7: the original JavaScript batchdb.

fn batchdb_add_then_run(s: &Scratch, n: usize, workers: usize) -> (f64, f64) {
    let path = s.db();
    let db = open(&path, Durability::Normal);
    let t = tag();
    let start = Instant::now();
    for i in 0..n {
        db.add(&payload(t, i as u64)[..]).expect("add");
    }
    let add = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let report = db
        .run(RunOptions { workers, until_empty: true, ..Default::default() }, |job| {
            let mut buf = Vec::new();
            job.read_to_end(&mut buf).map(|_| ())
        })
        .expect("run");
    let run = report.completed as f64 / start.elapsed().as_secs_f64();
    assert_eq!(report.completed as usize, n);
    drop(db);
    s.done(&path);
    (add, run)
}

pub fn p7(plan: &Plan, s: &Scratch, peers: &Peers) -> Vec<Row> {
    let n = plan.original_jobs;
    let mut add = Row::new(
        "P7-add",
        &format!("add of {n} small jobs, one at a time"),
        "jobs/s",
        "original JS batchdb 2.1.1 (levelup 0.19.1 + leveldown 6.1.1)",
        Some(10.0),
    );
    let mut run = Row::new(
        "P7-run",
        &format!("run cycle of {n} jobs, trivial in-process runner"),
        "jobs/s",
        "original JS batchdb 2.1.1 (levelup 0.19.1 + leveldown 6.1.1)",
        Some(10.0),
    );
    let (a, r) = batchdb_add_then_run(s, n, 1);
    add.batchdb = Some(a);
    run.batchdb = Some(r);
    match &peers.original {
        None => {
            let why = peers.original_status.clone().unwrap_or_else(|| "not installed".into());
            add.notes.push(format!("original not measured: {why}"));
            run.notes.push(format!("original not measured: {why}"));
        }
        Some(dir) => {
            let scratch = s.dir();
            let out = Command::new("node")
                .current_dir(dir)
                .args(["bench.js", scratch.to_str().unwrap(), &n.to_string()])
                .output();
            let _ = std::fs::remove_dir_all(&scratch);
            match out {
                Ok(o) if o.status.success() => {
                    let v: Value = serde_json::from_slice(&o.stdout).expect("original json");
                    add.baseline = v["add"].as_f64();
                    run.baseline = v["run"].as_f64();
                }
                Ok(o) => {
                    let e = format!("original failed: {}", String::from_utf8_lossy(&o.stderr).trim());
                    add.notes.push(e.clone());
                    run.notes.push(e);
                }
                Err(e) => {
                    add.notes.push(format!("node did not start: {e}"));
                    run.notes.push(format!("node did not start: {e}"));
                }
            }
        }
    }
    add.notes
        .push("batchdb at durability normal; the original's blob store writes files without fsync".into());
    vec![add, run]
}

// ---------------------------------------------------------------------------------------------
// P8: effectum.

pub fn p8(plan: &Plan, s: &Scratch, peers: &Peers) -> Vec<Row> {
    let (ne, nc) = plan.effectum;
    let name = "effectum 0.7.0 (synchronous NORMAL)";
    let mut enq =
        Row::new("P8-enqueue", &format!("enqueue {ne} jobs one at a time"), "jobs/s", name, Some(3.0));
    let mut c1 = Row::new(
        "P8-cycle-c1",
        &format!("no-op job cycle, {nc} jobs, concurrency 1"),
        "jobs/s",
        name,
        Some(3.0),
    );
    let mut c4 = Row::new(
        "P8-cycle-c4",
        &format!("no-op job cycle, {nc} jobs, concurrency 4"),
        "jobs/s",
        name,
        Some(3.0),
    );
    // batchdb at durability normal, as effectum.
    {
        let path = s.db();
        let db = open(&path, Durability::Normal);
        let t = tag();
        let start = Instant::now();
        for i in 0..ne {
            db.add(&payload(t, i as u64)[..]).expect("add");
        }
        enq.batchdb = Some(ne as f64 / start.elapsed().as_secs_f64());
        drop(db);
        s.done(&path);
    }
    for (row, workers) in [(&mut c1, 1), (&mut c4, 4)] {
        let path = s.db();
        let db = open(&path, Durability::Normal);
        fill(&db, nc);
        let start = Instant::now();
        let report = db
            .run(RunOptions { workers, until_empty: true, ..Default::default() }, |_job| {
                Ok::<(), std::io::Error>(())
            })
            .expect("run");
        assert_eq!(report.completed as usize, nc);
        row.batchdb = Some(nc as f64 / start.elapsed().as_secs_f64());
        drop(db);
        s.done(&path);
    }
    match &peers.effectum {
        None => {
            for r in [&mut enq, &mut c1, &mut c4] {
                r.notes.push("effectum binary not built (benches/run.sh builds it)".into());
            }
        }
        Some(bin) => {
            let dir = s.dir();
            let out = Command::new(bin)
                .args([dir.to_str().unwrap(), &ne.to_string(), &nc.to_string()])
                .output()
                .expect("run effectum");
            let _ = std::fs::remove_dir_all(&dir);
            assert!(out.status.success(), "effectum: {}", String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_slice(&out.stdout).expect("effectum json");
            enq.baseline = v["enqueue"].as_f64();
            c1.baseline = v["cycle_c1"].as_f64();
            c4.baseline = v["cycle_c4"].as_f64();
        }
    }
    vec![enq, c1, c4]
}

// ---------------------------------------------------------------------------------------------
// P9: durable adds from 8 threads.

fn threaded_adds(s: &Scratch, threads: usize, slice: Duration, d: Durability) -> (f64, bool) {
    let path = s.db();
    let db = open(&path, d);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads {
            let (db, done) = (db.clone(), &done);
            sc.spawn(move || {
                let t = tag();
                let mut i = 0;
                while start.elapsed() < slice {
                    db.add(&payload(t, i)[..]).expect("add");
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let n = done.into_inner();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(db);
    // Every returned add is in the file after reopening.
    let reopened = open(&path, d);
    let stats = reopened.stats().expect("stats");
    let ok = stats.jobs == n && stats.pending == n;
    drop(reopened);
    s.done(&path);
    (rate, ok)
}

pub fn p9(plan: &Plan, s: &Scratch, p1: Option<f64>) -> Row {
    let mut row = Row::new(
        "P9",
        "add from 8 threads, durability full (group commit)",
        "jobs/s",
        "1-thread add at full (P1's workload, re-measured alongside)",
        Some(5.0),
    );
    let mut all_ok = true;
    let rounds = pair(
        plan.reps,
        || {
            let (r, ok) = threaded_adds(s, 8, plan.slice, Durability::Full);
            all_ok &= ok;
            r
        },
        || threaded_adds(s, 1, plan.slice, Durability::Full).0,
    );
    row.set(rounds);
    row.extra = json!({"p1_batchdb_rate": p1, "reopened_counts_match": all_ok, "conditions_met": all_ok});
    row.notes.push(format!(
        "still durable: every add returns after its group's commit at synchronous=FULL; after reopening, \
         jobs and pending counts equal the adds returned: {all_ok}"
    ));
    row
}

// ---------------------------------------------------------------------------------------------
// Scaling curves.

pub fn curves(plan: &Plan, s: &Scratch) -> Value {
    let mut workers = Vec::new();
    for w in [1usize, 2, 4, 8] {
        let mut point = json!({"workers": w});
        for d in [Durability::Normal, Durability::Full] {
            let (path, db) = filled(plan, s, d);
            let (rate, _) = batchdb_cycle(&db, w, plan.slice);
            drop(db);
            s.done(&path);
            point[format!("cycle_{}", dname(d))] = json!(rate);
        }
        point["add_full"] = json!(threaded_adds(s, w, plan.slice, Durability::Full).0);
        eprintln!("  workers {w}: {point}");
        workers.push(point);
    }
    let mut sizes = Vec::new();
    for &size in plan.sizes {
        let path = s.db();
        let db = open(&path, Durability::Normal);
        let mut data = vec![0u8; size];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let rate = timed(plan.slice, |i| {
            let n = data.len().min(8);
            data[..n].copy_from_slice(&i.to_le_bytes()[..n]);
            db.add(&data[..]).expect("add");
        });
        drop(db);
        s.done(&path);
        let point =
            json!({"bytes": size, "adds_per_s": rate, "mib_per_s": rate * size as f64 / (1 << 20) as f64});
        eprintln!("  payload {size}: {point}");
        sizes.push(point);
    }
    json!({"workers": workers, "payload": sizes,
           "notes": "workers: claim+complete cycle (empty output) at both durabilities and add at full, \
                     one timed slice each; payload: add at durability normal, 1 thread"})
}

// ---------------------------------------------------------------------------------------------
// P11, P12: pipelines (issue 20).

/// Pushes `n` no-op jobs, as a DAG (a root, its fan-out, one sink after all of them) or
/// plainly, and runs them to the end with 2 workers; returns nodes per second, push to finish.
fn dag_run(s: &Scratch, n: usize, dag: bool) -> f64 {
    let path = s.db();
    let db = open(&path, Durability::Normal);
    let t = tag();
    let start = Instant::now();
    let (root, rc) = db.add(&payload(t, 0)[..]).expect("add root");
    let dep = PushOptions { after: vec![(root, rc)], ..Default::default() };
    let plain = PushOptions::default();
    let mut middle = Vec::with_capacity(n);
    for i in 1..n as u64 - 1 {
        let (k, p) = db.add_with(&payload(t, i)[..], if dag { &dep } else { &plain }).expect("add node");
        middle.push((k, p.created));
    }
    let sink = PushOptions { after: if dag { middle } else { Vec::new() }, ..Default::default() };
    db.add_with(&payload(t, n as u64)[..], &sink).expect("add sink");
    let report = db
        .run(RunOptions { workers: 2, until_empty: true, ..Default::default() }, |_job| {
            Ok::<(), std::io::Error>(())
        })
        .expect("run");
    assert_eq!(report.completed as usize, n, "every node ran");
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(db);
    s.done(&path);
    rate
}

pub fn p11(plan: &Plan, s: &Scratch) -> Row {
    let n = if plan.smoke { 200 } else { 10_000 };
    let mut row = Row::new(
        "P11",
        &format!("a {n}-node DAG of no-op jobs (fan-out, then fan-in), pushed and run, normal, 2 workers"),
        "nodes/s",
        "the same jobs without dependencies (same run)",
        Some(0.7),
    );
    let rounds = pair(plan.reps, || dag_run(s, n, true), || dag_run(s, n, false));
    row.set(rounds);
    row
}

pub fn p12(plan: &Plan, s: &Scratch) -> Row {
    let mut row = Row::new(
        "P12",
        "a memo push that finds a result, durability full",
        "pushes/s",
        "a plain add of an existing job (same run)",
        Some(1.0),
    );
    let path = s.db();
    let db = open(&path, Durability::Full);
    let t = tag();
    let (key, _) = db.add(&payload(t, 0)[..]).expect("add");
    let job = db.claim().expect("claim").expect("one");
    job.complete().expect("complete");
    let memo = PushOptions { memo: true, ..Default::default() };
    let rounds = pair(
        plan.reps,
        || {
            timed(plan.slice, |_| {
                let p = db.push_with(&key, &memo).expect("memo push");
                assert!(p.cached.is_some());
            })
        },
        || {
            timed(plan.slice, |_| {
                db.add(&payload(t, 0)[..]).expect("add");
            })
        },
    );
    drop(db);
    s.done(&path);
    row.set(rounds);
    row
}

// ---------------------------------------------------------------------------------------------
// P4ui: the cycle while the dashboard is open (issue 21).

/// Starts `batchdb ui` on `db` and returns it with its address (from its first line).
fn start_ui(cli: &Path, db: &Path) -> Option<(std::process::Child, String)> {
    use std::io::BufRead;
    let mut child = Command::new(cli)
        .arg("--db")
        .arg(db)
        .args(["ui", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?).read_line(&mut line).ok()?;
    let addr = line.split("http://").nth(1)?.trim().trim_end_matches('/').to_string();
    Some((child, addr))
}

/// One GET, the whole answer read; what a page refresh or a scrape costs the server.
fn http_get(addr: &str, path: &str) {
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let _ = std::io::copy(&mut s, &mut std::io::sink());
    }
}

pub fn p4ui(plan: &Plan, s: &Scratch, peers: &Peers) -> Row {
    let mut row = Row::new(
        "P4ui",
        "claim + complete, normal, 1 worker, while the dashboard refreshes (overview and /metrics every 500 ms)",
        "jobs/s",
        "the same cycle without a dashboard (same run)",
        Some(0.95),
    );
    let Some(cli) = peers.cli.clone() else {
        row.notes.push("not measured: no --cli given".into());
        return row;
    };
    let rounds = pair(
        plan.reps,
        || {
            let (path, db) = filled(plan, s, Durability::Normal);
            let Some((mut ui, addr)) = start_ui(&cli, &path) else { return 0.0 };
            let stop = std::sync::atomic::AtomicBool::new(false);
            let rate = std::thread::scope(|sc| {
                sc.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        http_get(&addr, "/api/overview");
                        http_get(&addr, "/metrics");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                });
                let (rate, _) = batchdb_cycle(&db, 1, plan.slice);
                stop.store(true, Ordering::Relaxed);
                rate
            });
            let _ = ui.kill();
            let _ = ui.wait();
            drop(db);
            s.done(&path);
            rate
        },
        || {
            let (path, db) = filled(plan, s, Durability::Normal);
            let (rate, _) = batchdb_cycle(&db, 1, plan.slice);
            drop(db);
            s.done(&path);
            rate
        },
    );
    row.set(rounds);
    row
}
