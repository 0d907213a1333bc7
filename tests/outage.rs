//! A run that survives the server (issue 23): the server restarts during a run, and the run
//! goes on. Needs a PostgreSQL server (`BATCHDB_TEST_PG`) and a command that restarts it
//! (`BATCHDB_TEST_PG_RESTART`, run with `sh -c`; tests/pg/run.sh sets both, with
//! `pg_ctl restart -m fast`). Without them it says so and does nothing.

mod common;

use batchdb::{Event, Hash, Options, RunOptions};
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn restart_command() -> Option<String> {
    if !on_pg() {
        println!("skipped: needs a PostgreSQL server (BATCHDB_TEST_PG)");
        return None;
    }
    let cmd = std::env::var("BATCHDB_TEST_PG_RESTART").ok().filter(|c| !c.is_empty());
    if cmd.is_none() {
        println!("skipped: BATCHDB_TEST_PG_RESTART (a command that restarts the server) is not set");
    }
    cmd
}

fn restart(cmd: &str) -> Duration {
    let t = Instant::now();
    let st = std::process::Command::new("sh").arg("-c").arg(cmd).status().expect("run the restart command");
    assert!(st.success(), "the restart command failed: {st}");
    t.elapsed()
}

/// 300 jobs on 4 workers, each taking ~10 ms; the server is restarted (fast: every connection
/// is ended) twice while they run. The run goes on by itself and ends empty: every instance
/// has exactly one result, there is no fail row, the outage was reported once per restart as
/// a `Disconnected` event followed by a `Reconnected` one, and nothing was recorded twice.
#[test]
fn a_run_goes_on_through_server_restarts() {
    let Some(cmd) = restart_command() else { return };
    let t = temp_path();
    let db = open_with(&t.path, |o: &mut Options| {
        fast(o);
        // A claim whose answer was lost in the restart holds its instance until the lease
        // runs out: keep that short.
        o.lease = Duration::from_secs(3);
    });
    const N: usize = 300;
    for i in 0..N {
        db.add(format!("job {i}").as_bytes()).unwrap();
    }
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let ev = events.clone();
    db.subscribe(move |e| match e {
        Event::Disconnected { message } => {
            assert!(message.contains(batchdb::CONNECTION_LOST), "{message}");
            ev.lock().unwrap().push("down".into())
        }
        Event::Reconnected { outage_ms } => ev.lock().unwrap().push(format!("up {outage_ms}")),
        Event::Fail { message, .. } => ev.lock().unwrap().push(format!("fail {message}")),
        _ => {}
    });
    let runs: Arc<Mutex<HashMap<Hash, u32>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let restarter = {
        let (cmd, db, done) = (cmd.clone(), db.clone(), done.clone());
        std::thread::spawn(move || {
            let mut took = Vec::new();
            for wanted in [N / 4, N / 2] {
                while !done.load(Ordering::SeqCst) && db.stats().map_or(0, |s| s.results as usize) < wanted {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if done.load(Ordering::SeqCst) {
                    break;
                }
                took.push(restart(&cmd));
            }
            took
        })
    };
    let started = Instant::now();
    let r = runs.clone();
    let report = db
        .run(RunOptions { workers: 4, until_empty: true, ..Default::default() }, |job| {
            *r.lock().unwrap().entry(job.key()).or_default() += 1;
            let mut payload = Vec::new();
            job.read_to_end(&mut payload)?;
            std::thread::sleep(Duration::from_millis(10));
            job.write_all(&payload)
        })
        .expect("the run survives the restarts");
    done.store(true, Ordering::SeqCst);
    let took = restarter.join().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(took.len(), 2, "both restarts happened during the run");
    let events = events.lock().unwrap().clone();
    println!("restarts took {took:?}; run {elapsed:?}, {report:?}; events {events:?}");
    assert!(elapsed < Duration::from_secs(120), "{elapsed:?}");
    assert!(!events.iter().any(|e| e.starts_with("fail")), "no fail rows from the outage: {events:?}");
    let downs = events.iter().filter(|e| *e == "down").count();
    let ups = events.iter().filter(|e| e.starts_with("up")).count();
    assert!((1..=2).contains(&downs) && downs == ups, "each outage reported once, and its end: {events:?}");
    // Every instance exactly one result, none failed, nothing left.
    let s = db.stats().unwrap();
    assert_eq!((s.results as usize, s.fails), (N, 0), "{s:?}");
    assert_eq!(db.pending().count(), 0);
    let results = db.results().map(|r| r.unwrap()).collect::<Vec<_>>();
    assert_eq!(results.len(), N);
    let mut per_instance = HashMap::new();
    for r in &results {
        *per_instance.entry((r.key, r.created)).or_insert(0) += 1;
        assert_eq!(db.get(&r.hash).unwrap().read_all_bytes(), db.get(&r.key).unwrap().read_all_bytes());
    }
    assert!(per_instance.values().all(|&n| n == 1), "an instance with two results");
    assert_eq!(per_instance.len(), N);
    // A runner ran again only for an instance it held during the restart (at most 4 workers
    // × 2 restarts; its first run's complete was lost or never sent).
    let again: u32 = runs.lock().unwrap().values().map(|n| n - 1).sum();
    assert!(again <= 8, "{again} runs repeated");
    assert!(report.completed as usize + report.lost as usize >= N);
}

trait ReadAll {
    fn read_all_bytes(self) -> Vec<u8>;
}

impl<R: Read> ReadAll for R {
    fn read_all_bytes(mut self) -> Vec<u8> {
        let mut v = Vec::new();
        self.read_to_end(&mut v).unwrap();
        v
    }
}
