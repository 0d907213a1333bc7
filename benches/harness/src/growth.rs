//! Cost growth (issue 22, item 3): how each operation's rate changes with the size of the
//! database. Not part of the full run nor of CI (building a database of a million jobs takes
//! minutes):
//!
//!   batchdb-bench --growth 10000,1000000 [--scratch DIR] [--out FILE.json] [--slice SECONDS] [--keep]
//!                 [--same-output]
//!
//! For each size N: a fresh file (durability normal) gets N small jobs with `add_batch`, 1,000
//! a call, and every one is run (`run`, one worker) and completed with a small distinct output
//! (so the file holds N jobs, N results and 2N blobs); its bytes on disk per job are set against a raw
//! SQL file holding the same (a content-addressed `WITHOUT ROWID` blob table for the payloads
//! and a result table with the outputs inline). Then, on the same file, each operation runs
//! for one slice: `add`, claim+complete (after 50,000 more jobs are queued: the slice must not
//! run the queue dry, which it did at ten million, where the adds before it queue fewer), the first page of
//! 100 results, `get` of a small blob (random jobs' payloads), `stats`, the first `gc` (which
//! looks at every blob) and then the next ones, which find nothing to remove. The files go in the scratch folder (outside git) and are removed after.
//!
//! Writes FILE.json, the table as FILE.md and, for two sizes or more, the plot as FILE.svg.
//!
//! With `--keep`, each size's built file stays in the scratch folder as `built.db` (with
//! `built.json`, what its build measured) and a later run with the same scratch folder measures
//! a fresh copy of it instead of building again: ten million jobs take most of an hour to build.
//!
//! With `--same-output` every job's output is the same bytes (one output blob that every
//! result shares, as jobs run for their effect have), everywhere, the measured claim+complete
//! included. A distinct output is a new random 32-byte hash in the blob index per completion:
//! past about three million jobs the index no longer fits the page cache's working set and
//! each completion costs a random page write, so building ten million that way was disk-bound
//! here (BENCHMARKS.md). The same output keeps every write of the build sequential.

use crate::baseline;
use crate::payload;
use batchdb::{Db, Durability, Hash, Options, RunOptions};
use rusqlite::params;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: batchdb-bench --growth N,N,... [--scratch DIR] [--out FILE.json] [--slice SECONDS] [--keep] \
         [--same-output]"
    );
    eprintln!("       batchdb-bench --growth-plot FILE.json   (draws FILE.svg again)");
    std::process::exit(2)
}

/// Bytes of the database file and its WAL.
fn disk_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The output of job `i`: distinct, or the same for every job (`--same-output`).
fn output(i: u64, same: bool) -> Vec<u8> {
    if same {
        return b"the same result for every job".to_vec();
    }
    format!("result of job number {i:010}").into_bytes()
}

/// Calls `op` until `slice` passes (at least 3 times); returns calls per second.
fn rate(slice: Duration, mut op: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    let mut i = 0;
    while t.elapsed() < slice || i < 3 {
        op(i);
        i += 1;
    }
    i as f64 / t.elapsed().as_secs_f64()
}

/// Claims, reads and completes with a small output; false when nothing was ready.
fn cycle(db: &Db, i: u64, same: bool, buf: &mut Vec<u8>) -> bool {
    let Some(mut job) = db.claim().expect("claim") else { return false };
    buf.clear();
    job.read_to_end(buf).expect("read payload");
    job.io().1.write_all(&output(i, same)).expect("write output");
    job.complete().expect("complete");
    true
}

fn open(path: &Path) -> Db {
    Db::open(path, Options { durability: Durability::Normal, ..Default::default() }).expect("open batchdb")
}

/// The raw file of the same content: payloads under their SHA-256, results inline.
fn raw_bytes(path: &Path, n: u64, tag: u64, same: bool) -> u64 {
    let c = baseline::open(path, false);
    c.execute_batch(
        "CREATE TABLE blob (hash BLOB PRIMARY KEY, payload BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE result (id INTEGER PRIMARY KEY, hash BLOB NOT NULL, output BLOB NOT NULL);",
    )
    .expect("schema");
    let mut i = 0;
    while i < n {
        c.execute_batch("BEGIN").expect("begin");
        for j in i..(i + 1000).min(n) {
            let p = payload(tag, j);
            let h: [u8; 32] = Sha256::digest(&p).into();
            c.prepare_cached("INSERT INTO blob (hash, payload) VALUES (?1, ?2)")
                .unwrap()
                .execute(params![&h[..], p])
                .expect("blob");
            c.prepare_cached("INSERT INTO result (hash, output) VALUES (?1, ?2)")
                .unwrap()
                .execute(params![&h[..], output(j, same)])
                .expect("result");
        }
        c.execute_batch("COMMIT").expect("commit");
        i += 1000;
    }
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    drop(c);
    disk_bytes(path)
}

