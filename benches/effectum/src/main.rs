//! effectum's side of P8: `batchdb-bench-effectum DIR ENQUEUE_N CYCLE_N` prints one JSON line
//! with jobs per second for enqueue (one job per `add_to`, no worker running) and for the
//! no-op job cycle at concurrency 1 and 4 (all jobs added first, then a worker runs them).

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Ctx {
    done: AtomicU64,
}

async fn noop(_job: RunningJob, ctx: Arc<Ctx>) -> Result<(), String> {
    ctx.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

const KIND: &str = "noop";

fn payload(i: usize) -> Vec<u8> {
    format!("job payload number {i:08}").into_bytes()
}

async fn enqueue(path: &Path, n: usize) -> f64 {
    let queue = Queue::new(path).await.expect("open effectum queue");
    let t = Instant::now();
    for i in 0..n {
        Job::builder(KIND).payload(payload(i)).add_to(&queue).await.expect("add job");
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    queue.close(Duration::from_secs(10)).await.expect("close");
    rate
}

async fn cycle(path: &Path, n: usize, concurrency: u16) -> f64 {
    let queue = Queue::new(path).await.expect("open effectum queue");
    let jobs: Vec<Job> = (0..n).map(|i| Job::builder(KIND).payload(payload(i)).build()).collect();
    for part in jobs.chunks(1000) {
        queue.add_jobs(part.to_vec()).await.expect("add jobs");
    }
    let ctx = Arc::new(Ctx::default());
    let t = Instant::now();
    let worker = Worker::builder(&queue, ctx.clone())
        .jobs(vec![JobRunner::builder(KIND, noop).build()])
        .min_concurrency(concurrency)
        .max_concurrency(concurrency)
        .build()
        .await
        .expect("worker");
    while ctx.done.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    worker.unregister(Some(Duration::from_secs(10))).await.expect("unregister");
    queue.close(Duration::from_secs(10)).await.expect("close");
    rate
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: batchdb-bench-effectum DIR ENQUEUE_N CYCLE_N");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let (ne, nc): (usize, usize) = (args[2].parse().expect("ENQUEUE_N"), args[3].parse().expect("CYCLE_N"));
    std::fs::create_dir_all(&dir).expect("dir");
    let enq = enqueue(&dir.join("enqueue.db"), ne).await;
    let c1 = cycle(&dir.join("cycle1.db"), nc, 1).await;
    let c4 = cycle(&dir.join("cycle4.db"), nc, 4).await;
    println!(
        "{}",
        serde_json::json!({"enqueue": enq, "cycle_c1": c1, "cycle_c4": c4, "synchronous": "NORMAL"})
    );
}
