//! Issue 19: named queues, global limits, pause and resume, unique pushes, schedules and
//! progress, on whichever backend the suite runs against (BATCHDB_TEST_PG).

mod common;

use batchdb::{Db, Error, Event, PushOptions, RunOptions};
use common::*;
use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn into(queue: &str) -> PushOptions {
    PushOptions { queue: Some(queue.to_string()), ..Default::default() }
}

#[test]
fn a_claim_serves_the_queues_it_names_and_rows_show_the_queue() {
    let t = temp_path();
    let db = open(&t.path);
    let (_, a) = db.add_with(&b"for a"[..], &into("a")).unwrap();
    let (_, b) = db.add_with(&b"for b"[..], &into("b.2-x_y")).unwrap();
    let plain = db.add(&b"plain"[..]).unwrap().1;
    assert!(a.new && b.new);
    let rows: Vec<String> = db.pending().map(|r| serde_json::to_string(&r.unwrap()).unwrap()).collect();
    assert!(rows[0].contains(r#""queue":"a""#), "{}", rows[0]);
    assert!(rows[1].contains(r#""queue":"b.2-x_y""#), "{}", rows[1]);
    assert!(!rows[2].contains("queue"), "the default queue keeps the original shape: {}", rows[2]);

    let job = db.claim_from(&["b.2-x_y"]).unwrap().expect("b's instance");
    assert_eq!(job.created(), b.created);
    job.complete().unwrap();
    assert!(db.claim_from(&["b.2-x_y"]).unwrap().is_none());
    let job = db.claim_from(&["default"]).unwrap().expect("the plain one");
    assert_eq!(job.created(), plain);
    job.complete().unwrap();
    let job = db.claim().unwrap().expect("every queue is served by default");
    assert_eq!(job.created(), a.created);
    job.complete().unwrap();
}

#[test]
fn a_limit_holds_across_handles_and_threads() {
    let t = temp_path();
    let handles: Vec<Db> = (0..3).map(|_| open(&t.path)).collect();
    handles[0].limit("q", 2).unwrap();
    for i in 0..60 {
        handles[0].add_with(format!("job {i}").as_bytes(), &into("q")).unwrap();
    }
    let (now, max, done) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    std::thread::scope(|s| {
        for db in &handles {
            for _ in 0..2 {
                let (now, max, done) = (now.clone(), max.clone(), done.clone());
                s.spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while done.load(Ordering::SeqCst) < 60 && Instant::now() < deadline {
                        match db.claim_from(&["q"]).unwrap() {
                            Some(job) => {
                                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                                max.fetch_max(n, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(5));
                                now.fetch_sub(1, Ordering::SeqCst);
                                job.complete().unwrap();
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                            None => std::thread::sleep(Duration::from_millis(1)),
                        }
                    }
                });
            }
        }
    });
    assert_eq!(done.load(Ordering::SeqCst), 60);
    assert_eq!(max.load(Ordering::SeqCst), 2, "the limit is 2, and 6 workers wanted more");
    let q = handles[1].queues().unwrap().into_iter().find(|q| q.name == "q").unwrap();
    assert_eq!((q.limit, q.pending, q.running), (Some(2), 0, 0));
    handles[1].limit("q", 0).unwrap();
    assert_eq!(handles[2].queues().unwrap().into_iter().find(|q| q.name == "q").unwrap().limit, None);
}

#[test]
fn an_expired_lease_frees_its_slot() {
    let t = temp_path();
    let db = open_with(&t.path, |o| {
        o.lease = Duration::from_millis(300);
        o.heartbeat = false;
    });
    db.limit("one", 1).unwrap();
    db.add_with(&b"first"[..], &into("one")).unwrap();
    db.add_with(&b"second"[..], &into("one")).unwrap();
    let held = db.claim_from(&["one"]).unwrap().expect("a slot is free");
    assert!(db.claim_from(&["one"]).unwrap().is_none(), "the only slot is held");
    // The holder hangs: its lease runs out, and the slot comes back.
    std::mem::forget(held);
    assert!(eventually(Duration::from_secs(20), || db
        .claim_from(&["one"])
        .unwrap()
        .map(|j| j.complete())
        .is_some()));
}

#[test]
fn pause_in_one_handle_stops_claims_in_another_until_resume() {
    let t = temp_path();
    let (a, b) = (open(&t.path), open(&t.path));
    a.pause("slow").unwrap();
    b.add_with(&b"waits"[..], &into("slow")).unwrap();
    assert!(b.claim().unwrap().is_none(), "paused: not claimed");
    assert!(!b.wait_for_work(Duration::from_millis(50)).unwrap(), "a paused queue is no work to wake for");
    let stats = b.stats().unwrap();
    assert!(stats.queues["slow"].paused);
    assert_eq!(stats.queues["slow"].pending, 1);
    // A run that waits until empty is not held by a paused queue.
    let report =
        b.run(RunOptions { until_empty: true, ..Default::default() }, |_| Ok::<_, Error>(())).unwrap();
    assert_eq!(report.completed, 0);
    a.resume("slow").unwrap();
    let job = b.claim().unwrap().expect("resumed");
    job.complete().unwrap();
}

#[test]
fn a_unique_push_returns_the_live_instance() {
    let t = temp_path();
    let db = open(&t.path);
    let uniq = PushOptions { unique: true, ..into("u") };
    let (key, first) = db.add_with(&b"once"[..], &uniq).unwrap();
    assert!(first.new);
    let again = db.push_with(&key, &uniq).unwrap();
    assert_eq!((again.created, again.new), (first.created, false));
    let (_, also) = db.add_with(&b"once"[..], &uniq).unwrap();
    assert_eq!((also.created, also.new), (first.created, false));
    // Another queue is another matter; so is a plain push.
    assert!(db.push_with(&key, &PushOptions { unique: true, ..Default::default() }).unwrap().new);
    assert!(db.push_with(&key, &into("u")).unwrap().new);
    // Running counts as live; a finished one does not.
    let job = db.claim_from(&["u"]).unwrap().unwrap();
    let running = job.created();
    assert!(!db.push_with(&key, &uniq).unwrap().new);
    job.complete().unwrap();
    let other = db.claim_from(&["u"]).unwrap().unwrap();
    assert_ne!(other.created(), running);
    other.complete().unwrap();
    assert!(db.push_with(&key, &uniq).unwrap().new, "nothing live: a new instance");
}

#[test]
fn progress_shows_on_the_pending_row_and_as_an_event() {
    let t = temp_path();
    let db = open(&t.path);
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        db.subscribe(move |e| {
            if let Event::Progress { done, message, .. } = e {
                seen.lock().unwrap().push((*done, message.clone()));
            }
        });
    }
    db.add(&b"long"[..]).unwrap();
    let job = db.claim().unwrap().unwrap();
    job.progress(0.25, "a quarter").unwrap();
    let row = db.pending().next().unwrap().unwrap();
    let json = serde_json::to_string(&row).unwrap();
    assert!(json.contains(r#""progress":{"done":0.25,"message":"a quarter"}"#), "{json}");
    assert!(matches!(job.progress(1.5, "too far"), Err(Error::Invalid(_))));
    assert!(matches!(job.progress(f64::NAN, "nan"), Err(Error::Invalid(_))));
    assert!(matches!(job.progress(0.5, &"x".repeat(1001)), Err(Error::Invalid(_))));
    job.progress(1.0, "").unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(0.25, "a quarter".to_string()), (1.0, String::new())]);
    job.complete().unwrap();
}

#[test]
fn a_schedule_pushes_one_instance_per_slot_among_several_claimers() {
    let t = temp_path();
    let handles: Vec<Db> = (0..3).map(|_| open(&t.path)).collect();
    let row = handles[0].schedule("tick", "every 1s", &b"tick"[..], &into("ticks")).unwrap();
    assert_eq!(row.next_run % 1000, 0, "slots are whole seconds");
    let listed = handles[1].schedules().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].spec.as_str(), listed[0].queue.as_str()),
        ("tick", "every 1s", "ticks")
    );
    let ran = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_millis(3500);
    std::thread::scope(|s| {
        for db in &handles {
            let ran = ran.clone();
            s.spawn(move || {
                while Instant::now() < until {
                    if let Some(job) = db.claim().unwrap() {
                        ran.lock().unwrap().push(job.created());
                        job.complete().unwrap();
                    } else {
                        db.wait_for_work(Duration::from_millis(200)).unwrap();
                    }
                }
            });
        }
    });
    handles[0].unschedule("tick").unwrap();
    let ran = ran.lock().unwrap().clone();
    let slots: HashSet<i64> = ran.iter().map(|c| c / 1000).collect();
    assert!(ran.len() >= 2, "3.5 s of every 1s: {ran:?}");
    assert_eq!(slots.len(), ran.len(), "one instance per slot, none twice: {ran:?}");
    assert!(matches!(handles[2].unschedule("tick"), Err(Error::NotFound(_))));
}

