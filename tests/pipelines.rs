//! Issue 20: memoized runs, dependencies between instances, and lineage, on whichever
//! backend the suite runs against (BATCHDB_TEST_PG).

mod common;

use batchdb::{Db, Error, Event, Hash, PushOptions, RunOptions};
use common::*;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

fn memo() -> PushOptions {
    PushOptions { memo: true, ..Default::default() }
}

fn after(ups: &[(Hash, i64)]) -> PushOptions {
    PushOptions { after: ups.to_vec(), ..Default::default() }
}

/// Runs everything claimable with `f` (which writes the output), until nothing is claimable.
fn drain(db: &Db, f: impl Fn(&mut batchdb::Job) -> std::io::Result<()> + Sync) {
    db.run(RunOptions { until_empty: true, ..Default::default() }, f).unwrap();
}

#[test]
fn a_memo_push_joins_a_live_instance_and_returns_a_cached_result() {
    let t = temp_path();
    let db = open(&t.path);
    let (key, first) = db.add_with(&b"expensive"[..], &memo()).unwrap();
    assert!(first.new && first.cached.is_none());
    let joined = db.push_with(&key, &memo()).unwrap();
    assert_eq!((joined.created, joined.new, joined.cached), (first.created, false, None));
    drain(&db, |job| job.write_all(b"the answer"));
    let hit = db.push_with(&key, &memo()).unwrap();
    assert_eq!((hit.created, hit.new, hit.cached), (first.created, false, Some(Hash::of(b"the answer"))));
    let (_, again) = db.add_with(&b"expensive"[..], &memo()).unwrap();
    assert_eq!(again.cached, Some(Hash::of(b"the answer")));
    assert_eq!(db.pending().count(), 0, "nothing queued");
    assert_eq!(db.results().count(), 1);
    // A plain push still queues.
    assert!(db.push(&key).is_ok());
    assert_eq!(db.pending().count(), 1);
}

#[test]
fn memo_adds_from_four_processes_run_each_payload_once() {
    // Each process adds the same 100 payloads with memo, and runs what it can meanwhile.
    if helper_role().as_deref() == Some("memo") {
        let db = open(std::path::Path::new(&env("DB")));
        let log = Mutex::new(std::fs::OpenOptions::new().append(true).open(env("LOG")).unwrap());
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..100 {
                    db.add_with(format!("payload {i}").as_bytes(), &memo()).unwrap();
                }
            });
            s.spawn(|| {
                for _ in 0..3 {
                    db.run(RunOptions { until_empty: true, ..Default::default() }, |job| {
                        log.lock().unwrap().write_all(format!("{}\n", job.key()).as_bytes())
                    })
                    .unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
        });
        return;
    }
    if helper_role().is_some() {
        return;
    }
    let t = temp_path();
    let db = open(&t.path);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::write(&log, b"").unwrap();
    let args = [("DB", t.path.display().to_string()), ("LOG", log.display().to_string())];
    let procs: Vec<_> = (0..4)
        .map(|_| spawn_helper("memo_adds_from_four_processes_run_each_payload_once", "memo", &args))
        .collect();
    for mut p in procs {
        assert!(p.wait().unwrap().success());
    }
    drain(&db, |_| Ok(()));
    let ran: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    let results: Vec<_> = db.results().map(|r| r.unwrap().key).collect();
    let distinct: HashSet<_> = results.iter().collect();
    assert_eq!(distinct.len(), 100);
    assert_eq!(results.len(), 100, "each payload has one result: it ran once");
    assert!(ran.len() <= 100, "no payload ran twice in the workers: {} runs", ran.len());
}

