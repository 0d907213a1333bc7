//! The storage half of the core: the file, blobs, jobs and instances, lists, errors.

mod common;

use batchdb::{Db, Error, Hash, ListKind, Options, Row};
use common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const SEED_KEY: &str = "ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0";

#[test]
fn job_key_is_sha256_of_payload() {
    let t = temp_path();
    let db = open(&t.path);
    let key = db.create(&b"sleep 5; date"[..]).unwrap();
    assert_eq!(key.to_string(), SEED_KEY);
    assert_eq!(key, Hash::of(b"sleep 5; date"));
}

#[test]
fn same_payload_is_one_job_and_pushes_queue_instances() {
    let t = temp_path();
    let db = open(&t.path);
    let k1 = db.create(&b"sleep 5; date"[..]).unwrap();
    let (k2, c1) = db.add(&b"sleep 5; date"[..]).unwrap();
    let c2 = db.push(&k1).unwrap();
    assert_eq!(k1, k2);
    assert!(c2 > c1);
    let jobs: Vec<_> = db.jobs().collect::<Result<_, _>>().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].key, k1);
    let pending: Vec<_> = db.pending().collect::<Result<_, _>>().unwrap();
    assert_eq!(pending.iter().map(|p| p.created).collect::<Vec<_>>(), vec![c1, c2]);
    assert!(pending.iter().all(|p| p.job == k1 && !p.running));
    // The payload is stored once.
    assert_eq!(db.stats().unwrap().blobs, 1);
    let mut payload = String::new();
    db.get(&k1).unwrap().read_to_string(&mut payload).unwrap();
    assert_eq!(payload, "sleep 5; date");
}

#[test]
fn push_of_unknown_key_is_not_found_and_malformed_key_is_invalid() {
    let t = temp_path();
    let db = open(&t.path);
    let err = db.push(&Hash::of(b"never created")).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("job "), "message names the job: {err}");
    assert_eq!(err.code(), -2);
    for bad in ["", "xyz", &SEED_KEY[..63], &format!("{SEED_KEY}0"), &SEED_KEY.replace('c', "g")] {
        let err = bad.parse::<Hash>().unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{bad:?}: {err:?}");
    }
    assert!(db.pending().next().is_none(), "nothing was queued");
}

#[test]
fn get_of_unknown_hash_is_not_found() {
    let t = temp_path();
    let db = open(&t.path);
    let err = db.get(&Hash::of(b"nothing")).map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[test]
fn created_is_strictly_increasing_across_threads() {
    let t = temp_path();
    let db = open_with(&t.path, fast);
    let key = db.create(&b"job"[..]).unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..250).map(|_| db.push(&key).unwrap()).collect::<Vec<i64>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let mine = h.join().unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "each thread sees increasing values");
        all.extend(mine);
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 1000);
    // Push order is created order: the pending list, sorted by created, has every value.
    let listed: Vec<i64> = db.pending().map(|r| r.unwrap().created).collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

#[test]
fn created_is_strictly_increasing_across_processes() {
    if helper_role().as_deref() == Some("pusher") {
        let db = open_with(std::path::Path::new(&env("DB")), fast);
        let key: Hash = env("KEY").parse().unwrap();
        let out: Vec<String> = (0..300).map(|_| db.push(&key).unwrap().to_string()).collect();
        println!("CREATED {}", out.join(" "));
        return;
    }
    if helper_role().is_some() {
        return;
    }
    let t = temp_path();
    let db = open_with(&t.path, fast);
    let key = db.create(&b"shared"[..]).unwrap();
    let args = [("DB", t.path.display().to_string()), ("KEY", key.to_string())];
    let children: Vec<_> = (0..2)
        .map(|_| spawn_helper("created_is_strictly_increasing_across_processes", "pusher", &args))
        .collect();
    let mut all = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let line = after_marker(&out.stdout, "CREATED ");
        let mine: Vec<i64> = line.split(' ').map(|v| v.parse().unwrap()).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        all.extend(mine);
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 600, "no two processes got the same created");
}

