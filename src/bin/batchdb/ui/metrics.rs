//! `/metrics`: the counts in Prometheus' text exposition format (version 0.0.4).

use super::data::Counts;
use std::fmt::Write;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped as the format requires (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders `c` as of `now` (epoch ms).
pub fn render(c: &Counts, now: i64) -> String {
    let mut out = String::new();
    family(&mut out, "batchdb_instances", "gauge", "Unfinished instances by state (pending = ready to claim, waiting = delayed or backing off, running = held by a worker) and queue.");
    for q in &c.queues {
        let name = label(&q.name);
        for (state, n) in [("pending", q.pending), ("waiting", q.waiting), ("running", q.running)] {
            let _ = writeln!(out, "batchdb_instances{{state=\"{state}\",queue=\"{name}\"}} {n}");
        }
    }
    family(
        &mut out,
        "batchdb_oldest_pending_seconds",
        "gauge",
        "Age of the oldest ready instance of each queue, in seconds; 0 when none is ready.",
    );
    for q in &c.queues {
        let age = q.oldest_pending.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        let _ = writeln!(out, "batchdb_oldest_pending_seconds{{queue=\"{}\"}} {age}", label(&q.name));
    }
    family(&mut out, "batchdb_queue_paused", "gauge", "1 when the queue is paused.");
    for q in &c.queues {
        let _ = writeln!(out, "batchdb_queue_paused{{queue=\"{}\"}} {}", label(&q.name), u8::from(q.paused));
    }
    family(&mut out, "batchdb_results_total", "counter", "Instances that completed with a result.");
    let _ = writeln!(out, "batchdb_results_total {}", c.results_total);
    family(&mut out, "batchdb_fails_total", "counter", "Instances that ended as a fail row.");
    let _ = writeln!(out, "batchdb_fails_total {}", c.fails_total);
    family(&mut out, "batchdb_jobs", "gauge", "Job rows.");
    let _ = writeln!(out, "batchdb_jobs {}", c.jobs);
    family(&mut out, "batchdb_blobs", "gauge", "Stored blobs (payloads and results).");
    let _ = writeln!(out, "batchdb_blobs {}", c.blobs);
    family(&mut out, "batchdb_blob_bytes", "gauge", "Total size of the stored blobs in bytes.");
    let _ = writeln!(out, "batchdb_blob_bytes {}", c.blob_bytes);
    family(
        &mut out,
        "batchdb_database_bytes",
        "gauge",
        "Size of the database on disk in bytes (file and write-ahead log).",
    );
    let _ = writeln!(out, "batchdb_database_bytes {}", c.database_bytes);
    out
}