#[test]
fn bad_names_limits_and_specs_are_refused_and_change_nothing() {
    let t = temp_path();
    let db = open(&t.path);
    let key = db.create(&b"x"[..]).unwrap();
    let before = db.stats().unwrap();
    for bad in ["", "has space", "ünïcode", "a/b", &"q".repeat(65)] {
        let err = db.push_with(&key, &into(bad)).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains("queue name"), "{bad:?}: {err}");
        assert!(matches!(db.add_with(&b"y"[..], &into(bad)), Err(Error::Invalid(_))));
        assert!(matches!(db.limit(bad, 1), Err(Error::Invalid(_))));
        assert!(matches!(db.pause(bad), Err(Error::Invalid(_))));
        assert!(matches!(db.claim_from(&[bad]), Err(Error::Invalid(_))));
        assert!(matches!(
            db.schedule(bad, "every 1s", &b"z"[..], &Default::default()),
            Err(Error::Invalid(_))
        ));
    }
    for spec in ["every 0s", "* * * *", "61 * * * *", "every fortnight", "@daily"] {
        let err = db.schedule("s", spec, &b"z"[..], &Default::default()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains(spec.trim()), "{spec:?}: {err}");
    }
    assert!(matches!(db.unschedule("nope"), Err(Error::NotFound(_))));
    assert_eq!(db.stats().unwrap(), before, "nothing changed");
    assert!(db.schedules().unwrap().is_empty());
}