#[test]
fn lists_stay_correct_while_other_threads_write() {
    let t = temp_path();
    let db = open_with(&t.path, fast);
    let mut before = Vec::new();
    for i in 0..700 {
        before.push(db.add(format!("job {i}").as_bytes()).unwrap());
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, stop, written) = (db.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                db.add(format!("late {i}").as_bytes()).unwrap();
                i += 1;
                written.store(i, Ordering::SeqCst);
            }
            i
        })
    };
    // Every 100 of the rows present from the start, wait until the writer has added another
    // row, so that writes land between pages however the threads are scheduled. (Past them
    // the listing must outrun the writer, whose rows it sees too, or it would never end.)
    let mut seen_pending = Vec::new();
    for row in db.pending() {
        seen_pending.push(row.unwrap().created);
        if seen_pending.len() % 100 == 0 && seen_pending.len() <= before.len() {
            let had = written.load(Ordering::SeqCst);
            assert!(
                eventually(Duration::from_secs(10), || written.load(Ordering::SeqCst) > had),
                "writer stalled"
            );
        }
    }
    let mut seen_jobs = Vec::new();
    for row in db.jobs() {
        seen_jobs.push(row.unwrap().key);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let added = writer.join().unwrap();
    assert!(added > 0, "the writer ran during the listing");
    let unique: HashSet<_> = seen_pending.iter().collect();
    assert_eq!(unique.len(), seen_pending.len(), "no row seen twice");
    for (_, created) in &before {
        assert!(seen_pending.contains(created), "row {created} present throughout was seen");
    }
    assert!(seen_pending.windows(2).all(|w| w[0] < w[1]));
    assert!(seen_jobs.windows(2).all(|w| w[0] < w[1]), "jobs sorted by key, each once");
    for (key, _) in &before {
        assert!(seen_jobs.contains(key));
    }
}