#[test]
fn an_instance_waits_for_its_upstreams_and_gets_their_results() {
    let t = temp_path();
    let db = open(&t.path);
    let (a, ca) = db.add(&b"a"[..]).unwrap();
    let (b, cb) = db.add(&b"b"[..]).unwrap();
    let (c, cc) = db.add_with(&b"c"[..], &after(&[(a, ca), (b, cb)])).unwrap();
    let row = db.pending().find(|r| r.as_ref().unwrap().created == cc.created).unwrap().unwrap();
    let json = serde_json::to_string(&row).unwrap();
    assert!(json.contains(&format!(r#""after":[["{a}",{ca}],["{b}",{cb}]]"#)), "{json}");
    let first = db.claim().unwrap().unwrap();
    assert_ne!(first.key(), c, "c waits");
    let first_key = first.key();
    let mut first = first;
    first.write_all(b"out-1").unwrap();
    first.complete().unwrap();
    let row = db.pending().find(|r| r.as_ref().unwrap().created == cc.created).unwrap().unwrap();
    assert_eq!(row.after.as_ref().unwrap().len(), 1, "one upstream left");
    let mut second = db.claim().unwrap().unwrap();
    assert_ne!(second.key(), c, "c still waits");
    assert_ne!(second.key(), first_key);
    second.write_all(b"out-2").unwrap();
    second.complete().unwrap();
    let job = db.claim().unwrap().expect("c is ready once both have results");
    assert_eq!(job.key(), c);
    let mut inputs = job.after().to_vec();
    inputs.sort();
    let mut expected = vec![
        (a, ca, if first_key == a { Hash::of(b"out-1") } else { Hash::of(b"out-2") }),
        (b, cb, if first_key == b { Hash::of(b"out-1") } else { Hash::of(b"out-2") }),
    ];
    expected.sort();
    assert_eq!(inputs, expected);
    let out = job.complete().unwrap();
    let lineage = db.why(&out).unwrap();
    assert!(!lineage.job);
    assert_eq!(lineage.results.len(), 1);
    let r = &lineage.results[0];
    assert_eq!((r.key, r.created), (c, cc.created));
    let mut ups = r.after.clone();
    ups.sort();
    let mut want = vec![(a, ca), (b, cb)];
    want.sort();
    assert_eq!(ups, want);
    let payload = db.why(&a).unwrap();
    assert!(payload.job && payload.results.is_empty());
    assert!(matches!(db.why(&Hash::of(b"never stored")), Err(Error::NotFound(_))));
}

#[test]
fn a_failed_or_cancelled_upstream_fails_its_descendants() {
    let t = temp_path();
    let db = open(&t.path);
    let fails = Arc::new(Mutex::new(Vec::new()));
    {
        let fails = fails.clone();
        db.subscribe(move |e| {
            if let Event::Fail { created, message, .. } = e {
                fails.lock().unwrap().push((*created, message.clone()));
            }
        });
    }
    let (a, ca) = db.add(&b"bad"[..]).unwrap();
    let (d, cd) = db.add_with(&b"d"[..], &after(&[(a, ca)])).unwrap();
    let (_, ce) = db.add_with(&b"e"[..], &after(&[(d, cd.created)])).unwrap();
    let (_, other) = db.add(&b"unrelated"[..]).unwrap();
    let job = db.claim_from(&["default"]).unwrap().unwrap();
    // Newest first: "unrelated" comes first; fail it only when it is "bad".
    let job = if job.key() == a {
        job
    } else {
        job.complete().unwrap();
        db.claim().unwrap().unwrap()
    };
    assert_eq!(job.key(), a);
    job.fail("boom").unwrap();
    let rows: HashMap<i64, String> =
        db.failures().map(|r| r.unwrap()).map(|f| (f.created, f.message)).collect();
    assert_eq!(rows[&ca], "boom");
    assert_eq!(rows[&cd.created], format!("upstream {a} {ca} failed"));
    assert_eq!(rows[&ce.created], format!("upstream {d} {} failed", cd.created));
    assert_eq!(db.pending().count(), 0);
    let events: HashSet<i64> = fails.lock().unwrap().iter().map(|(c, _)| *c).collect();
    assert!(events.contains(&cd.created) && events.contains(&ce.created), "fail events for dependents");
    let _ = other;

    // An upstream that is a fail row already: the dependent is one at once.
    let (_, late) = db.add_with(&b"late"[..], &after(&[(a, ca)])).unwrap();
    assert_eq!(late.failed.as_deref(), Some(format!("upstream {a} {ca} failed").as_str()));
    assert!(db.failures().any(|f| f.unwrap().created == late.created));

    // Cancel.
    let (x, cx) = db
        .add_with(
            &b"x"[..],
            &PushOptions { delay: std::time::Duration::from_secs(3600), ..Default::default() },
        )
        .unwrap();
    let (_, cy) = db.add_with(&b"y"[..], &after(&[(x, cx.created)])).unwrap();
    db.cancel(&x, cx.created).unwrap();
    let msg = db.failures().map(|f| f.unwrap()).find(|f| f.created == cy.created).unwrap().message;
    assert_eq!(msg, format!("upstream {x} {} cancelled", cx.created));
}

#[test]
fn unknown_upstreams_are_not_found_and_change_nothing() {
    let t = temp_path();
    let db = open(&t.path);
    let (a, ca) = db.add(&b"a"[..]).unwrap();
    let before = db.stats().unwrap();
    for bad in [(a, ca + 1), (Hash::of(b"nothing"), ca)] {
        let err = db.add_with(&b"z"[..], &after(&[bad])).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(err.to_string().contains("upstream"), "{err}");
        let err = db.push_with(&a, &after(&[bad])).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
    }
    let after_stats = db.stats().unwrap();
    assert_eq!((after_stats.pending, after_stats.fails), (before.pending, before.fails));
    assert_eq!(db.pending().count(), 1);
}

#[test]
fn a_dag_of_a_thousand_runs_every_node_once_in_order_across_processes() {
    // Each worker process: the payload says how many inputs the node has; a node that ran
    // with fewer results than that ran early. "fail" nodes fail.
    if helper_role().as_deref() == Some("dag") {
        let db = open(std::path::Path::new(&env("DB")));
        let log = Mutex::new(std::fs::OpenOptions::new().append(true).open(env("LOG")).unwrap());
        db.run(RunOptions { workers: 2, until_empty: true, ..Default::default() }, |job| {
            let mut payload = String::new();
            job.read_to_string(&mut payload)?;
            let want: usize = payload.split(" deps=").nth(1).unwrap().parse().unwrap();
            let early = job.after().len() != want;
            log.lock().unwrap().write_all(format!("{} {}\n", job.created(), u8::from(early)).as_bytes())?;
            if payload.starts_with("fail") {
                return Err(std::io::Error::other("this node fails"));
            }
            job.write_all(payload.as_bytes())
        })
        .unwrap();
        return;
    }
    if helper_role().is_some() {
        return;
    }
    let t = temp_path();
    let db = open_with(&t.path, fast);
    let add = |name: String, ups: &[(Hash, i64)]| -> (Hash, i64) {
        let (k, p) = db.add_with(format!("{name} deps={}", ups.len()).as_bytes(), &after(ups)).unwrap();
        (k, p.created)
    };
    // A root, a fan-out of 600, a diamond join per pair (300), a fan-in of 98 groups, a sink.
    let root = add("root".into(), &[]);
    let children: Vec<_> = (0..600)
        .map(|i| add(if i == 7 { format!("fail child {i}") } else { format!("child {i}") }, &[root]))
        .collect();
    let joins: Vec<_> =
        children.chunks(2).enumerate().map(|(i, pair)| add(format!("join {i}"), pair)).collect();
    let groups: Vec<_> =
        joins.chunks(3).take(98).enumerate().map(|(i, g)| add(format!("group {i}"), g)).collect();
    let sink = add("sink".into(), &groups);
    let total = 1 + 600 + 300 + 98 + 1;
    assert_eq!(db.pending().count(), total);
    // The failing child's descendants: its join, that join's group, the sink.
    let doomed: HashSet<i64> = [children[7].1, joins[3].1, groups[1].1, sink.1].into_iter().collect();

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::write(&log, b"").unwrap();
    let args = [("DB", t.path.display().to_string()), ("LOG", log.display().to_string())];
    let name = "a_dag_of_a_thousand_runs_every_node_once_in_order_across_processes";
    let children_procs: Vec<_> = (0..4).map(|_| spawn_helper(name, "dag", &args)).collect();
    for mut c in children_procs {
        assert!(c.wait().unwrap().success());
    }
    let mut ran = HashMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let (created, early) = line.split_once(' ').unwrap();
        assert_eq!(early, "0", "instance {created} ran before its inputs");
        *ran.entry(created.parse::<i64>().unwrap()).or_insert(0) += 1;
    }
    assert!(ran.values().all(|n| *n == 1), "a node ran twice");
    let fails: HashSet<i64> = db.failures().map(|f| f.unwrap().created).collect();
    assert_eq!(fails, doomed, "exactly the failing node and its descendants failed");
    assert_eq!(db.results().count(), total - doomed.len());
    assert_eq!(ran.len(), total - 3, "the descendants of the failed node never ran");
    assert_eq!(db.pending().count(), 0);
}

#[test]
fn backups_taken_during_a_write_heavy_run_are_consistent_copies() {
    let t = temp_path();
    let db = open(&t.path);
    let dir = tempfile::tempdir().unwrap();
    if on_pg() {
        // A server is copied into a new file.
        db.add(&b"on the server"[..]).unwrap();
        let dest = dir.path().join("b.db");
        db.backup(&dest).unwrap();
        let copy = Db::open_existing(&dest, Default::default()).unwrap();
        assert_eq!(copy.pending().count(), 1);
        assert!(copy.check().unwrap().problems.is_empty());
        assert!(matches!(db.backup(&dest), Err(Error::Invalid(_))));
        return;
    }
    let writer = open(&t.path);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                writer.add(format!("job {i}").as_bytes()).unwrap();
                if let Some(mut job) = writer.claim().unwrap() {
                    job.write_all(&vec![b'x'; (i % 5) as usize * 100_000]).unwrap();
                    job.complete().unwrap();
                }
                i += 1;
            }
        });
        for n in 0..10 {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let dest = dir.path().join(format!("backup-{n}.db"));
            db.backup(&dest).unwrap();
            let copy = Db::open_existing(&dest, Default::default()).unwrap();
            let report = copy.check().unwrap();
            assert!(report.problems.is_empty(), "backup {n}: {:?}", report.problems);
            for r in copy.results() {
                let r = r.unwrap();
                let mut out = Vec::new();
                copy.get(&r.hash).unwrap().read_to_end(&mut out).unwrap();
                assert_eq!(Hash::of(&out), r.hash, "backup {n}: a result without its blob");
            }
            let err = db.backup(&dest).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains("exists"), "{err}");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().contains(".backup-")), "no temporary left: {names:?}");
}

