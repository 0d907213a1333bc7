//! The reliability suite (issue 9): crash soak, multiprocess stress, corruption, bad input,
//! disk full, a model-based test of the queue, and the WAL bound.
//!
//! Run it with `cargo test --release --test reliability -- --nocapture`; each test prints a
//! one-line summary with its counts. `BATCHDB_LONG=1` runs the long mode (more kills, longer
//! stress and WAL runs, more model cases). RELIABILITY.md lists what each test proves.

mod common;

use batchdb::{Db, Error, Hash, Options};
use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn long() -> bool {
    std::env::var("BATCHDB_LONG").is_ok_and(|v| v == "1")
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn time_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.as_nanos() as u64 ^ std::process::id() as u64
}

/// Reads a whole blob; the library verifies it against its hash at the end.
fn read_blob(db: &Db, hash: &Hash) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    db.get(hash)?.read_to_end(&mut out).map_err(Error::from)?;
    Ok(out)
}

/// Appends one whole line with one write(2) to an O_APPEND file: a kill never splits it.
fn ledger_line(f: &mut std::fs::File, line: String) {
    f.write_all(line.as_bytes()).expect("ledger write");
}

/// SHA-256 of the database file and its WAL, to show that nothing changed.
fn file_sum(path: &Path) -> String {
    let mut all = std::fs::read(path).unwrap_or_default();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    all.extend(std::fs::read(PathBuf::from(wal)).unwrap_or_default());
    Hash::of(&all).to_string()
}

// ---------------------------------------------------------------------------------------
// R1: crash soak
// ---------------------------------------------------------------------------------------

fn soak_opts(o: &mut Options) {
    o.lease = Duration::from_millis(1000);
    o.max_attempts = 1000;
    o.chunk_size = 64 * 1024;
}

/// A worker process of the soak: adds, pushes, writes blobs, claims and completes, and
/// appends a ledger line after every acknowledged change, until it is killed.
fn soak_worker() {
    let db = open_with(Path::new(&env("SOAK_DB")), soak_opts);
    let mut log = OpenOptions::new().append(true).create(true).open(env("SOAK_LEDGER")).unwrap();
    let seed: u64 = env("SOAK_SEED").parse().unwrap();
    let mut rng = Rng::new(seed);
    let mut keys: Vec<Hash> = Vec::new();
    for i in 0u64.. {
        let r = rng.below(100);
        if r < 30 {
            let (k, c) = if rng.below(10) == 0 {
                let len = 100_000 + rng.below(200_000);
                db.add(Pattern::new(rng.next(), len)).unwrap()
            } else {
                db.add(format!("soak job {seed} {i}").as_bytes()).unwrap()
            };
            ledger_line(&mut log, format!("add {k} {c}\n"));
            keys.push(k);
        } else if r < 40 && !keys.is_empty() {
            let k = keys[rng.below(keys.len() as u64) as usize];
            let c = db.push(&k).unwrap();
            ledger_line(&mut log, format!("push {k} {c}\n"));
        } else if r < 47 {
            let k = db.create(Pattern::new(rng.next(), rng.below(1 << 20))).unwrap();
            ledger_line(&mut log, format!("blob {k}\n"));
        } else {
            let Some(mut job) = db.claim().unwrap() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let (k, c, a) = (job.key(), job.created(), job.attempt());
            ledger_line(&mut log, format!("start {k} {c} {a}\n"));
            std::io::copy(&mut job, &mut std::io::sink()).expect("payload verifies");
            let len = if rng.below(12) == 0 { (1 << 20) + rng.below(2 << 20) } else { rng.below(2000) };
            writeln!(job, "out {k} {c} {a}").unwrap();
            std::io::copy(&mut Pattern::new(c as u64 ^ a as u64, len), &mut job).unwrap();
            match job.complete() {
                Ok(h) => ledger_line(&mut log, format!("done {k} {c} {a} {h}\n")),
                Err(Error::Stale(_)) => ledger_line(&mut log, format!("stale {k} {c} {a}\n")),
                Err(e) => panic!("complete: {e}"),
            }
        }
    }
}

/// A gc process of the soak: collects garbage over and over until it is killed.
fn soak_gc() {
    let db = open_with(Path::new(&env("SOAK_DB")), soak_opts);
    loop {
        db.gc().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Default)]
struct Ledger {
    instances: Vec<(Hash, i64)>,
    blobs: Vec<Hash>,
    /// created -> attempts started, in ledger order.
    starts: HashMap<i64, Vec<u32>>,
    /// created -> (key, attempt, result hash).
    done: HashMap<i64, (Hash, u32, Hash)>,
    adds: u64,
    pushes: u64,
}

fn read_ledger(path: &Path) -> Ledger {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut l = Ledger::default();
    for line in text.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        let h = |i: usize| w[i].parse::<Hash>().unwrap();
        let n = |i: usize| w[i].parse::<i64>().unwrap();
        match w[0] {
            "add" => {
                l.adds += 1;
                l.instances.push((h(1), n(2)));
            }
            "push" => {
                l.pushes += 1;
                l.instances.push((h(1), n(2)));
            }
            "blob" => l.blobs.push(h(1)),
            "start" => l.starts.entry(n(2)).or_default().push(n(3) as u32),
            "done" => {
                assert!(
                    l.done.insert(n(2), (h(1), n(3) as u32, h(4))).is_none(),
                    "two acked results: {line}"
                );
            }
            "stale" => {}
            other => panic!("bad ledger line {other:?}"),
        }
    }
    l
}

#[derive(Default)]
struct SoakState {
    /// Instances whose result or fail row the driver pruned on purpose.
    pruned: HashSet<i64>,
    /// Blobs verified through get (they are immutable, so once is enough).
    verified: HashSet<Hash>,
    /// created -> the attempt whose output is the stored result.
    completed_by: HashMap<i64, u32>,
    lost: u64,
    double_runs: u64,
}

/// Everything the crash-safety promise says, checked against the ledger while no process
/// runs.
fn soak_verify(db: &Db, ledger: &Path, st: &mut SoakState) -> Ledger {
    let l = read_ledger(ledger);
    let pending: HashMap<i64, Hash> = db.pending().map(|r| r.unwrap()).map(|r| (r.created, r.job)).collect();
    let results: HashMap<i64, (Hash, Hash)> =
        db.results().map(|r| r.unwrap()).map(|r| (r.created, (r.key, r.hash))).collect();
    let fails: HashMap<i64, Hash> = db.failures().map(|r| r.unwrap()).map(|r| (r.created, r.key)).collect();
    let jobs: HashSet<Hash> = db.jobs().map(|r| r.unwrap().key).collect();
    for (k, c) in &l.instances {
        let found = pending.get(c).or(results.get(c).map(|r| &r.0)).or(fails.get(c));
        match found {
            Some(key) => assert_eq!(key, k, "instance {c} belongs to another job"),
            None if st.pruned.contains(c) => {}
            None => {
                st.lost += 1;
                panic!("acknowledged instance {k} {c} is lost");
            }
        }
        assert!(jobs.contains(k), "job {k} of an acknowledged add is missing");
    }
    for k in l.blobs.iter().chain(jobs.iter()) {
        assert!(jobs.contains(k), "acknowledged blob {k} is not listed");
        if st.verified.insert(*k) {
            read_blob(db, k).unwrap_or_else(|e| panic!("blob {k}: {e}"));
        }
    }
    for (c, (k, a, h)) in &l.done {
        match results.get(c) {
            Some((rk, rh)) => assert_eq!((rk, rh), (k, h), "acked result {c} differs"),
            None if st.pruned.contains(c) => {}
            None => {
                st.lost += 1;
                panic!("acknowledged result of {k} {c} (attempt {a}) is lost");
            }
        }
    }
    for (c, (k, h)) in &results {
        if !st.completed_by.contains_key(c) {
            let out = read_blob(db, h).unwrap_or_else(|e| panic!("result {c}: {e}"));
            let head = String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned();
            let w: Vec<&str> = head.lines().next().unwrap().split(' ').collect();
            assert_eq!((w[0], w[1], w[2]), ("out", k.to_string().as_str(), c.to_string().as_str()));
            st.completed_by.insert(*c, w[3].parse().unwrap());
            st.verified.insert(*h);
        }
    }
    for (c, a) in &st.completed_by {
        if let Some((_, da, _)) = l.done.get(c) {
            assert_eq!(da, a, "instance {c}: the acked attempt is not the stored one");
        }
        let starts = l.starts.get(c).cloned().unwrap_or_default();
        let after = starts.iter().filter(|s| *s > a).count() as u64;
        st.double_runs += after;
        assert_eq!(after, 0, "instance {c} completed by attempt {a} was started again: {starts:?}");
    }
    for (c, s) in &l.starts {
        let distinct: HashSet<_> = s.iter().collect();
        assert_eq!(distinct.len(), s.len(), "instance {c} got the same attempt twice: {s:?}");
    }
    let report = db.check().unwrap();
    assert!(report.is_clean(), "check after a kill: {:?}", report.problems);
    l
}