#[test]
fn rows_serialize_to_the_contract_shapes() {
    let t = temp_path();
    let db = open(&t.path);
    let (key, created) = db.add(&b"sleep 5; date"[..]).unwrap();
    let job_json = db.list(ListKind::Job).next().unwrap().unwrap().to_json();
    assert_eq!(job_json, format!(r#"{{"key":"{SEED_KEY}","running":[]}}"#));
    let pending = db.list(ListKind::Pending).next().unwrap().unwrap();
    assert_eq!(pending.to_json(), format!(r#"{{"job":"{SEED_KEY}","created":{created},"running":false}}"#));

    let mut job = db.claim().unwrap().unwrap();
    let running = db.list(ListKind::Job).next().unwrap().unwrap();
    assert_eq!(running.to_json(), format!(r#"{{"key":"{SEED_KEY}","running":[{created}]}}"#));
    let pending = db.pending().next().unwrap().unwrap();
    assert!(pending.running);
    job.write_all(b"out").unwrap();
    let hash = job.complete().unwrap();
    let Row::Result(r) = db.list(ListKind::Result).next().unwrap().unwrap() else { panic!("result row") };
    let v: serde_json::Value = serde_json::from_str(&Row::Result(r.clone()).to_json()).unwrap();
    assert_eq!(v["key"], serde_json::json!([SEED_KEY, created]));
    assert_eq!(v["value"]["hash"], hash.to_string());
    assert_eq!(v["value"]["created"], created);
    assert!(v["value"]["start"].as_i64().unwrap() <= v["value"]["end"].as_i64().unwrap());
    assert_eq!(v.as_object().unwrap().len(), 2);
    assert_eq!(v["value"].as_object().unwrap().len(), 4);

    let c2 = db.push(&key).unwrap();
    db.claim().unwrap().unwrap().fail("yo").unwrap();
    let fail = db.list(ListKind::Fail).next().unwrap().unwrap().to_json();
    let v: serde_json::Value = serde_json::from_str(&fail).unwrap();
    assert_eq!(v["key"], serde_json::json!([SEED_KEY, c2]));
    assert_eq!(v["value"]["message"], "yo");
    assert_eq!(v["value"]["attempts"], 1);
    assert_eq!(v["value"].as_object().unwrap().len(), 4);
}

#[test]
fn results_and_fails_list_by_key_then_created_across_pages() {
    let t = temp_path();
    let db = open_with(&t.path, fast);
    // 30 jobs × 20 instances = 600 results: more than two pages, many jobs per page.
    let keys: Vec<Hash> = (0..30).map(|i| db.create(format!("p{i}").as_bytes()).unwrap()).collect();
    for _ in 0..20 {
        for k in &keys {
            db.push(k).unwrap();
        }
    }
    while let Some(job) = db.claim().unwrap() {
        if job.created() % 3 == 0 {
            job.fail("odd").unwrap();
        } else {
            job.complete().unwrap();
        }
    }
    let results: Vec<_> = db.results().map(|r| r.unwrap()).collect();
    let fails: Vec<_> = db.failures().map(|r| r.unwrap()).collect();
    assert_eq!(results.len() + fails.len(), 600);
    let rk: Vec<_> = results.iter().map(|r| (r.key, r.created)).collect();
    let fk: Vec<_> = fails.iter().map(|r| (r.key, r.created)).collect();
    let mut sorted = rk.clone();
    sorted.sort();
    assert_eq!(rk, sorted);
    let mut sorted = fk.clone();
    sorted.sort();
    assert_eq!(fk, sorted);
    assert_eq!(rk.iter().collect::<HashSet<_>>().len(), rk.len());
}

#[test]
fn garbage_file_is_refused_and_unchanged() {
    if sqlite_only("a file of garbage") {
        return;
    }
    let t = temp_path();
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&t.path, &garbage).unwrap();
    let err = Db::open(&t.path, Options::default()).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("not a batchdb database"), "{err}");
    assert_eq!(file_bytes(&t.path), garbage);
}

#[test]
fn foreign_sqlite_file_is_refused_and_unchanged() {
    let t = temp_path();
    if let Some(schema) = &t.pg_schema {
        // The PostgreSQL equivalent: a schema that holds someone else's tables.
        let url = t.path.to_str().unwrap();
        pg::exec(url, &format!("CREATE SCHEMA {schema}; CREATE TABLE people (name TEXT)")).unwrap();
        let err = Db::open(&t.path, Options::default()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("not a batchdb database"), "{err}");
        assert_eq!(
            raw_count(&t.path, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"),
            1
        );
        return;
    }
    {
        let c = rusqlite::Connection::open(&t.path).unwrap();
        c.execute_batch("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');").unwrap();
    }
    let before = file_bytes(&t.path);
    let err = Db::open(&t.path, Options::default()).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("not a batchdb database"), "{err}");
    assert_eq!(file_bytes(&t.path), before);
}

#[test]
fn newer_schema_is_refused_and_unchanged() {
    let t = temp_path();
    drop(open(&t.path));
    if on_pg() {
        let url = t.path.to_str().unwrap();
        pg::exec(url, "UPDATE meta SET value = 999 WHERE name = 'version'").unwrap();
        let err = Db::open(&t.path, Options::default()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("newer"), "{err}");
        assert_eq!(raw_count(&t.path, "SELECT value FROM meta WHERE name = 'version'"), 999);
        return;
    }
    {
        let c = rusqlite::Connection::open(&t.path).unwrap();
        c.execute_batch("PRAGMA user_version = 999; PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    let before = file_bytes(&t.path);
    let err = Db::open(&t.path, Options::default()).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(file_bytes(&t.path), before);
}

/// A database from before `stats` kept its totals (an SQLite file of schema version 3, a
/// PostgreSQL schema of version 2) gets them counted when it is opened: the same stats as
/// before, and a clean check.
#[test]
fn an_old_database_gets_its_totals_counted_on_open() {
    let t = temp_path();
    let expected = {
        let db = open(&t.path);
        db.add(&b"one"[..]).unwrap();
        db.add(&b"two"[..]).unwrap();
        db.add(&b"three"[..]).unwrap();
        let mut job = db.claim().unwrap().unwrap();
        job.write_all(b"out").unwrap();
        job.complete().unwrap();
        db.claim().unwrap().unwrap().fail("no").unwrap();
        let s = db.stats().unwrap();
        (s.jobs, s.pending, s.results, s.fails, s.blobs, s.blob_bytes, s.results_total)
    };
    assert_eq!(expected, (3, 1, 1, 1, 4, 14, 1));
    if on_pg() {
        let url = t.path.to_str().unwrap();
        pg::exec(
            url,
            "DROP TABLE tally; DROP FUNCTION tally_rows CASCADE; \
             UPDATE meta SET value = 2 WHERE name = 'version'",
        )
        .unwrap();
    } else {
        let c = rusqlite::Connection::open(&t.path).unwrap();
        c.execute_batch(
            "INSERT INTO meta SELECT 'last_blob', last_blob FROM counter \
                 UNION ALL SELECT 'last_created', last_created FROM counter; \
             DROP TABLE counter; DROP INDEX instance_held; PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let db = open(&t.path);
    let s = db.stats().unwrap();
    assert_eq!((s.jobs, s.pending, s.results, s.fails, s.blobs, s.blob_bytes, s.results_total), expected);
    let report = db.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    // And they are kept from then on.
    db.add(&b"four"[..]).unwrap();
    assert_eq!(db.stats().unwrap().jobs, 4);
    assert!(db.check().unwrap().is_clean());
}

/// `check` compares the totals `stats` reports with the tables, and names the one that
/// differs; `stats` then reports the kept figure (it does not count).
#[test]
fn check_finds_a_kept_total_that_differs_from_the_tables() {
    let t = temp_path();
    let db = open(&t.path);
    db.add(&b"one"[..]).unwrap();
    db.add(&b"two"[..]).unwrap();
    assert!(db.check().unwrap().is_clean());
    let url = t.path.to_str().unwrap();
    if on_pg() {
        pg::exec(url, "INSERT INTO tally (jobs) VALUES (5)").unwrap();
    } else {
        let c = rusqlite::Connection::open(&t.path).unwrap();
        c.execute_batch("UPDATE counter SET jobs = jobs + 5").unwrap();
    }
    assert_eq!(db.stats().unwrap().jobs, 7);
    let report = db.check().unwrap();
    assert!(report.problems.iter().any(|p| p.contains("jobs 7 kept, 2 counted")), "{:?}", report.problems);
}

/// On PostgreSQL every write adds a row of changes to the totals; `stats` folds them into
/// one when they have piled up, and its figures do not move.
#[test]
fn stats_folds_the_piled_up_changes_to_its_totals() {
    if !on_pg() {
        println!("skipped on SQLite: the totals are one row there");
        return;
    }
    let t = temp_path();
    let db = open(&t.path);
    for i in 0..20u32 {
        db.add(&i.to_be_bytes()[..]).unwrap();
    }
    let url = t.path.to_str().unwrap();
    pg::exec(url, "INSERT INTO tally (jobs) SELECT 0 FROM generate_series(1, 5000)").unwrap();
    let before = db.stats().unwrap();
    assert_eq!((before.jobs, before.blobs, before.pending), (20, 20, 20));
    assert_eq!(raw_count(&t.path, "SELECT count(*) FROM tally"), 1, "the first stats folded them");
    let after = db.stats().unwrap();
    assert_eq!((after.jobs, after.blobs, after.blob_bytes), (before.jobs, before.blobs, before.blob_bytes));
    assert!(db.check().unwrap().is_clean());
}

#[test]
fn reopening_keeps_everything() {
    let t = temp_path();
    let (key, created) = {
        let db = open(&t.path);
        db.add(&b"persist me"[..]).unwrap()
    };
    let db = open(&t.path);
    let p: Vec<_> = db.pending().map(|r| r.unwrap()).collect();
    assert_eq!((p[0].job, p[0].created), (key, created));
    assert!(db.push(&key).unwrap() > created);
}

#[test]
fn options_out_of_range_are_invalid() {
    let t = temp_path();
    for f in [
        (|o: &mut Options| o.chunk_size = 10) as fn(&mut Options),
        |o| o.max_attempts = 0,
        |o| o.lease = Duration::from_millis(1),
    ] {
        let mut o = Options::default();
        f(&mut o);
        assert!(matches!(Db::open(&t.path, o), Err(Error::Invalid(_))));
    }
    assert!(!t.path.exists(), "nothing was created");
}

#[test]
fn opening_a_directory_is_a_clear_error() {
    let t = temp_path();
    let err = Db::open(t.dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.to_string().contains("directory"));
}

#[test]
fn blobs_round_trip_at_every_size_around_chunk_boundaries() {
    let t = temp_path();
    let db = open_with(&t.path, |o| {
        o.chunk_size = 1024;
        fast(o)
    });
    for len in [0usize, 1, 1023, 1024, 1025, 2048, 5000] {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut w = db.writer();
        // Odd write sizes, so that writes straddle chunks.
        for piece in data.chunks(333) {
            w.write_all(piece).unwrap();
        }
        let key = w.create().unwrap();
        assert_eq!(key, Hash::of(&data));
        let mut back = Vec::new();
        db.get(&key).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data, "len {len}");
    }
}

#[test]
fn duplicate_content_is_stored_once() {
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    let data = vec![7u8; 10_000];
    let a = db.create(&data[..]).unwrap();
    let b = db.create(&data[..]).unwrap();
    assert_eq!(a, b);
    let s = db.stats().unwrap();
    assert_eq!((s.blobs, s.blob_bytes), (1, 10_000));
    assert!(db.check().unwrap().is_clean(), "the surplus staged copy was cleared");
    assert_eq!(raw_count(&t.path, "SELECT count(*) FROM chunk"), 10, "one copy of the chunks");
}

#[test]
fn unfinished_writer_leaves_no_visible_blob() {
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    let data = vec![1u8; 5000];
    let mut w = db.writer();
    w.write_all(&data).unwrap();
    drop(w);
    assert!(matches!(db.get(&Hash::of(&data)), Err(Error::NotFound(_))));
    assert!(db.jobs().next().is_none());
    assert_eq!(db.stats().unwrap().blobs, 0);
}

#[test]
fn a_long_blob_write_does_not_block_other_writers() {
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 4096);
    let key = db.create(&b"k"[..]).unwrap();
    let mut w = db.writer();
    w.write_all(&vec![3u8; 4096 * 4]).unwrap();
    // Mid-write, another handle (as another process would) can push: no lock is held.
    let other = open_with(&t.path, |o| o.chunk_size = 4096);
    let done = std::sync::mpsc::channel();
    let tx = done.0;
    std::thread::spawn(move || tx.send(other.push(&key)).unwrap());
    let pushed = done.1.recv_timeout(Duration::from_secs(5)).expect("push did not wait for the writer");
    assert!(pushed.is_ok());
    w.write_all(&[4u8; 100]).unwrap();
    w.create().unwrap();
}

#[test]
fn corrupted_chunk_makes_get_fail_with_corrupt() {
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    let data: Vec<u8> = (0..4000).map(|i| (i % 256) as u8).collect();
    let key = db.create(&data[..]).unwrap();
    corrupt_chunk(&t.path, &key, 1, 17);
    let mut out = Vec::new();
    let err = db.get(&key).unwrap().read_to_end(&mut out).unwrap_err();
    let err = Error::from(err);
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains(&key.short()), "names the blob: {err}");
    // Verification happens before the last byte is handed out.
    assert!(out.len() < data.len());
}

#[test]
fn large_blob_round_trip_in_constant_memory() {
    const SIZE: u64 = 256 << 20;
    if helper_role().as_deref() == Some("big") {
        let path = env("DB");
        let db = Db::open(&path, Options::default()).unwrap();
        let mut w = db.writer();
        std::io::copy(&mut Pattern::new(42, SIZE), &mut w).unwrap();
        let key = w.create().unwrap();
        let mut sink = Hashing::default();
        let n = std::io::copy(&mut db.get(&key).unwrap(), &mut sink).unwrap();
        assert_eq!(n, SIZE);
        println!("RESULT {key} {} {}", sink.hash(), peak_rss_kib());
        return;
    }
    if helper_role().is_some() {
        return;
    }
    let t = temp_path();
    let child = spawn_helper(
        "large_blob_round_trip_in_constant_memory",
        "big",
        &[("DB", t.path.display().to_string())],
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = after_marker(&out.stdout, "RESULT ");
    let parts: Vec<&str> = line.split(' ').collect();
    let mut expected = Hashing::default();
    std::io::copy(&mut Pattern::new(42, SIZE), &mut expected).unwrap();
    assert_eq!(parts[0], expected.hash(), "key is the content's hash");
    assert_eq!(parts[1], expected.hash(), "read back the same bytes");
    let rss_kib: i64 = parts[2].parse().unwrap();
    println!("256 MiB blob: peak RSS {} MiB", rss_kib / 1024);
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

#[derive(Default)]
struct Hashing(sha2::Sha256);

impl Hashing {
    fn hash(&self) -> String {
        use sha2::Digest;
        hex::encode(self.0.clone().finalize())
    }
}

impl Write for Hashing {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn error_codes_map_one_to_one() {
    let all = [
        Error::Invalid(String::new()),
        Error::NotFound(String::new()),
        Error::Io(String::new()),
        Error::Corrupt(String::new()),
        Error::Busy(String::new()),
        Error::Aborted(String::new()),
        Error::Panic(String::new()),
        Error::Misuse(String::new()),
        Error::Stale(String::new()),
    ];
    let codes: Vec<i32> = all.iter().map(|e| e.code()).collect();
    assert_eq!(codes, vec![-1, -2, -3, -4, -5, -6, -7, -8, -9]);
}

#[test]
fn add_batch_adds_every_payload_in_order_with_events() {
    use batchdb::Event;
    use std::sync::Mutex;
    let t = temp_path();
    let db = open(&t.path);
    let before = db.add(&b"before"[..]).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    db.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    let payloads: Vec<Vec<u8>> =
        vec![b"one".to_vec(), b"two".to_vec(), b"one".to_vec(), Vec::new(), b"before".to_vec()];
    let added = db.add_batch(&payloads).unwrap();
    assert_eq!(added.len(), payloads.len());
    for (p, (key, _)) in payloads.iter().zip(&added) {
        assert_eq!(*key, Hash::of(p));
    }
    let created: Vec<i64> = added.iter().map(|a| a.1).collect();
    assert!(created[0] > before.1);
    assert!(created.windows(2).all(|w| w[0] < w[1]), "created increases in batch order: {created:?}");
    // One job per distinct payload (with the one added before), one instance per payload.
    assert_eq!(db.jobs().count(), 4);
    let pending: Vec<_> = db.pending().collect::<Result<_, _>>().unwrap();
    assert_eq!(pending.iter().map(|p| p.created).collect::<Vec<_>>()[1..], created[..]);
    assert_eq!(db.stats().unwrap().blobs, 4, "duplicates are stored once");
    let mut got = Vec::new();
    db.get(&added[1].0).unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, b"two");
    let expected: Vec<Event> = added
        .iter()
        .flat_map(|&(key, created)| [Event::Create { key }, Event::Push { key, created }])
        .collect();
    assert_eq!(*events.lock().unwrap(), expected);
    // A claim takes one of them: workers see the batch.
    assert!(db.claim().unwrap().is_some());
}

#[test]
fn add_batch_refuses_a_payload_larger_than_a_chunk_and_adds_nothing() {
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    let err = db.add_batch([vec![1u8; 10], vec![2u8; 1025]]).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("payload 1"), "{err}");
    assert_eq!(db.jobs().count(), 0);
    assert!(db.add_batch(Vec::<Vec<u8>>::new()).unwrap().is_empty());
    assert_eq!(db.add_batch([vec![3u8; 1024]]).unwrap().len(), 1, "exactly one chunk is fine");
}

/// Errors about a server never show the URL's password: wrong password, unreachable server,
/// or (without the feature) a build that cannot open URLs at all.
#[test]
fn errors_never_show_the_password_of_a_url() {
    // Raw '/' and '?' are allowed in a URL's password by the driver (issue 17).
    for secret in ["Sup3rSecretPw", "Sup3r/Secret?Pw", "Sup3r?Secret/Pw:x"] {
        let mut urls = vec![format!("postgres://batchdb_pw:{secret}@127.0.0.1:1/nowhere?connect_timeout=2")];
        if let Some(url) = pg_url() {
            // The test server (tests/pg/run.sh) has a role batchdb_pw that needs a password.
            let rest = url.split_once('@').map(|(_, r)| r.to_string()).unwrap_or_default();
            urls.push(format!("postgresql://batchdb_pw:{secret}@{rest}"));
            if !secret.contains(['/', '?']) {
                urls.push(format!(
                    "postgresql://{rest}{}password={secret}&user=batchdb_pw",
                    if rest.contains('?') { '&' } else { '?' }
                ));
            }
        }
        for url in urls {
            match Db::open(&url, Options::default()) {
                Ok(_) => println!("note: the server let batchdb_pw in without checking the password"),
                Err(err) => {
                    println!("{err}");
                    for piece in secret.split(['/', '?']) {
                        assert!(!err.to_string().contains(piece), "password leaked: {err}");
                        assert!(!format!("{err:?}").contains(piece), "password leaked: {err:?}");
                    }
                    assert!(matches!(err, Error::Io(_) | Error::Invalid(_)), "{err:?}");
                }
            }
        }
        assert_eq!(batchdb::redact(&format!("postgres://u:{secret}@h/d")), "postgres://u:***@h/d");
    }
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_without_the_feature_is_a_clear_error() {
    let err = Db::open("postgres://u:pw@localhost/db", Options::default()).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("built without the postgres feature"), "{err}");
    assert!(!err.to_string().contains(":pw@"), "{err}");
}

/// A read-only handle creates nothing: not a missing file, not a table, not a row (issue 17).
#[test]
fn open_read_only_reads_and_creates_nothing() {
    if sqlite_only("a missing file; PostgreSQL's read-only open is the plain one") {
        return;
    }
    let t = temp_path();
    let err = Db::open_read_only(&t.path, Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let err = Db::open_existing(&t.path, Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(std::fs::read_dir(t.dir.path()).unwrap().next().is_none(), "a failed open created a file");

    // An empty file is no database yet for a reader.
    std::fs::write(&t.path, b"").unwrap();
    let err = Db::open_read_only(&t.path, Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(std::fs::metadata(&t.path).unwrap().len(), 0);
    std::fs::remove_file(&t.path).unwrap();

    let (key, created) = {
        let db = Db::open(&t.path, Options::default()).unwrap();
        db.add(&b"echo read only"[..]).unwrap()
    };
    let before = std::fs::read(&t.path).unwrap();
    let db = Db::open_read_only(&t.path, Options::default()).unwrap();
    let mut payload = String::new();
    db.get(&key).unwrap().read_to_string(&mut payload).unwrap();
    assert_eq!(payload, "echo read only");
    assert_eq!(db.pending().map(|r| r.unwrap().created).collect::<Vec<_>>(), vec![created]);
    assert!(db.check().unwrap().problems.is_empty());
    assert_eq!(db.stats().unwrap().jobs, 1);
    for err in [
        db.add(&b"x"[..]).unwrap_err(),
        db.push(&key).unwrap_err(),
        db.cancel(&key, created).unwrap_err(),
        db.claim().map(|_| ()).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Misuse(_)), "{err:?}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }
    drop(db);
    assert_eq!(std::fs::read(&t.path).unwrap(), before, "a read-only handle changed the file");
    let names: Vec<_> = std::fs::read_dir(t.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("test.db")], "files left beside the database");
}

/// Push options are checked before a byte of the payload is read, so a refused add stores
/// nothing (issue 17).
#[test]
fn add_with_bad_options_reads_and_stores_nothing() {
    struct Counting(usize);
    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            buf.fill(b'x');
            Ok(buf.len())
        }
    }
    let t = temp_path();
    let db = Db::open(&t.path, Options::default()).unwrap();
    let opts = batchdb::PushOptions { delay: Duration::from_secs(36_501 * 86_400), ..Default::default() };
    assert!(matches!(opts.validate(), Err(Error::Invalid(_))));
    let mut payload = Counting(0);
    let err = db.add_with((&mut payload).take(3 << 20), &opts).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("delay"), "{err}");
    assert_eq!(payload.0, 0, "the payload was read");
    let stats = db.stats().unwrap();
    assert_eq!((stats.jobs, stats.pending, stats.blobs), (0, 0, 0));
    let longest = batchdb::PushOptions { delay: Duration::from_secs(36_500 * 86_400), ..Default::default() };
    assert!(longest.validate().is_ok());
}

// Issue 17: no byte of a blob reaches a reader before the chunk that holds it is verified.

/// Reads in small pieces until the end or the first error: the bytes handed out, and the error.
fn read_until_error(r: &mut impl Read) -> (Vec<u8>, Option<Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 100];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(Error::from(e))),
        }
    }
}

/// 4,000 bytes in 1 KiB chunks (0, 1 and 2 full, 3 the tail), with one byte of chunk 1
/// changed: a reader that verified only the whole content would hand out chunks 1 and 2.
fn damaged_in_chunk_1(t: &TempDb, db: &Db) -> (Hash, Vec<u8>) {
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let (key, _) = db.add(&data[..]).unwrap();
    corrupt_chunk(&t.path, &key, 1, 600);
    (key, data)
}

fn assert_corrupt_chunk_1(err: &Error, key: &Hash) {
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert_eq!(err.code(), -4, "BATCHDB_ERR_CORRUPT through the C ABI");
    let m = err.to_string();
    assert!(m.contains(&key.short()) && m.contains("chunk 1"), "names the blob and chunk: {m}");
}

#[test]
fn read_returns_corrupt_before_any_byte_of_a_damaged_chunk() {
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    let (key, data) = damaged_in_chunk_1(&t, &db);
    let (got, err) = read_until_error(&mut db.get(&key).unwrap());
    assert_corrupt_chunk_1(&err.expect("the damaged blob reads as an error"), &key);
    assert_eq!(got, &data[..1024], "chunk 0, verified, and no byte of chunk 1");
    let report = db.check().unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains(&key.to_string()), "{report:?}");
}