fn listing(db: &Db) -> Vec<String> {
    let mut out = Vec::new();
    for kind in [
        batchdb::ListKind::Job,
        batchdb::ListKind::Pending,
        batchdb::ListKind::Result,
        batchdb::ListKind::Fail,
    ] {
        out.extend(db.list(kind).map(|r| r.unwrap().to_json()));
    }
    out.push(serde_json::to_string(&db.schedules().unwrap()).unwrap());
    let queues: Vec<_> =
        db.queues().unwrap().into_iter().map(|q| (q.name, q.limit, q.paused, q.pending, q.waiting)).collect();
    out.push(format!("{queues:?}"));
    out
}

fn same_blobs(a: &Db, b: &Db) {
    for r in a.results() {
        let r = r.unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.get(&r.hash).unwrap().read_to_end(&mut x).unwrap();
        b.get(&r.hash).unwrap().read_to_end(&mut y).unwrap();
        assert_eq!(x, y);
    }
}

#[test]
fn copy_brings_everything_over_converges_and_refuses_strangers() {
    let t = temp_path();
    let src = open_with(&t.path, |o| o.chunk_size = 4096);
    let (a, ca) = src.add(&b"a"[..]).unwrap();
    let (b, cb) = src.add(&b"b"[..]).unwrap();
    src.add_with(&b"queued"[..], &PushOptions { queue: Some("q".into()), priority: 3, ..Default::default() })
        .unwrap();
    src.add_with(
        &b"later"[..],
        &PushOptions { delay: std::time::Duration::from_secs(3600), ..Default::default() },
    )
    .unwrap();
    src.limit("q", 2).unwrap();
    src.pause("q").unwrap();
    src.schedule("nightly", "0 3 * * *", &b"report"[..], &Default::default()).unwrap();
    // a: a large output (several chunks); b: a failure; d waits for a.
    let job = src.claim_from(&["default"]).unwrap().unwrap();
    assert_eq!(job.key(), b);
    job.fail("b broke").unwrap();
    let mut job = src.claim_from(&["default"]).unwrap().unwrap();
    assert_eq!(job.key(), a);
    job.write_all(&vec![7u8; 50_000]).unwrap();
    let (d, cd) = src.add_with(&b"d"[..], &after(&[(a, ca)])).unwrap();
    assert!(src.pending().any(|r| r.unwrap().after.is_some()), "d waits");
    job.complete().unwrap();
    let _ = (cb, d);

    let dir = tempfile::tempdir().unwrap();
    let mid = Db::open(dir.path().join("mid.db"), Default::default()).unwrap();
    let first = src.copy_to(&mid).unwrap();
    assert!(first.blobs_sent >= 5, "{first:?}");
    assert_eq!(listing(&mid), listing(&src));
    same_blobs(&src, &mid);
    assert!(mid.check().unwrap().problems.is_empty());
    // The runner's inputs came along (seen in a copy of its own: a claim changes a database).
    let probe = Db::open(dir.path().join("probe.db"), Default::default()).unwrap();
    src.copy_to(&probe).unwrap();
    let got = probe.claim_from(&["default"]).unwrap().unwrap();
    assert_eq!(got.created(), cd.created);
    assert_eq!(got.after().len(), 1);
    assert_eq!(got.after()[0].0, a);
    drop(got);

    // A second copy sends nothing and changes nothing.
    let second = src.copy_to(&mid).unwrap();
    assert_eq!(second.blobs_sent, 0);
    assert_eq!(listing(&mid), listing(&src));

    // Things move on in the source: d completes, "later" is cancelled.
    let mut job = src.claim_from(&["default"]).unwrap().unwrap();
    assert_eq!(job.after()[0].0, a);
    job.write_all(b"d done").unwrap();
    job.complete().unwrap();
    let later = src.pending().map(|r| r.unwrap()).find(|r| r.run_at.is_some()).unwrap();
    src.cancel(&later.job, later.created).unwrap();
    src.copy_to(&mid).unwrap();
    assert_eq!(listing(&mid), listing(&src));

    // And back, into another database (a server when the suite runs on one).
    let t2 = temp_path();
    let back = open(&t2.path);
    mid.copy_to(&back).unwrap();
    assert_eq!(listing(&back), listing(&src));
    same_blobs(&mid, &back);

    // A target that is neither empty nor a copy is refused, unchanged.
    let stranger = Db::open(dir.path().join("stranger.db"), Default::default()).unwrap();
    stranger.add(&b"mine"[..]).unwrap();
    let before = listing(&stranger);
    let err = src.copy_to(&stranger).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains("neither empty"), "{err}");
    assert_eq!(listing(&stranger), before);
}