#[test]
fn r1_crash_soak() {
    match helper_role().as_deref() {
        Some("soak-worker") => return soak_worker(),
        Some("soak-gc") => return soak_gc(),
        Some(_) => return,
        None => {}
    }
    let t = temp_path();
    let ledger = t.dir.path().join("ledger");
    let want_kills = if long() { 200 } else { 50 };
    let seed = time_seed();
    let mut rng = Rng::new(seed);
    let db = open_with(&t.path, soak_opts);
    let mut st = SoakState::default();
    let (mut kills, mut rounds, mut gc_kills) = (0u64, 0u64, 0u64);
    let mut l = Ledger::default();
    while kills < want_kills {
        rounds += 1;
        let gc_round = rounds % 5 == 0;
        let roles = ["soak-worker", if gc_round { "soak-gc" } else { "soak-worker" }];
        let mut children: Vec<_> = roles
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let args = [
                    ("SOAK_DB", t.path.display().to_string()),
                    ("SOAK_LEDGER", ledger.display().to_string()),
                    ("SOAK_SEED", (seed ^ (rounds << 8) ^ i as u64).to_string()),
                ];
                (role, spawn_helper("r1_crash_soak", role, &args))
            })
            .collect();
        // gc is killed early, while it is busy with the garbage that the driver made.
        let wait = if gc_round { 10 + rng.below(100) } else { 40 + rng.below(400) };
        std::thread::sleep(Duration::from_millis(wait));
        for (role, child) in &mut children {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("a {role} process died on its own before the kill: {status} (seed {seed})");
            }
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            if **role == "soak-gc" {
                gc_kills += 1;
            }
            std::thread::sleep(Duration::from_millis(rng.below(60)));
        }
        l = soak_verify(&db, &ledger, &mut st);
        if rounds % 5 == 4 {
            // Prune every result and fail row, so that the next round's gc process has
            // published blobs to remove when it is killed: a few large ones among them.
            for i in 0..3u64 {
                let (_, c) = db.add(format!("garbage {rounds} {i}").as_bytes()).unwrap();
                let mut job = db.claim().unwrap().unwrap();
                writeln!(job, "out {} {} {}", job.key(), job.created(), job.attempt()).unwrap();
                std::io::copy(&mut Pattern::new(c as u64, 4 << 20), &mut job).unwrap();
                job.complete().unwrap();
            }
            for r in db.results() {
                st.pruned.insert(r.unwrap().created);
            }
            for r in db.failures() {
                st.pruned.insert(r.unwrap().created);
            }
            db.prune(i64::MAX).unwrap();
        }
    }
    db.gc().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    println!(
        "R1 crash soak: {kills} kills ({gc_kills} of gc) in {rounds} rounds, {} acked adds, {} acked pushes, \
         {} acked blobs, {} acked results, {} lost, {} double runs, check clean (seed {seed})",
        l.adds,
        l.pushes,
        l.blobs.len(),
        l.done.len(),
        st.lost,
        st.double_runs
    );
}

// ---------------------------------------------------------------------------------------
// R2: multiprocess stress
// ---------------------------------------------------------------------------------------

fn stress_process() {
    let db = open(Path::new(&env("STRESS_DB")));
    let secs: u64 = env("STRESS_SECS").parse().unwrap();
    let id: u64 = env("STRESS_ID").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..2u64)
        .map(|th| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(time_seed() ^ (id << 4) ^ th);
                let (mut adds, mut dones, mut busy, mut errors) = (Vec::new(), Vec::new(), 0u64, 0u64);
                let mut note = |e: Error| match e {
                    Error::Busy(m) => {
                        eprintln!("BUSY: {m}");
                        busy += 1
                    }
                    e => {
                        eprintln!("stress error: {e}");
                        errors += 1
                    }
                };
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let r = rng.below(100);
                    if r < 40 {
                        match db.add(format!("stress {id} {th} {i}").as_bytes()) {
                            Ok((_, c)) => adds.push(c),
                            Err(e) => note(e),
                        }
                    } else if r < 80 {
                        match db.claim() {
                            Ok(Some(mut job)) => {
                                let c = job.created();
                                let mut p = Vec::new();
                                job.read_to_end(&mut p).unwrap();
                                write!(job, "done {c}").unwrap();
                                match job.complete() {
                                    Ok(_) => dones.push(c),
                                    Err(e) => note(e),
                                }
                            }
                            Ok(None) => {}
                            Err(e) => note(e),
                        }
                    } else if r < 97 {
                        let rows: Result<Vec<_>, _> = if r % 2 == 0 {
                            db.pending().map(|r| r.map(|_| ())).collect()
                        } else {
                            db.results().map(|r| r.map(|_| ())).collect()
                        };
                        if let Err(e) = rows {
                            note(e)
                        }
                    } else if let Err(e) = db.gc() {
                        note(e)
                    }
                }
                (adds, dones, busy, errors)
            })
        })
        .collect();
    let (mut adds, mut dones, mut busy, mut errors) = (Vec::new(), Vec::new(), 0, 0);
    for t in threads {
        let (a, d, b, e) = t.join().unwrap();
        adds.extend(a);
        dones.extend(d);
        busy += b;
        errors += e;
    }
    let out = PathBuf::from(env("STRESS_OUT"));
    let text = |v: &[i64]| v.iter().map(|c| format!("{c}\n")).collect::<String>();
    std::fs::write(out.with_extension("adds"), text(&adds)).unwrap();
    std::fs::write(out.with_extension("dones"), text(&dones)).unwrap();
    println!("STRESS-COUNTS {busy} {errors}");
}

