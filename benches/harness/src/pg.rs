//! P10 (issue 12): the claim/complete cycle on PostgreSQL, batchdb's backend against a
//! hand-written `FOR UPDATE SKIP LOCKED` queue on the same server, in the same run.
//!
//! Both sides run at full durability (`synchronous_commit` on; `benches/run.sh` starts its
//! server with fsync on), each measurement in a schema of its own that is dropped afterwards.
//! Built only with the harness's `postgres` feature; without it, or without `--pg URL`, the
//! rows say why they were not measured.

use crate::{Plan, Row};

/// Worker counts of the rows P10-w1, P10-w4, P10-w8.
const WORKERS: [usize; 3] = [1, 4, 8];

pub fn p10(plan: &Plan, url: Option<&str>, status: Option<&str>) -> Vec<Row> {
    let mut rows: Vec<Row> = WORKERS
        .iter()
        .map(|&w| {
            Row::new(
                &format!("P10-w{w}"),
                &format!("claim + complete (empty output) on PostgreSQL, durability full, {w} worker(s)"),
                "jobs/s",
                "hand-written SKIP LOCKED queue (postgres crate, 1 connection per worker)",
                Some(0.7),
            )
        })
        .collect();
    let why = match url {
        None => Some(status.unwrap_or("no server given (--pg URL; benches/run.sh starts one)").to_string()),
        Some(_) if !cfg!(feature = "postgres") => {
            Some("the harness was built without its postgres feature".to_string())
        }
        Some(_) => None,
    };
    if let Some(why) = why {
        for r in &mut rows {
            r.notes.push(format!("not measured: {why}"));
        }
        return rows;
    }
    #[cfg(feature = "postgres")]
    imp::measure(plan, url.unwrap(), &mut rows);
    #[cfg(not(feature = "postgres"))]
    let _ = plan;
    rows
}

#[cfg(feature = "postgres")]
mod imp {
    use super::WORKERS;
    use crate::work::{batchdb_cycle, fill, tag};
    use crate::{pair, payload, Plan, Row};
    use batchdb::{Db, Durability, Options};
    use postgres::{Client, NoTls};
    use serde_json::json;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    fn connect(url: &str) -> Client {
        Client::connect(url, NoTls).unwrap_or_else(|e| panic!("connect to PostgreSQL: {e}"))
    }

    /// A schema name of its own for one measurement.
    fn schema(kind: &str) -> String {
        format!("bench_{kind}_{}_{}", std::process::id(), tag())
    }

    fn drop_schema(url: &str, schema: &str) {
        connect(url).batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).expect("drop schema");
    }

    fn batchdb_side(plan: &Plan, url: &str, workers: usize, busy: &mut u64) -> f64 {
        let schema = schema("b");
        let sep = if url.contains('?') { '&' } else { '?' };
        let db = Db::open(
            format!("{url}{sep}schema={schema}"),
            Options { durability: Durability::Full, ..Default::default() },
        )
        .expect("open batchdb on PostgreSQL");
        fill(&db, plan.pg_queue);
        let (rate, b) = batchdb_cycle(&db, workers, plan.slice);
        *busy += b;
        drop(db);
        drop_schema(url, &schema);
        rate
    }

    /// Claims the newest ready row, skipping rows other workers hold.
    const CLAIM: &str = "UPDATE pending SET state = 1, lease_until = $1 \
         WHERE id = (SELECT id FROM pending WHERE state = 0 ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, payload";

    fn raw_side(plan: &Plan, url: &str, workers: usize) -> f64 {
        let schema = schema("raw");
        let setup = format!("SET search_path TO {schema}");
        {
            let mut c = connect(url);
            c.batch_execute(&format!(
                "CREATE SCHEMA {schema}; {setup}; \
                 CREATE TABLE pending (id bigserial PRIMARY KEY, payload bytea NOT NULL, \
                     state integer NOT NULL DEFAULT 0, lease_until bigint); \
                 CREATE INDEX pending_ready ON pending (id) WHERE state = 0; \
                 CREATE TABLE result (id bigint PRIMARY KEY, output bytea NOT NULL);"
            ))
            .expect("baseline schema");
            let t = tag();
            let mut i = 0;
            while i < plan.pg_queue {
                let k = (plan.pg_queue - i).min(1000);
                let mut tx = c.transaction().expect("begin");
                let st = tx.prepare("INSERT INTO pending (payload) VALUES ($1)").expect("prepare");
                for j in i..i + k {
                    tx.execute(&st, &[&payload(t, j as u64)]).expect("fill");
                }
                tx.commit().expect("commit");
                i += k;
            }
        }
        let done = AtomicU64::new(0);
        let start = Instant::now();
        std::thread::scope(|sc| {
            for _ in 0..workers {
                let (done, setup) = (&done, &setup);
                sc.spawn(move || {
                    let mut c = connect(url);
                    c.batch_execute(setup).expect("search_path");
                    let claim = c.prepare(CLAIM).expect("prepare claim");
                    let insert =
                        c.prepare("INSERT INTO result (id, output) VALUES ($1, ''::bytea)").expect("prepare");
                    let delete = c.prepare("DELETE FROM pending WHERE id = $1").expect("prepare");
                    while start.elapsed() < plan.slice {
                        let lease = now_ms() + 30_000;
                        let Some(row) = c.query_opt(&claim, &[&lease]).expect("claim") else { break };
                        let id: i64 = row.get(0);
                        std::hint::black_box(row.get::<_, &[u8]>(1));
                        let mut tx = c.transaction().expect("begin");
                        tx.execute(&insert, &[&id]).expect("insert result");
                        tx.execute(&delete, &[&id]).expect("delete");
                        tx.commit().expect("commit");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let rate = done.into_inner() as f64 / start.elapsed().as_secs_f64();
        drop_schema(url, &schema);
        rate
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    }

    /// What the server says of itself: the rows' figures depend on it.
    fn server(url: &str) -> serde_json::Value {
        let mut c = connect(url);
        let mut get = |q: &str| -> String {
            c.query_one(q, &[]).and_then(|r| r.try_get::<_, String>(0)).unwrap_or_else(|e| format!("? ({e})"))
        };
        json!({
            "version": get("SHOW server_version"),
            "fsync": get("SHOW fsync"),
            "synchronous_commit": get("SHOW synchronous_commit"),
        })
    }

    pub fn measure(plan: &Plan, url: &str, rows: &mut [Row]) {
        let srv = server(url);
        for (row, &w) in rows.iter_mut().zip(WORKERS.iter()) {
            let mut busy = 0;
            let rounds = pair(plan.reps, || batchdb_side(plan, url, w, &mut busy), || raw_side(plan, url, w));
            row.set(rounds);
            row.extra = json!({"server": srv, "queued": plan.pg_queue, "slice_s": plan.slice.as_secs_f64(),
                               "busy_surfaced": busy});
            row.notes.push(format!(
                "PostgreSQL {} (fsync={}, synchronous_commit={}) on loopback; {} jobs queued per measurement, \
                 each side in a fresh schema; BUSY surfaced by batchdb: {busy}",
                srv["version"].as_str().unwrap_or("?"),
                srv["fsync"].as_str().unwrap_or("?"),
                srv["synchronous_commit"].as_str().unwrap_or("?"),
                plan.pg_queue
            ));
        }
    }
}