#[test]
fn stats_count_ready_running_and_waiting_per_queue() {
    let t = temp_path();
    let db = open(&t.path);
    db.add_with(&b"1"[..], &into("s")).unwrap();
    db.add_with(&b"2"[..], &into("s")).unwrap();
    db.add_with(&b"3"[..], &PushOptions { delay: Duration::from_secs(3600), ..into("s") }).unwrap();
    db.limit("s", 5).unwrap();
    let job = db.claim_from(&["s"]).unwrap().unwrap();
    let stats = db.stats().unwrap();
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(
        json["queues"]["s"],
        serde_json::json!({"pending": 1, "running": 1, "waiting": 1, "limit": 5, "paused": false})
    );
    assert_eq!(json["queues"]["default"]["limit"], serde_json::Value::Null);
    job.complete().unwrap();
    // Totals count what prune removes.
    let end = db.results().next().unwrap().unwrap().end;
    assert_eq!(db.prune(end + 1).unwrap(), 1);
    let stats = db.stats().unwrap();
    assert_eq!((stats.results, stats.results_total), (0, 1));
}

#[test]
fn is_idle_is_the_rule_an_until_empty_run_ends_by() {
    let t = temp_path();
    let db = open(&t.path);
    assert!(db.is_idle::<&str>(&[]).unwrap());
    db.add_with(&b"p"[..], &into("p")).unwrap();
    assert!(!db.is_idle::<&str>(&[]).unwrap());
    assert!(db.is_idle(&["other"]).unwrap(), "a queue not served does not count");
    db.pause("p").unwrap();
    assert!(db.is_idle::<&str>(&[]).unwrap(), "a paused queue does not count");
    db.resume("p").unwrap();
    let job = db.claim().unwrap().unwrap();
    assert!(!db.is_idle(&["other"]).unwrap(), "a running instance counts");
    let (k, c) = (job.key(), job.created());
    let (_, dep) = db
        .add_with(
            &b"d"[..],
            &PushOptions { after: vec![(k, c)], queue: Some("d".into()), ..Default::default() },
        )
        .unwrap();
    job.complete().unwrap();
    assert!(!db.is_idle(&["d"]).unwrap(), "the dependent is ready");
    db.claim_from(&["d"]).unwrap().unwrap().complete().unwrap();
    assert!(db.is_idle::<&str>(&[]).unwrap());
    assert!(matches!(db.is_idle(&["bad name"]), Err(Error::Invalid(_))));
    let _ = dep;
}