#[test]
fn r2_multiprocess_stress() {
    match helper_role().as_deref() {
        Some("stress") => return stress_process(),
        Some(_) => return,
        None => {}
    }
    let t = temp_path();
    drop(open(&t.path));
    let secs = if long() { 60 } else { 10 };
    let children: Vec<_> = (0..4)
        .map(|i| {
            let args = [
                ("STRESS_DB", t.path.display().to_string()),
                ("STRESS_SECS", secs.to_string()),
                ("STRESS_ID", i.to_string()),
                ("STRESS_OUT", t.dir.path().join(format!("p{i}")).display().to_string()),
            ];
            spawn_helper("r2_multiprocess_stress", "stress", &args)
        })
        .collect();
    let (mut busy, mut errors) = (0u64, 0u64);
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a stress process failed: {}", out.status);
        let counts = after_marker(&out.stdout, "STRESS-COUNTS ");
        let v: Vec<u64> = counts.split_whitespace().map(|x| x.parse().unwrap()).collect();
        busy += v[0];
        errors += v[1];
    }
    let read = |name: String| -> Vec<i64> {
        std::fs::read_to_string(t.dir.path().join(name))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    };
    let adds: Vec<i64> = (0..4).flat_map(|i| read(format!("p{i}.adds"))).collect();
    let dones: Vec<i64> = (0..4).flat_map(|i| read(format!("p{i}.dones"))).collect();
    let done_set: HashSet<i64> = dones.iter().copied().collect();
    let duplicates = dones.len() - done_set.len();
    // Finish what is left, then every acknowledged add must have exactly one result.
    let db = open(&t.path);
    let mut drained = 0;
    while let Some(mut job) = db.claim().unwrap() {
        let c = job.created();
        write!(job, "done {c}").unwrap();
        job.complete().unwrap();
        drained += 1;
    }
    let results: Vec<_> = db.results().map(|r| r.unwrap()).collect();
    let by_created: HashMap<i64, Hash> = results.iter().map(|r| (r.created, r.hash)).collect();
    let lost = adds.iter().filter(|c| !by_created.contains_key(c)).count();
    for r in &results {
        assert_eq!(read_blob(&db, &r.hash).unwrap(), format!("done {}", r.created).into_bytes());
    }
    assert_eq!(db.failures().count(), 0, "no instance may fail");
    let report = db.check().unwrap();
    println!(
        "R2 multiprocess stress: 4 processes x 2 threads for {secs} s, {} adds, {} completes (+{drained} drained), \
         {busy} BUSY errors, {errors} other errors, {duplicates} duplicate results, {lost} instances lost, check {}",
        adds.len(),
        dones.len(),
        if report.is_clean() { "clean" } else { "NOT clean" }
    );
    assert_eq!((busy, errors, duplicates, lost), (0, 0, 0, 0));
    assert_eq!(results.len(), adds.len(), "one result per instance");
    assert!(report.is_clean(), "{:?}", report.problems);
}

// ---------------------------------------------------------------------------------------
// R3: corruption
// ---------------------------------------------------------------------------------------

#[test]
fn r3_flipped_chunk_bytes_are_always_detected() {
    let t = temp_path();
    let db = open_with(&t.path, |o| {
        o.chunk_size = 4096;
        fast(o)
    });
    let mut hashes = Vec::new();
    for i in 0..12u64 {
        hashes.push(db.create(Pattern::new(i + 1, 1 + i * 3000)).unwrap());
    }
    let raw = rusqlite::Connection::open(&t.path).unwrap();
    let chunks: Vec<(i64, i64, usize, Vec<u8>)> = raw
        .prepare(
            "SELECT c.blob, c.seq, length(c.data), b.hash FROM chunk c JOIN blob b ON b.id = c.blob \
             UNION ALL SELECT id, 0, length(data), hash FROM blob WHERE data IS NOT NULL",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as usize, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let trials = if long() { 2000 } else { 200 };
    let mut rng = Rng::new(time_seed());
    let (mut by_get, mut by_check) = (0, 0);
    for trial in 0..trials {
        let (blob, seq, len, hash) = &chunks[rng.below(chunks.len() as u64) as usize];
        let hash = hash_from_bytes(hash);
        let (_, original, inline) = common::sqlite_piece(&raw, &hash, *seq);
        let mut bad = original.clone();
        match trial % 10 {
            // Mostly one flipped byte; sometimes a chunk cut short or grown by a byte.
            0 => bad.truncate(rng.below(*len as u64) as usize),
            1 => bad.push(0),
            _ => bad[rng.below(*len as u64) as usize] ^= 1 + rng.below(255) as u8,
        }
        let set = |d: &Vec<u8>| common::set_sqlite_piece(&raw, *blob, *seq, inline, d);
        set(&bad);
        match read_blob(&db, &hash) {
            Err(Error::Corrupt(m)) if m.contains(&hash.short()) => by_get += 1,
            other => panic!("trial {trial}: get of damaged blob {hash}: {other:?}"),
        }
        let report = db.check().unwrap();
        let h = hash.to_string();
        assert!(
            report.problems.iter().any(|p| p.contains(&h)),
            "trial {trial}: check missed {h}: {report:?}"
        );
        assert_eq!(report.problems.len(), 1, "{report:?}");
        by_check += 1;
        set(&original);
    }
    assert!(db.check().unwrap().is_clean());
    println!(
        "R3 corruption: {trials} damaged chunks, detected by get {by_get}/{trials}, named by check {by_check}/{trials}"
    );
}

/// A hash stored as 32 raw bytes.
fn hash_from_bytes(b: &[u8]) -> Hash {
    hex::encode(b).parse().unwrap()
}

/// Opens, checks and reads everything; true if any step reported the damage. Any error must
/// be one of the clear kinds.
fn damage_detected(path: &Path, keys: &[Hash]) -> bool {
    let clear = |e: &Error| matches!(e, Error::Corrupt(_) | Error::Invalid(_) | Error::Io(_));
    let db = match Db::open(path, Options::default()) {
        Ok(db) => db,
        Err(e) => {
            assert!(clear(&e), "open: {e:?}");
            return true;
        }
    };
    let mut detected = false;
    match db.check() {
        Ok(r) => detected |= !r.is_clean(),
        Err(e) => {
            assert!(clear(&e), "check: {e:?}");
            detected = true;
        }
    }
    for k in keys {
        if let Err(e) = read_blob(&db, k) {
            assert!(clear(&e), "get: {e:?}");
            detected = true;
        }
    }
    for kind in [batchdb::ListKind::Job, batchdb::ListKind::Pending] {
        for row in db.list(kind) {
            if let Err(e) = row {
                assert!(clear(&e), "list: {e:?}");
                detected = true;
                break;
            }
        }
    }
    detected
}

#[test]
fn r3_truncated_file_and_damaged_pages_are_clear_errors() {
    let t = temp_path();
    let mut keys = Vec::new();
    {
        let db = open_with(&t.path, |o| o.chunk_size = 8192);
        for i in 0..40u64 {
            keys.push(db.add(Pattern::new(i + 7, 500 + i * 2000)).unwrap().0);
        }
    } // closing checkpoints the WAL into the file
    let raw = rusqlite::Connection::open(&t.path).unwrap();
    let free: i64 = raw.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
    let page: usize = raw.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap() as usize;
    drop(raw);
    assert_eq!(free, 0, "no free pages, so that any damaged page is in use");
    let pristine = std::fs::read(&t.path).unwrap();
    let pages = pristine.len() / page;
    let damaged = t.dir.path().join("damaged.db");
    let fresh = |bytes: &[u8]| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", damaged.display()));
        }
        std::fs::write(&damaged, bytes).unwrap();
    };
    for cut in [pristine.len() / 2, pristine.len() - page, 4096, 50] {
        fresh(&pristine[..cut]);
        assert!(damage_detected(&damaged, &keys), "file truncated to {cut} bytes went unnoticed");
    }
    let step = if long() { 1 } else { (pages / 40).max(1) };
    let mut damaged_pages = 0;
    for p in (0..pages).step_by(step) {
        let mut bytes = pristine.clone();
        bytes[p * page..p * page + 32].fill(0xA5);
        fresh(&bytes);
        assert!(damage_detected(&damaged, &keys), "damaged page {} of {pages} went unnoticed", p + 1);
        damaged_pages += 1;
    }
    println!(
        "R3 file damage: 4 truncations and {damaged_pages} damaged pages (of {pages}): all detected with a \
         clear error, no panic"
    );
}