#[test]
fn a_runner_never_sees_a_damaged_chunk_and_the_instance_fails_as_corrupt() {
    let t = temp_path();
    let db = open_with(&t.path, |o| o.chunk_size = 1024);
    let (key, data) = damaged_in_chunk_1(&t, &db);
    let seen = std::sync::Mutex::new(Vec::new());
    let report = db
        .run(batchdb::RunOptions { workers: 1, until_empty: true, ..Default::default() }, |job| {
            let (got, err) = read_until_error(job);
            seen.lock().unwrap().extend(got);
            err.map_or(Ok(()), Err)
        })
        .unwrap();
    assert_eq!((report.completed, report.failed), (0, 1));
    assert_eq!(*seen.lock().unwrap(), &data[..1024], "the runner saw chunk 0 only");
    let fails: Vec<batchdb::Row> = db.list(batchdb::ListKind::Fail).collect::<Result<_, _>>().unwrap();
    match &fails[..] {
        [batchdb::Row::Fail(f)] => {
            assert_eq!(f.key, key);
            assert!(f.message.contains("corrupt") && f.message.contains("chunk 1"), "{}", f.message);
        }
        other => panic!("one fail row expected: {other:?}"),
    }
}

#[test]
fn a_stored_hash_of_31_bytes_is_corrupt_naming_the_blob_and_check_goes_on() {
    let t = temp_path();
    let db = open(&t.path);
    let short = db.add(&b"this blob's stored hash loses its last byte"[..]).unwrap().0;
    let damaged = db.add(&b"this blob's bytes are damaged"[..]).unwrap().0;
    let good = db.add(&b"untouched"[..]).unwrap().0;
    corrupt_chunk(&t.path, &damaged, 0, 3);
    match t.path.to_str().filter(|p| p.starts_with("postgres")) {
        Some(url) => pg::exec(
            url,
            &format!(
                "UPDATE blob SET hash = substring(hash from 1 for 31) WHERE hash = '\\x{short}'; \
                 UPDATE job SET hash = substring(hash from 1 for 31) WHERE hash = '\\x{short}'"
            ),
        )
        .unwrap(),
        None => {
            let raw = rusqlite::Connection::open(&t.path).unwrap();
            let sql = "UPDATE blob SET hash = substr(hash, 1, 31) WHERE hash = ?1";
            assert_eq!(raw.execute(sql, [short.as_bytes().as_slice()]).unwrap(), 1);
        }
    }
    let short_hex = &short.to_string()[..62];

    let report = db.check().expect("check reports damage, it does not stop at it");
    let named = |what: &str| report.problems.iter().filter(|p| p.contains(what)).count();
    assert_eq!(named(short_hex), 1, "{report:?}");
    assert_eq!(named(&damaged.to_string()), 1, "{report:?}");
    assert_eq!(named(&good.to_string()), 0, "{report:?}");
    assert_eq!(report.problems.len(), 2, "{report:?}");

    let err = db.list(ListKind::Job).find_map(Result::err).expect("listing reaches the damaged hash");
    assert!(matches!(err, Error::Corrupt(_)) && err.code() == -4, "{err:?}");
    assert!(err.to_string().contains(short_hex), "names the blob: {err}");
    let mut out = Vec::new();
    let err = Error::from(db.get(&damaged).unwrap().read_to_end(&mut out).unwrap_err());
    assert!(matches!(err, Error::Corrupt(_)) && err.code() == -4, "{err:?}");
    assert!(err.to_string().contains(&damaged.short()), "names the blob: {err}");
    assert!(out.is_empty(), "no byte of a damaged one-chunk blob");
}