#[test]
fn a_copy_killed_at_random_points_converges_when_run_again() {
    // The helper copies the file DB into TARGET (a server when the suite runs on one).
    if helper_role().as_deref() == Some("copier") {
        let src = Db::open_existing(env("DB"), Default::default()).unwrap();
        let dst = Db::open(env("TARGET"), Default::default()).unwrap();
        src.copy_to(&dst).unwrap();
        return;
    }
    if helper_role().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source.db");
    let src = open_with(&path, |o| {
        o.chunk_size = 4096;
        fast(o)
    });
    for i in 0..150 {
        let (_, c) = src.add(format!("job {i}").as_bytes()).unwrap();
        if i % 3 == 0 {
            continue;
        }
        let mut job = src.claim().unwrap().unwrap();
        job.write_all(&vec![i as u8; 10_000 + i]).unwrap();
        if i % 10 == 1 {
            job.fail("some fail").unwrap();
        } else {
            job.complete().unwrap();
        }
        let _ = c;
    }
    let t = temp_path();
    let args = [("DB", path.display().to_string()), ("TARGET", t.path.display().to_string())];
    let name = "a_copy_killed_at_random_points_converges_when_run_again";
    for delay in [40u64, 90, 160, 250] {
        let mut child = spawn_helper(name, "copier", &args);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    let dst = open(&t.path);
    src.copy_to(&dst).unwrap();
    assert_eq!(listing(&dst), listing(&src));
    same_blobs(&src, &dst);
    assert!(dst.check().unwrap().problems.is_empty());
    assert_eq!(src.copy_to(&dst).unwrap().blobs_sent, 0);
}