// ---------------------------------------------------------------------------------------
// R5: disk full
// ---------------------------------------------------------------------------------------

#[allow(unsafe_code)]
fn limit_file_size(bytes: u64) {
    // SAFETY: setting a signal disposition to SIG_IGN and a resource limit have no memory
    // effects; this runs in a helper process of its own.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: libc::RLIM_INFINITY };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

fn disk_full_message(e: &Error) -> bool {
    let m = e.to_string().to_lowercase();
    matches!(e, Error::Io(_)) && (m.contains("disk full") || m.contains("file too large"))
}

fn disk_full_child() {
    let path = PathBuf::from(env("FULL_DB"));
    let db = open(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    limit_file_size(size + 512 * 1024);
    // A large blob write fails part way.
    let err = db.add(Pattern::new(99, 8 << 20)).unwrap_err();
    println!("BIG-ERR {}", err.to_string().replace('\n', " "));
    assert!(disk_full_message(&err), "large write: {err:?}");
    // Small adds go on until the limit is reached.
    let mut acked = Vec::new();
    let err = loop {
        match db.add(format!("small {}", acked.len()).as_bytes()) {
            Ok((k, c)) => acked.push(format!("{k}:{c}")),
            Err(e) => break e,
        }
        assert!(acked.len() < 100_000, "the file size limit never bit");
    };
    println!("SMALL-ERR {}", err.to_string().replace('\n', " "));
    assert!(disk_full_message(&err), "small add: {err:?}");
    // Reads go on; what was acknowledged is there.
    let listed = db.pending().count();
    let report = db.check().unwrap();
    assert!(report.is_clean(), "check under the limit: {:?}", report.problems);
    println!("CHILD-ACKED {} listed {listed}", acked.join(","));
}

#[test]
fn r5_disk_full_is_a_clear_io_error_and_work_resumes() {
    if helper_role().as_deref() == Some("full") {
        return disk_full_child();
    }
    if helper_role().is_some() {
        return;
    }
    let t = temp_path();
    let before: Vec<(Hash, i64)> = {
        let db = open(&t.path);
        (0..20u64).map(|i| db.add(Pattern::new(i + 1, 30_000)).unwrap()).collect()
    };
    let child = spawn_helper(
        "r5_disk_full_is_a_clear_io_error_and_work_resumes",
        "full",
        &[("FULL_DB", t.path.display().to_string())],
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "disk-full child failed: {}", String::from_utf8_lossy(&out.stdout));
    let big_err = after_marker(&out.stdout, "BIG-ERR ");
    let small_err = after_marker(&out.stdout, "SMALL-ERR ");
    let acked_line = after_marker(&out.stdout, "CHILD-ACKED ");
    let acked: Vec<(Hash, i64)> = acked_line
        .split(' ')
        .next()
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (k, c) = s.split_once(':').unwrap();
            (k.parse().unwrap(), c.parse().unwrap())
        })
        .collect();
    // Without the limit: everything is there, check is clean, and work goes on.
    let db = open(&t.path);
    let pending: HashSet<(Hash, i64)> =
        db.pending().map(|r| r.unwrap()).map(|r| (r.job, r.created)).collect();
    for kc in before.iter().chain(&acked) {
        assert!(pending.contains(kc), "{kc:?} lost");
    }
    for (k, _) in &before {
        read_blob(&db, k).unwrap();
    }
    db.gc().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let big = db.add(Pattern::new(99, 8 << 20)).unwrap();
    assert_eq!(read_blob(&db, &big.0).unwrap().len(), 8 << 20);
    println!(
        "R5 disk full: large write failed with \"{big_err}\"; small adds failed after {} acked with \
         \"{small_err}\"; {} committed before all readable, check clean, work resumed",
        acked.len(),
        before.len() + acked.len()
    );
}

// ---------------------------------------------------------------------------------------
// R4: bad input (Rust API and CLI; C in tests/c/test_badinput.c)
// ---------------------------------------------------------------------------------------

const EMPTY_KEY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn r4_bad_input_through_the_rust_api() {
    let t = temp_path();
    // Added, closed and opened again before the bytes are summed: the background checkpointer
    // copies the log into the file shortly after a commit, so a sum taken right after the add
    // could change by itself under the test (seen under load). After a reopen nothing is
    // committed until the test does.
    let (key, created) = open(&t.path).add(&b"some job"[..]).unwrap();
    let db = open(&t.path);
    let sum = file_sum(&t.path);
    let mut cases = 0;
    let malformed =
        ["", "abc", &EMPTY_KEY[..63], &format!("{EMPTY_KEY}0"), &EMPTY_KEY.replace('e', "g"), " x "];
    for m in malformed {
        let e = m.parse::<Hash>().unwrap_err();
        assert!(matches!(e, Error::Invalid(_)) && e.to_string().contains("malformed hash"), "{e}");
        cases += 1;
    }
    let unknown = Hash::of(b"never stored");
    for e in [
        db.get(&unknown).map(|_| ()).unwrap_err(),
        db.push(&unknown).map(|_| ()).unwrap_err(),
        db.retry(&unknown, created).map(|_| ()).unwrap_err(),
        db.retry(&key, created + 1000).map(|_| ()).unwrap_err(),
        db.cancel(&unknown, created).unwrap_err(),
    ] {
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert!(e.to_string().contains("not found") || e.to_string().contains("no "), "{e}");
        cases += 1;
    }
    assert_eq!(file_sum(&t.path), sum, "bad input changed the file");
    // The empty payload is valid: its key is sha256("").
    let (k, _) = db.add(&b""[..]).unwrap();
    assert_eq!(k.to_string(), EMPTY_KEY);
    assert!(read_blob(&db, &k).unwrap().is_empty());
    // Options out of range change nothing (summed after a reopen, as above).
    drop(db);
    let db = open(&t.path);
    let sum = file_sum(&t.path);
    for f in [
        (|o: &mut Options| o.chunk_size = 1023) as fn(&mut Options),
        |o| o.chunk_size = (16 << 20) + 1,
        |o| o.max_attempts = 1001,
        |o| o.lease = Duration::from_millis(49),
        |o| o.lease = Duration::from_secs(86_401),
    ] {
        let mut o = Options::default();
        f(&mut o);
        assert!(matches!(Db::open(&t.path, o), Err(Error::Invalid(m)) if m.contains("out of range")));
        cases += 1;
    }
    let far = batchdb::PushOptions { delay: Duration::from_secs(200 * 365 * 86_400), ..Default::default() };
    assert!(matches!(db.push_with(&key, &far), Err(Error::Invalid(_))));
    assert_eq!(file_sum(&t.path), sum);
    cases += 6;
    // Files that are not batchdb databases, and paths that cannot be opened.
    let dir = t.dir.path();
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let foreign = dir.join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    let newer = dir.join("newer.db");
    drop(open(&newer));
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 77").unwrap();
    for (p, want) in
        [(&garbage, "not a batchdb database"), (&foreign, "not a batchdb database"), (&newer, "newer")]
    {
        let before = file_bytes(p);
        let e = Db::open(p, Options::default()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)) && e.to_string().contains(want), "{}: {e:?}", p.display());
        assert_eq!(file_bytes(p), before, "{} changed", p.display());
        cases += 1;
    }
    let e = Db::open(dir, Options::default()).unwrap_err();
    assert!(matches!(e, Error::Io(_)) && e.to_string().contains("directory"), "{e:?}");
    // A path whose parent is a regular file fails even for root.
    let e = Db::open(garbage.join("sub.db"), Options::default()).unwrap_err();
    assert!(matches!(e, Error::Io(_) | Error::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("garbage.db"), "the message names the path: {e}");
    let e = Db::open(dir.join("missing-dir/x.db"), Options::default()).unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    assert!(!dir.join("missing-dir").exists());
    cases += 3;
    // An empty file is a new database, as in SQLite.
    let empty = dir.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let e_db = Db::open(&empty, Options::default()).unwrap();
    e_db.add(&b"in an empty file"[..]).unwrap();
    assert!(e_db.check().unwrap().is_clean());
    cases += 1;
    println!("R4 bad input (Rust): {cases} cases, each a clear error, files unchanged; empty payload and empty file accepted");
}