/// Two handles on one file, each with its own writer, adding in turn: each takes its ids
/// after the other's commit, never an id the other handed out (a writer keeps the ids it
/// committed in memory only while no other connection has written).
#[test]
fn two_handles_on_one_file_take_ids_in_turn() {
    let t = temp_path();
    let (a, b) = (open(&t.path), open(&t.path));
    let mut created = Vec::new();
    for i in 0..6 {
        for (db, who) in [(&a, "a"), (&b, "b")] {
            // A large payload as well: it is written under a staging id before it is published.
            let big = vec![i as u8; if i % 3 == 0 { 300_000 } else { 10 }];
            let payload = [format!("{who}{i}").as_bytes(), &big[..]].concat();
            created.push(db.add(&payload[..]).unwrap().1);
        }
        // A push of a job the other handle added takes only a `created` value.
        created.push(a.push(&b.add(format!("p{i}").as_bytes()).unwrap().0).unwrap());
    }
    let mut sorted = created.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, created, "every created value is new and above the last");
    for db in [&a, &b] {
        let s = db.stats().unwrap();
        assert_eq!((s.jobs, s.pending), (18, 24));
        assert!(db.check().unwrap().is_clean());
    }
}

/// A file whose counter row is gone (damage: the ids and totals of SQLite's `counter`) gives
/// a clear error on the next add and on `stats` and changes nothing, and `check` reports
/// the totals it cannot compare. PostgreSQL keeps no such row (sequences and `tally`).
#[test]
fn a_missing_counter_row_is_a_clear_error_and_changes_nothing() {
    if on_pg() {
        return;
    }
    let t = temp_path();
    let db = open(&t.path);
    db.add(&b"before the damage"[..]).unwrap();
    rusqlite::Connection::open(&t.path).unwrap().execute_batch("DELETE FROM counter").unwrap();
    let err = db.add(&b"after the damage"[..]).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)) && err.code() == -4, "{err:?}");
    assert!(err.to_string().contains("counter row"), "names what is missing: {err}");
    let err = db.stats().unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    let report = db.check().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("counter row") && p.contains("missing")),
        "{:?}",
        report.problems
    );
    assert_eq!(db.list(ListKind::Job).count(), 1, "the failed add left nothing behind");
}