/// The sampled jobs whose payloads `get` reads: about 10,000 spread over the whole file.
fn sample_keys(n: u64, tag: u64) -> Vec<Hash> {
    let step = (n / 10_000).clamp(1, 1000) as usize;
    (0..n).step_by(step).map(|j| Hash::of(&payload(tag, j))).collect()
}

/// The sampled keys in a random order (xorshift, the same sequence each run), so that reads
/// land all over the file.
fn random_keys<'a>(keys: &'a [Hash]) -> impl FnMut() -> &'a Hash {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        &keys[(x % keys.len() as u64) as usize]
    }
}

/// Builds the file of `n` jobs at `path`: added with `add_batch`, then every one run and
/// completed. Returns how long that took.
fn build(path: &Path, n: u64, tag: u64, same: bool) -> f64 {
    let started = Instant::now();
    let db = open(path);
    let mut i = 0;
    while i < n {
        let batch: Vec<Vec<u8>> = (i..(i + 1000).min(n)).map(|j| payload(tag, j)).collect();
        db.add_batch(&batch).expect("add_batch");
        i += 1000;
    }
    let filled = started.elapsed().as_secs_f64();
    let k = std::sync::atomic::AtomicU64::new(0);
    let report = db
        .run(RunOptions { workers: 1, until_empty: true, ..Default::default() }, |job| {
            let i = k.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::io::copy(&mut job.io().0, &mut std::io::sink())?;
            job.write_all(&output(i, same))
        })
        .expect("run");
    assert_eq!(report.completed, n, "every job completed");
    eprintln!(
        "growth {n}: {n} jobs added in {filled:.0} s, completed in {:.0} s",
        started.elapsed().as_secs_f64() - filled
    );
    drop(db);
    // Reopen and close once more: the WAL is checkpointed and truncated on the last close.
    drop(open(path));
    started.elapsed().as_secs_f64()
}

fn one_size(n: u64, scratch: &Path, slice: Duration, keep: bool, same: bool) -> Value {
    let dir = scratch.join(if same { format!("growth-{n}-same-output") } else { format!("growth-{n}") });
    let built_db = dir.join("built.db");
    let built_json = dir.join("built.json");
    let kept: Option<Value> = std::fs::read(&built_json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|_| built_db.exists());
    let path = dir.join("batchdb.db");
    let raw_path = dir.join("raw.db");
    let (tag, built, bytes, raw) = match kept {
        Some(k) => {
            eprintln!("growth {n}: measuring a copy of the kept {}", built_db.display());
            for f in ["batchdb.db", "batchdb.db-wal", "batchdb.db-shm"] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            std::fs::copy(&built_db, &path).expect("copy the kept file");
            let get = |f: &str| k[f].as_u64().unwrap_or_else(|| panic!("{} lacks {f}", built_json.display()));
            let tag = get("tag");
            let raw = if raw_path.exists() { get("raw_bytes") } else { raw_bytes(&raw_path, n, tag, same) };
            (tag, k["build_seconds"].as_f64().unwrap_or(f64::NAN), get("bytes"), raw)
        }
        None => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            let tag = crate::work::tag();
            let built = build(&path, n, tag, same);
            let bytes = disk_bytes(&path);
            let raw = raw_bytes(&raw_path, n, tag, same);
            if keep {
                std::fs::copy(&path, &built_db).expect("keep the built file");
                let doc =
                    json!({"jobs": n, "tag": tag, "build_seconds": built, "bytes": bytes, "raw_bytes": raw});
                std::fs::write(&built_json, doc.to_string()).expect("write built.json");
            }
            (tag, built, bytes, raw)
        }
    };
    // A sample of the stored payloads' keys, spread over the whole file, for `get`.
    let keys = sample_keys(n, tag);

    let db = open(&path);
    let mut rates = serde_json::Map::new();
    let mut put = |name: &str, r: f64| {
        eprintln!("growth {n}: {name:<28} {r:>10.0} /s");
        rates.insert(name.into(), json!(r));
    };
    put("list page (100 results)", rate(slice, |_| assert_eq!(db.results().take(100).count(), 100)));
    let mut buf = Vec::new();
    let mut pick = random_keys(&keys);
    put(
        "get small blob",
        rate(slice, |_| {
            let key = pick();
            buf.clear();
            db.get(key).expect("get").read_to_end(&mut buf).expect("read");
        }),
    );
    // The same reads from the raw file: how much of the slowdown is SQLite's (a deeper B-tree,
    // pages outside the cache) rather than batchdb's.
    {
        let c = baseline::open(&raw_path, false);
        let mut stmt = c.prepare("SELECT payload FROM blob WHERE hash = ?1").expect("prepare");
        let mut pick = random_keys(&keys);
        put(
            "get small blob, raw SQL baseline",
            rate(slice, |_| {
                let key = pick();
                let p: Vec<u8> = stmt.query_row([&key.as_bytes()[..]], |r| r.get(0)).expect("raw get");
                std::hint::black_box(p);
            }),
        );
    }
    if !keep {
        let _ = std::fs::remove_file(&raw_path);
    }
    put("stats", rate(slice, |_| drop(std::hint::black_box(db.stats().expect("stats")))));
    // The first gc of a file looks at every blob; each one after, only at what may have
    // become garbage since (on a file: see src/gc.rs). Both are reported.
    let first = Instant::now();
    assert_eq!(db.gc().expect("gc").blobs_removed, 0);
    put("gc, the first (every blob)", 1.0 / first.elapsed().as_secs_f64());
    put("gc (nothing to remove)", rate(slice, |_| assert_eq!(db.gc().expect("gc").blobs_removed, 0)));
    // Payloads no job of this file has (a kept file's tag may equal a fresh counter's).
    let t2 = tag + 1;
    put(
        "add",
        rate(slice, |i| {
            std::hint::black_box(db.add(&payload(t2, i)[..]).expect("add"));
        }),
    );
    let t3 = tag + 2;
    let more: Vec<Vec<u8>> = (0..50_000).map(|j| payload(t3, j)).collect();
    for b in more.chunks(1000) {
        db.add_batch(b).expect("queue more");
    }
    put(
        "claim+complete",
        rate(slice, |i| {
            assert!(cycle(&db, n + i, same, &mut buf), "the queue ran dry");
        }),
    );
    drop(db);
    if keep {
        for f in ["batchdb.db", "batchdb.db-wal", "batchdb.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    json!({
        "jobs": n,
        "build_seconds": built,
        "bytes": bytes,
        "bytes_per_job": bytes as f64 / n as f64,
        "raw_bytes": raw,
        "raw_bytes_per_job": raw as f64 / n as f64,
        "rates_per_s": rates,
    })
}