#[test]
fn r4_handles_outlive_the_db() {
    let t = temp_path();
    let db = open(&t.path);
    let (key, _) = db.add(&b"payload"[..]).unwrap();
    db.add(&b"second"[..]).unwrap();
    let mut reader = db.get(&key).unwrap();
    let mut job = db.claim().unwrap().unwrap();
    let mut cursor = db.pending();
    let mut writer = db.writer();
    drop(db);
    let mut s = String::new();
    reader.read_to_string(&mut s).unwrap();
    assert_eq!(s, "payload");
    assert!(cursor.next().unwrap().is_ok());
    writer.write_all(b"written after close").unwrap();
    let k = writer.create().unwrap();
    let mut p = Vec::new();
    job.read_to_end(&mut p).unwrap();
    job.write_all(b"out").unwrap();
    let h = job.complete().unwrap();
    let db = open(&t.path);
    assert_eq!(read_blob(&db, &h).unwrap(), b"out");
    assert_eq!(read_blob(&db, &k).unwrap(), b"written after close");
    assert!(db.check().unwrap().is_clean());
    println!("R4 handles after close: reader, cursor, writer and job keep working after the Db is dropped");
}

fn cli(db: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_batchdb"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn r4_bad_input_through_the_cli() {
    let t = temp_path();
    let ok = cli(&t.path, &["add", "hello"]);
    assert!(ok.status.success());
    let line = String::from_utf8(ok.stdout).unwrap();
    let key = line.split_whitespace().next().unwrap().to_string();
    let sum = file_sum(&t.path);
    let expect_err = |db: &Path, args: &[&str], want: &str| {
        let out = cli(db, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line on stderr: {err}");
        assert!(err.starts_with("batchdb: ") || err.starts_with("error:"), "{args:?}: {err}");
        assert!(err.to_lowercase().contains(want), "{args:?}: {err:?} lacks {want:?}");
    };
    let unknown = Hash::of(b"nope").to_string();
    let mut cases = 0;
    for (args, want) in [
        (vec!["get", "xyz"], "malformed hash"),
        (vec!["get", &EMPTY_KEY[1..]], "malformed hash"),
        (vec!["push", "zz"], "malformed hash"),
        (vec!["get", &unknown], "not found"),
        (vec!["push", &unknown], "not found"),
        (vec!["retry", &key, "12"], "no failed instance"),
        (vec!["cancel", &unknown, "12"], "no pending instance"),
        (vec!["retry", &key, "notanumber"], "invalid"),
        (vec!["list", "bogus"], "invalid"),
        (vec!["run", "--lease-ms", "1", "--until-empty", "--", "true"], "out of range"),
        (vec!["run", "--max-attempts", "0", "--until-empty", "--", "true"], "out of range"),
    ] {
        expect_err(&t.path, &args, want);
        assert_eq!(file_sum(&t.path), sum, "{args:?} changed the file");
        cases += 1;
    }
    let dir = t.dir.path();
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 5000]).unwrap();
    let newer = dir.join("newer.db");
    drop(open(&newer));
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 77").unwrap();
    for (p, want) in [(&garbage, "not a batchdb database"), (&newer, "newer")] {
        let before = file_bytes(p);
        expect_err(p, &["list", "job"], want);
        expect_err(p, &["add", "x"], want);
        assert_eq!(file_bytes(p), before);
        cases += 2;
    }
    expect_err(dir, &["list", "job"], "directory");
    expect_err(&garbage.join("x.db"), &["add", "x"], "garbage.db");
    cases += 2;
    // Empty stdin is an empty payload; 100 MiB of stdin streams through.
    let out = Command::new(env!("CARGO_BIN_EXE_batchdb"))
        .arg("--db")
        .arg(&t.path)
        .arg("add")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(EMPTY_KEY));
    let huge: u64 = 100 << 20;
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchdb"))
        .arg("--db")
        .arg(&t.path)
        .arg("add")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut h = sha2_stream::Sha::default();
        let mut tee = sha2_stream::Tee { out: &mut stdin, hash: &mut h };
        std::io::copy(&mut Pattern::new(5, huge), &mut tee).unwrap();
        drop(stdin);
        h.hex()
    });
    let out = child.wait_with_output().unwrap();
    let expected = feeder.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&expected));
    let db = open(&t.path);
    let n = db.get(&expected.parse().unwrap()).unwrap().verify_all().unwrap();
    assert_eq!(n, huge);
    cases += 2;
    println!("R4 bad input (CLI): {cases} cases, each one line on stderr and a non-zero exit, files unchanged; empty stdin and 100 MiB stdin accepted");
}

/// Hashing a stream while passing it on, without a second pass.
mod sha2_stream {
    use sha2::{Digest, Sha256};
    #[derive(Default)]
    pub struct Sha(Sha256);
    impl Sha {
        pub fn hex(self) -> String {
            hex::encode(self.0.finalize())
        }
    }
    pub struct Tee<'a, W: std::io::Write> {
        pub out: &'a mut W,
        pub hash: &'a mut Sha,
    }
    impl<W: std::io::Write> std::io::Write for Tee<'_, W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.out.write(b)?;
            self.hash.0.update(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
}

// ---------------------------------------------------------------------------------------
// R6: model-based test of the queue
// ---------------------------------------------------------------------------------------

mod model {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    /// The lease of the model's handle. Claims are timed so that, when the next claim runs,
    /// every running instance is clearly inside its lease (claimed less than LEASE/2 ago) or
    /// clearly past it (more than LEASE + 25 ms ago): the model then knows which expire.
    /// A claim that itself takes longer than LEASE/2 (a loaded machine can stall a thread
    /// that long) leaves the outcome open; such a case is rejected as inconclusive (proptest
    /// draws another), never judged.
    const LEASE: Duration = Duration::from_millis(250);
    const SURELY_LIVE: Duration = Duration::from_millis(125);
    const SURELY_EXPIRED: Duration = Duration::from_millis(275);
    /// The prefix of a case's error that marks it inconclusive rather than diverged.
    const INCONCLUSIVE: &str = "inconclusive: ";
    const MAX_ATTEMPTS: u32 = 3;