#[test]
fn a_limit_holds_across_processes() {
    use std::io::Write;
    if helper_role().as_deref() == Some("limited") {
        let db = open(std::path::Path::new(&env("DB")));
        let log = Mutex::new(std::fs::OpenOptions::new().append(true).open(env("LOG")).unwrap());
        db.run(RunOptions { workers: 2, until_empty: true, queues: vec!["q".into()] }, |job| {
            // One write a line: O_APPEND keeps the processes' lines whole and in order.
            log.lock().unwrap().write_all(format!("S {}\n", job.created()).as_bytes())?;
            std::thread::sleep(Duration::from_millis(10));
            log.lock().unwrap().write_all(format!("E {}\n", job.created()).as_bytes())
        })
        .unwrap();
        return;
    }
    if helper_role().is_some() {
        return;
    }
    let t = temp_path();
    let db = open(&t.path);
    db.limit("q", 2).unwrap();
    for i in 0..150 {
        db.add_with(format!("limited {i}").as_bytes(), &into("q")).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::write(&log, b"").unwrap();
    let args = [("DB", t.path.display().to_string()), ("LOG", log.display().to_string())];
    let children: Vec<_> =
        (0..3).map(|_| spawn_helper("a_limit_holds_across_processes", "limited", &args)).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let (mut now, mut max, mut started) = (0i32, 0i32, 0);
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        if line.starts_with('S') {
            now += 1;
            started += 1;
        } else {
            now -= 1;
        }
        max = max.max(now);
    }
    assert_eq!(started, 150);
    assert_eq!(max, 2, "three processes with two workers each, queue limit 2");
}

