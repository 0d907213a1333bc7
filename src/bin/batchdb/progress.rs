//! The progress line of `batchdb run`: on a terminal, a spinner with done, failed, pending and
//! rate; elsewhere nothing until the one-line summary.

use batchdb::Db;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counts fed by the database's events (`result`, `fail`) of this run.
#[derive(Default)]
pub struct Counts {
    pub done: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<JoinHandle<()>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Progress {
    /// Starts the spinner when standard error is a terminal; does nothing otherwise.
    pub fn start(db: &Db, counts: Arc<Counts>) -> Progress {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None, ticker: None, stop };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let (db, b, flag) = (db.clone(), bar.clone(), stop.clone());
        let ticker = std::thread::Builder::new()
            .name("batchdb-progress".into())
            .spawn(move || {
                let started = Instant::now();
                let mut queued = String::from("? pending");
                let mut last_stats: Option<Instant> = None;
                loop {
                    if last_stats.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
                        if let Ok(s) = db.stats() {
                            queued = format!("{} pending, {} running", s.pending, s.running);
                        }
                        last_stats = Some(Instant::now());
                    }
                    let done = counts.done.load(Ordering::Relaxed);
                    let failed = counts.failed.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let rate = (done + failed) as f64 / secs;
                    b.set_message(format!("{done} done, {failed} failed, {queued}, {rate:.1}/s"));
                    let (m, cv) = &*flag;
                    let guard = m.lock().unwrap_or_else(|e| e.into_inner());
                    let (guard, _) = cv
                        .wait_timeout_while(guard, Duration::from_millis(250), |stopped| !*stopped)
                        .unwrap_or_else(|e| e.into_inner());
                    if *guard {
                        return;
                    }
                }
            })
            .ok();
        Progress { bar: Some(bar), ticker, stop }
    }

    /// Stops and clears the spinner.
    pub fn finish(mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