    #[derive(Debug, Clone)]
    pub enum Op {
        Add(u8),
        Push(u8),
        PushUnknown,
        Claim,
        Complete(u8),
        Fail(u8),
        Release(u8),
        Expire,
        Retry(u8),
        RetryUnknown,
        Gc,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..4).prop_map(Op::Add),
            2 => any::<u8>().prop_map(Op::Push),
            1 => Just(Op::PushUnknown),
            5 => Just(Op::Claim),
            2 => any::<u8>().prop_map(Op::Complete),
            1 => any::<u8>().prop_map(Op::Fail),
            1 => any::<u8>().prop_map(Op::Release),
            1 => Just(Op::Expire),
            1 => any::<u8>().prop_map(Op::Retry),
            1 => Just(Op::RetryUnknown),
            1 => Just(Op::Gc),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    enum St {
        Ready,
        Running { attempt: u32, at: Instant, after: Instant },
        Done(Hash),
        Failed { attempts: u32, message: String },
    }

    struct Inst {
        key: Hash,
        st: St,
        starts: u32,
    }

    fn payload(n: u8) -> Vec<u8> {
        // Payload 3 spans several chunks.
        if n == 3 {
            (0..3000u32).map(|i| (i % 251) as u8).collect()
        } else {
            format!("model payload {n}").into_bytes()
        }
    }

    type Snapshot = (Vec<(i64, Hash, bool)>, Vec<(Hash, i64, Hash)>, Vec<(Hash, i64, u32, String)>);

    fn snapshot_model(m: &BTreeMap<i64, Inst>) -> Snapshot {
        let mut pending = Vec::new();
        let mut results = Vec::new();
        let mut fails = Vec::new();
        for (c, i) in m {
            match &i.st {
                St::Ready => pending.push((*c, i.key, false)),
                St::Running { .. } => pending.push((*c, i.key, true)),
                St::Done(h) => results.push((i.key, *c, *h)),
                St::Failed { attempts, message } => fails.push((i.key, *c, *attempts, message.clone())),
            }
        }
        results.sort();
        fails.sort();
        (pending, results, fails)
    }

    fn snapshot_db(db: &Db) -> Snapshot {
        let pending = db.pending().map(|r| r.unwrap()).map(|r| (r.created, r.job, r.running)).collect();
        let results = db.results().map(|r| r.unwrap()).map(|r| (r.key, r.created, r.hash)).collect();
        let fails =
            db.failures().map(|r| r.unwrap()).map(|r| (r.key, r.created, r.attempts, r.message)).collect();
        (pending, results, fails)
    }

    /// Sleeps until no running instance is in the ambiguous window; returns those now
    /// surely expired.
    fn settle(m: &BTreeMap<i64, Inst>) -> Vec<i64> {
        loop {
            let now = Instant::now();
            let ambiguous = m.values().filter_map(|i| match i.st {
                St::Running { at, after, .. }
                    if now.duration_since(at) >= SURELY_LIVE
                        && now.duration_since(after) < SURELY_EXPIRED =>
                {
                    Some(SURELY_EXPIRED - now.duration_since(after))
                }
                _ => None,
            });
            match ambiguous.max() {
                Some(wait) => std::thread::sleep(wait + Duration::from_millis(1)),
                None => break,
            }
        }
        let now = Instant::now();
        m.iter()
            .filter(|(_, i)| matches!(i.st, St::Running { after, .. } if now.duration_since(after) >= SURELY_EXPIRED))
            .map(|(c, _)| *c)
            .collect()
    }

    fn check_stale(r: Result<impl std::fmt::Debug, Error>, what: &str) -> Result<(), String> {
        match r {
            Err(Error::Stale(_)) => Ok(()),
            other => Err(format!("{what}: expected Stale, got {other:?}")),
        }
    }