/// Stats, and each queue's counts, follow every kind of change exactly, and `check` finds
/// nothing after any of them: the ground truth for any faster way of counting.
#[test]
fn stats_follow_every_kind_of_change() {
    let t = temp_path();
    let db = open_with(&t.path, |o| {
        o.chunk_size = 1024;
        fast(o);
    });
    // (jobs, pending, running, results, fails, blobs, blob bytes), then the default queue's
    // and q2's (ready, running, waiting).
    type Counts = ((u64, u64, u64, u64, u64, u64, u64), (u64, u64, u64), (u64, u64, u64));
    let counts = |step: &str| -> Counts {
        let report = db.check().unwrap();
        assert!(report.is_clean(), "after {step}: {:?}", report.problems);
        let s = db.stats().unwrap();
        let q =
            |name: &str| s.queues.get(name).map(|q| (q.pending, q.running, q.waiting)).unwrap_or_default();
        ((s.jobs, s.pending, s.running, s.results, s.fails, s.blobs, s.blob_bytes), q("default"), q("q2"))
    };
    let later = PushOptions { delay: Duration::from_secs(3600), ..Default::default() };
    let (a, _) = db.add(&b"a"[..]).unwrap();
    let (b, b_pushed) = db.add_with(&b"bb"[..], &later).unwrap();
    let b_created = b_pushed.created;
    let in_q2 = PushOptions { queue: Some("q2".into()), ..Default::default() };
    let (c, _) = db.add_with(&b"ccc"[..], &in_q2).unwrap();
    assert_eq!(counts("three adds"), ((3, 3, 0, 0, 0, 3, 6), (1, 0, 1), (1, 0, 0)));

    let mut job = db.claim_from(&["default"]).unwrap().unwrap();
    assert_eq!(job.key(), a);
    assert_eq!(counts("a claim"), ((3, 2, 1, 0, 0, 3, 6), (0, 1, 1), (1, 0, 0)));
    job.write_all(b"output of a").unwrap();
    job.complete().unwrap();
    assert_eq!(counts("a complete"), ((3, 2, 0, 1, 0, 4, 17), (0, 0, 1), (1, 0, 0)));

    let job = db.claim_from(&["q2"]).unwrap().unwrap();
    let c_created = job.created();
    job.fail("no").unwrap();
    assert_eq!(counts("a fail"), ((3, 1, 0, 1, 1, 4, 17), (0, 0, 1), (0, 0, 0)));
    let c_again = db.retry(&c, c_created).unwrap();
    assert_eq!(counts("a retry"), ((3, 2, 0, 1, 0, 4, 17), (0, 0, 1), (1, 0, 0)));

    let after_c = PushOptions { after: vec![(c, c_again)], ..Default::default() };
    let (d, d_pushed) = db.add_with(&b"dddd"[..], &after_c).unwrap();
    let d_created = d_pushed.created;
    assert_eq!(counts("a push after c"), ((4, 3, 0, 1, 0, 5, 21), (0, 0, 2), (1, 0, 0)));
    let mut job = db.claim_from(&["q2"]).unwrap().unwrap();
    job.write_all(&vec![5u8; 3000]).unwrap();
    job.complete().unwrap();
    assert_eq!(counts("c complete, d ready"), ((4, 2, 0, 2, 0, 6, 3021), (1, 0, 1), (0, 0, 0)));

    db.cancel(&b, b_created).unwrap();
    assert_eq!(counts("a cancel"), ((4, 1, 0, 2, 0, 6, 3021), (1, 0, 0), (0, 0, 0)));
    let job = db.claim().unwrap().unwrap();
    assert_eq!((job.key(), job.created()), (d, d_created));
    drop(job);
    // A released instance waits for its retry's back-off.
    assert_eq!(counts("a release"), ((4, 1, 0, 2, 0, 6, 3021), (0, 0, 1), (0, 0, 0)));

    // A large job stored in chunks, and an unfinished blob that never counts.
    db.create(&vec![1u8; 10_000][..]).unwrap();
    let mut w = db.writer();
    w.write_all(&[2u8; 5000]).unwrap();
    drop(w);
    assert_eq!(counts("a chunked job"), ((5, 1, 0, 2, 0, 7, 13_021), (0, 0, 1), (0, 0, 0)));

    db.prune(now_ms() + 1).unwrap();
    assert_eq!(counts("prune"), ((5, 1, 0, 0, 0, 7, 13_021), (0, 0, 1), (0, 0, 0)));
    let s = db.stats().unwrap();
    assert_eq!((s.results_total, s.fails_total), (2, 1), "totals count removed rows");
    db.gc().unwrap();
    assert_eq!(counts("gc"), ((5, 1, 0, 0, 0, 5, 10_010), (0, 0, 1), (0, 0, 0)));
}

/// A queue's oldest ready instance is the oldest of every priority (the dashboard's "oldest
/// pending" and `batchdb_oldest_pending_seconds`), not the oldest of the first priority.
#[test]
fn the_oldest_ready_instance_is_found_across_priorities() {
    let t = temp_path();
    let db = open(&t.path);
    let at = |priority: i32, payload: &[u8]| {
        db.add_with(payload, &PushOptions { priority, ..Default::default() }).unwrap().1.created
    };
    let oldest = || db.queues().unwrap().into_iter().find(|q| q.name == "default").unwrap().oldest_ready;
    assert_eq!(oldest(), None);
    let b = at(5, b"b");
    let a = at(0, b"a");
    let c = at(-3, b"c");
    let d = at(5, b"d");
    assert!(b < a && a < c && c < d);
    assert_eq!(oldest(), Some(b));
    db.cancel(&batchdb::Hash::of(b"b"), b).unwrap();
    assert_eq!(oldest(), Some(a));
    db.cancel(&batchdb::Hash::of(b"a"), a).unwrap();
    assert_eq!(oldest(), Some(c));
    let later = PushOptions { delay: Duration::from_secs(3600), ..Default::default() };
    db.add_with(&b"e"[..], &later).unwrap();
    assert_eq!(oldest(), Some(c), "a delayed instance is not ready");
}