/// Draws the plot of a growth run's JSON again (as FILE.svg).
pub fn replot(args: &[String]) -> i32 {
    let [file] = args else { usage() };
    let doc: Value =
        serde_json::from_slice(&std::fs::read(file).expect("read the growth JSON")).expect("JSON");
    let sizes = doc["sizes"].as_array().cloned().unwrap_or_default();
    crate::plot::growth(&sizes, &PathBuf::from(file).with_extension("svg")).expect("plot");
    0
}

pub fn run(args: &[String]) -> i32 {
    let mut sizes: Vec<u64> = Vec::new();
    let mut scratch = std::env::temp_dir().join("batchdb-growth");
    let mut out = PathBuf::from("benches/results/growth.json");
    let mut slice = Duration::from_millis(1500);
    let mut keep = false;
    let mut same = false;
    let mut it = args.iter();
    let Some(list) = it.next() else { usage() };
    for s in list.split(',') {
        sizes.push(s.trim().replace('_', "").parse().unwrap_or_else(|_| usage()));
    }
    while let Some(a) = it.next() {
        if a == "--keep" {
            keep = true;
            continue;
        }
        if a == "--same-output" {
            same = true;
            continue;
        }
        let val = it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--scratch" => scratch = val.into(),
            "--out" => out = val.into(),
            "--slice" => slice = Duration::from_secs_f64(val.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let results: Vec<Value> = sizes.iter().map(|&n| one_size(n, &scratch, slice, keep, same)).collect();
    let doc = json!({
        "outputs": if same { "the same for every job" } else { "distinct" },
        "date": crate::date(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": crate::machine(),
        "slice_s": slice.as_secs_f64(),
        "sizes": results,
    });
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).expect("out dir");
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json") + "\n").expect("write");
    // The table: one column per size.
    let mut md = String::from("| operation |");
    for r in &results {
        md += &format!(" {} jobs |", r["jobs"]);
    }
    md += "\n|---|";
    md += &"---:|".repeat(results.len());
    md += "\n";
    let names: Vec<String> = results
        .first()
        .and_then(|r| r["rates_per_s"].as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for name in &names {
        md += &format!("| {name} (/s) |");
        for r in &results {
            md += &format!(" {:.0} |", r["rates_per_s"][name].as_f64().unwrap_or(f64::NAN));
        }
        md += "\n";
    }
    md += "| bytes on disk per job (batchdb / raw) |";
    for r in &results {
        md += &format!(
            " {:.0} / {:.0} |",
            r["bytes_per_job"].as_f64().unwrap_or(0.0),
            r["raw_bytes_per_job"].as_f64().unwrap_or(0.0)
        );
    }
    md += "\n";
    std::fs::write(out.with_extension("md"), &md).expect("write table");
    if results.len() > 1 {
        crate::plot::growth(&results, &out.with_extension("svg")).expect("plot");
    }
    println!("{md}");
    0
}