    pub fn run_case(ops: &[Op]) -> Result<(), String> {
        let t = temp_path();
        let db = open_with(&t.path, |o| {
            o.lease = LEASE;
            o.heartbeat = false;
            o.max_attempts = MAX_ATTEMPTS;
            o.chunk_size = 1024;
            fast(o);
        });
        let mut m: BTreeMap<i64, Inst> = BTreeMap::new();
        let mut keys: Vec<Hash> = Vec::new();
        let mut held: Vec<(batchdb::Job, i64, u32)> = Vec::new();
        let mut last_created = 0i64;
        let mut new_created = |c: i64| -> Result<i64, String> {
            if c <= last_created {
                return Err(format!("created {c} is not above {last_created}"));
            }
            last_created = c;
            Ok(c)
        };
        for (step, op) in ops.iter().enumerate() {
            let ctx = |e: String| format!("step {step} {op:?}: {e}");
            match op {
                Op::Add(n) => {
                    let (k, c) = db.add(&payload(*n)[..]).map_err(|e| ctx(e.to_string()))?;
                    if k != Hash::of(&payload(*n)) {
                        return Err(ctx("wrong key".into()));
                    }
                    let c = new_created(c).map_err(ctx)?;
                    m.insert(c, Inst { key: k, st: St::Ready, starts: 0 });
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                Op::Push(i) => {
                    if keys.is_empty() {
                        continue;
                    }
                    let k = keys[*i as usize % keys.len()];
                    let c = db.push(&k).map_err(|e| ctx(e.to_string()))?;
                    let c = new_created(c).map_err(ctx)?;
                    m.insert(c, Inst { key: k, st: St::Ready, starts: 0 });
                }
                Op::PushUnknown => match db.push(&Hash::of(b"unknown")) {
                    Err(Error::NotFound(_)) => {}
                    other => return Err(ctx(format!("expected NotFound, got {other:?}"))),
                },
                Op::Claim => {
                    for c in settle(&m) {
                        let i = m.get_mut(&c).unwrap();
                        i.st = if i.starts >= MAX_ATTEMPTS {
                            St::Failed {
                                attempts: i.starts,
                                message: format!("lease expired after {} attempts", i.starts),
                            }
                        } else {
                            St::Ready
                        };
                    }
                    let expected = m.iter().rev().find(|(_, i)| i.st == St::Ready).map(|(c, _)| *c);
                    let at = Instant::now();
                    let got = db.claim().map_err(|e| ctx(e.to_string()))?;
                    let after = Instant::now();
                    // Any instance the model took for live may have expired during a claim
                    // that stalled past its lease: the model cannot know what the library saw.
                    let open = m.values().any(|i| {
                        matches!(i.st, St::Running { at: claimed, .. } if after.duration_since(claimed) >= LEASE)
                    });
                    if open {
                        return Err(format!("{INCONCLUSIVE}claim took {:?}", after - at));
                    }
                    match (expected, got) {
                        (None, None) => {}
                        (Some(c), Some(job)) if job.created() == c => {
                            let i = m.get_mut(&c).unwrap();
                            i.starts += 1;
                            if job.attempt() != i.starts || job.key() != i.key {
                                return Err(ctx(format!("claimed {job:?}, model attempt {}", i.starts)));
                            }
                            i.st = St::Running { attempt: i.starts, at, after };
                            held.push((job, c, i.starts));
                        }
                        (e, g) => return Err(ctx(format!("claim: model {e:?}, library {g:?}"))),
                    }
                }
                Op::Complete(i) | Op::Fail(i) | Op::Release(i) => {
                    if held.is_empty() {
                        continue;
                    }
                    let (mut job, c, a) = held.remove(*i as usize % held.len());
                    let inst = m.get_mut(&c);
                    let live = matches!(&inst, Some(x) if matches!(x.st, St::Running { attempt, .. } if attempt == a));
                    match op {
                        Op::Complete(_) => {
                            let mut p = Vec::new();
                            job.read_to_end(&mut p).map_err(|e| ctx(e.to_string()))?;
                            if inst.as_ref().is_some_and(|x| Hash::of(&p) != x.key) {
                                return Err(ctx("payload differs from its key".into()));
                            }
                            write!(job, "out {c} {a}").unwrap();
                            if live {
                                let h = job.complete().map_err(|e| ctx(e.to_string()))?;
                                if h != Hash::of(format!("out {c} {a}").as_bytes()) {
                                    return Err(ctx("wrong result hash".into()));
                                }
                                inst.unwrap().st = St::Done(h);
                            } else {
                                check_stale(job.complete(), "complete").map_err(ctx)?;
                            }
                        }
                        Op::Fail(_) => {
                            let msg = format!("model fail {c}");
                            if live {
                                job.fail(&msg).map_err(|e| ctx(e.to_string()))?;
                                inst.unwrap().st = St::Failed { attempts: a, message: msg };
                            } else {
                                check_stale(job.fail(&msg), "fail").map_err(ctx)?;
                            }
                        }
                        _ => {
                            drop(job);
                            if live {
                                inst.unwrap().st = if a < MAX_ATTEMPTS {
                                    St::Ready
                                } else {
                                    St::Failed {
                                        attempts: a,
                                        message: format!("released unfinished after {a} attempts"),
                                    }
                                };
                            }
                        }
                    }
                }
                Op::Expire => {
                    let latest = m.values().filter_map(|i| match i.st {
                        St::Running { after, .. } => Some(after),
                        _ => None,
                    });
                    if let Some(after) = latest.max() {
                        let age = after.elapsed();
                        if age < SURELY_EXPIRED {
                            std::thread::sleep(SURELY_EXPIRED - age + Duration::from_millis(1));
                        }
                    }
                }
                Op::Retry(i) => {
                    let failed: Vec<i64> = m
                        .iter()
                        .filter(|(_, x)| matches!(x.st, St::Failed { .. }))
                        .map(|(c, _)| *c)
                        .collect();
                    if failed.is_empty() {
                        continue;
                    }
                    let c = failed[*i as usize % failed.len()];
                    let k = m[&c].key;
                    let n = db.retry(&k, c).map_err(|e| ctx(e.to_string()))?;
                    let n = new_created(n).map_err(ctx)?;
                    m.remove(&c);
                    m.insert(n, Inst { key: k, st: St::Ready, starts: 0 });
                }
                Op::RetryUnknown => {
                    let k = keys.first().copied().unwrap_or(Hash::of(b"x"));
                    match db.retry(&k, 1) {
                        Err(Error::NotFound(_)) => {}
                        other => return Err(ctx(format!("expected NotFound, got {other:?}"))),
                    }
                }
                Op::Gc => {
                    db.gc().map_err(|e| ctx(e.to_string()))?;
                    for i in m.values() {
                        read_blob(&db, &i.key).map_err(|e| ctx(format!("payload after gc: {e}")))?;
                        if let St::Done(h) = i.st {
                            read_blob(&db, &h).map_err(|e| ctx(format!("result after gc: {e}")))?;
                        }
                    }
                }
            }
            let (want, got) = (snapshot_model(&m), snapshot_db(&db));
            if want != got {
                return Err(ctx(format!("state diverged:\nmodel   {want:?}\nlibrary {got:?}")));
            }
        }
        drop(held);
        let report = db.check().map_err(|e| e.to_string())?;
        if !report.is_clean() {
            return Err(format!("check: {:?}", report.problems));
        }
        Ok(())
    }

    pub fn run(cases: u32, max_ops: usize) -> (u32, u64) {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let ops_run = std::sync::atomic::AtomicU64::new(0);
        let result = runner.run(&proptest::collection::vec(op(), 1..=max_ops), |ops| {
            ops_run.fetch_add(ops.len() as u64, std::sync::atomic::Ordering::Relaxed);
            run_case(&ops).map_err(|e| match e.strip_prefix(INCONCLUSIVE) {
                Some(why) => TestCaseError::reject(why.to_string()),
                None => TestCaseError::fail(e),
            })
        });
        if let Err(e) = result {
            panic!("R6 model-based test: divergence: {e}");
        }
        (cases, ops_run.into_inner())
    }
}

#[test]
fn r6_model_based_queue() {
    let (cases, max_ops) = if long() { (512, 60) } else { (64, 30) };
    let (cases, ops) = model::run(cases, max_ops);
    println!("R6 model-based test: {cases} cases, {ops} operations, 0 divergences");
}

// ---------------------------------------------------------------------------------------
// WAL bound
// ---------------------------------------------------------------------------------------

/// The library sets journal_size_limit = 64 MiB and checkpoints in the background, with
/// wal_autocheckpoint = 2000 pages as the backstop; under a steady load the WAL must stay
/// below this.
const WAL_LIMIT: u64 = 64 << 20;

#[test]
fn wal_stays_bounded_under_steady_load() {
    let t = temp_path();
    let db = open(&t.path);
    let secs = if long() { 60 } else { 10 };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let adder = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(time_seed());
            let mut n = 0u64;
            while Instant::now() < deadline {
                db.add(Pattern::new(rng.next(), 64 * 1024 + rng.below(1 << 20))).unwrap();
                n += 1;
            }
            n
        })
    };
    let worker = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < deadline {
                match db.claim().unwrap() {
                    Some(mut job) => {
                        std::io::copy(&mut job, &mut std::io::sink()).unwrap();
                        std::io::copy(&mut Pattern::new(n + 1, 256 * 1024), &mut job).unwrap();
                        job.complete().unwrap();
                        n += 1;
                    }
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            n
        })
    };
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let last = db.results().filter_map(|r| r.ok()).last();
                if let Some(r) = last {
                    read_blob(&db, &r.hash).unwrap();
                }
                n += db.pending().count() as u64;
            }
            n
        })
    };
    let mut wal = t.path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let mut max = 0u64;
    while Instant::now() < deadline {
        max = max.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (adds, completes) = (adder.join().unwrap(), worker.join().unwrap());
    reader.join().unwrap();
    let written = db.stats().unwrap().blob_bytes;
    println!(
        "WAL bound: {secs} s of steady load, {adds} adds, {completes} completes, {} MiB of blobs, max WAL {:.1} MiB \
         (limit {} MiB)",
        written >> 20,
        max as f64 / (1 << 20) as f64,
        WAL_LIMIT >> 20
    );
    assert!(max <= WAL_LIMIT, "the WAL grew to {max} bytes");
}

// ---------------------------------------------------------------------------------------
// Issue 17: no unverified byte reaches a reader; damage of any kind is Corrupt
// ---------------------------------------------------------------------------------------

/// Pads `s` with comment lines to exactly `len` bytes.
fn pad_script(s: &mut String, len: usize) {
    while s.len() < len {
        let room = len - s.len();
        if room == 1 {
            s.push('\n');
        } else {
            let k = room.min(80);
            s.push('#');
            s.push_str(&"x".repeat(k - 2));
            s.push('\n');
        }
    }
}

#[test]
fn r3_cli_run_and_get_stop_before_a_damaged_chunk() {
    if sqlite_only("damages the file's chunk rows directly") {
        return;
    }
    const CHUNK: usize = 256 << 10; // the CLI's chunk size
    let t = temp_path();
    let marks = t.dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let mark = |name: &str| marks.join(name);
    let touch = |name: &str| format!("touch '{}'\n", mark(name).display());
    // Chunk 0 runs; chunk 1 opens with a line that marks it as seen, and holds a commented-out
    // line that the damage turns into a command; chunk 2 is last (whole-content check).
    let mut script = touch("seen0");
    pad_script(&mut script, CHUNK);
    script.push_str(&touch("seen1"));
    let hole = script.len() - CHUNK;
    script.push('#');
    script.push_str(&touch("damaged"));
    pad_script(&mut script, 2 * CHUNK);
    script.push_str(&touch("seen2"));
    pad_script(&mut script, 2 * CHUNK + 5000);

    let mut add = Command::new(env!("CARGO_BIN_EXE_batchdb"))
        .arg("--db")
        .arg(&t.path)
        .arg("add")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success());
    let key: Hash =
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().parse().unwrap();

    let raw = rusqlite::Connection::open(&t.path).unwrap();
    let (blob, mut piece, inline) = common::sqlite_piece(&raw, &key, 1);
    assert!(!inline && piece.len() == CHUNK && piece[hole] == b'#');
    piece[hole] = b'\n';
    common::set_sqlite_piece(&raw, blob, 1, inline, &piece);
    drop(raw);

    let get = cli(&t.path, &["get", &key.to_string()]);
    assert!(!get.status.success());
    assert!(String::from_utf8_lossy(&get.stderr).contains("corrupt"), "{get:?}");
    assert_eq!(get.stdout.len(), CHUNK, "get wrote chunk 0 and nothing of chunk 1");
    assert_eq!(&get.stdout[..], &script.as_bytes()[..CHUNK]);

    let run = cli(&t.path, &["run", "--until-empty", "--", "bash"]);
    assert!(run.status.success(), "{run:?}");
    for name in ["seen1", "damaged", "seen2"] {
        assert!(!mark(name).exists(), "the runner executed a line of chunk 1 or later ({name})");
    }
    let fails = String::from_utf8(cli(&t.path, &["list", "fail"]).stdout).unwrap();
    assert!(fails.contains(&key.to_string()) && fails.contains("corrupt"), "{fails}");
    println!("R3 CLI: run and get stopped at the damaged chunk 1 of a 3-chunk script");
}

#[test]
fn r3_damage_of_any_type_is_corrupt_naming_the_blob_and_check_reports_every_one() {
    if sqlite_only("SQLite keeps a type per value: a damaged record header changes it") {
        return;
    }
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    let chunked = db.add(Pattern::new(3, 3000)).unwrap().0;
    let short = db.add(&b"this blob's stored hash loses its last byte"[..]).unwrap().0;
    let inline = db.add(&b"these inline bytes become text"[..]).unwrap().0;
    let good = db.add(&b"untouched"[..]).unwrap().0;
    let raw = rusqlite::Connection::open(&t.path).unwrap();
    let by = |sql: &str, h: &Hash| assert_eq!(raw.execute(sql, [h.as_bytes().as_slice()]).unwrap(), 1);
    by(
        "UPDATE chunk SET data = CAST(data AS TEXT) WHERE seq = 1 \
         AND blob = (SELECT id FROM blob WHERE hash = ?1)",
        &chunked,
    );
    by("UPDATE blob SET data = CAST(data AS TEXT) WHERE hash = ?1", &inline);
    by("UPDATE blob SET hash = substr(hash, 1, 31) WHERE hash = ?1", &short);
    let text: i64 =
        raw.query_row("SELECT count(*) FROM chunk WHERE typeof(data) = 'text'", [], |r| r.get(0)).unwrap();
    assert_eq!(text, 1);
    drop(raw);
    let short_hex = &short.to_string()[..62];

    let report = db.check().expect("check reports damage, it does not stop at it");
    let named = |what: &str| report.problems.iter().filter(|p| p.contains(what)).count();
    assert_eq!(named(&chunked.to_string()), 1, "{report:?}");
    assert_eq!(named(&inline.to_string()), 1, "{report:?}");
    assert_eq!(named(short_hex), 1, "{report:?}");
    assert_eq!(named(&good.to_string()), 0, "{report:?}");
    assert_eq!(report.problems.len(), 3, "{report:?}");
    assert_eq!(report.blobs_checked, 4);

    for key in [chunked, inline] {
        let err = read_blob(&db, &key).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        assert_eq!(err.code(), -4, "BATCHDB_ERR_CORRUPT through the C ABI");
        assert!(err.to_string().contains(&key.short()), "names the blob: {err}");
    }
    assert_eq!(read_blob(&db, &good).unwrap(), b"untouched");
    for kind in [batchdb::ListKind::Job, batchdb::ListKind::Pending] {
        let err = db.list(kind).find_map(Result::err).expect("listing reaches the damaged hash");
        assert!(matches!(err, Error::Corrupt(_)), "{kind:?}: {err:?}");
        assert_eq!(err.code(), -4);
        assert!(err.to_string().contains(short_hex), "{kind:?} names the blob: {err}");
    }
    println!("R3 damaged types: check named all 3 damaged blobs; get and list report Corrupt");
}

/// A damaged hash index that leads a lookup to another blob's row (one rowid byte changed in
/// the index entry, the ordering intact) must be Corrupt before any byte is handed out: that
/// row's chunks all match their digests, so only comparing the row's own hash catches it
/// (fuzz finding on issue 17's per-chunk digests).
#[test]
fn r3_a_redirected_hash_index_hands_out_no_other_blobs_bytes() {
    if sqlite_only("the test edits SQLite's index pages") {
        return;
    }
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    // Rowids 0 and 1 take no byte in a record (serial types 8 and 9): start past them.
    db.create(&b"filler"[..]).unwrap();
    let asked = db.add(Pattern::new(1, 5000)).unwrap().0;
    let other = db.add(Pattern::new(2, 5000)).unwrap().0;
    drop(db);
    let raw = rusqlite::Connection::open(&t.path).unwrap();
    let id = |h: &Hash| -> i64 {
        raw.query_row("SELECT id FROM blob WHERE hash = ?1", [h.as_bytes().as_slice()], |r| r.get(0)).unwrap()
    };
    let (asked_id, other_id) = (id(&asked), id(&other));
    assert!(
        (2..128).contains(&asked_id) && (2..128).contains(&other_id),
        "one-byte rowids: {asked_id}, {other_id}"
    );
    let (root, page_size): (i64, i64) = (
        raw.query_row(
            "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'blob' AND type = 'index'",
            [],
            |r| r.get(0),
        )
        .unwrap(),
        raw.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap(),
    );
    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(raw);
    let mut file = std::fs::read(&t.path).unwrap();
    let page = (root - 1) as usize * page_size as usize..root as usize * page_size as usize;
    let at = file[page.clone()]
        .windows(33)
        .position(|w| w[..32] == asked.as_bytes()[..] && w[32] == asked_id as u8)
        .expect("the index entry: the hash, then its one-byte rowid")
        + page.start;
    file[at + 32] = other_id as u8;
    std::fs::write(&t.path, &file).unwrap();

    let db = open(&t.path);
    let err = match db.get(&asked) {
        Err(e) => e,
        Ok(mut r) => {
            let mut out = Vec::new();
            let e = r.read_to_end(&mut out).unwrap_err();
            assert!(out.is_empty(), "{} bytes of another blob were handed out", out.len());
            Error::from(e)
        }
    };
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains(&asked.short()), "names the blob asked for: {err}");
    assert_eq!(read_blob(&db, &other).unwrap().len(), 5000, "the other blob reads as before");
}
